/* The DiT block diffusers builds as BasicTransformerBlock with norm_type "ada_norm_single"
 * (PixArt's blocks, and Latte's spatial and temporal blocks): adaLN-modulated
 * self-attention, optional cross-attention to the caption (no norm before it), and an
 * adaLN-modulated GELU-tanh MLP, each added back through a (gated) residual.
 *
 * Self-attention goes through an optional hook so attention plans (DiTFastAttn) can replace
 * it per layer and step; dit_self_attention_full is the plain computation a hook may call. */
#ifndef DT_DIT_BLOCK_H
#define DT_DIT_BLOCK_H
#include "runtime/core/arena.h"
#include "layers.h"

typedef struct {
    int C, heads, head_dim;
    float eps;
    int cross;               /* has attn2 (cross-attention) */
    int tok_hint, cap_hint;  /* GEMM row-count hints: B*N and B*T */
    dt_dtype dtype;          /* GEMM input dtype of the block's linears */
} dit_block_shape;

typedef struct {
    float *sst;                 /* scale_shift_table [6, C] */
    dt_linear *qkv, *out1;      /* attn1: to_q|to_k|to_v fused, to_out.0 */
    dt_linear *q2, *kv2, *out2; /* attn2: to_q, to_k|to_v fused, to_out.0 (NULL without) */
    dt_linear *fc1, *fc2;       /* ff.net.0.proj (GELU-tanh fused), ff.net.2 */
    dt_attn_kernel self_attn;   /* attn1's kernel (the weight source's choice; AUTO: the backend's
                                 * own `attention`, else its attention_with; cross-attention keeps AUTO) */
} dit_block;

/* prefix: e.g. "transformer_blocks.3". A source asking for a self-attention kernel other than
 * AUTO (src->self_attn) needs a backend whose attention_with runs it, else this fails. */
dt_status dit_block_load(dt_backend *be, dt_weight_source *src, const char *prefix, const dit_block_shape *s,
                         dit_block *b, dt_err *err);
void dit_block_free(dt_backend *be, dit_block *b);

/* Activation buffers shared by the blocks of one forward (sized for the largest). */
typedef struct {
    dt_tensor xn, qkv, ao, o, kv, ff; /* [BN,C] [BN,3C] [BN,C] [BN,C] [BT,2C] [BN,4C] */
    float *mod;                       /* [B, 6C] per-sample shift/scale/gate */
} dit_scratch;
dt_status dit_scratch_alloc(dt_arena *a, int64_t BN, int64_t BT, int B, int C, dit_scratch *s, dt_err *err);

typedef struct {
    dt_backend *be;
    const dit_block *blk;
    int layer;               /* block index (hooks key plans on it) */
    int B, N, C, heads;      /* B sequences of N tokens */
    float scale;             /* 1/sqrt(head_dim) */
    const dt_tensor *xn;     /* [B*N, C]: normalized, modulated input */
    dt_tensor *out;          /* [B*N, C]: to_out(attention) */
    dit_scratch *s;
    dt_arena *arena;
} dit_self_attn_args;

typedef struct dit_attn_hook {
    dt_status (*self_attn)(struct dit_attn_hook *h, const dit_self_attn_args *a, dt_err *err);
} dit_attn_hook;

dt_status dit_self_attention_full(const dit_self_attn_args *a, dt_err *err);
/* attn1's attention (q, k, v, out as in the backend's `attention`; window < 0: full, else banded)
 * with the block's kernel (a->blk->self_attn): what dit_self_attention_full and hooks call. */
dt_status dit_self_attention_core(const dit_self_attn_args *a, const dt_tensor *q, const dt_tensor *k,
                                  const dt_tensor *v, int window, dt_tensor *out, dt_err *err);

typedef struct {
    dt_backend *be;
    int layer;
    const float *t6;                /* [B, 6C]: adaLN-single output, one row per sequence */
    int B, N, T;                    /* B sequences of N tokens; T caption tokens */
    dt_tensor *x;                   /* [B*N, C] residual stream, updated in place */
    const dt_tensor *ctx;           /* [B*T, C] projected caption (cross blocks) */
    const dt_attn_bias *cross_bias; /* caption key mask */
    dit_scratch *s;
    dt_arena *arena;
    dit_attn_hook *hook;            /* NULL: full self-attention */
} dit_block_args;

dt_status dit_block_forward(const dit_block *blk, const dit_block_shape *shape, const dit_block_args *a, dt_err *err);

/* A [B, C] view into rows of length `stride` (the chunks of a [B, k*C] table). */
dt_tensor dit_rowvec(float *data, int64_t B, int64_t C, int64_t stride);

#endif
