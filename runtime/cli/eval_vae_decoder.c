/* `ditrt eval vae-decoder`: vae.decode(latent).sample on a latent file, as diffusers computes it
 * (with --tiling: after vae.enable_tiling()). The output is float, before any 8-bit rounding. */
#include "cli.h"
#include "runtime/core/arena.h"
#include "runtime/models/modeldir.h"
#include "runtime/models/vae.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* Reads tensor "latent" [B, latent_channels, h, w] into a malloc'd buffer. */
static dt_status read_latent(const char *file, const vae_config *c, dt_tensor *t, float **buf, dt_err *err)
{
    dt_safetensors *st;
    DT_TRY(dt_st_open(file, &st, err));
    int64_t shape[4] = {-1, c->latent_channels, -1, -1};
    dt_status s = dt_st_read_input(st, file, "latent", 4, shape, 0, t, buf, err);
    dt_st_close(st);
    if (s == DT_OK && (t->shape[0] <= 0 || t->shape[2] <= 0 || t->shape[3] <= 0))
        s = dt_fail(err, DT_EFORMAT, "%s: input tensor \"latent\" is empty", file);
    if (s != DT_OK) { free(*buf); *buf = NULL; }
    return s;
}

static int eval_vae(const cli_eval_args *a)
{
    dt_err err = {0};
    char dir[4096];
    vae_config cfg;
    dt_backend *be = NULL;
    vae_model *m = NULL;
    float *lat = NULL, *img = NULL;
    dt_tensor latent, out;
    dt_arena arena;
    dt_arena_init(&arena);
    dt_status s = dt_model_component_dir(a->model, "vae", dir, sizeof dir, &err);
    if (s == DT_OK) s = vae_config_load(dir, &cfg, &err);
    if (s == DT_OK) s = read_latent(a->in, &cfg, &latent, &lat, &err);
    if (s == DT_OK) s = cli_backend(a->dtype, a->threads, &be, &err);
    if (s == DT_OK) s = vae_load(be, dir, &m, &err);
    if (s == DT_OK) {
        int64_t f = vae_upscale(m), shape[4] = {latent.shape[0], cfg.out_channels, f * latent.shape[2], f * latent.shape[3]};
        out = dt_tensor_view(NULL, DT_F32, 4, shape);
        out.data = img = malloc(dt_tensor_nbytes(&out));
        if (!img) s = dt_fail(&err, DT_ENOMEM, "out of memory for a %lldx%lld image", (long long)shape[2], (long long)shape[3]);
    }
    if (s == DT_OK) s = (a->tiling ? vae_decode_tiled : vae_decode)(m, &latent, &arena, &out, &err);
    if (s == DT_OK) {
        dt_st_item item = {"sample", &out};
        s = dt_st_write(a->out, &item, 1, &err);
    }
    free(img);
    free(lat);
    dt_arena_free(&arena);
    vae_free(m);
    dt_backend_destroy(be);
    return s == DT_OK ? 0 : cli_die(&err);
}

int cli_eval_vae_decoder(int argc, char **argv)
{
    cli_eval_args a;
    if (!cli_eval_parse(argc, argv, 1, &a)) return 2;
    return eval_vae(&a);
}
