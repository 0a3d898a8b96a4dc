/* DiTFastAttn: the banded attention kernel against the plain-C reference, plan files
 * (refusals), the plan methods against a torch reference of the same math on the tiny
 * PixArt fixture (tests/fixtures/fastattn, scripts/fixtures/fastattn.py), the cache
 * lifetime, and an all-"full" plan being bit-identical to no plan. */
#include "testutil.h"
#include "runtime/core/arena.h"
#include "runtime/plans/fastattn.h"
#include "runtime/pipeline/pipeline.h"
#include "runtime/core/safetensors.h"
#include "runtime/models/pixart.h"
#include "kernels/cpu/ref.h"

#define FIX "tests/fixtures/fastattn"
#define TINY "tests/fixtures/pixart-sigma-tiny/transformer"
#define NSTEPS 6

/* ---- window attention kernel ---- */

/* q, k, v as strided views into one fused [B, N, 3C] buffer, as the DiT block passes them */
static void check_window(dt_dtype cd, int B, int N, int heads, int d, int w, double tol)
{
    dt_backend *be = tu_backend(cd);
    tu_rng r = {(uint64_t)(N * 131 + w * 7 + heads)};
    int64_t C = (int64_t)heads * d;
    float *qkv = tu_alloc((size_t)B * N * 3 * C), *out = tu_poisoned((size_t)B * N * C), *ref = tu_alloc((size_t)B * N * C);
    tu_fill(&r, qkv, (size_t)B * N * 3 * C, 1.5f);
    int64_t s3[3] = {B, N, C};
    dt_tensor q = dt_tensor_view(qkv, DT_F32, 3, s3), k = q, v = q;
    q.strides[0] = k.strides[0] = v.strides[0] = (int64_t)N * 3 * C;
    q.strides[1] = k.strides[1] = v.strides[1] = 3 * C;
    k.data = qkv + C;
    v.data = qkv + 2 * C;
    dt_tensor to = dt_tensor_view(out, DT_F32, 3, s3), tr = dt_tensor_view(ref, DT_F32, 3, s3);
    float scale = 1.0f / sqrtf((float)d);
    dt_err err = {0};
    if (be->ops->window_attention(be, &q, &k, &v, heads, scale, w, &to, &err) != DT_OK) fail_msg("%s", err.msg);
    ref_window_attention(&q, &k, &v, heads, scale, w, &tr);
    double e = tu_rel_l2(out, ref, (size_t)B * N * C);
    if (!(e <= tol)) fail_msg("B=%d N=%d heads=%d d=%d w=%d: rel L2 %.3g > %.3g", B, N, heads, d, w, e, tol);
    if (w >= N - 1) { /* the band covers everything: plain attention */
        float *full = tu_poisoned((size_t)B * N * C);
        dt_tensor tf = dt_tensor_view(full, DT_F32, 3, s3);
        assert_int_equal(be->ops->attention(be, &q, &k, &v, NULL, heads, scale, &tf, &err), DT_OK);
        assert_rel_l2_below(out, full, (size_t)B * N * C, cd == DT_F32 ? 1e-5 : 1e-2);
        free(full);
    }
    free(qkv); free(out); free(ref);
    dt_backend_destroy(be);
}

static void test_window_kernel_f32(void **state)
{
    (void)state;
    check_window(DT_F32, 2, 37, 3, 8, 0, 1e-5);   /* the diagonal only */
    check_window(DT_F32, 2, 37, 3, 8, 5, 1e-5);   /* odd N, one tile */
    check_window(DT_F32, 1, 1, 2, 4, 3, 1e-5);    /* a single token */
    check_window(DT_F32, 2, 37, 2, 8, 36, 1e-5);  /* w = N - 1: full */
    check_window(DT_F32, 1, 50, 2, 8, 1000, 1e-5); /* w > N */
    check_window(DT_F32, 2, 301, 2, 12, 7, 1e-5); /* several tiles, the last one shifted */
    check_window(DT_F32, 1, 257, 3, 8, 140, 1e-5); /* span clamped at both edges */
    check_window(DT_F32, 1, 129, 1, 16, 64, 1e-5); /* N just above one tile */
}

static void test_window_kernel_bf16(void **state)
{
    (void)state;
    TU_REQUIRE_BF16();
    check_window(DT_BF16, 2, 37, 3, 8, 5, 2e-2);
    check_window(DT_BF16, 2, 301, 2, 12, 7, 2e-2);
    check_window(DT_BF16, 1, 257, 3, 8, 300, 2e-2);
}

/* ---- plan files ---- */

static dt_status parse(const char *json, dt_attn_plan *p, dt_err *err) { return dt_attn_plan_parse(json, "plan.json", p, err); }

static void expect_refused(const char *json, const char *needle)
{
    dt_attn_plan p;
    dt_err err = {0};
    if (parse(json, &p, &err) == DT_OK) fail_msg("accepted: %s", json);
    if (!strstr(err.msg, needle)) fail_msg("message \"%s\" does not name \"%s\"", err.msg, needle);
    assert_null(strchr(err.msg, '\n'));
}

static void test_plan_parse(void **state)
{
    (void)state;
    dt_attn_plan p;
    dt_err err = {0};
    const char *ok = "{\"model\": \"m\", \"steps\": 3, \"window\": 4, \"cfg_half\": \"uncond\", \"layers\": "
                     "[[\"full\", \"wars\", \"ast\"], [\"asc\", \"wars+asc\", \"output_share\"]]}";
    if (parse(ok, &p, &err) != DT_OK) fail_msg("%s", err.msg);
    assert_int_equal(p.layers, 2);
    assert_int_equal(p.steps, 3);
    assert_int_equal(p.window, 4);
    assert_int_equal(p.cfg_half, DT_FA_HALF_UNCOND);
    assert_int_equal(p.asc_residual, DT_FA_RES_SAME);
    assert_int_equal(dt_attn_plan_at(&p, 1, 1), DT_FA_WARS_ASC);
    assert_int_equal(dt_attn_plan_at(&p, 1, 2), DT_FA_AST);
    /* live ranges: layer 0's residual is needed after step 0 only; its output after step 1 */
    assert_true(dt_attn_plan_residual_live(&p, 0, 0));
    assert_false(dt_attn_plan_residual_live(&p, 0, 1));
    assert_false(dt_attn_plan_output_live(&p, 0, 0));
    assert_true(dt_attn_plan_output_live(&p, 0, 1));
    assert_int_equal(dt_attn_plan_check(&p, 2, 0, 3, &err), DT_OK);
    err = (dt_err){0};
    assert_int_not_equal(dt_attn_plan_check(&p, 3, 0, 3, &err), DT_OK);
    assert_non_null(strstr(err.msg, "2 layers"));
    err = (dt_err){0};
    assert_int_not_equal(dt_attn_plan_check(&p, 2, 0, 20, &err), DT_OK);
    assert_non_null(strstr(err.msg, "3 steps"));
    /* save and reload: the same plan */
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/p.json", dir);
    assert_int_equal(dt_attn_plan_save(&p, path, &err), DT_OK);
    dt_attn_plan q;
    if (dt_attn_plan_load(path, &q, &err) != DT_OK) fail_msg("%s", err.msg);
    assert_int_equal(q.layers, p.layers);
    assert_int_equal(q.cfg_half, p.cfg_half);
    assert_memory_equal(q.m, p.m, (size_t)p.layers * p.steps);
    unlink(path);
    rmdir(dir);
    dt_attn_plan_free(&q);
    dt_attn_plan_free(&p);

    expect_refused("{\"steps\": 2, \"window\": 1, \"layers\": [[\"full\", \"fast\"]]}", "layer 0 step 1: unknown method \"fast\"");
    expect_refused("{\"steps\": 2, \"window\": 1, \"layers\": [[\"full\", 3]]}", "layer 0 step 1: unknown method");
    expect_refused("{\"steps\": 2, \"window\": 1, \"layers\": [[\"full\", \"ast\"], [\"full\"]]}", "layer 1: expected an array of 2");
    expect_refused("{\"steps\": 2, \"window\": 1, \"layers\": [\"full\", \"ast\"]}", "layer 0: expected an array");
    expect_refused("{\"steps\": 2, \"window\": 1, \"layers\": [[\"full\", \"full\"], [\"ast\", \"full\"]]}", "layer 1 step 0: \"ast\" has no cached output");
    expect_refused("{\"steps\": 2, \"window\": 1, \"layers\": [[\"wars\", \"full\"]]}", "layer 0 step 0: \"wars\" has no cached residual");
    expect_refused("{\"steps\": 3, \"window\": 1, \"layers\": [[\"ast\", \"full\", \"wars\"]]}", "layer 0 step 0");
    expect_refused("{\"steps\": 1, \"window\": 1, \"layers\": [[\"wars+asc\"]]}", "layer 0 step 0: \"wars+asc\"");
    expect_refused("{\"steps\": 2, \"layers\": [[\"full\", \"ast\"]]}", "\"window\"");
    expect_refused("{\"steps\": 2, \"window\": 1, \"cfg_half\": \"both\", \"layers\": [[\"full\", \"ast\"]]}", "\"cfg_half\"");
    expect_refused("{\"steps\": 2, \"window\": 1, \"asc_residual\": \"x\", \"layers\": [[\"full\", \"ast\"]]}", "\"asc_residual\"");
    expect_refused("{\"steps\": 2, \"window\": 1, \"windows\": 3, \"layers\": [[\"full\", \"ast\"]]}", "unknown field \"windows\"");
    expect_refused("{\"steps\": 2, \"window\": -1, \"layers\": [[\"full\", \"ast\"]]}", "\"window\"");
    expect_refused("{\"steps\": 2, \"window\": 1, \"format\": \"other\", \"layers\": [[\"full\", \"ast\"]]}", "\"format\"");
    expect_refused("[1, 2]", "not a JSON object");
    err = (dt_err){0};
    assert_int_not_equal(dt_attn_plan_load(FIX "/missing.json", &p, &err), DT_OK);
    assert_non_null(strstr(err.msg, "missing.json"));
}

static void test_plan_cost(void **state)
{
    (void)state;
    dt_attn_plan p;
    dt_err err = {0};
    const char *js = "{\"steps\": 4, \"window\": 2, \"layers\": [[\"full\", \"wars\", \"ast\", \"asc\"], [\"full\", \"full\", \"full\", \"full\"]]}";
    if (parse(js, &p, &err) != DT_OK) fail_msg("%s", err.msg);
    assert_true(fabs(dt_fa_band_pairs(10, 2) - (10 * 5 - 2 * 3)) < 1e-9); /* 5 per row, minus the cut corners */
    assert_true(fabs(dt_fa_band_pairs(4, 9) - 16) < 1e-9);
    dt_attn_plan_cost c;
    int B = 2, N = 10, C = 8;
    dt_attn_plan_cost_of(&p, B, N, C, &c);
    double full = 4.0 * B * N * N * C, win = 4.0 * B * (10 * 5 - 6) * C;
    /* layer 0: full + window for the residual, window, nothing, half; layer 1: 4 full */
    assert_true(fabs(c.attn_flops - (full + win + win + 0 + 0.5 * full + 4 * full)) < 1e-6 * full);
    assert_true(fabs(c.attn_flops_full - 8 * full) < 1e-6 * full);
    /* held after step 0: the residual; after step 1: the output */
    assert_int_equal(c.cache_peak_bytes, (size_t)B * N * C * 4);
    assert_int_equal(c.count[DT_FA_FULL], 5);
    assert_int_equal(c.count[DT_FA_AST], 1);
    dt_attn_plan_free(&p);
}

/* ---- the methods against the torch reference ---- */

/* Runs the NSTEPS fixture inputs through the model with `hook` (or none) set before each. */
static void run_steps(pixart_model *m, dt_fastattn *fa, float *outs /* [NSTEPS][n] */, size_t n)
{
    const pixart_config *cfg = pixart_get_config(m);
    dt_arena arena;
    dt_arena_init(&arena);
    dt_err err = {0};
    pixart_set_attn_hook(m, fa ? dt_fastattn_hook(fa) : NULL);
    for (int k = 0; k < NSTEPS; k++) {
        char path[256];
        snprintf(path, sizeof path, FIX "/step%d.in.safetensors", k);
        pixart_input_file x;
        if (pixart_inputs_load(path, cfg, &x, &err) != DT_OK) fail_msg("%s", err.msg);
        int64_t os[4] = {x.ths.shape[0], cfg->out_channels, x.ths.shape[2], x.ths.shape[3]};
        assert_int_equal((size_t)(os[0] * os[1] * os[2] * os[3]), n);
        dt_tensor to = dt_tensor_view(outs + (size_t)k * n, DT_F32, 4, os);
        if (fa && dt_fastattn_set_step(fa, k, &err) != DT_OK) fail_msg("%s", err.msg);
        dt_arena_reset(&arena);
        if (pixart_forward(m, &x.in, &arena, &to, &err) != DT_OK) fail_msg("step %d: %s", k, err.msg);
        pixart_inputs_free(&x);
    }
    pixart_set_attn_hook(m, NULL);
    dt_arena_free(&arena);
}

#define NOUT ((size_t)2 * 8 * 16 * 16)

static void check_case(const char *name, dt_dtype cd, double tol)
{
    dt_backend *be = tu_backend(cd);
    pixart_model *m = NULL;
    dt_err err = {0};
    if (pixart_load(be, TINY, &m, &err) != DT_OK) fail_msg("%s", err.msg);
    char path[256];
    snprintf(path, sizeof path, FIX "/plan_%s.json", name);
    dt_attn_plan p;
    if (dt_attn_plan_load(path, &p, &err) != DT_OK) fail_msg("%s", err.msg);
    assert_int_equal(dt_attn_plan_check(&p, pixart_get_config(m)->num_layers, 0, NSTEPS, &err), DT_OK);
    dt_fastattn *fa = NULL;
    assert_int_equal(dt_fastattn_create(&p, 1, &fa, &err), DT_OK);
    float *outs = tu_poisoned(NSTEPS * NOUT);
    run_steps(m, fa, outs, NOUT);
    for (int k = 0; k < NSTEPS; k++) {
        snprintf(path, sizeof path, FIX "/%s_step%d.out.safetensors", name, k);
        float *want = tu_read_f32(path, "sample", NOUT, NULL, NULL);
        char label[96];
        snprintf(label, sizeof label, "%s %s step %d", name, cd == DT_F32 ? "f32" : "bf16", k);
        tu_check_rel_l2(label, outs + (size_t)k * NOUT, want, NOUT, tol);
        free(want);
    }
    /* the caches: some were held, none outlive the plan's last use */
    dt_attn_plan_cost c;
    dt_attn_plan_cost_of(&p, 2, 64, pixart_get_config(m)->inner, &c);
    assert_true(dt_fastattn_cache_peak(fa) >= c.cache_peak_bytes && c.cache_peak_bytes > 0);
    assert_int_equal(dt_fastattn_cache_bytes(fa), 0);
    dt_fastattn_free(fa);
    dt_attn_plan_free(&p);
    free(outs);
    pixart_free(m);
    dt_backend_destroy(be);
}

static void test_methods_match_torch(void **state)
{
    (void)state;
    check_case("cond", DT_F32, 1e-4);
    check_case("uncond_first", DT_F32, 1e-4);
    if (tu_have_bf16()) check_case("cond", DT_BF16, 2e-2);
}

/* A plan that reaches a step with nothing cached (the runtime's own check, not the file's). */
static void test_runtime_refusals(void **state)
{
    (void)state;
    dt_backend *be = tu_backend(DT_F32);
    pixart_model *m = NULL;
    dt_err err = {0};
    if (pixart_load(be, TINY, &m, &err) != DT_OK) fail_msg("%s", err.msg);
    dt_attn_plan p;
    assert_int_equal(dt_attn_plan_init(&p, 3, NSTEPS, 4, &err), DT_OK);
    p.m[1 * NSTEPS + 0] = DT_FA_AST; /* unvalidated: layer 1 shares an output at step 0 */
    dt_fastattn *fa = NULL;
    assert_int_equal(dt_fastattn_create(&p, 1, &fa, &err), DT_OK);
    pixart_input_file x;
    if (pixart_inputs_load(FIX "/step0.in.safetensors", pixart_get_config(m), &x, &err) != DT_OK) fail_msg("%s", err.msg);
    float *out = tu_alloc(NOUT);
    int64_t os[4] = {2, 8, 16, 16};
    dt_tensor to = dt_tensor_view(out, DT_F32, 4, os);
    dt_arena arena;
    dt_arena_init(&arena);
    pixart_set_attn_hook(m, dt_fastattn_hook(fa));
    assert_int_not_equal(pixart_forward(m, &x.in, &arena, &to, &err), DT_OK);
    assert_non_null(strstr(err.msg, "layer 1 step 0"));
    /* ASC without a CFG batch */
    dt_fastattn_free(fa);
    p.m[1 * NSTEPS + 0] = DT_FA_ASC;
    assert_int_equal(dt_fastattn_create(&p, 0, &fa, &err), DT_OK);
    pixart_set_attn_hook(m, dt_fastattn_hook(fa));
    err = (dt_err){0};
    dt_arena_reset(&arena);
    assert_int_not_equal(pixart_forward(m, &x.in, &arena, &to, &err), DT_OK);
    assert_non_null(strstr(err.msg, "CFG"));
    err = (dt_err){0};
    assert_int_not_equal(dt_fastattn_set_step(fa, NSTEPS, &err), DT_OK);
    pixart_set_attn_hook(m, NULL);
    dt_fastattn_free(fa);
    dt_attn_plan_free(&p);
    dt_arena_free(&arena);
    pixart_inputs_free(&x);
    free(out);
    pixart_free(m);
    dt_backend_destroy(be);
}

/* ---- all "full" = no plan, bit for bit ---- */

static void test_all_full_bit_identical_transformer(void **state)
{
    (void)state;
    dt_backend *be = tu_backend(DT_F32);
    pixart_model *m = NULL;
    dt_err err = {0};
    if (pixart_load(be, TINY, &m, &err) != DT_OK) fail_msg("%s", err.msg);
    dt_attn_plan p;
    assert_int_equal(dt_attn_plan_init(&p, 3, NSTEPS, 4, &err), DT_OK);
    dt_fastattn *fa = NULL;
    assert_int_equal(dt_fastattn_create(&p, 1, &fa, &err), DT_OK);
    float *a = tu_poisoned(NSTEPS * NOUT), *b = tu_poisoned(NSTEPS * NOUT);
    run_steps(m, NULL, a, NOUT);
    run_steps(m, fa, b, NOUT);
    assert_memory_equal(a, b, NSTEPS * NOUT * sizeof(float));
    assert_int_equal(dt_fastattn_cache_peak(fa), 0);
    dt_fastattn_free(fa);
    dt_attn_plan_free(&p);
    free(a); free(b);
    pixart_free(m);
    dt_backend_destroy(be);
}

#define PIPE "tests/fixtures/pixart-pipe-tiny"

static void test_all_full_bit_identical_image(void **state)
{
    (void)state;
    dt_pipeline_config cfg = {.model_dir = PIPE, .dtype = DT_F32, .text_dtype = DT_F32};
    dt_pipeline *pl = NULL;
    dt_err err = {0};
    if (dt_pipeline_load(&cfg, &pl, &err) != DT_OK) fail_msg("%s", err.msg);
    dt_gen_request r = dt_gen_request_default();
    r.prompt = "a red fox in the snow";
    r.steps = 4;
    r.seed = 3;
    dt_gen_result a, b;
    if (dt_pipeline_generate(pl, &r, &a, &err) != DT_OK) fail_msg("%s", err.msg);
    /* a plan for the pipeline's transformer depth */
    dt_attn_plan p;
    int layers = 0;
    char path[256];
    snprintf(path, sizeof path, PIPE "/transformer");
    pixart_config pc;
    assert_int_equal(pixart_config_load(path, &pc, &err), DT_OK);
    layers = pc.num_layers;
    assert_int_equal(dt_attn_plan_init(&p, layers, 4, 2, &err), DT_OK);
    r.attn_plan = &p;
    if (dt_pipeline_generate(pl, &r, &b, &err) != DT_OK) fail_msg("%s", err.msg);
    assert_int_equal(a.width, b.width);
    assert_memory_equal(a.pixels, b.pixels, (size_t)a.batch * 3 * a.width * a.height * sizeof(float));
    free(b.pixels);
    /* a plan with shared steps changes the image but runs; one for other steps is refused */
    for (int l = 0; l < layers; l++) { p.m[l * 4 + 1] = DT_FA_AST; p.m[l * 4 + 2] = DT_FA_WARS_ASC; p.m[l * 4 + 3] = DT_FA_WARS; }
    if (dt_pipeline_generate(pl, &r, &b, &err) != DT_OK) fail_msg("%s", err.msg);
    double e = tu_rel_l2(b.pixels, a.pixels, (size_t)a.batch * 3 * a.width * a.height);
    print_message("  image with a compressed plan: rel L2 %.3g vs full attention\n", e);
    assert_true(e > 0 && e < 1);
    free(b.pixels);
    r.steps = 5;
    err = (dt_err){0};
    assert_int_not_equal(dt_pipeline_generate(pl, &r, &b, &err), DT_OK);
    assert_non_null(strstr(err.msg, "made for 4 steps"));
    free(a.pixels);
    dt_attn_plan_free(&p);
    dt_pipeline_free(pl);
}

/* calibrate-attn's search on one prompt; its final trajectory is the plan's: generating
 * with the saved plan gives the calibration run's image bit for bit. */
static void test_calibration(void **state)
{
    (void)state;
    dt_pipeline_config cfg = {.model_dir = PIPE, .dtype = DT_F32, .text_dtype = DT_F32};
    dt_pipeline *pl = NULL;
    dt_err err = {0};
    if (dt_pipeline_load(&cfg, &pl, &err) != DT_OK) fail_msg("%s", err.msg);
    pixart_config pc;
    assert_int_equal(pixart_config_load(PIPE "/transformer", &pc, &err), DT_OK);
    const int steps = 6;
    dt_attn_plan p;
    assert_int_equal(dt_attn_plan_init(&p, pc.num_layers, steps, 8, &err), DT_OK);
    dt_fa_calib_opts o = {.threshold = 0.03, .metric = DT_FA_METRIC_REL, .verify = 1};
    dt_fa_calib *cal = NULL;
    assert_int_equal(dt_fa_calib_create(&p, 1, &o, &cal, &err), DT_OK);
    dt_gen_request r = dt_gen_request_default();
    r.prompt = "a lighthouse at dusk";
    r.steps = steps;
    r.seed = 11;
    r.step_hook = dt_fa_calib_step;
    r.step_hook_user = cal;
    dt_gen_result a, b;
    if (dt_pipeline_generate(pl, &r, &a, &err) != DT_OK) fail_msg("%s", err.msg);
    assert_int_equal(dt_attn_plan_validate(&p, "calibrated", &err), DT_OK);
    int kept = 0;
    for (int l = 0; l < p.layers; l++) {
        assert_int_equal(dt_attn_plan_at(&p, l, 0), DT_FA_FULL);
        for (int t = 1; t < steps; t++) kept += dt_attn_plan_at(&p, l, t) != DT_FA_FULL;
    }
    print_message("  calibrated: %d of %d layer-steps compressed, %ld trials\n", kept, p.layers * (steps - 1), dt_fa_calib_trials(cal));
    assert_true(kept > 0 && kept < p.layers * (steps - 1));
    assert_int_equal(dt_fa_calib_mismatches(cal), 0); /* replayed trials = plain forwards */
    assert_true(dt_fa_calib_trials(cal) <= (long)p.layers * (steps - 1) * 4);
    assert_true(dt_fa_calib_trial_forwards(cal) < 0.75 * dt_fa_calib_trials(cal)); /* partial forwards */
    /* the same request under the plan, without the calibrator */
    r.step_hook = NULL;
    r.attn_plan = &p;
    if (dt_pipeline_generate(pl, &r, &b, &err) != DT_OK) fail_msg("%s", err.msg);
    assert_memory_equal(a.pixels, b.pixels, (size_t)a.batch * 3 * a.width * a.height * sizeof(float));
    free(b.pixels);
    dt_fa_calib_free(cal); /* its caches are in the pipeline's backend memory */
    dt_pipeline_free(pl);
    dt_attn_plan_free(&p);
    free(a.pixels);
}

static void test_losses(void **state)
{
    (void)state;
    float a[4] = {1, 2, -1, 0}, b[4] = {1, 1, -2, 0};
    /* |0|/1, 1/2, 1/(-1+1e-6) -> clipped to 0, 0/1e-6 = 0 */
    assert_true(fabs(dt_fa_loss_rel(a, b, 4) - 0.5 / 4) < 1e-6);
    float small[2] = {0.01f, 0}, neg[2] = {-1, 0};
    assert_true(fabs(dt_fa_loss_rel(small, neg, 2) - 10.0 / 2) < 1e-6); /* 1.01 / 0.01 clipped at 10 */
    tu_rng r = {5};
    float *x = tu_alloc(2 * 9 * 11), *y = tu_alloc(2 * 9 * 11);
    tu_fill(&r, x, 2 * 9 * 11, 1.0f);
    memcpy(y, x, 2 * 9 * 11 * sizeof(float));
    double close = dt_fa_loss_ssim(x, y, 2, 9, 11);
    for (int i = 0; i < 2 * 9 * 11; i++) y[i] = x[i] + 0.1f * tu_uniform(&r);
    double near = dt_fa_loss_ssim(x, y, 2, 9, 11);
    tu_fill(&r, y, 2 * 9 * 11, 1.0f); /* unrelated */
    double far = dt_fa_loss_ssim(x, y, 2, 9, 11);
    assert_true(close < 1e-9 && near > 0 && near < 0.1 && far > 0.5);
    free(x); free(y);
}

/* The CLI: a bad plan is one line on stderr and a non-zero exit; flags are checked. */
static int run_cli(const char *args, char *errline, size_t n)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "./ditrt %s >/dev/null 2>/tmp/ditrt-fa-err.txt", args);
    int rc = system(cmd);
    FILE *f = fopen("/tmp/ditrt-fa-err.txt", "r");
    assert_non_null(f);
    size_t k = fread(errline, 1, n - 1, f);
    errline[k] = 0;
    fclose(f);
    unlink("/tmp/ditrt-fa-err.txt");
    return rc;
}

static void test_cli(void **state)
{
    (void)state;
    if (access("./ditrt", X_OK)) { printf("  skipped: ./ditrt is not built (run from the repository root after make)\n"); skip(); }
    char e[1024], dir[64], path[128], args[512];
    tu_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/bad.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"steps\": 2, \"window\": 4, \"layers\": [[\"full\", \"ast\"], [\"full\", \"full\"], [\"wars\", \"full\"]]}\n", f);
    fclose(f);
    snprintf(args, sizeof args, "info --attn-plan %s", path);
    assert_int_not_equal(run_cli(args, e, sizeof e), 0);
    assert_non_null(strstr(e, "layer 2 step 0"));
    assert_non_null(strchr(e, '\n'));
    assert_null(strchr(strchr(e, '\n') + 1, '\n')); /* one line */
    /* without -m a plan is costed on PixArt-XL-2: a 3-layer plan is refused, asking for -m (issue 21) */
    assert_int_not_equal(run_cli("info --attn-plan " FIX "/plan_cond.json", e, sizeof e), 0);
    assert_non_null(strstr(e, "a plan for 3 layers"));
    assert_non_null(strstr(e, "give -m MODEL_DIR"));
    /* a 6-step plan for a 3-layer model: fine with -m; a 2-layer-step mismatch is refused */
    assert_int_equal(run_cli("info -m " PIPE " --attn-plan " FIX "/plan_cond.json", e, sizeof e), 0);
    snprintf(args, sizeof args, "txt2img -m " PIPE " -p fox --steps 4 -q -o %s/x.png --attn-plan " FIX "/plan_cond.json", dir);
    assert_int_not_equal(run_cli(args, e, sizeof e), 0);
    assert_non_null(strstr(e, "made for 6 steps"));
    snprintf(path, sizeof path, "%s/x.png", dir);
    assert_int_not_equal(access(path, F_OK), 0); /* no output file */
    /* a run with a plan says so in the PNG's text chunks (tEXt: key NUL value) */
    snprintf(args, sizeof args, "txt2img -m " PIPE " -p fox --steps 6 -q -o %s/x.png --attn-plan " FIX "/plan_cond.json", dir);
    assert_int_equal(run_cli(args, e, sizeof e), 0);
    f = fopen(path, "rb");
    assert_non_null(f);
    char png[1 << 16];
    size_t np = fread(png, 1, sizeof png, f);
    fclose(f);
    static const char want[] = "attn_plan\0" FIX "/plan_cond.json";
    assert_non_null(memmem(png, np, want, sizeof want - 1));
    unlink(path);
    assert_int_equal(run_cli("calibrate-attn -m " PIPE " --prompts /dev/null --steps 4 --window 4 --out /tmp/x.json", e, sizeof e) >> 8, 2);
    assert_non_null(strstr(e, "--threshold"));
    assert_int_not_equal(run_cli("calibrate-attn -m " PIPE " --prompts /dev/null --steps 4 --window 4 --threshold 0.1 --metric l2 --out /tmp/x.json", e, sizeof e), 0);
    assert_non_null(strstr(e, "--metric"));
    rmdir(dir);
}

static void count_line(const char *line, void *user)
{
    assert_non_null(strstr(line, "calibrate-attn: "));
    ++*(int *)user;
}

/* ditrt_calibrate_attn as an application calls it (ditrt.h only): the same plan file as
 * `ditrt calibrate-attn` with the same settings, the summary `info` prints, and refusals that
 * name the field. */
static void test_api_calibrate(void **state)
{
    (void)state;
    if (access("./ditrt", X_OK)) { printf("  skipped: ./ditrt is not built (run from the repository root after make)\n"); skip(); }
    char dir[64], prompts[128], cli_plan[128], api_plan[128], args[1024], e[1024];
    tu_tmpdir(dir, sizeof dir);
    snprintf(prompts, sizeof prompts, "%s/prompts.txt", dir);
    snprintf(cli_plan, sizeof cli_plan, "%s/cli.json", dir);
    snprintf(api_plan, sizeof api_plan, "%s/api.json", dir);
    tu_write_file(prompts, "a fox\n\na lighthouse at dusk\n", 28);
    const char *const lines[] = {"a fox", "a lighthouse at dusk"};
    for (int metric = 0; metric < 2; metric++) {
        snprintf(args, sizeof args, "calibrate-attn -m " PIPE " --prompts %s --steps 4 --threshold %s --window 4 --metric %s "
                 "--seed 5 --dtype f32 -q --out %s", prompts, metric ? "0.1" : "0.05", metric ? "ssim" : "rel", cli_plan);
        if (run_cli(args, e, sizeof e) != 0) fail_msg("%s", e);
        ditrt_attn_calib_params p;
        ditrt_attn_calib_params_init(&p);
        p.model_dir = PIPE;
        p.prompts = lines;
        p.nprompts = 2;
        p.out_path = api_plan;
        p.steps = 4;
        p.threshold = metric ? 0.1 : 0.05;
        p.window = 4;
        p.metric = metric ? "ssim" : "rel";
        p.seed = 5;
        p.dtype = "f32";
        int nlines = 0;
        p.log = count_line;
        p.log_user = &nlines;
        ditrt_attn_calib_result r = {.struct_size = sizeof r};
        ditrt_error err;
        if (ditrt_calibrate_attn(&p, &r, &err) != DITRT_OK) fail_msg("%s", err.msg);
        tu_assert_same_file(cli_plan, api_plan);
        assert_int_equal(nlines, 2 + 2 * 3); /* a line per prompt and per step after the first */
        assert_int_equal(r.nprompts, 2);
        assert_int_equal(r.steps, 4);
        assert_int_equal(r.layers, 3);
        assert_int_equal(r.temporal_layers, 0);
        assert_int_equal(r.exhaustive_trials, 2 * 3 * 3 * 4);
        assert_true(r.trials > 0 && r.trials <= r.exhaustive_trials && r.trial_forwards < r.trials);
        ditrt_attn_plan_summary s = {.struct_size = sizeof s};
        if (ditrt_attn_plan_summarize(api_plan, PIPE, 0, 0, 0, &s, &err) != DITRT_OK) fail_msg("%s", err.msg);
        int total = 0;
        for (int m = 0; m < DITRT_ATTN_NMETHODS; m++) total += s.methods[0][m] + s.methods[1][m];
        assert_int_equal(total, 3 * 4);
        assert_true(s.methods[0][0] >= 3); /* step 0 is full */
        assert_string_equal(s.model, "pixart-pipe-tiny");
        assert_int_equal(s.batch, 2);
        assert_int_equal(s.frames, 1);
        assert_int_equal(s.tokens, 64);
        assert_int_equal(s.channels, 48);
        assert_true(s.attn_flops <= s.attn_flops_full && s.attn_flops_full > 0);
        unlink(cli_plan);
        unlink(api_plan);
    }
    assert_string_equal(ditrt_attn_method_name(4), "wars+asc");
    assert_null(ditrt_attn_method_name(5));
    /* refusals: status and the field named, no plan written */
    ditrt_attn_calib_params p;
    ditrt_attn_calib_params_init(&p);
    p.model_dir = PIPE;
    p.prompts = lines;
    p.nprompts = 2;
    p.out_path = api_plan;
    p.steps = 3;
    p.dtype = "f32";
    ditrt_error err;
    assert_int_equal(ditrt_calibrate_attn(NULL, NULL, &err), DITRT_EINVAL);
    assert_non_null(strstr(err.msg, "ditrt_attn_calib_params: NULL"));
    ditrt_attn_calib_params zero = p;
    zero.struct_size = 0;
    assert_int_equal(ditrt_calibrate_attn(&zero, NULL, &err), DITRT_EINVAL);
    assert_non_null(strstr(err.msg, "struct_size is 0"));
    assert_int_equal(ditrt_calibrate_attn(&p, NULL, &err), DITRT_EINVAL); /* window and threshold unset */
    assert_non_null(strstr(err.msg, "threshold"));
    p.threshold = 0.05;
    assert_int_equal(ditrt_calibrate_attn(&p, NULL, &err), DITRT_EINVAL);
    assert_non_null(strstr(err.msg, "window"));
    p.window = 4;
    p.metric = "l2";
    assert_int_equal(ditrt_calibrate_attn(&p, NULL, &err), DITRT_EINVAL);
    assert_non_null(strstr(err.msg, "metric: expected \"rel\" or \"ssim\", got \"l2\""));
    p.metric = "rel";
    p.nprompts = 0;
    assert_int_equal(ditrt_calibrate_attn(&p, NULL, &err), DITRT_EINVAL);
    assert_non_null(strstr(err.msg, "prompts"));
    p.nprompts = 2;
    p.temporal_window = 1; /* an image model */
    assert_int_equal(ditrt_calibrate_attn(&p, NULL, &err), DITRT_EINVAL);
    assert_non_null(strstr(err.msg, "--temporal-window/--frames: only for video models"));
    p.temporal_window = -1;
    p.dtype = "f64";
    assert_int_equal(ditrt_calibrate_attn(&p, NULL, &err), DITRT_EINVAL);
    assert_non_null(strstr(err.msg, "--dtype: expected f32, bf16, f16 or tf32"));
    p.dtype = "tf32"; /* CUDA only; the calibration runs on the CPU */
    assert_int_equal(ditrt_calibrate_attn(&p, NULL, &err), DITRT_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "--dtype: tf32 needs --device cuda; calibrate-attn runs on the CPU only"));
    p.dtype = "f32";
    ditrt_attn_calib_result r = {0};
    assert_int_equal(ditrt_calibrate_attn(&p, &r, &err), DITRT_EINVAL);
    assert_non_null(strstr(err.msg, "ditrt_attn_calib_result: struct_size is 0"));
    p.model_dir = "tests/fixtures/no-such-model";
    assert_int_not_equal(ditrt_calibrate_attn(&p, NULL, &err), DITRT_OK);
    assert_non_null(strstr(err.msg, "no-such-model"));
    assert_int_not_equal(access(api_plan, F_OK), 0);
    ditrt_attn_plan_summary s = {.struct_size = sizeof s};
    assert_int_not_equal(ditrt_attn_plan_summarize(FIX "/plan_cond.json", "tests/fixtures/latte-pipe-tiny", 0, 0, 0, &s, &err), DITRT_OK);
    assert_non_null(strstr(err.msg, "temporal layer 0 step 0"));
    assert_int_equal(ditrt_attn_plan_summarize(FIX "/plan_cond.json", NULL, 0, 0, 0, &s, &err), DITRT_OK);
    assert_int_equal(s.tokens, 4096); /* PixArt-XL-2 at 1024 px */
    s.struct_size = 0;
    assert_int_equal(ditrt_attn_plan_summarize(FIX "/plan_cond.json", NULL, 0, 0, 0, &s, &err), DITRT_EINVAL);
    assert_non_null(strstr(err.msg, "ditrt_attn_plan_summary"));
    unlink(prompts);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window_kernel_f32),
        cmocka_unit_test(test_window_kernel_bf16),
        cmocka_unit_test(test_plan_parse),
        cmocka_unit_test(test_plan_cost),
        cmocka_unit_test(test_methods_match_torch),
        cmocka_unit_test(test_runtime_refusals),
        cmocka_unit_test(test_all_full_bit_identical_transformer),
        cmocka_unit_test(test_all_full_bit_identical_image),
        cmocka_unit_test(test_calibration),
        cmocka_unit_test(test_losses),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_api_calibrate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
