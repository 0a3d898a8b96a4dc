/* The denoiser interface: every denoising network (PixArt, Latte; next U-Nets and STDiT) is
 * one file in runtime/models/ exporting one dt_denoiser_class, and denoiser.c's registry
 * picks it by the `_class_name` of the transformer folder's config.json. Nothing outside
 * runtime/models/ names a concrete model: pipelines, plans, the API and the CLI see only this.
 *
 * Latents are [B, C, h, w] for image models (latent_rank 4) and [B, C, F, h, w] for video
 * models (latent_rank 5). The self-attention layers an attention plan addresses are rows
 * 0..spatial_layers-1 (spatial), then spatial_layers..+temporal_layers-1 (temporal); a model
 * with temporal layers runs spatial block i, then temporal block i (dt_denoiser_row_at). */
#ifndef DT_DENOISER_H
#define DT_DENOISER_H
#include <stdint.h>
#include "runtime/core/arena.h"
#include "kernels/backend.h"
#include "weights.h"

typedef struct {
    char class_name[64];             /* config.json "_class_name" */
    int latent_rank;                 /* 4: images [B,C,h,w]; 5: videos [B,C,F,h,w] */
    int in_channels, out_channels;   /* out = in, or 2·in (learned sigma: the variance half) */
    int sample_size, patch_size;     /* native latent size; a DiT's patch (latent pixels a token); 1: no patches */
    int size_multiple;               /* latent sizes are multiples of it: a DiT's patch_size, a U-Net's
                                      * 2^downsamplers (0 from a class: patch_size, set by the registry) */
    int caption_channels;
    int max_frames;                  /* video models: video_length; 0 for images */
    int spatial_layers, temporal_layers;
    int inner;                       /* hidden width (a self-attention call is [B·N, inner]) */
    int micro_conditions;            /* the forward needs resolution and aspect_ratio */
    int64_t param_count;
    /* SDXL's added conditions (UNet2DConditionModel, addition_embed_type "text_time"): the
     * forward needs text_embeds [B, added_text_dim] and time_ids [B, added_time_ids]; 0: none. */
    int added_text_dim, added_time_ids;
    const char *latent_input;        /* the latent's name in the diffusers call: NULL "hidden_states", U-Nets "sample" */
} dt_denoiser_info;

/* One forward's inputs, named as in the diffusers call. */
typedef struct {
    const dt_tensor *hidden_states;         /* [B, in_channels, (F,) h, w] f32 */
    const dt_tensor *encoder_hidden_states; /* [B, T, caption_channels] f32 */
    const float *timestep;                  /* [B] */
    const float *encoder_attention_mask;    /* [B, T] of 1/0, or NULL (all kept) */
    const float *resolution;                /* [B, 2] (height, width), when micro_conditions */
    const float *aspect_ratio;              /* [B, 1], when micro_conditions */
    const float *text_embeds;               /* [B, added_text_dim] host, when the info's added_text_dim (else NULL) */
    const float *time_ids;                  /* [B, added_time_ids] host, likewise */
} dt_denoiser_inputs;

/* Partial forwards (attention-plan calibration): blocks before execution position `from` are
 * skipped, the residual stream entering it read from `load` (from > 0); the stream entering
 * position `save_at` is copied to `save` when save is set. Not owned. */
typedef struct { int from; const float *load; int save_at; float *save; } dt_denoiser_resume;

struct dit_attn_hook;

/* What a diffusers pipeline class (model_index.json "_class_name") does around its denoiser. */
typedef struct {
    const char *name;       /* e.g. "PixArtSigmaPipeline" ("" matches a folder without one) */
    int max_len;            /* text tokens by default (PixArt-α 120, Σ 300, Latte 120) */
    int fixed_len;          /* max_length cannot be changed (LattePipeline's encode_prompt) */
    /* LattePipeline's mask_feature: no caption mask to the denoiser; with one video per
     * prompt the embeddings are cut to the prompt's token count (the negative to the same
     * count), with several they keep max_len tokens and the prompt rows are multiplied by
     * their mask. Otherwise the mask goes to the denoiser (PixArt). */
    int mask_feature;
    int binning;            /* PixArt's aspect-ratio bins (use_resolution_binning) exist */
    int decode_reciprocal;  /* decode (1 / scaling_factor) * latents (Latte), not latents / scaling_factor */
    int decode_chunk;       /* frames per VAE call by default (0: the whole batch at once) */
    /* The reference's own sampling loop (Open-Sora's IDDPM sample, forward_with_cfg), where it
     * differs from diffusers' CFG: */
    int cfg_channels;       /* guide only latent channels [0, cfg_channels) (the rest of each row's
                             * output, later latent channels and the variance half, stays that
                             * row's own: the prompt rows' is used); 0: all latent channels */
    int learned_null;       /* the negative caption is the denoiser's learned null embedding
                             * (dt_denoiser_null_caption) with the prompt's mask, not an encoded
                             * negative prompt; captions are padded to its token count */
    int noise_rows;         /* items per batch item a stochastic step draws noise for (Open-Sora
                             * steps the prompt and the null half both: 2, the prompt rows' draws
                             * first, kept); 0 or 1: the batch's own */
    /* The CLIP pipelines (StableDiffusionPipeline, StableDiffusionXLPipeline): */
    int caption_mask_off;   /* no attention mask to the text encoders nor the denoiser: all max_len
                             * tokens, padding included, attend (as the SD pipelines call them) */
    int no_clean_caption;   /* prompts go to the tokenizer as given (clean_caption does not apply) */
    int text_encoders;      /* text_encoder, text_encoder_2, ... with tokenizer, tokenizer_2, ...: their
                             * embeddings concatenated on channels, in that order; 0 means 1 */
    int hidden_from_end;    /* embeddings = hidden_states[-k] of each encoder (SDXL 2); 0: last_hidden_state */
    int clip_skip_from_end; /* with clip_skip c > 0 the prompt's (not the negative's) embeddings are
                             * hidden_states[-(c + clip_skip_from_end)] (SD 1, SDXL 2); 0: no clip_skip */
    int clip_skip_norm;     /* ... through the encoder's final layer norm (SD) */
    int added_conditions;   /* the denoiser's added conditions (SDXL text_time): text_embeds = the last
                             * encoder's pooled output; time_ids = original size, crop top-left, target
                             * size (the request's micro-conditioning; by default the generated size,
                             * (0, 0), the generated size) */
    int zeros_for_empty_negative; /* force_zeros_for_empty_prompt's default (model_index.json's value wins):
                             * an empty negative prompt gives zero embeddings and pooled output */
    int vae_upcast;         /* the VAE runs in f32 when its config says force_upcast (SDXL) */
} dt_pipeline_class;

/* What a linear layer is to post-training quantization (ViDiT-Q, MixDQ), by its weight prefix
 * (the name a make_linear hook gets); the model's class says it, since the names are its
 * checkpoint's. TEMPORAL and TEXT_KV qualify a QUANTIZABLE layer. */
enum {
    DT_LINEAR_QUANTIZABLE = 1, /* a transformer-block linear ViDiT-Q quantizes; the rest (patch and
                                * timestep embeddings, adaLN, caption projection, final layer) stay float */
    DT_LINEAR_TEMPORAL = 2,    /* of a temporal block/attention: mixed precision's temporal sensitivity
                                * group, scored on frame-to-frame differences */
    DT_LINEAR_TEXT_KV = 4,     /* the cross-attention key|value projection of the caption tokens: MixDQ
                                * computes the first text tokens with its float weights */
    DT_LINEAR_CONV = 8,        /* a convolution built as a GEMM over im2col rows (U-Net): a make_linear
                                * hook that would build it in float may leave *lin NULL, and the model
                                * then builds the backend's convolution */
};
typedef unsigned (*dt_linear_role_fn)(const char *name);

/* What a model file exports. `model` is the file's own model type. */
typedef struct dt_denoiser_class {
    const char *class_name; /* config.json "_class_name" */
    const char *preset;     /* the architecture `ditrt bench --arch` names, e.g. "pixart-xl-2" */
    const dt_pipeline_class *pipelines; /* the pipeline classes that run it, npipelines of them */
    int npipelines;
    /* Reads and validates <dir>/config.json into info; head and tail get the lines `ditrt info`
     * prints about the architecture (before / after the parameter and file lines). */
    dt_status (*describe)(const char *dir, dt_denoiser_info *info, char *head, char *tail, size_t n, dt_err *err);
    /* Builds the model of config dir (or, dir NULL, the preset at a latent sample_size with
     * `layers` blocks, 0: all) with weights from src. */
    dt_status (*create)(dt_backend *be, const char *dir, int sample_size, int layers, dt_weight_source *src,
                        void **model, dt_err *err);
    void (*info)(const void *model, dt_denoiser_info *out);
    dt_status (*forward)(void *model, const dt_denoiser_inputs *in, dt_arena *arena, dt_tensor *out, dt_err *err);
    /* NULL for models without DiT blocks (U-Nets): attention plans do not apply to them, and the
     * denoiser's set_attn_hook/set_resume then accept only NULL (dt_denoiser_attn_plans says so). */
    void (*set_attn_hook)(void *model, struct dit_attn_hook *hook);
    void (*set_resume)(void *model, const dt_denoiser_resume *r);
    /* Activation bytes of one step with `rows` sequences (CFG included) of T caption tokens. */
    double (*step_bytes)(const void *model, int rows, int frames, int h, int w, int T);
    /* The same from the folder's config alone, no model built (a U-Net, built only whole); NULL:
     * `ditrt info` measures a one-block copy instead (DiTs). */
    dt_status (*config_step_bytes)(const char *dir, int rows, int frames, int h, int w, int T, double *bytes, dt_err *err);
    /* Matmul FLOPs of one forward (the GEMM-floor ratio of benchmarks); h, w in patches. */
    double (*matmul_flops)(const void *model, int batch, int frames, int h, int w, int T);
    void (*free)(void *model);
    /* DT_LINEAR_* flags of the linear `name`; NULL: nothing of the model can be quantized. */
    dt_linear_role_fn linear_role;
    /* The learned null caption (PixArt/Open-Sora y_embedder.y_embedding, [T, caption_channels]
     * host f32, owned by the model): its token count T, *emb set; NULL or 0: the model has none. */
    int (*null_caption)(const void *model, const float **emb);
} dt_denoiser_class;

typedef struct dt_denoiser dt_denoiser;

/* The pipeline class named by model_index.json, or NULL with a one-line error. */
const dt_pipeline_class *dt_pipeline_class_find(const char *name, dt_err *err);

/* The class of a transformer folder (its config.json's _class_name), or of a preset name;
 * NULL with a one-line error naming the class and the supported ones. */
const dt_denoiser_class *dt_denoiser_class_of_dir(const char *dir, dt_err *err);
const dt_denoiser_class *dt_denoiser_class_of_preset(const char *arch, dt_err *err);
/* The class's linear_role of layer `name` (0 when the class has none). */
unsigned dt_denoiser_class_linear_role(const dt_denoiser_class *cls, const char *name);
/* The class's describe() of a transformer folder (info from config.json, no weights read);
 * head/tail may be NULL when n is 0. */
dt_status dt_denoiser_describe(const char *dir, dt_denoiser_info *info, char *head, char *tail, size_t n, dt_err *err);

/* Loads the transformer folder dir. make_linear/user (NULL: float layers) build each linear
 * layer instead of the backend (a quantizer's hook, runtime/plans/quantize.h). */
typedef dt_status (*dt_make_linear_fn)(dt_weight_source *s, dt_backend *be, const char *name, const float *w,
                                       const float *b, int in, int out, dt_act act, int m_hint, dt_dtype dt,
                                       dt_linear **lin, dt_err *err);
dt_status dt_denoiser_load(dt_backend *be, const char *dir, dt_make_linear_fn make_linear, void *user,
                           dt_denoiser **out, dt_err *err);
/* A preset architecture with random weights (benchmarks at real model sizes). */
dt_status dt_denoiser_create_preset(dt_backend *be, const char *arch, int sample_size, int layers,
                                    dt_weight_source *src, dt_denoiser **out, dt_err *err);
void dt_denoiser_free(dt_denoiser *d);

const dt_denoiser_info *dt_denoiser_get_info(const dt_denoiser *d);
dt_status dt_denoiser_forward(dt_denoiser *d, const dt_denoiser_inputs *in, dt_arena *arena, dt_tensor *out, dt_err *err);
/* Routes every self-attention through hook (NULL: full attention); not owned. A model whose
 * class has no hook ignores it (callers check dt_denoiser_attn_plans first). */
void dt_denoiser_set_attn_hook(dt_denoiser *d, struct dit_attn_hook *hook);
void dt_denoiser_set_resume(dt_denoiser *d, const dt_denoiser_resume *r);
/* DT_OK when attention plans (DiTFastAttn) apply to a model of this info (it has DiT blocks),
 * else a one-line DT_EUNSUPPORTED error naming the class. */
dt_status dt_denoiser_attn_plans(const dt_denoiser_info *info, dt_err *err);
/* The class's null_caption: T rows of caption_channels, or 0 (*emb NULL) without one. */
int dt_denoiser_null_caption(const dt_denoiser *d, const float **emb);
double dt_denoiser_step_bytes(const dt_denoiser *d, int rows, int frames, int h, int w, int T);
double dt_denoiser_matmul_flops(const dt_denoiser *d, int batch, int frames, int h, int w, int T);

/* Plan row <-> execution position (blocks alternate spatial i, temporal i when the model has
 * temporal layers; otherwise they are the same). */
int dt_denoiser_row_at(const dt_denoiser_info *info, int exec_pos);
int dt_denoiser_exec_pos(const dt_denoiser_info *info, int row);

/* The inputs of one forward read from a safetensors file with the diffusers names:
 * hidden_states (`sample` for U-Nets: the info's latent_input), encoder_hidden_states, timestep
 * ([B] or 0-d, broadcast), and the optional encoder_attention_mask, resolution and aspect_ratio
 * (required with micro_conditions), text_embeds and time_ids (required with added_text_dim). */
typedef struct {
    float *hs, *ehs, *t, *mask, *res, *ar;
    dt_tensor ths, tehs, tt, tmask, tres, tar;
    dt_denoiser_inputs in;
    float *te, *tid;
    dt_tensor tte, ttid;
} dt_denoiser_input_file;
dt_status dt_denoiser_inputs_load(const char *file, const dt_denoiser_info *info, dt_denoiser_input_file *x,
                                  dt_err *err);
void dt_denoiser_inputs_free(dt_denoiser_input_file *x);

#endif
