/* DPMSolverMultistepScheduler of diffusers 0.30.3 (DPM-Solver, arXiv 2206.00927, and
 * DPM-Solver++, arXiv 2211.01095): orders 1-3, midpoint/heun, epsilon/sample/v_prediction,
 * linspace/leading/trailing spacing, final sigma zero or sigma_min, lower_order_final and
 * euler_at_final, lambda_min_clipped, rescale_betas_zero_snr.
 *
 * use_karras_sigmas (Karras sigmas between the training extremes, timesteps rounded from them).
 *
 * Not implemented (fail at load, naming the field): thresholding, use_lu_lambdas, the SDE
 * variants. variance_type "learned"/"learned_range" is accepted: the
 * caller passes only the predicted-noise half of the model's channels (as the PixArt
 * pipeline does before calling step).
 *
 * Each quantity is computed with the f32 operations, in the order, that diffusers' torch code
 * performs: per-step coefficients as f32 scalars (exp/log as torch's SLEEF kernels round them,
 * torch_f32.h), then elementwise a*x - b*y with every product and sum rounded separately
 * (nothing fused: see the Makefile's -std=c11). On the fixtures this gives diffusers' results
 * bit for bit. */
#include "scheduler_impl.h"
#include "runtime/core/json.h"
#include "torch_f32.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { PRED_EPSILON, PRED_SAMPLE, PRED_V };
enum { SPACING_LINSPACE, SPACING_LEADING, SPACING_TRAILING };

typedef struct {
    int order, plus_plus, heun, pred, spacing, steps_offset;
    int lower_order_final, euler_at_final, final_sigma_zero, karras;
    double lambda_min_clipped;
    int num_train;
    float *alphas_cumprod;
    float *hist[3];      /* converted model outputs, hist[order-1] the newest */
    size_t n;            /* elements per hist buffer */
    int lower_order_nums;
} dpm;

/* ---- config ---- */

static dt_status require_false(const cJSON *cfg, const char *path, const char *field, dt_err *err)
{
    int b;
    DT_TRY(dt_json_bool(cfg, path, field, 0, &b, err));
    if (b) return dt_fail(err, DT_EUNSUPPORTED, "%s: field \"%s\" is true; only false is supported", path, field);
    return DT_OK;
}

static dt_status read_solver(dpm *d, const cJSON *cfg, const char *path, dt_err *err)
{
    /* diffusers maps the names of other solvers' variants onto its own (register_to_config) */
    static const char *const algos[] = {"dpmsolver++", "dpmsolver", "deis"};
    static const char *const types[] = {"midpoint", "heun", "logrho", "bh1", "bh2"};
    static const char *const preds[] = {"epsilon", "sample", "v_prediction"};
    static const char *const spacings[] = {"linspace", "leading", "trailing"};
    static const char *const finals[] = {"zero", "sigma_min"};
    int algo, type, fin;
    DT_TRY(dt_json_int(cfg, path, "solver_order", 1, 2, &d->order, err));
    if (d->order < 1 || d->order > 3)
        return dt_fail(err, DT_EUNSUPPORTED, "%s: field \"solver_order\" is %d; supported: 1, 2, 3", path, d->order);
    DT_TRY(dt_cfg_choice(cfg, path, "algorithm_type", "dpmsolver++", algos, 3, &algo, err));
    DT_TRY(dt_cfg_choice(cfg, path, "solver_type", "midpoint", types, 5, &type, err));
    DT_TRY(dt_cfg_choice(cfg, path, "prediction_type", "epsilon", preds, 3, &d->pred, err));
    DT_TRY(dt_cfg_choice(cfg, path, "timestep_spacing", "linspace", spacings, 3, &d->spacing, err));
    DT_TRY(dt_cfg_choice(cfg, path, "final_sigmas_type", "zero", finals, 2, &fin, err));
    d->plus_plus = algo != 1;
    d->heun = type == 1;
    d->final_sigma_zero = fin == 0;
    if (!d->plus_plus && d->final_sigma_zero)
        return dt_fail(err, DT_EINVAL, "%s: field \"final_sigmas_type\" \"zero\" needs algorithm_type dpmsolver++; "
                                       "use \"sigma_min\" with dpmsolver", path);
    DT_TRY(dt_json_bool(cfg, path, "lower_order_final", 1, &d->lower_order_final, err));
    DT_TRY(dt_json_bool(cfg, path, "euler_at_final", 0, &d->euler_at_final, err));
    DT_TRY(dt_json_int(cfg, path, "steps_offset", 1, 0, &d->steps_offset, err));
    DT_TRY(dt_json_num(cfg, path, "lambda_min_clipped", 1, -INFINITY, &d->lambda_min_clipped, err));
    DT_TRY(require_false(cfg, path, "thresholding", err));
    DT_TRY(dt_json_bool(cfg, path, "use_karras_sigmas", 0, &d->karras, err));
    DT_TRY(require_false(cfg, path, "use_lu_lambdas", err));
    return DT_OK;
}

static void dpm_destroy(void *impl)
{
    dpm *d = impl;
    if (!d) return;
    free(d->alphas_cumprod);
    for (int i = 0; i < 3; i++) free(d->hist[i]);
    free(d);
}

static dt_status dpm_create(dt_scheduler *s, const cJSON *cfg, const char *path, dt_err *err)
{
    dpm *d = calloc(1, sizeof *d);
    if (!d) return dt_fail(err, DT_ENOMEM, "%s: out of memory", path);
    s->impl = d;
    dt_beta_config bc;
    float *trained = NULL;
    dt_status st = read_solver(d, cfg, path, err);
    if (st == DT_OK) st = dt_beta_config_read(cfg, path, &bc, &trained, err);
    if (st == DT_OK) {
        d->num_train = bc.num_train_timesteps;
        d->alphas_cumprod = malloc((size_t)d->num_train * sizeof(float));
        if (!d->alphas_cumprod) st = dt_fail(err, DT_ENOMEM, "%s: out of memory", path);
    }
    if (st == DT_OK) st = dt_alphas_cumprod(&bc, path, d->alphas_cumprod, err);
    free(trained);
    s->init_noise_sigma = 1.0;
    return st;
}

/* ---- timesteps ---- */

/* sqrt((1 - a) / a) in f32: the sigma of a training timestep. */
static float train_sigma(const dpm *d, int64_t t)
{
    t = t < 0 ? 0 : t > d->num_train - 1 ? d->num_train - 1 : t; /* np.interp clamps */
    float a = d->alphas_cumprod[t];
    return sqrtf((1.0f - a) / a);
}

/* The training timesteps left after lambda_min_clipped (num_train when it is -inf). */
static int64_t last_timestep(const dpm *d)
{
    int64_t clipped = 0; /* torch.searchsorted(flip(lambda_t), lambda_min_clipped) */
    for (int64_t i = d->num_train - 1; i >= 0; i--, clipped++) {
        float a = d->alphas_cumprod[i];
        float lambda = torch_logf(sqrtf(a)) - torch_logf(sqrtf(1.0f - a));
        if (!(lambda < d->lambda_min_clipped)) break;
    }
    return d->num_train - clipped;
}

static dt_status make_timesteps(const dpm *d, int steps, int64_t *ts, int *count, const char *path, dt_err *err)
{
    int64_t last = last_timestep(d);
    if (d->spacing == SPACING_LINSPACE) {
        double *v = malloc((size_t)(steps + 1) * sizeof *v);
        if (!v) return dt_fail(err, DT_ENOMEM, "%s: out of memory", path);
        dt_np_linspace(0, (double)(last - 1), steps + 1, v);
        for (int i = 0; i < steps; i++) ts[i] = (int64_t)nearbyint(v[steps - i]);
        free(v);
        *count = steps;
    } else if (d->spacing == SPACING_LEADING) {
        int64_t ratio = last / (steps + 1); /* sic: diffusers 0.30.3 divides by steps + 1 here */
        for (int i = 0; i < steps; i++) ts[i] = (int64_t)(steps - i) * ratio + d->steps_offset;
        *count = steps;
    } else {
        double ratio = (double)d->num_train / steps;
        int64_t n = dt_np_arange((double)last, 0, -ratio, NULL);
        if (n > steps + 1) return dt_fail(err, DT_EINVAL, "%s: trailing spacing gives %lld timesteps", path, (long long)n);
        double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
        if (!v) return dt_fail(err, DT_ENOMEM, "%s: out of memory", path);
        dt_np_arange((double)last, 0, -ratio, v);
        for (int64_t i = 0; i < n; i++) ts[i] = (int64_t)nearbyint(v[i]) - 1;
        free(v);
        *count = (int)n;
    }
    if (*count < 1) return dt_fail(err, DT_EINVAL, "%s: %d inference steps give no timesteps", path, steps);
    return DT_OK;
}

/* use_karras_sigmas: Karras sigmas from the training sigmas' extremes, timesteps rounded
 * from their position in log sigma (numpy float64, sigmas cast to f32). */
static dt_status karras_schedule(const dpm *d, int steps, int64_t *ts, double *tsd, float *sig, const char *path, dt_err *err)
{
    float *tsig, *log_sig;
    double *k = malloc((size_t)steps * sizeof *k);
    if (!k) return dt_fail(err, DT_ENOMEM, "%s: out of memory", path);
    dt_status st = dt_train_sigmas_alloc(d->alphas_cumprod, d->num_train, path, &tsig, &log_sig, err);
    if (st == DT_OK) {
        dt_karras_sigmas(tsig[0], tsig[d->num_train - 1], steps, k);
        for (int i = 0; i < steps; i++) {
            tsd[i] = nearbyint(dt_sigma_to_t(k[i], log_sig, d->num_train));
            ts[i] = (int64_t)tsd[i];
            sig[i] = (float)k[i];
        }
        free(tsig);
        free(log_sig);
    }
    free(k);
    return st;
}

static dt_status dpm_set_timesteps(dt_scheduler *s, int steps, dt_err *err)
{
    dpm *d = s->impl;
    if (steps > d->num_train)
        return dt_fail(err, DT_EINVAL, "%s: %d inference steps exceed num_train_timesteps (%d)", s->path, steps, d->num_train);
    int64_t *ts = malloc((size_t)(steps + 2) * sizeof *ts);
    double *tsd = malloc((size_t)(steps + 2) * sizeof *tsd);
    float *sig = malloc((size_t)(steps + 3) * sizeof *sig);
    int count = 0;
    dt_status st = ts && tsd && sig ? DT_OK : dt_fail(err, DT_ENOMEM, "%s: out of memory", s->path);
    if (st == DT_OK) st = make_timesteps(d, steps, ts, &count, s->path, err);
    if (st != DT_OK) {
        free(ts);
        free(tsd);
        free(sig);
        return st;
    }
    for (int i = 0; i < count; i++) {
        tsd[i] = (double)ts[i];
        sig[i] = train_sigma(d, ts[i]);
    }
    if (d->karras) {
        dt_status ks = karras_schedule(d, steps, ts, tsd, sig, s->path, err);
        if (ks != DT_OK) { free(ts); free(tsd); free(sig); return ks; }
        count = steps;
    }
    sig[count] = d->final_sigma_zero ? 0.0f : train_sigma(d, 0);
    /* diffusers starts at the second occurrence of timesteps[0] when it repeats (index_for_timestep) */
    int begin = 0;
    for (int i = 1; i < count; i++)
        if (ts[i] == ts[0]) { begin = i; break; }
    free(ts);
    free(s->timesteps);
    free(s->sigmas);
    s->timesteps = tsd;
    s->sigmas = sig;
    s->num_steps = count;
    s->step_index = begin;
    d->lower_order_nums = 0;
    return DT_OK;
}

/* ---- step ---- */

#define PAR_N (1 << 16) /* below this, threads cost more than they save */

/* x_t = c_x*x - c0*D0 (+ c1*D1 [+ c2*D2]), D1/D2 from the history; the coefficient signs
 * follow diffusers' expressions so every rounding matches. */
typedef struct {
    float cx, c0, c1, c2;
    float inv_r0, inv_r1, k1, inv_r01; /* 1/r0, 1/r1, r0/(r0+r1), 1/(r0+r1) */
    int order;
    int d1_sign; /* x_t = (cx*x - c0*D0) + d1_sign * c1*D1 */
} step_coef;

static step_coef coefficients(const dt_scheduler *s, const dpm *d, int order)
{
    int i = s->step_index;
    dt_vp_point t = dt_vp_point_at(s, i + 1), s0 = dt_vp_point_at(s, i);
    float h = t.lambda - s0.lambda;
    step_coef c = {.order = order};
    /* dpmsolver++: cx = sigma_t/sigma_s0, base = alpha_t*(exp(-h)-1); dpmsolver: the mirror */
    float em = d->plus_plus ? torch_expf(-h) - 1.0f : torch_expf(h) - 1.0f;
    float scale = d->plus_plus ? t.alpha : t.sigma;
    c.cx = d->plus_plus ? t.sigma / s0.sigma : t.alpha / s0.alpha;
    c.c0 = scale * em;
    if (order == 1) return c;
    dt_vp_point s1 = dt_vp_point_at(s, i - 1);
    float h0 = s0.lambda - s1.lambda, r0 = h0 / h;
    c.inv_r0 = 1.0f / r0;
    if (order == 2) {
        if (!d->heun) {
            c.c1 = 0.5f * c.c0;
            c.d1_sign = -1;
        } else if (d->plus_plus) {
            c.c1 = t.alpha * (em / h + 1.0f);
            c.d1_sign = 1;
        } else {
            c.c1 = t.sigma * (em / h - 1.0f);
            c.d1_sign = -1;
        }
        return c;
    }
    dt_vp_point s2 = dt_vp_point_at(s, i - 2);
    float h1 = s1.lambda - s2.lambda, r1 = h1 / h;
    c.inv_r1 = 1.0f / r1;
    c.k1 = r0 / (r0 + r1);
    c.inv_r01 = 1.0f / (r0 + r1);
    if (d->plus_plus) {
        c.c1 = t.alpha * (em / h + 1.0f);
        c.d1_sign = 1;
        c.c2 = t.alpha * ((em + h) / (h * h) - 0.5f);
    } else {
        c.c1 = t.sigma * (em / h - 1.0f);
        c.d1_sign = -1;
        c.c2 = t.sigma * ((em - h) / (h * h) - 0.5f);
    }
    return c;
}

static void update(const step_coef *c, const float *x, const float *m0, const float *m1, const float *m2,
                   float *out, size_t n)
{
    const step_coef k = *c;
    if (k.order == 1) {
        #pragma omp parallel for simd schedule(static) if (n >= PAR_N)
        for (size_t i = 0; i < n; i++) out[i] = k.cx * x[i] - k.c0 * m0[i];
    } else if (k.order == 2) {
        #pragma omp parallel for simd schedule(static) if (n >= PAR_N)
        for (size_t i = 0; i < n; i++) {
            float d1 = k.inv_r0 * (m0[i] - m1[i]);
            float base = k.cx * x[i] - k.c0 * m0[i];
            out[i] = k.d1_sign > 0 ? base + k.c1 * d1 : base - k.c1 * d1;
        }
    } else {
        #pragma omp parallel for simd schedule(static) if (n >= PAR_N)
        for (size_t i = 0; i < n; i++) {
            float d10 = k.inv_r0 * (m0[i] - m1[i]);
            float d11 = k.inv_r1 * (m1[i] - m2[i]);
            float d1 = d10 + k.k1 * (d10 - d11);
            float d2 = k.inv_r01 * (d10 - d11);
            float base = k.cx * x[i] - k.c0 * m0[i];
            base = k.d1_sign > 0 ? base + k.c1 * d1 : base - k.c1 * d1;
            out[i] = base - k.c2 * d2;
        }
    }
}

static dt_status ensure_history(dpm *d, size_t n, const char *path, dt_err *err)
{
    if (d->n == n && d->hist[0]) return DT_OK;
    if (d->lower_order_nums > 0)
        return dt_fail(err, DT_EINVAL, "%s: step got %zu elements, earlier steps %zu", path, n, d->n);
    for (int i = 0; i < 3; i++) {
        free(d->hist[i]);
        d->hist[i] = NULL;
    }
    d->n = 0;
    for (int i = 0; i < d->order; i++)
        if (!(d->hist[i] = malloc((n ? n : 1) * sizeof(float))))
            return dt_fail(err, DT_ENOMEM, "%s: out of memory for the solver history (%zu values)", path, n);
    d->n = n;
    return DT_OK;
}

static dt_status dpm_step(dt_scheduler *s, const float *mo, const float *x, float *out, size_t n, dt_err *err)
{
    dpm *d = s->impl;
    DT_TRY(ensure_history(d, n, s->path, err));
    int i = s->step_index, last = s->num_steps;
    int lower_final = i == last - 1 &&
                      (d->euler_at_final || (d->lower_order_final && last < 15) || d->final_sigma_zero);
    int lower_second = i == last - 2 && d->lower_order_final && last < 15;

    /* the newest output goes last; the oldest buffer is recycled */
    float *slot = d->hist[0];
    for (int k = 0; k < d->order - 1; k++) d->hist[k] = d->hist[k + 1];
    d->hist[d->order - 1] = slot;
    dt_vp_convert(d->plus_plus, d->pred, dt_vp_point_at(s, i), mo, x, slot, n);

    int order = 3;
    if (d->order == 1 || d->lower_order_nums < 1 || lower_final) order = 1;
    else if (d->order == 2 || d->lower_order_nums < 2 || lower_second) order = 2;
    step_coef c = coefficients(s, d, order);
    const float *m0 = d->hist[d->order - 1];
    const float *m1 = d->order >= 2 ? d->hist[d->order - 2] : NULL;
    const float *m2 = d->order >= 3 ? d->hist[d->order - 3] : NULL;
    update(&c, x, m0, m1, m2, out, n);
    if (d->lower_order_nums < d->order) d->lower_order_nums++;
    s->step_index++;
    return DT_OK;
}

const dt_solver_ops dt_dpmsolver_multistep_ops = {
    .class_name = "DPMSolverMultistepScheduler",
    .karras = 1,
    .create = dpm_create,
    .set_timesteps = dpm_set_timesteps,
    .step = dpm_step,
    .scale_model_input = NULL,
    .destroy = dpm_destroy,
};
