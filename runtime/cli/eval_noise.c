/* `ditrt eval noise`: torch.randn(shape, generator=torch.Generator().manual_seed(seed)) as
 * tensor "noise" (f32), to check the generator against torch. */
#include "cli.h"
#include "runtime/core/rng.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *out;
    uint64_t seed;
    int has_seed, ndim;
    int64_t shape[DT_MAX_DIMS];
    dt_rng_variant variant;
} noise_args;

static int parse_seed(const char *v, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (!*v || *end || *v == '-' || errno == ERANGE) {
        cli_usage_error("--seed: expected an integer in [0, 2^64), got \"%s\"", v);
        return 0;
    }
    *out = x;
    return 1;
}

/* "2,4,64,64": 1..DT_MAX_DIMS positive dims. */
static int parse_shape(const char *v, noise_args *a)
{
    const char *p = v;
    a->ndim = 0;
    while (*p) {
        char *end;
        errno = 0;
        long long d = strtoll(p, &end, 10);
        if (end == p || d <= 0 || d > (1ll << 31) || errno == ERANGE || a->ndim == DT_MAX_DIMS || (*end && *end != ','))
            return cli_usage_error("--shape: expected 1 to %d positive integers separated by commas, got \"%s\"", DT_MAX_DIMS, v), 0;
        a->shape[a->ndim++] = d;
        p = *end ? end + 1 : end;
        if (*end && !*p) return cli_usage_error("--shape: trailing comma in \"%s\"", v), 0;
    }
    if (!a->ndim) return cli_usage_error("--shape: empty"), 0;
    double numel = 1;
    for (int i = 0; i < a->ndim; i++) numel *= (double)a->shape[i];
    if (numel > (double)(1ll << 32)) return cli_usage_error("--shape: %s has more than 2^32 elements", v), 0;
    return 1;
}

static int parse(int argc, char **argv, noise_args *a)
{
    *a = (noise_args){.variant = DT_RNG_VECTOR};
    for (int i = 2; i < argc; i++) {
        int miss = 0;
        const char *v;
        if ((v = cli_flag(argc, argv, &i, "--seed", &miss))) { if (!parse_seed(v, &a->seed)) return 0; a->has_seed = 1; }
        else if ((v = cli_flag(argc, argv, &i, "--shape", &miss))) { if (!parse_shape(v, a)) return 0; }
        else if ((v = cli_flag(argc, argv, &i, "--out", &miss))) a->out = v;
        else if ((v = cli_flag(argc, argv, &i, "--variant", &miss))) {
            if (!dt_rng_variant_parse(v, &a->variant))
                return cli_usage_error("--variant: expected vector or scalar, got \"%s\"", v), 0;
        }
        else if (miss) return cli_usage_error("%s: missing value", argv[i]), 0;
        else return cli_unknown_option("eval noise", argv[i]), 0;
    }
    if (!a->has_seed || !a->ndim || !a->out)
        return cli_usage_error("eval noise: --seed S, --shape D0,D1,.. and --out FILE are required"), 0;
    return 1;
}

int cli_eval_noise(int argc, char **argv)
{
    noise_args a;
    if (!parse(argc, argv, &a)) return 2;
    dt_err err = {0};
    dt_tensor t = dt_tensor_view(NULL, DT_F32, a.ndim, a.shape);
    size_t n = (size_t)dt_tensor_numel(&t);
    float *buf = malloc(n * sizeof(float));
    if (!buf) {
        dt_fail(&err, DT_ENOMEM, "eval noise: out of memory for %zu values", n);
        return cli_die(&err);
    }
    dt_rng g;
    dt_rng_init(&g, a.seed, a.variant);
    dt_rng_randn(&g, buf, n);
    t.data = buf;
    dt_st_item item = {"noise", &t};
    dt_status s = dt_st_write(a.out, &item, 1, &err);
    free(buf);
    return s == DT_OK ? 0 : cli_die(&err);
}
