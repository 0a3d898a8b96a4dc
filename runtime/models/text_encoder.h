/* One text-encoder interface over the encoders pipelines use, so that a pipeline can run T5
 * (PixArt, Latte) or CLIP (Stable Diffusion, SDXL) without per-model branches. The kind comes
 * from the folder's config.json: model_type "clip_text_model" or architectures naming
 * CLIPTextModel / CLIPTextModelWithProjection give CLIP (clip_text.h); anything else is read
 * as T5 (t5.h), which keeps T5's own checks and messages. Every call behaves exactly as the
 * wrapped model's. */
#ifndef DT_TEXT_ENCODER_H
#define DT_TEXT_ENCODER_H
#include "runtime/core/arena.h"
#include "kernels/backend.h"

typedef enum { DT_TEXT_ENCODER_T5 = 1, DT_TEXT_ENCODER_CLIP = 2 } dt_text_encoder_kind;

typedef struct {
    dt_text_encoder_kind kind;
    int vocab_size;
    int hidden_size;       /* width of last_hidden_state (and of every hidden state) */
    int pooled_size;       /* width of `pooled` (CLIP: text_embeds with a projection, else
                              pooler_output); 0: none (T5) */
    int projection;        /* 1: pooled is text_embeds (CLIPTextModelWithProjection) */
    int num_hidden_states; /* hidden states one may ask for: layers + 1 (CLIP); 0: only the last (T5) */
    int max_positions;     /* longest id row; 0: no limit (T5's relative positions) */
} dt_text_encoder_info;

/* Reads `<dir>/config.json` only (nothing is allocated from the weights). */
dt_status dt_text_encoder_probe(const char *dir, dt_text_encoder_info *info, dt_err *err);

typedef struct dt_text_encoder dt_text_encoder;

/* Whether an encoder of this kind (from dt_text_encoder_probe of dir) takes `weights` on a backend
 * computing in `compute`: the compute dtype always, DT_I8 (weight-only int8) for T5 only; else a
 * one-line DT_EUNSUPPORTED error naming dir. */
dt_status dt_text_encoder_check_weights(const char *dir, const dt_text_encoder_info *info, dt_dtype weights,
                                        dt_dtype compute, dt_err *err);
/* weights: be's compute dtype, or DT_I8 for a T5 encoder's weight-only int8 linears and embedding
 * (t5_load; checked by dt_text_encoder_check_weights). */
dt_status dt_text_encoder_load(dt_backend *be, const char *dir, dt_dtype weights, dt_text_encoder **out, dt_err *err);
void dt_text_encoder_free(dt_text_encoder *e);
const dt_text_encoder_info *dt_text_encoder_get_info(const dt_text_encoder *e);

/* What to compute; NULL: not wanted. All f32, caller-allocated, rows B·N (pooled: B). */
typedef struct {
    float *last_hidden_state; /* [B, N, hidden]: the model's output (T5: prompt_embeds) */
    float *hidden;            /* [B, N, hidden]: hidden_states[-hidden_from_end] (CLIP only) */
    int hidden_from_end;      /* 1: last layer, 2: penultimate ...; diffusers takes SD 1.x's
                                 clip_skip as clip_skip + 1 with hidden_final_norm, SDXL's as
                                 clip_skip + 2 (2 by default) without */
    int hidden_final_norm;    /* 1: the final layer norm applied to `hidden` */
    float *pooled;            /* [B, pooled_size] (CLIP only) */
} dt_text_encoder_outputs;

/* ids [B, N]; mask [B, N] of 1/0 or NULL (T5: all kept; CLIP: causal mask only). Asking a
 * T5 encoder for `hidden` or `pooled` is an error naming what it lacks. */
dt_status dt_text_encoder_encode(dt_text_encoder *e, const int32_t *ids, const float *mask, int B, int N, dt_arena *arena,
                                 const dt_text_encoder_outputs *out, dt_err *err);

#endif
