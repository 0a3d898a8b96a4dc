/* Softmax rows and the attention index ranges. The kernels keep an online-softmax state per
 * row (running max m and sum l of exp(s − m)) and merge states across threads; the banded
 * (DiTFastAttn window) attention visits keys j in [lo, hi] of dtm_band_range only, so its work
 * is ∝ N·(2w+1). */
#ifndef DT_CUDA_SOFTMAX_MATH_H
#define DT_CUDA_SOFTMAX_MATH_H
#include "kernels/cuda/elem_math.h"
#include <math.h>

typedef struct {
    float m, l; /* running max, sum of exp(s - m) */
} dtm_softmax_state;

DTM_HD dtm_softmax_state dtm_softmax_init(void)
{
    dtm_softmax_state s = {-INFINITY, 0.0f};
    return s;
}

/* Adds score x; returns the factor the running weighted sums must be multiplied by (exp(m_old −
 * m_new)), so a caller accumulating Σ p_j·v_j rescales before adding exp(x − m)·v. */
DTM_HD float dtm_softmax_push(dtm_softmax_state *s, float x)
{
    float m = x > s->m ? x : s->m;
    float r = s->m == -INFINITY ? 0.0f : expf(s->m - m);
    s->l = s->l * r + expf(x - m);
    s->m = m;
    return r;
}

/* Merges b into a; *ra, *rb: the factors a's and b's weighted sums take. */
DTM_HD void dtm_softmax_merge(dtm_softmax_state *a, dtm_softmax_state b, float *ra, float *rb)
{
    float m = a->m > b.m ? a->m : b.m;
    *ra = a->m == -INFINITY ? 0.0f : expf(a->m - m);
    *rb = b.m == -INFINITY ? 0.0f : expf(b.m - m);
    a->l = a->l * *ra + b.l * *rb;
    a->m = m;
}

/* Score of key j for query row i: s·scale + key bias[j] + head bias[h, i, j] (either absent). */
DTM_HD float dtm_attn_logit(float dot, float scale, const float *key_bias, const float *head_bias_row, int64_t j)
{
    float s = dot * scale;
    if (key_bias) s += key_bias[j];
    if (head_bias_row) s += head_bias_row[j];
    return s;
}

/* In place: row[0..n) = softmax(row·scale + biases) through the online state (one pass for the
 * max and sum, one to normalize), as the row kernel does. */
DTM_HD void dtm_softmax_row(float *row, int64_t n, float scale, const float *key_bias, const float *head_bias_row)
{
    dtm_softmax_state st = dtm_softmax_init();
    for (int64_t j = 0; j < n; j++) {
        row[j] = dtm_attn_logit(row[j], scale, key_bias, head_bias_row, j);
        dtm_softmax_push(&st, row[j]);
    }
    float inv = 1.0f / st.l;
    for (int64_t j = 0; j < n; j++) row[j] = expf(row[j] - st.m) * inv;
}

/* Keys of query i under a band of half-width w over n tokens: [*lo, *hi], clipped. */
DTM_HD void dtm_band_range(int64_t i, int64_t n, int64_t w, int64_t *lo, int64_t *hi)
{
    *lo = i - w < 0 ? 0 : i - w;
    *hi = i + w >= n ? n - 1 : i + w;
}

/* Number of (query, key) pairs the band visits: Σ_i (hi − lo + 1) = the work bound. */
DTM_HD int64_t dtm_band_pairs(int64_t n, int64_t w)
{
    int64_t t = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t lo, hi;
        dtm_band_range(i, n, w, &lo, &hi);
        t += hi - lo + 1;
    }
    return t;
}

#endif
