/* CLIP tokenizers: input = three 4-byte little-endian lengths L1, L2, L3, then L1 bytes of
 * tokenizer_config.json (none written when L1 is 0), L2 bytes of vocab.json, L3 bytes of
 * merges.txt, and the rest: a prompt (NUL bytes end it early). A loaded tokenizer encodes
 * that prompt and a fixed one with special tokens, combining marks, Hangul and emoji in it.
 * L2 = 0 (no vocab.json) fuzzes the prompt alone, encoded by the fixture's tokenizer_2
 * (tests/fixtures/clip-tiny, loaded once; the harness runs from the repo root): far more
 * inputs a second than parsing a vocabulary per input allows.
 * Seeds (tests/fuzz/seeds/clip_tokenizer/): sd15 and sdxl2, the files of clip-tiny's two
 * tokenizers packed with a prompt by tests/fuzz/seeds/pack_clip_tokenizer.sh; prompt, a
 * prompt alone (12 zero bytes, then the text). */
#include "fuzz_util.h"
#include "runtime/text/clip_tokenizer.h"

static size_t le32(const uint8_t *p) { return (size_t)p[0] | (size_t)p[1] << 8 | (size_t)p[2] << 16 | (size_t)p[3] << 24; }

static void encode(const dt_clip_tokenizer *t, const char *text, int max_length)
{
    int32_t ids[80];
    float mask[80];
    int n_real, trunc;
    dt_err e = {0};
    if (dt_clip_tokenizer_encode(t, text, max_length, ids, mask, &n_real, &trunc, &e) != DT_OK) return;
    if (n_real < 2 || n_real > max_length) abort(); /* bos and eos always fit */
}

static dt_clip_tokenizer *fixture_tokenizer(void)
{
    static dt_clip_tokenizer *t;
    static int tried;
    if (!tried) {
        dt_err e = {0};
        tried = 1;
        if (dt_clip_tokenizer_load("tests/fixtures/clip-tiny/tokenizer_2", &t, &e) != DT_OK) t = NULL;
    }
    return t;
}

static char *prompt_of(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    if (!s) abort();
    memcpy(s, p, n);
    s[n] = 0;
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 12) return 0;
    if (le32(data + 4) == 0) {
        const dt_clip_tokenizer *t = fixture_tokenizer();
        char *prompt = prompt_of(data + 12, size - 12);
        if (t) { encode(t, prompt, 77); encode(t, prompt, 3); }
        free(prompt);
        return 0;
    }
    size_t l[3], off = 12;
    for (int i = 0; i < 3; i++) {
        l[i] = le32(data + 4 * i);
        if (l[i] > size - off) l[i] = size - off;
        off += l[i];
    }
    const uint8_t *p = data + 12;
    if (l[0]) fz_write("tokenizer_config.json", p, l[0]);
    else unlink(fz_path("tokenizer_config.json"));
    fz_write("vocab.json", p + l[0], l[1]);
    fz_write("merges.txt", p + l[0] + l[1], l[2]);
    dt_clip_tokenizer *t;
    dt_err e = {0};
    if (dt_clip_tokenizer_load(fz_folder(), &t, &e) != DT_OK) return 0;
    char *prompt = prompt_of(data + off, size - off);
    encode(t, prompt, 77);
    encode(t, "A RED circle! <|endoftext|>cafe\xCC\x81 \xE1\x84\x80\xE1\x85\xA1 it's 42 \xF0\x9F\x98\x80<|startoftext|>", 12);
    encode(t, "", 2);
    dt_clip_tokenizer_vocab_size(t);
    free(prompt);
    dt_clip_tokenizer_free(t);
    return 0;
}
