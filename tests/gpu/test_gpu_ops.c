/* `make test-gpu`: every op of the CUDA backend's table against the CPU backend (or its plain-C
 * reference) on random inputs of odd shapes, two backends in two threads, and the golden images
 * and videos regenerated through `--device cuda`. Without a CUDA build or device it prints why
 * and exits 0 (skipped), so it can sit in any CI job. Tolerances: f32 1e-5 relative L2 (GEMMs
 * sum in another order), exact for the elementwise ops whose math is shared with the CPU
 * (elem_math.h; nvcc --fmad=false), bf16 as the CPU's bf16 tests (1.5e-2 against f32 math). */
#include "testutil.h"
#include "kernels/cpu/ref.h"
#include "kernels/quant.h"
#include "kernels/backend_timing.h"
#include <pthread.h>

#define TOL_F32 1e-5
#define TOL_BF16 1.5e-2 /* also f16's bound: f16 keeps 3 more mantissa bits than bf16 */

static dt_backend *cuda_be(dt_dtype t)
{
    dt_backend_config cfg = {.device = DT_DEV_CUDA, .compute = t};
    dt_backend *be = NULL;
    dt_err err = {0};
    if (dt_backend_create(&cfg, &be, &err) != DT_OK) fail_msg("cuda backend: %s", err.msg);
    return be;
}

/* A device tensor holding host[] (any dtype; bytes from the shape). */
static dt_tensor up(dt_backend *be, const void *host, dt_dtype t, int nd, const int64_t *shape)
{
    dt_tensor v = dt_tensor_view(NULL, t, nd, shape);
    void *p = NULL;
    dt_err err = {0};
    if (be->ops->buffer_alloc(be, dt_tensor_nbytes(&v), &p, &err) != DT_OK) fail_msg("%s", err.msg);
    v.data = p;
    v.device = DT_DEV_CUDA;
    if (host && be->ops->tensor_set(be, &v, host, dt_tensor_nbytes(&v), &err) != DT_OK) fail_msg("%s", err.msg);
    return v;
}

static void down(dt_backend *be, const dt_tensor *t, void *host)
{
    dt_err err = {0};
    if (be->ops->tensor_get(be, t, host, dt_tensor_nbytes(t), &err) != DT_OK) fail_msg("%s", err.msg);
}

static void drop(dt_backend *be, dt_tensor *t) { be->ops->buffer_free(be, t->data); }

static float *rnd(tu_rng *r, size_t n, float s)
{
    float *x = tu_alloc(n);
    tu_fill(r, x, n, s);
    return x;
}

/* ---- memory ---- */
static void test_memory_roundtrip(void **state)
{
    (void)state;
    dt_backend *be = cuda_be(DT_F32);
    tu_rng r = {1};
    int64_t s[2] = {3, 1001};
    float *x = rnd(&r, 3003, 1.0f), *y = tu_poisoned(3003);
    dt_tensor a = up(be, x, DT_F32, 2, s), b = up(be, NULL, DT_F32, 2, s);
    dt_err err = {0};
    assert_int_equal(be->ops->copy(be, &a, &b, &err), DT_OK);
    down(be, &b, y);
    assert_memory_equal(x, y, 3003 * 4);
    void *z = NULL;
    assert_int_equal(be->ops->buffer_alloc(be, 0, &z, &err), DT_OK); /* 0 bytes: a valid block */
    be->ops->buffer_free(be, z);
    be->ops->buffer_free(be, NULL);
    drop(be, &a), drop(be, &b);
    free(x), free(y);
    dt_backend_destroy(be);
}

/* Pinned host buffers (host_alloc): a round trip through the device, also through the timing
 * decorator, which passes itself to the inner backend's host_alloc. */
static void test_pinned_host_buffers(void **state)
{
    (void)state;
    for (int timed = 0; timed < 2; timed++) {
        dt_backend *be = cuda_be(DT_F32);
        dt_err err = {0};
        if (timed && dt_backend_timed(be, &be, &err) != DT_OK) fail_msg("%s", err.msg);
        assert_non_null(be->ops->host_alloc);
        float *h = NULL, *back = NULL, *d = NULL;
        assert_int_equal(dt_backend_host_alloc(be, 4099 * sizeof(float), (void **)&h, &err), DT_OK);
        assert_int_equal(dt_backend_host_alloc(be, 4099 * sizeof(float), (void **)&back, &err), DT_OK);
        for (int i = 0; i < 4099; i++) h[i] = (float)i - 17.25f;
        assert_int_equal(dt_backend_upload(be, h, 4099, &d, &err), DT_OK);
        assert_int_equal(dt_backend_read(be, d, back, 4099, &err), DT_OK);
        assert_memory_equal(h, back, 4099 * sizeof(float));
        be->ops->buffer_free(be, d);
        dt_backend_host_free(be, h);
        dt_backend_host_free(be, back);
        dt_backend_destroy(be);
    }
}

/* ---- linears ---- */
static void check_linear(dt_dtype t, int M, int K, int N, dt_act act, int bias)
{
    dt_backend *be = cuda_be(t);
    tu_rng r = {(uint64_t)(M * 7 + K + N + act)};
    float *w = rnd(&r, (size_t)N * K, 0.3f), *b = rnd(&r, N, 0.5f), *x = rnd(&r, (size_t)M * K, 1.0f);
    float *y = tu_poisoned((size_t)M * N), *yr = tu_alloc((size_t)M * N);
    dt_linear *l;
    dt_err err = {0};
    assert_int_equal(be->ops->linear_create(be, w, bias ? b : NULL, K, N, act, M, t, &l, &err), DT_OK);
    int64_t xs[2] = {M, K}, ys[2] = {M, N};
    dt_tensor tx = up(be, x, DT_F32, 2, xs), ty = up(be, NULL, DT_F32, 2, ys);
    for (int rep = 0; rep < 2; rep++) { /* the second call reuses the cached algorithm */
        if (be->ops->linear_forward(be, l, &tx, &ty, &err) != DT_OK) fail_msg("%s", err.msg);
        down(be, &ty, y);
        ref_linear(x, M, K, w, bias ? b : NULL, N, act, yr);
        assert_rel_l2_below(y, yr, (size_t)M * N, t == DT_F32 ? TOL_F32 : TOL_BF16);
    }
    be->ops->linear_destroy(l);
    drop(be, &tx), drop(be, &ty);
    free(w), free(b), free(x), free(y), free(yr);
    dt_backend_destroy(be);
}

static void test_linear(void **state)
{
    (void)state;
    for (int act = 0; act <= DT_ACT_SILU; act++) {
        check_linear(DT_F32, 37, 67, 29, (dt_act)act, act != 1);
        check_linear(DT_BF16, 37, 67, 29, (dt_act)act, 1);
        check_linear(DT_F16, 5, 64, 33, (dt_act)act, 1);
    }
    check_linear(DT_F32, 1, 1, 1, DT_ACT_NONE, 1);
    check_linear(DT_BF16, 257, 1152, 4608 / 8, DT_ACT_GELU_TANH, 1);
    check_linear(DT_F16, 257, 1152, 4608 / 8, DT_ACT_GELU_TANH, 1); /* --dtype f16 */
    check_linear(DT_F16, 3, 77, 41, DT_ACT_SILU, 0);
}

/* f32 linears through TF32 when asked (DITRT_CUDA_TF32=1 at backend creation): within TF32's
 * bounds of the f32 reference; a backend made without the variable stays at the f32 tolerance. */
static void test_linear_tf32(void **state)
{
    (void)state;
    const int M = 64, K = 1024, N = 96;
    tu_rng r = {55};
    float *w = rnd(&r, (size_t)N * K, 0.3f), *x = rnd(&r, (size_t)M * K, 1.0f), *y = tu_alloc((size_t)M * N),
          *y32 = tu_alloc((size_t)M * N), *yr = tu_alloc((size_t)M * N);
    ref_linear(x, M, K, w, NULL, N, DT_ACT_NONE, yr);
    int64_t xs[2] = {M, K}, ys[2] = {M, N};
    dt_err err = {0};
    float *ya = tu_alloc((size_t)M * N);
    for (int tf32 = 0; tf32 < 3; tf32++) { /* f32; --dtype tf32 (cfg.tf32); the DITRT_CUDA_TF32=1 alias */
        if (tf32 == 2) setenv("DITRT_CUDA_TF32", "1", 1);
        dt_backend_config cfg = {.device = DT_DEV_CUDA, .compute = DT_F32, .tf32 = tf32 == 1};
        dt_backend *be = NULL;
        if (dt_backend_create(&cfg, &be, &err) != DT_OK) fail_msg("%s", err.msg);
        unsetenv("DITRT_CUDA_TF32");
        assert_int_equal(be->cfg.tf32, tf32 != 0);
        dt_linear *l;
        assert_int_equal(be->ops->linear_create(be, w, NULL, K, N, DT_ACT_NONE, M, DT_F32, &l, &err), DT_OK);
        dt_tensor tx = up(be, x, DT_F32, 2, xs), ty = up(be, NULL, DT_F32, 2, ys);
        assert_int_equal(be->ops->linear_forward(be, l, &tx, &ty, &err), DT_OK);
        down(be, &ty, tf32 == 1 ? y : tf32 ? ya : y32);
        be->ops->linear_destroy(l);
        drop(be, &tx), drop(be, &ty);
        dt_backend_destroy(be);
    }
    assert_rel_l2_below(y32, yr, (size_t)M * N, TOL_F32);
    assert_rel_l2_below(y, yr, (size_t)M * N, 2e-3);
    double d = 0, n2 = 0;
    for (int i = 0; i < M * N; i++) d += (double)(y[i] - y32[i]) * (y[i] - y32[i]), n2 += (double)y32[i] * y32[i];
    print_message("  TF32 vs f32: relative L2 %.2e\n", sqrt(d / n2));
    assert_memory_equal(y, ya, (size_t)M * N * sizeof(float)); /* the alias is the same mode */
    assert_true(d > 0);                                          /* and TF32 did round */
    free(w), free(x), free(y), free(ya), free(y32), free(yr);
}

/* ---- attention ---- */
static void test_attention(void **state)
{
    (void)state;
    dt_backend *be = cuda_be(DT_F32);
    int B = 2, Nq = 33, Nk = 17, H = 3, d = 8, C = H * d, ld = C + 5; /* q, k, v rows padded */
    tu_rng r = {5};
    float *q = rnd(&r, (size_t)B * Nq * ld, 1.0f), *k = rnd(&r, (size_t)B * Nk * ld, 1.0f), *v = rnd(&r, (size_t)B * Nk * ld, 1.0f);
    float *kb = tu_alloc(B * Nk), *hb = rnd(&r, (size_t)H * Nq * Nk, 1.0f), *o = tu_poisoned((size_t)B * Nq * C), *orf = tu_alloc((size_t)B * Nq * C);
    for (int i = 0; i < B * Nk; i++) kb[i] = i % 4 == 3 ? -10000.0f : 0.0f;
    int64_t qs[3] = {B, Nq, ld}, ks[3] = {B, Nk, ld}, os[3] = {B, Nq, C};
    dt_tensor tq = up(be, q, DT_F32, 3, qs), tk = up(be, k, DT_F32, 3, ks), tv = up(be, v, DT_F32, 3, ks), to = up(be, NULL, DT_F32, 3, os);
    dt_tensor hq = dt_tensor_view(q, DT_F32, 3, qs), hk = dt_tensor_view(k, DT_F32, 3, ks), hv = dt_tensor_view(v, DT_F32, 3, ks);
    dt_tensor ho = dt_tensor_view(orf, DT_F32, 3, os);
    /* views of the first C channels of the padded rows */
    tq.shape[2] = tk.shape[2] = tv.shape[2] = hq.shape[2] = hk.shape[2] = hv.shape[2] = C;
    dt_err err = {0};
    for (int with_bias = 0; with_bias < 2; with_bias++)
        for (int blocks = 0; blocks < 2; blocks++) {
            dt_attn_bias bias = {kb, hb};
            be->cfg.attn_block_bytes = blocks ? (size_t)H * 5 * Nk * 4 : 0; /* 5 query rows per block */
            if (be->ops->attention(be, &tq, &tk, &tv, with_bias ? &bias : NULL, H, 0.35f, &to, &err) != DT_OK)
                fail_msg("%s", err.msg);
            down(be, &to, o);
            ref_attention(&hq, &hk, &hv, with_bias ? &bias : NULL, H, 0.35f, &ho);
            assert_rel_l2_below(o, orf, (size_t)B * Nq * C, TOL_F32);
        }
    drop(be, &tq), drop(be, &tk), drop(be, &tv), drop(be, &to);
    free(q), free(k), free(v), free(kb), free(hb), free(o), free(orf);
    dt_backend_destroy(be);
}

/* cuDNN's fused SDPA (bf16 compute, attn_kernel fused) against the two-GEMM path (attn_kernel
 * gemm) and the f32 reference, for each bias combination, on PixArt-like (d 72, caption mask)
 * and T5-like (d 64, per-head bias) shapes of odd sizes. The fused path rounds Q, K, V and P to
 * bf16, so it must differ from the two-GEMM (f32) result: equal outputs would mean it fell
 * back silently. Run twice: the cached plan gives the same bits. */
static void check_attention_cudnn(dt_dtype ct, int B, int Nq, int Nk, int H, int d)
{
    dt_backend_config cf = {.device = DT_DEV_CUDA, .compute = ct, .attn_kernel = DT_ATTN_KERNEL_FUSED};
    dt_backend_config cg = cf;
    cg.attn_kernel = DT_ATTN_KERNEL_GEMM;
    dt_backend *bf = NULL, *bg = NULL;
    dt_err err = {0};
    if (dt_backend_create(&cf, &bf, &err) != DT_OK || dt_backend_create(&cg, &bg, &err) != DT_OK) fail_msg("%s", err.msg);
    int C = H * d;
    size_t no = (size_t)B * Nq * C;
    tu_rng r = {(uint64_t)(70 + d)};
    float *q = rnd(&r, no, 1.0f), *k = rnd(&r, (size_t)B * Nk * C, 1.0f), *v = rnd(&r, (size_t)B * Nk * C, 1.0f);
    float *kb = tu_alloc(B * Nk), *hb = rnd(&r, (size_t)H * Nq * Nk, 2.0f);
    float *of = tu_poisoned(no), *of2 = tu_poisoned(no), *og = tu_poisoned(no), *orf = tu_alloc(no);
    for (int i = 0; i < B * Nk; i++) kb[i] = i % Nk >= Nk - 1 - i / Nk ? -10000.0f : 0.0f;
    int64_t qs[3] = {B, Nq, C}, ks[3] = {B, Nk, C};
    dt_tensor hq = dt_tensor_view(q, DT_F32, 3, qs), hk = dt_tensor_view(k, DT_F32, 3, ks), hv = dt_tensor_view(v, DT_F32, 3, ks);
    dt_tensor ho = dt_tensor_view(orf, DT_F32, 3, qs);
    dt_backend *be[2] = {bf, bg};
    dt_tensor t[2][4];
    for (int i = 0; i < 2; i++) {
        t[i][0] = up(be[i], q, DT_F32, 3, qs), t[i][1] = up(be[i], k, DT_F32, 3, ks);
        t[i][2] = up(be[i], v, DT_F32, 3, ks), t[i][3] = up(be[i], NULL, DT_F32, 3, qs);
    }
    for (int m = 0; m < 4; m++) {
        dt_attn_bias bias = {m & 1 ? kb : NULL, m & 2 ? hb : NULL};
        const dt_attn_bias *pb = m ? &bias : NULL;
        for (int i = 0; i < 2; i++)
            for (int rep = 0; rep < 2 - i; rep++) {
                if (be[i]->ops->attention(be[i], &t[i][0], &t[i][1], &t[i][2], pb, H, 0.2f, &t[i][3], &err) != DT_OK)
                    fail_msg("%s", err.msg);
                down(be[i], &t[i][3], i ? og : rep ? of2 : of);
            }
        ref_attention(&hq, &hk, &hv, pb, H, 0.2f, &ho);
        assert_rel_l2_below(og, orf, no, TOL_F32);
        assert_rel_l2_below(of, orf, no, TOL_BF16);
        assert_memory_equal(of, of2, no * sizeof(float));
        if (!memcmp(of, og, no * sizeof(float))) fail_msg("cuDNN SDPA output equals the two-GEMM output: fell back?");
        double dd = 0, n2 = 0;
        for (size_t i = 0; i < no; i++) dd += (double)(of[i] - orf[i]) * (of[i] - orf[i]), n2 += (double)orf[i] * orf[i];
        print_message("  cuDNN SDPA %s B%d Nq%d Nk%d H%d d%d bias %d: relative L2 to f32 %.2e\n", dt_dtype_name(ct), B,
                      Nq, Nk, H, d, m, sqrt(dd / n2));
    }
    for (int i = 0; i < 2; i++) {
        for (int j = 0; j < 4; j++) drop(be[i], &t[i][j]);
        dt_backend_destroy(be[i]);
    }
    free(q), free(k), free(v), free(kb), free(hb), free(of), free(of2), free(og), free(orf);
}

static void test_attention_cudnn(void **state)
{
    (void)state;
    check_attention_cudnn(DT_BF16, 2, 77, 45, 2, 72); /* PixArt's head dim */
    check_attention_cudnn(DT_BF16, 1, 33, 33, 3, 64); /* T5's */
    check_attention_cudnn(DT_F16, 2, 77, 45, 2, 72);  /* --dtype f16: the f16 graph */
    check_attention_cudnn(DT_F16, 1, 33, 33, 3, 64);
}

static void check_window(int H, int d)
{
    dt_backend *be = cuda_be(DT_F32);
    int B = 2, N = 41, C = H * d;
    tu_rng r = {(uint64_t)(6 + d)};
    float *q = rnd(&r, (size_t)B * N * C, 1.0f), *k = rnd(&r, (size_t)B * N * C, 1.0f), *v = rnd(&r, (size_t)B * N * C, 1.0f);
    float *o = tu_poisoned((size_t)B * N * C), *orf = tu_alloc((size_t)B * N * C);
    int64_t s[3] = {B, N, C};
    dt_tensor tq = up(be, q, DT_F32, 3, s), tk = up(be, k, DT_F32, 3, s), tv = up(be, v, DT_F32, 3, s), to = up(be, NULL, DT_F32, 3, s);
    dt_tensor hq = dt_tensor_view(q, DT_F32, 3, s), hk = dt_tensor_view(k, DT_F32, 3, s), hv = dt_tensor_view(v, DT_F32, 3, s), ho = dt_tensor_view(orf, DT_F32, 3, s);
    dt_err err = {0};
    const int ws[] = {0, 3, 40};
    for (int i = 0; i < 3; i++) {
        if (be->ops->window_attention(be, &tq, &tk, &tv, H, 0.12f, ws[i], &to, &err) != DT_OK) fail_msg("%s", err.msg);
        down(be, &to, o);
        ref_window_attention(&hq, &hk, &hv, H, 0.12f, ws[i], &ho);
        assert_rel_l2_below(o, orf, (size_t)B * N * C, TOL_F32);
    }
    drop(be, &tq), drop(be, &tk), drop(be, &tv), drop(be, &to);
    free(q), free(k), free(v), free(o), free(orf);
    dt_backend_destroy(be);
}

/* head dims through every register-count instance of the kernel (1, 2, 3, 4, 8 channels a lane) */
static void test_window_attention(void **state)
{
    (void)state;
    check_window(2, 72); /* PixArt */
    check_window(3, 8);
    check_window(1, 64);
    check_window(2, 100);
    check_window(1, 130);
}

/* ---- rows and elements: the CUDA op against the CPU backend's op on the same inputs ---- */
typedef struct {
    dt_backend *g, *c;
} pair;

static pair pair_new(void) { return (pair){cuda_be(DT_F32), tu_backend(DT_F32)}; }
static void pair_free(pair *p) { dt_backend_destroy(p->g); dt_backend_destroy(p->c); }

static void expect_close(const float *a, const float *b, size_t n, double tol)
{
    if (tol == 0) assert_memory_equal(a, b, n * sizeof(float));
    else assert_rel_l2_below(a, b, n, tol);
}

static void test_rows_and_elements(void **state)
{
    (void)state;
    pair p = pair_new();
    dt_err err = {0};
    tu_rng r = {7};
    int B = 2, N = 13, C = 37;
    size_t n = (size_t)B * N * C;
    int64_t s3[3] = {B, N, C}, s2[2] = {B, C};
    float *x = rnd(&r, n, 3.0f), *y = rnd(&r, n, 1.0f), *sh = rnd(&r, B * C, 1.0f), *sc = rnd(&r, B * C, 1.0f);
    float *og = tu_poisoned(n), *oc = tu_alloc(n);
    dt_tensor gx = up(p.g, x, DT_F32, 3, s3), gy = up(p.g, y, DT_F32, 3, s3), gsh = up(p.g, sh, DT_F32, 2, s2), gsc = up(p.g, sc, DT_F32, 2, s2);
    dt_tensor go = up(p.g, NULL, DT_F32, 3, s3);
    dt_tensor hx = dt_tensor_view(x, DT_F32, 3, s3), hsh = dt_tensor_view(sh, DT_F32, 2, s2), hsc = dt_tensor_view(sc, DT_F32, 2, s2);
    dt_tensor ho = dt_tensor_view(oc, DT_F32, 3, s3);
    /* LayerNorm + modulate */
    assert_int_equal(p.g->ops->layernorm_modulate(p.g, &gx, &gsh, &gsc, 1e-6f, &go, &err), DT_OK);
    assert_int_equal(p.c->ops->layernorm_modulate(p.c, &hx, &hsh, &hsc, 1e-6f, &ho, &err), DT_OK);
    down(p.g, &go, og);
    expect_close(og, oc, n, TOL_F32);
    /* gated residual: x + gate·y, in place on a copy of x */
    memcpy(oc, x, n * 4);
    dt_tensor hy = dt_tensor_view(y, DT_F32, 3, s3);
    assert_int_equal(p.g->ops->copy(p.g, &gx, &go, &err), DT_OK);
    assert_int_equal(p.g->ops->gated_add(p.g, &go, &gy, &gsc, &err), DT_OK);
    assert_int_equal(p.c->ops->gated_add(p.c, &ho, &hy, &hsc, &err), DT_OK);
    down(p.g, &go, og);
    expect_close(og, oc, n, 0);
    /* activations: exact (shared math) */
    for (int act = 1; act <= 2; act++) {
        assert_int_equal(p.g->ops->activation(p.g, (dt_act)act, &gx, &go, &err), DT_OK);
        assert_int_equal(p.c->ops->activation(p.c, (dt_act)act, &hx, &ho, &err), DT_OK);
        down(p.g, &go, og);
        expect_close(og, oc, n, 0);
    }
    /* add_rows (a [C] row over [B, N, C]), sub, cfg_combine: exact */
    int64_t sr[1] = {C};
    dt_tensor gr = up(p.g, sh, DT_F32, 1, sr), hr = dt_tensor_view(sh, DT_F32, 1, sr);
    assert_int_equal(p.g->ops->add_rows(p.g, &gx, &gr, &go, &err), DT_OK);
    assert_int_equal(p.c->ops->add_rows(p.c, &hx, &hr, &ho, &err), DT_OK);
    down(p.g, &go, og);
    expect_close(og, oc, n, 0);
    assert_int_equal(p.g->ops->sub(p.g, &gx, &gy, &go, &err), DT_OK);
    assert_int_equal(p.c->ops->sub(p.c, &hx, &hy, &ho, &err), DT_OK);
    down(p.g, &go, og);
    expect_close(og, oc, n, 0);
    int64_t sf[2] = {B, N * C};
    dt_tensor gu = gx, gc = gy, gf = go, hu = hx, hc = hy, hf = ho;
    gu.ndim = gc.ndim = gf.ndim = hu.ndim = hc.ndim = hf.ndim = 2;
    for (int i = 0; i < 2; i++) {
        gu.shape[i] = gc.shape[i] = gf.shape[i] = hu.shape[i] = hc.shape[i] = hf.shape[i] = sf[i];
        gu.strides[i] = gc.strides[i] = gf.strides[i] = hu.strides[i] = hc.strides[i] = hf.strides[i] = i ? 1 : N * C;
    }
    assert_int_equal(p.g->ops->cfg_combine(p.g, &gu, &gc, 4.5f, &gf, &err), DT_OK);
    assert_int_equal(p.c->ops->cfg_combine(p.c, &hu, &hc, 4.5f, &hf, &err), DT_OK);
    down(p.g, &go, og);
    expect_close(og, oc, n, 0);
    /* repeat_rows: each sample 3 times */
    float *rg = tu_poisoned(3 * n), *rc = tu_alloc(3 * n);
    int64_t s3r[3] = {3 * B, N, C};
    dt_tensor grr = up(p.g, NULL, DT_F32, 3, s3r), hrr = dt_tensor_view(rc, DT_F32, 3, s3r);
    assert_int_equal(p.g->ops->repeat_rows(p.g, &gx, 3, &grr, &err), DT_OK);
    assert_int_equal(p.c->ops->repeat_rows(p.c, &hx, 3, &hrr, &err), DT_OK);
    down(p.g, &grr, rg);
    expect_close(rg, rc, 3 * n, 0);
    /* T5: rms_norm (host weights) and the gated FFN activation over [M, 2F] */
    int64_t sm[2] = {B * N, C};
    dt_tensor gm = gx, hm = hx;
    gm.ndim = hm.ndim = 2;
    gm.shape[0] = hm.shape[0] = sm[0], gm.shape[1] = hm.shape[1] = sm[1];
    gm.strides[0] = hm.strides[0] = C, gm.strides[1] = hm.strides[1] = 1;
    dt_tensor gmo = go, hmo = ho;
    gmo.ndim = hmo.ndim = 2;
    gmo.shape[0] = hmo.shape[0] = sm[0], gmo.shape[1] = hmo.shape[1] = sm[1];
    gmo.strides[0] = hmo.strides[0] = C, gmo.strides[1] = hmo.strides[1] = 1;
    assert_int_equal(p.g->ops->rms_norm(p.g, &gm, sc, 1e-6f, &gmo, &err), DT_OK);
    assert_int_equal(p.c->ops->rms_norm(p.c, &hm, sc, 1e-6f, &hmo, &err), DT_OK);
    down(p.g, &go, og);
    expect_close(og, oc, n, TOL_F32);
    int64_t sx2[2] = {B * N, 2 * 18}, sy2[2] = {B * N, 18}; /* 2F <= C: inside x */
    dt_tensor gx2 = up(p.g, x, DT_F32, 2, sx2), gy2 = up(p.g, NULL, DT_F32, 2, sy2);
    dt_tensor hx2 = dt_tensor_view(x, DT_F32, 2, sx2), hy2 = dt_tensor_view(oc, DT_F32, 2, sy2);
    assert_int_equal(p.g->ops->gated_act(p.g, DT_ACT_GELU_TANH, &gx2, &gy2, &err), DT_OK);
    assert_int_equal(p.c->ops->gated_act(p.c, DT_ACT_GELU_TANH, &hx2, &hy2, &err), DT_OK);
    down(p.g, &gy2, og);
    expect_close(og, oc, (size_t)B * N * 18, TOL_F32);
    /* the U-Net's GEGLU (gate in the second half) with the exact GELU */
    assert_int_equal(p.g->ops->geglu(p.g, DT_ACT_GELU_ERF, &gx2, &gy2, &err), DT_OK);
    assert_int_equal(p.c->ops->geglu(p.c, DT_ACT_GELU_ERF, &hx2, &hy2, &err), DT_OK);
    down(p.g, &gy2, og);
    expect_close(og, oc, (size_t)B * N * 18, TOL_F32);
    drop(p.g, &gx), drop(p.g, &gy), drop(p.g, &gsh), drop(p.g, &gsc), drop(p.g, &go), drop(p.g, &gr), drop(p.g, &grr);
    drop(p.g, &gx2), drop(p.g, &gy2);
    free(x), free(y), free(sh), free(sc), free(og), free(oc), free(rg), free(rc);
    pair_free(&p);
}

static void test_patchify(void **state)
{
    (void)state;
    pair p = pair_new();
    dt_err err = {0};
    tu_rng r = {8};
    int B = 2, C = 3, P = 2, h = 5, w = 3, n = B * C * h * P * w * P;
    float *x = rnd(&r, n, 1.0f), *og = tu_poisoned(n), *oc = tu_alloc(n);
    int64_t sx[4] = {B, C, h * P, w * P}, sy[2] = {B * h * w, C * P * P}, su[3] = {B, h * w, P * P * C};
    dt_tensor gx = up(p.g, x, DT_F32, 4, sx), gy = up(p.g, NULL, DT_F32, 2, sy);
    dt_tensor hx = dt_tensor_view(x, DT_F32, 4, sx), hy = dt_tensor_view(oc, DT_F32, 2, sy);
    assert_int_equal(p.g->ops->patchify(p.g, &gx, P, &gy, &err), DT_OK);
    assert_int_equal(p.c->ops->patchify(p.c, &hx, P, &hy, &err), DT_OK);
    down(p.g, &gy, og);
    expect_close(og, oc, n, 0);
    dt_tensor gu = up(p.g, x, DT_F32, 3, su), hu = dt_tensor_view(x, DT_F32, 3, su), hz = dt_tensor_view(oc, DT_F32, 4, sx);
    assert_int_equal(p.g->ops->unpatchify(p.g, &gu, P, h, w, &gx, &err), DT_OK);
    assert_int_equal(p.c->ops->unpatchify(p.c, &hu, P, h, w, &hz, &err), DT_OK);
    down(p.g, &gx, og);
    expect_close(og, oc, n, 0);
    drop(p.g, &gx), drop(p.g, &gy), drop(p.g, &gu);
    free(x), free(og), free(oc);
    pair_free(&p);
}

/* ---- VAE ops ---- */
static void check_conv(dt_dtype t, int cin, int cout, int k, int stride, int lo, int hi, int acc)
{
    dt_backend *g = cuda_be(t);
    tu_rng r = {(uint64_t)(cin * 31 + cout + k + stride + lo + hi + acc)};
    int B = 2, H = 9, W = 7, Ho = (H + lo + hi - k) / stride + 1, Wo = (W + lo + hi - k) / stride + 1;
    size_t nx = (size_t)B * H * W * cin, ny = (size_t)B * Ho * Wo * cout;
    float *w = rnd(&r, (size_t)cout * cin * k * k, 0.3f), *b = rnd(&r, cout, 0.5f), *x = rnd(&r, nx, 1.0f);
    float *y0 = rnd(&r, ny, 1.0f), *og = tu_poisoned(ny), *oc = tu_alloc(ny);
    int64_t sx[4] = {B, H, W, cin}, sy[4] = {B, Ho, Wo, cout};
    dt_conv2d *cv;
    dt_err err = {0};
    if (g->ops->conv2d_create(g, w, b, cin, cout, k, stride, lo, hi, t, &cv, &err) != DT_OK) fail_msg("%s", err.msg);
    dt_tensor gx = up(g, x, DT_F32, 4, sx), gy = up(g, y0, DT_F32, 4, sy);
    if (g->ops->conv2d_forward(g, cv, &gx, &gy, acc, &err) != DT_OK) fail_msg("%s", err.msg);
    down(g, &gy, og);
    memcpy(oc, y0, ny * 4);
    dt_tensor hx = dt_tensor_view(x, DT_F32, 4, sx), hy = dt_tensor_view(oc, DT_F32, 4, sy);
    ref_conv2d(&hx, w, b, k, stride, lo, hi, acc, &hy);
    assert_rel_l2_below(og, oc, ny, t == DT_F32 ? TOL_F32 : TOL_BF16);
    g->ops->conv2d_destroy(cv);
    drop(g, &gx), drop(g, &gy);
    free(w), free(b), free(x), free(y0), free(og), free(oc);
    dt_backend_destroy(g);
}

static void test_conv2d(void **state)
{
    (void)state;
    check_conv(DT_F32, 5, 7, 3, 1, 1, 1, 0);
    check_conv(DT_F32, 5, 7, 3, 1, 1, 1, 1);
    check_conv(DT_F32, 3, 4, 3, 2, 0, 1, 0); /* asymmetric padding: the VAE encoder's downsampling */
    check_conv(DT_F32, 6, 5, 1, 1, 0, 0, 1);
    check_conv(DT_BF16, 5, 7, 3, 1, 1, 1, 0);
    check_conv(DT_F16, 5, 7, 3, 1, 1, 1, 0);
    check_conv(DT_F16, 3, 4, 3, 2, 0, 1, 1);
}

/* f16 storage of the VAE's normalized activations (--dtype f16): GroupNorm+SiLU and the 2x
 * upsampling write f16, copy4d reads it back; each equals the f32 result rounded to f16 (the
 * CPU's dt_f32_to_f16) up to the f32 GroupNorm's own tolerance, the copies bit for bit. */
static void test_f16_storage(void **state)
{
    (void)state;
    dt_backend *g = cuda_be(DT_F16);
    dt_err err = {0};
    tu_rng r = {19};
    int B = 2, H = 5, W = 3, C = 12;
    size_t n = (size_t)B * H * W * C;
    int64_t s[4] = {B, H, W, C}, s2[4] = {B, 2 * H, 2 * W, C}, sv[1] = {C};
    float *x = rnd(&r, n, 2.0f), *gm = rnd(&r, C, 1.0f), *bt = rnd(&r, C, 1.0f), *o32 = tu_alloc(4 * n), *o16 = tu_alloc(4 * n);
    dt_tensor gx = up(g, x, DT_F32, 4, s), gg = up(g, gm, DT_F32, 1, sv), gb = up(g, bt, DT_F32, 1, sv);
    dt_tensor g32 = up(g, NULL, DT_F32, 4, s), g16 = up(g, NULL, DT_F16, 4, s), gback = up(g, NULL, DT_F32, 4, s);
    dt_tensor u16 = up(g, NULL, DT_F16, 4, s2), uback = up(g, NULL, DT_F32, 4, s2);
    assert_int_equal(g->ops->supports(g, DT_OP_GROUP_NORM, DT_F16), 1);
    assert_int_equal(g->ops->group_norm(g, &gx, 4, &gg, &gb, 1e-6f, DT_ACT_SILU, &g32, &err), DT_OK);
    assert_int_equal(g->ops->group_norm(g, &gx, 4, &gg, &gb, 1e-6f, DT_ACT_SILU, &g16, &err), DT_OK);
    assert_int_equal(g->ops->copy4d(g, &g16, &gback, &err), DT_OK);
    down(g, &g32, o32);
    down(g, &gback, o16);
    for (size_t i = 0; i < n; i++) o32[i] = dt_f16_to_f32(dt_f32_to_f16(o32[i]));
    assert_memory_equal(o16, o32, n * sizeof(float)); /* one kernel's f32 value, rounded on either side */
    if (g->ops->upsample_nearest2x(g, &gx, &u16, &err) != DT_OK) fail_msg("%s", err.msg);
    assert_int_equal(g->ops->copy4d(g, &u16, &uback, &err), DT_OK);
    down(g, &uback, o16);
    for (int64_t b = 0; b < B; b++)
        for (int64_t y = 0; y < 2 * H; y++)
            for (int64_t xx = 0; xx < 2 * W; xx++)
                for (int64_t c = 0; c < C; c++) {
                    float want = dt_f16_to_f32(dt_f32_to_f16(x[((b * H + y / 2) * W + xx / 2) * C + c]));
                    assert_true(o16[((b * 2 * H + y) * 2 * W + xx) * C + c] == want);
                }
    drop(g, &gx), drop(g, &gg), drop(g, &gb), drop(g, &g32), drop(g, &g16), drop(g, &gback), drop(g, &u16), drop(g, &uback);
    free(x), free(gm), free(bt), free(o32), free(o16);
    dt_backend_destroy(g);
}

static void test_image_ops(void **state)
{
    (void)state;
    pair p = pair_new();
    dt_err err = {0};
    tu_rng r = {9};
    int B = 2, H = 5, W = 3, C = 12;
    size_t n = (size_t)B * H * W * C;
    int64_t s[4] = {B, H, W, C}, s2[4] = {B, 2 * H, 2 * W, C}, sv[1] = {C};
    float *x = rnd(&r, n, 2.0f), *gm = rnd(&r, C, 1.0f), *bt = rnd(&r, C, 1.0f), *og = tu_poisoned(4 * n), *oc = tu_alloc(4 * n);
    dt_tensor gx = up(p.g, x, DT_F32, 4, s), gg = up(p.g, gm, DT_F32, 1, sv), gb = up(p.g, bt, DT_F32, 1, sv);
    dt_tensor go = up(p.g, NULL, DT_F32, 4, s), gup = up(p.g, NULL, DT_F32, 4, s2);
    dt_tensor hx = dt_tensor_view(x, DT_F32, 4, s), hg = dt_tensor_view(gm, DT_F32, 1, sv), hb = dt_tensor_view(bt, DT_F32, 1, sv);
    dt_tensor ho = dt_tensor_view(oc, DT_F32, 4, s), hup = dt_tensor_view(oc, DT_F32, 4, s2);
    assert_int_equal(p.g->ops->group_norm(p.g, &gx, 4, &gg, &gb, 1e-6f, DT_ACT_SILU, &go, &err), DT_OK);
    assert_int_equal(p.c->ops->group_norm(p.c, &hx, 4, &hg, &hb, 1e-6f, DT_ACT_SILU, &ho, &err), DT_OK);
    down(p.g, &go, og);
    expect_close(og, oc, n, TOL_F32);
    assert_int_equal(p.g->ops->upsample_nearest2x(p.g, &gx, &gup, &err), DT_OK);
    assert_int_equal(p.c->ops->upsample_nearest2x(p.c, &hx, &hup, &err), DT_OK);
    down(p.g, &gup, og);
    expect_close(og, oc, 4 * n, 0);
    /* copy4d: a strided crop [B, H-2, W-1, C] of x into a contiguous tensor, f32 -> bf16 -> f32 */
    int64_t sc[4] = {B, H - 2, W - 1, C};
    dt_tensor gsrc = gx, hsrc = hx;
    for (int i = 0; i < 4; i++) gsrc.shape[i] = hsrc.shape[i] = sc[i];
    dt_tensor gbf = up(p.g, NULL, DT_BF16, 4, sc), gcr = up(p.g, NULL, DT_F32, 4, sc);
    uint16_t *bc = malloc(n * 2);
    dt_tensor hbf = dt_tensor_view(bc, DT_BF16, 4, sc), hcr = dt_tensor_view(oc, DT_F32, 4, sc);
    assert_int_equal(p.g->ops->copy4d(p.g, &gsrc, &gbf, &err), DT_OK);
    assert_int_equal(p.g->ops->copy4d(p.g, &gbf, &gcr, &err), DT_OK);
    assert_int_equal(p.c->ops->copy4d(p.c, &hsrc, &hbf, &err), DT_OK);
    assert_int_equal(p.c->ops->copy4d(p.c, &hbf, &hcr, &err), DT_OK);
    down(p.g, &gcr, og);
    expect_close(og, oc, (size_t)B * (H - 2) * (W - 1) * C, 0);
    /* blend_edge along H with extent 3: b = go (GroupNorm output), a = x */
    down(p.g, &go, oc);
    dt_tensor hb2 = dt_tensor_view(oc, DT_F32, 4, s);
    assert_int_equal(p.g->ops->blend_edge(p.g, &gx, &go, 1, 3, &err), DT_OK);
    assert_int_equal(p.c->ops->blend_edge(p.c, &hx, &hb2, 1, 3, &err), DT_OK);
    down(p.g, &go, og);
    expect_close(og, oc, n, 0);
    drop(p.g, &gx), drop(p.g, &gg), drop(p.g, &gb), drop(p.g, &go), drop(p.g, &gup), drop(p.g, &gbf), drop(p.g, &gcr);
    free(x), free(gm), free(bt), free(og), free(oc), free(bc);
    pair_free(&p);
}

/* GroupNorm of a large image: several blocks per group (partial sums), in place and into bf16 */
static void test_group_norm_large(void **state)
{
    (void)state;
    pair p = pair_new();
    const int B = 1, H = 256, W = 192, C = 128, G = 32;
    const size_t n = (size_t)B * H * W * C;
    tu_rng r = {77};
    float *x = rnd(&r, n, 2.0f), *gm = rnd(&r, C, 1.0f), *bt = rnd(&r, C, 1.0f), *og = tu_alloc(n), *oc = tu_alloc(n);
    for (size_t i = 0; i < n; i++) x[i] += 3.0f;
    int64_t s[4] = {B, H, W, C}, sv[1] = {C};
    dt_tensor gx = up(p.g, x, DT_F32, 4, s), gg = up(p.g, gm, DT_F32, 1, sv), gb = up(p.g, bt, DT_F32, 1, sv);
    dt_tensor hx = dt_tensor_view(x, DT_F32, 4, s), hg = dt_tensor_view(gm, DT_F32, 1, sv), hb = dt_tensor_view(bt, DT_F32, 1, sv);
    dt_tensor ho = dt_tensor_view(oc, DT_F32, 4, s);
    dt_err err = {0};
    assert_int_equal(p.c->ops->group_norm(p.c, &hx, G, &hg, &hb, 1e-6f, DT_ACT_SILU, &ho, &err), DT_OK);
    assert_int_equal(p.g->ops->group_norm(p.g, &gx, G, &gg, &gb, 1e-6f, DT_ACT_SILU, &gx, &err), DT_OK); /* in place */
    down(p.g, &gx, og);
    expect_close(og, oc, n, TOL_F32);
    drop(p.g, &gx), drop(p.g, &gg), drop(p.g, &gb);
    free(x), free(gm), free(bt), free(og), free(oc);
    pair_free(&p);
}

/* ---- quantized linears: the same layer on both backends gives the same bits (cuda_qlinear.cu:
 * the int8 GEMMs are exact, every float step is the CPU's; the CPU's int8 GEMM is exact at any K,
 * through gemm_s8 without VNNI), MixDQ's float rows to the f32 tolerance, calibration maxima exactly ---- */
typedef struct {
    int B, T, K, N, wbits, group, smooth, rotate, act, bias, keep;
} qcase;

static void check_qlinear(const qcase *c)
{
    pair p = pair_new();
    const int M = c->B * c->T, K = c->K, N = c->N;
    tu_rng r = {(uint64_t)(K * 31 + N + c->wbits + c->keep)};
    float *w = rnd(&r, (size_t)N * K, 0.2f), *b = rnd(&r, N, 0.5f), *x = rnd(&r, (size_t)M * K, 3.0f);
    float *am = tu_alloc(K), *s = tu_alloc(K), *yg = tu_poisoned((size_t)M * N), *yc = tu_poisoned((size_t)M * N);
    for (int j = 0; j < K; j++) am[j] = fabsf(x[j]) + 0.5f;
    dt_smooth_factors(w, K, N, am, 0.5f, s);
    dt_qweights qw;
    dt_err err = {0};
    assert_int_equal(dt_qweights_make(w, K, N, c->wbits, c->group, c->smooth ? s : NULL, c->rotate ? 7 : 0, &qw, &err), DT_OK);
    dt_linear *lg = NULL, *lc = NULL;
    const float *bias = c->bias ? b : NULL;
    if (p.g->ops->qlinear_create(p.g, &qw, bias, (dt_act)c->act, M, &lg, &err) != DT_OK) fail_msg("%s", err.msg);
    assert_int_equal(p.c->ops->qlinear_create(p.c, &qw, bias, (dt_act)c->act, M, &lc, &err), DT_OK);
    const int toks[3] = {0, 2, 1000}; /* 1000: beyond T, skipped as on the CPU */
    if (c->keep) {
        dt_linear *fg, *fc;
        assert_int_equal(p.g->ops->linear_create(p.g, w, bias, K, N, (dt_act)c->act, 8, DT_F32, &fg, &err), DT_OK);
        assert_int_equal(p.c->ops->linear_create(p.c, w, bias, K, N, (dt_act)c->act, 8, DT_F32, &fc, &err), DT_OK);
        assert_int_equal(p.g->ops->qlinear_keep_tokens(p.g, lg, fg, toks, 3, &err), DT_OK);
        assert_int_equal(p.c->ops->qlinear_keep_tokens(p.c, lc, fc, toks, 3, &err), DT_OK);
    }
    int64_t xs[3] = {c->B, c->T, K}, ys[3] = {c->B, c->T, N};
    dt_tensor gx = up(p.g, x, DT_F32, 3, xs), gy = up(p.g, NULL, DT_F32, 3, ys);
    dt_tensor cx = dt_tensor_view(x, DT_F32, 3, xs), cy = dt_tensor_view(yc, DT_F32, 3, ys);
    for (int rep = 0; rep < 2; rep++) { /* the second call reuses the cached GEMM algorithm */
        if (p.g->ops->linear_forward(p.g, lg, &gx, &gy, &err) != DT_OK) fail_msg("%s", err.msg);
        down(p.g, &gy, yg);
    }
    assert_int_equal(p.c->ops->linear_forward(p.c, lc, &cx, &cy, &err), DT_OK);
    for (int m = 0; m < M; m++) {
        int t = m % c->T, kept = c->keep && (t == 0 || t == 2);
        if (!kept && memcmp(yg + (size_t)m * N, yc + (size_t)m * N, (size_t)N * 4))
            fail_msg("W%d K %d N %d: row %d differs from the CPU's", c->wbits, K, N, m);
    }
    assert_rel_l2_below(yg, yc, (size_t)M * N, TOL_F32);
    p.g->ops->linear_destroy(lg);
    p.c->ops->linear_destroy(lc);
    dt_qweights_free(&qw);
    drop(p.g, &gx), drop(p.g, &gy);
    free(w), free(b), free(x), free(am), free(s), free(yg), free(yc);
    pair_free(&p);
}

static void test_qlinear(void **state)
{
    (void)state;
    dt_backend *g = cuda_be(DT_F32);
    assert_true(g->ops->supports(g, DT_OP_QLINEAR, DT_I8));
    dt_backend_destroy(g);
    static const qcase cs[] = {
        {2, 5, 256, 72, 8, 0, 1, 1, DT_ACT_NONE, 1, 0},  {1, 7, 256, 70, 8, 0, 0, 1, DT_ACT_GELU_TANH, 1, 0},
        {3, 3, 67, 29, 8, 0, 1, 0, DT_ACT_SILU, 0, 0},   {2, 4, 128, 33, 4, 0, 1, 1, DT_ACT_GELU_TANH, 1, 0},
        {1, 9, 192, 40, 4, 32, 1, 1, DT_ACT_NONE, 0, 0}, {2, 6, 1024, 12, 8, 0, 1, 1, DT_ACT_SILU, 1, 0},
        {2, 6, 1024, 96, 8, 0, 1, 1, DT_ACT_NONE, 1, 1}, {3, 4, 64, 20, 4, 0, 0, 1, DT_ACT_GELU_TANH, 1, 1},
        {1, 300, 1024, 1152, 8, 0, 1, 1, DT_ACT_GELU_TANH, 1, 0}};
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) check_qlinear(&cs[i]);
}

/* Calibration: the CUDA observer folds the same maxima into the caller's buffer as the CPU's. */
static void test_linear_observe(void **state)
{
    (void)state;
    pair p = pair_new();
    const int M = 37, K = 75, N = 11;
    tu_rng r = {901};
    float *w = rnd(&r, (size_t)N * K, 0.3f), *x = rnd(&r, (size_t)M * K, 2.0f), *yg = tu_alloc((size_t)M * N),
          *yc = tu_alloc((size_t)M * N), *ag = tu_alloc(K), *ac = tu_alloc(K);
    for (int j = 0; j < K; j++) ag[j] = ac[j] = j % 5 == 0 ? 1.5f : 0.0f; /* folded into, not overwritten */
    dt_linear *ig, *ic, *og, *oc;
    dt_err err = {0};
    assert_int_equal(p.g->ops->linear_create(p.g, w, NULL, K, N, DT_ACT_NONE, M, DT_F32, &ig, &err), DT_OK);
    assert_int_equal(p.c->ops->linear_create(p.c, w, NULL, K, N, DT_ACT_NONE, M, DT_F32, &ic, &err), DT_OK);
    assert_int_equal(p.g->ops->linear_observe(p.g, ig, K, ag, &og, &err), DT_OK);
    assert_int_equal(p.c->ops->linear_observe(p.c, ic, K, ac, &oc, &err), DT_OK);
    int64_t xs[2] = {M, K}, ys[2] = {M, N};
    dt_tensor gx = up(p.g, x, DT_F32, 2, xs), gy = up(p.g, NULL, DT_F32, 2, ys);
    dt_tensor cx = dt_tensor_view(x, DT_F32, 2, xs), cy = dt_tensor_view(yc, DT_F32, 2, ys);
    assert_int_equal(p.g->ops->linear_forward(p.g, og, &gx, &gy, &err), DT_OK);
    assert_int_equal(p.c->ops->linear_forward(p.c, oc, &cx, &cy, &err), DT_OK);
    down(p.g, &gy, yg);
    assert_memory_equal(ag, ac, K * sizeof(float));
    assert_rel_l2_below(yg, yc, (size_t)M * N, TOL_F32);
    p.g->ops->linear_destroy(og);
    p.c->ops->linear_destroy(oc);
    drop(p.g, &gx), drop(p.g, &gy);
    free(w), free(x), free(yg), free(yc), free(ag), free(ac);
    pair_free(&p);
}

/* ---- two backends (two streams) in two threads ---- */
typedef struct {
    int seed;
    double err;
} thread_job;

static void *thread_main(void *arg)
{
    thread_job *j = arg;
    dt_backend_config cfg = {.device = DT_DEV_CUDA, .compute = DT_F32};
    dt_backend *be = NULL;
    dt_err err = {0};
    j->err = INFINITY;
    if (dt_backend_create(&cfg, &be, &err) != DT_OK) return NULL;
    int M = 300, K = 257, N = 129;
    tu_rng r = {(uint64_t)j->seed};
    float *w = tu_alloc((size_t)N * K), *x = tu_alloc((size_t)M * K), *y = tu_alloc((size_t)M * N), *yr = tu_alloc((size_t)M * N);
    tu_fill(&r, w, (size_t)N * K, 0.3f);
    tu_fill(&r, x, (size_t)M * K, 1.0f);
    dt_linear *l = NULL;
    float *dx = NULL, *dy = NULL;
    double worst = 0;
    if (be->ops->linear_create(be, w, NULL, K, N, DT_ACT_SILU, M, DT_F32, &l, &err) == DT_OK &&
        dt_backend_upload(be, x, (size_t)M * K, &dx, &err) == DT_OK && dt_backend_upload(be, y, (size_t)M * N, &dy, &err) == DT_OK) {
        ref_linear(x, M, K, w, NULL, N, DT_ACT_SILU, yr);
        int64_t xs[2] = {M, K}, ys[2] = {M, N};
        dt_tensor tx = dt_tensor_view(dx, DT_F32, 2, xs), ty = dt_tensor_view(dy, DT_F32, 2, ys);
        tx.device = ty.device = DT_DEV_CUDA;
        for (int it = 0; it < 20; it++) {
            if (be->ops->linear_forward(be, l, &tx, &ty, &err) != DT_OK || dt_backend_read(be, dy, y, (size_t)M * N, &err) != DT_OK) {
                worst = INFINITY;
                break;
            }
            double e = tu_rel_l2(y, yr, (size_t)M * N);
            if (e > worst) worst = e;
        }
        j->err = worst;
    }
    if (l) be->ops->linear_destroy(l);
    if (dx) be->ops->buffer_free(be, dx);
    if (dy) be->ops->buffer_free(be, dy);
    dt_backend_destroy(be);
    free(w), free(x), free(y), free(yr);
    return NULL;
}

static void test_two_threads(void **state)
{
    (void)state;
    thread_job j[2] = {{11, 0}, {12, 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) assert_int_equal(pthread_create(&t[i], NULL, thread_main, &j[i]), 0);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++)
        if (!(j[i].err <= TOL_F32)) fail_msg("thread %d: relative error %g", i, j[i].err);
}

/* ---- the public API on cuda: two contexts in two threads give the same image; cancel ---- */
typedef struct {
    ditrt_image *img;
    int n;
    ditrt_status st;
    char msg[512];
} api_job;

static void *api_thread(void *arg)
{
    api_job *j = arg;
    ditrt_ctx_params cp;
    ditrt_ctx_params_init(&cp);
    cp.model_dir = "assets/demo-pixart";
    cp.device = "cuda";
    cp.dtype = "f32";
    ditrt_ctx *c = NULL;
    j->st = ditrt_ctx_create(&cp, &c);
    if (j->st == DITRT_OK) {
        ditrt_gen_params gp;
        ditrt_gen_params_init(&gp);
        gp.prompt = "a red circle on the left on a black background";
        gp.steps = 8;
        j->st = ditrt_generate(c, &gp, &j->img, &j->n);
    }
    snprintf(j->msg, sizeof j->msg, "%s", ditrt_errmsg(c));
    ditrt_ctx_free(c);
    return NULL;
}

static void test_api_two_contexts(void **state)
{
    (void)state;
    api_job j[2] = {{0}, {0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) assert_int_equal(pthread_create(&t[i], NULL, api_thread, &j[i]), 0);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++)
        if (j[i].st != DITRT_OK) fail_msg("context %d: %s", i, j[i].msg);
    assert_int_equal(j[0].n, 1);
    assert_int_equal(j[1].n, 1);
    assert_int_equal(j[0].img->width, j[1].img->width);
    /* one device, one algorithm choice per shape: the two streams should compute the same bytes;
     * a library algorithm that reduces in a run-dependent order may move a pixel by a step */
    size_t nb = (size_t)j[0].img->width * j[0].img->height * 3, differ = 0;
    int worst = 0;
    for (size_t i = 0; i < nb; i++) {
        int d = abs((int)j[0].img->rgb[i] - (int)j[1].img->rgb[i]);
        differ += d != 0;
        worst = d > worst ? d : worst;
    }
    print_message("  two contexts: %zu of %zu bytes differ (max %d)\n", differ, nb, worst);
    assert_true(worst <= 2);
    ditrt_images_free(j[0].img, j[0].n);
    ditrt_images_free(j[1].img, j[1].n);
}

static int cancel_at_3(int step, int steps, double seconds, void *user)
{
    (void)steps, (void)seconds;
    *(int *)user = step;
    return step >= 3;
}

/* One 4-step image of the T5 demo model: device and dtypes as given; the context's resolved
 * dtypes copied into dts[0] (dtype) and dts[1] (text dtype). */
static ditrt_image *demo_image(const char *device, const char *dtype, const char *text_dtype, char dts[2][16])
{
    ditrt_ctx_info info_, *info = &info_;
    ditrt_ctx_params cp;
    ditrt_ctx_params_init(&cp);
    cp.model_dir = "assets/demo-pixart";
    cp.device = device, cp.dtype = dtype, cp.text_dtype = text_dtype;
    ditrt_ctx *c = NULL;
    if (ditrt_ctx_create(&cp, &c) != DITRT_OK) fail_msg("%s/%s: %s", device, dtype ? dtype : "default", ditrt_errmsg(c));
    info->struct_size = sizeof *info;
    assert_int_equal(ditrt_ctx_get_info(c, info), DITRT_OK);
    snprintf(dts[0], 16, "%s", info->dtype);
    snprintf(dts[1], 16, "%s", info->text_dtype);
    ditrt_gen_params gp;
    ditrt_gen_params_init(&gp);
    gp.prompt = "a red circle on the left on a black background";
    gp.steps = 4;
    ditrt_image *img = NULL;
    int n = 0;
    if (ditrt_generate(c, &gp, &img, &n) != DITRT_OK) fail_msg("%s: %s", device, ditrt_errmsg(c));
    assert_int_equal(n, 1);
    ditrt_ctx_free(c);
    return img;
}

/* T5 runs on the device (the pipeline's text backend is CUDA for T5 models): with no text dtype
 * it takes the device's default (bf16); in f32 the image is the CPU's up to GPU rounding; and
 * --dtype tf32 runs end to end and says so. */
static void test_t5_on_device_and_tf32(void **state)
{
    (void)state;
    char gi[2][16], ci[2][16], di[2][16], ti[2][16];
    ditrt_image *d = demo_image("cuda", NULL, NULL, di);
    assert_string_equal(di[1], "bf16");
    ditrt_images_free(d, 1);
    ditrt_image *g = demo_image("cuda", "f32", "f32", gi), *c = demo_image("cpu", "f32", "f32", ci);
    assert_string_equal(gi[1], "f32");
    assert_string_equal(ci[0], "f32");
    size_t nb = (size_t)g->width * g->height * 3;
    int worst = 0;
    for (size_t i = 0; i < nb; i++) worst = abs((int)g->rgb[i] - (int)c->rgb[i]) > worst ? abs((int)g->rgb[i] - (int)c->rgb[i]) : worst;
    print_message("  f32 on cuda (T5 included) vs cpu: max byte difference %d\n", worst);
    assert_true(worst <= 3);
    ditrt_image *t = demo_image("cuda", "tf32", "f32", ti);
    assert_string_equal(ti[0], "tf32");
    /* --dtype f16: the transformer and VAE in f16, T5 at the device's default (bf16: T5 overflows f16) */
    char hi[2][16];
    ditrt_image *h = demo_image("cuda", "f16", NULL, hi);
    assert_string_equal(hi[0], "f16");
    assert_string_equal(hi[1], "bf16");
    double se = 0;
    for (size_t i = 0; i < nb; i++) se += ((double)h->rgb[i] - c->rgb[i]) * ((double)h->rgb[i] - c->rgb[i]);
    double psnr = se > 0 ? 10.0 * log10(255.0 * 255.0 / (se / (double)nb)) : 99.0;
    print_message("  f16 on cuda vs f32 on cpu: PSNR %.1f dB\n", psnr);
    assert_true(psnr >= 20.0); /* the bf16 goldens' bound at few steps (test_golden.c) */
    ditrt_images_free(g, 1), ditrt_images_free(c, 1), ditrt_images_free(t, 1), ditrt_images_free(h, 1);
}

static void test_api_cancel(void **state)
{
    (void)state;
    ditrt_ctx_params cp;
    ditrt_ctx_params_init(&cp);
    cp.model_dir = "assets/demo-pixart";
    cp.device = "cuda";
    ditrt_ctx *c = NULL;
    if (ditrt_ctx_create(&cp, &c) != DITRT_OK) fail_msg("%s", ditrt_errmsg(c));
    ditrt_gen_params gp;
    ditrt_gen_params_init(&gp);
    gp.prompt = "a red circle";
    int last = 0;
    gp.progress = cancel_at_3;
    gp.progress_user = &last;
    ditrt_image *img = NULL;
    int n = 0;
    assert_int_equal(ditrt_generate(c, &gp, &img, &n), DITRT_ECANCELLED);
    assert_int_equal(last, 3);
    assert_null(img);
    /* the context still works after a cancel */
    gp.progress = NULL;
    gp.steps = 4;
    if (ditrt_generate(c, &gp, &img, &n) != DITRT_OK) fail_msg("after cancel: %s", ditrt_errmsg(c));
    ditrt_images_free(img, n);
    ditrt_ctx_free(c);
}

/* ---- the goldens regenerated through --device cuda (f32 cases; bf16 cases at their bounds) ---- */
static void run_goldens(const char *tsv, const char *model, int video)
{
    FILE *f = fopen(tsv, "r");
    assert_non_null(f);
    char line[1024], tmp[256], cmd[2048], out[8192];
    tu_tmpdir(tmp, sizeof tmp);
    int cases = 0;
    while (fgets(line, sizeof line, f)) {
        char name[64], dtype[8], prompt[256];
        int steps, seed;
        double cfg;
        if (line[0] == '#' || sscanf(line, "%63[^\t]\t%d\t%lf\t%d\t%7[^\t]\t%255[^\n]", name, &steps, &cfg, &seed, dtype, prompt) != 6)
            continue;
        double min_psnr = !strcmp(dtype, "bf16") && steps < 20 ? 20.0 : 40.0; /* test_golden.c's bounds */
        const char *ext = video ? "/" : ".png";
        char mk[600] = "";
        if (video) snprintf(mk, sizeof mk, "mkdir -p '%s/%s' && ", tmp, name);
        snprintf(cmd, sizeof cmd, "%s./ditrt %s -m %s -p '%s' --steps %d --cfg %g --seed %d --dtype %s --device cuda --quiet -o '%s/%s%s'",
                 mk, video ? "txt2vid" : "txt2img", model, prompt, steps, cfg, seed, dtype, tmp, name, ext);
        if (tu_run(tmp, cmd, 1, out, sizeof out) != 0) fail_msg("%s on cuda: %s", name, out);
        snprintf(cmd, sizeof cmd, "./ditrt compare '%s/%s%s' assets/golden/%s%s --min-psnr %g", tmp, name, ext, name, ext, min_psnr);
        if (tu_run(tmp, cmd, 1, out, sizeof out) != 0) fail_msg("%s on cuda differs from its golden: %s", name, out);
        print_message("  %s (cuda): %s", name, out);
        cases++;
    }
    fclose(f);
    tu_rmtree(tmp);
    assert_true(cases >= 1);
}

static void test_goldens_on_cuda(void **state)
{
    (void)state;
    run_goldens("assets/golden/cases.tsv", "assets/demo-pixart", 0);
    run_goldens("assets/golden/video_cases.tsv", "assets/demo-latte", 1);
}

int main(void)
{
    if (!dt_backend_built(DT_DEV_CUDA)) {
        printf("test-gpu: skipped: this ditrt was built without CUDA (nvcc not found at build time)\n");
        return 0;
    }
    dt_backend_config cfg = {.device = DT_DEV_CUDA, .compute = DT_F32};
    dt_backend *be = NULL;
    dt_err err = {0};
    if (dt_backend_create(&cfg, &be, &err) != DT_OK) {
        printf("test-gpu: skipped: %s\n", err.msg);
        return 0;
    }
    dt_backend_destroy(be);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory_roundtrip), cmocka_unit_test(test_pinned_host_buffers),  cmocka_unit_test(test_linear),
        cmocka_unit_test(test_attention),         cmocka_unit_test(test_window_attention),
        cmocka_unit_test(test_attention_cudnn),
        cmocka_unit_test(test_rows_and_elements), cmocka_unit_test(test_patchify),
        cmocka_unit_test(test_conv2d),            cmocka_unit_test(test_image_ops),
        cmocka_unit_test(test_qlinear), cmocka_unit_test(test_linear_observe), cmocka_unit_test(test_group_norm_large), cmocka_unit_test(test_linear_tf32), cmocka_unit_test(test_two_threads),
        cmocka_unit_test(test_api_two_contexts),  cmocka_unit_test(test_api_cancel),
        cmocka_unit_test(test_t5_on_device_and_tf32), cmocka_unit_test(test_f16_storage),
        cmocka_unit_test(test_goldens_on_cuda),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
