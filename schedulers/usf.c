/* USF (thu-nics/USF, ICLR'24) per-step solver schedules, interpreted over the folder's VP
 * noise schedule (see /work/shared/reference/METHODS.md and the examples in configs/solvers/).
 *
 * Time is USF's continuous t in [0, 1] on DPM-Solver's discrete VP schedule: log alpha(t)
 * interpolates 0.5 log alphas_cumprod[k] linearly at t = (k+1)/N (extrapolated below 1/N),
 * the model sees timestep t*N - 1 (integers stay integers), and t = 0 exactly means the clean
 * end point (sigma 0, as diffusers' final_sigmas_type "zero"). Each scheduler step is one model
 * evaluation at a schedule point; the last point is not evaluated. Per step: Taylor order p,
 * noise or data prediction, start point, p-1 derivative estimates (each from m active points:
 * A a = e_i with A[j][k] = dl_k^j / j!) with optional relaxation of the first one, and a
 * pseudo corrector run at the start of the next step on its model output (no extra
 * evaluation; the last step never corrects). AFS "zero_x0" replaces the first model output by
 * x_T (the model is still called once by the pipeline: its output is ignored).
 *
 * dpmsolver_v3_prediction steps (DPM-Solver-v3's EMS update, schedulers/usf_v3.h) need a
 * statistics file; every evaluated point and each v3 step's target must then lie on the
 * statistics' grid. Relaxations use h (-h for the empirical ones under data prediction), as
 * the published code does.
 *
 * Arithmetic is double for the coefficients and the derivative weights, f32 for the arrays.
 * Not supported (fail at load naming step and field): dpmsolver_v3_prediction without a
 * statistics file, implicit correctors, relaxation on derivatives other than the first, an
 * order above 1 into t = 0. num_inference_steps is ignored: the schedule fixes it. */
#include "scheduler_impl.h"
#include "runtime/core/json.h"
#include "usf_v3.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define USF_MAX_ORDER 6
#define USF_MAX_STEPS 1000

enum { REL_NONE, REL_LINEAR, REL_BH2, REL_BH1 };
enum { P_NOISE, P_DATA, P_V3 };

typedef struct {
    int m;                       /* active points */
    int active[USF_MAX_ORDER];   /* relative indices (-1 = newest point) */
    int relax;
    double coef;                 /* linear relaxation coefficient */
} usf_deriv;

typedef struct {
    int order, pred, start;
    usf_deriv d[USF_MAX_ORDER];
    int corr;                    /* pseudo corrector after this step */
    int c_start, c_order;
    usf_deriv cd[USF_MAX_ORDER];
} usf_step;

typedef struct {
    int num_train, model_pred, afs, nsteps;
    double *log_alpha;           /* 0.5 log alphas_cumprod, num_train values */
    double *t;                   /* nsteps + 1 schedule points */
    usf_step *st;
    /* per point: the sample (corrected), eps and x0 from the model output */
    float **x, **eps, **x0;
    size_t n;
    /* DPM-Solver-v3: statistics, each point's grid row and f from the model output */
    int has_v3, has_ems;
    dt_ems ems;
    long *row;
    float **f;
} usf;

/* ---- the noise schedule ---- */

typedef struct { double la, alpha, sigma, lambda; } vp;

static vp vp_at(const usf *u, double t)
{
    if (t <= 0) return (vp){0, 1, 0, INFINITY};
    int N = u->num_train;
    double pos = t * N - 1; /* t_array[k] = (k+1)/N */
    int k = (int)floor(pos);
    if (k < 0) k = 0;
    if (k > N - 2) k = N - 2;
    double w = pos - k;
    double la = u->log_alpha[k] + w * (u->log_alpha[k + 1] - u->log_alpha[k]);
    double sg = sqrt(-expm1(2 * la));
    return (vp){la, exp(la), sg, la - log(sg)};
}

/* ---- schedule parsing ---- */

static dt_status num_array(const cJSON *j, const char *path, const char *field, int want, const cJSON **out, dt_err *err)
{
    *out = cJSON_GetObjectItemCaseSensitive(j, field);
    if (!cJSON_IsArray(*out))
        return dt_fail(err, DT_EFORMAT, "%s: field \"%s\" is missing or not a list", path, field);
    if (want >= 0 && cJSON_GetArraySize(*out) != want)
        return dt_fail(err, DT_EFORMAT, "%s: field \"%s\" has %d entries, expected %d (one per step)", path, field,
                       cJSON_GetArraySize(*out), want);
    return DT_OK;
}

static dt_status parse_deriv(const cJSON *e, const char *path, const char *field, int step, int idx, usf_deriv *d, dt_err *err)
{
    const cJSON *ap = cJSON_GetObjectItemCaseSensitive(e, "active_points");
    const cJSON *est = cJSON_GetObjectItemCaseSensitive(e, "estimate");
    const cJSON *rel = cJSON_GetObjectItemCaseSensitive(e, "relaxation");
    if (!cJSON_IsObject(e) || !cJSON_IsArray(ap) || !cJSON_IsString(est))
        return dt_fail(err, DT_EFORMAT, "%s: step %d: field \"%s\" entry %d needs \"estimate\" and \"active_points\"", path, step, field, idx);
    d->m = cJSON_GetArraySize(ap);
    int m2;
    if (d->m < 1 || d->m > USF_MAX_ORDER || sscanf(est->valuestring, "Difference_%d", &m2) != 1 || m2 != d->m)
        return dt_fail(err, DT_EFORMAT, "%s: step %d: field \"%s\" entry %d: estimate \"%s\" with %d active points", path,
                       step, field, idx, est->valuestring, d->m);
    int k = 0;
    for (const cJSON *v = ap->child; v; v = v->next, k++) {
        if (!cJSON_IsNumber(v) || v->valueint >= 0)
            return dt_fail(err, DT_EFORMAT, "%s: step %d: field \"%s\" entry %d: active points must be negative indices", path, step, field, idx);
        d->active[k] = v->valueint;
    }
    d->relax = REL_NONE;
    d->coef = 0;
    if (rel && !cJSON_IsNull(rel)) {
        const char *r = cJSON_IsString(rel) ? rel->valuestring : "";
        if (!strcmp(r, "linear")) d->relax = REL_LINEAR;
        else if (!strcmp(r, "dpmsolver-2") || !strcmp(r, "unipc-bh2")) d->relax = REL_BH2;
        else if (!strcmp(r, "unipc-bh1")) d->relax = REL_BH1;
        else return dt_fail(err, DT_EFORMAT, "%s: step %d: field \"%s\" entry %d: relaxation \"%s\" is unknown "
                                             "(linear, dpmsolver-2, unipc-bh2, unipc-bh1)", path, step, field, idx, r);
        if (idx > 0) return dt_fail(err, DT_EUNSUPPORTED, "%s: step %d: field \"%s\" entry %d: relaxation applies to the "
                                                          "first derivative only", path, step, field, idx);
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "relaxation_coefficient");
        if (cJSON_IsNumber(c)) d->coef = c->valuedouble;
    }
    return DT_OK;
}

/* order-1 derivative estimates from the list `a`; checks every active point exists and is
 * not the start point. `have` = points in the list, start = the start's relative index. */
static dt_status parse_derivs(const cJSON *a, const char *path, const char *field, int step, int order, int have,
                              int start, usf_deriv *d, dt_err *err)
{
    if (order - 1 > 0 && (!cJSON_IsArray(a) || cJSON_GetArraySize(a) < order - 1))
        return dt_fail(err, DT_EFORMAT, "%s: step %d: field \"%s\" needs %d derivative estimates for order %d", path,
                       step, field, order - 1, order);
    if (order - 1 > have - 1)
        return dt_fail(err, DT_EINVAL, "%s: step %d: field \"%s\": order %d needs %d earlier points, only %d available",
                       path, step, field, order, order - 1, have - 1);
    int i = 0;
    for (const cJSON *e = a ? a->child : NULL; e && i < order - 1; e = e->next, i++) {
        DT_TRY(parse_deriv(e, path, field, step, i, &d[i], err));
        if (d[i].m < i + 1)
            return dt_fail(err, DT_EINVAL, "%s: step %d: field \"%s\" entry %d: derivative %d needs at least %d active points",
                           path, step, field, i, i + 1, i + 1);
        for (int k = 0; k < d[i].m; k++)
            if (d[i].active[k] < -have || d[i].active[k] == start)
                return dt_fail(err, DT_EINVAL, "%s: step %d: field \"%s\" entry %d: active point %d is %s", path, step,
                               field, i, d[i].active[k], d[i].active[k] == start ? "the start point" : "beyond the available history");
    }
    return DT_OK;
}

static dt_status parse_pred(const cJSON *p, const char *path, int step, int has_stats, int *out, dt_err *err)
{
    const char *v = cJSON_IsString(p) ? p->valuestring : "";
    if (!strcmp(v, "noise_prediction")) *out = P_NOISE;
    else if (!strcmp(v, "data_prediction")) *out = P_DATA;
    else if (!strcmp(v, "dpmsolver_v3_prediction")) {
        if (!has_stats)
            return dt_fail(err, DT_EUNSUPPORTED, "%s: step %d: field \"prediction_types\" is \"dpmsolver_v3_prediction\", "
                                                 "which needs a DPM-Solver-v3 statistics file (--solver-statistics)", path, step);
        *out = P_V3;
    } else return dt_fail(err, DT_EFORMAT, "%s: step %d: field \"prediction_types\" is \"%s\"; supported: noise_prediction, "
                                           "data_prediction, dpmsolver_v3_prediction", path, step, v);
    return DT_OK;
}

static dt_status parse_corrector(const cJSON *c, const char *path, int step, int last, int have, usf_step *s, dt_err *err)
{
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(c, "type");
    const char *t = cJSON_IsString(ty) ? ty->valuestring : "";
    if (!strcmp(t, "no_corrector")) return DT_OK;
    if (strcmp(t, "pseudo"))
        return dt_fail(err, strcmp(t, "implicit") ? DT_EFORMAT : DT_EUNSUPPORTED, "%s: step %d: field \"corrector_types\" type "
                       "\"%s\"; supported: no_corrector, pseudo", path, step, t);
    if (last) return DT_OK; /* the last step never corrects */
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(c, "start_point"), *to = cJSON_GetObjectItemCaseSensitive(c, "taylor_order");
    if (!cJSON_IsNumber(sp) || !cJSON_IsNumber(to) || sp->valueint > -2 || sp->valueint < -(have + 1) || to->valueint < 1 ||
        to->valueint > USF_MAX_ORDER)
        return dt_fail(err, DT_EFORMAT, "%s: step %d: field \"corrector_types\": pseudo needs start_point <= -2 within the "
                                        "history and taylor_order in [1, %d]", path, step, USF_MAX_ORDER);
    s->corr = 1;
    s->c_start = sp->valueint;
    s->c_order = to->valueint;
    return parse_derivs(cJSON_GetObjectItemCaseSensitive(c, "derivative_type"), path, "corrector_types", step, s->c_order,
                        have + 1, s->c_start, s->cd, err);
}

static dt_status parse_schedule(usf *u, const cJSON *j, const char *path, int has_stats, dt_err *err)
{
    const cJSON *ts, *orders, *preds, *starts, *derivs, *corrs;
    DT_TRY(num_array(j, path, "timesteps", -1, &ts, err));
    int np = cJSON_GetArraySize(ts);
    if (np < 2 || np > USF_MAX_STEPS + 1)
        return dt_fail(err, DT_EFORMAT, "%s: field \"timesteps\" needs 2 to %d points, has %d", path, USF_MAX_STEPS + 1, np);
    int ns = np - 1;
    DT_TRY(num_array(j, path, "orders", ns, &orders, err));
    DT_TRY(num_array(j, path, "prediction_types", ns, &preds, err));
    DT_TRY(num_array(j, path, "start_points", ns, &starts, err));
    DT_TRY(num_array(j, path, "derivative_types", ns, &derivs, err));
    DT_TRY(num_array(j, path, "corrector_types", ns, &corrs, err));
    if (!(u->t = malloc((size_t)np * sizeof *u->t)) || !(u->st = calloc((size_t)ns, sizeof *u->st)))
        return dt_fail(err, DT_ENOMEM, "%s: out of memory", path);
    u->nsteps = ns;
    int i = 0;
    for (const cJSON *v = ts->child; v; v = v->next, i++) {
        if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble <= 1))
            return dt_fail(err, DT_EFORMAT, "%s: field \"timesteps\" point %d must be a number in [0, 1]", path, i);
        u->t[i] = v->valuedouble;
        if (i && !(u->t[i] < u->t[i - 1]))
            return dt_fail(err, DT_EFORMAT, "%s: field \"timesteps\" must descend: point %d (%g) is not below point %d (%g)",
                           path, i, u->t[i], i - 1, u->t[i - 1]);
    }
    const cJSON *o = orders->child, *p = preds->child, *sp = starts->child, *d = derivs->child, *c = corrs->child;
    for (i = 0; i < ns; i++, o = o->next, p = p->next, sp = sp->next, d = d->next, c = c->next) {
        usf_step *s = &u->st[i];
        int have = i + 1; /* points 0..i exist when step i runs */
        if (!cJSON_IsNumber(o) || o->valueint < 1 || o->valueint > USF_MAX_ORDER)
            return dt_fail(err, DT_EFORMAT, "%s: step %d: field \"orders\" must be in [1, %d]", path, i, USF_MAX_ORDER);
        s->order = o->valueint;
        if (!cJSON_IsNumber(sp) || sp->valueint > -1 || sp->valueint < -have)
            return dt_fail(err, DT_EFORMAT, "%s: step %d: field \"start_points\" must be a negative index within the %d points so far",
                           path, i, have);
        s->start = sp->valueint;
        DT_TRY(parse_pred(p, path, i, has_stats, &s->pred, err));
        u->has_v3 |= s->pred == P_V3;
        DT_TRY(parse_derivs(d, path, "derivative_types", i, s->order, have, s->start, s->d, err));
        if (u->t[i + 1] == 0 && s->order > 1)
            return dt_fail(err, DT_EINVAL, "%s: step %d: field \"orders\": order %d into t = 0 (sigma 0) is undefined; use 1",
                           path, i, s->order);
        DT_TRY(parse_corrector(c, path, i, i == ns - 1, have, s, err));
    }
    const cJSON *afs = cJSON_GetObjectItemCaseSensitive(j, "afs");
    const char *a = cJSON_IsString(afs) ? afs->valuestring : "no_afs";
    if (!strcmp(a, "zero_x0")) u->afs = 1;
    else if (strcmp(a, "no_afs")) return dt_fail(err, DT_EFORMAT, "%s: field \"afs\" is \"%s\"; supported: no_afs, zero_x0", path, a);
    return DT_OK;
}

/* ---- DPM-Solver-v3 statistics ---- */

static double lambda_of(const void *user, double t) { return vp_at(user, t).lambda; }

/* Loads the statistics and places every point on their grid: the evaluated points (their
 * f feeds the v3 steps) and each v3 step's target must fall on a row. */
static dt_status load_statistics(usf *u, const char *path, const char *stats, dt_err *err)
{
    DT_TRY(dt_ems_load(stats, lambda_of, u, &u->ems, err));
    u->has_ems = 1;
    if (!(u->row = malloc((size_t)(u->nsteps + 1) * sizeof *u->row))) return dt_fail(err, DT_ENOMEM, "%s: out of memory", path);
    for (int i = 0; i <= u->nsteps; i++) u->row[i] = dt_ems_index(&u->ems, vp_at(u, u->t[i]).lambda);
    for (int i = 0; i < u->nsteps; i++) {
        int k = u->row[i] < 0 || u->row[i] > u->ems.N ? i : u->st[i].pred == P_V3 && u->row[i + 1] > u->ems.N ? i + 1 : -1;
        if (k >= 0)
            return dt_fail(err, DT_EINVAL, "%s: step %d: point %d (t = %g) is outside the DPM-Solver-v3 statistics' range "
                                           "t in [%g, %g] of %s", path, i, k, u->t[k], u->ems.t_end, u->ems.t_start, stats);
    }
    return DT_OK;
}

/* ---- create / set_timesteps ---- */

static void usf_free_points(usf *u)
{
    for (int i = 0; u->x && i <= u->nsteps; i++) { free(u->x[i]); free(u->eps[i]); free(u->x0[i]); }
    for (int i = 0; u->f && i <= u->nsteps; i++) free(u->f[i]);
    free(u->x); free(u->eps); free(u->x0); free(u->f);
    u->x = u->eps = u->x0 = u->f = NULL;
    u->n = 0;
}

static void usf_destroy(void *impl)
{
    usf *u = impl;
    if (!u) return;
    usf_free_points(u);
    free(u->log_alpha); free(u->t); free(u->st); free(u->row);
    if (u->has_ems) dt_ems_free(&u->ems);
    free(u);
}

static dt_status usf_create(dt_scheduler *s, const cJSON *cfg, const char *path, dt_err *err)
{
    usf *u = calloc(1, sizeof *u);
    if (!u) return dt_fail(err, DT_ENOMEM, "%s: out of memory", path);
    s->impl = u;
    const cJSON *sf = cJSON_GetObjectItemCaseSensitive(cfg, "_usf_schedule");
    const cJSON *stats = cJSON_GetObjectItemCaseSensitive(cfg, "_usf_statistics");
    if (!cJSON_IsString(sf)) return dt_fail(err, DT_EINVAL, "%s: no USF schedule file given", path);
    DT_TRY(dt_cfg_pred(cfg, path, &u->model_pred, err));
    dt_beta_config bc;
    float *trained = NULL, *ac = NULL;
    DT_TRY(dt_beta_config_read(cfg, path, &bc, &trained, err));
    u->num_train = bc.num_train_timesteps;
    dt_status st = dt_alphas_cumprod_alloc(&bc, path, &ac, err);
    free(trained);
    if (st == DT_OK && !(u->log_alpha = malloc((size_t)u->num_train * sizeof *u->log_alpha)))
        st = dt_fail(err, DT_ENOMEM, "%s: out of memory", path);
    for (int i = 0; st == DT_OK && i < u->num_train; i++) u->log_alpha[i] = 0.5 * log((double)ac[i]);
    free(ac);
    if (st != DT_OK) return st;
    cJSON *j;
    DT_TRY(dt_json_load(sf->valuestring, &j, err));
    st = parse_schedule(u, j, sf->valuestring, cJSON_IsString(stats), err);
    cJSON_Delete(j);
    if (st == DT_OK && u->has_v3) st = load_statistics(u, sf->valuestring, stats->valuestring, err);
    s->init_noise_sigma = 1.0;
    return st;
}

static dt_status usf_set_timesteps(dt_scheduler *s, int steps, dt_err *err)
{
    (void)steps; /* the schedule fixes the steps */
    usf *u = s->impl;
    double *ts = malloc((size_t)u->nsteps * sizeof *ts);
    float *sig = malloc((size_t)(u->nsteps + 1) * sizeof *sig);
    if (!ts || !sig) { free(ts); free(sig); return dt_fail(err, DT_ENOMEM, "%s: out of memory", s->path); }
    for (int i = 0; i <= u->nsteps; i++) {
        vp p = vp_at(u, u->t[i]);
        sig[i] = (float)(p.sigma / p.alpha);
        if (i < u->nsteps) {
            double tau = u->t[i] * u->num_train - 1, r = nearbyint(tau);
            ts[i] = fabs(tau - r) < 1e-6 ? r : tau;
        }
    }
    dt_sched_install(s, ts, sig, u->nsteps);
    s->step_index = 0;
    return DT_OK;
}

/* ---- the step ---- */

static dt_status ensure_points(usf *u, size_t n, const char *path, dt_err *err)
{
    if (u->n == n && u->x) return DT_OK;
    usf_free_points(u);
    int np = u->nsteps + 1;
    if (!(u->x = calloc((size_t)np, sizeof *u->x)) || !(u->eps = calloc((size_t)np, sizeof *u->eps)) ||
        !(u->x0 = calloc((size_t)np, sizeof *u->x0)))
        return dt_fail(err, DT_ENOMEM, "%s: out of memory", path);
    size_t m = n ? n : 1;
    for (int i = 0; i < np; i++)
        if (!(u->x[i] = malloc(m * 4)) || !(u->eps[i] = malloc(m * 4)) || !(u->x0[i] = malloc(m * 4)))
            return dt_fail(err, DT_ENOMEM, "%s: out of memory for the solver history (%d x %zu values)", path, np, n);
    if (u->has_v3 && !(u->f = calloc((size_t)np, sizeof *u->f))) return dt_fail(err, DT_ENOMEM, "%s: out of memory", path);
    for (int i = 0; u->f && i < np; i++)
        if (!(u->f[i] = malloc(m * 4))) return dt_fail(err, DT_ENOMEM, "%s: out of memory for the solver history", path);
    u->n = n;
    return DT_OK;
}

/* Weights a_k of derivative `order` (1-based) from m points at dl[k] (solve A a = e_order). */
static void deriv_weights(int m, const double *dl, int order, double *a)
{
    double A[USF_MAX_ORDER][USF_MAX_ORDER + 1];
    for (int j = 0; j < m; j++) {
        double f = 1;
        for (int k = 0; k < j + 1; k++) f *= k + 1;
        for (int k = 0; k < m; k++) A[j][k] = pow(dl[k], j + 1) / f;
        A[j][m] = j + 1 == order;
    }
    for (int c = 0; c < m; c++) {
        int p = c;
        for (int r = c + 1; r < m; r++) if (fabs(A[r][c]) > fabs(A[p][c])) p = r;
        for (int k = 0; k <= m; k++) { double t = A[c][k]; A[c][k] = A[p][k]; A[p][k] = t; }
        for (int r = 0; r < m; r++) {
            if (r == c) continue;
            double f = A[r][c] / A[c][c];
            for (int k = c; k <= m; k++) A[r][k] -= f * A[c][k];
        }
    }
    for (int k = 0; k < m; k++) a[k] = A[k][m] / A[k][k];
}

/* The factor on the first derivative; h = lambda_t - lambda_s, hh = -h for the empirical
 * relaxations under data prediction (the linear one always takes h, as USF.py does). */
static double relaxation(const usf_deriv *d, double h, double hh)
{
    double e = expm1(hh);
    if (d->relax == REL_LINEAR) return 1 + d->coef * h;
    if (d->relax == REL_BH2) return 0.5 * hh * e / (e - hh);
    if (d->relax == REL_BH1) return 0.5 * hh * hh / (e - hh);
    return 1;
}

/* The dpmsolver_v3 step from point s to point tp: derivatives of g over the exact lambdas
 * of the active points, the EMS coefficients from the statistics (usf_v3.c). */
static dt_status v3_update(const usf *u, int s, int tp, int p, const usf_deriv *d, int top, float *out, size_t n, dt_err *err)
{
    vp S = vp_at(u, u->t[s]), T = vp_at(u, u->t[tp]);
    dt_ems_step st = {.p = p, .is = (int)u->row[s], .it = (int)u->row[tp], .alpha_s = S.alpha, .alpha_t = T.alpha,
                      .xs = u->x[s], .fs = u->f[s]};
    double h = T.lambda - S.lambda;
    for (int k = 1; k < p; k++) {
        const usf_deriv *e = &d[k - 1];
        double dl[USF_MAX_ORDER];
        st.m[k] = e->m;
        for (int j = 0; j < e->m; j++) {
            int a = top + 1 + e->active[j];
            st.F[k][j] = u->f[a];
            st.rows[k][j] = (int)u->row[a];
            dl[j] = vp_at(u, u->t[a]).lambda - S.lambda;
        }
        deriv_weights(e->m, dl, k, st.w[k]);
        double r = k == 1 ? relaxation(e, h, h) : 1;
        for (int j = 0; j < e->m; j++) st.w[k][j] *= r;
    }
    return dt_ems_update(&u->ems, &st, out, n, err);
}

/* x_t from point `s` (absolute index) with Taylor order p and derivative estimates d over
 * points relative to `top` (the newest point in the list). */
static dt_status taylor_update(const usf *u, int s, int tp, int p, int pred, const usf_deriv *d, int top, float *out,
                               size_t n, dt_err *err)
{
    if (pred == P_V3) return v3_update(u, s, tp, p, d, top, out, n, err);
    vp S = vp_at(u, u->t[s]), T = vp_at(u, u->t[tp]);
    float *const *F = pred == P_DATA ? u->x0 : u->eps;
    const float *xs = u->x[s], *Fs = F[s];
    if (T.sigma == 0) { /* order 1 into the clean end point */
        double c = T.alpha / S.alpha;
        for (size_t i = 0; i < n; i++) out[i] = pred == P_DATA ? Fs[i] : (float)(c * ((double)xs[i] - S.sigma * Fs[i]));
        return DT_OK;
    }
    double h = T.lambda - S.lambda, hh = pred == P_DATA ? -h : h;
    /* psi_k(x) = x^k phi_k(x): psi_1 = e^x - 1, psi_{k+1} = psi_k - x^k / k! */
    double psi[USF_MAX_ORDER + 1], xk = 1, fact = 1;
    psi[1] = expm1(hh);
    for (int k = 1; k < p; k++) {
        xk *= hh;
        fact *= k;
        psi[k + 1] = psi[k] - xk / fact;
    }
    double cx, c[USF_MAX_ORDER]; /* x_t = cx x_s + sum_k c[k] F^(k) */
    if (pred == P_DATA) {
        cx = T.sigma / S.sigma;
        for (int k = 0; k < p; k++) c[k] = T.alpha * ((k % 2 == 0) ? -psi[k + 1] : psi[k + 1]); /* h^{k+1} phi_{k+1}(-h) */
    } else {
        cx = exp(T.la - S.la);
        for (int k = 0; k < p; k++) c[k] = -T.sigma * psi[k + 1];
    }
    /* derivative k = 1..p-1 as weights over (F_j - F_s) */
    double w[USF_MAX_ORDER][USF_MAX_ORDER];
    int idx[USF_MAX_ORDER][USF_MAX_ORDER];
    for (int k = 1; k < p; k++) {
        const usf_deriv *e = &d[k - 1];
        double dl[USF_MAX_ORDER];
        for (int j = 0; j < e->m; j++) {
            idx[k][j] = top + 1 + e->active[j];
            dl[j] = vp_at(u, u->t[idx[k][j]]).lambda - S.lambda;
        }
        deriv_weights(e->m, dl, k, w[k]);
        double r = k == 1 ? relaxation(e, h, hh) : 1;
        for (int j = 0; j < e->m; j++) w[k][j] *= r * c[k];
    }
    for (size_t i = 0; i < n; i++) {
        double v = cx * xs[i] + c[0] * Fs[i];
        for (int k = 1; k < p; k++)
            for (int j = 0; j < d[k - 1].m; j++) v += w[k][j] * ((double)F[idx[k][j]][i] - Fs[i]);
        out[i] = (float)v;
    }
    return DT_OK;
}

static void convert(const usf *u, int k, const float *mo, const float *x, size_t n)
{
    vp p = vp_at(u, u->t[k]);
    float *e = u->eps[k], *d = u->x0[k];
    for (size_t i = 0; i < n; i++) {
        double xi = x[i], m = mo[i], ep, x0;
        if (u->model_pred == DT_PRED_EPSILON) { ep = m; x0 = (xi - p.sigma * m) / p.alpha; }
        else if (u->model_pred == DT_PRED_V) { x0 = p.alpha * xi - p.sigma * m; ep = p.alpha * m + p.sigma * xi; }
        else { x0 = m; ep = (xi - p.alpha * m) / p.sigma; }
        e[i] = (float)ep;
        d[i] = (float)x0;
    }
}

/* f of point k from its eps and (uncorrected) sample, for the dpmsolver_v3 steps. */
static void convert_f(const usf *u, int k, const float *x, size_t n)
{
    vp p = vp_at(u, u->t[k]);
    if (u->f) dt_ems_f(&u->ems, (int)u->row[k], p.alpha, p.sigma, x, u->eps[k], u->f[k], n);
}

static dt_status usf_do_step(dt_scheduler *s, const float *mo, const float *x, float *out, size_t n, dt_err *err)
{
    usf *u = s->impl;
    int i = s->step_index;
    if (i == 0 || u->n != n) DT_TRY(ensure_points(u, n, s->path, err));
    if (u->has_v3 && n % u->ems.D)
        return dt_fail(err, DT_EINVAL, "%s: the DPM-Solver-v3 statistics hold %zu values per grid row, which does not "
                                       "divide the %zu latent values", s->path, u->ems.D, n);
    memcpy(u->x[i], x, n * 4);
    if (i == 0 && u->afs) { /* zero_x0: eps(x_T, T) = x_T */
        memcpy(u->eps[i], x, n * 4);
        vp p = vp_at(u, u->t[0]);
        for (size_t k = 0; k < n; k++) u->x0[i][k] = (float)((x[k] - p.sigma * (double)x[k]) / p.alpha);
    } else {
        convert(u, i, mo, x, n);
    }
    convert_f(u, i, x, n);
    if (i > 0 && u->st[i - 1].corr) { /* pseudo corrector of the previous step, with this output */
        const usf_step *c = &u->st[i - 1];
        DT_TRY(taylor_update(u, i + 1 + c->c_start, i, c->c_order, c->pred, c->cd, i, u->x[i], n, err));
    }
    const usf_step *st = &u->st[i];
    DT_TRY(taylor_update(u, i + 1 + st->start, i + 1, st->order, st->pred, st->d, i, out, n, err));
    s->step_index++;
    return DT_OK;
}

const dt_solver_ops dt_usf_ops = {
    .class_name = "USF", .create = usf_create, .set_timesteps = usf_set_timesteps, .step = usf_do_step, .destroy = usf_destroy,
};
