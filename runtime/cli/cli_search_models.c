/* `ditrt search-models`: an OMS-DPM model schedule under a latency budget (model_search.h). */
#include "cli.h"
#include "runtime/plans/model_search.h"
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void log_line(void *user, const char *line)
{
    (void)user;
    fprintf(stderr, "search-models: %s\n", line);
}

/* --latency S0,S1,...: seconds per evaluation of each zoo member, model first. */
static dt_status parse_latency(const char *arg, int nzoo, double **out, dt_err *err)
{
    double *l = calloc((size_t)nzoo, sizeof *l);
    if (!l) return dt_fail(err, DT_ENOMEM, "out of memory");
    const char *p = arg;
    for (int i = 0; i < nzoo; i++) {
        char *end;
        l[i] = strtod(p, &end);
        if (end == p || !(l[i] > 0) || (i < nzoo - 1 ? *end != ',' : *end != 0)) {
            free(l);
            return dt_fail(err, DT_EINVAL, "--latency: expected %d positive numbers separated by commas (model first, then the zoo), got \"%s\"", nzoo, arg);
        }
        p = end + 1;
    }
    *out = l;
    return DT_OK;
}

int cli_search_models(int argc, char **argv)
{
    const char *model = NULL, *zoo_arg = NULL, *prompts_path = NULL, *out_path = NULL, *dtype = cli_default_dtype();
    double budget = 0, ratio = 0;
    const char *latency_arg = NULL;
    int threads = 0;
    dt_gen_request req = dt_gen_request_default();
    req.resolution_binning = 0;
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
        else if (F("--steps")) ok = cli_parse_int("--steps", v, 1, 1000, &req.steps);
        else if (F("-W") || F("--width")) ok = cli_parse_int("--width", v, 1, 16384, &req.width);
        else if (F("-H") || F("--height")) ok = cli_parse_int("--height", v, 1, 16384, &req.height);
        else if (F("--threads")) ok = cli_parse_int("--threads", v, 1, 1024, &threads);
        else if (F("--seed")) req.seed = strtoull(v, NULL, 10);
        else if (F("--cfg")) req.cfg = strtof(v, NULL);
        else if (F("--budget")) { budget = strtod(v, NULL); ok = budget > 0 || (cli_usage_error("--budget: expected seconds > 0, got \"%s\"", v), 0); }
        else if (F("--budget-ratio")) { ratio = strtod(v, NULL); ok = (ratio > 0 && ratio <= 1) || (cli_usage_error("--budget-ratio: expected a number in (0, 1], got \"%s\"", v), 0); }
        else if (miss) return cli_usage_error("%s: missing value", argv[i]);
        else return cli_usage_error("search-models: unknown option \"%s\"", argv[i]);
#undef F
        if (!ok) return 2;
    }
    if (!model || !zoo_arg || !prompts_path || !out_path)
        return cli_usage_error("search-models: -m MODEL, --zoo DIR[,DIR...], --prompts FILE and --out FILE are required");
    if (budget <= 0 && ratio <= 0) return cli_usage_error("search-models: give --budget SECONDS or --budget-ratio R");
    dt_err err = {0};
    dt_pipeline_config cfg = {.model_dir = model, .threads = threads};
    if (!dt_dtype_parse(dtype, &cfg.dtype) || (cfg.dtype != DT_F32 && cfg.dtype != DT_BF16))
        return cli_usage_error("--dtype: expected f32 or bf16, got \"%s\"", dtype);
    cfg.text_dtype = cfg.dtype;
    cli_list zoo, prompts;
    if (cli_split_list("--zoo", zoo_arg, &zoo) != 0) return 2;
    if (cli_read_prompts(prompts_path, &prompts, &err) != DT_OK) { cli_list_free(&zoo); return cli_die(&err); }
    cfg.zoo = (const char *const *)zoo.items;
    cfg.nzoo = zoo.n;
    if (threads > 0) omp_set_num_threads(threads);
    dt_pipeline *p = NULL;
    dt_model_search_result res = {0};
    dt_status s = dt_pipeline_load(&cfg, &p, &err);
    double *lat = NULL;
    if (s == DT_OK && latency_arg) s = parse_latency(latency_arg, dt_pipeline_zoo_size(p), &lat, &err);
    if (s == DT_OK) {
        dt_model_search ms = {p, (const char *const *)prompts.items, prompts.n, req, budget, ratio, lat, log_line, NULL};
        s = dt_search_models(&ms, &res, &err);
    }
    free(lat);
    if (s == DT_OK) {
        const char **names = malloc((size_t)(zoo.n + 1) * sizeof *names);
        if (!names) s = dt_fail(&err, DT_ENOMEM, "out of memory");
        else {
            names[0] = model;
            for (int i = 0; i < zoo.n; i++) names[i + 1] = zoo.items[i];
            s = dt_model_schedule_save(out_path, &res.schedule, names, zoo.n + 1, &err);
            free(names);
        }
    }
    if (s == DT_OK)
        printf("search-models: %s: %.4f s per image (all-model-0 %.4f s, budget %.4f s), mean PSNR vs all-model-0 %.2f dB, %d generations\n",
               out_path, res.est_seconds, res.ref_seconds, res.budget, res.psnr, res.generations);
    dt_model_search_result_free(&res);
    dt_pipeline_free(p);
    cli_list_free(&zoo);
    cli_list_free(&prompts);
    return s == DT_OK ? 0 : cli_die(&err);
}
