/* Loading the layers every model shares: linear layers (optionally several fused along the
 * output, as q|k|v), and plain parameter tables. Weights go through the weight source, and
 * linear layers through its make_linear hook when set (quantization), else the backend. */
#ifndef DT_LAYERS_H
#define DT_LAYERS_H
#include "weights.h"

typedef struct {
    const char *const *names; /* weight prefixes: <name>.weight [out_each, in] (+ <name>.bias) */
    int n;                    /* how many are fused along the output */
    int in, out_each;
    int bias;                 /* 1: <name>.bias [out_each] exists */
    dt_act act;               /* fused activation */
    int m_hint;               /* rows most calls will have (picks the GEMM weight layout) */
    dt_dtype dtype;           /* GEMM input dtype for this layer */
} dt_linear_spec;

dt_status dt_load_linear(dt_backend *be, dt_weight_source *src, const dt_linear_spec *spec, dt_linear **lin, dt_err *err);
/* One layer: the common case of dt_load_linear. */
dt_status dt_load_linear1(dt_backend *be, dt_weight_source *src, const char *name, int in, int out, int bias,
                          dt_act act, int m_hint, dt_dtype dtype, dt_linear **lin, dt_err *err);
/* A parameter tensor of `ndim` dims (shape[]), as a malloc'd f32 array. */
dt_status dt_load_param(dt_weight_source *src, const char *name, int ndim, const int64_t *shape, float **out, dt_err *err);
/* The same into the backend's memory (buffer_alloc + tensor_set): parameters that ops read
 * (modulation tables); free with dt_free_param. */
dt_status dt_load_param_dev(dt_backend *be, dt_weight_source *src, const char *name, int ndim, const int64_t *shape,
                            float **out, dt_err *err);
void dt_free_param(dt_backend *be, float *p);
/* Host staging for small per-call inputs computed on the host (timestep sinusoids, key masks)
 * before they are written to device memory: grows, never shrinks; freed with the model. */
typedef struct {
    float *p;
    size_t n;
} dt_stage;
float *dt_stage_get(dt_stage *s, size_t n);
void dt_stage_free(dt_stage *s);

#endif
