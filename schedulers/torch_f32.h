/* torch's f32 exp and log on tensors, bit for bit, for scheduler coefficients.
 *
 * torch 1.13's CPU kernels (AVX2 dispatch, the default on x86) evaluate exp/log of f32
 * tensors, 0-d ones included, with SLEEF's Sleef_expf8_u10 / Sleef_logf8_u10 (1-ulp
 * functions), which round differently from glibc's expf/logf in a few percent of cases;
 * DPM-Solver's step size h is a difference of logs, so one ulp there moves a step by ~1e-6.
 * These recompute SLEEF 3.5's AVX2 code paths (the operation sequence of its compiled
 * Sleef_expf8_u10avx2 / Sleef_logf8_u10avx2, FMAs included) one value at a time.
 * They rely on no implicit contraction (ISO C mode, -std=c11). */
#ifndef DT_TORCH_F32_H
#define DT_TORCH_F32_H
#include <math.h>
#include <stdint.h>
#include <string.h>

static inline uint32_t tf_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float tf_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* Sleef xexpf: Cody–Waite reduction by ln 2, degree-6 polynomial, two-step ldexp. */
static inline float torch_expf(float d)
{
    /* R_LN2f, round to nearest even. Outside [-104, 100] (and for NaN) the result is replaced
     * below, so q is only computed inside, where it fits an int (no float->int overflow). */
    int32_t q = d >= -104.0f && d <= 100.0f ? (int32_t)nearbyintf(d * 1.44269502163f) : 0;
    float qf = (float)q;
    float s = fmaf(qf, -0.693145751953125f, d);
    s = fmaf(qf, -1.428606765330187e-06f, s);
    float u = fmaf(s, 0.000198527617612853646f, 0.00139304355252534151f);
    u = fmaf(s, u, 0.00833336077630519867f);
    u = fmaf(s, u, 0.0416664853692054749f);
    u = fmaf(s, u, 0.166666671633720398f);
    u = fmaf(s, u, 0.5f);
    u = fmaf(u, s * s, s) + 1.0f;
    int32_t q1 = q >> 1;
    u = u * tf_float(((uint32_t)q1 << 23) + 0x3f800000u); /* unsigned: q1 may be negative */
    u = u * tf_float(((uint32_t)(q - q1) << 23) + 0x3f800000u);
    if (d < -104.0f) u = 0.0f;
    if (d > 100.0f) u = INFINITY;
    return u;
}

/* Sleef xlogf_u1: m = d / 2^e in [0.75, 1.5), log = e ln2 + 2 atanh((m-1)/(m+1)) in
 * double-float arithmetic. */
static inline float torch_logf(float d)
{
    int tiny = d < 1.17549435e-38f;
    if (tiny) d = d * 18446744073709551616.0f; /* 2^64 */
    int32_t eb = (int32_t)((tf_bits(d * 1.33333337f) >> 23) & 0xff);
    float m = tf_float(tf_bits(d) - ((uint32_t)eb << 23) + 0x3f800000u);
    float e = (float)(eb + (tiny ? -191 : -127));
    /* s = e * (ln2 hi, lo) as a double-float */
    float sx = e * 0.693147182f;
    float sy = fmaf(e, -1.90465421e-09f, fmaf(e, 0.693147182f, -sx));
    /* a = m - 1, b = m + 1, each exact as a double-float */
    float ax = m + -1.0f, v = ax + 1.0f;
    float ay = (-1.0f - (ax - v)) + (m - v);
    float bx = m + 1.0f;
    v = bx + -1.0f;
    float by = (1.0f - (bx - v)) + (m - v);
    /* x = a / b as a double-float */
    float t = 1.0f / bx;
    float xx = ax * t;
    float w = fmaf(t, ax, -xx);
    float u = fmaf(-t, by, fmaf(-t, bx, 1.0f));
    w = fmaf(t, ay, w);
    float xy = fmaf(xx, u, w);
    float x2 = xx * xx;
    float p = fmaf(x2, 0.302729487f, 0.399610817f);
    p = fmaf(x2, p, 0.666669488f);
    /* s += 2x */
    float tx = xx + xx, ty = xy + xy;
    float rx = sx + tx;
    float ry = (((sx - rx) + tx) + sy) + ty;
    /* s += x^3 p */
    float c = (x2 * xx) * p;
    float r2x = rx + c;
    float r2y = ry + (c + (rx - r2x));
    float r = r2x + r2y;
    if (d == INFINITY) r = INFINITY;
    if (!(d >= 0.0f)) r = NAN;
    if (d == 0.0f) r = -INFINITY;
    return r;
}

#endif
