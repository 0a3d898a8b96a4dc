/* `ditrt search-solver -m MODEL --nfe K --prompts FILE --out schedule.json`: evolutionary
 * search of a USF solver schedule (schedulers/usf_search.h) for one model at a fixed NFE,
 * scored on the final latents of --samples seeds per calibration prompt against the folder's
 * own solver at --ref-steps; the score is averaged over every (prompt, seed). Writes the
 * schedule for `txt2img --solver-schedule`. `-p PROMPT` (one prompt) and `-o` remain aliases.
 *
 * The denoiser is the pipeline's CFG-guided transformer. One generation is started per prompt
 * and stopped in its step hook at the first step (text encoded, model and inputs ready): the
 * hook keeps a copy of that prompt's text inputs, and for the last prompt runs the whole
 * search on the transformer, switching the text inputs per sample. */
#include "cli.h"
#include "runtime/models/modeldir.h"
#include "runtime/pipeline/pipeline.h"
#include "runtime/core/rng.h"
#include "runtime/core/arena.h"
#include "runtime/models/denoiser.h"
#include "schedulers/scheduler.h"
#include "schedulers/usf_search.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *model, *prompt, *prompts_file, *negative, *out, *dtype;
    int width, height, nfe, population, generations, max_order, samples, ref_steps, threads, quiet;
    float cfg;
    uint64_t seed;
} ss_args;

/* One prompt's text inputs, copied out of its generation. */
typedef struct {
    float *embeds, *mask, *res, *ar;
    int64_t shape[3];
    dt_tensor t;
} ss_text;

typedef struct {
    const ss_args *a;
    char sched_dir[4096];
    int done, nprompts, captured;
    ss_text *text;
    dt_usf_search_result res;
    /* the guided denoiser, valid inside the hook */
    dt_denoiser *tr;
    dt_denoiser_inputs in;
    dt_arena *arena;
    int rows, C, OC;
    size_t plane;
    float *model_in, *model_out, *tsteps;
    dt_tensor tin, tout;
    int64_t in_shape[4], out_shape[4];
} ss_ctx;

static int parse(int argc, char **argv, ss_args *a)
{
    *a = (ss_args){.negative = "", .out = "solver.json", .dtype = "f32", .nfe = 8, .population = 16, .generations = 10,
                   .max_order = 3, .samples = 2, .ref_steps = 50, .cfg = 4.5f};
    for (int i = 1; i < argc; i++) {
        int miss = 0, ok = 1;
        const char *v;
#define F(s) (v = cli_flag(argc, argv, &i, s, &miss))
        if (F("-m") || F("--model")) a->model = v;
        else if (F("-p") || F("--prompt")) a->prompt = v;
        else if (F("--prompts")) a->prompts_file = v;
        else if (F("-n") || F("--negative-prompt")) a->negative = v;
        else if (F("--out") || F("-o") || F("--output")) a->out = v;
        else if (F("--dtype")) a->dtype = v;
        else if (F("-W") || F("--width")) ok = cli_parse_int("--width", v, 1, 16384, &a->width);
        else if (F("-H") || F("--height")) ok = cli_parse_int("--height", v, 1, 16384, &a->height);
        else if (F("--nfe")) ok = cli_parse_int("--nfe", v, 2, 200, &a->nfe);
        else if (F("--population")) ok = cli_parse_int("--population", v, 4, 10000, &a->population);
        else if (F("--generations")) ok = cli_parse_int("--generations", v, 0, 100000, &a->generations);
        else if (F("--max-order")) ok = cli_parse_int("--max-order", v, 1, 3, &a->max_order);
        else if (F("--samples")) ok = cli_parse_int("--samples", v, 1, 1000, &a->samples);
        else if (F("--ref-steps")) ok = cli_parse_int("--ref-steps", v, 2, 1000, &a->ref_steps);
        else if (F("--threads")) ok = cli_parse_int("--threads", v, 1, 1024, &a->threads);
        else if (F("--cfg")) {
            char *end;
            a->cfg = strtof(v, &end);
            if (!*v || *end || a->cfg < 0) return cli_usage_error("--cfg: expected a number >= 0, got \"%s\"", v), 0;
        } else if (F("--seed")) {
            if (!cli_parse_u64("--seed", v, &a->seed)) return 0;
        } else if (miss) return cli_usage_error("%s: missing value", argv[i]), 0;
        else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q")) a->quiet = 1;
        else return cli_usage_error("search-solver: unknown option \"%s\"", argv[i]), 0;
#undef F
        if (!ok) return 0;
    }
    if (!a->model) return cli_usage_error("search-solver: -m MODEL_DIR is required"), 0;
    if (!a->prompt && !a->prompts_file) return cli_usage_error("search-solver: --prompts FILE (one prompt a line) is required"), 0;
    if (a->prompt && a->prompts_file) return cli_usage_error("search-solver: --prompts and -p are exclusive (-p is one prompt)"), 0;
    return 1;
}

/* The guided model output for latents x (one image) at model timestep t, as sample_loop
 * computes it: the latents copied to every CFG row, uncond + cfg * (cond - uncond) over the
 * first C channels. */
static dt_status denoise(void *user, int sample, const float *x, double t, float *out, dt_err *err)
{
    ss_ctx *c = user;
    const ss_text *tx = &c->text[sample / c->a->samples];
    c->in.encoder_hidden_states = &tx->t;
    c->in.encoder_attention_mask = tx->mask;
    c->in.resolution = tx->res;
    c->in.aspect_ratio = tx->ar;
    size_t n = (size_t)c->C * c->plane;
    for (int k = 0; k < c->rows; k++) {
        memcpy(c->model_in + (size_t)k * n, x, n * sizeof(float));
        c->tsteps[k] = (float)t;
    }
    dt_arena_reset(c->arena);
    DT_TRY(dt_denoiser_forward(c->tr, &c->in, c->arena, &c->tout, err));
    size_t on = (size_t)c->OC * c->plane;
    const float *u = c->model_out, *cond = c->rows > 1 ? c->model_out + on : c->model_out;
    float g = c->a->cfg;
    for (size_t i = 0; i < n; i++) out[i] = c->rows > 1 ? u[i] + g * (cond[i] - u[i]) : cond[i];
    return DT_OK;
}

/* Keeps a copy of the text inputs (embeddings, mask, micro-conditions) of one prompt. */
static dt_status capture(ss_text *tx, const dt_denoiser_inputs *in, dt_err *err)
{
    const dt_tensor *e = in->encoder_hidden_states;
    int64_t rows = e->shape[0], len = e->shape[1];
    int fail = 0;
    memcpy(tx->shape, e->shape, sizeof tx->shape);
    tx->embeds = cli_dup_floats(e->data, (size_t)(rows * len * e->shape[2]), &fail);
    tx->mask = cli_dup_floats(in->encoder_attention_mask, (size_t)(rows * len), &fail);
    tx->res = cli_dup_floats(in->resolution, (size_t)rows * 2, &fail);
    tx->ar = cli_dup_floats(in->aspect_ratio, (size_t)rows, &fail);
    if (fail) return dt_fail(err, DT_ENOMEM, "search-solver: out of memory");
    tx->t = dt_tensor_view(tx->embeds, DT_F32, 3, tx->shape);
    return DT_OK;
}

static void free_texts(ss_ctx *c)
{
    for (int i = 0; i < c->nprompts && c->text; i++) {
        free(c->text[i].embeds); free(c->text[i].mask); free(c->text[i].res); free(c->text[i].ar);
    }
    free(c->text);
}

static dt_status bind(ss_ctx *c, dt_denoiser *tr, const dt_denoiser_inputs *in, dt_arena *arena, dt_err *err)
{
    const dt_tensor *hs = in->hidden_states;
    c->tr = tr;
    c->arena = arena;
    c->rows = (int)hs->shape[0];
    c->C = (int)hs->shape[1];
    c->plane = (size_t)hs->shape[2] * hs->shape[3];
    c->OC = dt_denoiser_get_info(tr)->out_channels;
    c->model_in = malloc((size_t)c->rows * c->C * c->plane * sizeof(float));
    c->model_out = malloc((size_t)c->rows * c->OC * c->plane * sizeof(float));
    c->tsteps = malloc((size_t)c->rows * sizeof(float));
    if (!c->model_in || !c->model_out || !c->tsteps) return dt_fail(err, DT_ENOMEM, "search-solver: out of memory");
    memcpy(c->in_shape, hs->shape, sizeof c->in_shape);
    int64_t os[4] = {c->rows, c->OC, hs->shape[2], hs->shape[3]};
    memcpy(c->out_shape, os, sizeof os);
    c->tin = dt_tensor_view(c->model_in, DT_F32, 4, c->in_shape);
    c->tout = dt_tensor_view(c->model_out, DT_F32, 4, c->out_shape);
    c->in = *in;
    c->in.hidden_states = &c->tin;
    c->in.timestep = c->tsteps;
    return DT_OK;
}

/* The folder's own solver at ref_steps from x (in place), for sample k. */
static dt_status reference(ss_ctx *c, int k, float *x, size_t n, float *tmp, float *out, dt_err *err)
{
    dt_scheduler *s;
    DT_TRY(dt_scheduler_load(c->sched_dir, &s, err));
    dt_status st = dt_scheduler_set_timesteps(s, c->a->ref_steps, err);
    for (int i = 0; st == DT_OK && i < dt_scheduler_num_steps(s); i++) {
        memcpy(tmp, x, n * sizeof(float));
        dt_scheduler_scale_model_input(s, tmp, n);
        st = denoise(c, k, tmp, dt_scheduler_timesteps(s)[i], out, err);
        if (st == DT_OK) st = dt_scheduler_step(s, out, x, x, n, err);
    }
    dt_scheduler_free(s);
    return st;
}

static dt_status run_search(ss_ctx *c, dt_err *err)
{
    const ss_args *a = c->a;
    size_t n = (size_t)c->C * c->plane;
    int S = a->samples * c->nprompts; /* sample k: prompt k / samples, seed seed + k */
    float **xt = calloc((size_t)S, sizeof *xt), **ref = calloc((size_t)S, sizeof *ref);
    float *tmp = malloc(n * sizeof(float)), *out = malloc(n * sizeof(float));
    dt_status st = xt && ref && tmp && out ? DT_OK : dt_fail(err, DT_ENOMEM, "search-solver: out of memory");
    for (int k = 0; st == DT_OK && k < S; k++) {
        xt[k] = malloc(n * sizeof(float));
        ref[k] = malloc(n * sizeof(float));
        if (!xt[k] || !ref[k]) { st = dt_fail(err, DT_ENOMEM, "search-solver: out of memory"); break; }
        dt_rng g; /* the latents txt2img --seed would start from */
        dt_rng_init(&g, a->seed + (unsigned long long)k, DT_RNG_VECTOR);
        dt_rng_randn(&g, xt[k], n);
        memcpy(ref[k], xt[k], n * sizeof(float));
        if (!a->quiet) fprintf(stderr, "search-solver: reference %d/%d (%d steps)\n", k + 1, S, a->ref_steps);
        st = reference(c, k, ref[k], n, tmp, out, err);
    }
    dt_usf_search_opts o = {.scheduler_dir = c->sched_dir, .nfe = a->nfe, .population = a->population,
                            .generations = a->generations, .max_order = a->max_order, .seed = a->seed};
    if (st == DT_OK && !a->quiet)
        fprintf(stderr, "search-solver: NFE %d, population %d, %d generations\n", a->nfe, a->population, a->generations);
    if (st == DT_OK)
        st = dt_usf_search(&o, denoise, c, S, (const float *const *)xt, (const float *const *)ref, n, a->out, &c->res, err);
    for (int k = 0; k < S && xt && ref; k++) { free(xt[k]); free(ref[k]); }
    free(xt); free(ref); free(tmp); free(out);
    return st;
}

static dt_status hook(void *user, int step, dt_denoiser *tr, const dt_denoiser_inputs *inputs, dt_arena *arena, dt_err *err)
{
    ss_ctx *c = user;
    if (step != 0 || c->done || c->captured >= c->nprompts) return DT_OK;
    DT_TRY(capture(&c->text[c->captured], inputs, err));
    if (++c->captured == c->nprompts) {
        DT_TRY(bind(c, tr, inputs, arena, err));
        DT_TRY(run_search(c, err));
        c->done = 1;
    }
    return dt_fail(err, DITRT_ECANCELLED, "text captured"); /* stops the generation */
}

int cli_search_solver(int argc, char **argv)
{
    ss_args a;
    if (!parse(argc, argv, &a)) return 2;
    dt_err err = {0};
    dt_pipeline_config cfg = {.model_dir = a.model, .threads = a.threads};
    if (!dt_dtype_parse(a.dtype, &cfg.dtype) || (cfg.dtype != DT_F32 && cfg.dtype != DT_BF16))
        return cli_usage_error("--dtype: expected f32 or bf16, got \"%s\"", a.dtype);
    cfg.text_dtype = cfg.dtype;
    cli_list prompts = {0};
    if (a.prompts_file && cli_read_prompts(a.prompts_file, &prompts, &err) != DT_OK) return cli_die(&err);
    ss_ctx c = {.a = &a, .nprompts = a.prompts_file ? prompts.n : 1};
    c.text = calloc((size_t)c.nprompts, sizeof *c.text);
    dt_pipeline *p = NULL;
    dt_status s = c.text ? DT_OK : dt_fail(&err, DT_ENOMEM, "out of memory");
    if (s == DT_OK) s = dt_model_component_dir(a.model, "scheduler", c.sched_dir, sizeof c.sched_dir, &err);
    if (s == DT_OK) s = dt_pipeline_load(&cfg, &p, &err);
    for (int i = 0; s == DT_OK && i < c.nprompts; i++) {
        dt_gen_request r = dt_gen_request_default();
        r.prompt = a.prompts_file ? prompts.items[i] : a.prompt;
        r.negative_prompt = a.negative;
        r.width = a.width;
        r.height = a.height;
        r.cfg = a.cfg;
        r.seed = a.seed;
        r.steps = 1;
        r.step_hook = hook;
        r.step_hook_user = &c;
        dt_gen_result res;
        if (!a.quiet && c.nprompts > 1) fprintf(stderr, "search-solver: prompt %d/%d: %s\n", i + 1, c.nprompts, r.prompt);
        s = dt_pipeline_check(p, &r, &err);
        if (s == DT_OK) s = dt_pipeline_generate(p, &r, &res, &err);
        if (s == DT_OK) { free(res.pixels); s = dt_fail(&err, DT_EINVAL, "search-solver: the generation never reached its first step"); }
        else if (c.captured == i + 1 && (c.done || i + 1 < c.nprompts)) { /* the hook stopped it, as intended */
            s = DT_OK;
            err = (dt_err){0};
        }
    }
    dt_pipeline_free(p);
    free(c.model_in); free(c.model_out); free(c.tsteps);
    free_texts(&c);
    cli_list_free(&prompts);
    if (s != DT_OK || !c.done) return cli_die(&err);
    printf("search-solver: wrote %s: score %.6g (DDIM on the same steps %.6g) over %d prompts x %d seeds, %d candidates, "
           "%ld model calls, %ld cache hits\n", a.out, c.res.best_score, c.res.ddim_score, c.nprompts, a.samples,
           c.res.candidates, c.res.model_calls, c.res.cache_hits);
    return 0;
}
