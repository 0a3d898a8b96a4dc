/* `ditrt eval text-encoder`: a prompt (and an optional negative prompt) to the input_ids,
 * attention_mask and prompt_embeds that diffusers' PixArt encode_prompt produces, batch
 * [negative, positive] as the pipeline concatenates them for CFG. Writes input_ids I32
 * [B, N], attention_mask F32 [B, N] of 1/0 and prompt_embeds F32 [B, N, d_model]; N is
 * --max-length, by default the pipeline's max_sequence_length (300 for
 * PixArtSigmaPipeline in model_index.json, else 120). --no-clean skips the pipeline's
 * lower().strip() preprocessing and tokenizes the prompt as given. */
#include "cli.h"
#include "runtime/core/arena.h"
#include "runtime/core/json.h"
#include "runtime/models/modeldir.h"
#include "runtime/models/t5.h"
#include "runtime/text/caption.h"
#include "runtime/text/tokenizer.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *model, *prompt, *negative, *out, *dtype;
    int max_length, threads, no_clean;
} te_args;

static int parse(int argc, char **argv, te_args *a)
{
    *a = (te_args){.dtype = "f32"};
    for (int i = 2; i < argc; i++) {
        int miss = 0;
        const char *v;
        if ((v = cli_flag(argc, argv, &i, "-m", &miss)) || (v = cli_flag(argc, argv, &i, "--model", &miss))) a->model = v;
        else if ((v = cli_flag(argc, argv, &i, "--prompt", &miss))) a->prompt = v;
        else if ((v = cli_flag(argc, argv, &i, "--negative-prompt", &miss))) a->negative = v;
        else if ((v = cli_flag(argc, argv, &i, "--out", &miss))) a->out = v;
        else if ((v = cli_flag(argc, argv, &i, "--dtype", &miss))) a->dtype = v;
        else if ((v = cli_flag(argc, argv, &i, "--max-length", &miss))) { if (!cli_parse_int("--max-length", v, 2, 4096, &a->max_length)) return 0; }
        else if ((v = cli_flag(argc, argv, &i, "--threads", &miss))) { if (!cli_parse_int("--threads", v, 1, 1024, &a->threads)) return 0; }
        else if (!strcmp(argv[i], "--no-clean")) a->no_clean = 1;
        else if (miss) return cli_usage_error("%s: missing value", argv[i]), 0;
        else return cli_unknown_option("eval text-encoder", argv[i]), 0;
    }
    if (!a->model || !a->prompt || !a->out)
        return cli_usage_error("eval text-encoder: -m MODEL_DIR, --prompt TEXT and --out FILE are required"), 0;
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

dt_status cli_tokenize_prompt(const dt_tokenizer *tok, const char *what, const char *text, int clean, int max_length,
                              int32_t *ids, float *mask, dt_err *err)
{
    char *pre;
    int n_real, truncated;
    DT_TRY(dt_utf8_check(text, strlen(text), what, err));
    DT_TRY(dt_caption_preprocess(text, clean, &pre, err));
    dt_status s = dt_tokenizer_encode(tok, pre, max_length, ids, mask, &n_real, &truncated, err);
    free(pre);
    if (s == DT_OK && truncated)
        fprintf(stderr, "ditrt: warning: the %s was truncated to %d tokens (--max-length)\n", what, max_length);
    return s;
}

typedef struct {
    dt_tokenizer *tok;
    dt_backend *be;
    t5_model *m;
    int32_t *ids;
    float *mask, *emb;
    dt_arena arena;
} te_state;

static dt_status run(const te_args *a, te_state *s, dt_err *err)
{
    char tdir[4096], edir[4096];
    t5_config cfg;
    int N = a->max_length, B = a->negative ? 2 : 1;
    if (!N) DT_TRY(cli_text_max_length(a->model, &N, err));
    DT_TRY(dt_tokenizer_find(a->model, tdir, sizeof tdir, err));
    DT_TRY(dt_model_component_dir(a->model, "text_encoder", edir, sizeof edir, err));
    DT_TRY(t5_config_load(edir, &cfg, err));
    DT_TRY(dt_tokenizer_load(tdir, &s->tok, err));
    if (dt_tokenizer_vocab_size(s->tok) > cfg.vocab_size)
        return dt_fail(err, DT_EFORMAT, "%s: tokenizer has %d ids but %s/config.json has vocab_size %d", tdir,
                       dt_tokenizer_vocab_size(s->tok), edir, cfg.vocab_size);
    s->ids = malloc((size_t)B * N * sizeof *s->ids);
    s->mask = malloc((size_t)B * N * sizeof *s->mask);
    s->emb = malloc((size_t)B * N * cfg.d_model * sizeof *s->emb);
    if (!s->ids || !s->mask || !s->emb) return dt_fail(err, DT_ENOMEM, "out of memory");
    if (a->negative) DT_TRY(cli_tokenize_prompt(s->tok, "negative prompt", a->negative, !a->no_clean, N, s->ids, s->mask, err));
    DT_TRY(cli_tokenize_prompt(s->tok, "prompt", a->prompt, !a->no_clean, N, s->ids + (B - 1) * N, s->mask + (B - 1) * N, err));
    DT_TRY(cli_backend(a->dtype, a->threads, &s->be, err));
    DT_TRY(t5_load(s->be, edir, &s->m, err));
    DT_TRY(t5_encode(s->m, s->ids, s->mask, B, N, &s->arena, s->emb, err));
    int64_t s2[2] = {B, N}, s3[3] = {B, N, cfg.d_model};
    dt_tensor ti = dt_tensor_view(s->ids, DT_I32, 2, s2), tm = dt_tensor_view(s->mask, DT_F32, 2, s2),
              te = dt_tensor_view(s->emb, DT_F32, 3, s3);
    dt_st_item items[3] = {{"input_ids", &ti}, {"attention_mask", &tm}, {"prompt_embeds", &te}};
    return dt_st_write(a->out, items, 3, err);
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
    dt_arena_free(&s.arena);
    t5_free(s.m);
    dt_backend_destroy(s.be);
    dt_tokenizer_free(s.tok);
    return st == DT_OK ? 0 : cli_die(&err);
}
