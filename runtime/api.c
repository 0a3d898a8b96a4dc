/* The public C API (include/ditrt.h) over the pipeline: opaque contexts, defaults by init
 * functions, a status and a per-context message for every failure. */
#include "ditrt.h"
#include "error.h"
#include "image.h"
#include "pipeline.h"
#include "pipeline_video.h"
#include "modeldir.h"
#include "fastattn.h"
#include "quantize.h"
#include "models/latte.h"
#include "../schedulers/scheduler.h"
#include <omp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct dit_ctx {
    dt_pipeline *p;
    dt_video_pipeline *vp; /* a video pipeline's context instead */
    int threads;
    dt_attn_plan plan; /* DiTFastAttn, when has_plan */
    int has_plan;
    atomic_int cancel;
    char msg[DITRT_ERRMSG_MAX];
};

static void set_msg(dit_ctx *c, const dt_err *e) { strcpy(c->msg, e->msg); }

void dit_ctx_params_init(dit_ctx_params *p)
{
    *p = (dit_ctx_params){0}; /* dtype, text_dtype NULL: the device's default */
}

static int parse_dtype(const char *s, dt_dtype *out)
{
    if (!s) *out = dt_backend_default_dtype(DT_DEV_CPU);
    else if (!strcmp(s, "bf16")) *out = DT_BF16;
    else if (!strcmp(s, "f32")) *out = DT_F32;
    else return 0;
    return 1;
}

ditrt_status dit_ctx_create(const dit_ctx_params *p, dit_ctx **out)
{
    dit_ctx *c = calloc(1, sizeof *c);
    *out = c;
    if (!c) return DITRT_ENOMEM;
    dt_err err = {0};
    dt_pipeline_config cfg = {.model_dir = p->model_dir, .threads = p->threads, .keep_text_encoder = p->keep_text_encoder,
                              .karras = p->karras};
    if (p->solver && !(cfg.solver = dt_scheduler_resolve_name(p->solver))) {
        dt_fail(&err, DT_EINVAL, "solver: unknown solver \"%s\" (ditrt txt2img --list-solvers lists them)", p->solver);
        set_msg(c, &err);
        return err.status;
    }
    char dir[4096];
    dt_err ignored = {0};
    int video = p->model_dir && dt_model_component_dir(p->model_dir, "transformer", dir, sizeof dir, &ignored) == DT_OK &&
                latte_is_model_dir(dir);
    if (!parse_dtype(p->dtype, &cfg.dtype)) dt_fail(&err, DT_EINVAL, "dtype: expected f32 or bf16, got \"%s\"", p->dtype);
    else if (!parse_dtype(p->text_dtype, &cfg.text_dtype)) dt_fail(&err, DT_EINVAL, "text_dtype: expected f32 or bf16, got \"%s\"", p->text_dtype);
    else if (p->attn_plan && dt_attn_plan_load(p->attn_plan, &c->plan, &err) == DT_OK) c->has_plan = 1;
    if (err.status == DT_OK) {
        c->threads = p->threads;
        if (p->threads > 0) omp_set_num_threads(p->threads);
        dt_quantizer qz;
        if (p->quant_dir && dt_quantizer_open_plan(p->quant_dir, &qz, &err) == DT_OK) cfg.quant = &qz;
        dt_video_pipeline_config vc = {.model_dir = p->model_dir, .dtype = cfg.dtype, .text_dtype = cfg.text_dtype,
                                       .threads = p->threads, .quant = cfg.quant, .solver = cfg.solver, .karras = cfg.karras};
        if (err.status == DT_OK && video) dt_video_pipeline_load(&vc, &c->vp, &err);
        else if (err.status == DT_OK) dt_pipeline_load(&cfg, &c->p, &err);
        if (cfg.quant) dt_quantizer_close_plan(&qz); /* the layers are built; the plan is no longer needed */
    }
    set_msg(c, &err);
    return err.status;
}

void dit_ctx_free(dit_ctx *c)
{
    if (!c) return;
    dt_pipeline_free(c->p);
    dt_video_pipeline_free(c->vp);
    if (c->has_plan) dt_attn_plan_free(&c->plan);
    free(c);
}

const char *dit_errmsg(const dit_ctx *c) { return c ? c->msg : "out of memory"; }

void dit_gen_params_init(dit_gen_params *p)
{
    dt_gen_request d = dt_gen_request_default();
    *p = (dit_gen_params){.negative_prompt = d.negative_prompt, .steps = d.steps, .cfg = d.cfg, .batch = d.batch,
                          .resolution_binning = d.resolution_binning, .clean_caption = d.clean_caption};
}

void dit_gen_params_init_video(dit_gen_params *p)
{
    dt_video_request d = dt_video_request_default();
    *p = (dit_gen_params){.negative_prompt = d.negative_prompt, .steps = d.steps, .cfg = d.cfg, .batch = d.batch,
                          .clean_caption = d.clean_caption};
}

void dit_cancel(dit_ctx *c)
{
    if (c) atomic_store(&c->cancel, 1);
}

/* The pipeline polls a plain int; mirror the atomic flag through the progress hook. */
typedef struct {
    dit_ctx *c;
    const dit_gen_params *p;
} hook;

static int progress_hook(int step, int steps, double seconds, void *user)
{
    hook *h = user;
    if (atomic_load(&h->c->cancel)) return 1;
    return h->p->progress ? h->p->progress(step, steps, seconds, h->p->progress_user) : 0;
}

/* A loaded context of the wanted kind, the cancel flag cleared and the threads set. */
static int begin(dit_ctx *c, int video, dt_err *err)
{
    if (!c->p && !c->vp) dt_fail(err, DT_EINVAL, "context: the model failed to load");
    else if (video && !c->vp) dt_fail(err, DT_EINVAL, "context: an image pipeline; use dit_generate");
    else if (!video && !c->p) dt_fail(err, DT_EINVAL, "context: a video pipeline; use dit_generate_video");
    else {
        atomic_store(&c->cancel, 0);
        if (c->threads > 0) omp_set_num_threads(c->threads); /* per calling thread in OpenMP */
        return 1;
    }
    set_msg(c, err);
    return 0;
}

ditrt_status dit_generate(dit_ctx *c, const dit_gen_params *p, dit_image **images, int *n)
{
    if (!c) return DITRT_EINVAL;
    *images = NULL;
    *n = 0;
    dt_err err = {0};
    if (!begin(c, 0, &err)) return err.status;
    hook h = {c, p};
    dt_gen_request r = {.prompt = p->prompt, .negative_prompt = p->negative_prompt, .width = p->width,
                        .height = p->height, .steps = p->steps, .batch = p->batch, .cfg = p->cfg, .seed = p->seed,
                        .vae_tiling = p->vae_tiling, .resolution_binning = p->resolution_binning,
                        .clean_caption = p->clean_caption, .max_sequence_length = p->max_sequence_length,
                        .force = p->force, .progress = progress_hook, .progress_user = &h, .eta = p->eta,
                        .attn_plan = c->has_plan ? &c->plan : NULL};
    dt_gen_result res;
    if (dt_pipeline_generate(c->p, &r, &res, &err) == DT_OK) {
        dit_image *im = calloc((size_t)res.batch, sizeof *im);
        size_t px = (size_t)res.width * res.height;
        for (int i = 0; im && i < res.batch; i++) {
            im[i] = (dit_image){res.width, res.height, malloc(px * 3)};
            if (!im[i].rgb) { dit_images_free(im, i); im = NULL; break; }
            dt_image_from_float(res.image + (size_t)i * 3 * px, res.height, res.width, im[i].rgb);
        }
        free(res.image);
        if (!im) dt_fail(&err, DT_ENOMEM, "out of memory for the images");
        else { *images = im; *n = res.batch; }
    }
    set_msg(c, &err);
    return err.status;
}

void dit_images_free(dit_image *images, int n)
{
    for (int i = 0; images && i < n; i++) free(images[i].rgb);
    free(images);
}

ditrt_status dit_generate_video(dit_ctx *c, const dit_gen_params *p, dit_video **videos, int *n)
{
    if (!c) return DITRT_EINVAL;
    *videos = NULL;
    *n = 0;
    dt_err err = {0};
    if (!begin(c, 1, &err)) return err.status;
    hook h = {c, p};
    dt_video_request r = {.prompt = p->prompt, .negative_prompt = p->negative_prompt, .width = p->width,
                          .height = p->height, .frames = p->frames, .steps = p->steps, .batch = p->batch, .cfg = p->cfg,
                          .seed = p->seed, .clean_caption = p->clean_caption, .force = p->force,
                          .progress = progress_hook, .progress_user = &h, .eta = p->eta,
                          .attn_plan = c->has_plan ? &c->plan : NULL};
    dt_video_result res;
    if (dt_video_pipeline_check(c->vp, &r, &err) == DT_OK && dt_video_pipeline_generate(c->vp, &r, &res, &err) == DT_OK) {
        dit_video *v = calloc((size_t)res.batch, sizeof *v);
        size_t px = (size_t)res.width * res.height, F = (size_t)res.frames;
        for (int i = 0; v && i < res.batch; i++) {
            v[i] = (dit_video){res.frames, res.width, res.height, malloc(F * px * 3)};
            if (!v[i].rgb) { dit_videos_free(v, i); v = NULL; break; }
            for (size_t f = 0; f < F; f++)
                dt_image_from_float(res.video + ((size_t)i * F + f) * 3 * px, res.height, res.width, v[i].rgb + f * px * 3);
        }
        free(res.video);
        if (!v) dt_fail(&err, DT_ENOMEM, "out of memory for the videos");
        else { *videos = v; *n = res.batch; }
    }
    set_msg(c, &err);
    return err.status;
}

void dit_videos_free(dit_video *videos, int n)
{
    for (int i = 0; videos && i < n; i++) free(videos[i].rgb);
    free(videos);
}
