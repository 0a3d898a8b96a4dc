/* The fused attention kernel (kernels/cpu/attention_fused.h), both its AVX2 and plain-C inner
 * kernels, against the double-precision references (ref_attention, ref_window_attention) and
 * the two-GEMM backend path, on random shapes: odd token counts, head sizes that are and are not
 * multiples of 8 and 24, key masks, per-head biases, bands of every width, batches, strided
 * q/k/v views; plus the backend switch (cfg.attn_kernel, DITRT_ATTN) and thread-count
 * determinism. */
#include "testutil.h"
#include "kernels/cpu/ref.h"
#include "kernels/cpu/attention_fused.h"
#include <omp.h>

typedef struct {
    int B, nq, nk, H, d, window; /* window < 0: full */
    int mask, head_bias;
} fa_case;

/* q, k, v as views into one packed buffer (row stride 3C + pad, as a fused qkv projection
 * gives), the biases, and the reference output. */
typedef struct {
    fa_case c;
    float *buf, *kbias, *hbias, *ref;
    dt_tensor q, k, v;
    dt_attn_bias bias;
    float scale;
} fa_inputs;

static void make_inputs(const fa_case *c, uint64_t seed, fa_inputs *x)
{
    tu_rng r = {seed};
    x->c = *c;
    int C = c->H * c->d, ld = 3 * C + 1 + (int)(seed % 5), nmax = c->nq > c->nk ? c->nq : c->nk;
    x->buf = tu_alloc((size_t)c->B * nmax * ld);
    tu_fill(&r, x->buf, (size_t)c->B * nmax * ld, 2.0f);
    x->kbias = tu_alloc((size_t)c->B * c->nk);
    /* a caption mask: about a third of the keys at -10000 (not all of a row's: then every score
     * is -10000 + s, whose f32 sum keeps ~1e-3 of s, in both kernels alike) */
    for (int i = 0; i < c->B * c->nk; i++) x->kbias[i] = tu_uniform(&r) > 0.3f && i % c->nk ? -10000.0f : 0.0f;
    x->hbias = tu_alloc((size_t)c->H * c->nq * c->nk);
    tu_fill(&r, x->hbias, (size_t)c->H * c->nq * c->nk, 3.0f);
    x->bias = (dt_attn_bias){c->mask ? x->kbias : NULL, c->head_bias ? x->hbias : NULL};
    int64_t qs[3] = {c->B, c->nq, C}, ks[3] = {c->B, c->nk, C};
    x->q = dt_tensor_view(x->buf, DT_F32, 3, qs);
    x->k = dt_tensor_view(x->buf + C, DT_F32, 3, ks);
    x->v = dt_tensor_view(x->buf + 2 * C + 1, DT_F32, 3, ks);
    x->q.strides[0] = x->k.strides[0] = x->v.strides[0] = (int64_t)nmax * ld;
    x->q.strides[1] = x->k.strides[1] = x->v.strides[1] = ld;
    x->scale = 1.0f / sqrtf((float)c->d);
    x->ref = tu_alloc((size_t)c->B * c->nq * C);
    dt_tensor tr = dt_tensor_view(x->ref, DT_F32, 3, qs);
    if (c->window < 0) ref_attention(&x->q, &x->k, &x->v, &x->bias, c->H, x->scale, &tr);
    else ref_window_attention(&x->q, &x->k, &x->v, c->H, x->scale, c->window, &tr);
}

static void free_inputs(fa_inputs *x)
{
    free(x->buf); free(x->kbias); free(x->hbias); free(x->ref);
}

/* fattn_run on its own scratch; out is a poisoned contiguous [B, nq, C]. */
static float *run_fused_q(const fa_inputs *x, fattn_isa isa, int q8, int threads)
{
    const fa_case *c = &x->c;
    size_t n = (size_t)c->B * c->nq * c->H * c->d;
    float *o = tu_poisoned(n);
    int64_t os[3] = {c->B, c->nq, (int64_t)c->H * c->d};
    dt_tensor to = dt_tensor_view(o, DT_F32, 3, os);
    size_t bytes = fattn_scratch_bytes(c->B, c->nq, c->nk, c->H, c->d, threads);
    void *ws = aligned_alloc(64, (bytes + 63) / 64 * 64);
    assert_non_null(ws);
    fattn_run(&x->q, &x->k, &x->v, c->window < 0 ? &x->bias : NULL, c->H, x->scale, c->window, isa, q8, threads, ws, &to);
    free(ws);
    return o;
}

static float *run_fused(const fa_inputs *x, fattn_isa isa, int threads) { return run_fused_q(x, isa, 0, threads); }

static void describe(const fa_case *c, char *s, size_t n)
{
    snprintf(s, n, "B=%d nq=%d nk=%d H=%d d=%d window=%d mask=%d head_bias=%d", c->B, c->nq, c->nk, c->H, c->d,
             c->window, c->mask, c->head_bias);
}

static void check_case(const fa_case *c, uint64_t seed)
{
    fa_inputs x;
    make_inputs(c, seed, &x);
    size_t n = (size_t)c->B * c->nq * c->H * c->d;
    char what[160];
    describe(c, what, sizeof what);
    float *plain = run_fused(&x, FATTN_ISA_PLAIN, 2);
    double e = tu_rel_l2(plain, x.ref, n);
    if (!(e <= 2e-5)) fail_msg("plain, %s: rel L2 %.3g vs the reference", what, e);
    if (fattn_have_avx2()) {
        float *avx = run_fused(&x, FATTN_ISA_AVX2, 2);
        e = tu_rel_l2(avx, x.ref, n);
        if (!(e <= 2e-5)) fail_msg("avx2, %s: rel L2 %.3g vs the reference", what, e);
        e = tu_rel_l2(avx, plain, n);
        if (!(e <= 1e-5)) fail_msg("avx2 vs plain, %s: rel L2 %.3g", what, e);
        free(avx);
    }
    free(plain);
    free_inputs(&x);
}

/* Hand-picked edges, then random shapes. */
static void test_fused_vs_reference(void **state)
{
    (void)state;
    const fa_case edges[] = {
        {1, 1, 1, 1, 4, -1, 0, 0},       /* one token */
        {2, 17, 17, 3, 5, -1, 1, 0},     /* d < 8, odd N */
        {2, 35, 7, 2, 8, -1, 1, 1},      /* cross-attention shape: nq > nk, mask and head bias */
        {1, 70, 120, 2, 72, -1, 1, 0},   /* PixArt's head size, a 120-token caption */
        {2, 130, 97, 1, 88, -1, 0, 1},   /* d = 88 (Latte): 3 + 1 + 1 PV vectors; two key tiles */
        {1, 200, 200, 2, 24, 0, 0, 0},   /* the diagonal only */
        {2, 37, 37, 3, 8, 5, 0, 0},
        {1, 301, 301, 2, 12, 7, 0, 0},   /* several query blocks */
        {1, 257, 257, 3, 9, 140, 0, 0},  /* band wider than a tile, clamped at both edges */
        {1, 50, 50, 2, 16, 1000, 0, 0},  /* window > N: full */
        {1, 129, 129, 1, 72, 64, 0, 0},
    };
    for (size_t i = 0; i < sizeof edges / sizeof *edges; i++) check_case(&edges[i], 11 + i);
    tu_rng r = {2024};
    const int ds[] = {1, 3, 7, 8, 13, 16, 24, 31, 40, 64, 72, 88};
    for (int t = 0; t < 40; t++) {
        fa_case c;
        c.B = 1 + (int)((tu_uniform(&r) + 1) * 1.5f) % 3;
        c.H = 1 + (int)((tu_uniform(&r) + 1) * 2.0f) % 4;
        c.d = ds[(int)((tu_uniform(&r) + 1) * 6.0f) % 12];
        c.nq = 1 + (int)((tu_uniform(&r) + 1) * 100.0f);
        int band = t % 3 == 0;
        c.nk = band ? c.nq : 1 + (int)((tu_uniform(&r) + 1) * 100.0f);
        c.window = band ? (int)((tu_uniform(&r) + 1) * 0.6f * c.nq) : -1;
        c.mask = !band && tu_uniform(&r) > 0;
        c.head_bias = !band && tu_uniform(&r) > 0;
        check_case(&c, 100 + t);
    }
}

/* int8 QKᵀ (SageAttention-style): within a bound of the float reference on random data, equal
 * (to rounding of the exponentials) between the AVX2 and plain kernels, and insensitive to a
 * common offset of the keys (the smoothing subtracts it; without it the offset would eat the
 * int8 range). Measured here: rel L2 about 5e-3 to 9e-3; the bound leaves 2x. */
#define Q8_BOUND 2e-2
static double q8_error(const fa_case *c, uint64_t seed, float key_offset, fattn_isa isa, float **keep)
{
    fa_inputs x;
    make_inputs(c, seed, &x);
    size_t n = (size_t)c->B * c->nq * c->H * c->d;
    if (key_offset != 0) { /* shift every key: softmax-invariant, so the reference stays */
        int C = c->H * c->d, nmax = c->nq > c->nk ? c->nq : c->nk;
        for (int b = 0; b < c->B; b++)
            for (int j = 0; j < c->nk; j++)
                for (int e = 0; e < C; e++) ((float *)x.k.data)[b * x.k.strides[0] + j * x.k.strides[1] + e] += key_offset * (1 + e % 3);
        (void)nmax;
        dt_tensor tr = dt_tensor_view(x.ref, DT_F32, 3, x.q.shape);
        /* the offset changes q·k by q·offset, the same for every key of a row: same reference */
        if (c->window < 0) ref_attention(&x.q, &x.k, &x.v, &x.bias, c->H, x.scale, &tr);
        else ref_window_attention(&x.q, &x.k, &x.v, c->H, x.scale, c->window, &tr);
    }
    float *o = run_fused_q(&x, isa, 1, 2);
    double e = tu_rel_l2(o, x.ref, n);
    if (keep) *keep = o;
    else free(o);
    free_inputs(&x);
    return e;
}

static void test_int8_qk(void **state)
{
    (void)state;
    const fa_case cs[] = {{2, 150, 150, 3, 72, -1, 0, 0}, {2, 97, 120, 2, 72, -1, 1, 0}, {1, 61, 61, 2, 13, -1, 1, 1},
                          {2, 200, 200, 2, 72, 20, 0, 0}, {1, 90, 90, 3, 88, 0, 0, 0}, {1, 33, 33, 1, 5, -1, 0, 0}};
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) {
        char what[160];
        describe(&cs[i], what, sizeof what);
        float *plain = NULL, *avx = NULL;
        double e = q8_error(&cs[i], 300 + i, 0, FATTN_ISA_PLAIN, &plain);
        double eo = q8_error(&cs[i], 300 + i, 3.0f, FATTN_ISA_PLAIN, NULL);
        print_message("  int8 QK %s: rel L2 %.2e, keys offset by 3 %.2e\n", what, e, eo);
        if (!(e <= Q8_BOUND)) fail_msg("int8 QK, %s: rel L2 %.3g > %.3g", what, e, Q8_BOUND);
        if (!(eo <= 2 * e + 1e-4)) fail_msg("int8 QK, %s: a key offset raised the error %.3g -> %.3g", what, e, eo);
        if (fattn_have_avx2()) {
            double ea = q8_error(&cs[i], 300 + i, 0, FATTN_ISA_AVX2, &avx);
            size_t n = (size_t)cs[i].B * cs[i].nq * cs[i].H * cs[i].d;
            double d = tu_rel_l2(avx, plain, n);
            if (!(d <= 1e-5)) fail_msg("int8 QK avx2 vs plain, %s: rel L2 %.3g (errors %.3g, %.3g)", what, d, ea, e);
            free(avx);
        }
        free(plain);
    }
}

/* Each (pair, query block) is computed by one thread in a fixed order: any thread count gives
 * the same bits. */
static void test_fused_thread_independent(void **state)
{
    (void)state;
    const fa_case cs[] = {{2, 150, 150, 3, 72, -1, 1, 1}, {2, 150, 150, 3, 40, 9, 0, 0}};
    for (int i = 0; i < 2; i++) {
        fa_inputs x;
        make_inputs(&cs[i], 5 + i, &x);
        size_t n = (size_t)cs[i].B * cs[i].nq * cs[i].H * cs[i].d;
        float *a = run_fused(&x, FATTN_ISA_AUTO, 1), *b = run_fused(&x, FATTN_ISA_AUTO, 3);
        assert_memory_equal(a, b, n * sizeof(float));
        free(a); free(b);
        free_inputs(&x);
    }
}

/* Through the backend: GEMM and FUSED backends both match the reference (the GEMM one also
 * with a small score-block bound, so its blocking is exercised), window op included. */
static dt_backend *backend(dt_attn_kernel kind, size_t block)
{
    dt_backend_config cfg = {.device = DT_DEV_CPU, .compute = DT_F32, .attn_block_bytes = block, .attn_kernel = kind};
    dt_backend *be;
    dt_err err = {0};
    if (dt_backend_create(&cfg, &be, &err) != DT_OK) fail_msg("backend: %s", err.msg);
    assert_int_equal(be->cfg.attn_kernel, kind);
    return be;
}

static void check_backend(dt_backend *be, const fa_case *c, uint64_t seed)
{
    fa_inputs x;
    make_inputs(c, seed, &x);
    size_t n = (size_t)c->B * c->nq * c->H * c->d;
    float *o = tu_poisoned(n);
    int64_t os[3] = {c->B, c->nq, (int64_t)c->H * c->d};
    dt_tensor to = dt_tensor_view(o, DT_F32, 3, os);
    dt_err err = {0};
    dt_status s = c->window < 0 ? be->ops->attention(be, &x.q, &x.k, &x.v, &x.bias, c->H, x.scale, &to, &err)
                                : be->ops->window_attention(be, &x.q, &x.k, &x.v, c->H, x.scale, c->window, &to, &err);
    if (s != DT_OK) fail_msg("%s", err.msg);
    char what[160];
    describe(c, what, sizeof what);
    double e = tu_rel_l2(o, x.ref, n);
    if (!(e <= 2e-5)) fail_msg("backend (%s kernel), %s: rel L2 %.3g", be->cfg.attn_kernel == DT_ATTN_KERNEL_FUSED ? "fused" : "gemm", what, e);
    free(o);
    free_inputs(&x);
}

static void test_backend_kernels(void **state)
{
    (void)state;
    const fa_case cs[] = {{2, 33, 19, 3, 8, -1, 1, 1}, {1, 160, 160, 2, 72, -1, 1, 0}, {2, 101, 101, 2, 16, 6, 0, 0},
                          {1, 90, 90, 1, 72, 30, 0, 0}};
    dt_backend *bes[3] = {backend(DT_ATTN_KERNEL_FUSED, 0), backend(DT_ATTN_KERNEL_GEMM, 0),
                          backend(DT_ATTN_KERNEL_GEMM, 19 * 4 * 40)};
    for (int b = 0; b < 3; b++)
        for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) check_backend(bes[b], &cs[i], 70 + i);
    /* the two-GEMM kernel's score-block bounds of test_kernels.c (which now runs the fused default):
     * one pair per group, whole heads, blocks of 32 query rows */
    const size_t blocks[] = {64, 33 * 19 * 4 * 4, 19 * 4 * 40};
    for (int i = 0; i < 3; i++) {
        dt_backend *g = backend(DT_ATTN_KERNEL_GEMM, blocks[i]);
        check_backend(g, &cs[0], 90 + i);
        dt_backend_destroy(g);
    }
    dt_backend *g = backend(DT_ATTN_KERNEL_GEMM, 70 * 4 * 33);
    check_backend(g, &(fa_case){1, 70, 70, 2, 8, -1, 0, 0}, 95);
    dt_backend_destroy(g);
    /* shape errors are refused by the fused entry too */
    float z[8] = {0};
    int64_t s1[3] = {1, 2, 4}, s2[3] = {1, 2, 3};
    dt_tensor a = dt_tensor_view(z, DT_F32, 3, s1), bad = dt_tensor_view(z, DT_F32, 3, s2);
    dt_err err = {0};
    assert_int_equal(bes[0]->ops->attention(bes[0], &a, &bad, &a, NULL, 2, 1.0f, &a, &err), DT_EINVAL);
    assert_non_null(strstr(err.msg, "attention"));
    assert_int_equal(bes[0]->ops->window_attention(bes[0], &a, &a, &a, 2, 1.0f, -1, &a, &err), DT_EINVAL);
    for (int b = 0; b < 3; b++) dt_backend_destroy(bes[b]);
}

/* One op of a backend: attention (window < 0) or window_attention, or attention_with(kind) when
 * with; a poisoned output, caller frees. */
static float *op_out(dt_backend *be, const fa_inputs *x, int with, dt_attn_kernel kind)
{
    const fa_case *c = &x->c;
    size_t n = (size_t)c->B * c->nq * c->H * c->d;
    float *o = tu_poisoned(n);
    int64_t os[3] = {c->B, c->nq, (int64_t)c->H * c->d};
    dt_tensor to = dt_tensor_view(o, DT_F32, 3, os);
    dt_err err = {0};
    const dt_attn_bias *bias = c->window < 0 ? &x->bias : NULL;
    dt_status s = with ? be->ops->attention_with(be, kind, &x->q, &x->k, &x->v, bias, c->H, x->scale, c->window, &to, &err)
                  : c->window < 0 ? be->ops->attention(be, &x->q, &x->k, &x->v, bias, c->H, x->scale, &to, &err)
                                  : be->ops->window_attention(be, &x->q, &x->k, &x->v, c->H, x->scale, c->window, &to, &err);
    if (s != DT_OK) fail_msg("%s", err.msg);
    return o;
}

/* attention_with: the kernel named per call is exactly the kernel a backend configured for it
 * runs (bit for bit), whatever this backend's own kernel is; AUTO is the backend's own op. */
static void test_attention_with(void **state)
{
    (void)state;
    const fa_case cs[] = {{2, 33, 19, 3, 8, -1, 1, 1}, {2, 101, 101, 2, 16, 6, 0, 0}, {1, 70, 70, 2, 24, -1, 0, 0}};
    const dt_attn_kernel kinds[] = {DT_ATTN_KERNEL_GEMM, DT_ATTN_KERNEL_FUSED, DT_ATTN_KERNEL_INT8};
    dt_backend *own[3], *gemm = NULL;
    for (int k = 0; k < 3; k++) own[k] = backend(kinds[k], 0);
    gemm = own[0];
    assert_non_null(gemm->ops->attention_with);
    assert_true(gemm->ops->supports(gemm, DT_OP_ATTENTION, DT_I8));
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) {
        fa_inputs x;
        make_inputs(&cs[i], 300 + i, &x);
        size_t n = (size_t)cs[i].B * cs[i].nq * cs[i].H * cs[i].d, bytes = n * sizeof(float);
        for (int k = 0; k < 3; k++) {
            float *want = op_out(own[k], &x, 0, kinds[k]);
            for (int b = 0; b < 3; b++) { /* named on every backend, whatever its own kernel */
                float *got = op_out(own[b], &x, 1, kinds[k]);
                if (memcmp(got, want, bytes)) fail_msg("case %zu: attention_with(%d) on a backend of kernel %d differs", i, k, b);
                free(got);
            }
            float *aut = op_out(own[k], &x, 1, DT_ATTN_KERNEL_AUTO);
            if (memcmp(aut, want, bytes)) fail_msg("case %zu: attention_with(AUTO) is not the backend's own op", i);
            free(aut);
            /* int8 QKᵀ stays an approximation of the reference; the float kernels match it */
            double e = tu_rel_l2(want, x.ref, n);
            if (!(e <= (kinds[k] == DT_ATTN_KERNEL_INT8 ? 3e-2 : 2e-5))) fail_msg("case %zu kernel %d: rel L2 %.3g", i, k, e);
            if (kinds[k] == DT_ATTN_KERNEL_INT8 && !(e > 1e-6)) fail_msg("case %zu: int8 kernel as exact as f32?", i);
            free(want);
        }
        free_inputs(&x);
    }
    dt_err err = {0};
    fa_inputs x;
    make_inputs(&cs[1], 7, &x);
    int64_t os[3] = {2, 101, 32};
    float *o = tu_alloc(2 * 101 * 32);
    dt_tensor to = dt_tensor_view(o, DT_F32, 3, os);
    dt_attn_bias kb = {x.kbias, NULL};
    assert_int_equal(gemm->ops->attention_with(gemm, DT_ATTN_KERNEL_INT8, &x.q, &x.k, &x.v, &kb, 2, x.scale, 6, &to, &err),
                     DT_EINVAL); /* a window takes no bias */
    err = (dt_err){0};
    assert_int_equal(gemm->ops->attention_with(gemm, (dt_attn_kernel)9, &x.q, &x.k, &x.v, NULL, 2, x.scale, -1, &to, &err),
                     DT_EINVAL);
    if (!strstr(err.msg, "kernel")) fail_msg("message: %s", err.msg);
    free(o);
    free_inputs(&x);
    for (int k = 0; k < 3; k++) dt_backend_destroy(own[k]);
}

/* AUTO: DITRT_ATTN picks, a bad value is a one-line error, unset gives fused for f32. */
static void test_backend_switch(void **state)
{
    (void)state;
    const char *old = getenv("DITRT_ATTN");
    char *saved = old ? strdup(old) : NULL;
    dt_backend_config cfg = {.device = DT_DEV_CPU, .compute = DT_F32};
    dt_backend *be = NULL;
    dt_err err = {0};
    setenv("DITRT_ATTN", "gemm", 1);
    assert_int_equal(dt_backend_create(&cfg, &be, &err), DT_OK);
    assert_int_equal(be->cfg.attn_kernel, DT_ATTN_KERNEL_GEMM);
    dt_backend_destroy(be);
    setenv("DITRT_ATTN", "fused", 1);
    assert_int_equal(dt_backend_create(&cfg, &be, &err), DT_OK);
    assert_int_equal(be->cfg.attn_kernel, DT_ATTN_KERNEL_FUSED);
    dt_backend_destroy(be);
    setenv("DITRT_ATTN", "flash", 1);
    assert_int_equal(dt_backend_create(&cfg, &be, &err), DT_EINVAL);
    assert_non_null(strstr(err.msg, "DITRT_ATTN"));
    cfg.attn_kernel = DT_ATTN_KERNEL_GEMM; /* an explicit choice wins over the variable */
    assert_int_equal(dt_backend_create(&cfg, &be, &err), DT_OK);
    assert_int_equal(be->cfg.attn_kernel, DT_ATTN_KERNEL_GEMM);
    dt_backend_destroy(be);
    unsetenv("DITRT_ATTN");
    cfg.attn_kernel = DT_ATTN_KERNEL_AUTO;
    assert_int_equal(dt_backend_create(&cfg, &be, &err), DT_OK);
    assert_int_equal(be->cfg.attn_kernel, DT_ATTN_KERNEL_FUSED);
    dt_backend_destroy(be);
    if (saved) setenv("DITRT_ATTN", saved, 1);
    free(saved);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fused_vs_reference),
        cmocka_unit_test(test_fused_thread_independent),
        cmocka_unit_test(test_backend_kernels),
        cmocka_unit_test(test_backend_switch),
        cmocka_unit_test(test_int8_qk),
        cmocka_unit_test(test_attention_with),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
