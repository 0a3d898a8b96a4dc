/* The Latte text-to-video pipeline against diffusers' LattePipeline on
 * tests/fixtures/latte-pipe-tiny (scripts/fixtures/latte_pipe.py): f32 frames, 8-bit, PSNR
 * per frame >= 40 dB, through the library and through `ditrt txt2vid`; request checks and
 * the CLI's one-line errors before any work. */
#include "testutil.h"
#include "runtime/io/image.h"
#include "runtime/pipeline/pipeline.h"
#include "runtime/core/json.h"
#include "runtime/core/safetensors.h"
#include "runtime/io/video.h"
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define PIPE "tests/fixtures/latte-pipe-tiny"

typedef struct {
    char prompt[256], negative[256], solver[64];
    int seed, width, height, frames, steps, batch, karras;
    double cfg, eta;
} case_meta;

static void read_meta(const char *name, case_meta *m)
{
    char path[512];
    snprintf(path, sizeof path, PIPE "/case_%s.json", name);
    cJSON *j;
    dt_err err = {0};
    if (dt_json_load(path, &j, &err) != DT_OK) fail_msg("%s", err.msg);
    assert_int_equal(dt_json_str(j, path, "prompt", NULL, m->prompt, sizeof m->prompt, &err), DT_OK);
    assert_int_equal(dt_json_str(j, path, "negative_prompt", NULL, m->negative, sizeof m->negative, &err), DT_OK);
    assert_int_equal(dt_json_int(j, path, "seed", 0, 0, &m->seed, &err), DT_OK);
    assert_int_equal(dt_json_int(j, path, "width", 0, 0, &m->width, &err), DT_OK);
    assert_int_equal(dt_json_int(j, path, "height", 0, 0, &m->height, &err), DT_OK);
    assert_int_equal(dt_json_int(j, path, "frames", 0, 0, &m->frames, &err), DT_OK);
    assert_int_equal(dt_json_int(j, path, "steps", 0, 0, &m->steps, &err), DT_OK);
    assert_int_equal(dt_json_num(j, path, "cfg", 0, 0, &m->cfg, &err), DT_OK);
    assert_int_equal(dt_json_int(j, path, "batch", 1, 1, &m->batch, &err), DT_OK);
    assert_int_equal(dt_json_num(j, path, "eta", 1, 0, &m->eta, &err), DT_OK);
    assert_int_equal(dt_json_str(j, path, "solver", "", m->solver, sizeof m->solver, &err), DT_OK);
    assert_int_equal(dt_json_bool(j, path, "karras", 0, &m->karras, &err), DT_OK);
    cJSON_Delete(j);
}

/* frames_u8 [B, F, H, W, 3] */
static uint8_t *expected_frames(const char *name, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, PIPE "/case_%s.safetensors", name);
    dt_safetensors *st;
    dt_err err = {0};
    if (dt_st_open(path, &st, &err) != DT_OK) fail_msg("%s", err.msg);
    const dt_st_entry *e = dt_st_find(st, "frames_u8");
    assert_non_null(e);
    assert_int_equal(e->nbytes, n);
    uint8_t *out = malloc(n);
    assert_non_null(out);
    memcpy(out, e->data, n);
    dt_st_close(st);
    return out;
}

static int steps_seen, frames_seen;
static int on_step(int step, int steps, double s, void *u) { (void)s; (void)u; steps_seen = step; assert_true(step <= steps); return 0; }
static int on_frame(int done, int total, double s, void *u) { (void)s; (void)u; frames_seen = done; assert_true(done <= total); return 0; }

static dt_pipeline *load(dt_dtype dt)
{
    dt_pipeline_config cfg = {.model_dir = PIPE, .dtype = dt, .text_dtype = DT_F32};
    dt_pipeline *p;
    dt_err err = {0};
    if (dt_pipeline_load(&cfg, &p, &err) != DT_OK) fail_msg("%s", err.msg);
    return p;
}

static void run_case(dt_pipeline *p, const char *name, double min_psnr)
{
    case_meta m;
    read_meta(name, &m);
    dt_gen_request r = dt_gen_request_default_video();
    r.prompt = m.prompt;
    r.negative_prompt = m.negative;
    r.seed = (uint64_t)m.seed;
    r.width = m.width;
    r.height = m.height;
    r.frames = m.frames;
    r.steps = m.steps;
    r.cfg = (float)m.cfg;
    r.batch = m.batch;
    r.eta = (float)m.eta;
    r.decode_chunk = 3; /* bounded batches that do not divide the frame count */
    r.progress = on_step;
    r.frame_progress = on_frame;
    dt_gen_result res;
    dt_err err = {0};
    steps_seen = frames_seen = 0;
    if (dt_pipeline_generate(p, &r, &res, &err) != DT_OK) fail_msg("%s: %s", name, err.msg);
    assert_int_equal(steps_seen, m.steps);
    assert_int_equal(frames_seen, m.batch * m.frames);
    assert_int_equal(res.frames, m.frames);
    assert_int_equal(res.batch, m.batch);
    size_t px = (size_t)m.width * m.height;
    uint8_t *ref = expected_frames(name, (size_t)m.batch * m.frames * px * 3), *rgb = malloc(px * 3);
    double worst = INFINITY;
    for (int f = 0; f < m.batch * m.frames; f++) {
        dt_image_from_float(res.pixels + (size_t)f * 3 * px, m.height, m.width, rgb);
        double psnr = dt_image_psnr(rgb, ref + (size_t)f * px * 3, m.width, m.height);
        worst = psnr < worst ? psnr : worst;
    }
    printf("  %s: worst frame PSNR %.1f dB (limit %.0f)\n", name, worst, min_psnr);
    if (!(worst >= min_psnr)) fail_msg("%s: frame PSNR %.1f dB < %.0f", name, worst, min_psnr);
    free(rgb);
    free(ref);
    free(res.pixels);
}

static void test_parity_f32(void **state)
{
    (void)state;
    dt_pipeline *p = load(DT_F32);
    assert_string_equal(dt_pipeline_solver_name(p), "DDIMScheduler");
    run_case(p, "square_s0", 40);
    run_case(p, "batch2_s5_neg", 40); /* two videos per prompt: 120 tokens, prompt rows masked */
    /* DDIM eta 0.5: step noise from the seed's generator. On the tiny model eta 0 gives the
     * same case at 40.9 dB mean, so the limit is 60 dB (measured 79.5) */
    run_case(p, "eta05_s3", 60);
    /* the other case runs through the CLI in test_cli; both here with DITRT_SLOW=1 */
    if (getenv("DITRT_SLOW")) run_case(p, "wide_s7_neg", 40);
    dt_pipeline_free(p);
}

/* The folder's scheduler swapped for another solver (`txt2vid --solver`), as diffusers users
 * do with Solver.from_config: Euler (scaled initial noise and model input), Euler ancestral
 * (step noise from the generator) and DPM-Solver++ 2M with Karras sigmas. */
static void test_parity_solvers(void **state)
{
    (void)state;
    const char *cases[] = {"euler_s1", "euler_a_s2", "dpmpp2m_karras_s4"};
    for (int i = 0; i < 3; i++) {
        case_meta m;
        read_meta(cases[i], &m);
        assert_true(m.solver[0]);
        dt_pipeline_config cfg = {.model_dir = PIPE, .dtype = DT_F32, .text_dtype = DT_F32,
                                        .solver = m.solver, .karras = m.karras};
        dt_pipeline *p;
        dt_err err = {0};
        if (dt_pipeline_load(&cfg, &p, &err) != DT_OK) fail_msg("%s", err.msg);
        assert_string_equal(dt_pipeline_solver_name(p), m.solver);
        run_case(p, cases[i], 40);
        dt_pipeline_free(p);
    }
}

/* bf16 transformer/VAE and T5 against diffusers f32 (measured 42.8 dB mean on square_s0). */
static void test_parity_bf16(void **state)
{
    (void)state;
    if (!getenv("DITRT_SLOW")) { printf("  (DITRT_SLOW=1 runs it)\n"); return; }
    dt_pipeline_config cfg = {.model_dir = PIPE, .dtype = DT_BF16, .text_dtype = DT_BF16};
    dt_pipeline *p;
    dt_err err = {0};
    if (dt_pipeline_load(&cfg, &p, &err) != DT_OK) fail_msg("%s", err.msg);
    run_case(p, "square_s0", 35);
    dt_pipeline_free(p);
}

static int cancel_at_2(int step, int steps, double s, void *u) { (void)steps; (void)s; (void)u; return step == 2; }

/* A progress callback's non-zero return stops the run with DITRT_ECANCELLED. */
static void test_cancel(void **state)
{
    (void)state;
    dt_pipeline *p = load(DT_F32);
    dt_gen_request r = dt_gen_request_default_video();
    r.prompt = "x";
    r.steps = 4;
    r.frames = 2;
    r.progress = cancel_at_2;
    dt_gen_result res;
    dt_err err = {0};
    assert_int_equal(dt_pipeline_generate(p, &r, &res, &err), DITRT_ECANCELLED);
    assert_non_null(strstr(err.msg, "step 2 of 4"));
    assert_null(res.pixels);
    dt_pipeline_free(p);
}

static void test_bad_requests(void **state)
{
    (void)state;
    dt_pipeline *p = load(DT_F32);
    dt_gen_request r = dt_gen_request_default_video();
    r.prompt = "x";
    dt_err err = {0};
    r.frames = dt_pipeline_max_frames(p) + 1;
    assert_int_equal(dt_pipeline_check(p, &r, &err), DT_EINVAL);
    assert_non_null(strstr(err.msg, "frames"));
    r.frames = -1;
    dt_err_clear(&err);
    assert_int_equal(dt_pipeline_check(p, &r, &err), DT_EINVAL);
    r.frames = 2;
    r.width = 60;
    dt_err_clear(&err);
    assert_int_equal(dt_pipeline_check(p, &r, &err), DT_EINVAL);
    assert_non_null(strstr(err.msg, "multiples of 16"));
    r.width = 0;
    dt_err_clear(&err);
    assert_int_equal(dt_pipeline_check(p, &r, &err), DT_OK);
    dt_pipeline_free(p);
    /* an image pipeline is the same pipeline: frames are refused by it, naming the kind */
    dt_pipeline_config cfg = {.model_dir = "tests/fixtures/pixart-pipe-tiny", .dtype = DT_F32, .text_dtype = DT_F32};
    dt_err_clear(&err);
    assert_int_equal(dt_pipeline_load(&cfg, &p, &err), DT_OK);
    assert_int_equal(dt_pipeline_max_frames(p), 0);
    r.frames = 2;
    assert_int_equal(dt_pipeline_check(p, &r, &err), DT_EINVAL);
    assert_non_null(strstr(err.msg, "this model makes images"));
    dt_pipeline_free(p);
}

/* Runs a shell command with stderr captured; returns the exit code. */
static int run(const char *cmd, char *err, size_t n, const char *tmp) { return tu_run(tmp, cmd, 0, err, n); }

#define T2V "./ditrt txt2vid -m " PIPE " --dtype f32 --text-encoder-dtype f32 -q"

/* `ditrt txt2vid` writes PNG frames equal to diffusers' within 40 dB, and an MP4 and a WebP
 * with 4 frames of the right size and rate. */
static void test_cli(void **state)
{
    (void)state;
    char tmp[256], cmd[2048], err[4096], p[600];
    tu_tmpdir(tmp, sizeof tmp);
    case_meta m;
    read_meta("wide_s7_neg", &m);
    /* the containers themselves are tested in test_video; here the CLI's path to them */
    const char *outs[] = {"f_%03d.png", "v.mp4", "v.webp"};
    for (int k = 0; k < (getenv("DITRT_SLOW") ? 3 : 1); k++) {
        snprintf(cmd, sizeof cmd, T2V " -p '%s' -n '%s' --seed %d -W %d -H %d --frames %d --steps %d --cfg %g --fps 6 -o %s/%s",
                 m.prompt, m.negative, m.seed, m.width, m.height, m.frames, m.steps, m.cfg, tmp, outs[k]);
        if (run(cmd, err, sizeof err, tmp) != 0) fail_msg("%s: %s", cmd, err);
        snprintf(p, sizeof p, "%s/%s", tmp, outs[k]);
        dt_video v;
        dt_err e = {0};
        if (dt_video_read(p, &v, &e) != DT_OK) fail_msg("%s", e.msg);
        assert_int_equal(v.frames, m.frames);
        assert_int_equal(v.width, m.width);
        assert_int_equal(v.height, m.height);
        if (k > 0) {
            if (!(fabs(v.fps - 6) < 0.01)) fail_msg("%s: %g fps, expected 6 (WebP: whole milliseconds)", outs[k], v.fps);
            assert_non_null(v.comment);
            assert_non_null(strstr(v.comment, "solver: DDIMScheduler"));
        } else {
            size_t px = (size_t)m.width * m.height;
            uint8_t *ref = expected_frames("wide_s7_neg", (size_t)m.frames * px * 3);
            for (int f = 0; f < m.frames; f++) {
                double psnr = dt_image_psnr(v.rgb + f * px * 3, ref + f * px * 3, m.width, m.height);
                if (!(psnr >= 40)) fail_msg("CLI frame %d: PSNR %.1f dB < 40", f, psnr);
            }
            free(ref);
        }
        dt_video_free(&v);
    }
    /* --eta: the eta case's frames */
    read_meta("eta05_s3", &m);
    snprintf(cmd, sizeof cmd, T2V " -p '%s' --seed %d -W %d -H %d --frames %d --steps %d --cfg %g --eta %g -o %s/eta/",
             m.prompt, m.seed, m.width, m.height, m.frames, m.steps, m.cfg, m.eta, tmp);
    snprintf(p, sizeof p, "%s/eta", tmp);
    assert_int_equal(mkdir(p, 0755), 0);
    if (run(cmd, err, sizeof err, tmp) != 0) fail_msg("%s: %s", cmd, err);
    dt_video v;
    dt_err e = {0};
    if (dt_video_read(p, &v, &e) != DT_OK) fail_msg("%s", e.msg);
    size_t px = (size_t)m.width * m.height;
    uint8_t *ref = expected_frames("eta05_s3", (size_t)m.frames * px * 3);
    assert_int_equal(v.frames, m.frames);
    for (int f = 0; f < m.frames; f++) {
        double psnr = dt_image_psnr(v.rgb + f * px * 3, ref + f * px * 3, m.width, m.height);
        if (!(psnr >= 60)) fail_msg("CLI --eta frame %d: PSNR %.1f dB < 60 (eta 0 gives about 41)", f, psnr);
    }
    free(ref);
    dt_video_free(&v);
    tu_rmtree(tmp);
}

/* Bad input: one stderr line, non-zero exit, nothing written. */
static void test_cli_errors(void **state)
{
    (void)state;
    char tmp[256], cmd[2048], err[4096];
    tu_tmpdir(tmp, sizeof tmp);
    const char *bad[][2] = {
        {"--frames 0 -o %s/a.mp4", "--frames"},
        {"--frames 5 -o %s/a.mp4", "video_length"},
        {"-o %s/a.avi", "unknown video output type"},
        {"-o /dev/null/x%.0s/a.mp4", "\"/dev/null\" is not a folder"},
        {"-o /dev/null/frames%.0s/", "\"/dev/null\" is not a folder"}, /* a missing folder is created; this one cannot be */
        {"-o %s/f_%%d_%%d.png", "exactly one integer conversion"},
        {"-W 60 -o %s/a.mp4", "multiples of 16"},
        {"--fps 0 -o %s/a.mp4", "--fps"},
        {"--eta -1 -o %s/a.mp4", "--eta"},
        {"--solver nope -o %s/a.mp4", "unknown solver \"nope\""},
        {"--solver euler --eta 0.5 -o %s/a.mp4", "only DDIMScheduler uses eta"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char opt[600];
        snprintf(opt, sizeof opt, bad[i][0], tmp);
        snprintf(cmd, sizeof cmd, T2V " -p x --steps 1 %s", opt);
        int rc = run(cmd, err, sizeof err, tmp);
        if (rc == 0 || !strstr(err, bad[i][1])) fail_msg("%s: rc %d, stderr \"%s\"", cmd, rc, err);
        char *nl = strchr(err, '\n');
        if (!nl || nl[1]) fail_msg("%s: expected one stderr line, got \"%s\"", cmd, err);
    }
    DIR *d = opendir(tmp);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) n += e->d_name[0] != '.';
    closedir(d);
    assert_int_equal(n, 0);
    tu_rmtree(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parity_f32),
        cmocka_unit_test(test_parity_solvers),
        cmocka_unit_test(test_parity_bf16),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_cli_errors),
    };
    return cmocka_run_group_tests_name("latte_pipeline", tests, NULL, NULL);
}
