/* CLIPTokenizer (transformers 5, tokenizers-backed): loading vocab.json/merges.txt/
 * tokenizer_config.json, normalization, pre-tokenization and byte-level BPE (the merge
 * loop is tokenizers' Word::merge_all: a heap of (rank, position)). */
#include "clip_tokenizer.h"
#include "caption.h"
#include "runtime/core/json.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "clip_unicode.h"

/* ---- string -> id and pair -> merge hash tables (open addressing, power-of-two sizes) ---- */

typedef struct {
    char **key; /* NULL: empty slot */
    int32_t *val;
    size_t cap;
} str_map;

typedef struct {
    uint64_t *key; /* pair (a << 32 | b) + 1; 0: empty */
    int32_t *rank, *id;
    size_t cap;
} pair_map;

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static uint64_t hash_u64(uint64_t x)
{
    x ^= x >> 33; x *= 0xff51afd7ed558ccdull; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static size_t pow2_above(size_t n) { size_t c = 16; while (c < 2 * n) c <<= 1; return c; }

static int str_map_init(str_map *m, size_t n)
{
    m->cap = pow2_above(n);
    m->key = calloc(m->cap, sizeof *m->key);
    m->val = calloc(m->cap, sizeof *m->val);
    return m->key && m->val;
}

static size_t str_slot(const str_map *m, const char *s, size_t n)
{
    size_t i = hash_bytes(s, n) & (m->cap - 1);
    while (m->key[i] && !(strlen(m->key[i]) == n && !memcmp(m->key[i], s, n))) i = (i + 1) & (m->cap - 1);
    return i;
}

static int32_t str_get(const str_map *m, const char *s, size_t n)
{
    size_t i = str_slot(m, s, n);
    return m->key[i] ? m->val[i] : -1;
}

static int pair_map_init(pair_map *m, size_t n)
{
    m->cap = pow2_above(n);
    m->key = calloc(m->cap, sizeof *m->key);
    m->rank = calloc(m->cap, sizeof *m->rank);
    m->id = calloc(m->cap, sizeof *m->id);
    return m->key && m->rank && m->id;
}

static size_t pair_slot(const pair_map *m, int32_t a, int32_t b)
{
    uint64_t k = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
    size_t i = hash_u64(k) & (m->cap - 1);
    while (m->key[i] && m->key[i] != k) i = (i + 1) & (m->cap - 1);
    return i;
}

/* ---- the tokenizer ---- */

typedef struct {
    char *content;
    size_t len;
    int id;
    int normalized; /* matched in the normalized text (its content normalized too), else in the raw text */
    uint32_t *ncp;  /* the normalized content (normalized tokens) */
    size_t nlen;
} special_token;

struct dt_clip_tokenizer {
    str_map vocab;
    pair_map merges;
    special_token *special;
    int nspecial, any_normalized;
    int32_t byte_id[256], byte_eow_id[256]; /* the byte's character, and with "</w>" (-1: absent) */
    int bos, eos, pad, unk, vocab_size, max_length;
    int next_new; /* the id the next added token not in vocab.json gets */
};

static int is_file(const char *p) { struct stat s; return stat(p, &s) == 0 && S_ISREG(s.st_mode); }
static size_t normalize(const uint32_t *cp, size_t n, uint32_t *out, uint32_t *tmp);

/* The normalized content of the tokens matched after normalization (tokenizers matches the
 * content run through the normalizer). */
static dt_status normalize_specials(dt_clip_tokenizer *t, dt_err *err)
{
    for (int i = 0; i < t->nspecial; i++) {
        special_token *s = &t->special[i];
        if (!s->normalized) continue;
        uint32_t *cp = malloc((s->len + 1) * sizeof *cp), *tmp = malloc((8 * s->len + 8) * sizeof *tmp);
        s->ncp = malloc((8 * s->len + 8) * sizeof *s->ncp);
        if (!cp || !tmp || !s->ncp) { free(cp); free(tmp); return dt_fail(err, DT_ENOMEM, "out of memory"); }
        size_t n = 0;
        for (size_t k = 0; k < s->len;) k += (size_t)dt_utf8_decode(s->content + k, &cp[n++]);
        s->nlen = normalize(cp, n, s->ncp, tmp);
        free(cp);
        free(tmp);
        if (!s->nlen) s->normalized = 0; /* normalizes to nothing: never matches */
    }
    return DT_OK;
}

/* GPT-2's bytes_to_unicode: printable bytes map to themselves, the others to 256 + k. */
static uint32_t byte_char(int b)
{
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) return (uint32_t)b;
    int k = 0;
    for (int c = 0; c < b; c++) k += !((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF));
    return 256u + (uint32_t)k;
}

static dt_status load_vocab(dt_clip_tokenizer *t, const char *dir, dt_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/vocab.json", dir);
    cJSON *j;
    DT_TRY(dt_json_load(path, &j, err));
    int n = cJSON_GetArraySize(j);
    dt_status s = DT_OK;
    if (n <= 0 || n > DT_CLIP_MAX_VOCAB) s = dt_fail(err, DT_EFORMAT, "%s: %d entries, expected 1..%d", path, n, DT_CLIP_MAX_VOCAB);
    else if (!str_map_init(&t->vocab, (size_t)n)) s = dt_fail(err, DT_ENOMEM, "out of memory loading %s", path);
    for (const cJSON *e = j->child; s == DT_OK && e; e = e->next) {
        int id;
        size_t len = strlen(e->string);
        if (!dt_json_is_int_in(e, 0, DT_CLIP_MAX_VOCAB - 1, &id)) {
            s = dt_fail(err, DT_EFORMAT, "%s: \"%s\" must map to an id in 0..%d", path, e->string, DT_CLIP_MAX_VOCAB - 1);
            break;
        }
        if (!len || len > DT_CLIP_MAX_TOKEN_BYTES) { s = dt_fail(err, DT_EFORMAT, "%s: a token of %zu bytes (1..%d allowed)", path, len, DT_CLIP_MAX_TOKEN_BYTES); break; }
        s = dt_utf8_check(e->string, len, path, err);
        if (s != DT_OK) break;
        size_t i = str_slot(&t->vocab, e->string, len);
        if (t->vocab.key[i]) { s = dt_fail(err, DT_EFORMAT, "%s: token \"%s\" listed twice", path, e->string); break; }
        if (!(t->vocab.key[i] = strdup(e->string))) { s = dt_fail(err, DT_ENOMEM, "out of memory loading %s", path); break; }
        t->vocab.val[i] = id;
        if (id + 1 > t->vocab_size) t->vocab_size = id + 1;
    }
    t->next_new = n; /* tokenizers: added tokens not in the model's vocabulary go after its size */
    cJSON_Delete(j);
    return s;
}

static char *read_text(const char *path, size_t *len, dt_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) { dt_fail(err, DT_EIO, "%s: %s", path, strerror(errno)); return NULL; }
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 65536 + 1 > cap) {
            if (cap > ((size_t)1 << 30)) { dt_fail(err, DT_EFORMAT, "%s: larger than 1 GiB", path); break; }
            char *b = realloc(buf, cap = 2 * cap + 65536 + 1);
            if (!b) { dt_fail(err, DT_ENOMEM, "out of memory reading %s", path); break; }
            buf = b;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) {
            int bad = ferror(f);
            fclose(f);
            if (bad) { free(buf); dt_fail(err, DT_EIO, "%s: read failed", path); return NULL; }
            buf[n] = 0;
            *len = n;
            return buf;
        }
    }
    fclose(f);
    free(buf);
    return NULL;
}

/* merges.txt as tokenizers' BPE::read_file: "#version" lines skipped, every other line
 * (\n or \r\n ended) is "a b" with both parts and a+b in the vocabulary; rank = line order
 * among merges, a later duplicate pair replacing an earlier one. */
static dt_status parse_merges(dt_clip_tokenizer *t, const char *path, char *buf, size_t len, dt_err *err)
{
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += buf[i] == '\n';
    if (!pair_map_init(&t->merges, lines)) return dt_fail(err, DT_ENOMEM, "out of memory loading %s", path);
    DT_TRY(dt_utf8_check(buf, len, path, err));
    if (memchr(buf, 0, len)) return dt_fail(err, DT_EFORMAT, "%s: contains a NUL byte", path);
    int32_t rank = 0;
    size_t lineno = 0;
    for (char *p = buf; p < buf + len;) {
        char *nl = memchr(p, '\n', (size_t)(buf + len - p)), *end = nl ? nl : buf + len;
        lineno++;
        if (end > p && end[-1] == '\r') end--;
        *end = 0;
        char *next = nl ? nl + 1 : buf + len;
        if (!strncmp(p, "#version", 8)) { p = next; continue; }
        char *sp = strchr(p, ' ');
        if (!sp || !sp[1] || sp == p || strchr(sp + 1, ' '))
            return dt_fail(err, DT_EFORMAT, "%s: line %zu is not \"a b\" (two tokens separated by one space)", path, lineno);
        *sp = 0;
        size_t la = (size_t)(sp - p), lb = strlen(sp + 1);
        if (la + lb > DT_CLIP_MAX_TOKEN_BYTES) return dt_fail(err, DT_EFORMAT, "%s: line %zu: merged token too long", path, lineno);
        char joined[2 * DT_CLIP_MAX_TOKEN_BYTES + 1];
        memcpy(joined, p, la);
        memcpy(joined + la, sp + 1, lb + 1);
        int32_t a = str_get(&t->vocab, p, la), b = str_get(&t->vocab, sp + 1, lb), c = str_get(&t->vocab, joined, la + lb);
        if (a < 0 || b < 0 || c < 0)
            return dt_fail(err, DT_EFORMAT, "%s: line %zu: token \"%s\" is not in vocab.json", path, lineno,
                           a < 0 ? p : b < 0 ? sp + 1 : joined);
        size_t i = pair_slot(&t->merges, a, b);
        t->merges.key[i] = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
        t->merges.rank[i] = rank++;
        t->merges.id[i] = c;
        p = next;
    }
    return DT_OK;
}

static dt_status load_merges(dt_clip_tokenizer *t, const char *dir, dt_err *err)
{
    char path[4096];
    size_t len;
    snprintf(path, sizeof path, "%s/merges.txt", dir);
    char *buf = read_text(path, &len, err);
    if (!buf) return DT_EIO;
    dt_status s = parse_merges(t, path, buf, len, err);
    free(buf);
    return s;
}

/* A special-token field: a string or {"content": ...} (AddedToken). */
static dt_status token_field(const cJSON *cfg, const char *file, const char *field, const char *dflt, char *out,
                             size_t n, dt_err *err)
{
    const cJSON *v = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, field) : NULL;
    if (v && cJSON_IsObject(v)) return dt_json_str(v, file, "content", NULL, out, n, err);
    if (v && !cJSON_IsNull(v) && !cJSON_IsString(v))
        return dt_fail(err, DT_EFORMAT, "%s: field \"%s\" must be a string or an object with \"content\"", file, field);
    if (!cfg || !v || cJSON_IsNull(v)) { snprintf(out, n, "%s", dflt); return DT_OK; }
    return dt_json_str(cfg, file, field, dflt, out, n, err);
}

/* Adds an added token as tokenizers does: its vocab.json id, else the next id past the
 * vocabulary (whatever id the file gave it); a token already added keeps its first entry. */
static dt_status add_special(dt_clip_tokenizer *t, const char *file, const char *content, int normalized, int *id_out,
                             dt_err *err)
{
    for (int i = 0; i < t->nspecial; i++)
        if (!strcmp(t->special[i].content, content)) { if (id_out) *id_out = t->special[i].id; return DT_OK; }
    size_t len = strlen(content);
    int32_t v = str_get(&t->vocab, content, len);
    int id = v >= 0 ? v : t->next_new;
    if (!len || len > DT_CLIP_MAX_TOKEN_BYTES || id >= DT_CLIP_MAX_VOCAB)
        return dt_fail(err, DT_EFORMAT, "%s: added token \"%s\" is not valid (empty, too long or past %d ids)", file, content,
                       DT_CLIP_MAX_VOCAB);
    if (v < 0) t->next_new++;
    DT_TRY(dt_utf8_check(content, len, file, err));
    special_token *s = realloc(t->special, (size_t)(t->nspecial + 1) * sizeof *s);
    if (!s) return dt_fail(err, DT_ENOMEM, "out of memory");
    t->special = s;
    char *c = strdup(content);
    if (!c) return dt_fail(err, DT_ENOMEM, "out of memory");
    s[t->nspecial++] = (special_token){c, len, id, normalized, NULL, 0};
    t->any_normalized |= normalized;
    if (id + 1 > t->vocab_size) t->vocab_size = id + 1;
    if (id_out) *id_out = id;
    return DT_OK;
}

typedef struct {
    long id;
    const cJSON *e;
} decoder_entry;

static int by_id(const void *a, const void *b)
{
    long x = ((const decoder_entry *)a)->id, y = ((const decoder_entry *)b)->id;
    return (x > y) - (x < y);
}

/* tokenizer_config.json "added_tokens_decoder": {"id": {"content": ...}}. transformers 5 keeps
 * an entry's "normalized"; without one, the bos/eos/unk/pad tokens are matched in the raw
 * text and the others as tokenizers' AddedToken defaults (normalized unless special).
 * "special" changes nothing else here (it matters for decoding). */
static dt_status add_decoder_entry(dt_clip_tokenizer *t, const cJSON *e, const char *file, const char *const roles[4],
                                   dt_err *err)
{
    char content[DT_CLIP_MAX_TOKEN_BYTES + 1];
    int special = 0, norm = -1, l = 0, r = 0, sw = 0, role = 0; /* AddedToken's defaults */
    DT_TRY(dt_json_str(e, file, "content", NULL, content, sizeof content, err));
    DT_TRY(dt_json_bool(e, file, "special", 0, &special, err));
    DT_TRY(dt_json_bool(e, file, "normalized", -1, &norm, err));
    DT_TRY(dt_json_bool(e, file, "lstrip", 0, &l, err));
    DT_TRY(dt_json_bool(e, file, "rstrip", 0, &r, err));
    DT_TRY(dt_json_bool(e, file, "single_word", 0, &sw, err));
    if (l || r || sw)
        return dt_fail(err, DT_EUNSUPPORTED, "%s: added token \"%s\": lstrip, rstrip and single_word are not supported", file, content);
    for (int k = 0; k < 4; k++) role |= !strcmp(content, roles[k]);
    return add_special(t, file, content, norm >= 0 ? norm : role ? 0 : !special, NULL, err);
}

/* The entries in id order, as transformers adds them. */
static dt_status load_decoder(dt_clip_tokenizer *t, const cJSON *dec, const char *file, const char *const roles[4], dt_err *err)
{
    if (!cJSON_IsObject(dec)) return dt_fail(err, DT_EFORMAT, "%s: \"added_tokens_decoder\" must be an object", file);
    int n = cJSON_GetArraySize(dec), k = 0;
    decoder_entry *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    if (!v) return dt_fail(err, DT_ENOMEM, "out of memory");
    dt_status s = DT_OK;
    for (const cJSON *e = dec->child; e && s == DT_OK; e = e->next) {
        char *end;
        long id = strtol(e->string, &end, 10);
        if (!*e->string || *end || id < 0 || id >= DT_CLIP_MAX_VOCAB || !cJSON_IsObject(e))
            s = dt_fail(err, DT_EFORMAT, "%s: added_tokens_decoder[\"%s\"] must map an id to an object", file, e->string);
        else v[k++] = (decoder_entry){id, e};
    }
    if (s == DT_OK) qsort(v, (size_t)k, sizeof *v, by_id);
    for (int i = 0; i < k && s == DT_OK; i++) s = add_decoder_entry(t, v[i].e, file, roles, err);
    free(v);
    return s;
}

/* The id of a special token: as added from added_tokens_decoder, else added now, matched in
 * the raw text (transformers 5 ignores "normalized" in the bos_token etc. objects). */
static dt_status special_id(dt_clip_tokenizer *t, const char *file, const char *name, int *id, dt_err *err)
{
    return add_special(t, file, name, 0, id, err);
}

static dt_status load_config(dt_clip_tokenizer *t, const char *dir, dt_err *err)
{
    char path[4096], bos[DT_CLIP_MAX_TOKEN_BYTES + 1], eos[sizeof bos], pad[sizeof bos], unk[sizeof bos];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    cJSON *cfg = NULL;
    if (is_file(path)) DT_TRY(dt_json_load(path, &cfg, err));
    dt_status s = token_field(cfg, path, "bos_token", "<|startoftext|>", bos, sizeof bos, err);
    if (s == DT_OK) s = token_field(cfg, path, "eos_token", "<|endoftext|>", eos, sizeof eos, err);
    if (s == DT_OK) s = token_field(cfg, path, "pad_token", "<|endoftext|>", pad, sizeof pad, err);
    if (s == DT_OK) s = token_field(cfg, path, "unk_token", "<|endoftext|>", unk, sizeof unk, err);
    const cJSON *dec = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "added_tokens_decoder") : NULL;
    const char *const roles[4] = {bos, eos, pad, unk};
    if (s == DT_OK && dec && !cJSON_IsNull(dec)) s = load_decoder(t, dec, path, roles, err);
    /* the order transformers adds them in: bos, eos, unk, pad */
    if (s == DT_OK) s = special_id(t, path, bos, &t->bos, err);
    if (s == DT_OK) s = special_id(t, path, eos, &t->eos, err);
    if (s == DT_OK) s = special_id(t, path, unk, &t->unk, err);
    if (s == DT_OK) s = special_id(t, path, pad, &t->pad, err);
    const cJSON *ml = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "model_max_length") : NULL;
    if (s == DT_OK && ml && !cJSON_IsNull(ml)) {
        if (!cJSON_IsNumber(ml) || ml->valuedouble < 2)
            s = dt_fail(err, DT_EFORMAT, "%s: \"model_max_length\" must be a number >= 2", path);
        else if (ml->valuedouble <= 65536) t->max_length = (int)ml->valuedouble; /* 1e30: unbounded */
    }
    cJSON_Delete(cfg);
    return s;
}

static void byte_table(dt_clip_tokenizer *t)
{
    for (int b = 0; b < 256; b++) {
        char s[16];
        int n = dt_utf8_encode(byte_char(b), s);
        t->byte_id[b] = str_get(&t->vocab, s, (size_t)n);
        memcpy(s + n, "</w>", 4);
        t->byte_eow_id[b] = str_get(&t->vocab, s, (size_t)n + 4);
    }
}

dt_status dt_clip_tokenizer_load(const char *dir, dt_clip_tokenizer **out, dt_err *err)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/vocab.json", dir);
    if (!is_file(p)) return dt_fail(err, DT_EIO, "%s: missing (the CLIP tokenizer's vocabulary)", p);
    snprintf(p, sizeof p, "%s/merges.txt", dir);
    if (!is_file(p)) return dt_fail(err, DT_EIO, "%s: missing (the CLIP tokenizer's BPE merges)", p);
    dt_clip_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return dt_fail(err, DT_ENOMEM, "out of memory");
    dt_status s = load_vocab(t, dir, err);
    if (s == DT_OK) s = load_merges(t, dir, err);
    if (s == DT_OK) s = load_config(t, dir, err);
    if (s == DT_OK) s = normalize_specials(t, err);
    if (s != DT_OK) { dt_clip_tokenizer_free(t); return s; }
    byte_table(t);
    *out = t;
    return DT_OK;
}

void dt_clip_tokenizer_free(dt_clip_tokenizer *t)
{
    if (!t) return;
    for (size_t i = 0; t->vocab.key && i < t->vocab.cap; i++) free(t->vocab.key[i]);
    free(t->vocab.key);
    free(t->vocab.val);
    free(t->merges.key);
    free(t->merges.rank);
    free(t->merges.id);
    for (int i = 0; i < t->nspecial; i++) { free(t->special[i].content); free(t->special[i].ncp); }
    free(t->special);
    free(t);
}

int dt_clip_tokenizer_vocab_size(const dt_clip_tokenizer *t) { return t->vocab_size; }
int dt_clip_tokenizer_pad_id(const dt_clip_tokenizer *t) { return t->pad; }
int dt_clip_tokenizer_eos_id(const dt_clip_tokenizer *t) { return t->eos; }
int dt_clip_tokenizer_bos_id(const dt_clip_tokenizer *t) { return t->bos; }
int dt_clip_tokenizer_model_max_length(const dt_clip_tokenizer *t) { return t->max_length; }

/* ---- Unicode: classes, lowercase, NFC (tables from clip_unicode.h) ---- */

static const uint32_t *range_find(const uint32_t (*tab)[3], size_t n, uint32_t c)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < tab[mid][0]) hi = mid;
        else if (c > tab[mid][1]) lo = mid + 1;
        else return tab[mid];
    }
    return NULL;
}

#define COUNT(a) (sizeof a / sizeof *a)
enum { C_OTHER = 0, C_LETTER = 1, C_NUMBER = 2, C_SPACE = 3 };

static int char_class(uint32_t c)
{
    const uint32_t *r = range_find(dt_clip_class, COUNT(dt_clip_class), c);
    return r ? (int)r[2] : C_OTHER;
}

static int ccc(uint32_t c)
{
    const uint32_t *r = range_find(dt_clip_ccc, COUNT(dt_clip_ccc), c);
    return r ? (int)r[2] : 0;
}

/* Exact-key binary search over rows whose first `k` columns are the key. */
static const uint32_t *row_find(const uint32_t *tab, size_t rows, size_t width, const uint32_t *key, int k)
{
    size_t lo = 0, hi = rows;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const uint32_t *r = tab + mid * width;
        int cmp = 0;
        for (int i = 0; i < k && !cmp; i++) cmp = key[i] < r[i] ? -1 : key[i] > r[i];
        if (!cmp) return r;
        if (cmp < 0) hi = mid;
        else lo = mid + 1;
    }
    return NULL;
}

enum { SBASE = 0xAC00, LBASE = 0x1100, VBASE = 0x1161, TBASE = 0x11A7, LCOUNT = 19, VCOUNT = 21, TCOUNT = 28,
       NCOUNT = VCOUNT * TCOUNT, SCOUNT = LCOUNT * NCOUNT };

static size_t decompose(uint32_t c, uint32_t *out)
{
    if (c >= SBASE && c < SBASE + SCOUNT) {
        uint32_t s = c - SBASE, t = s % TCOUNT;
        out[0] = LBASE + s / NCOUNT;
        out[1] = VBASE + (s % NCOUNT) / TCOUNT;
        if (t) out[2] = TBASE + t;
        return t ? 3 : 2;
    }
    const uint32_t *r = row_find(&dt_clip_decomp[0][0], COUNT(dt_clip_decomp), 5, &c, 1);
    if (!r) { out[0] = c; return 1; }
    size_t n = 0;
    while (n < 4 && r[1 + n]) { out[n] = r[1 + n]; n++; }
    return n;
}

static uint32_t compose(uint32_t a, uint32_t b)
{
    if (a >= LBASE && a < LBASE + LCOUNT && b >= VBASE && b < VBASE + VCOUNT)
        return SBASE + ((a - LBASE) * VCOUNT + (b - VBASE)) * TCOUNT;
    if (a >= SBASE && a < SBASE + SCOUNT && (a - SBASE) % TCOUNT == 0 && b > TBASE && b < TBASE + TCOUNT)
        return a + (b - TBASE);
    uint32_t key[2] = {a, b};
    const uint32_t *r = row_find(&dt_clip_compose[0][0], COUNT(dt_clip_compose), 3, key, 2);
    return r ? r[2] : 0;
}

size_t dt_clip_nfc(const uint32_t *s, size_t n, uint32_t *out, uint32_t *d)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++) m += decompose(s[i], d + m);
    /* canonical ordering: a stable sort of each run of non-starters by combining class */
    for (size_t i = 1; i < m; i++) {
        int ci = ccc(d[i]);
        for (size_t j = i; ci && j > 0 && ccc(d[j - 1]) > ci; j--) { uint32_t x = d[j]; d[j] = d[j - 1]; d[j - 1] = x; }
    }
    if (!m) return 0;
    /* canonical composition (UAX #15's sample algorithm) */
    size_t k = 1, starter = 0;
    int last = ccc(d[0]) ? 256 : 0;
    out[0] = d[0];
    for (size_t i = 1; i < m; i++) {
        int cc = ccc(d[i]);
        uint32_t c = compose(out[starter], d[i]);
        if (c && (last < cc || last == 0)) { out[starter] = c; continue; }
        if (!cc) starter = k;
        last = cc;
        out[k++] = d[i];
    }
    return k;
}

/* tokenizers' Lowercase: each code point on its own (Rust char::to_lowercase). */
static size_t lower_char(uint32_t c, uint32_t *out)
{
    const uint32_t *r = row_find(&dt_clip_lower[0][0], COUNT(dt_clip_lower), 3, &c, 1);
    if (!r) { out[0] = c; return 1; }
    out[0] = r[1];
    if (r[2]) { out[1] = r[2]; return 2; }
    return 1;
}

/* NFC, \s+ -> " ", lowercase: one non-special piece of the text into out (room 8n). */
static size_t normalize(const uint32_t *cp, size_t n, uint32_t *out, uint32_t *tmp)
{
    size_t m = dt_clip_nfc(cp, n, tmp, out), k = 0;
    for (size_t i = 0; i < m; i++) {
        if (char_class(tmp[i]) == C_SPACE) {
            while (i + 1 < m && char_class(tmp[i + 1]) == C_SPACE) i++;
            out[k++] = ' ';
        } else {
            k += lower_char(tmp[i], out + k);
        }
    }
    return k;
}

/* ---- encoding ---- */

typedef struct {
    int32_t *v;
    size_t n, cap;
} id_vec;

static int push(id_vec *v, int32_t id)
{
    if (v->n == v->cap) {
        size_t c = 2 * v->cap + 64;
        int32_t *p = realloc(v->v, c * sizeof *p);
        if (!p) return 0;
        v->v = p;
        v->cap = c;
    }
    v->v[v->n++] = id;
    return 1;
}

typedef struct {
    int32_t id;
    int prev, next, alive;
} bpe_sym;

typedef struct {
    int32_t rank, pos, id;
} bpe_merge;

static int merge_less(const bpe_merge *a, const bpe_merge *b) { return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos; }

static void heap_push(bpe_merge *h, size_t *n, bpe_merge m)
{
    size_t i = (*n)++;
    h[i] = m;
    while (i > 0 && merge_less(&h[i], &h[(i - 1) / 2])) { bpe_merge x = h[i]; h[i] = h[(i - 1) / 2]; h[(i - 1) / 2] = x; i = (i - 1) / 2; }
}

static bpe_merge heap_pop(bpe_merge *h, size_t *n)
{
    bpe_merge top = h[0];
    h[0] = h[--(*n)];
    for (size_t i = 0;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < *n && merge_less(&h[l], &h[m])) m = l;
        if (r < *n && merge_less(&h[r], &h[m])) m = r;
        if (m == i) break;
        bpe_merge x = h[i]; h[i] = h[m]; h[m] = x;
        i = m;
    }
    return top;
}

static int find_merge(const dt_clip_tokenizer *t, int32_t a, int32_t b, bpe_merge *m, int pos)
{
    size_t i = pair_slot(&t->merges, a, b);
    if (!t->merges.key[i]) return 0;
    *m = (bpe_merge){t->merges.rank[i], pos, t->merges.id[i]};
    return 1;
}

/* Byte-level BPE of one piece (bytes b[0..n)), as tokenizers' Word::merge_all. sym and heap
 * have room for n and 3n entries (n - 1 pairs first, then at most two per merge). */
static dt_status bpe_piece(const dt_clip_tokenizer *t, const unsigned char *b, size_t n, bpe_sym *sym, bpe_merge *heap,
                           id_vec *out, dt_err *err)
{
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = i + 1 == n ? t->byte_eow_id[b[i]] : t->byte_id[b[i]];
        if (id < 0) {
            int32_t u = t->unk;
            if (u < 0) return dt_fail(err, DT_EFORMAT, "tokenizer: byte 0x%02X has no token and there is no unk token", b[i]);
            id = u;
        }
        sym[i] = (bpe_sym){id, (int)i - 1, i + 1 < n ? (int)i + 1 : -1, 1};
    }
    bpe_merge m;
    for (size_t i = 0; i + 1 < n; i++)
        if (find_merge(t, sym[i].id, sym[i + 1].id, &m, (int)i)) heap_push(heap, &hn, m);
    while (hn) {
        bpe_merge top = heap_pop(heap, &hn);
        bpe_sym *s = &sym[top.pos];
        if (!s->alive || s->next < 0) continue;
        bpe_sym *r = &sym[s->next];
        if (!find_merge(t, s->id, r->id, &m, top.pos) || m.id != top.id) continue; /* stale entry */
        s->id = top.id;
        r->alive = 0;
        s->next = r->next;
        if (r->next >= 0) sym[r->next].prev = top.pos;
        if (s->prev >= 0 && find_merge(t, sym[s->prev].id, s->id, &m, s->prev)) heap_push(heap, &hn, m);
        if (s->next >= 0 && find_merge(t, s->id, sym[s->next].id, &m, top.pos)) heap_push(heap, &hn, m);
    }
    for (int i = n ? 0 : -1; i >= 0; i = sym[i].next)
        if (!push(out, sym[i].id)) return dt_fail(err, DT_ENOMEM, "out of memory tokenizing");
    return DT_OK;
}

typedef struct {
    bpe_sym *sym;
    bpe_merge *heap;
    unsigned char *bytes;
    size_t cap; /* bytes of the longest piece the buffers hold */
} bpe_scratch;

static int scratch_fit(bpe_scratch *sc, size_t n)
{
    if (n <= sc->cap) return 1;
    size_t c = 2 * n + 64;
    bpe_sym *s = realloc(sc->sym, c * sizeof *s);
    if (s) sc->sym = s;
    bpe_merge *h = realloc(sc->heap, 3 * c * sizeof *h);
    if (h) sc->heap = h;
    unsigned char *b = realloc(sc->bytes, c);
    if (b) sc->bytes = b;
    if (!s || !h || !b) return 0;
    sc->cap = c;
    return 1;
}

/* UTF-8 of cp[0..n) then BPE. */
static dt_status bpe_cps(const dt_clip_tokenizer *t, const uint32_t *cp, size_t n, bpe_scratch *sc, id_vec *out, dt_err *err)
{
    size_t k = 0;
    if (!scratch_fit(sc, 4 * n)) return dt_fail(err, DT_ENOMEM, "out of memory tokenizing");
    for (size_t i = 0; i < n; i++) k += (size_t)dt_utf8_encode(cp[i], (char *)sc->bytes + k);
    return bpe_piece(t, sc->bytes, k, sc->sym, sc->heap, out, err);
}

static int starts_with(const uint32_t *cp, size_t n, const char *lit)
{
    size_t i = 0;
    for (; lit[i]; i++) if (i >= n || cp[i] != (unsigned char)lit[i]) return 0;
    return 1;
}

/* CLIP's pre-tokenization regex at cp[0..n) (not whitespace): the length of its match, and
 * *special set for the <|startoftext|> / <|endoftext|> alternatives. */
static size_t clip_match(const uint32_t *cp, size_t n, int *special)
{
    static const char *const lits[] = {"<|startoftext|>", "<|endoftext|>", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    *special = 0;
    for (size_t i = 0; i < COUNT(lits); i++)
        if (starts_with(cp, n, lits[i])) { *special = i < 2; return strlen(lits[i]); }
    int c0 = char_class(cp[0]);
    if (c0 == C_NUMBER) return 1;
    size_t k = 1;
    if (c0 == C_LETTER) { while (k < n && char_class(cp[k]) == C_LETTER) k++; return k; }
    while (k < n && char_class(cp[k]) == C_OTHER) k++;
    return k;
}

/* One normalized piece: CLIP's regex, then ByteLevel's GPT-2 regex, which leaves every CLIP
 * piece whole except <|...|> ones: "<|", the letters, "|>". */
static dt_status encode_normalized(const dt_clip_tokenizer *t, const uint32_t *cp, size_t n, bpe_scratch *sc,
                                   id_vec *out, dt_err *err)
{
    for (size_t i = 0; i < n;) {
        if (char_class(cp[i]) == C_SPACE) { i++; continue; }
        int special;
        size_t k = clip_match(cp + i, n - i, &special);
        if (special) {
            DT_TRY(bpe_cps(t, cp + i, 2, sc, out, err));
            DT_TRY(bpe_cps(t, cp + i + 2, k - 4, sc, out, err));
            DT_TRY(bpe_cps(t, cp + i + k - 2, 2, sc, out, err));
        } else {
            DT_TRY(bpe_cps(t, cp + i, k, sc, out, err));
        }
        i += k;
    }
    return DT_OK;
}

/* The raw-text special token starting at s (leftmost-longest: the longest one here), or -1. */
static int match_special(const dt_clip_tokenizer *t, const char *s, size_t left)
{
    int best = -1;
    for (int k = 0; k < t->nspecial; k++)
        if (!t->special[k].normalized && t->special[k].len <= left && !memcmp(s, t->special[k].content, t->special[k].len) &&
            (best < 0 || t->special[k].len > t->special[best].len))
            best = k;
    return best;
}

/* The same for the normalized tokens, over normalized code points. */
static int match_normalized(const dt_clip_tokenizer *t, const uint32_t *cp, size_t left)
{
    int best = -1;
    for (int k = 0; k < t->nspecial; k++) {
        const special_token *s = &t->special[k];
        if (s->normalized && s->nlen <= left && !memcmp(cp, s->ncp, s->nlen * sizeof *cp) &&
            (best < 0 || s->nlen > t->special[best].nlen))
            best = k;
    }
    return best;
}

/* A normalized piece split at the normalized tokens, the rest pre-tokenized and BPE'd. */
static dt_status encode_split_normalized(const dt_clip_tokenizer *t, const uint32_t *cp, size_t n, bpe_scratch *sc,
                                         id_vec *out, dt_err *err)
{
    size_t start = 0;
    for (size_t i = 0; t->any_normalized && i < n;) {
        int k = match_normalized(t, cp + i, n - i);
        if (k < 0) { i++; continue; }
        if (i > start) DT_TRY(encode_normalized(t, cp + start, i - start, sc, out, err));
        if (!push(out, t->special[k].id)) return dt_fail(err, DT_ENOMEM, "out of memory tokenizing");
        i += t->special[k].nlen;
        start = i;
    }
    return n > start ? encode_normalized(t, cp + start, n - start, sc, out, err) : DT_OK;
}

static dt_status encode_text_piece(const dt_clip_tokenizer *t, const char *s, size_t len, uint32_t *cp, uint32_t *a,
                                   uint32_t *b, bpe_scratch *sc, id_vec *out, dt_err *err)
{
    size_t n = 0;
    for (size_t i = 0; i < len;) i += (size_t)dt_utf8_decode(s + i, &cp[n++]);
    size_t m = normalize(cp, n, a, b);
    return encode_split_normalized(t, a, m, sc, out, err);
}

static dt_status tokenize(const dt_clip_tokenizer *t, const char *text, id_vec *out, dt_err *err)
{
    size_t len = strlen(text);
    DT_TRY(dt_utf8_check(text, len, "prompt", err));
    /* a code point decomposes to at most 4, each lowercases to at most 2; 4 bytes each */
    uint32_t *cp = malloc((len + 1) * sizeof *cp), *a = malloc((8 * len + 8) * sizeof *a), *b = malloc((8 * len + 8) * sizeof *b);
    bpe_scratch sc = {0};
    dt_status s = cp && a && b ? DT_OK : dt_fail(err, DT_ENOMEM, "out of memory tokenizing a %zu-byte prompt", len);
    size_t start = 0;
    for (size_t i = 0; s == DT_OK && i <= len;) {
        int k = i < len ? match_special(t, text + i, len - i) : -1;
        if (k < 0 && i < len) { i++; continue; }
        if (i > start) s = encode_text_piece(t, text + start, i - start, cp, a, b, &sc, out, err);
        if (s == DT_OK && k >= 0 && !push(out, t->special[k].id)) s = dt_fail(err, DT_ENOMEM, "out of memory tokenizing");
        if (k < 0) break;
        i += t->special[k].len;
        start = i;
    }
    free(cp); free(a); free(b); free(sc.sym); free(sc.heap); free(sc.bytes);
    return s;
}

dt_status dt_clip_tokenizer_encode(const dt_clip_tokenizer *t, const char *text, int max_length, int32_t *ids,
                                   float *mask, int *n_real, int *truncated, dt_err *err)
{
    if (max_length < 2) return dt_fail(err, DT_EINVAL, "tokenizer: max_length must be at least 2, got %d", max_length);
    id_vec v = {0};
    dt_status s = tokenize(t, text, &v, err);
    if (s != DT_OK) { free(v.v); return s; }
    /* truncation keeps max_length - 2 tokens (room for bos and eos), then bos ... eos, padding */
    size_t keep = v.n < (size_t)max_length - 2 ? v.n : (size_t)max_length - 2, m = 0;
    ids[m++] = t->bos;
    for (size_t i = 0; i < keep; i++) ids[m++] = v.v[i];
    ids[m++] = t->eos;
    for (size_t i = 0; i < (size_t)max_length; i++) {
        if (i >= m) ids[i] = t->pad;
        if (mask) mask[i] = i < m ? 1.0f : 0.0f;
    }
    if (n_real) *n_real = (int)m;
    if (truncated) *truncated = v.n > keep;
    free(v.v);
    return DT_OK;
}
