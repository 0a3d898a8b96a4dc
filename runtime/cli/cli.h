/* ditrt command line: what the developer tools (eval, bench, info) share; they may use the
 * library's internal headers. The user commands use client.h only. */
#ifndef DT_CLI_H
#define DT_CLI_H
#include "client.h"
#include "runtime/core/error.h"
#include "runtime/io/image.h"
#include "runtime/core/tensor.h"
#include "runtime/core/safetensors.h"
#include "kernels/backend.h"
#include "kernels/backend_timing.h"

int cli_eval(int argc, char **argv);
/* `ditrt eval <target>`: argv[0] is "eval", argv[1] the target; one file per target. */
int cli_eval_transformer(int argc, char **argv);

/* The arguments the file-to-file eval targets share: -m/--model, --in, --out, --dtype
 * (default f32), --threads, and --tiling when allow_tiling is set. Returns 0 after printing
 * a usage error. */
typedef struct {
    const char *model, *in, *out, *dtype;
    int threads, tiling;
} cli_eval_args;
int cli_eval_parse(int argc, char **argv, int allow_tiling, cli_eval_args *a);
int cli_eval_text_encoder(int argc, char **argv);
int cli_eval_tokenizer(int argc, char **argv);
int cli_eval_vae_decoder(int argc, char **argv);
int cli_eval_vae_encoder(int argc, char **argv);
int cli_eval_noise(int argc, char **argv);
int cli_info(int argc, char **argv);
int cli_bench(int argc, char **argv);
/* cli_gemm_peak is cli_bench.c's GEMM floor probe */
dt_status cli_gemm_peak(dt_backend *be, double *gflops, dt_err *err);
/* The same probe for a float (wbits 0) or quantized (8, 4) linear (cli_bench.c). */
dt_status cli_linear_peak(dt_backend *be, int wbits, double *gflops, dt_err *err);
/* `ditrt bench attention`: fused vs two-GEMM attention vs the matmul floor (bench_attention.c). */
int cli_bench_attention(int argc, char **argv);
int cli_bench_load(int argc, char **argv);
/* `ditrt bench vae`: an SD-shaped VAE decode vs its conv/GEMM floor (bench_vae.c). */
int cli_bench_vae(int argc, char **argv);
/* --rounds-stdin (cli_bench.c): waits for a line on stdin (0 at end of input); after round r
 * (0: the warm-up, whose line says "ready") prints its time and the floor of `flops` at a GEMM
 * peak measured right then. */
int cli_bench_stdin_go(void);
dt_status cli_bench_round_report(dt_backend *be, int r, double step, double flops, dt_err *err);

/* Restarts the process (execv /proc/self/exe) with OMP_WAIT_POLICY=passive unless the user set
 * OMP_WAIT_POLICY or GOMP_SPINCOUNT; returns only when it did not restart (openmp_wait.c). */
void cli_openmp_passive(char **argv);

/* Creates the CPU backend for "f32"/"bf16" ("f16"/"tf32": the one-line refusal, CUDA only). */
dt_status cli_backend(const char *dtype, int threads, dt_backend **be, dt_err *err);
/* The same on a device ("cpu", "cuda", "cuda:N"; NULL: cpu): bench --device; "f16" and "tf32" on cuda. */
dt_status cli_backend_on(const char *device, const char *dtype, int threads, dt_backend **be, dt_err *err);
/* The --dtype default: bf16 where the CPU runs it natively, else f32. */
const char *cli_default_dtype(void);

/* `bench --breakdown` table: per op kind, mean s/step of ncol runs (t: sums over `rounds`
 * steps; step: each run's mean step time). */
void cli_print_breakdown(const char *const cols[], const dt_op_times *t, const double *step, int ncol, int rounds);


/* A malloc'd copy of n floats (NULL for x NULL); sets *fail when out of memory. */
float *cli_dup_floats(const float *x, size_t n, int *fail);

/* Text side (eval_text_encoder.c): the pipeline's default max_sequence_length for a model
 * folder (300 for PixArtSigmaPipeline, else 120), and a prompt through caption
 * preprocessing (when clean) and the tokenizer (T5 or CLIP, runtime/text/text_tokenizer.h),
 * warning on stderr when it was truncated. */
struct dt_text_tokenizer;
dt_status cli_text_max_length(const char *model_dir, int *n, dt_err *err);
dt_status cli_tokenize_prompt(const struct dt_text_tokenizer *tok, const char *what, const char *text, int clean,
                              int max_length, int32_t *ids, float *mask, dt_err *err);
#endif
