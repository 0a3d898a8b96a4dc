/* CLIP tokenizers: input = three 4-byte little-endian lengths L1, L2, L3, then L1 bytes of
 * tokenizer_config.json (none written when L1 is 0), L2 bytes of vocab.json, L3 bytes of
 * merges.txt, and the rest: a prompt (NUL bytes end it early). A loaded tokenizer encodes
 * that prompt and a fixed one with special tokens, combining marks, Hangul and emoji in it.
 * Seeds (tests/fuzz/seeds/clip_tokenizer/): the files of tests/fixtures/clip-tiny's two
 * tokenizers packed this way with a prompt, made by tests/fuzz/seeds/pack_clip_tokenizer.sh. */
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 12) return 0;
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
    char *prompt = malloc(size - off + 1);
    if (!prompt) abort();
    memcpy(prompt, data + off, size - off);
    prompt[size - off] = 0;
    encode(t, prompt, 77);
    encode(t, "A RED circle! <|endoftext|>cafe\xCC\x81 \xE1\x84\x80\xE1\x85\xA1 it's 42 \xF0\x9F\x98\x80<|startoftext|>", 12);
    encode(t, "", 2);
    dt_clip_tokenizer_vocab_size(t);
    free(prompt);
    dt_clip_tokenizer_free(t);
    return 0;
}
