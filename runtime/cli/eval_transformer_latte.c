/* `ditrt eval transformer` for a Latte folder (dispatched from eval_transformer.c on
 * config.json's _class_name): hidden_states [B,C,F,H,W] in, sample [B,out,F,H,W] out. */
#include "cli.h"
#include "runtime/core/arena.h"
#include "runtime/models/latte.h"
#include <stdlib.h>

int cli_eval_transformer_latte(const char *dir, const char *in, const char *outp, const char *dtype, int threads)
{
    dt_err err = {0};
    latte_config cfg;
    dt_backend *be = NULL;
    latte_model *m = NULL;
    latte_input_file x = {0};
    dt_arena arena;
    dt_arena_init(&arena);
    float *outbuf = NULL;
    dt_tensor out;
    dt_status s = latte_config_load(dir, &cfg, &err);
    if (s == DT_OK) s = latte_inputs_load(in, &cfg, &x, &err);
    if (s == DT_OK) s = cli_backend(dtype, threads, &be, &err);
    if (s == DT_OK) s = latte_load(be, dir, &m, &err);
    if (s == DT_OK) {
        int64_t shape[5] = {x.ths.shape[0], cfg.out_channels, x.ths.shape[2], x.ths.shape[3], x.ths.shape[4]};
        out = dt_tensor_view(NULL, DT_F32, 5, shape);
        out.data = outbuf = malloc(dt_tensor_nbytes(&out));
        if (!outbuf) s = dt_fail(&err, DT_ENOMEM, "out of memory");
    }
    if (s == DT_OK) s = latte_forward(m, &x.in, &arena, &out, &err);
    if (s == DT_OK) {
        dt_st_item item = {"sample", &out};
        s = dt_st_write(outp, &item, 1, &err);
    }
    free(outbuf);
    latte_inputs_free(&x);
    dt_arena_free(&arena);
    latte_free(m);
    dt_backend_destroy(be);
    return s == DT_OK ? 0 : cli_die(&err);
}
