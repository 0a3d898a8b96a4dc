/* The PixArt text-to-image pipeline (diffusers PixArtAlphaPipeline / PixArtSigmaPipeline):
 * prompt -> T5 -> CFG sampling loop over the transformer with the folder's scheduler ->
 * VAE decode -> float RGB in [-1, 1] (before VaeImageProcessor.postprocess), as diffusers
 * computes it step by step; dt_image_from_float (image.h) makes 8-bit RGB of it.
 *
 * dt_pipeline_load() prepares the transformer, VAE, tokenizer and scheduler once. The T5
 * encoder is loaded per generation and freed before sampling unless keep_text_encoder is
 * set (it is the largest component). A pipeline is used by one thread at a time. */
#ifndef DT_PIPELINE_H
#define DT_PIPELINE_H
#include <stdint.h>
#include "runtime/core/tensor.h"

typedef struct {
    const char *model_dir;
    dt_dtype dtype;      /* transformer + VAE GEMM inputs: DT_F32 or DT_BF16 */
    dt_dtype text_dtype; /* T5 */
    int threads;         /* 0: all cores */
    int keep_text_encoder;
    const char *solver;  /* scheduler class to use with the folder's config (NULL: the folder's) */
    int karras;          /* use_karras_sigmas=True (solvers that have it) */
    const char *solver_schedule;   /* USF per-step schedule JSON (schedulers/usf.c) or NULL; fixes the steps */
    const char *solver_statistics; /* DPM-Solver-v3 statistics for it, or NULL */
    struct dt_quantizer *quant; /* transformer linears through this quantizer (runtime/plans/quantize.h): calibration or a plan; NULL: float */
    /* OMS-DPM zoo: more transformers sharing this pipeline's VAE, text encoder and noise
     * schedule (model or transformer folders); zoo member 0 is the pipeline's own. A folder
     * holding a quantization plan (plan.json) stands for this pipeline's transformer built
     * through that plan: timestep-dependent quantization is a model schedule over such members. */
    const char *const *zoo;
    int nzoo;
} dt_pipeline_config;

struct pixart_model;
struct dt_attn_plan;
typedef int (*dt_progress_fn)(int step, int steps, double seconds, void *user);

typedef struct {
    const char *prompt, *negative_prompt;
    int width, height;  /* 0: native */
    int steps, batch;
    float cfg;
    uint64_t seed;
    int vae_tiling, resolution_binning, clean_caption, max_sequence_length, force;
    dt_progress_fn progress; /* may be NULL; non-zero return cancels */
    void *progress_user;
    const volatile int *cancel; /* polled between steps; may be NULL */
    const struct dt_attn_plan *attn_plan; /* DiTFastAttn plan (runtime/plans/fastattn.h) or NULL; borrowed */
    /* Attention-plan calibration: when set, called before each step's transformer forward
     * with the model, that forward's inputs (const pixart_inputs *) and the step arena
     * (dt_arena *, reset again afterwards). */
    dt_status (*step_hook)(void *user, int step, struct pixart_model *tr, const void *inputs, void *arena, dt_err *err);
    void *step_hook_user;
    float eta;  /* DDIM's eta (noise from the seed's generator); other solvers ignore it */
    /* OMS-DPM model schedule: the zoo member of each model evaluation (one per timestep),
     * or NULL (member 0 throughout). */
    const int *model_ids;
    int n_model_ids;
} dt_gen_request;

typedef struct {
    int batch, width, height;  /* what was produced (after binning, the requested size) */
    float *image;              /* [batch, 3, height, width], decoded, in about [-1, 1]; caller frees */
    int prompt_truncated;      /* the prompt had more tokens than max_sequence_length */
    int negative_truncated;
    int max_sequence_length;
    double seconds_text, seconds_sampling, seconds_decode;
} dt_gen_result;

typedef struct dt_pipeline dt_pipeline;

dt_status dt_pipeline_load(const dt_pipeline_config *cfg, dt_pipeline **out, dt_err *err);
void dt_pipeline_free(dt_pipeline *p);
/* Native output size (transformer sample_size x VAE upscale) and the size multiple. */
int dt_pipeline_native_size(const dt_pipeline *p);
int dt_pipeline_size_multiple(const dt_pipeline *p);
const char *dt_pipeline_solver_name(const dt_pipeline *p);
/* A one-line warning about the solver's settings, or NULL (dt_pipeline_parts_solver_warning). */
const char *dt_pipeline_solver_warning(const dt_pipeline *p);
/* Zoo members, the pipeline's own transformer included. */
int dt_pipeline_zoo_size(const dt_pipeline *p);
/* Model evaluations a generation of `steps` steps makes (the scheduler's timestep count). */
dt_status dt_pipeline_evaluations(dt_pipeline *p, int steps, int *evals, dt_err *err);

/* Checks a request (sizes, steps, cfg, memory) without running anything. */
dt_status dt_pipeline_check(dt_pipeline *p, const dt_gen_request *r, dt_err *err);
dt_status dt_pipeline_generate(dt_pipeline *p, const dt_gen_request *r, dt_gen_result *res, dt_err *err);

/* diffusers' default request: 20 steps, cfg 4.5, batch 1, binning and caption cleaning on. */
dt_gen_request dt_gen_request_default(void);

#endif
