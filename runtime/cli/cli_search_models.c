/* `ditrt search-models`: an OMS-DPM model schedule under a latency budget (ditrt_search_models
 * in include/ditrt.h). A client of the public API only. */
#include "client.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --latency S0,S1,...: seconds per evaluation of each zoo member, model first. */
static ditrt_status parse_latency(const char *arg, int nzoo, double **out, ditrt_error *err)
{
    double *l = calloc((size_t)nzoo, sizeof *l);
    if (!l) return cli_fail(err, DITRT_ENOMEM, "out of memory");
    const char *p = arg;
    for (int i = 0; i < nzoo; i++) {
        char *end;
        l[i] = strtod(p, &end);
        if (end == p || !(l[i] > 0) || (i < nzoo - 1 ? *end != ',' : *end != 0)) {
            free(l);
            return cli_fail(err, DITRT_EINVAL, "--latency: expected %d positive numbers separated by commas (model first, then the zoo), got \"%s\"", nzoo, arg);
        }
        p = end + 1;
    }
    *out = l;
    return DITRT_OK;
}

int cli_search_models(int argc, char **argv)
{
    const char *model = NULL, *zoo_arg = NULL, *prompts_path = NULL, *out_path = NULL, *dtype = NULL;
    double budget = 0, ratio = 0;
    const char *latency_arg = NULL;
    ditrt_search_models_params p;
    ditrt_search_models_params_init(&p); /* steps 20, cfg 4.5, seed 0, the native size */
    for (int i = 1; i < argc; i++) {
        int miss = 0, ok = 1;
        const char *v;
#define F(s) (v = cli_flag(argc, argv, &i, s, &miss))
        if (F("-m") || F("--model")) model = v;
        else if (F("--zoo")) zoo_arg = v;
        else if (F("--prompts")) prompts_path = v;
        else if (F("--out")) out_path = v;
        else if (F("--dtype")) dtype = v;
        else if (F("--latency")) latency_arg = v;
        else if (F("--steps")) ok = cli_parse_int("--steps", v, 1, 1000, &p.steps);
        else if (F("-W") || F("--width")) ok = cli_parse_int("--width", v, 1, 16384, &p.width);
        else if (F("-H") || F("--height")) ok = cli_parse_int("--height", v, 1, 16384, &p.height);
        else if (F("--threads")) ok = cli_parse_int("--threads", v, 1, 1024, &p.threads);
        else if (F("--seed")) p.seed = strtoull(v, NULL, 10);
        else if (F("--cfg")) p.cfg = strtof(v, NULL);
        else if (F("--budget")) { budget = strtod(v, NULL); ok = budget > 0 || (cli_usage_error("--budget: expected seconds > 0, got \"%s\"", v), 0); }
        else if (F("--budget-ratio")) { ratio = strtod(v, NULL); ok = (ratio > 0 && ratio <= 1) || (cli_usage_error("--budget-ratio: expected a number in (0, 1], got \"%s\"", v), 0); }
        else if (miss) return cli_usage_error("%s: missing value", argv[i]);
        else return cli_unknown_option("search-models", argv[i]);
#undef F
        if (!ok) return 2;
    }
    if (!model || !zoo_arg || !prompts_path || !out_path)
        return cli_usage_error("search-models: -m MODEL, --zoo DIR[,DIR...], --prompts FILE and --out FILE are required");
    if (budget <= 0 && ratio <= 0) return cli_usage_error("search-models: give --budget SECONDS or --budget-ratio R");
    ditrt_error merr = {0};
    if (cli_check_pipeline_dir(model, &merr) != DITRT_OK) return cli_die(&merr), 2;
    if (dtype && !(p.dtype = cli_dtype_arg(dtype))) /* NULL: the device's default */
        return cli_usage_error("--dtype: expected " CLI_DTYPES ", got \"%s\"", dtype);
    ditrt_error err = {0};
    cli_list zoo, prompts;
    if (cli_split_list("--zoo", zoo_arg, &zoo) != 0) return 2;
    if (cli_read_prompts(prompts_path, &prompts, &err) != DITRT_OK) { cli_list_free(&zoo); return cli_die(&err); }
    double *lat = NULL;
    ditrt_status s = latency_arg ? parse_latency(latency_arg, zoo.n + 1, &lat, &err) : DITRT_OK;
    ditrt_search_models_result res;
    ditrt_search_models_result_init(&res);
    if (s == DITRT_OK) {
        p.model_dir = model;
        p.zoo = (const char *const *)zoo.items;
        p.nzoo = zoo.n;
        p.prompts = (const char *const *)prompts.items;
        p.nprompts = prompts.n;
        p.budget_seconds = budget;
        p.budget_ratio = ratio;
        p.latency = lat;
        p.nlatency = lat ? zoo.n + 1 : 0;
        p.out_path = out_path;
        p.log = cli_log_stderr;
        p.log_user = "search-models";
        s = ditrt_search_models(&p, &res, &err);
    }
    free(lat);
    if (s == DITRT_OK)
        printf("search-models: %s: %.4f s per image (all-model-0 %.4f s, budget %.4f s), mean PSNR vs all-model-0 %.2f dB, %d generations\n",
               out_path, res.est_seconds, res.ref_seconds, res.budget_seconds, res.psnr, res.generations);
    ditrt_search_models_result_free(&res);
    cli_list_free(&zoo);
    cli_list_free(&prompts);
    return s == DITRT_OK ? 0 : cli_die(&err);
}
