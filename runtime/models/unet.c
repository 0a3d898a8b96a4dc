/* UNet2DConditionModel: building it from its config and the forward pass, written out as
 * diffusers computes it (unets/unet_2d_condition.py, unets/unet_2d_blocks.py
 * CrossAttnDownBlock2D / DownBlock2D / UNetMidBlock2DCrossAttn / CrossAttnUpBlock2D / UpBlock2D,
 * downsampling.py Downsample2D, upsampling.py Upsample2D, embeddings.py Timesteps /
 * TimestepEmbedding). The blocks themselves are in unet_blocks.c. */
#include "unet.h"
#include "unet_blocks.h"
#include "dit_common.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FF_ROWS 2048 /* feed-forward rows per chunk */
#define MAX_SKIPS (1 + UNET_MAX_BLOCKS * (UNET_MAX_LAYERS + 1))

typedef struct {
    int nres;
    unet_resnet *res;
    unet_transformer *attn; /* nres of them (cross blocks), else NULL */
    unet_conv resample;     /* downsamplers.0.conv / upsamplers.0.conv, NULL in the last block */
} unet_block;

struct unet_model {
    unet_config cfg;
    dt_backend *be;
    unet_conv conv_in, conv_out;
    dt_linear *t1, *t2, *a1, *a2; /* time_embedding.linear_1/2, add_embedding.linear_1/2 */
    unet_block down[UNET_MAX_BLOCKS], up[UNET_MAX_BLOCKS];
    unet_resnet mid_res[2];
    unet_transformer mid_attn;
    unet_gnorm norm_out;          /* conv_norm_out */
    dt_stage stage;
};

/* ---- the shapes of one forward ---- */

/* Per level l (latent size / 2^l): the widest activation and the widest transformer. */
typedef struct {
    int n;                         /* levels */
    int64_t act_c[UNET_MAX_BLOCKS]; /* channels of the widest activation */
    int64_t attn_c[UNET_MAX_BLOCKS]; /* channels of the widest transformer (0: none) */
} unet_levels;

static void note(int64_t *a, int l, int64_t c) { if (c > a[l]) a[l] = c; }

/* Walks the blocks as build and forward do: the skip stack's channel counts, and what every
 * level holds. Fails (naming layers_per_block) when the up blocks' skip inputs, as diffusers
 * sizes them, are not what the down blocks push. */
static dt_status walk(const unet_config *c, unet_levels *lv, int *res_in, dt_err *err)
{
    int n = c->nblocks, stack[MAX_SKIPS], ns = 0, k = 0;
    *lv = (unet_levels){.n = n};
    stack[ns++] = c->block_out_channels[0];
    note(lv->act_c, 0, c->in_channels);
    note(lv->act_c, 0, c->block_out_channels[0]);
    int cur = c->block_out_channels[0];
    for (int i = 0; i < n; i++) {
        int co = c->block_out_channels[i];
        for (int j = 0; j < c->layers_per_block[i]; j++) {
            res_in[k++] = cur;
            cur = co;
            note(lv->act_c, i, co);
            if (c->down[i] == UNET_CROSS) note(lv->attn_c, i, co);
            stack[ns++] = co;
        }
        if (i < n - 1) {
            note(lv->act_c, i + 1, co);
            stack[ns++] = co;
        }
    }
    note(lv->attn_c, n - 1, cur); /* mid block */
    for (int i = 0; i < n; i++) {
        int r = n - 1 - i, co = c->block_out_channels[r], nres = c->layers_per_block[r] + 1;
        int in_ch = c->block_out_channels[r - 1 < 0 ? 0 : r - 1];
        for (int j = 0; j < nres; j++) {
            if (ns == 0) return dt_fail(err, DT_EUNSUPPORTED, "unet config: \"layers_per_block\": the up blocks take more skip connections than the down blocks give");
            int want = j == nres - 1 ? in_ch : co, got = stack[--ns];
            if (got != want)
                return dt_fail(err, DT_EUNSUPPORTED, "unet config: \"layers_per_block\" up block %d resnet %d takes a %d-channel "
                               "skip connection, the down blocks give %d", i, j, want, got);
            res_in[k++] = cur + got;
            note(lv->act_c, r, cur + got);
            cur = co;
            note(lv->act_c, r, co);
            if (c->up[i] == UNET_CROSS) note(lv->attn_c, r, co);
        }
        if (i < n - 1) note(lv->act_c, r - 1, co); /* upsampled */
    }
    note(lv->act_c, 0, c->out_channels);
    return DT_OK;
}

/* Floats of each scratch buffer for a B x h x w latent and T tokens. */
typedef struct {
    size_t slot, tok, kv, ff, tp;
} unet_sizes;

static unet_sizes sizes(const unet_config *c, const unet_levels *lv, int64_t B, int64_t h, int64_t w, int64_t T)
{
    unet_sizes z = {0};
    int64_t maxc = 0;
    for (int l = 0; l < lv->n; l++) {
        int64_t hl = h >> l, wl = w >> l, rows = B * hl * wl;
        size_t a = (size_t)(rows * lv->act_c[l]), t = (size_t)(rows * lv->attn_c[l]);
        z.slot = a > z.slot ? a : z.slot;
        z.tok = t > z.tok ? t : z.tok;
        if (lv->attn_c[l] > maxc) maxc = lv->attn_c[l];
        size_t ffr = (size_t)(rows < FF_ROWS ? rows : FF_ROWS) * 12 * (size_t)lv->attn_c[l];
        z.ff = ffr > z.ff ? ffr : z.ff;
    }
    z.kv = (size_t)(B * T * 2 * maxc);
    z.tp = (size_t)B * UNET_MAX_CHANNELS;
    return z;
}

/* Arena bytes one forward takes (the same allocations as unet_forward). */
static double arena_bytes(const unet_config *c, int64_t B, int64_t h, int64_t w, int64_t T)
{
    unet_levels lv;
    int res_in[MAX_SKIPS * 2];
    dt_err e = {0};
    if (walk(c, &lv, res_in, &e) != DT_OK) return 0;
    unet_sizes z = sizes(c, &lv, B, h, w, T);
    double skips = 0;
    skips += (double)B * h * w * c->block_out_channels[0];
    for (int i = 0; i < c->nblocks; i++) {
        double px = (double)B * (h >> i) * (w >> i);
        skips += px * c->block_out_channels[i] * c->layers_per_block[i];
        if (i < c->nblocks - 1) skips += (double)B * (h >> (i + 1)) * (w >> (i + 1)) * c->block_out_channels[i];
    }
    double io = (double)B * h * w * (c->in_channels + c->out_channels) + (double)B * T + 6.0 * B * c->time_embed_dim +
                (double)B * (c->block_out_channels[0] + c->projection_dim);
    return sizeof(float) * (4.0 * z.slot + 5.0 * z.tok + 3.0 * z.tok + z.kv + z.ff + z.tp + skips + io) + 64.0 * (12 + MAX_SKIPS);
}

/* ---- building ---- */

static dt_status build_blocks(unet_model *m, unet_loader *l, dt_err *err)
{
    const unet_config *c = &m->cfg;
    int n = c->nblocks, cur = c->block_out_channels[0];
    char p[128];
    unet_levels lv;
    int res_in[MAX_SKIPS * 2], k = 0;
    DT_TRY(walk(c, &lv, res_in, err));
    for (int i = 0; i < n; i++) {
        unet_block *b = &m->down[i];
        int co = c->block_out_channels[i];
        b->nres = c->layers_per_block[i];
        b->res = calloc((size_t)b->nres, sizeof *b->res);
        if (c->down[i] == UNET_CROSS) b->attn = calloc((size_t)b->nres, sizeof *b->attn);
        if (!b->res || (c->down[i] == UNET_CROSS && !b->attn)) return dt_fail(err, DT_ENOMEM, "out of memory");
        for (int j = 0; j < b->nres; j++) {
            snprintf(p, sizeof p, "down_blocks.%d.resnets.%d", i, j);
            DT_TRY(unet_resnet_load(l, p, res_in[k++], co, &b->res[j], err));
            if (!b->attn) continue;
            snprintf(p, sizeof p, "down_blocks.%d.attentions.%d", i, j);
            DT_TRY(unet_transformer_load(l, p, co, c->heads[i], c->transformer_layers[i], &b->attn[j], err));
        }
        cur = co;
        if (i == n - 1) continue;
        /* Downsample2D: padding 0 is diffusers' F.pad(0, 1, 0, 1) before an unpadded conv */
        snprintf(p, sizeof p, "down_blocks.%d.downsamplers.0.conv", i);
        DT_TRY(unet_conv_load(l, p, co, co, 3, 2, c->downsample_padding, 1, l->dt, &b->resample, err));
    }
    DT_TRY(unet_resnet_load(l, "mid_block.resnets.0", cur, cur, &m->mid_res[0], err));
    DT_TRY(unet_transformer_load(l, "mid_block.attentions.0", cur, c->heads[n - 1], c->transformer_layers[n - 1], &m->mid_attn, err));
    DT_TRY(unet_resnet_load(l, "mid_block.resnets.1", cur, cur, &m->mid_res[1], err));
    for (int i = 0; i < n; i++) {
        unet_block *b = &m->up[i];
        int r = n - 1 - i, co = c->block_out_channels[r];
        b->nres = c->layers_per_block[r] + 1;
        b->res = calloc((size_t)b->nres, sizeof *b->res);
        if (c->up[i] == UNET_CROSS) b->attn = calloc((size_t)b->nres, sizeof *b->attn);
        if (!b->res || (c->up[i] == UNET_CROSS && !b->attn)) return dt_fail(err, DT_ENOMEM, "out of memory");
        for (int j = 0; j < b->nres; j++) {
            snprintf(p, sizeof p, "up_blocks.%d.resnets.%d", i, j);
            DT_TRY(unet_resnet_load(l, p, res_in[k++], co, &b->res[j], err));
            if (!b->attn) continue;
            snprintf(p, sizeof p, "up_blocks.%d.attentions.%d", i, j);
            DT_TRY(unet_transformer_load(l, p, co, c->heads[r], c->transformer_layers[r], &b->attn[j], err));
        }
        if (i == n - 1) continue;
        snprintf(p, sizeof p, "up_blocks.%d.upsamplers.0.conv", i);
        DT_TRY(unet_conv_load(l, p, co, co, 3, 1, 1, 1, l->dt, &b->resample, err));
    }
    return DT_OK;
}

static dt_status build(unet_model *m, dt_weight_source *src, dt_err *err)
{
    const unet_config *c = &m->cfg;
    dt_backend *be = m->be;
    int c0 = c->block_out_channels[0], tok = 2 * c->sample_size * c->sample_size;
    unet_loader l = {be, src, c->norm_num_groups, c->time_embed_dim, c->cross_attention_dim, c->use_linear_projection,
                     tok, 2 * 77, be->cfg.compute};
    /* conv_in, conv_out and the conditioning layers (one row per sample) stay f32 in a bf16
     * run, as the VAE's latent-side convolutions and PixArt's embedders do: they cost nothing
     * and their rounding reaches every block. */
    DT_TRY(unet_conv_load(&l, "conv_in", c->in_channels, c0, c->conv_in_kernel, 1, c->conv_in_kernel / 2,
                          c->conv_in_kernel / 2, DT_F32, &m->conv_in, err));
    DT_TRY(dt_load_linear1(be, src, "time_embedding.linear_1", c0, c->time_embed_dim, 1, DT_ACT_SILU, 2, DT_F32, &m->t1, err));
    DT_TRY(dt_load_linear1(be, src, "time_embedding.linear_2", c->time_embed_dim, c->time_embed_dim, 1, DT_ACT_NONE, 2, DT_F32,
                           &m->t2, err));
    if (c->text_time) {
        DT_TRY(dt_load_linear1(be, src, "add_embedding.linear_1", c->projection_dim, c->time_embed_dim, 1, DT_ACT_SILU, 2, DT_F32,
                               &m->a1, err));
        DT_TRY(dt_load_linear1(be, src, "add_embedding.linear_2", c->time_embed_dim, c->time_embed_dim, 1, DT_ACT_NONE, 2, DT_F32,
                               &m->a2, err));
    }
    DT_TRY(build_blocks(m, &l, err));
    DT_TRY(unet_gnorm_load(&l, "conv_norm_out", c0, &m->norm_out, err));
    return unet_conv_load(&l, "conv_out", c0, c->out_channels, c->conv_out_kernel, 1, c->conv_out_kernel / 2,
                          c->conv_out_kernel / 2, DT_F32, &m->conv_out, err);
}

/* ---- parameters and FLOPs (the same walk as build and forward) ---- */

typedef struct {
    double params, flops;
    double B, T;
} tally;

static void t_conv(tally *t, double px, int cin, int cout, int k)
{
    t->params += (double)cin * cout * k * k + cout;
    t->flops += 2.0 * t->B * px * cin * cout * k * k;
}

static void t_lin(tally *t, double rows, double in, double out, int bias)
{
    t->params += in * out + (bias ? out : 0);
    t->flops += 2.0 * rows * in * out;
}

static void t_resnet(tally *t, const unet_config *c, double px, int cin, int cout)
{
    t->params += 2.0 * cin + 2.0 * cout;
    t_conv(t, px, cin, cout, 3);
    t_lin(t, t->B, c->time_embed_dim, cout, 1);
    t_conv(t, px, cout, cout, 3);
    if (cin != cout) t_conv(t, px, cin, cout, 1);
}

static void t_transformer(tally *t, const unet_config *c, double N, int C, int depth)
{
    double M = t->B * N;
    t->params += 2.0 * C;
    t_lin(t, M, C, C, 1);
    t_lin(t, M, C, C, 1);
    for (int i = 0; i < depth; i++) {
        t->params += 6.0 * C;
        t_lin(t, M, C, 3.0 * C, 0);
        t_lin(t, M, C, C, 1);
        t_lin(t, M, C, C, 0);
        t_lin(t, t->B * t->T, c->cross_attention_dim, 2.0 * C, 0);
        t_lin(t, M, C, C, 1);
        t_lin(t, M, C, 8.0 * C, 1);
        t_lin(t, M, 4.0 * C, C, 1);
        t->flops += 4.0 * t->B * N * N * C + 4.0 * t->B * N * t->T * C; /* QKᵀ and PV, self and cross */
    }
}

/* Parameters, and the FLOPs of one forward of B samples at h x w with T tokens. */
static dt_status count(const unet_config *c, double B, int h, int w, double T, tally *t, dt_err *err)
{
    unet_levels lv;
    int res_in[MAX_SKIPS * 2], k = 0, n = c->nblocks, c0 = c->block_out_channels[0];
    DT_TRY(walk(c, &lv, res_in, err));
    *t = (tally){.B = B, .T = T};
    double px0 = (double)h * w;
    t_conv(t, px0, c->in_channels, c0, c->conv_in_kernel);
    t_lin(t, B, c0, c->time_embed_dim, 1);
    t_lin(t, B, c->time_embed_dim, c->time_embed_dim, 1);
    if (c->text_time) {
        t_lin(t, B, c->projection_dim, c->time_embed_dim, 1);
        t_lin(t, B, c->time_embed_dim, c->time_embed_dim, 1);
    }
    for (int i = 0; i < n; i++) {
        double px = (double)(h >> i) * (w >> i);
        int co = c->block_out_channels[i];
        for (int j = 0; j < c->layers_per_block[i]; j++) {
            t_resnet(t, c, px, res_in[k++], co);
            if (c->down[i] == UNET_CROSS) t_transformer(t, c, px, co, c->transformer_layers[i]);
        }
        if (i < n - 1) t_conv(t, (double)(h >> (i + 1)) * (w >> (i + 1)), co, co, 3);
    }
    double pxm = (double)(h >> (n - 1)) * (w >> (n - 1));
    int cm = c->block_out_channels[n - 1];
    t_resnet(t, c, pxm, cm, cm);
    t_transformer(t, c, pxm, cm, c->transformer_layers[n - 1]);
    t_resnet(t, c, pxm, cm, cm);
    for (int i = 0; i < n; i++) {
        int r = n - 1 - i, co = c->block_out_channels[r];
        double px = (double)(h >> r) * (w >> r);
        for (int j = 0; j < c->layers_per_block[r] + 1; j++) {
            t_resnet(t, c, px, res_in[k++], co);
            if (c->up[i] == UNET_CROSS) t_transformer(t, c, px, co, c->transformer_layers[r]);
        }
        if (i < n - 1) t_conv(t, (double)(h >> (r - 1)) * (w >> (r - 1)), co, co, 3);
    }
    t->params += 2.0 * c0;
    t_conv(t, px0, c0, c->out_channels, c->conv_out_kernel);
    return DT_OK;
}

int64_t unet_param_count(const unet_config *c)
{
    tally t;
    dt_err e = {0};
    return count(c, 1, 1 << (c->nblocks - 1), 1 << (c->nblocks - 1), 1, &t, &e) == DT_OK ? (int64_t)t.params : 0;
}

double unet_matmul_flops(const unet_config *c, int batch, int h, int w, int T)
{
    tally t;
    dt_err e = {0};
    return count(c, batch, h, w, T, &t, &e) == DT_OK ? t.flops : 0;
}

/* ---- create / free ---- */

static void free_block(dt_backend *be, unet_block *b)
{
    for (int j = 0; b->res && j < b->nres; j++) unet_resnet_free(be, &b->res[j]);
    for (int j = 0; b->attn && j < b->nres; j++) unet_transformer_free(be, &b->attn[j]);
    free(b->res);
    free(b->attn);
    unet_conv_free(be, &b->resample);
    *b = (unet_block){0};
}

void unet_free(unet_model *m)
{
    if (!m) return;
    dt_backend *be = m->be;
    unet_conv_free(be, &m->conv_in);
    unet_conv_free(be, &m->conv_out);
    dt_linear *lins[] = {m->t1, m->t2, m->a1, m->a2};
    for (int i = 0; i < 4; i++) be->ops->linear_destroy(lins[i]);
    for (int i = 0; i < m->cfg.nblocks; i++) {
        free_block(be, &m->down[i]);
        free_block(be, &m->up[i]);
    }
    unet_resnet_free(be, &m->mid_res[0]);
    unet_resnet_free(be, &m->mid_res[1]);
    unet_transformer_free(be, &m->mid_attn);
    unet_gnorm_free(&m->norm_out);
    dt_stage_free(&m->stage);
    free(m);
}

dt_status unet_create(dt_backend *be, const unet_config *cfg, dt_weight_source *src, unet_model **out, dt_err *err)
{
    *out = NULL;
    DT_TRY(unet_config_validate(cfg, "unet config", err));
    unet_model *m = calloc(1, sizeof *m);
    if (!m) return dt_fail(err, DT_ENOMEM, "out of memory");
    m->cfg = *cfg;
    m->be = be;
    dt_status st = build(m, src, err);
    if (st != DT_OK) {
        unet_free(m);
        return st;
    }
    *out = m;
    return DT_OK;
}

const unet_config *unet_get_config(const unet_model *m) { return &m->cfg; }

/* ---- forward ---- */

#define LIN(l, x, y) DT_TRY(be->ops->linear_forward(be, (l), (x), (y), err))

static dt_tensor t3d(void *data, int64_t a, int64_t b, int64_t c) { int64_t s[3] = {a, b, c}; return dt_tensor_view(data, DT_F32, 3, s); }

static int is_f32(const dt_tensor *t) { return t->dtype == DT_F32 && dt_tensor_is_contiguous(t); }

static dt_status check_inputs(const unet_config *c, const dt_denoiser_inputs *in, const dt_tensor *out, dt_err *err)
{
    const dt_tensor *hs = in->hidden_states, *eh = in->encoder_hidden_states;
    int mult = 1 << (c->nblocks - 1);
    if (!hs || hs->ndim != 4 || hs->shape[1] != c->in_channels || hs->shape[0] <= 0 || !is_f32(hs))
        return dt_fail(err, DT_EINVAL, "sample: expected contiguous f32 [B, %d, h, w]", c->in_channels);
    if (hs->shape[2] <= 0 || hs->shape[3] <= 0 || hs->shape[2] % mult || hs->shape[3] % mult)
        return dt_fail(err, DT_EINVAL, "sample: height and width must be positive multiples of %d (2^downsamplers), got %lldx%lld",
                       mult, (long long)hs->shape[2], (long long)hs->shape[3]);
    if (!eh || eh->ndim != 3 || eh->shape[0] != hs->shape[0] || eh->shape[2] != c->cross_attention_dim || eh->shape[1] <= 0 || !is_f32(eh))
        return dt_fail(err, DT_EINVAL, "encoder_hidden_states: expected contiguous f32 [%lld, T, %d]", (long long)hs->shape[0],
                       c->cross_attention_dim);
    if (!in->timestep) return dt_fail(err, DT_EINVAL, "timestep: missing");
    if (c->text_time && !in->text_embeds)
        return dt_fail(err, DT_EINVAL, "text_embeds: required by this model (addition_embed_type \"text_time\"), [B, %d]", c->text_embeds_dim);
    if (c->text_time && !in->time_ids)
        return dt_fail(err, DT_EINVAL, "time_ids: required by this model (addition_embed_type \"text_time\"), [B, %d]", UNET_TIME_IDS);
    if (!out || out->ndim != 4 || out->shape[0] != hs->shape[0] || out->shape[1] != c->out_channels ||
        out->shape[2] != hs->shape[2] || out->shape[3] != hs->shape[3] || !is_f32(out))
        return dt_fail(err, DT_EINVAL, "output: expected contiguous f32 [B, %d, h, w]", c->out_channels);
    return DT_OK;
}

/* An NCHW tensor seen as [B, H, W, C]. */
static dt_tensor nhwc_view(const dt_tensor *t)
{
    dt_tensor v = *t;
    int64_t C = t->shape[1];
    v.shape[1] = t->shape[2]; v.shape[2] = t->shape[3]; v.shape[3] = C;
    v.strides[1] = t->strides[2]; v.strides[2] = t->strides[3]; v.strides[3] = t->strides[1];
    return v;
}

static dt_status arena2(dt_arena *a, dt_tensor *t, int64_t r, int64_t c, dt_err *err)
{
    int64_t s[2] = {r, c};
    return dt_arena_tensor(a, t, DT_F32, 2, s, err);
}

/* emb [B, time_embed_dim] = time_embedding(Timesteps(t)) (+ add_embedding(cat(text_embeds,
 * Timesteps(time_ids))) with text_time); the sinusoids are computed on the host. */
static dt_status time_embedding(unet_model *m, const dt_denoiser_inputs *in, int B, dt_arena *a, dt_tensor *emb, dt_err *err)
{
    const unet_config *c = &m->cfg;
    dt_backend *be = m->be;
    int c0 = c->block_out_channels[0], P = c->projection_dim, Td = c->time_embed_dim;
    float *h = dt_stage_get(&m->stage, (size_t)B * (size_t)(c0 > P ? c0 : P));
    if (!h) return dt_fail(err, DT_ENOMEM, "out of memory");
    dt_tensor tp, hid;
    DT_TRY(arena2(a, &tp, B, c0, err));
    DT_TRY(arena2(a, &hid, B, Td, err));
    DT_TRY(arena2(a, emb, B, Td, err));
    dt_timestep_embedding(in->timestep, B, c0, c->flip_sin_to_cos, c->freq_shift, h);
    DT_TRY(be->ops->tensor_set(be, &tp, h, dt_tensor_nbytes(&tp), err));
    LIN(m->t1, &tp, &hid);
    LIN(m->t2, &hid, emb);
    if (!c->text_time) return DT_OK;
    int ted = c->text_embeds_dim, atd = c->addition_time_embed_dim;
    for (int b = 0; b < B; b++) { /* add_embeds[b] = cat(text_embeds[b], time_proj(time_ids[b]).flatten()) */
        memcpy(h + (size_t)b * P, in->text_embeds + (size_t)b * ted, (size_t)ted * sizeof(float));
        dt_timestep_embedding(in->time_ids + (size_t)b * UNET_TIME_IDS, UNET_TIME_IDS, atd, c->flip_sin_to_cos, c->freq_shift,
                              h + (size_t)b * P + ted);
    }
    dt_tensor ap, aug;
    DT_TRY(arena2(a, &ap, B, P, err));
    DT_TRY(arena2(a, &aug, B, Td, err));
    DT_TRY(be->ops->tensor_set(be, &ap, h, dt_tensor_nbytes(&ap), err));
    LIN(m->a1, &ap, &hid);
    LIN(m->a2, &hid, &aug);
    dt_tensor e3 = t3d(emb->data, 1, B, Td), g3 = t3d(aug.data, 1, B, Td);
    return be->ops->gated_add(be, &e3, &g3, NULL, err);
}

static dt_status scratch_alloc(const unet_config *c, dt_arena *a, int64_t B, int64_t h, int64_t w, int64_t T, unet_scratch *s,
                               dt_err *err)
{
    unet_levels lv;
    int res_in[MAX_SKIPS * 2];
    DT_TRY(walk(c, &lv, res_in, err));
    unet_sizes z = sizes(c, &lv, B, h, w, T);
    float **bufs[] = {&s->slot[0], &s->slot[1], &s->slot[2], &s->slot[3], &s->ts, &s->xn, &s->ao, &s->o, &s->qkv, &s->kv, &s->ff, &s->tp};
    size_t n[] = {z.slot, z.slot, z.slot, z.slot, z.tok, z.tok, z.tok, z.tok, 3 * z.tok, z.kv, z.ff, z.tp};
    for (size_t i = 0; i < sizeof n / sizeof *n; i++) {
        *bufs[i] = dt_arena_alloc(a, (n[i] ? n[i] : 1) * sizeof(float));
        if (!*bufs[i]) return dt_fail(err, DT_ENOMEM, "out of memory: the U-Net step needs %zu more bytes", n[i] * sizeof(float));
    }
    s->ff_rows = FF_ROWS;
    return DT_OK;
}

/* The skip connections: copies of the stream as the down blocks leave it. */
typedef struct {
    dt_tensor t[MAX_SKIPS];
    int n;
} skip_stack;

static dt_status push(unet_run *r, dt_arena *a, skip_stack *st, const unet_act *x, dt_err *err)
{
    if (st->n == MAX_SKIPS) return dt_fail(err, DT_EINVAL, "unet: too many skip connections (internal)");
    dt_tensor *t = &st->t[st->n];
    DT_TRY(dt_arena_tensor(a, t, DT_F32, 4, x->t.shape, err));
    st->n++;
    return r->be->ops->copy(r->be, &x->t, t, err);
}

/* x = cat([x, skip], channels), into the other stream slot. */
static dt_status concat(unet_run *r, skip_stack *st, unet_act *x, dt_err *err)
{
    dt_backend *be = r->be;
    if (st->n == 0) return dt_fail(err, DT_EINVAL, "unet: skip stack empty (internal)");
    const dt_tensor *sk = &st->t[--st->n];
    int64_t B = x->t.shape[0], H = x->t.shape[1], W = x->t.shape[2], C1 = x->t.shape[3], C2 = sk->shape[3], Ct = C1 + C2;
    unet_act y = unet_act_in(r, 1 - x->slot, B, H, W, Ct);
    dt_tensor d1 = x->t, d2 = *sk;
    d1.data = y.t.data;
    d2.data = (float *)y.t.data + C1;
    int64_t st4[4] = {H * W * Ct, W * Ct, Ct, 1};
    memcpy(d1.strides, st4, sizeof st4);
    memcpy(d2.strides, st4, sizeof st4);
    DT_TRY(be->ops->copy4d(be, &x->t, &d1, err));
    DT_TRY(be->ops->copy4d(be, sk, &d2, err));
    *x = y;
    return DT_OK;
}

static dt_status downsample(unet_run *r, const unet_conv *c, unet_act *x, dt_err *err)
{
    unet_act y = unet_act_in(r, 1 - x->slot, x->t.shape[0], x->t.shape[1] / 2, x->t.shape[2] / 2, x->t.shape[3]);
    DT_TRY(unet_conv_forward(r->be, c, &x->t, &y.t, 0, err));
    *x = y;
    return DT_OK;
}

/* Upsample2D: nearest 2x (into the temporary slot), then the 3x3 conv back into the stream. */
static dt_status upsample(unet_run *r, const unet_conv *c, unet_act *x, dt_err *err)
{
    int64_t B = x->t.shape[0], H = 2 * x->t.shape[1], W = 2 * x->t.shape[2], C = x->t.shape[3];
    unet_act u = unet_act_in(r, 2, B, H, W, C), y = unet_act_in(r, x->slot, B, H, W, C);
    DT_TRY(r->be->ops->upsample_nearest2x(r->be, &x->t, &u.t, err));
    DT_TRY(unet_conv_forward(r->be, c, &u.t, &y.t, 0, err));
    *x = y;
    return DT_OK;
}

static dt_status down_path(unet_model *m, unet_run *r, dt_arena *a, skip_stack *st, unet_act *x, dt_err *err)
{
    DT_TRY(push(r, a, st, x, err));
    for (int i = 0; i < m->cfg.nblocks; i++) {
        const unet_block *b = &m->down[i];
        for (int j = 0; j < b->nres; j++) {
            DT_TRY(unet_resnet_forward(r, &b->res[j], x, err));
            if (b->attn) DT_TRY(unet_transformer_forward(r, &b->attn[j], x, err));
            DT_TRY(push(r, a, st, x, err));
        }
        if (!unet_conv_present(&b->resample)) continue;
        DT_TRY(downsample(r, &b->resample, x, err));
        DT_TRY(push(r, a, st, x, err));
    }
    return DT_OK;
}

static dt_status up_path(unet_model *m, unet_run *r, skip_stack *st, unet_act *x, dt_err *err)
{
    DT_TRY(unet_resnet_forward(r, &m->mid_res[0], x, err));
    DT_TRY(unet_transformer_forward(r, &m->mid_attn, x, err));
    DT_TRY(unet_resnet_forward(r, &m->mid_res[1], x, err));
    for (int i = 0; i < m->cfg.nblocks; i++) {
        const unet_block *b = &m->up[i];
        for (int j = 0; j < b->nres; j++) {
            DT_TRY(concat(r, st, x, err));
            DT_TRY(unet_resnet_forward(r, &b->res[j], x, err));
            if (b->attn) DT_TRY(unet_transformer_forward(r, &b->attn[j], x, err));
        }
        if (unet_conv_present(&b->resample)) DT_TRY(upsample(r, &b->resample, x, err));
    }
    return DT_OK;
}

dt_status unet_forward(unet_model *m, const dt_denoiser_inputs *in, dt_arena *a, dt_tensor *out, dt_err *err)
{
    const unet_config *c = &m->cfg;
    dt_backend *be = m->be;
    DT_TRY(check_inputs(c, in, out, err));
    int B = (int)in->hidden_states->shape[0], T = (int)in->encoder_hidden_states->shape[1];
    int64_t H = in->hidden_states->shape[2], W = in->hidden_states->shape[3];
    unet_scratch s;
    DT_TRY(scratch_alloc(c, a, B, H, W, T, &s, err));
    dt_tensor emb, semb;
    DT_TRY(time_embedding(m, in, B, a, &emb, err));
    DT_TRY(arena2(a, &semb, B, c->time_embed_dim, err));
    DT_TRY(be->ops->activation(be, DT_ACT_SILU, &emb, &semb, err)); /* every resnet's time_emb_proj input */
    float *key_bias;
    DT_TRY(dit_key_bias(be, in->encoder_attention_mask, B, 1, T, a, &m->stage, &key_bias, err));
    dt_attn_bias bias = {.key = key_bias};
    unet_run r = {be, c->norm_num_groups, c->norm_eps, B, T, &semb, in->encoder_hidden_states, key_bias ? &bias : NULL, &s};

    dt_tensor xin, src = nhwc_view(in->hidden_states);
    int64_t xs[4] = {B, H, W, c->in_channels};
    DT_TRY(dt_arena_tensor(a, &xin, DT_F32, 4, xs, err));
    DT_TRY(be->ops->copy4d(be, &src, &xin, err));
    unet_act x = unet_act_in(&r, 0, B, H, W, c->block_out_channels[0]);
    DT_TRY(unet_conv_forward(be, &m->conv_in, &xin, &x.t, 0, err));
    skip_stack *st = malloc(sizeof *st);
    if (!st) return dt_fail(err, DT_ENOMEM, "out of memory");
    st->n = 0;
    dt_status rs = down_path(m, &r, a, st, &x, err);
    if (rs == DT_OK) rs = up_path(m, &r, st, &x, err);
    free(st);
    DT_TRY(rs);

    unet_act h = unet_act_in(&r, 2, B, H, W, c->block_out_channels[0]);
    int64_t sg[1] = {c->block_out_channels[0]};
    dt_tensor g = dt_tensor_view(m->norm_out.gamma, DT_F32, 1, sg), bb = dt_tensor_view(m->norm_out.beta, DT_F32, 1, sg);
    DT_TRY(be->ops->group_norm(be, &x.t, c->norm_num_groups, &g, &bb, c->norm_eps, DT_ACT_SILU, &h.t, err));
    unet_act y = unet_act_in(&r, 3, B, H, W, c->out_channels);
    DT_TRY(unet_conv_forward(be, &m->conv_out, &h.t, &y.t, 0, err));
    dt_tensor dst = nhwc_view(out);
    return be->ops->copy4d(be, &y.t, &dst, err);
}

/* ---- the denoiser interface (denoiser.h) ---- */

static void info_of(const unet_config *c, dt_denoiser_info *d)
{
    *d = (dt_denoiser_info){.class_name = "UNet2DConditionModel", .latent_rank = 4, .in_channels = c->in_channels,
                            .out_channels = c->out_channels, .sample_size = c->sample_size, .patch_size = 1,
                            .size_multiple = 1 << (c->nblocks - 1),
                            .caption_channels = c->cross_attention_dim, .inner = c->block_out_channels[0],
                            .param_count = unet_param_count(c), .latent_input = "sample"};
    if (c->text_time) d->added_text_dim = c->text_embeds_dim, d->added_time_ids = UNET_TIME_IDS;
}

static void list_ints(const int *v, int n, char *buf, size_t size)
{
    buf[0] = 0;
    for (int i = 0; i < n; i++) snprintf(buf + strlen(buf), size - strlen(buf), "%s%d", i ? ", " : "", v[i]);
}

static dt_status den_describe(const char *dir, dt_denoiser_info *info, char *head, char *tail, size_t n, dt_err *err)
{
    unet_config c;
    DT_TRY(unet_config_load(dir, &c, err));
    info_of(&c, info);
    char boc[128], heads[128], tl[128], types[256] = "";
    list_ints(c.block_out_channels, c.nblocks, boc, sizeof boc);
    list_ints(c.heads, c.nblocks, heads, sizeof heads);
    list_ints(c.transformer_layers, c.nblocks, tl, sizeof tl);
    for (int i = 0; i < c.nblocks; i++)
        snprintf(types + strlen(types), sizeof types - strlen(types), "%s%s", i ? ", " : "", c.down[i] == UNET_CROSS ? "cross" : "plain");
    snprintf(head, n,
             "  architecture: UNet2DConditionModel (%s)\n"
             "  blocks: [%s] channels, [%s] down, %d resnets each, heads [%s], transformer layers [%s]\n"
             "  cross_attention_dim: %d, %s projection, sample_size: %d, in/out channels: %d/%d%s\n",
             c.text_time ? "SDXL style, text_time added conditions" : "SD style", boc, types, c.layers_per_block[0], heads, tl,
             c.cross_attention_dim, c.use_linear_projection ? "linear" : "conv", c.sample_size, c.in_channels, c.out_channels,
             c.upcast_attention ? ", upcast_attention" : "");
    int s = c.sample_size, T = 77;
    double params = (double)info->param_count, act = arena_bytes(&c, 2, s, s, T);
    snprintf(tail, n, "  estimated memory, CFG batch 2 at %dx%d px: f32 %.1f MB, bf16 %.1f MB (weights + activations)\n",
             s * 8, s * 8, (params * 4 + act) / 1e6, (params * 2 + act) / 1e6);
    return DT_OK;
}

static dt_status create_as(int sdxl, dt_backend *be, const char *dir, int sample_size, int layers, dt_weight_source *src,
                           void **model, dt_err *err)
{
    unet_config c;
    if (layers > 0) return dt_fail(err, DT_EUNSUPPORTED, "--layers: a U-Net is built whole (its blocks are not a stack of equal layers)");
    if (dir) DT_TRY(unet_config_load(dir, &c, err));
    else c = sdxl ? unet_config_sdxl(sample_size) : unet_config_sd15(sample_size);
    return unet_create(be, &c, src, (unet_model **)model, err);
}

static dt_status den_create(dt_backend *be, const char *dir, int sample_size, int layers, dt_weight_source *src, void **model,
                            dt_err *err)
{
    return create_as(0, be, dir, sample_size, layers, src, model, err);
}

static dt_status den_create_sdxl(dt_backend *be, const char *dir, int sample_size, int layers, dt_weight_source *src, void **model,
                                 dt_err *err)
{
    return create_as(1, be, dir, sample_size, layers, src, model, err);
}

static void den_info(const void *m, dt_denoiser_info *out) { info_of(&((const unet_model *)m)->cfg, out); }

static dt_status den_forward(void *m, const dt_denoiser_inputs *in, dt_arena *a, dt_tensor *out, dt_err *err)
{
    return unet_forward(m, in, a, out, err);
}

/* The arena of one forward and the attention score block (the rest stays in the backend). */
#define ATTN_SCORE_BYTES 48e6
static double den_step_bytes(const void *m, int B, int frames, int h, int w, int T)
{
    (void)frames;
    return arena_bytes(&((const unet_model *)m)->cfg, B, h, w, T) + ATTN_SCORE_BYTES;
}

/* h, w in patches: a U-Net's patch is one latent pixel (the info's patch_size 1). */
static double den_flops(const void *m, int batch, int frames, int h, int w, int T)
{
    (void)frames;
    return unet_matmul_flops(&((const unet_model *)m)->cfg, batch, h, w, T);
}

/* den_step_bytes from config.json alone (`ditrt info`: a U-Net is built only whole). */
static dt_status den_config_step_bytes(const char *dir, int B, int frames, int h, int w, int T, double *bytes, dt_err *err)
{
    (void)frames;
    unet_config c;
    DT_TRY(unet_config_load(dir, &c, err));
    *bytes = arena_bytes(&c, B, h, w, T) + ATTN_SCORE_BYTES;
    return DT_OK;
}

static void den_free(void *m) { unet_free(m); }

/* diffusers' Stable Diffusion pipelines (pipeline_stable_diffusion.py, _xl.py): CLIP's 77 tokens
 * unmasked; SD: last_hidden_state, clip_skip through the final norm; SDXL: both encoders'
 * hidden_states[-2] concatenated, text_embeds and time_ids, zeros for an empty negative prompt,
 * the VAE upcast. pipelines[0] is also what `ditrt bench` reads. */
static const dt_pipeline_class sd_pipelines[] = {
    {.name = "StableDiffusionPipeline", .max_len = 77, .fixed_len = 1, .caption_mask_off = 1, .no_clean_caption = 1,
     .text_encoders = 1, .clip_skip_from_end = 1, .clip_skip_norm = 1},
    {.name = "StableDiffusionXLPipeline", .max_len = 77, .fixed_len = 1, .caption_mask_off = 1, .no_clean_caption = 1,
     .text_encoders = 2, .hidden_from_end = 2, .clip_skip_from_end = 2, .added_conditions = 1,
     .zeros_for_empty_negative = 1, .vae_upcast = 1},
};

const dt_denoiser_class dt_unet_class = {
    .class_name = "UNet2DConditionModel", .preset = "sd15-unet", .pipelines = sd_pipelines, .npipelines = 2,
    .describe = den_describe, .create = den_create, .info = den_info, .forward = den_forward,
    .set_attn_hook = NULL, .set_resume = NULL, /* no DiT blocks for attention plans */
    .step_bytes = den_step_bytes, .config_step_bytes = den_config_step_bytes, .matmul_flops = den_flops, .free = den_free,
    .linear_role = unet_linear_role,
};

/* The same class under its second preset (the registry finds folders by dt_unet_class). */
const dt_denoiser_class dt_unet_sdxl_class = {
    .class_name = "UNet2DConditionModel", .preset = "sdxl-unet", .pipelines = sd_pipelines, .npipelines = 2,
    .describe = den_describe, .create = den_create_sdxl, .info = den_info, .forward = den_forward,
    .set_attn_hook = NULL, .set_resume = NULL,
    .step_bytes = den_step_bytes, .config_step_bytes = den_config_step_bytes, .matmul_flops = den_flops, .free = den_free,
    .linear_role = unet_linear_role,
};
