/* bf16 parity on trained weights: the demo pipelines' U-Nets (assets/demo-sd, assets/demo-sd-lcm)
 * and the demo VAE decoder on the inputs diffusers' own sampling runs gave them
 * (tests/fixtures/demo-sd-unet, scripts/fixtures/demo_sd_unet.py), against diffusers f32:
 * f32 to 1e-4 and bf16 to issue 22's 2e-2. The tiny random fixtures of test_unet.c cannot show
 * the latter (diffusers' own bf16 is up to 9.3e-2 off there); these show what a user's bf16
 * sampling step costs. Each case also prints diffusers' bf16 error on the same input. End to end:
 * txt2img of both demo pipelines (U-Net and VAE in the tested dtype, CLIP in f32) against
 * diffusers' f32 image, 8-bit PSNR. */
#include "testutil.h"
#include "runtime/models/vae.h"
#include "runtime/io/image.h"
#include "runtime/core/safetensors.h"
#include "runtime/pipeline/pipeline.h"

#define FIX "tests/fixtures/demo-sd-unet"

static const struct { const char *model, *cse; } unet_cases[] = {
    {"assets/demo-sd/unet", "cfg_early"}, /* 20-step DPM-Solver++ CFG run, step 2 (t 899) */
    {"assets/demo-sd/unet", "cfg_mid"},   /* step 10 (t 500) */
    {"assets/demo-sd/unet", "cfg_late"},  /* step 17 (t 150) */
    {"assets/demo-sd-lcm/unet", "lcm_mid"}, /* 4-step LCM, two prompts, step 2 (t 499) */
};

#define CFG_SCALE 4.5f /* the guidance of the cfg_* runs */

/* The guided noise uncond + s (cond - uncond) of a CFG batch [2, ...] of n elements: the error
 * that reaches the solver, which CFG amplifies. */
static float *guided(const float *x, size_t n)
{
    size_t h = n / 2;
    float *g = tu_alloc(h);
    for (size_t i = 0; i < h; i++) g[i] = x[i] + CFG_SCALE * (x[h + i] - x[i]);
    return g;
}

static void unet_parity(dt_dtype cd, double tol, double guided_tol)
{
    dt_backend *be = tu_backend(cd);
    for (size_t i = 0; i < sizeof unet_cases / sizeof *unet_cases; i++) {
        dt_denoiser *d = NULL;
        dt_err err = {0};
        if (dt_denoiser_load(be, unet_cases[i].model, NULL, NULL, &d, &err) != DT_OK) fail_msg("%s", err.msg);
        char in[256], out[256], label[128];
        snprintf(in, sizeof in, FIX "/case_%s.in.safetensors", unet_cases[i].cse);
        snprintf(out, sizeof out, FIX "/case_%s.out.safetensors", unet_cases[i].cse);
        size_t n;
        float *o = tu_denoise_file(d, in, &n), *ref = tu_read_f32(out, "sample", n, NULL, NULL),
              *ref16 = tu_read_f32(out, "sample_bf16", n, NULL, NULL);
        snprintf(label, sizeof label, "%-9s %s vs diffusers f32 (diffusers bf16: %.2e)", unet_cases[i].cse, dt_dtype_name(cd),
                 tu_rel_l2(ref16, ref, n));
        double e = tu_check_rel_l2(label, o, ref, n, tol);
        /* bf16 did round: a bf16 run that silently computed in f32 lands near 1e-6 */
        if (cd == DT_BF16 && !(e > 1e-4)) fail_msg("%s bf16: relative L2 %.3g, as close as f32", unet_cases[i].cse, e);
        if (strncmp(unet_cases[i].cse, "cfg", 3) == 0) {
            float *g = guided(o, n), *gr = guided(ref, n), *g16 = guided(ref16, n);
            snprintf(label, sizeof label, "%-9s %s guided (cfg %.1f; diffusers bf16: %.2e)", unet_cases[i].cse, dt_dtype_name(cd),
                     CFG_SCALE, tu_rel_l2(g16, gr, n / 2));
            tu_check_rel_l2(label, g, gr, n / 2, guided_tol);
            free(g); free(gr); free(g16);
        }
        free(o); free(ref); free(ref16);
        dt_denoiser_free(d);
    }
    dt_backend_destroy(be);
}

static void test_unet_f32(void **state) { (void)state; unet_parity(DT_F32, 1e-4, 1e-4); }
/* The U-Net output to issue 22's 2e-2 (measured, emulated bf16 on AVX2: 1.9e-3 .. 4.2e-3; diffusers'
 * bf16 4.9e-3 .. 9.7e-3). The guided noise: cfg 4.5 scales the cond - uncond difference, and
 * with it the error, 4-5x (emulated: 8.4e-3 .. 1.9e-2; diffusers' bf16 2.1e-2 .. 3.8e-2), so its
 * bound is 6e-2, 1.5x diffusers' own worst. */
static void test_unet_bf16(void **state) { (void)state; TU_REQUIRE_BF16(); unet_parity(DT_BF16, 2e-2, 6e-2); }

/* The demo VAE's decoder on the CFG run's final latents (two prompts) / scaling_factor. */
static void vae_parity(dt_dtype cd, double tol)
{
    dt_backend *be = tu_backend(cd);
    vae_model *m;
    dt_err err = {0};
    if (vae_load(be, "assets/demo-sd/vae", &m, &err) != DT_OK) fail_msg("%s", err.msg);
    dt_tensor lat, ref;
    float *l = tu_read_f32(FIX "/case_vae_decode.in.safetensors", "latent", 0, NULL, &lat),
          *r = tu_read_f32(FIX "/case_vae_decode.out.safetensors", "sample", 0, NULL, &ref);
    size_t n = (size_t)dt_tensor_numel(&ref);
    float *r16 = tu_read_f32(FIX "/case_vae_decode.out.safetensors", "sample_bf16", n, NULL, NULL);
    int f = vae_upscale(m);
    dt_tensor out = dt_tensor_view(NULL, DT_F32, 4, (int64_t[]){lat.shape[0], 3, f * lat.shape[2], f * lat.shape[3]});
    assert_int_equal(dt_tensor_numel(&out), (int64_t)n);
    out.data = tu_poisoned(n);
    dt_arena a;
    dt_arena_init(&a);
    if (vae_decode(m, &lat, &a, &out, &err) != DT_OK) fail_msg("vae_decode: %s", err.msg);
    char label[128];
    snprintf(label, sizeof label, "vae_decode %s vs diffusers f32 (diffusers bf16: %.2e)", dt_dtype_name(cd), tu_rel_l2(r16, r, n));
    tu_check_rel_l2(label, out.data, r, n, tol);
    /* as 8-bit pixels: PSNR of the image a user gets */
    double se = 0;
    for (size_t i = 0; i < n; i++) {
        double p = round(fmin(fmax((((float *)out.data)[i] + 1) * 127.5, 0), 255)), q = round(fmin(fmax((r[i] + 1) * 127.5, 0), 255));
        se += (p - q) * (p - q);
    }
    double psnr = se > 0 ? 10 * log10(255.0 * 255.0 * (double)n / se) : INFINITY;
    printf("  vae_decode %s: 8-bit PSNR vs diffusers f32 %.1f dB\n", dt_dtype_name(cd), psnr);
    assert_true(psnr >= 40);
    dt_arena_free(&a);
    free(out.data); free(l); free(r); free(r16);
    vae_free(m);
    dt_backend_destroy(be);
}

static void test_vae_f32(void **state) { (void)state; vae_parity(DT_F32, 1e-4); }
static void test_vae_bf16(void **state) { (void)state; TU_REQUIRE_BF16(); vae_parity(DT_BF16, 2e-2); }

/* The demo pipelines end to end, prompt, seed and settings as scripts/fixtures/demo_sd_unet.py
 * ran them (pipe_psnr: the 8-bit PSNR of ditrt's image vs the fixture's `key` image). 40 dB in
 * bf16 as in f32: measured 55.7 / 56.6 dB emulated (diffusers' bf16 pipelines: 50.3 / 47.5). */
static const struct { const char *dir, *cse; int steps; float cfg; } pipes[] = {
    {"assets/demo-sd", "pipe_sd", 20, 4.5f}, {"assets/demo-sd-lcm", "pipe_lcm", 4, 1.0f}};

static double pipe_psnr(size_t i, dt_dtype cd, const char *key)
{
    dt_err err = {0};
    dt_pipeline_config pc = {.model_dir = pipes[i].dir, .dtype = cd, .text_dtype = DT_F32, .threads = 2};
    dt_pipeline *p;
    if (dt_pipeline_load(&pc, &p, &err) != DT_OK) fail_msg("%s: %s", pipes[i].dir, err.msg);
    dt_gen_request r = dt_gen_request_default();
    r.prompt = "a red circle on the left on a black background";
    r.negative_prompt = pipes[i].cfg > 1 ? "" : NULL;
    r.seed = 0;
    r.width = r.height = 32;
    r.steps = pipes[i].steps;
    r.cfg = pipes[i].cfg;
    dt_gen_result res;
    if (dt_pipeline_generate(p, &r, &res, &err) != DT_OK) fail_msg("%s: %s", pipes[i].dir, err.msg);
    char path[256];
    snprintf(path, sizeof path, FIX "/case_%s.safetensors", pipes[i].cse);
    dt_safetensors *st;
    if (dt_st_open(path, &st, &err) != DT_OK) fail_msg("%s", err.msg);
    const dt_st_entry *u8 = dt_st_find(st, key);
    assert_non_null(u8);
    assert_int_equal(u8->nbytes, 32 * 32 * 3);
    uint8_t mine[32 * 32 * 3];
    dt_image_from_float(res.pixels, 32, 32, mine);
    double psnr = dt_image_psnr(mine, (const uint8_t *)u8->data, 32, 32);
    free(res.pixels);
    dt_st_close(st);
    dt_pipeline_free(p);
    return psnr;
}

static void pipes_parity(dt_dtype cd, double min_psnr)
{
    for (size_t i = 0; i < sizeof pipes / sizeof *pipes; i++) {
        double psnr = pipe_psnr(i, cd, "image_u8");
        printf("  %-18s %2d steps %s: 8-bit PSNR vs diffusers f32 %.1f dB (limit %.0f)\n", pipes[i].dir, pipes[i].steps,
               dt_dtype_name(cd), psnr, min_psnr);
        if (!(psnr >= min_psnr)) fail_msg("%s %s: PSNR %.1f dB below %.0f", pipes[i].dir, dt_dtype_name(cd), psnr, min_psnr);
    }
}

static void test_pipes_f32(void **state) { (void)state; pipes_parity(DT_F32, 40); }
static void test_pipes_bf16(void **state) { (void)state; TU_REQUIRE_BF16(); pipes_parity(DT_BF16, 40); }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unet_f32),
        cmocka_unit_test(test_unet_bf16),
        cmocka_unit_test(test_vae_f32),
        cmocka_unit_test(test_vae_bf16),
        cmocka_unit_test(test_pipes_f32),
        cmocka_unit_test(test_pipes_bf16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
