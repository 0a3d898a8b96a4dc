/* What a machine without a GPU can check of the CUDA backend beyond its math headers: the
 * libraries load (dlopen) with every symbol, and they accept the descriptors the ops build
 * for the shapes the models use: cuBLASLt operation and layout descriptors of the linears and
 * of attention's batched GEMMs (after our own leading-dimension checks, which cuBLASLt does not
 * do at creation), and cuDNN's convolution descriptors, whose output size must be the CPU
 * backend's for every VAE geometry (asymmetric padding through the padded copy). None of these
 * calls needs a device (cuBLASLt's handle and heuristic do; they are left to make test-gpu). */
#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/quant_math.h"
#include "kernels/cuda/cuda_sdpa.h"
#include <stdio.h>
#include <string.h>

static int gemm_ok(const dt_cuda_libs *L, const cu_gemm_args *g, const char *what, char *why, size_t n)
{
    cu_gemm_descs d;
    dt_err err = {};
    if (cu_gemm_descs_make(L, g, &d, &err) != DT_OK) {
        snprintf(why, n, "%s: %s", what, err.msg);
        return 0;
    }
    cu_gemm_descs_free(L, &d);
    return 1;
}

static int check_gemms(const dt_cuda_libs *L, char *why, size_t n)
{
    /* fake, well-aligned addresses: descriptors only record them */
    const void *P = (const void *)(uintptr_t)4096;
    float *F = (float *)(uintptr_t)8192;
    static const int lin[][2] = {{1152, 1152}, {1152, 3456}, {1152, 4608}, {4608, 1152}, {4096, 1152}, {256, 1152},
                                 {1152, 6912}, {4096, 10240}, {5120, 4096}, {4, 1152}};
    static const int64_t rows[] = {1, 240, 8192};
    static const dt_dtype dts[] = {DT_F32, DT_BF16, DT_F16};
    char what[128];
    for (size_t i = 0; i < sizeof lin / sizeof *lin; i++)
        for (size_t r = 0; r < 3; r++)
            for (size_t t = 0; t < 3; t++) {
                cu_gemm_args g = cu_linear_args(lin[i][0], lin[i][1], rows[r], dts[t], P, P, F, F);
                snprintf(what, sizeof what, "linear %dx%d, %lld rows, %s", lin[i][0], lin[i][1], (long long)rows[r],
                         dt_dtype_name(dts[t]));
                if (!gemm_ok(L, &g, what, why, n)) return 0;
            }
    /* attention: PixArt self (4096 tokens, 16 heads of 72, rows of a fused qkv or of q), cross
     * (120 caption keys), T5 (64 heads of 64), blocks of 1 and 256 query rows */
    static const struct { int64_t Nk, d, ks; int heads; } at[] = {
        {4096, 72, 3456, 16}, {4096, 72, 1152, 16}, {120, 72, 1152, 16}, {120, 64, 4096, 64}, {16384, 72, 1152, 16}};
    for (size_t i = 0; i < sizeof at / sizeof *at; i++)
        for (int64_t rb = 1; rb <= 256; rb += 255) {
            cu_gemm_args s = cu_attn_qk_args(F, at[i].ks, F, at[i].ks, at[i].Nk, rb, at[i].d, at[i].heads, F);
            cu_gemm_args o = cu_attn_pv_args(F, at[i].ks, F, at[i].Nk, rb, at[i].d, at[i].heads, F, at[i].d * at[i].heads);
            snprintf(what, sizeof what, "attention S=QK^T, %lld keys, %d heads of %lld", (long long)at[i].Nk, at[i].heads,
                     (long long)at[i].d);
            if (!gemm_ok(L, &s, what, why, n)) return 0;
            snprintf(what, sizeof what, "attention O=PV, %lld keys, %d heads of %lld", (long long)at[i].Nk, at[i].heads,
                     (long long)at[i].d);
            if (!gemm_ok(L, &o, what, why, n)) return 0;
        }
    /* f32 linears through TF32 (DITRT_CUDA_TF32=1): only f32 inputs change compute type */
    for (size_t i = 0; i < 3; i++) {
        cu_gemm_args g = cu_linear_args(lin[i][0], lin[i][1], 240, dts[i], P, P, F, F);
        cublasComputeType_t want = dts[i] == DT_F32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
        if (cu_compute_of(&g, 1) != want || cu_compute_of(&g, 0) != CUBLAS_COMPUTE_32F) {
            snprintf(why, n, "TF32: wrong compute type for a %s linear", dt_dtype_name(dts[i]));
            return 0;
        }
        g.compute = cu_compute_of(&g, 1);
        snprintf(what, sizeof what, "linear %dx%d through TF32", lin[i][0], lin[i][1]);
        if (!gemm_ok(L, &g, what, why, n)) return 0;
    }
    if (cu_tf32_requested(NULL) || cu_tf32_requested("0") || cu_tf32_requested("") || cu_tf32_requested("10") ||
        !cu_tf32_requested("1")) {
        snprintf(why, n, "TF32: DITRT_CUDA_TF32 parsing");
        return 0;
    }
    /* the int8 GEMMs of quantized layers (padded as cuda_qlinear.cu pads them), and the IMMA rules */
    static const int qlin[][2] = {{1152, 1152}, {1152, 3456}, {1152, 4608}, {4608, 1152}, {67, 29}, {5120, 4096}};
    for (size_t i = 0; i < sizeof qlin / sizeof *qlin; i++)
        for (size_t r = 0; r < 3; r++) {
            int64_t kp = dtm_pad_k(qlin[i][0]), np = dtm_pad_n(qlin[i][1]);
            cu_gemm_args g = cu_qlinear_args(kp, np, rows[r], (const int8_t *)P, (const int8_t *)P, (int32_t *)F);
            snprintf(what, sizeof what, "int8 linear %dx%d (padded %lldx%lld), %lld rows", qlin[i][0], qlin[i][1],
                     (long long)kp, (long long)np, (long long)rows[r]);
            if (!gemm_ok(L, &g, what, why, n)) return 0;
        }
    dt_err qerr = {};
    cu_gemm_args q67 = cu_qlinear_args(67, 32, 5, (const int8_t *)P, (const int8_t *)P, (int32_t *)F);
    cu_gemm_args qnn = cu_qlinear_args(64, 32, 5, (const int8_t *)P, (const int8_t *)P, (int32_t *)F);
    qnn.ta = 0;
    if (cu_gemm_check(&q67, &qerr) == DT_OK || cu_gemm_check(&qnn, &qerr) == DT_OK) {
        snprintf(why, n, "int8 GEMM check: accepted an unpadded K of 67 or a non-TN layout");
        return 0;
    }
    /* and the check refuses a leading dimension below its matrix's rows */
    cu_gemm_args bad = cu_attn_qk_args(F, 71, F, 1152, 4096, 1, 72, 16, F);
    dt_err err = {};
    if (cu_gemm_check(&bad, &err) == DT_OK) {
        snprintf(why, n, "GEMM check: accepted lda 71 for 72 rows");
        return 0;
    }
    return 1;
}

static int check_convs(const dt_cuda_libs *L, char *why, size_t n)
{
    /* cin, cout, k, stride, pad_lo, pad_hi: the SD/PixArt VAE's decoder and encoder convolutions */
    static const int geo[][6] = {{4, 512, 3, 1, 1, 1},   {512, 512, 3, 1, 1, 1}, {512, 256, 1, 1, 0, 0},
                                 {128, 3, 3, 1, 1, 1},   {3, 128, 3, 1, 1, 1},   {128, 128, 3, 2, 0, 1},
                                 {512, 8, 3, 1, 1, 1},   {8, 8, 1, 1, 0, 0},     {5, 7, 3, 2, 1, 1}};
    static const int64_t hw[][2] = {{7, 5}, {32, 32}, {129, 64}, {1, 1}};
    for (size_t i = 0; i < sizeof geo / sizeof *geo; i++)
        for (size_t j = 0; j < sizeof hw / sizeof *hw; j++) {
            const int *g = geo[i];
            cu_conv_plan_t p;
            cu_conv_plan(g[2], g[3], g[4], g[5], hw[j][0], hw[j][1], &p);
            if (p.Ho <= 0 || p.Wo <= 0 || !p.fits) continue; /* the op returns or refuses before cuDNN */
            cu_conv_descs d = {};
            int on = 0, oc = 0, oh = 0, ow = 0;
            cudnnStatus_t s = cu_conv_descs_make(L, g[0], g[1], g[2], g[3], 1, 2, &p, &d);
            if (s == CUDNN_STATUS_SUCCESS) s = L->cudnnGetConvolution2dForwardOutputDim(d.cv, d.x, d.w, &on, &oc, &oh, &ow);
            cu_conv_descs_free(L, &d);
            if (s != CUDNN_STATUS_SUCCESS || on != 2 || oc != g[1] || oh != p.Ho || ow != p.Wo) {
                snprintf(why, n, "conv %d->%d k%d s%d pad %d/%d on %lldx%lld: cuDNN %s, output %dx%dx%dx%d, ours 2x%dx%lldx%lld",
                         g[0], g[1], g[2], g[3], g[4], g[5], (long long)hw[j][0], (long long)hw[j][1],
                         L->cudnnGetErrorString(s), on, oc, oh, ow, g[1], (long long)p.Ho, (long long)p.Wo);
                return 0;
            }
        }
    return 1;
}

/* cuDNN's fused-attention graph: its tensor and operation descriptors (cu_sdpa_graph_ops)
 * finalize for the models' attention shapes, bf16 and f16 compute (the io code each maps to),
 * with and without the folded bias;
 * the operation graph, heuristics and plan need a handle (a device) and are left to
 * make test-gpu. Also the argument checks cu_sdpa_graph_ops does itself. */
static int check_sdpa(const dt_cuda_libs *L, char *why, size_t n)
{
    static const struct { int64_t B, H, Nq, Nk, d; int key, head; } sh[] = {
        {2, 16, 4096, 4096, 72, 0, 0}, /* PixArt-XL-2 self-attention at 1024² (cfg batch) */
        {2, 16, 4096, 120, 72, 1, 0},  /* its cross-attention with the caption key mask */
        {1, 64, 120, 120, 64, 1, 1},   /* T5-XXL: key mask and per-head position bias */
        {1, 16, 256, 256, 72, 0, 1},   /* head bias alone */
        {3, 2, 7, 5, 8, 1, 0}};        /* small odd sizes (make test-gpu's shapes) */
    for (size_t i = 0; i < sizeof sh / sizeof *sh; i++)
        for (int c = 0; c < 2; c++) { /* the compute types' io codes, from dtype_math.h's table */
            const int io = cu_ftype(c ? DT_F16 : DT_BF16).sdpa_io;
            cu_sdpa_shape s = {io, sh[i].B, sh[i].H, sh[i].Nq, sh[i].Nk, sh[i].d, sh[i].key, sh[i].head};
            cu_sdpa_graph g = {};
            char w[256];
            cudnnStatus_t st = cu_sdpa_graph_ops(L, &s, &g, w, sizeof w);
            int nops = g.nops, bias = g.has_bias;
            cu_sdpa_graph_free(L, &g);
            if (st != CUDNN_STATUS_SUCCESS) {
                snprintf(why, n, "%s (%lldx%lld heads of %lld, %lld keys, %s)", w, (long long)s.B, (long long)s.H,
                         (long long)s.d, (long long)s.Nk, dtm_float_type_of(dtm_sdpa_io_type(io)).name);
                return 0;
            }
            /* matmul, scale, [bias], max, sub, exp, sum, log, stats, divide, matmul */
            if (nops != 10 + (sh[i].key || sh[i].head) || bias != (sh[i].key || sh[i].head) || g.nall != 0) {
                snprintf(why, n, "cuDNN SDPA graph: %d operations for bias %d (expected %d)", nops, bias,
                         10 + (sh[i].key || sh[i].head));
                return 0;
            }
        }
    cu_sdpa_shape bad = {3, 1, 1, 8, 8, 8, 0, 0};
    cu_sdpa_graph g = {};
    char w[256];
    if (cu_sdpa_graph_ops(L, &bad, &g, w, sizeof w) == CUDNN_STATUS_SUCCESS || g.nall != 0) {
        cu_sdpa_graph_free(L, &g);
        snprintf(why, n, "cuDNN SDPA graph: accepted an io type that is neither bf16 nor f16");
        return 0;
    }
    /* and cuDNN itself checks what it finalizes: a negative head dim is refused at the Q tensor
     * (so the acceptances above are cuDNN's, not a library that finalizes anything) */
    cu_sdpa_shape zero = {1, 1, 1, 8, 8, -8, 0, 0};
    cudnnStatus_t st = cu_sdpa_graph_ops(L, &zero, &g, w, sizeof w);
    cu_sdpa_graph_free(L, &g);
    if (st == CUDNN_STATUS_SUCCESS || !strstr(w, "Q tensor")) {
        snprintf(why, n, "cuDNN SDPA graph: a head dim of -8 was not refused at the Q tensor (%s)",
                 st == CUDNN_STATUS_SUCCESS ? "accepted" : w);
        return 0;
    }
    return 1;
}

extern "C" int cuda_backend_libs_check(char *why, size_t n)
{
    const dt_cuda_libs *L = dt_cuda_libs_get(why, n);
    if (!L) return strstr(why, "symbol") ? -1 : 0;
    if (!check_gemms(L, why, n) || !check_convs(L, why, n) || !check_sdpa(L, why, n)) return -1;
    snprintf(why, n, "cuBLASLt %zu and cuDNN %zu loaded; GEMM (f32/bf16/f16, int8), convolution and fused-attention "
                     "graph descriptors accepted",
             L->cublasLtGetVersion(), L->cudnnGetVersion());
    return 1;
}
