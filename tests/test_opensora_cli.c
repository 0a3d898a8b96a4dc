/* Open-Sora (STDiT) end to end on the tiny OpenSoraPipeline folder (tests/fixtures/stdit-tiny/
 * pipe): `ditrt txt2vid` into every output format, and each acceleration the video pipelines
 * have (DiTFastAttn plans with spatial and temporal rows, ViDiT-Q plans, USF solver schedules,
 * OMS-DPM zoos) made by its CLI command and by its C API call (the same file), then run by
 * `txt2vid` and by ditrt_generate_video (the same frames, byte for byte). Model parity and the
 * sampler's steps: tests/test_stdit.c. */
#include "testutil.h"
#include "ditrt.h"
#include "runtime/io/video.h"
#include <sys/stat.h>

#define PIPE "tests/fixtures/stdit-tiny/pipe"
#define PROMPT "a red fox"
#define W 48
#define H 64
#define FRAMES 3 /* of the model's 4 (video_length): --frames reaches the pipeline */
#define STEPS 4
/* threads 1 in both: oneDNN's f32 GEMMs may round differently per thread count */
#define T2V "./ditrt txt2vid -m " PIPE " -p '" PROMPT "' --frames 3 -W 48 -H 64 --cfg 7 --seed 5 --dtype f32 " \
            "--text-encoder-dtype f32 --threads 1 -q"

static int have_cli(void)
{
    if (access("./ditrt", X_OK)) { printf("  skipped: ./ditrt is not built (run from the repository root after make)\n"); return 0; }
    return 1;
}

/* What a context is made with besides the folder. */
typedef struct {
    const char *attn_plan, *quant_dir, *solver_schedule, *model_schedule;
    const char *const *zoo;
    int nzoo;
} ctx_opts;

/* One clip through the API: FRAMES frames of W x H, STEPS steps (a USF schedule fixes its own). */
static ditrt_video *api_clip(const ctx_opts *o)
{
    ditrt_ctx_params cp;
    ditrt_ctx_params_init(&cp);
    cp.model_dir = PIPE;
    cp.dtype = cp.text_dtype = "f32";
    cp.threads = 1;
    cp.attn_plan = o->attn_plan;
    cp.quant_dir = o->quant_dir;
    cp.solver_schedule = o->solver_schedule;
    cp.zoo = o->zoo;
    cp.nzoo = o->nzoo;
    cp.model_schedule = o->model_schedule;
    ditrt_ctx *c = NULL;
    if (ditrt_ctx_create(&cp, &c) != DITRT_OK) fail_msg("ditrt_ctx_create: %s", ditrt_errmsg(c));
    ditrt_gen_params gp;
    ditrt_gen_params_init_video(&gp);
    gp.prompt = PROMPT;
    gp.width = W;
    gp.height = H;
    gp.frames = FRAMES;
    gp.steps = STEPS;
    gp.cfg = 7;
    gp.seed = 5;
    ditrt_video *v = NULL;
    int n = 0;
    if (ditrt_generate_video(c, &gp, &v, &n) != DITRT_OK) fail_msg("ditrt_generate_video: %s", ditrt_errmsg(c));
    assert_int_equal(n, 1);
    assert_int_equal(v->frames, FRAMES);
    assert_int_equal(v->width, W);
    assert_int_equal(v->height, H);
    ditrt_ctx_free(c);
    return v;
}

static size_t clip_bytes(void) { return (size_t)FRAMES * W * H * 3; }

static dt_video read_video(const char *path)
{
    dt_video v;
    dt_err e = {0};
    if (dt_video_read(path, &v, &e) != DT_OK) fail_msg("%s", e.msg);
    return v;
}

/* `T2V flags -o DIR/` (PNG frames, lossless) must give v's bytes. */
static void expect_cli(const char *flags, const ditrt_video *v)
{
    char tmp[64], cmd[2048], err[4096];
    tu_tmpdir(tmp, sizeof tmp);
    snprintf(cmd, sizeof cmd, T2V " --steps %d %s -o %s/out/", STEPS, flags, tmp);
    if (tu_run(tmp, cmd, 0, err, sizeof err)) fail_msg("%s: %s", cmd, err);
    char dir[128];
    snprintf(dir, sizeof dir, "%s/out/", tmp);
    dt_video c = read_video(dir);
    assert_int_equal(c.frames, FRAMES);
    if (memcmp(c.rgb, v->rgb, clip_bytes())) fail_msg("txt2vid %s: frames differ from ditrt_generate_video's", flags);
    dt_video_free(&c);
    tu_rmtree(tmp);
}

static int differs(const ditrt_video *a, const ditrt_video *b) { return memcmp(a->rgb, b->rgb, clip_bytes()) != 0; }

/* Mean absolute difference of two clips' 8-bit values. */
static double mean_abs(const uint8_t *a, const uint8_t *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += abs((int)a[i] - (int)b[i]);
    return s / (double)n;
}

/* ---- output formats ---- */

/* txt2vid into an MP4, an animated WebP, a frame folder and a %03d.png pattern: each holds
 * FRAMES frames of W x H; the PNG outputs are the API's frames byte for byte, the lossy
 * containers (yuv420p H.264, lossy WebP) within half the distance of an unrelated clip. */
static void test_output_formats(void **state)
{
    (void)state;
    if (!have_cli()) skip();
    ctx_opts none = {0};
    ditrt_video *api = api_clip(&none);
    /* the scale of "another clip": the API's frames against themselves upside down */
    uint8_t *flip = malloc(clip_bytes());
    assert_non_null(flip);
    for (int f = 0; f < FRAMES; f++)
        for (int y = 0; y < H; y++)
            memcpy(flip + ((size_t)f * H + y) * W * 3, api->rgb + ((size_t)f * H + H - 1 - y) * W * 3, (size_t)W * 3);
    double other = mean_abs(flip, api->rgb, clip_bytes());
    free(flip);
    printf("  flipped    mean |difference| to the API's frames: %.3f\n", other);
    char tmp[64], cmd[2048], err[4096], path[256];
    tu_tmpdir(tmp, sizeof tmp);
    const char *outs[] = {"v.mp4", "v.webp", "frames/", "f_%03d.png"};
    for (int k = 0; k < 4; k++) {
        snprintf(cmd, sizeof cmd, T2V " --steps %d -o %s/%s", STEPS, tmp, outs[k]);
        if (tu_run(tmp, cmd, 0, err, sizeof err)) fail_msg("%s: %s", cmd, err);
        snprintf(path, sizeof path, "%s/%s", tmp, outs[k]);
        dt_video v = read_video(path);
        if (v.frames != FRAMES || v.width != W || v.height != H)
            fail_msg("%s: %d frames of %dx%d, expected %d of %dx%d", outs[k], v.frames, v.width, v.height, FRAMES, W, H);
        double d = mean_abs(v.rgb, api->rgb, clip_bytes());
        printf("  %-10s mean |difference| to the API's frames: %.3f\n", outs[k], d);
        if (k >= 2 ? d != 0 : !(d < other / 2)) fail_msg("%s: mean |difference| %.3f to the API's frames", outs[k], d);
        dt_video_free(&v);
    }
    /* exactly the frames asked for: no frame_003.png */
    snprintf(path, sizeof path, "%s/frames/frame_%03d.png", tmp, FRAMES);
    assert_int_not_equal(access(path, F_OK), 0);
    snprintf(path, sizeof path, "%s/f_%03d.png", tmp, FRAMES);
    assert_int_not_equal(access(path, F_OK), 0);
    tu_rmtree(tmp);
    ditrt_videos_free(api, 1);
}

/* ---- DiTFastAttn: spatial and temporal plans ---- */

#define CALIB "./ditrt calibrate-attn -m " PIPE " --prompts %s --threshold 0.05 --window 4 --steps 4 --frames 3 " \
              "-W 48 -H 64 --cfg 7 --dtype f32 --threads 1 -q -o %s"

/* calibrate-attn decides the temporal layers too (--temporal-window, frames each side, as for
 * Latte; required for a video model); ditrt_calibrate_attn writes the same plan; txt2vid
 * --attn-plan and the API's attn_plan give the same frames, not the plain ones. */
static void test_attn_plan(void **state)
{
    (void)state;
    if (!have_cli()) skip();
    char tmp[64], cmd[2048], err[4096], prompts[128], cli_plan[128], api_plan[128];
    tu_tmpdir(tmp, sizeof tmp);
    snprintf(prompts, sizeof prompts, "%s/prompts.txt", tmp);
    tu_write_file(prompts, "a red fox\nwaves on a rocky shore\n", 33);
    snprintf(cli_plan, sizeof cli_plan, "%s/cli.json", tmp);
    snprintf(api_plan, sizeof api_plan, "%s/api.json", tmp);
    snprintf(cmd, sizeof cmd, CALIB, prompts, cli_plan);
    assert_int_not_equal(tu_run(tmp, cmd, 0, err, sizeof err), 0);
    if (!strstr(err, "--temporal-window")) fail_msg("calibrate-attn without --temporal-window: %s", err);
    snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), " --temporal-window 1");
    if (tu_run(tmp, cmd, 0, err, sizeof err)) fail_msg("%s: %s", cmd, err);

    const char *pr[] = {"a red fox", "waves on a rocky shore"};
    ditrt_attn_calib_params cp;
    ditrt_attn_calib_params_init(&cp);
    cp.model_dir = PIPE;
    cp.prompts = pr;
    cp.nprompts = 2;
    cp.out_path = api_plan;
    cp.steps = 4;
    cp.window = 4;
    cp.temporal_window = 1;
    cp.frames = FRAMES;
    cp.threshold = 0.05;
    cp.cfg = 7;
    cp.width = W;
    cp.height = H;
    cp.dtype = "f32";
    cp.threads = 1;
    ditrt_attn_calib_result r = {.struct_size = sizeof r};
    ditrt_error e = {0};
    if (ditrt_calibrate_attn(&cp, &r, &e) != DITRT_OK) fail_msg("ditrt_calibrate_attn: %s", e.msg);
    assert_int_equal(r.layers, 2);
    assert_int_equal(r.temporal_layers, 2);
    tu_assert_same_file(cli_plan, api_plan);

    ditrt_attn_plan_summary s = {.struct_size = sizeof s};
    if (ditrt_attn_plan_summarize(cli_plan, PIPE, W, H, FRAMES, &s, &e) != DITRT_OK) fail_msg("%s", e.msg);
    assert_int_equal(s.temporal_layers, 2);
    assert_int_equal(s.temporal_window, 1);
    assert_int_equal(s.frames, FRAMES);
    assert_int_equal(s.tokens, (W / 8 / 2) * (H / 8 / 2)); /* VAE 8x, patch 2 */
    for (int g = 0; g < 2; g++) { /* both kinds of layer have steps that skip work */
        int total = 0;
        for (int k = 0; k < DITRT_ATTN_NMETHODS; k++) total += s.methods[g][k];
        assert_int_equal(total, 2 * 4);
        if (!(s.methods[g][0] < total)) fail_msg("%s layers: every step full", g ? "temporal" : "spatial");
    }
    assert_true(s.attn_flops < s.attn_flops_full);

    ctx_opts none = {0}, plan = {.attn_plan = cli_plan};
    ditrt_video *plain = api_clip(&none), *fast = api_clip(&plan);
    assert_true(differs(plain, fast));
    snprintf(cmd, sizeof cmd, "--attn-plan %s", cli_plan);
    expect_cli(cmd, fast);
    ditrt_videos_free(plain, 1);
    ditrt_videos_free(fast, 1);
    tu_rmtree(tmp);
}

/* ---- ViDiT-Q plans ---- */

/* W8A8 (ditrt_quantize), W4A8 and mixed W4/W8 with the temporal group (ditrt quantize; the
 * CLI and API plans' identity and the groups: test_stdit.c's test_cli_quantize): --quant and
 * quant_dir give the same frames, each unlike the float clip and unlike each other. */
static void test_quant(void **state)
{
    (void)state;
    if (!have_cli()) skip();
    char tmp[64], cmd[2048], err[4096], plans[3][128];
    tu_tmpdir(tmp, sizeof tmp);
    const char *names[3] = {"w8a8", "w4a8", "mixed"};
    for (int k = 0; k < 3; k++) snprintf(plans[k], sizeof plans[k], "%s/%s", tmp, names[k]);
    const char *pr[] = {"a red fox", "waves on a rocky shore"};
    ditrt_quantize_params qp;
    ditrt_quantize_params_init(&qp);
    qp.model_dir = PIPE;
    qp.prompts = pr;
    qp.nprompts = 2;
    qp.out_dir = plans[0];
    qp.steps = STEPS;
    qp.frames = FRAMES;
    qp.width = W;
    qp.height = H;
    qp.dtype = "f32";
    qp.threads = 1;
    ditrt_error e = {0};
    if (ditrt_quantize(&qp, NULL, &e) != DITRT_OK) fail_msg("ditrt_quantize: %s", e.msg);
    char prompts[128];
    snprintf(prompts, sizeof prompts, "%s/prompts.txt", tmp);
    tu_write_file(prompts, "a red fox\nwaves on a rocky shore\n", 33);
    const char *flags[3] = {NULL, "--scheme w4a8 --group 16", "--scheme mixed --budget 6"};
    for (int k = 1; k < 3; k++) {
        snprintf(cmd, sizeof cmd, "./ditrt quantize -m " PIPE " --prompts %s --steps 4 --frames 3 -W 48 -H 64 --dtype f32 "
                 "--threads 1 -q %s --out %s", prompts, flags[k], plans[k]);
        if (tu_run(tmp, cmd, 0, err, sizeof err)) fail_msg("%s: %s", cmd, err);
    }
    ctx_opts none = {0};
    ditrt_video *plain = api_clip(&none), *q[3];
    for (int k = 0; k < 3; k++) {
        ctx_opts o = {.quant_dir = plans[k]};
        q[k] = api_clip(&o);
        if (!differs(plain, q[k])) fail_msg("%s: the same frames as the float model", names[k]);
        snprintf(cmd, sizeof cmd, "--quant %s", plans[k]);
        expect_cli(cmd, q[k]);
    }
    assert_true(differs(q[0], q[1]) && differs(q[0], q[2]) && differs(q[1], q[2]));
    for (int k = 0; k < 3; k++) ditrt_videos_free(q[k], 1);
    ditrt_videos_free(plain, 1);
    tu_rmtree(tmp);
}

/* ---- USF solver schedules ---- */

static char logged[4096];
static void on_log(const char *line, void *u)
{
    (void)u;
    size_t n = strlen(logged);
    snprintf(logged + n, sizeof logged - n, "%s\n", line);
}

#define SEARCH "./ditrt search-solver -m " PIPE " -p '" PROMPT "' --nfe 4 --ref-steps 10 --population 4 --generations 2 " \
               "--samples 1 --cfg 7 -W 48 -H 64 --dtype f32 --threads 1 -q -o %s"

/* The folder's IDDPMScheduler draws learned-variance noise at every step, so search-solver's
 * reference is DPM-Solver++ on its betas (what the ODE schedules approximate; it says so);
 * ditrt_search_solver writes the same schedule; --solver-schedule and solver_schedule give the
 * same frames (the schedule fixes 4 evaluations), not the folder solver's. */
static void test_solver_schedule(void **state)
{
    (void)state;
    if (!have_cli()) skip();
    char tmp[64], cmd[2048], err[4096], cli_s[128], api_s[128];
    tu_tmpdir(tmp, sizeof tmp);
    snprintf(cli_s, sizeof cli_s, "%s/cli.json", tmp);
    snprintf(api_s, sizeof api_s, "%s/api.json", tmp);
    snprintf(cmd, sizeof cmd, SEARCH, cli_s);
    if (tu_run(tmp, cmd, 0, err, sizeof err)) fail_msg("%s: %s", cmd, err);
    const char *pr[] = {PROMPT};
    ditrt_search_solver_params sp;
    ditrt_search_solver_params_init(&sp);
    sp.model_dir = PIPE;
    sp.prompts = pr;
    sp.nprompts = 1;
    sp.nfe = 4;
    sp.ref_steps = 10;
    sp.population = 4;
    sp.generations = 2;
    sp.samples = 1;
    sp.cfg = 7;
    sp.width = W;
    sp.height = H;
    sp.dtype = "f32";
    sp.threads = 1;
    sp.out_path = api_s;
    sp.log = on_log;
    logged[0] = 0;
    ditrt_search_solver_result r;
    ditrt_search_solver_result_init(&r);
    ditrt_error e = {0};
    if (ditrt_search_solver(&sp, &r, &e) != DITRT_OK) fail_msg("ditrt_search_solver: %s", e.msg);
    if (!strstr(logged, "reference: DPMSolverMultistepScheduler (the folder's IDDPMScheduler"))
        fail_msg("no word on the reference solver in:\n%s", logged);
    assert_true(r.score > 0 && r.score <= r.ddim_score);
    tu_assert_same_file(cli_s, api_s);

    ctx_opts none = {0}, usf = {.solver_schedule = cli_s};
    ditrt_video *plain = api_clip(&none), *u = api_clip(&usf);
    assert_true(differs(plain, u));
    snprintf(cmd, sizeof cmd, "--solver-schedule %s", cli_s);
    expect_cli(cmd, u);
    ditrt_videos_free(plain, 1);
    ditrt_videos_free(u, 1);
    tu_rmtree(tmp);
}

/* ---- OMS-DPM zoos ---- */

/* A zoo of the model and its W8A8 plan: search-models (latencies given, so the search is
 * deterministic) and ditrt_search_models write the same schedule, which moves some steps to
 * the plan; --zoo/--model-schedule and zoo/model_schedule give the same frames, neither the
 * float nor the all-W8A8 clip. A schedule for another step count is refused. */
static void test_zoo(void **state)
{
    (void)state;
    if (!have_cli()) skip();
    char tmp[64], cmd[2048], err[4096], plan[128], prompts[128], cli_s[128], api_s[128];
    tu_tmpdir(tmp, sizeof tmp);
    snprintf(plan, sizeof plan, "%s/w8", tmp);
    snprintf(prompts, sizeof prompts, "%s/prompts.txt", tmp);
    snprintf(cli_s, sizeof cli_s, "%s/cli.json", tmp);
    snprintf(api_s, sizeof api_s, "%s/api.json", tmp);
    tu_write_file(prompts, "a red fox\n", 10);
    snprintf(cmd, sizeof cmd, "./ditrt quantize -m " PIPE " --prompts %s --steps 4 --frames 3 -W 48 -H 64 --dtype f32 "
             "--threads 1 -q --out %s && ./ditrt search-models -m " PIPE " --zoo %s --prompts %s --out %s --budget-ratio 0.8 "
             "--latency 1,0.5 --steps 4 -W 48 -H 64 --cfg 7 --dtype f32 --threads 1",
             prompts, plan, plan, prompts, cli_s);
    if (tu_run(tmp, cmd, 0, err, sizeof err)) fail_msg("%s: %s", cmd, err);
    const char *pr[] = {PROMPT}, *zoo[] = {plan};
    const double lat[] = {1, 0.5};
    ditrt_search_models_params mp;
    ditrt_search_models_params_init(&mp);
    mp.model_dir = PIPE;
    mp.zoo = zoo;
    mp.nzoo = 1;
    mp.prompts = pr;
    mp.nprompts = 1;
    mp.steps = STEPS;
    mp.width = W;
    mp.height = H;
    mp.cfg = 7;
    mp.dtype = "f32";
    mp.threads = 1;
    mp.budget_ratio = 0.8;
    mp.latency = lat;
    mp.nlatency = 2;
    mp.out_path = api_s;
    ditrt_search_models_result r;
    ditrt_search_models_result_init(&r);
    ditrt_error e = {0};
    if (ditrt_search_models(&mp, &r, &e) != DITRT_OK) fail_msg("ditrt_search_models: %s", e.msg);
    tu_assert_same_file(cli_s, api_s);
    assert_int_equal(r.evaluations, STEPS);
    int moved = 0;
    for (int i = 0; i < r.evaluations; i++) moved += r.models[i] == 1;
    if (!(moved > 0 && moved < STEPS)) fail_msg("%d of %d steps on the W8A8 member", moved, STEPS);
    ditrt_search_models_result_free(&r);

    ctx_opts none = {0}, q = {.quant_dir = plan}, z = {.zoo = zoo, .nzoo = 1, .model_schedule = cli_s};
    ditrt_video *plain = api_clip(&none), *all8 = api_clip(&q), *mixed = api_clip(&z);
    assert_true(differs(plain, mixed) && differs(all8, mixed));
    snprintf(cmd, sizeof cmd, "--zoo %s --model-schedule %s", plan, cli_s);
    expect_cli(cmd, mixed);
    snprintf(cmd, sizeof cmd, T2V " --steps 5 --zoo %s --model-schedule %s -o %s/x/", plan, cli_s, tmp);
    assert_int_not_equal(tu_run(tmp, cmd, 0, err, sizeof err), 0);
    if (!strstr(err, "4 entries for 5 model evaluations")) fail_msg("a 4-step schedule at 5 steps: %s", err);
    ditrt_videos_free(plain, 1);
    ditrt_videos_free(all8, 1);
    ditrt_videos_free(mixed, 1);
    tu_rmtree(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_output_formats),
        cmocka_unit_test(test_attn_plan),
        cmocka_unit_test(test_quant),
        cmocka_unit_test(test_solver_schedule),
        cmocka_unit_test(test_zoo),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
