/* Host-side preparation of quantized weights (see quant.h). Runs once per layer at
 * quantization time, never in the hot loop. */
#include "quant.h"
#include <omp.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int dt_hadamard_block(int n)
{
    return n > 0 ? n & -n : 1;
}

void dt_fwht_blocks(float *x, int n, int block)
{
    int h = 1;
    if (block % 8 == 0) {
        /* the first three stages on groups of 8 in registers (one pass instead of three) */
        for (int i = 0; i < n; i += 8) {
            float *v = x + i;
            float a0 = v[0] + v[1], a1 = v[0] - v[1], a2 = v[2] + v[3], a3 = v[2] - v[3];
            float a4 = v[4] + v[5], a5 = v[4] - v[5], a6 = v[6] + v[7], a7 = v[6] - v[7];
            float b0 = a0 + a2, b1 = a1 + a3, b2 = a0 - a2, b3 = a1 - a3;
            float b4 = a4 + a6, b5 = a5 + a7, b6 = a4 - a6, b7 = a5 - a7;
            v[0] = b0 + b4; v[1] = b1 + b5; v[2] = b2 + b6; v[3] = b3 + b7;
            v[4] = b0 - b4; v[5] = b1 - b5; v[6] = b2 - b6; v[7] = b3 - b7;
        }
        h = 8;
    }
    for (int b0 = 0; b0 < n; b0 += block)
        for (int hh = h; hh < block; hh *= 2)
            for (int i = b0; i < b0 + block; i += 2 * hh) {
                float *lo = x + i, *hi = x + i + hh;
#pragma omp simd
                for (int j = 0; j < hh; j++) {
                    float a = lo[j], c = hi[j];
                    lo[j] = a + c;
                    hi[j] = a - c;
                }
            }
}

void dt_rotation_signs(uint64_t seed, int n, int8_t *signs)
{
    uint64_t s = seed;
    for (int i = 0; i < n; i++) {
        uint64_t z = (s += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        z ^= z >> 31;
        signs[i] = (z >> 63) ? -1 : 1;
    }
}

void dt_smooth_factors(const float *w, int in, int out, const float *amax, float alpha, float *s)
{
    for (int j = 0; j < in; j++) s[j] = 0;
    for (int n = 0; n < out; n++)
        for (int j = 0; j < in; j++) {
            float a = fabsf(w[(size_t)n * in + j]);
            if (a > s[j]) s[j] = a;
        }
    for (int j = 0; j < in; j++) {
        float wm = s[j], am = amax[j];
        float v = (wm > 0 && am > 0) ? powf(wm, alpha) / powf(am, 1.0f - alpha) : 1.0f;
        s[j] = v < 1e-4f ? 1e-4f : v > 1e4f ? 1e4f : v;
    }
}

void dt_qweights_free(dt_qweights *qw)
{
    if (!qw) return;
    free(qw->q);
    free(qw->wscale);
    free(qw->smooth);
    free(qw->signs);
    free(qw->gscale);
    memset(qw, 0, sizeof *qw);
}

/* Row n of W' = W·diag(1/s)·D·H/sqrt(block), in double-free float math (offline, once). */
static void transform_row(const float *w, int in, const float *smooth, const int8_t *signs, int block, float *out)
{
    for (int j = 0; j < in; j++) out[j] = smooth ? w[j] / smooth[j] : w[j];
    if (!signs) return;
    for (int j = 0; j < in; j++) out[j] *= signs[j];
    dt_fwht_blocks(out, in, block);
    float norm = 1.0f / sqrtf((float)block);
    for (int j = 0; j < in; j++) out[j] *= norm;
}

dt_status dt_qweights_check_groups(const dt_qweights *qw, dt_err *err)
{
    if (!qw->group) return DT_OK;
    if (qw->wbits != 4 || qw->group < 2 || qw->group % 2 || qw->in % qw->group || !qw->gscale)
        return dt_fail(err, DT_EINVAL, "quantize: group size %d needs 4-bit weights and an even divisor of %d channels",
                       qw->group, qw->in);
    size_t n = (size_t)qw->out * (size_t)(qw->in / qw->group);
    for (size_t i = 0; i < n; i++)
        if (qw->gscale[i] < 1 || qw->gscale[i] > DT_QGROUP_RMAX)
            return dt_fail(err, DT_EFORMAT, "quantize: group multiplier %d outside [1, %d] (row %zu)", qw->gscale[i],
                           DT_QGROUP_RMAX, i / (size_t)(qw->in / qw->group));
    return DT_OK;
}

static void put_code(dt_qweights *qw, int n, int j, int q)
{
    if (qw->wbits == 8) qw->q[(size_t)n * qw->in + j] = (int8_t)q;
    else {
        uint8_t *b = (uint8_t *)qw->q + (size_t)n * (qw->in / 2) + j / 2;
        *b = (j & 1) ? (uint8_t)((*b & 0x0F) | ((q & 0xF) << 4)) : (uint8_t)(q & 0xF);
    }
}

/* Codes of row[j0, j1) times inv (1/step; 0: all zero), clamped to ±qmax. */
static void round_codes(dt_qweights *qw, int n, const float *row, int j0, int j1, float inv, int qmax)
{
    for (int j = j0; j < j1; j++) {
        float v = nearbyintf(row[j] * inv);
        put_code(qw, n, j, v > qmax ? qmax : v < -qmax ? -qmax : (int)v);
    }
}

static float absmax(const float *x, int n)
{
    float m = 0;
    for (int j = 0; j < n; j++) m = fmaxf(m, fabsf(x[j]));
    return m;
}

/* Row n in groups: base = widest group step / RMAX, each group's multiplier the smallest
 * integer whose step covers its range (so nothing clips). */
static void quantize_groups(dt_qweights *qw, int n, const float *row)
{
    const int G = qw->group, ng = qw->in / G;
    uint8_t *r = qw->gscale + (size_t)n * ng;
    float widest = 0;
    for (int g = 0; g < ng; g++) widest = fmaxf(widest, absmax(row + g * G, G) / 7);
    float base = widest / DT_QGROUP_RMAX;
    qw->wscale[n] = base;
    for (int g = 0; g < ng; g++) {
        float need = base > 0 ? absmax(row + g * G, G) / 7 / base : 0;
        int m = (int)ceilf(need);
        r[g] = (uint8_t)(m < 1 ? 1 : m > DT_QGROUP_RMAX ? DT_QGROUP_RMAX : m);
        float step = base * r[g];
        round_codes(qw, n, row, g * G, (g + 1) * G, step > 0 ? 1.0f / step : 0, 7);
    }
}

/* The plain 8-bit row (no smoothing, rotation or groups: int8 text-encoder weights, loaded each
 * prompt): the same codes as transform_row + absmax + round_codes, without the row copy and in
 * SIMD (max is exact in any order; each code depends on its own value only). */
static void quantize_row8(const float *w, int in, int8_t *q, float *wscale)
{
    float amax = 0;
#pragma omp simd reduction(max : amax)
    for (int j = 0; j < in; j++) {
        float a = fabsf(w[j]);
        amax = a > amax ? a : amax;
    }
    *wscale = amax / 127;
    float inv = amax > 0 ? 127 / amax : 0;
#pragma omp simd
    for (int j = 0; j < in; j++) {
        float v = nearbyintf(w[j] * inv);
        q[j] = (int8_t)(int)(v > 127 ? 127 : v < -127 ? -127 : v);
    }
}

dt_status dt_qweights_make(const float *w, int in, int out, int wbits, int group, const float *smooth,
                           uint64_t rot_seed, dt_qweights *qw, dt_err *err)
{
    memset(qw, 0, sizeof *qw);
    if (wbits != 8 && wbits != 4) return dt_fail(err, DT_EINVAL, "quantize: weight bits must be 4 or 8, got %d", wbits);
    if (in <= 0 || out <= 0 || (wbits == 4 && in % 2))
        return dt_fail(err, DT_EINVAL, "quantize: bad layer size %d x %d for %d-bit weights", out, in, wbits);
    if (group && (wbits != 4 || group < 2 || group % 2 || in % group))
        return dt_fail(err, DT_EINVAL, "quantize: group size %d needs 4-bit weights and an even divisor of %d channels",
                       group, in);
    qw->in = in;
    qw->out = out;
    qw->wbits = wbits;
    qw->group = group;
    qw->q = malloc(dt_qweights_qbytes(in, out, wbits));
    qw->wscale = malloc((size_t)out * sizeof(float));
    qw->smooth = smooth ? malloc((size_t)in * sizeof(float)) : NULL;
    qw->signs = rot_seed ? malloc((size_t)in) : NULL;
    qw->gscale = group ? malloc((size_t)out * (size_t)(in / group)) : NULL;
    const int plain = wbits == 8 && !smooth && !rot_seed; /* quantize_row8: no scratch row */
    const int nt = omp_get_max_threads(); /* rows are independent: one scratch row per thread */
    float *rows = plain ? NULL : malloc((size_t)nt * in * sizeof(float));
    if (!qw->q || !qw->wscale || (smooth && !qw->smooth) || (rot_seed && !qw->signs) || (group && !qw->gscale) || (!plain && !rows)) {
        free(rows);
        dt_qweights_free(qw);
        return dt_fail(err, DT_ENOMEM, "quantize: out of memory for a %d x %d layer", out, in);
    }
    if (smooth) memcpy(qw->smooth, smooth, (size_t)in * sizeof(float));
    if (rot_seed) {
        dt_rotation_signs(rot_seed, in, qw->signs);
        qw->rot_block = dt_hadamard_block(in);
    }
    const int qmax = wbits == 8 ? 127 : 7;
#pragma omp parallel for schedule(static) num_threads(nt) if ((size_t)out * in > (1u << 20))
    for (int n = 0; n < out; n++) {
        if (plain) { quantize_row8(w + (size_t)n * in, in, qw->q + (size_t)n * in, &qw->wscale[n]); continue; }
        float *row = rows + (size_t)omp_get_thread_num() * in;
        transform_row(w + (size_t)n * in, in, qw->smooth, qw->signs, qw->rot_block, row);
        if (group) { quantize_groups(qw, n, row); continue; }
        float amax = absmax(row, in);
        qw->wscale[n] = amax / qmax;
        round_codes(qw, n, row, 0, in, amax > 0 ? qmax / amax : 0, qmax);
    }
    free(rows);
    return DT_OK;
}

void dt_qweights_dequant(const dt_qweights *qw, float *w)
{
    for (int n = 0; n < qw->out; n++)
        for (int j = 0; j < qw->in; j++) {
            int q;
            if (qw->wbits == 8) q = qw->q[(size_t)n * qw->in + j];
            else {
                uint8_t b = (uint8_t)qw->q[(size_t)n * (qw->in / 2) + j / 2];
                q = (int8_t)((j & 1 ? b >> 4 : b & 0xF) << 4) >> 4; /* sign-extend the nibble */
                if (qw->group) q *= qw->gscale[(size_t)n * (qw->in / qw->group) + j / qw->group];
            }
            w[(size_t)n * qw->in + j] = (float)q * qw->wscale[n];
        }
}
