/* Developer-tool code for quantized models: `ditrt bench transformer --quant w8a8|w4a8`
 * (cli_bench.c): the quantizer of a scheme, the weight-byte
 * and int8-peak report, and the float/quantized A/B timing. May use internal headers; the user
 * command `ditrt quantize` is cli_quant.c (client.h only). */
#include "cli.h"
#include "cli_quant.h"
#include "kernels/quant.h"
#include "kernels/backend_timing.h"
#include "runtime/core/arena.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

double cli_quant_flops(const dt_quantizer *q, int B, int F, int N, int T)
{
    return 2.0 * (q->token_params * B * F * N + q->text_params * B * F * T);
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

/* ---- bench transformer --quant: float and quantized models timed alternately ---- */

static double cpu_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of n values (sorted in place). */
static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* The machine may be shared: alternating the two models round by round exposes both to
 * the same load, so the ratio of their best times is steadier than two separate runs. */
dt_status cli_bench_quant_ab(dt_backend *be, const char *arch, int sample_size, int layers, dt_denoiser *qm,
                             const dt_denoiser_inputs *in, dt_arena *arena, dt_tensor *out, int rounds, dt_err *err)
{
    dt_weight_source rnd = dt_weights_random(42, 0.02f); /* the same weights as the bench's model */
    dt_quantizer fq = {.mode = DT_QMODE_FLOAT};
    const dt_denoiser_class *cls = dt_denoiser_class_of_preset(arch, err);
    if (!cls) return err->status;
    DT_TRY(dt_quantizer_attach(&fq, cls, &rnd, err));
    dt_denoiser *fm = NULL;
    dt_status cs = dt_denoiser_create_preset(be, arch, sample_size, layers, &rnd, &fm, err);
    dt_weights_close(&rnd);
    DT_TRY(cs);
    double best[2] = {1e30, 1e30}, cpu[2] = {1e30, 1e30}, mean[2] = {0, 0};
    double *round_s = calloc((size_t)rounds * 2, sizeof *round_s); /* [k * rounds + r - 1]: for the medians */
    dt_op_times *times = dt_backend_times(be), per[2];
    memset(per, 0, sizeof per);
    dt_status s = round_s ? DT_OK : dt_fail(err, DT_ENOMEM, "out of memory");
    for (int r = 0; r <= rounds && s == DT_OK; r++) /* r == 0 warms both up */
        for (int k = 0; k < 2 && s == DT_OK; k++) {
            dt_arena_reset(arena);
            dt_op_times before;
            if (times) before = *times;
            double t0 = cli_now(), c0 = cpu_seconds();
            s = dt_denoiser_forward(k ? qm : fm, in, arena, out, err);
            double dt = cli_now() - t0, dc = cpu_seconds() - c0;
            if (r > 0 && dt < best[k]) best[k] = dt;
            if (r > 0 && dc < cpu[k]) cpu[k] = dc;
            if (r > 0) mean[k] += dt / rounds;
            if (r > 0) round_s[k * rounds + r - 1] = dt;
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
    if (s == DT_OK) /* the best time flatters a loaded machine's luckiest round; the median says what is typical */
        printf("  interleaved medians: float %.3f s, quantized %.3f s -> %.2fx\n", median(round_s, rounds),
               median(round_s + rounds, rounds), median(round_s, rounds) / median(round_s + rounds, rounds));
    if (s == DT_OK && times) {
        cli_print_breakdown((const char *const[]){"float", "quantized"}, per, mean, 2, rounds);
        /* what the float parts alone allow: the quantized step minus its linears */
        double rest = mean[1] - per[1].seconds[DT_OPK_LINEAR] / rounds;
        printf("  quantized step without its linears: %.3f s -> even free linears give at most %.2fx; "
               "1.6x needs the quantized linears at <= %.3f s/step (now %.3f s)\n", rest, mean[0] / rest,
               mean[0] / 1.6 - rest, per[1].seconds[DT_OPK_LINEAR] / rounds);
    }
    dt_denoiser_free(fm);
    free(round_s);
    return s;
}
