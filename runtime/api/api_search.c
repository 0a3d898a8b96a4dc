/* The public API of the schedule searches (include/ditrt.h, section "solver and model
 * schedule search"): USF solver schedules (runtime/tuning/solver_search.h) and OMS-DPM model
 * schedules (runtime/tuning/model_search.h). Each call checks its params, loads the model
 * folder, runs the search and writes the schedule file. */
#include "ditrt.h"
#include "api_internal.h"
#include "runtime/core/error.h"
#include "runtime/models/modeldir.h"
#include "runtime/pipeline/pipeline.h"
#include "runtime/plans/model_schedule.h"
#include "runtime/tuning/model_search.h"
#include "runtime/tuning/solver_search.h"
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static dt_status check_int(const char *field, int v, int lo, int hi, dt_err *err)
{
    if (v < lo || v > hi) return dt_fail(err, DT_EINVAL, "%s: expected an integer in [%d, %d], got %d", field, lo, hi, v);
    return DT_OK;
}

static dt_status check_prompts(const char *const *prompts, int n, dt_err *err)
{
    if (!prompts || n < 1) return dt_fail(err, DT_EINVAL, "prompts: at least one calibration prompt is needed");
    for (int k = 0; k < n; k++)
        if (!prompts[k]) return dt_fail(err, DT_EINVAL, "prompts: prompt %d is NULL", k);
    return DT_OK;
}

/* What both searches share: the folder, dtype, threads, prompts and size. */
static dt_status check_common(const char *what, const char *model_dir, const char *dtype, int threads, const char *const *prompts,
                              int nprompts, int width, int height, dt_pipeline_config *cfg, dt_err *err)
{
    if (!model_dir) return dt_fail(err, DT_EINVAL, "model_dir: required (a diffusers pipeline folder)");
    DT_TRY(dt_api_parse_dtype("dtype", dtype, DT_DEV_CPU, what, &cfg->dtype, &cfg->tf32, err)); /* the searches run on the CPU */
    cfg->text_dtype = cfg->dtype;
    cfg->model_dir = model_dir;
    DT_TRY(check_int("threads", threads, 0, 1024, err));
    cfg->threads = threads;
    DT_TRY(check_prompts(prompts, nprompts, err));
    DT_TRY(check_int("width", width, 0, 16384, err));
    return check_int("height", height, 0, 16384, err);
}

/* ---- USF solver schedules ---- */

void ditrt_search_solver_params_init(ditrt_search_solver_params *p)
{
    if (!p) return;
    *p = (ditrt_search_solver_params){.struct_size = sizeof *p, .negative_prompt = "", .cfg = 4.5f, .nfe = 8,
                                      .population = 16, .generations = 10, .max_order = 3, .samples = 2,
                                      .ref_steps = 50};
}

static dt_status check_solver(const ditrt_search_solver_params *p, dt_pipeline_config *cfg, dt_err *err)
{
    DT_TRY(check_common("search-solver", p->model_dir, p->dtype, p->threads, p->prompts, p->nprompts, p->width, p->height, cfg, err));
    if (!(p->cfg >= 0)) return dt_fail(err, DT_EINVAL, "cfg: expected a number >= 0, got %g", p->cfg);
    DT_TRY(check_int("nfe", p->nfe, 2, 200, err));
    DT_TRY(check_int("population", p->population, 4, 10000, err));
    DT_TRY(check_int("generations", p->generations, 0, 100000, err));
    DT_TRY(check_int("max_order", p->max_order, 1, 3, err));
    DT_TRY(check_int("samples", p->samples, 1, 1000, err));
    DT_TRY(check_int("ref_steps", p->ref_steps, 2, 1000, err));
    if (!p->out_path) return dt_fail(err, DT_EINVAL, "out_path: required (where the schedule JSON is written)");
    return DT_OK;
}

ditrt_status ditrt_search_solver(const ditrt_search_solver_params *params, ditrt_search_solver_result *result,
                                 ditrt_error *err)
{
    ditrt_error local = {0};
    if (!err) err = &local;
    DT_TRY(dt_api_check_result(result, DT_END_OF(ditrt_search_solver_result, seconds), sizeof *result,
                               "ditrt_search_solver_result", "ditrt_search_solver_result_init", err));
    ditrt_search_solver_result zero = {0};
    dt_api_write_result(result, &zero, sizeof zero); /* zeroed on failure */
    ditrt_search_solver_params p;
    DT_TRY(DT_API_READ(ditrt_search_solver_params, params, &p, log_user, ditrt_search_solver_params_init, err));
    dt_pipeline_config cfg = {0};
    DT_TRY(check_solver(&p, &cfg, err));
    double t0 = now();
    char sched_dir[4096];
    DT_TRY(dt_model_component_dir(p.model_dir, "scheduler", sched_dir, sizeof sched_dir, err));
    dt_pipeline *pipe;
    DT_TRY(dt_pipeline_load(&cfg, &pipe, err));
    dt_gen_request base = dt_gen_request_default();
    base.negative_prompt = p.negative_prompt ? p.negative_prompt : "";
    base.width = p.width;
    base.height = p.height;
    base.cfg = p.cfg;
    base.seed = p.seed;
    dt_solver_search s = {.p = pipe, .scheduler_dir = sched_dir, .prompts = p.prompts, .nprompts = p.nprompts,
                          .base = base, .nfe = p.nfe, .population = p.population, .generations = p.generations,
                          .max_order = p.max_order, .samples = p.samples, .ref_steps = p.ref_steps,
                          .out_path = p.out_path, .log = p.log, .log_user = p.log_user};
    dt_solver_search_result r;
    dt_status st = dt_search_solver(&s, &r, err);
    dt_pipeline_free(pipe);
    if (st != DT_OK) return st;
    ditrt_search_solver_result full = {.score = r.usf.best_score, .ddim_score = r.usf.ddim_score,
                                       .candidates = r.usf.candidates, .model_calls = r.usf.model_calls,
                                       .cache_hits = r.usf.cache_hits, .prompts = r.nprompts,
                                       .samples = r.samples, .seconds = now() - t0};
    dt_api_write_result(result, &full, sizeof full);
    return DT_OK;
}

/* ---- OMS-DPM model schedules ---- */

void ditrt_search_solver_result_init(ditrt_search_solver_result *r)
{
    if (r) *r = (ditrt_search_solver_result){.struct_size = sizeof *r};
}

void ditrt_search_models_result_init(ditrt_search_models_result *r)
{
    if (r) *r = (ditrt_search_models_result){.struct_size = sizeof *r};
}

void ditrt_search_models_params_init(ditrt_search_models_params *p)
{
    if (!p) return;
    dt_gen_request d = dt_gen_request_default();
    *p = (ditrt_search_models_params){.struct_size = sizeof *p, .steps = d.steps, .cfg = d.cfg};
}

static dt_status check_models(const ditrt_search_models_params *p, dt_pipeline_config *cfg, dt_err *err)
{
    DT_TRY(check_common("search-models", p->model_dir, p->dtype, p->threads, p->prompts, p->nprompts, p->width, p->height, cfg, err));
    if (p->nzoo < 1 || !p->zoo) return dt_fail(err, DT_EINVAL, "zoo: the search needs at least one zoo member besides the model");
    for (int i = 0; i < p->nzoo; i++)
        if (!p->zoo[i]) return dt_fail(err, DT_EINVAL, "zoo: member %d is NULL", i + 1);
    cfg->zoo = p->zoo;
    cfg->nzoo = p->nzoo;
    DT_TRY(check_int("steps", p->steps, 1, 1000, err));
    dt_model_search ms = {.prompts = p->prompts, .nprompts = p->nprompts, .budget_seconds = p->budget_seconds,
                          .budget_ratio = p->budget_ratio};
    DT_TRY(dt_model_search_check(&ms, err));
    if (p->latency) {
        if (p->nlatency != p->nzoo + 1)
            return dt_fail(err, DT_EINVAL, "latency: %d values for %d zoo members (the model first, then the zoo)",
                           p->nlatency, p->nzoo + 1);
        for (int i = 0; i < p->nlatency; i++)
            if (!(p->latency[i] > 0) || !isfinite(p->latency[i]))
                return dt_fail(err, DT_EINVAL, "latency: value %d is %g; expected seconds per evaluation > 0", i,
                               p->latency[i]);
    }
    return DT_OK;
}

/* The schedule file, naming model_dir and the zoo folders for the reader. */
static dt_status save(const ditrt_search_models_params *p, const dt_model_schedule *s, dt_err *err)
{
    const char **names = malloc((size_t)(p->nzoo + 1) * sizeof *names);
    if (!names) return dt_fail(err, DT_ENOMEM, "out of memory");
    names[0] = p->model_dir;
    for (int i = 0; i < p->nzoo; i++) names[i + 1] = p->zoo[i];
    dt_status st = dt_model_schedule_save(p->out_path, s, names, p->nzoo + 1, err);
    free(names);
    return st;
}

ditrt_status ditrt_search_models(const ditrt_search_models_params *params, ditrt_search_models_result *result,
                                 ditrt_error *err)
{
    ditrt_error local = {0};
    if (!err) err = &local;
    DT_TRY(dt_api_check_result(result, DT_END_OF(ditrt_search_models_result, seconds), sizeof *result,
                               "ditrt_search_models_result", "ditrt_search_models_result_init", err));
    ditrt_search_models_result zero = {0};
    dt_api_write_result(result, &zero, sizeof zero); /* zeroed on failure */
    ditrt_search_models_params p;
    DT_TRY(DT_API_READ(ditrt_search_models_params, params, &p, log_user, ditrt_search_models_params_init, err));
    dt_pipeline_config cfg = {0};
    DT_TRY(check_models(&p, &cfg, err));
    double t0 = now();
    if (p.threads > 0) omp_set_num_threads(p.threads);
    dt_pipeline *pipe;
    DT_TRY(dt_pipeline_load(&cfg, &pipe, err));
    dt_gen_request req = dt_gen_request_default();
    req.resolution_binning = 0;
    req.steps = p.steps;
    req.width = p.width;
    req.height = p.height;
    req.cfg = p.cfg;
    req.seed = p.seed;
    dt_model_search ms = {pipe, p.prompts, p.nprompts, req, p.budget_seconds, p.budget_ratio, p.latency, p.log,
                          p.log_user};
    dt_model_search_result r;
    dt_status st = dt_search_models(&ms, &r, err);
    dt_pipeline_free(pipe);
    if (st == DT_OK && p.out_path) st = save(&p, &r.schedule, err);
    if (st != DT_OK) {
        if (r.latency || r.schedule.ids) dt_model_search_result_free(&r);
        return st;
    }
    ditrt_search_models_result full = {.evaluations = r.schedule.n, .models = r.schedule.ids, .nzoo = r.nzoo,
                                       .latency = r.latency, .est_seconds = r.est_seconds,
                                       .ref_seconds = r.ref_seconds, .budget_seconds = r.budget, .psnr = r.psnr,
                                       .generations = r.generations, .seconds = now() - t0};
    dt_api_write_result(result, &full, sizeof full);
    return DT_OK;
}

void ditrt_search_models_result_free(ditrt_search_models_result *r)
{
    if (!r) return;
    free(r->models);
    free(r->latency);
    *r = (ditrt_search_models_result){.struct_size = r->struct_size};
}
