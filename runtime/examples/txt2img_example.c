/* Embedding ditrt: generate one image through the public C API and save it as a binary
 * PPM (no image library needed by the embedding app).
 *
 *     build/examples/txt2img_example MODEL_DIR "a prompt" out.ppm [f32|bf16] [SEED]
 *
 * After `make demo` (which builds it), on the demo model:
 *
 *     build/examples/txt2img_example assets/demo-pixart "a red circle on the left on a black background" out/example.ppm
 *
 * It keeps the library's defaults, the pipeline's own (PixArt: 20 steps, cfg 4.5, seed 0, the
 * model's native size): the same image as `ditrt txt2img -m MODEL_DIR -p PROMPT` with the same
 * dtype. The optional fourth argument sets the transformer, VAE and text-encoder dtype (default:
 * the library's, bf16 where the CPU has native bf16, f32 elsewhere); the fifth the seed. Built
 * from an install:
 *
 *     cc txt2img_example.c $(pkg-config --cflags --libs ditrt)            # shared
 */
#include <ditrt.h>
#include <stdio.h>
#include <stdlib.h>

static int on_step(int step, int steps, double seconds, void *user)
{
    (void)user;
    fprintf(stderr, "step %d/%d (%.2f s)\n", step, steps, seconds);
    return 0; /* non-zero would cancel */
}

/* Writes the first image as a binary PPM; 0 on success. */
static int write_ppm(const char *path, const ditrt_image *im)
{
    size_t px = (size_t)im->width * (size_t)im->height;
    FILE *f = fopen(path, "wb");
    int ok = f && fprintf(f, "P6\n%d %d\n255\n", im->width, im->height) > 0 && fwrite(im->rgb, 3, px, f) == px;
    if (f) ok = (fclose(f) == 0) && ok;
    if (!ok) fprintf(stderr, "cannot write %s\n", path);
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc < 4 || argc > 6) {
        fprintf(stderr, "usage: %s MODEL_DIR PROMPT OUT.ppm [f32|bf16] [SEED]\n", argv[0]);
        return 2;
    }
    fprintf(stderr, "ditrt %s (header %s)\n", ditrt_version(), DITRT_VERSION);
    ditrt_ctx_params cp;
    ditrt_ctx_params_init(&cp); /* always first: sets struct_size and the defaults */
    cp.model_dir = argv[1];
    if (argc >= 5) cp.dtype = cp.text_dtype = argv[4];
    ditrt_ctx *ctx = NULL;
    if (ditrt_ctx_create(&cp, &ctx) != DITRT_OK) {
        fprintf(stderr, "load failed: %s\n", ditrt_errmsg(ctx));
        ditrt_ctx_free(ctx);
        return 1;
    }
    /* A video model (LattePipeline) wants ditrt_gen_params_init_video / ditrt_generate_video. */
    ditrt_ctx_info info = {.struct_size = sizeof info};
    if (ditrt_ctx_get_info(ctx, &info) != DITRT_OK || info.max_frames > 0) {
        fprintf(stderr, "%s: %s\n", argv[1], info.max_frames > 0 ? "a video model: this example makes images only (see `ditrt txt2vid`)"
                                                                  : ditrt_errmsg(ctx));
        ditrt_ctx_free(ctx);
        return 1;
    }
    ditrt_gen_params gp;
    ditrt_gen_params_init(&gp); /* the image pipelines' defaults: 20 steps, cfg 4.5, native size */
    gp.prompt = argv[2];
    if (argc == 6) gp.seed = strtoull(argv[5], NULL, 10);
    gp.progress = on_step;
    fprintf(stderr, "%dx%d, %d steps, cfg %g, seed %llu, %s\n", info.native_width, info.native_height, gp.steps,
            (double)gp.cfg, (unsigned long long)gp.seed, info.dtype);
    ditrt_image *images = NULL;
    int n = 0;
    if (ditrt_generate(ctx, &gp, &images, &n) != DITRT_OK) {
        fprintf(stderr, "generate failed: %s\n", ditrt_errmsg(ctx));
        ditrt_ctx_free(ctx);
        return 1;
    }
    int rc = write_ppm(argv[3], &images[0]);
    ditrt_images_free(images, n);
    ditrt_ctx_free(ctx);
    return rc;
}
