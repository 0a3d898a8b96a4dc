/* Post-training quantization of a pipeline's denoiser into a plan folder: ViDiT-Q calibration,
 * the denoiser-input capture and SQNR sensitivity pass of mixed precision, the bit allocation,
 * and the quantized build that is saved (quant_calib.h says how). */
#include "quant_calib.h"
#include "runtime/plans/quant_plan.h"
#include "runtime/plans/quantize.h"
#include "runtime/core/arena.h"
#include "runtime/models/denoiser.h"
#include "runtime/models/modeldir.h"
#include "runtime/pipeline/pipeline.h"
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What a run works with: the settings and the model's transformer folder and description. */
typedef struct {
    const dt_qcalib_config *c;
    const char *scheme;
    int mixed;
    int decoupled;         /* mixed: MixDQ's content / quality groups (quant_calib.h) */
    char dir[1024];        /* the transformer folder */
    const dt_denoiser_class *cls; /* its class: which layers are what (linear_role) */
    dt_denoiser_info info; /* of its config (temporal_layers > 0: a video model's own sensitivity group) */
} qcalib;

static const char *scheme_of(const dt_qcalib_config *c) { return c->scheme ? c->scheme : "w8a8"; }

dt_status dt_qcalib_check(const dt_qcalib_config *c, dt_err *err)
{
    const char *scheme = scheme_of(c);
    int mixed = !strcmp(scheme, "mixed");
    if (c->budget != 0 && !(c->budget >= 4 && c->budget <= 8))
        return dt_fail(err, DT_EINVAL, "budget: expected average weight bits in [4, 8], got %g", c->budget);
    if (mixed && !c->budget) return dt_fail(err, DT_EINVAL, "scheme mixed: needs budget (average weight bits, 4..8)");
    if (!mixed && c->budget) return dt_fail(err, DT_EINVAL, "budget: only with scheme mixed");
    if (c->sensitivity && strcmp(c->sensitivity, "output") && strcmp(c->sensitivity, "decoupled"))
        return dt_fail(err, DT_EINVAL, "sensitivity: expected output or decoupled, got \"%s\"", c->sensitivity);
    if (c->sensitivity && !mixed) return dt_fail(err, DT_EINVAL, "sensitivity: only with scheme mixed");
    if (!mixed && strcmp(scheme, "w8a8") && strcmp(scheme, "w4a8"))
        return dt_fail(err, DT_EINVAL, "scheme: expected w8a8, w4a8 or mixed, got \"%s\"", scheme);
    if (c->group < 0 || (c->group && (c->group % 2 || !strcmp(scheme, "w8a8"))))
        return dt_fail(err, DT_EINVAL, "group: expected an even group size, for the 4-bit layers of w4a8 or mixed, got %d",
                       c->group);
    if (!(c->alpha >= 0 && c->alpha <= 1)) return dt_fail(err, DT_EINVAL, "alpha: expected a number in [0, 1], got %g", c->alpha);
    if (isnan(c->cfg)) return dt_fail(err, DT_EINVAL, "cfg: expected a number (< 0: the pipeline's), got nan");
    if (c->steps < 1 || c->steps > 1000) return dt_fail(err, DT_EINVAL, "steps: expected 1 to 1000, got %d", c->steps);
    if (c->width && (c->width < 8 || c->width > 16384))
        return dt_fail(err, DT_EINVAL, "width: expected 0 (the pipeline's) or 8 to 16384, got %d", c->width);
    if (c->height && (c->height < 8 || c->height > 16384))
        return dt_fail(err, DT_EINVAL, "height: expected 0 (the pipeline's) or 8 to 16384, got %d", c->height);
    if (c->frames < 0) return dt_fail(err, DT_EINVAL, "frames: expected >= 0 (0: the model's), got %d", c->frames);
    if (c->threads < 0) return dt_fail(err, DT_EINVAL, "threads: expected >= 0 (0: all cores), got %d", c->threads);
    if (c->nfp_tokens < 0 || c->nfp_tokens > DT_QMAX_FP_TOKENS || (c->nfp_tokens && !c->fp_tokens))
        return dt_fail(err, DT_EINVAL, "fp_text_tokens: expected up to %d token indices, got %d%s", DT_QMAX_FP_TOKENS,
                       c->nfp_tokens, c->nfp_tokens > 0 && !c->fp_tokens ? " and a NULL list" : "");
    for (int i = 0; i < c->nfp_tokens; i++) {
        if (c->fp_tokens[i] < 0 || c->fp_tokens[i] > 65535)
            return dt_fail(err, DT_EINVAL, "fp_text_tokens: token index %d out of [0, 65535]", c->fp_tokens[i]);
        for (int j = 0; j < i; j++)
            if (c->fp_tokens[j] == c->fp_tokens[i])
                return dt_fail(err, DT_EINVAL, "fp_text_tokens: token %d listed twice", c->fp_tokens[i]);
    }
    return DT_OK;
}

/* ---- mixed precision: denoiser inputs captured while calibrating ---- */

#define MAX_CAPTURE 3

typedef struct {
    int n, steps;
    float *buf[MAX_CAPTURE][6];
    dt_tensor t[MAX_CAPTURE][2];
    dt_denoiser_inputs in[MAX_CAPTURE];
} capture;

/* A malloc'd copy of n floats (NULL for x NULL); sets *fail when out of memory. */
static float *dup_floats(const float *x, size_t n, int *fail)
{
    if (!x) return NULL;
    float *y = malloc(n * sizeof *y);
    if (!y) {
        *fail = 1;
        return NULL;
    }
    memcpy(y, x, n * sizeof *y);
    return y;
}

/* A pipeline step hook: keeps copies of the denoiser inputs of the first, middle and last
 * step of the first prompt. */
static dt_status capture_step(void *user, int step, dt_denoiser *tr, const dt_denoiser_inputs *in, dt_arena *arena,
                              dt_err *err)
{
    (void)arena;
    capture *c = user;
    const dt_tensor *hs = in->hidden_states, *ehs = in->encoder_hidden_states;
    if (!(c->n < MAX_CAPTURE && (step == 0 || step == c->steps / 2 || step == c->steps - 1))) return DT_OK;
    if (!dt_tensor_is_contiguous(hs) || !dt_tensor_is_contiguous(ehs))
        return dt_fail(err, DT_EINVAL, "quantize: non-contiguous transformer inputs");
    int k = c->n++, fail = 0; /* counted even on failure so the buffers are freed */
    int64_t B = hs->shape[0], T = ehs->shape[1];
    c->buf[k][0] = dup_floats(hs->data, (size_t)dt_tensor_numel(hs), &fail);
    c->buf[k][1] = dup_floats(ehs->data, (size_t)dt_tensor_numel(ehs), &fail);
    c->buf[k][2] = dup_floats(in->timestep, (size_t)B, &fail);
    c->buf[k][3] = dup_floats(in->encoder_attention_mask, (size_t)(B * T), &fail);
    if (dt_denoiser_get_info(tr)->micro_conditions) {
        c->buf[k][4] = dup_floats(in->resolution, (size_t)B * 2, &fail);
        c->buf[k][5] = dup_floats(in->aspect_ratio, (size_t)B, &fail);
    }
    if (fail) return dt_fail(err, DT_ENOMEM, "out of memory");
    c->t[k][0] = dt_tensor_view(c->buf[k][0], DT_F32, hs->ndim, hs->shape);
    c->t[k][1] = dt_tensor_view(c->buf[k][1], DT_F32, 3, ehs->shape);
    c->in[k] = (dt_denoiser_inputs){&c->t[k][0], &c->t[k][1], c->buf[k][2], c->buf[k][3], c->buf[k][4], c->buf[k][5], NULL, NULL};
    return DT_OK;
}

static void capture_free(capture *c)
{
    for (int k = 0; k < c->n; k++)
        for (int j = 0; j < 6; j++) free(c->buf[k][j]);
}

static dt_status parse_dtype(const char *s, dt_dtype *dt, dt_err *err)
{
    if (!s) {
        *dt = dt_backend_default_dtype(DT_DEV_CPU);
        return DT_OK;
    }
    if (!dt_dtype_parse(s, dt) || (*dt != DT_F32 && *dt != DT_BF16))
        return dt_fail(err, DT_EINVAL, "dtype: expected f32 or bf16, got \"%s\"", s);
    return DT_OK;
}

static dt_status f32_backend(int threads, dt_backend **be, dt_err *err)
{
    dt_backend_config cfg = {.device = DT_DEV_CPU, .compute = DT_F32, .threads = threads};
    return dt_backend_create(&cfg, be, err);
}

/* Runs the pipeline over every prompt and step (every frame of a video) with the linears observed. */
static dt_status calibrate(const qcalib *a, dt_quantizer *cal, capture *cap, dt_err *err)
{
    const dt_qcalib_config *c = a->c;
    dt_pipeline_config cfg = {.model_dir = c->model_dir, .threads = c->threads, .quant = cal};
    DT_TRY(parse_dtype(c->dtype, &cfg.dtype, err));
    cfg.text_dtype = cfg.dtype;
    dt_pipeline *p = NULL;
    DT_TRY(dt_pipeline_load(&cfg, &p, err));
    /* the pipeline class's defaults (its guidance) for what the settings leave open */
    dt_gen_request defaults = dt_pipeline_max_frames(p) ? dt_gen_request_default_video() : dt_gen_request_default();
    dt_status s = DT_OK;
    for (int i = 0; i < c->nprompts && s == DT_OK; i++) {
        dt_gen_request r = defaults;
        r.prompt = c->prompts[i];
        r.negative_prompt = "";
        r.steps = c->steps;
        if (c->cfg >= 0) r.cfg = c->cfg;
        r.seed = c->seed + (uint64_t)i;
        r.width = c->width;
        r.height = c->height;
        r.frames = c->frames;
        if (cap && i == 0) {
            cap->steps = c->steps;
            r.step_hook = capture_step;
            r.step_hook_user = cap;
        }
        dt_gen_result res;
        s = dt_pipeline_generate(p, &r, &res, err);
        if (s == DT_OK) free(res.pixels);
        if (s == DT_OK) dt_logf(c->log, c->log_user, "calibrated on prompt %d/%d", i + 1, c->nprompts);
    }
    dt_pipeline_free(p);
    return s;
}

/* A denoiser conditioned on CLIP hidden states (the SD pipelines: every token attends, no
 * mask), whose first token (BOS) is the huge-magnitude outlier MixDQ keeps in float. */
static int clip_text(const dt_denoiser_class *cls) { return cls->npipelines > 0 && cls->pipelines[0].caption_mask_off; }

static dt_status quantize_and_save(const qcalib *a, dt_quantizer *cal, const dt_qlayer_bits *bits, int nbits,
                                   dt_qcalib_result *res, dt_err *err)
{
    const dt_qcalib_config *c = a->c;
    dt_quantizer q = *cal; /* shares cal's statistics */
    q.mode = DT_QMODE_QUANT;
    q.wbits = !strcmp(a->scheme, "w4a8") ? 4 : 8;
    q.layer_bits = bits;
    q.nlayer_bits = nbits;
    q.balance = c->balance;
    q.rotate = c->rotate;
    q.group = c->group;
    q.fp_tokens = c->fp_tokens;
    q.nfp_tokens = c->nfp_tokens;
    static const int bos[1] = {0};
    if (!c->nfp_tokens && clip_text(a->cls)) q.fp_tokens = bos, q.nfp_tokens = 1;
    q.attn_int8 = c->attn_int8;
    q.alpha = c->alpha;
    q.seed = 1;
    q.record = 1;
    q.rec = NULL, q.nrec = q.reccap = 0;
    dt_quantizer_reset_counts(&q);
    dt_backend *be = NULL;
    dt_denoiser *m = NULL;
    dt_status s = f32_backend(c->threads, &be, err);
    if (s == DT_OK) s = dt_quant_load(be, a->dir, &q, &m, err);
    dt_qplan_model made_for = dt_qplan_model_of(c->model_dir, &a->info);
    if (s == DT_OK) s = dt_qplan_save(&q, c->out_dir, a->scheme, c->model_dir, &made_for, err);
    if (s == DT_OK) *res = (dt_qcalib_result){.nquant = q.nquant, .nfloat = q.nfloat, .weight_bytes = q.weight_bytes};
    dt_denoiser_free(m);
    dt_backend_destroy(be);
    q.stats = NULL, q.nstats = q.cap = 0; /* owned by cal */
    dt_quantizer_free(&q);
    return s;
}

/* Adds the signal and noise energy of o against ref ([B, C, F, H, W] when F = shape[2] > 1
 * and `temporal`: of their frame-to-frame differences, the temporal consistency ViDiT-Q
 * judges temporal layers by; else of the values). */
static void sqnr_add(const float *o, const float *ref, const dt_tensor *shape, int temporal, double *sig, double *noise)
{
    size_t n = (size_t)dt_tensor_numel(shape);
    if (!temporal || shape->ndim != 5 || shape->shape[2] < 2) {
        for (size_t i = 0; i < n; i++) {
            double d = (double)o[i] - ref[i];
            *sig += (double)ref[i] * ref[i];
            *noise += d * d;
        }
        return;
    }
    size_t F = (size_t)shape->shape[2], hw = (size_t)(shape->shape[3] * shape->shape[4]), planes = n / (F * hw);
    for (size_t p = 0; p < planes; p++)
        for (size_t f = 0; f + 1 < F; f++) {
            const float *r0 = ref + (p * F + f) * hw, *o0 = o + (p * F + f) * hw;
            for (size_t i = 0; i < hw; i++) {
                double dr = (double)r0[hw + i] - r0[i], dq = (double)o0[hw + i] - o0[i];
                *sig += dr * dr;
                *noise += (dq - dr) * (dq - dr);
            }
        }
}

/* Decoupled sensitivity (quant_calib.h): the signal and noise energy of o against ref
 * ([B, C, H, W] or [B, C, F, H, W]) on each plane's P x P block means (coarse: content) or on
 * what is left after subtracting them (fine: quality). */
static void sqnr_add_split(const float *o, const float *ref, const dt_tensor *shape, int coarse, double *sig, double *noise)
{
    int nd = shape->ndim;
    size_t H = (size_t)shape->shape[nd - 2], W = (size_t)shape->shape[nd - 1], hw = H * W;
    size_t planes = (size_t)dt_tensor_numel(shape) / hw, P = (H < W ? H : W) / 8;
    if (P < 2) P = 2;
    size_t by = (H + P - 1) / P, bx = (W + P - 1) / P;
    double *mr = malloc(by * bx * sizeof(double)), *mo = malloc(by * bx * sizeof(double));
    int *cnt = malloc(by * bx * sizeof(int));
    if (!mr || !mo || !cnt) { free(mr), free(mo), free(cnt); *noise = INFINITY; return; }
    for (size_t p = 0; p < planes; p++) {
        const float *r = ref + p * hw, *q = o + p * hw;
        memset(mr, 0, by * bx * sizeof(double)), memset(mo, 0, by * bx * sizeof(double)), memset(cnt, 0, by * bx * sizeof(int));
        for (size_t y = 0; y < H; y++)
            for (size_t x = 0; x < W; x++) {
                size_t b = y / P * bx + x / P;
                mr[b] += r[y * W + x], mo[b] += q[y * W + x], cnt[b]++;
            }
        for (size_t b = 0; b < by * bx; b++) mr[b] /= cnt[b], mo[b] /= cnt[b];
        if (coarse) {
            for (size_t b = 0; b < by * bx; b++) *sig += mr[b] * mr[b], *noise += (mo[b] - mr[b]) * (mo[b] - mr[b]);
            continue;
        }
        for (size_t y = 0; y < H; y++)
            for (size_t x = 0; x < W; x++) {
                size_t b = y / P * bx + x / P;
                double fr = r[y * W + x] - mr[b], fo = q[y * W + x] - mo[b];
                *sig += fr * fr, *noise += (fo - fr) * (fo - fr);
            }
    }
    free(mr), free(mo), free(cnt);
}

/* MixDQ's content group: the cross-attention layers (what the text changes). */
static int content_layer(const char *name) { return strstr(name, ".attn2.") != NULL; }

/* 1 for a layer the model's class calls temporal (DT_LINEAR_TEMPORAL). */
static int temporal_role(const qcalib *a, const char *name)
{
    return (dt_denoiser_class_linear_role(a->cls, name) & DT_LINEAR_TEMPORAL) != 0;
}

/* 1 when layer `name` is scored on frame differences: a temporal layer of a model that has
 * temporal layers. */
static int temporal_layer(const qcalib *a, const char *name)
{
    return a->info.temporal_layers > 0 && temporal_role(a, name);
}

/* The sensitivity group of layer `name`: decoupled, content (1) / quality (0); else temporal
 * (1) / the others (0). */
static int group_of(const qcalib *a, const char *name) { return a->decoupled ? content_layer(name) : temporal_role(a, name); }

/* SQNR (dB) of the denoiser outputs on the captured inputs with only layer `only` at 4
 * bits (everything else float) against the float outputs `ref` (filled when only == NULL);
 * a temporal layer of a video model is judged on frame differences (sqnr_add). */
static dt_status sensitivity(const qcalib *a, dt_quantizer *cal, const capture *cap, dt_backend *be, const char *only,
                             float **ref, double *sqnr, dt_err *err)
{
    const dt_qcalib_config *c = a->c;
    dt_quantizer q = *cal;
    q.mode = DT_QMODE_QUANT;
    q.wbits = 0;
    q.balance = c->balance;
    q.rotate = c->rotate;
    q.group = c->group;
    q.alpha = c->alpha;
    q.seed = 1;
    q.record = 0;
    dt_qlayer_bits one;
    if (only) {
        snprintf(one.name, sizeof one.name, "%s", only);
        one.bits = 4;
        q.layer_bits = &one;
        q.nlayer_bits = 1;
    }
    dt_denoiser *m = NULL;
    DT_TRY(dt_quant_load(be, a->dir, &q, &m, err));
    int oc = dt_denoiser_get_info(m)->out_channels;
    int temporal = only && temporal_layer(a, only);
    dt_arena arena;
    dt_arena_init(&arena);
    double sig = 0, noise = 0;
    dt_status s = DT_OK;
    for (int k = 0; k < cap->n && s == DT_OK; k++) {
        const dt_tensor *h = &cap->t[k][0];
        int64_t shape[5];
        for (int d = 0; d < h->ndim; d++) shape[d] = h->shape[d];
        shape[1] = oc;
        dt_tensor out = dt_tensor_view(NULL, DT_F32, h->ndim, shape);
        size_t n = (size_t)dt_tensor_numel(&out);
        if (!ref[k]) {
            ref[k] = malloc(n * sizeof(float));
            if (!ref[k]) { s = dt_fail(err, DT_ENOMEM, "out of memory"); break; }
        }
        float *o = only ? malloc(n * sizeof(float)) : ref[k];
        if (!o) { s = dt_fail(err, DT_ENOMEM, "out of memory"); break; }
        out.data = o;
        dt_arena_reset(&arena);
        s = dt_denoiser_forward(m, &cap->in[k], &arena, &out, err);
        if (only && s == DT_OK && a->decoupled) sqnr_add_split(o, ref[k], &out, content_layer(only), &sig, &noise);
        else if (only && s == DT_OK) sqnr_add(o, ref[k], &out, temporal, &sig, &noise);
        if (only) free(o);
    }
    dt_arena_free(&arena);
    dt_denoiser_free(m);
    *sqnr = noise > 0 ? 10 * log10(sig / noise) : 1e9;
    return s;
}

/* Greedy allocation under an average-bit budget (weighted by parameters), per sensitivity
 * group: a video model's temporal-block layers are one group (ViDiT-Q treats them apart; their
 * SQNR is on frame differences), every other quantized layer the other. In each group every
 * layer starts at 8 bits and layers move to 4 bits, least sensitive (highest W4 SQNR) first,
 * until the group's average is within the budget, so the whole model's is too. Bound: a group
 * stops at the first layer that brings it under the budget, so it gives up at most one
 * layer's worth of bits more than needed (less than max_i params_i·4 / group params below the
 * budget); with the noise of single-layer quantization taken as additive, this greedy order
 * is optimal when a group's layers have equal sizes (per-parameter ordering or a small DP
 * over sizes would handle unequal ones better). */
static void allocate_group(const qcalib *a, const dt_quantizer *cal, const int *order, int temporal, dt_qlayer_bits *bits)
{
    double params = 0, bitsum;
    for (int i = 0; i < cal->nstats; i++)
        if (group_of(a, cal->stats[i].name) == temporal) params += (double)cal->stats[i].in * cal->stats[i].out;
    if (params == 0) return;
    bitsum = 8 * params;
    for (int r = 0; r < cal->nstats; r++) {
        int i = order[r];
        if (group_of(a, cal->stats[i].name) != temporal) continue;
        if (bitsum / params <= a->c->budget) break;
        bitsum -= 4 * (double)cal->stats[i].in * cal->stats[i].out;
        bits[i].bits = 4;
    }
    const char *what = a->decoupled ? (temporal ? "content (cross-attention)" : "quality")
                                    : temporal ? "temporal" : a->info.temporal_layers > 0 ? "spatial" : "all";
    dt_logf(a->c->log, a->c->log_user, "mixed: %s layers: average weight bits %.2f (budget %.2f)", what, bitsum / params,
            a->c->budget);
}

static dt_status allocate_bits(const qcalib *a, dt_quantizer *cal, const capture *cap, dt_qlayer_bits **out,
                               int *nout, dt_err *err)
{
    if (!cap->n) return dt_fail(err, DT_EINVAL, "quantize: no transformer inputs were captured for the sensitivity pass");
    dt_backend *be = NULL;
    DT_TRY(f32_backend(a->c->threads, &be, err));
    int L = cal->nstats;
    float *ref[MAX_CAPTURE] = {0};
    double *sq = calloc((size_t)L, sizeof(double)), dummy;
    int *order = calloc((size_t)L, sizeof(int));
    dt_qlayer_bits *bits = calloc((size_t)L, sizeof *bits);
    dt_status s = (sq && order && bits) ? DT_OK : dt_fail(err, DT_ENOMEM, "out of memory");
    if (s == DT_OK) s = sensitivity(a, cal, cap, be, NULL, ref, &dummy, err);
    for (int i = 0; i < L && s == DT_OK; i++) {
        s = sensitivity(a, cal, cap, be, cal->stats[i].name, ref, &sq[i], err);
        order[i] = i;
        if (s == DT_OK)
            dt_logf(a->c->log, a->c->log_user, "sensitivity %-48s W4 SQNR %.1f dB%s", cal->stats[i].name, sq[i],
                a->decoupled ? (content_layer(cal->stats[i].name) ? " (content: coarse)" : " (quality: fine)")
                : temporal_layer(a, cal->stats[i].name) ? " (frame differences)" : "");
    }
    for (int i = 1; i < L; i++) /* insertion sort: decreasing SQNR */
        for (int j = i; j > 0 && sq[order[j]] > sq[order[j - 1]]; j--) { int t = order[j]; order[j] = order[j - 1]; order[j - 1] = t; }
    for (int i = 0; i < L; i++) {
        snprintf(bits[i].name, sizeof bits[i].name, "%s", cal->stats[i].name);
        bits[i].bits = 8;
    }
    if (s == DT_OK) {
        allocate_group(a, cal, order, 0, bits);
        allocate_group(a, cal, order, 1, bits);
    }
    for (int k = 0; k < MAX_CAPTURE; k++) free(ref[k]);
    free(sq);
    free(order);
    dt_backend_destroy(be);
    if (s != DT_OK) { free(bits); return s; }
    *out = bits;
    *nout = L;
    return DT_OK;
}

/* The inputs (folders, prompts) and what the model says about the settings (frames). */
static dt_status prepare(const dt_qcalib_config *c, qcalib *a, dt_err *err)
{
    if (!c->model_dir) return dt_fail(err, DT_EINVAL, "model_dir: NULL (a pipeline folder is required)");
    if (!c->out_dir) return dt_fail(err, DT_EINVAL, "out_dir: NULL (the plan folder to write is required)");
    if (c->nprompts < 1 || !c->prompts) return dt_fail(err, DT_EINVAL, "prompts: no calibration prompts (nprompts %d)", c->nprompts);
    for (int i = 0; i < c->nprompts; i++)
        if (!c->prompts[i]) return dt_fail(err, DT_EINVAL, "prompts[%d]: NULL", i);
    *a = (qcalib){.c = c, .scheme = scheme_of(c)};
    a->mixed = !strcmp(a->scheme, "mixed");
    a->decoupled = a->mixed && c->sensitivity && !strcmp(c->sensitivity, "decoupled");
    DT_TRY(dt_model_denoiser_dir(c->model_dir, a->dir, sizeof a->dir, err)); /* "transformer" or "unet" */
    const dt_denoiser_class *cls = dt_denoiser_class_of_dir(a->dir, err);
    if (!cls) return err->status;
    if (!cls->linear_role)
        return dt_fail(err, DT_EUNSUPPORTED, "quantize: %s/config.json: %s has no layers ditrt can quantize", a->dir,
                       cls->class_name);
    a->cls = cls;
    char head[1024], tail[1024];
    DT_TRY(cls->describe(a->dir, &a->info, head, tail, sizeof head, err));
    if (!a->info.max_frames && c->frames) return dt_fail(err, DT_EINVAL, "frames: only for video (Latte) pipelines");
    return DT_OK;
}

dt_status dt_qcalib_run(const dt_qcalib_config *c, dt_qcalib_result *res, dt_err *err)
{
    qcalib a;
    DT_TRY(dt_qcalib_check(c, err));
    DT_TRY(prepare(c, &a, err));
    dt_quantizer cal = {.mode = DT_QMODE_OBSERVE};
    capture cap = {0};
    dt_qlayer_bits *bits = NULL;
    int nbits = 0;
    dt_qcalib_result r = {0};
    dt_status s = calibrate(&a, &cal, a.mixed ? &cap : NULL, err);
    if (s == DT_OK && a.mixed) s = allocate_bits(&a, &cal, &cap, &bits, &nbits, err);
    if (s == DT_OK) s = quantize_and_save(&a, &cal, bits, nbits, &r, err);
    if (s == DT_OK && res) *res = r;
    capture_free(&cap);
    free(bits);
    dt_quantizer_free(&cal);
    return s;
}
