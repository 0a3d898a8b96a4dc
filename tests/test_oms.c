/* OMS-DPM model schedules: a zoo of transformers sharing the pipeline's VAE, text encoder and
 * noise schedule, one member per model evaluation; and the latency-budget search. */
#include "testutil.h"
#include "runtime/plans/model_schedule.h"
#include "runtime/tuning/model_search.h"
#include "runtime/pipeline/pipeline.h"
#include <sys/wait.h>

#define PIPE "tests/fixtures/pixart-pipe-tiny"
#define SMALL "tests/fixtures/pixart-alpha-tiny"

static dt_pipeline *load(int with_zoo)
{
    static const char *zoo[] = {SMALL};
    dt_pipeline_config c = {.model_dir = PIPE, .dtype = DT_F32, .text_dtype = DT_F32, .zoo = with_zoo ? zoo : NULL,
                            .nzoo = with_zoo ? 1 : 0};
    dt_pipeline *p;
    dt_err err = {0};
    if (dt_pipeline_load(&c, &p, &err) != DT_OK) fail_msg("%s", err.msg);
    return p;
}

static float *generate(dt_pipeline *p, const int *ids, int n, size_t *npix)
{
    dt_gen_request r = dt_gen_request_default();
    r.prompt = "a zoo";
    r.steps = 4;
    r.width = r.height = 64;
    r.seed = 3;
    r.model_ids = ids;
    r.n_model_ids = n;
    dt_gen_result res;
    dt_err err = {0};
    if (dt_pipeline_generate(p, &r, &res, &err) != DT_OK) fail_msg("%s", err.msg);
    *npix = (size_t)3 * res.width * res.height;
    return res.pixels;
}

/* A schedule using only the pipeline's own model equals the plain pipeline bit for bit;
 * a mixed one differs and is deterministic. */
static void test_schedules(void **state)
{
    (void)state;
    dt_pipeline *plain = load(0), *zp = load(1);
    assert_int_equal(dt_pipeline_zoo_size(plain), 1);
    assert_int_equal(dt_pipeline_zoo_size(zp), 2);
    int all0[4] = {0, 0, 0, 0}, mixed[4] = {0, 1, 1, 0};
    size_t n1, n2, n3, n4;
    float *a = generate(plain, NULL, 0, &n1), *b = generate(zp, all0, 4, &n2);
    float *c = generate(zp, mixed, 4, &n3), *d = generate(zp, mixed, 4, &n4);
    assert_int_equal(n1, n2);
    assert_memory_equal(a, b, n1 * sizeof(float));
    assert_true(memcmp(a, c, n1 * sizeof(float)) != 0);
    assert_memory_equal(c, d, n1 * sizeof(float));
    free(a); free(b); free(c); free(d);
    /* wrong length, out-of-range member */
    dt_gen_request r = dt_gen_request_default();
    r.prompt = "x";
    r.steps = 4;
    r.width = r.height = 64;
    int three[3] = {0, 0, 0}, bad[4] = {0, 2, 0, 0};
    dt_gen_result res;
    dt_err err = {0};
    r.model_ids = three;
    r.n_model_ids = 3;
    assert_int_equal(dt_pipeline_generate(zp, &r, &res, &err), DT_EINVAL);
    assert_non_null(strstr(err.msg, "3 entries for 4 model evaluations"));
    dt_err_clear(&err);
    r.model_ids = bad;
    r.n_model_ids = 4;
    assert_int_equal(dt_pipeline_generate(zp, &r, &res, &err), DT_EINVAL);
    assert_non_null(strstr(err.msg, "step 1"));
    dt_pipeline_free(plain);
    dt_pipeline_free(zp);
}

static void test_incompatible_zoo(void **state)
{
    (void)state;
    static const char *zoo[] = {"tests/fixtures/latte-tiny"};
    dt_pipeline_config c = {.model_dir = PIPE, .dtype = DT_F32, .text_dtype = DT_F32, .zoo = zoo, .nzoo = 1};
    dt_pipeline *p = NULL;
    dt_err err = {0};
    assert_int_not_equal(dt_pipeline_load(&c, &p, &err), DT_OK);
    assert_null(p);
    assert_non_null(strstr(err.msg, "zoo"));
    assert_non_null(strstr(err.msg, "LatteTransformer3DModel"));
    static const char *missing[] = {"/no/zoo/member"};
    c.zoo = missing;
    dt_err_clear(&err);
    assert_int_not_equal(dt_pipeline_load(&c, &p, &err), DT_OK);
    assert_non_null(strstr(err.msg, "/no/zoo/member"));
}

static void test_schedule_files(void **state)
{
    (void)state;
    char path[] = "/tmp/ditrt-ms-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    int ids[5] = {0, 1, 1, 0, 1};
    dt_model_schedule s = {5, ids}, back;
    const char *zoo[2] = {"big", "small"};
    dt_err err = {0};
    assert_int_equal(dt_model_schedule_save(path, &s, zoo, 2, &err), DT_OK);
    assert_int_equal(dt_model_schedule_load(path, 2, &back, &err), DT_OK);
    assert_int_equal(back.n, 5);
    assert_memory_equal(back.ids, ids, sizeof ids);
    dt_model_schedule_free(&back);
    assert_int_equal(dt_model_schedule_load(path, 1, &back, &err), DT_EFORMAT); /* member 1 of a 1-model zoo */
    assert_non_null(strstr(err.msg, "step 1"));
    const char *bads[] = {"{\"models\": []}", "{\"models\": [0, \"x\"]}", "{\"format\": \"other\", \"models\": [0]}", "{\"models\": [0,"};
    for (size_t i = 0; i < sizeof bads / sizeof *bads; i++) {
        tu_write_file(path, bads[i], strlen(bads[i]));
        dt_err_clear(&err);
        if (dt_model_schedule_load(path, 2, &back, &err) == DT_OK) fail_msg("accepted: %s", bads[i]);
        assert_non_null(strstr(err.msg, path));
    }
    unlink(path);
}

/* With planning latencies given (1.0 s and 0.4 s per evaluation), a 70% budget over 3
 * evaluations needs exactly two moves to the small model; the schedule fits and replays. */
static void test_search(void **state)
{
    (void)state;
    dt_pipeline *p = load(1);
    const char *prompts[1] = {"a searched fox"};
    dt_gen_request base = dt_gen_request_default();
    base.steps = 3;
    base.width = base.height = 64;
    double lat[2] = {1.0, 0.4};
    dt_model_search s = {p, prompts, 1, base, 0, 0.7, lat, NULL, NULL};
    dt_model_search_result r;
    dt_err err = {0};
    if (dt_search_models(&s, &r, &err) != DT_OK) fail_msg("%s", err.msg);
    assert_int_equal(r.schedule.n, 3);
    int small = 0;
    for (int i = 0; i < 3; i++) small += r.schedule.ids[i] == 1;
    assert_int_equal(small, 2);
    assert_true(fabs(r.est_seconds - 1.8) < 1e-9 && r.est_seconds <= r.budget + 1e-9);
    assert_true(r.psnr > 10 && r.psnr < 200);
    dt_model_search_result_free(&r);
    /* an unreachable budget is refused */
    s.budget_ratio = 0.1;
    dt_err_clear(&err);
    assert_int_equal(dt_search_models(&s, &r, &err), DT_EINVAL);
    assert_non_null(strstr(err.msg, "budget"));
    dt_pipeline_free(p);
}

static void count_line(const char *line, void *user)
{
    (void)line;
    ++*(int *)user;
}

/* ditrt_search_models from an embedding program's side: the schedule file `ditrt
 * search-models` writes with the same settings, byte for byte, and the numbers it prints; bad
 * params are refused before any model work, the message naming the field. */
static void test_search_api(void **state)
{
    (void)state;
    char dir[256], api_out[400], cli_out[400], prompts_file[400], cmd[2048], buf[4096];
    tu_tmpdir(dir, sizeof dir);
    snprintf(api_out, sizeof api_out, "%s/api.json", dir);
    snprintf(cli_out, sizeof cli_out, "%s/cli.json", dir);
    snprintf(prompts_file, sizeof prompts_file, "%s/prompts.txt", dir);
    tu_write_file(prompts_file, "a searched fox\na cat\n", 21);
    const char *zoo[1] = {SMALL}, *prompts[2] = {"a searched fox", "a cat"};
    const double lat[2] = {1.0, 0.4};
    ditrt_search_models_params p;
    ditrt_search_models_params_init(&p);
    assert_int_equal(p.struct_size, sizeof p);
    assert_int_equal(p.steps, 20);
    p.model_dir = PIPE;
    p.zoo = zoo;
    p.nzoo = 1;
    p.dtype = "f32";
    p.prompts = prompts;
    p.nprompts = 2;
    p.steps = 3;
    p.width = p.height = 64;
    p.budget_ratio = 0.7;
    p.latency = lat;
    p.nlatency = 2;
    p.out_path = api_out;
    int lines = 0;
    p.log = count_line;
    p.log_user = &lines;
    ditrt_search_models_result r;
    ditrt_search_models_result_init(&r);
    ditrt_error err = {0};
    if (ditrt_search_models(&p, &r, &err) != DITRT_OK) fail_msg("%s", err.msg);
    assert_int_equal(r.evaluations, 3);
    assert_int_equal(r.nzoo, 2);
    assert_true(r.latency[0] == 1.0 && r.latency[1] == 0.4);
    int small = 0;
    for (int i = 0; i < 3; i++) small += r.models[i] == 1;
    assert_int_equal(small, 2);
    assert_true(fabs(r.est_seconds - 1.8) < 1e-9 && fabs(r.ref_seconds - 3.0) < 1e-9 && fabs(r.budget_seconds - 2.1) < 1e-9);
    assert_true(r.psnr > 10 && r.psnr < 200 && r.generations > 0 && r.seconds > 0);
    assert_int_equal(lines, 3); /* member 0's latency (given), two moves */
    snprintf(cmd, sizeof cmd, "./ditrt search-models -m %s --zoo %s --prompts %s --steps 3 -W 64 -H 64 --latency 1,0.4 "
             "--budget-ratio 0.7 --dtype f32 --out %s 2>/dev/null", PIPE, SMALL, prompts_file, cli_out);
    assert_int_equal(tu_run(dir, cmd, 1, buf, sizeof buf), 0);
    char line[600];
    snprintf(line, sizeof line, "%.4f s per image (all-model-0 %.4f s, budget %.4f s), mean PSNR vs all-model-0 %.2f dB, %d generations\n",
             r.est_seconds, r.ref_seconds, r.budget_seconds, r.psnr, r.generations);
    if (!strstr(buf, line)) fail_msg("the CLI printed \"%s\", the API's result is \"%s\"", buf, line);
    tu_assert_same_file(api_out, cli_out);
    ditrt_search_models_result_free(&r);
    assert_null(r.models);
    ditrt_search_models_result_free(NULL);
    /* bad params */
    assert_int_equal(ditrt_search_models(NULL, &r, &err), DITRT_EINVAL);
    assert_non_null(strstr(err.msg, "ditrt_search_models_params: NULL"));
    ditrt_search_models_params q = p;
    q.struct_size = 0;
    err = (ditrt_error){0};
    assert_int_equal(ditrt_search_models(&q, &r, &err), DITRT_EINVAL);
    assert_non_null(strstr(err.msg, "struct_size is 0"));
    const double bad_lat[2] = {1.0, -1};
    const char *fields[] = {"zoo", "latency", "latency", "budget", "prompts", "steps", "model_dir"};
    char never[400];
    snprintf(never, sizeof never, "%s/never.json", dir);
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
        q = p;
        q.out_path = never;
        switch (i) {
        case 0: q.nzoo = 0; break;
        case 1: q.nlatency = 3; break;
        case 2: q.latency = bad_lat; break;
        case 3: q.budget_ratio = 0; break;
        case 4: q.prompts = NULL; break;
        case 5: q.steps = 0; break;
        case 6: q.model_dir = NULL; break;
        }
        err = (ditrt_error){0};
        assert_int_equal(ditrt_search_models(&q, &r, &err), DITRT_EINVAL);
        if (strncmp(err.msg, fields[i], strlen(fields[i])) || strchr(err.msg, '\n'))
            fail_msg("case %zu: \"%s\" does not start with \"%s\"", i, err.msg, fields[i]);
        assert_null(r.models);
    }
    /* an unreachable budget: the search's message, no file */
    q = p;
    q.out_path = never;
    q.budget_ratio = 0.1;
    err = (ditrt_error){0};
    assert_int_equal(ditrt_search_models(&q, &r, &err), DITRT_EINVAL);
    assert_non_null(strstr(err.msg, "budget: "));
    assert_null(r.models);
    assert_int_equal(access(never, F_OK), -1);
    tu_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedules),
        cmocka_unit_test(test_incompatible_zoo),
        cmocka_unit_test(test_schedule_files),
        cmocka_unit_test(test_search),
        cmocka_unit_test(test_search_api),
    };
    return cmocka_run_group_tests_name("oms", tests, NULL, NULL);
}
