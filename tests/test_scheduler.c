/* DPMSolverMultistepScheduler against diffusers 0.30.3 (tests/fixtures/scheduler): for every
 * recorded config and step count, the noise schedule (alphas_cumprod) and sigmas bit for bit,
 * the timesteps exactly, and each step's prev_sample, stepping on our own previous output,
 * bit for bit (the f32 operations are diffusers' own, exp/log rounded as torch's SLEEF
 * kernels round them); a step off by more than relative L2 1e-6 is reported first. Bad
 * configs fail at load with a message naming the field. */
#include "testutil.h"
#include "runtime/core/safetensors.h"
#include "schedulers/scheduler.h"
#include "schedulers/scheduler_impl.h"
#include <dirent.h>
#include <sys/stat.h>

#define SCHED "tests/fixtures/scheduler"
#define STEP_TOL 1e-6

static void check_alphas_cumprod(const char *dir, const dt_st_entry *ref)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/scheduler_config.json", dir);
    dt_err e = {0};
    cJSON *cfg;
    dt_beta_config bc;
    float *trained;
    if (dt_scheduler_config_load(path, &cfg, &e) != DT_OK || dt_beta_config_read(cfg, path, &bc, &trained, &e) != DT_OK)
        fail_msg("%s", e.msg);
    size_t n = ref->nbytes / 4;
    assert_int_equal((size_t)bc.num_train_timesteps, n);
    float *ac = tu_poisoned(n);
    assert_int_equal(dt_alphas_cumprod(&bc, path, ac, &e), DT_OK);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += ac[i] != ((const float *)ref->data)[i];
    if (bad) fail_msg("%s: %zu of %zu alphas_cumprod differ from torch", dir, bad, n);
    free(ac);
    free(trained);
    cJSON_Delete(cfg);
}

typedef struct { int files, steps, exact_steps; double worst; } tally;

static void check_case(const char *dir, const char *file, int steps, tally *t)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    dt_safetensors *st;
    dt_err e = {0};
    if (dt_st_open(path, &st, &e) != DT_OK) fail_msg("%s", e.msg);
    check_alphas_cumprod(dir, tu_st_need(st, "alphas_cumprod"));

    dt_scheduler *s;
    if (dt_scheduler_load(dir, &s, &e) != DT_OK || dt_scheduler_set_timesteps(s, steps, &e) != DT_OK)
        fail_msg("%s: %s", path, e.msg);
    const dt_st_entry *ts = tu_st_need(st, "timesteps"), *sg = tu_st_need(st, "sigmas");
    int k = (int)(ts->nbytes / 4);
    if (dt_scheduler_num_steps(s) != k) fail_msg("%s: %d timesteps, diffusers has %d", path, dt_scheduler_num_steps(s), k);
    for (int i = 0; i < k; i++)
        if (dt_scheduler_timesteps(s)[i] != ((const int32_t *)ts->data)[i])
            fail_msg("%s: timestep %d is %g, diffusers has %d", path, i, dt_scheduler_timesteps(s)[i], ((const int32_t *)ts->data)[i]);
    for (int i = 0; i <= k; i++)
        if (dt_scheduler_sigmas(s)[i] != ((const float *)sg->data)[i])
            fail_msg("%s: sigma %d is %.9g, diffusers has %.9g", path, i, dt_scheduler_sigmas(s)[i], ((const float *)sg->data)[i]);

    const dt_st_entry *x0 = tu_st_need(st, "sample"), *mo = tu_st_need(st, "model_output"), *pv = tu_st_need(st, "prev_sample");
    size_t n = x0->nbytes / 4;
    assert_int_equal(mo->nbytes, (size_t)k * n * 4);
    float *x = tu_alloc(n);
    memcpy(x, x0->data, n * 4);
    for (int i = 0; i < k; i++) {
        const float *want = (const float *)pv->data + (size_t)i * n;
        if (dt_scheduler_step(s, (const float *)mo->data + (size_t)i * n, x, x, n, &e) != DT_OK)
            fail_msg("%s: step %d: %s", path, i, e.msg);
        double err = tu_rel_l2(x, want, n);
        if (!(err <= STEP_TOL)) fail_msg("%s: step %d: relative L2 %.3g vs diffusers (limit %g)", path, i, err, STEP_TOL);
        t->worst = err > t->worst ? err : t->worst;
        t->exact_steps += memcmp(x, want, n * 4) == 0;
        t->steps++;
    }
    assert_int_equal(dt_scheduler_step_index(s), k);
    assert_int_equal(dt_scheduler_step(s, x, x, x, n, &e), DT_EINVAL); /* no steps left */
    if (getenv("DITRT_VERBOSE")) printf("    %s: worst %.3g\n", path, t->worst);
    t->files++;
    free(x);
    dt_scheduler_free(s);
    dt_st_close(st);
}

static void test_dpm_matches_diffusers(void **state)
{
    (void)state;
    tally t = {0};
    DIR *top = opendir(SCHED);
    assert_non_null(top);
    struct dirent *c;
    while ((c = readdir(top))) {
        if (c->d_name[0] == '.') continue;
        char dir[1024];
        snprintf(dir, sizeof dir, SCHED "/%s", c->d_name);
        DIR *d = opendir(dir);
        if (!d) continue;
        struct dirent *f;
        while ((f = readdir(d))) {
            int steps;
            char tail[32];
            if (sscanf(f->d_name, "steps%d.%31s", &steps, tail) == 2 && !strcmp(tail, "safetensors"))
                check_case(dir, f->d_name, steps, &t);
        }
        closedir(d);
    }
    closedir(top);
    printf("  scheduler parity: %d loops, %d steps, %d bit-identical to diffusers, worst relative L2 %.3g\n",
           t.files, t.steps, t.exact_steps, t.worst);
    assert_true(t.files >= 25);
    if (t.exact_steps != t.steps) fail_msg("%d of %d steps are not bit-identical to diffusers", t.steps - t.exact_steps, t.steps);
}

/* Above 2^16 elements the step runs multithreaded; every tile must still match. */
static void test_large_n_threaded(void **state)
{
    (void)state;
    const char *dir = SCHED "/order3";
    dt_safetensors *st;
    dt_err e = {0};
    if (dt_st_open(SCHED "/order3/steps20.safetensors", &st, &e) != DT_OK) fail_msg("%s", e.msg);
    const dt_st_entry *x0 = tu_st_need(st, "sample"), *mo = tu_st_need(st, "model_output"), *pv = tu_st_need(st, "prev_sample");
    size_t m = x0->nbytes / 4, tiles = 600, n = m * tiles;
    int k = (int)(mo->nbytes / 4 / m);
    float *x = tu_alloc(n), *out = tu_alloc(n);
    for (size_t t = 0; t < tiles; t++) memcpy(x + t * m, x0->data, m * 4);
    dt_scheduler *s;
    if (dt_scheduler_load(dir, &s, &e) != DT_OK || dt_scheduler_set_timesteps(s, 20, &e) != DT_OK) fail_msg("%s", e.msg);
    for (int i = 0; i < k; i++) {
        for (size_t t = 0; t < tiles; t++) memcpy(out + t * m, (const float *)mo->data + (size_t)i * m, m * 4);
        assert_int_equal(dt_scheduler_step(s, out, x, x, n, &e), DT_OK);
        for (size_t t = 0; t < tiles; t++)
            if (memcmp(x + t * m, (const float *)pv->data + (size_t)i * m, m * 4))
                fail_msg("step %d: tile %zu differs from diffusers", i, t);
    }
    free(x);
    free(out);
    dt_scheduler_free(s);
    dt_st_close(st);
}

/* ---- bad configs ---- */

static char tmp[256];
static int setup(void **state) { (void)state; tu_tmpdir(tmp, sizeof tmp); return 0; }
static int teardown(void **state) { (void)state; tu_rmtree(tmp); return 0; }

static void expect_load_error(const char *json, const char *needle)
{
    char path[512];
    snprintf(path, sizeof path, "%s/scheduler_config.json", tmp);
    tu_write_file(path, json, strlen(json));
    dt_scheduler *s = (dt_scheduler *)1;
    dt_err e = {0};
    if (dt_scheduler_load(tmp, &s, &e) == DT_OK) fail_msg("accepted: %s", json);
    assert_null(s);
    if (!strstr(e.msg, needle)) fail_msg("message \"%s\" lacks \"%s\"", e.msg, needle);
    if (!strstr(e.msg, "scheduler_config.json")) fail_msg("message \"%s\" does not name the file", e.msg);
}

#define DPM "{\"_class_name\": \"DPMSolverMultistepScheduler\", "
static void test_bad_configs(void **state)
{
    (void)state;
    expect_load_error("{\"_class_name\": \"KDPM2DiscreteScheduler\"}", "\"KDPM2DiscreteScheduler\"");
    expect_load_error("{\"beta_start\": 0.1}", "_class_name");
    expect_load_error(DPM "\"thresholding\": true}", "thresholding");
    expect_load_error(DPM "\"use_lu_lambdas\": true}", "use_lu_lambdas");
    expect_load_error(DPM "\"algorithm_type\": \"sde-dpmsolver++\"}", "algorithm_type");
    expect_load_error(DPM "\"solver_type\": \"euler\"}", "solver_type");
    expect_load_error(DPM "\"solver_order\": 4}", "solver_order");
    expect_load_error(DPM "\"prediction_type\": \"flow\"}", "prediction_type");
    expect_load_error(DPM "\"timestep_spacing\": \"karras\"}", "timestep_spacing");
    expect_load_error(DPM "\"final_sigmas_type\": \"one\"}", "final_sigmas_type");
    expect_load_error(DPM "\"algorithm_type\": \"dpmsolver\"}", "final_sigmas_type");
    expect_load_error(DPM "\"beta_schedule\": \"sigmoid\"}", "beta_schedule");
    expect_load_error(DPM "\"trained_betas\": [0.1, 0.2]}", "trained_betas");
    expect_load_error(DPM "\"solver_order\": \"two\"}", "solver_order");
    expect_load_error(DPM "\"solver_order\": 2,,}", "malformed JSON");
    dt_scheduler *s;
    dt_err e = {0};
    assert_int_not_equal(dt_scheduler_load("/nonexistent/sched", &s, &e), DT_OK);
    assert_non_null(strstr(e.msg, "/nonexistent/sched/scheduler_config.json"));
}

static void test_usage_errors(void **state)
{
    (void)state;
    char path[512];
    const char *json = DPM "\"lambda_min_clipped\": -Infinity, \"variance_type\": \"learned_range\"}";
    snprintf(path, sizeof path, "%s/scheduler_config.json", tmp);
    tu_write_file(path, json, strlen(json));
    dt_scheduler *s;
    dt_err e = {0};
    assert_int_equal(dt_scheduler_load(tmp, &s, &e), DT_OK);
    assert_string_equal(dt_scheduler_class(s), "DPMSolverMultistepScheduler");
    assert_true(dt_scheduler_init_noise_sigma(s) == 1.0);
    float x[6] = {1, 2, 3, 4, 5, 6}, m[6] = {0};
    assert_int_equal(dt_scheduler_step(s, m, x, x, 6, &e), DT_EINVAL); /* before set_timesteps */
    dt_err_clear(&e);
    assert_int_equal(dt_scheduler_set_timesteps(s, 0, &e), DT_EINVAL);
    dt_err_clear(&e);
    assert_int_equal(dt_scheduler_set_timesteps(s, 5, &e), DT_OK);
    assert_int_equal(dt_scheduler_step(s, m, x, x, 6, &e), DT_OK);
    assert_int_equal(dt_scheduler_step(s, m, x, x, 4, &e), DT_EINVAL); /* n changed mid-loop */
    dt_err_clear(&e);
    /* a new loop may change n */
    assert_int_equal(dt_scheduler_set_timesteps(s, 3, &e), DT_OK);
    for (int i = 0; i < 3; i++) assert_int_equal(dt_scheduler_step(s, m, x, x, 4, &e), DT_OK);
    dt_scheduler_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dpm_matches_diffusers),
        cmocka_unit_test(test_large_n_threaded),
        cmocka_unit_test_setup_teardown(test_bad_configs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
