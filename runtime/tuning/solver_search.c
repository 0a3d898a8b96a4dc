/* USF solver-schedule search over a pipeline (solver_search.h). */
#include "solver_search.h"
#include "runtime/core/arena.h"
#include "runtime/core/rng.h"
#include "schedulers/scheduler.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One prompt's text inputs, copied out of its generation. */
typedef struct {
    float *embeds, *mask, *res, *ar;
    int64_t shape[3];
    dt_tensor t;
} ss_text;

typedef struct {
    const dt_solver_search *s;
    int done, captured;
    ss_text *text;
    dt_usf_search_result res;
    /* the guided denoiser, valid inside the hook */
    dt_denoiser *tr;
    dt_denoiser_inputs in;
    dt_arena *arena;
    int rows, C, OC;
    int guided;   /* latent channels CFG guides (the pipeline class's cfg_channels, or all C) */
    size_t plane; /* latent values per channel: h·w for images, F·h·w for videos */
    float *model_in, *model_out, *tsteps;
    dt_tensor tin, tout;
    int64_t in_shape[DT_MAX_DIMS], out_shape[DT_MAX_DIMS];
} ss_ctx;

/* The guided model output for latents x (one sample) at model timestep t, as the sampling
 * loop computes it: the latents copied to every CFG row, uncond + cfg * (cond - uncond) over
 * the first `guided` channels, the prompt row's output over the rest (Open-Sora guides 3 of
 * its 4 latent channels: dt_pipeline_class.cfg_channels). */
static dt_status denoise(void *user, int sample, const float *x, double t, float *out, dt_err *err)
{
    ss_ctx *c = user;
    const ss_text *tx = &c->text[sample / c->s->samples];
    c->in.encoder_hidden_states = &tx->t;
    c->in.encoder_attention_mask = tx->mask;
    c->in.resolution = tx->res;
    c->in.aspect_ratio = tx->ar;
    size_t n = (size_t)c->C * c->plane;
    for (int k = 0; k < c->rows; k++) {
        memcpy(c->model_in + (size_t)k * n, x, n * sizeof(float));
        c->tsteps[k] = (float)t;
    }
    dt_arena_reset(c->arena);
    DT_TRY(dt_denoiser_forward(c->tr, &c->in, c->arena, &c->tout, err));
    size_t on = (size_t)c->OC * c->plane;
    const float *u = c->model_out, *cond = c->rows > 1 ? c->model_out + on : c->model_out;
    float g = c->s->base.cfg;
    size_t ng = c->rows > 1 ? (size_t)c->guided * c->plane : 0;
    for (size_t i = 0; i < ng; i++) out[i] = u[i] + g * (cond[i] - u[i]);
    memcpy(out + ng, cond + ng, (n - ng) * sizeof(float));
    return DT_OK;
}

static float *dup_floats(const float *x, size_t n, int *fail)
{
    if (!x) return NULL;
    float *y = malloc(n * sizeof *y);
    if (!y) { *fail = 1; return NULL; }
    memcpy(y, x, n * sizeof *y);
    return y;
}

/* Keeps a copy of the text inputs (embeddings, mask, micro-conditions) of one prompt. */
static dt_status capture(ss_text *tx, const dt_denoiser_inputs *in, dt_err *err)
{
    const dt_tensor *e = in->encoder_hidden_states;
    int64_t rows = e->shape[0], len = e->shape[1];
    int fail = 0;
    memcpy(tx->shape, e->shape, sizeof tx->shape);
    tx->embeds = dup_floats(e->data, (size_t)(rows * len * e->shape[2]), &fail);
    tx->mask = dup_floats(in->encoder_attention_mask, (size_t)(rows * len), &fail);
    tx->res = dup_floats(in->resolution, (size_t)rows * 2, &fail);
    tx->ar = dup_floats(in->aspect_ratio, (size_t)rows, &fail);
    if (fail) return dt_fail(err, DT_ENOMEM, "search-solver: out of memory");
    tx->t = dt_tensor_view(tx->embeds, DT_F32, 3, tx->shape);
    return DT_OK;
}

static dt_status bind(ss_ctx *c, dt_denoiser *tr, const dt_denoiser_inputs *in, dt_arena *arena, dt_err *err)
{
    const dt_tensor *hs = in->hidden_states;
    c->tr = tr;
    c->arena = arena;
    c->rows = (int)hs->shape[0];
    c->C = (int)hs->shape[1];
    c->plane = 1;
    for (int d = 2; d < hs->ndim; d++) c->plane *= (size_t)hs->shape[d];
    c->OC = dt_denoiser_get_info(tr)->out_channels;
    int gc = dt_pipeline_get_class(c->s->p)->cfg_channels;
    c->guided = gc > 0 && gc < c->C ? gc : c->C;
    c->model_in = malloc((size_t)c->rows * c->C * c->plane * sizeof(float));
    c->model_out = malloc((size_t)c->rows * c->OC * c->plane * sizeof(float));
    c->tsteps = malloc((size_t)c->rows * sizeof(float));
    if (!c->model_in || !c->model_out || !c->tsteps) return dt_fail(err, DT_ENOMEM, "search-solver: out of memory");
    memcpy(c->in_shape, hs->shape, (size_t)hs->ndim * sizeof *c->in_shape);
    memcpy(c->out_shape, hs->shape, (size_t)hs->ndim * sizeof *c->out_shape);
    c->out_shape[1] = c->OC;
    c->tin = dt_tensor_view(c->model_in, DT_F32, hs->ndim, c->in_shape);
    c->tout = dt_tensor_view(c->model_out, DT_F32, hs->ndim, c->out_shape);
    c->in = *in;
    c->in.hidden_states = &c->tin;
    c->in.timestep = c->tsteps;
    return DT_OK;
}

/* The reference solver: the folder's own, unless it reads the model's variance channels (a
 * learned-sigma ancestral sampler: Open-Sora's IDDPMScheduler). That one draws fresh noise at
 * every step, so its sample is not the end of the probability-flow ODE that USF schedules
 * solve (the same seed gives another video); DPM-Solver++(2M) on the folder's betas solves that
 * ODE from the same eps prediction instead. */
static dt_status load_reference(const char *dir, dt_scheduler **out, const char **why, dt_err *err)
{
    *why = NULL;
    DT_TRY(dt_scheduler_load(dir, out, err));
    if (!dt_scheduler_uses_variance(*out)) return DT_OK;
    *why = dt_scheduler_class(*out);
    dt_scheduler_free(*out);
    *out = NULL;
    return dt_scheduler_load_as(dir, "DPMSolverMultistepScheduler", 0, out, err);
}

/* The reference solver at ref_steps from x (in place), for sample k. */
static dt_status reference(ss_ctx *c, int k, float *x, size_t n, float *tmp, float *out, dt_err *err)
{
    dt_scheduler *s;
    const char *why;
    DT_TRY(load_reference(c->s->scheduler_dir, &s, &why, err));
    if (why && k == 0)
        dt_logf(c->s->log, c->s->log_user, "reference: DPMSolverMultistepScheduler (the folder's %s samples with "
                "learned-variance noise, not the ODE the schedule solves)", why);
    dt_status st = dt_scheduler_set_timesteps(s, c->s->ref_steps, err);
    for (int i = 0; st == DT_OK && i < dt_scheduler_num_steps(s); i++) {
        memcpy(tmp, x, n * sizeof(float));
        dt_scheduler_scale_model_input(s, tmp, n);
        st = denoise(c, k, tmp, dt_scheduler_timesteps(s)[i], out, err);
        if (st == DT_OK) st = dt_scheduler_step(s, out, x, x, n, err);
    }
    dt_scheduler_free(s);
    return st;
}

static dt_status run_search(ss_ctx *c, dt_err *err)
{
    const dt_solver_search *a = c->s;
    size_t n = (size_t)c->C * c->plane;
    int S = a->samples * a->nprompts; /* sample k: prompt k / samples, seed seed + k */
    float **xt = calloc((size_t)S, sizeof *xt), **ref = calloc((size_t)S, sizeof *ref);
    float *tmp = malloc(n * sizeof(float)), *out = malloc(n * sizeof(float));
    dt_status st = xt && ref && tmp && out ? DT_OK : dt_fail(err, DT_ENOMEM, "search-solver: out of memory");
    for (int k = 0; st == DT_OK && k < S; k++) {
        xt[k] = malloc(n * sizeof(float));
        ref[k] = malloc(n * sizeof(float));
        if (!xt[k] || !ref[k]) { st = dt_fail(err, DT_ENOMEM, "search-solver: out of memory"); break; }
        dt_rng g; /* the latents txt2img --seed would start from */
        dt_rng_init(&g, a->base.seed + (unsigned long long)k, DT_RNG_VECTOR);
        dt_rng_randn(&g, xt[k], n);
        memcpy(ref[k], xt[k], n * sizeof(float));
        dt_logf(a->log, a->log_user, "reference %d/%d (%d steps)", k + 1, S, a->ref_steps);
        st = reference(c, k, ref[k], n, tmp, out, err);
    }
    dt_usf_search_opts o = {.scheduler_dir = a->scheduler_dir, .nfe = a->nfe, .population = a->population,
                            .generations = a->generations, .max_order = a->max_order, .seed = a->base.seed};
    if (st == DT_OK) dt_logf(a->log, a->log_user, "NFE %d, population %d, %d generations", a->nfe, a->population, a->generations);
    if (st == DT_OK)
        st = dt_usf_search(&o, denoise, c, S, (const float *const *)xt, (const float *const *)ref, n, a->out_path, &c->res, err);
    for (int k = 0; k < S && xt && ref; k++) { free(xt[k]); free(ref[k]); }
    free(xt); free(ref); free(tmp); free(out);
    return st;
}

static dt_status hook(void *user, int step, dt_denoiser *tr, const dt_denoiser_inputs *inputs, dt_arena *arena, dt_err *err)
{
    ss_ctx *c = user;
    if (step != 0 || c->done || c->captured >= c->s->nprompts) return DT_OK;
    DT_TRY(capture(&c->text[c->captured], inputs, err));
    if (++c->captured == c->s->nprompts) {
        DT_TRY(bind(c, tr, inputs, arena, err));
        DT_TRY(run_search(c, err));
        c->done = 1;
    }
    return dt_fail(err, DITRT_ECANCELLED, "text captured"); /* stops the generation */
}

dt_status dt_search_solver(const dt_solver_search *s, dt_solver_search_result *out, dt_err *err)
{
    *out = (dt_solver_search_result){0};
    if (s->nprompts < 1) return dt_fail(err, DT_EINVAL, "prompts: at least one calibration prompt is needed");
    if (s->samples < 1) return dt_fail(err, DT_EINVAL, "samples: at least one seed per prompt is needed");
    ss_ctx c = {.s = s};
    c.text = calloc((size_t)s->nprompts, sizeof *c.text);
    dt_status st = c.text ? DT_OK : dt_fail(err, DT_ENOMEM, "out of memory");
    for (int i = 0; st == DT_OK && i < s->nprompts; i++) {
        dt_gen_request r = s->base;
        r.prompt = s->prompts[i];
        r.batch = 1;
        r.steps = 1;
        r.step_hook = hook;
        r.step_hook_user = &c;
        dt_gen_result res;
        if (s->nprompts > 1) dt_logf(s->log, s->log_user, "prompt %d/%d: %s", i + 1, s->nprompts, r.prompt);
        st = dt_pipeline_check(s->p, &r, err);
        if (st == DT_OK) st = dt_pipeline_generate(s->p, &r, &res, err);
        if (st == DT_OK) { free(res.pixels); st = dt_fail(err, DT_EINVAL, "search-solver: the generation never reached its first step"); }
        else if (c.captured == i + 1 && (c.done || i + 1 < s->nprompts)) { /* the hook stopped it, as intended */
            st = DT_OK;
            dt_err_clear(err);
        }
    }
    if (st == DT_OK && !c.done) st = dt_fail(err, DT_EINVAL, "search-solver: the search did not run");
    free(c.model_in); free(c.model_out); free(c.tsteps);
    for (int i = 0; i < s->nprompts && c.text; i++) {
        free(c.text[i].embeds); free(c.text[i].mask); free(c.text[i].res); free(c.text[i].ar);
    }
    free(c.text);
    if (st == DT_OK) *out = (dt_solver_search_result){c.res, s->nprompts, s->samples};
    return st;
}
