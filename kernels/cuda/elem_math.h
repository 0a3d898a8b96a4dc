/* Per-element math of the CUDA kernels, as __host__ __device__ inline functions: the device
 * kernels call them, and tests/test_cuda_host.c (plain C, gcc) runs the same functions on the
 * CPU against the reference kernels. C-compatible: no C++ in these headers.
 *
 * The polynomial exp is the CPU backend's (kernels/cpu/vmath.h) written out again, op for op:
 * with contraction off on both sides (gcc -ffp-contract=off, nvcc --fmad=false) a GPU
 * activation rounds exactly like the CPU one. */
#ifndef DT_CUDA_ELEM_MATH_H
#define DT_CUDA_ELEM_MATH_H
#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define DTM_HD static __host__ __device__ __forceinline__
#else
#define DTM_HD static inline
#endif

/* Activation kinds, numbered as dt_act in kernels/backend.h (kept apart so these headers
 * need nothing but <stdint.h>). */
enum { DTM_ACT_NONE = 0, DTM_ACT_GELU_TANH = 1, DTM_ACT_SILU = 2, DTM_ACT_GELU_ERF = 3 };

DTM_HD uint32_t dtm_f2u(float f)
{
#ifdef __CUDA_ARCH__
    return __float_as_uint(f);
#else
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
#endif
}

DTM_HD float dtm_u2f(uint32_t u)
{
#ifdef __CUDA_ARCH__
    return __uint_as_float(u);
#else
    float f;
    memcpy(&f, &u, 4);
    return f;
#endif
}

/* f32 -> bf16 bits, round to nearest even (NaNs are not produced by the models; as the CPU's). */
DTM_HD uint16_t dtm_bf16_round(float f)
{
    uint32_t u = dtm_f2u(f);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

DTM_HD float dtm_bf16_to_f32(uint16_t h) { return dtm_u2f((uint32_t)h << 16); }

/* f32 rounded to the nearest bf16, kept as f32 (GEMM inputs of the "bf16 through f32" paths). */
DTM_HD float dtm_round_bf16(float f) { return dtm_bf16_to_f32(dtm_bf16_round(f)); }

DTM_HD float dtm_exp(float x)
{
    x = x < -87.3f ? -87.3f : x;
    x = x > 88.7f ? 88.7f : x;
    float n = (x * 1.4426950408889634f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693145751953125f - n * 1.428606765330187e-06f;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (0.16666667f + r * (0.041666668f + r * (0.008333334f + r * (0.0013888889f + r * 0.00019841270f))))));
    return p * dtm_u2f((uint32_t)((int32_t)n + 127) << 23);
}

DTM_HD float dtm_tanh(float x)
{
    float ax = x < 0 ? -x : x;
    float x2 = x * x;
    float small = x * (1.0f + x2 * (-0.33333334f + x2 * (0.13333334f + x2 * -0.053968254f)));
    float big = 1.0f - 2.0f / (dtm_exp(2.0f * ax) + 1.0f);
    big = x < 0 ? -big : big;
    return ax < 0.0625f ? small : big;
}

DTM_HD float dtm_gelu_tanh(float x) { return 0.5f * x * (1.0f + dtm_tanh(0.7978845608028654f * (x + 0.044715f * x * x * x))); }
DTM_HD float dtm_silu(float x) { return x / (1.0f + dtm_exp(-x)); }

/* The exact GELU as the CPU's vm_gelu_erf (kernels/cpu/vmath.h, where the method is described),
 * op for op: its fmas are explicit fmaf calls on both sides. */
DTM_HD float dtm_gelu_erf(float x)
{
    float ax = x < 0 ? -x : x;
    float a = ax * 0.70710678118654752f;
    float t = (a - 2.0f) / (a + 2.0f);
    float p = 2.518798101e-05f;
    p = fmaf(p, t, -3.673157771e-04f);
    p = fmaf(p, t, -1.253732131e-03f);
    p = fmaf(p, t, 1.275616814e-03f);
    p = fmaf(p, t, 8.639339358e-03f);
    p = fmaf(p, t, -8.045202121e-03f);
    p = fmaf(p, t, -5.420542136e-02f);
    p = fmaf(p, t, 1.640532166e-01f);
    p = fmaf(p, t, -1.660313308e-01f);
    p = fmaf(p, t, -9.276390076e-02f);
    p = fmaf(p, t, 1.276978374e+00f);
    float xx = x * x, lo = fmaf(x, x, -xx);
    float e = dtm_exp(-0.5f * xx) * (1.0f - 0.5f * lo);
    float erfc = e * p / fmaf(2.0f, a, 1.0f);
    erfc = ax > 14.0f ? 0.0f : erfc;
    float phi = x < 0 ? 0.5f * erfc : 1.0f - 0.5f * erfc;
    return x * phi;
}

DTM_HD float dtm_act(int act, float x)
{
    return act == DTM_ACT_GELU_TANH ? dtm_gelu_tanh(x) : act == DTM_ACT_SILU ? dtm_silu(x)
         : act == DTM_ACT_GELU_ERF ? dtm_gelu_erf(x) : x;
}

/* Classifier-free guidance, in this order and without a fused multiply-add (backend.h). */
DTM_HD float dtm_cfg(float u, float c, float g) { return u + g * (c - u); }

/* diffusers' seam blend weight for slice t of e: a·(1 − t/e) + b·(t/e), the ratio in double. */
DTM_HD float dtm_blend(float a, float b, int64_t t, int64_t e)
{
    double y = (double)t / (double)e;
    return a * (float)(1.0 - y) + b * (float)y;
}

#endif
