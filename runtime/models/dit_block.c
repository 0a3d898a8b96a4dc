#include "dit_block.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define LIN(l, x, y) DT_TRY(be->ops->linear_forward(be, (l), (x), (y), err))

static dt_tensor t2d(void *data, int64_t r, int64_t c) { int64_t s[2] = {r, c}; return dt_tensor_view(data, DT_F32, 2, s); }
static dt_tensor t3d(void *data, int64_t a, int64_t b, int64_t c) { int64_t s[3] = {a, b, c}; return dt_tensor_view(data, DT_F32, 3, s); }

dt_tensor dit_rowvec(float *data, int64_t B, int64_t C, int64_t stride)
{
    dt_tensor t = t2d(data, B, C);
    t.strides[0] = stride;
    return t;
}

dt_status dit_block_load(dt_backend *be, dt_weight_source *src, const char *prefix, const dit_block_shape *s,
                         dit_block *b, dt_err *err)
{
    int C = s->C;
    char p[4][192];
    const char *pp[3] = {p[0], p[1], p[2]};
#define PFX(k, fmt) snprintf(p[k], sizeof p[k], "%s." fmt, prefix)
    PFX(0, "scale_shift_table");
    DT_TRY(dt_load_param_dev(be, src, p[0], 2, (int64_t[]){6, C}, &b->sst, err));
    PFX(0, "attn1.to_q"); PFX(1, "attn1.to_k"); PFX(2, "attn1.to_v");
    dt_linear_spec qkv = {pp, 3, C, C, 1, DT_ACT_NONE, s->tok_hint, s->dtype};
    DT_TRY(dt_load_linear(be, src, &qkv, &b->qkv, err));
    PFX(0, "attn1.to_out.0");
    DT_TRY(dt_load_linear1(be, src, p[0], C, C, 1, DT_ACT_NONE, s->tok_hint, s->dtype, &b->out1, err));
    if (s->cross) {
        PFX(0, "attn2.to_q");
        DT_TRY(dt_load_linear1(be, src, p[0], C, C, 1, DT_ACT_NONE, s->tok_hint, s->dtype, &b->q2, err));
        PFX(0, "attn2.to_k"); PFX(1, "attn2.to_v");
        dt_linear_spec kv = {pp, 2, C, C, 1, DT_ACT_NONE, s->cap_hint, s->dtype};
        DT_TRY(dt_load_linear(be, src, &kv, &b->kv2, err));
        PFX(0, "attn2.to_out.0");
        DT_TRY(dt_load_linear1(be, src, p[0], C, C, 1, DT_ACT_NONE, s->tok_hint, s->dtype, &b->out2, err));
    }
    PFX(0, "ff.net.0.proj");
    DT_TRY(dt_load_linear1(be, src, p[0], C, 4 * C, 1, DT_ACT_GELU_TANH, s->tok_hint, s->dtype, &b->fc1, err));
    PFX(0, "ff.net.2");
    DT_TRY(dt_load_linear1(be, src, p[0], 4 * C, C, 1, DT_ACT_NONE, s->tok_hint, s->dtype, &b->fc2, err));
#undef PFX
    b->self_attn = src->self_attn;
    if (b->self_attn == DT_ATTN_KERNEL_INT8 && !(be->ops->attention_with && be->ops->supports(be, DT_OP_ATTENTION, DT_I8)))
        return dt_fail(err, DT_EUNSUPPORTED, "%s.attn1: int8 attention (the quantization plan's \"attention\") is not "
                       "supported by the %s backend", prefix, dt_backend_device_name(be->cfg.device));
    if (b->self_attn != DT_ATTN_KERNEL_AUTO && !be->ops->attention_with)
        return dt_fail(err, DT_EUNSUPPORTED, "%s.attn1: the %s backend has one attention kernel", prefix,
                       dt_backend_device_name(be->cfg.device));
    return DT_OK;
}

void dit_block_free(dt_backend *be, dit_block *b)
{
    void (*del)(dt_linear *) = be->ops->linear_destroy;
    del(b->qkv); del(b->out1); del(b->q2); del(b->kv2); del(b->out2); del(b->fc1); del(b->fc2);
    dt_free_param(be, b->sst);
    *b = (dit_block){0};
}

static dt_status alloc2(dt_arena *a, dt_tensor *t, int64_t r, int64_t c, dt_err *err)
{
    int64_t s[2] = {r, c};
    return dt_arena_tensor(a, t, DT_F32, 2, s, err);
}

dt_status dit_scratch_alloc(dt_arena *a, int64_t BN, int64_t BT, int B, int C, dit_scratch *s, dt_err *err)
{
    DT_TRY(alloc2(a, &s->xn, BN, C, err));
    DT_TRY(alloc2(a, &s->qkv, BN, 3 * C, err));
    DT_TRY(alloc2(a, &s->ao, BN, C, err));
    DT_TRY(alloc2(a, &s->o, BN, C, err));
    DT_TRY(alloc2(a, &s->kv, BT > 0 ? BT : 1, 2 * C, err));
    DT_TRY(alloc2(a, &s->ff, BN, 4 * C, err));
    s->mod = dt_arena_alloc(a, (size_t)B * 6 * C * sizeof(float));
    return s->mod ? DT_OK : dt_fail(err, DT_ENOMEM, "out of memory");
}

dt_status dit_self_attention_core(const dit_self_attn_args *a, const dt_tensor *q, const dt_tensor *k,
                                  const dt_tensor *v, int window, dt_tensor *out, dt_err *err)
{
    dt_backend *be = a->be;
    if (a->blk->self_attn != DT_ATTN_KERNEL_AUTO) /* checked at load: attention_with runs it */
        return be->ops->attention_with(be, a->blk->self_attn, q, k, v, NULL, a->heads, a->scale, window, out, err);
    return window < 0 ? be->ops->attention(be, q, k, v, NULL, a->heads, a->scale, out, err)
                      : be->ops->window_attention(be, q, k, v, a->heads, a->scale, window, out, err);
}

/* attn1 from its q|k|v projection (in s->qkv) to the heads' outputs in s->ao (before out1). */
static dt_status self_attention_heads(const dit_self_attn_args *a, dt_err *err)
{
    int64_t C = a->C, B = a->B, N = a->N;
    dt_tensor qkv = t2d(a->s->qkv.data, B * N, 3 * C);
    dt_tensor q = t3d(qkv.data, B, N, C), k = q, v = q, ao = t3d(a->s->ao.data, B, N, C);
    q.strides[0] = k.strides[0] = v.strides[0] = N * 3 * C;
    q.strides[1] = k.strides[1] = v.strides[1] = 3 * C;
    k.data = (float *)qkv.data + C;
    v.data = (float *)qkv.data + 2 * C;
    return dit_self_attention_core(a, &q, &k, &v, -1, &ao, err);
}

/* attn1 from its q|k|v projection (in s->qkv) to a->out. */
static dt_status self_attention_from_qkv(const dit_self_attn_args *a, dt_err *err)
{
    dt_backend *be = a->be;
    DT_TRY(self_attention_heads(a, err));
    dt_tensor ao2 = t2d(a->s->ao.data, (int64_t)a->B * a->N, a->C);
    LIN(a->blk->out1, &ao2, a->out);
    return DT_OK;
}

dt_status dit_self_attention_full(const dit_self_attn_args *a, dt_err *err)
{
    dt_backend *be = a->be;
    dt_tensor qkv = t2d(a->s->qkv.data, (int64_t)a->B * a->N, 3 * (int64_t)a->C);
    LIN(a->blk->qkv, a->xn, &qkv);
    return self_attention_from_qkv(a, err);
}

/* y = l(LN(x)·(1+scale) + shift) through the backend's fused op where it has one (xn3: its
 * scratch, or the normalized rows the two ops write). */
static dt_status norm_linear(dt_backend *be, const dt_tensor *x3, const dt_tensor *shift, const dt_tensor *scale,
                             float eps, dt_linear *l, dt_tensor *xn3, dt_tensor *y, dt_err *err)
{
    if (be->ops->layernorm_modulate_linear)
        return be->ops->layernorm_modulate_linear(be, x3, shift, scale, eps, l, xn3, y, err);
    DT_TRY(be->ops->layernorm_modulate(be, x3, shift, scale, eps, xn3, err));
    dt_tensor xn = t2d(xn3->data, x3->shape[0] * x3->shape[1], x3->shape[2]);
    return be->ops->linear_forward(be, l, &xn, y, err);
}

/* x3 += gate ⊙ l(in) (gate NULL: plain add) through the backend's fused op where it has one
 * (o3: its scratch, or the output the two ops write). */
static dt_status linear_gated_add(dt_backend *be, dt_linear *l, const dt_tensor *in, dt_tensor *x3, dt_tensor *o3,
                                  const dt_tensor *gate, dt_err *err)
{
    if (be->ops->linear_gated_add) return be->ops->linear_gated_add(be, l, in, x3, o3, gate, err);
    dt_tensor o = t2d(o3->data, o3->shape[0] * o3->shape[1], o3->shape[2]);
    LIN(l, in, &o);
    return be->ops->gated_add(be, x3, o3, gate, err);
}

/* mod[b, :] = table + t6[b, :]: the per-sample shift/scale/gate of the six chunks. */
/* mod[b] = table + t6[b]: the block's shift/scale/gate for each sequence. */
static dt_status modulation(dt_backend *be, const float *table, const float *t6, int B, int C, float *mod, dt_err *err)
{
    dt_tensor t = t2d((float *)t6, B, 6 * C), tab = t2d((float *)table, 1, 6 * C), m = t2d(mod, B, 6 * C);
    return be->ops->add_rows(be, &t, &tab, &m, err);
}

dt_status dit_block_forward(const dit_block *blk, const dit_block_shape *shape, const dit_block_args *a, dt_err *err)
{
    dt_backend *be = a->be;
    dit_scratch *s = a->s;
    int C = shape->C, B = a->B, N = a->N, T = a->T;
    float *mod = s->mod;
    DT_TRY(modulation(be, blk->sst, a->t6, B, C, mod, err));
    dt_tensor shift_msa = dit_rowvec(mod, B, C, 6 * C), scale_msa = dit_rowvec(mod + C, B, C, 6 * C),
              gate_msa = dit_rowvec(mod + 2 * C, B, C, 6 * C), shift_mlp = dit_rowvec(mod + 3 * C, B, C, 6 * C),
              scale_mlp = dit_rowvec(mod + 4 * C, B, C, 6 * C), gate_mlp = dit_rowvec(mod + 5 * C, B, C, 6 * C);
    dt_tensor x3 = t3d(a->x->data, B, N, C), xn3 = t3d(s->xn.data, B, N, C), o3 = t3d(s->o.data, B, N, C);
    dt_tensor xn = t2d(s->xn.data, (int64_t)B * N, C), o = t2d(s->o.data, (int64_t)B * N, C),
              ao = t2d(s->ao.data, (int64_t)B * N, C), ff = t2d(s->ff.data, (int64_t)B * N, 4 * C);

    /* self-attention (a hook reads the normalized rows xn: then they are made in full) */
    dit_self_attn_args sa = {be, blk, a->layer, B, N, C, shape->heads, 1.0f / sqrtf((float)shape->head_dim),
                             &xn, &o, s, a->arena};
    if (a->hook) {
        DT_TRY(be->ops->layernorm_modulate(be, &x3, &shift_msa, &scale_msa, shape->eps, &xn3, err));
        DT_TRY(a->hook->self_attn(a->hook, &sa, err));
        DT_TRY(be->ops->gated_add(be, &x3, &o3, &gate_msa, err));
    } else {
        dt_tensor qkv = t2d(s->qkv.data, (int64_t)B * N, 3 * C);
        DT_TRY(norm_linear(be, &x3, &shift_msa, &scale_msa, shape->eps, blk->qkv, &xn3, &qkv, err));
        DT_TRY(self_attention_heads(&sa, err));
        DT_TRY(linear_gated_add(be, blk->out1, &ao, &x3, &o3, &gate_msa, err));
    }

    /* cross-attention to the caption (no norm before it in this block type) */
    if (blk->q2) {
        dt_tensor q2 = t2d(s->qkv.data, (int64_t)B * N, C);
        LIN(blk->q2, a->x, &q2);
        /* [B, T, ·] so a quantized kv2 can find the text tokens it keeps in floating point */
        dt_tensor ctx3 = t3d(a->ctx->data, B, T, C), kv = t3d(s->kv.data, B, T, 2 * C);
        LIN(blk->kv2, &ctx3, &kv);
        dt_tensor q23 = t3d(q2.data, B, N, C), k2 = t3d(kv.data, B, T, C), v2 = k2, ao3 = t3d(s->ao.data, B, N, C);
        k2.strides[0] = v2.strides[0] = (int64_t)T * 2 * C;
        k2.strides[1] = v2.strides[1] = 2 * C;
        v2.data = (float *)kv.data + C;
        DT_TRY(be->ops->attention(be, &q23, &k2, &v2, a->cross_bias, shape->heads, sa.scale, &ao3, err));
        DT_TRY(linear_gated_add(be, blk->out2, &ao, &x3, &o3, NULL, err));
    }

    /* feed-forward */
    DT_TRY(norm_linear(be, &x3, &shift_mlp, &scale_mlp, shape->eps, blk->fc1, &xn3, &ff, err));
    return linear_gated_add(be, blk->fc2, &ff, &x3, &o3, &gate_mlp, err);
}
