/* Linear layers and batched matmuls through oneDNN. Weights are reordered once, at
 * creation, into the blocked layout oneDNN picks for the layer; one primitive is kept per
 * row count M seen (a model uses very few). */
#include "cpu.h"
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define LIN_PRIMS 6

struct dt_linear {
    int kind; /* CPU_LIN_FLOAT (0); qlinear.c owns the other kinds */
    int in, out;
    dt_act act;
    dt_dtype dt;                 /* weight / source dtype */
    dnnl_memory_desc_t wmd;      /* the chosen weight layout */
    void *w;                     /* reordered weights (owned) */
    float *bias;                 /* f32, or NULL */
    struct { int64_t m; dnnl_primitive_t prim; } prims[LIN_PRIMS];
    int nprims;
};


static dnnl_status_t make_attr(dt_act act, dnnl_primitive_attr_t *attr)
{
    dnnl_status_t st = dnnl_primitive_attr_create(attr);
    if (st != dnnl_success || act == DT_ACT_NONE) return st;
    dnnl_post_ops_t po;
    st = dnnl_post_ops_create(&po);
    if (st != dnnl_success) return st;
    dnnl_alg_kind_t alg = act == DT_ACT_SILU ? dnnl_eltwise_swish
                          : act == DT_ACT_GELU_ERF ? dnnl_eltwise_gelu_erf : dnnl_eltwise_gelu_tanh;
    st = dnnl_post_ops_append_eltwise(po, 1.0f, alg, 1.0f, 0.0f);
    if (st == dnnl_success) st = dnnl_primitive_attr_set_post_ops(*attr, po);
    dnnl_post_ops_destroy(po);
    return st;
}

/* Primitive descriptor for y[M,N] = x[M,K]·W[K,N] + b with the given weight md. */
static dnnl_status_t linear_pd(cpu_backend *cb, const struct dt_linear *l, int64_t m,
                               const dnnl_memory_desc_t *wmd, dnnl_primitive_desc_t *pd)
{
    dnnl_memory_desc_t src, dst, bias;
    dnnl_dims_t sd = {m, l->in}, dd = {m, l->out}, bd = {1, l->out};
    dnnl_memory_desc_init_by_tag(&src, 2, sd, cpu_dnnl_dt(l->dt), dnnl_ab);
    dnnl_memory_desc_init_by_tag(&dst, 2, dd, dnnl_f32, dnnl_ab);
    dnnl_memory_desc_init_by_tag(&bias, 2, bd, dnnl_f32, dnnl_ab);
    dnnl_matmul_desc_t desc;
    dnnl_status_t st = dnnl_matmul_desc_init(&desc, &src, wmd, l->bias ? &bias : NULL, &dst);
    if (st != dnnl_success) return st;
    dnnl_primitive_attr_t attr;
    st = make_attr(l->act, &attr);
    if (st != dnnl_success) return st;
    st = dnnl_primitive_desc_create(pd, &desc, attr, cb->engine, NULL);
    dnnl_primitive_attr_destroy(attr);
    return st;
}


/* A plain [K, N] weight layout whose rows are a multiple of 4 KB apart (N = 4096, 12288, 20480
 * f32: T5's and CLIP's widths) gets 64 bytes of padding per row. With rows exactly 4 KB-aligned
 * apart, oneDNN's gemm:jit ran at a third of its speed when M is small (T5: 240 rows, 66 vs 186
 * GFLOP/s for 240x4096x12288 on AVX2; no change at M = 2048 or for N = 1152); the padded stride is
 * a layout oneDNN's matmul takes as it is. Blocked layouts (brgemm, AVX-512) are left alone. */
static void pad_leading_dim(dnnl_memory_desc_t *md)
{
    dnnl_blocking_desc_t *bd = &md->format_desc.blocking;
    size_t esz = md->data_type == dnnl_f32 ? 4 : 2;
    if (md->format_kind != dnnl_blocked || md->ndims != 2 || bd->inner_nblks != 0 || bd->strides[1] != 1 ||
        bd->strides[0] != md->dims[1] || (md->dims[1] * esz) % 4096 != 0)
        return;
    dnnl_memory_desc_t padded;
    dnnl_dims_t strides = {md->dims[1] + (dnnl_dim_t)(64 / esz), 1};
    if (dnnl_memory_desc_init_by_strides(&padded, 2, md->dims, md->data_type, strides) == dnnl_success) *md = padded;
}

dt_status cpu_linear_create(dt_backend *be, const float *w, const float *b, int in, int out,
                            dt_act act, int m_hint, dt_dtype dtype, dt_linear **lout, dt_err *err)
{
    cpu_backend *cb = (cpu_backend *)be;
    if (in <= 0 || out <= 0) return dt_fail(err, DT_EINVAL, "linear: bad size %d x %d", out, in);
    if (dtype == DT_I8) return cpu_w8_linear_create(be, w, b, in, out, act, lout, err);
    if (dtype != DT_F32 && dtype != DT_BF16) return dt_fail(err, DT_EINVAL, "linear: dtype must be f32, bf16 or int8 (weights only)");
    DT_TRY(cpu_check_dtype(dtype, "linear", err));
    struct dt_linear *l = calloc(1, sizeof *l);
    if (!l) return dt_fail(err, DT_ENOMEM, "out of memory");
    l->in = in;
    l->out = out;
    l->act = act;
    l->dt = dtype;
    if (b) {
        l->bias = malloc((size_t)out * sizeof(float));
        if (!l->bias) { free(l); return dt_fail(err, DT_ENOMEM, "out of memory"); }
        memcpy(l->bias, b, (size_t)out * sizeof(float));
    }
    /* Ask oneDNN for its preferred weight layout at the expected M. */
    dnnl_memory_desc_t any, plain;
    dnnl_dims_t wd = {in, out}, ws = {1, in}; /* torch [out,in] seen as K x N */
    dnnl_memory_desc_init_by_tag(&any, 2, wd, cpu_dnnl_dt(l->dt), dnnl_format_tag_any);
    dnnl_memory_desc_init_by_strides(&plain, 2, wd, dnnl_f32, ws);
    dnnl_primitive_desc_t pd;
    dnnl_status_t st = linear_pd(cb, l, m_hint > 0 ? m_hint : 256, &any, &pd);
    if (st != dnnl_success) { cpu_linear_destroy(l); return cpu_dnnl_fail(err, st, "matmul descriptor"); }
    l->wmd = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    dnnl_primitive_desc_destroy(pd);
    pad_leading_dim(&l->wmd);
    size_t nb = dnnl_memory_desc_get_size(&l->wmd);
    l->w = aligned_alloc(64, (nb + 63) / 64 * 64);
    if (!l->w) { cpu_linear_destroy(l); return dt_fail(err, DT_ENOMEM, "out of memory for %zu weight bytes", nb); }
    st = cpu_reorder(cb, &plain, w, &l->wmd, l->w);
    if (st != dnnl_success) { cpu_linear_destroy(l); return cpu_dnnl_fail(err, st, "weight reorder"); }
    cpu_bf16_emulate_weights(l->dt, l->w, nb);
    *lout = l;
    return DT_OK;
}

static dt_status linear_prim(cpu_backend *cb, struct dt_linear *l, int64_t m, dnnl_primitive_t *out, dt_err *err)
{
    for (int i = 0; i < l->nprims; i++)
        if (l->prims[i].m == m) { *out = l->prims[i].prim; return DT_OK; }
    dnnl_primitive_desc_t pd;
    dnnl_status_t st = linear_pd(cb, l, m, &l->wmd, &pd);
    if (st != dnnl_success) return cpu_dnnl_fail(err, st, "matmul for a new row count");
    dnnl_primitive_t p;
    st = dnnl_primitive_create(&p, pd);
    dnnl_primitive_desc_destroy(pd);
    if (st != dnnl_success) return cpu_dnnl_fail(err, st, "matmul primitive");
    int slot = l->nprims < LIN_PRIMS ? l->nprims++ : (int)(m % LIN_PRIMS);
    if (l->nprims == LIN_PRIMS && l->prims[slot].prim && l->prims[slot].m != m) dnnl_primitive_destroy(l->prims[slot].prim);
    l->prims[slot].m = m;
    l->prims[slot].prim = p;
    *out = p;
    return DT_OK;
}

static dt_status execute(cpu_backend *cb, dnnl_primitive_t p, dnnl_exec_arg_t *args, int nargs, dt_err *err)
{
    dnnl_status_t st = dnnl_primitive_execute(p, cb->stream, nargs, args);
    if (st == dnnl_success) st = dnnl_stream_wait(cb->stream);
    return st == dnnl_success ? DT_OK : cpu_dnnl_fail(err, st, "matmul execution");
}

/* Wraps a user pointer as a oneDNN memory described by the primitive's own md. */
static dt_status wrap(cpu_backend *cb, dnnl_primitive_t p, dnnl_query_t q, void *ptr, dnnl_memory_t *m, dt_err *err)
{
    const_dnnl_primitive_desc_t pd;
    dnnl_primitive_get_primitive_desc(p, &pd);
    dnnl_status_t st = dnnl_memory_create(m, dnnl_primitive_desc_query_md(pd, q, 0), cb->engine, ptr);
    return st == dnnl_success ? DT_OK : cpu_dnnl_fail(err, st, "memory wrap");
}

int64_t cpu_rows(const dt_tensor *t, int n)
{
    if ((t->ndim != 2 && t->ndim != 3) || t->shape[t->ndim - 1] != n || !dt_tensor_is_contiguous(t) || t->dtype != DT_F32)
        return -1;
    return t->ndim == 2 ? t->shape[0] : t->shape[0] * t->shape[1];
}

/* y [m, out] = the float layer on x [m, in] (f32), or when x is NULL on LayerNorm-modulate(ln)
 * made row by row straight into the bf16 GEMM input (a bf16 layer; one pass instead of two). */
static dt_status linear_run(cpu_backend *cb, dt_linear *l, int64_t m, const float *x, const cpu_lnmod *ln, float *y,
                            dt_err *err)
{
    dnnl_primitive_t p = NULL;
    DT_TRY(linear_prim(cb, l, m, &p, err));
    const void *src = x;
    if (l->dt == DT_BF16) {
        size_t xb = ((size_t)m * l->in * 2 + 63) / 64 * 64;
        uint16_t *s = cpu_scratch(cb, xb + (x ? 0 : (size_t)omp_get_max_threads() * l->in * 4));
        if (!s) return dt_fail(err, DT_ENOMEM, "out of memory");
        if (x) cpu_f32_to_bf16(x, s, (size_t)m * l->in);
        else cpu_lnmod_rows_bf16(ln, m, s, (float *)((char *)s + xb));
        src = s;
    }
    float *wide = NULL;
    DT_TRY(cpu_bf16_emulate_src(l->dt, &src, (size_t)m * l->in, &wide, err));
    dnnl_memory_t ms = NULL, mw = NULL, mb = NULL, md = NULL;
    dt_status s = wrap(cb, p, dnnl_query_src_md, (void *)src, &ms, err);
    if (s == DT_OK) s = wrap(cb, p, dnnl_query_weights_md, l->w, &mw, err);
    if (s == DT_OK && l->bias) {
        const_dnnl_primitive_desc_t pd;
        dnnl_primitive_get_primitive_desc(p, &pd);
        dnnl_status_t st = dnnl_memory_create(&mb, dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, DNNL_ARG_BIAS), cb->engine, l->bias);
        if (st != dnnl_success) s = cpu_dnnl_fail(err, st, "bias memory");
    }
    if (s == DT_OK) s = wrap(cb, p, dnnl_query_dst_md, y, &md, err);
    if (s == DT_OK) {
        dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, ms}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DST, md}, {DNNL_ARG_BIAS, mb}};
        s = execute(cb, p, args, l->bias ? 4 : 3, err);
    }
    dnnl_memory_destroy(ms);
    dnnl_memory_destroy(mw);
    dnnl_memory_destroy(mb);
    dnnl_memory_destroy(md);
    free(wide);
    return s;
}

dt_status cpu_linear_forward(dt_backend *be, dt_linear *l, const dt_tensor *x, dt_tensor *y, dt_err *err)
{
    if (l->kind == CPU_LIN_W8) return cpu_w8_linear_forward(be, l, x, y, err);
    if (l->kind != CPU_LIN_FLOAT) return cpu_qlinear_forward(be, l, x, y, err);
    int64_t m = cpu_rows(x, l->in);
    if (m < 0 || cpu_rows(y, l->out) != m)
        return dt_fail(err, DT_EINVAL, "linear: expected contiguous f32 [M,%d] -> [M,%d]", l->in, l->out);
    return linear_run((cpu_backend *)be, l, m, x->data, NULL, y->data, err);
}

int cpu_linear_is_bf16(const dt_linear *l) { return l->kind == CPU_LIN_FLOAT && l->dt == DT_BF16; }

dt_status cpu_linear_forward_lnmod(dt_backend *be, dt_linear *l, const cpu_lnmod *ln, int64_t m, dt_tensor *y,
                                   dt_err *err)
{
    if (l->kind != CPU_LIN_FLOAT || l->dt != DT_BF16 || ln->C != l->in || cpu_rows(y, l->out) != m)
        return dt_fail(err, DT_EINVAL, "linear: the fused LayerNorm input needs a bf16 float layer of %lld inputs",
                       (long long)ln->C);
    return linear_run((cpu_backend *)be, l, m, NULL, ln, y->data, err);
}

void cpu_linear_destroy(dt_linear *l)
{
    if (!l) return;
    if (l->kind == CPU_LIN_W8) { cpu_w8_linear_destroy(l); return; }
    if (l->kind != CPU_LIN_FLOAT) { cpu_qlinear_destroy(l); return; }
    for (int i = 0; i < l->nprims; i++) dnnl_primitive_destroy(l->prims[i].prim);
    free(l->w);
    free(l->bias);
    free(l);
}

static dt_status bmm_prim(cpu_backend *cb, dt_dtype dt, int64_t batch, int64_t m, int64_t k, int64_t n,
                          int trans_b, dnnl_primitive_t *out, dt_err *err)
{
    for (int i = 0; i < CPU_BMM_CACHE; i++) {
        cpu_bmm_entry *e = &cb->bmm[i];
        if (e->used && e->dt == dt && e->batch == batch && e->m == m && e->k == k && e->n == n && e->trans_b == trans_b) {
            *out = e->prim;
            return DT_OK;
        }
    }
    DT_TRY(cpu_check_dtype(dt, "attention", err));
    dnnl_memory_desc_t a, b, c;
    dnnl_dims_t ad = {batch, m, k}, bd = {batch, k, n}, cd = {batch, m, n};
    dnnl_dims_t bs_t = {n * k, 1, k}; /* B stored [batch, n, k] */
    dnnl_memory_desc_init_by_tag(&a, 3, ad, cpu_dnnl_dt(dt), dnnl_abc);
    if (trans_b) dnnl_memory_desc_init_by_strides(&b, 3, bd, cpu_dnnl_dt(dt), bs_t);
    else dnnl_memory_desc_init_by_tag(&b, 3, bd, cpu_dnnl_dt(dt), dnnl_abc);
    dnnl_memory_desc_init_by_tag(&c, 3, cd, dnnl_f32, dnnl_abc);
    dnnl_matmul_desc_t desc;
    dnnl_primitive_desc_t pd;
    dnnl_status_t st = dnnl_matmul_desc_init(&desc, &a, &b, NULL, &c);
    if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &desc, NULL, cb->engine, NULL);
    if (st != dnnl_success) return cpu_dnnl_fail(err, st, "batched matmul descriptor");
    dnnl_primitive_t p;
    st = dnnl_primitive_create(&p, pd);
    dnnl_primitive_desc_destroy(pd);
    if (st != dnnl_success) return cpu_dnnl_fail(err, st, "batched matmul primitive");
    cpu_bmm_entry *e = &cb->bmm[cb->bmm_next];
    cb->bmm_next = (cb->bmm_next + 1) % CPU_BMM_CACHE;
    if (e->used) dnnl_primitive_destroy(e->prim);
    *e = (cpu_bmm_entry){1, dt, batch, m, k, n, trans_b, p};
    *out = p;
    return DT_OK;
}

dt_status cpu_bmm(cpu_backend *cb, dt_dtype dt, int64_t batch, int64_t m, int64_t k, int64_t n,
                  const void *a, const void *b, int trans_b, float *c, dt_err *err)
{
    dnnl_primitive_t p = NULL;
    DT_TRY(bmm_prim(cb, dt, batch, m, k, n, trans_b, &p, err));
    float *wa = NULL, *wb = NULL;
    DT_TRY(cpu_bf16_emulate_src(dt, &a, (size_t)(batch * m * k), &wa, err));
    dt_status sb = cpu_bf16_emulate_src(dt, &b, (size_t)(batch * k * n), &wb, err);
    if (sb != DT_OK) { free(wa); return sb; }
    dnnl_memory_t ma = NULL, mb = NULL, mc = NULL;
    dt_status s = wrap(cb, p, dnnl_query_src_md, (void *)a, &ma, err);
    if (s == DT_OK) s = wrap(cb, p, dnnl_query_weights_md, (void *)b, &mb, err);
    if (s == DT_OK) s = wrap(cb, p, dnnl_query_dst_md, c, &mc, err);
    if (s == DT_OK) {
        dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}};
        s = execute(cb, p, args, 3, err);
    }
    dnnl_memory_destroy(ma);
    dnnl_memory_destroy(mb);
    dnnl_memory_destroy(mc);
    free(wa);
    free(wb);
    return s;
}
