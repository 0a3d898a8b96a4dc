/* Reproducible noise: torch.randn(shape, generator=torch.Generator().manual_seed(seed)) on the
 * CPU for float32, as torch 1.13 computes it, from a generator object (no global state).
 *
 * The engine is MT19937 seeded with the low 32 bits of the seed (CPUGeneratorImpl). A draw of
 * n >= 16 floats fills n uniforms u = (x & 0xffffff) / 2^24, runs Box–Muller over blocks of 16
 * (elements j and j+8 of a block form a pair), and, when 16 does not divide n, refills the last
 * 16 elements with fresh uniforms and redoes that block. Below 16 elements each value comes from
 * the double-precision path (53-bit uniforms, one Box–Muller pair per two values, the second
 * value cached in the generator and used by the next small draw), as torch does.
 *
 * torch's block math depends on the CPU kernel it dispatches to: its AVX2 and AVX-512 kernels
 * (the default on x86 machines with AVX2) use a vectorized Cephes log/sincos, the portable
 * kernel (ATEN_CPU_CAPABILITY=default, non-x86) calls logf/cosf/sinf. Both are reproduced bit
 * for bit; DT_RNG_VECTOR is the default. Successive draws from one generator match torch making
 * the same draws from one torch.Generator. */
#ifndef DT_RNG_H
#define DT_RNG_H
#include <stddef.h>
#include <stdint.h>

typedef enum {
    DT_RNG_VECTOR = 0, /* torch's AVX2/AVX-512 kernels (Cephes log256_ps / sincos256_ps with FMA) */
    DT_RNG_SCALAR      /* torch's portable kernel (glibc logf, cosf, sinf) */
} dt_rng_variant;

/* Plain data so it can live on the stack; fields are private to rng.c. */
typedef struct {
    uint32_t mt[624];
    int left, next;
    int has_cached_normal; /* the second value of the last double Box–Muller pair */
    double cached_normal;
    dt_rng_variant variant;
} dt_rng;

/* torch.Generator().manual_seed(seed): any 64-bit seed, only its low 32 bits matter. */
void dt_rng_init(dt_rng *g, uint64_t seed, dt_rng_variant variant);
/* One raw MT19937 output (CPUGeneratorImpl::random()). */
uint32_t dt_rng_u32(dt_rng *g);
/* Fills out[0..n) as torch.randn(n) would (any shape with n elements: the fill is flat). */
void dt_rng_randn(dt_rng *g, float *out, size_t n);
/* Parses "vector"/"avx2" or "scalar"/"default"; returns 0 on an unknown name. */
int dt_rng_variant_parse(const char *s, dt_rng_variant *out);

#endif
