/* DPM-Solver-v3 statistics and update for the USF interpreter (see usf_v3.h). */
#include "usf_v3.h"
#include "runtime/core/safetensors.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* y_j = sum_{i<=j} 0.5 (lam_i - lam_{i-1}) (v_i + v_{i-1}), y_0 = 0, per column; v = f(row). */
static void cumtrapz(const dt_ems *e, const double *v, double *y)
{
    size_t D = e->D;
    for (size_t m = 0; m < D; m++) y[m] = 0;
    for (int j = 1; j <= e->N; j++) {
        double dl = 0.5 * (e->lam[j] - e->lam[j - 1]);
        for (size_t m = 0; m < D; m++) y[j * D + m] = y[(j - 1) * D + m] + dl * (v[j * D + m] + v[(j - 1) * D + m]);
    }
}

static dt_status read_rows(const dt_safetensors *st, const char *path, const char *name, const dt_st_entry *like,
                           const dt_st_entry **out, dt_err *err)
{
    const dt_st_entry *t = dt_st_find(st, name);
    if (!t) return dt_fail(err, DT_EFORMAT, "%s: statistics tensor \"%s\" is missing (needs l, s, b)", path, name);
    if (t->dtype != DT_F32 && t->dtype != DT_F16 && t->dtype != DT_BF16)
        return dt_fail(err, DT_EFORMAT, "%s: statistics tensor \"%s\" must be f32, f16 or bf16", path, name);
    int same = !like || (like->ndim == t->ndim && !memcmp(like->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim));
    if (!same) return dt_fail(err, DT_EFORMAT, "%s: statistics tensor \"%s\" differs in shape from \"l\"", path, name);
    if (t->ndim < 1 || t->shape[0] < 2)
        return dt_fail(err, DT_EFORMAT, "%s: statistics tensor \"%s\" needs [N+1, ...] with N >= 1", path, name);
    *out = t;
    return DT_OK;
}

static dt_status integrate(dt_ems *e, const float *s, const float *b, const char *path, dt_err *err)
{
    size_t R = (size_t)(e->N + 1), D = e->D, n = R * D;
    double *v = calloc(n, sizeof *v);
    e->L = malloc(n * sizeof(double)); e->S = malloc(n * sizeof(double)); e->I = malloc(n * sizeof(double));
    e->B = malloc(n * sizeof(double)); e->C = malloc(n * sizeof(double));
    if (!v || !e->L || !e->S || !e->I || !e->B || !e->C) { free(v); return dt_fail(err, DT_ENOMEM, "%s: out of memory", path); }
    for (size_t i = 0; i < n; i++) v[i] = e->l[i];
    cumtrapz(e, v, e->L);
    for (size_t i = 0; i < n; i++) v[i] = s[i];
    cumtrapz(e, v, e->S);
    for (size_t i = 0; i < n; i++) v[i] = exp(e->L[i] + e->S[i]);
    cumtrapz(e, v, e->I);
    for (size_t i = 0; i < n; i++) v[i] = exp(-e->S[i]) * b[i];
    cumtrapz(e, v, e->B);
    for (size_t i = 0; i < n; i++) v[i] = exp(e->L[i] + e->S[i]) * e->B[i];
    cumtrapz(e, v, e->C);
    free(v);
    return DT_OK;
}

dt_status dt_ems_load(const char *path, double (*lambda_of)(const void *user, double t), const void *user, dt_ems *e,
                      dt_err *err)
{
    *e = (dt_ems){.t_start = 1, .t_end = 1e-3};
    dt_safetensors *st;
    DT_TRY(dt_st_open(path, &st, err));
    const dt_st_entry *tl, *ts, *tb, *tr = dt_st_find(st, "t_range");
    float *s = NULL, *b = NULL;
    dt_status r = read_rows(st, path, "l", NULL, &tl, err);
    if (r == DT_OK) r = read_rows(st, path, "s", tl, &ts, err);
    if (r == DT_OK) r = read_rows(st, path, "b", tl, &tb, err);
    if (r == DT_OK && tr) {
        float tt[2];
        if (tr->ndim != 1 || tr->shape[0] != 2 || tr->dtype != DT_F32)
            r = dt_fail(err, DT_EFORMAT, "%s: statistics tensor \"t_range\" must be f32 [2] (t_start, t_end)", path);
        else {
            dt_st_read_f32(tr, tt);
            e->t_start = tt[0];
            e->t_end = tt[1];
            if (!(e->t_end > 0 && e->t_end < e->t_start && e->t_start <= 1))
                r = dt_fail(err, DT_EFORMAT, "%s: statistics \"t_range\" (%g, %g) needs 0 < t_end < t_start <= 1", path,
                            e->t_start, e->t_end);
        }
    }
    if (r == DT_OK) {
        e->N = (int)(tl->shape[0] - 1);
        e->D = tl->nbytes / dt_dtype_size(tl->dtype) / (size_t)tl->shape[0];
        size_t n = (size_t)(e->N + 1) * e->D;
        e->l = malloc(n * sizeof(float));
        s = malloc(n * sizeof(float));
        b = malloc(n * sizeof(float));
        e->lam = malloc((size_t)(e->N + 1) * sizeof(double));
        if (!e->l || !s || !b || !e->lam) r = dt_fail(err, DT_ENOMEM, "%s: out of memory", path);
    }
    if (r == DT_OK) {
        dt_st_read_f32(tl, e->l);
        dt_st_read_f32(ts, s);
        dt_st_read_f32(tb, b);
        e->lam_T = lambda_of(user, e->t_start);
        e->lam_0 = lambda_of(user, e->t_end);
        for (int j = 0; j <= e->N; j++) e->lam[j] = e->lam_T + (e->lam_0 - e->lam_T) * j / e->N;
        r = integrate(e, s, b, path, err);
    }
    free(s);
    free(b);
    dt_st_close(st);
    if (r != DT_OK) dt_ems_free(e);
    return r;
}

void dt_ems_free(dt_ems *e)
{
    free(e->lam); free(e->l); free(e->L); free(e->S); free(e->I); free(e->B); free(e->C);
    *e = (dt_ems){0};
}

long dt_ems_index(const dt_ems *e, double lambda)
{
    double r = nearbyint(e->N * (lambda - e->lam_T) / (e->lam_0 - e->lam_T)); /* half to even, as torch.round */
    return r < -1 ? -1 : r > e->N + 1 ? e->N + 1 : (long)r;
}

void dt_ems_f(const dt_ems *e, int k, double alpha, double sigma, const float *x, const float *eps, float *f, size_t n)
{
    const float *l = e->l + (size_t)k * e->D;
    for (size_t i = 0; i < n; i++) f[i] = (float)((sigma * eps[i] - (double)l[i % e->D] * x[i]) / alpha);
}

/* coef[(k-1) D + m] for k = 1..p-1: trapezoid over rows is..it of e^{a_j} (lam_j - lam_s)^k / k! */
static void high_order_coefs(const dt_ems *e, const dt_ems_step *st, double *coef)
{
    size_t D = e->D;
    const double *ls = e->lam + st->is;
    for (size_t m = 0; m < D; m++) {
        double base = e->L[st->is * D + m] + e->S[st->is * D + m];
        for (int k = 1; k < st->p; k++) coef[(k - 1) * D + m] = 0;
        double prev[8] = {0}; /* integrand at row j-1, per k (zero at j = is: lam_j - lam_s = 0) */
        for (int j = st->is + 1; j <= st->it; j++) {
            double ea = exp(e->L[j * D + m] + e->S[j * D + m] - base), dl = e->lam[j] - *ls, pw = 1, fact = 1;
            double half = 0.5 * (e->lam[j] - e->lam[j - 1]);
            for (int k = 1; k < st->p; k++) {
                pw *= dl;
                fact *= k;
                double cur = ea * pw / fact;
                coef[(k - 1) * D + m] += half * (cur + prev[k]);
                prev[k] = cur;
            }
        }
    }
}

dt_status dt_ems_update(const dt_ems *e, const dt_ems_step *st, float *out, size_t n, dt_err *err)
{
    size_t D = e->D;
    double *coef = NULL;
    if (st->p > 1 && !(coef = malloc((size_t)(st->p - 1) * D * sizeof *coef)))
        return dt_fail(err, DT_ENOMEM, "dpmsolver_v3: out of memory");
    if (coef) high_order_coefs(e, st, coef);
    size_t rs = (size_t)st->is * D, rt = (size_t)st->it * D;
    for (size_t i = 0; i < n; i++) {
        size_t m = i % D;
        double Ls = e->L[rs + m], Lt = e->L[rt + m], Ss = e->S[rs + m], Bs = e->B[rs + m];
        double dI = e->I[rt + m] - e->I[rs + m], fs = st->fs[i];
        double v = st->alpha_t / st->alpha_s * exp(Ls - Lt) * st->xs[i] - st->alpha_t * exp(-Lt - Ss) * dI * fs -
                   st->alpha_t * exp(-Lt) * (e->C[rt + m] - e->C[rs + m] - Bs * dI);
        double eS = exp(Ss), cl = st->alpha_t * exp(Ls - Lt);
        for (int k = 1; k < st->p; k++) {
            double d = 0;
            for (int j = 0; j < st->m[k]; j++) {
                size_t rj = (size_t)st->rows[k][j] * D + m;
                double g = exp(Ss - e->S[rj]) * st->F[k][j][i] - eS * (e->B[rj] - Bs);
                d += st->w[k][j] * (g - fs);
            }
            v -= cl * coef[(k - 1) * D + m] * d;
        }
        out[i] = (float)v;
    }
    free(coef);
    return DT_OK;
}
