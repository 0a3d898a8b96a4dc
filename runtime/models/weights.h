/* Where a model's weights come from while it is built: a safetensors store, or a seeded
 * random generator (benchmarks at real model sizes with no file). Either way the model
 * asks for one named tensor of a given shape, as f32, into a buffer it owns. */
#ifndef DT_WEIGHTS_H
#define DT_WEIGHTS_H
#include "runtime/core/safetensors.h"
#include "kernels/backend.h"

typedef struct dt_weight_source {
    /* Fills dst (product of shape floats) or fails naming the tensor. */
    dt_status (*read)(struct dt_weight_source *s, const char *name, int ndim, const int64_t *shape,
                      float *dst, dt_err *err);
    const dt_safetensors *st; /* file source */
    uint64_t rng;             /* random source state */
    float scale;              /* random source: uniform in [-scale, scale] */
    size_t file_bytes;        /* bytes read so far in the file's dtype */
    /* Optional: builds the linear layer `name` (its weight prefix, e.g.
     * "transformer_blocks.3.attn1.to_q" — the first of a fused group) instead of the backend's
     * float linear; a quantization plan substitutes int8 layers this way. NULL: float. */
    dt_status (*make_linear)(struct dt_weight_source *s, dt_backend *be, const char *name, const float *w,
                             const float *b, int in, int out, dt_act act, int m_hint, dt_dtype dt,
                             dt_linear **lin, dt_err *err);
    void *user; /* for make_linear */
    /* The kernel of the DiT blocks' self-attention built from this source (dit_block.h): AUTO
     * (0, the backend's own) unless a make_linear hook sets it (a quantization plan's int8
     * attention); the source of the VAE or text encoder never has it. */
    dt_attn_kernel self_attn;
    /* The staging block a layer's f32 weights are read into before the backend takes them:
     * kept and reused from layer to layer (dt_weights_stage), freed by dt_weights_close. */
    void *stage;
    size_t stage_bytes;
} dt_weight_source;

/* Checks that a file source holds `name` with this shape (a random source: always DT_OK);
 * loaders call it before sizing the buffer a read fills, so a config's sizes are checked
 * against the weights before anything is allocated from them. */
dt_status dt_weights_expect(const dt_weight_source *s, const char *name, int ndim, const int64_t *shape, dt_err *err);
dt_weight_source dt_weights_from_file(const dt_safetensors *st);
dt_weight_source dt_weights_random(uint64_t seed, float scale);
/* A staging block of at least `bytes`, owned by the source and valid until the next call or
 * dt_weights_close. Reusing one block spares each layer fresh pages (faults and zeroing were
 * most of a load's time); it is as large as the largest layer, as a block per layer was. */
float *dt_weights_stage(dt_weight_source *s, size_t bytes);
/* Frees the staging block; every source a loader made is closed once its model is built. */
void dt_weights_close(dt_weight_source *s);

#endif
