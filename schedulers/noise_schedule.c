/* Beta schedules and alphas_cumprod as diffusers builds them in torch f32, and the numpy
 * spacing helpers the schedulers' set_timesteps use, reproduced to the last bit:
 *  - torch.linspace (f32, AVX2 kernel): step = (end - start) / (n - 1) in f32; an element is
 *    fma(step, i, start) before the midpoint and fma(-step, n - 1 - i, end) after it, except
 *    that blocks of 8 inside the vectorized part (pairs of blocks while 16 elements remain)
 *    take the block's first value b and fill b + j*step (rounded twice).
 *  - torch.cumprod on the CPU accumulates in double and rounds each prefix to f32.
 *  - betas_for_alpha_bar is Python float (double) math rounded to f32 at the end. */
#include "scheduler_impl.h"
#include "runtime/core/json.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static float linspace_point(float start, float end, float step, int64_t i, int64_t n)
{
    return i < n / 2 ? fmaf(step, (float)i, start) : fmaf(-step, (float)(n - i - 1), end);
}

void dt_torch_linspace_f32(float start, float end, int64_t n, float *out)
{
    if (n <= 0) return;
    if (n == 1) { out[0] = start; return; }
    float step = (end - start) / (float)(n - 1);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        for (int k = 0; k < 16; k += 8) {
            float b = linspace_point(start, end, step, i + k, n);
            for (int j = 0; j < 8; j++) out[i + k + j] = j ? b + (float)j * step : b;
        }
    }
    for (; i < n; i++) out[i] = linspace_point(start, end, step, i, n);
}

void dt_np_linspace(double start, double stop, int64_t num, double *out)
{
    if (num <= 0) return;
    if (num == 1) { out[0] = start; return; }
    double delta = stop - start, step = delta / (double)(num - 1);
    for (int64_t i = 0; i < num; i++)
        out[i] = (step == 0 ? (double)i / (double)(num - 1) * delta : (double)i * step) + start;
    out[num - 1] = stop;
}

int64_t dt_np_arange(double start, double stop, double step, double *out)
{
    double len = (stop - start) / step;
    int64_t n = len <= 0 ? 0 : (int64_t)ceil(len);
    if (!out || n == 0) return n;
    out[0] = start;
    if (n > 1) {
        /* numpy fills from the first two values: delta is re-derived from start + step */
        double second = start + step, delta = second - start;
        out[1] = second;
        for (int64_t i = 2; i < n; i++) out[i] = start + (double)i * delta;
    }
    return n;
}

dt_status dt_beta_config_read(const cJSON *cfg, const char *path, dt_beta_config *c, float **trained, dt_err *err)
{
    return dt_beta_config_read_dflt(cfg, path, c, trained, 0.0001, 0.02, "linear", err);
}

dt_status dt_beta_config_read_dflt(const cJSON *cfg, const char *path, dt_beta_config *c, float **trained,
                                   double start, double end, const char *schedule, dt_err *err)
{
    *c = (dt_beta_config){0};
    *trained = NULL;
    DT_TRY(dt_json_int(cfg, path, "num_train_timesteps", 1, 1000, &c->num_train_timesteps, err));
    if (c->num_train_timesteps < 2 || c->num_train_timesteps > 1000000)
        return dt_fail(err, DT_EFORMAT, "%s: field \"num_train_timesteps\" must be in [2, 1000000], got %d",
                       path, c->num_train_timesteps);
    DT_TRY(dt_json_num(cfg, path, "beta_start", 1, start, &c->beta_start, err));
    DT_TRY(dt_json_num(cfg, path, "beta_end", 1, end, &c->beta_end, err));
    /* a beta is a variance fraction: in (0, 1), or alphas and sigmas go NaN (a black image) */
    if (!(c->beta_start > 0 && c->beta_start < 1))
        return dt_fail(err, DT_EFORMAT, "%s: field \"beta_start\" is %g, expected a number in (0, 1)", path, c->beta_start);
    if (!(c->beta_end > 0 && c->beta_end < 1))
        return dt_fail(err, DT_EFORMAT, "%s: field \"beta_end\" is %g, expected a number in (0, 1)", path, c->beta_end);
    DT_TRY(dt_json_str(cfg, path, "beta_schedule", schedule, c->beta_schedule, sizeof c->beta_schedule, err));
    DT_TRY(dt_json_bool(cfg, path, "rescale_betas_zero_snr", 0, &c->rescale_betas_zero_snr, err));
    const cJSON *tb = cJSON_GetObjectItemCaseSensitive(cfg, "trained_betas");
    if (tb && !cJSON_IsNull(tb)) {
        int n = cJSON_GetArraySize(tb);
        if (!cJSON_IsArray(tb) || n != c->num_train_timesteps)
            return dt_fail(err, DT_EFORMAT, "%s: field \"trained_betas\" must be an array of num_train_timesteps (%d) numbers",
                           path, c->num_train_timesteps);
        float *b = malloc((size_t)n * sizeof *b);
        if (!b) return dt_fail(err, DT_ENOMEM, "%s: out of memory", path);
        int i = 0;
        for (const cJSON *v = tb->child; v; v = v->next, i++) {
            if (!cJSON_IsNumber(v) || !(v->valuedouble > 0 && v->valuedouble < 1)) {
                free(b);
                return dt_fail(err, DT_EFORMAT, "%s: field \"trained_betas\" item %d is not a number in (0, 1)", path, i);
            }
            b[i] = (float)v->valuedouble;
        }
        c->trained_betas = *trained = b;
    } else if (strcmp(c->beta_schedule, "linear") && strcmp(c->beta_schedule, "scaled_linear") &&
               strcmp(c->beta_schedule, "squaredcos_cap_v2")) {
        return dt_fail(err, DT_EUNSUPPORTED,
                       "%s: field \"beta_schedule\" is \"%s\"; supported: linear, scaled_linear, squaredcos_cap_v2",
                       path, c->beta_schedule);
    }
    return DT_OK;
}

static double alpha_bar_cosine(double t)
{
    double c = cos((t + 0.008) / 1.008 * 3.141592653589793 / 2);
    return c * c;
}

static void cumprod_f32(const float *x, float *out, int n)
{
    double acc = 1.0;
    for (int i = 0; i < n; i++) {
        acc *= x[i];
        out[i] = (float)acc;
    }
}

/* rescale_zero_terminal_snr (arXiv 2305.08891, Algorithm 1) in f32 as diffusers does it. */
static void rescale_zero_snr(float *betas, float *tmp, int n)
{
    for (int i = 0; i < n; i++) betas[i] = 1.0f - betas[i];
    cumprod_f32(betas, tmp, n);
    for (int i = 0; i < n; i++) tmp[i] = sqrtf(tmp[i]);
    float s0 = tmp[0], sT = tmp[n - 1];
    float scale = s0 / (s0 - sT);
    for (int i = 0; i < n; i++) {
        float v = (tmp[i] - sT) * scale;
        tmp[i] = v * v; /* alphas_bar */
    }
    betas[0] = 1.0f - tmp[0];
    for (int i = n - 1; i >= 1; i--) betas[i] = 1.0f - tmp[i] / tmp[i - 1];
}

dt_status dt_alphas_cumprod(const dt_beta_config *c, const char *path, float *ac, dt_err *err)
{
    int n = c->num_train_timesteps;
    float *betas = malloc((size_t)n * 2 * sizeof *betas);
    if (!betas) return dt_fail(err, DT_ENOMEM, "%s: out of memory", path);
    float *tmp = betas + n;
    if (c->trained_betas) {
        memcpy(betas, c->trained_betas, (size_t)n * sizeof *betas);
    } else if (!strcmp(c->beta_schedule, "linear")) {
        dt_torch_linspace_f32((float)c->beta_start, (float)c->beta_end, n, betas);
    } else if (!strcmp(c->beta_schedule, "scaled_linear")) {
        dt_torch_linspace_f32((float)sqrt(c->beta_start), (float)sqrt(c->beta_end), n, betas);
        for (int i = 0; i < n; i++) betas[i] = betas[i] * betas[i];
    } else { /* squaredcos_cap_v2 */
        for (int i = 0; i < n; i++) {
            double t1 = (double)i / n, t2 = (double)(i + 1) / n;
            double b = 1 - alpha_bar_cosine(t2) / alpha_bar_cosine(t1);
            betas[i] = (float)(b < 0.999 ? b : 0.999);
        }
    }
    const char *field = c->trained_betas ? "trained_betas" : "beta_end";
    for (int i = 0; i < n; i++)
        if (!(betas[i] > 0.0f && betas[i] < 1.0f)) { /* e.g. beta_start 1e-50 rounds to 0 in f32 */
            double b = betas[i];
            free(betas);
            return dt_fail(err, DT_EFORMAT, "%s: field \"%s\": the schedule's beta at step %d is %g in f32, outside (0, 1)",
                           path, i == 0 && !c->trained_betas ? "beta_start" : field, i, b);
        }
    if (c->rescale_betas_zero_snr) rescale_zero_snr(betas, tmp, n);
    for (int i = 0; i < n; i++) tmp[i] = 1.0f - betas[i];
    cumprod_f32(tmp, ac, n);
    if (c->rescale_betas_zero_snr) ac[n - 1] = 0x1p-24f;
    free(betas);
    for (int i = 0; i < n; i++) /* sigma_t = sqrt((1 - ac) / ac): infinite or NaN unless ac is in (0, 1] */
        if (!(ac[i] > 0.0f && ac[i] <= 1.0f))
            return dt_fail(err, DT_EFORMAT, "%s: field \"%s\": alphas_cumprod reaches %g at step %d of %d, so the sigmas "
                           "would be infinite or NaN; use smaller betas", path, field, (double)ac[i], i, n);
    return DT_OK;
}

dt_status dt_alphas_cumprod_alloc(const dt_beta_config *c, const char *path, float **out, dt_err *err)
{
    *out = malloc((size_t)c->num_train_timesteps * sizeof **out);
    if (!*out) return dt_fail(err, DT_ENOMEM, "%s: out of memory", path);
    dt_status st = dt_alphas_cumprod(c, path, *out, err);
    if (st != DT_OK) { free(*out); *out = NULL; }
    return st;
}
