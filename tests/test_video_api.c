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

/* What `ditrt txt2vid` does, through the public API only: ditrt_ctx_get_info, ditrt_generate_video
 * with decode_chunk and frame_progress, ditrt_video_save with the CLI's metadata: the PNG frame
 * files of `txt2vid --decode-chunk 2 -o DIR/` byte for byte; ditrt_video_load reads them back. */
static int frames_done[8], nchunks;
static int on_chunk(int done, int total, double s, void *u)
{
    (void)s;
    (void)u;
    if (nchunks < 8) frames_done[nchunks++] = done * 100 + total;
    return 0;
}

static void test_api_as_cli(void **state)
{
    (void)state;
    if (access("./ditrt", X_OK)) { printf("  skipped: ./ditrt is not built\n"); skip(); }
    ditrt_ctx *c = open_ctx(PIPE);
    ditrt_ctx_info info = {.struct_size = sizeof info};
    assert_int_equal(ditrt_ctx_get_info(c, &info), DITRT_OK);
    assert_true(info.max_frames >= 3);
    assert_string_equal(info.dtype, "f32");
    assert_int_equal(info.size_multiple % 8, 0);
    ditrt_gen_params gp;
    ditrt_gen_params_init_video(&gp);
    gp.prompt = "A paper boat drifting down a rainy street.";
    gp.seed = 5;
    gp.width = gp.height = 48;
    gp.frames = 3;
    gp.steps = 2;
    gp.decode_chunk = 2;
    gp.frame_progress = on_chunk;
    ditrt_video *v = NULL;
    int n = 0;
    nchunks = 0;
    if (ditrt_generate_video(c, &gp, &v, &n) != DITRT_OK) fail_msg("%s", ditrt_errmsg(c));
    assert_int_equal(nchunks, 2); /* frames 1-2, then 3 */
    assert_int_equal(frames_done[0], 203);
    assert_int_equal(frames_done[1], 303);
    ditrt_gen_info g = {.struct_size = sizeof g};
    assert_int_equal(ditrt_last_gen_info(c, &g), DITRT_OK);
    assert_int_equal(g.max_sequence_length, 120);
    char tmp[64], cmd[1200], sub[128], software[64];
    tu_tmpdir(tmp, sizeof tmp);
    snprintf(sub, sizeof sub, "%s/api/", tmp);
    assert_int_equal(mkdir(sub, 0755), 0);
    ditrt_output_kind kind;
    ditrt_error err = {0};
    assert_int_equal(ditrt_output_check(sub, 1, &kind, &err), DITRT_OK);
    assert_int_equal(kind, DITRT_OUTPUT_FRAME_FOLDER);
    snprintf(software, sizeof software, "ditrt %s", ditrt_version());
    ditrt_meta meta[] = {{"prompt", gp.prompt}, {"negative_prompt", ""}, {"seed", "5"}, {"steps", "2"}, {"cfg", "7.5"},
                         {"solver", info.solver}, {"model", PIPE}, {"size", "48x48"}, {"frames", "3"}, {"fps", "8"},
                         {"dtype", info.dtype}, {"Software", software}};
    if (ditrt_video_save(sub, &v[0], 8, meta, 12, &err) != DITRT_OK) fail_msg("%s", err.msg);
    snprintf(cmd, sizeof cmd, "mkdir %s/cli && ./ditrt txt2vid -m " PIPE " --threads 1 --dtype f32 --text-encoder-dtype f32 -q "
             "-p '%s' --seed 5 -W 48 -H 48 --frames 3 --steps 2 --decode-chunk 2 -o %s/cli/ && "
             "for f in 000 001 002; do cmp %s/api/frame_$f.png %s/cli/frame_$f.png || exit 1; done",
             tmp, gp.prompt, tmp, tmp, tmp);
    assert_int_equal(system(cmd), 0);
    ditrt_video back;
    double fps = -1;
    assert_int_equal(ditrt_video_load(sub, &back, &fps, &err), DITRT_OK);
    assert_int_equal(back.frames, 3);
    assert_true(fps == 0);
    assert_memory_equal(back.rgb, v[0].rgb, (size_t)3 * 48 * 48 * 3);
    ditrt_video_free(&back);
    tu_rmtree(tmp);
    ditrt_videos_free(v, n);
    ditrt_ctx_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_frames_as_cli),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_api_as_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
