/* Fused (flash-style) CPU attention: a block of query rows meets the keys and values in tiles
 * whose scores stay in cache; an online softmax (a running max and sum per row, the output
 * rescaled when the max grows) folds each tile into the output, so no [Nq, Nk] score block
 * exists in memory. Full attention with dt_attn_bias's key and per-head biases, and
 * DiTFastAttn's banded attention (|i − j| <= window, work ∝ N·(2w+1)).
 *
 * Arithmetic is f32 throughout, whatever the backend's compute dtype (there is no bf16
 * dot-product path: it needs AVX512-BF16, which the development machine lacks, so it could
 * not be tested). One tiling, two sets of inner kernels: AVX2+FMA intrinsics, chosen at run
 * time by cpuid, and plain C (the fallback, and what the tests hold the AVX2 one to besides
 * the double-precision references of ref.h). Tensors follow the backend's `attention` /
 * `window_attention` contract (f32 [B, N, heads·d] views, unit element stride); the caller
 * has checked the shapes. */
#ifndef DT_CPU_ATTENTION_FUSED_H
#define DT_CPU_ATTENTION_FUSED_H
#include "kernels/backend.h"

typedef enum { FATTN_ISA_AUTO = 0, FATTN_ISA_PLAIN, FATTN_ISA_AVX2 } fattn_isa;

/* Whether this CPU runs the AVX2 path (cpuid: AVX2 and FMA). */
int fattn_have_avx2(void);

/* Bytes of scratch fattn_run needs for these shapes on `threads` threads. */
size_t fattn_scratch_bytes(int64_t B, int64_t nq, int64_t nk, int heads, int64_t d, int threads);

/* out = softmax(q·kᵀ·scale + bias)·v per head. window < 0: full attention, bias may be NULL;
 * window >= 0: the band |i − j| <= window (nq == nk, bias NULL). AUTO takes AVX2 where
 * fattn_have_avx2(), else plain; asking for AVX2 on a CPU without it runs plain. scratch:
 * fattn_scratch_bytes(..., threads) bytes, 64-byte aligned; `threads` OpenMP threads.
 * qk8: QKᵀ in int8, SageAttention-style: K smoothed by its mean over the keys (per channel and
 * head; softmax-invariant), K int8 per panel of 24 keys and Q int8 per block of 64 rows, each at
 * amax/127, exact int32 dot products; softmax and P·V stay f32. An approximation (about 1e-2
 * relative on random data, see tests/test_attention_fused.c), off unless asked for. */
void fattn_run(const dt_tensor *q, const dt_tensor *k, const dt_tensor *v, const dt_attn_bias *bias, int heads,
               float scale, int64_t window, fattn_isa isa, int qk8, int threads, void *scratch, dt_tensor *out);

#endif
