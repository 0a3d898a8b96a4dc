/* T5Tokenizer (transformers 4.44, slow, legacy) over SentencePiece: the added-token
 * splitting, truncation and padding in C; SentencePiece itself behind sp_shim.cc. */
#include "tokenizer.h"
#include "caption.h"
#include "runtime/core/json.h"
#include "sp_shim.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    char *content;
    size_t len;
    int id, lstrip, rstrip;
} added_token;

struct dt_tokenizer {
    dt_sp *sp;
    dt_pystr py;
    added_token *added;
    int nadded, cap;
    int eos, pad, vocab;
    unsigned char starts[256]; /* first bytes of the added tokens */
};

static int is_file(const char *p) { struct stat s; return stat(p, &s) == 0 && S_ISREG(s.st_mode); }

static dt_status add_token(dt_tokenizer *t, const char *file, const char *content, int id, int lstrip, int rstrip, dt_err *err)
{
    for (int i = 0; i < t->nadded; i++)
        if (!strcmp(t->added[i].content, content)) return DT_OK; /* first definition wins, as in the added-token map */
    if (!*content || id < 0 || id >= (1 << 30))
        return dt_fail(err, DT_EFORMAT, "%s: added token \"%s\" with id %d is not valid", file, content, id);
    if (t->nadded == t->cap) {
        int c = t->cap ? 2 * t->cap : 128;
        added_token *n = realloc(t->added, (size_t)c * sizeof *n);
        if (!n) return dt_fail(err, DT_ENOMEM, "out of memory");
        t->added = n;
        t->cap = c;
    }
    char *s = strdup(content);
    if (!s) return dt_fail(err, DT_ENOMEM, "out of memory");
    t->added[t->nadded++] = (added_token){s, strlen(s), id, lstrip, rstrip};
    return DT_OK;
}

/* A special-token field of tokenizer_config.json: a string or {"content": ...}. */
static dt_status token_name(const cJSON *cfg, const char *file, const char *field, const char *dflt,
                            char *out, size_t n, dt_err *err)
{
    const cJSON *v = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, field) : NULL;
    if (v && cJSON_IsObject(v)) return dt_json_str(v, file, "content", NULL, out, n, err);
    if (v && !cJSON_IsNull(v) && !cJSON_IsString(v))
        return dt_fail(err, DT_EFORMAT, "%s: field \"%s\" must be a string or an object with \"content\"", file, field);
    return cfg ? dt_json_str(cfg, file, field, dflt, out, n, err) : (snprintf(out, n, "%s", dflt), DT_OK);
}

/* tokenizer_config.json "added_tokens_decoder": {"id": {"content", "lstrip", "rstrip", ...}}. */
static dt_status load_decoder(dt_tokenizer *t, const cJSON *dec, const char *file, dt_err *err)
{
    for (const cJSON *e = dec->child; e; e = e->next) {
        char *end;
        long id = strtol(e->string, &end, 10);
        char content[256];
        int l = 0, r = 0, sw = 0;
        if (!*e->string || *end || !cJSON_IsObject(e))
            return dt_fail(err, DT_EFORMAT, "%s: added_tokens_decoder[\"%s\"] must map an integer id to an object", file, e->string);
        DT_TRY(dt_json_str(e, file, "content", NULL, content, sizeof content, err));
        DT_TRY(dt_json_bool(e, file, "lstrip", 0, &l, err));
        DT_TRY(dt_json_bool(e, file, "rstrip", 0, &r, err));
        DT_TRY(dt_json_bool(e, file, "single_word", 0, &sw, err));
        if (sw) return dt_fail(err, DT_EUNSUPPORTED, "%s: added token \"%s\" has single_word true, which is not supported", file, content);
        DT_TRY(add_token(t, file, content, (int)id, l, r, err));
    }
    return DT_OK;
}

/* Older folders: added_tokens.json {"content": id}; from_pretrained gives these no strip. */
static dt_status load_added_json(dt_tokenizer *t, const char *file, dt_err *err)
{
    cJSON *j;
    DT_TRY(dt_json_load(file, &j, err));
    dt_status s = DT_OK;
    for (const cJSON *e = j->child; e && s == DT_OK; e = e->next) {
        if (!cJSON_IsNumber(e)) s = dt_fail(err, DT_EFORMAT, "%s: \"%s\" must map to an integer id", file, e->string);
        else s = add_token(t, file, e->string, (int)e->valuedouble, 0, 0, err);
    }
    cJSON_Delete(j);
    return s;
}

static dt_status special_id(dt_tokenizer *t, const char *file, const char *name, int *id, dt_err *err)
{
    for (int i = 0; i < t->nadded; i++)
        if (!strcmp(t->added[i].content, name)) { *id = t->added[i].id; return DT_OK; }
    int v = dt_sp_piece_to_id(t->sp, name);
    if (dt_sp_is_unknown(t->sp, v) && strcmp(name, "<unk>"))
        return dt_fail(err, DT_EUNSUPPORTED, "%s: special token \"%s\" is not in the vocabulary", file, name);
    *id = v;
    return add_token(t, file, name, v, 0, 0, err);
}

/* Builds the added-token table as T5Tokenizer.from_pretrained does. */
static dt_status load_added(dt_tokenizer *t, const char *dir, dt_err *err)
{
    char cfgp[4096], addp[4096], eos[256], pad[256], unk[256];
    snprintf(cfgp, sizeof cfgp, "%s/tokenizer_config.json", dir);
    snprintf(addp, sizeof addp, "%s/added_tokens.json", dir);
    cJSON *cfg = NULL;
    if (is_file(cfgp)) DT_TRY(dt_json_load(cfgp, &cfg, err));
    int legacy = 1, extra = 100;
    dt_status s = cfg ? dt_json_bool(cfg, cfgp, "legacy", 1, &legacy, err) : DT_OK;
    if (s == DT_OK && !legacy)
        s = dt_fail(err, DT_EUNSUPPORTED, "%s: \"legacy\": false is not supported (T5Tokenizer's legacy behaviour only)", cfgp);
    if (s == DT_OK && cfg) s = dt_json_int(cfg, cfgp, "extra_ids", 1, 100, &extra, err);
    if (s == DT_OK) s = token_name(cfg, cfgp, "eos_token", "</s>", eos, sizeof eos, err);
    if (s == DT_OK) s = token_name(cfg, cfgp, "pad_token", "<pad>", pad, sizeof pad, err);
    if (s == DT_OK) s = token_name(cfg, cfgp, "unk_token", "<unk>", unk, sizeof unk, err);
    const cJSON *dec = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "added_tokens_decoder") : NULL;
    if (s == DT_OK && dec && !cJSON_IsObject(dec)) s = dt_fail(err, DT_EFORMAT, "%s: \"added_tokens_decoder\" must be an object", cfgp);
    if (s == DT_OK && dec) s = load_decoder(t, dec, cfgp, err);
    else if (s == DT_OK && is_file(addp)) s = load_added_json(t, addp, err);
    else if (s == DT_OK) {
        if (extra < 0 || extra > 100000) s = dt_fail(err, DT_EFORMAT, "%s: \"extra_ids\" out of range", cfgp);
        int base = dt_sp_piece_size(t->sp) - 1 + extra;
        for (int i = 0; i < extra && s == DT_OK; i++) {
            char name[32];
            snprintf(name, sizeof name, "<extra_id_%d>", i);
            s = add_token(t, cfgp, name, base - i, 1, 1, err);
        }
    }
    int unk_id;
    if (s == DT_OK) s = special_id(t, cfgp, eos, &t->eos, err);
    if (s == DT_OK) s = special_id(t, cfgp, pad, &t->pad, err);
    if (s == DT_OK) s = special_id(t, cfgp, unk, &unk_id, err);
    cJSON_Delete(cfg);
    return s;
}

/* The splitting below equals transformers' Trie.split only when no added token contains
 * another or begins/ends with whitespace (true of T5's); other tables are refused. */
static dt_status check_added(dt_tokenizer *t, const char *dir, dt_err *err)
{
    t->vocab = dt_sp_piece_size(t->sp);
    for (int i = 0; i < t->nadded; i++) {
        const added_token *a = &t->added[i];
        uint32_t first, last = 0;
        dt_utf8_decode(a->content, &first);
        for (size_t k = 0; k < a->len;) k += (size_t)dt_utf8_decode(a->content + k, &last);
        if (dt_pystr_isspace(&t->py, first) || dt_pystr_isspace(&t->py, last))
            return dt_fail(err, DT_EUNSUPPORTED, "%s: added token \"%s\" begins or ends with whitespace", dir, a->content);
        for (int j = 0; j < t->nadded; j++)
            if (j != i && strstr(t->added[j].content, a->content))
                return dt_fail(err, DT_EUNSUPPORTED, "%s: added token \"%s\" occurs inside \"%s\"", dir, a->content, t->added[j].content);
        int v = dt_sp_piece_to_id(t->sp, a->content);
        if (!dt_sp_is_unknown(t->sp, v) && v != a->id)
            return dt_fail(err, DT_EUNSUPPORTED, "%s: added token \"%s\" has id %d but is piece %d of spiece.model", dir, a->content, a->id, v);
        t->starts[(unsigned char)a->content[0]] = 1;
        if (a->id + 1 > t->vocab) t->vocab = a->id + 1;
    }
    return DT_OK;
}

dt_status dt_tokenizer_load(const char *dir, dt_tokenizer **out, dt_err *err)
{
    char path[4096], msg[512];
    snprintf(path, sizeof path, "%s/spiece.model", dir);
    if (!is_file(path)) return dt_fail(err, DT_EIO, "%s: missing (the SentencePiece model of the tokenizer)", path);
    dt_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return dt_fail(err, DT_ENOMEM, "out of memory");
    dt_status s = dt_pystr_open(&t->py, err);
    if (s == DT_OK && dt_sp_load(path, &t->sp, msg, sizeof msg) != 0) {
        for (char *c = msg; *c; c++) if (*c == '\n') *c = ' ';
        s = dt_fail(err, DT_EFORMAT, "%s: not a valid SentencePiece model (%s)", path, msg);
    }
    if (s == DT_OK) s = load_added(t, dir, err);
    if (s == DT_OK) s = check_added(t, dir, err);
    if (s != DT_OK) { dt_tokenizer_free(t); return s; }
    *out = t;
    return DT_OK;
}

void dt_tokenizer_free(dt_tokenizer *t)
{
    if (!t) return;
    for (int i = 0; i < t->nadded; i++) free(t->added[i].content);
    free(t->added);
    dt_sp_free(t->sp);
    dt_pystr_close(&t->py);
    free(t);
}

int dt_tokenizer_vocab_size(const dt_tokenizer *t) { return t->vocab; }
int dt_tokenizer_pad_id(const dt_tokenizer *t) { return t->pad; }
int dt_tokenizer_eos_id(const dt_tokenizer *t) { return t->eos; }

/* ---- encoding ---- */

typedef struct {
    const char *s;
    size_t len;
    int special; /* index into added, or -1 */
} chunk;

static int match_added(const dt_tokenizer *t, const char *s, size_t left)
{
    if (!t->starts[(unsigned char)*s]) return -1;
    for (int k = 0; k < t->nadded; k++)
        if (t->added[k].len <= left && !memcmp(s, t->added[k].content, t->added[k].len)) return k;
    return -1;
}

/* Splits at every added token, leftmost first (Trie.split for a table check_added accepts). */
static size_t split(const dt_tokenizer *t, const char *text, size_t len, chunk *c)
{
    size_t n = 0, start = 0;
    for (size_t i = 0; i < len;) {
        int k = match_added(t, text + i, len - i);
        if (k < 0) { i++; continue; }
        if (i > start) c[n++] = (chunk){text + start, i - start, -1};
        c[n++] = (chunk){text + i, t->added[k].len, k};
        i += t->added[k].len;
        start = i;
    }
    if (len > start) c[n++] = (chunk){text + start, len - start, -1};
    return n;
}

static void lstrip(const dt_pystr *py, chunk *c)
{
    uint32_t cp;
    int k;
    while (c->len && (k = dt_utf8_decode(c->s, &cp), dt_pystr_isspace(py, cp))) { c->s += k; c->len -= (size_t)k; }
}

static void rstrip(const dt_pystr *py, chunk *c)
{
    while (c->len) {
        size_t b = c->len - 1;
        while (b > 0 && ((unsigned char)c->s[b] & 0xC0) == 0x80) b--;
        uint32_t cp;
        dt_utf8_decode(c->s + b, &cp);
        if (!dt_pystr_isspace(py, cp)) break;
        c->len = b;
    }
}

/* PreTrainedTokenizer.tokenize: an added token with rstrip eats the whitespace after it,
 * one with lstrip the whitespace before it. */
static void strip_around_added(const dt_tokenizer *t, chunk *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (c[i].special < 0) continue;
        const added_token *a = &t->added[c[i].special];
        if (a->rstrip && i + 1 < n && c[i + 1].special < 0) lstrip(&t->py, &c[i + 1]);
        if (a->lstrip && i > 0 && c[i - 1].special < 0) rstrip(&t->py, &c[i - 1]);
    }
}

static dt_status tokenize(const dt_tokenizer *t, const char *text, int32_t **ids, size_t *n, dt_err *err)
{
    size_t len = strlen(text), cap = 0, nc;
    *ids = NULL;
    *n = 0;
    DT_TRY(dt_utf8_check(text, len, "prompt", err));
    chunk *c = malloc((2 * len + 1) * sizeof *c);
    if (!c) return dt_fail(err, DT_ENOMEM, "out of memory tokenizing a %zu-byte prompt", len);
    nc = split(t, text, len, c);
    strip_around_added(t, c, nc);
    dt_status s = DT_OK;
    char msg[256];
    for (size_t i = 0; i < nc && s == DT_OK; i++) {
        if (c[i].special >= 0) {
            if (*n == cap) {
                size_t nc2 = 2 * cap + 16;
                int32_t *p = realloc(*ids, nc2 * sizeof *p);
                if (!p) { s = dt_fail(err, DT_ENOMEM, "out of memory"); break; }
                *ids = p;
                cap = nc2;
            }
            (*ids)[(*n)++] = t->added[c[i].special].id;
        } else if (c[i].len && dt_sp_encode(t->sp, c[i].s, c[i].len, ids, n, &cap, msg, sizeof msg) != 0) {
            s = dt_fail(err, DT_EBACKEND, "tokenizer: SentencePiece failed: %s", msg);
        }
    }
    free(c);
    if (s != DT_OK) { free(*ids); *ids = NULL; }
    return s;
}

dt_status dt_tokenizer_encode(const dt_tokenizer *t, const char *text, int max_length, int32_t *ids,
                              float *mask, int *n_real, int *truncated, dt_err *err)
{
    if (max_length < 2) return dt_fail(err, DT_EINVAL, "tokenizer: max_length must be at least 2, got %d", max_length);
    int32_t *tok;
    size_t n;
    DT_TRY(tokenize(t, text, &tok, &n, err));
    /* transformers: keep len+1 <= max_length (one special token to add), then append </s>
     * unless the ids already end with it; "truncated" compares the untruncated length. */
    size_t full = n + (n > 0 && tok[n - 1] == t->eos ? 0 : 1);
    if (n + 1 > (size_t)max_length) n = (size_t)max_length - 1;
    size_t m = 0;
    for (; m < n; m++) ids[m] = tok[m];
    if (!(m > 0 && ids[m - 1] == t->eos)) ids[m++] = t->eos;
    for (size_t i = 0; i < (size_t)max_length; i++) {
        if (i >= m) ids[i] = t->pad;
        if (mask) mask[i] = i < m ? 1.0f : 0.0f;
    }
    free(tok);
    if (n_real) *n_real = (int)m;
    if (truncated) *truncated = full > (size_t)max_length;
    return DT_OK;
}

dt_status dt_tokenizer_find(const char *model_dir, char *out, size_t n, dt_err *err)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/model_index.json", model_dir);
    if (is_file(p)) {
        cJSON *j;
        DT_TRY(dt_json_load(p, &j, err));
        int listed = cJSON_GetObjectItemCaseSensitive(j, "tokenizer") != NULL;
        cJSON_Delete(j);
        if (!listed) return dt_fail(err, DT_EFORMAT, "%s: no \"tokenizer\" component listed", p);
        if ((size_t)snprintf(out, n, "%s/tokenizer", model_dir) >= n) return dt_fail(err, DT_EINVAL, "%s: path too long", model_dir);
        return DT_OK;
    }
    snprintf(p, sizeof p, "%s/spiece.model", model_dir);
    if (!is_file(p)) return dt_fail(err, DT_EIO, "%s: neither model_index.json nor spiece.model found", model_dir);
    if ((size_t)snprintf(out, n, "%s", model_dir) >= n) return dt_fail(err, DT_EINVAL, "%s: path too long", model_dir);
    return DT_OK;
}
