/* A C view of the SentencePiece C++ library, just what the tokenizer needs (internal to
 * runtime/text). Functions never throw; failures come back as a message in msg. */
#ifndef DT_SP_SHIM_H
#define DT_SP_SHIM_H
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

typedef struct dt_sp dt_sp;

/* Loads a serialized SentencePiece model; returns 0, or -1 with msg filled. */
int dt_sp_load(const char *path, dt_sp **out, char *msg, size_t msg_n);
void dt_sp_free(dt_sp *sp);
int dt_sp_piece_size(const dt_sp *sp);
/* The id of a piece (the unknown id for a piece not in the vocabulary). */
int dt_sp_piece_to_id(const dt_sp *sp, const char *piece);
int dt_sp_is_unknown(const dt_sp *sp, int id);
/* Encodes text[0..len) to pieces and maps each with piece_to_id, as transformers'
 * T5Tokenizer does (sp_model.encode(text, out_type=str), then convert_tokens_to_ids).
 * Appends to *ids (grown with realloc; *n used, *cap allocated). 0, or -1 with msg. */
int dt_sp_encode(const dt_sp *sp, const char *text, size_t len, int32_t **ids, size_t *n, size_t *cap,
                 char *msg, size_t msg_n);

#ifdef __cplusplus
}
#endif
#endif
