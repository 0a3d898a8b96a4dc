/* Quantization plans on disk: `DIR/plan.json` (per layer: weight and activation bits,
 * balancing, rotation, and the layers kept in floating point) and `DIR/weights.safetensors`
 * (per quantized layer: `<name>.q` I8 [out, in] or U8 [out, in/2] for 4-bit, `<name>.wscale`
 * F32 [out], `<name>.smooth` F32 [in] when balanced, `<name>.gscale` U8 [out, in/group] for
 * group-wise 4-bit layers (plan field "group"); rotation signs are regenerated from the
 * plan's seed). A quantized model then loads without calibrating: the float weights are
 * still read from the model (biases, the float layers), the quantized ones come from here.
 * A plan made for another model is refused naming the first layer that differs. */
#ifndef DT_QUANT_PLAN_H
#define DT_QUANT_PLAN_H
#include "quantize.h"
#include "kernels/quant.h"
#include "runtime/models/denoiser.h"

#define DT_QMAX_FP_TOKENS 16

struct dt_qrecord {
    char name[128];
    dt_qweights qw; /* qw.q == NULL: kept in floating point (in/out still set) */
    int balance;
    uint64_t seed; /* 0: no rotation */
    int nfp, fp_tokens[DT_QMAX_FP_TOKENS]; /* text tokens computed in floating point (plan field fp_tokens) */
};

typedef struct {
    char name[128];
    int in, out, wbits, abits, balance, rot_block, group, used;
    uint64_t seed;
    int nfp, fp_tokens[DT_QMAX_FP_TOKENS];
} dt_qplan_layer;

/* The model a plan was made for (plan.json "model_class" ..., written since 0.2; a plan
 * without them has class[0] == 0 and is checked layer by layer only). */
typedef struct {
    char class_name[64], dir[512];
    int blocks, temporal_blocks, hidden;
} dt_qplan_model;

struct dt_qplan {
    char dir[1024], scheme[16];
    int attn_int8; /* plan.json "attention": "int8" (absent or "float": 0) */
    dt_qplan_model model;
    dt_qplan_layer *layers;
    int n;
    dt_safetensors *st;
};

/* Writes q's records (QUANT mode with record=1; float-kept layers are records with wbits 0),
 * with the model's folder and its class and size (info, from the model built); q->attn_int8
 * adds "attention": "int8" (otherwise the field is absent, as in plans from before it). */
dt_status dt_qplan_save(const dt_quantizer *q, const char *dir, const char *scheme, const char *model,
                        const dt_qplan_model *made_for, dt_err *err);
dt_status dt_qplan_load(const char *dir, dt_qplan **out, dt_err *err);
void dt_qplan_free(dt_qplan *p);
/* Builds layer `name` from the plan (the quantizer's hook in PLAN mode); a layer the plan
 * keeps in floating point sets *keep_float and builds nothing. */
dt_status dt_qplan_make(dt_qplan *p, dt_backend *be, const char *name, const float *w, const float *b, int in, int out,
                        dt_act act, int m_hint, dt_dtype dt, dt_linear **lin, double *bytes, int *keep_float, dt_err *err);
/* Before a model is built: a plan recording another model (class, blocks, hidden width) is
 * refused as "plan is for <class> ..., this model is ...". */
dt_status dt_qplan_check_model(const dt_qplan *p, const dt_qplan_model *model, dt_err *err);
/* The record of the model in transformer folder dir, described by info (quantize.c). */
dt_qplan_model dt_qplan_model_of(const char *dir, const dt_denoiser_info *info);

/* After a model is built: fails naming the first plan layer the model did not have. */
dt_status dt_qplan_check_used(const dt_qplan *p, dt_err *err);

#endif
