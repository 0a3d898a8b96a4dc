/* One attention-score row through softmax (see cpu.h).
 *
 * The plain version is the reference and the portable path: max, then the exponentials
 * and their sum, then one pass that normalizes and (for bf16 attention) rounds to bf16
 * straight into P. The AVX2 version does the same three passes on 8 lanes with vm_exp's
 * range reduction and polynomial (FMA-contracted, and its sum in another order), so it
 * agrees with the plain one to a few ulp, tested so. For bf16 the exponentials go to a
 * scratch row the caller keeps in L1, so the f32 scores are only read: writing them back
 * would send the whole score block (4 MB a head at 1024 tokens) back to memory. It was written because the attention
 * softmax took about a third of the attention time of a PixArt step at 512 px here, more
 * than either attention matmul beyond its floor. */
#include "cpu.h"
#include "vmath.h"
#include <math.h>
#include <string.h>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

void cpu_softmax_row_plain(const float *x, int64_t n, float scale, float *e, uint16_t *out16)
{
    float mx = -INFINITY, sum = 0.0f;
#pragma omp simd reduction(max : mx)
    for (int64_t j = 0; j < n; j++) mx = x[j] > mx ? x[j] : mx;
    mx *= scale; /* scale > 0: max commutes with it */
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < n; j++) {
        float v = vm_exp(x[j] * scale - mx);
        e[j] = v;
        sum += v;
    }
    float inv = 1.0f / sum;
    if (out16) {
#pragma omp simd
        for (int64_t j = 0; j < n; j++) out16[j] = cpu_bf16_round(e[j] * inv);
    } else {
#pragma omp simd
        for (int64_t j = 0; j < n; j++) e[j] *= inv;
    }
}

#if defined(__AVX2__) && defined(__FMA__)
static inline __m256 exp8(__m256 x)
{
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.3f));
    x = _mm256_min_ps(x, _mm256_set1_ps(88.7f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.4426950408889634f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187e-06f), r);
    __m256 p = _mm256_set1_ps(0.00019841270f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.0013888889f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.008333334f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.041666668f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.16666667f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i s = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(s));
}

static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float hmax8(__m256 v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 8 floats -> 8 bf16 (round to nearest even) */
static inline __m128i bf16x8(__m256 v)
{
    __m256i u = _mm256_castps_si256(v);
    __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    u = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7fff))), 16);
    return _mm_packus_epi32(_mm256_castsi256_si128(u), _mm256_extracti128_si256(u, 1));
}

void cpu_softmax_row(const float *x, int64_t n, float scale, float *e, uint16_t *out16)
{
    if (n < 8) { cpu_softmax_row_plain(x, n, scale, e, out16); return; }
    int64_t n8 = n & ~(int64_t)7, j;
    __m256 m = _mm256_loadu_ps(x);
    for (j = 8; j < n8; j += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + j));
    float mx = hmax8(m);
    for (; j < n; j++) mx = x[j] > mx ? x[j] : mx;
    mx *= scale;
    const __m256 vs = _mm256_set1_ps(scale), vm = _mm256_set1_ps(-mx);
    __m256 acc = _mm256_setzero_ps();
    for (j = 0; j < n8; j += 8) {
        __m256 v = exp8(_mm256_fmadd_ps(_mm256_loadu_ps(x + j), vs, vm));
        _mm256_storeu_ps(e + j, v);
        acc = _mm256_add_ps(acc, v);
    }
    float sum = hsum8(acc);
    for (; j < n; j++) {
        float v = vm_exp(x[j] * scale - mx);
        e[j] = v;
        sum += v;
    }
    const float inv = 1.0f / sum;
    const __m256 vi = _mm256_set1_ps(inv);
    if (out16) {
        for (j = 0; j < n8; j += 8) _mm_storeu_si128((__m128i *)(out16 + j), bf16x8(_mm256_mul_ps(_mm256_loadu_ps(e + j), vi)));
        for (; j < n; j++) out16[j] = cpu_bf16_round(e[j] * inv);
    } else {
        for (j = 0; j < n8; j += 8) _mm256_storeu_ps(e + j, _mm256_mul_ps(_mm256_loadu_ps(e + j), vi));
        for (; j < n; j++) e[j] *= inv;
    }
}
#else
void cpu_softmax_row(const float *x, int64_t n, float scale, float *e, uint16_t *out16)
{
    cpu_softmax_row_plain(x, n, scale, e, out16);
}
#endif
