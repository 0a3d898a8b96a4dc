/* `ditrt txt2vid`: prompt in, a video out (MP4/H.264, animated WebP, or PNG frames; see
 * runtime/video.h) with the generation parameters in its metadata. Every output path is
 * checked before any model is loaded; files are written atomically. */
#include "cli.h"
#include "cli_quant.h"
#include "runtime/plans/fastattn.h"
#include "runtime/io/image.h"
#include "runtime/models/modeldir.h"
#include "runtime/models/denoiser.h"
#include "runtime/pipeline/pipeline.h"
#include "runtime/io/video.h"
#include "schedulers/scheduler.h"
#include <cjson/cJSON.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    const char *model, *output, *dtype, *text_dtype;
    const char *attn_plan, *quant; /* --attn-plan FILE, --quant DIR */
    const char *solver;            /* resolved class name or NULL: the folder's */
    int threads, quiet, json, karras;
    double fps;
    dt_gen_request req;
} t2v_args;

static int parse_num(const char *flag, const char *v, double lo, double hi, double *out)
{
    char *end;
    double d = strtod(v, &end);
    if (!*v || *end || !(d >= lo && d <= hi)) return cli_usage_error("%s: expected a number in [%g, %g], got \"%s\"", flag, lo, hi, v), 0;
    *out = d;
    return 1;
}

static int parse(int argc, char **argv, t2v_args *a)
{
    *a = (t2v_args){.dtype = cli_default_dtype(), .text_dtype = cli_default_dtype(), .output = "out.mp4", .fps = 8, .req = dt_gen_request_default_video()};
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
            if (!(a->solver = dt_scheduler_resolve_name(v)))
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
static void item_path(const char *out, dt_video_kind kind, int i, int n, char *buf, size_t size)
{
    if (n == 1) { snprintf(buf, size, "%s", out); return; }
    if (kind == DT_VIDEO_PNG_DIR) {
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

static dt_status write_videos(const t2v_args *a, dt_video_kind kind, const dt_pipeline *p, const dt_gen_result *res, dt_err *err)
{
    char seed[32], steps[16], cfg[32], size[48], frames[16], fps[32], software[64], path[4200];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)a->req.seed);
    snprintf(steps, sizeof steps, "%d", a->req.steps);
    snprintf(cfg, sizeof cfg, "%g", a->req.cfg);
    snprintf(size, sizeof size, "%dx%d", res->width, res->height);
    snprintf(frames, sizeof frames, "%d", res->frames);
    snprintf(fps, sizeof fps, "%g", a->fps);
    snprintf(software, sizeof software, "ditrt %s", ditrt_version());
    dt_image_text text[] = {
        {"prompt", a->req.prompt}, {"negative_prompt", a->req.negative_prompt}, {"seed", seed},
        {"steps", steps}, {"cfg", cfg}, {"solver", dt_pipeline_solver_name(p)}, {"model", a->model},
        {"size", size}, {"frames", frames}, {"fps", fps}, {"dtype", a->dtype}, {"Software", software}, {0}, {0}, {0}};
    cli_settings set = settings_of(a);
    int ntext = cli_settings_meta(&set, text, 12, (int)(sizeof text / sizeof *text));
    size_t px = (size_t)res->width * res->height, F = (size_t)res->frames;
    uint8_t *rgb = malloc(F * px * 3);
    if (!rgb) return dt_fail(err, DT_ENOMEM, "out of memory");
    dt_status s = DT_OK;
    for (int i = 0; i < res->batch && s == DT_OK; i++) {
        for (size_t f = 0; f < F; f++)
            dt_image_from_float(res->pixels + ((size_t)i * F + f) * 3 * px, res->height, res->width, rgb + f * px * 3);
        item_path(a->output, kind, i, res->batch, path, sizeof path);
        if (kind == DT_VIDEO_PNG_DIR && res->batch > 1 && mkdir(path, 0755) != 0 && access(path, W_OK) != 0)
            s = dt_fail(err, DT_EIO, "%s: cannot create the frame folder", path);
        dt_video_frames v = {res->frames, res->width, res->height, a->fps, rgb, text, ntext};
        if (s == DT_OK) s = dt_video_write(path, &v, err);
    }
    free(rgb);
    return s;
}

static void print_json(const t2v_args *a, dt_video_kind kind, const dt_pipeline *p, const dt_gen_result *res)
{
    cJSON *j = cJSON_CreateObject(), *outs = cJSON_AddArrayToObject(j, "outputs");
    char path[4200];
    for (int i = 0; i < res->batch; i++) {
        item_path(a->output, kind, i, res->batch, path, sizeof path);
        cJSON_AddItemToArray(outs, cJSON_CreateString(path));
    }
    cli_summary sum = {a->model, a->req.prompt, a->req.negative_prompt, dt_pipeline_solver_name(p), a->dtype, a->req.seed,
                       a->req.steps, res->width, res->height, res->prompt_truncated, a->req.cfg,
                       res->seconds_text, res->seconds_sampling, res->seconds_decode};
    cli_summary_add(j, &sum);
    cli_settings set = settings_of(a);
    cli_settings_json(j, &set);
    cJSON_AddNumberToObject(j, "frames", res->frames);
    cJSON_AddNumberToObject(j, "fps", a->fps);
    cli_json_print(j);
}

/* The frame count against the transformer's config, before any weight is read (a folder that
 * is not a Latte pipeline is reported by the pipeline loader instead). */
static dt_status check_frames(const t2v_args *a, dt_err *err)
{
    char dir[4096], head[1024], tail[256];
    dt_denoiser_info info;
    dt_err ignored = {0};
    const dt_denoiser_class *cls;
    if (dt_model_component_dir(a->model, "transformer", dir, sizeof dir, &ignored) != DT_OK ||
        !(cls = dt_denoiser_class_of_dir(dir, &ignored)) || cls->describe(dir, &info, head, tail, sizeof head, &ignored) != DT_OK ||
        !info.max_frames)
        return DT_OK;
    if (a->req.frames > info.max_frames)
        return dt_fail(err, DT_EINVAL, "--frames: this model takes 1 to %d frames (video_length), got %d", info.max_frames, a->req.frames);
    return DT_OK;
}

int cli_txt2vid(int argc, char **argv)
{
    t2v_args a;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--list-solvers")) return cli_list_solvers();
    if (!parse(argc, argv, &a)) return 2;
    dt_err err = {0};
    dt_pipeline_config cfg = {.model_dir = a.model, .threads = a.threads, .solver = a.solver, .karras = a.karras};
    if (!dt_dtype_parse(a.dtype, &cfg.dtype) || (cfg.dtype != DT_F32 && cfg.dtype != DT_BF16))
        return cli_usage_error("--dtype: expected f32 or bf16, got \"%s\"", a.dtype);
    if (!dt_dtype_parse(a.text_dtype, &cfg.text_dtype) || (cfg.text_dtype != DT_F32 && cfg.text_dtype != DT_BF16))
        return cli_usage_error("--text-encoder-dtype: expected f32 or bf16, got \"%s\"", a.text_dtype);
    dt_video_kind kind;
    if (dt_video_check_writable(a.output, &kind, &err) != DT_OK || check_frames(&a, &err) != DT_OK) return cli_die(&err);
    if (a.threads > 0) omp_set_num_threads(a.threads);
    dt_attn_plan plan = {0}; /* checked against the model and steps with the request */
    if (a.attn_plan && dt_attn_plan_load(a.attn_plan, &plan, &err) != DT_OK) return cli_die(&err);
    if (a.attn_plan) a.req.attn_plan = &plan;
    dt_quantizer qz = {0};
    if (a.quant && dt_quantizer_open_plan(a.quant, &qz, &err) != DT_OK) { dt_attn_plan_free(&plan); return cli_die(&err); }
    if (a.quant) cfg.quant = &qz;
    dt_pipeline *p = NULL;
    dt_status ls = dt_pipeline_load(&cfg, &p, &err);
    dt_quantizer_close_plan(&qz); /* the layers are built; the plan is no longer needed */
    if (ls == DT_OK && a.req.eta > 0 && strcmp(dt_pipeline_solver_name(p), "DDIMScheduler"))
        ls = dt_fail(&err, DT_EINVAL, "--eta: only DDIMScheduler uses eta, the solver is %s", dt_pipeline_solver_name(p));
    if (ls != DT_OK) { dt_pipeline_free(p); dt_attn_plan_free(&plan); return cli_die(&err); }
    const char *warn = dt_pipeline_solver_warning(p);
    if (warn && !a.quiet) fprintf(stderr, "ditrt: warning: %s\n", warn);
    double elapsed = 0;
    if (!a.quiet && isatty(2)) {
        a.req.progress = step_bar;
        a.req.frame_progress = frame_bar;
        a.req.progress_user = &elapsed;
    }
    dt_gen_result res;
    dt_status s = dt_pipeline_check(p, &a.req, &err);
    if (s == DT_OK) s = dt_pipeline_generate(p, &a.req, &res, &err);
    if (s == DT_OK) {
        if (res.prompt_truncated && !a.quiet) fprintf(stderr, "ditrt: warning: the prompt is longer than 120 tokens and was truncated\n");
        s = write_videos(&a, kind, p, &res, &err);
        if (s == DT_OK && a.json) print_json(&a, kind, p, &res);
        free(res.pixels);
    }
    dt_pipeline_free(p);
    dt_attn_plan_free(&plan);
    return s == DT_OK ? 0 : cli_die(&err);
}
