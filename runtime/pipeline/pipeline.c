#include "pipeline.h"
#include "pipeline_parts.h"
#include "runtime/core/arena.h"
#include "runtime/core/json.h"
#include "runtime/models/modeldir.h"
#include "resolution.h"
#include "runtime/core/rng.h"
#include "runtime/models/pixart.h"
#include "runtime/models/t5.h"
#include "runtime/models/vae.h"
#include "runtime/plans/quant_plan.h"
#include <sys/stat.h>
#include "prompt.h"
#include "runtime/plans/quantize.h"
#include "runtime/plans/fastattn.h"
#include "runtime/text/tokenizer.h"
#include "kernels/backend.h"
#include "schedulers/scheduler.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct dt_pipeline {
    dt_pipeline_config cfg;
    dt_pipeline_parts parts; /* backends, tokenizer, VAE, scheduler, arena */
    int default_max_len;     /* 120 for PixArt-α, 300 for Σ (the pipelines' defaults) */
    t5_model *t5;            /* kept between generations only with keep_text_encoder */
    pixart_model *tr;        /* zoo[0] */
    pixart_model **zoo;      /* OMS-DPM zoo: tr, then cfg.zoo's transformers */
    int nzoo;
};


dt_gen_request dt_gen_request_default(void)
{
    return (dt_gen_request){.negative_prompt = "", .steps = 20, .batch = 1, .cfg = 4.5f,
                            .resolution_binning = 1, .clean_caption = 1};
}

/* The pipeline class decides the text length: PixArtSigmaPipeline encodes 300 tokens. */
static dt_status check_class(dt_pipeline *p, dt_err *err)
{
    const char *cls = p->parts.cls;
    if (!strcmp(cls, "PixArtSigmaPipeline")) p->default_max_len = 300;
    else if (!strcmp(cls, "PixArtAlphaPipeline") || !cls[0]) p->default_max_len = 120;
    else return dt_fail(err, DT_EUNSUPPORTED, "%s/model_index.json: pipeline \"%s\" is not supported (PixArtAlphaPipeline or PixArtSigmaPipeline)",
                        p->cfg.model_dir, cls);
    return DT_OK;
}

/* A zoo member that is a quantization plan (a folder with plan.json from `ditrt quantize`):
 * the pipeline's own transformer built through it, so a model schedule can run different
 * plans (bit allocations) on different timestep ranges. The built layers copy what they
 * use, so the plan is closed right after. */
static dt_status load_quant_member(dt_pipeline *p, const char *plan_dir, pixart_model **out, dt_err *err)
{
    char dir[4096];
    DT_TRY(dt_pipeline_parts_transformer_dir(p->cfg.model_dir, dir, sizeof dir, err));
    dt_quantizer q;
    DT_TRY(dt_quantizer_open_plan(plan_dir, &q, err));
    dt_status s = dt_quant_load_pixart(p->parts.be, dir, &q, out, err);
    dt_quantizer_close_plan(&q);
    return s;
}

/* A zoo member must be a PixArt transformer whose latents and captions match member 0's. */
static dt_status load_zoo_member(dt_pipeline *p, const char *where, pixart_model **out, dt_err *err)
{
    char dir[4096], path[4200], cls[96];
    struct stat sb;
    snprintf(path, sizeof path, "%s/plan.json", where);
    if (stat(path, &sb) == 0) return load_quant_member(p, where, out, err);
    DT_TRY(dt_model_component_dir(where, "transformer", dir, sizeof dir, err));
    snprintf(path, sizeof path, "%s/config.json", dir);
    cJSON *j;
    DT_TRY(dt_json_load(path, &j, err));
    dt_status s = dt_json_str(j, path, "_class_name", "PixArtTransformer2DModel", cls, sizeof cls, err);
    cJSON_Delete(j);
    if (s == DT_OK && strcmp(cls, "PixArtTransformer2DModel"))
        s = dt_fail(err, DT_EUNSUPPORTED, "zoo: %s: _class_name %s is not PixArtTransformer2DModel", path, cls);
    if (s == DT_OK) s = pixart_load(p->parts.be, dir, out, err);
    if (s != DT_OK) return s;
    const pixart_config *a = pixart_get_config(p->tr), *b = pixart_get_config(*out);
    const char *field = a->in_channels != b->in_channels ? "in_channels"
                      : a->out_channels != b->out_channels ? "out_channels"
                      : a->patch_size != b->patch_size ? "patch_size"
                      : a->caption_channels != b->caption_channels ? "caption_channels" : NULL;
    if (field) {
        pixart_free(*out);
        *out = NULL;
        return dt_fail(err, DT_EFORMAT, "zoo: %s: \"%s\" differs from the pipeline's transformer (latents and captions must match)", path, field);
    }
    return DT_OK;
}

static dt_status load_zoo(dt_pipeline *p, dt_err *err)
{
    p->zoo = calloc((size_t)p->cfg.nzoo + 1, sizeof *p->zoo);
    if (!p->zoo) return dt_fail(err, DT_ENOMEM, "out of memory");
    p->zoo[0] = p->tr;
    p->nzoo = 1;
    for (int i = 0; i < p->cfg.nzoo; i++) {
        DT_TRY(load_zoo_member(p, p->cfg.zoo[i], &p->zoo[i + 1], err));
        p->nzoo++;
    }
    return DT_OK;
}

static dt_status load_parts(dt_pipeline *p, dt_err *err)
{
    const dt_pipeline_config *c = &p->cfg;
    dt_parts_config pc = {c->model_dir, c->dtype, c->text_dtype, c->threads, c->solver, c->karras,
                          c->solver_schedule, c->solver_statistics};
    DT_TRY(dt_pipeline_parts_load(&pc, &p->parts, err));
    DT_TRY(check_class(p, err));
    char dir[4096];
    DT_TRY(dt_pipeline_parts_transformer_dir(c->model_dir, dir, sizeof dir, err));
    DT_TRY(c->quant ? dt_quant_load_pixart(p->parts.be, dir, c->quant, &p->tr, err) : pixart_load(p->parts.be, dir, &p->tr, err));
    const pixart_config *tc = pixart_get_config(p->tr);
    DT_TRY(dt_pipeline_parts_check_channels(&p->parts, c->model_dir, tc->in_channels, tc->out_channels, err));
    if (c->keep_text_encoder) DT_TRY(t5_load(p->parts.text_be, p->parts.text_dir, &p->t5, err));
    return load_zoo(p, err);
}

dt_status dt_pipeline_load(const dt_pipeline_config *cfg, dt_pipeline **out, dt_err *err)
{
    *out = NULL;
    if (!cfg->model_dir) return dt_fail(err, DT_EINVAL, "model: no model folder given");
    dt_pipeline *p = calloc(1, sizeof *p);
    if (!p) return dt_fail(err, DT_ENOMEM, "out of memory");
    p->cfg = *cfg;
    dt_status s = load_parts(p, err);
    if (s != DT_OK) { dt_pipeline_free(p); return s; }
    *out = p;
    return DT_OK;
}

void dt_pipeline_free(dt_pipeline *p)
{
    if (!p) return;
    t5_free(p->t5);
    for (int i = 1; i < p->nzoo; i++) pixart_free(p->zoo[i]);
    free(p->zoo);
    pixart_free(p->tr);
    dt_pipeline_parts_free(&p->parts);
    free(p);
}

int dt_pipeline_native_size(const dt_pipeline *p) { return pixart_get_config(p->tr)->sample_size * vae_upscale(p->parts.vae); }
int dt_pipeline_size_multiple(const dt_pipeline *p) { return pixart_get_config(p->tr)->patch_size * vae_upscale(p->parts.vae); }
const char *dt_pipeline_solver_name(const dt_pipeline *p) { return dt_scheduler_class(p->parts.sched); }
const char *dt_pipeline_solver_warning(const dt_pipeline *p) { return dt_pipeline_parts_solver_warning(&p->parts); }
int dt_pipeline_zoo_size(const dt_pipeline *p) { return p->nzoo; }

dt_status dt_pipeline_evaluations(dt_pipeline *p, int steps, int *evals, dt_err *err)
{
    DT_TRY(dt_scheduler_set_timesteps(p->parts.sched, steps, err));
    *evals = dt_scheduler_num_steps(p->parts.sched);
    return DT_OK;
}

/* ---- request checks ---- */

typedef struct {
    int height, width;         /* generated (binned) size */
    int out_height, out_width; /* delivered size */
    int max_len, cfg_on;
} plan;


/* Activation bytes of one transformer step (arena + attention scratch), from the
 * buffers pixart_forward allocates. */
static double transformer_step_bytes(const pixart_config *c, int B, int h, int w, int T)
{
    double N = (double)(h / c->patch_size) * (w / c->patch_size), C = c->inner, BN = B * N;
    double arena = 4 * (BN * (11 * C + 2.0 * c->in_channels * c->patch_size * c->patch_size + c->out_channels * c->patch_size * c->patch_size)
                        + (double)B * T * 4 * C);
    double scores = fmin(48e6, 4 * (double)B * c->heads * N * N) + 4 * 4 * BN * C;
    return arena + scores;
}

static dt_status plan_request(dt_pipeline *p, const dt_gen_request *r, plan *pl, dt_err *err)
{
    const pixart_config *tc = pixart_get_config(p->tr);
    int mult = dt_pipeline_size_multiple(p), native = dt_pipeline_native_size(p);
    if (!r->prompt) return dt_fail(err, DT_EINVAL, "prompt: missing");
    if (r->steps <= 0 || r->steps > 1000) return dt_fail(err, DT_EINVAL, "steps: must be in 1..1000, got %d", r->steps);
    if (!(r->cfg >= 0.0f) || !isfinite(r->cfg)) return dt_fail(err, DT_EINVAL, "cfg: must be >= 0, got %g", r->cfg);
    if (r->batch <= 0 || r->batch > 64) return dt_fail(err, DT_EINVAL, "batch: must be in 1..64, got %d", r->batch);
    if (r->width < 0 || r->height < 0) return dt_fail(err, DT_EINVAL, "size: width and height must be positive");
    if (r->max_sequence_length < 0 || r->max_sequence_length == 1 || r->max_sequence_length > 4096)
        return dt_fail(err, DT_EINVAL, "max_sequence_length: must be in 2..4096, got %d", r->max_sequence_length);
    pl->out_width = r->width ? r->width : native;
    pl->out_height = r->height ? r->height : native;
    pl->width = pl->out_width;
    pl->height = pl->out_height;
    if (r->resolution_binning && dt_resolution_bin(tc->sample_size, pl->out_height, pl->out_width, &pl->height, &pl->width)) {
        /* the binned size is what gets generated; the output is resized back */
    } else if (pl->width % mult || pl->height % mult) {
        return dt_fail(err, DT_EINVAL, "size: width and height must be multiples of %d for this model, got %dx%d",
                       mult, pl->out_width, pl->out_height);
    }
    if (pl->out_width > 16384 || pl->out_height > 16384)
        return dt_fail(err, DT_EINVAL, "size: %dx%d is larger than 16384 px on a side", pl->out_width, pl->out_height);
    pl->max_len = r->max_sequence_length ? r->max_sequence_length : p->default_max_len;
    pl->cfg_on = r->cfg > 1.0f; /* diffusers: do_classifier_free_guidance = guidance_scale > 1 */
    int up = vae_upscale(p->parts.vae), B = r->batch * (pl->cfg_on ? 2 : 1);
    size_t vae_bytes = 0;
    DT_TRY(vae_decode_bytes(p->parts.vae, r->batch, pl->height / up, pl->width / up, r->vae_tiling, &vae_bytes, err));
    double need = fmax(transformer_step_bytes(tc, B, pl->height / up, pl->width / up, pl->max_len), (double)vae_bytes)
                + 4.0 * r->batch * 3 * (double)pl->height * pl->width * 2;
    size_t avail = dt_mem_available();
    if (!r->force && avail && need > (double)avail)
        return dt_fail(err, DT_ENOMEM, "size: %dx%d x%d needs about %.1f GB of activations, %.1f GB is available "
                       "(try --vae-tiling, a smaller size, or --force)", pl->out_width, pl->out_height, r->batch,
                       need / 1e9, avail / 1e9);
    return DT_OK;
}

dt_status dt_pipeline_check(dt_pipeline *p, const dt_gen_request *r, dt_err *err)
{
    plan pl;
    return plan_request(p, r, &pl, err);
}

/* ---- text ---- */

static dt_status encode_text(dt_pipeline *p, const dt_gen_request *r, const plan *pl, float **embeds,
                             float **masks, int *rows_out, dt_gen_result *res, dt_err *err)
{
    dt_prompt_encoder enc = {p->parts.tok, p->parts.text_dir, p->parts.text_be, p->t5, pixart_get_config(p->tr)->caption_channels};
    dt_prompt_request pr = {r->prompt, r->negative_prompt, pl->cfg_on, r->clean_caption, pl->max_len, r->batch};
    dt_prompt_result out;
    DT_TRY(dt_encode_prompts(&enc, &pr, &p->parts.arena, &out, err));
    *embeds = out.embeds;
    *masks = out.masks;
    *rows_out = out.rows;
    res->prompt_truncated = out.prompt_truncated;
    res->negative_truncated = out.negative_truncated;
    return DT_OK;
}

/* ---- sampling ---- */

typedef struct {
    dt_pipeline *p;
    const dt_gen_request *r;
    const plan *pl;
    int B, rows, C, h, w, out_ch;
    float *latents, *model_in, *model_out, *guided, *tsteps;
    const float *embeds, *masks;
} sampler;

/* u + g (c - u) over the first C channels (learned sigma: the variance half is dropped). */
static void guide(const sampler *sp)
{
    size_t plane = (size_t)sp->h * sp->w, chw = (size_t)sp->C * plane, ochw = (size_t)sp->out_ch * plane;
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

static dt_status sample_loop(sampler *sp, dt_err *err)
{
    dt_pipeline *p = sp->p;
    size_t n = (size_t)sp->B * sp->C * sp->h * sp->w;
    /* the timesteps were set by the caller, before init_noise_sigma was read */
    int steps = dt_scheduler_num_steps(p->parts.sched);
    const double *ts = dt_scheduler_timesteps(p->parts.sched);
    int64_t in_shape[4] = {sp->rows, sp->C, sp->h, sp->w}, out_shape[4] = {sp->rows, sp->out_ch, sp->h, sp->w};
    int64_t e_shape[3] = {sp->rows, sp->pl->max_len, pixart_get_config(p->tr)->caption_channels};
    dt_tensor tin = dt_tensor_view(sp->model_in, DT_F32, 4, in_shape), tout = dt_tensor_view(sp->model_out, DT_F32, 4, out_shape);
    dt_tensor te = dt_tensor_view((void *)sp->embeds, DT_F32, 3, e_shape);
    pixart_inputs in = {.hidden_states = &tin, .encoder_hidden_states = &te, .timestep = sp->tsteps,
                        .encoder_attention_mask = sp->masks};
    const int *ids = sp->r->model_ids;
    if (ids && sp->r->n_model_ids != steps)
        return dt_fail(err, DT_EINVAL, "model schedule: %d entries for %d model evaluations", sp->r->n_model_ids, steps);
    int micro = 0;
    for (int i = 0; i < steps; i++) {
        if (ids && (ids[i] < 0 || ids[i] >= p->nzoo))
            return dt_fail(err, DT_EINVAL, "model schedule: step %d names zoo member %d, the zoo has %d", i, ids[i], p->nzoo);
        micro |= pixart_get_config(p->zoo[ids ? ids[i] : 0])->use_additional_conditions;
    }
    if (ids && sp->r->attn_plan)
        for (int i = 0; i < steps; i++)
            if (ids[i] != 0) return dt_fail(err, DT_EUNSUPPORTED, "model schedule: step %d uses zoo member %d; attention plans cover member 0 only", i, ids[i]);
    /* micro-conditions: the α pipeline passes (height, width) and h/w for 1024-px models */
    float *res = NULL, *ar = NULL;
    if (micro) {
        res = malloc((size_t)sp->rows * 2 * sizeof(float));
        ar = malloc((size_t)sp->rows * sizeof(float));
        if (!res || !ar) { free(res); free(ar); return dt_fail(err, DT_ENOMEM, "out of memory"); }
        for (int i = 0; i < sp->rows; i++) {
            res[2 * i] = (float)sp->pl->height;
            res[2 * i + 1] = (float)sp->pl->width;
            ar[i] = (float)((double)sp->pl->height / sp->pl->width);
        }
        in.resolution = res;
        in.aspect_ratio = ar;
    }
    dt_fastattn *fa = NULL; /* DiTFastAttn plan runtime */
    dt_status s = dt_fastattn_begin(sp->r->attn_plan, pixart_get_config(p->tr)->num_layers, 0, steps, sp->pl->cfg_on, &fa, err);
    if (fa) pixart_set_attn_hook(p->tr, dt_fastattn_hook(fa));
    for (int i = 0; i < steps && s == DT_OK; i++) {
        double t0 = dt_now();
        for (int k = 0; k < sp->rows; k++) {
            memcpy(sp->model_in + (size_t)k * n / sp->B, sp->latents + (size_t)(k % sp->B) * (n / sp->B), n / sp->B * sizeof(float));
            sp->tsteps[k] = (float)ts[i];
        }
        dt_scheduler_scale_model_input(p->parts.sched, sp->model_in, (size_t)sp->rows * n / sp->B);
        dt_arena_reset(&p->parts.arena);
        if (fa) s = dt_fastattn_set_step(fa, i, err);
        if (s == DT_OK && sp->r->step_hook) {
            s = sp->r->step_hook(sp->r->step_hook_user, i, p->tr, &in, &p->parts.arena, err);
            dt_arena_reset(&p->parts.arena);
        }
        if (s == DT_OK) s = pixart_forward(p->zoo[ids ? ids[i] : 0], &in, &p->parts.arena, &tout, err);
        if (s != DT_OK) break;
        guide(sp);
        s = dt_scheduler_step(p->parts.sched, sp->guided, sp->latents, sp->latents, n, err);
        if (s == DT_OK && ((sp->r->progress && sp->r->progress(i + 1, steps, dt_now() - t0, sp->r->progress_user)) ||
                           (sp->r->cancel && *sp->r->cancel)))
            s = dt_fail(err, DITRT_ECANCELLED, "cancelled after step %d of %d", i + 1, steps);
    }
    if (fa) pixart_set_attn_hook(p->tr, NULL);
    dt_fastattn_free(fa);
    free(res);
    free(ar);
    return s;
}

/* ---- decode ---- */

static dt_status decode(dt_pipeline *p, const dt_gen_request *r, const plan *pl, const float *latents, int B,
                        int C, int h, int w, float *image, dt_err *err)
{
    size_t n = (size_t)B * C * h * w;
    float *z = malloc(n * sizeof(float));
    int H = pl->height, W = pl->width;
    float *dec = malloc((size_t)B * 3 * H * W * sizeof(float));
    dt_status s = z && dec ? DT_OK : dt_fail(err, DT_ENOMEM, "out of memory for the decoded image");
    float sf = vae_scaling_factor(p->parts.vae);
    for (size_t i = 0; s == DT_OK && i < n; i++) z[i] = latents[i] / sf;
    int64_t zs[4] = {B, C, h, w}, ds[4] = {B, 3, H, W};
    dt_tensor tz = dt_tensor_view(z, DT_F32, 4, zs), td = dt_tensor_view(dec, DT_F32, 4, ds);
    if (s == DT_OK) {
        dt_arena_reset(&p->parts.arena);
        s = r->vae_tiling ? vae_decode_tiled(p->parts.vae, &tz, &p->parts.arena, &td, err) : vae_decode(p->parts.vae, &tz, &p->parts.arena, &td, err);
    }
    if (s == DT_OK) {
        if (pl->out_height != H || pl->out_width != W) dt_resize_and_crop(dec, B, 3, H, W, image, pl->out_height, pl->out_width);
        else memcpy(image, dec, (size_t)B * 3 * H * W * sizeof(float));
    }
    free(z);
    free(dec);
    return s;
}

dt_status dt_pipeline_generate(dt_pipeline *p, const dt_gen_request *r, dt_gen_result *res, dt_err *err)
{
    *res = (dt_gen_result){0};
    plan pl;
    DT_TRY(plan_request(p, r, &pl, err));
    const pixart_config *tc = pixart_get_config(p->tr);
    int up = vae_upscale(p->parts.vae);
    sampler sp = {.p = p, .r = r, .pl = &pl, .B = r->batch, .C = tc->in_channels, .h = pl.height / up,
                  .w = pl.width / up, .out_ch = tc->out_channels};
    if (sp.out_ch != sp.C && sp.out_ch != 2 * sp.C)
        return dt_fail(err, DT_EFORMAT, "transformer: out_channels %d must be in_channels %d or twice it (learned sigma)", sp.out_ch, sp.C);
    res->max_sequence_length = pl.max_len;
    double t0 = dt_now();
    float *embeds = NULL, *masks = NULL;
    DT_TRY(encode_text(p, r, &pl, &embeds, &masks, &sp.rows, res, err));
    res->seconds_text = dt_now() - t0;
    sp.embeds = embeds;
    sp.masks = masks;
    size_t n = (size_t)sp.B * sp.C * sp.h * sp.w, plane = (size_t)sp.h * sp.w;
    sp.latents = malloc(n * sizeof(float));
    sp.model_in = malloc((size_t)sp.rows * sp.C * plane * sizeof(float));
    sp.model_out = malloc((size_t)sp.rows * sp.out_ch * plane * sizeof(float));
    sp.guided = malloc(n * sizeof(float));
    sp.tsteps = malloc((size_t)sp.rows * sizeof(float));
    float *image = malloc((size_t)sp.B * 3 * pl.out_height * pl.out_width * sizeof(float));
    dt_status s = sp.latents && sp.model_in && sp.model_out && sp.guided && sp.tsteps && image
                      ? DT_OK : dt_fail(err, DT_ENOMEM, "out of memory");
    if (s == DT_OK) {
        /* prepare_latents: randn(shape, generator) * init_noise_sigma */
        dt_rng g;
        dt_rng_init(&g, r->seed, DT_RNG_VECTOR);
        dt_rng_randn(&g, sp.latents, n);
        /* stochastic solvers draw their step noise from the same generator, after the latents;
         * init_noise_sigma depends on the schedule, so set it first (diffusers does too) */
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
    if (s == DT_OK) {
        t0 = dt_now();
        s = decode(p, r, &pl, sp.latents, sp.B, sp.C, sp.h, sp.w, image, err);
        res->seconds_decode = dt_now() - t0;
    }
    free(embeds); free(masks); free(sp.latents); free(sp.model_in); free(sp.model_out); free(sp.guided); free(sp.tsteps);
    if (s != DT_OK) { free(image); return s; }
    res->batch = sp.B;
    res->width = pl.out_width;
    res->height = pl.out_height;
    res->image = image;
    return DT_OK;
}
