/* The tokenizer interface: a kind tag and the wrapped tokenizer (no behaviour of its own). */
#include "text_tokenizer.h"
#include "clip_tokenizer.h"
#include "tokenizer.h"
#include "runtime/core/json.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct dt_text_tokenizer {
    dt_tokenizer_kind kind;
    dt_tokenizer *t5;
    dt_clip_tokenizer *clip;
};

static int has_file(const char *dir, const char *name)
{
    char p[4096];
    struct stat s;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &s) == 0 && S_ISREG(s.st_mode);
}

/* Both kinds' files present: tokenizer_config.json "tokenizer_class" decides (T5 without one). */
static dt_status class_kind(const char *dir, dt_tokenizer_kind *kind, dt_err *err)
{
    char p[4096], cls[128] = "";
    *kind = DT_TOKENIZER_T5;
    if (!has_file(dir, "tokenizer_config.json")) return DT_OK;
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    cJSON *j;
    DT_TRY(dt_json_load(p, &j, err));
    dt_status s = dt_json_str(j, p, "tokenizer_class", "", cls, sizeof cls, err);
    cJSON_Delete(j);
    if (s == DT_OK && !strncmp(cls, "CLIPTokenizer", 13)) *kind = DT_TOKENIZER_CLIP;
    return s;
}

dt_status dt_text_tokenizer_load(const char *dir, dt_text_tokenizer **out, dt_err *err)
{
    int sp = has_file(dir, "spiece.model"), bpe = has_file(dir, "vocab.json") && has_file(dir, "merges.txt");
    dt_tokenizer_kind kind = bpe && !sp ? DT_TOKENIZER_CLIP : DT_TOKENIZER_T5;
    if (bpe && sp) DT_TRY(class_kind(dir, &kind, err));
    dt_text_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return dt_fail(err, DT_ENOMEM, "out of memory");
    t->kind = kind;
    /* neither kind's files: the T5 loader names the missing spiece.model, as before */
    dt_status s = kind == DT_TOKENIZER_CLIP ? dt_clip_tokenizer_load(dir, &t->clip, err) : dt_tokenizer_load(dir, &t->t5, err);
    if (s != DT_OK) { free(t); return s; }
    *out = t;
    return DT_OK;
}

void dt_text_tokenizer_free(dt_text_tokenizer *t)
{
    if (!t) return;
    dt_tokenizer_free(t->t5);
    dt_clip_tokenizer_free(t->clip);
    free(t);
}

dt_tokenizer_kind dt_text_tokenizer_kind(const dt_text_tokenizer *t) { return t->kind; }

dt_status dt_text_tokenizer_encode(const dt_text_tokenizer *t, const char *text, int max_length, int32_t *ids,
                                   float *mask, int *n_real, int *truncated, dt_err *err)
{
    return t->clip ? dt_clip_tokenizer_encode(t->clip, text, max_length, ids, mask, n_real, truncated, err)
                   : dt_tokenizer_encode(t->t5, text, max_length, ids, mask, n_real, truncated, err);
}

int dt_text_tokenizer_vocab_size(const dt_text_tokenizer *t)
{
    return t->clip ? dt_clip_tokenizer_vocab_size(t->clip) : dt_tokenizer_vocab_size(t->t5);
}

int dt_text_tokenizer_pad_id(const dt_text_tokenizer *t)
{
    return t->clip ? dt_clip_tokenizer_pad_id(t->clip) : dt_tokenizer_pad_id(t->t5);
}

int dt_text_tokenizer_eos_id(const dt_text_tokenizer *t)
{
    return t->clip ? dt_clip_tokenizer_eos_id(t->clip) : dt_tokenizer_eos_id(t->t5);
}

int dt_text_tokenizer_model_max_length(const dt_text_tokenizer *t)
{
    return t->clip ? dt_clip_tokenizer_model_max_length(t->clip) : 0;
}

dt_status dt_text_tokenizer_find(const char *model_dir, const char *component, char *out, size_t n, dt_err *err)
{
    char p[4096];
    if (!has_file(model_dir, "model_index.json") && has_file(model_dir, "vocab.json")) {
        if ((size_t)snprintf(out, n, "%s", model_dir) >= n) return dt_fail(err, DT_EINVAL, "%s: path too long", model_dir);
        return DT_OK;
    }
    if (!strcmp(component, "tokenizer")) return dt_tokenizer_find(model_dir, out, n, err);
    snprintf(p, sizeof p, "%s/model_index.json", model_dir);
    if (!has_file(model_dir, "model_index.json"))
        return dt_fail(err, DT_EIO, "%s: missing (needed to find the \"%s\" component)", p, component);
    cJSON *j;
    DT_TRY(dt_json_load(p, &j, err));
    int listed = cJSON_GetObjectItemCaseSensitive(j, component) != NULL;
    cJSON_Delete(j);
    if (!listed) return dt_fail(err, DT_EFORMAT, "%s: no \"%s\" component listed", p, component);
    if ((size_t)snprintf(out, n, "%s/%s", model_dir, component) >= n) return dt_fail(err, DT_EINVAL, "%s: path too long", model_dir);
    return DT_OK;
}
