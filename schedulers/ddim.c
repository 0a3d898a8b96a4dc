/* DDIMScheduler and LCMScheduler of diffusers 0.30.3: both step between integer training
 * timesteps on alphas_cumprod directly (no sigmas; dt_scheduler_sigmas gives NULL).
 *
 * DDIM: eta (dt_scheduler_set_eta) adds std_dev_t * noise drawn from the pipeline's generator
 * when eta > 0, as randn_tensor(model_output.shape, generator) draws it; clip_sample (on by
 * default, as in diffusers, also when the config comes from another class) clamps x0.
 * LCM: consistency step, then re-noising from the generator on every step but the last.
 * The step is torch's f32 arithmetic in diffusers' order. Not implemented (fail at load):
 * thresholding. With rescale_betas_zero_snr, alphas_cumprod[-1] is 0 here (these classes do
 * not clamp it to 2^-24 as the others do). */
#include "scheduler_impl.h"
#include "runtime/core/json.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int lcm, pred, spacing, steps_offset, clip, set_alpha_to_one, original_steps;
    double clip_range, timestep_scaling;
    int num_train, user_steps;
    float *ac, *noise;
    size_t cap_n;
} ddim;

static void ddim_destroy(void *impl)
{
    ddim *d = impl;
    if (!d) return;
    free(d->ac);
    free(d->noise);
    free(d);
}

static dt_status ddim_read(ddim *d, const cJSON *cfg, const char *path, dt_err *err)
{
    DT_TRY(dt_cfg_pred(cfg, path, &d->pred, err));
    DT_TRY(dt_cfg_spacing(cfg, path, "leading", &d->spacing, err));
    DT_TRY(dt_json_int(cfg, path, "steps_offset", 1, 0, &d->steps_offset, err));
    DT_TRY(dt_json_bool(cfg, path, "clip_sample", !d->lcm, &d->clip, err));
    DT_TRY(dt_json_num(cfg, path, "clip_sample_range", 1, 1.0, &d->clip_range, err));
    DT_TRY(dt_json_bool(cfg, path, "set_alpha_to_one", 1, &d->set_alpha_to_one, err));
    DT_TRY(dt_cfg_require_false(cfg, path, "thresholding", err));
    if (d->lcm) {
        DT_TRY(dt_json_int(cfg, path, "original_inference_steps", 1, 50, &d->original_steps, err));
        DT_TRY(dt_json_num(cfg, path, "timestep_scaling", 1, 10.0, &d->timestep_scaling, err));
    }
    return DT_OK;
}

static dt_status ddim_create_kind(dt_scheduler *s, const cJSON *cfg, const char *path, int lcm, dt_err *err)
{
    ddim *d = calloc(1, sizeof *d);
    if (!d) return dt_fail(err, DT_ENOMEM, "%s: out of memory", path);
    s->impl = d;
    d->lcm = lcm;
    DT_TRY(ddim_read(d, cfg, path, err));
    s->clip_by_default = d->clip && !cJSON_HasObjectItem(cfg, "clip_sample");
    dt_beta_config bc;
    float *trained = NULL;
    DT_TRY(dt_beta_config_read_dflt(cfg, path, &bc, &trained, lcm ? 0.00085 : 0.0001, lcm ? 0.012 : 0.02,
                                    lcm ? "scaled_linear" : "linear", err));
    d->num_train = bc.num_train_timesteps;
    dt_status st = dt_alphas_cumprod_alloc(&bc, path, &d->ac, err);
    free(trained);
    if (st == DT_OK && bc.rescale_betas_zero_snr) d->ac[d->num_train - 1] = 0.0f;
    if (st == DT_OK && lcm && (d->original_steps < 1 || d->original_steps > d->num_train))
        st = dt_fail(err, DT_EINVAL, "%s: field \"original_inference_steps\" must be in [1, num_train_timesteps], got %d",
                     path, d->original_steps);
    s->init_noise_sigma = 1.0;
    return st;
}

static dt_status ddim_create(dt_scheduler *s, const cJSON *c, const char *p, dt_err *e) { return ddim_create_kind(s, c, p, 0, e); }
static dt_status lcm_create(dt_scheduler *s, const cJSON *c, const char *p, dt_err *e) { return ddim_create_kind(s, c, p, 1, e); }

static int ddim_timesteps(const ddim *d, int steps, double *ts)
{
    int T = d->num_train;
    if (d->spacing == DT_SPACING_LINSPACE) {
        double *v = malloc((size_t)steps * sizeof *v);
        if (!v) return -1;
        dt_np_linspace(0, T - 1, steps, v);
        for (int i = 0; i < steps; i++) ts[i] = nearbyint(v[steps - 1 - i]);
        free(v);
        return steps;
    }
    if (d->spacing == DT_SPACING_LEADING) {
        int ratio = T / steps;
        for (int i = 0; i < steps; i++) ts[i] = (double)(steps - 1 - i) * ratio + d->steps_offset;
        return steps;
    }
    double ratio = (double)T / steps;
    int64_t n = dt_np_arange(T, 0, -ratio, NULL);
    double *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    if (!v || n > steps + 1) { free(v); return -1; }
    dt_np_arange(T, 0, -ratio, v);
    for (int64_t i = 0; i < n; i++) ts[i] = nearbyint(v[i]) - 1;
    free(v);
    return (int)n;
}

/* LCM: every k-th training step of the distillation schedule, floor-spaced indices. */
static int lcm_timesteps(const ddim *d, int steps, double *ts)
{
    int k = d->num_train / d->original_steps, orig = d->original_steps;
    if (steps > orig) return -1;
    double *idx = malloc((size_t)steps * sizeof *idx);
    if (!idx) return -1;
    double step = (double)orig / steps; /* np.linspace(0, orig, steps, endpoint=False) */
    for (int i = 0; i < steps; i++) idx[i] = (double)i * step;
    for (int i = 0; i < steps; i++) {
        int64_t j = (int64_t)floor(idx[i]);
        ts[i] = (double)((orig - j) * k - 1);
    }
    free(idx);
    return steps;
}

static dt_status ddim_set_timesteps(dt_scheduler *s, int steps, dt_err *err)
{
    ddim *d = s->impl;
    if (steps > d->num_train)
        return dt_fail(err, DT_EINVAL, "%s: %d inference steps exceed num_train_timesteps (%d)", s->path, steps, d->num_train);
    double *ts = malloc((size_t)(steps + 2) * sizeof *ts);
    if (!ts) return dt_fail(err, DT_ENOMEM, "%s: out of memory", s->path);
    int n = d->lcm ? lcm_timesteps(d, steps, ts) : ddim_timesteps(d, steps, ts);
    if (n < 1) {
        free(ts);
        if (d->lcm)
            return dt_fail(err, DT_EINVAL, "%s: %d inference steps exceed original_inference_steps (%d)", s->path, steps, d->original_steps);
        return dt_fail(err, DT_EINVAL, "%s: %d inference steps give no timesteps", s->path, steps);
    }
    for (int i = 0; i < n; i++)
        if (ts[i] < 0 || ts[i] > d->num_train - 1) {
            double t = ts[i];
            free(ts);
            return dt_fail(err, DT_EINVAL, "%s: timestep %g (steps_offset %d) is outside [0, %d]", s->path, t,
                           d->steps_offset, d->num_train - 1);
        }
    d->user_steps = steps;
    free(s->timesteps);
    free(s->sigmas);
    s->timesteps = ts;
    s->sigmas = NULL;
    s->num_steps = n;
    s->step_index = 0;
    return DT_OK;
}

static inline float clampf(float v, float r) { return v < -r ? -r : v > r ? r : v; }

/* x0 and eps from the model output at alpha_prod_t (f32, diffusers' expressions). */
static inline void x0_eps(int pred, float sa, float sb, float mo, float x, float *x0, float *eps)
{
    if (pred == DT_PRED_EPSILON) {
        *x0 = (x - sb * mo) / sa;
        *eps = mo;
    } else if (pred == DT_PRED_SAMPLE) {
        *x0 = mo;
        *eps = (x - sa * mo) / sb;
    } else {
        *x0 = sa * x - sb * mo;
        *eps = sa * mo + sb * x;
    }
}

static dt_status ddim_step(dt_scheduler *s, const float *mo, const float *x, float *out, size_t n, dt_err *err)
{
    ddim *d = s->impl;
    int64_t t = (int64_t)s->timesteps[s->step_index], prev = t - d->num_train / d->user_steps;
    float at = d->ac[t], ap = prev >= 0 ? d->ac[prev] : d->set_alpha_to_one ? 1.0f : d->ac[0];
    float bt = 1.0f - at, bp = 1.0f - ap;
    float sa = sqrtf(at), sb = sqrtf(bt), sap = sqrtf(ap);
    float var = bp / bt * (1.0f - at / ap);
    float std = (float)s->eta * sqrtf(var);
    float dir = sqrtf(1.0f - ap - std * std), r = (float)d->clip_range;
    int noisy = s->eta > 0;
    if (noisy) {
        DT_TRY(dt_sched_buf(&d->noise, &d->cap_n, n, s->path, err));
        DT_TRY(dt_sched_noise(s, d->noise, n, err));
    }
    for (size_t j = 0; j < n; j++) {
        float x0, eps;
        x0_eps(d->pred, sa, sb, mo[j], x[j], &x0, &eps);
        if (d->clip) x0 = clampf(x0, r);
        float v = sap * x0 + dir * eps;
        out[j] = noisy ? v + std * d->noise[j] : v;
    }
    s->step_index++;
    return DT_OK;
}

static dt_status lcm_step(dt_scheduler *s, const float *mo, const float *x, float *out, size_t n, dt_err *err)
{
    ddim *d = s->impl;
    int i = s->step_index, last = i == s->num_steps - 1;
    int64_t t = (int64_t)s->timesteps[i], prev = last ? t : (int64_t)s->timesteps[i + 1];
    float at = d->ac[t], ap = prev >= 0 ? d->ac[prev] : d->set_alpha_to_one ? 1.0f : d->ac[0];
    float bt = 1.0f - at, bp = 1.0f - ap;
    float sa = sqrtf(at), sb = sqrtf(bt), r = (float)d->clip_range;
    /* int64 timestep * python float: an f32 tensor, then f32 arithmetic */
    float st = (float)t * (float)d->timestep_scaling;
    float c_skip = 0.25f / (st * st + 0.25f), c_out = st / sqrtf(st * st + 0.25f);
    if (!last) {
        DT_TRY(dt_sched_buf(&d->noise, &d->cap_n, n, s->path, err));
        DT_TRY(dt_sched_noise(s, d->noise, n, err));
    }
    float sap = sqrtf(ap), sbp = sqrtf(bp);
    for (size_t j = 0; j < n; j++) {
        float x0, eps;
        x0_eps(d->pred, sa, sb, mo[j], x[j], &x0, &eps);
        if (d->clip) x0 = clampf(x0, r);
        float den = c_out * x0 + c_skip * x[j];
        out[j] = last ? den : sap * den + sbp * d->noise[j];
    }
    s->step_index++;
    return DT_OK;
}

const dt_solver_ops dt_ddim_ops = {
    .class_name = "DDIMScheduler", .stochastic = 1, .create = ddim_create, .set_timesteps = ddim_set_timesteps,
    .step = ddim_step, .destroy = ddim_destroy,
};
const dt_solver_ops dt_lcm_ops = {
    .class_name = "LCMScheduler", .stochastic = 1, .create = lcm_create, .set_timesteps = ddim_set_timesteps,
    .step = lcm_step, .destroy = ddim_destroy,
};
