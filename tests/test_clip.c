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


/* ---- text encoders ---- */

static float *ref_tensor(const dt_safetensors *st, const char *name, size_t n)
{
    const dt_st_entry *e = dt_st_find(st, name);
    if (!e) fail_msg("%s: not in the fixture", name);
    int64_t numel = 1;
    for (int i = 0; i < e->ndim; i++) numel *= e->shape[i];
    assert_int_equal((size_t)numel, n);
    float *p = tu_alloc(n);
    dt_st_read_f32(e, p);
    return p;
}

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
            mask = ref_tensor(st, n, (size_t)B * N);
            pre = "masked.";
            o.text_embeds = o.pooled = NULL;
        }
        dt_arena a;
        dt_arena_init(&a);
        dt_err err = {0};
        if (clip_text_encode(m, ids, mask, B, N, &a, &o, &err) != DT_OK) fail_msg("%s", err.msg);
        snprintf(n, sizeof n, "%s.%s.%slast_hidden_state", enc, cs, pre);
        float *r = ref_tensor(st, n, hs);
        double e1 = tu_rel_l2(last, r, hs);
        free(r);
        snprintf(n, sizeof n, "%s.%s.%s%s", enc, cs, pre, hname);
        r = ref_tensor(st, n, hs);
        double e2 = tu_rel_l2(hid, r, hs), e3 = 0;
        free(r);
        if (o.pooled || o.text_embeds) {
            snprintf(n, sizeof n, "%s.%s.%s", enc, cs, c->projection_dim ? "text_embeds" : "pooler_output");
            r = ref_tensor(st, n, ps);
            e3 = tu_rel_l2(pool, r, ps);
            free(r);
        }
        print_message("  %s.%s pass %d: rel-L2 last %.2e, %s %.2e, pooled %.2e\n", enc, cs, pass, e1, hname, e2, e3);
        assert_true(e1 <= tol && e2 <= tol && e3 <= tol);
        if (pass == 1 && full) { /* SD1.5's clip_skip: final_layer_norm(hidden_states[-2]) */
            o = (clip_text_outputs){.hidden = hid, .hidden_from_end = 2, .hidden_final_norm = 1};
            if (clip_text_encode(m, ids, NULL, B, N, &a, &o, &err) != DT_OK) fail_msg("%s", err.msg);
            snprintf(n, sizeof n, "%s.%s.penultimate_normed", enc, cs);
            r = ref_tensor(st, n, hs);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokenizer_cases),
        cmocka_unit_test(test_encoder_f32),
        cmocka_unit_test(test_encoder_bf16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
