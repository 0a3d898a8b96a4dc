/* The public file functions (include/ditrt.h, "outputs and comparisons"): output path checks,
 * image and video writers and readers, and the PSNR/SSIM comparison of `ditrt compare`, over
 * runtime/io/. */
#include "ditrt.h"
#include "api_internal.h"
#include "runtime/core/error.h"
#include "runtime/io/image.h"
#include "runtime/io/video.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

static ditrt_error *reset(ditrt_error *err, ditrt_error *local)
{
    ditrt_error *e = err ? err : local;
    *e = (ditrt_error){0};
    return e;
}

ditrt_status ditrt_output_check(const char *path, int video, ditrt_output_kind *kind, ditrt_error *err)
{
    ditrt_error local, *e = reset(err, &local);
    if (!path) return dt_fail(e, DT_EINVAL, "output: NULL path");
    if (!video) {
        DT_TRY(dt_image_check_writable(path, e));
        if (kind) *kind = DITRT_OUTPUT_IMAGE;
        return DT_OK;
    }
    dt_video_kind k;
    DT_TRY(dt_video_check_writable(path, &k, e));
    if (kind)
        *kind = k == DT_VIDEO_PNG_DIR       ? DITRT_OUTPUT_FRAME_FOLDER
                : k == DT_VIDEO_PNG_PATTERN ? DITRT_OUTPUT_FRAME_PATTERN
                : k == DT_VIDEO_WEBP        ? DITRT_OUTPUT_WEBP
                                            : DITRT_OUTPUT_MP4;
    return DT_OK;
}

static dt_status check_meta(const ditrt_meta *meta, int n, dt_err *err)
{
    if (n < 0 || (n && !meta)) return dt_fail(err, DT_EINVAL, "meta: %d pairs given with %s array", n, meta ? "an" : "no");
    for (int i = 0; i < n; i++)
        if (!meta[i].key || !meta[i].value) return dt_fail(err, DT_EINVAL, "meta[%d]: NULL key or value", i);
    return DT_OK;
}

ditrt_status ditrt_image_save(const char *path, const ditrt_image *im, const ditrt_meta *meta, int n, ditrt_error *err)
{
    ditrt_error local, *e = reset(err, &local);
    if (!path) return dt_fail(e, DT_EINVAL, "output: NULL path");
    if (!im || !im->rgb || im->width <= 0 || im->height <= 0)
        return dt_fail(e, DT_EINVAL, "%s: image: no pixels or a size under 1x1", path);
    DT_TRY(check_meta(meta, n, e));
    return dt_image_write(path, im->rgb, im->width, im->height, meta, n, e);
}

ditrt_status ditrt_video_save(const char *path, const ditrt_video *v, double fps, const ditrt_meta *meta, int n,
                              ditrt_error *err)
{
    ditrt_error local, *e = reset(err, &local);
    if (!path) return dt_fail(e, DT_EINVAL, "output: NULL path");
    if (!v || !v->rgb || v->frames <= 0 || v->width <= 0 || v->height <= 0)
        return dt_fail(e, DT_EINVAL, "%s: video: no frames or a size under 1x1", path);
    if (!(fps > 0) || !isfinite(fps)) return dt_fail(e, DT_EINVAL, "%s: fps: must be > 0, got %g", path, fps);
    DT_TRY(check_meta(meta, n, e));
    dt_video_frames f = {v->frames, v->width, v->height, fps, v->rgb, meta, n};
    return dt_video_write(path, &f, e);
}

ditrt_status ditrt_image_load(const char *path, ditrt_image *out, ditrt_error *err)
{
    ditrt_error local, *e = reset(err, &local);
    if (!out) return dt_fail(e, DT_EINVAL, "image_load: NULL output");
    *out = (ditrt_image){0};
    if (!path) return dt_fail(e, DT_EINVAL, "input: NULL path");
    dt_image im = {0};
    DT_TRY(dt_image_read(path, &im, e));
    *out = (ditrt_image){im.width, im.height, im.rgb};
    return DT_OK;
}

void ditrt_image_free(ditrt_image *im)
{
    if (!im) return;
    free(im->rgb);
    *im = (ditrt_image){0};
}

ditrt_status ditrt_video_load(const char *path, ditrt_video *out, double *fps, ditrt_error *err)
{
    ditrt_error local, *e = reset(err, &local);
    if (!out) return dt_fail(e, DT_EINVAL, "video_load: NULL output");
    *out = (ditrt_video){0};
    if (fps) *fps = 0;
    if (!path) return dt_fail(e, DT_EINVAL, "input: NULL path");
    dt_video v = {0};
    DT_TRY(dt_video_read(path, &v, e));
    free(v.comment);
    *out = (ditrt_video){v.frames, v.width, v.height, v.rgb};
    if (fps) *fps = v.fps;
    return DT_OK;
}

void ditrt_video_free(ditrt_video *v)
{
    if (!v) return;
    free(v->rgb);
    *v = (ditrt_video){0};
}

/* ---- compare ---- */

/* A WebP file holding one still image (txt2img's), not an animation: "VP8 " or "VP8L" first,
 * or "VP8X" without the animation flag. */
static int is_still_webp(const char *p)
{
    unsigned char h[21];
    FILE *f = fopen(p, "rb");
    size_t n = f ? fread(h, 1, sizeof h, f) : 0;
    if (f) fclose(f);
    if (n < 16 || memcmp(h, "RIFF", 4) || memcmp(h + 8, "WEBP", 4)) return 0;
    if (!memcmp(h + 12, "VP8 ", 4) || !memcmp(h + 12, "VP8L", 4)) return 1;
    return n == sizeof h && !memcmp(h + 12, "VP8X", 4) && !(h[20] & 0x02);
}

/* A video path for compare: .mp4 / .webp (but a still WebP image), a printf pattern, or an
 * existing folder. */
static int is_video_path(const char *p)
{
    size_t n = strlen(p);
    struct stat st;
    return (n > 4 && !strcasecmp(p + n - 4, ".mp4")) || (n > 5 && !strcasecmp(p + n - 5, ".webp") && !is_still_webp(p)) ||
           strchr(p, '%') || (stat(p, &st) == 0 && S_ISDIR(st.st_mode));
}

/* |A - B| per sample, scaled so the largest difference is 255 (all black when identical). */
static dt_status write_diff(const char *path, const dt_image *x, const dt_image *y, dt_err *err)
{
    size_t n = (size_t)x->width * x->height * 3;
    uint8_t *d = malloc(n), top = 0;
    if (!d) return dt_fail(err, DT_ENOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++) {
        d[i] = (uint8_t)abs((int)x->rgb[i] - (int)y->rgb[i]);
        top = d[i] > top ? d[i] : top;
    }
    for (size_t i = 0; top && i < n; i++) d[i] = (uint8_t)((d[i] * 255 + top / 2) / top);
    dt_status s = dt_image_write(path, d, x->width, x->height, NULL, 0, err);
    free(d);
    return s;
}

static dt_status compare_images(const char *a, const char *b, const char *diff, ditrt_compare_result *r, dt_err *err)
{
    dt_image x = {0}, y = {0};
    dt_status s = diff ? dt_image_check_writable(diff, err) : DT_OK;
    if (s == DT_OK) s = dt_image_read(a, &x, err);
    if (s == DT_OK) s = dt_image_read(b, &y, err);
    if (s == DT_OK && (x.width != y.width || x.height != y.height))
        s = dt_fail(err, DT_EINVAL, "compare: %s is %dx%d but %s is %dx%d: sizes differ", a, x.width, x.height, b,
                    y.width, y.height);
    if (s == DT_OK) {
        r->width = x.width;
        r->height = x.height;
        r->psnr = dt_image_psnr(x.rgb, y.rgb, x.width, x.height);
        s = dt_image_ssim(x.rgb, y.rgb, x.width, x.height, &r->ssim, err);
    }
    if (s == DT_OK && diff) s = write_diff(diff, &x, &y, err);
    dt_image_free(&x);
    dt_image_free(&y);
    return s;
}

static dt_status compare_videos(const char *a, const char *b, const char *diff, ditrt_compare_result *r, dt_err *err)
{
    dt_video x = {0}, y = {0};
    dt_status s = diff ? dt_fail(err, DT_EINVAL, "diff_path: only for images, not videos") : DT_OK;
    if (s == DT_OK) s = dt_video_read(a, &x, err);
    if (s == DT_OK) s = dt_video_read(b, &y, err);
    if (s == DT_OK && (x.width != y.width || x.height != y.height || x.frames != y.frames))
        s = dt_fail(err, DT_EINVAL, "compare: %s is %d frames of %dx%d but %s is %d frames of %dx%d", a, x.frames,
                    x.width, x.height, b, y.frames, y.width, y.height);
    if (s == DT_OK) {
        r->frame_psnr = malloc((size_t)x.frames * sizeof(double));
        r->frame_ssim = malloc((size_t)x.frames * sizeof(double));
        if (!r->frame_psnr || !r->frame_ssim) s = dt_fail(err, DT_ENOMEM, "compare: out of memory");
    }
    if (s == DT_OK) {
        size_t fb = (size_t)x.width * x.height * 3;
        double sp = 0, ss = 0;
        for (int f = 0; f < x.frames && s == DT_OK; f++) {
            r->frame_psnr[f] = dt_image_psnr(x.rgb + f * fb, y.rgb + f * fb, x.width, x.height);
            s = dt_image_ssim(x.rgb + f * fb, y.rgb + f * fb, x.width, x.height, &r->frame_ssim[f], err);
            sp += r->frame_psnr[f];
            ss += r->frame_ssim[f];
        }
        r->frames = x.frames;
        r->width = x.width;
        r->height = x.height;
        r->psnr = sp / x.frames;
        r->ssim = ss / x.frames;
    }
    dt_video_free(&x);
    dt_video_free(&y);
    return s;
}

ditrt_status ditrt_compare_files(const char *a, const char *b, const char *diff_path, ditrt_compare_result *out,
                                 ditrt_error *err)
{
    ditrt_error local, *e = reset(err, &local);
    if (!out) return dt_fail(e, DT_EINVAL, "compare: NULL result");
    *out = (ditrt_compare_result){0};
    if (!a || !b) return dt_fail(e, DT_EINVAL, "compare: NULL path");
    dt_status s = is_video_path(a) || is_video_path(b) ? compare_videos(a, b, diff_path, out, e)
                                                       : compare_images(a, b, diff_path, out, e);
    if (s != DT_OK) ditrt_compare_result_free(out);
    return s;
}

void ditrt_compare_result_free(ditrt_compare_result *r)
{
    if (!r) return;
    free(r->frame_psnr);
    free(r->frame_ssim);
    *r = (ditrt_compare_result){0};
}
