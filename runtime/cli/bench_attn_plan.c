/* `ditrt bench transformer --attn-plan` (developer tool): the plans' steps timed against
 * full-attention forwards at the same timesteps. */
#include "cli.h"
#include "cli_fastattn.h"
#include "runtime/plans/fastattn.h"
#include <stdio.h>
#include <stdlib.h>

/* One forward timed; fa NULL: full attention. */
static dt_status timed_forward(const cli_fa_bench *b, dt_arena *a, dt_fastattn *fa, int step, double *sec, dt_err *err)
{
    dt_denoiser_set_attn_hook(b->model, fa ? dt_fastattn_hook(fa) : NULL);
    dt_status s = fa ? dt_fastattn_set_step(fa, step, err) : DT_OK;
    dt_arena_reset(a);
    double t0 = cli_now();
    if (s == DT_OK) s = dt_denoiser_forward(b->model, b->inputs, a, b->out, err);
    *sec = cli_now() - t0;
    dt_denoiser_set_attn_hook(b->model, NULL);
    return s;
}

/* Each plan step is paired with a full-attention forward at the same timestep, right
 * before it, so a loaded machine's drift hits both alike. */
/* Per-plan totals of the paired timings. */
typedef struct {
    dt_attn_plan p;
    dt_fastattn *fa;
    int loaded;
    double full, plan, full_later, plan_later;
} bench_plan;

static void bench_plan_report(const cli_fa_bench *b, const char *path, const bench_plan *r)
{
    const dt_attn_plan *p = &r->p;
    dt_attn_plan_cost cost;
    dt_attn_plan_cost_video(p, b->B, b->F, b->N, b->C, &cost);
    int k = p->steps > 1 ? p->steps - 1 : 1;
    char win[64];
    if (p->temporal) snprintf(win, sizeof win, "window %d, temporal window %d", p->window, p->temporal_window);
    else snprintf(win, sizeof win, "window %d", p->window);
    printf("  plan %s (%s, %d steps): %.3f s/step vs full %.3f s/step = %.2fx; steps after the first %.3f vs %.3f s = %.2fx\n"
           "    attention FLOPs kept %.1f%%, self-attention incl. projections %.1f%%; cache peak %.0f MB (measured %.0f MB)\n",
           path, win, p->steps, r->plan / p->steps, r->full / p->steps, r->full / r->plan, r->plan_later / k,
           r->full_later / k, r->plan_later > 0 ? r->full_later / r->plan_later : 0,
           100 * cost.attn_flops / cost.attn_flops_full, 100 * cost.module_flops / cost.module_flops_full,
           cost.cache_peak_bytes / 1e6, dt_fastattn_cache_peak(r->fa) / 1e6);
}

/* All plans advance together: each step runs one full-attention forward, then every plan that
 * still has that step, so the plans share the reference timing of the same moment (the machine's
 * speed drifts) and a long benchmark costs one full forward per step instead of one per plan. */
dt_status cli_bench_attn_plans(const cli_fa_bench *b, dt_arena *a, const char *const *plans, int nplans, dt_err *err)
{
    printf("  attention plans (each step: one full-attention forward, then each plan's, at the same timestep):\n");
    bench_plan *r = calloc((size_t)nplans, sizeof *r);
    if (!r) return dt_fail(err, DT_ENOMEM, "out of memory");
    dt_status s = DT_OK;
    int steps = 0;
    for (int i = 0; s == DT_OK && i < nplans; i++) {
        s = dt_attn_plan_load(plans[i], &r[i].p, err);
        r[i].loaded = s == DT_OK;
        if (s == DT_OK) s = dt_attn_plan_check(&r[i].p, b->layers, b->temporal, r[i].p.steps, err);
        if (s == DT_OK) s = dt_fastattn_create(&r[i].p, 1, &r[i].fa, err);
        if (s == DT_OK && r[i].p.steps > steps) steps = r[i].p.steps;
    }
    for (int t = 0; s == DT_OK && t < steps; t++) {
        double f = 0, q = 0;
        for (int i = 0; s == DT_OK && i < nplans; i++) {
            if (t >= r[i].p.steps) continue;
            /* plans of different lengths place step t at different timesteps */
            for (int k = 0; k < b->B; k++) b->timesteps[k] = 999.0f - (float)t * 999.0f / r[i].p.steps;
            if (i == 0 || r[i].p.steps != r[i - 1].p.steps || t >= r[i - 1].p.steps) s = timed_forward(b, a, NULL, t, &f, err);
            if (s == DT_OK) s = timed_forward(b, a, r[i].fa, t, &q, err);
            r[i].full += f; r[i].plan += q;
            if (t > 0) { r[i].full_later += f; r[i].plan_later += q; }
        }
    }
    for (int i = 0; s == DT_OK && i < nplans; i++) bench_plan_report(b, plans[i], &r[i]);
    for (int i = 0; i < nplans; i++) {
        dt_fastattn_free(r[i].fa);
        if (r[i].loaded) dt_attn_plan_free(&r[i].p);
    }
    free(r);
    return s;
}
