/* `ditrt bench transformer --arch latte-1`: one CFG forward of a Latte-1-sized model (random
 * weights, 16 frames by default) against the GEMM floor measured in the same run. */
#include "cli.h"
#include "cli_fastattn.h"
#include "cli_quant.h"
#include "runtime/core/arena.h"
#include "runtime/models/latte.h"
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

static void report(const latte_config *c, const char *dtype, const dt_backend *be, int res, int F, int N, int T,
                   double load_s, double best, double total, int iters, double peak, size_t arena_peak)
{
    double flops = latte_matmul_flops(c, 2, F, res / 16, res / 16, T), floor_s = flops / (peak * 1e9);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double wbytes = (double)latte_param_count(c) * dt_dtype_size(be->cfg.compute);
    printf("bench transformer: arch=latte-1 res=%d frames=%d layers=%d dtype=%s threads=%d batch=2 tokens=%dx%d text=%d\n",
           res, F, c->num_layers, dtype, be->cfg.threads, F, N, T);
    printf("  weight prep: %.2f s\n", load_s);
    printf("  step: %.3f s (best of %d; mean %.3f s)\n", best, iters, total / iters);
    printf("  matmul work: %.1f GFLOP/step, achieved %.0f GFLOP/s\n", flops / 1e9, flops / best / 1e9);
    printf("  GEMM peak (M=2048 K=1152 N=4608, %s): %.0f GFLOP/s -> floor %.3f s, ratio to floor %.2fx\n",
           dtype, peak, floor_s, best / floor_s);
    printf("  memory: peak RSS %.0f MB; weights %.0f MB + activation arena %.0f MB\n",
           ru.ru_maxrss / 1024.0, wbytes / 1e6, arena_peak / 1e6);
}

static dt_status latte_forward_any(void *m, const void *in, dt_arena *a, dt_tensor *out, dt_err *err)
{
    return latte_forward(m, in, a, out, err);
}
static void latte_set_hook_any(void *m, struct dit_attn_hook *h) { latte_set_attn_hook(m, h); }

/* Matmul FLOPs of the linears ViDiT-Q quantizes: per layer, spatial blocks 14 C² per token
 * (q, k, v, out, cross q and out, FFN 8) plus cross k, v over each frame's caption, temporal
 * blocks 12 C² per token (no cross-attention). */
static double quant_flops(const latte_config *c, int B, int F, int N, int T)
{
    double C = c->inner, M = (double)B * F * N;
    return 2.0 * c->num_layers * C * C * (14.0 * M + 2.0 * B * F * T + 12.0 * M);
}

int cli_bench_latte(const char *dtype, int res, int frames, int threads, int iters, int layers, const char *const *plans,
                    int nplans, const char *quant)
{
    dt_err err = {0};
    dt_backend *be = NULL;
    latte_model *m = NULL;
    dt_arena arena;
    dt_arena_init(&arena);
    latte_config c = latte_config_1(res / 8);
    if (layers > 0) c.num_layers = layers;
    if (frames <= 0) frames = c.video_length;
    if (frames > c.video_length) return cli_usage_error("--frames: Latte-1 takes 1 to %d frames, got %d", c.video_length, frames);
    int B = 2, T = 120, H = res / 8, W = res / 8, F = frames;
    size_t nin = (size_t)B * 4 * F * H * W, nout = (size_t)B * c.out_channels * F * H * W;
    float *hs = malloc(nin * 4), *ehs = malloc((size_t)B * T * c.caption_channels * 4), *out = malloc(nout * 4);
    float t[2] = {999.0f, 999.0f};
    if (!hs || !ehs || !out) { free(hs); free(ehs); free(out); fprintf(stderr, "ditrt: out of memory\n"); return 1; }
    dt_weight_source rnd = dt_weights_random(42, 0.02f);
    dt_quantizer qz;
    cli_quant_parse(quant, &qz); /* validated with the flags */
    dt_quantizer_attach(&qz, &rnd);
    int64_t n1 = (int64_t)nin, n2 = (int64_t)B * T * c.caption_channels;
    rnd.read(&rnd, "", 1, &n1, hs, &err);
    rnd.read(&rnd, "", 1, &n2, ehs, &err);
    double peak = 0, best = 1e30, total = 0;
    dt_status s = cli_backend(dtype, threads, &be, &err);
    if (s == DT_OK) s = cli_gemm_peak(be, &peak, &err);
    double t0 = cli_now();
    if (s == DT_OK) s = latte_create(be, &c, &rnd, &m, &err);
    double load_s = cli_now() - t0;
    int64_t hsh[5] = {B, 4, F, H, W}, esh[3] = {B, T, c.caption_channels}, osh[5] = {B, c.out_channels, F, H, W};
    dt_tensor ths = dt_tensor_view(hs, DT_F32, 5, hsh), tehs = dt_tensor_view(ehs, DT_F32, 3, esh),
              tout = dt_tensor_view(out, DT_F32, 5, osh);
    latte_inputs in = {.hidden_states = &ths, .encoder_hidden_states = &tehs, .timestep = t};
    for (int r = 0; s == DT_OK && r <= iters; r++) { /* r == 0 is the warm-up */
        dt_arena_reset(&arena);
        double ts = cli_now();
        s = latte_forward(m, &in, &arena, &tout, &err);
        double dt = cli_now() - ts;
        if (r > 0) { total += dt; if (dt < best) best = dt; }
    }
    if (s == DT_OK) report(&c, dtype, be, res, F, (H / 2) * (W / 2), T, load_s, best, total, iters, peak, arena.peak);
    if (s == DT_OK)
        s = cli_bench_quant_report_flops(be, &qz, quant_flops(&c, B, F, (H / 2) * (W / 2), T),
                                         latte_matmul_flops(&c, B, F, H / 2, W / 2, T), best, peak, &err);
    cli_fa_bench fb = {m, &in, &tout, t, latte_forward_any, latte_set_hook_any, c.num_layers, c.num_layers, B, F,
                       (H / 2) * (W / 2), c.inner};
    if (s == DT_OK && nplans) s = cli_bench_attn_plans(&fb, &arena, plans, nplans, &err);
    free(hs); free(ehs); free(out);
    dt_arena_free(&arena);
    latte_free(m);
    dt_quantizer_free(&qz);
    dt_backend_destroy(be);
    return s == DT_OK ? 0 : cli_die(&err);
}
