/* Image files and metrics (contract in image.h). PNG goes through libpng; JPEG and BMP through
 * stb_image_write / stb_image (Debian libstb-dev), compiled here as static functions so no
 * other translation unit can clash with their symbols. */
#include "image.h"
#include <errno.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* stb declares every API function static; GCC reports the unused ones at the end of the file */
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#include <stb/stb_image_write.h>
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_ONLY_JPEG
#define STBI_ONLY_BMP
#define STBI_NO_STDIO
#include <stb/stb_image.h>
#pragma GCC diagnostic pop

#define MAX_PIXELS (1 << 28) /* 16384 x 16384: bounds what a corrupt header can make us allocate */

typedef enum { FMT_NONE, FMT_PNG, FMT_JPEG, FMT_BMP } img_format;

static img_format format_of(const char *path)
{
    const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
    if (!dot || (slash && dot < slash)) return FMT_NONE;
    if (!strcasecmp(dot, ".png")) return FMT_PNG;
    if (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg")) return FMT_JPEG;
    if (!strcasecmp(dot, ".bmp")) return FMT_BMP;
    return FMT_NONE;
}

static dt_status check_format(const char *path, img_format *f, dt_err *err)
{
    *f = format_of(path);
    if (*f != FMT_NONE) return DT_OK;
    const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
    if (!dot || (slash && dot < slash))
        return dt_fail(err, DT_EINVAL, "%s: no image extension (expected .png, .jpg, .jpeg or .bmp)", path);
    return dt_fail(err, DT_EINVAL, "%s: unknown image extension \"%s\" (expected .png, .jpg, .jpeg or .bmp)", path, dot);
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
    else if (fmt == FMT_JPEG) ok = stbi_write_jpg_to_func(stb_to_file, f, width, height, 3, rgb, 95);
    else ok = stbi_write_bmp_to_func(stb_to_file, f, width, height, 3, rgb);
    ok = ok && !ferror(f);
    int e = errno;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        if (ok) e = errno;
        unlink(tmp);
        if (c.msg[0]) return dt_fail(err, DT_EIO, "%s: PNG encoder: %s", path, c.msg);
        return dt_fail(err, DT_EIO, "%s: cannot write: %s", path, strerror(e ? e : EIO));
    }
    return DT_OK;
}

/* ---- reading ---- */

static int png_decode(FILE *f, dt_image *img, png_ctx *c)
{
    png_structp p = png_create_read_struct(PNG_LIBPNG_VER_STRING, c, png_on_error, png_on_warning);
    png_infop info = p ? png_create_info_struct(p) : NULL;
    png_bytep *volatile rows = NULL; /* assigned after setjmp, freed by the longjmp path */
    if (!p || !info) {
        snprintf(c->msg, sizeof c->msg, "out of memory");
        png_destroy_read_struct(&p, &info, NULL);
        return 0;
    }
    if (setjmp(c->jb)) {
        png_destroy_read_struct(&p, &info, NULL);
        free(rows);
        free(img->rgb);
        img->rgb = NULL;
        return 0;
    }
    png_init_io(p, f);
    png_set_user_limits(p, 1 << 16, 1 << 16);
    png_read_info(p, info);
    png_uint_32 w = png_get_image_width(p, info), h = png_get_image_height(p, info);
    if ((uint64_t)w * h > MAX_PIXELS) png_error(p, "image too large");
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
    return 1;
}

static dt_status read_all(const char *path, FILE *f, unsigned char **buf, size_t *n, dt_err *err)
{
    if (fseek(f, 0, SEEK_END) != 0) return dt_fail(err, DT_EIO, "%s: cannot read: %s", path, strerror(errno));
    long len = ftell(f);
    if (len < 0 || len > (1L << 30)) return dt_fail(err, DT_EFORMAT, "%s: not an image (size %ld)", path, len);
    rewind(f);
    *buf = malloc(len ? (size_t)len : 1);
    if (!*buf) return dt_fail(err, DT_ENOMEM, "%s: out of memory", path);
    *n = fread(*buf, 1, (size_t)len, f);
    if (*n != (size_t)len) {
        free(*buf);
        *buf = NULL;
        return dt_fail(err, DT_EIO, "%s: cannot read: %s", path, strerror(errno));
    }
    return DT_OK;
}

static dt_status stb_decode(const char *path, FILE *f, dt_image *img, dt_err *err)
{
    unsigned char *buf = NULL;
    size_t n = 0;
    DT_TRY(read_all(path, f, &buf, &n, err));
    int w, h, comp;
    int ok = n <= 0x7fffffff && stbi_info_from_memory(buf, (int)n, &w, &h, &comp);
    if (ok && (int64_t)w * h > MAX_PIXELS) {
        free(buf);
        return dt_fail(err, DT_EFORMAT, "%s: image too large (%dx%d)", path, w, h);
    }
    img->rgb = ok ? stbi_load_from_memory(buf, (int)n, &w, &h, &comp, 3) : NULL;
    free(buf);
    if (!img->rgb) return dt_fail(err, DT_EFORMAT, "%s: not a PNG, JPEG or BMP image, or a damaged one", path);
    img->width = w;
    img->height = h;
    return DT_OK;
}

dt_status dt_image_read(const char *path, dt_image *img, dt_err *err)
{
    *img = (dt_image){0};
    FILE *f = fopen(path, "rb");
    if (!f) return dt_fail(err, DT_EIO, "%s: cannot open: %s", path, strerror(errno));
    unsigned char sig[8];
    size_t got = fread(sig, 1, 8, f);
    dt_status s = DT_OK;
    if (got == 8 && !png_sig_cmp(sig, 0, 8)) {
        rewind(f);
        png_ctx c = {.msg = ""};
        if (!png_decode(f, img, &c)) s = dt_fail(err, DT_EFORMAT, "%s: damaged PNG: %s", path, c.msg);
    } else {
        s = stb_decode(path, f, img, err);
    }
    fclose(f);
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
