/* LattePipeline, step by step (pipeline_latte.py of diffusers 0.30.3). */
#include "pipeline_video.h"
#include "pipeline_parts.h"
#include "runtime/core/arena.h"
#include "runtime/core/json.h"
#include "runtime/models/modeldir.h"
#include "runtime/core/rng.h"
#include "runtime/models/latte.h"
#include "runtime/models/vae.h"
#include "prompt.h"
#include "runtime/plans/fastattn.h"
#include "runtime/plans/quantize.h"
#include "runtime/text/tokenizer.h"
#include "kernels/backend.h"
#include "schedulers/scheduler.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LATTE_MAX_LEN 120   /* encode_prompt's fixed max_length */
#define DECODE_CHUNK 14     /* decode_latents' decode_chunk_size */

struct dt_video_pipeline {
    dt_video_pipeline_config cfg;
    dt_pipeline_parts parts; /* backends, tokenizer, VAE, scheduler, arena */
    latte_model *tr;
};


dt_video_request dt_video_request_default(void)
{
    return (dt_video_request){.negative_prompt = "", .steps = 50, .batch = 1, .cfg = 7.5f, .clean_caption = 1};
}

static dt_status load_parts(dt_video_pipeline *p, dt_err *err)
{
    const dt_video_pipeline_config *c = &p->cfg;
    dt_parts_config pc = {.model_dir = c->model_dir, .dtype = c->dtype, .text_dtype = c->text_dtype, .threads = c->threads,
                          .solver = c->solver, .karras = c->karras};
    DT_TRY(dt_pipeline_parts_load(&pc, &p->parts, err));
    if (strcmp(p->parts.cls, "LattePipeline"))
        return dt_fail(err, DT_EUNSUPPORTED, "%s/model_index.json: pipeline \"%s\" is not a text-to-video pipeline (LattePipeline)",
                       c->model_dir, p->parts.cls);
    char dir[4096];
    DT_TRY(dt_pipeline_parts_transformer_dir(c->model_dir, dir, sizeof dir, err));
    DT_TRY(c->quant ? dt_quant_load_latte(p->parts.be, dir, c->quant, &p->tr, err) : latte_load(p->parts.be, dir, &p->tr, err));
    const latte_config *tc = latte_get_config(p->tr);
    return dt_pipeline_parts_check_channels(&p->parts, c->model_dir, tc->in_channels, tc->out_channels, err);
}

dt_status dt_video_pipeline_load(const dt_video_pipeline_config *cfg, dt_video_pipeline **out, dt_err *err)
{
    *out = NULL;
    if (!cfg->model_dir) return dt_fail(err, DT_EINVAL, "model: no model folder given");
    dt_video_pipeline *p = calloc(1, sizeof *p);
    if (!p) return dt_fail(err, DT_ENOMEM, "out of memory");
    p->cfg = *cfg;
    dt_status s = load_parts(p, err);
    if (s != DT_OK) { dt_video_pipeline_free(p); return s; }
    *out = p;
    return DT_OK;
}

void dt_video_pipeline_free(dt_video_pipeline *p)
{
    if (!p) return;
    latte_free(p->tr);
    dt_pipeline_parts_free(&p->parts);
    free(p);
}

int dt_video_pipeline_native_size(const dt_video_pipeline *p) { return latte_get_config(p->tr)->sample_size * vae_upscale(p->parts.vae); }
int dt_video_pipeline_max_frames(const dt_video_pipeline *p) { return latte_get_config(p->tr)->video_length; }
const char *dt_video_pipeline_solver_name(const dt_video_pipeline *p) { return dt_scheduler_class(p->parts.sched); }
const char *dt_video_pipeline_solver_warning(const dt_video_pipeline *p) { return dt_pipeline_parts_solver_warning(&p->parts); }

/* ---- request checks ---- */

typedef struct {
    int width, height, frames, cfg_on, decode_chunk;
} vplan;


/* Activation bytes of one transformer step: the buffers latte_forward allocates plus the
 * attention score blocks. */
static double step_bytes(const latte_config *c, int rows, int F, int h, int w)
{
    double N = (double)(h / c->patch_size) * (w / c->patch_size), C = c->inner, M = (double)rows * F * N;
    double po = (double)c->out_channels * c->patch_size * c->patch_size;
    return 4 * (M * (13 * C + 2.0 * c->in_channels * c->patch_size * c->patch_size + 2 * po)
                + (double)rows * F * LATTE_MAX_LEN * 4 * C + (double)rows * (F + N) * 6 * C) + 48e6;
}

static dt_status plan_request(dt_video_pipeline *p, const dt_video_request *r, vplan *pl, dt_err *err)
{
    const latte_config *tc = latte_get_config(p->tr);
    int up = vae_upscale(p->parts.vae), mult = tc->patch_size * up, native = dt_video_pipeline_native_size(p);
    if (!r->prompt) return dt_fail(err, DT_EINVAL, "prompt: missing");
    if (r->steps <= 0 || r->steps > 1000) return dt_fail(err, DT_EINVAL, "steps: must be in 1..1000, got %d", r->steps);
    if (!(r->cfg >= 0.0f) || !isfinite(r->cfg)) return dt_fail(err, DT_EINVAL, "cfg: must be >= 0, got %g", r->cfg);
    if (!(r->eta >= 0.0f) || !isfinite(r->eta)) return dt_fail(err, DT_EINVAL, "eta: must be >= 0, got %g", r->eta);
    if (r->batch <= 0 || r->batch > 64) return dt_fail(err, DT_EINVAL, "batch: must be in 1..64, got %d", r->batch);
    if (r->frames < 0 || r->frames > tc->video_length)
        return dt_fail(err, DT_EINVAL, "frames: this model takes 1 to %d frames (video_length), got %d", tc->video_length, r->frames);
    if (r->width < 0 || r->height < 0 || r->decode_chunk < 0)
        return dt_fail(err, DT_EINVAL, "size: width, height and decode chunk must be positive");
    pl->width = r->width ? r->width : native;
    pl->height = r->height ? r->height : native;
    pl->frames = r->frames ? r->frames : tc->video_length;
    if (pl->width % mult || pl->height % mult)
        return dt_fail(err, DT_EINVAL, "size: width and height must be multiples of %d for this model, got %dx%d",
                       mult, pl->width, pl->height);
    if (pl->width > 16384 || pl->height > 16384)
        return dt_fail(err, DT_EINVAL, "size: %dx%d is larger than 16384 px on a side", pl->width, pl->height);
    pl->cfg_on = r->cfg > 1.0f;
    /* the plan against the model and the step count (DDIM: one evaluation a step; the sampling
     * loop checks again against the scheduler's count) */
    if (r->attn_plan) DT_TRY(dt_attn_plan_check_video(r->attn_plan, tc->num_layers, tc->num_layers, r->steps, err));
    int h = pl->height / up, w = pl->width / up, total = r->batch * pl->frames;
    pl->decode_chunk = r->decode_chunk ? r->decode_chunk : DECODE_CHUNK;
    if (pl->decode_chunk > total) pl->decode_chunk = total;
    size_t avail = dt_mem_available(), vb = 0;
    double video = 4.0 * total * 3 * (double)pl->height * pl->width;
    double tb = step_bytes(tc, r->batch * (pl->cfg_on ? 2 : 1), pl->frames, h, w);
    /* a smaller decode batch when the default one would not fit; results do not change */
    for (;;) {
        DT_TRY(vae_decode_bytes(p->parts.vae, pl->decode_chunk, h, w, 0, &vb, err));
        if (r->decode_chunk || r->force || !avail || pl->decode_chunk == 1 || vb + video < 0.8 * avail) break;
        pl->decode_chunk /= 2;
    }
    double need = fmax(tb, (double)vb) + video;
    if (!r->force && avail && need > (double)avail)
        return dt_fail(err, DT_ENOMEM, "size: %dx%d x%d frames x%d needs about %.1f GB, %.1f GB is available "
                       "(try a smaller size, fewer frames, --decode-chunk 1, or --force)",
                       pl->width, pl->height, pl->frames, r->batch, need / 1e9, avail / 1e9);
    return DT_OK;
}

dt_status dt_video_pipeline_check(dt_video_pipeline *p, const dt_video_request *r, dt_err *err)
{
    vplan pl;
    return plan_request(p, r, &pl, err);
}

/* ---- text ---- */

typedef struct {
    float *embeds; /* [rows, T, d] */
    int rows, T, d;
} text_out;

/* encode_prompt with mask_feature: see the header. */
static dt_status encode_text(dt_video_pipeline *p, const dt_video_request *r, const vplan *pl, text_out *t,
                             dt_video_result *res, dt_err *err)
{
    int d = latte_get_config(p->tr)->caption_channels;
    dt_prompt_encoder enc = {p->parts.tok, p->parts.text_dir, p->parts.text_be, NULL, d};
    dt_prompt_request pr = {r->prompt, r->negative_prompt, pl->cfg_on, r->clean_caption, LATTE_MAX_LEN, r->batch};
    dt_prompt_result out;
    DT_TRY(dt_encode_prompts(&enc, &pr, &p->parts.arena, &out, err));
    res->prompt_truncated = out.prompt_truncated;
    res->negative_truncated = out.negative_truncated;
    int L = LATTE_MAX_LEN, rows = out.rows, first = pl->cfg_on ? r->batch : 0; /* first prompt row */
    *t = (text_out){out.embeds, rows, L, d};
    if (r->batch == 1) {
        int keep = 0;
        for (int i = 0; i < L; i++) keep += out.masks[(size_t)first * L + i] != 0.0f;
        for (int row = 0; row < rows; row++)
            memmove(out.embeds + (size_t)row * keep * d, out.embeds + (size_t)row * L * d, (size_t)keep * d * sizeof(float));
        t->T = keep;
    } else {
        for (int row = first; row < rows; row++)
            for (int i = 0; i < L; i++)
                for (int k = 0; k < d; k++) out.embeds[((size_t)row * L + i) * d + k] *= out.masks[(size_t)row * L + i];
    }
    free(out.masks);
    return DT_OK;
}

/* ---- sampling ---- */

typedef struct {
    dt_video_pipeline *p;
    const dt_video_request *r;
    const vplan *pl;
    const text_out *text;
    int B, rows, C, out_ch, F, h, w;
    float *latents, *model_in, *model_out, *guided, *tsteps;
} vsampler;

/* u + g (c - u) over the latent channels (a learned-sigma half is dropped). */
static void guide(const vsampler *sp)
{
    size_t vol = (size_t)sp->F * sp->h * sp->w, chw = (size_t)sp->C * vol, ochw = (size_t)sp->out_ch * vol;
    float g = sp->r->cfg;
    for (int b = 0; b < sp->B; b++) {
        const float *c = sp->model_out + (size_t)(sp->pl->cfg_on ? sp->B + b : b) * ochw;
        const float *u = sp->model_out + (size_t)b * ochw;
        float *o = sp->guided + (size_t)b * chw;
        if (sp->pl->cfg_on)
            for (size_t i = 0; i < chw; i++) o[i] = u[i] + g * (c[i] - u[i]);
        else
            memcpy(o, c, chw * sizeof(float));
    }
}

static dt_status sample_loop(vsampler *sp, dt_err *err)
{
    dt_video_pipeline *p = sp->p;
    size_t per = (size_t)sp->C * sp->F * sp->h * sp->w, n = (size_t)sp->B * per;
    /* the timesteps were set by the caller, before init_noise_sigma was read */
    int steps = dt_scheduler_num_steps(p->parts.sched);
    const double *ts = dt_scheduler_timesteps(p->parts.sched);
    int64_t in_shape[5] = {sp->rows, sp->C, sp->F, sp->h, sp->w}, out_shape[5] = {sp->rows, sp->out_ch, sp->F, sp->h, sp->w};
    int64_t e_shape[3] = {sp->rows, sp->text->T, sp->text->d};
    dt_tensor tin = dt_tensor_view(sp->model_in, DT_F32, 5, in_shape), tout = dt_tensor_view(sp->model_out, DT_F32, 5, out_shape);
    dt_tensor te = dt_tensor_view(sp->text->embeds, DT_F32, 3, e_shape);
    latte_inputs in = {.hidden_states = &tin, .encoder_hidden_states = &te, .timestep = sp->tsteps};
    const latte_config *tc = latte_get_config(p->tr);
    dt_fastattn *fa = NULL; /* DiTFastAttn plan runtime */
    dt_status s = dt_fastattn_begin(sp->r->attn_plan, tc->num_layers, tc->num_layers, steps, sp->pl->cfg_on, &fa, err);
    if (fa) latte_set_attn_hook(p->tr, dt_fastattn_hook(fa));
    for (int i = 0; i < steps && s == DT_OK; i++) {
        double t0 = dt_now();
        for (int k = 0; k < sp->rows; k++) {
            memcpy(sp->model_in + (size_t)k * per, sp->latents + (size_t)(k % sp->B) * per, per * sizeof(float));
            sp->tsteps[k] = (float)ts[i];
        }
        dt_scheduler_scale_model_input(p->parts.sched, sp->model_in, (size_t)sp->rows * per);
        dt_arena_reset(&p->parts.arena);
        if (fa) s = dt_fastattn_set_step(fa, i, err);
        if (s == DT_OK && sp->r->step_hook) {
            s = sp->r->step_hook(sp->r->step_hook_user, i, p->tr, &in, &p->parts.arena, err);
            dt_arena_reset(&p->parts.arena);
        }
        if (s == DT_OK) s = latte_forward(p->tr, &in, &p->parts.arena, &tout, err);
        if (s != DT_OK) break;
        guide(sp);
        s = dt_scheduler_step(p->parts.sched, sp->guided, sp->latents, sp->latents, n, err);
        if (s == DT_OK && ((sp->r->progress && sp->r->progress(i + 1, steps, dt_now() - t0, sp->r->progress_user)) ||
                           (sp->r->cancel && *sp->r->cancel)))
            s = dt_fail(err, DITRT_ECANCELLED, "cancelled after step %d of %d", i + 1, steps);
    }
    if (fa) latte_set_attn_hook(p->tr, NULL);
    dt_fastattn_free(fa);
    return s;
}

/* ---- decode ---- */

/* latents [B, C, F, h, w] -> frames [B·F, 3, H, W], decode_chunk frames per VAE call. */
static dt_status decode(dt_video_pipeline *p, const dt_video_request *r, const vplan *pl, const vsampler *sp,
                        float *video, dt_err *err)
{
    int B = sp->B, C = sp->C, F = sp->F, total = B * F, chunk = pl->decode_chunk;
    size_t plane = (size_t)sp->h * sp->w, frame_px = (size_t)3 * pl->height * pl->width;
    float *z = malloc((size_t)chunk * C * plane * sizeof(float));
    if (!z) return dt_fail(err, DT_ENOMEM, "out of memory for the VAE input");
    /* diffusers: 1 / scaling_factor * latents (a multiply by the f32-rounded reciprocal) */
    float inv = (float)(1.0 / vae_scaling_factor(p->parts.vae));
    dt_status s = DT_OK;
    double t0 = dt_now();
    for (int f0 = 0; f0 < total && s == DT_OK; f0 += chunk) {
        int k = total - f0 < chunk ? total - f0 : chunk;
        for (int j = 0; j < k; j++) {
            int b = (f0 + j) / F, f = (f0 + j) % F;
            for (int c = 0; c < C; c++) {
                const float *src = sp->latents + (((size_t)b * C + c) * F + f) * plane;
                float *dst = z + ((size_t)j * C + c) * plane;
                for (size_t i = 0; i < plane; i++) dst[i] = inv * src[i];
            }
        }
        int64_t zs[4] = {k, C, sp->h, sp->w}, ds[4] = {k, 3, pl->height, pl->width};
        dt_tensor tz = dt_tensor_view(z, DT_F32, 4, zs), td = dt_tensor_view(video + (size_t)f0 * frame_px, DT_F32, 4, ds);
        dt_arena_reset(&p->parts.arena);
        s = vae_decode(p->parts.vae, &tz, &p->parts.arena, &td, err);
        if (s == DT_OK && ((r->frame_progress && r->frame_progress(f0 + k, total, dt_now() - t0, r->progress_user)) ||
                           (r->cancel && *r->cancel)))
            s = dt_fail(err, DITRT_ECANCELLED, "cancelled after decoding %d of %d frames", f0 + k, total);
        t0 = dt_now();
    }
    free(z);
    return s;
}

static dt_status alloc_sampler(vsampler *sp, dt_err *err)
{
    size_t vol = (size_t)sp->F * sp->h * sp->w;
    sp->latents = malloc((size_t)sp->B * sp->C * vol * sizeof(float));
    sp->model_in = malloc((size_t)sp->rows * sp->C * vol * sizeof(float));
    sp->model_out = malloc((size_t)sp->rows * sp->out_ch * vol * sizeof(float));
    sp->guided = malloc((size_t)sp->B * sp->C * vol * sizeof(float));
    sp->tsteps = malloc((size_t)sp->rows * sizeof(float));
    return sp->latents && sp->model_in && sp->model_out && sp->guided && sp->tsteps ? DT_OK : dt_fail(err, DT_ENOMEM, "out of memory");
}

static void free_sampler(vsampler *sp)
{
    free(sp->latents); free(sp->model_in); free(sp->model_out); free(sp->guided); free(sp->tsteps);
}

dt_status dt_video_pipeline_generate(dt_video_pipeline *p, const dt_video_request *r, dt_video_result *res, dt_err *err)
{
    *res = (dt_video_result){0};
    vplan pl;
    DT_TRY(plan_request(p, r, &pl, err));
    const latte_config *tc = latte_get_config(p->tr);
    int up = vae_upscale(p->parts.vae);
    double t0 = dt_now();
    text_out text;
    DT_TRY(encode_text(p, r, &pl, &text, res, err));
    res->seconds_text = dt_now() - t0;
    vsampler sp = {.p = p, .r = r, .pl = &pl, .text = &text, .B = r->batch, .rows = text.rows, .C = tc->in_channels,
                   .out_ch = tc->out_channels, .F = pl.frames, .h = pl.height / up, .w = pl.width / up};
    size_t n = (size_t)sp.B * sp.C * sp.F * sp.h * sp.w;
    float *video = malloc((size_t)sp.B * sp.F * 3 * pl.height * pl.width * sizeof(float));
    dt_status s = video ? alloc_sampler(&sp, err) : dt_fail(err, DT_ENOMEM, "out of memory for the video");
    if (s == DT_OK) {
        /* prepare_latents: randn((B, C, F, h, w), generator) * init_noise_sigma */
        dt_rng g;
        dt_rng_init(&g, r->seed, DT_RNG_VECTOR);
        dt_rng_randn(&g, sp.latents, n);
        /* stochastic solvers draw their step noise from the same generator, after the latents;
         * init_noise_sigma depends on the schedule, so set it first (LattePipeline does too) */
        dt_scheduler_set_generator(p->parts.sched, &g);
        dt_scheduler_set_eta(p->parts.sched, r->eta);
        s = dt_scheduler_set_timesteps(p->parts.sched, r->steps, err);
        float sigma = (float)dt_scheduler_init_noise_sigma(p->parts.sched);
        if (sigma != 1.0f)
            for (size_t i = 0; i < n; i++) sp.latents[i] *= sigma;
        t0 = dt_now();
        if (s == DT_OK) s = sample_loop(&sp, err);
        dt_scheduler_set_generator(p->parts.sched, NULL); /* g goes out of scope */
        res->seconds_sampling = dt_now() - t0;
    }
    free(text.embeds);
    if (s == DT_OK) {
        t0 = dt_now();
        s = decode(p, r, &pl, &sp, video, err);
        res->seconds_decode = dt_now() - t0;
    }
    free_sampler(&sp);
    if (s != DT_OK) { free(video); return s; }
    res->batch = sp.B;
    res->frames = sp.F;
    res->width = pl.width;
    res->height = pl.height;
    res->video = video;
    return DT_OK;
}
