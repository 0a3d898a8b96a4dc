/* `ditrt bench attention` (developer tool): one self-attention call of PixArt-XL's shape
 * (16 heads x 72, q/k/v strided in a fused [B, N, 3C] buffer, as the DiT block passes them)
 * through the fused kernel and the two-GEMM kernels, against the matmul floor: the FLOPs of
 * QKᵀ and PV (4·B·H·Nq·Nk·d, or the band's keys for --window) at the backend's GEMM rate on the
 * reference linear (M=2048 K=1152 N=4608), measured in the same rounds. The three are
 * alternated round by round, so a shared machine's load hits them alike; min and median of
 * the rounds are reported. f32 only (the fused kernel's arithmetic). */
#include "cli.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_LIST 8

typedef struct {
    int tokens[MAX_LIST], ntokens, threads[MAX_LIST], nthreads;
    int batch, heads, head_dim, rounds, window; /* window < 0: full attention */
    int int8;                                   /* --kernel int8: the fused kernel's int8-QKᵀ mode */
} attn_bench_args;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

static double min_of(const double *t, int n)
{
    double m = t[0];
    for (int i = 1; i < n; i++) m = t[i] < m ? t[i] : m;
    return m;
}

/* QKᵀ and PV multiply-adds x 2 over the keys each query sees */
static double attn_flops(const attn_bench_args *a, int N)
{
    double keys = (double)N * N;
    if (a->window >= 0) {
        keys = 0;
        for (int i = 0; i < N; i++) {
            int lo = i - a->window < 0 ? 0 : i - a->window, hi = i + a->window >= N ? N - 1 : i + a->window;
            keys += hi - lo + 1;
        }
    }
    return 4.0 * a->batch * a->heads * a->head_dim * keys;
}

typedef struct {
    dt_backend *be[2]; /* 0: fused, 1: two GEMMs */
    dt_linear *gemm;   /* the reference linear on be[1] */
    float *qkv, *out, *gx, *gy;
    dt_tensor q, k, v, o, tgx, tgy;
} attn_bench;

static dt_status setup(const attn_bench_args *a, int N, int threads, attn_bench *b, dt_err *err)
{
    const int M = 2048, K = 1152, Nn = 4608;
    for (int i = 0; i < 2; i++) {
        dt_backend_config cfg = {.device = DT_DEV_CPU, .compute = DT_F32, .threads = threads,
                                 .attn_kernel = i ? DT_ATTN_KERNEL_GEMM : a->int8 ? DT_ATTN_KERNEL_INT8 : DT_ATTN_KERNEL_FUSED};
        DT_TRY(dt_backend_create(&cfg, &b->be[i], err));
    }
    int64_t C = (int64_t)a->heads * a->head_dim, n3 = (int64_t)a->batch * N * 3 * C;
    b->qkv = malloc((size_t)n3 * sizeof(float));
    b->out = malloc((size_t)a->batch * N * C * sizeof(float));
    b->gx = malloc((size_t)M * K * sizeof(float));
    b->gy = malloc((size_t)M * Nn * sizeof(float));
    float *w = malloc((size_t)K * Nn * sizeof(float));
    if (!b->qkv || !b->out || !b->gx || !b->gy || !w) { free(w); return dt_fail(err, DT_ENOMEM, "out of memory"); }
    for (int64_t i = 0; i < n3; i++) b->qkv[i] = (float)((i * 104729) % 2001) * 1e-3f - 1.0f;
    for (size_t i = 0; i < (size_t)M * K; i++) b->gx[i] = (float)((i * 104729) % 1000) * 1e-3f - 0.5f;
    for (size_t i = 0; i < (size_t)K * Nn; i++) w[i] = (float)((i * 7919) % 1000) * 1e-4f - 0.05f;
    dt_status s = b->be[1]->ops->linear_create(b->be[1], w, NULL, K, Nn, DT_ACT_NONE, M, DT_F32, &b->gemm, err);
    free(w);
    DT_TRY(s);
    int64_t sh[3] = {a->batch, N, C}, gxs[2] = {M, K}, gys[2] = {M, Nn};
    b->q = dt_tensor_view(b->qkv, DT_F32, 3, sh);
    b->k = dt_tensor_view(b->qkv + C, DT_F32, 3, sh);
    b->v = dt_tensor_view(b->qkv + 2 * C, DT_F32, 3, sh);
    b->q.strides[0] = b->k.strides[0] = b->v.strides[0] = (int64_t)N * 3 * C;
    b->q.strides[1] = b->k.strides[1] = b->v.strides[1] = 3 * C;
    b->o = dt_tensor_view(b->out, DT_F32, 3, sh);
    b->tgx = dt_tensor_view(b->gx, DT_F32, 2, gxs);
    b->tgy = dt_tensor_view(b->gy, DT_F32, 2, gys);
    return DT_OK;
}

static void teardown(attn_bench *b)
{
    if (b->gemm) b->be[1]->ops->linear_destroy(b->gemm);
    for (int i = 0; i < 2; i++) dt_backend_destroy(b->be[i]);
    free(b->qkv); free(b->out); free(b->gx); free(b->gy);
}

static double cpu_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* which: 0 fused, 1 two GEMMs, 2 the reference GEMM; wall and process CPU seconds */
static dt_status timed(const attn_bench_args *a, attn_bench *b, int which, double *sec, double *cpu, dt_err *err)
{
    float scale = 1.0f / sqrtf((float)a->head_dim);
    double c0 = cpu_seconds(), t0 = cli_now();
    dt_status s;
    if (which == 2) s = b->be[1]->ops->linear_forward(b->be[1], b->gemm, &b->tgx, &b->tgy, err);
    else if (a->window >= 0)
        s = b->be[which]->ops->window_attention(b->be[which], &b->q, &b->k, &b->v, a->heads, scale, a->window, &b->o, err);
    else s = b->be[which]->ops->attention(b->be[which], &b->q, &b->k, &b->v, NULL, a->heads, scale, &b->o, err);
    *sec = cli_now() - t0;
    *cpu = cpu_seconds() - c0;
    return s;
}

static dt_status bench_one(const attn_bench_args *a, int N, int threads, dt_err *err)
{
    attn_bench b = {0};
    double *t = calloc((size_t)6 * a->rounds, sizeof *t), *c = t + 3 * a->rounds; /* wall, CPU */
    dt_status s = t ? setup(a, N, threads, &b, err) : dt_fail(err, DT_ENOMEM, "out of memory");
    double w, wc;
    for (int k = 0; s == DT_OK && k < 3; k++) s = timed(a, &b, k, &w, &wc, err); /* warm-up: primitives, scratch */
    for (int r = 0; s == DT_OK && r < a->rounds; r++)
        for (int k = 0; s == DT_OK && k < 3; k++) {
            int x = (k + r) % 3;
            s = timed(a, &b, x, &t[x * a->rounds + r], &c[x * a->rounds + r], err);
        }
    if (s == DT_OK) {
        double flops = attn_flops(a, N), gflop_gemm = 2.0 * 2048 * 1152 * 4608;
        double peak = gflop_gemm / min_of(t + 2 * a->rounds, a->rounds), peak_med = gflop_gemm / median(t + 2 * a->rounds, a->rounds);
        double floor_s = flops / peak, floor_med = flops / peak_med;
        double fmin = min_of(t, a->rounds), gmin = min_of(t + a->rounds, a->rounds);
        double fmed = median(t, a->rounds), gmed = median(t + a->rounds, a->rounds);
        char win[32] = "full";
        if (a->window >= 0) snprintf(win, sizeof win, "window %d", a->window);
        printf("  tokens %5d threads %d (%s, batch %d, %d heads x %d): %.2f GFLOP; GEMM rate %.0f GFLOP/s (median %.0f)"
               " -> floor %.4f s\n", N, threads, win, a->batch, a->heads, a->head_dim, flops / 1e9, peak / 1e9,
               peak_med / 1e9, floor_s);
        printf("    %-9s min %.4f s  median %.4f s  = %.2fx / %.2fx the floor (min/min, median/median)\n", a->int8 ? "int8 QK" : "fused", fmin, fmed,
               fmin / floor_s, fmed / floor_med);
        printf("    two GEMMs min %.4f s  median %.4f s  = %.2fx / %.2fx the floor; the first is %.2fx / %.2fx faster\n", gmin,
               gmed, gmin / floor_s, gmed / floor_med, gmin / fmin, gmed / fmed);
        const char *name = a->int8 ? "int8 QK" : "fused";
        /* process CPU time is blind to time-slicing on a loaded machine (not to a busy sibling core) */
        double cf = min_of(c, a->rounds), cg = min_of(c + a->rounds, a->rounds), cr = min_of(c + 2 * a->rounds, a->rounds);
        double cfloor = flops / (gflop_gemm / cr);
        printf("    CPU seconds (min over rounds, all threads): %s %.4f, two GEMMs %.4f, floor %.4f -> %s %.2fx,"
               " two GEMMs %.2fx the floor\n", name, cf, cg, cfloor, name, cf / cfloor, cg / cfloor);
    }
    teardown(&b);
    free(t);
    return s;
}

static int parse_list(const char *flag, const char *v, int lo, int hi, int *out, int *n)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", v);
    *n = 0;
    for (char *save = NULL, *p = strtok_r(buf, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        if (*n == MAX_LIST) return cli_usage_error("%s: at most %d values", flag, MAX_LIST), 0;
        if (!cli_parse_int(flag, p, lo, hi, &out[(*n)++])) return 0;
    }
    if (!*n) return cli_usage_error("%s: expected a comma-separated list", flag), 0;
    return 1;
}

int cli_bench_attention(int argc, char **argv)
{
    attn_bench_args a = {.tokens = {1024, 4096}, .ntokens = 2, .threads = {1, 2}, .nthreads = 2, .batch = 1,
                         .heads = 16, .head_dim = 72, .rounds = 5, .window = -1};
    for (int i = 2; i < argc; i++) {
        int miss = 0;
        const char *v;
        if ((v = cli_flag(argc, argv, &i, "--tokens", &miss))) { if (!parse_list("--tokens", v, 1, 65536, a.tokens, &a.ntokens)) return 2; }
        else if ((v = cli_flag(argc, argv, &i, "--threads", &miss))) { if (!parse_list("--threads", v, 1, 1024, a.threads, &a.nthreads)) return 2; }
        else if ((v = cli_flag(argc, argv, &i, "--batch", &miss))) { if (!cli_parse_int("--batch", v, 1, 64, &a.batch)) return 2; }
        else if ((v = cli_flag(argc, argv, &i, "--heads", &miss))) { if (!cli_parse_int("--heads", v, 1, 256, &a.heads)) return 2; }
        else if ((v = cli_flag(argc, argv, &i, "--head-dim", &miss))) { if (!cli_parse_int("--head-dim", v, 1, 512, &a.head_dim)) return 2; }
        else if ((v = cli_flag(argc, argv, &i, "--rounds", &miss))) { if (!cli_parse_int("--rounds", v, 1, 1000, &a.rounds)) return 2; }
        else if ((v = cli_flag(argc, argv, &i, "--window", &miss))) { if (!cli_parse_int("--window", v, 0, 1 << 20, &a.window)) return 2; }
        else if ((v = cli_flag(argc, argv, &i, "--kernel", &miss))) {
            if (strcmp(v, "fused") && strcmp(v, "int8")) return cli_usage_error("--kernel: expected fused or int8, got \"%s\"", v);
            a.int8 = !strcmp(v, "int8");
        }
        else if (miss) return cli_usage_error("%s: missing value", argv[i]);
        else return cli_unknown_option("bench", argv[i]);
    }
    printf("bench attention: %s vs two GEMMs vs the matmul floor, f32, %d alternated rounds\n",
           a.int8 ? "fused with int8 QKᵀ" : "fused", a.rounds);
    dt_err err = {0};
    for (int t = 0; t < a.ntokens; t++)
        for (int h = 0; h < a.nthreads; h++)
            if (bench_one(&a, a.tokens[t], a.threads[h], &err) != DT_OK) return cli_die(&err);
    return 0;
}
