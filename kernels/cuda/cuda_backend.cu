/* The CUDA backend instance: device selection, stream, memory (stream-ordered pool), the
 * library handles, `supports`, and the registry entry points. */
#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/elem_math.h"
#include "kernels/cuda/sdpa_math.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CU_WORKSPACE_BYTES (32u << 20) /* cuBLASLt workspace: enough for its split-K kernels */

dt_status cu_fail(dt_err *err, cudaError_t e, const char *what)
{
    return dt_fail(err, e == cudaErrorMemoryAllocation ? DT_ENOMEM : DT_EBACKEND, "CUDA: %s: %s", what,
                   cudaGetErrorString(e));
}

cuda_backend *cu_enter(dt_backend *be)
{
    cuda_backend *cb = (cuda_backend *)be;
    cudaSetDevice(cb->dev); /* cheap; the device is current per thread */
    return cb;
}

dt_status cu_scratch(cuda_backend *cb, int slot, size_t bytes, void **p, dt_err *err)
{
    if (bytes > cb->scratch_size[slot] || !cb->scratch[slot]) {
        cu_free(cb, cb->scratch[slot]);
        cb->scratch[slot] = NULL;
        cb->scratch_size[slot] = 0;
        size_t sz = (bytes + 255) / 256 * 256;
        CU_TRY(cudaMallocAsync(&cb->scratch[slot], sz ? sz : 256, cb->stream), "scratch allocation");
        cb->scratch_size[slot] = sz;
    }
    *p = cb->scratch[slot];
    return DT_OK;
}

dt_status cu_upload_scratch(cuda_backend *cb, int slot, const float *host, size_t n, float **p, dt_err *err)
{
    void *d;
    DT_TRY(cu_scratch(cb, slot, n * sizeof(float), &d, err));
    /* cudaMemcpyDefault: the models pass the caption key bias in device memory, T5 its biases in
     * host memory (backend.h says host); unified addressing tells them apart */
    CU_TRY(cudaMemcpyAsync(d, host, n * sizeof(float), cudaMemcpyDefault, cb->stream), "upload");
    *p = (float *)d;
    return DT_OK;
}

dt_status cu_alloc_upload(cuda_backend *cb, const void *host, size_t bytes, void **p, dt_err *err)
{
    *p = NULL;
    CU_TRY(cudaMallocAsync(p, bytes ? bytes : 64, cb->stream), "weight allocation");
    cudaError_t e = cudaMemcpyAsync(*p, host, bytes, cudaMemcpyHostToDevice, cb->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(cb->stream); /* host buffer may be freed on return */
    if (e != cudaSuccess) {
        cu_free(cb, *p);
        *p = NULL;
        return cu_fail(err, e, "weight upload");
    }
    return DT_OK;
}

/* ---- conversions and activations (elem_math.h) ---- */

__global__ void k_to16(int t, const float *s, uint16_t *d, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        d[i] = dtm_to16(t, s[i]);
}

__global__ void k_round_to(int t, const float *s, float *d, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        d[i] = dtm_round_to(t, s[i]);
}

__global__ void k_act(int act, float *y, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = dtm_act(act, y[i]);
}

dt_status cu_f32_to_16(cuda_backend *cb, dt_dtype t, const float *src, void *dst, int64_t n, dt_err *err)
{
    if (cu_ftype(t).bytes != 2) return dt_fail(err, DT_EINVAL, "f32 -> %s: not a 16-bit float type", dt_dtype_name(t));
    k_to16<<<cu_blocks(n, 256), 256, 0, cb->stream>>>((int)t, src, (uint16_t *)dst, n);
    CU_LAUNCHED("f32 -> 16-bit");
    return DT_OK;
}

dt_status cu_round_to_f32(cuda_backend *cb, dt_dtype t, const float *src, float *dst, int64_t n, dt_err *err)
{
    if (!cu_is_float(t)) return dt_fail(err, DT_EINVAL, "rounding to %s: not a float type", dt_dtype_name(t));
    k_round_to<<<cu_blocks(n, 256), 256, 0, cb->stream>>>((int)t, src, dst, n);
    CU_LAUNCHED("rounding");
    return DT_OK;
}

dt_status cu_act_inplace(cuda_backend *cb, dt_act act, float *y, int64_t n, dt_err *err)
{
    if (act == DT_ACT_NONE || n == 0) return DT_OK;
    k_act<<<cu_blocks(n, 256), 256, 0, cb->stream>>>((int)act, y, n);
    CU_LAUNCHED("activation");
    return DT_OK;
}

/* ---- memory ops of the table ---- */

/* Device tags are not checked in this backend: the model code makes its views of arena memory
 * with dt_tensor_view, whose tag is the CPU's, so every tensor given to a CUDA op is taken to be
 * this backend's device memory, as backend.h's contract says it must be. */

static dt_status cu_buffer_alloc(dt_backend *be, size_t bytes, void **ptr, dt_err *err)
{
    cuda_backend *cb = cu_enter(be);
    *ptr = NULL;
    cudaError_t e = cudaMallocAsync(ptr, bytes ? (bytes + 63) / 64 * 64 : 64, cb->stream);
    if (e != cudaSuccess) {
        cudaGetLastError(); /* clear the sticky-free error state */
        return dt_fail(err, DT_ENOMEM, "CUDA: out of device memory (%zu bytes on cuda:%d: %s)", bytes, cb->dev,
                       cudaGetErrorString(e));
    }
    return DT_OK;
}

static void cu_buffer_free(dt_backend *be, void *ptr)
{
    if (ptr) cu_free(cu_enter(be), ptr);
}

static dt_status cu_tensor_set(dt_backend *be, dt_tensor *dst, const void *host, size_t bytes, dt_err *err)
{
    cuda_backend *cb = cu_enter(be);
    if (!dt_tensor_is_contiguous(dst)) return dt_fail(err, DT_EINVAL, "tensor_set: the destination must be contiguous");
    if (bytes != dt_tensor_nbytes(dst))
        return dt_fail(err, DT_EINVAL, "tensor_set: %zu bytes for a tensor of %zu bytes", bytes, dt_tensor_nbytes(dst));
    if (bytes) CU_TRY(cudaMemcpyAsync(dst->data, host, bytes, cudaMemcpyHostToDevice, cb->stream), "tensor_set");
    CU_TRY(cudaStreamSynchronize(cb->stream), "tensor_set"); /* the caller may reuse host at once */
    return DT_OK;
}

static dt_status cu_tensor_get(dt_backend *be, const dt_tensor *src, void *host, size_t bytes, dt_err *err)
{
    cuda_backend *cb = cu_enter(be);
    if (!dt_tensor_is_contiguous(src)) return dt_fail(err, DT_EINVAL, "tensor_get: the source must be contiguous");
    if (bytes != dt_tensor_nbytes(src))
        return dt_fail(err, DT_EINVAL, "tensor_get: %zu bytes for a tensor of %zu bytes", bytes, dt_tensor_nbytes(src));
    if (bytes) CU_TRY(cudaMemcpyAsync(host, src->data, bytes, cudaMemcpyDeviceToHost, cb->stream), "tensor_get");
    CU_TRY(cudaStreamSynchronize(cb->stream), "tensor_get (or an earlier op on this stream)");
    return DT_OK;
}

/* Pinned host memory (portable: any device's transfers use it at full speed); no state of be is
 * read, as backend.h asks (the timing decorator passes itself). */
static dt_status cu_host_alloc(dt_backend *be, size_t bytes, void **ptr, dt_err *err)
{
    *ptr = NULL;
    CU_TRY(cudaHostAlloc(ptr, bytes ? bytes : 64, cudaHostAllocPortable), "pinned host allocation");
    return DT_OK;
}

static void cu_host_free(dt_backend *be, void *ptr)
{
    if (ptr) cudaFreeHost(ptr);
}

static dt_status cu_copy(dt_backend *be, const dt_tensor *src, dt_tensor *dst, dt_err *err)
{
    cuda_backend *cb = cu_enter(be);
    if (src->dtype != dst->dtype || !cu_is_float(src->dtype))
        return dt_fail(err, DT_EINVAL, "copy: expected f32, bf16 or f16 tensors of one dtype, got %s -> %s",
                       dt_dtype_name(src->dtype), dt_dtype_name(dst->dtype));
    if (dt_tensor_numel(src) != dt_tensor_numel(dst) || !dt_tensor_is_contiguous(src) || !dt_tensor_is_contiguous(dst))
        return dt_fail(err, DT_EINVAL, "copy: expected contiguous tensors of equal size (%lld -> %lld elements)",
                       (long long)dt_tensor_numel(src), (long long)dt_tensor_numel(dst));
    size_t n = dt_tensor_nbytes(src);
    if (n && src->data != dst->data)
        CU_TRY(cudaMemcpyAsync(dst->data, src->data, n, cudaMemcpyDeviceToDevice, cb->stream), "copy");
    return DT_OK;
}

static int cu_supports(dt_backend *be, dt_op op, dt_dtype t)
{
    switch (op) {
    case DT_OP_BUFFER: return 1;
    case DT_OP_LINEAR: /* f32, bf16 and f16 (dtype_math.h) */
    case DT_OP_ATTENTION:
    case DT_OP_WINDOW_ATTENTION:
    case DT_OP_CONV2D: return cu_is_float(t);
    case DT_OP_QLINEAR: return t == DT_I8; /* cuda_qlinear.cu */
    case DT_OP_COPY:
    case DT_OP_COPY4D:
    case DT_OP_GROUP_NORM:
    case DT_OP_UPSAMPLE: return cu_is_float(t);
    case DT_OP_LAYERNORM_MODULATE:
    case DT_OP_GATED_ADD:
    case DT_OP_ACTIVATION:
    case DT_OP_PATCHIFY:
    case DT_OP_ADD_ROWS:
    case DT_OP_BLEND_EDGE:
    case DT_OP_RMS_NORM:
    case DT_OP_GATED_ACT:
    case DT_OP_REPEAT_ROWS:
    case DT_OP_SUB:
    case DT_OP_CFG_COMBINE:
    case DT_OP_GEGLU:
    case DT_OP_GELU_ERF: return t == DT_F32;
    default: return 0;
    }
}

static void cu_destroy(dt_backend *be)
{
    if (!be) return;
    cuda_backend *cb = cu_enter(be);
    for (int i = 0; i < CU_SCRATCH_SLOTS; i++) cu_free(cb, cb->scratch[i]);
    cu_free(cb, cb->ws);
    if (cb->stream) cudaStreamSynchronize(cb->stream);
    cu_sdpa_cache_free(cb); /* after the stream drained: no plan is destroyed under a running graph */
    if (cb->lt) cb->L->cublasLtDestroy(cb->lt);
    if (cb->dnn) cb->L->cudnnDestroy(cb->dnn);
    if (cb->stream) cudaStreamDestroy(cb->stream);
    free(cb);
}

static const dt_backend_ops cuda_ops = {
    /* memory */
    .buffer_alloc = cu_buffer_alloc,
    .buffer_free = cu_buffer_free,
    .tensor_set = cu_tensor_set,
    .tensor_get = cu_tensor_get,
    .copy = cu_copy,
    .supports = cu_supports,
    .linear_create = cu_linear_create,
    .linear_forward = cu_linear_forward,
    .linear_destroy = cu_linear_destroy,
    .attention = cu_attention,
    .layernorm_modulate = cu_layernorm_modulate,
    .gated_add = cu_gated_add,
    .activation = cu_activation,
    .patchify = cu_patchify,
    .unpatchify = cu_unpatchify,
    .add_rows = cu_add_rows,
    .repeat_rows = cu_repeat_rows,
    .sub = cu_sub,
    .cfg_combine = cu_cfg_combine,
    .destroy = cu_destroy,
    /* VAE decoder */
    .conv2d_create = cu_conv2d_create,
    .conv2d_forward = cu_conv2d_forward,
    .conv2d_destroy = cu_conv2d_destroy,
    .group_norm = cu_group_norm,
    .upsample_nearest2x = cu_upsample_nearest2x,
    .copy4d = cu_copy4d,
    .blend_edge = cu_blend_edge,
    /* T5 */
    .rms_norm = cu_rms_norm,
    .gated_act = cu_gated_act,
    /* DiTFastAttn */
    .window_attention = cu_window_attention,
    /* quantized linears (cuda_qlinear.cu) */
    .qlinear_create = cu_qlinear_create,
    .linear_observe = cu_linear_observe,
    .qlinear_keep_tokens = cu_qlinear_keep_tokens,
    /* U-Net feed-forward */
    .geglu = cu_geglu,
    /* pinned host buffers */
    .host_alloc = cu_host_alloc,
    .host_free = cu_host_free,
    .attention_with = nullptr, /* one attention kernel */
    .layernorm_modulate_linear = nullptr, /* callers run the two ops */
    .im2col = nullptr, /* convolutions are not quantized here */
    .linear_gated_add = nullptr, /* callers run the two ops */
};

/* ---- registry entry points ---- */

static int device_count(cudaError_t *why)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError();
        n = 0;
    }
    if (why) *why = e;
    return n;
}

extern "C" int cuda_backend_available(void) { return device_count(NULL) > 0; }

extern "C" void cuda_backend_unavailable_reason(char *buf, size_t n)
{
    cudaError_t e;
    int c = device_count(&e);
    if (c > 0) snprintf(buf, n, "%s", "");
    else if (e != cudaSuccess) snprintf(buf, n, "cudaGetDeviceCount: %s", cudaGetErrorString(e));
    else snprintf(buf, n, "cudaGetDeviceCount: 0 devices");
}

extern "C" int cuda_backend_describe(char *buf, size_t n)
{
    int c = device_count(NULL);
    size_t o = 0;
    buf[0] = 0;
    if (c == 0) {
        cuda_backend_unavailable_reason(buf, n);
        return 0;
    }
    for (int i = 0; i < c && o < n; i++) {
        cudaDeviceProp p;
        if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
        o += (size_t)snprintf(buf + o, n - o, "%scuda:%d: %s, %.1f GiB, sm_%d%d", i ? "\n" : "", i, p.name,
                              p.totalGlobalMem / (1024.0 * 1024 * 1024), p.major, p.minor);
    }
    return c;
}

/* bf16 and f16 GEMMs run natively from sm_80 (A100, H100); f32 always. The query has no device
 * index: it answers for the kinds this build targets (CUDA_ARCH >= 80). The default stays bf16
 * (dt_backend_default_dtype): f16 is asked for by name. */
extern "C" int cuda_backend_native_dtype(dt_dtype t) { return cu_is_float(t); }

static dt_status init_handles(cuda_backend *cb, dt_err *err)
{
    char why[512];
    if (!(cb->L = dt_cuda_libs_get(why, sizeof why))) return dt_fail(err, DT_EUNSUPPORTED, "device cuda: %s", why);
    CU_TRY(cudaSetDevice(cb->dev), "cudaSetDevice");
    CU_TRY(cudaStreamCreateWithFlags(&cb->stream, cudaStreamNonBlocking), "stream creation");
    /* keep freed blocks in the pool (the default releases them at every synchronization) */
    cudaMemPool_t pool;
    CU_TRY(cudaDeviceGetDefaultMemPool(&pool, cb->dev), "memory pool");
    uint64_t keep = UINT64_MAX;
    CU_TRY(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep), "memory pool threshold");
    if (cb->L->cublasLtCreate(&cb->lt) != CUBLAS_STATUS_SUCCESS)
        return dt_fail(err, DT_EBACKEND, "cuBLASLt: cublasLtCreate failed");
    cudnnStatus_t ds = cb->L->cudnnCreate(&cb->dnn);
    if (ds == CUDNN_STATUS_SUCCESS) ds = cb->L->cudnnSetStream(cb->dnn, cb->stream);
    if (ds != CUDNN_STATUS_SUCCESS) return dt_fail(err, DT_EBACKEND, "cuDNN: %s", cb->L->cudnnGetErrorString(ds));
    cb->ws_size = CU_WORKSPACE_BYTES;
    CU_TRY(cudaMallocAsync(&cb->ws, cb->ws_size, cb->stream), "cuBLASLt workspace");
    return DT_OK;
}

extern "C" dt_status cuda_backend_create(const dt_backend_config *cfg, dt_backend **out, dt_err *err)
{
    cudaError_t e;
    int count = device_count(&e);
    if (count == 0) {
        char why[256];
        cuda_backend_unavailable_reason(why, sizeof why);
        return dt_fail(err, DT_EUNSUPPORTED, "device cuda: no CUDA device found (%s)", why);
    }
    if (cfg->device_index < 0 || cfg->device_index >= count)
        return dt_fail(err, DT_EINVAL, "device cuda:%d: only %d CUDA device%s found (cuda:0..%d)", cfg->device_index,
                       count, count == 1 ? "" : "s", count - 1);
    if (!cu_is_float(cfg->compute))
        return dt_fail(err, DT_EINVAL, "dtype: compute dtype must be f32, bf16 or f16, got %s", dt_dtype_name(cfg->compute));
    cuda_backend *cb = (cuda_backend *)calloc(1, sizeof *cb);
    if (!cb) return dt_fail(err, DT_ENOMEM, "out of memory");
    cb->base.ops = &cuda_ops;
    cb->base.cfg = *cfg;
    cb->dev = cfg->device_index;
    /* --dtype tf32 (cfg->tf32); DITRT_CUDA_TF32=1 stays as an alias for f32 contexts */
    cb->tf32 = cfg->tf32 || (cfg->compute == DT_F32 && cu_tf32_requested(getenv("DITRT_CUDA_TF32")));
    cb->base.cfg.tf32 = cb->tf32;
    cb->verbose = cu_tf32_requested(getenv("DITRT_VERBOSE")); /* the same "1" rule */
    cb->attn_gemm = dtm_sdpa_attn_gemm((int)cfg->attn_kernel, getenv("DITRT_ATTN"));
    if (cb->attn_gemm < 0) {
        free(cb);
        return dt_fail(err, DT_EINVAL, "DITRT_ATTN: expected gemm, fused or int8, got \"%s\"", getenv("DITRT_ATTN"));
    }
    cb->base.cfg.attn_kernel = cb->attn_gemm ? DT_ATTN_KERNEL_GEMM : DT_ATTN_KERNEL_FUSED;
    dt_status s = init_handles(cb, err);
    if (s != DT_OK) {
        if (cb->L) cu_destroy(&cb->base);
        else free(cb);
        return s;
    }
    *out = &cb->base;
    return DT_OK;
}
