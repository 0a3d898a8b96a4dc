/* The text-encoder interface: a kind tag and the wrapped model (no behaviour of its own). */
#include "text_encoder.h"
#include "clip_text.h"
#include "t5.h"
#include "runtime/core/json.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dt_text_encoder {
    dt_text_encoder_info info;
    t5_model *t5;
    clip_text_model *clip;
};

static dt_status config_kind(const char *dir, dt_text_encoder_kind *kind, dt_err *err)
{
    char p[4096], mt[128];
    snprintf(p, sizeof p, "%s/config.json", dir);
    cJSON *j;
    DT_TRY(dt_json_load(p, &j, err));
    dt_status s = dt_json_str(j, p, "model_type", "", mt, sizeof mt, err);
    *kind = !strcmp(mt, "clip_text_model") ? DT_TEXT_ENCODER_CLIP : DT_TEXT_ENCODER_T5;
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "architectures");
    for (const cJSON *e = cJSON_IsArray(a) ? a->child : NULL; e; e = e->next)
        if (cJSON_IsString(e) && !strncmp(e->valuestring, "CLIPTextModel", 13)) *kind = DT_TEXT_ENCODER_CLIP;
    cJSON_Delete(j);
    return s;
}

dt_status dt_text_encoder_probe(const char *dir, dt_text_encoder_info *info, dt_err *err)
{
    dt_text_encoder_kind kind;
    DT_TRY(config_kind(dir, &kind, err));
    *info = (dt_text_encoder_info){.kind = kind};
    if (kind == DT_TEXT_ENCODER_T5) {
        t5_config c;
        DT_TRY(t5_config_load(dir, &c, err));
        info->vocab_size = c.vocab_size;
        info->hidden_size = c.d_model;
        return DT_OK;
    }
    clip_text_config c;
    DT_TRY(clip_text_config_load(dir, &c, err));
    info->vocab_size = c.vocab_size;
    info->hidden_size = c.hidden_size;
    info->pooled_size = c.projection_dim ? c.projection_dim : c.hidden_size;
    info->projection = c.projection_dim > 0;
    info->num_hidden_states = c.num_layers + 1;
    info->max_positions = c.max_positions;
    return DT_OK;
}

dt_status dt_text_encoder_check_weights(const char *dir, const dt_text_encoder_info *info, dt_dtype weights,
                                        dt_dtype compute, dt_err *err)
{
    if (weights == compute || (weights == DT_I8 && info->kind == DT_TEXT_ENCODER_T5)) return DT_OK;
    if (weights == DT_I8)
        return dt_fail(err, DT_EUNSUPPORTED, "text_dtype int8: only T5 text encoders take int8 weights (%s is CLIP)", dir);
    return dt_fail(err, DT_EUNSUPPORTED, "text encoder %s: %s weights on a %s backend", dir, dt_dtype_name(weights),
                   dt_dtype_name(compute));
}

dt_status dt_text_encoder_load(dt_backend *be, const char *dir, dt_dtype weights, dt_text_encoder **out, dt_err *err)
{
    dt_text_encoder *e = calloc(1, sizeof *e);
    if (!e) return dt_fail(err, DT_ENOMEM, "out of memory");
    dt_status s = dt_text_encoder_probe(dir, &e->info, err);
    if (s == DT_OK) s = dt_text_encoder_check_weights(dir, &e->info, weights, be->cfg.compute, err);
    if (s == DT_OK)
        s = e->info.kind == DT_TEXT_ENCODER_T5 ? t5_load(be, dir, weights, &e->t5, err)
                                               : clip_text_load(be, dir, &e->clip, err);
    if (s != DT_OK) { free(e); return s; }
    *out = e;
    return DT_OK;
}

void dt_text_encoder_free(dt_text_encoder *e)
{
    if (!e) return;
    t5_free(e->t5);
    clip_text_free(e->clip);
    free(e);
}

const dt_text_encoder_info *dt_text_encoder_get_info(const dt_text_encoder *e) { return &e->info; }

dt_status dt_text_encoder_encode(dt_text_encoder *e, const int32_t *ids, const float *mask, int B, int N, dt_arena *a,
                                 const dt_text_encoder_outputs *o, dt_err *err)
{
    if (e->t5) {
        if (o->hidden || o->pooled)
            return dt_fail(err, DT_EINVAL, "text encoder: T5 gives only its last hidden state (no %s)", o->hidden ? "intermediate hidden states" : "pooled output");
        if (!o->last_hidden_state) return DT_OK;
        return t5_encode(e->t5, ids, mask, B, N, a, o->last_hidden_state, err);
    }
    const clip_text_config *c = clip_text_get_config(e->clip);
    clip_text_outputs co = {.last_hidden_state = o->last_hidden_state, .hidden = o->hidden,
                            .hidden_from_end = o->hidden_from_end, .hidden_final_norm = o->hidden_final_norm};
    if (c->projection_dim) co.text_embeds = o->pooled;
    else co.pooled = o->pooled;
    return clip_text_encode(e->clip, ids, mask, B, N, a, &co, err);
}
