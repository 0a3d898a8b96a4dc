/* The CPU backend's attention entries: the two-GEMM kernels (attention.c, window_attention.c,
 * the reference path) or the fused one (attention_fused.c), per backend. The fused kernel is
 * the f32 default: it measured faster than the two GEMMs here (`ditrt bench attention`); bf16
 * keeps the two GEMMs, whose bf16 dot products the fused kernel does not have. The int8-QKᵀ
 * variant of the fused kernel runs only when asked for (DT_ATTN_KERNEL_INT8, DITRT_ATTN=int8). */
#include "cpu.h"
#include "attention_fused.h"
#include <omp.h>
#include <stdlib.h>
#include <string.h>

dt_status cpu_attn_kernel(const dt_backend_config *cfg, dt_attn_kernel *kind, dt_err *err)
{
    if (cfg->attn_kernel == DT_ATTN_KERNEL_GEMM || cfg->attn_kernel == DT_ATTN_KERNEL_FUSED ||
        cfg->attn_kernel == DT_ATTN_KERNEL_INT8) {
        *kind = cfg->attn_kernel;
        return DT_OK;
    }
    if (cfg->attn_kernel != DT_ATTN_KERNEL_AUTO)
        return dt_fail(err, DT_EINVAL, "attn_kernel: unknown value %d", (int)cfg->attn_kernel);
    const char *e = getenv("DITRT_ATTN");
    if (e && *e) {
        if (!strcmp(e, "gemm")) *kind = DT_ATTN_KERNEL_GEMM;
        else if (!strcmp(e, "fused")) *kind = DT_ATTN_KERNEL_FUSED;
        else if (!strcmp(e, "int8")) *kind = DT_ATTN_KERNEL_INT8;
        else return dt_fail(err, DT_EINVAL, "DITRT_ATTN: expected gemm, fused or int8, got \"%s\"", e);
        return DT_OK;
    }
    *kind = cfg->compute == DT_F32 ? DT_ATTN_KERNEL_FUSED : DT_ATTN_KERNEL_GEMM;
    return DT_OK;
}

static int strided_ok(const dt_tensor *t) { return t->dtype == DT_F32 && t->ndim == 3 && t->strides[2] == 1; }

dt_status cpu_attention_fused(dt_backend *be, const dt_tensor *q, const dt_tensor *k, const dt_tensor *v,
                              const dt_attn_bias *bias, int heads, float scale, dt_tensor *out, dt_err *err)
{
    if (!strided_ok(q) || !strided_ok(k) || !strided_ok(v) || !strided_ok(out))
        return dt_fail(err, DT_EINVAL, "attention: q/k/v/out must be f32 [B, N, C] views with unit element stride");
    int64_t B = q->shape[0], nq = q->shape[1], nk = k->shape[1], C = q->shape[2];
    if (heads <= 0 || C % heads || k->shape[2] != C || v->shape[2] != C || v->shape[1] != nk || k->shape[0] != B ||
        v->shape[0] != B || out->shape[0] != B || out->shape[1] != nq || out->shape[2] != C)
        return dt_fail(err, DT_EINVAL, "attention: inconsistent q/k/v/out shapes or strides");
    int threads = omp_get_max_threads();
    void *ws = cpu_scratch((cpu_backend *)be, fattn_scratch_bytes(B, nq, nk, heads, C / heads, threads));
    if (!ws) return dt_fail(err, DT_ENOMEM, "attention: out of memory for the fused kernel's tiles");
    fattn_run(q, k, v, bias, heads, scale, -1, FATTN_ISA_AUTO, ((cpu_backend *)be)->attn_kernel == DT_ATTN_KERNEL_INT8,
              threads, ws, out);
    return DT_OK;
}

dt_status cpu_window_attention_fused(dt_backend *be, const dt_tensor *q, const dt_tensor *k, const dt_tensor *v,
                                     int heads, float scale, int window, dt_tensor *out, dt_err *err)
{
    if (!strided_ok(q) || !strided_ok(k) || !strided_ok(v) || !strided_ok(out))
        return dt_fail(err, DT_EINVAL, "window_attention: q/k/v/out must be f32 [B, N, C] views with unit element stride");
    int64_t B = q->shape[0], N = q->shape[1], C = q->shape[2];
    if (heads <= 0 || C % heads || window < 0 || !(scale > 0) || k->shape[0] != B || v->shape[0] != B ||
        k->shape[1] != N || v->shape[1] != N || k->shape[2] != C || v->shape[2] != C || out->shape[0] != B ||
        out->shape[1] != N || out->shape[2] != C)
        return dt_fail(err, DT_EINVAL, "window_attention: inconsistent q/k/v/out shapes or strides, or window < 0");
    int threads = omp_get_max_threads();
    void *ws = cpu_scratch((cpu_backend *)be, fattn_scratch_bytes(B, N, N, heads, C / heads, threads));
    if (!ws) return dt_fail(err, DT_ENOMEM, "window_attention: out of memory for the fused kernel's tiles");
    fattn_run(q, k, v, NULL, heads, scale, window, FATTN_ISA_AUTO, ((cpu_backend *)be)->attn_kernel == DT_ATTN_KERNEL_INT8,
              threads, ws, out);
    return DT_OK;
}

dt_status cpu_attention_op(dt_backend *be, const dt_tensor *q, const dt_tensor *k, const dt_tensor *v,
                           const dt_attn_bias *bias, int heads, float scale, dt_tensor *out, dt_err *err)
{
    return ((cpu_backend *)be)->attn_kernel != DT_ATTN_KERNEL_GEMM ? cpu_attention_fused(be, q, k, v, bias, heads, scale, out, err)
                                           : cpu_attention(be, q, k, v, bias, heads, scale, out, err);
}

dt_status cpu_window_attention_op(dt_backend *be, const dt_tensor *q, const dt_tensor *k, const dt_tensor *v,
                                  int heads, float scale, int window, dt_tensor *out, dt_err *err)
{
    return ((cpu_backend *)be)->attn_kernel != DT_ATTN_KERNEL_GEMM
               ? cpu_window_attention_fused(be, q, k, v, heads, scale, window, out, err)
                                           : cpu_window_attention(be, q, k, v, heads, scale, window, out, err);
}
