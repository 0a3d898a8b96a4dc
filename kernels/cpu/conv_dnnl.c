/* 2-D convolution through oneDNN on NHWC activations. Weights are reordered once, at
 * creation, into the layout oneDNN picks for the layer; the bias is fused. One primitive is
 * kept per input size and accumulate flag (a model uses few: one per resolution, a few more
 * when tiling).
 *
 * f32 convolutions run in the activation layout oneDNN picks (format "any": channel-blocked
 * nChw8c on AVX2, nChw16c on AVX-512), with the NHWC input reordered into it and the result
 * reordered back: oneDNN's direct convolution on plain NHWC runs at about half the rate of
 * its blocked kernels at 128-512 channels on AVX2 (VAE decoder shapes: 11-15 vs 21-28
 * GFLOP/s on 2 cores), and the two reorders cost far less than the difference. The residual
 * add (y += conv(x)) is then a "sum" post-op on the reorder back. The blocked copies live in
 * the backend scratch, one band of output rows (and the input rows it reads) at a time, so
 * the extra memory stays under CONV_BAND_BYTES whatever the image size. bf16 convolutions keep
 * plain NHWC with the sum fused into the convolution (the layout their kernels were tuned on). */
#include "cpu.h"
#include <stdlib.h>
#include <string.h>

#define CONV_PRIMS 16 /* a blocked conv uses up to 3 per input size: first, middle, last band */
#define CONV_HINT_HW 64 /* spatial size the weight layout is chosen for */
#define CONV_BAND_BYTES ((size_t)64 << 20) /* blocked copies of one band: input rows + output rows */

typedef struct {
    int64_t b, h, w;  /* source batch and size (one band's rows when blocked) */
    int pt, pb, acc;  /* vertical padding of this source; accumulate */
    dnnl_primitive_t prim;
    dnnl_primitive_t rin, rout; /* NHWC -> the conv's src layout, its dst -> NHWC; NULL: none */
    size_t src_bytes, dst_bytes; /* scratch the reorders need (0 without them) */
} conv_prim;

struct dt_conv2d {
    int cin, cout, k, stride, pad_lo, pad_hi;
    dt_dtype dt;            /* weight / source dtype */
    int blocked;            /* activations in oneDNN's chosen layout (f32), else plain NHWC */
    size_t band_bytes;      /* scratch budget of one band (CONV_BAND_BYTES; tests lower it) */
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

static void nhwc_md(int64_t B, int64_t C, int64_t H, int64_t W, dnnl_data_type_t dt, dnnl_memory_desc_t *md)
{
    dnnl_dims_t d = {B, C, H, W};
    dnnl_memory_desc_init_by_tag(md, 4, d, dt, dnnl_nhwc);
}

static int64_t out_rows(const struct dt_conv2d *c, int64_t h, int pt, int pb) { return (h + pt + pb - c->k) / c->stride + 1; }

/* The convolution's descriptor for a [B, H, W] source padded pt/pb rows (pad_lo/pad_hi
 * columns); acc fuses y += conv(x) (plain NHWC only). */
static dnnl_status_t conv_pd(cpu_backend *cb, const struct dt_conv2d *c, int64_t B, int64_t H, int64_t W, int pt, int pb,
                             int acc, const dnnl_memory_desc_t *wmd, dnnl_primitive_desc_t *pd)
{
    dnnl_memory_desc_t src, dst, bias;
    dnnl_dims_t sd = {B, c->cin, H, W}, dd = {B, c->cout, out_rows(c, H, pt, pb), out_size(c, W)}, bd = {c->cout};
    dnnl_format_tag_t tag = c->blocked ? dnnl_format_tag_any : dnnl_nhwc;
    dnnl_memory_desc_init_by_tag(&src, 4, sd, cpu_dnnl_dt(c->dt), tag);
    dnnl_memory_desc_init_by_tag(&dst, 4, dd, dnnl_f32, tag);
    dnnl_memory_desc_init_by_tag(&bias, 1, bd, dnnl_f32, dnnl_a);
    dnnl_dims_t strides = {c->stride, c->stride}, pl = {pt, c->pad_lo}, pr = {pb, c->pad_hi};
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
    *c = (struct dt_conv2d){.cin = cin, .cout = cout, .k = k, .stride = stride, .pad_lo = pad_lo, .pad_hi = pad_hi, .dt = dtype,
                            .blocked = dtype == DT_F32, .band_bytes = CONV_BAND_BYTES};
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
    dnnl_status_t st = conv_pd(cb, c, 1, hw, hw, pad_lo, pad_hi, 0, &any, &pd);
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

/* A reorder from smd to dmd, with dst = src + dst when acc. */
static dnnl_status_t reorder_prim(cpu_backend *cb, const dnnl_memory_desc_t *smd, const dnnl_memory_desc_t *dmd, int acc,
                                  dnnl_primitive_t *out)
{
    dnnl_primitive_attr_t attr = NULL;
    dnnl_status_t st = dnnl_primitive_attr_create(&attr);
    if (st == dnnl_success && acc) {
        dnnl_post_ops_t po;
        st = dnnl_post_ops_create(&po);
        if (st == dnnl_success) {
            st = dnnl_post_ops_append_sum(po, 1.0f);
            if (st == dnnl_success) st = dnnl_primitive_attr_set_post_ops(attr, po);
            dnnl_post_ops_destroy(po);
        }
    }
    dnnl_primitive_desc_t rpd = NULL;
    if (st == dnnl_success) st = dnnl_reorder_primitive_desc_create(&rpd, smd, cb->engine, dmd, cb->engine, attr);
    if (st == dnnl_success) st = dnnl_primitive_create(out, rpd);
    dnnl_primitive_desc_destroy(rpd);
    dnnl_primitive_attr_destroy(attr);
    return st;
}

static void conv_prim_free(conv_prim *e)
{
    if (e->prim) dnnl_primitive_destroy(e->prim);
    if (e->rin) dnnl_primitive_destroy(e->rin);
    if (e->rout) dnnl_primitive_destroy(e->rout);
    *e = (conv_prim){0};
}

static size_t round64(size_t n) { return (n + 63) / 64 * 64; }

/* The convolution for one input size, with the reorders around it in the blocked mode: into
 * the source layout unless that is NHWC already, and back to NHWC unless the destination is
 * NHWC and nothing is accumulated (the residual add rides on the reorder back). */
static dt_status conv_prim_build(cpu_backend *cb, const struct dt_conv2d *c, const conv_prim *key, conv_prim *e, dt_err *err)
{
    *e = *key;
    int64_t B = key->b, H = key->h, W = key->w;
    int acc = key->acc;
    dnnl_primitive_desc_t pd;
    dnnl_status_t st = conv_pd(cb, c, B, H, W, key->pt, key->pb, acc && !c->blocked, &c->wmd, &pd);
    if (st != dnnl_success) return cpu_dnnl_fail(err, st, "convolution for a new input size");
    st = dnnl_primitive_create(&e->prim, pd);
    if (st == dnnl_success && c->blocked) {
        dnnl_memory_desc_t xs, ys;
        nhwc_md(B, c->cin, H, W, dnnl_f32, &xs);
        nhwc_md(B, c->cout, out_rows(c, H, key->pt, key->pb), out_size(c, W), dnnl_f32, &ys);
        const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
        const dnnl_memory_desc_t *dmd = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
        if (!dnnl_memory_desc_equal(smd, &xs)) {
            st = reorder_prim(cb, &xs, smd, 0, &e->rin);
            e->src_bytes = round64(dnnl_memory_desc_get_size(smd));
        }
        if (st == dnnl_success && (acc || !dnnl_memory_desc_equal(dmd, &ys))) {
            st = reorder_prim(cb, dmd, &ys, acc, &e->rout);
            e->dst_bytes = round64(dnnl_memory_desc_get_size(dmd));
        }
    }
    dnnl_primitive_desc_destroy(pd);
    if (st != dnnl_success) {
        conv_prim_free(e);
        return cpu_dnnl_fail(err, st, "convolution primitive");
    }
    return DT_OK;
}

static dt_status conv_prim_get(cpu_backend *cb, struct dt_conv2d *c, const conv_prim *key, conv_prim **out, dt_err *err)
{
    for (int i = 0; i < c->nprims; i++) {
        conv_prim *e = &c->prims[i];
        if (e->b == key->b && e->h == key->h && e->w == key->w && e->pt == key->pt && e->pb == key->pb && e->acc == key->acc) {
            *out = e;
            return DT_OK;
        }
    }
    conv_prim e;
    DT_TRY(conv_prim_build(cb, c, key, &e, err));
    int slot;
    if (c->nprims < CONV_PRIMS) {
        slot = c->nprims++;
    } else { /* full: replace round-robin */
        slot = c->victim;
        c->victim = (c->victim + 1) % CONV_PRIMS;
        conv_prim_free(&c->prims[slot]);
    }
    c->prims[slot] = e;
    *out = &c->prims[slot];
    return DT_OK;
}

static dt_status wrap_md(cpu_backend *cb, dnnl_primitive_t p, int arg, void *ptr, dnnl_memory_t *m, dt_err *err)
{
    const_dnnl_primitive_desc_t pd;
    dnnl_primitive_get_primitive_desc(p, &pd);
    dnnl_status_t st = dnnl_memory_create(m, dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, arg), cb->engine, ptr);
    return st == dnnl_success ? DT_OK : cpu_dnnl_fail(err, st, "convolution memory");
}

/* Runs reorder r from `from` to `to` (queued on the stream). */
static dt_status run_reorder(cpu_backend *cb, dnnl_primitive_t r, const void *from, void *to, dt_err *err)
{
    dnnl_memory_t mf = NULL, mt = NULL;
    dt_status s = wrap_md(cb, r, DNNL_ARG_FROM, (void *)from, &mf, err);
    if (s == DT_OK) s = wrap_md(cb, r, DNNL_ARG_TO, to, &mt, err);
    if (s == DT_OK) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, mf}, {DNNL_ARG_TO, mt}};
        dnnl_status_t st = dnnl_primitive_execute(r, cb->stream, 2, args);
        if (st != dnnl_success) s = cpu_dnnl_fail(err, st, "convolution layout reorder");
    }
    dnnl_memory_destroy(mf);
    dnnl_memory_destroy(mt);
    return s;
}

static int nhwc_ok(const dt_tensor *t, int64_t c)
{
    return t->ndim == 4 && t->shape[3] == c && dt_tensor_is_contiguous(t) && t->device == DT_DEV_CPU;
}

/* Runs e on src (NHWC, f32 or the conv's dtype) into dst (NHWC f32), through the scratch
 * when e reorders. */
static dt_status conv_run(cpu_backend *cb, const struct dt_conv2d *c, const conv_prim *e, const void *src, float *dst_nhwc,
                          dt_err *err)
{
    void *dst = dst_nhwc;
    dt_status s = DT_OK;
    if (e->rin || e->rout) {
        char *sc = cpu_scratch(cb, e->src_bytes + e->dst_bytes);
        if (!sc) return dt_fail(err, DT_ENOMEM, "conv2d: out of memory for %zu bytes of reordered activations",
                                e->src_bytes + e->dst_bytes);
        if (e->rin) {
            s = run_reorder(cb, e->rin, src, sc, err);
            src = sc;
        }
        if (e->rout) dst = sc + e->src_bytes;
    }
    dnnl_primitive_t p = e->prim;
    dnnl_memory_t ms = NULL, mw = NULL, mb = NULL, md = NULL;
    if (s == DT_OK) s = wrap_md(cb, p, DNNL_ARG_SRC, (void *)src, &ms, err);
    if (s == DT_OK) s = wrap_md(cb, p, DNNL_ARG_WEIGHTS, c->w, &mw, err);
    if (s == DT_OK && c->bias) s = wrap_md(cb, p, DNNL_ARG_BIAS, c->bias, &mb, err);
    if (s == DT_OK) s = wrap_md(cb, p, DNNL_ARG_DST, dst, &md, err);
    if (s == DT_OK) {
        dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, ms}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DST, md}, {DNNL_ARG_BIAS, mb}};
        dnnl_status_t st = dnnl_primitive_execute(p, cb->stream, c->bias ? 4 : 3, args);
        if (st != dnnl_success) s = cpu_dnnl_fail(err, st, "convolution execution");
    }
    if (s == DT_OK && e->rout) s = run_reorder(cb, e->rout, dst, dst_nhwc, err);
    dnnl_status_t st = dnnl_stream_wait(cb->stream); /* also after a failure: nothing queued may outlive the call */
    if (s == DT_OK && st != dnnl_success) s = cpu_dnnl_fail(err, st, "convolution execution");
    dnnl_memory_destroy(ms);
    dnnl_memory_destroy(mw);
    dnnl_memory_destroy(mb);
    dnnl_memory_destroy(md);
    return s;
}

/* Output rows per band: its blocked input (stride rows per output row, channels padded to a
 * whole 16-block) and output copies fit the conv's band budget. */
static int64_t band_rows(const struct dt_conv2d *c, int64_t W)
{
    size_t cin = (size_t)(c->cin + 15) / 16 * 16, cout = (size_t)(c->cout + 15) / 16 * 16;
    size_t row = ((size_t)c->stride * (size_t)W * cin + (size_t)out_size(c, W) * cout) * sizeof(float);
    size_t rows = c->band_bytes / (row ? row : 1);
    return rows > 0 ? (int64_t)rows : 1;
}

/* Blocked: each image in bands of output rows [o0, o1), from the input rows they read (their
 * halo recomputed per band, the image edge as padding). */
static dt_status conv_banded(cpu_backend *cb, struct dt_conv2d *c, const dt_tensor *x, dt_tensor *y, int acc, dt_err *err)
{
    int64_t B = x->shape[0], H = x->shape[1], W = x->shape[2], Ho = y->shape[1], Wo = y->shape[2], R = band_rows(c, W);
    for (int64_t n = 0; n < B; n++)
        for (int64_t o0 = 0; o0 < Ho; o0 += R) {
            int64_t o1 = o0 + R < Ho ? o0 + R : Ho;
            int64_t i0 = o0 * c->stride - c->pad_lo, i1 = (o1 - 1) * c->stride - c->pad_lo + c->k;
            int64_t a = i0 > 0 ? i0 : 0, z = i1 < H ? i1 : H;
            conv_prim key = {.b = 1, .h = z - a, .w = W, .pt = (int)(a - i0), .pb = (int)(i1 - z), .acc = acc}, *e;
            DT_TRY(conv_prim_get(cb, c, &key, &e, err));
            const float *src = (const float *)x->data + (n * H + a) * W * c->cin;
            DT_TRY(conv_run(cb, c, e, src, (float *)y->data + (n * Ho + o0) * Wo * c->cout, err));
        }
    return DT_OK;
}

dt_status cpu_conv2d_forward(dt_backend *be, dt_conv2d *c, const dt_tensor *x, dt_tensor *y, int accumulate, dt_err *err)
{
    cpu_backend *cb = (cpu_backend *)be;
    if (!nhwc_ok(x, c->cin) || (x->dtype != DT_F32 && x->dtype != c->dt) || !nhwc_ok(y, c->cout) ||
        y->dtype != DT_F32 || x->shape[1] + c->pad_lo + c->pad_hi < c->k || x->shape[2] + c->pad_lo + c->pad_hi < c->k ||
        y->shape[0] != x->shape[0] || y->shape[1] != out_size(c, x->shape[1]) || y->shape[2] != out_size(c, x->shape[2]))
        return dt_fail(err, DT_EINVAL, "conv2d: expected contiguous NHWC [B,H,W,%d] (%s or f32) -> f32 [B,Ho,Wo,%d]",
                       c->cin, dt_dtype_name(c->dt), c->cout);
    /* Bands need every band to read a real input row: padding narrower than the kernel. */
    if (c->blocked && c->pad_lo < c->k && c->pad_hi < c->k) return conv_banded(cb, c, x, y, accumulate != 0, err);
    int64_t B = x->shape[0], H = x->shape[1], W = x->shape[2];
    conv_prim key = {.b = B, .h = H, .w = W, .pt = c->pad_lo, .pb = c->pad_hi, .acc = accumulate != 0}, *e;
    DT_TRY(conv_prim_get(cb, c, &key, &e, err));
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
    float *wide = NULL; /* emulated bf16: the bf16 input widened for the f32 primitive */
    DT_TRY(cpu_bf16_emulate_src(c->dt, &src, (size_t)dt_tensor_numel(x), &wide, err));
    dt_status s = conv_run(cb, c, e, src, y->data, err);
    free(wide);
    return s;
}

/* Test hook (kernels/cpu/cpu.h): a smaller band budget, to exercise the banding on small images. */
void cpu_conv2d_set_band_bytes(dt_conv2d *c, size_t bytes) { c->band_bytes = bytes; }

void cpu_conv2d_destroy(dt_conv2d *c)
{
    if (!c) return;
    for (int i = 0; i < c->nprims; i++) conv_prim_free(&c->prims[i]);
    free(c->w);
    free(c->bias);
    free(c);
}
