/* Times the exact int8 GEMM (kernels/cpu/gemm_s8.h) against oneDNN's f32 matmul (what qlinear
 * runs on CPUs without VNNI, and what the float layers run) on the shapes that matter: the
 * PixArt-XL-2 512² CFG linears (M = 2048 tokens, 240 caption rows), SD U-Net 3x3 convolutions
 * as im2col GEMMs (CFG batch 2), and the same at 1024² for PixArt. The int8 time includes the
 * per-call activation packing; both sides have their weights packed beforehand (once, as the
 * layers do at creation). Rounds alternate int8 / f32; min and median per shape.
 *   build/tests/bench/bench_gemm_s8 [rounds (5)] [shape index, -1 all]
 * `make bench-gemm-s8` runs it on 2 threads. Checks a sample of entries against the exact dot
 * product before timing (a wrong kernel is not timed). Reports wall time and process CPU time: run
 * with OMP_WAIT_POLICY=passive, CPU time is the threads' busy time, which a loaded machine's
 * time slicing does not inflate. */
#include "kernels/cpu/gemm_s8.h"
#include <dnnl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    const char *name;
    int64_t M, K, N;
} shape;

static const shape SHAPES[] = {
    {"pixart qkv", 2048, 1152, 3456},        {"pixart proj/q", 2048, 1152, 1152},
    {"pixart fc1", 2048, 1152, 4608},        {"pixart fc2", 2048, 4608, 1152},
    {"pixart caption kv", 240, 1152, 2304},  {"sd conv 64² 320", 8192, 2880, 320},
    {"sd conv 32² 640", 2048, 5760, 640},    {"sd conv 16² 1280", 512, 11520, 1280},
    {"sd conv 64² in 640", 8192, 5760, 320},
};

static double clk(clockid_t id)
{
    struct timespec t;
    clock_gettime(id, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) { return *(const double *)a < *(const double *)b ? -1 : *(const double *)a > *(const double *)b; }

#define CK(x) do { dnnl_status_t s_ = (x); if (s_ != dnnl_success) { fprintf(stderr, "bench_gemm_s8: %s failed (%d)\n", #x, (int)s_); exit(1); } } while (0)

typedef struct {
    dnnl_primitive_t prim;
    dnnl_memory_t src, wei, dst;
    dnnl_stream_t stream;
} f32_gemm;

/* y[M,N] = x[M,K]·W[K,N], W (torch [N,K]) reordered once into the layout oneDNN picks. */
static void f32_create(dnnl_engine_t eng, dnnl_stream_t stream, const shape *s, const float *w, float *x, float *y, f32_gemm *g)
{
    dnnl_memory_desc_t src, any, plain, dst;
    dnnl_dims_t sd = {s->M, s->K}, wd = {s->K, s->N}, ws = {1, s->K}, dd = {s->M, s->N};
    dnnl_memory_desc_init_by_tag(&src, 2, sd, dnnl_f32, dnnl_ab);
    dnnl_memory_desc_init_by_tag(&any, 2, wd, dnnl_f32, dnnl_format_tag_any);
    dnnl_memory_desc_init_by_strides(&plain, 2, wd, dnnl_f32, ws);
    dnnl_memory_desc_init_by_tag(&dst, 2, dd, dnnl_f32, dnnl_ab);
    dnnl_matmul_desc_t desc;
    CK(dnnl_matmul_desc_init(&desc, &src, &any, NULL, &dst));
    dnnl_primitive_desc_t pd;
    CK(dnnl_primitive_desc_create(&pd, &desc, NULL, eng, NULL));
    CK(dnnl_primitive_create(&g->prim, pd));
    dnnl_memory_t wplain;
    CK(dnnl_memory_create(&wplain, &plain, eng, (void *)w));
    CK(dnnl_memory_create(&g->wei, dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0), eng, DNNL_MEMORY_ALLOCATE));
    dnnl_primitive_t reo;
    dnnl_primitive_desc_t rpd;
    CK(dnnl_reorder_primitive_desc_create(&rpd, &plain, eng, dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0), eng, NULL));
    CK(dnnl_primitive_create(&reo, rpd));
    dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, wplain}, {DNNL_ARG_TO, g->wei}};
    CK(dnnl_primitive_execute(reo, stream, 2, ra));
    CK(dnnl_stream_wait(stream));
    dnnl_primitive_destroy(reo);
    dnnl_primitive_desc_destroy(rpd);
    dnnl_memory_destroy(wplain);
    CK(dnnl_memory_create(&g->src, &src, eng, x));
    CK(dnnl_memory_create(&g->dst, &dst, eng, y));
    dnnl_primitive_desc_destroy(pd);
    g->stream = stream;
}

static void f32_run(f32_gemm *g)
{
    dnnl_exec_arg_t a[3] = {{DNNL_ARG_SRC, g->src}, {DNNL_ARG_WEIGHTS, g->wei}, {DNNL_ARG_DST, g->dst}};
    CK(dnnl_primitive_execute(g->prim, g->stream, 3, a));
    CK(dnnl_stream_wait(g->stream));
}

static void f32_destroy(f32_gemm *g)
{
    dnnl_primitive_destroy(g->prim);
    dnnl_memory_destroy(g->src), dnnl_memory_destroy(g->wei), dnnl_memory_destroy(g->dst);
}

static int bench_shape(dnnl_engine_t eng, dnnl_stream_t stream, const shape *s, int rounds, int threads)
{
    size_t mk = (size_t)(s->M * s->K), nk = (size_t)(s->N * s->K), mn = (size_t)(s->M * s->N);
    int8_t *A = malloc(mk), *W = malloc(nk), *P = malloc(gemm_s8_packed_bytes(s->N, s->K));
    int32_t *C = malloc(mn * sizeof(int32_t));
    float *xf = malloc(mk * sizeof(float)), *wf = malloc(nk * sizeof(float)), *yf = malloc(mn * sizeof(float));
    void *scratch = aligned_alloc(64, gemm_s8_scratch_bytes(threads));
    double *ts = malloc(4 * (size_t)rounds * sizeof(double)); /* wall s8, wall f32, cpu s8, cpu f32 */
    if (!A || !W || !P || !C || !xf || !wf || !yf || !scratch || !ts) { fprintf(stderr, "bench_gemm_s8: out of memory\n"); return 1; }
    uint64_t r = 42;
    for (size_t i = 0; i < mk; i++) { r = r * 6364136223846793005ULL + 1442695040888963407ULL; A[i] = (int8_t)(r >> 56); xf[i] = A[i]; }
    for (size_t i = 0; i < nk; i++) { r = r * 6364136223846793005ULL + 1442695040888963407ULL; W[i] = (int8_t)(r >> 56); wf[i] = W[i]; }
    gemm_s8_pack_b(W, s->K, s->N, s->K, P);
    f32_gemm g;
    f32_create(eng, stream, s, wf, xf, yf, &g);
    /* warm-up, and a sample of entries checked against the exact dot product */
    gemm_s8_run(s->M, s->N, s->K, A, s->K, P, C, s->N, 0, GEMM_S8_ISA_AUTO, threads, scratch);
    f32_run(&g);
    for (int i = 0; i < 64; i++) {
        int64_t m = (int64_t)(((uint64_t)i * 2654435761u) % (uint64_t)s->M), n = (int64_t)(((uint64_t)i * 40503u) % (uint64_t)s->N);
        int64_t want = 0;
        for (int64_t k = 0; k < s->K; k++) want += A[m * s->K + k] * W[n * s->K + k];
        if (C[m * s->N + n] != want) { fprintf(stderr, "bench_gemm_s8: %s: wrong entry (%ld, %ld)\n", s->name, (long)m, (long)n); return 1; }
    }
    for (int i = 0; i < rounds; i++) {
        double t = clk(CLOCK_MONOTONIC), c = clk(CLOCK_PROCESS_CPUTIME_ID);
        gemm_s8_run(s->M, s->N, s->K, A, s->K, P, C, s->N, 0, GEMM_S8_ISA_AUTO, threads, scratch);
        ts[i] = clk(CLOCK_MONOTONIC) - t, ts[2 * rounds + i] = clk(CLOCK_PROCESS_CPUTIME_ID) - c;
        t = clk(CLOCK_MONOTONIC), c = clk(CLOCK_PROCESS_CPUTIME_ID);
        f32_run(&g);
        ts[rounds + i] = clk(CLOCK_MONOTONIC) - t, ts[3 * rounds + i] = clk(CLOCK_PROCESS_CPUTIME_ID) - c;
    }
    for (int j = 0; j < 4; j++) qsort(ts + j * rounds, (size_t)rounds, sizeof *ts, cmp_d);
    double gmac = (double)s->M * (double)s->N * (double)s->K * 1e-9;
    const double *w8 = ts, *wl = ts + rounds, *c8 = ts + 2 * rounds, *cf = ts + 3 * rounds;
    int md = rounds / 2;
    printf("%-19s %5ld %5ld %5ld | wall ms s8 %7.1f %7.1f f32 %7.1f %7.1f = %.2fx %.2fx | cpu ms s8 %7.1f %7.1f f32 %7.1f %7.1f = "
           "%.2fx %.2fx | %.1f GMAC/cpu-s s8 %.1f f32\n",
           s->name, (long)s->M, (long)s->K, (long)s->N, w8[0] * 1e3, w8[md] * 1e3, wl[0] * 1e3, wl[md] * 1e3, wl[0] / w8[0],
           wl[md] / w8[md], c8[0] * 1e3, c8[md] * 1e3, cf[0] * 1e3, cf[md] * 1e3, cf[0] / c8[0], cf[md] / c8[md], gmac / c8[0],
           gmac / cf[0]);
    fflush(stdout);
    f32_destroy(&g);
    free(A), free(W), free(P), free(C), free(xf), free(wf), free(yf), free(scratch), free(ts);
    return 0;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 5, only = argc > 2 ? atoi(argv[2]) : -1;
    int nshapes = (int)(sizeof SHAPES / sizeof *SHAPES);
    if (rounds < 1 || only >= nshapes) { fprintf(stderr, "usage: bench_gemm_s8 [rounds >= 1] [shape index < %d]\n", nshapes); return 2; }
    int threads = omp_get_max_threads();
    dnnl_engine_t eng;
    dnnl_stream_t stream;
    CK(dnnl_engine_create(&eng, dnnl_cpu, 0));
    CK(dnnl_stream_create(&stream, eng, dnnl_stream_default_flags));
    printf("exact int8 GEMM (%s micro-kernel) vs oneDNN f32 matmul, %d threads, %d alternated rounds; min median;\n"
           "x = f32 time / s8 time (> 1: int8 faster); cpu = process CPU time (OMP_WAIT_POLICY=passive: busy time, robust to a loaded machine)\n",
           gemm_s8_have_avx2() ? "AVX2" : "plain C", threads, rounds);
    printf("%-19s %5s %5s %5s\n", "shape", "M", "K", "N");
    int rc = 0;
    for (int i = 0; i < nshapes && !rc; i++)
        if (only < 0 || only == i) rc = bench_shape(eng, stream, &SHAPES[i], rounds, threads);
    dnnl_stream_destroy(stream);
    dnnl_engine_destroy(eng);
    return rc;
}
