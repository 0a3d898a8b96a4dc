/* Quantized linear layers (ViDiT-Q style W8A8 / W4A8) through oneDNN's int8 matmul.
 *
 * Per call: each row of x is balanced/rotated and quantized to int8 with its own scale
 * (dynamic, symmetric: s8 runs as fast as u8 on VNNI here, measured), the int8 GEMM
 * accumulates in int32 (s32 dst: exact), and one epilogue pass writes
 * y = act(acc·ascale[m]·wscale[n] + b). oneDNN 2.6 cannot fuse the per-row scale (a [M,1]
 * binary post-op falls back to its reference kernel, and runtime output scales leave brgemm
 * for a slower GEMM), so the epilogue is ours; it also makes W4 chunks share one primitive.
 * W8 weights are reordered once into oneDNN's layout. W4 weights stay packed (two per byte)
 * and are expanded to int8 QL_CHUNK output channels at a time into a small buffer right
 * before each GEMM call, so only the packed copy is resident.
 * On CPUs without VNNI, oneDNN's int8 GEMM is inexact (it halves the weights to keep its int16
 * pair sums from saturating), so there the GEMM is gemm_s8 (kernels/cpu/gemm_s8.h: int16
 * multiply-adds, exact for any K up to 131071): W8 weights are packed once into its int8
 * panels (1 byte per weight resident), W4 chunks are expanded and packed per call as they are
 * reordered for oneDNN on VNNI. Either way the accumulators are the exact int32 sums and the
 * epilogue is the same code, so results do not depend on the CPU. */
#include "cpu.h"
#include "kernels/cpu/gemm_s8.h"
#include "vmath.h"
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define QL_PRIMS 8
#define QL_CHUNK 2304 /* W4: output channels per expansion (2 chunks for a PixArt FFN) */

typedef struct {
    int kind; /* CPU_LIN_QUANT */
    int in, out, wbits, block, group;
    uint8_t *gscale;        /* W4 group-wise: [out, in/group] multipliers applied while expanding */
    dt_act act;
    float *wscale, *bias, *smooth;
    float *ss;              /* smooth·signs when rotated (cpu_qrow) */
    int8_t *signs;
    void *w;                /* W8: int8 in oneDNN's layout wmd, or gemm_s8's panels (s8gemm); W4: packed [out, in/2] */
    int s8gemm;             /* no VNNI: the GEMM is gemm_s8 (exact), not oneDNN's int8 matmul */
    dnnl_memory_desc_t wmd; /* W8: the whole layer; W4: one full chunk of QL_CHUNK channels (oneDNN only) */
    dnnl_memory_desc_t wmd_last; /* W4: the last (narrower) chunk */
    dnnl_primitive_t reo, reo_last; /* W4: plain int8 chunk -> wmd / wmd_last */
    dt_linear *fp;          /* MixDQ: float layer for the rows of tokens fp_tok (NULL: none) */
    int *fp_tok, nfp;
    struct { int64_t m; int n; dnnl_primitive_t prim; } prims[QL_PRIMS];
    int nprims, next;
} cpu_qlinear;

typedef struct {
    int kind; /* CPU_LIN_OBSERVE */
    int in;
    dt_linear *inner;
    float *amax;
} cpu_observer;

/* x[M,K] s8 · W[K,n] s8 -> s32 [M,n] with row stride `out` (W4 chunks write in place); weights in wmd or plain. */
static dnnl_status_t gemm_pd(cpu_backend *cb, const cpu_qlinear *l, int64_t m, int n, const dnnl_memory_desc_t *wmd,
                             dnnl_primitive_desc_t *pd)
{
    dnnl_memory_desc_t src, wei, dst;
    dnnl_dims_t sd = {m, l->in}, wd = {l->in, n}, dd = {m, n}, ws = {1, l->in}, ds = {l->out, 1};
    dnnl_memory_desc_init_by_tag(&src, 2, sd, dnnl_s8, dnnl_ab);
    if (wmd) wei = *wmd;
    else dnnl_memory_desc_init_by_strides(&wei, 2, wd, dnnl_s8, ws);
    dnnl_memory_desc_init_by_strides(&dst, 2, dd, dnnl_s32, ds);
    dnnl_matmul_desc_t desc;
    dnnl_status_t st = dnnl_matmul_desc_init(&desc, &src, &wei, NULL, &dst);
    return st == dnnl_success ? dnnl_primitive_desc_create(pd, &desc, NULL, cb->engine, NULL) : st;
}

static dt_status gemm_prim(cpu_backend *cb, cpu_qlinear *l, int64_t m, int n, dnnl_primitive_t *out, dt_err *err)
{
    for (int i = 0; i < l->nprims; i++)
        if (l->prims[i].m == m && l->prims[i].n == n) { *out = l->prims[i].prim; return DT_OK; }
    dnnl_primitive_desc_t pd;
    int last = l->wbits == 4 && n != QL_CHUNK;
    dnnl_status_t st = gemm_pd(cb, l, m, n, last ? &l->wmd_last : &l->wmd, &pd);
    if (st != dnnl_success) return cpu_dnnl_fail(err, st, "int8 matmul descriptor");
    dnnl_primitive_t p;
    st = dnnl_primitive_create(&p, pd);
    dnnl_primitive_desc_destroy(pd);
    if (st != dnnl_success) return cpu_dnnl_fail(err, st, "int8 matmul primitive");
    int slot = l->nprims < QL_PRIMS ? l->nprims++ : l->next;
    if (l->nprims == QL_PRIMS && l->prims[slot].prim && l->prims[slot].m != m) {
        if (slot == l->next) l->next = (l->next + 1) % QL_PRIMS;
        dnnl_primitive_destroy(l->prims[slot].prim);
    }
    l->prims[slot].m = m;
    l->prims[slot].n = n;
    l->prims[slot].prim = p;
    *out = p;
    return DT_OK;
}

static void qlinear_free(cpu_qlinear *l)
{
    for (int i = 0; i < l->nprims; i++) dnnl_primitive_destroy(l->prims[i].prim);
    if (l->reo) dnnl_primitive_destroy(l->reo);
    if (l->reo_last) dnnl_primitive_destroy(l->reo_last);
    free(l->wscale);
    free(l->bias);
    free(l->smooth);
    free(l->ss);
    free(l->signs);
    free(l->gscale);
    free(l->fp_tok);
    if (l->fp) cpu_linear_destroy(l->fp);
    free(l->w);
    free(l);
}

static void *dup(const void *p, size_t n, int *fail)
{
    if (!p) return NULL;
    void *d = malloc(n);
    if (d) memcpy(d, p, n);
    else *fail = 1;
    return d;
}

/* oneDNN's preferred int8 weight layout for n output channels at the expected M. */
static dt_status pick_layout(cpu_backend *cb, const cpu_qlinear *l, int n, int m_hint, dnnl_memory_desc_t *md, dt_err *err)
{
    dnnl_memory_desc_t any;
    dnnl_dims_t wd = {l->in, n};
    dnnl_memory_desc_init_by_tag(&any, 2, wd, dnnl_s8, dnnl_format_tag_any);
    dnnl_primitive_desc_t pd;
    dnnl_status_t st = gemm_pd(cb, l, m_hint > 0 ? m_hint : 256, n, &any, &pd);
    if (st != dnnl_success) return cpu_dnnl_fail(err, st, "int8 matmul descriptor");
    *md = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    dnnl_primitive_desc_destroy(pd);
    return DT_OK;
}

/* W4: reorders from an expanded plain chunk [n, K] into the GEMM layout md. */
static dt_status chunk_reorder(cpu_backend *cb, const cpu_qlinear *l, int n, const dnnl_memory_desc_t *md,
                               dnnl_primitive_t *r, dt_err *err)
{
    dnnl_memory_desc_t plain;
    dnnl_dims_t wd = {l->in, n}, ws = {1, l->in};
    dnnl_memory_desc_init_by_strides(&plain, 2, wd, dnnl_s8, ws);
    dnnl_primitive_desc_t rpd;
    dnnl_status_t st = dnnl_reorder_primitive_desc_create(&rpd, &plain, cb->engine, md, cb->engine, NULL);
    if (st == dnnl_success) {
        st = dnnl_primitive_create(r, rpd);
        dnnl_primitive_desc_destroy(rpd);
    }
    return st == dnnl_success ? DT_OK : cpu_dnnl_fail(err, st, "int4 chunk reorder");
}

static dt_status setup_w4(cpu_backend *cb, cpu_qlinear *l, int m_hint, dt_err *err)
{
    if (l->s8gemm) return DT_OK; /* chunks are packed for gemm_s8 per call */
    int full = l->out < QL_CHUNK ? 0 : QL_CHUNK, rest = l->out % QL_CHUNK;
    if (full) {
        DT_TRY(pick_layout(cb, l, full, m_hint, &l->wmd, err));
        DT_TRY(chunk_reorder(cb, l, full, &l->wmd, &l->reo, err));
    }
    if (rest) {
        DT_TRY(pick_layout(cb, l, rest, m_hint, &l->wmd_last, err));
        DT_TRY(chunk_reorder(cb, l, rest, &l->wmd_last, &l->reo_last, err));
    }
    return DT_OK;
}

/* Reorders plain int8 [out, in] weights into oneDNN's layout for the expected M, or packs them
 * for gemm_s8. */
static dt_status reorder_w8(cpu_backend *cb, cpu_qlinear *l, const int8_t *q, int m_hint, dt_err *err)
{
    if (l->s8gemm) {
        size_t pb = gemm_s8_packed_bytes(l->out, l->in);
        l->w = aligned_alloc(64, (pb + 63) / 64 * 64);
        if (!l->w) return dt_fail(err, DT_ENOMEM, "out of memory for %zu int8 weight bytes", pb);
        gemm_s8_pack_b(q, l->in, l->out, l->in, l->w);
        return DT_OK;
    }
    dnnl_memory_desc_t any, plain;
    dnnl_dims_t wd = {l->in, l->out}, ws = {1, l->in};
    dnnl_memory_desc_init_by_tag(&any, 2, wd, dnnl_s8, dnnl_format_tag_any);
    dnnl_memory_desc_init_by_strides(&plain, 2, wd, dnnl_s8, ws);
    dnnl_primitive_desc_t pd;
    dnnl_status_t st = gemm_pd(cb, l, m_hint > 0 ? m_hint : 256, l->out, &any, &pd);
    if (st != dnnl_success) return cpu_dnnl_fail(err, st, "int8 matmul descriptor");
    l->wmd = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    dnnl_primitive_desc_destroy(pd);
    size_t nb = dnnl_memory_desc_get_size(&l->wmd);
    l->w = aligned_alloc(64, (nb + 63) / 64 * 64);
    if (!l->w) return dt_fail(err, DT_ENOMEM, "out of memory for %zu int8 weight bytes", nb);
    memset(l->w, 0, nb); /* the layout's padding stays zero */
    st = cpu_reorder(cb, &plain, q, &l->wmd, l->w);
    return st == dnnl_success ? DT_OK : cpu_dnnl_fail(err, st, "int8 weight reorder");
}

dt_status cpu_qlinear_create(dt_backend *be, const dt_qweights *qw, const float *b, dt_act act, int m_hint,
                             dt_linear **lout, dt_err *err)
{
    cpu_backend *cb = (cpu_backend *)be;
    if (!qw || qw->in <= 0 || qw->out <= 0 || (qw->wbits != 8 && qw->wbits != 4) || !qw->q || !qw->wscale ||
        (qw->wbits == 4 && qw->in % 2))
        return dt_fail(err, DT_EINVAL, "qlinear: bad quantized weights (%d x %d, %d bits)", qw ? qw->out : 0,
                       qw ? qw->in : 0, qw ? qw->wbits : 0);
    if (qw->signs && (qw->rot_block <= 0 || (qw->rot_block & (qw->rot_block - 1)) || qw->in % qw->rot_block))
        return dt_fail(err, DT_EINVAL, "qlinear: rotation block %d does not tile %d channels in powers of two",
                       qw->rot_block, qw->in);
    DT_TRY(dt_qweights_check_groups(qw, err));
    cpu_qlinear *l = calloc(1, sizeof *l);
    if (!l) return dt_fail(err, DT_ENOMEM, "out of memory");
    l->kind = CPU_LIN_QUANT;
    l->in = qw->in;
    l->out = qw->out;
    l->wbits = qw->wbits;
    l->act = act;
    l->block = qw->signs ? qw->rot_block : 1;
    l->group = qw->group;
    l->s8gemm = !cpu_exact_int8();
    int fail = 0;
    l->wscale = dup(qw->wscale, (size_t)qw->out * sizeof(float), &fail);
    l->bias = dup(b, (size_t)qw->out * sizeof(float), &fail);
    l->smooth = dup(qw->smooth, (size_t)qw->in * sizeof(float), &fail);
    l->signs = dup(qw->signs, (size_t)qw->in, &fail);
    if (qw->group) l->gscale = dup(qw->gscale, (size_t)qw->out * (size_t)(qw->in / qw->group), &fail);
    if (qw->signs) {
        l->ss = malloc((size_t)qw->in * sizeof(float));
        if (l->ss) cpu_qrow_signed_smooth(qw->smooth, qw->signs, qw->in, l->ss);
        else fail = 1;
    }
    if (!fail && qw->wbits == 4) l->w = dup(qw->q, dt_qweights_qbytes(qw->in, qw->out, 4), &fail);
    if (fail) { qlinear_free(l); return dt_fail(err, DT_ENOMEM, "out of memory"); }
    dt_status s = qw->wbits == 8 ? reorder_w8(cb, l, qw->q, m_hint, err) : setup_w4(cb, l, m_hint, err);
    if (s != DT_OK) { qlinear_free(l); return s; }
    *lout = (dt_linear *)l;
    return DT_OK;
}

/* Quantizes rows [0, M) of x, or of LayerNorm-modulate(ln's x) made one row at a time (x NULL),
 * into q (int8 [M,K]) and ascale [M]: one pass over the activations. tmp: 2K floats per thread. */
static void quantize_rows(const cpu_qlinear *l, const float *x, const cpu_lnmod *ln, int64_t M, int8_t *q,
                          float *ascale, float *tmp)
{
    const int K = l->in;
    const float rs = 127.0f * sqrtf((float)l->block);
#pragma omp parallel
    {
        float *t = tmp + (size_t)omp_get_thread_num() * 2 * K, *row = t + K;
#pragma omp for schedule(static)
        for (int64_t m = 0; m < M; m++) {
            const float *src = x + m * K;
            if (!x) {
                cpu_lnmod_rowm(ln, m, row);
                src = row;
            }
            ascale[m] = cpu_qrow(src, K, l->ss, l->smooth, l->signs, l->block, t, q + m * K) / rs;
        }
    }
}

static inline float act_none(float x) { return x; }

/* One pass per row: scale, bias and activation together while the row is in L1. */
#define EPILOGUE_ROW(F, ar)                                                                               \
    do {                                                                                                  \
        if (b) {                                                                                          \
            _Pragma("omp simd") for (int j = 0; j < n; j++) yr[j] = F((float)ar[j] * as * ws[j] + b[j]); \
        } else {                                                                                          \
            _Pragma("omp simd") for (int j = 0; j < n; j++) yr[j] = F((float)ar[j] * as * ws[j]);        \
        }                                                                                                 \
    } while (0)
#define EPILOGUE_ACT(ar)                                                   \
    do {                                                                   \
        if (l->act == DT_ACT_GELU_TANH) EPILOGUE_ROW(vm_gelu_tanh_sigmoid, ar); \
        else if (l->act == DT_ACT_SILU) EPILOGUE_ROW(vm_silu, ar);         \
        else if (l->act == DT_ACT_GELU_ERF) EPILOGUE_ROW(vm_gelu_erf, ar); \
        else EPILOGUE_ROW(act_none, ar);                                   \
    } while (0)

/* y[M, n0:n0+n] = act(acc·ascale[m]·wscale[n] + b[n]), in place over the s32 accumulators. */
static void epilogue(const cpu_qlinear *l, int64_t M, int n0, int n, const float *ascale, float *y)
{
    const int N = l->out;
    const float *ws = l->wscale + n0, *b = l->bias ? l->bias + n0 : NULL;
#pragma omp parallel for schedule(static)
    for (int64_t m = 0; m < M; m++) {
        float *yr = y + m * N + n0;
        const float as = ascale[m];
        const int32_t *ai = (const int32_t *)yr;
        EPILOGUE_ACT(ai);
    }
}
#undef EPILOGUE_ACT
#undef EPILOGUE_ROW

/* The residual a layer's output is added to (linear_gated_add): row m = b·N + i of the output
 * goes to x[b, i, :] += gate[b, :] ⊙ it (gate NULL: plain add). */
typedef struct {
    float *x;
    const float *gate;
    int64_t N, xs0, xs1, gs0;
} cpu_gadd;

/* The epilogue (no activation) and gated_add in one pass, with their bits: each output value is
 * rounded to f32 exactly as epilogue() stores it, then added as cpu_gated_add adds it (no
 * contraction: -ffp-contract=off). The accumulators in acc are left as they are. */
static void epilogue_gated(const cpu_qlinear *l, int64_t M, const float *ascale, const float *acc, const cpu_gadd *g)
{
    const int N = l->out;
    const float *ws = l->wscale, *b = l->bias;
#pragma omp parallel for schedule(static)
    for (int64_t m = 0; m < M; m++) {
        const int64_t bi = m / g->N, i = m % g->N;
        float *xr = g->x + bi * g->xs0 + i * g->xs1;
        const float *gr = g->gate ? g->gate + bi * g->gs0 : NULL;
        const float as = ascale[m];
        const int32_t *ai = (const int32_t *)(acc + m * N);
        float o[256]; /* one slice of the row at a time, so the compiler keeps each loop simple */
        for (int j0 = 0; j0 < N; j0 += 256) {
            const int n = N - j0 < 256 ? N - j0 : 256;
#pragma omp simd
            for (int j = 0; j < n; j++) o[j] = (float)ai[j0 + j] * as * ws[j0 + j];
            if (b) {
#pragma omp simd
                for (int j = 0; j < n; j++) o[j] = o[j] + b[j0 + j];
            }
            if (gr) {
#pragma omp simd
                for (int j = 0; j < n; j++) xr[j0 + j] += gr[j0 + j] * o[j];
            } else {
#pragma omp simd
                for (int j = 0; j < n; j++) xr[j0 + j] += o[j];
            }
        }
    }
}

/* Expands packed 4-bit rows [n0, n0+n) to plain int8 [n, K] (torch layout), times the
 * group multipliers when group-wise. */
static void expand_w4(const cpu_qlinear *l, int n0, int n, int8_t *dst)
{
    const int K = l->in, half = K / 2, G = l->group ? l->group : K, ng = K / G;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < n; r++) {
        const uint8_t *s = (const uint8_t *)l->w + (size_t)(n0 + r) * half;
        int8_t *d = dst + (size_t)r * K;
        for (int g = 0; g < ng; g++) {
            const int8_t m = l->group ? (int8_t)l->gscale[(size_t)(n0 + r) * ng + g] : 1;
            const uint8_t *sg = s + g * (G / 2);
            int8_t *dg = d + g * G;
#pragma omp simd
            for (int j = 0; j < G / 2; j++) {
                dg[2 * j] = (int8_t)(((int8_t)(sg[j] << 4) >> 4) * m);
                dg[2 * j + 1] = (int8_t)(((int8_t)sg[j] >> 4) * m);
            }
        }
    }
}

static dt_status run_gemm(cpu_backend *cb, cpu_qlinear *l, int64_t M, int n, const void *q, const void *w, void *y,
                          dt_err *err)
{
    dnnl_primitive_t p = NULL;
    DT_TRY(gemm_prim(cb, l, M, n, &p, err));
    const_dnnl_primitive_desc_t pd;
    dnnl_primitive_get_primitive_desc(p, &pd);
    dnnl_memory_t ms = NULL, mw = NULL, md = NULL;
    dnnl_status_t st = dnnl_memory_create(&ms, dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0), cb->engine, (void *)q);
    if (st == dnnl_success) st = dnnl_memory_create(&mw, dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0), cb->engine, (void *)w);
    if (st == dnnl_success) st = dnnl_memory_create(&md, dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0), cb->engine, y);
    if (st == dnnl_success) {
        dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, ms}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DST, md}};
        st = dnnl_primitive_execute(p, cb->stream, 3, args);
        if (st == dnnl_success) st = dnnl_stream_wait(cb->stream);
    }
    dnnl_memory_destroy(ms);
    dnnl_memory_destroy(mw);
    dnnl_memory_destroy(md);
    return st == dnnl_success ? DT_OK : cpu_dnnl_fail(err, st, "int8 matmul execution");
}

static dt_status reorder_chunk(cpu_backend *cb, const cpu_qlinear *l, int n, void *plain, void *blocked, dt_err *err)
{
    int last = n != QL_CHUNK;
    dnnl_primitive_t r = last ? l->reo_last : l->reo;
    const_dnnl_primitive_desc_t pd;
    dnnl_primitive_get_primitive_desc(r, &pd);
    dnnl_memory_t ms = NULL, md = NULL;
    dnnl_status_t st = dnnl_memory_create(&ms, dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0), cb->engine, plain);
    if (st == dnnl_success) st = dnnl_memory_create(&md, last ? &l->wmd_last : &l->wmd, cb->engine, blocked);
    if (st == dnnl_success) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, ms}, {DNNL_ARG_TO, md}};
        st = dnnl_primitive_execute(r, cb->stream, 2, args);
        if (st == dnnl_success) st = dnnl_stream_wait(cb->stream);
    }
    dnnl_memory_destroy(ms);
    dnnl_memory_destroy(md);
    return st == dnnl_success ? DT_OK : cpu_dnnl_fail(err, st, "int4 chunk reorder");
}

/* acc[M, n] (row stride `out`, s32) = q · this chunk's (or the W8 layer's) int8 weights. `w`:
 * oneDNN: the weights in its layout; gemm_s8: its packed panels. */
static dt_status chunk_gemm(cpu_backend *cb, cpu_qlinear *l, int64_t M, int n, const int8_t *q, const void *w,
                            float *acc, void *gs, dt_err *err)
{
    if (!l->s8gemm) return run_gemm(cb, l, M, n, q, w, acc, err);
    gemm_s8_run(M, n, l->in, q, l->in, w, (int32_t *)acc, l->out, 0, GEMM_S8_ISA_AUTO, omp_get_max_threads(), gs);
    return DT_OK;
}

/* y = the layer applied to x [M, K], or to LayerNorm-modulate(ln) when x is NULL. */
static dt_status qlinear_forward(cpu_backend *cb, cpu_qlinear *l, const float *xd, const cpu_lnmod *ln, int64_t M,
                                 float *yd, const cpu_gadd *ga, dt_err *err)
{
    const int K = l->in;
    size_t qb = ((size_t)M * K + 63) / 64 * 64, sb = ((size_t)M * 4 + 63) / 64 * 64;
    size_t tb = ((size_t)omp_get_max_threads() * K * 8 + 63) / 64 * 64, eb = 0, bb = 0, gb = 0;
    if (l->s8gemm) gb = (gemm_s8_scratch_bytes(omp_get_max_threads()) + 63) / 64 * 64;
    if (l->wbits == 4) {
        eb = ((size_t)QL_CHUNK * K + 63) / 64 * 64;
        int wide = l->out < QL_CHUNK ? l->out : QL_CHUNK;
        bb = l->s8gemm ? gemm_s8_packed_bytes(wide, K) : dnnl_memory_desc_get_size(l->out >= QL_CHUNK ? &l->wmd : &l->wmd_last);
        bb = (bb + 63) / 64 * 64;
    }
    char *scr = cpu_scratch(cb, qb + sb + tb + eb + bb + gb);
    if (!scr) return dt_fail(err, DT_ENOMEM, "out of memory for int8 activations");
    int8_t *q = (int8_t *)scr, *wexp = (int8_t *)(scr + qb + sb + tb), *wblk = (int8_t *)(scr + qb + sb + tb + eb);
    float *ascale = (float *)(scr + qb), *tmp = (float *)(scr + qb + sb);
    void *gs = gb ? scr + qb + sb + tb + eb + bb : NULL; /* gemm_s8's per-thread panels */
    quantize_rows(l, xd, ln, M, q, ascale, tmp);
    if (l->wbits == 8) DT_TRY(chunk_gemm(cb, l, M, l->out, q, l->w, yd, gs, err));
    for (int n0 = 0; l->wbits == 4 && n0 < l->out; n0 += QL_CHUNK) {
        int n = l->out - n0 < QL_CHUNK ? l->out - n0 : QL_CHUNK;
        expand_w4(l, n0, n, wexp);
        if (l->s8gemm) gemm_s8_pack_b(wexp, K, n, K, wblk);
        else DT_TRY(reorder_chunk(cb, l, n, wexp, wblk, err));
        DT_TRY(chunk_gemm(cb, l, M, n, q, wblk, yd + n0, gs, err));
    }
    if (ga) epilogue_gated(l, M, ascale, yd, ga);
    else epilogue(l, M, 0, l->out, ascale, yd); /* once: each parallel region costs on a busy machine */
    return DT_OK;
}

/* Folds max over rows of |x[:, j]| into amax[j]. */
static void observe(const float *x, int64_t M, int K, float *amax)
{
#pragma omp parallel for schedule(static)
    for (int j0 = 0; j0 < K; j0 += 64) {
        int j1 = j0 + 64 < K ? j0 + 64 : K;
        for (int64_t m = 0; m < M; m++)
            for (int j = j0; j < j1; j++) {
                float a = fabsf(x[m * K + j]);
                if (a > amax[j]) amax[j] = a;
            }
    }
}

dt_status cpu_linear_observe(dt_backend *be, dt_linear *inner, int in, float *amax, dt_linear **lout, dt_err *err)
{
    if (!inner || !amax || in <= 0) return dt_fail(err, DT_EINVAL, "linear_observe: needs a layer and an amax[%d] buffer", in);
    cpu_observer *o = calloc(1, sizeof *o);
    if (!o) return dt_fail(err, DT_ENOMEM, "out of memory");
    *o = (cpu_observer){CPU_LIN_OBSERVE, in, inner, amax};
    *lout = (dt_linear *)o;
    return DT_OK;
}

/* Recomputes the rows of the kept tokens (each of the M/T sequences) with the float layer. */
static dt_status float_tokens(cpu_backend *cb, cpu_qlinear *l, const float *x, int64_t M, int64_t T, float *y, dt_err *err)
{
    if (T <= 0 || M % T) return dt_fail(err, DT_EINVAL, "linear: layer with float text tokens needs a [B, T, %d] input", l->in);
    int64_t B = M / T, r = 0;
    float *xs = malloc((size_t)(B * l->nfp) * l->in * sizeof(float)), *ys = malloc((size_t)(B * l->nfp) * l->out * sizeof(float));
    dt_status s = xs && ys ? DT_OK : dt_fail(err, DT_ENOMEM, "out of memory");
    for (int64_t b = 0; b < B && s == DT_OK; b++)
        for (int i = 0; i < l->nfp; i++)
            if (l->fp_tok[i] < T) memcpy(xs + (r++) * l->in, x + (b * T + l->fp_tok[i]) * l->in, (size_t)l->in * sizeof(float));
    int64_t xsh[2] = {r, l->in}, ysh[2] = {r, l->out};
    dt_tensor tx = dt_tensor_view(xs, DT_F32, 2, xsh), ty = dt_tensor_view(ys, DT_F32, 2, ysh);
    if (s == DT_OK && r) s = cpu_linear_forward(&cb->base, l->fp, &tx, &ty, err);
    r = 0;
    for (int64_t b = 0; b < B && s == DT_OK; b++)
        for (int i = 0; i < l->nfp; i++)
            if (l->fp_tok[i] < T) memcpy(y + (b * T + l->fp_tok[i]) * l->out, ys + (r++) * l->out, (size_t)l->out * sizeof(float));
    free(xs);
    free(ys);
    return s;
}

dt_status cpu_qlinear_keep_tokens(dt_backend *be, dt_linear *q, dt_linear *fp, const int *tokens, int n, dt_err *err)
{
    cpu_qlinear *l = (cpu_qlinear *)q;
    if (*(const int *)q != CPU_LIN_QUANT || !fp || n <= 0 || l->fp)
        return dt_fail(err, DT_EINVAL, "qlinear: float tokens need a quantized layer (once) and a float one");
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0) return dt_fail(err, DT_EINVAL, "qlinear: float token index %d is negative", tokens[i]);
    l->fp_tok = malloc((size_t)n * sizeof(int));
    if (!l->fp_tok) return dt_fail(err, DT_ENOMEM, "out of memory");
    memcpy(l->fp_tok, tokens, (size_t)n * sizeof(int));
    l->nfp = n;
    l->fp = fp;
    return DT_OK;
}

dt_status cpu_qlinear_forward(dt_backend *be, dt_linear *lin, const dt_tensor *x, dt_tensor *y, dt_err *err)
{
    int kind = *(const int *)lin;
    int in = kind == CPU_LIN_QUANT ? ((cpu_qlinear *)lin)->in : ((cpu_observer *)lin)->in;
    int64_t M = cpu_rows(x, in);
    if (M < 0) return dt_fail(err, DT_EINVAL, "linear: expected contiguous f32 [M,%d] input", in);
    if (kind == CPU_LIN_OBSERVE) {
        cpu_observer *o = (cpu_observer *)lin;
        observe(x->data, M, o->in, o->amax);
        return cpu_linear_forward(be, o->inner, x, y, err);
    }
    cpu_qlinear *l = (cpu_qlinear *)lin;
    if (cpu_rows(y, l->out) != M)
        return dt_fail(err, DT_EINVAL, "linear: expected contiguous f32 [M,%d] -> [M,%d]", l->in, l->out);
    DT_TRY(qlinear_forward((cpu_backend *)be, l, x->data, NULL, M, y->data, NULL, err));
    return l->nfp ? float_tokens((cpu_backend *)be, l, x->data, M, x->ndim == 3 ? x->shape[1] : 0, y->data, err) : DT_OK;
}

void cpu_qlinear_destroy(dt_linear *lin)
{
    if (*(const int *)lin == CPU_LIN_OBSERVE) {
        cpu_observer *o = (cpu_observer *)lin;
        cpu_linear_destroy(o->inner);
        free(o);
    } else qlinear_free((cpu_qlinear *)lin);
}

size_t cpu_qlinear_weight_bytes(const dt_linear *lin)
{
    const cpu_qlinear *l = (const cpu_qlinear *)lin;
    if (*(const int *)lin != CPU_LIN_QUANT) return 0;
    if (l->wbits == 4) return dt_qweights_qbytes(l->in, l->out, 4);
    return l->s8gemm ? gemm_s8_packed_bytes(l->out, l->in) : dnnl_memory_desc_get_size(&l->wmd);
}

dt_status cpu_layernorm_modulate_linear(dt_backend *be, const dt_tensor *x, const dt_tensor *shift,
                                        const dt_tensor *scale, float eps, dt_linear *lin, dt_tensor *xn, dt_tensor *y,
                                        dt_err *err)
{
    cpu_qlinear *l = (cpu_qlinear *)lin;
    int kind = *(const int *)lin;
    cpu_lnmod ln;
    int64_t M = x->ndim == 3 ? x->shape[0] * x->shape[1] : -1;
    int fits = cpu_lnmod_init(x, shift, scale, eps, &ln);
    if (fits && kind == CPU_LIN_FLOAT && cpu_linear_is_bf16(lin)) /* LayerNorm-modulate writes the bf16 GEMM input */
        return cpu_linear_forward_lnmod(be, lin, &ln, M, y, err);
    if (!fits || kind != CPU_LIN_QUANT || l->nfp || x->shape[2] != l->in || cpu_rows(y, l->out) != M) {
        /* the two ops: f32 layers (the GEMM reads the normalized rows as they are), calibration,
         * float text tokens (which read x's rows) */
        DT_TRY(cpu_layernorm_modulate(be, x, shift, scale, eps, xn, err));
        return cpu_linear_forward(be, lin, xn, y, err);
    }
    return qlinear_forward((cpu_backend *)be, l, NULL, &ln, M, y->data, NULL, err);
}

dt_status cpu_linear_gated_add(dt_backend *be, dt_linear *lin, const dt_tensor *in, dt_tensor *x, dt_tensor *y,
                               const dt_tensor *gate, dt_err *err)
{
    cpu_qlinear *l = (cpu_qlinear *)lin;
    int fits = *(const int *)lin == CPU_LIN_QUANT && !l->nfp && l->act == DT_ACT_NONE && x->ndim == 3 &&
               x->dtype == DT_F32 && x->strides[2] == 1 && x->shape[2] == l->out && y->ndim == 3 &&
               dt_tensor_is_contiguous(y) && y->shape[0] == x->shape[0] && y->shape[1] == x->shape[1] &&
               y->shape[2] == x->shape[2] && (!gate || (gate->ndim == 2 && gate->shape[0] == x->shape[0] &&
                                                        gate->shape[1] == x->shape[2] && gate->strides[1] == 1));
    int64_t M = fits ? cpu_rows(in, l->in) : -1;
    if (M < 0 || M != x->shape[0] * x->shape[1]) { /* the two ops (float layers, float text tokens, other shapes) */
        int64_t ys[2] = {y->shape[0] * y->shape[1], y->shape[2]};
        dt_tensor y2 = dt_tensor_view(y->data, DT_F32, 2, ys);
        if (!dt_tensor_is_contiguous(y)) return dt_fail(err, DT_EINVAL, "linear_gated_add: y must be contiguous");
        DT_TRY(cpu_linear_forward(be, lin, in, &y2, err));
        return cpu_gated_add(be, x, y, gate, err);
    }
    cpu_gadd ga = {x->data, gate ? gate->data : NULL, x->shape[1], x->strides[0], x->strides[1], gate ? gate->strides[0] : 0};
    return qlinear_forward((cpu_backend *)be, l, in->data, NULL, M, y->data, &ga, err); /* y: the accumulators */
}
