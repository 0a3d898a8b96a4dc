/* `ditrt eval transformer`: one denoiser forward on tensors named as in the diffusers call. */
#include "cli.h"
#include "arena.h"
#include "modeldir.h"
#include "models/pixart.h"
#include "models/latte.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *model, *in, *out, *dtype;
    int threads;
} eval_args;

static int parse(int argc, char **argv, eval_args *a)
{
    *a = (eval_args){.dtype = "f32"};
    for (int i = 2; i < argc; i++) {
        int miss = 0;
        const char *v;
        if ((v = cli_flag(argc, argv, &i, "-m", &miss)) || (v = cli_flag(argc, argv, &i, "--model", &miss))) a->model = v;
        else if ((v = cli_flag(argc, argv, &i, "--in", &miss))) a->in = v;
        else if ((v = cli_flag(argc, argv, &i, "--out", &miss))) a->out = v;
        else if ((v = cli_flag(argc, argv, &i, "--dtype", &miss))) a->dtype = v;
        else if ((v = cli_flag(argc, argv, &i, "--threads", &miss))) { if (!cli_parse_int("--threads", v, 1, 1024, &a->threads)) return 0; }
        else if (miss) return cli_usage_error("%s: missing value", argv[i]), 0;
        else return cli_usage_error("eval transformer: unknown option \"%s\"", argv[i]), 0;
    }
    if (!a->model || !a->in || !a->out)
        return cli_usage_error("eval transformer: -m MODEL_DIR, --in FILE and --out FILE are required"), 0;
    return 1;
}

static int eval_transformer(const eval_args *a)
{
    dt_err err = {0};
    char dir[4096];
    pixart_config cfg;
    dt_backend *be = NULL;
    pixart_model *m = NULL;
    pixart_input_file x = {0};
    dt_arena arena;
    dt_arena_init(&arena);
    float *outbuf = NULL;
    dt_status s = dt_model_component_dir(a->model, "transformer", dir, sizeof dir, &err);
    if (s == DT_OK && latte_is_model_dir(dir)) return cli_eval_transformer_latte(dir, a->in, a->out, a->dtype, a->threads);
    if (s == DT_OK) s = pixart_config_load(dir, &cfg, &err);
    if (s == DT_OK) s = pixart_inputs_load(a->in, &cfg, &x, &err);
    if (s == DT_OK) s = cli_backend(a->dtype, a->threads, &be, &err);
    if (s == DT_OK) s = pixart_load(be, dir, &m, &err);
    dt_tensor out;
    if (s == DT_OK) {
        int64_t shape[4] = {x.ths.shape[0], cfg.out_channels, x.ths.shape[2], x.ths.shape[3]};
        out = dt_tensor_view(NULL, DT_F32, 4, shape);
        out.data = outbuf = malloc(dt_tensor_nbytes(&out));
        if (!outbuf) s = dt_fail(&err, DT_ENOMEM, "out of memory");
    }
    if (s == DT_OK) {
        s = pixart_forward(m, &x.in, &arena, &out, &err);
    }
    if (s == DT_OK) {
        dt_st_item item = {"sample", &out};
        s = dt_st_write(a->out, &item, 1, &err);
    }
    free(outbuf);
    pixart_inputs_free(&x);
    dt_arena_free(&arena);
    pixart_free(m);
    dt_backend_destroy(be);
    return s == DT_OK ? 0 : cli_die(&err);
}

int cli_eval_transformer(int argc, char **argv)
{
    eval_args a;
    if (!parse(argc, argv, &a)) return 2;
    return eval_transformer(&a);
}
