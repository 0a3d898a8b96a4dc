/* Post-training quantization of a pipeline's denoiser into a plan folder (what `ditrt
 * quantize` and ditrt_quantize() do), for any denoiser the pipeline runs (images or videos):
 *
 *   1. calibration (ViDiT-Q): the pipeline generates every prompt with the denoiser's linears
 *      observed (DT_QMODE_OBSERVE), every step, CFG halves and frames included, recording
 *      max |x| per input channel;
 *   2. mixed precision only (MixDQ-style allocation): the denoiser inputs of the first, middle
 *      and last step of the first prompt are kept; each quantizable layer alone at W4 is
 *      scored by the SQNR of the denoiser output against the float output on them (a temporal
 *      layer on frame-to-frame differences), and layers go to 4 bits, least sensitive first,
 *      per sensitivity group (temporal layers / the others) until the group's parameter-weighted
 *      average is within the budget;
 *      With sensitivity "decoupled" (MixDQ's metric-decoupled analysis, approximated): the
 *      cross-attention layers (".attn2." in the name: what the text changes, the image's
 *      content) form their own group scored by the SQNR of the output's coarse structure
 *      (means over P x P pixel blocks, P = max(2, min(H, W) / 8)); every other layer (the
 *      image's quality) by the SQNR of the fine detail left after removing those means; each
 *      group meets the budget apart. MixDQ scores content with images' CLIP/SSIM and quality
 *      with FID-like image metrics and allocates by integer programming; these are
 *      denoiser-output proxies with the greedy allocation below;
 *   3. the denoiser is built once more through a QUANT-mode quantizer from the statistics
 *      (balancing, rotation, groups, float text tokens: none given and a CLIP-conditioned denoiser
 *      (a U-Net) means token 0, CLIP's huge-magnitude BOS, as MixDQ) and its layers saved with
 *      dt_qplan_save (runtime/plans/quant_plan.h).
 *
 * Internal to the library; the public entry point is ditrt_quantize (runtime/api/api_quant.c). */
#ifndef DT_QUANT_CALIB_H
#define DT_QUANT_CALIB_H
#include <stdint.h>
#include "runtime/core/error.h"

typedef struct {
    const char *model_dir;              /* a pipeline folder (model_index.json + transformer/ ...) */
    const char *const *prompts;         /* calibration prompts (seed + i for prompt i) */
    int nprompts;
    const char *out_dir;                /* the plan folder written */
    const char *scheme;                 /* "w8a8", "w4a8" or "mixed" (NULL: "w8a8") */
    float budget;                       /* mixed: average weight bits in [4, 8]; else 0 */
    const char *dtype;                  /* calibration compute: "f32" / "bf16", NULL: the CPU's default */
    float alpha;                        /* balancing strength in [0, 1] */
    float cfg;                          /* < 0: the pipeline's guidance */
    int steps, width, height, frames;   /* sizes 0: the pipeline's; frames: video models only */
    int threads;                        /* 0: all cores */
    int balance, rotate, group;         /* group: 4-bit layers' group size (even), 0: per channel */
    const int *fp_tokens;               /* MixDQ: text tokens the cross-attention k|v keep in float */
    int nfp_tokens;
    uint64_t seed;
    ditrt_log_fn log;                   /* progress and sensitivity lines; NULL: silent */
    void *log_user;
    int attn_int8;                      /* the plan asks for int8 self-attention (calibration stays float) */
    const char *sensitivity;            /* mixed: "output" (NULL) or "decoupled" (below) */
} dt_qcalib_config;

typedef struct {
    int nquant, nfloat;  /* layers quantized / kept in floating point */
    double weight_bytes; /* resident bytes of every linear's weights (+ scales) as quantized */
} dt_qcalib_result;

/* The rules on the settings (scheme, budget, group, alpha, steps, sizes, float text tokens),
 * without reading any file; messages name the field ("scheme: ..."). */
dt_status dt_qcalib_check(const dt_qcalib_config *c, dt_err *err);
/* Checks c (dt_qcalib_check, the inputs, then frames against the model), calibrates,
 * allocates bits (mixed) and writes the plan folder. */
dt_status dt_qcalib_run(const dt_qcalib_config *c, dt_qcalib_result *res, dt_err *err);

#endif
