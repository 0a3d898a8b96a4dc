/* Open-Sora's IDDPM sampler (hpcaitech/Open-Sora v1.0/v1.1 opensora/schedulers/iddpm: the
 * DiT/ADM SpacedDiffusion with the "linear" beta schedule over num_train steps, respaced to
 * `steps` evenly strided timesteps, epsilon prediction, learned-range variance, no x0
 * clipping), one p_sample at a time:
 *
 *     x0   = sqrt(1/ᾱ)·x − sqrt(1/ᾱ − 1)·eps
 *     logv = (v+1)/2 · log β + (1 − (v+1)/2) · log β̃      (v: the model's variance channels)
 *     x'   = c1·x0 + c2·x + exp(logv / 2)·noise            (no noise at the last step)
 *
 * with the respaced β, β̃ (posterior variance, clipped at step 0), c1, c2 computed in float64
 * as the repository's numpy code does and rounded to f32, then torch's f32 arithmetic.
 * diffusers' DDPMScheduler(variance_type="learned_range", timestep_spacing="linspace") is
 * the same sampler (its coefficients are computed in f32). The model sees the original
 * timesteps (dt_iddpm_timesteps). What the repository's sampling loop does around the step
 * (CFG on the first 3 latent channels only, the variance channels from the conditional row,
 * the null caption y_embedder.y_embedding as the negative) is the pipeline's part. */
#ifndef DT_IDDPM_H
#define DT_IDDPM_H
#include <stddef.h>
#include "runtime/core/error.h"

typedef struct dt_iddpm dt_iddpm;

/* num_train: diffusion_steps (1000); steps: num_sampling_steps (1..num_train). */
dt_status dt_iddpm_create(int num_train, int steps, dt_iddpm **out, dt_err *err);
void dt_iddpm_free(dt_iddpm *s);
int dt_iddpm_num_steps(const dt_iddpm *s);
/* The model's timestep at sampling step i = 0..steps-1 (descending, the last one 0). */
const double *dt_iddpm_timesteps(const dt_iddpm *s);
/* Sampling step i on n elements: eps and var (the model output's two halves), x the current
 * latents, noise the standard normal draw (unused, may be NULL, at the last step); out may
 * alias x. */
dt_status dt_iddpm_step(const dt_iddpm *s, int i, const float *eps, const float *var, const float *x, const float *noise,
                        float *out, size_t n, dt_err *err);

#endif
