/* `ditrt bench vae` (developer tool): one decode of an SD-shaped AutoencoderKL (decoder
 * block_out_channels 128/256/512/512, 2 layers per block, 4 latent channels, mid-block
 * attention: the VAE of SD 1.5, 2.x and SDXL) with random weights, batch 1, against its
 * conv/GEMM floor: the decoder's FLOPs (convolutions, the mid attention's linears, QKᵀ and PV)
 * at the GEMM rate of the reference linear (cli_gemm_peak). --rounds-stdin as bench
 * transformer's, for scripts/bench/unet_diffusers.py --part vae. */
#include "cli.h"
#include "runtime/core/arena.h"
#include "runtime/models/vae.h"
#include "kernels/backend_timing.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *dtype;
    int res, threads, iters, stdin_rounds;
    int breakdown; /* --breakdown: time per op kind (kernels/backend_timing.h) */
} vae_bench_args;

static vae_config sd_vae(void)
{
    return (vae_config){.in_channels = 3, .out_channels = 3, .latent_channels = 4, .nblocks = 4,
                        .block_out_channels = {128, 256, 512, 512}, .layers_per_block = 2, .norm_num_groups = 32,
                        .sample_size = 512, .mid_block_add_attention = 1, .use_post_quant_conv = 1, .use_quant_conv = 1,
                        .scaling_factor = 0.18215f};
}

static double conv_f(double px, int cin, int cout, int k) { return 2.0 * px * cin * cout * k * k; }

static double resnet_f(double px, int cin, int cout)
{
    return conv_f(px, cin, cout, 3) + conv_f(px, cout, cout, 3) + (cin != cout ? conv_f(px, cin, cout, 1) : 0);
}

/* FLOPs of one decode of a [1, latent, h, w] latent, walked as vae.c builds the decoder. */
static double decoder_flops(const vae_config *c, int h, int w)
{
    int n = c->nblocks, top = c->block_out_channels[n - 1], lc = c->latent_channels;
    double px = (double)h * w, f = 0;
    if (c->use_post_quant_conv) f += conv_f(px, lc, lc, 1);
    f += conv_f(px, lc, top, 3) + 2 * resnet_f(px, top, top);
    if (c->mid_block_add_attention) f += 8.0 * px * top * top + 4.0 * px * px * top; /* q, k, v, out; QKᵀ, PV */
    for (int i = 0; i < n; i++) {
        int cin = c->block_out_channels[n - (i > 0 ? i : 1)], cout = c->block_out_channels[n - 1 - i];
        for (int j = 0; j <= c->layers_per_block; j++) f += resnet_f(px, j == 0 ? cin : cout, cout);
        if (i < n - 1) {
            px *= 4;
            f += conv_f(px, cout, cout, 3);
        }
    }
    return f + conv_f(px, c->block_out_channels[0], c->out_channels, 3);
}

static int vae_run(const vae_bench_args *a)
{
    dt_err err = {0};
    dt_backend *be = NULL;
    vae_model *m = NULL;
    dt_arena arena;
    dt_arena_init(&arena);
    vae_config cfg = sd_vae();
    int h = a->res / 8, w = a->res / 8;
    int64_t ls[4] = {1, cfg.latent_channels, h, w}, os[4] = {1, cfg.out_channels, a->res, a->res};
    dt_tensor lat = dt_tensor_view(NULL, DT_F32, 4, ls), out = dt_tensor_view(NULL, DT_F32, 4, os);
    lat.data = malloc(dt_tensor_nbytes(&lat));
    out.data = malloc(dt_tensor_nbytes(&out));
    dt_status s = lat.data && out.data ? DT_OK : dt_fail(&err, DT_ENOMEM, "out of memory");
    dt_weight_source rnd = dt_weights_random(42, 0.02f), rin = dt_weights_random(7, 1.0f);
    int64_t nl = dt_tensor_numel(&lat);
    if (s == DT_OK) s = rin.read(&rin, "", 1, &nl, lat.data, &err);
    double peak = 0, best = 1e30, total = 0, flops = decoder_flops(&cfg, h, w);
    if (s == DT_OK) s = cli_backend(a->dtype, a->threads, &be, &err);
    if (s == DT_OK && a->breakdown) {
        dt_backend *tb = NULL;
        s = dt_backend_timed(be, &tb, &err);
        be = tb; /* on failure the wrapper has destroyed the inner backend */
    }
    if (s == DT_OK) s = cli_gemm_peak(be, &peak, &err);
    double t0 = cli_now();
    if (s == DT_OK) s = vae_create(be, &cfg, &rnd, &m, &err);
    dt_weights_close(&rnd);
    double load_s = cli_now() - t0;
    int done = 0;
    dt_op_times *times = dt_backend_times(be);
    for (int r = 0; s == DT_OK && (a->stdin_rounds || r <= a->iters); r++) { /* r == 0 is the warm-up */
        if (r == 1 && times) *times = (dt_op_times){0};
        if (r > 0 && a->stdin_rounds && !cli_bench_stdin_go()) break;
        dt_arena_reset(&arena);
        double ts = cli_now();
        s = vae_decode(m, &lat, &arena, &out, &err);
        double dt = cli_now() - ts;
        if (r > 0) { total += dt; if (dt < best) best = dt; done++; }
        if (s == DT_OK && a->stdin_rounds) s = cli_bench_round_report(be, r, dt, flops, &err);
    }
    if (s == DT_OK && done == 0) s = dt_fail(&err, DT_EINVAL, "--rounds-stdin: no round was asked for");
    if (s == DT_OK) {
        double floor_s = flops / (peak * 1e9);
        printf("bench vae: SD-shaped AutoencoderKL decode res=%d (latent %dx%d) batch=1 dtype=%s threads=%d\n", a->res, h, w,
               a->dtype, be->cfg.threads);
        printf("  weight prep: %.2f s\n", load_s);
        printf("  decode: %.3f s (best of %d; mean %.3f s)\n", best, done, total / done);
        printf("  conv/matmul work: %.1f GFLOP/decode, achieved %.0f GFLOP/s\n", flops / 1e9, flops / best / 1e9);
        printf("  GEMM peak (M=2048 K=1152 N=4608, %s): %.0f GFLOP/s -> floor %.3f s, ratio to floor %.2fx\n", a->dtype, peak,
               floor_s, best / floor_s);
        printf("  activation arena %.0f MB\n", arena.peak / 1e6);
        double mean = total / done;
        if (times) cli_print_breakdown((const char *const[]){a->dtype}, times, &mean, 1, done);
    }
    free(lat.data);
    free(out.data);
    dt_arena_free(&arena);
    vae_free(m);
    dt_backend_destroy(be);
    return s == DT_OK ? 0 : cli_die(&err);
}

int cli_bench_vae(int argc, char **argv)
{
    vae_bench_args a = {.dtype = cli_default_dtype(), .res = 512, .iters = 2};
    for (int i = 2; i < argc; i++) {
        int miss = 0;
        const char *v;
        if ((v = cli_flag(argc, argv, &i, "--dtype", &miss))) a.dtype = v;
        else if ((v = cli_flag(argc, argv, &i, "--res", &miss))) { if (!cli_parse_int("--res", v, 64, 4096, &a.res)) return 2; }
        else if ((v = cli_flag(argc, argv, &i, "--threads", &miss))) { if (!cli_parse_int("--threads", v, 1, 1024, &a.threads)) return 2; }
        else if ((v = cli_flag(argc, argv, &i, "--iters", &miss))) { if (!cli_parse_int("--iters", v, 1, 1000, &a.iters)) return 2; }
        else if (!strcmp(argv[i], "--rounds-stdin")) a.stdin_rounds = 1;
        else if (!strcmp(argv[i], "--breakdown")) a.breakdown = 1;
        else if (miss) return cli_usage_error("%s: missing value", argv[i]);
        else return cli_unknown_option("bench vae", argv[i]);
    }
    if (a.res % 8) return cli_usage_error("--res: must be a multiple of 8, got %d", a.res);
    return vae_run(&a);
}
