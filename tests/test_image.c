/* Images: diffusers' float-to-RGB8 conversion bit for bit, PNG/JPEG/BMP write-read round
 * trips with PNG text chunks, PNG flavours read as RGB8, atomic writes and early path checks,
 * PSNR/SSIM against a direct numpy computation (tests/fixtures/image), and `ditrt compare`. */
#include "testutil.h"
#include "runtime/io/image.h"
#include "runtime/core/json.h"
#include "runtime/core/safetensors.h"
#include <dirent.h>
#include <png.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define IMG "tests/fixtures/image"

static char tmp[256];
static int setup(void **state) { (void)state; tu_tmpdir(tmp, sizeof tmp); return 0; }
static int teardown(void **state) { (void)state; tu_rmtree(tmp); return 0; }

static dt_safetensors *open_st(const char *path)
{
    dt_safetensors *st;
    dt_err e = {0};
    if (dt_st_open(path, &st, &e) != DT_OK) fail_msg("%s", e.msg);
    return st;
}

static int dir_entries(const char *dir)
{
    int n = 0;
    DIR *d = opendir(dir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static uint8_t *pattern(int w, int h)
{
    uint8_t *p = malloc((size_t)w * h * 3);
    assert_non_null(p);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) p[((size_t)y * w + x) * 3 + c] = (uint8_t)(x * 7 + y * 3 + c * 50 + (x * y) % 13);
    return p;
}

static void test_postprocess_matches_diffusers(void **state)
{
    (void)state;
    dt_safetensors *st = open_st(IMG "/postprocess.safetensors");
    const dt_st_entry *in = dt_st_find(st, "images"), *ex = dt_st_find(st, "expected");
    assert_non_null(in);
    assert_non_null(ex);
    int b = (int)in->shape[0], h = (int)in->shape[2], w = (int)in->shape[3];
    assert_int_equal(ex->nbytes, (size_t)b * h * w * 3);
    uint8_t *got = malloc(ex->nbytes);
    for (int i = 0; i < b; i++) dt_image_from_float((const float *)in->data + (size_t)i * 3 * h * w, h, w, got + (size_t)i * h * w * 3);
    size_t bad = 0;
    for (size_t i = 0; i < ex->nbytes; i++) bad += got[i] != ((const uint8_t *)ex->data)[i];
    if (bad) fail_msg("%zu of %zu samples differ from VaeImageProcessor.postprocess", bad, ex->nbytes);
    free(got);
    dt_st_close(st);
    float nan_px[3] = {NAN, 2.0f, -3.0f};
    uint8_t px[3];
    dt_image_from_float(nan_px, 1, 1, px);
    assert_int_equal(px[0], 0);
    assert_int_equal(px[1], 255);
    assert_int_equal(px[2], 0);
}

/* Reads the PNG's text chunks with libpng itself. */
static void expect_png_text(const char *path, const char *key, const char *value)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    png_structp p = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(p);
    if (setjmp(png_jmpbuf(p))) fail_msg("libpng failed on %s", path);
    png_init_io(p, f);
    png_read_info(p, info);
    png_textp t;
    int n = 0, found = 0;
    png_get_text(p, info, &t, &n);
    for (int i = 0; i < n; i++)
        if (!strcmp(t[i].key, key)) found = !strcmp(t[i].text, value);
    png_destroy_read_struct(&p, &info, NULL);
    fclose(f);
    if (!found) fail_msg("%s: no text chunk %s=\"%s\"", path, key, value);
}

static void test_png_roundtrip_with_text(void **state)
{
    (void)state;
    int w = 37, h = 23;
    uint8_t *px = pattern(w, h);
    char path[512];
    snprintf(path, sizeof path, "%s/out.PNG", tmp);
    dt_image_text text[] = {{"prompt", "a cat, \"quoted\""}, {"seed", "42"}, {"negative", "caf\xc3\xa9 \xe2\x98\x95"}};
    dt_err e = {0};
    assert_int_equal(dt_image_check_writable(path, &e), DT_OK);
    assert_int_equal(dir_entries(tmp), 0);
    if (dt_image_write(path, px, w, h, text, 3, &e) != DT_OK) fail_msg("%s", e.msg);
    assert_int_equal(dir_entries(tmp), 1); /* no temp file left */
    expect_png_text(path, "prompt", "a cat, \"quoted\"");
    expect_png_text(path, "seed", "42");
    expect_png_text(path, "negative", "caf\xc3\xa9 \xe2\x98\x95");
    dt_image img;
    assert_int_equal(dt_image_read(path, &img, &e), DT_OK);
    assert_int_equal(img.width, w);
    assert_int_equal(img.height, h);
    assert_memory_equal(img.rgb, px, (size_t)w * h * 3);
    dt_image_free(&img);
    /* overwriting an existing file replaces it */
    px[0] ^= 0xff;
    assert_int_equal(dt_image_write(path, px, w, h, NULL, 0, &e), DT_OK);
    assert_int_equal(dt_image_read(path, &img, &e), DT_OK);
    assert_memory_equal(img.rgb, px, (size_t)w * h * 3);
    dt_image_free(&img);
    free(px);
}

static void test_jpeg_bmp(void **state)
{
    (void)state;
    int w = 40, h = 30;
    uint8_t *px = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++) /* smooth, so JPEG at quality 95 is close */
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) px[((size_t)y * w + x) * 3 + c] = (uint8_t)(40 + x * 3 + y * 2 + c * 20);
    char path[512];
    dt_err e = {0};
    dt_image img;
    snprintf(path, sizeof path, "%s/out.bmp", tmp);
    assert_int_equal(dt_image_write(path, px, w, h, NULL, 0, &e), DT_OK);
    assert_int_equal(dt_image_read(path, &img, &e), DT_OK);
    assert_int_equal(img.width, w);
    assert_memory_equal(img.rgb, px, (size_t)w * h * 3);
    dt_image_free(&img);
    const char *jpegs[] = {"out.jpg", "out.JPEG"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", tmp, jpegs[i]);
        assert_int_equal(dt_image_write(path, px, w, h, NULL, 0, &e), DT_OK);
        assert_int_equal(dt_image_read(path, &img, &e), DT_OK);
        assert_int_equal(img.width, w);
        assert_int_equal(img.height, h);
        FILE *f = fopen(path, "rb");
        unsigned char sig[2] = {0};
        assert_int_equal(fread(sig, 1, 2, f), 2);
        fclose(f);
        assert_true(sig[0] == 0xff && sig[1] == 0xd8); /* a JPEG, not a PNG named .jpg */
        double psnr = dt_image_psnr(img.rgb, px, w, h);
        if (!(psnr > 35)) fail_msg("JPEG round trip PSNR %.2f dB", psnr);
        dt_image_free(&img);
    }
    assert_int_equal(dir_entries(tmp), 3);
    free(px);
}

static void test_png_flavours(void **state)
{
    (void)state;
    dt_safetensors *st = open_st(IMG "/read.safetensors");
    const char *names[] = {"gray", "pal", "rgba", "gray16"};
    for (int i = 0; i < 4; i++) {
        char path[256];
        snprintf(path, sizeof path, IMG "/%s.png", names[i]);
        dt_image img;
        dt_err e = {0};
        if (dt_image_read(path, &img, &e) != DT_OK) fail_msg("%s", e.msg);
        const dt_st_entry *ex = dt_st_find(st, names[i]);
        assert_non_null(ex);
        assert_int_equal(img.height, ex->shape[0]);
        assert_int_equal(img.width, ex->shape[1]);
        if (memcmp(img.rgb, ex->data, ex->nbytes)) fail_msg("%s: pixels differ from PIL/libpng", path);
        dt_image_free(&img);
    }
    dt_st_close(st);
}

static void expect_error(dt_status s, const dt_err *e, const char *needle)
{
    if (s == DT_OK) fail_msg("succeeded, expected an error with \"%s\"", needle);
    if (!strstr(e->msg, needle)) fail_msg("message \"%s\" lacks \"%s\"", e->msg, needle);
}

static void test_bad_paths_and_files(void **state)
{
    (void)state;
    char path[512], other[512];
    uint8_t px[12] = {0};
    dt_err e = {0};
    const char *bad[][2] = {{"out.gif", "unknown image extension \".gif\""}, {"out", "no image extension"},
                            {"no/such/dir/x.png", "no/such/dir/x.png"}, {"", "no image extension"}};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", tmp, bad[i][0]);
        dt_err_clear(&e);
        expect_error(dt_image_check_writable(path, &e), &e, bad[i][1]);
        dt_err_clear(&e);
        expect_error(dt_image_write(path, px, 2, 2, NULL, 0, &e), &e, bad[i][1]);
    }
    /* a folder where the file should be, and a file where a folder should be */
    snprintf(path, sizeof path, "%s/d.png", tmp);
    assert_int_equal(mkdir(path, 0755), 0);
    dt_err_clear(&e);
    expect_error(dt_image_check_writable(path, &e), &e, "is a directory");
    snprintf(other, sizeof other, "%s/file", tmp);
    tu_write_file(other, "x", 1);
    snprintf(path, sizeof path, "%s/file/x.png", tmp);
    dt_err_clear(&e);
    expect_error(dt_image_check_writable(path, &e), &e, path);
    /* a bad text key fails before anything is created, leaving an existing file as it was */
    snprintf(path, sizeof path, "%s/keep.png", tmp);
    tu_write_file(path, "old", 3);
    dt_image_text t = {"", "v"};
    dt_err_clear(&e);
    expect_error(dt_image_write(path, px, 2, 2, &t, 1, &e), &e, "text key");
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_size, 3);
    assert_int_equal(dir_entries(tmp), 3); /* d.png, file, keep.png: no temp files */

    /* reading: missing, not an image, truncated PNG */
    dt_image img;
    dt_err_clear(&e);
    expect_error(dt_image_read("/nonexistent/a.png", &img, &e), &e, "/nonexistent/a.png");
    assert_null(img.rgb);
    dt_err_clear(&e);
    expect_error(dt_image_read("README.md", &img, &e), &e, "not a PNG, JPEG, WebP or BMP");
    FILE *f = fopen(IMG "/a.png", "rb");
    unsigned char buf[300];
    assert_int_equal(fread(buf, 1, sizeof buf, f), sizeof buf);
    fclose(f);
    snprintf(path, sizeof path, "%s/cut.png", tmp);
    tu_write_file(path, buf, sizeof buf);
    dt_err_clear(&e);
    expect_error(dt_image_read(path, &img, &e), &e, "damaged PNG");
    assert_null(img.rgb);
}

/* A BMP written field by field: hsize-byte info header, bpp, compression, rows of `stride`
 * bytes (bottom-up unless top_down), palette of npal entries after the header. */
static size_t make_bmp(uint8_t *b, int w, int h, int bpp, int comp, int top_down, int npal, const uint8_t *rows, size_t nrows)
{
    memset(b, 0, 14 + 40 + 4 * npal);
    uint32_t off = 14 + 40 + 4 * npal;
    b[0] = 'B';
    b[1] = 'M';
    uint32_t v[][2] = {{10, off}, {14, 40}, {18, (uint32_t)w}, {22, (uint32_t)(top_down ? -h : h)}, {30, (uint32_t)comp}, {46, (uint32_t)npal}};
    for (size_t i = 0; i < sizeof v / sizeof *v; i++)
        for (int k = 0; k < 4; k++) b[v[i][0] + k] = (uint8_t)(v[i][1] >> (8 * k));
    b[26] = 1;
    b[28] = (uint8_t)bpp;
    for (int i = 0; i < npal; i++) { b[54 + 4 * i] = (uint8_t)(10 * i); b[55 + 4 * i] = (uint8_t)(20 * i); b[56 + 4 * i] = (uint8_t)(30 * i); }
    memcpy(b + off, rows, nrows);
    return off + nrows;
}

/* Reading is bounded and strict: the pixel limit (DITRT_MAX_IMAGE_PIXELS) refuses a PNG, JPEG
 * or BMP header before any pixel buffer exists, a bad limit value is named, a truncated JPEG
 * (libjpeg-turbo's corrupt-data warning) is refused, and the BMP reader takes 8/24/32-bit
 * uncompressed files bottom-up and top-down and refuses the rest by name. */
static void test_decode_bounds_and_bmp(void **state)
{
    (void)state;
    char path[512];
    dt_err e = {0};
    dt_image img;
    int w = 40, h = 30;
    uint8_t *px = pattern(w, h);
    const char *names[] = {"big.png", "big.jpg", "big.bmp"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", tmp, names[i]);
        assert_ok(dt_image_write(path, px, w, h, NULL, 0, &_e));
        setenv("DITRT_MAX_IMAGE_PIXELS", "1199", 1);
        dt_err_clear(&e);
        expect_error(dt_image_read(path, &img, &e), &e, "image too large (40x30; the limit is 1199 pixels");
        assert_null(strchr(e.msg, '\n'));
        assert_null(img.rgb);
        setenv("DITRT_MAX_IMAGE_PIXELS", "12x", 1);
        dt_err_clear(&e);
        expect_error(dt_image_read(path, &img, &e), &e, "DITRT_MAX_IMAGE_PIXELS=\"12x\": not a positive integer");
        setenv("DITRT_MAX_IMAGE_PIXELS", "1200", 1);
        assert_ok(dt_image_read(path, &img, &_e));
        assert_int_equal(img.width, w);
        assert_int_equal(img.height, h);
        dt_image_free(&img);
        unsetenv("DITRT_MAX_IMAGE_PIXELS");
    }
    /* a JPEG cut short */
    snprintf(path, sizeof path, "%s/big.jpg", tmp);
    FILE *f = fopen(path, "rb");
    uint8_t buf[8192];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    snprintf(path, sizeof path, "%s/cut.jpg", tmp);
    tu_write_file(path, buf, n * 2 / 3);
    dt_err_clear(&e);
    expect_error(dt_image_read(path, &img, &e), &e, "damaged JPEG");
    assert_null(img.rgb);
    free(px);

    /* BMPs: 3x2, rows padded to 4 bytes */
    uint8_t rows24[2 * 12], rows32[2 * 12], rows8[2 * 4], b[512];
    for (int i = 0; i < 24; i++) rows24[i] = (uint8_t)(i * 9);
    for (int i = 0; i < 24; i++) rows32[i] = (uint8_t)(i * 7 + 1);
    const uint8_t idx[8] = {0, 1, 2, 0, 3, 2, 1, 0};
    memcpy(rows8, idx, 8);
    struct { int bpp, comp, top, npal; const uint8_t *rows; size_t nrows; } ok[] = {
        {24, 0, 0, 0, rows24, 24}, {24, 0, 1, 0, rows24, 24}, {32, 0, 0, 0, rows32, 24}, {8, 0, 1, 4, rows8, 8}};
    for (int t = 0; t < 4; t++) {
        n = make_bmp(b, 3, 2, ok[t].bpp, ok[t].comp, ok[t].top, ok[t].npal, ok[t].rows, ok[t].nrows);
        dt_err_clear(&e);
        if (dt_image_decode("t.bmp", b, n, &img, &e) != DT_OK) fail_msg("case %d: %s", t, e.msg);
        assert_int_equal(img.width, 3);
        assert_int_equal(img.height, 2);
        for (int y = 0; y < 2; y++)
            for (int x = 0; x < 3; x++) {
                int fy = ok[t].top ? y : 1 - y; /* file row */
                const uint8_t *src;
                if (ok[t].bpp == 8) {
                    int k = ok[t].rows[fy * 4 + x];
                    src = b + 54 + 4 * k;
                } else {
                    src = ok[t].rows + fy * 12 + x * (ok[t].bpp / 8);
                }
                const uint8_t *d = img.rgb + (y * 3 + x) * 3;
                assert_true(d[0] == src[2] && d[1] == src[1] && d[2] == src[0]);
            }
        dt_image_free(&img);
    }
    struct { int bpp, comp, npal; size_t nrows; const char *msg; } bad[] = {
        {4, 0, 0, 24, "unsupported BMP (4 bits per pixel, compression 0"},
        {8, 1, 4, 8, "unsupported BMP (8 bits per pixel, compression 1"},
        {24, 0, 0, 23, "pixel data beyond the end of the file"},
        {8, 0, 2, 8, "palette index 3 of 2 colours"}};
    for (int t = 0; t < 4; t++) {
        n = make_bmp(b, 3, 2, bad[t].bpp, bad[t].comp, 0, bad[t].npal, bad[t].bpp == 8 ? rows8 : rows24, bad[t].nrows);
        dt_err_clear(&e);
        expect_error(dt_image_decode("t.bmp", b, n, &img, &e), &e, bad[t].msg);
        assert_null(img.rgb);
    }
    /* a 1e9 x 1e9 header: the bound, not an allocation */
    n = make_bmp(b, 1000000000, 1000000000, 24, 0, 0, 0, rows24, 24);
    dt_err_clear(&e);
    expect_error(dt_image_decode("t.bmp", b, n, &img, &e), &e, "image too large (1000000000x1000000000; the limit is 268435456");
}

static double ref_num(const char *field)
{
    cJSON *j;
    dt_err e = {0};
    double v;
    if (dt_json_load(IMG "/ref.json", &j, &e) != DT_OK || dt_json_num(j, IMG "/ref.json", field, 0, 0, &v, &e) != DT_OK)
        fail_msg("%s", e.msg);
    cJSON_Delete(j);
    return v;
}

static void test_metrics(void **state)
{
    (void)state;
    dt_image a, b;
    dt_err e = {0};
    assert_int_equal(dt_image_read(IMG "/a.png", &a, &e), DT_OK);
    assert_int_equal(dt_image_read(IMG "/b.png", &b, &e), DT_OK);
    double psnr = dt_image_psnr(a.rgb, b.rgb, a.width, a.height), ssim;
    /* direct: over all R, G, B samples */
    double sse = 0;
    size_t n = (size_t)a.width * a.height * 3;
    for (size_t i = 0; i < n; i++) sse += ((double)a.rgb[i] - b.rgb[i]) * ((double)a.rgb[i] - b.rgb[i]);
    double direct = 10 * log10(255.0 * 255.0 / (sse / n));
    assert_true(fabs(psnr - direct) < 0.01);
    assert_true(fabs(psnr - ref_num("psnr_db")) < 0.01);
    assert_int_equal(dt_image_ssim(a.rgb, b.rgb, a.width, a.height, &ssim, &e), DT_OK);
    if (!(fabs(ssim - ref_num("ssim")) < 1e-9)) fail_msg("SSIM %.12f, numpy reference %.12f", ssim, ref_num("ssim"));
    assert_true(isinf(dt_image_psnr(a.rgb, a.rgb, a.width, a.height)));
    assert_int_equal(dt_image_ssim(a.rgb, a.rgb, a.width, a.height, &ssim, &e), DT_OK);
    assert_true(fabs(ssim - 1.0) < 1e-12);
    assert_int_equal(dt_image_ssim(a.rgb, b.rgb, 10, 40, &ssim, &e), DT_OK);
    assert_true(isnan(ssim));
    dt_image_free(&a);
    dt_image_free(&b);
}

/* Runs a command; returns the exit code, stdout and stderr in out/err. */
static int run(const char *cmd, char *out, char *err, size_t n)
{
    char full[4096], po[512], pe[512];
    snprintf(po, sizeof po, "%s/stdout.txt", tmp);
    snprintf(pe, sizeof pe, "%s/stderr.txt", tmp);
    snprintf(full, sizeof full, "%s >'%s' 2>'%s'", cmd, po, pe);
    int st = system(full);
    const char *paths[2] = {po, pe};
    char *dst[2] = {out, err};
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(paths[i], "r");
        size_t got = f ? fread(dst[i], 1, n - 1, f) : 0;
        if (f) fclose(f);
        dst[i][got] = 0;
        unlink(paths[i]);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 255;
}

static int lines(const char *s)
{
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static void expect_cli(const char *args, int rc, const char *in_out, const char *in_err)
{
    char cmd[2048], out[4096], err[4096];
    snprintf(cmd, sizeof cmd, "./ditrt compare %s", args);
    int got = run(cmd, out, err, sizeof out);
    if (got != rc) fail_msg("%s: exit %d, expected %d (stderr: %s)", cmd, got, rc, err);
    if (in_out && !strstr(out, in_out)) fail_msg("%s: stdout lacks \"%s\": %s", cmd, in_out, out);
    if (in_err && (!strstr(err, in_err) || lines(err) != 1)) fail_msg("%s: stderr is not one line with \"%s\": %s", cmd, in_err, err);
    if (!in_err && err[0]) fail_msg("%s: unexpected stderr: %s", cmd, err);
}

static void test_cli_compare(void **state)
{
    (void)state;
    char args[1024], diff[512];
    const char *A = IMG "/a.png", *B = IMG "/b.png";
    snprintf(args, sizeof args, "%s %s", A, A);
    expect_cli(args, 0, "PSNR: inf dB\nSSIM: 1.000000\n", NULL);
    snprintf(args, sizeof args, "%s %s --min-psnr 32 --min-ssim 0.96", A, B);
    expect_cli(args, 0, "PSNR: 32.7868 dB\nSSIM: 0.964583\n", NULL);
    snprintf(args, sizeof args, "%s %s --min-psnr 33", A, B);
    expect_cli(args, 1, "PSNR: 32.7868 dB", "below --min-psnr 33");
    snprintf(args, sizeof args, "--min-ssim 0.97 %s %s", A, B);
    expect_cli(args, 1, "SSIM: 0.964583", "below --min-ssim 0.97");

    snprintf(diff, sizeof diff, "%s/diff.png", tmp);
    snprintf(args, sizeof args, "%s %s --diff %s", A, B, diff);
    expect_cli(args, 0, "PSNR", NULL);
    dt_image d, a, b;
    dt_err e = {0};
    assert_int_equal(dt_image_read(diff, &d, &e), DT_OK);
    assert_int_equal(dt_image_read(A, &a, &e), DT_OK);
    assert_int_equal(dt_image_read(B, &b, &e), DT_OK);
    int top = 0, zero_ok = 1;
    for (size_t i = 0; i < (size_t)d.width * d.height * 3; i++) {
        top = d.rgb[i] > top ? d.rgb[i] : top;
        zero_ok &= (d.rgb[i] == 0) == (a.rgb[i] == b.rgb[i]);
    }
    assert_int_equal(top, 255);
    assert_true(zero_ok);
    dt_image_free(&d);
    dt_image_free(&a);
    dt_image_free(&b);
    unlink(diff);

    /* bad input: exit 2, one line, no diff written */
    snprintf(args, sizeof args, "%s /nonexistent.png --diff %s", A, diff);
    expect_cli(args, 2, NULL, "/nonexistent.png");
    snprintf(args, sizeof args, "%s README.md", A);
    expect_cli(args, 2, NULL, "README.md");
    snprintf(args, sizeof args, "%s " IMG "/gray.png --diff %s", A, diff);
    expect_cli(args, 2, NULL, "sizes differ");
    snprintf(args, sizeof args, "%s %s --diff %s/diff.tiff", A, B, tmp);
    expect_cli(args, 2, NULL, "unknown image extension");
    snprintf(args, sizeof args, "%s %s --diff /nonexistent/dir/d.png", A, B);
    expect_cli(args, 2, NULL, "/nonexistent/dir/d.png");
    snprintf(args, sizeof args, "%s %s --min-psnr lots", A, B);
    expect_cli(args, 2, NULL, "--min-psnr");
    snprintf(args, sizeof args, "%s %s --min-ssim", A, B);
    expect_cli(args, 2, NULL, "--min-ssim");
    snprintf(args, sizeof args, "%s", A);
    expect_cli(args, 2, NULL, "two images");
    snprintf(args, sizeof args, "%s %s %s", A, B, B);
    expect_cli(args, 2, NULL, "unexpected argument");
    snprintf(args, sizeof args, "%s %s --bogus", A, B);
    expect_cli(args, 2, NULL, "--bogus");
    snprintf(args, sizeof args, IMG "/gray.png " IMG "/gray.png --min-ssim 0.5");
    expect_cli(args, 2, NULL, "11x11");
    assert_int_equal(access(diff, F_OK), -1);
}

/* ---- the public file API (include/ditrt.h), as an embedding application calls it ---- */

/* ditrt_image_save writes the bytes dt_image_write (the CLI's writer until now) writes, text
 * chunks included; ditrt_image_load reads them back; JPEG/BMP by extension. */
static void test_api_save_load(void **state)
{
    (void)state;
    int w = 37, h = 23;
    uint8_t *px = pattern(w, h);
    ditrt_image im = {w, h, px}, back = {0};
    ditrt_meta meta[] = {{"prompt", "a cat"}, {"seed", "42"}, {"negative", "caf\xc3\xa9"}};
    char a[512], b[512];
    ditrt_error err = {0};
    snprintf(a, sizeof a, "%s/api.png", tmp);
    snprintf(b, sizeof b, "%s/ref.png", tmp);
    ditrt_output_kind kind = DITRT_OUTPUT_MP4;
    assert_int_equal(ditrt_output_check(a, 0, &kind, &err), DITRT_OK);
    assert_int_equal(kind, DITRT_OUTPUT_IMAGE);
    assert_int_equal(dir_entries(tmp), 0); /* the check leaves nothing */
    if (ditrt_image_save(a, &im, meta, 3, &err) != DITRT_OK) fail_msg("%s", err.msg);
    dt_err e = {0};
    assert_int_equal(dt_image_write(b, px, w, h, meta, 3, &e), DT_OK);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cmp -s %s %s", a, b);
    assert_int_equal(system(cmd), 0);
    expect_png_text(a, "prompt", "a cat");
    expect_png_text(a, "negative", "caf\xc3\xa9");
    assert_int_equal(ditrt_image_load(a, &back, &err), DITRT_OK);
    assert_int_equal(back.width, w);
    assert_int_equal(back.height, h);
    assert_memory_equal(back.rgb, px, (size_t)w * h * 3);
    ditrt_image_free(&back);
    assert_null(back.rgb);
    ditrt_image_free(NULL);
    snprintf(a, sizeof a, "%s/api.bmp", tmp); /* lossless */
    assert_int_equal(ditrt_image_save(a, &im, NULL, 0, &err), DITRT_OK);
    assert_int_equal(ditrt_image_load(a, &back, &err), DITRT_OK);
    assert_memory_equal(back.rgb, px, (size_t)w * h * 3);
    ditrt_image_free(&back);
    snprintf(a, sizeof a, "%s/api.JPG", tmp);
    assert_int_equal(ditrt_image_save(a, &im, meta, 1, &err), DITRT_OK);
    assert_int_equal(ditrt_image_load(a, &back, &err), DITRT_OK);
    assert_int_equal(back.width, w);
    ditrt_image_free(&back);
    assert_int_equal(dir_entries(tmp), 4); /* no temp files */
    free(px);
}

/* Refusals name the path (or the argument), create nothing and leave an earlier file as it was. */
static void test_api_refusals(void **state)
{
    (void)state;
    char path[512];
    ditrt_error err = {0};
    ditrt_output_kind kind;
    const char *bad_image[][2] = {{"%s/out.gif", "unknown image extension"}, {"%s/no/such/x.png", "/no/such/x.png"},
                                  {"%s/clip.mp4", "clip.mp4"}};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, bad_image[i][0], tmp);
        assert_int_not_equal(ditrt_output_check(path, 0, &kind, &err), DITRT_OK);
        if (!strstr(err.msg, bad_image[i][1])) fail_msg("%s: \"%s\"", path, err.msg);
    }
    const char *bad_video[][2] = {{"%s/clip.avi", "unknown video output type"}, {"%s/missing/", "does not exist"},
                                  {"%s/f_%%d_%%d.png", "exactly one integer conversion"}};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, bad_video[i][0], tmp);
        assert_int_not_equal(ditrt_output_check(path, 1, &kind, &err), DITRT_OK);
        if (!strstr(err.msg, bad_video[i][1])) fail_msg("%s: \"%s\"", path, err.msg);
    }
    /* the kinds of good video paths */
    const char *good[] = {"%s/a.MP4", "%s/a.webp", "%s/f_%%03d.png", "%s/"};
    ditrt_output_kind want[] = {DITRT_OUTPUT_MP4, DITRT_OUTPUT_WEBP, DITRT_OUTPUT_FRAME_PATTERN, DITRT_OUTPUT_FRAME_FOLDER};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, good[i], tmp);
        if (ditrt_output_check(path, 1, &kind, &err) != DITRT_OK) fail_msg("%s: %s", path, err.msg);
        assert_int_equal(kind, want[i]);
        assert_string_equal(err.msg, "");
    }
    assert_int_equal(ditrt_output_check(NULL, 0, NULL, &err), DITRT_EINVAL);
    assert_int_equal(ditrt_output_check("x.gif", 0, NULL, NULL), DITRT_EINVAL); /* err may be NULL */
    /* bad images and meta: refused before anything is written */
    snprintf(path, sizeof path, "%s/keep.png", tmp);
    tu_write_file(path, "old", 3);
    uint8_t px[12] = {0};
    ditrt_image im = {2, 2, px}, empty = {0, 2, px};
    ditrt_meta bad_key = {"", "v"}, null_value = {"k", NULL};
    assert_int_equal(ditrt_image_save(path, &empty, NULL, 0, &err), DITRT_EINVAL);
    assert_non_null(strstr(err.msg, "keep.png"));
    assert_int_equal(ditrt_image_save(path, NULL, NULL, 0, &err), DITRT_EINVAL);
    assert_int_equal(ditrt_image_save(path, &im, NULL, 2, &err), DITRT_EINVAL);
    assert_non_null(strstr(err.msg, "meta"));
    assert_int_equal(ditrt_image_save(path, &im, &null_value, 1, &err), DITRT_EINVAL);
    assert_non_null(strstr(err.msg, "meta[0]"));
    assert_int_not_equal(ditrt_image_save(path, &im, &bad_key, 1, &err), DITRT_OK);
    assert_non_null(strstr(err.msg, "text key"));
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_size, 3);
    /* loading: missing file, not an image; the output is zeroed */
    ditrt_image back = {5, 5, NULL};
    assert_int_equal(ditrt_image_load("/nonexistent/a.png", &back, &err), DITRT_EIO);
    assert_non_null(strstr(err.msg, "/nonexistent/a.png"));
    assert_int_equal(back.width, 0);
    assert_int_not_equal(ditrt_image_load("README.md", &back, &err), DITRT_OK);
    assert_non_null(strstr(err.msg, "README.md"));
    assert_null(back.rgb);
    assert_int_equal(dir_entries(tmp), 1); /* keep.png only */
}

/* ditrt_compare_files gives the numbers `ditrt compare` prints and the same --diff file. */
static void test_api_compare(void **state)
{
    (void)state;
    const char *A = IMG "/a.png", *B = IMG "/b.png";
    char diff[512], cli_diff[512], cmd[2048], out[4096], err_txt[4096], want[128];
    snprintf(diff, sizeof diff, "%s/api-diff.png", tmp);
    snprintf(cli_diff, sizeof cli_diff, "%s/cli-diff.png", tmp);
    ditrt_compare_result r;
    ditrt_error err = {0};
    if (ditrt_compare_files(A, B, diff, &r, &err) != DITRT_OK) fail_msg("%s", err.msg);
    assert_int_equal(r.frames, 0);
    assert_null(r.frame_psnr);
    snprintf(cmd, sizeof cmd, "./ditrt compare %s %s --diff %s", A, B, cli_diff);
    assert_int_equal(run(cmd, out, err_txt, sizeof out), 0);
    snprintf(want, sizeof want, "PSNR: %.4f dB\nSSIM: %.6f\n", r.psnr, r.ssim);
    assert_string_equal(out, want);
    snprintf(cmd, sizeof cmd, "cmp -s %s %s", diff, cli_diff);
    assert_int_equal(system(cmd), 0);
    ditrt_compare_result_free(&r);
    assert_int_equal(ditrt_compare_files(A, A, NULL, &r, &err), DITRT_OK);
    assert_true(isinf(r.psnr));
    assert_true(r.ssim == 1.0);
    /* under 11x11: no SSIM */
    assert_int_equal(ditrt_compare_files(IMG "/gray.png", IMG "/gray.png", NULL, &r, &err), DITRT_OK);
    if (r.width < 11 || r.height < 11) assert_true(isnan(r.ssim));
    /* bad input names the file; nothing is written; the result is zeroed */
    unlink(diff);
    assert_int_equal(ditrt_compare_files(A, IMG "/gray.png", diff, &r, &err), DITRT_EINVAL);
    assert_non_null(strstr(err.msg, "sizes differ"));
    assert_int_equal(r.width, 0);
    assert_int_not_equal(ditrt_compare_files(A, "/nonexistent.png", NULL, &r, &err), DITRT_OK);
    assert_non_null(strstr(err.msg, "/nonexistent.png"));
    assert_int_equal(ditrt_compare_files(A, B, "/nonexistent/dir/d.png", &r, &err), DITRT_EIO);
    assert_non_null(strstr(err.msg, "/nonexistent/dir/d.png"));
    assert_int_equal(ditrt_compare_files(A, B, NULL, NULL, &err), DITRT_EINVAL);
    assert_int_equal(ditrt_compare_files(NULL, B, NULL, &r, &err), DITRT_EINVAL);
    assert_int_equal(access(diff, F_OK), -1);
    ditrt_compare_result_free(&r);
    ditrt_compare_result_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_postprocess_matches_diffusers),
        cmocka_unit_test_setup_teardown(test_png_roundtrip_with_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jpeg_bmp, setup, teardown),
        cmocka_unit_test(test_png_flavours),
        cmocka_unit_test_setup_teardown(test_bad_paths_and_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_bounds_and_bmp, setup, teardown),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test_setup_teardown(test_cli_compare, setup, teardown),
        cmocka_unit_test_setup_teardown(test_api_save_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_api_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_api_compare, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
