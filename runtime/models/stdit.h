/* Open-Sora's STDiT (hpcaitech/Open-Sora v1.0 opensora/models/stdit/stdit.py; v1.1's STDiT
 * without x_mask is the same math), config.json "_class_name": "STDiT" holding the STDiT
 * constructor's arguments, weights under the repository's names (scripts/convert_opensora.py).
 *
 * Video latents [B, C, F, H, W]; the stream is [B, F·N, C] in frame order. Each block:
 * adaLN-single modulation (scale_shift_table + t_block(t)), spatial self-attention over each
 * frame's N patches of the modulated LayerNorm, temporal self-attention over each patch's F
 * frames of the raw stream (the temporal sin-cos table added before block 0), both gated by
 * gate_msa; cross-attention of every token to its sample's caption (masked keys dropped);
 * a modulated GELU-tanh MLP. Position tables are computed for the input's F, h, w (the
 * repository's model has them for its input_size only): 1 <= F <= input_size[0].
 *
 * Attention plans: spatial block i is row i, temporal block i row depth + i (execution
 * position 2i and 2i+1; the stream entering either is x in frame order, B·F·N·C floats).
 * The temporal hook call sees B·N sequences of F frames. */
#ifndef DT_STDIT_H
#define DT_STDIT_H
#include "runtime/core/arena.h"
#include "kernels/backend.h"
#include "weights.h"
#include "denoiser.h"

typedef struct {
    int frames, height, width;       /* input_size: native latent frames and size */
    int patch;                       /* patch_size (1, patch, patch) */
    int in_channels, out_channels;   /* out = 2·in with pred_sigma */
    int hidden, depth, heads, head_dim;
    int caption_channels, max_length; /* model_max_length: rows of y_embedder.y_embedding */
    float space_scale, time_scale;
} stdit_config;

dt_status stdit_config_load(const char *dir, stdit_config *cfg, dt_err *err);
/* STDiT-XL/2 (OpenSora-v1-HQ-16x512x512 at sample_size 64) at a latent sample_size. */
stdit_config stdit_config_xl2(int sample_size);
int64_t stdit_param_count(const stdit_config *cfg);
double stdit_matmul_flops(const stdit_config *cfg, int batch, int frames, int h, int w, int text_len);

typedef struct stdit_model stdit_model;
dt_status stdit_load(dt_backend *be, const char *dir, stdit_model **out, dt_err *err);
dt_status stdit_create(dt_backend *be, const stdit_config *cfg, dt_weight_source *src, stdit_model **out, dt_err *err);
void stdit_free(stdit_model *m);
const stdit_config *stdit_get_config(const stdit_model *m);
struct dit_attn_hook;
void stdit_set_attn_hook(stdit_model *m, struct dit_attn_hook *hook);
void stdit_set_resume(stdit_model *m, const dt_denoiser_resume *r);

/* out [B, out_channels, F, H, W] f32, caller-allocated; scratch from arena. A caption mask
 * row must keep at least one token (the repository's attention has no keys otherwise). */
dt_status stdit_forward(stdit_model *m, const dt_denoiser_inputs *in, dt_arena *arena, dt_tensor *out, dt_err *err);

dt_status stdit_inputs_load(const char *file, const stdit_config *cfg, dt_denoiser_input_file *x, dt_err *err);

extern const dt_denoiser_class dt_stdit_class;

#endif
