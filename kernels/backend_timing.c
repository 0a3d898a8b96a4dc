#include "backend_timing.h"
#include <stdlib.h>
#include <time.h>

const char *const dt_op_kind_names[DT_OPK_COUNT] = {"linear", "attention", "norm", "elementwise", "conv", "memory"};

typedef struct {
    dt_backend base; /* base.ops points at `ops` below */
    dt_backend_ops ops;
    dt_backend *inner;
    dt_op_times times;
} timed_backend;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#define INNER(be) (((timed_backend *)(be))->inner)
/* Forwards a call to the inner backend, adding its wall time to kind K. */
#define TIMED(K, name, ...)                                                  \
    do {                                                                     \
        timed_backend *tb = (timed_backend *)be;                             \
        double t0 = now();                                                   \
        dt_status s = tb->inner->ops->name(tb->inner, __VA_ARGS__);          \
        tb->times.seconds[K] += now() - t0;                                  \
        tb->times.calls[K]++;                                                \
        return s;                                                            \
    } while (0)

static dt_status t_linear_create(dt_backend *be, const float *w, const float *b, int in, int out, dt_act act,
                                 int m_hint, dt_dtype dtype, dt_linear **lin, dt_err *err)
{
    return INNER(be)->ops->linear_create(INNER(be), w, b, in, out, act, m_hint, dtype, lin, err);
}
static dt_status t_linear_forward(dt_backend *be, dt_linear *l, const dt_tensor *x, dt_tensor *y, dt_err *err)
{
    TIMED(DT_OPK_LINEAR, linear_forward, l, x, y, err);
}
static dt_status t_attention(dt_backend *be, const dt_tensor *q, const dt_tensor *k, const dt_tensor *v,
                             const dt_attn_bias *bias, int heads, float scale, dt_tensor *out, dt_err *err)
{
    TIMED(DT_OPK_ATTENTION, attention, q, k, v, bias, heads, scale, out, err);
}
static dt_status t_window_attention(dt_backend *be, const dt_tensor *q, const dt_tensor *k, const dt_tensor *v,
                                    int heads, float scale, int window, dt_tensor *out, dt_err *err)
{
    TIMED(DT_OPK_ATTENTION, window_attention, q, k, v, heads, scale, window, out, err);
}
static dt_status t_attention_with(dt_backend *be, dt_attn_kernel kind, const dt_tensor *q, const dt_tensor *k,
                                  const dt_tensor *v, const dt_attn_bias *bias, int heads, float scale, int window,
                                  dt_tensor *out, dt_err *err)
{
    TIMED(DT_OPK_ATTENTION, attention_with, kind, q, k, v, bias, heads, scale, window, out, err);
}
static dt_status t_lnmod_linear(dt_backend *be, const dt_tensor *x, const dt_tensor *shift, const dt_tensor *scale,
                                float eps, dt_linear *l, dt_tensor *xn, dt_tensor *y, dt_err *err)
{
    TIMED(DT_OPK_LINEAR, layernorm_modulate_linear, x, shift, scale, eps, l, xn, y, err); /* the norm rides along */
}
static dt_status t_linear_gated_add(dt_backend *be, dt_linear *l, const dt_tensor *in, dt_tensor *x, dt_tensor *y,
                                    const dt_tensor *gate, dt_err *err)
{
    TIMED(DT_OPK_LINEAR, linear_gated_add, l, in, x, y, gate, err); /* the residual add rides along */
}
static dt_status t_layernorm_modulate(dt_backend *be, const dt_tensor *x, const dt_tensor *shift,
                                      const dt_tensor *scale, float eps, dt_tensor *y, dt_err *err)
{
    TIMED(DT_OPK_NORM, layernorm_modulate, x, shift, scale, eps, y, err);
}
static dt_status t_group_norm(dt_backend *be, const dt_tensor *x, int groups, const dt_tensor *gamma,
                              const dt_tensor *beta, float eps, dt_act act, dt_tensor *y, dt_err *err)
{
    TIMED(DT_OPK_NORM, group_norm, x, groups, gamma, beta, eps, act, y, err);
}
static dt_status t_rms_norm(dt_backend *be, const dt_tensor *x, const float *w, float eps, dt_tensor *y, dt_err *err)
{
    TIMED(DT_OPK_NORM, rms_norm, x, w, eps, y, err);
}
static dt_status t_gated_add(dt_backend *be, dt_tensor *x, const dt_tensor *y, const dt_tensor *gate, dt_err *err)
{
    TIMED(DT_OPK_ELEMENTWISE, gated_add, x, y, gate, err);
}
static dt_status t_activation(dt_backend *be, dt_act act, const dt_tensor *x, dt_tensor *y, dt_err *err)
{
    TIMED(DT_OPK_ELEMENTWISE, activation, act, x, y, err);
}
static dt_status t_patchify(dt_backend *be, const dt_tensor *x, int p, dt_tensor *y, dt_err *err)
{
    TIMED(DT_OPK_ELEMENTWISE, patchify, x, p, y, err);
}
static dt_status t_unpatchify(dt_backend *be, const dt_tensor *x, int p, int h, int w, dt_tensor *y, dt_err *err)
{
    TIMED(DT_OPK_ELEMENTWISE, unpatchify, x, p, h, w, y, err);
}
static dt_status t_add_rows(dt_backend *be, const dt_tensor *x, const dt_tensor *r, dt_tensor *y, dt_err *err)
{
    TIMED(DT_OPK_ELEMENTWISE, add_rows, x, r, y, err);
}
static dt_status t_repeat_rows(dt_backend *be, const dt_tensor *x, int reps, dt_tensor *y, dt_err *err)
{
    TIMED(DT_OPK_ELEMENTWISE, repeat_rows, x, reps, y, err);
}
static dt_status t_sub(dt_backend *be, const dt_tensor *a, const dt_tensor *b, dt_tensor *y, dt_err *err)
{
    TIMED(DT_OPK_ELEMENTWISE, sub, a, b, y, err);
}
static dt_status t_cfg_combine(dt_backend *be, const dt_tensor *uncond, const dt_tensor *cond, float g, dt_tensor *y,
                               dt_err *err)
{
    TIMED(DT_OPK_ELEMENTWISE, cfg_combine, uncond, cond, g, y, err);
}
static dt_status t_buffer_alloc(dt_backend *be, size_t bytes, void **ptr, dt_err *err)
{
    TIMED(DT_OPK_MEMORY, buffer_alloc, bytes, ptr, err);
}
static void t_buffer_free(dt_backend *be, void *ptr)
{
    timed_backend *tb = (timed_backend *)be;
    double t0 = now();
    tb->inner->ops->buffer_free(tb->inner, ptr);
    tb->times.seconds[DT_OPK_MEMORY] += now() - t0;
    tb->times.calls[DT_OPK_MEMORY]++;
}
static dt_status t_tensor_set(dt_backend *be, dt_tensor *dst, const void *host, size_t bytes, dt_err *err)
{
    TIMED(DT_OPK_MEMORY, tensor_set, dst, host, bytes, err);
}
static dt_status t_tensor_get(dt_backend *be, const dt_tensor *src, void *host, size_t bytes, dt_err *err)
{
    TIMED(DT_OPK_MEMORY, tensor_get, src, host, bytes, err);
}
static dt_status t_copy(dt_backend *be, const dt_tensor *src, dt_tensor *dst, dt_err *err)
{
    TIMED(DT_OPK_MEMORY, copy, src, dst, err);
}
static int t_supports(dt_backend *be, dt_op op, dt_dtype dtype)
{
    return INNER(be)->ops->supports(INNER(be), op, dtype);
}
static dt_status t_upsample(dt_backend *be, const dt_tensor *x, dt_tensor *y, dt_err *err)
{
    TIMED(DT_OPK_ELEMENTWISE, upsample_nearest2x, x, y, err);
}
static dt_status t_copy4d(dt_backend *be, const dt_tensor *src, dt_tensor *dst, dt_err *err)
{
    TIMED(DT_OPK_ELEMENTWISE, copy4d, src, dst, err);
}
static dt_status t_blend_edge(dt_backend *be, const dt_tensor *a, dt_tensor *b, int axis, int extent, dt_err *err)
{
    TIMED(DT_OPK_ELEMENTWISE, blend_edge, a, b, axis, extent, err);
}
static dt_status t_gated_act(dt_backend *be, dt_act act, const dt_tensor *x, dt_tensor *y, dt_err *err)
{
    TIMED(DT_OPK_ELEMENTWISE, gated_act, act, x, y, err);
}
static dt_status t_geglu(dt_backend *be, dt_act act, const dt_tensor *x, dt_tensor *y, dt_err *err)
{
    TIMED(DT_OPK_ELEMENTWISE, geglu, act, x, y, err);
}
static dt_status t_im2col(dt_backend *be, const dt_tensor *x, int k, int stride, int pad_lo, int pad_hi, dt_tensor *y,
                          dt_err *err)
{
    TIMED(DT_OPK_CONV, im2col, x, k, stride, pad_lo, pad_hi, y, err);
}
static dt_status t_conv2d_create(dt_backend *be, const float *w, const float *b, int cin, int cout, int k, int stride,
                                 int pad_lo, int pad_hi, dt_dtype dtype, dt_conv2d **conv, dt_err *err)
{
    return INNER(be)->ops->conv2d_create(INNER(be), w, b, cin, cout, k, stride, pad_lo, pad_hi, dtype, conv, err);
}
static dt_status t_conv2d_forward(dt_backend *be, dt_conv2d *c, const dt_tensor *x, dt_tensor *y, int accumulate,
                                  dt_err *err)
{
    TIMED(DT_OPK_CONV, conv2d_forward, c, x, y, accumulate, err);
}
static dt_status t_qlinear_create(dt_backend *be, const dt_qweights *qw, const float *b, dt_act act, int m_hint,
                                  dt_linear **lin, dt_err *err)
{
    return INNER(be)->ops->qlinear_create(INNER(be), qw, b, act, m_hint, lin, err);
}
static dt_status t_linear_observe(dt_backend *be, dt_linear *inner, int in, float *amax, dt_linear **lin, dt_err *err)
{
    return INNER(be)->ops->linear_observe(INNER(be), inner, in, amax, lin, err);
}
static dt_status t_keep_tokens(dt_backend *be, dt_linear *q, dt_linear *fp, const int *tokens, int n, dt_err *err)
{
    return INNER(be)->ops->qlinear_keep_tokens(INNER(be), q, fp, tokens, n, err);
}
static void t_destroy(dt_backend *be)
{
    dt_backend_destroy(INNER(be));
    free(be);
}

dt_status dt_backend_timed(dt_backend *inner, dt_backend **out, dt_err *err)
{
    timed_backend *tb = calloc(1, sizeof *tb);
    if (!tb) {
        dt_backend_destroy(inner);
        return dt_fail(err, DT_ENOMEM, "out of memory");
    }
    const dt_backend_ops *in = inner->ops;
    tb->ops = *in; /* destroy-only entries (linear_destroy, conv2d_destroy) take no backend */
    tb->ops.buffer_alloc = t_buffer_alloc;
    tb->ops.buffer_free = t_buffer_free;
    tb->ops.tensor_set = t_tensor_set;
    tb->ops.tensor_get = t_tensor_get;
    tb->ops.copy = t_copy;
    tb->ops.supports = t_supports;
    tb->ops.repeat_rows = t_repeat_rows;
    tb->ops.sub = t_sub;
    tb->ops.cfg_combine = t_cfg_combine;
    tb->ops.linear_create = t_linear_create;
    tb->ops.linear_forward = t_linear_forward;
    tb->ops.attention = t_attention;
    tb->ops.window_attention = t_window_attention;
    if (in->attention_with) tb->ops.attention_with = t_attention_with;
    if (in->layernorm_modulate_linear) tb->ops.layernorm_modulate_linear = t_lnmod_linear;
    tb->ops.layernorm_modulate = t_layernorm_modulate;
    tb->ops.group_norm = t_group_norm;
    tb->ops.rms_norm = t_rms_norm;
    tb->ops.gated_add = t_gated_add;
    tb->ops.activation = t_activation;
    tb->ops.patchify = t_patchify;
    tb->ops.unpatchify = t_unpatchify;
    tb->ops.add_rows = t_add_rows;
    tb->ops.upsample_nearest2x = t_upsample;
    tb->ops.copy4d = t_copy4d;
    tb->ops.blend_edge = t_blend_edge;
    tb->ops.gated_act = t_gated_act;
    tb->ops.geglu = t_geglu;
    if (in->im2col) tb->ops.im2col = t_im2col; /* quantized convolutions (U-Nets) */
    if (in->linear_gated_add) tb->ops.linear_gated_add = t_linear_gated_add;
    tb->ops.conv2d_create = t_conv2d_create;
    tb->ops.conv2d_forward = t_conv2d_forward;
    tb->ops.qlinear_create = t_qlinear_create;
    tb->ops.linear_observe = t_linear_observe;
    tb->ops.qlinear_keep_tokens = t_keep_tokens;
    tb->ops.destroy = t_destroy;
    tb->base.ops = &tb->ops;
    tb->base.cfg = inner->cfg;
    tb->inner = inner;
    *out = &tb->base;
    return DT_OK;
}

dt_op_times *dt_backend_times(dt_backend *be)
{
    return be && be->ops->destroy == t_destroy ? &((timed_backend *)be)->times : NULL;
}
