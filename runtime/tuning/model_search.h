/* OMS-DPM schedule search: which zoo member should run each model evaluation so that a
 * generation fits a latency budget while staying closest to the all-member-0 result.
 *
 * Per-evaluation latency of each member is measured on this machine (one generation each
 * at the request's size). The search is greedy: starting from member 0 everywhere, each round
 * tries moving one evaluation to a faster member, keeps the move whose images (averaged over
 * the prompts) have the highest PSNR against the all-member-0 images, and stops when the
 * estimated latency fits. Each round costs (evaluations x faster members x prompts)
 * generations; OMS-DPM's learned predictor would replace them at scale. */
#ifndef DT_MODEL_SEARCH_H
#define DT_MODEL_SEARCH_H
#include "runtime/plans/model_schedule.h"
#include "runtime/pipeline/pipeline.h"

typedef struct {
    dt_pipeline *p;
    const char *const *prompts;
    int nprompts;
    dt_gen_request base;   /* steps, size, cfg, seed...; prompt and model_ids are set per run */
    double budget_seconds; /* sampling seconds per image; <= 0: use budget_ratio */
    double budget_ratio;   /* of the all-member-0 latency */
    const double *latency; /* [zoo] seconds per evaluation to plan with (e.g. another machine's);
                            * NULL: measured here */
    ditrt_log_fn log;      /* progress lines, or NULL */
    void *log_user;
} dt_model_search;

typedef struct {
    dt_model_schedule schedule;
    double *latency;       /* [zoo] seconds per evaluation, measured */
    int nzoo;
    double est_seconds, ref_seconds, budget, psnr;
    int generations;       /* how many generations the search ran */
} dt_model_search_result;

/* Checks the settings that need no model (prompts, budget), as dt_search_models does first. */
dt_status dt_model_search_check(const dt_model_search *s, dt_err *err);
dt_status dt_search_models(const dt_model_search *s, dt_model_search_result *out, dt_err *err);
void dt_model_search_result_free(dt_model_search_result *r);

#endif
