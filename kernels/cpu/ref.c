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
    case DT_ACT_GELU_ERF: return (float)(0.5 * x * erfc(-(double)x * M_SQRT1_2)); /* no cancellation for x < 0 */
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

/* ---- VAE decoder ops ---- */

static float ref_ld(const dt_tensor *t, int64_t i)
{
    if (t->dtype == DT_BF16) return dt_bf16_to_f32(((const uint16_t *)t->data)[i]);
    return ((const float *)t->data)[i];
}

static void ref_st(dt_tensor *t, int64_t i, float v)
{
    if (t->dtype == DT_BF16) ((uint16_t *)t->data)[i] = dt_f32_to_bf16(v);
    else ((float *)t->data)[i] = v;
}

void ref_conv2d(const dt_tensor *x, const float *w, const float *b, int k, int stride, int pad_lo, int pad_hi,
                int accumulate, dt_tensor *y)
{
    int64_t B = x->shape[0], H = x->shape[1], W = x->shape[2], ci = x->shape[3];
    int64_t Ho = y->shape[1], Wo = y->shape[2], co = y->shape[3];
    (void)pad_hi;
    for (int64_t n = 0; n < B; n++)
        for (int64_t oy = 0; oy < Ho; oy++)
            for (int64_t ox = 0; ox < Wo; ox++)
                for (int64_t o = 0; o < co; o++) {
                    double acc = b ? b[o] : 0.0;
                    for (int ky = 0; ky < k; ky++)
                        for (int kx = 0; kx < k; kx++) {
                            int64_t iy = oy * stride - pad_lo + ky, ix = ox * stride - pad_lo + kx;
                            if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                            for (int64_t c = 0; c < ci; c++)
                                acc += (double)ref_ld(x, ((n * H + iy) * W + ix) * ci + c) * w[((o * ci + c) * k + ky) * k + kx];
                        }
                    float *dst = (float *)y->data + ((n * Ho + oy) * Wo + ox) * co + o;
                    *dst = accumulate ? *dst + (float)acc : (float)acc;
                }
}

void ref_group_norm(const dt_tensor *x, int groups, const float *gamma, const float *beta, float eps, dt_act act,
                    dt_tensor *y)
{
    int64_t B = x->shape[0], C = x->shape[x->ndim - 1], N = dt_tensor_numel(x) / (B * C), cg = C / groups;
    const float *xd = x->data;
    for (int64_t b = 0; b < B; b++)
        for (int g = 0; g < groups; g++) {
            double mean = 0, var = 0;
            for (int64_t r = 0; r < N; r++)
                for (int64_t c = g * cg; c < (g + 1) * cg; c++) mean += xd[(b * N + r) * C + c];
            mean /= (double)(N * cg);
            for (int64_t r = 0; r < N; r++)
                for (int64_t c = g * cg; c < (g + 1) * cg; c++) {
                    double t = xd[(b * N + r) * C + c] - mean;
                    var += t * t;
                }
            var /= (double)(N * cg);
            double rstd = 1.0 / sqrt(var + eps);
            for (int64_t r = 0; r < N; r++)
                for (int64_t c = g * cg; c < (g + 1) * cg; c++) {
                    int64_t i = (b * N + r) * C + c;
                    double v = (xd[i] - mean) * rstd * (gamma ? gamma[c] : 1.0f) + (beta ? beta[c] : 0.0f);
                    ref_st(y, i, ref_act(act, (float)v));
                }
        }
}

void ref_upsample_nearest2x(const dt_tensor *x, dt_tensor *y)
{
    int64_t B = y->shape[0], Ho = y->shape[1], Wo = y->shape[2], C = y->shape[3], H = x->shape[1], W = x->shape[2];
    for (int64_t b = 0; b < B; b++)
        for (int64_t oy = 0; oy < Ho; oy++)
            for (int64_t ox = 0; ox < Wo; ox++)
                for (int64_t c = 0; c < C; c++)
                    ref_st(y, ((b * Ho + oy) * Wo + ox) * C + c, ref_ld(x, ((b * H + oy / 2) * W + ox / 2) * C + c));
}

void ref_copy4d(const dt_tensor *src, dt_tensor *dst)
{
    const int64_t *n = src->shape, *s = src->strides, *d = dst->strides;
    for (int64_t a = 0; a < n[0]; a++)
        for (int64_t b = 0; b < n[1]; b++)
            for (int64_t c = 0; c < n[2]; c++)
                for (int64_t e = 0; e < n[3]; e++)
                    ref_st(dst, a * d[0] + b * d[1] + c * d[2] + e * d[3], ref_ld(src, a * s[0] + b * s[1] + c * s[2] + e * s[3]));
}

void ref_blend_edge(const dt_tensor *a, dt_tensor *b, int axis, int extent)
{
    int64_t e = extent;
    if (e > a->shape[axis]) e = a->shape[axis];
    if (e > b->shape[axis]) e = b->shape[axis];
    int64_t n[4] = {b->shape[0], b->shape[1], b->shape[2], b->shape[3]}, na = a->shape[axis];
    n[axis] = e > 0 ? e : 0;
    float *bd = b->data;
    const float *ad = a->data;
    int64_t i[4];
    for (i[0] = 0; i[0] < n[0]; i[0]++)
        for (i[1] = 0; i[1] < n[1]; i[1]++)
            for (i[2] = 0; i[2] < n[2]; i[2]++)
                for (i[3] = 0; i[3] < n[3]; i[3]++) {
                    int64_t ob = 0, oa = 0, t = i[axis];
                    for (int k = 0; k < 4; k++) {
                        ob += i[k] * b->strides[k];
                        oa += (k == axis ? na - e + t : i[k]) * a->strides[k];
                    }
                    double y = (double)t / (double)e;
                    bd[ob] = ad[oa] * (float)(1.0 - y) + bd[ob] * (float)y;
                }
}

/* ---- T5 text encoder ops ---- */

void ref_rms_norm(const float *x, int64_t M, int64_t C, const float *w, float eps, float *y)
{
    for (int64_t m = 0; m < M; m++) {
        double sq = 0;
        for (int64_t c = 0; c < C; c++) sq += (double)x[m * C + c] * x[m * C + c];
        double inv = 1.0 / sqrt(sq / (double)C + eps);
        for (int64_t c = 0; c < C; c++) y[m * C + c] = (float)(w[c] * (x[m * C + c] * inv));
    }
}

void ref_gated_act(dt_act act, const float *x, int64_t M, int64_t F, float *y)
{
    for (int64_t m = 0; m < M; m++)
        for (int64_t f = 0; f < F; f++) y[m * F + f] = ref_act(act, x[m * 2 * F + f]) * x[m * 2 * F + F + f];
}

void ref_geglu(dt_act act, const float *x, int64_t M, int64_t F, float *y)
{
    for (int64_t m = 0; m < M; m++)
        for (int64_t f = 0; f < F; f++) y[m * F + f] = x[m * 2 * F + f] * ref_act(act, x[m * 2 * F + F + f]);
}

void ref_window_attention(const dt_tensor *q, const dt_tensor *k, const dt_tensor *v, int heads, float scale,
                          int window, dt_tensor *out)
{
    int64_t B = q->shape[0], N = q->shape[1], d = q->shape[2] / heads;
    double *s = malloc((size_t)(N ? N : 1) * sizeof *s);
    for (int64_t b = 0; b < B; b++)
        for (int h = 0; h < heads; h++)
            for (int64_t i = 0; i < N; i++) {
                int64_t lo = i - window < 0 ? 0 : i - window, hi = i + window >= N ? N - 1 : i + window;
                double mx = -INFINITY, sum = 0;
                for (int64_t j = lo; j <= hi; j++) {
                    double acc = 0;
                    for (int64_t c = 0; c < d; c++) acc += (double)AT3(q, b, i, h * d + c) * AT3(k, b, j, h * d + c);
                    s[j] = acc * scale;
                    if (s[j] > mx) mx = s[j];
                }
                for (int64_t j = lo; j <= hi; j++) sum += (s[j] = exp(s[j] - mx));
                for (int64_t c = 0; c < d; c++) {
                    double acc = 0;
                    for (int64_t j = lo; j <= hi; j++) acc += s[j] * AT3(v, b, j, h * d + c);
                    AT3(out, b, i, h * d + c) = (float)(acc / sum);
                }
            }
    free(s);
}

static int ref_qweight(const dt_qweights *qw, int n, int j)
{
    if (qw->wbits == 8) return qw->q[(size_t)n * qw->in + j];
    int v = ((const uint8_t *)qw->q)[(size_t)n * (qw->in / 2) + j / 2];
    v = (j % 2) ? v >> 4 : v & 15;
    v = v >= 8 ? v - 16 : v;
    return qw->group ? v * qw->gscale[(size_t)n * (qw->in / qw->group) + j / qw->group] : v;
}

/* One row: balanced, rotated (dense Hadamard, double), quantized; returns its scale. */
static float ref_quantize_row(const float *x, const dt_qweights *qw, float *t, int8_t *q)
{
    int K = qw->in, blk = qw->signs ? qw->rot_block : 1;
    for (int j = 0; j < K; j++) t[j] = qw->smooth ? x[j] * qw->smooth[j] : x[j];
    if (qw->signs) {
        double *u = malloc((size_t)K * sizeof(double));
        for (int j = 0; j < K; j++) u[j] = (double)t[j] * qw->signs[j];
        for (int i = 0; i < K; i++) {
            int b0 = i / blk * blk;
            double acc = 0;
            for (int j = b0; j < b0 + blk; j++) acc += (__builtin_popcount((i - b0) & (j - b0)) & 1) ? -u[j] : u[j];
            t[i] = (float)acc;
        }
        free(u);
    }
    float amax = 0;
    for (int j = 0; j < K; j++) amax = fmaxf(amax, fabsf(t[j]));
    float inv = amax > 0 ? 127.0f / amax : 0.0f;
    for (int j = 0; j < K; j++) {
        float v = nearbyintf(t[j] * inv);
        q[j] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
    }
    return amax / (127.0f * sqrtf((float)blk));
}

void ref_qlinear(const float *x, int M, const dt_qweights *qw, const float *b, dt_act act, float *y, int8_t *qx,
                 float *ascale)
{
    int K = qw->in, N = qw->out;
    float *t = malloc((size_t)K * sizeof(float));
    int8_t *q = malloc((size_t)K);
    for (int m = 0; m < M; m++) {
        float as = ref_quantize_row(x + (size_t)m * K, qw, t, q);
        if (qx) for (int j = 0; j < K; j++) qx[(size_t)m * K + j] = q[j];
        if (ascale) ascale[m] = as;
        for (int n = 0; n < N; n++) {
            int64_t acc = 0;
            for (int j = 0; j < K; j++) acc += (int64_t)q[j] * ref_qweight(qw, n, j);
            float v = (float)acc * as * qw->wscale[n];
            if (b) v = v + b[n];
            y[(size_t)m * N + n] = ref_act(act, v);
        }
    }
    free(t);
    free(q);
}

void ref_repeat_rows(const float *x, int64_t R, int64_t W, int reps, float *y)
{
    for (int64_t r = 0; r < R; r++)
        for (int k = 0; k < reps; k++)
            for (int64_t j = 0; j < W; j++) y[(r * reps + k) * W + j] = x[r * W + j];
}

void ref_sub(const float *a, const float *b, int64_t n, float *y)
{
    for (int64_t i = 0; i < n; i++) y[i] = a[i] - b[i];
}

void ref_cfg_combine(const dt_tensor *uncond, const dt_tensor *cond, float g, dt_tensor *y)
{
    int64_t B = uncond->shape[0], n = uncond->shape[1];
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < n; i++) {
            float u = ((const float *)uncond->data)[b * uncond->strides[0] + i];
            float c = ((const float *)cond->data)[b * cond->strides[0] + i];
            ((float *)y->data)[b * y->strides[0] + i] = u + g * (c - u);
        }
}
