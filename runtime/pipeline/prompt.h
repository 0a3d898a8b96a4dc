/* encode_prompt as the diffusers pipelines do it (T5: PixArt, Latte; CLIP: Stable Diffusion and
 * SDXL, whose encoders' embeddings are concatenated, with the last one's pooled output): caption
 * preprocessing, tokenization padded to max_length with its mask, the text encoder (through
 * runtime/models/text_encoder.h: its last hidden state), and the
 * rows a CFG batch needs: [negative x batch, prompt x batch] (each prompt repeated
 * num_images_per_prompt times, negatives first). */
#ifndef DT_PROMPT_H
#define DT_PROMPT_H
#include "runtime/core/arena.h"
#include "runtime/models/text_encoder.h"
#include "runtime/text/text_tokenizer.h"

#define DT_PROMPT_MAX_ENCODERS 2

/* Which hidden state is the caption: last_hidden_state (from_end 0) or hidden_states[-from_end],
 * through the final layer norm or not (CLIP only). */
typedef struct { int from_end, final_norm; } dt_prompt_layer;

typedef struct {
    const dt_text_tokenizer *tok[DT_PROMPT_MAX_ENCODERS];
    const char *text_dir[DT_PROMPT_MAX_ENCODERS];  /* text_encoder folders, loaded per call when `kept` is NULL */
    dt_text_encoder *kept[DT_PROMPT_MAX_ENCODERS]; /* loaded encoders to reuse, or NULL (load, encode, free) */
    int n;                 /* encoders (1 with T5); their embeddings are concatenated on channels */
    dt_backend *be;        /* backend for a per-call encoder */
    dt_dtype weights;      /* its weights: be's compute dtype, or DT_I8 (dt_text_encoder_load) */
    int expect_d_model;    /* the consumer's caption_channels (0: any) */
    int no_mask;           /* the encoders get no attention mask (CLIP pipelines) */
    dt_prompt_layer prompt_layer, negative_layer;
    int pooled_size;       /* also the last encoder's pooled output, of this width (0: none) */
    int zero_negative;     /* the negative rows are zeros (force_zeros_for_empty_prompt) */
} dt_prompt_encoder;

typedef struct {
    const char *prompt, *negative_prompt; /* negative NULL means "" */
    int cfg_on;                           /* encode the negative too */
    int clean_caption, max_length, batch;
} dt_prompt_request;

typedef struct {
    float *embeds;  /* [rows, max_length, d_model], malloc'd */
    float *masks;   /* [rows, max_length] of 1/0, malloc'd */
    float *pooled;  /* [rows, pooled_size], malloc'd, or NULL */
    int rows, d_model;
    int prompt_truncated, negative_truncated;
} dt_prompt_result;

dt_status dt_encode_prompts(const dt_prompt_encoder *e, const dt_prompt_request *r, dt_arena *arena,
                            dt_prompt_result *out, dt_err *err);

#endif
