/* `ditrt compare A B [--min-psnr X] [--min-ssim Y] [--diff D.png]`: PSNR and SSIM of two
 * images (definitions in image.h). Exit 0 when the thresholds hold, 1 when one does not
 * (naming it), 2 on bad input (missing file, not an image, sizes differ, bad flags). The
 * metrics and the diff image are ditrt_compare_files'. */
#include "client.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *a, *b, *diff;
    double min_psnr, min_ssim;
    int has_psnr, has_ssim;
} compare_args;

static int parse_number(const char *flag, const char *v, double *out)
{
    char *end;
    double x = strtod(v, &end);
    if (!*v || *end || isnan(x)) {
        cli_usage_error("%s: expected a number, got \"%s\"", flag, v);
        return 0;
    }
    *out = x;
    return 1;
}

static int parse(int argc, char **argv, compare_args *a)
{
    *a = (compare_args){0};
    for (int i = 1; i < argc; i++) {
        int miss = 0;
        const char *v;
        if ((v = cli_flag(argc, argv, &i, "--min-psnr", &miss))) { if (!parse_number("--min-psnr", v, &a->min_psnr)) return 0; a->has_psnr = 1; }
        else if ((v = cli_flag(argc, argv, &i, "--min-ssim", &miss))) { if (!parse_number("--min-ssim", v, &a->min_ssim)) return 0; a->has_ssim = 1; }
        else if ((v = cli_flag(argc, argv, &i, "--diff", &miss))) a->diff = v;
        else if (miss) return cli_usage_error("%s: missing value", argv[i]), 0;
        else if (argv[i][0] == '-' && argv[i][1]) return cli_unknown_option("compare", argv[i]), 0;
        else if (!a->a) a->a = argv[i];
        else if (!a->b) a->b = argv[i];
        else return cli_usage_error("compare: unexpected argument \"%s\" (two images expected)", argv[i]), 0;
    }
    if (!a->b) return cli_usage_error("compare: expected two images: ditrt compare A.png B.png [--min-psnr X] [--min-ssim Y] [--diff D.png]"), 0;
    return 1;
}

static int report(const compare_args *a, double psnr, double ssim)
{
    if (isinf(psnr)) printf("PSNR: inf dB\n");
    else printf("PSNR: %.4f dB\n", psnr);
    if (isnan(ssim)) printf("SSIM: n/a (images smaller than 11x11)\n");
    else printf("SSIM: %.6f\n", ssim);
    if (a->has_psnr && psnr < a->min_psnr) {
        fprintf(stderr, "ditrt: compare: PSNR %.4f dB is below --min-psnr %g\n", psnr, a->min_psnr);
        return 1;
    }
    if (a->has_ssim && ssim < a->min_ssim) {
        fprintf(stderr, "ditrt: compare: SSIM %.6f is below --min-ssim %g\n", ssim, a->min_ssim);
        return 1;
    }
    return 0;
}

int cli_compare(int argc, char **argv)
{
    compare_args a;
    if (!parse(argc, argv, &a)) return 2;
    if (cli_is_video_path(a.a) || cli_is_video_path(a.b))
        return cli_compare_video(a.a, a.b, a.has_psnr ? &a.min_psnr : NULL, a.has_ssim ? &a.min_ssim : NULL, a.diff);
    ditrt_error err = {0};
    ditrt_compare_result r = {0};
    /* the diff path is checked before anything is read; it is written only once the
     * thresholds' inputs are known to be valid (--min-ssim needs an SSIM) */
    ditrt_status s = a.diff ? ditrt_output_check(a.diff, 0, NULL, &err) : DITRT_OK;
    if (s == DITRT_OK) s = ditrt_compare_files(a.a, a.b, a.has_ssim ? NULL : a.diff, &r, &err);
    if (s == DITRT_OK && a.has_ssim && isnan(r.ssim))
        s = cli_fail(&err, DITRT_EINVAL, "--min-ssim: SSIM needs images of at least 11x11, these are %dx%d", r.width, r.height);
    if (s == DITRT_OK && a.has_ssim && a.diff) {
        ditrt_compare_result_free(&r);
        s = ditrt_compare_files(a.a, a.b, a.diff, &r, &err);
    }
    int rc = 2;
    if (s == DITRT_OK) rc = report(&a, r.psnr, r.ssim);
    else cli_die(&err);
    ditrt_compare_result_free(&r);
    return rc;
}
