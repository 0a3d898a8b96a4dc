/* ditrt — diffusion sampler runtime: the public C API.
 *
 * Contract: every call returns a ditrt_status; on failure the handle's (or the
 * caller's) ditrt_error holds a one-line message naming what was wrong. The library
 * never calls exit()/abort() and keeps no global mutable state. */
#ifndef DITRT_H
#define DITRT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    DITRT_OK = 0,
    DITRT_EINVAL,       /* bad argument or configuration value */
    DITRT_EIO,          /* file missing, unreadable, unwritable */
    DITRT_EFORMAT,      /* malformed file contents */
    DITRT_ENOMEM,       /* allocation failed */
    DITRT_EUNSUPPORTED, /* valid but not implemented here */
    DITRT_EBACKEND,     /* compute library reported a failure */
    DITRT_ECANCELLED
} ditrt_status;

#define DITRT_ERRMSG_MAX 512

/* Status plus a message; the message is empty when status is DITRT_OK. */
typedef struct {
    ditrt_status status;
    char msg[DITRT_ERRMSG_MAX];
} ditrt_error;

const char *ditrt_status_name(ditrt_status s);
const char *ditrt_version(void);

/* ---- text-to-image and text-to-video -------------------------------------------
 * Create a context once per model folder (loads and prepares the weights), then call
 * dit_generate (image pipelines) or dit_generate_video (video pipelines: LattePipeline
 * folders) as often as needed. A context is used by one thread at a time; separate
 * contexts are independent and may run in parallel. dit_cancel may be called from any
 * thread while dit_generate runs. */

typedef struct dit_ctx dit_ctx;

typedef struct {
    const char *model_dir;     /* diffusers pipeline folder (model_index.json) */
    const char *dtype;         /* "f32" or "bf16": transformer and VAE GEMMs; NULL (default): bf16
                                * where the CPU runs it natively (AVX512-BF16, AMX), else f32;
                                * "bf16" on a CPU without it fails with DITRT_EUNSUPPORTED */
    const char *text_dtype;    /* the same for the T5 encoder */
    int threads;               /* 0: all cores */
    int keep_text_encoder;     /* 0 (default): load T5 per call and free it before sampling */
    const char *solver;        /* NULL: the folder's scheduler; else a diffusers class or short
                                * name (see `ditrt txt2img --list-solvers`), with the folder's
                                * betas and spacing (image and video pipelines) */
    int karras;                /* Karras sigmas, for solvers that have them */
    const char *quant_dir;     /* NULL: float; else a plan folder from `ditrt quantize` (ViDiT-Q
                                * W8A8/W4A8/mixed): the transformer's linears are built from it */
    const char *attn_plan;     /* NULL: full attention; else a DiTFastAttn plan (JSON from `ditrt
                                * calibrate-attn`) used by every generation, whose steps must
                                * then equal the plan's */
} dit_ctx_params;

void dit_ctx_params_init(dit_ctx_params *p);
/* Always sets *ctx (unless out of memory) so dit_errmsg can say why a load failed;
 * free it with dit_ctx_free either way. */
ditrt_status dit_ctx_create(const dit_ctx_params *p, dit_ctx **ctx);
void dit_ctx_free(dit_ctx *ctx);
/* Message of the last failure on this context ("" after a success). */
const char *dit_errmsg(const dit_ctx *ctx);

/* Called after every denoising step; return non-zero to cancel the generation. */
typedef int (*dit_progress_fn)(int step, int steps, double seconds, void *user);

typedef struct {
    const char *prompt;
    const char *negative_prompt; /* default "" */
    int width, height;           /* 0: the model's native size */
    int steps;                   /* default 20 */
    float cfg;                   /* guidance scale, default 4.5; <= 1 disables CFG */
    uint64_t seed;               /* default 0 */
    int batch;                   /* images per prompt, default 1 */
    int vae_tiling;              /* decode in overlapping tiles (bounded memory) */
    int resolution_binning;      /* default 1: PixArt's aspect-ratio bins, resized back */
    int clean_caption;           /* default 1: the pipeline's caption preprocessing */
    int max_sequence_length;     /* 0: the pipeline's (120 for PixArt-α, 300 for Σ) */
    int force;                   /* run even when the memory estimate exceeds the machine */
    dit_progress_fn progress;
    void *progress_user;
    int frames;                  /* video: frames per video, 0: the model's video_length */
    float eta;                   /* DDIM's eta (default 0); other solvers ignore it */
} dit_gen_params;

/* Defaults of the image pipelines (20 steps, cfg 4.5) ... */
void dit_gen_params_init(dit_gen_params *p);
/* ... and of LattePipeline (50 steps, cfg 7.5, video_length frames). Video generation
 * ignores vae_tiling, resolution_binning and max_sequence_length (120 tokens). */
void dit_gen_params_init_video(dit_gen_params *p);

typedef struct {
    int width, height;
    uint8_t *rgb; /* width * height * 3 bytes, row-major */
} dit_image;

ditrt_status dit_generate(dit_ctx *ctx, const dit_gen_params *p, dit_image **images, int *n);
void dit_images_free(dit_image *images, int n);

typedef struct {
    int frames, width, height;
    uint8_t *rgb; /* frames * height * width * 3 bytes: frame after frame, each row-major RGB */
} dit_video;

/* One video per batch item (the frame rate is the container's business, not the model's). */
ditrt_status dit_generate_video(dit_ctx *ctx, const dit_gen_params *p, dit_video **videos, int *n);
void dit_videos_free(dit_video *videos, int n);
void dit_cancel(dit_ctx *ctx);

#ifdef __cplusplus
}
#endif
#endif
