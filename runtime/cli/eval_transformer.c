/* `ditrt eval transformer`: one denoiser forward on tensors named as in the diffusers call
 * (any denoiser class: hidden_states [B,C,H,W] for image models, [B,C,F,H,W] for video ones;
 * a U-Net's sample, encoder_hidden_states, timestep and, for SDXL, text_embeds and time_ids). */
#include "cli.h"
#include "runtime/core/arena.h"
#include "runtime/models/denoiser.h"
#include "runtime/models/modeldir.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The denoiser's folder: the pipeline's "transformer", or its "unet" (Stable Diffusion
 * pipelines), or the folder itself. */
static dt_status denoiser_dir(const char *model, char *dir, size_t n, dt_err *err)
{
    dt_err unet_err = {0};
    dt_status s = dt_model_component_dir(model, "transformer", dir, n, err);
    if (s != DT_OK && dt_model_component_dir(model, "unet", dir, n, &unet_err) == DT_OK) {
        dt_err_clear(err);
        return DT_OK;
    }
    return s;
}

static int eval_transformer(const cli_eval_args *a)
{
    dt_err err = {0};
    char dir[4096];
    dt_denoiser_info info;
    dt_backend *be = NULL;
    dt_denoiser *m = NULL;
    dt_denoiser_input_file x = {0};
    dt_arena arena;
    dt_arena_init(&arena);
    float *outbuf = NULL;
    /* the inputs are checked against the config before any weight is read */
    dt_status s = denoiser_dir(a->model, dir, sizeof dir, &err);
    if (s == DT_OK) s = dt_denoiser_describe(dir, &info, NULL, NULL, 0, &err);
    if (s == DT_OK) s = dt_denoiser_inputs_load(a->in, &info, &x, &err);
    if (s == DT_OK) s = cli_backend(a->dtype, a->threads, &be, &err);
    if (s == DT_OK) s = dt_denoiser_load(be, dir, NULL, NULL, &m, &err);
    dt_tensor out;
    if (s == DT_OK) {
        int64_t shape[5];
        for (int d = 0; d < x.ths.ndim; d++) shape[d] = x.ths.shape[d];
        shape[1] = info.out_channels;
        out = dt_tensor_view(NULL, DT_F32, x.ths.ndim, shape);
        out.data = outbuf = malloc(dt_tensor_nbytes(&out));
        if (!outbuf) s = dt_fail(&err, DT_ENOMEM, "out of memory");
    }
    if (s == DT_OK) s = dt_denoiser_forward(m, &x.in, &arena, &out, &err);
    if (s == DT_OK) {
        dt_st_item item = {"sample", &out};
        s = dt_st_write(a->out, &item, 1, &err);
    }
    free(outbuf);
    dt_denoiser_inputs_free(&x);
    dt_arena_free(&arena);
    dt_denoiser_free(m);
    dt_backend_destroy(be);
    return s == DT_OK ? 0 : cli_die(&err);
}

int cli_eval_transformer(int argc, char **argv)
{
    cli_eval_args a;
    if (!cli_eval_parse(argc, argv, 0, &a)) return 2;
    return eval_transformer(&a);
}
