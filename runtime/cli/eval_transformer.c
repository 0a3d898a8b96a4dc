/* `ditrt eval transformer`: one denoiser forward on tensors named as in the diffusers call. */
#include "cli.h"
#include "runtime/core/arena.h"
#include "runtime/models/modeldir.h"
#include "runtime/models/pixart.h"
#include "runtime/models/latte.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static int eval_transformer(const cli_eval_args *a)
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
    cli_eval_args a;
    if (!cli_eval_parse(argc, argv, 0, &a)) return 2;
    return eval_transformer(&a);
}
