/* The float types of the CUDA backend in one place: f32, bf16 and f16 storage, their 16-bit
 * conversions, and what each maps to in cuBLASLt, cuDNN and the fused-attention graph. The ops
 * switch on a type only through these functions (no per-op bf16/f16 branches), so f16 is bf16's
 * sibling everywhere. __host__ __device__ and C-compatible: tests/test_cuda_host.c checks the
 * conversions against the CPU's (runtime/core/tensor.c) and the table against dt_dtype;
 * cuda_internal.h checks the library codes against the CUDA headers at compile time. */
#ifndef DT_CUDA_DTYPE_MATH_H
#define DT_CUDA_DTYPE_MATH_H
#include "kernels/cuda/elem_math.h"

/* Float types, numbered as dt_dtype (runtime/core/tensor.h; test_cuda_host.c checks it). */
enum { DTM_F32 = 0, DTM_F16 = 1, DTM_BF16 = 2 };

/* Library codes, as cudaDataType_t (library_types.h) and cudnnDataType_t (cudnn_graph.h)
 * number them (static_asserts in cuda_internal.h). */
enum { DTM_CUDA_R_32F = 0, DTM_CUDA_R_16F = 2, DTM_CUDA_R_16BF = 14 };
enum { DTM_CUDNN_FLOAT = 0, DTM_CUDNN_HALF = 2, DTM_CUDNN_BFLOAT16 = 9 };

/* f32 -> f16 bits, round to nearest even, overflow to ±inf, gradual underflow: the CPU's
 * dt_f32_to_f16 and __float2half_rn bit for bit on every non-NaN input (NaN -> a quiet NaN). */
DTM_HD uint16_t dtm_f16_round(float f)
{
    uint32_t u = dtm_f2u(f);
    uint32_t sign = (u >> 16) & 0x8000u, man = u & 0x7fffffu;
    int32_t e8 = (int32_t)((u >> 23) & 0xffu), exp = e8 - 127 + 15;
    if (e8 == 0xff) return (uint16_t)(sign | 0x7c00u | (man ? 0x200u : 0u));
    if (exp >= 31) return (uint16_t)(sign | 0x7c00u);
    if (exp <= 0) { /* subnormal f16 (or zero) */
        if (exp < -10) return (uint16_t)sign;
        man |= 0x800000u;
        uint32_t shift = (uint32_t)(14 - exp), half = 1u << (shift - 1), rest = man & ((1u << shift) - 1);
        uint32_t r = man >> shift;
        if (rest > half || (rest == half && (r & 1u))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ((uint32_t)exp << 10) | (man >> 13), rest = man & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (r & 1u))) r++; /* a carry into the exponent is right */
    return (uint16_t)(sign | r);
}

/* f16 bits -> f32 (exact). */
DTM_HD float dtm_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
    if (exp == 0) {
        if (man == 0) u = sign;
        else { /* subnormal: normalize */
            exp = 127 - 15 + 1;
            while (!(man & 0x400u)) {
                man <<= 1;
                exp--;
            }
            u = sign | (exp << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 31) u = sign | 0x7f800000u | (man << 13);
    else u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    return dtm_u2f(u);
}

/* f32 rounded to the nearest f16, kept as f32. */
DTM_HD float dtm_round_f16(float f) { return dtm_f16_to_f32(dtm_f16_round(f)); }

/* 16-bit storage of type t (DTM_BF16 or DTM_F16). */
DTM_HD uint16_t dtm_to16(int t, float f) { return t == DTM_F16 ? dtm_f16_round(f) : dtm_bf16_round(f); }
DTM_HD float dtm_from16(int t, uint16_t h) { return t == DTM_F16 ? dtm_f16_to_f32(h) : dtm_bf16_to_f32(h); }

/* f32 rounded to type t, kept as f32: GEMM inputs of the "t inputs through f32" paths (the
 * products of two bf16 or two f16 values are exact in f32). f32: unchanged. */
DTM_HD float dtm_round_to(int t, float f) { return t == DTM_F32 ? f : dtm_from16(t, dtm_to16(t, f)); }

/* Element i of a float tensor of type t, as f32; and the store, rounding to t. */
DTM_HD float dtm_load(int t, const void *p, int64_t i)
{
    return t == DTM_F32 ? ((const float *)p)[i] : dtm_from16(t, ((const uint16_t *)p)[i]);
}
DTM_HD void dtm_store(int t, void *p, int64_t i, float v)
{
    if (t == DTM_F32) ((float *)p)[i] = v;
    else ((uint16_t *)p)[i] = dtm_to16(t, v);
}

/* What a float type is to the libraries; ok 0 for any other dtype (int8, u8, i32). */
typedef struct {
    int ok;
    int bytes;      /* storage size */
    int cuda;       /* cudaDataType_t of GEMM operands */
    int cudnn;      /* cudnnDataType_t of SDPA graph tensors */
    int sdpa_io;    /* cu_sdpa_shape.io: 1 bf16, 2 f16; 0: f32 (cuDNN's SDPA runs 16-bit only) */
    const char *name;
} dtm_float_type;

DTM_HD dtm_float_type dtm_float_type_of(int dt)
{
    dtm_float_type r = {0, 0, 0, 0, 0, "?"};
    if (dt == DTM_F32) r.ok = 1, r.bytes = 4, r.cuda = DTM_CUDA_R_32F, r.cudnn = DTM_CUDNN_FLOAT, r.name = "f32";
    if (dt == DTM_BF16)
        r.ok = 1, r.bytes = 2, r.cuda = DTM_CUDA_R_16BF, r.cudnn = DTM_CUDNN_BFLOAT16, r.sdpa_io = 1, r.name = "bf16";
    if (dt == DTM_F16) r.ok = 1, r.bytes = 2, r.cuda = DTM_CUDA_R_16F, r.cudnn = DTM_CUDNN_HALF, r.sdpa_io = 2, r.name = "f16";
    return r;
}

/* The type of a cu_sdpa_shape.io code (1 bf16, 2 f16); -1 for anything else. */
DTM_HD int dtm_sdpa_io_type(int io) { return io == 1 ? DTM_BF16 : io == 2 ? DTM_F16 : -1; }

#endif
