/* `ditrt compare A B [--min-psnr X] [--min-ssim Y] [--diff D.png] [--json]`: PSNR and SSIM of
 * two images (definitions in image.h). Exit 0 when the thresholds hold, 1 when one does not
 * (naming it), 2 on bad input (missing file, not an image, sizes differ, bad flags). The
 * metrics and the diff image are ditrt_compare_files'. --json prints the same as one object
 * (cli_compare_json). */
#include "client.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *a, *b, *diff;
    double min_psnr, min_ssim;
    int has_psnr, has_ssim, json;
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
        else if (!strcmp(argv[i], "--json")) a->json = 1;
        else if (miss) return cli_usage_error("%s: missing value", argv[i]), 0;
        else if (argv[i][0] == '-' && argv[i][1]) return cli_unknown_option("compare", argv[i]), 0;
        else if (!a->a) a->a = argv[i];
        else if (!a->b) a->b = argv[i];
        else return cli_usage_error("compare: unexpected argument \"%s\" (two images expected)", argv[i]), 0;
    }
    if (!a->b) return cli_usage_error("compare: expected two images: ditrt compare A.png B.png [--min-psnr X] [--min-ssim Y] [--diff D.png] [--json]"), 0;
    return 1;
}

void cli_compare_json(const char *a, const char *b, const ditrt_compare_result *r, const double *min_psnr,
                      const double *min_ssim, int rc)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "a", a);
    cJSON_AddStringToObject(j, "b", b);
    cJSON_AddStringToObject(j, "kind", r->frames ? "video" : "image");
    cJSON_AddNumberToObject(j, "width", r->width);
    cJSON_AddNumberToObject(j, "height", r->height);
    if (r->frames) cJSON_AddNumberToObject(j, "frames", r->frames);
    /* JSON has no infinity: identical files give "psnr": null and "identical": true */
    if (isfinite(r->psnr)) cJSON_AddNumberToObject(j, "psnr", r->psnr);
    else cJSON_AddNullToObject(j, "psnr");
    if (isfinite(r->ssim)) cJSON_AddNumberToObject(j, "ssim", r->ssim);
    else cJSON_AddNullToObject(j, "ssim");
    cJSON_AddBoolToObject(j, "identical", isinf(r->psnr));
    if (r->frames) {
        cJSON *fp = cJSON_AddArrayToObject(j, "frame_psnr"), *fs = cJSON_AddArrayToObject(j, "frame_ssim");
        for (int f = 0; f < r->frames; f++) {
            cJSON_AddItemToArray(fp, isfinite(r->frame_psnr[f]) ? cJSON_CreateNumber(r->frame_psnr[f]) : cJSON_CreateNull());
            cJSON_AddItemToArray(fs, isfinite(r->frame_ssim[f]) ? cJSON_CreateNumber(r->frame_ssim[f]) : cJSON_CreateNull());
        }
    }
    if (min_psnr) cJSON_AddNumberToObject(j, "min_psnr", *min_psnr);
    if (min_ssim) cJSON_AddNumberToObject(j, "min_ssim", *min_ssim);
    cJSON_AddBoolToObject(j, "pass", rc == 0);
    cli_json_print(j);
}

static int report(const compare_args *a, const ditrt_compare_result *r)
{
    double psnr = r->psnr, ssim = r->ssim;
    int rc = 0;
    if (a->has_psnr && psnr < a->min_psnr) {
        fprintf(stderr, "ditrt: compare: PSNR %.4f dB is below --min-psnr %g\n", psnr, a->min_psnr);
        rc = 1;
    } else if (a->has_ssim && ssim < a->min_ssim) {
        fprintf(stderr, "ditrt: compare: SSIM %.6f is below --min-ssim %g\n", ssim, a->min_ssim);
        rc = 1;
    }
    if (a->json) {
        cli_compare_json(a->a, a->b, r, a->has_psnr ? &a->min_psnr : NULL, a->has_ssim ? &a->min_ssim : NULL, rc);
        return rc;
    }
    if (isinf(psnr)) printf("PSNR: inf dB\n");
    else printf("PSNR: %.4f dB\n", psnr);
    if (isnan(ssim)) printf("SSIM: n/a (images smaller than 11x11)\n");
    else printf("SSIM: %.6f\n", ssim);
    return rc;
}

int cli_compare(int argc, char **argv)
{
    compare_args a;
    if (!parse(argc, argv, &a)) return 2;
    if (cli_is_video_path(a.a) || cli_is_video_path(a.b))
        return cli_compare_video(a.a, a.b, a.has_psnr ? &a.min_psnr : NULL, a.has_ssim ? &a.min_ssim : NULL, a.diff, a.json);
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
    if (s == DITRT_OK) rc = report(&a, &r);
    else cli_die(&err);
    ditrt_compare_result_free(&r);
    return rc;
}
