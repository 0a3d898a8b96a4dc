/* Activation quantization (ViDiT-Q rows, kernels/quant.h): symmetric int8 at 127/amax per row,
 * round half to even (rintf in the default rounding mode, as the CPU's nearbyintf), clamped to
 * ±127. */
#ifndef DT_CUDA_QUANT_MATH_H
#define DT_CUDA_QUANT_MATH_H
#include "kernels/cuda/elem_math.h"
#include <math.h>

DTM_HD float dtm_qinv(float amax) { return amax > 0 ? 127.0f / amax : 0.0f; }

DTM_HD int8_t dtm_quantize(float x, float inv)
{
    float v = rintf(x * inv);
    v = v > 127.0f ? 127.0f : v;
    v = v < -127.0f ? -127.0f : v;
    return (int8_t)(int32_t)v;
}

/* y = act(acc·ascale·wscale + b): the dequantizing epilogue of an int8 GEMM. */
DTM_HD float dtm_dequant(int32_t acc, float ascale, float wscale, float b, int act)
{
    return dtm_act(act, (float)acc * ascale * wscale + b);
}

/* One row: returns amax, writes the codes. */
DTM_HD float dtm_quantize_row(const float *x, int64_t K, int8_t *q)
{
    float amax = 0;
    for (int64_t j = 0; j < K; j++) {
        float a = fabsf(x[j]);
        amax = a > amax ? a : amax;
    }
    float inv = dtm_qinv(amax);
    for (int64_t j = 0; j < K; j++) q[j] = dtm_quantize(x[j], inv);
    return amax;
}

#endif
