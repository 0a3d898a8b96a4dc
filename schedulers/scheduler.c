/* Scheduler loading and the generic entry points; the solvers live in their own files. */
#include "scheduler_impl.h"
#include "runtime/core/json.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const dt_solver_ops *const solvers[] = {
    &dt_dpmsolver_multistep_ops,
    &dt_dpmsolver_singlestep_ops,
    &dt_unipc_ops,
    &dt_ddim_ops,
    &dt_euler_ops,
    &dt_euler_ancestral_ops,
    &dt_heun_ops,
    &dt_lcm_ops,
    &dt_flow_match_euler_ops,
    &dt_iddpm_ops,
};

int dt_scheduler_solver_count(void) { return (int)(sizeof solvers / sizeof *solvers); }

const char *dt_scheduler_solver_name(int i)
{
    return i >= 0 && i < dt_scheduler_solver_count() ? solvers[i]->class_name : NULL;
}

/* Short names for the command line, in solvers[] order. */
static const char *const aliases[] = {"dpm++2m", "dpm++2s", "unipc", "ddim", "euler", "euler_a", "heun", "lcm", "flow_euler", "iddpm"};

const char *dt_scheduler_solver_alias(int i)
{
    return i >= 0 && i < dt_scheduler_solver_count() ? aliases[i] : NULL;
}

const char *dt_scheduler_resolve_name(const char *name)
{
    for (int i = 0; i < dt_scheduler_solver_count(); i++)
        if (!strcmp(name, solvers[i]->class_name) || !strcasecmp(name, aliases[i])) return solvers[i]->class_name;
    return NULL;
}

/* dt_json_load reads Python's -Infinity (diffusers writes "lambda_min_clipped": -Infinity) and refuses NaN. */
dt_status dt_scheduler_config_load(const char *path, cJSON **out, dt_err *err)
{
    return dt_json_load(path, out, err);
}

static dt_status pick_solver(const cJSON *cfg, const char *path, const char *want, const dt_solver_ops **ops, dt_err *err)
{
    char cls[128], names[1024] = "";
    if (want) snprintf(cls, sizeof cls, "%s", want);
    else DT_TRY(dt_json_str(cfg, path, "_class_name", NULL, cls, sizeof cls, err));
    for (size_t i = 0; i < sizeof solvers / sizeof *solvers; i++) {
        if (!strcmp(cls, solvers[i]->class_name)) { *ops = solvers[i]; return DT_OK; }
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "", solvers[i]->class_name);
    }
    if (want) return dt_fail(err, DT_EUNSUPPORTED, "solver \"%s\" is not supported; supported: %s", cls, names);
    return dt_fail(err, DT_EUNSUPPORTED, "%s: field \"_class_name\" is \"%s\"; supported: %s", path, cls, names);
}

/* Scheduler.from_config(config, use_karras_sigmas=True): the option is set on the config. */
static dt_status apply_karras(cJSON *cfg, const dt_solver_ops *ops, const char *path, dt_err *err)
{
    if (!ops->karras) { /* the way forward: every solver that has them, by the names --solver takes */
        char names[512] = "";
        for (size_t i = 0; i < sizeof solvers / sizeof *solvers; i++)
            if (solvers[i]->karras)
                snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s (%s)", names[0] ? ", " : "",
                         aliases[i], solvers[i]->class_name);
        return dt_fail(err, DT_EUNSUPPORTED, "%s: %s has no Karras sigmas (use_karras_sigmas); --karras works with: %s",
                       path, ops->class_name, names);
    }
    cJSON_DeleteItemFromObjectCaseSensitive(cfg, "use_karras_sigmas");
    if (!cJSON_AddBoolToObject(cfg, "use_karras_sigmas", 1)) return dt_fail(err, DT_ENOMEM, "%s: out of memory", path);
    return DT_OK;
}

/* Scheduler.from_config(config, clip_sample=...): only for the solvers that read it. */
static dt_status apply_clip(cJSON *cfg, const dt_solver_ops *ops, int on, const char *path, dt_err *err)
{
    static const char *const has[] = {"DDIMScheduler", "LCMScheduler", "HeunDiscreteScheduler"};
    int known = 0;
    for (size_t i = 0; i < sizeof has / sizeof *has; i++) known |= !strcmp(ops->class_name, has[i]);
    if (!known)
        return dt_fail(err, DT_EUNSUPPORTED, "%s: %s has no clip_sample option (it has: DDIMScheduler, LCMScheduler, "
                       "HeunDiscreteScheduler)", path, ops->class_name);
    cJSON_DeleteItemFromObjectCaseSensitive(cfg, "clip_sample");
    if (!cJSON_AddBoolToObject(cfg, "clip_sample", on)) return dt_fail(err, DT_ENOMEM, "%s: out of memory", path);
    return DT_OK;
}

dt_status dt_scheduler_load(const char *dir, dt_scheduler **out, dt_err *err)
{
    return dt_scheduler_load_as(dir, NULL, 0, out, err);
}

dt_status dt_scheduler_load_as(const char *dir, const char *solver, int karras, dt_scheduler **out, dt_err *err)
{
    return dt_scheduler_load_opts(dir, solver, karras, -1, out, err);
}

dt_status dt_scheduler_load_opts(const char *dir, const char *solver, int karras, int clip_sample, dt_scheduler **out,
                                 dt_err *err)
{
    *out = NULL;
    dt_scheduler *s = calloc(1, sizeof *s);
    if (!s) return dt_fail(err, DT_ENOMEM, "%s: out of memory", dir);
    snprintf(s->path, sizeof s->path, "%s/scheduler_config.json", dir);
    s->init_noise_sigma = 1.0;
    cJSON *cfg = NULL;
    dt_status st = dt_scheduler_config_load(s->path, &cfg, err);
    if (st == DT_OK) st = pick_solver(cfg, s->path, solver, &s->ops, err);
    if (st == DT_OK && karras) st = apply_karras(cfg, s->ops, s->path, err);
    if (st == DT_OK && clip_sample >= 0) st = apply_clip(cfg, s->ops, clip_sample, s->path, err);
    if (st == DT_OK) st = s->ops->create(s, cfg, s->path, err);
    cJSON_Delete(cfg);
    if (st != DT_OK) {
        dt_scheduler_free(s);
        return st;
    }
    *out = s;
    return DT_OK;
}

/* The USF interpreter reads the folder's betas and prediction type; the schedule (and the
 * statistics file, if any) travel in the config under private keys. */
dt_status dt_scheduler_load_usf(const char *dir, const char *schedule, const char *statistics, dt_scheduler **out,
                                dt_err *err)
{
    *out = NULL;
    dt_scheduler *s = calloc(1, sizeof *s);
    if (!s) return dt_fail(err, DT_ENOMEM, "%s: out of memory", dir);
    snprintf(s->path, sizeof s->path, "%s/scheduler_config.json", dir);
    s->init_noise_sigma = 1.0;
    s->ops = &dt_usf_ops;
    cJSON *cfg = NULL;
    dt_status st = dt_scheduler_config_load(s->path, &cfg, err);
    if (st == DT_OK && (!cJSON_AddStringToObject(cfg, "_usf_schedule", schedule) ||
                        (statistics && !cJSON_AddStringToObject(cfg, "_usf_statistics", statistics))))
        st = dt_fail(err, DT_ENOMEM, "%s: out of memory", s->path);
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
    if (s->ops->variance && !s->variance)
        return dt_fail(err, DT_EINVAL, "%s: %s needs the model's variance channels (learned sigma; dt_scheduler_step_var)",
                       s->path, s->ops->class_name);
    return s->ops->step(s, model_output, sample, prev_sample, n, err);
}

dt_status dt_scheduler_step_var(dt_scheduler *s, const float *model_output, const float *variance, const float *sample,
                                float *prev_sample, size_t n, dt_err *err)
{
    s->variance = s->ops->variance ? variance : NULL;
    dt_status st = dt_scheduler_step(s, model_output, sample, prev_sample, n, err);
    s->variance = NULL;
    return st;
}

int dt_scheduler_uses_variance(const dt_scheduler *s) { return s->ops->variance; }

void dt_scheduler_set_generator(dt_scheduler *s, dt_rng *gen) { s->gen = gen; }
void dt_scheduler_set_noise_slice(dt_scheduler *s, int batch, int index)
{
    s->noise_batch = batch;
    s->noise_index = index;
}
void dt_scheduler_set_eta(dt_scheduler *s, double eta) { s->eta = eta; }
int dt_scheduler_is_stochastic(const dt_scheduler *s) { return s->ops->stochastic; }
int dt_scheduler_clips_by_default(const dt_scheduler *s) { return s->clip_by_default; }
