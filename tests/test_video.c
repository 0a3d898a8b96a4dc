/* Video output: MP4 (H.264), animated WebP and PNG sequences written and decoded back
 * (libavformat/libavcodec, libwebpdemux, libpng) with frame count, size, rate, content and
 * metadata checked; bad output paths; atomic writes (no temp files left, nothing on failure). */
#include "testutil.h"
#include "runtime/io/image.h"
#include "runtime/io/video.h"
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define FR 5
#define W 64
#define H 48

/* smooth moving gradients: every frame differs, and lossy codecs keep them well */
static uint8_t *make_frames(void)
{
    uint8_t *v = malloc((size_t)FR * W * H * 3);
    assert_non_null(v);
    for (int f = 0; f < FR; f++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                uint8_t *p = v + (((size_t)f * H + y) * W + x) * 3;
                p[0] = (uint8_t)(x * 3 + f * 20);
                p[1] = (uint8_t)(y * 4 + 10);
                p[2] = (uint8_t)(128 + 60 * sin((x + y + f * 6) * 0.1));
            }
    return v;
}

static const dt_image_text meta[] = {{"prompt", "a fox in the snow"}, {"seed", "7"}};

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void roundtrip(const char *dir, const char *name, double fps, double min_psnr, int has_rate, int has_meta)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    uint8_t *frames = make_frames();
    dt_video_frames v = {FR, W, H, fps, frames, meta, 2};
    dt_err err = {0};
    if (dt_video_write(path, &v, &err) != DT_OK) fail_msg("%s: %s", name, err.msg);
    dt_video r;
    if (dt_video_read(path, &r, &err) != DT_OK) fail_msg("%s: %s", name, err.msg);
    assert_int_equal(r.frames, FR);
    assert_int_equal(r.width, W);
    assert_int_equal(r.height, H);
    if (has_rate && fabs(r.fps - fps) > 1e-3 * fps) fail_msg("%s: rate %g, expected %g", name, r.fps, fps);
    if (has_meta && (!r.comment || !strstr(r.comment, "prompt: a fox in the snow"))) fail_msg("%s: metadata missing", name);
    double worst = INFINITY;
    for (int f = 0; f < FR; f++) {
        double p = dt_image_psnr(r.rgb + (size_t)f * W * H * 3, frames + (size_t)f * W * H * 3, W, H);
        worst = p < worst ? p : worst;
    }
    printf("  %-14s %d frames %dx%d @ %g fps, worst PSNR %.1f dB\n", name, r.frames, r.width, r.height, r.fps, worst);
    if (!(worst >= min_psnr)) fail_msg("%s: frame PSNR %.1f < %.0f", name, worst, min_psnr);
    dt_video_free(&r);
    free(frames);
}

static void test_formats(void **state)
{
    (void)state;
    char dir[256], sub[300];
    tu_tmpdir(dir, sizeof dir);
    roundtrip(dir, "clip.mp4", 8, 27, 1, 1); /* 4:2:0 chroma costs the colour detail */
    roundtrip(dir, "clip.webp", 8, 26, 1, 1); /* lossy, quality 90 */
    roundtrip(dir, "clip.MP4", 12.5, 27, 1, 0);
    roundtrip(dir, "f_%03d.png", 8, INFINITY, 0, 0);
    snprintf(sub, sizeof sub, "%s/frames", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    roundtrip(dir, "frames/", 8, INFINITY, 0, 0);
    /* the PNG frames carry the parameters */
    char p[400];
    snprintf(p, sizeof p, "%s/f_004.png", dir);
    assert_int_equal(access(p, R_OK), 0);
    /* everything renamed into place: 3 videos + 5 pattern frames + the frames folder */
    assert_int_equal(count_entries(dir), 3 + FR + 1);
    assert_int_equal(count_entries(sub), FR);
    tu_rmtree(dir);
}

static void test_bad_paths(void **state)
{
    (void)state;
    char dir[256], p[400];
    tu_tmpdir(dir, sizeof dir);
    dt_video_kind k;
    dt_err err = {0};
    const char *bad[] = {"%s/clip.avi", "%s/missing/clip.mp4", "%s/missing/", "%s/f_%%d_%%d.png", "%s/f_%%s.png", "%s/f_%%03d.jpg"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(p, sizeof p, bad[i], dir);
        dt_err_clear(&err);
        if (dt_video_check_writable(p, &k, &err) == DT_OK) fail_msg("%s was accepted", p);
        assert_non_null(strstr(err.msg, dir));
        assert_null(strchr(err.msg, '\n'));
    }
    snprintf(p, sizeof p, "%s/ok.webp", dir);
    assert_int_equal(dt_video_check_writable(p, &k, &err), DT_OK);
    assert_int_equal(k, DT_VIDEO_WEBP);
    /* odd size for yuv420p: fails, and leaves nothing behind */
    uint8_t px[3 * 3 * 3] = {0};
    dt_video_frames v = {1, 3, 3, 8, px, NULL, 0};
    snprintf(p, sizeof p, "%s/odd.mp4", dir);
    dt_err_clear(&err);
    assert_int_not_equal(dt_video_write(p, &v, &err), DT_OK);
    assert_int_equal(count_entries(dir), 0);
    tu_rmtree(dir);
}

/* Decoded videos are bounded before allocation: an animated WebP whose VP8X canvas says
 * 10,879,008 x 32 is refused with one line (via the API and `ditrt compare`, exit 2, no OOM);
 * DITRT_MAX_VIDEO_BYTES refuses a WebP, an MP4 and a frame folder whose frames exceed it, and
 * DITRT_MAX_IMAGE_PIXELS an MP4 whose frame is larger. */
static void test_bounds(void **state)
{
    (void)state;
    char dir[256], p[600], cmd[2400];
    tu_tmpdir(dir, sizeof dir);
    uint8_t *frames = make_frames();
    dt_video_frames v = {FR, W, H, 8, frames, NULL, 0};
    dt_err err = {0};
    dt_video out;
    dt_video_frames small = {2, 32, 32, 8, frames, NULL, 0}; /* frames that fit a 32-row canvas */
    snprintf(p, sizeof p, "%s/small.webp", dir);
    if (dt_video_write(p, &small, &err) != DT_OK) fail_msg("%s", err.msg);
    FILE *f = fopen(p, "rb");
    static uint8_t b[1 << 16];
    size_t n = fread(b, 1, sizeof b, f);
    fclose(f);
    assert_true(n < sizeof b && !memcmp(b + 12, "VP8X", 4));
    uint32_t cw = 10879008 - 1, ch = 32 - 1;
    for (int k = 0; k < 3; k++) { b[24 + k] = (uint8_t)(cw >> (8 * k)); b[27 + k] = (uint8_t)(ch >> (8 * k)); }
    snprintf(p, sizeof p, "%s/huge.webp", dir);
    tu_write_file(p, b, n);
    dt_err_clear(&err);
    assert_int_not_equal(dt_video_read(p, &out, &err), DT_OK);
    if (!strstr(err.msg, "image too large (10879008x32; the limit is 268435456 pixels")) fail_msg("%s", err.msg);
    assert_null(out.rgb);
    snprintf(cmd, sizeof cmd, "./ditrt compare %s %s > %s/out.txt 2>&1", p, p, dir);
    assert_int_equal(WEXITSTATUS(system(cmd)), 2);
    snprintf(cmd, sizeof cmd, "test $(wc -l < %s/out.txt) -eq 1 && grep -q 'image too large' %s/out.txt", dir, dir);
    assert_int_equal(system(cmd), 0);

    /* the total: FR frames of W x H x 3 bytes, one byte short is refused */
    const char *names[] = {"a.webp", "a.mp4", "f_%02d.png"};
    char lim[32];
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        if (dt_video_write(p, &v, &err) != DT_OK) fail_msg("%s", err.msg);
        snprintf(lim, sizeof lim, "%d", FR * W * H * 3 - 1);
        setenv("DITRT_MAX_VIDEO_BYTES", lim, 1);
        dt_err_clear(&err);
        assert_int_not_equal(dt_video_read(p, &out, &err), DT_OK);
        if (!strstr(err.msg, "video too large (") || !strstr(err.msg, "DITRT_MAX_VIDEO_BYTES")) fail_msg("%s: %s", p, err.msg);
        assert_null(out.rgb);
        snprintf(lim, sizeof lim, "%d", FR * W * H * 3);
        setenv("DITRT_MAX_VIDEO_BYTES", lim, 1);
        if (dt_video_read(p, &out, &err) != DT_OK) fail_msg("%s", err.msg);
        assert_int_equal(out.frames, FR);
        dt_video_free(&out);
        unsetenv("DITRT_MAX_VIDEO_BYTES");
    }
    snprintf(p, sizeof p, "%s/a.mp4", dir);
    setenv("DITRT_MAX_IMAGE_PIXELS", "3071", 1);
    dt_err_clear(&err);
    assert_int_not_equal(dt_video_read(p, &out, &err), DT_OK);
    if (!strstr(err.msg, "image too large (64x48; the limit is 3071")) fail_msg("%s", err.msg);
    unsetenv("DITRT_MAX_IMAGE_PIXELS");
    /* not an MP4 at all (no other demuxer is tried) */
    snprintf(p, sizeof p, "%s/list.mp4", dir);
    tu_write_file(p, "#EXTM3U\n#EXTINF:1,\nfile:/etc/passwd\n", 36);
    dt_err_clear(&err);
    assert_int_not_equal(dt_video_read(p, &out, &err), DT_OK);
    assert_non_null(strstr(err.msg, "not a readable MP4 file"));
    free(frames);
    tu_rmtree(dir);
}

/* `ditrt compare` on two videos: per-frame lines, means, thresholds on the means. */
static void test_cli_compare(void **state)
{
    (void)state;
    char dir[256], cmd[1200], p[600];
    tu_tmpdir(dir, sizeof dir);
    uint8_t *frames = make_frames();
    dt_video_frames v = {FR, W, H, 8, frames, meta, 2};
    dt_err err = {0};
    const char *names[] = {"a.mp4", "b.webp", "c_%02d.png"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        if (dt_video_write(p, &v, &err) != DT_OK) fail_msg("%s", err.msg);
    }
    snprintf(cmd, sizeof cmd, "./ditrt compare %s/c_%%02d.png %s/c_%%02d.png --min-psnr 100 > %s/out.txt", dir, dir, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "grep -q 'mean PSNR: inf dB' %s/out.txt && test $(grep -c '^frame' %s/out.txt) -eq %d", dir, dir, FR);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "./ditrt compare %s/a.mp4 %s/c_%%02d.png --min-psnr 25 >/dev/null", dir, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "./ditrt compare %s/b.webp %s/a.mp4 --min-psnr 60 >/dev/null 2>&1", dir, dir);
    assert_int_equal(WEXITSTATUS(system(cmd)), 1);
    /* frame counts differ: bad input, exit 2 */
    v.frames = FR - 1;
    snprintf(p, sizeof p, "%s/short.webp", dir);
    if (dt_video_write(p, &v, &err) != DT_OK) fail_msg("%s", err.msg);
    snprintf(cmd, sizeof cmd, "./ditrt compare %s/b.webp %s/short.webp >/dev/null 2>&1", dir, dir);
    assert_int_equal(WEXITSTATUS(system(cmd)), 2);
    free(frames);
    tu_rmtree(dir);
}

/* The public file API for videos: ditrt_video_save writes what dt_video_write (the CLI's writer
 * until now) writes, byte for byte; ditrt_video_load reads it back with the rate;
 * ditrt_compare_files gives the per-frame numbers and means `ditrt compare` prints; a diff
 * image is refused for videos and a bad fps or empty video before anything is written. */
static void test_api(void **state)
{
    (void)state;
    char dir[256], a[600], b[600], cmd[1600];
    tu_tmpdir(dir, sizeof dir);
    uint8_t *frames = make_frames();
    ditrt_video v = {FR, W, H, frames};
    ditrt_error err = {0};
    const char *names[] = {"clip.mp4", "clip.webp", "f_%03d.png"};
    for (int i = 0; i < 3; i++) {
        snprintf(a, sizeof a, "%s/api-%s", dir, names[i]);
        snprintf(b, sizeof b, "%s/ref-%s", dir, names[i]);
        if (ditrt_video_save(a, &v, 8, meta, 2, &err) != DITRT_OK) fail_msg("%s: %s", a, err.msg);
        dt_video_frames ref = {FR, W, H, 8, frames, meta, 2};
        assert_int_equal(dt_video_write(b, &ref, &err), DT_OK);
        if (i < 2) snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", a, b);
        else snprintf(cmd, sizeof cmd, "cd %s && for f in api-f_*.png; do cmp -s $f ref-${f#api-} || exit 1; done", dir);
        if (system(cmd) != 0) fail_msg("%s differs from dt_video_write's file", a);
        ditrt_video back;
        double fps = -1;
        if (ditrt_video_load(a, &back, &fps, &err) != DITRT_OK) fail_msg("%s: %s", a, err.msg);
        assert_int_equal(back.frames, FR);
        assert_int_equal(back.width, W);
        assert_int_equal(back.height, H);
        if (i == 2) {
            assert_true(fps == 0);
            assert_memory_equal(back.rgb, frames, (size_t)FR * W * H * 3); /* lossless */
        } else
            assert_true(fabs(fps - 8) < 1e-3);
        ditrt_video_free(&back);
        assert_null(back.rgb);
    }
    /* compare: the numbers the CLI prints */
    snprintf(a, sizeof a, "%s/api-clip.mp4", dir);
    snprintf(b, sizeof b, "%s/api-clip.webp", dir);
    ditrt_compare_result r;
    if (ditrt_compare_files(a, b, NULL, &r, &err) != DITRT_OK) fail_msg("%s", err.msg);
    assert_int_equal(r.frames, FR);
    assert_non_null(r.frame_psnr);
    snprintf(cmd, sizeof cmd, "./ditrt compare %s %s > %s/out.txt", a, b, dir);
    assert_int_equal(system(cmd), 0);
    char want[2048] = "", got[2048] = "", p[700];
    size_t len = 0;
    for (int f = 0; f < FR; f++)
        len += (size_t)snprintf(want + len, sizeof want - len, "frame %3d: PSNR %.4f dB, SSIM %.6f\n", f, r.frame_psnr[f], r.frame_ssim[f]);
    snprintf(want + len, sizeof want - len, "mean PSNR: %.4f dB\nmean SSIM: %.6f\n", r.psnr, r.ssim);
    snprintf(p, sizeof p, "%s/out.txt", dir);
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    got[fread(got, 1, sizeof got - 1, f)] = 0;
    fclose(f);
    assert_string_equal(got, want);
    ditrt_compare_result_free(&r);
    assert_null(r.frame_psnr);
    /* a frame pattern against itself: identical */
    snprintf(a, sizeof a, "%s/api-f_%%03d.png", dir);
    assert_int_equal(ditrt_compare_files(a, a, NULL, &r, &err), DITRT_OK);
    assert_true(isinf(r.psnr) && r.ssim == 1.0);
    ditrt_compare_result_free(&r);
    /* refusals */
    snprintf(p, sizeof p, "%s/d.png", dir);
    assert_int_equal(ditrt_compare_files(a, b, p, &r, &err), DITRT_EINVAL);
    assert_non_null(strstr(err.msg, "diff_path"));
    assert_int_equal(access(p, F_OK), -1);
    v.frames = FR - 1;
    snprintf(p, sizeof p, "%s/short.webp", dir);
    assert_int_equal(ditrt_video_save(p, &v, 8, NULL, 0, &err), DITRT_OK);
    assert_int_equal(ditrt_compare_files(b, p, NULL, &r, &err), DITRT_EINVAL);
    assert_non_null(strstr(err.msg, "short.webp"));
    snprintf(p, sizeof p, "%s/bad.mp4", dir);
    assert_int_equal(ditrt_video_save(p, &v, 0, NULL, 0, &err), DITRT_EINVAL);
    assert_non_null(strstr(err.msg, "fps"));
    v.frames = 0;
    assert_int_equal(ditrt_video_save(p, &v, 8, NULL, 0, &err), DITRT_EINVAL);
    assert_non_null(strstr(err.msg, "bad.mp4"));
    assert_int_equal(access(p, F_OK), -1);
    ditrt_video back = {1, 1, 1, NULL};
    assert_int_not_equal(ditrt_video_load("/nonexistent.mp4", &back, NULL, &err), DITRT_OK);
    assert_non_null(strstr(err.msg, "/nonexistent.mp4"));
    assert_int_equal(back.frames, 0);
    free(frames);
    tu_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_formats),
        cmocka_unit_test(test_bad_paths),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_cli_compare),
        cmocka_unit_test(test_api),
    };
    return cmocka_run_group_tests_name("video", tests, NULL, NULL);
}
