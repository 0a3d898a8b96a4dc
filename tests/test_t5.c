/* The text side against transformers/diffusers (tests/fixtures/t5-tiny): T5Tokenizer ids on
 * 560 strings (raw and through the pipeline's lower().strip()), Python's str.lower/isspace
 * over every code point, T5 relative-position buckets, prompt_embeds of encode_prompt in
 * f32 and bf16; the rms_norm / gated_act kernels against their references; bad tokenizer
 * files, invalid UTF-8, truncation, and the eval text-encoder / tokenizer command lines. */
#include "testutil.h"
#include "runtime/core/arena.h"
#include "runtime/core/json.h"
#include "runtime/core/safetensors.h"
#include "runtime/models/t5.h"
#include "runtime/text/caption.h"
#include "runtime/text/tokenizer.h"
#include "kernels/cpu/ref.h"
#include <sys/stat.h>
#include <sys/wait.h>

#define FIX "tests/fixtures/t5-tiny"

static cJSON *cases_json(void)
{
    cJSON *j = NULL;
    dt_err e = {0};
    if (dt_json_load(FIX "/tokenizer_cases.json", &j, &e) != DT_OK) fail_msg("%s", e.msg);
    return j;
}

static dt_tokenizer *load_tok(const char *dir)
{
    dt_tokenizer *t = NULL;
    dt_err e = {0};
    if (dt_tokenizer_load(dir, &t, &e) != DT_OK) fail_msg("%s", e.msg);
    return t;
}

/* Encodes text and compares with the reference real ids; returns 1 when identical. */
static int same_ids(const dt_tokenizer *t, const char *text, int ml, const cJSON *ref, int n_full, int verbose)
{
    int32_t ids[512];
    float mask[512];
    int nr = -1, tr = -1;
    dt_err e = {0};
    assert_true(ml <= 512);
    if (dt_tokenizer_encode(t, text, ml, ids, mask, &nr, &tr, &e) != DT_OK) fail_msg("encode \"%s\": %s", text, e.msg);
    int n = cJSON_GetArraySize(ref), ok = nr == n && (n_full < 0 || tr == (n_full > ml));
    for (int i = 0; ok && i < ml; i++) {
        ok = i < n ? ids[i] == cJSON_GetArrayItem(ref, i)->valueint && mask[i] == 1.0f
                   : ids[i] == dt_tokenizer_pad_id(t) && mask[i] == 0.0f;
    }
    if (!ok && verbose) {
        fprintf(stderr, "mismatch for \"%s\" (max_length %d): got %d ids, truncated %d; want %d ids, n_full %d\n  got:",
                text, ml, nr, tr, n, n_full);
        for (int i = 0; i < nr; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n  want:");
        for (int i = 0; i < n; i++) fprintf(stderr, " %d", cJSON_GetArrayItem(ref, i)->valueint);
        fprintf(stderr, "\n");
    }
    return ok;
}

static void test_tokenizer_cases(void **state)
{
    (void)state;
    cJSON *j = cases_json();
    dt_tokenizer *t = load_tok(FIX "/tokenizer");
    assert_int_equal(dt_tokenizer_vocab_size(t), 1100);
    assert_int_equal(dt_tokenizer_pad_id(t), cJSON_GetObjectItem(j, "pad_id")->valueint);
    assert_int_equal(dt_tokenizer_eos_id(t), cJSON_GetObjectItem(j, "eos_id")->valueint);
    int n = 0, bad = 0, bad_pre = 0, trunc = 0;
    dt_err e = {0};
    for (const cJSON *c = cJSON_GetObjectItem(j, "cases")->child; c; c = c->next) {
        const char *text = cJSON_GetObjectItem(c, "text")->valuestring, *clean = cJSON_GetObjectItem(c, "clean_text")->valuestring;
        int ml = cJSON_GetObjectItem(c, "max_length")->valueint, nf = cJSON_GetObjectItem(c, "n_full")->valueint;
        bad += !same_ids(t, text, ml, cJSON_GetObjectItem(c, "ids"), nf, 1);
        /* the pipeline's preprocessing, then the tokenizer */
        char *pre;
        if (dt_caption_preprocess(text, 1, &pre, &e) != DT_OK) fail_msg("%s", e.msg);
        if (strcmp(pre, clean)) { bad_pre++; fprintf(stderr, "lower().strip() of \"%s\": got \"%s\", want \"%s\"\n", text, pre, clean); }
        bad += !same_ids(t, pre, ml, cJSON_GetObjectItem(c, "clean_ids"), cJSON_GetObjectItem(c, "clean_n_full")->valueint, 1);
        free(pre);
        trunc += nf > ml;
        n++;
    }
    printf("tokenizer: %d strings x {raw, lower().strip()}: %d id mismatches, %d preprocessing mismatches (%d truncated)\n",
           n, bad, bad_pre, trunc);
    assert_true(n >= 500 && trunc > 10);
    assert_int_equal(bad, 0);
    assert_int_equal(bad_pre, 0);
    dt_tokenizer_free(t);
    cJSON_Delete(j);
}

/* Copies a file byte for byte (for building tokenizer-folder variants). */
static void copy_file(const char *from, const char *to)
{
    FILE *f = fopen(from, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    tu_write_file(to, b, (size_t)n);
    free(b);
}

/* Older tokenizer folders: tokenizer_config.json without added_tokens_decoder (with
 * added_tokens.json), and spiece.model alone: from_pretrained's ids. */
static void test_tokenizer_folder_variants(void **state)
{
    (void)state;
    cJSON *j = cases_json(), *v = cJSON_GetObjectItem(j, "variants"), *texts = cJSON_GetObjectItem(v, "texts");
    char dir[256], p[512];
    tu_tmpdir(dir, sizeof dir);
    const char *names[2] = {"no_decoder", "bare"};
    for (int k = 0; k < 2; k++) {
        char sub[300];
        snprintf(sub, sizeof sub, "%s/%s", dir, names[k]);
        assert_int_equal(mkdir(sub, 0755), 0);
        snprintf(p, sizeof p, "%s/spiece.model", sub);
        copy_file(FIX "/tokenizer/spiece.model", p);
        if (k == 0) {
            snprintf(p, sizeof p, "%s/added_tokens.json", sub);
            copy_file(FIX "/tokenizer/added_tokens.json", p);
            cJSON *cfg;
            dt_err e = {0};
            assert_int_equal(dt_json_load(FIX "/tokenizer/tokenizer_config.json", &cfg, &e), DT_OK);
            cJSON_DeleteItemFromObject(cfg, "added_tokens_decoder");
            char *s = cJSON_Print(cfg);
            snprintf(p, sizeof p, "%s/tokenizer_config.json", sub);
            tu_write_file(p, s, strlen(s));
            free(s);
            cJSON_Delete(cfg);
        }
        dt_tokenizer *t = load_tok(sub);
        const cJSON *ref = cJSON_GetObjectItem(cJSON_GetObjectItem(v, "ids"), names[k])->child;
        for (const cJSON *s = texts->child; s; s = s->next, ref = ref->next)
            assert_true(same_ids(t, s->valuestring, 120, ref, -1, 1));
        dt_tokenizer_free(t);
    }
    tu_rmtree(dir);
    cJSON_Delete(j);
}

static int in_ranges(const cJSON *ranges, uint32_t c)
{
    for (const cJSON *r = ranges->child; r; r = r->next)
        if (c >= (uint32_t)cJSON_GetArrayItem(r, 0)->valueint && c <= (uint32_t)cJSON_GetArrayItem(r, 1)->valueint) return 1;
    return 0;
}

/* str.lower() and str.isspace() of every code point, and the final-sigma decision for every
 * code point after and before a capital sigma, as Python computes them. */
static void test_python_unicode(void **state)
{
    (void)state;
    cJSON *j = cases_json(), *u = cJSON_GetObjectItem(j, "unicode");
    dt_pystr p;
    dt_err e = {0};
    assert_int_equal(dt_pystr_open(&p, &e), DT_OK);
    const cJSON *lo = cJSON_GetObjectItem(u, "lower")->child, *sp = cJSON_GetObjectItem(u, "space")->child;
    const cJSON *mid = cJSON_GetObjectItem(u, "sigma_mid"), *end = cJSON_GetObjectItem(u, "sigma_end");
    int bad_lower = 0, bad_space = 0, bad_sigma = 0, mapped = 0;
    for (uint32_t c = 0; c < 0x110000; c++) {
        if (c >= 0xD800 && c <= 0xDFFF) continue;
        uint32_t out[4], want[4] = {c};
        size_t nw = 1, n = dt_pystr_lower(&p, &c, 1, out);
        if (lo && (uint32_t)cJSON_GetArrayItem(lo, 0)->valueint == c) {
            nw = 0;
            for (const cJSON *x = lo->child->next; x; x = x->next) want[nw++] = (uint32_t)x->valueint;
            lo = lo->next;
            mapped++;
        }
        bad_lower += n != nw || memcmp(out, want, n * sizeof *out);
        int is = sp && (uint32_t)sp->valueint == c;
        if (is) sp = sp->next;
        bad_space += dt_pystr_isspace(&p, c) != is;
        uint32_t s1[3] = {'A', 0x3A3, c}, s2[3] = {'A', c, 0x3A3}, o1[6], o2[6];
        size_t n1 = dt_pystr_lower(&p, s1, 3, o1), n2 = dt_pystr_lower(&p, s2, 3, o2);
        bad_sigma += (o1[1] == 0x3C3) != in_ranges(mid, c) || (o2[n2 - 1] == 0x3C2) != in_ranges(end, c);
        (void)n1;
    }
    printf("unicode: %d code points lowercased by Python; mismatches: lower %d, isspace %d, final sigma %d\n",
           mapped, bad_lower, bad_space, bad_sigma);
    assert_true(mapped > 1000);
    assert_int_equal(bad_lower, 0);
    assert_int_equal(bad_space, 0);
    assert_int_equal(bad_sigma, 0);
    dt_pystr_close(&p);
    cJSON_Delete(j);
}

static void test_caption_examples(void **state)
{
    (void)state;
    static const char *cases[][2] = {
        {"  Hello WORLD \t\n", "hello world"}, {"\xC4\xB0stanbul", "i\xCC\x87stanbul"}, /* U+0130 */
        {"\xCE\xA3\xCE\x91\xCE\xA3", "\xCF\x83\xCE\xB1\xCF\x82"},                      /* ΣΑΣ -> σας */
        {"\xC2\xA0x\xE3\x80\x80", "x"}, {"", ""}, {"\x1f" "A" "\x1c", "a"}, {"\xE2\x80\x8B" "A", "\xE2\x80\x8B" "a"},
    };
    dt_err e = {0};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *o;
        assert_int_equal(dt_caption_preprocess(cases[i][0], 1, &o, &e), DT_OK);
        assert_string_equal(o, cases[i][1]);
        free(o);
    }
    char *o;
    assert_int_equal(dt_caption_preprocess("  Keep Me  ", 0, &o, &e), DT_OK);
    assert_string_equal(o, "  Keep Me  ");
    free(o);
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    static const char *bad[] = {
        "abc\xFF", "\xC0\xAF", "\xE0\x80\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xF8\x88\x80\x80\x80",
        "trunc\xE2\x82", "\x80lead", "ok \xC3", "\xC3\x28",
    };
    dt_tokenizer *t = load_tok(FIX "/tokenizer");
    int32_t ids[16];
    float mask[16];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        dt_err e = {0};
        char *o = (char *)1;
        assert_int_equal(dt_tokenizer_encode(t, bad[i], 16, ids, mask, NULL, NULL, &e), DT_EINVAL);
        assert_non_null(strstr(e.msg, "invalid UTF-8 at byte"));
        dt_err e2 = {0};
        assert_int_equal(dt_caption_preprocess(bad[i], 1, &o, &e2), DT_EINVAL);
        assert_null(o);
        assert_non_null(strstr(e2.msg, "prompt: invalid UTF-8"));
    }
    dt_err e = {0};
    assert_int_equal(dt_tokenizer_encode(t, "\xE2\x82", 16, ids, mask, NULL, NULL, &e), DT_EINVAL);
    assert_non_null(strstr(e.msg, "at byte 0"));
    dt_tokenizer_free(t);
}

static void test_truncation(void **state)
{
    (void)state;
    dt_tokenizer *t = load_tok(FIX "/tokenizer");
    int32_t ids[12];
    float mask[12];
    int n, tr;
    dt_err e = {0};
    assert_int_equal(dt_tokenizer_encode(t, "a photo of a cat", 12, ids, mask, &n, &tr, &e), DT_OK);
    assert_int_equal(tr, 0);
    assert_true(n > 1 && n < 12 && ids[n - 1] == dt_tokenizer_eos_id(t) && mask[n - 1] == 1.0f && mask[n] == 0.0f);
    assert_int_equal(dt_tokenizer_encode(t, "a photo of a cat on a red mat in the style of van gogh, oil on canvas", 12, ids, mask, &n, &tr, &e), DT_OK);
    assert_int_equal(tr, 1);
    assert_int_equal(n, 12);
    assert_int_equal(ids[11], dt_tokenizer_eos_id(t));
    assert_int_equal(dt_tokenizer_encode(t, "", 2, ids, mask, &n, &tr, &e), DT_OK);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], dt_tokenizer_eos_id(t));
    assert_int_equal(ids[1], dt_tokenizer_pad_id(t));
    assert_int_equal(dt_tokenizer_encode(t, "x", 1, ids, mask, &n, &tr, &e), DT_EINVAL);
    assert_non_null(strstr(e.msg, "max_length"));
    dt_tokenizer_free(t);
}

static void expect_load_error(const char *dir, const char *needle)
{
    dt_tokenizer *t = NULL;
    dt_err e = {0};
    assert_int_not_equal(dt_tokenizer_load(dir, &t, &e), DT_OK);
    assert_null(t);
    if (!strstr(e.msg, needle)) fail_msg("error \"%s\" lacks \"%s\"", e.msg, needle);
    assert_null(strchr(e.msg, '\n'));
}

static void test_bad_spiece(void **state)
{
    (void)state;
    char dir[256], p[512];
    tu_tmpdir(dir, sizeof dir);
    snprintf(p, sizeof p, "%s/spiece.model", dir);
    expect_load_error(dir, p); /* missing */
    tu_write_file(p, "this is not a sentencepiece model", 33);
    expect_load_error(dir, p);
    /* the real model cut short */
    FILE *f = fopen(FIX "/tokenizer/spiece.model", "rb");
    assert_non_null(f);
    char buf[4096];
    assert_int_equal(fread(buf, 1, sizeof buf, f), sizeof buf);
    fclose(f);
    tu_write_file(p, buf, sizeof buf);
    expect_load_error(dir, p);
    tu_write_file(p, "", 0);
    expect_load_error(dir, p);
    /* a good model with a broken or unsupported tokenizer_config.json */
    copy_file(FIX "/tokenizer/spiece.model", p);
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    tu_write_file(p, "{\"legacy\": false}", 17);
    expect_load_error(dir, "legacy");
    const char *single = "{\"added_tokens_decoder\": {\"5\": {\"content\": \"<a>\", \"single_word\": true}}}";
    tu_write_file(p, single, strlen(single)); /* 73 bytes: no literal count to get wrong */
    expect_load_error(dir, "single_word");
    tu_write_file(p, "{\"added_tokens_decoder\": ", 25);
    expect_load_error(dir, p);
    tu_rmtree(dir);
}

static void test_relative_buckets(void **state)
{
    (void)state;
    cJSON *j = cases_json(), *b = cJSON_GetObjectItem(j, "buckets");
    int lo = cJSON_GetObjectItem(j, "relative_position_min")->valueint, n = 0;
    for (const cJSON *t = b->child; t; t = t->next) {
        int nb, md;
        assert_int_equal(sscanf(t->string, "%d_%d", &nb, &md), 2);
        int r = lo;
        for (const cJSON *x = t->child; x; x = x->next, r++, n++)
            if (t5_relative_position_bucket(r, nb, md) != x->valueint)
                fail_msg("bucket(%d, %d, %d) = %d, transformers %d", r, nb, md, t5_relative_position_bucket(r, nb, md), x->valueint);
    }
    assert_true(n > 1000);
    cJSON_Delete(j);
}

/* ---- the encoder against encode_prompt ---- */

/* weights: cd, or DT_I8 (int8 weights, f32 compute); min_err > 0: the result must differ from the
 * reference at least that much (the int8 weights were really used). */
static void check_encoder(dt_dtype cd, dt_dtype weights, double tol, double min_err)
{
    cJSON *meta;
    dt_err e = {0};
    assert_int_equal(dt_json_load(FIX "/encoder_cases.json", &meta, &e), DT_OK);
    dt_safetensors *ref;
    assert_int_equal(dt_st_open(FIX "/encoder_cases.safetensors", &ref, &e), DT_OK);
    dt_backend *be = tu_backend(cd);
    t5_model *m = NULL;
    if (t5_load(be, FIX "/text_encoder", weights, &m, &e) != DT_OK) fail_msg("%s", e.msg);
    dt_tokenizer *tok = load_tok(FIX "/tokenizer");
    int C = t5_get_config(m)->d_model;
    assert_int_equal(C, 32);
    dt_arena arena;
    dt_arena_init(&arena);
    for (const cJSON *c = meta->child; c; c = c->next) {
        const cJSON *neg = cJSON_GetObjectItem(c, "negative_prompt");
        int N = cJSON_GetObjectItem(c, "max_length")->valueint, B = cJSON_IsString(neg) ? 2 : 1;
        int32_t *ids = malloc(sizeof(int32_t) * B * N);
        float *mask = tu_alloc((size_t)B * N), *out = tu_poisoned((size_t)B * N * C);
        const char *texts[2] = {B == 2 ? neg->valuestring : NULL, cJSON_GetObjectItem(c, "prompt")->valuestring};
        for (int b = 0; b < B; b++) {
            char *pre;
            assert_int_equal(dt_caption_preprocess(texts[2 - B + b], 1, &pre, &e), DT_OK);
            assert_int_equal(dt_tokenizer_encode(tok, pre, N, ids + b * N, mask + b * N, NULL, NULL, &e), DT_OK);
            free(pre);
        }
        char name[128];
        snprintf(name, sizeof name, "%s.input_ids", c->string);
        const dt_st_entry *ri = dt_st_find(ref, name);
        assert_non_null(ri);
        assert_int_equal(ri->nbytes, sizeof(int32_t) * B * N);
        assert_memory_equal(ri->data, ids, ri->nbytes);
        snprintf(name, sizeof name, "%s.attention_mask", c->string);
        assert_memory_equal(dt_st_find(ref, name)->data, mask, sizeof(float) * B * N);
        dt_arena_reset(&arena);
        if (t5_encode(m, ids, mask, B, N, &arena, out, &e) != DT_OK) fail_msg("%s", e.msg);
        snprintf(name, sizeof name, "%s.prompt_embeds", c->string);
        const dt_st_entry *re = dt_st_find(ref, name);
        double err = tu_rel_l2(out, re->data, (size_t)B * N * C);
        printf("t5 encoder %s%s, case %s (B=%d, N=%d): relative L2 %.3g (tolerance %.0e)\n", dt_dtype_name(cd),
               weights == DT_I8 ? " with int8 weights" : "", c->string, B, N, err, tol);
        if (!(err <= tol)) fail_msg("case %s: relative L2 %.3g exceeds %.3g", c->string, err, tol);
        if (!(err >= min_err)) fail_msg("case %s: relative L2 %.3g, expected at least %.3g", c->string, err, min_err);
        free(ids); free(mask); free(out);
    }
    dt_arena_free(&arena);
    dt_tokenizer_free(tok);
    t5_free(m);
    dt_backend_destroy(be);
    dt_st_close(ref);
    cJSON_Delete(meta);
}

static void test_encoder_f32(void **state) { (void)state; check_encoder(DT_F32, DT_F32, 1e-4, 0); }
static void test_encoder_bf16(void **state) { (void)state; TU_REQUIRE_BF16(); check_encoder(DT_BF16, DT_BF16, 2e-2, 0); }
/* Weight-only int8 (--text-encoder-dtype int8): the linears and the embedding rounded per output
 * channel / row: 1.1e-2 .. 2.2e-2 on this random tiny encoder (bf16: 4.9e-3 .. 1.1e-2). */
static void test_encoder_int8(void **state) { (void)state; check_encoder(DT_F32, DT_I8, 3e-2, 1e-4); }

/* int8 weights need f32 compute; a bf16 backend refuses them in one line. */
static void test_encoder_int8_needs_f32(void **state)
{
    (void)state;
    TU_REQUIRE_BF16();
    dt_backend *be = tu_backend(DT_BF16);
    t5_model *m = NULL;
    dt_err e = {0};
    assert_int_equal(t5_load(be, FIX "/text_encoder", DT_I8, &m, &e), DT_EUNSUPPORTED);
    assert_non_null(strstr(e.msg, "int8"));
    assert_null(m);
    dt_backend_destroy(be);
}

static void test_encoder_bad_inputs(void **state)
{
    (void)state;
    dt_backend *be = tu_backend(DT_F32);
    t5_model *m = NULL;
    dt_err e = {0};
    assert_int_equal(t5_load(be, FIX "/text_encoder", be->cfg.compute, &m, &e), DT_OK);
    dt_arena a;
    dt_arena_init(&a);
    int32_t ids[3] = {5, 1100, 1};
    float mask[3] = {1, 1, 1}, out[3 * 32];
    assert_int_equal(t5_encode(m, ids, mask, 1, 3, &a, out, &e), DT_EINVAL);
    assert_non_null(strstr(e.msg, "input_ids: id 1100"));
    ids[1] = 7;
    mask[2] = 0.5f;
    dt_err e2 = {0};
    assert_int_equal(t5_encode(m, ids, mask, 1, 3, &a, out, &e2), DT_EINVAL);
    assert_non_null(strstr(e2.msg, "attention_mask"));
    dt_arena_free(&a);
    t5_free(m);
    /* a ReLU (v1.0) config and a missing weight */
    char dir[256], p[512];
    tu_tmpdir(dir, sizeof dir);
    snprintf(p, sizeof p, "%s/config.json", dir);
    const char *relu = "{\"d_model\": 32, \"feed_forward_proj\": \"relu\"}";
    tu_write_file(p, relu, strlen(relu));
    dt_err e3 = {0};
    assert_int_equal(t5_load(be, dir, be->cfg.compute, &m, &e3), DT_EUNSUPPORTED);
    assert_non_null(strstr(e3.msg, "feed_forward_proj"));
    copy_file(FIX "/text_encoder/config.json", p);
    float w[4] = {0};
    int64_t ws[1] = {4};
    dt_tensor tw = dt_tensor_view(w, DT_F32, 1, ws);
    dt_st_item it = {"shared.weight", &tw};
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    assert_int_equal(dt_st_write(p, &it, 1, &e), DT_OK);
    dt_err e4 = {0};
    assert_int_not_equal(t5_load(be, dir, be->cfg.compute, &m, &e4), DT_OK);
    assert_non_null(strstr(e4.msg, "\"shared.weight\" has shape [4], expected [1100, 32]"));
    tu_rmtree(dir);
    dt_backend_destroy(be);
}

/* dt_st_release drops pages but the mapping still reads the same bytes afterwards. */
static void test_st_release(void **state)
{
    (void)state;
    dt_safetensors *st;
    dt_err e = {0};
    assert_int_equal(dt_st_open(FIX "/text_encoder/model.safetensors", &st, &e), DT_OK);
    const dt_st_entry *en = dt_st_find(st, "shared.weight");
    assert_non_null(en);
    size_t n = en->nbytes / 4;
    float *a = tu_alloc(n), *b = tu_alloc(n);
    dt_st_read_f32(en, a);
    dt_st_release(en);
    dt_st_read_f32(en, b);
    assert_memory_equal(a, b, n * 4);
    free(a); free(b);
    dt_st_close(st);
}

/* ---- kernels ---- */

static void test_rms_norm_kernel(void **state)
{
    (void)state;
    static const int sizes[][2] = {{1, 1}, {3, 7}, {17, 32}, {61, 100}, {5, 4096}, {240, 33}};
    dt_backend *be = tu_backend(DT_F32);
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        int M = sizes[s][0], C = sizes[s][1];
        tu_rng r = {(uint64_t)(M * 977 + C)};
        float *x = tu_alloc((size_t)M * C), *w = tu_alloc(C), *y = tu_poisoned((size_t)M * C), *yr = tu_alloc((size_t)M * C);
        tu_fill(&r, x, (size_t)M * C, 3.0f);
        tu_fill(&r, w, C, 1.5f);
        int64_t sh[2] = {M, C};
        dt_tensor tx = dt_tensor_view(x, DT_F32, 2, sh), ty = dt_tensor_view(y, DT_F32, 2, sh);
        dt_err e = {0};
        assert_int_equal(be->ops->rms_norm(be, &tx, w, 1e-6f, &ty, &e), DT_OK);
        ref_rms_norm(x, M, C, w, 1e-6f, yr);
        assert_rel_l2_below(y, yr, (size_t)M * C, 2e-6);
        /* in place, and a 3-D view */
        int64_t s3[3] = {1, M, C};
        dt_tensor tx3 = dt_tensor_view(x, DT_F32, 3, s3);
        assert_int_equal(be->ops->rms_norm(be, &tx3, w, 1e-6f, &tx3, &e), DT_OK);
        assert_rel_l2_below(x, yr, (size_t)M * C, 2e-6);
        free(x); free(w); free(y); free(yr);
    }
    float x[6] = {0}, w[3] = {1, 1, 1}, y[4];
    int64_t sx[2] = {2, 3}, sy[2] = {2, 2};
    dt_tensor tx = dt_tensor_view(x, DT_F32, 2, sx), ty = dt_tensor_view(y, DT_F32, 2, sy);
    dt_err e = {0};
    assert_int_equal(be->ops->rms_norm(be, &tx, w, 1e-6f, &ty, &e), DT_EINVAL);
    assert_non_null(strstr(e.msg, "rms_norm"));
    /* all-zero rows stay finite with eps > 0 */
    dt_tensor tx2 = dt_tensor_view(x, DT_F32, 2, sx);
    assert_int_equal(be->ops->rms_norm(be, &tx2, w, 1e-6f, &tx2, &e), DT_OK);
    for (int i = 0; i < 6; i++) assert_true(x[i] == 0.0f);
    dt_backend_destroy(be);
}

static void test_gated_act_kernel(void **state)
{
    (void)state;
    static const int sizes[][2] = {{1, 1}, {3, 7}, {17, 64}, {61, 100}, {240, 129}};
    dt_backend *be = tu_backend(DT_F32);
    dt_act acts[3] = {DT_ACT_GELU_TANH, DT_ACT_SILU, DT_ACT_NONE};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
        for (int k = 0; k < 3; k++) {
            int M = sizes[s][0], F = sizes[s][1];
            tu_rng r = {(uint64_t)(M * 31 + F + k)};
            float *x = tu_alloc((size_t)M * 2 * F), *y = tu_poisoned((size_t)M * F), *yr = tu_alloc((size_t)M * F);
            tu_fill(&r, x, (size_t)M * 2 * F, 4.0f);
            int64_t sx[2] = {M, 2 * F}, sy[2] = {M, F};
            dt_tensor tx = dt_tensor_view(x, DT_F32, 2, sx), ty = dt_tensor_view(y, DT_F32, 2, sy);
            dt_err e = {0};
            assert_int_equal(be->ops->gated_act(be, acts[k], &tx, &ty, &e), DT_OK);
            ref_gated_act(acts[k], x, M, F, yr);
            assert_rel_l2_below(y, yr, (size_t)M * F, 2e-6);
            free(x); free(y); free(yr);
        }
    float x[6] = {0}, y[4];
    int64_t sx[2] = {2, 3}, sy[2] = {2, 2};
    dt_tensor tx = dt_tensor_view(x, DT_F32, 2, sx), ty = dt_tensor_view(y, DT_F32, 2, sy);
    dt_err e = {0};
    assert_int_equal(be->ops->gated_act(be, DT_ACT_GELU_TANH, &tx, &ty, &e), DT_EINVAL);
    assert_non_null(strstr(e.msg, "gated_act"));
    dt_backend_destroy(be);
}

/* ---- command line ---- */

static char tmp[256];

static int run(const char *cmd, char *out, size_t on, char *err, size_t en)
{
    char full[8192], op[512], ep[512];
    snprintf(op, sizeof op, "%s/stdout.txt", tmp);
    snprintf(ep, sizeof ep, "%s/stderr.txt", tmp);
    snprintf(full, sizeof full, "%s >'%s' 2>'%s'", cmd, op, ep);
    int st = system(full);
    const char *paths[2] = {op, ep};
    char *bufs[2] = {out, err};
    size_t ns[2] = {on, en};
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(paths[i], "r");
        size_t got = f ? fread(bufs[i], 1, ns[i] - 1, f) : 0;
        if (f) fclose(f);
        bufs[i][got] = 0;
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 255;
}

static int lines(const char *s)
{
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static void expect_fail(const char *cmd, const char *needle, const char *outfile)
{
    char o[4096], e[4096];
    int rc = run(cmd, o, sizeof o, e, sizeof e);
    if (rc == 0) fail_msg("succeeded but should fail: %s", cmd);
    if (lines(e) != 1) fail_msg("expected one line on stderr, got: %s", e);
    if (!strstr(e, needle)) fail_msg("stderr lacks \"%s\": %s", needle, e);
    if (outfile && tu_exists(outfile)) fail_msg("%s was written by a failed run", outfile);
}

static void test_cli(void **state)
{
    (void)state;
    tu_tmpdir(tmp, sizeof tmp);
    char cmd[4096], out[512], o[8192], e[4096];
    snprintf(out, sizeof out, "%s/te.safetensors", tmp);
    /* the cfg case: [negative "", positive] */
    snprintf(cmd, sizeof cmd, "./ditrt eval text-encoder -m " FIX " --prompt '  A photo of an astronaut riding a horse on Mars, oil painting  '"
             " --negative-prompt '' --out %s --threads 1", out);
    assert_int_equal(run(cmd, o, sizeof o, e, sizeof e), 0);
    dt_safetensors *a, *b;
    dt_err er = {0};
    assert_int_equal(dt_st_open(out, &a, &er), DT_OK);
    assert_int_equal(dt_st_open(FIX "/encoder_cases.safetensors", &b, &er), DT_OK);
    const dt_st_entry *ids = dt_st_find(a, "input_ids"), *mask = dt_st_find(a, "attention_mask"), *emb = dt_st_find(a, "prompt_embeds");
    assert_true(ids && ids->dtype == DT_I32 && ids->ndim == 2 && ids->shape[0] == 2 && ids->shape[1] == 120);
    assert_true(mask && mask->dtype == DT_F32 && emb && emb->dtype == DT_F32 && emb->ndim == 3 && emb->shape[2] == 32);
    assert_memory_equal(ids->data, dt_st_find(b, "cfg.input_ids")->data, ids->nbytes);
    assert_memory_equal(mask->data, dt_st_find(b, "cfg.attention_mask")->data, mask->nbytes);
    assert_rel_l2_below((const float *)emb->data, (const float *)dt_st_find(b, "cfg.prompt_embeds")->data, emb->nbytes / 4, 1e-4);
    dt_st_close(a);
    dt_st_close(b);
    unlink(out);

    /* eval tokenizer: one line, the padded ids row; a truncation warning on stderr */
    assert_int_equal(run("./ditrt eval tokenizer -m " FIX " --prompt 'A small Cat' --max-length 6", o, sizeof o, e, sizeof e), 0);
    assert_int_equal(lines(o), 1);
    assert_string_equal(e, "");
    assert_int_equal(run("./ditrt eval tokenizer -m " FIX "/tokenizer --max-length 4 --prompt 'a photo of a cat on a red mat'", o, sizeof o, e, sizeof e), 0);
    assert_int_equal(lines(e), 1);
    assert_non_null(strstr(e, "truncated to 4 tokens"));
    assert_int_equal(lines(o), 1);

    const char *te = "./ditrt eval text-encoder -m " FIX;
    snprintf(cmd, sizeof cmd, "%s --out %s", te, out);
    expect_fail(cmd, "--prompt", out);
    snprintf(cmd, sizeof cmd, "%s --prompt x --out %s --max-length 1", te, out);
    expect_fail(cmd, "--max-length", out);
    snprintf(cmd, sizeof cmd, "%s --prompt x --out %s --dtype f64", te, out);
    expect_fail(cmd, "--dtype", out);
    snprintf(cmd, sizeof cmd, "%s --prompt x --out %s --bogus", te, out);
    expect_fail(cmd, "--bogus", out);
    snprintf(cmd, sizeof cmd, "./ditrt eval text-encoder -m /no/model --prompt x --out %s", out);
    expect_fail(cmd, "/no/model", out);
    snprintf(cmd, sizeof cmd, "%s --prompt \"$(printf 'bad \\377 byte')\" --out %s", te, out);
    expect_fail(cmd, "prompt: invalid UTF-8 at byte 4", out);
    snprintf(cmd, sizeof cmd, "%s --prompt ok --negative-prompt \"$(printf '\\300\\257')\" --out %s", te, out);
    expect_fail(cmd, "negative prompt: invalid UTF-8 at byte 0", out);
    expect_fail("./ditrt eval tokenizer -m " FIX "/text_encoder --prompt x", "spiece.model", NULL);
    expect_fail("./ditrt eval tokenizer -m " FIX " --prompt x --max-length zero", "--max-length", NULL);
    expect_fail("./ditrt bench frobnicate", "text-encoder", NULL);
    expect_fail("./ditrt bench text-encoder --arch t5-small", "--arch", NULL);
    /* a pipeline folder whose tokenizer is broken */
    char dir[512], p[600];
    snprintf(dir, sizeof dir, "%s/pipe", tmp);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(p, sizeof p, "%s/model_index.json", dir);
    copy_file(FIX "/model_index.json", p);
    snprintf(p, sizeof p, "%s/tokenizer", dir);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/tokenizer/spiece.model", dir);
    tu_write_file(p, "garbage", 7);
    snprintf(cmd, sizeof cmd, "./ditrt eval text-encoder -m %s --prompt x --out %s", dir, out);
    expect_fail(cmd, "text_encoder", out); /* the missing component is named first */
    snprintf(cmd, sizeof cmd, "./ditrt eval tokenizer -m %s --prompt x", dir);
    expect_fail(cmd, p, NULL);
    tu_rmtree(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokenizer_cases),
        cmocka_unit_test(test_tokenizer_folder_variants),
        cmocka_unit_test(test_python_unicode),
        cmocka_unit_test(test_caption_examples),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_bad_spiece),
        cmocka_unit_test(test_relative_buckets),
        cmocka_unit_test(test_encoder_f32),
        cmocka_unit_test(test_encoder_bf16),
        cmocka_unit_test(test_encoder_int8),
        cmocka_unit_test(test_encoder_int8_needs_f32),
        cmocka_unit_test(test_encoder_bad_inputs),
        cmocka_unit_test(test_st_release),
        cmocka_unit_test(test_rms_norm_kernel),
        cmocka_unit_test(test_gated_act_kernel),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
