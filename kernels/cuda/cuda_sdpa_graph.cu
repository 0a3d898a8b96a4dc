/* The cuDNN SDPA graph's descriptors (see cuda_sdpa.h): tensors, operations, graph, plan and
 * the variant pack of one run. Every call goes through a small builder that stops at the
 * first failing cuDNN call and remembers which descriptor it was, so one line says why. */
#include "kernels/cuda/cuda_sdpa.h"
#include "kernels/cuda/dtype_math.h"
#include <stdio.h>

/* The handle attributes are marked deprecated in cuDNN 9.19 (in favour of device-property
 * descriptors) but are what the cuDNN frontend still sets; spelled by value so -Werror builds
 * do not trip on the deprecation (cudnn_graph.h: 800 and 400). */
static const cudnnBackendAttributeName_t CU_ATTR_OPGRAPH_HANDLE = (cudnnBackendAttributeName_t)800;
static const cudnnBackendAttributeName_t CU_ATTR_PLAN_HANDLE = (cudnnBackendAttributeName_t)400;

typedef struct {
    const dt_cuda_libs *L;
    cu_sdpa_graph *g;
    cudnnStatus_t st;
    const char *where; /* the descriptor being built when st went bad */
} gb;

static cudnnBackendDescriptor_t make(gb *b, cudnnBackendDescriptorType_t t, const char *what)
{
    cudnnBackendDescriptor_t d = NULL;
    if (b->st != CUDNN_STATUS_SUCCESS) return NULL;
    b->where = what;
    if (b->g->nall == CU_SDPA_MAX_DESCS) {
        b->st = CUDNN_STATUS_INTERNAL_ERROR;
        return NULL;
    }
    b->st = b->L->cudnnBackendCreateDescriptor(t, &d);
    if (b->st == CUDNN_STATUS_SUCCESS) b->g->all[b->g->nall++] = d;
    return b->st == CUDNN_STATUS_SUCCESS ? d : NULL;
}

static void set(gb *b, cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t a, cudnnBackendAttributeType_t t,
                int64_t count, const void *v)
{
    if (b->st == CUDNN_STATUS_SUCCESS) b->st = b->L->cudnnBackendSetAttribute(d, a, t, count, v);
}

static void fin(gb *b, cudnnBackendDescriptor_t d)
{
    if (b->st == CUDNN_STATUS_SUCCESS) b->st = b->L->cudnnBackendFinalize(d);
}

static cudnnBackendDescriptor_t tensor(gb *b, int64_t uid, cudnnDataType_t dt, const dtm_t4 *t, bool virt,
                                       bool by_value, const char *what)
{
    cudnnBackendDescriptor_t d = make(b, CUDNN_BACKEND_TENSOR_DESCRIPTOR, what);
    int64_t align = by_value ? 4 : 16;
    set(b, d, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dt);
    set(b, d, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, t->dim);
    set(b, d, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, t->stride);
    set(b, d, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
    set(b, d, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align);
    if (virt) set(b, d, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &virt);
    if (by_value) set(b, d, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &by_value);
    fin(b, d);
    return d;
}

static void add_op(gb *b, cudnnBackendDescriptor_t op)
{
    if (b->st != CUDNN_STATUS_SUCCESS) return;
    if (b->g->nops == CU_SDPA_MAX_OPS) b->st = CUDNN_STATUS_INTERNAL_ERROR;
    else b->g->ops[b->g->nops++] = op;
}

/* y = x ∘ bb (bb NULL: a unary mode), math in f32. */
static void pointwise(gb *b, cudnnPointwiseMode_t mode, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t bb,
                      cudnnBackendDescriptor_t y, const char *what)
{
    cudnnBackendDescriptor_t pw = make(b, CUDNN_BACKEND_POINTWISE_DESCRIPTOR, what);
    cudnnDataType_t f32 = CUDNN_DATA_FLOAT;
    set(b, pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode);
    set(b, pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &f32);
    fin(b, pw);
    cudnnBackendDescriptor_t op = make(b, CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, what);
    set(b, op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &pw);
    set(b, op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x);
    if (bb) set(b, op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &bb);
    set(b, op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y);
    fin(b, op);
    add_op(b, op);
}

/* y[.., 1] = reduce over the last dim of x, in f32. */
static void reduction(gb *b, cudnnReduceTensorOp_t mode, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t y,
                      const char *what)
{
    cudnnBackendDescriptor_t rd = make(b, CUDNN_BACKEND_REDUCTION_DESCRIPTOR, what);
    cudnnDataType_t f32 = CUDNN_DATA_FLOAT;
    set(b, rd, CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &mode);
    set(b, rd, CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &f32);
    fin(b, rd);
    cudnnBackendDescriptor_t op = make(b, CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR, what);
    set(b, op, CUDNN_ATTR_OPERATION_REDUCTION_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &rd);
    set(b, op, CUDNN_ATTR_OPERATION_REDUCTION_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x);
    set(b, op, CUDNN_ATTR_OPERATION_REDUCTION_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y);
    fin(b, op);
    add_op(b, op);
}

/* c = a·bm (batched over the two outer dims), f32 accumulation. */
static void matmul(gb *b, cudnnBackendDescriptor_t a, cudnnBackendDescriptor_t bm, cudnnBackendDescriptor_t c,
                   const char *what)
{
    cudnnBackendDescriptor_t mm = make(b, CUDNN_BACKEND_MATMUL_DESCRIPTOR, what);
    cudnnDataType_t f32 = CUDNN_DATA_FLOAT;
    set(b, mm, CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &f32);
    fin(b, mm);
    cudnnBackendDescriptor_t op = make(b, CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR, what);
    set(b, op, CUDNN_ATTR_OPERATION_MATMUL_ADESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &a);
    set(b, op, CUDNN_ATTR_OPERATION_MATMUL_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &bm);
    set(b, op, CUDNN_ATTR_OPERATION_MATMUL_CDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &c);
    set(b, op, CUDNN_ATTR_OPERATION_MATMUL_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &mm);
    fin(b, op);
    add_op(b, op);
}

static cudnnStatus_t done(gb *b, char *why, size_t n)
{
    if (b->st != CUDNN_STATUS_SUCCESS)
        snprintf(why, n, "cuDNN SDPA graph: %s: %s", b->where ? b->where : "?", b->L->cudnnGetErrorString(b->st));
    return b->st;
}

cudnnStatus_t cu_sdpa_graph_ops(const dt_cuda_libs *L, const cu_sdpa_shape *s, cu_sdpa_graph *g, char *why, size_t n)
{
    gb b = {L, g, CUDNN_STATUS_SUCCESS, NULL};
    int64_t C = s->H * s->d, B = s->B, H = s->H, Nq = s->Nq, Nk = s->Nk;
    const int t = dtm_sdpa_io_type(s->io); /* dtype_math.h's table: the one bf16/f16 mapping */
    cudnnDataType_t io = (cudnnDataType_t)dtm_float_type_of(t).cudnn, f32 = CUDNN_DATA_FLOAT;
    if (t < 0) {
        snprintf(why, n, "cuDNN SDPA graph: io type %d (expected bf16 or f16)", s->io);
        return CUDNN_STATUS_BAD_PARAM;
    }
    g->has_bias = s->has_key || s->has_head;
    dtm_t4 tq = dtm_sdpa_bhsd(B, H, Nq, s->d, C, Nq * C), tk = dtm_sdpa_bhds(B, H, Nk, s->d, C, Nk * C);
    dtm_t4 tv = dtm_sdpa_bhsd(B, H, Nk, s->d, C, Nk * C), to = tq;
    dtm_t4 ts = dtm_sdpa_packed(B, H, Nq, Nk), tr = dtm_sdpa_packed(B, H, Nq, 1), t1 = dtm_sdpa_packed(1, 1, 1, 1);
    dtm_t4 tb = dtm_sdpa_bias_shape(B, H, Nq, Nk, s->has_key, s->has_head);
    cudnnBackendDescriptor_t Q = tensor(&b, CU_SDPA_Q, io, &tq, false, false, "Q tensor");
    cudnnBackendDescriptor_t K = tensor(&b, CU_SDPA_K, io, &tk, false, false, "K tensor");
    cudnnBackendDescriptor_t V = tensor(&b, CU_SDPA_V, io, &tv, false, false, "V tensor");
    cudnnBackendDescriptor_t O = tensor(&b, CU_SDPA_O, io, &to, false, false, "O tensor");
    cudnnBackendDescriptor_t SC = tensor(&b, CU_SDPA_SCALE, f32, &t1, false, true, "scale tensor");
    cudnnBackendDescriptor_t BI = g->has_bias ? tensor(&b, CU_SDPA_BIAS, io, &tb, false, false, "bias tensor") : NULL;
    int64_t uid = 100; /* virtual tensors */
    cudnnBackendDescriptor_t S = tensor(&b, uid++, f32, &ts, true, false, "scores");
    cudnnBackendDescriptor_t S1 = tensor(&b, uid++, f32, &ts, true, false, "scaled scores");
    cudnnBackendDescriptor_t S2 = g->has_bias ? tensor(&b, uid++, f32, &ts, true, false, "biased scores") : S1;
    cudnnBackendDescriptor_t M = tensor(&b, uid++, f32, &tr, true, false, "row max");
    cudnnBackendDescriptor_t S3 = tensor(&b, uid++, f32, &ts, true, false, "centred scores");
    cudnnBackendDescriptor_t E = tensor(&b, uid++, f32, &ts, true, false, "exp");
    cudnnBackendDescriptor_t Z = tensor(&b, uid++, f32, &tr, true, false, "row sum");
    cudnnBackendDescriptor_t LZ = tensor(&b, uid++, f32, &tr, true, false, "log row sum");
    cudnnBackendDescriptor_t ST = tensor(&b, uid++, f32, &tr, true, false, "softmax stats");
    cudnnBackendDescriptor_t P = tensor(&b, uid++, io, &ts, true, false, "probabilities");
    matmul(&b, Q, K, S, "Q·K^T");
    pointwise(&b, CUDNN_POINTWISE_MUL, S, SC, S1, "scale");
    if (g->has_bias) pointwise(&b, CUDNN_POINTWISE_ADD, S1, BI, S2, "bias add");
    reduction(&b, CUDNN_REDUCE_TENSOR_MAX, S2, M, "row max");
    pointwise(&b, CUDNN_POINTWISE_SUB, S2, M, S3, "subtract max");
    pointwise(&b, CUDNN_POINTWISE_EXP, S3, NULL, E, "exp");
    reduction(&b, CUDNN_REDUCE_TENSOR_ADD, E, Z, "row sum");
    /* the log-sum-exp stats, virtual: the frontend's inference graph has them too, and the
     * fused engines' pattern includes them */
    pointwise(&b, CUDNN_POINTWISE_LOG, Z, NULL, LZ, "log");
    pointwise(&b, CUDNN_POINTWISE_ADD, M, LZ, ST, "stats");
    pointwise(&b, CUDNN_POINTWISE_DIV, E, Z, P, "normalize");
    matmul(&b, P, V, O, "P·V");
    return done(&b, why, n);
}

#define CU_SDPA_MAX_CFGS 16

/* One heuristics mode: its engine configurations in order, and the first an execution plan
 * finalizes with (g->plan, g->ws_bytes). *offered: how many it gave; *last: the last refusal. */
static void try_mode(gb *b, cudnnBackendDescriptor_t graph, cudnnBackendHeurMode_t mode, cudnnHandle_t h,
                     int64_t *offered, cudnnStatus_t *last)
{
    const dt_cuda_libs *L = b->L;
    cu_sdpa_graph *g = b->g;
    cudnnBackendDescriptor_t heur = make(b, CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, "heuristics");
    set(b, heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph);
    set(b, heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode);
    fin(b, heur);
    int64_t count = 0, got = 0;
    if (b->st == CUDNN_STATUS_SUCCESS)
        b->st = L->cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0,
                                            &count, NULL);
    count = count > CU_SDPA_MAX_CFGS ? CU_SDPA_MAX_CFGS : count;
    cudnnBackendDescriptor_t cfg[CU_SDPA_MAX_CFGS];
    for (int64_t i = 0; i < count; i++) cfg[i] = make(b, CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, "engine config");
    if (b->st == CUDNN_STATUS_SUCCESS && count > 0)
        b->st = L->cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, count,
                                            &got, cfg);
    if (b->st != CUDNN_STATUS_SUCCESS) return;
    *offered += got;
    for (int64_t i = 0; i < got && !g->plan && g->nall < CU_SDPA_MAX_DESCS; i++) {
        cudnnBackendDescriptor_t plan = make(b, CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, "execution plan");
        set(b, plan, CU_ATTR_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &h);
        set(b, plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cfg[i]);
        fin(b, plan);
        int64_t ws = 0, k = 0;
        if (b->st == CUDNN_STATUS_SUCCESS)
            b->st = L->cudnnBackendGetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1,
                                                &k, &ws);
        if (b->st == CUDNN_STATUS_SUCCESS) g->plan = plan, g->ws_bytes = ws;
        else *last = b->st, b->st = CUDNN_STATUS_SUCCESS; /* try the next configuration */
    }
}

cudnnStatus_t cu_sdpa_graph_plan(const dt_cuda_libs *L, cudnnHandle_t h, cu_sdpa_graph *g, char *why, size_t n)
{
    gb b = {L, g, CUDNN_STATUS_SUCCESS, NULL};
    cudnnBackendDescriptor_t graph = make(&b, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, "operation graph");
    set(&b, graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, g->nops, g->ops);
    set(&b, graph, CU_ATTR_OPGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &h);
    fin(&b, graph);
    if (b.st != CUDNN_STATUS_SUCCESS) return done(&b, why, n);
    /* the heuristics' own order (mode A), then its fallback list, as the cuDNN frontend does;
     * the first configuration an execution plan finalizes with wins */
    int64_t offered = 0;
    cudnnStatus_t last = CUDNN_STATUS_NOT_SUPPORTED;
    const char *where = "execution plan";
    static const cudnnBackendHeurMode_t modes[] = {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK};
    for (int m = 0; m < 2 && !g->plan; m++) {
        try_mode(&b, graph, modes[m], h, &offered, &last);
        if (b.st != CUDNN_STATUS_SUCCESS) /* this mode's heuristics refused the graph: the next one may not */
            last = b.st, where = b.where ? b.where : "?", b.st = CUDNN_STATUS_SUCCESS;
    }
    if (g->plan) return CUDNN_STATUS_SUCCESS;
    snprintf(why, n, "cuDNN SDPA graph: %s (%lld configurations tried; last refusal: %s at the %s)",
             offered ? "no engine configuration finalized" : "the heuristics offer no engine", (long long)offered,
             L->cudnnGetErrorString(last), where);
    return last == CUDNN_STATUS_SUCCESS ? CUDNN_STATUS_NOT_SUPPORTED : last;
}

void cu_sdpa_graph_free(const dt_cuda_libs *L, cu_sdpa_graph *g)
{
    for (int i = g->nall - 1; i >= 0; i--) L->cudnnBackendDestroyDescriptor(g->all[i]);
    g->nall = g->nops = 0;
    g->plan = NULL;
}

cudnnStatus_t cu_sdpa_graph_run(const dt_cuda_libs *L, cudnnHandle_t h, const cu_sdpa_graph *g, void *q, void *k,
                                void *v, void *o, void *bias, float *scale, void *ws)
{
    int64_t uids[6] = {CU_SDPA_Q, CU_SDPA_K, CU_SDPA_V, CU_SDPA_O, CU_SDPA_SCALE, CU_SDPA_BIAS};
    void *ptrs[6] = {q, k, v, o, scale, bias};
    int64_t nt = g->has_bias ? 6 : 5;
    cudnnBackendDescriptor_t pack = NULL;
    cudnnStatus_t st = L->cudnnBackendCreateDescriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &pack);
    if (st == CUDNN_STATUS_SUCCESS)
        st = L->cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, nt, uids);
    if (st == CUDNN_STATUS_SUCCESS)
        st = L->cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, nt, ptrs);
    if (st == CUDNN_STATUS_SUCCESS)
        st = L->cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &ws);
    if (st == CUDNN_STATUS_SUCCESS) st = L->cudnnBackendFinalize(pack);
    if (st == CUDNN_STATUS_SUCCESS) st = L->cudnnBackendExecute(h, g->plan, pack);
    if (pack) L->cudnnBackendDestroyDescriptor(pack);
    return st;
}
