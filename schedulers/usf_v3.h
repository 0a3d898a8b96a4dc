/* DPM-Solver-v3 empirical model statistics (EMS) for USF's dpmsolver_v3_prediction steps
 * (thu-nics/USF uni_sampler/USF.py, thu-ml/DPM-Solver-v3 dpm_solver_v3.py).
 *
 * File (ditrt's form of the published statistics_dir with l.npz and sb.npz; convert with
 * scripts/usf_stats_convert.py): safetensors with "l", "s", "b" of one shape [N+1, ...]
 * (f32/f16/bf16): the coefficients at N+1 points of a uniform half-logSNR grid from
 * lambda(t_start) to lambda(t_end), and optionally "t_range" [2] = (t_start, t_end)
 * (default (1, 1e-3), USF's). Value k of a grid row applies to element i of the sampled
 * array when i % D == k, D = the values per row (per-element EMS, a scalar per step when D = 1).
 *
 * With lambda_j the grid: L = int l, S = int s, I = int e^{L+S}, B = int e^{-S} b,
 * C = int e^{L+S} B (cumulative trapezoids from the first point, as the published code
 * computes them, in double). A point at time t uses row round(N (lambda(t) - lambda_T) /
 * (lambda_0 - lambda_T)). */
#ifndef DT_USF_V3_H
#define DT_USF_V3_H
#include <stddef.h>
#include "runtime/core/error.h"

typedef struct {
    int N;                         /* grid intervals */
    size_t D;                      /* values per grid row */
    double t_start, t_end, lam_T, lam_0;
    double *lam;                   /* [N+1] grid */
    float *l;                      /* [N+1][D] */
    double *L, *S, *I, *B, *C;     /* [N+1][D] */
} dt_ems;

/* Reads the file and integrates over the grid from lam_T = lambda(t_start) to lam_0 =
 * lambda(t_end) given by `lambda_of` on the caller's noise schedule. */
dt_status dt_ems_load(const char *path, double (*lambda_of)(const void *user, double t), const void *user, dt_ems *e,
                      dt_err *err);
void dt_ems_free(dt_ems *e);
/* Grid row of half-logSNR lambda (may fall outside [0, N]: the caller checks). */
long dt_ems_index(const dt_ems *e, double lambda);

/* f = (sigma eps - l_k x) / alpha at grid row k, over n values. */
void dt_ems_f(const dt_ems *e, int k, double alpha, double sigma, const float *x, const float *eps, float *f, size_t n);

/* One dpmsolver_v3 update from the start point (row is, alpha_s, sample xs, f fs) to row it
 * (alpha_t): the first-order EMS step plus p-1 higher-order terms. Derivative k (1..p-1) of
 * g over lambda is sum_j w[k][j] (g(F[k][j]) - g(fs)) with g(f_j) = e^{S_s - S_j} f_j -
 * e^{S_s} (B_j - B_s) at rows rows[k][j]; its coefficient is alpha_t e^{L_s - L_t} times
 * the trapezoid of e^{L+S-L_s-S_s} (lambda - lambda_s)^k / k! over rows is..it. */
typedef struct {
    int p, is, it;
    double alpha_s, alpha_t;
    const float *xs, *fs;
    int m[8];                      /* active points per derivative */
    const float *F[8][8];
    int rows[8][8];
    double w[8][8];
} dt_ems_step;
dt_status dt_ems_update(const dt_ems *e, const dt_ems_step *st, float *out, size_t n, dt_err *err);

#endif
