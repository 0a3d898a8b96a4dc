/* cuDNN fused scaled-dot-product attention through the backend graph API, in C (C++ only for
 * the CUDA types; no cuDNN frontend): the graph the frontend's composite SDPA node lowers to on
 * cuDNN 9.x, which cuDNN's runtime fusion recognizes as flash attention:
 *   S = Q·Kᵀ (f32) → ·scale → + bias (optional) → max, sub, exp, sum (+ log-sum-exp stats,
 *   virtual) → ÷ sum → P (bf16/f16) → O = P·V.
 * Building is split where the device comes in: cu_sdpa_graph_ops makes and finalizes the
 * tensor and operation descriptors (no handle: cuda_selftest.cu runs it without a GPU), and
 * cu_sdpa_graph_plan makes the operation graph, asks the heuristics and finalizes the first
 * execution plan an engine accepts (needs the handle, hence a device). A plan is made once per
 * shape and run many times (cuda_sdpa.cu caches them). */
#ifndef DT_CUDA_SDPA_H
#define DT_CUDA_SDPA_H
#include "kernels/cuda/cuda_libs.h"
#include "kernels/cuda/sdpa_math.h"

typedef struct {
    int io;                  /* 1: bf16 Q/K/V/O/bias, 2: f16 */
    int64_t B, H, Nq, Nk, d; /* Q, O: packed [B, Nq, H·d]; K, V: packed [B, Nk, H·d] */
    int has_key, has_head;   /* bias: dtm_sdpa_bias_shape's tensor, present when either is set */
} cu_sdpa_shape;

/* Unique ids of the tensors a run binds (the variant pack). */
enum { CU_SDPA_Q = 1, CU_SDPA_K, CU_SDPA_V, CU_SDPA_O, CU_SDPA_SCALE, CU_SDPA_BIAS };

#define CU_SDPA_MAX_DESCS 128
#define CU_SDPA_MAX_OPS 12
typedef struct {
    cudnnBackendDescriptor_t all[CU_SDPA_MAX_DESCS]; /* every descriptor made, destroyed in reverse */
    int nall;
    cudnnBackendDescriptor_t ops[CU_SDPA_MAX_OPS];
    int nops;
    cudnnBackendDescriptor_t plan; /* NULL until cu_sdpa_graph_plan succeeds */
    int64_t ws_bytes;              /* the plan's workspace */
    int has_bias;
} cu_sdpa_graph;

/* Tensor and operation descriptors, finalized; no handle. On failure why[n] names the
 * descriptor and cuDNN's status (the graph is then freed by cu_sdpa_graph_free as usual). */
cudnnStatus_t cu_sdpa_graph_ops(const dt_cuda_libs *L, const cu_sdpa_shape *s, cu_sdpa_graph *g, char *why,
                                size_t n);
/* Operation graph, heuristics (mode A, then the fallback list) and the first execution plan
 * that finalizes. */
cudnnStatus_t cu_sdpa_graph_plan(const dt_cuda_libs *L, cudnnHandle_t h, cu_sdpa_graph *g, char *why, size_t n);
void cu_sdpa_graph_free(const dt_cuda_libs *L, cu_sdpa_graph *g);
/* Enqueues one run on h's stream: device pointers of the packed 16-bit tensors (bias NULL when
 * the graph has none), *scale read on the host at the call, ws of at least g->ws_bytes. */
cudnnStatus_t cu_sdpa_graph_run(const dt_cuda_libs *L, cudnnHandle_t h, const cu_sdpa_graph *g, void *q, void *k,
                                void *v, void *o, void *bias, float *scale, void *ws);

#endif
