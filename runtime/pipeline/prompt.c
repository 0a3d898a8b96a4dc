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

dt_status dt_encode_prompts(const dt_prompt_encoder *e, const dt_prompt_request *r, dt_arena *arena,
                            dt_prompt_result *out, dt_err *err)
{
    *out = (dt_prompt_result){0};
    int rows = r->cfg_on ? 2 : 1, N = r->max_length;
    int32_t *ids = malloc((size_t)rows * N * sizeof *ids);
    float *mask = malloc((size_t)rows * N * sizeof *mask), *emb = NULL;
    dt_status s = ids && mask ? DT_OK : dt_fail(err, DT_ENOMEM, "out of memory");
    int row = 0;
    if (s == DT_OK && r->cfg_on) {
        s = tokenize(e->tok, r->negative_prompt ? r->negative_prompt : "", r->clean_caption, N, ids, mask,
                     &out->negative_truncated, err);
        row = 1;
    }
    if (s == DT_OK)
        s = tokenize(e->tok, r->prompt, r->clean_caption, N, ids + (size_t)row * N, mask + (size_t)row * N,
                     &out->prompt_truncated, err);
    dt_text_encoder *te = e->kept;
    if (s == DT_OK && !te) s = dt_text_encoder_load(e->be, e->text_dir, &te, err);
    int D = te ? dt_text_encoder_get_info(te)->hidden_size : 0;
    if (s == DT_OK && e->expect_d_model && D != e->expect_d_model)
        s = dt_fail(err, DT_EFORMAT, "%s: text encoder d_model %d differs from the transformer's caption_channels %d",
                    e->text_dir, D, e->expect_d_model);
    if (s == DT_OK && !(emb = malloc((size_t)rows * N * D * sizeof(float)))) s = dt_fail(err, DT_ENOMEM, "out of memory");
    if (s == DT_OK) {
        dt_arena_reset(arena);
        dt_text_encoder_outputs o = {.last_hidden_state = emb};
        s = dt_text_encoder_encode(te, ids, mask, rows, N, arena, &o, err);
    }
    if (te != e->kept) dt_text_encoder_free(te); /* the encoder is freed before sampling */
    if (s == DT_OK) s = repeat_rows(emb, rows, r->batch, (size_t)N * D, &out->embeds, err);
    if (s == DT_OK) s = repeat_rows(mask, rows, r->batch, (size_t)N, &out->masks, err);
    free(ids);
    free(mask);
    free(emb);
    if (s != DT_OK) {
        free(out->embeds);
        free(out->masks);
        *out = (dt_prompt_result){0};
        return s;
    }
    out->rows = rows * r->batch;
    out->d_model = D;
    return DT_OK;
}
