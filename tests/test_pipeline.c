/* End-to-end txt2img against diffusers' PixArtSigmaPipeline on the tiny pipeline fixture
 * (tests/fixtures/pixart-pipe-tiny), through the public C API; determinism, contexts in
 * parallel threads, cancellation, and the request checks. */
#include "testutil.h"
#include "runtime/io/image.h"
#include "runtime/core/json.h"
#include "runtime/pipeline/pipeline.h"
#include "runtime/core/safetensors.h"
#include <pthread.h>
#include <sys/stat.h>

#define PIPE "tests/fixtures/pixart-pipe-tiny"

static const char *cases[] = {"square_s0", "square_s7_neg", "wide_s0_neg", "wide_s7"};

typedef struct {
    char prompt[256], negative[256];
    int seed, width, height, steps;
    double cfg;
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
    assert_int_equal(dt_json_int(j, path, "steps", 0, 0, &m->steps, &err), DT_OK);
    assert_int_equal(dt_json_num(j, path, "cfg", 0, 0, &m->cfg, &err), DT_OK);
    cJSON_Delete(j);
}

static ditrt_ctx *make_ctx(const char *dtype)
{
    ditrt_ctx_params cp;
    ditrt_ctx_params_init(&cp);
    cp.model_dir = PIPE;
    cp.dtype = dtype;
    cp.text_dtype = dtype;
    ditrt_ctx *c = NULL;
    if (ditrt_ctx_create(&cp, &c) != DITRT_OK) fail_msg("ditrt_ctx_create: %s", ditrt_errmsg(c));
    return c;
}

static void params_for(const case_meta *m, ditrt_gen_params *gp)
{
    ditrt_gen_params_init(gp);
    gp->prompt = m->prompt;
    gp->negative_prompt = m->negative;
    gp->seed = (uint64_t)m->seed;
    gp->width = m->width;
    gp->height = m->height;
    gp->steps = m->steps;
    gp->cfg = (float)m->cfg;
}

static double psnr_f(const float *a, const float *b, size_t n)
{
    double mse = 0;
    for (size_t i = 0; i < n; i++) mse += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    mse /= (double)n;
    return mse > 0 ? 10 * log10(1.0 / mse) : INFINITY;
}

/* The decoded float image and the 8-bit image both within 40 dB of diffusers'. */
static void test_matches_diffusers(void **state)
{
    (void)state;
    ditrt_ctx *c = make_ctx("f32");
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        case_meta m;
        read_meta(cases[i], &m);
        ditrt_gen_params gp;
        params_for(&m, &gp);
        ditrt_image *im;
        int n;
        if (ditrt_generate(c, &gp, &im, &n) != DITRT_OK) fail_msg("%s: %s", cases[i], ditrt_errmsg(c));
        assert_int_equal(n, 1);
        assert_int_equal(im[0].width, m.width);
        assert_int_equal(im[0].height, m.height);
        char path[512];
        snprintf(path, sizeof path, PIPE "/case_%s.safetensors", cases[i]);
        dt_safetensors *st;
        dt_err err = {0};
        assert_int_equal(dt_st_open(path, &st, &err), DT_OK);
        const dt_st_entry *u8 = dt_st_find(st, "image_u8"), *fl = dt_st_find(st, "image");
        assert_non_null(u8);
        assert_int_equal(u8->nbytes, (size_t)m.width * m.height * 3);
        double p8 = dt_image_psnr(im[0].rgb, u8->data, m.width, m.height);
        /* the float image, through the library pipeline (before 8-bit rounding) */
        dt_pipeline_config pc = {.model_dir = PIPE, .dtype = DT_F32, .text_dtype = DT_F32};
        dt_pipeline *p;
        assert_int_equal(dt_pipeline_load(&pc, &p, &err), DT_OK);
        dt_gen_request r = dt_gen_request_default();
        r.prompt = m.prompt; r.negative_prompt = m.negative; r.seed = (uint64_t)m.seed;
        r.width = m.width; r.height = m.height; r.steps = m.steps; r.cfg = (float)m.cfg;
        dt_gen_result res;
        assert_int_equal(dt_pipeline_generate(p, &r, &res, &err), DT_OK);
        size_t nf = (size_t)3 * m.width * m.height;
        float *ref = tu_alloc(nf), *mine = tu_alloc(nf);
        dt_st_read_f32(fl, ref);
        for (size_t k = 0; k < nf; k++) { /* VaeImageProcessor.denormalize */
            float v = res.pixels[k] / 2 + 0.5f;
            mine[k] = v < 0 ? 0 : (v > 1 ? 1 : v);
        }
        double pf = psnr_f(mine, ref, nf);
        printf("  %-14s %dx%d: PSNR 8-bit %.1f dB, float %.1f dB\n", cases[i], m.width, m.height, p8, pf);
        if (!(p8 >= 40 && pf >= 40)) fail_msg("%s: PSNR %.1f / %.1f dB below 40", cases[i], p8, pf);
        free(ref); free(mine); free(res.pixels);
        dt_pipeline_free(p);
        dt_st_close(st);
        ditrt_images_free(im, n);
    }
    ditrt_ctx_free(c);
}

/* Same seed, settings and threads: byte-identical PNG files. */
static void test_deterministic_png(void **state)
{
    (void)state;
    char cmd[1024];
    const char *base = "./ditrt txt2img -m " PIPE " -p 'a cat' --steps 3 --seed 5 -W 48 -H 80 --threads 2 --quiet";
    snprintf(cmd, sizeof cmd, "%s -o /tmp/ditrt-det-a.png && %s -o /tmp/ditrt-det-b.png && cmp -s /tmp/ditrt-det-a.png /tmp/ditrt-det-b.png", base, base);
    assert_int_equal(system(cmd), 0);
    /* and a different seed gives a different image */
    snprintf(cmd, sizeof cmd, "%s -o /tmp/ditrt-det-c.png --seed 6 && ! cmp -s /tmp/ditrt-det-a.png /tmp/ditrt-det-c.png", base);
    assert_int_equal(system(cmd), 0);
    dt_image img;
    dt_err err = {0};
    assert_int_equal(dt_image_read("/tmp/ditrt-det-a.png", &img, &err), DT_OK);
    assert_int_equal(img.width, 48);
    assert_int_equal(img.height, 80);
    dt_image_free(&img);
    /* the PNG says how it was made */
    assert_int_equal(system("grep -a -q 'a cat' /tmp/ditrt-det-a.png && grep -a -q DPMSolverMultistepScheduler /tmp/ditrt-det-a.png"), 0);
    unlink("/tmp/ditrt-det-a.png"); unlink("/tmp/ditrt-det-b.png"); unlink("/tmp/ditrt-det-c.png");
}

typedef struct {
    ditrt_ctx *ctx;
    int seed;
    ditrt_image *im;
    int n;
    ditrt_status st;
} job;

static void *run_job(void *arg)
{
    job *j = arg;
    ditrt_gen_params gp;
    ditrt_gen_params_init(&gp);
    gp.prompt = "two threads";
    gp.seed = (uint64_t)j->seed;
    gp.width = 64;
    gp.height = 64;
    gp.steps = 3;
    j->st = ditrt_generate(j->ctx, &gp, &j->im, &j->n);
    return NULL;
}

/* Two contexts in two threads at once give what each gives alone. */
static void test_two_contexts_in_parallel(void **state)
{
    (void)state;
    job solo[2] = {{.ctx = make_ctx(tu_have_bf16() ? "bf16" : "f32"), .seed = 1}, {.ctx = make_ctx("f32"), .seed = 2}};
    for (int i = 0; i < 2; i++) run_job(&solo[i]);
    job par[2] = {{.ctx = solo[0].ctx, .seed = 1}, {.ctx = solo[1].ctx, .seed = 2}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) assert_int_equal(pthread_create(&th[i], NULL, run_job, &par[i]), 0);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(solo[i].st, DITRT_OK);
        assert_int_equal(par[i].st, DITRT_OK);
        assert_memory_equal(solo[i].im[0].rgb, par[i].im[0].rgb, 64 * 64 * 3);
        ditrt_images_free(solo[i].im, solo[i].n);
        ditrt_images_free(par[i].im, par[i].n);
        ditrt_ctx_free(solo[i].ctx);
    }
}

static int cancel_at_2(int step, int steps, double seconds, void *user)
{
    (void)steps; (void)seconds;
    *(int *)user = step;
    return step >= 2;
}

static void test_cancel(void **state)
{
    (void)state;
    ditrt_ctx *c = make_ctx("f32");
    ditrt_gen_params gp;
    ditrt_gen_params_init(&gp);
    gp.prompt = "stop";
    gp.steps = 5;
    gp.width = gp.height = 64;
    int last = 0;
    gp.progress = cancel_at_2;
    gp.progress_user = &last;
    ditrt_image *im = (ditrt_image *)1;
    int n = 7;
    assert_int_equal(ditrt_generate(c, &gp, &im, &n), DITRT_ECANCELLED);
    assert_int_equal(last, 2);
    assert_null(im);
    assert_int_equal(n, 0);
    assert_non_null(strstr(ditrt_errmsg(c), "cancelled"));
    /* the context still works after a cancel */
    gp.progress = NULL;
    assert_int_equal(ditrt_generate(c, &gp, &im, &n), DITRT_OK);
    assert_string_equal(ditrt_errmsg(c), "");
    ditrt_images_free(im, n);
    ditrt_ctx_free(c);
}

static void expect_gen_error(ditrt_ctx *c, ditrt_gen_params *gp, ditrt_status want, const char *needle)
{
    ditrt_image *im;
    int n;
    ditrt_status s = ditrt_generate(c, gp, &im, &n);
    if (s != want) fail_msg("status %d, expected %d (%s)", (int)s, (int)want, ditrt_errmsg(c));
    if (!strstr(ditrt_errmsg(c), needle)) fail_msg("message lacks \"%s\": %s", needle, ditrt_errmsg(c));
    assert_null(strchr(ditrt_errmsg(c), '\n'));
}

/* The solver chosen through the C API is the one the CLI gets for the same name. */
static void test_api_solver(void **state)
{
    (void)state;
    ditrt_ctx_params cp;
    ditrt_ctx_params_init(&cp);
    cp.model_dir = PIPE;
    cp.dtype = cp.text_dtype = "f32";
    cp.solver = "unipc";
    ditrt_ctx *c = NULL;
    if (ditrt_ctx_create(&cp, &c) != DITRT_OK) fail_msg("%s", ditrt_errmsg(c));
    ditrt_gen_params gp;
    ditrt_gen_params_init(&gp);
    gp.prompt = "a solver";
    gp.steps = 3;
    gp.width = gp.height = 64;
    ditrt_image *im;
    int n;
    assert_int_equal(ditrt_generate(c, &gp, &im, &n), DITRT_OK);
    assert_int_equal(system("./ditrt txt2img -m " PIPE " -p 'a solver' --steps 3 -W 64 -H 64 --dtype f32 "
                            "--text-encoder-dtype f32 --solver unipc --quiet -o /tmp/ditrt-api-solver.png"), 0);
    dt_image ref;
    dt_err err = {0};
    assert_int_equal(dt_image_read("/tmp/ditrt-api-solver.png", &ref, &err), DT_OK);
    assert_memory_equal(ref.rgb, im[0].rgb, 64 * 64 * 3);
    dt_image_free(&ref);
    unlink("/tmp/ditrt-api-solver.png");
    ditrt_images_free(im, n);
    ditrt_ctx_free(c);
}

static void test_bad_requests(void **state)
{
    (void)state;
    ditrt_ctx_params cp;
    ditrt_ctx_params_init(&cp);
    cp.model_dir = "/no/such/model";
    ditrt_ctx *bad = NULL;
    assert_int_not_equal(ditrt_ctx_create(&cp, &bad), DITRT_OK);
    assert_non_null(strstr(ditrt_errmsg(bad), "/no/such/model"));
    ditrt_ctx_free(bad);
    cp.model_dir = PIPE;
    cp.solver = "nosuch";
    assert_int_equal(ditrt_ctx_create(&cp, &bad), DITRT_EINVAL);
    assert_non_null(strstr(ditrt_errmsg(bad), "nosuch"));
    ditrt_ctx_free(bad);
    cp.solver = NULL;
    cp.dtype = "f64";
    assert_int_equal(ditrt_ctx_create(&cp, &bad), DITRT_EINVAL);
    assert_non_null(strstr(ditrt_errmsg(bad), "dtype: expected f32, bf16, f16 or tf32"));
    ditrt_ctx_free(bad);
    cp.dtype = "f16"; /* a CUDA compute type */
    assert_int_equal(ditrt_ctx_create(&cp, &bad), DITRT_EUNSUPPORTED);
    assert_string_equal(ditrt_errmsg(bad), "dtype: f16 needs --device cuda (the cpu backend computes in f32 or bf16)");
    ditrt_ctx_free(bad);

    ditrt_ctx *c = make_ctx("f32");
    ditrt_gen_params gp;
    ditrt_gen_params_init(&gp);
    gp.prompt = "x";
    gp.steps = 0;
    expect_gen_error(c, &gp, DITRT_EINVAL, "steps");
    gp.steps = 2;
    gp.cfg = -1;
    expect_gen_error(c, &gp, DITRT_EINVAL, "cfg");
    gp.cfg = 4.5f;
    gp.width = 72; /* not a multiple of 16, and this tiny model has no aspect-ratio bins */
    gp.height = 64;
    expect_gen_error(c, &gp, DITRT_EINVAL, "multiples of 16");
    gp.width = gp.height = 16384;
    expect_gen_error(c, &gp, DITRT_ENOMEM, "GB");
    gp.width = gp.height = 64;
    gp.prompt = "bad \xff utf-8";
    expect_gen_error(c, &gp, DITRT_EINVAL, "UTF-8");
    gp.prompt = NULL;
    expect_gen_error(c, &gp, DITRT_EINVAL, "prompt");
    ditrt_ctx_free(c);
}

/* CLI: errors before any work, one line, no file left behind. */
static void test_cli_errors(void **state)
{
    (void)state;
    struct { const char *args, *needle; } cases_[] = {
        {"-m /no/model -p x -o /tmp/ditrt-t2i.png", "/no/model"},
        {"-m " PIPE " -p x -o /tmp/ditrt-t2i.png --steps 0", "--steps"},
        {"-m " PIPE " -p x -o /tmp/ditrt-t2i.png --cfg -2", "--cfg"},
        {"-m " PIPE " -p x -o /dev/null/dir/out.png", "\"/dev/null\" is not a folder"}, /* missing folders are made, not this */
        {"-m " PIPE " -p x -o /tmp/ditrt-t2i.gif", ".gif"},
        {"-m " PIPE " -p x -o /tmp/ditrt-t2i.png -W 72 -H 64 --steps 1", "multiples of 16"},
        {"-m " PIPE " -o /tmp/ditrt-t2i.png", "-p"},
        {"-m tests/fixtures/pixart-alpha-tiny -p x -o /tmp/ditrt-t2i.png", "tokenizer"},
    };
    for (size_t i = 0; i < sizeof cases_ / sizeof *cases_; i++) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "./ditrt txt2img %s >/dev/null 2>/tmp/ditrt-t2i.err", cases_[i].args);
        int rc = system(cmd);
        if (rc == 0) fail_msg("succeeded: %s", cmd);
        FILE *f = fopen("/tmp/ditrt-t2i.err", "r");
        char buf[2048] = {0};
        size_t got = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[got] = 0;
        int lines = 0;
        for (char *q = buf; *q; q++) lines += *q == '\n';
        if (lines != 1 || !strstr(buf, cases_[i].needle)) fail_msg("%s: stderr \"%s\" lacks \"%s\" or is not one line", cmd, buf, cases_[i].needle);
        struct stat sb;
        assert_int_not_equal(stat("/tmp/ditrt-t2i.png", &sb), 0);
    }
    unlink("/tmp/ditrt-t2i.err");
}

/* --batch 2 writes out-0.png and out-1.png; the first matches the batch-1 image of its seed
 * only in size (diffusers draws the batch's noise in one go), and both differ. */
static void test_batch_outputs(void **state)
{
    (void)state;
    assert_int_equal(system("rm -f /tmp/ditrt-b-0.png /tmp/ditrt-b-1.png; ./ditrt txt2img -m " PIPE
                            " -p 'two foxes' --steps 2 --batch 2 -W 64 -H 64 -o /tmp/ditrt-b.png --quiet"), 0);
    dt_image a, b;
    dt_err err = {0};
    assert_int_equal(dt_image_read("/tmp/ditrt-b-0.png", &a, &err), DT_OK);
    assert_int_equal(dt_image_read("/tmp/ditrt-b-1.png", &b, &err), DT_OK);
    assert_true(memcmp(a.rgb, b.rgb, 64 * 64 * 3) != 0);
    dt_image_free(&a);
    dt_image_free(&b);
    unlink("/tmp/ditrt-b-0.png");
    unlink("/tmp/ditrt-b-1.png");
}

/* Quantization and attention plans through the C API: the image `ditrt txt2img --quant DIR
 * --attn-plan FILE` writes, byte for byte; a plain context gives another image; a missing
 * plan folder and a step count the attention plan was not made for are refused by name. */
static void test_api_quant_and_attn_plan(void **state)
{
    (void)state;
    if (access("./ditrt", X_OK)) { printf("  skipped: ./ditrt is not built (run from the repository root after make)\n"); skip(); }
    const char *aplan = "tests/fixtures/fastattn/plan_cond.json"; /* 3 layers x 6 steps, as the tiny pipeline */
    char tmp[64], cmd[1024], out[1024], qdir[256], png[256];
    tu_tmpdir(tmp, sizeof tmp);
    snprintf(cmd, sizeof cmd, "%s/prompts.txt", tmp);
    tu_write_file(cmd, "a red fox\na blue bird\n", 22);
    snprintf(qdir, sizeof qdir, "%s/plan", tmp);
    snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=1 ./ditrt quantize -m " PIPE " --prompts %s/prompts.txt --scheme w8a8 "
             "--steps 2 --out %s --quiet", tmp, qdir);
    if (tu_run(tmp, cmd, 0, out, sizeof out)) fail_msg("quantize failed: %s", out);
    snprintf(png, sizeof png, "%s/cli.png", tmp);
    snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=1 ./ditrt txt2img -m " PIPE " --dtype f32 --text-encoder-dtype f32 -q "
             "-p 'a cat in a hat' --seed 5 --steps 6 --quant %s --attn-plan %s -o %s", qdir, aplan, png);
    if (tu_run(tmp, cmd, 0, out, sizeof out)) fail_msg("txt2img failed: %s", out);

    ditrt_ctx_params cp;
    ditrt_ctx_params_init(&cp);
    assert_null(cp.quant_dir);
    assert_null(cp.attn_plan);
    cp.model_dir = PIPE;
    cp.dtype = cp.text_dtype = "f32";
    cp.quant_dir = qdir;
    cp.attn_plan = aplan;
    ditrt_ctx *c = NULL, *plain = make_ctx("f32");
    if (ditrt_ctx_create(&cp, &c) != DITRT_OK) fail_msg("%s", ditrt_errmsg(c));
    ditrt_gen_params gp;
    ditrt_gen_params_init(&gp);
    gp.prompt = "a cat in a hat";
    gp.seed = 5;
    gp.steps = 6;
    ditrt_image *im, *pim;
    int n, pn;
    if (ditrt_generate(c, &gp, &im, &n) != DITRT_OK) fail_msg("%s", ditrt_errmsg(c));
    if (ditrt_generate(plain, &gp, &pim, &pn) != DITRT_OK) fail_msg("%s", ditrt_errmsg(plain));
    dt_image cli;
    dt_err e = {0};
    if (dt_image_read(png, &cli, &e) != DT_OK) fail_msg("%s", e.msg);
    assert_int_equal(cli.width, im[0].width);
    assert_int_equal(cli.height, im[0].height);
    size_t nb = (size_t)cli.width * cli.height * 3;
    assert_memory_equal(cli.rgb, im[0].rgb, nb);
    assert_memory_not_equal(pim[0].rgb, im[0].rgb, nb);
    dt_image_free(&cli);
    ditrt_images_free(im, n);
    ditrt_images_free(pim, pn);
    gp.steps = 5;
    expect_gen_error(c, &gp, DITRT_EINVAL, "steps");
    ditrt_ctx_free(c);
    ditrt_ctx_free(plain);

    const char *bad[2][2] = {{"/no/such/plan", NULL}, {NULL, "/no/such/plan.json"}}; /* quant_dir, attn_plan */
    for (int i = 0; i < 2; i++) {
        cp.quant_dir = bad[i][0];
        cp.attn_plan = bad[i][1];
        c = NULL;
        assert_int_not_equal(ditrt_ctx_create(&cp, &c), DITRT_OK);
        assert_non_null(strstr(ditrt_errmsg(c), bad[i][0] ? bad[i][0] : bad[i][1]));
        ditrt_ctx_free(c);
    }
    tu_rmtree(tmp);
}

/* The version macros agree with each other and with the library; the growable parameter
 * structs refuse an uninitialized or too-new struct_size with a message naming the *_init
 * function, and read a caller's shorter (but published) prefix. */
static void test_api_version_and_struct_size(void **state)
{
    (void)state;
    char v[64];
    snprintf(v, sizeof v, "%d.%d.%d", DITRT_VERSION_MAJOR, DITRT_VERSION_MINOR, DITRT_VERSION_PATCH);
    assert_string_equal(v, DITRT_VERSION);
    assert_string_equal(ditrt_version(), DITRT_VERSION);
    assert_string_equal(ditrt_version(), "0.2.0");
    assert_int_equal(DITRT_VERSION_NUMBER, DITRT_VERSION_MAJOR * 1000000 + DITRT_VERSION_MINOR * 1000 + DITRT_VERSION_PATCH);
#if DITRT_VERSION_NUMBER < 1000
#error "DITRT_VERSION_NUMBER must be usable in #if"
#endif

    ditrt_ctx_params cp;
    ditrt_ctx_params_init(&cp);
    assert_int_equal(cp.struct_size, sizeof cp);
    cp.model_dir = PIPE;
    cp.dtype = cp.text_dtype = "f32";
    size_t bad_ctx[] = {0, sizeof cp + 8, 1};
    for (size_t i = 0; i < sizeof bad_ctx / sizeof *bad_ctx; i++) {
        cp.struct_size = bad_ctx[i];
        ditrt_ctx *c = NULL;
        assert_int_equal(ditrt_ctx_create(&cp, &c), DITRT_EINVAL);
        assert_non_null(c);
        if (!strstr(ditrt_errmsg(c), "ditrt_ctx_params_init")) fail_msg("struct_size %zu: %s", bad_ctx[i], ditrt_errmsg(c));
        assert_null(strchr(ditrt_errmsg(c), '\n'));
        ditrt_ctx_free(c);
    }
    ditrt_ctx *c = NULL;
    assert_int_equal(ditrt_ctx_create(NULL, &c), DITRT_EINVAL);
    ditrt_ctx_free(c);

    c = make_ctx("f32");
    ditrt_gen_params gp;
    ditrt_gen_params_init(&gp);
    assert_int_equal(gp.struct_size, sizeof gp);
    gp.prompt = "a prefix";
    gp.steps = 2;
    gp.width = gp.height = 64;
    size_t bad_gen[] = {0, sizeof gp + 8, offsetof(ditrt_gen_params, eta)};
    for (size_t i = 0; i < sizeof bad_gen / sizeof *bad_gen; i++) {
        gp.struct_size = bad_gen[i];
        expect_gen_error(c, &gp, DITRT_EINVAL, "ditrt_gen_params_init");
    }
    ditrt_image *full, *prefix;
    int n1, n2;
    gp.struct_size = sizeof gp;
    assert_int_equal(ditrt_generate(c, &gp, &full, &n1), DITRT_OK);
    /* the first published layout without its tail padding: still the same request */
    gp.struct_size = offsetof(ditrt_gen_params, eta) + sizeof gp.eta;
    if (ditrt_generate(c, &gp, &prefix, &n2) != DITRT_OK) fail_msg("%s", ditrt_errmsg(c));
    assert_int_equal(n1, n2);
    assert_memory_equal(full[0].rgb, prefix[0].rgb, (size_t)full[0].width * full[0].height * 3);
    ditrt_images_free(full, n1);
    ditrt_images_free(prefix, n2);
    ditrt_gen_params_init_video(&gp);
    assert_int_equal(gp.struct_size, sizeof gp);
    ditrt_ctx_free(c);
}

/* What `ditrt txt2img` does, through the public API only: ditrt_ctx_get_info (solver, sizes,
 * resolved dtypes), ditrt_generate with a frame_progress per decode chunk, ditrt_last_gen_info,
 * then ditrt_image_save with the CLI's metadata gives the CLI's PNG byte for byte (batch 2, a
 * non-default solver, decode_chunk 1). Bad calls of the info functions are refused. */
static int chunks_seen, chunk_total;
static int on_chunk(int done, int total, double s, void *u) { (void)done; (void)s; (void)u; chunks_seen++; chunk_total = total; return 0; }
static int stop_chunk(int done, int total, double s, void *u) { (void)done; (void)total; (void)s; (void)u; return 1; }

static void test_api_as_cli(void **state)
{
    (void)state;
    if (access("./ditrt", X_OK)) { printf("  skipped: ./ditrt is not built\n"); skip(); }
    ditrt_ctx_params cp;
    ditrt_ctx_params_init(&cp);
    cp.model_dir = PIPE;
    cp.threads = 1;
    cp.solver = "euler_a";
    cp.dtype = "f32";
    ditrt_ctx *c = NULL;
    if (ditrt_ctx_create(&cp, &c) != DITRT_OK) fail_msg("%s", ditrt_errmsg(c));
    ditrt_gen_info g = {.struct_size = sizeof g};
    assert_int_equal(ditrt_last_gen_info(c, &g), DITRT_EINVAL); /* nothing generated yet */
    ditrt_ctx_info info = {.struct_size = sizeof info};
    assert_int_equal(ditrt_ctx_get_info(c, &info), DITRT_OK);
    assert_int_equal(info.struct_size, sizeof info);
    assert_string_equal(info.solver, "EulerAncestralDiscreteScheduler");
    assert_null(info.solver_warning);
    assert_int_equal(info.max_frames, 0);
    assert_int_equal(info.zoo_size, 1);
    assert_int_equal(info.size_multiple % 8, 0);
    assert_true(info.native_width > 0 && info.native_width == info.native_height);
    assert_string_equal(info.dtype, "f32");
    assert_true(!strcmp(info.text_dtype, "f32") || !strcmp(info.text_dtype, "bf16")); /* the device's default */
    ditrt_gen_params gp;
    ditrt_gen_params_init(&gp);
    assert_int_equal(gp.decode_chunk, 0);
    assert_null(gp.frame_progress);
    gp.prompt = "a red fox";
    gp.negative_prompt = "blurry";
    gp.seed = 11;
    gp.steps = 3;
    gp.width = 48;
    gp.height = 64;
    gp.batch = 2;
    gp.decode_chunk = 1;
    gp.frame_progress = on_chunk;
    ditrt_image *im = NULL;
    int n = 0;
    chunks_seen = 0;
    if (ditrt_generate(c, &gp, &im, &n) != DITRT_OK) fail_msg("%s", ditrt_errmsg(c));
    assert_int_equal(n, 2);
    assert_int_equal(chunks_seen, 2); /* one image per decode call */
    assert_int_equal(chunk_total, 2);
    assert_int_equal(ditrt_last_gen_info(c, &g), DITRT_OK);
    assert_int_equal(g.prompt_truncated, 0);
    assert_true(g.max_sequence_length > 0);
    assert_true(g.seconds_sampling > 0 && g.seconds_text >= 0 && g.seconds_decode >= 0);
    char tmp[64], cmd[1200], api[256], cli[256], software[64];
    tu_tmpdir(tmp, sizeof tmp);
    snprintf(software, sizeof software, "ditrt %s", ditrt_version());
    char index[8], params[512];
    ditrt_meta meta[] = {{"prompt", gp.prompt}, {"negative_prompt", gp.negative_prompt}, {"seed", "11"}, {"steps", "3"},
                         {"cfg", "4.5"}, {"solver", info.solver}, {"model", PIPE}, {"size", "48x64"},
                         {"dtype", info.dtype}, {"Software", software}, {"batch", "2"}, {"batch_index", index},
                         {"parameters", params}};
    ditrt_error err = {0};
    for (int i = 0; i < n; i++) {
        snprintf(api, sizeof api, "%s/api-%d.png", tmp, i);
        snprintf(index, sizeof index, "%d", i);
        snprintf(params, sizeof params, "a red fox\nNegative prompt: blurry\nSteps: 3, Sampler: Euler a, CFG scale: 4.5, "
                 "Seed: 11, Size: 48x64, Model: pixart-pipe-tiny, Batch size: 2, Batch pos: %d, Version: %s", i, software);
        assert_int_equal(ditrt_output_check(api, 0, NULL, &err), DITRT_OK);
        if (ditrt_image_save(api, &im[i], meta, 13, &err) != DITRT_OK) fail_msg("%s", err.msg);
    }
    snprintf(cmd, sizeof cmd, "./ditrt txt2img -m " PIPE " --threads 1 --dtype f32 -q -p '%s' -n '%s' --seed 11 --steps 3 "
             "-W 48 -H 64 --batch 2 --solver euler_a -o %s/cli.png", gp.prompt, gp.negative_prompt, tmp);
    assert_int_equal(system(cmd), 0);
    for (int i = 0; i < n; i++) {
        snprintf(api, sizeof api, "%s/api-%d.png", tmp, i);
        snprintf(cli, sizeof cli, "%s/cli-%d.png", tmp, i);
        snprintf(cmd, sizeof cmd, "cmp %s %s", api, cli);
        if (system(cmd) != 0) fail_msg("%s differs from the CLI's %s", api, cli);
    }
    tu_rmtree(tmp);
    ditrt_images_free(im, n);
    /* bad calls */
    ditrt_ctx_info small = {.struct_size = 0};
    assert_int_equal(ditrt_ctx_get_info(c, &small), DITRT_EINVAL);
    assert_int_equal(ditrt_ctx_get_info(NULL, &info), DITRT_EINVAL);
    assert_int_equal(ditrt_ctx_get_info(c, NULL), DITRT_EINVAL);
    assert_int_equal(ditrt_last_gen_info(NULL, &g), DITRT_EINVAL);
    g.struct_size = 8;
    assert_int_equal(ditrt_last_gen_info(c, &g), DITRT_EINVAL);
    /* a newer header's larger struct: the known fields filled, the rest zeroed */
    struct { ditrt_ctx_info info; int newer; } big;
    memset(&big, 0xff, sizeof big);
    big.info.struct_size = sizeof big;
    assert_int_equal(ditrt_ctx_get_info(c, &big.info), DITRT_OK);
    assert_int_equal(big.newer, 0);
    assert_string_equal(big.info.solver, "EulerAncestralDiscreteScheduler");
    /* frame_progress cancels; a negative decode_chunk is refused */
    gp.batch = 1;
    gp.frame_progress = stop_chunk;
    expect_gen_error(c, &gp, DITRT_ECANCELLED, "cancelled after decoding 1 of 1");
    gp.frame_progress = NULL;
    gp.decode_chunk = -1;
    expect_gen_error(c, &gp, DITRT_EINVAL, "decode chunk");
    ditrt_ctx_free(c);
    /* a failed context has no info */
    cp.model_dir = "/nonexistent";
    assert_int_not_equal(ditrt_ctx_create(&cp, &c), DITRT_OK);
    assert_int_equal(ditrt_ctx_get_info(c, &info), DITRT_EINVAL);
    ditrt_ctx_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_diffusers),
        cmocka_unit_test(test_deterministic_png),
        cmocka_unit_test(test_two_contexts_in_parallel),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_api_solver),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_api_version_and_struct_size),
        cmocka_unit_test(test_cli_errors),
        cmocka_unit_test(test_batch_outputs),
        cmocka_unit_test(test_api_quant_and_attn_plan),
        cmocka_unit_test(test_api_as_cli),
    };
    return cmocka_run_group_tests_name("pipeline", tests, NULL, NULL);
}
