/* The noise generator against torch.randn (tests/fixtures/noise, from torch 1.13): every
 * recorded tensor must match bit for bit, on both of torch's CPU kernels, including
 * successive draws from one generator; `ditrt eval noise` writes the same bits. */
#include "testutil.h"
#include "runtime/core/rng.h"
#include "runtime/core/safetensors.h"
#include <sys/wait.h>

#define NOISE "tests/fixtures/noise"

static dt_safetensors *open_fixture(const char *path)
{
    dt_safetensors *st = NULL;
    dt_err e = {0};
    if (dt_st_open(path, &st, &e) != DT_OK) fail_msg("%s", e.msg);
    return st;
}

/* Counts elements whose bits differ (0.0 and -0.0 differ too). */
static size_t bit_mismatches(const float *a, const float *b, size_t n)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += memcmp(&a[i], &b[i], sizeof(float)) != 0;
    return bad;
}

static void check_file(const char *path, dt_rng_variant variant)
{
    dt_safetensors *st = open_fixture(path);
    int checked = 0, seq_next = 0;
    dt_rng seq;
    for (int i = 0; i < dt_st_count(st); i++) {
        const dt_st_entry *e = dt_st_at(st, i);
        if (e->name[0] != 's') continue;
        size_t n = e->nbytes / sizeof(float);
        uint64_t seed = strtoull(e->name + 1, NULL, 10);
        float *got = tu_poisoned(n);
        dt_rng g;
        dt_rng_init(&g, seed, variant);
        dt_rng_randn(&g, got, n);
        size_t bad = bit_mismatches(got, (const float *)e->data, n);
        if (bad) fail_msg("%s: %s: %zu of %zu values differ from torch", path, e->name, bad, n);
        free(got);
        checked++;
    }
    /* q<seed>_<k>: drawn in order k = 0, 1, .. from one generator */
    for (;; seq_next++) {
        char name[64];
        const dt_st_entry *e = NULL;
        for (int i = 0; i < dt_st_count(st) && !e; i++) {
            const char *nm = dt_st_at(st, i)->name;
            const char *us = strchr(nm, '_');
            if (nm[0] == 'q' && us && atoi(us + 1) == seq_next) e = dt_st_at(st, i);
        }
        if (!e) break;
        if (seq_next == 0) dt_rng_init(&seq, strtoull(e->name + 1, NULL, 10), variant);
        size_t n = e->nbytes / sizeof(float);
        float *got = tu_poisoned(n);
        dt_rng_randn(&seq, got, n);
        size_t bad = bit_mismatches(got, (const float *)e->data, n);
        snprintf(name, sizeof name, "%s", e->name);
        if (bad) fail_msg("%s: draw %s (%zu values) after %d earlier draws: %zu differ", path, name, n, seq_next, bad);
        free(got);
    }
    assert_true(checked >= 40);
    assert_true(seq_next >= 5);
    dt_st_close(st);
}

static void test_vector_kernel_bit_exact(void **state) { (void)state; check_file(NOISE "/randn_vector.safetensors", DT_RNG_VECTOR); }
static void test_scalar_kernel_bit_exact(void **state) { (void)state; check_file(NOISE "/randn_scalar.safetensors", DT_RNG_SCALAR); }

/* MT19937 reference values (Matsumoto & Nishimura, init_genrand(5489): 3499211612, ...). */
static void test_mt19937_reference(void **state)
{
    (void)state;
    dt_rng g;
    dt_rng_init(&g, 5489, DT_RNG_VECTOR);
    assert_int_equal(dt_rng_u32(&g), 3499211612u);
    assert_int_equal(dt_rng_u32(&g), 581869302u);
    assert_int_equal(dt_rng_u32(&g), 3890346734u);
    for (int i = 3; i < 9999; i++) dt_rng_u32(&g);
    assert_int_equal(dt_rng_u32(&g), 4123659995u); /* the 10000th output (C++ std::mt19937) */
    /* only the low 32 bits of the seed matter */
    dt_rng a, b;
    dt_rng_init(&a, 5, DT_RNG_VECTOR);
    dt_rng_init(&b, (1ull << 32) + 5, DT_RNG_VECTOR);
    for (int i = 0; i < 1000; i++) assert_int_equal(dt_rng_u32(&a), dt_rng_u32(&b));
}

/* The variants differ only in the 16-block math: small draws agree, large ones are close. */
static void test_variants_close(void **state)
{
    (void)state;
    enum { N = 4099 };
    float *a = tu_alloc(N), *b = tu_alloc(N);
    dt_rng ga, gb;
    dt_rng_init(&ga, 3, DT_RNG_VECTOR);
    dt_rng_init(&gb, 3, DT_RNG_SCALAR);
    dt_rng_randn(&ga, a, 15);
    dt_rng_randn(&gb, b, 15);
    assert_int_equal(bit_mismatches(a, b, 15), 0);
    dt_rng_randn(&ga, a, N);
    dt_rng_randn(&gb, b, N);
    double mean = 0, var = 0;
    for (int i = 0; i < N; i++) {
        assert_true(fabsf(a[i] - b[i]) <= 4e-6f * (1 + fabsf(b[i])));
        mean += a[i];
        var += (double)a[i] * a[i];
    }
    mean /= N;
    var = var / N - mean * mean;
    assert_true(fabs(mean) < 0.06 && fabs(var - 1) < 0.08);
    free(a);
    free(b);
}

static int run_quiet(const char *cmd)
{
    char full[2048];
    snprintf(full, sizeof full, "%s >/dev/null 2>&1", cmd);
    int st = system(full);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 255;
}

static void test_cli_eval_noise(void **state)
{
    (void)state;
    char dir[256], out[512], cmd[1024];
    tu_tmpdir(dir, sizeof dir);
    snprintf(out, sizeof out, "%s/noise.safetensors", dir);
    snprintf(cmd, sizeof cmd, "./ditrt eval noise --seed 4294967301 --shape 2,4,8,8 --out %s", out);
    assert_int_equal(run_quiet(cmd), 0);
    dt_safetensors *got = open_fixture(out), *ref = open_fixture(NOISE "/randn_vector.safetensors");
    const dt_st_entry *g = dt_st_find(got, "noise"), *r = dt_st_find(ref, "s4294967301_2x4x8x8");
    assert_non_null(g);
    assert_non_null(r);
    assert_int_equal(g->ndim, 4);
    assert_int_equal(g->shape[0], 2);
    assert_int_equal(g->shape[3], 8);
    assert_int_equal(g->nbytes, r->nbytes);
    assert_int_equal(bit_mismatches(g->data, r->data, r->nbytes / 4), 0);
    dt_st_close(got);
    dt_st_close(ref);

    snprintf(cmd, sizeof cmd, "./ditrt eval noise --seed 0 --shape 1,4,13,7 --variant scalar --out %s", out);
    assert_int_equal(run_quiet(cmd), 0);
    got = open_fixture(out);
    ref = open_fixture(NOISE "/randn_scalar.safetensors");
    g = dt_st_find(got, "noise");
    r = dt_st_find(ref, "s0_1x4x13x7");
    assert_int_equal(g->nbytes, r->nbytes);
    assert_int_equal(bit_mismatches(g->data, r->data, r->nbytes / 4), 0);
    dt_st_close(got);
    dt_st_close(ref);
    unlink(out);

    /* bad input: non-zero exit, no file */
    const char *bad[] = {"--seed -1 --shape 2,2", "--seed x --shape 2,2", "--seed 1 --shape 2,,2",
                         "--seed 1 --shape 0,2", "--seed 1 --shape 2,", "--seed 1 --shape 1,2,3,4,5,6",
                         "--seed 1 --shape 2 --variant fast", "--shape 2", "--seed 1 --shape 2 --bogus 1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(cmd, sizeof cmd, "./ditrt eval noise %s --out %s", bad[i], out);
        if (run_quiet(cmd) == 0) fail_msg("accepted: %s", cmd);
        if (access(out, F_OK) == 0) fail_msg("wrote %s for: %s", out, cmd);
    }
    tu_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mt19937_reference),
        cmocka_unit_test(test_vector_kernel_bit_exact),
        cmocka_unit_test(test_scalar_kernel_bit_exact),
        cmocka_unit_test(test_variants_close),
        cmocka_unit_test(test_cli_eval_noise),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
