/* The exact int8 GEMM (kernels/cpu/gemm_s8.h), its AVX2 and plain-C micro-kernels, against the
 * triple-loop reference, bit for bit: random shapes with every kind of tail (M not a multiple of
 * the 6-row tile, N not of the 16-channel panel, odd K, K over one 512 slice), padded strides,
 * accumulate mode, the int8 extremes (-128·-128 over a long K), 1 to 3 threads, and M small
 * enough that the threads split the channels instead of the rows. */
#include "testutil.h"
#include "kernels/cpu/gemm_s8.h"

typedef struct {
    int64_t M, N, K;
} shape;

static void fill_s8(tu_rng *r, int8_t *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        r->s = r->s * 6364136223846793005ULL + 1442695040888963407ULL;
        x[i] = (int8_t)(r->s >> 56);
    }
}

/* One shape on one ISA and thread count: C from gemm_s8_run (plain and accumulate) == reference. */
static void check(const shape *s, gemm_s8_isa isa, int threads, int extremes, uint64_t seed)
{
    int64_t lda = s->K + 3, ldw = s->K + 5, ldc = s->N + 7;
    int8_t *A = malloc((size_t)(s->M * lda) + 1), *W = malloc((size_t)(s->N * ldw) + 1);
    int8_t *P = malloc(gemm_s8_packed_bytes(s->N, s->K) + 1);
    int32_t *C = malloc((size_t)(s->M * ldc) * sizeof(int32_t) + 4), *R = malloc((size_t)(s->M * ldc) * sizeof(int32_t) + 4);
    void *scratch = aligned_alloc(64, gemm_s8_scratch_bytes(threads));
    assert_true(A && W && P && C && R && scratch);
    tu_rng r = {seed};
    fill_s8(&r, A, (size_t)(s->M * lda));
    fill_s8(&r, W, (size_t)(s->N * ldw));
    if (extremes) {
        memset(A, 0x80, (size_t)(s->M * lda)); /* -128 everywhere: the largest products */
        /* even channels all -128 (int16 pair sums of 32768: one past int16), odd ones mixed */
        for (int64_t i = 0; i < s->N * ldw; i++) W[i] = (i / ldw) % 2 == 0 || (i & 1) ? -128 : 127;
    }
    gemm_s8_pack_b(W, ldw, s->N, s->K, P);
    gemm_s8_ref(s->M, s->N, s->K, A, lda, W, ldw, R, ldc);
    /* poison, to see every element written and the padding between rows kept */
    for (int64_t i = 0; i < s->M * ldc; i++) C[i] = (int32_t)0x5a5a5a5a;
    gemm_s8_run(s->M, s->N, s->K, A, lda, P, C, ldc, 0, isa, threads, scratch);
    for (int64_t m = 0; m < s->M; m++) {
        assert_memory_equal(C + m * ldc, R + m * ldc, (size_t)s->N * sizeof(int32_t));
        for (int64_t n = s->N; n < ldc && m * ldc + n < s->M * ldc; n++) assert_int_equal(C[m * ldc + n], 0x5a5a5a5a);
    }
    /* accumulate: C += A·Wᵀ again gives twice the reference */
    gemm_s8_run(s->M, s->N, s->K, A, lda, P, C, ldc, 1, isa, threads, scratch);
    for (int64_t m = 0; m < s->M; m++)
        for (int64_t n = 0; n < s->N; n++) assert_int_equal(C[m * ldc + n], 2 * (int64_t)R[m * ldc + n]);
    free(A), free(W), free(P), free(C), free(R), free(scratch);
}

static void test_random_shapes(void **state)
{
    (void)state;
    tu_rng r = {12345};
    const shape fixed[] = {{1, 1, 1}, {6, 16, 2}, {7, 17, 3}, {5, 15, 1}, {13, 33, 513}, {1, 40, 1100},
                           {240, 70, 77}, {200, 48, 1025}, {37, 200, 64}, {2, 3, 1024}};
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
        for (int isa = GEMM_S8_ISA_PLAIN; isa <= GEMM_S8_ISA_AVX2; isa++)
            for (int th = 1; th <= 3; th++) check(&fixed[i], (gemm_s8_isa)isa, th, 0, 100 + i);
    for (int i = 0; i < 24; i++) {
        tu_uniform(&r);
        shape s = {1 + (int64_t)(r.s >> 33) % 300, 1 + (int64_t)(r.s >> 20) % 90, 1 + (int64_t)(r.s >> 45) % 1300};
        for (int isa = GEMM_S8_ISA_PLAIN; isa <= GEMM_S8_ISA_AVX2; isa++) check(&s, (gemm_s8_isa)isa, 1 + i % 3, 0, 7 + i);
    }
}

/* -128·-128 and -128·127 over K = 4608 (a PixArt fc2 row): sums up to 75.5 million, exact. */
static void test_extremes(void **state)
{
    (void)state;
    const shape s = {9, 18, 4608};
    for (int isa = GEMM_S8_ISA_PLAIN; isa <= GEMM_S8_ISA_AVX2; isa++) check(&s, (gemm_s8_isa)isa, 2, 1, 1);
    int8_t a[3] = {-128, -128, -128}, w[3] = {-128, -128, -128};
    int32_t c = 0;
    gemm_s8_ref(1, 1, 3, a, 3, w, 3, &c, 1);
    assert_int_equal(c, 3 * 16384); /* the reference itself */
}

/* Empty shapes write nothing, K = 0 writes zeros (or leaves C when accumulating). */
static void test_degenerate(void **state)
{
    (void)state;
    void *scratch = aligned_alloc(64, gemm_s8_scratch_bytes(2));
    int8_t a[4] = {1, 2, 3, 4}, p[64];
    int32_t c[4] = {9, 9, 9, 9};
    gemm_s8_run(0, 2, 2, a, 2, p, c, 2, 0, GEMM_S8_ISA_AUTO, 2, scratch);
    gemm_s8_run(2, 0, 2, a, 2, p, c, 2, 0, GEMM_S8_ISA_AUTO, 2, scratch);
    for (int i = 0; i < 4; i++) assert_int_equal(c[i], 9);
    gemm_s8_run(2, 2, 0, a, 2, p, c, 2, 1, GEMM_S8_ISA_AUTO, 2, scratch);
    for (int i = 0; i < 4; i++) assert_int_equal(c[i], 9);
    gemm_s8_run(2, 2, 0, a, 2, p, c, 2, 0, GEMM_S8_ISA_AUTO, 2, scratch);
    for (int i = 0; i < 4; i++) assert_int_equal(c[i], 0);
    free(scratch);
}

/* The packed bytes are a pure layout: channel n, k at [panel][k pair][half][n % 8][k % 2]. */
static void test_pack_layout(void **state)
{
    (void)state;
    int64_t N = 18, K = 5;
    int8_t W[18 * 5], P[32 * 6];
    assert_int_equal(gemm_s8_packed_bytes(N, K), 32 * 6);
    for (int i = 0; i < N * K; i++) W[i] = (int8_t)(i + 1);
    gemm_s8_pack_b(W, K, N, K, P);
    for (int64_t n = 0; n < 32; n++)
        for (int64_t k = 0; k < 6; k++) {
            int8_t want = n < N && k < K ? W[n * K + k] : 0;
            assert_int_equal(P[(n / 16) * 16 * 6 + (k / 2) * 32 + ((n % 16) / 8) * 16 + (n % 8) * 2 + k % 2], want);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pack_layout),
        cmocka_unit_test(test_random_shapes),
        cmocka_unit_test(test_extremes),
        cmocka_unit_test(test_degenerate),
    };
    if (!gemm_s8_have_avx2()) printf("gemm_s8: no AVX2 on this CPU, the AVX2 cases run the plain kernel\n");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
