/* `ditrt txt2img` and `ditrt txt2vid`: prompt in, image files or a video out, with the
 * generation parameters in the outputs' metadata (PNG tEXt; MP4 tags, WebP XMP, frame PNGs).
 * One command in two forms: the same flags (solvers, solver schedules, zoos and model
 * schedules, attention plans, quantization) for images and videos, plus each form's own
 * (image: --max-length, --vae-tiling, --no-binning; video: --frames, --fps, --decode-chunk).
 * Every output path is checked before the model is loaded; files are written atomically.
 * A client of the public API (ditrt.h) only. */
#include "client.h"
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    int video;                 /* txt2vid */
    const char *name;          /* the command's name in messages */
    const char *output;        /* default output */
} gen_form;

static const gen_form IMAGE = {0, "txt2img", "out.png"}, VIDEO = {1, "txt2vid", "out.mp4"};

typedef struct {
    const gen_form *form;
    const char *model, *output, *dtype, *text_dtype;
    const char *device;                /* --device cpu|cuda[:N] (NULL: cpu) */
    const char *solver;                /* resolved class name or NULL: the folder's */
    const char *schedule, *statistics; /* --solver-schedule, --solver-statistics */
    const char *attn_plan, *quant;     /* --attn-plan FILE, --quant DIR */
    const char *zoo, *model_schedule;  /* --zoo DIR[,DIR...] (OMS-DPM members after the model), --model-schedule FILE */
    int threads, quiet, json, karras;
    double fps;                        /* video */
    ditrt_gen_params req;
} gen_args;

static int parse_float(const char *flag, const char *v, float *out)
{
    char *end;
    double d = strtod(v, &end);
    if (!*v || *end) return cli_usage_error("%s: expected a number, got \"%s\"", flag, v), 0;
    *out = (float)d;
    return 1;
}

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

/* The flags only one form has; 1 when argv[*i] was one of them (ok cleared on a bad value). */
static int parse_form_flag(int argc, char **argv, int *i, gen_args *a, int *miss, int *ok)
{
    const char *v;
#define F(s) (v = cli_flag(argc, argv, i, s, miss))
    if (a->form->video) {
        if (F("--frames")) *ok = cli_parse_int("--frames", v, 1, 4096, &a->req.frames);
        else if (F("--fps")) *ok = parse_num("--fps", v, 0.1, 1000, &a->fps);
        else if (F("--decode-chunk")) *ok = cli_parse_int("--decode-chunk", v, 1, 4096, &a->req.decode_chunk);
        else return 0;
        return 1;
    }
    if (F("--max-length")) *ok = cli_parse_int("--max-length", v, 2, 4096, &a->req.max_sequence_length);
    else if (*miss) return 0;
    else if (!strcmp(argv[*i], "--vae-tiling")) a->req.vae_tiling = 1;
    else if (!strcmp(argv[*i], "--no-binning")) a->req.resolution_binning = 0;
    else return 0;
#undef F
    return 1;
}

static int parse(int argc, char **argv, const gen_form *form, gen_args *a)
{
    *a = (gen_args){.form = form, .output = form->output, .fps = 8}; /* dtypes NULL: the device's default */
    if (form->video) ditrt_gen_params_init_video(&a->req);
    else ditrt_gen_params_init(&a->req);
    for (int i = 1; i < argc; i++) {
        int miss = 0, ok = 1;
        const char *v;
#define F(s) (v = cli_flag(argc, argv, &i, s, &miss))
        if (F("-m") || F("--model")) a->model = v;
        else if (F("-p") || F("--prompt")) a->req.prompt = v;
        else if (F("-n") || F("--negative-prompt")) a->req.negative_prompt = v;
        else if (F("-W") || F("--width")) ok = cli_parse_int("--width", v, 1, 16384, &a->req.width);
        else if (F("-H") || F("--height")) ok = cli_parse_int("--height", v, 1, 16384, &a->req.height);
        else if (F("--steps")) ok = cli_parse_int("--steps", v, 1, 1000, &a->req.steps);
        else if (F("--cfg")) ok = parse_float("--cfg", v, &a->req.cfg) && (a->req.cfg >= 0 || (cli_usage_error("--cfg: must be >= 0, got %s", v), 0));
        else if (F("--eta")) ok = parse_float("--eta", v, &a->req.eta) && (a->req.eta >= 0 || (cli_usage_error("--eta: must be >= 0, got %s", v), 0));
        else if (F("--seed")) ok = cli_parse_u64("--seed", v, &a->req.seed);
        else if (F("--batch")) ok = cli_parse_int("--batch", v, 1, 64, &a->req.batch);
        else if (F("--dtype")) a->dtype = v;
        else if (F("--text-encoder-dtype")) a->text_dtype = v;
        else if (F("--device")) a->device = v;
        else if (F("--threads")) ok = cli_parse_int("--threads", v, 1, 1024, &a->threads);
        else if (F("--attn-plan")) a->attn_plan = v;
        else if (F("--quant")) a->quant = v;
        else if (F("--zoo")) a->zoo = v;
        else if (F("--model-schedule")) a->model_schedule = v;
        else if (F("--solver-schedule")) a->schedule = v;
        else if (F("--solver-statistics")) a->statistics = v;
        else if (F("-o") || F("--output")) a->output = v;
        else if (F("--solver")) {
            if (!(a->solver = solver_class(v)))
                return cli_usage_error("--solver: unknown solver \"%s\" (see ditrt %s --list-solvers)", v, form->name), 0;
        }
        else if (parse_form_flag(argc, argv, &i, a, &miss, &ok)) {}
        else if (miss) return cli_usage_error("%s: missing value", argv[i]), 0;
        else if (!strcmp(argv[i], "--no-clean-caption")) a->req.clean_caption = 0;
        else if (!strcmp(argv[i], "--force")) a->req.force = 1;
        else if (!strcmp(argv[i], "--karras")) a->karras = 1;
        else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q")) a->quiet = 1;
        else if (!strcmp(argv[i], "--json")) a->json = 1;
        else return cli_usage_error("%s: unknown option \"%s\"", form->name, argv[i]), 0;
#undef F
        if (!ok) return 0;
    }
    if (!a->model) return cli_usage_error("%s: -m MODEL_DIR is required", form->name), 0;
    if (!a->req.prompt) return cli_usage_error("%s: -p PROMPT is required", form->name), 0;
    if (a->schedule && (a->solver || a->karras))
        return cli_usage_error("--solver-schedule: not combinable with --solver / --karras (the schedule is the solver)"), 0;
    if (a->statistics && !a->schedule) return cli_usage_error("--solver-statistics: needs --solver-schedule"), 0;
    return 1;
}

/* out.png -> out-3.png for batch item 3 (the name itself when there is one output); a frame
 * folder gets a sub-folder per item. */
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

static cli_settings settings_of(const gen_args *a)
{
    return (cli_settings){.attn_plan = a->attn_plan, .quant = a->quant, .solver_schedule = a->schedule,
                          .solver_statistics = a->statistics, .zoo = a->zoo, .model_schedule = a->model_schedule,
                          .eta = a->req.eta, .karras = a->karras};
}

/* What was generated: images, or videos (one per batch item). */
typedef struct {
    ditrt_image *im;
    ditrt_video *v;
    int n, width, height, frames;
} gen_out;

/* The metadata every output carries: the request, the solver, the model, the size (and
 * frames and fps for a video), the dtype, the software, and the settings that were given. */
static int output_meta(const gen_args *a, const ditrt_ctx_info *info, const gen_out *o, cli_settings *set, char buf[][64],
                       ditrt_meta *m, int cap)
{
    snprintf(buf[0], 64, "%llu", (unsigned long long)a->req.seed);
    snprintf(buf[1], 64, "%d", a->req.steps);
    snprintf(buf[2], 64, "%g", a->req.cfg);
    snprintf(buf[3], 64, "%dx%d", o->width, o->height);
    snprintf(buf[4], 64, "%d", o->frames);
    snprintf(buf[5], 64, "%g", a->fps);
    snprintf(buf[6], 64, "ditrt %s", ditrt_version());
    int n = 0;
    m[n++] = (ditrt_meta){"prompt", a->req.prompt};
    m[n++] = (ditrt_meta){"negative_prompt", a->req.negative_prompt};
    m[n++] = (ditrt_meta){"seed", buf[0]};
    m[n++] = (ditrt_meta){"steps", buf[1]};
    m[n++] = (ditrt_meta){"cfg", buf[2]};
    m[n++] = (ditrt_meta){"solver", info->solver};
    m[n++] = (ditrt_meta){"model", a->model};
    m[n++] = (ditrt_meta){"size", buf[3]};
    if (a->form->video) {
        m[n++] = (ditrt_meta){"frames", buf[4]};
        m[n++] = (ditrt_meta){"fps", buf[5]};
    }
    m[n++] = (ditrt_meta){"dtype", a->dtype};
    m[n++] = (ditrt_meta){"Software", buf[6]};
    return cli_settings_meta(set, m, n, cap); /* values may point into set */
}

static ditrt_status write_outputs(const gen_args *a, ditrt_output_kind kind, const ditrt_ctx_info *info, const gen_out *o,
                                  ditrt_error *err)
{
    char buf[7][64], path[4200];
    ditrt_meta meta[24];
    cli_settings set = settings_of(a);
    int nmeta = output_meta(a, info, o, &set, buf, meta, (int)(sizeof meta / sizeof *meta));
    ditrt_status s = DITRT_OK;
    for (int i = 0; i < o->n && s == DITRT_OK; i++) {
        item_path(a->output, kind, i, o->n, path, sizeof path);
        if (!a->form->video) {
            s = ditrt_image_save(path, &o->im[i], meta, nmeta, err);
            continue;
        }
        if (kind == DITRT_OUTPUT_FRAME_FOLDER && o->n > 1 && mkdir(path, 0755) != 0 && access(path, W_OK) != 0)
            s = cli_fail(err, DITRT_EIO, "%s: cannot create the frame folder", path);
        if (s == DITRT_OK) s = ditrt_video_save(path, &o->v[i], a->fps, meta, nmeta, err);
    }
    return s;
}

static void print_json(const gen_args *a, ditrt_output_kind kind, const ditrt_ctx_info *info, const ditrt_gen_info *g,
                       const gen_out *o)
{
    cJSON *j = cJSON_CreateObject(), *outs = cJSON_AddArrayToObject(j, "outputs");
    char path[4200];
    for (int i = 0; i < o->n; i++) {
        item_path(a->output, kind, i, o->n, path, sizeof path);
        cJSON_AddItemToArray(outs, cJSON_CreateString(path));
    }
    cli_summary sum = {a->model, a->req.prompt, a->req.negative_prompt, info->solver, a->dtype, a->req.seed,
                       a->req.steps, o->width, o->height, g->prompt_truncated, a->req.cfg,
                       g->seconds_text, g->seconds_sampling, g->seconds_decode};
    cli_summary_add(j, &sum);
    cli_settings set = settings_of(a);
    cli_settings_json(j, &set);
    if (a->form->video) {
        cJSON_AddNumberToObject(j, "frames", o->frames);
        cJSON_AddNumberToObject(j, "fps", a->fps);
    }
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

/* Every output path, checked before the model is loaded. */
static ditrt_status check_outputs(const gen_args *a, ditrt_output_kind *kind, ditrt_error *err)
{
    if (a->form->video) return ditrt_output_check(a->output, 1, kind, err);
    char path[4200];
    *kind = DITRT_OUTPUT_IMAGE;
    for (int i = 0; i < a->req.batch; i++) {
        item_path(a->output, *kind, i, a->req.batch, path, sizeof path);
        if (ditrt_output_check(path, 0, NULL, err) != DITRT_OK) return err->status;
    }
    return DITRT_OK;
}

/* The model's kind against the form, and what only a loaded model can tell (exit 1 or 2). */
static int check_model(const gen_args *a, const ditrt_ctx_info *info, ditrt_error *err)
{
    if (!a->form->video && info->max_frames)
        return cli_usage_error("txt2img: %s is a video model (%d frames); use ditrt txt2vid", a->model, info->max_frames);
    if (a->form->video && !info->max_frames)
        return cli_fail(err, DITRT_EINVAL, "txt2vid: %s is an image model; use ditrt txt2img", a->model), cli_die(err);
    if (a->req.frames > info->max_frames)
        return cli_fail(err, DITRT_EINVAL, "--frames: this model takes 1 to %d frames (video_length), got %d",
                        info->max_frames, a->req.frames), cli_die(err);
    if (a->req.eta > 0 && strcmp(info->solver, "DDIMScheduler"))
        return cli_usage_error("--eta: only DDIMScheduler uses eta, the solver is %s", info->solver);
    return 0;
}

static ditrt_status generate(ditrt_ctx *c, gen_args *a, gen_out *o)
{
    ditrt_status s;
    if (a->form->video) {
        s = ditrt_generate_video(c, &a->req, &o->v, &o->n);
        if (s == DITRT_OK) o->width = o->v[0].width, o->height = o->v[0].height, o->frames = o->v[0].frames;
    } else {
        s = ditrt_generate(c, &a->req, &o->im, &o->n);
        if (s == DITRT_OK) o->width = o->im[0].width, o->height = o->im[0].height;
    }
    return s;
}

static int run(int argc, char **argv, const gen_form *form)
{
    gen_args a;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--list-solvers")) return cli_list_solvers();
    if (!parse(argc, argv, form, &a)) return 2;
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
    if (a.dtype && !(cp.dtype = cli_dtype_arg(a.dtype)))
        return cli_usage_error("--dtype: expected f32 or bf16, got \"%s\"", a.dtype);
    if (a.text_dtype && !(cp.text_dtype = cli_dtype_arg(a.text_dtype)))
        return cli_usage_error("--text-encoder-dtype: expected f32 or bf16, got \"%s\"", a.text_dtype);
    if (a.device && !(cp.device = cli_device_arg(a.device)))
        return cli_usage_error("--device: expected cpu, cuda or cuda:N, got \"%s\"", a.device);
    ditrt_output_kind kind;
    if (check_outputs(&a, &kind, &err) != DITRT_OK) return cli_die(&err);
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
    int rc = check_model(&a, &info, &err);
    if (rc) {
        ditrt_ctx_free(c);
        return rc;
    }
    if (!a.dtype) a.dtype = info.dtype;
    if (info.solver_warning && !a.quiet) fprintf(stderr, "ditrt: warning: %s\n", info.solver_warning);
    double elapsed = 0;
    if (!a.quiet && isatty(2)) {
        a.req.progress = step_bar;
        if (form->video) a.req.frame_progress = frame_bar;
        a.req.progress_user = &elapsed;
    }
    gen_out o = {0};
    if ((s = generate(c, &a, &o)) != DITRT_OK) return ctx_die(c, s);
    ditrt_gen_info g = {.struct_size = sizeof g};
    ditrt_last_gen_info(c, &g);
    if (g.prompt_truncated && !a.quiet)
        fprintf(stderr, "ditrt: warning: the prompt is longer than %d tokens and was truncated\n", g.max_sequence_length);
    if (g.negative_truncated && !a.quiet)
        fprintf(stderr, "ditrt: warning: the negative prompt is longer than %d tokens and was truncated\n", g.max_sequence_length);
    s = write_outputs(&a, kind, &info, &o, &err);
    if (s == DITRT_OK && a.json) print_json(&a, kind, &info, &g, &o);
    ditrt_images_free(o.im, form->video ? 0 : o.n);
    ditrt_videos_free(o.v, form->video ? o.n : 0);
    ditrt_ctx_free(c);
    return s == DITRT_OK ? 0 : cli_die(&err);
}

int cli_txt2img(int argc, char **argv) { return run(argc, argv, &IMAGE); }
int cli_txt2vid(int argc, char **argv) { return run(argc, argv, &VIDEO); }
