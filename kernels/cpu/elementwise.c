/* Row-parallel elementwise kernels: LayerNorm+modulate, gated residual, activations,
 * patchify/unpatchify, bf16 conversion. */
#include "cpu.h"
#include <omp.h>
#include "vmath.h"
#include <math.h>
#include <string.h>

#define F(t) ((float *)(t)->data)

void cpu_f32_to_bf16(const float *src, uint16_t *dst, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) dst[i] = cpu_bf16_round(src[i]);
}

static int same3(const dt_tensor *a, const dt_tensor *b)
{
    return a->ndim == 3 && b->ndim == 3 && a->shape[0] == b->shape[0] && a->shape[1] == b->shape[1] &&
           a->shape[2] == b->shape[2] && a->strides[2] == 1 && b->strides[2] == 1;
}

static int row_vec_ok(const dt_tensor *v, const dt_tensor *x)
{
    return !v || (v->ndim == 2 && v->shape[0] == x->shape[0] && v->shape[1] == x->shape[2] && v->strides[1] == 1);
}

/* Not inlined: the op below and the fused LayerNorm-modulate + quantization of qlinear.c run this
 * one compiled body, so both give the same bits. */
__attribute__((noinline)) void cpu_lnmod_row(const float *xr, const float *sh, const float *sc, int64_t C, float eps,
                                             float *yr)
{
    float sum = 0, sq = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t c = 0; c < C; c++) sum += xr[c];
    float mean = sum / (float)C;
#pragma omp simd reduction(+ : sq)
    for (int64_t c = 0; c < C; c++) sq += (xr[c] - mean) * (xr[c] - mean);
    float inv = 1.0f / sqrtf(sq / (float)C + eps);
    if (sh && sc) {
#pragma omp simd
        for (int64_t c = 0; c < C; c++) yr[c] = (xr[c] - mean) * inv * (1.0f + sc[c]) + sh[c];
    } else {
        for (int64_t c = 0; c < C; c++) {
            float o = (xr[c] - mean) * inv;
            if (sc) o *= 1.0f + sc[c];
            if (sh) o += sh[c];
            yr[c] = o;
        }
    }
}

int cpu_lnmod_init(const dt_tensor *x, const dt_tensor *shift, const dt_tensor *scale, float eps, cpu_lnmod *p)
{
    if (x->ndim != 3 || x->strides[2] != 1 || x->dtype != DT_F32 || !row_vec_ok(shift, x) || !row_vec_ok(scale, x))
        return 0;
    *p = (cpu_lnmod){F(x), shift ? F(shift) : NULL, scale ? F(scale) : NULL, x->shape[1], x->shape[2],
                     x->strides[0], x->strides[1], shift ? shift->strides[0] : 0, scale ? scale->strides[0] : 0, eps};
    return 1;
}

void cpu_lnmod_rowm(const cpu_lnmod *p, int64_t m, float *yr)
{
    int64_t b = m / p->N, i = m % p->N;
    cpu_lnmod_row(p->x + b * p->xs0 + i * p->xs1, p->shift ? p->shift + b * p->shs : NULL,
                  p->scale ? p->scale + b * p->scs : NULL, p->C, p->eps, yr);
}

void cpu_lnmod_rows_bf16(const cpu_lnmod *p, int64_t M, uint16_t *dst, float *tmp)
{
#pragma omp parallel
    {
        float *row = tmp + (size_t)omp_get_thread_num() * p->C;
#pragma omp for schedule(static)
        for (int64_t m = 0; m < M; m++) {
            cpu_lnmod_rowm(p, m, row);
            cpu_f32_to_bf16(row, dst + m * p->C, (size_t)p->C);
        }
    }
}

dt_status cpu_layernorm_modulate(dt_backend *be, const dt_tensor *x, const dt_tensor *shift,
                                 const dt_tensor *scale, float eps, dt_tensor *y, dt_err *err)
{
    (void)be;
    if (!same3(x, y) || !row_vec_ok(shift, x) || !row_vec_ok(scale, x))
        return dt_fail(err, DT_EINVAL, "layernorm_modulate: shape mismatch");
    int64_t B = x->shape[0], N = x->shape[1], C = x->shape[2];
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < N; i++)
            cpu_lnmod_row(F(x) + b * x->strides[0] + i * x->strides[1], shift ? F(shift) + b * shift->strides[0] : NULL,
                          scale ? F(scale) + b * scale->strides[0] : NULL, C, eps,
                          F(y) + b * y->strides[0] + i * y->strides[1]);
    return DT_OK;
}

dt_status cpu_gated_add(dt_backend *be, dt_tensor *x, const dt_tensor *y, const dt_tensor *gate, dt_err *err)
{
    (void)be;
    if (!same3(x, y) || !row_vec_ok(gate, x)) return dt_fail(err, DT_EINVAL, "gated_add: shape mismatch");
    int64_t B = x->shape[0], N = x->shape[1], C = x->shape[2];
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < N; i++) {
            float *xr = F(x) + b * x->strides[0] + i * x->strides[1];
            const float *yr = F(y) + b * y->strides[0] + i * y->strides[1];
            if (gate) {
                const float *g = F(gate) + b * gate->strides[0];
#pragma omp simd
                for (int64_t c = 0; c < C; c++) xr[c] += g[c] * yr[c];
            } else {
#pragma omp simd
                for (int64_t c = 0; c < C; c++) xr[c] += yr[c];
            }
        }
    return DT_OK;
}

dt_status cpu_activation(dt_backend *be, dt_act act, const dt_tensor *x, dt_tensor *y, dt_err *err)
{
    (void)be;
    int64_t n = dt_tensor_numel(x);
    if (n != dt_tensor_numel(y) || !dt_tensor_is_contiguous(x) || !dt_tensor_is_contiguous(y))
        return dt_fail(err, DT_EINVAL, "activation: shape mismatch");
    const float *a = x->data;
    float *o = y->data;
    switch (act) {
    case DT_ACT_GELU_TANH:
#pragma omp parallel for simd schedule(static)
        for (int64_t i = 0; i < n; i++) o[i] = vm_gelu_tanh(a[i]);
        break;
    case DT_ACT_SILU:
#pragma omp parallel for simd schedule(static)
        for (int64_t i = 0; i < n; i++) o[i] = vm_silu(a[i]);
        break;
    case DT_ACT_GELU_ERF:
#pragma omp parallel for simd schedule(static)
        for (int64_t i = 0; i < n; i++) o[i] = vm_gelu_erf(a[i]);
        break;
    default:
        if (o != a) memmove(o, a, (size_t)n * sizeof(float));
    }
    return DT_OK;
}

dt_status cpu_patchify(dt_backend *be, const dt_tensor *x, int p, dt_tensor *y, dt_err *err)
{
    (void)be;
    if (x->ndim != 4 || p <= 0 || x->shape[2] % p || x->shape[3] % p || !dt_tensor_is_contiguous(x))
        return dt_fail(err, DT_EINVAL, "patchify: latent height and width must be multiples of the patch size %d", p);
    int64_t B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3], h = H / p, w = W / p;
    if (dt_tensor_numel(y) != B * h * w * C * p * p) return dt_fail(err, DT_EINVAL, "patchify: output size mismatch");
    const float *src = x->data;
    float *dst = y->data;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < h; i++)
            for (int64_t j = 0; j < w; j++)
                for (int64_t c = 0; c < C; c++)
                    for (int ky = 0; ky < p; ky++)
                        memcpy(dst + ((b * h + i) * w + j) * C * p * p + (c * p + ky) * p,
                               src + ((b * C + c) * H + i * p + ky) * W + j * p, (size_t)p * sizeof(float));
    return DT_OK;
}

dt_status cpu_unpatchify(dt_backend *be, const dt_tensor *x, int p, int h, int w, dt_tensor *y, dt_err *err)
{
    (void)be;
    int64_t B = x->shape[0], C = x->ndim == 3 ? x->shape[2] / ((int64_t)p * p) : 0;
    if (x->ndim != 3 || x->shape[1] != (int64_t)h * w || y->ndim != 4 || y->shape[0] != B || y->shape[1] != C ||
        y->shape[2] != (int64_t)h * p || y->shape[3] != (int64_t)w * p)
        return dt_fail(err, DT_EINVAL, "unpatchify: shape mismatch");
    const float *src = x->data;
    float *dst = y->data;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t i = 0; i < h; i++)
                for (int ky = 0; ky < p; ky++)
                    for (int64_t j = 0; j < w; j++)
                        for (int kx = 0; kx < p; kx++)
                            dst[((b * C + c) * h * p + i * p + ky) * (w * p) + j * p + kx] =
                                src[(b * h * w + i * w + j) * p * p * C + (ky * p + kx) * C + c];
    return DT_OK;
}

dt_status cpu_add_rows(dt_backend *be, const dt_tensor *x, const dt_tensor *r, dt_tensor *y, dt_err *err)
{
    (void)be;
    int64_t period = dt_tensor_numel(r), n = dt_tensor_numel(x);
    if (period == 0 || n % period || n != dt_tensor_numel(y) || !dt_tensor_is_contiguous(x) || !dt_tensor_is_contiguous(y))
        return dt_fail(err, DT_EINVAL, "add_rows: shape mismatch");
    const float *a = x->data, *rv = r->data;
    float *o = y->data;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n / period; i++)
        for (int64_t c = 0; c < period; c++) o[i * period + c] = a[i * period + c] + rv[c];
    return DT_OK;
}

static int f32_on_cpu(const dt_tensor *t) { return t->dtype == DT_F32 && t->device == DT_DEV_CPU; }

dt_status cpu_repeat_rows(dt_backend *be, const dt_tensor *x, int reps, dt_tensor *y, dt_err *err)
{
    (void)be;
    if (!f32_on_cpu(x) || !f32_on_cpu(y) || x->ndim < 1 || reps < 1 || !dt_tensor_is_contiguous(x) ||
        !dt_tensor_is_contiguous(y))
        return dt_fail(err, DT_EINVAL, "repeat_rows: expected contiguous f32 cpu tensors and reps >= 1 (got %d)", reps);
    int64_t R = x->shape[0], n = dt_tensor_numel(x), W = R ? n / R : 0;
    if (dt_tensor_numel(y) != n * reps)
        return dt_fail(err, DT_EINVAL, "repeat_rows: output has %lld elements, expected %lld x %d",
                       (long long)dt_tensor_numel(y), (long long)n, reps);
    const float *src = x->data;
    float *dst = y->data;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t r = 0; r < R; r++)
        for (int k = 0; k < reps; k++) memcpy(dst + (r * reps + k) * W, src + r * W, (size_t)W * sizeof(float));
    return DT_OK;
}

dt_status cpu_sub(dt_backend *be, const dt_tensor *a, const dt_tensor *b, dt_tensor *y, dt_err *err)
{
    (void)be;
    int64_t n = dt_tensor_numel(a);
    if (!f32_on_cpu(a) || !f32_on_cpu(b) || !f32_on_cpu(y) || n != dt_tensor_numel(b) || n != dt_tensor_numel(y) ||
        !dt_tensor_is_contiguous(a) || !dt_tensor_is_contiguous(b) || !dt_tensor_is_contiguous(y))
        return dt_fail(err, DT_EINVAL, "sub: expected contiguous f32 cpu tensors of equal size");
    const float *pa = a->data, *pb = b->data;
    float *o = y->data;
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) o[i] = pa[i] - pb[i];
    return DT_OK;
}

static int row_view(const dt_tensor *t, int64_t B, int64_t n)
{
    return f32_on_cpu(t) && t->ndim == 2 && t->shape[0] == B && t->shape[1] == n && (t->strides[1] == 1 || n <= 1) &&
           (t->strides[0] >= n || B <= 1);
}

#define CFG_BLOCK 4096 /* elements per task along a row */

dt_status cpu_cfg_combine(dt_backend *be, const dt_tensor *uncond, const dt_tensor *cond, float g, dt_tensor *y,
                          dt_err *err)
{
    (void)be;
    int64_t B = uncond->ndim == 2 ? uncond->shape[0] : -1, n = uncond->ndim == 2 ? uncond->shape[1] : -1;
    if (B < 0 || !row_view(uncond, B, n) || !row_view(cond, B, n) || !row_view(y, B, n))
        return dt_fail(err, DT_EINVAL, "cfg_combine: expected f32 cpu [B, n] views of one shape with unit element stride");
    int64_t nblk = (n + CFG_BLOCK - 1) / CFG_BLOCK;
    const float *u0 = uncond->data, *c0 = cond->data;
    float *y0 = y->data;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; b++)
        for (int64_t blk = 0; blk < nblk; blk++) {
            const float *u = u0 + b * uncond->strides[0], *c = c0 + b * cond->strides[0];
            float *o = y0 + b * y->strides[0];
            int64_t i0 = blk * CFG_BLOCK, i1 = i0 + CFG_BLOCK < n ? i0 + CFG_BLOCK : n;
#pragma omp simd
            for (int64_t i = i0; i < i1; i++) o[i] = u[i] + g * (c[i] - u[i]);
        }
    return DT_OK;
}
