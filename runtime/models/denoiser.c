/* The denoiser registry and the model-independent parts of the interface (denoiser.h).
 * Adding a model: its file exports a dt_denoiser_class; list it here. */
#include "denoiser.h"
#include "pixart.h"
#include "latte.h"
#include "stdit.h"
#include "unet.h"
#include "runtime/core/json.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const dt_denoiser_class *const registry[] = {
    &dt_pixart_class,
    &dt_latte_class,
    &dt_stdit_class,
    &dt_unet_class,
    &dt_unet_sdxl_class, /* the same class, its second preset */
};
#define NCLASSES (sizeof registry / sizeof *registry)

struct dt_denoiser {
    const dt_denoiser_class *cls;
    void *model;
    dt_denoiser_info info;
};

static void list_names(int presets, char *buf, size_t n)
{
    buf[0] = 0;
    for (size_t i = 0; i < NCLASSES; i++) {
        if (!presets && i > 0 && !strcmp(registry[i]->class_name, registry[i - 1]->class_name)) continue;
        snprintf(buf + strlen(buf), n - strlen(buf), "%s%s", i ? ", " : "", presets ? registry[i]->preset : registry[i]->class_name);
    }
}

const dt_denoiser_class *dt_denoiser_class_of_dir(const char *dir, dt_err *err)
{
    char path[4200], cls[128], names[256];
    snprintf(path, sizeof path, "%s/config.json", dir);
    cJSON *j;
    if (dt_json_load(path, &j, err) != DT_OK) return NULL;
    /* PixArt folders written before diffusers named the class may lack it */
    dt_status s = dt_json_str(j, path, "_class_name", "PixArtTransformer2DModel", cls, sizeof cls, err);
    cJSON_Delete(j);
    if (s != DT_OK) return NULL;
    for (size_t i = 0; i < NCLASSES; i++)
        if (!strcmp(registry[i]->class_name, cls)) return registry[i];
    list_names(0, names, sizeof names);
    dt_fail(err, DT_EUNSUPPORTED, "%s: _class_name \"%s\" is not a denoiser ditrt runs (%s)", path, cls, names);
    return NULL;
}

const dt_denoiser_class *dt_denoiser_class_of_preset(const char *arch, dt_err *err)
{
    char names[256];
    for (size_t i = 0; i < NCLASSES; i++)
        if (!strcmp(registry[i]->preset, arch)) return registry[i];
    list_names(1, names, sizeof names);
    dt_fail(err, DT_EINVAL, "--arch: unknown architecture \"%s\" (%s)", arch, names);
    return NULL;
}

unsigned dt_denoiser_class_linear_role(const dt_denoiser_class *cls, const char *name)
{
    return cls->linear_role ? cls->linear_role(name) : 0;
}

const dt_pipeline_class *dt_pipeline_class_find(const char *name, dt_err *err)
{
    char names[512] = "";
    for (size_t i = 0; i < NCLASSES; i++)
        for (int k = 0; k < registry[i]->npipelines && !(i && registry[i]->pipelines == registry[i - 1]->pipelines); k++) {
            /* (a class's second preset shares its pipelines: listed once) */
            const dt_pipeline_class *pc = &registry[i]->pipelines[k];
            if (!strcmp(pc->name, name)) return pc;
            if (pc->name[0]) snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", names[0] ? ", " : "", pc->name);
        }
    dt_fail(err, DT_EUNSUPPORTED, "pipeline \"%s\" is not supported (%s)", name, names);
    return NULL;
}

dt_status dt_denoiser_describe(const char *dir, dt_denoiser_info *info, char *head, char *tail, size_t n, dt_err *err)
{
    char h[1024], t[512];
    const dt_denoiser_class *cls = dt_denoiser_class_of_dir(dir, err);
    if (!cls) return err->status;
    dt_status s = n ? cls->describe(dir, info, head, tail, n, err) : cls->describe(dir, info, h, t, sizeof h, err);
    if (s == DT_OK && !info->size_multiple) info->size_multiple = info->patch_size;
    return s;
}

static dt_status wrap(const dt_denoiser_class *cls, void *model, dt_denoiser **out, dt_err *err)
{
    dt_denoiser *d = calloc(1, sizeof *d);
    if (!d) {
        cls->free(model);
        return dt_fail(err, DT_ENOMEM, "out of memory");
    }
    d->cls = cls;
    d->model = model;
    cls->info(model, &d->info);
    if (!d->info.size_multiple) d->info.size_multiple = d->info.patch_size;
    *out = d;
    return DT_OK;
}

dt_status dt_denoiser_load(dt_backend *be, const char *dir, dt_make_linear_fn make_linear, void *user,
                           dt_denoiser **out, dt_err *err)
{
    *out = NULL;
    const dt_denoiser_class *cls = dt_denoiser_class_of_dir(dir, err);
    if (!cls) return err->status;
    dt_safetensors *st;
    DT_TRY(dt_st_open_dir(dir, "diffusion_pytorch_model", &st, err));
    dt_weight_source src = dt_weights_from_file(st);
    src.make_linear = make_linear;
    src.user = user;
    void *m = NULL;
    dt_status s = cls->create(be, dir, 0, 0, &src, &m, err);
    dt_weights_close(&src);
    dt_st_close(st);
    return s == DT_OK ? wrap(cls, m, out, err) : s;
}

dt_status dt_denoiser_create_preset(dt_backend *be, const char *arch, int sample_size, int layers,
                                    dt_weight_source *src, dt_denoiser **out, dt_err *err)
{
    *out = NULL;
    const dt_denoiser_class *cls = dt_denoiser_class_of_preset(arch, err);
    if (!cls) return err->status;
    void *m = NULL;
    DT_TRY(cls->create(be, NULL, sample_size, layers, src, &m, err));
    return wrap(cls, m, out, err);
}

void dt_denoiser_free(dt_denoiser *d)
{
    if (!d) return;
    d->cls->free(d->model);
    free(d);
}

const dt_denoiser_info *dt_denoiser_get_info(const dt_denoiser *d) { return &d->info; }

dt_status dt_denoiser_forward(dt_denoiser *d, const dt_denoiser_inputs *in, dt_arena *arena, dt_tensor *out, dt_err *err)
{
    return d->cls->forward(d->model, in, arena, out, err);
}

void dt_denoiser_set_attn_hook(dt_denoiser *d, struct dit_attn_hook *hook)
{
    if (d->cls->set_attn_hook) d->cls->set_attn_hook(d->model, hook);
}

void dt_denoiser_set_resume(dt_denoiser *d, const dt_denoiser_resume *r)
{
    if (d->cls->set_resume) d->cls->set_resume(d->model, r);
}

dt_status dt_denoiser_attn_plans(const dt_denoiser_info *info, dt_err *err)
{
    if (info->spatial_layers + info->temporal_layers > 0) return DT_OK;
    return dt_fail(err, DT_EUNSUPPORTED, "attention plans (DiTFastAttn) apply to diffusion transformers; a %s has no DiT blocks",
                   info->class_name);
}

double dt_denoiser_step_bytes(const dt_denoiser *d, int rows, int frames, int h, int w, int T)
{
    return d->cls->step_bytes(d->model, rows, frames, h, w, T);
}

double dt_denoiser_matmul_flops(const dt_denoiser *d, int batch, int frames, int h, int w, int T)
{
    return d->cls->matmul_flops(d->model, batch, frames, h, w, T);
}

int dt_denoiser_row_at(const dt_denoiser_info *info, int e)
{
    if (!info->temporal_layers) return e;
    return e % 2 ? info->spatial_layers + e / 2 : e / 2;
}

int dt_denoiser_exec_pos(const dt_denoiser_info *info, int row)
{
    if (!info->temporal_layers) return row;
    return row < info->spatial_layers ? 2 * row : 2 * (row - info->spatial_layers) + 1;
}

/* ---- inputs from a file ---- */

void dt_denoiser_inputs_free(dt_denoiser_input_file *x)
{
    free(x->hs); free(x->ehs); free(x->t); free(x->mask); free(x->res); free(x->ar); free(x->te); free(x->tid);
    *x = (dt_denoiser_input_file){0};
}

/* A 0-d timestep is broadcast over the batch, as diffusers does. */
static dt_status read_timestep(const dt_safetensors *st, const char *file, int64_t B, dt_denoiser_input_file *x, dt_err *err)
{
    int64_t tshape[1] = {B};
    const dt_st_entry *e = dt_st_find(st, "timestep");
    if (!(e && e->ndim == 0)) return dt_st_read_input(st, file, "timestep", 1, tshape, 0, &x->tt, &x->t, err);
    DT_TRY(dt_st_read_input(st, file, "timestep", 0, tshape, 0, &x->tt, &x->t, err));
    float v = x->t[0];
    free(x->t);
    x->t = malloc((size_t)B * sizeof(float));
    if (!x->t) return dt_fail(err, DT_ENOMEM, "out of memory");
    for (int64_t i = 0; i < B; i++) x->t[i] = v;
    return DT_OK;
}

dt_status dt_denoiser_inputs_load(const char *file, const dt_denoiser_info *c, dt_denoiser_input_file *x, dt_err *err)
{
    dt_safetensors *st;
    *x = (dt_denoiser_input_file){0};
    DT_TRY(dt_st_open(file, &st, err));
    int rank = c->latent_rank;
    int64_t hs_shape[5] = {-1, c->in_channels, -1, -1, -1};
    const char *hs_name = c->latent_input ? c->latent_input : "hidden_states";
    dt_status s = dt_st_read_input(st, file, hs_name, rank, hs_shape, 0, &x->ths, &x->hs, err);
    int64_t B = s == DT_OK ? x->ths.shape[0] : 0;
    int64_t ehs_shape[3] = {B, -1, c->caption_channels};
    if (s == DT_OK) s = dt_st_read_input(st, file, "encoder_hidden_states", 3, ehs_shape, 0, &x->tehs, &x->ehs, err);
    int64_t T = s == DT_OK ? x->tehs.shape[1] : 0, mshape[2] = {B, T}, rshape[2] = {B, 2}, ashape[2] = {B, 1};
    if (s == DT_OK) s = read_timestep(st, file, B, x, err);
    if (s == DT_OK) s = dt_st_read_input(st, file, "encoder_attention_mask", 2, mshape, 1, &x->tmask, &x->mask, err);
    for (int64_t i = 0; s == DT_OK && x->mask && i < B * T; i++)
        if (x->mask[i] != 0.0f && x->mask[i] != 1.0f)
            s = dt_fail(err, DT_EFORMAT, "%s: input tensor \"encoder_attention_mask\" must hold only 0 and 1", file);
    if (s == DT_OK && c->micro_conditions) {
        s = dt_st_read_input(st, file, "resolution", 2, rshape, 0, &x->tres, &x->res, err);
        if (s == DT_OK) s = dt_st_read_input(st, file, "aspect_ratio", 2, ashape, 0, &x->tar, &x->ar, err);
    }
    if (s == DT_OK && c->added_text_dim) {
        int64_t tes[2] = {B, c->added_text_dim}, tis[2] = {B, c->added_time_ids};
        s = dt_st_read_input(st, file, "text_embeds", 2, tes, 0, &x->tte, &x->te, err);
        if (s == DT_OK) s = dt_st_read_input(st, file, "time_ids", 2, tis, 0, &x->ttid, &x->tid, err);
    }
    if (s == DT_OK && rank == 5 && (x->ths.shape[2] < 1 || x->ths.shape[2] > c->max_frames))
        s = dt_fail(err, DT_EFORMAT, "%s: input tensor \"hidden_states\" has %lld frames, the model takes 1 to %d (video_length)",
                    file, (long long)x->ths.shape[2], c->max_frames);
    int mult = c->size_multiple ? c->size_multiple : c->patch_size; /* a model's own info may leave it 0 */
    if (s == DT_OK && x->ths.shape[rank - 2] % mult + x->ths.shape[rank - 1] % mult)
        s = dt_fail(err, DT_EFORMAT, "%s: input tensor \"%s\": height and width must be multiples of %s %d", file, hs_name,
                    c->latent_input ? "2^downsamplers" : "patch_size", mult);
    dt_st_close(st);
    x->in = (dt_denoiser_inputs){.hidden_states = &x->ths, .encoder_hidden_states = &x->tehs, .timestep = x->t,
                                 .encoder_attention_mask = x->mask, .resolution = x->res, .aspect_ratio = x->ar,
                                 .text_embeds = x->te, .time_ids = x->tid};
    if (s != DT_OK) dt_denoiser_inputs_free(x);
    return s;
}

int dt_denoiser_null_caption(const dt_denoiser *d, const float **emb)
{
    *emb = NULL;
    return d->cls->null_caption ? d->cls->null_caption(d->model, emb) : 0;
}
