/* `ditrt search-solver -m MODEL --nfe K --prompts FILE --out schedule.json`: evolutionary
 * search of a USF solver schedule for one model at a fixed NFE (ditrt_search_solver in
 * include/ditrt.h), scored on the final latents of --samples seeds per calibration prompt
 * against the folder's own solver at --ref-steps; the score is averaged over every (prompt,
 * seed). Writes the schedule for `txt2img --solver-schedule`. `-p PROMPT` (one prompt) and
 * `-o` remain aliases. A client of the public API only. */
#include "client.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *model, *prompt, *prompts_file, *negative, *out, *dtype;
    int width, height, nfe, population, generations, max_order, samples, ref_steps, threads, quiet;
    float cfg;
    uint64_t seed;
} ss_args;

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
        else return cli_unknown_option("search-solver", argv[i]), 0;
#undef F
        if (!ok) return 0;
    }
    if (!a->model) return cli_usage_error("search-solver: -m MODEL_DIR is required"), 0;
    ditrt_error merr = {0};
    if (cli_check_pipeline_dir(a->model, &merr) != DITRT_OK) return cli_die(&merr), 0;
    if (!a->prompt && !a->prompts_file) return cli_usage_error("search-solver: --prompts FILE (one prompt a line) is required"), 0;
    if (a->prompt && a->prompts_file) return cli_usage_error("search-solver: --prompts and -p are exclusive (-p is one prompt)"), 0;
    return 1;
}

int cli_search_solver(int argc, char **argv)
{
    ss_args a;
    if (!parse(argc, argv, &a)) return 2;
    ditrt_error err = {0};
    const char *dtype = cli_dtype_arg(a.dtype);
    if (!dtype) return cli_usage_error("--dtype: expected " CLI_DTYPES ", got \"%s\"", a.dtype);
    cli_list prompts = {0};
    if (a.prompts_file && cli_read_prompts(a.prompts_file, &prompts, &err) != DITRT_OK) return cli_die(&err);
    ditrt_search_solver_params p;
    ditrt_search_solver_params_init(&p);
    p.model_dir = a.model;
    p.dtype = dtype;
    p.threads = a.threads;
    p.prompts = a.prompts_file ? (const char *const *)prompts.items : &a.prompt;
    p.nprompts = a.prompts_file ? prompts.n : 1;
    p.negative_prompt = a.negative;
    p.width = a.width;
    p.height = a.height;
    p.cfg = a.cfg;
    p.seed = a.seed;
    p.nfe = a.nfe;
    p.population = a.population;
    p.generations = a.generations;
    p.max_order = a.max_order;
    p.samples = a.samples;
    p.ref_steps = a.ref_steps;
    p.out_path = a.out;
    p.log = a.quiet ? NULL : cli_log_stderr;
    p.log_user = "search-solver";
    ditrt_search_solver_result r;
    ditrt_search_solver_result_init(&r);
    ditrt_status s = ditrt_search_solver(&p, &r, &err);
    cli_list_free(&prompts);
    if (s != DITRT_OK) return cli_die(&err);
    printf("search-solver: wrote %s: score %.6g (DDIM on the same steps %.6g) over %d prompts x %d seeds, %d candidates, "
           "%ld model calls, %ld cache hits\n", a.out, r.score, r.ddim_score, r.prompts, r.samples, r.candidates,
           (long)r.model_calls, (long)r.cache_hits);
    return 0;
}
