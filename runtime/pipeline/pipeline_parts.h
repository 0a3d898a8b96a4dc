/* What the text-to-image and text-to-video pipelines share: the model folder's class name,
 * the compute backends, the tokenizer, the text-encoder folder (loaded per call), the
 * VAE, the scheduler and the activation arena; and small helpers both loops use. Each
 * pipeline adds its own transformer. */
#ifndef DT_PIPELINE_PARTS_H
#define DT_PIPELINE_PARTS_H
#include <stddef.h>
#include "runtime/core/arena.h"
#include "runtime/core/tensor.h"
#include "runtime/models/vae.h"
#include "runtime/text/text_tokenizer.h"
#include "kernels/backend.h"
#include "schedulers/scheduler.h"

typedef struct {
    const char *model_dir;
    dt_dtype dtype, text_dtype;
    int threads;
    const char *solver;            /* scheduler class to use with the folder's config, or NULL */
    int karras;
    const char *solver_schedule;   /* USF schedule, or NULL */
    const char *solver_statistics;
    int clip_sample; /* 0: the config's; 1 on; 2 off */
    dt_device device;              /* 0: the CPU */
    int device_index;
} dt_parts_config;

typedef struct {
    char cls[128];        /* model_index.json "_class_name" */
    char text_dir[4096];
    dt_backend *be, *text_be;
    dt_text_tokenizer *tok;
    vae_model *vae;
    dt_scheduler *sched;
    dt_arena arena;
} dt_pipeline_parts;

dt_status dt_pipeline_parts_load(const dt_parts_config *c, dt_pipeline_parts *p, dt_err *err);
void dt_pipeline_parts_free(dt_pipeline_parts *p);
/* A one-line warning about the scheduler's settings worth a user's attention, or NULL: DDIM
 * clipping x0 to [-1, 1] only because the folder's config (made for another solver) has no
 * clip_sample. Behaviour is diffusers' either way; this only says so. */
const char *dt_pipeline_parts_solver_warning(const dt_pipeline_parts *p);
/* The transformer's latent channels must be the VAE's; out_channels C or 2C (learned sigma). */
dt_status dt_pipeline_parts_check_channels(const dt_pipeline_parts *p, const char *model_dir, int in_channels,
                                           int out_channels, dt_err *err);
/* The transformer folder of the model. */
dt_status dt_pipeline_parts_transformer_dir(const char *model_dir, char *out, size_t n, dt_err *err);

double dt_now(void);
/* MemAvailable from /proc/meminfo in bytes (0 when unknown). */
size_t dt_mem_available(void);

#endif
