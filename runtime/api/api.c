/* The public C API (include/ditrt.h) over the pipeline: opaque contexts, defaults by init
 * functions, a status and a per-context message for every failure. */
#include "ditrt.h"
#include "api_internal.h"
#include "runtime/core/error.h"
#include "runtime/io/image.h"
#include "runtime/pipeline/pipeline.h"
#include "runtime/plans/fastattn.h"
#include "runtime/plans/model_schedule.h"
#include "runtime/plans/quantize.h"
#include "schedulers/scheduler.h"
#include <omp.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

struct ditrt_ctx {
    dt_pipeline *p;
    int threads;
    dt_attn_plan plan; /* DiTFastAttn, when has_plan */
    int has_plan;
    dt_model_schedule ms; /* OMS-DPM model schedule (ms.ids NULL: none) */
    dt_dtype dtype, text_dtype; /* resolved (ditrt_ctx_get_info) */
    int tf32;                   /* dtype "tf32": f32 with TF32 GEMMs (CUDA) */
    ditrt_gen_info last;        /* the last successful generation (struct_size 0: none yet) */
    atomic_int cancel;
    char msg[DITRT_ERRMSG_MAX];
};

static void set_msg(ditrt_ctx *c, const dt_err *e) { strcpy(c->msg, e->msg); }

void ditrt_ctx_params_init(ditrt_ctx_params *p)
{
    if (!p) return;
    *p = (ditrt_ctx_params){.struct_size = sizeof *p, .clip_sample = -1}; /* dtype, text_dtype NULL: the device's default */
}

#define CTX_PARAMS_MIN_SIZE DT_END_OF(ditrt_ctx_params, attn_plan)
#define GEN_PARAMS_MIN_SIZE DT_END_OF(ditrt_gen_params, eta)

static dt_status check_struct_size(const char *type, size_t got, size_t min, size_t known, const char *init, dt_err *err)
{
    if (got == 0)
        return dt_fail(err, DT_EINVAL, "%s: struct_size is 0 (not initialized); call %s on it before setting fields", type, init);
    if (got > known)
        return dt_fail(err, DT_EINVAL, "%s: struct_size %zu is larger than this library's %zu (a newer ditrt.h than "
                       "libditrt %s); call %s and build against the library's header", type, got, known,
                       ditrt_version(), init);
    if (got < min)
        return dt_fail(err, DT_EINVAL, "%s: struct_size %zu is smaller than any published layout (%zu); call %s on it",
                       type, got, min, init);
    return DT_OK;
}

dt_status dt_api_read_params(const void *in, size_t min, size_t known, const char *type, const char *init, void *out,
                             dt_err *err)
{
    if (!in) return dt_fail(err, DT_EINVAL, "%s: NULL", type);
    size_t got = *(const size_t *)in; /* every parameter struct starts with struct_size */
    DT_TRY(check_struct_size(type, got, min, known, init, err));
    memcpy(out, in, got);
    *(size_t *)out = known;
    return DT_OK;
}

/* The caller's ctx params as this library's struct: the known prefix over the defaults. */
static dt_status read_ctx_params(const ditrt_ctx_params *in, ditrt_ctx_params *out, dt_err *err)
{
    if (!in) return dt_fail(err, DT_EINVAL, "ditrt_ctx_params: NULL");
    DT_TRY(check_struct_size("ditrt_ctx_params", in->struct_size, CTX_PARAMS_MIN_SIZE, sizeof *out,
                             "ditrt_ctx_params_init", err));
    ditrt_ctx_params_init(out);
    memcpy(out, in, in->struct_size);
    out->struct_size = sizeof *out;
    return DT_OK;
}

/* The same for gen params; `video` picks the defaults of the fields the caller lacks. */
static dt_status read_gen_params(const ditrt_gen_params *in, int video, ditrt_gen_params *out, dt_err *err)
{
    if (!in) return dt_fail(err, DT_EINVAL, "ditrt_gen_params: NULL");
    DT_TRY(check_struct_size("ditrt_gen_params", in->struct_size, GEN_PARAMS_MIN_SIZE, sizeof *out,
                             video ? "ditrt_gen_params_init_video" : "ditrt_gen_params_init", err));
    if (video) ditrt_gen_params_init_video(out);
    else ditrt_gen_params_init(out);
    memcpy(out, in, in->struct_size);
    out->struct_size = sizeof *out;
    return DT_OK;
}

dt_status dt_api_check_result(const void *r, size_t min, size_t known, const char *type, const char *init, dt_err *err)
{
    if (!r) return dt_fail(err, DT_EINVAL, "%s: NULL", type);
    return check_struct_size(type, *(const size_t *)r, min, known, init, err);
}

void dt_api_write_result(void *r, const void *full, size_t known)
{
    size_t n = *(const size_t *)r;
    memcpy((char *)r + sizeof(size_t), (const char *)full + sizeof(size_t), (n < known ? n : known) - sizeof(size_t));
}

dt_status dt_api_parse_dtype(const char *field, const char *s, dt_device dev, const char *cpu_only, dt_dtype *out,
                             int *tf32, dt_err *err)
{
    int t32 = s && !strcmp(s, "tf32");
    dt_dtype dt = DT_F32;
    if (tf32) *tf32 = 0;
    if (!s) dt = dt_backend_default_dtype(dev);
    else if (!t32 && (!dt_dtype_parse(s, &dt) || (dt != DT_F32 && dt != DT_BF16 && dt != DT_F16)))
        return dt_fail(err, DT_EINVAL, "%s: expected " DT_API_DTYPES ", got \"%s\"", field, s);
    if (!tf32 && (t32 || dt == DT_F16)) /* text encoders: T5 overflows f16; tf32 is the GEMMs' mode */
        return dt_fail(err, DT_EINVAL, "%s: expected f32 or bf16 (text encoders run in neither f16 nor tf32), got \"%s\"",
                       field, s);
    if ((t32 || dt == DT_F16) && dev != DT_DEV_CUDA) {
        const char *name = t32 ? "tf32" : "f16";
        if (cpu_only) return dt_fail(err, DT_EUNSUPPORTED, "%s: %s needs --device cuda; %s runs on the CPU only", field, name, cpu_only);
        if (t32) /* as dt_backend_create words it */
            return dt_fail(err, DT_EUNSUPPORTED, "%s: tf32 needs --device cuda (TF32 tensor cores; the %s backend has none)",
                           field, dt_backend_device_name(dev));
        return dt_fail(err, DT_EUNSUPPORTED, "%s: f16 needs --device cuda (the %s backend computes in f32 or bf16)", field,
                       dt_backend_device_name(dev));
    }
    *out = dt;
    if (tf32) *tf32 = t32;
    return DT_OK;
}

dt_status dt_api_cpu_dtype(const char *field, const char *s, const char *what, const char **canon, dt_err *err)
{
    dt_dtype dt;
    *canon = NULL;
    if (!s) return DT_OK;
    DT_TRY(dt_api_parse_dtype(field, s, DT_DEV_CPU, what, &dt, &(int){0}, err));
    *canon = dt_dtype_name(dt);
    return DT_OK;
}

/* The context's pipeline and plans from checked params; err says why not. */
static void create(ditrt_ctx *c, const ditrt_ctx_params *p, dt_err *err)
{
    dt_pipeline_config cfg = {.model_dir = p->model_dir, .threads = p->threads, .keep_text_encoder = p->keep_text_encoder,
                              .karras = p->karras, .solver_schedule = p->solver_schedule,
                              .solver_statistics = p->solver_statistics, .zoo = p->zoo, .nzoo = p->nzoo};
    if (p->solver && !(cfg.solver = dt_scheduler_resolve_name(p->solver))) {
        dt_fail(err, DT_EINVAL, "solver: unknown solver \"%s\" (ditrt txt2img --list-solvers lists them)", p->solver);
        return;
    }
    if (p->solver && p->solver_schedule) {
        dt_fail(err, DT_EINVAL, "solver_schedule: a USF schedule is its own solver; leave solver unset");
        return;
    }
    if (p->clip_sample < -1 || p->clip_sample > 1) {
        dt_fail(err, DT_EINVAL, "clip_sample: must be -1 (the folder's), 0 or 1, got %d", p->clip_sample);
        return;
    }
    cfg.clip_sample = p->clip_sample < 0 ? 0 : p->clip_sample ? 1 : 2;
    if (p->nzoo < 0 || (p->nzoo && !p->zoo)) {
        dt_fail(err, DT_EINVAL, "zoo: %d members given with %s list", p->nzoo, p->zoo ? "a" : "no");
        return;
    }
    if (p->device && dt_backend_parse_device(p->device, &cfg.device, &cfg.device_index, err) != DT_OK) return;
    /* dtype NULL: the device's default; text_dtype NULL: the CPU's (CLIP stays on the CPU; a T5 on
     * the device takes the device's, text_dtype_auto) */
    /* text_dtype "int8": T5's weights in int8, computing in f32 (t5_load) */
    int text_int8 = p->text_dtype && !strcmp(p->text_dtype, "int8");
    if (dt_api_parse_dtype("dtype", p->dtype, cfg.device, NULL, &cfg.dtype, &cfg.tf32, err) != DT_OK ||
        (!text_int8 && dt_api_parse_dtype("text_dtype", p->text_dtype, DT_DEV_CPU, NULL, &cfg.text_dtype, NULL, err) != DT_OK))
        return;
    if (text_int8) cfg.text_dtype = DT_I8;
    if (p->attn_plan && dt_attn_plan_load(p->attn_plan, &c->plan, err) == DT_OK) c->has_plan = 1;
    if (err->status != DT_OK) return;
    cfg.text_dtype_auto = !p->text_dtype;
    if (cfg.device != DT_DEV_CPU) {
        if (p->quant_dir) {
            dt_fail(err, DT_EUNSUPPORTED, "quant_dir: quantized plans run on the CPU only (device %s)", p->device);
            return;
        }
    }
    c->dtype = cfg.dtype;
    c->tf32 = cfg.tf32;
    c->text_dtype = cfg.text_dtype;
    c->threads = p->threads;
    if (p->threads > 0) omp_set_num_threads(p->threads);
    dt_quantizer qz;
    if (p->quant_dir && dt_quantizer_open_plan(p->quant_dir, &qz, err) == DT_OK) cfg.quant = &qz;
    if (err->status == DT_OK) dt_pipeline_load(&cfg, &c->p, err);
    if (err->status == DT_OK) c->text_dtype = dt_pipeline_text_dtype(c->p);
    if (cfg.quant) dt_quantizer_close_plan(&qz); /* the layers are built; the plan is no longer needed */
    if (err->status == DT_OK && p->model_schedule)
        dt_model_schedule_load(p->model_schedule, dt_pipeline_zoo_size(c->p), &c->ms, err);
}

ditrt_status ditrt_ctx_create(const ditrt_ctx_params *params, ditrt_ctx **out)
{
    if (!out) return DITRT_EINVAL; /* nowhere to put a context (or its message) */
    ditrt_ctx *c = calloc(1, sizeof *c);
    *out = c;
    if (!c) return DITRT_ENOMEM;
    dt_err err = {0};
    ditrt_ctx_params pv;
    if (read_ctx_params(params, &pv, &err) == DT_OK) create(c, &pv, &err);
    if (err.status != DT_OK && c->p) { /* a failed context has no model, as before */
        dt_pipeline_free(c->p);
        c->p = NULL;
    }
    set_msg(c, &err);
    return err.status;
}

void ditrt_ctx_free(ditrt_ctx *c)
{
    if (!c) return;
    dt_pipeline_free(c->p);
    if (c->has_plan) dt_attn_plan_free(&c->plan);
    dt_model_schedule_free(&c->ms);
    free(c);
}

const char *ditrt_errmsg(const ditrt_ctx *c) { return c ? c->msg : "out of memory"; }

/* An output struct: the caller's struct_size bytes zeroed, then the known prefix of `full`. */
static ditrt_status fill_out(void *out, const void *full, size_t known, size_t min)
{
    size_t got = *(const size_t *)out;
    if (got < min) return DITRT_EINVAL; /* 0: not set; smaller than any published layout */
    memset(out, 0, got);
    memcpy(out, full, got < known ? got : known);
    *(size_t *)out = got;
    return DITRT_OK;
}

ditrt_status ditrt_ctx_get_info(const ditrt_ctx *c, ditrt_ctx_info *info)
{
    if (!c || !c->p || !info) return DITRT_EINVAL;
    int native = dt_pipeline_native_size(c->p);
    ditrt_ctx_info full = {.struct_size = sizeof full, .native_width = native, .native_height = native,
                           .size_multiple = dt_pipeline_size_multiple(c->p), .max_frames = dt_pipeline_max_frames(c->p),
                           .zoo_size = dt_pipeline_zoo_size(c->p), .solver = dt_pipeline_solver_name(c->p),
                           .solver_warning = dt_pipeline_solver_warning(c->p), .dtype = c->tf32 ? "tf32" : dt_dtype_name(c->dtype),
                           .text_dtype = c->text_dtype == DT_I8 ? "int8" : dt_dtype_name(c->text_dtype), .fixed_steps = dt_pipeline_fixed_steps(c->p),
                           .micro_conditioning = dt_pipeline_get_class(c->p)->added_conditions};
    return fill_out(info, &full, sizeof full, DT_END_OF(ditrt_ctx_info, text_dtype));
}

ditrt_status ditrt_last_gen_info(const ditrt_ctx *c, ditrt_gen_info *info)
{
    if (!c || !info || !c->last.struct_size) return DITRT_EINVAL;
    return fill_out(info, &c->last, sizeof c->last, DT_END_OF(ditrt_gen_info, seconds_decode));
}

void ditrt_gen_params_init(ditrt_gen_params *p)
{
    if (!p) return;
    dt_gen_request d = dt_gen_request_default();
    *p = (ditrt_gen_params){.struct_size = sizeof *p, .negative_prompt = d.negative_prompt, .steps = d.steps,
                            .cfg = d.cfg, .batch = d.batch, .resolution_binning = d.resolution_binning,
                            .clean_caption = d.clean_caption, .batch_index = -1};
}

void ditrt_gen_params_init_video(ditrt_gen_params *p)
{
    if (!p) return;
    dt_gen_request d = dt_gen_request_default_video();
    *p = (ditrt_gen_params){.struct_size = sizeof *p, .negative_prompt = d.negative_prompt, .steps = d.steps,
                            .cfg = d.cfg, .batch = d.batch, .resolution_binning = d.resolution_binning,
                            .clean_caption = d.clean_caption, .batch_index = -1};
}

/* The cancel rule: the flag is set here and cleared only when a generation that started
 * (passed its checks) returns, so a cancel cancels the generation running or, when none is,
 * the next one to start; a cancel issued just before or just after ditrt_generate* begins is
 * never lost. */
void ditrt_cancel(ditrt_ctx *c)
{
    if (c) atomic_store(&c->cancel, 1);
}

/* The pipeline polls a plain int; mirror the atomic flag through the progress hook. */
typedef struct {
    ditrt_ctx *c;
    const ditrt_gen_params *p;
} hook;

static int progress_hook(int step, int steps, double seconds, void *user)
{
    hook *h = user;
    if (atomic_load(&h->c->cancel)) return 1;
    return h->p->progress ? h->p->progress(step, steps, seconds, h->p->progress_user) : 0;
}

static int frame_hook(int done, int total, double seconds, void *user)
{
    hook *h = user;
    return h->p->frame_progress(done, total, seconds, h->p->progress_user);
}

/* A loaded context of the wanted kind, the threads set (the cancel flag is kept: see ditrt_cancel). */
static int begin(ditrt_ctx *c, int video, dt_err *err)
{
    if (!c->p) dt_fail(err, DT_EINVAL, "context: the model failed to load");
    else if (video && !dt_pipeline_max_frames(c->p)) dt_fail(err, DT_EINVAL, "context: an image pipeline; use ditrt_generate");
    else if (!video && dt_pipeline_max_frames(c->p)) dt_fail(err, DT_EINVAL, "context: a video pipeline; use ditrt_generate_video");
    else {
        if (c->threads > 0) omp_set_num_threads(c->threads); /* per calling thread in OpenMP */
        return 1;
    }
    set_msg(c, err);
    return 0;
}

/* batch_exact: the batch was computed whole; item i's pixels become the result's only ones. */
static void keep_item(dt_gen_result *res, int i)
{
    size_t per = (size_t)(res->frames ? res->frames : 1) * 3 * res->width * res->height;
    memmove(res->pixels, res->pixels + (size_t)i * per, per * sizeof(float));
    res->batch = 1;
}

/* Checks params, then runs the pipeline (images: frames 0); res holds float pixels on success. */
static ditrt_status run(ditrt_ctx *c, const ditrt_gen_params *params, int video, dt_gen_result *res, dt_err *err)
{
    ditrt_gen_params pv;
    if (read_gen_params(params, video, &pv, err) != DT_OK) {
        set_msg(c, err);
        return err->status;
    }
    const ditrt_gen_params *p = &pv;
    if (!begin(c, video, err)) return err->status;
    if (atomic_exchange(&c->cancel, 0)) /* cancelled before it started: consumed, nothing run */
        return dt_fail(err, DITRT_ECANCELLED, "cancelled before the first step");
    if (p->batch_index < -1)
        return dt_fail(err, DT_EINVAL, "batch_index: must be -1 (all items) or 0..batch-1, got %d", p->batch_index);
    hook h = {c, p};
    dt_gen_request r = {.prompt = p->prompt, .negative_prompt = p->negative_prompt, .width = p->width,
                        .height = p->height, .frames = video ? p->frames : 0, .steps = p->steps, .batch = p->batch,
                        .cfg = p->cfg, .seed = p->seed, .vae_tiling = p->vae_tiling,
                        .resolution_binning = p->resolution_binning, .clean_caption = p->clean_caption,
                        .max_sequence_length = p->max_sequence_length, .force = p->force, .progress = progress_hook,
                        .progress_user = &h, .eta = p->eta, .attn_plan = c->has_plan ? &c->plan : NULL,
                        .model_ids = c->ms.ids, .n_model_ids = c->ms.n, .decode_chunk = p->decode_chunk,
                        .frame_progress = p->frame_progress ? frame_hook : NULL,
                        .one_item = p->batch_index >= 0 && !p->batch_exact,
                        .item_index = p->batch_index, .warning = p->warning, .warning_user = p->warning_user,
                        .clip_skip = p->clip_skip,
                        .original_size = {p->original_height, p->original_width},
                        .crops_coords_top_left = {p->crop_top, p->crop_left},
                        .target_size = {p->target_height, p->target_width},
                        .negative_original_size = {p->negative_original_height, p->negative_original_width},
                        .negative_crops_coords_top_left = {p->negative_crop_top, p->negative_crop_left},
                        .negative_target_size = {p->negative_target_height, p->negative_target_width}};
    if (p->batch_exact && p->batch_index < 0)
        return dt_fail(err, DT_EINVAL, "batch_exact: needs a batch_index");
    dt_status st = dt_pipeline_generate(c->p, &r, res, err);
    if (st == DT_OK && p->batch_exact) keep_item(res, p->batch_index);
    atomic_store(&c->cancel, 0); /* a started generation consumes any cancel issued during it */
    if (st != DT_OK) return st;
    c->last = (ditrt_gen_info){.struct_size = sizeof c->last, .prompt_truncated = res->prompt_truncated,
                               .negative_truncated = res->negative_truncated,
                               .max_sequence_length = res->max_sequence_length, .seconds_text = res->seconds_text,
                               .seconds_sampling = res->seconds_sampling, .seconds_decode = res->seconds_decode,
                               .batch = p->batch, .batch_index = p->batch_index};
    int fixed = dt_pipeline_fixed_steps(c->p);
    c->last.steps = fixed ? fixed : p->steps;
    return DT_OK;
}

ditrt_status ditrt_generate(ditrt_ctx *c, const ditrt_gen_params *params, ditrt_image **images, int *n)
{
    if (!c) return DITRT_EINVAL;
    dt_err err = {0};
    if (!images || !n) {
        dt_fail(&err, DT_EINVAL, "ditrt_generate: images and n must not be NULL");
        set_msg(c, &err);
        return err.status;
    }
    *images = NULL;
    *n = 0;
    dt_gen_result res;
    if (run(c, params, 0, &res, &err) == DT_OK) {
        ditrt_image *im = calloc((size_t)res.batch, sizeof *im);
        size_t px = (size_t)res.width * res.height;
        for (int i = 0; im && i < res.batch; i++) {
            im[i] = (ditrt_image){res.width, res.height, malloc(px * 3)};
            if (!im[i].rgb) { ditrt_images_free(im, i); im = NULL; break; }
            dt_image_from_float(res.pixels + (size_t)i * 3 * px, res.height, res.width, im[i].rgb);
        }
        free(res.pixels);
        if (!im) dt_fail(&err, DT_ENOMEM, "out of memory for the images");
        else { *images = im; *n = res.batch; }
    }
    set_msg(c, &err);
    return err.status;
}

void ditrt_images_free(ditrt_image *images, int n)
{
    for (int i = 0; images && i < n; i++) free(images[i].rgb);
    free(images);
}

ditrt_status ditrt_generate_video(ditrt_ctx *c, const ditrt_gen_params *params, ditrt_video **videos, int *n)
{
    if (!c) return DITRT_EINVAL;
    dt_err err = {0};
    if (!videos || !n) {
        dt_fail(&err, DT_EINVAL, "ditrt_generate_video: videos and n must not be NULL");
        set_msg(c, &err);
        return err.status;
    }
    *videos = NULL;
    *n = 0;
    dt_gen_result res;
    if (run(c, params, 1, &res, &err) == DT_OK) {
        ditrt_video *v = calloc((size_t)res.batch, sizeof *v);
        size_t px = (size_t)res.width * res.height, F = (size_t)res.frames;
        for (int i = 0; v && i < res.batch; i++) {
            v[i] = (ditrt_video){res.frames, res.width, res.height, malloc(F * px * 3)};
            if (!v[i].rgb) { ditrt_videos_free(v, i); v = NULL; break; }
            for (size_t f = 0; f < F; f++)
                dt_image_from_float(res.pixels + ((size_t)i * F + f) * 3 * px, res.height, res.width, v[i].rgb + f * px * 3);
        }
        free(res.pixels);
        if (!v) dt_fail(&err, DT_ENOMEM, "out of memory for the videos");
        else { *videos = v; *n = res.batch; }
    }
    set_msg(c, &err);
    return err.status;
}

void ditrt_videos_free(ditrt_video *videos, int n)
{
    for (int i = 0; videos && i < n; i++) free(videos[i].rgb);
    free(videos);
}

int ditrt_solver_count(void) { return dt_scheduler_solver_count(); }
const char *ditrt_solver_name(int i) { return i >= 0 && i < dt_scheduler_solver_count() ? dt_scheduler_solver_name(i) : NULL; }
const char *ditrt_solver_alias(int i) { return i >= 0 && i < dt_scheduler_solver_count() ? dt_scheduler_solver_alias(i) : NULL; }
