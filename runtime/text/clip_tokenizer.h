/* The CLIP tokenizer as the diffusers Stable Diffusion pipelines run it: transformers 5's
 * CLIPTokenizer (tokenizers-backed, "fast"), called as
 *     tokenizer(text, padding="max_length", max_length=N, truncation=True)
 *
 * dt_clip_tokenizer_load(dir) reads <dir>/vocab.json, <dir>/merges.txt ("#version" lines
 * skipped, each other line "a b") and, when present, tokenizer_config.json (bos/eos/pad/unk
 * tokens, defaults <|startoftext|>, <|endoftext|> x3; added_tokens_decoder; model_max_length).
 * Encoding, as tokenizers does it:
 *   1. the raw text is split at the added tokens matched as written (bos, eos, pad, unk and the
 *      added_tokens_decoder entries whose "normalized" is false; leftmost-longest): SDXL's
 *      tokenizer_2 pads with "!", so every "!" of its prompts is that token (id 0);
 *   2. each other piece is normalized: NFC, every run of whitespace (Oniguruma \s) becomes one
 *      space, then each code point lowercased on its own (no final-sigma rule), and split at
 *      the added tokens matched after normalization (added_tokens_decoder "normalized": true,
 *      or absent on a non-special entry; the "normalized" of the bos_token etc. objects is
 *      ignored, as transformers 5 does). An added token's id is its vocab.json id, else the
 *      next id past the vocabulary in added_tokens_decoder id order (the file's id is not used);
 *   3. pre-tokenized by CLIP's regex (<|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|
 *      [\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+, whitespace dropped), then by ByteLevel's GPT-2 regex
 *      (which splits only the two <|...|> pieces further), each piece mapped to byte characters;
 *   4. byte-level BPE on each piece, "</w>" on its last symbol, merges by rank (ties leftmost);
 *   5. truncated to N-2 ids, wrapped in bos ... eos, right-padded with the pad id.
 * No ftfy, no whitespace-only BasicTokenizer: the slow pure-Python tokenizer of transformers 4
 * differs (see tests/fixtures/README.md). Unicode tables: runtime/text/clip_unicode.h.
 * Text is NUL-terminated UTF-8; invalid UTF-8 is an error. Encoding does not modify t. */
#ifndef DT_CLIP_TOKENIZER_H
#define DT_CLIP_TOKENIZER_H
#include <stddef.h>
#include <stdint.h>
#include "runtime/core/error.h"

typedef struct dt_clip_tokenizer dt_clip_tokenizer;

/* Limits on the files (checked before anything is sized from them). */
#define DT_CLIP_MAX_VOCAB (1 << 22)
#define DT_CLIP_MAX_TOKEN_BYTES 1024

dt_status dt_clip_tokenizer_load(const char *dir, dt_clip_tokenizer **out, dt_err *err);
void dt_clip_tokenizer_free(dt_clip_tokenizer *t);

/* ids[max_length] and mask[max_length] (1.0 for bos, the text's tokens and eos; 0.0 for the
 * padding); *n_real real tokens; *truncated 1 when tokens were dropped. max_length >= 2;
 * mask, n_real, truncated may be NULL. */
dt_status dt_clip_tokenizer_encode(const dt_clip_tokenizer *t, const char *text, int max_length, int32_t *ids,
                                   float *mask, int *n_real, int *truncated, dt_err *err);

/* len(tokenizer): the largest id + 1. */
int dt_clip_tokenizer_vocab_size(const dt_clip_tokenizer *t);
int dt_clip_tokenizer_pad_id(const dt_clip_tokenizer *t);
int dt_clip_tokenizer_eos_id(const dt_clip_tokenizer *t);
int dt_clip_tokenizer_bos_id(const dt_clip_tokenizer *t);
/* tokenizer_config.json model_max_length (77 for SD), 0 when absent or unbounded. */
int dt_clip_tokenizer_model_max_length(const dt_clip_tokenizer *t);

/* The text side of a code point, exposed for tests: NFC of s[0..n) into out (room for 4n
 * code points for the decomposition stage), returns the count. */
size_t dt_clip_nfc(const uint32_t *s, size_t n, uint32_t *out, uint32_t *tmp);

#endif
