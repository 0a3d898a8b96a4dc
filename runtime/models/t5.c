/* T5 encoder: loading and the forward pass, written out as transformers computes it
 * (models/t5/modeling_t5.py: T5Stack, T5Block, T5LayerSelfAttention, T5LayerFF with
 * T5DenseGatedActDense, T5LayerNorm). */
#include "t5.h"
#include "layers.h"
#include "kernels/quant.h"
#include "runtime/core/json.h"
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    float *ln0, *ln1;           /* layer.0.layer_norm, layer.1.layer_norm [d_model] */
    dt_linear *qkv, *o;         /* SelfAttention q|k|v fused, o */
    dt_linear *wi, *wo;         /* DenseReluDense wi_0|wi_1 fused, wo */
} t5_block;

struct t5_model {
    t5_config cfg;
    dt_backend *be;
    dt_dtype wdt;               /* the linears' weights: the compute dtype, or DT_I8 (weight-only int8) */
    void *embed;                /* [vocab, d_model] in the compute dtype (f32 or bf16), or int8 rows (wdt DT_I8) */
    float *embed_scale;         /* wdt DT_I8: [vocab], row r ≈ embed[r]·embed_scale[r] */
    float *rel_bias;            /* layer 0 relative_attention_bias [num_buckets, heads] */
    float *final_ln;            /* [d_model] */
    t5_block *blocks;
};

/* ---- config ---- */

dt_status t5_config_load(const char *dir, t5_config *c, dt_err *err)
{
    char path[4096], ff[64];
    snprintf(path, sizeof path, "%s/config.json", dir);
    cJSON *j;
    DT_TRY(dt_json_load(path, &j, err));
    dt_status st = DT_OK;
    double eps = 1e-6;
    *c = (t5_config){0};
    /* Bounds (README: limits), checked before anything is sized from them; far above T5-XXL
     * (32128 tokens, d_model 4096, 64 heads of 64, d_ff 10240, 24 layers). */
#define INT(f, dst, dflt, hi) if (st == DT_OK) st = dt_json_int_in(j, path, f, 1, dflt, 1, hi, &(dst), err)
    INT("vocab_size", c->vocab_size, 32128, 1 << 20);
    INT("d_model", c->d_model, 512, 16384);
    INT("d_kv", c->d_kv, 64, 1024);
    INT("d_ff", c->d_ff, 2048, 65536);
    INT("num_layers", c->num_layers, 6, 256);
    INT("num_heads", c->num_heads, 8, 256);
    INT("relative_attention_num_buckets", c->num_buckets, 32, 4096);
    INT("relative_attention_max_distance", c->max_distance, 128, 1 << 20);
#undef INT
    if (st == DT_OK) st = dt_json_num(j, path, "layer_norm_epsilon", 1, 1e-6, &eps, err);
    c->eps = (float)eps;
    if (st == DT_OK) st = dt_json_str(j, path, "feed_forward_proj", "relu", ff, sizeof ff, err);
    if (st == DT_OK && strcmp(ff, "gated-gelu"))
        st = dt_fail(err, DT_EUNSUPPORTED, "%s: field \"feed_forward_proj\" is \"%s\", only \"gated-gelu\" (T5 v1.1) is supported", path, ff);
    cJSON_Delete(j);
    if (st != DT_OK) return st;
#define CHECK(cond, ...) if (!(cond)) return dt_fail(err, DT_EFORMAT, __VA_ARGS__)
    CHECK(c->vocab_size > 0 && c->d_model > 0 && c->d_kv > 0 && c->d_ff > 0 && c->num_layers > 0 && c->num_heads > 0,
          "%s: vocab_size, d_model, d_kv, d_ff, num_layers and num_heads must be positive", path);
    CHECK(c->num_buckets >= 4 && c->max_distance > c->num_buckets / 4,
          "%s: relative_attention_num_buckets must be >= 4 and relative_attention_max_distance > num_buckets / 4", path);
    CHECK(eps >= 0 && eps < 1, "%s: \"layer_norm_epsilon\" must be in [0, 1)", path);
#undef CHECK
    return DT_OK;
}

t5_config t5_config_xxl(void)
{
    return (t5_config){.vocab_size = 32128, .d_model = 4096, .d_kv = 64, .d_ff = 10240, .num_layers = 24,
                       .num_heads = 64, .num_buckets = 32, .max_distance = 128, .eps = 1e-6f};
}

int64_t t5_param_count(const t5_config *c)
{
    int64_t C = c->d_model, I = (int64_t)c->num_heads * c->d_kv, F = c->d_ff;
    int64_t blk = 3 * I * C + I * C + 2 * F * C + F * C + 2 * C;
    return (int64_t)c->vocab_size * C + blk * c->num_layers + (int64_t)c->num_buckets * c->num_heads + C;
}

double t5_matmul_flops(const t5_config *c, int B, int N)
{
    double C = c->d_model, I = (double)c->num_heads * c->d_kv, F = c->d_ff, M = (double)B * N;
    double blk = 2 * M * C * 3 * I + 2 * (double)B * N * N * I * 2 + 2 * M * I * C + 2 * M * C * 2 * F + 2 * M * F * C;
    return blk * c->num_layers;
}

int t5_relative_position_bucket(int rel, int num_buckets, int max_distance)
{
    int nb = num_buckets / 2, ret = rel > 0 ? nb : 0, n = rel < 0 ? -rel : rel, max_exact = nb / 2;
    if (n < max_exact) return ret + n;
    /* torch: (log(n.float() / max_exact) / math.log(max_distance / max_exact) * (nb - max_exact)).long(),
     * all f32 tensor arithmetic with the Python scalars rounded to f32 */
    float v = logf((float)n / (float)max_exact) / (float)log((double)max_distance / (double)max_exact) * (float)(nb - max_exact);
    int large = max_exact + (int)v;
    return ret + (large < nb - 1 ? large : nb - 1);
}

/* ---- loading ---- */

/* n bias-free [out_each, in] weights named <prefix_i>.weight, stacked along out. */
static dt_status load_linear(t5_model *m, dt_weight_source *src, char names[][192], int n, int in, int out_each,
                             int m_hint, dt_linear **lin, dt_err *err)
{
    const char *pp[3] = {names[0], names[1], names[2]};
    dt_linear_spec spec = {pp, n, in, out_each, 0, DT_ACT_NONE, m_hint, m->wdt};
    return dt_load_linear(m->be, src, &spec, lin, err);
}

static dt_status load_vec(dt_weight_source *src, const char *name, int n, float **out, dt_err *err)
{
    return dt_load_param(src, name, 1, (int64_t[]){n}, out, err);
}

static dt_status load_block(t5_model *m, dt_weight_source *src, int i, int hint, dt_err *err)
{
    const t5_config *c = &m->cfg;
    t5_block *b = &m->blocks[i];
    int C = c->d_model, I = c->num_heads * c->d_kv;
    char n[3][192];
#define NAME(k, fmt) snprintf(n[k], sizeof n[k], "encoder.block.%d." fmt, i)
    NAME(0, "layer.0.layer_norm.weight");
    DT_TRY(load_vec(src, n[0], C, &b->ln0, err));
    NAME(0, "layer.0.SelfAttention.q"); NAME(1, "layer.0.SelfAttention.k"); NAME(2, "layer.0.SelfAttention.v");
    DT_TRY(load_linear(m, src, n, 3, C, I, hint, &b->qkv, err));
    NAME(0, "layer.0.SelfAttention.o");
    DT_TRY(load_linear(m, src, n, 1, I, C, hint, &b->o, err));
    NAME(0, "layer.1.layer_norm.weight");
    DT_TRY(load_vec(src, n[0], C, &b->ln1, err));
    NAME(0, "layer.1.DenseReluDense.wi_0"); NAME(1, "layer.1.DenseReluDense.wi_1");
    DT_TRY(load_linear(m, src, n, 2, C, c->d_ff, hint, &b->wi, err));
    NAME(0, "layer.1.DenseReluDense.wo");
    DT_TRY(load_linear(m, src, n, 1, c->d_ff, C, hint, &b->wo, err));
#undef NAME
    return DT_OK;
}

/* The token embedding, stored as transformers saves it: "shared.weight" (tied) or
 * "encoder.embed_tokens.weight"; kept in the compute dtype, or with int8 weights as int8 rows with
 * a scale each (symmetric per row, as the linears' output channels). */
static dt_status load_embedding(t5_model *m, dt_weight_source *src, dt_err *err)
{
    const t5_config *c = &m->cfg;
    const char *name = "shared.weight";
    if (src->st && !dt_st_find(src->st, name) && dt_st_find(src->st, "encoder.embed_tokens.weight"))
        name = "encoder.embed_tokens.weight";
    size_t n = (size_t)c->vocab_size * c->d_model;
    int64_t shape[2] = {c->vocab_size, c->d_model};
    DT_TRY(dt_weights_expect(src, name, 2, shape, err)); /* the file's shape before the buffer */
    float *w = malloc(n * sizeof(float));
    if (!w) return dt_fail(err, DT_ENOMEM, "out of memory loading %s", name);
    dt_status st = src->read(src, name, 2, shape, w, err);
    if (st == DT_OK && m->wdt == DT_I8) {
        dt_qweights qw;
        st = dt_qweights_make(w, c->d_model, c->vocab_size, 8, 0, NULL, 0, &qw, err);
        free(w);
        if (st == DT_OK) { m->embed = qw.q; m->embed_scale = qw.wscale; }
        return st;
    }
    if (st != DT_OK || m->be->cfg.compute == DT_F32) {
        if (st == DT_OK) m->embed = w;
        else free(w);
        return st;
    }
    uint16_t *h = malloc(n * sizeof(uint16_t));
    if (!h) { free(w); return dt_fail(err, DT_ENOMEM, "out of memory loading %s", name); }
    for (size_t i = 0; i < n; i++) h[i] = dt_f32_to_bf16(w[i]);
    free(w);
    m->embed = h;
    return DT_OK;
}

static dt_status build(t5_model *m, dt_weight_source *src, int hint, dt_err *err)
{
    const t5_config *c = &m->cfg;
    int64_t rs[2] = {c->num_buckets, c->num_heads};
    const char *rb = "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight";
    DT_TRY(load_embedding(m, src, err));
    DT_TRY(dt_weights_expect(src, rb, 2, rs, err));
    m->rel_bias = malloc((size_t)c->num_buckets * c->num_heads * sizeof(float));
    if (!m->rel_bias) return dt_fail(err, DT_ENOMEM, "out of memory");
    DT_TRY(src->read(src, rb, 2, rs, m->rel_bias, err));
    for (int i = 0; i < c->num_layers; i++) DT_TRY(load_block(m, src, i, hint, err));
    return load_vec(src, "encoder.final_layer_norm.weight", c->d_model, &m->final_ln, err);
}

dt_status t5_create(dt_backend *be, const t5_config *cfg, dt_weight_source *src, int m_hint, dt_dtype weights,
                    t5_model **out, dt_err *err)
{
    if (weights != be->cfg.compute && weights != DT_I8)
        return dt_fail(err, DT_EINVAL, "T5 weights: %s, expected the backend's %s or int8", dt_dtype_name(weights),
                       dt_dtype_name(be->cfg.compute));
    if (weights == DT_I8 && (be->cfg.compute != DT_F32 || !be->ops->supports(be, DT_OP_LINEAR, DT_I8)))
        return dt_fail(err, DT_EUNSUPPORTED, "T5 weights int8: needs f32 compute on a backend with int8-weight "
                       "linears (the %s backend%s)", dt_backend_device_name(be->cfg.device),
                       be->cfg.compute != DT_F32 ? " computes in another dtype" : " has none");
    t5_model *m = calloc(1, sizeof *m);
    if (!m) return dt_fail(err, DT_ENOMEM, "out of memory");
    m->cfg = *cfg;
    m->be = be;
    m->wdt = weights;
    m->blocks = calloc((size_t)cfg->num_layers, sizeof *m->blocks);
    dt_status st = m->blocks ? build(m, src, m_hint > 0 ? m_hint : 240, err) : dt_fail(err, DT_ENOMEM, "out of memory");
    if (st != DT_OK) { t5_free(m); return st; }
    *out = m;
    return DT_OK;
}

dt_status t5_load(dt_backend *be, const char *dir, dt_dtype weights, t5_model **out, dt_err *err)
{
    t5_config cfg;
    DT_TRY(t5_config_load(dir, &cfg, err));
    dt_safetensors *st;
    DT_TRY(dt_st_open_dir(dir, "model", &st, err));
    dt_weight_source src = dt_weights_from_file(st);
    dt_status s = t5_create(be, &cfg, &src, 0, weights, out, err);
    dt_weights_close(&src);
    dt_st_close(st);
    return s;
}

void t5_free(t5_model *m)
{
    if (!m) return;
    void (*del)(dt_linear *) = m->be->ops->linear_destroy;
    for (int i = 0; m->blocks && i < m->cfg.num_layers; i++) {
        t5_block *b = &m->blocks[i];
        del(b->qkv); del(b->o); del(b->wi); del(b->wo);
        free(b->ln0);
        free(b->ln1);
    }
    free(m->blocks);
    free(m->embed);
    free(m->embed_scale);
    free(m->rel_bias);
    free(m->final_ln);
    free(m);
}

const t5_config *t5_get_config(const t5_model *m) { return &m->cfg; }

/* ---- forward ---- */

#define LIN(l, x, y) DT_TRY(be->ops->linear_forward(be, (l), (x), (y), err))

static dt_tensor t3d(void *data, int64_t a, int64_t b, int64_t c) { int64_t s[3] = {a, b, c}; return dt_tensor_view(data, DT_F32, 3, s); }

static dt_status alloc2(dt_arena *a, dt_tensor *t, int64_t r, int64_t c, dt_err *err)
{
    int64_t s[2] = {r, c};
    return dt_arena_tensor(a, t, DT_F32, 2, s, err);
}

static dt_status embed_tokens(const t5_model *m, const int32_t *ids, int64_t n, float *x, dt_err *err)
{
    int64_t C = m->cfg.d_model;
    for (int64_t r = 0; r < n; r++) {
        if (ids[r] < 0 || ids[r] >= m->cfg.vocab_size)
            return dt_fail(err, DT_EINVAL, "input_ids: id %d at position %lld is outside the vocabulary [0, %d)",
                           (int)ids[r], (long long)r, m->cfg.vocab_size);
        if (m->wdt == DT_I8) {
            const int8_t *e = (const int8_t *)m->embed + (int64_t)ids[r] * C;
            const float s = m->embed_scale[ids[r]];
            for (int64_t c = 0; c < C; c++) x[r * C + c] = (float)e[c] * s;
        } else if (m->be->cfg.compute == DT_F32) {
            memcpy(x + r * C, (const float *)m->embed + (int64_t)ids[r] * C, (size_t)C * sizeof(float));
        } else {
            const uint16_t *e = (const uint16_t *)m->embed + (int64_t)ids[r] * C;
            for (int64_t c = 0; c < C; c++) x[r * C + c] = dt_bf16_to_f32(e[c]);
        }
    }
    return DT_OK;
}

/* bias[h, i, j] = table[bucket(j - i), h]: T5Attention.compute_bias of layer 0. */
static void position_bias(const t5_model *m, int N, float *bias)
{
    const t5_config *c = &m->cfg;
    int H = c->num_heads;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            const float *row = m->rel_bias + (size_t)t5_relative_position_bucket(j - i, c->num_buckets, c->max_distance) * H;
            for (int h = 0; h < H; h++) bias[((size_t)h * N + i) * N + j] = row[h];
        }
}

typedef struct {
    dt_tensor x, xn, qkv, ao, o, h, g;
} t5_scratch;

static dt_status block_forward(t5_model *m, const t5_block *b, int B, int N, const dt_attn_bias *bias,
                               t5_scratch *s, dt_err *err)
{
    dt_backend *be = m->be;
    const t5_config *c = &m->cfg;
    int C = c->d_model, I = c->num_heads * c->d_kv;
    dt_tensor x3 = t3d(s->x.data, B, N, C), o3 = t3d(s->o.data, B, N, C), ao3 = t3d(s->ao.data, B, N, I);

    /* self-attention: unscaled scores (T5 folds 1/sqrt(d) into its init), shared bias */
    DT_TRY(be->ops->rms_norm(be, &s->x, b->ln0, c->eps, &s->xn, err));
    LIN(b->qkv, &s->xn, &s->qkv);
    dt_tensor q = t3d(s->qkv.data, B, N, I), k = q, v = q;
    q.strides[0] = k.strides[0] = v.strides[0] = (int64_t)N * 3 * I;
    q.strides[1] = k.strides[1] = v.strides[1] = 3 * I;
    k.data = (float *)s->qkv.data + I;
    v.data = (float *)s->qkv.data + 2 * I;
    DT_TRY(be->ops->attention(be, &q, &k, &v, bias, c->num_heads, 1.0f, &ao3, err));
    LIN(b->o, &s->ao, &s->o);
    DT_TRY(be->ops->gated_add(be, &x3, &o3, NULL, err));

    /* gated-GELU feed-forward: wo(gelu_new(wi_0 x) * wi_1 x) */
    DT_TRY(be->ops->rms_norm(be, &s->x, b->ln1, c->eps, &s->xn, err));
    LIN(b->wi, &s->xn, &s->h);
    DT_TRY(be->ops->gated_act(be, DT_ACT_GELU_TANH, &s->h, &s->g, err));
    LIN(b->wo, &s->g, &s->o);
    return be->ops->gated_add(be, &x3, &o3, NULL, err);
}

dt_status t5_encode(t5_model *m, const int32_t *ids, const float *mask, int B, int N, dt_arena *a,
                    float *out, dt_err *err)
{
    const t5_config *c = &m->cfg;
    dt_backend *be = m->be;
    if (B <= 0 || N <= 0) return dt_fail(err, DT_EINVAL, "input_ids: expected a non-empty [B, N] batch, got [%d, %d]", B, N);
    int64_t BN = (int64_t)B * N, C = c->d_model, I = (int64_t)c->num_heads * c->d_kv;
    t5_scratch s;
    DT_TRY(alloc2(a, &s.x, BN, C, err));
    DT_TRY(alloc2(a, &s.xn, BN, C, err));
    DT_TRY(alloc2(a, &s.qkv, BN, 3 * I, err));
    DT_TRY(alloc2(a, &s.ao, BN, I, err));
    DT_TRY(alloc2(a, &s.o, BN, C, err));
    DT_TRY(alloc2(a, &s.h, BN, 2 * (int64_t)c->d_ff, err));
    DT_TRY(alloc2(a, &s.g, BN, c->d_ff, err));
    /* Host code touches only host buffers: the token embeddings are gathered on the host and
     * written into the backend's tensor, the attention biases stay host memory (the backend reads
     * them itself, backend.h), and the output comes back with tensor_get, so the encoder runs on
     * any backend (the arena may hold device memory). */
    float *pos = malloc((size_t)c->num_heads * N * N * sizeof(float));
    float *key = mask ? malloc((size_t)BN * sizeof(float)) : NULL;
    float *emb = malloc((size_t)(BN * C) * sizeof(float));
    dt_status st = !pos || (mask && !key) || !emb ? dt_fail(err, DT_ENOMEM, "out of memory") : DT_OK;
    for (int64_t i = 0; st == DT_OK && mask && i < BN; i++) {
        if (mask[i] != 0.0f && mask[i] != 1.0f)
            st = dt_fail(err, DT_EINVAL, "attention_mask: values must be 0 or 1, got %g at position %lld", mask[i], (long long)i);
        else key[i] = (1.0f - mask[i]) * -FLT_MAX; /* get_extended_attention_mask: (1 - m) * finfo.min */
    }
    if (st == DT_OK) st = embed_tokens(m, ids, BN, emb, err);
    if (st == DT_OK) st = be->ops->tensor_set(be, &s.x, emb, (size_t)(BN * C) * sizeof(float), err);
    if (st == DT_OK) position_bias(m, N, pos);
    dt_attn_bias bias = {.key = key, .head = pos};
    for (int i = 0; st == DT_OK && i < c->num_layers; i++) st = block_forward(m, &m->blocks[i], B, N, &bias, &s, err);
    if (st == DT_OK) st = be->ops->rms_norm(be, &s.x, m->final_ln, c->eps, &s.xn, err);
    if (st == DT_OK) st = be->ops->tensor_get(be, &s.xn, out, (size_t)(BN * C) * sizeof(float), err);
    free(pos);
    free(key);
    free(emb);
    return st;
}
