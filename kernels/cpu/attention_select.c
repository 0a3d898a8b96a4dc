/* The CPU backend's attention entries: the two-GEMM kernels (attention.c, window_attention.c,
 * the reference path) or the fused one (attention_fused.c), per backend. The fused kernel is
 * the f32 default: it measured faster than the two GEMMs here (`ditrt bench attention`); bf16
 * keeps the two GEMMs, whose bf16 dot products the fused kernel does not have. The int8-QKᵀ
 * variant of the fused kernel runs only when asked for (DT_ATTN_KERNEL_INT8, DITRT_ATTN=int8), for the
 * whole backend or per call (cpu_attention_with: a model's choice, e.g. a quantization plan's). */
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

/* The fused kernel, QKᵀ in int8 when qk8; window < 0: full attention with bias. */
static dt_status fused(dt_backend *be, const dt_tensor *q, const dt_tensor *k, const dt_tensor *v,
                       const dt_attn_bias *bias, int heads, float scale, int window, int qk8, dt_tensor *out,
                       dt_err *err)
{
    const char *op = window < 0 ? "attention" : "window_attention";
    if (!strided_ok(q) || !strided_ok(k) || !strided_ok(v) || !strided_ok(out))
        return dt_fail(err, DT_EINVAL, "%s: q/k/v/out must be f32 [B, N, C] views with unit element stride", op);
    int64_t B = q->shape[0], nq = q->shape[1], nk = k->shape[1], C = q->shape[2];
    if (heads <= 0 || C % heads || k->shape[2] != C || v->shape[2] != C || v->shape[1] != nk || k->shape[0] != B ||
        v->shape[0] != B || out->shape[0] != B || out->shape[1] != nq || out->shape[2] != C)
        return dt_fail(err, DT_EINVAL, "%s: inconsistent q/k/v/out shapes or strides", op);
    if (window >= 0 && (nk != nq || !(scale > 0) || bias))
        return dt_fail(err, DT_EINVAL, "window_attention: needs Nq == Nk, scale > 0 and no bias");
    int threads = omp_get_max_threads();
    void *ws = cpu_scratch((cpu_backend *)be, fattn_scratch_bytes(B, nq, nk, heads, C / heads, threads));
    if (!ws) return dt_fail(err, DT_ENOMEM, "%s: out of memory for the fused kernel's tiles", op);
    fattn_run(q, k, v, bias, heads, scale, window, FATTN_ISA_AUTO, qk8, threads, ws, out);
    return DT_OK;
}

static int int8_qk(dt_backend *be) { return ((cpu_backend *)be)->attn_kernel == DT_ATTN_KERNEL_INT8; }

dt_status cpu_attention_fused(dt_backend *be, const dt_tensor *q, const dt_tensor *k, const dt_tensor *v,
                              const dt_attn_bias *bias, int heads, float scale, dt_tensor *out, dt_err *err)
{
    return fused(be, q, k, v, bias, heads, scale, -1, int8_qk(be), out, err);
}

dt_status cpu_window_attention_fused(dt_backend *be, const dt_tensor *q, const dt_tensor *k, const dt_tensor *v,
                                     int heads, float scale, int window, dt_tensor *out, dt_err *err)
{
    if (window < 0) return dt_fail(err, DT_EINVAL, "window_attention: window < 0");
    return fused(be, q, k, v, NULL, heads, scale, window, int8_qk(be), out, err);
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

dt_status cpu_attention_with(dt_backend *be, dt_attn_kernel kind, const dt_tensor *q, const dt_tensor *k,
                             const dt_tensor *v, const dt_attn_bias *bias, int heads, float scale, int window,
                             dt_tensor *out, dt_err *err)
{
    if (window >= 0 && bias) return dt_fail(err, DT_EINVAL, "window_attention: no bias with a window");
    switch (kind) {
    case DT_ATTN_KERNEL_AUTO:
        return window < 0 ? cpu_attention_op(be, q, k, v, bias, heads, scale, out, err)
                          : cpu_window_attention_op(be, q, k, v, heads, scale, window, out, err);
    case DT_ATTN_KERNEL_GEMM:
        return window < 0 ? cpu_attention(be, q, k, v, bias, heads, scale, out, err)
                          : cpu_window_attention(be, q, k, v, heads, scale, window, out, err);
    case DT_ATTN_KERNEL_FUSED:
    case DT_ATTN_KERNEL_INT8:
        return fused(be, q, k, v, bias, heads, scale, window, kind == DT_ATTN_KERNEL_INT8, out, err);
    }
    return dt_fail(err, DT_EINVAL, "attention: unknown kernel %d", (int)kind);
}
