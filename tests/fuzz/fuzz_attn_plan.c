/* Attention plans (dt_attn_plan_parse on the text), then what a loaded plan is used for. */
#include "fuzz_util.h"
#include "runtime/plans/fastattn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text) abort();
    memcpy(text, data, size);
    text[size] = 0;
    dt_attn_plan p;
    dt_err e = {0};
    if (dt_attn_plan_parse(text, "plan.json", &p, &e) == DT_OK) {
        dt_attn_plan_cost c;
        dt_attn_plan_cost_of(&p, 2, 64, 32, &c);
        if (p.temporal) dt_attn_plan_cost_video(&p, 2, 4, 16, 32, &c);
        char name[64];
        for (int l = 0; l < p.layers; l++) {
            dt_attn_plan_row_name(&p, l, name, sizeof name);
            for (int s = 0; s < p.steps; s++) {
                dt_attn_plan_residual_live(&p, l, s);
                dt_attn_plan_output_live(&p, l, s);
            }
        }
        dt_attn_plan_free(&p);
    }
    free(text);
    return 0;
}
