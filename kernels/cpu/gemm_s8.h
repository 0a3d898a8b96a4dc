/* Exact int8 x int8 -> int32 GEMM for CPUs without VNNI: C[M,N] (+)= A[M,K] · Wᵀ, with W
 * given as [N, K] rows (one row per output channel, as linear layers store it).
 *
 * Why not oneDNN's int8 GEMM: without VNNI it multiplies with vpmaddubsw, whose int16 pair
 * sums saturate, so it halves the weights (inexact). Here both operands are widened to int16
 * and multiplied with vpmaddwd (int16·int16 pair sums into int32: exact for every int8 input,
 * -128 included), so the result is the exact integer sum as long as it fits int32
 * (|sum| <= K·16384: K up to 131071 always).
 *
 * Weights are packed once (gemm_s8_pack_b) into panels of 16 output channels, int8 resident
 * (1 byte per weight plus padding to 16 channels and an even K) and widened while the
 * micro-kernel loads them; activations are widened and packed per call into per-thread
 * scratch. One blocking, two micro-kernels: AVX2 (chosen at run time by cpuid) and plain C
 * (the fallback; both read the same packed layouts, so packed weights do not depend on the
 * CPU). Tests hold both to gemm_s8_ref, bit for bit.
 *
 * Speed (`make bench-gemm-s8`): on Zen 2 (the AVX2-only EPYC this was written on) vpmaddwd
 * and vpmaddubsw issue on one pipe only, 16 exact int8 multiply-adds a cycle: exactly the rate
 * of two 8-wide FMAs. This kernel runs at 48.6-50.9 GMAC per CPU-second there, oneDNN's f32
 * matmul at 43.7-49.2: 1.00x-1.12x the f32 speed (PixArt linears, SD im2col convolutions), no
 * more. Its gains are exactness and memory (1-byte weights instead of f32 codes); no AVX2
 * int8 scheme is much faster on that core (signed vpmaddubsw + widening measured ~15 MAC/c). */
#ifndef DT_CPU_GEMM_S8_H
#define DT_CPU_GEMM_S8_H
#include <stddef.h>
#include <stdint.h>

typedef enum { GEMM_S8_ISA_AUTO = 0, GEMM_S8_ISA_PLAIN, GEMM_S8_ISA_AVX2 } gemm_s8_isa;

/* Whether this CPU runs the AVX2 micro-kernel (cpuid: AVX2). */
int gemm_s8_have_avx2(void);

/* Bytes of the packed form of an [N, K] weight matrix. */
size_t gemm_s8_packed_bytes(int64_t N, int64_t K);

/* Packs W[n·ldw + k] (n < N, k < K) into `packed` (gemm_s8_packed_bytes(N, K) bytes, any
 * alignment). Pure layout: the same bytes on every CPU. */
void gemm_s8_pack_b(const int8_t *W, int64_t ldw, int64_t N, int64_t K, int8_t *packed);

/* Bytes of scratch gemm_s8_run needs on `threads` threads (any shape). */
size_t gemm_s8_scratch_bytes(int threads);

/* C[m·ldc + n] = Σ_k A[m·lda + k]·W[n, k] for m < M, n < N (accumulate != 0: C += that
 * sum instead). Bpacked from gemm_s8_pack_b(W, ..., N, K, ...). AUTO takes AVX2 where
 * gemm_s8_have_avx2(), else plain; asking for AVX2 on a CPU without it runs plain.
 * `threads` OpenMP threads; scratch: gemm_s8_scratch_bytes(threads) bytes, 64-byte aligned.
 * Results do not depend on the thread count or the ISA. M, N or K may be 0. */
void gemm_s8_run(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *Bpacked,
                 int32_t *C, int64_t ldc, int accumulate, gemm_s8_isa isa, int threads, void *scratch);

/* The plain reference: the triple loop on unpacked W (what the tests compare with). */
void gemm_s8_ref(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *W, int64_t ldw,
                 int32_t *C, int64_t ldc);

#endif
