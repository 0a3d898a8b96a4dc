/* encode_prompt as the diffusers T5 pipelines (PixArt, Latte) do it: caption
 * preprocessing, tokenization padded to max_length with its mask, the text encoder (through
 * runtime/models/text_encoder.h: its last hidden state), and the
 * rows a CFG batch needs: [negative x batch, prompt x batch] (each prompt repeated
 * num_images_per_prompt times, negatives first). */
#ifndef DT_PROMPT_H
#define DT_PROMPT_H
#include "runtime/core/arena.h"
#include "runtime/models/text_encoder.h"
#include "runtime/text/text_tokenizer.h"

typedef struct {
    const dt_text_tokenizer *tok;
    const char *text_dir;  /* text_encoder folder, loaded per call when `kept` is NULL */
    dt_backend *be;        /* backend for a per-call encoder */
    dt_text_encoder *kept; /* a loaded encoder to reuse, or NULL (load, encode, free) */
    int expect_d_model;    /* the consumer's caption_channels (0: any) */
} dt_prompt_encoder;

typedef struct {
    const char *prompt, *negative_prompt; /* negative NULL means "" */
    int cfg_on;                           /* encode the negative too */
    int clean_caption, max_length, batch;
} dt_prompt_request;

typedef struct {
    float *embeds;  /* [rows, max_length, d_model], malloc'd */
    float *masks;   /* [rows, max_length] of 1/0, malloc'd */
    int rows, d_model;
    int prompt_truncated, negative_truncated;
} dt_prompt_result;

dt_status dt_encode_prompts(const dt_prompt_encoder *e, const dt_prompt_request *r, dt_arena *arena,
                            dt_prompt_result *out, dt_err *err);

#endif
