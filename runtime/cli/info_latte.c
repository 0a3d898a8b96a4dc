/* `ditrt info` for a Latte transformer (dispatched from cli_info.c on config.json's _class_name). */
#include "cli.h"
#include "runtime/models/latte.h"
#include <stdio.h>

int cli_info_latte(const char *dir)
{
    dt_err err = {0};
    latte_config c;
    dt_safetensors *st = NULL;
    if (latte_config_load(dir, &c, &err) != DT_OK || dt_st_open_dir(dir, "diffusion_pytorch_model", &st, &err) != DT_OK)
        return cli_die(&err);
    int64_t counts[DT_DTYPE_COUNT] = {0}, stored = 0;
    for (int i = 0; i < dt_st_count(st); i++) {
        const dt_st_entry *e = dt_st_at(st, i);
        int64_t n = (int64_t)(e->nbytes / dt_dtype_size(e->dtype));
        counts[e->dtype] += n;
        stored += n;
    }
    int64_t params = latte_param_count(&c);
    printf("transformer: %s\n", dir);
    printf("  architecture: LatteTransformer3DModel (spatial + temporal DiT blocks)\n");
    printf("  layers: %d (x2 blocks), hidden: %d, heads: %d x %d, patch: %d, sample_size: %d, in/out channels: %d/%d\n",
           c.num_layers, c.inner, c.heads, c.head_dim, c.patch_size, c.sample_size, c.in_channels, c.out_channels);
    printf("  video_length: %d, caption_channels: %d, interpolation_scale: %g, norm_eps: %g\n", c.video_length,
           c.caption_channels, c.interpolation_scale, c.norm_eps);
    printf("  parameters: %lld (file holds %lld)\n", (long long)params, (long long)stored);
    printf("  stored dtypes:");
    for (int t = 0; t < DT_DTYPE_COUNT; t++)
        if (counts[t]) printf(" %s=%lld", dt_dtype_name((dt_dtype)t), (long long)counts[t]);
    printf("\n  weights on disk: %.1f MB\n", dt_st_total_bytes(st) / 1e6);
    dt_st_close(st);
    return 0;
}
