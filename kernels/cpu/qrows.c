/* One activation row balanced, rotated and quantized to int8 (see cpu.h, quant.h).
 *
 * The plain version is the reference: x ⊙ s, ±1 signs, dt_fwht_blocks, then symmetric
 * rounding. The AVX2 version computes the same butterflies in the same stage order (the
 * three in-vector stages as a lane permute plus one FMA by ±1, which rounds exactly like
 * the add/sub it replaces; the stages across vectors on 16 registers per 128 channels), so
 * its codes and scale are bit-identical to the plain ones, and tested so. It was ~5x faster
 * on this machine than the plain path, which spent more time rotating than the GEMM saved. */
#include "cpu.h"
#include "kernels/quant.h"
#include <math.h>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

/* Symmetric int8 codes of src[K] at 127/amax; returns amax. */
static float round_row(const float *src, int K, int8_t *q)
{
    float amax = 0;
#pragma omp simd reduction(max : amax)
    for (int j = 0; j < K; j++) {
        float a = fabsf(src[j]); /* not fmaxf: libm's NaN rules keep it a call */
        amax = a > amax ? a : amax;
    }
    float inv = amax > 0 ? 127.0f / amax : 0.0f;
#pragma omp simd
    for (int j = 0; j < K; j++) {
        float v = nearbyintf(src[j] * inv);
        v = v > 127.0f ? 127.0f : v;
        v = v < -127.0f ? -127.0f : v;
        q[j] = (int8_t)(int32_t)v;
    }
    return amax;
}

float cpu_qrow_plain(const float *x, int K, const float *smooth, const int8_t *signs, int block, float *t, int8_t *q)
{
    const float *src = x;
    if (smooth || signs) {
#pragma omp simd
        for (int j = 0; j < K; j++) {
            float v = smooth ? x[j] * smooth[j] : x[j];
            t[j] = signs && signs[j] < 0 ? -v : v;
        }
        if (signs) dt_fwht_blocks(t, K, block);
        src = t;
    }
    return round_row(src, K, q);
}

#if defined(__AVX2__) && defined(__FMA__)
/* Stages 1, 2, 4 of the transform inside one vector of 8. */
static inline __m256 fwht8(__m256 v)
{
    const __m256 s1 = _mm256_setr_ps(1, -1, 1, -1, 1, -1, 1, -1), s2 = _mm256_setr_ps(1, 1, -1, -1, 1, 1, -1, -1),
                 s4 = _mm256_setr_ps(1, 1, 1, 1, -1, -1, -1, -1);
    v = _mm256_fmadd_ps(v, s1, _mm256_permute_ps(v, 0xB1));
    v = _mm256_fmadd_ps(v, s2, _mm256_permute_ps(v, 0x4E));
    return _mm256_fmadd_ps(v, s4, _mm256_permute2f128_ps(v, v, 0x01));
}

/* Stages 8..64 of one 128-channel group, in registers. */
static inline void fwht128_cross(float *t)
{
    __m256 r[16];
    for (int i = 0; i < 16; i++) r[i] = _mm256_loadu_ps(t + 8 * i);
    for (int h = 1; h < 16; h *= 2)
        for (int i = 0; i < 16; i += 2 * h)
            for (int j = i; j < i + h; j++) {
                __m256 a = r[j], c = r[j + h];
                r[j] = _mm256_add_ps(a, c);
                r[j + h] = _mm256_sub_ps(a, c);
            }
    for (int i = 0; i < 16; i++) _mm256_storeu_ps(t + 8 * i, r[i]);
}

/* Stages hh = from..block/2 of every block, from memory (L1-resident t). */
static void fwht_stages(float *t, int K, int block, int from)
{
    for (int b0 = 0; b0 < K; b0 += block)
        for (int hh = from; hh < block; hh *= 2)
            for (int i = b0; i < b0 + block; i += 2 * hh)
                for (int j = 0; j < hh; j += 8) {
                    __m256 a = _mm256_loadu_ps(t + i + j), c = _mm256_loadu_ps(t + i + hh + j);
                    _mm256_storeu_ps(t + i + j, _mm256_add_ps(a, c));
                    _mm256_storeu_ps(t + i + hh + j, _mm256_sub_ps(a, c));
                }
}

float cpu_qrow(const float *x, int K, const float *ss, const float *smooth, const int8_t *signs, int block, float *t,
               int8_t *q)
{
    if (!signs || block % 8 || K % 8) return cpu_qrow_plain(x, K, smooth, signs, block, t, q);
    for (int j = 0; j < K; j += 8) {
        __m256 v = _mm256_loadu_ps(x + j);
        _mm256_storeu_ps(t + j, fwht8(_mm256_mul_ps(v, _mm256_loadu_ps(ss + j))));
    }
    int from = 8;
    if (block % 128 == 0) {
        for (int j = 0; j < K; j += 128) fwht128_cross(t + j);
        from = 128;
    }
    fwht_stages(t, K, block, from);
    return round_row(t, K, q);
}
#else
float cpu_qrow(const float *x, int K, const float *ss, const float *smooth, const int8_t *signs, int block, float *t,
               int8_t *q)
{
    (void)ss;
    return cpu_qrow_plain(x, K, smooth, signs, block, t, q);
}
#endif

void cpu_qrow_signed_smooth(const float *smooth, const int8_t *signs, int K, float *ss)
{
    for (int j = 0; j < K; j++) ss[j] = (smooth ? smooth[j] : 1.0f) * (signs && signs[j] < 0 ? -1.0f : 1.0f);
}
