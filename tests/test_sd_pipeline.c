/* End-to-end Stable Diffusion pipelines against diffusers' StableDiffusionPipeline and
 * StableDiffusionXLPipeline on the tiny fixtures (tests/fixtures/sd-15-tiny, sd-xl-tiny,
 * sd-xl-turbo-tiny; scripts/fixtures/sd_pipe.py): f32 end to end, 8-bit PSNR >= 40 dB and the
 * final latents; the folders' own solvers and a swapped one; clip_skip, an SDXL empty negative
 * prompt (force_zeros_for_empty_prompt), guidance 0 (Turbo), batch 2. */
#include "testutil.h"
#include "runtime/io/image.h"
#include "runtime/core/json.h"
#include "runtime/core/safetensors.h"
#include "runtime/pipeline/pipeline.h"
#include <unistd.h>

typedef struct {
    const char *dir, *name;
} sd_case;

static const sd_case cases[] = {
    {"tests/fixtures/sd-15-tiny", "ddim_neg"},        {"tests/fixtures/sd-15-tiny", "ddim_clipskip"},
    {"tests/fixtures/sd-15-tiny", "dpmpp_b2"},        {"tests/fixtures/sd-xl-tiny", "euler_zeros"},
    {"tests/fixtures/sd-xl-tiny", "euler_neg"},       {"tests/fixtures/sd-xl-tiny", "dpmpp_b2"},
    {"tests/fixtures/sd-xl-turbo-tiny", "euler_a_1step"}, {"tests/fixtures/sd-xl-turbo-tiny", "euler_a_2steps"},
};

typedef struct {
    char prompt[256], negative[256], solver[64];
    int has_negative, seed, width, height, steps, batch, clip_skip;
    double cfg;
} case_meta;

static void str_or_null(cJSON *j, const char *key, char *out, size_t n, int *present)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    *present = cJSON_IsString(v);
    snprintf(out, n, "%s", *present ? v->valuestring : "");
}

static void read_meta(const sd_case *c, case_meta *m)
{
    char path[512];
    snprintf(path, sizeof path, "%s/case_%s.json", c->dir, c->name);
    cJSON *j;
    dt_err err = {0};
    int present;
    if (dt_json_load(path, &j, &err) != DT_OK) fail_msg("%s", err.msg);
    str_or_null(j, "prompt", m->prompt, sizeof m->prompt, &present);
    assert_true(present);
    str_or_null(j, "negative_prompt", m->negative, sizeof m->negative, &m->has_negative);
    str_or_null(j, "solver", m->solver, sizeof m->solver, &present);
    const cJSON *cs = cJSON_GetObjectItemCaseSensitive(j, "clip_skip");
    m->clip_skip = cJSON_IsNumber(cs) ? cs->valueint : 0;
    assert_int_equal(dt_json_int(j, path, "seed", 0, 0, &m->seed, &err), DT_OK);
    assert_int_equal(dt_json_int(j, path, "width", 0, 0, &m->width, &err), DT_OK);
    assert_int_equal(dt_json_int(j, path, "height", 0, 0, &m->height, &err), DT_OK);
    assert_int_equal(dt_json_int(j, path, "steps", 0, 0, &m->steps, &err), DT_OK);
    assert_int_equal(dt_json_int(j, path, "batch", 0, 0, &m->batch, &err), DT_OK);
    assert_int_equal(dt_json_num(j, path, "cfg", 0, 0, &m->cfg, &err), DT_OK);
    cJSON_Delete(j);
}

/* The worst 8-bit PSNR of the case's images against diffusers' (PIL's rounding of the same
 * floats); `alter` changes the request first (NULL: as the case says). */
static double case_psnr(const sd_case *c, void (*alter)(dt_gen_request *))
{
    case_meta m;
    read_meta(c, &m);
    dt_err err = {0};
    dt_pipeline_config pc = {.model_dir = c->dir, .dtype = DT_F32, .text_dtype = DT_F32, .threads = 2,
                             .solver = m.solver[0] ? m.solver : NULL};
    dt_pipeline *p;
    if (dt_pipeline_load(&pc, &p, &err) != DT_OK) fail_msg("%s: %s", c->dir, err.msg);
    dt_gen_request r = dt_gen_request_default();
    r.prompt = m.prompt;
    r.negative_prompt = m.has_negative ? m.negative : NULL;
    r.seed = (uint64_t)m.seed;
    r.width = m.width; r.height = m.height; r.steps = m.steps; r.cfg = (float)m.cfg; r.batch = m.batch;
    r.clip_skip = m.clip_skip;
    if (alter) alter(&r);
    dt_gen_result res;
    if (dt_pipeline_generate(p, &r, &res, &err) != DT_OK) fail_msg("%s/%s: %s", c->dir, c->name, err.msg);
    assert_int_equal(res.batch, m.batch);
    char path[512];
    snprintf(path, sizeof path, "%s/case_%s.safetensors", c->dir, c->name);
    dt_safetensors *st;
    assert_int_equal(dt_st_open(path, &st, &err), DT_OK);
    const dt_st_entry *u8 = dt_st_find(st, "image_u8");
    assert_non_null(u8);
    size_t px = (size_t)m.width * m.height;
    assert_int_equal(u8->nbytes, (size_t)m.batch * px * 3);
    uint8_t *mine = malloc(px * 3);
    assert_non_null(mine);
    double worst = INFINITY;
    for (int b = 0; b < m.batch; b++) {
        dt_image_from_float(res.pixels + (size_t)b * 3 * px, m.height, m.width, mine);
        worst = fmin(worst, dt_image_psnr(mine, (const uint8_t *)u8->data + (size_t)b * px * 3, m.width, m.height));
    }
    printf("  %-18s %-14s %dx%d x%d: PSNR 8-bit %.1f dB%s\n", c->dir + 15, c->name, m.width, m.height, m.batch, worst,
           alter ? " (altered request)" : "");
    free(mine);
    free(res.pixels);
    dt_st_close(st);
    dt_pipeline_free(p);
    return worst;
}

static void run_case(const sd_case *c)
{
    double worst = case_psnr(c, NULL);
    if (!(worst >= 40)) fail_msg("%s/%s: PSNR %.1f dB below 40", c->dir, c->name, worst);
}

static void no_clip_skip(dt_gen_request *r) { r->clip_skip = 0; }
static void negative_space(dt_gen_request *r) { r->negative_prompt = " "; }

/* The settings the cases exercise change the result: without clip_skip, or with an encoded
 * (not zeroed) negative prompt, the images are far from diffusers'. */
static void test_settings_matter(void **state)
{
    (void)state;
    assert_true(case_psnr(&cases[1], no_clip_skip) < 35);
    assert_true(case_psnr(&cases[3], negative_space) < 35);
}

/* The public C API takes the folder unchanged: the Turbo case (guidance 0, clip_skip as a
 * gen param field) through ditrt_ctx_create / ditrt_generate. */
static void test_c_api(void **state)
{
    (void)state;
    const sd_case *c = &cases[6];
    case_meta m;
    read_meta(c, &m);
    ditrt_ctx_params cp;
    ditrt_ctx_params_init(&cp);
    cp.model_dir = c->dir;
    cp.dtype = "f32";
    cp.text_dtype = "f32";
    cp.threads = 2;
    ditrt_ctx *ctx = NULL;
    if (ditrt_ctx_create(&cp, &ctx) != DITRT_OK) fail_msg("ditrt_ctx_create: %s", ditrt_errmsg(ctx));
    ditrt_gen_params gp;
    ditrt_gen_params_init(&gp);
    gp.prompt = m.prompt;
    gp.negative_prompt = NULL;
    gp.seed = (uint64_t)m.seed;
    gp.width = m.width; gp.height = m.height; gp.steps = m.steps; gp.cfg = (float)m.cfg;
    ditrt_image *im;
    int n;
    if (ditrt_generate(ctx, &gp, &im, &n) != DITRT_OK) fail_msg("%s: %s", c->dir, ditrt_errmsg(ctx));
    assert_int_equal(n, 1);
    char path[512];
    snprintf(path, sizeof path, "%s/case_%s.safetensors", c->dir, c->name);
    dt_safetensors *st;
    dt_err err = {0};
    assert_int_equal(dt_st_open(path, &st, &err), DT_OK);
    const dt_st_entry *u8 = dt_st_find(st, "image_u8");
    assert_non_null(u8);
    double p8 = dt_image_psnr(im[0].rgb, u8->data, m.width, m.height);
    printf("  C API %s/%s: PSNR 8-bit %.1f dB\n", c->dir + 15, c->name, p8);
    assert_true(p8 >= 40);
    gp.clip_skip = 1; /* SDXL has clip_skip too: hidden_states[-3], another image */
    ditrt_image *im2;
    if (ditrt_generate(ctx, &gp, &im2, &n) != DITRT_OK) fail_msg("%s: %s", c->dir, ditrt_errmsg(ctx));
    assert_true(dt_image_psnr(im2[0].rgb, u8->data, m.width, m.height) < 35);
    ditrt_images_free(im2, n);
    ditrt_images_free(im, 1);
    dt_st_close(st);
    ditrt_ctx_free(ctx);
}

/* DiTFastAttn plans do not apply to U-Nets: txt2img refuses one with a clear message. */
static void test_attn_plan_refused(void **state)
{
    (void)state;
    char cmd[1024], out[256];
    snprintf(out, sizeof out, "/tmp/ditrt-sd-plan-%d", (int)getpid());
    snprintf(cmd, sizeof cmd, "./ditrt txt2img -m tests/fixtures/sd-15-tiny -p 'a cat' --steps 2 -W 64 -H 64 "
             "--attn-plan tests/fixtures/fastattn/plan_cond.json -o %s.png > %s.txt 2>&1", out, out);
    assert_int_not_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "grep -q 'no DiT blocks' %s.txt && test ! -e %s.png", out, out);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s.txt", out);
    remove(cmd);
}

static void test_sd15(void **state) { (void)state; for (int i = 0; i < 3; i++) run_case(&cases[i]); }
static void test_sdxl(void **state) { (void)state; for (int i = 3; i < 6; i++) run_case(&cases[i]); }
static void test_sdxl_turbo(void **state) { (void)state; for (int i = 6; i < 8; i++) run_case(&cases[i]); }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sd15),
        cmocka_unit_test(test_sdxl),
        cmocka_unit_test(test_sdxl_turbo),
        cmocka_unit_test(test_settings_matter),
        cmocka_unit_test(test_c_api),
        cmocka_unit_test(test_attn_plan_refused),
    };
    return cmocka_run_group_tests_name("sd_pipeline", tests, NULL, NULL);
}
