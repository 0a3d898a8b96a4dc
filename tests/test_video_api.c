/* The public C API for video (include/ditrt.h): ditrt_generate_video on the tiny Latte
 * pipeline gives the frames `ditrt txt2vid` writes (PNG, lossless) byte for byte; the wrong
 * call for a context's kind and bad requests fail with a message. */
#include "testutil.h"
#include "ditrt.h"
#include "runtime/io/video.h"
#include <sys/stat.h>

#define PIPE "tests/fixtures/latte-pipe-tiny"

static ditrt_ctx *open_ctx_solver(const char *dir, const char *solver)
{
    ditrt_ctx_params cp;
    ditrt_ctx_params_init(&cp);
    cp.model_dir = dir;
    cp.dtype = cp.text_dtype = "f32";
    cp.solver = solver;
    cp.threads = 1; /* as the CLI runs below: oneDNN's f32 GEMMs may round differently per thread count */
    ditrt_ctx *c = NULL;
    if (ditrt_ctx_create(&cp, &c) != DITRT_OK) fail_msg("%s", ditrt_errmsg(c));
    return c;
}

static ditrt_ctx *open_ctx(const char *dir) { return open_ctx_solver(dir, NULL); }

static int steps_seen;
static int on_step(int step, int steps, double s, void *u) { (void)steps; (void)s; (void)u; steps_seen = step; return 0; }

/* One 3-frame clip through the API (solver NULL: the folder's) and through `ditrt txt2vid`
 * with cli_flags; the PNG frames must be the same bytes. */
static void same_as_cli(const char *solver, float eta, const char *cli_flags)
{
    ditrt_ctx *c = open_ctx_solver(PIPE, solver);
    ditrt_gen_params gp;
    ditrt_gen_params_init_video(&gp);
    assert_int_equal(gp.steps, 50); /* LattePipeline's defaults */
    assert_true(gp.cfg == 7.5f);
    gp.prompt = "A paper boat drifting down a rainy street.";
    gp.seed = 3;
    gp.width = gp.height = 48;
    gp.frames = 3;
    gp.steps = 3;
    gp.cfg = 4.5f;
    gp.eta = eta;
    gp.progress = on_step;
    ditrt_video *v = NULL;
    int n = 0;
    steps_seen = 0;
    if (ditrt_generate_video(c, &gp, &v, &n) != DITRT_OK) fail_msg("%s", ditrt_errmsg(c));
    assert_int_equal(n, 1);
    assert_int_equal(steps_seen, 3);
    assert_int_equal(v[0].frames, 3);
    assert_int_equal(v[0].width, 48);
    assert_string_equal(ditrt_errmsg(c), "");
    char tmp[64], cmd[1024];
    tu_tmpdir(tmp, sizeof tmp);
    snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=1 ./ditrt txt2vid -m " PIPE " --dtype f32 --text-encoder-dtype f32 -q -p '%s' "
             "--seed 3 -W 48 -H 48 --frames 3 --steps 3 --cfg 4.5 %s -o %s/", gp.prompt, cli_flags, tmp);
    assert_int_equal(system(cmd), 0);
    dt_video cli;
    dt_err e = {0};
    if (dt_video_read(tmp, &cli, &e) != DT_OK) fail_msg("%s", e.msg);
    assert_int_equal(cli.frames, 3);
    assert_memory_equal(cli.rgb, v[0].rgb, (size_t)3 * 48 * 48 * 3);
    dt_video_free(&cli);
    tu_rmtree(tmp);
    ditrt_videos_free(v, n);
    ditrt_ctx_free(c);
}

static void test_same_frames_as_cli(void **state)
{
    (void)state;
    if (access("./ditrt", X_OK)) { printf("  skipped: ./ditrt is not built (run from the repository root after make)\n"); skip(); }
    same_as_cli(NULL, 0.5f, "--eta 0.5");
    /* a solver override reaches the video pipeline (its parity: test_latte_pipeline) */
    same_as_cli("euler_a", 0, "--solver euler_a");
}

static void test_errors(void **state)
{
    (void)state;
    ditrt_ctx *c = open_ctx(PIPE);
    ditrt_gen_params gp;
    ditrt_gen_params_init_video(&gp);
    gp.prompt = "x";
    gp.steps = 1;
    ditrt_image *im = NULL;
    int n = 0;
    assert_int_equal(ditrt_generate(c, &gp, &im, &n), DITRT_EINVAL);
    assert_non_null(strstr(ditrt_errmsg(c), "ditrt_generate_video"));
    ditrt_video *v = NULL;
    gp.frames = 99;
    assert_int_equal(ditrt_generate_video(c, &gp, &v, &n), DITRT_EINVAL);
    assert_non_null(strstr(ditrt_errmsg(c), "frames"));
    assert_null(v);
    ditrt_ctx_free(c);
    c = open_ctx("tests/fixtures/pixart-pipe-tiny");
    ditrt_gen_params_init(&gp);
    gp.prompt = "x";
    assert_int_equal(ditrt_generate_video(c, &gp, &v, &n), DITRT_EINVAL);
    assert_non_null(strstr(ditrt_errmsg(c), "ditrt_generate"));
    ditrt_ctx_free(c);
    /* an unknown solver on a video folder is refused by name */
    ditrt_ctx_params cp;
    ditrt_ctx_params_init(&cp);
    cp.model_dir = PIPE;
    cp.solver = "no-such-solver";
    assert_int_equal(ditrt_ctx_create(&cp, &c), DITRT_EINVAL);
    assert_non_null(strstr(ditrt_errmsg(c), "no-such-solver"));
    ditrt_ctx_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_frames_as_cli),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
