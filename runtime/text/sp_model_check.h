/* Validation of a SentencePiece model (the serialized ModelProto) beyond what libsentencepiece
 * checks when it loads one: the normalizer's precompiled character map is a Darts-clone
 * double-array trie plus a blob of NUL-terminated replacement strings, which the library
 * indexes without bounds checks (Debian's 0.1.99 reads out of bounds on a crafted map).
 * The check bounds every index a trie walk can compute, so any walk stays inside the map. */
#ifndef DT_SP_MODEL_CHECK_H
#define DT_SP_MODEL_CHECK_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 0 when the normalizer and denormalizer charsmaps of the serialized ModelProto are safe to
 * use; -1 with a one-line reason in msg otherwise (also for a malformed protobuf). */
int dt_sp_model_check(const uint8_t *proto, size_t n, char *msg, size_t msg_n);

/* The normalizer's precompiled_charsmap in the serialized ModelProto (*len bytes), or NULL
 * when the model has none or the protobuf is malformed. */
const uint8_t *dt_sp_model_charsmap(const uint8_t *proto, size_t n, size_t *len);

/* The check of one precompiled_charsmap blob. */
int dt_sp_charsmap_check(const uint8_t *blob, size_t n, char *msg, size_t msg_n);

#ifdef __cplusplus
}
#endif
#endif
