/* Open-Sora STDiT: config, loading and the forward pass, written out as the repository's
 * stdit.py and layers/blocks.py compute it (torch reference: scripts/fixtures/stdit.py).
 * The timestep embedder, caption MLP and final layer are the PixArt layers of dit_common.c
 * under other names; the block is this file's own (one modulation for both attentions, the
 * temporal one on the raw stream, cross-attention over the whole video). */
#include "stdit.h"
#include "dit_block.h"
#include "dit_common.h"
#include "runtime/core/json.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct stdit_model {
    stdit_config cfg;
    dt_backend *be;
    dt_linear *patch;          /* x_embedder.proj as a GEMM over patchified frames */
    dit_adaln_single ada;      /* t_embedder.mlp.0/.2, t_block.1 */
    dit_caption_proj cap;      /* y_embedder.y_proj.fc1/.fc2 */
    dt_linear *final;          /* final_layer.linear */
    float *sst_final;          /* final_layer.scale_shift_table [2, C] */
    float *null_y;             /* y_embedder.y_embedding [max_length, caption_channels] (host): the null caption */
    /* blocks.i as two dit_blocks so attention hooks address both attentions: spatial holds
     * the table, attn (qkv, out1), cross_attn (q2, kv2, out2) and mlp (fc1, fc2); temporal
     * holds attn_temp (qkv, out1) only */
    dit_block *spatial, *temporal;
    dit_pos_cache spos;        /* spatial table [h·w, C] of the last patch grid (backend memory) */
    dit_pos_cache tpos;        /* temporal table [F, C] (h = F, w = 1) */
    dt_stage stage;
    dit_attn_hook *hook;
    const dt_denoiser_resume *resume;
};

/* ---- config ---- */

/* A 3-integer array field (input_size, patch_size), each within lo..hi. */
static dt_status read_triple(const cJSON *j, const char *path, const char *field, const int *dflt, int lo, int hi,
                             int *out, dt_err *err)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, field);
    if (!a || cJSON_IsNull(a)) {
        memcpy(out, dflt, 3 * sizeof *out);
        return DT_OK;
    }
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != 3)
        return dt_fail(err, DT_EFORMAT, "%s: field \"%s\" must be an array of 3 integers", path, field);
    for (int i = 0; i < 3; i++)
        if (!dt_json_is_int_in(cJSON_GetArrayItem(a, i), lo, hi, &out[i]))
            return dt_fail(err, DT_EFORMAT, "%s: field \"%s\"[%d] must be an integer in %d..%d", path, field, i, lo, hi);
    return DT_OK;
}

static dt_status read_scale(const cJSON *j, const char *path, const char *field, float *out, dt_err *err)
{
    double d;
    DT_TRY(dt_json_num(j, path, field, 1, 1.0, &d, err));
    if (!(d >= 1e-3 && d <= 1e3)) return dt_fail(err, DT_EFORMAT, "%s: field \"%s\" is %g, outside 0.001..1000", path, field, d);
    *out = (float)d;
    return DT_OK;
}

static dt_status read_config(const cJSON *j, const char *path, stdit_config *c, dt_err *err)
{
    char cls[64];
    DT_TRY(dt_json_str(j, path, "_class_name", NULL, cls, sizeof cls, err));
    if (strcmp(cls, "STDiT")) return dt_fail(err, DT_EUNSUPPORTED, "%s: field \"_class_name\" is \"%s\", not \"STDiT\"", path, cls);
    int in[3], ps[3], sigma;
    DT_TRY(read_triple(j, path, "input_size", (const int[]){1, 32, 32}, 1, DIT_MAX_SAMPLE, in, err));
    DT_TRY(read_triple(j, path, "patch_size", (const int[]){1, 2, 2}, 1, DIT_MAX_PATCH, ps, err));
#define INT(f, dst, dflt, lo, hi) DT_TRY(dt_json_int_in(j, path, f, 1, dflt, lo, hi, &(dst), err))
    INT("in_channels", c->in_channels, 4, 1, DIT_MAX_CHANNELS / 2);
    INT("hidden_size", c->hidden, 1152, 1, DIT_MAX_INNER);
    INT("depth", c->depth, 28, 1, DIT_MAX_LAYERS);
    INT("num_heads", c->heads, 16, 1, DIT_MAX_HEADS);
    INT("caption_channels", c->caption_channels, 4096, 1, DIT_MAX_CAPTION);
    INT("model_max_length", c->max_length, 120, 1, 4096);
#undef INT
    DT_TRY(dt_json_bool(j, path, "pred_sigma", 1, &sigma, err));
    double ratio;
    DT_TRY(dt_json_num(j, path, "mlp_ratio", 1, 4.0, &ratio, err));
    if (ratio != 4.0) return dt_fail(err, DT_EUNSUPPORTED, "%s: field \"mlp_ratio\" is %g, only 4 is supported", path, ratio);
    DT_TRY(read_scale(j, path, "space_scale", &c->space_scale, err));
    DT_TRY(read_scale(j, path, "time_scale", &c->time_scale, err));
    if (ps[0] != 1 || ps[1] != ps[2])
        return dt_fail(err, DT_EUNSUPPORTED, "%s: field \"patch_size\" is [%d, %d, %d], only [1, p, p] is supported", path,
                       ps[0], ps[1], ps[2]);
    c->frames = in[0], c->height = in[1], c->width = in[2], c->patch = ps[1];
    c->out_channels = sigma ? 2 * c->in_channels : c->in_channels;
    return DT_OK;
}

dt_status stdit_config_load(const char *dir, stdit_config *c, dt_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    cJSON *j;
    DT_TRY(dt_json_load(path, &j, err));
    *c = (stdit_config){0};
    dt_status st = read_config(j, path, c, err);
    cJSON_Delete(j);
    if (st != DT_OK) return st;
#define CHECK(cond, ...) if (!(cond)) return dt_fail(err, DT_EFORMAT, __VA_ARGS__)
    CHECK(c->hidden % c->heads == 0, "%s: \"hidden_size\" (%d) must be a multiple of \"num_heads\" (%d)", path, c->hidden, c->heads);
    c->head_dim = c->hidden / c->heads;
    CHECK(c->head_dim <= DIT_MAX_HEAD_DIM, "%s: hidden_size / num_heads is %d, above the supported %d", path, c->head_dim, DIT_MAX_HEAD_DIM);
    CHECK(c->hidden % 4 == 0, "%s: \"hidden_size\" must be a multiple of 4 (2-D sin-cos position table)", path);
    CHECK(c->height % c->patch == 0 && c->width % c->patch == 0, "%s: \"input_size\" height and width must be multiples of the patch %d",
          path, c->patch);
#undef CHECK
    return DT_OK;
}

stdit_config stdit_config_xl2(int sample_size)
{
    /* OpenSora-v1 samples 16x256x256 with space_scale 0.5 and 16x512x512 with 1.0 */
    return (stdit_config){.frames = 16, .height = sample_size, .width = sample_size, .patch = 2, .in_channels = 4,
                          .out_channels = 8, .hidden = 1152, .depth = 28, .heads = 16, .head_dim = 72,
                          .caption_channels = 4096, .max_length = 120, .space_scale = sample_size / 64.0f,
                          .time_scale = 1.0f};
}

int64_t stdit_param_count(const stdit_config *c)
{
    int64_t C = c->hidden, p2 = (int64_t)c->patch * c->patch;
    int64_t n = C * c->in_channels * p2 + C;                                  /* x_embedder */
    n += (DIT_TPROJ_DIM * C + C) + (C * C + C) + (C * 6 * C + 6 * C);         /* t_embedder, t_block */
    n += (int64_t)c->caption_channels * C + C + C * C + C;                     /* y_proj */
    n += (int64_t)c->max_length * c->caption_channels;                        /* y_embedding */
    int64_t attn = 4 * (C * C + C), mlp = (C * 4 * C + 4 * C) + (4 * C * C + C);
    n += (int64_t)c->depth * (6 * C + 3 * attn + mlp);
    n += 2 * C + C * p2 * c->out_channels + p2 * c->out_channels;             /* final_layer */
    return n;
}

double stdit_matmul_flops(const stdit_config *c, int B, int F, int h, int w, int T)
{
    double C = c->hidden, N = (double)h * w, M = (double)B * F * N, p2 = (double)c->patch * c->patch;
    double proj = 2 * M * C * 3 * C + 2 * M * C * C;                          /* qkv + out */
    double spatial = proj + 2 * (double)B * F * N * N * C * 2;
    double temporal = proj + 2 * (double)B * N * F * F * C * 2;
    double cross = 2 * M * C * C * 2 + 2 * (double)B * T * C * 2 * C + 2 * M * T * C * 2;
    double mlp = 2 * M * C * 4 * C * 2;
    double other = 2 * M * c->in_channels * p2 * C + 2 * M * C * p2 * c->out_channels
                 + 2 * (double)B * T * (c->caption_channels * C + C * C);
    return (spatial + temporal + cross + mlp) * c->depth + other;
}

/* ---- loading ---- */

/* The PixArt layers around the blocks, by Open-Sora's names (x_embedder is a Conv3d). */
static const dit_names names = {
    .patch = "x_embedder.proj", .patch_rank = 5,
    .t1 = "t_embedder.mlp.0", .t2 = "t_embedder.mlp.2", .adaln = "t_block.1",
    .cap1 = "y_embedder.y_proj.fc1", .cap2 = "y_embedder.y_proj.fc2",
};

static dt_status block_load(stdit_model *m, dt_weight_source *src, int i, int tok_hint, int cap_hint, dt_err *err)
{
    dt_backend *be = m->be;
    int C = m->cfg.hidden;
    dt_dtype cd = be->cfg.compute;
    dit_block *s = &m->spatial[i], *t = &m->temporal[i];
    char n[96];
#define L1(field, name, in, out, act, hint) \
    snprintf(n, sizeof n, "blocks.%d.%s", i, name); \
    DT_TRY(dt_load_linear1(be, src, n, in, out, 1, act, hint, cd, &(field), err))
    snprintf(n, sizeof n, "blocks.%d.scale_shift_table", i);
    DT_TRY(dt_load_param_dev(be, src, n, 2, (int64_t[]){6, C}, &s->sst, err));
    L1(s->qkv, "attn.qkv", C, 3 * C, DT_ACT_NONE, tok_hint);
    L1(s->out1, "attn.proj", C, C, DT_ACT_NONE, tok_hint);
    L1(t->qkv, "attn_temp.qkv", C, 3 * C, DT_ACT_NONE, tok_hint);
    L1(t->out1, "attn_temp.proj", C, C, DT_ACT_NONE, tok_hint);
    L1(s->q2, "cross_attn.q_linear", C, C, DT_ACT_NONE, tok_hint);
    L1(s->kv2, "cross_attn.kv_linear", C, 2 * C, DT_ACT_NONE, cap_hint);
    L1(s->out2, "cross_attn.proj", C, C, DT_ACT_NONE, tok_hint);
    L1(s->fc1, "mlp.fc1", C, 4 * C, DT_ACT_GELU_TANH, tok_hint);
    L1(s->fc2, "mlp.fc2", 4 * C, C, DT_ACT_NONE, tok_hint);
#undef L1
    return DT_OK;
}

static dt_status build(stdit_model *m, dt_weight_source *src, dt_err *err)
{
    const stdit_config *c = &m->cfg;
    dt_backend *be = m->be;
    int C = c->hidden, p = c->patch;
    /* GEMM row hints (CFG batch 2 at the native size), bounded: the config's sizes may be large */
    int64_t tokens = 2 * (int64_t)c->frames * (c->height / p) * (c->width / p);
    int tok_hint = tokens > (1 << 24) ? 1 << 24 : (int)tokens, cap_hint = 2 * c->max_length;
    DT_TRY(dit_patch_embed_load(be, src, &names, c->in_channels, p, C, tok_hint, &m->patch, err));
    DT_TRY(dit_adaln_load(be, src, &names, C, &m->ada, err));
    DT_TRY(dit_caption_load(be, src, &names, c->caption_channels, C, cap_hint, be->cfg.compute, &m->cap, err));
    for (int i = 0; i < c->depth; i++) DT_TRY(block_load(m, src, i, tok_hint, cap_hint, err));
    DT_TRY(dt_load_param_dev(be, src, "final_layer.scale_shift_table", 2, (int64_t[]){2, C}, &m->sst_final, err));
    DT_TRY(dt_load_linear1(be, src, "final_layer.linear", C, p * p * c->out_channels, 1, DT_ACT_NONE, tok_hint,
                           be->cfg.compute, &m->final, err));
    /* last, so a random source draws everything else as before */
    return dt_load_param(src, "y_embedder.y_embedding", 2, (int64_t[]){c->max_length, c->caption_channels}, &m->null_y, err);
}

dt_status stdit_create(dt_backend *be, const stdit_config *cfg, dt_weight_source *src, stdit_model **out, dt_err *err)
{
    stdit_model *m = calloc(1, sizeof *m);
    if (!m) return dt_fail(err, DT_ENOMEM, "out of memory");
    m->cfg = *cfg;
    m->be = be;
    m->spatial = calloc((size_t)cfg->depth, sizeof *m->spatial);
    m->temporal = calloc((size_t)cfg->depth, sizeof *m->temporal);
    dt_status st = m->spatial && m->temporal ? build(m, src, err) : dt_fail(err, DT_ENOMEM, "out of memory");
    if (st != DT_OK) { stdit_free(m); return st; }
    *out = m;
    return DT_OK;
}

dt_status stdit_load(dt_backend *be, const char *dir, stdit_model **out, dt_err *err)
{
    stdit_config cfg;
    DT_TRY(stdit_config_load(dir, &cfg, err));
    dt_safetensors *st;
    DT_TRY(dt_st_open_dir(dir, "diffusion_pytorch_model", &st, err));
    dt_weight_source src = dt_weights_from_file(st);
    dt_status s = stdit_create(be, &cfg, &src, out, err);
    dt_weights_close(&src);
    dt_st_close(st);
    return s;
}

void stdit_free(stdit_model *m)
{
    if (!m) return;
    dt_backend *be = m->be;
    be->ops->linear_destroy(m->patch);
    be->ops->linear_destroy(m->final);
    dit_adaln_free(be, &m->ada);
    dit_caption_free(be, &m->cap);
    for (int i = 0; i < m->cfg.depth; i++) {
        if (m->spatial) dit_block_free(be, &m->spatial[i]);
        if (m->temporal) dit_block_free(be, &m->temporal[i]);
    }
    free(m->spatial);
    free(m->temporal);
    dt_free_param(be, m->sst_final);
    free(m->null_y);
    dit_pos_free(be, &m->spos);
    dit_pos_free(be, &m->tpos);
    dt_stage_free(&m->stage);
    free(m);
}

const stdit_config *stdit_get_config(const stdit_model *m) { return &m->cfg; }
void stdit_set_attn_hook(stdit_model *m, dit_attn_hook *hook) { m->hook = hook; }
void stdit_set_resume(stdit_model *m, const dt_denoiser_resume *r) { m->resume = r; }

/* ---- position tables (blocks.py get_1d/2d_sincos_pos_embed, float64 then f32) ---- */

/* Token i·w + j: the column's table in the first half, the row's in the second (the MAE
 * meshgrid layout); positions are float32 index / scale, as numpy computes them there. */
static void spatial_fill(const void *cfg, int C, int h, int w, float *t)
{
    float s = ((const stdit_config *)cfg)->space_scale;
    for (int i = 0; i < h; i++)
        for (int j = 0; j < w; j++) {
            float *row = t + ((size_t)i * w + j) * C;
            dit_sincos_row(C / 2, (double)((float)j / s), row);
            dit_sincos_row(C / 2, (double)((float)i / s), row + C / 2);
        }
}

/* Frame f: positions f / time_scale in float64. */
static void temporal_fill(const void *cfg, int C, int F, int one, float *t)
{
    for (int f = 0; f < F; f++) dit_sincos_row(C, f / (double)((const stdit_config *)cfg)->time_scale, t + (size_t)f * C);
}

/* ---- forward ---- */

#define LIN(l, x, y) DT_TRY(be->ops->linear_forward(be, (l), (x), (y), err))

static void info_of(const stdit_config *c, dt_denoiser_info *d);

/* The video checks, then the caption mask: each sample keeps at least one token. */
static dt_status check_inputs(const stdit_config *c, const dt_denoiser_inputs *in, const dt_tensor *out, dt_err *err)
{
    dt_denoiser_info info;
    info_of(c, &info);
    DT_TRY(dit_video_check(&info, "input_size[0]", in, out, err));
    if (in->encoder_attention_mask) {
        int64_t B = in->hidden_states->shape[0], T = in->encoder_hidden_states->shape[1];
        for (int64_t b = 0; b < B; b++) {
            int kept = 0;
            for (int64_t i = 0; i < T; i++) kept |= in->encoder_attention_mask[b * T + i] != 0;
            if (!kept) return dt_fail(err, DT_EINVAL, "encoder_attention_mask: sample %lld keeps no caption token", (long long)b);
        }
    }
    return DT_OK;
}

typedef struct {
    int B, F, N, T, C;
    dt_tensor *x, *xt, *ot;   /* [B·F·N, C]: the stream (frame order), temporal in/out (token order) */
    const dt_tensor *ctx;     /* [B·T, C] projected caption */
    const float *key_bias;    /* [B, T] or NULL */
    const float *t0;          /* [B, 6C] t_block output */
    dit_scratch *s;
    dt_arena *arena;
} stdit_run;

/* mod[b] = scale_shift_table + t0[b]: shift, scale, gate (msa), shift, scale, gate (mlp). */
static dt_status modulation(stdit_model *m, const stdit_run *r, const dit_block *blk, dt_err *err)
{
    int B = r->B, C = r->C;
    dt_tensor t = dit_t2d((float *)r->t0, B, 6 * C), tab = dit_t2d(blk->sst, 1, 6 * C), mod = dit_t2d(r->s->mod, B, 6 * C);
    return m->be->ops->add_rows(m->be, &t, &tab, &mod, err);
}

static dt_tensor chunk(const stdit_run *r, int k) { return dit_rowvec(r->s->mod + (size_t)k * r->C, r->B, r->C, 6 * r->C); }

static dt_status self_attn(stdit_model *m, const dit_block *blk, int layer, int S, int n, const dt_tensor *in, dt_tensor *out,
                           const stdit_run *r, dt_err *err)
{
    dit_self_attn_args sa = {m->be, blk, layer, S, n, r->C, m->cfg.heads, 1.0f / sqrtf((float)m->cfg.head_dim),
                             in, out, r->s, r->arena};
    return m->hook ? m->hook->self_attn(m->hook, &sa, err) : dit_self_attention_full(&sa, err);
}

/* Position 2i: x += gate_msa · attn(modulate(LN(x))) over each frame's N patches. */
static dt_status spatial_part(stdit_model *m, int i, const stdit_run *r, dt_err *err)
{
    dt_backend *be = m->be;
    int B = r->B, C = r->C;
    int64_t L = (int64_t)r->F * r->N;
    dt_tensor x3 = dit_t3d(r->x->data, B, L, C), xn3 = dit_t3d(r->s->xn.data, B, L, C), o3 = dit_t3d(r->s->o.data, B, L, C);
    dt_tensor shift = chunk(r, 0), scale = chunk(r, 1), gate = chunk(r, 2);
    DT_TRY(be->ops->layernorm_modulate(be, &x3, &shift, &scale, 1e-6f, &xn3, err));
    dt_tensor xn = dit_t2d(r->s->xn.data, B * L, C), o = dit_t2d(r->s->o.data, B * L, C);
    DT_TRY(self_attn(m, &m->spatial[i], i, B * r->F, r->N, &xn, &o, r, err));
    return be->ops->gated_add(be, &x3, &o3, &gate, err);
}

/* Position 2i+1: the temporal attention (raw stream, + tpe before block 0), gated by gate_msa;
 * cross-attention of all F·N tokens to the caption; the modulated MLP. */
static dt_status temporal_part(stdit_model *m, int i, const stdit_run *r, dt_err *err)
{
    dt_backend *be = m->be;
    const dit_block *blk = &m->spatial[i];
    int B = r->B, F = r->F, N = r->N, T = r->T, C = r->C;
    int64_t L = (int64_t)F * N, M = B * L;
    dit_scratch *s = r->s;
    dt_tensor x3 = dit_t3d(r->x->data, B, L, C), o3 = dit_t3d(s->o.data, B, L, C), xn3 = dit_t3d(s->xn.data, B, L, C);
    dt_tensor o = dit_t2d(s->o.data, M, C), xn = dit_t2d(s->xn.data, M, C), ao = dit_t2d(s->ao.data, M, C);
    dt_tensor gate_msa = chunk(r, 2), shift_mlp = chunk(r, 3), scale_mlp = chunk(r, 4), gate_mlp = chunk(r, 5);

    DT_TRY(dit_swap_axes(be, r->x->data, r->xt->data, B, F, N, C, err));
    if (i == 0) {
        dt_tensor tp = dit_t2d(m->tpos.dev, F, C);
        DT_TRY(be->ops->add_rows(be, r->xt, &tp, r->xt, err));
    }
    DT_TRY(self_attn(m, &m->temporal[i], m->cfg.depth + i, B * N, F, r->xt, r->ot, r, err));
    DT_TRY(dit_swap_axes(be, r->ot->data, s->o.data, B, N, F, C, err));
    DT_TRY(be->ops->gated_add(be, &x3, &o3, &gate_msa, err));

    /* cross-attention: B sequences of F·N queries over the sample's T caption tokens */
    dt_tensor q = dit_t2d(s->qkv.data, M, C);
    LIN(blk->q2, r->x, &q);
    dt_tensor ctx3 = dit_t3d(r->ctx->data, B, T, C), kv = dit_t3d(s->kv.data, B, T, 2 * C);
    LIN(blk->kv2, &ctx3, &kv);
    dt_tensor q3 = dit_t3d(q.data, B, L, C), k = dit_t3d(kv.data, B, T, C), v = k, ao3 = dit_t3d(s->ao.data, B, L, C);
    k.strides[0] = v.strides[0] = (int64_t)T * 2 * C;
    k.strides[1] = v.strides[1] = 2 * C;
    v.data = (float *)kv.data + C;
    dt_attn_bias bias = {.key = r->key_bias};
    DT_TRY(be->ops->attention(be, &q3, &k, &v, &bias, m->cfg.heads, 1.0f / sqrtf((float)m->cfg.head_dim), &ao3, err));
    LIN(blk->out2, &ao, &o);
    DT_TRY(be->ops->gated_add(be, &x3, &o3, NULL, err));

    DT_TRY(be->ops->layernorm_modulate(be, &x3, &shift_mlp, &scale_mlp, 1e-6f, &xn3, err));
    LIN(blk->fc1, &xn, &s->ff);
    LIN(blk->fc2, &s->ff, &o);
    return be->ops->gated_add(be, &x3, &o3, &gate_mlp, err);
}

static dt_status layers(stdit_model *m, const stdit_run *r, dt_err *err)
{
    const dt_denoiser_resume *rs = m->resume;
    int from = rs ? rs->from : 0;
    size_t count = (size_t)r->B * r->F * r->N * r->C;
    for (int e = from; e < 2 * m->cfg.depth; e++) {
        int i = e / 2;
        if (rs && e == from && from > 0) DT_TRY(dt_backend_write(m->be, r->x->data, rs->load, count, err));
        if (rs && rs->save && e == rs->save_at) DT_TRY(dt_backend_read(m->be, r->x->data, rs->save, count, err));
        DT_TRY(modulation(m, r, &m->spatial[i], err));
        DT_TRY(e % 2 ? temporal_part(m, i, r, err) : spatial_part(m, i, r, err));
    }
    return DT_OK;
}

dt_status stdit_forward(stdit_model *m, const dt_denoiser_inputs *in, dt_arena *a, dt_tensor *out, dt_err *err)
{
    const stdit_config *c = &m->cfg;
    dt_backend *be = m->be;
    DT_TRY(check_inputs(c, in, out, err));
    dit_video_dims d = dit_video_dims_of(in, c->patch);
    int B = d.B, F = d.F, N = d.N, T = d.T, C = c->hidden;

    /* PatchEmbed3D with a (1, p, p) kernel: frames as images, patchified, one GEMM */
    dt_tensor x, xt, ot;
    DT_TRY(dit_table_get(be, C, d.h, d.w, spatial_fill, c, &m->spos, err));
    DT_TRY(dit_table_get(be, C, F, 1, temporal_fill, c, &m->tpos, err));
    DT_TRY(dit_video_embed(be, &d, in->hidden_states, m->patch, C, m->spos.dev, a, &x, err));
    DT_TRY(dit_alloc2(a, &xt, d.M, C, err));
    DT_TRY(dit_alloc2(a, &ot, d.M, C, err));

    /* t = t_embedder(timestep), t0 = t_block(t); the caption through y_proj */
    dt_tensor emb, t0, ctx;
    DT_TRY(dit_timestep_embed(be, &m->ada, in->timestep, B, C, a, &m->stage, &emb, err));
    DT_TRY(dit_adaln_out(be, &m->ada, &emb, C, a, &t0, err));
    DT_TRY(dit_alloc2(a, &ctx, (int64_t)B * T, C, err));
    dt_tensor ehs = dit_t2d(in->encoder_hidden_states->data, (int64_t)B * T, c->caption_channels);
    DT_TRY(dit_caption_forward(be, &m->cap, &ehs, C, a, &ctx, err));
    float *key_bias;
    DT_TRY(dit_key_bias(be, in->encoder_attention_mask, B, 1, T, a, &m->stage, &key_bias, err));

    dit_scratch s;
    DT_TRY(dit_scratch_alloc(a, d.M, (int64_t)B * T, B, C, &s, err));
    stdit_run r = {B, F, N, T, C, &x, &xt, &ot, &ctx, key_bias, t0.data, &s, a};
    DT_TRY(layers(m, &r, err));

    /* T2IFinalLayer with t (not t0), per sample over its F·N tokens; unpatchify per frame */
    dit_final_args fa = {m->sst_final, emb.data, B, F * N, C, 1e-6f, &x, &s.xn, NULL, s.mod, m->final};
    return dit_video_final(be, &d, &fa, a, out, err);
}

/* ---- the denoiser interface (denoiser.h) ---- */

static void info_of(const stdit_config *c, dt_denoiser_info *d)
{
    *d = (dt_denoiser_info){.class_name = "STDiT", .latent_rank = 5, .in_channels = c->in_channels,
                            .out_channels = c->out_channels, .sample_size = c->height, .patch_size = c->patch,
                            .caption_channels = c->caption_channels, .max_frames = c->frames,
                            .spatial_layers = c->depth, .temporal_layers = c->depth, .inner = c->hidden,
                            .param_count = stdit_param_count(c)};
}

dt_status stdit_inputs_load(const char *file, const stdit_config *cfg, dt_denoiser_input_file *x, dt_err *err)
{
    dt_denoiser_info info;
    info_of(cfg, &info);
    return dt_denoiser_inputs_load(file, &info, x, err);
}

static dt_status den_describe(const char *dir, dt_denoiser_info *info, char *head, char *tail, size_t n, dt_err *err)
{
    stdit_config c;
    DT_TRY(stdit_config_load(dir, &c, err));
    info_of(&c, info);
    snprintf(head, n,
             "  architecture: STDiT (Open-Sora; spatial + temporal attention in each block)\n"
             "  depth: %d, hidden: %d, heads: %d x %d, patch: 1x%dx%d, input_size: %dx%dx%d, in/out channels: %d/%d\n"
             "  caption_channels: %d, model_max_length: %d, space_scale: %g, time_scale: %g\n",
             c.depth, c.hidden, c.heads, c.head_dim, c.patch, c.patch, c.frames, c.height, c.width, c.in_channels,
             c.out_channels, c.caption_channels, c.max_length, c.space_scale, c.time_scale);
    if (n) tail[0] = 0;
    return DT_OK;
}

static dt_status den_create(dt_backend *be, const char *dir, int sample_size, int layers_, dt_weight_source *src,
                            void **model, dt_err *err)
{
    stdit_config c;
    if (dir) DT_TRY(stdit_config_load(dir, &c, err));
    else c = stdit_config_xl2(sample_size);
    if (layers_ > 0) c.depth = layers_;
    return stdit_create(be, &c, src, (stdit_model **)model, err);
}

static void den_info(const void *m, dt_denoiser_info *out) { info_of(&((const stdit_model *)m)->cfg, out); }
static dt_status den_forward(void *m, const dt_denoiser_inputs *in, dt_arena *a, dt_tensor *out, dt_err *err)
{
    return stdit_forward(m, in, a, out, err);
}
static void den_set_hook(void *m, dit_attn_hook *h) { stdit_set_attn_hook(m, h); }
static void den_set_resume(void *m, const dt_denoiser_resume *r) { stdit_set_resume(m, r); }

/* The buffers stdit_forward allocates plus the attention score blocks. */
static double den_step_bytes(const void *m, int rows, int F, int h, int w, int T)
{
    const stdit_config *c = &((const stdit_model *)m)->cfg;
    double N = (double)(h / c->patch) * (w / c->patch), C = c->hidden, M = (double)rows * F * N;
    double po = (double)c->out_channels * c->patch * c->patch;
    return 4 * (M * (14 * C + 2.0 * c->in_channels * c->patch * c->patch + 2 * po) + (double)rows * T * 4 * C
                + (double)rows * 8 * C) + 48e6;
}

static double den_flops(const void *m, int batch, int frames, int h, int w, int T)
{
    return stdit_matmul_flops(&((const stdit_model *)m)->cfg, batch, frames, h, w, T);
}

/* What ViDiT-Q quantizes, by the checkpoint's names: every linear of blocks.* (attn,
 * attn_temp, cross_attn, mlp); attn_temp.* is the temporal group; cross_attn.kv_linear (k|v)
 * projects the caption (MixDQ's float text tokens). Embedders and final_layer stay float. */
static unsigned den_linear_role(const char *name)
{
    static const char kv[] = ".cross_attn.kv_linear";
    size_t n = strlen(name), k = sizeof kv - 1;
    if (strncmp(name, "blocks.", 7)) return 0;
    if (strstr(name, ".attn_temp.")) return DT_LINEAR_QUANTIZABLE | DT_LINEAR_TEMPORAL;
    return DT_LINEAR_QUANTIZABLE | (n > k && !strcmp(name + n - k, kv) ? DT_LINEAR_TEXT_KV : 0);
}

static void den_free(void *m) { stdit_free(m); }

static int den_null_caption(const void *m, const float **emb)
{
    const stdit_model *sm = m;
    *emb = sm->null_y;
    return sm->cfg.max_length;
}

/* "OpenSoraPipeline" (a model_index.json ditrt defines: Open-Sora has no diffusers pipeline):
 * the repository's v1.0 sampling (scripts/inference.py, IDDPM.sample, forward_with_cfg).
 * Captions: T5 padded to model_max_length (the null caption's rows) with the mask to the
 * denoiser; the negative is y_embedder.y_embedding with the prompt's mask. CFG on latent
 * channels 0..2 only (forward_with_cfg's model_out[:, :3]); channel 3 and the variance half
 * come from the prompt rows. The loop steps x = [z, z], so each step draws noise for both
 * halves and keeps the prompt half's (the first). The scheduler is the folder's: the
 * repository's sampler is IDDPMScheduler (schedulers/iddpm_scheduler.c), which takes the
 * variance half. Decoding: the SD VAE per frame on latents / scaling_factor
 * (VideoAutoencoderKL.decode), 4 frames a call (v1.1's micro_batch_size; frames decode
 * independently). */
static const dt_pipeline_class pipelines[] = {
    {.name = "OpenSoraPipeline", .max_len = 120, .fixed_len = 1, .decode_chunk = 4, .cfg_channels = 3,
     .learned_null = 1, .noise_rows = 2},
};

const dt_denoiser_class dt_stdit_class = {
    .class_name = "STDiT", .preset = "stdit-xl-2", .pipelines = pipelines, .npipelines = 1, .describe = den_describe,
    .create = den_create, .info = den_info, .forward = den_forward, .set_attn_hook = den_set_hook,
    .set_resume = den_set_resume, .step_bytes = den_step_bytes, .matmul_flops = den_flops, .free = den_free,
    .linear_role = den_linear_role,
    .null_caption = den_null_caption,
};
