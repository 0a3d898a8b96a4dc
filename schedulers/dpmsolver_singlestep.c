/* DPMSolverSinglestepScheduler of diffusers 0.30.3: single-step DPM-Solver / DPM-Solver++ of
 * orders 1-3 (midpoint/heun), where a k-th order step spans k timesteps and reuses the
 * outputs at its intermediate points (order list [1, 2, 3, 1, 2, 3, ...], lowered at the end
 * when lower_order_final, when the steps do not divide by the order, or when the final sigma
 * is zero, as diffusers forces it). Karras sigmas, lambda_min_clipped, final sigma zero or
 * sigma_min, epsilon/sample/v_prediction.
 *
 * f32 coefficients as torch computes them (torch_f32.h exp/log), f32 elementwise updates in
 * diffusers' order. Not implemented (fail at load): thresholding, sde-dpmsolver++. */
#include "scheduler_impl.h"
#include "runtime/core/json.h"
#include "torch_f32.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int order, pred, plus_plus, heun, karras, final_sigma_min, lower_order_final;
    double lambda_min_clipped;
    int num_train;
    float *ac, *tsig, *log_sig;
    float *hist[3], *saved;
    int *orders, have; /* have: outputs stored since set_timesteps (capped at order) */
    size_t n;
} single;

static void ss_destroy(void *impl)
{
    single *d = impl;
    if (!d) return;
    free(d->ac); free(d->tsig); free(d->log_sig);
    for (int i = 0; i < 3; i++) free(d->hist[i]);
    free(d->saved);
    free(d->orders);
    free(d);
}

static dt_status ss_read(single *d, const cJSON *cfg, const char *path, dt_err *err)
{
    static const char *const algos[] = {"dpmsolver++", "dpmsolver", "deis"};
    static const char *const types[] = {"midpoint", "heun", "logrho", "bh1", "bh2"};
    static const char *const finals[] = {"zero", "sigma_min"};
    int algo, type;
    DT_TRY(dt_json_int(cfg, path, "solver_order", 1, 2, &d->order, err));
    if (d->order < 1 || d->order > 3)
        return dt_fail(err, DT_EUNSUPPORTED, "%s: field \"solver_order\" is %d; supported: 1, 2, 3", path, d->order);
    DT_TRY(dt_cfg_pred(cfg, path, &d->pred, err));
    DT_TRY(dt_cfg_choice(cfg, path, "algorithm_type", "dpmsolver++", algos, 3, &algo, err));
    DT_TRY(dt_cfg_choice(cfg, path, "solver_type", "midpoint", types, 5, &type, err));
    DT_TRY(dt_cfg_choice(cfg, path, "final_sigmas_type", "zero", finals, 2, &d->final_sigma_min, err));
    DT_TRY(dt_json_bool(cfg, path, "lower_order_final", 0, &d->lower_order_final, err));
    DT_TRY(dt_json_bool(cfg, path, "use_karras_sigmas", 0, &d->karras, err));
    DT_TRY(dt_json_num(cfg, path, "lambda_min_clipped", 1, -INFINITY, &d->lambda_min_clipped, err));
    DT_TRY(dt_cfg_require_false(cfg, path, "thresholding", err));
    d->plus_plus = algo != 1;
    d->heun = type == 1;
    if (!d->plus_plus && !d->final_sigma_min)
        return dt_fail(err, DT_EINVAL, "%s: field \"final_sigmas_type\" \"zero\" needs algorithm_type dpmsolver++; "
                                       "use \"sigma_min\" with dpmsolver", path);
    return DT_OK;
}

static dt_status ss_create(dt_scheduler *s, const cJSON *cfg, const char *path, dt_err *err)
{
    single *d = calloc(1, sizeof *d);
    if (!d) return dt_fail(err, DT_ENOMEM, "%s: out of memory", path);
    s->impl = d;
    DT_TRY(ss_read(d, cfg, path, err));
    dt_beta_config bc;
    float *trained = NULL;
    DT_TRY(dt_beta_config_read(cfg, path, &bc, &trained, err));
    bc.rescale_betas_zero_snr = 0; /* not an option of this class */
    d->num_train = bc.num_train_timesteps;
    dt_status st = dt_alphas_cumprod_alloc(&bc, path, &d->ac, err);
    free(trained);
    if (st == DT_OK) st = dt_train_sigmas_alloc(d->ac, d->num_train, path, &d->tsig, &d->log_sig, err);
    s->init_noise_sigma = 1.0;
    return st;
}

/* get_order_list */
static void order_list(int steps, int order, int lower_final, int *o)
{
    int n = 0;
    if (order == 1) { for (int i = 0; i < steps; i++) o[i] = 1; return; }
    if (!lower_final) {
        for (int i = 0; i < steps; i++) o[i] = i % order + 1;
        return;
    }
    if (order == 3) {
        int full = steps % 3 == 0 ? steps / 3 - 1 : steps / 3;
        for (int i = 0; i < full; i++) { o[n++] = 1; o[n++] = 2; o[n++] = 3; }
        if (steps % 3 == 0) { o[n++] = 1; o[n++] = 2; o[n++] = 1; }
        else if (steps % 3 == 1) o[n++] = 1;
        else { o[n++] = 1; o[n++] = 2; }
    } else {
        int full = steps % 2 == 0 ? steps / 2 - 1 : steps / 2;
        for (int i = 0; i < full; i++) { o[n++] = 1; o[n++] = 2; }
        if (steps % 2 == 0) { o[n++] = 1; o[n++] = 1; }
        else o[n++] = 1;
    }
}

static int64_t clipped_count(const single *d)
{
    int64_t clipped = 0;
    for (int64_t i = d->num_train - 1; i >= 0; i--, clipped++) {
        float a = d->ac[i];
        float lambda = torch_logf(sqrtf(a)) - torch_logf(sqrtf(1.0f - a));
        if (!(lambda < d->lambda_min_clipped)) break;
    }
    return clipped;
}

static dt_status ss_set_timesteps(dt_scheduler *s, int steps, dt_err *err)
{
    single *d = s->impl;
    int64_t *it = malloc((size_t)(steps + 2) * sizeof *it);
    double *ts = malloc((size_t)(steps + 2) * sizeof *ts), *sg = malloc((size_t)(steps + 2) * sizeof *sg);
    float *sig = malloc((size_t)(steps + 3) * sizeof *sig);
    int *ol = malloc((size_t)(steps + 3) * sizeof *ol);
    if (!it || !ts || !sg || !sig || !ol) {
        free(it); free(ts); free(sg); free(sig); free(ol);
        return dt_fail(err, DT_ENOMEM, "%s: out of memory", s->path);
    }
    if (d->karras) {
        dt_karras_sigmas(d->tsig[0], d->tsig[d->num_train - 1], steps, sg);
        for (int i = 0; i < steps; i++) {
            ts[i] = nearbyint(dt_sigma_to_t(sg[i], d->log_sig, d->num_train));
            sig[i] = (float)sg[i];
        }
    } else {
        dt_int_timesteps_multistep(DT_SPACING_LINSPACE, d->num_train, d->num_train - clipped_count(d), steps, 0, it);
        for (int i = 0; i < steps; i++) {
            ts[i] = (double)it[i];
            sig[i] = d->tsig[it[i] < 0 ? 0 : it[i]];
        }
    }
    sig[steps] = d->final_sigma_min ? d->tsig[0] : 0.0f;
    /* diffusers switches lower_order_final on for uneven step counts and for a zero final sigma */
    if (steps % d->order != 0 || !d->final_sigma_min) d->lower_order_final = 1;
    order_list(steps, d->order, d->lower_order_final, ol);
    free(it);
    free(sg);
    free(d->orders);
    d->orders = ol;
    d->have = 0;
    dt_sched_install(s, ts, sig, steps);
    return DT_OK;
}

/* order 1..3 update from the saved sample at index i+1-order to i+1 (diffusers' formulas). */
static void update(const dt_scheduler *s, const single *d, int order, float *out, size_t n)
{
    int i = s->step_index;
    dt_vp_point t = dt_vp_point_at(s, i + 1), sb = dt_vp_point_at(s, i + 1 - order);
    const float *x = d->saved, *m0 = d->hist[2], *m1 = d->hist[1], *m2 = d->hist[0];
    float cx = d->plus_plus ? t.sigma / sb.sigma : t.alpha / sb.alpha;
    float sc = d->plus_plus ? t.alpha : t.sigma;
    if (order == 1) {
        float h = t.lambda - sb.lambda;
        float c0 = sc * (d->plus_plus ? torch_expf(-h) - 1.0f : torch_expf(h) - 1.0f);
        for (size_t j = 0; j < n; j++) out[j] = cx * x[j] - c0 * m0[j];
        return;
    }
    dt_vp_point s0 = dt_vp_point_at(s, i);
    float h = t.lambda - sb.lambda, em = d->plus_plus ? torch_expf(-h) - 1.0f : torch_expf(h) - 1.0f;
    float c0 = sc * em;
    if (order == 2) {
        float r0 = (s0.lambda - sb.lambda) / h, ir0 = 1.0f / r0;
        float c1 = !d->heun ? 0.5f * (sc * em) : d->plus_plus ? sc * (em / h + 1.0f) : sc * (em / h - 1.0f);
        int plus = d->heun && d->plus_plus;
        for (size_t j = 0; j < n; j++) {
            float D1 = ir0 * (m0[j] - m1[j]);
            float b = cx * x[j] - c0 * m1[j];
            out[j] = plus ? b + c1 * D1 : b - c1 * D1;
        }
        return;
    }
    dt_vp_point s1 = dt_vp_point_at(s, i - 1);
    float r0 = (s0.lambda - sb.lambda) / h, r1 = (s1.lambda - sb.lambda) / h;
    float ir0 = 1.0f / r0, ir1 = 1.0f / r1, dr = r0 - r1;
    float c1 = d->plus_plus ? sc * (em / h + 1.0f) : sc * (em / h - 1.0f);
    float c2 = d->plus_plus ? sc * ((em + h) / (h * h) - 0.5f) : sc * ((em - h) / (h * h) - 0.5f);
    for (size_t j = 0; j < n; j++) {
        float D10 = ir1 * (m1[j] - m2[j]), D11 = ir0 * (m0[j] - m2[j]);
        float b = cx * x[j] - c0 * m2[j];
        if (!d->heun) {
            out[j] = d->plus_plus ? b + c1 * D11 : b - c1 * D11;
        } else {
            float D1 = (r0 * D10 - r1 * D11) / dr, D2 = 2.0f * (D11 - D10) / dr;
            b = d->plus_plus ? b + c1 * D1 : b - c1 * D1;
            out[j] = b - c2 * D2;
        }
    }
}

static dt_status ensure(single *d, size_t n, const char *path, dt_err *err)
{
    if (d->n == n && d->saved) return DT_OK;
    if (d->have > 0) return dt_fail(err, DT_EINVAL, "%s: step got %zu elements, earlier steps %zu", path, n, d->n);
    for (int i = 0; i < 3; i++) { free(d->hist[i]); d->hist[i] = NULL; }
    free(d->saved);
    d->saved = NULL;
    d->n = 0;
    size_t m = n ? n : 1;
    for (int i = 0; i < 3; i++)
        if (!(d->hist[i] = malloc(m * sizeof(float)))) return dt_fail(err, DT_ENOMEM, "%s: out of memory", path);
    if (!(d->saved = malloc(m * sizeof(float)))) return dt_fail(err, DT_ENOMEM, "%s: out of memory", path);
    d->n = n;
    return DT_OK;
}

static dt_status ss_step(dt_scheduler *s, const float *mo, const float *x, float *out, size_t n, dt_err *err)
{
    single *d = s->impl;
    DT_TRY(ensure(d, n, s->path, err));
    int i = s->step_index;
    float *slot = d->hist[0]; /* hist[2] newest; keeps the last three like diffusers' list */
    d->hist[0] = d->hist[1];
    d->hist[1] = d->hist[2];
    d->hist[2] = slot;
    dt_vp_convert(d->plus_plus, d->pred, dt_vp_point_at(s, i), mo, x, slot, n);
    if (d->have < 3) d->have++;
    int order = d->orders[i];
    while (order > d->have) order--; /* model_outputs[-order] is None */
    if (order == 1) memcpy(d->saved, x, n * sizeof(float));
    update(s, d, order, out, n);
    s->step_index++;
    return DT_OK;
}

const dt_solver_ops dt_dpmsolver_singlestep_ops = {
    .class_name = "DPMSolverSinglestepScheduler", .karras = 1, .create = ss_create, .set_timesteps = ss_set_timesteps,
    .step = ss_step, .destroy = ss_destroy,
};
