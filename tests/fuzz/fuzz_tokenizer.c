/* Tokenizers: input = 4-byte little-endian length L, then L bytes of tokenizer_config.json
 * (none written when L is 0), then the SentencePiece model (spiece.model). A loaded tokenizer
 * encodes a prompt with added tokens in it. tests/fuzz/seeds.sh packs the repo's tokenizers. */
#include "fuzz_util.h"
#include "runtime/text/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4) return 0;
    size_t L = (size_t)data[0] | (size_t)data[1] << 8 | (size_t)data[2] << 16 | (size_t)data[3] << 24;
    if (L > size - 4) L = size - 4;
    if (L) fz_write("tokenizer_config.json", data + 4, L);
    else unlink(fz_path("tokenizer_config.json"));
    fz_write("spiece.model", data + 4 + L, size - 4 - L);
    dt_tokenizer *t;
    dt_err e = {0};
    if (dt_tokenizer_load(fz_folder(), &t, &e) != DT_OK) return 0;
    int32_t ids[32];
    float mask[32];
    int n_real, trunc;
    dt_tokenizer_encode(t, "A red circle <extra_id_0> on the left</s> of a <pad>black background, 3.5x", 32, ids, mask, &n_real,
                        &trunc, &e);
    dt_tokenizer_vocab_size(t);
    dt_tokenizer_free(t);
    return 0;
}
