/* `ditrt info [-m MODEL_DIR] --attn-plan PLAN.json`: a DiTFastAttn plan's summary and cost
 * (developer tool; over the public ditrt_attn_plan_summarize). */
#include "client.h"
#include "cli_fastattn.h"
#include <stdio.h>

/* Without -m a plan is costed on the reference model of its kind, whose depth it must have:
 * PixArt-XL-2 (28 blocks) for image plans, Latte-1 (28 spatial + 28 temporal) for video plans.
 * A plan of another depth is refused: its costs on a 28-block model would describe no model. */
#define REFERENCE_DEPTH 28

int cli_info_attn_plan(const char *path, const char *model_dir)
{
    ditrt_error err = {0};
    ditrt_attn_plan_summary s = {.struct_size = sizeof s};
    if (ditrt_attn_plan_summarize(path, model_dir, 0, 0, 0, &s, &err) != DITRT_OK) return cli_die(&err);
    if (!model_dir && (s.layers != REFERENCE_DEPTH || (s.temporal_layers && s.temporal_layers != REFERENCE_DEPTH))) {
        const char *ref = s.temporal_layers ? "Latte-1 (28 spatial + 28 temporal layers)" : "PixArt-XL-2 (28 layers)";
        cli_fail(&err, DITRT_EINVAL, "%s: a plan for %d %slayers; without -m it would be costed on %s: give -m MODEL_DIR, "
                 "the pipeline it is for%s%s%s", path, s.layers, s.temporal_layers ? "spatial " : "", ref,
                 s.model[0] ? " (the plan says \"" : "", s.model, s.model[0] ? "\")" : "");
        return cli_die(&err);
    }
    const char *what = model_dir ? "the model's native size"
                       : s.temporal_layers ? "Latte-1 at 512 px, 16 frames (assumed)" : "PixArt-XL-2 at 1024 px (assumed)";
    printf("attention plan: %s\n", path);
    if (s.temporal_layers)
        printf("  model: %s, layers: %d spatial (window %d tokens) + %d temporal (window %d frames), steps: %d, cfg_half: %s, "
               "asc_residual: %s\n", s.model[0] ? s.model : "(unnamed)", s.layers, s.window, s.temporal_layers,
               s.temporal_window, s.steps, s.cfg_half, s.asc_residual);
    else
        printf("  model: %s, layers: %d, steps: %d, window: %d, cfg_half: %s, asc_residual: %s\n", s.model[0] ? s.model : "(unnamed)",
               s.layers, s.steps, s.window, s.cfg_half, s.asc_residual);
    printf("  costs for %s, CFG batch 2:\n", what);
    cli_print_attn_cost(&s);
    return 0;
}
