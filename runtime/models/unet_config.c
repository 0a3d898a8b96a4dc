/* UNet2DConditionModel config.json: what diffusers' __init__ reads, the options ditrt runs,
 * and the bounds checked before anything is sized from them (unet.h). Options ditrt does not
 * run are refused naming the field rather than ignored. */
#include "unet.h"
#include "runtime/core/json.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

/* An int or a list of n ints, each in lo..hi (diffusers broadcasts an int to every block). */
static dt_status int_or_list(const cJSON *j, const char *path, const char *field, int dflt, int n, int lo, int hi,
                             int *out, dt_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, field);
    int x;
    if (!v || cJSON_IsNull(v)) {
        for (int i = 0; i < n; i++) out[i] = dflt;
        return DT_OK;
    }
    if (cJSON_IsNumber(v)) {
        if (!dt_json_is_int_in(v, lo, hi, &x))
            return dt_fail(err, DT_EFORMAT, "%s: field \"%s\" must be an integer in %d..%d", path, field, lo, hi);
        for (int i = 0; i < n; i++) out[i] = x;
        return DT_OK;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != n)
        return dt_fail(err, DT_EFORMAT, "%s: field \"%s\" must be an integer or a list of %d (one per block)", path, field, n);
    for (int i = 0; i < n; i++)
        if (!dt_json_is_int_in(cJSON_GetArrayItem(v, i), lo, hi, &out[i]))
            return dt_fail(err, DT_EFORMAT, "%s: field \"%s\"[%d] must be an integer in %d..%d (nested lists are not supported)",
                           path, field, i, lo, hi);
    return DT_OK;
}

/* A list of n block types, each `plain` or `cross`. */
static dt_status block_types(const cJSON *j, const char *path, const char *field, const char *plain, const char *cross,
                             int n, unet_block_kind *out, dt_err *err)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, field);
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != n)
        return dt_fail(err, DT_EFORMAT, "%s: field \"%s\" must list %d block types (one per block_out_channels)", path, field, n);
    for (int i = 0; i < n; i++) {
        const cJSON *v = cJSON_GetArrayItem(a, i);
        const char *s = cJSON_IsString(v) ? v->valuestring : "";
        if (!strcmp(s, plain)) out[i] = UNET_PLAIN;
        else if (!strcmp(s, cross)) out[i] = UNET_CROSS;
        else
            return dt_fail(err, DT_EUNSUPPORTED, "%s: field \"%s\"[%d] is \"%s\", only \"%s\" and \"%s\" are supported", path,
                           field, i, cJSON_IsString(v) ? s : "(not a string)", plain, cross);
    }
    return DT_OK;
}

/* A field that must be absent, null, or the one value ditrt runs (false / 0 / a string). */
static dt_status must_be_null(const cJSON *j, const char *path, const char *field, dt_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, field);
    if (v && !cJSON_IsNull(v)) return dt_fail(err, DT_EUNSUPPORTED, "%s: field \"%s\" is set; only null is supported", path, field);
    return DT_OK;
}

static dt_status must_be_false(const cJSON *j, const char *path, const char *field, dt_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, field);
    if (cJSON_IsArray(v)) {
        for (const cJSON *e = v->child; e; e = e->next)
            if (!cJSON_IsFalse(e)) return dt_fail(err, DT_EUNSUPPORTED, "%s: field \"%s\" must be false (every entry)", path, field);
        return DT_OK;
    }
    int b;
    DT_TRY(dt_json_bool(j, path, field, 0, &b, err));
    if (b) return dt_fail(err, DT_EUNSUPPORTED, "%s: field \"%s\" is true; only false is supported", path, field);
    return DT_OK;
}

static dt_status must_be_str(const cJSON *j, const char *path, const char *field, const char *dflt, const char *a,
                             const char *b, dt_err *err)
{
    char s[64];
    DT_TRY(dt_json_str(j, path, field, dflt, s, sizeof s, err));
    if (strcmp(s, a) && (!b || strcmp(s, b)))
        return dt_fail(err, DT_EUNSUPPORTED, "%s: field \"%s\" is \"%s\", only \"%s\" is supported", path, field, s, a);
    return DT_OK;
}

static dt_status must_be_num(const cJSON *j, const char *path, const char *field, double want, dt_err *err)
{
    double d;
    DT_TRY(dt_json_num(j, path, field, 1, want, &d, err));
    if (d != want) return dt_fail(err, DT_EUNSUPPORTED, "%s: field \"%s\" is %g, only %g is supported", path, field, d, want);
    return DT_OK;
}

/* The options ditrt does not run, refused by name. */
static dt_status unsupported_options(const cJSON *j, const char *path, dt_err *err)
{
    static const char *const nulls[] = {"num_attention_heads", "encoder_hid_dim", "encoder_hid_dim_type", "class_embed_type",
                                        "num_class_embeds", "time_embedding_act_fn", "timestep_post_act", "time_cond_proj_dim",
                                        "reverse_transformer_layers_per_block", "cross_attention_norm"};
    for (size_t i = 0; i < sizeof nulls / sizeof *nulls; i++) DT_TRY(must_be_null(j, path, nulls[i], err));
    static const char *const falses[] = {"center_input_sample", "only_cross_attention", "dual_cross_attention",
                                         "resnet_skip_time_act", "class_embeddings_concat", "mid_block_only_cross_attention"};
    for (size_t i = 0; i < sizeof falses / sizeof *falses; i++) DT_TRY(must_be_false(j, path, falses[i], err));
    DT_TRY(must_be_str(j, path, "mid_block_type", "UNetMidBlock2DCrossAttn", "UNetMidBlock2DCrossAttn", NULL, err));
    DT_TRY(must_be_str(j, path, "act_fn", "silu", "silu", "swish", err));
    DT_TRY(must_be_str(j, path, "resnet_time_scale_shift", "default", "default", NULL, err));
    DT_TRY(must_be_str(j, path, "time_embedding_type", "positional", "positional", NULL, err));
    DT_TRY(must_be_str(j, path, "attention_type", "default", "default", NULL, err));
    DT_TRY(must_be_num(j, path, "mid_block_scale_factor", 1.0, err));
    return must_be_num(j, path, "resnet_out_scale_factor", 1.0, err);
}

/* sample_size may be an int or a [h, w] list (diffusers then uses the first). */
static dt_status sample_size(const cJSON *j, const char *path, int *out, dt_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "sample_size");
    if (cJSON_IsArray(v) && cJSON_GetArraySize(v) > 0) v = cJSON_GetArrayItem(v, 0);
    if (!v || cJSON_IsNull(v)) { *out = 64; return DT_OK; }
    if (!dt_json_is_int_in(v, 1, UNET_MAX_SAMPLE, out))
        return dt_fail(err, DT_EFORMAT, "%s: field \"sample_size\" must be an integer in 1..%d", path, UNET_MAX_SAMPLE);
    return DT_OK;
}

static dt_status added_embedding(const cJSON *j, const char *path, unet_config *c, dt_err *err)
{
    char s[64];
    DT_TRY(dt_json_str(j, path, "addition_embed_type", "", s, sizeof s, err));
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "addition_embed_type");
    if (!v || cJSON_IsNull(v) || !s[0]) return DT_OK;
    if (strcmp(s, "text_time"))
        return dt_fail(err, DT_EUNSUPPORTED, "%s: field \"addition_embed_type\" is \"%s\", only null and \"text_time\" are supported", path, s);
    c->text_time = 1;
    DT_TRY(dt_json_int_in(j, path, "addition_time_embed_dim", 0, 0, 2, UNET_MAX_TIME_DIM, &c->addition_time_embed_dim, err));
    DT_TRY(dt_json_int_in(j, path, "projection_class_embeddings_input_dim", 0, 0, 1, UNET_MAX_CROSS, &c->projection_dim, err));
    c->text_embeds_dim = c->projection_dim - UNET_TIME_IDS * c->addition_time_embed_dim;
    return DT_OK;
}

static dt_status parse(const cJSON *j, const char *path, unet_config *c, dt_err *err)
{
    double d;
    int b;
    *c = (unet_config){0};
    DT_TRY(unsupported_options(j, path, err));
    DT_TRY(sample_size(j, path, &c->sample_size, err));
#define INT(f, dst, dflt, lo, hi) DT_TRY(dt_json_int_in(j, path, f, 1, dflt, lo, hi, &(dst), err))
    INT("in_channels", c->in_channels, 4, 1, UNET_MAX_CHANNELS);
    INT("out_channels", c->out_channels, 4, 1, UNET_MAX_CHANNELS);
    INT("norm_num_groups", c->norm_num_groups, 32, 1, UNET_MAX_CHANNELS);
    INT("downsample_padding", c->downsample_padding, 1, 0, 1);
    INT("conv_in_kernel", c->conv_in_kernel, 3, 1, 7);
    INT("conv_out_kernel", c->conv_out_kernel, 3, 1, 7);
    INT("time_embedding_dim", c->time_embed_dim, 0, 0, UNET_MAX_TIME_DIM);
#undef INT
    const cJSON *boc = cJSON_GetObjectItemCaseSensitive(j, "block_out_channels");
    c->nblocks = cJSON_IsArray(boc) ? cJSON_GetArraySize(boc) : 0;
    if (c->nblocks < 1 || c->nblocks > UNET_MAX_BLOCKS)
        return dt_fail(err, DT_EFORMAT, "%s: field \"block_out_channels\" must be a list of 1 to %d integers", path, UNET_MAX_BLOCKS);
    int n = c->nblocks;
    DT_TRY(int_or_list(j, path, "block_out_channels", 0, n, 1, UNET_MAX_CHANNELS, c->block_out_channels, err));
    DT_TRY(block_types(j, path, "down_block_types", "DownBlock2D", "CrossAttnDownBlock2D", n, c->down, err));
    DT_TRY(block_types(j, path, "up_block_types", "UpBlock2D", "CrossAttnUpBlock2D", n, c->up, err));
    DT_TRY(int_or_list(j, path, "layers_per_block", 2, n, 1, UNET_MAX_LAYERS, c->layers_per_block, err));
    DT_TRY(int_or_list(j, path, "transformer_layers_per_block", 1, n, 1, UNET_MAX_LAYERS, c->transformer_layers, err));
    DT_TRY(int_or_list(j, path, "attention_head_dim", 8, n, 1, UNET_MAX_HEADS, c->heads, err));
    int cross[UNET_MAX_BLOCKS];
    DT_TRY(int_or_list(j, path, "cross_attention_dim", 1280, n, 1, UNET_MAX_CROSS, cross, err));
    for (int i = 1; i < n; i++) /* every block attends to the same encoder_hidden_states */
        if (cross[i] != cross[0])
            return dt_fail(err, DT_EUNSUPPORTED, "%s: field \"cross_attention_dim\" must be one value for every block", path);
    c->cross_attention_dim = cross[0];
    DT_TRY(dt_json_num(j, path, "norm_eps", 1, 1e-5, &d, err));
    c->norm_eps = (float)d;
    DT_TRY(dt_json_num(j, path, "freq_shift", 1, 0.0, &d, err));
    c->freq_shift = (float)d;
    DT_TRY(dt_json_bool(j, path, "flip_sin_to_cos", 1, &c->flip_sin_to_cos, err));
    DT_TRY(dt_json_bool(j, path, "use_linear_projection", 0, &b, err));
    c->use_linear_projection = b;
    DT_TRY(dt_json_bool(j, path, "upcast_attention", 0, &b, err));
    c->upcast_attention = b;
    if (!c->time_embed_dim) c->time_embed_dim = 4 * c->block_out_channels[0];
    return added_embedding(j, path, c, err);
}

dt_status unet_config_validate(const unet_config *c, const char *what, dt_err *err)
{
#define CHECK(cond, ...) if (!(cond)) return dt_fail(err, DT_EFORMAT, __VA_ARGS__)
    CHECK(c->nblocks >= 1 && c->nblocks <= UNET_MAX_BLOCKS, "%s: \"block_out_channels\" must list 1 to %d blocks", what, UNET_MAX_BLOCKS);
    CHECK(c->in_channels >= 1 && c->in_channels <= UNET_MAX_CHANNELS && c->out_channels >= 1 && c->out_channels <= UNET_MAX_CHANNELS,
          "%s: \"in_channels\"/\"out_channels\" must lie in 1..%d", what, UNET_MAX_CHANNELS);
    CHECK(c->norm_num_groups >= 1, "%s: \"norm_num_groups\" must be positive", what);
    CHECK(c->cross_attention_dim >= 1 && c->cross_attention_dim <= UNET_MAX_CROSS, "%s: \"cross_attention_dim\" must lie in 1..%d", what, UNET_MAX_CROSS);
    CHECK(c->time_embed_dim >= 1 && c->time_embed_dim <= UNET_MAX_TIME_DIM, "%s: \"time_embedding_dim\" (or 4 * block_out_channels[0]) must lie in 1..%d",
          what, UNET_MAX_TIME_DIM);
    CHECK(c->conv_in_kernel % 2 == 1 && c->conv_out_kernel % 2 == 1, "%s: \"conv_in_kernel\"/\"conv_out_kernel\" must be odd", what);
    CHECK(c->block_out_channels[0] % 2 == 0, "%s: \"block_out_channels\"[0] must be even (the timestep sinusoids)", what);
    CHECK(isfinite(c->norm_eps) && c->norm_eps > 0, "%s: \"norm_eps\" must be a positive number", what);
    CHECK(isfinite(c->freq_shift) && c->freq_shift < c->block_out_channels[0] / 2, "%s: \"freq_shift\" must be below half of block_out_channels[0]", what);
    for (int i = 0; i < c->nblocks; i++) {
        int C = c->block_out_channels[i];
        CHECK(C >= 1 && C <= UNET_MAX_CHANNELS, "%s: \"block_out_channels\"[%d] must lie in 1..%d", what, i, UNET_MAX_CHANNELS);
        CHECK(C % c->norm_num_groups == 0, "%s: \"block_out_channels\"[%d] = %d is not a multiple of \"norm_num_groups\" %d", what, i, C,
              c->norm_num_groups);
        CHECK(c->layers_per_block[i] >= 1 && c->layers_per_block[i] <= UNET_MAX_LAYERS, "%s: \"layers_per_block\"[%d] must lie in 1..%d", what, i,
              UNET_MAX_LAYERS);
        CHECK(c->transformer_layers[i] >= 1 && c->transformer_layers[i] <= UNET_MAX_LAYERS,
              "%s: \"transformer_layers_per_block\"[%d] must lie in 1..%d", what, i, UNET_MAX_LAYERS);
        CHECK(c->heads[i] >= 1 && c->heads[i] <= UNET_MAX_HEADS && C % c->heads[i] == 0,
              "%s: \"attention_head_dim\"[%d] (heads) = %d must divide block_out_channels[%d] = %d", what, i, c->heads[i], i, C);
    }
    if (c->text_time) {
        CHECK(c->addition_time_embed_dim >= 2 && c->addition_time_embed_dim % 2 == 0 && c->addition_time_embed_dim <= UNET_MAX_TIME_DIM,
              "%s: \"addition_time_embed_dim\" must be an even integer in 2..%d", what, UNET_MAX_TIME_DIM);
        CHECK(c->text_embeds_dim >= 1 && c->projection_dim <= UNET_MAX_CROSS,
              "%s: \"projection_class_embeddings_input_dim\" %d leaves no room for text_embeds after 6 x addition_time_embed_dim %d",
              what, c->projection_dim, c->addition_time_embed_dim);
    }
#undef CHECK
    return DT_OK;
}

dt_status unet_config_load(const char *dir, unet_config *c, dt_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    cJSON *j;
    DT_TRY(dt_json_load(path, &j, err));
    dt_status st = parse(j, path, c, err);
    cJSON_Delete(j);
    return st == DT_OK ? unet_config_validate(c, path, err) : st;
}

static unet_config base(int sample_size)
{
    unet_config c = {.sample_size = sample_size, .in_channels = 4, .out_channels = 4, .nblocks = 4, .norm_num_groups = 32,
                     .norm_eps = 1e-5f, .flip_sin_to_cos = 1, .downsample_padding = 1, .conv_in_kernel = 3, .conv_out_kernel = 3};
    for (int i = 0; i < UNET_MAX_BLOCKS; i++) c.layers_per_block[i] = 2, c.transformer_layers[i] = 1;
    return c;
}

unet_config unet_config_sd15(int sample_size)
{
    unet_config c = base(sample_size);
    int boc[4] = {320, 640, 1280, 1280};
    for (int i = 0; i < 4; i++) {
        c.block_out_channels[i] = boc[i];
        c.heads[i] = 8;
        c.down[i] = i < 3 ? UNET_CROSS : UNET_PLAIN;
        c.up[i] = i > 0 ? UNET_CROSS : UNET_PLAIN;
    }
    c.cross_attention_dim = 768;
    c.time_embed_dim = 1280;
    return c;
}

unet_config unet_config_sdxl(int sample_size)
{
    unet_config c = base(sample_size);
    int boc[3] = {320, 640, 1280}, heads[3] = {5, 10, 20}, tl[3] = {1, 2, 10};
    c.nblocks = 3;
    for (int i = 0; i < 3; i++) {
        c.block_out_channels[i] = boc[i];
        c.heads[i] = heads[i];
        c.transformer_layers[i] = tl[i];
        c.down[i] = i > 0 ? UNET_CROSS : UNET_PLAIN;
        c.up[i] = i < 2 ? UNET_CROSS : UNET_PLAIN;
    }
    c.cross_attention_dim = 2048;
    c.time_embed_dim = 1280;
    c.use_linear_projection = 1;
    c.text_time = 1;
    c.addition_time_embed_dim = 256;
    c.projection_dim = 2816;
    c.text_embeds_dim = 1280;
    return c;
}
