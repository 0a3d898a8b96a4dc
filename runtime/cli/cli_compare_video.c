/* `ditrt compare` for two videos (MP4, WebP, PNG frame folders or patterns; video.h): PSNR and
 * SSIM per frame and their means (ditrt_compare_files); --min-psnr / --min-ssim apply to the
 * means. Exit codes as for images: 0 ok, 1 a threshold failed, 2 bad input. */
#include "client.h"
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* A WebP file of one still image (txt2img -o x.webp) is an image: it decodes as one. */
static int is_still_webp(const char *p)
{
    ditrt_image im = {0};
    ditrt_error e;
    int still = ditrt_image_load(p, &im, &e) == DITRT_OK;
    ditrt_image_free(&im);
    return still;
}

int cli_is_video_path(const char *p)
{
    size_t n = strlen(p);
    struct stat st;
    return (n > 4 && !strcasecmp(p + n - 4, ".mp4")) || (n > 5 && !strcasecmp(p + n - 5, ".webp") && !is_still_webp(p)) ||
           strchr(p, '%') || (stat(p, &st) == 0 && S_ISDIR(st.st_mode));
}

int cli_compare_video(const char *a, const char *b, const double *min_psnr, const double *min_ssim, const char *diff,
                      int json)
{
    ditrt_error err = {0};
    ditrt_compare_result r = {0};
    ditrt_status s = diff ? cli_fail(&err, DITRT_EINVAL, "--diff: only for images, not videos") : DITRT_OK;
    if (s == DITRT_OK) s = ditrt_compare_files(a, b, NULL, &r, &err);
    int rc = 2;
    if (s == DITRT_OK) {
        rc = 0;
        if (min_psnr && r.psnr < *min_psnr) { fprintf(stderr, "ditrt: compare: mean PSNR %.4f dB is below --min-psnr %g\n", r.psnr, *min_psnr); rc = 1; }
        else if (min_ssim && !(r.ssim >= *min_ssim)) { fprintf(stderr, "ditrt: compare: mean SSIM %.6f is below --min-ssim %g\n", r.ssim, *min_ssim); rc = 1; }
        if (json) cli_compare_json(a, b, &r, min_psnr, min_ssim, rc);
        else {
            for (int f = 0; f < r.frames; f++) printf("frame %3d: PSNR %.4f dB, SSIM %.6f\n", f, r.frame_psnr[f], r.frame_ssim[f]);
            printf("mean PSNR: %.4f dB\nmean SSIM: %.6f\n", r.psnr, r.ssim);
        }
    } else cli_die(&err);
    ditrt_compare_result_free(&r);
    return rc;
}
