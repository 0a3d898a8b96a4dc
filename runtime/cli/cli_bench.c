/* `ditrt bench transformer`: one CFG forward of a PixArt-XL-2-sized model with random
 * weights, against the GEMM floor measured in the same run. */
#include "cli.h"
#include "cli_fastattn.h"
#include "cli_quant.h"
#include "kernels/quant.h"
#include "runtime/core/arena.h"
#include "kernels/backend_timing.h"
#include "runtime/models/denoiser.h"
#include "runtime/models/t5.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

typedef struct {
    const char *arch, *dtype;
    const char *device;   /* --device cpu|cuda[:N]; NULL: cpu */
    int res, threads, iters, layers;
    const char *plans[8]; /* DiTFastAttn plans (--attn-plan, repeatable) */
    int nplans;
    int frames;           /* latte-1: frames per video (0: video_length) */
    const char *quant;    /* --quant w8a8|w4a8 (cli_quant.c), NULL: float */
    int breakdown;        /* --breakdown: time the step's ops by kind (runtime/backend_timing.h) */
    int stdin_rounds;     /* --rounds-stdin: one timed step per line read (a peer alternates with us) */
    int batch;            /* --batch: 2 (CFG, the default) or 1 (no CFG: SDXL-Turbo, MixDQ's setting) */
    int no_ab;            /* --no-ab: --quant without the float model's alternated A/B (time, memory) */
} bench_args;

/* Mean seconds per step of each op kind for ncol runs (sums over `rounds` steps), then what
 * no op accounts for (embeddings, host work, the ops' own dispatch) against each step time. */
void cli_print_breakdown(const char *const cols[], const dt_op_times *t, const double *step, int ncol, int rounds)
{
    printf("  breakdown, mean s/step over %d:", rounds);
    for (int c = 0; c < ncol; c++) printf(" %12s", cols[c]);
    printf("\n");
    for (int k = 0; k < DT_OPK_COUNT; k++) {
        int any = 0;
        for (int c = 0; c < ncol; c++) any |= t[c].calls[k] > 0;
        if (!any) continue;
        printf("    %-27s", dt_op_kind_names[k]);
        for (int c = 0; c < ncol; c++) printf(" %12.3f", t[c].seconds[k] / rounds);
        printf("\n");
    }
    printf("    %-27s", "other (not in an op)");
    for (int c = 0; c < ncol; c++) {
        double ops = 0;
        for (int k = 0; k < DT_OPK_COUNT; k++) ops += t[c].seconds[k] / rounds;
        printf(" %12.3f", step[c] - ops);
    }
    printf("\n");
}

/* Peak throughput on the reference shape (M=2048, K=1152, N=4608: a PixArt-XL-2 MLP matmul at
 * 512 px with CFG) of a float linear (wbits 0: the GEMM library at the backend's dtype) or of
 * our quantized linear (wbits 8 or 4: quantize pass + int8 GEMM + epilogue). */
dt_status cli_linear_peak(dt_backend *be, int wbits, double *gflops, dt_err *err)
{
    const int M = 2048, K = 1152, N = 4608;
    float *w = malloc((size_t)K * N * 4), *x = malloc((size_t)M * K * 4), *y = malloc((size_t)M * N * 4);
    dt_status s = (w && x && y) ? DT_OK : dt_fail(err, DT_ENOMEM, "out of memory");
    for (size_t i = 0; s == DT_OK && i < (size_t)K * N; i++) w[i] = (float)((i * 7919) % 1000) * 1e-4f - 0.05f;
    for (size_t i = 0; s == DT_OK && i < (size_t)M * K; i++) x[i] = (float)((i * 104729) % 1000) * 1e-3f - 0.5f;
    dt_qweights qw = {0};
    dt_linear *l = NULL;
    if (s == DT_OK && wbits) s = dt_qweights_make(w, K, N, wbits, 0, NULL, 0, &qw, err);
    if (s == DT_OK && wbits) s = be->ops->qlinear_create(be, &qw, NULL, DT_ACT_NONE, M, &l, err);
    if (s == DT_OK && !wbits) s = be->ops->linear_create(be, w, NULL, K, N, DT_ACT_NONE, M, be->cfg.compute, &l, err);
    int64_t xs[2] = {M, K}, ys[2] = {M, N};
    dt_tensor tx = dt_tensor_view(x, DT_F32, 2, xs), ty = dt_tensor_view(y, DT_F32, 2, ys);
    float *dx = NULL, *dy = NULL; /* a GPU backend's copies (the CPU's device memory is host memory) */
    if (s == DT_OK && be->cfg.device != DT_DEV_CPU) {
        s = dt_backend_upload(be, x, (size_t)M * K, &dx, err);
        if (s == DT_OK) s = dt_backend_upload(be, y, (size_t)M * N, &dy, err);
        tx.data = dx, ty.data = dy;
        tx.device = ty.device = be->cfg.device;
    }
    double best = 1e30;
    for (int r = 0; s == DT_OK && r < 6; r++) { /* r == 0 warms up */
        double t0 = cli_now();
        s = be->ops->linear_forward(be, l, &tx, &ty, err);
        if (s == DT_OK && dy) s = dt_backend_read(be, dy, y, 1, err); /* waits for the GPU */
        double dt = cli_now() - t0;
        if (r > 0 && dt < best) best = dt;
    }
    if (s == DT_OK) *gflops = 2.0 * M * K * N / best / 1e9;
    if (l) be->ops->linear_destroy(l);
    if (dx) be->ops->buffer_free(be, dx);
    if (dy) be->ops->buffer_free(be, dy);
    dt_qweights_free(&qw);
    free(w); free(x); free(y);
    return s;
}

dt_status cli_gemm_peak(dt_backend *be, double *gflops, dt_err *err) { return cli_linear_peak(be, 0, gflops, err); }

/* The header line names the tokens per frame of a DiT (frames x tokens for a video), and
 * a U-Net's latent size (it has no tokens nor DiT layers). */
static void report(const bench_args *a, const dt_denoiser_info *c, const dt_backend *be, double flops, int B, int F,
                   int H, int W, int T, double load_s, double best, double total, double peak, size_t arena_peak)
{
    double floor_s = flops / (peak * 1e9);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double wbytes = (double)c->param_count * dt_dtype_size(be->cfg.compute);
    char layers[32] = "", size[64];
    int N = (H / c->patch_size) * (W / c->patch_size);
    if (c->max_frames) snprintf(layers, sizeof layers, "frames=%d layers=%d ", F, c->spatial_layers);
    else if (c->spatial_layers) snprintf(layers, sizeof layers, "layers=%d ", c->spatial_layers);
    if (!c->spatial_layers) snprintf(size, sizeof size, "latent=%dx%d", W, H); /* a U-Net */
    else if (c->max_frames) snprintf(size, sizeof size, "tokens=%dx%d", F, N);
    else snprintf(size, sizeof size, "tokens=%d", N);
    printf("bench transformer: arch=%s res=%d %sdtype=%s threads=%d batch=%d %s text=%d\n", a->arch, a->res, layers, a->dtype,
           be->cfg.threads, B, size, T);
    printf("  weight prep: %.2f s\n", load_s);
    printf("  step: %.3f s (best of %d; mean %.3f s)\n", best, a->iters, total / a->iters);
    printf("  matmul work: %.1f GFLOP/step, achieved %.0f GFLOP/s\n", flops / 1e9, flops / best / 1e9);
    printf("  GEMM peak (M=2048 K=1152 N=4608, %s): %.0f GFLOP/s -> floor %.3f s, ratio to floor %.2fx\n",
           a->dtype, peak, floor_s, best / floor_s);
    printf("  memory: peak RSS %.0f MB; weights %.0f MB + activation arena %.0f MB = %.0f MB (RSS / that = %.2fx)\n",
           ru.ru_maxrss / 1024.0, wbytes / 1e6, arena_peak / 1e6, (wbytes + arena_peak) / 1e6,
           ru.ru_maxrss * 1024.0 / (wbytes + arena_peak));
}

/* CPU seconds of the whole process (all threads): on a shared machine a step's wall time also
 * counts the time its threads waited for a core, its CPU time does not. */
static double process_cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Caption tokens of the bench step: a pipeline's fixed length (CLIP's 77 for U-Nets, 120 for
 * Latte / Open-Sora), else PixArt-α's 120. */
static int bench_tokens(const dt_denoiser_class *cls) { return cls->pipelines[0].fixed_len ? cls->pipelines[0].max_len : 120; }

/* Random inputs of one forward (B = 2: CFG; 1: no CFG; T caption tokens, timestep 999) of the
 * model's latent rank; the caption mask only for models whose pipeline passes one. */
typedef struct {
    float *hs, *ehs, *out, *mask, t[2], res[4], ar[2];
    float *te, tid[12]; /* SDXL U-Nets' text_embeds [2, added_text_dim] and time_ids [2, 6] */
    float *dhs, *dehs, *dout; /* on a GPU backend: the device copies the tensors point to */
    dt_tensor ths, tehs, tout;
    dt_denoiser_inputs in;
} bench_inputs;

static dt_status make_inputs(const dt_denoiser_info *c, int mask_feature, int B, int F, int H, int W, int T,
                             bench_inputs *x, dt_err *err)
{
    int rank = c->latent_rank;
    int64_t hsh[5] = {B, c->in_channels, F, H, W}, osh[5] = {B, c->out_channels, F, H, W}, esh[3] = {B, T, c->caption_channels};
    if (rank == 4) hsh[2] = osh[2] = H, hsh[3] = osh[3] = W; /* no frame axis */
    x->ths = dt_tensor_view(NULL, DT_F32, rank, hsh);
    x->tout = dt_tensor_view(NULL, DT_F32, rank, osh);
    x->tehs = dt_tensor_view(NULL, DT_F32, 3, esh);
    x->hs = x->ths.data = malloc(dt_tensor_nbytes(&x->ths));
    x->out = x->tout.data = malloc(dt_tensor_nbytes(&x->tout));
    x->ehs = x->tehs.data = malloc(dt_tensor_nbytes(&x->tehs));
    x->mask = malloc(sizeof(float) * B * T);
    if (!x->hs || !x->out || !x->ehs || !x->mask) return dt_fail(err, DT_ENOMEM, "out of memory");
    dt_weight_source rnd = dt_weights_random(7, 1.0f);
    int64_t n1 = dt_tensor_numel(&x->ths), n2 = dt_tensor_numel(&x->tehs);
    DT_TRY(rnd.read(&rnd, "", 1, &n1, x->hs, err));
    DT_TRY(rnd.read(&rnd, "", 1, &n2, x->ehs, err));
    for (int i = 0; i < B * T; i++) x->mask[i] = 1.0f;
    x->t[0] = x->t[1] = 999.0f;
    for (int i = 0; i < 4; i++) x->res[i] = (float)(i % 2 ? W : H) * 8;
    x->ar[0] = x->ar[1] = (float)H / W;
    x->in = (dt_denoiser_inputs){.hidden_states = &x->ths, .encoder_hidden_states = &x->tehs, .timestep = x->t,
                                 .encoder_attention_mask = mask_feature ? NULL : x->mask};
    if (c->micro_conditions) x->in.resolution = x->res, x->in.aspect_ratio = x->ar; /* PixArt-α at 1024 px */
    if (c->added_text_dim && c->added_time_ids == 6) { /* SDXL: random pooled text, (H, W, 0, 0, H, W) in pixels */
        int64_t nte = (int64_t)B * c->added_text_dim;
        if (!(x->te = malloc((size_t)nte * sizeof(float)))) return dt_fail(err, DT_ENOMEM, "out of memory");
        DT_TRY(rnd.read(&rnd, "", 1, &nte, x->te, err));
        for (int b = 0; b < B; b++)
            for (int k = 0; k < 6; k++) x->tid[b * 6 + k] = k == 2 || k == 3 ? 0.0f : (float)(k % 2 ? W : H) * 8;
        x->in.text_embeds = x->te, x->in.time_ids = x->tid;
    }
    return DT_OK;
}

/* On a GPU backend the latents, caption states and output move to device memory. */
static dt_status inputs_to_device(dt_backend *be, bench_inputs *x, dt_err *err)
{
    if (be->cfg.device == DT_DEV_CPU) return DT_OK;
    DT_TRY(dt_backend_upload(be, x->hs, (size_t)dt_tensor_numel(&x->ths), &x->dhs, err));
    DT_TRY(dt_backend_upload(be, x->ehs, (size_t)dt_tensor_numel(&x->tehs), &x->dehs, err));
    DT_TRY(dt_backend_upload(be, x->out, (size_t)dt_tensor_numel(&x->tout), &x->dout, err));
    x->ths.data = x->dhs, x->tehs.data = x->dehs, x->tout.data = x->dout;
    x->ths.device = x->tehs.device = x->tout.device = be->cfg.device;
    return DT_OK;
}

static void free_inputs(dt_backend *be, bench_inputs *x)
{
    free(x->hs); free(x->ehs); free(x->out); free(x->mask); free(x->te);
    if (be) { be->ops->buffer_free(be, x->dhs); be->ops->buffer_free(be, x->dehs); be->ops->buffer_free(be, x->dout); }
}

/* --rounds-stdin: waits for a line on stdin before each timed round (0 at end of input), so
 * that a peer benchmark (scripts/bench/unet_diffusers.py) can alternate its rounds with ours
 * on one machine while both models stay loaded. */
int cli_bench_stdin_go(void)
{
    char line[64];
    return fgets(line, sizeof line, stdin) != NULL;
}

/* After each round (the warm-up is round 0; its line tells the peer we are ready): its step
 * time and a GEMM peak measured right after it, so each round has its own floor under the
 * machine's load of the moment. */
dt_status cli_bench_round_report(dt_backend *be, int r, double step, double flops, dt_err *err)
{
    double peak = 0;
    dt_op_times *t = dt_backend_times(be), keep = t ? *t : (dt_op_times){0};
    DT_TRY(cli_gemm_peak(be, &peak, err));
    if (t) *t = keep; /* the breakdown is of the steps only */
    double floor_s = flops / (peak * 1e9);
    printf("round %d: step %.3f s, GEMM peak %.0f GFLOP/s -> floor %.3f s, ratio to floor %.2fx%s\n", r, step, peak, floor_s,
           step / floor_s, r == 0 ? " (warm-up)" : "");
    fflush(stdout);
    return DT_OK;
}

/* One CFG forward of a preset architecture (random weights) timed against the GEMM floor,
 * then the quantized A/B and attention-plan runs when asked. */
static int run(const bench_args *a)
{
    dt_err err = {0};
    dt_backend *be = NULL;
    dt_denoiser *m = NULL;
    dt_arena arena;
    dt_arena_init(&arena);
    bench_inputs x = {0};
    const dt_denoiser_class *cls = dt_denoiser_class_of_preset(a->arch, &err);
    if (!cls) return cli_usage_error("%s", err.msg);
    dt_weight_source rnd = dt_weights_random(42, 0.02f);
    dt_quantizer qz;
    cli_quant_parse(a->quant, &qz); /* validated with the flags */
    dt_status s = dt_quantizer_attach(&qz, cls, &rnd, &err); /* the class says which linears are quantized */
    double peak = 0;
    if (s == DT_OK) s = cli_backend_on(a->device, a->dtype, a->threads, &be, &err);
    if (s == DT_OK && a->breakdown) {
        dt_backend *tb = NULL;
        s = dt_backend_timed(be, &tb, &err);
        be = tb; /* on failure the wrapper has destroyed the inner backend */
    }
    if (s == DT_OK && be->cfg.device != DT_DEV_CPU) { /* activations in the GPU's memory */
        dt_allocator alloc = dt_backend_allocator(be);
        dt_arena_init_with(&arena, &alloc);
    }
    if (s == DT_OK) s = cli_gemm_peak(be, &peak, &err);
    double t0 = cli_now();
    if (s == DT_OK) s = dt_denoiser_create_preset(be, a->arch, a->res / 8, a->layers, &rnd, &m, &err);
    dt_weights_close(&rnd);
    double load_s = cli_now() - t0;
    const dt_denoiser_info *c = m ? dt_denoiser_get_info(m) : NULL;
    int B = a->batch, T = bench_tokens(cls), H = a->res / 8, W = a->res / 8, F = 1, p = c ? c->patch_size : 1, N = (H / p) * (W / p);
    if (s == DT_OK && c->max_frames) {
        F = a->frames ? a->frames : c->max_frames;
        if (F > c->max_frames) s = dt_fail(&err, DT_EINVAL, "--frames: %s takes 1 to %d frames, got %d", a->arch, c->max_frames, F);
    } else if (s == DT_OK && a->frames) s = dt_fail(&err, DT_EINVAL, "--frames: %s is an image model", a->arch);
    if (s == DT_OK) s = make_inputs(c, cls->pipelines[0].mask_feature, B, F, H, W, T, &x, &err);
    if (s == DT_OK) s = inputs_to_device(be, &x, &err);
    double best = 1e30, total = 0, best_cpu = 1e30;
    double flops = s == DT_OK ? dt_denoiser_matmul_flops(m, B, F, H / p, W / p, T) : 0;
    dt_op_times *times = dt_backend_times(be);
    bench_args done = *a; /* done.iters: the timed rounds run */
    done.iters = 0;
    for (int r = 0; s == DT_OK && (a->stdin_rounds || r <= a->iters); r++) { /* r == 0 is the warm-up */
        if (r == 1 && times) *times = (dt_op_times){0};
        if (r > 0 && a->stdin_rounds && !cli_bench_stdin_go()) break;
        dt_arena_reset(&arena);
        double ts = cli_now(), cs = process_cpu_s();
        s = dt_denoiser_forward(m, &x.in, &arena, &x.tout, &err);
        if (s == DT_OK && x.dout) s = dt_backend_read(be, x.dout, x.out, 1, &err); /* waits for the GPU */
        double dt = cli_now() - ts, dc = process_cpu_s() - cs;
        if (r > 0) { total += dt; if (dt < best) best = dt; if (dc < best_cpu) best_cpu = dc; done.iters++; }
        if (s == DT_OK && a->stdin_rounds) printf("  process CPU time of round %d: %.3f s\n", r, dc); /* before its round line */
        if (s == DT_OK && a->stdin_rounds) s = cli_bench_round_report(be, r, dt, flops, &err);
    }
    if (s == DT_OK && done.iters == 0) s = dt_fail(&err, DT_EINVAL, "--rounds-stdin: no round was asked for");
    a = &done;
    if (s == DT_OK) {
        report(a, c, be, flops, B, F, H, W, T, load_s, best, total, peak, arena.peak);
        printf("  process CPU time per step: min %.3f s (all threads; the wall time adds waits for a core)\n", best_cpu);
        double mean = total / a->iters;
        if (times) cli_print_breakdown((const char *const[]){a->quant ? a->quant : a->dtype}, times, &mean, 1, a->iters);
        s = cli_bench_quant_report_flops(be, &qz, cli_quant_flops(&qz, B, F, N, T), flops, best, peak, &err);
    }
    if (s == DT_OK && a->quant && !a->no_ab) s = cli_bench_quant_ab(be, a->arch, a->res / 8, a->layers, m, &x.in, &arena, &x.tout, a->iters, &err);
    if (s == DT_OK && a->nplans) {
        cli_fa_bench fb = {m, &x.in, &x.tout, x.t, c->spatial_layers, c->temporal_layers, B, F, N, c->inner};
        s = cli_bench_attn_plans(&fb, &arena, a->plans, a->nplans, &err);
    }
    dt_arena_free(&arena);
    free_inputs(be, &x);
    dt_denoiser_free(m);
    dt_quantizer_free(&qz);
    dt_backend_destroy(be);
    return s == DT_OK ? 0 : cli_die(&err);
}

static int bench_transformer(int argc, char **argv)
{
    bench_args a = {.arch = "pixart-xl-2", .res = 512, .iters = 2, .batch = 2};
    for (int i = 2; i < argc; i++) {
        int miss = 0;
        const char *v;
        if ((v = cli_flag(argc, argv, &i, "--arch", &miss))) a.arch = v;
        else if ((v = cli_flag(argc, argv, &i, "--dtype", &miss))) a.dtype = v;
        else if ((v = cli_flag(argc, argv, &i, "--device", &miss))) a.device = v;
        else if ((v = cli_flag(argc, argv, &i, "--res", &miss))) { if (!cli_parse_int("--res", v, 64, 4096, &a.res)) return 2; }
        else if ((v = cli_flag(argc, argv, &i, "--threads", &miss))) { if (!cli_parse_int("--threads", v, 1, 1024, &a.threads)) return 2; }
        else if ((v = cli_flag(argc, argv, &i, "--iters", &miss))) { if (!cli_parse_int("--iters", v, 1, 1000, &a.iters)) return 2; }
        else if ((v = cli_flag(argc, argv, &i, "--layers", &miss))) { if (!cli_parse_int("--layers", v, 1, 28, &a.layers)) return 2; }
        else if ((v = cli_flag(argc, argv, &i, "--frames", &miss))) { if (!cli_parse_int("--frames", v, 1, 4096, &a.frames)) return 2; }
        else if ((v = cli_flag(argc, argv, &i, "--batch", &miss))) { if (!cli_parse_int("--batch", v, 1, 2, &a.batch)) return 2; }
        else if ((v = cli_flag(argc, argv, &i, "--quant", &miss))) {
            dt_quantizer q;
            if (!cli_quant_parse(v, &q)) return cli_usage_error("--quant: expected w8a8 or w4a8, got \"%s\"", v);
            a.quant = v;
        }
        else if ((v = cli_flag(argc, argv, &i, "--attn-plan", &miss))) {
            if (a.nplans == 8) return cli_usage_error("--attn-plan: at most 8 plans");
            a.plans[a.nplans++] = v;
        }
        else if (!strcmp(argv[i], "--breakdown")) a.breakdown = 1;
        else if (!strcmp(argv[i], "--rounds-stdin")) a.stdin_rounds = 1;
        else if (!strcmp(argv[i], "--no-ab")) a.no_ab = 1;
        else if (miss) return cli_usage_error("%s: missing value", argv[i]);
        else return cli_unknown_option("bench transformer", argv[i]);
    }
    dt_err err = {0};
    if (!dt_denoiser_class_of_preset(a.arch, &err)) return cli_usage_error("%s", err.msg);
    if (!a.dtype) a.dtype = a.device && strcmp(a.device, "cpu") ? "bf16" : cli_default_dtype(); /* a GPU's default */
    if (a.res % 16) return cli_usage_error("--res: must be a multiple of 16, got %d", a.res);
    return run(&a);
}

/* ---- `ditrt bench text-encoder`: the T5-XXL encoder (PixArt's) with random weights on
 * 2 prompts of 120 tokens, against the same GEMM floor, with the memory it holds. ---- */

typedef struct {
    const char *arch, *dtype;
    int threads, iters, layers;
} te_bench_args;

static void te_report(const te_bench_args *a, const t5_config *c, const dt_backend *be, int B, int N,
                      double load_s, double best, double total, double peak, size_t arena_peak)
{
    double flops = t5_matmul_flops(c, B, N), floor_s = flops / (peak * 1e9);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss = ru.ru_maxrss * 1024.0, bf16 = (double)t5_param_count(c) * 2;
    printf("bench text-encoder: arch=%s layers=%d dtype=%s threads=%d batch=%d tokens=%d\n",
           a->arch, c->num_layers, a->dtype, be->cfg.threads, B, N);
    printf("  weight prep: %.2f s\n", load_s);
    printf("  encode: %.3f s (best of %d; mean %.3f s)\n", best, a->iters, total / a->iters);
    printf("  matmul work: %.1f GFLOP/encode, achieved %.0f GFLOP/s\n", flops / 1e9, flops / best / 1e9);
    printf("  GEMM peak (M=2048 K=1152 N=4608, %s): %.0f GFLOP/s -> floor %.3f s, ratio to floor %.2fx\n",
           a->dtype, peak, floor_s, best / floor_s);
    printf("  memory: peak RSS %.0f MB; bf16 weights %.0f MB (RSS / that = %.3fx); activation arena %.0f MB\n",
           rss / 1e6, bf16 / 1e6, rss / bf16, arena_peak / 1e6);
}

static int te_run(const te_bench_args *a)
{
    dt_err err = {0};
    dt_backend *be = NULL;
    t5_model *m = NULL;
    dt_arena arena;
    dt_arena_init(&arena);
    t5_config c = t5_config_xxl();
    if (a->layers > 0) c.num_layers = a->layers;
    enum { B = 2, N = 120 };
    int32_t *ids = malloc(sizeof(int32_t) * B * N);
    float *mask = malloc(sizeof(float) * B * N), *out = malloc(sizeof(float) * B * N * (size_t)c.d_model);
    if (!ids || !mask || !out) { free(ids); free(mask); free(out); fprintf(stderr, "ditrt: out of memory\n"); return 1; }
    /* two prompts: one fills all 120 positions, one has 37 real tokens and padding */
    for (int i = 0; i < B * N; i++) {
        ids[i] = (int32_t)((i * 7919u) % (unsigned)c.vocab_size);
        mask[i] = i < N || i - N < 37 ? 1.0f : 0.0f;
    }
    double peak = 0, load_s = 0, best = 1e30, total = 0;
    int int8 = !strcmp(a->dtype, "int8"); /* int8 weights, f32 compute (--text-encoder-dtype int8) */
    dt_status s = cli_backend(int8 ? "f32" : a->dtype, a->threads, &be, &err);
    if (s == DT_OK) s = cli_gemm_peak(be, &peak, &err);
    dt_weight_source rnd = dt_weights_random(42, 0.02f);
    double t0 = cli_now();
    if (s == DT_OK) s = t5_create(be, &c, &rnd, B * N, int8 ? DT_I8 : be->cfg.compute, &m, &err);
    dt_weights_close(&rnd);
    load_s = cli_now() - t0;
    for (int r = 0; s == DT_OK && r <= a->iters; r++) { /* r == 0 is the warm-up */
        dt_arena_reset(&arena);
        double ts = cli_now();
        s = t5_encode(m, ids, mask, B, N, &arena, out, &err);
        double dt = cli_now() - ts;
        if (r > 0) { total += dt; if (dt < best) best = dt; }
    }
    if (s == DT_OK) te_report(a, &c, be, B, N, load_s, best, total, peak, arena.peak);
    free(ids); free(mask); free(out);
    dt_arena_free(&arena);
    t5_free(m);
    dt_backend_destroy(be);
    return s == DT_OK ? 0 : cli_die(&err);
}

static int bench_text_encoder(int argc, char **argv)
{
    te_bench_args a = {.arch = "t5-xxl", .dtype = cli_default_dtype(), .iters = 2};
    for (int i = 2; i < argc; i++) {
        int miss = 0;
        const char *v;
        if ((v = cli_flag(argc, argv, &i, "--arch", &miss))) a.arch = v;
        else if ((v = cli_flag(argc, argv, &i, "--dtype", &miss))) a.dtype = v;
        else if ((v = cli_flag(argc, argv, &i, "--threads", &miss))) { if (!cli_parse_int("--threads", v, 1, 1024, &a.threads)) return 2; }
        else if ((v = cli_flag(argc, argv, &i, "--iters", &miss))) { if (!cli_parse_int("--iters", v, 1, 1000, &a.iters)) return 2; }
        else if ((v = cli_flag(argc, argv, &i, "--layers", &miss))) { if (!cli_parse_int("--layers", v, 1, 24, &a.layers)) return 2; }
        else if (miss) return cli_usage_error("%s: missing value", argv[i]);
        else return cli_unknown_option("bench text-encoder", argv[i]);
    }
    if (strcmp(a.arch, "t5-xxl")) return cli_usage_error("--arch: only t5-xxl is known for text-encoder, got \"%s\"", a.arch);
    return te_run(&a);
}

int cli_bench(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "transformer")) return bench_transformer(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "text-encoder")) return bench_text_encoder(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "attention")) return cli_bench_attention(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "load")) return cli_bench_load(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "vae")) return cli_bench_vae(argc, argv);
    return cli_usage_error("bench: expected a target: transformer, text-encoder, attention, vae, load");
}
