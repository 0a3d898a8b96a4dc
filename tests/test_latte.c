/* Latte video transformer against diffusers on tests/fixtures/latte-tiny (made by
 * scripts/fixtures/latte.py), in f32 and bf16; input checks; parameter count. */
#include "testutil.h"
#include "runtime/core/arena.h"
#include "runtime/core/safetensors.h"
#include "runtime/models/latte.h"

#define DIR_ "tests/fixtures/latte-tiny"

static const char *cases[] = {"f4", "f2_nonsquare", "f3_odd", "f1"};
#define NCASES (sizeof cases / sizeof *cases)

static float *run_case(latte_model *m, const char *cse, size_t *n_out)
{
    char in_path[512];
    snprintf(in_path, sizeof in_path, DIR_ "/case_%s.in.safetensors", cse);
    const latte_config *c = latte_get_config(m);
    latte_input_file x = {0};
    dt_err err = {0};
    if (latte_inputs_load(in_path, c, &x, &err) != DT_OK) fail_msg("%s", err.msg);
    int64_t shape[5] = {x.ths.shape[0], c->out_channels, x.ths.shape[2], x.ths.shape[3], x.ths.shape[4]};
    dt_tensor out = dt_tensor_view(NULL, DT_F32, 5, shape);
    *n_out = (size_t)dt_tensor_numel(&out);
    float *o = tu_poisoned(*n_out);
    out.data = o;
    dt_arena arena;
    dt_arena_init(&arena);
    if (latte_forward(m, &x.in, &arena, &out, &err) != DT_OK) fail_msg("%s: %s", cse, err.msg);
    dt_arena_free(&arena);
    latte_inputs_free(&x);
    return o;
}

static void parity(dt_dtype cd, double tol)
{
    dt_backend *be = tu_backend(cd);
    latte_model *m;
    dt_err err = {0};
    if (latte_load(be, DIR_ "/transformer", &m, &err) != DT_OK) fail_msg("%s", err.msg);
    for (size_t ci = 0; ci < NCASES; ci++) {
        size_t n;
        float *o = run_case(m, cases[ci], &n), *ref = tu_fixture_out(DIR_, cases[ci], n);
        char label[64];
        snprintf(label, sizeof label, "latte-tiny %-13s %s", cases[ci], dt_dtype_name(cd));
        tu_check_rel_l2(label, o, ref, n, tol);
        free(o);
        free(ref);
    }
    latte_free(m);
    dt_backend_destroy(be);
}

static void test_parity_f32(void **state) { (void)state; parity(DT_F32, 1e-4); }
static void test_parity_bf16(void **state) { (void)state; TU_REQUIRE_BF16(); parity(DT_BF16, 2e-2); }

/* Same inputs twice: bit-identical (the cached position tables are reused, not corrupted). */
static void test_deterministic(void **state)
{
    (void)state;
    dt_backend *be = tu_backend(tu_fast_dtype());
    latte_model *m;
    dt_err err = {0};
    if (latte_load(be, DIR_ "/transformer", &m, &err) != DT_OK) fail_msg("%s", err.msg);
    size_t n1, n2, n3;
    float *a = run_case(m, "f3_odd", &n1), *b = run_case(m, "f2_nonsquare", &n2), *c = run_case(m, "f3_odd", &n3);
    assert_int_equal(n1, n3);
    assert_memory_equal(a, c, n1 * sizeof(float));
    free(a); free(b); free(c);
    latte_free(m);
    dt_backend_destroy(be);
}

/* Frames outside 1..video_length and wrong shapes fail with a message, before any work. */
static void test_bad_inputs(void **state)
{
    (void)state;
    dt_backend *be = tu_backend(DT_F32);
    latte_model *m;
    dt_err err = {0};
    if (latte_load(be, DIR_ "/transformer", &m, &err) != DT_OK) fail_msg("%s", err.msg);
    const latte_config *c = latte_get_config(m);
    int64_t hs5[5] = {1, 4, c->video_length + 1, 4, 4}, eh3[3] = {1, 3, c->caption_channels};
    dt_tensor hs = dt_tensor_view(NULL, DT_F32, 5, hs5), eh = dt_tensor_view(NULL, DT_F32, 3, eh3);
    hs.data = calloc((size_t)dt_tensor_numel(&hs), sizeof(float));
    eh.data = calloc((size_t)dt_tensor_numel(&eh), sizeof(float));
    int64_t os[5] = {1, c->out_channels, c->video_length + 1, 4, 4};
    dt_tensor out = dt_tensor_view(NULL, DT_F32, 5, os);
    out.data = calloc((size_t)dt_tensor_numel(&out), sizeof(float));
    float t = 1;
    latte_inputs in = {&hs, &eh, &t, NULL, NULL, NULL};
    dt_arena arena;
    dt_arena_init(&arena);
    assert_int_equal(latte_forward(m, &in, &arena, &out, &err), DT_EINVAL);
    assert_non_null(strstr(err.msg, "video_length"));
    dt_err_clear(&err);
    hs.shape[2] = out.shape[2] = 2;
    hs.shape[3] = out.shape[3] = 3;
    assert_int_equal(latte_forward(m, &in, &arena, &out, &err), DT_EINVAL);
    assert_non_null(strstr(err.msg, "patch_size"));
    dt_arena_free(&arena);
    free(hs.data); free(eh.data); free(out.data);
    /* a PixArt folder is refused with a message naming the field */
    latte_config lc;
    dt_err_clear(&err);
    assert_int_not_equal(latte_config_load("tests/fixtures/pixart-sigma-tiny/transformer", &lc, &err), DT_OK);
    latte_free(m);
    dt_backend_destroy(be);
}

static void test_param_count(void **state)
{
    (void)state;
    dt_err err = {0};
    latte_config tc;
    assert_int_equal(latte_config_load(DIR_ "/transformer", &tc, &err), DT_OK);
    assert_int_equal(latte_param_count(&tc), tu_file_params(DIR_ "/transformer"));
}

/* `ditrt eval transformer` and `ditrt info` dispatch a Latte folder on _class_name. */
static void test_cli_eval(void **state)
{
    (void)state;
    tu_check_eval_cli(DIR_, DIR_, "f3_odd", 1e-4);
    assert_int_equal(system("./ditrt info -m " DIR_ " | grep -q 'LatteTransformer3DModel'"), 0);
    assert_int_equal(system("./ditrt info -m " DIR_ " | grep -q 'parameters: 167504 (file holds 167504)'"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parity_f32),
        cmocka_unit_test(test_parity_bf16),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_param_count),
        cmocka_unit_test(test_cli_eval),
    };
    return cmocka_run_group_tests_name("latte", tests, NULL, NULL);
}
