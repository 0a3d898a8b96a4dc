/* Attention as two batched GEMMs per block of (batch, head) pairs and query rows, with a
 * softmax pass between them. Heads are gathered into contiguous [G, R, d] blocks in the
 * compute dtype. The f32 score block (G heads x R rows x Nk keys) is bounded
 * (ATTN_SCORE_BYTES) so memory stays flat as N grows: whole heads are grouped while one
 * fits, past that one head at a time in blocks of query rows (at 4096 tokens one head's
 * scores alone are 64 MB). Smaller bounds did not pay here: 1 to 48 MB were within noise on
 * one thread, and on two 4 MB blocks ran 1.3x slower than 48 MB at 1024 tokens (more,
 * smaller GEMMs and parallel regions). */
#include "cpu.h"
#include "vmath.h"
#include <math.h>
#include <omp.h>
#include <string.h>

#define ATTN_SCORE_BYTES ((size_t)48 << 20)

void cpu_attn_gather_rows(const dt_tensor *t, int64_t g0, int64_t gn, int heads, int64_t d, int64_t r0, int64_t n,
                          dt_dtype cd, void *dst)
{
    const float *src = t->data;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t g = 0; g < gn; g++)
        for (int64_t i = 0; i < n; i++) {
            int64_t b = (g0 + g) / heads, h = (g0 + g) % heads;
            const float *row = src + b * t->strides[0] + (r0 + i) * t->strides[1] + h * d;
            if (cd == DT_BF16) cpu_f32_to_bf16(row, (uint16_t *)dst + (g * n + i) * d, (size_t)d);
            else memcpy((float *)dst + (g * n + i) * d, row, (size_t)d * sizeof(float));
        }
}

void cpu_attn_scatter_rows(const float *o, int64_t g0, int64_t gn, int heads, int64_t d, int64_t r0, int64_t n,
                           dt_tensor *out)
{
    float *dst = out->data;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t g = 0; g < gn; g++)
        for (int64_t i = 0; i < n; i++) {
            int64_t b = (g0 + g) / heads, h = (g0 + g) % heads;
            memcpy(dst + b * out->strides[0] + (r0 + i) * out->strides[1] + h * d, o + (g * n + i) * d,
                   (size_t)d * sizeof(float));
        }
}

/* Rows [r0, r0+rn) of nq of groups g0..g0+gn: scores s [gn, rn, nk] to P. tmp: nk floats
 * per thread for the bf16 path's exponentials. */
static void softmax_rows(float *s, void *p, int64_t gn, int64_t g0, int heads, int64_t r0, int64_t rn, int64_t nq,
                         int64_t nk, const dt_attn_bias *bias, float scale, dt_dtype cd, float *tmp)
{
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t g = 0; g < gn; g++)
        for (int64_t i = 0; i < rn; i++) {
            float *row = s + (g * rn + i) * nk;
            const float *kb = bias && bias->key ? bias->key + ((g0 + g) / heads) * nk : NULL;
            const float *hb = bias && bias->head ? bias->head + (((g0 + g) % heads) * nq + r0 + i) * nk : NULL;
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
                cpu_softmax_row(row, nk, rs, tmp + (size_t)omp_get_thread_num() * nk, (uint16_t *)p + (g * rn + i) * nk);
            else
                cpu_softmax_row(row, nk, rs, row, NULL);
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
    size_t head_bytes = (size_t)nq * nk * sizeof(float);
    int64_t G = 1, R = nq;
    if (head_bytes <= limit) {
        G = (int64_t)(limit / head_bytes);
        G = G > bh ? bh : G;
    } else {
        R = (int64_t)(limit / ((size_t)nk * sizeof(float)));
        R = R >= 32 ? R / 16 * 16 : (R < 1 ? 1 : R); /* whole vectors of rows for the GEMM where it can */
    }
    /* scratch: Q | K | V (compute dtype) | S (f32) | P (bf16 only) | O (f32) | softmax rows (bf16 only) */
    size_t qb = (size_t)G * R * d * es, kb = (size_t)G * nk * d * es, sb = (size_t)G * R * nk * 4;
    size_t pb = cd == DT_BF16 ? (size_t)G * R * nk * 2 : 0, ob = (size_t)G * R * d * 4;
    size_t tb = cd == DT_BF16 ? (size_t)omp_get_max_threads() * nk * 4 : 0;
    qb = (qb + 63) & ~(size_t)63; kb = (kb + 63) & ~(size_t)63; sb = (sb + 63) & ~(size_t)63;
    pb = (pb + 63) & ~(size_t)63; ob = (ob + 63) & ~(size_t)63;
    unsigned char *base = cpu_scratch(cb, qb + 2 * kb + sb + pb + ob + tb);
    if (!base) return dt_fail(err, DT_ENOMEM, "attention: out of memory for the score block");
    void *Q = base, *K = base + qb, *V = base + qb + kb;
    float *S = (float *)(base + qb + 2 * kb);
    void *P = pb ? (void *)(base + qb + 2 * kb + sb) : (void *)S;
    float *O = (float *)(base + qb + 2 * kb + sb + pb);
    float *tmp = (float *)(base + qb + 2 * kb + sb + pb + ob);
    for (int64_t g0 = 0; g0 < bh; g0 += G) {
        int64_t gn = bh - g0 < G ? bh - g0 : G;
        cpu_attn_gather_rows(k, g0, gn, heads, d, 0, nk, cd, K);
        cpu_attn_gather_rows(v, g0, gn, heads, d, 0, nk, cd, V);
        for (int64_t r0 = 0; r0 < nq; r0 += R) {
            int64_t rn = nq - r0 < R ? nq - r0 : R;
            cpu_attn_gather_rows(q, g0, gn, heads, d, r0, rn, cd, Q);
            DT_TRY(cpu_bmm(cb, cd, gn, rn, d, nk, Q, K, 1, S, err));
            softmax_rows(S, P, gn, g0, heads, r0, rn, nq, nk, bias, scale, cd, tmp);
            DT_TRY(cpu_bmm(cb, cd, gn, rn, nk, d, P, V, 0, O, err));
            cpu_attn_scatter_rows(O, g0, gn, heads, d, r0, rn, out);
        }
    }
    return DT_OK;
}
