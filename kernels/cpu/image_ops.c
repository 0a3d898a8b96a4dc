/* NHWC image kernels for the VAE decoder: GroupNorm (+ fused activation), nearest 2x
 * upsampling, strided 4-D copies (layout changes, tile crops) and the tiled-decode seam
 * blend. Activations are f32; outputs that feed a bf16 convolution may be written as bf16
 * directly, which halves their memory and saves the conversion pass. */
#include "cpu.h"
#include "vmath.h"
#include <math.h>
#include <omp.h>
#include <string.h>

#define GN_CHUNK_ELEMS 32768 /* elements per statistics task: fixed, so results do not depend on threads */
#define GN_BLOCK 256         /* channels converted per step when writing bf16 */

static inline float bf16_load(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline float load(const dt_tensor *t, int64_t i)
{
    return t->dtype == DT_BF16 ? bf16_load(((const uint16_t *)t->data)[i]) : ((const float *)t->data)[i];
}

static inline void store(dt_tensor *t, int64_t i, float v)
{
    if (t->dtype == DT_BF16) cpu_f32_to_bf16(&v, (uint16_t *)t->data + i, 1);
    else ((float *)t->data)[i] = v;
}

static int float_dtype(const dt_tensor *t) { return t->dtype == DT_F32 || t->dtype == DT_BF16; }

static int same_shape(const dt_tensor *a, const dt_tensor *b)
{
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

static int vec_ok(const dt_tensor *v, int64_t C)
{
    return !v || (v->ndim == 1 && v->shape[0] == C && v->strides[0] == 1 && v->dtype == DT_F32);
}

/* Per-(sample, chunk, group) sums of x and x² in double: part[((b·nch + ch)·G + g)·2 + {0,1}]. */
static void gn_partials(const float *x, int64_t B, int64_t N, int64_t C, int64_t G, int64_t rows, int64_t nch,
                        double *part, double *acc)
{
    int64_t cg = C / G;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; b++)
        for (int64_t ch = 0; ch < nch; ch++) {
            double *s = acc + (int64_t)omp_get_thread_num() * 2 * C, *q = s + C;
            for (int64_t c = 0; c < C; c++) s[c] = q[c] = 0.0;
            int64_t r1 = (ch + 1) * rows < N ? (ch + 1) * rows : N;
            for (int64_t r = ch * rows; r < r1; r++) {
                const float *row = x + (b * N + r) * C;
#pragma omp simd
                for (int64_t c = 0; c < C; c++) {
                    double v = row[c];
                    s[c] += v;
                    q[c] += v * v;
                }
            }
            double *p = part + (b * nch + ch) * G * 2;
            for (int64_t g = 0; g < G; g++) {
                double ss = 0, qq = 0;
                for (int64_t c = g * cg; c < (g + 1) * cg; c++) { ss += s[c]; qq += q[c]; }
                p[2 * g] = ss;
                p[2 * g + 1] = qq;
            }
        }
}

/* Folds the partials into per-(sample, channel) scale a and shift d: y = x·a + d
 * (torch's GroupNorm applies the same a = rstd·gamma, d = beta - a·mean). */
static void gn_affine(const double *part, int64_t B, int64_t N, int64_t C, int64_t G, int64_t nch, float eps,
                      const float *gamma, const float *beta, float *a, float *d)
{
    int64_t cg = C / G;
    double n = (double)N * cg;
    for (int64_t b = 0; b < B; b++)
        for (int64_t g = 0; g < G; g++) {
            double s = 0, q = 0;
            for (int64_t ch = 0; ch < nch; ch++) {
                s += part[((b * nch + ch) * G + g) * 2];
                q += part[((b * nch + ch) * G + g) * 2 + 1];
            }
            double mean = s / n, var = q / n - mean * mean;
            float rstd = (float)(1.0 / sqrt((var > 0 ? var : 0) + eps));
            for (int64_t c = g * cg; c < (g + 1) * cg; c++) {
                float sc = rstd * (gamma ? gamma[c] : 1.0f);
                a[b * C + c] = sc;
                d[b * C + c] = (beta ? beta[c] : 0.0f) - sc * (float)mean;
            }
        }
}

static void gn_apply(const float *x, const float *a, const float *d, int64_t B, int64_t N, int64_t C, dt_act act,
                     dt_tensor *y)
{
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; b++)
        for (int64_t r = 0; r < N; r++) {
            const float *xr = x + (b * N + r) * C, *ab = a + b * C, *db = d + b * C;
            for (int64_t c0 = 0; c0 < C; c0 += GN_BLOCK) {
                int64_t n = C - c0 < GN_BLOCK ? C - c0 : GN_BLOCK;
                float t[GN_BLOCK];
#pragma omp simd
                for (int64_t c = 0; c < n; c++) t[c] = xr[c0 + c] * ab[c0 + c] + db[c0 + c];
                if (act == DT_ACT_SILU) {
#pragma omp simd
                    for (int64_t c = 0; c < n; c++) t[c] = vm_silu(t[c]);
                } else if (act == DT_ACT_GELU_TANH) {
#pragma omp simd
                    for (int64_t c = 0; c < n; c++) t[c] = vm_gelu_tanh(t[c]);
                } else if (act == DT_ACT_GELU_ERF) {
#pragma omp simd
                    for (int64_t c = 0; c < n; c++) t[c] = vm_gelu_erf(t[c]);
                }
                int64_t o = (b * N + r) * C + c0;
                if (y->dtype == DT_BF16) cpu_f32_to_bf16(t, (uint16_t *)y->data + o, (size_t)n);
                else memcpy((float *)y->data + o, t, (size_t)n * sizeof(float));
            }
        }
}

dt_status cpu_group_norm(dt_backend *be, const dt_tensor *x, int groups, const dt_tensor *gamma,
                         const dt_tensor *beta, float eps, dt_act act, dt_tensor *y, dt_err *err)
{
    cpu_backend *cb = (cpu_backend *)be;
    if (x->ndim < 2 || x->dtype != DT_F32 || !float_dtype(y) || !same_shape(x, y) || !dt_tensor_is_contiguous(x) ||
        !dt_tensor_is_contiguous(y))
        return dt_fail(err, DT_EINVAL, "group_norm: expected contiguous f32 [B,...,C] -> same shape f32/bf16");
    int64_t B = x->shape[0], C = x->shape[x->ndim - 1], N = B && C ? dt_tensor_numel(x) / (B * C) : 0;
    if (groups <= 0 || C % groups || !vec_ok(gamma, C) || !vec_ok(beta, C))
        return dt_fail(err, DT_EINVAL, "group_norm: %lld channels do not split into %d groups, or gamma/beta are not [%lld] f32",
                       (long long)C, groups, (long long)C);
    if (N == 0 || B == 0) return DT_OK;
    int64_t G = groups, rows = GN_CHUNK_ELEMS / C > 0 ? GN_CHUNK_ELEMS / C : 1, nch = (N + rows - 1) / rows;
    int T = omp_get_max_threads();
    size_t pb = (size_t)(B * nch * G * 2) * sizeof(double), ab = (size_t)T * 2 * C * sizeof(double);
    unsigned char *s = cpu_scratch(cb, pb + ab + (size_t)B * C * 2 * sizeof(float));
    if (!s) return dt_fail(err, DT_ENOMEM, "group_norm: out of memory for statistics");
    double *part = (double *)s, *acc = (double *)(s + pb);
    float *a = (float *)(s + pb + ab), *d = a + B * C;
    gn_partials(x->data, B, N, C, G, rows, nch, part, acc);
    gn_affine(part, B, N, C, G, nch, eps, gamma ? gamma->data : NULL, beta ? beta->data : NULL, a, d);
    gn_apply(x->data, a, d, B, N, C, act, y);
    return DT_OK;
}

dt_status cpu_upsample_nearest2x(dt_backend *be, const dt_tensor *x, dt_tensor *y, dt_err *err)
{
    (void)be;
    if (x->ndim != 4 || y->ndim != 4 || x->dtype != DT_F32 || !float_dtype(y) || y->shape[0] != x->shape[0] ||
        y->shape[1] != 2 * x->shape[1] || y->shape[2] != 2 * x->shape[2] || y->shape[3] != x->shape[3] ||
        !dt_tensor_is_contiguous(x) || !dt_tensor_is_contiguous(y))
        return dt_fail(err, DT_EINVAL, "upsample_nearest2x: expected contiguous f32 [B,H,W,C] -> [B,2H,2W,C]");
    int64_t B = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3];
    const float *src = x->data;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; b++)
        for (int64_t oy = 0; oy < 2 * H; oy++) {
            const float *in = src + ((b * H + oy / 2) * W) * C;
            int64_t o = ((b * 2 * H + oy) * 2 * W) * C;
            for (int64_t ix = 0; ix < W; ix++)
                for (int k = 0; k < 2; k++) {
                    int64_t oo = o + (2 * ix + k) * C;
                    if (y->dtype == DT_BF16) cpu_f32_to_bf16(in + ix * C, (uint16_t *)y->data + oo, (size_t)C);
                    else memcpy((float *)y->data + oo, in + ix * C, (size_t)C * sizeof(float));
                }
        }
    return DT_OK;
}

dt_status cpu_copy4d(dt_backend *be, const dt_tensor *src, dt_tensor *dst, dt_err *err)
{
    (void)be;
    if (src->ndim != 4 || !same_shape(src, dst) || !float_dtype(src) || !float_dtype(dst))
        return dt_fail(err, DT_EINVAL, "copy4d: expected f32/bf16 4-D views of one shape");
    const int64_t *n = src->shape, *ss = src->strides, *ds = dst->strides;
    int rows = ss[3] == 1 && ds[3] == 1 && src->dtype == DT_F32;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t i0 = 0; i0 < n[0]; i0++)
        for (int64_t i1 = 0; i1 < n[1]; i1++)
            for (int64_t i2 = 0; i2 < n[2]; i2++) {
                int64_t so = i0 * ss[0] + i1 * ss[1] + i2 * ss[2], dof = i0 * ds[0] + i1 * ds[1] + i2 * ds[2];
                if (rows && dst->dtype == DT_F32)
                    memcpy((float *)dst->data + dof, (const float *)src->data + so, (size_t)n[3] * sizeof(float));
                else if (rows)
                    cpu_f32_to_bf16((const float *)src->data + so, (uint16_t *)dst->data + dof, (size_t)n[3]);
                else
                    for (int64_t i3 = 0; i3 < n[3]; i3++) store(dst, dof + i3 * ds[3], load(src, so + i3 * ss[3]));
            }
    return DT_OK;
}

dt_status cpu_blend_edge(dt_backend *be, const dt_tensor *a, dt_tensor *b, int axis, int extent, dt_err *err)
{
    (void)be;
    int ok = a->ndim == 4 && b->ndim == 4 && axis >= 0 && axis < 4 && a->dtype == DT_F32 && b->dtype == DT_F32;
    for (int i = 0; ok && i < 4; i++) ok = i == axis || a->shape[i] == b->shape[i];
    if (!ok) return dt_fail(err, DT_EINVAL, "blend_edge: expected f32 4-D views equal off axis %d", axis);
    int64_t e = extent, na = a->shape[axis];
    if (e > na) e = na;
    if (e > b->shape[axis]) e = b->shape[axis];
    if (e <= 0) return DT_OK;
    int64_t n[4] = {b->shape[0], b->shape[1], b->shape[2], b->shape[3]};
    n[axis] = e;
    const float *ad = a->data;
    float *bd = b->data;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t i0 = 0; i0 < n[0]; i0++)
        for (int64_t i1 = 0; i1 < n[1]; i1++)
            for (int64_t i2 = 0; i2 < n[2]; i2++)
                for (int64_t i3 = 0; i3 < n[3]; i3++) {
                    int64_t idx[4] = {i0, i1, i2, i3}, i = idx[axis], ob = 0, oa = 0;
                    for (int k = 0; k < 4; k++) {
                        ob += idx[k] * b->strides[k];
                        oa += (k == axis ? na - e + i : idx[k]) * a->strides[k];
                    }
                    /* as torch computes it: Python-double weights rounded to f32, two products */
                    float w1 = (float)(1.0 - (double)i / (double)e), w2 = (float)((double)i / (double)e);
                    float pa = ad[oa] * w1, pb = bd[ob] * w2;
                    bd[ob] = pa + pb;
                }
    return DT_OK;
}
