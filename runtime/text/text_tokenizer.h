/* One tokenizer interface over the tokenizers a pipeline folder may hold, so that callers
 * need no per-model branches: T5's SentencePiece tokenizer (tokenizer.h: spiece.model) and
 * CLIP's byte-level BPE (clip_tokenizer.h: vocab.json + merges.txt). The kind is chosen by
 * the folder's files: spiece.model gives T5; vocab.json with merges.txt gives CLIP; when
 * both are present, tokenizer_config.json "tokenizer_class" (CLIPTokenizer* or
 * T5Tokenizer*) decides. Every call behaves exactly as the wrapped tokenizer's. */
#ifndef DT_TEXT_TOKENIZER_H
#define DT_TEXT_TOKENIZER_H
#include <stddef.h>
#include <stdint.h>
#include "runtime/core/error.h"

typedef enum { DT_TOKENIZER_T5 = 1, DT_TOKENIZER_CLIP = 2 } dt_tokenizer_kind;

typedef struct dt_text_tokenizer dt_text_tokenizer;

dt_status dt_text_tokenizer_load(const char *dir, dt_text_tokenizer **out, dt_err *err);
void dt_text_tokenizer_free(dt_text_tokenizer *t);
dt_tokenizer_kind dt_text_tokenizer_kind(const dt_text_tokenizer *t);

/* As dt_tokenizer_encode / dt_clip_tokenizer_encode: ids and mask [max_length]. */
dt_status dt_text_tokenizer_encode(const dt_text_tokenizer *t, const char *text, int max_length, int32_t *ids,
                                   float *mask, int *n_real, int *truncated, dt_err *err);
int dt_text_tokenizer_vocab_size(const dt_text_tokenizer *t);
int dt_text_tokenizer_pad_id(const dt_text_tokenizer *t);
int dt_text_tokenizer_eos_id(const dt_text_tokenizer *t);
/* tokenizer_config.json model_max_length where the pipelines use it (CLIP: 77 for SD), else 0
 * (T5: the pipeline's max_sequence_length decides). */
int dt_text_tokenizer_model_max_length(const dt_text_tokenizer *t);

/* The folder of tokenizer `component` ("tokenizer", "tokenizer_2") of a model: the one listed
 * in model_index.json, else model_dir itself when it holds a tokenizer's files. For
 * "tokenizer" this is dt_tokenizer_find's answer (messages included) unless model_dir is a
 * bare CLIP tokenizer folder. */
dt_status dt_text_tokenizer_find(const char *model_dir, const char *component, char *out, size_t n, dt_err *err);

#endif
