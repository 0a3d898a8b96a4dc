/* The Stable Diffusion U-Net (diffusers UNet2DConditionModel), as one more denoiser behind
 * denoiser.h: SD 1.x/2.x and SDXL layouts (CrossAttnDownBlock2D / DownBlock2D,
 * UNetMidBlock2DCrossAttn, CrossAttnUpBlock2D / UpBlock2D), the timestep embedding, and SDXL's
 * addition_embed_type "text_time" (pooled text_embeds and 6 time_ids per sample).
 *
 * unet_config_load() reads and validates config.json (sizes bounded before anything is sized
 * from them, one-line errors naming the field); unet_create() builds the model from a weight
 * source (convolutions and linear layers converted once by the backend); unet_forward() runs
 * one denoiser call. Activations are NHWC inside (convolutions, GroupNorm and the attention's
 * token rows want channels innermost), NCHW at the interface. Latent sizes are multiples of
 * 2^(number of downsamplers) (the info's patch_size).
 *
 * The U-Net has no DiT blocks an attention plan (DiTFastAttn) addresses: its info reports 0
 * spatial and 0 temporal layers, and its class has no attention hook or partial forwards. */
#ifndef DT_UNET_H
#define DT_UNET_H
#include "runtime/core/arena.h"
#include "kernels/backend.h"
#include "weights.h"
#include "denoiser.h"

/* Bounds on config sizes (README: limits), far above SDXL (3 blocks, 1280 channels, 10
 * transformer layers of 20 heads, 2048 cross-attention channels, 2816 added-condition dims). */
#define UNET_MAX_BLOCKS 8
#define UNET_MAX_CHANNELS 8192       /* block_out_channels, in/out_channels */
#define UNET_MAX_LAYERS 64           /* layers_per_block, transformer_layers_per_block */
#define UNET_MAX_HEADS 256           /* attention_head_dim (heads per block, as diffusers reads it) */
#define UNET_MAX_CROSS 65536         /* cross_attention_dim, projection_class_embeddings_input_dim */
#define UNET_MAX_TIME_DIM 65536      /* time_embedding_dim, addition_time_embed_dim */
#define UNET_MAX_SAMPLE 1024
#define UNET_TIME_IDS 6              /* SDXL micro-conditions per sample */

typedef enum { UNET_PLAIN = 0, UNET_CROSS = 1 } unet_block_kind;

typedef struct {
    int sample_size, in_channels, out_channels;
    int nblocks;
    int block_out_channels[UNET_MAX_BLOCKS];
    unet_block_kind down[UNET_MAX_BLOCKS], up[UNET_MAX_BLOCKS];
    int layers_per_block[UNET_MAX_BLOCKS];
    int transformer_layers[UNET_MAX_BLOCKS]; /* per down block; up blocks use it reversed */
    int heads[UNET_MAX_BLOCKS];              /* config "attention_head_dim" (diffusers' num_attention_heads) */
    int cross_attention_dim;
    int norm_num_groups;
    float norm_eps;
    int flip_sin_to_cos;
    float freq_shift;
    int downsample_padding;
    int use_linear_projection, upcast_attention;
    int time_embed_dim;                      /* time_embedding_dim, or 4 * block_out_channels[0] */
    int conv_in_kernel, conv_out_kernel;
    int text_time;                           /* addition_embed_type "text_time" */
    int addition_time_embed_dim;
    int projection_dim;                      /* projection_class_embeddings_input_dim */
    int text_embeds_dim;                     /* projection_dim - 6 * addition_time_embed_dim */
} unet_config;

/* Reads and validates <dir>/config.json. */
dt_status unet_config_load(const char *dir, unet_config *c, dt_err *err);
/* The bounds and consistency checks unet_config_load applies (what names the file: `what`). */
dt_status unet_config_validate(const unet_config *c, const char *what, dt_err *err);
/* Presets at a latent sample_size: SD 1.5 (860M parameters) and SDXL base (2.6G). */
unet_config unet_config_sd15(int sample_size);
unet_config unet_config_sdxl(int sample_size);
int64_t unet_param_count(const unet_config *c);

typedef struct unet_model unet_model;

dt_status unet_create(dt_backend *be, const unet_config *cfg, dt_weight_source *src, unet_model **out, dt_err *err);
void unet_free(unet_model *m);
const unet_config *unet_get_config(const unet_model *m);

/* in->hidden_states is the diffusers call's `sample` [B, in_channels, h, w] (h, w multiples of
 * 2^(nblocks-1)); encoder_hidden_states [B, T, cross_attention_dim]; timestep [B]; with
 * text_time, text_embeds [B, text_embeds_dim] and time_ids [B, 6]. The optional
 * encoder_attention_mask is applied as diffusers does ((1 - mask) * -10000 on the keys).
 * out [B, out_channels, h, w] f32, caller-allocated; scratch from the arena. */
dt_status unet_forward(unet_model *m, const dt_denoiser_inputs *in, dt_arena *arena, dt_tensor *out, dt_err *err);

/* Multiply-add FLOPs (x2) of the GEMMs and convolutions of one forward at a latent h x w. */
double unet_matmul_flops(const unet_config *c, int batch, int h, int w, int T);

/* The registry's entries (denoiser.c): one class, two presets ("sd15-unet", "sdxl-unet"). */
extern const dt_denoiser_class dt_unet_class;
extern const dt_denoiser_class dt_unet_sdxl_class;

#endif
