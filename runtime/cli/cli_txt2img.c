/* `ditrt txt2img`: prompt in, image files out (PNG with the generation parameters in tEXt
 * chunks; JPEG/BMP by extension). Output paths are checked before any work; each image is
 * written atomically. A client of the public API (ditrt.h) only. */
#include "client.h"
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

typedef struct {
    const char *model, *output, *dtype, *text_dtype;
    int threads, quiet, json;
    const char *solver; /* resolved class name or NULL */
    const char *schedule, *statistics;
    int karras;
    ditrt_gen_params req;
    const char *attn_plan; /* DiTFastAttn plan file (--attn-plan) */
    const char *quant;     /* --quant DIR: a plan from ditrt quantize (cli_quant.c) */
    const char *zoo;       /* --zoo DIR[,DIR...]: OMS-DPM zoo members after the model itself */
    const char *model_schedule; /* --model-schedule FILE */
} t2i_args;

static int parse_float(const char *flag, const char *v, float *out)
{
    char *end;
    double d = strtod(v, &end);
    if (!*v || *end) return cli_usage_error("%s: expected a number, got \"%s\"", flag, v), 0;
    *out = (float)d;
    return 1;
}

/* The diffusers class of a --solver value (class name, or short name in any case), or NULL. */
static const char *solver_class(const char *name)
{
    for (int i = 0; i < ditrt_solver_count(); i++)
        if (!strcmp(name, ditrt_solver_name(i)) || !strcasecmp(name, ditrt_solver_alias(i))) return ditrt_solver_name(i);
    return NULL;
}

/* --dtype / --text-encoder-dtype: f32 (float32) or bf16 (bfloat16), as the API spells them. */
static const char *dtype_param(const char *v)
{
    return !strcmp(v, "f32") || !strcmp(v, "float32") ? "f32" : !strcmp(v, "bf16") || !strcmp(v, "bfloat16") ? "bf16" : NULL;
}

static int parse(int argc, char **argv, t2i_args *a)
{
    *a = (t2i_args){.output = "out.png"}; /* dtypes NULL: the device's default (ditrt_ctx_info names it) */
    ditrt_gen_params_init(&a->req);
    for (int i = 1; i < argc; i++) {
        int miss = 0, ok = 1;
        const char *v;
#define F(s) (v = cli_flag(argc, argv, &i, s, &miss))
        if (F("-m") || F("--model")) a->model = v;
        else if (F("-p") || F("--prompt")) a->req.prompt = v;
        else if (F("--zoo")) a->zoo = v;
        else if (F("--model-schedule")) a->model_schedule = v;
        else if (F("-n") || F("--negative-prompt")) a->req.negative_prompt = v;
        else if (F("-W") || F("--width")) ok = cli_parse_int("--width", v, 1, 16384, &a->req.width);
        else if (F("-H") || F("--height")) ok = cli_parse_int("--height", v, 1, 16384, &a->req.height);
        else if (F("--steps")) ok = cli_parse_int("--steps", v, 1, 1000, &a->req.steps);
        else if (F("--cfg")) ok = parse_float("--cfg", v, &a->req.cfg) && (a->req.cfg >= 0 || (cli_usage_error("--cfg: must be >= 0, got %s", v), 0));
        else if (F("--seed")) ok = cli_parse_u64("--seed", v, &a->req.seed);
        else if (F("--batch")) ok = cli_parse_int("--batch", v, 1, 64, &a->req.batch);
        else if (F("--max-length")) ok = cli_parse_int("--max-length", v, 2, 4096, &a->req.max_sequence_length);
        else if (F("--dtype")) a->dtype = v;
        else if (F("--text-encoder-dtype")) a->text_dtype = v;
        else if (F("--threads")) ok = cli_parse_int("--threads", v, 1, 1024, &a->threads);
        else if (F("--attn-plan")) a->attn_plan = v;
        else if (F("--quant")) a->quant = v;
        else if (F("-o") || F("--output")) a->output = v;
        else if (F("--solver")) {
            if (!(a->solver = solver_class(v)))
                return cli_usage_error("--solver: unknown solver \"%s\" (see ditrt txt2img --list-solvers)", v), 0;
        } else if (F("--solver-schedule")) a->schedule = v;
        else if (F("--solver-statistics")) a->statistics = v;
        else if (F("--eta")) ok = parse_float("--eta", v, &a->req.eta) && (a->req.eta >= 0 || (cli_usage_error("--eta: must be >= 0, got %s", v), 0));
        else if (miss) return cli_usage_error("%s: missing value", argv[i]), 0;
        else if (!strcmp(argv[i], "--vae-tiling")) a->req.vae_tiling = 1;
        else if (!strcmp(argv[i], "--no-binning")) a->req.resolution_binning = 0;
        else if (!strcmp(argv[i], "--no-clean-caption")) a->req.clean_caption = 0;
        else if (!strcmp(argv[i], "--force")) a->req.force = 1;
        else if (!strcmp(argv[i], "--karras")) a->karras = 1;
        else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q")) a->quiet = 1;
        else if (!strcmp(argv[i], "--json")) a->json = 1;
        else return cli_usage_error("txt2img: unknown option \"%s\"", argv[i]), 0;
#undef F
        if (!ok) return 0;
    }
    if (!a->model) return cli_usage_error("txt2img: -m MODEL_DIR is required"), 0;
    if (!a->req.prompt) return cli_usage_error("txt2img: -p PROMPT is required"), 0;
    if (a->schedule && (a->solver || a->karras))
        return cli_usage_error("--solver-schedule: not combinable with --solver / --karras (the schedule is the solver)"), 0;
    if (a->statistics && !a->schedule) return cli_usage_error("--solver-statistics: needs --solver-schedule"), 0;
    return 1;
}

/* out.png -> out-3.png for batch item 3 (the name itself when there is one image). */
static void item_path(const char *out, int i, int n, char *buf, size_t size)
{
    if (n == 1) { snprintf(buf, size, "%s", out); return; }
    const char *dot = strrchr(out, '.'), *slash = strrchr(out, '/');
    if (!dot || (slash && dot < slash)) dot = out + strlen(out);
    snprintf(buf, size, "%.*s-%d%s", (int)(dot - out), out, i, dot);
}

static int progress_bar(int step, int steps, double seconds, void *user)
{
    double *total = user;
    *total += seconds;
    int width = 30, done = step * width / steps;
    double eta = *total / step * (steps - step);
    fprintf(stderr, "\rstep %d/%d [%.*s%*s] %.2f s/it, ETA %.0f s ", step, steps, done,
            "==============================", width - done, "", seconds, eta);
    if (step == steps) fprintf(stderr, "\n");
    return 0;
}

static cli_settings settings_of(const t2i_args *a)
{
    return (cli_settings){.attn_plan = a->attn_plan, .quant = a->quant, .solver_schedule = a->schedule,
                          .solver_statistics = a->statistics, .zoo = a->zoo, .model_schedule = a->model_schedule,
                          .eta = a->req.eta, .karras = a->karras};
}

static ditrt_status write_images(const t2i_args *a, const ditrt_ctx_info *info, const ditrt_image *im, int n,
                                 ditrt_error *err)
{
    char seed[32], steps[16], cfg[32], size[48], path[4200];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)a->req.seed);
    snprintf(steps, sizeof steps, "%d", a->req.steps);
    snprintf(cfg, sizeof cfg, "%g", a->req.cfg);
    snprintf(size, sizeof size, "%dx%d", im[0].width, im[0].height);
    char software[64];
    snprintf(software, sizeof software, "ditrt %s", ditrt_version());
    ditrt_meta text[] = {
        {"prompt", a->req.prompt}, {"negative_prompt", a->req.negative_prompt}, {"seed", seed},
        {"steps", steps}, {"cfg", cfg}, {"solver", info->solver}, {"model", a->model},
        {"size", size}, {"dtype", a->dtype}, {"Software", software}, {0}, {0}, {0}, {0}, {0}, {0}, {0}, {0}};
    cli_settings set = settings_of(a);
    int ntext = cli_settings_meta(&set, text, 10, (int)(sizeof text / sizeof *text));
    ditrt_status s = DITRT_OK;
    for (int i = 0; i < n && s == DITRT_OK; i++) {
        item_path(a->output, i, n, path, sizeof path);
        s = ditrt_image_save(path, &im[i], text, ntext, err);
    }
    return s;
}

static void print_json(const t2i_args *a, const ditrt_ctx_info *info, const ditrt_gen_info *g, const ditrt_image *im, int n)
{
    cJSON *j = cJSON_CreateObject(), *outs = cJSON_AddArrayToObject(j, "outputs");
    char path[4200];
    for (int i = 0; i < n; i++) {
        item_path(a->output, i, n, path, sizeof path);
        cJSON_AddItemToArray(outs, cJSON_CreateString(path));
    }
    cli_summary sum = {a->model, a->req.prompt, a->req.negative_prompt, info->solver, a->dtype, a->req.seed,
                       a->req.steps, im[0].width, im[0].height, g->prompt_truncated, a->req.cfg,
                       g->seconds_text, g->seconds_sampling, g->seconds_decode};
    cli_summary_add(j, &sum);
    cli_settings set = settings_of(a);
    cli_settings_json(j, &set);
    cli_json_print(j);
}

/* The context's failure as the command's error (exit 1). */
static int ctx_die(ditrt_ctx *c, ditrt_status s)
{
    ditrt_error err = {s, ""};
    snprintf(err.msg, sizeof err.msg, "%s", ditrt_errmsg(c));
    ditrt_ctx_free(c);
    return cli_die(&err);
}

int cli_txt2img(int argc, char **argv)
{
    t2i_args a;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--list-solvers")) return cli_list_solvers();
    if (!parse(argc, argv, &a)) return 2;
    ditrt_error err = {0};
    ditrt_ctx_params cp;
    ditrt_ctx_params_init(&cp);
    cp.model_dir = a.model;
    cp.threads = a.threads;
    cp.solver = a.solver;
    cp.karras = a.karras;
    cp.solver_schedule = a.schedule;
    cp.solver_statistics = a.statistics;
    cp.quant_dir = a.quant;
    cp.attn_plan = a.attn_plan;
    cp.model_schedule = a.model_schedule;
    if (a.dtype && !(cp.dtype = dtype_param(a.dtype)))
        return cli_usage_error("--dtype: expected f32 or bf16, got \"%s\"", a.dtype);
    if (a.text_dtype && !(cp.text_dtype = dtype_param(a.text_dtype)))
        return cli_usage_error("--text-encoder-dtype: expected f32 or bf16, got \"%s\"", a.text_dtype);
    /* every output path is checked before the model is even loaded */
    char path[4200];
    for (int i = 0; i < a.req.batch; i++) {
        item_path(a.output, i, a.req.batch, path, sizeof path);
        if (ditrt_output_check(path, 0, NULL, &err) != DITRT_OK) return cli_die(&err);
    }
    cli_list zoo = {0};
    if (a.zoo && cli_split_list("--zoo", a.zoo, &zoo) != 0) return 2;
    cp.zoo = (const char *const *)zoo.items;
    cp.nzoo = zoo.n;
    ditrt_ctx *c = NULL;
    ditrt_status s = ditrt_ctx_create(&cp, &c);
    cli_list_free(&zoo);
    if (s != DITRT_OK) return ctx_die(c, s);
    ditrt_ctx_info info = {.struct_size = sizeof info};
    ditrt_ctx_get_info(c, &info);
    if (info.max_frames) {
        ditrt_ctx_free(c);
        return cli_usage_error("txt2img: %s is a video model (%d frames); use ditrt txt2vid", a.model, info.max_frames);
    }
    if (!a.dtype) a.dtype = info.dtype;
    if (a.req.eta > 0 && strcmp(info.solver, "DDIMScheduler")) {
        ditrt_ctx_free(c);
        return cli_usage_error("--eta: only DDIMScheduler uses eta, the solver is %s", a.solver ? a.solver : "the folder's");
    }
    if (info.solver_warning && !a.quiet) fprintf(stderr, "ditrt: warning: %s\n", info.solver_warning);
    double elapsed = 0;
    if (!a.quiet && isatty(2)) {
        a.req.progress = progress_bar;
        a.req.progress_user = &elapsed;
    }
    ditrt_image *im = NULL;
    int n = 0;
    if ((s = ditrt_generate(c, &a.req, &im, &n)) != DITRT_OK) return ctx_die(c, s);
    ditrt_gen_info g = {.struct_size = sizeof g};
    ditrt_last_gen_info(c, &g);
    if (g.prompt_truncated && !a.quiet)
        fprintf(stderr, "ditrt: warning: the prompt is longer than %d tokens and was truncated\n", g.max_sequence_length);
    if (g.negative_truncated && !a.quiet)
        fprintf(stderr, "ditrt: warning: the negative prompt is longer than %d tokens and was truncated\n", g.max_sequence_length);
    s = write_images(&a, &info, im, n, &err);
    if (s == DITRT_OK && a.json) print_json(&a, &info, &g, im, n);
    ditrt_images_free(im, n);
    ditrt_ctx_free(c);
    return s == DITRT_OK ? 0 : cli_die(&err);
}
