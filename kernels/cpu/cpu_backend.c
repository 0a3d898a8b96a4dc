#include "cpu.h"
#include <dnnl_debug.h>
#include <omp.h>
#include <stdlib.h>

static void cpu_destroy(dt_backend *be)
{
    cpu_backend *cb = (cpu_backend *)be;
    for (int i = 0; i < CPU_BMM_CACHE; i++)
        if (cb->bmm[i].used) dnnl_primitive_destroy(cb->bmm[i].prim);
    if (cb->stream) dnnl_stream_destroy(cb->stream);
    if (cb->engine) dnnl_engine_destroy(cb->engine);
    free(cb->scratch);
    free(cb);
}

static int cpu_supports(dt_backend *be, dt_op op, dt_dtype t)
{
    (void)be;
    switch (op) {
    case DT_OP_BUFFER: return 1;
    case DT_OP_ATTENTION:
        if (t == DT_I8) return 1; /* attention_with's INT8 kernel (f32 data, int8 QKᵀ) */
        /* fall through */
    case DT_OP_LINEAR:
        if (t == DT_I8) return 1; /* weight-only int8 (linear_w8.c): f32 activations and GEMM */
        /* fall through */
    case DT_OP_WINDOW_ATTENTION:
    case DT_OP_CONV2D: return t == DT_F32 || (t == DT_BF16 && cpu_bf16_ok());
    case DT_OP_QLINEAR: return t == DT_I8; /* exact without VNNI too (qlinear.c: gemm_s8) */
    case DT_OP_COPY:
    case DT_OP_COPY4D:
    case DT_OP_GROUP_NORM:
    case DT_OP_UPSAMPLE: return t == DT_F32 || t == DT_BF16; /* storage: plain conversions */
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

static const dt_backend_ops cpu_ops = {
    /* memory */
    .buffer_alloc = cpu_buffer_alloc,
    .buffer_free = cpu_buffer_free,
    .tensor_set = cpu_tensor_set,
    .tensor_get = cpu_tensor_get,
    .copy = cpu_copy,
    .supports = cpu_supports,
    .linear_create = cpu_linear_create,
    .linear_forward = cpu_linear_forward,
    .linear_destroy = cpu_linear_destroy,
    .attention = cpu_attention_op,
    .layernorm_modulate = cpu_layernorm_modulate,
    .gated_add = cpu_gated_add,
    .activation = cpu_activation,
    .patchify = cpu_patchify,
    .unpatchify = cpu_unpatchify,
    .add_rows = cpu_add_rows,
    .repeat_rows = cpu_repeat_rows,
    .sub = cpu_sub,
    .cfg_combine = cpu_cfg_combine,
    .destroy = cpu_destroy,
    /* VAE decoder */
    .conv2d_create = cpu_conv2d_create,
    .conv2d_forward = cpu_conv2d_forward,
    .conv2d_destroy = cpu_conv2d_destroy,
    .group_norm = cpu_group_norm,
    .upsample_nearest2x = cpu_upsample_nearest2x,
    .copy4d = cpu_copy4d,
    .blend_edge = cpu_blend_edge,
    /* T5 text encoder */
    .rms_norm = cpu_rms_norm,
    .gated_act = cpu_gated_act,
    /* DiTFastAttn */
    .window_attention = cpu_window_attention_op,
    /* quantized linears */
    .qlinear_create = cpu_qlinear_create,
    .linear_observe = cpu_linear_observe,
    .qlinear_keep_tokens = cpu_qlinear_keep_tokens,
    .attention_with = cpu_attention_with,
    .layernorm_modulate_linear = cpu_layernorm_modulate_linear,
    /* U-Net feed-forward */
    .geglu = cpu_geglu,
    .im2col = cpu_im2col,
    .linear_gated_add = cpu_linear_gated_add,
};

dt_status cpu_dnnl_fail(dt_err *err, dnnl_status_t st, const char *what)
{
    return dt_fail(err, DT_EBACKEND, "oneDNN: %s failed (status %d)", what, (int)st);
}

/* Emulated bf16 (below) runs oneDNN's f32 primitives on widened bf16 data. */
dnnl_data_type_t cpu_dnnl_dt(dt_dtype t) { return t == DT_BF16 && cpu_native_bf16() ? dnnl_bf16 : dnnl_f32; }

/* oneDNN's ISA flags are cumulative bit sets, so "has X" is "contains X's bits". The
 * effective ISA honours ONEDNN_MAX_CPU_ISA, which is how an AVX-512 machine tests the AVX2 path. */
static int isa_has(dnnl_cpu_isa_t isa, dnnl_cpu_isa_t want) { return ((unsigned)isa & (unsigned)want) == (unsigned)want; }

int cpu_native_bf16(void) { return isa_has(dnnl_get_effective_cpu_isa(), dnnl_cpu_isa_avx512_core_bf16); }

/* Without VNNI, oneDNN's int8 GEMMs multiply through vpmaddubsw, whose int16 pair sums saturate;
 * it then halves the weights, which rounds them: results are off by up to a weight LSB. */
int cpu_exact_int8(void)
{
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    return isa_has(isa, dnnl_cpu_isa_avx512_core_vnni) || isa_has(isa, dnnl_cpu_isa_avx2_vnni);
}

const char *cpu_isa_name(void)
{
    const char *s = dnnl_cpu_isa2str(dnnl_get_effective_cpu_isa());
    return strncmp(s, "cpu_isa_", 8) ? s : s + 8;
}

/* bf16 emulation, to test bf16 on CPUs without it (this project's AVX2 CI machine). oneDNN 2.6
 * creates no bf16 matmul or convolution below avx512_core: every implementation, the reference
 * ones included, answers "unimplemented" (f32 <-> bf16 reorders do work). With
 * DITRT_BF16_EMULATED=1 such a CPU runs bf16 layers and attention anyway: our code makes the same
 * bf16 buffers as on a native CPU (weights rounded once at creation, GEMM inputs converted per
 * call, softmax probabilities rounded, all round-to-nearest-even as oneDNN's reorders: checked
 * equal on 2^20 values, ties included), and each GEMM widens them to f32 (exact) and runs oneDNN's
 * f32 primitive. A product of two bf16 values is exact in f32, so this is the contract of oneDNN's
 * bf16 kernels (bf16 inputs, f32 accumulation) up to the order of the f32 sums.
 * It verifies our bf16 data flow: which tensors are rounded, where, and with what conversion, and
 * the accuracy a model gets from bf16 inputs. It does not verify oneDNN's native bf16 kernels
 * (their blocking and their own conversions), which run only on AVX512-BF16/AMX CPUs. It is for
 * testing: slower than f32 (a widened copy per GEMM), never a default (cpu_backend_native_dtype
 * stays false, so the default dtype stays f32), and off unless asked for. */
#define CPU_BF16_ENV "DITRT_BF16_EMULATED"

/* 1 when DITRT_BF16_EMULATED is 1, 0 when unset, empty or 0, -1 for anything else. */
static int bf16_emulation_asked(void)
{
    const char *e = getenv(CPU_BF16_ENV);
    if (!e || !*e || !strcmp(e, "0")) return 0;
    return strcmp(e, "1") ? -1 : 1;
}

static inline float bf16_widen(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

int cpu_bf16_emulated(void) { return !cpu_native_bf16() && bf16_emulation_asked() == 1; }
int cpu_bf16_ok(void) { return cpu_native_bf16() || bf16_emulation_asked() == 1; }

dt_status cpu_check_dtype(dt_dtype t, const char *what, dt_err *err)
{
    if (t != DT_BF16 || cpu_native_bf16()) return DT_OK;
    int asked = bf16_emulation_asked();
    if (asked < 0)
        return dt_fail(err, DT_EINVAL, "%s: expected 0 or 1, got \"%s\"", CPU_BF16_ENV, getenv(CPU_BF16_ENV));
    if (!asked)
        return dt_fail(err, DT_EUNSUPPORTED,
                       "%s bf16: this CPU has no native bf16 (oneDNN ISA %s; bf16 needs AVX512-BF16 or AMX): use f32 "
                       "(or, for testing, " CPU_BF16_ENV "=1 emulates it: bf16 inputs, f32 GEMMs, slower)",
                       what, cpu_isa_name());
    return DT_OK;
}

void cpu_bf16_emulate_weights(dt_dtype t, void *w, size_t bytes)
{
    if (t != DT_BF16 || cpu_native_bf16()) return;
    float *f = w;
    size_t n = bytes / sizeof(float);
#pragma omp parallel for schedule(static) if (n > (1 << 16))
    for (size_t i = 0; i < n; i++) f[i] = bf16_widen(cpu_bf16_round(f[i]));
}

dt_status cpu_bf16_emulate_src(dt_dtype t, const void **src, size_t n, float **owned, dt_err *err)
{
    *owned = NULL;
    if (t != DT_BF16 || cpu_native_bf16()) return DT_OK;
    float *f = malloc((n ? n : 1) * sizeof(float));
    if (!f) return dt_fail(err, DT_ENOMEM, "out of memory widening %zu bf16 values (emulated bf16)", n);
    const uint16_t *h = *src;
#pragma omp parallel for schedule(static) if (n > (1 << 16))
    for (size_t i = 0; i < n; i++) f[i] = bf16_widen(h[i]);
    *src = f;
    *owned = f;
    return DT_OK;
}

/* Registry entry points (kernels/backend.c). */
int cpu_backend_native_dtype(dt_dtype t) { return t == DT_F32 || (t == DT_BF16 && cpu_native_bf16()); }
int cpu_backend_available(void) { return 1; }

dnnl_status_t cpu_reorder(cpu_backend *cb, const dnnl_memory_desc_t *smd, const void *s,
                          const dnnl_memory_desc_t *dmd, void *d)
{
    dnnl_primitive_desc_t rpd;
    dnnl_status_t st = dnnl_reorder_primitive_desc_create(&rpd, smd, cb->engine, dmd, cb->engine, NULL);
    if (st != dnnl_success) return st;
    dnnl_primitive_t r = NULL;
    dnnl_memory_t ms = NULL, md = NULL;
    st = dnnl_primitive_create(&r, rpd);
    if (st == dnnl_success) st = dnnl_memory_create(&ms, smd, cb->engine, (void *)s);
    if (st == dnnl_success) st = dnnl_memory_create(&md, dmd, cb->engine, d);
    if (st == dnnl_success) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, ms}, {DNNL_ARG_TO, md}};
        st = dnnl_primitive_execute(r, cb->stream, 2, args);
        if (st == dnnl_success) st = dnnl_stream_wait(cb->stream);
    }
    dnnl_memory_destroy(ms);
    dnnl_memory_destroy(md);
    dnnl_primitive_destroy(r);
    dnnl_primitive_desc_destroy(rpd);
    return st;
}

void *cpu_scratch(cpu_backend *cb, size_t bytes)
{
    if (bytes > cb->scratch_size) {
        free(cb->scratch);
        cb->scratch = aligned_alloc(64, (bytes + 63) / 64 * 64);
        cb->scratch_size = cb->scratch ? bytes : 0;
    }
    return cb->scratch;
}

dt_status cpu_backend_create(const dt_backend_config *cfg, dt_backend **out, dt_err *err)
{
    if (cfg->device != DT_DEV_CPU || cfg->device_index != 0)
        return dt_fail(err, DT_EINVAL, "device: the CPU backend has one device, cpu (got index %d)", cfg->device_index);
    if (cfg->compute != DT_F32 && cfg->compute != DT_BF16)
        return dt_fail(err, DT_EINVAL, "dtype: compute dtype must be f32 or bf16, got %s", dt_dtype_name(cfg->compute));
    DT_TRY(cpu_check_dtype(cfg->compute, "dtype", err));
    dt_attn_kernel attn = DT_ATTN_KERNEL_GEMM;
    DT_TRY(cpu_attn_kernel(cfg, &attn, err));
    cpu_backend *cb = calloc(1, sizeof *cb);
    if (!cb) return dt_fail(err, DT_ENOMEM, "out of memory");
    cb->base.ops = &cpu_ops;
    cb->base.cfg = *cfg;
    cb->base.cfg.attn_kernel = attn;
    cb->attn_kernel = attn;
    if (cfg->threads > 0) omp_set_num_threads(cfg->threads);
    cb->base.cfg.threads = omp_get_max_threads();
    dnnl_status_t st = dnnl_engine_create(&cb->engine, dnnl_cpu, 0);
    if (st == dnnl_success) st = dnnl_stream_create(&cb->stream, cb->engine, dnnl_stream_default_flags);
    if (st != dnnl_success) {
        cpu_destroy(&cb->base);
        return cpu_dnnl_fail(err, st, "engine creation");
    }
    *out = &cb->base;
    return DT_OK;
}
