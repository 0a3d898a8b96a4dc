/* Every CPU kernel against its plain-C reference on random inputs of awkward sizes,
 * with NaN-poisoned outputs, for both GEMM compute dtypes. */
#include "testutil.h"
#include "kernels/cpu/ref.h"
#include "kernels/cpu/cpu.h"
#include "kernels/backend_timing.h"
#include <math.h>

static double tol_for(dt_dtype t) { return t == DT_BF16 ? 1.5e-2 : 2e-5; }

static void check_linear(dt_dtype cd, int M, int K, int N, dt_act act, int with_bias, int m_hint)
{
    tu_rng r = {(uint64_t)(M * 131 + K * 7 + N + act)};
    dt_backend *be = tu_backend(cd);
    float *w = tu_alloc((size_t)N * K), *b = tu_alloc(N), *x = tu_alloc((size_t)M * K);
    float *y = tu_poisoned((size_t)M * N), *yr = tu_alloc((size_t)M * N);
    tu_fill(&r, w, (size_t)N * K, 0.3f);
    tu_fill(&r, b, N, 0.5f);
    tu_fill(&r, x, (size_t)M * K, 1.0f);
    dt_err err = {0};
    dt_linear *l;
    assert_int_equal(be->ops->linear_create(be, w, with_bias ? b : NULL, K, N, act, m_hint, cd, &l, &err), DT_OK);
    int64_t xs[2] = {M, K}, ys[2] = {M, N};
    dt_tensor tx = dt_tensor_view(x, DT_F32, 2, xs), ty = dt_tensor_view(y, DT_F32, 2, ys);
    assert_int_equal(be->ops->linear_forward(be, l, &tx, &ty, &err), DT_OK);
    ref_linear(x, M, K, w, with_bias ? b : NULL, N, act, yr);
    assert_rel_l2_below(y, yr, (size_t)M * N, tol_for(cd));
    /* a second row count through the same weights (layout chosen for m_hint) */
    int M2 = M + 5;
    float *x2 = tu_alloc((size_t)M2 * K), *y2 = tu_poisoned((size_t)M2 * N), *yr2 = tu_alloc((size_t)M2 * N);
    tu_fill(&r, x2, (size_t)M2 * K, 1.0f);
    int64_t xs2[2] = {M2, K}, ys2[2] = {M2, N};
    dt_tensor tx2 = dt_tensor_view(x2, DT_F32, 2, xs2), ty2 = dt_tensor_view(y2, DT_F32, 2, ys2);
    assert_int_equal(be->ops->linear_forward(be, l, &tx2, &ty2, &err), DT_OK);
    ref_linear(x2, M2, K, w, with_bias ? b : NULL, N, act, yr2);
    assert_rel_l2_below(y2, yr2, (size_t)M2 * N, tol_for(cd));
    be->ops->linear_destroy(l);
    dt_backend_destroy(be);
    free(w); free(b); free(x); free(y); free(yr); free(x2); free(y2); free(yr2);
}

static void test_linear(void **state)
{
    (void)state;
    dt_dtype cds[2] = {DT_F32, DT_BF16};
    for (int c = 0; c < 1 + tu_have_bf16(); c++) {
        check_linear(cds[c], 1, 7, 5, DT_ACT_NONE, 1, 2);
        check_linear(cds[c], 33, 19, 45, DT_ACT_GELU_TANH, 1, 256);
        check_linear(cds[c], 130, 64, 17, DT_ACT_SILU, 0, 2);
        check_linear(cds[c], 257, 100, 96, DT_ACT_NONE, 1, 256);
        check_linear(cds[c], 2, 256, 48, DT_ACT_SILU, 1, 2);
    }
}

/* The bf16 GEMM contract, native or emulated (DITRT_BF16_EMULATED, kernels/cpu/cpu_backend.c):
 * inputs and weights rounded to bf16 (round to nearest even), products summed in f32. Against a
 * double reference on the rounded operands the error is f32 summation only (< 1e-5); against the
 * unrounded operands it is the rounding's (about 2e-3 here): a layer that skipped a rounding, or
 * rounded by truncation, fails one side or the other. */
static float bf16_rne(float f) { return dt_bf16_to_f32(cpu_bf16_round(f)); }

static void check_bf16_contract(double e_rounded, double e_plain, const char *what)
{
    print_message("  bf16 %s: rel L2 %.2e vs rounded operands, %.2e vs f32 ones\n", what, e_rounded, e_plain);
    if (!(e_rounded < 1e-5)) fail_msg("bf16 %s: %.3g from the bf16-rounded reference", what, e_rounded);
    if (!(e_plain > 5e-4 && e_plain < 1e-2)) fail_msg("bf16 %s: %.3g from the f32 reference", what, e_plain);
}

static void test_bf16_gemm_contract(void **state)
{
    (void)state;
    TU_REQUIRE_BF16();
    tu_rng r = {91};
    dt_backend *be = tu_backend(DT_BF16);
    dt_err err = {0};
    /* linear y[M,N] = x[M,K] W[N,K]^T + b (the bias stays f32) */
    int M = 37, K = 96, N = 40;
    float *w = tu_alloc((size_t)N * K), *b = tu_alloc(N), *x = tu_alloc((size_t)M * K), *y = tu_poisoned((size_t)M * N);
    float *yr = tu_alloc((size_t)M * N), *yp = tu_alloc((size_t)M * N);
    tu_fill(&r, w, (size_t)N * K, 0.3f);
    tu_fill(&r, b, N, 0.5f);
    tu_fill(&r, x, (size_t)M * K, 1.0f);
    dt_linear *l;
    assert_int_equal(be->ops->linear_create(be, w, b, K, N, DT_ACT_NONE, M, DT_BF16, &l, &err), DT_OK);
    int64_t xs[2] = {M, K}, ys[2] = {M, N};
    dt_tensor tx = dt_tensor_view(x, DT_F32, 2, xs), ty = dt_tensor_view(y, DT_F32, 2, ys);
    assert_int_equal(be->ops->linear_forward(be, l, &tx, &ty, &err), DT_OK);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double sr = b[j], sp = b[j];
            for (int k = 0; k < K; k++) {
                sr += (double)bf16_rne(x[i * K + k]) * bf16_rne(w[j * K + k]);
                sp += (double)x[i * K + k] * w[j * K + k];
            }
            yr[i * N + j] = (float)sr;
            yp[i * N + j] = (float)sp;
        }
    check_bf16_contract(tu_rel_l2(y, yr, (size_t)M * N), tu_rel_l2(y, yp, (size_t)M * N), "linear");
    be->ops->linear_destroy(l);
    /* 3x3 convolution, stride 1, padding 1, NHWC: x [1,H,W,C] -> y [1,H,W,O], weights [O,C,3,3] */
    int H = 7, W = 9, C = 12, O = 10;
    float *cw = tu_alloc((size_t)O * C * 9), *cx = tu_alloc((size_t)H * W * C), *cy = tu_poisoned((size_t)H * W * O);
    float *cyr = tu_alloc((size_t)H * W * O), *cyp = tu_alloc((size_t)H * W * O);
    tu_fill(&r, cw, (size_t)O * C * 9, 0.3f);
    tu_fill(&r, cx, (size_t)H * W * C, 1.0f);
    dt_conv2d *cv;
    assert_int_equal(be->ops->conv2d_create(be, cw, b, C, O, 3, 1, 1, 1, DT_BF16, &cv, &err), DT_OK);
    int64_t cxs[4] = {1, H, W, C}, cys[4] = {1, H, W, O};
    dt_tensor tcx = dt_tensor_view(cx, DT_F32, 4, cxs), tcy = dt_tensor_view(cy, DT_F32, 4, cys);
    assert_int_equal(be->ops->conv2d_forward(be, cv, &tcx, &tcy, 0, &err), DT_OK);
    for (int i = 0; i < H; i++)
        for (int j = 0; j < W; j++)
            for (int o = 0; o < O; o++) {
                double sr = b[o], sp = b[o];
                for (int ky = 0; ky < 3; ky++)
                    for (int kx = 0; kx < 3; kx++) {
                        int yy = i + ky - 1, xx = j + kx - 1;
                        if (yy < 0 || yy >= H || xx < 0 || xx >= W) continue;
                        for (int c = 0; c < C; c++) {
                            float a = cx[(yy * W + xx) * C + c], wv = cw[((o * C + c) * 3 + ky) * 3 + kx];
                            sr += (double)bf16_rne(a) * bf16_rne(wv);
                            sp += (double)a * wv;
                        }
                    }
                cyr[(i * W + j) * O + o] = (float)sr;
                cyp[(i * W + j) * O + o] = (float)sp;
            }
    check_bf16_contract(tu_rel_l2(cy, cyr, (size_t)H * W * O), tu_rel_l2(cy, cyp, (size_t)H * W * O), "conv2d");
    be->ops->conv2d_destroy(cv);
    dt_backend_destroy(be);
    free(w); free(b); free(x); free(y); free(yr); free(yp);
    free(cw); free(cx); free(cy); free(cyr); free(cyp);
}

static void test_linear_rejects_bad_shapes(void **state)
{
    (void)state;
    dt_backend *be = tu_backend(DT_F32);
    float w[6] = {0}, x[4] = {0}, y[6];
    dt_err err = {0};
    dt_linear *l;
    assert_int_equal(be->ops->linear_create(be, w, NULL, 2, 3, DT_ACT_NONE, 2, DT_F32, &l, &err), DT_OK);
    int64_t xs[2] = {1, 4}, ys[2] = {1, 3};
    dt_tensor tx = dt_tensor_view(x, DT_F32, 2, xs), ty = dt_tensor_view(y, DT_F32, 2, ys);
    assert_int_equal(be->ops->linear_forward(be, l, &tx, &ty, &err), DT_EINVAL);
    assert_non_null(strstr(err.msg, "linear"));
    be->ops->linear_destroy(l);
    dt_backend_destroy(be);
}

/* q/k/v as strided views inside packed buffers (as the fused qkv projection yields). */
static void check_attention(dt_dtype cd, int B, int Nq, int Nk, int H, int d, int masked, int head_bias, size_t block)
{
    tu_rng r = {(uint64_t)(B * 1000 + Nq * 10 + Nk + H + d)};
    int C = H * d, ld = 3 * C + 3;
    dt_backend_config cfg = {.device = DT_DEV_CPU, .compute = cd, .attn_block_bytes = block};
    dt_backend *be;
    dt_err err = {0};
    assert_int_equal(dt_backend_create(&cfg, &be, &err), DT_OK);
    int Nmax = Nq > Nk ? Nq : Nk;
    float *buf = tu_alloc((size_t)B * Nmax * ld);
    tu_fill(&r, buf, (size_t)B * Nmax * ld, 1.5f);
    float *bias = tu_alloc((size_t)B * Nk);
    for (int i = 0; i < B * Nk; i++) bias[i] = (masked && (i % Nk) >= Nk - 2 && (i / Nk) % 2 == 0) ? -10000.0f : 0.0f;
    float *hbias = tu_alloc((size_t)H * Nq * Nk);
    tu_fill(&r, hbias, (size_t)H * Nq * Nk, 2.0f);
    dt_attn_bias ab = {masked ? bias : NULL, head_bias ? hbias : NULL};
    int64_t qs[3] = {B, Nq, C}, ks[3] = {B, Nk, C};
    dt_tensor q = dt_tensor_view(buf, DT_F32, 3, qs), k = dt_tensor_view(buf + C, DT_F32, 3, ks),
              v = dt_tensor_view(buf + 2 * C + 1, DT_F32, 3, ks);
    q.strides[0] = k.strides[0] = v.strides[0] = (int64_t)Nmax * ld;
    q.strides[1] = k.strides[1] = v.strides[1] = ld;
    float *o = tu_poisoned((size_t)B * Nq * C), *orf = tu_alloc((size_t)B * Nq * C);
    dt_tensor to = dt_tensor_view(o, DT_F32, 3, qs), tr = dt_tensor_view(orf, DT_F32, 3, qs);
    float scale = 1.0f / sqrtf((float)d);
    assert_int_equal(be->ops->attention(be, &q, &k, &v, &ab, H, scale, &to, &err), DT_OK);
    ref_attention(&q, &k, &v, &ab, H, scale, &tr);
    assert_rel_l2_below(o, orf, (size_t)B * Nq * C, cd == DT_BF16 ? 2e-2 : 2e-5);
    dt_backend_destroy(be);
    free(buf); free(bias); free(hbias); free(o); free(orf);
}

static void test_attention(void **state)
{
    (void)state;
    dt_dtype cds[2] = {DT_F32, DT_BF16};
    for (int c = 0; c < 1 + tu_have_bf16(); c++) {
        check_attention(cds[c], 1, 1, 1, 1, 4, 0, 0, 0);
        check_attention(cds[c], 2, 17, 17, 3, 5, 0, 0, 0);
        check_attention(cds[c], 2, 35, 7, 2, 8, 1, 0, 0);
        check_attention(cds[c], 3, 50, 13, 4, 6, 1, 0, 0);
        /* per-head position bias (T5), alone and with the key mask */
        check_attention(cds[c], 2, 21, 21, 3, 8, 0, 1, 0);
        check_attention(cds[c], 2, 21, 21, 3, 8, 1, 1, 0);
        /* a tiny score-block bound forces one (batch, head) pair per GEMM group */
        check_attention(cds[c], 2, 33, 19, 3, 8, 1, 1, 64);
        check_attention(cds[c], 2, 33, 19, 3, 8, 1, 1, 33 * 19 * 4 * 4);
        /* one head at a time in blocks of 32 query rows (the last block 1 row; then 32, 32, 6) */
        check_attention(cds[c], 2, 33, 19, 3, 8, 1, 1, 19 * 4 * 40);
        check_attention(cds[c], 1, 70, 70, 2, 8, 0, 0, 70 * 4 * 33);
    }
}

static void test_layernorm_modulate(void **state)
{
    (void)state;
    tu_rng r = {7};
    dt_backend *be = tu_backend(DT_F32);
    int B = 2, N = 13, C = 37;
    size_t n = (size_t)B * N * C;
    float *x = tu_alloc(n), *y = tu_poisoned(n), *yr = tu_alloc(n), *mod = tu_alloc((size_t)B * 6 * C);
    tu_fill(&r, x, n, 3.0f);
    for (size_t i = 0; i < n; i++) x[i] += 5.0f; /* a mean far from 0 */
    tu_fill(&r, mod, (size_t)B * 6 * C, 0.7f);
    int64_t s3[3] = {B, N, C}, s2[2] = {B, C};
    dt_tensor tx = dt_tensor_view(x, DT_F32, 3, s3), ty = dt_tensor_view(y, DT_F32, 3, s3), tr = dt_tensor_view(yr, DT_F32, 3, s3);
    dt_tensor sh = dt_tensor_view(mod, DT_F32, 2, s2), sc = dt_tensor_view(mod + C, DT_F32, 2, s2);
    sh.strides[0] = sc.strides[0] = 6 * C;
    dt_err err = {0};
    const dt_tensor *shifts[3] = {&sh, NULL, &sh}, *scales[3] = {&sc, NULL, NULL};
    for (int cse = 0; cse < 3; cse++) {
        for (size_t i = 0; i < n; i++) y[i] = NAN;
        assert_int_equal(be->ops->layernorm_modulate(be, &tx, shifts[cse], scales[cse], 1e-6f, &ty, &err), DT_OK);
        ref_layernorm_modulate(&tx, shifts[cse], scales[cse], 1e-6f, &tr);
        assert_rel_l2_below(y, yr, n, 1e-5);
    }
    dt_backend_destroy(be);
    free(x); free(y); free(yr); free(mod);
}

static void test_gated_add(void **state)
{
    (void)state;
    tu_rng r = {11};
    dt_backend *be = tu_backend(DT_F32);
    int B = 3, N = 5, C = 19;
    size_t n = (size_t)B * N * C;
    float *x = tu_alloc(n), *xr = tu_alloc(n), *y = tu_alloc(n), *g = tu_alloc((size_t)B * 2 * C);
    tu_fill(&r, x, n, 1.0f);
    tu_fill(&r, y, n, 1.0f);
    tu_fill(&r, g, (size_t)B * 2 * C, 1.0f);
    int64_t s3[3] = {B, N, C}, s2[2] = {B, C};
    dt_tensor gt = dt_tensor_view(g + C, DT_F32, 2, s2);
    gt.strides[0] = 2 * C;
    dt_err err = {0};
    for (int gated = 0; gated < 2; gated++) {
        memcpy(xr, x, n * sizeof(float));
        dt_tensor tx = dt_tensor_view(x, DT_F32, 3, s3), ty = dt_tensor_view(y, DT_F32, 3, s3), tr = dt_tensor_view(xr, DT_F32, 3, s3);
        assert_int_equal(be->ops->gated_add(be, &tx, &ty, gated ? &gt : NULL, &err), DT_OK);
        ref_gated_add(&tr, &ty, gated ? &gt : NULL);
        assert_rel_l2_below(x, xr, n, 1e-7);
    }
    dt_backend_destroy(be);
    free(x); free(xr); free(y); free(g);
}

static void test_activations(void **state)
{
    (void)state;
    dt_backend *be = tu_backend(DT_F32);
    int n = 20011;
    float *x = tu_alloc(n), *y = tu_poisoned(n);
    for (int i = 0; i < n; i++) x[i] = -30.0f + 60.0f * i / (n - 1);
    int64_t s[1] = {n};
    dt_tensor tx = dt_tensor_view(x, DT_F32, 1, s), ty = dt_tensor_view(y, DT_F32, 1, s);
    dt_err err = {0};
    dt_act acts[2] = {DT_ACT_GELU_TANH, DT_ACT_SILU};
    for (int a = 0; a < 2; a++) {
        assert_int_equal(be->ops->activation(be, acts[a], &tx, &ty, &err), DT_OK);
        for (int i = 0; i < n; i++) {
            float want = ref_act(acts[a], x[i]);
            if (!(fabsf(y[i] - want) <= 2e-6f * fabsf(want) + 1e-7f))
                fail_msg("act %d at x=%g: got %.9g want %.9g", a, x[i], y[i], want);
        }
    }
    dt_backend_destroy(be);
    free(x); free(y);
}

static void test_patchify_roundtrip(void **state)
{
    (void)state;
    tu_rng r = {3};
    dt_backend *be = tu_backend(DT_F32);
    int B = 2, C = 3, H = 10, W = 6, p = 2, h = H / p, w = W / p;
    size_t n = (size_t)B * C * H * W;
    float *x = tu_alloc(n), *y = tu_poisoned(n), *yr = tu_alloc(n), *z = tu_poisoned(n), *zr = tu_alloc(n);
    tu_fill(&r, x, n, 1.0f);
    int64_t xs[4] = {B, C, H, W}, ps[2] = {(int64_t)B * h * w, (int64_t)C * p * p}, p3[3] = {B, (int64_t)h * w, (int64_t)C * p * p};
    dt_tensor tx = dt_tensor_view(x, DT_F32, 4, xs), ty = dt_tensor_view(y, DT_F32, 2, ps), tyr = dt_tensor_view(yr, DT_F32, 2, ps);
    dt_err err = {0};
    assert_int_equal(be->ops->patchify(be, &tx, p, &ty, &err), DT_OK);
    ref_patchify(&tx, p, &tyr);
    assert_memory_equal(y, yr, n * sizeof(float));
    dt_tensor u = dt_tensor_view(y, DT_F32, 3, p3), tz = dt_tensor_view(z, DT_F32, 4, xs), tzr = dt_tensor_view(zr, DT_F32, 4, xs);
    assert_int_equal(be->ops->unpatchify(be, &u, p, h, w, &tz, &err), DT_OK);
    ref_unpatchify(&u, p, h, w, &tzr);
    assert_memory_equal(z, zr, n * sizeof(float));
    /* bad geometry is refused, not read out of bounds */
    int64_t bad[4] = {B, C, 9, W};
    dt_tensor tb = dt_tensor_view(x, DT_F32, 4, bad);
    assert_int_equal(be->ops->patchify(be, &tb, p, &ty, &err), DT_EINVAL);
    dt_backend_destroy(be);
    free(x); free(y); free(yr); free(z); free(zr);
}

static void test_add_rows(void **state)
{
    (void)state;
    tu_rng r = {5};
    dt_backend *be = tu_backend(DT_F32);
    int B = 3, N = 7, C = 11;
    float *x = tu_alloc((size_t)B * N * C), *p = tu_alloc((size_t)N * C), *y = tu_poisoned((size_t)B * N * C);
    tu_fill(&r, x, (size_t)B * N * C, 1.0f);
    tu_fill(&r, p, (size_t)N * C, 1.0f);
    int64_t xs[2] = {(int64_t)B * N, C}, ps[2] = {N, C};
    dt_tensor tx = dt_tensor_view(x, DT_F32, 2, xs), tp = dt_tensor_view(p, DT_F32, 2, ps), ty = dt_tensor_view(y, DT_F32, 2, xs);
    dt_err err = {0};
    assert_int_equal(be->ops->add_rows(be, &tx, &tp, &ty, &err), DT_OK);
    for (int i = 0; i < B * N * C; i++) assert_true(y[i] == x[i] + p[i % (N * C)]);
    dt_backend_destroy(be);
    free(x); free(p); free(y);
}

/* repeat_rows against its loop, bit for bit: 2-D and 3-D x, one row (a whole-tensor repeat),
 * widths around the vector width, outputs poisoned. */
static void check_repeat_rows(dt_backend *be, int ndim, const int64_t *shape, int reps)
{
    dt_tensor tx = dt_tensor_view(NULL, DT_F32, ndim, shape);
    int64_t n = dt_tensor_numel(&tx), R = shape[0], W = n / R;
    tu_rng r = {(uint64_t)(n * 31 + reps)};
    float *x = tu_alloc(n), *y = tu_poisoned(n * reps), *yr = tu_poisoned(n * reps);
    tu_fill(&r, x, n, 2.0f);
    tx.data = x;
    int64_t ys[2] = {R * reps, W};
    dt_tensor ty = dt_tensor_view(y, DT_F32, 2, ys);
    dt_err err = {0};
    assert_int_equal(be->ops->repeat_rows(be, &tx, reps, &ty, &err), DT_OK);
    ref_repeat_rows(x, R, W, reps, yr);
    assert_memory_equal(y, yr, (size_t)(n * reps) * sizeof(float));
    free(x); free(y); free(yr);
}

static void test_repeat_rows(void **state)
{
    (void)state;
    dt_backend *be = tu_backend(DT_F32);
    int64_t s1[2] = {1, 1}, s2[2] = {3, 17}, s3[2] = {5, 1031}, s4[3] = {2, 7, 11}, s5[2] = {1, 20011}, s6[2] = {37, 8};
    check_repeat_rows(be, 2, s1, 1);
    check_repeat_rows(be, 2, s2, 2);
    check_repeat_rows(be, 2, s3, 3);
    check_repeat_rows(be, 3, s4, 2); /* each sample of [B, N, C] */
    check_repeat_rows(be, 2, s5, 2); /* cat([x, x]) */
    check_repeat_rows(be, 2, s6, 5);
    /* refusals: reps < 1, a wrong output size, a non-f32 tensor */
    float x[6] = {0}, y[12];
    int64_t xs[2] = {2, 3}, ys[2] = {4, 3}, bad[2] = {3, 3};
    dt_tensor tx = dt_tensor_view(x, DT_F32, 2, xs), ty = dt_tensor_view(y, DT_F32, 2, ys), tb = dt_tensor_view(y, DT_F32, 2, bad);
    dt_err err = {0};
    assert_int_equal(be->ops->repeat_rows(be, &tx, 0, &ty, &err), DT_EINVAL);
    dt_err_clear(&err);
    assert_int_equal(be->ops->repeat_rows(be, &tx, 2, &tb, &err), DT_EINVAL);
    assert_non_null(strstr(err.msg, "repeat_rows"));
    dt_err_clear(&err);
    tx.dtype = DT_BF16;
    assert_int_equal(be->ops->repeat_rows(be, &tx, 2, &ty, &err), DT_EINVAL);
    dt_backend_destroy(be);
}

/* sub against its loop, bit for bit, out of place and in place on either operand. */
static void test_sub(void **state)
{
    (void)state;
    dt_backend *be = tu_backend(DT_F32);
    const int64_t sizes[] = {1, 7, 17, 1031, 100003};
    dt_err err = {0};
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        int64_t n = sizes[si];
        tu_rng r = {(uint64_t)n};
        float *a = tu_alloc(n), *b = tu_alloc(n), *y = tu_poisoned(n), *yr = tu_poisoned(n), *t = tu_alloc(n);
        tu_fill(&r, a, n, 3.0f);
        tu_fill(&r, b, n, 1e-3f);
        int64_t s1[1] = {n}, s3[3] = {1, 1, n};
        dt_tensor ta = dt_tensor_view(a, DT_F32, 1, s1), tb = dt_tensor_view(b, DT_F32, 3, s3), ty = dt_tensor_view(y, DT_F32, 1, s1);
        ref_sub(a, b, n, yr);
        assert_int_equal(be->ops->sub(be, &ta, &tb, &ty, &err), DT_OK);
        assert_memory_equal(y, yr, (size_t)n * 4);
        /* y = a */
        memcpy(t, a, (size_t)n * 4);
        dt_tensor tt = dt_tensor_view(t, DT_F32, 1, s1);
        assert_int_equal(be->ops->sub(be, &tt, &tb, &tt, &err), DT_OK);
        assert_memory_equal(t, yr, (size_t)n * 4);
        /* y = b */
        memcpy(t, b, (size_t)n * 4);
        assert_int_equal(be->ops->sub(be, &ta, &tt, &tt, &err), DT_OK);
        assert_memory_equal(t, yr, (size_t)n * 4);
        free(a); free(b); free(y); free(yr); free(t);
    }
    float v[4] = {0}, w[3] = {0};
    int64_t s4[1] = {4}, s3[1] = {3};
    dt_tensor t4 = dt_tensor_view(v, DT_F32, 1, s4), t3 = dt_tensor_view(w, DT_F32, 1, s3);
    assert_int_equal(be->ops->sub(be, &t4, &t3, &t4, &err), DT_EINVAL);
    assert_non_null(strstr(err.msg, "sub"));
    dt_backend_destroy(be);
}

/* cfg_combine against u + g·(c − u) in float, bit for bit, on strided rows (the gaps must stay
 * poisoned), several guidance scales, rows longer than one parallel block, in place. */
static void check_cfg_combine(dt_backend *be, int64_t B, int64_t n, float g, int64_t su, int64_t sc, int64_t sy,
                              int in_place)
{
    tu_rng r = {(uint64_t)(B * 7 + n + su)};
    float *u = tu_poisoned((size_t)(B * su)), *c = tu_poisoned((size_t)(B * sc));
    float *y = tu_poisoned((size_t)(B * sy)), *yr = tu_poisoned((size_t)(B * sy));
    for (int64_t b = 0; b < B; b++) {
        tu_fill(&r, u + b * su, n, 2.0f);
        tu_fill(&r, c + b * sc, n, 2.0f);
    }
    int64_t s2[2] = {B, n};
    dt_tensor tu = dt_tensor_view(u, DT_F32, 2, s2), tc = dt_tensor_view(c, DT_F32, 2, s2);
    dt_tensor ty = dt_tensor_view(y, DT_F32, 2, s2), tr = dt_tensor_view(yr, DT_F32, 2, s2);
    tu.strides[0] = su;
    tc.strides[0] = sc;
    ty.strides[0] = tr.strides[0] = sy;
    ref_cfg_combine(&tu, &tc, g, &tr);
    dt_err err = {0};
    if (in_place) { /* y = uncond: the reference result against u's own layout */
        assert_int_equal(be->ops->cfg_combine(be, &tu, &tc, g, &tu, &err), DT_OK);
        for (int64_t b = 0; b < B; b++) assert_memory_equal(u + b * su, yr + b * sy, (size_t)n * 4);
    } else {
        assert_int_equal(be->ops->cfg_combine(be, &tu, &tc, g, &ty, &err), DT_OK);
        assert_memory_equal(y, yr, (size_t)(B * sy) * 4); /* the gaps too: still the same NaNs */
    }
    free(u); free(c); free(y); free(yr);
}

static void test_cfg_combine(void **state)
{
    (void)state;
    dt_backend *be = tu_backend(DT_F32);
    const float gs[] = {0.0f, 1.0f, 4.5f, 7.5f};
    for (int gi = 0; gi < 4; gi++) {
        check_cfg_combine(be, 1, 1, gs[gi], 1, 1, 1, 0);
        check_cfg_combine(be, 2, 13, gs[gi], 2 * 13 + 3, 13, 13 + 5, 0);
        check_cfg_combine(be, 3, 9001, gs[gi], 2 * 9001, 9001 + 1, 9001, 0); /* three blocks per row */
        check_cfg_combine(be, 2, 4096, gs[gi], 8192, 4096, 4100, 0);
        check_cfg_combine(be, 2, 1031, gs[gi], 2062, 1031, 1031, 1);
    }
    /* refusals: shape mismatch, non-unit element stride, a row stride shorter than a row */
    float buf[64] = {0};
    int64_t s2[2] = {2, 8}, s3[2] = {2, 7};
    dt_tensor a = dt_tensor_view(buf, DT_F32, 2, s2), b = dt_tensor_view(buf + 16, DT_F32, 2, s3);
    dt_err err = {0};
    assert_int_equal(be->ops->cfg_combine(be, &a, &b, 4.5f, &a, &err), DT_EINVAL);
    assert_non_null(strstr(err.msg, "cfg_combine"));
    dt_tensor e = a;
    e.strides[1] = 2;
    dt_err_clear(&err);
    assert_int_equal(be->ops->cfg_combine(be, &a, &e, 4.5f, &a, &err), DT_EINVAL);
    e = a;
    e.strides[0] = 4;
    dt_err_clear(&err);
    assert_int_equal(be->ops->cfg_combine(be, &a, &e, 4.5f, &a, &err), DT_EINVAL);
    dt_backend_destroy(be);
}

static void test_timestep_embedding(void **state)
{
    (void)state;
    /* diffusers Timesteps(256, flip_sin_to_cos=True, shift=0): [cos(t f_k), sin(t f_k)],
     * f_k = exp(-ln(10000) k / 128) */
    float t[2] = {0.0f, 999.0f}, out[2 * 256];
    dt_timestep_embedding(t, 2, 256, 1, 0.0f, out);
    for (int k = 0; k < 128; k++) {
        assert_true(out[k] == 1.0f && out[128 + k] == 0.0f);
        double f = exp(-log(10000.0) * k / 128.0);
        assert_true(fabs(out[256 + k] - cos(999.0 * f)) < 2e-4);
        assert_true(fabs(out[256 + 128 + k] - sin(999.0 * f)) < 2e-4);
    }
}

static void test_pos_embed(void **state)
{
    (void)state;
    /* 2x3 grid, dim 8, base 2, scale 1: channel 0..1 sin(w), 2..3 cos(w), 4..7 the same for h */
    float out[6 * 8];
    dt_sincos_pos_embed_2d(8, 2, 3, 2, 1.0f, out);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++) {
            const float *o = out + (i * 3 + j) * 8;
            double pw = j / (3.0 / 2.0), ph = i / (2.0 / 2.0);
            for (int k = 0; k < 2; k++) {
                double om = 1.0 / pow(10000.0, k / 2.0);
                assert_true(fabs(o[k] - sin(pw * om)) < 1e-6 && fabs(o[2 + k] - cos(pw * om)) < 1e-6);
                assert_true(fabs(o[4 + k] - sin(ph * om)) < 1e-6 && fabs(o[6 + k] - cos(ph * om)) < 1e-6);
            }
        }
}

/* The vectorized softmax row against its plain reference and against a double-precision
 * softmax, for lengths around the vector width and scores far from 0. */
static void test_softmax_row(void **state)
{
    (void)state;
    tu_rng r = {99};
    const int64_t lens[] = {1, 5, 8, 9, 63, 120, 1024, 1031};
    const float scales[] = {1.0f, 0.11785113f, 0.02f};
    for (size_t li = 0; li < sizeof lens / sizeof *lens; li++)
        for (size_t si = 0; si < 3; si++) {
            int64_t n = lens[li];
            float *x = tu_alloc(n), *a = tu_alloc(n), *b = tu_alloc(n);
            uint16_t *pa = calloc(n, 2), *pb = calloc(n, 2);
            tu_fill(&r, x, n, 40.0f);
            for (int64_t j = 0; j < n; j++) x[j] += 7.0f;
            double mx = -INFINITY, sum = 0;
            for (int64_t j = 0; j < n; j++) mx = x[j] > mx ? x[j] : mx;
            for (int64_t j = 0; j < n; j++) sum += exp(((double)x[j] - mx) * scales[si]);
            memcpy(a, x, n * 4); memcpy(b, x, n * 4);
            cpu_softmax_row(a, n, scales[si], a, NULL); /* in place */
            cpu_softmax_row_plain(b, n, scales[si], b, NULL);
            for (int64_t j = 0; j < n; j++) {
                double arg = ((double)x[j] - mx) * scales[si], want = exp(arg) / sum;
                /* the f32 argument x·scale − max·scale carries ~|arg|·2^-24 of rounding */
                double tol = 2e-6 + 2.5e-7 * fabs(arg);
                assert_true(fabs(a[j] - b[j]) <= tol * b[j] + 1e-30);
                assert_true(fabs(a[j] - want) <= tol * want + 1e-30);
            }
            float *ea = tu_alloc(n), *eb = tu_alloc(n), *xc = tu_alloc(n); /* scratch rows */
            memcpy(xc, x, n * 4);
            cpu_softmax_row(x, n, scales[si], ea, pa);
            cpu_softmax_row_plain(x, n, scales[si], eb, pb);
            assert_memory_equal(x, xc, n * 4); /* the scores are only read */
            free(ea); free(eb); free(xc);
            for (int64_t j = 0; j < n; j++) /* bf16 codes of values a few ulp apart: equal or adjacent */
                assert_true(abs((int)pa[j] - (int)pb[j]) <= 1);
            free(x); free(a); free(b); free(pa); free(pb);
        }
}

/* The timing wrapper forwards to the real backend (same results) and counts by op kind. */
static void test_timed_backend(void **state)
{
    (void)state;
    tu_rng r = {5};
    dt_dtype cd = tu_fast_dtype();
    dt_backend *plain = tu_backend(cd), *inner = tu_backend(cd), *tb = NULL;
    dt_err err = {0};
    assert_null(dt_backend_times(plain));
    assert_int_equal(dt_backend_timed(inner, &tb, &err), DT_OK);
    dt_op_times *t = dt_backend_times(tb);
    assert_non_null(t);
    int M = 33, K = 40, N = 24;
    float *w = tu_alloc((size_t)N * K), *x = tu_alloc((size_t)M * K), *y1 = tu_poisoned((size_t)M * N),
          *y2 = tu_poisoned((size_t)M * N);
    tu_fill(&r, w, (size_t)N * K, 0.3f);
    tu_fill(&r, x, (size_t)M * K, 1.0f);
    dt_backend *bes[2] = {plain, tb};
    float *ys[2] = {y1, y2};
    for (int i = 0; i < 2; i++) {
        dt_linear *l;
        assert_int_equal(bes[i]->ops->linear_create(bes[i], w, NULL, K, N, DT_ACT_GELU_TANH, M, cd, &l, &err), DT_OK);
        int64_t xs[2] = {M, K}, ysh[2] = {M, N};
        dt_tensor tx = dt_tensor_view(x, DT_F32, 2, xs), ty = dt_tensor_view(ys[i], DT_F32, 2, ysh);
        assert_int_equal(bes[i]->ops->linear_forward(bes[i], l, &tx, &ty, &err), DT_OK);
        int64_t s3[3] = {1, M, N};
        dt_tensor q = dt_tensor_view(ys[i], DT_F32, 3, s3);
        assert_int_equal(bes[i]->ops->gated_add(bes[i], &q, &q, NULL, &err), DT_OK);
        bes[i]->ops->linear_destroy(l);
    }
    assert_memory_equal(y1, y2, (size_t)M * N * 4);
    assert_int_equal(t->calls[DT_OPK_LINEAR], 1);
    assert_int_equal(t->calls[DT_OPK_ELEMENTWISE], 1);
    assert_int_equal(t->calls[DT_OPK_ATTENTION], 0);
    assert_true(t->seconds[DT_OPK_LINEAR] > 0);
    dt_backend_destroy(tb); /* destroys the inner backend too */
    dt_backend_destroy(plain);
    free(w); free(x); free(y1); free(y2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_bf16_gemm_contract),
        cmocka_unit_test(test_linear_rejects_bad_shapes),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_layernorm_modulate),
        cmocka_unit_test(test_gated_add),
        cmocka_unit_test(test_activations),
        cmocka_unit_test(test_patchify_roundtrip),
        cmocka_unit_test(test_add_rows),
        cmocka_unit_test(test_repeat_rows),
        cmocka_unit_test(test_sub),
        cmocka_unit_test(test_cfg_combine),
        cmocka_unit_test(test_timestep_embedding),
        cmocka_unit_test(test_pos_embed),
        cmocka_unit_test(test_softmax_row),
        cmocka_unit_test(test_timed_backend),
    };
    return cmocka_run_group_tests_name("kernels", tests, NULL, NULL);
}
