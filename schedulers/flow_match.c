/* FlowMatchEulerDiscreteScheduler of diffusers 0.30.3 (rectified flow, x_t = (1-s) x0 + s eps,
 * the model predicts the velocity eps - x0): sigmas shifted by `shift` as diffusers 0.30.3 does
 * it, that is twice (once in __init__ for sigma_min/max, once more in set_timesteps);
 * timesteps = sigma * num_train_timesteps. Euler step x += (s_next - s) * v in f32.
 * diffusers' class has neither scale_model_input nor init_noise_sigma: here they are the
 * identity and 1. Not implemented (fail at load): use_dynamic_shifting (needs mu per image). */
#include "scheduler_impl.h"
#include "runtime/core/json.h"
#include <math.h>
#include <stdlib.h>

typedef struct {
    int num_train;
    double shift, sigma_min, sigma_max;
} flow;

static void flow_destroy(void *impl) { free(impl); }

static dt_status flow_create(dt_scheduler *s, const cJSON *cfg, const char *path, dt_err *err)
{
    flow *f = calloc(1, sizeof *f);
    if (!f) return dt_fail(err, DT_ENOMEM, "%s: out of memory", path);
    s->impl = f;
    DT_TRY(dt_json_int(cfg, path, "num_train_timesteps", 1, 1000, &f->num_train, err));
    if (f->num_train < 2) return dt_fail(err, DT_EFORMAT, "%s: field \"num_train_timesteps\" must be at least 2", path);
    DT_TRY(dt_json_num(cfg, path, "shift", 1, 1.0, &f->shift, err));
    if (!(f->shift > 0)) return dt_fail(err, DT_EFORMAT, "%s: field \"shift\" must be positive, got %g", path, f->shift);
    DT_TRY(dt_cfg_require_false(cfg, path, "use_dynamic_shifting", err));
    /* __init__: f32 timesteps linspace(1, T, T)[::-1] / T, shifted in f32 */
    float T = (float)f->num_train, sh = (float)f->shift;
    float lo = 1.0f / T, hi = T / T;
    lo = sh * lo / (1.0f + (sh - 1.0f) * lo);
    hi = sh * hi / (1.0f + (sh - 1.0f) * hi);
    f->sigma_min = lo;
    f->sigma_max = hi;
    s->init_noise_sigma = 1.0;
    return DT_OK;
}

static dt_status flow_set_timesteps(dt_scheduler *s, int steps, dt_err *err)
{
    flow *f = s->impl;
    double *ts = malloc((size_t)steps * sizeof *ts);
    float *sig = malloc((size_t)(steps + 1) * sizeof *sig);
    if (!ts || !sig) { free(ts); free(sig); return dt_fail(err, DT_ENOMEM, "%s: out of memory", s->path); }
    double T = f->num_train;
    dt_np_linspace(f->sigma_max * T, f->sigma_min * T, steps, ts);
    for (int i = 0; i < steps; i++) {
        double sg = ts[i] / T;
        sg = f->shift * sg / (1 + (f->shift - 1) * sg);
        sig[i] = (float)sg;
        ts[i] = sig[i] * (float)T;
    }
    sig[steps] = 0.0f;
    dt_sched_install(s, ts, sig, steps);
    return DT_OK;
}

static dt_status flow_step(dt_scheduler *s, const float *mo, const float *x, float *out, size_t n, dt_err *err)
{
    (void)err;
    float d = s->sigmas[s->step_index + 1] - s->sigmas[s->step_index];
    for (size_t j = 0; j < n; j++) out[j] = x[j] + d * mo[j];
    s->step_index++;
    return DT_OK;
}

const dt_solver_ops dt_flow_match_euler_ops = {
    .class_name = "FlowMatchEulerDiscreteScheduler", .create = flow_create, .set_timesteps = flow_set_timesteps,
    .step = flow_step, .destroy = flow_destroy,
};
