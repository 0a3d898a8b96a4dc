/* "IDDPMScheduler": Open-Sora's IDDPM sampler (schedulers/iddpm.h) behind the scheduler
 * interface. The class name is ditrt's own (diffusers has none; a scheduler_config.json names
 * it, e.g. tests/fixtures/stdit-tiny/pipe); its config reads:
 *
 *     num_train_timesteps  the repository's diffusion_steps (default 1000)
 *     beta_schedule        "linear" only (its betas: linspace(1e-4, 0.02) scaled by 1000 / T);
 *                          beta_start / beta_end, when present, must be those
 *     prediction_type      "epsilon" only;  variance_type  "learned_range" only (learn_sigma)
 *
 * Other fields are ignored, so another solver's config (PixArt's) loads as it too. The step
 * takes the model's variance channels (dt_scheduler_step_var) and draws its noise from the
 * generator at every step, the last one included, as p_sample's randn_like does. */
#include "iddpm.h"
#include "scheduler_impl.h"
#include "runtime/core/json.h"
#include <math.h>
#include <stdlib.h>

typedef struct {
    int num_train;
    dt_iddpm *run;     /* the respaced tables of the current step count */
    float *noise;
    size_t cap;
} iddpm_sched;

static void isc_destroy(void *impl)
{
    iddpm_sched *d = impl;
    dt_iddpm_free(d->run);
    free(d->noise);
    free(d);
}

/* beta_start / beta_end, when the config has them, must be the linear schedule's. */
static dt_status check_beta(const cJSON *cfg, const char *path, const char *field, double want, dt_err *err)
{
    double v;
    DT_TRY(dt_json_num(cfg, path, field, 1, want, &v, err));
    if (fabs(v - want) > 1e-9 * want)
        return dt_fail(err, DT_EUNSUPPORTED, "%s: field \"%s\" is %g; IDDPMScheduler's linear schedule has %g", path,
                       field, v, want);
    return DT_OK;
}

static dt_status isc_create(dt_scheduler *s, const cJSON *cfg, const char *path, dt_err *err)
{
    iddpm_sched *d = calloc(1, sizeof *d);
    if (!d) return dt_fail(err, DT_ENOMEM, "%s: out of memory", path);
    s->impl = d;
    DT_TRY(dt_json_int(cfg, path, "num_train_timesteps", 1, 1000, &d->num_train, err));
    if (d->num_train < 2 || d->num_train > 100000)
        return dt_fail(err, DT_EFORMAT, "%s: field \"num_train_timesteps\" must be in 2..100000, got %d", path, d->num_train);
    static const char *const linear[] = {"linear"}, *const eps[] = {"epsilon"}, *const learned[] = {"learned_range"};
    int k;
    DT_TRY(dt_cfg_choice(cfg, path, "beta_schedule", "linear", linear, 1, &k, err));
    DT_TRY(dt_cfg_choice(cfg, path, "prediction_type", "epsilon", eps, 1, &k, err));
    DT_TRY(dt_cfg_choice(cfg, path, "variance_type", "learned_range", learned, 1, &k, err));
    double scale = 1000.0 / d->num_train;
    DT_TRY(check_beta(cfg, path, "beta_start", scale * 0.0001, err));
    DT_TRY(check_beta(cfg, path, "beta_end", scale * 0.02, err));
    s->init_noise_sigma = 1.0;
    return DT_OK;
}

static dt_status isc_set_timesteps(dt_scheduler *s, int steps, dt_err *err)
{
    iddpm_sched *d = s->impl;
    if (steps > d->num_train)
        return dt_fail(err, DT_EINVAL, "%s: %d inference steps exceed num_train_timesteps (%d)", s->path, steps, d->num_train);
    dt_iddpm *run;
    DT_TRY(dt_iddpm_create(d->num_train, steps, &run, err));
    double *ts = malloc((size_t)steps * sizeof *ts);
    if (!ts) { dt_iddpm_free(run); return dt_fail(err, DT_ENOMEM, "%s: out of memory", s->path); }
    for (int i = 0; i < steps; i++) ts[i] = dt_iddpm_timesteps(run)[i];
    dt_iddpm_free(d->run);
    d->run = run;
    dt_sched_install(s, ts, NULL, steps); /* the timesteps are distinct: step index 0 */
    return DT_OK;
}

static dt_status isc_step(dt_scheduler *s, const float *eps, const float *x, float *out, size_t n, dt_err *err)
{
    iddpm_sched *d = s->impl;
    if (!s->variance)
        return dt_fail(err, DT_EINVAL, "%s: IDDPMScheduler needs the model's variance channels (learned sigma): "
                       "the model has none or the caller dropped them", s->path);
    DT_TRY(dt_sched_buf(&d->noise, &d->cap, n, s->path, err));
    DT_TRY(dt_sched_noise(s, d->noise, n, err));
    DT_TRY(dt_iddpm_step(d->run, s->step_index, eps, s->variance, x, d->noise, out, n, err));
    s->step_index++;
    return DT_OK;
}

const dt_solver_ops dt_iddpm_ops = {
    .class_name = "IDDPMScheduler", .stochastic = 1, .variance = 1, .create = isc_create,
    .set_timesteps = isc_set_timesteps, .step = isc_step, .destroy = isc_destroy,
};
