/* CPU backend internals shared by its files (not part of the public kernel interface). */
#ifndef DT_CPU_H
#define DT_CPU_H
#include <dnnl.h>
#include <string.h>
#include "kernels/backend.h"
#include "kernels/cpu/cpu_entry.h"

#define CPU_BMM_CACHE 32

typedef struct {
    int used;
    dt_dtype dt;
    int64_t batch, m, k, n;
    int trans_b;
    dnnl_primitive_t prim;
} cpu_bmm_entry;

typedef struct {
    dt_backend base;
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    cpu_bmm_entry bmm[CPU_BMM_CACHE]; /* batched-matmul primitives by shape */
    int bmm_next;                     /* round-robin victim when full */
    void *scratch;                    /* reused conversion/attention buffers */
    size_t scratch_size;
    dt_attn_kernel attn_kernel;       /* GEMM, FUSED or INT8 (attention_fused.c for the last two) */
} cpu_backend;

/* Grows the backend scratch to at least `bytes` (reallocates only when it must). */
void *cpu_scratch(cpu_backend *cb, size_t bytes);
dt_status cpu_dnnl_fail(dt_err *err, dnnl_status_t st, const char *what);

/* What this CPU runs natively (cpu_backend.c): bf16 GEMMs (AVX512-BF16/AMX), exact int8 GEMMs
 * (VNNI); the oneDNN ISA name for messages; a one-line "no native bf16" error for `what`. */
int cpu_native_bf16(void);
int cpu_exact_int8(void);
const char *cpu_isa_name(void);
dt_status cpu_check_dtype(dt_dtype t, const char *what, dt_err *err);
/* Emulated bf16 (DITRT_BF16_EMULATED=1 where bf16 is not native; cpu_backend.c says what it
 * verifies): cpu_bf16_ok says bf16 runs (natively or emulated). For a bf16 layer or GEMM on such a
 * CPU (cpu_dnnl_dt is then f32): _weights rounds the f32 weights w (bytes, any layout) to bf16
 * values in place; _src points *src (n bf16 values) at an f32 copy, *owned (free it; NULL when
 * nothing was done). Both do nothing for f32 or where bf16 is native. */
int cpu_bf16_ok(void);
int cpu_bf16_emulated(void);
void cpu_bf16_emulate_weights(dt_dtype t, void *w, size_t bytes);
dt_status cpu_bf16_emulate_src(dt_dtype t, const void **src, size_t n, float **owned, dt_err *err);

/* oneDNN data type of a float compute dtype (bf16 or f32). */
dnnl_data_type_t cpu_dnnl_dt(dt_dtype t);
/* One-shot reorder of s (described by smd) into d (dmd): weights into a primitive's layout
 * at creation time, never in a hot loop. */
dnnl_status_t cpu_reorder(cpu_backend *cb, const dnnl_memory_desc_t *smd, const void *s,
                          const dnnl_memory_desc_t *dmd, void *d);

/* Softmax of one score row x[0..n) with scores x·scale (scale > 0). The exponentials go to
 * e (n floats; may be x); with out16 the probabilities are rounded to bf16 there (e is then
 * scratch), without it they are left in e. cpu_softmax_row is the AVX2 path where built
 * with it; _plain is its reference (softmax.c). */
void cpu_softmax_row(const float *x, int64_t n, float scale, float *e, uint16_t *out16);
void cpu_softmax_row_plain(const float *x, int64_t n, float scale, float *e, uint16_t *out16);

/* Attention blocks (attention.c; window_attention.c too): rows [r0, r0+n) of (batch, head)
 * pairs g0..g0+gn of a [B, N, heads·d] view t, into dst [gn, n, d] in dtype cd; and back from
 * o [gn, n, d] f32 into out. */
void cpu_attn_gather_rows(const dt_tensor *t, int64_t g0, int64_t gn, int heads, int64_t d, int64_t r0, int64_t n,
                          dt_dtype cd, void *dst);
void cpu_attn_scatter_rows(const float *o, int64_t g0, int64_t gn, int heads, int64_t d, int64_t r0, int64_t n,
                           dt_tensor *out);

/* One f32 -> bf16, round to nearest even (no NaN handling: activations and probabilities). */
static inline uint16_t cpu_bf16_round(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

/* f32 -> bf16, n elements, threaded. */
void cpu_f32_to_bf16(const float *src, uint16_t *dst, size_t n);

/* C[b] = alpha * A[b] · op(B[b]) for contiguous row-major batches; op transposes B when
 * trans_b ([b,n,k] storage). A, B in `dt` (f32 or bf16), C f32. */
dt_status cpu_bmm(cpu_backend *cb, dt_dtype dt, int64_t batch, int64_t m, int64_t k, int64_t n,
                  const void *a, const void *b, int trans_b, float *c, dt_err *err);

dt_status cpu_linear_create(dt_backend *be, const float *w, const float *b, int in, int out,
                            dt_act act, int m_hint, dt_dtype dtype, dt_linear **lin, dt_err *err);
/* linear_forward takes x [M, in] or [B, T, in] (rows of both), y the same with `out`. */
dt_status cpu_linear_forward(dt_backend *be, dt_linear *l, const dt_tensor *x, dt_tensor *y, dt_err *err);
/* Rows of a contiguous f32 [M, n] or [B, T, n] tensor; -1 when it is not one. */
int64_t cpu_rows(const dt_tensor *t, int n);
/* LayerNorm-modulate one row at a time (elementwise.c): cpu_lnmod_row is the body of
 * cpu_layernorm_modulate (yr = LN(xr)·(1+sc) + sh, sh/sc may be NULL; compiled once, so every
 * caller gets the same bits); cpu_lnmod_init describes the op's x [B,N,C] view (unit element
 * stride) and [B,C] shift/scale views (0 if they do not fit), cpu_lnmod_rowm makes row m = b·N + i. */
typedef struct {
    const float *x, *shift, *scale;
    int64_t N, C, xs0, xs1, shs, scs;
    float eps;
} cpu_lnmod;
void cpu_lnmod_row(const float *xr, const float *sh, const float *sc, int64_t C, float eps, float *yr);
int cpu_lnmod_init(const dt_tensor *x, const dt_tensor *shift, const dt_tensor *scale, float eps, cpu_lnmod *p);
void cpu_lnmod_rowm(const cpu_lnmod *p, int64_t m, float *yr);
/* Rows [0, M) of p made and rounded to bf16 into dst [M, C] (the bits of layernorm_modulate then
 * cpu_f32_to_bf16, in one pass); tmp: C floats per OpenMP thread. */
void cpu_lnmod_rows_bf16(const cpu_lnmod *p, int64_t M, uint16_t *dst, float *tmp);
/* linear_forward of a bf16 float layer (cpu_linear_is_bf16) on LayerNorm-modulate(ln)'s m rows
 * (matmul_dnnl.c). */
int cpu_linear_is_bf16(const dt_linear *l);
dt_status cpu_linear_forward_lnmod(dt_backend *be, dt_linear *l, const cpu_lnmod *ln, int64_t m, dt_tensor *y,
                                   dt_err *err);
void cpu_linear_destroy(dt_linear *l);
dt_status cpu_attention(dt_backend *be, const dt_tensor *q, const dt_tensor *k, const dt_tensor *v,
                        const dt_attn_bias *bias, int heads, float scale, dt_tensor *out, dt_err *err);
dt_status cpu_layernorm_modulate(dt_backend *be, const dt_tensor *x, const dt_tensor *shift,
                                 const dt_tensor *scale, float eps, dt_tensor *y, dt_err *err);
dt_status cpu_gated_add(dt_backend *be, dt_tensor *x, const dt_tensor *y, const dt_tensor *gate, dt_err *err);
dt_status cpu_activation(dt_backend *be, dt_act act, const dt_tensor *x, dt_tensor *y, dt_err *err);
dt_status cpu_patchify(dt_backend *be, const dt_tensor *x, int p, dt_tensor *y, dt_err *err);
dt_status cpu_unpatchify(dt_backend *be, const dt_tensor *x, int p, int h, int w, dt_tensor *y, dt_err *err);
dt_status cpu_add_rows(dt_backend *be, const dt_tensor *x, const dt_tensor *r, dt_tensor *y, dt_err *err);
dt_status cpu_repeat_rows(dt_backend *be, const dt_tensor *x, int reps, dt_tensor *y, dt_err *err);
dt_status cpu_sub(dt_backend *be, const dt_tensor *a, const dt_tensor *b, dt_tensor *y, dt_err *err);
dt_status cpu_cfg_combine(dt_backend *be, const dt_tensor *uncond, const dt_tensor *cond, float g, dt_tensor *y,
                          dt_err *err);

/* Memory (memory.c): device memory is host memory on the CPU. */
dt_status cpu_buffer_alloc(dt_backend *be, size_t bytes, void **ptr, dt_err *err);
void cpu_buffer_free(dt_backend *be, void *ptr);
dt_status cpu_tensor_set(dt_backend *be, dt_tensor *dst, const void *host, size_t bytes, dt_err *err);
dt_status cpu_tensor_get(dt_backend *be, const dt_tensor *src, void *host, size_t bytes, dt_err *err);
dt_status cpu_copy(dt_backend *be, const dt_tensor *src, dt_tensor *dst, dt_err *err);

/* VAE decoder ops (conv_dnnl.c, image_ops.c) */
dt_status cpu_conv2d_create(dt_backend *be, const float *w, const float *b, int cin, int cout, int k, int stride,
                            int pad_lo, int pad_hi, dt_dtype dtype, dt_conv2d **conv, dt_err *err);
dt_status cpu_conv2d_forward(dt_backend *be, dt_conv2d *c, const dt_tensor *x, dt_tensor *y, int accumulate, dt_err *err);
void cpu_conv2d_destroy(dt_conv2d *c);
/* Tests only: the scratch budget of one band of a blocked (f32) convolution, in bytes; a
 * small one (1: one output row per band) runs many bands on a small image. */
void cpu_conv2d_set_band_bytes(dt_conv2d *c, size_t bytes);
dt_status cpu_group_norm(dt_backend *be, const dt_tensor *x, int groups, const dt_tensor *gamma,
                         const dt_tensor *beta, float eps, dt_act act, dt_tensor *y, dt_err *err);
dt_status cpu_upsample_nearest2x(dt_backend *be, const dt_tensor *x, dt_tensor *y, dt_err *err);
/* im2col.c: backend.h's im2col. */
dt_status cpu_im2col(dt_backend *be, const dt_tensor *x, int k, int stride, int pad_lo, int pad_hi, dt_tensor *y,
                     dt_err *err);
dt_status cpu_copy4d(dt_backend *be, const dt_tensor *src, dt_tensor *dst, dt_err *err);
dt_status cpu_blend_edge(dt_backend *be, const dt_tensor *a, dt_tensor *b, int axis, int extent, dt_err *err);

/* T5 text encoder ops (t5_ops.c) */
dt_status cpu_rms_norm(dt_backend *be, const dt_tensor *x, const float *w, float eps, dt_tensor *y, dt_err *err);
dt_status cpu_gated_act(dt_backend *be, dt_act act, const dt_tensor *x, dt_tensor *y, dt_err *err);

/* GEGLU / SwiGLU of the U-Net feed-forward (geglu.c) */
dt_status cpu_geglu(dt_backend *be, dt_act act, const dt_tensor *x, dt_tensor *y, dt_err *err);

/* The attention ops of the table (attention_select.c): the two-GEMM kernels below or the fused
 * one (attention_fused.h), as cb->attn_kernel says; cpu_attn_kernel resolves cfg.attn_kernel
 * (AUTO: DITRT_ATTN, else fused for f32 compute) into *kind, or fails on a bad DITRT_ATTN. */
dt_status cpu_attn_kernel(const dt_backend_config *cfg, dt_attn_kernel *kind, dt_err *err);
dt_status cpu_attention_op(dt_backend *be, const dt_tensor *q, const dt_tensor *k, const dt_tensor *v,
                           const dt_attn_bias *bias, int heads, float scale, dt_tensor *out, dt_err *err);
dt_status cpu_window_attention_op(dt_backend *be, const dt_tensor *q, const dt_tensor *k, const dt_tensor *v,
                                  int heads, float scale, int window, dt_tensor *out, dt_err *err);
dt_status cpu_attention_fused(dt_backend *be, const dt_tensor *q, const dt_tensor *k, const dt_tensor *v,
                              const dt_attn_bias *bias, int heads, float scale, dt_tensor *out, dt_err *err);
dt_status cpu_window_attention_fused(dt_backend *be, const dt_tensor *q, const dt_tensor *k, const dt_tensor *v,
                                     int heads, float scale, int window, dt_tensor *out, dt_err *err);
/* attention_with (backend.h): the kernel named per call, whatever cb->attn_kernel is. */
dt_status cpu_attention_with(dt_backend *be, dt_attn_kernel kind, const dt_tensor *q, const dt_tensor *k,
                             const dt_tensor *v, const dt_attn_bias *bias, int heads, float scale, int window,
                             dt_tensor *out, dt_err *err);

/* DiTFastAttn banded attention (window_attention.c) */
dt_status cpu_window_attention(dt_backend *be, const dt_tensor *q, const dt_tensor *k, const dt_tensor *v,
                               int heads, float scale, int window, dt_tensor *out, dt_err *err);

/* Quantized and calibration linears (qlinear.c). Every CPU dt_linear struct starts with
 * `int kind`; cpu_linear_forward/destroy hand the non-float kinds to qlinear.c. */
#include "kernels/quant.h"
enum { CPU_LIN_FLOAT = 0, CPU_LIN_QUANT = 1, CPU_LIN_OBSERVE = 2, CPU_LIN_W8 = 3 };
/* Weight-only int8 linears (linear_w8.c; linear_create with dtype DT_I8): int8 weights per output
 * channel, f32 activations and GEMM; cpu_linear_forward/destroy hand CPU_LIN_W8 to these. */
dt_status cpu_w8_linear_create(dt_backend *be, const float *w, const float *b, int in, int out, dt_act act,
                               dt_linear **lin, dt_err *err);
dt_status cpu_w8_linear_forward(dt_backend *be, dt_linear *l, const dt_tensor *x, dt_tensor *y, dt_err *err);
void cpu_w8_linear_destroy(dt_linear *l);
dt_status cpu_qlinear_create(dt_backend *be, const dt_qweights *qw, const float *b, dt_act act, int m_hint,
                             dt_linear **lin, dt_err *err);
dt_status cpu_linear_observe(dt_backend *be, dt_linear *inner, int in, float *amax, dt_linear **lin, dt_err *err);
dt_status cpu_qlinear_forward(dt_backend *be, dt_linear *l, const dt_tensor *x, dt_tensor *y, dt_err *err);
void cpu_qlinear_destroy(dt_linear *l);
/* Bytes a quantized layer keeps resident for its weights (W8: int8 in the GEMM layout, with or
 * without VNNI; W4: packed); 0 for other kinds. Per-call expansions live in the backend scratch. */
size_t cpu_qlinear_weight_bytes(const dt_linear *l);
/* layernorm_modulate_linear (backend.h): a quantized layer quantizes each normalized row as it is
 * made (cpu_lnmod_rowm, then cpu_qrow: the same bits as the two ops), a bf16 float layer gets its
 * GEMM input written in bf16 directly (cpu_lnmod_rows_bf16); f32 layers run the two ops. */
dt_status cpu_layernorm_modulate_linear(dt_backend *be, const dt_tensor *x, const dt_tensor *shift,
                                        const dt_tensor *scale, float eps, dt_linear *l, dt_tensor *xn, dt_tensor *y,
                                        dt_err *err);
/* linear_gated_add (backend.h): a quantized layer adds its outputs to the residual in its
 * epilogue; other layers run the two ops. */
dt_status cpu_linear_gated_add(dt_backend *be, dt_linear *l, const dt_tensor *in, dt_tensor *x, dt_tensor *y,
                               const dt_tensor *gate, dt_err *err);
dt_status cpu_qlinear_keep_tokens(dt_backend *be, dt_linear *q, dt_linear *fp, const int *tokens, int n, dt_err *err);
/* One activation row x[K] balanced (⊙ smooth), rotated (±1 signs, then the block Hadamard of
 * quant.h, unnormalized) and quantized to q[K] (symmetric int8 at 127/amax); returns amax.
 * t: K floats of scratch. cpu_qrow is the AVX2 version, bit-identical to cpu_qrow_plain; it
 * takes ss = smooth·signs from cpu_qrow_signed_smooth (qrows.c). */
float cpu_qrow_plain(const float *x, int K, const float *smooth, const int8_t *signs, int block, float *t, int8_t *q);
float cpu_qrow(const float *x, int K, const float *ss, const float *smooth, const int8_t *signs, int block, float *t,
               int8_t *q);
void cpu_qrow_signed_smooth(const float *smooth, const int8_t *signs, int K, float *ss);

#endif
