/* DiTFastAttn attention plans: per layer and denoising step, the self-attention of a DiT
 * block is computed fully or replaced by a cheaper method reusing earlier steps' work.
 *
 * Methods (names as in plan files; the published names are accepted too):
 *   "full"      attention over all tokens (step 0 must compute: full, asc).
 *   "wars"      WA-RS: banded attention |i−j| <= window plus the residual R = full − window
 *               (per head, before to_out) cached at the layer's last full/asc step.
 *   "ast"       AST: the layer's output (after to_out) of its last computed step, reused.
 *   "asc"       ASC (alias "full+asc"): full attention on one CFG half only; the output
 *               after to_out is copied to the other half. Needs a CFG batch [uncond, cond].
 *   "wars+asc"  WA-RS on one CFG half, copied likewise.
 * Plan options: "cfg_half" ("cond" default, as the published code; or "uncond") is the half
 * ASC computes; "asc_residual" ("same" default: the residual of the computed half; or
 * "first": the first batch half's, the published code's quirk) is what WA-RS+ASC adds.
 * An ASC step that caches a residual computes it on its half and uses it for both halves.
 *
 * Plan file (JSON): {"format": "ditrt-attn-plan", "model": "...", "steps": S, "window": w,
 *   "tokens": N (optional: tokens per frame at calibration, for a warning at other sizes),
 *   "cfg_half": "cond", "asc_residual": "same", "layers": [[method per step] per layer]}
 * A plan is checked once at load (shape, names, nothing used before it is cached) and again
 * against a model's layer count and a run's step count.
 *
 * Video models (Latte) have two kinds of self-attention per layer: spatial (over one frame's
 * tokens) and temporal (over one token's frames). Their plans add
 *   "temporal_window": wt, "temporal_layers": [[method per step] per temporal layer]
 * and "layers" then lists the spatial layers. Rows are held spatial 0..L−1 then temporal
 * 0..L−1 (row L+i is temporal layer i, the index Latte's temporal blocks give the hook);
 * errors name rows "spatial layer i" / "temporal layer i". Windows: |i−j| <= window over the
 * flattened row-major tokens of a frame (spatial, as for images), |i−j| <= temporal_window
 * over frames (temporal). A plan without temporal layers is refused for a video model and
 * one with them for an image model.
 *
 * At run time dt_fastattn holds the per-layer caches: a residual or an output is kept only
 * while a later step of the plan still uses it (calibration keeps all of them). */
#ifndef DT_FASTATTN_H
#define DT_FASTATTN_H
#include <stddef.h>
#include "runtime/core/error.h"
#include "runtime/models/dit_block.h"
#include "runtime/models/denoiser.h"

typedef enum {
    DT_FA_FULL = 0,
    DT_FA_WARS,
    DT_FA_AST,
    DT_FA_ASC,      /* full attention on one CFG half */
    DT_FA_WARS_ASC, /* window attention + residual on one CFG half */
    DT_FA_COUNT
} dt_fa_method;

typedef enum { DT_FA_HALF_COND = 0, DT_FA_HALF_UNCOND } dt_fa_half;
typedef enum { DT_FA_RES_SAME = 0, DT_FA_RES_FIRST } dt_fa_residual;

typedef struct dt_attn_plan {
    char model[256];
    int steps, layers, window;
    int tokens; /* tokens per frame it was calibrated at ("tokens"; 0: not recorded, older plans) */
    int temporal, temporal_window; /* video plans: the last `temporal` rows of `layers` are temporal */
    dt_fa_half cfg_half;
    dt_fa_residual asc_residual;
    unsigned char *m; /* [layers][steps] dt_fa_method */
} dt_attn_plan;

const char *dt_fa_method_name(dt_fa_method m);
static inline dt_fa_method dt_attn_plan_at(const dt_attn_plan *p, int layer, int step)
{
    return (dt_fa_method)p->m[(size_t)layer * p->steps + step];
}

/* The window of row `layer` (temporal rows: temporal_window). */
static inline int dt_attn_plan_window(const dt_attn_plan *p, int layer)
{
    return layer >= p->layers - p->temporal ? p->temporal_window : p->window;
}
/* "layer 3" (image plans), "spatial layer 3" / "temporal layer 1" (video plans). */
void dt_attn_plan_row_name(const dt_attn_plan *p, int layer, char *buf, size_t size);

/* An all-"full" plan (methods set afterwards with p->m); free with dt_attn_plan_free. */
dt_status dt_attn_plan_init(dt_attn_plan *p, int layers, int steps, int window, dt_err *err);
/* An all-"full" video plan: `layers` spatial rows then `layers` temporal rows. */
dt_status dt_attn_plan_init_video(dt_attn_plan *p, int layers, int steps, int window, int temporal_window, dt_err *err);
void dt_attn_plan_free(dt_attn_plan *p);
dt_status dt_attn_plan_load(const char *path, dt_attn_plan *p, dt_err *err);
/* Parses JSON text; `what` names the source in errors. */
dt_status dt_attn_plan_parse(const char *text, const char *what, dt_attn_plan *p, dt_err *err);
dt_status dt_attn_plan_save(const dt_attn_plan *p, const char *path, dt_err *err);
/* Plan-internal rules (first offending layer and step named); `what` names the source. */
dt_status dt_attn_plan_validate(const dt_attn_plan *p, const char *what, dt_err *err);
/* Refuses a plan made for another step or layer count, or for another kind of model
 * (temporal = 0: an image model; else a video model with `layers` spatial and `temporal`
 * temporal layers); the first layer without a match is named. */
dt_status dt_attn_plan_check(const dt_attn_plan *p, int layers, int temporal, int steps, dt_err *err);

/* Whether a layer's residual / output must still be held after `step` under the plan. */
int dt_attn_plan_residual_live(const dt_attn_plan *p, int layer, int step);
int dt_attn_plan_output_live(const dt_attn_plan *p, int layer, int step);

/* Cost accounting for B sequences of N tokens, width C: attention FLOPs (QKᵀ and PV,
 * including the extra window pass of a step that caches a residual) and self-attention
 * module FLOPs (plus the qkv and out projections), each as kept / full over all layers and
 * steps; and the peak bytes of the caches held between steps. */
typedef struct {
    double attn_flops, attn_flops_full, module_flops, module_flops_full;
    size_t cache_peak_bytes;
    int count[DT_FA_COUNT];
} dt_attn_plan_cost;
void dt_attn_plan_cost_of(const dt_attn_plan *p, int B, int N, int C, dt_attn_plan_cost *out);
/* Video plans: B videos of F frames of N tokens (spatial rows: B·F sequences of N tokens;
 * temporal rows: B·N sequences of F frames). */
void dt_attn_plan_cost_video(const dt_attn_plan *p, int B, int F, int N, int C, dt_attn_plan_cost *out);
/* Σ_i (min(N−1, i+w) − max(0, i−w) + 1): the score count of one head's band. */
double dt_fa_band_pairs(int64_t N, int64_t w);

/* ---- runtime ---- */
typedef struct dt_fastattn dt_fastattn;

/* The plan is borrowed and must outlive the runtime. cfg: whether the batch is a CFG batch
 * [uncond..., cond...] (ASC methods fail without one; Latte's temporal batch [b, token] is
 * one too, its halves are the samples'). */
dt_status dt_fastattn_create(const dt_attn_plan *plan, int cfg, dt_fastattn **out, dt_err *err);
void dt_fastattn_free(dt_fastattn *fa);
/* For a sampling loop: a NULL plan gives *out = NULL; else the plan is checked against the
 * model's layers (temporal: its temporal layers, 0 for image models) and the run's steps and
 * a runtime created. */
dt_status dt_fastattn_begin(const dt_attn_plan *plan, int layers, int temporal, int steps, int cfg, dt_fastattn **out, dt_err *err);
dit_attn_hook *dt_fastattn_hook(dt_fastattn *fa);
/* The step the next forward belongs to (0-based; the pipeline calls it every step). */
dt_status dt_fastattn_set_step(dt_fastattn *fa, int step, dt_err *err);
/* Drops every cache (a new generation starts at step 0). */
void dt_fastattn_reset(dt_fastattn *fa);
size_t dt_fastattn_cache_bytes(const dt_fastattn *fa);
size_t dt_fastattn_cache_peak(const dt_fastattn *fa);

/* Calibration controls: keep_all stores every residual and output regardless of the plan
 * (future steps are not decided yet); frozen forwards read caches but write none (trials). */
void dt_fastattn_set_calibration(dt_fastattn *fa, int keep_all, int frozen);
/* Whether layer `layer` holds a residual / an output now. */
int dt_fastattn_has_residual(const dt_fastattn *fa, int layer);
int dt_fastattn_has_output(const dt_fastattn *fa, int layer);

/* ---- calibration (fastattn_calib.c): the greedy search of the published code ----
 * Per step t > 0 and layer l = 0..L−1, candidates AST → WA-RS+ASC → WA-RS → ASC are tried in
 * order (ASC ones only with CFG; none whose cache is missing); the first whose loss against
 * this step's all-full output is below δ·(l+1)/L is kept, else "full". Trials are frozen
 * partial forwards (dt_denoiser_set_resume): they start at block l (or l−1, replaying its decided
 * self-attention output) from the saved residual stream, so a trial costs about (L−l+1)/L of
 * a forward and a step about L forwards' worth instead of 4·L. The real forward then follows
 * the compressed trajectory. Over several prompts a (layer, step) only ever
 * moves to a later candidate or to "full", so the plan holds for every prompt. */
typedef enum { DT_FA_METRIC_REL = 0, DT_FA_METRIC_SSIM } dt_fa_metric;
typedef struct {
    double threshold; /* δ */
    dt_fa_metric metric;
    ditrt_log_fn log; /* progress lines (one per step), or NULL */
    void *log_user;
    int verify;       /* tests: each trial (partial, replaying) must equal a plain forward of its
                       * plan bit for bit, and the decided step the last accepted trial (else counted) */
} dt_fa_calib_opts;
typedef struct dt_fa_calib dt_fa_calib;
/* plan: all-"full" of the model's layers and the run's steps, filled in place. */
dt_status dt_fa_calib_create(dt_attn_plan *plan, int cfg, const dt_fa_calib_opts *o, dt_fa_calib **out, dt_err *err);
void dt_fa_calib_free(dt_fa_calib *c);
/* dt_gen_request.step_hook with user = the calibrator; it installs its attention hook on the
 * model for that generation (the pipeline removes it at the end). Its caches live in the
 * model's backend memory: free the calibrator before the pipeline. A video model's plan has spatial and
 * temporal rows; its layers are decided in execution order (spatial 0, temporal 0, spatial 1,
 * ...), δ_e = δ·(e+1)/(2L) by that position, and trials start at the block of the layer tried. */
dt_status dt_fa_calib_step(void *user, int step, dt_denoiser *tr, const dt_denoiser_inputs *inputs, dt_arena *arena,
                           dt_err *err);
/* Between prompts: drops the caches; later prompts may only make decisions more conservative. */
void dt_fa_calib_next_prompt(dt_fa_calib *c);
/* Trial forwards run so far. */
long dt_fa_calib_trials(const dt_fa_calib *c);
/* Their cost in whole forwards (each runs only the blocks from its start on). */
double dt_fa_calib_trial_forwards(const dt_fa_calib *c);
/* With opts.verify: trials and steps that disagreed with plain forwards. */
long dt_fa_calib_mismatches(const dt_fa_calib *c);
/* The published loss: mean(clip(|a − b| / (max(a, b) + 1e−6), 0, 10)) (elementwise signed max). */
double dt_fa_loss_rel(const float *a, const float *ref, size_t n);
/* 1 − mean SSIM over the [h, w] planes of [P, h, w] (7×7 box windows, range of ref). */
double dt_fa_loss_ssim(const float *a, const float *ref, int planes, int h, int w);

#endif
