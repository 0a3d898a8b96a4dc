/* A U-Net convolution: the backend's (float), or, when a quantizer builds the model's linears
 * (weight source make_linear) and the layer is quantizable (unet_linear_role), a GEMM over the
 * backend's im2col rows: the weight [cout, cin, k, k] reordered to [cout, (ky, kx, cin)] goes
 * through make_linear under the convolution's name, so calibration, W8A8/W4A8, mixed precision
 * and plans treat it as one more linear of k·k·cin inputs (MixDQ quantizes convolutions too).
 * Also the U-Net's linear roles (which layers MixDQ/ViDiT-Q-style quantization touches). */
#ifndef DT_UNET_CONV_H
#define DT_UNET_CONV_H
#include "layers.h"

typedef struct {
    dt_conv2d *c;   /* float: the backend's convolution */
    dt_linear *lin; /* quantizable under a quantizer: the GEMM over im2col rows (1x1 stride 1: the pixels) */
    int cin, cout, k, stride, pad_lo, pad_hi;
} unet_conv;

/* DT_LINEAR_* of layer `name` (diffusers names): QUANTIZABLE for every linear of the
 * Transformer2DModel blocks and their proj_in/proj_out, and for the resnets' and resamplers'
 * convolutions; TEXT_KV for attn2.to_k (the fused to_k|to_v over the CLIP tokens, whose first
 * token, BOS, is the huge-magnitude outlier MixDQ keeps in float). conv_in, conv_out, the
 * time/added embeddings and the resnets' time_emb_proj (one row per sample) stay float. */
unsigned unet_linear_role(const char *name);

/* Builds c from w [cout, cin, k, k] and b [cout] (read by the caller). */
dt_status unet_conv_make(dt_backend *be, dt_weight_source *src, const char *name, const float *w, const float *b, int cin,
                         int cout, int k, int stride, int pad_lo, int pad_hi, int m_hint, dt_dtype dt, unet_conv *c,
                         dt_err *err);
static inline int unet_conv_present(const unet_conv *c) { return c->c || c->lin; }
/* y (NHWC) = conv(x), or y += conv(x) when accumulate (conv2d_forward's contract). */
dt_status unet_conv_forward(dt_backend *be, const unet_conv *c, const dt_tensor *x, dt_tensor *y, int accumulate,
                            dt_err *err);
void unet_conv_free(dt_backend *be, unet_conv *c);

#endif
