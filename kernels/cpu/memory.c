/* The CPU backend's memory: device memory is host memory (64-byte aligned heap blocks), so
 * tensor_set/tensor_get/copy are checked memcpys. */
#include "cpu.h"
#include <stdlib.h>

#define COPY_CHUNK ((size_t)1 << 20) /* bytes per thread's piece of a large copy */

static dt_status on_cpu(const dt_tensor *t, const char *op, const char *what, dt_err *err)
{
    if (t->device != DT_DEV_CPU)
        return dt_fail(err, DT_EINVAL, "%s: %s is on device %s, the backend on cpu", op, what,
                       dt_backend_device_name(t->device));
    return DT_OK;
}

/* memcpy of non-overlapping blocks, in pieces across threads when large (bit-exact either way). */
static void copy_bytes(void *dst, const void *src, size_t n)
{
    if (n < 4 * COPY_CHUNK) {
        memcpy(dst, src, n);
        return;
    }
    int64_t pieces = (int64_t)((n + COPY_CHUNK - 1) / COPY_CHUNK);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < pieces; i++) {
        size_t o = (size_t)i * COPY_CHUNK, len = n - o < COPY_CHUNK ? n - o : COPY_CHUNK;
        memcpy((char *)dst + o, (const char *)src + o, len);
    }
}

dt_status cpu_buffer_alloc(dt_backend *be, size_t bytes, void **ptr, dt_err *err)
{
    (void)be;
    size_t n = bytes ? (bytes + 63) / 64 * 64 : 64;
    if (n < bytes) return dt_fail(err, DT_ENOMEM, "out of memory: buffer of %zu bytes", bytes);
    void *p = aligned_alloc(64, n);
    if (!p) return dt_fail(err, DT_ENOMEM, "out of memory: buffer of %zu bytes", bytes);
    *ptr = p;
    return DT_OK;
}

void cpu_buffer_free(dt_backend *be, void *ptr)
{
    (void)be;
    free(ptr);
}

dt_status cpu_tensor_set(dt_backend *be, dt_tensor *dst, const void *host, size_t bytes, dt_err *err)
{
    (void)be;
    DT_TRY(on_cpu(dst, "tensor_set", "the destination", err));
    if (!dt_tensor_is_contiguous(dst)) return dt_fail(err, DT_EINVAL, "tensor_set: the destination must be contiguous");
    if (bytes != dt_tensor_nbytes(dst))
        return dt_fail(err, DT_EINVAL, "tensor_set: %zu bytes for a tensor of %zu bytes", bytes, dt_tensor_nbytes(dst));
    if (bytes && dst->data != host) copy_bytes(dst->data, host, bytes);
    return DT_OK;
}

dt_status cpu_tensor_get(dt_backend *be, const dt_tensor *src, void *host, size_t bytes, dt_err *err)
{
    (void)be;
    DT_TRY(on_cpu(src, "tensor_get", "the source", err));
    if (!dt_tensor_is_contiguous(src)) return dt_fail(err, DT_EINVAL, "tensor_get: the source must be contiguous");
    if (bytes != dt_tensor_nbytes(src))
        return dt_fail(err, DT_EINVAL, "tensor_get: %zu bytes for a tensor of %zu bytes", bytes, dt_tensor_nbytes(src));
    if (bytes && src->data != host) copy_bytes(host, src->data, bytes);
    return DT_OK;
}

dt_status cpu_copy(dt_backend *be, const dt_tensor *src, dt_tensor *dst, dt_err *err)
{
    (void)be;
    DT_TRY(on_cpu(src, "copy", "the source", err));
    DT_TRY(on_cpu(dst, "copy", "the destination", err));
    if (src->dtype != dst->dtype || (src->dtype != DT_F32 && src->dtype != DT_BF16))
        return dt_fail(err, DT_EINVAL, "copy: expected f32 or bf16 tensors of one dtype, got %s -> %s",
                       dt_dtype_name(src->dtype), dt_dtype_name(dst->dtype));
    if (dt_tensor_numel(src) != dt_tensor_numel(dst) || !dt_tensor_is_contiguous(src) || !dt_tensor_is_contiguous(dst))
        return dt_fail(err, DT_EINVAL, "copy: expected contiguous tensors of equal size (%lld -> %lld elements)",
                       (long long)dt_tensor_numel(src), (long long)dt_tensor_numel(dst));
    size_t n = dt_tensor_nbytes(src);
    if (n && src->data != dst->data) copy_bytes(dst->data, src->data, n);
    return DT_OK;
}
