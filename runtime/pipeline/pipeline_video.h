/* The Latte text-to-video pipeline (diffusers LattePipeline): prompt -> T5 (120 tokens,
 * mask_feature) -> CFG sampling of video latents [B, C, F, h, w] over the Latte transformer
 * with the folder's scheduler -> per-frame VAE decode in bounded batches -> float RGB frames
 * in [-1, 1] (before postprocess_video; dt_image_from_float makes 8-bit RGB of each frame).
 *
 * What LattePipeline does and this follows: the text is encoded without a mask for the
 * transformer; with one video per prompt the embeddings are cut to the prompt's token count
 * (the negative to the same count), with several they keep 120 tokens and the prompt rows
 * are multiplied by their mask. Output channels beyond the latent ones (learned sigma,
 * out_channels = 2 · in_channels) are dropped before the scheduler step. Frames decode
 * independently, `decode_chunk` at a time (diffusers: 14). */
#ifndef DT_PIPELINE_VIDEO_H
#define DT_PIPELINE_VIDEO_H
#include <stdint.h>
#include "runtime/core/tensor.h"
#include "pipeline.h"

typedef struct {
    const char *model_dir;
    dt_dtype dtype;      /* transformer + VAE: DT_F32 or DT_BF16 */
    dt_dtype text_dtype; /* T5 */
    int threads;         /* 0: all cores */
    struct dt_quantizer *quant; /* transformer linears through this quantizer (runtime/plans/quantize.h): calibration or a plan; NULL: float */
    const char *solver;  /* scheduler class to use with the folder's config (NULL: the folder's), as in txt2img */
    int karras;          /* use_karras_sigmas=True (solvers that have it) */
} dt_video_pipeline_config;

typedef struct {
    const char *prompt, *negative_prompt;
    int width, height, frames; /* 0: native size / the model's video_length */
    int steps, batch;
    float cfg;
    uint64_t seed;
    int clean_caption;
    int decode_chunk;          /* frames per VAE call; 0: 14 (diffusers), smaller if memory is short */
    int force;                 /* skip the memory check */
    dt_progress_fn progress;       /* per denoising step; may be NULL; non-zero return cancels */
    dt_progress_fn frame_progress; /* per decoded frame (step = frames done); may be NULL */
    void *progress_user;
    const volatile int *cancel;
    const struct dt_attn_plan *attn_plan; /* DiTFastAttn plan with spatial and temporal layers (runtime/plans/fastattn.h) or NULL; borrowed */
    float eta;                 /* DDIM's eta (noise from the seed's generator, after the latents); other solvers ignore it */
    /* Called before each step's transformer forward with the model (struct latte_model *),
     * that forward's inputs (const latte_inputs *) and the step arena (calibration). */
    dt_status (*step_hook)(void *user, int step, void *model, const void *inputs, void *arena, dt_err *err);
    void *step_hook_user;
} dt_video_request;

typedef struct {
    int batch, frames, width, height;
    float *video;              /* [batch, frames, 3, height, width] in about [-1, 1]; caller frees */
    int prompt_truncated, negative_truncated;
    double seconds_text, seconds_sampling, seconds_decode;
} dt_video_result;

typedef struct dt_video_pipeline dt_video_pipeline;

dt_status dt_video_pipeline_load(const dt_video_pipeline_config *cfg, dt_video_pipeline **out, dt_err *err);
void dt_video_pipeline_free(dt_video_pipeline *p);
int dt_video_pipeline_native_size(const dt_video_pipeline *p);
int dt_video_pipeline_max_frames(const dt_video_pipeline *p);
const char *dt_video_pipeline_solver_name(const dt_video_pipeline *p);
const char *dt_video_pipeline_solver_warning(const dt_video_pipeline *p); /* as dt_pipeline_solver_warning */

/* LattePipeline's defaults: 50 steps, cfg 7.5, batch 1, caption cleaning on, native size and
 * video_length frames. */
dt_video_request dt_video_request_default(void);
/* Checks a request (sizes, frames, steps, cfg, memory) without running anything. */
dt_status dt_video_pipeline_check(dt_video_pipeline *p, const dt_video_request *r, dt_err *err);
dt_status dt_video_pipeline_generate(dt_video_pipeline *p, const dt_video_request *r, dt_video_result *res, dt_err *err);

#endif
