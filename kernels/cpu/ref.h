/* Plain-C reference kernels: the math written out, single-threaded, for tests to compare
 * the optimized kernels against. Same contracts as the dt_backend_ops of the same name. */
#ifndef DT_CPU_REF_H
#define DT_CPU_REF_H
#include "kernels/backend.h"

float ref_act(dt_act act, float x);
void ref_linear(const float *x, int M, int K, const float *w, const float *b, int N, dt_act act, float *y);
void ref_attention(const dt_tensor *q, const dt_tensor *k, const dt_tensor *v, const dt_attn_bias *bias,
                   int heads, float scale, dt_tensor *out);
void ref_layernorm_modulate(const dt_tensor *x, const dt_tensor *shift, const dt_tensor *scale,
                            float eps, dt_tensor *y);
void ref_gated_add(dt_tensor *x, const dt_tensor *y, const dt_tensor *gate);
void ref_patchify(const dt_tensor *x, int p, dt_tensor *y);
void ref_unpatchify(const dt_tensor *x, int p, int h, int w, dt_tensor *y);
/* The straightforward loops the optimized ops must match bit for bit. */
void ref_repeat_rows(const float *x, int64_t R, int64_t W, int reps, float *y);
void ref_sub(const float *a, const float *b, int64_t n, float *y);
void ref_cfg_combine(const dt_tensor *uncond, const dt_tensor *cond, float g, dt_tensor *y);

/* VAE decoder ops, NHWC; x may be f32 or bf16 where the op allows it. */
void ref_conv2d(const dt_tensor *x, const float *w, const float *b, int k, int stride, int pad_lo, int pad_hi,
                int accumulate, dt_tensor *y);
void ref_group_norm(const dt_tensor *x, int groups, const float *gamma, const float *beta, float eps, dt_act act,
                    dt_tensor *y);
void ref_upsample_nearest2x(const dt_tensor *x, dt_tensor *y);
void ref_copy4d(const dt_tensor *src, dt_tensor *dst);
void ref_blend_edge(const dt_tensor *a, dt_tensor *b, int axis, int extent);
/* T5 text encoder ops */
void ref_rms_norm(const float *x, int64_t M, int64_t C, const float *w, float eps, float *y);
void ref_gated_act(dt_act act, const float *x, int64_t M, int64_t F, float *y);
/* y[m, f] = x[m, f] · act(x[m, F + f]) (the geglu op: the gate is the second half). */
void ref_geglu(dt_act act, const float *x, int64_t M, int64_t F, float *y);
/* DiTFastAttn banded attention: keys |i - j| <= window only */
void ref_window_attention(const dt_tensor *q, const dt_tensor *k, const dt_tensor *v, int heads, float scale,
                          int window, dt_tensor *out);

/* Quantized linear (kernels/quant.h): x·diag(smooth)·D·H quantized per row (the rotation as a
 * dense Hadamard product in double), int64 dot products with the unpacked weights,
 * y = act(acc·ascale[m]·wscale[n] + b). qx [M,K] / ascale [M] receive the codes (may be NULL). */
#include "kernels/quant.h"
void ref_qlinear(const float *x, int M, const dt_qweights *qw, const float *b, dt_act act, float *y, int8_t *qx,
                 float *ascale);

#endif
