/* UNet2DConditionModel against diffusers on tests/fixtures/unet-sd15-tiny and unet-sdxl-tiny
 * (made by scripts/fixtures/unet.py), through the denoiser interface, in f32 and bf16; input
 * checks; configs with absurd or unsupported fields refused naming the field; parameter
 * counts (the fixtures' files and the real SD 1.5 / SDXL sizes); attention plans refused;
 * `ditrt eval transformer` / `ditrt info` / `ditrt bench` on U-Nets. */
#include "testutil.h"
#include "runtime/core/arena.h"
#include "runtime/core/safetensors.h"
#include "runtime/core/json.h"
#include "runtime/models/denoiser.h"
#include "runtime/models/unet.h"
#include "runtime/plans/fastattn.h"
#include <sys/stat.h>

#define SD15 "tests/fixtures/unet-sd15-tiny"
#define SDXL "tests/fixtures/unet-sdxl-tiny"

static const char *models[] = {SD15, SDXL};
static const char *cases[] = {"b2_nonsquare", "b1_scalar_t", "b2_mask"}; /* the mask case: SD 1.5 only */
static const size_t ncases[] = {3, 2};
static int drop_mask; /* run_case without the file's encoder_attention_mask */

static dt_denoiser *load(dt_backend *be, const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/unet", dir);
    dt_denoiser *d = NULL;
    dt_err err = {0};
    if (dt_denoiser_load(be, path, NULL, NULL, &d, &err) != DT_OK) fail_msg("%s", err.msg);
    return d;
}

static float *run_case(dt_denoiser *d, const char *dir, const char *cse, size_t *n_out)
{
    char in_path[512];
    snprintf(in_path, sizeof in_path, "%s/case_%s.in.safetensors", dir, cse);
    const dt_denoiser_info *c = dt_denoiser_get_info(d);
    dt_denoiser_input_file x = {0};
    dt_err err = {0};
    if (dt_denoiser_inputs_load(in_path, c, &x, &err) != DT_OK) fail_msg("%s", err.msg);
    int64_t shape[4] = {x.ths.shape[0], c->out_channels, x.ths.shape[2], x.ths.shape[3]};
    dt_tensor out = dt_tensor_view(NULL, DT_F32, 4, shape);
    *n_out = (size_t)dt_tensor_numel(&out);
    out.data = tu_poisoned(*n_out);
    dt_arena arena;
    dt_arena_init(&arena);
    if (drop_mask) x.in.encoder_attention_mask = NULL;
    if (dt_denoiser_forward(d, &x.in, &arena, &out, &err) != DT_OK) fail_msg("%s %s: %s", dir, cse, err.msg);
    /* the memory estimate covers what the forward took */
    double est = dt_denoiser_step_bytes(d, (int)shape[0], 1, (int)shape[2], (int)shape[3], (int)x.tehs.shape[1]);
    if (!((double)arena.peak <= est)) fail_msg("%s %s: arena peak %zu above step_bytes %.0f", dir, cse, arena.peak, est);
    /* ... and `ditrt info`'s figure from config.json alone is the same one */
    char udir[512];
    snprintf(udir, sizeof udir, "%s/unet", dir);
    const dt_denoiser_class *cls = dt_denoiser_class_of_dir(udir, &err);
    double est_cfg = 0;
    assert_true(cls && cls->config_step_bytes);
    assert_int_equal(cls->config_step_bytes(udir, (int)shape[0], 1, (int)shape[2], (int)shape[3], (int)x.tehs.shape[1], &est_cfg, &err),
                     DT_OK);
    assert_true(est_cfg == est);
    dt_arena_free(&arena);
    dt_denoiser_inputs_free(&x);
    return out.data;
}

static void parity(dt_dtype cd, double tol)
{
    dt_backend *be = tu_backend(cd);
    for (size_t mi = 0; mi < 2; mi++) {
        dt_denoiser *d = load(be, models[mi]);
        for (size_t ci = 0; ci < ncases[mi]; ci++) {
            size_t n;
            float *o = run_case(d, models[mi], cases[ci], &n), *ref = tu_fixture_out(models[mi], cases[ci], n);
            double e = tu_rel_l2(o, ref, n);
            printf("  %-14s %-13s %s: rel L2 %.2e (limit %.1e)\n", models[mi] + 15, cases[ci], dt_dtype_name(cd), e, tol);
            if (!(e <= tol)) fail_msg("%s %s %s: relative L2 %.3g > %.3g", models[mi], cases[ci], dt_dtype_name(cd), e, tol);
            free(o);
            free(ref);
        }
        dt_denoiser_free(d);
    }
    dt_backend_destroy(be);
}

static void test_parity_f32(void **state) { (void)state; parity(DT_F32, 1e-4); }
/* bf16 vs diffusers f32 (the fixtures have no bf16 reference). Issue 22 asked for 2e-2; no bf16
 * implementation gets near it on these tiny random U-Nets (re-drawn weights, 2x query/key gains,
 * GroupNorms of 2-4 channels): every bf16 rounding is a jump that the later roundings amplify,
 * so the error is large and any f32 detail (summation order) redraws it. Measured on the 5 cases
 * (sd15 b2_nonsquare, b1_scalar_t, b2_mask; sdxl b2_nonsquare, b1_scalar_t), rel. L2 vs f32:
 *   diffusers in bf16 (torch 2.15 CPU kernels)              9.26e-2 2.89e-2 7.05e-2 5.08e-2 4.05e-2
 *   diffusers f32 with ditrt's bf16 rounding (scripts/fixtures/unet_bf16_check.py)
 *                                                           8.06e-2 1.86e-2 9.53e-2 4.46e-2 5.17e-2
 *   ditrt bf16 (emulated, AVX2)                             8.06e-2 1.86e-2 9.27e-2 4.05e-2 4.67e-2
 * and the last two are 2e-7 … 2.3e-2 apart (identical where no rounding flipped), as much as the
 * same rounding with f64 instead of f32 sums moves the former (5.3e-3 … 2.1e-2). The limit,
 * 1.5e-1 (1.6x diffusers' own bf16 worst), catches a broken bf16 data flow (a wrong layout or a
 * missed conversion: O(1)) but cannot see which layers run in bf16; test_kernels'
 * test_bf16_gemm_contract checks the rounding itself to 1e-5, and test_unet_trained.c the
 * issue's 2e-2 on the trained demo U-Nets (measured there 1.9e-3 … 4.2e-3). */
static void test_parity_bf16(void **state) { (void)state; TU_REQUIRE_BF16(); parity(DT_BF16, 1.5e-1); }

/* Same inputs twice, another shape between: bit-identical (no state leaks between calls). */
static void test_deterministic(void **state)
{
    (void)state;
    dt_backend *be = tu_backend(tu_fast_dtype());
    dt_denoiser *d = load(be, SDXL);
    size_t n1, n2, n3;
    float *a = run_case(d, SDXL, "b2_nonsquare", &n1), *b = run_case(d, SDXL, "b1_scalar_t", &n2),
          *c = run_case(d, SDXL, "b2_nonsquare", &n3);
    assert_int_equal(n1, n3);
    assert_memory_equal(a, c, n1 * sizeof(float));
    free(a); free(b); free(c);
    dt_denoiser_free(d);
    dt_backend_destroy(be);
}

/* The mask case's keys matter: without the mask the output moves well past the tolerance. */
static void test_mask_used(void **state)
{
    (void)state;
    dt_backend *be = tu_backend(DT_F32);
    dt_denoiser *d = load(be, SD15);
    size_t n;
    drop_mask = 1;
    float *o = run_case(d, SD15, "b2_mask", &n), *ref = tu_fixture_out(SD15, "b2_mask", n);
    drop_mask = 0;
    double e = tu_rel_l2(o, ref, n);
    printf("  b2_mask without its mask: rel L2 %.2e\n", e);
    assert_true(e > 1e-2);
    free(o);
    free(ref);
    dt_denoiser_free(d);
    dt_backend_destroy(be);
}

/* Missing added conditions, sizes that do not halve evenly and wrong context widths fail
 * with a message naming the tensor, before any work. */
static void test_bad_inputs(void **state)
{
    (void)state;
    dt_backend *be = tu_backend(DT_F32);
    dt_denoiser *d = load(be, SDXL);
    const dt_denoiser_info *c = dt_denoiser_get_info(d);
    assert_int_equal(c->added_text_dim, 16);
    assert_int_equal(c->added_time_ids, 6);
    assert_string_equal(c->latent_input, "sample");
    assert_int_equal(c->patch_size, 1); /* no patches: one latent pixel a position */
    assert_int_equal(c->size_multiple, 4); /* 2^downsamplers */
    int64_t hs4[4] = {1, 4, 8, 8}, eh3[3] = {1, 3, c->caption_channels}, os[4] = {1, 4, 8, 8};
    dt_tensor hs = dt_tensor_view(tu_alloc(64 * 4), DT_F32, 4, hs4), eh = dt_tensor_view(tu_alloc(3 * 16), DT_F32, 3, eh3),
              out = dt_tensor_view(tu_alloc(64 * 4), DT_F32, 4, os);
    memset(hs.data, 0, 64 * 4 * sizeof(float));
    memset(eh.data, 0, 3 * 16 * sizeof(float));
    float t = 1, te[16] = {0}, tid[6] = {64, 64, 0, 0, 64, 64};
    dt_denoiser_inputs in = {.hidden_states = &hs, .encoder_hidden_states = &eh, .timestep = &t};
    dt_arena arena;
    dt_arena_init(&arena);
    dt_err err = {0};
    assert_int_equal(dt_denoiser_forward(d, &in, &arena, &out, &err), DT_EINVAL);
    assert_non_null(strstr(err.msg, "text_embeds"));
    in.text_embeds = te;
    dt_err_clear(&err);
    assert_int_equal(dt_denoiser_forward(d, &in, &arena, &out, &err), DT_EINVAL);
    assert_non_null(strstr(err.msg, "time_ids"));
    in.time_ids = tid;
    dt_err_clear(&err);
    assert_int_equal(dt_denoiser_forward(d, &in, &arena, &out, &err), DT_OK);
    int64_t odd[4] = {1, 4, 6, 8}; /* 6: not a multiple of 4 */
    dt_tensor hs6 = dt_tensor_view(hs.data, DT_F32, 4, odd), out6 = dt_tensor_view(out.data, DT_F32, 4, odd);
    in.hidden_states = &hs6;
    assert_int_equal(dt_denoiser_forward(d, &in, &arena, &out6, &err), DT_EINVAL);
    if (!strstr(err.msg, "multiples of 4")) fail_msg("%s", err.msg);
    in.hidden_states = &hs;
    int64_t eh8[3] = {1, 3, 8};
    eh = dt_tensor_view(eh.data, DT_F32, 3, eh8);
    dt_err_clear(&err);
    assert_int_equal(dt_denoiser_forward(d, &in, &arena, &out, &err), DT_EINVAL);
    assert_non_null(strstr(err.msg, "encoder_hidden_states"));
    dt_arena_free(&arena);
    free(hs.data); free(eh.data); free(out.data);
    dt_denoiser_free(d);
    dt_backend_destroy(be);
}

/* The fixtures' files, and the published sizes of SD 1.5 (859,520,964) and SDXL base
 * (2,567,463,684) for the presets; FLOPs of a 512 px CFG step of SD 1.5 in the known range. */
static void test_param_count(void **state)
{
    (void)state;
    dt_err err = {0};
    unet_config c;
    assert_int_equal(unet_config_load(SD15 "/unet", &c, &err), DT_OK);
    assert_int_equal(unet_param_count(&c), tu_file_params(SD15 "/unet"));
    assert_int_equal(unet_config_load(SDXL "/unet", &c, &err), DT_OK);
    assert_int_equal(unet_param_count(&c), tu_file_params(SDXL "/unet"));
    unet_config sd15 = unet_config_sd15(64), sdxl = unet_config_sdxl(128);
    assert_int_equal(unet_config_validate(&sd15, "sd15", &err), DT_OK);
    assert_int_equal(unet_config_validate(&sdxl, "sdxl", &err), DT_OK);
    assert_int_equal(unet_param_count(&sd15), 859520964);
    assert_int_equal(unet_param_count(&sdxl), 2567463684LL);
    double f = unet_matmul_flops(&sd15, 2, 64, 64, 77);
    printf("  sd15-unet 512 px CFG step: %.0f GFLOP; sdxl-unet 1024 px one sample: %.0f GFLOP\n", f / 1e9,
           unet_matmul_flops(&sdxl, 1, 128, 128, 77) / 1e9);
    assert_true(f > 1.0e12 && f < 2.0e12); /* ~0.8 TFLOP a sample */
}

/* ---- configs that must be refused, naming the field ---- */

static char tmp[256];
static int setup(void **state) { (void)state; tu_tmpdir(tmp, sizeof tmp); return 0; }
static int teardown(void **state) { (void)state; tu_rmtree(tmp); return 0; }

static const char *base_cfg =
    "{\"_class_name\": \"UNet2DConditionModel\", \"sample_size\": 16, \"in_channels\": 4, \"out_channels\": 4,"
    " \"down_block_types\": [\"CrossAttnDownBlock2D\", \"DownBlock2D\"], \"up_block_types\": [\"UpBlock2D\", \"CrossAttnUpBlock2D\"],"
    " \"block_out_channels\": [8, 16], \"layers_per_block\": 1, \"norm_num_groups\": 4, \"cross_attention_dim\": 16,"
    " \"attention_head_dim\": 2 %s}";

/* The base config with `front` spliced in before its fields: cJSON finds the first of a
 * repeated key, so `front` overrides. */
static dt_status try_config(const char *front, const char *extra, dt_err *err)
{
    char dir[512], path[600], json[4096], body[4096];
    snprintf(dir, sizeof dir, "%s/cfg", tmp);
    mkdir(dir, 0755);
    snprintf(body, sizeof body, base_cfg, extra ? extra : "");
    snprintf(json, sizeof json, "{%s%s", front ? front : "", body + 1);
    snprintf(path, sizeof path, "%s/config.json", dir);
    tu_write_file(path, json, strlen(json));
    unet_config c;
    dt_err_clear(err);
    return unet_config_load(dir, &c, err);
}

static void test_config_refusals(void **state)
{
    (void)state;
    dt_err err = {0};
    assert_int_equal(try_config(NULL, NULL, &err), DT_OK);
    static const struct { const char *front, *extra, *field; } bad[] = {
        {"\"block_out_channels\": [8, 1000000000],", NULL, "block_out_channels"},
        {"\"block_out_channels\": [8, 16, 16, 16, 16, 16, 16, 16, 16],", NULL, "block_out_channels"},
        {"\"layers_per_block\": 1e9,", NULL, "layers_per_block"},
        {"\"layers_per_block\": [1, 2, 3],", NULL, "layers_per_block"},
        {"\"transformer_layers_per_block\": [1, 100000],", NULL, "transformer_layers_per_block"},
        {"\"transformer_layers_per_block\": [[1], [1]],", NULL, "transformer_layers_per_block"},
        {"\"attention_head_dim\": 3,", NULL, "attention_head_dim"},
        {"\"attention_head_dim\": -4,", NULL, "attention_head_dim"},
        {"\"cross_attention_dim\": 4294967296,", NULL, "cross_attention_dim"},
        {"\"cross_attention_dim\": [16, 32],", NULL, "cross_attention_dim"},
        {"\"in_channels\": 99999,", NULL, "in_channels"},
        {"\"norm_num_groups\": 3,", NULL, "norm_num_groups"},
        {"\"sample_size\": 1e30,", NULL, "sample_size"},
        {"\"time_embedding_dim\": 1e12,", NULL, "time_embedding_dim"},
        {"\"num_attention_heads\": 8,", NULL, "num_attention_heads"},
        {"\"addition_embed_type\": \"text\",", NULL, "addition_embed_type"},
        {"\"addition_embed_type\": \"text_time\", \"addition_time_embed_dim\": 8, \"projection_class_embeddings_input_dim\": 48,", NULL,
         "projection_class_embeddings_input_dim"},
        {"\"addition_embed_type\": \"text_time\", \"addition_time_embed_dim\": 1e9, \"projection_class_embeddings_input_dim\": 64,",
         NULL, "addition_time_embed_dim"},
        {"\"down_block_types\": [\"SimpleCrossAttnDownBlock2D\", \"DownBlock2D\"],", NULL, "down_block_types"},
        {"\"mid_block_type\": \"UNetMidBlock2DSimpleCrossAttn\",", NULL, "mid_block_type"},
        {"\"time_cond_proj_dim\": 256,", NULL, "time_cond_proj_dim"},
        {"\"only_cross_attention\": [true, false],", NULL, "only_cross_attention"},
        {"\"resnet_time_scale_shift\": \"scale_shift\",", NULL, "resnet_time_scale_shift"},
        {"\"conv_in_kernel\": 4,", NULL, "conv_in_kernel"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        dt_status s = try_config(bad[i].front, bad[i].extra, &err);
        if (s == DT_OK) fail_msg("config %zu (%s) was accepted", i, bad[i].front);
        if (!strstr(err.msg, bad[i].field) || strchr(err.msg, '\n'))
            fail_msg("config %zu: the error does not name \"%s\" on one line: %s", i, bad[i].field, err.msg);
    }
}

/* <dir>/config.json = the SDXL fixture's config with `field` set to v (every entry of a list). */
static void write_mutated(const char *dir, const char *field, double v)
{
    char path[600];
    cJSON *j;
    dt_err err = {0};
    if (dt_json_load(SDXL "/unet/config.json", &j, &err) != DT_OK) fail_msg("%s", err.msg);
    cJSON *f = cJSON_GetObjectItemCaseSensitive(j, field);
    if (cJSON_IsArray(f))
        for (cJSON *e = f->child; e; e = e->next) cJSON_SetNumberValue(e, v);
    else {
        cJSON_DeleteItemFromObjectCaseSensitive(j, field);
        cJSON_AddNumberToObject(j, field, v);
    }
    char *text = cJSON_Print(j);
    snprintf(path, sizeof path, "%s/config.json", dir);
    tu_write_file(path, text, strlen(text));
    free(text);
    cJSON_Delete(j);
}

/* Random numeric fields in the SDXL fixture's config: each is refused naming the config, or
 * loads and then fails on the weights' shapes, or runs; never a crash or a huge allocation
 * (the test would then die or take long). */
static void test_config_fuzz(void **state)
{
    (void)state;
    static const char *fields[] = {"block_out_channels", "layers_per_block", "attention_head_dim", "transformer_layers_per_block",
                                   "cross_attention_dim", "norm_num_groups", "addition_time_embed_dim",
                                   "projection_class_embeddings_input_dim", "in_channels", "time_embedding_dim"};
    static const double values[] = {0, -1, 1, 3, 7, 65537, 2147483647.0, 4294967297.0, 1e300, 0.5};
    dt_backend *be = tu_backend(DT_F32);
    char dir[512], cmd[2048];
    snprintf(dir, sizeof dir, "%s/fuzz", tmp);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp " SDXL "/unet/diffusion_pytorch_model.safetensors '%s/'", dir, dir);
    assert_int_equal(system(cmd), 0);
    tu_rng r = {77};
    int refused = 0, runs = 0;
    for (int it = 0; it < 40; it++) {
        size_t fi = (size_t)((tu_uniform(&r) + 1) * 0.5 * 10) % 10, vi = (size_t)((tu_uniform(&r) + 1) * 0.5 * 10) % 10;
        char val[64];
        snprintf(val, sizeof val, "%.17g", values[vi]);
        write_mutated(dir, fields[fi], values[vi]);
        dt_denoiser *d = NULL;
        dt_err err = {0};
        dt_status s = dt_denoiser_load(be, dir, NULL, NULL, &d, &err);
        if (s != DT_OK) {
            refused++;
            if (!err.msg[0] || strchr(err.msg, '\n')) fail_msg("%s=%s: error not one line: \"%s\"", fields[fi], val, err.msg);
            if (getenv("DITRT_VERBOSE")) printf("    %s=%s: %s\n", fields[fi], val, err.msg);
        } else {
            runs++;
            dt_denoiser_free(d);
        }
    }
    printf("  config fuzz: %d refused, %d loaded\n", refused, runs);
    assert_true(refused > 0);
    dt_backend_destroy(be);
}

/* DiTFastAttn plans do not apply: refused with a message, and a hook is ignored, not a crash. */
static void test_attn_plans_refused(void **state)
{
    (void)state;
    dt_backend *be = tu_backend(DT_F32);
    dt_denoiser *d = load(be, SD15);
    const dt_denoiser_info *c = dt_denoiser_get_info(d);
    dt_err err = {0};
    assert_int_equal(c->spatial_layers + c->temporal_layers, 0);
    assert_int_equal(dt_denoiser_attn_plans(c, &err), DT_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "UNet2DConditionModel"));
    dt_attn_plan p = {0};
    dt_err_clear(&err);
    assert_int_equal(dt_attn_plan_init(&p, 4, 2, 8, &err), DT_OK);
    assert_int_equal(dt_attn_plan_check(&p, c->spatial_layers, c->temporal_layers, 2, &err), DT_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "DiTFastAttn"));
    dt_attn_plan_free(&p);
    dt_denoiser_set_attn_hook(d, NULL);
    dt_denoiser_set_resume(d, NULL);
    dt_denoiser_free(d);
    dt_backend_destroy(be);
}

/* `ditrt eval transformer` on a U-Net folder and on a pipeline folder listing "unet"; an input
 * file without time_ids is refused naming it; `ditrt info`; `ditrt bench --layers`. */
static void test_cli(void **state)
{
    (void)state;
    char cmd[2048], out[512], pipe[512], msg[1024];
    snprintf(out, sizeof out, "%s/o.safetensors", tmp);
    snprintf(pipe, sizeof pipe, "%s/pipe", tmp);
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s' && ln -sf \"$PWD/" SDXL "/unet\" '%s/unet' && printf '{\"_class_name\": \"StableDiffusionXLPipeline\", "
             "\"unet\": [\"diffusers\", \"UNet2DConditionModel\"]}' > '%s/model_index.json'", pipe, pipe, pipe);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "./ditrt eval transformer -m '%s' --in " SDXL "/case_b2_nonsquare.in.safetensors --out '%s'", pipe, out);
    assert_int_equal(system(cmd), 0);
    dt_safetensors *st;
    dt_err err = {0};
    if (dt_st_open(out, &st, &err) != DT_OK) fail_msg("%s", err.msg);
    const dt_st_entry *e = dt_st_find(st, "sample");
    assert_non_null(e);
    size_t n = e->nbytes / dt_dtype_size(e->dtype);
    float *o = tu_alloc(n), *ref = tu_fixture_out(SDXL, "b2_nonsquare", n);
    dt_st_read_f32(e, o);
    dt_st_close(st);
    assert_rel_l2_below(o, ref, n, 1e-4);
    free(o);
    free(ref);
    /* the SD 1.5 case's inputs have no text_embeds/time_ids: the SDXL model refuses them */
    snprintf(cmd, sizeof cmd, "./ditrt eval transformer -m " SDXL "/unet --in " SD15 "/case_b1_scalar_t.in.safetensors --out '%s'", out);
    assert_int_not_equal(tu_run(tmp, cmd, 0, msg, sizeof msg), 0);
    if (!strstr(msg, "text_embeds")) fail_msg("expected an error naming text_embeds, got: %s", msg);
    /* PixArt's latent name is not a U-Net's */
    snprintf(cmd, sizeof cmd, "./ditrt eval transformer -m " SD15 "/unet --in tests/fixtures/pixart-sigma-tiny/case_square.in.safetensors --out '%s'", out);
    assert_int_not_equal(tu_run(tmp, cmd, 0, msg, sizeof msg), 0);
    if (!strstr(msg, "\"sample\"")) fail_msg("expected an error naming sample, got: %s", msg);
    assert_int_equal(system("./ditrt info -m " SD15 "/unet | grep -q 'parameters: 141628 (file holds 141628)'"), 0);
    assert_int_equal(system("./ditrt info -m " SDXL "/unet | grep -q 'text_time'"), 0);
    assert_int_not_equal(tu_run(tmp, "./ditrt bench transformer --arch sdxl-unet --layers 2", 0, msg, sizeof msg), 0);
    if (!strstr(msg, "--layers")) fail_msg("expected an error naming --layers, got: %s", msg);
}

/* `ditrt bench vae` (the SD VAE decode the U-Net benchmarks compare) and the --rounds-stdin
 * protocol scripts/bench/unet_diffusers.py drives: a warm-up line, one timed round per line of
 * input, each with its floor; no input at all is an error naming the option. Small: 64 px. */
static void test_bench_rounds_stdin(void **state)
{
    (void)state;
    char msg[4096];
    int rc = tu_run(tmp, "printf 'go\\ngo\\n' | ./ditrt bench vae --res 64 --dtype f32 --threads 1 --rounds-stdin", 1, msg, sizeof msg);
    if (rc != 0) fail_msg("bench vae --rounds-stdin failed: %s", msg);
    const char *want[] = {"round 0: step", "(warm-up)", "round 1: step", "round 2: step", "ratio to floor",
                          "bench vae: SD-shaped AutoencoderKL decode res=64 (latent 8x8)", "best of 2"};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        if (!strstr(msg, want[i])) fail_msg("expected \"%s\" in: %s", want[i], msg);
    assert_null(strstr(msg, "round 3"));
    assert_int_not_equal(tu_run(tmp, "./ditrt bench vae --res 64 --dtype f32 --threads 1 --rounds-stdin < /dev/null", 0, msg, sizeof msg), 0);
    if (!strstr(msg, "--rounds-stdin")) fail_msg("expected an error naming --rounds-stdin, got: %s", msg);
    assert_int_not_equal(tu_run(tmp, "./ditrt bench vae --res 100", 0, msg, sizeof msg), 0);
    if (!strstr(msg, "--res")) fail_msg("expected an error naming --res, got: %s", msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parity_f32),
        cmocka_unit_test(test_parity_bf16),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_mask_used),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_param_count),
        cmocka_unit_test(test_config_refusals),
        cmocka_unit_test(test_config_fuzz),
        cmocka_unit_test(test_attn_plans_refused),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_bench_rounds_stdin),
    };
    return cmocka_run_group_tests_name("unet", tests, setup, teardown);
}
