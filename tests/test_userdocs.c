/* What the README promises a user (issue 21, items 8-10): `ditrt info` describes the whole
 * pipeline at its native size; `info --attn-plan` without -m refuses a plan of another depth
 * than its reference model; the shipped embedding example draws the prompt (not a blob) on the
 * demo model, the same picture as `ditrt txt2img`; `ditrt compare` exits 0 / 1 / 2 as
 * documented, for images and videos, with --json and --diff; scripts/golden.sh passes an
 * unchanged run and fails a changed setting (19 vs 20 steps, which the pixels alone pass at
 * 40 dB). Runs ./ditrt and build/examples/ from the repository root; ~5 s. */
#include "testutil.h"
#include <ditrt.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define DEMO "assets/demo-pixart"
#define DEMO_VIDEO "assets/demo-latte"
#define PROMPT "a red circle on the left on a black background"

static char tmp[256];
static int setup(void **state) { (void)state; tu_tmpdir(tmp, sizeof tmp); return 0; }
static int teardown(void **state) { (void)state; tu_rmtree(tmp); return 0; }

static int run(const char *cmd, char *out, size_t n) { return tu_run(tmp, cmd, 1, out, n); }

static void expect_has(const char *text, const char *want)
{
    if (!strstr(text, want)) fail_msg("expected \"%s\" in:\n%s", want, text);
}

/* ---- item 8: info ---- */

static void test_info_pipeline(void **state)
{
    (void)state;
    static char out[16384];
    assert_int_equal(run("./ditrt info -m " DEMO, out, sizeof out), 0);
    const char *want[] = {"pipeline: " DEMO " (PixArtSigmaPipeline)", "text_encoder: " DEMO "/text_encoder",
                          "T5EncoderModel, layers: 2, d_model: 64", "tokenizer: ", "300 tokens per prompt",
                          "transformer: " DEMO "/transformer", "parameters: 705904 (file holds 705904)",
                          "vae: " DEMO "/vae", "AutoencoderKL", "upscale: 4x", "scheduler: ", "DPMSolverMultistepScheduler",
                          "algorithm_type: dpmsolver++", "stored dtypes: f32=", "model.safetensors",
                          "native size: 32x32 px (latent 8x8)", "text encoding", "sampling", "decode", "peak"};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) expect_has(out, want[i]);
    /* the demo VAE upscales 4x: no 8x assumption (the old "64x64 px") */
    assert_null(strstr(out, "64x64"));
    assert_int_equal(run("./ditrt info -m " DEMO_VIDEO, out, sizeof out), 0);
    expect_has(out, "LattePipeline");
    expect_has(out, "native size: 32x32 px, 8 frames (latent 16x16)");
    expect_has(out, "one video at the native size");
    /* a transformer folder alone: its section, and the VAE's upscale said to be assumed */
    assert_int_equal(run("./ditrt info -m " DEMO "/transformer", out, sizeof out), 0);
    expect_has(out, "the VAE's upscale assumed 8x");
    assert_null(strstr(out, "text_encoder"));
}

static void test_info_attn_plan_depth(void **state)
{
    (void)state;
    char out[4096];
    /* a 4-layer plan without -m is not costed as PixArt-XL-2 (28 layers) */
    assert_int_not_equal(run("./ditrt info --attn-plan configs/attn/demo-pixart-d0.05.json", out, sizeof out), 0);
    expect_has(out, "a plan for 4 layers");
    expect_has(out, "give -m MODEL_DIR");
    assert_null(strstr(out, "GFLOP"));
    assert_int_not_equal(run("./ditrt info --attn-plan configs/attn/demo-latte-d0.05.json", out, sizeof out), 0);
    expect_has(out, "a plan for 4 spatial layers");
    /* with -m it is costed at the model's own size; an XL-2 plan alone still is */
    assert_int_equal(run("./ditrt info -m " DEMO " --attn-plan configs/attn/demo-pixart-d0.05.json", out, sizeof out), 0);
    expect_has(out, "at 16 tokens x 96");
    assert_int_equal(run("./ditrt info --attn-plan configs/attn/xl2-1024-wars.json", out, sizeof out), 0);
    expect_has(out, "at 4096 tokens x 1152");
}

/* ---- item 9: the embedding example ---- */

/* Reads a binary PPM written by the example into rgb (w*h*3); returns 1 on success. */
static int read_ppm(const char *path, int *w, int *h, unsigned char *rgb, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    int maxv = 0, ok = fscanf(f, "P6 %d %d %d", w, h, &maxv) == 3 && maxv == 255 && fgetc(f) == '\n' && *w > 0 && *h > 0 &&
                       (size_t)*w * *h * 3 <= cap && fread(rgb, 3, (size_t)*w * *h, f) == (size_t)*w * *h;
    fclose(f);
    return ok;
}

static void test_example_draws_the_prompt(void **state)
{
    (void)state;
    char cmd[1024], out[4096], ppm[300], png[300];
    snprintf(ppm, sizeof ppm, "%s/example.ppm", tmp);
    snprintf(png, sizeof png, "%s/cli.png", tmp);
    snprintf(cmd, sizeof cmd, "OMP_WAIT_POLICY=PASSIVE build/examples/txt2img_example " DEMO " '" PROMPT "' %s f32", ppm);
    if (run(cmd, out, sizeof out) != 0) fail_msg("%s: %s", cmd, out);
    expect_has(out, "32x32, 20 steps, cfg 4.5, seed 0, f32");
    static unsigned char rgb[64 * 64 * 3];
    int w = 0, h = 0;
    assert_true(read_ppm(ppm, &w, &h, rgb, sizeof rgb));
    assert_int_equal(w, 32);
    assert_int_equal(h, 32);
    /* a red disc on the left of a black background: red pixels (R high, G and B low) cover
     * 5-40% of the image, their centre lies in the left half, and the rest is dark */
    int red = 0, bright_other = 0;
    double cx = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            const unsigned char *p = rgb + 3 * (y * w + x);
            if (p[0] > 128 && p[1] < 90 && p[2] < 90) { red++; cx += x; }
            else if (p[0] + p[1] + p[2] > 3 * 90) bright_other++;
        }
    if (red < w * h / 20 || red > w * h * 2 / 5) fail_msg("%d red pixels of %d: not a red circle", red, w * h);
    if (cx / red >= w / 2.0) fail_msg("the red disc is centred at x = %.1f: not on the left", cx / red);
    if (bright_other > w * h / 20) fail_msg("%d bright non-red pixels: not a black background", bright_other);
    /* the same picture as the command line's defaults (another thread count may move f32
     * rounding: 83 dB measured, so not byte equality) */
    snprintf(cmd, sizeof cmd, "OMP_WAIT_POLICY=PASSIVE ./ditrt txt2img -m " DEMO " -p '" PROMPT "' --dtype f32 --quiet -o %s", png);
    if (run(cmd, out, sizeof out) != 0) fail_msg("%s: %s", cmd, out);
    ditrt_image im;
    ditrt_error err = {0};
    if (ditrt_image_load(png, &im, &err) != DITRT_OK) fail_msg("%s", err.msg);
    assert_int_equal(im.width, w);
    assert_int_equal(im.height, h);
    double se = 0;
    for (size_t i = 0; i < (size_t)w * h * 3; i++) se += ((double)im.rgb[i] - rgb[i]) * ((double)im.rgb[i] - rgb[i]);
    ditrt_image_free(&im);
    if (se > 0 && 10 * log10(255.0 * 255.0 * w * h * 3 / se) < 50) fail_msg("example vs txt2img: %.1f dB", 10 * log10(255.0 * 255.0 * w * h * 3 / se));
}

/* ---- item 10: compare's exit codes and --json, golden.sh ---- */

static void gen(const char *args, const char *out_path)
{
    char cmd[1024], out[4096];
    snprintf(cmd, sizeof cmd, "OMP_WAIT_POLICY=PASSIVE ./ditrt %s --dtype f32 --threads 1 --quiet -o %s", args, out_path);
    if (run(cmd, out, sizeof out) != 0) fail_msg("%s: %s", cmd, out);
}

static void test_compare_exit_codes(void **state)
{
    (void)state;
    char a[300], b[300], va[300], vb[300], cmd[2048], out[8192], diff[300];
    snprintf(a, sizeof a, "%s/s20.png", tmp);
    snprintf(b, sizeof b, "%s/s19.png", tmp);
    snprintf(va, sizeof va, "%s/v20", tmp);
    snprintf(vb, sizeof vb, "%s/v19", tmp);
    snprintf(diff, sizeof diff, "%s/diff.png", tmp);
    gen("txt2img -m " DEMO " -p '" PROMPT "' --steps 20 --seed 1", a);
    gen("txt2img -m " DEMO " -p '" PROMPT "' --steps 19 --seed 1", b);
    assert_int_equal(mkdir(va, 0755), 0);
    assert_int_equal(mkdir(vb, 0755), 0);
    strcat(va, "/"), strcat(vb, "/");
    gen("txt2vid -m " DEMO_VIDEO " -p 'a blue triangle moving up on a white background' --steps 20", va);
    gen("txt2vid -m " DEMO_VIDEO " -p 'a blue triangle moving up on a white background' --steps 19", vb);
    static const struct { const char *fmt; int rc; const char *say; } cases[] = {
        {"./ditrt compare %1$s %1$s --min-psnr inf", 0, "PSNR: inf dB"},        /* identical */
        {"./ditrt compare %1$s %2$s --min-psnr 40", 0, "PSNR: "},              /* 19 vs 20 steps passes 40 dB ... */
        {"./ditrt compare %1$s %2$s --min-psnr inf", 1, "below --min-psnr inf"}, /* ... not exact equality */
        {"./ditrt compare %1$s %2$s --min-ssim 0.99999", 1, "below --min-ssim"},
        {"./ditrt compare %1$s %2$s --min-psnr 99 --diff %5$s", 1, "below"},    /* the diff is still written */
        {"./ditrt compare %1$s %1$s.missing", 2, "cannot open"},
        {"./ditrt compare %1$s", 2, "expected two images"},
        {"./ditrt compare %1$s %2$s --min-psnr x", 2, "expected a number"},
        {"./ditrt compare %1$s %2$s --bogus", 2, "unknown option"},
        {"./ditrt compare %3$s %3$s --min-psnr inf", 0, "mean PSNR: inf dB"},
        {"./ditrt compare %3$s %4$s --min-psnr 40", 0, "mean PSNR"},
        {"./ditrt compare %3$s %4$s --min-psnr inf", 1, "mean PSNR"},
        {"./ditrt compare %3$s %1$s", 2, ""},                                   /* a video and an image */
        {"./ditrt compare %3$s %4$s --diff %5$s", 2, "only for images"},
        {"./ditrt compare %1$s %2$s --json --min-psnr 99", 1, "\"pass\":\tfalse"},
        {"./ditrt compare %1$s %1$s --json", 0, "\"identical\":\ttrue"},
        {"./ditrt compare %3$s %4$s --json", 0, "\"frame_psnr\":"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        snprintf(cmd, sizeof cmd, cases[i].fmt, a, b, va, vb, diff);
#pragma GCC diagnostic pop
        int rc = run(cmd, out, sizeof out);
        if (rc != cases[i].rc) fail_msg("%s: exit %d, expected %d: %s", cmd, rc, cases[i].rc, out);
        expect_has(out, cases[i].say);
    }
    assert_int_equal(access(diff, F_OK), 0);
}

static void test_golden_script(void **state)
{
    (void)state;
    char cases[300], gold[300], cmd[1200], out[8192];
    snprintf(cases, sizeof cases, "%s/cases.tsv", tmp);
    snprintf(gold, sizeof gold, "%s/golden", tmp);
    const char *text = "# my cases\n"
                       "red\ttxt2img -m " DEMO " -p \"" PROMPT "\" --steps 20 --seed 1 --dtype f32 --threads 1\n\n"
                       "clip\ttxt2vid -m " DEMO_VIDEO " -p \"a blue triangle moving up on a white background\" --steps 20 --dtype f32 --threads 1\n";
    tu_write_file(cases, text, strlen(text));
    snprintf(cmd, sizeof cmd, "DITRT=./ditrt OMP_WAIT_POLICY=PASSIVE sh scripts/golden.sh update %s %s", cases, gold);
    if (run(cmd, out, sizeof out) != 0) fail_msg("%s: %s", cmd, out);
    snprintf(cmd, sizeof cmd, "%s/red.png", gold);
    assert_int_equal(access(cmd, F_OK), 0);
    snprintf(cmd, sizeof cmd, "%s/clip/frame_000.png", gold);
    assert_int_equal(access(cmd, F_OK), 0);
    snprintf(cmd, sizeof cmd, "DITRT=./ditrt OMP_WAIT_POLICY=PASSIVE sh scripts/golden.sh check %s %s", cases, gold);
    if (run(cmd, out, sizeof out) != 0) fail_msg("%s: %s", cmd, out);
    expect_has(out, "2 of 2 cases passed");
    /* 19 steps instead of 20: the pixels pass 40 dB, the recorded settings do not */
    const char *changed = "red\ttxt2img -m " DEMO " -p \"" PROMPT "\" --steps 19 --seed 1 --dtype f32 --threads 1\n";
    tu_write_file(cases, changed, strlen(changed));
    snprintf(cmd, sizeof cmd, "DITRT=./ditrt GOLDEN_MIN_PSNR=40 OMP_WAIT_POLICY=PASSIVE sh scripts/golden.sh check %s %s", cases, gold);
    assert_int_equal(run(cmd, out, sizeof out), 1);
    expect_has(out, "FAIL red: the settings differ");
    expect_has(out, "\"steps\":\t19");
    /* a bad line, a missing golden: errors (2) */
    tu_write_file(cases, "no tab here\n", 12);
    assert_int_equal(run(cmd, out, sizeof out), 2);
    expect_has(out, "bad line");
    const char *missing = "blue\ttxt2img -m " DEMO " -p \"a blue square\" --steps 2 --dtype f32\n";
    tu_write_file(cases, missing, strlen(missing));
    assert_int_equal(run(cmd, out, sizeof out), 2);
    expect_has(out, "no golden");
}

/* ---- item 11: scripts/check-readme.sh runs sh blocks, skips only marked ones, fails ---- */

static void test_check_readme_script(void **state)
{
    (void)state;
    if (system("command -v git >/dev/null 2>&1") != 0) { printf("  skipped: git is not installed\n"); skip(); }
    char path[400], cmd[1600], out[8192];
    snprintf(path, sizeof path, "%s/repo/scripts", tmp);
    snprintf(cmd, sizeof cmd, "mkdir -p %s && cp scripts/check-readme.sh %s/", path, path);
    assert_int_equal(system(cmd), 0);
    snprintf(path, sizeof path, "%s/repo/README.md", tmp);
    const char *readme = "# t\n\n```sh\necho made > made.txt\n```\n\n"
                         "```sh\ntest -f made.txt\nfalse\necho not reached\n```\n\n"
                         "<!-- check-readme: skip: needs what a test has not -->\n```sh\nexit 3\n```\n\n"
                         "```text\nditrt txt2img -m MODEL_DIR   # a synopsis, not run\n```\n";
    tu_write_file(path, readme, strlen(readme));
    snprintf(cmd, sizeof cmd, "cd %s/repo && git init -q && git add -A && git -c user.name=t -c user.email=t@t commit -qm t", tmp);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "sh %s/repo/scripts/check-readme.sh", tmp);
    assert_int_equal(run(cmd, out, sizeof out), 1);
    expect_has(out, "3 sh blocks");
    expect_has(out, "ok    block 1 (README line 3");
    expect_has(out, "FAIL  block 2 (README line 7, exit 1");
    expect_has(out, "skip  block 3 (README line 14): needs what a test has not");
    expect_has(out, "1 of 2 blocks passed, 1 skipped");
    expect_has(out, "$ echo not reached"); /* the failed block is listed ... */
    assert_null(strstr(out, "| not reached")); /* ... and stopped at its failing command */
}

int main(void)
{
    if (access("./ditrt", X_OK) || access(DEMO "/model_index.json", F_OK)) {
        printf("test_userdocs: skipped (run from the repository root after make)\n");
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_info_pipeline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_info_attn_plan_depth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_example_draws_the_prompt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compare_exit_codes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_golden_script, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_readme_script, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
