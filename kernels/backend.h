/* The compute backend: what model code calls, never touching tensor memory itself.
 *
 * Contract (who owns what):
 *  - A backend is created for one device (dt_backend_create dispatches on cfg->device through
 *    the registry in kernels/backend.c) and owns that device's memory: activation buffers come
 *    from buffer_alloc (directly or through an arena backed by dt_backend_allocator) and go back
 *    through buffer_free. Tensors are non-owning views; a tensor an op takes must live on the
 *    backend's device (t->device == be->cfg.device).
 *  - Host code never dereferences the data of a device tensor: it writes one with tensor_set,
 *    reads it with tensor_get and copies between device tensors with copy. (On the CPU backend
 *    device memory is host memory, so older host-side code still works there; new code must not
 *    rely on it.) Every op that touches activations runs through this table.
 *  - Host pointers in the table (weights at *_create, attention biases, rms_norm weights,
 *    observe's amax) are host memory the backend reads or writes itself.
 *  - Linear layers are "create once, execute many": weights are converted and reordered to the
 *    GEMM library's layout at creation. Every op returns a status with a one-line message.
 *  - Activations are f32; `compute` (f32, bf16, or f16 on CUDA) is the dtype GEMM inputs are rounded to.
 *    `supports` answers which ops and dtypes the backend runs (bf16 GEMMs only where native).
 * CPU is implemented (kernels/cpu); CUDA plugs in as another dt_backend_ops table and one more
 * registry entry. Ops are synchronous as seen by the caller (a GPU backend orders them on one
 * stream; tensor_get returns once the data is on the host). */
#ifndef DT_BACKEND_H
#define DT_BACKEND_H
#include "runtime/core/tensor.h"
#include "runtime/core/arena.h"

/* DT_ACT_GELU_ERF: the exact GELU x·Φ(x) = x·(1 + erf(x/√2))/2 (torch's approximate="none");
 * a backend takes it where supports(DT_OP_GELU_ERF) says so. */
typedef enum { DT_ACT_NONE = 0, DT_ACT_GELU_TANH, DT_ACT_SILU, DT_ACT_GELU_ERF } dt_act;

/* Which kernel runs `attention` and `window_attention` (both stay available so either can be
 * tested): AUTO is the DITRT_ATTN environment variable ("gemm", "fused" or "int8") when set, else
 * the backend's choice (CPU: fused for f32 compute, the two GEMMs for bf16, whose GEMMs are
 * native). INT8 is the fused kernel with QKᵀ in int8 (SageAttention-style, an approximation:
 * never chosen by AUTO). */
typedef enum { DT_ATTN_KERNEL_AUTO = 0, DT_ATTN_KERNEL_GEMM, DT_ATTN_KERNEL_FUSED, DT_ATTN_KERNEL_INT8 } dt_attn_kernel;

typedef struct {
    dt_device device;
    int device_index; /* which device of that kind (cuda:N); 0 for the CPU */
    dt_dtype compute; /* DT_F32 or DT_BF16; DT_F16 on CUDA only (dt_backend_create refuses it elsewhere) */
    int threads;      /* 0: all cores */
    size_t attn_block_bytes; /* attention score block bound (f32 scores of one GEMM pair); 0: default (48 MB) */
    dt_attn_kernel attn_kernel; /* resolved at creation: the backend's cfg holds GEMM, FUSED or INT8 */
    int tf32; /* with compute f32: GEMMs through TF32 tensor cores (CUDA only; other devices refuse it) */
} dt_backend_config;

/* Additive attention-score biases; either may be NULL. */
typedef struct {
    const float *key;  /* [B, Nk]: per key (a caption padding mask as -10000 / 0) */
    const float *head; /* [H, Nq, Nk]: per head and position, shared by the batch (T5's relative position bias) */
} dt_attn_bias;

/* Op kinds for the `supports` query. The dtype asked about is, per kind: the GEMM dtype (weights
 * and GEMM inputs) for LINEAR, ATTENTION, WINDOW_ATTENTION and CONV2D; the int8 code dtype DT_I8
 * for QLINEAR (and DT_I8 for ATTENTION: whether attention_with runs the INT8 kernel); the storage dtype for COPY (tensor_set/get/copy), COPY4D, GROUP_NORM's and
 * UPSAMPLE's outputs; the activation dtype (f32) for the rest. BUFFER (buffer_alloc/free)
 * ignores the dtype. */
typedef enum {
    DT_OP_BUFFER = 0,
    DT_OP_COPY,
    DT_OP_LINEAR,
    DT_OP_QLINEAR,
    DT_OP_ATTENTION,
    DT_OP_WINDOW_ATTENTION,
    DT_OP_LAYERNORM_MODULATE,
    DT_OP_GATED_ADD,
    DT_OP_ACTIVATION,
    DT_OP_PATCHIFY, /* and unpatchify */
    DT_OP_ADD_ROWS,
    DT_OP_CONV2D,
    DT_OP_GROUP_NORM,
    DT_OP_UPSAMPLE,
    DT_OP_COPY4D,
    DT_OP_BLEND_EDGE,
    DT_OP_RMS_NORM,
    DT_OP_GATED_ACT,
    DT_OP_REPEAT_ROWS,
    DT_OP_SUB,
    DT_OP_CFG_COMBINE,
    DT_OP_GEGLU,    /* the geglu op (with every activation activation() takes) */
    DT_OP_GELU_ERF, /* DT_ACT_GELU_ERF in activation, gated_act, geglu, group_norm and linear/qlinear_create */
    DT_OP_COUNT
} dt_op;

typedef struct dt_backend dt_backend;
typedef struct dt_linear dt_linear;
typedef struct dt_conv2d dt_conv2d;
typedef struct dt_qweights dt_qweights; /* kernels/quant.h */

typedef struct {
    /* ---- Memory (the backend owns it; see the contract above) ---- */
    /* *ptr = `bytes` of device memory, 64-byte aligned (0 bytes gives a valid 64-byte block);
     * DT_ENOMEM with a one-line message when the device has no room. */
    dt_status (*buffer_alloc)(dt_backend *be, size_t bytes, void **ptr, dt_err *err);
    /* Frees what buffer_alloc returned; NULL is a no-op. */
    void (*buffer_free)(dt_backend *be, void *ptr);
    /* Host -> device: dst (contiguous, on the backend's device) = the `bytes` at host;
     * bytes must equal dt_tensor_nbytes(dst). Any dtype. */
    dt_status (*tensor_set)(dt_backend *be, dt_tensor *dst, const void *host, size_t bytes, dt_err *err);
    /* Device -> host: the `bytes` at host = src (contiguous, on the backend's device);
     * bytes must equal dt_tensor_nbytes(src). Any dtype. */
    dt_status (*tensor_get)(dt_backend *be, const dt_tensor *src, void *host, size_t bytes, dt_err *err);
    /* Device -> device: dst = src, both contiguous on the backend's device, same dtype (f32 or
     * bf16) and numel (shapes may differ); src == dst is a no-op, other overlaps are not allowed. */
    dt_status (*copy)(dt_backend *be, const dt_tensor *src, dt_tensor *dst, dt_err *err);
    /* Whether this backend runs `op` with `dtype` (see dt_op for what the dtype means per kind). */
    int (*supports)(dt_backend *be, dt_op op, dt_dtype dtype);

    /* y[M,out] = act(x[M,in] · Wᵀ + b); W is torch layout [out, in] f32, b may be NULL.
     * m_hint: the row count most calls will use (picks the weight layout); dtype: f32 or
     * bf16 weights and GEMM inputs for this layer (usually cfg.compute). */
    dt_status (*linear_create)(dt_backend *be, const float *w, const float *b, int in, int out,
                               dt_act act, int m_hint, dt_dtype dtype, dt_linear **lin, dt_err *err);
    dt_status (*linear_forward)(dt_backend *be, dt_linear *l, const dt_tensor *x, dt_tensor *y, dt_err *err);
    void (*linear_destroy)(dt_linear *l);
    /* out[B,Nq,H·d] = softmax(q·kᵀ·scale + bias)·v per head; q,k,v are [B,N,H·d] views
     * whose row stride (strides[1]) may exceed H·d; bias may be NULL. */
    dt_status (*attention)(dt_backend *be, const dt_tensor *q, const dt_tensor *k, const dt_tensor *v,
                           const dt_attn_bias *bias, int heads, float scale, dt_tensor *out, dt_err *err);
    /* y[B,N,C] = LN(x)·(1+scale[b]) + shift[b] (no affine); shift/scale are [B,C] views or NULL. */
    dt_status (*layernorm_modulate)(dt_backend *be, const dt_tensor *x, const dt_tensor *shift,
                                    const dt_tensor *scale, float eps, dt_tensor *y, dt_err *err);
    /* x[B,N,C] += gate[b] · y (gate [B,C] view, or NULL for a plain residual add). */
    dt_status (*gated_add)(dt_backend *be, dt_tensor *x, const dt_tensor *y, const dt_tensor *gate, dt_err *err);
    /* y = act(x), elementwise over contiguous tensors of equal shape. */
    dt_status (*activation)(dt_backend *be, dt_act act, const dt_tensor *x, dt_tensor *y, dt_err *err);
    /* [B,C,H,W] -> [B·(H/p)·(W/p), C·p·p] in conv-weight order (c, ky, kx). */
    dt_status (*patchify)(dt_backend *be, const dt_tensor *x, int p, dt_tensor *y, dt_err *err);
    /* [B, h·w, p·p·C] (order ky, kx, c) -> [B, C, h·p, w·p]. */
    dt_status (*unpatchify)(dt_backend *be, const dt_tensor *x, int p, int h, int w, dt_tensor *y, dt_err *err);
    /* y = x + r, r repeated over x's leading dims (numel(x) a multiple of numel(r)); in place allowed. */
    dt_status (*add_rows)(dt_backend *be, const dt_tensor *x, const dt_tensor *r, dt_tensor *y, dt_err *err);
    /* Each row of x written `reps` (>= 1) times in succession: x contiguous f32 viewed as [R, W] with
     * R = x->shape[0] and W = numel(x)/R (a 2-D [R, W] view; a [B, N, C] tensor repeats each
     * sample), y contiguous f32 with numel R·reps·W, not overlapping x:
     * y[(r·reps + k)·W + j] = x[r·W + j]. (x viewed as [1, n] gives y = reps copies of x.) */
    dt_status (*repeat_rows)(dt_backend *be, const dt_tensor *x, int reps, dt_tensor *y, dt_err *err);
    /* y[i] = a[i] − b[i]: contiguous f32 of equal numel; y may be a or b (the same buffer). */
    dt_status (*sub)(dt_backend *be, const dt_tensor *a, const dt_tensor *b, dt_tensor *y, dt_err *err);
    /* Classifier-free guidance: y[b,i] = u[b,i] + g·(c[b,i] − u[b,i]), computed in f32 in exactly
     * that order (no fused multiply-add). uncond, cond, y are f32 2-D views [B, n] of one shape
     * with unit element stride and any row stride strides[0] >= n; y may be uncond or cond (the
     * same view), no other overlap. */
    dt_status (*cfg_combine)(dt_backend *be, const dt_tensor *uncond, const dt_tensor *cond, float g, dt_tensor *y,
                             dt_err *err);
    void (*destroy)(dt_backend *be);

    /* ---- VAE decoder (runtime/models/vae.c). Images are NHWC: [B, H, W, C], channels innermost. ---- */
    /* 2-D convolution, created once: w is torch layout [cout, cin, k, k] f32, b [cout] or NULL;
     * stride s; zero padding pad_lo before and pad_hi after each spatial dim. dtype (f32 or bf16)
     * is the dtype of the weights and GEMM inputs; accumulation and output are f32. */
    dt_status (*conv2d_create)(dt_backend *be, const float *w, const float *b, int cin, int cout, int k, int stride,
                               int pad_lo, int pad_hi, dt_dtype dtype, dt_conv2d **conv, dt_err *err);
    /* y[B,Ho,Wo,cout] (f32) = conv(x[B,H,W,cin]) (+ y when accumulate: a fused residual add);
     * x is f32 or the conv's dtype; both contiguous. */
    dt_status (*conv2d_forward)(dt_backend *be, dt_conv2d *c, const dt_tensor *x, dt_tensor *y, int accumulate, dt_err *err);
    void (*conv2d_destroy)(dt_conv2d *c);
    /* y = act(GroupNorm(x)·gamma + beta) for contiguous x [B, ..., C] f32 (statistics per sample
     * and group of C/groups channels, in double); y f32 or bf16, same shape, may be x;
     * gamma/beta [C] f32 or NULL. */
    dt_status (*group_norm)(dt_backend *be, const dt_tensor *x, int groups, const dt_tensor *gamma,
                            const dt_tensor *beta, float eps, dt_act act, dt_tensor *y, dt_err *err);
    /* y[B,2H,2W,C] (f32 or bf16) = nearest-neighbour 2x upsampling of x[B,H,W,C] f32, contiguous. */
    dt_status (*upsample_nearest2x)(dt_backend *be, const dt_tensor *x, dt_tensor *y, dt_err *err);
    /* dst = src for 4-D views of one shape with any strides, f32 or bf16 each (layout changes, crops). */
    dt_status (*copy4d)(dt_backend *be, const dt_tensor *src, dt_tensor *dst, dt_err *err);
    /* diffusers' tiled-VAE seam blend (blend_v/blend_h), in place on b: with e = min(extent, the
     * sizes of a and b along axis), slice i < e of b along axis becomes
     * a[n_a - e + i]·(1 - i/e) + b[i]·(i/e). f32 4-D views, equal sizes off the axis. */
    dt_status (*blend_edge)(dt_backend *be, const dt_tensor *a, dt_tensor *b, int axis, int extent, dt_err *err);

    /* ---- T5 text encoder (runtime/models/t5.c) ---- */
    /* y[M,C] = x · rsqrt(mean(x²) + eps) · w (T5LayerNorm: no mean, no bias), statistics in f32;
     * x, y contiguous f32 [M, C] (2-D or 3-D), w [C] f32; y may be x. */
    dt_status (*rms_norm)(dt_backend *be, const dt_tensor *x, const float *w, float eps, dt_tensor *y, dt_err *err);
    /* y[M,F] = act(x[M, 0:F]) · x[M, F:2F] (gated FFN over the fused [wi_0 | wi_1] output);
     * x contiguous f32 [M, 2F], y contiguous f32 [M, F]. */
    dt_status (*gated_act)(dt_backend *be, dt_act act, const dt_tensor *x, dt_tensor *y, dt_err *err);

    /* ---- DiTFastAttn attention plans (runtime/plans/fastattn.c) ---- */
    /* Banded self-attention: out[b,i] = Σ_j softmax_j(q_i·k_j·scale)·v_j over |i − j| <= window
     * only (a 1-D band in token order; window >= N−1 is full attention). q, k, v, out as in
     * `attention` with Nq == Nk; scale > 0. Work ∝ N·(2·window+1)·d per head. */
    dt_status (*window_attention)(dt_backend *be, const dt_tensor *q, const dt_tensor *k, const dt_tensor *v,
                                  int heads, float scale, int window, dt_tensor *out, dt_err *err);
    /* ---- Quantized linear layers (kernels/cpu/qlinear.c; ViDiT-Q W8A8 / W4A8, see kernels/quant.h) ---- */
    /* A dt_linear over prequantized weights, run by linear_forward/linear_destroy like any other:
     * each row of x is balanced/rotated and quantized to int8 per call, the GEMM is int8 with
     * int32 accumulation, y = act(acc·ascale[m]·wscale[n] + b) in f32. b [out] or NULL (copied). */
    dt_status (*qlinear_create)(dt_backend *be, const dt_qweights *qw, const float *b, dt_act act, int m_hint,
                                dt_linear **lin, dt_err *err);
    /* Calibration: wraps `inner` (owned from then on) so each forward first folds max_m |x[m,j]|
     * into amax[j] (the caller's buffer of `in` floats). */
    dt_status (*linear_observe)(dt_backend *be, dt_linear *inner, int in, float *amax, dt_linear **lin, dt_err *err);
    /* MixDQ: the quantized layer q computes the rows of tokens[0..n) (indices within each
     * sequence; x must then be [B, T, in]) with the float layer fp instead (owned from then on). */
    dt_status (*qlinear_keep_tokens)(dt_backend *be, dt_linear *q, dt_linear *fp, const int *tokens, int n, dt_err *err);

    /* ---- U-Net feed-forward (runtime/models/unet_blocks.c) ---- */
    /* diffusers' GEGLU (and SwiGLU) over a fused projection's output: y[M,F] = x[M, 0:F] ·
     * act(x[M, F:2F]) — the gate is the second half, unlike gated_act's; act as activation()
     * takes (DT_ACT_GELU_ERF for GEGLU). x contiguous f32 [M, 2F], y contiguous f32 [M, F]. */
    dt_status (*geglu)(dt_backend *be, dt_act act, const dt_tensor *x, dt_tensor *y, dt_err *err);

    /* ---- Host staging memory (optional; call through dt_backend_host_alloc/free below) ---- */
    /* *ptr = `bytes` of host memory that tensor_set/tensor_get move fastest (CUDA: page-locked,
     * portable across devices), for the host buffers a caller transfers every step (the latents
     * the host-side solvers step); freed with host_free. NULL entries: plain host memory. These
     * never read be's state (a decorating backend passes itself). */
    dt_status (*host_alloc)(dt_backend *be, size_t bytes, void **ptr, dt_err *err);
    void (*host_free)(dt_backend *be, void *ptr);
    /* ---- Attention with its kernel named per call (a model's choice, e.g. a quantization plan's
     * int8 self-attention, while the backend's other users keep its own kernel) ---- */
    /* window < 0: exactly `attention` (bias may be NULL); window >= 0: `window_attention` (bias
     * NULL). kind AUTO: the backend's own kernel (the same call as those ops); GEMM, FUSED, INT8:
     * that kernel (supports(DT_OP_ATTENTION, DT_I8) says whether INT8 runs here). NULL in a
     * backend with one attention kernel. */
    dt_status (*attention_with)(dt_backend *be, dt_attn_kernel kind, const dt_tensor *q, const dt_tensor *k,
                                const dt_tensor *v, const dt_attn_bias *bias, int heads, float scale, int window,
                                dt_tensor *out, dt_err *err);
    /* ---- Fewer passes over activations ---- */
    /* y = linear_forward(l, layernorm_modulate(x, shift, scale, eps)) (x [B,N,C], y [B·N, out]
     * contiguous), with the same results as the two ops, fused where the backend can (CPU: a
     * quantized l quantizes each normalized row as it is made, so the normalized activations never
     * pass through memory in f32). xn: a tensor of x's shape the backend may use as scratch (the
     * unfused path); its contents are unspecified afterwards. NULL: callers run the two ops. */
    dt_status (*layernorm_modulate_linear)(dt_backend *be, const dt_tensor *x, const dt_tensor *shift,
                                           const dt_tensor *scale, float eps, dt_linear *l, dt_tensor *xn,
                                           dt_tensor *y, dt_err *err);
    /* ---- Convolution as a GEMM (a quantized convolution: im2col rows through a dt_linear) ---- */
    /* x NHWC [B, H, W, C] f32 -> y [B·Ho·Wo, k·k·C] f32 (columns ordered ky, kx, c; zeros where the
     * window reaches the padding), Ho = (H + pad_lo + pad_hi − k) / stride + 1 (and Wo alike): the
     * rows the convolution's weight [cout, C, k, k], reordered to [cout, (ky, kx, c)], multiplies.
     * NULL: the backend has no im2col (convolutions are not quantized there). */
    dt_status (*im2col)(dt_backend *be, const dt_tensor *x, int k, int stride, int pad_lo, int pad_hi, dt_tensor *y,
                        dt_err *err);
    /* ---- A linear's output added to the residual (the DiT block's x += gate ⊙ out(·)) ---- */
    /* x [B,N,C] += gate[b, :] ⊙ linear_forward(l, in) (gate [B, C] row vectors, or NULL: plain
     * add), with the same results as linear_forward into y then gated_add(x, y, gate), fused where
     * the backend can (CPU: a quantized l adds in its dequantize epilogue, so its output never
     * passes through memory in f32). in [B·N, in] rows; y: a contiguous [B,N,C] tensor the backend
     * may use as scratch, contents unspecified afterwards. NULL: callers run the two ops. */
    dt_status (*linear_gated_add)(dt_backend *be, dt_linear *l, const dt_tensor *in, dt_tensor *x, dt_tensor *y,
                                  const dt_tensor *gate, dt_err *err);
} dt_backend_ops;

struct dt_backend {
    const dt_backend_ops *ops;
    dt_backend_config cfg;
};

/* ---- The backend registry (kernels/backend.c): one entry per device kind built in ---- */
/* Creates the backend of cfg->device. Fails with a one-line error when that device is not built
 * into this ditrt (DT_EUNSUPPORTED, naming the built-in ones), is not usable here, or when
 * cfg->compute is a dtype the device does not run natively; f16 compute and tf32 are refused off
 * CUDA ("dtype: f16 needs --device cuda (...)"). */
dt_status dt_backend_create(const dt_backend_config *cfg, dt_backend **out, dt_err *err);
/* Whether the device runs dtype t natively: f32 always; bf16 on CPUs with AVX512-BF16 or AMX
 * (oneDNN ISA >= avx512_core_bf16). 0 for a device not built in. */
int dt_backend_native_dtype(dt_device dev, dt_dtype t);
/* The float compute dtype used when the user names none: bf16 where native, else f32. */
dt_dtype dt_backend_default_dtype(dt_device dev);
/* Whether a backend for dev is built into this ditrt, and whether it is also usable here. */
int dt_backend_built(dt_device dev);
int dt_backend_available(dt_device dev);
/* "cpu", "cuda" ("?" for anything else); known whether or not the device is built in. */
const char *dt_backend_device_name(dt_device dev);
/* Parses a device spelling: "cpu", "cuda" (index 0) or "cuda:N" (N a decimal index); anything
 * else is a one-line DT_EINVAL error. index may be NULL. Says nothing about whether the device is
 * built in (dt_backend_create does). */
dt_status dt_backend_parse_device(const char *s, dt_device *dev, int *index, dt_err *err);
/* The backends built in and, per backend, the devices found (or why none is usable), one per
 * line, for `ditrt info`; the devices not built in are named too. */
void dt_backend_list(char *buf, size_t n);
/* Whether the run-time libraries of dev's backend load and accept the descriptors its ops build
 * (CUDA: cuBLASLt and cuDNN by dlopen, descriptor creation only: no GPU needed): 1 yes (or
 * nothing to check), 0 a library is not found or dev is not built in, -1 a library lacks a
 * symbol or refuses a descriptor; why[n] says which. */
int dt_backend_libs_check(dt_device dev, char *why, size_t n);
static inline void dt_backend_destroy(dt_backend *be) { if (be) be->ops->destroy(be); }
/* An arena allocator over be's buffer_alloc/buffer_free, so that `dt_arena_init_with(&a, &alloc)`
 * puts the arena's memory (and the tensors it hands out) on be's device. be must outlive the arena. */
dt_allocator dt_backend_allocator(dt_backend *be);
/* Host <-> device for flat f32 buffers: n host floats written into device memory dst; n floats
 * of device memory src read into host; n host floats uploaded into a new buffer *out (free
 * with ops->buffer_free). */
dt_status dt_backend_write(dt_backend *be, float *dst, const float *host, size_t n, dt_err *err);
dt_status dt_backend_read(dt_backend *be, const float *src, float *host, size_t n, dt_err *err);
dt_status dt_backend_upload(dt_backend *be, const float *host, size_t n, float **out, dt_err *err);
/* Host memory for buffers transferred every step: ops->host_alloc where the backend has one (CUDA:
 * pinned), else 64-byte aligned malloc; *ptr NULL and DT_ENOMEM when there is no room. Free with
 * dt_backend_host_free on the same backend (NULL is a no-op). */
dt_status dt_backend_host_alloc(dt_backend *be, size_t bytes, void **ptr, dt_err *err);
void dt_backend_host_free(dt_backend *be, void *ptr);

/* Host-side embeddings computed once per shape or step (tiny; shared by every backend). */
/* diffusers get_timestep_embedding: t[n] -> out[n, dim]; flip puts cos first. */
void dt_timestep_embedding(const float *t, int n, int dim, int flip_sin_to_cos,
                           float downscale_freq_shift, float *out);
/* diffusers get_2d_sincos_pos_embed for a gh x gw grid: out[gh*gw, dim]. */
void dt_sincos_pos_embed_2d(int dim, int gh, int gw, int base_size, float interpolation_scale, float *out);

#endif
