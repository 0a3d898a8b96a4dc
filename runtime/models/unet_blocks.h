/* The pieces a UNet2DConditionModel is built from, as diffusers computes them (resnet.py
 * ResnetBlock2D with a time embedding, transformer_2d.py Transformer2DModel with
 * attention.py BasicTransformerBlock: LayerNorm + self-attention, LayerNorm + cross-attention,
 * LayerNorm + GEGLU feed-forward). Internal to unet.c: activations are NHWC [B, H, W, C]
 * (token rows [B·H·W, C]) in scratch buffers the caller sizes (unet_scratch). */
#ifndef DT_UNET_BLOCKS_H
#define DT_UNET_BLOCKS_H
#include "layers.h"
#include "unet_conv.h"

typedef struct {
    float *gamma, *beta; /* host [C] */
    int C;
} unet_gnorm;

typedef struct {
    int cin, cout;
    unet_gnorm n1, n2;
    unet_conv c1, c2, sc;     /* sc: 1x1 conv_shortcut when cin != cout */
    dt_linear *temb;          /* time_emb_proj: time_embed_dim -> cout */
} unet_resnet;

/* LayerNorm with affine as the backend's layernorm_modulate: y = LN(x)·(1 + scale) + shift
 * with scale = weight − 1 and shift = bias ([C] each, backend memory). */
typedef struct {
    float *scale, *shift;
} unet_lnorm;

typedef struct {
    unet_lnorm n1, n2, n3;
    dt_linear *qkv, *out1;          /* attn1: to_q|to_k|to_v fused (no bias), to_out.0 */
    dt_linear *q2, *kv2, *out2;     /* attn2: to_q, to_k|to_v fused over the context, to_out.0 */
    dt_linear *ff1, *ff2;           /* ff.net.0.proj (C -> 8C: GEGLU's value | gate), ff.net.2 (4C -> C) */
} unet_tblock;

typedef struct {
    int C, heads, depth;
    unet_gnorm norm;                /* GroupNorm, eps 1e-6 */
    dt_linear *proj_in, *proj_out;  /* Linear, or a 1x1 conv (use_linear_projection false) as the same GEGM */
    unet_tblock *blocks;
} unet_transformer;

/* What every block load needs. */
typedef struct {
    dt_backend *be;
    dt_weight_source *src;
    int groups;             /* norm_num_groups */
    int time_dim;           /* time_embed_dim */
    int cross;              /* cross_attention_dim */
    int linear_proj;        /* use_linear_projection */
    int tok_hint, cap_hint; /* GEMM row-count hints */
    dt_dtype dt;            /* GEMM/conv input dtype of the blocks */
} unet_loader;

dt_status unet_conv_load(const unet_loader *l, const char *prefix, int cin, int cout, int k, int stride, int pad_lo, int pad_hi,
                         dt_dtype dt, unet_conv *out, dt_err *err);
dt_status unet_gnorm_load(const unet_loader *l, const char *prefix, int C, unet_gnorm *n, dt_err *err);
void unet_gnorm_free(unet_gnorm *n);
dt_status unet_resnet_load(const unet_loader *l, const char *prefix, int cin, int cout, unet_resnet *r, dt_err *err);
void unet_resnet_free(dt_backend *be, unet_resnet *r);
dt_status unet_transformer_load(const unet_loader *l, const char *prefix, int C, int heads, int depth, unet_transformer *t,
                                dt_err *err);
void unet_transformer_free(dt_backend *be, unet_transformer *t);

/* Scratch of one forward: two stream buffers (a block's output may go to the other one), two
 * temporaries, and the transformer's token buffers; sizes in floats. */
typedef struct {
    float *slot[4];           /* [0], [1]: streams; [2]: normalized input; [3]: conv1 output */
    float *ts, *xn, *qkv, *ao, *o, *kv, *ff, *tp;
    size_t ff_rows;           /* rows per feed-forward chunk */
} unet_scratch;

/* The per-call context of the blocks. */
typedef struct {
    dt_backend *be;
    int groups;
    float eps;                   /* resnet norm_eps */
    int B, T;
    const dt_tensor *semb;       /* [B, time_dim]: SiLU(emb) */
    const dt_tensor *ctx;        /* [B, T, cross] */
    const dt_attn_bias *bias;    /* caption key mask, or NULL */
    unet_scratch *s;
} unet_run;

/* A stream tensor [B, H, W, C] in scratch slot `slot`. */
typedef struct {
    dt_tensor t;
    int slot;
} unet_act;

unet_act unet_act_in(unet_run *r, int slot, int64_t B, int64_t H, int64_t W, int64_t C);
/* ResnetBlock2D: x (stream) -> x (the other stream slot when channels change). */
dt_status unet_resnet_forward(unet_run *r, const unet_resnet *rn, unet_act *x, dt_err *err);
/* Transformer2DModel: x += proj_out(blocks(proj_in(GroupNorm(x)))), in place. */
dt_status unet_transformer_forward(unet_run *r, const unet_transformer *t, unet_act *x, dt_err *err);

#endif
