/* The public API of attention plans (include/ditrt.h, section "attention plans"):
 * DiTFastAttn calibration and plan summaries over runtime/plans/fastattn*.c. */
#include "ditrt.h"
#include "api_internal.h"
#include "runtime/core/error.h"
#include "runtime/plans/fastattn.h"
#include "runtime/tuning/fastattn_calibrate.h"
#include <stdio.h>
#include <string.h>

void ditrt_attn_calib_params_init(ditrt_attn_calib_params *p)
{
    if (!p) return;
    *p = (ditrt_attn_calib_params){.struct_size = sizeof *p, .steps = 20, .window = -1, .temporal_window = -1,
                                   .threshold = -1, .metric = "rel", .cfg = 4.5, .resolution_binning = 1,
                                   .cfg_half = "cond", .asc_residual = "same"};
}

/* A caller's result struct: struct_size says how much of it the caller's header knows; the
 * library fills that prefix from its own full struct `full`. */
static dt_status check_out_struct(const void *out, size_t min, size_t known, const char *type, dt_err *err)
{
    if (!out) return dt_fail(err, DT_EINVAL, "%s: NULL", type);
    size_t got = *(const size_t *)out;
    if (got == 0) return dt_fail(err, DT_EINVAL, "%s: struct_size is 0; set it to sizeof(%s)", type, type);
    if (got > known)
        return dt_fail(err, DT_EINVAL, "%s: struct_size %zu is larger than this library's %zu (a newer ditrt.h than "
                       "libditrt %s)", type, got, known, ditrt_version());
    if (got < min) return dt_fail(err, DT_EINVAL, "%s: struct_size %zu is smaller than any published layout (%zu)", type, got, min);
    return DT_OK;
}

static void write_out_struct(void *out, void *full)
{
    size_t got = *(const size_t *)out;
    *(size_t *)full = got;
    memcpy(out, full, got);
}

ditrt_status ditrt_calibrate_attn(const ditrt_attn_calib_params *params, ditrt_attn_calib_result *r, ditrt_error *err)
{
    dt_err e = {0};
    if (!err) err = &e;
    *err = (ditrt_error){0};
    if (r) DT_TRY(check_out_struct(r, DT_END_OF(ditrt_attn_calib_result, seconds), sizeof *r, "ditrt_attn_calib_result", err));
    ditrt_attn_calib_params p;
    DT_TRY(DT_API_READ(ditrt_attn_calib_params, params, &p, log_user, ditrt_attn_calib_params_init, err));
    DT_TRY(dt_api_cpu_dtype("--dtype", p.dtype, "calibrate-attn", &p.dtype, err)); /* named as its other flags */
    dt_fa_calibrate_config c = {.model_dir = p.model_dir, .prompts = p.prompts, .nprompts = p.nprompts,
                                .out_path = p.out_path, .steps = p.steps, .window = p.window,
                                .temporal_window = p.temporal_window, .frames = p.frames, .threshold = p.threshold,
                                .cfg = p.cfg, .seed = p.seed, .width = p.width, .height = p.height,
                                .resolution_binning = p.resolution_binning, .dtype = p.dtype, .threads = p.threads,
                                .log = p.log, .log_user = p.log_user};
    if (!p.metric || (strcmp(p.metric, "rel") && strcmp(p.metric, "ssim")))
        return dt_fail(err, DT_EINVAL, "metric: expected \"rel\" or \"ssim\", got %s%s%s", p.metric ? "\"" : "",
                       p.metric ? p.metric : "NULL", p.metric ? "\"" : "");
    if (!p.cfg_half || (strcmp(p.cfg_half, "cond") && strcmp(p.cfg_half, "uncond")))
        return dt_fail(err, DT_EINVAL, "cfg_half: expected \"cond\" or \"uncond\", got %s%s%s", p.cfg_half ? "\"" : "",
                       p.cfg_half ? p.cfg_half : "NULL", p.cfg_half ? "\"" : "");
    if (!p.asc_residual || (strcmp(p.asc_residual, "same") && strcmp(p.asc_residual, "first")))
        return dt_fail(err, DT_EINVAL, "asc_residual: expected \"same\" or \"first\", got %s%s%s", p.asc_residual ? "\"" : "",
                       p.asc_residual ? p.asc_residual : "NULL", p.asc_residual ? "\"" : "");
    c.metric = strcmp(p.metric, "rel") ? DT_FA_METRIC_SSIM : DT_FA_METRIC_REL;
    c.cfg_half = strcmp(p.cfg_half, "cond") ? DT_FA_HALF_UNCOND : DT_FA_HALF_COND;
    c.asc_residual = strcmp(p.asc_residual, "same") ? DT_FA_RES_FIRST : DT_FA_RES_SAME;
    dt_fa_calibrate_result cr;
    DT_TRY(dt_fa_calibrate(&c, &cr, err));
    if (r) {
        ditrt_attn_calib_result full = {.nprompts = cr.nprompts, .steps = cr.steps, .layers = cr.layers - cr.temporal,
                                        .temporal_layers = cr.temporal, .trials = cr.trials,
                                        .trial_forwards = cr.trial_forwards, .exhaustive_trials = cr.exhaustive_trials,
                                        .seconds = cr.seconds};
        write_out_struct(r, &full);
    }
    return DT_OK;
}

const char *ditrt_attn_method_name(int method)
{
    return method >= 0 && method < DITRT_ATTN_NMETHODS ? dt_fa_method_name((dt_fa_method)method) : NULL;
}

/* The summary of a loaded plan at B x F frames x N tokens x C. */
static void summarize(const dt_attn_plan *p, int B, int F, int N, int C, ditrt_attn_plan_summary *s)
{
    int spatial = p->layers - p->temporal;
    snprintf(s->model, sizeof s->model, "%s", p->model);
    s->layers = spatial;
    s->temporal_layers = p->temporal;
    s->steps = p->steps;
    s->window = p->window;
    s->temporal_window = p->temporal ? p->temporal_window : 0;
    s->cfg_half = p->cfg_half == DT_FA_HALF_COND ? "cond" : "uncond";
    s->asc_residual = p->asc_residual == DT_FA_RES_SAME ? "same" : "first";
    for (int l = 0; l < p->layers; l++)
        for (int t = 0; t < p->steps; t++) s->methods[l >= spatial][dt_attn_plan_at(p, l, t)]++;
    dt_attn_plan_cost c;
    dt_attn_plan_cost_video(p, B, F, N, C, &c);
    s->batch = B, s->frames = F, s->tokens = N, s->channels = C;
    s->attn_flops = c.attn_flops;
    s->attn_flops_full = c.attn_flops_full;
    s->module_flops = c.module_flops;
    s->module_flops_full = c.module_flops_full;
    s->cache_peak_bytes = (double)c.cache_peak_bytes;
}

_Static_assert(DITRT_ATTN_NMETHODS == DT_FA_COUNT, "DITRT_ATTN_NMETHODS");

ditrt_status ditrt_attn_plan_summarize(const char *plan_path, const char *model_dir, int width, int height, int frames,
                                       ditrt_attn_plan_summary *s, ditrt_error *err)
{
    dt_err e = {0};
    if (!err) err = &e;
    *err = (ditrt_error){0};
    DT_TRY(check_out_struct(s, DT_END_OF(ditrt_attn_plan_summary, cache_peak_bytes), sizeof *s, "ditrt_attn_plan_summary", err));
    if (!plan_path) return dt_fail(err, DT_EINVAL, "plan_path: NULL");
    if (width < 0 || height < 0 || frames < 0)
        return dt_fail(err, DT_EINVAL, "width/height/frames: expected >= 0 (0: native), got %d x %d, %d frames", width, height, frames);
    dt_attn_plan p;
    DT_TRY(dt_attn_plan_load(plan_path, &p, err));
    int F, N, C = 1152;
    dt_status st = DT_OK;
    if (model_dir) {
        dt_denoiser_info info;
        st = dt_fa_model_shape(model_dir, width, height, frames, &info, &F, &N, &C, err);
        if (st == DT_OK) st = dt_attn_plan_check(&p, info.spatial_layers, info.temporal_layers, p.steps, err);
    } else { /* the reference models: PixArt-XL-2 at 1024 px, Latte-1 at 512 px and 16 frames (16 px a token) */
        F = p.temporal ? (frames ? frames : 16) : 1;
        N = width > 0 && height > 0 ? (width / 16) * (height / 16) : p.temporal ? 1024 : 4096;
    }
    if (st == DT_OK) {
        ditrt_attn_plan_summary full = {0};
        summarize(&p, 2, F, N, C, &full);
        write_out_struct(s, &full);
    }
    dt_attn_plan_free(&p);
    return st;
}
