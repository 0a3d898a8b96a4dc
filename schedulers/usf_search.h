/* Evolutionary search of USF solver schedules (schedulers/usf.c format) at a fixed number of
 * model evaluations, scored against reference samples, over any denoiser given as a callback.
 *
 * A candidate decides, per step, the timestep (interior points move between their
 * neighbours; the ends stay), the Taylor order (1..max_order, limited by the history), noise or
 * data prediction, the relaxation of the first derivative (none, dpmsolver-2, unipc-bh1) and a
 * pseudo corrector. Derivatives use the most recent points. The population starts from DDIM,
 * DPM-Solver++(2M) and UniPC-bh2 on uniform timesteps; each generation keeps the best half and
 * fills the rest with mutated crossovers. Score: mean relative L2 of the final samples against
 * the references (lower is better).
 *
 * Model outputs are cached by (sample, timestep, exact input): candidates sharing a prefix of
 * decisions share its evaluations, so only the steps after the first change cost model calls.
 * The callback gets the diffusers-style model timestep (t*N - 1). Deterministic for a seed. */
#ifndef DT_USF_SEARCH_H
#define DT_USF_SEARCH_H
#include <stddef.h>
#include <stdint.h>
#include "runtime/core/error.h"

typedef dt_status (*dt_denoise_fn)(void *user, int sample, const float *x, double timestep, float *model_out,
                                   dt_err *err);

typedef struct {
    const char *scheduler_dir; /* the folder whose betas / prediction type the model uses */
    int nfe;                   /* steps = model evaluations (>= 2) */
    int population, generations, max_order;
    double t_end;              /* last point: 0 = the clean end (sigma 0) */
    uint64_t seed;
    size_t cache_bytes;        /* model-output cache budget (0: 256 MiB) */
} dt_usf_search_opts;

typedef struct {
    double best_score, ddim_score;  /* the best found, and DDIM on the same timesteps */
    long model_calls, cache_hits;
    int candidates;
} dt_usf_search_result;

/* Searches and writes the best schedule as JSON to out_path (atomically). x_T[s] and
 * x_ref[s] hold n values per sample. */
dt_status dt_usf_search(const dt_usf_search_opts *o, dt_denoise_fn f, void *user, int samples,
                        const float *const *x_T, const float *const *x_ref, size_t n, const char *out_path,
                        dt_usf_search_result *res, dt_err *err);

#endif
