/* `ditrt quantize`: calibrate a PixArt or Latte pipeline's transformer and write a
 * quantization plan folder (ViDiT-Q W8A8/W4A8, MixDQ-style mixed precision), through
 * ditrt_quantize (include/ditrt.h). A client of the public API only: the algorithm is
 * runtime/plans/quant_calib.c; the bench --quant developer code is bench_quant.c. */
#include "client.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *model, *prompts, *scheme, *out, *dtype, *sensitivity;
    float alpha, cfg, budget; /* cfg < 0: the pipeline's default guidance */
    int steps, width, height, frames, threads, balance, rotate, quiet, group, nfp, int8_attn;
    int fp_tokens[DITRT_QUANT_MAX_FP_TEXT_TOKENS];
    uint64_t seed;
} quant_args;

static int parse_tokens(const char *v, quant_args *a);

/* The flags' syntax; the rules between settings are the library's (ditrt_quantize_check). */
static int parse_quant(int argc, char **argv, quant_args *a)
{
    *a = (quant_args){.scheme = "w8a8", .alpha = 0.5f, .cfg = -1, .steps = 20, .balance = 1, .rotate = 1};
    for (int i = 1; i < argc; i++) {
        int miss = 0, ok = 1;
        const char *v;
        char *end;
#define F(s) (v = cli_flag(argc, argv, &i, s, &miss))
        if (F("-m") || F("--model")) a->model = v;
        else if (F("--prompts")) a->prompts = v;
        else if (F("--scheme")) a->scheme = v;
        else if (F("--sensitivity")) a->sensitivity = v;
        else if (F("--out")) a->out = v;
        else if (F("--dtype")) a->dtype = v;
        else if (F("--steps")) ok = cli_parse_int("--steps", v, 1, 1000, &a->steps);
        else if (F("-W") || F("--width")) ok = cli_parse_int("--width", v, 8, 16384, &a->width);
        else if (F("-H") || F("--height")) ok = cli_parse_int("--height", v, 8, 16384, &a->height);
        else if (F("--frames")) ok = cli_parse_int("--frames", v, 1, 4096, &a->frames);
        else if (F("--threads")) ok = cli_parse_int("--threads", v, 1, 1024, &a->threads);
        else if (F("--group")) ok = cli_parse_int("--group", v, 2, 1 << 20, &a->group);
        else if (F("--fp-text-tokens")) ok = parse_tokens(v, a);
        else if (F("--alpha")) {
            a->alpha = strtof(v, &end);
            if (!*v || *end || !(a->alpha >= 0 && a->alpha <= 1)) return cli_usage_error("--alpha: expected a number in [0, 1], got \"%s\"", v), 0;
        } else if (F("--cfg")) {
            a->cfg = strtof(v, &end);
            if (!*v || *end || !(a->cfg >= 0)) return cli_usage_error("--cfg: expected a number >= 0, got \"%s\"", v), 0;
        } else if (F("--seed")) {
            if (!cli_parse_u64("--seed", v, &a->seed)) return 0;
        } else if (F("--budget")) {
            a->budget = strtof(v, &end);
            if (!*v || *end || !(a->budget >= 4 && a->budget <= 8)) return cli_usage_error("--budget: expected average weight bits in [4, 8], got \"%s\"", v), 0;
        }
        else if (miss) return cli_usage_error("%s: missing value", argv[i]), 0;
        else if (!strcmp(argv[i], "--no-balance")) a->balance = 0;
        else if (!strcmp(argv[i], "--no-rotate")) a->rotate = 0;
        else if (!strcmp(argv[i], "--int8-attn")) a->int8_attn = 1;
        else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q")) a->quiet = 1;
        else return cli_unknown_option("quantize", argv[i]), 0;
#undef F
        if (!ok) return 0;
    }
    if (!a->model) return cli_usage_error("quantize: -m MODEL_DIR is required"), 0;
    if (!a->prompts) return cli_usage_error("quantize: --prompts FILE is required"), 0;
    if (!a->out) return cli_usage_error("quantize: --out DIR is required"), 0;
    ditrt_error merr = {0};
    if (cli_check_pipeline_dir(a->model, &merr) != DITRT_OK) return cli_die(&merr), 0;
    return 1;
}

/* "0,3,7": up to DITRT_QUANT_MAX_FP_TEXT_TOKENS distinct token indices. */
static int parse_tokens(const char *v, quant_args *a)
{
    a->nfp = 0;
    for (const char *p = v;;) {
        char *end;
        long t = strtol(p, &end, 10);
        if (end == p || t < 0 || t > 65535 || *p == '-' || *p == '+' || a->nfp == DITRT_QUANT_MAX_FP_TEXT_TOKENS ||
            (*end && *end != ','))
            return cli_usage_error("--fp-text-tokens: expected up to %d comma-separated token indices, got \"%s\"",
                                   DITRT_QUANT_MAX_FP_TEXT_TOKENS, v), 0;
        for (int i = 0; i < a->nfp; i++)
            if (a->fp_tokens[i] == t) return cli_usage_error("--fp-text-tokens: token %ld listed twice", t), 0;
        a->fp_tokens[a->nfp++] = (int)t;
        if (!*end) return 1;
        p = end + 1;
    }
}

/* The library names a setting by its field ("scheme: ..."); the command line by its flag
 * ("--scheme: ..."). Rewrites the message's leading field name when it names one of
 * ditrt_quantize_params' settings; returns 1 when it did. */
static int as_flag_message(const char *msg, char *out, size_t n)
{
    static const char *const whole[][2] = { /* where the message names a second setting too */
        {"scheme mixed: needs budget (average weight bits, 4..8)", "--scheme mixed: needs --budget BITS (average weight bits, 4..8)"},
        {"budget: only with scheme mixed", "--budget: only with --scheme mixed"},
    };
    for (size_t i = 0; i < sizeof whole / sizeof *whole; i++)
        if (!strcmp(msg, whole[i][0])) {
            snprintf(out, n, "%s", whole[i][1]);
            return 1;
        }
    static const char *const fields[] = {"scheme", "budget", "group", "alpha", "cfg", "steps", "width", "height",
                                         "frames", "threads", "dtype", "fp_text_tokens"};
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
        size_t k = strlen(fields[i]);
        if (strncmp(msg, fields[i], k) || (msg[k] != ':' && msg[k] != ' ')) continue;
        char flag[32];
        snprintf(flag, sizeof flag, "--%s", fields[i]);
        for (char *c = flag; *c; c++)
            if (*c == '_') *c = '-';
        snprintf(out, n, "%s%s", flag, msg + k);
        return 1;
    }
    return 0;
}

/* A failure of ditrt_quantize*: the rules on the settings are usage errors (exit 2), as is
 * the frames rule the library applies once it knows the model; a bad --dtype value exits 1,
 * as do files and models (their messages pass as they are). */
static int quant_fail(const ditrt_error *err, int settings_rule)
{
    char msg[DITRT_ERRMSG_MAX];
    int frames_rule = !strcmp(err->msg, "frames: only for video (Latte) pipelines");
    int dtype_rule = !strncmp(err->msg, "dtype: ", 7); /* a value the API does not take, or f16/tf32 (CUDA) */
    int status_ok = err->status == DITRT_EINVAL || (dtype_rule && err->status == DITRT_EUNSUPPORTED);
    if (!status_ok || !(settings_rule || frames_rule || dtype_rule) ||
        !as_flag_message(err->msg, msg, sizeof msg))
        return settings_rule ? cli_usage_error("%s", err->msg) : cli_die(err);
    if (!dtype_rule) return cli_usage_error("%s", msg);
    ditrt_error e = *err;
    memcpy(e.msg, msg, sizeof e.msg);
    return cli_die(&e);
}

int cli_quantize(int argc, char **argv)
{
    quant_args a;
    if (!parse_quant(argc, argv, &a)) return 2;
    ditrt_quantize_params p;
    ditrt_quantize_params_init(&p);
    p.model_dir = a.model;
    p.out_dir = a.out;
    p.scheme = a.scheme;
    p.budget = a.budget;
    p.group = a.group;
    p.fp_text_tokens = a.fp_tokens;
    p.n_fp_text_tokens = a.nfp;
    p.dtype = a.dtype;
    p.alpha = a.alpha;
    p.balance = a.balance;
    p.rotate = a.rotate;
    p.cfg = a.cfg;
    p.steps = a.steps;
    p.width = a.width;
    p.height = a.height;
    p.frames = a.frames;
    p.threads = a.threads;
    p.seed = a.seed;
    p.int8_attention = a.int8_attn;
    p.sensitivity = a.sensitivity;
    p.log = a.quiet ? NULL : cli_log_stderr;
    ditrt_error err = {0};
    if (ditrt_quantize_check(&p, &err) != DITRT_OK) return quant_fail(&err, 1);
    cli_list pl;
    if (cli_read_prompts(a.prompts, &pl, &err) != DITRT_OK) return cli_die(&err);
    p.prompts = (const char *const *)pl.items;
    p.nprompts = pl.n;
    ditrt_quantize_result r;
    ditrt_quantize_result_init(&r);
    ditrt_status s = ditrt_quantize(&p, &r, &err);
    cli_list_free(&pl);
    if (s != DITRT_OK) return quant_fail(&err, 0);
    if (!a.quiet)
        printf("quantize: %s%s, %d layers quantized, %d kept in floating point, weights %.1f MB -> %s\n", a.scheme,
               a.int8_attn ? " + int8 self-attention" : "", r.quantized, r.kept_float, r.weight_bytes / 1e6, a.out);
    return 0;
}
