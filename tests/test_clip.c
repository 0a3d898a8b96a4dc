/* The CLIP text side against transformers 5 (tests/fixtures/clip-tiny, made by
 * scripts/fixtures/clip.py): CLIPTokenizer ids of 560 strings for SD1.5's tokenizer (pad
 * <|endoftext|>) and SDXL's tokenizer_2 (pad "!"), NFC on composed/decomposed pairs, bad
 * tokenizer files; CLIPTextModel / CLIPTextModelWithProjection outputs (last and penultimate
 * hidden states, clip_skip, pooled / text_embeds, with and without attention_mask) in f32 and
 * bf16; the text-encoder and tokenizer interfaces over CLIP and T5; the eval command lines. */
#include "testutil.h"
#include "runtime/core/arena.h"
#include "runtime/core/json.h"
#include "runtime/core/safetensors.h"
#include "runtime/text/clip_tokenizer.h"
#include "runtime/models/clip_text.h"
#include "runtime/models/t5.h"
#include "runtime/models/text_encoder.h"
#include "runtime/text/text_tokenizer.h"
#include "runtime/text/tokenizer.h"
#include <sys/stat.h>

#define FIX "tests/fixtures/clip-tiny"

static cJSON *cases_json(void)
{
    cJSON *j = NULL;
    dt_err e = {0};
    if (dt_json_load(FIX "/tokenizer_cases.json", &j, &e) != DT_OK) fail_msg("%s", e.msg);
    return j;
}

static dt_clip_tokenizer *load_tok(const char *dir)
{
    dt_clip_tokenizer *t = NULL;
    dt_err e = {0};
    if (dt_clip_tokenizer_load(dir, &t, &e) != DT_OK) fail_msg("%s", e.msg);
    return t;
}

/* Encodes text and compares with the reference real ids; 1 when identical. */
static int same_ids(const dt_clip_tokenizer *t, const char *text, int ml, const cJSON *ref, int n_full)
{
    int32_t ids[512];
    float mask[512];
    int nr = -1, tr = -1;
    dt_err e = {0};
    assert_true(ml <= 512);
    if (dt_clip_tokenizer_encode(t, text, ml, ids, mask, &nr, &tr, &e) != DT_OK) fail_msg("encode \"%s\": %s", text, e.msg);
    int n = cJSON_GetArraySize(ref), ok = nr == n && tr == (n_full > ml);
    for (int i = 0; ok && i < ml; i++)
        ok = i < n ? ids[i] == cJSON_GetArrayItem(ref, i)->valueint && mask[i] == 1.0f
                   : ids[i] == dt_clip_tokenizer_pad_id(t) && mask[i] == 0.0f;
    if (!ok) {
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
    static const char *const names[2] = {"tokenizer", "tokenizer_2"};
    for (int k = 0; k < 2; k++) {
        char dir[256], nf[64];
        snprintf(dir, sizeof dir, FIX "/%s", names[k]);
        snprintf(nf, sizeof nf, "%s_n_full", names[k]);
        dt_clip_tokenizer *t = load_tok(dir);
        assert_int_equal(dt_clip_tokenizer_vocab_size(t), 1514);
        assert_int_equal(dt_clip_tokenizer_bos_id(t), 1512);
        assert_int_equal(dt_clip_tokenizer_eos_id(t), 1513);
        assert_int_equal(dt_clip_tokenizer_pad_id(t), k ? 0 : 1513);
        assert_int_equal(dt_clip_tokenizer_model_max_length(t), 77);
        int n = 0, bad = 0, trunc = 0;
        for (const cJSON *c = cJSON_GetObjectItem(j, "cases")->child; c; c = c->next, n++) {
            int ml = cJSON_GetObjectItem(c, "max_length")->valueint, full = cJSON_GetObjectItem(c, nf)->valueint;
            bad += !same_ids(t, cJSON_GetObjectItem(c, "text")->valuestring, ml, cJSON_GetObjectItem(c, names[k]), full);
            trunc += full > ml;
        }
        print_message("  %s: %d strings (%d truncated), %d differ\n", names[k], n, trunc, bad);
        assert_true(n >= 500 && trunc >= 20);
        assert_int_equal(bad, 0);
        dt_clip_tokenizer_free(t);
    }
    cJSON_Delete(j);
}


/* tokenizer_config.json variants (tokenizer_variants.json): which special tokens are matched
 * in the normalized text (added_tokens_decoder "normalized", default: not special). */
static void test_tokenizer_variants(void **state)
{
    (void)state;
    cJSON *j = NULL;
    dt_err e = {0};
    if (dt_json_load(FIX "/tokenizer_variants.json", &j, &e) != DT_OK) fail_msg("%s", e.msg);
    char dir[128], p[256];
    tu_tmpdir(dir, sizeof dir);
    static const char *const files[2] = {"vocab.json", "merges.txt"};
    for (int i = 0; i < 2; i++) {
        char src[256];
        snprintf(src, sizeof src, FIX "/tokenizer/%s", files[i]);
        FILE *f = fopen(src, "rb");
        assert_non_null(f);
        char *buf = malloc(1 << 20);
        size_t n = fread(buf, 1, 1 << 20, f);
        fclose(f);
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        tu_write_file(p, buf, n);
        free(buf);
    }
    const cJSON *texts = cJSON_GetObjectItem(j, "texts");
    int nv = 0, bad = 0;
    for (const cJSON *v = cJSON_GetObjectItem(j, "variants")->child; v; v = v->next, nv++) {
        char *cfg = cJSON_PrintUnformatted(cJSON_GetObjectItem(v, "config"));
        snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
        tu_write_file(p, cfg, strlen(cfg));
        free(cfg);
        dt_clip_tokenizer *t = load_tok(dir);
        const cJSON *ids = cJSON_GetObjectItem(v, "ids");
        for (int i = 0; i < cJSON_GetArraySize(texts); i++) {
            const cJSON *ref = cJSON_GetArrayItem(ids, i);
            int ok = same_ids(t, cJSON_GetArrayItem(texts, i)->valuestring, 24, ref, cJSON_GetArraySize(ref));
            if (!ok) fprintf(stderr, "  (variant %s)\n", v->string);
            bad += !ok;
        }
        dt_clip_tokenizer_free(t);
    }
    assert_int_equal(nv, 5);
    assert_int_equal(bad, 0);
    tu_rmtree(dir);
    cJSON_Delete(j);
}

/* The real CLIP vocabulary (49408 tokens), when DITRT_CLIP_REAL names a folder made by
 * `python scripts/fixtures/clip.py --real-vocab <open_clip package dir> <folder>` (not
 * committed: 1.5 MB); skipped otherwise. */
static void test_real_vocabulary(void **state)
{
    (void)state;
    const char *root = getenv("DITRT_CLIP_REAL");
    if (!root || !*root) { print_message("  skipped: DITRT_CLIP_REAL is not set\n"); skip(); }
    char p[4096];
    snprintf(p, sizeof p, "%s/cases.json", root);
    cJSON *j = NULL;
    dt_err e = {0};
    if (dt_json_load(p, &j, &e) != DT_OK) fail_msg("%s", e.msg);
    static const char *const names[2] = {"tokenizer", "tokenizer_2"};
    for (int k = 0; k < 2; k++) {
        char dir[4096], nf[64];
        snprintf(dir, sizeof dir, "%s/%s", root, names[k]);
        snprintf(nf, sizeof nf, "%s_n_full", names[k]);
        dt_clip_tokenizer *t = load_tok(dir);
        assert_int_equal(dt_clip_tokenizer_vocab_size(t), 49408);
        int n = 0, bad = 0;
        for (const cJSON *c = cJSON_GetObjectItem(j, "cases")->child; c; c = c->next, n++)
            bad += !same_ids(t, cJSON_GetObjectItem(c, "text")->valuestring, 77, cJSON_GetObjectItem(c, names[k]),
                             cJSON_GetObjectItem(c, nf)->valueint);
        print_message("  real vocabulary, %s: %d strings, %d differ\n", names[k], n, bad);
        assert_int_equal(bad, 0);
        dt_clip_tokenizer_free(t);
    }
    cJSON_Delete(j);
}

/* ---- text encoders ---- */

static int32_t *ref_ids(const dt_safetensors *st, const char *name, int *B, int *N)
{
    const dt_st_entry *e = dt_st_find(st, name);
    assert_non_null(e);
    *B = (int)e->shape[0];
    *N = (int)e->shape[1];
    int32_t *p = malloc((size_t)*B * *N * sizeof *p);
    assert_non_null(p);
    assert_int_equal(e->dtype, DT_I32);
    memcpy(p, e->data, (size_t)*B * *N * sizeof *p);
    return p;
}

/* One case of one encoder against the fixture: last, penultimate, pooled/text_embeds, and for
 * the "eos" case hidden_states[-3], the normed penultimate and the attention_mask run. */
static void check_encoder_case(clip_text_model *m, const dt_safetensors *st, const char *enc, const char *cs, double tol)
{
    char n[256];
    int B, N;
    snprintf(n, sizeof n, "%s.%s.input_ids", enc, cs);
    int32_t *ids = ref_ids(st, n, &B, &N);
    const clip_text_config *c = clip_text_get_config(m);
    size_t hs = (size_t)B * N * c->hidden_size, ps = (size_t)B * (c->projection_dim ? c->projection_dim : c->hidden_size);
    int full = !strcmp(cs, "eos");
    for (int pass = 0; pass < (full ? 3 : 2); pass++) {
        /* pass 0: last/penultimate/pooled; 1: hidden_states[-3] and the normed penultimate
         * (eos case) or pooled again through hidden -1 (pair); 2: with the attention mask */
        float *last = tu_poisoned(hs), *hid = tu_poisoned(hs), *pool = tu_poisoned(ps), *mask = NULL;
        clip_text_outputs o = {.last_hidden_state = last, .hidden = hid, .hidden_from_end = 2};
        const char *hname = "penultimate_hidden_state", *pre = "";
        if (pass == 1 && full) { o.hidden_from_end = 3; hname = "hidden_skip2"; }
        if (pass == 1 && !full) { o.hidden_from_end = 2; o.hidden_final_norm = 0; }
        if (c->projection_dim) o.text_embeds = pool;
        else o.pooled = pool;
        if (pass == 2) {
            snprintf(n, sizeof n, "%s.%s.attention_mask", enc, cs);
            mask = tu_st_f32(st, n, (size_t)B * N);
            pre = "masked.";
            o.text_embeds = o.pooled = NULL;
        }
        dt_arena a;
        dt_arena_init(&a);
        dt_err err = {0};
        if (clip_text_encode(m, ids, mask, B, N, &a, &o, &err) != DT_OK) fail_msg("%s", err.msg);
        snprintf(n, sizeof n, "%s.%s.%slast_hidden_state", enc, cs, pre);
        float *r = tu_st_f32(st, n, hs);
        double e1 = tu_rel_l2(last, r, hs);
        free(r);
        snprintf(n, sizeof n, "%s.%s.%s%s", enc, cs, pre, hname);
        r = tu_st_f32(st, n, hs);
        double e2 = tu_rel_l2(hid, r, hs), e3 = 0;
        free(r);
        if (o.pooled || o.text_embeds) {
            snprintf(n, sizeof n, "%s.%s.%s", enc, cs, c->projection_dim ? "text_embeds" : "pooler_output");
            r = tu_st_f32(st, n, ps);
            e3 = tu_rel_l2(pool, r, ps);
            free(r);
        }
        print_message("  %s.%s pass %d: rel-L2 last %.2e, %s %.2e, pooled %.2e\n", enc, cs, pass, e1, hname, e2, e3);
        assert_true(e1 <= tol && e2 <= tol && e3 <= tol);
        if (pass == 1 && full) { /* SD1.5's clip_skip: final_layer_norm(hidden_states[-2]) */
            o = (clip_text_outputs){.hidden = hid, .hidden_from_end = 2, .hidden_final_norm = 1};
            if (clip_text_encode(m, ids, NULL, B, N, &a, &o, &err) != DT_OK) fail_msg("%s", err.msg);
            snprintf(n, sizeof n, "%s.%s.penultimate_normed", enc, cs);
            r = tu_st_f32(st, n, hs);
            assert_rel_l2_below(hid, r, hs, tol);
            free(r);
        }
        dt_arena_free(&a);
        free(last); free(hid); free(pool); free(mask);
    }
    free(ids);
}

static void run_encoders(dt_dtype dt, double tol)
{
    dt_backend *be = tu_backend(dt);
    dt_safetensors *st;
    dt_err err = {0};
    if (dt_st_open(FIX "/encoder_cases.safetensors", &st, &err) != DT_OK) fail_msg("%s", err.msg);
    static const char *const enc[2] = {"text_encoder", "text_encoder_2"};
    for (int k = 0; k < 2; k++) {
        char dir[256];
        snprintf(dir, sizeof dir, FIX "/%s", enc[k]);
        clip_text_model *m = NULL;
        if (clip_text_load(be, dir, &m, &err) != DT_OK) fail_msg("%s", err.msg);
        assert_int_equal(clip_text_get_config(m)->projection_dim, k ? 16 : 0);
        assert_int_equal(clip_text_get_config(m)->act, k ? CLIP_ACT_GELU : CLIP_ACT_QUICK_GELU);
        check_encoder_case(m, st, enc[k], "pair", tol);
        check_encoder_case(m, st, enc[k], "eos", tol);
        clip_text_free(m);
    }
    dt_st_close(st);
    dt_backend_destroy(be);
}

static void test_encoder_f32(void **state) { (void)state; run_encoders(DT_F32, 1e-4); }

static void test_encoder_bf16(void **state)
{
    (void)state;
    TU_REQUIRE_BF16();
    run_encoders(DT_BF16, 2e-2);
}

/* Pooling rows: eos_token_id 2 (legacy) takes the largest id's first position, any other the
 * first eos_token_id (row 0 without one). text_encoder's config copied with eos_token_id 2. */
static void test_pooling_rule(void **state)
{
    (void)state;
    char dir[128], p[256], cwd[4096];
    tu_tmpdir(dir, sizeof dir);
    assert_non_null(getcwd(cwd, sizeof cwd));
    cJSON *cfg = NULL;
    dt_err e = {0};
    assert_int_equal(dt_json_load(FIX "/text_encoder/config.json", &cfg, &e), DT_OK);
    cJSON_ReplaceItemInObject(cfg, "eos_token_id", cJSON_CreateNumber(2));
    char *txt = cJSON_Print(cfg);
    snprintf(p, sizeof p, "%s/config.json", dir);
    tu_write_file(p, txt, strlen(txt));
    free(txt);
    cJSON_Delete(cfg);
    char target[4200];
    snprintf(target, sizeof target, "%s/" FIX "/text_encoder/model.safetensors", cwd);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    assert_int_equal(symlink(target, p), 0);
    dt_backend *be = tu_backend(DT_F32);
    enum { N = 5 };
    const int32_t ids[3 * N] = {5, 1512, 7, 9, 11,          /* no eos: legacy 1 (largest id), else 0 */
                                1512, 1513, 1513, 9, 1513,  /* both: 1 */
                                3, 4, 1513, 1512, 1513};    /* both: 2 */
    const int want[2][3] = {{0, 1, 2}, {1, 1, 2}};
    const char *dirs[2] = {FIX "/text_encoder", dir};
    for (int k = 0; k < 2; k++) {
        clip_text_model *m = NULL;
        if (clip_text_load(be, dirs[k], &m, &e) != DT_OK) fail_msg("%s", e.msg);
        assert_int_equal(clip_text_get_config(m)->eos_token_id, k ? 2 : 1513);
        float last[3 * N * 32], pooled[3 * 32];
        clip_text_outputs o = {.last_hidden_state = last, .pooled = pooled};
        dt_arena a;
        dt_arena_init(&a);
        assert_int_equal(clip_text_encode(m, ids, NULL, 3, N, &a, &o, &e), DT_OK);
        for (int b = 0; b < 3; b++) assert_memory_equal(pooled + b * 32, last + (b * N + want[k][b]) * 32, 32 * sizeof(float));
        dt_arena_free(&a);
        clip_text_free(m);
    }
    dt_backend_destroy(be);
    tu_rmtree(dir);
}

/* NFC against Python's unicodedata.normalize("NFC", ...) on hand-picked cases: composition,
 * Hangul, blocked marks, singletons, canonical reordering. */
static void test_nfc(void **state)
{
    (void)state;
    static const struct { uint32_t in[4]; int n; uint32_t out[4]; int m; } c[] = {
        {{0x65, 0x301}, 2, {0xE9}, 1},                          /* e + acute */
        {{0x1100, 0x1161, 0x11A8}, 3, {0xAC01}, 1},             /* Hangul L V T */
        {{0xAC00, 0x11A8}, 2, {0xAC01}, 1},                     /* LV + T */
        {{0x61, 0x323, 0x302}, 3, {0x1EAD}, 1},                 /* a dot-below circumflex */
        {{0x61, 0x302, 0x323}, 3, {0x1EAD}, 1},                 /* the same, reordered */
        {{0x344}, 1, {0x308, 0x301}, 2},                        /* singleton decomposition, no recomposition */
        {{0x212B}, 1, {0xC5}, 1},                               /* Angstrom sign */
        {{0x61, 0x301, 0x301}, 3, {0xE1, 0x301}, 2},            /* the second acute is blocked */
        {{0x301, 0x65}, 2, {0x301, 0x65}, 2},                   /* a leading mark composes with nothing */
        {{0x915, 0x93C}, 2, {0x915, 0x93C}, 2},                 /* U+0958 is excluded from composition */
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        uint32_t out[16], tmp[16];
        size_t m = dt_clip_nfc(c[i].in, (size_t)c[i].n, out, tmp);
        assert_int_equal(m, (size_t)c[i].m);
        for (int k = 0; k < c[i].m; k++) assert_int_equal(out[k], c[i].out[k]);
    }
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    tu_write_file(p, text, strlen(text));
}

/* A minimal CLIP tokenizer folder: the 512 byte symbols, a few merges, the specials. */
static void write_small_tokenizer(const char *dir, const char *merges, const char *config)
{
    char *v = malloc(64 * 1024);
    assert_non_null(v);
    size_t k = (size_t)sprintf(v, "{");
    int id = 0;
    for (int eow = 0; eow < 2; eow++)
        for (int b = 0; b < 256; b++) {
            int p = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF), n = 0;
            for (int c = 0; c < b; c++) n += !((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF));
            k += (size_t)sprintf(v + k, "\"\\u%04x%s\":%d,", p ? b : 256 + n, eow ? "</w>" : "", id++);
        }
    k += (size_t)sprintf(v + k, "\"ab\":%d,\"ab</w>\":%d,\"<|startoftext|>\":%d,\"<|endoftext|>\":%d}", id, id + 1, id + 2, id + 3);
    write_text(dir, "vocab.json", v);
    write_text(dir, "merges.txt", merges);
    if (config) write_text(dir, "tokenizer_config.json", config);
    free(v);
}

static void expect_load_error(const char *dir, const char *needle)
{
    dt_clip_tokenizer *t = NULL;
    dt_err e = {0};
    assert_int_not_equal(dt_clip_tokenizer_load(dir, &t, &e), DT_OK);
    assert_null(t);
    if (!strstr(e.msg, needle)) fail_msg("error \"%s\" does not mention \"%s\"", e.msg, needle);
}

static void test_tokenizer_files(void **state)
{
    (void)state;
    char dir[128], p[256];
    tu_tmpdir(dir, sizeof dir);
    expect_load_error(dir, "vocab.json");
    write_small_tokenizer(dir, "#version: 0.2\na b\na b</w>\r\n", NULL);
    dt_clip_tokenizer *t = load_tok(dir);
    int32_t ids[8];
    int nr, tr;
    dt_err e = {0};
    assert_int_equal(dt_clip_tokenizer_encode(t, "AB ab, abab", 8, ids, NULL, &nr, &tr, &e), DT_OK);
    const int32_t want[8] = {514, 513, 513, 256 + ',', 512, 513, 515, 515}; /* bos ab</w> ab</w> ,</w> ab ab</w> eos pad */
    assert_memory_equal(ids, want, sizeof want);
    assert_int_equal(nr, 7);
    assert_int_equal(dt_clip_tokenizer_encode(t, "ab ab ab", 3, ids, NULL, &nr, &tr, &e), DT_OK);
    assert_int_equal(tr, 1);
    assert_int_equal(ids[1], 513);
    assert_int_equal(ids[2], 515);
    assert_int_equal(dt_clip_tokenizer_encode(t, "x", 1, ids, NULL, &nr, &tr, &e), DT_EINVAL);
    dt_err_clear(&e);
    assert_int_equal(dt_clip_tokenizer_encode(t, "bad \xC3\x28 utf8", 8, ids, NULL, &nr, &tr, &e), DT_EINVAL);
    assert_non_null(strstr(e.msg, "invalid UTF-8"));
    assert_int_equal(dt_clip_tokenizer_model_max_length(t), 0);
    dt_clip_tokenizer_free(t);
    /* bad merges, bad vocab, bad config */
    write_small_tokenizer(dir, "#version: 0.2\na b c\n", NULL);
    expect_load_error(dir, "line 2");
    write_small_tokenizer(dir, "a b\n\nb a\n", NULL);
    expect_load_error(dir, "line 2");
    write_small_tokenizer(dir, "a q</w>x\n", NULL);
    expect_load_error(dir, "not in vocab.json");
    write_small_tokenizer(dir, "b a\n", NULL); /* "ba" is not in the vocabulary */
    expect_load_error(dir, "\"ba\" is not in vocab.json");
    write_small_tokenizer(dir, "a b\n", "{\"pad_token\": \"<pad>\"}"); /* added past the vocabulary */
    t = load_tok(dir);
    assert_int_equal(dt_clip_tokenizer_pad_id(t), 516);
    assert_int_equal(dt_clip_tokenizer_vocab_size(t), 517);
    dt_clip_tokenizer_free(t);
    write_small_tokenizer(dir, "a b\n", "{\"model_max_length\": \"77\"}");
    expect_load_error(dir, "model_max_length");
    write_small_tokenizer(dir, "a b\n", "{\"added_tokens_decoder\": {\"7\": {\"content\": \"zz\", \"lstrip\": true}}}");
    expect_load_error(dir, "lstrip");
    write_small_tokenizer(dir, "a b\n", "{\"model_max_length\": 1e30, \"pad_token\": {\"content\": \"!\"}}");
    t = load_tok(dir);
    assert_int_equal(dt_clip_tokenizer_model_max_length(t), 0);
    assert_int_equal(dt_clip_tokenizer_pad_id(t), '!'); /* this vocabulary is in byte order */
    dt_clip_tokenizer_free(t);
    write_text(dir, "vocab.json", "{\"a\": 1, \"a\": 2}");
    expect_load_error(dir, "listed twice");
    write_text(dir, "vocab.json", "{\"a\": -1}");
    expect_load_error(dir, "must map to an id");
    snprintf(p, sizeof p, "%s/merges.txt", dir);
    unlink(p);
    expect_load_error(dir, "merges.txt");
    tu_rmtree(dir);
}

/* The interfaces: the same ids and outputs as the wrapped T5 / CLIP objects. */
static void test_tokenizer_interface(void **state)
{
    (void)state;
    dt_text_tokenizer *a = NULL, *b = NULL;
    dt_err e = {0};
    char dir[4096];
    assert_int_equal(dt_text_tokenizer_find(FIX, "tokenizer_2", dir, sizeof dir, &e), DT_OK);
    assert_string_equal(dir, FIX "/tokenizer_2");
    assert_int_equal(dt_text_tokenizer_find("tests/fixtures/t5-tiny", "tokenizer", dir, sizeof dir, &e), DT_OK);
    assert_string_equal(dir, "tests/fixtures/t5-tiny/tokenizer");
    assert_int_equal(dt_text_tokenizer_find(FIX "/tokenizer", "tokenizer", dir, sizeof dir, &e), DT_OK);
    assert_string_equal(dir, FIX "/tokenizer");
    assert_int_not_equal(dt_text_tokenizer_find("tests/fixtures/t5-tiny", "tokenizer_2", dir, sizeof dir, &e), DT_OK);
    assert_int_equal(dt_text_tokenizer_load(FIX "/tokenizer_2", &a, &e), DT_OK);
    assert_int_equal(dt_text_tokenizer_load("tests/fixtures/t5-tiny/tokenizer", &b, &e), DT_OK);
    assert_int_equal(dt_text_tokenizer_kind(a), DT_TOKENIZER_CLIP);
    assert_int_equal(dt_text_tokenizer_kind(b), DT_TOKENIZER_T5);
    assert_int_equal(dt_text_tokenizer_model_max_length(a), 77);
    assert_int_equal(dt_text_tokenizer_model_max_length(b), 0);
    assert_int_equal(dt_text_tokenizer_pad_id(a), 0);
    assert_int_equal(dt_text_tokenizer_eos_id(a), 1513);
    dt_clip_tokenizer *c = load_tok(FIX "/tokenizer_2");
    dt_tokenizer *t5 = NULL;
    assert_int_equal(dt_tokenizer_load("tests/fixtures/t5-tiny/tokenizer", &t5, &e), DT_OK);
    assert_int_equal(dt_text_tokenizer_vocab_size(b), dt_tokenizer_vocab_size(t5));
    const char *text = "A photo of an Astronaut! </s> <extra_id_0> café 東京";
    int32_t i1[40], i2[40];
    float m1[40], m2[40];
    assert_int_equal(dt_text_tokenizer_encode(a, text, 40, i1, m1, NULL, NULL, &e), DT_OK);
    assert_int_equal(dt_clip_tokenizer_encode(c, text, 40, i2, m2, NULL, NULL, &e), DT_OK);
    assert_memory_equal(i1, i2, sizeof i1);
    assert_memory_equal(m1, m2, sizeof m1);
    assert_int_equal(dt_text_tokenizer_encode(b, text, 40, i1, m1, NULL, NULL, &e), DT_OK);
    assert_int_equal(dt_tokenizer_encode(t5, text, 40, i2, m2, NULL, NULL, &e), DT_OK);
    assert_memory_equal(i1, i2, sizeof i1);
    assert_memory_equal(m1, m2, sizeof m1);
    dt_tokenizer_free(t5);
    dt_clip_tokenizer_free(c);
    dt_text_tokenizer_free(a);
    dt_text_tokenizer_free(b);
    dt_err_clear(&e);
    assert_int_not_equal(dt_text_tokenizer_load(FIX, &a, &e), DT_OK); /* no tokenizer files: names spiece.model */
    assert_non_null(strstr(e.msg, "spiece.model"));
}

static void test_encoder_interface(void **state)
{
    (void)state;
    dt_backend *be = tu_backend(DT_F32);
    dt_err e = {0};
    dt_text_encoder_info info;
    assert_int_equal(dt_text_encoder_probe(FIX "/text_encoder_2", &info, &e), DT_OK);
    assert_int_equal(info.kind, DT_TEXT_ENCODER_CLIP);
    assert_int_equal(info.pooled_size, 16);
    assert_int_equal(info.projection, 1);
    assert_int_equal(info.num_hidden_states, 4);
    assert_int_equal(info.max_positions, 77);
    assert_int_equal(dt_text_encoder_probe("tests/fixtures/t5-tiny/text_encoder", &info, &e), DT_OK);
    assert_int_equal(info.kind, DT_TEXT_ENCODER_T5);
    assert_int_equal(info.pooled_size, 0);
    /* T5 through the interface: byte-identical to t5_encode */
    dt_text_encoder *te = NULL;
    t5_model *t5 = NULL;
    assert_int_equal(dt_text_encoder_load(be, "tests/fixtures/t5-tiny/text_encoder", be->cfg.compute, &te, &e), DT_OK);
    assert_int_equal(t5_load(be, "tests/fixtures/t5-tiny/text_encoder", be->cfg.compute, &t5, &e), DT_OK);
    int32_t ids[2 * 6] = {5, 9, 31, 1, 0, 0, 7, 7, 8, 200, 77, 1};
    float mask[2 * 6] = {1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1};
    int D = info.hidden_size;
    float *y1 = tu_poisoned(12 * (size_t)D), *y2 = tu_poisoned(12 * (size_t)D);
    dt_arena a;
    dt_arena_init(&a);
    dt_text_encoder_outputs o = {.last_hidden_state = y1};
    assert_int_equal(dt_text_encoder_encode(te, ids, mask, 2, 6, &a, &o, &e), DT_OK);
    assert_int_equal(t5_encode(t5, ids, mask, 2, 6, &a, y2, &e), DT_OK);
    assert_memory_equal(y1, y2, 12 * (size_t)D * sizeof(float));
    o.pooled = y2;
    assert_int_equal(dt_text_encoder_encode(te, ids, mask, 2, 6, &a, &o, &e), DT_EINVAL);
    assert_non_null(strstr(e.msg, "pooled"));
    dt_text_encoder_free(te);
    t5_free(t5);
    /* CLIP with a projection: pooled is text_embeds */
    dt_safetensors *st;
    assert_int_equal(dt_st_open(FIX "/encoder_cases.safetensors", &st, &e), DT_OK);
    int B, N;
    int32_t *cid = ref_ids(st, "text_encoder_2.eos.input_ids", &B, &N);
    assert_int_equal(dt_text_encoder_load(be, FIX "/text_encoder_2", be->cfg.compute, &te, &e), DT_OK);
    float *pooled = tu_poisoned((size_t)B * 16), *hid = tu_poisoned((size_t)B * N * 32);
    o = (dt_text_encoder_outputs){.hidden = hid, .hidden_from_end = 3, .pooled = pooled};
    assert_int_equal(dt_text_encoder_encode(te, cid, NULL, B, N, &a, &o, &e), DT_OK);
    float *r = tu_st_f32(st, "text_encoder_2.eos.text_embeds", (size_t)B * 16);
    assert_rel_l2_below(pooled, r, (size_t)B * 16, 1e-4);
    free(r);
    r = tu_st_f32(st, "text_encoder_2.eos.hidden_skip2", (size_t)B * N * 32);
    assert_rel_l2_below(hid, r, (size_t)B * N * 32, 1e-4);
    free(r);
    o.hidden_from_end = 5; /* 3 layers + embeddings: -5 does not exist */
    dt_err_clear(&e);
    assert_int_equal(dt_text_encoder_encode(te, cid, NULL, B, N, &a, &o, &e), DT_EINVAL);
    assert_non_null(strstr(e.msg, "hidden state -5"));
    cid[3] = 1514;
    o.hidden_from_end = 1;
    dt_err_clear(&e);
    assert_int_equal(dt_text_encoder_encode(te, cid, NULL, B, N, &a, &o, &e), DT_EINVAL);
    assert_non_null(strstr(e.msg, "id 1514"));
    dt_text_encoder_free(te);
    dt_arena_free(&a);
    free(cid); free(pooled); free(hid); free(y1); free(y2);
    dt_st_close(st);
    dt_backend_destroy(be);
}

/* config.json checks, before any weight is read */
static void test_encoder_config(void **state)
{
    (void)state;
    char dir[128], p[256];
    tu_tmpdir(dir, sizeof dir);
    static const struct { const char *json, *needle; } c[] = {
        {"{\"model_type\": \"clip_text_model\", \"hidden_act\": \"relu\"}", "hidden_act"},
        {"{\"model_type\": \"clip_text_model\", \"hidden_size\": 30, \"num_attention_heads\": 4}", "multiple"},
        {"{\"model_type\": \"clip_text_model\", \"num_hidden_layers\": 100000}", "num_hidden_layers"},
        {"{\"model_type\": \"clip_text_model\", \"vocab_size\": -3}", "vocab_size"},
        {"{\"architectures\": [\"CLIPTextModelWithProjection\"], \"projection_dim\": 0}", "projection_dim"},
    };
    snprintf(p, sizeof p, "%s/config.json", dir);
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        tu_write_file(p, c[i].json, strlen(c[i].json));
        dt_text_encoder_info info;
        dt_err e = {0};
        assert_int_not_equal(dt_text_encoder_probe(dir, &info, &e), DT_OK);
        if (!strstr(e.msg, c[i].needle)) fail_msg("\"%s\" does not mention %s", e.msg, c[i].needle);
    }
    const char *ok = "{\"model_type\": \"clip_text_model\", \"hidden_size\": 32, \"num_attention_heads\": 4, \"vocab_size\": 10}";
    tu_write_file(p, ok, strlen(ok));
    dt_backend *be = tu_backend(DT_F32);
    clip_text_model *m = NULL;
    dt_err e = {0};
    assert_int_not_equal(clip_text_load(be, dir, &m, &e), DT_OK); /* no weights: names the file */
    assert_non_null(strstr(e.msg, "model.safetensors"));
    dt_backend_destroy(be);
    tu_rmtree(dir);
}

static void expect_cli_fail(const char *dir, const char *cmd, const char *needle)
{
    char out[4096];
    int rc = tu_run(dir, cmd, 0, out, sizeof out);
    if (rc == 0 || !strstr(out, needle)) fail_msg("%s: exit %d, stderr \"%s\" (expected \"%s\")", cmd, rc, out, needle);
}

/* eval tokenizer / eval text-encoder on the CLIP fixture: the reference ids and outputs. */
static void test_cli(void **state)
{
    (void)state;
    char dir[128], out[8192], cmd[1024], path[256];
    tu_tmpdir(dir, sizeof dir);
    snprintf(cmd, sizeof cmd, "./ditrt eval tokenizer -m " FIX " --tokenizer tokenizer_2 --prompt 'hello world!'");
    assert_int_equal(tu_run(dir, cmd, 1, out, sizeof out), 0);
    dt_clip_tokenizer *t = load_tok(FIX "/tokenizer_2");
    int32_t ids[77];
    dt_err e = {0};
    assert_int_equal(dt_clip_tokenizer_encode(t, "hello world!", 77, ids, NULL, NULL, NULL, &e), DT_OK);
    char want[1024];
    size_t k = 0;
    for (int i = 0; i < 77; i++) k += (size_t)snprintf(want + k, sizeof want - k, "%d%c", (int)ids[i], i < 76 ? ' ' : '\n');
    assert_string_equal(out, want);
    dt_clip_tokenizer_free(t);
    /* the "pair" case of each encoder: [negative, positive] */
    static const char *const enc[2] = {"text_encoder", "text_encoder_2"};
    dt_safetensors *ref;
    assert_int_equal(dt_st_open(FIX "/encoder_cases.safetensors", &ref, &e), DT_OK);
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/te%d.safetensors", dir, i);
        snprintf(cmd, sizeof cmd, "./ditrt eval text-encoder -m " FIX " --text-encoder %s --prompt 'blurry, low quality!' "
                 "--negative-prompt 'A photo of an astronaut riding a horse on Mars' --threads 1 --out %s", enc[i], path);
        if (tu_run(dir, cmd, 0, out, sizeof out) != 0) fail_msg("%s: %s", cmd, out);
        dt_safetensors *st;
        assert_int_equal(dt_st_open(path, &st, &e), DT_OK);
        char n[128];
        snprintf(n, sizeof n, "%s.pair.input_ids", enc[i]);
        const dt_st_entry *a = dt_st_find(st, "input_ids"), *b = dt_st_find(ref, n);
        assert_non_null(a);
        assert_int_equal(a->nbytes, b->nbytes);
        assert_memory_equal(a->data, b->data, a->nbytes);
        static const char *const outs[3] = {"last_hidden_state", "penultimate_hidden_state", NULL};
        for (int j = 0; j < 3; j++) {
            const char *on = outs[j] ? outs[j] : i ? "text_embeds" : "pooler_output";
            const dt_st_entry *x = dt_st_find(st, on);
            if (!x) fail_msg("%s: no %s", path, on);
            snprintf(n, sizeof n, "%s.pair.%s", enc[i], on);
            size_t cnt = x->nbytes / 4;
            float *got = tu_alloc(cnt), *r = tu_st_f32(ref, n, cnt);
            dt_st_read_f32(x, got);
            assert_rel_l2_below(got, r, cnt, 1e-4);
            free(got);
            free(r);
        }
        dt_st_close(st);
    }
    dt_st_close(ref);
    snprintf(path, sizeof path, "%s/x.safetensors", dir);
    snprintf(cmd, sizeof cmd, "./ditrt eval text-encoder -m " FIX " --text-encoder unet --prompt x --out %s", path);
    expect_cli_fail(dir, cmd, "--text-encoder");
    snprintf(cmd, sizeof cmd, "./ditrt eval text-encoder -m " FIX " --max-length 100 --prompt x --out %s", path);
    expect_cli_fail(dir, cmd, "more than the 77 positions");
    snprintf(cmd, sizeof cmd, "./ditrt eval tokenizer -m " FIX " --tokenizer tokenizer_3 --prompt x");
    expect_cli_fail(dir, cmd, "tokenizer_3");
    struct stat sb;
    assert_int_not_equal(stat(path, &sb), 0); /* no partial output */
    tu_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokenizer_cases),
        cmocka_unit_test(test_tokenizer_variants),
        cmocka_unit_test(test_real_vocabulary),
        cmocka_unit_test(test_encoder_f32),
        cmocka_unit_test(test_encoder_bf16),
        cmocka_unit_test(test_pooling_rule),
        cmocka_unit_test(test_nfc),
        cmocka_unit_test(test_tokenizer_files),
        cmocka_unit_test(test_tokenizer_interface),
        cmocka_unit_test(test_encoder_interface),
        cmocka_unit_test(test_encoder_config),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
