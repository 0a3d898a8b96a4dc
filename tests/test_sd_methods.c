/* The seed methods on the tiny Stable Diffusion pipeline (issue 22, item 4), through the CLI:
 * a USF solver schedule searched and sampled; an OMS-DPM zoo of U-Nets searched and sampled;
 * DiTFastAttn plans refused; MixDQ quantization of the U-Net (plan written, sampled, error vs
 * float bounded). */
#include "testutil.h"
#include "runtime/io/image.h"
#include <stdarg.h>
#include <unistd.h>

static char tmp[256], root[1024];

/* dir/name in a static buffer (one at a time). */
static const char *in_tmp(const char *name)
{
    static char p[600];
    snprintf(p, sizeof p, "%s/%s", tmp, name);
    return p;
}

static int setup(void **state)
{
    (void)state;
    tu_tmpdir(tmp, sizeof tmp);
    assert_non_null(getcwd(root, sizeof root));
    FILE *f = fopen(in_tmp("p.txt"), "w");
    assert_non_null(f);
    fputs("a red circle\na blue square\n", f);
    fclose(f);
    f = fopen(in_tmp("p1.txt"), "w");
    assert_non_null(f);
    fputs("a red circle\n", f);
    fclose(f);
    return 0;
}
static int teardown(void **state) { (void)state; tu_rmtree(tmp); return 0; }

#define SD "%s/tests/fixtures/sd-15-tiny"

/* Runs `ditrt <args>` in the temp folder; stdout and stderr into out. */
static int ditrt(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int ditrt(char *out, size_t n, const char *fmt, ...)
{
    char args[3000], cmd[5200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "cd '%s' && %s/ditrt %s --threads 1", tmp, root, args);
    return tu_run(tmp, cmd, 1, out, n);
}

static int contains(const char *name, const char *what)
{
    FILE *f = fopen(in_tmp(name), "rb");
    if (!f) return 0;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return strstr(buf, what) != NULL;
}

/* 8-bit PSNR of two images in the temp folder. */
static double psnr(const char *a, const char *b)
{
    dt_image x, y;
    dt_err e = {0};
    if (dt_image_read(in_tmp(a), &x, &e) != DT_OK) fail_msg("%s", e.msg);
    if (dt_image_read(in_tmp(b), &y, &e) != DT_OK) fail_msg("%s", e.msg);
    assert_int_equal(x.width, y.width);
    assert_int_equal(x.height, y.height);
    double se = 0;
    size_t n = (size_t)x.width * x.height * 3;
    for (size_t i = 0; i < n; i++) se += (double)(x.rgb[i] - y.rgb[i]) * (x.rgb[i] - y.rgb[i]);
    dt_image_free(&x);
    dt_image_free(&y);
    return se == 0 ? 200 : 10 * log10(255.0 * 255.0 * (double)n / se);
}

/* USF: search-solver on the U-Net pipeline writes a schedule txt2img samples with (the steps it
 * fixes recorded); the 3-NFE image is close to the 6-step DDIM reference's. */
static void test_usf(void **state)
{
    (void)state;
    char out[8192];
    int rc = ditrt(out, sizeof out, "search-solver -m " SD " --prompts p.txt --nfe 3 --population 4 --generations 2 "
                   "--samples 1 --ref-steps 6 --cfg 3 -q -o s.json", root);
    if (rc) fail_msg("search-solver: %s", out);
    assert_true(contains("s.json", "\"timesteps\""));
    rc = ditrt(out, sizeof out, "txt2img -m " SD " -p 'a red circle' --cfg 3 --solver-schedule s.json -q -o u.png", root);
    if (rc) fail_msg("txt2img: %s", out);
    rc = ditrt(out, sizeof out, "txt2img -m " SD " -p 'a red circle' --cfg 3 --solver ddim --steps 3 -q -o d.png", root);
    if (rc) fail_msg("txt2img: %s", out);
    /* a schedule is not the DDIM one it started from */
    assert_true(psnr("u.png", "d.png") < 200);
}

/* OMS-DPM: a zoo of two U-Nets (the pipeline's and its unet folder again, given a lower
 * latency), the schedule searched under a budget that forces member 1, then sampled; the same
 * weights give the same image as the plain pipeline. */
static void test_oms_zoo(void **state)
{
    (void)state;
    char out[8192];
    int rc = ditrt(out, sizeof out, "search-models -m " SD " --zoo " SD "/unet --prompts p.txt --out m.json "
                   "--budget-ratio 0.7 --latency 0.02,0.01 --steps 6 --cfg 3", root, root);
    if (rc) fail_msg("search-models: %s", out);
    assert_true(contains("m.json", "ditrt-model-schedule"));
    assert_true(contains("m.json", "1, 1"));
    rc = ditrt(out, sizeof out, "txt2img -m " SD " -p 'a red circle' --cfg 3 --steps 6 --zoo " SD "/unet "
               "--model-schedule m.json -q -o z.png", root, root);
    if (rc) fail_msg("txt2img --zoo: %s", out);
    rc = ditrt(out, sizeof out, "txt2img -m " SD " -p 'a red circle' --cfg 3 --steps 6 -q -o p.png", root);
    if (rc) fail_msg("txt2img: %s", out);
    assert_true(psnr("z.png", "p.png") >= 60);
}

/* DiTFastAttn plans are for DiTs: a U-Net refuses one by name. */
static void test_attn_plan_refused(void **state)
{
    (void)state;
    char out[8192];
    int rc = ditrt(out, sizeof out, "txt2img -m " SD " -p x --attn-plan %s/configs/attn/demo-pixart-d0.05.json -o a.png",
                   root, root);
    assert_int_not_equal(rc, 0);
    if (!strstr(out, "U-Net")) fail_msg("stderr: %s", out);
}

/* MixDQ on the U-Net: `ditrt quantize` writes a plan whose layers include the resnets'
 * convolutions (as GEMMs over k·k·cin im2col columns) and the transformer linears, the BOS
 * token kept in float by the cross-attention k|v; txt2img --quant runs it, near the float image
 * at W8A8 and at a mixed 6-bit budget (metric-decoupled sensitivity), further from it at W4A8
 * everywhere. */
static void test_mixdq(void **state)
{
    (void)state;
    static char out[1 << 16];
    char gen[1200];
    snprintf(gen, sizeof gen, "txt2img -m " SD " -p 'a red circle' --steps 4 --cfg 3 --dtype f32 -q", root);
    int rc = ditrt(out, sizeof out, "%s -o f.png", gen);
    if (rc) fail_msg("txt2img: %s", out);
    const char *schemes[][2] = {{"w8a8", "w8a8 -q"}, {"mixed", "mixed --budget 6 --sensitivity decoupled -W 32 -H 32"}, {"w4a8", "w4a8 -q"}};
    double psnrs[3];
    for (int i = 0; i < 3; i++) {
        rc = ditrt(out, sizeof out, "quantize -m " SD " --prompts p1.txt --out %s --steps 4 --cfg 3 --dtype f32 --scheme %s",
                   root, schemes[i][0], schemes[i][1]);
        if (rc) fail_msg("quantize %s: %s", schemes[i][1], out);
        /* MixDQ's metric-decoupled groups, each allocated to the budget */
        if (i == 1 && (!strstr(out, "(content: coarse)") || !strstr(out, "(quality: fine)") ||
                       !strstr(out, "mixed: content (cross-attention) layers: average weight bits") ||
                       !strstr(out, "mixed: quality layers")))
            fail_msg("quantize output: %s", out);
        char png[64];
        snprintf(png, sizeof png, "%s.png", schemes[i][0]);
        rc = ditrt(out, sizeof out, "%s --quant %s -o %s", gen, schemes[i][0], png);
        if (rc) fail_msg("txt2img --quant %s: %s", schemes[i][0], out);
        psnrs[i] = psnr(png, "f.png");
        print_message("%s: %.2f dB vs float\n", schemes[i][1], psnrs[i]);
    }
    assert_true(contains("w8a8/plan.json", "\"down_blocks.0.resnets.0.conv1\""));
    assert_true(contains("w8a8/plan.json", "\"in\":\t72")); /* 3·3·8 im2col columns */
    assert_true(contains("w8a8/plan.json", "\"fp_tokens\":\t[0]")); /* BOS in float by default */
    assert_true(psnrs[0] >= 30 && psnrs[0] < 200);
    assert_true(psnrs[1] >= 28);
    assert_true(psnrs[2] < psnrs[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_usf, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oms_zoo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attn_plan_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mixdq, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
