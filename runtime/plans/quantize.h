/* Quantizing a model's linear layers while it loads (the weight source's make_linear hook).
 *
 * Calibrate: attach a dt_quantizer in DT_QMODE_OBSERVE; every quantizable layer is built
 * in float and wrapped to record max |x| per input channel over all calls (all steps, all
 * prompts) into the quantizer's table. Then quantize: attach one in W8A8/W4A8 mode with that
 * table; each quantizable layer gets ViDiT-Q's balancing (s from amax and alpha, when
 * `balance`), a random block-Hadamard rotation (when `rotate`) and int8 activations.
 * Which layers are quantized is the model's to say (dt_denoiser_class.linear_role, by its
 * checkpoint's names): ViDiT-Q keeps in floating point everything outside the transformer
 * blocks (patch embedding, timestep/adaLN-single, caption projection, proj_out); attention
 * matmuls are not linears: they stay float unless a plan asks for int8 self-attention
 * (attn_int8, which the hook passes to the model through the weight source). A U-Net's
 * quantizable convolutions come as GEMMs over im2col rows (DT_LINEAR_CONV); in FLOAT mode the
 * hook leaves them to the model's float convolution (*lin NULL). The quantizer must outlive the models built through it. */
#ifndef DT_QUANTIZE_H
#define DT_QUANTIZE_H
#include "runtime/models/denoiser.h"

/* FLOAT: count bytes only; OBSERVE: calibrate; QUANT: quantize from the statistics (and
 * keep the results when `record`, for dt_qplan_save); PLAN: build from a loaded plan. */
typedef enum { DT_QMODE_FLOAT = 0, DT_QMODE_OBSERVE, DT_QMODE_QUANT, DT_QMODE_PLAN } dt_qmode;

typedef struct {
    char name[128];
    int in, out;
    float *amax; /* [in]: calibration max |x| per input channel */
} dt_qlayer_stat;

typedef struct dt_qplan dt_qplan; /* quant_plan.h */

/* Mixed precision: the weight bits of one layer (0: keep it in floating point). */
typedef struct {
    char name[128];
    int bits;
} dt_qlayer_bits;
typedef struct dt_qrecord dt_qrecord;

typedef struct dt_quantizer {
    dt_qmode mode;
    int wbits;          /* DT_QMODE_QUANT: 8 or 4 (activations are always 8-bit); 0: float unless listed */
    const dt_qlayer_bits *layer_bits; /* optional per-layer override of wbits (not owned) */
    int nlayer_bits;
    int balance;        /* smoothing from the calibration table (needs a table entry per layer) */
    int rotate;         /* randomized block-Hadamard rotation */
    int group;          /* 4-bit layers: group-wise scales over this many input channels (0: per channel) */
    const int *fp_tokens; /* MixDQ: text tokens (indices per sequence) the cross-attention k|v layers */
    int nfp_tokens;       /* compute with their float weights (not owned) */
    float alpha;        /* balancing strength (ViDiT-Q's published PixArt configs: 0.99) */
    uint64_t seed;      /* rotation signs: seed + layer index */
    dt_qlayer_stat *stats;
    int nstats, cap;
    /* filled while building: resident bytes of every linear's weights (+ scales), and counts */
    double weight_bytes;
    double block_bytes; /* of those, the layers ViDiT-Q quantizes (whatever form they were built in) */
    int nquant, nfloat;
    /* parameters (in·out) of the layers ViDiT-Q quantizes: those reading the image/video
     * tokens, and the text k|v projections (DT_LINEAR_TEXT_KV); a step's quantized FLOPs */
    double token_params, text_params;
    int record;             /* QUANT: keep every quantized layer in rec (for dt_qplan_save) */
    dt_qrecord *rec;
    int nrec, reccap;
    dt_qplan *plan;         /* PLAN mode (not owned) */
    const dt_denoiser_class *cls; /* the model built through it (its linear roles); set by attach / dt_quant_load */
    int attn_int8;          /* QUANT: recorded in the plan ("attention": "int8"); PLAN: from it. In PLAN
                             * mode the model's DiT self-attention runs the backend's INT8 kernel
                             * (SageAttention-style QKᵀ; cross-attention, VAE and text encoder unchanged) */
} dt_quantizer;

/* The DT_LINEAR_* role of layer `name` in the model q builds (runtime/models/denoiser.h). */
unsigned dt_quantizer_role(const dt_quantizer *q, const char *name);
/* Gives the quantized layer *lin a float copy (weights w, dtype dt) for the text tokens. */
dt_status dt_quant_keep_tokens(dt_backend *be, const float *w, const float *b, int in, int out, dt_act act, int m_hint,
                               dt_dtype dt, const int *tokens, int n, dt_linear *lin, double *bytes, dt_err *err);
/* Routes src's linear layers, for a model of class cls, through q. Fails with a one-line
 * error when q quantizes (any mode but FLOAT) and cls has no quantizable layers. */
dt_status dt_quantizer_attach(dt_quantizer *q, const dt_denoiser_class *cls, dt_weight_source *src, dt_err *err);
/* Clears build counters (between models built with the same quantizer). */
void dt_quantizer_reset_counts(dt_quantizer *q);
const dt_qlayer_stat *dt_quantizer_find(const dt_quantizer *q, const char *name);
/* Frees the statistics and records (not the plan). */
void dt_quantizer_free(dt_quantizer *q);
/* A PLAN-mode quantizer over the plan folder dir (plan.json + weights.safetensors from
 * `ditrt quantize`), for building a model; the built layers copy what they use, so close it
 * right after (dt_quantizer_close_plan frees the plan too). */
dt_status dt_quantizer_open_plan(const char *dir, dt_quantizer *q, dt_err *err);
void dt_quantizer_close_plan(dt_quantizer *q);
/* dt_denoiser_load() of the transformer folder dir with its linears routed through q (its
 * class set as by dt_quantizer_attach; a PLAN-mode q must then have used every layer of its plan). */
dt_status dt_quant_load(dt_backend *be, const char *dir, dt_quantizer *q, dt_denoiser **out, dt_err *err);

#endif
