/* Per-row statistics and per-element transforms of the normalizations (LayerNorm+modulate,
 * GroupNorm(+act), T5's RMSNorm). A kernel reduces the sums in parallel and calls the
 * `finish` and `apply` functions; the *_row functions chain the same pieces sequentially so
 * host tests can compare them with the CPU reference. */
#ifndef DT_CUDA_NORM_MATH_H
#define DT_CUDA_NORM_MATH_H
#include "kernels/cuda/elem_math.h"
#include <math.h>

/* LayerNorm (no affine) as the CPU backend: mean in f32, then the mean squared deviation. */
DTM_HD float dtm_ln_mean(float sum, int64_t C) { return sum / (float)C; }
DTM_HD float dtm_ln_inv(float sqdev, int64_t C, float eps) { return 1.0f / sqrtf(sqdev / (float)C + eps); }
/* y = (x − mean)·inv·(1 + scale) + shift; sc / sh may be absent (has_* 0). */
DTM_HD float dtm_ln_apply(float x, float mean, float inv, int has_sc, float sc, int has_sh, float sh)
{
    float o = (x - mean) * inv;
    if (has_sc) o *= 1.0f + sc;
    if (has_sh) o += sh;
    return o;
}

DTM_HD void dtm_layernorm_row(const float *x, int64_t C, const float *sc, const float *sh, float eps, float *y)
{
    float sum = 0, sq = 0;
    for (int64_t c = 0; c < C; c++) sum += x[c];
    float mean = dtm_ln_mean(sum, C);
    for (int64_t c = 0; c < C; c++) sq += (x[c] - mean) * (x[c] - mean);
    float inv = dtm_ln_inv(sq, C, eps);
    for (int64_t c = 0; c < C; c++) y[c] = dtm_ln_apply(x[c], mean, inv, sc != 0, sc ? sc[c] : 0.f, sh != 0, sh ? sh[c] : 0.f);
}

/* GroupNorm: statistics in double over the n elements of a (sample, group). */
DTM_HD double dtm_gn_rstd(double var_sum, int64_t n, float eps) { return 1.0 / sqrt(var_sum / (double)n + eps); }
DTM_HD float dtm_gn_apply(float x, double mean, double rstd, float gamma, float beta, int act)
{
    double v = (x - mean) * rstd * gamma + beta;
    return dtm_act(act, (float)v);
}

/* One (sample, group) of an NHWC tensor: elements x[r·C + c] for r < N, c in [c0, c0+cg). */
DTM_HD void dtm_group_norm_group(const float *x, int64_t N, int64_t C, int64_t c0, int64_t cg, const float *gamma,
                                 const float *beta, float eps, int act, float *y)
{
    double mean = 0, var = 0;
    for (int64_t r = 0; r < N; r++)
        for (int64_t c = c0; c < c0 + cg; c++) mean += x[r * C + c];
    mean /= (double)(N * cg);
    for (int64_t r = 0; r < N; r++)
        for (int64_t c = c0; c < c0 + cg; c++) var += (x[r * C + c] - mean) * (x[r * C + c] - mean);
    double rstd = dtm_gn_rstd(var, N * cg, eps);
    for (int64_t r = 0; r < N; r++)
        for (int64_t c = c0; c < c0 + cg; c++)
            y[r * C + c] = dtm_gn_apply(x[r * C + c], mean, rstd, gamma ? gamma[c] : 1.0f, beta ? beta[c] : 0.0f, act);
}

/* T5LayerNorm: mean of squares in double (as the reference), x·inv·w. */
DTM_HD double dtm_rms_inv(double sq, int64_t C, float eps) { return 1.0 / sqrt(sq / (double)C + eps); }
DTM_HD float dtm_rms_apply(float x, double inv, float w) { return (float)(w * (x * inv)); }

DTM_HD void dtm_rms_norm_row(const float *x, int64_t C, const float *w, float eps, float *y)
{
    double sq = 0;
    for (int64_t c = 0; c < C; c++) sq += (double)x[c] * x[c];
    double inv = dtm_rms_inv(sq, C, eps);
    for (int64_t c = 0; c < C; c++) y[c] = dtm_rms_apply(x[c], inv, w[c]);
}

#endif
