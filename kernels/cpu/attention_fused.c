/* Fused attention (see attention_fused.h).
 *
 * Layout. Per (batch, head) pair, K is packed transposed in panels of NR keys ([d][NR], keys
 * past Nk zero) and V row-major [Nk rounded up to NR][dp] (dp = d rounded up to 8, zero
 * padded), for a group of pairs at a time (PACK_BYTES bounds that memory). A query block of BQ
 * rows is packed pre-multiplied by `scale`, so the scores come out scaled. Then, per key tile
 * of BC keys: S = Q·Kᵀ in strips of MR rows x NR keys (a 4x24 register block: 12 accumulators,
 * 3 loads and 4 broadcasts per step of d); each score row gets its biases, the online softmax
 * (new max, exponentials in place, the running sum, the output row rescaled when the max grew);
 * then O += P·V in strips of MR rows x 24 columns (the same register block over the tile's
 * keys). The Q block, the S tile and the O block (64x72, 64x96, 64x72 floats at PixArt's head
 * size) stay in L1/L2; K and V stream from L2/L3 once per query block.
 *
 * The band: a query block only visits the key tiles that meet its rows' bands, and each strip
 * of MR rows only the panels and keys in the union of its rows' bands ([jlo, jhi) per strip);
 * score entries outside a row's band are never read, its P entries there are zero. So the
 * work is N·(2w + 1 + about MR + 2·NR) per head rather than N·(BQ + 2w) of whole tiles.
 *
 * Threads share the packing of a group of pairs, then take (pair, query block) items. */
#include "attention_fused.h"
#include "vmath.h"
#include <math.h>
#include <omp.h>
#include <string.h>
#include <immintrin.h>

#ifndef FATTN_BQ
#define FATTN_BQ 64
#define FATTN_BC 192
#endif
enum { MR = 4, NR = 24, BQ = FATTN_BQ, BC = FATTN_BC, NSTRIP = BQ / MR };
#define PACK_BYTES ((size_t)16 << 20)

static int64_t rup(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* The inner kernels of one ISA.
 * qk: S[MR][NR] (row stride lds) = Q[MR rows, stride dq] · panel[d][NR].
 * pv: O[MR rows, stride ldo][nv·8 columns] += P[MR rows, stride ldp][n] · V[n rows, stride ldv][nv·8], nv 1..3.
 * row: one score row s over [lo, hi): adds the biases (kb, hb: NULL or tile-aligned), folds the
 *      row into the running max *m and sum *l, leaves exp(s − max) in s; returns the factor
 *      the row's output must be rescaled by (0 on the row's first keys, 1 when the max held).
 * scale_row: o[0..n) *= a.
 * pack8: 8 key rows (d floats each) transposed into dst[c·NR + t] (t = 0..7, c < d).
 * qk8: the int8 scores (qk8 mode): S[MR][NR] = scl · Q8·K8ᵀ, Q8 rows of channel pairs (int16
 *      values in [-127, 127], row stride dq2 pairs), K8 a panel [d2][NR][2]; exact int32 sums. */
typedef struct {
    void (*qk)(const float *Q, int64_t dq, const float *Kp, int64_t d, float *S, int64_t lds);
    void (*pv)(const float *P, int64_t ldp, const float *V, int64_t ldv, int64_t n, float *O, int64_t ldo, int nv);
    float (*row)(float *s, int64_t lo, int64_t hi, const float *kb, const float *hb, float *m, float *l);
    void (*scale_row)(float *o, int64_t n, float a);
    void (*pack8)(const float *const rows[8], int64_t d, float *dst);
    void (*qk8)(const int16_t *Q, int64_t dq2, const int16_t *K8, int64_t d2, float scl, float *S, int64_t lds);
} fa_kernels;

/* ---- plain C ---- */

static void qk_plain(const float *Q, int64_t dq, const float *Kp, int64_t d, float *S, int64_t lds)
{
    for (int r = 0; r < MR; r++) {
        float acc[NR] = {0};
        for (int64_t c = 0; c < d; c++) {
            float a = Q[r * dq + c];
            for (int j = 0; j < NR; j++) acc[j] += a * Kp[c * NR + j];
        }
        memcpy(S + r * lds, acc, sizeof acc);
    }
}

static void pv_plain(const float *P, int64_t ldp, const float *V, int64_t ldv, int64_t n, float *O, int64_t ldo, int nv)
{
    int nc = nv * 8;
    for (int r = 0; r < MR; r++)
        for (int64_t j = 0; j < n; j++) {
            float p = P[r * ldp + j];
            for (int c = 0; c < nc; c++) O[r * ldo + c] += p * V[j * ldv + c];
        }
}

#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f

/* Scores are in log2 units (Q carries scale·log2(e)), so exponentials are powers of 2. */
static float fold_max(float *m, float bm, float *alpha)
{
    float mnew = bm > *m ? bm : *m;
    *alpha = *m == -INFINITY ? 0.0f : (mnew == *m ? 1.0f : vm_exp((*m - mnew) * LN2));
    *m = mnew;
    return mnew;
}

static float row_plain(float *s, int64_t lo, int64_t hi, const float *kb, const float *hb, float *m, float *l)
{
    float bm = -INFINITY, sum = 0.0f, alpha;
    for (int64_t j = lo; j < hi; j++) {
        if (kb) s[j] += kb[j] * LOG2E;
        if (hb) s[j] += hb[j] * LOG2E;
        bm = s[j] > bm ? s[j] : bm;
    }
    float mx = fold_max(m, bm, &alpha);
    for (int64_t j = lo; j < hi; j++) sum += (s[j] = vm_exp((s[j] - mx) * LN2));
    *l = *l * alpha + sum;
    return alpha;
}

static void scale_row_plain(float *o, int64_t n, float a)
{
    for (int64_t c = 0; c < n; c++) o[c] *= a;
}

static void pack8_plain(const float *const rows[8], int64_t d, float *dst)
{
    for (int t = 0; t < 8; t++)
        for (int64_t c = 0; c < d; c++) dst[c * NR + t] = rows[t][c];
}

static void qk8_plain(const int16_t *Q, int64_t dq2, const int16_t *K8, int64_t d2, float scl, float *S, int64_t lds)
{
    for (int r = 0; r < MR; r++)
        for (int j = 0; j < NR; j++) {
            int32_t acc = 0;
            for (int64_t c = 0; c < d2; c++)
                acc += Q[(r * dq2 + c) * 2] * K8[(c * NR + j) * 2] + Q[(r * dq2 + c) * 2 + 1] * K8[(c * NR + j) * 2 + 1];
            S[r * lds + j] = (float)acc * scl;
        }
}

static const fa_kernels kernels_plain = {qk_plain, pv_plain, row_plain, scale_row_plain, pack8_plain, qk8_plain};

/* ---- AVX2 + FMA ---- */

#define AVX2 __attribute__((target("avx2,fma")))

AVX2 static void qk_avx2(const float *Q, int64_t dq, const float *Kp, int64_t d, float *S, int64_t lds)
{
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00;
    __m256 c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00;
    const float *q0 = Q, *q1 = Q + dq, *q2 = Q + 2 * dq, *q3 = Q + 3 * dq;
    for (int64_t c = 0; c < d; c++) {
        const float *kp = Kp + c * NR;
        __m256 b0 = _mm256_load_ps(kp), b1 = _mm256_load_ps(kp + 8), b2 = _mm256_load_ps(kp + 16);
        __m256 a = _mm256_broadcast_ss(q0 + c);
        c00 = _mm256_fmadd_ps(a, b0, c00); c01 = _mm256_fmadd_ps(a, b1, c01); c02 = _mm256_fmadd_ps(a, b2, c02);
        a = _mm256_broadcast_ss(q1 + c);
        c10 = _mm256_fmadd_ps(a, b0, c10); c11 = _mm256_fmadd_ps(a, b1, c11); c12 = _mm256_fmadd_ps(a, b2, c12);
        a = _mm256_broadcast_ss(q2 + c);
        c20 = _mm256_fmadd_ps(a, b0, c20); c21 = _mm256_fmadd_ps(a, b1, c21); c22 = _mm256_fmadd_ps(a, b2, c22);
        a = _mm256_broadcast_ss(q3 + c);
        c30 = _mm256_fmadd_ps(a, b0, c30); c31 = _mm256_fmadd_ps(a, b1, c31); c32 = _mm256_fmadd_ps(a, b2, c32);
    }
    _mm256_storeu_ps(S, c00); _mm256_storeu_ps(S + 8, c01); _mm256_storeu_ps(S + 16, c02);
    S += lds;
    _mm256_storeu_ps(S, c10); _mm256_storeu_ps(S + 8, c11); _mm256_storeu_ps(S + 16, c12);
    S += lds;
    _mm256_storeu_ps(S, c20); _mm256_storeu_ps(S + 8, c21); _mm256_storeu_ps(S + 16, c22);
    S += lds;
    _mm256_storeu_ps(S, c30); _mm256_storeu_ps(S + 8, c31); _mm256_storeu_ps(S + 16, c32);
}

/* MR rows x 3 vectors; the 1- and 2-vector tails (d not a multiple of 24) go a vector at a time */
AVX2 static void pv3_avx2(const float *P, int64_t ldp, const float *V, int64_t ldv, int64_t n, float *O, int64_t ldo)
{
    float *o0 = O, *o1 = O + ldo, *o2 = O + 2 * ldo, *o3 = O + 3 * ldo;
    __m256 c00 = _mm256_loadu_ps(o0), c01 = _mm256_loadu_ps(o0 + 8), c02 = _mm256_loadu_ps(o0 + 16);
    __m256 c10 = _mm256_loadu_ps(o1), c11 = _mm256_loadu_ps(o1 + 8), c12 = _mm256_loadu_ps(o1 + 16);
    __m256 c20 = _mm256_loadu_ps(o2), c21 = _mm256_loadu_ps(o2 + 8), c22 = _mm256_loadu_ps(o2 + 16);
    __m256 c30 = _mm256_loadu_ps(o3), c31 = _mm256_loadu_ps(o3 + 8), c32 = _mm256_loadu_ps(o3 + 16);
    const float *p0 = P, *p1 = P + ldp, *p2 = P + 2 * ldp, *p3 = P + 3 * ldp;
    for (int64_t j = 0; j < n; j++) {
        const float *vr = V + j * ldv;
        __m256 b0 = _mm256_loadu_ps(vr), b1 = _mm256_loadu_ps(vr + 8), b2 = _mm256_loadu_ps(vr + 16);
        __m256 a = _mm256_broadcast_ss(p0 + j);
        c00 = _mm256_fmadd_ps(a, b0, c00); c01 = _mm256_fmadd_ps(a, b1, c01); c02 = _mm256_fmadd_ps(a, b2, c02);
        a = _mm256_broadcast_ss(p1 + j);
        c10 = _mm256_fmadd_ps(a, b0, c10); c11 = _mm256_fmadd_ps(a, b1, c11); c12 = _mm256_fmadd_ps(a, b2, c12);
        a = _mm256_broadcast_ss(p2 + j);
        c20 = _mm256_fmadd_ps(a, b0, c20); c21 = _mm256_fmadd_ps(a, b1, c21); c22 = _mm256_fmadd_ps(a, b2, c22);
        a = _mm256_broadcast_ss(p3 + j);
        c30 = _mm256_fmadd_ps(a, b0, c30); c31 = _mm256_fmadd_ps(a, b1, c31); c32 = _mm256_fmadd_ps(a, b2, c32);
    }
    _mm256_storeu_ps(o0, c00); _mm256_storeu_ps(o0 + 8, c01); _mm256_storeu_ps(o0 + 16, c02);
    _mm256_storeu_ps(o1, c10); _mm256_storeu_ps(o1 + 8, c11); _mm256_storeu_ps(o1 + 16, c12);
    _mm256_storeu_ps(o2, c20); _mm256_storeu_ps(o2 + 8, c21); _mm256_storeu_ps(o2 + 16, c22);
    _mm256_storeu_ps(o3, c30); _mm256_storeu_ps(o3 + 8, c31); _mm256_storeu_ps(o3 + 16, c32);
}

AVX2 static void pv1_avx2(const float *P, int64_t ldp, const float *V, int64_t ldv, int64_t n, float *O, int64_t ldo)
{
    __m256 c0 = _mm256_loadu_ps(O), c1 = _mm256_loadu_ps(O + ldo), c2 = _mm256_loadu_ps(O + 2 * ldo),
           c3 = _mm256_loadu_ps(O + 3 * ldo);
    for (int64_t j = 0; j < n; j++) {
        __m256 b = _mm256_loadu_ps(V + j * ldv);
        c0 = _mm256_fmadd_ps(_mm256_broadcast_ss(P + j), b, c0);
        c1 = _mm256_fmadd_ps(_mm256_broadcast_ss(P + ldp + j), b, c1);
        c2 = _mm256_fmadd_ps(_mm256_broadcast_ss(P + 2 * ldp + j), b, c2);
        c3 = _mm256_fmadd_ps(_mm256_broadcast_ss(P + 3 * ldp + j), b, c3);
    }
    _mm256_storeu_ps(O, c0); _mm256_storeu_ps(O + ldo, c1); _mm256_storeu_ps(O + 2 * ldo, c2);
    _mm256_storeu_ps(O + 3 * ldo, c3);
}

AVX2 static void pv_avx2(const float *P, int64_t ldp, const float *V, int64_t ldv, int64_t n, float *O, int64_t ldo, int nv)
{
    if (nv == 3) { pv3_avx2(P, ldp, V, ldv, n, O, ldo); return; }
    for (int x = 0; x < nv; x++) pv1_avx2(P, ldp, V + 8 * x, ldv, n, O + 8 * x, ldo);
}

/* 2^x on 8 lanes for x <= 0: x = n + f with |f| <= 1/2, 2^f by a degree-5 polynomial fitted
 * for relative error (below 8e-8 on [-1/2, 1/2]) in Estrin's scheme (a shorter dependency chain
 * than Horner's: the loop below is latency-bound otherwise), 2^n into the exponent; x below
 * −126 gives 2^−126, a weight of ~1e-38 (as softmax.c's clamped exp8 does). */
AVX2 static inline __m256 exp2_8(__m256 x)
{
    x = _mm256_max_ps(x, _mm256_set1_ps(-126.0f));
    __m256 n = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 f = _mm256_sub_ps(x, n), f2 = _mm256_mul_ps(f, f), f4 = _mm256_mul_ps(f2, f2);
    __m256 p01 = _mm256_fmadd_ps(f, _mm256_set1_ps(0.6931469440460205f), _mm256_set1_ps(1.0000001192092896f));
    __m256 p23 = _mm256_fmadd_ps(f, _mm256_set1_ps(0.05550742521882057f), _mm256_set1_ps(0.24022121727466583f));
    __m256 p45 = _mm256_fmadd_ps(f, _mm256_set1_ps(0.001326697994954884f), _mm256_set1_ps(0.009675469249486923f));
    __m256 p = _mm256_fmadd_ps(f2, p23, p01);
    p = _mm256_fmadd_ps(f4, p45, p);
    __m256i s = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(s));
}

AVX2 static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2 static inline float hmax8(__m256 v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2 static float row_avx2(float *s, int64_t lo, int64_t hi, const float *kb, const float *hb, float *m, float *l)
{
    int64_t j = lo, n8 = lo + (hi - lo) / 8 * 8;
    __m256 vm = _mm256_set1_ps(-INFINITY);
    const __m256 l2e = _mm256_set1_ps(LOG2E);
    if (kb || hb)
        for (; j < n8; j += 8) {
            __m256 x = _mm256_loadu_ps(s + j);
            if (kb) x = _mm256_fmadd_ps(_mm256_loadu_ps(kb + j), l2e, x);
            if (hb) x = _mm256_fmadd_ps(_mm256_loadu_ps(hb + j), l2e, x);
            _mm256_storeu_ps(s + j, x);
            vm = _mm256_max_ps(vm, x);
        }
    else
        for (; j < n8; j += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(s + j));
    float bm = hmax8(vm);
    for (; j < hi; j++) {
        if (kb) s[j] += kb[j] * LOG2E;
        if (hb) s[j] += hb[j] * LOG2E;
        bm = s[j] > bm ? s[j] : bm;
    }
    float alpha, mx = fold_max(m, bm, &alpha);
    __m256 vmx = _mm256_set1_ps(mx), acc = _mm256_setzero_ps(), acc2 = acc;
    for (j = lo; j + 16 <= n8; j += 16) { /* two chains in flight */
        __m256 e = exp2_8(_mm256_sub_ps(_mm256_loadu_ps(s + j), vmx));
        __m256 e2 = exp2_8(_mm256_sub_ps(_mm256_loadu_ps(s + j + 8), vmx));
        _mm256_storeu_ps(s + j, e);
        _mm256_storeu_ps(s + j + 8, e2);
        acc = _mm256_add_ps(acc, e);
        acc2 = _mm256_add_ps(acc2, e2);
    }
    for (; j < n8; j += 8) {
        __m256 e = exp2_8(_mm256_sub_ps(_mm256_loadu_ps(s + j), vmx));
        _mm256_storeu_ps(s + j, e);
        acc = _mm256_add_ps(acc, e);
    }
    float sum = hsum8(_mm256_add_ps(acc, acc2));
    for (; j < hi; j++) sum += (s[j] = vm_exp((s[j] - mx) * LN2));
    *l = *l * alpha + sum;
    return alpha;
}

AVX2 static void scale_row_avx2(float *o, int64_t n, float a)
{
    __m256 va = _mm256_set1_ps(a);
    for (int64_t c = 0; c < n; c += 8) _mm256_storeu_ps(o + c, _mm256_mul_ps(_mm256_loadu_ps(o + c), va)); /* n = dp */
}

/* 8x8 transposes (unpack, shuffle, 128-bit permute), the d % 8 tail by scalars */
AVX2 static void pack8_avx2(const float *const rows[8], int64_t d, float *dst)
{
    int64_t c0 = 0;
    for (; c0 + 8 <= d; c0 += 8) {
        __m256 t0 = _mm256_unpacklo_ps(_mm256_loadu_ps(rows[0] + c0), _mm256_loadu_ps(rows[1] + c0));
        __m256 t1 = _mm256_unpackhi_ps(_mm256_loadu_ps(rows[0] + c0), _mm256_loadu_ps(rows[1] + c0));
        __m256 t2 = _mm256_unpacklo_ps(_mm256_loadu_ps(rows[2] + c0), _mm256_loadu_ps(rows[3] + c0));
        __m256 t3 = _mm256_unpackhi_ps(_mm256_loadu_ps(rows[2] + c0), _mm256_loadu_ps(rows[3] + c0));
        __m256 t4 = _mm256_unpacklo_ps(_mm256_loadu_ps(rows[4] + c0), _mm256_loadu_ps(rows[5] + c0));
        __m256 t5 = _mm256_unpackhi_ps(_mm256_loadu_ps(rows[4] + c0), _mm256_loadu_ps(rows[5] + c0));
        __m256 t6 = _mm256_unpacklo_ps(_mm256_loadu_ps(rows[6] + c0), _mm256_loadu_ps(rows[7] + c0));
        __m256 t7 = _mm256_unpackhi_ps(_mm256_loadu_ps(rows[6] + c0), _mm256_loadu_ps(rows[7] + c0));
        __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
        __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
        __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
        __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
        float *o = dst + c0 * NR;
        _mm256_store_ps(o + 0 * NR, _mm256_permute2f128_ps(u0, u4, 0x20));
        _mm256_store_ps(o + 1 * NR, _mm256_permute2f128_ps(u1, u5, 0x20));
        _mm256_store_ps(o + 2 * NR, _mm256_permute2f128_ps(u2, u6, 0x20));
        _mm256_store_ps(o + 3 * NR, _mm256_permute2f128_ps(u3, u7, 0x20));
        _mm256_store_ps(o + 4 * NR, _mm256_permute2f128_ps(u0, u4, 0x31));
        _mm256_store_ps(o + 5 * NR, _mm256_permute2f128_ps(u1, u5, 0x31));
        _mm256_store_ps(o + 6 * NR, _mm256_permute2f128_ps(u2, u6, 0x31));
        _mm256_store_ps(o + 7 * NR, _mm256_permute2f128_ps(u3, u7, 0x31));
    }
    for (int t = 0; t < 8; t++)
        for (int64_t c = c0; c < d; c++) dst[c * NR + t] = rows[t][c];
}

/* Without VNNI, vpmaddwd on int16-widened codes: exact (|q·k| pair sums stay far inside int32),
 * 16 multiply-adds an instruction but needing an add besides, so on AVX2 this runs at about
 * the f32 FMA rate: the int8 mode is here for its accuracy study and for VNNI/AVX-512 ports,
 * not for speed on this ISA. */
AVX2 static void qk8_avx2(const int16_t *Q, int64_t dq2, const int16_t *K8, int64_t d2, float scl, float *S, int64_t lds)
{
    __m256i c00 = _mm256_setzero_si256(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00;
    __m256i c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00;
    const int32_t *q0 = (const int32_t *)Q, *q1 = q0 + dq2, *q2 = q0 + 2 * dq2, *q3 = q0 + 3 * dq2;
    for (int64_t c = 0; c < d2; c++) {
        const __m256i *kp = (const __m256i *)(K8 + c * NR * 2);
        __m256i b0 = _mm256_load_si256(kp), b1 = _mm256_load_si256(kp + 1), b2 = _mm256_load_si256(kp + 2);
        __m256i a = _mm256_set1_epi32(q0[c]);
        c00 = _mm256_add_epi32(c00, _mm256_madd_epi16(a, b0)); c01 = _mm256_add_epi32(c01, _mm256_madd_epi16(a, b1));
        c02 = _mm256_add_epi32(c02, _mm256_madd_epi16(a, b2));
        a = _mm256_set1_epi32(q1[c]);
        c10 = _mm256_add_epi32(c10, _mm256_madd_epi16(a, b0)); c11 = _mm256_add_epi32(c11, _mm256_madd_epi16(a, b1));
        c12 = _mm256_add_epi32(c12, _mm256_madd_epi16(a, b2));
        a = _mm256_set1_epi32(q2[c]);
        c20 = _mm256_add_epi32(c20, _mm256_madd_epi16(a, b0)); c21 = _mm256_add_epi32(c21, _mm256_madd_epi16(a, b1));
        c22 = _mm256_add_epi32(c22, _mm256_madd_epi16(a, b2));
        a = _mm256_set1_epi32(q3[c]);
        c30 = _mm256_add_epi32(c30, _mm256_madd_epi16(a, b0)); c31 = _mm256_add_epi32(c31, _mm256_madd_epi16(a, b1));
        c32 = _mm256_add_epi32(c32, _mm256_madd_epi16(a, b2));
    }
    const __m256 vs = _mm256_set1_ps(scl);
#define ST(p, c) _mm256_storeu_ps(p, _mm256_mul_ps(_mm256_cvtepi32_ps(c), vs))
    ST(S, c00); ST(S + 8, c01); ST(S + 16, c02);
    S += lds;
    ST(S, c10); ST(S + 8, c11); ST(S + 16, c12);
    S += lds;
    ST(S, c20); ST(S + 8, c21); ST(S + 16, c22);
    S += lds;
    ST(S, c30); ST(S + 8, c31); ST(S + 16, c32);
#undef ST
}

static const fa_kernels kernels_avx2 = {qk_avx2, pv_avx2, row_avx2, scale_row_avx2, pack8_avx2, qk8_avx2};

int fattn_have_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

/* ---- the tiling (shared by both ISAs) ---- */

typedef struct {
    const dt_tensor *q, *k, *v;
    dt_tensor *out;
    const float *kbias, *hbias;
    int heads;
    int64_t nq, nk, d, dp, nkpad, w; /* w < 0: full attention */
    float scale;
    const fa_kernels *kn;
    const float *zeros; /* d zeros: the rows of padding keys */
    int q8;             /* int8 QKᵀ (SageAttention-style) */
} fa_geom;

/* One pair's packed operands: K panels f32 [npan][d][NR], V [nkpad][dp]; for q8 also the
 * smoothed int8 K as int16 channel pairs [npan][d2][NR][2], one scale per panel, the key mean. */
typedef struct {
    float *K, *V, *sk, *mean;
    int16_t *K8;
} fa_pair;

static int64_t pair_floats(int64_t nk, int64_t d)
{
    int64_t nkpad = rup(nk > 0 ? nk : 1, NR), d2 = (d + 1) / 2;
    return rup(nkpad * d, 16) + rup(nkpad * rup(d, 8), 16) + rup(nkpad * d2, 16) + rup(nkpad / NR, 16) + rup(d, 16);
}

static fa_pair pair_at(float *base, int64_t nkpad, int64_t d)
{
    fa_pair P;
    P.K = base;
    P.V = P.K + rup(nkpad * d, 16);
    P.K8 = (int16_t *)(P.V + rup(nkpad * rup(d, 8), 16));
    P.sk = (float *)P.K8 + rup(nkpad * ((d + 1) / 2), 16);
    P.mean = P.sk + rup(nkpad / NR, 16);
    return P;
}

/* per thread: Q, O, S, m, l, and Q's int8 codes as int16 pairs */
static int64_t work_floats(int64_t d) { return rup(2 * BQ * rup(d, 8) + BQ * BC + 2 * BQ + BQ * ((d + 1) / 2), 16); }

static int64_t group_pairs(int64_t bh, int64_t nk, int64_t d)
{
    int64_t g = (int64_t)(PACK_BYTES / ((size_t)pair_floats(nk, d) * sizeof(float)));
    return g < 1 ? 1 : (g > bh ? bh : g);
}

size_t fattn_scratch_bytes(int64_t B, int64_t nq, int64_t nk, int heads, int64_t d, int threads)
{
    (void)nq;
    int64_t bh = B * heads > 0 ? B * heads : 1;
    return ((size_t)group_pairs(bh, nk, d) * pair_floats(nk, d) + (size_t)threads * work_floats(d) + rup(d, 16)) *
           sizeof(float);
}

/* K of pair (b, h) into panels [nkpad/NR][d][NR]; V into [nkpad][dp]; zero padded */
static void pack_kv_panel(const fa_geom *g, int64_t pair, int64_t panel, float *Kp, float *Vp)
{
    int64_t b = pair / g->heads, h = pair % g->heads, d = g->d, dp = g->dp;
    float *kp = Kp + panel * d * NR;
    const float *kbase = (const float *)g->k->data + b * g->k->strides[0] + h * d;
    for (int j8 = 0; j8 < NR; j8 += 8) { /* K: 8 keys at a time; keys past Nk are zero rows */
        const float *rows[8];
        for (int t = 0; t < 8; t++) {
            int64_t j = panel * NR + j8 + t;
            rows[t] = j < g->nk ? kbase + j * g->k->strides[1] : g->zeros;
        }
        g->kn->pack8(rows, d, kp + j8);
    }
    for (int jj = 0; jj < NR; jj++) {
        int64_t j = panel * NR + jj;
        float *vr = Vp + j * dp;
        if (j >= g->nk) {
            memset(vr, 0, (size_t)dp * sizeof(float));
            continue;
        }
        const float *vs = (const float *)g->v->data + b * g->v->strides[0] + j * g->v->strides[1] + h * d;
#pragma omp simd
        for (int64_t c = 0; c < d; c++) vr[c] = vs[c];
        for (int64_t c = d; c < dp; c++) vr[c] = 0.0f;
    }
}

/* q8: K smoothed by its mean over the keys (q·mean is the same for every key of a row, so the
 * softmax does not see it; what is left is centred, and quantizes finer), then int8 per panel
 * of NR keys at scale amax/127. */
static void pack_k_mean(const fa_geom *g, fa_pair P)
{
    for (int64_t c = 0; c < g->d; c++) {
        double sum = 0;
        for (int64_t pn = 0; pn < g->nkpad / NR; pn++)
            for (int jj = 0; jj < NR; jj++) sum += P.K[(pn * g->d + c) * NR + jj]; /* padding keys are 0 */
        P.mean[c] = (float)(sum / (double)g->nk);
    }
}

static void pack_k8_panel(const fa_geom *g, fa_pair P, int64_t pn)
{
    int64_t d = g->d, d2 = (d + 1) / 2, valid = min64(NR, g->nk - pn * NR);
    const float *kp = P.K + pn * d * NR;
    float amax = 0.0f;
    for (int64_t c = 0; c < d; c++)
        for (int64_t jj = 0; jj < valid; jj++) amax = fmaxf(amax, fabsf(kp[c * NR + jj] - P.mean[c]));
    float sk = amax > 0 ? amax / 127.0f : 1.0f, inv = 1.0f / sk;
    P.sk[pn] = sk;
    int16_t *k8 = P.K8 + pn * d2 * NR * 2;
    for (int64_t c = 0; c < 2 * d2; c++)
        for (int jj = 0; jj < NR; jj++)
            k8[((c / 2) * NR + jj) * 2 + c % 2] =
                c < d && jj < valid ? (int16_t)lrintf((kp[c * NR + jj] - P.mean[c]) * inv) : 0;
}

/* q8: the query block's codes, one scale for the block (per-block, as SageAttention's Q) */
static float pack_q8(const fa_geom *g, const float *Q, int64_t rows, int64_t rpad, int16_t *Q8)
{
    int64_t d = g->d, dp = g->dp, d2 = (d + 1) / 2;
    float amax = 0.0f;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < d; c++) amax = fmaxf(amax, fabsf(Q[r * dp + c]));
    float sq = amax > 0 ? amax / 127.0f : 1.0f, inv = 1.0f / sq;
    for (int64_t r = 0; r < rpad; r++)
        for (int64_t c = 0; c < 2 * d2; c++)
            Q8[r * 2 * d2 + c] = c < d && r < rows ? (int16_t)lrintf(Q[r * dp + c] * inv) : 0;
    return sq;
}

/* Row i's keys within the tile [kb, kb + kn): [*lo, *hi), empty when lo >= hi. */
static void row_band(const fa_geom *g, int64_t i, int64_t kb, int64_t kn, int64_t *lo, int64_t *hi)
{
    if (g->w < 0) { *lo = 0; *hi = kn; return; }
    *lo = min64(max64(i - g->w - kb, 0), kn);
    *hi = min64(max64(i + g->w + 1 - kb, 0), kn);
}

typedef struct {
    float *Q, *S, *O, *m, *l;
    int16_t *Q8;
    float sq;
    int64_t i0, rows, rpad;
    int64_t jlo[NSTRIP], jhi[NSTRIP];
} fa_block;

/* One key tile [kb, kb + kn) folded into the query block. */
static void run_tile(const fa_geom *g, int64_t pair, fa_pair P, fa_block *x, int64_t kb, int64_t kn)
{
    const float *Kp = P.K, *Vp = P.V;
    int64_t d2 = (g->d + 1) / 2;
    const fa_kernels *kn_ = g->kn;
    int64_t d = g->d, dp = g->dp, nstrip = x->rpad / MR;
    for (int64_t s = 0; s < nstrip; s++) { /* the union of the strip's rows' bands */
        int64_t jlo = kn, jhi = 0;
        for (int64_t r = s * MR; r < s * MR + MR && r < x->rows; r++) {
            int64_t lo, hi;
            row_band(g, x->i0 + r, kb, kn, &lo, &hi);
            if (lo < hi) { jlo = min64(jlo, lo); jhi = max64(jhi, hi); }
        }
        x->jlo[s] = jlo;
        x->jhi[s] = jhi;
    }
    /* scores: panel-major, so a K panel is reused from L1 by every strip */
    for (int64_t p = 0; p * NR < kn; p++)
        for (int64_t s = 0; s < nstrip; s++)
            if (x->jlo[s] < (p + 1) * NR && x->jhi[s] > p * NR) {
                if (g->q8)
                    kn_->qk8(x->Q8 + s * MR * 2 * d2, d2, P.K8 + (kb / NR + p) * d2 * NR * 2, d2,
                             x->sq * P.sk[kb / NR + p], x->S + s * MR * BC + p * NR, BC);
                else
                    kn_->qk(x->Q + s * MR * dp, dp, Kp + (kb / NR + p) * d * NR, d, x->S + s * MR * BC + p * NR, BC);
            }
    /* online softmax, row by row; P over the strip's [jlo, jhi) outside the row's band is 0 */
    int64_t b = pair / g->heads, h = pair % g->heads;
    for (int64_t r = 0; r < x->rpad; r++) {
        int64_t s = r / MR, jlo = x->jlo[s], jhi = x->jhi[s];
        if (jlo >= jhi) continue;
        float *srow = x->S + r * BC;
        int64_t lo = 0, hi = 0, i = x->i0 + r;
        if (r < x->rows) row_band(g, i, kb, kn, &lo, &hi);
        if (lo >= hi) { memset(srow + jlo, 0, (size_t)(jhi - jlo) * sizeof(float)); continue; }
        if (lo > jlo) memset(srow + jlo, 0, (size_t)(lo - jlo) * sizeof(float));
        if (jhi > hi) memset(srow + hi, 0, (size_t)(jhi - hi) * sizeof(float));
        const float *kbr = g->kbias ? g->kbias + b * g->nk + kb : NULL;
        const float *hbr = g->hbias ? g->hbias + ((int64_t)h * g->nq + i) * g->nk + kb : NULL;
        float alpha = kn_->row(srow, lo, hi, kbr, hbr, &x->m[r], &x->l[r]);
        if (alpha != 1.0f && alpha != 0.0f) kn_->scale_row(x->O + r * dp, dp, alpha); /* 0: O is still 0 */
    }
    /* O += P·V: column-chunk-major, so a chunk of V is reused from L1 by every strip */
    for (int64_t c0 = 0; c0 < dp; c0 += 24) {
        int nv = (int)(min64(24, dp - c0) / 8);
        for (int64_t s = 0; s < nstrip; s++) {
            int64_t jlo = x->jlo[s], jhi = x->jhi[s];
            if (jlo < jhi)
                kn_->pv(x->S + s * MR * BC + jlo, BC, Vp + (kb + jlo) * dp + c0, dp, jhi - jlo,
                        x->O + s * MR * dp + c0, dp, nv);
        }
    }
}

/* Query rows [i0, i0 + BQ) of one pair against its packed K/V; ws: work_floats(d) floats. */
static void run_block(const fa_geom *g, int64_t pair, fa_pair P, int64_t i0, float *ws)
{
    int64_t d = g->d, dp = g->dp, b = pair / g->heads, h = pair % g->heads;
    fa_block x = {.Q = ws, .O = ws + BQ * dp, .S = ws + 2 * BQ * dp, .i0 = i0};
    x.m = x.S + BQ * BC;
    x.l = x.m + BQ;
    x.Q8 = (int16_t *)(x.l + BQ);
    x.rows = min64(BQ, g->nq - i0);
    x.rpad = rup(x.rows, MR);
    const float *qsrc = (const float *)g->q->data + b * g->q->strides[0] + h * d;
    for (int64_t r = 0; r < x.rpad; r++) {
        float *restrict qr = x.Q + r * dp;
        memset(qr, 0, (size_t)dp * sizeof(float));
        if (r < x.rows) {
            const float *restrict src = qsrc + (i0 + r) * g->q->strides[1];
#pragma omp simd
            for (int64_t c = 0; c < d; c++) qr[c] = src[c] * g->scale;
        }
        x.m[r] = -INFINITY;
        x.l[r] = 0.0f;
    }
    /* the next block's query rows and this block's output rows are scattered (one head's slice
     * of each token): fetch them while the tiles compute */
    float *obase = (float *)g->out->data + b * g->out->strides[0] + h * d;
    for (int64_t r = 0; r < x.rows; r++) {
        for (int64_t c = 0; c < d; c += 16) {
            if (i0 + BQ + r < g->nq) __builtin_prefetch(qsrc + (i0 + BQ + r) * g->q->strides[1] + c, 0, 1);
            __builtin_prefetch(obase + (i0 + r) * g->out->strides[1] + c, 1, 1);
        }
    }
    memset(x.O, 0, (size_t)(x.rpad * dp) * sizeof(float));
    if (g->q8) x.sq = pack_q8(g, x.Q, x.rows, x.rpad, x.Q8);
    int64_t klo = 0, khi = g->nk;
    if (g->w >= 0) {
        klo = max64(i0 - g->w, 0);
        khi = min64(i0 + x.rows + g->w, g->nk);
    }
    for (int64_t kb = klo / NR * NR; kb < khi; kb += BC) run_tile(g, pair, P, &x, kb, min64(BC, khi - kb));
    for (int64_t r = 0; r < x.rows; r++) {
        float *restrict dst = obase + (i0 + r) * g->out->strides[1];
        const float *restrict o = x.O + r * dp;
        float inv = 1.0f / x.l[r];
#pragma omp simd
        for (int64_t c = 0; c < d; c++) dst[c] = o[c] * inv;
    }
}

void fattn_run(const dt_tensor *q, const dt_tensor *k, const dt_tensor *v, const dt_attn_bias *bias, int heads,
               float scale, int64_t window, fattn_isa isa, int qk8, int threads, void *scratch, dt_tensor *out)
{
    int64_t B = q->shape[0], nq = q->shape[1], nk = k->shape[1], d = q->shape[2] / heads, bh = B * heads;
    if (bh == 0 || nq == 0 || d == 0) return;
    if (nk == 0) { /* no keys: an empty sum (the two-GEMM path leaves the same zeros) */
        for (int64_t b = 0; b < B; b++)
            for (int64_t i = 0; i < nq; i++)
                memset((float *)out->data + b * out->strides[0] + i * out->strides[1], 0, (size_t)(heads * d) * sizeof(float));
        return;
    }
    if (isa == FATTN_ISA_AUTO || (isa == FATTN_ISA_AVX2 && !fattn_have_avx2()))
        isa = fattn_have_avx2() ? FATTN_ISA_AVX2 : FATTN_ISA_PLAIN;
    fa_geom g = {.q = q, .k = k, .v = v, .out = out, .kbias = bias ? bias->key : NULL, .hbias = bias ? bias->head : NULL,
                 .heads = heads, .nq = nq, .nk = nk, .d = d, .dp = rup(d, 8), .nkpad = rup(nk, NR),
                 .w = window, .scale = scale * LOG2E, .kn = isa == FATTN_ISA_AVX2 ? &kernels_avx2 : &kernels_plain,
                 .q8 = qk8};
    int64_t G = group_pairs(bh, nk, d), pf = pair_floats(nk, d), nqb = (nq + BQ - 1) / BQ, npan = g.nkpad / NR;
    float *pack = scratch, *work = pack + G * pf, *zeros = work + (size_t)threads * work_floats(d);
    memset(zeros, 0, (size_t)d * sizeof(float));
    g.zeros = zeros;
#pragma omp parallel num_threads(threads)
    {
        float *ws = work + (size_t)omp_get_thread_num() * work_floats(d);
        for (int64_t g0 = 0; g0 < bh; g0 += G) {
            int64_t gn = min64(G, bh - g0);
            /* keys outer, heads inner: consecutive heads of a token are adjacent in memory, so the
             * packing sweeps K and V in order instead of one head's strided slice at a time */
#pragma omp for collapse(2) schedule(static)
            for (int64_t pn = 0; pn < npan; pn++)
                for (int64_t p = 0; p < gn; p++) {
                    fa_pair P = pair_at(pack + p * pf, g.nkpad, d);
                    pack_kv_panel(&g, g0 + p, pn, P.K, P.V);
                }
            if (g.q8) {
#pragma omp for schedule(static)
                for (int64_t p = 0; p < gn; p++) pack_k_mean(&g, pair_at(pack + p * pf, g.nkpad, d));
#pragma omp for collapse(2) schedule(static)
                for (int64_t pn = 0; pn < npan; pn++)
                    for (int64_t p = 0; p < gn; p++) pack_k8_panel(&g, pair_at(pack + p * pf, g.nkpad, d), pn);
            }
#pragma omp for collapse(2) schedule(dynamic, 1)
            for (int64_t p = 0; p < gn; p++)
                for (int64_t qb = 0; qb < nqb; qb++) run_block(&g, g0 + p, pair_at(pack + p * pf, g.nkpad, d), qb * BQ, ws);
        }
    }
}
