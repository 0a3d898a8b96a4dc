/* Quantized models on the command line: `ditrt quantize` (calibrate, quantize, write a plan;
 * PixArt or Latte pipelines), `txt2img/txt2vid --quant DIR` (load one) and
 * `bench transformer --quant w8a8|w4a8`. */
#include "cli.h"
#include "cli_quant.h"
#include "kernels/quant.h"
#include "runtime/plans/quant_plan.h"
#include "kernels/backend_timing.h"
#include "runtime/pipeline/pipeline.h"
#include "runtime/models/denoiser.h"
#include "runtime/models/pixart.h"
#include "runtime/models/modeldir.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <time.h>
#include "runtime/core/arena.h"

int cli_quant_parse(const char *scheme, dt_quantizer *q)
{
    memset(q, 0, sizeof *q);
    if (!scheme) return 1;
    if (!strcmp(scheme, "w8a8")) q->wbits = 8;
    else if (!strcmp(scheme, "w4a8")) q->wbits = 4;
    else return 0;
    q->mode = DT_QMODE_QUANT;
    q->rotate = 1; /* the online rotation is part of the cost measured */
    q->alpha = 0.5f;
    q->seed = 1;
    return 1;
}

dt_status cli_bench_quant_report(dt_backend *be, const dt_quantizer *q, const pixart_config *c, int B, int tokens,
                                 int text, double step_s, double float_peak, dt_err *err)
{
    /* quantized work: the block linears (q,k,v,out, cross q/out, 2 FFN: 14 C² per token; cross k,v over the text) */
    double C = c->inner, L = c->num_layers;
    double qflops = 2.0 * L * C * C * (14.0 * B * tokens + 2.0 * B * text);
    int hw = (int)(tokens > 0 ? tokens : 1);
    double all = pixart_matmul_flops(c, B, hw, 1, text); /* h·w = tokens */
    return cli_bench_quant_report_flops(be, q, qflops, all, step_s, float_peak, err);
}

dt_status cli_bench_quant_report_flops(dt_backend *be, const dt_quantizer *q, double qflops, double all, double step_s,
                                       double float_peak, dt_err *err)
{
    printf("  linear weights: %.1f MB (%d float layers, %d quantized); transformer-block linears %.1f MB\n",
           q->weight_bytes / 1e6, q->nfloat, q->nquant, q->block_bytes / 1e6);
    if (q->mode != DT_QMODE_QUANT) return DT_OK;
    double peak = 0;
    DT_TRY(cli_linear_peak(be, q->wbits, &peak, err));
    double floor_s = qflops / (peak * 1e9) + (all - qflops) / (float_peak * 1e9);
    printf("  int8 linear peak (M=2048 K=1152 N=4608, w%d; includes the quantize pass and epilogue): %.0f GFLOP/s"
           " = %.2fx the float GEMM peak\n", q->wbits, peak, peak / float_peak);
    printf("  mixed floor: %.1f GFLOP int8 + %.1f GFLOP float -> %.3f s, ratio to floor %.2fx\n", qflops / 1e9,
           (all - qflops) / 1e9, floor_s, step_s / floor_s);
    return DT_OK;
}

/* ---- txt2img --quant DIR ---- */

/* ---- ditrt quantize ---- */

typedef struct {
    const char *model, *prompts, *scheme, *out, *dtype;
    float alpha, cfg, budget; /* cfg < 0: the pipeline's default guidance */
    int steps, width, height, frames, threads, balance, rotate, quiet, mixed, group, nfp;
    int fp_tokens[DT_QMAX_FP_TOKENS];
    int video;                /* the folder is a Latte (text-to-video) pipeline */
    char dir[1024];           /* its transformer folder */
    uint64_t seed;
} quant_args;

static int parse_tokens(const char *v, quant_args *a);

static int parse_quant(int argc, char **argv, quant_args *a)
{
    *a = (quant_args){.scheme = "w8a8", .dtype = cli_default_dtype(), .alpha = 0.5f, .cfg = -1, .steps = 20, .balance = 1,
                      .rotate = 1};
    for (int i = 1; i < argc; i++) {
        int miss = 0, ok = 1;
        const char *v;
        char *end;
#define F(s) (v = cli_flag(argc, argv, &i, s, &miss))
        if (F("-m") || F("--model")) a->model = v;
        else if (F("--prompts")) a->prompts = v;
        else if (F("--scheme")) a->scheme = v;
        else if (F("--out")) a->out = v;
        else if (F("--dtype")) a->dtype = v;
        else if (F("--steps")) ok = cli_parse_int("--steps", v, 1, 1000, &a->steps);
        else if (F("-W") || F("--width")) ok = cli_parse_int("--width", v, 8, 16384, &a->width);
        else if (F("-H") || F("--height")) ok = cli_parse_int("--height", v, 8, 16384, &a->height);
        else if (F("--frames")) ok = cli_parse_int("--frames", v, 1, 4096, &a->frames);
        else if (F("--threads")) ok = cli_parse_int("--threads", v, 1, 1024, &a->threads);
        else if (F("--group")) ok = cli_parse_int("--group", v, 2, 1 << 20, &a->group);
        else if (F("--fp-text-tokens")) ok = parse_tokens(v, a);
        else if (F("--alpha")) {
            a->alpha = strtof(v, &end);
            if (!*v || *end || !(a->alpha >= 0 && a->alpha <= 1)) return cli_usage_error("--alpha: expected a number in [0, 1], got \"%s\"", v), 0;
        } else if (F("--cfg")) {
            a->cfg = strtof(v, &end);
            if (!*v || *end || !(a->cfg >= 0)) return cli_usage_error("--cfg: expected a number >= 0, got \"%s\"", v), 0;
        } else if (F("--seed")) {
            if (!cli_parse_u64("--seed", v, &a->seed)) return 0;
        } else if (F("--budget")) {
            a->budget = strtof(v, &end);
            if (!*v || *end || !(a->budget >= 4 && a->budget <= 8)) return cli_usage_error("--budget: expected average weight bits in [4, 8], got \"%s\"", v), 0;
        }
        else if (miss) return cli_usage_error("%s: missing value", argv[i]), 0;
        else if (!strcmp(argv[i], "--no-balance")) a->balance = 0;
        else if (!strcmp(argv[i], "--no-rotate")) a->rotate = 0;
        else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q")) a->quiet = 1;
        else return cli_usage_error("quantize: unknown option \"%s\"", argv[i]), 0;
#undef F
        if (!ok) return 0;
    }
    if (!a->model) return cli_usage_error("quantize: -m MODEL_DIR is required"), 0;
    if (!a->prompts) return cli_usage_error("quantize: --prompts FILE is required"), 0;
    if (!a->out) return cli_usage_error("quantize: --out DIR is required"), 0;
    a->mixed = !strcmp(a->scheme, "mixed");
    if (a->mixed && !a->budget) return cli_usage_error("--scheme mixed: needs --budget BITS (average weight bits, 4..8)"), 0;
    if (!a->mixed && a->budget) return cli_usage_error("--budget: only with --scheme mixed"), 0;
    if (!a->mixed && strcmp(a->scheme, "w8a8") && strcmp(a->scheme, "w4a8"))
        return cli_usage_error("--scheme: expected w8a8, w4a8 or mixed, got \"%s\"", a->scheme), 0;
    if (a->group && (a->group % 2 || !strcmp(a->scheme, "w8a8")))
        return cli_usage_error("--group: expected an even group size, for the 4-bit layers of w4a8 or mixed, got %d", a->group), 0;
    return 1;
}

/* "0,3,7": up to DT_QMAX_FP_TOKENS distinct token indices. */
static int parse_tokens(const char *v, quant_args *a)
{
    a->nfp = 0;
    for (const char *p = v;;) {
        char *end;
        long t = strtol(p, &end, 10);
        if (end == p || t < 0 || t > 65535 || *p == '-' || *p == '+' || a->nfp == DT_QMAX_FP_TOKENS || (*end && *end != ','))
            return cli_usage_error("--fp-text-tokens: expected up to %d comma-separated token indices, got \"%s\"",
                                   DT_QMAX_FP_TOKENS, v), 0;
        for (int i = 0; i < a->nfp; i++)
            if (a->fp_tokens[i] == t) return cli_usage_error("--fp-text-tokens: token %ld listed twice", t), 0;
        a->fp_tokens[a->nfp++] = (int)t;
        if (!*end) return 1;
        p = end + 1;
    }
}

/* Non-empty lines of the prompt file (malloc'd buffer holding them, lines point into it). */
/* ---- the transformer of either pipeline kind ---- */

/* ---- mixed precision: transformer inputs captured while calibrating ---- */

#define MAX_CAPTURE 3

typedef struct {
    int n, steps;
    float *buf[MAX_CAPTURE][6];
    dt_tensor t[MAX_CAPTURE][2];
    dt_denoiser_inputs in[MAX_CAPTURE];
} capture;

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
    c->buf[k][0] = cli_dup_floats(hs->data, (size_t)dt_tensor_numel(hs), &fail);
    c->buf[k][1] = cli_dup_floats(ehs->data, (size_t)dt_tensor_numel(ehs), &fail);
    c->buf[k][2] = cli_dup_floats(in->timestep, (size_t)B, &fail);
    c->buf[k][3] = cli_dup_floats(in->encoder_attention_mask, (size_t)(B * T), &fail);
    if (dt_denoiser_get_info(tr)->micro_conditions) {
        c->buf[k][4] = cli_dup_floats(in->resolution, (size_t)B * 2, &fail);
        c->buf[k][5] = cli_dup_floats(in->aspect_ratio, (size_t)B, &fail);
    }
    if (fail) return dt_fail(err, DT_ENOMEM, "out of memory");
    c->t[k][0] = dt_tensor_view(c->buf[k][0], DT_F32, hs->ndim, hs->shape);
    c->t[k][1] = dt_tensor_view(c->buf[k][1], DT_F32, 3, ehs->shape);
    c->in[k] = (dt_denoiser_inputs){&c->t[k][0], &c->t[k][1], c->buf[k][2], c->buf[k][3], c->buf[k][4], c->buf[k][5]};
    return DT_OK;
}

static void capture_free(capture *c)
{
    for (int k = 0; k < c->n; k++)
        for (int j = 0; j < 6; j++) free(c->buf[k][j]);
}

static dt_status parse_dtype(const char *s, dt_dtype *dt, dt_err *err)
{
    if (!dt_dtype_parse(s, dt) || (*dt != DT_F32 && *dt != DT_BF16))
        return dt_fail(err, DT_EINVAL, "--dtype: expected f32 or bf16, got \"%s\"", s);
    return DT_OK;
}

/* Runs the pipeline over every prompt and step (every frame of a video) with the linears observed. */
static dt_status calibrate(const quant_args *a, dt_quantizer *cal, char **prompts, int n, capture *cap, dt_err *err)
{
    dt_pipeline_config cfg = {.model_dir = a->model, .threads = a->threads, .quant = cal};
    DT_TRY(parse_dtype(a->dtype, &cfg.dtype, err));
    cfg.text_dtype = cfg.dtype;
    dt_pipeline *p = NULL;
    DT_TRY(dt_pipeline_load(&cfg, &p, err));
    dt_status s = DT_OK;
    for (int i = 0; i < n && s == DT_OK; i++) {
        dt_gen_request r = a->video ? dt_gen_request_default_video() : dt_gen_request_default();
        r.prompt = prompts[i];
        r.negative_prompt = "";
        r.steps = a->steps;
        if (a->cfg >= 0) r.cfg = a->cfg;
        r.seed = a->seed + (uint64_t)i;
        r.width = a->width;
        r.height = a->height;
        r.frames = a->frames;
        if (cap && i == 0) {
            cap->steps = a->steps;
            r.step_hook = capture_step;
            r.step_hook_user = cap;
        }
        dt_gen_result res;
        s = dt_pipeline_generate(p, &r, &res, err);
        if (s == DT_OK) free(res.pixels);
        if (s == DT_OK && !a->quiet) fprintf(stderr, "calibrated on prompt %d/%d\n", i + 1, n);
    }
    dt_pipeline_free(p);
    return s;
}

static dt_status quantize_and_save(const quant_args *a, dt_quantizer *cal, const dt_qlayer_bits *bits, int nbits,
                                   dt_err *err)
{
    dt_quantizer q = *cal; /* shares cal's statistics */
    q.mode = DT_QMODE_QUANT;
    q.wbits = !strcmp(a->scheme, "w4a8") ? 4 : 8;
    q.layer_bits = bits;
    q.nlayer_bits = nbits;
    q.balance = a->balance;
    q.rotate = a->rotate;
    q.group = a->group;
    q.fp_tokens = a->fp_tokens;
    q.nfp_tokens = a->nfp;
    q.alpha = a->alpha;
    q.seed = 1;
    q.record = 1;
    q.rec = NULL, q.nrec = q.reccap = 0;
    dt_quantizer_reset_counts(&q);
    dt_backend *be = NULL;
    dt_denoiser *m = NULL;
    dt_status s = cli_backend("f32", a->threads, &be, err);
    if (s == DT_OK) s = dt_quant_load(be, a->dir, &q, &m, err);
    if (s == DT_OK) s = dt_qplan_save(&q, a->out, a->scheme, a->model, err);
    if (s == DT_OK && !a->quiet)
        printf("quantize: %s, %d layers quantized, %d kept in floating point, weights %.1f MB -> %s\n", a->scheme,
               q.nquant, q.nfloat, q.weight_bytes / 1e6, a->out);
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

/* SQNR (dB) of the transformer outputs on the captured inputs with only layer `only` at 4
 * bits (everything else float) against the float outputs `ref` (filled when only == NULL);
 * a temporal layer of a video model is judged on frame differences (sqnr_add). */
static dt_status sensitivity(const quant_args *a, dt_quantizer *cal, const capture *cap, dt_backend *be, const char *only,
                             float **ref, double *sqnr, dt_err *err)
{
    dt_quantizer q = *cal;
    q.mode = DT_QMODE_QUANT;
    q.wbits = 0;
    q.balance = a->balance;
    q.rotate = a->rotate;
    q.group = a->group;
    q.alpha = a->alpha;
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
    int temporal = a->video && only && dt_quant_layer_temporal(only);
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
        if (only && s == DT_OK) sqnr_add(o, ref[k], &out, temporal, &sig, &noise);
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
static void allocate_group(const quant_args *a, const dt_quantizer *cal, const int *order, int temporal, dt_qlayer_bits *bits)
{
    double params = 0, bitsum;
    for (int i = 0; i < cal->nstats; i++)
        if (dt_quant_layer_temporal(cal->stats[i].name) == temporal) params += (double)cal->stats[i].in * cal->stats[i].out;
    if (params == 0) return;
    bitsum = 8 * params;
    for (int r = 0; r < cal->nstats; r++) {
        int i = order[r];
        if (dt_quant_layer_temporal(cal->stats[i].name) != temporal) continue;
        if (bitsum / params <= a->budget) break;
        bitsum -= 4 * (double)cal->stats[i].in * cal->stats[i].out;
        bits[i].bits = 4;
    }
    if (!a->quiet)
        fprintf(stderr, "mixed: %s layers: average weight bits %.2f (budget %.2f)\n", temporal ? "temporal" : a->video ? "spatial" : "all",
                bitsum / params, a->budget);
}

static dt_status allocate_bits(const quant_args *a, dt_quantizer *cal, const capture *cap, dt_qlayer_bits **out,
                               int *nout, dt_err *err)
{
    if (!cap->n) return dt_fail(err, DT_EINVAL, "quantize: no transformer inputs were captured for the sensitivity pass");
    dt_backend *be = NULL;
    DT_TRY(cli_backend("f32", a->threads, &be, err));
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
        if (s == DT_OK && !a->quiet)
            fprintf(stderr, "sensitivity %-48s W4 SQNR %.1f dB%s\n", cal->stats[i].name, sq[i],
                    a->video && dt_quant_layer_temporal(cal->stats[i].name) ? " (frame differences)" : "");
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

int cli_quantize(int argc, char **argv)
{
    quant_args a;
    if (!parse_quant(argc, argv, &a)) return 2;
    dt_err err = {0};
    cli_list pl;
    if (cli_read_prompts(a.prompts, &pl, &err) != DT_OK) return cli_die(&err);
    char **prompts = pl.items;
    int n = pl.n;
    if (dt_model_component_dir(a.model, "transformer", a.dir, sizeof a.dir, &err) != DT_OK) {
        cli_list_free(&pl);
        return cli_die(&err);
    }
    const dt_denoiser_class *cls = dt_denoiser_class_of_dir(a.dir, &err);
    if (!cls) { cli_list_free(&pl); return cli_die(&err); }
    dt_denoiser_info info;
    char head[1024], tail[256];
    if (cls->describe(a.dir, &info, head, tail, sizeof head, &err) != DT_OK) { cli_list_free(&pl); return cli_die(&err); }
    a.video = info.max_frames > 0;
    if (!a.video && a.frames) {
        cli_list_free(&pl);
        return cli_usage_error("--frames: only for video (Latte) pipelines");
    }
    dt_quantizer cal = {.mode = DT_QMODE_OBSERVE};
    capture cap = {0};
    dt_qlayer_bits *bits = NULL;
    int nbits = 0;
    dt_status s = calibrate(&a, &cal, prompts, n, a.mixed ? &cap : NULL, &err);
    if (s == DT_OK && a.mixed) s = allocate_bits(&a, &cal, &cap, &bits, &nbits, &err);
    if (s == DT_OK) s = quantize_and_save(&a, &cal, bits, nbits, &err);
    capture_free(&cap);
    free(bits);
    dt_quantizer_free(&cal);
    cli_list_free(&pl);
    return s == DT_OK ? 0 : cli_die(&err);
}

/* ---- bench transformer --quant: float and quantized models timed alternately ---- */

static double cpu_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The machine may be shared: alternating the two models round by round exposes both to
 * the same load, so the ratio of their best times is steadier than two separate runs. */
dt_status cli_bench_quant_ab(dt_backend *be, const pixart_config *c, pixart_model *qm, const pixart_inputs *in,
                             dt_arena *arena, dt_tensor *out, int rounds, dt_err *err)
{
    dt_weight_source rnd = dt_weights_random(42, 0.02f); /* the same weights as the bench's model */
    dt_quantizer fq = {.mode = DT_QMODE_FLOAT};
    dt_quantizer_attach(&fq, &rnd);
    pixart_model *fm = NULL;
    DT_TRY(pixart_create(be, c, &rnd, &fm, err));
    double best[2] = {1e30, 1e30}, cpu[2] = {1e30, 1e30}, mean[2] = {0, 0};
    dt_op_times *times = dt_backend_times(be), per[2];
    memset(per, 0, sizeof per);
    dt_status s = DT_OK;
    for (int r = 0; r <= rounds && s == DT_OK; r++) /* r == 0 warms both up */
        for (int k = 0; k < 2 && s == DT_OK; k++) {
            dt_arena_reset(arena);
            dt_op_times before;
            if (times) before = *times;
            double t0 = cli_now(), c0 = cpu_seconds();
            s = pixart_forward(k ? qm : fm, in, arena, out, err);
            double dt = cli_now() - t0, dc = cpu_seconds() - c0;
            if (r > 0 && dt < best[k]) best[k] = dt;
            if (r > 0 && dc < cpu[k]) cpu[k] = dc;
            if (r > 0) mean[k] += dt / rounds;
            for (int o = 0; r > 0 && times && o < DT_OPK_COUNT; o++) { /* before is set when times is */
                per[k].seconds[o] += times->seconds[o] - before.seconds[o];
                per[k].calls[o] += times->calls[o] - before.calls[o];
            }
        }
    /* CPU seconds of the process: with --threads 1 they ignore time lost to other processes */
    if (s == DT_OK)
        printf("  interleaved (%d rounds): float %.3f s, quantized %.3f s -> quantized step %.2fx faster"
               " (process CPU time: %.3f s vs %.3f s, %.2fx)\n", rounds, best[0], best[1], best[0] / best[1], cpu[0],
               cpu[1], cpu[0] / cpu[1]);
    if (s == DT_OK && times) {
        cli_print_breakdown((const char *const[]){"float", "quantized"}, per, mean, 2, rounds);
        /* what the float parts alone allow: the quantized step minus its linears */
        double rest = mean[1] - per[1].seconds[DT_OPK_LINEAR] / rounds;
        printf("  quantized step without its linears: %.3f s -> even free linears give at most %.2fx; "
               "1.6x needs the quantized linears at <= %.3f s/step (now %.3f s)\n", rest, mean[0] / rest,
               mean[0] / 1.6 - rest, per[1].seconds[DT_OPK_LINEAR] / rounds);
    }
    pixart_free(fm);
    return s;
}
