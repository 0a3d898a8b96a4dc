/* Scheduler loading and the generic entry points; the solvers live in their own files. */
#include "scheduler_impl.h"
#include "json.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const dt_solver_ops *const solvers[] = {
    &dt_dpmsolver_multistep_ops,
};

/* dt_json_load reads Python's -Infinity / NaN (diffusers writes "lambda_min_clipped": -Infinity). */
dt_status dt_scheduler_config_load(const char *path, cJSON **out, dt_err *err)
{
    return dt_json_load(path, out, err);
}

static dt_status pick_solver(const cJSON *cfg, const char *path, const dt_solver_ops **ops, dt_err *err)
{
    char cls[128], names[512] = "";
    DT_TRY(dt_json_str(cfg, path, "_class_name", NULL, cls, sizeof cls, err));
    for (size_t i = 0; i < sizeof solvers / sizeof *solvers; i++) {
        if (!strcmp(cls, solvers[i]->class_name)) { *ops = solvers[i]; return DT_OK; }
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "", solvers[i]->class_name);
    }
    return dt_fail(err, DT_EUNSUPPORTED, "%s: field \"_class_name\" is \"%s\"; supported: %s", path, cls, names);
}

dt_status dt_scheduler_load(const char *dir, dt_scheduler **out, dt_err *err)
{
    *out = NULL;
    dt_scheduler *s = calloc(1, sizeof *s);
    if (!s) return dt_fail(err, DT_ENOMEM, "%s: out of memory", dir);
    snprintf(s->path, sizeof s->path, "%s/scheduler_config.json", dir);
    s->init_noise_sigma = 1.0;
    cJSON *cfg = NULL;
    dt_status st = dt_scheduler_config_load(s->path, &cfg, err);
    if (st == DT_OK) st = pick_solver(cfg, s->path, &s->ops, err);
    if (st == DT_OK) st = s->ops->create(s, cfg, s->path, err);
    cJSON_Delete(cfg);
    if (st != DT_OK) {
        dt_scheduler_free(s);
        return st;
    }
    *out = s;
    return DT_OK;
}

void dt_scheduler_free(dt_scheduler *s)
{
    if (!s) return;
    if (s->ops && s->impl) s->ops->destroy(s->impl);
    free(s->timesteps);
    free(s->sigmas);
    free(s);
}

const char *dt_scheduler_class(const dt_scheduler *s) { return s->ops->class_name; }

dt_status dt_scheduler_set_timesteps(dt_scheduler *s, int steps, dt_err *err)
{
    if (steps < 1)
        return dt_fail(err, DT_EINVAL, "%s: the number of inference steps must be at least 1, got %d", s->path, steps);
    s->num_steps = 0;
    s->step_index = 0;
    return s->ops->set_timesteps(s, steps, err);
}

int dt_scheduler_num_steps(const dt_scheduler *s) { return s->num_steps; }
const double *dt_scheduler_timesteps(const dt_scheduler *s) { return s->timesteps; }
const float *dt_scheduler_sigmas(const dt_scheduler *s) { return s->sigmas; }
int dt_scheduler_step_index(const dt_scheduler *s) { return s->step_index; }
double dt_scheduler_init_noise_sigma(const dt_scheduler *s) { return s->init_noise_sigma; }

void dt_scheduler_scale_model_input(const dt_scheduler *s, float *x, size_t n)
{
    if (s->ops->scale_model_input) s->ops->scale_model_input(s, x, n);
}

dt_status dt_scheduler_step(dt_scheduler *s, const float *model_output, const float *sample,
                            float *prev_sample, size_t n, dt_err *err)
{
    if (!s->num_steps)
        return dt_fail(err, DT_EINVAL, "%s: step called before set_timesteps", s->path);
    if (s->step_index >= s->num_steps)
        return dt_fail(err, DT_EINVAL, "%s: all %d steps were already taken (call set_timesteps again)",
                       s->path, s->num_steps);
    return s->ops->step(s, model_output, sample, prev_sample, n, err);
}
