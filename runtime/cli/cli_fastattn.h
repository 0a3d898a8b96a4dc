/* DiTFastAttn on the command line: `ditrt calibrate-attn`, the plan summary of
 * `ditrt info --attn-plan`, and the plan runs of `ditrt bench transformer --attn-plan`. */
#ifndef DT_CLI_FASTATTN_H
#define DT_CLI_FASTATTN_H
#include "arena.h"
#include "models/pixart.h"

int cli_calibrate_attn(int argc, char **argv);
/* Prints a plan's summary; model_dir (may be NULL) gives the layer check and the token
 * count at its native size (else PixArt-XL-2 at 1024 px: 4096 tokens, width 1152). */
int cli_info_attn_plan(const char *path, const char *model_dir);
/* Times each plan's steps (CFG forwards, timesteps 999 down), each paired with a
 * full-attention forward at the same timestep, with the attention FLOPs kept and the cache
 * memory. */
dt_status cli_bench_attn_plans(pixart_model *m, const pixart_inputs *in, float *timesteps, dt_arena *a,
                               dt_tensor *out, const char *const *plans, int nplans, dt_err *err);
#endif
