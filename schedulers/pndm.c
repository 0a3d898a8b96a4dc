/* PNDMScheduler of diffusers (pseudo numerical methods, Liu et al. 2022): Stable Diffusion 1.x's
 * own scheduler. Integer training timesteps on alphas_cumprod (no sigmas; dt_scheduler_sigmas
 * gives NULL).
 *
 * skip_prk_steps true (SD 1.5's folders): linear multistep (PLMS) only; steps + 1 model
 * evaluations, the second one re-taking the first step with the mean of two noise estimates.
 * skip_prk_steps false (the class default, so `--solver pndm` on another folder's config): 12
 * Runge-Kutta evaluations over the last 4 spacings first (steps >= 4), then PLMS: steps + 9.
 * prediction_type epsilon or v_prediction; set_alpha_to_one, steps_offset, timestep_spacing as
 * diffusers reads them. The step is torch's f32 arithmetic in diffusers' order. */
#include "scheduler_impl.h"
#include "runtime/core/json.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int pred, spacing, steps_offset, skip_prk, set_alpha_to_one;
    int num_train, user_steps, n_prk;
    float *ac;
    float *ets[4];   /* the last noise estimates, ets[0] newest */
    int n_ets;
    float *cur_mo;   /* PRK: the running 1/6, 1/3, 1/3 mixture */
    float *cur_x;    /* the sample a PRK group or the first PLMS pair starts from */
    int has_cur_x;
    float *tmp;
    size_t cap_n;
} pndm;

static void pndm_free_bufs(pndm *d)
{
    for (int i = 0; i < 4; i++) free(d->ets[i]), d->ets[i] = NULL;
    free(d->cur_mo), free(d->cur_x), free(d->tmp);
    d->cur_mo = d->cur_x = d->tmp = NULL;
    d->cap_n = 0;
}

static void pndm_destroy(void *impl)
{
    pndm *d = impl;
    if (!d) return;
    pndm_free_bufs(d);
    free(d->ac);
    free(d);
}

static dt_status pndm_create(dt_scheduler *s, const cJSON *cfg, const char *path, dt_err *err)
{
    pndm *d = calloc(1, sizeof *d);
    if (!d) return dt_fail(err, DT_ENOMEM, "%s: out of memory", path);
    s->impl = d;
    static const char *const preds[] = {"epsilon", "v_prediction"};
    int p;
    DT_TRY(dt_cfg_choice(cfg, path, "prediction_type", "epsilon", preds, 2, &p, err));
    d->pred = p ? DT_PRED_V : DT_PRED_EPSILON;
    DT_TRY(dt_cfg_spacing(cfg, path, "leading", &d->spacing, err));
    DT_TRY(dt_json_int(cfg, path, "steps_offset", 1, 0, &d->steps_offset, err));
    DT_TRY(dt_json_bool(cfg, path, "skip_prk_steps", 0, &d->skip_prk, err));
    DT_TRY(dt_json_bool(cfg, path, "set_alpha_to_one", 0, &d->set_alpha_to_one, err));
    dt_beta_config bc;
    float *trained = NULL;
    DT_TRY(dt_beta_config_read_dflt(cfg, path, &bc, &trained, 0.0001, 0.02, "linear", err));
    bc.rescale_betas_zero_snr = 0; /* not a PNDMScheduler option: from_config drops it */
    d->num_train = bc.num_train_timesteps;
    dt_status st = dt_alphas_cumprod_alloc(&bc, path, &d->ac, err);
    free(trained);
    s->init_noise_sigma = 1.0;
    return st;
}

/* diffusers' _timesteps (ascending) into t; returns the count or -1. */
static int base_timesteps(const pndm *d, int steps, int64_t *t)
{
    int T = d->num_train;
    if (d->spacing == DT_SPACING_LINSPACE) {
        double *v = malloc((size_t)steps * sizeof *v);
        if (!v) return -1;
        dt_np_linspace(0, T - 1, steps, v);
        for (int i = 0; i < steps; i++) t[i] = (int64_t)nearbyint(v[i]);
        free(v);
        return steps;
    }
    if (d->spacing == DT_SPACING_LEADING) {
        int ratio = T / steps;
        for (int i = 0; i < steps; i++) t[i] = (int64_t)i * ratio + d->steps_offset;
        return steps;
    }
    double ratio = (double)T / steps;
    int64_t n = dt_np_arange(T, 0, -ratio, NULL);
    if (n < 1 || n > steps + 1) return -1;
    double *v = malloc((size_t)n * sizeof *v);
    if (!v) return -1;
    dt_np_arange(T, 0, -ratio, v);
    for (int64_t i = 0; i < n; i++) t[n - 1 - i] = (int64_t)nearbyint(v[i]) - 1;
    free(v);
    return (int)n;
}

static dt_status pndm_set_timesteps(dt_scheduler *s, int steps, dt_err *err)
{
    pndm *d = s->impl;
    if (steps > d->num_train)
        return dt_fail(err, DT_EINVAL, "%s: %d inference steps exceed num_train_timesteps (%d)", s->path, steps, d->num_train);
    int64_t *b = malloc((size_t)(steps + 2) * sizeof *b);
    double *ts = malloc((size_t)(steps + 16) * sizeof *ts);
    int m = b ? base_timesteps(d, steps, b) : -1;
    if (!b || !ts || m < 1) {
        free(b), free(ts);
        return dt_fail(err, m < 1 && b ? DT_EINVAL : DT_ENOMEM, "%s: %d inference steps give no timesteps", s->path, steps);
    }
    int k = 0;
    d->n_prk = 0;
    if (d->skip_prk) { /* concat(_t[:-1], _t[-2:-1], _t[-1:])[::-1] */
        ts[k++] = (double)b[m - 1];
        if (m >= 2) ts[k++] = (double)b[m - 2];
        for (int i = m - 2; i >= 0; i--) ts[k++] = (double)b[i];
    } else {
        if (m < 4) {
            free(b), free(ts);
            return dt_fail(err, DT_EINVAL, "%s: PNDMScheduler with skip_prk_steps false needs at least 4 steps, got %d",
                           s->path, steps);
        }
        int64_t h = d->num_train / steps / 2, a[8], r[14];
        for (int i = 0; i < 4; i++) a[2 * i] = b[m - 4 + i], a[2 * i + 1] = b[m - 4 + i] + h;
        for (int i = 0; i < 7; i++) r[2 * i] = r[2 * i + 1] = a[i];
        for (int i = 12; i >= 1; i--) ts[k++] = (double)r[i]; /* r[1:-1][::-1] */
        d->n_prk = 12;
        for (int i = m - 4; i >= 0; i--) ts[k++] = (double)b[i]; /* _t[:-3][::-1] */
    }
    free(b);
    for (int i = 0; i < k; i++)
        if (ts[i] < 0 || ts[i] > d->num_train - 1) {
            double t = ts[i];
            free(ts);
            return dt_fail(err, DT_EINVAL, "%s: timestep %g (steps_offset %d) is outside [0, %d]", s->path, t,
                           d->steps_offset, d->num_train - 1);
        }
    d->user_steps = steps;
    d->n_ets = 0;
    d->has_cur_x = 0;
    pndm_free_bufs(d); /* history and its size start again */
    free(s->timesteps);
    free(s->sigmas);
    s->timesteps = ts;
    s->sigmas = NULL;
    s->num_steps = k;
    s->step_index = 0;
    return DT_OK;
}

static dt_status pndm_bufs(pndm *d, size_t n, const char *path, dt_err *err)
{
    if (d->cap_n == n) return DT_OK;
    if (d->cap_n) return dt_fail(err, DT_EINVAL, "%s: step with %zu values after %zu", path, n, d->cap_n);
    for (int i = 0; i < 4; i++)
        if (!(d->ets[i] = malloc(n * sizeof(float)))) return dt_fail(err, DT_ENOMEM, "%s: out of memory", path);
    d->cur_mo = malloc(n * sizeof(float));
    d->cur_x = malloc(n * sizeof(float));
    d->tmp = malloc(n * sizeof(float));
    if (!d->cur_mo || !d->cur_x || !d->tmp) return dt_fail(err, DT_ENOMEM, "%s: out of memory", path);
    d->cap_n = n;
    return DT_OK;
}

static void push_ets(pndm *d, const float *mo, size_t n)
{
    float *oldest = d->ets[3];
    memmove(d->ets + 1, d->ets, 3 * sizeof *d->ets);
    d->ets[0] = oldest;
    memcpy(oldest, mo, n * sizeof(float));
    if (d->n_ets < 4) d->n_ets++;
}

/* _get_prev_sample: formula (9) of the paper, f32 in diffusers' order. */
static dt_status prev_sample(const dt_scheduler *s, int64_t t, int64_t prev, const float *x, const float *mo, float *out,
                             size_t n, dt_err *err)
{
    const pndm *d = s->impl;
    if (t < 0 || t >= d->num_train || prev >= d->num_train)
        return dt_fail(err, DT_EINVAL, "%s: timestep %lld outside [0, %d]", s->path, (long long)t, d->num_train - 1);
    float at = d->ac[t], ap = prev >= 0 ? d->ac[prev] : d->set_alpha_to_one ? 1.0f : d->ac[0];
    float bt = 1.0f - at, bp = 1.0f - ap;
    float sat = sqrtf(at), sbt = sqrtf(bt);
    float coeff = sqrtf(ap / at), den = at * sqrtf(bp) + sqrtf(at * bt * ap), diff = ap - at;
    for (size_t j = 0; j < n; j++) {
        float e = d->pred == DT_PRED_V ? sat * mo[j] + sbt * x[j] : mo[j];
        out[j] = coeff * x[j] - diff * e / den;
    }
    return DT_OK;
}

static dt_status step_prk(dt_scheduler *s, const float *mo, const float *x, float *out, size_t n, dt_err *err)
{
    pndm *d = s->impl;
    int c = s->step_index;
    int64_t targ = (int64_t)s->timesteps[c];
    int64_t prev = targ - (c % 2 ? 0 : d->num_train / d->user_steps / 2);
    int64_t t = (int64_t)s->timesteps[c / 4 * 4];
    const float *e = mo;
    if (c % 4 == 0) {
        for (size_t j = 0; j < n; j++) d->cur_mo[j] = (float)(1.0 / 6) * mo[j];
        push_ets(d, mo, n);
        memcpy(d->cur_x, x, n * sizeof(float));
        d->has_cur_x = 1;
    } else if (c % 4 != 3) {
        for (size_t j = 0; j < n; j++) d->cur_mo[j] += (float)(1.0 / 3) * mo[j];
    } else {
        for (size_t j = 0; j < n; j++) d->tmp[j] = d->cur_mo[j] + (float)(1.0 / 6) * mo[j];
        e = d->tmp;
    }
    return prev_sample(s, t, prev, d->cur_x, e, out, n, err);
}

static dt_status step_plms(dt_scheduler *s, const float *mo, const float *x, float *out, size_t n, dt_err *err)
{
    pndm *d = s->impl;
    int c = s->step_index, ratio = d->num_train / d->user_steps;
    int64_t t = (int64_t)s->timesteps[c], prev = t - ratio;
    if (c != 1) push_ets(d, mo, n);
    else prev = t, t = t + ratio;
    float *e = d->tmp, **E = d->ets;
    const float *from = x;
    if (d->n_ets == 1 && c == 0) {
        memcpy(d->cur_x, x, n * sizeof(float));
        d->has_cur_x = 1;
        memcpy(e, mo, n * sizeof(float));
    } else if (d->n_ets == 1 && c == 1) {
        for (size_t j = 0; j < n; j++) e[j] = (mo[j] + E[0][j]) / 2.0f;
        from = d->cur_x;
        d->has_cur_x = 0;
    } else if (d->n_ets == 2) {
        for (size_t j = 0; j < n; j++) e[j] = (3.0f * E[0][j] - E[1][j]) / 2.0f;
    } else if (d->n_ets == 3) {
        for (size_t j = 0; j < n; j++) e[j] = (23.0f * E[0][j] - 16.0f * E[1][j] + 5.0f * E[2][j]) / 12.0f;
    } else {
        const float k = (float)(1.0 / 24);
        for (size_t j = 0; j < n; j++) e[j] = k * (55.0f * E[0][j] - 59.0f * E[1][j] + 37.0f * E[2][j] - 9.0f * E[3][j]);
    }
    return prev_sample(s, t, prev, from, e, out, n, err);
}

static dt_status pndm_step(dt_scheduler *s, const float *mo, const float *x, float *out, size_t n, dt_err *err)
{
    pndm *d = s->impl;
    DT_TRY(pndm_bufs(d, n, s->path, err));
    int prk = s->step_index < d->n_prk;
    DT_TRY(prk ? step_prk(s, mo, x, out, n, err) : step_plms(s, mo, x, out, n, err));
    s->step_index++;
    return DT_OK;
}

const dt_solver_ops dt_pndm_ops = {
    .class_name = "PNDMScheduler", .create = pndm_create, .set_timesteps = pndm_set_timesteps, .step = pndm_step,
    .destroy = pndm_destroy,
};
