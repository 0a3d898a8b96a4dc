/* The VAE encoder (AutoencoderKL.encode: Encoder + quant_conv) against diffusers on the committed
 * fixtures (tests/fixtures/vae-tiny case_enc_*), f32 and bf16; the latent_dist.mean helper;
 * optional loading (a decoder-only folder still loads and decodes; a partial encoder fails
 * naming the tensor); input checks; and `ditrt eval vae-encoder`. */
#include "testutil.h"
#include "runtime/core/arena.h"
#include "runtime/core/safetensors.h"
#include "runtime/models/vae.h"
#include <sys/stat.h>
#include <sys/wait.h>

#define FIX "tests/fixtures/vae-tiny"

static char tmp[256];
static int setup(void **state) { (void)state; tu_tmpdir(tmp, sizeof tmp); return 0; }
static int teardown(void **state) { (void)state; tu_rmtree(tmp); return 0; }

static dt_tensor t4(void *data, int64_t a, int64_t b, int64_t c, int64_t d)
{
    int64_t s[4] = {a, b, c, d};
    return dt_tensor_view(data, DT_F32, 4, s);
}

static vae_model *load(dt_backend *be, const char *dir)
{
    vae_model *m;
    dt_err err = {0};
    if (vae_load(be, dir, &m, &err) != DT_OK) fail_msg("%s", err.msg);
    return m;
}

/* Encodes fixture case `cse` into a NaN-poisoned buffer (caller frees). */
static float *encode_case(vae_model *m, const char *cse, dt_arena *a, dt_tensor *mom)
{
    char path[256];
    snprintf(path, sizeof path, FIX "/case_%s.in.safetensors", cse);
    dt_tensor img;
    float *x = tu_read_f32(path, "image", 0, NULL, &img);
    int s = vae_upscale(m);
    *mom = t4(NULL, img.shape[0], 2 * vae_get_config(m)->latent_channels, img.shape[2] / s, img.shape[3] / s);
    mom->data = tu_poisoned((size_t)dt_tensor_numel(mom));
    dt_err err = {0};
    if (vae_encode(m, &img, a, mom, &err) != DT_OK) fail_msg("%s: %s", cse, err.msg);
    free(x);
    return mom->data;
}

static const char *cases[] = {"enc_square", "enc_nonsquare"};

static void parity(dt_dtype cd, double tol)
{
    dt_backend *be = tu_backend(cd);
    vae_model *m = load(be, FIX "/vae");
    assert_true(vae_has_encoder(m));
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        dt_arena a;
        dt_arena_init(&a);
        dt_tensor mom, ref;
        char path[256];
        snprintf(path, sizeof path, FIX "/case_%s.out.safetensors", cases[i]);
        float *o = encode_case(m, cases[i], &a, &mom), *r = tu_read_f32(path, "moments", 0, NULL, &ref);
        for (int d = 0; d < 4; d++) assert_int_equal(mom.shape[d], ref.shape[d]);
        size_t n = (size_t)dt_tensor_numel(&ref);
        double e = tu_rel_l2(o, r, n);
        /* the mean half alone (what img2img uses) */
        int64_t B = ref.shape[0], lc = ref.shape[1] / 2, hw = ref.shape[2] * ref.shape[3];
        float *mean = tu_poisoned((size_t)(B * lc * hw)), *rmean = tu_alloc((size_t)(B * lc * hw));
        dt_tensor tm = t4(mean, B, lc, ref.shape[2], ref.shape[3]);
        dt_err err = {0};
        if (vae_moments_mean(m, &mom, 0.5f, &tm, &err) != DT_OK) fail_msg("%s", err.msg);
        for (int64_t b = 0; b < B; b++)
            for (int64_t k = 0; k < lc * hw; k++) rmean[b * lc * hw + k] = 0.5f * r[b * 2 * lc * hw + k];
        double em = tu_rel_l2(mean, rmean, (size_t)(B * lc * hw));
        printf("  vae-tiny %-13s %s: moments rel L2 %.2e, mean rel L2 %.2e (limit %.0e), arena peak %zu bytes\n", cases[i],
               dt_dtype_name(cd), e, em, tol, a.peak);
        if (!(e <= tol)) fail_msg("%s %s: relative L2 %.3g > %.3g", cases[i], dt_dtype_name(cd), e, tol);
        if (!(em <= tol)) fail_msg("%s %s: mean relative L2 %.3g > %.3g", cases[i], dt_dtype_name(cd), em, tol);
        free(o); free(r); free(mean); free(rmean);
        dt_arena_free(&a);
    }
    vae_free(m);
    dt_backend_destroy(be);
}

static void test_parity_f32(void **state) { (void)state; parity(DT_F32, 1e-4); }
static void test_parity_bf16(void **state) { (void)state; TU_REQUIRE_BF16(); parity(DT_BF16, 2e-2); }

/* The same arena reused: bit-identical moments. */
static void test_deterministic(void **state)
{
    (void)state;
    dt_backend *be = tu_backend(DT_F32);
    vae_model *m = load(be, FIX "/vae");
    dt_arena a;
    dt_arena_init(&a);
    dt_tensor m1, m2;
    float *x = encode_case(m, "enc_nonsquare", &a, &m1);
    dt_arena_reset(&a);
    float *y = encode_case(m, "enc_nonsquare", &a, &m2);
    assert_memory_equal(x, y, (size_t)dt_tensor_numel(&m1) * sizeof(float));
    free(x); free(y);
    dt_arena_free(&a);
    vae_free(m);
    dt_backend_destroy(be);
}

static void test_bad_inputs(void **state)
{
    (void)state;
    dt_backend *be = tu_backend(DT_F32);
    vae_model *m = load(be, FIX "/vae");
    dt_arena a;
    dt_arena_init(&a);
    float img[2 * 3 * 16 * 16] = {0}, mom[2 * 8 * 2 * 2];
    dt_err err = {0};
    dt_tensor ti = t4(img, 1, 3, 4, 16), tm = t4(mom, 1, 8, 0, 2); /* 4 rows < the 8x downscale */
    assert_int_equal(vae_encode(m, &ti, &a, &tm, &err), DT_EINVAL);
    assert_non_null(strstr(err.msg, "image"));
    dt_err_clear(&err);
    ti = t4(img, 1, 4, 8, 8); /* four channels */
    tm = t4(mom, 1, 8, 1, 1);
    assert_int_equal(vae_encode(m, &ti, &a, &tm, &err), DT_EINVAL);
    dt_err_clear(&err);
    ti = t4(img, 2, 3, 16, 16);
    tm = t4(mom, 2, 4, 2, 2); /* moments need 2·latent_channels */
    assert_int_equal(vae_encode(m, &ti, &a, &tm, &err), DT_EINVAL);
    assert_non_null(strstr(err.msg, "moments"));
    dt_err_clear(&err);
    tm = t4(mom, 2, 8, 2, 2);
    assert_int_equal(vae_encode(m, &ti, &a, &tm, &err), DT_OK);
    /* odd sizes floor like the padded stride-2 convs: 17 -> 8 -> 4 -> 2 */
    float img2[1 * 3 * 17 * 23] = {0};
    dt_tensor t17 = t4(img2, 1, 3, 17, 23), tm2 = t4(mom, 1, 8, 2, 2);
    assert_int_equal(vae_encode(m, &t17, &a, &tm2, &err), DT_OK);
    dt_arena_free(&a);
    vae_free(m);
    dt_backend_destroy(be);
}

/* ---- optional encoder ---- */

static int is_encoder(const char *name) { return !strncmp(name, "encoder.", 8) || !strncmp(name, "quant_conv.", 11); }

/* Writes the fixture's config and weights into tmp, without the encoder when drop_encoder
 * and without tensor `drop` (may be NULL). */
static void write_vae(int drop_encoder, const char *drop)
{
    dt_safetensors *st;
    dt_err err = {0};
    assert_int_equal(dt_st_open(FIX "/vae/diffusion_pytorch_model.safetensors", &st, &err), DT_OK);
    int n = dt_st_count(st), k = 0;
    dt_st_item *items = calloc((size_t)n, sizeof *items);
    dt_tensor *ts = calloc((size_t)n, sizeof *ts);
    for (int i = 0; i < n; i++) {
        const dt_st_entry *e = dt_st_at(st, i);
        if ((drop_encoder && is_encoder(e->name)) || (drop && !strcmp(e->name, drop))) continue;
        ts[k] = dt_tensor_view((void *)e->data, e->dtype, e->ndim, e->shape);
        items[k] = (dt_st_item){e->name, &ts[k]};
        k++;
    }
    char path[512];
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", tmp);
    assert_int_equal(dt_st_write(path, items, k, &err), DT_OK);
    free(items);
    free(ts);
    dt_st_close(st);
    FILE *f = fopen(FIX "/vae/config.json", "rb");
    assert_non_null(f);
    char buf[8192];
    size_t got = fread(buf, 1, sizeof buf, f);
    fclose(f);
    snprintf(path, sizeof path, "%s/config.json", tmp);
    tu_write_file(path, buf, got);
}

static void expect_load_fail(vae_encoder_mode mode, const char *needle)
{
    dt_backend *be = tu_backend(DT_F32);
    vae_model *m = NULL;
    dt_err err = {0};
    dt_status s = vae_load_ex(be, tmp, mode, &m, &err);
    if (s == DT_OK) fail_msg("loading succeeded but should fail with \"%s\"", needle);
    if (!strstr(err.msg, needle)) fail_msg("message lacks \"%s\": %s", needle, err.msg);
    if (strchr(err.msg, '\n')) fail_msg("message is not one line: %s", err.msg);
    dt_backend_destroy(be);
}

/* Decodes fixture case "square" (caller frees). */
static float *decode_square(vae_model *m, dt_arena *a, size_t *n)
{
    dt_tensor lat;
    float *l = tu_read_f32(FIX "/case_square.in.safetensors", "latent", 0, NULL, &lat);
    dt_tensor out = t4(NULL, 1, 3, 64, 64);
    out.data = tu_poisoned(*n = (size_t)dt_tensor_numel(&out));
    dt_err err = {0};
    if (vae_decode(m, &lat, a, &out, &err) != DT_OK) fail_msg("%s", err.msg);
    free(l);
    return out.data;
}

static void test_decoder_only(void **state)
{
    (void)state;
    write_vae(1, NULL);
    dt_backend *be = tu_backend(DT_F32);
    vae_model *m = load(be, tmp), *full = load(be, FIX "/vae");
    assert_false(vae_has_encoder(m));
    assert_true(vae_has_encoder(full));
    /* decoding is unaffected */
    dt_arena a;
    dt_arena_init(&a);
    size_t n;
    float *x = decode_square(m, &a, &n);
    dt_arena_reset(&a);
    float *y = decode_square(full, &a, &n);
    assert_memory_equal(x, y, n * sizeof(float));
    /* encoding without an encoder fails cleanly */
    float img[3 * 8 * 8] = {0}, mom[8];
    dt_tensor ti = t4(img, 1, 3, 8, 8), tm = t4(mom, 1, 8, 1, 1);
    dt_err err = {0};
    assert_int_equal(vae_encode(m, &ti, &a, &tm, &err), DT_EINVAL);
    assert_non_null(strstr(err.msg, "encoder.conv_in.weight"));
    free(x); free(y);
    dt_arena_free(&a);
    vae_free(m);
    vae_free(full);
    /* NONE on a full folder skips the encoder */
    assert_int_equal(vae_load_ex(be, FIX "/vae", VAE_ENCODER_NONE, &m, &err), DT_OK);
    assert_false(vae_has_encoder(m));
    vae_free(m);
    dt_backend_destroy(be);
    expect_load_fail(VAE_ENCODER_REQUIRED, "\"encoder.conv_in.weight\"");
}

static void test_missing_encoder_tensor(void **state)
{
    (void)state;
    static const char *names[] = {"encoder.down_blocks.1.downsamplers.0.conv.weight", "encoder.mid_block.attentions.0.to_v.bias",
                                  "encoder.down_blocks.1.resnets.0.conv_shortcut.weight", "encoder.conv_out.bias", "quant_conv.bias"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        write_vae(0, names[i]);
        char needle[128];
        snprintf(needle, sizeof needle, "\"%s\"", names[i]);
        expect_load_fail(VAE_ENCODER_IF_PRESENT, needle);
    }
}

/* ---- command line ---- */

static int run(const char *cmd, char *err, size_t n) { return tu_run(tmp, cmd, 0, err, n); }

static void expect_cli_fail(const char *cmd, const char *needle, const char *out) { tu_expect_fail(tmp, cmd, needle, out); }

static void expect_cli_match(const char *model, const char *cse, const char *flags, double tol)
{
    char cmd[1024], out[512], err[4096], ref[256];
    snprintf(out, sizeof out, "%s/o.safetensors", tmp);
    snprintf(cmd, sizeof cmd, "./ditrt eval vae-encoder -m %s --in " FIX "/case_%s.in.safetensors --out %s %s", model, cse, out, flags);
    if (run(cmd, err, sizeof err) != 0) fail_msg("%s: %s", cmd, err);
    snprintf(ref, sizeof ref, FIX "/case_%s.out.safetensors", cse);
    dt_tensor a, b;
    float *x = tu_read_f32(out, "moments", 0, NULL, &a), *y = tu_read_f32(ref, "moments", 0, NULL, &b);
    for (int i = 0; i < 4; i++) assert_int_equal(a.shape[i], b.shape[i]);
    assert_rel_l2_below(x, y, (size_t)dt_tensor_numel(&b), tol);
    free(x);
    free(y);
    unlink(out);
}

static void test_cli(void **state)
{
    (void)state;
    expect_cli_match(FIX, "enc_nonsquare", "--threads 1", 1e-4);
    if (tu_have_bf16()) expect_cli_match(FIX "/vae", "enc_square", "--dtype bf16", 2e-2);
    else expect_cli_match(FIX "/vae", "enc_square", "--dtype f32", 1e-4);
    char cmd[2048], out[512], in[512];
    snprintf(out, sizeof out, "%s/o.safetensors", tmp);
    const char *base = "./ditrt eval vae-encoder -m " FIX;
    snprintf(cmd, sizeof cmd, "%s --in /nonexistent.safetensors --out %s", base, out);
    expect_cli_fail(cmd, "/nonexistent.safetensors", out);
    snprintf(cmd, sizeof cmd, "%s --in " FIX "/case_enc_square.in.safetensors", base);
    expect_cli_fail(cmd, "--out", NULL);
    snprintf(cmd, sizeof cmd, "%s --in " FIX "/case_enc_square.in.safetensors --out %s --bogus", base, out);
    expect_cli_fail(cmd, "--bogus", out);
    snprintf(cmd, sizeof cmd, "%s --in " FIX "/case_square.in.safetensors --out %s", base, out);
    expect_cli_fail(cmd, "\"image\" is missing", out);
    /* an image smaller than the 8x downscale */
    snprintf(in, sizeof in, "%s/in.safetensors", tmp);
    float z[1 * 3 * 4 * 16] = {0};
    dt_tensor tz = t4(z, 1, 3, 4, 16);
    dt_st_item item = {"image", &tz};
    dt_err e = {0};
    assert_int_equal(dt_st_write(in, &item, 1, &e), DT_OK);
    snprintf(cmd, sizeof cmd, "%s --in %s --out %s", base, in, out);
    expect_cli_fail(cmd, "smaller than 8x8", out);
    /* a decoder-only model folder */
    write_vae(1, NULL);
    snprintf(cmd, sizeof cmd, "./ditrt eval vae-encoder -m %s --in " FIX "/case_enc_square.in.safetensors --out %s/x.safetensors", tmp, tmp);
    char xo[600];
    snprintf(xo, sizeof xo, "%s/x.safetensors", tmp);
    expect_cli_fail(cmd, "\"encoder.conv_in.weight\"", xo);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parity_f32),
        cmocka_unit_test(test_parity_bf16),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_decoder_only),
        cmocka_unit_test(test_missing_encoder_tensor),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
