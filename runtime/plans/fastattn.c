/* DiTFastAttn: plan files, their cost, and the self-attention hook with its caches. */
#include "runtime/core/fileio.h"
#include "fastattn.h"
#include "runtime/core/json.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- plans ---- */

static const struct { const char *name; dt_fa_method m; } method_names[] = {
    {"full", DT_FA_FULL}, {"wars", DT_FA_WARS}, {"ast", DT_FA_AST}, {"asc", DT_FA_ASC},
    {"wars+asc", DT_FA_WARS_ASC}, {"full+asc", DT_FA_ASC},
    /* the published code's names */
    {"full_attn", DT_FA_FULL}, {"residual_window_attn", DT_FA_WARS}, {"output_share", DT_FA_AST},
    {"full_attn+cfg_attn_share", DT_FA_ASC}, {"residual_window_attn+cfg_attn_share", DT_FA_WARS_ASC},
};

const char *dt_fa_method_name(dt_fa_method m)
{
    static const char *names[DT_FA_COUNT] = {"full", "wars", "ast", "asc", "wars+asc"};
    return (unsigned)m < DT_FA_COUNT ? names[m] : "?";
}

static int parse_method(const char *s, dt_fa_method *m)
{
    for (size_t i = 0; i < sizeof method_names / sizeof *method_names; i++)
        if (!strcmp(s, method_names[i].name)) { *m = method_names[i].m; return 1; }
    return 0;
}

static int is_window(dt_fa_method m) { return m == DT_FA_WARS || m == DT_FA_WARS_ASC; }
static int is_computed_full(dt_fa_method m) { return m == DT_FA_FULL || m == DT_FA_ASC; }

dt_status dt_attn_plan_init(dt_attn_plan *p, int layers, int steps, int window, dt_err *err)
{
    *p = (dt_attn_plan){.steps = steps, .layers = layers, .window = window};
    if (layers <= 0 || steps <= 0 || window < 0)
        return dt_fail(err, DT_EINVAL, "attention plan: layers and steps must be positive and window >= 0");
    p->m = calloc((size_t)layers * steps, 1);
    return p->m ? DT_OK : dt_fail(err, DT_ENOMEM, "out of memory");
}

dt_status dt_attn_plan_init_video(dt_attn_plan *p, int layers, int steps, int window, int temporal_window, dt_err *err)
{
    if (temporal_window < 0) return dt_fail(err, DT_EINVAL, "attention plan: temporal window must be >= 0");
    DT_TRY(dt_attn_plan_init(p, 2 * layers, steps, window, err));
    p->temporal = layers;
    p->temporal_window = temporal_window;
    return DT_OK;
}

void dt_attn_plan_row_name(const dt_attn_plan *p, int layer, char *buf, size_t size)
{
    int spatial = p->layers - p->temporal;
    if (!p->temporal) snprintf(buf, size, "layer %d", layer);
    else if (layer < spatial) snprintf(buf, size, "spatial layer %d", layer);
    else snprintf(buf, size, "temporal layer %d", layer - spatial);
}

void dt_attn_plan_free(dt_attn_plan *p)
{
    free(p->m);
    p->m = NULL;
}

dt_status dt_attn_plan_validate(const dt_attn_plan *p, const char *what, dt_err *err)
{
    for (int l = 0; l < p->layers; l++) {
        int computed = 0, residual = 0;
        char row[48];
        dt_attn_plan_row_name(p, l, row, sizeof row);
        for (int t = 0; t < p->steps; t++) {
            dt_fa_method m = dt_attn_plan_at(p, l, t);
            if (m >= DT_FA_COUNT) return dt_fail(err, DT_EFORMAT, "%s: %s step %d: unknown method %d", what, row, t, (int)m);
            if (m == DT_FA_AST && !computed)
                return dt_fail(err, DT_EFORMAT, "%s: %s step %d: \"ast\" has no cached output (no computed step before it)", what, row, t);
            if (is_window(m) && !residual)
                return dt_fail(err, DT_EFORMAT, "%s: %s step %d: \"%s\" has no cached residual (no full or asc step before it)",
                               what, row, t, dt_fa_method_name(m));
            computed |= m != DT_FA_AST;
            residual |= is_computed_full(m);
        }
    }
    return DT_OK;
}

dt_status dt_attn_plan_check(const dt_attn_plan *p, int layers, int temporal, int steps, dt_err *err)
{
    int spatial = p->layers - p->temporal;
    const char *kind = temporal ? "spatial layer" : "layer";
    if (layers + temporal <= 0) /* a U-Net: no DiT blocks for a plan's rows */
        return dt_fail(err, DT_EUNSUPPORTED, "attention plan: DiTFastAttn plans apply to diffusion transformers; this model has no DiT blocks (a U-Net?)");
    if (temporal && !p->temporal)
        return dt_fail(err, DT_EINVAL, "attention plan: temporal layer 0 step 0: the plan has no temporal layers (an image "
                                       "model's plan?), the model has %d spatial and %d temporal layers", layers, temporal);
    if (!temporal && p->temporal)
        return dt_fail(err, DT_EINVAL, "attention plan: temporal layer 0 step 0: the plan has %d temporal layers (a video "
                                       "model's plan?), the model has none", p->temporal);
    if (spatial != layers)
        return dt_fail(err, DT_EINVAL, "attention plan: %s %d step 0: made for %d %ss, the model has %d", kind,
                       spatial < layers ? spatial : layers, spatial, kind, layers);
    if (p->temporal != temporal)
        return dt_fail(err, DT_EINVAL, "attention plan: temporal layer %d step 0: made for %d temporal layers, the model has %d",
                       p->temporal < temporal ? p->temporal : temporal, p->temporal, temporal);
    if (p->steps != steps)
        return dt_fail(err, DT_EINVAL, "attention plan: made for %d steps, this run has %d (run it with --steps %d, or "
                       "calibrate a plan at %d steps)", p->steps, steps, p->steps, steps);
    return DT_OK;
}

/* Rows of `arr` into p->m from row `row0` on. */
static dt_status parse_rows(const cJSON *arr, const char *what, int row0, dt_attn_plan *p, dt_err *err)
{
    int l = row0;
    for (const cJSON *row = arr->child; row; row = row->next, l++) {
        char name[48];
        dt_attn_plan_row_name(p, l, name, sizeof name);
        if (!cJSON_IsArray(row) || cJSON_GetArraySize(row) != p->steps)
            return dt_fail(err, DT_EFORMAT, "%s: %s: expected an array of %d methods (one per step)", what, name, p->steps);
        int t = 0;
        for (const cJSON *e = row->child; e; e = e->next, t++) {
            dt_fa_method m;
            if (!cJSON_IsString(e) || !parse_method(e->valuestring, &m))
                return dt_fail(err, DT_EFORMAT, "%s: %s step %d: unknown method %s%s%s (expected full, wars, ast, asc, wars+asc)",
                               what, name, t, cJSON_IsString(e) ? "\"" : "", cJSON_IsString(e) ? e->valuestring : "(not a string)",
                               cJSON_IsString(e) ? "\"" : "");
            p->m[(size_t)l * p->steps + t] = (unsigned char)m;
        }
    }
    return DT_OK;
}

/* "layers" and, for video plans, "temporal_layers" (tarr, or NULL). */
static dt_status parse_layers(const cJSON *arr, const cJSON *tarr, const char *what, dt_attn_plan *p, dt_err *err)
{
    int L = cJSON_GetArraySize(arr), Lt = tarr ? cJSON_GetArraySize(tarr) : 0;
    if (L <= 0) return dt_fail(err, DT_EFORMAT, "%s: field \"layers\" must be a non-empty array of per-layer arrays", what);
    if (tarr && Lt <= 0)
        return dt_fail(err, DT_EFORMAT, "%s: field \"temporal_layers\" must be a non-empty array of per-layer arrays", what);
    dt_attn_plan opts = *p; /* init resets the options */
    DT_TRY(dt_attn_plan_init(p, L + Lt, opts.steps, opts.window, err));
    memcpy(p->model, opts.model, sizeof p->model);
    p->cfg_half = opts.cfg_half;
    p->asc_residual = opts.asc_residual;
    p->temporal = Lt;
    p->temporal_window = opts.temporal_window;
    p->tokens = opts.tokens;
    DT_TRY(parse_rows(arr, what, 0, p, err));
    return tarr ? parse_rows(tarr, what, L, p, err) : DT_OK;
}

static dt_status parse_obj(const cJSON *j, const char *what, dt_attn_plan *p, dt_err *err)
{
    static const char *known[] = {"format", "model", "steps", "window", "cfg_half", "asc_residual", "layers",
                                  "temporal_window", "temporal_layers", "tokens"};
    for (const cJSON *e = j->child; e; e = e->next) {
        size_t k = 0;
        while (k < sizeof known / sizeof *known && strcmp(e->string, known[k])) k++;
        if (k == sizeof known / sizeof *known) return dt_fail(err, DT_EFORMAT, "%s: unknown field \"%s\"", what, e->string);
    }
    char s[64];
    DT_TRY(dt_json_str(j, what, "format", "ditrt-attn-plan", s, sizeof s, err));
    if (strcmp(s, "ditrt-attn-plan")) return dt_fail(err, DT_EFORMAT, "%s: field \"format\" is \"%s\", expected \"ditrt-attn-plan\"", what, s);
    dt_attn_plan q = {0};
    DT_TRY(dt_json_str(j, what, "model", "", q.model, sizeof q.model, err));
    DT_TRY(dt_json_int(j, what, "steps", 0, 0, &q.steps, err));
    DT_TRY(dt_json_int(j, what, "window", 0, 0, &q.window, err));
    if (q.steps <= 0) return dt_fail(err, DT_EFORMAT, "%s: field \"steps\" must be positive, got %d", what, q.steps);
    if (q.window < 0) return dt_fail(err, DT_EFORMAT, "%s: field \"window\" must be >= 0, got %d", what, q.window);
    DT_TRY(dt_json_int(j, what, "tokens", 1, 0, &q.tokens, err));
    if (q.tokens < 0) return dt_fail(err, DT_EFORMAT, "%s: field \"tokens\" must be >= 0, got %d", what, q.tokens);
    DT_TRY(dt_json_str(j, what, "cfg_half", "cond", s, sizeof s, err));
    if (strcmp(s, "cond") && strcmp(s, "uncond"))
        return dt_fail(err, DT_EFORMAT, "%s: field \"cfg_half\" is \"%s\", expected \"cond\" or \"uncond\"", what, s);
    q.cfg_half = strcmp(s, "cond") ? DT_FA_HALF_UNCOND : DT_FA_HALF_COND;
    DT_TRY(dt_json_str(j, what, "asc_residual", "same", s, sizeof s, err));
    if (strcmp(s, "same") && strcmp(s, "first"))
        return dt_fail(err, DT_EFORMAT, "%s: field \"asc_residual\" is \"%s\", expected \"same\" or \"first\"", what, s);
    q.asc_residual = strcmp(s, "same") ? DT_FA_RES_FIRST : DT_FA_RES_SAME;
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(j, "layers");
    const cJSON *tl = cJSON_GetObjectItemCaseSensitive(j, "temporal_layers");
    if (!cJSON_IsArray(layers)) return dt_fail(err, DT_EFORMAT, "%s: field \"layers\" must be an array (one array of methods per layer)", what);
    if (tl && !cJSON_IsArray(tl))
        return dt_fail(err, DT_EFORMAT, "%s: field \"temporal_layers\" must be an array (one array of methods per temporal layer)", what);
    int has_tw = cJSON_GetObjectItemCaseSensitive(j, "temporal_window") != NULL;
    if (!tl != !has_tw)
        return dt_fail(err, DT_EFORMAT, "%s: fields \"temporal_layers\" and \"temporal_window\" go together (video plans)", what);
    if (tl) {
        DT_TRY(dt_json_int(j, what, "temporal_window", 0, 0, &q.temporal_window, err));
        if (q.temporal_window < 0)
            return dt_fail(err, DT_EFORMAT, "%s: field \"temporal_window\" must be >= 0, got %d", what, q.temporal_window);
    }
    *p = q;
    return parse_layers(layers, tl, what, p, err);
}

dt_status dt_attn_plan_parse(const char *text, const char *what, dt_attn_plan *p, dt_err *err)
{
    *p = (dt_attn_plan){0};
    cJSON *j = cJSON_Parse(text);
    if (!cJSON_IsObject(j)) { cJSON_Delete(j); return dt_fail(err, DT_EFORMAT, "%s: not a JSON object", what); }
    dt_status s = parse_obj(j, what, p, err);
    cJSON_Delete(j);
    if (s == DT_OK) s = dt_attn_plan_validate(p, what, err);
    if (s != DT_OK) dt_attn_plan_free(p);
    return s;
}

dt_status dt_attn_plan_load(const char *path, dt_attn_plan *p, dt_err *err)
{
    *p = (dt_attn_plan){0};
    FILE *f = fopen(path, "rb");
    if (!f) return dt_fail(err, DT_EIO, "%s: cannot open: %s", path, strerror(errno));
    char *buf = NULL;
    size_t n = 0, cap = 0;
    dt_status s = DT_OK;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            char *nb = realloc(buf, cap = 2 * cap + 8192);
            if (!nb) { s = dt_fail(err, DT_ENOMEM, "out of memory"); break; }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, 4096, f);
        n += r;
        if (r < 4096) break;
    }
    if (s == DT_OK && ferror(f)) s = dt_fail(err, DT_EIO, "%s: read error", path);
    fclose(f);
    if (s == DT_OK) {
        buf[n] = 0;
        s = dt_attn_plan_parse(buf, path, p, err);
    }
    free(buf);
    return s;
}

dt_status dt_attn_plan_save(const dt_attn_plan *p, const char *path, dt_err *err)
{
    dt_outfile o;
    DT_TRY(dt_outfile_open(&o, path, "w", err));
    FILE *f = o.f;
    cJSON *model = cJSON_CreateString(p->model);
    char *mq = model ? cJSON_PrintUnformatted(model) : NULL;
    fprintf(f, "{\n  \"format\": \"ditrt-attn-plan\",\n  \"model\": %s,\n  \"steps\": %d,\n  \"window\": %d,\n",
            mq ? mq : "\"\"", p->steps, p->window);
    if (p->tokens > 0) fprintf(f, "  \"tokens\": %d,\n", p->tokens);
    fprintf(f, "  \"cfg_half\": \"%s\",\n  \"asc_residual\": \"%s\",\n  \"layers\": [\n",
            p->cfg_half == DT_FA_HALF_COND ? "cond" : "uncond", p->asc_residual == DT_FA_RES_SAME ? "same" : "first");
    free(mq);
    cJSON_Delete(model);
    int spatial = p->layers - p->temporal;
    for (int l = 0; l < p->layers; l++) {
        if (l == spatial) fprintf(f, "  ],\n  \"temporal_window\": %d,\n  \"temporal_layers\": [\n", p->temporal_window);
        fprintf(f, "    [");
        for (int t = 0; t < p->steps; t++) fprintf(f, "%s\"%s\"", t ? ", " : "", dt_fa_method_name(dt_attn_plan_at(p, l, t)));
        fprintf(f, "]%s\n", l + 1 < p->layers && l + 1 != spatial ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    return dt_outfile_close(&o, !ferror(f), err);
}

int dt_attn_plan_residual_live(const dt_attn_plan *p, int layer, int step)
{
    for (int t = step + 1; t < p->steps; t++) {
        dt_fa_method m = dt_attn_plan_at(p, layer, t);
        if (is_window(m)) return 1;
        if (is_computed_full(m)) return 0; /* recomputed there */
    }
    return 0;
}

int dt_attn_plan_output_live(const dt_attn_plan *p, int layer, int step)
{
    return step + 1 < p->steps && dt_attn_plan_at(p, layer, step + 1) == DT_FA_AST;
}

double dt_fa_band_pairs(int64_t N, int64_t w)
{
    double n = 0;
    for (int64_t i = 0; i < N; i++) n += (double)((i + w < N - 1 ? i + w : N - 1) - (i - w > 0 ? i - w : 0) + 1);
    return n;
}

/* Rows l0..l1-1 over B sequences of N tokens with window w. */
static void cost_rows(const dt_attn_plan *p, int l0, int l1, double B, int N, int C, int w, dt_attn_plan_cost *o)
{
    double full = 4.0 * B * (double)N * N * C, win = 4.0 * B * dt_fa_band_pairs(N, w) * C;
    double proj = 8.0 * B * (double)N * C * C;
    for (int l = l0; l < l1; l++)
        for (int t = 0; t < p->steps; t++) {
            dt_fa_method m = dt_attn_plan_at(p, l, t);
            double share = m == DT_FA_ASC || m == DT_FA_WARS_ASC ? 0.5 : 1.0, a = 0;
            o->count[m]++;
            if (is_computed_full(m)) a = full + (dt_attn_plan_residual_live(p, l, t) ? win : 0);
            else if (is_window(m)) a = win;
            o->attn_flops += share * a;
            o->module_flops += m == DT_FA_AST ? 0 : share * (a + proj);
        }
    o->attn_flops_full += full * (l1 - l0) * p->steps;
    o->module_flops_full += (full + proj) * (l1 - l0) * p->steps;
}

void dt_attn_plan_cost_video(const dt_attn_plan *p, int B, int F, int N, int C, dt_attn_plan_cost *o)
{
    *o = (dt_attn_plan_cost){0};
    int spatial = p->layers - p->temporal;
    cost_rows(p, 0, spatial, (double)B * F, N, C, p->window, o);
    cost_rows(p, spatial, p->layers, (double)B * N, F, C, p->temporal_window, o);
    size_t per = (size_t)B * F * N * C * sizeof(float); /* a cache holds every sequence of a layer */
    for (int t = 0; t < p->steps; t++) {
        size_t held = 0;
        for (int l = 0; l < p->layers; l++)
            held += per * (size_t)(dt_attn_plan_residual_live(p, l, t) + dt_attn_plan_output_live(p, l, t));
        if (held > o->cache_peak_bytes) o->cache_peak_bytes = held;
    }
}

void dt_attn_plan_cost_of(const dt_attn_plan *p, int B, int N, int C, dt_attn_plan_cost *o)
{
    dt_attn_plan_cost_video(p, B, 1, N, C, o);
}

/* ---- runtime ---- */

typedef struct {
    float *data;
    size_t n; /* elements */
} fa_buf;

struct dt_fastattn {
    dit_attn_hook hook; /* first: the hook pointer is the runtime */
    const dt_attn_plan *plan;
    dt_backend *be;     /* whose memory holds the caches (the model's, set at the first cache) */
    int cfg, step, keep_all, frozen;
    fa_buf *res, *out; /* per layer */
    size_t bytes, peak;
};

static void buf_drop(dt_fastattn *fa, fa_buf *b)
{
    fa->bytes -= b->n * sizeof(float);
    if (b->data) fa->be->ops->buffer_free(fa->be, b->data);
    *b = (fa_buf){0};
}

static dt_status buf_ensure(dt_fastattn *fa, dt_backend *be, fa_buf *b, size_t n, dt_err *err)
{
    if (b->data && b->n == n) return DT_OK;
    if (fa->be && fa->be != be) return dt_fail(err, DT_EINVAL, "attention plan: one plan runtime used by two models");
    fa->be = be;
    buf_drop(fa, b);
    if (be->ops->buffer_alloc(be, n * sizeof(float), (void **)&b->data, err) != DT_OK)
        return dt_fail(err, DT_ENOMEM, "attention plan: out of memory for a %zu MB cache", n * 4 >> 20);
    b->n = n;
    fa->bytes += n * sizeof(float);
    if (fa->bytes > fa->peak) fa->peak = fa->bytes;
    return DT_OK;
}

static dt_tensor t2(float *d, int64_t r, int64_t c) { int64_t s[2] = {r, c}; return dt_tensor_view(d, DT_F32, 2, s); }
static dt_tensor t3(float *d, int64_t a, int64_t b, int64_t c) { int64_t s[3] = {a, b, c}; return dt_tensor_view(d, DT_F32, 3, s); }

/* dst[0..n) = src[0..n) in the backend's memory. */
static dt_status copy_n(dt_backend *be, float *dst, const float *src, int64_t n, dt_err *err)
{
    dt_tensor s = dt_tensor_view((void *)src, DT_F32, 1, &n), d = dt_tensor_view(dst, DT_F32, 1, &n);
    s.device = d.device = be->cfg.device;
    return be->ops->copy(be, &s, &d, err);
}

/* The computing methods: projections and attention on nb = B or B/2 sequences from h0. */
static dt_status compute(dt_fastattn *fa, const dit_self_attn_args *a, dt_fa_method m, int want_res, dt_err *err)
{
    const dt_attn_plan *p = fa->plan;
    dt_backend *be = a->be;
    int asc = m == DT_FA_ASC || m == DT_FA_WARS_ASC;
    int64_t B = a->B, N = a->N, C = a->C, nb = asc ? B / 2 : B, h0 = asc && p->cfg_half == DT_FA_HALF_COND ? B / 2 : 0;
    int64_t rows = nb * N, half = (B / 2) * N * C;
    int window = dt_attn_plan_window(p, a->layer);
    fa_buf *res = &fa->res[a->layer];
    if (is_window(m) && (!res->data || res->n != (size_t)(B * N * C))) {
        char row[48];
        dt_attn_plan_row_name(p, a->layer, row, sizeof row);
        return dt_fail(err, DT_EINVAL, "attention plan: %s step %d: \"%s\" has no cached residual of this shape",
                       row, fa->step, dt_fa_method_name(m));
    }
    dt_tensor xin = t2((float *)a->xn->data + h0 * N * C, rows, C), qkv = t2(a->s->qkv.data, rows, 3 * C);
    DT_TRY(be->ops->linear_forward(be, a->blk->qkv, &xin, &qkv, err));
    dt_tensor q = t3(qkv.data, nb, N, C), k = q, v = q, ao = t3(a->s->ao.data, nb, N, C);
    q.strides[0] = k.strides[0] = v.strides[0] = N * 3 * C;
    q.strides[1] = k.strides[1] = v.strides[1] = 3 * C;
    k.data = (float *)qkv.data + C;
    v.data = (float *)qkv.data + 2 * C;
    float *aod = ao.data;
    if (is_computed_full(m)) {
        DT_TRY(dit_self_attention_core(a, &q, &k, &v, -1, &ao, err)); /* the block's kernel (int8 by a plan) */
        if (want_res) {
            dt_tensor aw;
            DT_TRY(dt_arena_tensor(a->arena, &aw, DT_F32, 3, (int64_t[]){nb, N, C}, err));
            DT_TRY(dit_self_attention_core(a, &q, &k, &v, window, &aw, err));
            DT_TRY(buf_ensure(fa, be, res, (size_t)(B * N * C), err));
            /* the residual full - window, kept for the steps that reuse it */
            dt_tensor r = t3(res->data + h0 * N * C, nb, N, C);
            DT_TRY(be->ops->sub(be, &ao, &aw, &r, err));
            if (asc) DT_TRY(copy_n(be, res->data + (h0 ? 0 : half), r.data, half, err));
        }
    } else {
        DT_TRY(dit_self_attention_core(a, &q, &k, &v, window, &ao, err));
        dt_tensor r = t3(res->data + (asc && p->asc_residual == DT_FA_RES_SAME ? h0 * N * C : 0), nb, N, C);
        DT_TRY(be->ops->add_rows(be, &ao, &r, &ao, err));
    }
    dt_tensor ao2 = t2(aod, rows, C), o = t2((float *)a->out->data + h0 * N * C, rows, C);
    DT_TRY(be->ops->linear_forward(be, a->blk->out1, &ao2, &o, err));
    if (asc) DT_TRY(copy_n(be, (float *)a->out->data + (h0 ? 0 : half), o.data, half, err));
    return DT_OK;
}

static dt_status fa_self_attn(dit_attn_hook *h, const dit_self_attn_args *a, dt_err *err)
{
    dt_fastattn *fa = (dt_fastattn *)h;
    const dt_attn_plan *p = fa->plan;
    int l = a->layer, t = fa->step;
    if (l < 0 || l >= p->layers) return dt_fail(err, DT_EINVAL, "attention plan: has %d layers, the model called layer %d", p->layers, l);
    if (t < 0 || t >= p->steps) return dt_fail(err, DT_EINVAL, "attention plan: step %d is outside the plan's %d steps", t, p->steps);
    dt_fa_method m = dt_attn_plan_at(p, l, t);
    size_t n = (size_t)a->B * a->N * a->C;
    fa_buf *ob = &fa->out[l];
    char row[48];
    dt_attn_plan_row_name(p, l, row, sizeof row);
    if (m == DT_FA_AST) {
        if (!ob->data || ob->n != n)
            return dt_fail(err, DT_EINVAL, "attention plan: %s step %d: \"ast\" has no cached output of this shape", row, t);
        DT_TRY(copy_n(a->be, a->out->data, ob->data, (int64_t)n, err));
        /* the last step that shares it frees it (a plan may end on "ast") */
        if (!fa->frozen && !fa->keep_all && !dt_attn_plan_output_live(p, l, t)) buf_drop(fa, ob);
        return DT_OK;
    }
    if ((m == DT_FA_ASC || m == DT_FA_WARS_ASC) && (!fa->cfg || a->B % 2))
        return dt_fail(err, DT_EINVAL, "attention plan: %s step %d: \"%s\" needs a CFG batch (guidance on)", row, t, dt_fa_method_name(m));
    int want_res = is_computed_full(m) && !fa->frozen && (fa->keep_all || dt_attn_plan_residual_live(p, l, t));
    if (m == DT_FA_FULL && !want_res) DT_TRY(dit_self_attention_full(a, err)); /* the plain path, bit for bit */
    else DT_TRY(compute(fa, a, m, want_res, err));
    if (fa->frozen) return DT_OK;
    /* drop before storing: the peak stays what the plan's accounting says */
    if (!fa->keep_all && fa->res[l].data && !dt_attn_plan_residual_live(p, l, t)) buf_drop(fa, &fa->res[l]);
    if (fa->keep_all || dt_attn_plan_output_live(p, l, t)) {
        DT_TRY(buf_ensure(fa, a->be, ob, n, err));
        DT_TRY(copy_n(a->be, ob->data, a->out->data, (int64_t)n, err));
    } else if (ob->data) buf_drop(fa, ob);
    return DT_OK;
}

dt_status dt_fastattn_create(const dt_attn_plan *plan, int cfg, dt_fastattn **out, dt_err *err)
{
    dt_fastattn *fa = calloc(1, sizeof *fa);
    if (fa) {
        fa->res = calloc((size_t)plan->layers, sizeof *fa->res);
        fa->out = calloc((size_t)plan->layers, sizeof *fa->out);
    }
    if (!fa || !fa->res || !fa->out) { dt_fastattn_free(fa); return dt_fail(err, DT_ENOMEM, "out of memory"); }
    fa->hook.self_attn = fa_self_attn;
    fa->plan = plan;
    fa->cfg = cfg;
    *out = fa;
    return DT_OK;
}

void dt_fastattn_reset(dt_fastattn *fa)
{
    for (int l = 0; l < fa->plan->layers; l++) {
        buf_drop(fa, &fa->res[l]);
        buf_drop(fa, &fa->out[l]);
    }
    fa->step = 0;
}

void dt_fastattn_free(dt_fastattn *fa)
{
    if (!fa) return;
    if (fa->res && fa->out) dt_fastattn_reset(fa);
    free(fa->res);
    free(fa->out);
    free(fa);
}

dit_attn_hook *dt_fastattn_hook(dt_fastattn *fa) { return &fa->hook; }

dt_status dt_fastattn_set_step(dt_fastattn *fa, int step, dt_err *err)
{
    if (step < 0 || step >= fa->plan->steps)
        return dt_fail(err, DT_EINVAL, "attention plan: step %d is outside the plan's %d steps", step, fa->plan->steps);
    fa->step = step;
    return DT_OK;
}

size_t dt_fastattn_cache_bytes(const dt_fastattn *fa) { return fa->bytes; }
size_t dt_fastattn_cache_peak(const dt_fastattn *fa) { return fa->peak; }

void dt_fastattn_set_calibration(dt_fastattn *fa, int keep_all, int frozen)
{
    fa->keep_all = keep_all;
    fa->frozen = frozen;
}

int dt_fastattn_has_residual(const dt_fastattn *fa, int layer) { return fa->res[layer].data != NULL; }
int dt_fastattn_has_output(const dt_fastattn *fa, int layer) { return fa->out[layer].data != NULL; }

dt_status dt_fastattn_begin(const dt_attn_plan *plan, int layers, int temporal, int steps, int cfg, dt_fastattn **out, dt_err *err)
{
    *out = NULL;
    if (!plan) return DT_OK;
    DT_TRY(dt_attn_plan_check(plan, layers, temporal, steps, err));
    return dt_fastattn_create(plan, cfg, out, err);
}
