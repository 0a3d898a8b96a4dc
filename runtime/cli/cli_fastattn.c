/* `ditrt calibrate-attn`: DiTFastAttn plan calibration (ditrt_calibrate_attn) over prompts
 * from a file, then the plan's cost summary (ditrt_attn_plan_summarize). A user command: the
 * public API only. */
#include "client.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *model, *prompts, *out, *dtype, *metric, *cfg_half, *asc_residual;
    int steps, window, threads, width, height, quiet, no_binning;
    int temporal_window, frames; /* video (Latte) models */
    double threshold, cfg;
    uint64_t seed;
} cal_args;

static int parse_num(const char *flag, const char *v, double lo, double *out)
{
    char *end;
    double d = strtod(v, &end);
    if (!*v || *end || !(d >= lo)) return cli_usage_error("%s: expected a number >= %g, got \"%s\"", flag, lo, v), 0;
    *out = d;
    return 1;
}

static int cal_parse(int argc, char **argv, cal_args *a)
{
    *a = (cal_args){.metric = "rel", .cfg_half = "cond", .asc_residual = "same", .steps = 20,
                    .window = -1, .threshold = -1, .cfg = 4.5, .temporal_window = -1};
    for (int i = 1; i < argc; i++) {
        int miss = 0, ok = 1;
        const char *v;
        double d;
#define F(s) (v = cli_flag(argc, argv, &i, s, &miss))
        if (F("-m") || F("--model")) a->model = v;
        else if (F("--prompts")) a->prompts = v;
        else if (F("--out") || F("-o")) a->out = v;
        else if (F("--steps")) ok = cli_parse_int("--steps", v, 1, 1000, &a->steps);
        else if (F("--window")) ok = cli_parse_int("--window", v, 0, 1 << 24, &a->window);
        else if (F("--temporal-window")) ok = cli_parse_int("--temporal-window", v, 0, 4096, &a->temporal_window);
        else if (F("--frames")) ok = cli_parse_int("--frames", v, 1, 4096, &a->frames);
        else if (F("--threshold")) ok = parse_num("--threshold", v, 0, &a->threshold);
        else if (F("--metric")) a->metric = v;
        else if (F("--cfg")) ok = parse_num("--cfg", v, 0, &a->cfg);
        else if (F("--seed")) { ok = parse_num("--seed", v, 0, &d); a->seed = (uint64_t)d; }
        else if (F("-W") || F("--width")) ok = cli_parse_int("--width", v, 1, 16384, &a->width);
        else if (F("-H") || F("--height")) ok = cli_parse_int("--height", v, 1, 16384, &a->height);
        else if (F("--dtype")) a->dtype = v;
        else if (F("--threads")) ok = cli_parse_int("--threads", v, 1, 1024, &a->threads);
        else if (F("--cfg-half")) a->cfg_half = v;
        else if (F("--asc-residual")) a->asc_residual = v;
        else if (miss) return cli_usage_error("%s: missing value", argv[i]), 0;
        else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q")) a->quiet = 1;
        else if (!strcmp(argv[i], "--no-binning")) a->no_binning = 1;
        else return cli_unknown_option("calibrate-attn", argv[i]), 0;
#undef F
        if (!ok) return 0;
    }
    if (!a->model) return cli_usage_error("calibrate-attn: -m MODEL_DIR is required"), 0;
    if (!a->prompts) return cli_usage_error("calibrate-attn: --prompts FILE is required"), 0;
    ditrt_error merr = {0};
    if (cli_check_pipeline_dir(a->model, &merr) != DITRT_OK) return cli_die(&merr), 0;
    if (!a->out) return cli_usage_error("calibrate-attn: --out PLAN.json is required"), 0;
    if (a->threshold < 0) return cli_usage_error("calibrate-attn: --threshold DELTA is required"), 0;
    if (a->window < 0) return cli_usage_error("calibrate-attn: --window W is required"), 0;
    if (strcmp(a->metric, "rel") && strcmp(a->metric, "ssim")) return cli_usage_error("--metric: expected rel or ssim, got \"%s\"", a->metric), 0;
    if (strcmp(a->cfg_half, "cond") && strcmp(a->cfg_half, "uncond")) return cli_usage_error("--cfg-half: expected cond or uncond, got \"%s\"", a->cfg_half), 0;
    if (strcmp(a->asc_residual, "same") && strcmp(a->asc_residual, "first")) return cli_usage_error("--asc-residual: expected same or first, got \"%s\"", a->asc_residual), 0;
    return 1;
}

/* Progress lines on stderr. */
static ditrt_status calibrate(const cal_args *a, ditrt_error *err)
{
    cli_list pl;
    ditrt_status s = cli_read_prompts(a->prompts, &pl, err);
    if (s != DITRT_OK) return s;
    ditrt_attn_calib_params p;
    ditrt_attn_calib_params_init(&p);
    p.model_dir = a->model;
    p.prompts = (const char *const *)pl.items;
    p.nprompts = pl.n;
    p.out_path = a->out;
    p.steps = a->steps;
    p.window = a->window;
    p.temporal_window = a->temporal_window;
    p.frames = a->frames;
    p.threshold = a->threshold;
    p.metric = a->metric;
    p.cfg = a->cfg;
    p.seed = a->seed;
    p.width = a->width;
    p.height = a->height;
    p.resolution_binning = !a->no_binning;
    p.dtype = a->dtype;
    p.threads = a->threads;
    p.cfg_half = a->cfg_half;
    p.asc_residual = a->asc_residual;
    p.log = a->quiet ? NULL : cli_log_stderr;
    ditrt_attn_calib_result r = {.struct_size = sizeof r};
    ditrt_attn_plan_summary sum = {.struct_size = sizeof sum};
    s = ditrt_calibrate_attn(&p, &r, err);
    cli_list_free(&pl);
    /* the cost at the run's size and frames */
    if (s == DITRT_OK) s = ditrt_attn_plan_summarize(a->out, a->model, a->width, a->height, a->frames, &sum, err);
    if (s != DITRT_OK) return s;
    printf("calibrate-attn: wrote %s (%d prompts, %.1f s; %ld trials costing %.1f forwards, vs %ld for one full forward\n"
           "  per layer and candidate)\n", a->out, r.nprompts, r.seconds, r.trials, r.trial_forwards, r.exhaustive_trials);
    cli_print_attn_cost(&sum);
    return DITRT_OK;
}

int cli_calibrate_attn(int argc, char **argv)
{
    cal_args a;
    if (!cal_parse(argc, argv, &a)) return 2;
    ditrt_error err = {0};
    return calibrate(&a, &err) == DITRT_OK ? 0 : cli_die(&err);
}
