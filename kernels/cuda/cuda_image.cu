/* VAE ops on CUDA: convolutions through cuDNN (NHWC; legacy convolution API, loaded with
 * dlopen), GroupNorm(+act) with statistics in double, nearest 2x upsampling, strided 4-D copies
 * and the tiled-VAE seam blend as own kernels.
 *
 * bf16 and f16 convolutions: the weights and the input are rounded to the conv's type but kept
 * in f32 (dtype_math.h), and the convolution runs in f32 with FMA math only (no TF32): the
 * products of two bf16 or two f16 values are exact in f32, so this is "16-bit inputs, f32
 * accumulation" as on the CPU, at f32 speed. A native 16-bit cuDNN graph (16-bit in, f32 out)
 * is the faster follow-up. Normalized activations may be stored in bf16 or f16 (the VAE's cd).
 * Asymmetric padding (pad_lo != pad_hi; cuDNN's legacy API pads symmetrically) copies the input
 * into a zero-padded scratch tensor first. */
#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/norm_math.h"
#include "kernels/cuda/patch_math.h"
#include <stdlib.h>

#define GRID_LOOP(i, n) \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

struct dt_conv2d {
    cuda_backend *cb;
    int cin, cout, k, stride, pad_lo, pad_hi;
    dt_dtype dt;
    float *w;   /* [cout, k, k, cin] (cuDNN NHWC filter), rounded to dt (f32: as given) */
    float *b;   /* [cout] or NULL */
    int64_t algo_shape[3]; /* B, H, W the cached algorithm is for */
    int algo;
    size_t ws_bytes;
};

static dt_status dnn_fail(const cuda_backend *cb, dt_err *err, cudnnStatus_t s, const char *what)
{
    return dt_fail(err, DT_EBACKEND, "cuDNN: %s: %s", what, cb->L->cudnnGetErrorString(s));
}

dt_status cu_conv2d_create(dt_backend *be, const float *w, const float *b, int cin, int cout, int k, int stride,
                           int pad_lo, int pad_hi, dt_dtype dtype, dt_conv2d **conv, dt_err *err)
{
    cuda_backend *cb = cu_enter(be);
    *conv = NULL;
    if (cin <= 0 || cout <= 0 || k <= 0 || stride <= 0 || pad_lo < 0 || pad_hi < 0)
        return dt_fail(err, DT_EINVAL, "conv2d: bad geometry (cin %d, cout %d, k %d, stride %d, pad %d/%d)", cin, cout, k,
                       stride, pad_lo, pad_hi);
    if (!cu_is_float(dtype))
        return dt_fail(err, DT_EUNSUPPORTED, "conv2d: dtype %s is not run on CUDA (f32, bf16, f16)", dt_dtype_name(dtype));
    size_t n = (size_t)cout * cin * k * k;
    float *h = (float *)malloc(n * sizeof(float));
    if (!h) return dt_fail(err, DT_ENOMEM, "out of memory");
    for (int o = 0; o < cout; o++) /* torch [cout, cin, ky, kx] -> [cout, ky, kx, cin] */
        for (int c = 0; c < cin; c++)
            for (int t = 0; t < k * k; t++) {
                float v = w[((size_t)o * cin + c) * k * k + t];
                h[((size_t)o * k * k + t) * cin + c] = dtm_round_to((int)dtype, v);
            }
    dt_conv2d *cv = (dt_conv2d *)calloc(1, sizeof *cv);
    dt_status s = cv ? DT_OK : dt_fail(err, DT_ENOMEM, "out of memory");
    if (s == DT_OK) {
        *cv = (dt_conv2d){cb, cin, cout, k, stride, pad_lo, pad_hi, dtype, NULL, NULL, {-1, -1, -1}, 0, 0};
        s = cu_alloc_upload(cb, h, n * sizeof(float), (void **)&cv->w, err);
    }
    if (s == DT_OK && b) s = cu_alloc_upload(cb, b, (size_t)cout * sizeof(float), (void **)&cv->b, err);
    free(h);
    if (s != DT_OK) {
        cu_conv2d_destroy(cv);
        return s;
    }
    *conv = cv;
    return DT_OK;
}

void cu_conv2d_destroy(dt_conv2d *c)
{
    if (!c) return;
    cudaSetDevice(c->cb->dev);
    cu_free(c->cb, c->w);
    cu_free(c->cb, c->b);
    free(c);
}

/* x [B,H,W,C] (float type xt) -> y [B, H+lo+hi, W+lo+hi, C] f32, zero border, rounded to type rt. */
__global__ void k_pad_nhwc(const void *x, int xt, float *y, int64_t H, int64_t W, int64_t C, int64_t lo, int64_t hi,
                           int rt, int64_t n)
{
    int64_t Hp = H + lo + hi, Wp = W + lo + hi;
    GRID_LOOP(o, n)
    {
        int64_t c = o % C, xx = (o / C) % Wp, yy = (o / (C * Wp)) % Hp, b = o / (C * Wp * Hp);
        int64_t sy = yy - lo, sx = xx - lo;
        float v = 0;
        if (sy >= 0 && sy < H && sx >= 0 && sx < W) {
            int64_t i = ((b * H + sy) * W + sx) * C + c;
            v = dtm_load(xt, x, i);
        }
        y[o] = dtm_round_to(rt, v);
    }
}

static int nhwc_ok(const dt_tensor *t, int c)
{
    return t->ndim == 4 && t->shape[3] == c && dt_tensor_is_contiguous(t);
}

void cu_conv_plan(int k, int stride, int pad_lo, int pad_hi, int64_t H, int64_t W, cu_conv_plan_t *p)
{
    int symmetric = pad_lo == pad_hi;
    p->lo = symmetric ? 0 : pad_lo, p->hi = symmetric ? 0 : pad_hi;
    p->Hs = H + p->lo + p->hi, p->Ws = W + p->lo + p->hi;
    p->pad = symmetric ? pad_lo : 0;
    p->Ho = (H + pad_lo + pad_hi - k) / stride + 1, p->Wo = (W + pad_lo + pad_hi - k) / stride + 1;
    p->fits = H + pad_lo + pad_hi >= k && W + pad_lo + pad_hi >= k;
}

void cu_conv_descs_free(const dt_cuda_libs *L, cu_conv_descs *d)
{
    if (d->x) L->cudnnDestroyTensorDescriptor(d->x);
    if (d->y) L->cudnnDestroyTensorDescriptor(d->y);
    if (d->b) L->cudnnDestroyTensorDescriptor(d->b);
    if (d->w) L->cudnnDestroyFilterDescriptor(d->w);
    if (d->cv) L->cudnnDestroyConvolutionDescriptor(d->cv);
    *d = (cu_conv_descs){};
}

cudnnStatus_t cu_conv_descs_make(const dt_cuda_libs *L, int cin, int cout, int k, int stride, int bias, int64_t B,
                                 const cu_conv_plan_t *p, cu_conv_descs *d)
{
    int64_t H = p->Hs, W = p->Ws, Ho = p->Ho, Wo = p->Wo;
    int pad = p->pad;
    cudnnStatus_t s;
#define DNN(x) if ((s = (x)) != CUDNN_STATUS_SUCCESS) return s
    DNN(L->cudnnCreateTensorDescriptor(&d->x));
    DNN(L->cudnnCreateTensorDescriptor(&d->y));
    DNN(L->cudnnCreateFilterDescriptor(&d->w));
    DNN(L->cudnnCreateConvolutionDescriptor(&d->cv));
    DNN(L->cudnnSetTensor4dDescriptor(d->x, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, (int)B, cin, (int)H, (int)W));
    DNN(L->cudnnSetTensor4dDescriptor(d->y, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, (int)B, cout, (int)Ho, (int)Wo));
    DNN(L->cudnnSetFilter4dDescriptor(d->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC, cout, cin, k, k));
    DNN(L->cudnnSetConvolution2dDescriptor(d->cv, pad, pad, stride, stride, 1, 1, CUDNN_CROSS_CORRELATION,
                                           CUDNN_DATA_FLOAT));
    DNN(L->cudnnSetConvolutionMathType(d->cv, CUDNN_FMA_MATH)); /* no TF32 */
    if (bias) {
        DNN(L->cudnnCreateTensorDescriptor(&d->b));
        DNN(L->cudnnSetTensor4dDescriptor(d->b, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, 1, cout, 1, 1));
    }
#undef DNN
    return CUDNN_STATUS_SUCCESS;
}

/* The fastest algorithm cuDNN's heuristic offers whose workspace it can size. */
static cudnnStatus_t pick_algo(cuda_backend *cb, dt_conv2d *c, const cu_conv_descs *d, int64_t B, int64_t H, int64_t W)
{
    if (c->algo_shape[0] == B && c->algo_shape[1] == H && c->algo_shape[2] == W) return CUDNN_STATUS_SUCCESS;
    const dt_cuda_libs *L = cb->L;
    cudnnConvolutionFwdAlgoPerf_t perf[8];
    int found = 0;
    cudnnStatus_t s = L->cudnnGetConvolutionForwardAlgorithm_v7(cb->dnn, d->x, d->w, d->cv, d->y, 8, &found, perf);
    if (s != CUDNN_STATUS_SUCCESS) return s;
    for (int i = 0; i < found; i++) {
        size_t ws = 0;
        if (perf[i].status != CUDNN_STATUS_SUCCESS ||
            L->cudnnGetConvolutionForwardWorkspaceSize(cb->dnn, d->x, d->w, d->cv, d->y, perf[i].algo, &ws) !=
                CUDNN_STATUS_SUCCESS)
            continue;
        c->algo = (int)perf[i].algo;
        c->ws_bytes = ws;
        c->algo_shape[0] = B, c->algo_shape[1] = H, c->algo_shape[2] = W;
        return CUDNN_STATUS_SUCCESS;
    }
    return CUDNN_STATUS_NOT_SUPPORTED;
}

dt_status cu_conv2d_forward(dt_backend *be, dt_conv2d *c, const dt_tensor *x, dt_tensor *y, int accumulate,
                            dt_err *err)
{
    cuda_backend *cb = cu_enter(be);
    int64_t B = x->shape[0], H = x->ndim == 4 ? x->shape[1] : 0, W = x->ndim == 4 ? x->shape[2] : 0;
    cu_conv_plan_t pl;
    cu_conv_plan(c->k, c->stride, c->pad_lo, c->pad_hi, H, W, &pl);
    if (!nhwc_ok(x, c->cin) || (x->dtype != DT_F32 && x->dtype != c->dt) || !nhwc_ok(y, c->cout) ||
        y->dtype != DT_F32 || y->shape[0] != B || y->shape[1] != pl.Ho || y->shape[2] != pl.Wo)
        return dt_fail(err, DT_EINVAL, "conv2d: expected contiguous NHWC [B,H,W,%d] (%s or f32) -> f32 [B,Ho,Wo,%d]",
                       c->cin, dt_dtype_name(c->dt), c->cout);
    if (B == 0 || pl.Ho <= 0 || pl.Wo <= 0) return DT_OK;
    if (!pl.fits)
        return dt_fail(err, DT_EINVAL, "conv2d: input %lldx%lld padded by %d/%d is smaller than the %dx%d kernel",
                       (long long)H, (long long)W, c->pad_lo, c->pad_hi, c->k, c->k);
    /* the input cuDNN sees: x itself (f32, symmetric padding, no rounding), or a padded / rounded copy */
    int round = c->dt != DT_F32 && x->dtype == DT_F32; /* an input of the conv's type is already rounded */
    const float *src = (const float *)x->data;
    if (pl.lo || pl.hi || round || x->dtype != DT_F32) {
        int64_t n = B * pl.Hs * pl.Ws * c->cin;
        float *t;
        DT_TRY(cu_scratch(cb, CU_SLOT_C, (size_t)n * sizeof(float), (void **)&t, err));
        k_pad_nhwc<<<cu_blocks(n, 256), 256, 0, cb->stream>>>(x->data, (int)x->dtype, t, H, W, c->cin, pl.lo,
                                                               pl.hi, round ? (int)c->dt : DTM_F32, n);
        CU_LAUNCHED("conv2d input padding");
        src = t;
    }
    const dt_cuda_libs *L = cb->L;
    cu_conv_descs d = {};
    cudnnStatus_t s = cu_conv_descs_make(L, c->cin, c->cout, c->k, c->stride, c->b != NULL, B, &pl, &d);
    if (s == CUDNN_STATUS_SUCCESS) s = pick_algo(cb, c, &d, B, H, W);
    dt_status st = DT_OK;
    void *ws = NULL;
    if (s == CUDNN_STATUS_SUCCESS && c->ws_bytes) st = cu_scratch(cb, CU_SLOT_D, c->ws_bytes, &ws, err);
    if (s == CUDNN_STATUS_SUCCESS && st == DT_OK) {
        float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
        s = L->cudnnConvolutionForward(cb->dnn, &one, d.x, src, d.w, c->w, d.cv, (cudnnConvolutionFwdAlgo_t)c->algo, ws,
                                       c->ws_bytes, &beta, d.y, y->data);
        if (s == CUDNN_STATUS_SUCCESS && c->b) s = L->cudnnAddTensor(cb->dnn, &one, d.b, c->b, &one, d.y, y->data);
    }
    cu_conv_descs_free(L, &d);
    if (st == DT_OK && s != CUDNN_STATUS_SUCCESS) st = dnn_fail(cb, err, s, "convolution");
    return st;
}

/* ---- GroupNorm: one block per (sample, group), double statistics ---- */
template <typename T> __device__ T gsum(T v, T *sh)
{
    for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
    __syncthreads();
    if (threadIdx.x < 32) {
        v = threadIdx.x < (blockDim.x >> 5) ? sh[threadIdx.x] : (T)0;
        for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (threadIdx.x == 0) sh[0] = v;
    }
    __syncthreads();
    v = sh[0];
    __syncthreads();
    return v;
}

__global__ void k_group_norm(const float *x, void *y, int yt, const float *gamma, const float *beta, int64_t N,
                             int64_t C, int64_t cg, float eps, int act)
{
    __shared__ double sh[32];
    int64_t G = C / cg, b = blockIdx.x / G, g = blockIdx.x % G, cnt = N * cg;
    const float *xb = x + b * N * C + g * cg;
    double s = 0;
    for (int64_t e = threadIdx.x; e < cnt; e += blockDim.x) s += xb[(e / cg) * C + e % cg];
    double mean = gsum(s, sh) / (double)cnt;
    double v = 0;
    for (int64_t e = threadIdx.x; e < cnt; e += blockDim.x) {
        double t = xb[(e / cg) * C + e % cg] - mean;
        v += t * t;
    }
    double rstd = dtm_gn_rstd(gsum(v, sh), cnt, eps);
    for (int64_t e = threadIdx.x; e < cnt; e += blockDim.x) {
        int64_t c = g * cg + e % cg, i = b * N * C + (e / cg) * C + c;
        float o = dtm_gn_apply(x[i], mean, rstd, gamma ? gamma[c] : 1.0f, beta ? beta[c] : 0.0f, act);
        dtm_store(yt, y, i, o);
    }
}

/* Several blocks per (sample, group) (norm_math.h): blockIdx.x = group·S + chunk. sums NULL: the
 * partial sums; else the partial sums of squared deviations from the mean of `sums`. */
__global__ void k_gn_partial(const float *x, int64_t N, int64_t C, int64_t cg, int S, const double *sums, double *out)
{
    __shared__ double sh[32];
    const int64_t G = C / cg, bg = blockIdx.x / S, cnt = N * cg;
    const int s = (int)(blockIdx.x % S);
    const int64_t e0 = dtm_gn_chunk_lo(N, S, s) * cg, e1 = dtm_gn_chunk_lo(N, S, s + 1) * cg;
    const float *xb = x + (bg / G) * N * C + (bg % G) * cg;
    const double mean = sums ? dtm_gn_total(sums + bg * S, S) / (double)cnt : 0.0;
    double v = 0;
    for (int64_t e = e0 + threadIdx.x; e < e1; e += blockDim.x) {
        double t = xb[(e / cg) * C + e % cg];
        if (sums) {
            t -= mean;
            t *= t;
        }
        v += t;
    }
    v = gsum(v, sh);
    if (threadIdx.x == 0) out[blockIdx.x] = v;
}

__global__ void k_gn_apply(const float *x, void *y, int yt, const float *gamma, const float *beta, int64_t N,
                           int64_t C, int64_t cg, int S, const double *sums, const double *sqs, float eps, int act)
{
    const int64_t G = C / cg, bg = blockIdx.x / S, b = bg / G, g = bg % G, cnt = N * cg;
    const int s = (int)(blockIdx.x % S);
    const int64_t e0 = dtm_gn_chunk_lo(N, S, s) * cg, e1 = dtm_gn_chunk_lo(N, S, s + 1) * cg;
    const double mean = dtm_gn_total(sums + bg * S, S) / (double)cnt;
    const double rstd = dtm_gn_rstd(dtm_gn_total(sqs + bg * S, S), cnt, eps);
    for (int64_t e = e0 + threadIdx.x; e < e1; e += blockDim.x) {
        int64_t c = g * cg + e % cg, i = b * N * C + (e / cg) * C + c;
        float o = dtm_gn_apply(x[i], mean, rstd, gamma ? gamma[c] : 1.0f, beta ? beta[c] : 0.0f, act);
        dtm_store(yt, y, i, o);
    }
}

/* About this many blocks for a GroupNorm (a few waves on an A100/H100's 108/132 SMs). */
#define CU_GN_BLOCKS 1024

static int fdt(const dt_tensor *t) { return cu_is_float(t->dtype); }
static int same_shape(const dt_tensor *a, const dt_tensor *b)
{
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}
static int vec_ok(const dt_tensor *v, int64_t C)
{
    return !v || (v->dtype == DT_F32 && dt_tensor_numel(v) == C && dt_tensor_is_contiguous(v));
}

dt_status cu_group_norm(dt_backend *be, const dt_tensor *x, int groups, const dt_tensor *gamma, const dt_tensor *beta,
                        float eps, dt_act act, dt_tensor *y, dt_err *err)
{
    cuda_backend *cb = cu_enter(be);
    if (x->ndim < 2 || x->dtype != DT_F32 || !fdt(x) || !fdt(y) || !same_shape(x, y) || !dt_tensor_is_contiguous(x) ||
        !dt_tensor_is_contiguous(y))
        return dt_fail(err, DT_EINVAL, "group_norm: expected contiguous f32 [B,...,C] -> same shape f32/bf16/f16");
    int64_t B = x->shape[0], C = x->shape[x->ndim - 1], N = B && C ? dt_tensor_numel(x) / (B * C) : 0;
    if (groups <= 0 || C % groups || !vec_ok(gamma, C) || !vec_ok(beta, C))
        return dt_fail(err, DT_EINVAL, "group_norm: %lld channels do not split into %d groups, or gamma/beta are not [%lld] f32",
                       (long long)C, groups, (long long)C);
    if (N == 0 || B == 0) return DT_OK;
    if (y->data == x->data && y->dtype != DT_F32)
        return dt_fail(err, DT_EINVAL, "group_norm: in place needs an f32 output");
    /* the VAE keeps gamma/beta in host memory (views of its loaded weights): copied in (either kind) */
    float *g = NULL, *bt = NULL;
    if (gamma) DT_TRY(cu_upload_scratch(cb, CU_SLOT_C, (const float *)gamma->data, (size_t)C, &g, err));
    if (beta) DT_TRY(cu_upload_scratch(cb, CU_SLOT_D, (const float *)beta->data, (size_t)C, &bt, err));
    const int64_t cg = C / groups, BG = B * groups;
    const int S = dtm_gn_splits(BG, N, cg, CU_GN_BLOCKS);
    if (S == 1) {
        k_group_norm<<<(unsigned)BG, 1024, 0, cb->stream>>>((const float *)x->data, y->data, (int)y->dtype, g, bt,
                                                             N, C, cg, eps, (int)act);
        CU_LAUNCHED("group_norm");
        return DT_OK;
    }
    double *part; /* [2][BG·S]: partial sums, then partial squared deviations */
    DT_TRY(cu_scratch(cb, CU_SLOT_A, 2 * (size_t)(BG * S) * sizeof(double), (void **)&part, err));
    const unsigned nb = (unsigned)(BG * S);
    k_gn_partial<<<nb, 256, 0, cb->stream>>>((const float *)x->data, N, C, cg, S, NULL, part);
    CU_LAUNCHED("group_norm sums");
    k_gn_partial<<<nb, 256, 0, cb->stream>>>((const float *)x->data, N, C, cg, S, part, part + BG * S);
    CU_LAUNCHED("group_norm deviations");
    k_gn_apply<<<nb, 256, 0, cb->stream>>>((const float *)x->data, y->data, (int)y->dtype, g, bt, N, C, cg, S, part,
                                           part + BG * S, eps, (int)act);
    CU_LAUNCHED("group_norm");
    return DT_OK;
}

/* ---- upsampling, strided copies, seam blend ---- */
__global__ void k_upsample(const float *x, void *y, int yt, int64_t H, int64_t W, int64_t C, int64_t n)
{
    GRID_LOOP(o, n)
    {
        float v = x[dtm_upsample2x_src(o, H, W, C)];
        dtm_store(yt, y, o, v);
    }
}

dt_status cu_upsample_nearest2x(dt_backend *be, const dt_tensor *x, dt_tensor *y, dt_err *err)
{
    cuda_backend *cb = cu_enter(be);
    if (x->ndim != 4 || y->ndim != 4 || x->dtype != DT_F32 || !fdt(x) || !fdt(y) || y->shape[0] != x->shape[0] ||
        y->shape[1] != 2 * x->shape[1] || y->shape[2] != 2 * x->shape[2] || y->shape[3] != x->shape[3] ||
        !dt_tensor_is_contiguous(x) || !dt_tensor_is_contiguous(y))
        return dt_fail(err, DT_EINVAL, "upsample_nearest2x: expected contiguous f32 [B,H,W,C] -> [B,2H,2W,C]");
    int64_t n = dt_tensor_numel(y);
    if (n == 0) return DT_OK;
    k_upsample<<<cu_blocks(n, 256), 256, 0, cb->stream>>>((const float *)x->data, y->data, (int)y->dtype,
                                                           x->shape[1], x->shape[2], x->shape[3], n);
    CU_LAUNCHED("upsample_nearest2x");
    return DT_OK;
}

typedef struct {
    int64_t n[4], ss[4], ds[4];
} shape4;

__global__ void k_copy4d(const void *s, int st, void *d, int dt, shape4 g, int64_t total)
{
    GRID_LOOP(e, total)
    {
        int64_t i3 = e % g.n[3], i2 = (e / g.n[3]) % g.n[2], i1 = (e / (g.n[3] * g.n[2])) % g.n[1],
                i0 = e / (g.n[3] * g.n[2] * g.n[1]);
        int64_t so = i0 * g.ss[0] + i1 * g.ss[1] + i2 * g.ss[2] + i3 * g.ss[3];
        int64_t dof = i0 * g.ds[0] + i1 * g.ds[1] + i2 * g.ds[2] + i3 * g.ds[3];
        dtm_store(dt, d, dof, dtm_load(st, s, so));
    }
}

dt_status cu_copy4d(dt_backend *be, const dt_tensor *src, dt_tensor *dst, dt_err *err)
{
    cuda_backend *cb = cu_enter(be);
    if (src->ndim != 4 || !same_shape(src, dst) || !fdt(src) || !fdt(dst))
        return dt_fail(err, DT_EINVAL, "copy4d: expected f32/bf16/f16 4-D CUDA views of one shape");
    shape4 g;
    for (int i = 0; i < 4; i++) g.n[i] = src->shape[i], g.ss[i] = src->strides[i], g.ds[i] = dst->strides[i];
    int64_t n = dt_tensor_numel(src);
    if (n == 0) return DT_OK;
    k_copy4d<<<cu_blocks(n, 256), 256, 0, cb->stream>>>(src->data, (int)src->dtype, dst->data,
                                                         (int)dst->dtype, g, n);
    CU_LAUNCHED("copy4d");
    return DT_OK;
}

__global__ void k_blend(const float *a, float *b, shape4 g, int axis, int64_t na, int64_t e, int64_t total)
{
    GRID_LOOP(t, total)
    {
        int64_t idx[4] = {t / (g.n[1] * g.n[2] * g.n[3]), (t / (g.n[2] * g.n[3])) % g.n[1], (t / g.n[3]) % g.n[2], t % g.n[3]};
        int64_t i = idx[axis], ob = 0, oa = 0;
        for (int k = 0; k < 4; k++) {
            ob += idx[k] * g.ds[k];
            oa += (k == axis ? na - e + i : idx[k]) * g.ss[k];
        }
        b[ob] = dtm_blend(a[oa], b[ob], i, e);
    }
}

dt_status cu_blend_edge(dt_backend *be, const dt_tensor *a, dt_tensor *b, int axis, int extent, dt_err *err)
{
    cuda_backend *cb = cu_enter(be);
    int ok = a->ndim == 4 && b->ndim == 4 && axis >= 0 && axis < 4 && a->dtype == DT_F32 && b->dtype == DT_F32;
    for (int i = 0; ok && i < 4; i++) ok = i == axis || a->shape[i] == b->shape[i];
    if (!ok) return dt_fail(err, DT_EINVAL, "blend_edge: expected f32 4-D CUDA views equal off axis %d", axis);
    int64_t e = extent, na = a->shape[axis];
    if (e > na) e = na;
    if (e > b->shape[axis]) e = b->shape[axis];
    if (e <= 0) return DT_OK;
    shape4 g;
    for (int i = 0; i < 4; i++) g.n[i] = b->shape[i], g.ss[i] = a->strides[i], g.ds[i] = b->strides[i];
    g.n[axis] = e;
    int64_t n = g.n[0] * g.n[1] * g.n[2] * g.n[3];
    if (n == 0) return DT_OK;
    k_blend<<<cu_blocks(n, 256), 256, 0, cb->stream>>>((const float *)a->data, (float *)b->data, g, axis, na, e, n);
    CU_LAUNCHED("blend_edge");
    return DT_OK;
}
