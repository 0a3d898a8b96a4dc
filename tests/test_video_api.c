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

/* ---- solver schedules, zoos and model schedules on the demo video model ---- */

#define DEMO "assets/demo-latte"
#define DEMO_PROMPT "a blue triangle moving up on a white background"

/* One demo clip through the API with the given context settings (4 steps unless a schedule
 * fixes them); the caller frees it. */
static ditrt_video *demo_clip(const char *schedule, const char *const *zoo, int nzoo, const char *model_schedule)
{
    ditrt_ctx_params cp;
    ditrt_ctx_params_init(&cp);
    cp.model_dir = DEMO;
    cp.dtype = cp.text_dtype = "f32";
    cp.threads = 1;
    cp.solver_schedule = schedule;
    cp.zoo = zoo;
    cp.nzoo = nzoo;
    cp.model_schedule = model_schedule;
    ditrt_ctx *c = NULL;
    if (ditrt_ctx_create(&cp, &c) != DITRT_OK) fail_msg("%s", ditrt_errmsg(c));
    ditrt_gen_params gp;
    ditrt_gen_params_init_video(&gp);
    gp.prompt = DEMO_PROMPT;
    gp.steps = 4;
    gp.cfg = 4.5f;
    gp.seed = 5;
    ditrt_video *v = NULL;
    int n = 0;
    if (ditrt_generate_video(c, &gp, &v, &n) != DITRT_OK) fail_msg("%s", ditrt_errmsg(c));
    assert_int_equal(n, 1);
    ditrt_ctx_free(c);
    return v;
}

/* `ditrt txt2vid` with flags into a frame folder; its frames must be v's bytes. */
static void expect_cli_frames(const char *flags, const ditrt_video *v)
{
    char tmp[64], cmd[2048];
    tu_tmpdir(tmp, sizeof tmp);
    snprintf(cmd, sizeof cmd, "./ditrt txt2vid -m " DEMO " -p '" DEMO_PROMPT "' --dtype f32 --text-encoder-dtype f32 "
             "--threads 1 -q --steps 4 --cfg 4.5 --seed 5 %s -o %s/", flags, tmp);
    if (system(cmd) != 0) fail_msg("failed: %s", cmd);
    dt_video cli;
    dt_err e = {0};
    if (dt_video_read(tmp, &cli, &e) != DT_OK) fail_msg("%s", e.msg);
    assert_int_equal(cli.frames, v->frames);
    assert_memory_equal(cli.rgb, v->rgb, (size_t)v->frames * v->width * v->height * 3);
    dt_video_free(&cli);
    tu_rmtree(tmp);
}

static int differs(const ditrt_video *a, const ditrt_video *b)
{
    return memcmp(a->rgb, b->rgb, (size_t)a->frames * a->width * a->height * 3) != 0;
}

/* A USF solver schedule (6 evaluations: the API ignores steps, txt2vid takes --steps 6 or none), and an OMS-DPM zoo whose second
 * member is the model's W8A8 plan run on the middle steps: the API and txt2vid give the same
 * frames, and each changes the clip (so the setting reached the video pipeline). */
static void test_video_schedules_and_zoo(void **state)
{
    (void)state;
    if (access("./ditrt", X_OK)) { printf("  skipped: ./ditrt is not built\n"); skip(); }
    ditrt_video *plain = demo_clip(NULL, NULL, 0, NULL);
    const char *sched = "configs/solvers/demo-pixart-usf-nfe6.json";
    ditrt_video *usf = demo_clip(sched, NULL, 0, NULL);
    assert_true(differs(plain, usf));
    expect_cli_frames("--steps 6 --solver-schedule configs/solvers/demo-pixart-usf-nfe6.json", usf);

    char tmp[64], plan[128], ms[128], prompts[128], cmd[1024];
    tu_tmpdir(tmp, sizeof tmp);
    snprintf(plan, sizeof plan, "%s/w8a8", tmp);
    snprintf(ms, sizeof ms, "%s/models.json", tmp);
    snprintf(prompts, sizeof prompts, "%s/prompts.txt", tmp);
    tu_write_file(prompts, "a red circle moving left on a black background\n", 48);
    const char *p1[] = {"a red circle moving left on a black background"};
    ditrt_quantize_params qp;
    ditrt_quantize_params_init(&qp);
    qp.model_dir = DEMO;
    qp.prompts = p1;
    qp.nprompts = 1;
    qp.out_dir = plan;
    qp.dtype = "f32";
    qp.steps = 4;
    qp.threads = 1;
    ditrt_error err = {0};
    if (ditrt_quantize(&qp, NULL, &err) != DITRT_OK) fail_msg("%s", err.msg);
    const char *schedule = "{\"format\": \"ditrt-model-schedule\", \"models\": [0, 1, 1, 0]}\n";
    tu_write_file(ms, schedule, strlen(schedule));
    const char *zoo[] = {plan};
    ditrt_video *mixed = demo_clip(NULL, zoo, 1, ms);
    assert_true(differs(plain, mixed));
    snprintf(cmd, sizeof cmd, "--zoo %s --model-schedule %s", plan, ms);
    expect_cli_frames(cmd, mixed);
    /* a schedule naming a member the zoo lacks is refused when the context is made */
    ditrt_ctx_params cp;
    ditrt_ctx_params_init(&cp);
    cp.model_dir = DEMO;
    cp.dtype = cp.text_dtype = "f32";
    cp.model_schedule = ms;
    ditrt_ctx *c = NULL;
    assert_int_not_equal(ditrt_ctx_create(&cp, &c), DITRT_OK);
    assert_non_null(strstr(ditrt_errmsg(c), "models.json"));
    ditrt_ctx_free(c);
    ditrt_videos_free(plain, 1);
    ditrt_videos_free(usf, 1);
    ditrt_videos_free(mixed, 1);
    tu_rmtree(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_frames_as_cli),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_api_as_cli),
        cmocka_unit_test(test_video_schedules_and_zoo),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
