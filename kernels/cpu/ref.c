#include "ref.h"
#include <math.h>
#include <stdlib.h>

float ref_act(dt_act act, float x)
{
    switch (act) {
    case DT_ACT_GELU_TANH: {
        const float c = 0.7978845608028654f; /* sqrt(2/pi) */
        return 0.5f * x * (1.0f + tanhf(c * (x + 0.044715f * x * x * x)));
    }
    case DT_ACT_SILU: return x / (1.0f + expf(-x));
    default: return x;
    }
}

void ref_linear(const float *x, int M, int K, const float *w, const float *b, int N, dt_act act, float *y)
{
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double acc = b ? b[n] : 0.0;
            for (int k = 0; k < K; k++) acc += (double)x[(size_t)m * K + k] * w[(size_t)n * K + k];
            y[(size_t)m * N + n] = ref_act(act, (float)acc);
        }
}

#define AT3(t, b, i, c) (((float *)(t)->data)[(b) * (t)->strides[0] + (i) * (t)->strides[1] + (c) * (t)->strides[2]])

void ref_attention(const dt_tensor *q, const dt_tensor *k, const dt_tensor *v, const dt_attn_bias *bias,
                   int heads, float scale, dt_tensor *out)
{
    int64_t B = q->shape[0], Nq = q->shape[1], Nk = k->shape[1], d = q->shape[2] / heads;
    double *s = malloc((size_t)Nk * sizeof *s);
    for (int64_t b = 0; b < B; b++)
        for (int h = 0; h < heads; h++)
            for (int64_t i = 0; i < Nq; i++) {
                double mx = -INFINITY, sum = 0;
                for (int64_t j = 0; j < Nk; j++) {
                    double acc = 0;
                    for (int64_t c = 0; c < d; c++) acc += (double)AT3(q, b, i, h * d + c) * AT3(k, b, j, h * d + c);
                    s[j] = acc * scale;
                    if (bias && bias->key) s[j] += bias->key[b * Nk + j];
                    if (bias && bias->head) s[j] += bias->head[((int64_t)h * Nq + i) * Nk + j];
                    if (s[j] > mx) mx = s[j];
                }
                for (int64_t j = 0; j < Nk; j++) sum += (s[j] = exp(s[j] - mx));
                for (int64_t c = 0; c < d; c++) {
                    double acc = 0;
                    for (int64_t j = 0; j < Nk; j++) acc += s[j] * AT3(v, b, j, h * d + c);
                    AT3(out, b, i, h * d + c) = (float)(acc / sum);
                }
            }
    free(s);
}

void ref_layernorm_modulate(const dt_tensor *x, const dt_tensor *shift, const dt_tensor *scale,
                            float eps, dt_tensor *y)
{
    int64_t B = x->shape[0], N = x->shape[1], C = x->shape[2];
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < N; i++) {
            double mean = 0, var = 0;
            for (int64_t c = 0; c < C; c++) mean += AT3(x, b, i, c);
            mean /= C;
            for (int64_t c = 0; c < C; c++) { double t = AT3(x, b, i, c) - mean; var += t * t; }
            var /= C;
            double inv = 1.0 / sqrt(var + eps);
            for (int64_t c = 0; c < C; c++) {
                double o = (AT3(x, b, i, c) - mean) * inv;
                if (scale) o *= 1.0 + ((const float *)scale->data)[b * scale->strides[0] + c];
                if (shift) o += ((const float *)shift->data)[b * shift->strides[0] + c];
                AT3(y, b, i, c) = (float)o;
            }
        }
}

void ref_gated_add(dt_tensor *x, const dt_tensor *y, const dt_tensor *gate)
{
    int64_t B = x->shape[0], N = x->shape[1], C = x->shape[2];
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < N; i++)
            for (int64_t c = 0; c < C; c++) {
                float g = gate ? ((const float *)gate->data)[b * gate->strides[0] + c] : 1.0f;
                AT3(x, b, i, c) += g * AT3(y, b, i, c);
            }
}

void ref_patchify(const dt_tensor *x, int p, dt_tensor *y)
{
    int64_t B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3], h = H / p, w = W / p;
    const float *src = x->data;
    float *dst = y->data;
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < h; i++)
            for (int64_t j = 0; j < w; j++)
                for (int64_t c = 0; c < C; c++)
                    for (int ky = 0; ky < p; ky++)
                        for (int kx = 0; kx < p; kx++)
                            dst[((b * h + i) * w + j) * C * p * p + (c * p + ky) * p + kx] =
                                src[((b * C + c) * H + i * p + ky) * W + j * p + kx];
}

void ref_unpatchify(const dt_tensor *x, int p, int h, int w, dt_tensor *y)
{
    int64_t B = x->shape[0], C = x->shape[2] / (p * p);
    const float *src = x->data;
    float *dst = y->data;
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < h; i++)
            for (int64_t j = 0; j < w; j++)
                for (int ky = 0; ky < p; ky++)
                    for (int kx = 0; kx < p; kx++)
                        for (int64_t c = 0; c < C; c++)
                            dst[((b * C + c) * h * p + i * p + ky) * (w * p) + j * p + kx] =
                                src[(b * h * w + i * w + j) * p * p * C + (ky * p + kx) * C + c];
}
