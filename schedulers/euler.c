/* The k-diffusion family of diffusers 0.30.3 in sigma space: EulerDiscreteScheduler,
 * EulerAncestralDiscreteScheduler and HeunDiscreteScheduler (order 2: its timesteps list the
 * inner timesteps twice, so the caller just iterates them; the step alternates predictor and
 * corrector). The sample lives at scale sigma; scale_model_input divides by sqrt(sigma^2+1),
 * init_noise_sigma is the largest sigma (or sqrt(max^2+1) with leading spacing).
 *
 * Set-up (timesteps, sigmas, Karras sigmas) is numpy float64 rounded to f32 where diffusers
 * casts; the step is torch's f32 operations in diffusers' order. Not implemented (fail at
 * load naming the field): interpolation_type log_linear, Heun's beta_schedule "exp",
 * EulerAncestral's prediction_type "sample" (diffusers raises too). Euler's s_churn is 0. */
#include "scheduler_impl.h"
#include "runtime/core/json.h"
#include "torch_f32.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { K_EULER, K_ANCESTRAL, K_HEUN };

typedef struct {
    int kind, pred, spacing, steps_offset, karras, final_sigma_min, clip, continuous;
    double clip_range, sigma_min, sigma_max; /* NAN: from the schedule */
    int num_train;
    float *ac, *tsig, *log_sig;
    /* Heun's state between its two halves */
    float *prev_deriv, *saved, *noise;
    size_t cap_d, cap_s, cap_n;
    int second;
    float dt;
} ksched;

static void k_destroy(void *impl)
{
    ksched *k = impl;
    if (!k) return;
    free(k->ac); free(k->tsig); free(k->log_sig);
    free(k->prev_deriv); free(k->saved); free(k->noise);
    free(k);
}

static dt_status read_opt_num(const cJSON *cfg, const char *path, const char *field, double *out, dt_err *err)
{
    *out = NAN;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, field);
    if (!v || cJSON_IsNull(v)) return DT_OK;
    return dt_json_num(cfg, path, field, 0, 0, out, err);
}

static dt_status read_k(ksched *k, const cJSON *cfg, const char *path, dt_err *err)
{
    DT_TRY(dt_cfg_pred(cfg, path, &k->pred, err));
    DT_TRY(dt_cfg_spacing(cfg, path, "linspace", &k->spacing, err));
    DT_TRY(dt_json_int(cfg, path, "steps_offset", 1, 0, &k->steps_offset, err));
    k->sigma_min = k->sigma_max = NAN;
    k->clip_range = 1.0;
    if (k->kind == K_ANCESTRAL && k->pred == DT_PRED_SAMPLE)
        return dt_fail(err, DT_EUNSUPPORTED, "%s: field \"prediction_type\" \"sample\" is not implemented by "
                                             "EulerAncestralDiscreteScheduler", path);
    if (k->kind != K_ANCESTRAL) DT_TRY(dt_json_bool(cfg, path, "use_karras_sigmas", 0, &k->karras, err));
    if (k->kind == K_EULER) {
        static const char *const interp[] = {"linear"}, *const finals[] = {"zero", "sigma_min"}, *const tt[] = {"discrete", "continuous"};
        int dummy;
        DT_TRY(dt_cfg_choice(cfg, path, "interpolation_type", "linear", interp, 1, &dummy, err));
        DT_TRY(dt_cfg_choice(cfg, path, "final_sigmas_type", "zero", finals, 2, &k->final_sigma_min, err));
        DT_TRY(dt_cfg_choice(cfg, path, "timestep_type", "discrete", tt, 2, &k->continuous, err));
        k->continuous = k->continuous && k->pred == DT_PRED_V;
        DT_TRY(read_opt_num(cfg, path, "sigma_min", &k->sigma_min, err));
        DT_TRY(read_opt_num(cfg, path, "sigma_max", &k->sigma_max, err));
    }
    if (k->kind == K_HEUN) {
        DT_TRY(dt_json_bool(cfg, path, "clip_sample", 0, &k->clip, err));
        DT_TRY(dt_json_num(cfg, path, "clip_sample_range", 1, 1.0, &k->clip_range, err));
    }
    return DT_OK;
}

static dt_status k_create_kind(dt_scheduler *s, const cJSON *cfg, const char *path, int kind, dt_err *err)
{
    ksched *k = calloc(1, sizeof *k);
    if (!k) return dt_fail(err, DT_ENOMEM, "%s: out of memory", path);
    s->impl = k;
    k->kind = kind;
    DT_TRY(read_k(k, cfg, path, err));
    dt_beta_config bc;
    float *trained = NULL;
    int heun = kind == K_HEUN;
    DT_TRY(dt_beta_config_read_dflt(cfg, path, &bc, &trained, heun ? 0.00085 : 0.0001, heun ? 0.012 : 0.02, "linear", err));
    if (heun) bc.rescale_betas_zero_snr = 0; /* not a HeunDiscreteScheduler option */
    k->num_train = bc.num_train_timesteps;
    dt_status st = dt_alphas_cumprod_alloc(&bc, path, &k->ac, err);
    free(trained);
    if (st == DT_OK) st = dt_train_sigmas_alloc(k->ac, k->num_train, path, &k->tsig, &k->log_sig, err);
    return st;
}

static dt_status euler_create(dt_scheduler *s, const cJSON *c, const char *p, dt_err *e) { return k_create_kind(s, c, p, K_EULER, e); }
static dt_status ancestral_create(dt_scheduler *s, const cJSON *c, const char *p, dt_err *e) { return k_create_kind(s, c, p, K_ANCESTRAL, e); }
static dt_status heun_create(dt_scheduler *s, const cJSON *c, const char *p, dt_err *e) { return k_create_kind(s, c, p, K_HEUN, e); }

/* ---- timesteps ---- */

static dt_status k_schedule(ksched *k, int steps, double *ts, double *sig, int *count, const char *path, dt_err *err)
{
    int n = dt_float_timesteps(k->spacing, k->num_train, steps, k->steps_offset, ts);
    if (n < 1) return dt_fail(err, DT_EINVAL, "%s: %d inference steps give no timesteps", path, steps);
    for (int i = 0; i < n; i++) sig[i] = dt_np_interp(ts[i], k->tsig, k->num_train);
    if (k->karras) {
        double lo = isnan(k->sigma_min) ? sig[n - 1] : k->sigma_min, hi = isnan(k->sigma_max) ? sig[0] : k->sigma_max;
        dt_karras_sigmas(lo, hi, steps, sig);
        n = steps;
        for (int i = 0; i < n; i++) {
            ts[i] = dt_sigma_to_t(sig[i], k->log_sig, k->num_train);
            if (k->kind == K_EULER) ts[i] = (float)ts[i]; /* Euler casts to float32, Heun keeps float64 */
        }
    }
    sig[n] = k->final_sigma_min ? k->tsig[0] : 0.0;
    *count = n;
    return DT_OK;
}

static dt_status k_set_timesteps(dt_scheduler *s, int steps, dt_err *err)
{
    ksched *k = s->impl;
    double *ts = malloc((size_t)(steps + 2) * sizeof *ts), *sig = malloc((size_t)(steps + 2) * sizeof *sig);
    double *ots = malloc((size_t)(2 * steps + 2) * sizeof *ots);
    float *osig = malloc((size_t)(2 * steps + 3) * sizeof *osig);
    int n = 0;
    dt_status st = ts && sig && ots && osig ? DT_OK : dt_fail(err, DT_ENOMEM, "%s: out of memory", s->path);
    if (st == DT_OK) st = k_schedule(k, steps, ts, sig, &n, s->path, err);
    if (st != DT_OK) {
        free(ts); free(sig); free(ots); free(osig);
        return st;
    }
    int count = n;
    if (k->kind == K_HEUN) { /* [s0, s1, s1, ..., s_{n-1}, s_{n-1}, 0]; [t0, t1, t1, ...] */
        count = 2 * n - 1;
        osig[0] = (float)sig[0];
        ots[0] = ts[0];
        for (int i = 1; i < n; i++) {
            osig[2 * i - 1] = osig[2 * i] = (float)sig[i];
            ots[2 * i - 1] = ots[2 * i] = ts[i];
        }
        osig[count] = (float)sig[n];
    } else {
        for (int i = 0; i <= n; i++) osig[i] = (float)sig[i];
        for (int i = 0; i < n; i++) ots[i] = k->continuous ? (double)(0.25f * torch_logf(osig[i])) : ts[i];
    }
    free(ts);
    free(sig);
    float mx = 0;
    for (int i = 0; i <= count; i++) mx = osig[i] > mx ? osig[i] : mx;
    s->init_noise_sigma = k->spacing == DT_SPACING_LINSPACE || k->spacing == DT_SPACING_TRAILING ? mx : sqrtf(mx * mx + 1.0f);
    dt_sched_install(s, ots, osig, count);
    k->second = 0;
    return DT_OK;
}

static void k_scale_input(const dt_scheduler *s, float *x, size_t n)
{
    float sg = s->sigmas[s->step_index];
    float d = sqrtf(sg * sg + 1.0f);
    for (size_t i = 0; i < n; i++) x[i] = x[i] / d;
}

/* pred_original_sample at noise level sg (f32, diffusers' expressions). */
static inline float pred_x0(int pred, float sg, float cv, float dv, float mo, float x)
{
    if (pred == DT_PRED_EPSILON) return x - sg * mo;
    if (pred == DT_PRED_V) return mo * cv + x / dv;
    return mo;
}

static dt_status euler_step(dt_scheduler *s, const float *mo, const float *x, float *out, size_t n, dt_err *err)
{
    ksched *k = s->impl;
    int i = s->step_index;
    float sg = s->sigmas[i], next = s->sigmas[i + 1];
    float dv = sg * sg + 1.0f, cv = -sg / sqrtf(dv);
    if (k->kind == K_EULER) {
        float sh = sg * 1.0f, dt = next - sh;
        for (size_t j = 0; j < n; j++) {
            float p = pred_x0(k->pred, sh, cv, dv, mo[j], x[j]);
            float d = (x[j] - p) / sh;
            out[j] = x[j] + d * dt;
        }
    } else {
        float up = sqrtf(next * next * (sg * sg - next * next) / (sg * sg));
        float down = sqrtf(next * next - up * up), dt = down - sg;
        DT_TRY(dt_sched_buf(&k->noise, &k->cap_n, n, s->path, err));
        DT_TRY(dt_sched_noise(s, k->noise, n, err));
        for (size_t j = 0; j < n; j++) {
            float p = pred_x0(k->pred, sg, cv, dv, mo[j], x[j]);
            float d = (x[j] - p) / sg;
            float v = x[j] + d * dt;
            out[j] = v + k->noise[j] * up;
        }
    }
    s->step_index++;
    return DT_OK;
}

static inline float clampf(float v, float r) { return v < -r ? -r : v > r ? r : v; }

static dt_status heun_step(dt_scheduler *s, const float *mo, const float *x, float *out, size_t n, dt_err *err)
{
    ksched *k = s->impl;
    int i = s->step_index;
    float r = (float)k->clip_range;
    if (!k->second) {
        float sg = s->sigmas[i], next = s->sigmas[i + 1], sh = sg * 1.0f;
        float dv = sh * sh + 1.0f, cv = -sh / sqrtf(dv);
        DT_TRY(dt_sched_buf(&k->prev_deriv, &k->cap_d, n, s->path, err));
        DT_TRY(dt_sched_buf(&k->saved, &k->cap_s, n, s->path, err));
        float dt = next - sh;
        for (size_t j = 0; j < n; j++) {
            float p = pred_x0(k->pred, sh, cv, dv, mo[j], x[j]);
            if (k->clip) p = clampf(p, r);
            float d = (x[j] - p) / sh;
            k->prev_deriv[j] = d;
            k->saved[j] = x[j];
            out[j] = x[j] + d * dt;
        }
        k->dt = dt;
        k->second = 1;
    } else {
        float next = s->sigmas[i];
        float dv = next * next + 1.0f, cv = -next / sqrtf(dv), dt = k->dt;
        for (size_t j = 0; j < n; j++) {
            float p = pred_x0(k->pred, next, cv, dv, mo[j], x[j]);
            if (k->clip) p = clampf(p, r);
            float d = (x[j] - p) / next;
            d = (k->prev_deriv[j] + d) / 2.0f;
            out[j] = k->saved[j] + d * dt;
        }
        k->second = 0;
    }
    s->step_index++;
    return DT_OK;
}

const dt_solver_ops dt_euler_ops = {
    .class_name = "EulerDiscreteScheduler", .karras = 1, .create = euler_create, .set_timesteps = k_set_timesteps,
    .step = euler_step, .scale_model_input = k_scale_input, .destroy = k_destroy,
};
const dt_solver_ops dt_euler_ancestral_ops = {
    .class_name = "EulerAncestralDiscreteScheduler", .stochastic = 1, .create = ancestral_create,
    .set_timesteps = k_set_timesteps, .step = euler_step, .scale_model_input = k_scale_input, .destroy = k_destroy,
};
const dt_solver_ops dt_heun_ops = {
    .class_name = "HeunDiscreteScheduler", .karras = 1, .create = heun_create, .set_timesteps = k_set_timesteps,
    .step = heun_step, .scale_model_input = k_scale_input, .destroy = k_destroy,
};
