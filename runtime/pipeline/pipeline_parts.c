#include "pipeline_parts.h"
#include "runtime/core/json.h"
#include "runtime/models/denoiser.h"
#include "runtime/models/modeldir.h"
#include "runtime/models/text_encoder.h"
#include <stdio.h>
#include <string.h>
#include <time.h>

double dt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

size_t dt_mem_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    size_t kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %zu kB", &kb) == 1) break;
    if (f) fclose(f);
    return kb * 1024;
}

static dt_status read_class(const char *model_dir, char *cls, size_t n, dt_err *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/model_index.json", model_dir);
    cJSON *j;
    DT_TRY(dt_json_load(path, &j, err));
    dt_status s = dt_json_str(j, path, "_class_name", "", cls, n, err);
    cJSON_Delete(j);
    return s;
}

static dt_status make_backend(const dt_parts_config *pc, dt_device dev, dt_dtype dt, int tf32, dt_backend **be,
                              dt_err *err)
{
    dt_backend_config c = {.device = dev, .device_index = dev == DT_DEV_CPU ? 0 : pc->device_index, .compute = dt,
                           .threads = pc->threads, .tf32 = tf32};
    return dt_backend_create(&c, be, err);
}

/* The text encoders' backend and arena (see dt_pipeline_parts); on the CPU, be itself when the
 * dtypes agree, as before. */
static dt_status make_text_backend(const dt_parts_config *c, dt_pipeline_parts *p, dt_err *err)
{
    dt_device dev = DT_DEV_CPU;
    if (c->device != DT_DEV_CPU) {
        int all_t5 = 1;
        for (int k = 0; k < p->ntext; k++) {
            dt_text_encoder_info info;
            DT_TRY(dt_text_encoder_probe(p->text_dir[k], &info, err));
            all_t5 &= info.kind == DT_TEXT_ENCODER_T5;
        }
        if (all_t5) dev = c->device;
    }
    dt_dtype dt = c->text_dtype_auto && dev != DT_DEV_CPU ? dt_backend_default_dtype(dev) : c->text_dtype;
    p->text_weights = dt;
    if (dt == DT_I8) dt = DT_F32; /* int8 weights, f32 activations and GEMMs (t5_load) */
    for (int k = 0; p->text_weights != dt && k < p->ntext; k++) { /* refused at load, not at the first prompt */
        dt_text_encoder_info info;
        DT_TRY(dt_text_encoder_probe(p->text_dir[k], &info, err));
        DT_TRY(dt_text_encoder_check_weights(p->text_dir[k], &info, p->text_weights, dt, err));
    }
    p->text_arena = dev == DT_DEV_CPU && c->device != DT_DEV_CPU ? &p->host_arena : &p->arena;
    if (dt == c->dtype && dev == c->device && !c->tf32) {
        p->text_be = p->be;
        return DT_OK;
    }
    return make_backend(c, dev, dt, 0, &p->text_be, err);
}

/* tokenizer + text_encoder, then tokenizer_2 + text_encoder_2 ... while model_index.json lists them. */
static dt_status load_text(const char *m, dt_pipeline_parts *p, dt_err *err)
{
    char dir[4096], tname[32], ename[32];
    for (int k = 0; k < DT_PARTS_MAX_TEXT; k++) {
        snprintf(tname, sizeof tname, k ? "tokenizer_%d" : "tokenizer", k + 1);
        snprintf(ename, sizeof ename, k ? "text_encoder_%d" : "text_encoder", k + 1);
        if (k && !dt_model_lists(m, ename)) break;
        DT_TRY(dt_text_tokenizer_find(m, tname, dir, sizeof dir, err));
        DT_TRY(dt_text_tokenizer_load(dir, &p->tok[k], err));
        DT_TRY(dt_model_component_dir(m, ename, p->text_dir[k], sizeof p->text_dir[k], err));
        p->ntext = k + 1;
    }
    return DT_OK;
}

/* The VAE config's force_upcast (diffusers' default true when absent). */
static dt_status read_force_upcast(const char *dir, int *up, dt_err *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    cJSON *j;
    DT_TRY(dt_json_load(path, &j, err));
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, "force_upcast");
    *up = !f || cJSON_IsTrue(f);
    cJSON_Delete(j);
    return DT_OK;
}

dt_status dt_pipeline_parts_load(const dt_parts_config *c, dt_pipeline_parts *p, dt_err *err)
{
    char dir[4096];
    const char *m = c->model_dir;
    dt_arena_init(&p->arena);
    dt_arena_init(&p->host_arena);
    p->text_arena = &p->arena;
    if (!m) return dt_fail(err, DT_EINVAL, "model: no model folder given");
    DT_TRY(read_class(m, p->cls, sizeof p->cls, err));
    DT_TRY(make_backend(c, c->device, c->dtype, c->tf32, &p->be, err));
    dt_allocator alloc = dt_backend_allocator(p->be); /* activations live on the backend's device */
    dt_arena_init_with(&p->arena, &alloc);
    DT_TRY(load_text(m, p, err));
    DT_TRY(make_text_backend(c, p, err));
    DT_TRY(dt_model_component_dir(m, "vae", dir, sizeof dir, err));
    p->vae_be = p->be;
    dt_err nerr = {0}; /* the class is checked (with its message) by the pipeline */
    const dt_pipeline_class *pcls = dt_pipeline_class_find(p->cls, &nerr);
    if (pcls && pcls->vae_upcast && c->dtype != DT_F32) {
        int up = 0;
        DT_TRY(read_force_upcast(dir, &up, err));
        if (up) {
            DT_TRY(make_backend(c, c->device, DT_F32, 0, &p->vae_be, err));
            p->vae_f32 = 1;
        }
    }
    DT_TRY(vae_load_ex(p->vae_be, dir, VAE_ENCODER_NONE, &p->vae, err)); /* text-to-X decodes only */
    DT_TRY(dt_model_component_dir(m, "scheduler", dir, sizeof dir, err));
    if (c->solver_schedule && c->clip_sample)
        return dt_fail(err, DT_EINVAL, "clip_sample: a USF solver schedule has no clip_sample option");
    if (c->solver_schedule) return dt_scheduler_load_usf(dir, c->solver_schedule, c->solver_statistics, &p->sched, err);
    return dt_scheduler_load_opts(dir, c->solver, c->karras, c->clip_sample ? c->clip_sample == 1 : -1, &p->sched, err);
}

void dt_pipeline_parts_free(dt_pipeline_parts *p)
{
    vae_free(p->vae);
    for (int k = 0; k < DT_PARTS_MAX_TEXT; k++) dt_text_tokenizer_free(p->tok[k]);
    if (p->vae_be && p->vae_be != p->be) dt_backend_destroy(p->vae_be);
    dt_scheduler_free(p->sched);
    dt_arena_free(&p->arena);
    dt_arena_free(&p->host_arena);
    if (p->text_be != p->be) dt_backend_destroy(p->text_be);
    dt_backend_destroy(p->be);
    *p = (dt_pipeline_parts){0};
}

dt_status dt_pipeline_parts_check_channels(const dt_pipeline_parts *p, const char *m, int in, int out, dt_err *err)
{
    int lc = vae_get_config(p->vae)->latent_channels;
    if (in != lc)
        return dt_fail(err, DT_EFORMAT, "%s: transformer in_channels %d differs from the VAE's latent_channels %d", m, in, lc);
    if (out != in && out != 2 * in)
        return dt_fail(err, DT_EFORMAT, "%s: transformer out_channels %d must be in_channels %d or twice it (learned sigma)",
                       m, out, in);
    return DT_OK;
}

dt_status dt_pipeline_parts_transformer_dir(const char *model_dir, char *out, size_t n, dt_err *err)
{
    return dt_model_denoiser_dir(model_dir, out, n, err);
}

const char *dt_pipeline_parts_solver_warning(const dt_pipeline_parts *p)
{
    if (dt_scheduler_clips_by_default(p->sched))
        return "DDIMScheduler clips the predicted sample to [-1, 1] (the folder's scheduler config has no "
               "clip_sample, and DDIM's default is true, as in diffusers); latent models usually need it off: "
               "--clip-sample off (clip_sample in the API)";
    return NULL;
}
