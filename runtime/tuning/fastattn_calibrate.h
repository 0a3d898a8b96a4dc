/* DiTFastAttn calibration run (`ditrt calibrate-attn`, ditrt_calibrate_attn): loads a pipeline
 * folder, makes the all-"full" plan of its denoiser (spatial rows, then temporal rows for a
 * video model), runs every prompt with the calibrator (fastattn_calib.c) as the step hook,
 * validates and saves the plan. Generic over dt_denoiser_info: a model with temporal layers
 * needs a temporal window and takes a frame count; an image model refuses both. */
#ifndef DT_FASTATTN_CALIBRATE_H
#define DT_FASTATTN_CALIBRATE_H
#include <stdint.h>
#include "runtime/plans/fastattn.h"

typedef struct {
    const char *model_dir;         /* diffusers pipeline folder */
    const char *const *prompts;    /* nprompts prompts; prompt i runs with seed + i */
    int nprompts;
    const char *out_path;          /* the plan file written */
    int steps;                     /* >= 1 */
    int window;                    /* >= 0: spatial (image) window, tokens each side */
    int temporal_window;           /* video models: >= 0 frames each side; -1: not given */
    int frames;                    /* video models: 0 = the model's video_length */
    double threshold;              /* δ >= 0 */
    dt_fa_metric metric;
    double cfg;                    /* guidance scale; > 1: CFG batch (ASC methods usable) */
    uint64_t seed;
    int width, height;             /* 0: native */
    int resolution_binning;
    const char *dtype;             /* "f32" / "bf16" (or their aliases); NULL: the CPU's default */
    int threads;                   /* 0: all cores */
    dt_fa_half cfg_half;
    dt_fa_residual asc_residual;
    ditrt_log_fn log;              /* a line per prompt and per step, or NULL */
    void *log_user;
} dt_fa_calibrate_config;

typedef struct {
    int nprompts, steps, layers, temporal; /* plan rows: layers in all, the last `temporal` temporal */
    long trials;                  /* trial forwards run */
    double trial_forwards;        /* their cost in whole forwards */
    long exhaustive_trials;       /* nprompts·(steps−1)·layers·4 (one whole forward per row and candidate) */
    double seconds;               /* wall time of the prompts, validation and save */
    int frames, tokens, channels; /* the run's shape: frames per video (1: images), tokens per frame, width */
} dt_fa_calibrate_result;

dt_status dt_fa_calibrate(const dt_fa_calibrate_config *c, dt_fa_calibrate_result *r, dt_err *err);

/* The shape of model_dir's denoiser at width x height (0: native) and `frames` (0: the
 * model's; 1 for image models): frames, tokens per frame and width; info gets the denoiser's
 * info. Reads configs only. */
dt_status dt_fa_model_shape(const char *model_dir, int width, int height, int frames, dt_denoiser_info *info, int *F,
                            int *N, int *C, dt_err *err);
#endif
