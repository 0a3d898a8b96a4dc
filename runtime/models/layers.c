#include "layers.h"
#include <stdio.h>
#include <stdlib.h>

dt_status dt_load_linear(dt_backend *be, dt_weight_source *src, const dt_linear_spec *s, dt_linear **lin, dt_err *err)
{
    size_t each = (size_t)s->out_each * s->in;
    char name[256];
    for (int i = 0; i < s->n; i++) { /* the file's shapes before the buffers are sized */
        int64_t ws[2] = {s->out_each, s->in}, bs[1] = {s->out_each};
        snprintf(name, sizeof name, "%s.weight", s->names[i]);
        DT_TRY(dt_weights_expect(src, name, 2, ws, err));
        snprintf(name, sizeof name, "%s.bias", s->names[i]);
        if (s->bias) DT_TRY(dt_weights_expect(src, name, 1, bs, err));
    }
    float *w = dt_weights_stage(src, (size_t)s->n * each * sizeof(float));
    float *b = s->bias ? malloc((size_t)s->n * s->out_each * sizeof(float)) : NULL;
    dt_status st = (w && (b || !s->bias)) ? DT_OK : dt_fail(err, DT_ENOMEM, "out of memory loading %s", s->names[0]);
    for (int i = 0; i < s->n && st == DT_OK; i++) {
        int64_t ws[2] = {s->out_each, s->in}, bs[1] = {s->out_each};
        snprintf(name, sizeof name, "%s.weight", s->names[i]);
        st = src->read(src, name, 2, ws, w + (size_t)i * each, err);
        snprintf(name, sizeof name, "%s.bias", s->names[i]);
        if (st == DT_OK && s->bias) st = src->read(src, name, 1, bs, b + (size_t)i * s->out_each, err);
    }
    int out = s->n * s->out_each;
    if (st == DT_OK)
        st = src->make_linear ? src->make_linear(src, be, s->names[0], w, b, s->in, out, s->act, s->m_hint, s->dtype, lin, err)
                              : be->ops->linear_create(be, w, b, s->in, out, s->act, s->m_hint, s->dtype, lin, err);
    free(b);
    return st;
}

dt_status dt_load_linear1(dt_backend *be, dt_weight_source *src, const char *name, int in, int out, int bias,
                          dt_act act, int m_hint, dt_dtype dtype, dt_linear **lin, dt_err *err)
{
    dt_linear_spec s = {&name, 1, in, out, bias, act, m_hint, dtype};
    return dt_load_linear(be, src, &s, lin, err);
}

dt_status dt_load_param(dt_weight_source *src, const char *name, int ndim, const int64_t *shape, float **out, dt_err *err)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    *out = NULL;
    DT_TRY(dt_weights_expect(src, name, ndim, shape, err));
    *out = malloc((size_t)(n ? n : 1) * sizeof(float));
    if (!*out) return dt_fail(err, DT_ENOMEM, "out of memory loading %s", name);
    return src->read(src, name, ndim, shape, *out, err);
}

dt_status dt_load_param_dev(dt_backend *be, dt_weight_source *src, const char *name, int ndim, const int64_t *shape,
                            float **out, dt_err *err)
{
    float *host = NULL;
    *out = NULL;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    dt_status s = dt_load_param(src, name, ndim, shape, &host, err);
    if (s == DT_OK) s = dt_backend_upload(be, host, n, out, err);
    free(host);
    return s;
}

void dt_free_param(dt_backend *be, float *p)
{
    if (p) be->ops->buffer_free(be, p);
}

float *dt_stage_get(dt_stage *s, size_t n)
{
    if (n > s->n) {
        float *p = realloc(s->p, n * sizeof(float));
        if (!p) return NULL;
        s->p = p;
        s->n = n;
    }
    return s->p;
}

void dt_stage_free(dt_stage *s)
{
    free(s->p);
    *s = (dt_stage){0};
}
