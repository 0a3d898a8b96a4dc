#include "quantize.h"
#include "quant_plan.h"
#include "runtime/models/denoiser.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

unsigned dt_quantizer_role(const dt_quantizer *q, const char *name)
{
    return q->cls ? dt_denoiser_class_linear_role(q->cls, name) : 0;
}

/* Sets the model class q builds for; a quantizing q needs the class's linear roles. */
static dt_status set_class(dt_quantizer *q, const dt_denoiser_class *cls, dt_err *err)
{
    if (q->mode != DT_QMODE_FLOAT && !cls->linear_role)
        return dt_fail(err, DT_EUNSUPPORTED, "quantization: %s has no layers ditrt can quantize (its denoiser class names none)",
                       cls->class_name);
    q->cls = cls;
    return DT_OK;
}

dt_status dt_quant_keep_tokens(dt_backend *be, const float *w, const float *b, int in, int out, dt_act act, int m_hint,
                               dt_dtype dt, const int *tokens, int n, dt_linear *lin, double *bytes, dt_err *err)
{
    if (!w) return dt_fail(err, DT_EINVAL, "quantize: float text tokens need the layer's float weights");
    dt_linear *fp = NULL;
    DT_TRY(be->ops->linear_create(be, w, b, in, out, act, m_hint > 0 ? n * 2 : 2, dt, &fp, err));
    dt_status s = be->ops->qlinear_keep_tokens(be, lin, fp, tokens, n, err);
    if (s != DT_OK) { be->ops->linear_destroy(fp); return s; }
    *bytes += (double)in * out * dt_dtype_size(dt);
    return DT_OK;
}

const dt_qlayer_stat *dt_quantizer_find(const dt_quantizer *q, const char *name)
{
    for (int i = 0; i < q->nstats; i++)
        if (!strcmp(q->stats[i].name, name)) return &q->stats[i];
    return NULL;
}

void dt_quantizer_free(dt_quantizer *q)
{
    for (int i = 0; i < q->nstats; i++) free(q->stats[i].amax);
    free(q->stats);
    q->stats = NULL;
    q->nstats = q->cap = 0;
    for (int i = 0; i < q->nrec; i++) dt_qweights_free(&q->rec[i].qw);
    free(q->rec);
    q->rec = NULL;
    q->nrec = q->reccap = 0;
}

dt_status dt_quantizer_open_plan(const char *dir, dt_quantizer *q, dt_err *err)
{
    memset(q, 0, sizeof *q);
    q->mode = DT_QMODE_PLAN;
    DT_TRY(dt_qplan_load(dir, &q->plan, err));
    q->attn_int8 = q->plan->attn_int8;
    return DT_OK;
}

void dt_quantizer_close_plan(dt_quantizer *q)
{
    dt_qplan_free(q->plan);
    q->plan = NULL;
    dt_quantizer_free(q);
}

/* Keeps a layer for dt_qplan_save (takes qw; NULL: a float-kept layer of in x out). */
static dt_status add_record(dt_quantizer *q, const char *name, dt_qweights *qw, int in, int out, uint64_t seed,
                            dt_err *err)
{
    if (q->nrec == q->reccap) {
        int cap = q->reccap ? 2 * q->reccap : 64;
        dt_qrecord *r = realloc(q->rec, (size_t)cap * sizeof *r);
        if (!r) return dt_fail(err, DT_ENOMEM, "out of memory");
        q->rec = r;
        q->reccap = cap;
    }
    dt_qrecord *r = &q->rec[q->nrec++];
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", name);
    if (qw) { r->qw = *qw; memset(qw, 0, sizeof *qw); }
    r->qw.in = in;
    r->qw.out = out;
    r->balance = r->qw.smooth != NULL;
    r->seed = seed;
    return DT_OK;
}

void dt_quantizer_reset_counts(dt_quantizer *q)
{
    q->weight_bytes = q->block_bytes = 0;
    q->nquant = q->nfloat = 0;
    q->token_params = q->text_params = 0;
}

/* A table entry for a new layer (calibration); its amax starts at 0. */
static dt_status add_stat(dt_quantizer *q, const char *name, int in, int out, float **amax, dt_err *err)
{
    if (strlen(name) >= sizeof q->stats[0].name) return dt_fail(err, DT_EINVAL, "quantize: layer name too long: %s", name);
    if (dt_quantizer_find(q, name)) return dt_fail(err, DT_EINVAL, "quantize: layer %s built twice while calibrating", name);
    if (q->nstats == q->cap) {
        int cap = q->cap ? 2 * q->cap : 64;
        dt_qlayer_stat *s = realloc(q->stats, (size_t)cap * sizeof *s);
        if (!s) return dt_fail(err, DT_ENOMEM, "out of memory");
        q->stats = s;
        q->cap = cap;
    }
    dt_qlayer_stat *e = &q->stats[q->nstats];
    e->amax = calloc((size_t)in, sizeof(float));
    if (!e->amax) return dt_fail(err, DT_ENOMEM, "out of memory");
    strcpy(e->name, name);
    e->in = in;
    e->out = out;
    q->nstats++;
    *amax = e->amax;
    return DT_OK;
}

static int layer_bits(const dt_quantizer *q, const char *name)
{
    for (int i = 0; i < q->nlayer_bits; i++)
        if (!strcmp(q->layer_bits[i].name, name)) return q->layer_bits[i].bits;
    return q->wbits;
}

static dt_status make_quant(dt_quantizer *q, dt_backend *be, const char *name, const float *w, const float *b, int in,
                            int out, int wbits, dt_act act, int m_hint, dt_dtype dt, dt_linear **lin, dt_err *err)
{
    float *s = NULL;
    if (q->balance) {
        const dt_qlayer_stat *st = dt_quantizer_find(q, name);
        if (!st) return dt_fail(err, DT_EINVAL, "quantize: no calibration statistics for layer %s", name);
        if (st->in != in || st->out != out)
            return dt_fail(err, DT_EINVAL, "quantize: layer %s is [%d, %d] but was calibrated as [%d, %d]", name, out, in,
                           st->out, st->in);
        s = malloc((size_t)in * sizeof(float));
        if (!s) return dt_fail(err, DT_ENOMEM, "out of memory");
        dt_smooth_factors(w, in, out, st->amax, q->alpha, s);
    }
    dt_qweights qw;
    uint64_t seed = q->rotate ? q->seed + (uint64_t)q->nquant + 1 : 0;
    if (wbits == 4 && q->group && in % q->group) {
        free(s);
        return dt_fail(err, DT_EINVAL, "quantize: group size %d does not divide the %d input channels of layer %s",
                       q->group, in, name);
    }
    dt_status r = dt_qweights_make(w, in, out, wbits, wbits == 4 ? q->group : 0, s, seed, &qw, err);
    free(s);
    if (r != DT_OK) return r;
    r = be->ops->qlinear_create(be, &qw, b, act, m_hint, lin, err);
    if (r == DT_OK) {
        double bytes = (double)dt_qweights_qbytes(in, out, wbits) + 4.0 * out + (b ? 4.0 * out : 0) +
                       (qw.smooth ? 4.0 * in : 0) + (qw.signs ? in : 0) +
                       (qw.group ? (double)out * (in / qw.group) : 0);
        int keep = q->nfp_tokens > 0 && (dt_quantizer_role(q, name) & DT_LINEAR_TEXT_KV);
        if (keep) r = dt_quant_keep_tokens(be, w, b, in, out, act, m_hint, dt, q->fp_tokens, q->nfp_tokens, *lin, &bytes, err);
        if (r != DT_OK) { be->ops->linear_destroy(*lin); *lin = NULL; dt_qweights_free(&qw); return r; }
        q->weight_bytes += bytes;
        q->block_bytes += bytes;
        q->nquant++;
        if (q->record) r = add_record(q, name, &qw, in, out, seed, err);
        if (r == DT_OK && q->record && keep) {
            dt_qrecord *rec = &q->rec[q->nrec - 1];
            rec->nfp = q->nfp_tokens;
            memcpy(rec->fp_tokens, q->fp_tokens, (size_t)q->nfp_tokens * sizeof(int));
        }
    }
    dt_qweights_free(&qw);
    return r;
}

static dt_status hook(dt_weight_source *src, dt_backend *be, const char *name, const float *w, const float *b, int in,
                      int out, dt_act act, int m_hint, dt_dtype dt, dt_linear **lin, dt_err *err)
{
    dt_quantizer *q = src->user;
    /* the plan's attention kernel reaches the model's blocks through their weight source (the
     * first linear is built before any block reads it) */
    if (q->mode == DT_QMODE_PLAN && q->attn_int8) src->self_attn = DT_ATTN_KERNEL_INT8;
    unsigned role = dt_quantizer_role(q, name);
    int block = (role & DT_LINEAR_QUANTIZABLE) != 0; /* a layer ViDiT-Q quantizes, whatever this mode builds */
    if (block) *(role & DT_LINEAR_TEXT_KV ? &q->text_params : &q->token_params) += (double)in * out;
    if (q->mode == DT_QMODE_PLAN) {
        double bytes = 0;
        int keep = 0;
        DT_TRY(dt_qplan_make(q->plan, be, name, w, b, in, out, act, m_hint, dt, lin, &bytes, &keep, err));
        if (!keep) {
            q->weight_bytes += bytes;
            q->block_bytes += bytes;
            q->nquant++;
            return DT_OK;
        }
    }
    int quant = (q->mode == DT_QMODE_OBSERVE || q->mode == DT_QMODE_QUANT) && block;
    int bits = quant && q->mode == DT_QMODE_QUANT ? layer_bits(q, name) : 0;
    if (bits) return make_quant(q, be, name, w, b, in, out, bits, act, m_hint, dt, lin, err);
    if (q->mode == DT_QMODE_QUANT) quant = 0; /* kept in floating point by the bit allocation */
    if (q->mode == DT_QMODE_FLOAT && (role & DT_LINEAR_CONV)) *lin = NULL; /* the model's own float convolution */
    else DT_TRY(be->ops->linear_create(be, w, b, in, out, act, m_hint, dt, lin, err));
    double bytes = (double)in * out * dt_dtype_size(dt) + (b ? 4.0 * out : 0);
    q->weight_bytes += bytes;
    if (block) q->block_bytes += bytes;
    q->nfloat++;
    if (q->mode == DT_QMODE_QUANT && q->record) return add_record(q, name, NULL, in, out, 0, err);
    if (!quant) return DT_OK;
    float *amax = NULL;
    dt_status s = add_stat(q, name, in, out, &amax, err);
    if (s == DT_OK) s = be->ops->linear_observe(be, *lin, in, amax, lin, err);
    if (s != DT_OK) { be->ops->linear_destroy(*lin); *lin = NULL; }
    return s;
}

dt_status dt_quantizer_attach(dt_quantizer *q, const dt_denoiser_class *cls, dt_weight_source *src, dt_err *err)
{
    DT_TRY(set_class(q, cls, err));
    if (q->mode == DT_QMODE_PLAN && q->attn_int8) src->self_attn = DT_ATTN_KERNEL_INT8;
    src->make_linear = hook;
    src->user = q;
    return DT_OK;
}

dt_qplan_model dt_qplan_model_of(const char *dir, const dt_denoiser_info *info)
{
    dt_qplan_model m = {.blocks = info->spatial_layers, .temporal_blocks = info->temporal_layers, .hidden = info->inner};
    snprintf(m.class_name, sizeof m.class_name, "%s", info->class_name);
    snprintf(m.dir, sizeof m.dir, "%s", dir);
    return m;
}

dt_status dt_quant_load(dt_backend *be, const char *dir, dt_quantizer *q, dt_denoiser **out, dt_err *err)
{
    *out = NULL;
    if (q->mode == DT_QMODE_PLAN) { /* another model's plan: said so before any layer is built */
        dt_denoiser_info info;
        DT_TRY(dt_denoiser_describe(dir, &info, NULL, NULL, 0, err));
        dt_qplan_model m = dt_qplan_model_of(dir, &info);
        DT_TRY(dt_qplan_check_model(q->plan, &m, err));
    }
    const dt_denoiser_class *cls = dt_denoiser_class_of_dir(dir, err);
    if (!cls) return err->status;
    DT_TRY(set_class(q, cls, err));
    dt_status s = dt_denoiser_load(be, dir, hook, q, out, err);
    if (s == DT_OK && q->mode == DT_QMODE_PLAN) s = dt_qplan_check_used(q->plan, err);
    if (s != DT_OK && *out) { dt_denoiser_free(*out); *out = NULL; }
    return s;
}
