/* Image files and metrics (contract in image.h). PNG goes through libpng both ways; JPEG is
 * decoded by libjpeg-turbo; BMP is read by the small bounded reader below (uncompressed 8-, 24-
 * and 32-bit only). JPEG and BMP are written by stb_image_write (Debian libstb-dev), compiled
 * here as static functions so no other translation unit can clash with its symbols. stb_image
 * (the decoder) is not used: its JPEG decoder writes out of bounds on crafted files. */
#include "image.h"
#include "image_meta.h"
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <jpeglib.h> /* after stdio.h: it uses FILE */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <webp/decode.h>
#include <webp/encode.h>
#include <webp/mux.h>

/* stb declares every API function static; GCC reports the unused ones at the end of the file */
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

#define MAX_PIXELS (1 << 28) /* 16384 x 16384: the largest image dt_image_write takes */

typedef enum { FMT_NONE, FMT_PNG, FMT_JPEG, FMT_BMP, FMT_WEBP } img_format;

static img_format format_of(const char *path)
{
    const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
    if (!dot || (slash && dot < slash)) return FMT_NONE;
    if (!strcasecmp(dot, ".png")) return FMT_PNG;
    if (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg")) return FMT_JPEG;
    if (!strcasecmp(dot, ".bmp")) return FMT_BMP;
    if (!strcasecmp(dot, ".webp")) return FMT_WEBP;
    return FMT_NONE;
}

static dt_status check_format(const char *path, img_format *f, dt_err *err)
{
    *f = format_of(path);
    if (*f != FMT_NONE) return DT_OK;
    const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
    if (!dot || (slash && dot < slash))
        return dt_fail(err, DT_EINVAL, "%s: no image extension (expected .png, .jpg, .jpeg, .webp or .bmp)", path);
    return dt_fail(err, DT_EINVAL, "%s: unknown image extension \"%s\" (expected .png, .jpg, .jpeg, .webp or .bmp)", path, dot);
}

/* Creates the temp file next to path; *tmp receives its name. */
static dt_status open_temp(const char *path, char *tmp, size_t n, FILE **f, dt_err *err)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return dt_fail(err, DT_EIO, "%s: is a directory", path);
    if (snprintf(tmp, n, "%s.tmp.XXXXXX", path) >= (int)n)
        return dt_fail(err, DT_EINVAL, "%s: path too long", path);
    int fd = mkstemp(tmp);
    if (fd < 0) return dt_fail(err, DT_EIO, "%s: cannot create a file there: %s", path, strerror(errno));
    fchmod(fd, 0644);
    if (!(*f = fdopen(fd, "wb"))) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return dt_fail(err, DT_EIO, "%s: cannot create a file there: %s", path, strerror(e));
    }
    return DT_OK;
}

dt_status dt_image_check_writable(const char *path, dt_err *err)
{
    img_format fmt;
    DT_TRY(check_format(path, &fmt, err));
    char tmp[4200];
    FILE *f;
    DT_TRY(open_temp(path, tmp, sizeof tmp, &f, err));
    fclose(f);
    unlink(tmp);
    return DT_OK;
}

/* ---- PNG ---- */

typedef struct {
    jmp_buf jb;
    char msg[200];
} png_ctx;

static void png_on_error(png_structp p, png_const_charp msg)
{
    png_ctx *c = png_get_error_ptr(p);
    snprintf(c->msg, sizeof c->msg, "%s", msg);
    longjmp(c->jb, 1);
}

static void png_on_warning(png_structp p, png_const_charp msg) { (void)p; (void)msg; }

static int is_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80) return 0;
    return 1;
}

static dt_status check_text(const char *path, const dt_image_text *text, int ntext, dt_err *err)
{
    for (int i = 0; i < ntext; i++) {
        size_t n = text[i].key ? strlen(text[i].key) : 0;
        int ok = n >= 1 && n <= 79 && text[i].value;
        for (size_t k = 0; ok && k < n; k++) {
            unsigned char ch = (unsigned char)text[i].key[k];
            ok = (ch >= 32 && ch <= 126) || ch >= 161;
        }
        if (!ok)
            return dt_fail(err, DT_EINVAL, "%s: PNG text key \"%s\" must be 1 to 79 printable characters with a value",
                           path, text[i].key ? text[i].key : "(null)");
    }
    return DT_OK;
}

/* The libpng calls live apart: after setjmp only volatile-free locals may be relied on. */
static int png_encode(FILE *f, const uint8_t *rgb, int w, int h, const dt_image_text *text, int ntext, png_ctx *c)
{
    png_structp p = png_create_write_struct(PNG_LIBPNG_VER_STRING, c, png_on_error, png_on_warning);
    png_infop info = p ? png_create_info_struct(p) : NULL;
    png_textp chunks = ntext > 0 ? calloc((size_t)ntext, sizeof *chunks) : NULL;
    if (!p || !info || (ntext > 0 && !chunks)) {
        snprintf(c->msg, sizeof c->msg, "out of memory");
        png_destroy_write_struct(&p, &info);
        free(chunks);
        return 0;
    }
    if (setjmp(c->jb)) {
        png_destroy_write_struct(&p, &info);
        free(chunks);
        return 0;
    }
    png_init_io(p, f);
    png_set_IHDR(p, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    for (int i = 0; i < ntext; i++) {
        int plain = is_ascii(text[i].value);
        chunks[i].compression = plain ? PNG_TEXT_COMPRESSION_NONE : PNG_ITXT_COMPRESSION_NONE;
        chunks[i].key = (png_charp)text[i].key;
        chunks[i].text = (png_charp)text[i].value;
        chunks[i].text_length = plain ? strlen(text[i].value) : 0;
        chunks[i].itxt_length = plain ? 0 : strlen(text[i].value);
    }
    if (ntext > 0) png_set_text(p, info, chunks, ntext);
    png_write_info(p, info);
    for (int y = 0; y < h; y++) png_write_row(p, (png_const_bytep)(rgb + (size_t)y * w * 3));
    png_write_end(p, info);
    png_destroy_write_struct(&p, &info);
    free(chunks);
    return 1;
}

/* ---- JPEG and WebP: encoded in memory, the metadata blocks added, then written ---- */

typedef struct {
    uint8_t *p;
    size_t n, cap;
    int fail;
} membuf;

static void mem_put(membuf *m, const void *data, size_t n)
{
    if (m->fail || !n) return;
    if (m->n + n > m->cap) {
        size_t cap = (m->n + n) * 2;
        uint8_t *q = realloc(m->p, cap);
        if (!q) { m->fail = 1; return; }
        m->p = q;
        m->cap = cap;
    }
    memcpy(m->p + m->n, data, n);
    m->n += n;
}

static void stb_to_mem(void *ctx, void *data, int size) { mem_put(ctx, data, (size_t)size); }

/* One JPEG marker segment (payload at most 65533 bytes). */
static void jpeg_segment(membuf *m, int marker, const uint8_t *head, size_t nh, const uint8_t *data, size_t n)
{
    uint8_t h[4] = {0xff, (uint8_t)marker, (uint8_t)((n + nh + 2) >> 8), (uint8_t)(n + nh + 2)};
    mem_put(m, h, 4);
    mem_put(m, head, nh);
    mem_put(m, data, n);
}

/* stb's JPEG with the text as an EXIF UserComment (APP1) and a COM segment, after SOI and
 * stb's APP0 (JFIF): what PIL, exiftool and the web UI's PNG Info read. */
static int jpeg_encode(membuf *out, const uint8_t *rgb, int w, int h, const char *text)
{
    membuf j = {0};
    int ok = stbi_write_jpg_to_func(stb_to_mem, &j, w, h, 3, rgb, 95) && !j.fail && j.n > 4;
    size_t head = 2; /* SOI */
    if (ok && j.p[2] == 0xff && j.p[3] == 0xe0 && j.n > 6) head = 4 + ((size_t)j.p[4] << 8 | j.p[5]);
    ok = ok && head <= j.n;
    if (ok) {
        mem_put(out, j.p, head);
        if (text) {
            size_t n = 0, tl = strlen(text);
            uint8_t *exif = dt_exif_user_comment(text, 65533 - 6, &n);
            if (!exif) out->fail = 1;
            else jpeg_segment(out, 0xe1, (const uint8_t *)"Exif\0\0", 6, exif, n);
            free(exif);
            while (tl > 65533 || (tl && ((unsigned char)text[tl] & 0xc0) == 0x80 && tl < strlen(text))) tl--; /* at a character */
            jpeg_segment(out, 0xfe, NULL, 0, (const uint8_t *)text, tl);
        }
        mem_put(out, j.p + head, j.n - head);
    }
    free(j.p);
    return ok && !out->fail;
}

/* A still WebP (lossy, quality 90, as txt2vid's) with the text in EXIF (UserComment) and the
 * pairs as "key: value" lines in XMP, as txt2vid writes them. */
static int webp_encode_still(membuf *out, const uint8_t *rgb, int w, int h, const char *text, const char *lines)
{
    uint8_t *enc = NULL;
    size_t n = WebPEncodeRGB(rgb, w, h, w * 3, 90.0f, &enc);
    if (!n) return 0;
    WebPData img = {enc, n}, done = {0};
    WebPMux *mux = WebPMuxCreate(&img, 0);
    int ok = mux != NULL;
    size_t en = 0;
    uint8_t *exif = text ? dt_exif_user_comment(text, 1u << 24, &en) : NULL;
    WebPData ex = {exif, en}, xmp = {(const uint8_t *)lines, lines ? strlen(lines) : 0};
    if (ok && text) ok = exif && WebPMuxSetChunk(mux, "EXIF", &ex, 0) == WEBP_MUX_OK;
    if (ok && lines) ok = WebPMuxSetChunk(mux, "XMP ", &xmp, 0) == WEBP_MUX_OK;
    if (ok) ok = WebPMuxAssemble(mux, &done) == WEBP_MUX_OK;
    if (ok) mem_put(out, done.bytes, done.size);
    WebPDataClear(&done);
    WebPMuxDelete(mux);
    WebPFree(enc);
    free(exif);
    return ok && !out->fail;
}

/* "key: value" lines of every pair (WebP's XMP, as the video writer's). */
static char *meta_lines(const dt_image_text *text, int ntext, int *oom)
{
    int has_params = 0;
    for (int i = 0; i < ntext; i++) has_params |= !strcmp(text[i].key, "parameters");
    if (!has_params) return dt_image_meta_text(text, ntext, oom);
    dt_image_text *t = malloc((size_t)ntext * sizeof *t); /* the pairs without the parameters text */
    int k = 0;
    if (!t) { *oom = 1; return NULL; }
    for (int i = 0; i < ntext; i++)
        if (strcmp(text[i].key, "parameters")) t[k++] = text[i];
    char *s = dt_image_meta_text(t, k, oom);
    free(t);
    return s;
}

static int encode_other(FILE *f, img_format fmt, const uint8_t *rgb, int w, int h, const dt_image_text *text, int ntext,
                        png_ctx *c)
{
    int oom = 0, oom2 = 0;
    char *t = dt_image_meta_text(text, ntext, &oom), *lines = fmt == FMT_WEBP ? meta_lines(text, ntext, &oom2) : NULL;
    membuf m = {0};
    int ok = !oom && !oom2 && (fmt == FMT_JPEG ? jpeg_encode(&m, rgb, w, h, t) : webp_encode_still(&m, rgb, w, h, t, lines));
    if (ok) ok = fwrite(m.p, 1, m.n, f) == m.n;
    if (!ok && (oom || oom2 || m.fail)) snprintf(c->msg, sizeof c->msg, "out of memory");
    free(m.p);
    free(t);
    free(lines);
    return ok;
}

static void stb_to_file(void *ctx, void *data, int size)
{
    FILE *f = ctx;
    if (fwrite(data, 1, (size_t)size, f) != (size_t)size) { /* ferror(f) reports it */ }
}

dt_status dt_image_write(const char *path, const uint8_t *rgb, int width, int height,
                         const dt_image_text *text, int ntext, dt_err *err)
{
    img_format fmt;
    DT_TRY(check_format(path, &fmt, err));
    if (width < 1 || height < 1 || (int64_t)width * height > MAX_PIXELS)
        return dt_fail(err, DT_EINVAL, "%s: bad image size %dx%d", path, width, height);
    if (fmt == FMT_PNG) DT_TRY(check_text(path, text, ntext, err));
    char tmp[4200];
    FILE *f;
    DT_TRY(open_temp(path, tmp, sizeof tmp, &f, err));
    png_ctx c = {.msg = ""};
    int ok;
    if (fmt == FMT_PNG) ok = png_encode(f, rgb, width, height, text, ntext, &c);
    else if (fmt == FMT_JPEG || fmt == FMT_WEBP) ok = encode_other(f, fmt, rgb, width, height, text, ntext, &c);
    else ok = stbi_write_bmp_to_func(stb_to_file, f, width, height, 3, rgb);
    ok = ok && !ferror(f);
    int e = errno;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        if (ok) e = errno;
        unlink(tmp);
        if (c.msg[0]) return dt_fail(err, DT_EIO, "%s: %s encoder: %s", path, fmt == FMT_PNG ? "PNG" : fmt == FMT_JPEG ? "JPEG" : "WebP", c.msg);
        return dt_fail(err, DT_EIO, "%s: cannot write: %s", path, strerror(e ? e : EIO));
    }
    return DT_OK;
}

/* ---- limits ---- */

/* A positive integer from the environment variable `name`, or dflt when it is unset or empty. */
static dt_status env_limit(const char *name, uint64_t dflt, uint64_t *out, dt_err *err)
{
    const char *v = getenv(name);
    *out = dflt;
    if (!v || !*v) return DT_OK;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || *end || x == 0 || v[0] == '-' || v[0] == '+')
        return dt_fail(err, DT_EINVAL, "%s=\"%s\": not a positive integer", name, v);
    *out = x;
    return DT_OK;
}

dt_status dt_image_max_pixels(uint64_t *out, dt_err *err)
{
    return env_limit("DITRT_MAX_IMAGE_PIXELS", DT_IMAGE_MAX_PIXELS_DEFAULT, out, err);
}

dt_status dt_video_max_bytes(uint64_t *out, dt_err *err)
{
    return env_limit("DITRT_MAX_VIDEO_BYTES", DT_VIDEO_MAX_BYTES_DEFAULT, out, err);
}

dt_status dt_image_check_size(const char *path, uint64_t width, uint64_t height, dt_err *err)
{
    uint64_t max;
    DT_TRY(dt_image_max_pixels(&max, err));
    if (width < 1 || height < 1)
        return dt_fail(err, DT_EFORMAT, "%s: bad image size %" PRIu64 "x%" PRIu64, path, width, height);
    /* each side below 2^31 (an int), so the product cannot overflow 64 bits */
    if (width > INT_MAX / 3 || height > INT_MAX || width * height > max)
        return dt_fail(err, DT_EFORMAT,
                       "%s: image too large (%" PRIu64 "x%" PRIu64 "; the limit is %" PRIu64
                       " pixels, set by DITRT_MAX_IMAGE_PIXELS)", path, width, height, max);
    return DT_OK;
}

/* ---- reading ---- */

typedef struct {
    const uint8_t *data;
    size_t n, pos;
} mem_reader;

static void png_read_mem(png_structp p, png_bytep out, size_t len)
{
    mem_reader *r = png_get_io_ptr(p);
    if (len > r->n - r->pos) png_error(p, "truncated file");
    memcpy(out, r->data + r->pos, len);
    r->pos += len;
}

/* 0: decoded; -1: failed (c->msg); 1: larger than max_pixels (*w, *h set). */
static int png_decode(const uint8_t *data, size_t n, uint64_t max_pixels, dt_image *img, png_ctx *c,
                      png_uint_32 *w_out, png_uint_32 *h_out)
{
    png_structp p = png_create_read_struct(PNG_LIBPNG_VER_STRING, c, png_on_error, png_on_warning);
    png_infop info = p ? png_create_info_struct(p) : NULL;
    png_bytep *volatile rows = NULL; /* assigned after setjmp, freed by the longjmp path */
    mem_reader r = {data, n, 0};
    if (!p || !info) {
        snprintf(c->msg, sizeof c->msg, "out of memory");
        png_destroy_read_struct(&p, &info, NULL);
        return -1;
    }
    if (setjmp(c->jb)) {
        png_destroy_read_struct(&p, &info, NULL);
        free(rows);
        free(img->rgb);
        img->rgb = NULL;
        return -1;
    }
    png_set_read_fn(p, &r, png_read_mem);
    png_set_user_limits(p, 0x7fffffff, 0x7fffffff);
    png_read_info(p, info);
    png_uint_32 w = png_get_image_width(p, info), h = png_get_image_height(p, info);
    *w_out = w;
    *h_out = h;
    if ((uint64_t)w * h > max_pixels || w > INT_MAX / 3 || h > INT_MAX) {
        png_destroy_read_struct(&p, &info, NULL);
        return 1;
    }
    png_set_expand(p);        /* palette -> RGB, gray < 8 bits -> 8, tRNS -> alpha */
    png_set_scale_16(p);      /* 16 -> 8 bits, rounded */
    png_set_strip_alpha(p);
    png_set_gray_to_rgb(p);
    png_set_interlace_handling(p);
    png_read_update_info(p, info);
    if (png_get_rowbytes(p, info) != (size_t)w * 3) png_error(p, "unexpected row layout after conversion to RGB8");
    img->rgb = malloc((size_t)w * h * 3);
    rows = malloc(h * sizeof *rows);
    if (!img->rgb || !rows) png_error(p, "out of memory");
    for (png_uint_32 y = 0; y < h; y++) rows[y] = img->rgb + (size_t)y * w * 3;
    png_read_image(p, rows);
    png_read_end(p, NULL);
    png_destroy_read_struct(&p, &info, NULL);
    free(rows);
    img->width = (int)w;
    img->height = (int)h;
    return 0;
}

/* libjpeg-turbo: errors and corrupt-data warnings (a truncated or damaged stream) both end the
 * decode through longjmp; progressive files are limited to JPEG_MAX_SCANS scans (each scan
 * re-reads the whole coefficient buffer, so a file of many tiny scans is a time bomb) and the
 * decoder's own memory to about 8 bytes per allowed pixel. */
#define JPEG_MAX_SCANS 500

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX + 64];
    uint8_t *rgb;
    unsigned w, h;
} jpeg_ctx;

static void jpeg_on_error(j_common_ptr j)
{
    jpeg_ctx *c = (jpeg_ctx *)j->err;
    j->err->format_message(j, c->msg);
    longjmp(c->jb, 1);
}

static void jpeg_on_message(j_common_ptr j, int level)
{
    if (level < 0) jpeg_on_error(j); /* a warning: corrupt or truncated data */
}

static void jpeg_on_progress(j_common_ptr j)
{
    j_decompress_ptr d = (j_decompress_ptr)j;
    if (j->is_decompressor && d->progressive_mode && d->input_scan_number > JPEG_MAX_SCANS) {
        jpeg_ctx *c = (jpeg_ctx *)j->err;
        snprintf(c->msg, sizeof c->msg, "more than %d progressive scans", JPEG_MAX_SCANS);
        longjmp(c->jb, 1);
    }
}

/* 0: decoded into c->rgb; -1: failed (c->msg); 1: larger than max_pixels (c->w, c->h set). */
static int jpeg_decode(const uint8_t *data, size_t n, uint64_t max_pixels, jpeg_ctx *c)
{
    struct jpeg_decompress_struct d;
    struct jpeg_progress_mgr prog = {.progress_monitor = jpeg_on_progress};
    d.err = jpeg_std_error(&c->pub);
    c->pub.error_exit = jpeg_on_error;
    c->pub.emit_message = jpeg_on_message;
    if (setjmp(c->jb)) {
        jpeg_destroy_decompress(&d);
        free(c->rgb);
        c->rgb = NULL;
        return -1;
    }
    jpeg_create_decompress(&d);
    d.progress = &prog;
    d.mem->max_memory_to_use = (long)(max_pixels > (LONG_MAX - (16L << 20)) / 8 ? LONG_MAX : max_pixels * 8 + (16L << 20));
    jpeg_mem_src(&d, data, (unsigned long)n);
    jpeg_read_header(&d, TRUE);
    c->w = d.image_width;
    c->h = d.image_height;
    if ((uint64_t)c->w * c->h > max_pixels || c->w > INT_MAX / 3 || c->h > INT_MAX) {
        jpeg_destroy_decompress(&d);
        return 1;
    }
    d.out_color_space = JCS_RGB;
    jpeg_start_decompress(&d);
    if (d.output_components != 3 || d.output_width != c->w || d.output_height != c->h) {
        snprintf(c->msg, sizeof c->msg, "unexpected output layout");
        longjmp(c->jb, 1);
    }
    c->rgb = malloc((size_t)c->w * c->h * 3);
    if (!c->rgb) {
        snprintf(c->msg, sizeof c->msg, "out of memory");
        longjmp(c->jb, 1);
    }
    while (d.output_scanline < d.output_height) {
        JSAMPROW row = c->rgb + (size_t)d.output_scanline * c->w * 3;
        jpeg_read_scanlines(&d, &row, 1);
    }
    jpeg_finish_decompress(&d);
    jpeg_destroy_decompress(&d);
    return 0;
}

static uint32_t le16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t le32(const uint8_t *p) { return le16(p) | le16(p + 2) << 16; }

/* Windows BMP: BITMAPINFOHEADER or its V2..V5 extensions, one plane, uncompressed (BI_RGB) 8-bit
 * palette, 24-bit BGR or 32-bit BGRX (BI_RGB, or BI_BITFIELDS with the standard masks); rows
 * bottom-up (positive height) or top-down (negative). Everything else is refused by name. */
static dt_status bmp_decode(const char *path, const uint8_t *b, size_t n, dt_image *img, dt_err *err)
{
    if (n < 14 + 40) return dt_fail(err, DT_EFORMAT, "%s: damaged BMP: truncated header", path);
    uint64_t off = le32(b + 10), hsize = le32(b + 14);
    if (hsize != 40 && hsize != 52 && hsize != 56 && hsize != 108 && hsize != 124)
        return dt_fail(err, DT_EFORMAT, "%s: unsupported BMP header (%" PRIu64 " bytes; only BITMAPINFOHEADER and its V2-V5 forms)", path, hsize);
    if (14 + hsize > n) return dt_fail(err, DT_EFORMAT, "%s: damaged BMP: truncated header", path);
    int64_t w = (int32_t)le32(b + 18), h = (int32_t)le32(b + 22);
    uint32_t planes = le16(b + 26), bpp = le16(b + 28), comp = le32(b + 30), used = le32(b + 46);
    int top_down = h < 0;
    if (top_down) h = -h;
    if (planes != 1) return dt_fail(err, DT_EFORMAT, "%s: damaged BMP: %u planes", path, planes);
    int bitfields = comp == 3 && bpp == 32;
    if (bitfields) {
        if (14 + 40 + 12 > n) return dt_fail(err, DT_EFORMAT, "%s: damaged BMP: truncated header", path);
        if (le32(b + 54) != 0xff0000u || le32(b + 58) != 0xff00u || le32(b + 62) != 0xffu)
            return dt_fail(err, DT_EFORMAT, "%s: unsupported BMP colour masks (only 8-bit R, G, B)", path);
    }
    if (!((comp == 0 && (bpp == 8 || bpp == 24 || bpp == 32)) || bitfields))
        return dt_fail(err, DT_EFORMAT, "%s: unsupported BMP (%u bits per pixel, compression %u; only uncompressed 8, 24 or 32 bits)",
                       path, bpp, comp);
    if (w < 1 || h < 1) return dt_fail(err, DT_EFORMAT, "%s: bad image size %" PRId64 "x%" PRId64, path, w, h);
    DT_TRY(dt_image_check_size(path, (uint64_t)w, (uint64_t)h, err));
    uint64_t stride = ((uint64_t)w * bpp + 31) / 32 * 4; /* w < 2^31: no overflow */
    const uint8_t *pal = NULL;
    uint64_t npal = 0;
    if (bpp == 8) {
        npal = used ? used : 256;
        uint64_t pal_at = 14 + hsize;
        if (npal > 256 || pal_at + npal * 4 > n)
            return dt_fail(err, DT_EFORMAT, "%s: damaged BMP: bad palette (%" PRIu64 " colours)", path, npal);
        pal = b + pal_at;
    }
    if (off > n || stride * (uint64_t)h > n - off)
        return dt_fail(err, DT_EFORMAT, "%s: damaged BMP: pixel data beyond the end of the file", path);
    img->rgb = malloc((size_t)w * (size_t)h * 3);
    if (!img->rgb) return dt_fail(err, DT_ENOMEM, "%s: out of memory", path);
    for (int64_t y = 0; y < h; y++) {
        const uint8_t *row = b + off + stride * (uint64_t)(top_down ? y : h - 1 - y);
        uint8_t *d = img->rgb + (size_t)y * (size_t)w * 3;
        for (int64_t x = 0; x < w; x++, d += 3) {
            const uint8_t *px;
            if (bpp == 8) {
                if (row[x] >= npal) {
                    dt_image_free(img);
                    return dt_fail(err, DT_EFORMAT, "%s: damaged BMP: palette index %u of %" PRIu64 " colours", path, row[x], npal);
                }
                px = pal + 4 * row[x];
            } else {
                px = row + x * (bpp / 8);
            }
            d[0] = px[2];
            d[1] = px[1];
            d[2] = px[0];
        }
    }
    img->width = (int)w;
    img->height = (int)h;
    return DT_OK;
}

/* A still WebP (the first frame of an animated one is refused: use the video reader). */
static dt_status webp_decode(const char *path, const uint8_t *data, size_t n, dt_image *img, dt_err *err)
{
    WebPBitstreamFeatures ft;
    if (WebPGetFeatures(data, n, &ft) != VP8_STATUS_OK) return dt_fail(err, DT_EFORMAT, "%s: damaged WebP", path);
    if (ft.has_animation) return dt_fail(err, DT_EFORMAT, "%s: an animated WebP (read it as a video)", path);
    DT_TRY(dt_image_check_size(path, (uint64_t)ft.width, (uint64_t)ft.height, err));
    size_t bytes = (size_t)ft.width * ft.height * 3;
    uint8_t *rgb = malloc(bytes);
    if (!rgb) return dt_fail(err, DT_ENOMEM, "%s: out of memory", path);
    if (!WebPDecodeRGBInto(data, n, rgb, bytes, ft.width * 3)) {
        free(rgb);
        return dt_fail(err, DT_EFORMAT, "%s: damaged WebP", path);
    }
    *img = (dt_image){ft.width, ft.height, rgb};
    return DT_OK;
}

dt_status dt_image_decode(const char *path, const uint8_t *data, size_t n, dt_image *img, dt_err *err)
{
    *img = (dt_image){0};
    uint64_t max;
    DT_TRY(dt_image_max_pixels(&max, err));
    if (n >= 8 && !png_sig_cmp(data, 0, 8)) {
        png_ctx c = {.msg = ""};
        png_uint_32 w = 0, h = 0;
        int rc = png_decode(data, n, max, img, &c, &w, &h);
        if (rc == 1) return dt_image_check_size(path, w, h, err);
        if (rc) return dt_fail(err, DT_EFORMAT, "%s: damaged PNG: %s", path, c.msg);
        return DT_OK;
    }
    if (n >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff) {
        if (n > ULONG_MAX) return dt_fail(err, DT_EFORMAT, "%s: JPEG too large", path);
        jpeg_ctx c = {.msg = ""};
        int rc = jpeg_decode(data, n, max, &c);
        if (rc == 1) return dt_image_check_size(path, c.w, c.h, err);
        if (rc) return dt_fail(err, DT_EFORMAT, "%s: damaged JPEG: %s", path, c.msg);
        img->rgb = c.rgb;
        img->width = (int)c.w;
        img->height = (int)c.h;
        return DT_OK;
    }
    if (n >= 2 && data[0] == 'B' && data[1] == 'M') return bmp_decode(path, data, n, img, err);
    if (n >= 12 && !memcmp(data, "RIFF", 4) && !memcmp(data + 8, "WEBP", 4)) return webp_decode(path, data, n, img, err);
    return dt_fail(err, DT_EFORMAT, "%s: not a PNG, JPEG, WebP or BMP image", path);
}

/* Image files are read whole: at most DT_IMAGE_MAX_FILE bytes. */
#define DT_IMAGE_MAX_FILE (1L << 30)

dt_status dt_image_read(const char *path, dt_image *img, dt_err *err)
{
    *img = (dt_image){0};
    FILE *f = fopen(path, "rb");
    if (!f) return dt_fail(err, DT_EIO, "%s: cannot open: %s", path, strerror(errno));
    long len = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (len < 0) {
        int e = errno;
        fclose(f);
        return dt_fail(err, DT_EIO, "%s: cannot read: %s", path, strerror(e));
    }
    if (len > DT_IMAGE_MAX_FILE) {
        fclose(f);
        return dt_fail(err, DT_EFORMAT, "%s: file too large for an image (%ld bytes; at most %ld)", path, len, DT_IMAGE_MAX_FILE);
    }
    rewind(f);
    uint8_t *buf = malloc(len ? (size_t)len : 1);
    if (!buf) {
        fclose(f);
        return dt_fail(err, DT_ENOMEM, "%s: out of memory", path);
    }
    size_t got = fread(buf, 1, (size_t)len, f);
    int e = ferror(f) ? errno : 0;
    fclose(f);
    if (got != (size_t)len) {
        free(buf);
        return dt_fail(err, DT_EIO, "%s: cannot read: %s", path, e ? strerror(e) : "file changed while reading");
    }
    dt_status s = dt_image_decode(path, buf, got, img, err);
    free(buf);
    return s;
}

void dt_image_free(dt_image *img)
{
    if (!img) return;
    free(img->rgb);
    *img = (dt_image){0};
}

/* ---- conversion and metrics ---- */

void dt_image_from_float(const float *chw, int height, int width, uint8_t *rgb)
{
    size_t plane = (size_t)height * width;
    for (int c = 0; c < 3; c++) {
        const float *x = chw + c * plane;
        for (size_t i = 0; i < plane; i++) {
            float v = x[i] / 2.0f + 0.5f;
            v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v; /* NaN stays NaN */
            float r = nearbyintf(v * 255.0f);
            rgb[i * 3 + c] = r == r ? (uint8_t)r : 0;
        }
    }
}

double dt_image_psnr(const uint8_t *a, const uint8_t *b, int width, int height)
{
    size_t n = (size_t)width * height * 3;
    uint64_t sse = 0;
    for (size_t i = 0; i < n; i++) {
        int d = (int)a[i] - (int)b[i];
        sse += (uint64_t)(d * d);
    }
    if (!sse) return INFINITY;
    double mse = (double)sse / (double)n;
    return 10.0 * log10(255.0 * 255.0 / mse);
}

#define SSIM_R 5 /* window radius: 11 taps */

/* Valid-region Gaussian filtering of one channel's x, y, x², y², xy: rows first into t
 * [h][w-10][5], then columns into the SSIM map, summed. */
static double ssim_channel(const uint8_t *a, const uint8_t *b, int w, int h, int c, const double *g, double *t)
{
    int ow = w - 2 * SSIM_R, oh = h - 2 * SSIM_R;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < ow; x++) {
            double s[5] = {0};
            for (int k = 0; k < 2 * SSIM_R + 1; k++) {
                size_t i = ((size_t)y * w + x + k) * 3 + c;
                double p = a[i], q = b[i];
                s[0] += g[k] * p;
                s[1] += g[k] * q;
                s[2] += g[k] * p * p;
                s[3] += g[k] * q * q;
                s[4] += g[k] * p * q;
            }
            memcpy(t + ((size_t)y * ow + x) * 5, s, sizeof s);
        }
    const double c1 = (0.01 * 255) * (0.01 * 255), c2 = (0.03 * 255) * (0.03 * 255);
    double total = 0;
    for (int y = 0; y < oh; y++)
        for (int x = 0; x < ow; x++) {
            double m[5] = {0};
            for (int k = 0; k < 2 * SSIM_R + 1; k++) {
                const double *r = t + ((size_t)(y + k) * ow + x) * 5;
                for (int j = 0; j < 5; j++) m[j] += g[k] * r[j];
            }
            double mx = m[0], my = m[1];
            double vx = m[2] - mx * mx, vy = m[3] - my * my, cxy = m[4] - mx * my;
            total += ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2));
        }
    return total / ((double)ow * oh);
}

dt_status dt_image_ssim(const uint8_t *a, const uint8_t *b, int width, int height, double *out, dt_err *err)
{
    *out = NAN;
    if (width < 2 * SSIM_R + 1 || height < 2 * SSIM_R + 1) return DT_OK;
    double g[2 * SSIM_R + 1], sum = 0;
    for (int k = -SSIM_R; k <= SSIM_R; k++) sum += g[k + SSIM_R] = exp(-(double)(k * k) / (2 * 1.5 * 1.5));
    for (int k = 0; k < 2 * SSIM_R + 1; k++) g[k] /= sum; /* separable: the 2-D window sums to 1 */
    double *t = malloc((size_t)height * (width - 2 * SSIM_R) * 5 * sizeof *t);
    if (!t) return dt_fail(err, DT_ENOMEM, "SSIM: out of memory for a %dx%d image", width, height);
    double s = 0;
    for (int c = 0; c < 3; c++) s += ssim_channel(a, b, width, height, c, g, t);
    free(t);
    *out = s / 3;
    return DT_OK;
}
