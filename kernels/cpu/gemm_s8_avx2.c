/* Exact int8 GEMM through int16 multiply-adds (kernels/cpu/gemm_s8.h has the contract).
 *
 * Blocking (BLIS order, B pre-packed): a task owns MC rows and a range of 16-channel panels;
 * per KC slice of K it widens its rows of A into int16 panels of MR rows (scratch, in L2),
 * then runs the MR x NR micro-kernel over every (panel of B, panel of A) pair, B's KC x 16
 * slice staying in L1 across the A panels. MR x NR = 6 x 16: 12 int32 accumulators, two
 * widened B vectors and one broadcast A pair fill the 16 ymm registers.
 * Layouts (both micro-kernels read them):
 *   B panel p (channels 16p..16p+15), Kp = K rounded up to even: for each k pair q, 32 bytes:
 *     [h·16 + j·2 + t] = W[16p + 8h + j][2q + t]  (h: channel half, t: k within the pair),
 *     so vpmovsxbw of one half gives 8 channels x (k, k+1) as int16 pairs, zero padded.
 *   A panel (MR rows of one KC slice, kcp = kc rounded up to even): for each k pair q,
 *     MR int16 pairs: [r·2 + t] = A[r][k0 + 2q + t], rows past M and k past K zero. */
#include "kernels/cpu/gemm_s8.h"
#include <immintrin.h>
#include <omp.h>
#include <string.h>

#define MR 6
#define NR 16
#define KC 512     /* the longest K slice; slices are even, so B slices start at a k pair */
#define MC_MAX 192 /* multiple of MR: an A block (192 x 512 int16, 192 KiB) stays in L2 */

typedef void (*ukr_fn)(int64_t kq, const int16_t *a, const int8_t *b, int32_t *c, int64_t ldc, int acc);

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
static int64_t rup(int64_t a, int64_t b) { return cdiv(a, b) * b; }

/* ---- plain C ---- */

static void ukr_plain(int64_t kq, const int16_t *a, const int8_t *b, int32_t *c, int64_t ldc, int acc)
{
    int32_t t[MR][NR] = {{0}};
    for (int64_t q = 0; q < kq; q++, a += 2 * MR, b += 2 * NR)
        for (int r = 0; r < MR; r++)
            for (int n = 0; n < NR; n++) {
                const int8_t *bn = b + (n / 8) * 16 + (n % 8) * 2;
                t[r][n] += a[2 * r] * bn[0] + a[2 * r + 1] * bn[1];
            }
    for (int r = 0; r < MR; r++)
        for (int n = 0; n < NR; n++) c[r * ldc + n] = acc ? c[r * ldc + n] + t[r][n] : t[r][n];
}

/* ---- AVX2 ---- */

#define AVX2 __attribute__((target("avx2")))

AVX2 static void ukr_avx2(int64_t kq, const int16_t *a, const int8_t *b, int32_t *c, int64_t ldc, int acc)
{
    __m256i c0[MR], c1[MR];
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) c0[r] = c1[r] = _mm256_setzero_si256();
    for (int64_t q = 0; q < kq; q++, a += 2 * MR, b += 2 * NR) {
        __m256i b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b));
        __m256i b1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b + 16)));
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            int32_t pair;
            memcpy(&pair, a + 2 * r, sizeof pair);
            __m256i av = _mm256_set1_epi32(pair);
            c0[r] = _mm256_add_epi32(c0[r], _mm256_madd_epi16(av, b0));
            c1[r] = _mm256_add_epi32(c1[r], _mm256_madd_epi16(av, b1));
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        __m256i *p0 = (__m256i *)(c + r * ldc), *p1 = (__m256i *)(c + r * ldc + 8);
        if (acc) {
            c0[r] = _mm256_add_epi32(c0[r], _mm256_loadu_si256(p0));
            c1[r] = _mm256_add_epi32(c1[r], _mm256_loadu_si256(p1));
        }
        _mm256_storeu_si256(p0, c0[r]);
        _mm256_storeu_si256(p1, c1[r]);
    }
}

int gemm_s8_have_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
}

/* ---- packing ---- */

size_t gemm_s8_packed_bytes(int64_t N, int64_t K) { return (size_t)rup(N, NR) * (size_t)rup(K, 2); }

void gemm_s8_pack_b(const int8_t *W, int64_t ldw, int64_t N, int64_t K, int8_t *packed)
{
    int64_t kp = rup(K, 2);
    for (int64_t p = 0; p < cdiv(N, NR); p++) {
        int8_t *dst = packed + p * NR * kp;
        for (int64_t q = 0; q < kp / 2; q++)
            for (int n = 0; n < NR; n++)
                for (int t = 0; t < 2; t++) {
                    int64_t ch = p * NR + n, k = 2 * q + t;
                    dst[q * 2 * NR + (n / 8) * 16 + (n % 8) * 2 + t] = ch < N && k < K ? W[ch * ldw + k] : 0;
                }
    }
}

/* Rows m0..m0+mc-1, columns k0..k0+kc-1 of A into int16 A panels (layout above). */
static void pack_a(const int8_t *A, int64_t lda, int64_t m0, int64_t mc, int64_t k0, int64_t kc, int16_t *dst)
{
    int64_t kcp = rup(kc, 2);
    for (int64_t i = 0; i < cdiv(mc, MR); i++, dst += MR * kcp)
        for (int r = 0; r < MR; r++) {
            int64_t row = i * MR + r;
            int16_t *d = dst + 2 * r;
            if (row >= mc) {
                for (int64_t q = 0; q < kcp / 2; q++) d[2 * q * MR] = d[2 * q * MR + 1] = 0;
                continue;
            }
            const int8_t *s = A + (m0 + row) * lda + k0;
            for (int64_t q = 0; q < kc / 2; q++) {
                d[2 * q * MR] = s[2 * q];
                d[2 * q * MR + 1] = s[2 * q + 1];
            }
            if (kc & 1) {
                d[(kcp - 2) * MR] = s[kc - 1];
                d[(kcp - 2) * MR + 1] = 0;
            }
        }
}

/* ---- driver ---- */

static size_t thread_scratch(void) { return (size_t)rup((int64_t)(MC_MAX * KC * sizeof(int16_t) + MR * NR * sizeof(int32_t)), 64); }

size_t gemm_s8_scratch_bytes(int threads) { return (size_t)(threads > 0 ? threads : 1) * thread_scratch(); }

typedef struct {
    int64_t M, N, K, lda, ldc, mc, pc;
    const int8_t *A, *B;
    int32_t *C;
    int accumulate;
    ukr_fn ukr;
} gemm_job;

/* An MR x NR tile at the edge: the micro-kernel writes a full tile into tmp, the valid part is merged. */
static void edge_tile(const gemm_job *g, int64_t kq, const int16_t *ap, const int8_t *bp, int32_t *c, int mr, int nr,
                      int acc, int32_t *tmp)
{
    g->ukr(kq, ap, bp, tmp, NR, 0);
    for (int r = 0; r < mr; r++)
        for (int n = 0; n < nr; n++) c[r * g->ldc + n] = acc ? c[r * g->ldc + n] + tmp[r * NR + n] : tmp[r * NR + n];
}

/* Rows [m0, m0+mc) x panels [p0, p1) of C. */
static void run_task(const gemm_job *g, int64_t m0, int64_t mc, int64_t p0, int64_t p1, int16_t *apack, int32_t *tmp)
{
    /* equal even slices of at most KC (K = 1152: 3 x 384, not 512 + 512 + 128) */
    int64_t kp = rup(g->K, 2), step = rup(cdiv(g->K, cdiv(g->K, KC)), 2);
    for (int64_t k0 = 0; k0 < g->K; k0 += step) {
        int64_t kc = g->K - k0 < step ? g->K - k0 : step, kcp = rup(kc, 2);
        int acc = g->accumulate || k0 > 0;
        pack_a(g->A, g->lda, m0, mc, k0, kc, apack);
        for (int64_t p = p0; p < p1; p++) {
            const int8_t *bp = g->B + p * NR * kp + k0 * NR;
            int nr = (int)(g->N - p * NR < NR ? g->N - p * NR : NR);
            for (int64_t i = 0; i < cdiv(mc, MR); i++) {
                int mr = (int)(mc - i * MR < MR ? mc - i * MR : MR);
                int32_t *c = g->C + (m0 + i * MR) * g->ldc + p * NR;
                const int16_t *ap = apack + i * MR * kcp;
                if (mr == MR && nr == NR) g->ukr(kcp / 2, ap, bp, c, g->ldc, acc);
                else edge_tile(g, kcp / 2, ap, bp, c, mr, nr, acc, tmp);
            }
        }
    }
}

void gemm_s8_run(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *Bpacked,
                 int32_t *C, int64_t ldc, int accumulate, gemm_s8_isa isa, int threads, void *scratch)
{
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (!accumulate)
            for (int64_t m = 0; m < M; m++) memset(C + m * ldc, 0, (size_t)N * sizeof(int32_t));
        return;
    }
    if (threads < 1) threads = 1;
    int avx2 = isa != GEMM_S8_ISA_PLAIN && gemm_s8_have_avx2();
    gemm_job g = {.M = M, .N = N, .K = K, .lda = lda, .ldc = ldc, .A = A, .B = Bpacked, .C = C,
                  .accumulate = accumulate, .ukr = avx2 ? ukr_avx2 : ukr_plain};
    /* Row blocks of at most MC_MAX, their count a multiple of the thread count where M allows
     * (equal shares); too few of them (small M): the panels of B are split as well. */
    int64_t mb = cdiv(M, MC_MAX), rows = cdiv(M, MR);
    if (mb % threads) mb += threads - mb % threads;
    if (mb > rows) mb = rows;
    g.mc = rup(cdiv(M, mb), MR);
    mb = cdiv(M, g.mc);
    int64_t np = cdiv(N, NR), nb = mb < threads ? cdiv(threads, mb) : 1;
    if (nb > np) nb = np;
    g.pc = cdiv(np, nb);
    nb = cdiv(np, g.pc);
    size_t per = thread_scratch();
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t t = 0; t < mb * nb; t++) {
        char *mine = (char *)scratch + (size_t)omp_get_thread_num() * per;
        int64_t mi = t / nb, ni = t % nb, m0 = mi * g.mc, p0 = ni * g.pc;
        run_task(&g, m0, M - m0 < g.mc ? M - m0 : g.mc, p0, p0 + g.pc < np ? p0 + g.pc : np, (int16_t *)mine,
                 (int32_t *)(mine + MC_MAX * KC * sizeof(int16_t)));
    }
}

void gemm_s8_ref(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *W, int64_t ldw,
                 int32_t *C, int64_t ldc)
{
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            int32_t s = 0;
            for (int64_t k = 0; k < K; k++) s += A[m * lda + k] * W[n * ldw + k];
            C[m * ldc + n] = s;
        }
}
