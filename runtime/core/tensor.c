#include "tensor.h"
#include <stdio.h>
#include <string.h>

static const struct { const char *name, *alias; size_t size; } dtype_info[DT_DTYPE_COUNT] = {
    [DT_F32] = {"f32", "float32", 4}, [DT_F16] = {"f16", "float16", 2},
    [DT_BF16] = {"bf16", "bfloat16", 2}, [DT_I8] = {"i8", "int8", 1},
    [DT_U8] = {"u8", "uint8", 1}, [DT_I32] = {"i32", "int32", 4},
};

size_t dt_dtype_size(dt_dtype t) { return (unsigned)t < DT_DTYPE_COUNT ? dtype_info[t].size : 0; }
const char *dt_dtype_name(dt_dtype t) { return (unsigned)t < DT_DTYPE_COUNT ? dtype_info[t].name : "?"; }

int dt_dtype_parse(const char *s, dt_dtype *out)
{
    for (int i = 0; i < DT_DTYPE_COUNT; i++)
        if (!strcmp(s, dtype_info[i].name) || !strcmp(s, dtype_info[i].alias)) {
            *out = (dt_dtype)i;
            return 1;
        }
    return 0;
}

dt_tensor dt_tensor_view(void *data, dt_dtype dtype, int ndim, const int64_t *shape)
{
    dt_tensor t = {.dtype = dtype, .device = DT_DEV_CPU, .ndim = ndim, .data = data};
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        t.shape[i] = shape[i];
        t.strides[i] = s;
        s *= shape[i];
    }
    return t;
}

int64_t dt_tensor_numel(const dt_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t dt_tensor_nbytes(const dt_tensor *t) { return (size_t)dt_tensor_numel(t) * dt_dtype_size(t->dtype); }

int dt_tensor_is_contiguous(const dt_tensor *t)
{
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->strides[i] != s) return 0;
        s *= t->shape[i];
    }
    return 1;
}

const char *dt_shape_str(int ndim, const int64_t *shape, char *buf, size_t n)
{
    size_t o = 0;
    o += snprintf(buf + o, n - o, "[");
    for (int i = 0; i < ndim && o < n; i++)
        o += snprintf(buf + o, n - o, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (o < n) snprintf(buf + o, n - o, "]");
    return buf;
}

float dt_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t dt_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

float dt_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0) {
        if (man == 0) u = sign;
        else { /* subnormal: normalize */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) { man <<= 1; exp--; }
            u = sign | (exp << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) u = sign | 0x7f800000u | (man << 13);
    else u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t dt_f32_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000;
    int32_t exp = (int32_t)((u >> 23) & 0xff) - 127 + 15;
    uint32_t man = u & 0x7fffff;
    if (((u >> 23) & 0xff) == 0xff) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
    if (exp >= 31) return (uint16_t)(sign | 0x7c00);
    if (exp <= 0) {
        if (exp < -10) return (uint16_t)sign;
        man |= 0x800000;
        uint32_t shift = (uint32_t)(14 - exp);
        uint32_t half = 1u << (shift - 1), rest = man & ((1u << shift) - 1);
        uint32_t r = man >> shift;
        if (rest > half || (rest == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ((uint32_t)exp << 10) | (man >> 13), rest = man & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (r & 1))) r++;
    return (uint16_t)(sign | r);
}

/* Element loads through memcpy: a safetensors data offset need not be aligned to the dtype
 * (the format does not require it); the compiler makes these plain loads. */
static inline uint16_t load_u16(const unsigned char *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline int32_t load_i32(const unsigned char *p) { int32_t v; memcpy(&v, p, 4); return v; }

void dt_convert_to_f32(const void *src, dt_dtype t, float *dst, size_t n)
{
    const unsigned char *b = src;
    switch (t) {
    case DT_F32: memcpy(dst, src, n * 4); break;
    case DT_BF16: for (size_t i = 0; i < n; i++) dst[i] = dt_bf16_to_f32(load_u16(b + 2 * i)); break;
    case DT_F16: for (size_t i = 0; i < n; i++) dst[i] = dt_f16_to_f32(load_u16(b + 2 * i)); break;
    case DT_I8: for (size_t i = 0; i < n; i++) dst[i] = ((const int8_t *)src)[i]; break;
    case DT_U8: for (size_t i = 0; i < n; i++) dst[i] = b[i]; break;
    case DT_I32: for (size_t i = 0; i < n; i++) dst[i] = (float)load_i32(b + 4 * i); break;
    default: break;
    }
}
