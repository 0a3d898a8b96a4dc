/* U-Net convolutions, float or as a quantizable GEMM over im2col rows (unet_conv.h). */
#include "unet_conv.h"
#include "runtime/models/denoiser.h"
#include <stdlib.h>
#include <string.h>

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

unsigned unet_linear_role(const char *name)
{
    if (strstr(name, ".transformer_blocks."))
        return DT_LINEAR_QUANTIZABLE | (ends_with(name, ".attn2.to_k") ? DT_LINEAR_TEXT_KV : 0);
    if (strstr(name, "attentions.") && (ends_with(name, ".proj_in") || ends_with(name, ".proj_out")))
        return DT_LINEAR_QUANTIZABLE;
    if (strstr(name, ".resnets.") && (ends_with(name, ".conv1") || ends_with(name, ".conv2") ||
                                      ends_with(name, ".conv_shortcut")))
        return DT_LINEAR_QUANTIZABLE | DT_LINEAR_CONV;
    if (strstr(name, "samplers.0.conv")) return DT_LINEAR_QUANTIZABLE | DT_LINEAR_CONV;
    return 0;
}

dt_status unet_conv_make(dt_backend *be, dt_weight_source *src, const char *name, const float *w, const float *b, int cin,
                         int cout, int k, int stride, int pad_lo, int pad_hi, int m_hint, dt_dtype dt, unet_conv *c,
                         dt_err *err)
{
    *c = (unet_conv){.cin = cin, .cout = cout, .k = k, .stride = stride, .pad_lo = pad_lo, .pad_hi = pad_hi};
    if (!src->make_linear || !(unet_linear_role(name) & DT_LINEAR_CONV))
        return be->ops->conv2d_create(be, w, b, cin, cout, k, stride, pad_lo, pad_hi, dt, &c->c, err);
    if (!be->ops->im2col)
        return dt_fail(err, DT_EUNSUPPORTED, "%s: this backend has no im2col, so convolutions cannot be quantized", name);
    int K = k * k * cin;
    float *wl = malloc((size_t)cout * K * sizeof(float));
    if (!wl) return dt_fail(err, DT_ENOMEM, "out of memory loading %s", name);
    for (int o = 0; o < cout; o++) /* [cout, cin, ky, kx] -> [cout, (ky, kx, cin)] */
        for (int ci = 0; ci < cin; ci++)
            for (int t = 0; t < k * k; t++) wl[(size_t)o * K + (size_t)t * cin + ci] = w[((size_t)o * cin + ci) * k * k + t];
    dt_status st = src->make_linear(src, be, name, wl, b, K, cout, DT_ACT_NONE, m_hint, dt, &c->lin, err);
    free(wl);
    if (st != DT_OK || c->lin) return st;
    /* the hook builds this one in float: the backend's convolution (DT_LINEAR_CONV) */
    return be->ops->conv2d_create(be, w, b, cin, cout, k, stride, pad_lo, pad_hi, dt, &c->c, err);
}

static int out_size(const unet_conv *c, int64_t n) { return (int)((n + c->pad_lo + c->pad_hi - c->k) / c->stride + 1); }

dt_status unet_conv_forward(dt_backend *be, const unet_conv *c, const dt_tensor *x, dt_tensor *y, int accumulate,
                            dt_err *err)
{
    if (c->c) return be->ops->conv2d_forward(be, c->c, x, y, accumulate, err);
    int64_t B = x->shape[0], Ho = out_size(c, x->shape[1]), Wo = out_size(c, x->shape[2]), M = B * Ho * Wo;
    int64_t K = (int64_t)c->k * c->k * c->cin;
    if (x->ndim != 4 || x->shape[3] != c->cin || y->ndim != 4 || y->shape[0] != B || y->shape[1] != Ho ||
        y->shape[2] != Wo || y->shape[3] != c->cout)
        return dt_fail(err, DT_EINVAL, "quantized convolution: input/output shapes do not match the layer");
    int direct = c->k == 1 && c->stride == 1 && c->pad_lo == 0 && c->pad_hi == 0; /* the pixels are the rows */
    size_t cols = direct ? 0 : (size_t)M * K, outs = accumulate ? (size_t)M * c->cout : 0;
    void *buf = NULL;
    if (cols + outs) DT_TRY(be->ops->buffer_alloc(be, (cols + outs) * sizeof(float), &buf, err));
    int64_t sx[2] = {M, direct ? c->cin : K}, sy[2] = {M, c->cout};
    dt_tensor xr = direct ? dt_tensor_view(x->data, DT_F32, 2, sx) : dt_tensor_view(buf, DT_F32, 2, sx);
    dt_tensor yr = dt_tensor_view(accumulate ? (float *)buf + cols : y->data, DT_F32, 2, sy);
    dt_status st = direct ? DT_OK : be->ops->im2col(be, x, c->k, c->stride, c->pad_lo, c->pad_hi, &xr, err);
    if (st == DT_OK) st = be->ops->linear_forward(be, c->lin, &xr, &yr, err);
    if (st == DT_OK && accumulate) {
        dt_tensor yy = dt_tensor_view(y->data, DT_F32, 2, sy);
        st = be->ops->add_rows(be, &yy, &yr, &yy, err);
    }
    if (buf) be->ops->buffer_free(be, buf);
    return st;
}

void unet_conv_free(dt_backend *be, unet_conv *c)
{
    if (c->c) be->ops->conv2d_destroy(c->c);
    if (c->lin) be->ops->linear_destroy(c->lin);
    *c = (unet_conv){0};
}
