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

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ditrt <command> [options]\n"
            "commands:\n"
            "  txt2img -m MODEL_DIR -p PROMPT [-n NEGATIVE] [-W W] [-H H] [--steps N] [--cfg G] [--seed S] [--batch N]\n"
            "          [--dtype bf16|f32] [--text-encoder-dtype bf16|f32] [--device cpu|cuda[:N]] [--threads N] [-o out.png] [--vae-tiling]\n"
            "          [--no-binning] [--no-clean-caption] [--max-length N] [--force] [--quiet] [--json] [--attn-plan PLAN.json]\n"
            "          [--solver NAME] [--karras] [--eta X] [--solver-schedule USF.json [--solver-statistics FILE]] | --list-solvers\n"
            "          [--quant QUANT_DIR] [--zoo DIR[,DIR...] --model-schedule SCHEDULE.json]\n"
            "          [-o x.png|x.jpg|x.webp|x.bmp] [--batch-index I [--batch-exact]] [--seed -1 (random)] [--clip-sample on|off]\n"
            "  search-models -m MODEL --zoo DIR[,DIR...] --prompts FILE --out SCHEDULE.json (--budget SECONDS | --budget-ratio R)\n"
            "          [--steps N] [-W W] [-H H] [--cfg G] [--seed S] [--dtype bf16|f32] [--threads N] [--latency S0,S1,...]\n"
            "  txt2vid -m LATTE_DIR -p PROMPT [-n NEGATIVE] [-W W] [-H H] [--frames F] [--fps R] [--steps N] [--cfg G]\n"
            "          [--seed S] [--batch N] [--dtype bf16|f32] [--text-encoder-dtype bf16|f32] [--threads N]\n"
            "          [-o out.mp4|out.webp|dir/|frame_%%03d.png] [--decode-chunk K] [--no-clean-caption] [--force] [--quiet] [--json]\n"
            "          [--eta X] [--attn-plan PLAN.json] [--quant QUANT_DIR] [--solver NAME] [--karras] | --list-solvers\n"
            "          [--solver-schedule USF.json [--solver-statistics FILE]] [--zoo DIR[,DIR...] --model-schedule SCHEDULE.json]\n"
            "          [--batch-index I [--batch-exact]] [--seed -1 (random)] [--clip-sample on|off]\n"
            "  txt2img/txt2vid print \"wrote PATH\" per output (not with --quiet/--json). Overwrite rule: -o PATH replaces\n"
            "  an existing file only once the new one is complete (a failed run replaces nothing); without -o the default\n"
            "  out.png/out.mp4 is never replaced: out_2.png, out_3.png ... A batch writes out-0.png ... (index in metadata);\n"
            "  --batch-index I makes item I of --batch N alone (its noise; equal within rounding), --batch-exact byte-identical.\n"
            "  --steps with --solver-schedule must be the schedule's steps. Warnings (one line each, stderr) end with --quiet.\n"
            "  eval transformer -m MODEL_DIR --in INPUTS.safetensors --out OUT.safetensors [--dtype f32|bf16] [--threads N]\n"
            "  eval vae-decoder -m MODEL_DIR --in LATENTS.safetensors --out IMAGE.safetensors [--dtype f32|bf16] [--tiling] [--threads N]\n"
            "  info -m MODEL_DIR | info [-m MODEL_DIR] --attn-plan PLAN.json\n"
            "  calibrate-attn -m MODEL_DIR --prompts FILE --steps N --threshold DELTA --window W [--metric rel|ssim]\n"
            "          --out PLAN.json [--cfg G] [--seed S] [-W W] [-H H] [--dtype bf16|f32] [--cfg-half cond|uncond]\n"
            "          [--asc-residual same|first] [--temporal-window W --frames F (Latte)] [--no-binning] [--threads N] [--quiet]\n"
            "  search-solver -m MODEL_DIR --nfe N --prompts FILE|-p PROMPT --out schedule.json [--population P] [--generations G]\n"
            "          [--max-order 1-3] [--samples K per prompt] [--ref-steps R] [--seed S] [--cfg G] [-W W] [-H H] [--dtype f32|bf16]\n"
            "  compare A.png B.png [--min-psnr X] [--min-ssim Y] [--diff DIFF.png] [--json]\n"
            "  bench transformer [--arch pixart-xl-2|latte-1] [--frames F] [--res 512] [--dtype bf16|f32] [--device cpu|cuda[:N]] [--threads N] [--iters K] [--layers L] [--breakdown]\n"
            "          [--attn-plan PLAN.json ...] [--quant w8a8|w4a8]\n"
            "  quantize -m MODEL_DIR --prompts FILE --scheme w8a8|w4a8|mixed --out DIR [--budget BITS] [--alpha A] [--steps N]\n"
            "          [-W W] [-H H] [--frames F (Latte)]\n"
            "          [--cfg G] [--seed S] [--dtype bf16|f32] [--no-balance] [--no-rotate] [--threads N] [--quiet]\n"
            "  version\n");
}

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
    else return dt_fail(err, DT_EINVAL, "--dtype: expected f32 or bf16, got \"%s\"", dtype);
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
    if (argc < 2 || is_help(argv[1])) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    /* `ditrt CMD --help` (and `ditrt bench|eval TARGET --help`): the usage, which lists every
     * command's options, on stdout; only right after the command so a value can be "--help" */
    int two_word = !strcmp(argv[1], "bench") || !strcmp(argv[1], "eval");
    if ((argc > 2 && is_help(argv[2])) || (two_word && argc > 3 && is_help(argv[3]))) {
        usage(stdout);
        return 0;
    }
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
    if (!strcmp(argv[1], "version")) { printf("ditrt %s\n", ditrt_version()); return 0; }
    return cli_usage_error("unknown command \"%s\" (ditrt --help lists them)", argv[1]);
}
