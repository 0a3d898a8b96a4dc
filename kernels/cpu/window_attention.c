/* Banded (window) self-attention for DiTFastAttn: query i attends to keys |i - j| <= w only.
 *
 * Queries go in tiles of R rows (R ~ w/2); every tile multiplies against one key span of
 * fixed length min(N, R + 2w) (its start clamped into [0, N - span]; the last tile is shifted
 * back to end at N), so all tiles share one GEMM shape and the oneDNN primitive is built
 * once. Entries of the span outside the band are masked in the softmax. Work is
 * N·(R + 2w)·d per head: about 1.25x the band's N·(2w+1)·d for w >= 64, more for narrow
 * bands (R >= 32 keeps the GEMMs efficient). */
#include "cpu.h"
#include "vmath.h"
#include <math.h>
#include <omp.h>
#include <string.h>

#define WATTN_SCORE_BYTES ((size_t)48 << 20)

typedef struct {
    int64_t R, span, d, N, w;
    int heads;
    dt_dtype cd;
} wgeom;

/* softmax over the band part of each score row; zero elsewhere (P may alias S for f32) */
/* tmp: span floats per thread for the bf16 path's exponentials */
static void band_softmax(float *s, void *p, int64_t gn, const wgeom *G, int64_t q0, int64_t k0, float scale, float *tmp)
{
    int64_t R = G->R, span = G->span;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t g = 0; g < gn; g++)
        for (int64_t r = 0; r < R; r++) {
            float *row = s + (g * R + r) * span;
            int64_t qi = q0 + r;
            int64_t lo = (qi - G->w > k0 ? qi - G->w : k0) - k0;
            int64_t hi = (qi + G->w < k0 + span - 1 ? qi + G->w : k0 + span - 1) - k0;
            uint16_t *prow = G->cd == DT_BF16 ? (uint16_t *)p + (g * R + r) * span : NULL;
            if (prow) { /* the zeros outside the band go where the GEMM reads P */
                memset(prow, 0, (size_t)lo * sizeof(uint16_t));
                memset(prow + hi + 1, 0, (size_t)(span - hi - 1) * sizeof(uint16_t));
            } else {
                memset(row, 0, (size_t)lo * sizeof(float));
                memset(row + hi + 1, 0, (size_t)(span - hi - 1) * sizeof(float));
            }
            if (prow)
                cpu_softmax_row(row + lo, hi - lo + 1, scale, tmp + (size_t)omp_get_thread_num() * span, prow + lo);
            else
                cpu_softmax_row(row + lo, hi - lo + 1, scale, row + lo, NULL);
        }
}

dt_status cpu_window_attention(dt_backend *be, const dt_tensor *q, const dt_tensor *k, const dt_tensor *v,
                               int heads, float scale, int window, dt_tensor *out, dt_err *err)
{
    cpu_backend *cb = (cpu_backend *)be;
    int64_t B = q->shape[0], N = q->shape[1], C = q->shape[2];
    if (heads <= 0 || C % heads || window < 0 || !(scale > 0) || k->shape[0] != B || v->shape[0] != B ||
        k->shape[1] != N || v->shape[1] != N || k->shape[2] != C || v->shape[2] != C || out->shape[0] != B ||
        out->shape[1] != N || out->shape[2] != C || q->strides[2] != 1 || k->strides[2] != 1 ||
        v->strides[2] != 1 || out->strides[2] != 1)
        return dt_fail(err, DT_EINVAL, "window_attention: inconsistent q/k/v/out shapes or strides, or window < 0");
    if (N == 0 || B == 0) return DT_OK;
    wgeom G = {.d = C / heads, .N = N, .w = window < N ? window : N, .heads = heads, .cd = be->cfg.compute};
    /* tile rows ~ w/2 (16-aligned, 32..256): spans stay within ~1.25x of the band while the
     * GEMMs keep some size */
    int64_t R = (G.w / 2 + 15) / 16 * 16;
    R = R < 32 ? 32 : (R > 256 ? 256 : R);
    G.R = N < R ? N : R;
    G.span = G.R + 2 * G.w < N ? G.R + 2 * G.w : N;
    int64_t bh = B * heads, d = G.d, span = G.span;
    R = G.R;
    size_t es = dt_dtype_size(G.cd);
    int64_t gmax = (int64_t)(WATTN_SCORE_BYTES / ((size_t)R * span * sizeof(float)));
    gmax = gmax < 1 ? 1 : (gmax > bh ? bh : gmax);
    /* scratch: Q | K | V (compute dtype) | S (f32) | P (bf16 only) | O (f32) | softmax rows (bf16 only) */
    size_t qb = (size_t)gmax * R * d * es, kb = (size_t)gmax * span * d * es, sb = (size_t)gmax * R * span * 4;
    size_t pb = G.cd == DT_BF16 ? (size_t)gmax * R * span * 2 : 0, ob = (size_t)gmax * R * d * 4;
    size_t tb = G.cd == DT_BF16 ? (size_t)omp_get_max_threads() * span * 4 : 0;
    qb = (qb + 63) & ~(size_t)63; kb = (kb + 63) & ~(size_t)63; sb = (sb + 63) & ~(size_t)63; pb = (pb + 63) & ~(size_t)63;
    ob = (ob + 63) & ~(size_t)63;
    unsigned char *base = cpu_scratch(cb, qb + 2 * kb + sb + pb + ob + tb);
    if (!base) return dt_fail(err, DT_ENOMEM, "window_attention: out of memory for the score block");
    void *Q = base, *K = base + qb, *V = base + qb + kb;
    float *S = (float *)(base + qb + 2 * kb);
    void *P = pb ? (void *)(base + qb + 2 * kb + sb) : (void *)S;
    float *O = (float *)(base + qb + 2 * kb + sb + pb);
    float *tmp = (float *)(base + qb + 2 * kb + sb + pb + ob);
    for (int64_t g0 = 0; g0 < bh; g0 += gmax) {
        int64_t gn = bh - g0 < gmax ? bh - g0 : gmax;
        for (int64_t t0 = 0; t0 < N; t0 += R) {
            int64_t q0 = t0 + R <= N ? t0 : N - R; /* the last tile overlaps its neighbour: same values */
            int64_t k0 = q0 - G.w;
            k0 = k0 < 0 ? 0 : (k0 > N - span ? N - span : k0);
            cpu_attn_gather_rows(q, g0, gn, heads, d, q0, R, G.cd, Q);
            cpu_attn_gather_rows(k, g0, gn, heads, d, k0, span, G.cd, K);
            cpu_attn_gather_rows(v, g0, gn, heads, d, k0, span, G.cd, V);
            DT_TRY(cpu_bmm(cb, G.cd, gn, R, d, span, Q, K, 1, S, err));
            band_softmax(S, P, gn, &G, q0, k0, scale, tmp);
            DT_TRY(cpu_bmm(cb, G.cd, gn, R, span, d, P, V, 0, O, err));
            cpu_attn_scatter_rows(O, g0, gn, heads, d, q0, R, out);
        }
    }
    return DT_OK;
}
