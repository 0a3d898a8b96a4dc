/* Attention on CUDA.
 *
 * Full attention: per sample and block of query rows, S = Q·Kᵀ for all heads as one
 * strided-batched cuBLASLt GEMM (f32, no TF32), a row softmax kernel adding scale, the caption
 * key mask and T5's per-head bias (softmax_math.h), and O = P·V as a second batched GEMM
 * written straight into the heads' columns of out. The score block is bounded by
 * cfg.attn_block_bytes (default 256 MB here). With bf16 or f16 compute, cuDNN's fused SDPA graph
 * (cuda_sdpa.cu) runs first; this path is its fallback and the f32 path.
 *
 * Banded (DiTFastAttn window) attention: one warp per (sample, head, query), an online softmax
 * over keys [lo, hi] of dtm_band_range only, so the work is ∝ N·(2w+1)·d; head dims up to 256. */
#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/softmax_math.h"

#define CU_ATTN_BLOCK_DEFAULT ((size_t)256 << 20)
#define CU_WIN_MAX_D 256

static int qkv_ok(const dt_tensor *t, int64_t B, int64_t C)
{
    return t->ndim == 3 && t->shape[0] == B && t->shape[2] == C && t->strides[2] == 1 && t->strides[1] >= C &&
           t->dtype == DT_F32;
}

/* Block reduction helpers (blockDim.x a multiple of 32, <= 1024). */
__device__ float block_max(float v, float *sh)
{
    for (int o = 16; o; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
    __syncthreads();
    if (threadIdx.x < 32) {
        v = threadIdx.x < (blockDim.x >> 5) ? sh[threadIdx.x] : -INFINITY;
        for (int o = 16; o; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
        if (threadIdx.x == 0) sh[0] = v;
    }
    __syncthreads();
    v = sh[0];
    __syncthreads();
    return v;
}

__device__ float block_sum(float v, float *sh)
{
    for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
    __syncthreads();
    if (threadIdx.x < 32) {
        v = threadIdx.x < (blockDim.x >> 5) ? sh[threadIdx.x] : 0.0f;
        for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (threadIdx.x == 0) sh[0] = v;
    }
    __syncthreads();
    v = sh[0];
    __syncthreads();
    return v;
}

/* One block per (head, row) of a [H, rows, Nk] score block: softmax with scale and biases.
 * head_bias (or NULL) is [H, Nq, Nk], rows starting at query q0. */
__global__ void k_softmax_rows(float *S, int64_t rows, int64_t Nk, float scale, const float *key_bias,
                               const float *head_bias, int64_t Nq, int64_t q0)
{
    __shared__ float sh[32];
    int64_t h = blockIdx.y, i = blockIdx.x;
    float *row = S + (h * rows + i) * Nk;
    const float *hb = head_bias ? head_bias + (h * Nq + q0 + i) * Nk : NULL;
    float m = -INFINITY;
    for (int64_t j = threadIdx.x; j < Nk; j += blockDim.x) {
        float s = dtm_attn_logit(row[j], scale, key_bias, hb, j);
        row[j] = s;
        m = fmaxf(m, s);
    }
    m = block_max(m, sh);
    float l = 0;
    for (int64_t j = threadIdx.x; j < Nk; j += blockDim.x) {
        float e = expf(row[j] - m);
        row[j] = e;
        l += e;
    }
    float inv = 1.0f / block_sum(l, sh);
    for (int64_t j = threadIdx.x; j < Nk; j += blockDim.x) row[j] *= inv;
}

/* S (Nk × rows per head, column-major, heads d apart in K and Q) = op(A)=Kᵀ-as-stored · Q. */
cu_gemm_args cu_attn_qk_args(const float *K, int64_t ks, const float *Q, int64_t qs, int64_t Nk, int64_t rows,
                             int64_t d, int heads, float *S)
{
    return (cu_gemm_args){1, 0, Nk, rows, d, K, CUDA_R_32F, ks, d, Q, CUDA_R_32F, qs, d, S, Nk, rows * Nk, heads,
                          NULL, 1.0f, 0.0f, CUBLAS_COMPUTE_32F, 0};
}

/* O (d × rows per head, leading dimension out's row stride) = V · P. */
cu_gemm_args cu_attn_pv_args(const float *V, int64_t vs, const float *S, int64_t Nk, int64_t rows, int64_t d,
                             int heads, float *O, int64_t os)
{
    return (cu_gemm_args){0, 0, d, rows, Nk, V, CUDA_R_32F, vs, d, S, CUDA_R_32F, Nk, rows * Nk, O, os, d, heads,
                          NULL, 1.0f, 0.0f, CUBLAS_COMPUTE_32F, 0};
}

dt_status cu_attention(dt_backend *be, const dt_tensor *q, const dt_tensor *k, const dt_tensor *v,
                       const dt_attn_bias *bias, int heads, float scale, dt_tensor *out, dt_err *err)
{
    cuda_backend *cb = cu_enter(be);
    int64_t B = q->ndim == 3 ? q->shape[0] : 0, Nq = q->ndim == 3 ? q->shape[1] : 0, C = q->ndim == 3 ? q->shape[2] : 0;
    int64_t Nk = k->ndim == 3 ? k->shape[1] : 0;
    if (heads <= 0 || C % heads || !qkv_ok(q, B, C) || !qkv_ok(k, B, C) || !qkv_ok(v, B, C) || !qkv_ok(out, B, C) ||
        v->shape[1] != Nk || out->shape[1] != Nq)
        return dt_fail(err, DT_EINVAL, "attention: expected f32 CUDA q [B,Nq,H·d], k and v [B,Nk,H·d], out [B,Nq,H·d] with unit channel stride");
    if (B == 0 || Nq == 0) return DT_OK;
    int ran = 0;
    if (Nk > 0) DT_TRY(cu_sdpa_attention(cb, q, k, v, bias, heads, scale, out, &ran, err));
    if (ran) return DT_OK;
    int64_t d = C / heads;
    size_t budget = cb->base.cfg.attn_block_bytes ? cb->base.cfg.attn_block_bytes : CU_ATTN_BLOCK_DEFAULT;
    int64_t qc = (int64_t)(budget / ((size_t)heads * Nk * sizeof(float)));
    qc = qc < 1 ? 1 : qc > Nq ? Nq : qc;
    float *S, *kb = NULL, *hb = NULL;
    DT_TRY(cu_scratch(cb, CU_SLOT_B, (size_t)heads * qc * Nk * sizeof(float), (void **)&S, err));
    if (bias && bias->key) DT_TRY(cu_upload_scratch(cb, CU_SLOT_C, bias->key, (size_t)B * Nk, &kb, err));
    if (bias && bias->head) DT_TRY(cu_upload_scratch(cb, CU_SLOT_D, bias->head, (size_t)heads * Nq * Nk, &hb, err));
    const float *Q = (const float *)q->data, *K = (const float *)k->data, *V = (const float *)v->data;
    float *O = (float *)out->data;
    for (int64_t b = 0; b < B; b++)
        for (int64_t q0 = 0; q0 < Nq; q0 += qc) {
            int64_t rows = Nq - q0 < qc ? Nq - q0 : qc;
            const float *Qb = Q + b * q->strides[0] + q0 * q->strides[1];
            /* S (Nk × rows per head, column-major) = Kᵀ-as-op(A) · Q */
            cu_gemm_args s = cu_attn_qk_args(K + b * k->strides[0], k->strides[1], Qb, q->strides[1], Nk, rows, d, heads, S);
            DT_TRY(cu_gemm(cb, &s, &cb->attn_algo[0], err));
            k_softmax_rows<<<dim3((unsigned)rows, (unsigned)heads), 256, 0, cb->stream>>>(
                S, rows, Nk, scale, kb ? kb + b * Nk : NULL, hb, Nq, q0);
            CU_LAUNCHED("attention softmax");
            /* O (d × rows per head, ld = out's row stride) = V · P */
            cu_gemm_args o = cu_attn_pv_args(V + b * v->strides[0], v->strides[1], S, Nk, rows, d, heads,
                                             O + b * out->strides[0] + q0 * out->strides[1], out->strides[1]);
            DT_TRY(cu_gemm(cb, &o, &cb->attn_algo[1], err));
        }
    return DT_OK;
}

/* One warp per (b, h, i): lane t holds channels t, t+32, ... of q and of the running output
 * (NC = ceil(d / 32) per lane, a compile-time count so they stay in registers). */
template <int NC>
__global__ void k_window_attention(const float *Q, const float *K, const float *V, float *O, int64_t N, int64_t d,
                                   int heads, int64_t qs0, int64_t qs1, int64_t ks0, int64_t ks1, int64_t vs0,
                                   int64_t vs1, int64_t os0, int64_t os1, float scale, int64_t w, int64_t total)
{
    int64_t warp = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (warp >= total) return;
    int64_t i = warp % N, h = (warp / N) % heads, b = warp / (N * heads);
    const float *q = Q + b * qs0 + i * qs1 + h * d;
    float qr[NC], acc[NC];
#pragma unroll
    for (int c = 0; c < NC; c++) {
        int64_t ch = lane + 32 * c;
        qr[c] = ch < d ? q[ch] : 0.0f;
        acc[c] = 0.0f;
    }
    int64_t lo, hi;
    dtm_band_range(i, N, w, &lo, &hi);
    dtm_softmax_state st = dtm_softmax_init();
    for (int64_t j = lo; j <= hi; j++) {
        const float *kr = K + b * ks0 + j * ks1 + h * d, *vr = V + b * vs0 + j * vs1 + h * d;
        float dot = 0;
#pragma unroll
        for (int c = 0; c < NC; c++) {
            int64_t ch = lane + 32 * c;
            if (ch < d) dot += qr[c] * kr[ch];
        }
        for (int o = 16; o; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
        float s = dot * scale;
        float r = dtm_softmax_push(&st, s);
        float p = expf(s - st.m);
#pragma unroll
        for (int c = 0; c < NC; c++) {
            int64_t ch = lane + 32 * c;
            if (ch < d) acc[c] = acc[c] * r + p * vr[ch];
        }
    }
    float *o = O + b * os0 + i * os1 + h * d;
#pragma unroll
    for (int c = 0; c < NC; c++) {
        int64_t ch = lane + 32 * c;
        if (ch < d) o[ch] = acc[c] / st.l;
    }
}

dt_status cu_window_attention(dt_backend *be, const dt_tensor *q, const dt_tensor *k, const dt_tensor *v, int heads,
                              float scale, int window, dt_tensor *out, dt_err *err)
{
    cuda_backend *cb = cu_enter(be);
    int64_t B = q->ndim == 3 ? q->shape[0] : 0, N = q->ndim == 3 ? q->shape[1] : 0, C = q->ndim == 3 ? q->shape[2] : 0;
    if (heads <= 0 || C % heads || window < 0 || !(scale > 0) || !qkv_ok(q, B, C) || !qkv_ok(k, B, C) ||
        !qkv_ok(v, B, C) || !qkv_ok(out, B, C) || k->shape[1] != N || v->shape[1] != N || out->shape[1] != N)
        return dt_fail(err, DT_EINVAL, "window_attention: expected f32 CUDA q, k, v, out [B,N,H·d], window >= 0, scale > 0");
    int64_t d = C / heads;
    if (d > CU_WIN_MAX_D) return dt_fail(err, DT_EUNSUPPORTED, "window_attention: head dim %lld > %d on CUDA", (long long)d, CU_WIN_MAX_D);
    int64_t total = B * heads * N;
    if (total == 0) return DT_OK;
    int64_t threads = total * 32;
    unsigned grid = (unsigned)((threads + 255) / 256);
#define WIN_LAUNCH(NC)                                                                                               \
    k_window_attention<NC><<<grid, 256, 0, cb->stream>>>(                                                            \
        (const float *)q->data, (const float *)k->data, (const float *)v->data, (float *)out->data, N, d, heads,     \
        q->strides[0], q->strides[1], k->strides[0], k->strides[1], v->strides[0], v->strides[1], out->strides[0],   \
        out->strides[1], scale, window, total)
    int nc = (int)((d + 31) / 32);
    if (nc <= 1) WIN_LAUNCH(1);
    else if (nc == 2) WIN_LAUNCH(2);
    else if (nc == 3) WIN_LAUNCH(3); /* PixArt: d = 72 */
    else if (nc == 4) WIN_LAUNCH(4);
    else WIN_LAUNCH(8);
#undef WIN_LAUNCH
    CU_LAUNCHED("window attention");
    return DT_OK;
}
