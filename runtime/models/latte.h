/* The Latte video diffusion transformer (diffusers LatteTransformer3DModel).
 *
 * Video latents [B, C, F, H, W]. Each layer runs a spatial DiT block (self-attention over
 * one frame's patches, cross-attention to the caption) on B·F sequences, then a temporal
 * block (self-attention over one patch's frames, no caption) on B·N sequences; the temporal
 * sin-cos position embedding is added before the first temporal block when F > 1.
 * Frames: 1 ≤ F ≤ video_length; F < video_length uses the first F rows of the table (what
 * a model configured with video_length F has; diffusers itself only accepts F = video_length).
 * A caption mask [B, T] masks the keys of every frame of its sample, as PixArt does. */
#ifndef DT_LATTE_H
#define DT_LATTE_H
#include "runtime/core/arena.h"
#include "kernels/backend.h"
#include "weights.h"
#include "denoiser.h"

typedef struct {
    int sample_size, patch_size, in_channels, out_channels;
    int num_layers, heads, head_dim, inner;   /* inner = heads * head_dim */
    int caption_channels, video_length;
    float interpolation_scale, norm_eps;
} latte_config;

/* Reads and validates `<dir>/config.json` (diffusers' defaults for absent fields). */
dt_status latte_config_load(const char *dir, latte_config *cfg, dt_err *err);
/* Latte-1 (maxin-cn/Latte-1) at a latent sample_size (res/8), for benchmarks. */
latte_config latte_config_1(int sample_size);
int64_t latte_param_count(const latte_config *cfg);
/* Matmul FLOPs of one forward (for the GEMM-floor ratio). */
double latte_matmul_flops(const latte_config *cfg, int batch, int frames, int h, int w, int text_len);

typedef struct latte_model latte_model;
dt_status latte_load(dt_backend *be, const char *dir, latte_model **out, dt_err *err);
dt_status latte_create(dt_backend *be, const latte_config *cfg, dt_weight_source *src, latte_model **out, dt_err *err);
void latte_free(latte_model *m);
const latte_config *latte_get_config(const latte_model *m);
/* Self-attention hook (attention plans, runtime/plans/fastattn.h) for every block, or NULL. The
 * hook sees spatial block i as layer i and temporal block i as layer num_layers + i (an
 * attention plan's row order); the temporal batch is [B, N] sequences of F frames. */
struct dit_attn_hook;
void latte_set_attn_hook(latte_model *m, struct dit_attn_hook *hook);
/* Partial forwards (attention-plan calibration), in execution order: block e = 2i is spatial
 * block i, e = 2i+1 temporal block i. Blocks before `from` are skipped, the stream entering
 * block `from` (B·F·N·C floats; frame order before a spatial block, token order before a
 * temporal one) read from `load` (from > 0); the stream entering block `save_at` is copied
 * to `save` when save is set. NULL: plain forwards. Not owned. */
typedef dt_denoiser_resume latte_resume;
void latte_set_resume(latte_model *m, const latte_resume *r);

/* hidden_states [B, in_channels, F, H, W]; no micro-conditions (resolution/aspect_ratio ignored). */
typedef dt_denoiser_inputs latte_inputs;

/* out: [B, out_channels, F, H, W] f32, caller-allocated; scratch from `arena`. */
dt_status latte_forward(latte_model *m, const latte_inputs *in, dt_arena *arena, dt_tensor *out, dt_err *err);

/* Inputs of one forward from a safetensors file (dt_denoiser_inputs_load for this config). */
typedef dt_denoiser_input_file latte_input_file;
dt_status latte_inputs_load(const char *file, const latte_config *cfg, latte_input_file *x, dt_err *err);
#define latte_inputs_free dt_denoiser_inputs_free

/* The registry's entry (denoiser.c). */
extern const dt_denoiser_class dt_latte_class;

#endif
