/* cuBLASLt GEMMs: the wrapper shared by linears and attention, and the linear layers.
 *
 * Linear y[M,out] = act(x[M,in]·Wᵀ + b) is, in cuBLASLt's column-major terms, D (out×M, ld out)
 * = op(A)·B with A = W stored as an in×out column-major matrix (ld in) transposed, and B = x as
 * in×M (ld in). Weights are uploaded once at creation in the layer's dtype (bf16 / f16 rounded
 * on the host with the CPU's rounding, or f32); each forward rounds x to that dtype in scratch.
 * Accumulation is f32 (CUBLAS_COMPUTE_32F: TF32 only when asked, DITRT_CUDA_TF32=1). The bias is cuBLASLt's BIAS epilogue;
 * GELU-tanh / SiLU run as one extra elementwise pass with the CPU's exact formulas
 * (elem_math.h) rather than cuBLASLt's GELU epilogue, whose approximation is not documented
 * to be the tanh form the models were trained with. */
#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/elem_math.h"
#include <stdlib.h>
#include <string.h>

struct dt_linear {
    int kind;    /* CU_LIN_FLOAT (cuda_internal.h: every layer of this backend starts with its kind) */
    cuda_backend *cb;
    int in, out;
    dt_act act;
    dt_dtype dt;
    void *w;     /* [out, in] in dt */
    float *b;    /* [out] or NULL */
    cu_algo_cache cache; /* the algorithm of the last row count and pointer alignments */
};

static dt_status lt_fail(dt_err *err, cublasStatus_t s, const char *what)
{
    return dt_fail(err, DT_EBACKEND, "cuBLASLt: %s failed (status %d)", what, (int)s);
}

#define LT_TRY(expr, what)                                       \
    do {                                                         \
        cublasStatus_t lt_s_ = (expr);                           \
        if (lt_s_ != CUBLAS_STATUS_SUCCESS) { st = lt_fail(err, lt_s_, what); goto done; } \
    } while (0)

static size_t elem_size(cudaDataType_t t) { return t == CUDA_R_32F || t == CUDA_R_32I ? 4 : t == CUDA_R_8I ? 1 : 2; }

/* Largest power of two (<= 256) dividing the address and the batch stride in bytes: the
 * alignment cuBLASLt's heuristic must assume (it assumes 256 unless told). */
static uint32_t align_of(const void *p, int64_t stride_elems, size_t esize)
{
    uint64_t a = (uint64_t)(uintptr_t)p | 256;
    if (stride_elems) a |= (uint64_t)stride_elems * esize;
    return (uint32_t)(a & (~a + 1));
}

static cublasStatus_t set_layout(const dt_cuda_libs *L, cublasLtMatrixLayout_t *lay, cudaDataType_t t, int64_t rows,
                                 int64_t cols, int64_t ld, int batch, int64_t stride)
{
    cublasStatus_t s = L->cublasLtMatrixLayoutCreate(lay, t, (uint64_t)rows, (uint64_t)cols, ld);
    if (s != CUBLAS_STATUS_SUCCESS || batch <= 1) return s;
    int32_t bc = batch;
    s = L->cublasLtMatrixLayoutSetAttribute(*lay, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof bc);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = L->cublasLtMatrixLayoutSetAttribute(*lay, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride);
    return s;
}

/* Checks the arguments as cuBLASLt's column-major contract needs them (it does not check
 * leading dimensions at layout creation): sizes positive, each ld >= its matrix's rows. */
dt_status cu_gemm_check(const cu_gemm_args *g, dt_err *err)
{
    int64_t ra = g->ta ? g->k : g->m, rb = g->tb ? g->n : g->k;
    if (g->m <= 0 || g->n <= 0 || g->k <= 0 || g->batch < 1)
        return dt_fail(err, DT_EINVAL, "GEMM: sizes %lldx%lldx%lld batch %d", (long long)g->m, (long long)g->n,
                       (long long)g->k, g->batch);
    if (g->lda < ra || g->ldb < rb || g->ldd < g->m)
        return dt_fail(err, DT_EINVAL, "GEMM: leading dimensions %lld/%lld/%lld below rows %lld/%lld/%lld",
                       (long long)g->lda, (long long)g->ldb, (long long)g->ldd, (long long)ra, (long long)rb,
                       (long long)g->m);
    if (g->i32 && (!g->ta || g->tb || g->at != CUDA_R_8I || g->bt != CUDA_R_8I || g->bias || g->m % 4 || g->k % 4 ||
                   g->lda % 4 || g->ldb % 4 || g->ldd % 4))
        return dt_fail(err, DT_EINVAL, "int8 GEMM: needs int8 A transposed and B not (TN), no bias, m/k and leading "
                                       "dimensions multiples of 4 (%lldx%lldx%lld, ld %lld/%lld/%lld)",
                       (long long)g->m, (long long)g->n, (long long)g->k, (long long)g->lda, (long long)g->ldb,
                       (long long)g->ldd);
    return DT_OK;
}

void cu_gemm_descs_free(const dt_cuda_libs *L, cu_gemm_descs *d)
{
    if (d->la) L->cublasLtMatrixLayoutDestroy(d->la);
    if (d->lb) L->cublasLtMatrixLayoutDestroy(d->lb);
    if (d->ld) L->cublasLtMatrixLayoutDestroy(d->ld);
    if (d->op) L->cublasLtMatmulDescDestroy(d->op);
    *d = (cu_gemm_descs){};
}

/* The operation descriptor (transposes, bias epilogue) and the three layouts: host-only calls,
 * so tests build them without a GPU (cuda_selftest.cu). */
dt_status cu_gemm_descs_make(const dt_cuda_libs *L, const cu_gemm_args *g, cu_gemm_descs *d, dt_err *err)
{
    dt_status st = cu_gemm_check(g, err);
    if (st != DT_OK) return st;
    *d = (cu_gemm_descs){};
    cublasOperation_t ta = g->ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb = g->tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    cudaDataType_t dt = g->i32 ? CUDA_R_32I : CUDA_R_32F; /* int8: int32 scale and D (exact) */
    LT_TRY(L->cublasLtMatmulDescCreate(&d->op, g->i32 ? CUBLAS_COMPUTE_32I : g->compute, dt), "matmul descriptor");
    LT_TRY(L->cublasLtMatmulDescSetAttribute(d->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), "transa");
    LT_TRY(L->cublasLtMatmulDescSetAttribute(d->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), "transb");
    if (g->bias) {
        cublasLtEpilogue_t ep = CUBLASLT_EPILOGUE_BIAS;
        LT_TRY(L->cublasLtMatmulDescSetAttribute(d->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof ep), "epilogue");
        LT_TRY(L->cublasLtMatmulDescSetAttribute(d->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g->bias, sizeof g->bias),
               "bias pointer");
    }
    LT_TRY(set_layout(L, &d->la, g->at, g->ta ? g->k : g->m, g->ta ? g->m : g->k, g->lda, g->batch, g->sa), "A layout");
    LT_TRY(set_layout(L, &d->lb, g->bt, g->tb ? g->n : g->k, g->tb ? g->k : g->n, g->ldb, g->batch, g->sb), "B layout");
    LT_TRY(set_layout(L, &d->ld, dt, g->m, g->n, g->ldd, g->batch, g->sd), "D layout");
done:
    if (st != DT_OK) cu_gemm_descs_free(L, d);
    return st;
}

/* The GEMM with the cached algorithm when it was picked for the same shape and the same pointer
 * alignments (an algorithm chosen for 256-byte aligned operands may not run on 64-byte aligned
 * ones); else the heuristic picks one and the cache keeps it. */
static dt_status gemm_algo(cuda_backend *cb, const cu_gemm_args *g0, cu_algo_cache *c, dt_err *err)
{
    cu_gemm_args ga = *g0;
    ga.compute = cu_compute_of(g0, cb->tf32); /* per backend: the cached algorithms stay valid */
    const cu_gemm_args *g = &ga;
    uint32_t aa = align_of(g->A, g->sa, elem_size(g->at)), ab = align_of(g->B, g->sb, elem_size(g->bt)),
             ad = align_of(g->D, g->sd, 4);
    int64_t key[8] = {g->m, g->n, g->k, g->batch, g->lda, g->ldb, g->ldd,
                      (int64_t)aa << 40 | (int64_t)ab << 20 | ad};
    int have = c->have && !memcmp(c->key, key, sizeof key);
    const dt_cuda_libs *L = cb->L;
    cu_gemm_descs d;
    cublasLtMatmulPreference_t pref = NULL;
    dt_status st = cu_gemm_descs_make(L, g, &d, err);
    if (st != DT_OK) return st;
    if (!have) {
        LT_TRY(L->cublasLtMatmulPreferenceCreate(&pref), "preference");
        uint64_t ws = cb->ws_size;
        LT_TRY(L->cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws),
               "workspace preference");
        LT_TRY(L->cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aa, sizeof aa), "alignment");
        LT_TRY(L->cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ab, sizeof ab), "alignment");
        LT_TRY(L->cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ad, sizeof ad), "alignment");
        LT_TRY(L->cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ad, sizeof ad), "alignment");
        cublasLtMatmulHeuristicResult_t h;
        int found = 0;
        LT_TRY(L->cublasLtMatmulAlgoGetHeuristic(cb->lt, d.op, d.la, d.lb, d.ld, d.ld, pref, 1, &h, &found),
               "algorithm heuristic");
        if (!found) {
            st = dt_fail(err, DT_EUNSUPPORTED, "cuBLASLt: no algorithm for a %lldx%lldx%lld GEMM", (long long)g->m,
                         (long long)g->n, (long long)g->k);
            goto done;
        }
        c->algo = h.algo;
        c->have = 1;
        memcpy(c->key, key, sizeof key);
    }
    {
        int32_t ia = (int32_t)g->alpha, ib = (int32_t)g->beta; /* an int32 scale type takes int32 scalars */
        const void *pa = g->i32 ? (const void *)&ia : (const void *)&g->alpha, *pb = g->i32 ? (const void *)&ib : (const void *)&g->beta;
        LT_TRY(L->cublasLtMatmul(cb->lt, d.op, pa, g->A, d.la, g->B, d.lb, pb, g->D, d.ld, g->D, d.ld, &c->algo, cb->ws,
                                 cb->ws_size, cb->stream),
               "matmul");
    }
done:
    if (pref) L->cublasLtMatmulPreferenceDestroy(pref);
    cu_gemm_descs_free(L, &d);
    return st;
}

dt_status cu_gemm(cuda_backend *cb, const cu_gemm_args *g, cu_algo_cache *cache, dt_err *err)
{
    cu_algo_cache c = {};
    return gemm_algo(cb, g, cache ? cache : &c, err);
}

/* ---- linear layers ---- */

cu_gemm_args cu_linear_args(int in, int out, int64_t m, dt_dtype dt, const void *w, const void *x, const float *b,
                            float *y)
{
    cudaDataType_t t = cu_cuda_type(dt);
    return (cu_gemm_args){1, 0, out, m, in, w, t, in, 0, x, t, in, 0, y, out, 0, 1, b, 1.0f, 0.0f, CUBLAS_COMPUTE_32F, 0};
}

/* The int8 GEMM of a quantized layer: acc[m, ldd] (int32) = codes[m, kp] · W8[np, kp]ᵀ, both padded. */
cu_gemm_args cu_qlinear_args(int64_t kp, int64_t np, int64_t m, const int8_t *w, const int8_t *x, int32_t *acc)
{
    return (cu_gemm_args){1, 0, np, m, kp, w, CUDA_R_8I, kp, 0, x, CUDA_R_8I, kp, 0, (float *)acc, np, 0, 1, NULL,
                          1.0f, 0.0f, CUBLAS_COMPUTE_32I, 1};
}

/* Host-side weight conversion to the layer's 16-bit dtype (dtype_math.h: the CPU's rounding). */
static void *host_weights(const float *w, size_t n, dt_dtype dt)
{
    if (dt == DT_F32) return NULL;
    uint16_t *h = (uint16_t *)malloc(n * 2);
    if (!h) return NULL;
    for (size_t i = 0; i < n; i++) h[i] = dtm_to16((int)dt, w[i]);
    return h;
}

dt_status cu_linear_create(dt_backend *be, const float *w, const float *b, int in, int out, dt_act act, int m_hint,
                           dt_dtype dtype, dt_linear **lin, dt_err *err)
{
    cuda_backend *cb = cu_enter(be);
    *lin = NULL;
    if (in <= 0 || out <= 0) return dt_fail(err, DT_EINVAL, "linear: in %d and out %d must be positive", in, out);
    if (!cu_is_float(dtype))
        return dt_fail(err, DT_EUNSUPPORTED, "linear: dtype %s is not run on CUDA (f32, bf16, f16)", dt_dtype_name(dtype));
    dt_linear *l = (dt_linear *)calloc(1, sizeof *l);
    if (!l) return dt_fail(err, DT_ENOMEM, "out of memory");
    *l = (dt_linear){CU_LIN_FLOAT, cb, in, out, act, dtype, NULL, NULL, {}};
    size_t n = (size_t)in * out;
    void *hw = host_weights(w, n, dtype);
    dt_status s = dtype != DT_F32 && !hw ? dt_fail(err, DT_ENOMEM, "out of memory")
                                         : cu_alloc_upload(cb, hw ? hw : w, n * cu_ftype(dtype).bytes, &l->w, err);
    free(hw);
    if (s == DT_OK && b) s = cu_alloc_upload(cb, b, (size_t)out * 4, (void **)&l->b, err);
    if (s != DT_OK) {
        cu_linear_destroy(l);
        return s;
    }
    *lin = l;
    return DT_OK;
}

static int64_t rows_of(const dt_tensor *t, int n)
{
    if ((t->ndim != 2 && t->ndim != 3) || t->shape[t->ndim - 1] != n || !dt_tensor_is_contiguous(t) ||
        t->dtype != DT_F32)
        return -1;
    return t->ndim == 2 ? t->shape[0] : t->shape[0] * t->shape[1];
}

dt_status cu_linear_forward(dt_backend *be, dt_linear *l, const dt_tensor *x, dt_tensor *y, dt_err *err)
{
    if (l->kind != CU_LIN_FLOAT) return cu_qlin_forward(be, l, x, y, err);
    cuda_backend *cb = cu_enter(be);
    int64_t m = rows_of(x, l->in);
    if (m < 0 || rows_of(y, l->out) != m)
        return dt_fail(err, DT_EINVAL, "linear: expected contiguous f32 tensors [M,%d] -> [M,%d]", l->in, l->out);
    if (m == 0) return DT_OK;
    const void *src = x->data;
    if (l->dt != DT_F32) {
        void *s;
        DT_TRY(cu_scratch(cb, CU_SLOT_A, (size_t)m * l->in * 2, &s, err));
        DT_TRY(cu_f32_to_16(cb, l->dt, (const float *)x->data, s, m * l->in, err));
        src = s;
    }
    cu_gemm_args g = cu_linear_args(l->in, l->out, m, l->dt, l->w, src, l->b, (float *)y->data);
    DT_TRY(gemm_algo(cb, &g, &l->cache, err));
    return cu_act_inplace(cb, l->act, (float *)y->data, m * l->out, err);
}

void cu_linear_destroy(dt_linear *l)
{
    if (!l) return;
    if (l->kind != CU_LIN_FLOAT) {
        cu_qlin_destroy(l);
        return;
    }
    cudaSetDevice(l->cb->dev);
    cu_free(l->cb, l->w);
    cu_free(l->cb, l->b);
    free(l);
}
