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

/* GroupNorm over several blocks per (sample, group) for large images (a block per group leaves
 * most of the device idle: 32 groups at 1024² hold 4M elements each). The N rows of a group are
 * split into S chunks, chunk s being rows [dtm_gn_chunk_lo(N, S, s), dtm_gn_chunk_lo(N, S, s + 1));
 * each block writes its partial sum (then its partial sum of squared deviations from the mean of
 * all partials, summed in chunk order), and the apply pass reads both totals. */
DTM_HD int64_t dtm_gn_chunk_lo(int64_t N, int S, int s) { return N * s / S; }

/* How many chunks per (sample, group): enough for about `target` blocks in all, each with at
 * least 4096 elements, at most 1024. */
DTM_HD int dtm_gn_splits(int64_t groups_total, int64_t N, int64_t cg, int target)
{
    int64_t s = (target + groups_total - 1) / groups_total, most = N * cg / 4096;
    s = s > most ? most : s;
    s = s > 1024 ? 1024 : s;
    s = s > N ? N : s;
    return (int)(s < 1 ? 1 : s);
}

/* The partial sum of chunk s (sq: of squared deviations from mean) of one (sample, group). */
DTM_HD double dtm_gn_partial(const float *x, int64_t N, int64_t C, int64_t c0, int64_t cg, int S, int s, int sq,
                             double mean)
{
    double v = 0;
    for (int64_t r = dtm_gn_chunk_lo(N, S, s); r < dtm_gn_chunk_lo(N, S, s + 1); r++)
        for (int64_t c = c0; c < c0 + cg; c++) {
            double t = x[r * C + c];
            if (sq) {
                t -= mean;
                t *= t;
            }
            v += t;
        }
    return v;
}

/* The total of a group's S partials, in chunk order (every thread of the apply pass gets the same). */
DTM_HD double dtm_gn_total(const double *part, int S)
{
    double t = 0;
    for (int i = 0; i < S; i++) t += part[i];
    return t;
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
