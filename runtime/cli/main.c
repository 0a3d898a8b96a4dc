#include "cli.h"
#include <cjson/cJSON.h>
#include "cli_fastattn.h"
#include "cli_quant.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

const char *cli_default_dtype(void) { return dt_dtype_name(dt_backend_default_dtype(DT_DEV_CPU)); }

dt_status cli_backend(const char *dtype, int threads, dt_backend **be, dt_err *err)
{
    return cli_backend_on(NULL, dtype, threads, be, err);
}

dt_status cli_backend_on(const char *device, const char *dtype, int threads, dt_backend **be, dt_err *err)
{
    dt_backend_config cfg = {.device = DT_DEV_CPU, .threads = threads};
    if (device) DT_TRY(dt_backend_parse_device(device, &cfg.device, &cfg.device_index, err));
    if (!strcmp(dtype, "f32")) cfg.compute = DT_F32;
    else if (!strcmp(dtype, "bf16")) cfg.compute = DT_BF16;
    else if (!strcmp(dtype, "f16")) cfg.compute = DT_F16;               /* dt_backend_create: CUDA only */
    else if (!strcmp(dtype, "tf32")) cfg.compute = DT_F32, cfg.tf32 = 1; /* dt_backend_create: CUDA only */
    else return dt_fail(err, DT_EINVAL, "--dtype: expected f32, bf16, f16 or tf32 (f16 and tf32 need --device cuda), got \"%s\"", dtype);
    return dt_backend_create(&cfg, be, err);
}

float *cli_dup_floats(const float *x, size_t n, int *fail)
{
    if (!x) return NULL;
    float *d = malloc(n * sizeof(float));
    if (d) memcpy(d, x, n * sizeof(float));
    else *fail = 1;
    return d;
}

static int is_help(const char *a) { return !strcmp(a, "-h") || !strcmp(a, "--help"); }

int main(int argc, char **argv)
{
    if (argc < 2 || is_help(argv[1])) { /* the command list; on stderr (exit 2) when nothing was asked */
        cli_help_commands(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) { printf("ditrt %s\n", ditrt_version()); return 0; }
    /* `ditrt CMD ... --help` wherever --help is an option, not a value ("-p --help" is a prompt) */
    if (cli_wants_help(argv[1], argc, argv)) return cli_help(argv[1]);
    if (!strcmp(argv[1], "version")) { printf("ditrt %s\n", ditrt_version()); return 0; }
    cli_openmp_passive(argv); /* before any OpenMP work, once the command is one that computes: see openmp_wait.c */
    if (!strcmp(argv[1], "txt2img")) return cli_txt2img(argc - 1, argv + 1);
    if (!strcmp(argv[1], "search-models")) return cli_search_models(argc - 1, argv + 1);
    if (!strcmp(argv[1], "txt2vid")) return cli_txt2vid(argc - 1, argv + 1);
    if (!strcmp(argv[1], "eval")) return cli_eval(argc - 1, argv + 1);
    if (!strcmp(argv[1], "info")) return cli_info(argc - 1, argv + 1);
    if (!strcmp(argv[1], "bench")) return cli_bench(argc - 1, argv + 1);
    if (!strcmp(argv[1], "compare")) return cli_compare(argc - 1, argv + 1);
    if (!strcmp(argv[1], "calibrate-attn")) return cli_calibrate_attn(argc - 1, argv + 1);
    if (!strcmp(argv[1], "search-solver")) return cli_search_solver(argc - 1, argv + 1);
    if (!strcmp(argv[1], "quantize")) return cli_quantize(argc - 1, argv + 1);
    char best[64];
    if (cli_closest_command(argv[1], best, sizeof best))
        return cli_usage_error("unknown command \"%s\" (did you mean %s?)", argv[1], best);
    return cli_usage_error("unknown command \"%s\" (ditrt --help lists them)", argv[1]);
}
