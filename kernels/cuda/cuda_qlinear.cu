/* Quantized linear layers on CUDA (ViDiT-Q W8A8 / W4A8, MixDQ float text tokens, calibration),
 * with the CPU backend's semantics (kernels/cpu/qlinear.c) and its per-element math
 * (quant_math.h, checked against the CPU on the host by tests/test_cuda_host.c).
 *
 * Per forward, on the backend's stream:
 *  1. one kernel per layer call quantizes every row (a thread block per row, the row in shared
 *     memory): balancing ⊙ signs, the block Hadamard stages, amax, int8 codes and the row scale;
 *  2. W4 layers expand their packed codes (times the group multipliers) to int8 in scratch
 *     right before the GEMM, so only the packed copy is resident;
 *  3. cuBLASLt's int8·int8 → int32 GEMM (IMMA; exact), TN with m, k and the leading dimensions
 *     padded to multiples of 4 (K to 16) with zero codes, which add nothing;
 *  4. one epilogue kernel: y = act(acc·ascale[m]·wscale[n] + b[n]) (in place over y when no
 *     padding of the output channels was needed).
 * The integer results are exact and every float operation is the CPU's in the same order, so the
 * outputs equal the CPU backend's bit for bit wherever the CPU's own int8 GEMM is exact (always
 * with VNNI; K <= 1040 on its f32 fallback): make test-gpu asserts it.
 * Scratch slots: A the int32 accumulators (when padded), B the codes, C the row scales, D the
 * expanded W4 weights; MixDQ's gathered rows use stream-ordered allocations of their own,
 * since the float layer it calls uses slot A. */
#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/quant_math.h"
extern "C" {
#include "kernels/quant.h"
}
#include <stdlib.h>
#include <string.h>

/* Rows up to this many channels fit one block's shared memory (48 KB, less the reduction). */
#define CU_QK_MAX 12224

typedef struct {
    int kind; /* CU_LIN_QUANT */
    cuda_backend *cb;
    int in, out, wbits, group, block;
    int64_t kp, np;    /* padded K (codes per row) and N (output channels of the GEMM) */
    dt_act act;
    float rs;          /* 127·sqrt(block), as the CPU computes it */
    int8_t *w8;        /* W8: [np, kp] int8, zero padded */
    uint8_t *w4;       /* W4: packed [out, in/2] */
    uint8_t *gscale;   /* W4 group-wise: [out, in/group] */
    float *wscale, *bias, *ss; /* [out], [out] or NULL, [in] (smooth·signs) or NULL */
    cu_algo_cache cache;
    dt_linear *fp;     /* MixDQ: the float layer for the rows of tokens fp_tok */
    int *fp_tok, nfp;
    int *idx;          /* device row indices of the kept tokens for idx_b sequences of idx_t */
    int64_t idx_b, idx_t, idx_n;
} cu_qlinear;

typedef struct {
    int kind; /* CU_LIN_OBSERVE */
    cuda_backend *cb;
    int in;
    dt_linear *inner;
    float *amax; /* the caller's host buffer */
} cu_observer;

/* ---- kernels ---- */

/* One block per row: t = balanced row, Hadamard stages, amax, codes, scale (quant_math.h). */
static __global__ void k_qrows(const float *x, int64_t K, int64_t Kp, const float *ss, int block, float rs, int8_t *q,
                               float *ascale)
{
    extern __shared__ float t[];
    __shared__ float red[32];
    const int64_t m = blockIdx.x;
    const float *xr = x + m * K;
    for (int64_t j = threadIdx.x; j < K; j += blockDim.x) t[j] = dtm_qbalance(xr[j], ss, j);
    __syncthreads();
    for (int64_t h = 1; h < block; h *= 2) {
        for (int64_t p = threadIdx.x; p < K / 2; p += blockDim.x) dtm_fwht_butterfly(t, p, h);
        __syncthreads();
    }
    float a = 0;
    for (int64_t j = threadIdx.x; j < K; j += blockDim.x) {
        float v = fabsf(t[j]);
        a = v > a ? v : a;
    }
    for (int off = 16; off; off /= 2) {
        float o = __shfl_xor_sync(0xffffffffu, a, off);
        a = o > a ? o : a;
    }
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = (blockDim.x + 31) / 32;
    if (lane == 0) red[warp] = a;
    __syncthreads();
    if (warp == 0) {
        a = lane < nw ? red[lane] : 0.0f;
        for (int off = 16; off; off /= 2) {
            float o = __shfl_xor_sync(0xffffffffu, a, off);
            a = o > a ? o : a;
        }
        if (lane == 0) red[0] = a;
    }
    __syncthreads();
    const float amax = red[0], inv = dtm_qinv(amax);
    int8_t *qr = q + m * Kp;
    for (int64_t j = threadIdx.x; j < Kp; j += blockDim.x) qr[j] = j < K ? dtm_quantize(t[j], inv) : (int8_t)0;
    if (threadIdx.x == 0) ascale[m] = dtm_qrow_scale(amax, rs);
}

static __global__ void k_w4_expand(const uint8_t *packed, const uint8_t *gscale, int group, int64_t out, int64_t K,
                                   int64_t Np, int64_t Kp, int8_t *w)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < Np * Kp; i += (int64_t)gridDim.x * blockDim.x)
        w[i] = dtm_w4_expand(packed, gscale, group, out, K, i / Kp, i % Kp);
}

static __global__ void k_qepilogue(const int32_t *acc, int64_t lda, const float *ascale, const float *ws, const float *b,
                                   int act, int64_t M, int64_t N, float *y)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < M * N; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t m = i / N, n = i % N;
        y[i] = dtm_qepilogue(acc[m * lda + n], ascale[m], ws[n], b, n, act);
    }
}

/* amax_dev[j] = max over rows of |x[m, j]| (a thread per channel: coalesced rows). */
static __global__ void k_colmax(const float *x, int64_t M, int64_t K, float *amax)
{
    for (int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; j < K; j += (int64_t)gridDim.x * blockDim.x) {
        float a = 0;
        for (int64_t m = 0; m < M; m++) {
            float v = fabsf(x[m * K + j]);
            a = v > a ? v : a;
        }
        amax[j] = a;
    }
}

/* dst row (didx ? didx[r] : r) = src row (sidx ? sidx[r] : r), rows of W floats. */
static __global__ void k_rows_copy(const float *src, const int *sidx, float *dst, const int *didx, int64_t rows, int64_t W)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < rows * W; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / W, j = i % W;
        dst[(didx ? didx[r] : r) * W + j] = src[(sidx ? sidx[r] : r) * W + j];
    }
}

/* ---- creation ---- */

static void qlinear_free(cu_qlinear *l)
{
    cuda_backend *cb = l->cb;
    cudaSetDevice(cb->dev);
    cu_free(cb, l->w8);
    cu_free(cb, l->w4);
    cu_free(cb, l->gscale);
    cu_free(cb, l->wscale);
    cu_free(cb, l->bias);
    cu_free(cb, l->ss);
    cu_free(cb, l->idx);
    if (l->fp) cu_linear_destroy(l->fp);
    free(l->fp_tok);
    free(l);
}

/* The checks of the CPU backend's qlinear_create, plus the one-block-per-row bound. */
static dt_status check_qweights(const dt_qweights *qw, dt_err *err)
{
    if (!qw || qw->in <= 0 || qw->out <= 0 || (qw->wbits != 8 && qw->wbits != 4) || !qw->q || !qw->wscale ||
        (qw->wbits == 4 && qw->in % 2))
        return dt_fail(err, DT_EINVAL, "qlinear: bad quantized weights (%d x %d, %d bits)", qw ? qw->out : 0,
                       qw ? qw->in : 0, qw ? qw->wbits : 0);
    if (qw->signs && (qw->rot_block <= 0 || (qw->rot_block & (qw->rot_block - 1)) || qw->in % qw->rot_block))
        return dt_fail(err, DT_EINVAL, "qlinear: rotation block %d does not tile %d channels in powers of two",
                       qw->rot_block, qw->in);
    if (qw->in > CU_QK_MAX)
        return dt_fail(err, DT_EUNSUPPORTED, "qlinear: %d input channels exceed the CUDA row kernel's %d", qw->in,
                       CU_QK_MAX);
    return dt_qweights_check_groups(qw, err);
}

/* W8 codes [out, in] into a zero-padded [np, kp] host copy. */
static int8_t *pad_w8(const dt_qweights *qw, int64_t kp, int64_t np)
{
    int8_t *w = (int8_t *)calloc((size_t)(np * kp), 1);
    if (w)
        for (int n = 0; n < qw->out; n++) memcpy(w + n * kp, qw->q + (size_t)n * qw->in, (size_t)qw->in);
    return w;
}

static dt_status upload_weights(cu_qlinear *l, const dt_qweights *qw, const float *b, dt_err *err)
{
    cuda_backend *cb = l->cb;
    const size_t in = (size_t)qw->in, out = (size_t)qw->out;
    if (qw->wbits == 8) {
        int8_t *w = pad_w8(qw, l->kp, l->np);
        if (!w) return dt_fail(err, DT_ENOMEM, "out of memory");
        dt_status s = cu_alloc_upload(cb, w, (size_t)(l->np * l->kp), (void **)&l->w8, err);
        free(w);
        DT_TRY(s);
    } else {
        DT_TRY(cu_alloc_upload(cb, qw->q, dt_qweights_qbytes(qw->in, qw->out, 4), (void **)&l->w4, err));
        if (qw->group) DT_TRY(cu_alloc_upload(cb, qw->gscale, out * (in / (size_t)qw->group), (void **)&l->gscale, err));
    }
    DT_TRY(cu_alloc_upload(cb, qw->wscale, out * sizeof(float), (void **)&l->wscale, err));
    if (b) DT_TRY(cu_alloc_upload(cb, b, out * sizeof(float), (void **)&l->bias, err));
    if (qw->smooth || qw->signs) { /* the CPU's ss: smooth·(±1), so x·ss rounds as (x·smooth)·(±1) */
        float *ss = (float *)malloc(in * sizeof(float));
        if (!ss) return dt_fail(err, DT_ENOMEM, "out of memory");
        for (size_t j = 0; j < in; j++)
            ss[j] = (qw->smooth ? qw->smooth[j] : 1.0f) * (qw->signs && qw->signs[j] < 0 ? -1.0f : 1.0f);
        dt_status s = cu_alloc_upload(cb, ss, in * sizeof(float), (void **)&l->ss, err);
        free(ss);
        DT_TRY(s);
    }
    return DT_OK;
}

dt_status cu_qlinear_create(dt_backend *be, const dt_qweights *qw, const float *b, dt_act act, int m_hint,
                            dt_linear **lin, dt_err *err)
{
    cuda_backend *cb = cu_enter(be);
    *lin = NULL;
    DT_TRY(check_qweights(qw, err));
    cu_qlinear *l = (cu_qlinear *)calloc(1, sizeof *l);
    if (!l) return dt_fail(err, DT_ENOMEM, "out of memory");
    l->kind = CU_LIN_QUANT;
    l->cb = cb;
    l->in = qw->in;
    l->out = qw->out;
    l->wbits = qw->wbits;
    l->group = qw->group;
    l->block = qw->signs ? qw->rot_block : 1;
    l->kp = dtm_pad_k(qw->in);
    l->np = dtm_pad_n(qw->out);
    l->act = act;
    l->rs = 127.0f * sqrtf((float)l->block);
    dt_status s = upload_weights(l, qw, b, err);
    if (s != DT_OK) {
        qlinear_free(l);
        return s;
    }
    *lin = (dt_linear *)l;
    return DT_OK;
}

dt_status cu_linear_observe(dt_backend *be, dt_linear *inner, int in, float *amax, dt_linear **lin, dt_err *err)
{
    cuda_backend *cb = cu_enter(be);
    *lin = NULL;
    if (!inner || !amax || in <= 0) return dt_fail(err, DT_EINVAL, "linear_observe: needs a layer and an amax[%d] buffer", in);
    cu_observer *o = (cu_observer *)calloc(1, sizeof *o);
    if (!o) return dt_fail(err, DT_ENOMEM, "out of memory");
    *o = (cu_observer){CU_LIN_OBSERVE, cb, in, inner, amax};
    *lin = (dt_linear *)o;
    return DT_OK;
}

dt_status cu_qlinear_keep_tokens(dt_backend *be, dt_linear *q, dt_linear *fp, const int *tokens, int n, dt_err *err)
{
    cu_qlinear *l = (cu_qlinear *)q;
    if (!q || *(const int *)q != CU_LIN_QUANT || !fp || n <= 0 || l->fp)
        return dt_fail(err, DT_EINVAL, "qlinear: float tokens need a quantized layer (once) and a float one");
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0) return dt_fail(err, DT_EINVAL, "qlinear: float token index %d is negative", tokens[i]);
    l->fp_tok = (int *)malloc((size_t)n * sizeof(int));
    if (!l->fp_tok) return dt_fail(err, DT_ENOMEM, "out of memory");
    memcpy(l->fp_tok, tokens, (size_t)n * sizeof(int));
    l->nfp = n;
    l->fp = fp;
    return DT_OK;
}

/* ---- forward ---- */

static int64_t rows_of(const dt_tensor *t, int n)
{
    if ((t->ndim != 2 && t->ndim != 3) || t->shape[t->ndim - 1] != n || !dt_tensor_is_contiguous(t) ||
        t->dtype != DT_F32)
        return -1;
    return t->ndim == 2 ? t->shape[0] : t->shape[0] * t->shape[1];
}

static dt_status qlinear_forward(cuda_backend *cb, cu_qlinear *l, const float *x, int64_t M, float *y, dt_err *err)
{
    void *q, *as, *acc = y, *w = l->w8;
    DT_TRY(cu_scratch(cb, CU_SLOT_B, (size_t)(M * l->kp), &q, err));
    DT_TRY(cu_scratch(cb, CU_SLOT_C, (size_t)M * sizeof(float), &as, err));
    if (l->np != l->out) DT_TRY(cu_scratch(cb, CU_SLOT_A, (size_t)(M * l->np) * sizeof(int32_t), &acc, err));
    k_qrows<<<(unsigned)M, 256, (size_t)l->in * sizeof(float), cb->stream>>>(x, l->in, l->kp, l->ss, l->block, l->rs,
                                                                               (int8_t *)q, (float *)as);
    CU_LAUNCHED("activation quantization");
    if (l->wbits == 4) {
        DT_TRY(cu_scratch(cb, CU_SLOT_D, (size_t)(l->np * l->kp), &w, err));
        k_w4_expand<<<cu_blocks(l->np * l->kp, 256), 256, 0, cb->stream>>>(l->w4, l->gscale, l->group, l->out, l->in,
                                                                             l->np, l->kp, (int8_t *)w);
        CU_LAUNCHED("4-bit weight expansion");
    }
    cu_gemm_args g = cu_qlinear_args(l->kp, l->np, M, (const int8_t *)w, (const int8_t *)q, (int32_t *)acc);
    DT_TRY(cu_gemm(cb, &g, &l->cache, err));
    k_qepilogue<<<cu_blocks(M * l->out, 256), 256, 0, cb->stream>>>((const int32_t *)acc, l->np, (const float *)as,
                                                                      l->wscale, l->bias, (int)l->act, M, l->out, y);
    CU_LAUNCHED("int8 epilogue");
    return DT_OK;
}

/* The device row indices b·T + token of the kept tokens (< T) for B sequences, uploaded when
 * (B, T) changes (the host list is read before the upload returns: cu_alloc_upload syncs). */
static dt_status token_rows(cu_qlinear *l, int64_t B, int64_t T, dt_err *err)
{
    if (l->idx && l->idx_b == B && l->idx_t == T) return DT_OK;
    cu_free(l->cb, l->idx);
    l->idx = NULL;
    l->idx_n = 0;
    int *h = (int *)malloc((size_t)(B * l->nfp) * sizeof(int) + 1);
    if (!h) return dt_fail(err, DT_ENOMEM, "out of memory");
    int64_t r = 0;
    for (int64_t b = 0; b < B; b++)
        for (int i = 0; i < l->nfp; i++)
            if (l->fp_tok[i] < T) h[r++] = (int)(b * T + l->fp_tok[i]);
    dt_status s = r ? cu_alloc_upload(l->cb, h, (size_t)r * sizeof(int), (void **)&l->idx, err) : DT_OK;
    free(h);
    DT_TRY(s);
    l->idx_b = B, l->idx_t = T, l->idx_n = r;
    return DT_OK;
}

/* MixDQ: recomputes the rows of the kept tokens of each of the M/T sequences with the float layer. */
static dt_status float_tokens(cuda_backend *cb, cu_qlinear *l, const float *x, int64_t M, int64_t T, float *y,
                              dt_err *err)
{
    if (T <= 0 || M % T) return dt_fail(err, DT_EINVAL, "linear: layer with float text tokens needs a [B, T, %d] input", l->in);
    DT_TRY(token_rows(l, M / T, T, err));
    const int64_t r = l->idx_n;
    if (!r) return DT_OK;
    float *xs = NULL, *ys = NULL;
    CU_TRY(cudaMallocAsync((void **)&xs, (size_t)(r * l->in) * sizeof(float), cb->stream), "token rows");
    cudaError_t e = cudaMallocAsync((void **)&ys, (size_t)(r * l->out) * sizeof(float), cb->stream);
    if (e != cudaSuccess) {
        cu_free(cb, xs);
        return cu_fail(err, e, "token rows");
    }
    k_rows_copy<<<cu_blocks(r * l->in, 256), 256, 0, cb->stream>>>(x, l->idx, xs, NULL, r, l->in);
    dt_status s = cudaGetLastError() == cudaSuccess ? DT_OK : dt_fail(err, DT_EBACKEND, "CUDA: token gather launch failed");
    int64_t xsh[2] = {r, l->in}, ysh[2] = {r, l->out};
    dt_tensor tx = dt_tensor_view(xs, DT_F32, 2, xsh), ty = dt_tensor_view(ys, DT_F32, 2, ysh);
    tx.device = ty.device = DT_DEV_CUDA;
    if (s == DT_OK) s = cu_linear_forward(&cb->base, l->fp, &tx, &ty, err);
    if (s == DT_OK) {
        k_rows_copy<<<cu_blocks(r * l->out, 256), 256, 0, cb->stream>>>(ys, NULL, y, l->idx, r, l->out);
        if (cudaGetLastError() != cudaSuccess) s = dt_fail(err, DT_EBACKEND, "CUDA: token scatter launch failed");
    }
    cu_free(cb, xs);
    cu_free(cb, ys);
    return s;
}

/* Calibration: folds the column maxima of x into the caller's host amax, then runs the inner layer. */
static dt_status observe_forward(cuda_backend *cb, cu_observer *o, const dt_tensor *x, dt_tensor *y, dt_err *err)
{
    int64_t M = rows_of(x, o->in);
    if (M < 0) return dt_fail(err, DT_EINVAL, "linear: expected contiguous f32 [M,%d] input", o->in);
    if (M > 0) {
        void *d;
        DT_TRY(cu_scratch(cb, CU_SLOT_B, (size_t)o->in * sizeof(float), &d, err));
        k_colmax<<<cu_blocks(o->in, 128), 128, 0, cb->stream>>>((const float *)x->data, M, o->in, (float *)d);
        CU_LAUNCHED("calibration maxima");
        float *h = (float *)malloc((size_t)o->in * sizeof(float));
        if (!h) return dt_fail(err, DT_ENOMEM, "out of memory");
        cudaError_t e = cudaMemcpyAsync(h, d, (size_t)o->in * sizeof(float), cudaMemcpyDeviceToHost, cb->stream);
        if (e == cudaSuccess) e = cudaStreamSynchronize(cb->stream);
        if (e == cudaSuccess)
            for (int j = 0; j < o->in; j++)
                if (h[j] > o->amax[j]) o->amax[j] = h[j];
        free(h);
        if (e != cudaSuccess) return cu_fail(err, e, "calibration maxima");
    }
    return cu_linear_forward(&cb->base, o->inner, x, y, err);
}

dt_status cu_qlin_forward(dt_backend *be, dt_linear *lin, const dt_tensor *x, dt_tensor *y, dt_err *err)
{
    cuda_backend *cb = cu_enter(be);
    if (*(const int *)lin == CU_LIN_OBSERVE) return observe_forward(cb, (cu_observer *)lin, x, y, err);
    cu_qlinear *l = (cu_qlinear *)lin;
    int64_t M = rows_of(x, l->in);
    if (M < 0 || rows_of(y, l->out) != M)
        return dt_fail(err, DT_EINVAL, "linear: expected contiguous f32 [M,%d] -> [M,%d]", l->in, l->out);
    if (M == 0) return DT_OK;
    DT_TRY(qlinear_forward(cb, l, (const float *)x->data, M, (float *)y->data, err));
    return l->nfp ? float_tokens(cb, l, (const float *)x->data, M, x->ndim == 3 ? x->shape[1] : 0, (float *)y->data, err)
                  : DT_OK;
}

void cu_qlin_destroy(dt_linear *lin)
{
    if (*(const int *)lin == CU_LIN_OBSERVE) {
        cu_observer *o = (cu_observer *)lin;
        cu_linear_destroy(o->inner);
        free(o);
    } else qlinear_free((cu_qlinear *)lin);
}
