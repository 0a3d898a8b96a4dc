/* See sp_model_check.h. The protobuf wire format is read directly (the library's generated
 * ModelProto header is not installed by Debian): only the two fields that hold charsmaps. */
#include "sp_model_check.h"
#include <stdio.h>
#include <string.h>

enum { MODEL_NORMALIZER = 3, MODEL_DENORMALIZER = 5, SPEC_CHARSMAP = 2 };

typedef struct {
    const uint8_t *p, *end;
} wire;

static int read_varint(wire *w, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (w->p >= w->end) return -1;
        uint8_t b = *w->p++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return 0;
    }
    return -1;
}

/* Next field: its number, and for length-delimited fields the payload (else skipped). */
static int next_field(wire *w, int *field, const uint8_t **data, size_t *len)
{
    uint64_t key, v;
    if (read_varint(w, &key)) return -1;
    *field = (int)(key >> 3);
    *data = NULL;
    *len = 0;
    switch (key & 7) {
    case 0: return read_varint(w, &v);
    case 1:
        if (w->end - w->p < 8) return -1;
        w->p += 8;
        return 0;
    case 5:
        if (w->end - w->p < 4) return -1;
        w->p += 4;
        return 0;
    case 2:
        if (read_varint(w, &v) || v > (uint64_t)(w->end - w->p)) return -1;
        *data = w->p;
        *len = (size_t)v;
        w->p += v;
        return 0;
    default: return -1; /* groups are not used by ModelProto */
    }
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Darts-clone unit layout (darts.h): bit 31 marks a value unit (value = low 31 bits); other
 * units have a label (low 8 bits), has_leaf (bit 8) and an offset (bits 10.., shifted by 8
 * more when bit 9 is set). A walk from unit i goes to i ^ offset ^ c for a byte c, and a
 * leaf's value is read at i ^ offset. */
int dt_sp_charsmap_check(const uint8_t *blob, size_t n, char *msg, size_t msg_n)
{
    if (n == 0) return 0; /* no map: the library does not build a trie */
    if (n <= 4) goto broken;
    size_t trie_bytes = le32(blob);
    if (trie_bytes >= n - 4) goto broken;
    size_t units = trie_bytes / 4;
    const uint8_t *trie = blob + 4;
    const uint8_t *strings = trie + trie_bytes;
    size_t nstrings = n - 4 - trie_bytes;
    if (units == 0) goto broken;
    if (strings[nstrings - 1] != 0) {
        snprintf(msg, msg_n, "normalizer charsmap: replacement strings are not NUL-terminated");
        return -1;
    }
    for (size_t i = 0; i < units; i++) {
        uint32_t u = le32(trie + 4 * i);
        if (u >> 31) continue; /* a value unit: read only through its parent below */
        size_t off = (size_t)(u >> 10) << ((u & (1u << 9)) >> 6);
        size_t base = i ^ off;
        if ((base | 0xff) >= units) {
            snprintf(msg, msg_n, "normalizer charsmap: trie unit %zu points outside the trie (%zu units)", i, units);
            return -1;
        }
        if (u & (1u << 8)) {
            uint32_t value = le32(trie + 4 * base) & 0x7fffffffu;
            if (value >= nstrings) {
                snprintf(msg, msg_n, "normalizer charsmap: trie value %u is past the %zu-byte replacement strings",
                         value, nstrings);
                return -1;
            }
        }
    }
    return 0;
broken:
    snprintf(msg, msg_n, "normalizer charsmap is broken (%zu bytes)", n);
    return -1;
}

static int check_spec(const uint8_t *spec, size_t n, const char *what, char *msg, size_t msg_n)
{
    wire w = {spec, spec + n};
    while (w.p < w.end) {
        int field;
        const uint8_t *data;
        size_t len;
        if (next_field(&w, &field, &data, &len)) {
            snprintf(msg, msg_n, "%s: malformed protobuf", what);
            return -1;
        }
        if (field == SPEC_CHARSMAP && data) {
            char why[200];
            if (dt_sp_charsmap_check(data, len, why, sizeof why)) {
                snprintf(msg, msg_n, "%s: %s", what, why);
                return -1;
            }
        }
    }
    return 0;
}

int dt_sp_model_check(const uint8_t *proto, size_t n, char *msg, size_t msg_n)
{
    wire w = {proto, proto + n};
    while (w.p < w.end) {
        int field;
        const uint8_t *data;
        size_t len;
        if (next_field(&w, &field, &data, &len)) {
            snprintf(msg, msg_n, "malformed protobuf");
            return -1;
        }
        if (!data) continue;
        if (field == MODEL_NORMALIZER && check_spec(data, len, "normalizer_spec", msg, msg_n)) return -1;
        if (field == MODEL_DENORMALIZER && check_spec(data, len, "denormalizer_spec", msg, msg_n)) return -1;
    }
    return 0;
}

static const uint8_t *find_field(const uint8_t *msg, size_t n, int want, size_t *len)
{
    wire w = {msg, msg + n};
    while (w.p < w.end) {
        int field;
        const uint8_t *data;
        if (next_field(&w, &field, &data, len)) return NULL;
        if (field == want && data) return data;
    }
    return NULL;
}

const uint8_t *dt_sp_model_charsmap(const uint8_t *proto, size_t n, size_t *len)
{
    size_t spec_n;
    const uint8_t *spec = find_field(proto, n, MODEL_NORMALIZER, &spec_n);
    *len = 0;
    return spec ? find_field(spec, spec_n, SPEC_CHARSMAP, len) : NULL;
}
