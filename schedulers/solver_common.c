/* Building blocks the diffusers solvers share: config choices, the numpy spacing and sigma
 * helpers of their set_timesteps (float64 like numpy; values that numpy casts to float32 are
 * cast by the callers), and the generator hook for stochastic steps. */
#include "scheduler_impl.h"
#include "runtime/core/json.h"
#include "torch_f32.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

dt_status dt_cfg_choice(const cJSON *cfg, const char *path, const char *field, const char *dflt,
                        const char *const *names, int count, int *out, dt_err *err)
{
    char v[64], list[256] = "";
    DT_TRY(dt_json_str(cfg, path, field, dflt, v, sizeof v, err));
    for (int i = 0; i < count; i++) {
        if (!strcmp(v, names[i])) { *out = i; return DT_OK; }
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", names[i]);
    }
    return dt_fail(err, DT_EUNSUPPORTED, "%s: field \"%s\" is \"%s\"; supported: %s", path, field, v, list);
}

dt_status dt_cfg_require_false(const cJSON *cfg, const char *path, const char *field, dt_err *err)
{
    int b;
    DT_TRY(dt_json_bool(cfg, path, field, 0, &b, err));
    if (b) return dt_fail(err, DT_EUNSUPPORTED, "%s: field \"%s\" is true; only false is supported", path, field);
    return DT_OK;
}

dt_status dt_cfg_pred(const cJSON *cfg, const char *path, int *pred, dt_err *err)
{
    static const char *const preds[] = {"epsilon", "sample", "v_prediction"};
    return dt_cfg_choice(cfg, path, "prediction_type", "epsilon", preds, 3, pred, err);
}

dt_status dt_cfg_spacing(const cJSON *cfg, const char *path, const char *dflt, int *spacing, dt_err *err)
{
    static const char *const spacings[] = {"linspace", "leading", "trailing"};
    return dt_cfg_choice(cfg, path, "timestep_spacing", dflt, spacings, 3, spacing, err);
}

float dt_train_sigma(const float *ac, int n, int64_t t)
{
    t = t < 0 ? 0 : t > n - 1 ? n - 1 : t;
    return sqrtf((1.0f - ac[t]) / ac[t]);
}

/* numpy's compiled interp for xp = 0..n-1: slope from the two neighbours, exact at knots. */
double dt_np_interp(double x, const float *fp, int n)
{
    if (x <= 0) return fp[0];
    if (x >= n - 1) return fp[n - 1];
    int j = (int)floor(x);
    if ((double)j == x) return fp[j];
    double slope = ((double)fp[j + 1] - (double)fp[j]) / 1.0;
    return slope * (x - j) + fp[j];
}

void dt_karras_sigmas(double sigma_min, double sigma_max, int n, double *out)
{
    const double rho = 7.0;
    double *ramp = malloc((size_t)(n > 0 ? n : 1) * sizeof *ramp);
    double min_inv = pow(sigma_min, 1 / rho), max_inv = pow(sigma_max, 1 / rho);
    if (ramp) dt_np_linspace(0, 1, n, ramp);
    for (int i = 0; i < n; i++) {
        double r = ramp ? ramp[i] : (n > 1 ? (double)i / (n - 1) : 0);
        out[i] = pow(max_inv + r * (min_inv - max_inv), rho);
    }
    free(ramp);
}

/* low_idx = the last index whose log sigma is <= log(sigma) (cumsum(dists >= 0).argmax),
 * clipped to n - 2; linear interpolation in log sigma, w clipped to [0, 1]. */
double dt_sigma_to_t(double sigma, const float *log_sigmas, int n)
{
    double ls = log(sigma > 1e-10 ? sigma : 1e-10);
    int cnt = 0, low = 0, best = -1;
    for (int i = 0; i < n; i++) {
        cnt += ls - (double)log_sigmas[i] >= 0;
        if (cnt > best) { best = cnt; low = i; }
    }
    if (low > n - 2) low = n - 2;
    double lo = log_sigmas[low], hi = log_sigmas[low + 1];
    double w = (lo - ls) / (lo - hi);
    w = w < 0 ? 0 : w > 1 ? 1 : w;
    return (1 - w) * low + w * (low + 1);
}

dt_status dt_train_sigmas_alloc(const float *ac, int n, const char *path, float **sig, float **log_sig, dt_err *err)
{
    *sig = malloc((size_t)n * sizeof **sig);
    *log_sig = malloc((size_t)n * sizeof **log_sig);
    if (!*sig || !*log_sig) {
        free(*sig);
        free(*log_sig);
        *sig = *log_sig = NULL;
        return dt_fail(err, DT_ENOMEM, "%s: out of memory", path);
    }
    for (int i = 0; i < n; i++) {
        (*sig)[i] = dt_train_sigma(ac, n, i);
        (*log_sig)[i] = logf((*sig)[i]);
    }
    return DT_OK;
}

int dt_float_timesteps(int spacing, int num_train, int steps, int steps_offset, double *out)
{
    if (spacing == DT_SPACING_LINSPACE) {
        dt_np_linspace(0, num_train - 1, steps, out);
        for (int i = 0; i < steps / 2; i++) {
            double t = out[i];
            out[i] = out[steps - 1 - i];
            out[steps - 1 - i] = t;
        }
        for (int i = 0; i < steps; i++) out[i] = (float)out[i];
        return steps;
    }
    if (spacing == DT_SPACING_LEADING) {
        int ratio = num_train / steps;
        for (int i = 0; i < steps; i++) out[i] = (float)((float)((double)(steps - 1 - i) * ratio) + (float)steps_offset);
        return steps;
    }
    double ratio = (double)num_train / steps;
    int64_t n = dt_np_arange(num_train, 0, -ratio, NULL);
    if (n > steps + 1) return -1;
    double *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    if (!v) return -1;
    dt_np_arange(num_train, 0, -ratio, v);
    for (int64_t i = 0; i < n; i++) out[i] = (float)((float)nearbyint(v[i]) - 1.0f);
    free(v);
    return (int)n;
}

int dt_int_timesteps_multistep(int spacing, int num_train, int64_t last, int steps, int steps_offset, int64_t *out)
{
    if (spacing == DT_SPACING_LINSPACE) {
        double *v = malloc((size_t)(steps + 1) * sizeof *v);
        if (!v) return -1;
        dt_np_linspace(0, (double)(last - 1), steps + 1, v);
        for (int i = 0; i < steps; i++) out[i] = (int64_t)nearbyint(v[steps - i]);
        free(v);
        return steps;
    }
    if (spacing == DT_SPACING_LEADING) {
        int64_t ratio = last / (steps + 1);
        for (int i = 0; i < steps; i++) out[i] = (int64_t)(steps - i) * ratio + steps_offset;
        return steps;
    }
    double ratio = (double)num_train / steps;
    int64_t n = dt_np_arange((double)num_train, 0, -ratio, NULL);
    if (n > steps + 1) return -1;
    double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    if (!v) return -1;
    dt_np_arange((double)num_train, 0, -ratio, v);
    for (int64_t i = 0; i < n; i++) out[i] = (int64_t)nearbyint(v[i]) - 1;
    free(v);
    return (int)n;
}

void dt_sched_install(dt_scheduler *s, double *timesteps, float *sigmas, int count)
{
    free(s->timesteps);
    free(s->sigmas);
    s->timesteps = timesteps;
    s->sigmas = sigmas;
    s->num_steps = count;
    s->step_index = 0;
    for (int i = 1; i < count; i++)
        if (timesteps[i] == timesteps[0]) { s->step_index = i; break; }
}

dt_status dt_sched_noise(dt_scheduler *s, float *noise, size_t n, dt_err *err)
{
    if (!s->gen)
        return dt_fail(err, DT_EINVAL, "%s: %s draws noise in step: set a generator first (dt_scheduler_set_generator)",
                       s->path, s->ops->class_name);
    if (s->noise_batch <= 1) {
        dt_rng_randn(s->gen, noise, n);
        return DT_OK;
    }
    float *all = malloc(n * (size_t)s->noise_batch * sizeof *all);
    if (!all) return dt_fail(err, DT_ENOMEM, "%s: out of memory for the batch's noise", s->path);
    dt_rng_randn(s->gen, all, n * (size_t)s->noise_batch);
    memcpy(noise, all + n * (size_t)s->noise_index, n * sizeof *noise);
    free(all);
    return DT_OK;
}

dt_status dt_sched_buf(float **buf, size_t *cap, size_t n, const char *path, dt_err *err)
{
    if (*buf && *cap >= n) return DT_OK;
    float *b = realloc(*buf, (n ? n : 1) * sizeof *b);
    if (!b) return dt_fail(err, DT_ENOMEM, "%s: out of memory (%zu values)", path, n);
    *buf = b;
    *cap = n;
    return DT_OK;
}

dt_vp_point dt_vp_point_at(const dt_scheduler *s, int i)
{
    float sg = s->sigmas[i];
    float a = 1.0f / sqrtf(sg * sg + 1.0f);
    float st = sg * a;
    return (dt_vp_point){a, st, torch_logf(a) - torch_logf(st)};
}

#define VP_PAR_N (1 << 16) /* below this, threads cost more than they save */

void dt_vp_convert(int data_pred, int pred, dt_vp_point p, const float *mo, const float *x, float *out, size_t n)
{
    const float a = p.alpha, sg = p.sigma;
    if (data_pred && pred == DT_PRED_EPSILON) {
        #pragma omp parallel for simd schedule(static) if (n >= VP_PAR_N)
        for (size_t i = 0; i < n; i++) out[i] = (x[i] - sg * mo[i]) / a;
    } else if (data_pred && pred == DT_PRED_V) {
        #pragma omp parallel for simd schedule(static) if (n >= VP_PAR_N)
        for (size_t i = 0; i < n; i++) out[i] = a * x[i] - sg * mo[i];
    } else if (!data_pred && pred == DT_PRED_SAMPLE) {
        #pragma omp parallel for simd schedule(static) if (n >= VP_PAR_N)
        for (size_t i = 0; i < n; i++) out[i] = (x[i] - a * mo[i]) / sg;
    } else if (!data_pred && pred == DT_PRED_V) {
        #pragma omp parallel for simd schedule(static) if (n >= VP_PAR_N)
        for (size_t i = 0; i < n; i++) out[i] = a * mo[i] + sg * x[i];
    } else if (out != mo) {
        memcpy(out, mo, n * sizeof *out);
    }
}
