/* The text-to-image and text-to-video pipeline: prompt -> T5 -> CFG sampling loop over the
 * denoiser with the folder's scheduler -> VAE decode, frame chunk by frame chunk -> float RGB
 * in [-1, 1] (before VaeImageProcessor.postprocess; dt_image_from_float makes 8-bit RGB).
 * It computes what the diffusers pipeline named by model_index.json computes, step by step
 * (PixArtAlphaPipeline, PixArtSigmaPipeline, LattePipeline; OpenSoraPipeline, the Open-Sora
 * repository's sampling loop: runtime/models/denoiser.h's dt_pipeline_class says how they
 * differ, and a scheduler that reads the variance half gets the prompt rows'). An image is a video of zero frames: latents [B, C, h, w] for image
 * models, [B, C, F, h, w] for video models, one request and one loop for both.
 *
 * dt_pipeline_load() prepares the denoiser (and its OMS-DPM zoo), VAE, tokenizer and scheduler
 * once. The T5 encoder is loaded per generation and freed before sampling unless
 * keep_text_encoder is set (it is the largest component). dt_pipeline_check() validates a
 * request completely (sizes, frames, steps against the attention plan and the model
 * schedule, eta against the solver, memory) before any model work; dt_pipeline_generate()
 * checks the same first. A pipeline is used by one thread at a time. */
#ifndef DT_PIPELINE_H
#define DT_PIPELINE_H
#include <stdint.h>
#include "runtime/core/arena.h"
#include "runtime/core/tensor.h"
#include "runtime/models/denoiser.h"

typedef struct {
    const char *model_dir;
    dt_dtype dtype;      /* denoiser + VAE GEMM inputs: DT_F32 or DT_BF16 */
    dt_dtype text_dtype; /* T5 */
    int threads;         /* 0: all cores */
    int keep_text_encoder;
    const char *solver;  /* scheduler class to use with the folder's config (NULL: the folder's) */
    int karras;          /* use_karras_sigmas=True (solvers that have it) */
    const char *solver_schedule;   /* USF per-step schedule JSON (schedulers/usf.c) or NULL; fixes the steps */
    const char *solver_statistics; /* DPM-Solver-v3 statistics for it, or NULL */
    int clip_sample;     /* 0: the folder's config; 1: clip_sample on, 2: off (solvers that have it) */
    struct dt_quantizer *quant; /* denoiser linears through this quantizer (runtime/plans/quantize.h): calibration or a plan; NULL: float */
    /* OMS-DPM zoo: more denoisers sharing this pipeline's VAE, text encoder and noise
     * schedule (model or transformer folders of the same class, latents and captions); member
     * 0 is the pipeline's own. A folder holding a quantization plan (plan.json) stands for
     * this pipeline's denoiser built through that plan: timestep-dependent quantization is a
     * model schedule over such members. */
    const char *const *zoo;
    int nzoo;
    dt_device device;    /* the backend of every part (0: the CPU) */
    int device_index;    /* cuda:N */
    int tf32;            /* dtype f32 with TF32 GEMMs (the denoiser's and VAE's backend; CUDA only) */
    int text_dtype_auto; /* text_dtype not given: a T5 on a device takes the device's default dtype */
} dt_pipeline_config;

struct dt_attn_plan;
typedef int (*dt_progress_fn)(int step, int steps, double seconds, void *user);

/* Called before each step's denoiser forward with the model, that forward's inputs and the
 * step arena (reset again afterwards): attention-plan calibration. */
typedef dt_status (*dt_step_hook_fn)(void *user, int step, dt_denoiser *model, const dt_denoiser_inputs *inputs,
                                     dt_arena *arena, dt_err *err);

typedef struct {
    const char *prompt, *negative_prompt;
    int width, height;  /* 0: native */
    int frames;         /* video models: 1..max_frames, 0: max_frames; image models: 0 */
    int steps, batch;
    float cfg;
    uint64_t seed;
    int vae_tiling;           /* decode in overlapping tiles (bounded memory) */
    int resolution_binning;   /* where the pipeline class has bins (PixArt) */
    int clean_caption;
    int max_sequence_length;  /* 0: the pipeline's; a fixed-length pipeline (Latte) ignores it */
    int decode_chunk;         /* frames per VAE call; 0: the pipeline's (all / 14), smaller if memory is short */
    int force;                /* skip the memory check */
    dt_progress_fn progress;       /* per denoising step; may be NULL; non-zero return cancels */
    dt_progress_fn frame_progress; /* per decoded chunk (step = frames done); may be NULL */
    void *progress_user;
    const volatile int *cancel;    /* polled between steps and decoded chunks; may be NULL */
    const struct dt_attn_plan *attn_plan; /* DiTFastAttn plan (runtime/plans/fastattn.h; spatial and temporal rows for video models) or NULL; borrowed */
    dt_step_hook_fn step_hook;
    void *step_hook_user;
    float eta;  /* DDIM's eta (noise from the seed's generator, after the latents); only for DDIM */
    /* OMS-DPM model schedule: the zoo member of each model evaluation (one per timestep),
     * or NULL (member 0 throughout). */
    const int *model_ids;
    int n_model_ids;
    /* One item of a batch alone: only item item_index of `batch` is generated (one output),
     * from its slice of the batch's noise (latents and stochastic steps' noise) and with the
     * batch's caption handling, so it is the batch's item i computed on its own. */
    int one_item, item_index;
    /* One-line warnings about the request's settings (a size far from the trained one, a zoo
     * without a model schedule), called before sampling; may be NULL (the library prints
     * nothing itself). */
    void (*warning)(const char *line, void *user);
    void *warning_user;
    /* CLIP layers skipped from the end for the prompt's embeddings (diffusers' clip_skip: SD
     * hidden_states[-(c+1)] through the final norm, SDXL hidden_states[-(c+2)]); 0: none. */
    int clip_skip;
    /* SDXL's micro-conditioning (add_time_ids, pixels), as StableDiffusionXLPipeline's arguments:
     * original_size and target_size (height, width), 0 0: the generated size; crops_coords_top_left
     * (top, left), default 0 0. The negative_* are the unconditional rows' when both negative
     * sizes are given (their crop default 0 0), else those rows take the prompt's, as diffusers.
     * Pipelines without added time ids refuse any non-zero value. */
    int original_size[2], crops_coords_top_left[2], target_size[2];
    int negative_original_size[2], negative_crops_coords_top_left[2], negative_target_size[2];
} dt_gen_request;

typedef struct {
    int batch, frames, width, height; /* what was produced (frames 0 for images; after binning, the requested size) */
    float *pixels;             /* [batch, max(frames, 1), 3, height, width], decoded, in about [-1, 1]; caller frees */
    int prompt_truncated;      /* the prompt had more tokens than max_sequence_length */
    int negative_truncated;
    int max_sequence_length;
    int tokens;                /* denoiser tokens per frame of the generated (binned) size */
    double seconds_text, seconds_sampling, seconds_decode;
} dt_gen_result;

typedef struct dt_pipeline dt_pipeline;

dt_status dt_pipeline_load(const dt_pipeline_config *cfg, dt_pipeline **out, dt_err *err);
void dt_pipeline_free(dt_pipeline *p);
const dt_denoiser_info *dt_pipeline_denoiser_info(const dt_pipeline *p);
/* The text encoders' compute dtype as resolved at load (T5 on a device: the device's default
 * when none was given). */
dt_dtype dt_pipeline_text_dtype(const dt_pipeline *p);
/* Native output size (denoiser sample_size x VAE upscale) and the size multiple. */
int dt_pipeline_native_size(const dt_pipeline *p);
int dt_pipeline_size_multiple(const dt_pipeline *p);
/* Frames a generation can have: the video model's video_length, 0 for image models. */
int dt_pipeline_max_frames(const dt_pipeline *p);
const char *dt_pipeline_solver_name(const dt_pipeline *p);
/* A one-line warning about the solver's settings, or NULL (dt_pipeline_parts_solver_warning). */
const char *dt_pipeline_solver_warning(const dt_pipeline *p);
/* The steps a USF solver schedule fixes (its evaluations), 0 when the steps are free. */
int dt_pipeline_fixed_steps(dt_pipeline *p);
/* Zoo members, the pipeline's own denoiser included. */
int dt_pipeline_zoo_size(const dt_pipeline *p);
/* The pipeline class (model_index.json's _class_name): how it runs the denoiser (its CFG
 * channels, null caption; runtime/models/denoiser.h). */
const dt_pipeline_class *dt_pipeline_get_class(const dt_pipeline *p);
/* Model evaluations a generation of `steps` steps makes (the scheduler's timestep count). */
dt_status dt_pipeline_evaluations(dt_pipeline *p, int steps, int *evals, dt_err *err);

/* Checks a request completely without running any model. */
dt_status dt_pipeline_check(dt_pipeline *p, const dt_gen_request *r, dt_err *err);
dt_status dt_pipeline_generate(dt_pipeline *p, const dt_gen_request *r, dt_gen_result *res, dt_err *err);

/* diffusers' defaults: PixArt's pipelines (20 steps, cfg 4.5), LattePipeline's (50 steps,
 * cfg 7.5); batch 1, binning and caption cleaning on, native size and frames. */
dt_gen_request dt_gen_request_default(void);
dt_gen_request dt_gen_request_default_video(void);

#endif
