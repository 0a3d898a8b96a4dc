/* torch 1.13's CPU normal sampler, reproduced bit for bit (see rng.h for the contract).
 *
 * Sources it follows: ATen/core/MT19937RNGEngine.h (engine), CPUGeneratorImpl (random64 =
 * first draw in the high word), core/TransformationHelper.h (uniform_real: mask to the
 * mantissa width, scale by 2^-digits), core/DistributionsHelper.h (normal_distribution<double>
 * with its cached second value), native/cpu/DistributionTemplates.h (normal_fill,
 * normal_fill_16, normal_fill_16_AVX2).
 *
 * The vector variant recomputes, one lane at a time, the arithmetic of the Cephes-style
 * log256_ps / sincos256_ps (avx_mathfun.h) that torch's AVX2 kernel calls. torch's build lets
 * GCC contract multiply-adds into FMAs there (C++ defaults to -ffp-contract=fast); which ones
 * it fused was read off the generated code and confirmed against torch's output, and appears
 * below as explicit fmaf() calls. Everything else must stay unfused: this file relies on the
 * ISO C default of no contraction (-std=c11); tests/test_rng.c catches a build that differs. */
#include "rng.h"
#include <math.h>
#include <string.h>

#define MT_N 624
#define MT_M 397

void dt_rng_init(dt_rng *g, uint64_t seed, dt_rng_variant variant)
{
    memset(g, 0, sizeof *g);
    g->mt[0] = (uint32_t)seed;
    for (uint32_t j = 1; j < MT_N; j++)
        g->mt[j] = 1812433253u * (g->mt[j - 1] ^ (g->mt[j - 1] >> 30)) + j;
    g->left = 1;
    g->next = 0;
    g->variant = variant;
}

static inline uint32_t mt_twist(uint32_t u, uint32_t v)
{
    return (((u & 0x80000000u) | (v & 0x7fffffffu)) >> 1) ^ ((v & 1u) ? 0x9908b0dfu : 0u);
}

static void mt_refill(dt_rng *g)
{
    uint32_t *p = g->mt;
    int j;
    for (j = 0; j < MT_N - MT_M; j++, p++) *p = p[MT_M] ^ mt_twist(p[0], p[1]);
    for (j = 0; j < MT_M - 1; j++, p++) *p = p[MT_M - MT_N] ^ mt_twist(p[0], p[1]);
    *p = p[MT_M - MT_N] ^ mt_twist(p[0], g->mt[0]);
    g->left = MT_N;
    g->next = 0;
}

uint32_t dt_rng_u32(dt_rng *g)
{
    if (--g->left == 0) mt_refill(g);
    uint32_t y = g->mt[g->next++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

/* uniform_real_distribution<float>(0, 1): 24 random bits. */
static inline float uniform_f32(dt_rng *g)
{
    return (float)(dt_rng_u32(g) & 0xffffffu) * (1.0f / 16777216.0f);
}

/* uniform_real_distribution<double>(0, 1): 53 bits of random64(). */
static inline double uniform_f64(dt_rng *g)
{
    uint64_t hi = dt_rng_u32(g);
    uint64_t lo = dt_rng_u32(g);
    uint64_t v = (hi << 32) | lo;
    return (double)(v & ((1ull << 53) - 1)) * (1.0 / 9007199254740992.0);
}

/* normal_distribution<double>(0, 1), the path torch takes below 16 elements. */
static double normal_f64(dt_rng *g)
{
    if (g->has_cached_normal) {
        g->has_cached_normal = 0;
        return g->cached_normal * 1.0 + 0.0;
    }
    double u1 = uniform_f64(g);
    double u2 = uniform_f64(g);
    double r = sqrt(-2.0 * log(1.0 - u2));
    double theta = 2.0 * 3.14159265358979323846 * u1;
    g->cached_normal = r * sin(theta);
    g->has_cached_normal = 1;
    return r * cos(theta) * 1.0 + 0.0;
}

/* ---- the portable kernel: normal_fill_16<float> ---- */

static void box_muller16_scalar(float *d)
{
    for (int j = 0; j < 8; j++) {
        float u1 = 1.0f - d[j]; /* [0,1) -> (0,1] for the log */
        float u2 = d[j + 8];
        float radius = sqrtf(-2.0f * logf(u1));
        float theta = (float)(2.0 * 3.14159265358979323846 * (double)u2);
        d[j] = radius * cosf(theta) * 1.0f + 0.0f;
        d[j + 8] = radius * sinf(theta) * 1.0f + 0.0f;
    }
}

/* ---- the AVX2 kernel, lane by lane ---- */

static inline uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* Cephes logf as log256_ps evaluates it; the argument here is in [2^-24, 1]. */
static inline float cephes_log(float x)
{
    uint32_t invalid = x <= 0.0f ? 0xffffffffu : 0u;
    x = x > 1.17549435e-38f ? x : 1.17549435e-38f; /* max_ps(x, FLT_MIN) */
    int32_t ex = (int32_t)(f2u(x) >> 23) - 0x7f;
    x = u2f((f2u(x) & ~0x7f800000u) | f2u(0.5f)); /* mantissa in [0.5, 1) */
    float e = (float)ex + 1.0f;
    int below = x < 0.707106781186547524f;
    float keep = below ? x : 0.0f;
    x = x - 1.0f;
    e = e - (below ? 1.0f : 0.0f);
    x = x + keep;
    float z = x * x;
    float y = fmaf(7.0376836292E-2f, x, -1.1514610310E-1f);
    y = fmaf(y, x, 1.1676998740E-1f);
    y = fmaf(y, x, -1.2420140846E-1f);
    y = fmaf(y, x, 1.4249322787E-1f);
    y = fmaf(y, x, -1.6668057665E-1f);
    y = fmaf(y, x, 2.0000714765E-1f);
    y = fmaf(y, x, -2.4999993993E-1f);
    y = fmaf(y, x, 3.3333331174E-1f);
    y = y * x;
    y = fmaf(y, z, e * -2.12194440e-4f);
    y = fmaf(-z, 0.5f, y);
    x = x + y;
    x = fmaf(e, 0.693359375f, x);
    return u2f(f2u(x) | invalid);
}

/* Cephes sinf/cosf as sincos256_ps evaluates them, for 0 <= x < 8192. */
static inline void cephes_sincos(float x, float *s, float *c)
{
    uint32_t sign_sin = f2u(x) & 0x80000000u;
    x = u2f(f2u(x) & 0x7fffffffu);
    int32_t j = (int32_t)(x * 1.27323954473516f); /* 4/pi, truncated like cvttps */
    j = (j + 1) & ~1;
    float y = (float)j;
    uint32_t swap_sin = (uint32_t)(j & 4) << 29;
    int first_poly = (j & 2) == 0;
    x = fmaf(y, -0.78515625f, x);
    x = fmaf(y, -2.4187564849853515625e-4f, x);
    x = fmaf(y, -3.77489497744594108e-8f, x);
    uint32_t sign_cos = (uint32_t)(~(j - 2) & 4) << 29;
    sign_sin ^= swap_sin;

    float z = x * x;
    float half_z = z * 0.5f;
    float yc = fmaf(2.443315711809948E-005f, z, -1.388731625493765E-003f);
    yc = fmaf(yc, z, 4.166664568298827E-002f);
    yc = yc * z;
    yc = fmaf(yc, z, -half_z);
    yc = yc + 1.0f;
    float ys = fmaf(-1.9515295891E-4f, z, 8.3321608736E-3f);
    ys = fmaf(ys, z, -1.6666654611E-1f);
    ys = ys * z;
    ys = fmaf(ys, x, x);

    /* the blend through and/andnot/sub/add, signed zeros included */
    float sin2 = first_poly ? ys : 0.0f;
    float sin1 = first_poly ? 0.0f : yc;
    ys = ys - sin2;
    yc = yc - sin1;
    *s = u2f(f2u(sin1 + sin2) ^ sign_sin);
    *c = u2f(f2u(yc + ys) ^ sign_cos);
}

static void box_muller16_vector(float *d)
{
    const float two_pi = (float)(2.0 * 3.14159265358979323846);
    for (int j = 0; j < 8; j++) {
        float u1 = 1.0f - d[j];
        float theta = two_pi * d[j + 8];
        float radius = sqrtf(-2.0f * cephes_log(u1));
        float s, c;
        cephes_sincos(theta, &s, &c);
        d[j] = fmaf(radius * c, 1.0f, 0.0f);
        d[j + 8] = fmaf(radius * s, 1.0f, 0.0f);
    }
}

void dt_rng_randn(dt_rng *g, float *out, size_t n)
{
    if (n < 16) {
        for (size_t i = 0; i < n; i++) out[i] = (float)normal_f64(g);
        return;
    }
    void (*block)(float *) = g->variant == DT_RNG_SCALAR ? box_muller16_scalar : box_muller16_vector;
    for (size_t i = 0; i < n; i++) out[i] = uniform_f32(g);
    for (size_t i = 0; i + 16 <= n; i += 16) block(out + i);
    if (n % 16) {
        /* torch redraws the tail block from fresh uniforms over the last 16 elements */
        float *t = out + n - 16;
        for (int i = 0; i < 16; i++) t[i] = uniform_f32(g);
        block(t);
    }
}

int dt_rng_variant_parse(const char *s, dt_rng_variant *out)
{
    if (!strcmp(s, "vector") || !strcmp(s, "avx2")) *out = DT_RNG_VECTOR;
    else if (!strcmp(s, "scalar") || !strcmp(s, "default")) *out = DT_RNG_SCALAR;
    else return 0;
    return 1;
}
