/* The exact (erf) GELU and the geglu op (kernels/cpu/vmath.h vm_gelu_erf, kernels/cpu/geglu.c)
 * against their plain-C references (kernels/cpu/ref.c, in double): per element over the whole
 * float range that matters, through every op that takes DT_ACT_GELU_ERF, on random rows of
 * awkward widths with NaN-poisoned outputs; shape errors; the `supports` answers. */
#include "testutil.h"
#include "kernels/cpu/ref.h"
#include "kernels/quant.h"
#include "kernels/backend_timing.h"
#include <math.h>
#include <string.h>

/* |got − want| within rel of |want| (and 1e-37 absolute: the far tail underflows). */
static void assert_close(const float *got, const float *want, const float *x, size_t n, double rel, const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (!(fabs((double)got[i] - want[i]) <= rel * fabs((double)want[i]) + 1e-37))
            fail_msg("%s: element %zu (input %.9g): got %.9g want %.9g", what, i, x ? x[i] : NAN, got[i], want[i]);
}

/* vm_gelu_erf per element: a dense sweep of [-16, 16] (both tails, the switch at 14, zero) and
 * every power of two down to 2^-40. The reference is 0.5·x·erfc(−x/√2) in double. */
static void test_gelu_erf_activation(void **state)
{
    (void)state;
    dt_backend *be = tu_backend(DT_F32);
    int ns = 400001, np = 2 * 41, n = ns + np;
    float *x = tu_alloc(n), *y = tu_poisoned(n), *want = tu_alloc(n);
    for (int i = 0; i < ns; i++) x[i] = -16.0f + 32.0f * (float)i / (float)(ns - 1);
    for (int k = 0; k < 41; k++) x[ns + 2 * k] = ldexpf(1.0f, -k), x[ns + 2 * k + 1] = -ldexpf(1.0f, -k);
    for (int i = 0; i < n; i++) want[i] = ref_act(DT_ACT_GELU_ERF, x[i]);
    int64_t s[1] = {n};
    dt_tensor tx = dt_tensor_view(x, DT_F32, 1, s), ty = dt_tensor_view(y, DT_F32, 1, s);
    dt_err err = {0};
    assert_int_equal(be->ops->activation(be, DT_ACT_GELU_ERF, &tx, &ty, &err), DT_OK);
    assert_close(y, want, x, n, 1e-6, "activation gelu_erf");
    /* spot values of Φ: gelu(1) = Φ(1) = 0.841344746..., gelu(-3) = -3·0.001349898... */
    assert_true(fabs(ref_act(DT_ACT_GELU_ERF, 1.0f) - 0.8413447461) < 1e-7);
    assert_true(fabs(ref_act(DT_ACT_GELU_ERF, -3.0f) + 3 * 0.0013498980316) < 1e-9);
    /* in place */
    memcpy(y, x, (size_t)n * sizeof(float));
    assert_int_equal(be->ops->activation(be, DT_ACT_GELU_ERF, &ty, &ty, &err), DT_OK);
    assert_close(y, want, x, n, 1e-6, "activation gelu_erf in place");
    dt_backend_destroy(be);
    free(x); free(y); free(want);
}

/* geglu with each activation, and gated_act with the erf GELU, against the references. */
static void test_geglu_matches_reference(void **state)
{
    (void)state;
    static const int sizes[][2] = {{1, 1}, {3, 7}, {17, 64}, {5, 4097}, {61, 100}, {240, 129}};
    dt_act acts[4] = {DT_ACT_GELU_ERF, DT_ACT_GELU_TANH, DT_ACT_SILU, DT_ACT_NONE};
    dt_backend *be = tu_backend(DT_F32);
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
        for (int k = 0; k < 4; k++) {
            int M = sizes[s][0], F = sizes[s][1];
            size_t nx = (size_t)M * 2 * F, ny = (size_t)M * F;
            tu_rng r = {(uint64_t)(M * 131 + F * 7 + k)};
            float *x = tu_alloc(nx), *y = tu_poisoned(ny), *yr = tu_alloc(ny);
            tu_fill(&r, x, nx, 6.0f);
            int64_t sx[2] = {M, 2 * F}, sy[2] = {M, F};
            dt_tensor tx = dt_tensor_view(x, DT_F32, 2, sx), ty = dt_tensor_view(y, DT_F32, 2, sy);
            dt_err e = {0};
            assert_int_equal(be->ops->geglu(be, acts[k], &tx, &ty, &e), DT_OK);
            ref_geglu(acts[k], x, M, F, yr);
            /* per element for the erf GELU (its own accuracy claim); the others as gated_act's test */
            if (acts[k] == DT_ACT_GELU_ERF) assert_close(y, yr, NULL, ny, 1.5e-6, "geglu gelu_erf");
            else assert_rel_l2_below(y, yr, ny, 2e-6);
            if (acts[k] == DT_ACT_GELU_ERF) { /* gated_act takes it too (gate in the first half) */
                float *y2 = tu_poisoned(ny);
                dt_tensor ty2 = dt_tensor_view(y2, DT_F32, 2, sy);
                assert_int_equal(be->ops->gated_act(be, DT_ACT_GELU_ERF, &tx, &ty2, &e), DT_OK);
                ref_gated_act(DT_ACT_GELU_ERF, x, M, F, yr);
                assert_close(y2, yr, NULL, ny, 1.5e-6, "gated_act gelu_erf");
                free(y2);
            }
            free(x); free(y); free(yr);
        }
    dt_backend_destroy(be);
}

/* The U-Net's shape: a 3-D [B, N, 2F] input is rows like a 2-D one. */
static void test_geglu_3d_rows(void **state)
{
    (void)state;
    dt_backend *be = tu_backend(DT_F32);
    int B = 2, N = 9, F = 40;
    size_t nx = (size_t)B * N * 2 * F, ny = (size_t)B * N * F;
    tu_rng r = {77};
    float *x = tu_alloc(nx), *y = tu_poisoned(ny), *yr = tu_alloc(ny);
    tu_fill(&r, x, nx, 3.0f);
    int64_t sx[3] = {B, N, 2 * F}, sy[3] = {B, N, F};
    dt_tensor tx = dt_tensor_view(x, DT_F32, 3, sx), ty = dt_tensor_view(y, DT_F32, 3, sy);
    dt_err e = {0};
    assert_int_equal(be->ops->geglu(be, DT_ACT_GELU_ERF, &tx, &ty, &e), DT_OK);
    ref_geglu(DT_ACT_GELU_ERF, x, (int64_t)B * N, F, yr);
    assert_close(y, yr, NULL, ny, 1.5e-6, "geglu 3-D");
    dt_backend_destroy(be);
    free(x); free(y); free(yr);
}

static void test_geglu_rejects_bad_input(void **state)
{
    (void)state;
    dt_backend *be = tu_backend(DT_F32);
    float x[12] = {0}, y[6];
    dt_err e = {0};
    int64_t sx[2] = {2, 5}, sy[2] = {2, 2}; /* 5 is not 2·2 */
    dt_tensor tx = dt_tensor_view(x, DT_F32, 2, sx), ty = dt_tensor_view(y, DT_F32, 2, sy);
    assert_int_equal(be->ops->geglu(be, DT_ACT_GELU_ERF, &tx, &ty, &e), DT_EINVAL);
    assert_non_null(strstr(e.msg, "geglu"));
    int64_t sx2[2] = {3, 4}, sy2[2] = {2, 2}; /* row counts differ */
    tx = dt_tensor_view(x, DT_F32, 2, sx2);
    ty = dt_tensor_view(y, DT_F32, 2, sy2);
    assert_int_equal(be->ops->geglu(be, DT_ACT_GELU_ERF, &tx, &ty, &e), DT_EINVAL);
    int64_t sx3[2] = {2, 4};
    tx = dt_tensor_view(x, DT_F32, 2, sx3);
    e = (dt_err){0}; /* the first error of a dt_err is kept */
    assert_int_equal(be->ops->geglu(be, (dt_act)99, &tx, &ty, &e), DT_EINVAL);
    assert_non_null(strstr(e.msg, "activation"));
    tx.strides[0] = 6; /* not contiguous */
    assert_int_equal(be->ops->geglu(be, DT_ACT_GELU_ERF, &tx, &ty, &e), DT_EINVAL);
    dt_backend_destroy(be);
}

/* The other ops that take DT_ACT_GELU_ERF: a float linear (oneDNN's gelu_erf post-op), a
 * quantized linear's epilogue and GroupNorm's fused activation. */
static void test_gelu_erf_in_linear_qlinear_group_norm(void **state)
{
    (void)state;
    dt_backend *be = tu_backend(DT_F32);
    int M = 37, K = 48, N = 29;
    tu_rng r = {11};
    float *w = tu_alloc((size_t)N * K), *b = tu_alloc(N), *x = tu_alloc((size_t)M * K);
    float *y = tu_poisoned((size_t)M * N), *yr = tu_alloc((size_t)M * N);
    tu_fill(&r, w, (size_t)N * K, 0.4f);
    tu_fill(&r, b, N, 0.5f);
    tu_fill(&r, x, (size_t)M * K, 1.0f);
    dt_err e = {0};
    dt_linear *l = NULL;
    assert_int_equal(be->ops->linear_create(be, w, b, K, N, DT_ACT_GELU_ERF, M, DT_F32, &l, &e), DT_OK);
    int64_t xs[2] = {M, K}, ys[2] = {M, N};
    dt_tensor tx = dt_tensor_view(x, DT_F32, 2, xs), ty = dt_tensor_view(y, DT_F32, 2, ys);
    assert_int_equal(be->ops->linear_forward(be, l, &tx, &ty, &e), DT_OK);
    be->ops->linear_destroy(l);
    ref_linear(x, M, K, w, b, N, DT_ACT_GELU_ERF, yr);
    assert_rel_l2_below(y, yr, (size_t)M * N, 2e-5);
    /* not the tanh GELU: the two differ by far more than the tolerance on these inputs */
    float *yt = tu_alloc((size_t)M * N);
    ref_linear(x, M, K, w, b, N, DT_ACT_GELU_TANH, yt);
    assert_true(tu_rel_l2(y, yt, (size_t)M * N) > 1e-4);

    dt_qweights qw;
    assert_int_equal(dt_qweights_make(w, K, N, 8, 0, NULL, 0, &qw, &e), DT_OK);
    assert_int_equal(be->ops->qlinear_create(be, &qw, b, DT_ACT_GELU_ERF, M, &l, &e), DT_OK);
    for (size_t i = 0; i < (size_t)M * N; i++) y[i] = NAN;
    assert_int_equal(be->ops->linear_forward(be, l, &tx, &ty, &e), DT_OK);
    be->ops->linear_destroy(l);
    ref_qlinear(x, M, &qw, b, DT_ACT_GELU_ERF, yr, NULL, NULL);
    assert_rel_l2_below(y, yr, (size_t)M * N, 1e-5);
    dt_qweights_free(&qw);

    int64_t gs[4] = {2, 3, 5, 32};
    size_t ng = 2 * 3 * 5 * 32;
    float *gx = tu_alloc(ng), *gy = tu_poisoned(ng), *gr = tu_alloc(ng), *gam = tu_alloc(32), *bet = tu_alloc(32);
    tu_fill(&r, gx, ng, 2.0f);
    tu_fill(&r, gam, 32, 1.5f);
    tu_fill(&r, bet, 32, 1.0f);
    int64_t cs[1] = {32};
    dt_tensor tgx = dt_tensor_view(gx, DT_F32, 4, gs), tgy = dt_tensor_view(gy, DT_F32, 4, gs), tgr = dt_tensor_view(gr, DT_F32, 4, gs);
    dt_tensor tg = dt_tensor_view(gam, DT_F32, 1, cs), tb = dt_tensor_view(bet, DT_F32, 1, cs);
    assert_int_equal(be->ops->group_norm(be, &tgx, 8, &tg, &tb, 1e-5f, DT_ACT_GELU_ERF, &tgy, &e), DT_OK);
    ref_group_norm(&tgx, 8, gam, bet, 1e-5f, DT_ACT_GELU_ERF, &tgr);
    assert_rel_l2_below(gy, gr, ng, 1e-5);
    dt_backend_destroy(be);
    free(w); free(b); free(x); free(y); free(yr); free(yt);
    free(gx); free(gy); free(gr); free(gam); free(bet);
}

/* supports: f32 only; the timing wrapper forwards geglu to the inner backend and counts it. */
static void test_supports_and_timing(void **state)
{
    (void)state;
    dt_backend *be = tu_backend(DT_F32), *tb = NULL;
    assert_true(be->ops->supports(be, DT_OP_GEGLU, DT_F32));
    assert_true(be->ops->supports(be, DT_OP_GELU_ERF, DT_F32));
    assert_false(be->ops->supports(be, DT_OP_GEGLU, DT_BF16));
    assert_false(be->ops->supports(be, DT_OP_GELU_ERF, DT_I8));
    dt_err e = {0};
    assert_int_equal(dt_backend_timed(be, &tb, &e), DT_OK);
    assert_true(tb->ops->supports(tb, DT_OP_GEGLU, DT_F32));
    float x[8] = {1, 2, 3, 4, -1, 0.5f, 2, -3}, y[4], yr[4];
    int64_t sx[2] = {2, 4}, sy[2] = {2, 2};
    dt_tensor tx = dt_tensor_view(x, DT_F32, 2, sx), ty = dt_tensor_view(y, DT_F32, 2, sy);
    assert_int_equal(tb->ops->geglu(tb, DT_ACT_GELU_ERF, &tx, &ty, &e), DT_OK);
    ref_geglu(DT_ACT_GELU_ERF, x, 2, 2, yr);
    assert_close(y, yr, NULL, 4, 1.5e-6, "timed geglu");
    dt_op_times *t = dt_backend_times(tb);
    assert_int_equal(t->calls[DT_OPK_ELEMENTWISE], 1);
    dt_backend_destroy(tb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gelu_erf_activation),
        cmocka_unit_test(test_geglu_matches_reference),
        cmocka_unit_test(test_geglu_3d_rows),
        cmocka_unit_test(test_geglu_rejects_bad_input),
        cmocka_unit_test(test_gelu_erf_in_linear_qlinear_group_norm),
        cmocka_unit_test(test_supports_and_timing),
    };
    return cmocka_run_group_tests_name("gelu", tests, NULL, NULL);
}
