/* `ditrt info -m DIR`: architecture, parameter count, stored dtypes, memory estimate. */
#include "cli.h"
#include "cli_fastattn.h"
#include "runtime/models/modeldir.h"
#include "runtime/models/pixart.h"
#include "runtime/models/latte.h"
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
    if (!model) return cli_usage_error("info: -m MODEL_DIR is required");
    dt_err err = {0};
    char dir[4096];
    pixart_config c;
    dt_safetensors *st = NULL;
    if (dt_model_component_dir(model, "transformer", dir, sizeof dir, &err) == DT_OK && latte_is_model_dir(dir))
        return cli_info_latte(dir);
    if (dt_model_component_dir(model, "transformer", dir, sizeof dir, &err) != DT_OK ||
        pixart_config_load(dir, &c, &err) != DT_OK ||
        dt_st_open_dir(dir, "diffusion_pytorch_model", &st, &err) != DT_OK)
        return cli_die(&err);
    int64_t counts[DT_DTYPE_COUNT] = {0}, stored = 0;
    for (int i = 0; i < dt_st_count(st); i++) {
        const dt_st_entry *e = dt_st_at(st, i);
        int64_t n = (int64_t)(e->nbytes / dt_dtype_size(e->dtype));
        counts[e->dtype] += n;
        stored += n;
    }
    int64_t params = pixart_param_count(&c);
    printf("transformer: %s\n", dir);
    printf("  architecture: PixArtTransformer2DModel (%s)\n", c.use_additional_conditions ? "PixArt-alpha style, resolution/aspect-ratio conditions" : "no micro-conditions");
    printf("  blocks: %d, hidden: %d, heads: %d x %d, patch: %d, sample_size: %d, in/out channels: %d/%d\n",
           c.num_layers, c.inner, c.heads, c.head_dim, c.patch_size, c.sample_size, c.in_channels, c.out_channels);
    printf("  caption_channels: %d, interpolation_scale: %g, norm_eps: %g\n", c.caption_channels, c.interpolation_scale, c.norm_eps);
    printf("  parameters: %lld (file holds %lld)\n", (long long)params, (long long)stored);
    printf("  stored dtypes:");
    for (int t = 0; t < DT_DTYPE_COUNT; t++)
        if (counts[t]) printf(" %s=%lld", dt_dtype_name((dt_dtype)t), (long long)counts[t]);
    printf("\n  weights on disk: %.1f MB\n", dt_st_total_bytes(st) / 1e6);
    /* activations of one CFG step at the native size with 120 (alpha) / 300 (sigma) tokens */
    int g = c.sample_size / c.patch_size, T = c.use_additional_conditions ? 120 : 300;
    double M = 2.0 * g * g, C = c.inner;
    double act = 4 * (M * C * 10 + 2.0 * T * C * 3) + 4 * 2.0 * c.heads * M * M;
    printf("  estimated memory, CFG batch 2 at %dx%d px: f32 %.1f MB, bf16 %.1f MB (weights + activations)\n",
           c.sample_size * 8, c.sample_size * 8, (params * 4 + act) / 1e6, (params * 2 + act) / 1e6);
    dt_st_close(st);
    return 0;
}
