/* The T5 tokenizer as transformers' T5Tokenizer (the slow, SentencePiece one the PixArt
 * pipelines load, legacy=True: its default) encodes a prompt with
 *     tokenizer(text, padding="max_length", max_length=N, truncation=True, add_special_tokens=True)
 *
 * dt_tokenizer_load(dir) reads <dir>/spiece.model and, when present, tokenizer_config.json
 * (added_tokens_decoder, eos/pad/unk tokens, extra_ids, legacy) or the older
 * added_tokens.json, the way from_pretrained builds the added-token table. Encoding splits
 * the text on added tokens (</s>, <pad>, <unk>, <extra_id_N>; their lstrip/rstrip eat
 * neighbouring whitespace), SentencePiece-encodes each other chunk, truncates to N-1 ids,
 * appends </s> unless the ids already end with it, and right-pads with the pad id.
 * Text is NUL-terminated UTF-8; invalid UTF-8 is an error, never a crash.
 * Encoding does not modify the tokenizer. */
#ifndef DT_TOKENIZER_H
#define DT_TOKENIZER_H
#include <stddef.h>
#include <stdint.h>
#include "runtime/core/error.h"

typedef struct dt_tokenizer dt_tokenizer;

dt_status dt_tokenizer_load(const char *dir, dt_tokenizer **out, dt_err *err);
void dt_tokenizer_free(dt_tokenizer *t);

/* ids[max_length] (padded with the pad id) and mask[max_length] (1.0 for real tokens
 * including </s>, 0.0 for padding). *n_real: real tokens; *truncated: 1 when the text had
 * more tokens than fit (they were dropped). max_length must be >= 2. mask, n_real and
 * truncated may be NULL. */
dt_status dt_tokenizer_encode(const dt_tokenizer *t, const char *text, int max_length, int32_t *ids,
                              float *mask, int *n_real, int *truncated, dt_err *err);

/* len(tokenizer): SentencePiece pieces plus added tokens past them. */
int dt_tokenizer_vocab_size(const dt_tokenizer *t);
int dt_tokenizer_pad_id(const dt_tokenizer *t);
int dt_tokenizer_eos_id(const dt_tokenizer *t);

/* The tokenizer folder of a model: <model_dir>/tokenizer when model_index.json lists
 * "tokenizer", else model_dir itself when it holds spiece.model. */
dt_status dt_tokenizer_find(const char *model_dir, char *out, size_t n, dt_err *err);

#endif
