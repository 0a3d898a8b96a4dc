/* `ditrt eval text-encoder`: a prompt (and an optional negative prompt) to what a pipeline's
 * encode_prompt gets from its tokenizer and text encoder, batch [negative, positive] as the
 * pipelines concatenate them for CFG.
 *  - T5 (PixArt): input_ids I32 [B, N], attention_mask F32 [B, N] of 1/0 and prompt_embeds
 *    F32 [B, N, d_model]; N is --max-length, by default the pipeline's max_sequence_length
 *    (300 for PixArtSigmaPipeline in model_index.json, else 120). --no-clean skips the
 *    pipeline's lower().strip() preprocessing and tokenizes the prompt as given.
 *  - CLIP (Stable Diffusion): input_ids, attention_mask, last_hidden_state,
 *    penultimate_hidden_state (hidden_states[-2]) and text_embeds (CLIPTextModelWithProjection)
 *    or pooler_output (CLIPTextModel); N defaults to the tokenizer's model_max_length (77);
 *    the prompt is tokenized as given and the encoder runs without the mask, as the SD
 *    pipelines call it.
 * --text-encoder NAME picks the component (text_encoder_2 for SDXL's second encoder) and
 * its tokenizer (tokenizer_2). */
#include "cli.h"
#include "runtime/core/arena.h"
#include "runtime/core/json.h"
#include "runtime/models/modeldir.h"
#include "runtime/models/text_encoder.h"
#include "runtime/text/caption.h"
#include "runtime/text/text_tokenizer.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *model, *prompt, *negative, *out, *dtype, *component;
    int max_length, threads, no_clean;
} te_args;

static int parse(int argc, char **argv, te_args *a)
{
    *a = (te_args){.dtype = "f32", .component = "text_encoder"};
    for (int i = 2; i < argc; i++) {
        int miss = 0;
        const char *v;
        if ((v = cli_flag(argc, argv, &i, "-m", &miss)) || (v = cli_flag(argc, argv, &i, "--model", &miss))) a->model = v;
        else if ((v = cli_flag(argc, argv, &i, "--prompt", &miss))) a->prompt = v;
        else if ((v = cli_flag(argc, argv, &i, "--negative-prompt", &miss))) a->negative = v;
        else if ((v = cli_flag(argc, argv, &i, "--out", &miss))) a->out = v;
        else if ((v = cli_flag(argc, argv, &i, "--dtype", &miss))) a->dtype = v;
        else if ((v = cli_flag(argc, argv, &i, "--text-encoder", &miss))) a->component = v;
        else if ((v = cli_flag(argc, argv, &i, "--max-length", &miss))) { if (!cli_parse_int("--max-length", v, 2, 4096, &a->max_length)) return 0; }
        else if ((v = cli_flag(argc, argv, &i, "--threads", &miss))) { if (!cli_parse_int("--threads", v, 1, 1024, &a->threads)) return 0; }
        else if (!strcmp(argv[i], "--no-clean")) a->no_clean = 1;
        else if (miss) return cli_usage_error("%s: missing value", argv[i]), 0;
        else return cli_unknown_option("eval text-encoder", argv[i]), 0;
    }
    if (!a->model || !a->prompt || !a->out)
        return cli_usage_error("eval text-encoder: -m MODEL_DIR, --prompt TEXT and --out FILE are required"), 0;
    if (strncmp(a->component, "text_encoder", 12))
        return cli_usage_error("eval text-encoder: --text-encoder must name a text_encoder component (text_encoder, text_encoder_2)"), 0;
    return 1;
}

dt_status cli_text_max_length(const char *model_dir, int *n, dt_err *err)
{
    char p[4096], cls[128];
    snprintf(p, sizeof p, "%s/model_index.json", model_dir);
    *n = 120; /* PixArt-α: encode_prompt(max_sequence_length=120) */
    FILE *f = fopen(p, "rb");
    if (!f) return DT_OK;
    fclose(f);
    cJSON *j;
    DT_TRY(dt_json_load(p, &j, err));
    dt_status s = dt_json_str(j, p, "_class_name", "", cls, sizeof cls, err);
    cJSON_Delete(j);
    if (s == DT_OK && !strcmp(cls, "PixArtSigmaPipeline")) *n = 300;
    return s;
}

dt_status cli_tokenize_prompt(const dt_text_tokenizer *tok, const char *what, const char *text, int clean, int max_length,
                              int32_t *ids, float *mask, dt_err *err)
{
    char *pre;
    int n_real, truncated;
    DT_TRY(dt_utf8_check(text, strlen(text), what, err));
    DT_TRY(dt_caption_preprocess(text, clean, &pre, err));
    dt_status s = dt_text_tokenizer_encode(tok, pre, max_length, ids, mask, &n_real, &truncated, err);
    free(pre);
    if (s == DT_OK && truncated)
        fprintf(stderr, "ditrt: warning: the %s was truncated to %d tokens (--max-length)\n", what, max_length);
    return s;
}

typedef struct {
    dt_text_tokenizer *tok;
    dt_backend *be;
    dt_text_encoder *m;
    int32_t *ids;
    float *mask, *emb, *hid, *pooled;
    dt_arena arena;
} te_state;

static dt_status write_outputs(const te_args *a, const te_state *s, const dt_text_encoder_info *info, int B, int N, dt_err *err)
{
    int64_t s2[2] = {B, N}, s3[3] = {B, N, info->hidden_size}, sp[2] = {B, info->pooled_size};
    dt_tensor ti = dt_tensor_view(s->ids, DT_I32, 2, s2), tm = dt_tensor_view(s->mask, DT_F32, 2, s2),
              te = dt_tensor_view(s->emb, DT_F32, 3, s3), th = dt_tensor_view(s->hid, DT_F32, 3, s3),
              tp = dt_tensor_view(s->pooled, DT_F32, 2, sp);
    if (info->kind == DT_TEXT_ENCODER_T5) {
        dt_st_item items[3] = {{"input_ids", &ti}, {"attention_mask", &tm}, {"prompt_embeds", &te}};
        return dt_st_write(a->out, items, 3, err);
    }
    /* a projection model's pooled output is text_embeds; without one, pooler_output */
    const char *pname = info->projection ? "text_embeds" : "pooler_output";
    dt_st_item items[5] = {{"input_ids", &ti}, {"attention_mask", &tm}, {"last_hidden_state", &te},
                           {"penultimate_hidden_state", &th}, {pname, &tp}};
    return dt_st_write(a->out, items, 5, err);
}

static dt_status run(const te_args *a, te_state *s, dt_err *err)
{
    char tdir[4096], edir[4096], tcomp[64];
    dt_text_encoder_info info;
    int N = a->max_length, B = a->negative ? 2 : 1;
    snprintf(tcomp, sizeof tcomp, "tokenizer%s", a->component + 12); /* text_encoder_2 -> tokenizer_2 */
    if (!N) DT_TRY(cli_text_max_length(a->model, &N, err));
    DT_TRY(dt_text_tokenizer_find(a->model, tcomp, tdir, sizeof tdir, err));
    DT_TRY(dt_model_component_dir(a->model, a->component, edir, sizeof edir, err));
    DT_TRY(dt_text_encoder_probe(edir, &info, err));
    DT_TRY(dt_text_tokenizer_load(tdir, &s->tok, err));
    int clip = info.kind == DT_TEXT_ENCODER_CLIP;
    if (clip != (dt_text_tokenizer_kind(s->tok) == DT_TOKENIZER_CLIP))
        return dt_fail(err, DT_EFORMAT, "%s: a %s tokenizer for the %s text encoder in %s", tdir, clip ? "T5" : "CLIP", clip ? "CLIP" : "T5", edir);
    if (dt_text_tokenizer_vocab_size(s->tok) > info.vocab_size)
        return dt_fail(err, DT_EFORMAT, "%s: tokenizer has %d ids but %s/config.json has vocab_size %d", tdir,
                       dt_text_tokenizer_vocab_size(s->tok), edir, info.vocab_size);
    if (clip && !a->max_length) N = dt_text_tokenizer_model_max_length(s->tok) ? dt_text_tokenizer_model_max_length(s->tok) : 77;
    if (clip && N > info.max_positions)
        return dt_fail(err, DT_EINVAL, "--max-length %d: more than the %d positions of %s/config.json", N, info.max_positions, edir);
    s->ids = malloc((size_t)B * N * sizeof *s->ids);
    s->mask = malloc((size_t)B * N * sizeof *s->mask);
    s->emb = malloc((size_t)B * N * info.hidden_size * sizeof *s->emb);
    s->hid = clip ? malloc((size_t)B * N * info.hidden_size * sizeof *s->hid) : NULL;
    s->pooled = clip ? malloc((size_t)B * info.pooled_size * sizeof *s->pooled) : NULL;
    if (!s->ids || !s->mask || !s->emb || (clip && (!s->hid || !s->pooled))) return dt_fail(err, DT_ENOMEM, "out of memory");
    int cleanup = !a->no_clean && !clip; /* the SD pipelines tokenize the prompt as given */
    if (a->negative) DT_TRY(cli_tokenize_prompt(s->tok, "negative prompt", a->negative, cleanup, N, s->ids, s->mask, err));
    DT_TRY(cli_tokenize_prompt(s->tok, "prompt", a->prompt, cleanup, N, s->ids + (B - 1) * N, s->mask + (B - 1) * N, err));
    DT_TRY(cli_backend(a->dtype, a->threads, &s->be, err));
    DT_TRY(dt_text_encoder_load(s->be, edir, s->be->cfg.compute, &s->m, err));
    dt_text_encoder_outputs o = {.last_hidden_state = s->emb, .hidden = s->hid, .hidden_from_end = 2, .pooled = s->pooled};
    DT_TRY(dt_text_encoder_encode(s->m, s->ids, clip ? NULL : s->mask, B, N, &s->arena, &o, err));
    return write_outputs(a, s, &info, B, N, err);
}

int cli_eval_text_encoder(int argc, char **argv)
{
    te_args a;
    if (!parse(argc, argv, &a)) return 2;
    te_state s = {0};
    dt_arena_init(&s.arena);
    dt_err err = {0};
    dt_status st = run(&a, &s, &err);
    free(s.ids);
    free(s.mask);
    free(s.emb);
    free(s.hid);
    free(s.pooled);
    dt_arena_free(&s.arena);
    dt_text_encoder_free(s.m);
    dt_backend_destroy(s.be);
    dt_text_tokenizer_free(s.tok);
    return st == DT_OK ? 0 : cli_die(&err);
}
