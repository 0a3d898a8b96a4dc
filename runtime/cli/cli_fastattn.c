/* DiTFastAttn commands: calibrate-attn, the plan summary, the plan benchmark. */
#include "cli.h"
#include "cli_fastattn.h"
#include "runtime/plans/fastattn.h"
#include "runtime/models/modeldir.h"
#include "runtime/pipeline/pipeline.h"
#include "runtime/models/denoiser.h"
#include "runtime/models/vae.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- summary ---- */

/* Method counts of rows l0..l1-1. */
static void print_counts(const dt_attn_plan *p, const char *what, int l0, int l1)
{
    int count[DT_FA_COUNT] = {0}, total = (l1 - l0) * p->steps;
    for (int l = l0; l < l1; l++)
        for (int t = 0; t < p->steps; t++) count[dt_attn_plan_at(p, l, t)]++;
    printf("  %s (of %d layer-steps):", what, total);
    for (int m = 0; m < DT_FA_COUNT; m++) printf(" %s %d (%.0f%%)", dt_fa_method_name((dt_fa_method)m), count[m], 100.0 * count[m] / total);
    printf("\n");
}

/* F frames (video plans; 1 for image plans) of N tokens. */
static void print_cost(const dt_attn_plan *p, int B, int F, int N, int C)
{
    dt_attn_plan_cost c;
    dt_attn_plan_cost_video(p, B, F, N, C, &c);
    int spatial = p->layers - p->temporal;
    if (p->temporal) {
        print_counts(p, "spatial layers, methods", 0, spatial);
        print_counts(p, "temporal layers, methods", spatial, p->layers);
        printf("  at %d frames of %d tokens x %d, batch %d:", F, N, C, B);
    } else {
        print_counts(p, "methods", 0, p->layers);
        printf("  at %d tokens x %d, batch %d:", N, C, B);
    }
    printf(" attention FLOPs kept %.1f%% (%.4g of %.4g GFLOP), self-attention incl. projections %.1f%%\n",
           100 * c.attn_flops / c.attn_flops_full, c.attn_flops / 1e9, c.attn_flops_full / 1e9,
           100 * c.module_flops / c.module_flops_full);
    printf("  cache memory held between steps: peak %.1f MB (f32 residuals and outputs)\n", c.cache_peak_bytes / 1e6);
}

/* The denoiser's info from its config (no weights read). */
static dt_status describe(const char *dir, dt_denoiser_info *info, dt_err *err)
{
    char head[1024], tail[256];
    const dt_denoiser_class *cls = dt_denoiser_class_of_dir(dir, err);
    return cls ? cls->describe(dir, info, head, tail, sizeof head, err) : err->status;
}

/* Token count, frames and width of the model in model_dir at its native size, checked
 * against the plan. */
static dt_status plan_model(const dt_attn_plan *p, const char *model_dir, int *F, int *N, int *C, dt_err *err)
{
    char dir[4096];
    DT_TRY(dt_model_component_dir(model_dir, "transformer", dir, sizeof dir, err));
    dt_denoiser_info c;
    DT_TRY(describe(dir, &c, err));
    DT_TRY(dt_attn_plan_check(p, c.spatial_layers, c.temporal_layers, p->steps, err));
    int g = c.sample_size / c.patch_size;
    *F = c.max_frames ? c.max_frames : 1, *N = g * g, *C = c.inner;
    return DT_OK;
}

int cli_info_attn_plan(const char *path, const char *model_dir)
{
    dt_err err = {0};
    dt_attn_plan p;
    if (dt_attn_plan_load(path, &p, &err) != DT_OK) return cli_die(&err);
    int F = p.temporal ? 16 : 1, N = p.temporal ? 1024 : 4096, C = 1152;
    const char *what = p.temporal ? "Latte-1 at 512 px, 16 frames (assumed)" : "PixArt-XL-2 at 1024 px (assumed)";
    if (model_dir) {
        if (plan_model(&p, model_dir, &F, &N, &C, &err) != DT_OK) {
            dt_attn_plan_free(&p);
            return cli_die(&err);
        }
        what = "the model's native size";
    }
    printf("attention plan: %s\n", path);
    if (p.temporal)
        printf("  model: %s, layers: %d spatial (window %d tokens) + %d temporal (window %d frames), steps: %d, cfg_half: %s, "
               "asc_residual: %s\n", p.model[0] ? p.model : "(unnamed)", p.layers - p.temporal, p.window, p.temporal,
               p.temporal_window, p.steps, p.cfg_half == DT_FA_HALF_COND ? "cond" : "uncond",
               p.asc_residual == DT_FA_RES_SAME ? "same" : "first");
    else
        printf("  model: %s, layers: %d, steps: %d, window: %d, cfg_half: %s, asc_residual: %s\n", p.model[0] ? p.model : "(unnamed)",
               p.layers, p.steps, p.window, p.cfg_half == DT_FA_HALF_COND ? "cond" : "uncond",
               p.asc_residual == DT_FA_RES_SAME ? "same" : "first");
    printf("  costs for %s, CFG batch 2:\n", what);
    print_cost(&p, 2, F, N, C);
    dt_attn_plan_free(&p);
    return 0;
}

/* ---- bench ---- */

/* One forward timed; fa NULL: full attention. */
static dt_status timed_forward(const cli_fa_bench *b, dt_arena *a, dt_fastattn *fa, int step, double *sec, dt_err *err)
{
    b->set_hook(b->model, fa ? dt_fastattn_hook(fa) : NULL);
    dt_status s = fa ? dt_fastattn_set_step(fa, step, err) : DT_OK;
    dt_arena_reset(a);
    double t0 = cli_now();
    if (s == DT_OK) s = b->forward(b->model, b->inputs, a, b->out, err);
    *sec = cli_now() - t0;
    b->set_hook(b->model, NULL);
    return s;
}

/* Each plan step is paired with a full-attention forward at the same timestep, right
 * before it, so a loaded machine's drift hits both alike. */
/* Per-plan totals of the paired timings. */
typedef struct {
    dt_attn_plan p;
    dt_fastattn *fa;
    int loaded;
    double full, plan, full_later, plan_later;
} bench_plan;

static void bench_plan_report(const cli_fa_bench *b, const char *path, const bench_plan *r)
{
    const dt_attn_plan *p = &r->p;
    dt_attn_plan_cost cost;
    dt_attn_plan_cost_video(p, b->B, b->F, b->N, b->C, &cost);
    int k = p->steps > 1 ? p->steps - 1 : 1;
    char win[64];
    if (p->temporal) snprintf(win, sizeof win, "window %d, temporal window %d", p->window, p->temporal_window);
    else snprintf(win, sizeof win, "window %d", p->window);
    printf("  plan %s (%s, %d steps): %.3f s/step vs full %.3f s/step = %.2fx; steps after the first %.3f vs %.3f s = %.2fx\n"
           "    attention FLOPs kept %.1f%%, self-attention incl. projections %.1f%%; cache peak %.0f MB (measured %.0f MB)\n",
           path, win, p->steps, r->plan / p->steps, r->full / p->steps, r->full / r->plan, r->plan_later / k,
           r->full_later / k, r->plan_later > 0 ? r->full_later / r->plan_later : 0,
           100 * cost.attn_flops / cost.attn_flops_full, 100 * cost.module_flops / cost.module_flops_full,
           cost.cache_peak_bytes / 1e6, dt_fastattn_cache_peak(r->fa) / 1e6);
}

/* All plans advance together: each step runs one full-attention forward, then every plan that
 * still has that step, so the plans share the reference timing of the same moment (the machine's
 * speed drifts) and a long benchmark costs one full forward per step instead of one per plan. */
dt_status cli_bench_attn_plans(const cli_fa_bench *b, dt_arena *a, const char *const *plans, int nplans, dt_err *err)
{
    printf("  attention plans (each step: one full-attention forward, then each plan's, at the same timestep):\n");
    bench_plan *r = calloc((size_t)nplans, sizeof *r);
    if (!r) return dt_fail(err, DT_ENOMEM, "out of memory");
    dt_status s = DT_OK;
    int steps = 0;
    for (int i = 0; s == DT_OK && i < nplans; i++) {
        s = dt_attn_plan_load(plans[i], &r[i].p, err);
        r[i].loaded = s == DT_OK;
        if (s == DT_OK) s = dt_attn_plan_check(&r[i].p, b->layers, b->temporal, r[i].p.steps, err);
        if (s == DT_OK) s = dt_fastattn_create(&r[i].p, 1, &r[i].fa, err);
        if (s == DT_OK && r[i].p.steps > steps) steps = r[i].p.steps;
    }
    for (int t = 0; s == DT_OK && t < steps; t++) {
        double f = 0, q = 0;
        for (int i = 0; s == DT_OK && i < nplans; i++) {
            if (t >= r[i].p.steps) continue;
            /* plans of different lengths place step t at different timesteps */
            for (int k = 0; k < b->B; k++) b->timesteps[k] = 999.0f - (float)t * 999.0f / r[i].p.steps;
            if (i == 0 || r[i].p.steps != r[i - 1].p.steps || t >= r[i - 1].p.steps) s = timed_forward(b, a, NULL, t, &f, err);
            if (s == DT_OK) s = timed_forward(b, a, r[i].fa, t, &q, err);
            r[i].full += f; r[i].plan += q;
            if (t > 0) { r[i].full_later += f; r[i].plan_later += q; }
        }
    }
    for (int i = 0; s == DT_OK && i < nplans; i++) bench_plan_report(b, plans[i], &r[i]);
    for (int i = 0; i < nplans; i++) {
        dt_fastattn_free(r[i].fa);
        if (r[i].loaded) dt_attn_plan_free(&r[i].p);
    }
    free(r);
    return s;
}

/* ---- calibrate-attn ---- */

typedef struct {
    const char *model, *prompts, *out, *dtype, *metric, *cfg_half, *asc_residual;
    int steps, window, threads, width, height, quiet, no_binning;
    int temporal_window, frames; /* video (Latte) models */
    double threshold, cfg;
    unsigned long long seed;
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
    *a = (cal_args){.dtype = cli_default_dtype(), .metric = "rel", .cfg_half = "cond", .asc_residual = "same", .steps = 20,
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
        else if (F("--seed")) { ok = parse_num("--seed", v, 0, &d); a->seed = (unsigned long long)d; }
        else if (F("-W") || F("--width")) ok = cli_parse_int("--width", v, 1, 16384, &a->width);
        else if (F("-H") || F("--height")) ok = cli_parse_int("--height", v, 1, 16384, &a->height);
        else if (F("--dtype")) a->dtype = v;
        else if (F("--threads")) ok = cli_parse_int("--threads", v, 1, 1024, &a->threads);
        else if (F("--cfg-half")) a->cfg_half = v;
        else if (F("--asc-residual")) a->asc_residual = v;
        else if (miss) return cli_usage_error("%s: missing value", argv[i]), 0;
        else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q")) a->quiet = 1;
        else if (!strcmp(argv[i], "--no-binning")) a->no_binning = 1;
        else return cli_usage_error("calibrate-attn: unknown option \"%s\"", argv[i]), 0;
#undef F
        if (!ok) return 0;
    }
    if (!a->model) return cli_usage_error("calibrate-attn: -m MODEL_DIR is required"), 0;
    if (!a->prompts) return cli_usage_error("calibrate-attn: --prompts FILE is required"), 0;
    if (!a->out) return cli_usage_error("calibrate-attn: --out PLAN.json is required"), 0;
    if (a->threshold < 0) return cli_usage_error("calibrate-attn: --threshold DELTA is required"), 0;
    if (a->window < 0) return cli_usage_error("calibrate-attn: --window W is required"), 0;
    if (strcmp(a->metric, "rel") && strcmp(a->metric, "ssim")) return cli_usage_error("--metric: expected rel or ssim, got \"%s\"", a->metric), 0;
    if (strcmp(a->cfg_half, "cond") && strcmp(a->cfg_half, "uncond")) return cli_usage_error("--cfg-half: expected cond or uncond, got \"%s\"", a->cfg_half), 0;
    if (strcmp(a->asc_residual, "same") && strcmp(a->asc_residual, "first")) return cli_usage_error("--asc-residual: expected same or first, got \"%s\"", a->asc_residual), 0;
    return 1;
}

/* The model calibrated: its kind, layer count (per kind), width and token count of a frame at
 * the run's size, and frames. */
typedef struct {
    int video, layers, C, N, F;
} cal_model;

static dt_status cal_model_of(const cal_args *a, cal_model *m, dt_err *err)
{
    char dir[4096];
    DT_TRY(dt_model_component_dir(a->model, "transformer", dir, sizeof dir, err));
    dt_denoiser_info c;
    DT_TRY(describe(dir, &c, err));
    int sample = c.sample_size, patch = c.patch_size;
    *m = (cal_model){.video = c.temporal_layers > 0, .F = 1, .layers = c.spatial_layers, .C = c.inner};
    if (m->video) {
        m->F = a->frames ? a->frames : c.max_frames;
        if (a->temporal_window < 0) return dt_fail(err, DT_EINVAL, "--temporal-window: required for a video model (frames each side)");
    } else if (a->temporal_window >= 0 || a->frames) {
        return dt_fail(err, DT_EINVAL, "--temporal-window/--frames: only for video models");
    }
    int g = sample / patch, up = 8; /* pixels per latent cell: 2^(VAE blocks - 1) */
    vae_config vc;
    if (dt_model_component_dir(a->model, "vae", dir, sizeof dir, err) == DT_OK && vae_config_load(dir, &vc, err) == DT_OK)
        up = 1 << (vc.nblocks - 1);
    m->N = a->width > 0 && a->height > 0 ? (a->width / up / patch) * (a->height / up / patch) : g * g;
    return DT_OK;
}

/* One prompt through the pipeline with the calibrator as its step hook. */
static dt_status cal_prompt(const cal_args *a, dt_pipeline *p, dt_fa_calib *cal, const char *prompt, int i, dt_err *err)
{
    dt_gen_request r = dt_gen_request_default();
    r.prompt = prompt;
    r.steps = a->steps;
    r.cfg = (float)a->cfg;
    r.seed = a->seed + (unsigned long long)i;
    r.width = a->width;
    r.height = a->height;
    r.frames = a->frames;
    r.resolution_binning = !a->no_binning;
    r.step_hook = dt_fa_calib_step;
    r.step_hook_user = cal;
    dt_gen_result res;
    DT_TRY(dt_pipeline_generate(p, &r, &res, err));
    free(res.pixels);
    return DT_OK;
}

static dt_status calibrate(const cal_args *a, dt_err *err)
{
    cli_list pl;
    cal_model cm;
    DT_TRY(cal_model_of(a, &cm, err));
    DT_TRY(cli_read_prompts(a->prompts, &pl, err));
    char **prompts = pl.items;
    int np = pl.n;
    dt_dtype dt = DT_F32;
    dt_status s = DT_OK;
    if (!dt_dtype_parse(a->dtype, &dt) || (dt != DT_F32 && dt != DT_BF16))
        s = dt_fail(err, DT_EINVAL, "--dtype: expected f32 or bf16, got \"%s\"", a->dtype);
    dt_attn_plan plan = {0};
    dt_fa_calib *cal = NULL;
    dt_pipeline *p = NULL;
    if (s == DT_OK) s = cm.video ? dt_attn_plan_init_video(&plan, cm.layers, a->steps, a->window, a->temporal_window, err)
                                 : dt_attn_plan_init(&plan, cm.layers, a->steps, a->window, err);
    if (s == DT_OK) {
        const char *base = strrchr(a->model, '/');
        snprintf(plan.model, sizeof plan.model, "%s", base && base[1] ? base + 1 : a->model);
        plan.cfg_half = strcmp(a->cfg_half, "cond") ? DT_FA_HALF_UNCOND : DT_FA_HALF_COND;
        plan.asc_residual = strcmp(a->asc_residual, "same") ? DT_FA_RES_FIRST : DT_FA_RES_SAME;
    }
    dt_fa_calib_opts o = {a->threshold, strcmp(a->metric, "rel") ? DT_FA_METRIC_SSIM : DT_FA_METRIC_REL, !a->quiet, 0};
    if (s == DT_OK) s = dt_fa_calib_create(&plan, a->cfg > 1, &o, &cal, err);
    dt_pipeline_config pc = {.model_dir = a->model, .threads = a->threads, .dtype = dt, .text_dtype = dt};
    if (s == DT_OK) s = dt_pipeline_load(&pc, &p, err);
    double t0 = cli_now();
    for (int i = 0; s == DT_OK && i < np; i++) {
        if (!a->quiet) fprintf(stderr, "calibrate-attn: prompt %d/%d: %s\n", i + 1, np, prompts[i]);
        s = cal_prompt(a, p, cal, prompts[i], i, err);
        dt_fa_calib_next_prompt(cal);
    }
    dt_pipeline_free(p); /* before the calibrator: its hook is installed on the model */
    if (s == DT_OK) s = dt_attn_plan_validate(&plan, "calibrated plan", err);
    if (s == DT_OK) s = dt_attn_plan_save(&plan, a->out, err);
    if (s == DT_OK) {
        printf("calibrate-attn: wrote %s (%d prompts, %.1f s; %ld trials costing %.1f forwards, vs %d for one full forward\n"
               "  per layer and candidate)\n", a->out, np, cli_now() - t0, dt_fa_calib_trials(cal), dt_fa_calib_trial_forwards(cal),
               np * (a->steps - 1) * plan.layers * 4);
        print_cost(&plan, 2, cm.F, cm.N, cm.C);
    }
    dt_fa_calib_free(cal);
    dt_attn_plan_free(&plan);
    cli_list_free(&pl);
    return s;
}

int cli_calibrate_attn(int argc, char **argv)
{
    cal_args a;
    if (!cal_parse(argc, argv, &a)) return 2;
    dt_err err = {0};
    return calibrate(&a, &err) == DT_OK ? 0 : cli_die(&err);
}
