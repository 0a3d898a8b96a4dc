#include "prompt.h"
#include "runtime/text/caption.h"
#include <stdlib.h>
#include <string.h>

/* Tokenizes `text` (after the pipeline's caption preprocessing) into one row. */
static dt_status tokenize(const dt_text_tokenizer *tok, const char *text, int clean, int max_len, int32_t *ids,
                          float *mask, int *truncated, dt_err *err)
{
    char *t = NULL;
    DT_TRY(dt_caption_preprocess(text, clean, &t, err));
    dt_status s = dt_text_tokenizer_encode(tok, t, max_len, ids, mask, NULL, truncated, err);
    free(t);
    return s;
}

/* Repeats each of `rows` rows `batch` times: [r0 x batch, r1 x batch, ...]. */
static dt_status repeat_rows(const float *src, int rows, int batch, size_t row_len, float **out, dt_err *err)
{
    float *d = malloc((size_t)rows * batch * row_len * sizeof(float));
    if (!d) return dt_fail(err, DT_ENOMEM, "out of memory");
    for (int i = 0; i < rows * batch; i++) memcpy(d + (size_t)i * row_len, src + (size_t)(i / batch) * row_len, row_len * sizeof(float));
    *out = d;
    return DT_OK;
}

/* The encoders' work: ids/mask [n, rows, N], encoder k's tokens at k (the negative row first with CFG). */
typedef struct {
    const dt_prompt_encoder *e;
    const dt_prompt_request *r;
    int rows, N;
    const int32_t *ids;
    const float *mask;
} encode_job;

/* Runs `te` on rows [r0, r0 + nr) for layer `ly`, writing D-wide rows into emb (row stride
 * Dtot, channel offset off) and the pooled output (when pooled) at pooled rows r0... */
static dt_status run_rows(const encode_job *j, dt_text_encoder *te, int k, int r0, int nr, dt_prompt_layer ly, float *tmp,
                          float *pooled, dt_arena *arena, dt_err *err)
{
    dt_text_encoder_outputs o = {0};
    if (ly.from_end) {
        o.hidden = tmp;
        o.hidden_from_end = ly.from_end;
        o.hidden_final_norm = ly.final_norm;
    } else {
        o.last_hidden_state = tmp;
    }
    o.pooled = pooled;
    dt_arena_reset(arena);
    size_t at = ((size_t)k * j->rows + r0) * j->N;
    return dt_text_encoder_encode(te, j->ids + at, j->e->no_mask ? NULL : j->mask + at,
                                  nr, j->N, arena, &o, err);
}

/* Encoder k's embeddings into emb[:, :, off:off+D] (and the pooled rows when want_pooled):
 * the rows in one call when the prompt and negative take the same layer, else one call each. */
static dt_status encode_with(const encode_job *j, dt_text_encoder *te, int k, int off, int Dtot, float *emb, float *pooled,
                             dt_arena *arena, dt_err *err)
{
    const dt_prompt_encoder *e = j->e;
    int D = dt_text_encoder_get_info(te)->hidden_size, N = j->N;
    float *tmp = malloc((size_t)j->rows * N * D * sizeof *tmp);
    if (!tmp) return dt_fail(err, DT_ENOMEM, "out of memory");
    dt_status s;
    int neg = j->rows == 2;
    if (!neg || !memcmp(&e->prompt_layer, &e->negative_layer, sizeof e->prompt_layer)) {
        s = run_rows(j, te, k, 0, j->rows, e->prompt_layer, tmp, pooled, arena, err);
    } else {
        s = run_rows(j, te, k, 0, 1, e->negative_layer, tmp, pooled, arena, err);
        if (s == DT_OK) s = run_rows(j, te, k, 1, 1, e->prompt_layer, tmp + (size_t)N * D, pooled ? pooled + e->pooled_size : NULL, arena, err);
    }
    for (size_t i = 0; s == DT_OK && i < (size_t)j->rows * N; i++) memcpy(emb + i * Dtot + off, tmp + i * D, (size_t)D * sizeof *tmp);
    free(tmp);
    return s;
}

/* Width checks: the concatenated hidden sizes are the consumer's caption_channels; the last
 * encoder's pooled output has the width the denoiser takes. */
static dt_status check_widths(const dt_prompt_encoder *e, dt_text_encoder *const *te, int *Dtot, dt_err *err)
{
    *Dtot = 0;
    for (int k = 0; k < e->n; k++) *Dtot += dt_text_encoder_get_info(te[k])->hidden_size;
    if (e->expect_d_model && *Dtot != e->expect_d_model)
        return dt_fail(err, DT_EFORMAT, "%s: text encoder d_model %d%s differs from the denoiser's caption_channels %d",
                       e->text_dir[0], *Dtot, e->n > 1 ? " (the encoders' hidden sizes summed)" : "", e->expect_d_model);
    const dt_text_encoder_info *last = dt_text_encoder_get_info(te[e->n - 1]);
    if (e->pooled_size && last->pooled_size != e->pooled_size)
        return dt_fail(err, DT_EFORMAT, "%s: pooled output width %d differs from the denoiser's text_embeds width %d",
                       e->text_dir[e->n - 1], last->pooled_size, e->pooled_size);
    return DT_OK;
}

static dt_status encode_all(const encode_job *j, float **emb, float **pooled, int *D, dt_arena *arena, dt_err *err)
{
    const dt_prompt_encoder *e = j->e;
    dt_text_encoder *te[DT_PROMPT_MAX_ENCODERS] = {0};
    dt_status s = DT_OK;
    for (int k = 0; k < e->n && s == DT_OK; k++) {
        te[k] = e->kept[k];
        if (!te[k]) s = dt_text_encoder_load(e->be, e->text_dir[k], e->weights, &te[k], err);
    }
    if (s == DT_OK) s = check_widths(e, te, D, err);
    if (s == DT_OK && !(*emb = malloc((size_t)j->rows * j->N * *D * sizeof(float)))) s = dt_fail(err, DT_ENOMEM, "out of memory");
    if (s == DT_OK && e->pooled_size && !(*pooled = calloc((size_t)j->rows * e->pooled_size, sizeof(float))))
        s = dt_fail(err, DT_ENOMEM, "out of memory");
    for (int k = 0, off = 0; k < e->n && s == DT_OK; k++) {
        s = encode_with(j, te[k], k, off, *D, *emb, k == e->n - 1 ? *pooled : NULL, arena, err);
        off += dt_text_encoder_get_info(te[k])->hidden_size;
    }
    for (int k = 0; k < e->n; k++)
        if (te[k] != e->kept[k]) dt_text_encoder_free(te[k]); /* the encoders are freed before sampling */
    if (s == DT_OK && e->zero_negative && j->rows == 2) { /* row 0 is the negative */
        memset(*emb, 0, (size_t)j->N * *D * sizeof(float));
        if (*pooled) memset(*pooled, 0, (size_t)e->pooled_size * sizeof(float));
    }
    return s;
}

dt_status dt_encode_prompts(const dt_prompt_encoder *e, const dt_prompt_request *r, dt_arena *arena,
                            dt_prompt_result *out, dt_err *err)
{
    *out = (dt_prompt_result){0};
    int rows = r->cfg_on ? 2 : 1, N = r->max_length, D = 0;
    if (e->n < 1 || e->n > DT_PROMPT_MAX_ENCODERS) return dt_fail(err, DT_EINVAL, "text encoders: %d, must be 1..%d", e->n, DT_PROMPT_MAX_ENCODERS);
    int32_t *ids = malloc((size_t)e->n * rows * N * sizeof *ids);
    float *mask = malloc((size_t)e->n * rows * N * sizeof *mask), *emb = NULL, *pooled = NULL;
    dt_status s = ids && mask ? DT_OK : dt_fail(err, DT_ENOMEM, "out of memory");
    for (int k = 0; k < e->n && s == DT_OK; k++) { /* each encoder has its own tokenizer */
        int32_t *ik = ids + (size_t)k * rows * N;
        float *mk = mask + (size_t)k * rows * N;
        int row = 0, *nt = k ? &(int){0} : &out->negative_truncated, *pt = k ? &(int){0} : &out->prompt_truncated;
        if (r->cfg_on) {
            s = tokenize(e->tok[k], r->negative_prompt ? r->negative_prompt : "", r->clean_caption, N, ik, mk, nt, err);
            row = 1;
        }
        if (s == DT_OK) s = tokenize(e->tok[k], r->prompt, r->clean_caption, N, ik + (size_t)row * N, mk + (size_t)row * N, pt, err);
    }
    if (s == DT_OK) {
        encode_job j0 = {e, r, rows, N, ids, mask};
        s = encode_all(&j0, &emb, &pooled, &D, arena, err);
    }
    if (s == DT_OK) s = repeat_rows(emb, rows, r->batch, (size_t)N * D, &out->embeds, err);
    if (s == DT_OK) s = repeat_rows(mask, rows, r->batch, (size_t)N, &out->masks, err);
    if (s == DT_OK && pooled) s = repeat_rows(pooled, rows, r->batch, (size_t)e->pooled_size, &out->pooled, err);
    free(ids);
    free(mask);
    free(emb);
    free(pooled);
    if (s != DT_OK) {
        free(out->embeds);
        free(out->masks);
        free(out->pooled);
        *out = (dt_prompt_result){0};
        return s;
    }
    out->rows = rows * r->batch;
    out->d_model = D;
    return DT_OK;
}
