/* The public quantization entry points (include/ditrt.h, section "quantization") over
 * runtime/plans/quant_calib.c. */
#include "ditrt.h"
#include "api_internal.h"
#include "runtime/tuning/quant_calib.h"
#include "runtime/plans/quant_plan.h"
#include <string.h>

_Static_assert(DITRT_QUANT_MAX_FP_TEXT_TOKENS == DT_QMAX_FP_TOKENS, "the public token limit is the plan format's");

void ditrt_quantize_params_init(ditrt_quantize_params *p)
{
    if (!p) return;
    *p = (ditrt_quantize_params){.struct_size = sizeof *p, .scheme = "w8a8", .alpha = 0.5f, .balance = 1, .rotate = 1,
                                 .cfg = -1, .steps = 20};
}

void ditrt_quantize_result_init(ditrt_quantize_result *r) { if (r) *r = (ditrt_quantize_result){.struct_size = sizeof *r}; }

static dt_qcalib_config config_of(const ditrt_quantize_params *p)
{
    return (dt_qcalib_config){.model_dir = p->model_dir, .prompts = p->prompts, .nprompts = p->nprompts,
                              .out_dir = p->out_dir, .scheme = p->scheme, .budget = p->budget, .dtype = p->dtype,
                              .alpha = p->alpha, .cfg = p->cfg, .steps = p->steps, .width = p->width,
                              .height = p->height, .frames = p->frames, .threads = p->threads, .balance = p->balance,
                              .rotate = p->rotate, .group = p->group, .fp_tokens = p->fp_text_tokens,
                              .nfp_tokens = p->n_fp_text_tokens, .seed = p->seed, .log = p->log,
                              .log_user = p->log_user, .attn_int8 = p->int8_attention,
                              .sensitivity = p->sensitivity};
}

static dt_status read_params(const ditrt_quantize_params *in, ditrt_quantize_params *p, dt_err *err)
{
    return DT_API_READ(ditrt_quantize_params, in, p, log_user, ditrt_quantize_params_init, err);
}

ditrt_status ditrt_quantize_check(const ditrt_quantize_params *in, ditrt_error *err)
{
    dt_err e = {0};
    ditrt_quantize_params p;
    if (read_params(in, &p, &e) == DT_OK) {
        dt_qcalib_config c = config_of(&p);
        dt_qcalib_check(&c, &e);
    }
    if (err) *err = e;
    return e.status;
}

ditrt_status ditrt_quantize(const ditrt_quantize_params *in, ditrt_quantize_result *r, ditrt_error *err)
{
    dt_err e = {0};
    ditrt_quantize_params p;
    ditrt_quantize_result rv;
    dt_qcalib_result res = {0};
    if (read_params(in, &p, &e) == DT_OK &&
        (!r || DT_API_READ(ditrt_quantize_result, r, &rv, weight_bytes, ditrt_quantize_result_init, &e) == DT_OK)) {
        dt_qcalib_config c = config_of(&p);
        if (dt_api_cpu_dtype("dtype", p.dtype, "quantize", &c.dtype, &e) == DT_OK && dt_qcalib_run(&c, &res, &e) == DT_OK &&
            r) {
            rv.quantized = res.nquant;
            rv.kept_float = res.nfloat;
            rv.weight_bytes = res.weight_bytes;
            size_t n = r->struct_size; /* the caller's layout: its struct_size stays */
            memcpy((char *)r + sizeof n, (const char *)&rv + sizeof n, n - sizeof n);
        }
    }
    if (err) *err = e;
    return e.status;
}
