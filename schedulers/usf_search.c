/* Evolutionary USF schedule search (see usf_search.h). Candidates are written as schedule JSON
 * and run through the USF interpreter itself, so what is scored is what gets saved. */
#include "runtime/core/fileio.h"
#include "usf_search.h"
#include "scheduler.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NFE 200

enum { R_NONE, R_DPM2, R_BH1 };

typedef struct {
    double t[MAX_NFE + 1];
    int order[MAX_NFE], data[MAX_NFE], relax[MAX_NFE], corr[MAX_NFE];
    double score;
} cand;

/* ---- deterministic random numbers (splitmix64) ---- */

static uint64_t rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static int rnd_int(uint64_t *s, int n) { return (int)(rnd(s) % (uint64_t)n); }
static double rnd_unit(uint64_t *s) { return (double)(rnd(s) >> 11) * 0x1p-53; }

/* ---- model-output cache: (sample, timestep, exact input) -> output ---- */

typedef struct { int used, sample; double t; uint64_t h; float *x, *out; } centry;
typedef struct { centry *e; size_t cap, count, n; long hits, calls; } cache;

static uint64_t fnv(const float *x, size_t n, int sample, double t)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)sample;
    const unsigned char *p = (const unsigned char *)x;
    for (size_t i = 0; i < n * 4; i++) h = (h ^ p[i]) * 1099511628211ull;
    uint64_t tb;
    memcpy(&tb, &t, 8);
    return (h ^ tb) * 1099511628211ull;
}

static dt_status model(cache *c, dt_denoise_fn f, void *user, int sample, const float *x, double t, float *out, dt_err *err)
{
    uint64_t h = fnv(x, c->n, sample, t);
    size_t i = c->cap ? h % c->cap : 0;
    for (size_t k = 0; k < c->cap && c->e[i].used; k++, i = (i + 1) % c->cap) {
        centry *e = &c->e[i];
        if (e->h == h && e->sample == sample && e->t == t && !memcmp(e->x, x, c->n * 4)) {
            memcpy(out, e->out, c->n * 4);
            c->hits++;
            return DT_OK;
        }
    }
    DT_TRY(f(user, sample, x, t, out, err));
    c->calls++;
    if (c->cap && c->count < c->cap * 3 / 4 && !c->e[i].used) { /* keep probing short; drop when full */
        centry *e = &c->e[i];
        e->x = malloc(c->n * 4);
        e->out = malloc(c->n * 4);
        if (e->x && e->out) {
            memcpy(e->x, x, c->n * 4);
            memcpy(e->out, out, c->n * 4);
            *e = (centry){1, sample, t, h, e->x, e->out};
            c->count++;
        } else {
            free(e->x);
            free(e->out);
            e->x = e->out = NULL;
        }
    }
    return DT_OK;
}

static void cache_free(cache *c)
{
    for (size_t i = 0; i < c->cap; i++) { free(c->e[i].x); free(c->e[i].out); }
    free(c->e);
}

/* ---- candidates as USF JSON ---- */

static cJSON *deriv(int m, const int *active, int relax)
{
    char est[32];
    snprintf(est, sizeof est, "Difference_%d", m);
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "estimate", est);
    cJSON_AddItemToObject(d, "active_points", cJSON_CreateIntArray(active, m));
    if (relax == R_DPM2) cJSON_AddStringToObject(d, "relaxation", "dpmsolver-2");
    else if (relax == R_BH1) cJSON_AddStringToObject(d, "relaxation", "unipc-bh1");
    else cJSON_AddNullToObject(d, "relaxation");
    return d;
}

static cJSON *to_json(const cand *c, int nfe)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "source", "ditrt search-solver (schedulers/usf_search.c)");
    if (c->score == c->score) cJSON_AddNumberToObject(j, "search_score", c->score);
    cJSON_AddItemToObject(j, "timesteps", cJSON_CreateDoubleArray(c->t, nfe + 1));
    cJSON_AddItemToObject(j, "orders", cJSON_CreateIntArray(c->order, nfe));
    cJSON *pt = cJSON_AddArrayToObject(j, "prediction_types"), *sp = cJSON_AddArrayToObject(j, "start_points");
    cJSON *dt = cJSON_AddArrayToObject(j, "derivative_types"), *ct = cJSON_AddArrayToObject(j, "corrector_types");
    for (int i = 0; i < nfe; i++) {
        int p = c->order[i], act[8];
        cJSON_AddItemToArray(pt, cJSON_CreateString(c->data[i] ? "data_prediction" : "noise_prediction"));
        cJSON_AddItemToArray(sp, cJSON_CreateNumber(-1));
        cJSON *d = cJSON_CreateArray();
        for (int k = 0; k < p - 1; k++) act[k] = -2 - k; /* the p-1 most recent earlier points */
        for (int k = 0; k < p - 1; k++) cJSON_AddItemToArray(d, deriv(p - 1, act, k == 0 ? c->relax[i] : R_NONE));
        cJSON_AddItemToArray(dt, d);
        cJSON *co = cJSON_CreateObject();
        if (c->corr[i] && i < nfe - 1) {
            cJSON_AddStringToObject(co, "type", "pseudo");
            cJSON_AddNumberToObject(co, "start_point", -2);
            cJSON_AddNumberToObject(co, "taylor_order", p + 1);
            act[0] = -1; /* the new point and the points before the start */
            for (int k = 1; k < p; k++) act[k] = -2 - k;
            cJSON *cd = cJSON_AddArrayToObject(co, "derivative_type");
            for (int k = 0; k < p; k++) cJSON_AddItemToArray(cd, deriv(p, act, k == 0 && p == 1 ? c->relax[i] : R_NONE));
        } else {
            cJSON_AddStringToObject(co, "type", "no_corrector");
        }
        cJSON_AddItemToArray(ct, co);
    }
    cJSON_AddStringToObject(j, "afs", "no_afs");
    return j;
}

static dt_status write_json(const cand *c, int nfe, const char *path, dt_err *err)
{
    cJSON *j = to_json(c, nfe);
    char *s = j ? cJSON_Print(j) : NULL;
    cJSON_Delete(j);
    if (!s) return dt_fail(err, DT_ENOMEM, "%s: out of memory", path);
    dt_outfile o;
    dt_status st = dt_outfile_open(&o, path, "w", err);
    if (st == DT_OK) {
        int ok = fputs(s, o.f) >= 0 && fputc('\n', o.f) != EOF;
        st = dt_outfile_close(&o, ok, err);
    }
    free(s);
    return st;
}

/* ---- scoring ---- */

typedef struct {
    const dt_usf_search_opts *o;
    dt_denoise_fn f;
    void *user;
    int samples;
    const float *const *xT, *const *ref;
    size_t n;
    float *x, *out;
    cache c;
    char tmp[4200];
    int evaluated;
} ctx;

static double rel_l2(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

static dt_status score(ctx *z, cand *c, dt_err *err)
{
    DT_TRY(write_json(c, z->o->nfe, z->tmp, err));
    dt_scheduler *s;
    DT_TRY(dt_scheduler_load_usf(z->o->scheduler_dir, z->tmp, NULL, &s, err));
    dt_status st = dt_scheduler_set_timesteps(s, z->o->nfe, err);
    double total = 0;
    for (int k = 0; st == DT_OK && k < z->samples; k++) {
        memcpy(z->x, z->xT[k], z->n * 4);
        st = dt_scheduler_set_timesteps(s, z->o->nfe, err);
        for (int i = 0; st == DT_OK && i < dt_scheduler_num_steps(s); i++) {
            st = model(&z->c, z->f, z->user, k, z->x, dt_scheduler_timesteps(s)[i], z->out, err);
            if (st == DT_OK) st = dt_scheduler_step(s, z->out, z->x, z->x, z->n, err);
        }
        total += rel_l2(z->x, z->ref[k], z->n);
    }
    dt_scheduler_free(s);
    c->score = total / z->samples;
    if (!(c->score == c->score)) c->score = INFINITY;
    z->evaluated++;
    return st;
}

/* ---- the population ---- */

static void legalize(cand *c, const dt_usf_search_opts *o)
{
    for (int i = 0; i < o->nfe; i++) {
        int lim = i + 1 < o->max_order ? i + 1 : o->max_order;
        if (c->order[i] > lim) c->order[i] = lim;
        if (c->order[i] < 1) c->order[i] = 1;
        if (c->t[i + 1] == 0) c->order[i] = 1;
        if (c->order[i] == 1 && !c->corr[i]) c->relax[i] = R_NONE;
    }
}

static void seed_cand(cand *c, const dt_usf_search_opts *o, int kind)
{
    int N = o->nfe;
    for (int i = 0; i <= N; i++) c->t[i] = 1.0 - (1.0 - (o->t_end > 0 ? o->t_end : 1e-3)) * i / N;
    c->t[0] = 1.0;
    c->t[N] = o->t_end;
    for (int i = 0; i < N; i++) {
        c->order[i] = kind == 0 ? 1 : 2;
        c->data[i] = 1;
        c->relax[i] = kind == 0 ? R_NONE : R_DPM2;
        c->corr[i] = kind == 2;
    }
    legalize(c, o);
}

static void mutate(cand *c, const dt_usf_search_opts *o, uint64_t *r)
{
    int N = o->nfe, i = rnd_int(r, N);
    switch (rnd_int(r, 5)) {
    case 0:
        if (N > 1) {
            int k = 1 + rnd_int(r, N - 1);
            double lo = c->t[k + 1], hi = c->t[k - 1];
            c->t[k] = lo + (hi - lo) * (0.05 + 0.9 * rnd_unit(r));
        }
        break;
    case 1: c->order[i] = 1 + rnd_int(r, o->max_order); break;
    case 2: c->data[i] ^= 1; break;
    case 3: c->relax[i] = rnd_int(r, 3); break;
    default: c->corr[i] ^= 1; break;
    }
    legalize(c, o);
}

static void crossover(const cand *a, const cand *b, cand *c, const dt_usf_search_opts *o, uint64_t *r)
{
    *c = rnd_int(r, 2) ? *a : *b;
    for (int i = 0; i < o->nfe; i++) {
        const cand *p = rnd_int(r, 2) ? a : b;
        c->order[i] = p->order[i];
        c->data[i] = p->data[i];
        c->relax[i] = p->relax[i];
        c->corr[i] = p->corr[i];
    }
    legalize(c, o);
}

static int by_score(const void *a, const void *b)
{
    double x = ((const cand *)a)->score, y = ((const cand *)b)->score;
    return x < y ? -1 : x > y;
}

static dt_status evolve(ctx *z, cand *pop, int P, dt_usf_search_result *res, dt_err *err)
{
    const dt_usf_search_opts *o = z->o;
    uint64_t r = o->seed;
    for (int k = 0; k < P; k++) {
        seed_cand(&pop[k], o, k < 3 ? k : rnd_int(&r, 3));
        for (int m = k < 3 ? 0 : 1 + rnd_int(&r, 3); m > 0; m--) mutate(&pop[k], o, &r);
        DT_TRY(score(z, &pop[k], err));
        if (k == 0) res->ddim_score = pop[0].score;
    }
    for (int g = 0; g < o->generations; g++) {
        qsort(pop, (size_t)P, sizeof *pop, by_score);
        int keep = (P + 1) / 2;
        for (int k = keep; k < P; k++) {
            crossover(&pop[rnd_int(&r, keep)], &pop[rnd_int(&r, keep)], &pop[k], o, &r);
            mutate(&pop[k], o, &r);
            DT_TRY(score(z, &pop[k], err));
        }
    }
    qsort(pop, (size_t)P, sizeof *pop, by_score);
    return DT_OK;
}

dt_status dt_usf_search(const dt_usf_search_opts *o, dt_denoise_fn f, void *user, int samples,
                        const float *const *x_T, const float *const *x_ref, size_t n, const char *out_path,
                        dt_usf_search_result *res, dt_err *err)
{
    *res = (dt_usf_search_result){0};
    if (o->nfe < 2 || o->nfe > MAX_NFE) return dt_fail(err, DT_EINVAL, "search-solver: NFE must be in [2, %d], got %d", MAX_NFE, o->nfe);
    if (o->population < 4 || o->generations < 0 || o->max_order < 1 || o->max_order > 3 || samples < 1 || !(o->t_end >= 0 && o->t_end < 1))
        return dt_fail(err, DT_EINVAL, "search-solver: population >= 4, generations >= 0, max order 1-3, t_end in [0, 1), "
                                       "samples >= 1 needed");
    ctx z = {.o = o, .f = f, .user = user, .samples = samples, .xT = x_T, .ref = x_ref, .n = n};
    snprintf(z.tmp, sizeof z.tmp, "%s.candidate.json", out_path);
    size_t budget = o->cache_bytes ? o->cache_bytes : (size_t)256 << 20, per = 2 * n * 4 + sizeof(centry);
    z.c.n = n;
    z.c.cap = budget / per;
    z.c.e = calloc(z.c.cap ? z.c.cap : 1, sizeof *z.c.e);
    z.x = malloc((n ? n : 1) * 4);
    z.out = malloc((n ? n : 1) * 4);
    cand *pop = calloc((size_t)o->population, sizeof *pop);
    dt_status st = z.c.e && z.x && z.out && pop ? DT_OK : dt_fail(err, DT_ENOMEM, "search-solver: out of memory");
    if (st == DT_OK) st = evolve(&z, pop, o->population, res, err);
    if (st == DT_OK) st = write_json(&pop[0], o->nfe, out_path, err);
    if (st == DT_OK) {
        res->best_score = pop[0].score;
        res->model_calls = z.c.calls;
        res->cache_hits = z.c.hits;
        res->candidates = z.evaluated;
    }
    remove(z.tmp);
    cache_free(&z.c);
    free(z.x);
    free(z.out);
    free(pop);
    return st;
}
