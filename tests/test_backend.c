/* The backend owns memory: buffer_alloc/free, tensor_set/get and copy; the backend registry
 * (devices built in, their names, --device parsing); the supports query; arenas backed by an
 * allocator (a backend's buffers); the timing wrapper over the new entries. */
#include "testutil.h"
#include "kernels/backend_timing.h"
#include "runtime/core/arena.h"
#include <stdint.h>

static void test_buffer_alloc(void **state)
{
    (void)state;
    dt_backend *be = tu_backend(DT_F32);
    dt_err err = {0};
    const size_t sizes[] = {0, 1, 63, 64, 100, (size_t)1 << 20, ((size_t)5 << 20) + 3};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        void *p = NULL;
        assert_int_equal(be->ops->buffer_alloc(be, sizes[i], &p, &err), DT_OK);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 64, 0);
        be->ops->buffer_free(be, p);
    }
    be->ops->buffer_free(be, NULL); /* a no-op */
    void *p = NULL;
    assert_int_equal(be->ops->buffer_alloc(be, SIZE_MAX - 10, &p, &err), DT_ENOMEM);
    assert_non_null(strstr(err.msg, "out of memory"));
    assert_null(strchr(err.msg, '\n'));
    dt_backend_destroy(be);
}

/* host -> device -> device -> host through the table, f32 and bf16, small and large (the
 * threaded copy), into backend buffers; refusals with one-line messages. */
static void check_roundtrip(dt_backend *be, dt_dtype dt, int ndim, const int64_t *shape)
{
    dt_tensor d1 = dt_tensor_view(NULL, dt, ndim, shape), d2;
    size_t bytes = dt_tensor_nbytes(&d1);
    dt_err err = {0};
    assert_int_equal(be->ops->buffer_alloc(be, bytes, &d1.data, &err), DT_OK);
    /* the copy's destination: same numel, another shape */
    int64_t flat[1] = {dt_tensor_numel(&d1)};
    d2 = dt_tensor_view(NULL, dt, 1, flat);
    assert_int_equal(be->ops->buffer_alloc(be, bytes, &d2.data, &err), DT_OK);
    unsigned char *host = malloc(bytes ? bytes : 1), *back = malloc(bytes ? bytes : 1);
    tu_rng r = {bytes};
    for (size_t i = 0; i < bytes; i++) host[i] = (unsigned char)(tu_uniform(&r) * 127 + 128);
    memset(back, 0xa5, bytes);
    assert_int_equal(be->ops->tensor_set(be, &d1, host, bytes, &err), DT_OK);
    assert_int_equal(be->ops->copy(be, &d1, &d2, &err), DT_OK);
    assert_int_equal(be->ops->copy(be, &d2, &d2, &err), DT_OK); /* src == dst: nothing to do */
    assert_int_equal(be->ops->tensor_get(be, &d2, back, bytes, &err), DT_OK);
    assert_memory_equal(host, back, bytes);
    be->ops->buffer_free(be, d1.data);
    be->ops->buffer_free(be, d2.data);
    free(host); free(back);
}

static void test_tensor_set_get_copy(void **state)
{
    (void)state;
    dt_backend *be = tu_backend(DT_F32);
    int64_t s1[1] = {1}, s2[2] = {3, 17}, s3[3] = {2, 1031, 7}, big[2] = {1500, 1027}; /* 6 MB in f32 */
    dt_dtype dts[2] = {DT_F32, DT_BF16};
    for (int d = 0; d < 2; d++) {
        check_roundtrip(be, dts[d], 1, s1);
        check_roundtrip(be, dts[d], 2, s2);
        check_roundtrip(be, dts[d], 3, s3);
        check_roundtrip(be, dts[d], 2, big);
    }
    float a[12] = {0}, b[12] = {0};
    int64_t s34[2] = {3, 4}, s26[2] = {2, 6}, s25[2] = {2, 5};
    dt_tensor ta = dt_tensor_view(a, DT_F32, 2, s34), tb = dt_tensor_view(b, DT_F32, 2, s26);
    dt_err err = {0};
    /* tensor_set/get: byte count, layout, device */
    assert_int_equal(be->ops->tensor_set(be, &ta, b, 44, &err), DT_EINVAL);
    assert_non_null(strstr(err.msg, "tensor_set: 44 bytes for a tensor of 48 bytes"));
    dt_err_clear(&err);
    assert_int_equal(be->ops->tensor_get(be, &ta, b, 52, &err), DT_EINVAL);
    assert_non_null(strstr(err.msg, "tensor_get"));
    dt_tensor strided = dt_tensor_view(a, DT_F32, 2, s25);
    strided.strides[0] = 6;
    dt_err_clear(&err);
    assert_int_equal(be->ops->tensor_get(be, &strided, b, 40, &err), DT_EINVAL);
    assert_non_null(strstr(err.msg, "contiguous"));
    dt_tensor on_gpu = ta;
    on_gpu.device = DT_DEV_CUDA;
    dt_err_clear(&err);
    assert_int_equal(be->ops->tensor_set(be, &on_gpu, b, 48, &err), DT_EINVAL);
    assert_non_null(strstr(err.msg, "device cuda"));
    /* copy: equal numel (shapes may differ), one float dtype, contiguous */
    assert_int_equal(be->ops->copy(be, &ta, &tb, &err), DT_OK);
    dt_tensor t5 = dt_tensor_view(b, DT_F32, 2, s25);
    dt_err_clear(&err);
    assert_int_equal(be->ops->copy(be, &ta, &t5, &err), DT_EINVAL);
    assert_non_null(strstr(err.msg, "copy"));
    dt_tensor h = dt_tensor_view(b, DT_BF16, 2, s34);
    dt_err_clear(&err);
    assert_int_equal(be->ops->copy(be, &ta, &h, &err), DT_EINVAL);
    assert_non_null(strstr(err.msg, "f32 -> bf16"));
    dt_tensor i1 = dt_tensor_view(a, DT_I32, 2, s34), i2 = dt_tensor_view(b, DT_I32, 2, s34);
    dt_err_clear(&err);
    assert_int_equal(be->ops->copy(be, &i1, &i2, &err), DT_EINVAL);
    dt_backend_destroy(be);
}

/* DITRT_BF16_EMULATED (bf16 not native): unset or 0 refuses bf16 naming the opt-in, 1 runs it
 * emulated (native_dtype stays false: the default stays f32), anything else is refused naming
 * the variable. The caller's value is restored. */
static void check_bf16_opt_in(void)
{
    const char *e = getenv("DITRT_BF16_EMULATED");
    char *saved = e ? strdup(e) : NULL;
    const char *vals[] = {NULL, "0", "1", "yes"};
    for (int i = 0; i < 4; i++) {
        if (vals[i]) assert_int_equal(setenv("DITRT_BF16_EMULATED", vals[i], 1), 0);
        else assert_int_equal(unsetenv("DITRT_BF16_EMULATED"), 0);
        dt_backend_config cfg = {.device = DT_DEV_CPU, .compute = DT_BF16};
        dt_backend *be = NULL;
        dt_err err = {0};
        dt_status st = dt_backend_create(&cfg, &be, &err);
        if (i < 2) {
            assert_int_equal(st, DT_EUNSUPPORTED);
            assert_non_null(strstr(err.msg, "dtype bf16: this CPU has no native bf16"));
            assert_non_null(strstr(err.msg, "DITRT_BF16_EMULATED=1 emulates it"));
            assert_null(strchr(err.msg, '\n'));
        } else if (i == 2) {
            assert_int_equal(st, DT_OK);
            assert_true(be->ops->supports(be, DT_OP_LINEAR, DT_BF16) && be->ops->supports(be, DT_OP_CONV2D, DT_BF16));
            assert_false(dt_backend_native_dtype(DT_DEV_CPU, DT_BF16));
            assert_int_equal(dt_backend_default_dtype(DT_DEV_CPU), DT_F32);
            dt_backend_destroy(be);
        } else {
            assert_int_equal(st, DT_EINVAL);
            assert_string_equal(err.msg, "DITRT_BF16_EMULATED: expected 0 or 1, got \"yes\"");
        }
        assert_true(st == DT_OK || be == NULL);
    }
    if (saved) assert_int_equal(setenv("DITRT_BF16_EMULATED", saved, 1), 0);
    else assert_int_equal(unsetenv("DITRT_BF16_EMULATED"), 0);
    free(saved);
}

static void test_registry(void **state)
{
    (void)state;
    assert_string_equal(dt_backend_device_name(DT_DEV_CPU), "cpu");
    assert_string_equal(dt_backend_device_name(DT_DEV_CUDA), "cuda");
    assert_string_equal(dt_backend_device_name((dt_device)42), "?");
    assert_true(dt_backend_built(DT_DEV_CPU) && dt_backend_available(DT_DEV_CPU));
    int cuda = dt_backend_built(DT_DEV_CUDA); /* built whenever nvcc was found (kernels/cuda/) */
    assert_false(!cuda && dt_backend_available(DT_DEV_CUDA));
    assert_true(dt_backend_native_dtype(DT_DEV_CPU, DT_F32));
    assert_false(dt_backend_native_dtype(DT_DEV_CPU, DT_I8));
    assert_int_equal(dt_backend_native_dtype(DT_DEV_CUDA, DT_F32), cuda);
    assert_int_equal(dt_backend_default_dtype(DT_DEV_CUDA), cuda ? DT_BF16 : DT_F32);
    dt_dtype def = dt_backend_default_dtype(DT_DEV_CPU);
    assert_int_equal(def, dt_backend_native_dtype(DT_DEV_CPU, DT_BF16) ? DT_BF16 : DT_F32);

    dt_backend *be = NULL;
    dt_err err = {0};
    dt_backend_config cfg = {.device = DT_DEV_CUDA, .compute = DT_F32};
    if (!cuda) {
        assert_int_equal(dt_backend_create(&cfg, &be, &err), DT_EUNSUPPORTED);
        assert_string_equal(err.msg, "device cuda: not built into this ditrt (built-in backends: cpu)");
    } else if (!dt_backend_available(DT_DEV_CUDA)) { /* built, no GPU: tests/test_cuda_host.c checks the message */
        assert_int_equal(dt_backend_create(&cfg, &be, &err), DT_EUNSUPPORTED);
        assert_non_null(strstr(err.msg, "device cuda: no CUDA device found"));
    }
    assert_null(be);
    cfg = (dt_backend_config){.device = DT_DEV_CPU, .device_index = 1, .compute = DT_F32};
    dt_err_clear(&err);
    assert_int_equal(dt_backend_create(&cfg, &be, &err), DT_EINVAL);
    assert_null(be);
    /* bf16 where not native: the one-line refusal naming the ISA and the opt-in
     * (DITRT_BF16_EMULATED=1: emulated bf16, kernels/cpu/cpu_backend.c), which then runs it */
    if (!dt_backend_native_dtype(DT_DEV_CPU, DT_BF16)) check_bf16_opt_in();
    cfg = (dt_backend_config){.device = DT_DEV_CPU, .compute = def};
    dt_err_clear(&err);
    assert_int_equal(dt_backend_create(&cfg, &be, &err), DT_OK);
    assert_int_equal(be->cfg.device, DT_DEV_CPU);
    dt_backend_destroy(be);
}

static void test_parse_device(void **state)
{
    (void)state;
    struct { const char *s; dt_device dev; int index; } good[] = {
        {"cpu", DT_DEV_CPU, 0}, {"cuda", DT_DEV_CUDA, 0}, {"cuda:0", DT_DEV_CUDA, 0},
        {"cuda:3", DT_DEV_CUDA, 3}, {"cuda:12", DT_DEV_CUDA, 12},
    };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        dt_device d = (dt_device)-1;
        int idx = -1;
        dt_err err = {0};
        assert_int_equal(dt_backend_parse_device(good[i].s, &d, &idx, &err), DT_OK);
        assert_int_equal(d, good[i].dev);
        assert_int_equal(idx, good[i].index);
    }
    dt_device d;
    dt_err err = {0};
    assert_int_equal(dt_backend_parse_device("cuda:1", &d, NULL, &err), DT_OK); /* index optional */
    const char *bad[] = {"", "gpu", "CPU", "cpu:0", "cuda:", "cuda:-1", "cuda:x", "cuda:1a", "cuda:+1",
                         "cuda:99999999999", " cpu", "cuda1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        dt_err_clear(&err);
        assert_int_equal(dt_backend_parse_device(bad[i], &d, NULL, &err), DT_EINVAL);
        assert_non_null(strstr(err.msg, "expected cpu, cuda or cuda:N"));
        assert_null(strchr(err.msg, '\n'));
    }
    dt_err_clear(&err);
    assert_int_equal(dt_backend_parse_device(NULL, &d, NULL, &err), DT_EINVAL);
}

static void check_supports(dt_backend *be)
{
    const char *emu = getenv("DITRT_BF16_EMULATED"); /* the opt-in of emulated bf16 */
    int bf16 = dt_backend_native_dtype(DT_DEV_CPU, DT_BF16) || (emu && !strcmp(emu, "1"));
    for (int op = 0; op < DT_OP_COUNT; op++) {
        dt_dtype want = op == DT_OP_QLINEAR ? DT_I8 : DT_F32;
        assert_true(be->ops->supports(be, (dt_op)op, want));
    }
    assert_false(be->ops->supports(be, DT_OP_QLINEAR, DT_F32));
    assert_int_equal(be->ops->supports(be, DT_OP_LINEAR, DT_BF16), bf16);
    assert_int_equal(be->ops->supports(be, DT_OP_ATTENTION, DT_BF16), bf16);
    assert_int_equal(be->ops->supports(be, DT_OP_CONV2D, DT_BF16), bf16);
    assert_true(be->ops->supports(be, DT_OP_COPY, DT_BF16));
    assert_true(be->ops->supports(be, DT_OP_GROUP_NORM, DT_BF16));
    assert_false(be->ops->supports(be, DT_OP_SUB, DT_BF16));
    assert_false(be->ops->supports(be, DT_OP_CFG_COMBINE, DT_F16));
    assert_false(be->ops->supports(be, DT_OP_LINEAR, DT_F16));
    assert_false(be->ops->supports(be, DT_OP_COUNT, DT_F32));
}

static void test_supports(void **state)
{
    (void)state;
    dt_backend *be = tu_backend(DT_F32), *tb = NULL;
    check_supports(be);
    dt_err err = {0};
    assert_int_equal(dt_backend_timed(tu_backend(DT_F32), &tb, &err), DT_OK);
    check_supports(tb);
    dt_backend_destroy(tb);
    dt_backend_destroy(be);
}

/* An allocator that counts and tags its blocks, to see the arena use it. */
typedef struct { int allocs, frees; size_t live; } counting;
static void *count_alloc(void *user, size_t bytes)
{
    counting *c = user;
    assert_int_equal(bytes % 64, 0);
    void *p = aligned_alloc(64, bytes);
    if (p) { c->allocs++; c->live += bytes; }
    return p;
}
static void count_free(void *user, void *ptr)
{
    counting *c = user;
    c->frees++;
    free(ptr);
}

static void test_arena_allocator(void **state)
{
    (void)state;
    counting cnt = {0};
    dt_allocator al = {.alloc = count_alloc, .free = count_free, .user = &cnt, .device = DT_DEV_CUDA};
    dt_arena a;
    dt_arena_init_with(&a, &al);
    size_t big = (size_t)20 << 20; /* above the 16 MB chunk: forces a second chunk */
    dt_tensor t;
    int64_t s[2] = {3, 5};
    dt_err err = {0};
    assert_int_equal(dt_arena_tensor(&a, &t, DT_F32, 2, s, &err), DT_OK);
    assert_int_equal(t.device, DT_DEV_CUDA); /* the allocator's device */
    void *p1 = dt_arena_alloc(&a, 10), *p2 = dt_arena_alloc(&a, big);
    assert_non_null(p1);
    assert_non_null(p2);
    assert_int_equal((uintptr_t)t.data % 64, 0);
    assert_int_equal((uintptr_t)p1 % 64, 0);
    assert_int_equal((uintptr_t)p2 % 64, 0);
    assert_int_equal(cnt.allocs, 2);
    size_t peak = a.peak;
    dt_arena_reset(&a); /* two chunks fold into one of the peak */
    assert_int_equal(cnt.allocs, 3);
    assert_int_equal(cnt.frees, 2);
    assert_int_equal(a.reserved, peak);
    dt_arena_alloc(&a, 60);
    dt_arena_alloc(&a, 10);
    dt_arena_alloc(&a, big);
    assert_int_equal(cnt.allocs, 3); /* steady state: no allocation */
    dt_arena_free(&a);
    assert_int_equal(cnt.frees, 3);
    /* still usable after free, with the same allocator */
    assert_non_null(dt_arena_alloc(&a, 1));
    assert_int_equal(cnt.allocs, 4);
    dt_arena_free(&a);
    assert_int_equal(cnt.frees, 4);

    /* the default arena: CPU tensors as before */
    dt_arena h;
    dt_arena_init(&h);
    assert_int_equal(dt_arena_tensor(&h, &t, DT_F32, 2, s, &err), DT_OK);
    assert_int_equal(t.device, DT_DEV_CPU);
    dt_arena_free(&h);
    dt_arena_init_with(&h, NULL); /* the same as dt_arena_init */
    assert_int_equal(dt_arena_tensor(&h, &t, DT_F32, 2, s, &err), DT_OK);
    assert_int_equal(t.device, DT_DEV_CPU);
    assert_int_equal((uintptr_t)t.data % 64, 0);
    dt_arena_free(&h);
}

/* An arena over a (timed) backend's buffers: tensors on its device, moved with tensor_set/get;
 * the wrapper counts memory ops under "memory" and the new ops under "elementwise". */
static void test_backend_arena_and_timing(void **state)
{
    (void)state;
    dt_backend *tb = NULL, *plain = tu_backend(DT_F32);
    dt_err err = {0};
    assert_int_equal(dt_backend_timed(tu_backend(DT_F32), &tb, &err), DT_OK);
    dt_op_times *times = dt_backend_times(tb);
    assert_string_equal(dt_op_kind_names[DT_OPK_MEMORY], "memory");
    dt_backend *bes[2] = {plain, tb};
    float *outs[2];
    int B = 2, n = 37;
    tu_rng r = {17};
    float *u = tu_alloc((size_t)B * n), *c = tu_alloc((size_t)B * n);
    tu_fill(&r, u, (size_t)B * n, 1.0f);
    tu_fill(&r, c, (size_t)B * n, 1.0f);
    for (int i = 0; i < 2; i++) {
        dt_backend *be = bes[i];
        dt_allocator al = dt_backend_allocator(be);
        assert_int_equal(al.device, DT_DEV_CPU);
        dt_arena a;
        dt_arena_init_with(&a, &al);
        int64_t s2[2] = {B, n}, s4[2] = {2 * B, n};
        dt_tensor tu, tc, td, tr, ty;
        assert_int_equal(dt_arena_tensor(&a, &tu, DT_F32, 2, s2, &err), DT_OK);
        assert_int_equal(dt_arena_tensor(&a, &tc, DT_F32, 2, s2, &err), DT_OK);
        assert_int_equal(dt_arena_tensor(&a, &td, DT_F32, 2, s2, &err), DT_OK);
        assert_int_equal(dt_arena_tensor(&a, &tr, DT_F32, 2, s4, &err), DT_OK);
        assert_int_equal(dt_arena_tensor(&a, &ty, DT_F32, 2, s2, &err), DT_OK);
        assert_int_equal(be->ops->tensor_set(be, &tu, u, sizeof(float) * B * n, &err), DT_OK);
        assert_int_equal(be->ops->tensor_set(be, &tc, c, sizeof(float) * B * n, &err), DT_OK);
        assert_int_equal(be->ops->sub(be, &tc, &tu, &td, &err), DT_OK);                /* d = c - u */
        assert_int_equal(be->ops->repeat_rows(be, &td, 2, &tr, &err), DT_OK);          /* each row twice */
        assert_int_equal(be->ops->cfg_combine(be, &tu, &tc, 4.5f, &ty, &err), DT_OK);  /* u + 4.5 (c - u) */
        assert_int_equal(be->ops->copy(be, &ty, &tu, &err), DT_OK);
        outs[i] = tu_poisoned((size_t)3 * B * n);
        assert_int_equal(be->ops->tensor_get(be, &tu, outs[i], sizeof(float) * B * n, &err), DT_OK);
        assert_int_equal(be->ops->tensor_get(be, &tr, outs[i] + B * n, sizeof(float) * 2 * B * n, &err), DT_OK);
        dt_arena_free(&a);
    }
    assert_memory_equal(outs[0], outs[1], sizeof(float) * 3 * B * n);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < n; i++) {
            float uu = u[b * n + i], cc = c[b * n + i];
            assert_true(outs[0][b * n + i] == uu + 4.5f * (cc - uu));
            assert_true(outs[0][B * n + (2 * b) * n + i] == cc - uu);
            assert_true(outs[0][B * n + (2 * b + 1) * n + i] == cc - uu);
        }
    /* 1 buffer_alloc (one chunk) + 2 tensor_set + 1 copy + 2 tensor_get + 1 buffer_free */
    assert_int_equal(times->calls[DT_OPK_MEMORY], 7);
    assert_int_equal(times->calls[DT_OPK_ELEMENTWISE], 3);
    dt_backend_destroy(tb);
    dt_backend_destroy(plain);
    free(u); free(c); free(outs[0]); free(outs[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buffer_alloc),
        cmocka_unit_test(test_tensor_set_get_copy),
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_parse_device),
        cmocka_unit_test(test_supports),
        cmocka_unit_test(test_arena_allocator),
        cmocka_unit_test(test_backend_arena_and_timing),
    };
    return cmocka_run_group_tests_name("backend", tests, NULL, NULL);
}
