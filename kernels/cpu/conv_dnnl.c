/* 2-D convolution through oneDNN on NHWC activations. Weights are reordered once, at
 * creation, into the layout oneDNN picks for the layer; the bias is fused, and so is an
 * optional residual add (a "sum" post-op: y += conv(x)). One primitive is kept per input
 * size and accumulate flag (a model uses few: one per resolution, a few more when tiling). */
#include "cpu.h"
#include <stdlib.h>
#include <string.h>

#define CONV_PRIMS 8
#define CONV_HINT_HW 64 /* spatial size the weight layout is chosen for */

typedef struct {
    int64_t b, h, w;
    int acc;
    dnnl_primitive_t prim;
} conv_prim;

struct dt_conv2d {
    int cin, cout, k, stride, pad_lo, pad_hi;
    dt_dtype dt;            /* weight / source dtype */
    dnnl_memory_desc_t wmd; /* the chosen weight layout */
    void *w;                /* reordered weights (owned) */
    float *bias;            /* f32, or NULL */
    conv_prim prims[CONV_PRIMS];
    int nprims, victim;
};


static int64_t out_size(const struct dt_conv2d *c, int64_t n)
{
    return (n + c->pad_lo + c->pad_hi - c->k) / c->stride + 1;
}

static dnnl_status_t conv_pd(cpu_backend *cb, const struct dt_conv2d *c, int64_t B, int64_t H, int64_t W, int acc,
                             const dnnl_memory_desc_t *wmd, dnnl_primitive_desc_t *pd)
{
    dnnl_memory_desc_t src, dst, bias;
    dnnl_dims_t sd = {B, c->cin, H, W}, dd = {B, c->cout, out_size(c, H), out_size(c, W)}, bd = {c->cout};
    dnnl_memory_desc_init_by_tag(&src, 4, sd, cpu_dnnl_dt(c->dt), dnnl_nhwc);
    dnnl_memory_desc_init_by_tag(&dst, 4, dd, dnnl_f32, dnnl_nhwc);
    dnnl_memory_desc_init_by_tag(&bias, 1, bd, dnnl_f32, dnnl_a);
    dnnl_dims_t strides = {c->stride, c->stride}, pl = {c->pad_lo, c->pad_lo}, pr = {c->pad_hi, c->pad_hi};
    dnnl_convolution_desc_t desc;
    dnnl_status_t st = dnnl_convolution_forward_desc_init(&desc, dnnl_forward_inference, dnnl_convolution_direct,
                                                          &src, wmd, c->bias ? &bias : NULL, &dst, strides, pl, pr);
    if (st != dnnl_success) return st;
    dnnl_primitive_attr_t attr;
    st = dnnl_primitive_attr_create(&attr);
    if (st != dnnl_success) return st;
    if (acc) {
        dnnl_post_ops_t po;
        st = dnnl_post_ops_create(&po);
        if (st == dnnl_success) {
            st = dnnl_post_ops_append_sum(po, 1.0f);
            if (st == dnnl_success) st = dnnl_primitive_attr_set_post_ops(attr, po);
            dnnl_post_ops_destroy(po);
        }
    }
    if (st == dnnl_success) st = dnnl_primitive_desc_create(pd, &desc, attr, cb->engine, NULL);
    dnnl_primitive_attr_destroy(attr);
    return st;
}


dt_status cpu_conv2d_create(dt_backend *be, const float *w, const float *b, int cin, int cout, int k, int stride,
                            int pad_lo, int pad_hi, dt_dtype dtype, dt_conv2d **out, dt_err *err)
{
    cpu_backend *cb = (cpu_backend *)be;
    if (cin <= 0 || cout <= 0 || k <= 0 || stride <= 0 || pad_lo < 0 || pad_hi < 0)
        return dt_fail(err, DT_EINVAL, "conv2d: bad geometry (cin %d, cout %d, kernel %d, stride %d, padding %d/%d)",
                       cin, cout, k, stride, pad_lo, pad_hi);
    if (dtype != DT_F32 && dtype != DT_BF16) return dt_fail(err, DT_EINVAL, "conv2d: dtype must be f32 or bf16");
    DT_TRY(cpu_check_dtype(dtype, "conv2d", err));
    struct dt_conv2d *c = calloc(1, sizeof *c);
    if (!c) return dt_fail(err, DT_ENOMEM, "out of memory");
    *c = (struct dt_conv2d){.cin = cin, .cout = cout, .k = k, .stride = stride, .pad_lo = pad_lo, .pad_hi = pad_hi, .dt = dtype};
    if (b) {
        c->bias = malloc((size_t)cout * sizeof(float));
        if (!c->bias) { free(c); return dt_fail(err, DT_ENOMEM, "out of memory"); }
        memcpy(c->bias, b, (size_t)cout * sizeof(float));
    }
    /* Ask oneDNN for its preferred weight layout at a typical size. */
    dnnl_memory_desc_t any, plain;
    dnnl_dims_t wd = {cout, cin, k, k};
    dnnl_memory_desc_init_by_tag(&any, 4, wd, cpu_dnnl_dt(dtype), dnnl_format_tag_any);
    dnnl_memory_desc_init_by_tag(&plain, 4, wd, dnnl_f32, dnnl_oihw);
    int64_t hw = CONV_HINT_HW > k ? CONV_HINT_HW : k;
    dnnl_primitive_desc_t pd;
    dnnl_status_t st = conv_pd(cb, c, 1, hw, hw, 0, &any, &pd);
    if (st != dnnl_success) { cpu_conv2d_destroy(c); return cpu_dnnl_fail(err, st, "convolution descriptor"); }
    c->wmd = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    dnnl_primitive_desc_destroy(pd);
    size_t nb = dnnl_memory_desc_get_size(&c->wmd);
    c->w = aligned_alloc(64, (nb + 63) / 64 * 64);
    if (!c->w) { cpu_conv2d_destroy(c); return dt_fail(err, DT_ENOMEM, "out of memory for %zu weight bytes", nb); }
    st = cpu_reorder(cb, &plain, w, &c->wmd, c->w);
    if (st != dnnl_success) { cpu_conv2d_destroy(c); return cpu_dnnl_fail(err, st, "convolution weight reorder"); }
    cpu_bf16_emulate_weights(dtype, c->w, nb);
    *out = c;
    return DT_OK;
}

static dt_status conv_prim_get(cpu_backend *cb, struct dt_conv2d *c, int64_t B, int64_t H, int64_t W, int acc,
                               dnnl_primitive_t *out, dt_err *err)
{
    for (int i = 0; i < c->nprims; i++) {
        conv_prim *e = &c->prims[i];
        if (e->b == B && e->h == H && e->w == W && e->acc == acc) { *out = e->prim; return DT_OK; }
    }
    dnnl_primitive_desc_t pd;
    dnnl_status_t st = conv_pd(cb, c, B, H, W, acc, &c->wmd, &pd);
    if (st != dnnl_success) return cpu_dnnl_fail(err, st, "convolution for a new input size");
    dnnl_primitive_t p;
    st = dnnl_primitive_create(&p, pd);
    dnnl_primitive_desc_destroy(pd);
    if (st != dnnl_success) return cpu_dnnl_fail(err, st, "convolution primitive");
    int slot;
    if (c->nprims < CONV_PRIMS) {
        slot = c->nprims++;
    } else { /* full: replace round-robin */
        slot = c->victim;
        c->victim = (c->victim + 1) % CONV_PRIMS;
        dnnl_primitive_destroy(c->prims[slot].prim);
    }
    c->prims[slot] = (conv_prim){B, H, W, acc, p};
    *out = p;
    return DT_OK;
}

static dt_status wrap_md(cpu_backend *cb, dnnl_primitive_t p, int arg, void *ptr, dnnl_memory_t *m, dt_err *err)
{
    const_dnnl_primitive_desc_t pd;
    dnnl_primitive_get_primitive_desc(p, &pd);
    dnnl_status_t st = dnnl_memory_create(m, dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, arg), cb->engine, ptr);
    return st == dnnl_success ? DT_OK : cpu_dnnl_fail(err, st, "convolution memory");
}

static int nhwc_ok(const dt_tensor *t, int64_t c)
{
    return t->ndim == 4 && t->shape[3] == c && dt_tensor_is_contiguous(t) && t->device == DT_DEV_CPU;
}

dt_status cpu_conv2d_forward(dt_backend *be, dt_conv2d *c, const dt_tensor *x, dt_tensor *y, int accumulate, dt_err *err)
{
    cpu_backend *cb = (cpu_backend *)be;
    if (!nhwc_ok(x, c->cin) || (x->dtype != DT_F32 && x->dtype != c->dt) || !nhwc_ok(y, c->cout) ||
        y->dtype != DT_F32 || x->shape[1] + c->pad_lo + c->pad_hi < c->k || x->shape[2] + c->pad_lo + c->pad_hi < c->k ||
        y->shape[0] != x->shape[0] || y->shape[1] != out_size(c, x->shape[1]) || y->shape[2] != out_size(c, x->shape[2]))
        return dt_fail(err, DT_EINVAL, "conv2d: expected contiguous NHWC [B,H,W,%d] (%s or f32) -> f32 [B,Ho,Wo,%d]",
                       c->cin, dt_dtype_name(c->dt), c->cout);
    int64_t B = x->shape[0], H = x->shape[1], W = x->shape[2];
    dnnl_primitive_t p = NULL;
    DT_TRY(conv_prim_get(cb, c, B, H, W, accumulate != 0, &p, err));
    const void *src = x->data;
    if (c->dt == DT_BF16 && x->dtype == DT_F32) {
        size_t n = (size_t)dt_tensor_numel(x);
        uint16_t *s = cpu_scratch(cb, n * 2);
        if (!s) return dt_fail(err, DT_ENOMEM, "conv2d: out of memory converting the input to bf16");
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < B * H; r++)
            cpu_f32_to_bf16((const float *)x->data + r * W * c->cin, s + r * W * c->cin, (size_t)(W * c->cin));
        src = s;
    }
    float *wide = NULL;
    DT_TRY(cpu_bf16_emulate_src(c->dt, &src, (size_t)dt_tensor_numel(x), &wide, err));
    dnnl_memory_t ms = NULL, mw = NULL, mb = NULL, md = NULL;
    dt_status s = wrap_md(cb, p, DNNL_ARG_SRC, (void *)src, &ms, err);
    if (s == DT_OK) s = wrap_md(cb, p, DNNL_ARG_WEIGHTS, c->w, &mw, err);
    if (s == DT_OK && c->bias) s = wrap_md(cb, p, DNNL_ARG_BIAS, c->bias, &mb, err);
    if (s == DT_OK) s = wrap_md(cb, p, DNNL_ARG_DST, y->data, &md, err);
    if (s == DT_OK) {
        dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, ms}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DST, md}, {DNNL_ARG_BIAS, mb}};
        dnnl_status_t st = dnnl_primitive_execute(p, cb->stream, c->bias ? 4 : 3, args);
        if (st == dnnl_success) st = dnnl_stream_wait(cb->stream);
        if (st != dnnl_success) s = cpu_dnnl_fail(err, st, "convolution execution");
    }
    dnnl_memory_destroy(ms);
    dnnl_memory_destroy(mw);
    dnnl_memory_destroy(mb);
    dnnl_memory_destroy(md);
    free(wide);
    return s;
}

void cpu_conv2d_destroy(dt_conv2d *c)
{
    if (!c) return;
    for (int i = 0; i < c->nprims; i++)
        if (c->prims[i].prim) dnnl_primitive_destroy(c->prims[i].prim);
    free(c->w);
    free(c->bias);
    free(c);
}
