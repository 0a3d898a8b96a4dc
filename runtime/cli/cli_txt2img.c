/* `ditrt txt2img`: prompt in, image files out (PNG with the generation parameters in tEXt
 * chunks; JPEG/BMP by extension). Output paths are checked before any work; each image is
 * written atomically. */
#include "cli.h"
#include "runtime/io/image.h"
#include "runtime/pipeline/pipeline.h"
#include "runtime/plans/model_schedule.h"
#include "runtime/plans/fastattn.h"
#include "schedulers/scheduler.h"
#include "cli_quant.h"
#include <cjson/cJSON.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    const char *model, *output, *dtype, *text_dtype;
    int threads, quiet, json;
    const char *solver; /* resolved class name or NULL */
    const char *schedule, *statistics;
    int karras;
    dt_gen_request req;
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

static int parse(int argc, char **argv, t2i_args *a)
{
    *a = (t2i_args){.dtype = cli_default_dtype(), .text_dtype = cli_default_dtype(), .output = "out.png", .req = dt_gen_request_default()};
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
            if (!(a->solver = dt_scheduler_resolve_name(v)))
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

static dt_status write_images(const t2i_args *a, const dt_pipeline *p, const dt_gen_result *res, dt_err *err)
{
    char seed[32], steps[16], cfg[32], size[48], path[4200];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)a->req.seed);
    snprintf(steps, sizeof steps, "%d", a->req.steps);
    snprintf(cfg, sizeof cfg, "%g", a->req.cfg);
    snprintf(size, sizeof size, "%dx%d", res->width, res->height);
    char software[64];
    snprintf(software, sizeof software, "ditrt %s", ditrt_version());
    dt_image_text text[] = {
        {"prompt", a->req.prompt}, {"negative_prompt", a->req.negative_prompt}, {"seed", seed},
        {"steps", steps}, {"cfg", cfg}, {"solver", dt_pipeline_solver_name(p)}, {"model", a->model},
        {"size", size}, {"dtype", a->dtype}, {"Software", software}, {0}, {0}, {0}, {0}, {0}, {0}, {0}, {0}};
    cli_settings set = settings_of(a);
    int ntext = cli_settings_meta(&set, text, 10, (int)(sizeof text / sizeof *text));
    size_t px = (size_t)res->width * res->height;
    uint8_t *rgb = malloc(px * 3);
    if (!rgb) return dt_fail(err, DT_ENOMEM, "out of memory");
    dt_status s = DT_OK;
    for (int i = 0; i < res->batch && s == DT_OK; i++) {
        dt_image_from_float(res->pixels + (size_t)i * 3 * px, res->height, res->width, rgb);
        item_path(a->output, i, res->batch, path, sizeof path);
        s = dt_image_write(path, rgb, res->width, res->height, text, ntext, err);
    }
    free(rgb);
    return s;
}

static void print_json(const t2i_args *a, const dt_pipeline *p, const dt_gen_result *res)
{
    cJSON *j = cJSON_CreateObject(), *outs = cJSON_AddArrayToObject(j, "outputs");
    char path[4200];
    for (int i = 0; i < res->batch; i++) {
        item_path(a->output, i, res->batch, path, sizeof path);
        cJSON_AddItemToArray(outs, cJSON_CreateString(path));
    }
    cli_summary sum = {a->model, a->req.prompt, a->req.negative_prompt, dt_pipeline_solver_name(p), a->dtype, a->req.seed,
                       a->req.steps, res->width, res->height, res->prompt_truncated, a->req.cfg,
                       res->seconds_text, res->seconds_sampling, res->seconds_decode};
    cli_summary_add(j, &sum);
    cli_settings set = settings_of(a);
    cli_settings_json(j, &set);
    cli_json_print(j);
}

int cli_txt2img(int argc, char **argv)
{
    t2i_args a;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--list-solvers")) return cli_list_solvers();
    if (!parse(argc, argv, &a)) return 2;
    dt_err err = {0};
    dt_pipeline_config cfg = {.model_dir = a.model, .threads = a.threads, .solver = a.solver, .karras = a.karras,
                              .solver_schedule = a.schedule, .solver_statistics = a.statistics};
    if (!dt_dtype_parse(a.dtype, &cfg.dtype) || (cfg.dtype != DT_F32 && cfg.dtype != DT_BF16))
        return cli_usage_error("--dtype: expected f32 or bf16, got \"%s\"", a.dtype);
    if (!dt_dtype_parse(a.text_dtype, &cfg.text_dtype) || (cfg.text_dtype != DT_F32 && cfg.text_dtype != DT_BF16))
        return cli_usage_error("--text-encoder-dtype: expected f32 or bf16, got \"%s\"", a.text_dtype);
    /* every output path is checked before the model is even loaded */
    char path[4200];
    for (int i = 0; i < a.req.batch; i++) {
        item_path(a.output, i, a.req.batch, path, sizeof path);
        if (dt_image_check_writable(path, &err) != DT_OK) return cli_die(&err);
    }
    if (a.threads > 0) omp_set_num_threads(a.threads);
    dt_pipeline *p = NULL;
    dt_quantizer qz = {0};
    if (a.quant && dt_quantizer_open_plan(a.quant, &qz, &err) != DT_OK) return cli_die(&err);
    if (a.quant) cfg.quant = &qz;
    cli_list zoo = {0};
    if (a.zoo && cli_split_list("--zoo", a.zoo, &zoo) != 0) { dt_quantizer_close_plan(&qz); return 2; }
    cfg.zoo = (const char *const *)zoo.items;
    cfg.nzoo = zoo.n;
    dt_status ls = dt_pipeline_load(&cfg, &p, &err);
    cli_list_free(&zoo);
    dt_quantizer_close_plan(&qz); /* the layers are built; the plan is no longer needed */
    if (ls != DT_OK) return cli_die(&err);
    if (a.req.eta > 0 && strcmp(dt_pipeline_solver_name(p), "DDIMScheduler")) {
        dt_pipeline_free(p);
        return cli_usage_error("--eta: only DDIMScheduler uses eta, the solver is %s", cfg.solver ? cfg.solver : "the folder's");
    }
    const char *warn = dt_pipeline_solver_warning(p);
    if (warn && !a.quiet) fprintf(stderr, "ditrt: warning: %s\n", warn);
    dt_attn_plan plan = {0}; /* DiTFastAttn; checked against the model and steps when sampling */
    if (a.attn_plan && dt_attn_plan_load(a.attn_plan, &plan, &err) != DT_OK) { dt_pipeline_free(p); return cli_die(&err); }
    if (a.attn_plan) a.req.attn_plan = &plan;
    dt_model_schedule ms = {0}; /* OMS-DPM */
    if (a.model_schedule && dt_model_schedule_load(a.model_schedule, dt_pipeline_zoo_size(p), &ms, &err) != DT_OK) {
        dt_attn_plan_free(&plan);
        dt_pipeline_free(p);
        return cli_die(&err);
    }
    a.req.model_ids = ms.ids;
    a.req.n_model_ids = ms.n;
    double elapsed = 0;
    if (!a.quiet && isatty(2)) {
        a.req.progress = progress_bar;
        a.req.progress_user = &elapsed;
    }
    dt_gen_result res;
    dt_status s = dt_pipeline_check(p, &a.req, &err);
    if (s == DT_OK) s = dt_pipeline_generate(p, &a.req, &res, &err);
    if (s == DT_OK) {
        if (res.prompt_truncated && !a.quiet)
            fprintf(stderr, "ditrt: warning: the prompt is longer than %d tokens and was truncated\n", res.max_sequence_length);
        if (res.negative_truncated && !a.quiet)
            fprintf(stderr, "ditrt: warning: the negative prompt is longer than %d tokens and was truncated\n", res.max_sequence_length);
        s = write_images(&a, p, &res, &err);
        if (s == DT_OK && a.json) print_json(&a, p, &res);
        free(res.pixels);
    }
    dt_model_schedule_free(&ms);
    dt_attn_plan_free(&plan);
    dt_pipeline_free(p);
    return s == DT_OK ? 0 : cli_die(&err);
}
