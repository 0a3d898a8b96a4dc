/* Quantized weights for int8 linear layers (ViDiT-Q / MixDQ style) and the host-side math
 * that prepares them, shared by every backend and by calibration.
 *
 * A layer computes y = x·Wᵀ + b as y ≈ Q(x')·Q(W')ᵀ with x' = (x ⊙ s)·D·H and
 * W' = W·diag(1/s)·D·H, where s is an optional channel-balancing vector, D = diag(±1) random
 * signs and H a block-diagonal normalized Hadamard (blocks of `rot_block`, a power of two
 * dividing `in`; 1152 = 9·128, 4608 = 9·512), so x'·W'ᵀ = x·Wᵀ exactly before rounding.
 * Weights: symmetric per output channel, 8-bit ([-127,127]) or 4-bit ([-7,7], two per byte).
 * Group-wise 4-bit (group G along K): each group g of row n has its own step
 * wscale[n]·gscale[n,g] with gscale an integer in [1, DT_QGROUP_RMAX] (group scales quantized
 * against the channel's base scale, "double quantization"), so the 4-bit code times gscale is
 * an int8 in [-126, 126]: the expansion to int8 applies the group scales and the int8 GEMM and
 * its per-channel epilogue run unchanged, with exact integer results. A group whose range is
 * below 1/18 of the row's widest group gets the step base = widest step / 18.
 * Activations: symmetric per row (token), 8-bit, scale = max|x'_row| / 127, computed per call. */
#ifndef DT_QUANT_H
#define DT_QUANT_H
#include <stdint.h>
#include "runtime/core/error.h"

typedef struct dt_qweights {
    int in, out;
    int wbits;      /* 8: q is int8 [out, in]; 4: q is [out, in/2] bytes, column 2j in the low nibble */
    int8_t *q;
    float *wscale;  /* [out]: W'[n,:] ≈ q[n,:]·wscale[n] */
    float *smooth;  /* [in] or NULL: x is multiplied by it online */
    int8_t *signs;  /* [in] of ±1, or NULL: no rotation */
    int rot_block;  /* Hadamard block size when signs != NULL */
    int group;      /* 4-bit only: group size along `in` (even, divides in), 0: per channel */
    uint8_t *gscale; /* [out, in/group] integer group multipliers in [1, DT_QGROUP_RMAX] when group > 0 */
} dt_qweights;

#define DT_QGROUP_RMAX 18 /* 7 * 18 = 126: a 4-bit code times its group multiplier stays int8 */

/* Bytes of q for a layer. */
static inline size_t dt_qweights_qbytes(int in, int out, int wbits)
{
    return wbits == 4 ? (size_t)out * (size_t)(in / 2) : (size_t)out * (size_t)in;
}

/* Largest power of two dividing n (the Hadamard block used for n channels). */
int dt_hadamard_block(int n);
/* In-place unnormalized Walsh-Hadamard transform of each block of `block` values of x[n]. */
void dt_fwht_blocks(float *x, int n, int block);
/* ±1 signs from a seed (splitmix64), deterministic across machines. */
void dt_rotation_signs(uint64_t seed, int n, int8_t *signs);
/* Channel balancing s_j = max_n|W[n,j]|^alpha / amax_j^(1-alpha) (1 where either is 0),
 * clamped to [1e-4, 1e4]; w is torch layout [out, in]. */
void dt_smooth_factors(const float *w, int in, int out, const float *amax, float alpha, float *s);

/* Quantizes W [out, in] (torch layout) into a freshly allocated *qw: balancing by `smooth`
 * (may be NULL, copied), rotation when rot_seed != 0, then per-channel symmetric rounding
 * (group > 0: group-wise 4-bit steps as above). */
dt_status dt_qweights_make(const float *w, int in, int out, int wbits, int group, const float *smooth,
                           uint64_t rot_seed, dt_qweights *qw, dt_err *err);
/* Checks a layer's group size and multipliers (for weights read from disk); 0 or fails. */
dt_status dt_qweights_check_groups(const dt_qweights *qw, dt_err *err);
/* The float weights W' the quantized ones approximate after dequantization (q·wscale), [out, in]. */
void dt_qweights_dequant(const dt_qweights *qw, float *w);
void dt_qweights_free(dt_qweights *qw);

#endif
