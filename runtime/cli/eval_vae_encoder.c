/* `ditrt eval vae-encoder`: vae.encode(image).latent_dist.parameters (quant_conv output, mean |
 * logvar) on an image file, as diffusers computes it. */
#include "cli.h"
#include "runtime/core/arena.h"
#include "runtime/models/modeldir.h"
#include "runtime/models/vae.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* Reads tensor "image" [B, in_channels, H, W] (H, W >= s) into a malloc'd buffer. */
static dt_status read_image(const char *file, const vae_config *c, dt_tensor *t, float **buf, dt_err *err)
{
    dt_safetensors *st;
    DT_TRY(dt_st_open(file, &st, err));
    int64_t shape[4] = {-1, c->in_channels, -1, -1}, s = (int64_t)1 << (c->nblocks - 1);
    dt_status r = dt_st_read_input(st, file, "image", 4, shape, 0, t, buf, err);
    dt_st_close(st);
    if (r == DT_OK && (t->shape[0] <= 0 || t->shape[2] < s || t->shape[3] < s))
        r = dt_fail(err, DT_EFORMAT, "%s: input tensor \"image\" is smaller than %lldx%lld", file, (long long)s, (long long)s);
    if (r != DT_OK) { free(*buf); *buf = NULL; }
    return r;
}

static int eval_encoder(const cli_eval_args *a)
{
    dt_err err = {0};
    char dir[4096];
    vae_config cfg;
    dt_backend *be = NULL;
    vae_model *m = NULL;
    float *img = NULL, *mom = NULL;
    dt_tensor image, out;
    dt_arena arena;
    dt_arena_init(&arena);
    dt_status s = dt_model_component_dir(a->model, "vae", dir, sizeof dir, &err);
    if (s == DT_OK) s = vae_config_load(dir, &cfg, &err);
    if (s == DT_OK) s = read_image(a->in, &cfg, &image, &img, &err);
    if (s == DT_OK) s = cli_backend(a->dtype, a->threads, &be, &err);
    if (s == DT_OK) s = vae_load_ex(be, dir, VAE_ENCODER_REQUIRED, &m, &err);
    if (s == DT_OK) {
        int64_t f = vae_upscale(m), shape[4] = {image.shape[0], 2 * cfg.latent_channels, image.shape[2] / f, image.shape[3] / f};
        out = dt_tensor_view(NULL, DT_F32, 4, shape);
        out.data = mom = malloc(dt_tensor_nbytes(&out));
        if (!mom) s = dt_fail(&err, DT_ENOMEM, "out of memory for the moments");
    }
    if (s == DT_OK) s = vae_encode(m, &image, &arena, &out, &err);
    if (s == DT_OK) {
        dt_st_item item = {"moments", &out};
        s = dt_st_write(a->out, &item, 1, &err);
    }
    free(mom);
    free(img);
    dt_arena_free(&arena);
    vae_free(m);
    dt_backend_destroy(be);
    return s == DT_OK ? 0 : cli_die(&err);
}

int cli_eval_vae_encoder(int argc, char **argv)
{
    cli_eval_args a;
    if (!cli_eval_parse(argc, argv, 0, &a)) return 2;
    return eval_encoder(&a);
}
