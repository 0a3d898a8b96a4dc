/* Embedding ditrt: generate one image through the public C API and save it as a binary
 * PPM (no image library needed by the embedding app).
 *
 *     build/examples/txt2img_example MODEL_DIR "a prompt" out.ppm [f32|bf16]
 *
 * The optional last argument sets the transformer, VAE and text-encoder dtype (default: the
 * library's, bf16; f32 on machines without native bf16). Built from an install:
 *
 *     cc txt2img_example.c $(pkg-config --cflags --libs ditrt)            # shared
 */
#include <ditrt.h>
#include <stdio.h>

static int on_step(int step, int steps, double seconds, void *user)
{
    (void)user;
    fprintf(stderr, "step %d/%d (%.2f s)\n", step, steps, seconds);
    return 0; /* non-zero would cancel */
}

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: %s MODEL_DIR PROMPT OUT.ppm [f32|bf16]\n", argv[0]);
        return 2;
    }
    fprintf(stderr, "ditrt %s (header %s)\n", ditrt_version(), DITRT_VERSION);
    ditrt_ctx_params cp;
    ditrt_ctx_params_init(&cp); /* always first: sets struct_size and the defaults */
    cp.model_dir = argv[1];
    if (argc == 5) cp.dtype = cp.text_dtype = argv[4];
    ditrt_ctx *ctx = NULL;
    if (ditrt_ctx_create(&cp, &ctx) != DITRT_OK) {
        fprintf(stderr, "load failed: %s\n", ditrt_errmsg(ctx));
        ditrt_ctx_free(ctx);
        return 1;
    }
    ditrt_gen_params gp;
    ditrt_gen_params_init(&gp);
    gp.prompt = argv[2];
    gp.steps = 4;
    gp.progress = on_step;
    ditrt_image *images = NULL;
    int n = 0;
    if (ditrt_generate(ctx, &gp, &images, &n) != DITRT_OK) {
        fprintf(stderr, "generate failed: %s\n", ditrt_errmsg(ctx));
        ditrt_ctx_free(ctx);
        return 1;
    }
    FILE *f = fopen(argv[3], "wb");
    int ok = f && fprintf(f, "P6\n%d %d\n255\n", images[0].width, images[0].height) > 0 &&
             fwrite(images[0].rgb, 3, (size_t)images[0].width * images[0].height, f) == (size_t)images[0].width * images[0].height;
    if (f) ok = (fclose(f) == 0) && ok;
    if (!ok) fprintf(stderr, "cannot write %s\n", argv[3]);
    ditrt_images_free(images, n);
    ditrt_ctx_free(ctx);
    return ok ? 0 : 1;
}
