/* `ditrt bench load -m DIR`: how long loading a transformer (or T5 encoder) folder takes, and its
 * peak resident memory, against reading the same bytes with read() (the `cat > /dev/null` floor),
 * rounds alternated. A developer tool: the folder may hold random weights of real shapes
 * (scripts/bench/make_random_folder.py). */
#include "cli.h"
#include "runtime/models/denoiser.h"
#include "runtime/models/t5.h"
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

typedef struct {
    const char *dir, *dtype;
    int threads, rounds;
} load_args;

static int ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcmp(s + n - m, suf);
}

/* Reads every *.safetensors file of dir through a small buffer (page cache -> user, like
 * `cat > /dev/null`); *bytes is their total size. */
static dt_status read_all(const char *dir, size_t *bytes, dt_err *err)
{
    DIR *d = opendir(dir);
    if (!d) return dt_fail(err, DT_EIO, "%s: cannot open the folder", dir);
    enum { BUF = 4 << 20 };
    char *buf = malloc(BUF), path[4096];
    dt_status s = buf ? DT_OK : dt_fail(err, DT_ENOMEM, "out of memory");
    *bytes = 0;
    for (struct dirent *e; s == DT_OK && (e = readdir(d));) {
        if (!ends_with(e->d_name, ".safetensors")) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        int fd = open(path, O_RDONLY);
        if (fd < 0) { s = dt_fail(err, DT_EIO, "%s: cannot open", path); break; }
        ssize_t k;
        while ((k = read(fd, buf, BUF)) > 0) *bytes += (size_t)k;
        if (k < 0) s = dt_fail(err, DT_EIO, "%s: read failed", path);
        close(fd);
    }
    closedir(d);
    free(buf);
    if (s == DT_OK && !*bytes) s = dt_fail(err, DT_EIO, "%s: no *.safetensors files", dir);
    return s;
}

static int has(const char *dir, const char *file)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    return access(p, F_OK) == 0;
}

/* Loads and frees the folder's model once: a denoiser folder (diffusion_pytorch_model*) or a
 * T5 encoder (model*), whose weights may be int8 (--dtype int8: quantized at load, f32 compute).
 * *resident: the process's resident bytes with the model loaded. */
static dt_status load_once(dt_backend *be, const char *dir, int int8, size_t *resident, dt_err *err)
{
    long pages = 0, rss = 0;
    FILE *f;
    if (has(dir, "diffusion_pytorch_model.safetensors") || has(dir, "diffusion_pytorch_model.safetensors.index.json")) {
        dt_denoiser *m = NULL;
        if (int8) return dt_fail(err, DT_EINVAL, "--dtype int8: only a T5 encoder folder loads int8 weights, %s is a denoiser", dir);
        DT_TRY(dt_denoiser_load(be, dir, NULL, NULL, &m, err));
        if ((f = fopen("/proc/self/statm", "r"))) { if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0; fclose(f); }
        dt_denoiser_free(m);
    } else {
        t5_model *m = NULL;
        DT_TRY(t5_load(be, dir, int8 ? DT_I8 : be->cfg.compute, &m, err));
        if ((f = fopen("/proc/self/statm", "r"))) { if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0; fclose(f); }
        t5_free(m);
    }
    *resident = (size_t)rss * (size_t)sysconf(_SC_PAGESIZE);
    return DT_OK;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* User + system CPU seconds of the process so far: on a shared machine wall time mostly says
 * how busy the other processes were. */
static double cpu_seconds(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

static double maxrss_bytes(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? (double)ru.ru_maxrss * 1024.0 : 0;
}

static int run(const load_args *a)
{
    dt_err err = {0};
    dt_backend *be = NULL;
    int int8 = !strcmp(a->dtype, "int8");
    dt_status s = cli_backend(int8 ? "f32" : a->dtype, a->threads, &be, &err);
    enum { MAXR = 64 };
    double tr[MAXR], tl[MAXR], cr[MAXR], cl[MAXR], before = 0;
    size_t bytes = 0, resident = 0;
    if (s == DT_OK) s = read_all(a->dir, &bytes, &err); /* warms the page cache for every round */
    before = maxrss_bytes();
    for (int r = 0; s == DT_OK && r < a->rounds; r++) {
        double t0 = cli_now(), c0 = cpu_seconds();
        s = read_all(a->dir, &bytes, &err);
        tr[r] = cli_now() - t0, cr[r] = cpu_seconds() - c0;
        t0 = cli_now(), c0 = cpu_seconds();
        if (s == DT_OK) s = load_once(be, a->dir, int8, &resident, &err);
        tl[r] = cli_now() - t0, cl[r] = cpu_seconds() - c0;
    }
    if (s == DT_OK) {
        double peak = maxrss_bytes(), gb = 1e9, fb = (double)bytes;
        double rmin, lmin, rmed, lmed;
        double rv[MAXR], lv[MAXR];
        memcpy(rv, tr, sizeof(double) * a->rounds);
        memcpy(lv, tl, sizeof(double) * a->rounds);
        rmed = median(rv, a->rounds), lmed = median(lv, a->rounds), rmin = rv[0], lmin = lv[0];
        printf("bench load %s (%s compute%s, %d round%s, page cache warm)\n", a->dir, dt_dtype_name(be->cfg.compute),
               int8 ? ", int8 weights" : "", a->rounds, a->rounds > 1 ? "s" : "");
        printf("  file bytes       %.3f GB\n", fb / gb);
        printf("  read (cat)       min %.3f s  median %.3f s  (%.2f GB/s)\n", rmin, rmed, fb / gb / rmin);
        printf("  load             min %.3f s  median %.3f s  (%.2f GB/s of file, %.1fx the read)\n", lmin, lmed,
               fb / gb / lmin, lmin / rmin);
        double crm = median(cr, a->rounds), clm = median(cl, a->rounds);
        printf("  CPU s (user+sys) read median %.3f, load median %.3f (%.1fx)\n", crm, clm, clm / crm);
        printf("  resident loaded  %.3f GB  (%.2fx the file)\n", (double)resident / gb, (double)resident / fb);
        printf("  peak RSS         %.3f GB  (%.2fx the file; %.3f GB before the first load)\n", peak / gb, peak / fb,
               before / gb);
    }
    dt_backend_destroy(be);
    return s == DT_OK ? 0 : cli_die(&err);
}

int cli_bench_load(int argc, char **argv)
{
    load_args a = {.dtype = cli_default_dtype(), .rounds = 1};
    for (int i = 2; i < argc; i++) {
        int miss = 0;
        const char *v;
        if ((v = cli_flag(argc, argv, &i, "-m", &miss)) || (v = cli_flag(argc, argv, &i, "--model", &miss))) a.dir = v;
        else if ((v = cli_flag(argc, argv, &i, "--dtype", &miss))) a.dtype = v;
        else if ((v = cli_flag(argc, argv, &i, "--threads", &miss))) { if (!cli_parse_int("--threads", v, 1, 1024, &a.threads)) return 2; }
        else if ((v = cli_flag(argc, argv, &i, "--rounds", &miss))) { if (!cli_parse_int("--rounds", v, 1, 64, &a.rounds)) return 2; }
        else if (miss) return cli_usage_error("%s: missing value", argv[i]);
        else return cli_unknown_option("bench load", argv[i]);
    }
    if (!a.dir) return cli_usage_error("bench load: -m DIR (a transformer or T5 encoder folder) is required");
    return run(&a);
}
