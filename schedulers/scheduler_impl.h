/* Inside the schedulers: the table a solver fills, the state every scheduler shares, and the
 * diffusers/torch/numpy building blocks solvers reuse (noise schedules, spacings). */
#ifndef DT_SCHEDULER_IMPL_H
#define DT_SCHEDULER_IMPL_H
#include <stdint.h>
#include <cjson/cJSON.h>
#include "scheduler.h"

typedef struct {
    const char *class_name;
    /* Reads the config (path names the file in messages) into s->impl. */
    dt_status (*create)(dt_scheduler *s, const cJSON *cfg, const char *path, dt_err *err);
    /* Fills s->timesteps / s->num_steps (and s->sigmas if it has them); resets history. */
    dt_status (*set_timesteps)(dt_scheduler *s, int steps, dt_err *err);
    dt_status (*step)(dt_scheduler *s, const float *model_output, const float *sample,
                      float *prev_sample, size_t n, dt_err *err);
    void (*scale_model_input)(const dt_scheduler *s, float *x, size_t n); /* NULL: identity */
    void (*destroy)(void *impl);
} dt_solver_ops;

struct dt_scheduler {
    const dt_solver_ops *ops;
    void *impl;
    char path[4096];   /* the scheduler_config.json, for messages */
    double *timesteps; /* num_steps values, owned */
    float *sigmas;     /* num_steps + 1 values or NULL, owned */
    int num_steps;     /* 0 until set_timesteps */
    int step_index;
    double init_noise_sigma;
};

extern const dt_solver_ops dt_dpmsolver_multistep_ops;

/* Parses a diffusers config file, accepting Python's bare Infinity/-Infinity/NaN. */
dt_status dt_scheduler_config_load(const char *path, cJSON **out, dt_err *err);

/* ---- noise schedules (schedulers/noise_schedule.c) ---- */

typedef struct {
    int num_train_timesteps;
    double beta_start, beta_end;
    char beta_schedule[32]; /* linear, scaled_linear, squaredcos_cap_v2 */
    float *trained_betas;   /* num_train_timesteps values or NULL (not owned) */
    int rescale_betas_zero_snr;
} dt_beta_config;

/* Reads num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas and
 * rescale_betas_zero_snr with diffusers' defaults; *trained is a malloc'd copy or NULL. */
dt_status dt_beta_config_read(const cJSON *cfg, const char *path, dt_beta_config *c, float **trained, dt_err *err);
/* alphas_cumprod[num_train_timesteps] (f32, as torch computes it from the betas). */
dt_status dt_alphas_cumprod(const dt_beta_config *c, const char *path, float *alphas_cumprod, dt_err *err);

/* torch.linspace(start, end, n, dtype=float32) as torch 1.13's AVX2 CPU kernel computes it. */
void dt_torch_linspace_f32(float start, float end, int64_t n, float *out);
/* numpy.linspace(start, stop, num) (float64, endpoint included). */
void dt_np_linspace(double start, double stop, int64_t num, double *out);
/* numpy.arange(start, stop, step) (float64): count, and the values when out != NULL. */
int64_t dt_np_arange(double start, double stop, double step, double *out);

#endif
