/* Attention as two batched GEMMs per group of (batch, head) pairs with a softmax pass
 * between them. Heads are gathered into contiguous [G, N, d] blocks in the compute
 * dtype; the score block is bounded (ATTN_SCORE_BYTES) so memory stays flat as N grows. */
#include "cpu.h"
#include "vmath.h"
#include <math.h>
#include <omp.h>
#include <string.h>

#define ATTN_SCORE_BYTES ((size_t)48 << 20)

static void gather_heads(const dt_tensor *t, int64_t g0, int64_t gn, int heads, int64_t d,
                         dt_dtype cd, void *dst)
{
    int64_t n = t->shape[1];
    const float *src = t->data;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t g = 0; g < gn; g++)
        for (int64_t i = 0; i < n; i++) {
            int64_t b = (g0 + g) / heads, h = (g0 + g) % heads;
            const float *row = src + b * t->strides[0] + i * t->strides[1] + h * d;
            if (cd == DT_BF16) cpu_f32_to_bf16(row, (uint16_t *)dst + (g * n + i) * d, (size_t)d);
            else memcpy((float *)dst + (g * n + i) * d, row, (size_t)d * sizeof(float));
        }
}

/* tmp: nk floats per thread for the bf16 path's exponentials */
static void softmax_rows(float *s, void *p, int64_t gn, int64_t g0, int heads, int64_t nq, int64_t nk,
                         const dt_attn_bias *bias, float scale, dt_dtype cd, float *tmp)
{
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t g = 0; g < gn; g++)
        for (int64_t i = 0; i < nq; i++) {
            float *row = s + (g * nq + i) * nk;
            const float *kb = bias && bias->key ? bias->key + ((g0 + g) / heads) * nk : NULL;
            const float *hb = bias && bias->head ? bias->head + (((g0 + g) % heads) * nq + i) * nk : NULL;
            float rs = scale;
            if (kb || hb) { /* biases add to the scaled scores: scale first, then softmax at 1 */
                if (kb) {
#pragma omp simd
                    for (int64_t j = 0; j < nk; j++) row[j] = row[j] * scale + kb[j];
                } else {
#pragma omp simd
                    for (int64_t j = 0; j < nk; j++) row[j] *= scale;
                }
                if (hb) {
#pragma omp simd
                    for (int64_t j = 0; j < nk; j++) row[j] += hb[j];
                }
                rs = 1.0f;
            }
            if (cd == DT_BF16)
                cpu_softmax_row(row, nk, rs, tmp + (size_t)omp_get_thread_num() * nk, (uint16_t *)p + (g * nq + i) * nk);
            else
                cpu_softmax_row(row, nk, rs, row, NULL);
        }
}

static void scatter_heads(const float *o, int64_t g0, int64_t gn, int heads, int64_t d, dt_tensor *out)
{
    int64_t n = out->shape[1];
    float *dst = out->data;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t g = 0; g < gn; g++)
        for (int64_t i = 0; i < n; i++) {
            int64_t b = (g0 + g) / heads, h = (g0 + g) % heads;
            memcpy(dst + b * out->strides[0] + i * out->strides[1] + h * d, o + (g * n + i) * d,
                   (size_t)d * sizeof(float));
        }
}

dt_status cpu_attention(dt_backend *be, const dt_tensor *q, const dt_tensor *k, const dt_tensor *v,
                        const dt_attn_bias *bias, int heads, float scale, dt_tensor *out, dt_err *err)
{
    cpu_backend *cb = (cpu_backend *)be;
    int64_t B = q->shape[0], nq = q->shape[1], nk = k->shape[1], C = q->shape[2];
    if (heads <= 0 || C % heads || k->shape[2] != C || v->shape[2] != C || v->shape[1] != nk ||
        out->shape[1] != nq || out->shape[2] != C || k->shape[0] != B || out->strides[2] != 1 ||
        q->strides[2] != 1 || k->strides[2] != 1 || v->strides[2] != 1)
        return dt_fail(err, DT_EINVAL, "attention: inconsistent q/k/v/out shapes or strides");
    int64_t d = C / heads, bh = B * heads;
    dt_dtype cd = be->cfg.compute;
    size_t es = dt_dtype_size(cd);
    size_t limit = be->cfg.attn_block_bytes ? be->cfg.attn_block_bytes : ATTN_SCORE_BYTES;
    int64_t G = (int64_t)(limit / ((size_t)nq * nk * sizeof(float)));
    G = G < 1 ? 1 : (G > bh ? bh : G);
    /* scratch: Q | K | V (compute dtype) | S (f32) | P (bf16 only) | O (f32) | softmax rows (bf16 only) */
    size_t qb = (size_t)G * nq * d * es, kb = (size_t)G * nk * d * es, sb = (size_t)G * nq * nk * 4;
    size_t pb = cd == DT_BF16 ? (size_t)G * nq * nk * 2 : 0, ob = (size_t)G * nq * d * 4;
    size_t tb = cd == DT_BF16 ? (size_t)omp_get_max_threads() * nk * 4 : 0;
    qb = (qb + 63) & ~(size_t)63; kb = (kb + 63) & ~(size_t)63; pb = (pb + 63) & ~(size_t)63; ob = (ob + 63) & ~(size_t)63;
    unsigned char *base = cpu_scratch(cb, qb + 2 * kb + sb + pb + ob + tb);
    if (!base) return dt_fail(err, DT_ENOMEM, "attention: out of memory for the score block");
    void *Q = base, *K = base + qb, *V = base + qb + kb;
    float *S = (float *)(base + qb + 2 * kb);
    void *P = pb ? (void *)(base + qb + 2 * kb + sb) : (void *)S;
    float *O = (float *)(base + qb + 2 * kb + sb + pb);
    float *tmp = (float *)(base + qb + 2 * kb + sb + pb + ob);
    for (int64_t g0 = 0; g0 < bh; g0 += G) {
        int64_t gn = bh - g0 < G ? bh - g0 : G;
        gather_heads(q, g0, gn, heads, d, cd, Q);
        gather_heads(k, g0, gn, heads, d, cd, K);
        gather_heads(v, g0, gn, heads, d, cd, V);
        DT_TRY(cpu_bmm(cb, cd, gn, nq, d, nk, Q, K, 1, S, err));
        softmax_rows(S, P, gn, g0, heads, nq, nk, bias, scale, cd, tmp);
        DT_TRY(cpu_bmm(cb, cd, gn, nq, nk, d, P, V, 0, O, err));
        scatter_heads(O, g0, gn, heads, d, out);
    }
    return DT_OK;
}
