/* PixArt-α and -Σ transformers against diffusers on the committed fixtures
 * (tests/fixtures, made by scripts/make_fixtures.py), in f32 and bf16. */
#include "testutil.h"
#include "runtime/core/arena.h"
#include "runtime/core/safetensors.h"
#include "runtime/models/pixart.h"

#define FIX "tests/fixtures"

static const char *models[] = {"pixart-alpha-tiny", "pixart-sigma-tiny"};
static const char *cases[] = {"square", "nonsquare", "odd"};

/* Runs one fixture case; returns the output (caller frees) and its element count. */
static float *run_case(pixart_model *m, const char *model, const char *cse, size_t *n_out)
{
    char in_path[512];
    snprintf(in_path, sizeof in_path, FIX "/%s/case_%s.in.safetensors", model, cse);
    const pixart_config *c = pixart_get_config(m);
    pixart_input_file x = {0};
    dt_err err = {0};
    if (pixart_inputs_load(in_path, c, &x, &err) != DT_OK) fail_msg("%s", err.msg);
    int64_t shape[4] = {x.ths.shape[0], c->out_channels, x.ths.shape[2], x.ths.shape[3]};
    dt_tensor out = dt_tensor_view(NULL, DT_F32, 4, shape);
    *n_out = (size_t)dt_tensor_numel(&out);
    float *o = tu_poisoned(*n_out);
    out.data = o;
    dt_arena arena;
    dt_arena_init(&arena);
    if (pixart_forward(m, &x.in, &arena, &out, &err) != DT_OK) fail_msg("%s/%s: %s", model, cse, err.msg);
    dt_arena_free(&arena);
    pixart_inputs_free(&x);
    return o;
}

static float *expected(const char *model, const char *cse, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, FIX "/%s/case_%s.out.safetensors", model, cse);
    return tu_read_f32(path, "sample", n, NULL, NULL);
}

static void parity(dt_dtype cd, double tol)
{
    for (size_t mi = 0; mi < 2; mi++) {
        dt_backend *be = tu_backend(cd);
        char dir[256];
        snprintf(dir, sizeof dir, FIX "/%s/transformer", models[mi]);
        pixart_model *m;
        dt_err err = {0};
        if (pixart_load(be, dir, &m, &err) != DT_OK) fail_msg("%s", err.msg);
        for (size_t ci = 0; ci < 3; ci++) {
            size_t n;
            float *o = run_case(m, models[mi], cases[ci], &n), *ref = expected(models[mi], cases[ci], n);
            char label[96];
            snprintf(label, sizeof label, "%s %-9s %s", models[mi], cases[ci], dt_dtype_name(cd));
            tu_check_rel_l2(label, o, ref, n, tol);
            free(o);
            free(ref);
        }
        pixart_free(m);
        dt_backend_destroy(be);
    }
}

static void test_parity_f32(void **state) { (void)state; parity(DT_F32, 1e-4); }
static void test_parity_bf16(void **state) { (void)state; TU_REQUIRE_BF16(); parity(DT_BF16, 2e-2); }

/* Same inputs, settings and thread count: bit-identical output. */
static void test_deterministic(void **state)
{
    (void)state;
    dt_backend *be = tu_backend(tu_fast_dtype());
    pixart_model *m;
    dt_err err = {0};
    if (pixart_load(be, FIX "/pixart-sigma-tiny", &m, &err) == DT_OK) fail_msg("a pipeline folder is not a transformer folder");
    dt_err_clear(&err);
    if (pixart_load(be, FIX "/pixart-sigma-tiny/transformer", &m, &err) != DT_OK) fail_msg("%s", err.msg);
    size_t n1, n2;
    float *a = run_case(m, "pixart-sigma-tiny", "odd", &n1), *b = run_case(m, "pixart-sigma-tiny", "odd", &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(a, b, n1 * sizeof(float));
    free(a);
    free(b);
    pixart_free(m);
    dt_backend_destroy(be);
}

static void test_param_count(void **state)
{
    (void)state;
    /* diffusers PixArt-XL-2: 610,856,096 parameters without the micro-condition embedders */
    pixart_config c = pixart_config_xl2(64);
    assert_int_equal(pixart_param_count(&c), 610856096LL);
    /* the tiny fixtures: the file holds exactly what the count says */
    for (int mi = 0; mi < 2; mi++) {
        char dir[256];
        snprintf(dir, sizeof dir, FIX "/%s/transformer", models[mi]);
        dt_err err = {0};
        pixart_config tc;
        assert_int_equal(pixart_config_load(dir, &tc, &err), DT_OK);
        assert_int_equal(pixart_param_count(&tc), tu_file_params(dir));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parity_f32),
        cmocka_unit_test(test_parity_bf16),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_param_count),
    };
    return cmocka_run_group_tests_name("pixart", tests, NULL, NULL);
}
