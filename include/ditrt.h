/* ditrt — diffusion sampler runtime: the public C API.
 *
 * Every public name starts with `ditrt_` (functions, types) or `DITRT_` (macros, enum values).
 *
 * Contract: every call returns a ditrt_status; on failure the handle's (or the
 * caller's) ditrt_error holds a one-line message naming what was wrong. The library
 * never calls exit()/abort() and keeps no global mutable state.
 *
 * Ownership: strings passed in (model_dir, dtype, prompts, paths ...) are borrowed for the
 * duration of the call only; the library copies what it keeps, so the caller may free or reuse
 * them once the call returns. Strings returned (ditrt_version, ditrt_status_name, ditrt_errmsg)
 * belong to the library: never free them; ditrt_errmsg's string lives until the next call on
 * that context or ditrt_ctx_free. Images and videos returned by ditrt_generate* belong to the
 * caller, who frees them with ditrt_images_free / ditrt_videos_free (not free()).
 *
 * Growable parameter structs: ditrt_ctx_params and ditrt_gen_params start with
 * `size_t struct_size`, set to sizeof the struct by their *_init functions. Always fill them
 * with the *_init function first, then set fields. Fields are only ever appended, so a program
 * built against an older header keeps working with a newer library (the fields it does not
 * know take their defaults); struct_size 0 (not initialized) or larger than this library knows
 * (a newer header than the library) is refused with DITRT_EINVAL. */
#ifndef DITRT_H
#define DITRT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The header's version; ditrt_version() returns the library's (the same string when the
 * header and the library come from one release). DITRT_VERSION_NUMBER is
 * MAJOR * 1000000 + MINOR * 1000 + PATCH, for #if comparisons. The shared library's
 * soname is libditrt.so.MAJOR. */
#define DITRT_VERSION_MAJOR 0
#define DITRT_VERSION_MINOR 2
#define DITRT_VERSION_PATCH 0
#define DITRT_VERSION "0.2.0"
#define DITRT_VERSION_NUMBER (DITRT_VERSION_MAJOR * 1000000 + DITRT_VERSION_MINOR * 1000 + DITRT_VERSION_PATCH)

/* Marks the exported functions: libditrt.so exports these and nothing else. */
#if defined(__GNUC__) || defined(__clang__)
#define DITRT_API __attribute__((visibility("default")))
#else
#define DITRT_API
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

/* A static string naming the status ("ok", "invalid argument", ...). */
DITRT_API const char *ditrt_status_name(ditrt_status s);
/* The library's version, "MAJOR.MINOR.PATCH" (DITRT_VERSION of the release it was built from);
 * a static string. */
DITRT_API const char *ditrt_version(void);

/* ---- text-to-image and text-to-video -------------------------------------------
 * Create a context once per model folder (loads and prepares the weights), then call
 * ditrt_generate (image pipelines) or ditrt_generate_video (video pipelines: LattePipeline
 * folders) as often as needed. A context is used by one thread at a time; separate
 * contexts are independent and may run in parallel. ditrt_cancel may be called from any
 * thread while ditrt_generate* runs. */

typedef struct ditrt_ctx ditrt_ctx;

typedef struct {
    size_t struct_size;        /* sizeof(ditrt_ctx_params), set by ditrt_ctx_params_init */
    const char *model_dir;     /* diffusers pipeline folder (model_index.json) */
    const char *dtype;         /* "f32" or "bf16": transformer and VAE GEMMs; NULL (default): bf16
                                * where the CPU runs it natively (AVX512-BF16, AMX), else f32;
                                * "bf16" on a CPU without it fails with DITRT_EUNSUPPORTED;
                                * "tf32" (since 0.2): f32 with TF32 tensor-core GEMMs, device cuda
                                * only (elsewhere DITRT_EUNSUPPORTED, "tf32 needs --device cuda");
                                * "f16" (since 0.2): f16 GEMM inputs, f32 accumulation, device cuda
                                * only (elsewhere DITRT_EUNSUPPORTED, "f16 needs --device cuda").
                                * Other values: DITRT_EINVAL naming every accepted one. The
                                * search, calibration and quantization dtypes take the same
                                * strings and run on the CPU (f16/tf32: DITRT_EUNSUPPORTED). */
    const char *text_dtype;    /* the same for the T5 encoder: "f32" or "bf16" only; or "int8":
                                * T5's linear and embedding weights kept in int8
                                * (symmetric per output channel / row, a quarter of f32's bytes),
                                * activations and GEMMs in f32; CPU only, T5 only (a CLIP
                                * pipeline: DITRT_EUNSUPPORTED) */
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
    /* ---- since 0.2: fields appended here only ---- */
    const char *solver_schedule;   /* NULL; else a USF per-step solver schedule (JSON from `ditrt
                                    * search-solver`), used instead of `solver`: it fixes the
                                    * model evaluations (ditrt_ctx_info.fixed_steps); a generation's
                                    * steps are then ignored (ditrt_gen_info.steps says what ran) */
    const char *solver_statistics; /* DPM-Solver-v3 statistics the schedule needs, or NULL */
    const char *const *zoo;        /* OMS-DPM: nzoo more model (or transformer, or quantization
                                    * plan) folders sharing this pipeline's VAE and text encoder;
                                    * member 0 is model_dir's own. Borrowed for ditrt_ctx_create. */
    int nzoo;
    const char *model_schedule;    /* NULL; else the zoo member of each model evaluation (JSON from
                                    * `ditrt search-models`): every generation follows it */
    int clip_sample;               /* -1 (default): the folder's scheduler config; 0 off, 1 on: sets
                                    * clip_sample (clip the predicted x0 to +-clip_sample_range) for
                                    * DDIM, LCM and Heun; other solvers (and USF schedules) fail */
    const char *device;            /* NULL or "cpu" (default); "cuda" or "cuda:N": the CUDA backend
                                    * (NULL dtypes then mean bf16). Without a usable GPU, or in a
                                    * ditrt built without CUDA, ditrt_ctx_create fails with
                                    * DITRT_EUNSUPPORTED and a one-line reason (`ditrt info` lists
                                    * the backends and devices). Quantized plans run on the CPU only.
                                    * A T5 text encoder runs on the device too (text_dtype NULL: the
                                    * device's default); CLIP encoders stay on the CPU (text_dtype
                                    * NULL: the CPU's default). */
} ditrt_ctx_params;

/* Sets struct_size and the defaults (clip_sample -1, all other fields 0/NULL); NULL is a no-op (as for every
 * *_init function). NULL pointers never crash a ditrt_* function: those returning a status
 * return DITRT_EINVAL, with a message in the context or ditrt_error where there is one.
 * The strings are read during ditrt_ctx_create only (the plan files are loaded then). */
DITRT_API void ditrt_ctx_params_init(ditrt_ctx_params *p);
/* Always sets *ctx (unless out of memory) so ditrt_errmsg can say why a load failed;
 * free it with ditrt_ctx_free either way. A NULL p fails with DITRT_EINVAL (and a context
 * saying so); a NULL ctx returns DITRT_EINVAL and creates nothing. */
DITRT_API ditrt_status ditrt_ctx_create(const ditrt_ctx_params *p, ditrt_ctx **ctx);
/* Frees the context and its weights; NULL is a no-op. Images and videos already returned stay
 * valid (they are the caller's). */
DITRT_API void ditrt_ctx_free(ditrt_ctx *ctx);
/* Message of the last failure on this context ("" after a success): a one-line string owned
 * by the context, overwritten by the next call on it; "out of memory" for a NULL context. */
DITRT_API const char *ditrt_errmsg(const ditrt_ctx *ctx);

/* One line of progress (or warning) text from library work (no newline). */
typedef void (*ditrt_log_fn)(const char *line, void *user);

/* Called after every denoising step (not during text encoding or the VAE decode) on the
 * thread that called ditrt_generate*: `step` counts the steps done, 1..steps; `seconds` is the
 * wall-clock time (monotonic clock) that step took, not the time since the generation started.
 * Return non-zero to cancel the generation (it then fails with DITRT_ECANCELLED). */
typedef int (*ditrt_progress_fn)(int step, int steps, double seconds, void *user);

typedef struct {
    size_t struct_size;          /* sizeof(ditrt_gen_params), set by ditrt_gen_params_init* */
    const char *prompt;          /* required; read during the call only */
    const char *negative_prompt; /* default "" */
    int width, height;           /* pixels; 0: the model's native size (sample_size x the VAE's
                                  * upscale); see "Sizes" below */
    int steps;                   /* default 20 */
    float cfg;                   /* guidance scale, default 4.5; <= 1 disables CFG */
    uint64_t seed;               /* default 0 */
    int batch;                   /* images per prompt, default 1 */
    int vae_tiling;              /* decode in overlapping tiles (bounded memory) */
    int resolution_binning;      /* default 1: PixArt's aspect-ratio bins, resized back */
    int clean_caption;           /* default 1: the pipeline's caption preprocessing */
    int max_sequence_length;     /* 0: the pipeline's (120 for PixArt-α, 300 for Σ) */
    int force;                   /* run even when the memory estimate exceeds the machine */
    ditrt_progress_fn progress;  /* may be NULL */
    void *progress_user;         /* passed to progress as is */
    int frames;                  /* video: frames per video, 0: the model's video_length */
    float eta;                   /* DDIM's eta (default 0); with any other solver eta > 0 is refused */
    /* ---- since 0.2: fields appended here only ---- */
    int decode_chunk;                  /* video: frames per VAE decode call; 0: the pipeline's (all, or
                                        * 14 as diffusers; halved until it fits in memory) */
    ditrt_progress_fn frame_progress;  /* called after each VAE decode call with the frames (images)
                                        * decoded so far and in all, and that call's seconds; gets
                                        * progress_user; non-zero cancels. May be NULL */
    int batch_index;                   /* -1 (default): all `batch` items; 0..batch-1: only that item of
                                        * the batch (*n = 1), from its slice of the batch's noise (the
                                        * latents and any stochastic solver's step noise): the batch's
                                        * item computed alone, 1/batch of the work; its pixels match the
                                        * batch's within f32 rounding (GEMM blocking depends on the row
                                        * count), not byte for byte ... */
    int batch_exact;                   /* ... unless this is 1: the whole batch is computed and item
                                        * batch_index returned, byte-identical to the batch's (the
                                        * batch's work) */
    ditrt_log_fn warning;              /* called during ditrt_generate* (before the first step) with each
                                        * one-line warning about the request's settings: a size far from
                                        * the model's trained size, a zoo without a model schedule. NULL
                                        * (default): not reported; the library prints nothing */
    void *warning_user;
    int clip_skip;                     /* CLIP pipelines (Stable Diffusion, SDXL): layers skipped from the
                                        * end for the prompt's embeddings, as diffusers' clip_skip; 0
                                        * (default): none. Other pipelines refuse > 0 */
    /* SDXL's micro-conditioning (add_time_ids), in pixels, as StableDiffusionXLPipeline's
     * original_size, crops_coords_top_left and target_size. 0 (default): the original and target
     * sizes are the generated width x height, the crop 0 0 (diffusers' defaults). The negative_*
     * go to the unconditional (CFG) rows when both negative sizes are set (their crop default
     * 0 0), else those rows take the prompt's, as diffusers; one negative size alone is refused.
     * A size is both its fields or neither. Pipelines that are not SDXL (ditrt_ctx_info
     * micro_conditioning 0) refuse any non-zero value with DITRT_EINVAL. */
    int original_width, original_height;
    int crop_top, crop_left;
    int target_width, target_height;
    int negative_original_width, negative_original_height;
    int negative_crop_top, negative_crop_left;
    int negative_target_width, negative_target_height;
} ditrt_gen_params;

/* Sizes: the generated size must be a multiple of M = the transformer's patch_size times the
 * VAE's upscale (2^(VAE blocks - 1)); M is 16 for PixArt-XL-2 and Latte-1 (patch 2, VAE 8x).
 * Images with resolution_binning (the default), on models whose sample_size has PixArt's bins
 * (32, 64, 128, 256): any width and height in 1..16384 are accepted; the image is generated
 * at the nearest aspect-ratio bin and resized back to width x height. Otherwise (binning off,
 * other models, and all videos): width and height must be multiples of M, at most 16384.
 * Anything else fails with DITRT_EINVAL, the message naming M. */

/* Sets struct_size and the defaults of the image pipelines (20 steps, cfg 4.5, batch_index -1) ... */
DITRT_API void ditrt_gen_params_init(ditrt_gen_params *p);
/* ... and of LattePipeline (50 steps, cfg 7.5, video_length frames). Video generation
 * ignores vae_tiling, resolution_binning and max_sequence_length (120 tokens). */
DITRT_API void ditrt_gen_params_init_video(ditrt_gen_params *p);

/* What a context holds, for the caller to check a request or label its outputs before
 * generating. Output structs with struct_size: set it to sizeof the struct before the call;
 * the library fills what it knows up to that size (a newer header's extra fields read 0). */
typedef struct {
    size_t struct_size;
    int native_width, native_height; /* the size width/height 0 gives */
    int size_multiple;               /* M of "Sizes" above */
    int max_frames;                  /* video_length; 0: an image model (use ditrt_generate) */
    int zoo_size;                    /* OMS-DPM members, the model's own included (1 without a zoo) */
    const char *solver;              /* the scheduler's diffusers class, e.g. "DDIMScheduler" */
    const char *solver_warning;      /* one line about the solver's settings worth a warning, or NULL */
    const char *dtype, *text_dtype;  /* resolved compute types: "f32", "bf16" or "f16" ("tf32": dtype "tf32") */
    int fixed_steps;                 /* the steps a solver schedule fixes; 0: the steps are free */
    int micro_conditioning;          /* 1: SDXL's original/target size and crop (ditrt_gen_params) apply */
} ditrt_ctx_info;
/* Strings belong to the context (valid until ditrt_ctx_free). Fails (DITRT_EINVAL) for a NULL
 * or failed context or struct_size 0. */
DITRT_API ditrt_status ditrt_ctx_get_info(const ditrt_ctx *ctx, ditrt_ctx_info *info);

/* What the last successful ditrt_generate* on a context did. Fails before any success. */
typedef struct {
    size_t struct_size;             /* as for ditrt_ctx_info */
    int prompt_truncated;           /* the prompt had more than max_sequence_length tokens */
    int negative_truncated;         /* the same for the negative prompt */
    int max_sequence_length;        /* text tokens used */
    double seconds_text, seconds_sampling, seconds_decode; /* wall time of the three stages */
    int steps;                      /* denoising steps run (a solver schedule's own count) */
    int batch, batch_index;         /* the request's batch and batch_index (-1: all items made) */
} ditrt_gen_info;
DITRT_API ditrt_status ditrt_last_gen_info(const ditrt_ctx *ctx, ditrt_gen_info *info);

typedef struct {
    int width, height;
    uint8_t *rgb; /* width * height * 3 bytes, row-major */
} ditrt_image;

/* On DITRT_OK, *images is an array of *n = batch images, allocated by the library and owned by
 * the caller, who frees it (array and pixels) with one ditrt_images_free(*images, *n). On
 * failure *images is NULL and *n 0. */
DITRT_API ditrt_status ditrt_generate(ditrt_ctx *ctx, const ditrt_gen_params *p, ditrt_image **images, int *n);
/* Frees the n images and the array; NULL is a no-op. */
DITRT_API void ditrt_images_free(ditrt_image *images, int n);

typedef struct {
    int frames, width, height;
    uint8_t *rgb; /* frames * height * width * 3 bytes: frame after frame, each row-major RGB */
} ditrt_video;

/* One video per batch item (the frame rate is the container's business, not the model's).
 * Ownership as for ditrt_generate: free with one ditrt_videos_free(*videos, *n). */
DITRT_API ditrt_status ditrt_generate_video(ditrt_ctx *ctx, const ditrt_gen_params *p, ditrt_video **videos, int *n);
/* Frees the n videos and the array; NULL is a no-op. */
DITRT_API void ditrt_videos_free(ditrt_video *videos, int n);

/* Cancels the ditrt_generate* running on ctx or, when none is running, the next one to start
 * on it: the flag it sets stays until a generation consumes it. A generation that finds it set
 * when it starts fails at once with DITRT_ECANCELLED ("cancelled before the first step");
 * one running sees it after the denoising step in progress and fails with DITRT_ECANCELLED.
 * Every ditrt_generate* that starts (passes its argument checks) clears the flag when it
 * returns, so a cancel is never lost to a race with the start of a call, and one cancel never
 * cancels two generations. A cancel during the VAE decode, after the last step's check, is
 * consumed without effect (that generation succeeds). Safe from any thread; NULL is a no-op. */
DITRT_API void ditrt_cancel(ditrt_ctx *ctx);

/* ---- solvers ----------------------------------------------------------------------
 * The solvers `solver` takes (ditrt_ctx_params): i in [0, ditrt_solver_count()). Names are
 * static strings. */
DITRT_API int ditrt_solver_count(void);
DITRT_API const char *ditrt_solver_name(int i);  /* diffusers class, e.g. "DPMSolverMultistepScheduler" */
DITRT_API const char *ditrt_solver_alias(int i); /* short name, e.g. "dpm++2m" */

/* A key/value text pair: output metadata (PNG tEXt, MP4 tags, ...). Strings are borrowed. */
typedef struct {
    const char *key, *value;
} ditrt_meta;


/* ---- section: outputs and comparisons (files) ---- */
/* Images are PNG (the meta pairs as tEXt chunks, iTXt for non-ASCII values; keys 1..79
 * printable Latin-1 characters), JPEG (quality 95), WebP (still, lossy, quality 90) or BMP, by
 * extension (any case). JPEG and WebP carry one text: the value of a "parameters" pair when
 * there is one (the AUTOMATIC1111 web UI's generation text, which txt2img writes), else
 * "key: value" lines of all pairs, as an EXIF UserComment (and in JPEG a COM segment too; each
 * cut at 64 KB); WebP adds the pairs as "key: value" lines in XMP, as videos do. BMP carries
 * no text. Videos by path: a folder (ending in '/' or existing) of frame_000.png ...,
 * a pattern with one integer conversion ("out_%03d.png"), .webp (animated, quality 90, meta in
 * XMP) or .mp4 (H.264, CRF 18, yuv420p, meta as mdta tags and `comment`). Every file is
 * written to a temp file in its folder and renamed into place when complete: a failure
 * leaves no partial file and an earlier file untouched. Errors name the path. */
typedef enum {
    DITRT_OUTPUT_IMAGE,         /* .png, .jpg/.jpeg, .webp (as an image: video 0), .bmp */
    DITRT_OUTPUT_FRAME_FOLDER,  /* <folder>/frame_000.png ... */
    DITRT_OUTPUT_FRAME_PATTERN, /* printf pattern of .png files */
    DITRT_OUTPUT_WEBP,
    DITRT_OUTPUT_MP4
} ditrt_output_kind;
/* Whether `path` can be written as an image (video 0) or a video (video 1), before any work:
 * the type by extension (or pattern, folder) and a file can be created in its folder; creates
 * nothing that stays. *kind (may be NULL) gets the path's kind. */
DITRT_API ditrt_status ditrt_output_check(const char *path, int video, ditrt_output_kind *kind, ditrt_error *err);
/* Writes one image with n meta pairs (meta may be NULL when n is 0). */
DITRT_API ditrt_status ditrt_image_save(const char *path, const ditrt_image *image, const ditrt_meta *meta, int n,
                                        ditrt_error *err);
/* Writes one video at fps frames per second (the container's rate; PNG frames ignore it) with n
 * meta pairs, each PNG frame carrying them all. */
DITRT_API ditrt_status ditrt_video_save(const char *path, const ditrt_video *video, double fps, const ditrt_meta *meta,
                                        int n, ditrt_error *err);
/* Reads a PNG (any bit depth or colour type: palette expanded, gray replicated, alpha dropped,
 * 16-bit rounded to 8), JPEG, still WebP or BMP by content into 8-bit RGB; free with
 * ditrt_image_free. */
DITRT_API ditrt_status ditrt_image_load(const char *path, ditrt_image *out, ditrt_error *err);
/* Frees the pixels of one image and zeroes it (not the ditrt_generate arrays:
 * ditrt_images_free); NULL is a no-op. */
DITRT_API void ditrt_image_free(ditrt_image *image);
/* Reads an .mp4 or .webp file or a PNG frame folder/pattern (frames until one is missing);
 * *fps (may be NULL) gets the container's rate, 0 for PNG frames. Free with ditrt_video_free. */
DITRT_API ditrt_status ditrt_video_load(const char *path, ditrt_video *out, double *fps, ditrt_error *err);
DITRT_API void ditrt_video_free(ditrt_video *video);

/* PSNR (dB, 255^2 / MSE over all samples; +inf when identical) and SSIM (Wang et al. 2004:
 * 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, valid positions, the mean of R, G, B;
 * NaN for images under 11x11) of two files of the same size. Two videos when either path is a
 * video path (.mp4, .webp, a '%' pattern or a folder): the metrics of each frame pair and their
 * means (the frame counts must match). */
typedef struct {
    int frames;              /* 0: two images; else the frames compared */
    int width, height;
    double psnr, ssim;       /* images: the values; videos: the means over the frames */
    double *frame_psnr, *frame_ssim; /* videos: `frames` values each (owned); NULL for images */
} ditrt_compare_result;
/* diff_path (images only; may be NULL): writes |A - B| per sample scaled so the largest
 * difference is 255 (all black when identical), checked writable before anything is read.
 * Free the result with ditrt_compare_result_free (also after a failure: it is zeroed). */
DITRT_API ditrt_status ditrt_compare_files(const char *a, const char *b, const char *diff_path,
                                           ditrt_compare_result *out, ditrt_error *err);
DITRT_API void ditrt_compare_result_free(ditrt_compare_result *r);

/* ---- section: quantization (ViDiT-Q / MixDQ) ---- */
/* Post-training quantization of a pipeline's transformer into a plan folder (`ditrt quantize`;
 * load it with ditrt_ctx_params.quant_dir): calibration over the prompts (ViDiT-Q: max |x| per
 * input channel of every block linear, all steps, CFG halves and frames), then the quantized
 * layers (balancing, random Hadamard rotation, 8-bit activations) written to out_dir
 * (plan.json + weights.safetensors). Scheme "mixed" also scores every layer alone at W4 by the
 * SQNR of the transformer output (a video model's temporal layers on frame differences, as
 * their own group) and puts the least sensitive layers at 4 bits until each group's
 * parameter-weighted average is within `budget`. Image (PixArt) and video (Latte) pipelines. */

#define DITRT_QUANT_MAX_FP_TEXT_TOKENS 16

typedef struct {
    size_t struct_size;             /* sizeof(ditrt_quantize_params), set by ditrt_quantize_params_init */
    const char *model_dir;          /* required: a pipeline folder (model_index.json) */
    const char *const *prompts;     /* required: nprompts >= 1 calibration prompts (prompt i seeded seed + i) */
    int nprompts;
    const char *out_dir;            /* required: the plan folder written (created; files replaced) */
    const char *scheme;             /* "w8a8" (default), "w4a8" or "mixed" (W4/W8 per layer) */
    float budget;                   /* "mixed" only, and required there: average weight bits in [4, 8]; else 0 */
    int group;                      /* 4-bit layers (w4a8, mixed): group-wise scales over this many input
                                     * channels, even; 0 (default): per output channel */
    const int *fp_text_tokens;      /* MixDQ: text-token indices (per sequence, distinct, 0..65535) the
                                     * cross-attention k|v layers compute in floating point; borrowed */
    int n_fp_text_tokens;           /* 0..DITRT_QUANT_MAX_FP_TEXT_TOKENS */
    const char *dtype;              /* calibration compute, "f32" or "bf16"; NULL: as ditrt_ctx_params.dtype */
    float alpha;                    /* balancing strength in [0, 1], default 0.5 */
    int balance, rotate;            /* default 1 each: ViDiT-Q's channel balancing, the Hadamard rotation */
    float cfg;                      /* guidance while calibrating; < 0 (default): the pipeline's */
    int steps;                      /* denoising steps per prompt, 1..1000, default 20 */
    int width, height;              /* 0 (default): the pipeline's native size */
    int frames;                     /* video pipelines: frames (0: video_length); must be 0 for images */
    int threads;                    /* 0: all cores */
    uint64_t seed;                  /* default 0 */
    ditrt_log_fn log;               /* progress lines ("calibrated on prompt i/n", per-layer sensitivity
                                     * and the allocation for "mixed"); NULL (default): silent */
    void *log_user;
    int int8_attention;             /* 1: the plan also runs the transformer's self-attention with QKᵀ in
                                     * int8 (SageAttention-style; plan.json "attention": "int8"; cross-
                                     * attention, VAE and text encoder stay float); default 0 */
    const char *sensitivity;        /* "mixed" only: "output" (NULL, default): every layer scored by the
                                     * SQNR of the denoiser output; "decoupled": MixDQ's metric-decoupled
                                     * analysis, cross-attention layers (content) scored on the output's
                                     * coarse structure, the others (quality) on its fine detail, each
                                     * group allocated to the budget apart */
} ditrt_quantize_params;

/* What was written (struct_size set by ditrt_quantize_result_init; fields appended only). */
typedef struct {
    size_t struct_size;
    int quantized;       /* layers quantized */
    int kept_float;      /* linears kept in floating point (outside the transformer blocks) */
    double weight_bytes; /* resident bytes of all the transformer's linear weights (+ scales) */
} ditrt_quantize_result;

DITRT_API void ditrt_quantize_params_init(ditrt_quantize_params *p);
DITRT_API void ditrt_quantize_result_init(ditrt_quantize_result *r);
/* The rules on the settings alone (scheme, budget, group, alpha, steps, sizes, fp_text_tokens),
 * reading no file: DITRT_EINVAL and a message naming the field ("budget: ..."). ditrt_quantize
 * applies them first as well. */
DITRT_API ditrt_status ditrt_quantize_check(const ditrt_quantize_params *p, ditrt_error *err);
/* Calibrates, allocates (mixed) and writes the plan folder; fills *r when r is not NULL (its
 * struct_size set). Long-running (a pipeline generation per prompt; "mixed" one more model load
 * and forward pass per layer). Frames given for an image pipeline fail with DITRT_EINVAL
 * ("frames: only for video (Latte) pipelines"). err may be NULL. */
DITRT_API ditrt_status ditrt_quantize(const ditrt_quantize_params *p, ditrt_quantize_result *r, ditrt_error *err);

/* ---- section: attention plans (DiTFastAttn calibration) ---- */

/* DiTFastAttn plan calibration (`ditrt calibrate-attn`): per denoising step and self-attention
 * layer, the greedy search of the published code keeps the cheapest method whose output stays
 * within the threshold, over every prompt, and writes the plan JSON that ditrt_ctx_params
 * .attn_plan (and `--attn-plan`) takes. Image models (PixArt) and video models (Latte: spatial
 * and temporal layers) alike. Messages that the command line can also produce name the option
 * (e.g. "--temporal-window: required for a video model"); the others name the field. */
typedef struct {
    size_t struct_size;          /* sizeof(ditrt_attn_calib_params), set by ditrt_attn_calib_params_init */
    const char *model_dir;       /* required: diffusers pipeline folder */
    const char *const *prompts;  /* required: nprompts >= 1 prompts; prompt i runs with seed + i */
    int nprompts;
    const char *out_path;        /* required: the plan file written */
    int steps;                   /* denoising steps, default 20 (the plan is for this count) */
    int window;                  /* required (-1: unset): spatial window, tokens each side */
    int temporal_window;         /* video models: required, frames each side; -1 (default) unset;
                                  * image models: must stay -1 */
    int frames;                  /* video models: frames per video, 0 (default): the model's; images: 0 */
    double threshold;            /* required (-1: unset): delta >= 0 (e.g. 0.0725) */
    const char *metric;          /* "rel" (default, the published loss) or "ssim" */
    double cfg;                  /* guidance scale, default 4.5; <= 1: no CFG (no ASC methods) */
    uint64_t seed;               /* default 0 */
    int width, height;           /* pixels, 0: native */
    int resolution_binning;      /* default 1 */
    const char *dtype;           /* "f32" / "bf16"; NULL (default): the CPU's native choice */
    int threads;                 /* 0: all cores */
    const char *cfg_half;        /* "cond" (default) or "uncond": the CFG half ASC computes */
    const char *asc_residual;    /* "same" (default) or "first": the residual WA-RS+ASC adds */
    ditrt_log_fn log;            /* progress: a line per prompt and per step; NULL: silent */
    void *log_user;
} ditrt_attn_calib_params;

/* What a calibration did. The caller sets struct_size = sizeof(ditrt_attn_calib_result); the
 * library fills what that size covers (fields are only appended). */
typedef struct {
    size_t struct_size;
    int nprompts, steps;
    int layers;                  /* self-attention layers decided: spatial (all, for images) ... */
    int temporal_layers;         /* ... and temporal (video models; 0 for images) */
    long trials;                 /* trial forwards run */
    double trial_forwards;       /* their cost in whole forwards (trials run from the tried block on) */
    long exhaustive_trials;      /* nprompts * (steps - 1) * (layers + temporal_layers) * 4: one whole
                                  * forward per layer and candidate */
    double seconds;              /* wall time after the model load (prompts, validation, save) */
} ditrt_attn_calib_result;

/* Sets struct_size and the defaults (required fields unset: NULL, window and threshold -1). */
DITRT_API void ditrt_attn_calib_params_init(ditrt_attn_calib_params *p);
/* Runs the calibration and writes p->out_path (only when it succeeds). r may be NULL. */
DITRT_API ditrt_status ditrt_calibrate_attn(const ditrt_attn_calib_params *p, ditrt_attn_calib_result *r, ditrt_error *err);

/* Attention methods, in the order of ditrt_attn_plan_summary.methods. */
#define DITRT_ATTN_NMETHODS 5
/* "full", "wars", "ast", "asc", "wars+asc" for 0..DITRT_ATTN_NMETHODS-1 (static); NULL otherwise. */
DITRT_API const char *ditrt_attn_method_name(int method);

/* A plan file's summary and its cost (what `ditrt info --attn-plan` prints). The caller sets
 * struct_size = sizeof(ditrt_attn_plan_summary); the library fills what that size covers. */
typedef struct {
    size_t struct_size;
    char model[256];             /* the plan's "model" ("" when unnamed) */
    int layers;                  /* spatial layers (all layers of an image plan) */
    int temporal_layers;         /* video plans: temporal layers; 0 for image plans */
    int steps;
    int window;                  /* spatial window, tokens each side */
    int temporal_window;         /* video plans: frames each side */
    const char *cfg_half;        /* "cond" / "uncond" (static strings) */
    const char *asc_residual;    /* "same" / "first" */
    int methods[2][DITRT_ATTN_NMETHODS]; /* layer-steps per method: [0] spatial, [1] temporal */
    /* The cost at this shape: batch sequences (2: a CFG batch), frames per video (1 for image
     * plans), tokens per frame, hidden width: */
    int batch, frames, tokens, channels;
    double attn_flops, attn_flops_full;     /* attention FLOPs (QK^T and PV) kept / all full */
    double module_flops, module_flops_full; /* the same with the qkv and out projections */
    double cache_peak_bytes;                /* peak cache held between steps (f32) */
} ditrt_attn_plan_summary;

/* Loads and checks the plan at plan_path. With model_dir, the plan must fit that pipeline's
 * denoiser (layers, kind) and is costed at width x height (0: native) and `frames` (video
 * models; 0: the model's); without (NULL), at PixArt-XL-2 (1152 wide, 16 pixels a token;
 * 1024 px) for an image plan or Latte-1 (512 px, 16 frames) for a video plan, at width x
 * height / frames when given. Batch 2 (CFG). Reads configs, no weights. */
DITRT_API ditrt_status ditrt_attn_plan_summarize(const char *plan_path, const char *model_dir, int width, int height,
                                                 int frames, ditrt_attn_plan_summary *s, ditrt_error *err);

/* ---- section: solver and model schedule search (USF, OMS-DPM) ---- */

/* USF solver-schedule search (`ditrt search-solver`): an evolutionary search of a per-step
 * solver schedule at a fixed number of model evaluations (nfe) for one model folder, scored on
 * the final latents of `samples` seeds per calibration prompt (sample k: prompt k / samples,
 * seed seed + k) against the folder's own solver at ref_steps steps (DPM-Solver++ on the
 * folder's betas when that solver reads learned variance channels, as Open-Sora's IDDPMScheduler:
 * its samples carry fresh noise per step, not the ODE solution the schedules approximate; the
 * log says so); the score is the mean
 * relative L2 over every (prompt, seed), lower is better. Model outputs are cached, so
 * candidates sharing a prefix of decisions share its evaluations. Writes the best schedule
 * (JSON, atomically) to out_path, for ditrt_ctx_params.solver_schedule / `txt2img
 * --solver-schedule` at nfe steps. Deterministic for a seed, dtype and thread count. */
typedef struct {
    size_t struct_size;          /* sizeof(ditrt_search_solver_params), set by _init */
    const char *model_dir;       /* required: a diffusers pipeline folder */
    const char *dtype;           /* "f32" or "bf16" (transformer, VAE and T5); NULL: the device's default */
    int threads;                 /* 0: all cores */
    const char *const *prompts;  /* required: nprompts calibration prompts (>= 1) */
    int nprompts;
    const char *negative_prompt; /* default "" */
    int width, height;           /* pixels; 0: the model's native size (binning as ditrt_generate) */
    float cfg;                   /* guidance scale, default 4.5 (>= 0) */
    uint64_t seed;               /* default 0 */
    int nfe;                     /* model evaluations = steps of the schedule, 2..200, default 8 */
    int population;              /* 4..10000, default 16 */
    int generations;             /* 0..100000, default 10 */
    int max_order;               /* Taylor order of the steps, 1..3, default 3 */
    int samples;                 /* seeds per prompt, 1..1000, default 2 */
    int ref_steps;               /* steps of the reference run, 2..1000, default 50 */
    const char *out_path;        /* required: where the schedule JSON is written */
    ditrt_log_fn log;            /* progress lines ("reference 1/2 (50 steps)" ...), or NULL */
    void *log_user;
} ditrt_search_solver_params;

typedef struct {
    size_t struct_size;  /* sizeof, set by ditrt_search_solver_result_init: the library writes no further */
    double score;        /* the schedule written: mean relative L2 against the references */
    double ddim_score;   /* DDIM on the same timesteps, for comparison */
    int candidates;      /* schedules scored */
    int64_t model_calls; /* denoiser evaluations the search made (references not counted) */
    int64_t cache_hits;  /* evaluations served from the cache */
    int prompts, samples;
    double seconds;      /* wall-clock time of the call (model load included) */
} ditrt_search_solver_result;

DITRT_API void ditrt_search_solver_params_init(ditrt_search_solver_params *p);
DITRT_API void ditrt_search_solver_result_init(ditrt_search_solver_result *r);
/* Loads model_dir, runs the search and writes out_path. On failure *result is zeroed and err
 * (may be NULL) holds a one-line message naming the field, folder or file. */
DITRT_API ditrt_status ditrt_search_solver(const ditrt_search_solver_params *p, ditrt_search_solver_result *result,
                                           ditrt_error *err);

/* OMS-DPM model-schedule search (`ditrt search-models`): which zoo member runs each model
 * evaluation of a `steps`-step generation so that it fits a latency budget while staying
 * closest (mean PSNR over the prompts) to the all-member-0 images. Member 0 is model_dir's
 * own transformer, members 1..nzoo the `zoo` folders (as ditrt_ctx_params.zoo). Latencies
 * per evaluation are measured here (one warm-up and one timed generation per member) unless
 * given; the search is greedy (each round moves the one evaluation to a faster member that
 * keeps PSNR highest) and stops when the estimate fits. Writes the schedule (JSON, for
 * ditrt_ctx_params.model_schedule / `txt2img --model-schedule`) to out_path. Generations are
 * at exactly width x height (no resolution binning). */
typedef struct {
    size_t struct_size;          /* sizeof(ditrt_search_models_params), set by _init */
    const char *model_dir;       /* required: a diffusers pipeline folder (zoo member 0) */
    const char *const *zoo;      /* required: nzoo (>= 1) more model, transformer or quantization plan folders */
    int nzoo;
    const char *dtype;           /* "f32" or "bf16"; NULL: the device's default */
    int threads;                 /* 0: all cores */
    const char *const *prompts;  /* required: nprompts calibration prompts (>= 1) */
    int nprompts;
    int steps;                   /* default 20 */
    int width, height;           /* pixels; 0: the model's native size */
    float cfg;                   /* default 4.5 */
    uint64_t seed;               /* default 0 */
    double budget_seconds;       /* sampling seconds per image; <= 0: use budget_ratio */
    double budget_ratio;         /* in (0, 1]: of the all-member-0 latency */
    const double *latency;       /* NULL: measured; else nzoo + 1 seconds per evaluation (> 0),
                                  * model first, to plan with (e.g. another machine's) */
    int nlatency;
    const char *out_path;        /* where the schedule JSON is written; NULL: not written */
    ditrt_log_fn log;            /* progress lines ("zoo member 0: ..." ...), or NULL */
    void *log_user;
} ditrt_search_models_params;

typedef struct {
    size_t struct_size;  /* sizeof, set by ditrt_search_models_result_init: the library writes no further */
    int evaluations;     /* model evaluations of one generation */
    int *models;         /* [evaluations]: the zoo member of each (the schedule written) */
    int nzoo;            /* zoo members, model_dir's included */
    double *latency;     /* [nzoo]: seconds per evaluation planned with (measured or given) */
    double est_seconds;  /* the schedule's estimated sampling seconds per image */
    double ref_seconds;  /* all-member-0's */
    double budget_seconds; /* the budget it fits (budget_ratio * ref_seconds when given as a ratio) */
    double psnr;         /* mean PSNR (dB) against the all-member-0 images (200: identical) */
    int generations;     /* generations the search ran */
    double seconds;      /* wall-clock time of the call (model load included) */
} ditrt_search_models_result;

DITRT_API void ditrt_search_models_params_init(ditrt_search_models_params *p);
DITRT_API void ditrt_search_models_result_init(ditrt_search_models_result *r);
/* On DITRT_OK the result's arrays are the caller's: free them with
 * ditrt_search_models_result_free. On failure *result is zeroed and err (may be NULL) names
 * the field, folder or file (an unreachable budget: "budget: ..."). */
DITRT_API ditrt_status ditrt_search_models(const ditrt_search_models_params *p, ditrt_search_models_result *result,
                                           ditrt_error *err);
/* Frees the arrays and zeroes the result (struct_size kept); NULL is a no-op. */
DITRT_API void ditrt_search_models_result_free(ditrt_search_models_result *r);

#ifdef __cplusplus
}
#endif
#endif
