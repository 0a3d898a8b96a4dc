/* Diffusion schedulers behind one interface, loaded from a diffusers scheduler folder.
 *
 * dt_scheduler_load reads <dir>/scheduler_config.json and picks the solver by "_class_name"
 * (diffusers' solver classes, and ditrt's IDDPMScheduler: Open-Sora's sampler,
 * schedulers/iddpm_scheduler.c); an unknown class or an option the solver does not
 * implement fails with a message naming the file and the field. Then, per generation:
 *
 *     dt_scheduler_set_timesteps(s, steps, err);          // resets the solver's history
 *     x *= dt_scheduler_init_noise_sigma(s);
 *     for (i = 0; i < dt_scheduler_num_steps(s); i++) {
 *         t = dt_scheduler_timesteps(s)[i];               // the model's timestep
 *         dt_scheduler_scale_model_input(s, x_in, n);     // on the model's input copy
 *         ... model_output = model(x_in, t) ...
 *         dt_scheduler_step(s, model_output, x, x, n, err);
 *     }
 *
 * Arrays are flat f32 of n elements (the whole batch; every element steps alike). The step
 * keeps the history it needs (multistep solvers) inside the scheduler, so n must not change
 * between set_timesteps calls. prev_sample may alias sample or model_output. Results follow
 * diffusers 0.30.3 operation by operation in f32. A scheduler is not thread-safe; use one per
 * generation. */
#ifndef DT_SCHEDULER_H
#define DT_SCHEDULER_H
#include <stddef.h>
#include "runtime/core/error.h"
#include "runtime/core/rng.h"

typedef struct dt_scheduler dt_scheduler;

dt_status dt_scheduler_load(const char *dir, dt_scheduler **out, dt_err *err);
/* As diffusers' Solver.from_config(folder config[, use_karras_sigmas=True]): solver (a class
 * name, NULL for the folder's own) reads the folder's betas/timestep options it knows and its
 * own defaults for the rest; karras fails for a solver without use_karras_sigmas. */
dt_status dt_scheduler_load_as(const char *dir, const char *solver, int karras, dt_scheduler **out, dt_err *err);
/* The same with clip_sample set on the config (0 off, 1 on; -1: the config's): fails
 * (DT_EUNSUPPORTED) for a solver without that option. */
dt_status dt_scheduler_load_opts(const char *dir, const char *solver, int karras, int clip_sample, dt_scheduler **out,
                                 dt_err *err);
/* The USF interpreter (schedulers/usf.c) running the per-step schedule JSON `schedule` over
 * the folder's noise schedule and prediction type; statistics: a DPM-Solver-v3 statistics
 * file or NULL. dt_scheduler_class gives "USF"; set_timesteps ignores its step count. */
dt_status dt_scheduler_load_usf(const char *dir, const char *schedule, const char *statistics, dt_scheduler **out,
                                dt_err *err);
/* The registered solver classes, i in [0, count). */
int dt_scheduler_solver_count(void);
const char *dt_scheduler_solver_name(int i);
/* Its short command-line name (dpm++2m, euler_a, ...). */
const char *dt_scheduler_solver_alias(int i);
/* The class name for a class name or a short name (case-insensitive), or NULL. */
const char *dt_scheduler_resolve_name(const char *name);
void dt_scheduler_free(dt_scheduler *s);
/* The diffusers class name, e.g. "DPMSolverMultistepScheduler". */
const char *dt_scheduler_class(const dt_scheduler *s);

dt_status dt_scheduler_set_timesteps(dt_scheduler *s, int num_inference_steps, dt_err *err);
/* Valid after set_timesteps: num_steps values (diffusers' scheduler.timesteps). */
int dt_scheduler_num_steps(const dt_scheduler *s);
const double *dt_scheduler_timesteps(const dt_scheduler *s);
/* The noise level sigma of each step, num_steps + 1 values (the last one is where sampling
 * ends), or NULL for a solver without one. */
const float *dt_scheduler_sigmas(const dt_scheduler *s);
/* Steps taken since set_timesteps. */
int dt_scheduler_step_index(const dt_scheduler *s);
double dt_scheduler_init_noise_sigma(const dt_scheduler *s);

/* scheduler.scale_model_input for the current step, in place (identity for DPM-Solver). */
void dt_scheduler_scale_model_input(const dt_scheduler *s, float *x, size_t n);
/* One solver step from the model's output at the current timestep; fails when called more
 * often than there are timesteps or with a different n than earlier steps. */
dt_status dt_scheduler_step(dt_scheduler *s, const float *model_output, const float *sample,
                            float *prev_sample, size_t n, dt_err *err);
/* Whether the solver's step reads the model's variance channels (learned sigma: IDDPMScheduler,
 * learned-range variance). Such a solver fails in dt_scheduler_step; it takes them here, n
 * values beside the model output (variance is ignored by the other solvers and may be NULL). */
int dt_scheduler_uses_variance(const dt_scheduler *s);
dt_status dt_scheduler_step_var(dt_scheduler *s, const float *model_output, const float *variance, const float *sample,
                                float *prev_sample, size_t n, dt_err *err);

/* The pipeline's generator (runtime/core/rng.h), from which stochastic steps (DDIM with eta > 0,
 * EulerAncestral, LCM) draw randn_tensor(model_output.shape, generator) noise, in call order.
 * Not owned; NULL (the default) makes such a step fail. */
void dt_scheduler_set_generator(dt_scheduler *s, dt_rng *gen);
/* One item of a batch alone: each noise draw of n values draws n * batch from the generator
 * (what the batch of `batch` items draws) and keeps the values of item `index`, so item
 * `index` alone follows the batch's noise. batch 1 (the default) draws plainly. */
void dt_scheduler_set_noise_slice(dt_scheduler *s, int batch, int index);
/* DDIM's eta (0, the default: deterministic); ignored by the other solvers as by diffusers'
 * pipelines, which pass eta only to a step that takes it. */
void dt_scheduler_set_eta(dt_scheduler *s, double eta);
/* Whether step may draw from the generator. */
int dt_scheduler_is_stochastic(const dt_scheduler *s);
/* Whether it clips the predicted x0 to [-1, 1] only because the config has no clip_sample
 * (DDIMScheduler's default is true, as in diffusers: a DPM-Solver config swapped to DDIM
 * clips latents, which ruins latent-diffusion samples; the pipelines warn). */
int dt_scheduler_clips_by_default(const dt_scheduler *s);

#endif
