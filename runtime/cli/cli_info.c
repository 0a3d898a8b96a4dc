/* `ditrt info -m DIR`: what a pipeline folder holds and what running it takes. For a pipeline
 * (model_index.json) every component: text encoder, tokenizer, transformer, VAE, scheduler
 * (class, sizes, parameters, stored dtypes, files); then the memory of one generation at the
 * model's native size (sample_size x the VAE's upscale), phase by phase. A transformer folder
 * alone gets its own section and a memory line without the other components.
 * The activation figures are the ones the pipeline plans with (the denoiser's step_bytes, the
 * VAE's decode plan), computed on a one-block copy of the transformer (a U-Net's class computes
 * it from the config) and a VAE decoder with random weights: nothing but configs and
 * safetensors headers is read from the folder.
 * `ditrt info` alone: the backends built in and the devices found. */
#include "cli.h"
#include "cli_fastattn.h"
#include "runtime/core/json.h"
#include "runtime/models/modeldir.h"
#include "runtime/models/denoiser.h"
#include "runtime/models/t5.h"
#include "runtime/models/text_encoder.h"
#include "runtime/text/text_tokenizer.h"
#include "runtime/models/vae.h"
#include "runtime/text/tokenizer.h"
#include "kernels/backend.h"
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* What the memory estimate needs from the components described. */
typedef struct {
    double te_params, tr_params, vae_params; /* parameters held in each (0: absent) */
    int has_pipeline, has_vae, upscale;       /* upscale: the VAE's 2^(blocks-1) */
    int text_tokens;                          /* the pipeline's default max_sequence_length */
    char transformer_dir[4096], vae_dir[4096];
} info_ctx;

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The parameter count (with the architecture's, arch >= 0), stored dtypes and files of a
 * component's safetensors weights. */
static dt_status print_weights(const char *dir, const char *stem, int64_t arch, double *params, dt_err *err)
{
    dt_safetensors *st;
    DT_TRY(dt_st_open_dir(dir, stem, &st, err));
    int64_t counts[DT_DTYPE_COUNT] = {0}, stored = 0;
    int files = 0;
    for (int i = 0; i < dt_st_count(st); i++) {
        const dt_st_entry *e = dt_st_at(st, i);
        int64_t n = (int64_t)(e->nbytes / dt_dtype_size(e->dtype));
        counts[e->dtype] += n;
        stored += n;
        if (e->file + 1 > files) files = e->file + 1;
    }
    if (arch >= 0) printf("  parameters: %lld (file holds %lld)\n", (long long)arch, (long long)stored);
    else printf("  parameters: %lld\n", (long long)stored);
    printf("  stored dtypes:");
    for (int t = 0; t < DT_DTYPE_COUNT; t++)
        if (counts[t]) printf(" %s=%lld", dt_dtype_name((dt_dtype)t), (long long)counts[t]);
    printf("\n  weights on disk: %.1f MB in %s", dt_st_total_bytes(st) / 1e6,
           files > 1 ? "shards of " : "");
    printf(files > 1 ? "%s.safetensors.index.json (%d files)\n" : "%s.safetensors\n", stem, files);
    dt_st_close(st);
    *params = (double)stored;
    return DT_OK;
}

static dt_status info_t5_encoder(const char *model, const char *dir, info_ctx *c, dt_err *err)
{
    char tok[4096];
    t5_config t;
    DT_TRY(t5_config_load(dir, &t, err));
    printf("text_encoder: %s\n  architecture: T5EncoderModel, layers: %d, d_model: %d, heads: %d x %d, d_ff: %d, vocab: %d\n",
           dir, t.num_layers, t.d_model, t.num_heads, t.d_kv, t.d_ff, t.vocab_size);
    DT_TRY(print_weights(dir, "model", -1, &c->te_params, err));
    DT_TRY(cli_text_max_length(model, &c->text_tokens, err));
    DT_TRY(dt_tokenizer_find(model, tok, sizeof tok, err));
    printf("tokenizer: %s (SentencePiece spiece.model), %d tokens per prompt by default\n", tok, c->text_tokens);
    return DT_OK;
}

/* CLIP encoders (Stable Diffusion): text_encoder, and text_encoder_2 where model_index.json
 * lists it, each with its tokenizer. */
static dt_status info_clip_encoder(const char *model, int k, const char *dir, const dt_text_encoder_info *ti, info_ctx *c,
                                   dt_err *err)
{
    char tname[32], tok[4096];
    double params = 0;
    printf("%s: %s\n  architecture: %s, layers: %d, hidden: %d, %s: %d, vocab: %d, positions: %d\n",
           k ? "text_encoder_2" : "text_encoder", dir, ti->projection ? "CLIPTextModelWithProjection" : "CLIPTextModel",
           ti->num_hidden_states - 1, ti->hidden_size, ti->projection ? "text_embeds" : "pooler_output", ti->pooled_size,
           ti->vocab_size, ti->max_positions);
    DT_TRY(print_weights(dir, "model", -1, &params, err));
    c->te_params += params;
    snprintf(tname, sizeof tname, k ? "tokenizer_%d" : "tokenizer", k + 1);
    DT_TRY(dt_text_tokenizer_find(model, tname, tok, sizeof tok, err));
    dt_text_tokenizer *t;
    DT_TRY(dt_text_tokenizer_load(tok, &t, err));
    int n = dt_text_tokenizer_model_max_length(t);
    c->text_tokens = n ? n : 77;
    printf("%s: %s (CLIP byte-level BPE), %d tokens per prompt, pad id %d\n", tname, tok, c->text_tokens,
           dt_text_tokenizer_pad_id(t));
    dt_text_tokenizer_free(t);
    return DT_OK;
}

static dt_status info_text_encoder(const char *model, info_ctx *c, dt_err *err)
{
    char dir[4096];
    for (int k = 0; k < 2; k++) {
        const char *name = k ? "text_encoder_2" : "text_encoder";
        if (k && !dt_model_lists(model, name)) break;
        DT_TRY(dt_model_component_dir(model, name, dir, sizeof dir, err));
        dt_text_encoder_info ti;
        DT_TRY(dt_text_encoder_probe(dir, &ti, err));
        if (ti.kind == DT_TEXT_ENCODER_T5) DT_TRY(info_t5_encoder(model, dir, c, err));
        else DT_TRY(info_clip_encoder(model, k, dir, &ti, c, err));
    }
    return DT_OK;
}

/* What the pipeline class does around the denoiser, for the CLIP pipelines. */
static void info_pipeline_class(const char *name)
{
    dt_err e = {0};
    const dt_pipeline_class *pc = dt_pipeline_class_find(name, &e);
    if (!pc || !pc->caption_mask_off) return;
    int n = pc->text_encoders > 0 ? pc->text_encoders : 1;
    printf("  text: %d CLIP encoder%s, %s", n, n > 1 ? "s concatenated on channels" : "",
           pc->hidden_from_end ? "" : "last_hidden_state");
    if (pc->hidden_from_end) printf("hidden_states[-%d]", pc->hidden_from_end);
    printf(", %d tokens unmasked; clip_skip: hidden_states[-(clip_skip + %d)]%s\n", pc->max_len, pc->clip_skip_from_end,
           pc->clip_skip_norm ? " through the final norm" : "");
    if (pc->added_conditions)
        printf("  added conditions: text_embeds (pooled output of the last encoder), time_ids (original size, crop top-left,\n"
               "  target size: by default the output size, 0 0, the output size; txt2img --original-size, --crop-top-left,\n"
               "  --target-size)\n");
    if (pc->zeros_for_empty_negative || pc->vae_upcast)
        printf("  %s%s%s\n", pc->zeros_for_empty_negative ? "empty negative prompt: zeros (force_zeros_for_empty_prompt)" : "",
               pc->zeros_for_empty_negative && pc->vae_upcast ? "; " : "", pc->vae_upcast ? "VAE in f32 when force_upcast" : "");
}

static dt_status info_transformer(const char *model, info_ctx *c, dt_err *err)
{
    char head[1024], tail[512];
    dt_denoiser_info info;
    DT_TRY(dt_model_denoiser_dir(model, c->transformer_dir, sizeof c->transformer_dir, err));
    DT_TRY(dt_denoiser_describe(c->transformer_dir, &info, head, tail, sizeof head, err));
    const char *base = strrchr(c->transformer_dir, '/');
    printf("%s: %s\n%s", base && !strcmp(base, "/unet") ? "unet" : "transformer", c->transformer_dir, head);
    return print_weights(c->transformer_dir, "diffusion_pytorch_model", info.param_count, &c->tr_params, err);
}

static dt_status info_vae(const char *model, info_ctx *c, dt_err *err)
{
    vae_config v;
    DT_TRY(dt_model_component_dir(model, "vae", c->vae_dir, sizeof c->vae_dir, err));
    DT_TRY(vae_config_load(c->vae_dir, &v, err));
    c->upscale = 1 << (v.nblocks - 1);
    c->has_vae = 1;
    printf("vae: %s\n  architecture: AutoencoderKL, block_out_channels:", c->vae_dir);
    for (int i = 0; i < v.nblocks; i++) printf("%s%d", i ? "," : " ", v.block_out_channels[i]);
    printf(", layers_per_block: %d, latent_channels: %d, upscale: %dx, scaling_factor: %g", v.layers_per_block,
           v.latent_channels, c->upscale, v.scaling_factor);
    if (v.has_shift_factor) printf(", shift_factor: %g", v.shift_factor);
    printf("\n");
    return print_weights(c->vae_dir, "diffusion_pytorch_model", -1, &c->vae_params, err);
}

/* The scheduler's class and the fields that decide its steps (absent ones: not printed). */
static dt_status info_scheduler(const char *model, dt_err *err)
{
    char dir[4096], path[4200];
    DT_TRY(dt_model_component_dir(model, "scheduler", dir, sizeof dir, err));
    snprintf(path, sizeof path, "%s/scheduler_config.json", dir);
    cJSON *j;
    DT_TRY(dt_json_load(path, &j, err));
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(j, "_class_name");
    printf("scheduler: %s\n  class: %s", path, cJSON_IsString(cls) ? cls->valuestring : "(unnamed)");
    static const char *const keys[] = {"num_train_timesteps", "beta_schedule", "beta_start", "beta_end", "prediction_type",
                                       "algorithm_type", "solver_order", "timestep_spacing", "use_karras_sigmas",
                                       "clip_sample", "rescale_betas_zero_snr"};
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, keys[k]);
        if (cJSON_IsString(v)) printf(", %s: %s", keys[k], v->valuestring);
        else if (cJSON_IsNumber(v)) printf(", %s: %g", keys[k], v->valuedouble);
        else if (cJSON_IsBool(v)) printf(", %s: %s", keys[k], cJSON_IsTrue(v) ? "true" : "false");
    }
    printf("\n");
    cJSON_Delete(j);
    return DT_OK;
}

/* Activation bytes of one CFG step at the native size (a one-block copy, random weights)
 * and of one decode (a VAE decoder with random weights), as the pipeline plans them. */
static dt_status activation_bytes(const info_ctx *c, const dt_denoiser_info *ti, double *step, double *decode,
                                  dt_err *err)
{
    const dt_denoiser_class *cls = dt_denoiser_class_of_dir(c->transformer_dir, err);
    if (!cls) return DT_EINVAL;
    dt_backend *be = NULL;
    void *m = NULL;
    vae_model *vae = NULL;
    dt_weight_source rnd = dt_weights_random(1, 0.02f);
    int h = ti->sample_size, F = ti->max_frames ? ti->max_frames : 1, T = c->text_tokens ? c->text_tokens : 120;
    dt_status s = cli_backend("f32", 1, &be, err);
    /* a one-block copy needs a stack of equal blocks (DiTs, the classes with attention hooks); a
     * U-Net is built whole, which at real sizes is the whole model: its class computes the
     * same figure from the config */
    *step = 0;
    if (s == DT_OK && cls->config_step_bytes) s = cls->config_step_bytes(c->transformer_dir, 2, F, h, h, T, step, err);
    else if (s == DT_OK && cls->set_attn_hook) s = cls->create(be, c->transformer_dir, 0, 1, &rnd, &m, err);
    if (s == DT_OK && m) *step = cls->step_bytes(m, 2, F, h, h, T);
    *decode = 0;
    vae_config v;
    size_t vb = 0;
    if (s == DT_OK && c->has_vae) s = vae_config_load(c->vae_dir, &v, err);
    if (s == DT_OK && c->has_vae) s = vae_create(be, &v, &rnd, &vae, err);
    if (s == DT_OK && c->has_vae) s = vae_decode_bytes(vae, F, h, h, 0, &vb, err);
    if (s == DT_OK && c->has_vae) *decode = (double)vb + 2 * 4.0 * F * 3 * (double)(h * c->upscale) * (h * c->upscale);
    vae_free(vae);
    if (m) cls->free(m);
    dt_weights_close(&rnd);
    dt_backend_destroy(be);
    return s;
}

/* Memory of one generation (batch 1, CFG) at the native size: weights at 4 (f32) or 2
 * (bf16) bytes a parameter, plus each phase's activations; the text encoder is loaded for the
 * prompt and freed before sampling (ditrt_ctx_params.keep_text_encoder 0). */
static dt_status info_memory(const info_ctx *c, dt_err *err)
{
    dt_denoiser_info ti;
    DT_TRY(dt_denoiser_describe(c->transformer_dir, &ti, NULL, NULL, 0, err));
    double step = 0, decode = 0;
    DT_TRY(activation_bytes(c, &ti, &step, &decode, err));
    int px = ti.sample_size * (c->has_vae ? c->upscale : 8);
    if (ti.max_frames)
        printf("native size: %dx%d px, %d frames (latent %dx%d%s)\n", px, px, ti.max_frames, ti.sample_size, ti.sample_size,
               c->has_vae ? "" : "; the VAE's upscale assumed 8x");
    else
        printf("native size: %dx%d px (latent %dx%d%s)\n", px, px, ti.sample_size, ti.sample_size,
               c->has_vae ? "" : "; the VAE's upscale assumed 8x");
    printf("estimated memory, one %s at the native size with CFG (2 rows a step; compute dtype by default on this CPU: %s):\n",
           ti.max_frames ? "video" : "image", cli_default_dtype());
    for (int b = 4; b >= 2; b -= 2) {
        double held = b * (c->tr_params + c->vae_params);
        double text = held + b * c->te_params, sample = held + step, dec = held + decode;
        double peak = text > sample ? text : sample;
        if (dec > peak) peak = dec;
        printf("  %s weights: ", b == 4 ? "f32 " : "bf16");
        if (c->te_params) printf("text encoding %.1f MB, ", text / 1e6);
        printf("sampling %.1f MB (activations %.1f)", sample / 1e6, step / 1e6);
        if (c->has_vae) printf(", decode %.1f MB (activations and pixels %.1f)", dec / 1e6, decode / 1e6);
        printf("; peak %.1f MB\n", peak / 1e6);
    }
    return DT_OK;
}

static dt_status info_pipeline(const char *model, dt_err *err)
{
    info_ctx c = {0};
    char idx[4200];
    snprintf(idx, sizeof idx, "%s/model_index.json", model);
    int listed[3] = {0}; /* text_encoder, vae, scheduler: described when model_index.json lists them */
    c.has_pipeline = is_dir(model) && access(idx, F_OK) == 0;
    if (c.has_pipeline) {
        static const char *const names[3] = {"text_encoder", "vae", "scheduler"};
        cJSON *j;
        DT_TRY(dt_json_load(idx, &j, err));
        const cJSON *cls = cJSON_GetObjectItemCaseSensitive(j, "_class_name");
        printf("pipeline: %s (%s)\n", model, cJSON_IsString(cls) ? cls->valuestring : "unnamed");
        if (cJSON_IsString(cls)) info_pipeline_class(cls->valuestring);
        for (int i = 0; i < 3; i++) {
            listed[i] = cJSON_HasObjectItem(j, names[i]);
            if (!listed[i]) printf("%s: not listed in model_index.json\n", names[i]);
        }
        cJSON_Delete(j);
    }
    if (listed[0]) DT_TRY(info_text_encoder(model, &c, err));
    DT_TRY(info_transformer(model, &c, err));
    if (listed[1]) DT_TRY(info_vae(model, &c, err));
    if (listed[2]) DT_TRY(info_scheduler(model, err));
    return info_memory(&c, err);
}

int cli_info(int argc, char **argv)
{
    const char *model = NULL, *attn_plan = NULL;
    for (int i = 1; i < argc; i++) {
        int miss = 0;
        const char *v;
        if ((v = cli_flag(argc, argv, &i, "-m", &miss)) || (v = cli_flag(argc, argv, &i, "--model", &miss))) model = v;
        else if ((v = cli_flag(argc, argv, &i, "--attn-plan", &miss))) attn_plan = v;
        else if (miss) return cli_usage_error("%s: missing value", argv[i]);
        else return cli_unknown_option("info", argv[i]);
    }
    if (attn_plan) return cli_info_attn_plan(attn_plan, model); /* DiTFastAttn plan summary */
    if (!model) { /* the backends and devices */
        char list[4096];
        dt_backend_list(list, sizeof list);
        fputs(list, stdout);
        return 0;
    }
    dt_err err = {0};
    return info_pipeline(model, &err) == DT_OK ? 0 : cli_die(&err);
}
