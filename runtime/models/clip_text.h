/* CLIP text encoders as the Stable Diffusion pipelines call them (transformers 5,
 * models/clip/modeling_clip.py): CLIPTextModel (SD 1.x/2.x text_encoder, SDXL text_encoder)
 * and CLIPTextModelWithProjection (SDXL text_encoder_2: pooled text_embeds).
 *
 * clip_text_load() reads config.json and model.safetensors (or its shards) of a text_encoder
 * folder; weights are named text_model.* (files saved by transformers 4, and every
 * WithProjection file) or without the prefix (CLIPTextModel saved by transformers 5).
 * Linears go through the backend in its compute dtype (f32 or bf16), with their biases;
 * embeddings and layer norms stay f32. Projection models are those whose config lists
 * "CLIPTextModelWithProjection" in architectures.
 * clip_text_encode() runs a batch of padded id rows: token + position embeddings, pre-LN
 * encoder layers (causal self-attention scaled by head_dim^-0.5, plus the attention_mask's
 * padded keys when a mask is given; MLP with quick_gelu or exact gelu), final layer norm.
 * Pooling (pooler_output, and text_embeds = text_projection(pooled)): the row of the largest
 * id when config eos_token_id is 2 (the legacy configs SD/SDXL ship), else of the first
 * eos_token_id (row 0 when there is none), as transformers 5 does.
 * Activations are read and written on the host (the CPU backend), as in t5.c. */
#ifndef DT_CLIP_TEXT_H
#define DT_CLIP_TEXT_H
#include "runtime/core/arena.h"
#include "kernels/backend.h"
#include "weights.h"

typedef enum { CLIP_ACT_QUICK_GELU = 0, CLIP_ACT_GELU } clip_act;

typedef struct {
    int vocab_size, hidden_size, intermediate_size, num_layers, num_heads, max_positions;
    int projection_dim; /* 0: CLIPTextModel (no text_projection) */
    int eos_token_id;
    clip_act act;
    float eps; /* layer_norm_eps */
} clip_text_config;

/* Reads and validates `<dir>/config.json` (CLIPTextConfig's defaults where absent). Limits:
 * vocab_size <= 2^22, hidden_size <= 16384 (a multiple of num_attention_heads <= 256),
 * intermediate_size <= 65536, num_hidden_layers <= 256, max_position_embeddings <= 4096,
 * projection_dim <= 16384. */
dt_status clip_text_config_load(const char *dir, clip_text_config *cfg, dt_err *err);

typedef struct clip_text_model clip_text_model;

dt_status clip_text_load(dt_backend *be, const char *dir, clip_text_model **out, dt_err *err);
/* From any weight source; prefix is "text_model." or "" (see above); m_hint the usual rows. */
dt_status clip_text_create(dt_backend *be, const clip_text_config *cfg, dt_weight_source *src, const char *prefix,
                           int m_hint, clip_text_model **out, dt_err *err);
void clip_text_free(clip_text_model *m);
const clip_text_config *clip_text_get_config(const clip_text_model *m);

/* What to compute; every pointer may be NULL (not wanted), all f32, caller-allocated. */
typedef struct {
    float *last_hidden_state;   /* [B, N, hidden]: final layer norm of the last layer */
    float *hidden;              /* [B, N, hidden]: hidden_states[-hidden_from_end] */
    int hidden_from_end;        /* 1: last layer (before the final norm), 2: penultimate, ...,
                                   num_layers + 1: the embeddings */
    int hidden_final_norm;      /* 1: the final layer norm applied to `hidden` (SD 1.x clip_skip) */
    float *pooled;              /* [B, hidden]: pooler_output */
    float *text_embeds;         /* [B, projection_dim]: projection models only */
} clip_text_outputs;

/* ids [B, N] in [0, vocab_size), N <= max_position_embeddings; mask [B, N] of 1/0 or NULL
 * (causal mask only, as the SD pipelines call it). Scratch comes from `arena`. */
dt_status clip_text_encode(clip_text_model *m, const int32_t *ids, const float *mask, int B, int N, dt_arena *arena,
                           const clip_text_outputs *out, dt_err *err);

#endif
