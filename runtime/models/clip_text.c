/* CLIP text encoder: loading and the forward pass, written out as transformers 5 computes it
 * (CLIPTextEmbeddings, CLIPEncoderLayer, CLIPAttention, CLIPMLP, CLIPTextTransformer's
 * pooling, CLIPTextModelWithProjection's text_projection). */
#include "clip_text.h"
#include "layers.h"
#include "runtime/core/json.h"
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    float *ln1_w, *ln1_b, *ln2_w, *ln2_b; /* [hidden] */
    dt_linear *qkv, *out, *fc1, *fc2;     /* q|k|v fused; out_proj; mlp.fc1; mlp.fc2 (all with bias) */
} clip_layer;

struct clip_text_model {
    clip_text_config cfg;
    dt_backend *be;
    float *tok_emb, *pos_emb;   /* [vocab, hidden], [max_positions, hidden] */
    float *final_w, *final_b;   /* final_layer_norm */
    dt_linear *proj;            /* text_projection (no bias), or NULL */
    clip_layer *layers;
};

/* ---- config ---- */

static dt_status lists_projection(const cJSON *j, const char *path, int *proj, dt_err *err)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "architectures");
    *proj = 0;
    if (!a || cJSON_IsNull(a)) return DT_OK;
    if (!cJSON_IsArray(a)) return dt_fail(err, DT_EFORMAT, "%s: field \"architectures\" must be a list of names", path);
    for (const cJSON *e = a->child; e; e = e->next)
        if (cJSON_IsString(e) && !strcmp(e->valuestring, "CLIPTextModelWithProjection")) *proj = 1;
    return DT_OK;
}

dt_status clip_text_config_load(const char *dir, clip_text_config *c, dt_err *err)
{
    char path[4096], act[64];
    snprintf(path, sizeof path, "%s/config.json", dir);
    cJSON *j;
    DT_TRY(dt_json_load(path, &j, err));
    dt_status st = DT_OK;
    double eps = 1e-5;
    int proj = 0, pdim = 512;
    *c = (clip_text_config){0};
#define INT(f, dst, dflt, lo, hi) if (st == DT_OK) st = dt_json_int_in(j, path, f, 1, dflt, lo, hi, &(dst), err)
    INT("vocab_size", c->vocab_size, 49408, 1, 1 << 22);
    INT("hidden_size", c->hidden_size, 512, 1, 16384);
    INT("intermediate_size", c->intermediate_size, 2048, 1, 65536);
    INT("num_hidden_layers", c->num_layers, 12, 1, 256);
    INT("num_attention_heads", c->num_heads, 8, 1, 256);
    INT("max_position_embeddings", c->max_positions, 77, 1, 4096);
    INT("projection_dim", pdim, 512, 1, 16384);
    INT("eos_token_id", c->eos_token_id, 2, 0, (1 << 22) - 1);
#undef INT
    if (st == DT_OK) st = dt_json_num(j, path, "layer_norm_eps", 1, 1e-5, &eps, err);
    if (st == DT_OK) st = dt_json_str(j, path, "hidden_act", "quick_gelu", act, sizeof act, err);
    if (st == DT_OK) st = lists_projection(j, path, &proj, err);
    cJSON_Delete(j);
    if (st != DT_OK) return st;
    if (!strcmp(act, "quick_gelu")) c->act = CLIP_ACT_QUICK_GELU;
    else if (!strcmp(act, "gelu")) c->act = CLIP_ACT_GELU;
    else return dt_fail(err, DT_EUNSUPPORTED, "%s: field \"hidden_act\" is \"%s\", only \"quick_gelu\" and \"gelu\" are supported", path, act);
    if (c->hidden_size % c->num_heads)
        return dt_fail(err, DT_EFORMAT, "%s: hidden_size %d is not a multiple of num_attention_heads %d", path, c->hidden_size, c->num_heads);
    if (!(eps >= 0 && eps < 1)) return dt_fail(err, DT_EFORMAT, "%s: \"layer_norm_eps\" must be in [0, 1)", path);
    c->eps = (float)eps;
    c->projection_dim = proj ? pdim : 0;
    return DT_OK;
}

/* ---- loading ---- */

static dt_status load_vec(dt_weight_source *src, const char *pre, const char *name, int n, float **out, dt_err *err)
{
    char full[256];
    snprintf(full, sizeof full, "%s%s", pre, name);
    return dt_load_param(src, full, 1, (int64_t[]){n}, out, err);
}

static dt_status load_layer(clip_text_model *m, dt_weight_source *src, const char *pre, int i, int hint, dt_err *err)
{
    const clip_text_config *c = &m->cfg;
    clip_layer *l = &m->layers[i];
    int C = c->hidden_size, F = c->intermediate_size;
    dt_dtype dt = m->be->cfg.compute;
    char n[4][192], b[192];
#define NAME(k, fmt) snprintf(n[k], sizeof n[k], "%sencoder.layers.%d." fmt, pre, i)
    NAME(0, "self_attn.q_proj"); NAME(1, "self_attn.k_proj"); NAME(2, "self_attn.v_proj");
    const char *qkv[3] = {n[0], n[1], n[2]};
    dt_linear_spec spec = {qkv, 3, C, C, 1, DT_ACT_NONE, hint, dt};
    DT_TRY(dt_load_linear(m->be, src, &spec, &l->qkv, err));
    NAME(3, "self_attn.out_proj");
    DT_TRY(dt_load_linear1(m->be, src, n[3], C, C, 1, DT_ACT_NONE, hint, dt, &l->out, err));
    NAME(0, "mlp.fc1"); NAME(1, "mlp.fc2");
    DT_TRY(dt_load_linear1(m->be, src, n[0], C, F, 1, DT_ACT_NONE, hint, dt, &l->fc1, err));
    DT_TRY(dt_load_linear1(m->be, src, n[1], F, C, 1, DT_ACT_NONE, hint, dt, &l->fc2, err));
    snprintf(b, sizeof b, "encoder.layers.%d.layer_norm1.weight", i); DT_TRY(load_vec(src, pre, b, C, &l->ln1_w, err));
    snprintf(b, sizeof b, "encoder.layers.%d.layer_norm1.bias", i);   DT_TRY(load_vec(src, pre, b, C, &l->ln1_b, err));
    snprintf(b, sizeof b, "encoder.layers.%d.layer_norm2.weight", i); DT_TRY(load_vec(src, pre, b, C, &l->ln2_w, err));
    snprintf(b, sizeof b, "encoder.layers.%d.layer_norm2.bias", i);   DT_TRY(load_vec(src, pre, b, C, &l->ln2_b, err));
#undef NAME
    return DT_OK;
}

static dt_status build(clip_text_model *m, dt_weight_source *src, const char *pre, int hint, dt_err *err)
{
    const clip_text_config *c = &m->cfg;
    char n[256];
    snprintf(n, sizeof n, "%sembeddings.token_embedding.weight", pre);
    DT_TRY(dt_load_param(src, n, 2, (int64_t[]){c->vocab_size, c->hidden_size}, &m->tok_emb, err));
    snprintf(n, sizeof n, "%sembeddings.position_embedding.weight", pre);
    DT_TRY(dt_load_param(src, n, 2, (int64_t[]){c->max_positions, c->hidden_size}, &m->pos_emb, err));
    for (int i = 0; i < c->num_layers; i++) DT_TRY(load_layer(m, src, pre, i, hint, err));
    DT_TRY(load_vec(src, pre, "final_layer_norm.weight", c->hidden_size, &m->final_w, err));
    DT_TRY(load_vec(src, pre, "final_layer_norm.bias", c->hidden_size, &m->final_b, err));
    if (c->projection_dim)
        DT_TRY(dt_load_linear1(m->be, src, "text_projection", c->hidden_size, c->projection_dim, 0, DT_ACT_NONE, 2,
                               m->be->cfg.compute, &m->proj, err));
    return DT_OK;
}

dt_status clip_text_create(dt_backend *be, const clip_text_config *cfg, dt_weight_source *src, const char *prefix,
                           int m_hint, clip_text_model **out, dt_err *err)
{
    clip_text_model *m = calloc(1, sizeof *m);
    if (!m) return dt_fail(err, DT_ENOMEM, "out of memory");
    m->cfg = *cfg;
    m->be = be;
    m->layers = calloc((size_t)cfg->num_layers, sizeof *m->layers);
    dt_status st = m->layers ? build(m, src, prefix, m_hint > 0 ? m_hint : 154, err) : dt_fail(err, DT_ENOMEM, "out of memory");
    if (st != DT_OK) { clip_text_free(m); return st; }
    *out = m;
    return DT_OK;
}

dt_status clip_text_load(dt_backend *be, const char *dir, clip_text_model **out, dt_err *err)
{
    clip_text_config cfg;
    DT_TRY(clip_text_config_load(dir, &cfg, err));
    dt_safetensors *st;
    DT_TRY(dt_st_open_dir(dir, "model", &st, err));
    dt_weight_source src = dt_weights_from_file(st);
    /* transformers 4 saved every CLIP text model under text_model.; transformers 5 saves
     * CLIPTextModel without it */
    const char *pre = dt_st_find(st, "text_model.embeddings.token_embedding.weight") ? "text_model." : "";
    dt_status s = clip_text_create(be, &cfg, &src, pre, 0, out, err);
    dt_weights_close(&src);
    dt_st_close(st);
    return s;
}

void clip_text_free(clip_text_model *m)
{
    if (!m) return;
    void (*del)(dt_linear *) = m->be->ops->linear_destroy;
    for (int i = 0; m->layers && i < m->cfg.num_layers; i++) {
        clip_layer *l = &m->layers[i];
        del(l->qkv); del(l->out); del(l->fc1); del(l->fc2);
        free(l->ln1_w); free(l->ln1_b); free(l->ln2_w); free(l->ln2_b);
    }
    if (m->proj) del(m->proj);
    free(m->layers);
    free(m->tok_emb);
    free(m->pos_emb);
    free(m->final_w);
    free(m->final_b);
    free(m);
}

const clip_text_config *clip_text_get_config(const clip_text_model *m) { return &m->cfg; }

/* ---- forward ---- */

/* y = LayerNorm(x)·w + b per row of C, statistics in f32 as torch's CPU kernel (biased
 * variance); y may be x. */
static void layer_norm(const float *x, const float *w, const float *b, float eps, int64_t rows, int C, float *y)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        double mean = 0, var = 0;
        for (int i = 0; i < C; i++) mean += xr[i];
        mean /= C;
        for (int i = 0; i < C; i++) { double d = xr[i] - mean; var += d * d; }
        var /= C;
        float rstd = (float)(1.0 / sqrt(var + eps)), mu = (float)mean;
        for (int i = 0; i < C; i++) yr[i] = (xr[i] - mu) * rstd * w[i] + b[i];
    }
}

static void activation(clip_act act, float *x, int64_t n)
{
    if (act == CLIP_ACT_QUICK_GELU) {
        for (int64_t i = 0; i < n; i++) x[i] = x[i] * (1.0f / (1.0f + expf(-1.702f * x[i]))); /* x * sigmoid(1.702 x) */
    } else {
        for (int64_t i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
    }
}

static dt_tensor t2d(void *data, int64_t r, int64_t c) { int64_t s[2] = {r, c}; return dt_tensor_view(data, DT_F32, 2, s); }
static dt_tensor t3d(void *data, int64_t a, int64_t b, int64_t c) { int64_t s[3] = {a, b, c}; return dt_tensor_view(data, DT_F32, 3, s); }

static dt_status alloc2(dt_arena *a, dt_tensor *t, int64_t r, int64_t c, dt_err *err)
{
    int64_t s[2] = {r, c};
    return dt_arena_tensor(a, t, DT_F32, 2, s, err);
}

typedef struct {
    dt_tensor x, xn, qkv, ao, o, h;
} clip_scratch;

#define LIN(l, x, y) DT_TRY(be->ops->linear_forward(be, (l), (x), (y), err))

static dt_status layer_forward(clip_text_model *m, const clip_layer *l, int B, int N, const dt_attn_bias *bias,
                               clip_scratch *s, dt_err *err)
{
    dt_backend *be = m->be;
    const clip_text_config *c = &m->cfg;
    int64_t C = c->hidden_size, BN = (int64_t)B * N;
    dt_tensor x3 = t3d(s->x.data, B, N, C), o3 = t3d(s->o.data, B, N, C), ao3 = t3d(s->ao.data, B, N, C);

    layer_norm(s->x.data, l->ln1_w, l->ln1_b, c->eps, BN, (int)C, s->xn.data);
    LIN(l->qkv, &s->xn, &s->qkv);
    dt_tensor q = t3d(s->qkv.data, B, N, C), k = q, v = q;
    q.strides[0] = k.strides[0] = v.strides[0] = (int64_t)N * 3 * C;
    q.strides[1] = k.strides[1] = v.strides[1] = 3 * C;
    k.data = (float *)s->qkv.data + C;
    v.data = (float *)s->qkv.data + 2 * C;
    float scale = (float)pow((double)(C / c->num_heads), -0.5); /* head_dim**-0.5 in Python floats */
    DT_TRY(be->ops->attention(be, &q, &k, &v, bias, c->num_heads, scale, &ao3, err));
    LIN(l->out, &s->ao, &s->o);
    DT_TRY(be->ops->gated_add(be, &x3, &o3, NULL, err));

    layer_norm(s->x.data, l->ln2_w, l->ln2_b, c->eps, BN, (int)C, s->xn.data);
    LIN(l->fc1, &s->xn, &s->h);
    activation(c->act, s->h.data, BN * c->intermediate_size);
    LIN(l->fc2, &s->h, &s->o);
    return be->ops->gated_add(be, &x3, &o3, NULL, err);
}

static dt_status embed(const clip_text_model *m, const int32_t *ids, int B, int N, float *x, dt_err *err)
{
    int64_t C = m->cfg.hidden_size;
    for (int b = 0; b < B; b++)
        for (int n = 0; n < N; n++) {
            int64_t r = (int64_t)b * N + n;
            if (ids[r] < 0 || ids[r] >= m->cfg.vocab_size)
                return dt_fail(err, DT_EINVAL, "input_ids: id %d at position %lld is outside the vocabulary [0, %d)",
                               (int)ids[r], (long long)r, m->cfg.vocab_size);
            const float *t = m->tok_emb + (int64_t)ids[r] * C, *p = m->pos_emb + (int64_t)n * C;
            for (int64_t i = 0; i < C; i++) x[r * C + i] = t[i] + p[i];
        }
    return DT_OK;
}

/* The pooled row of each sequence (see clip_text.h). */
static int pool_index(const clip_text_config *c, const int32_t *row, int N)
{
    int best = 0;
    for (int n = 0; n < N; n++) {
        if (c->eos_token_id == 2) { if (row[n] > row[best]) best = n; }
        else if (row[n] == c->eos_token_id) return n;
    }
    return best;
}

static dt_status pool(clip_text_model *m, const int32_t *ids, int B, int N, const float *last, dt_arena *a,
                      const clip_text_outputs *out, dt_err *err)
{
    const clip_text_config *c = &m->cfg;
    int C = c->hidden_size;
    float *p = out->pooled ? out->pooled : dt_arena_alloc(a, (size_t)B * C * sizeof(float));
    if (!p) return dt_fail(err, DT_ENOMEM, "out of memory");
    for (int b = 0; b < B; b++)
        memcpy(p + (size_t)b * C, last + ((size_t)b * N + pool_index(c, ids + (size_t)b * N, N)) * C, (size_t)C * sizeof(float));
    if (!out->text_embeds) return DT_OK;
    dt_tensor x = t2d(p, B, C), y = t2d(out->text_embeds, B, c->projection_dim);
    return m->be->ops->linear_forward(m->be, m->proj, &x, &y, err);
}

static dt_status check_args(const clip_text_model *m, int B, int N, const float *mask, const clip_text_outputs *o, dt_err *err)
{
    const clip_text_config *c = &m->cfg;
    if (B <= 0 || N <= 0) return dt_fail(err, DT_EINVAL, "input_ids: expected a non-empty [B, N] batch, got [%d, %d]", B, N);
    if (N > c->max_positions)
        return dt_fail(err, DT_EINVAL, "input_ids: %d tokens, more than max_position_embeddings %d", N, c->max_positions);
    if (o->hidden && (o->hidden_from_end < 1 || o->hidden_from_end > c->num_layers + 1))
        return dt_fail(err, DT_EINVAL, "text encoder: hidden state -%d requested, the model has %d (layers + embeddings)",
                       o->hidden_from_end, c->num_layers + 1);
    if (o->text_embeds && !m->proj)
        return dt_fail(err, DT_EINVAL, "text encoder: text_embeds requested from a model without text_projection");
    for (int64_t i = 0; mask && i < (int64_t)B * N; i++)
        if (mask[i] != 0.0f && mask[i] != 1.0f)
            return dt_fail(err, DT_EINVAL, "attention_mask: values must be 0 or 1, got %g at position %lld", mask[i], (long long)i);
    return DT_OK;
}

dt_status clip_text_encode(clip_text_model *m, const int32_t *ids, const float *mask, int B, int N, dt_arena *a,
                           const clip_text_outputs *out, dt_err *err)
{
    const clip_text_config *c = &m->cfg;
    DT_TRY(check_args(m, B, N, mask, out, err));
    int64_t BN = (int64_t)B * N, C = c->hidden_size, H = c->num_heads;
    clip_scratch s;
    DT_TRY(alloc2(a, &s.x, BN, C, err));
    DT_TRY(alloc2(a, &s.xn, BN, C, err));
    DT_TRY(alloc2(a, &s.qkv, BN, 3 * C, err));
    DT_TRY(alloc2(a, &s.ao, BN, C, err));
    DT_TRY(alloc2(a, &s.o, BN, C, err));
    DT_TRY(alloc2(a, &s.h, BN, c->intermediate_size, err));
    float *causal = dt_arena_alloc(a, (size_t)H * N * N * sizeof(float));
    float *key = mask ? dt_arena_alloc(a, (size_t)BN * sizeof(float)) : NULL;
    float *last = dt_arena_alloc(a, (size_t)BN * C * sizeof(float));
    if (!causal || (mask && !key) || !last) return dt_fail(err, DT_ENOMEM, "out of memory");
    /* masked scores: -FLT_MAX above the diagonal; padded keys -1e30, which added to -FLT_MAX
     * stays -FLT_MAX (finite) */
    for (int64_t h = 0; h < H; h++)
        for (int i = 0; i < N; i++)
            for (int j = 0; j < N; j++) causal[(h * N + i) * N + j] = j > i ? -FLT_MAX : 0.0f;
    for (int64_t i = 0; mask && i < BN; i++) key[i] = mask[i] == 0.0f ? -1e30f : 0.0f;
    dt_attn_bias bias = {.key = key, .head = causal};
    DT_TRY(embed(m, ids, B, N, s.x.data, err));
    int take = out->hidden ? c->num_layers + 1 - out->hidden_from_end : -1; /* layers run before the copy */
    for (int i = 0; i <= c->num_layers; i++) {
        if (i == take) memcpy(out->hidden, s.x.data, (size_t)BN * C * sizeof(float));
        if (i < c->num_layers) DT_TRY(layer_forward(m, &m->layers[i], B, N, &bias, &s, err));
    }
    if (out->hidden && out->hidden_final_norm) layer_norm(out->hidden, m->final_w, m->final_b, c->eps, BN, (int)C, out->hidden);
    layer_norm(s.x.data, m->final_w, m->final_b, c->eps, BN, (int)C, last);
    if (out->last_hidden_state) memcpy(out->last_hidden_state, last, (size_t)BN * C * sizeof(float));
    if (out->pooled || out->text_embeds) DT_TRY(pool(m, ids, B, N, last, a, out, err));
    return DT_OK;
}
