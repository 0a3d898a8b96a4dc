/* `ditrt txt2img` and `ditrt txt2vid`: prompt in, image files or a video out, with the
 * generation parameters in the outputs' metadata (PNG tEXt; MP4 tags, WebP XMP, frame PNGs).
 * One command in two forms: the same flags (solvers, solver schedules, zoos and model
 * schedules, attention plans, quantization) for images and videos, plus each form's own
 * (image: --max-length, --vae-tiling, --no-binning; video: --frames, --fps, --decode-chunk).
 * Every output path is checked before the model is loaded; files are written atomically.
 *
 * Outputs: the paths written are printed (stdout, "wrote PATH"; not with --quiet or --json,
 * whose "outputs" lists them). Overwrite rule: a path given with -o is replaced (the new file
 * is renamed over it only once complete, and a batch's files only once all are complete, so a
 * failed run replaces nothing); without -o the default name is never replaced: out.png (out.mp4),
 * else the first of out_2.png, out_3.png ... whose files are all free. Batches record their
 * size and each item's index (metadata, --json); --batch-index i regenerates item i alone.
 * A client of the public API (ditrt.h) only. */
#include "client.h"
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
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
    const char *clip_sample;           /* --clip-sample on|off, or NULL */
    int threads, quiet, json, karras;
    int steps_given, output_given, random_seed;
    double fps;                        /* video */
    char default_output[64];           /* the free default name picked (no -o) */
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

/* "AxB" (sep 'x': a width x height) or "A,B" (sep ','), each part an integer in lo..16384. */
static int parse_pair(const char *flag, const char *v, char sep, int lo, int *a, int *b)
{
    char *end, *end2;
    long x = strtol(v, &end, 10), y = *end == sep ? strtol(end + 1, &end2, 10) : -1;
    if (*end != sep || end == v || !end[1] || *end2 || x < lo || y < lo || x > 16384 || y > 16384)
        return cli_usage_error("%s: expected %s with integers in %d..16384, got \"%s\"", flag,
                               sep == 'x' ? "WIDTHxHEIGHT" : "TOP,LEFT", lo, v), 0;
    *a = (int)x;
    *b = (int)y;
    return 1;
}

/* SDXL's micro-conditioning flags; 1 when argv[*i] was one of them (ok cleared on a bad value). */
static int parse_size_cond(int argc, char **argv, int *i, ditrt_gen_params *r, int *miss, int *ok)
{
    const char *v;
#define F(s) (v = cli_flag(argc, argv, i, s, miss))
    if (F("--original-size")) *ok = parse_pair("--original-size", v, 'x', 1, &r->original_width, &r->original_height);
    else if (F("--crop-top-left")) *ok = parse_pair("--crop-top-left", v, ',', 0, &r->crop_top, &r->crop_left);
    else if (F("--target-size")) *ok = parse_pair("--target-size", v, 'x', 1, &r->target_width, &r->target_height);
    else if (F("--negative-original-size"))
        *ok = parse_pair("--negative-original-size", v, 'x', 1, &r->negative_original_width, &r->negative_original_height);
    else if (F("--negative-crop-top-left"))
        *ok = parse_pair("--negative-crop-top-left", v, ',', 0, &r->negative_crop_top, &r->negative_crop_left);
    else if (F("--negative-target-size"))
        *ok = parse_pair("--negative-target-size", v, 'x', 1, &r->negative_target_width, &r->negative_target_height);
    else return 0;
#undef F
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
    else if (F("--clip-skip")) *ok = cli_parse_int("--clip-skip", v, 0, 64, &a->req.clip_skip);
    else if (*miss) return 0;
    else if (parse_size_cond(argc, argv, i, &a->req, miss, ok)) {}
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
        else if (F("--steps")) ok = cli_parse_int("--steps", v, 1, 1000, &a->req.steps), a->steps_given = 1;
        else if (F("--cfg")) ok = parse_float("--cfg", v, &a->req.cfg) && (a->req.cfg >= 0 || (cli_usage_error("--cfg: must be >= 0, got %s", v), 0));
        else if (F("--eta")) ok = parse_float("--eta", v, &a->req.eta) && (a->req.eta >= 0 || (cli_usage_error("--eta: must be >= 0, got %s", v), 0));
        else if (F("--seed")) ok = !strcmp(v, "-1") ? (a->random_seed = 1) : cli_parse_u64("--seed", v, &a->req.seed);
        else if (F("--batch")) ok = cli_parse_int("--batch", v, 1, 64, &a->req.batch);
        else if (F("--batch-index")) ok = cli_parse_int("--batch-index", v, 0, 63, &a->req.batch_index);
        else if (F("--clip-sample")) ok = !strcmp(v, "on") || !strcmp(v, "off") ? (a->clip_sample = v, 1)
                                         : (cli_usage_error("--clip-sample: expected on or off, got \"%s\"", v), 0);
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
        else if (F("-o") || F("--output")) a->output = v, a->output_given = 1;
        else if (F("--solver")) {
            if (!(a->solver = solver_class(v)))
                return cli_usage_error("--solver: unknown solver \"%s\" (see ditrt %s --list-solvers)", v, form->name), 0;
        }
        else if (parse_form_flag(argc, argv, &i, a, &miss, &ok)) {}
        else if (miss) return cli_usage_error("%s: missing value", argv[i]), 0;
        else if (!strcmp(argv[i], "--no-clean-caption")) a->req.clean_caption = 0;
        else if (!strcmp(argv[i], "--force")) a->req.force = 1;
        else if (!strcmp(argv[i], "--karras")) a->karras = 1;
        else if (!strcmp(argv[i], "--batch-exact")) a->req.batch_exact = 1;
        else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q")) a->quiet = 1;
        else if (!strcmp(argv[i], "--json")) a->json = 1;
        else return cli_unknown_option(form->name, argv[i]), 0;
#undef F
        if (!ok) return 0;
    }
    if (!a->model) return cli_usage_error("%s: -m MODEL_DIR is required", form->name), 0;
    if (!a->req.prompt) return cli_usage_error("%s: -p PROMPT is required", form->name), 0;
    ditrt_error merr = {0};
    if (cli_check_pipeline_dir(a->model, &merr) != DITRT_OK) return cli_die(&merr), 0;
    if (a->schedule && (a->solver || a->karras))
        return cli_usage_error("--solver-schedule: not combinable with --solver / --karras (the schedule is the solver)"), 0;
    if (a->statistics && !a->schedule) return cli_usage_error("--solver-statistics: needs --solver-schedule"), 0;
    if (a->req.batch_exact && a->req.batch_index < 0) return cli_usage_error("--batch-exact: needs --batch-index"), 0;
    if (a->req.batch_index >= a->req.batch)
        return cli_usage_error("--batch-index: %d is not an item of --batch %d (items 0..%d)", a->req.batch_index,
                               a->req.batch, a->req.batch - 1), 0;
    return 1;
}

/* --seed -1: a random seed of 32 bits (torch's generators use no more), recorded as given. */
static uint64_t random_seed(void)
{
    uint32_t v;
    if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v) v = (uint32_t)time(NULL) ^ ((uint32_t)getpid() << 16);
    return v;
}

/* Outputs of one run: the batch, or the one item --batch-index picks. */
static int output_count(const gen_args *a) { return a->req.batch_index >= 0 ? 1 : a->req.batch; }

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
    return (cli_settings){.attn_plan = a->attn_plan, .quant = a->quant, .solver_schedule = a->schedule, .clip_sample = a->clip_sample,
                          .solver_statistics = a->statistics, .zoo = a->zoo, .model_schedule = a->model_schedule,
                          .eta = a->req.eta, .karras = a->karras};
}

/* What was generated: images, or videos (one per batch item). */
typedef struct {
    ditrt_image *im;
    ditrt_video *v;
    int n, width, height, frames;
} gen_out;

/* SDXL's micro-conditions as they were used (the defaults resolved: the output's size, crop
 * 0,0), in the flags' forms: original_size and target_size WxH, crops_coords_top_left
 * TOP,LEFT; the negative ones when they were given. Into buf[0..5]; the count of pairs
 * written to key/val. */
static int size_conditions(const gen_args *a, const gen_out *o, char buf[][64], const char **key, const char **val)
{
    const ditrt_gen_params *r = &a->req;
    const struct {
        const char *key;
        int x, y, crop, given;
    } f[] = {{"original_size", r->original_width, r->original_height, 0, 1},
             {"crops_coords_top_left", r->crop_top, r->crop_left, 1, 1},
             {"target_size", r->target_width, r->target_height, 0, 1},
             {"negative_original_size", r->negative_original_width, r->negative_original_height, 0, r->negative_original_width > 0},
             {"negative_crops_coords_top_left", r->negative_crop_top, r->negative_crop_left, 1, r->negative_original_width > 0},
             {"negative_target_size", r->negative_target_width, r->negative_target_height, 0, r->negative_original_width > 0}};
    int n = 0;
    for (int i = 0; i < 6; i++) {
        if (!f[i].given) continue;
        if (f[i].crop) snprintf(buf[n], 64, "%d,%d", f[i].x, f[i].y);
        else snprintf(buf[n], 64, "%dx%d", f[i].x ? f[i].x : o->width, f[i].x ? f[i].y : o->height);
        key[n] = f[i].key;
        val[n] = buf[n];
        n++;
    }
    return n;
}

/* The metadata every output carries: the request, the solver, the model, the size (and
 * frames and fps for a video; SDXL's micro-conditions), the dtype, the software, and the
 * settings that were given. */
static int output_meta(const gen_args *a, const ditrt_ctx_info *info, const ditrt_gen_info *g, const gen_out *o,
                       cli_settings *set, char buf[][64], ditrt_meta *m, int cap)
{
    snprintf(buf[0], 64, "%llu", (unsigned long long)a->req.seed);
    snprintf(buf[1], 64, "%d", g->steps); /* what ran (a solver schedule fixes it) */
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
    if (info->micro_conditioning) {
        const char *key[6], *val[6];
        int k = size_conditions(a, o, buf + 7, key, val);
        for (int i = 0; i < k; i++) m[n++] = (ditrt_meta){key[i], val[i]};
    }
    m[n++] = (ditrt_meta){"dtype", a->dtype};
    if (info->text_dtype && strcmp(info->text_dtype, a->dtype)) /* recorded where it changes the output */
        m[n++] = (ditrt_meta){"text_dtype", info->text_dtype};
    m[n++] = (ditrt_meta){"Software", buf[6]};
    return cli_settings_meta(set, m, n, cap); /* values may point into set */
}

/* The batch item output i is (all items of a batch, or the one --batch-index picked). */
static int batch_item(const gen_args *a, int i) { return a->req.batch_index >= 0 ? a->req.batch_index : i; }

/* What the output_meta of a batch item adds: its batch (when there is one) and, for images,
 * the web UI's `parameters` text (*params, malloc'd). */
static int item_meta(const gen_args *a, const ditrt_ctx_info *info, const ditrt_gen_info *g, const gen_out *o, int i,
                     char buf[][64], char **params, ditrt_meta *m, int n)
{
    *params = NULL;
    if (a->req.batch > 1) {
        snprintf(buf[0], 64, "%d", a->req.batch);
        snprintf(buf[1], 64, "%d", batch_item(a, i));
        m[n++] = (ditrt_meta){"batch", buf[0]};
        m[n++] = (ditrt_meta){"batch_index", buf[1]};
    }
    if (a->form->video) return n;
    snprintf(buf[2], 64, "ditrt %s", ditrt_version());
    cli_infotext_fields f = {a->req.prompt, a->req.negative_prompt, info->solver, a->model, buf[2], g->steps,
                             o->width, o->height, a->karras, a->req.batch, batch_item(a, i), a->req.seed, a->req.cfg,
                             a->req.eta};
    if ((*params = cli_infotext(&f))) m[n++] = (ditrt_meta){"parameters", *params};
    return n;
}

/* Where item i is written first: the final path when it is the only output (the writers are
 * atomic), else a temp name beside it with the same extension, renamed into place once every
 * item is written (so a failed batch replaces no earlier file). Frame sequences are written
 * in place. */
static int staged(ditrt_output_kind kind, int n) { return n > 1 && (kind == DITRT_OUTPUT_IMAGE || kind == DITRT_OUTPUT_WEBP || kind == DITRT_OUTPUT_MP4); }

static void stage_path(const char *path, int i, char *buf, size_t size)
{
    const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
    if (!dot || (slash && dot < slash)) dot = path + strlen(path);
    snprintf(buf, size, "%.*s.part-%ld-%d%s", (int)(dot - path), path, (long)getpid(), i, dot);
}

static ditrt_status write_item(const gen_args *a, ditrt_output_kind kind, const gen_out *o, int i, const char *path,
                               const ditrt_meta *meta, int nmeta, ditrt_error *err)
{
    if (!a->form->video) return ditrt_image_save(path, &o->im[i], meta, nmeta, err);
    if (kind == DITRT_OUTPUT_FRAME_FOLDER && o->n > 1 && mkdir(path, 0755) != 0 && access(path, W_OK) != 0)
        return cli_fail(err, DITRT_EIO, "%s: cannot create the frame folder", path);
    return ditrt_video_save(path, &o->v[i], a->fps, meta, nmeta, err);
}

static ditrt_status write_outputs(const gen_args *a, ditrt_output_kind kind, const ditrt_ctx_info *info,
                                  const ditrt_gen_info *g, const gen_out *o, ditrt_error *err)
{
    char buf[13][64], ibuf[3][64], path[4200], tmp[4300];
    ditrt_meta meta[40];
    cli_settings set = settings_of(a);
    int nmeta = output_meta(a, info, g, o, &set, buf, meta, 36), stage = staged(kind, o->n), done = 0;
    ditrt_status s = DITRT_OK;
    for (; done < o->n && s == DITRT_OK; done++) {
        char *params;
        int n = item_meta(a, info, g, o, done, ibuf, &params, meta, nmeta);
        item_path(a->output, kind, done, o->n, path, sizeof path);
        if (stage) stage_path(path, done, tmp, sizeof tmp);
        s = cli_output_folders(path, err); /* -o in a missing folder: made now */
        if (s == DITRT_OK)
            s = !a->form->video && !params ? cli_fail(err, DITRT_ENOMEM, "%s: out of memory for the metadata", path)
                                           : write_item(a, kind, o, done, stage ? tmp : path, meta, n, err);
        free(params);
    }
    if (s != DITRT_OK) done--; /* the failed item left no file */
    for (int i = 0; stage && i < done; i++) {
        item_path(a->output, kind, i, o->n, path, sizeof path);
        stage_path(path, i, tmp, sizeof tmp);
        if (s == DITRT_OK && rename(tmp, path) != 0) s = cli_fail(err, DITRT_EIO, "%s: cannot rename the finished file into place", path);
        if (s != DITRT_OK) unlink(tmp);
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
                       g->steps, o->width, o->height, g->prompt_truncated, a->req.cfg,
                       g->seconds_text, g->seconds_sampling, g->seconds_decode, info->text_dtype};
    cli_summary_add(j, &sum);
    if (a->random_seed) cJSON_AddBoolToObject(j, "random_seed", 1);
    if (a->req.batch > 1) {
        cJSON_AddNumberToObject(j, "batch", a->req.batch);
        cJSON *idx = cJSON_AddArrayToObject(j, "batch_index"); /* of each output */
        for (int i = 0; i < o->n; i++) cJSON_AddItemToArray(idx, cJSON_CreateNumber(batch_item(a, i)));
    }
    cli_settings set = settings_of(a);
    cli_settings_json(j, &set);
    if (info->micro_conditioning) {
        char buf[6][64];
        const char *key[6], *val[6];
        int k = size_conditions(a, o, buf, key, val);
        for (int i = 0; i < k; i++) cJSON_AddStringToObject(j, key[i], val[i]);
    }
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

static int path_exists(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0;
}

/* Without -o: out.png (out.mp4) when its files are free, else out_2.png, out_3.png ... */
static ditrt_status pick_default_output(gen_args *a, ditrt_output_kind kind, ditrt_error *err)
{
    const char *ext = a->form->video ? ".mp4" : ".png";
    char path[4200];
    for (int k = 1; k < 100000; k++) {
        if (k == 1) snprintf(a->default_output, sizeof a->default_output, "out%s", ext);
        else snprintf(a->default_output, sizeof a->default_output, "out_%d%s", k, ext);
        int free_ = 1;
        for (int i = 0; i < output_count(a) && free_; i++) {
            item_path(a->default_output, kind, i, output_count(a), path, sizeof path);
            free_ = !path_exists(path);
        }
        if (free_) {
            a->output = a->default_output;
            return DITRT_OK;
        }
    }
    return cli_fail(err, DITRT_EIO, "no free default output name (out_2%s ... are taken); give -o PATH", ext);
}

/* Every output path, checked before the model is loaded (and the default name picked). */
static ditrt_status check_outputs(gen_args *a, ditrt_output_kind *kind, ditrt_error *err)
{
    *kind = DITRT_OUTPUT_IMAGE;
    if (a->form->video && cli_output_check(a->output, 1, kind, err) != DITRT_OK) return err->status;
    if (!a->output_given && pick_default_output(a, *kind, err) != DITRT_OK) return err->status;
    if (a->form->video) return DITRT_OK;
    char path[4200];
    for (int i = 0; i < output_count(a); i++) {
        item_path(a->output, *kind, i, output_count(a), path, sizeof path);
        if (cli_output_check(path, 0, NULL, err) != DITRT_OK) return err->status;
    }
    return DITRT_OK;
}

/* "wrote PATH" per output on stdout, saying when an earlier file was replaced (existed[i]). */
static void print_written(const gen_args *a, ditrt_output_kind kind, int n, const unsigned char *existed)
{
    char path[4200];
    for (int i = 0; i < n; i++) {
        item_path(a->output, kind, i, n, path, sizeof path);
        printf("wrote %s%s\n", path, existed[i] ? " (replaced the earlier file)" : "");
    }
}

static void warn_line(const char *line, void *user)
{
    (void)user;
    fprintf(stderr, "ditrt: warning: %s\n", line);
}

/* The model's kind against the form, and what only a loaded model can tell (exit 1 or 2). */
static int check_model(gen_args *a, const ditrt_ctx_info *info, ditrt_error *err)
{
    if (info->fixed_steps && a->steps_given && a->req.steps != info->fixed_steps)
        return cli_usage_error("--steps %d: the solver schedule %s fixes %d steps; give --steps %d or leave --steps out",
                               a->req.steps, a->schedule, info->fixed_steps, info->fixed_steps);
    if (info->fixed_steps) a->req.steps = info->fixed_steps;
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
        return cli_usage_error("--dtype: expected " CLI_DTYPES ", got \"%s\"", a.dtype);
    if (a.text_dtype && !(cp.text_dtype = !strcmp(a.text_dtype, "int8") ? "int8" : cli_dtype_arg(a.text_dtype)))
        return cli_usage_error("--text-encoder-dtype: expected f32, bf16 or int8, got \"%s\"", a.text_dtype);
    if (a.random_seed) a.req.seed = random_seed();
    if (a.clip_sample) cp.clip_sample = !strcmp(a.clip_sample, "on");
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
    if (!a.quiet) a.req.warning = warn_line;
    if (a.random_seed && !a.quiet) fprintf(stderr, "ditrt: --seed -1: seed %llu\n", (unsigned long long)a.req.seed);
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
    unsigned char existed[64] = {0};
    char path[4200];
    for (int i = 0; i < o.n && i < 64; i++) {
        item_path(a.output, kind, i, o.n, path, sizeof path);
        existed[i] = kind != DITRT_OUTPUT_FRAME_FOLDER && kind != DITRT_OUTPUT_FRAME_PATTERN && path_exists(path);
    }
    s = write_outputs(&a, kind, &info, &g, &o, &err);
    if (s == DITRT_OK && a.json) print_json(&a, kind, &info, &g, &o);
    else if (s == DITRT_OK && !a.quiet) print_written(&a, kind, o.n, existed);
    ditrt_images_free(o.im, form->video ? 0 : o.n);
    ditrt_videos_free(o.v, form->video ? o.n : 0);
    ditrt_ctx_free(c);
    return s == DITRT_OK ? 0 : cli_die(&err);
}

int cli_txt2img(int argc, char **argv) { return run(argc, argv, &IMAGE); }
int cli_txt2vid(int argc, char **argv) { return run(argc, argv, &VIDEO); }
