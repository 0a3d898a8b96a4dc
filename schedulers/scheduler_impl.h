/* Inside the schedulers: the table a solver fills, the state every scheduler shares, and the
 * diffusers/torch/numpy building blocks solvers reuse (noise schedules, spacings). */
#ifndef DT_SCHEDULER_IMPL_H
#define DT_SCHEDULER_IMPL_H
#include <stdint.h>
#include <cjson/cJSON.h>
#include "scheduler.h"
#include "runtime/core/rng.h"

typedef struct {
    const char *class_name;
    int karras;     /* reads use_karras_sigmas */
    int stochastic; /* draws noise in step (needs dt_scheduler_set_generator) */
    int variance;   /* step reads the model's variance channels (s->variance; dt_scheduler_step_var) */
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
    dt_rng *gen;       /* the pipeline's generator for stochastic steps, or NULL (not owned) */
    int noise_batch, noise_index; /* dt_scheduler_set_noise_slice (noise_batch <= 1: plain draws) */
    double eta;        /* DDIM's step(eta=...) */
    int clip_by_default; /* clips x0 to [-1, 1] only because the config omits clip_sample (DDIM's default) */
    const float *variance; /* the model's variance channels during one dt_scheduler_step_var call, else NULL */
};

extern const dt_solver_ops dt_dpmsolver_multistep_ops;
extern const dt_solver_ops dt_ddim_ops, dt_euler_ops, dt_euler_ancestral_ops, dt_heun_ops;
extern const dt_solver_ops dt_unipc_ops, dt_dpmsolver_singlestep_ops, dt_lcm_ops, dt_flow_match_euler_ops;
extern const dt_solver_ops dt_iddpm_ops; /* Open-Sora's IDDPM (schedulers/iddpm_scheduler.c) */
extern const dt_solver_ops dt_usf_ops; /* loaded with a schedule file (dt_scheduler_load_usf) */

/* Parses a diffusers config file, accepting Python's bare Infinity/-Infinity (NaN is refused). */
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

/* Same, with the class's own defaults for beta_start / beta_end / beta_schedule. */
dt_status dt_beta_config_read_dflt(const cJSON *cfg, const char *path, dt_beta_config *c, float **trained,
                                   double start, double end, const char *schedule, dt_err *err);
/* A malloc'd alphas_cumprod from the config's betas (the scheduler's __init__). */
dt_status dt_alphas_cumprod_alloc(const dt_beta_config *c, const char *path, float **out, dt_err *err);

/* ---- shared solver building blocks (schedulers/solver_common.c) ---- */

enum { DT_PRED_EPSILON, DT_PRED_SAMPLE, DT_PRED_V };
enum { DT_SPACING_LINSPACE, DT_SPACING_LEADING, DT_SPACING_TRAILING };

/* A string field that must be one of names[]: its index, or an error listing the choices. */
dt_status dt_cfg_choice(const cJSON *cfg, const char *path, const char *field, const char *dflt,
                        const char *const *names, int count, int *out, dt_err *err);
/* A boolean field the solver implements only as false. */
dt_status dt_cfg_require_false(const cJSON *cfg, const char *path, const char *field, dt_err *err);
/* prediction_type (epsilon, sample, v_prediction) and timestep_spacing (linspace, leading, trailing). */
dt_status dt_cfg_pred(const cJSON *cfg, const char *path, int *pred, dt_err *err);
dt_status dt_cfg_spacing(const cJSON *cfg, const char *path, const char *dflt, int *spacing, dt_err *err);

/* A point of the VP schedule at sigmas[i]: _sigma_to_alpha_sigma_t and lambda = log(alpha) -
 * log(sigma), in f32 as diffusers computes them (multistep, single-step and UniPC solvers). */
typedef struct { float alpha, sigma, lambda; } dt_vp_point;
dt_vp_point dt_vp_point_at(const dt_scheduler *s, int i);
/* convert_model_output: the data prediction x0 (data_pred) or the noise, from a model output
 * of prediction type pred (DT_PRED_*) at point p. out may alias mo. */
void dt_vp_convert(int data_pred, int pred, dt_vp_point p, const float *mo, const float *x, float *out, size_t n);

/* sqrt((1 - ac) / ac) in f32, as torch computes the training sigmas (t clamped to the table). */
float dt_train_sigma(const float *ac, int n, int64_t t);
/* np.interp(x, arange(n), fp) in float64. */
double dt_np_interp(double x, const float *fp, int n);
/* _convert_to_karras (rho 7) into out[n], float64. */
void dt_karras_sigmas(double sigma_min, double sigma_max, int n, double *out);
/* _sigma_to_t against log_sigmas (np.log of the f32 training sigmas, f32). */
double dt_sigma_to_t(double sigma, const float *log_sigmas, int n);
/* The f32 training sigmas and their f32 logs (n values each, malloc'd; free both). */
dt_status dt_train_sigmas_alloc(const float *ac, int n, const char *path, float **sig, float **log_sig, dt_err *err);
/* The float timesteps of Euler/Heun-style set_timesteps (np.float32 values) into out (room for
 * steps + 1); returns the count (trailing may give one more than steps) or -1. */
int dt_float_timesteps(int spacing, int num_train, int steps, int steps_offset, double *out);
/* Integer timesteps of the multistep kind (UniPC, DPM-Solver): linspace(0, last-1, steps+1)
 * .round()[::-1][:-1], leading with ratio last // (steps+1), trailing. Returns the count or -1. */
int dt_int_timesteps_multistep(int spacing, int num_train, int64_t last, int steps, int steps_offset, int64_t *out);
/* Replaces s->timesteps / s->sigmas (taking ownership) and sets the step counter to the first
 * step index as index_for_timestep picks it (the second occurrence of timesteps[0]). */
void dt_sched_install(dt_scheduler *s, double *timesteps, float *sigmas, int count);
/* Fills noise[n] from the generator (randn_tensor with generator), or fails naming the solver. */
dt_status dt_sched_noise(dt_scheduler *s, float *noise, size_t n, dt_err *err);
/* Grows *buf to hold n floats. */
dt_status dt_sched_buf(float **buf, size_t *cap, size_t n, const char *path, dt_err *err);

#endif
