/* The per-element and per-row math of the CUDA quantized linears (cuda_qlinear.cu), shared with
 * tests/test_cuda_host.c, which runs it against the CPU's (kernels/cpu/qrows.c, qlinear.c).
 *
 * Activation rows (ViDiT-Q, kernels/quant.h): t = x ⊙ ss (ss = smooth·signs, exact: a product
 * by ±1), the unnormalized block Walsh-Hadamard transform of t stage by stage (h = 1, 2, 4, ..:
 * every butterfly a+c / a−c on the same operands as dt_fwht_blocks, so any order within a stage
 * rounds identically), symmetric int8 codes at 127/amax rounded half to even (rintf in the
 * default rounding mode, as the CPU's nearbyintf) and clamped to ±127; the row's scale is
 * amax / rs with rs = 127·sqrt(block) (the 1/sqrt(block) of the normalized transform folded in).
 * Weights: int8 rows, or 4-bit codes two per byte (column 2j in the low nibble) times the
 * group multiplier. Epilogue: y = act(acc·ascale·wscale [+ b]) with the CPU epilogue's GELU
 * (the sigmoid form, vm_gelu_tanh_sigmoid). */
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

/* ---- ViDiT-Q activation rows: balancing, rotation, quantization ---- */

/* The low index of butterfly p (0 <= p < K/2) of the stage of half-width h: pairs (lo, lo + h)
 * inside aligned spans of 2h (block is a multiple of 2h, so spans never cross a block). */
DTM_HD int64_t dtm_fwht_lo(int64_t p, int64_t h) { return (p / h) * 2 * h + p % h; }

/* One stage of the transform over t[0..K): the device runs the same butterflies, one per thread. */
DTM_HD void dtm_fwht_butterfly(float *t, int64_t p, int64_t h)
{
    int64_t lo = dtm_fwht_lo(p, h);
    float a = t[lo], c = t[lo + h];
    t[lo] = a + c;
    t[lo + h] = a - c;
}

/* The whole transform of a row, stage after stage (the host's order of the device's stages). */
DTM_HD void dtm_fwht_row(float *t, int64_t K, int block)
{
    for (int64_t h = 1; h < block; h *= 2)
        for (int64_t p = 0; p < K / 2; p++) dtm_fwht_butterfly(t, p, h);
}

/* The balancing/sign factor of channel j (ss NULL: none). */
DTM_HD float dtm_qbalance(float x, const float *ss, int64_t j) { return ss ? x * ss[j] : x; }

/* The row's activation scale from its amax: amax / (127·sqrt(block)), rs precomputed on the host
 * as the CPU computes it (127.0f * sqrtf((float)block)). */
DTM_HD float dtm_qrow_scale(float amax, float rs) { return amax / rs; }

/* A whole row as the device kernel computes it: t (K floats of scratch) = balanced, rotated row;
 * q[0..Kp) = codes with zeros in the padding [K, Kp); returns the row's scale. */
DTM_HD float dtm_qrow(const float *x, int64_t K, int64_t Kp, const float *ss, int block, float rs, float *t, int8_t *q)
{
    for (int64_t j = 0; j < K; j++) t[j] = dtm_qbalance(x[j], ss, j);
    if (block > 1) dtm_fwht_row(t, K, block);
    float amax = dtm_quantize_row(t, K, q);
    for (int64_t j = K; j < Kp; j++) q[j] = 0;
    return dtm_qrow_scale(amax, rs);
}

/* ---- weights ---- */

/* The int8 weight of 4-bit column j (hi: j odd) from its packed byte, times the group multiplier
 * m (1 when per channel): the nibble sign-extended. */
DTM_HD int8_t dtm_w4_code(uint8_t byte, int hi, int m)
{
    int v = hi ? (int)((int8_t)byte >> 4) : (int)((int8_t)(uint8_t)(byte << 4) >> 4);
    return (int8_t)(v * m);
}

/* Element (n, k) of the expanded, padded int8 weights [Np, Kp] from packed [out, K/2] codes
 * and group multipliers gscale [out, K/G] (NULL: per channel); zero in the padding. */
DTM_HD int8_t dtm_w4_expand(const uint8_t *packed, const uint8_t *gscale, int group, int64_t out, int64_t K, int64_t n,
                            int64_t k)
{
    if (n >= out || k >= K) return 0;
    int m = gscale ? gscale[n * (K / group) + k / group] : 1;
    return dtm_w4_code(packed[n * (K / 2) + k / 2], (int)(k & 1), m);
}

/* ---- epilogue ---- */

/* The CPU epilogue's GELU: x / (1 + e^(−2u)), vm_gelu_tanh_sigmoid op for op. */
DTM_HD float dtm_gelu_tanh_sigmoid(float x) { return x / (1.0f + dtm_exp(-1.5957691216057308f * (x + 0.044715f * x * x * x))); }

DTM_HD float dtm_qact(int act, float x)
{
    return act == DTM_ACT_GELU_TANH ? dtm_gelu_tanh_sigmoid(x) : act == DTM_ACT_SILU ? dtm_silu(x) : x;
}

/* y = act(acc·ascale·wscale [+ b]) as the CPU's epilogue rounds it (no bias: no "+ 0", which
 * would turn −0 into +0). */
DTM_HD float dtm_qepilogue(int32_t acc, float ascale, float wscale, const float *b, int64_t n, int act)
{
    float v = (float)acc * ascale * wscale;
    return dtm_qact(act, b ? v + b[n] : v);
}

/* The padded sizes of an int8 GEMM operand: cuBLASLt's IMMA kernels in the regular (column-major)
 * order want m, k and every leading dimension a multiple of 4; K goes to 16 so that each row of
 * codes starts 16-byte aligned. */
DTM_HD int64_t dtm_pad_k(int64_t K) { return (K + 15) / 16 * 16; }
DTM_HD int64_t dtm_pad_n(int64_t N) { return (N + 3) / 4 * 4; }

#endif
