/* Latte transformer: loading and the forward pass, written out as diffusers computes it
 * (latte_transformer_3d.py; blocks in dit_block.c, shared layers in dit_common.c). */
#include "latte.h"
#include "dit_block.h"
#include "dit_common.h"
#include "runtime/core/json.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct latte_model {
    latte_config cfg;
    dt_backend *be;
    dt_linear *patch, *proj_out;
    dit_adaln_single ada;
    dit_caption_proj cap;
    float *sst_out;            /* [2, C] */
    dit_block *spatial, *temporal;
    dit_block_shape sshape, tshape;
    dit_pos_cache pos;         /* 2-D position embedding of the last patch grid (backend memory) */
    float *tpos;               /* temporal position embedding [video_length, C] (backend memory) */
    dt_stage stage;            /* host staging for the sinusoids and the key mask */
    dit_attn_hook *hook;       /* self-attention of both kinds of block, or NULL */
    const latte_resume *resume; /* calibration's partial forwards, or NULL */
};

/* ---- config ---- */

static dt_status check_str(const cJSON *j, const char *path, const char *field, const char *dflt, const char *want, dt_err *err)
{
    char s[64];
    DT_TRY(dt_json_str(j, path, field, dflt, s, sizeof s, err));
    if (strcmp(s, want))
        return dt_fail(err, DT_EUNSUPPORTED, "%s: field \"%s\" is \"%s\", only \"%s\" is supported", path, field, s, want);
    return DT_OK;
}

static dt_status read_config(const cJSON *j, const char *path, latte_config *c, int *cross, int *bias, int *affine, dt_err *err)
{
    double d;
#define INT(f, dst, has, dflt, lo, hi) DT_TRY(dt_json_int_in(j, path, f, has, dflt, lo, hi, &(dst), err))
    INT("sample_size", c->sample_size, 1, 64, 1, DIT_MAX_SAMPLE);
    INT("patch_size", c->patch_size, 0, 0, 1, DIT_MAX_PATCH);
    INT("in_channels", c->in_channels, 0, 0, 1, DIT_MAX_CHANNELS);
    INT("out_channels", c->out_channels, 1, -1, -1, DIT_MAX_CHANNELS);
    INT("num_layers", c->num_layers, 1, 1, 1, DIT_MAX_LAYERS);
    INT("num_attention_heads", c->heads, 1, 16, 1, DIT_MAX_HEADS);
    INT("attention_head_dim", c->head_dim, 1, 88, 1, DIT_MAX_HEAD_DIM);
    INT("cross_attention_dim", *cross, 1, -1, -1, DIT_MAX_INNER);
    INT("caption_channels", c->caption_channels, 0, 0, 1, DIT_MAX_CAPTION);
    INT("video_length", c->video_length, 1, 16, 1, DIT_MAX_FRAMES);
#undef INT
    DT_TRY(dt_json_num(j, path, "norm_eps", 1, 1e-5, &d, err));
    c->norm_eps = (float)d;
    DT_TRY(dt_json_bool(j, path, "attention_bias", 0, bias, err));
    DT_TRY(dt_json_bool(j, path, "norm_elementwise_affine", 1, affine, err));
    DT_TRY(check_str(j, path, "_class_name", "LatteTransformer3DModel", "LatteTransformer3DModel", err));
    DT_TRY(check_str(j, path, "norm_type", "layer_norm", "ada_norm_single", err));
    return check_str(j, path, "activation_fn", "geglu", "gelu-approximate", err);
}

dt_status latte_config_load(const char *dir, latte_config *c, dt_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    cJSON *j;
    DT_TRY(dt_json_load(path, &j, err));
    *c = (latte_config){0};
    int cross = -1, bias = 0, affine = 1;
    dt_status st = read_config(j, path, c, &cross, &bias, &affine, err);
    cJSON_Delete(j);
    if (st != DT_OK) return st;
    if (c->heads * c->head_dim > DIT_MAX_INNER) /* both bounded: no overflow */
        return dt_fail(err, DT_EFORMAT, "%s: num_attention_heads * attention_head_dim is %d, above the supported %d", path,
                       c->heads * c->head_dim, DIT_MAX_INNER);
    c->inner = c->heads * c->head_dim;
    if (c->out_channels < 0) c->out_channels = c->in_channels;
    if (cross < 0) cross = c->inner;
    c->interpolation_scale = c->sample_size / 64 > 1 ? (float)(c->sample_size / 64) : 1.0f;
#define CHECK(cond, ...) if (!(cond)) return dt_fail(err, DT_EFORMAT, __VA_ARGS__)
    CHECK(bias, "%s: field \"attention_bias\" must be true", path);
    CHECK(!affine, "%s: field \"norm_elementwise_affine\" must be false (ada_norm_single)", path);
    CHECK(c->sample_size > 0 && c->patch_size > 0 && c->sample_size % c->patch_size == 0,
          "%s: \"sample_size\" must be a positive multiple of \"patch_size\"", path);
    CHECK(c->in_channels > 0 && c->out_channels > 0, "%s: channel counts must be positive", path);
    CHECK(c->num_layers > 0 && c->heads > 0 && c->head_dim > 0, "%s: num_layers, num_attention_heads and attention_head_dim must be positive", path);
    CHECK(c->inner % 4 == 0, "%s: heads * head_dim must be a multiple of 4 (2-D sin-cos position embedding)", path);
    CHECK(c->caption_channels > 0, "%s: \"caption_channels\" must be positive", path);
    CHECK(c->video_length > 0, "%s: \"video_length\" must be positive", path);
    CHECK(cross == c->inner, "%s: \"cross_attention_dim\" (%d) must equal heads * head_dim (%d)", path, cross, c->inner);
#undef CHECK
    return DT_OK;
}

latte_config latte_config_1(int sample_size)
{
    latte_config c = {.sample_size = sample_size, .patch_size = 2, .in_channels = 4, .out_channels = 8,
                      .num_layers = 28, .heads = 16, .head_dim = 72, .inner = 1152,
                      .caption_channels = 4096, .video_length = 16, .norm_eps = 1e-6f};
    c.interpolation_scale = sample_size / 64 > 1 ? (float)(sample_size / 64) : 1.0f;
    return c;
}

int64_t latte_param_count(const latte_config *c)
{
    int64_t C = c->inner, p2 = (int64_t)c->patch_size * c->patch_size;
    int64_t n = C * c->in_channels * p2 + C;                                  /* patch embed */
    n += (DIT_TPROJ_DIM * C + C) + (C * C + C) + 6 * C * C + 6 * C;           /* adaln_single */
    n += (int64_t)c->caption_channels * C + C + C * C + C;                     /* caption projection */
    int64_t attn = 4 * (C * C + C), mlp = (C * 4 * C + 4 * C) + (4 * C * C + C);
    n += (int64_t)c->num_layers * ((6 * C + 2 * attn + mlp) + (6 * C + attn + mlp));
    n += 2 * C + C * p2 * c->out_channels + p2 * c->out_channels;             /* final */
    return n;
}

double latte_matmul_flops(const latte_config *c, int B, int F, int h, int w, int T)
{
    double C = c->inner, N = (double)h * w, S = (double)B * F, M = S * N, p2 = (double)c->patch_size * c->patch_size;
    double mlp = 2 * M * C * 4 * C * 2, self = 2 * M * C * 3 * C + 2 * M * C * C;
    double spatial = self + 2 * S * N * N * C * 2                       /* QK^T, PV per frame */
                   + 2 * M * C * C * 2 + 2 * S * T * C * 2 * C + 2 * S * N * T * C * 2 + mlp;
    double temporal = self + 2 * (double)B * N * F * F * C * 2 + mlp;
    double other = 2 * M * c->in_channels * p2 * C + 2 * M * C * p2 * c->out_channels
                 + 2 * (double)B * T * (c->caption_channels * C + C * C);
    return (spatial + temporal) * c->num_layers + other;
}

/* ---- loading ---- */

static dt_status build(latte_model *m, dt_weight_source *src, dt_err *err)
{
    const latte_config *c = &m->cfg;
    dt_backend *be = m->be;
    int C = c->inner, g = c->sample_size / c->patch_size, F = c->video_length;
    int tok_hint = 2 * F * g * g, cap_hint = 2 * F * 120;
    dt_dtype cd = be->cfg.compute;
    DT_TRY(dit_patch_embed_load(be, src, &dit_diffusers_names, c->in_channels, c->patch_size, C, tok_hint, &m->patch, err));
    DT_TRY(dit_adaln_load(be, src, &dit_diffusers_names, C, &m->ada, err));
    DT_TRY(dit_caption_load(be, src, &dit_diffusers_names, c->caption_channels, C, 2 * 120, cd, &m->cap, err));
    m->sshape = (dit_block_shape){C, c->heads, c->head_dim, c->norm_eps, 1, tok_hint, cap_hint, cd};
    m->tshape = m->sshape;
    m->tshape.cross = 0;
    for (int i = 0; i < c->num_layers; i++) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "transformer_blocks.%d", i);
        DT_TRY(dit_block_load(be, src, prefix, &m->sshape, &m->spatial[i], err));
        snprintf(prefix, sizeof prefix, "temporal_transformer_blocks.%d", i);
        DT_TRY(dit_block_load(be, src, prefix, &m->tshape, &m->temporal[i], err));
    }
    DT_TRY(dt_load_param_dev(be, src, "scale_shift_table", 2, (int64_t[]){2, C}, &m->sst_out, err));
    DT_TRY(dt_load_linear1(be, src, "proj_out", C, c->patch_size * c->patch_size * c->out_channels, 1,
                           DT_ACT_NONE, tok_hint, cd, &m->proj_out, err));
    float *tpos = malloc((size_t)F * C * sizeof(float));
    if (!tpos) return dt_fail(err, DT_ENOMEM, "out of memory");
    for (int f = 0; f < F; f++) dit_sincos_row(C, f, tpos + (size_t)f * C); /* get_1d_sincos_pos_embed */
    dt_status s = dt_backend_upload(be, tpos, (size_t)F * C, &m->tpos, err);
    free(tpos);
    return s;
}

dt_status latte_create(dt_backend *be, const latte_config *cfg, dt_weight_source *src, latte_model **out, dt_err *err)
{
    latte_model *m = calloc(1, sizeof *m);
    if (!m) return dt_fail(err, DT_ENOMEM, "out of memory");
    m->cfg = *cfg;
    m->be = be;
    m->spatial = calloc((size_t)cfg->num_layers, sizeof *m->spatial);
    m->temporal = calloc((size_t)cfg->num_layers, sizeof *m->temporal);
    dt_status st = m->spatial && m->temporal ? build(m, src, err) : dt_fail(err, DT_ENOMEM, "out of memory");
    if (st != DT_OK) { latte_free(m); return st; }
    *out = m;
    return DT_OK;
}

dt_status latte_load(dt_backend *be, const char *dir, latte_model **out, dt_err *err)
{
    latte_config cfg;
    DT_TRY(latte_config_load(dir, &cfg, err));
    dt_safetensors *st;
    DT_TRY(dt_st_open_dir(dir, "diffusion_pytorch_model", &st, err));
    dt_weight_source src = dt_weights_from_file(st);
    dt_status s = latte_create(be, &cfg, &src, out, err);
    dt_weights_close(&src);
    dt_st_close(st);
    return s;
}

void latte_free(latte_model *m)
{
    if (!m) return;
    m->be->ops->linear_destroy(m->patch);
    m->be->ops->linear_destroy(m->proj_out);
    dit_adaln_free(m->be, &m->ada);
    dit_caption_free(m->be, &m->cap);
    for (int i = 0; i < m->cfg.num_layers; i++) {
        if (m->spatial) dit_block_free(m->be, &m->spatial[i]);
        if (m->temporal) dit_block_free(m->be, &m->temporal[i]);
    }
    free(m->spatial);
    free(m->temporal);
    dt_free_param(m->be, m->sst_out);
    dit_pos_free(m->be, &m->pos);
    dt_free_param(m->be, m->tpos);
    dt_stage_free(&m->stage);
    free(m);
}

const latte_config *latte_get_config(const latte_model *m) { return &m->cfg; }
void latte_set_attn_hook(latte_model *m, dit_attn_hook *hook) { m->hook = hook; }
void latte_set_resume(latte_model *m, const latte_resume *r) { m->resume = r; }

/* ---- forward ---- */

static dt_status position_embedding(latte_model *m, int h, int w, dt_err *err)
{
    const latte_config *c = &m->cfg;
    return dit_pos_embed(m->be, c->inner, h, w, c->sample_size / c->patch_size, c->interpolation_scale, &m->pos, err);
}

/* *out [B·reps, width] (arena): rows[b·reps + r] = t[b] for a [B, width] table. */
static dt_status repeat_rows(dt_backend *be, dt_arena *a, const float *t, int B, int reps, int width, float **out, dt_err *err)
{
    dt_tensor y, x = dit_t2d((float *)t, B, width);
    DT_TRY(dit_alloc2(a, &y, (int64_t)B * reps, width, err));
    *out = y.data;
    return be->ops->repeat_rows(be, &x, reps, &y, err);
}

typedef struct {
    int B, F, N, T, C;
    dt_tensor *x, *xt;   /* [B·F·N, C] spatial order, and the temporal-order buffer */
    dt_tensor *ctx;      /* [B·F·T, C] */
    float *key_bias, *t6s, *t6t;
    dit_scratch *s;
} latte_run;

/* Blocks in execution order e = 0..2L-1: spatial block e/2 (even e, stream x in frame order)
 * and temporal block e/2 (odd e, stream xt in token order, entered through a transpose and,
 * before the first one, the temporal position embedding). */
static dt_status layers(latte_model *m, latte_run *r, dt_arena *a, dt_err *err)
{
    dt_backend *be = m->be;
    int B = r->B, F = r->F, N = r->N, C = r->C, L = m->cfg.num_layers;
    dt_attn_bias cross_bias = {.key = r->key_bias};
    const latte_resume *rs = m->resume;
    int from = rs ? rs->from : 0;
    size_t count = (size_t)B * F * N * C;
    for (int e = from; e < 2 * L; e++) {
        int i = e / 2, temporal = e % 2;
        dt_tensor *cur = temporal ? r->xt : r->x;
        if (rs && e == from && from > 0) DT_TRY(dt_backend_write(be, cur->data, rs->load, count, err));
        else if (temporal) {
            DT_TRY(dit_swap_axes(be, r->x->data, r->xt->data, B, F, N, C, err));
            if (i == 0 && F > 1) {
                dt_tensor tp = dit_t2d(m->tpos, F, C);
                DT_TRY(be->ops->add_rows(be, r->xt, &tp, r->xt, err));
            }
        } else if (e > 0) DT_TRY(dit_swap_axes(be, r->xt->data, r->x->data, B, N, F, C, err));
        if (rs && rs->save && e == rs->save_at) DT_TRY(dt_backend_read(be, cur->data, rs->save, count, err));
        if (temporal) {
            dit_block_args ta = {be, L + i, r->t6t, B * N, F, 0, r->xt, NULL, NULL, r->s, a, m->hook};
            DT_TRY(dit_block_forward(&m->temporal[i], &m->tshape, &ta, err));
        } else {
            dit_block_args sa = {be, i, r->t6s, B * F, N, r->T, r->x, r->ctx, &cross_bias, r->s, a, m->hook};
            DT_TRY(dit_block_forward(&m->spatial[i], &m->sshape, &sa, err));
        }
    }
    return dit_swap_axes(be, r->xt->data, r->x->data, B, N, F, C, err); /* the last block is temporal */
}

static void info_of(const latte_config *c, dt_denoiser_info *d);

dt_status latte_forward(latte_model *m, const latte_inputs *in, dt_arena *a, dt_tensor *out, dt_err *err)
{
    const latte_config *c = &m->cfg;
    dt_backend *be = m->be;
    dt_denoiser_info info;
    info_of(c, &info);
    DT_TRY(dit_video_check(&info, "video_length", in, out, err));
    dit_video_dims d = dit_video_dims_of(in, c->patch_size);
    int B = d.B, F = d.F, N = d.N, T = d.T, S = d.S, C = c->inner;

    /* frames as images, patch embedding + 2-D position embedding */
    dt_tensor x, xt;
    DT_TRY(position_embedding(m, d.h, d.w, err));
    DT_TRY(dit_video_embed(be, &d, in->hidden_states, m->patch, C, m->pos.dev, a, &x, err));
    DT_TRY(dit_alloc2(a, &xt, d.M, C, err));

    /* timestep conditioning, repeated per frame (spatial) and per patch (temporal) */
    dt_tensor emb, t6, ctx1, ctx;
    DT_TRY(dit_timestep_embed(be, &m->ada, in->timestep, B, C, a, &m->stage, &emb, err));
    DT_TRY(dit_adaln_out(be, &m->ada, &emb, C, a, &t6, err));
    float *t6s, *t6t, *embs;
    DT_TRY(repeat_rows(be, a, t6.data, B, F, 6 * C, &t6s, err));
    DT_TRY(repeat_rows(be, a, t6.data, B, N, 6 * C, &t6t, err));
    DT_TRY(repeat_rows(be, a, emb.data, B, F, C, &embs, err));

    /* caption: projected once, repeated per frame (diffusers' repeat_interleave) */
    DT_TRY(dit_alloc2(a, &ctx1, (int64_t)B * T, C, err));
    dt_tensor ehs = dit_t2d(in->encoder_hidden_states->data, (int64_t)B * T, c->caption_channels);
    DT_TRY(dit_caption_forward(be, &m->cap, &ehs, C, a, &ctx1, err));
    float *cr;
    DT_TRY(repeat_rows(be, a, ctx1.data, B, F, T * C, &cr, err));
    ctx = dit_t2d(cr, (int64_t)S * T, C);
    float *key_bias;
    DT_TRY(dit_key_bias(be, in->encoder_attention_mask, B, F, T, a, &m->stage, &key_bias, err));

    dit_scratch s;
    DT_TRY(dit_scratch_alloc(a, d.M, (int64_t)S * T, S > B * N ? S : B * N, C, &s, err));
    latte_run r = {B, F, N, T, C, &x, &xt, &ctx, key_bias, t6s, t6t, &s};
    DT_TRY(layers(m, &r, a, err));

    /* final layer per frame, unpatchify, back to [B, C, F, H, W] */
    dit_final_args fa = {m->sst_out, embs, S, N, C, c->norm_eps, &x, &s.xn, NULL, s.mod, m->proj_out};
    return dit_video_final(be, &d, &fa, a, out, err);
}

/* ---- the denoiser interface (denoiser.h) ---- */

static void info_of(const latte_config *c, dt_denoiser_info *d)
{
    *d = (dt_denoiser_info){.class_name = "LatteTransformer3DModel", .latent_rank = 5, .in_channels = c->in_channels,
                            .out_channels = c->out_channels, .sample_size = c->sample_size, .patch_size = c->patch_size,
                            .caption_channels = c->caption_channels, .max_frames = c->video_length,
                            .spatial_layers = c->num_layers, .temporal_layers = c->num_layers, .inner = c->inner,
                            .param_count = latte_param_count(c)};
}

dt_status latte_inputs_load(const char *file, const latte_config *cfg, latte_input_file *x, dt_err *err)
{
    dt_denoiser_info info;
    info_of(cfg, &info);
    return dt_denoiser_inputs_load(file, &info, x, err);
}

static dt_status den_describe(const char *dir, dt_denoiser_info *info, char *head, char *tail, size_t n, dt_err *err)
{
    latte_config c;
    DT_TRY(latte_config_load(dir, &c, err));
    info_of(&c, info);
    snprintf(head, n,
             "  architecture: LatteTransformer3DModel (spatial + temporal DiT blocks)\n"
             "  layers: %d (x2 blocks), hidden: %d, heads: %d x %d, patch: %d, sample_size: %d, in/out channels: %d/%d\n"
             "  video_length: %d, caption_channels: %d, interpolation_scale: %g, norm_eps: %g\n",
             c.num_layers, c.inner, c.heads, c.head_dim, c.patch_size, c.sample_size, c.in_channels, c.out_channels,
             c.video_length, c.caption_channels, c.interpolation_scale, c.norm_eps);
    if (n) tail[0] = 0;
    return DT_OK;
}

static dt_status den_create(dt_backend *be, const char *dir, int sample_size, int layers, dt_weight_source *src,
                            void **model, dt_err *err)
{
    latte_config c;
    if (dir) DT_TRY(latte_config_load(dir, &c, err));
    else c = latte_config_1(sample_size);
    if (layers > 0) c.num_layers = layers;
    return latte_create(be, &c, src, (latte_model **)model, err);
}

static void den_info(const void *m, dt_denoiser_info *out) { info_of(&((const latte_model *)m)->cfg, out); }
static dt_status den_forward(void *m, const dt_denoiser_inputs *in, dt_arena *a, dt_tensor *out, dt_err *err)
{
    return latte_forward(m, in, a, out, err);
}
static void den_set_hook(void *m, dit_attn_hook *h) { latte_set_attn_hook(m, h); }
static void den_set_resume(void *m, const dt_denoiser_resume *r) { latte_set_resume(m, r); }

/* The buffers latte_forward allocates plus the attention score blocks. */
static double den_step_bytes(const void *m, int rows, int F, int h, int w, int T)
{
    const latte_config *c = &((const latte_model *)m)->cfg;
    double N = (double)(h / c->patch_size) * (w / c->patch_size), C = c->inner, M = (double)rows * F * N;
    double po = (double)c->out_channels * c->patch_size * c->patch_size;
    return 4 * (M * (13 * C + 2.0 * c->in_channels * c->patch_size * c->patch_size + 2 * po)
                + (double)rows * F * T * 4 * C + (double)rows * (F + N) * 6 * C) + 48e6;
}

static double den_flops(const void *m, int batch, int frames, int h, int w, int T)
{
    return latte_matmul_flops(&((const latte_model *)m)->cfg, batch, frames, h, w, T);
}

/* What ViDiT-Q quantizes, by diffusers names: every linear of transformer_blocks.* and
 * temporal_transformer_blocks.* (the temporal group); the fused attn2.to_k|to_v (named by
 * to_k) projects the caption (MixDQ's float text tokens). */
static unsigned den_linear_role(const char *name)
{
    static const char kv[] = ".attn2.to_k";
    size_t n = strlen(name), k = sizeof kv - 1;
    unsigned r = !strncmp(name, "temporal_transformer_blocks.", 28) ? DT_LINEAR_QUANTIZABLE | DT_LINEAR_TEMPORAL
               : !strncmp(name, "transformer_blocks.", 19)          ? DT_LINEAR_QUANTIZABLE
                                                                      : 0;
    return r && n > k && !strcmp(name + n - k, kv) ? r | DT_LINEAR_TEXT_KV : r;
}

static void den_free(void *m) { latte_free(m); }

/* LattePipeline (pipeline_latte.py of diffusers 0.30.3): encode_prompt's fixed 120 tokens with
 * mask_feature, 1 / scaling_factor * latents, decode_chunk_size 14. */
static const dt_pipeline_class pipelines[] = {
    {.name = "LattePipeline", .max_len = 120, .fixed_len = 1, .mask_feature = 1, .decode_reciprocal = 1, .decode_chunk = 14},
};

const dt_denoiser_class dt_latte_class = {
    .class_name = "LatteTransformer3DModel", .preset = "latte-1", .pipelines = pipelines, .npipelines = 1, .describe = den_describe, .create = den_create,
    .info = den_info, .forward = den_forward, .set_attn_hook = den_set_hook, .set_resume = den_set_resume,
    .step_bytes = den_step_bytes, .matmul_flops = den_flops, .free = den_free,
    .linear_role = den_linear_role,
};
