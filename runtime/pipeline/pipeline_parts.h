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
    int tf32;                      /* the main backend's f32 GEMMs through TF32 (not the text encoder's) */
    int text_dtype_auto;           /* text_dtype was not given: a device text encoder takes the device's default */
} dt_parts_config;

#define DT_PARTS_MAX_TEXT 2

typedef struct {
    char cls[128];        /* model_index.json "_class_name" */
    /* text_encoder, text_encoder_2 (listed in model_index.json) with tokenizer, tokenizer_2 */
    int ntext;
    char text_dir[DT_PARTS_MAX_TEXT][4096];
    dt_backend *be, *text_be;
    dt_dtype text_weights; /* the text encoders' weights: text_be's compute dtype, or DT_I8 (T5 only) */
    dt_text_tokenizer *tok[DT_PARTS_MAX_TEXT];
    vae_model *vae;
    dt_scheduler *sched;
    dt_arena arena;
    int vae_f32;          /* the VAE runs on vae_be, an f32 backend (force_upcast) */
    dt_backend *vae_be;   /* be, or its f32 twin */
    /* Text encoders: T5 runs on be's device (its host code touches activations only through
     * tensor_set/get); CLIP computes its norms on the host, so under a device backend it runs on
     * a CPU text_be with host_arena. text_arena: the arena the encoders take (arena or host_arena). */
    dt_arena host_arena;
    dt_arena *text_arena;
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
/* The denoiser folder of the model ("transformer", or "unet" for Stable Diffusion). */
dt_status dt_pipeline_parts_transformer_dir(const char *model_dir, char *out, size_t n, dt_err *err);

double dt_now(void);
/* MemAvailable from /proc/meminfo in bytes (0 when unknown). */
size_t dt_mem_available(void);

#endif
