/* Weight-only int8 linear layers (linear_create with dtype DT_I8): the weights are kept as int8,
 * symmetric per output channel (dt_qweights_make, 8 bits, no balancing or rotation), a quarter
 * of their f32 bytes; activations, GEMM and outputs stay f32. Each forward expands a block of
 * output channels at a time to f32 (q·wscale, the value dt_qweights_dequant gives) in the
 * backend scratch and runs oneDNN's f32 matmul on it, so no more than CPU_W8_BLOCK_BYTES of
 * expanded weights exist at once. Meant for layers that run a few times per image (the T5 text
 * encoder): the expansion costs one pass over the weights per call, a few percent of the GEMM at
 * a hundred rows or more. */
#include "cpu.h"
#include "vmath.h"
#include <stdlib.h>
#include <string.h>

#define CPU_W8_BLOCK_BYTES (16u << 20) /* expanded f32 weights per GEMM: a block of output channels */

typedef struct {
    int kind; /* CPU_LIN_W8 */
    int in, out;
    dt_act act;
    int8_t *q;     /* [out, in], torch layout */
    float *wscale; /* [out] */
    float *bias;   /* [out] or NULL */
} cpu_w8_linear;

dt_status cpu_w8_linear_create(dt_backend *be, const float *w, const float *b, int in, int out, dt_act act,
                               dt_linear **lout, dt_err *err)
{
    (void)be;
    cpu_w8_linear *l = calloc(1, sizeof *l);
    if (!l) return dt_fail(err, DT_ENOMEM, "out of memory");
    *l = (cpu_w8_linear){.kind = CPU_LIN_W8, .in = in, .out = out, .act = act};
    dt_qweights qw;
    dt_status s = dt_qweights_make(w, in, out, 8, 0, NULL, 0, &qw, err);
    if (s != DT_OK) { free(l); return s; }
    l->q = qw.q;
    l->wscale = qw.wscale;
    if (b && !(l->bias = malloc((size_t)out * sizeof(float)))) {
        dt_qweights_free(&qw);
        free(l);
        return dt_fail(err, DT_ENOMEM, "out of memory");
    }
    if (b) memcpy(l->bias, b, (size_t)out * sizeof(float));
    *lout = (dt_linear *)l;
    return DT_OK;
}

/* Output channels per block: a multiple of 16, at most the whole layer. */
static int block_rows(const cpu_w8_linear *l)
{
    size_t nb = CPU_W8_BLOCK_BYTES / ((size_t)l->in * sizeof(float));
    nb = nb < 16 ? 16 : nb / 16 * 16;
    return nb > (size_t)l->out ? l->out : (int)nb;
}

/* o[0..n) = act(o), the activation chosen once per row rather than per value. */
static void act_row(dt_act act, float *o, int n)
{
    switch (act) {
    case DT_ACT_GELU_TANH: for (int j = 0; j < n; j++) o[j] = vm_gelu_tanh(o[j]); break;
    case DT_ACT_SILU: for (int j = 0; j < n; j++) o[j] = vm_silu(o[j]); break;
    case DT_ACT_GELU_ERF: for (int j = 0; j < n; j++) o[j] = vm_gelu_erf(o[j]); break;
    default: break;
    }
}

dt_status cpu_w8_linear_forward(dt_backend *be, dt_linear *lin, const dt_tensor *x, dt_tensor *y, dt_err *err)
{
    cpu_backend *cb = (cpu_backend *)be;
    const cpu_w8_linear *l = (const cpu_w8_linear *)lin;
    int64_t M = cpu_rows(x, l->in);
    if (M < 0 || cpu_rows(y, l->out) != M)
        return dt_fail(err, DT_EINVAL, "linear: expected contiguous f32 [M,%d] -> [M,%d]", l->in, l->out);
    const int nb = block_rows(l), K = l->in, N = l->out;
    size_t wbytes = ((size_t)nb * K * sizeof(float) + 63) / 64 * 64;
    float *wf = cpu_scratch(cb, wbytes + (size_t)M * nb * sizeof(float));
    if (!wf) return dt_fail(err, DT_ENOMEM, "out of memory expanding int8 weights");
    float *part = (float *)((char *)wf + wbytes); /* [M, n] of this block's outputs */
    const float *xs = x->data;
    float *ys = y->data;
    for (int n0 = 0; n0 < N; n0 += nb) {
        const int n = N - n0 < nb ? N - n0 : nb;
#pragma omp parallel for schedule(static)
        for (int r = 0; r < n; r++) {
            const int8_t *q = l->q + (size_t)(n0 + r) * K;
            float *o = wf + (size_t)r * K;
            const float s = l->wscale[n0 + r];
#pragma omp simd
            for (int k = 0; k < K; k++) o[k] = (float)q[k] * s;
        }
        DT_TRY(cpu_bmm(cb, DT_F32, 1, M, K, n, xs, wf, 1, part, err));
#pragma omp parallel for schedule(static)
        for (int64_t m = 0; m < M; m++) {
            const float *p = part + m * n;
            float *o = ys + m * N + n0;
            if (l->bias)
                for (int j = 0; j < n; j++) o[j] = p[j] + l->bias[n0 + j];
            else
                memcpy(o, p, (size_t)n * sizeof(float));
            act_row(l->act, o, n);
        }
    }
    return DT_OK;
}

void cpu_w8_linear_destroy(dt_linear *lin)
{
    cpu_w8_linear *l = (cpu_w8_linear *)lin;
    free(l->q);
    free(l->wscale);
    free(l->bias);
    free(l);
}
