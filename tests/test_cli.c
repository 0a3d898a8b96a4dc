/* The ditrt command line as a user meets it: eval writes the diffusers output; every bad
 * input gives one line on stderr naming what is wrong, a non-zero exit, and no output
 * file (an existing one is left as it was). */
#include "testutil.h"
#include "runtime/core/safetensors.h"
#include <sys/stat.h>
#include <sys/wait.h>

static char tmp[256];
static int setup(void **state) { (void)state; tu_tmpdir(tmp, sizeof tmp); return 0; }
static int teardown(void **state) { (void)state; tu_rmtree(tmp); return 0; }

/* Runs a shell command; returns its exit code and captures stderr into err (n bytes). */
static int run(const char *cmd, char *err, size_t n) { return tu_run(tmp, cmd, 0, err, n); }

/* Expects failure: one stderr line holding `needle`, and no file at `out`. */
static void expect_fail(const char *cmd, const char *needle, const char *out) { tu_expect_fail(tmp, cmd, needle, out); }

#define FIX "tests/fixtures/pixart-alpha-tiny"

static void test_eval_writes_sample(void **state)
{
    (void)state;
    char cmd[1024], out[512], err[4096];
    snprintf(out, sizeof out, "%s/o.safetensors", tmp);
    snprintf(cmd, sizeof cmd, "./ditrt eval transformer -m " FIX " --in " FIX "/case_odd.in.safetensors --out %s --threads 1", out);
    assert_int_equal(run(cmd, err, sizeof err), 0);
    dt_safetensors *a, *b;
    dt_err e = {0};
    assert_int_equal(dt_st_open(out, &a, &e), DT_OK);
    assert_int_equal(dt_st_open(FIX "/case_odd.out.safetensors", &b, &e), DT_OK);
    const dt_st_entry *x = dt_st_find(a, "sample"), *y = dt_st_find(b, "sample");
    assert_non_null(x);
    assert_int_equal(x->nbytes, y->nbytes);
    assert_rel_l2_below((const float *)x->data, (const float *)y->data, x->nbytes / 4, 1e-4);
    dt_st_close(a);
    dt_st_close(b);
}

static void test_bad_inputs(void **state)
{
    (void)state;
    char cmd[2048], out[512], in[512];
    snprintf(out, sizeof out, "%s/o.safetensors", tmp);
    unlink(out); /* left by test_eval_writes_sample */
    const char *base = "./ditrt eval transformer -m " FIX;

    snprintf(cmd, sizeof cmd, "%s --in /nonexistent.safetensors --out %s", base, out);
    expect_fail(cmd, "/nonexistent.safetensors", out);
    snprintf(cmd, sizeof cmd, "./ditrt eval transformer -m /no/model --in " FIX "/case_odd.in.safetensors --out %s", out);
    expect_fail(cmd, "/no/model", out);
    snprintf(cmd, sizeof cmd, "%s --in " FIX "/case_odd.in.safetensors --out %s --dtype f64", base, out);
    expect_fail(cmd, "--dtype", out);
    snprintf(cmd, sizeof cmd, "%s --in " FIX "/case_odd.in.safetensors --out %s --threads zero", base, out);
    expect_fail(cmd, "--threads", out);
    snprintf(cmd, sizeof cmd, "%s --in " FIX "/case_odd.in.safetensors --out %s --bogus", base, out);
    expect_fail(cmd, "--bogus", out);
    snprintf(cmd, sizeof cmd, "%s --in " FIX "/case_odd.in.safetensors", base);
    expect_fail(cmd, "--out", NULL);
    expect_fail("./ditrt frobnicate", "frobnicate", NULL);

    /* inputs: a model's weights file is not an inputs file */
    snprintf(cmd, sizeof cmd, "%s --in " FIX "/transformer/diffusion_pytorch_model.safetensors --out %s", base, out);
    expect_fail(cmd, "\"hidden_states\" is missing", out);
    /* wrong channel count */
    snprintf(in, sizeof in, "%s/in.safetensors", tmp);
    float hs[1 * 4 * 4 * 4] = {0} /* the largest shape viewed below: [1, 4, 4, 4] */, ehs[1 * 2 * 32] = {0}, t[1] = {1}, res[2] = {512, 512}, ar[1] = {1}, mask[2] = {1, 0.5f};
    int64_t s_hs[4] = {1, 3, 4, 4}, s_ehs[3] = {1, 2, 32}, s_t[1] = {1}, s_res[2] = {1, 2}, s_ar[2] = {1, 1}, s_m[2] = {1, 2};
    dt_tensor th = dt_tensor_view(hs, DT_F32, 4, s_hs), te = dt_tensor_view(ehs, DT_F32, 3, s_ehs),
              tt = dt_tensor_view(t, DT_F32, 1, s_t), tr = dt_tensor_view(res, DT_F32, 2, s_res),
              ta = dt_tensor_view(ar, DT_F32, 2, s_ar), tm = dt_tensor_view(mask, DT_F32, 2, s_m);
    dt_st_item items[6] = {{"hidden_states", &th}, {"encoder_hidden_states", &te}, {"timestep", &tt},
                           {"resolution", &tr}, {"aspect_ratio", &ta}, {"encoder_attention_mask", &tm}};
    dt_err e = {0};
    assert_int_equal(dt_st_write(in, items, 5, &e), DT_OK);
    snprintf(cmd, sizeof cmd, "%s --in %s --out %s", base, in, out);
    expect_fail(cmd, "\"hidden_states\" has shape [1, 3, 4, 4], expected [-1, 4, -1, -1]", out);
    /* odd latent size, not a multiple of the patch */
    int64_t s_hs2[4] = {1, 4, 3, 4};
    th = dt_tensor_view(hs, DT_F32, 4, s_hs2);
    assert_int_equal(dt_st_write(in, items, 5, &e), DT_OK);
    expect_fail(cmd, "multiples of patch_size", out);
    /* this model needs resolution/aspect_ratio */
    int64_t s_hs3[4] = {1, 4, 4, 4};
    th = dt_tensor_view(hs, DT_F32, 4, s_hs3);
    assert_int_equal(dt_st_write(in, items, 3, &e), DT_OK);
    expect_fail(cmd, "\"resolution\" is missing", out);
    /* a mask that is not 0/1 */
    assert_int_equal(dt_st_write(in, items, 6, &e), DT_OK);
    expect_fail(cmd, "encoder_attention_mask", out);
    /* a truncated inputs file */
    FILE *f = fopen(in, "r+b");
    assert_non_null(f);
    assert_int_equal(ftruncate(fileno(f), 20), 0);
    fclose(f);
    expect_fail(cmd, in, out);
}

static void test_failed_run_keeps_existing_output(void **state)
{
    (void)state;
    char cmd[2048], out[512];
    snprintf(out, sizeof out, "%s/keep.safetensors", tmp);
    tu_write_file(out, "user data", 9);
    snprintf(cmd, sizeof cmd, "./ditrt eval transformer -m " FIX " --in /nonexistent --out %s", out);
    char err[4096];
    assert_int_not_equal(run(cmd, err, sizeof err), 0);
    FILE *f = fopen(out, "rb");
    char buf[32] = {0};
    assert_int_equal(fread(buf, 1, sizeof buf, f), 9);
    fclose(f);
    assert_string_equal(buf, "user data");
}

static void test_info(void **state)
{
    (void)state;
    char cmd[1024], out[512];
    snprintf(out, sizeof out, "%s/info.txt", tmp);
    snprintf(cmd, sizeof cmd, "./ditrt info -m tests/fixtures/pixart-sigma-tiny > %s", out);
    assert_int_equal(system(cmd), 0);
    FILE *f = fopen(out, "r");
    char buf[4096] = {0};
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    assert_non_null(strstr(buf, "blocks: 3, hidden: 48, heads: 2 x 24"));
    assert_non_null(strstr(buf, "parameters: 148544 (file holds 148544)"));
    assert_non_null(strstr(buf, "f32=148544"));
    assert_non_null(strstr(buf, "interpolation_scale: 2"));
    expect_fail("./ditrt info -m /nope", "/nope", NULL);
    expect_fail("./ditrt bench transformer --res 500", "--res", NULL);
    expect_fail("./ditrt bench transformer --arch sd15", "--arch", NULL);
}

/* `ditrt CMD --help` prints that command's usage (not every command's) and exits 0; a prompt
 * that happens to be "--help" is still a prompt (tests/test_cli_args.c has the rest). */
static void test_help(void **state)
{
    (void)state;
    const char *cmds[][2] = {{"txt2img --help", "txt2img"}, {"txt2vid -h", "txt2vid"}, {"quantize --help", "quantize"},
                             {"bench transformer --help", "bench"}, {"eval transformer -h", "eval"}};
    char cmd[512], out[8192], want[64];
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        snprintf(cmd, sizeof cmd, "./ditrt %s", cmds[i][0]);
        assert_int_equal(tu_run(tmp, cmd, 1, out, sizeof out), 0);
        snprintf(want, sizeof want, "usage: ditrt %s", cmds[i][1]);
        if (strncmp(out, want, strlen(want))) fail_msg("%s printed: %s", cmd, out);
        if (i && strstr(out, "txt2img -m MODEL_DIR")) fail_msg("%s printed txt2img's usage too: %s", cmd, out);
    }
    expect_fail("./ditrt txt2img -p --help", "-m", NULL); /* the prompt is "--help"; the model is missing */
}

/* --solver ddim on a DPM-Solver folder: DDIM's default clip_sample=true clips the latents
 * (diffusers does the same); the run succeeds with one warning line, none with -q, and none
 * with the folder's own solver. */
static void test_ddim_clip_warning(void **state)
{
    (void)state;
    char cmd[1024], err[4096];
    const char *base = "./ditrt txt2img -m tests/fixtures/pixart-pipe-tiny -p x --steps 2 -W 64 -H 64 --no-binning "
                       "--dtype f32 --text-encoder-dtype f32 --threads 1";
    snprintf(cmd, sizeof cmd, "%s --solver ddim -o %s/a.png", base, tmp);
    assert_int_equal(run(cmd, err, sizeof err), 0);
    /* (64x64 on this 128 px model adds the size warning's line) */
    if (!strstr(err, "warning: DDIMScheduler clips") || !strstr(err, "--clip-sample off")) fail_msg("stderr: %s", err);
    snprintf(cmd, sizeof cmd, "%s --solver ddim -q -o %s/b.png", base, tmp);
    assert_int_equal(run(cmd, err, sizeof err), 0);
    assert_string_equal(err, "");
    snprintf(cmd, sizeof cmd, "%s -o %s/c.png", base, tmp);
    assert_int_equal(run(cmd, err, sizeof err), 0);
    assert_null(strstr(err, "DDIMScheduler clips"));
    snprintf(cmd, sizeof cmd, "%s --solver ddim --clip-sample off -o %s/d.png", base, tmp);
    assert_int_equal(run(cmd, err, sizeof err), 0);
    assert_null(strstr(err, "DDIMScheduler clips"));
}

/* A CPU without native bf16 (forced with ONEDNN_MAX_CPU_ISA=AVX2, so this runs on every machine):
 * the default dtype is f32 and recorded as such; an explicit bf16 is one line naming the ISA,
 * and writes nothing, naming the opt-in of emulated bf16 (DITRT_BF16_EMULATED=1, off here whatever
 * the caller's environment says); every command that builds a backend says the same. With the
 * opt-in the default dtype stays f32 (emulation is for testing, never a default). */
static void test_no_bf16_cpu(void **state)
{
    (void)state;
    char cmd[1024], out[512];
    const char *base = "DITRT_BF16_EMULATED=0 ONEDNN_MAX_CPU_ISA=AVX2 ./ditrt txt2img -m tests/fixtures/pixart-pipe-tiny "
                       "-p x --steps 1 -W 64 -H 64 --threads 1";
    snprintf(out, sizeof out, "%s/nobf16.png", tmp);
    snprintf(cmd, sizeof cmd, "%s --dtype bf16 -o %s", base, out);
    expect_fail(cmd, "no native bf16 (oneDNN ISA avx2; bf16 needs AVX512-BF16 or AMX): use f32 (or, for testing, "
                     "DITRT_BF16_EMULATED=1 emulates it", out);
    snprintf(cmd, sizeof cmd, "%s --dtype f32 --text-encoder-dtype bf16 -o %s", base, out);
    expect_fail(cmd, "no native bf16", out);
    snprintf(cmd, sizeof cmd, "DITRT_BF16_EMULATED=0 ONEDNN_MAX_CPU_ISA=AVX2 ./ditrt eval transformer -m " FIX
             " --in " FIX "/case_square.in.safetensors --out %s/o.safetensors --dtype bf16", tmp);
    snprintf(out, sizeof out, "%s/o.safetensors", tmp);
    expect_fail(cmd, "no native bf16", out);
    snprintf(out, sizeof out, "%s/nobf16.png", tmp);
    snprintf(cmd, sizeof cmd, "DITRT_BF16_EMULATED=1 %s --json -q -o %s", base + strlen("DITRT_BF16_EMULATED=0 "), out);
    char json[4096];
    if (tu_run(tmp, cmd, 1, json, sizeof json) != 0) fail_msg("default dtype on an AVX2 CPU failed: %s", json);
    if (!strstr(json, "\"dtype\":\t\"f32\"")) fail_msg("default dtype on an AVX2 CPU is not f32: %s", json);
    assert_true(tu_exists(out));
}

/* --text-encoder-dtype int8: T5's weights in int8 (f32 compute), recorded in --json; a CLIP
 * pipeline and unknown values are refused in one line with nothing written. */
static void test_text_encoder_int8(void **state)
{
    (void)state;
    char cmd[1024], out[512], json[4096];
    snprintf(out, sizeof out, "%s/t5int8.png", tmp);
    snprintf(cmd, sizeof cmd, "./ditrt txt2img -m tests/fixtures/pixart-pipe-tiny -p 'a cat' --steps 2 -W 64 -H 64 "
             "--dtype f32 --text-encoder-dtype int8 --threads 1 --json -q -o %s", out);
    if (tu_run(tmp, cmd, 1, json, sizeof json) != 0) fail_msg("int8 text encoder failed: %s", json);
    if (!strstr(json, "\"text_dtype\":\t\"int8\"")) fail_msg("--json does not say text_dtype int8: %s", json);
    assert_true(tu_exists(out));
    remove(out);
    snprintf(cmd, sizeof cmd, "./ditrt txt2img -m tests/fixtures/sd-15-tiny -p 'a cat' --steps 1 -W 64 -H 64 "
             "--text-encoder-dtype int8 -o %s", out);
    expect_fail(cmd, "only T5 text encoders take int8 weights (tests/fixtures/sd-15-tiny/text_encoder is CLIP)", out);
    snprintf(cmd, sizeof cmd, "./ditrt txt2img -m tests/fixtures/pixart-pipe-tiny -p x --text-encoder-dtype i8 -o %s", out);
    expect_fail(cmd, "--text-encoder-dtype: expected f32, bf16 or int8, got \"i8\"", out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_bf16_cpu),
        cmocka_unit_test(test_text_encoder_int8),
        cmocka_unit_test(test_eval_writes_sample),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_failed_run_keeps_existing_output),
        cmocka_unit_test(test_info),
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_ddim_clip_warning),
    };
    return cmocka_run_group_tests_name("cli", tests, setup, teardown);
}
