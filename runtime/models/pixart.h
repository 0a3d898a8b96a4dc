/* The PixArt-α / PixArt-Σ diffusion transformer (diffusers PixArtTransformer2DModel).
 *
 * pixart_load() reads config.json and the weights of a transformer folder, converts and
 * reorders every linear layer once (f32 or bf16 per the backend), and keeps nothing of
 * the file mapped. pixart_forward() runs one denoiser call on a batch (CFG is batch 2). */
#ifndef DT_PIXART_H
#define DT_PIXART_H
#include "runtime/core/arena.h"
#include "kernels/backend.h"
#include "weights.h"

typedef struct {
    int sample_size, patch_size, in_channels, out_channels;
    int num_layers, heads, head_dim, inner;      /* inner = heads * head_dim */
    int cross_attention_dim, caption_channels;
    int use_additional_conditions;
    float interpolation_scale, norm_eps;
} pixart_config;

/* Reads and validates `<dir>/config.json`, filling diffusers' defaults. */
dt_status pixart_config_load(const char *dir, pixart_config *cfg, dt_err *err);
/* PixArt-XL-2 at a latent sample_size (res/8), for benchmarks. */
pixart_config pixart_config_xl2(int sample_size);

typedef struct pixart_model pixart_model;

dt_status pixart_load(dt_backend *be, const char *dir, pixart_model **out, dt_err *err);
/* Builds a model from any weight source (a file or random numbers for benchmarks). */
dt_status pixart_create(dt_backend *be, const pixart_config *cfg, dt_weight_source *src,
                        pixart_model **out, dt_err *err);
void pixart_free(pixart_model *m);
const pixart_config *pixart_get_config(const pixart_model *m);
/* Routes every block's self-attention through `hook` (NULL: full attention), e.g. a
 * DiTFastAttn plan; the hook is not owned. */
struct dit_attn_hook;
void pixart_set_attn_hook(pixart_model *m, struct dit_attn_hook *hook);
/* Partial forwards (attention-plan calibration, runtime/fastattn_calib.c): blocks before
 * `from` are skipped, the residual stream [B*N, C] entering block `from` read from `load`
 * (from > 0); the stream entering block `save_at` is copied to `save` when save is set.
 * NULL: plain forwards. Not owned. */
typedef struct { int from; const float *load; int save_at; float *save; } pixart_resume;
void pixart_set_resume(pixart_model *m, const pixart_resume *r);
int64_t pixart_param_count(const pixart_config *cfg);

typedef struct {
    const dt_tensor *hidden_states;         /* [B, in_channels, H, W] f32 */
    const dt_tensor *encoder_hidden_states; /* [B, T, caption_channels] f32 */
    const float *timestep;                  /* [B] */
    const float *encoder_attention_mask;    /* [B, T] of 1/0, or NULL (all kept) */
    const float *resolution;                /* [B, 2] (height, width), when use_additional_conditions */
    const float *aspect_ratio;              /* [B, 1], when use_additional_conditions */
} pixart_inputs;

/* out: [B, out_channels, H, W] f32, caller-allocated. Scratch comes from `arena`, which
 * is reset by the caller between steps. */
dt_status pixart_forward(pixart_model *m, const pixart_inputs *in, dt_arena *arena, dt_tensor *out, dt_err *err);

/* The inputs of one forward read from a safetensors file with the diffusers names:
 * hidden_states, encoder_hidden_states, timestep ([B] or 0-d), encoder_attention_mask
 * (optional), resolution and aspect_ratio (required when use_additional_conditions). */
typedef struct {
    float *hs, *ehs, *t, *mask, *res, *ar;
    dt_tensor ths, tehs, tt, tmask, tres, tar;
    pixart_inputs in;
} pixart_input_file;
dt_status pixart_inputs_load(const char *file, const pixart_config *cfg, pixart_input_file *x, dt_err *err);
void pixart_inputs_free(pixart_input_file *x);

/* Matmul FLOPs of one forward (for the GEMM-floor ratio). */
double pixart_matmul_flops(const pixart_config *cfg, int batch, int h, int w, int text_len);

#endif
