/* im2col of an NHWC f32 image: every output pixel's k x k window as one row (ky, kx, c), zeros
 * where the window reaches the padding. It moves data only, so it is its own plain-C reference;
 * a quantized convolution multiplies these rows by the reordered weight (runtime/models/unet_conv.c). */
#include "cpu.h"
#include <string.h>

dt_status cpu_im2col(dt_backend *be, const dt_tensor *x, int k, int stride, int pad_lo, int pad_hi, dt_tensor *y,
                     dt_err *err)
{
    (void)be;
    if (x->ndim != 4 || x->dtype != DT_F32 || y->dtype != DT_F32 || !dt_tensor_is_contiguous(x) ||
        !dt_tensor_is_contiguous(y) || k <= 0 || stride <= 0 || pad_lo < 0 || pad_hi < 0 ||
        x->shape[1] + pad_lo + pad_hi < k || x->shape[2] + pad_lo + pad_hi < k)
        return dt_fail(err, DT_EINVAL, "im2col: expected contiguous f32 [B,H,W,C] at least k x k with padding");
    int64_t B = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3];
    int64_t Ho = (H + pad_lo + pad_hi - k) / stride + 1, Wo = (W + pad_lo + pad_hi - k) / stride + 1;
    int64_t K = (int64_t)k * k * C;
    if (y->ndim != 2 || y->shape[0] != B * Ho * Wo || y->shape[1] != K)
        return dt_fail(err, DT_EINVAL, "im2col: output must be [%lld, %lld]", (long long)(B * Ho * Wo), (long long)K);
    const float *src = x->data;
    float *dst = y->data;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; b++)
        for (int64_t oy = 0; oy < Ho; oy++)
            for (int64_t ox = 0; ox < Wo; ox++) {
                float *row = dst + ((b * Ho + oy) * Wo + ox) * K;
                for (int ky = 0; ky < k; ky++) {
                    int64_t iy = oy * stride + ky - pad_lo;
                    for (int kx = 0; kx < k; kx++) {
                        int64_t ix = ox * stride + kx - pad_lo;
                        float *o = row + ((int64_t)ky * k + kx) * C;
                        if (iy < 0 || iy >= H || ix < 0 || ix >= W) memset(o, 0, (size_t)C * sizeof(float));
                        else memcpy(o, src + ((b * H + iy) * W + ix) * C, (size_t)C * sizeof(float));
                    }
                }
            }
    return DT_OK;
}
