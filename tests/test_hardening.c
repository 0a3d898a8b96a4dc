/* Regressions of the hardening issue (#20): bad files refused with one line naming the file and
 * field (NaN in JSON, config sizes, scheduler betas, safetensors headers), NULL arguments of the
 * C API, the cancel rule, and write errors keeping their errno (/dev/full). */
#include "testutil.h"
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include "runtime/core/json.h"
#include "runtime/core/safetensors.h"
#include "runtime/plans/fastattn.h"
#include "runtime/plans/model_schedule.h"
#include "runtime/text/sp_model_check.h"
#include "runtime/text/tokenizer.h"

#define PIPE "tests/fixtures/pixart-pipe-tiny"
#define SIGMA "tests/fixtures/pixart-sigma-tiny"
#define LATTE "tests/fixtures/latte-tiny"

static char tmp[256];

static int setup(void **state) { (void)state; tu_tmpdir(tmp, sizeof tmp); return 0; }
static int teardown(void **state) { (void)state; tu_rmtree(tmp); return 0; }

/* Copies folder src to tmp/name; returns the copy's path in out. */
static void copy_tree(const char *src, const char *name, char *out, size_t n)
{
    snprintf(out, n, "%s/%s", tmp, name);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -rL '%s' '%s'", out, src, out);
    assert_int_equal(system(cmd), 0);
}

/* Sets field of the JSON file at path to the raw JSON text `value` (a number, NaN, ...). */
static void set_field(const char *path, const char *field, const char *value)
{
    cJSON *j;
    dt_err err = {0};
    if (dt_json_load(path, &j, &err) != DT_OK) fail_msg("%s", err.msg);
    cJSON_DeleteItemFromObjectCaseSensitive(j, field);
    cJSON_AddNumberToObject(j, field, 12345.0); /* placeholder, replaced as text below */
    char *txt = cJSON_Print(j);
    cJSON_Delete(j);
    char *at = strstr(txt, "12345");
    assert_non_null(at);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "%.*s%s%s", (int)(at - txt), txt, value, at + 5);
    fclose(f);
    free(txt);
}

/* Runs cmd (stderr captured): non-zero exit, one line, containing every needle. */
static void expect_cli_error(const char *cmd, const char *n1, const char *n2)
{
    char out[4096];
    int rc = tu_run(tmp, cmd, 0, out, sizeof out);
    if (rc == 0) fail_msg("%s: exit 0, expected a failure", cmd);
    if (rc >= 128) fail_msg("%s: died (exit %d): %s", cmd, rc, out);
    if (!strstr(out, n1) || (n2 && !strstr(out, n2))) fail_msg("%s: message lacks \"%s\"/\"%s\": %s", cmd, n1, n2 ? n2 : "", out);
    char *nl = strchr(out, '\n');
    if (nl && nl[1]) fail_msg("%s: more than one line: %s", cmd, out);
}

/* ---- 1. NaN in JSON: a config and a plan ---- */

static void test_nan_config_and_plan(void **state)
{
    (void)state;
    char dir[512], cfg[600], cmd[1200];
    copy_tree(SIGMA, "nan", dir, sizeof dir);
    snprintf(cfg, sizeof cfg, "%s/transformer/config.json", dir);
    set_field(cfg, "norm_eps", "NaN");
    snprintf(cmd, sizeof cmd, "./ditrt info -m %s", dir);
    expect_cli_error(cmd, cfg, "NaN at line");
    /* a model schedule (a plan read by dt_json_load), as Python's json.dump writes a NaN */
    char plan[600];
    snprintf(plan, sizeof plan, "%s/schedule.json", tmp);
    const char *ptxt = "{\"format\": \"ditrt-model-schedule\",\n \"models\": [0, NaN, 1]}";
    tu_write_file(plan, ptxt, strlen(ptxt));
    dt_model_schedule ms;
    dt_err err = {0};
    assert_int_equal(dt_model_schedule_load(plan, 2, &ms, &err), DT_EFORMAT);
    if (!strstr(err.msg, plan) || !strstr(err.msg, "NaN at line 2 column 16")) fail_msg("%s", err.msg);
}

/* ---- 2. config sizes bounded before anything is allocated ---- */

static void test_config_limits(void **state)
{
    (void)state;
    static const struct { const char *model, *file, *field, *value; } cases[] = {
        {SIGMA, "transformer/config.json", "num_layers", "1000000000"},
        {SIGMA, "transformer/config.json", "sample_size", "1e9"},
        {SIGMA, "transformer/config.json", "num_attention_heads", "100000"},
        {SIGMA, "transformer/config.json", "caption_channels", "2147483647"},
        {LATTE, "transformer/config.json", "video_length", "1000000000"},
        {PIPE, "vae/config.json", "latent_channels", "1000000"},
        {PIPE, "text_encoder/config.json", "d_model", "1000000000"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char dir[512], cfg[700], cmd[1400], want[100];
        copy_tree(cases[i].model, "limits", dir, sizeof dir);
        snprintf(cfg, sizeof cfg, "%s/%s", dir, cases[i].file);
        set_field(cfg, cases[i].field, cases[i].value);
        if (!strncmp(cases[i].file, "transformer", 11)) snprintf(cmd, sizeof cmd, "./ditrt info -m %s", dir);
        else snprintf(cmd, sizeof cmd, "./ditrt txt2img -m %s -p x --steps 1 -W 64 -H 64 --dtype f32 --text-encoder-dtype f32 -q -o %s/o.png", dir, tmp);
        snprintf(want, sizeof want, "field \"%s\"", cases[i].field);
        expect_cli_error(cmd, cfg, want);
    }
}

/* ---- 3. scheduler betas ---- */

static void test_scheduler_betas(void **state)
{
    (void)state;
    static const struct { const char *field, *value; } cases[] = {
        {"beta_end", "5.02"}, {"beta_start", "-0.1"}, {"beta_end", "0.9"}, {"beta_start", "1e-50"}, {"beta_end", "Infinity"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char dir[512], cfg[700], cmd[1400], want[64];
        copy_tree(PIPE, "betas", dir, sizeof dir);
        snprintf(cfg, sizeof cfg, "%s/scheduler/scheduler_config.json", dir);
        set_field(cfg, cases[i].field, cases[i].value);
        snprintf(cmd, sizeof cmd, "./ditrt txt2img -m %s -p x --steps 2 -W 64 -H 64 --dtype f32 --text-encoder-dtype f32 -q -o %s/b.png",
                 dir, tmp);
        snprintf(want, sizeof want, "field \"%s\"", cases[i].field);
        expect_cli_error(cmd, cfg, want);
        char png[600];
        snprintf(png, sizeof png, "%s/b.png", tmp);
        assert_int_not_equal(access(png, F_OK), 0); /* no output */
    }
}

/* ---- 3. safetensors headers ---- */

static void write_st(const char *path, const char *header, size_t hlen, size_t data)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    fwrite(len8, 1, 8, f);
    fwrite(header, 1, hlen, f);
    for (size_t i = 0; i < data; i++) fputc(0, f);
    fclose(f);
}

static void expect_st(const char *header, size_t hlen, dt_status want, const char *needle)
{
    char path[600];
    snprintf(path, sizeof path, "%s/h.safetensors", tmp);
    write_st(path, header, hlen, 8);
    dt_safetensors *st = NULL;
    dt_err err = {0};
    dt_status s = dt_st_open(path, &st, &err);
    if (s != want) fail_msg("header %.*s: status %d, expected %d (%s)", (int)hlen, header, (int)s, (int)want, err.msg);
    if (s == DT_OK) { dt_st_close(st); return; }
    if (!strstr(err.msg, path) || !strstr(err.msg, needle)) fail_msg("message lacks \"%s\": %s", needle, err.msg);
}

static void test_safetensors_header(void **state)
{
    (void)state;
    const char good[] = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    expect_st(good, strlen(good), DT_OK, NULL);
    char padded[128];
    snprintf(padded, sizeof padded, "%s      ", good); /* trailing spaces: the format's padding */
    expect_st(padded, strlen(padded), DT_OK, NULL);
    snprintf(padded, sizeof padded, "%sGARBAGE!", good);
    expect_st(padded, strlen(padded), DT_EFORMAT, "after its JSON object");
    snprintf(padded, sizeof padded, "%s  \n", good);
    expect_st(padded, strlen(padded), DT_EFORMAT, "after its JSON object");
    const char bad_utf8[] = "{\"\xff\xfe\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    expect_st(bad_utf8, strlen(bad_utf8), DT_EFORMAT, "not valid UTF-8");
    const char overlong[] = "{\"\xc0\xaf\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    expect_st(overlong, strlen(overlong), DT_EFORMAT, "not valid UTF-8");
    const char utf8[] = "{\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    expect_st(utf8, strlen(utf8), DT_OK, NULL);
    expect_st("{}", 2, DT_OK, NULL); /* no tensors: no NULL + 0 in the overlap check (UBSan) */
}

/* ---- 4. C API: NULL arguments ---- */

static void test_api_null(void **state)
{
    (void)state;
    ditrt_ctx *c = (ditrt_ctx *)1;
    assert_int_equal(ditrt_ctx_create(NULL, &c), DITRT_EINVAL);
    assert_non_null(c);
    assert_non_null(strstr(ditrt_errmsg(c), "NULL"));
    ditrt_image *im = NULL;
    int n = 0;
    ditrt_gen_params gp;
    ditrt_gen_params_init(&gp);
    gp.prompt = "x";
    assert_int_equal(ditrt_generate(c, &gp, &im, &n), DITRT_EINVAL); /* the model failed to load */
    ditrt_ctx_free(c);
    ditrt_ctx_params cp;
    ditrt_ctx_params_init(&cp);
    cp.model_dir = PIPE;
    assert_int_equal(ditrt_ctx_create(&cp, NULL), DITRT_EINVAL);
    ditrt_ctx_params_init(NULL);
    ditrt_gen_params_init(NULL);
    ditrt_gen_params_init_video(NULL);
    ditrt_quantize_params_init(NULL);
    ditrt_quantize_result_init(NULL);
    ditrt_attn_calib_params_init(NULL);
    ditrt_search_solver_params_init(NULL);
    ditrt_search_models_params_init(NULL);
    /* NULL context everywhere */
    assert_int_equal(ditrt_generate(NULL, &gp, &im, &n), DITRT_EINVAL);
    assert_int_equal(ditrt_generate_video(NULL, &gp, NULL, NULL), DITRT_EINVAL);
    assert_int_equal(ditrt_ctx_get_info(NULL, NULL), DITRT_EINVAL);
    assert_int_equal(ditrt_last_gen_info(NULL, NULL), DITRT_EINVAL);
    ditrt_cancel(NULL);
    ditrt_ctx_free(NULL);
    assert_non_null(ditrt_errmsg(NULL));
    /* a loaded context: NULL params and NULL out pointers */
    cp.dtype = cp.text_dtype = "f32";
    assert_int_equal(ditrt_ctx_create(&cp, &c), DITRT_OK);
    assert_int_equal(ditrt_generate(c, NULL, &im, &n), DITRT_EINVAL);
    assert_non_null(strstr(ditrt_errmsg(c), "NULL"));
    assert_int_equal(ditrt_generate(c, &gp, NULL, &n), DITRT_EINVAL);
    assert_non_null(strstr(ditrt_errmsg(c), "NULL"));
    assert_int_equal(ditrt_generate(c, &gp, &im, NULL), DITRT_EINVAL);
    assert_int_equal(ditrt_generate_video(c, &gp, NULL, NULL), DITRT_EINVAL);
    assert_int_equal(ditrt_ctx_get_info(c, NULL), DITRT_EINVAL);
    assert_int_equal(ditrt_last_gen_info(c, NULL), DITRT_EINVAL);
    ditrt_ctx_free(c);
    /* the error-struct functions */
    ditrt_error e;
    assert_int_equal(ditrt_quantize(NULL, NULL, &e), DITRT_EINVAL);
    assert_int_equal(ditrt_quantize_check(NULL, NULL), DITRT_EINVAL);
    assert_int_equal(ditrt_calibrate_attn(NULL, NULL, &e), DITRT_EINVAL);
    assert_true(e.msg[0]);
    assert_int_equal(ditrt_attn_plan_summarize(NULL, NULL, 0, 0, 0, NULL, &e), DITRT_EINVAL);
    assert_int_equal(ditrt_search_solver(NULL, NULL, &e), DITRT_EINVAL);
    assert_int_equal(ditrt_search_models(NULL, NULL, NULL), DITRT_EINVAL);
    assert_int_equal(ditrt_output_check(NULL, 0, NULL, &e), DITRT_EINVAL);
    assert_int_equal(ditrt_image_save(NULL, NULL, NULL, 0, NULL), DITRT_EINVAL);
    assert_int_equal(ditrt_image_load(NULL, NULL, &e), DITRT_EINVAL);
    assert_int_equal(ditrt_video_load(NULL, NULL, NULL, &e), DITRT_EINVAL);
    assert_int_equal(ditrt_compare_files(NULL, NULL, NULL, NULL, &e), DITRT_EINVAL);
    ditrt_image_free(NULL);
    ditrt_video_free(NULL);
    ditrt_compare_result_free(NULL);
    ditrt_images_free(NULL, 3);
    ditrt_videos_free(NULL, 3);
}

/* ---- 4. the cancel rule: a cancel right before or after the start cancels that generation ---- */

typedef struct {
    ditrt_ctx *c;
    ditrt_gen_params gp;
    ditrt_status s;
    atomic_int started;
} gen_thread;

static void *run_gen(void *u)
{
    gen_thread *g = u;
    ditrt_image *im = NULL;
    int n = 0;
    atomic_store(&g->started, 1);
    g->s = ditrt_generate(g->c, &g->gp, &im, &n);
    ditrt_images_free(im, n);
    return NULL;
}

static void test_cancel_race(void **state)
{
    (void)state;
    ditrt_ctx_params cp;
    ditrt_ctx_params_init(&cp);
    cp.model_dir = PIPE;
    cp.dtype = cp.text_dtype = "f32";
    cp.keep_text_encoder = 1;
    gen_thread g = {0};
    assert_int_equal(ditrt_ctx_create(&cp, &g.c), DITRT_OK);
    ditrt_gen_params_init(&g.gp);
    g.gp.prompt = "a cat";
    g.gp.steps = 3;
    g.gp.width = g.gp.height = 64;
    /* before: on the same thread, then the generation */
    ditrt_cancel(g.c);
    run_gen(&g);
    assert_int_equal(g.s, DITRT_ECANCELLED);
    assert_non_null(strstr(ditrt_errmsg(g.c), "cancelled"));
    /* consumed: the next one runs */
    run_gen(&g);
    assert_int_equal(g.s, DITRT_OK);
    /* before, from another thread racing the start */
    for (int k = 0; k < 3; k++) {
        pthread_t t;
        atomic_store(&g.started, 0);
        if (k == 0) ditrt_cancel(g.c);
        assert_int_equal(pthread_create(&t, NULL, run_gen, &g), 0);
        if (k > 0) {
            while (!atomic_load(&g.started)) ;
            if (k == 2) usleep(2000); /* likely inside the call by now */
            ditrt_cancel(g.c);
        }
        pthread_join(t, NULL);
        /* a cancel is never lost: when the generation finished before it arrived (a loaded
         * machine can run the whole tiny generation within the sleep), it stops the next one */
        if (k > 0 && g.s == DITRT_OK) run_gen(&g);
        if (g.s != DITRT_ECANCELLED) fail_msg("try %d: status %d (%s), expected cancelled", k, (int)g.s, ditrt_errmsg(g.c));
    }
    run_gen(&g);
    assert_int_equal(g.s, DITRT_OK);
    ditrt_ctx_free(g.c);
}

/* ---- 6. write errors keep their errno ---- */

static void test_write_errno(void **state)
{
    (void)state;
    if (access("/dev/full", W_OK)) { print_message("  skipped: no writable /dev/full\n"); skip(); }
    /* Through a link in the temp folder: were the device ever written through a temp file and
     * a rename again, the rename would replace the link, never /dev/full itself. */
    char full[600];
    snprintf(full, sizeof full, "%s/full", tmp);
    assert_int_equal(symlink("/dev/full", full), 0);
    float x[4] = {1, 2, 3, 4};
    int64_t sh[1] = {4};
    dt_tensor t = dt_tensor_view(x, DT_F32, 1, sh);
    dt_st_item it = {"x", &t};
    dt_err err = {0};
    char want[700];
    snprintf(want, sizeof want, "%s: write failed: No space left on device", full);
    assert_int_equal(dt_st_write(full, &it, 1, &err), DT_EIO);
    if (!strstr(err.msg, want)) fail_msg("%s", err.msg);
    dt_attn_plan p;
    dt_err_clear(&err);
    assert_int_equal(dt_attn_plan_load("tests/fixtures/fastattn/plan_cond.json", &p, &err), DT_OK);
    assert_int_equal(dt_attn_plan_save(&p, full, &err), DT_EIO);
    dt_attn_plan_free(&p);
    if (!strstr(err.msg, want)) fail_msg("%s", err.msg);
    dt_model_schedule ms = {2, (int[]){0, 1}};
    const char *zoo[2] = {"a", "b"};
    dt_err_clear(&err);
    assert_int_equal(dt_model_schedule_save(full, &ms, zoo, 2, &err), DT_EIO);
    if (!strstr(err.msg, want)) fail_msg("%s", err.msg);
    struct stat sb;
    assert_int_equal(stat(full, &sb), 0);
    assert_true(S_ISCHR(sb.st_mode)); /* still the link to the device */
    /* the CLI: eval writes a safetensors output */
    char cmd[1200], out[4096];
    snprintf(cmd, sizeof cmd, "./ditrt eval transformer -m " SIGMA " --in " SIGMA "/case_square.in.safetensors --out %s", full);
    assert_int_not_equal(tu_run(tmp, cmd, 0, out, sizeof out), 0);
    if (!strstr(out, "No space left on device")) fail_msg("%s", out);
}

/* ---- SentencePiece normalizer charsmaps (libsentencepiece indexes them unchecked) ---- */

static uint8_t *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    rewind(f);
    uint8_t *d = malloc(*n);
    assert_non_null(d);
    assert_int_equal(fread(d, 1, *n, f), *n);
    fclose(f);
    return d;
}

static void expect_charsmap_refused(const uint8_t *blob, size_t n, const char *needle)
{
    char msg[256] = "";
    assert_int_equal(dt_sp_charsmap_check(blob, n, msg, sizeof msg), -1);
    if (!strstr(msg, needle)) fail_msg("charsmap message lacks \"%s\": %s", needle, msg);
}

static void test_sp_charsmap(void **state)
{
    (void)state;
    size_t n;
    uint8_t *model = read_all("tests/fixtures/t5-tiny/tokenizer/spiece.model", &n);
    size_t len;
    const uint8_t *map = dt_sp_model_charsmap(model, n, &len);
    /* the fixture's nmt_nfkc map is a real one: the check passes it */
    assert_non_null(map);
    assert_true(len > 100000);
    char msg[256] = "";
    if (dt_sp_charsmap_check(map, len, msg, sizeof msg)) fail_msg("real charsmap refused: %s", msg);
    assert_int_equal(dt_sp_model_check(model, n, msg, sizeof msg), 0);

    uint8_t *bad = malloc(len);
    uint32_t trie = (uint32_t)map[0] | (uint32_t)map[1] << 8 | (uint32_t)map[2] << 16 | (uint32_t)map[3] << 24;
    memcpy(bad, map, len);
    bad[4 + 4 * 3 + 3] = 0x7f; /* unit 3: an offset far past the trie */
    expect_charsmap_refused(bad, len, "points outside the trie");
    memcpy(bad, map, len);
    bad[len - 1] = 'x';
    expect_charsmap_refused(bad, len, "not NUL-terminated");
    memcpy(bad, map, len);
    bad[0] = bad[1] = bad[2] = bad[3] = 0xff;
    expect_charsmap_refused(bad, len, "broken");
    /* a leaf whose value indexes past the strings: the first has_leaf unit's value unit */
    memcpy(bad, map, len);
    int found = 0;
    for (uint32_t i = 0; i < trie / 4 && !found; i++) {
        uint32_t u;
        memcpy(&u, bad + 4 + 4 * i, 4);
        if (u >> 31 || !(u & 0x100)) continue;
        uint32_t base = i ^ ((u >> 10) << ((u & 0x200) >> 6));
        uint32_t v = 0x80000000u | 0x7ffffff0u;
        memcpy(bad + 4 + 4 * base, &v, 4);
        found = 1;
    }
    assert_true(found);
    expect_charsmap_refused(bad, len, "past the");
    free(bad);

    /* a corrupt map inside a model file: dt_tokenizer_load refuses it with one line */
    uint8_t *copy = malloc(n);
    memcpy(copy, model, n);
    copy[(map - model) + 4 + 4 * 3 + 3] = 0x7f;
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/tok", tmp);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/spiece.model", dir);
    tu_write_file(path, copy, n);
    dt_tokenizer *t = NULL;
    dt_err err = {0};
    assert_int_not_equal(dt_tokenizer_load(dir, &t, &err), DT_OK);
    assert_null(t);
    if (!strstr(err.msg, "normalizer_spec") || !strstr(err.msg, "spiece.model")) fail_msg("message: %s", err.msg);
    free(copy);
    free(model);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nan_config_and_plan),
        cmocka_unit_test(test_config_limits),
        cmocka_unit_test(test_scheduler_betas),
        cmocka_unit_test(test_safetensors_header),
        cmocka_unit_test(test_api_null),
        cmocka_unit_test(test_cancel_race),
        cmocka_unit_test(test_write_errno),
        cmocka_unit_test(test_sp_charsmap),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
