/* Internals of the CUDA backend (C++/CUDA only): the backend instance, its stream, pool and
 * library handles, the scratch slots, error helpers and the GEMM wrapper shared by the linear
 * layers and attention.
 *
 * Ordering: every op of one backend runs on its one stream (two contexts in two threads have
 * two streams); device memory comes from cudaMallocAsync on that stream (the device's default
 * pool, kept cached), so a buffer freed and reused stays ordered with the kernels that use it.
 * Host pointers an op receives (attention biases, RMSNorm weights) are uploaded into scratch
 * before the op returns; tensor_get synchronizes. */
#ifndef DT_CUDA_INTERNAL_H
#define DT_CUDA_INTERNAL_H
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include "kernels/cuda/cuda_libs.h"
extern "C" {
#include "kernels/backend.h"
#include "kernels/cuda/cuda_entry.h"
}
#include "kernels/cuda/dtype_math.h"

/* dtype_math.h's table is the one place a float type meets the libraries: its numbers are
 * checked here against dt_dtype and the CUDA headers. */
#define CU_SAME(a, b) ((int)(a) == (int)(b))
static_assert(CU_SAME(DTM_F32, DT_F32) && CU_SAME(DTM_F16, DT_F16) && CU_SAME(DTM_BF16, DT_BF16),
              "dtype_math.h numbers types as dt_dtype");
static_assert(CU_SAME(DTM_CUDA_R_32F, CUDA_R_32F) && CU_SAME(DTM_CUDA_R_16F, CUDA_R_16F) &&
                  CU_SAME(DTM_CUDA_R_16BF, CUDA_R_16BF),
              "dtype_math.h: cudaDataType_t codes");
static_assert(CU_SAME(DTM_CUDNN_FLOAT, CUDNN_DATA_FLOAT) && CU_SAME(DTM_CUDNN_HALF, CUDNN_DATA_HALF) &&
                  CU_SAME(DTM_CUDNN_BFLOAT16, CUDNN_DATA_BFLOAT16),
              "dtype_math.h: cudnnDataType_t codes");
#undef CU_SAME
static inline dtm_float_type cu_ftype(dt_dtype t) { return dtm_float_type_of((int)t); }
/* f32, bf16 or f16: the storage and compute types the float ops take. */
static inline int cu_is_float(dt_dtype t) { return cu_ftype(t).ok; }
static inline cudaDataType_t cu_cuda_type(dt_dtype t) { return (cudaDataType_t)cu_ftype(t).cuda; }

/* The algorithm of a GEMM shape (m, n, k, batch, lds) and operand alignments, reused while they
 * stay the same (the heuristic costs tens of microseconds per call). */
typedef struct {
    int have;
    int64_t key[8];
    cublasLtMatmulAlgo_t algo;
} cu_algo_cache;

#define CU_SCRATCH_SLOTS 4
enum { CU_SLOT_A = 0, CU_SLOT_B, CU_SLOT_C, CU_SLOT_D };

typedef struct {
    dt_backend base;
    int dev;
    cudaStream_t stream;
    const dt_cuda_libs *L;
    cublasLtHandle_t lt;
    cudnnHandle_t dnn;
    void *ws;               /* cuBLASLt workspace */
    size_t ws_size;
    void *scratch[CU_SCRATCH_SLOTS]; /* grown on demand, stream-ordered */
    size_t scratch_size[CU_SCRATCH_SLOTS];
    cu_algo_cache attn_algo[2]; /* attention's Q·Kᵀ and P·V GEMMs */
    int tf32;               /* f32 GEMMs through TF32 (--dtype tf32, or the alias DITRT_CUDA_TF32=1; never by default) */
    int attn_gemm;          /* attention always through the two GEMMs (attn_kernel gemm, DITRT_ATTN=gemm) */
    int verbose;            /* DITRT_VERBOSE=1: print each attention fallback reason once */
    struct cu_sdpa_cache *sdpa; /* cuDNN SDPA plans by shape (cuda_sdpa.cu); NULL until first used */
} cuda_backend;

/* Whether the DITRT_CUDA_TF32 value asks for TF32 ("1"; NULL, "0" or anything else: no). */
static inline int cu_tf32_requested(const char *v) { return v && v[0] == '1' && !v[1]; }

/* Makes be's device current for this thread and returns the instance. */
cuda_backend *cu_enter(dt_backend *be);
dt_status cu_fail(dt_err *err, cudaError_t e, const char *what);
#define CU_TRY(expr, what)                                  \
    do {                                                    \
        cudaError_t cu_e_ = (expr);                         \
        if (cu_e_ != cudaSuccess) return cu_fail(err, cu_e_, what); \
    } while (0)
/* After a kernel launch: launch errors (bad configuration) now, execution errors later. */
#define CU_LAUNCHED(what) CU_TRY(cudaGetLastError(), what)

/* Device scratch of at least `bytes` in slot s (contents not kept across growth). */
dt_status cu_scratch(cuda_backend *cb, int slot, size_t bytes, void **p, dt_err *err);
/* Host floats uploaded into scratch slot s (pageable source: the copy has read it on return). */
dt_status cu_upload_scratch(cuda_backend *cb, int slot, const float *host, size_t n, float **p, dt_err *err);
/* Device memory for the lifetime of a layer (weights), uploaded from host. */
dt_status cu_alloc_upload(cuda_backend *cb, const void *host, size_t bytes, void **p, dt_err *err);
static inline void cu_free(cuda_backend *cb, void *p) { if (p) cudaFreeAsync(p, cb->stream); }

/* Elementwise kernels' launch shape over n items. */
static inline unsigned cu_blocks(int64_t n, int threads)
{
    int64_t b = (n + threads - 1) / threads;
    return (unsigned)(b < 1 ? 1 : b > 65535 * 8 ? 65535 * 8 : b);
}

/* Conversions on the stream: f32 -> 16-bit storage of t (bf16 or f16), and f32 rounded to t
 * kept as f32 (dtype_math.h's rounding, the CPU's bit for bit). */
dt_status cu_f32_to_16(cuda_backend *cb, dt_dtype t, const float *src, void *dst, int64_t n, dt_err *err);
dt_status cu_round_to_f32(cuda_backend *cb, dt_dtype t, const float *src, float *dst, int64_t n, dt_err *err);
dt_status cu_act_inplace(cuda_backend *cb, dt_act act, float *y, int64_t n, dt_err *err);

/* One (strided-batched) cuBLASLt GEMM in column-major terms: D[m×n] = alpha·op(A)·op(B) + beta·D,
 * f32 D, optional bias[m] epilogue. A is rows×cols = (ta ? k×m : m×k) with leading dimension
 * lda; batch > 1 steps A, B, D by sa, sb, sd elements. */
typedef struct {
    int ta, tb;               /* transpose A / B */
    int64_t m, n, k;
    const void *A; cudaDataType_t at; int64_t lda; int64_t sa;
    const void *B; cudaDataType_t bt; int64_t ldb; int64_t sb;
    float *D; int64_t ldd; int64_t sd;
    int batch;
    const float *bias;        /* [m] or NULL */
    float alpha, beta;
    cublasComputeType_t compute;
    int i32;                  /* int8 A and B, int32 D (D points at int32), alpha/beta as integers, no bias */
} cu_gemm_args;
/* The compute type of a GEMM: f32 inputs through TF32 when asked, else as given. */
static inline cublasComputeType_t cu_compute_of(const cu_gemm_args *g, int tf32)
{
    return tf32 && g->compute == CUBLAS_COMPUTE_32F && g->at == CUDA_R_32F && g->bt == CUDA_R_32F
               ? CUBLAS_COMPUTE_32F_FAST_TF32
               : g->compute;
}
/* cache may be NULL (the heuristic runs every call). */
dt_status cu_gemm(cuda_backend *cb, const cu_gemm_args *g, cu_algo_cache *cache, dt_err *err);
/* The host-only half of a GEMM: argument checks and cuBLASLt descriptors (no GPU needed). */
typedef struct {
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, ld;
} cu_gemm_descs;
dt_status cu_gemm_check(const cu_gemm_args *g, dt_err *err);
dt_status cu_gemm_descs_make(const dt_cuda_libs *L, const cu_gemm_args *g, cu_gemm_descs *d, dt_err *err);
void cu_gemm_descs_free(const dt_cuda_libs *L, cu_gemm_descs *d);
/* The GEMMs the ops run, as argument builders the ops and the host self-test share:
 * a linear y[m,out] = x[m,in]·Wᵀ (+ b), and attention's S = Q·Kᵀ and O = P·V for one sample and
 * block of `rows` queries (all heads batched; q/k/v/o row strides qs/ks/vs/os, head dim d). */
cu_gemm_args cu_linear_args(int in, int out, int64_t m, dt_dtype dt, const void *w, const void *x, const float *b,
                            float *y);
/* The int8 GEMM of a quantized layer: acc[m, np] (int32) = codes[m, kp] · W8[np, kp]ᵀ (padded sizes). */
cu_gemm_args cu_qlinear_args(int64_t kp, int64_t np, int64_t m, const int8_t *w, const int8_t *x, int32_t *acc);
cu_gemm_args cu_attn_qk_args(const float *K, int64_t ks, const float *Q, int64_t qs, int64_t Nk, int64_t rows,
                             int64_t d, int heads, float *S);
cu_gemm_args cu_attn_pv_args(const float *V, int64_t vs, const float *S, int64_t Nk, int64_t rows, int64_t d,
                             int heads, float *O, int64_t os);

/* Convolution geometry and cuDNN descriptors (host-only; cuda_selftest.cu builds them without a
 * GPU): asymmetric padding becomes a zero-padded copy (lo/hi) and symmetric padding cuDNN's own. */
typedef struct {
    int64_t lo, hi, Hs, Ws; /* the copy's padding and size (0, 0, H, W: x itself) */
    int pad;                /* cuDNN's symmetric padding */
    int64_t Ho, Wo;         /* the output, as the CPU backend computes it */
    int fits;               /* the padded input is at least the kernel: else refused (C's truncating
                             * division would claim one output row that cuDNN rightly rejects) */
} cu_conv_plan_t;
void cu_conv_plan(int k, int stride, int pad_lo, int pad_hi, int64_t H, int64_t W, cu_conv_plan_t *p);
typedef struct {
    cudnnTensorDescriptor_t x, y, b;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t cv;
} cu_conv_descs;
cudnnStatus_t cu_conv_descs_make(const dt_cuda_libs *L, int cin, int cout, int k, int stride, int bias, int64_t B,
                                 const cu_conv_plan_t *p, cu_conv_descs *d);
void cu_conv_descs_free(const dt_cuda_libs *L, cu_conv_descs *d);

/* Linear layers: every dt_linear of this backend starts with an int kind; linear_forward and
 * linear_destroy dispatch on it (float layers in cuda_gemm.cu, the rest in cuda_qlinear.cu). */
enum { CU_LIN_FLOAT = 0, CU_LIN_QUANT, CU_LIN_OBSERVE };
dt_status cu_qlin_forward(dt_backend *be, dt_linear *l, const dt_tensor *x, dt_tensor *y, dt_err *err);
void cu_qlin_destroy(dt_linear *l);

/* The ops (one file per group). */
dt_status cu_linear_create(dt_backend *be, const float *w, const float *b, int in, int out, dt_act act, int m_hint,
                           dt_dtype dtype, dt_linear **lin, dt_err *err);
dt_status cu_linear_forward(dt_backend *be, dt_linear *l, const dt_tensor *x, dt_tensor *y, dt_err *err);
void cu_linear_destroy(dt_linear *l);
dt_status cu_qlinear_create(dt_backend *be, const dt_qweights *qw, const float *b, dt_act act, int m_hint,
                            dt_linear **lin, dt_err *err);
dt_status cu_linear_observe(dt_backend *be, dt_linear *inner, int in, float *amax, dt_linear **lin, dt_err *err);
dt_status cu_qlinear_keep_tokens(dt_backend *be, dt_linear *q, dt_linear *fp, const int *tokens, int n, dt_err *err);

dt_status cu_attention(dt_backend *be, const dt_tensor *q, const dt_tensor *k, const dt_tensor *v,
                       const dt_attn_bias *bias, int heads, float scale, dt_tensor *out, dt_err *err);
/* cuDNN's fused attention (cuda_sdpa.cu) for cu_attention's checked arguments: *ran = 1 when it
 * wrote out, 0 when the call must take the two-GEMM path (f32 compute, an unplannable shape...). */
dt_status cu_sdpa_attention(cuda_backend *cb, const dt_tensor *q, const dt_tensor *k, const dt_tensor *v,
                            const dt_attn_bias *bias, int heads, float scale, dt_tensor *out, int *ran, dt_err *err);
void cu_sdpa_cache_free(cuda_backend *cb);
dt_status cu_window_attention(dt_backend *be, const dt_tensor *q, const dt_tensor *k, const dt_tensor *v, int heads,
                              float scale, int window, dt_tensor *out, dt_err *err);

dt_status cu_layernorm_modulate(dt_backend *be, const dt_tensor *x, const dt_tensor *shift, const dt_tensor *scale,
                                float eps, dt_tensor *y, dt_err *err);
dt_status cu_gated_add(dt_backend *be, dt_tensor *x, const dt_tensor *y, const dt_tensor *gate, dt_err *err);
dt_status cu_activation(dt_backend *be, dt_act act, const dt_tensor *x, dt_tensor *y, dt_err *err);
dt_status cu_patchify(dt_backend *be, const dt_tensor *x, int p, dt_tensor *y, dt_err *err);
dt_status cu_unpatchify(dt_backend *be, const dt_tensor *x, int p, int h, int w, dt_tensor *y, dt_err *err);
dt_status cu_add_rows(dt_backend *be, const dt_tensor *x, const dt_tensor *r, dt_tensor *y, dt_err *err);
dt_status cu_repeat_rows(dt_backend *be, const dt_tensor *x, int reps, dt_tensor *y, dt_err *err);
dt_status cu_sub(dt_backend *be, const dt_tensor *a, const dt_tensor *b, dt_tensor *y, dt_err *err);
dt_status cu_cfg_combine(dt_backend *be, const dt_tensor *uncond, const dt_tensor *cond, float g, dt_tensor *y,
                         dt_err *err);
dt_status cu_rms_norm(dt_backend *be, const dt_tensor *x, const float *w, float eps, dt_tensor *y, dt_err *err);
dt_status cu_gated_act(dt_backend *be, dt_act act, const dt_tensor *x, dt_tensor *y, dt_err *err);
dt_status cu_geglu(dt_backend *be, dt_act act, const dt_tensor *x, dt_tensor *y, dt_err *err);

dt_status cu_conv2d_create(dt_backend *be, const float *w, const float *b, int cin, int cout, int k, int stride,
                           int pad_lo, int pad_hi, dt_dtype dtype, dt_conv2d **conv, dt_err *err);
dt_status cu_conv2d_forward(dt_backend *be, dt_conv2d *c, const dt_tensor *x, dt_tensor *y, int accumulate,
                            dt_err *err);
void cu_conv2d_destroy(dt_conv2d *c);
dt_status cu_group_norm(dt_backend *be, const dt_tensor *x, int groups, const dt_tensor *gamma, const dt_tensor *beta,
                        float eps, dt_act act, dt_tensor *y, dt_err *err);
dt_status cu_upsample_nearest2x(dt_backend *be, const dt_tensor *x, dt_tensor *y, dt_err *err);
dt_status cu_copy4d(dt_backend *be, const dt_tensor *src, dt_tensor *dst, dt_err *err);
dt_status cu_blend_edge(dt_backend *be, const dt_tensor *a, dt_tensor *b, int axis, int extent, dt_err *err);

#endif
