/* diffusers model folders: a pipeline folder (model_index.json + one folder per
 * component, each with config.json and weights) or a single component's folder. */
#ifndef DT_MODELDIR_H
#define DT_MODELDIR_H
#include <stddef.h>
#include "runtime/core/error.h"

/* Finds the folder of `component` (e.g. "transformer") under `model_dir`: the component
 * listed in model_index.json, or model_dir itself when it holds a config.json and no
 * model_index.json. Errors name the folder and what is missing. */
dt_status dt_model_component_dir(const char *model_dir, const char *component, char *out, size_t n, dt_err *err);

/* 1 when model_dir has a model_index.json listing `component` with a non-null entry, else 0
 * (no index, unreadable, not listed, or [null, null] as diffusers writes absent parts). */
int dt_model_lists(const char *model_dir, const char *component);
/* The denoiser's folder: the component model_index.json lists as "transformer" (DiT
 * pipelines) or "unet" (Stable Diffusion pipelines), or model_dir itself as above. */
dt_status dt_model_denoiser_dir(const char *model_dir, char *out, size_t n, dt_err *err);

#endif
