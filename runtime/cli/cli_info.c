/* `ditrt info -m DIR`: architecture, parameter count, stored dtypes, memory estimate.
 * `ditrt info` alone: the backends built in and the devices found. */
#include "cli.h"
#include "cli_fastattn.h"
#include "runtime/models/modeldir.h"
#include "runtime/models/denoiser.h"
#include "kernels/backend.h"
#include <stdio.h>
#include <string.h>

int cli_info(int argc, char **argv)
{
    const char *model = NULL, *attn_plan = NULL;
    for (int i = 1; i < argc; i++) {
        int miss = 0;
        const char *v;
        if ((v = cli_flag(argc, argv, &i, "-m", &miss)) || (v = cli_flag(argc, argv, &i, "--model", &miss))) model = v;
        else if ((v = cli_flag(argc, argv, &i, "--attn-plan", &miss))) attn_plan = v;
        else if (miss) return cli_usage_error("%s: missing value", argv[i]);
        else return cli_usage_error("info: unknown option \"%s\"", argv[i]);
    }
    if (attn_plan) return cli_info_attn_plan(attn_plan, model); /* DiTFastAttn plan summary */
    if (!model) { /* the backends and devices */
        char list[4096];
        dt_backend_list(list, sizeof list);
        fputs(list, stdout);
        return 0;
    }
    dt_err err = {0};
    char dir[4096], head[1024], tail[512];
    dt_denoiser_info info;
    dt_safetensors *st = NULL;
    if (dt_model_component_dir(model, "transformer", dir, sizeof dir, &err) != DT_OK ||
        dt_denoiser_describe(dir, &info, head, tail, sizeof head, &err) != DT_OK ||
        dt_st_open_dir(dir, "diffusion_pytorch_model", &st, &err) != DT_OK)
        return cli_die(&err);
    int64_t counts[DT_DTYPE_COUNT] = {0}, stored = 0;
    for (int i = 0; i < dt_st_count(st); i++) {
        const dt_st_entry *e = dt_st_at(st, i);
        int64_t n = (int64_t)(e->nbytes / dt_dtype_size(e->dtype));
        counts[e->dtype] += n;
        stored += n;
    }
    printf("transformer: %s\n%s", dir, head);
    printf("  parameters: %lld (file holds %lld)\n", (long long)info.param_count, (long long)stored);
    printf("  stored dtypes:");
    for (int t = 0; t < DT_DTYPE_COUNT; t++)
        if (counts[t]) printf(" %s=%lld", dt_dtype_name((dt_dtype)t), (long long)counts[t]);
    printf("\n  weights on disk: %.1f MB\n%s", dt_st_total_bytes(st) / 1e6, tail);
    dt_st_close(st);
    return 0;
}
