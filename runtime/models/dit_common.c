#include "dit_common.h"
#include <stdlib.h>

#define LIN(l, x, y) DT_TRY(be->ops->linear_forward(be, (l), (x), (y), err))

static dt_tensor t2d(void *data, int64_t r, int64_t c) { int64_t s[2] = {r, c}; return dt_tensor_view(data, DT_F32, 2, s); }
static dt_tensor t3d(void *data, int64_t a, int64_t b, int64_t c) { int64_t s[3] = {a, b, c}; return dt_tensor_view(data, DT_F32, 3, s); }
static dt_status alloc2(dt_arena *a, dt_tensor *t, int64_t r, int64_t c, dt_err *err)
{
    int64_t s[2] = {r, c};
    return dt_arena_tensor(a, t, DT_F32, 2, s, err);
}

dt_status dit_patch_embed_load(dt_backend *be, dt_weight_source *src, int in_ch, int p, int C, int m_hint,
                               dt_linear **out, dt_err *err)
{
    int k = in_ch * p * p;
    int64_t ws[4] = {C, in_ch, p, p}, bs[1] = {C};
    DT_TRY(dt_weights_expect(src, "pos_embed.proj.weight", 4, ws, err)); /* the file's shape before the buffer */
    float *w = malloc((size_t)C * k * sizeof(float)), *b = malloc((size_t)C * sizeof(float));
    dt_status st = (w && b) ? DT_OK : dt_fail(err, DT_ENOMEM, "out of memory");
    if (st == DT_OK) st = src->read(src, "pos_embed.proj.weight", 4, ws, w, err);
    if (st == DT_OK) st = src->read(src, "pos_embed.proj.bias", 1, bs, b, err);
    if (st == DT_OK) st = be->ops->linear_create(be, w, b, k, C, DT_ACT_NONE, m_hint, be->cfg.compute, out, err);
    free(w);
    free(b);
    return st;
}

dt_status dit_adaln_load(dt_backend *be, dt_weight_source *src, int C, dit_adaln_single *a, dt_err *err)
{
    DT_TRY(dt_load_linear1(be, src, "adaln_single.emb.timestep_embedder.linear_1", DIT_TPROJ_DIM, C, 1, DT_ACT_SILU, 2, DT_F32, &a->t1, err));
    DT_TRY(dt_load_linear1(be, src, "adaln_single.emb.timestep_embedder.linear_2", C, C, 1, DT_ACT_NONE, 2, DT_F32, &a->t2, err));
    return dt_load_linear1(be, src, "adaln_single.linear", C, 6 * C, 1, DT_ACT_NONE, 2, DT_F32, &a->adaln, err);
}

void dit_adaln_free(dt_backend *be, dit_adaln_single *a)
{
    be->ops->linear_destroy(a->t1);
    be->ops->linear_destroy(a->t2);
    be->ops->linear_destroy(a->adaln);
    *a = (dit_adaln_single){0};
}

dt_status dit_sinusoid(dt_backend *be, const float *t, int n, dt_stage *st, dt_tensor *proj, dt_err *err)
{
    float *h = dt_stage_get(st, (size_t)n * DIT_TPROJ_DIM);
    if (!h) return dt_fail(err, DT_ENOMEM, "out of memory");
    dt_timestep_embedding(t, n, DIT_TPROJ_DIM, 1, 0.0f, h);
    return dt_backend_write(be, proj->data, h, (size_t)n * DIT_TPROJ_DIM, err);
}

dt_status dit_timestep_embed(dt_backend *be, const dit_adaln_single *a, const float *t, int B, int C,
                             dt_arena *ar, dt_stage *st, dt_tensor *emb, dt_err *err)
{
    dt_tensor proj, hid;
    DT_TRY(alloc2(ar, &proj, B, DIT_TPROJ_DIM, err));
    DT_TRY(alloc2(ar, &hid, B, C, err));
    DT_TRY(alloc2(ar, emb, B, C, err));
    DT_TRY(dit_sinusoid(be, t, B, st, &proj, err));
    LIN(a->t1, &proj, &hid);
    LIN(a->t2, &hid, emb);
    return DT_OK;
}

dt_status dit_adaln_out(dt_backend *be, const dit_adaln_single *a, const dt_tensor *emb, int C,
                        dt_arena *ar, dt_tensor *t6, dt_err *err)
{
    int64_t B = emb->shape[0];
    dt_tensor se;
    DT_TRY(alloc2(ar, &se, B, C, err));
    DT_TRY(alloc2(ar, t6, B, 6 * C, err));
    DT_TRY(be->ops->activation(be, DT_ACT_SILU, emb, &se, err));
    LIN(a->adaln, &se, t6);
    return DT_OK;
}

dt_status dit_caption_load(dt_backend *be, dt_weight_source *src, int caption_channels, int C, int m_hint,
                           dt_dtype dtype, dit_caption_proj *c, dt_err *err)
{
    DT_TRY(dt_load_linear1(be, src, "caption_projection.linear_1", caption_channels, C, 1, DT_ACT_GELU_TANH, m_hint, dtype, &c->l1, err));
    return dt_load_linear1(be, src, "caption_projection.linear_2", C, C, 1, DT_ACT_NONE, m_hint, dtype, &c->l2, err);
}

void dit_caption_free(dt_backend *be, dit_caption_proj *c)
{
    be->ops->linear_destroy(c->l1);
    be->ops->linear_destroy(c->l2);
    *c = (dit_caption_proj){0};
}

dt_status dit_caption_forward(dt_backend *be, const dit_caption_proj *c, const dt_tensor *ehs, int C,
                              dt_arena *ar, dt_tensor *ctx, dt_err *err)
{
    dt_tensor h;
    DT_TRY(alloc2(ar, &h, ehs->shape[0], C, err));
    LIN(c->l1, ehs, &h);
    LIN(c->l2, &h, ctx);
    return DT_OK;
}

dt_status dit_key_bias(dt_backend *be, const float *mask, int B, int reps, int T, dt_arena *ar, dt_stage *st, float **out,
                       dt_err *err)
{
    *out = NULL;
    if (!mask) return DT_OK;
    size_t n = (size_t)B * reps * T;
    float *kb = dt_arena_alloc(ar, n * sizeof(float)), *h = dt_stage_get(st, n);
    if (!kb || !h) return dt_fail(err, DT_ENOMEM, "out of memory");
    for (int b = 0; b < B; b++)
        for (int r = 0; r < reps; r++)
            for (int i = 0; i < T; i++) h[((size_t)b * reps + r) * T + i] = (1.0f - mask[(size_t)b * T + i]) * -10000.0f;
    *out = kb;
    return dt_backend_write(be, kb, h, n, err);
}

dt_status dit_final_layer(dt_backend *be, const dit_final_args *f, dt_err *err)
{
    int S = f->S, C = f->C;
    /* mod[s, k·C + j] = emb[s, j] + table[k, j]: each emb row twice, then the table added */
    dt_tensor emb = t2d((float *)f->emb, S, C), rep = t2d(f->mod, 2 * S, C), mod = t2d(f->mod, S, 2 * C),
              tab = t2d((float *)f->table, 1, 2 * C);
    DT_TRY(be->ops->repeat_rows(be, &emb, 2, &rep, err));
    DT_TRY(be->ops->add_rows(be, &mod, &tab, &mod, err));
    dt_tensor shift = t2d(f->mod, S, C), scl = t2d(f->mod + C, S, C);
    shift.strides[0] = scl.strides[0] = 2 * C;
    dt_tensor x3 = t3d(f->x->data, S, f->N, C), xn3 = t3d(f->xn->data, S, f->N, C);
    DT_TRY(be->ops->layernorm_modulate(be, &x3, &shift, &scl, f->eps, &xn3, err));
    dt_tensor xn = t2d(f->xn->data, (int64_t)S * f->N, C);
    LIN(f->proj_out, &xn, f->y);
    return DT_OK;
}

dt_status dit_pos_embed(dt_backend *be, int C, int h, int w, int base_size, float interpolation_scale, dit_pos_cache *pc,
                        dt_err *err)
{
    if (pc->dev && pc->h == h && pc->w == w) return DT_OK;
    dit_pos_free(be, pc);
    float *host = malloc((size_t)h * w * C * sizeof(float));
    if (!host) return dt_fail(err, DT_ENOMEM, "out of memory");
    dt_sincos_pos_embed_2d(C, h, w, base_size, interpolation_scale, host);
    dt_status s = dt_backend_upload(be, host, (size_t)h * w * C, &pc->dev, err);
    free(host);
    if (s == DT_OK) pc->h = h, pc->w = w;
    return s;
}

void dit_pos_free(dt_backend *be, dit_pos_cache *pc)
{
    dt_free_param(be, pc->dev);
    *pc = (dit_pos_cache){0};
}

static dt_tensor t4d(void *data, const int64_t *shape, const int64_t *strides)
{
    dt_tensor t = dt_tensor_view(data, DT_F32, 4, shape);
    for (int i = 0; i < 4; i++) t.strides[i] = strides[i];
    return t;
}

dt_status dit_frames_layout(dt_backend *be, float *video, float *frames, int B, int C, int F, int64_t HW, int64_t W,
                            int to_frames, dt_err *err)
{
    int64_t shape[4] = {F, C, HW / W, W}, vs[4] = {HW, F * HW, W, 1}, fs[4] = {C * HW, HW, W, 1};
    for (int b = 0; b < B; b++) {
        dt_tensor v = t4d(video + (size_t)b * C * F * HW, shape, vs), f = t4d(frames + (size_t)b * F * C * HW, shape, fs);
        DT_TRY(to_frames ? be->ops->copy4d(be, &v, &f, err) : be->ops->copy4d(be, &f, &v, err));
    }
    return DT_OK;
}

dt_status dit_swap_axes(dt_backend *be, const float *x, float *y, int B, int A, int Bn, int C, dt_err *err)
{
    int64_t shape[4] = {B, Bn, A, C}, xs[4] = {(int64_t)A * Bn * C, C, (int64_t)Bn * C, 1},
            ys[4] = {(int64_t)Bn * A * C, (int64_t)A * C, C, 1};
    dt_tensor src = t4d((float *)x, shape, xs), dst = t4d(y, shape, ys);
    return be->ops->copy4d(be, &src, &dst, err);
}
