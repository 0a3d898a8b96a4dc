/* Tensors are non-owning views: dtype, device, up to 5 dims, element strides and a
 * data pointer. Memory belongs to an arena (activations) or a weight store. */
#ifndef DT_TENSOR_H
#define DT_TENSOR_H
#include <stddef.h>
#include <stdint.h>
#include "error.h"

typedef enum { DT_F32 = 0, DT_F16, DT_BF16, DT_I8, DT_U8, DT_I32, DT_DTYPE_COUNT } dt_dtype;
typedef enum { DT_DEV_CPU = 0, DT_DEV_CUDA } dt_device;

#define DT_MAX_DIMS 5

typedef struct {
    dt_dtype dtype;
    dt_device device;
    int ndim;
    int64_t shape[DT_MAX_DIMS];
    int64_t strides[DT_MAX_DIMS]; /* in elements */
    void *data;
} dt_tensor;

size_t dt_dtype_size(dt_dtype t);
const char *dt_dtype_name(dt_dtype t);
/* Parses "f32"/"float32", "bf16"/"bfloat16", "f16"/"float16", "i8", "u8", "i32". */
int dt_dtype_parse(const char *s, dt_dtype *out);

/* A contiguous view over `data` (shape given outermost first). */
dt_tensor dt_tensor_view(void *data, dt_dtype dtype, int ndim, const int64_t *shape);
int64_t dt_tensor_numel(const dt_tensor *t);
size_t dt_tensor_nbytes(const dt_tensor *t);
int dt_tensor_is_contiguous(const dt_tensor *t);
/* Formats a shape as "[2, 4, 8]" into buf. */
const char *dt_shape_str(int ndim, const int64_t *shape, char *buf, size_t n);

/* bf16/f16 <-> f32 conversions (round to nearest even). */
float dt_bf16_to_f32(uint16_t h);
uint16_t dt_f32_to_bf16(float f);
float dt_f16_to_f32(uint16_t h);
uint16_t dt_f32_to_f16(float f);
/* Converts n elements of `src` (any float dtype) to f32. */
void dt_convert_to_f32(const void *src, dt_dtype t, float *dst, size_t n);

#endif
