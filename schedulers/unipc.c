/* UniPCMultistepScheduler of diffusers 0.30.3 (UniPC, arXiv 2302.04867): predictor UniP and
 * corrector UniC of orders 1-3 (solver_order up to 3 here), B(h) = h (bh1) or e^h - 1 (bh2),
 * data (predict_x0) or noise prediction, epsilon/sample/v_prediction, linspace/leading/trailing
 * spacing or Karras sigmas, final sigma zero or sigma_min, lower_order_final, disable_corrector.
 *
 * The corrector runs at the start of each step (from the second on) on the model output at the
 * predicted point, so it costs no extra model evaluation. Coefficients are f32 scalars as
 * torch computes them (log via torch_f32.h; expm1 and the small linear solves in double,
 * rounded to f32, where torch uses its own kernels: off by an ulp at most); the update is f32
 * elementwise in diffusers' order. Not implemented (fail at load): thresholding, solver_p,
 * solver_order > 3. */
#include "scheduler_impl.h"
#include "runtime/core/json.h"
#include "torch_f32.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UNI_MAX_ORDER 3
#define UNI_MAX_DISABLE 64

typedef struct {
    int order, pred, predict_x0, bh1, spacing, steps_offset, karras, final_sigma_min, lower_order_final;
    int disable[UNI_MAX_DISABLE], n_disable;
    int num_train;
    float *ac, *tsig, *log_sig;
    float *hist[UNI_MAX_ORDER], *last, *conv;
    size_t n;
    int lower_order_nums, this_order, have_last;
} unipc;

static void uni_destroy(void *impl)
{
    unipc *u = impl;
    if (!u) return;
    free(u->ac); free(u->tsig); free(u->log_sig);
    for (int i = 0; i < UNI_MAX_ORDER; i++) free(u->hist[i]);
    free(u->last); free(u->conv);
    free(u);
}

static dt_status read_disable(unipc *u, const cJSON *cfg, const char *path, dt_err *err)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(cfg, "disable_corrector");
    if (!a || cJSON_IsNull(a)) return DT_OK;
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) > UNI_MAX_DISABLE)
        return dt_fail(err, DT_EFORMAT, "%s: field \"disable_corrector\" must be a list of at most %d step indices", path, UNI_MAX_DISABLE);
    for (const cJSON *v = a->child; v; v = v->next) {
        if (!cJSON_IsNumber(v)) return dt_fail(err, DT_EFORMAT, "%s: field \"disable_corrector\" holds a non-number", path);
        u->disable[u->n_disable++] = v->valueint;
    }
    return DT_OK;
}

static dt_status uni_read(unipc *u, const cJSON *cfg, const char *path, dt_err *err)
{
    static const char *const types[] = {"bh1", "bh2", "midpoint", "heun", "logrho"};
    static const char *const finals[] = {"zero", "sigma_min"};
    int type;
    DT_TRY(dt_json_int(cfg, path, "solver_order", 1, 2, &u->order, err));
    if (u->order < 1 || u->order > UNI_MAX_ORDER)
        return dt_fail(err, DT_EUNSUPPORTED, "%s: field \"solver_order\" is %d; supported: 1, 2, 3", path, u->order);
    DT_TRY(dt_cfg_pred(cfg, path, &u->pred, err));
    DT_TRY(dt_json_bool(cfg, path, "predict_x0", 1, &u->predict_x0, err));
    DT_TRY(dt_cfg_choice(cfg, path, "solver_type", "bh2", types, 5, &type, err));
    u->bh1 = type == 0; /* diffusers maps the DPM-Solver names onto bh2 */
    DT_TRY(dt_json_bool(cfg, path, "lower_order_final", 1, &u->lower_order_final, err));
    DT_TRY(dt_json_bool(cfg, path, "use_karras_sigmas", 0, &u->karras, err));
    DT_TRY(dt_cfg_spacing(cfg, path, "linspace", &u->spacing, err));
    DT_TRY(dt_json_int(cfg, path, "steps_offset", 1, 0, &u->steps_offset, err));
    DT_TRY(dt_cfg_choice(cfg, path, "final_sigmas_type", "zero", finals, 2, &u->final_sigma_min, err));
    DT_TRY(dt_cfg_require_false(cfg, path, "thresholding", err));
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(cfg, "solver_p");
    if (sp && !cJSON_IsNull(sp)) return dt_fail(err, DT_EUNSUPPORTED, "%s: field \"solver_p\" is not supported", path);
    return read_disable(u, cfg, path, err);
}

static dt_status uni_create(dt_scheduler *s, const cJSON *cfg, const char *path, dt_err *err)
{
    unipc *u = calloc(1, sizeof *u);
    if (!u) return dt_fail(err, DT_ENOMEM, "%s: out of memory", path);
    s->impl = u;
    DT_TRY(uni_read(u, cfg, path, err));
    dt_beta_config bc;
    float *trained = NULL;
    DT_TRY(dt_beta_config_read(cfg, path, &bc, &trained, err));
    u->num_train = bc.num_train_timesteps;
    dt_status st = dt_alphas_cumprod_alloc(&bc, path, &u->ac, err);
    free(trained);
    if (st == DT_OK) st = dt_train_sigmas_alloc(u->ac, u->num_train, path, &u->tsig, &u->log_sig, err);
    s->init_noise_sigma = 1.0;
    return st;
}

/* Karras sigmas between the training extremes, timesteps rounded from them (UniPC and the
 * singlestep DPM-Solver share this). */
static void karras_int(const float *tsig, const float *log_sig, int T, int steps, double *sig, double *ts)
{
    dt_karras_sigmas(tsig[0], tsig[T - 1], steps, sig);
    for (int i = 0; i < steps; i++) ts[i] = nearbyint(dt_sigma_to_t(sig[i], log_sig, T));
}

static dt_status uni_set_timesteps(dt_scheduler *s, int steps, dt_err *err)
{
    unipc *u = s->impl;
    int64_t *it = malloc((size_t)(steps + 2) * sizeof *it);
    double *ts = malloc((size_t)(steps + 2) * sizeof *ts), *sg = malloc((size_t)(steps + 2) * sizeof *sg);
    float *sig = malloc((size_t)(steps + 3) * sizeof *sig);
    dt_status st = it && ts && sg && sig ? DT_OK : dt_fail(err, DT_ENOMEM, "%s: out of memory", s->path);
    int n = 0;
    if (st == DT_OK && u->karras) {
        karras_int(u->tsig, u->log_sig, u->num_train, steps, sg, ts);
        n = steps;
        for (int i = 0; i < n; i++) sig[i] = (float)sg[i];
        sig[n] = u->final_sigma_min ? sig[n - 1] : 0.0f;
    } else if (st == DT_OK) {
        n = dt_int_timesteps_multistep(u->spacing, u->num_train, u->num_train, steps, u->steps_offset, it);
        if (n < 1) st = dt_fail(err, DT_EINVAL, "%s: %d inference steps give no timesteps", s->path, steps);
        for (int i = 0; i < n; i++) {
            ts[i] = (double)it[i];
            sig[i] = (float)dt_np_interp(ts[i], u->tsig, u->num_train);
        }
        if (n > 0) sig[n] = u->final_sigma_min ? u->tsig[0] : 0.0f;
    }
    free(it);
    free(sg);
    if (st != DT_OK) { free(ts); free(sig); return st; }
    dt_sched_install(s, ts, sig, n);
    u->lower_order_nums = 0;
    u->have_last = 0;
    return DT_OK;
}

/* ---- step ---- */

/* Solves the k x k system A rho = b (Gaussian elimination with partial pivoting, double). */
static void solve(int k, double A[UNI_MAX_ORDER][UNI_MAX_ORDER], double *b, float *rho)
{
    for (int c = 0; c < k; c++) {
        int p = c;
        for (int r = c + 1; r < k; r++) if (fabs(A[r][c]) > fabs(A[p][c])) p = r;
        for (int j = 0; j < k; j++) { double t = A[c][j]; A[c][j] = A[p][j]; A[p][j] = t; }
        double t = b[c]; b[c] = b[p]; b[p] = t;
        for (int r = c + 1; r < k; r++) {
            double f = A[r][c] / A[c][c];
            for (int j = c; j < k; j++) A[r][j] -= f * A[c][j];
            b[r] -= f * b[c];
        }
    }
    double x[UNI_MAX_ORDER];
    for (int r = k - 1; r >= 0; r--) {
        double v = b[r];
        for (int j = r + 1; j < k; j++) v -= A[r][j] * x[j];
        x[r] = v / A[r][r];
    }
    for (int i = 0; i < k; i++) rho[i] = (float)x[i];
}

typedef struct {
    float cx, c0, cb;           /* x_t = cx*x - c0*m0 - cb*(sum rho_k D1_k [+ rho_t D1_t]) */
    float inv_rk[UNI_MAX_ORDER]; /* D1_k = (m_k - m0) / r_k */
    float rho[UNI_MAX_ORDER + 1];
    int k;                       /* number of history differences */
} uni_coef;

/* The shared part of UniP/UniC from point s0 (index is0) to t (index it): hist_idx[k] gives
 * the step index of each older output. corrector: rho from the full system. */
static uni_coef coefficients(const dt_scheduler *s, const unipc *u, int it, int is0, int order, int corrector)
{
    dt_vp_point t = dt_vp_point_at(s, it), s0 = dt_vp_point_at(s, is0);
    float h = t.lambda - s0.lambda;
    uni_coef c = {.k = order - 1};
    float rks[UNI_MAX_ORDER + 1];
    for (int i = 1; i < order; i++) {
        dt_vp_point si = dt_vp_point_at(s, is0 - i);
        float rk = (si.lambda - s0.lambda) / h;
        rks[i - 1] = rk;
        c.inv_rk[i - 1] = rk;
    }
    rks[order - 1] = 1.0f;
    float hh = u->predict_x0 ? -h : h;
    float phi1 = (float)expm1((double)hh);
    float phik = phi1 / hh - 1.0f;
    float bh = u->bh1 ? hh : (float)expm1((double)hh);
    double b[UNI_MAX_ORDER + 1];
    long fact = 1;
    for (int i = 1; i <= order; i++) {
        b[i - 1] = (float)(phik * (float)fact / bh);
        fact *= i + 1;
        phik = phik / hh - (float)(1.0 / (double)fact);
    }
    double A[UNI_MAX_ORDER][UNI_MAX_ORDER];
    int m = corrector ? order : order - 1;
    for (int j = 0; j < m && j < UNI_MAX_ORDER; j++)
        for (int k = 0; k < m; k++) A[j][k] = pow((double)rks[k], j);
    if (!corrector) {
        if (order == 2) c.rho[0] = 0.5f;
        else if (order > 2) solve(m, A, b, c.rho);
    } else {
        if (order == 1) c.rho[0] = 0.5f;
        else solve(m, A, b, c.rho);
    }
    if (u->predict_x0) {
        c.cx = t.sigma / s0.sigma;
        c.c0 = t.alpha * phi1;
        c.cb = t.alpha * bh;
    } else {
        c.cx = t.alpha / s0.alpha;
        c.c0 = t.sigma * phi1;
        c.cb = t.sigma * bh;
    }
    return c;
}

/* out = cx*x - c0*m0 - cb*res, res = sum_k rho_k (m_k - m0)/r_k [+ rho_t (mt - m0)]. */
static void apply(const uni_coef *c, const float *x, const float *m0, const float *const *mk, const float *mt,
                  float *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float base = c->cx * x[i] - c->c0 * m0[i];
        float res = 0;
        int any = 0;
        for (int k = 0; k < c->k; k++) {
            float d = (mk[k][i] - m0[i]) / c->inv_rk[k];
            res = any ? res + c->rho[k] * d : c->rho[k] * d;
            any = 1;
        }
        if (mt) {
            float d = c->rho[c->k] * (mt[i] - m0[i]);
            res = any ? res + d : d;
            any = 1;
        }
        out[i] = any ? base - c->cb * res : base;
    }
}

static dt_status ensure(unipc *u, size_t n, const char *path, dt_err *err)
{
    if (u->n == n && u->conv) return DT_OK;
    if (u->lower_order_nums > 0) return dt_fail(err, DT_EINVAL, "%s: step got %zu elements, earlier steps %zu", path, n, u->n);
    for (int i = 0; i < UNI_MAX_ORDER; i++) { free(u->hist[i]); u->hist[i] = NULL; }
    free(u->last); free(u->conv);
    u->last = u->conv = NULL;
    u->n = 0;
    size_t m = n ? n : 1;
    for (int i = 0; i < u->order; i++)
        if (!(u->hist[i] = malloc(m * sizeof(float)))) return dt_fail(err, DT_ENOMEM, "%s: out of memory", path);
    if (!(u->last = malloc(m * sizeof(float))) || !(u->conv = malloc(m * sizeof(float))))
        return dt_fail(err, DT_ENOMEM, "%s: out of memory", path);
    u->n = n;
    return DT_OK;
}

static int corrector_disabled(const unipc *u, int step)
{
    for (int i = 0; i < u->n_disable; i++) if (u->disable[i] == step) return 1;
    return 0;
}

static dt_status uni_step(dt_scheduler *s, const float *mo, const float *x, float *out, size_t n, dt_err *err)
{
    unipc *u = s->impl;
    DT_TRY(ensure(u, n, s->path, err));
    int i = s->step_index, K = u->order;
    dt_vp_convert(u->predict_x0, u->pred, dt_vp_point_at(s, i), mo, x, u->conv, n);
    const float *sample = x;
    if (i > 0 && !corrector_disabled(u, i - 1) && u->have_last) {
        /* UniC from the previous point to this one, with this step's output */
        uni_coef c = coefficients(s, u, i, i - 1, u->this_order, 1);
        const float *mk[UNI_MAX_ORDER];
        for (int k = 0; k < c.k; k++) mk[k] = u->hist[K - 2 - k];
        apply(&c, u->last, u->hist[K - 1], mk, u->conv, u->last, n); /* the corrected sample */
        sample = u->last;
    } else {
        memcpy(u->last, x, n * sizeof(float));
        sample = u->last;
    }
    float *slot = u->hist[0];
    for (int k = 0; k < K - 1; k++) u->hist[k] = u->hist[k + 1];
    u->hist[K - 1] = slot;
    memcpy(slot, u->conv, n * sizeof(float));
    int order = u->lower_order_final ? (K < s->num_steps - i ? K : s->num_steps - i) : K;
    u->this_order = order < u->lower_order_nums + 1 ? order : u->lower_order_nums + 1;
    u->have_last = 1;
    uni_coef c = coefficients(s, u, i + 1, i, u->this_order, 0);
    const float *mk[UNI_MAX_ORDER];
    for (int k = 0; k < c.k; k++) mk[k] = u->hist[K - 2 - k];
    apply(&c, sample, u->hist[K - 1], mk, NULL, out, n);
    if (u->lower_order_nums < K) u->lower_order_nums++;
    s->step_index++;
    return DT_OK;
}

const dt_solver_ops dt_unipc_ops = {
    .class_name = "UniPCMultistepScheduler", .karras = 1, .create = uni_create, .set_timesteps = uni_set_timesteps,
    .step = uni_step, .destroy = uni_destroy,
};
