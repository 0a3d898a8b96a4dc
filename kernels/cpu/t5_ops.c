/* T5 encoder kernels: RMS norm (T5LayerNorm) and the gated activation of the v1.1 FFN.
 * Row-parallel, vectorizable loops; statistics in f32 as transformers computes them. */
#include "cpu.h"
#include "vmath.h"
#include <math.h>

static int rows_of(const dt_tensor *t, int64_t *M, int64_t *C)
{
    if (t->ndim < 2 || t->ndim > 3 || t->dtype != DT_F32 || !dt_tensor_is_contiguous(t)) return 0;
    *C = t->shape[t->ndim - 1];
    *M = dt_tensor_numel(t) / (*C ? *C : 1);
    return 1;
}

dt_status cpu_rms_norm(dt_backend *be, const dt_tensor *x, const float *w, float eps, dt_tensor *y, dt_err *err)
{
    (void)be;
    int64_t M, C, My, Cy;
    if (!w || !rows_of(x, &M, &C) || !rows_of(y, &My, &Cy) || M != My || C != Cy || C <= 0)
        return dt_fail(err, DT_EINVAL, "rms_norm: expected contiguous f32 [M, C] input and output of one shape");
    const float *xs = x->data;
    float *ys = y->data;
#pragma omp parallel for schedule(static)
    for (int64_t m = 0; m < M; m++) {
        const float *xr = xs + m * C;
        float *yr = ys + m * C;
        float sq = 0.0f;
#pragma omp simd reduction(+ : sq)
        for (int64_t c = 0; c < C; c++) sq += xr[c] * xr[c];
        float inv = 1.0f / sqrtf(sq / (float)C + eps);
#pragma omp simd
        for (int64_t c = 0; c < C; c++) yr[c] = w[c] * (xr[c] * inv);
    }
    return DT_OK;
}

dt_status cpu_gated_act(dt_backend *be, dt_act act, const dt_tensor *x, dt_tensor *y, dt_err *err)
{
    (void)be;
    int64_t M, C2, My, F;
    if (!rows_of(x, &M, &C2) || !rows_of(y, &My, &F) || M != My || C2 != 2 * F || F <= 0)
        return dt_fail(err, DT_EINVAL, "gated_act: expected contiguous f32 [M, 2F] -> [M, F]");
    if (act != DT_ACT_GELU_TANH && act != DT_ACT_SILU && act != DT_ACT_GELU_ERF && act != DT_ACT_NONE)
        return dt_fail(err, DT_EINVAL, "gated_act: unknown activation %d", (int)act);
    const float *xs = x->data;
    float *ys = y->data;
#pragma omp parallel for schedule(static)
    for (int64_t m = 0; m < M; m++) {
        const float *a = xs + m * 2 * F, *g = a + F;
        float *yr = ys + m * F;
        if (act == DT_ACT_GELU_TANH) {
#pragma omp simd
            for (int64_t f = 0; f < F; f++) yr[f] = vm_gelu_tanh(a[f]) * g[f];
        } else if (act == DT_ACT_SILU) {
#pragma omp simd
            for (int64_t f = 0; f < F; f++) yr[f] = vm_silu(a[f]) * g[f];
        } else if (act == DT_ACT_GELU_ERF) {
#pragma omp simd
            for (int64_t f = 0; f < F; f++) yr[f] = vm_gelu_erf(a[f]) * g[f];
        } else {
#pragma omp simd
            for (int64_t f = 0; f < F; f++) yr[f] = a[f] * g[f];
        }
    }
    return DT_OK;
}
