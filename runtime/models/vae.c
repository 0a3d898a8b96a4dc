/* AutoencoderKL decoder: loading and decoding, written out as diffusers computes it
 * (autoencoders/autoencoder_kl.py, autoencoders/vae.py Decoder, unet_2d_blocks.py
 * UNetMidBlock2D / UpDecoderBlock2D, resnet.py ResnetBlock2D, upsampling.py Upsample2D,
 * attention_processor.py Attention with group_norm and residual_connection). */
#include "vae.h"
#include "layers.h"
#include "runtime/core/json.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VAE_EPS 1e-6f                      /* resnet_eps and the GroupNorms of Decoder */
#define POOL_LIVE 16                       /* most activations alive at once (5 today) */

typedef struct {
    float *gamma, *beta;
    int C;
} vae_norm;

typedef struct {
    int cin, cout;
    vae_norm n1, n2;
    dt_conv2d *c1, *c2, *sc; /* sc: 1x1 conv_shortcut when cin != cout */
} vae_resnet;

/* UpDecoderBlock2D / DownEncoderBlock2D: resnets, then the 2x resampling conv. */
typedef struct {
    int cin, cout, nres;
    vae_resnet *res;
    dt_conv2d *resample; /* upsamplers.0.conv / downsamplers.0.conv, NULL in the last block */
} vae_block;

/* UNetMidBlock2D: resnet, single-head attention, resnet (shared by encoder and decoder). */
typedef struct {
    vae_resnet res[2];
    vae_norm attn_norm;
    dt_linear *qkv, *attn_out; /* to_q|to_k|to_v fused, to_out.0; NULL without mid attention */
} vae_mid;

typedef struct {
    dt_conv2d *conv_in, *conv_out, *qc; /* qc: quant_conv, NULL without use_quant_conv */
    vae_block down[VAE_MAX_BLOCKS];
    vae_mid mid;
    vae_norm norm_out;
} vae_encoder;

struct vae_model {
    vae_config cfg;
    dt_backend *be;
    dt_conv2d *pq, *conv_in, *conv_out;
    vae_mid mid;
    vae_norm norm_out;
    vae_block up[VAE_MAX_BLOCKS];
    vae_encoder *enc; /* NULL when loaded without the encoder */
};

/* ---- config ---- */

static dt_status int_list(const cJSON *j, const char *path, const char *field, int *out, int *n, dt_err *err)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, field);
    int k = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : 0;
    if (k < 1 || k > VAE_MAX_BLOCKS)
        return dt_fail(err, DT_EFORMAT, "%s: field \"%s\" must be a list of 1 to %d positive integers", path, field, VAE_MAX_BLOCKS);
    for (int i = 0; i < k; i++) {
        const cJSON *v = cJSON_GetArrayItem(a, i);
        if (!dt_json_is_int_in(v, 1, VAE_MAX_CHANNELS, &out[i]))
            return dt_fail(err, DT_EFORMAT, "%s: field \"%s\" must be a list of 1 to %d integers in 1..%d", path, field,
                           VAE_MAX_BLOCKS, VAE_MAX_CHANNELS);
    }
    *n = k;
    return DT_OK;
}

/* field: "up_block_types" / "down_block_types"; type: the one block class supported. */
static dt_status check_blocks(const cJSON *j, const char *path, const char *field, const char *type, int n, dt_err *err)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, field);
    if (!a || cJSON_IsNull(a)) return DT_OK; /* absent: the class default, all of that type */
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != n)
        return dt_fail(err, DT_EFORMAT, "%s: field \"%s\" must list %d block types (one per block_out_channels)", path, field, n);
    for (int i = 0; i < n; i++) {
        const cJSON *v = cJSON_GetArrayItem(a, i);
        if (!cJSON_IsString(v) || strcmp(v->valuestring, type))
            return dt_fail(err, DT_EUNSUPPORTED, "%s: field \"%s\"[%d] is %s, only \"%s\" is supported",
                           path, field, i, cJSON_IsString(v) ? v->valuestring : "not a string", type);
    }
    return DT_OK;
}

/* sample_size may be an int or, in some configs, a [h, w] list (diffusers then uses [0]). */
static dt_status sample_size(const cJSON *j, const char *path, int *out, dt_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "sample_size");
    if (cJSON_IsArray(v) && cJSON_GetArraySize(v) > 0) v = cJSON_GetArrayItem(v, 0);
    if (!v || cJSON_IsNull(v)) { *out = 32; return DT_OK; }
    if (!dt_json_is_int_in(v, 1, VAE_MAX_SAMPLE, out))
        return dt_fail(err, DT_EFORMAT, "%s: field \"sample_size\" must be an integer in 1..%d", path, VAE_MAX_SAMPLE);
    return DT_OK;
}

static dt_status parse_config(const cJSON *j, const char *path, vae_config *c, dt_err *err)
{
    char s[64];
    double d;
    *c = (vae_config){0};
#define INT(f, dst, dflt, lo, hi) DT_TRY(dt_json_int_in(j, path, f, 1, dflt, lo, hi, &(dst), err))
    INT("in_channels", c->in_channels, 3, 1, VAE_MAX_CHANNELS);
    INT("out_channels", c->out_channels, 3, 1, VAE_MAX_CHANNELS);
    INT("latent_channels", c->latent_channels, 4, 1, VAE_MAX_CHANNELS);
    INT("layers_per_block", c->layers_per_block, 1, 0, VAE_MAX_LAYERS_PER_BLOCK);
    INT("norm_num_groups", c->norm_num_groups, 32, 1, VAE_MAX_CHANNELS);
#undef INT
    if (cJSON_GetObjectItemCaseSensitive(j, "block_out_channels"))
        DT_TRY(int_list(j, path, "block_out_channels", c->block_out_channels, &c->nblocks, err));
    else c->block_out_channels[0] = 64, c->nblocks = 1;
    DT_TRY(check_blocks(j, path, "up_block_types", "UpDecoderBlock2D", c->nblocks, err));
    DT_TRY(check_blocks(j, path, "down_block_types", "DownEncoderBlock2D", c->nblocks, err));
    DT_TRY(sample_size(j, path, &c->sample_size, err));
    DT_TRY(dt_json_bool(j, path, "mid_block_add_attention", 1, &c->mid_block_add_attention, err));
    DT_TRY(dt_json_bool(j, path, "use_post_quant_conv", 1, &c->use_post_quant_conv, err));
    DT_TRY(dt_json_bool(j, path, "use_quant_conv", 1, &c->use_quant_conv, err));
    DT_TRY(dt_json_num(j, path, "scaling_factor", 1, 0.18215, &d, err));
    c->scaling_factor = (float)d;
    const cJSON *sf = cJSON_GetObjectItemCaseSensitive(j, "shift_factor");
    c->has_shift_factor = sf && !cJSON_IsNull(sf);
    DT_TRY(dt_json_num(j, path, "shift_factor", 1, 0.0, &d, err));
    c->shift_factor = (float)d;
    DT_TRY(dt_json_str(j, path, "act_fn", "silu", s, sizeof s, err));
    if (strcmp(s, "silu") && strcmp(s, "swish"))
        return dt_fail(err, DT_EUNSUPPORTED, "%s: field \"act_fn\" is \"%s\", only \"silu\" is supported", path, s);
    return DT_OK;
}

static dt_status validate(const vae_config *c, const char *path, dt_err *err)
{
#define CHECK(cond, ...) if (!(cond)) return dt_fail(err, DT_EFORMAT, __VA_ARGS__)
    CHECK(c->in_channels > 0 && c->out_channels > 0 && c->latent_channels > 0, "%s: channel counts must be positive", path);
    CHECK(c->layers_per_block >= 0, "%s: \"layers_per_block\" must be non-negative", path);
    CHECK(c->norm_num_groups > 0, "%s: \"norm_num_groups\" must be positive", path);
    for (int i = 0; i < c->nblocks; i++)
        CHECK(c->block_out_channels[i] % c->norm_num_groups == 0,
              "%s: block_out_channels[%d] = %d is not a multiple of norm_num_groups %d", path, i, c->block_out_channels[i],
              c->norm_num_groups);
    CHECK(c->scaling_factor != 0 && isfinite(c->scaling_factor), "%s: \"scaling_factor\" must be a non-zero number", path);
#undef CHECK
    return DT_OK;
}

dt_status vae_config_load(const char *dir, vae_config *c, dt_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    cJSON *j;
    DT_TRY(dt_json_load(path, &j, err));
    dt_status st = parse_config(j, path, c, err);
    cJSON_Delete(j);
    return st == DT_OK ? validate(c, path, err) : st;
}

/* ---- loading ---- */

/* A k x k conv with stride and zero padding pad_lo before / pad_hi after each spatial dim. */
static dt_status load_conv_geom(vae_model *m, dt_weight_source *src, const char *prefix, int cin, int cout, int k,
                                int stride, int pad_lo, int pad_hi, dt_dtype dt, dt_conv2d **out, dt_err *err)
{
    size_t wn = (size_t)cout * cin * k * k;
    char name[256];
    int64_t ws[4] = {cout, cin, k, k}, bs[1] = {cout};
    snprintf(name, sizeof name, "%s.weight", prefix);
    DT_TRY(dt_weights_expect(src, name, 4, ws, err)); /* the file's shape before the buffer */
    float *w = dt_weights_stage(src, wn * sizeof(float)), *b = malloc((size_t)cout * sizeof(float));
    dt_status st = (w && b) ? DT_OK : dt_fail(err, DT_ENOMEM, "out of memory loading %s", prefix);
    if (st == DT_OK) st = src->read(src, name, 4, ws, w, err);
    snprintf(name, sizeof name, "%s.bias", prefix);
    if (st == DT_OK) st = src->read(src, name, 1, bs, b, err);
    if (st == DT_OK) st = m->be->ops->conv2d_create(m->be, w, b, cin, cout, k, stride, pad_lo, pad_hi, dt, out, err);
    free(b);
    return st;
}

static dt_status load_conv_dt(vae_model *m, dt_weight_source *src, const char *prefix, int cin, int cout, int k,
                              dt_dtype dt, dt_conv2d **out, dt_err *err)
{
    return load_conv_geom(m, src, prefix, cin, cout, k, 1, k / 2, k / 2, dt, out, err);
}

static dt_status load_conv(vae_model *m, dt_weight_source *src, const char *prefix, int cin, int cout, int k,
                           dt_conv2d **out, dt_err *err)
{
    return load_conv_dt(m, src, prefix, cin, cout, k, m->be->cfg.compute, out, err);
}

static dt_status load_norm(dt_weight_source *src, const char *prefix, int C, vae_norm *n, dt_err *err)
{
    char name[256];
    int64_t s[1] = {C};
    n->C = C;
    snprintf(name, sizeof name, "%s.weight", prefix);
    DT_TRY(dt_load_param(src, name, 1, s, &n->gamma, err));
    snprintf(name, sizeof name, "%s.bias", prefix);
    return dt_load_param(src, name, 1, s, &n->beta, err);
}

static dt_status load_resnet(vae_model *m, dt_weight_source *src, const char *prefix, int cin, int cout,
                             vae_resnet *r, dt_err *err)
{
    char p[200];
    r->cin = cin;
    r->cout = cout;
#define PFX(s) (snprintf(p, sizeof p, "%s.%s", prefix, s), p)
    DT_TRY(load_norm(src, PFX("norm1"), cin, &r->n1, err));
    DT_TRY(load_conv(m, src, PFX("conv1"), cin, cout, 3, &r->c1, err));
    DT_TRY(load_norm(src, PFX("norm2"), cout, &r->n2, err));
    DT_TRY(load_conv(m, src, PFX("conv2"), cout, cout, 3, &r->c2, err));
    if (cin != cout) DT_TRY(load_conv(m, src, PFX("conv_shortcut"), cin, cout, 1, &r->sc, err));
#undef PFX
    return DT_OK;
}

static dt_status load_linear(vae_model *m, dt_weight_source *src, const char *const *prefixes, int n, int C,
                             dt_linear **lin, dt_err *err)
{
    /* row hint: a 64x64 latent, the usual 512 px decode */
    dt_linear_spec spec = {prefixes, n, C, C, 1, DT_ACT_NONE, 4096, m->be->cfg.compute};
    return dt_load_linear(m->be, src, &spec, lin, err);
}

/* prefix: "decoder.mid_block" or "encoder.mid_block" */
static dt_status load_mid(vae_model *m, dt_weight_source *src, const char *prefix, vae_mid *mid, dt_err *err)
{
    int C = m->cfg.block_out_channels[m->cfg.nblocks - 1];
    char n[5][200];
    snprintf(n[0], sizeof n[0], "%s.resnets.0", prefix);
    DT_TRY(load_resnet(m, src, n[0], C, C, &mid->res[0], err));
    if (m->cfg.mid_block_add_attention) {
        snprintf(n[0], sizeof n[0], "%s.attentions.0.to_q", prefix);
        snprintf(n[1], sizeof n[1], "%s.attentions.0.to_k", prefix);
        snprintf(n[2], sizeof n[2], "%s.attentions.0.to_v", prefix);
        snprintf(n[3], sizeof n[3], "%s.attentions.0.to_out.0", prefix);
        snprintf(n[4], sizeof n[4], "%s.attentions.0.group_norm", prefix);
        const char *qkv[3] = {n[0], n[1], n[2]}, *out[1] = {n[3]};
        DT_TRY(load_norm(src, n[4], C, &mid->attn_norm, err));
        DT_TRY(load_linear(m, src, qkv, 3, C, &mid->qkv, err));
        DT_TRY(load_linear(m, src, out, 1, C, &mid->attn_out, err));
    }
    snprintf(n[0], sizeof n[0], "%s.resnets.1", prefix);
    return load_resnet(m, src, n[0], C, C, &mid->res[1], err);
}

static dt_status load_up(vae_model *m, dt_weight_source *src, int i, dt_err *err)
{
    const vae_config *c = &m->cfg;
    vae_block *u = &m->up[i];
    int n = c->nblocks;
    u->cin = c->block_out_channels[n - (i > 0 ? i : 1)];
    u->cout = c->block_out_channels[n - 1 - i];
    u->nres = c->layers_per_block + 1;
    u->res = calloc((size_t)u->nres, sizeof *u->res);
    if (!u->res) return dt_fail(err, DT_ENOMEM, "out of memory");
    char p[160];
    for (int j = 0; j < u->nres; j++) {
        snprintf(p, sizeof p, "decoder.up_blocks.%d.resnets.%d", i, j);
        DT_TRY(load_resnet(m, src, p, j == 0 ? u->cin : u->cout, u->cout, &u->res[j], err));
    }
    if (i == n - 1) return DT_OK;
    snprintf(p, sizeof p, "decoder.up_blocks.%d.upsamplers.0.conv", i);
    return load_conv(m, src, p, u->cout, u->cout, 3, &u->resample, err);
}

static dt_status load_down(vae_model *m, dt_weight_source *src, vae_encoder *e, int i, dt_err *err)
{
    const vae_config *c = &m->cfg;
    vae_block *d = &e->down[i];
    d->cin = c->block_out_channels[i > 0 ? i - 1 : 0];
    d->cout = c->block_out_channels[i];
    d->nres = c->layers_per_block;
    d->res = calloc((size_t)(d->nres > 0 ? d->nres : 1), sizeof *d->res);
    if (!d->res) return dt_fail(err, DT_ENOMEM, "out of memory");
    char p[160];
    for (int j = 0; j < d->nres; j++) {
        snprintf(p, sizeof p, "encoder.down_blocks.%d.resnets.%d", i, j);
        DT_TRY(load_resnet(m, src, p, j == 0 ? d->cin : d->cout, d->cout, &d->res[j], err));
    }
    if (i == c->nblocks - 1) return DT_OK;
    /* Downsample2D with padding 0: F.pad(x, (0, 1, 0, 1)), then a 3x3 stride-2 conv */
    snprintf(p, sizeof p, "encoder.down_blocks.%d.downsamplers.0.conv", i);
    return load_conv_geom(m, src, p, d->cout, d->cout, 3, 2, 0, 1, m->be->cfg.compute, &d->resample, err);
}

/* Encoder (double_z: conv_out gives mean | logvar) and quant_conv. conv_in and quant_conv stay
 * f32 in a bf16 run, like the decoder's latent-side convs (both are cheap). */
static dt_status build_encoder(vae_model *m, dt_weight_source *src, vae_encoder *e, dt_err *err)
{
    const vae_config *c = &m->cfg;
    int lc2 = 2 * c->latent_channels, top = c->block_out_channels[c->nblocks - 1], c0 = c->block_out_channels[0];
    DT_TRY(load_conv_dt(m, src, "encoder.conv_in", c->in_channels, c0, 3, DT_F32, &e->conv_in, err));
    for (int i = 0; i < c->nblocks; i++) DT_TRY(load_down(m, src, e, i, err));
    DT_TRY(load_mid(m, src, "encoder.mid_block", &e->mid, err));
    DT_TRY(load_norm(src, "encoder.conv_norm_out", top, &e->norm_out, err));
    DT_TRY(load_conv(m, src, "encoder.conv_out", top, lc2, 3, &e->conv_out, err));
    if (c->use_quant_conv) DT_TRY(load_conv_dt(m, src, "quant_conv", lc2, lc2, 1, DT_F32, &e->qc, err));
    return DT_OK;
}

static dt_status build(vae_model *m, dt_weight_source *src, dt_err *err)
{
    const vae_config *c = &m->cfg;
    int lc = c->latent_channels, top = c->block_out_channels[c->nblocks - 1], c0 = c->block_out_channels[0];
    /* The two convolutions at the latent stay f32 in a bf16 run: they cost ~1/100 of one
     * mid-block conv, and rounding the latent to bf16 is a fifth of the fixtures' bf16 error. */
    if (c->use_post_quant_conv) DT_TRY(load_conv_dt(m, src, "post_quant_conv", lc, lc, 1, DT_F32, &m->pq, err));
    DT_TRY(load_conv_dt(m, src, "decoder.conv_in", lc, top, 3, DT_F32, &m->conv_in, err));
    DT_TRY(load_mid(m, src, "decoder.mid_block", &m->mid, err));
    for (int i = 0; i < c->nblocks; i++) DT_TRY(load_up(m, src, i, err));
    DT_TRY(load_norm(src, "decoder.conv_norm_out", c0, &m->norm_out, err));
    return load_conv(m, src, "decoder.conv_out", c0, c->out_channels, 3, &m->conv_out, err);
}

dt_status vae_create_ex(dt_backend *be, const vae_config *cfg, dt_weight_source *src, int with_encoder, vae_model **out,
                        dt_err *err)
{
    DT_TRY(validate(cfg, "vae config", err));
    vae_model *m = calloc(1, sizeof *m);
    if (!m) return dt_fail(err, DT_ENOMEM, "out of memory");
    m->cfg = *cfg;
    m->be = be;
    dt_status st = build(m, src, err);
    if (st == DT_OK && with_encoder) {
        m->enc = calloc(1, sizeof *m->enc);
        st = m->enc ? build_encoder(m, src, m->enc, err) : dt_fail(err, DT_ENOMEM, "out of memory");
    }
    if (st != DT_OK) { vae_free(m); return st; }
    *out = m;
    return DT_OK;
}

dt_status vae_create(dt_backend *be, const vae_config *cfg, dt_weight_source *src, vae_model **out, dt_err *err)
{
    return vae_create_ex(be, cfg, src, 0, out, err);
}

dt_status vae_load_ex(dt_backend *be, const char *dir, vae_encoder_mode enc, vae_model **out, dt_err *err)
{
    vae_config cfg;
    DT_TRY(vae_config_load(dir, &cfg, err));
    dt_safetensors *st;
    DT_TRY(dt_st_open_dir(dir, "diffusion_pytorch_model", &st, err));
    dt_weight_source src = dt_weights_from_file(st);
    int with = enc == VAE_ENCODER_REQUIRED || (enc == VAE_ENCODER_IF_PRESENT && dt_st_find(st, "encoder.conv_in.weight"));
    dt_status s = vae_create_ex(be, &cfg, &src, with, out, err);
    dt_weights_close(&src);
    dt_st_close(st);
    return s;
}

dt_status vae_load(dt_backend *be, const char *dir, vae_model **out, dt_err *err)
{
    return vae_load_ex(be, dir, VAE_ENCODER_IF_PRESENT, out, err);
}

static void free_norm(vae_norm *n) { free(n->gamma); free(n->beta); }

static void free_resnet(dt_backend *be, vae_resnet *r)
{
    be->ops->conv2d_destroy(r->c1);
    be->ops->conv2d_destroy(r->c2);
    be->ops->conv2d_destroy(r->sc);
    free_norm(&r->n1);
    free_norm(&r->n2);
}

static void free_mid(dt_backend *be, vae_mid *mid)
{
    free_resnet(be, &mid->res[0]);
    free_resnet(be, &mid->res[1]);
    free_norm(&mid->attn_norm);
    be->ops->linear_destroy(mid->qkv);
    be->ops->linear_destroy(mid->attn_out);
}

static void free_blocks(dt_backend *be, vae_block *b, int n)
{
    for (int i = 0; i < n; i++) {
        for (int j = 0; b[i].res && j < b[i].nres; j++) free_resnet(be, &b[i].res[j]);
        free(b[i].res);
        be->ops->conv2d_destroy(b[i].resample);
    }
}

static void free_encoder(dt_backend *be, vae_encoder *e, int nblocks)
{
    if (!e) return;
    be->ops->conv2d_destroy(e->conv_in);
    be->ops->conv2d_destroy(e->conv_out);
    be->ops->conv2d_destroy(e->qc);
    free_blocks(be, e->down, nblocks);
    free_mid(be, &e->mid);
    free_norm(&e->norm_out);
    free(e);
}

void vae_free(vae_model *m)
{
    if (!m) return;
    dt_backend *be = m->be;
    be->ops->conv2d_destroy(m->pq);
    be->ops->conv2d_destroy(m->conv_in);
    be->ops->conv2d_destroy(m->conv_out);
    free_mid(be, &m->mid);
    free_norm(&m->norm_out);
    free_blocks(be, m->up, m->cfg.nblocks);
    free_encoder(be, m->enc, m->cfg.nblocks);
    free(m);
}

const vae_config *vae_get_config(const vae_model *m) { return &m->cfg; }
float vae_scaling_factor(const vae_model *m) { return m->cfg.scaling_factor; }
float vae_shift_factor(const vae_model *m) { return m->cfg.has_shift_factor ? m->cfg.shift_factor : 0.0f; }
int vae_upscale(const vae_model *m) { return 1 << (m->cfg.nblocks - 1); }
int vae_has_encoder(const vae_model *m) { return m->enc != NULL; }

/* ---- activation pool ----
 * The decoder asks for and releases activations in a fixed order that depends only on the
 * shapes, so a first-fit placement in an unbounded space, run once without computing
 * (the sizing pass), gives the exact block size the real pass then fits in. */

typedef struct {
    size_t off, size;
} pool_blk;

typedef struct {
    unsigned char *base; /* NULL in the sizing pass */
    size_t cap, peak;
    pool_blk live[POOL_LIVE]; /* sorted by offset */
    int n;
} act_pool;

static dt_status pool_alloc(act_pool *p, size_t bytes, size_t *off, dt_err *err)
{
    bytes = (bytes + 63) / 64 * 64;
    size_t at = 0;
    int i = 0;
    for (; i < p->n; i++) {
        if (p->live[i].off - at >= bytes) break;
        at = p->live[i].off + p->live[i].size;
    }
    if (p->n == POOL_LIVE || at + bytes > p->cap)
        return dt_fail(err, DT_ENOMEM, "vae: activation pool exhausted (%zu bytes at %zu, capacity %zu)", bytes, at, p->cap);
    memmove(&p->live[i + 1], &p->live[i], (size_t)(p->n - i) * sizeof *p->live);
    p->live[i] = (pool_blk){at, bytes};
    p->n++;
    if (at + bytes > p->peak) p->peak = at + bytes;
    *off = at;
    return DT_OK;
}

static void pool_release(act_pool *p, size_t off)
{
    for (int i = 0; i < p->n; i++)
        if (p->live[i].off == off) {
            memmove(&p->live[i], &p->live[i + 1], (size_t)(p->n - i - 1) * sizeof *p->live);
            p->n--;
            return;
        }
}

typedef struct {
    vae_model *m;
    dt_backend *be;
    int plan;     /* sizing pass: allocations only, no compute */
    dt_dtype cd;  /* dtype of the normalized activations that feed convolutions */
    act_pool pool;
} vae_run;

typedef struct {
    dt_tensor t; /* NHWC [B, H, W, C] */
    size_t off;
} act;

static dt_status act_new(vae_run *r, act *a, int64_t B, int64_t H, int64_t W, int64_t C, dt_dtype dt, dt_err *err)
{
    int64_t shape[4] = {B, H, W, C};
    a->t = dt_tensor_view(NULL, dt, 4, shape);
    DT_TRY(pool_alloc(&r->pool, dt_tensor_nbytes(&a->t), &a->off, err));
    if (!r->plan) a->t.data = r->pool.base + a->off;
    return DT_OK;
}

static void act_del(vae_run *r, act *a) { pool_release(&r->pool, a->off); }

/* ---- decoder pieces (every backend call is skipped in the sizing pass) ---- */

static dt_status conv(vae_run *r, dt_conv2d *c, const dt_tensor *x, dt_tensor *y, int acc, dt_err *err)
{
    return r->plan ? DT_OK : r->be->ops->conv2d_forward(r->be, c, x, y, acc, err);
}

static dt_status norm(vae_run *r, const vae_norm *n, const dt_tensor *x, dt_tensor *y, dt_act act, dt_err *err)
{
    if (r->plan) return DT_OK;
    int64_t s[1] = {n->C};
    dt_tensor g = dt_tensor_view(n->gamma, DT_F32, 1, s), b = dt_tensor_view(n->beta, DT_F32, 1, s);
    return r->be->ops->group_norm(r->be, x, r->m->cfg.norm_num_groups, &g, &b, VAE_EPS, act, y, err);
}

#define SHAPE3(a) (a)->t.shape[0], (a)->t.shape[1], (a)->t.shape[2]

/* ResnetBlock2D, cin == cout: x += conv2(silu(norm2(conv1(silu(norm1(x)))))) */
static dt_status resnet_same(vae_run *r, const vae_resnet *rn, act *x, dt_err *err)
{
    act h, c1, h2;
    DT_TRY(act_new(r, &h, SHAPE3(x), rn->cin, r->cd, err));
    DT_TRY(norm(r, &rn->n1, &x->t, &h.t, DT_ACT_SILU, err));
    DT_TRY(act_new(r, &c1, SHAPE3(x), rn->cout, DT_F32, err));
    DT_TRY(conv(r, rn->c1, &h.t, &c1.t, 0, err));
    act_del(r, &h);
    if (r->cd == DT_F32) {
        h2 = c1; /* normalized in place */
    } else {
        DT_TRY(act_new(r, &h2, SHAPE3(x), rn->cout, r->cd, err));
    }
    DT_TRY(norm(r, &rn->n2, &c1.t, &h2.t, DT_ACT_SILU, err));
    if (r->cd != DT_F32) act_del(r, &c1);
    DT_TRY(conv(r, rn->c2, &h2.t, &x->t, 1, err)); /* the residual add, fused */
    act_del(r, &h2);
    return DT_OK;
}

/* ResnetBlock2D, cin != cout: x = conv_shortcut(x) + conv2(...). The shortcut goes first so
 * x can then be normalized in place (f32) and released before conv1's output lives long. */
static dt_status resnet_shortcut(vae_run *r, const vae_resnet *rn, act *x, dt_err *err)
{
    act s, h, c1, h2;
    if (r->cd == DT_F32) {
        DT_TRY(act_new(r, &s, SHAPE3(x), rn->cout, DT_F32, err));
        DT_TRY(conv(r, rn->sc, &x->t, &s.t, 0, err));
        h = *x;
        DT_TRY(norm(r, &rn->n1, &x->t, &h.t, DT_ACT_SILU, err));
    } else {
        /* bf16: the shortcut conv takes a bf16 copy of x (in the pool, not backend scratch) */
        act xb;
        DT_TRY(act_new(r, &h, SHAPE3(x), rn->cin, r->cd, err));
        DT_TRY(norm(r, &rn->n1, &x->t, &h.t, DT_ACT_SILU, err));
        DT_TRY(act_new(r, &xb, SHAPE3(x), rn->cin, r->cd, err));
        if (!r->plan) DT_TRY(r->be->ops->copy4d(r->be, &x->t, &xb.t, err));
        act_del(r, x);
        DT_TRY(act_new(r, &s, SHAPE3(&xb), rn->cout, DT_F32, err));
        DT_TRY(conv(r, rn->sc, &xb.t, &s.t, 0, err));
        act_del(r, &xb);
    }
    DT_TRY(act_new(r, &c1, SHAPE3(&s), rn->cout, DT_F32, err));
    DT_TRY(conv(r, rn->c1, &h.t, &c1.t, 0, err));
    act_del(r, &h); /* in f32, h is x */
    if (r->cd == DT_F32) {
        h2 = c1;
    } else {
        DT_TRY(act_new(r, &h2, SHAPE3(&s), rn->cout, r->cd, err));
    }
    DT_TRY(norm(r, &rn->n2, &c1.t, &h2.t, DT_ACT_SILU, err));
    if (r->cd != DT_F32) act_del(r, &c1);
    DT_TRY(conv(r, rn->c2, &h2.t, &s.t, 1, err));
    act_del(r, &h2);
    *x = s;
    return DT_OK;
}

static dt_status resnet(vae_run *r, const vae_resnet *rn, act *x, dt_err *err)
{
    return rn->sc ? resnet_shortcut(r, rn, x, err) : resnet_same(r, rn, x, err);
}

/* Upsample2D: nearest 2x, then the 3x3 conv. */
static dt_status upsample(vae_run *r, dt_conv2d *c, act *x, dt_err *err)
{
    int64_t B = x->t.shape[0], H = 2 * x->t.shape[1], W = 2 * x->t.shape[2], C = x->t.shape[3];
    act u, y;
    DT_TRY(act_new(r, &u, B, H, W, C, r->cd, err));
    if (!r->plan) DT_TRY(r->be->ops->upsample_nearest2x(r->be, &x->t, &u.t, err));
    act_del(r, x);
    DT_TRY(act_new(r, &y, B, H, W, C, DT_F32, err));
    DT_TRY(conv(r, c, &u.t, &y.t, 0, err));
    act_del(r, &u);
    *x = y;
    return DT_OK;
}

static dt_tensor rows2d(const act *a, int64_t cols)
{
    int64_t s[2] = {dt_tensor_numel(&a->t) / cols, cols};
    return dt_tensor_view(a->t.data, DT_F32, 2, s);
}

/* Single-head self-attention over the h·w tokens: softmax(q·kᵀ/√C)·v. The backend bounds
 * the score block itself (N² floats would be 1 GiB at a 128x128 latent). */
static dt_status attend(vae_run *r, const act *qkv, act *o, dt_err *err)
{
    dt_backend *be = r->be;
    int64_t B = qkv->t.shape[0], N = qkv->t.shape[1] * qkv->t.shape[2], C = o->t.shape[3];
    int64_t s3[3] = {B, N, C};
    float *base = qkv->t.data;
    dt_tensor q = dt_tensor_view(base, DT_F32, 3, s3), k = dt_tensor_view(base + C, DT_F32, 3, s3),
              v = dt_tensor_view(base + 2 * C, DT_F32, 3, s3), out = dt_tensor_view(o->t.data, DT_F32, 3, s3);
    q.strides[0] = k.strides[0] = v.strides[0] = N * 3 * C;
    q.strides[1] = k.strides[1] = v.strides[1] = 3 * C;
    return be->ops->attention(be, &q, &k, &v, NULL, 1, 1.0f / sqrtf((float)C), &out, err);
}

/* The mid block's Attention: x += to_out(attn(group_norm(x))). */
static dt_status attention(vae_run *r, const vae_mid *m, act *x, dt_err *err)
{
    dt_backend *be = r->be;
    int64_t C = x->t.shape[3];
    act hn, qkv, ao, o;
    DT_TRY(act_new(r, &hn, SHAPE3(x), C, DT_F32, err));
    DT_TRY(norm(r, &m->attn_norm, &x->t, &hn.t, DT_ACT_NONE, err));
    DT_TRY(act_new(r, &qkv, SHAPE3(x), 3 * C, DT_F32, err));
    dt_tensor hn2 = rows2d(&hn, C), qkv2 = rows2d(&qkv, 3 * C);
    if (!r->plan) DT_TRY(be->ops->linear_forward(be, m->qkv, &hn2, &qkv2, err));
    act_del(r, &hn);
    DT_TRY(act_new(r, &ao, SHAPE3(x), C, DT_F32, err));
    if (!r->plan) DT_TRY(attend(r, &qkv, &ao, err));
    act_del(r, &qkv);
    DT_TRY(act_new(r, &o, SHAPE3(x), C, DT_F32, err));
    dt_tensor ao2 = rows2d(&ao, C), o2 = rows2d(&o, C);
    if (!r->plan) DT_TRY(be->ops->linear_forward(be, m->attn_out, &ao2, &o2, err));
    act_del(r, &ao);
    if (!r->plan) {
        int64_t s3[3] = {1, dt_tensor_numel(&x->t) / C, C};
        dt_tensor x3 = dt_tensor_view(x->t.data, DT_F32, 3, s3), o3 = dt_tensor_view(o.t.data, DT_F32, 3, s3);
        DT_TRY(be->ops->gated_add(be, &x3, &o3, NULL, err));
    }
    act_del(r, &o);
    return DT_OK;
}

static dt_status mid_block(vae_run *r, const vae_mid *mid, act *x, dt_err *err)
{
    DT_TRY(resnet(r, &mid->res[0], x, err));
    if (mid->qkv) DT_TRY(attention(r, mid, x, err));
    return resnet(r, &mid->res[1], x, err);
}

/* conv_norm_out, SiLU, conv_out: consumes x, writes img. */
static dt_status head(vae_run *r, const vae_norm *n, dt_conv2d *c, act *x, dt_tensor *img, dt_err *err)
{
    act hn = *x;
    if (r->cd != DT_F32) DT_TRY(act_new(r, &hn, SHAPE3(x), x->t.shape[3], r->cd, err));
    DT_TRY(norm(r, n, &x->t, &hn.t, DT_ACT_SILU, err));
    if (r->cd != DT_F32) act_del(r, x);
    DT_TRY(conv(r, c, &hn.t, img, 0, err));
    act_del(r, &hn);
    return DT_OK;
}

/* post_quant_conv + Decoder.forward: lat [B,h,w,latent_channels] -> img [B,s·h,s·w,out_channels], NHWC. */
static dt_status decoder_run(vae_run *r, const dt_tensor *lat, dt_tensor *img, dt_err *err)
{
    vae_model *m = r->m;
    const vae_config *c = &m->cfg;
    int64_t B = lat->shape[0], h = lat->shape[1], w = lat->shape[2];
    act x, pq;
    const dt_tensor *z = lat;
    if (m->pq) {
        DT_TRY(act_new(r, &pq, B, h, w, c->latent_channels, DT_F32, err));
        DT_TRY(conv(r, m->pq, lat, &pq.t, 0, err));
        z = &pq.t;
    }
    DT_TRY(act_new(r, &x, B, h, w, c->block_out_channels[c->nblocks - 1], DT_F32, err));
    DT_TRY(conv(r, m->conv_in, z, &x.t, 0, err));
    if (m->pq) act_del(r, &pq);
    DT_TRY(mid_block(r, &m->mid, &x, err));
    for (int i = 0; i < c->nblocks; i++) {
        for (int j = 0; j < m->up[i].nres; j++) DT_TRY(resnet(r, &m->up[i].res[j], &x, err));
        if (m->up[i].resample) DT_TRY(upsample(r, m->up[i].resample, &x, err));
    }
    return head(r, &m->norm_out, m->conv_out, &x, img, err);
}

static vae_run run_new(vae_model *m, int plan)
{
    return (vae_run){.m = m, .be = m->be, .plan = plan, .cd = m->be->cfg.compute, .pool = {.cap = SIZE_MAX}};
}

/* Bytes of pool one decode of a [B, h, w] latent needs. */
static dt_status plan_bytes(vae_model *m, int64_t B, int64_t h, int64_t w, size_t *bytes, dt_err *err)
{
    int s = vae_upscale(m);
    int64_t ls[4] = {B, h, w, m->cfg.latent_channels}, is[4] = {B, s * h, s * w, m->cfg.out_channels};
    dt_tensor lat = dt_tensor_view(NULL, DT_F32, 4, ls), img = dt_tensor_view(NULL, DT_F32, 4, is);
    vae_run r = run_new(m, 1);
    DT_TRY(decoder_run(&r, &lat, &img, err));
    *bytes = r.pool.peak;
    return DT_OK;
}

/* ---- public decode ---- */

/* An NCHW tensor seen as [B, H, W, C]. */
static dt_tensor nhwc_view(const dt_tensor *t)
{
    dt_tensor v = *t;
    int64_t C = t->shape[1];
    v.shape[1] = t->shape[2]; v.shape[2] = t->shape[3]; v.shape[3] = C;
    v.strides[1] = t->strides[2]; v.strides[2] = t->strides[3]; v.strides[3] = t->strides[1];
    return v;
}

static dt_status check_io(const vae_model *m, const dt_tensor *latent, const dt_tensor *out, dt_err *err)
{
    const vae_config *c = &m->cfg;
    int s = vae_upscale(m);
    if (!latent || latent->ndim != 4 || latent->dtype != DT_F32 || latent->shape[1] != c->latent_channels ||
        latent->shape[0] <= 0 || latent->shape[2] <= 0 || latent->shape[3] <= 0 || !dt_tensor_is_contiguous(latent))
        return dt_fail(err, DT_EINVAL, "latent: expected contiguous f32 [B, %d, h, w]", c->latent_channels);
    if (!out || out->ndim != 4 || out->dtype != DT_F32 || out->shape[0] != latent->shape[0] ||
        out->shape[1] != c->out_channels || out->shape[2] != s * latent->shape[2] || out->shape[3] != s * latent->shape[3] ||
        !dt_tensor_is_contiguous(out))
        return dt_fail(err, DT_EINVAL, "output: expected contiguous f32 [%lld, %d, %lld, %lld]", (long long)latent->shape[0],
                       c->out_channels, (long long)(s * latent->shape[2]), (long long)(s * latent->shape[3]));
    return DT_OK;
}

static dt_status arena_nhwc(dt_arena *a, dt_tensor *t, int64_t B, int64_t H, int64_t W, int64_t C, dt_err *err)
{
    int64_t s[4] = {B, H, W, C};
    return dt_arena_tensor(a, t, DT_F32, 4, s, err);
}

dt_status vae_decode(vae_model *m, const dt_tensor *latent, dt_arena *a, dt_tensor *out, dt_err *err)
{
    DT_TRY(check_io(m, latent, out, err));
    dt_backend *be = m->be;
    const vae_config *c = &m->cfg;
    int64_t B = latent->shape[0], h = latent->shape[2], w = latent->shape[3], s = vae_upscale(m);
    dt_tensor lat, img, src = nhwc_view(latent), dst = nhwc_view(out);
    DT_TRY(arena_nhwc(a, &lat, B, h, w, c->latent_channels, err));
    DT_TRY(arena_nhwc(a, &img, B, s * h, s * w, c->out_channels, err));
    DT_TRY(be->ops->copy4d(be, &src, &lat, err));
    vae_run r = run_new(m, 0);
    DT_TRY(plan_bytes(m, B, h, w, &r.pool.cap, err));
    r.pool.base = dt_arena_alloc(a, r.pool.cap);
    if (!r.pool.base) return dt_fail(err, DT_ENOMEM, "out of memory: the VAE decode needs %zu bytes of activations", r.pool.cap);
    DT_TRY(decoder_run(&r, &lat, &img, err));
    return be->ops->copy4d(be, &img, &dst, err);
}

/* ---- encode (AutoencoderKL.encode: Encoder + quant_conv) ---- */

/* Downsample2D: pad (0, 1, 0, 1), 3x3 stride-2 conv (the padding is the conv's own). */
static dt_status downsample(vae_run *r, dt_conv2d *c, act *x, dt_err *err)
{
    int64_t B = x->t.shape[0], H = x->t.shape[1] / 2, W = x->t.shape[2] / 2, C = x->t.shape[3];
    act y;
    DT_TRY(act_new(r, &y, B, H, W, C, DT_F32, err));
    DT_TRY(conv(r, c, &x->t, &y.t, 0, err));
    act_del(r, x);
    *x = y;
    return DT_OK;
}

/* Encoder.forward + quant_conv: img [B,H,W,in_channels] -> mom [B,H/s,W/s,2·latent_channels], NHWC. */
static dt_status encoder_run(vae_run *r, const dt_tensor *img, dt_tensor *mom, dt_err *err)
{
    const vae_encoder *e = r->m->enc;
    const vae_config *c = &r->m->cfg;
    act x, h;
    DT_TRY(act_new(r, &x, img->shape[0], img->shape[1], img->shape[2], c->block_out_channels[0], DT_F32, err));
    DT_TRY(conv(r, e->conv_in, img, &x.t, 0, err));
    for (int i = 0; i < c->nblocks; i++) {
        for (int j = 0; j < e->down[i].nres; j++) DT_TRY(resnet(r, &e->down[i].res[j], &x, err));
        if (e->down[i].resample) DT_TRY(downsample(r, e->down[i].resample, &x, err));
    }
    DT_TRY(mid_block(r, &e->mid, &x, err));
    if (!e->qc) return head(r, &e->norm_out, e->conv_out, &x, mom, err);
    DT_TRY(act_new(r, &h, SHAPE3(&x), 2 * c->latent_channels, DT_F32, err));
    DT_TRY(head(r, &e->norm_out, e->conv_out, &x, &h.t, err));
    DT_TRY(conv(r, e->qc, &h.t, mom, 0, err));
    act_del(r, &h);
    return DT_OK;
}

static dt_status check_enc_io(const vae_model *m, const dt_tensor *image, const dt_tensor *mom, dt_err *err)
{
    const vae_config *c = &m->cfg;
    int64_t s = vae_upscale(m);
    if (!m->enc)
        return dt_fail(err, DT_EINVAL, "vae: the model was loaded without its encoder (no \"encoder.conv_in.weight\")");
    if (!image || image->ndim != 4 || image->dtype != DT_F32 || image->shape[1] != c->in_channels || image->shape[0] <= 0 ||
        image->shape[2] < s || image->shape[3] < s || !dt_tensor_is_contiguous(image))
        return dt_fail(err, DT_EINVAL, "image: expected contiguous f32 [B, %d, H, W] with H, W >= %lld", c->in_channels,
                       (long long)s);
    int64_t B = image->shape[0], h = image->shape[2] / s, w = image->shape[3] / s;
    if (!mom || mom->ndim != 4 || mom->dtype != DT_F32 || mom->shape[0] != B || mom->shape[1] != 2 * c->latent_channels ||
        mom->shape[2] != h || mom->shape[3] != w || !dt_tensor_is_contiguous(mom))
        return dt_fail(err, DT_EINVAL, "moments: expected contiguous f32 [%lld, %d, %lld, %lld]", (long long)B,
                       2 * c->latent_channels, (long long)h, (long long)w);
    return DT_OK;
}

dt_status vae_encode(vae_model *m, const dt_tensor *image, dt_arena *a, dt_tensor *moments, dt_err *err)
{
    DT_TRY(check_enc_io(m, image, moments, err));
    dt_backend *be = m->be;
    int64_t B = image->shape[0], H = image->shape[2], W = image->shape[3], h = moments->shape[2], w = moments->shape[3];
    int64_t mc = moments->shape[1];
    dt_tensor img, mom, src = nhwc_view(image), dst = nhwc_view(moments);
    DT_TRY(arena_nhwc(a, &img, B, H, W, m->cfg.in_channels, err));
    DT_TRY(arena_nhwc(a, &mom, B, h, w, mc, err));
    DT_TRY(be->ops->copy4d(be, &src, &img, err));
    vae_run plan = run_new(m, 1), r = run_new(m, 0);
    DT_TRY(encoder_run(&plan, &img, &mom, err)); /* sizing pass */
    r.pool.cap = plan.pool.peak;
    r.pool.base = dt_arena_alloc(a, r.pool.cap);
    if (!r.pool.base) return dt_fail(err, DT_ENOMEM, "out of memory: the VAE encode needs %zu bytes of activations", r.pool.cap);
    DT_TRY(encoder_run(&r, &img, &mom, err));
    return be->ops->copy4d(be, &mom, &dst, err);
}

dt_status vae_moments_mean(const vae_model *m, const dt_tensor *moments, float scale, dt_tensor *mean, dt_err *err)
{
    int64_t lc = m->cfg.latent_channels;
    if (!moments || moments->ndim != 4 || moments->dtype != DT_F32 || moments->shape[1] != 2 * lc ||
        !dt_tensor_is_contiguous(moments))
        return dt_fail(err, DT_EINVAL, "moments: expected contiguous f32 [B, %lld, h, w]", (long long)(2 * lc));
    int64_t B = moments->shape[0], hw = moments->shape[2] * moments->shape[3];
    if (!mean || mean->ndim != 4 || mean->dtype != DT_F32 || mean->shape[0] != B || mean->shape[1] != lc ||
        mean->shape[2] != moments->shape[2] || mean->shape[3] != moments->shape[3] || !dt_tensor_is_contiguous(mean))
        return dt_fail(err, DT_EINVAL, "mean: expected contiguous f32 [%lld, %lld, %lld, %lld]", (long long)B, (long long)lc,
                       (long long)moments->shape[2], (long long)moments->shape[3]);
    const float *src = moments->data;
    float *dst = mean->data;
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < lc * hw; i++) dst[b * lc * hw + i] = src[b * 2 * lc * hw + i] * scale;
    return DT_OK;
}

/* ---- tiled decode (AutoencoderKL.tiled_decode) ---- */

typedef struct {
    int64_t L, S;     /* tile_latent_min_size, tile_sample_min_size */
    int64_t ov;       /* latent stride between tiles: int(L · (1 - 0.25)) */
    int64_t blend;    /* int(S · 0.25) */
    int64_t limit;    /* row_limit = S - blend: pixels each tile contributes */
    int64_t rows, cols;
} tiling;

static int64_t tile_len(const tiling *t, int64_t n, int64_t i) { return n - i * t->ov < t->L ? n - i * t->ov : t->L; }

static dt_status tiling_plan(const vae_model *m, int64_t h, int64_t w, tiling *t, dt_err *err)
{
    int s = vae_upscale(m);
    t->S = m->cfg.sample_size;
    t->L = (int64_t)((double)t->S / s);
    t->ov = (int64_t)((double)t->L * 0.75);
    t->blend = (int64_t)((double)t->S * 0.25);
    t->limit = t->S - t->blend;
    if (t->ov <= 0) return dt_fail(err, DT_EUNSUPPORTED, "vae: sample_size %lld is too small to tile (need at least %d)", (long long)t->S, 2 * s);
    t->rows = (h + t->ov - 1) / t->ov;
    t->cols = (w + t->ov - 1) / t->ov;
    /* each tile contributes min(its size, row_limit) pixels; check they add up to s·h x s·w */
    int64_t oh = 0, ow = 0;
    for (int64_t i = 0; i < t->rows; i++) oh += s * tile_len(t, h, i) < t->limit ? s * tile_len(t, h, i) : t->limit;
    for (int64_t j = 0; j < t->cols; j++) ow += s * tile_len(t, w, j) < t->limit ? s * tile_len(t, w, j) : t->limit;
    if (oh != s * h || ow != s * w)
        return dt_fail(err, DT_EUNSUPPORTED, "vae: tiles of sample_size %lld assemble a %lldx%lld image, not %lldx%lld",
                       (long long)t->S, (long long)oh, (long long)ow, (long long)(s * h), (long long)(s * w));
    return DT_OK;
}

typedef struct {
    vae_model *m;
    const dt_tensor *latent; /* NCHW */
    dt_tensor *out;          /* NCHW */
    tiling t;
    vae_run r;
    dt_tensor lat;           /* [B, L, L, lc] scratch for one latent tile */
    float *slots[2];         /* two rows of decoded tiles, cols slots of B·(sL)²·oc floats each */
} tiled_job;

/* Decodes tile (i, j) into its slot of the row buffer (i % 2); returns the tile's NHWC tensor. */
static dt_status decode_tile(tiled_job *jb, int64_t i, int64_t j, dt_tensor *tile, dt_err *err)
{
    vae_model *m = jb->m;
    dt_backend *be = m->be;
    const tiling *t = &jb->t;
    int64_t B = jb->latent->shape[0], h = jb->latent->shape[2], w = jb->latent->shape[3], s = vae_upscale(m);
    int64_t th = tile_len(t, h, i), tw = tile_len(t, w, j), oc = m->cfg.out_channels, lc = m->cfg.latent_channels;
    dt_tensor src = nhwc_view(jb->latent);
    src.data = (float *)jb->latent->data + i * t->ov * w + j * t->ov;
    src.shape[1] = th;
    src.shape[2] = tw;
    int64_t ls[4] = {B, th, tw, lc}, is[4] = {B, s * th, s * tw, oc};
    dt_tensor lat = dt_tensor_view(jb->lat.data, DT_F32, 4, ls);
    *tile = dt_tensor_view(jb->slots[i % 2] + j * B * (s * t->L) * (s * t->L) * oc, DT_F32, 4, is);
    DT_TRY(be->ops->copy4d(be, &src, &lat, err));
    jb->r.pool.n = 0;
    return decoder_run(&jb->r, &lat, tile, err);
}

/* Blends row i's tiles with the row above and their left neighbours (in place, in order,
 * as diffusers does), then copies each tile's top-left row_limit square into the image. */
static dt_status blend_row(tiled_job *jb, int64_t i, const dt_tensor *prev, dt_tensor *cur, int64_t oy, dt_err *err)
{
    dt_backend *be = jb->m->be;
    const tiling *t = &jb->t;
    int64_t ox = 0, OH = jb->out->shape[2], OW = jb->out->shape[3];
    for (int64_t j = 0; j < t->cols; j++) {
        if (i > 0) DT_TRY(be->ops->blend_edge(be, &prev[j], &cur[j], 1, (int)t->blend, err));
        if (j > 0) DT_TRY(be->ops->blend_edge(be, &cur[j - 1], &cur[j], 2, (int)t->blend, err));
        dt_tensor crop = cur[j], dst = nhwc_view(jb->out);
        crop.shape[1] = dst.shape[1] = cur[j].shape[1] < t->limit ? cur[j].shape[1] : t->limit;
        crop.shape[2] = dst.shape[2] = cur[j].shape[2] < t->limit ? cur[j].shape[2] : t->limit;
        dst.data = (float *)jb->out->data + oy * OW + ox;
        if (oy + dst.shape[1] > OH || ox + dst.shape[2] > OW)
            return dt_fail(err, DT_EINVAL, "vae: tiled decode overran the image (internal)");
        DT_TRY(be->ops->copy4d(be, &crop, &dst, err));
        ox += crop.shape[2];
    }
    return DT_OK;
}

/* The largest pool among the tile shapes (edge tiles are smaller; planned one by one). */
static dt_status tiled_pool_bytes(vae_model *m, const tiling *t, int64_t B, int64_t h, int64_t w, size_t *need, dt_err *err)
{
    *need = 0;
    for (int64_t i = 0; i < t->rows; i++)
        for (int64_t j = 0; j < t->cols; j++) {
            size_t b;
            DT_TRY(plan_bytes(m, B, tile_len(t, h, i), tile_len(t, w, j), &b, err));
            *need = b > *need ? b : *need;
        }
    return DT_OK;
}

static size_t tile_row_bytes(const vae_model *m, const tiling *t, int64_t B)
{
    int64_t sL = vae_upscale(m) * t->L;
    return (size_t)(t->cols * B * sL * sL * m->cfg.out_channels) * sizeof(float);
}

static dt_status tiled_alloc(tiled_job *jb, dt_arena *a, dt_err *err)
{
    vae_model *m = jb->m;
    int64_t B = jb->latent->shape[0];
    size_t need;
    DT_TRY(tiled_pool_bytes(m, &jb->t, B, jb->latent->shape[2], jb->latent->shape[3], &need, err));
    jb->r = run_new(m, 0);
    jb->r.pool.cap = need;
    jb->r.pool.base = dt_arena_alloc(a, need);
    if (!jb->r.pool.base) return dt_fail(err, DT_ENOMEM, "out of memory: one VAE tile needs %zu bytes of activations", need);
    DT_TRY(arena_nhwc(a, &jb->lat, B, jb->t.L, jb->t.L, m->cfg.latent_channels, err));
    for (int k = 0; k < 2; k++) {
        jb->slots[k] = dt_arena_alloc(a, tile_row_bytes(m, &jb->t, B));
        if (!jb->slots[k]) return dt_fail(err, DT_ENOMEM, "out of memory for the decoded tiles");
    }
    return DT_OK;
}

static size_t r64(size_t n) { return (n + 63) / 64 * 64; }

dt_status vae_decode_bytes(vae_model *m, int64_t B, int64_t h, int64_t w, int tiled, size_t *bytes, dt_err *err)
{
    if (B <= 0 || h <= 0 || w <= 0) return dt_fail(err, DT_EINVAL, "vae_decode_bytes: empty latent");
    int64_t s = vae_upscale(m), L = (int64_t)((double)m->cfg.sample_size / s), lc = m->cfg.latent_channels;
    size_t pool;
    if (!tiled || (h <= L && w <= L)) {
        DT_TRY(plan_bytes(m, B, h, w, &pool, err));
        *bytes = r64((size_t)(B * h * w * lc) * 4) + r64((size_t)(B * s * h * s * w * m->cfg.out_channels) * 4) + r64(pool);
        return DT_OK;
    }
    tiling t;
    DT_TRY(tiling_plan(m, h, w, &t, err));
    DT_TRY(tiled_pool_bytes(m, &t, B, h, w, &pool, err));
    *bytes = r64(pool) + r64((size_t)(B * t.L * t.L * lc) * 4) + 2 * r64(tile_row_bytes(m, &t, B));
    return DT_OK;
}

dt_status vae_decode_tiled(vae_model *m, const dt_tensor *latent, dt_arena *a, dt_tensor *out, dt_err *err)
{
    DT_TRY(check_io(m, latent, out, err));
    tiled_job jb = {.m = m, .latent = latent, .out = out};
    int64_t h = latent->shape[2], w = latent->shape[3];
    int64_t L = (int64_t)((double)m->cfg.sample_size / vae_upscale(m));
    if (h <= L && w <= L) return vae_decode(m, latent, a, out, err);
    DT_TRY(tiling_plan(m, h, w, &jb.t, err));
    DT_TRY(tiled_alloc(&jb, a, err));
    dt_tensor *tiles = malloc((size_t)(2 * jb.t.cols) * sizeof *tiles);
    if (!tiles) return dt_fail(err, DT_ENOMEM, "out of memory");
    dt_status st = DT_OK;
    int64_t oy = 0;
    for (int64_t i = 0; i < jb.t.rows && st == DT_OK; i++) {
        dt_tensor *cur = tiles + (i % 2) * jb.t.cols, *prev = tiles + ((i + 1) % 2) * jb.t.cols;
        for (int64_t j = 0; j < jb.t.cols && st == DT_OK; j++) st = decode_tile(&jb, i, j, &cur[j], err);
        if (st == DT_OK) st = blend_row(&jb, i, prev, cur, oy, err);
        if (st == DT_OK) oy += cur[0].shape[1] < jb.t.limit ? cur[0].shape[1] : jb.t.limit;
    }
    free(tiles);
    return st;
}
