/* PixArt transformer: loading and the forward pass, written out as diffusers computes it
 * (transformer_2d / pixart_transformer_2d.py, attention.py BasicTransformerBlock with
 * norm_type "ada_norm_single"). */
#include "pixart.h"
#include "dit_block.h"
#include "dit_common.h"
#include "runtime/core/json.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TPROJ_DIM DIT_TPROJ_DIM

struct pixart_model {
    pixart_config cfg;
    dt_backend *be;
    dt_linear *patch, *res1, *res2, *ar1, *ar2, *proj_out;
    dit_adaln_single ada;   /* timestep embedder and adaln_single.linear */
    dit_caption_proj cap;
    float *sst_out; /* [2, C] */
    dit_block *blocks;
    dit_block_shape shape;
    dit_attn_hook *hook;
    const pixart_resume *resume; /* calibration's partial forwards, or NULL */
    dit_pos_cache pos;           /* position embedding of the last patch grid (backend memory) */
    dt_stage stage;              /* host staging for the sinusoids and the key mask */
};

/* ---- config ---- */

dt_status pixart_config_load(const char *dir, pixart_config *c, dt_err *err)
{
    char path[4096], s[64];
    snprintf(path, sizeof path, "%s/config.json", dir);
    cJSON *j;
    DT_TRY(dt_json_load(path, &j, err));
    dt_status st = DT_OK;
    double d;
    int b;
    *c = (pixart_config){0};
#define INT(f, dst, has, dflt, lo, hi) if (st == DT_OK) st = dt_json_int_in(j, path, f, has, dflt, lo, hi, &(dst), err)
    INT("sample_size", c->sample_size, 0, 0, 1, DIT_MAX_SAMPLE);
    INT("patch_size", c->patch_size, 0, 0, 1, DIT_MAX_PATCH);
    INT("in_channels", c->in_channels, 1, 4, 1, DIT_MAX_CHANNELS);
    INT("out_channels", c->out_channels, 1, -1, -1, DIT_MAX_CHANNELS);
    INT("num_layers", c->num_layers, 0, 0, 1, DIT_MAX_LAYERS);
    INT("num_attention_heads", c->heads, 0, 0, 1, DIT_MAX_HEADS);
    INT("attention_head_dim", c->head_dim, 0, 0, 1, DIT_MAX_HEAD_DIM);
    INT("cross_attention_dim", c->cross_attention_dim, 1, -1, -1, DIT_MAX_INNER);
    INT("caption_channels", c->caption_channels, 0, 0, 1, DIT_MAX_CAPTION);
#undef INT
    if (st == DT_OK) st = dt_json_num(j, path, "norm_eps", 1, 1e-6, &d, err);
    c->norm_eps = (float)d;
    if (st == DT_OK) st = dt_json_num(j, path, "interpolation_scale", 1, -1.0, &d, err);
    c->interpolation_scale = (float)d;
    if (st == DT_OK) st = dt_json_bool(j, path, "use_additional_conditions", -1, &b, err);
    c->use_additional_conditions = b;
    if (st == DT_OK) st = dt_json_str(j, path, "norm_type", "ada_norm_single", s, sizeof s, err);
    if (st == DT_OK && strcmp(s, "ada_norm_single"))
        st = dt_fail(err, DT_EUNSUPPORTED, "%s: field \"norm_type\" is \"%s\", only \"ada_norm_single\" is supported", path, s);
    if (st == DT_OK) st = dt_json_str(j, path, "activation_fn", "gelu-approximate", s, sizeof s, err);
    if (st == DT_OK && strcmp(s, "gelu-approximate"))
        st = dt_fail(err, DT_EUNSUPPORTED, "%s: field \"activation_fn\" is \"%s\", only \"gelu-approximate\" is supported", path, s);
    if (st == DT_OK) st = dt_json_bool(j, path, "attention_bias", 1, &b, err);
    if (st == DT_OK && !b) st = dt_fail(err, DT_EUNSUPPORTED, "%s: field \"attention_bias\" must be true", path);
    cJSON_Delete(j);
    if (st != DT_OK) return st;

    if (c->heads * c->head_dim > DIT_MAX_INNER) /* both bounded: no overflow */
        return dt_fail(err, DT_EFORMAT, "%s: num_attention_heads * attention_head_dim is %d, above the supported %d", path,
                       c->heads * c->head_dim, DIT_MAX_INNER);
    c->inner = c->heads * c->head_dim;
    if (c->out_channels < 0) c->out_channels = c->in_channels;
    if (c->cross_attention_dim < 0) c->cross_attention_dim = c->inner;
    if (c->interpolation_scale <= 0) c->interpolation_scale = c->sample_size / 64 > 1 ? (float)(c->sample_size / 64) : 1.0f;
    if (c->use_additional_conditions < 0) c->use_additional_conditions = c->sample_size == 128;
#define CHECK(cond, ...) if (!(cond)) return dt_fail(err, DT_EFORMAT, __VA_ARGS__)
    CHECK(c->sample_size > 0 && c->patch_size > 0 && c->sample_size % c->patch_size == 0,
          "%s: \"sample_size\" must be a positive multiple of \"patch_size\"", path);
    CHECK(c->in_channels > 0 && c->out_channels > 0, "%s: channel counts must be positive", path);
    CHECK(c->num_layers > 0 && c->heads > 0 && c->head_dim > 0, "%s: num_layers, num_attention_heads and attention_head_dim must be positive", path);
    CHECK(c->inner % 4 == 0, "%s: heads * head_dim must be a multiple of 4 (2-D sin-cos position embedding)", path);
    CHECK(c->caption_channels > 0, "%s: \"caption_channels\" must be positive", path);
    CHECK(c->cross_attention_dim == c->inner, "%s: \"cross_attention_dim\" (%d) must equal heads * head_dim (%d)", path, c->cross_attention_dim, c->inner);
    CHECK(!c->use_additional_conditions || c->inner % 3 == 0, "%s: use_additional_conditions needs heads * head_dim divisible by 3", path);
#undef CHECK
    return DT_OK;
}

pixart_config pixart_config_xl2(int sample_size)
{
    pixart_config c = {.sample_size = sample_size, .patch_size = 2, .in_channels = 4, .out_channels = 8,
                       .num_layers = 28, .heads = 16, .head_dim = 72, .inner = 1152,
                       .cross_attention_dim = 1152, .caption_channels = 4096,
                       .use_additional_conditions = sample_size == 128, .norm_eps = 1e-6f};
    c.interpolation_scale = sample_size / 64 > 1 ? (float)(sample_size / 64) : 1.0f;
    return c;
}

int64_t pixart_param_count(const pixart_config *c)
{
    int64_t C = c->inner, p2 = (int64_t)c->patch_size * c->patch_size;
    int64_t n = C * c->in_channels * p2 + C;                          /* patch embed */
    n += (TPROJ_DIM * C + C) + (C * C + C) + 6 * C * C + 6 * C;       /* timestep embedder, adaln linear */
    if (c->use_additional_conditions) n += 2 * ((TPROJ_DIM * (C / 3) + C / 3) + ((C / 3) * (C / 3) + C / 3));
    n += (int64_t)c->caption_channels * C + C + C * C + C;             /* caption projection */
    int64_t blk = 6 * C + 2 * (4 * (C * C + C)) + (C * 4 * C + 4 * C) + (4 * C * C + C);
    n += blk * c->num_layers;
    n += 2 * C + C * p2 * c->out_channels + p2 * c->out_channels;     /* final */
    return n;
}

double pixart_matmul_flops(const pixart_config *c, int B, int h, int w, int T)
{
    double C = c->inner, N = (double)h * w, M = (double)B * N, p2 = (double)c->patch_size * c->patch_size;
    double per_block = 2 * M * C * 3 * C + 2 * M * C * C      /* qkv, out */
                     + 2 * (double)B * N * N * C * 2          /* QK^T and PV */
                     + 2 * M * C * C * 2 + 2 * (double)B * T * C * 2 * C /* cross q/out, kv */
                     + 2 * (double)B * N * T * C * 2          /* cross QK^T and PV */
                     + 2 * M * C * 4 * C * 2;                 /* MLP */
    double other = 2 * M * c->in_channels * p2 * C + 2 * M * C * p2 * c->out_channels
                 + 2 * (double)B * T * (c->caption_channels * C + C * C);
    return per_block * c->num_layers + other;
}

/* ---- loading ---- */

static dt_status load_one(pixart_model *m, dt_weight_source *src, const char *name, int in, int out,
                          dt_act act, int m_hint, dt_dtype dt, dt_linear **lin, dt_err *err)
{
    return dt_load_linear1(m->be, src, name, in, out, 1, act, m_hint, dt, lin, err);
}

static dt_status load_table(pixart_model *m, dt_weight_source *src, const char *name, int rows, int C, float **out,
                            dt_err *err)
{
    return dt_load_param_dev(m->be, src, name, 2, (int64_t[]){rows, C}, out, err);
}

static dt_status build(pixart_model *m, dt_weight_source *src, dt_err *err)
{
    const pixart_config *c = &m->cfg;
    int C = c->inner, g = c->sample_size / c->patch_size;
    int tok_hint = 2 * g * g, cap_hint = 2 * 120, vec_hint = 2;
    /* The conditioning layers (timestep and micro-condition embedders, adaLN: one row per
     * sample) stay f32 in a bf16 run: their outputs scale and shift every block, they cost
     * nothing, and rounding them nearly doubles the bf16 error on the fixtures. */
    dt_dtype cd = m->be->cfg.compute, f32 = DT_F32;
    DT_TRY(dit_patch_embed_load(m->be, src, &dit_diffusers_names, c->in_channels, c->patch_size, C, tok_hint, &m->patch, err));
    DT_TRY(dit_adaln_load(m->be, src, &dit_diffusers_names, C, &m->ada, err));
    if (c->use_additional_conditions) {
        int S = C / 3;
        DT_TRY(load_one(m, src, "adaln_single.emb.resolution_embedder.linear_1", TPROJ_DIM, S, DT_ACT_SILU, 2 * vec_hint, f32, &m->res1, err));
        DT_TRY(load_one(m, src, "adaln_single.emb.resolution_embedder.linear_2", S, S, DT_ACT_NONE, 2 * vec_hint, f32, &m->res2, err));
        DT_TRY(load_one(m, src, "adaln_single.emb.aspect_ratio_embedder.linear_1", TPROJ_DIM, S, DT_ACT_SILU, vec_hint, f32, &m->ar1, err));
        DT_TRY(load_one(m, src, "adaln_single.emb.aspect_ratio_embedder.linear_2", S, S, DT_ACT_NONE, vec_hint, f32, &m->ar2, err));
    }
    DT_TRY(dit_caption_load(m->be, src, &dit_diffusers_names, c->caption_channels, C, cap_hint, cd, &m->cap, err));
    m->shape = (dit_block_shape){C, c->heads, c->head_dim, c->norm_eps, 1, tok_hint, cap_hint, cd};
    for (int i = 0; i < c->num_layers; i++) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "transformer_blocks.%d", i);
        DT_TRY(dit_block_load(m->be, src, prefix, &m->shape, &m->blocks[i], err));
    }
    DT_TRY(load_table(m, src, "scale_shift_table", 2, C, &m->sst_out, err));
    DT_TRY(load_one(m, src, "proj_out", C, c->patch_size * c->patch_size * c->out_channels, DT_ACT_NONE, tok_hint, cd, &m->proj_out, err));
    return DT_OK;
}

dt_status pixart_create(dt_backend *be, const pixart_config *cfg, dt_weight_source *src,
                        pixart_model **out, dt_err *err)
{
    pixart_model *m = calloc(1, sizeof *m);
    if (!m) return dt_fail(err, DT_ENOMEM, "out of memory");
    m->cfg = *cfg;
    m->be = be;
    m->blocks = calloc((size_t)cfg->num_layers, sizeof *m->blocks);
    dt_status st = m->blocks ? build(m, src, err) : dt_fail(err, DT_ENOMEM, "out of memory");
    if (st != DT_OK) { pixart_free(m); return st; }
    *out = m;
    return DT_OK;
}

dt_status pixart_load(dt_backend *be, const char *dir, pixart_model **out, dt_err *err)
{
    pixart_config cfg;
    DT_TRY(pixart_config_load(dir, &cfg, err));
    dt_safetensors *st;
    DT_TRY(dt_st_open_dir(dir, "diffusion_pytorch_model", &st, err));
    dt_weight_source src = dt_weights_from_file(st);
    dt_status s = pixart_create(be, &cfg, &src, out, err);
    dt_weights_close(&src);
    dt_st_close(st);
    return s;
}

void pixart_free(pixart_model *m)
{
    if (!m) return;
    void (*del)(dt_linear *) = m->be->ops->linear_destroy;
    dt_linear *top[] = {m->patch, m->res1, m->res2, m->ar1, m->ar2, m->proj_out};
    for (size_t i = 0; i < sizeof top / sizeof *top; i++) del(top[i]);
    dit_adaln_free(m->be, &m->ada);
    dit_caption_free(m->be, &m->cap);
    for (int i = 0; m->blocks && i < m->cfg.num_layers; i++) dit_block_free(m->be, &m->blocks[i]);
    free(m->blocks);
    dt_free_param(m->be, m->sst_out);
    dit_pos_free(m->be, &m->pos);
    dt_stage_free(&m->stage);
    free(m);
}

const pixart_config *pixart_get_config(const pixart_model *m) { return &m->cfg; }
void pixart_set_attn_hook(pixart_model *m, dit_attn_hook *hook) { m->hook = hook; }
void pixart_set_resume(pixart_model *m, const pixart_resume *r) { m->resume = r; }

/* ---- forward ---- */

#define LIN(l, x, y) DT_TRY(be->ops->linear_forward(be, (l), (x), (y), err))

static dt_tensor t2d(float *data, int64_t r, int64_t c) { int64_t s[2] = {r, c}; return dt_tensor_view(data, DT_F32, 2, s); }
static dt_tensor t3d(float *data, int64_t a, int64_t b, int64_t c) { int64_t s[3] = {a, b, c}; return dt_tensor_view(data, DT_F32, 3, s); }
static dt_status alloc2(dt_arena *a, dt_tensor *t, int64_t r, int64_t c, dt_err *err)
{
    int64_t s[2] = {r, c};
    return dt_arena_tensor(a, t, DT_F32, 2, s, err);
}

/* adaln_single: returns t6 [B, 6C] (block modulation) and emb [B, C] (embedded_timestep). */
static dt_status adaln_single(pixart_model *m, const pixart_inputs *in, int B, dt_arena *a,
                              dt_tensor *t6, dt_tensor *emb, dt_err *err)
{
    dt_backend *be = m->be;
    const pixart_config *c = &m->cfg;
    int C = c->inner, S = C / 3;
    DT_TRY(dit_timestep_embed(be, &m->ada, in->timestep, B, C, a, &m->stage, emb, err));
    if (c->use_additional_conditions) {
        dt_tensor proj, hid;
        DT_TRY(alloc2(a, &proj, 2 * B, TPROJ_DIM, err));
        DT_TRY(alloc2(a, &hid, 2 * B, C, err));
        /* resolution [B,2] -> [2B,S] -> [B,2S]; aspect ratio [B,1] -> [B,S]; added to the
         * timestep embedding as cat([res, ar], dim=1) */
        dt_tensor rp = t2d(proj.data, 2 * B, TPROJ_DIM), rh = t2d(hid.data, 2 * B, S), ro, ah = t2d(hid.data, B, S), ao;
        DT_TRY(alloc2(a, &ro, 2 * B, S, err));
        DT_TRY(alloc2(a, &ao, B, S, err));
        DT_TRY(dit_sinusoid(be, in->resolution, 2 * B, &m->stage, &rp, err));
        LIN(m->res1, &rp, &rh);
        LIN(m->res2, &rh, &ro);
        dt_tensor ap = t2d(proj.data, B, TPROJ_DIM);
        DT_TRY(dit_sinusoid(be, in->aspect_ratio, B, &m->stage, &ap, err));
        LIN(m->ar1, &ap, &ah);
        LIN(m->ar2, &ah, &ao);
        /* emb[b] += cat(res[b] (2S), ar[b] (S)); C = 3S (checked at load) */
        dt_tensor cat;
        DT_TRY(alloc2(a, &cat, B, C, err));
        int64_t rs[4] = {1, 1, B, 2 * S}, as[4] = {1, 1, B, S};
        dt_tensor rsrc = dt_tensor_view(ro.data, DT_F32, 4, rs), rdst = rsrc, asrc = dt_tensor_view(ao.data, DT_F32, 4, as), adst = asrc;
        rdst.data = cat.data, rdst.strides[2] = C;
        adst.data = (float *)cat.data + 2 * S, adst.strides[2] = C;
        DT_TRY(be->ops->copy4d(be, &rsrc, &rdst, err));
        DT_TRY(be->ops->copy4d(be, &asrc, &adst, err));
        DT_TRY(be->ops->add_rows(be, emb, &cat, emb, err));
    }
    return dit_adaln_out(be, &m->ada, emb, C, a, t6, err);
}

static dt_status position_embedding(pixart_model *m, int h, int w, dt_err *err)
{
    const pixart_config *c = &m->cfg;
    return dit_pos_embed(m->be, c->inner, h, w, c->sample_size / c->patch_size, c->interpolation_scale, &m->pos, err);
}

static dt_status check_inputs(const pixart_config *c, const pixart_inputs *in, const dt_tensor *out, dt_err *err)
{
    const dt_tensor *hs = in->hidden_states, *eh = in->encoder_hidden_states;
    if (!hs || hs->ndim != 4 || hs->shape[1] != c->in_channels)
        return dt_fail(err, DT_EINVAL, "hidden_states: expected [B, %d, H, W]", c->in_channels);
    if (hs->shape[2] % c->patch_size || hs->shape[3] % c->patch_size || hs->shape[2] <= 0 || hs->shape[3] <= 0)
        return dt_fail(err, DT_EINVAL, "hidden_states: height and width must be positive multiples of patch_size %d", c->patch_size);
    if (!eh || eh->ndim != 3 || eh->shape[0] != hs->shape[0] || eh->shape[2] != c->caption_channels || eh->shape[1] <= 0)
        return dt_fail(err, DT_EINVAL, "encoder_hidden_states: expected [%lld, T, %d]", (long long)hs->shape[0], c->caption_channels);
    if (!in->timestep) return dt_fail(err, DT_EINVAL, "timestep: missing");
    if (c->use_additional_conditions && (!in->resolution || !in->aspect_ratio))
        return dt_fail(err, DT_EINVAL, "resolution/aspect_ratio: required by this model (use_additional_conditions)");
    if (!out || out->ndim != 4 || out->shape[0] != hs->shape[0] || out->shape[1] != c->out_channels ||
        out->shape[2] != hs->shape[2] || out->shape[3] != hs->shape[3])
        return dt_fail(err, DT_EINVAL, "output: expected [B, %d, H, W]", c->out_channels);
    return DT_OK;
}

dt_status pixart_forward(pixart_model *m, const pixart_inputs *in, dt_arena *a, dt_tensor *out, dt_err *err)
{
    const pixart_config *c = &m->cfg;
    dt_backend *be = m->be;
    DT_TRY(check_inputs(c, in, out, err));
    int B = (int)in->hidden_states->shape[0], p = c->patch_size, C = c->inner;
    int h = (int)in->hidden_states->shape[2] / p, w = (int)in->hidden_states->shape[3] / p, N = h * w;
    int T = (int)in->encoder_hidden_states->shape[1];
    int64_t BN = (int64_t)B * N;

    /* patch embedding + position embedding */
    dt_tensor patches, x;
    DT_TRY(alloc2(a, &patches, BN, (int64_t)c->in_channels * p * p, err));
    DT_TRY(alloc2(a, &x, BN, C, err));
    DT_TRY(be->ops->patchify(be, in->hidden_states, p, &patches, err));
    LIN(m->patch, &patches, &x);
    DT_TRY(position_embedding(m, h, w, err));
    dt_tensor pos = t2d(m->pos.dev, N, C);
    DT_TRY(be->ops->add_rows(be, &x, &pos, &x, err));

    dt_tensor t6, emb;
    DT_TRY(adaln_single(m, in, B, a, &t6, &emb, err));

    /* caption projection and the additive key mask (diffusers: (1 - mask) * -10000) */
    dt_tensor ctx;
    DT_TRY(alloc2(a, &ctx, (int64_t)B * T, C, err));
    dt_tensor ehs = t2d(in->encoder_hidden_states->data, (int64_t)B * T, c->caption_channels);
    DT_TRY(dit_caption_forward(be, &m->cap, &ehs, C, a, &ctx, err));
    float *key_bias;
    DT_TRY(dit_key_bias(be, in->encoder_attention_mask, B, 1, T, a, &m->stage, &key_bias, err));

    dt_attn_bias cross_bias = {.key = key_bias};
    dit_scratch s;
    DT_TRY(dit_scratch_alloc(a, BN, (int64_t)B * T, B, C, &s, err));
    const pixart_resume *rs = m->resume;
    if (rs && rs->from > 0) DT_TRY(dt_backend_write(be, x.data, rs->load, (size_t)BN * C, err));
    for (int i = rs ? rs->from : 0; i < c->num_layers; i++) {
        if (rs && rs->save && i == rs->save_at) DT_TRY(dt_backend_read(be, x.data, rs->save, (size_t)BN * C, err));
        dit_block_args ba = {be, i, t6.data, B, N, T, &x, &ctx, &cross_bias, &s, a, m->hook};
        DT_TRY(dit_block_forward(&m->blocks[i], &m->shape, &ba, err));
    }

    int po = p * p * c->out_channels;
    dt_tensor y;
    DT_TRY(alloc2(a, &y, BN, po, err));
    dit_final_args fa = {m->sst_out, emb.data, B, N, C, c->norm_eps, &x, &s.xn, &y, s.mod, m->proj_out};
    DT_TRY(dit_final_layer(be, &fa, err));
    dt_tensor y3 = t3d(y.data, B, N, po);
    return be->ops->unpatchify(be, &y3, p, h, w, out, err);
}

/* ---- the denoiser interface (denoiser.h) ---- */

static void info_of(const pixart_config *c, dt_denoiser_info *d)
{
    *d = (dt_denoiser_info){.class_name = "PixArtTransformer2DModel", .latent_rank = 4, .in_channels = c->in_channels,
                            .out_channels = c->out_channels, .sample_size = c->sample_size, .patch_size = c->patch_size,
                            .caption_channels = c->caption_channels, .spatial_layers = c->num_layers,
                            .inner = c->inner, .micro_conditions = c->use_additional_conditions,
                            .param_count = pixart_param_count(c)};
}

dt_status pixart_inputs_load(const char *file, const pixart_config *cfg, pixart_input_file *x, dt_err *err)
{
    dt_denoiser_info info;
    info_of(cfg, &info);
    return dt_denoiser_inputs_load(file, &info, x, err);
}

static dt_status den_describe(const char *dir, dt_denoiser_info *info, char *head, char *tail, size_t n, dt_err *err)
{
    pixart_config c;
    DT_TRY(pixart_config_load(dir, &c, err));
    info_of(&c, info);
    snprintf(head, n,
             "  architecture: PixArtTransformer2DModel (%s)\n"
             "  blocks: %d, hidden: %d, heads: %d x %d, patch: %d, sample_size: %d, in/out channels: %d/%d\n"
             "  caption_channels: %d, interpolation_scale: %g, norm_eps: %g\n",
             c.use_additional_conditions ? "PixArt-alpha style, resolution/aspect-ratio conditions" : "no micro-conditions",
             c.num_layers, c.inner, c.heads, c.head_dim, c.patch_size, c.sample_size, c.in_channels, c.out_channels,
             c.caption_channels, c.interpolation_scale, c.norm_eps);
    /* activations of one CFG step at the native size with 120 (alpha) / 300 (sigma) tokens */
    int g = c.sample_size / c.patch_size, T = c.use_additional_conditions ? 120 : 300;
    double M = 2.0 * g * g, C = c.inner, params = (double)info->param_count;
    double act = 4 * (M * C * 10 + 2.0 * T * C * 3) + 4 * 2.0 * c.heads * M * M;
    snprintf(tail, n, "  estimated memory, CFG batch 2 at %dx%d px: f32 %.1f MB, bf16 %.1f MB (weights + activations)\n",
             c.sample_size * 8, c.sample_size * 8, (params * 4 + act) / 1e6, (params * 2 + act) / 1e6);
    return DT_OK;
}

static dt_status den_create(dt_backend *be, const char *dir, int sample_size, int layers, dt_weight_source *src,
                            void **model, dt_err *err)
{
    pixart_config c;
    if (dir) DT_TRY(pixart_config_load(dir, &c, err));
    else c = pixart_config_xl2(sample_size);
    if (layers > 0) c.num_layers = layers;
    return pixart_create(be, &c, src, (pixart_model **)model, err);
}

static void den_info(const void *m, dt_denoiser_info *out) { info_of(&((const pixart_model *)m)->cfg, out); }
static dt_status den_forward(void *m, const dt_denoiser_inputs *in, dt_arena *a, dt_tensor *out, dt_err *err)
{
    return pixart_forward(m, in, a, out, err);
}
static void den_set_hook(void *m, dit_attn_hook *h) { pixart_set_attn_hook(m, h); }
static void den_set_resume(void *m, const dt_denoiser_resume *r) { pixart_set_resume(m, r); }

/* The buffers pixart_forward allocates (arena), plus the attention score blocks. */
static double den_step_bytes(const void *m, int B, int frames, int h, int w, int T)
{
    const pixart_config *c = &((const pixart_model *)m)->cfg;
    double N = (double)(h / c->patch_size) * (w / c->patch_size), C = c->inner, BN = B * N;
    double arena = 4 * (BN * (11 * C + 2.0 * c->in_channels * c->patch_size * c->patch_size + c->out_channels * c->patch_size * c->patch_size)
                        + (double)B * T * 4 * C);
    double scores = fmin(48e6, 4 * (double)B * c->heads * N * N) + 4 * 4 * BN * C;
    return arena + scores;
}

static double den_flops(const void *m, int batch, int frames, int h, int w, int T)
{
    return pixart_matmul_flops(&((const pixart_model *)m)->cfg, batch, h, w, T);
}

/* What ViDiT-Q quantizes, by diffusers names: every linear of transformer_blocks.*; the
 * fused attn2.to_k|to_v (named by to_k) projects the caption (MixDQ's float text tokens). */
static unsigned den_linear_role(const char *name)
{
    static const char kv[] = ".attn2.to_k";
    size_t n = strlen(name), k = sizeof kv - 1;
    if (strncmp(name, "transformer_blocks.", 19)) return 0;
    return DT_LINEAR_QUANTIZABLE | (n > k && !strcmp(name + n - k, kv) ? DT_LINEAR_TEXT_KV : 0);
}

static void den_free(void *m) { pixart_free(m); }

/* diffusers' PixArt pipelines; a folder without a class runs as α */
static const dt_pipeline_class pipelines[] = {
    {.name = "PixArtAlphaPipeline", .max_len = 120, .binning = 1},
    {.name = "PixArtSigmaPipeline", .max_len = 300, .binning = 1},
    {.name = "", .max_len = 120, .binning = 1},
};

const dt_denoiser_class dt_pixart_class = {
    .class_name = "PixArtTransformer2DModel", .preset = "pixart-xl-2", .pipelines = pipelines, .npipelines = 3, .describe = den_describe, .create = den_create,
    .info = den_info, .forward = den_forward, .set_attn_hook = den_set_hook, .set_resume = den_set_resume,
    .step_bytes = den_step_bytes, .matmul_flops = den_flops, .free = den_free,
    .linear_role = den_linear_role,
};
