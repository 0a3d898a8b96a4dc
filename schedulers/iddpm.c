#include "iddpm.h"
#include "scheduler_impl.h"
#include <math.h>
#include <stdlib.h>

typedef struct { float recip, recipm1, log_beta, log_post, c1, c2; } iddpm_coef;

struct dt_iddpm {
    int steps;
    double *timesteps; /* sampling order */
    iddpm_coef *coef;  /* by respaced index k = 0..steps-1 (k = steps-1-i at sampling step i) */
};

/* space_timesteps(num_train, str(steps)): one section, frac_stride accumulated in float64,
 * Python's round (half to even). */
static void spaced(int T, int steps, int *kept)
{
    double stride = steps <= 1 ? 1.0 : (double)(T - 1) / (steps - 1), cur = 0.0;
    for (int k = 0; k < steps; k++, cur += stride) kept[k] = (int)nearbyint(cur);
}

/* GaussianDiffusion.__init__ on the respaced betas (float64, numpy's order of operations). */
static void coefficients(const double *betas, int K, iddpm_coef *c)
{
    double ac = 1.0, pv1 = 0;
    for (int k = 0; k < K; k++) {
        double b = betas[k], prev = ac;
        ac *= 1.0 - b;
        double pv = b * (1.0 - prev) / (1.0 - ac);
        if (k == 1) pv1 = pv;
        c[k] = (iddpm_coef){(float)sqrt(1.0 / ac), (float)sqrt(1.0 / ac - 1), (float)log(b), (float)log(pv),
                            (float)(b * sqrt(prev) / (1.0 - ac)), (float)((1.0 - prev) * sqrt(1.0 - b) / (1.0 - ac))};
    }
    if (K > 1) c[0].log_post = (float)log(pv1); /* posterior_log_variance_clipped[0] = log pv[1] */
}

dt_status dt_iddpm_create(int T, int steps, dt_iddpm **out, dt_err *err)
{
    *out = NULL;
    if (T < 2 || T > 100000 || steps < 1 || steps > T)
        return dt_fail(err, DT_EINVAL, "IDDPM: %d sampling steps of %d diffusion steps (need 1..diffusion steps, at least 2 of those)",
                       steps, T);
    dt_iddpm *s = calloc(1, sizeof *s);
    double *betas = malloc((size_t)T * sizeof *betas), *nb = malloc((size_t)steps * sizeof *nb);
    int *kept = malloc((size_t)steps * sizeof *kept);
    if (s) s->timesteps = malloc((size_t)steps * sizeof *s->timesteps), s->coef = malloc((size_t)steps * sizeof *s->coef);
    if (!s || !betas || !nb || !kept || !s->timesteps || !s->coef) {
        free(betas); free(nb); free(kept); dt_iddpm_free(s);
        return dt_fail(err, DT_ENOMEM, "IDDPM: out of memory");
    }
    double scale = 1000.0 / T; /* get_named_beta_schedule("linear") */
    dt_np_linspace(scale * 0.0001, scale * 0.02, T, betas);
    spaced(T, steps, kept);
    /* SpacedDiffusion: new beta = 1 − ᾱ_t / ᾱ_last over the kept t */
    double ac = 1.0, last = 1.0;
    for (int t = 0, k = 0; t < T && k < steps; t++) {
        ac *= 1.0 - betas[t];
        if (t == kept[k]) nb[k++] = 1 - ac / last, last = ac;
    }
    coefficients(nb, steps, s->coef);
    s->steps = steps;
    for (int i = 0; i < steps; i++) s->timesteps[i] = kept[steps - 1 - i];
    free(betas); free(nb); free(kept);
    *out = s;
    return DT_OK;
}

void dt_iddpm_free(dt_iddpm *s)
{
    if (!s) return;
    free(s->timesteps);
    free(s->coef);
    free(s);
}

int dt_iddpm_num_steps(const dt_iddpm *s) { return s->steps; }
const double *dt_iddpm_timesteps(const dt_iddpm *s) { return s->timesteps; }

dt_status dt_iddpm_step(const dt_iddpm *s, int i, const float *eps, const float *var, const float *x, const float *noise,
                        float *out, size_t n, dt_err *err)
{
    if (i < 0 || i >= s->steps) return dt_fail(err, DT_EINVAL, "IDDPM: step %d of %d", i, s->steps);
    int k = s->steps - 1 - i;
    if (k > 0 && !noise) return dt_fail(err, DT_EINVAL, "IDDPM: step %d needs noise", i);
    iddpm_coef c = s->coef[k];
    for (size_t j = 0; j < n; j++) {
        float x0 = c.recip * x[j] - c.recipm1 * eps[j];
        float mean = c.c1 * x0 + c.c2 * x[j];
        if (k == 0) { /* nonzero_mask 0: the mean (log β̃ at step 0 would be log 0) */
            out[j] = mean;
            continue;
        }
        float frac = (var[j] + 1.0f) / 2.0f;
        float logv = frac * c.log_beta + (1.0f - frac) * c.log_post;
        out[j] = mean + expf(0.5f * logv) * noise[j];
    }
    return DT_OK;
}
