/* DiTFastAttn plan calibration: the greedy per-step, per-layer search (see fastattn.h). */
#include "fastattn.h"
#include "runtime/core/arena.h"
#include "runtime/models/denoiser.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const dt_fa_method order[] = {DT_FA_AST, DT_FA_WARS_ASC, DT_FA_WARS, DT_FA_ASC};
#define NCAND 4 /* index NCAND = "full" */

typedef enum { MODE_REAL = 0, MODE_REF, MODE_TRIAL } calib_mode;

struct dt_fa_calib {
    dit_attn_hook hook; /* first: wraps the plan runtime's hook */
    dt_attn_plan *plan;
    dt_fastattn *fa;
    dt_fa_calib_opts o;
    int cfg;
    unsigned char *floor; /* [layers][steps]: first candidate index still allowed */
    calib_mode mode;
    int layer, full_ok;
    float **rec;          /* per layer: its decided self-attention output at this step */
    float *pend_full, *pend_cand;
    float *x_start, *x_save; /* residual streams entering block `start` / saved by a trial */
    int start;                /* execution position of the first block a trial runs */
    dt_denoiser_resume resume;
    dt_denoiser_info info;    /* the model's (plan rows: spatial, then temporal) */
    size_t n;             /* B*N*C of the current shape */
    float *ref, *trial, *last; /* model outputs: all-full, a trial, the last accepted trial */
    float *check;              /* verify: a plain forward of a trial's plan */
    size_t nout;
    long trials, mismatches;
    double blocks;           /* blocks run by trials, in units of whole forwards */
};

/* ---- the model: blocks in execution order (spatial and temporal blocks alternate in a video
 * model), plan rows spatial 0..L-1 then temporal 0..L-1 (dt_denoiser_row_at) ---- */

static int exec_pos(const dt_fa_calib *c, int row) { return dt_denoiser_exec_pos(&c->info, row); }
static int row_at(const dt_fa_calib *c, int e) { return dt_denoiser_row_at(&c->info, e); }

/* Partial forwards from execution position `from` (loading x_start when from > 0), saving the
 * stream entering `save_at` into save; from < 0: plain forwards. */
static void set_resume(dt_fa_calib *c, dt_denoiser *m, int from, int save_at, float *save)
{
    c->resume = (dt_denoiser_resume){from, c->x_start, save_at, save};
    dt_denoiser_set_resume(m, from < 0 ? NULL : &c->resume);
}

static dt_status model_forward(const dt_fa_calib *c, dt_denoiser *m, const dt_denoiser_inputs *in, dt_arena *a,
                               dt_tensor *o, dt_err *err)
{
    return dt_denoiser_forward(m, in, a, o, err);
}

double dt_fa_loss_rel(const float *a, const float *ref, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        double x = a[i], y = ref[i], m = x > y ? x : y, r = fabs(x - y) / (m + 1e-6);
        s += r < 0 ? 0 : (r > 10 ? 10 : r);
    }
    return n ? s / n : 0;
}

double dt_fa_loss_ssim(const float *a, const float *ref, int planes, int h, int w)
{
    size_t n = (size_t)planes * h * w;
    float lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++) { lo = ref[i] < lo ? ref[i] : lo; hi = ref[i] > hi ? ref[i] : hi; }
    double L = hi > lo ? hi - lo : 1, c1 = (0.01 * L) * (0.01 * L), c2 = (0.03 * L) * (0.03 * L), sum = 0;
    int k = h < 7 || w < 7 ? (h < w ? h : w) : 7;
    long cnt = 0;
    for (int p = 0; p < planes; p++)
        for (int y = 0; y + k <= h; y++)
            for (int x = 0; x + k <= w; x++) {
                double ma = 0, mb = 0, va = 0, vb = 0, cv = 0;
                for (int dy = 0; dy < k; dy++)
                    for (int dx = 0; dx < k; dx++) {
                        size_t i = ((size_t)p * h + y + dy) * w + x + dx;
                        ma += a[i]; mb += ref[i];
                    }
                ma /= k * k; mb /= k * k;
                for (int dy = 0; dy < k; dy++)
                    for (int dx = 0; dx < k; dx++) {
                        size_t i = ((size_t)p * h + y + dy) * w + x + dx;
                        double da = a[i] - ma, db = ref[i] - mb;
                        va += da * da; vb += db * db; cv += da * db;
                    }
                va /= k * k - 1 > 0 ? k * k - 1 : 1; vb /= k * k - 1 > 0 ? k * k - 1 : 1; cv /= k * k - 1 > 0 ? k * k - 1 : 1;
                sum += (2 * ma * mb + c1) * (2 * cv + c2) / ((ma * ma + mb * mb + c1) * (va + vb + c2));
                cnt++;
            }
    return cnt ? 1 - sum / cnt : 0;
}

static dt_status ensure(float **p, size_t n, dt_err *err)
{
    if (*p) return DT_OK;
    *p = malloc(n * sizeof(float));
    return *p ? DT_OK : dt_fail(err, DT_ENOMEM, "calibrate-attn: out of memory");
}

/* Wraps the plan runtime: records outputs (reference), replays decided layers (trials). */
static dt_status calib_attn(dit_attn_hook *h, const dit_self_attn_args *a, dt_err *err)
{
    dt_fa_calib *c = (dt_fa_calib *)h;
    dit_attn_hook *inner = dt_fastattn_hook(c->fa);
    int l = a->layer;
    size_t n = (size_t)a->B * a->N * a->C;
    if (c->mode == MODE_REAL) return inner->self_attn(inner, a, err);
    if (n != c->n) return dt_fail(err, DT_EINVAL, "calibrate-attn: the token count changed between forwards");
    if (c->mode == MODE_REF) {
        DT_TRY(inner->self_attn(inner, a, err));
        DT_TRY(ensure(&c->rec[l], n, err));
        memcpy(c->rec[l], a->out->data, n * sizeof(float));
        return DT_OK;
    }
    if (exec_pos(c, l) < exec_pos(c, c->layer)) { /* decided: the same input gives the recorded output */
        memcpy(a->out->data, c->rec[l], n * sizeof(float));
        return DT_OK;
    }
    if (l == c->layer && !c->full_ok) { /* full output for this input, kept in case all candidates fail */
        DT_TRY(dit_self_attention_full(a, err));
        memcpy(c->pend_full, a->out->data, n * sizeof(float));
        c->full_ok = 1;
    }
    DT_TRY(inner->self_attn(inner, a, err));
    if (l == c->layer) memcpy(c->pend_cand, a->out->data, n * sizeof(float));
    return DT_OK;
}

dt_status dt_fa_calib_create(dt_attn_plan *plan, int cfg, const dt_fa_calib_opts *o, dt_fa_calib **out, dt_err *err)
{
    dt_fa_calib *c = calloc(1, sizeof *c);
    if (!c) return dt_fail(err, DT_ENOMEM, "out of memory");
    c->hook.self_attn = calib_attn;
    c->plan = plan;
    c->o = *o;
    c->cfg = cfg;
    c->floor = calloc((size_t)plan->layers * plan->steps, 1);
    c->rec = calloc((size_t)plan->layers, sizeof *c->rec);
    dt_status s = c->floor && c->rec ? dt_fastattn_create(plan, cfg, &c->fa, err) : dt_fail(err, DT_ENOMEM, "out of memory");
    if (s != DT_OK) { dt_fa_calib_free(c); return s; }
    dt_fastattn_set_calibration(c->fa, 1, 0);
    *out = c;
    return DT_OK;
}

void dt_fa_calib_free(dt_fa_calib *c)
{
    if (!c) return;
    for (int l = 0; c->rec && l < c->plan->layers; l++) free(c->rec[l]);
    free(c->rec);
    free(c->floor);
    free(c->pend_full); free(c->pend_cand); free(c->ref); free(c->trial); free(c->last);
    free(c->x_start); free(c->x_save); free(c->check);
    dt_fastattn_free(c->fa);
    free(c);
}

void dt_fa_calib_next_prompt(dt_fa_calib *c)
{
    for (int l = 0; l < c->plan->layers; l++)
        for (int t = 0; t < c->plan->steps; t++) {
            dt_fa_method m = dt_attn_plan_at(c->plan, l, t);
            int k = 0;
            while (k < NCAND && order[k] != m) k++;
            c->floor[(size_t)l * c->plan->steps + t] = (unsigned char)k;
        }
    dt_fastattn_reset(c->fa);
}

long dt_fa_calib_trials(const dt_fa_calib *c) { return c->trials; }
long dt_fa_calib_mismatches(const dt_fa_calib *c) { return c->mismatches; }
double dt_fa_calib_trial_forwards(const dt_fa_calib *c) { return c->blocks; }

static int usable(const dt_fa_calib *c, dt_fa_method m, int l)
{
    if ((m == DT_FA_ASC || m == DT_FA_WARS_ASC) && !c->cfg) return 0;
    if (m == DT_FA_AST) return dt_fastattn_has_output(c->fa, l);
    if (m == DT_FA_WARS || m == DT_FA_WARS_ASC) return dt_fastattn_has_residual(c->fa, l);
    return 1;
}

/* SSIM over the [h, w] planes of the output ([B, C, H, W] or video [B, C, F, H, W]). */
static double loss(const dt_fa_calib *c, const dt_tensor *o)
{
    int h = (int)o->shape[o->ndim - 2], w = (int)o->shape[o->ndim - 1];
    if (c->o.metric == DT_FA_METRIC_SSIM) return dt_fa_loss_ssim(c->trial, c->ref, (int)(c->nout / ((size_t)h * w)), h, w);
    return dt_fa_loss_rel(c->trial, c->ref, c->nout);
}

static dt_status forward(dt_fa_calib *c, dt_denoiser *m, const dt_denoiser_inputs *in, dt_arena *a, float *dst, dt_tensor *o, dt_err *err)
{
    dt_arena_reset(a);
    o->data = dst;
    return model_forward(c, m, in, a, o, err);
}

/* A trial for layer l: blocks from `start` on (the stream entering it is known exactly); the
 * stream entering l is saved on the way, so the next trial starts there. */
static dt_status trial(dt_fa_calib *c, int l, dt_denoiser *m, const dt_denoiser_inputs *in, dt_arena *a, dt_tensor *o, dt_err *err)
{
    int e = exec_pos(c, l);
    set_resume(c, m, c->start, e, c->start < e ? c->x_save : NULL);
    dt_status s = forward(c, m, in, a, c->trial, o, err);
    set_resume(c, m, -1, 0, NULL);
    c->trials++;
    c->blocks += (double)(c->plan->layers - c->start) / c->plan->layers;
    if (s == DT_OK && c->o.verify) { /* the same plan as a plain forward: no resume, no replay */
        calib_mode mode = c->mode;
        c->mode = MODE_REAL;
        s = ensure(&c->check, c->nout, err);
        if (s == DT_OK) s = forward(c, m, in, a, c->check, o, err);
        if (s == DT_OK && memcmp(c->check, c->trial, c->nout * sizeof(float))) c->mismatches++;
        o->data = c->trial;
        c->mode = mode;
    }
    if (s == DT_OK && c->start < e) {
        float *t = c->x_start;
        c->x_start = c->x_save;
        c->x_save = t;
        c->start = e;
    }
    return s;
}

/* The greedy decisions of one step; the pipeline's own forward follows. */
static dt_status search_step(dt_fa_calib *c, int t, dt_denoiser *m, const dt_denoiser_inputs *in, dt_arena *a, dt_err *err)
{
    dt_attn_plan *p = c->plan;
    const dt_tensor *hs = in->hidden_states;
    int oc = c->info.out_channels, patch = c->info.patch_size, inner = c->info.inner, ic = c->info.in_channels;
    int64_t os[5];
    for (int d = 0; d < hs->ndim; d++) os[d] = hs->shape[d];
    os[1] = oc;
    dt_tensor o = dt_tensor_view(NULL, DT_F32, hs->ndim, os);
    size_t nout = (size_t)dt_tensor_numel(&o);
    /* a self-attention call's B·N·C: every token of every frame */
    size_t n = (size_t)dt_tensor_numel(hs) / ic / ((size_t)patch * patch) * inner;
    if (c->n != n || c->nout != nout) {
        for (int l = 0; l < p->layers; l++) { free(c->rec[l]); c->rec[l] = NULL; }
        free(c->pend_full); free(c->pend_cand); free(c->ref); free(c->trial); free(c->last);
        free(c->x_start); free(c->x_save); free(c->check);
        c->pend_full = c->pend_cand = c->ref = c->trial = c->last = c->x_start = c->x_save = c->check = NULL;
        c->n = n;
        c->nout = nout;
    }
    DT_TRY(ensure(&c->pend_full, n, err));
    DT_TRY(ensure(&c->pend_cand, n, err));
    DT_TRY(ensure(&c->ref, nout, err));
    DT_TRY(ensure(&c->trial, nout, err));
    DT_TRY(ensure(&c->last, nout, err));
    DT_TRY(ensure(&c->x_start, n, err));
    DT_TRY(ensure(&c->x_save, n, err));
    for (int l = 0; l < p->layers; l++) p->m[(size_t)l * p->steps + t] = DT_FA_FULL;
    dt_fastattn_set_calibration(c->fa, 1, 1);
    c->mode = MODE_REF;
    dt_status s = forward(c, m, in, a, c->ref, &o, err);
    c->start = 0;
    int kept = 0;
    for (int e = 0; s == DT_OK && e < p->layers; e++) {
        int l = row_at(c, e);
        double delta = c->o.threshold * (e + 1) / p->layers; /* by depth in the forward */
        c->mode = MODE_TRIAL;
        c->layer = l;
        c->full_ok = 0;
        int accepted = 0;
        for (int k = c->floor[(size_t)l * p->steps + t]; k < NCAND && s == DT_OK && !accepted; k++) {
            if (!usable(c, order[k], l)) continue;
            p->m[(size_t)l * p->steps + t] = (unsigned char)order[k];
            s = trial(c, l, m, in, a, &o, err);
            if (s == DT_OK && loss(c, &o) < delta) {
                accepted = 1;
                memcpy(c->last, c->trial, nout * sizeof(float));
            }
            else p->m[(size_t)l * p->steps + t] = DT_FA_FULL;
        }
        kept += accepted;
        /* what layer l now outputs for the trials of the layers after it */
        if (accepted) memcpy(c->rec[l], c->pend_cand, n * sizeof(float));
        else if (c->full_ok) memcpy(c->rec[l], c->pend_full, n * sizeof(float));
        else if (kept) { /* no trial ran and an earlier layer changed: compute its full output */
            s = trial(c, l, m, in, a, &o, err);
            if (s == DT_OK) memcpy(c->rec[l], c->pend_full, n * sizeof(float));
        }
    }
    c->mode = MODE_REAL;
    if (s == DT_OK && c->o.verify) { /* still frozen: the decided plan without replays */
        s = forward(c, m, in, a, c->trial, &o, err);
        if (s == DT_OK && memcmp(c->trial, kept ? c->last : c->ref, nout * sizeof(float))) c->mismatches++;
    }
    dt_fastattn_set_calibration(c->fa, 1, 0);
    return s;
}

dt_status dt_fa_calib_step(void *user, int step, dt_denoiser *tr, const dt_denoiser_inputs *inputs, dt_arena *arena,
                           dt_err *err)
{
    dt_fa_calib *c = user;
    const dt_attn_plan *p = c->plan;
    c->info = *dt_denoiser_get_info(tr);
    if (!c->info.temporal_layers && p->temporal)
        return dt_fail(err, DT_EINVAL, "calibrate-attn: a video plan (temporal layers) for an image model");
    if (c->info.temporal_layers)
        DT_TRY(dt_attn_plan_check(p, c->info.spatial_layers, c->info.temporal_layers, p->steps, err));
    if (step >= p->steps) return dt_fail(err, DT_EINVAL, "calibrate-attn: step %d beyond the plan's %d steps", step, p->steps);
    if (dt_fastattn_set_step(c->fa, step, err) != DT_OK) return DT_EINVAL;
    dt_denoiser_set_attn_hook(tr, &c->hook);
    if (step == 0) { /* always full: it fills the caches */
        dt_fastattn_reset(c->fa);
        c->mode = MODE_REAL;
        return DT_OK;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long before = c->trials;
    DT_TRY(search_step(c, step, tr, inputs, arena, err));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (c->o.log) {
        int cnt[DT_FA_COUNT] = {0};
        char line[256];
        for (int l = 0; l < p->layers; l++) cnt[dt_attn_plan_at(p, l, step)]++;
        snprintf(line, sizeof line, "calibrate-attn: step %d/%d: %ld trials, %.1f s; full %d, ast %d, wars+asc %d, wars %d, asc %d",
                step + 1, p->steps, c->trials - before, (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9,
                cnt[DT_FA_FULL], cnt[DT_FA_AST], cnt[DT_FA_WARS_ASC], cnt[DT_FA_WARS], cnt[DT_FA_ASC]);
        c->o.log(line, c->o.log_user);
    }
    return DT_OK;
}
