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
#include "denoiser.h"

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
/* Partial forwards (attention-plan calibration): positions are blocks; the stream is
 * [B*N, C]. NULL: plain forwards. Not owned. */
typedef dt_denoiser_resume pixart_resume;
void pixart_set_resume(pixart_model *m, const pixart_resume *r);
int64_t pixart_param_count(const pixart_config *cfg);

/* hidden_states [B, in_channels, H, W]; resolution and aspect_ratio when use_additional_conditions. */
typedef dt_denoiser_inputs pixart_inputs;

/* out: [B, out_channels, H, W] f32, caller-allocated. Scratch comes from `arena`, which
 * is reset by the caller between steps. */
dt_status pixart_forward(pixart_model *m, const pixart_inputs *in, dt_arena *arena, dt_tensor *out, dt_err *err);

/* The inputs of one forward from a safetensors file (dt_denoiser_inputs_load for this config). */
typedef dt_denoiser_input_file pixart_input_file;
dt_status pixart_inputs_load(const char *file, const pixart_config *cfg, pixart_input_file *x, dt_err *err);
#define pixart_inputs_free dt_denoiser_inputs_free

/* The registry's entry (denoiser.c). */
extern const dt_denoiser_class dt_pixart_class;

/* Matmul FLOPs of one forward (for the GEMM-floor ratio). */
double pixart_matmul_flops(const pixart_config *cfg, int batch, int h, int w, int text_len);

#endif
