/* Developer tools over quantized models (bench_quant.c): `ditrt bench transformer --quant`
 * (cli_bench.c, bench_latte.c). The user command `ditrt quantize` (cli_quant.c, over
 * ditrt_quantize) is declared in client.h. */
#ifndef DT_CLI_QUANT_H
#define DT_CLI_QUANT_H
#include "runtime/plans/quantize.h"
#include "runtime/models/denoiser.h"

/* Parses --quant w8a8|w4a8 into q (NULL scheme: float, counting bytes only); 0 when unknown. */
int cli_quant_parse(const char *scheme, dt_quantizer *q);
/* The matmul FLOPs a step spends in the block linears q counted while building (any mode):
 * B·F·N token rows each, the text k|v projections B·F·T caption rows (one caption per frame,
 * as Latte computes them; PixArt has F = 1; STDiT projects the caption once per video, so this
 * counts F times its k|v work: under 1% of the total at its sizes). */
double cli_quant_flops(const dt_quantizer *q, int B, int F, int N, int T);
/* Prints linear-weight bytes and, when quantized, the int8 linear peak and the mixed floor:
 * qflops of the quantized linears out of `all` matmul FLOPs a step. */
dt_status cli_bench_quant_report_flops(dt_backend *be, const dt_quantizer *q, double qflops, double all, double step_s,
                                       double float_peak, dt_err *err);

/* bench --quant: times a float copy of the bench model (preset arch at sample_size, `layers`)
 * and the quantized one alternately. */
dt_status cli_bench_quant_ab(dt_backend *be, const char *arch, int sample_size, int layers, dt_denoiser *qm,
                             const dt_denoiser_inputs *in, dt_arena *arena, dt_tensor *out, int rounds, dt_err *err);

#endif
