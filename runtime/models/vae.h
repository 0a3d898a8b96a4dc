/* The VAE of diffusers' AutoencoderKL. Decoder: post_quant_conv + Decoder (conv_in, mid block
 * of resnet / single-head attention / resnet, UpDecoderBlock2D blocks with nearest-2x
 * upsamplers, GroupNorm + SiLU + conv_out), matching diffusers 0.30.3 in f32 and, with a
 * bf16 backend, with bf16 convolution/linear/attention inputs (norms, sums and the two
 * latent-side convs stay f32).
 *
 * The API is NCHW as diffusers' is; inside, activations are NHWC (convolutions, GroupNorm
 * and the attention's token rows all want channels innermost), converted at the boundary.
 * Activations come from the caller's arena: one block sized by a planning pass over the
 * decode's allocate/free sequence, so buffers are reused and the peak is about two or
 * three of the largest activations, not the sum of them.
 * Encoder (optional, loaded with the decoder): conv_in, DownEncoderBlock2D blocks (resnets,
 * then a stride-2 conv after padding (0,1,0,1), except the last), the same mid block, GroupNorm +
 * SiLU + conv_out to 2·latent_channels (mean | logvar), quant_conv; same pool and dtypes. */
#ifndef DT_VAE_H
#define DT_VAE_H
#include "runtime/core/arena.h"
#include "kernels/backend.h"
#include "weights.h"

#define VAE_MAX_BLOCKS 8
/* Bounds on config sizes, checked before anything is sized from them (README: limits). */
#define VAE_MAX_CHANNELS 8192
#define VAE_MAX_LAYERS_PER_BLOCK 64
#define VAE_MAX_SAMPLE 16384

typedef struct {
    int in_channels, out_channels, latent_channels;
    int nblocks;                               /* len(block_out_channels) */
    int block_out_channels[VAE_MAX_BLOCKS];
    int layers_per_block, norm_num_groups;
    int sample_size;                           /* tile size in pixels for tiled decoding */
    int mid_block_add_attention, use_post_quant_conv;
    int use_quant_conv;
    float scaling_factor;
    int has_shift_factor;                      /* config shift_factor is a number (not null/absent) */
    float shift_factor;                        /* 0 when absent */
} vae_config;

typedef struct vae_model vae_model;

/* Reads <dir>/config.json; fails naming the field on an unsupported or malformed one. */
dt_status vae_config_load(const char *dir, vae_config *c, dt_err *err);
/* Builds the decoder from a weight source (names as diffusers saves them). */
dt_status vae_create(dt_backend *be, const vae_config *cfg, dt_weight_source *src, vae_model **out, dt_err *err);
/* The same, plus the encoder (encoder.*, quant_conv.*) when with_encoder. */
dt_status vae_create_ex(dt_backend *be, const vae_config *cfg, dt_weight_source *src, int with_encoder, vae_model **out,
                        dt_err *err);
typedef enum { VAE_ENCODER_NONE, VAE_ENCODER_IF_PRESENT, VAE_ENCODER_REQUIRED } vae_encoder_mode;
/* Loads the vae component folder (config.json + diffusion_pytorch_model[.safetensors|shards]):
 * the decoder, and the encoder when the file has "encoder.conv_in.weight" (a decoder-only
 * folder loads as before). vae_load_ex chooses: NONE skips the encoder, REQUIRED fails naming
 * the first missing encoder tensor. */
dt_status vae_load(dt_backend *be, const char *dir, vae_model **out, dt_err *err);
dt_status vae_load_ex(dt_backend *be, const char *dir, vae_encoder_mode enc, vae_model **out, dt_err *err);
void vae_free(vae_model *m);

const vae_config *vae_get_config(const vae_model *m);
float vae_scaling_factor(const vae_model *m);
float vae_shift_factor(const vae_model *m); /* 0 when the config has none */
int vae_upscale(const vae_model *m);        /* 2^(len(block_out_channels) - 1) */
int vae_has_encoder(const vae_model *m);

/* out [B, out_channels, s·h, s·w] = vae.decode(latent).sample for latent [B, latent_channels, h, w]
 * (already divided by scaling_factor), s = vae_upscale; both contiguous f32 NCHW. */
dt_status vae_decode(vae_model *m, const dt_tensor *latent, dt_arena *a, dt_tensor *out, dt_err *err);
/* The same with vae.enable_tiling(): latent tiles of sample_size/s with 25% overlap, decoded
 * one by one and blended exactly as AutoencoderKL.tiled_decode; a plain decode when the
 * latent fits one tile. Memory: one tile's activations plus two rows of decoded tiles. */
dt_status vae_decode_tiled(vae_model *m, const dt_tensor *latent, dt_arena *a, dt_tensor *out, dt_err *err);
/* Arena bytes either decode of a [B, latent_channels, h, w] latent takes (computed, nothing run). */
dt_status vae_decode_bytes(vae_model *m, int64_t B, int64_t h, int64_t w, int tiled, size_t *bytes, dt_err *err);

/* moments [B, 2·latent_channels, floor(H/s), floor(W/s)] = vae.encode(image).latent_dist.parameters
 * (quant_conv output: mean | logvar) for image [B, in_channels, H, W] in [-1, 1], H, W >= s;
 * both contiguous f32 NCHW. Fails when the model was loaded without its encoder. */
dt_status vae_encode(vae_model *m, const dt_tensor *image, dt_arena *a, dt_tensor *moments, dt_err *err);
/* mean [B, latent_channels, h, w] = scale · moments[:, :latent_channels] (latent_dist.mean, i.e.
 * .mode(); scale = scaling_factor gives img2img's initial latent, 1 the plain mean). */
dt_status vae_moments_mean(const vae_model *m, const dt_tensor *moments, float scale, dt_tensor *mean, dt_err *err);

#endif
