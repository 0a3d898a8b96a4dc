/* U-Net building blocks: loading and the forward pass, written out as diffusers computes them
 * (resnet.py ResnetBlock2D, transformer_2d.py Transformer2DModel, attention.py
 * BasicTransformerBlock with norm_type "layer_norm", attention_processor.py AttnProcessor2_0,
 * activations.py GEGLU). */
#include "unet_blocks.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TRANSFORMER_GN_EPS 1e-6f /* Transformer2DModel's GroupNorm (fixed in diffusers) */
#define LN_EPS 1e-5f             /* BasicTransformerBlock's norm_eps default */

static dt_tensor t2d(void *data, int64_t r, int64_t c) { int64_t s[2] = {r, c}; return dt_tensor_view(data, DT_F32, 2, s); }
static dt_tensor t3d(void *data, int64_t a, int64_t b, int64_t c) { int64_t s[3] = {a, b, c}; return dt_tensor_view(data, DT_F32, 3, s); }

/* ---- loading ---- */

dt_status unet_conv_load(const unet_loader *l, const char *prefix, int cin, int cout, int k, int stride, int pad_lo, int pad_hi,
                         dt_dtype dt, unet_conv *out, dt_err *err)
{
    char name[256];
    int64_t ws[4] = {cout, cin, k, k}, bs[1] = {cout};
    snprintf(name, sizeof name, "%s.weight", prefix);
    DT_TRY(dt_weights_expect(l->src, name, 4, ws, err)); /* the file's shape before the buffer */
    float *w = malloc((size_t)cout * cin * k * k * sizeof(float)), *b = malloc((size_t)cout * sizeof(float));
    dt_status st = (w && b) ? DT_OK : dt_fail(err, DT_ENOMEM, "out of memory loading %s", prefix);
    if (st == DT_OK) st = l->src->read(l->src, name, 4, ws, w, err);
    snprintf(name, sizeof name, "%s.bias", prefix);
    if (st == DT_OK) st = dt_weights_expect(l->src, name, 1, bs, err);
    if (st == DT_OK) st = l->src->read(l->src, name, 1, bs, b, err);
    if (st == DT_OK) st = unet_conv_make(l->be, l->src, prefix, w, b, cin, cout, k, stride, pad_lo, pad_hi, l->tok_hint, dt, out, err);
    free(w);
    free(b);
    return st;
}

dt_status unet_gnorm_load(const unet_loader *l, const char *prefix, int C, unet_gnorm *n, dt_err *err)
{
    char name[256];
    int64_t s[1] = {C};
    n->C = C;
    snprintf(name, sizeof name, "%s.weight", prefix);
    DT_TRY(dt_load_param(l->src, name, 1, s, &n->gamma, err));
    snprintf(name, sizeof name, "%s.bias", prefix);
    return dt_load_param(l->src, name, 1, s, &n->beta, err);
}

void unet_gnorm_free(unet_gnorm *n)
{
    free(n->gamma);
    free(n->beta);
    *n = (unet_gnorm){0};
}

dt_status unet_resnet_load(const unet_loader *l, const char *prefix, int cin, int cout, unet_resnet *r, dt_err *err)
{
    char p[256];
    r->cin = cin;
    r->cout = cout;
#define PFX(s) (snprintf(p, sizeof p, "%s.%s", prefix, s), p)
    DT_TRY(unet_gnorm_load(l, PFX("norm1"), cin, &r->n1, err));
    DT_TRY(unet_conv_load(l, PFX("conv1"), cin, cout, 3, 1, 1, 1, l->dt, &r->c1, err));
    DT_TRY(dt_load_linear1(l->be, l->src, PFX("time_emb_proj"), l->time_dim, cout, 1, DT_ACT_NONE, 2, DT_F32, &r->temb, err));
    DT_TRY(unet_gnorm_load(l, PFX("norm2"), cout, &r->n2, err));
    DT_TRY(unet_conv_load(l, PFX("conv2"), cout, cout, 3, 1, 1, 1, l->dt, &r->c2, err));
    if (cin != cout) DT_TRY(unet_conv_load(l, PFX("conv_shortcut"), cin, cout, 1, 1, 0, 0, l->dt, &r->sc, err));
#undef PFX
    return DT_OK;
}

void unet_resnet_free(dt_backend *be, unet_resnet *r)
{
    unet_conv_free(be, &r->c1);
    unet_conv_free(be, &r->c2);
    unet_conv_free(be, &r->sc);
    be->ops->linear_destroy(r->temb);
    unet_gnorm_free(&r->n1);
    unet_gnorm_free(&r->n2);
    *r = (unet_resnet){0};
}

static dt_status lnorm_load(const unet_loader *l, const char *prefix, int C, unet_lnorm *n, dt_err *err)
{
    char name[256];
    int64_t s[1] = {C};
    float *w = NULL, *b = NULL;
    snprintf(name, sizeof name, "%s.weight", prefix);
    dt_status st = dt_load_param(l->src, name, 1, s, &w, err);
    snprintf(name, sizeof name, "%s.bias", prefix);
    if (st == DT_OK) st = dt_load_param(l->src, name, 1, s, &b, err);
    for (int i = 0; st == DT_OK && i < C; i++) w[i] -= 1.0f;
    if (st == DT_OK) st = dt_backend_upload(l->be, w, (size_t)C, &n->scale, err);
    if (st == DT_OK) st = dt_backend_upload(l->be, b, (size_t)C, &n->shift, err);
    free(w);
    free(b);
    return st;
}

/* A linear layer, or a 1x1 convolution's weight [out, in, 1, 1] read as the same [out, in] GEMM
 * (proj_in/proj_out with use_linear_projection false): on NHWC rows they are one computation. */
static dt_status proj_load(const unet_loader *l, const char *name, int in, int out, dt_linear **lin, dt_err *err)
{
    if (l->linear_proj) return dt_load_linear1(l->be, l->src, name, in, out, 1, DT_ACT_NONE, l->tok_hint, l->dt, lin, err);
    char wn[256], bn[256];
    int64_t ws[4] = {out, in, 1, 1}, bs[1] = {out};
    snprintf(wn, sizeof wn, "%s.weight", name);
    snprintf(bn, sizeof bn, "%s.bias", name);
    DT_TRY(dt_weights_expect(l->src, wn, 4, ws, err));
    DT_TRY(dt_weights_expect(l->src, bn, 1, bs, err));
    float *w = malloc((size_t)in * out * sizeof(float)), *b = malloc((size_t)out * sizeof(float));
    dt_status st = (w && b) ? DT_OK : dt_fail(err, DT_ENOMEM, "out of memory loading %s", name);
    if (st == DT_OK) st = l->src->read(l->src, wn, 4, ws, w, err);
    if (st == DT_OK) st = l->src->read(l->src, bn, 1, bs, b, err);
    if (st == DT_OK)
        st = l->src->make_linear ? l->src->make_linear(l->src, l->be, name, w, b, in, out, DT_ACT_NONE, l->tok_hint, l->dt, lin, err)
                                 : l->be->ops->linear_create(l->be, w, b, in, out, DT_ACT_NONE, l->tok_hint, l->dt, lin, err);
    free(w);
    free(b);
    return st;
}

static dt_status tblock_load(const unet_loader *l, const char *prefix, int C, unet_tblock *b, dt_err *err)
{
    char p[3][320]; /* prefix (< 256) and the longest suffix */
    const char *pp[3] = {p[0], p[1], p[2]};
    dt_backend *be = l->be;
    int th = l->tok_hint;
#define PFX(k, fmt) snprintf(p[k], sizeof p[k], "%s." fmt, prefix)
    PFX(0, "norm1");
    DT_TRY(lnorm_load(l, p[0], C, &b->n1, err));
    PFX(0, "attn1.to_q"); PFX(1, "attn1.to_k"); PFX(2, "attn1.to_v");
    dt_linear_spec qkv = {pp, 3, C, C, 0, DT_ACT_NONE, th, l->dt};
    DT_TRY(dt_load_linear(be, l->src, &qkv, &b->qkv, err));
    PFX(0, "attn1.to_out.0");
    DT_TRY(dt_load_linear1(be, l->src, p[0], C, C, 1, DT_ACT_NONE, th, l->dt, &b->out1, err));
    PFX(0, "norm2");
    DT_TRY(lnorm_load(l, p[0], C, &b->n2, err));
    PFX(0, "attn2.to_q");
    DT_TRY(dt_load_linear1(be, l->src, p[0], C, C, 0, DT_ACT_NONE, th, l->dt, &b->q2, err));
    PFX(0, "attn2.to_k"); PFX(1, "attn2.to_v");
    dt_linear_spec kv = {pp, 2, l->cross, C, 0, DT_ACT_NONE, l->cap_hint, l->dt};
    DT_TRY(dt_load_linear(be, l->src, &kv, &b->kv2, err));
    PFX(0, "attn2.to_out.0");
    DT_TRY(dt_load_linear1(be, l->src, p[0], C, C, 1, DT_ACT_NONE, th, l->dt, &b->out2, err));
    PFX(0, "norm3");
    DT_TRY(lnorm_load(l, p[0], C, &b->n3, err));
    PFX(0, "ff.net.0.proj");
    DT_TRY(dt_load_linear1(be, l->src, p[0], C, 8 * C, 1, DT_ACT_NONE, th, l->dt, &b->ff1, err));
    PFX(0, "ff.net.2");
    DT_TRY(dt_load_linear1(be, l->src, p[0], 4 * C, C, 1, DT_ACT_NONE, th, l->dt, &b->ff2, err));
#undef PFX
    return DT_OK;
}

static void tblock_free(dt_backend *be, unet_tblock *b)
{
    dt_linear *lins[] = {b->qkv, b->out1, b->q2, b->kv2, b->out2, b->ff1, b->ff2};
    for (size_t i = 0; i < sizeof lins / sizeof *lins; i++) be->ops->linear_destroy(lins[i]);
    unet_lnorm *ns[] = {&b->n1, &b->n2, &b->n3};
    for (int i = 0; i < 3; i++) {
        dt_free_param(be, ns[i]->scale);
        dt_free_param(be, ns[i]->shift);
    }
    *b = (unet_tblock){0};
}

dt_status unet_transformer_load(const unet_loader *l, const char *prefix, int C, int heads, int depth, unet_transformer *t,
                                dt_err *err)
{
    char p[256];
    t->C = C;
    t->heads = heads;
    t->blocks = calloc((size_t)depth, sizeof *t->blocks);
    if (!t->blocks) return dt_fail(err, DT_ENOMEM, "out of memory");
    t->depth = depth;
    snprintf(p, sizeof p, "%s.norm", prefix);
    DT_TRY(unet_gnorm_load(l, p, C, &t->norm, err));
    snprintf(p, sizeof p, "%s.proj_in", prefix);
    DT_TRY(proj_load(l, p, C, C, &t->proj_in, err));
    for (int i = 0; i < depth; i++) {
        snprintf(p, sizeof p, "%s.transformer_blocks.%d", prefix, i);
        DT_TRY(tblock_load(l, p, C, &t->blocks[i], err));
    }
    snprintf(p, sizeof p, "%s.proj_out", prefix);
    return proj_load(l, p, C, C, &t->proj_out, err);
}

void unet_transformer_free(dt_backend *be, unet_transformer *t)
{
    for (int i = 0; t->blocks && i < t->depth; i++) tblock_free(be, &t->blocks[i]);
    free(t->blocks);
    unet_gnorm_free(&t->norm);
    be->ops->linear_destroy(t->proj_in);
    be->ops->linear_destroy(t->proj_out);
    *t = (unet_transformer){0};
}

/* ---- forward ---- */

#define LIN(l, x, y) DT_TRY(be->ops->linear_forward(be, (l), (x), (y), err))

unet_act unet_act_in(unet_run *r, int slot, int64_t B, int64_t H, int64_t W, int64_t C)
{
    int64_t s[4] = {B, H, W, C};
    return (unet_act){dt_tensor_view(r->s->slot[slot], DT_F32, 4, s), slot};
}

static dt_status gnorm(unet_run *r, const unet_gnorm *n, const dt_tensor *x, dt_tensor *y, float eps, dt_act act, dt_err *err)
{
    int64_t s[1] = {n->C};
    dt_tensor g = dt_tensor_view(n->gamma, DT_F32, 1, s), b = dt_tensor_view(n->beta, DT_F32, 1, s);
    return r->be->ops->group_norm(r->be, x, r->groups, &g, &b, eps, act, y, err);
}

/* c1[b] += tp[b] for each sample: the time embedding projection broadcast over h x w. */
static dt_status add_per_sample(dt_backend *be, dt_tensor *c, const float *tp, int B, int64_t C, dt_err *err)
{
    int64_t HW = dt_tensor_numel(c) / B / C;
    for (int b = 0; b < B; b++) {
        dt_tensor xb = t2d((float *)c->data + (size_t)b * HW * C, HW, C), rb = t2d((float *)tp + (size_t)b * C, 1, C);
        DT_TRY(be->ops->add_rows(be, &xb, &rb, &xb, err));
    }
    return DT_OK;
}

/* h = conv1(SiLU(norm1(x))) + time_emb_proj(SiLU(emb)); h = conv2(SiLU(norm2(h)));
 * x = (conv_shortcut(x) or x) + h, the add after the convolution as torch does it. Not the
 * conv's fused residual ("sum" post-op): oneDNN's direct kernel then starts its accumulators
 * from the residual, so all 9·C products round at the residual's magnitude. On the sd-xl-tiny
 * euler_zeros case (guidance 5, a zeroed negative row, t = 751), whose conditional row is
 * ill-conditioned, that made the first U-Net output 3.2e-4 from float64 (diffusers' f32: 4.4e-5)
 * and the latents 6e-3 from diffusers' after four steps; the separate add costs one pass. */
dt_status unet_resnet_forward(unet_run *r, const unet_resnet *rn, unet_act *x, dt_err *err)
{
    dt_backend *be = r->be;
    int64_t B = x->t.shape[0], H = x->t.shape[1], W = x->t.shape[2];
    unet_act h = unet_act_in(r, 2, B, H, W, rn->cin), c1 = unet_act_in(r, 3, B, H, W, rn->cout);
    DT_TRY(gnorm(r, &rn->n1, &x->t, &h.t, r->eps, DT_ACT_SILU, err));
    DT_TRY(unet_conv_forward(be, &rn->c1, &h.t, &c1.t, 0, err));
    dt_tensor tp = t2d(r->s->tp, B, rn->cout);
    LIN(rn->temb, r->semb, &tp);
    DT_TRY(add_per_sample(be, &c1.t, r->s->tp, (int)B, rn->cout, err));
    DT_TRY(gnorm(r, &rn->n2, &c1.t, &c1.t, r->eps, DT_ACT_SILU, err));
    if (unet_conv_present(&rn->sc)) {
        unet_act y = unet_act_in(r, 1 - x->slot, B, H, W, rn->cout);
        DT_TRY(unet_conv_forward(be, &rn->sc, &x->t, &y.t, 0, err));
        *x = y;
    }
    unet_act h2 = unet_act_in(r, 2, B, H, W, rn->cout); /* slot 2 is free once conv1 has read it */
    DT_TRY(unet_conv_forward(be, &rn->c2, &c1.t, &h2.t, 0, err));
    dt_tensor x3 = t3d(x->t.data, 1, B * H * W, rn->cout), h3 = t3d(h2.t.data, 1, B * H * W, rn->cout);
    return be->ops->gated_add(be, &x3, &h3, NULL, err);
}

/* ts[rows] += ff2(GEGLU(ff1(xn[rows]))), a chunk of rows at a time (bounds the 8C-wide buffer). */
static dt_status feed_forward(unet_run *r, const unet_tblock *b, int64_t BN, int64_t C, dt_err *err)
{
    dt_backend *be = r->be;
    unet_scratch *s = r->s;
    for (int64_t m0 = 0; m0 < BN; m0 += (int64_t)s->ff_rows) {
        int64_t R = BN - m0 < (int64_t)s->ff_rows ? BN - m0 : (int64_t)s->ff_rows;
        dt_tensor xn = t2d(s->xn + m0 * C, R, C), f = t2d(s->ff, R, 8 * C), g = t2d(s->ff + R * 8 * C, R, 4 * C),
                  o = t2d(s->o + m0 * C, R, C);
        LIN(b->ff1, &xn, &f);
        DT_TRY(be->ops->geglu(be, DT_ACT_GELU_ERF, &f, &g, err)); /* GEGLU: value · gelu(gate), exact GELU */
        LIN(b->ff2, &g, &o);
    }
    dt_tensor ts = t3d(s->ts, 1, BN, C), o3 = t3d(s->o, 1, BN, C);
    return be->ops->gated_add(be, &ts, &o3, NULL, err);
}

static dt_status lnorm(unet_run *r, const unet_lnorm *n, int64_t BN, int64_t C, dt_err *err)
{
    dt_tensor x = t3d(r->s->ts, 1, BN, C), y = t3d(r->s->xn, 1, BN, C);
    dt_tensor sc = t2d(n->scale, 1, C), sh = t2d(n->shift, 1, C);
    return r->be->ops->layernorm_modulate(r->be, &x, &sh, &sc, LN_EPS, &y, err);
}

/* BasicTransformerBlock on ts [B·N, C]: self-attention, cross-attention to ctx, GEGLU FFN. */
static dt_status tblock_forward(unet_run *r, const unet_tblock *b, int heads, int64_t N, int64_t C, dt_err *err)
{
    dt_backend *be = r->be;
    unet_scratch *s = r->s;
    int64_t B = r->B, BN = B * N, T = r->T;
    float scale = 1.0f / sqrtf((float)(C / heads));
    dt_tensor xn = t2d(s->xn, BN, C), ao = t2d(s->ao, BN, C), o = t2d(s->o, BN, C);
    dt_tensor ts3 = t3d(s->ts, 1, BN, C), o3 = t3d(s->o, 1, BN, C), ao3 = t3d(s->ao, B, N, C);

    DT_TRY(lnorm(r, &b->n1, BN, C, err));
    dt_tensor qkv = t2d(s->qkv, BN, 3 * C);
    LIN(b->qkv, &xn, &qkv);
    dt_tensor q = t3d(s->qkv, B, N, C), k = q, v = q;
    q.strides[0] = k.strides[0] = v.strides[0] = N * 3 * C;
    q.strides[1] = k.strides[1] = v.strides[1] = 3 * C;
    k.data = s->qkv + C;
    v.data = s->qkv + 2 * C;
    DT_TRY(be->ops->attention(be, &q, &k, &v, NULL, heads, scale, &ao3, err));
    LIN(b->out1, &ao, &o);
    DT_TRY(be->ops->gated_add(be, &ts3, &o3, NULL, err));

    DT_TRY(lnorm(r, &b->n2, BN, C, err));
    dt_tensor q2 = t2d(s->qkv, BN, C), kv = t3d(s->kv, B, T, 2 * C);
    LIN(b->q2, &xn, &q2);
    LIN(b->kv2, r->ctx, &kv);
    dt_tensor q23 = t3d(s->qkv, B, N, C), k2 = t3d(s->kv, B, T, C), v2 = k2;
    k2.strides[0] = v2.strides[0] = T * 2 * C;
    k2.strides[1] = v2.strides[1] = 2 * C;
    v2.data = s->kv + C;
    DT_TRY(be->ops->attention(be, &q23, &k2, &v2, r->bias, heads, scale, &ao3, err));
    LIN(b->out2, &ao, &o);
    DT_TRY(be->ops->gated_add(be, &ts3, &o3, NULL, err));

    DT_TRY(lnorm(r, &b->n3, BN, C, err));
    return feed_forward(r, b, BN, C, err);
}

dt_status unet_transformer_forward(unet_run *r, const unet_transformer *t, unet_act *x, dt_err *err)
{
    dt_backend *be = r->be;
    unet_scratch *s = r->s;
    int64_t B = x->t.shape[0], N = x->t.shape[1] * x->t.shape[2], C = t->C, BN = B * N;
    unet_act h = unet_act_in(r, 2, B, x->t.shape[1], x->t.shape[2], C);
    DT_TRY(gnorm(r, &t->norm, &x->t, &h.t, TRANSFORMER_GN_EPS, DT_ACT_NONE, err));
    dt_tensor h2 = t2d(h.t.data, BN, C), ts = t2d(s->ts, BN, C), o = t2d(s->o, BN, C);
    LIN(t->proj_in, &h2, &ts);
    for (int i = 0; i < t->depth; i++) DT_TRY(tblock_forward(r, &t->blocks[i], t->heads, N, C, err));
    LIN(t->proj_out, &ts, &o);
    dt_tensor x3 = t3d(x->t.data, 1, BN, C), o3 = t3d(s->o, 1, BN, C);
    return be->ops->gated_add(be, &x3, &o3, NULL, err);
}
