// The only C++ in ditrt: SentencePiece behind the C functions of sp_shim.h.
#include "sp_shim.h"
#include "sp_model_check.h"
#include <sentencepiece_processor.h>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

struct dt_sp {
    sentencepiece::SentencePieceProcessor proc;
};

static void put(char *msg, size_t n, const std::string &s)
{
    if (n) std::snprintf(msg, n, "%s", s.c_str());
}

extern "C" int dt_sp_load(const char *path, dt_sp **out, char *msg, size_t msg_n)
{
    *out = nullptr;
    try {
        dt_sp *sp = new dt_sp;
        auto st = sp->proc.Load(path);
        if (!st.ok()) {
            put(msg, msg_n, st.ToString());
            delete sp;
            return -1;
        }
        // The library indexes the normalizer's charsmap unchecked: refuse maps a walk can leave.
        const auto proto = sp->proc.serialized_model_proto();
        if (dt_sp_model_check(reinterpret_cast<const uint8_t *>(proto.data()), proto.size(), msg, msg_n)) {
            delete sp;
            return -1;
        }
        *out = sp;
        return 0;
    } catch (const std::exception &e) {
        put(msg, msg_n, e.what());
    } catch (...) {
        put(msg, msg_n, "unknown error");
    }
    return -1;
}

extern "C" void dt_sp_free(dt_sp *sp) { delete sp; }

extern "C" int dt_sp_piece_size(const dt_sp *sp) { return sp->proc.GetPieceSize(); }

extern "C" int dt_sp_piece_to_id(const dt_sp *sp, const char *piece)
{
    try {
        return sp->proc.PieceToId(piece);
    } catch (...) {
        return sp->proc.unk_id();
    }
}

extern "C" int dt_sp_is_unknown(const dt_sp *sp, int id) { return sp->proc.IsUnknown(id); }

extern "C" int dt_sp_encode(const dt_sp *sp, const char *text, size_t len, int32_t **ids, size_t *n, size_t *cap,
                            char *msg, size_t msg_n)
{
    try {
        std::vector<std::string> pieces;
        auto st = sp->proc.Encode(absl::string_view(text, len), &pieces);
        if (!st.ok()) {
            put(msg, msg_n, st.ToString());
            return -1;
        }
        if (*n + pieces.size() > *cap) {
            size_t c = (*n + pieces.size()) * 2 + 16;
            int32_t *p = static_cast<int32_t *>(std::realloc(*ids, c * sizeof(int32_t)));
            if (!p) {
                put(msg, msg_n, "out of memory");
                return -1;
            }
            *ids = p;
            *cap = c;
        }
        for (const auto &pc : pieces) (*ids)[(*n)++] = sp->proc.PieceToId(pc);
        return 0;
    } catch (const std::exception &e) {
        put(msg, msg_n, e.what());
    } catch (...) {
        put(msg, msg_n, "unknown error");
    }
    return -1;
}
