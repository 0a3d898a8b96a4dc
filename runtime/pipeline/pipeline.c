/* The pipeline (pipeline.h): load, validate, encode text, sample, decode. */
#include "pipeline.h"
#include "pipeline_parts.h"
#include "prompt.h"
#include "resolution.h"
#include "runtime/core/arena.h"
#include "runtime/core/rng.h"
#include "runtime/core/json.h"
#include "runtime/models/modeldir.h"
#include "runtime/models/text_encoder.h"
#include "runtime/models/vae.h"
#include "runtime/plans/fastattn.h"
#include "runtime/plans/quantize.h"
#include "kernels/backend.h"
#include "schedulers/scheduler.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct dt_pipeline {
    dt_pipeline_config cfg;
    dt_pipeline_parts parts;       /* backends, tokenizer, VAE, scheduler, arena */
    const dt_pipeline_class *pcls; /* what model_index.json's pipeline does around the denoiser */
    dt_text_encoder *text_encoder[DT_PARTS_MAX_TEXT]; /* kept between generations only with keep_text_encoder */
    int zeros_for_empty;           /* force_zeros_for_empty_prompt (the class's default, model_index.json's value) */
    int text_states;               /* the fewest hidden states (layers + 1) of the CLIP encoders, for clip_skip */
    dt_denoiser *tr;               /* zoo[0] */
    dt_denoiser **zoo;             /* OMS-DPM zoo: tr, then cfg.zoo's denoisers */
    int nzoo;
};

dt_gen_request dt_gen_request_default(void)
{
    return (dt_gen_request){.negative_prompt = "", .steps = 20, .batch = 1, .cfg = 4.5f,
                            .resolution_binning = 1, .clean_caption = 1};
}

dt_gen_request dt_gen_request_default_video(void)
{
    dt_gen_request r = dt_gen_request_default();
    r.steps = 50;
    r.cfg = 7.5f;
    return r;
}

/* ---- loading ---- */

/* A zoo member that is a quantization plan (a folder with plan.json from `ditrt quantize`):
 * the pipeline's own denoiser built through it, so a model schedule can run different plans
 * (bit allocations) on different timestep ranges. The built layers copy what they use, so
 * the plan is closed right after. */
static dt_status load_quant_member(dt_pipeline *p, const char *plan_dir, dt_denoiser **out, dt_err *err)
{
    char dir[4096];
    DT_TRY(dt_pipeline_parts_transformer_dir(p->cfg.model_dir, dir, sizeof dir, err));
    dt_quantizer q;
    DT_TRY(dt_quantizer_open_plan(plan_dir, &q, err));
    dt_status s = dt_quant_load(p->parts.be, dir, &q, out, err);
    dt_quantizer_close_plan(&q);
    return s;
}

/* A zoo member must be a denoiser of member 0's class whose latents and captions match. */
static dt_status load_zoo_member(dt_pipeline *p, const char *where, dt_denoiser **out, dt_err *err)
{
    char dir[4096], path[4200];
    struct stat sb;
    snprintf(path, sizeof path, "%s/plan.json", where);
    if (stat(path, &sb) == 0) return load_quant_member(p, where, out, err);
    DT_TRY(dt_model_denoiser_dir(where, dir, sizeof dir, err));
    snprintf(path, sizeof path, "%s/config.json", dir);
    const dt_denoiser_info *a = dt_denoiser_get_info(p->tr);
    const dt_denoiser_class *cls = dt_denoiser_class_of_dir(dir, err);
    if (!cls) return err->status;
    if (strcmp(cls->class_name, a->class_name))
        return dt_fail(err, DT_EUNSUPPORTED, "zoo: %s: _class_name %s is not %s", path, cls->class_name, a->class_name);
    DT_TRY(dt_denoiser_load(p->parts.be, dir, NULL, NULL, out, err));
    const dt_denoiser_info *b = dt_denoiser_get_info(*out);
    const char *field = a->in_channels != b->in_channels ? "in_channels"
                      : a->out_channels != b->out_channels ? "out_channels"
                      : a->patch_size != b->patch_size ? "patch_size"
                      : a->size_multiple != b->size_multiple ? "the size multiple (2^downsamplers)"
                      : a->caption_channels != b->caption_channels ? "caption_channels"
                      : a->max_frames != b->max_frames ? "video_length" : NULL;
    if (field) {
        dt_denoiser_free(*out);
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

/* model_index.json's pipeline class must be one that runs the transformer's class. */
static dt_status check_class(dt_pipeline *p, const dt_denoiser_class *cls, dt_err *err)
{
    const char *name = p->parts.cls;
    if (!(p->pcls = dt_pipeline_class_find(name, err)))
        return dt_fail(err, err->status, "%s/model_index.json: %s", p->cfg.model_dir, err->msg);
    for (int i = 0; i < cls->npipelines; i++)
        if (p->pcls == &cls->pipelines[i]) return DT_OK;
    return dt_fail(err, DT_EUNSUPPORTED, "%s/model_index.json: pipeline \"%s\" does not run a %s", p->cfg.model_dir,
                   name, cls->class_name);
}

/* What the pipeline class and the scheduler take from the denoiser must be there: the
 * variance half (learned sigma) for a scheduler that reads it, the learned null caption. */
static dt_status check_learned(const dt_pipeline *p, const dt_denoiser_info *tc, dt_err *err)
{
    if (dt_scheduler_uses_variance(p->parts.sched) && tc->out_channels != 2 * tc->in_channels)
        return dt_fail(err, DT_EUNSUPPORTED, "%s: %s needs a model with learned sigma (out_channels 2 x in_channels), "
                       "the transformer has out_channels %d", p->cfg.model_dir, dt_scheduler_class(p->parts.sched),
                       tc->out_channels);
    const float *null;
    if (p->pcls->learned_null && dt_denoiser_null_caption(p->tr, &null) <= 0)
        return dt_fail(err, DT_EUNSUPPORTED, "%s: pipeline \"%s\" needs the transformer's learned null caption, a %s has none",
                       p->cfg.model_dir, p->pcls->name, tc->class_name);
    return DT_OK;
}

/* The pipeline class's text encoders are the folder's; the denoiser's added conditions are
 * the class's to give; force_zeros_for_empty_prompt from model_index.json. */
static dt_status check_text(dt_pipeline *p, dt_err *err)
{
    const dt_denoiser_info *tc = dt_denoiser_get_info(p->tr);
    int want = p->pcls->text_encoders > 0 ? p->pcls->text_encoders : 1;
    if (p->parts.ntext != want)
        return dt_fail(err, DT_EFORMAT, "%s/model_index.json: pipeline \"%s\" takes %d text encoder(s), the folder lists %d",
                       p->cfg.model_dir, p->pcls->name, want, p->parts.ntext);
    if (tc->added_text_dim && !p->pcls->added_conditions)
        return dt_fail(err, DT_EUNSUPPORTED, "%s: the denoiser takes text_embeds and time_ids, pipeline \"%s\" gives none",
                       p->cfg.model_dir, p->pcls->name);
    if (p->pcls->added_conditions && (!tc->added_text_dim || tc->added_time_ids != 6))
        return dt_fail(err, DT_EFORMAT, "%s: pipeline \"%s\" needs a denoiser with addition_embed_type \"text_time\" "
                       "(6 time ids), the %s has none", p->cfg.model_dir, p->pcls->name, tc->class_name);
    for (int k = 0; k < p->parts.ntext; k++) {
        dt_text_encoder_info ti;
        DT_TRY(dt_text_encoder_probe(p->parts.text_dir[k], &ti, err));
        if (!k || ti.num_hidden_states < p->text_states) p->text_states = ti.num_hidden_states;
    }
    p->zeros_for_empty = p->pcls->zeros_for_empty_negative;
    char path[4200];
    snprintf(path, sizeof path, "%s/model_index.json", p->cfg.model_dir);
    cJSON *j;
    if (dt_json_load(path, &j, err) != DT_OK) return err->status;
    const cJSON *z = cJSON_GetObjectItemCaseSensitive(j, "force_zeros_for_empty_prompt");
    if (cJSON_IsBool(z)) p->zeros_for_empty = cJSON_IsTrue(z);
    cJSON_Delete(j);
    return DT_OK;
}

static dt_status load_parts(dt_pipeline *p, dt_err *err)
{
    const dt_pipeline_config *c = &p->cfg;
    dt_parts_config pc = {c->model_dir, c->dtype, c->text_dtype, c->threads, c->solver, c->karras,
                          c->solver_schedule, c->solver_statistics, c->clip_sample, c->device, c->device_index, c->tf32,
                          c->text_dtype_auto};
    DT_TRY(dt_pipeline_parts_load(&pc, &p->parts, err));
    char dir[4096];
    DT_TRY(dt_pipeline_parts_transformer_dir(c->model_dir, dir, sizeof dir, err));
    const dt_denoiser_class *cls = dt_denoiser_class_of_dir(dir, err);
    if (!cls) return err->status;
    DT_TRY(check_class(p, cls, err));
    DT_TRY(c->quant ? dt_quant_load(p->parts.be, dir, c->quant, &p->tr, err) : dt_denoiser_load(p->parts.be, dir, NULL, NULL, &p->tr, err));
    const dt_denoiser_info *tc = dt_denoiser_get_info(p->tr);
    DT_TRY(dt_pipeline_parts_check_channels(&p->parts, c->model_dir, tc->in_channels, tc->out_channels, err));
    DT_TRY(check_learned(p, tc, err));
    DT_TRY(check_text(p, err));
    for (int k = 0; c->keep_text_encoder && k < p->parts.ntext; k++)
        DT_TRY(dt_text_encoder_load(p->parts.text_be, p->parts.text_dir[k], p->parts.text_weights, &p->text_encoder[k], err));
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
    for (int k = 0; k < DT_PARTS_MAX_TEXT; k++) dt_text_encoder_free(p->text_encoder[k]);
    for (int i = 1; i < p->nzoo; i++) dt_denoiser_free(p->zoo[i]);
    free(p->zoo);
    dt_denoiser_free(p->tr);
    dt_pipeline_parts_free(&p->parts);
    free(p);
}

const dt_denoiser_info *dt_pipeline_denoiser_info(const dt_pipeline *p) { return dt_denoiser_get_info(p->tr); }
dt_dtype dt_pipeline_text_dtype(const dt_pipeline *p) { return p->parts.text_weights; }
int dt_pipeline_native_size(const dt_pipeline *p) { return dt_denoiser_get_info(p->tr)->sample_size * vae_upscale(p->parts.vae); }
int dt_pipeline_size_multiple(const dt_pipeline *p) { return dt_denoiser_get_info(p->tr)->size_multiple * vae_upscale(p->parts.vae); }
int dt_pipeline_max_frames(const dt_pipeline *p) { return dt_denoiser_get_info(p->tr)->max_frames; }
const char *dt_pipeline_solver_name(const dt_pipeline *p) { return dt_scheduler_class(p->parts.sched); }
const char *dt_pipeline_solver_warning(const dt_pipeline *p) { return dt_pipeline_parts_solver_warning(&p->parts); }
int dt_pipeline_zoo_size(const dt_pipeline *p) { return p->nzoo; }
const dt_pipeline_class *dt_pipeline_get_class(const dt_pipeline *p) { return p->pcls; }

int dt_pipeline_fixed_steps(dt_pipeline *p)
{
    int evals = 0;
    dt_err e = {0};
    if (!p->cfg.solver_schedule || dt_pipeline_evaluations(p, 1, &evals, &e) != DT_OK) return 0;
    return evals;
}

/* The items a generation runs: the batch, or one of it. */
static int run_batch(const dt_gen_request *r) { return r->one_item ? 1 : r->batch; }

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
    int frames;                /* latent frames: the video's, or 1 for an image */
    int max_len, cfg_on;
    int evals;                 /* model evaluations (the scheduler's timesteps) */
    int decode_chunk;          /* frames per VAE call */
} plan;

/* SDXL's micro-conditioning: sizes 0 (the generated size) or 1..16384, a crop 0..16384, both
 * negative sizes or neither, and nothing at all on a pipeline without added time ids. */
static dt_status check_size_conditions(const dt_pipeline *p, const dt_gen_request *r, dt_err *err)
{
    const struct {
        const char *name;
        const int *v;
        int size;
    } f[] = {{"original_size", r->original_size, 1},
             {"crops_coords_top_left", r->crops_coords_top_left, 0},
             {"target_size", r->target_size, 1},
             {"negative_original_size", r->negative_original_size, 1},
             {"negative_crops_coords_top_left", r->negative_crops_coords_top_left, 0},
             {"negative_target_size", r->negative_target_size, 1}};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++) {
        const int *v = f[i].v;
        if (!v[0] && !v[1]) continue;
        if (!p->pcls->added_conditions)
            return dt_fail(err, DT_EINVAL, "%s: only SDXL pipelines take micro-conditioning (added time ids), not %s",
                           f[i].name, p->pcls->name[0] ? p->pcls->name : "this one");
        if (v[0] < 0 || v[1] < 0 || v[0] > 16384 || v[1] > 16384 || (f[i].size && (!v[0] || !v[1])))
            return dt_fail(err, DT_EINVAL, "%s: expected %s in %d..16384, got (%d, %d)", f[i].name,
                           f[i].size ? "a height and a width" : "a top and a left", f[i].size, v[0], v[1]);
    }
    int no = !r->negative_original_size[0], nt = !r->negative_target_size[0];
    if (no != nt)
        return dt_fail(err, DT_EINVAL, "%s: needs %s too (diffusers uses the negative sizes only as a pair)",
                       no ? "negative_target_size" : "negative_original_size", no ? "negative_original_size" : "negative_target_size");
    if (no && (r->negative_crops_coords_top_left[0] || r->negative_crops_coords_top_left[1]))
        return dt_fail(err, DT_EINVAL, "negative_crops_coords_top_left: needs negative_original_size and negative_target_size");
    return DT_OK;
}

static dt_status check_scalars(const dt_pipeline *p, const dt_gen_request *r, dt_err *err)
{
    const dt_denoiser_info *tc = dt_denoiser_get_info(p->tr);
    if (!r->prompt) return dt_fail(err, DT_EINVAL, "prompt: missing");
    if (r->steps <= 0 || r->steps > 1000) return dt_fail(err, DT_EINVAL, "steps: must be in 1..1000, got %d", r->steps);
    if (!(r->cfg >= 0.0f) || !isfinite(r->cfg)) return dt_fail(err, DT_EINVAL, "cfg: must be >= 0, got %g", r->cfg);
    if (!(r->eta >= 0.0f) || !isfinite(r->eta)) return dt_fail(err, DT_EINVAL, "eta: must be >= 0, got %g", r->eta);
    if (r->eta > 0 && strcmp(dt_pipeline_solver_name(p), "DDIMScheduler"))
        return dt_fail(err, DT_EINVAL, "eta: only DDIMScheduler uses eta, the solver is %s", dt_pipeline_solver_name(p));
    if (r->batch <= 0 || r->batch > 64) return dt_fail(err, DT_EINVAL, "batch: must be in 1..64, got %d", r->batch);
    if (r->one_item && (r->item_index < 0 || r->item_index >= r->batch))
        return dt_fail(err, DT_EINVAL, "batch_index: must be in 0..%d (batch %d), got %d", r->batch - 1, r->batch, r->item_index);
    if (r->frames < 0 || r->frames > tc->max_frames) {
        if (!tc->max_frames) return dt_fail(err, DT_EINVAL, "frames: this model makes images, got %d frames", r->frames);
        return dt_fail(err, DT_EINVAL, "frames: this model takes 1 to %d frames (video_length), got %d", tc->max_frames, r->frames);
    }
    if (r->width < 0 || r->height < 0 || r->decode_chunk < 0)
        return dt_fail(err, DT_EINVAL, "size: width, height and decode chunk must be positive");
    if (r->clip_skip < 0 || (r->clip_skip > 0 && !p->pcls->clip_skip_from_end))
        return dt_fail(err, DT_EINVAL, "clip_skip: %s", r->clip_skip < 0 ? "must be >= 0" : "this pipeline's text encoder has no clip_skip (CLIP pipelines only)");
    if (r->clip_skip > 0 && r->clip_skip + p->pcls->clip_skip_from_end > p->text_states)
        return dt_fail(err, DT_EINVAL, "clip_skip: %d is past the text encoder's first hidden state (%d layers: at most %d)", r->clip_skip,
                       p->text_states - 1, p->text_states - p->pcls->clip_skip_from_end);
    if (r->max_sequence_length < 0 || r->max_sequence_length == 1 || r->max_sequence_length > 4096)
        return dt_fail(err, DT_EINVAL, "max_sequence_length: must be in 2..4096, got %d", r->max_sequence_length);
    return check_size_conditions(p, r, err);
}

/* The sizes: native by default; binned (then resized back) where the pipeline has bins. */
static dt_status plan_size(const dt_pipeline *p, const dt_gen_request *r, plan *pl, dt_err *err)
{
    const dt_denoiser_info *tc = dt_denoiser_get_info(p->tr);
    int mult = dt_pipeline_size_multiple(p), native = dt_pipeline_native_size(p);
    pl->out_width = r->width ? r->width : native;
    pl->out_height = r->height ? r->height : native;
    pl->width = pl->out_width;
    pl->height = pl->out_height;
    if (p->pcls->binning && r->resolution_binning &&
        dt_resolution_bin(tc->sample_size, pl->out_height, pl->out_width, &pl->height, &pl->width)) {
        /* the binned size is what gets generated; the output is resized back */
    } else if (pl->width % mult || pl->height % mult) {
        return dt_fail(err, DT_EINVAL, "size: width and height must be multiples of %d for this model, got %dx%d",
                       mult, pl->out_width, pl->out_height);
    }
    if (pl->out_width > 16384 || pl->out_height > 16384)
        return dt_fail(err, DT_EINVAL, "size: %dx%d is larger than 16384 px on a side", pl->out_width, pl->out_height);
    return DT_OK;
}

/* The attention plan and the model schedule against the model and the evaluation count. */
static dt_status check_plans(dt_pipeline *p, const dt_gen_request *r, plan *pl, dt_err *err)
{
    DT_TRY(dt_pipeline_evaluations(p, r->steps, &pl->evals, err));
    const dt_denoiser_info *tc = dt_denoiser_get_info(p->tr);
    if (r->attn_plan) DT_TRY(dt_attn_plan_check(r->attn_plan, tc->spatial_layers, tc->temporal_layers, pl->evals, err));
    const int *ids = r->model_ids;
    if (!ids) return DT_OK;
    if (r->n_model_ids != pl->evals)
        return dt_fail(err, DT_EINVAL, "model schedule: %d entries for %d model evaluations", r->n_model_ids, pl->evals);
    for (int i = 0; i < pl->evals; i++) {
        if (ids[i] < 0 || ids[i] >= p->nzoo)
            return dt_fail(err, DT_EINVAL, "model schedule: step %d names zoo member %d, the zoo has %d", i, ids[i], p->nzoo);
        if (r->attn_plan && ids[i] != 0)
            return dt_fail(err, DT_EUNSUPPORTED, "model schedule: step %d uses zoo member %d; attention plans cover member 0 only", i, ids[i]);
    }
    return DT_OK;
}

/* Memory: one denoiser step or one decoded chunk, plus the output and a chunk's pixels. A
 * smaller decode chunk when the default one would not fit (results do not change). */
static dt_status check_memory(dt_pipeline *p, const dt_gen_request *r, plan *pl, dt_err *err)
{
    int B = run_batch(r), up = vae_upscale(p->parts.vae), h = pl->height / up, w = pl->width / up, total = B * pl->frames;
    int rows = B * (pl->cfg_on ? 2 : 1);
    double step = 0;
    for (int i = 0; i < p->nzoo; i++)
        step = fmax(step, dt_denoiser_step_bytes(p->zoo[i], rows, pl->frames, h, w, pl->max_len));
    pl->decode_chunk = r->decode_chunk ? r->decode_chunk : p->pcls->decode_chunk ? p->pcls->decode_chunk : total;
    if (pl->decode_chunk > total) pl->decode_chunk = total;
    size_t avail = dt_mem_available(), vb = 0;
    double out = 4.0 * total * 3 * (double)pl->out_height * pl->out_width, chunk_px;
    for (;;) {
        DT_TRY(vae_decode_bytes(p->parts.vae, pl->decode_chunk, h, w, r->vae_tiling, &vb, err));
        chunk_px = 4.0 * pl->decode_chunk * 3 * (double)pl->height * pl->width;
        if (r->decode_chunk || r->force || !avail || pl->decode_chunk == 1 || vb + out + chunk_px < 0.8 * avail) break;
        pl->decode_chunk /= 2;
    }
    double need = fmax(step, (double)vb) + out + chunk_px;
    if (!r->force && avail && need > (double)avail)
        return dt_fail(err, DT_ENOMEM, "size: %dx%d x%d frames x%d needs about %.1f GB, %.1f GB is available "
                       "(try a smaller size, fewer frames, --vae-tiling, --decode-chunk 1, or --force)",
                       pl->out_width, pl->out_height, pl->frames, B, need / 1e9, avail / 1e9);
    return DT_OK;
}

static dt_status plan_request(dt_pipeline *p, const dt_gen_request *r, plan *pl, dt_err *err)
{
    const dt_denoiser_info *tc = dt_denoiser_get_info(p->tr);
    DT_TRY(check_scalars(p, r, err));
    DT_TRY(plan_size(p, r, pl, err));
    pl->frames = tc->max_frames ? (r->frames ? r->frames : tc->max_frames) : 1;
    pl->max_len = p->pcls->fixed_len || !r->max_sequence_length ? p->pcls->max_len : r->max_sequence_length;
    const float *null;
    if (p->pcls->learned_null) pl->max_len = dt_denoiser_null_caption(p->tr, &null); /* captions pair with it */
    pl->cfg_on = r->cfg > 1.0f; /* diffusers: do_classifier_free_guidance = guidance_scale > 1 */
    DT_TRY(check_plans(p, r, pl, err));
    return check_memory(p, r, pl, err);
}

/* Denoiser tokens per frame at the generated size. */
static int plan_tokens(const dt_pipeline *p, const plan *pl)
{
    int cell = dt_pipeline_size_multiple(p); /* pixels per token side: patch x VAE upscale */
    return (pl->height / cell) * (pl->width / cell);
}

/* The request's settings worth a warning, each one line through r->warning. */
static void warn_request(const dt_pipeline *p, const dt_gen_request *r, const plan *pl)
{
    if (!r->warning) return;
    char line[320];
    int native = dt_pipeline_native_size(p);
    double ratio = (double)pl->width * pl->height / ((double)native * native);
    if (ratio > 2.0 || ratio < 0.5) {
        snprintf(line, sizeof line, "size: %dx%d is far from the model's trained size %dx%d (%.2fx the pixels); expect "
                 "repeated or broken content", pl->width, pl->height, native, native, ratio);
        r->warning(line, r->warning_user);
    }
    int tokens = plan_tokens(p, pl);
    if (r->attn_plan && r->attn_plan->tokens && r->attn_plan->tokens != tokens) {
        snprintf(line, sizeof line, "attention plan: calibrated at %d tokens per frame, this size has %d; its methods "
                 "may not hold here (calibrate again at this size)", r->attn_plan->tokens, tokens);
        r->warning(line, r->warning_user);
    }
    if (p->pcls->learned_null && pl->cfg_on && r->negative_prompt && r->negative_prompt[0]) {
        snprintf(line, sizeof line, "negative prompt: %s guides against the model's learned null caption; the "
                 "negative prompt is ignored", p->pcls->name);
        r->warning(line, r->warning_user);
    }
    if (p->nzoo > 1 && !r->model_ids) {
        snprintf(line, sizeof line, "zoo: %d more models are loaded but no model schedule is given (--model-schedule): "
                 "every step runs the model's own transformer", p->nzoo - 1);
        r->warning(line, r->warning_user);
    }
}

dt_status dt_pipeline_check(dt_pipeline *p, const dt_gen_request *r, dt_err *err)
{
    plan pl;
    return plan_request(p, r, &pl, err);
}

/* ---- text ---- */

typedef struct {
    float *embeds; /* [rows, T, d] */
    float *masks;  /* [rows, T] for the denoiser, or NULL (mask_feature, caption_mask_off) */
    int rows, T, d;
    float *pooled; /* [rows, added_text_dim] (added_conditions), or NULL */
} text_out;

/* mask_feature (LattePipeline): see dt_pipeline_class. The batch's size picks the handling
 * (one item alone handles its captions as its batch does). */
static void fold_mask(const dt_gen_request *r, const plan *pl, dt_prompt_result *out, text_out *t)
{
    int L = pl->max_len, d = t->d, rows = out->rows, first = pl->cfg_on ? run_batch(r) : 0; /* first prompt row */
    if (r->batch == 1) {
        int keep = 0;
        for (int i = 0; i < L; i++) keep += out->masks[(size_t)first * L + i] != 0.0f;
        for (int row = 0; row < rows; row++)
            memmove(out->embeds + (size_t)row * keep * d, out->embeds + (size_t)row * L * d, (size_t)keep * d * sizeof(float));
        t->T = keep;
    } else {
        for (int row = first; row < rows; row++)
            for (int i = 0; i < L; i++)
                for (int k = 0; k < d; k++) out->embeds[((size_t)row * L + i) * d + k] *= out->masks[(size_t)row * L + i];
    }
    free(out->masks);
    t->masks = NULL;
}

/* learned_null: the rows [null x B, prompt x B], the null rows the denoiser's null caption
 * with the prompt's mask (Open-Sora: text_encoder.null(n), and the model repeats the mask). */
static dt_status prepend_null(const dt_pipeline *p, const plan *pl, dt_prompt_result *out, dt_err *err)
{
    const float *null;
    int T = dt_denoiser_null_caption(p->tr, &null), L = pl->max_len, d = out->d_model, B = out->rows;
    float *e = malloc((size_t)2 * B * L * d * sizeof *e), *m = malloc((size_t)2 * B * L * sizeof *m);
    if (!e || !m || T != L) {
        free(e); free(m); free(out->embeds); free(out->masks);
        if (T != L) return dt_fail(err, DT_EFORMAT, "null caption: %d tokens, the captions have %d", T, L);
        return dt_fail(err, DT_ENOMEM, "out of memory");
    }
    for (int b = 0; b < B; b++) memcpy(e + (size_t)b * L * d, null, (size_t)L * d * sizeof *e);
    memcpy(e + (size_t)B * L * d, out->embeds, (size_t)B * L * d * sizeof *e);
    memcpy(m, out->masks, (size_t)B * L * sizeof *m);
    memcpy(m + (size_t)B * L, out->masks, (size_t)B * L * sizeof *m);
    free(out->embeds);
    free(out->masks);
    out->embeds = e;
    out->masks = m;
    out->rows = 2 * B;
    return DT_OK;
}

static dt_status encode_text(dt_pipeline *p, const dt_gen_request *r, const plan *pl, text_out *t, dt_gen_result *res,
                             dt_err *err)
{
    const dt_pipeline_class *pc = p->pcls;
    const dt_denoiser_info *tc = dt_denoiser_get_info(p->tr);
    dt_prompt_encoder enc = {.n = p->parts.ntext, .be = p->parts.text_be, .weights = p->parts.text_weights, .expect_d_model = tc->caption_channels,
                             .no_mask = pc->caption_mask_off, .pooled_size = pc->added_conditions ? tc->added_text_dim : 0};
    for (int k = 0; k < p->parts.ntext; k++) {
        enc.tok[k] = p->parts.tok[k];
        enc.text_dir[k] = p->parts.text_dir[k];
        enc.kept[k] = p->text_encoder[k];
    }
    /* the negative takes the class's layer; clip_skip moves the prompt's only (as diffusers does) */
    enc.negative_layer = enc.prompt_layer = (dt_prompt_layer){pc->hidden_from_end, 0};
    if (r->clip_skip > 0) enc.prompt_layer = (dt_prompt_layer){r->clip_skip + pc->clip_skip_from_end, pc->clip_skip_norm};
    enc.zero_negative = p->zeros_for_empty && (!r->negative_prompt || !r->negative_prompt[0]);
    int learned = pc->learned_null && pl->cfg_on; /* the negative rows come from the model */
    dt_prompt_request pr = {r->prompt, r->negative_prompt, pl->cfg_on && !learned, r->clean_caption && !pc->no_clean_caption,
                            pl->max_len, run_batch(r)};
    dt_prompt_result out;
    DT_TRY(dt_encode_prompts(&enc, &pr, p->parts.text_arena, &out, err));
    if (learned) DT_TRY(prepend_null(p, pl, &out, err));
    res->prompt_truncated = out.prompt_truncated;
    res->negative_truncated = out.negative_truncated;
    *t = (text_out){out.embeds, out.masks, out.rows, pl->max_len, tc->caption_channels, out.pooled};
    if (pc->mask_feature) fold_mask(r, pl, &out, t);
    if (pc->caption_mask_off) {
        free(out.masks);
        t->masks = NULL;
    }
    return DT_OK;
}

/* ---- sampling ---- */

/* The solver steps the latents on the host (they are small); the denoiser's inputs and outputs
 * live on the backend's device, with explicit transfers each step. */
typedef struct {
    dt_pipeline *p;
    const dt_gen_request *r;
    const plan *pl;
    const text_out *text;
    int B, rows, C, out_ch, h, w;
    float *latents, *model_in, *guided, *tsteps;  /* host */
    float *d_in, *d_out, *d_guided, *d_text;      /* device: model input, output, guided output, captions */
    float *var, *d_var;   /* the prompt rows' variance half, for a scheduler that reads it (else NULL) */
} sampler;

/* The latents of one batch item: C·F·h·w floats (F = 1 for an image). */
static size_t item_size(const sampler *sp) { return (size_t)sp->C * sp->pl->frames * sp->h * sp->w; }

/* dst[b, 0..len) = the prompt rows' output src[B + b, off..off+len) (src[b] without CFG), for
 * the B items: output rows are out_ch·vol apart, dst rows row_len apart. */
static dt_status copy_cond(const sampler *sp, int64_t off, int64_t len, float *dst, int64_t row_len, dt_err *err)
{
    dt_backend *be = sp->p->parts.be;
    int64_t ochw = (int64_t)sp->out_ch * sp->pl->frames * sp->h * sp->w, B = sp->B, s4[4] = {1, 1, B, len};
    dt_tensor c = dt_tensor_view(sp->d_out + (sp->pl->cfg_on ? B * ochw : 0) + off, DT_F32, 4, s4);
    dt_tensor y = dt_tensor_view(dst, DT_F32, 4, s4);
    c.strides[2] = ochw;
    y.strides[2] = row_len;
    c.device = y.device = be->cfg.device;
    return be->ops->copy4d(be, &c, &y, err);
}

/* guided = u + g (c - u) over the latent channels the pipeline class guides (all, or the
 * first cfg_channels: the others are the prompt rows'), or the conditional output without
 * CFG; then to the host for the solver. The learned-sigma half goes to the host too when the
 * scheduler reads it (the prompt rows'), else it is dropped. */
static dt_status guide(const sampler *sp, dt_err *err)
{
    dt_backend *be = sp->p->parts.be;
    int64_t vol = (int64_t)sp->pl->frames * sp->h * sp->w, chw = sp->C * vol, ochw = sp->out_ch * vol, B = sp->B;
    int gc = sp->p->pcls->cfg_channels > 0 && sp->p->pcls->cfg_channels < sp->C ? sp->p->pcls->cfg_channels : sp->C;
    int64_t rs[2] = {B, gc * vol};
    if (sp->pl->cfg_on) {
        dt_tensor u = dt_tensor_view(sp->d_out, DT_F32, 2, rs), c = u, y = dt_tensor_view(sp->d_guided, DT_F32, 2, rs);
        u.strides[0] = c.strides[0] = ochw;
        y.strides[0] = chw;
        c.data = sp->d_out + B * ochw;
        u.device = c.device = y.device = be->cfg.device;
        DT_TRY(be->ops->cfg_combine(be, &u, &c, sp->r->cfg, &y, err));
        if (gc < sp->C) DT_TRY(copy_cond(sp, gc * vol, (sp->C - gc) * vol, sp->d_guided + gc * vol, chw, err));
    } else {
        DT_TRY(copy_cond(sp, 0, chw, sp->d_guided, chw, err));
    }
    if (sp->var) {
        DT_TRY(copy_cond(sp, chw, chw, sp->d_var, chw, err));
        DT_TRY(dt_backend_read(be, sp->d_var, sp->var, (size_t)(B * chw), err));
    }
    return dt_backend_read(be, sp->d_guided, sp->guided, (size_t)(B * chw), err);
}

/* The micro-conditions (PixArt-α at 1024 px): the generated (height, width) and h/w per row,
 * when a zoo member the schedule uses needs them; *res stays NULL otherwise. */
static dt_status micro_conditions(const sampler *sp, float **res, float **ar, dt_err *err)
{
    dt_pipeline *p = sp->p;
    const int *ids = sp->r->model_ids;
    int micro = 0;
    for (int i = 0; i < sp->pl->evals; i++) micro |= dt_denoiser_get_info(p->zoo[ids ? ids[i] : 0])->micro_conditions;
    *res = *ar = NULL;
    if (!micro) return DT_OK;
    *res = malloc((size_t)sp->rows * 2 * sizeof(float));
    *ar = malloc((size_t)sp->rows * sizeof(float));
    if (!*res || !*ar) return dt_fail(err, DT_ENOMEM, "out of memory");
    for (int i = 0; i < sp->rows; i++) {
        (*res)[2 * i] = (float)sp->pl->height;
        (*res)[2 * i + 1] = (float)sp->pl->width;
        (*ar)[i] = (float)((double)sp->pl->height / sp->pl->width);
    }
    return DT_OK;
}

/* One row of SDXL's add_time_ids: original (h, w), crop (top, left), target (h, w); a size
 * (0, 0) is the generated one. */
static void time_ids_row(const plan *pl, const int orig[2], const int crop[2], const int target[2], float row[6])
{
    row[0] = (float)(orig[0] ? orig[0] : pl->height);
    row[1] = (float)(orig[0] ? orig[1] : pl->width);
    row[2] = (float)crop[0];
    row[3] = (float)crop[1];
    row[4] = (float)(target[0] ? target[0] : pl->height);
    row[5] = (float)(target[0] ? target[1] : pl->width);
}

/* SDXL's add_time_ids (added_conditions), rows [negative x B, prompt x B] with CFG: the
 * request's micro-conditions (time_ids_row), the negative ones on the unconditional rows when
 * given. *ids stays NULL when the pipeline class has none. */
static dt_status added_conditions(const sampler *sp, float **ids, dt_err *err)
{
    const dt_gen_request *r = sp->r;
    *ids = NULL;
    if (!sp->p->pcls->added_conditions) return DT_OK;
    if (!(*ids = malloc((size_t)sp->rows * 6 * sizeof **ids))) return dt_fail(err, DT_ENOMEM, "out of memory");
    float pos[6], neg[6];
    time_ids_row(sp->pl, r->original_size, r->crops_coords_top_left, r->target_size, pos);
    if (r->negative_original_size[0])
        time_ids_row(sp->pl, r->negative_original_size, r->negative_crops_coords_top_left, r->negative_target_size, neg);
    else
        memcpy(neg, pos, sizeof pos);
    for (int i = 0; i < sp->rows; i++) memcpy(*ids + (size_t)i * 6, sp->pl->cfg_on && i < sp->B ? neg : pos, sizeof pos);
    return DT_OK;
}

static dt_status sample_loop(sampler *sp, dt_err *err)
{
    dt_pipeline *p = sp->p;
    const dt_gen_request *r = sp->r;
    const dt_denoiser_info *tc = dt_denoiser_get_info(p->tr);
    size_t per = item_size(sp), n = (size_t)sp->B * per;
    /* the timesteps were set by the caller, before init_noise_sigma was read */
    int steps = dt_scheduler_num_steps(p->parts.sched), rank = tc->latent_rank;
    const double *ts = dt_scheduler_timesteps(p->parts.sched);
    int64_t in_shape[5] = {sp->rows, sp->C, sp->pl->frames, sp->h, sp->w}, out_shape[5] = {sp->rows, sp->out_ch, sp->pl->frames, sp->h, sp->w};
    if (rank == 4) { /* no frame axis */
        in_shape[2] = sp->h, in_shape[3] = sp->w;
        out_shape[2] = sp->h, out_shape[3] = sp->w;
    }
    int64_t e_shape[3] = {sp->rows, sp->text->T, sp->text->d};
    dt_backend *be = p->parts.be;
    dt_tensor tin = dt_tensor_view(sp->d_in, DT_F32, rank, in_shape), tout = dt_tensor_view(sp->d_out, DT_F32, rank, out_shape);
    dt_tensor te = dt_tensor_view(sp->d_text, DT_F32, 3, e_shape);
    tin.device = tout.device = te.device = be->cfg.device;
    dt_denoiser_inputs in = {.hidden_states = &tin, .encoder_hidden_states = &te, .timestep = sp->tsteps,
                             .encoder_attention_mask = sp->text->masks};
    float *res = NULL, *ar = NULL, *time_ids = NULL;
    const int *ids = r->model_ids;
    dt_status s = micro_conditions(sp, &res, &ar, err);
    if (s == DT_OK) s = added_conditions(sp, &time_ids, err);
    in.resolution = res;
    in.aspect_ratio = ar;
    in.text_embeds = time_ids ? sp->text->pooled : NULL;
    in.time_ids = time_ids;
    dt_fastattn *fa = NULL; /* DiTFastAttn plan runtime */
    if (s == DT_OK) s = dt_fastattn_begin(r->attn_plan, tc->spatial_layers, tc->temporal_layers, steps, sp->pl->cfg_on, &fa, err);
    if (fa) dt_denoiser_set_attn_hook(p->tr, dt_fastattn_hook(fa));
    for (int i = 0; i < steps && s == DT_OK; i++) {
        double t0 = dt_now();
        for (int k = 0; k < sp->rows; k++) {
            memcpy(sp->model_in + (size_t)k * per, sp->latents + (size_t)(k % sp->B) * per, per * sizeof(float));
            sp->tsteps[k] = (float)ts[i];
        }
        dt_scheduler_scale_model_input(p->parts.sched, sp->model_in, (size_t)sp->rows * per);
        s = dt_backend_write(be, sp->d_in, sp->model_in, (size_t)sp->rows * per, err);
        dt_arena_reset(&p->parts.arena);
        if (s == DT_OK && fa) s = dt_fastattn_set_step(fa, i, err);
        if (s == DT_OK && r->step_hook) {
            s = r->step_hook(r->step_hook_user, i, p->tr, &in, &p->parts.arena, err);
            dt_arena_reset(&p->parts.arena);
        }
        if (s == DT_OK) s = dt_denoiser_forward(p->zoo[ids ? ids[i] : 0], &in, &p->parts.arena, &tout, err);
        if (s == DT_OK) s = guide(sp, err);
        if (s != DT_OK) break;
        s = dt_scheduler_step_var(p->parts.sched, sp->guided, sp->var, sp->latents, sp->latents, n, err);
        if (s == DT_OK && ((r->progress && r->progress(i + 1, steps, dt_now() - t0, r->progress_user)) ||
                           (r->cancel && *r->cancel)))
            s = dt_fail(err, DITRT_ECANCELLED, "cancelled after step %d of %d", i + 1, steps);
    }
    dt_denoiser_set_attn_hook(p->tr, NULL); /* no hook outlives its generation (a calibrator's neither) */
    dt_fastattn_free(fa);
    free(res);
    free(ar);
    free(time_ids);
    return s;
}

/* ---- decode ---- */

/* Latents [B, C, F, h, w] -> frames [B·F, 3, H, W] (resized back to the requested size),
 * decode_chunk frames per VAE call. */
static dt_status decode(dt_pipeline *p, const plan *pl, const sampler *sp, float *pixels, dt_err *err)
{
    const dt_gen_request *r = sp->r;
    int C = sp->C, F = pl->frames, total = sp->B * F, chunk = pl->decode_chunk, H = pl->height, W = pl->width;
    size_t plane = (size_t)sp->h * sp->w, out_px = (size_t)3 * pl->out_height * pl->out_width;
    dt_backend *be = p->parts.be;
    size_t nz = (size_t)chunk * C * plane, nd = (size_t)chunk * 3 * H * W;
    float *z = malloc(nz * sizeof(float)), *dec = malloc(nd * sizeof(float)), *d_z = NULL, *d_dec = NULL;
    dt_status s = z && dec ? DT_OK : dt_fail(err, DT_ENOMEM, "out of memory for the decoded frames");
    if (s == DT_OK) s = be->ops->buffer_alloc(be, nz * sizeof(float), (void **)&d_z, err);
    if (s == DT_OK) s = be->ops->buffer_alloc(be, nd * sizeof(float), (void **)&d_dec, err);
    /* diffusers: latents / scaling_factor (PixArt) or 1 / scaling_factor * latents (Latte: a
     * multiply by the f32-rounded reciprocal) */
    float sf = vae_scaling_factor(p->parts.vae), inv = (float)(1.0 / vae_scaling_factor(p->parts.vae));
    int recip = p->pcls->decode_reciprocal;
    double t0 = dt_now();
    for (int f0 = 0; f0 < total && s == DT_OK; f0 += chunk) {
        int k = total - f0 < chunk ? total - f0 : chunk;
        for (int j = 0; j < k; j++) {
            int b = (f0 + j) / F, f = (f0 + j) % F;
            for (int c = 0; c < C; c++) {
                const float *src = sp->latents + (((size_t)b * C + c) * F + f) * plane;
                float *dst = z + ((size_t)j * C + c) * plane;
                if (recip)
                    for (size_t i = 0; i < plane; i++) dst[i] = inv * src[i];
                else
                    for (size_t i = 0; i < plane; i++) dst[i] = src[i] / sf;
            }
        }
        int64_t zs[4] = {k, C, sp->h, sp->w}, ds[4] = {k, 3, H, W};
        dt_tensor tz = dt_tensor_view(d_z, DT_F32, 4, zs), td = dt_tensor_view(d_dec, DT_F32, 4, ds);
        tz.device = td.device = be->cfg.device;
        dt_arena_reset(&p->parts.arena);
        s = dt_backend_write(be, d_z, z, (size_t)k * C * plane, err);
        if (s == DT_OK)
            s = r->vae_tiling ? vae_decode_tiled(p->parts.vae, &tz, &p->parts.arena, &td, err)
                              : vae_decode(p->parts.vae, &tz, &p->parts.arena, &td, err);
        if (s == DT_OK) s = dt_backend_read(be, d_dec, dec, (size_t)k * 3 * H * W, err);
        if (s != DT_OK) break;
        float *dst = pixels + (size_t)f0 * out_px;
        if (pl->out_height != H || pl->out_width != W) dt_resize_and_crop(dec, k, 3, H, W, dst, pl->out_height, pl->out_width);
        else memcpy(dst, dec, (size_t)k * 3 * H * W * sizeof(float));
        if ((r->frame_progress && r->frame_progress(f0 + k, total, dt_now() - t0, r->progress_user)) || (r->cancel && *r->cancel))
            s = dt_fail(err, DITRT_ECANCELLED, "cancelled after decoding %d of %d frames", f0 + k, total);
        t0 = dt_now();
    }
    free(z);
    free(dec);
    be->ops->buffer_free(be, d_z);
    be->ops->buffer_free(be, d_dec);
    return s;
}

static dt_status alloc_sampler(sampler *sp, dt_err *err)
{
    dt_backend *be = sp->p->parts.be;
    size_t per = item_size(sp), vol = per / sp->C, text = (size_t)sp->rows * sp->text->T * sp->text->d;
    /* the buffers crossing to the device every step: the backend's host memory (pinned on CUDA,
     * so the transfers run at full speed; plain aligned memory on the CPU) */
    DT_TRY(dt_backend_host_alloc(be, (size_t)sp->B * per * sizeof(float), (void **)&sp->latents, err));
    DT_TRY(dt_backend_host_alloc(be, (size_t)sp->rows * per * sizeof(float), (void **)&sp->model_in, err));
    DT_TRY(dt_backend_host_alloc(be, (size_t)sp->B * per * sizeof(float), (void **)&sp->guided, err));
    sp->tsteps = malloc((size_t)sp->rows * sizeof(float));
    if (!sp->tsteps) return dt_fail(err, DT_ENOMEM, "out of memory");
    DT_TRY(be->ops->buffer_alloc(be, (size_t)sp->rows * per * sizeof(float), (void **)&sp->d_in, err));
    DT_TRY(be->ops->buffer_alloc(be, (size_t)sp->rows * sp->out_ch * vol * sizeof(float), (void **)&sp->d_out, err));
    DT_TRY(be->ops->buffer_alloc(be, (size_t)sp->B * per * sizeof(float), (void **)&sp->d_guided, err));
    DT_TRY(dt_backend_upload(be, sp->text->embeds, text, &sp->d_text, err));
    if (!dt_scheduler_uses_variance(sp->p->parts.sched)) return DT_OK;
    DT_TRY(dt_backend_host_alloc(be, (size_t)sp->B * per * sizeof(float), (void **)&sp->var, err));
    return be->ops->buffer_alloc(be, (size_t)sp->B * per * sizeof(float), (void **)&sp->d_var, err);
}

static void free_sampler(sampler *sp)
{
    dt_backend *be = sp->p->parts.be;
    dt_backend_host_free(be, sp->latents);
    dt_backend_host_free(be, sp->model_in);
    dt_backend_host_free(be, sp->guided);
    dt_backend_host_free(be, sp->var);
    free(sp->tsteps);
    be->ops->buffer_free(be, sp->d_in);
    be->ops->buffer_free(be, sp->d_var);
    be->ops->buffer_free(be, sp->d_out);
    be->ops->buffer_free(be, sp->d_guided);
    be->ops->buffer_free(be, sp->d_text);
}

/* prepare_latents (randn(shape, generator) · init_noise_sigma), then the loop. Stochastic
 * solvers draw their step noise from the same generator, after the latents; init_noise_sigma
 * depends on the schedule, so the timesteps are set first (diffusers does too). */
static dt_status sample(sampler *sp, dt_gen_result *res, dt_err *err)
{
    dt_pipeline *p = sp->p;
    const dt_gen_request *r = sp->r;
    size_t per = item_size(sp), n = (size_t)sp->B * per;
    dt_rng g;
    dt_rng_init(&g, r->seed, DT_RNG_VECTOR);
    if (r->one_item) { /* the batch's draw, of which this item keeps its slice */
        float *all = malloc((size_t)r->batch * per * sizeof *all);
        if (!all) return dt_fail(err, DT_ENOMEM, "out of memory for the batch's noise");
        dt_rng_randn(&g, all, (size_t)r->batch * per);
        memcpy(sp->latents, all + (size_t)r->item_index * per, per * sizeof *all);
        free(all);
    } else {
        dt_rng_randn(&g, sp->latents, n);
    }
    dt_scheduler_set_generator(p->parts.sched, &g);
    /* the reference's step noise covers noise_rows items per batch item, the prompt half first */
    int rows = p->pcls->noise_rows > 1 ? p->pcls->noise_rows : 1;
    dt_scheduler_set_noise_slice(p->parts.sched, rows * (r->one_item ? r->batch : 1), r->one_item ? r->item_index : 0);
    dt_scheduler_set_eta(p->parts.sched, sp->r->eta);
    dt_status s = dt_scheduler_set_timesteps(p->parts.sched, sp->r->steps, err);
    float sigma = (float)dt_scheduler_init_noise_sigma(p->parts.sched);
    if (sigma != 1.0f)
        for (size_t i = 0; i < n; i++) sp->latents[i] *= sigma;
    double t0 = dt_now();
    if (s == DT_OK) s = sample_loop(sp, err);
    dt_scheduler_set_generator(p->parts.sched, NULL); /* g goes out of scope */
    dt_scheduler_set_noise_slice(p->parts.sched, 1, 0);
    res->seconds_sampling = dt_now() - t0;
    return s;
}

dt_status dt_pipeline_generate(dt_pipeline *p, const dt_gen_request *r, dt_gen_result *res, dt_err *err)
{
    *res = (dt_gen_result){0};
    plan pl;
    DT_TRY(plan_request(p, r, &pl, err));
    const dt_denoiser_info *tc = dt_denoiser_get_info(p->tr);
    int up = vae_upscale(p->parts.vae);
    warn_request(p, r, &pl);
    res->max_sequence_length = pl.max_len;
    res->tokens = plan_tokens(p, &pl);
    double t0 = dt_now();
    text_out text;
    DT_TRY(encode_text(p, r, &pl, &text, res, err));
    res->seconds_text = dt_now() - t0;
    sampler sp = {.p = p, .r = r, .pl = &pl, .text = &text, .B = run_batch(r), .rows = text.rows, .C = tc->in_channels,
                  .out_ch = tc->out_channels, .h = pl.height / up, .w = pl.width / up};
    int total = sp.B * pl.frames;
    float *pixels = malloc((size_t)total * 3 * pl.out_height * pl.out_width * sizeof(float));
    dt_status s = pixels ? alloc_sampler(&sp, err) : dt_fail(err, DT_ENOMEM, "out of memory for the output");
    if (s == DT_OK) s = sample(&sp, res, err);
    free(text.embeds);
    free(text.masks);
    free(text.pooled);
    if (s == DT_OK) {
        t0 = dt_now();
        s = decode(p, &pl, &sp, pixels, err);
        res->seconds_decode = dt_now() - t0;
    }
    free_sampler(&sp);
    if (s != DT_OK) { free(pixels); return s; }
    res->batch = sp.B;
    res->frames = tc->max_frames ? pl.frames : 0;
    res->width = pl.out_width;
    res->height = pl.out_height;
    res->pixels = pixels;
    return DT_OK;
}
