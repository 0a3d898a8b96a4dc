#include "model_search.h"
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const dt_model_search *s;
    int evals;
    float **ref; /* all-member-0 image per prompt */
    size_t npix;
    int generations;
} search_ctx;

/* One generation of prompt `k` with the given schedule; the image is returned (caller frees). */
static dt_status run(search_ctx *c, int k, const int *ids, float **image, double *seconds, dt_err *err)
{
    dt_gen_request r = c->s->base;
    r.prompt = c->s->prompts[k];
    r.model_ids = ids;
    r.n_model_ids = c->evals;
    r.batch = 1;
    dt_gen_result res;
    DT_TRY(dt_pipeline_generate(c->s->p, &r, &res, err));
    c->npix = (size_t)3 * res.width * res.height;
    *image = res.pixels;
    if (seconds) *seconds = res.seconds_sampling;
    c->generations++;
    return DT_OK;
}

/* Mean PSNR (on the [-1, 1] decoded scale, peak-to-peak 2) against the references. */
static dt_status quality(search_ctx *c, const int *ids, double *psnr, dt_err *err)
{
    double sum = 0;
    for (int k = 0; k < c->s->nprompts; k++) {
        float *img;
        DT_TRY(run(c, k, ids, &img, NULL, err));
        double mse = 0;
        for (size_t i = 0; i < c->npix; i++) mse += ((double)img[i] - c->ref[k][i]) * ((double)img[i] - c->ref[k][i]);
        free(img);
        mse /= (double)c->npix;
        sum += mse > 0 ? 10 * log10(4.0 / mse) : 200.0; /* identical counts as 200 dB */
    }
    *psnr = sum / c->s->nprompts;
    return DT_OK;
}

static double latency(const dt_model_search_result *o, const int *ids, int n)
{
    double t = 0;
    for (int i = 0; i < n; i++) t += o->latency[ids[i]];
    return t;
}

static dt_status measure(search_ctx *c, dt_model_search_result *o, int *ids, dt_err *err)
{
    int n = c->evals;
    for (int m = 0; m < o->nzoo; m++) {
        if (c->s->latency) {
            o->latency[m] = c->s->latency[m];
            if (m) continue;
        }
        for (int i = 0; i < n; i++) ids[i] = m;
        float *img;
        double sec;
        DT_TRY(run(c, 0, ids, &img, &sec, err)); /* warm-up: primitives for this size */
        free(img);
        DT_TRY(run(c, 0, ids, &img, &sec, err));
        if (m == 0) c->ref[0] = img;
        else free(img);
        if (!c->s->latency) o->latency[m] = sec / n;
        dt_logf(c->s->log, c->s->log_user, "zoo member %d: %.4f s per evaluation%s", m, o->latency[m], c->s->latency ? " (given)" : "");
    }
    for (int i = 0; i < n; i++) ids[i] = 0;
    for (int k = 1; k < c->s->nprompts; k++) DT_TRY(run(c, k, ids, &c->ref[k], NULL, err));
    return DT_OK;
}

/* One greedy round: the single move to a faster member that keeps PSNR highest. */
static dt_status best_move(search_ctx *c, dt_model_search_result *o, int *ids, int *moved, double *best_psnr, dt_err *err)
{
    int bi = -1, bm = -1;
    double best = -INFINITY;
    for (int i = 0; i < c->evals; i++)
        for (int m = 0; m < o->nzoo; m++) {
            if (o->latency[m] >= o->latency[ids[i]]) continue;
            int keep = ids[i];
            ids[i] = m;
            double q;
            dt_status s = quality(c, ids, &q, err);
            ids[i] = keep;
            if (s != DT_OK) return s;
            if (q > best) { best = q; bi = i; bm = m; }
        }
    *moved = bi >= 0;
    if (bi >= 0) {
        ids[bi] = bm;
        *best_psnr = best;
        dt_logf(c->s->log, c->s->log_user, "evaluation %d -> member %d: %.2f dB, %.4f s", bi, bm, best, latency(o, ids, c->evals));
    }
    return DT_OK;
}

static dt_status search(search_ctx *c, dt_model_search_result *o, dt_err *err)
{
    const dt_model_search *s = c->s;
    int n = c->evals;
    int *ids = malloc((size_t)n * sizeof *ids);
    if (!ids) return dt_fail(err, DT_ENOMEM, "out of memory");
    o->schedule = (dt_model_schedule){n, ids};
    DT_TRY(measure(c, o, ids, err));
    o->ref_seconds = latency(o, ids, n);
    o->budget = s->budget_seconds > 0 ? s->budget_seconds : s->budget_ratio * o->ref_seconds;
    o->psnr = 200.0;
    while (latency(o, ids, n) > o->budget) {
        int moved;
        DT_TRY(best_move(c, o, ids, &moved, &o->psnr, err));
        if (!moved) {
            double fastest = 0;
            for (int i = 0; i < n; i++) {
                double m = INFINITY;
                for (int k = 0; k < o->nzoo; k++) m = fmin(m, o->latency[k]);
                fastest += m;
            }
            return dt_fail(err, DT_EINVAL, "budget: %.4f s per image is below the fastest schedule's %.4f s", o->budget, fastest);
        }
    }
    o->est_seconds = latency(o, ids, n);
    return DT_OK;
}

dt_status dt_model_search_check(const dt_model_search *s, dt_err *err)
{
    if (s->nprompts < 1 || !s->prompts) return dt_fail(err, DT_EINVAL, "prompts: at least one calibration prompt is needed");
    for (int k = 0; k < s->nprompts; k++)
        if (!s->prompts[k]) return dt_fail(err, DT_EINVAL, "prompts: prompt %d is NULL", k);
    if (s->budget_seconds <= 0 && !(s->budget_ratio > 0 && s->budget_ratio <= 1))
        return dt_fail(err, DT_EINVAL, "budget: give seconds > 0 or a ratio in (0, 1]");
    return DT_OK;
}

dt_status dt_search_models(const dt_model_search *s, dt_model_search_result *out, dt_err *err)
{
    *out = (dt_model_search_result){0};
    DT_TRY(dt_model_search_check(s, err));
    out->nzoo = dt_pipeline_zoo_size(s->p);
    if (out->nzoo < 2) return dt_fail(err, DT_EINVAL, "zoo: the search needs at least one zoo member besides the model");
    search_ctx c = {.s = s};
    DT_TRY(dt_pipeline_evaluations(s->p, s->base.steps, &c.evals, err));
    out->latency = calloc((size_t)out->nzoo, sizeof *out->latency);
    c.ref = calloc((size_t)s->nprompts, sizeof *c.ref);
    dt_status st = out->latency && c.ref ? search(&c, out, err) : dt_fail(err, DT_ENOMEM, "out of memory");
    for (int k = 0; c.ref && k < s->nprompts; k++) free(c.ref[k]);
    free(c.ref);
    out->generations = c.generations;
    if (st != DT_OK) dt_model_search_result_free(out);
    return st;
}

void dt_model_search_result_free(dt_model_search_result *r)
{
    dt_model_schedule_free(&r->schedule);
    free(r->latency);
    *r = (dt_model_search_result){0};
}
