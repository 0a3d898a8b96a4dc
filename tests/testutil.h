/* Shared test helpers: deterministic random data, error norms, temp paths. */
#ifndef DT_TESTUTIL_H
#define DT_TESTUTIL_H
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
#include "ditrt.h"
#include "runtime/core/tensor.h"
#include "kernels/backend.h"

typedef struct { uint64_t s; } tu_rng;

static inline float tu_uniform(tu_rng *r)
{
    r->s = r->s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((r->s >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static inline void tu_fill(tu_rng *r, float *x, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++) x[i] = scale * tu_uniform(r);
}

static inline float *tu_alloc(size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof(float));
    assert_non_null(p);
    return p;
}

/* NaN-filled buffer: a kernel that skips an element leaves a NaN behind. */
static inline float *tu_poisoned(size_t n)
{
    float *p = tu_alloc(n);
    for (size_t i = 0; i < n; i++) p[i] = NAN;
    return p;
}

/* ||a - b|| / ||b||; NaN anywhere gives +inf so the check fails. */
static inline double tu_rel_l2(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i]) || !isfinite(b[i])) return INFINITY;
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

#define assert_rel_l2_below(a, b, n, tol) do { \
    double _e = tu_rel_l2((a), (b), (n)); \
    if (!(_e <= (tol))) fail_msg("relative L2 error %.3g exceeds %.3g", _e, (double)(tol)); \
} while (0)

/* bf16 parts run natively where the CPU has bf16 (AVX512-BF16, AMX; kernels/backend.h), else
 * emulated: the suite sets DITRT_BF16_EMULATED=1 unless the caller set it (0 skips them). Emulated
 * bf16 (kernels/cpu/cpu_backend.c) rounds the same tensors to bf16 as native bf16 and runs f32
 * GEMMs on them: it checks our bf16 data flow and its accuracy, not oneDNN's bf16 kernels (an
 * AVX-512 BF16 machine runs those; `make test-avx2` there runs the emulation too). A bf16 part
 * is skipped, with the reason printed, only when no bf16 backend can be made.
 * tu_fast_dtype is the dtype a user gets by default (f32 where bf16 is not native). */
static inline int tu_have_bf16(void)
{
    if (dt_backend_native_dtype(DT_DEV_CPU, DT_BF16)) return 1;
    if (setenv("DITRT_BF16_EMULATED", "1", 0) != 0) fail_msg("setenv DITRT_BF16_EMULATED failed");
    dt_backend *be = NULL;
    dt_err err = {0};
    dt_backend_config cfg = {.device = DT_DEV_CPU, .compute = DT_BF16};
    if (dt_backend_create(&cfg, &be, &err) == DT_OK) {
        dt_backend_destroy(be);
        return 1;
    }
    print_message("  skipped (bf16 part): %s\n", err.msg);
    return 0;
}
#define TU_REQUIRE_BF16() do { if (!tu_have_bf16()) skip(); } while (0)
static inline dt_dtype tu_fast_dtype(void) { return dt_backend_default_dtype(DT_DEV_CPU); }

static inline dt_backend *tu_backend(dt_dtype compute)
{
    dt_backend *be = NULL;
    dt_err err = {0};
    dt_backend_config cfg = {.device = DT_DEV_CPU, .compute = compute, .threads = 0};
    if (dt_backend_create(&cfg, &be, &err) != DT_OK) fail_msg("backend: %s", err.msg);
    return be;
}

#define assert_ok(expr) do { dt_err _e = {0}; (void)_e; dt_status _s = (expr); \
    if (_s != DT_OK) fail_msg("%s failed: status %d", #expr, (int)_s); } while (0)

/* A fresh temp folder for a test (removed by the caller with tu_rmtree). */
static inline void tu_tmpdir(char *out, size_t n)
{
    snprintf(out, n, "/tmp/ditrt-test-XXXXXX");
    assert_non_null(mkdtemp(out));
}

static inline void tu_rmtree(const char *dir)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
}

static inline void tu_write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

/* Runs cmd through the shell with its stderr (and stdout too when with_stdout) captured in
 * out (n bytes, NUL-terminated) through a file in dir; returns the exit code, 255 when the
 * command did not exit normally. */
static inline int tu_run(const char *dir, const char *cmd, int with_stdout, char *out, size_t n)
{
    char full[4096], path[512];
    snprintf(path, sizeof path, "%s/tu_run.txt", dir);
    int len = snprintf(full, sizeof full, with_stdout ? "%s >'%s' 2>&1" : "%s >/dev/null 2>'%s'", cmd, path);
    if (len < 0 || (size_t)len >= sizeof full) return 255;
    int st = system(full);
    FILE *f = fopen(path, "r");
    size_t got = f ? fread(out, 1, n - 1, f) : 0;
    if (f) fclose(f);
    out[got] = 0;
    unlink(path);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 255;
}

#endif
