/* DiTFastAttn calibration run: the pipeline, the all-"full" plan, the prompts with the
 * calibrator as step hook, the saved plan (see fastattn_calibrate.h). */
#include "fastattn_calibrate.h"
#include "runtime/models/denoiser.h"
#include "runtime/models/modeldir.h"
#include "runtime/models/vae.h"
#include "runtime/pipeline/pipeline.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The denoiser's info from its config (no weights read). */
static dt_status describe(const char *dir, dt_denoiser_info *info, dt_err *err)
{
    char head[1024], tail[256];
    const dt_denoiser_class *cls = dt_denoiser_class_of_dir(dir, err);
    return cls ? cls->describe(dir, info, head, tail, sizeof head, err) : err->status;
}

dt_status dt_fa_model_shape(const char *model_dir, int width, int height, int frames, dt_denoiser_info *info, int *F,
                            int *N, int *C, dt_err *err)
{
    char dir[4096];
    DT_TRY(dt_model_denoiser_dir(model_dir, dir, sizeof dir, err)); /* "transformer" or "unet" */
    DT_TRY(describe(dir, info, err));
    DT_TRY(dt_denoiser_attn_plans(info, err)); /* a U-Net has no DiT blocks */
    int patch = info->patch_size, g = info->sample_size / patch;
    *F = info->max_frames ? (frames ? frames : info->max_frames) : 1;
    *C = info->inner;
    *N = g * g;
    if (width > 0 && height > 0) {
        int up = 8; /* pixels per latent cell: 2^(VAE blocks - 1) */
        vae_config vc;
        dt_err verr = {0}; /* a folder without a readable VAE config keeps 8 */
        if (dt_model_component_dir(model_dir, "vae", dir, sizeof dir, &verr) == DT_OK && vae_config_load(dir, &vc, &verr) == DT_OK)
            up = 1 << (vc.nblocks - 1);
        *N = (width / up / patch) * (height / up / patch);
    }
    return DT_OK;
}

/* Arguments an application may get wrong (the command line checks them as it parses). */
static dt_status check_config(const dt_fa_calibrate_config *c, dt_err *err)
{
    if (!c->model_dir) return dt_fail(err, DT_EINVAL, "model_dir: required (a pipeline folder)");
    if (!c->prompts || c->nprompts < 1) return dt_fail(err, DT_EINVAL, "prompts: at least one prompt is required (nprompts %d)", c->nprompts);
    for (int i = 0; i < c->nprompts; i++)
        if (!c->prompts[i]) return dt_fail(err, DT_EINVAL, "prompts: prompt %d is NULL", i);
    if (!c->out_path) return dt_fail(err, DT_EINVAL, "out_path: required (the plan file to write)");
    if (c->steps < 1) return dt_fail(err, DT_EINVAL, "steps: expected >= 1, got %d", c->steps);
    if (!(c->threshold >= 0)) return dt_fail(err, DT_EINVAL, "threshold: required, a number >= 0 (delta), got %g", c->threshold);
    if (c->window < 0) return dt_fail(err, DT_EINVAL, "window: required, tokens each side >= 0, got %d", c->window);
    if (c->temporal_window < -1) return dt_fail(err, DT_EINVAL, "temporal_window: expected >= 0 frames (or -1: not given), got %d", c->temporal_window);
    if (c->frames < 0) return dt_fail(err, DT_EINVAL, "frames: expected >= 0 (0: the model's), got %d", c->frames);
    if (!(c->cfg >= 0)) return dt_fail(err, DT_EINVAL, "cfg: expected a number >= 0, got %g", c->cfg);
    if (c->width < 0 || c->height < 0) return dt_fail(err, DT_EINVAL, "width/height: expected >= 0 (0: native), got %d x %d", c->width, c->height);
    if (c->threads < 0) return dt_fail(err, DT_EINVAL, "threads: expected >= 0 (0: all cores), got %d", c->threads);
    return DT_OK;
}

/* One prompt through the pipeline with the calibrator as its step hook. */
static dt_status run_prompt(const dt_fa_calibrate_config *c, dt_pipeline *p, dt_fa_calib *cal, int i, int *tokens,
                            dt_err *err)
{
    dt_gen_request r = dt_gen_request_default();
    r.prompt = c->prompts[i];
    r.steps = c->steps;
    r.cfg = (float)c->cfg;
    r.seed = c->seed + (unsigned long long)i;
    r.width = c->width;
    r.height = c->height;
    r.frames = c->frames;
    r.resolution_binning = c->resolution_binning;
    r.step_hook = dt_fa_calib_step;
    r.step_hook_user = cal;
    dt_gen_result res;
    DT_TRY(dt_pipeline_generate(p, &r, &res, err));
    *tokens = res.tokens; /* recorded in the plan: runs at other sizes are warned */
    free(res.pixels);
    return DT_OK;
}

dt_status dt_fa_calibrate(const dt_fa_calibrate_config *c, dt_fa_calibrate_result *r, dt_err *err)
{
    *r = (dt_fa_calibrate_result){0};
    DT_TRY(check_config(c, err));
    dt_denoiser_info info;
    int F, N, C;
    DT_TRY(dt_fa_model_shape(c->model_dir, c->width, c->height, c->frames, &info, &F, &N, &C, err));
    int video = info.temporal_layers > 0;
    if (video && c->temporal_window < 0)
        return dt_fail(err, DT_EINVAL, "--temporal-window: required for a video model (frames each side)");
    if (!video && (c->temporal_window >= 0 || c->frames))
        return dt_fail(err, DT_EINVAL, "--temporal-window/--frames: only for video models");
    dt_dtype dt = DT_F32;
    if (!c->dtype) dt = dt_backend_default_dtype(DT_DEV_CPU);
    else if (!dt_dtype_parse(c->dtype, &dt) || (dt != DT_F32 && dt != DT_BF16))
        return dt_fail(err, DT_EINVAL, "--dtype: expected f32 or bf16, got \"%s\"", c->dtype);
    dt_attn_plan plan = {0};
    dt_fa_calib *cal = NULL;
    dt_pipeline *p = NULL;
    dt_status s = video ? dt_attn_plan_init_video(&plan, info.spatial_layers, c->steps, c->window, c->temporal_window, err)
                        : dt_attn_plan_init(&plan, info.spatial_layers, c->steps, c->window, err);
    if (s == DT_OK) {
        const char *base = strrchr(c->model_dir, '/');
        snprintf(plan.model, sizeof plan.model, "%s", base && base[1] ? base + 1 : c->model_dir);
        plan.cfg_half = c->cfg_half;
        plan.asc_residual = c->asc_residual;
    }
    dt_fa_calib_opts o = {.threshold = c->threshold, .metric = c->metric, .log = c->log, .log_user = c->log_user};
    if (s == DT_OK) s = dt_fa_calib_create(&plan, c->cfg > 1, &o, &cal, err);
    dt_pipeline_config pc = {.model_dir = c->model_dir, .threads = c->threads, .dtype = dt, .text_dtype = dt};
    if (s == DT_OK) s = dt_pipeline_load(&pc, &p, err);
    double t0 = now();
    for (int i = 0; s == DT_OK && i < c->nprompts; i++) {
        dt_logf(c->log, c->log_user, "calibrate-attn: prompt %d/%d: %s", i + 1, c->nprompts, c->prompts[i]);
        s = run_prompt(c, p, cal, i, &plan.tokens, err);
        dt_fa_calib_next_prompt(cal);
    }
    dt_pipeline_free(p); /* before the calibrator: its hook is installed on the model */
    if (s == DT_OK) s = dt_attn_plan_validate(&plan, "calibrated plan", err);
    if (s == DT_OK) s = dt_attn_plan_save(&plan, c->out_path, err);
    if (s == DT_OK)
        *r = (dt_fa_calibrate_result){.nprompts = c->nprompts, .steps = c->steps, .layers = plan.layers,
                                      .temporal = plan.temporal, .trials = dt_fa_calib_trials(cal),
                                      .trial_forwards = dt_fa_calib_trial_forwards(cal),
                                      .exhaustive_trials = (long)c->nprompts * (c->steps - 1) * plan.layers * 4,
                                      .seconds = now() - t0, .frames = F, .tokens = N, .channels = C};
    dt_fa_calib_free(cal);
    dt_attn_plan_free(&plan);
    return s;
}
