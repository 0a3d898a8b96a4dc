/* The T5 v1.1 text encoder (transformers T5EncoderModel, feed_forward_proj "gated-gelu"),
 * as the PixArt pipelines call it: text_encoder(input_ids, attention_mask=mask)[0].
 *
 * t5_load() reads config.json and model.safetensors (or the shards listed by
 * model.safetensors.index.json) of a text_encoder folder; every linear is converted once
 * to the backend's compute dtype (f32 or bf16, no biases) or to int8 weights (see t5_load), the
 * token embedding is kept in that dtype, RMS-norm weights and the relative-position table in f32. File pages are
 * released as each tensor is converted, so loading holds one copy of the weights.
 * t5_encode() runs the encoder on a batch of padded id rows: the relative position bias
 * (bidirectional buckets from layer 0's table) is shared by every layer, padded keys get
 * the additive mask (1 - mask) * finfo(f32).min as transformers builds it, attention is
 * unscaled, norms are T5LayerNorm (RMS, f32 statistics). */
#ifndef DT_T5_H
#define DT_T5_H
#include "runtime/core/arena.h"
#include "kernels/backend.h"
#include "weights.h"

typedef struct {
    int vocab_size, d_model, d_kv, d_ff, num_layers, num_heads;
    int num_buckets, max_distance; /* relative_attention_num_buckets / _max_distance */
    float eps;                     /* layer_norm_epsilon */
} t5_config;

/* Reads and validates `<dir>/config.json` (transformers' T5Config defaults where absent). */
dt_status t5_config_load(const char *dir, t5_config *cfg, dt_err *err);
/* The encoder of t5-v1_1-xxl (PixArt's text encoder), for benchmarks. */
t5_config t5_config_xxl(void);
int64_t t5_param_count(const t5_config *cfg);
/* Matmul FLOPs of one encode of B rows of N tokens (for the GEMM-floor ratio). */
double t5_matmul_flops(const t5_config *cfg, int B, int N);

typedef struct t5_model t5_model;

/* weights: the linears' and the embedding's dtype, be's compute dtype or DT_I8: weight-only int8
 * (symmetric per output channel / embedding row, dequantized to f32 per call; f32 compute on a
 * backend that supports(DT_OP_LINEAR, DT_I8), else a one-line DT_EUNSUPPORTED error). */
dt_status t5_load(dt_backend *be, const char *dir, dt_dtype weights, t5_model **out, dt_err *err);
/* Builds a model from any weight source (a file, or random numbers for benchmarks);
 * m_hint is the row count B*N most calls will use. */
dt_status t5_create(dt_backend *be, const t5_config *cfg, dt_weight_source *src, int m_hint, dt_dtype weights,
                    t5_model **out, dt_err *err);
void t5_free(t5_model *m);
const t5_config *t5_get_config(const t5_model *m);

/* ids [B, N] (each in [0, vocab_size)), mask [B, N] of 1/0 or NULL (all kept);
 * out [B, N, d_model] f32, caller-allocated. Scratch comes from `arena`. */
dt_status t5_encode(t5_model *m, const int32_t *ids, const float *mask, int B, int N, dt_arena *arena,
                    float *out, dt_err *err);

/* transformers T5Attention._relative_position_bucket(bidirectional=True) for one
 * relative position (key - query), computed in f32 as torch does. */
int t5_relative_position_bucket(int relative_position, int num_buckets, int max_distance);

#endif
