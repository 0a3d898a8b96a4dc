/* safetensors reader/writer, model folders and configs: valid files round-trip; every
 * malformed input fails with one line naming the file and the tensor or field. */
#include "testutil.h"
#include "runtime/core/safetensors.h"
#include "runtime/core/json.h"
#include "runtime/models/modeldir.h"
#include "runtime/models/pixart.h"

static char tmp[256];

static int setup(void **state) { (void)state; tu_tmpdir(tmp, sizeof tmp); return 0; }
static int teardown(void **state) { (void)state; tu_rmtree(tmp); return 0; }

/* Writes a safetensors file from a header string and `data_len` data bytes. */
static void write_raw(const char *path, const char *header, size_t data_len, int64_t len_override)
{
    size_t hl = strlen(header);
    uint64_t len = len_override >= 0 ? (uint64_t)len_override : hl;
    size_t n = 8 + hl + data_len;
    unsigned char *buf = calloc(1, n);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(len >> (8 * i));
    memcpy(buf + 8, header, hl);
    for (size_t i = 0; i < data_len; i++) buf[8 + hl + i] = (unsigned char)i;
    tu_write_file(path, buf, n);
    free(buf);
}

/* Opens path, expects failure with a one-line message holding each needle. */
static void expect_open_error(const char *path, const char *needle1, const char *needle2)
{
    dt_safetensors *st = NULL;
    dt_err err = {0};
    dt_status s = dt_st_open(path, &st, &err);
    if (s == DT_OK) fail_msg("%s: opened but should have failed (%s)", path, needle1);
    assert_null(strchr(err.msg, '\n'));
    if (!strstr(err.msg, path)) fail_msg("message does not name the file: %s", err.msg);
    if (needle1 && !strstr(err.msg, needle1)) fail_msg("message lacks \"%s\": %s", needle1, err.msg);
    if (needle2 && !strstr(err.msg, needle2)) fail_msg("message lacks \"%s\": %s", needle2, err.msg);
}

static void test_roundtrip(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/rt.safetensors", tmp);
    float a[6] = {1, -2, 3.5f, 0, 1e-3f, 65504};
    uint16_t h[3] = {dt_f32_to_bf16(1.5f), dt_f32_to_bf16(-0.25f), dt_f32_to_bf16(3e5f)};
    uint16_t f[2] = {dt_f32_to_f16(0.5f), dt_f32_to_f16(-1024.0f)};
    int64_t sa[2] = {2, 3}, sh[1] = {3}, sf[1] = {2};
    dt_tensor ta = dt_tensor_view(a, DT_F32, 2, sa), th = dt_tensor_view(h, DT_BF16, 1, sh), tf = dt_tensor_view(f, DT_F16, 1, sf);
    dt_st_item items[3] = {{"a.weight", &ta}, {"b", &th}, {"c", &tf}};
    dt_err err = {0};
    assert_int_equal(dt_st_write(path, items, 3, &err), DT_OK);
    dt_safetensors *st;
    assert_int_equal(dt_st_open(path, &st, &err), DT_OK);
    assert_int_equal(dt_st_count(st), 3);
    const dt_st_entry *e;
    int64_t want[2] = {2, 3};
    assert_int_equal(dt_st_expect(st, "a.weight", 2, want, &e, &err), DT_OK);
    float got[6];
    dt_st_read_f32(e, got);
    assert_memory_equal(got, a, sizeof a);
    e = dt_st_find(st, "b");
    dt_st_read_f32(e, got);
    assert_true(got[0] == 1.5f && got[1] == -0.25f && fabsf(got[2] - 3e5f) < 3e5f * 4e-3f);
    e = dt_st_find(st, "c");
    dt_st_read_f32(e, got);
    assert_true(got[0] == 0.5f && got[1] == -1024.0f);
    /* wrong shape and missing tensor name the file and the tensor */
    int64_t bad[2] = {3, 2};
    assert_int_equal(dt_st_expect(st, "a.weight", 2, bad, &e, &err), DT_EFORMAT);
    assert_non_null(strstr(err.msg, "a.weight"));
    assert_non_null(strstr(err.msg, "[2, 3]"));
    dt_err_clear(&err);
    assert_int_equal(dt_st_expect(st, "nope", 1, sf, &e, &err), DT_EFORMAT);
    assert_non_null(strstr(err.msg, "\"nope\" is missing"));
    dt_st_close(st);
}

static void test_f16_bf16_conversions(void **state)
{
    (void)state;
    /* every finite f16 value survives f16 -> f32 -> f16; bf16 likewise */
    for (uint32_t u = 0; u < 65536; u++) {
        uint16_t h = (uint16_t)u;
        if ((h & 0x7c00) == 0x7c00) continue;
        assert_int_equal(dt_f32_to_f16(dt_f16_to_f32(h)), h);
        if ((h & 0x7f80) != 0x7f80) assert_int_equal(dt_f32_to_bf16(dt_bf16_to_f32(h)), h);
    }
    assert_true(dt_f16_to_f32(0x0001) == ldexpf(1.0f, -24)); /* smallest subnormal */
    assert_int_equal(dt_f32_to_bf16(1.0f + ldexpf(1.0f, -8)), 0x3f80); /* ties to even */
}

static void test_truncated(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/short.safetensors", tmp);
    tu_write_file(path, "abc", 3);
    expect_open_error(path, "truncated", NULL);
}

static void test_header_past_eof(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/hdr.safetensors", tmp);
    write_raw(path, "{}", 0, 1000);
    expect_open_error(path, "header length", "past the end");
    write_raw(path, "{}", 0, (int64_t)0x7fffffffffffffffLL);
    expect_open_error(path, "header length", NULL);
}

static void test_offsets_out_of_range(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/off.safetensors", tmp);
    write_raw(path, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, -1);
    expect_open_error(path, "\"w\"", "past the end");
    write_raw(path, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 16, -1);
    expect_open_error(path, "\"w\"", "data_offsets");
    write_raw(path, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 16, -1);
    expect_open_error(path, "\"w\"", "data_offsets");
}

static void test_overlap(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/ovl.safetensors", tmp);
    write_raw(path, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, -1);
    expect_open_error(path, "overlap", "\"a\"");
}

static void test_unknown_dtype(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/dt.safetensors", tmp);
    write_raw(path, "{\"w\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2, -1);
    expect_open_error(path, "\"w\"", "unsupported dtype \"Q4\"");
    write_raw(path, "{\"w\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, -1);
    expect_open_error(path, "\"w\"", "F64");
}

static void test_size_mismatch(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/sz.safetensors", tmp);
    write_raw(path, "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, -1);
    expect_open_error(path, "\"w\"", "needs 12 bytes");
    write_raw(path, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,8]}}", 8, -1);
    expect_open_error(path, "\"w\"", "shape");
    write_raw(path, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, -1);
    expect_open_error(path, "\"w\"", "dims");
}

static void test_malformed_header(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/js.safetensors", tmp);
    write_raw(path, "{\"w\": {\"dtype\": ", 0, -1);
    expect_open_error(path, "JSON", NULL);
    write_raw(path, "[1,2]", 0, -1);
    expect_open_error(path, "JSON object", NULL);
    write_raw(path, "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, -1);
    expect_open_error(path, "\"w\"", "dtype");
    write_raw(path, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, -1);
    expect_open_error(path, "\"w\"", "data_offsets");
}

static void test_missing_file(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/none.safetensors", tmp);
    expect_open_error(path, "cannot open", NULL);
}

static void test_sharded(void **state)
{
    (void)state;
    char p1[512], p2[512], idx[512];
    snprintf(p1, sizeof p1, "%s/m-00001-of-00002.safetensors", tmp);
    snprintf(p2, sizeof p2, "%s/m-00002-of-00002.safetensors", tmp);
    snprintf(idx, sizeof idx, "%s/m.safetensors.index.json", tmp);
    write_raw(p1, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, -1);
    write_raw(p2, "{\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, -1);
    const char *ok = "{\"metadata\":{},\"weight_map\":{\"a\":\"m-00001-of-00002.safetensors\",\"b\":\"m-00002-of-00002.safetensors\"}}";
    tu_write_file(idx, ok, strlen(ok));
    dt_safetensors *st;
    dt_err err = {0};
    assert_int_equal(dt_st_open_dir(tmp, "m", &st, &err), DT_OK);
    assert_int_equal(dt_st_count(st), 2);
    assert_non_null(dt_st_find(st, "a"));
    assert_non_null(strstr(dt_st_file_of(st, dt_st_find(st, "b")), "00002"));
    dt_st_close(st);
    /* the index names a tensor its shard lacks */
    const char *bad = "{\"weight_map\":{\"a\":\"m-00002-of-00002.safetensors\"}}";
    tu_write_file(idx, bad, strlen(bad));
    assert_int_equal(dt_st_open_dir(tmp, "m", &st, &err), DT_EFORMAT);
    assert_non_null(strstr(err.msg, "\"a\""));
    /* the index names a shard that is not there */
    dt_err_clear(&err);
    const char *gone = "{\"weight_map\":{\"a\":\"m-00009.safetensors\"}}";
    tu_write_file(idx, gone, strlen(gone));
    assert_int_equal(dt_st_open_dir(tmp, "m", &st, &err), DT_EIO);
    assert_non_null(strstr(err.msg, "m-00009.safetensors"));
    /* malformed index JSON */
    dt_err_clear(&err);
    tu_write_file(idx, "{\"weight_map\": ", 15);
    assert_int_equal(dt_st_open_dir(tmp, "m", &st, &err), DT_EFORMAT);
    assert_non_null(strstr(err.msg, "index.json"));
}

static void test_write_keeps_existing_on_failure(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/keep.safetensors", tmp);
    tu_write_file(path, "precious", 8);
    float x[4] = {0};
    int64_t s[2] = {2, 2};
    dt_tensor t = dt_tensor_view(x, DT_F32, 2, s);
    t.strides[0] = 1; t.strides[1] = 2; /* not contiguous: refused */
    dt_st_item item = {"x", &t};
    dt_err err = {0};
    assert_int_not_equal(dt_st_write(path, &item, 1, &err), DT_OK);
    FILE *f = fopen(path, "rb");
    char buf[16] = {0};
    assert_int_equal(fread(buf, 1, sizeof buf, f), 8);
    fclose(f);
    assert_string_equal(buf, "precious");
    /* a folder that does not exist: error names the path, nothing is created */
    char bad[600];
    snprintf(bad, sizeof bad, "%s/no/such/dir/out.safetensors", tmp);
    t = dt_tensor_view(x, DT_F32, 2, s);
    dt_err_clear(&err);
    assert_int_equal(dt_st_write(bad, &item, 1, &err), DT_EIO);
    assert_non_null(strstr(err.msg, bad));
}

/* Builds a transformer folder from the alpha fixture with one tensor dropped or reshaped. */
static void make_model(const char *dir, const char *drop, const char *reshape)
{
    char cmd[1200], path[600];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp tests/fixtures/pixart-alpha-tiny/transformer/config.json '%s/'", dir, dir);
    assert_int_equal(system(cmd), 0);
    dt_safetensors *src;
    dt_err err = {0};
    assert_int_equal(dt_st_open("tests/fixtures/pixart-alpha-tiny/transformer/diffusion_pytorch_model.safetensors", &src, &err), DT_OK);
    int n = dt_st_count(src), k = 0;
    dt_st_item *items = calloc((size_t)n, sizeof *items);
    dt_tensor *ts = calloc((size_t)n, sizeof *ts);
    for (int i = 0; i < n; i++) {
        const dt_st_entry *e = dt_st_at(src, i);
        if (drop && !strcmp(e->name, drop)) continue;
        ts[k] = dt_tensor_view((void *)e->data, e->dtype, e->ndim, e->shape);
        if (reshape && !strcmp(e->name, reshape)) { /* same bytes, transposed shape */
            int64_t t0 = ts[k].shape[0];
            ts[k] = dt_tensor_view((void *)e->data, e->dtype, 2, (int64_t[]){e->shape[1], t0});
        }
        items[k].name = e->name;
        items[k].t = &ts[k];
        k++;
    }
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    assert_int_equal(dt_st_write(path, items, k, &err), DT_OK);
    dt_st_close(src);
    free(items);
    free(ts);
}

static void expect_load_error(const char *dir, const char *n1, const char *n2)
{
    dt_backend *be = tu_backend(DT_F32);
    pixart_model *m = NULL;
    dt_err err = {0};
    if (pixart_load(be, dir, &m, &err) == DT_OK) fail_msg("%s loaded but should not", dir);
    assert_null(m);
    assert_null(strchr(err.msg, '\n'));
    if (n1 && !strstr(err.msg, n1)) fail_msg("message lacks \"%s\": %s", n1, err.msg);
    if (n2 && !strstr(err.msg, n2)) fail_msg("message lacks \"%s\": %s", n2, err.msg);
    dt_backend_destroy(be);
}

static void test_model_missing_tensor(void **state)
{
    (void)state;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/missing", tmp);
    make_model(dir, "transformer_blocks.1.attn2.to_v.weight", NULL);
    expect_load_error(dir, "transformer_blocks.1.attn2.to_v.weight", "missing");
}

static void test_model_wrong_shape(void **state)
{
    (void)state;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/shape", tmp);
    make_model(dir, NULL, "transformer_blocks.0.ff.net.2.weight");
    expect_load_error(dir, "transformer_blocks.0.ff.net.2.weight", "expected [48, 192]");
}

static void write_config(const char *dir, const char *json)
{
    char cmd[600], path[600];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
    assert_int_equal(system(cmd), 0);
    snprintf(path, sizeof path, "%s/config.json", dir);
    tu_write_file(path, json, strlen(json));
}

static void test_bad_configs(void **state)
{
    (void)state;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/cfg", tmp);
    pixart_config c;
    dt_err err = {0};
    struct { const char *json, *n1, *n2; } cases[] = {
        {"{\"sample_size\": 8, ", "config.json", "malformed JSON"},
        {"{\"patch_size\": 2}", "config.json", "\"sample_size\""},
        {"{\"sample_size\": \"8\", \"patch_size\": 2}", "\"sample_size\"", "number"},
        {"{\"sample_size\": 8.5, \"patch_size\": 2}", "\"sample_size\"", "integer"},
        {"{\"sample_size\": 9, \"patch_size\": 2, \"num_layers\": 1, \"num_attention_heads\": 2, \"attention_head_dim\": 24, \"caption_channels\": 8}", "sample_size", "patch_size"},
        {"{\"sample_size\": 8, \"patch_size\": 2, \"num_layers\": 1, \"num_attention_heads\": 2, \"attention_head_dim\": 24, \"caption_channels\": 8, \"norm_type\": \"layer_norm\"}", "\"norm_type\"", "ada_norm_single"},
        {"{\"sample_size\": 8, \"patch_size\": 2, \"num_layers\": 0, \"num_attention_heads\": 2, \"attention_head_dim\": 24, \"caption_channels\": 8}", "num_layers", "outside the supported 1..256"},
        {"{\"sample_size\": 8, \"patch_size\": 2, \"num_layers\": 1, \"num_attention_heads\": 2, \"attention_head_dim\": 24, \"caption_channels\": 8, \"use_additional_conditions\": \"yes\"}", "use_additional_conditions", "true or false"},
        {"[1, 2]", "config.json", "JSON object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_config(dir, cases[i].json);
        dt_err_clear(&err);
        if (pixart_config_load(dir, &c, &err) == DT_OK) fail_msg("config %zu accepted: %s", i, cases[i].json);
        assert_null(strchr(err.msg, '\n'));
        if (!strstr(err.msg, cases[i].n1) || !strstr(err.msg, cases[i].n2))
            fail_msg("config %zu: message \"%s\" lacks \"%s\"/\"%s\"", i, err.msg, cases[i].n1, cases[i].n2);
    }
}

static void test_model_dir(void **state)
{
    (void)state;
    char out[4096];
    dt_err err = {0};
    assert_int_equal(dt_model_component_dir("tests/fixtures/pixart-alpha-tiny", "transformer", out, sizeof out, &err), DT_OK);
    assert_string_equal(out, "tests/fixtures/pixart-alpha-tiny/transformer");
    assert_int_equal(dt_model_component_dir("tests/fixtures/pixart-alpha-tiny/transformer", "transformer", out, sizeof out, &err), DT_OK);
    assert_int_equal(dt_model_component_dir("tests/fixtures/pixart-alpha-tiny", "vae", out, sizeof out, &err), DT_EFORMAT);
    assert_non_null(strstr(err.msg, "\"vae\""));
    dt_err_clear(&err);
    assert_int_equal(dt_model_component_dir("/nonexistent/model", "transformer", out, sizeof out, &err), DT_EIO);
    assert_non_null(strstr(err.msg, "/nonexistent/model"));
    dt_err_clear(&err);
    char bad[512], path[600];
    snprintf(bad, sizeof bad, "%s/pipe", tmp);
    write_config(bad, "{}");
    snprintf(path, sizeof path, "%s/model_index.json", bad);
    tu_write_file(path, "{\"transformer\": [", 17);
    assert_int_equal(dt_model_component_dir(bad, "transformer", out, sizeof out, &err), DT_EFORMAT);
    assert_non_null(strstr(err.msg, "model_index.json"));
}

/* dt_st_read_f32's bf16 path (vectorized, split over threads) and its f32 path against the plain
 * dt_convert_to_f32, bit for bit, on random bit patterns (NaNs and infinities included) at odd
 * addresses: long tensors (several chunks, a ragged tail) and a short one. */
static void test_read_f32_matches_plain(void **state)
{
    (void)state;
    const size_t nb = ((size_t)5 << 19) + 13, nf = 1000003, ns = 13; /* bf16 long, f32, bf16 short */
    size_t data = 1 + 2 * nb + 4 * nf + 2 * ns;
    char header[512], path[600];
    snprintf(header, sizeof header,
             "{\"pad\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
             "\"b\":{\"dtype\":\"BF16\",\"shape\":[%zu],\"data_offsets\":[1,%zu]},"
             "\"f\":{\"dtype\":\"F32\",\"shape\":[%zu],\"data_offsets\":[%zu,%zu]},"
             "\"s\":{\"dtype\":\"BF16\",\"shape\":[%zu],\"data_offsets\":[%zu,%zu]}}",
             nb, 1 + 2 * nb, nf, 1 + 2 * nb, 1 + 2 * nb + 4 * nf, ns, 1 + 2 * nb + 4 * nf, data);
    size_t hl = strlen(header);
    unsigned char *buf = malloc(8 + hl + data);
    assert_non_null(buf);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    uint64_t r = 0x9E3779B97F4A7C15ULL;
    for (size_t i = 0; i < data; i++) {
        r ^= r >> 12; r ^= r << 25; r ^= r >> 27;
        buf[8 + hl + i] = (unsigned char)((r * 0x2545F4914F6CDD1DULL) >> 56);
    }
    snprintf(path, sizeof path, "%s/convert.safetensors", tmp);
    tu_write_file(path, buf, 8 + hl + data);
    free(buf);
    dt_safetensors *st = NULL;
    dt_err err = {0};
    assert_int_equal(dt_st_open(path, &st, &err), DT_OK);
    const char *names[] = {"b", "f", "s"};
    for (int t = 0; t < 3; t++) {
        const dt_st_entry *e = dt_st_find(st, names[t]);
        assert_non_null(e);
        size_t n = (size_t)e->shape[0];
        float *got = malloc(n * sizeof(float)), *want = malloc(n * sizeof(float));
        assert_non_null(got);
        assert_non_null(want);
        dt_st_read_f32(e, got);
        dt_convert_to_f32(e->data, e->dtype, want, n);
        if (memcmp(got, want, n * sizeof(float))) fail_msg("tensor %s: dt_st_read_f32 differs from dt_convert_to_f32", names[t]);
        free(got);
        free(want);
    }
    dt_st_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_f16_bf16_conversions),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_header_past_eof),
        cmocka_unit_test(test_offsets_out_of_range),
        cmocka_unit_test(test_overlap),
        cmocka_unit_test(test_unknown_dtype),
        cmocka_unit_test(test_size_mismatch),
        cmocka_unit_test(test_malformed_header),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_sharded),
        cmocka_unit_test(test_write_keeps_existing_on_failure),
        cmocka_unit_test(test_model_missing_tensor),
        cmocka_unit_test(test_model_wrong_shape),
        cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_model_dir),
        cmocka_unit_test(test_read_f32_matches_plain),
    };
    return cmocka_run_group_tests_name("safetensors", tests, setup, teardown);
}
