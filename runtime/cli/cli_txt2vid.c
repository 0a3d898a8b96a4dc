/* `ditrt txt2vid`: prompt in, a video out (MP4/H.264, animated WebP, or PNG frames; see
 * ditrt_video_save in ditrt.h) with the generation parameters in its metadata. Every output
 * path is checked before any model is loaded; files are written atomically. A client of the
 * public API (ditrt.h) only. */
#include "client.h"
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    const char *model, *output, *dtype, *text_dtype;
    const char *attn_plan, *quant; /* --attn-plan FILE, --quant DIR */
    const char *solver;            /* resolved class name or NULL: the folder's */
    int threads, quiet, json, karras;
    double fps;
    ditrt_gen_params req;
} t2v_args;

static int parse_num(const char *flag, const char *v, double lo, double hi, double *out)
{
    char *end;
    double d = strtod(v, &end);
    if (!*v || *end || !(d >= lo && d <= hi)) return cli_usage_error("%s: expected a number in [%g, %g], got \"%s\"", flag, lo, hi, v), 0;
    *out = d;
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

static int parse(int argc, char **argv, t2v_args *a)
{
    *a = (t2v_args){.output = "out.mp4", .fps = 8}; /* dtypes NULL: the device's default (ditrt_ctx_info names it) */
    ditrt_gen_params_init_video(&a->req);
    double cfg;
    for (int i = 1; i < argc; i++) {
        int miss = 0, ok = 1;
        const char *v;
#define F(s) (v = cli_flag(argc, argv, &i, s, &miss))
        if (F("-m") || F("--model")) a->model = v;
        else if (F("-p") || F("--prompt")) a->req.prompt = v;
        else if (F("-n") || F("--negative-prompt")) a->req.negative_prompt = v;
        else if (F("-W") || F("--width")) ok = cli_parse_int("--width", v, 1, 16384, &a->req.width);
        else if (F("-H") || F("--height")) ok = cli_parse_int("--height", v, 1, 16384, &a->req.height);
        else if (F("--frames")) ok = cli_parse_int("--frames", v, 1, 4096, &a->req.frames);
        else if (F("--fps")) ok = parse_num("--fps", v, 0.1, 1000, &a->fps);
        else if (F("--decode-chunk")) ok = cli_parse_int("--decode-chunk", v, 1, 4096, &a->req.decode_chunk);
        else if (F("--steps")) ok = cli_parse_int("--steps", v, 1, 1000, &a->req.steps);
        else if (F("--cfg")) { ok = parse_num("--cfg", v, 0, 1e6, &cfg); a->req.cfg = (float)cfg; }
        else if (F("--eta")) { ok = parse_num("--eta", v, 0, 1e6, &cfg); a->req.eta = (float)cfg; }
        else if (F("--attn-plan")) a->attn_plan = v;
        else if (F("--quant")) a->quant = v;
        else if (F("--solver")) {
            if (!(a->solver = solver_class(v)))
                return cli_usage_error("--solver: unknown solver \"%s\" (see ditrt txt2vid --list-solvers)", v), 0;
        } else if (F("--seed")) ok = cli_parse_u64("--seed", v, &a->req.seed);
        else if (F("--batch")) ok = cli_parse_int("--batch", v, 1, 64, &a->req.batch);
        else if (F("--dtype")) a->dtype = v;
        else if (F("--text-encoder-dtype")) a->text_dtype = v;
        else if (F("--threads")) ok = cli_parse_int("--threads", v, 1, 1024, &a->threads);
        else if (F("-o") || F("--output")) a->output = v;
        else if (miss) return cli_usage_error("%s: missing value", argv[i]), 0;
        else if (!strcmp(argv[i], "--no-clean-caption")) a->req.clean_caption = 0;
        else if (!strcmp(argv[i], "--force")) a->req.force = 1;
        else if (!strcmp(argv[i], "--karras")) a->karras = 1;
        else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q")) a->quiet = 1;
        else if (!strcmp(argv[i], "--json")) a->json = 1;
        else return cli_usage_error("txt2vid: unknown option \"%s\"", argv[i]), 0;
#undef F
        if (!ok) return 0;
    }
    if (!a->model) return cli_usage_error("txt2vid: -m MODEL_DIR is required"), 0;
    if (!a->req.prompt) return cli_usage_error("txt2vid: -p PROMPT is required"), 0;
    return 1;
}

/* out.mp4 -> out-3.mp4 for batch item 3; a frame folder gets a sub-folder per item. */
static void item_path(const char *out, ditrt_output_kind kind, int i, int n, char *buf, size_t size)
{
    if (n == 1) { snprintf(buf, size, "%s", out); return; }
    if (kind == DITRT_OUTPUT_FRAME_FOLDER) {
        size_t l = strlen(out);
        snprintf(buf, size, "%s%s%d/", out, l && out[l - 1] == '/' ? "" : "/", i);
        return;
    }
    const char *dot = strrchr(out, '.'), *slash = strrchr(out, '/');
    if (!dot || (slash && dot < slash)) dot = out + strlen(out);
    snprintf(buf, size, "%.*s-%d%s", (int)(dot - out), out, i, dot);
}

static int step_bar(int step, int steps, double seconds, void *user)
{
    double *total = user;
    *total += seconds;
    int width = 30, done = step * width / steps;
    fprintf(stderr, "\rstep %d/%d [%.*s%*s] %.2f s/it, ETA %.0f s ", step, steps, done,
            "==============================", width - done, "", seconds, *total / step * (steps - step));
    if (step == steps) fprintf(stderr, "\n");
    return 0;
}

static int frame_bar(int done, int total, double seconds, void *user)
{
    (void)user;
    fprintf(stderr, "\rdecoded frame %d/%d (%.2f s) ", done, total, seconds);
    if (done == total) fprintf(stderr, "\n");
    return 0;
}

static cli_settings settings_of(const t2v_args *a)
{
    return (cli_settings){.attn_plan = a->attn_plan, .quant = a->quant, .eta = a->req.eta, .karras = a->karras};
}

static ditrt_status write_videos(const t2v_args *a, ditrt_output_kind kind, const ditrt_ctx_info *info,
                                 const ditrt_video *v, int n, ditrt_error *err)
{
    char seed[32], steps[16], cfg[32], size[48], frames[16], fps[32], software[64], path[4200];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)a->req.seed);
    snprintf(steps, sizeof steps, "%d", a->req.steps);
    snprintf(cfg, sizeof cfg, "%g", a->req.cfg);
    snprintf(size, sizeof size, "%dx%d", v[0].width, v[0].height);
    snprintf(frames, sizeof frames, "%d", v[0].frames);
    snprintf(fps, sizeof fps, "%g", a->fps);
    snprintf(software, sizeof software, "ditrt %s", ditrt_version());
    ditrt_meta text[] = {
        {"prompt", a->req.prompt}, {"negative_prompt", a->req.negative_prompt}, {"seed", seed},
        {"steps", steps}, {"cfg", cfg}, {"solver", info->solver}, {"model", a->model},
        {"size", size}, {"frames", frames}, {"fps", fps}, {"dtype", a->dtype}, {"Software", software}, {0}, {0}, {0}};
    cli_settings set = settings_of(a);
    int ntext = cli_settings_meta(&set, text, 12, (int)(sizeof text / sizeof *text));
    ditrt_status s = DITRT_OK;
    for (int i = 0; i < n && s == DITRT_OK; i++) {
        item_path(a->output, kind, i, n, path, sizeof path);
        if (kind == DITRT_OUTPUT_FRAME_FOLDER && n > 1 && mkdir(path, 0755) != 0 && access(path, W_OK) != 0)
            s = cli_fail(err, DITRT_EIO, "%s: cannot create the frame folder", path);
        if (s == DITRT_OK) s = ditrt_video_save(path, &v[i], a->fps, text, ntext, err);
    }
    return s;
}

static void print_json(const t2v_args *a, ditrt_output_kind kind, const ditrt_ctx_info *info, const ditrt_gen_info *g,
                       const ditrt_video *v, int n)
{
    cJSON *j = cJSON_CreateObject(), *outs = cJSON_AddArrayToObject(j, "outputs");
    char path[4200];
    for (int i = 0; i < n; i++) {
        item_path(a->output, kind, i, n, path, sizeof path);
        cJSON_AddItemToArray(outs, cJSON_CreateString(path));
    }
    cli_summary sum = {a->model, a->req.prompt, a->req.negative_prompt, info->solver, a->dtype, a->req.seed,
                       a->req.steps, v[0].width, v[0].height, g->prompt_truncated, a->req.cfg,
                       g->seconds_text, g->seconds_sampling, g->seconds_decode};
    cli_summary_add(j, &sum);
    cli_settings set = settings_of(a);
    cli_settings_json(j, &set);
    cJSON_AddNumberToObject(j, "frames", v[0].frames);
    cJSON_AddNumberToObject(j, "fps", a->fps);
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

int cli_txt2vid(int argc, char **argv)
{
    t2v_args a;
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
    cp.quant_dir = a.quant;
    cp.attn_plan = a.attn_plan;
    if (a.dtype && !(cp.dtype = dtype_param(a.dtype)))
        return cli_usage_error("--dtype: expected f32 or bf16, got \"%s\"", a.dtype);
    if (a.text_dtype && !(cp.text_dtype = dtype_param(a.text_dtype)))
        return cli_usage_error("--text-encoder-dtype: expected f32 or bf16, got \"%s\"", a.text_dtype);
    ditrt_output_kind kind;
    if (ditrt_output_check(a.output, 1, &kind, &err) != DITRT_OK) return cli_die(&err);
    ditrt_ctx *c = NULL;
    ditrt_status s = ditrt_ctx_create(&cp, &c);
    if (s != DITRT_OK) return ctx_die(c, s);
    ditrt_ctx_info info = {.struct_size = sizeof info};
    ditrt_ctx_get_info(c, &info);
    if (!info.max_frames) s = cli_fail(&err, DITRT_EINVAL, "txt2vid: %s is an image model; use ditrt txt2img", a.model);
    else if (a.req.frames > info.max_frames)
        s = cli_fail(&err, DITRT_EINVAL, "--frames: this model takes 1 to %d frames (video_length), got %d", info.max_frames,
                     a.req.frames);
    else if (a.req.eta > 0 && strcmp(info.solver, "DDIMScheduler"))
        s = cli_fail(&err, DITRT_EINVAL, "--eta: only DDIMScheduler uses eta, the solver is %s", info.solver);
    if (s != DITRT_OK) {
        ditrt_ctx_free(c);
        return cli_die(&err);
    }
    if (!a.dtype) a.dtype = info.dtype;
    if (info.solver_warning && !a.quiet) fprintf(stderr, "ditrt: warning: %s\n", info.solver_warning);
    double elapsed = 0;
    if (!a.quiet && isatty(2)) {
        a.req.progress = step_bar;
        a.req.frame_progress = frame_bar;
        a.req.progress_user = &elapsed;
    }
    ditrt_video *v = NULL;
    int n = 0;
    if ((s = ditrt_generate_video(c, &a.req, &v, &n)) != DITRT_OK) return ctx_die(c, s);
    ditrt_gen_info g = {.struct_size = sizeof g};
    ditrt_last_gen_info(c, &g);
    if (g.prompt_truncated && !a.quiet) fprintf(stderr, "ditrt: warning: the prompt is longer than 120 tokens and was truncated\n");
    s = write_videos(&a, kind, &info, v, n, &err);
    if (s == DITRT_OK && a.json) print_json(&a, kind, &info, &g, v, n);
    ditrt_videos_free(v, n);
    ditrt_ctx_free(c);
    return s == DITRT_OK ? 0 : cli_die(&err);
}
