/* Shared test helpers: deterministic random data, error norms, temp paths, fixture tensors,
 * files and commands, denoisers on fixture inputs. */
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

/* ---- fixture tensors (safetensors files of tests/fixtures, or a command's output) ---- */
#include "runtime/core/safetensors.h"

/* Entry `name` of an open file; fails the test naming it when the file lacks it. */
static inline const dt_st_entry *tu_st_need(const dt_safetensors *st, const char *name)
{
    const dt_st_entry *e = dt_st_find(st, name);
    if (!e) fail_msg("fixture lacks \"%s\"", name);
    return e;
}

/* Tensor `name` of an open file as a malloc'd f32 array (caller frees); n > 0: the tensor
 * must hold exactly n elements. */
static inline float *tu_st_f32(const dt_safetensors *st, const char *name, size_t n)
{
    const dt_st_entry *e = tu_st_need(st, name);
    size_t got = e->nbytes / dt_dtype_size(e->dtype);
    if (n) assert_int_equal(got, n);
    float *p = tu_alloc(got);
    dt_st_read_f32(e, p);
    return p;
}

/* Tensor `name` of the file at path, as tu_st_f32; *n_out (when given) gets its element
 * count and *t (when given) views it with the file's shape. */
static inline float *tu_read_f32(const char *path, const char *name, size_t n, size_t *n_out, dt_tensor *t)
{
    dt_safetensors *st;
    dt_err err = {0};
    if (dt_st_open(path, &st, &err) != DT_OK) fail_msg("%s", err.msg);
    const dt_st_entry *e = dt_st_find(st, name);
    if (!e) fail_msg("%s: no %s", path, name);
    float *p = tu_st_f32(st, name, n);
    if (n_out) *n_out = e->nbytes / dt_dtype_size(e->dtype);
    if (t) *t = dt_tensor_view(p, DT_F32, e->ndim, e->shape);
    dt_st_close(st);
    return p;
}

/* The reference output of a model fixture case: "sample" of <dir>/case_<cse>.out.safetensors,
 * n elements. */
static inline float *tu_fixture_out(const char *dir, const char *cse, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/case_%s.out.safetensors", dir, cse);
    return tu_read_f32(path, "sample", n, NULL, NULL);
}

/* Parameters the weight files of a model folder hold (diffusion_pytorch_model*.safetensors). */
static inline int64_t tu_file_params(const char *dir)
{
    dt_safetensors *st;
    dt_err err = {0};
    if (dt_st_open_dir(dir, "diffusion_pytorch_model", &st, &err) != DT_OK) fail_msg("%s", err.msg);
    int64_t n = 0;
    for (int i = 0; i < dt_st_count(st); i++) n += (int64_t)(dt_st_at(st, i)->nbytes / dt_dtype_size(dt_st_at(st, i)->dtype));
    dt_st_close(st);
    return n;
}

/* A parity check: prints got's relative L2 error against want under label, fails above tol. */
static inline double tu_check_rel_l2(const char *label, const float *got, const float *want, size_t n, double tol)
{
    double e = tu_rel_l2(got, want, n);
    printf("  %s: rel L2 %.2e (limit %.0e)\n", label, e, tol);
    if (!(e <= tol)) fail_msg("%s: relative L2 %.3g > %.3g", label, e, tol);
    return e;
}

/* ---- files and commands ---- */
#include <sys/stat.h>

static inline int tu_exists(const char *path) { struct stat s; return stat(path, &s) == 0; }

static inline int tu_count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* The whole file at path, malloc'd and NUL-terminated (*n bytes before the NUL); fails the
 * test when it cannot be read. */
static inline char *tu_slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("%s: cannot open", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)len, f), (size_t)len);
    b[len] = 0;
    fclose(f);
    *n = (size_t)len;
    return b;
}

/* Files a and b hold the same bytes. */
static inline void tu_assert_same_file(const char *a, const char *b)
{
    size_t na, nb;
    char *x = tu_slurp(a, &na), *y = tu_slurp(b, &nb);
    if (!(na == nb && !memcmp(x, y, na))) fail_msg("%s differs from %s", b, a);
    free(x);
    free(y);
}

/* Both files of a quantization plan folder (plan.json, weights.safetensors) are the same in
 * folders a and b. */
static inline void tu_assert_same_plan(const char *a, const char *b)
{
    const char *files[2] = {"plan.json", "weights.safetensors"};
    for (int i = 0; i < 2; i++) {
        char pa[4200], pb[4200];
        snprintf(pa, sizeof pa, "%s/%s", a, files[i]);
        snprintf(pb, sizeof pb, "%s/%s", b, files[i]);
        tu_assert_same_file(pb, pa);
    }
}

/* cmd (run in dir, tu_run) fails with one stderr line holding needle, and leaves no file at
 * out (when given). */
static inline void tu_expect_fail(const char *dir, const char *cmd, const char *needle, const char *out)
{
    char err[4096];
    if (tu_run(dir, cmd, 0, err, sizeof err) == 0) fail_msg("succeeded but should fail: %s", cmd);
    if (tu_count_lines(err) != 1) fail_msg("expected one line on stderr, got: %s", err);
    if (!strstr(err, needle)) fail_msg("stderr lacks \"%s\": %s", needle, err);
    if (out && tu_exists(out)) fail_msg("%s was written by a failed run", out);
}

/* ---- denoisers on fixture inputs ---- */
#include "runtime/core/arena.h"
#include "runtime/models/denoiser.h"

/* d's output on the inputs file at path (dt_denoiser_inputs_load), malloc'd; *n elements. */
static inline float *tu_denoise_file(dt_denoiser *d, const char *path, size_t *n)
{
    const dt_denoiser_info *c = dt_denoiser_get_info(d);
    dt_denoiser_input_file x;
    dt_err err = {0};
    if (dt_denoiser_inputs_load(path, c, &x, &err) != DT_OK) fail_msg("%s", err.msg);
    int64_t shape[5];
    for (int i = 0; i < x.ths.ndim; i++) shape[i] = x.ths.shape[i];
    shape[1] = c->out_channels;
    dt_tensor out = dt_tensor_view(NULL, DT_F32, x.ths.ndim, shape);
    *n = (size_t)dt_tensor_numel(&out);
    out.data = tu_poisoned(*n);
    dt_arena arena;
    dt_arena_init(&arena);
    if (dt_denoiser_forward(d, &x.in, &arena, &out, &err) != DT_OK) fail_msg("%s: %s", path, err.msg);
    dt_arena_free(&arena);
    dt_denoiser_inputs_free(&x);
    return out.data;
}

/* Worst relative L2 of m against ref over the fixture cases <dir>/case_<cases[i]>.in.safetensors
 * (ref NULL: m only runs them, 0 returned). */
static inline double tu_denoise_worst(dt_denoiser *m, dt_denoiser *ref, const char *dir, const char *const *cases, size_t ncases)
{
    double worst = 0;
    for (size_t i = 0; i < ncases; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/case_%s.in.safetensors", dir, cases[i]);
        size_t n, n2;
        float *a = tu_denoise_file(m, path, &n);
        if (ref) {
            float *b = tu_denoise_file(ref, path, &n2);
            assert_int_equal(n, n2);
            worst = fmax(worst, tu_rel_l2(a, b, n));
            free(b);
        }
        free(a);
    }
    return worst;
}

/* `ditrt eval transformer -m model` on fixture case cse of ref_dir (its .in file) writes a
 * "sample" within tol (relative L2) of the case's reference output. */
static inline void tu_check_eval_cli(const char *model, const char *ref_dir, const char *cse, double tol)
{
    char tmp[256], cmd[2048], out[400];
    tu_tmpdir(tmp, sizeof tmp);
    snprintf(out, sizeof out, "%s/o.safetensors", tmp);
    snprintf(cmd, sizeof cmd, "./ditrt eval transformer -m %s --in %s/case_%s.in.safetensors --out %s", model, ref_dir, cse, out);
    assert_int_equal(system(cmd), 0);
    size_t n;
    float *o = tu_read_f32(out, "sample", 0, &n, NULL), *ref = tu_fixture_out(ref_dir, cse, n);
    assert_rel_l2_below(o, ref, n, tol);
    free(o);
    free(ref);
    tu_rmtree(tmp);
}

#endif
