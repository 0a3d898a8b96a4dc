/* Attention through cuDNN's fused SDPA graph (cuda_sdpa.h), the first choice of cu_attention
 * for bf16 and f16 compute: Q, K and V are rounded into packed 16-bit copies of the compute type
 * (dtype_math.h; the activations are f32), the caption key mask and T5's head bias are folded into
 * one bias tensor of that type, the cached plan
 * of the shape runs, and O comes back to f32 into out's rows.
 *
 * Plans: one graph and execution plan per shape key (dtm_sdpa_key), made at the shape's first
 * call and kept in a small per-backend cache (CU_SDPA_CACHE entries, replaced round robin), so a
 * sampling loop plans each of its attention shapes once. A shape whose graph fails to finalize,
 * or for which the heuristics find no engine, is remembered as failed and goes to the two-GEMM
 * path from then on; so do f32 compute (cuDNN's SDPA has no f32) and head dims it does not take
 * (dtm_sdpa_route). Each fallback reason is printed once per backend on stderr when
 * DITRT_VERBOSE=1. */
#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/cuda_sdpa.h"
#include <stdio.h>
#include <string.h>

#define CU_SDPA_CACHE 16

typedef struct {
    int used, failed;
    int64_t key[DTM_SDPA_KEY_LEN];
    cu_sdpa_graph g;
} cu_sdpa_entry;

struct cu_sdpa_cache {
    cu_sdpa_entry e[CU_SDPA_CACHE];
    int next;      /* the entry replaced next */
    unsigned said; /* fallback reasons already printed (bit per route) */
};

void cu_sdpa_cache_free(cuda_backend *cb)
{
    if (!cb->sdpa) return;
    for (int i = 0; i < CU_SDPA_CACHE; i++)
        if (cb->sdpa->e[i].used) cu_sdpa_graph_free(cb->L, &cb->sdpa->e[i].g);
    free(cb->sdpa);
    cb->sdpa = NULL;
}

static void note(cuda_backend *cb, int route, const char *detail)
{
    if (!cb->verbose || (cb->sdpa->said >> route & 1u)) return;
    cb->sdpa->said |= 1u << route;
    fprintf(stderr, "ditrt: cuda:%d attention: %s%s%s\n", cb->dev, dtm_sdpa_route_name(route), detail ? ": " : "",
            detail ? detail : "");
}

static cu_sdpa_entry *lookup(struct cu_sdpa_cache *c, const int64_t *key)
{
    for (int i = 0; i < CU_SDPA_CACHE; i++)
        if (c->e[i].used && !memcmp(c->e[i].key, key, sizeof c->e[i].key)) return &c->e[i];
    return NULL;
}

/* A new entry for key, planned (failed set when cuDNN refuses; why says how). */
static cu_sdpa_entry *plan(cuda_backend *cb, const int64_t *key, const cu_sdpa_shape *s, char *why, size_t n)
{
    struct cu_sdpa_cache *c = cb->sdpa;
    cu_sdpa_entry *e = &c->e[c->next];
    c->next = (c->next + 1) % CU_SDPA_CACHE;
    if (e->used) cu_sdpa_graph_free(cb->L, &e->g);
    memset(e, 0, sizeof *e);
    e->used = 1;
    memcpy(e->key, key, sizeof e->key);
    if (cu_sdpa_graph_ops(cb->L, s, &e->g, why, n) != CUDNN_STATUS_SUCCESS ||
        cu_sdpa_graph_plan(cb->L, cb->dnn, &e->g, why, n) != CUDNN_STATUS_SUCCESS) {
        cu_sdpa_graph_free(cb->L, &e->g);
        e->failed = 1;
    }
    return e;
}

/* dst (packed [B, N, C], 16-bit type t) = src's rows (f32, strides s0, s1, unit channel stride). */
__global__ void k_rows_to16(int t, const float *src, int64_t s0, int64_t s1, uint16_t *dst, int64_t N, int64_t C,
                            int64_t total)
{
    for (int64_t o = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; o < total; o += (int64_t)gridDim.x * blockDim.x) {
        int64_t c = o % C, i = (o / C) % N, b = o / (C * N);
        dst[o] = dtm_to16(t, src[b * s0 + i * s1 + c]);
    }
}

/* dst's rows (f32, strides s0, s1) = src (packed [B, N, C], 16-bit type t). */
__global__ void k_rows_from16(int t, const uint16_t *src, float *dst, int64_t s0, int64_t s1, int64_t N, int64_t C,
                              int64_t total)
{
    for (int64_t o = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; o < total; o += (int64_t)gridDim.x * blockDim.x) {
        int64_t c = o % C, i = (o / C) % N, b = o / (C * N);
        dst[b * s0 + i * s1 + c] = dtm_from16(t, src[o]);
    }
}

/* The folded bias (dtm_sdpa_bias_at), rounded to the 16-bit type t. */
__global__ void k_sdpa_bias(int t, uint16_t *dst, dtm_t4 s, const float *key, const float *head, int64_t total)
{
    for (int64_t o = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; o < total; o += (int64_t)gridDim.x * blockDim.x)
        dst[o] = dtm_to16(t, dtm_sdpa_bias_at(&s, o, key, head));
}

static size_t up256(size_t n) { return (n + 255) / 256 * 256; }

static dt_status run_fused(cuda_backend *cb, cu_sdpa_entry *e, const cu_sdpa_shape *s, const dt_tensor *q,
                           const dt_tensor *k, const dt_tensor *v, const float *kb, const float *hb, float scale,
                           dt_tensor *out, int *ran, dt_err *err)
{
    int64_t C = s->H * s->d, nq = s->B * s->Nq * C, nk = s->B * s->Nk * C;
    dtm_t4 bs = dtm_sdpa_bias_shape(s->B, s->H, s->Nq, s->Nk, s->has_key, s->has_head);
    int64_t nb = e->g.has_bias ? dtm_t4_numel(&bs) : 0;
    size_t oq = 0, ok = up256(nq * 2), ov = ok + up256(nk * 2), oo = ov + up256(nk * 2), ob = oo + up256(nq * 2);
    char *base;
    void *ws = NULL;
    DT_TRY(cu_scratch(cb, CU_SLOT_A, ob + up256(nb * 2), (void **)&base, err));
    if (e->g.ws_bytes > 0) DT_TRY(cu_scratch(cb, CU_SLOT_B, (size_t)e->g.ws_bytes, &ws, err));
    const int t = dtm_sdpa_io_type(s->io);
    uint16_t *Q = (uint16_t *)(base + oq), *K = (uint16_t *)(base + ok), *V = (uint16_t *)(base + ov);
    uint16_t *O = (uint16_t *)(base + oo), *Bi = nb ? (uint16_t *)(base + ob) : NULL;
    k_rows_to16<<<cu_blocks(nq, 256), 256, 0, cb->stream>>>(t, (const float *)q->data, q->strides[0], q->strides[1],
                                                                 Q, s->Nq, C, nq);
    k_rows_to16<<<cu_blocks(nk, 256), 256, 0, cb->stream>>>(t, (const float *)k->data, k->strides[0], k->strides[1],
                                                                 K, s->Nk, C, nk);
    k_rows_to16<<<cu_blocks(nk, 256), 256, 0, cb->stream>>>(t, (const float *)v->data, v->strides[0], v->strides[1],
                                                                 V, s->Nk, C, nk);
    if (nb) k_sdpa_bias<<<cu_blocks(nb, 256), 256, 0, cb->stream>>>(t, Bi, bs, kb, hb, nb);
    CU_LAUNCHED("attention: 16-bit copies for cuDNN");
    float sc = scale;
    cudnnStatus_t st = cu_sdpa_graph_run(cb->L, cb->dnn, &e->g, Q, K, V, O, Bi, &sc, ws);
    if (st != CUDNN_STATUS_SUCCESS) { /* the GEMM path recomputes out from q, k, v (unchanged) */
        char why[160];
        snprintf(why, sizeof why, "cudnnBackendExecute: %s", cb->L->cudnnGetErrorString(st));
        cu_sdpa_graph_free(cb->L, &e->g);
        e->failed = 1;
        note(cb, DTM_SDPA_GEMM_NOPLAN, why);
        return DT_OK;
    }
    k_rows_from16<<<cu_blocks(nq, 256), 256, 0, cb->stream>>>(t, O, (float *)out->data, out->strides[0],
                                                                   out->strides[1], s->Nq, C, nq);
    CU_LAUNCHED("attention: output from cuDNN");
    *ran = 1;
    return DT_OK;
}

dt_status cu_sdpa_attention(cuda_backend *cb, const dt_tensor *q, const dt_tensor *k, const dt_tensor *v,
                            const dt_attn_bias *bias, int heads, float scale, dt_tensor *out, int *ran, dt_err *err)
{
    *ran = 0;
    if (!cb->sdpa && !(cb->sdpa = (struct cu_sdpa_cache *)calloc(1, sizeof *cb->sdpa)))
        return dt_fail(err, DT_ENOMEM, "out of memory");
    cu_sdpa_shape s = {cu_ftype(cb->base.cfg.compute).sdpa_io, q->shape[0], heads, q->shape[1], k->shape[1],
                       q->shape[2] / heads, bias && bias->key, bias && bias->head};
    int64_t key[DTM_SDPA_KEY_LEN];
    dtm_sdpa_key(key, s.io, s.B, s.H, s.Nq, s.Nk, s.d, s.has_key, s.has_head);
    cu_sdpa_entry *e = s.io ? lookup(cb->sdpa, key) : NULL;
    int route = dtm_sdpa_route(cb->attn_gemm, s.io != 0, s.d, e && e->failed);
    char why[512] = "";
    if (route == DTM_SDPA_FUSED && !e) {
        e = plan(cb, key, &s, why, sizeof why);
        if (e->failed) route = DTM_SDPA_GEMM_NOPLAN;
    }
    if (route != DTM_SDPA_FUSED) {
        note(cb, route, why[0] ? why : NULL);
        return DT_OK;
    }
    float *kb = NULL, *hb = NULL;
    if (s.has_key) DT_TRY(cu_upload_scratch(cb, CU_SLOT_C, bias->key, (size_t)s.B * s.Nk, &kb, err));
    if (s.has_head) DT_TRY(cu_upload_scratch(cb, CU_SLOT_D, bias->head, (size_t)s.H * s.Nq * s.Nk, &hb, err));
    return run_fused(cb, e, &s, q, k, v, kb, hb, scale, out, ran, err);
}
