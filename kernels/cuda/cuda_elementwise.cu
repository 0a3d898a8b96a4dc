/* Own kernels for the per-row and per-element ops: LayerNorm+modulate, gated residual,
 * activations, patchify/unpatchify, add/repeat rows, sub, CFG, T5's RMSNorm and gated FFN.
 * The math of each element is in elem_math.h / norm_math.h / patch_math.h (host-tested). */
#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/norm_math.h"
#include "kernels/cuda/patch_math.h"

#define GRID_LOOP(i, n) \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)
#define LAUNCH(kernel, n, ...)                                                         \
    do {                                                                               \
        if ((n) > 0) {                                                                 \
            kernel<<<cu_blocks((n), 256), 256, 0, cb->stream>>>(__VA_ARGS__);          \
            CU_LAUNCHED(#kernel);                                                      \
        }                                                                              \
    } while (0)

static int dev_f32(const dt_tensor *t) { return t->dtype == DT_F32; } /* device tags: see cuda_backend.cu */
static int dev_f32c(const dt_tensor *t) { return dev_f32(t) && dt_tensor_is_contiguous(t); }
#define FP(t) ((float *)(t)->data)

template <typename T> __device__ T warp_sum(T v)
{
    for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Sum over the block (blockDim.x a multiple of 32); every thread gets the total. */
template <typename T> __device__ T block_sum_t(T v, T *sh)
{
    v = warp_sum(v);
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
    __syncthreads();
    if (threadIdx.x < 32) {
        v = threadIdx.x < (blockDim.x >> 5) ? sh[threadIdx.x] : (T)0;
        v = warp_sum(v);
        if (threadIdx.x == 0) sh[0] = v;
    }
    __syncthreads();
    v = sh[0];
    __syncthreads();
    return v;
}

/* ---- LayerNorm + modulate: one block per row ---- */
__global__ void k_layernorm(const float *x, float *y, const float *shift, const float *scale, int64_t N, int64_t C,
                            int64_t xs0, int64_t xs1, int64_t ys0, int64_t ys1, int64_t ss0, int64_t cs0, float eps)
{
    __shared__ float sh[32];
    int64_t b = blockIdx.x / N, i = blockIdx.x % N;
    const float *xr = x + b * xs0 + i * xs1;
    float *yr = y + b * ys0 + i * ys1;
    const float *sf = shift ? shift + b * ss0 : NULL, *sc = scale ? scale + b * cs0 : NULL;
    float s = 0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s += xr[c];
    float mean = dtm_ln_mean(block_sum_t(s, sh), C);
    float q = 0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) q += (xr[c] - mean) * (xr[c] - mean);
    float inv = dtm_ln_inv(block_sum_t(q, sh), C, eps);
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
        yr[c] = dtm_ln_apply(xr[c], mean, inv, sc != NULL, sc ? sc[c] : 0.f, sf != NULL, sf ? sf[c] : 0.f);
}

static int same3(const dt_tensor *a, const dt_tensor *b)
{
    return a->ndim == 3 && b->ndim == 3 && a->shape[0] == b->shape[0] && a->shape[1] == b->shape[1] &&
           a->shape[2] == b->shape[2] && a->strides[2] == 1 && b->strides[2] == 1 && dev_f32(a) && dev_f32(b);
}

static int row_vec_ok(const dt_tensor *v, const dt_tensor *x)
{
    return !v || (v->ndim == 2 && v->shape[0] == x->shape[0] && v->shape[1] == x->shape[2] && v->strides[1] == 1 && dev_f32(v));
}

dt_status cu_layernorm_modulate(dt_backend *be, const dt_tensor *x, const dt_tensor *shift, const dt_tensor *scale,
                                float eps, dt_tensor *y, dt_err *err)
{
    cuda_backend *cb = cu_enter(be);
    if (!same3(x, y) || !row_vec_ok(shift, x) || !row_vec_ok(scale, x))
        return dt_fail(err, DT_EINVAL, "layernorm_modulate: shape mismatch (or not f32 on the CUDA device)");
    int64_t rows = x->shape[0] * x->shape[1];
    if (rows == 0) return DT_OK;
    k_layernorm<<<(unsigned)rows, 256, 0, cb->stream>>>(FP(x), FP(y), shift ? FP(shift) : NULL, scale ? FP(scale) : NULL,
                                                        x->shape[1], x->shape[2], x->strides[0], x->strides[1],
                                                        y->strides[0], y->strides[1], shift ? shift->strides[0] : 0,
                                                        scale ? scale->strides[0] : 0, eps);
    CU_LAUNCHED("layernorm_modulate");
    return DT_OK;
}

/* ---- gated residual ---- */
__global__ void k_gated_add(float *x, const float *y, const float *g, int64_t N, int64_t C, int64_t xs0, int64_t xs1,
                            int64_t ys0, int64_t ys1, int64_t gs0, int64_t n)
{
    GRID_LOOP(e, n)
    {
        int64_t c = e % C, i = (e / C) % N, b = e / (C * N);
        float *xp = x + b * xs0 + i * xs1 + c;
        float yv = y[b * ys0 + i * ys1 + c];
        *xp += g ? g[b * gs0 + c] * yv : yv;
    }
}

dt_status cu_gated_add(dt_backend *be, dt_tensor *x, const dt_tensor *y, const dt_tensor *gate, dt_err *err)
{
    cuda_backend *cb = cu_enter(be);
    if (!same3(x, y) || !row_vec_ok(gate, x)) return dt_fail(err, DT_EINVAL, "gated_add: shape mismatch");
    int64_t n = dt_tensor_numel(x);
    LAUNCH(k_gated_add, n, FP(x), FP(y), gate ? FP(gate) : NULL, x->shape[1], x->shape[2], x->strides[0],
           x->strides[1], y->strides[0], y->strides[1], gate ? gate->strides[0] : 0, n);
    return DT_OK;
}

/* ---- activations ---- */
__global__ void k_activation(int act, const float *x, float *y, int64_t n)
{
    GRID_LOOP(i, n) y[i] = dtm_act(act, x[i]);
}

dt_status cu_activation(dt_backend *be, dt_act act, const dt_tensor *x, dt_tensor *y, dt_err *err)
{
    cuda_backend *cb = cu_enter(be);
    int64_t n = dt_tensor_numel(x);
    if (n != dt_tensor_numel(y) || !dev_f32c(x) || !dev_f32c(y)) return dt_fail(err, DT_EINVAL, "activation: shape mismatch");
    LAUNCH(k_activation, n, (int)act, FP(x), FP(y), n);
    return DT_OK;
}

/* ---- patchify / unpatchify (patch_math.h index maps) ---- */
__global__ void k_patchify(const float *x, float *y, int64_t C, int64_t H, int64_t W, int64_t p, int64_t n)
{
    GRID_LOOP(o, n) y[o] = x[dtm_patchify_src(o, C, H, W, p)];
}

__global__ void k_unpatchify(const float *x, float *y, int64_t C, int64_t h, int64_t w, int64_t p, int64_t n)
{
    GRID_LOOP(o, n) y[o] = x[dtm_unpatchify_src(o, C, h, w, p)];
}

dt_status cu_patchify(dt_backend *be, const dt_tensor *x, int p, dt_tensor *y, dt_err *err)
{
    cuda_backend *cb = cu_enter(be);
    if (x->ndim != 4 || p <= 0 || x->shape[2] % p || x->shape[3] % p || !dev_f32c(x) || !dev_f32c(y))
        return dt_fail(err, DT_EINVAL, "patchify: latent height and width must be multiples of the patch size %d", p);
    int64_t n = dt_tensor_numel(x);
    if (dt_tensor_numel(y) != n) return dt_fail(err, DT_EINVAL, "patchify: output size mismatch");
    LAUNCH(k_patchify, n, FP(x), FP(y), x->shape[1], x->shape[2], x->shape[3], (int64_t)p, n);
    return DT_OK;
}

dt_status cu_unpatchify(dt_backend *be, const dt_tensor *x, int p, int h, int w, dt_tensor *y, dt_err *err)
{
    cuda_backend *cb = cu_enter(be);
    int64_t B = x->shape[0], C = x->ndim == 3 && p > 0 ? x->shape[2] / ((int64_t)p * p) : 0;
    if (x->ndim != 3 || x->shape[1] != (int64_t)h * w || y->ndim != 4 || y->shape[0] != B || y->shape[1] != C ||
        y->shape[2] != (int64_t)h * p || y->shape[3] != (int64_t)w * p || !dev_f32c(x) || !dev_f32c(y))
        return dt_fail(err, DT_EINVAL, "unpatchify: shape mismatch");
    int64_t n = dt_tensor_numel(y);
    LAUNCH(k_unpatchify, n, FP(x), FP(y), C, (int64_t)h, (int64_t)w, (int64_t)p, n);
    return DT_OK;
}

/* ---- rows, differences, guidance ---- */
__global__ void k_add_rows(const float *x, const float *r, float *y, int64_t period, int64_t n)
{
    GRID_LOOP(i, n) y[i] = x[i] + r[i % period];
}

dt_status cu_add_rows(dt_backend *be, const dt_tensor *x, const dt_tensor *r, dt_tensor *y, dt_err *err)
{
    cuda_backend *cb = cu_enter(be);
    int64_t period = dt_tensor_numel(r), n = dt_tensor_numel(x);
    if (period == 0 || n % period || n != dt_tensor_numel(y) || !dev_f32c(x) || !dev_f32c(y) || !dev_f32c(r))
        return dt_fail(err, DT_EINVAL, "add_rows: shape mismatch");
    LAUNCH(k_add_rows, n, FP(x), FP(r), FP(y), period, n);
    return DT_OK;
}

__global__ void k_repeat_rows(const float *x, float *y, int64_t W, int reps, int64_t n)
{
    GRID_LOOP(o, n)
    {
        int64_t j = o % W, rk = o / W;
        y[o] = x[(rk / reps) * W + j];
    }
}

dt_status cu_repeat_rows(dt_backend *be, const dt_tensor *x, int reps, dt_tensor *y, dt_err *err)
{
    cuda_backend *cb = cu_enter(be);
    if (!dev_f32c(x) || !dev_f32c(y) || x->ndim < 1 || reps < 1)
        return dt_fail(err, DT_EINVAL, "repeat_rows: expected contiguous f32 CUDA tensors and reps >= 1 (got %d)", reps);
    int64_t R = x->shape[0], n = dt_tensor_numel(x), W = R ? n / R : 0;
    if (dt_tensor_numel(y) != n * reps)
        return dt_fail(err, DT_EINVAL, "repeat_rows: output has %lld elements, expected %lld x %d",
                       (long long)dt_tensor_numel(y), (long long)n, reps);
    if (W == 0) return DT_OK;
    LAUNCH(k_repeat_rows, n * reps, FP(x), FP(y), W, reps, n * reps);
    return DT_OK;
}

__global__ void k_sub(const float *a, const float *b, float *y, int64_t n)
{
    GRID_LOOP(i, n) y[i] = a[i] - b[i];
}

dt_status cu_sub(dt_backend *be, const dt_tensor *a, const dt_tensor *b, dt_tensor *y, dt_err *err)
{
    cuda_backend *cb = cu_enter(be);
    int64_t n = dt_tensor_numel(a);
    if (!dev_f32c(a) || !dev_f32c(b) || !dev_f32c(y) || n != dt_tensor_numel(b) || n != dt_tensor_numel(y))
        return dt_fail(err, DT_EINVAL, "sub: expected contiguous f32 CUDA tensors of equal size");
    LAUNCH(k_sub, n, FP(a), FP(b), FP(y), n);
    return DT_OK;
}

__global__ void k_cfg(const float *u, const float *c, float *y, float g, int64_t n, int64_t us, int64_t cs, int64_t ys,
                      int64_t total)
{
    GRID_LOOP(e, total)
    {
        int64_t b = e / n, i = e % n;
        y[b * ys + i] = dtm_cfg(u[b * us + i], c[b * cs + i], g);
    }
}

static int row_view(const dt_tensor *t, int64_t B, int64_t n)
{
    return dev_f32(t) && t->ndim == 2 && t->shape[0] == B && t->shape[1] == n && (t->strides[1] == 1 || n <= 1) &&
           (t->strides[0] >= n || B <= 1);
}

dt_status cu_cfg_combine(dt_backend *be, const dt_tensor *uncond, const dt_tensor *cond, float g, dt_tensor *y,
                         dt_err *err)
{
    cuda_backend *cb = cu_enter(be);
    int64_t B = uncond->ndim == 2 ? uncond->shape[0] : -1, n = uncond->ndim == 2 ? uncond->shape[1] : -1;
    if (B < 0 || !row_view(uncond, B, n) || !row_view(cond, B, n) || !row_view(y, B, n))
        return dt_fail(err, DT_EINVAL, "cfg_combine: expected f32 CUDA [B, n] views of one shape with unit element stride");
    LAUNCH(k_cfg, B * n, FP(uncond), FP(cond), FP(y), g, n, uncond->strides[0], cond->strides[0], y->strides[0], B * n);
    return DT_OK;
}

/* ---- T5: RMSNorm (one block per row, double sums) and the gated FFN activation ---- */
__global__ void k_rms_norm(const float *x, const float *w, float *y, int64_t C, float eps)
{
    __shared__ double sh[32];
    const float *xr = x + blockIdx.x * C;
    float *yr = y + blockIdx.x * C;
    double s = 0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s += (double)xr[c] * xr[c];
    double inv = dtm_rms_inv(block_sum_t(s, sh), C, eps);
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) yr[c] = dtm_rms_apply(xr[c], inv, w[c]);
}

dt_status cu_rms_norm(dt_backend *be, const dt_tensor *x, const float *w, float eps, dt_tensor *y, dt_err *err)
{
    cuda_backend *cb = cu_enter(be);
    if (!dev_f32c(x) || !dev_f32c(y) || (x->ndim != 2 && x->ndim != 3) || dt_tensor_numel(x) != dt_tensor_numel(y))
        return dt_fail(err, DT_EINVAL, "rms_norm: expected contiguous f32 CUDA [M, C] tensors of one size");
    int64_t C = x->shape[x->ndim - 1], M = C ? dt_tensor_numel(x) / C : 0;
    if (M == 0) return DT_OK;
    float *wd;
    DT_TRY(cu_upload_scratch(cb, CU_SLOT_C, w, (size_t)C, &wd, err));
    k_rms_norm<<<(unsigned)M, 256, 0, cb->stream>>>(FP(x), wd, FP(y), C, eps);
    CU_LAUNCHED("rms_norm");
    return DT_OK;
}

__global__ void k_gated_act(int act, const float *x, float *y, int64_t F, int64_t n)
{
    GRID_LOOP(o, n)
    {
        int64_t m = o / F, f = o % F;
        y[o] = dtm_act(act, x[m * 2 * F + f]) * x[m * 2 * F + F + f];
    }
}

__global__ void k_geglu(int act, const float *x, float *y, int64_t F, int64_t n)
{
    GRID_LOOP(o, n)
    {
        int64_t m = o / F, f = o % F;
        y[o] = x[m * 2 * F + f] * dtm_act(act, x[m * 2 * F + F + f]);
    }
}

/* diffusers' GEGLU: value · act(gate), the gate in the second half (backend.h). */
dt_status cu_geglu(dt_backend *be, dt_act act, const dt_tensor *x, dt_tensor *y, dt_err *err)
{
    cuda_backend *cb = cu_enter(be);
    int64_t F2 = x->ndim >= 1 ? x->shape[x->ndim - 1] : 0, M = F2 ? dt_tensor_numel(x) / F2 : 0;
    if (!dev_f32c(x) || !dev_f32c(y) || F2 % 2 || dt_tensor_numel(y) != M * (F2 / 2))
        return dt_fail(err, DT_EINVAL, "geglu: expected contiguous f32 CUDA x [M, 2F] and y [M, F]");
    if (act != DT_ACT_GELU_ERF && act != DT_ACT_GELU_TANH && act != DT_ACT_SILU && act != DT_ACT_NONE)
        return dt_fail(err, DT_EINVAL, "geglu: unknown activation %d", (int)act);
    LAUNCH(k_geglu, M * (F2 / 2), (int)act, FP(x), FP(y), F2 / 2, M * (F2 / 2));
    return DT_OK;
}

dt_status cu_gated_act(dt_backend *be, dt_act act, const dt_tensor *x, dt_tensor *y, dt_err *err)
{
    cuda_backend *cb = cu_enter(be);
    int64_t F2 = x->ndim >= 1 ? x->shape[x->ndim - 1] : 0, M = F2 ? dt_tensor_numel(x) / F2 : 0;
    if (!dev_f32c(x) || !dev_f32c(y) || F2 % 2 || dt_tensor_numel(y) != M * (F2 / 2))
        return dt_fail(err, DT_EINVAL, "gated_act: expected contiguous f32 CUDA x [M, 2F] and y [M, F]");
    LAUNCH(k_gated_act, M * (F2 / 2), (int)act, FP(x), FP(y), F2 / 2, M * (F2 / 2));
    return DT_OK;
}
