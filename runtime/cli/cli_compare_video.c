/* `ditrt compare` for two videos (MP4, WebP, PNG frame folders or patterns; video.h): PSNR and
 * SSIM per frame and their means; --min-psnr / --min-ssim apply to the means. Exit codes as
 * for images: 0 ok, 1 a threshold failed, 2 bad input. */
#include "cli.h"
#include "runtime/io/image.h"
#include "runtime/io/video.h"
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

int cli_is_video_path(const char *p)
{
    size_t n = strlen(p);
    struct stat st;
    return (n > 4 && !strcasecmp(p + n - 4, ".mp4")) || (n > 5 && !strcasecmp(p + n - 5, ".webp")) ||
           strchr(p, '%') || (stat(p, &st) == 0 && S_ISDIR(st.st_mode));
}

static dt_status frame_metrics(const dt_video *x, const dt_video *y, double *psnr, double *ssim, dt_err *err)
{
    size_t fb = (size_t)x->width * x->height * 3;
    double sp = 0, ss = 0;
    for (int f = 0; f < x->frames; f++) {
        double p = dt_image_psnr(x->rgb + f * fb, y->rgb + f * fb, x->width, x->height), s;
        DT_TRY(dt_image_ssim(x->rgb + f * fb, y->rgb + f * fb, x->width, x->height, &s, err));
        printf("frame %3d: PSNR %.4f dB, SSIM %.6f\n", f, p, s);
        sp += p;
        ss += s;
    }
    *psnr = sp / x->frames;
    *ssim = ss / x->frames;
    return DT_OK;
}

int cli_compare_video(const char *a, const char *b, const double *min_psnr, const double *min_ssim, const char *diff)
{
    dt_err err = {0};
    dt_video x = {0}, y = {0};
    dt_status s = diff ? dt_fail(&err, DT_EINVAL, "--diff: only for images, not videos") : DT_OK;
    if (s == DT_OK) s = dt_video_read(a, &x, &err);
    if (s == DT_OK) s = dt_video_read(b, &y, &err);
    if (s == DT_OK && (x.width != y.width || x.height != y.height || x.frames != y.frames))
        s = dt_fail(&err, DT_EINVAL, "compare: %s is %d frames of %dx%d but %s is %d frames of %dx%d",
                    a, x.frames, x.width, x.height, b, y.frames, y.width, y.height);
    double psnr = 0, ssim = NAN;
    if (s == DT_OK) s = frame_metrics(&x, &y, &psnr, &ssim, &err);
    int rc = 2;
    if (s == DT_OK) {
        printf("mean PSNR: %.4f dB\nmean SSIM: %.6f\n", psnr, ssim);
        rc = 0;
        if (min_psnr && psnr < *min_psnr) { fprintf(stderr, "ditrt: compare: mean PSNR %.4f dB is below --min-psnr %g\n", psnr, *min_psnr); rc = 1; }
        else if (min_ssim && !(ssim >= *min_ssim)) { fprintf(stderr, "ditrt: compare: mean SSIM %.6f is below --min-ssim %g\n", ssim, *min_ssim); rc = 1; }
    } else cli_die(&err);
    dt_video_free(&x);
    dt_video_free(&y);
    return rc;
}
