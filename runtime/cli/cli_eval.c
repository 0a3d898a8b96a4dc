/* `ditrt eval transformer`: one denoiser forward on tensors named as in the diffusers call. */
#include "cli.h"
#include "arena.h"
#include "modeldir.h"
#include "models/pixart.h"
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

typedef struct {
    float *hs, *ehs, *t, *mask, *res, *ar;
    dt_tensor ths, tehs, tt, tmask, tres, tar;
} eval_inputs;

static void inputs_free(eval_inputs *x)
{
    free(x->hs); free(x->ehs); free(x->t); free(x->mask); free(x->res); free(x->ar);
}

static dt_status read_inputs(const char *file, const pixart_config *c, eval_inputs *x, dt_err *err)
{
    dt_safetensors *st;
    DT_TRY(dt_st_open(file, &st, err));
    int64_t hs_shape[4] = {-1, c->in_channels, -1, -1};
    dt_status s = cli_input_f32(st, file, "hidden_states", 4, hs_shape, 0, &x->ths, &x->hs, err);
    int64_t B = s == DT_OK ? x->ths.shape[0] : 0;
    int64_t ehs_shape[3] = {B, -1, c->caption_channels};
    if (s == DT_OK) s = cli_input_f32(st, file, "encoder_hidden_states", 3, ehs_shape, 0, &x->tehs, &x->ehs, err);
    int64_t T = s == DT_OK ? x->tehs.shape[1] : 0;
    int64_t tshape[1] = {B}, mshape[2] = {B, T}, rshape[2] = {B, 2}, ashape[2] = {B, 1};
    if (s == DT_OK) {
        /* a 0-d timestep is broadcast over the batch, as diffusers does */
        const dt_st_entry *e = dt_st_find(st, "timestep");
        if (e && e->ndim == 0) {
            float v;
            s = cli_input_f32(st, file, "timestep", 0, tshape, 0, &x->tt, &x->t, err);
            if (s == DT_OK) {
                v = x->t[0];
                free(x->t);
                x->t = malloc((size_t)B * sizeof(float));
                if (!x->t) s = dt_fail(err, DT_ENOMEM, "out of memory");
                for (int64_t i = 0; s == DT_OK && i < B; i++) x->t[i] = v;
            }
        } else s = cli_input_f32(st, file, "timestep", 1, tshape, 0, &x->tt, &x->t, err);
    }
    if (s == DT_OK) s = cli_input_f32(st, file, "encoder_attention_mask", 2, mshape, 1, &x->tmask, &x->mask, err);
    for (int64_t i = 0; s == DT_OK && x->mask && i < B * T; i++)
        if (x->mask[i] != 0.0f && x->mask[i] != 1.0f)
            s = dt_fail(err, DT_EFORMAT, "%s: input tensor \"encoder_attention_mask\" must hold only 0 and 1", file);
    int need = c->use_additional_conditions;
    if (s == DT_OK) s = cli_input_f32(st, file, "resolution", 2, rshape, !need, &x->tres, &x->res, err);
    if (s == DT_OK) s = cli_input_f32(st, file, "aspect_ratio", 2, ashape, !need, &x->tar, &x->ar, err);
    if (s == DT_OK && x->ths.shape[2] % c->patch_size + x->ths.shape[3] % c->patch_size)
        s = dt_fail(err, DT_EFORMAT, "%s: input tensor \"hidden_states\": height and width must be multiples of patch_size %d", file, c->patch_size);
    dt_st_close(st);
    return s;
}

static int eval_transformer(const eval_args *a)
{
    dt_err err = {0};
    char dir[4096];
    pixart_config cfg;
    dt_backend *be = NULL;
    pixart_model *m = NULL;
    eval_inputs x = {0};
    dt_arena arena;
    dt_arena_init(&arena);
    float *outbuf = NULL;
    dt_status s = dt_model_component_dir(a->model, "transformer", dir, sizeof dir, &err);
    if (s == DT_OK) s = pixart_config_load(dir, &cfg, &err);
    if (s == DT_OK) s = read_inputs(a->in, &cfg, &x, &err);
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
        pixart_inputs in = {.hidden_states = &x.ths, .encoder_hidden_states = &x.tehs, .timestep = x.t,
                            .encoder_attention_mask = x.mask, .resolution = x.res, .aspect_ratio = x.ar};
        s = pixart_forward(m, &in, &arena, &out, &err);
    }
    if (s == DT_OK) {
        dt_st_item item = {"sample", &out};
        s = dt_st_write(a->out, &item, 1, &err);
    }
    free(outbuf);
    inputs_free(&x);
    dt_arena_free(&arena);
    pixart_free(m);
    dt_backend_destroy(be);
    return s == DT_OK ? 0 : cli_die(&err);
}

int cli_eval(int argc, char **argv)
{
    if (argc < 2) return cli_usage_error("eval: expected a target: transformer");
    eval_args a;
    if (strcmp(argv[1], "transformer")) return cli_usage_error("eval: unknown target \"%s\" (expected transformer)", argv[1]);
    if (!parse(argc, argv, &a)) return 2;
    return eval_transformer(&a);
}
