/* The U-Net feed-forward's gated activation (diffusers activations.py GEGLU / SwiGLU): the
 * fused projection's output [value | gate] becomes value · act(gate), row-parallel, in one
 * pass over the 2F-wide rows. Plain-C reference: ref_geglu (ref.c). */
#include "cpu.h"
#include "vmath.h"

#define GEGLU_BLOCK 4096 /* elements of a row per task: rows of 4C (5120 in SD 1.5) split in two */

static int rows_of(const dt_tensor *t, int64_t *M, int64_t *C)
{
    if (t->ndim < 2 || t->ndim > 3 || t->dtype != DT_F32 || t->device != DT_DEV_CPU || !dt_tensor_is_contiguous(t)) return 0;
    *C = t->shape[t->ndim - 1];
    *M = dt_tensor_numel(t) / (*C ? *C : 1);
    return 1;
}

dt_status cpu_geglu(dt_backend *be, dt_act act, const dt_tensor *x, dt_tensor *y, dt_err *err)
{
    (void)be;
    int64_t M, C2, My, F;
    if (!rows_of(x, &M, &C2) || !rows_of(y, &My, &F) || M != My || C2 != 2 * F || F <= 0)
        return dt_fail(err, DT_EINVAL, "geglu: expected contiguous f32 [M, 2F] -> [M, F]");
    if (act != DT_ACT_GELU_ERF && act != DT_ACT_GELU_TANH && act != DT_ACT_SILU && act != DT_ACT_NONE)
        return dt_fail(err, DT_EINVAL, "geglu: unknown activation %d", (int)act);
    const float *xs = x->data;
    float *ys = y->data;
    int64_t nblk = (F + GEGLU_BLOCK - 1) / GEGLU_BLOCK;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t m = 0; m < M; m++)
        for (int64_t k = 0; k < nblk; k++) {
            int64_t f0 = k * GEGLU_BLOCK, n = F - f0 < GEGLU_BLOCK ? F - f0 : GEGLU_BLOCK;
            const float *v = xs + m * 2 * F + f0, *g = v + F;
            float *o = ys + m * F + f0;
            switch (act) {
            case DT_ACT_GELU_ERF:
#pragma omp simd
                for (int64_t f = 0; f < n; f++) o[f] = v[f] * vm_gelu_erf(g[f]);
                break;
            case DT_ACT_GELU_TANH:
#pragma omp simd
                for (int64_t f = 0; f < n; f++) o[f] = v[f] * vm_gelu_tanh(g[f]);
                break;
            case DT_ACT_SILU:
#pragma omp simd
                for (int64_t f = 0; f < n; f++) o[f] = v[f] * vm_silu(g[f]);
                break;
            default:
#pragma omp simd
                for (int64_t f = 0; f < n; f++) o[f] = v[f] * g[f];
            }
        }
    return DT_OK;
}
