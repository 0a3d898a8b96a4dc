#include "dit_common.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define LIN(l, x, y) DT_TRY(be->ops->linear_forward(be, (l), (x), (y), err))

const dit_names dit_diffusers_names = {
    .patch = "pos_embed.proj", .patch_rank = 4,
    .t1 = "adaln_single.emb.timestep_embedder.linear_1", .t2 = "adaln_single.emb.timestep_embedder.linear_2",
    .adaln = "adaln_single.linear",
    .cap1 = "caption_projection.linear_1", .cap2 = "caption_projection.linear_2",
};

dt_status dit_patch_embed_load(dt_backend *be, dt_weight_source *src, const dit_names *nm, int in_ch, int p, int C,
                               int m_hint, dt_linear **out, dt_err *err)
{
    int k = in_ch * p * p, r = nm->patch_rank;
    int64_t ws[5] = {C, in_ch, p, p, p}, bs[1] = {C};
    if (r == 5) ws[2] = 1; /* Conv3d with a (1, p, p) kernel */
    char wn[96], bn[96];
    snprintf(wn, sizeof wn, "%s.weight", nm->patch);
    snprintf(bn, sizeof bn, "%s.bias", nm->patch);
    DT_TRY(dt_weights_expect(src, wn, r, ws, err)); /* the file's shape before the buffer */
    float *w = malloc((size_t)C * k * sizeof(float)), *b = malloc((size_t)C * sizeof(float));
    dt_status st = (w && b) ? DT_OK : dt_fail(err, DT_ENOMEM, "out of memory");
    if (st == DT_OK) st = src->read(src, wn, r, ws, w, err);
    if (st == DT_OK) st = src->read(src, bn, 1, bs, b, err);
    if (st == DT_OK) st = be->ops->linear_create(be, w, b, k, C, DT_ACT_NONE, m_hint, be->cfg.compute, out, err);
    free(w);
    free(b);
    return st;
}

dt_status dit_adaln_load(dt_backend *be, dt_weight_source *src, const dit_names *nm, int C, dit_adaln_single *a,
                         dt_err *err)
{
    DT_TRY(dt_load_linear1(be, src, nm->t1, DIT_TPROJ_DIM, C, 1, DT_ACT_SILU, 2, DT_F32, &a->t1, err));
    DT_TRY(dt_load_linear1(be, src, nm->t2, C, C, 1, DT_ACT_NONE, 2, DT_F32, &a->t2, err));
    return dt_load_linear1(be, src, nm->adaln, C, 6 * C, 1, DT_ACT_NONE, 2, DT_F32, &a->adaln, err);
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
    DT_TRY(dit_alloc2(ar, &proj, B, DIT_TPROJ_DIM, err));
    DT_TRY(dit_alloc2(ar, &hid, B, C, err));
    DT_TRY(dit_alloc2(ar, emb, B, C, err));
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
    DT_TRY(dit_alloc2(ar, &se, B, C, err));
    DT_TRY(dit_alloc2(ar, t6, B, 6 * C, err));
    DT_TRY(be->ops->activation(be, DT_ACT_SILU, emb, &se, err));
    LIN(a->adaln, &se, t6);
    return DT_OK;
}

dt_status dit_caption_load(dt_backend *be, dt_weight_source *src, const dit_names *nm, int caption_channels, int C,
                           int m_hint, dt_dtype dtype, dit_caption_proj *c, dt_err *err)
{
    DT_TRY(dt_load_linear1(be, src, nm->cap1, caption_channels, C, 1, DT_ACT_GELU_TANH, m_hint, dtype, &c->l1, err));
    return dt_load_linear1(be, src, nm->cap2, C, C, 1, DT_ACT_NONE, m_hint, dtype, &c->l2, err);
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
    DT_TRY(dit_alloc2(ar, &h, ehs->shape[0], C, err));
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
    dt_tensor emb = dit_t2d((float *)f->emb, S, C), rep = dit_t2d(f->mod, 2 * S, C), mod = dit_t2d(f->mod, S, 2 * C),
              tab = dit_t2d((float *)f->table, 1, 2 * C);
    DT_TRY(be->ops->repeat_rows(be, &emb, 2, &rep, err));
    DT_TRY(be->ops->add_rows(be, &mod, &tab, &mod, err));
    dt_tensor shift = dit_t2d(f->mod, S, C), scl = dit_t2d(f->mod + C, S, C);
    shift.strides[0] = scl.strides[0] = 2 * C;
    dt_tensor x3 = dit_t3d(f->x->data, S, f->N, C), xn3 = dit_t3d(f->xn->data, S, f->N, C);
    DT_TRY(be->ops->layernorm_modulate(be, &x3, &shift, &scl, f->eps, &xn3, err));
    dt_tensor xn = dit_t2d(f->xn->data, (int64_t)S * f->N, C);
    LIN(f->proj_out, &xn, f->y);
    return DT_OK;
}

dt_status dit_table_get(dt_backend *be, int C, int h, int w, dit_table_fill fill, const void *ctx, dit_pos_cache *pc,
                        dt_err *err)
{
    if (pc->dev && pc->h == h && pc->w == w) return DT_OK;
    dit_pos_free(be, pc);
    float *host = malloc((size_t)h * w * C * sizeof(float));
    if (!host) return dt_fail(err, DT_ENOMEM, "out of memory");
    fill(ctx, C, h, w, host);
    dt_status s = dt_backend_upload(be, host, (size_t)h * w * C, &pc->dev, err);
    free(host);
    if (s == DT_OK) pc->h = h, pc->w = w;
    return s;
}

typedef struct { int base_size; float interpolation_scale; } pos2d_args;

static void pos2d_fill(const void *ctx, int C, int h, int w, float *host)
{
    const pos2d_args *a = ctx;
    dt_sincos_pos_embed_2d(C, h, w, a->base_size, a->interpolation_scale, host);
}

dt_status dit_pos_embed(dt_backend *be, int C, int h, int w, int base_size, float interpolation_scale, dit_pos_cache *pc,
                        dt_err *err)
{
    pos2d_args args = {base_size, interpolation_scale};
    return dit_table_get(be, C, h, w, pos2d_fill, &args, pc, err);
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

void dit_sincos_row(int dim, double pos, float *row)
{
    int half = dim / 2;
    for (int k = 0; k < half; k++) {
        double v = pos * (1.0 / pow(10000.0, (double)k / (dim / 2.0)));
        row[k] = (float)sin(v);
        row[half + k] = (float)cos(v);
    }
}

dit_video_dims dit_video_dims_of(const dt_denoiser_inputs *in, int p)
{
    const dt_tensor *hs = in->hidden_states;
    dit_video_dims d = {.B = (int)hs->shape[0], .F = (int)hs->shape[2], .H = (int)hs->shape[3], .W = (int)hs->shape[4], .p = p};
    d.h = d.H / p, d.w = d.W / p, d.N = d.h * d.w;
    d.S = d.B * d.F, d.T = (int)in->encoder_hidden_states->shape[1];
    d.M = (int64_t)d.S * d.N;
    return d;
}

dt_status dit_video_check(const dt_denoiser_info *info, const char *frames_field, const dt_denoiser_inputs *in,
                          const dt_tensor *out, dt_err *err)
{
    const dt_tensor *hs = in->hidden_states, *eh = in->encoder_hidden_states;
    int p = info->patch_size;
    if (!hs || hs->ndim != 5 || hs->shape[1] != info->in_channels)
        return dt_fail(err, DT_EINVAL, "hidden_states: expected [B, %d, F, H, W]", info->in_channels);
    if (hs->shape[0] <= 0 || hs->shape[2] <= 0 || hs->shape[2] > info->max_frames)
        return dt_fail(err, DT_EINVAL, "hidden_states: %lld frames, the model takes 1 to %d (%s)", (long long)hs->shape[2],
                       info->max_frames, frames_field);
    if (hs->shape[3] <= 0 || hs->shape[4] <= 0 || hs->shape[3] % p || hs->shape[4] % p)
        return dt_fail(err, DT_EINVAL, "hidden_states: height and width must be positive multiples of patch_size %d", p);
    if (!eh || eh->ndim != 3 || eh->shape[0] != hs->shape[0] || eh->shape[2] != info->caption_channels || eh->shape[1] <= 0)
        return dt_fail(err, DT_EINVAL, "encoder_hidden_states: expected [%lld, T, %d]", (long long)hs->shape[0],
                       info->caption_channels);
    if (!in->timestep) return dt_fail(err, DT_EINVAL, "timestep: missing");
    if (!out || out->ndim != 5 || out->shape[0] != hs->shape[0] || out->shape[1] != info->out_channels ||
        out->shape[2] != hs->shape[2] || out->shape[3] != hs->shape[3] || out->shape[4] != hs->shape[4])
        return dt_fail(err, DT_EINVAL, "output: expected [B, %d, F, H, W]", info->out_channels);
    return DT_OK;
}

dt_status dit_video_embed(dt_backend *be, const dit_video_dims *d, const dt_tensor *hs, dt_linear *patch, int C,
                          const float *pos, dt_arena *a, dt_tensor *x, dt_err *err)
{
    int cin = (int)hs->shape[1], p = d->p;
    dt_tensor fr, patches;
    int64_t fshape[4] = {d->S, cin, d->H, d->W};
    DT_TRY(dt_arena_tensor(a, &fr, DT_F32, 4, fshape, err));
    DT_TRY(dit_frames_layout(be, hs->data, fr.data, d->B, cin, d->F, (int64_t)d->H * d->W, d->W, 1, err));
    DT_TRY(dit_alloc2(a, &patches, d->M, (int64_t)cin * p * p, err));
    DT_TRY(dit_alloc2(a, x, d->M, C, err));
    DT_TRY(be->ops->patchify(be, &fr, p, &patches, err));
    LIN(patch, &patches, x);
    dt_tensor pt = dit_t2d((float *)pos, d->N, C);
    return be->ops->add_rows(be, x, &pt, x, err);
}

dt_status dit_video_final(dt_backend *be, const dit_video_dims *d, const dit_final_args *f, dt_arena *a, dt_tensor *out,
                          dt_err *err)
{
    int p = d->p, oc = (int)out->shape[1], po = p * p * oc;
    dt_tensor y, yf;
    DT_TRY(dit_alloc2(a, &y, d->M, po, err));
    dit_final_args fa = *f;
    fa.y = &y;
    DT_TRY(dit_final_layer(be, &fa, err));
    int64_t oshape[4] = {d->S, oc, d->H, d->W};
    DT_TRY(dt_arena_tensor(a, &yf, DT_F32, 4, oshape, err));
    dt_tensor y3 = dit_t3d(y.data, d->S, d->N, po);
    DT_TRY(be->ops->unpatchify(be, &y3, p, d->h, d->w, &yf, err));
    return dit_frames_layout(be, out->data, yf.data, d->B, oc, d->F, (int64_t)d->H * d->W, d->W, 0, err);
}
