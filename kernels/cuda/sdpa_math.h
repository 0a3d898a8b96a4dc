/* cuDNN fused attention (SDPA): the parts that need no library and no device, so
 * tests/test_cuda_host.c checks them on the CPU.
 *  - The route table: which attention path a call takes (cuDNN's fused graph or the two GEMMs
 *    and the row softmax of cuda_attention.cu), and why, one reason per fallback.
 *  - The 4-D views cuDNN's graph takes of our [B, N, H·d] activations: Q, V and O as
 *    [B, H, S, d] and K transposed as [B, H, d, S] over the same memory (no copy), given the
 *    row stride rs and batch stride bs of the packed 16-bit copies.
 *  - The additive score bias: the caption key mask [B, Nk] and T5's per-head position bias
 *    [H, Nq, Nk] folded into one [B or 1, H or 1, Nq, Nk] tensor, element by element (the
 *    softmax adds both after the scale, as dtm_attn_logit does).
 *  - The plan-cache key of a call (one graph and execution plan per key). */
#ifndef DT_CUDA_SDPA_MATH_H
#define DT_CUDA_SDPA_MATH_H
#include "kernels/cuda/elem_math.h"

/* Route of one attention call. FUSED runs cuDNN's graph; every other value is a fallback to the
 * two-GEMM path, named by its reason. */
enum {
    DTM_SDPA_FUSED = 0,
    DTM_SDPA_GEMM_ASKED,    /* attn_kernel gemm (or DITRT_ATTN=gemm): the two GEMMs by request */
    DTM_SDPA_GEMM_F32,      /* f32 compute: cuDNN's SDPA runs bf16/f16 inputs only */
    DTM_SDPA_GEMM_HEADDIM,  /* head dim not a multiple of 8 or above 256 (cuDNN's limits) */
    DTM_SDPA_GEMM_NOPLAN    /* this shape's graph did not finalize or had no engine (cached) */
};

#define DTM_SDPA_MAX_D 256

/* io16: compute is bf16 or f16; gemm_asked: the backend was told to use the two GEMMs;
 * plan_failed: this shape failed to plan before. */
DTM_HD int dtm_sdpa_route(int gemm_asked, int io16, int64_t d, int plan_failed)
{
    if (gemm_asked) return DTM_SDPA_GEMM_ASKED;
    if (!io16) return DTM_SDPA_GEMM_F32;
    if (d <= 0 || d % 8 || d > DTM_SDPA_MAX_D) return DTM_SDPA_GEMM_HEADDIM;
    if (plan_failed) return DTM_SDPA_GEMM_NOPLAN;
    return DTM_SDPA_FUSED;
}

/* Whether a backend runs attention through the two GEMMs only: attn_kernel numbered as
 * dt_attn_kernel (0 auto, 1 gemm, 2 fused, 3 int8); auto follows env (DITRT_ATTN: "gemm";
 * "fused", "int8", unset or empty: cuDNN first, int8 QKᵀ having no CUDA kernel). 1: GEMMs only,
 * 0: cuDNN first, -1: env is none of these (or attn_kernel unknown). */
static inline int dtm_sdpa_attn_gemm(int attn_kernel, const char *env)
{
    if (attn_kernel == 1) return 1;
    if (attn_kernel == 2 || attn_kernel == 3) return 0;
    if (attn_kernel != 0) return -1;
    if (!env || !*env) return 0;
    if (!strcmp(env, "gemm")) return 1;
    return !strcmp(env, "fused") || !strcmp(env, "int8") ? 0 : -1;
}

static inline const char *dtm_sdpa_route_name(int r)
{
    switch (r) {
    case DTM_SDPA_FUSED: return "cuDNN fused attention";
    case DTM_SDPA_GEMM_ASKED: return "two GEMMs (asked for)";
    case DTM_SDPA_GEMM_F32: return "two GEMMs (f32 compute: cuDNN SDPA runs bf16/f16 only)";
    case DTM_SDPA_GEMM_HEADDIM: return "two GEMMs (head dim not a multiple of 8 or above 256)";
    case DTM_SDPA_GEMM_NOPLAN: return "two GEMMs (cuDNN found no engine for this shape)";
    default: return "?";
    }
}

/* A 4-D tensor view: dims and strides in elements, outermost first. */
typedef struct {
    int64_t dim[4], stride[4];
} dtm_t4;

/* Q, V, O: [B, H, S, d] over rows of stride rs (head h at column h·d), samples bs apart. */
DTM_HD dtm_t4 dtm_sdpa_bhsd(int64_t B, int64_t H, int64_t S, int64_t d, int64_t rs, int64_t bs)
{
    dtm_t4 t = {{B, H, S, d}, {bs, d, rs, 1}};
    return t;
}

/* K transposed for Q·Kᵀ: [B, H, d, S] over the same rows (element (b, h, c, s) is K's
 * (b, s, h·d + c)). */
DTM_HD dtm_t4 dtm_sdpa_bhds(int64_t B, int64_t H, int64_t S, int64_t d, int64_t rs, int64_t bs)
{
    dtm_t4 t = {{B, H, d, S}, {bs, d, 1, rs}};
    return t;
}

/* A packed (row-major) tensor of the given dims. */
DTM_HD dtm_t4 dtm_sdpa_packed(int64_t a, int64_t b, int64_t c, int64_t e)
{
    dtm_t4 t = {{a, b, c, e}, {b * c * e, c * e, e, 1}};
    return t;
}

DTM_HD int64_t dtm_t4_offset(const dtm_t4 *t, int64_t i0, int64_t i1, int64_t i2, int64_t i3)
{
    return i0 * t->stride[0] + i1 * t->stride[1] + i2 * t->stride[2] + i3 * t->stride[3];
}

DTM_HD int64_t dtm_t4_numel(const dtm_t4 *t) { return t->dim[0] * t->dim[1] * t->dim[2] * t->dim[3]; }

/* The folded bias tensor: [B if a key mask else 1, H if a head bias else 1, Nq, Nk], packed.
 * The query dim is always materialized (cuDNN's fused engines take a bias broadcast over batch
 * and heads; a [.., 1, Nk] one is not among the documented shapes). */
DTM_HD dtm_t4 dtm_sdpa_bias_shape(int64_t B, int64_t H, int64_t Nq, int64_t Nk, int has_key, int has_head)
{
    return dtm_sdpa_packed(has_key ? B : 1, has_head ? H : 1, Nq, Nk);
}

/* Element o of the folded bias (shape from dtm_sdpa_bias_shape): key[b, j] + head[h, i, j],
 * either absent (NULL). */
DTM_HD float dtm_sdpa_bias_at(const dtm_t4 *s, int64_t o, const float *key, const float *head)
{
    int64_t Nk = s->dim[3], Nq = s->dim[2];
    int64_t j = o % Nk, i = (o / Nk) % Nq, h = (o / (Nk * Nq)) % s->dim[1], b = o / (Nk * Nq * s->dim[1]);
    float v = 0.0f;
    if (key) v += key[b * Nk + j];
    if (head) v += head[(h * Nq + i) * Nk + j];
    return v;
}

/* The plan-cache key: everything the graph's descriptors depend on. The 16-bit copies are
 * packed, so their strides follow from the shape. io: 1 bf16, 2 f16. */
#define DTM_SDPA_KEY_LEN 8
DTM_HD void dtm_sdpa_key(int64_t key[DTM_SDPA_KEY_LEN], int io, int64_t B, int64_t H, int64_t Nq, int64_t Nk,
                         int64_t d, int has_key, int has_head)
{
    key[0] = io, key[1] = B, key[2] = H, key[3] = Nq, key[4] = Nk, key[5] = d, key[6] = has_key, key[7] = has_head;
}

#endif
