#include "runtime/core/fileio.h"
#include "quant_plan.h"
#include "runtime/core/json.h"
#include "runtime/core/safetensors.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static dt_status write_json(const dt_quantizer *q, const char *dir, const char *scheme, const char *model,
                            const dt_qplan_model *m, dt_err *err)
{
    cJSON *root = cJSON_CreateObject(), *layers = cJSON_AddArrayToObject(root, "layers");
    cJSON_AddStringToObject(root, "format", "ditrt-quant-plan");
    cJSON_AddNumberToObject(root, "version", 1);
    cJSON_AddStringToObject(root, "scheme", scheme);
    cJSON_AddStringToObject(root, "model", model);
    cJSON_AddStringToObject(root, "model_class", m->class_name);
    cJSON_AddNumberToObject(root, "model_blocks", m->blocks);
    cJSON_AddNumberToObject(root, "model_temporal_blocks", m->temporal_blocks);
    cJSON_AddNumberToObject(root, "model_hidden", m->hidden);
    cJSON_AddNumberToObject(root, "alpha", q->alpha);
    if (q->attn_int8) cJSON_AddStringToObject(root, "attention", "int8");
    for (int i = 0; i < q->nrec; i++) {
        const dt_qrecord *r = &q->rec[i];
        cJSON *l = cJSON_CreateObject();
        cJSON_AddStringToObject(l, "name", r->name);
        cJSON_AddNumberToObject(l, "in", r->qw.in);
        cJSON_AddNumberToObject(l, "out", r->qw.out);
        cJSON_AddNumberToObject(l, "weight_bits", r->qw.q ? r->qw.wbits : 0); /* 0: kept in floating point */
        cJSON_AddNumberToObject(l, "act_bits", r->qw.q ? 8 : 0);
        cJSON_AddBoolToObject(l, "balance", r->balance);
        cJSON_AddNumberToObject(l, "rotate_seed", (double)r->seed); /* < 2^53 */
        cJSON_AddNumberToObject(l, "rot_block", r->qw.signs ? r->qw.rot_block : 0);
        if (r->qw.q && r->qw.group) cJSON_AddNumberToObject(l, "group", r->qw.group);
        if (r->qw.q && r->nfp) cJSON_AddItemToObject(l, "fp_tokens", cJSON_CreateIntArray(r->fp_tokens, r->nfp));
        cJSON_AddItemToArray(layers, l);
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return dt_fail(err, DT_ENOMEM, "out of memory");
    char path[1100];
    snprintf(path, sizeof path, "%s/plan.json", dir);
    dt_outfile o;
    dt_status s = dt_outfile_open(&o, path, "w", err);
    if (s == DT_OK) {
        int ok = fputs(text, o.f) >= 0;
        s = dt_outfile_close(&o, ok, err);
    }
    free(text);
    return s;
}

dt_status dt_qplan_save(const dt_quantizer *q, const char *dir, const char *scheme, const char *model,
                        const dt_qplan_model *made_for, dt_err *err)
{
    if (mkdir(dir, 0777) && errno != EEXIST) return dt_fail(err, DT_EIO, "%s: cannot create (%s)", dir, strerror(errno));
    int cap = 4 * q->nrec + 1, n = 0;
    dt_st_item *items = calloc((size_t)cap, sizeof *items);
    dt_tensor *ts = calloc((size_t)cap, sizeof *ts);
    char (*names)[160] = calloc((size_t)cap, sizeof *names);
    if (!items || !ts || !names) { free(items); free(ts); free(names); return dt_fail(err, DT_ENOMEM, "out of memory"); }
    for (int i = 0; i < q->nrec; i++) {
        const dt_qrecord *r = &q->rec[i];
        if (!r->qw.q) continue;
        int64_t qs[2] = {r->qw.out, r->qw.wbits == 4 ? r->qw.in / 2 : r->qw.in}, os[1] = {r->qw.out}, is[1] = {r->qw.in};
        snprintf(names[n], sizeof names[n], "%s.q", r->name);
        ts[n] = dt_tensor_view(r->qw.q, r->qw.wbits == 4 ? DT_U8 : DT_I8, 2, qs);
        items[n] = (dt_st_item){names[n], &ts[n]}, n++;
        snprintf(names[n], sizeof names[n], "%s.wscale", r->name);
        ts[n] = dt_tensor_view(r->qw.wscale, DT_F32, 1, os);
        items[n] = (dt_st_item){names[n], &ts[n]}, n++;
        if (r->qw.smooth) {
            snprintf(names[n], sizeof names[n], "%s.smooth", r->name);
            ts[n] = dt_tensor_view(r->qw.smooth, DT_F32, 1, is);
            items[n] = (dt_st_item){names[n], &ts[n]}, n++;
        }
        if (r->qw.group) {
            int64_t gs[2] = {r->qw.out, r->qw.in / r->qw.group};
            snprintf(names[n], sizeof names[n], "%s.gscale", r->name);
            ts[n] = dt_tensor_view(r->qw.gscale, DT_U8, 2, gs);
            items[n] = (dt_st_item){names[n], &ts[n]}, n++;
        }
    }
    char path[1100];
    snprintf(path, sizeof path, "%s/weights.safetensors", dir);
    dt_status s = dt_st_write(path, items, n, err);
    free(items); free(ts); free(names);
    return s == DT_OK ? write_json(q, dir, scheme, model, made_for, err) : s;
}

void dt_qplan_free(dt_qplan *p)
{
    if (!p) return;
    free(p->layers);
    dt_st_close(p->st);
    free(p);
}

static dt_status parse_layer(const cJSON *l, const char *file, int i, dt_qplan_layer *o, dt_err *err)
{
    char field[64];
    snprintf(field, sizeof field, "layers[%d]", i);
    if (!cJSON_IsObject(l)) return dt_fail(err, DT_EFORMAT, "%s: %s is not an object", file, field);
    double seed;
    DT_TRY(dt_json_str(l, file, "name", NULL, o->name, sizeof o->name, err));
    DT_TRY(dt_json_int(l, file, "in", 0, 0, &o->in, err));
    DT_TRY(dt_json_int(l, file, "out", 0, 0, &o->out, err));
    DT_TRY(dt_json_int(l, file, "weight_bits", 0, 0, &o->wbits, err));
    DT_TRY(dt_json_int(l, file, "act_bits", 1, 8, &o->abits, err));
    DT_TRY(dt_json_bool(l, file, "balance", 0, &o->balance, err));
    DT_TRY(dt_json_num(l, file, "rotate_seed", 1, 0, &seed, err));
    DT_TRY(dt_json_int(l, file, "rot_block", 1, 0, &o->rot_block, err));
    DT_TRY(dt_json_int(l, file, "group", 1, 0, &o->group, err));
    if (!(seed >= 0 && seed <= 9007199254740992.0) || seed != floor(seed)) /* before the cast: inf/NaN are UB */
        return dt_fail(err, DT_EFORMAT, "%s: layer %s: rotate_seed must be an integer in 0..2^53", file, o->name);
    o->seed = (uint64_t)seed;
    const cJSON *fp = cJSON_GetObjectItemCaseSensitive(l, "fp_tokens");
    if (fp) {
        int n = cJSON_IsArray(fp) ? cJSON_GetArraySize(fp) : -1;
        if (n < 1 || n > DT_QMAX_FP_TOKENS || !o->wbits)
            return dt_fail(err, DT_EFORMAT, "%s: layer %s: fp_tokens must be 1..%d token indices of a quantized layer", file,
                           o->name, DT_QMAX_FP_TOKENS);
        for (int k = 0; k < n; k++) {
            const cJSON *t = cJSON_GetArrayItem(fp, k);
            if (!cJSON_IsNumber(t) || t->valuedouble < 0 || t->valuedouble > 65535 || t->valuedouble != (int)t->valuedouble)
                return dt_fail(err, DT_EFORMAT, "%s: layer %s: fp_tokens[%d] is not a token index", file, o->name, k);
            o->fp_tokens[k] = (int)t->valuedouble;
        }
        o->nfp = n;
    }
    if (o->in <= 0 || o->out <= 0 || (o->wbits != 0 && o->wbits != 4 && o->wbits != 8) ||
        (o->wbits && o->abits != 8) || (o->wbits == 4 && o->in % 2) || o->group < 0 ||
        (o->group && (o->wbits != 4 || o->group % 2 || o->in % o->group)))
        return dt_fail(err, DT_EFORMAT, "%s: layer %s: unsupported shape or bits ([%d, %d], W%d A%d)", file, o->name,
                       o->out, o->in, o->wbits, o->abits);
    if (o->seed && (o->rot_block != dt_hadamard_block(o->in)))
        return dt_fail(err, DT_EFORMAT, "%s: layer %s: rot_block %d, expected %d for %d channels", file, o->name,
                       o->rot_block, dt_hadamard_block(o->in), o->in);
    return DT_OK;
}

/* The optional record of the model the plan was made for. */
static dt_status read_model(const cJSON *root, const char *file, dt_qplan_model *m, dt_err *err)
{
    DT_TRY(dt_json_str(root, file, "model", "", m->dir, sizeof m->dir, err));
    DT_TRY(dt_json_str(root, file, "model_class", "", m->class_name, sizeof m->class_name, err));
    DT_TRY(dt_json_int(root, file, "model_blocks", 1, 0, &m->blocks, err));
    DT_TRY(dt_json_int(root, file, "model_temporal_blocks", 1, 0, &m->temporal_blocks, err));
    return dt_json_int(root, file, "model_hidden", 1, 0, &m->hidden, err);
}

dt_status dt_qplan_check_model(const dt_qplan *p, const dt_qplan_model *m, dt_err *err)
{
    const dt_qplan_model *f = &p->model;
    if (!f->class_name[0]) return DT_OK; /* a plan from before the record: the layers are checked one by one */
    if (!strcmp(f->class_name, m->class_name) && f->blocks == m->blocks && f->temporal_blocks == m->temporal_blocks &&
        f->hidden == m->hidden)
        return DT_OK;
    char made[96], is[96];
    snprintf(made, sizeof made, "%d blocks%s, hidden %d", f->blocks, f->temporal_blocks ? " + temporal" : "", f->hidden);
    snprintf(is, sizeof is, "%d blocks%s, hidden %d", m->blocks, m->temporal_blocks ? " + temporal" : "", m->hidden);
    return dt_fail(err, DT_EINVAL, "%s/plan.json: plan is for %s (%s; made from %s), this model is %s (%s); "
                   "make a plan for it with ditrt quantize", p->dir, f->class_name, made, f->dir[0] ? f->dir : "?",
                   m->class_name, is);
}

dt_status dt_qplan_load(const char *dir, dt_qplan **out, dt_err *err)
{
    dt_qplan *p = calloc(1, sizeof *p);
    if (!p) return dt_fail(err, DT_ENOMEM, "out of memory");
    snprintf(p->dir, sizeof p->dir, "%s", dir);
    char file[1100];
    snprintf(file, sizeof file, "%s/plan.json", dir);
    cJSON *root = NULL;
    dt_status s = dt_json_load(file, &root, err);
    char fmt[64];
    if (s == DT_OK) s = dt_json_str(root, file, "format", NULL, fmt, sizeof fmt, err);
    if (s == DT_OK && strcmp(fmt, "ditrt-quant-plan")) s = dt_fail(err, DT_EFORMAT, "%s: format \"%s\" is not ditrt-quant-plan", file, fmt);
    if (s == DT_OK) s = dt_json_str(root, file, "scheme", "", p->scheme, sizeof p->scheme, err);
    if (s == DT_OK) s = read_model(root, file, &p->model, err);
    char attn[16];
    if (s == DT_OK) s = dt_json_str(root, file, "attention", "float", attn, sizeof attn, err);
    if (s == DT_OK && strcmp(attn, "float") && strcmp(attn, "int8"))
        s = dt_fail(err, DT_EFORMAT, "%s: field \"attention\" must be \"float\" or \"int8\", got \"%s\"", file, attn);
    if (s == DT_OK) p->attn_int8 = !strcmp(attn, "int8");
    const cJSON *layers = root ? cJSON_GetObjectItemCaseSensitive(root, "layers") : NULL;
    if (s == DT_OK && !cJSON_IsArray(layers)) s = dt_fail(err, DT_EFORMAT, "%s: field \"layers\" must be an array", file);
    if (s == DT_OK) {
        p->n = cJSON_GetArraySize(layers);
        p->layers = calloc((size_t)(p->n ? p->n : 1), sizeof *p->layers);
        if (!p->layers) s = dt_fail(err, DT_ENOMEM, "out of memory");
    }
    for (int i = 0; s == DT_OK && i < p->n; i++) s = parse_layer(cJSON_GetArrayItem(layers, i), file, i, &p->layers[i], err);
    cJSON_Delete(root);
    snprintf(file, sizeof file, "%s/weights.safetensors", dir);
    if (s == DT_OK) s = dt_st_open(file, &p->st, err);
    if (s != DT_OK) { dt_qplan_free(p); return s; }
    *out = p;
    return DT_OK;
}

/* The plan's tensor `name` with exactly this dtype and shape (size checks before any use). */
static dt_status expect(const dt_qplan *p, const char *name, dt_dtype dt, int ndim, const int64_t *shape,
                        const dt_st_entry **out, dt_err *err)
{
    const dt_st_entry *e = dt_st_find(p->st, name);
    if (!e) return dt_fail(err, DT_EFORMAT, "%s/weights.safetensors: tensor \"%s\" is missing", p->dir, name);
    int ok = e->dtype == dt && e->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = e->shape[i] == shape[i];
    if (!ok)
        return dt_fail(err, DT_EFORMAT, "%s/weights.safetensors: tensor \"%s\" is %s with %d dims [%lld, ...], expected %s [%lld%s]",
                       p->dir, name, dt_dtype_name(e->dtype), e->ndim, (long long)(e->ndim ? e->shape[0] : 0),
                       dt_dtype_name(dt), (long long)shape[0], ndim > 1 ? ", ..." : "");
    *out = e;
    return DT_OK;
}

static dt_qplan_layer *find(dt_qplan *p, const char *name)
{
    for (int i = 0; i < p->n; i++)
        if (!strcmp(p->layers[i].name, name)) return &p->layers[i];
    return NULL;
}

dt_status dt_qplan_make(dt_qplan *p, dt_backend *be, const char *name, const float *w, const float *b, int in, int out,
                        dt_act act, int m_hint, dt_dtype dt, dt_linear **lin, double *bytes, int *keep_float, dt_err *err)
{
    *keep_float = 0;
    dt_qplan_layer *l = find(p, name);
    if (!l) return dt_fail(err, DT_EINVAL, "%s/plan.json: no entry for layer %s (a plan for another model?)", p->dir, name);
    if (l->in != in || l->out != out)
        return dt_fail(err, DT_EINVAL, "%s/plan.json: layer %s is [%d, %d] in the plan but [%d, %d] in the model (a plan "
                       "for another model: made from %s)", p->dir, name, l->out, l->in, out, in, p->model.dir[0] ? p->model.dir : "?");
    if (l->used) return dt_fail(err, DT_EINVAL, "%s/plan.json: layer %s built twice", p->dir, name);
    l->used = 1;
    if (!l->wbits) { *keep_float = 1; return DT_OK; }
    char nm[160];
    const dt_st_entry *eq, *es, *esm = NULL, *eg = NULL;
    int64_t qs[2] = {out, l->wbits == 4 ? in / 2 : in}, os[1] = {out}, is[1] = {in};
    snprintf(nm, sizeof nm, "%s.q", name);
    DT_TRY(expect(p, nm, l->wbits == 4 ? DT_U8 : DT_I8, 2, qs, &eq, err));
    snprintf(nm, sizeof nm, "%s.wscale", name);
    DT_TRY(expect(p, nm, DT_F32, 1, os, &es, err));
    if (l->balance) {
        snprintf(nm, sizeof nm, "%s.smooth", name);
        DT_TRY(expect(p, nm, DT_F32, 1, is, &esm, err));
    }
    if (l->group) {
        int64_t gs[2] = {out, in / l->group};
        snprintf(nm, sizeof nm, "%s.gscale", name);
        DT_TRY(expect(p, nm, DT_U8, 2, gs, &eg, err));
    }
    dt_qweights qw = {.in = in, .out = out, .wbits = l->wbits, .q = (int8_t *)eq->data, .wscale = (float *)es->data,
                      .smooth = esm ? (float *)esm->data : NULL, .rot_block = l->rot_block, .group = l->group,
                      .gscale = eg ? (uint8_t *)eg->data : NULL};
    int8_t *signs = NULL;
    if (l->seed) {
        signs = malloc((size_t)in);
        if (!signs) return dt_fail(err, DT_ENOMEM, "out of memory");
        dt_rotation_signs(l->seed, in, signs);
        qw.signs = signs;
    }
    dt_status s = be->ops->qlinear_create(be, &qw, b, act, m_hint, lin, err);
    free(signs);
    *bytes = (double)eq->nbytes + es->nbytes + (esm ? esm->nbytes : 0) + (eg ? eg->nbytes : 0) + (b ? 4.0 * out : 0) +
             (l->seed ? in : 0);
    if (s == DT_OK && l->nfp)
        s = dt_quant_keep_tokens(be, w, b, in, out, act, m_hint, dt, l->fp_tokens, l->nfp, *lin, bytes, err);
    if (s != DT_OK && *lin) { be->ops->linear_destroy(*lin); *lin = NULL; }
    return s;
}

dt_status dt_qplan_check_used(const dt_qplan *p, dt_err *err)
{
    for (int i = 0; i < p->n; i++)
        if (!p->layers[i].used)
            return dt_fail(err, DT_EINVAL, "%s/plan.json: layer %s is not in the model (a plan for another model?)", p->dir,
                           p->layers[i].name);
    return DT_OK;
}
