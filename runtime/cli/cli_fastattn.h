/* DiTFastAttn developer tools on the command line: the plan summary of `ditrt info
 * --attn-plan` (info_attn_plan.c) and the plan runs of `ditrt bench transformer --attn-plan`
 * (bench_attn_plan.c). The user command `ditrt calibrate-attn` (cli_fastattn.c) is declared in
 * client.h and uses the public API only. */
#ifndef DT_CLI_FASTATTN_H
#define DT_CLI_FASTATTN_H
#include "runtime/core/arena.h"
#include "runtime/models/denoiser.h"

/* Prints a plan's summary; model_dir (may be NULL) gives the layer check and the token
 * count at its native size (else PixArt-XL-2 at 1024 px: 4096 tokens, width 1152). */
int cli_info_attn_plan(const char *path, const char *model_dir);
/* The bench model a plan runs on: its forward and hook setter, layer counts (temporal: 0
 * for image models) and the shape (B sequences/videos, F frames, N tokens, width C); the
 * forward reads its B timesteps from `timesteps`. */
typedef struct {
    dt_denoiser *model;
    const dt_denoiser_inputs *inputs;
    dt_tensor *out;
    float *timesteps;
    int layers, temporal, B, F, N, C;
} cli_fa_bench;
/* Times each plan's steps (CFG forwards, timesteps 999 down), each paired with a
 * full-attention forward at the same timestep, with the attention FLOPs kept and the cache
 * memory. */
dt_status cli_bench_attn_plans(const cli_fa_bench *b, dt_arena *a, const char *const *plans, int nplans, dt_err *err);
#endif
