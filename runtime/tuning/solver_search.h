/* USF solver-schedule search over a pipeline (`ditrt search-solver`, ditrt_search_solver):
 * the evolutionary search of schedulers/usf_search.h, run on the pipeline's CFG-guided
 * denoiser at a fixed NFE and scored on the final latents of `samples` seeds per calibration
 * prompt against the folder's own solver at ref_steps (DPM-Solver++ on its betas when that
 * solver reads learned variance channels, Open-Sora's IDDPM: its noisy samples are not the ODE
 * solution the schedules approximate); the score is averaged over every (prompt, seed). CFG is
 * the pipeline class's (cfg_channels). Writes the schedule JSON that `--solver-schedule` runs.
 *
 * One generation is started per prompt and stopped in its step hook at the first step (text
 * encoded, model and inputs ready): the hook keeps a copy of that prompt's text inputs and,
 * for the last prompt, runs the whole search on the denoiser, switching the text inputs per
 * sample. Generic over dt_denoiser: latents are [rows, C, ...] of any latent rank. */
#ifndef DT_SOLVER_SEARCH_H
#define DT_SOLVER_SEARCH_H
#include "ditrt.h"
#include "runtime/pipeline/pipeline.h"
#include "schedulers/usf_search.h"

typedef struct {
    dt_pipeline *p;
    const char *scheduler_dir;  /* the folder's own scheduler (the reference solver, betas) */
    const char *const *prompts; /* calibration prompts */
    int nprompts;
    dt_gen_request base;        /* negative prompt, size, frames, cfg, seed; the rest is set here */
    int nfe, population, generations, max_order;
    int samples;                /* seeds per prompt: sample k is prompt k / samples, seed seed + k */
    int ref_steps;              /* steps of the reference solver */
    const char *out_path;       /* the schedule JSON (written atomically) */
    ditrt_log_fn log;           /* progress lines, or NULL */
    void *log_user;
} dt_solver_search;

typedef struct {
    dt_usf_search_result usf; /* best and DDIM scores, candidates, model calls, cache hits */
    int nprompts, samples;
} dt_solver_search_result;

dt_status dt_search_solver(const dt_solver_search *s, dt_solver_search_result *out, dt_err *err);

#endif
