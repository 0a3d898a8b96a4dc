/* What txt2img/txt2vid say and record (issue 21, items 2-5): the paths written and the
 * overwrite rule; batch size and index in the metadata and --json, --batch-index regenerating
 * an item, --seed -1 recorded; the web UI's `parameters` text in PNG, JPEG (EXIF + COM) and
 * WebP; settings that would lie refused or recorded truly, and the one-line warnings. */
#include "testutil.h"
#include "runtime/io/image_meta.h"
#include "runtime/plans/fastattn.h"
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp[256], root[1024];
static int setup(void **state)
{
    (void)state;
    tu_tmpdir(tmp, sizeof tmp);
    assert_non_null(getcwd(root, sizeof root));
    return 0;
}
static int teardown(void **state) { (void)state; tu_rmtree(tmp); return 0; }

#define GEN "txt2img -m %s/tests/fixtures/pixart-pipe-tiny -p 'a red circle' --steps 2 --dtype f32 " \
            "--text-encoder-dtype f32 --threads 1"

/* Runs `ditrt <args>` in the temp folder; stdout and stderr into out (both when with_err). */
static int ditrt(char *out, size_t n, int with_err, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int ditrt(char *out, size_t n, int with_err, const char *fmt, ...)
{
    char args[3000], cmd[5200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "cd '%s' && %s/ditrt %s%s", tmp, root, args, with_err ? "" : " 2>/dev/null");
    return tu_run(tmp, cmd, 1, out, n);
}

static char *slurp(const char *dir, const char *name, size_t *n)
{
    char p[600];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    *n = fread(b, 1, (size_t)len, f);
    b[*n] = 0;
    fclose(f);
    return b;
}

/* The value of PNG tEXt chunk `key` (malloc'd), or NULL. */
static char *png_text(const char *name, const char *key)
{
    size_t n;
    char *b = slurp(tmp, name, &n), *v = NULL;
    for (size_t p = 8; b && !v && p + 12 <= n;) {
        const unsigned char *c = (const unsigned char *)b + p;
        size_t len = (size_t)c[0] << 24 | c[1] << 16 | c[2] << 8 | c[3];
        if (!memcmp(c + 4, "tEXt", 4) && !strcmp((const char *)c + 8, key)) {
            size_t kl = strlen(key) + 1;
            v = strndup((const char *)c + 8 + kl, len - kl);
        }
        p += 12 + len;
    }
    free(b);
    return v;
}

static void expect_text(const char *name, const char *key, const char *want)
{
    char *v = png_text(name, key);
    if (!v || strcmp(v, want)) fail_msg("%s: %s is \"%s\", expected \"%s\"", name, key, v ? v : "(none)", want);
    free(v);
}

static int same_pixels(const char *a, const char *b)
{
    char pa[600], pb[600];
    snprintf(pa, sizeof pa, "%s/%s", tmp, a);
    snprintf(pb, sizeof pb, "%s/%s", tmp, b);
    ditrt_image x = {0}, y = {0};
    ditrt_error e;
    assert_int_equal(ditrt_image_load(pa, &x, &e), DITRT_OK);
    assert_int_equal(ditrt_image_load(pb, &y, &e), DITRT_OK);
    int same = x.width == y.width && x.height == y.height && !memcmp(x.rgb, y.rgb, (size_t)x.width * x.height * 3);
    ditrt_image_free(&x);
    ditrt_image_free(&y);
    return same;
}

static int exists(const char *name)
{
    char p[600];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", tmp, name);
    return stat(p, &st) == 0;
}

/* Item 2: "wrote PATH" lines; without -o out.png, then out_2.png (never replacing); -o replaces
 * and says so; --quiet prints nothing; a batch's names. */
static void test_paths_and_overwrite(void **state)
{
    (void)state;
    char out[4096];
    assert_int_equal(ditrt(out, sizeof out, 0, GEN, root), 0);
    assert_string_equal(out, "wrote out.png\n");
    size_t n1, n2;
    char *first = slurp(tmp, "out.png", &n1);
    assert_int_equal(ditrt(out, sizeof out, 0, GEN " --seed 1", root), 0);
    assert_string_equal(out, "wrote out_2.png\n");
    char *again = slurp(tmp, "out.png", &n2);
    assert_true(first && again && n1 == n2 && !memcmp(first, again, n1)); /* out.png kept */
    free(first);
    free(again);
    assert_int_equal(ditrt(out, sizeof out, 0, GEN " -o out.png", root), 0);
    assert_string_equal(out, "wrote out.png (replaced the earlier file)\n");
    assert_int_equal(ditrt(out, sizeof out, 1, GEN " -q -o q.png", root), 0);
    assert_string_equal(out, "");
    assert_true(exists("q.png"));
    assert_int_equal(ditrt(out, sizeof out, 0, GEN " --batch 2", root), 0);
    assert_string_equal(out, "wrote out-0.png\nwrote out-1.png\n"); /* a batch's own names are free */
    assert_int_equal(ditrt(out, sizeof out, 0, GEN " --batch 2", root), 0);
    assert_string_equal(out, "wrote out_2-0.png\nwrote out_2-1.png\n");
}

/* Item 3: batch size and index in every item's metadata and --json; --batch-index i alone
 * (same noise: equal within rounding) and --batch-exact (byte-identical), also with a
 * stochastic solver; --seed -1 picks and records a seed. */
static void test_batches_and_seeds(void **state)
{
    (void)state;
    char out[8192];
    assert_int_equal(ditrt(out, sizeof out, 0, GEN " --seed 3 --batch 3 --solver euler_a --json -o b.png", root), 0);
    if (!strstr(out, "\"batch\":\t3") || !strstr(out, "\"batch_index\":\t[0, 1, 2]")) fail_msg("--json: %s", out);
    char name[64], want[64];
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "b-%d.png", i);
        snprintf(want, sizeof want, "%d", i);
        expect_text(name, "batch", "3");
        expect_text(name, "batch_index", want);
        expect_text(name, "seed", "3");
    }
    assert_int_equal(ditrt(out, sizeof out, 0, GEN " --seed 3 --batch 3 --solver euler_a --batch-index 2 --batch-exact -o e2.png", root), 0);
    assert_true(same_pixels("b-2.png", "e2.png"));
    expect_text("e2.png", "batch_index", "2");
    assert_int_equal(ditrt(out, sizeof out, 0, GEN " --seed 3 --batch 3 --solver euler_a --batch-index 1 -o a1.png", root), 0);
    expect_text("a1.png", "batch_index", "1");
    assert_int_equal(ditrt(out, sizeof out, 0, "compare b-1.png a1.png --min-psnr 60"), 0); /* same noise */
    assert_int_equal(ditrt(out, sizeof out, 0, GEN " --seed 4 --batch 3 --solver euler_a --batch-index 1 -o other.png", root), 0);
    assert_int_not_equal(ditrt(out, sizeof out, 0, "compare b-1.png other.png --min-psnr 60"), 0);
    assert_int_equal(ditrt(out, sizeof out, 0, GEN " --batch 2 --batch-index 2 -o x.png", root), 2);
    assert_false(exists("x.png"));
    /* --seed -1: recorded in the file and --json, and the run reproduces from it */
    assert_int_equal(ditrt(out, sizeof out, 0, GEN " --seed -1 --json -q -o r.png", root), 0);
    assert_non_null(strstr(out, "\"random_seed\":\ttrue"));
    char *seed = png_text("r.png", "seed");
    assert_non_null(seed);
    char json_seed[80];
    snprintf(json_seed, sizeof json_seed, "\"seed\":\t%s,", seed);
    if (!strstr(out, json_seed)) fail_msg("--json lacks %s: %s", json_seed, out);
    assert_int_equal(ditrt(out, sizeof out, 0, GEN " --seed %s -q -o r2.png", root, seed), 0);
    assert_true(same_pixels("r.png", "r2.png"));
    free(seed);
}

/* Item 3 for videos (Latte: a batch's captions are masked, not cut, also for one item alone):
 * --batch-exact gives the batch's frames, --batch-index alone the same clip within rounding. */
static void test_video_batch_item(void **state)
{
    (void)state;
    char out[4096];
    const char *vid = "txt2vid -m %s/assets/demo-latte -p 'a blue triangle' --steps 3 --dtype f32 --text-encoder-dtype f32 "
                      "--threads 1 -q --seed 2 --batch 2 %s -o %s";
    const char *dirs[] = {"v", "e", "a"};
    for (int i = 0; i < 3; i++) {
        char d[600];
        snprintf(d, sizeof d, "%s/%s", tmp, dirs[i]);
        assert_int_equal(mkdir(d, 0755), 0);
    }
    assert_int_equal(ditrt(out, sizeof out, 1, vid, root, "", "v/"), 0);
    assert_int_equal(ditrt(out, sizeof out, 1, vid, root, "--batch-index 1 --batch-exact", "e/"), 0);
    assert_int_equal(ditrt(out, sizeof out, 1, vid, root, "--batch-index 1", "a/"), 0);
    assert_int_equal(ditrt(out, sizeof out, 1, "compare v/1/ e/ --min-psnr 1000"), 0); /* identical: inf dB */
    assert_int_equal(ditrt(out, sizeof out, 1, "compare v/1/ a/ --min-psnr 60"), 0);
    assert_int_not_equal(ditrt(out, sizeof out, 1, "compare v/0/ a/ --min-psnr 60"), 0);
    expect_text("e/frame_000.png", "batch_index", "1");
}

/* Item 4: the web UI's parameters text in PNG, JPEG (EXIF UserComment and COM) and WebP. */
static void test_parameters_text(void **state)
{
    (void)state;
    char out[4096];
    const char *want = "a red circle\nNegative prompt: blurry\nSteps: 2, Sampler: Euler a, CFG scale: 4.5, Seed: 5, "
                       "Size: 64x64, Model: pixart-pipe-tiny, Batch size: 2, Batch pos: 1, Version: ditrt " DITRT_VERSION;
    assert_int_equal(ditrt(out, sizeof out, 0, GEN " -n blurry -W 64 -H 64 --seed 5 --solver euler_a --batch 2 -o p.png", root), 0);
    expect_text("p-1.png", "parameters", want);
    assert_int_equal(ditrt(out, sizeof out, 0, GEN " -n blurry -W 64 -H 64 --seed 5 --solver euler_a --batch 2 --batch-index 1 -o p.jpg", root), 0);
    size_t n;
    char *j = slurp(tmp, "p.jpg", &n);
    assert_non_null(j);
    char *com = NULL, *exif = NULL;
    for (size_t p = 2; p + 4 <= n && (unsigned char)j[p] == 0xff && (unsigned char)j[p + 1] != 0xda;) {
        size_t len = (size_t)(unsigned char)j[p + 2] << 8 | (unsigned char)j[p + 3];
        if ((unsigned char)j[p + 1] == 0xfe) com = strndup(j + p + 4, len - 2);
        if ((unsigned char)j[p + 1] == 0xe1) exif = dt_exif_read_user_comment((const uint8_t *)j + p + 4, len - 2);
        p += 2 + len;
    }
    if (!com || strcmp(com, want)) fail_msg("JPEG COM: %s", com ? com : "(none)");
    if (!exif || strcmp(exif, want)) fail_msg("JPEG EXIF UserComment: %s", exif ? exif : "(none)");
    free(com);
    free(exif);
    free(j);
    assert_true(same_pixels("p.jpg", "p.jpg"));
    assert_int_equal(ditrt(out, sizeof out, 0, GEN " -W 64 -H 64 -o w.webp", root), 0);
    char *w = slurp(tmp, "w.webp", &n);
    assert_true(w && n > 16 && !memcmp(w, "RIFF", 4) && !memcmp(w + 8, "WEBPVP8X", 8));
    assert_non_null(memmem(w, n, "EXIF", 4));
    assert_non_null(memmem(w, n, "steps: 2\n", 9)); /* the XMP lines, as txt2vid writes them */
    free(w);
    assert_int_equal(ditrt(out, sizeof out, 0, "compare w.webp w.webp --min-psnr 100"), 0);
}

/* The EXIF block round trip, non-ASCII (a surrogate pair too) and cut to a size. */
static void test_exif_user_comment(void **state)
{
    (void)state;
    const char *t = "caf\xc3\xa9 \xf0\x9f\x8e\xa8 ok";
    size_t n;
    uint8_t *b = dt_exif_user_comment(t, 4096, &n);
    char *back = dt_exif_read_user_comment(b, n);
    assert_string_equal(back, t);
    free(back);
    free(b);
    b = dt_exif_user_comment("abcdefgh", 44 + 8 + 3, &n); /* 44 header bytes, 8 of charset: 3 characters */
    back = dt_exif_read_user_comment(b, n);
    assert_string_equal(back, "abc");
    free(back);
    free(b);
    assert_null(dt_exif_read_user_comment((const uint8_t *)"MM\0*\0\0\0\x08", 8));
}

/* Item 5: a solver schedule fixes the steps (a conflicting --steps is refused, the truth is
 * recorded); --clip-sample; the warnings (size, zoo), one line each, silent with --quiet. */
static void test_settings_that_lie(void **state)
{
    (void)state;
    char out[8192];
    const char *demo = "txt2img -m %s/assets/demo-pixart -p 'a red circle' --dtype f32 --text-encoder-dtype f32 "
                       "--threads 1 --solver-schedule %s/configs/solvers/demo-pixart-usf-nfe6.json";
    char cmd[2900];
    snprintf(cmd, sizeof cmd, "%s --steps 50 -o s.png", demo);
    assert_int_equal(ditrt(out, sizeof out, 1, cmd, root, root), 2);
    if (!strstr(out, "fixes 6 steps") || !strstr(out, "--steps 6")) fail_msg("stderr: %s", out);
    assert_false(exists("s.png"));
    snprintf(cmd, sizeof cmd, "%s -q -o s.png", demo);
    assert_int_equal(ditrt(out, sizeof out, 1, cmd, root, root), 0);
    expect_text("s.png", "steps", "6");
    assert_int_equal(ditrt(out, sizeof out, 1, GEN " --clip-sample off -o c.png", root), 1);
    if (!strstr(out, "has no clip_sample option")) fail_msg("stderr: %s", out);
    assert_int_equal(ditrt(out, sizeof out, 1, GEN " --clip-sample maybe -o c.png", root), 2);
    assert_int_equal(ditrt(out, sizeof out, 1, GEN " --solver ddim --clip-sample off -W 128 -H 128 -o c.png", root), 0);
    assert_null(strstr(out, "warning"));
    expect_text("c.png", "clip_sample", "off");
    assert_int_equal(ditrt(out, sizeof out, 1, GEN " -W 64 -H 64 --no-binning -o z.png --zoo %s/tests/fixtures/pixart-pipe-tiny", root, root), 0);
    if (!strstr(out, "ditrt: warning: size: 64x64 is far from the model's trained size 128x128") ||
        !strstr(out, "ditrt: warning: zoo: 1 more models are loaded but no model schedule"))
        fail_msg("stderr: %s", out);
    assert_int_equal(ditrt(out, sizeof out, 1, GEN " -W 64 -H 64 -q -o z2.png --zoo %s/tests/fixtures/pixart-pipe-tiny", root, root), 0);
    assert_string_equal(out, "");
    /* a plan calibrated at 16 tokens (the demo's 32 px) used at 64 px = 64 tokens */
    const char *plan = "txt2img -m %s/assets/demo-pixart -p 'a red circle' --dtype f32 --text-encoder-dtype f32 "
                       "--threads 1 --attn-plan %s/configs/attn/demo-pixart-d0.05.json -o a%d.png %s";
    snprintf(cmd, sizeof cmd, plan, root, root, 1, "-W 64 -H 64 --no-binning");
    assert_int_equal(ditrt(out, sizeof out, 1, "%s", cmd), 0);
    if (!strstr(out, "ditrt: warning: attention plan: calibrated at 16 tokens per frame, this size has 64"))
        fail_msg("stderr: %s", out);
    snprintf(cmd, sizeof cmd, plan, root, root, 2, "");
    assert_int_equal(ditrt(out, sizeof out, 1, "%s", cmd), 0);
    assert_null(strstr(out, "warning"));
}

/* "tokens" in a plan file: read, written back, optional, never negative. */
static void test_plan_tokens(void **state)
{
    (void)state;
    const char *text = "{\"format\": \"ditrt-attn-plan\", \"steps\": 2, \"window\": 1, \"tokens\": 64, "
                       "\"layers\": [[\"full\", \"full\"]]}";
    dt_attn_plan p, q;
    dt_err e = {0};
    assert_int_equal(dt_attn_plan_parse(text, "plan", &p, &e), DT_OK);
    assert_int_equal(p.tokens, 64);
    char path[600];
    snprintf(path, sizeof path, "%s/plan.json", tmp);
    assert_int_equal(dt_attn_plan_save(&p, path, &e), DT_OK);
    assert_int_equal(dt_attn_plan_load(path, &q, &e), DT_OK);
    assert_int_equal(q.tokens, 64);
    dt_attn_plan_free(&p);
    dt_attn_plan_free(&q);
    assert_int_equal(dt_attn_plan_parse("{\"format\": \"ditrt-attn-plan\", \"steps\": 1, \"window\": 1, "
                                        "\"layers\": [[\"full\"]]}", "plan", &p, &e), DT_OK);
    assert_int_equal(p.tokens, 0);
    dt_attn_plan_free(&p);
    assert_int_not_equal(dt_attn_plan_parse("{\"format\": \"ditrt-attn-plan\", \"steps\": 1, \"window\": 1, "
                                            "\"tokens\": -4, \"layers\": [[\"full\"]]}", "plan", &p, &e), DT_OK);
    assert_non_null(strstr(e.msg, "tokens"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_paths_and_overwrite, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batches_and_seeds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_video_batch_item, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parameters_text, setup, teardown),
        cmocka_unit_test(test_exif_user_comment),
        cmocka_unit_test_setup_teardown(test_settings_that_lie, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plan_tokens, setup, teardown),
    };
    return cmocka_run_group_tests_name("cli_outputs", tests, NULL, NULL);
}
