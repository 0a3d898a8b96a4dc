/* The CUDA kernels' per-element and per-row math (kernels/cuda/<name>_math.h, __host__ __device__
 * functions compiled here as plain C) against the CPU backend and its plain-C references on
 * random inputs of odd sizes, plus what a machine without a GPU can check of the backend itself:
 * asking for cuda gives a one-line error. Runs in every `make test`, with or without nvcc. */
#include "testutil.h"
#include "kernels/cpu/ref.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/vmath.h"
#include "kernels/cuda/elem_math.h"
#include "kernels/cuda/dtype_math.h"
#include "ditrt.h"
#include "kernels/cuda/norm_math.h"
#include "kernels/cuda/softmax_math.h"
#include "kernels/cuda/patch_math.h"
#include "kernels/cuda/quant_math.h"
#include "kernels/cuda/sdpa_math.h"
#include "kernels/quant.h"

static void fill_wide(tu_rng *r, float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] = tu_uniform(r) * powf(10.0f, 4.0f * tu_uniform(r)); /* 1e-4 .. 1e4 */
}

static void test_bf16_round_matches_cpu(void **state)
{
    (void)state;
    tu_rng r = {1};
    float x[4099];
    fill_wide(&r, x, 4096);
    x[4096] = 0.0f, x[4097] = -0.0f, x[4098] = 3.0e38f;
    for (int i = 0; i < 4099; i++) {
        assert_int_equal(dtm_bf16_round(x[i]), cpu_bf16_round(x[i]));
        float b = dtm_round_bf16(x[i]);
        assert_true(fabsf(b - x[i]) <= fabsf(x[i]) * (1.0f / 256.0f)); /* 8 bits of mantissa */
    }
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* f16 storage (dtype_math.h) against the CPU's converters (runtime/core/tensor.c), with the
 * rounding checked on its own terms too: every f16 round-trips, midpoints go to the even
 * neighbour, just off a midpoint to the nearer one, and the range ends overflow/underflow. */
static void test_f16_round_matches_cpu(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = dtm_f16_to_f32((uint16_t)h);
        assert_int_equal(f32_bits(f), f32_bits(dt_f16_to_f32((uint16_t)h)));
        if ((h & 0x7c00u) == 0x7c00u && (h & 0x3ffu)) continue; /* NaN */
        assert_int_equal(dtm_f16_round(f), h);
    }
    for (uint32_t h = 0; h < 0x7bff; h++) { /* positive finite neighbours h, h+1 */
        float a = dtm_f16_to_f32((uint16_t)h), b = dtm_f16_to_f32((uint16_t)(h + 1)), mid = a + (b - a) * 0.5f;
        assert_true(mid > a && mid < b); /* exact in f32: f16 has 11 bits */
        assert_int_equal(dtm_f16_round(mid), (h & 1) ? h + 1 : h);
        assert_int_equal(dtm_f16_round(nextafterf(mid, 1e30f)), h + 1);
        assert_int_equal(dtm_f16_round(nextafterf(mid, 0.0f)), h);
        assert_int_equal(dtm_f16_round(-mid), 0x8000u | ((h & 1) ? h + 1 : h));
    }
    assert_int_equal(dtm_f16_round(65519.0f), 0x7bff); /* below the midpoint to inf */
    assert_int_equal(dtm_f16_round(65520.0f), 0x7c00); /* the midpoint: to even, i.e. inf */
    assert_int_equal(dtm_f16_round(-1e6f), 0xfc00);
    assert_int_equal(dtm_f16_round(1e-9f), 0);
    tu_rng r = {11};
    for (int i = 0; i < 200000; i++) {
        float x = (tu_uniform(&r) - 0.5f) * powf(10.0f, 15.0f * tu_uniform(&r) - 9.0f); /* 1e-9 .. 1e6 */
        assert_int_equal(dtm_f16_round(x), dt_f32_to_f16(x));
        float y = dtm_round_f16(x);
        if (fabsf(x) >= 6.2e-5f && fabsf(x) <= 65504.0f) assert_true(fabsf(y - x) <= fabsf(x) * (1.0f / 2048.0f));
    }
}

/* The one table mapping a dtype to storage and the libraries (the GEMM, conv and attention ops
 * read it; cuda_internal.h checks the codes against the CUDA headers), and the typed
 * load/store/round the kernels use for every float type. */
static void test_dtype_table(void **state)
{
    (void)state;
    assert_int_equal(DTM_F32, DT_F32);
    assert_int_equal(DTM_F16, DT_F16);
    assert_int_equal(DTM_BF16, DT_BF16);
    static const struct { dt_dtype dt; int cuda, cudnn, io; } want[] = {
        {DT_F32, DTM_CUDA_R_32F, DTM_CUDNN_FLOAT, 0},
        {DT_BF16, DTM_CUDA_R_16BF, DTM_CUDNN_BFLOAT16, 1},
        {DT_F16, DTM_CUDA_R_16F, DTM_CUDNN_HALF, 2},
    };
    for (size_t i = 0; i < 3; i++) {
        dtm_float_type t = dtm_float_type_of((int)want[i].dt);
        assert_true(t.ok);
        assert_int_equal(t.bytes, dt_dtype_size(want[i].dt));
        assert_string_equal(t.name, dt_dtype_name(want[i].dt));
        assert_int_equal(t.cuda, want[i].cuda);
        assert_int_equal(t.cudnn, want[i].cudnn);
        assert_int_equal(t.sdpa_io, want[i].io);
        assert_int_equal(dtm_sdpa_io_type(t.sdpa_io), want[i].io ? (int)want[i].dt : -1);
    }
    assert_int_equal(DTM_CUDA_R_16F, 2); /* library_types.h */
    assert_int_equal(DTM_CUDA_R_16BF, 14);
    assert_int_equal(DTM_CUDNN_BFLOAT16, 9); /* cudnn_graph.h */
    static const dt_dtype other[] = {DT_I8, DT_U8, DT_I32};
    for (size_t i = 0; i < 3; i++) assert_false(dtm_float_type_of((int)other[i]).ok);
    tu_rng r = {12};
    for (int i = 0; i < 4096; i++) {
        float x = (tu_uniform(&r) - 0.5f) * powf(10.0f, 8.0f * tu_uniform(&r) - 4.0f);
        uint16_t hb = cpu_bf16_round(x), hh = dt_f32_to_f16(x);
        assert_int_equal(dtm_to16(DTM_BF16, x), hb);
        assert_int_equal(dtm_to16(DTM_F16, x), hh);
        assert_int_equal(f32_bits(dtm_round_to(DTM_F32, x)), f32_bits(x));
        assert_int_equal(f32_bits(dtm_round_to(DTM_BF16, x)), f32_bits(dtm_round_bf16(x)));
        assert_int_equal(f32_bits(dtm_round_to(DTM_F16, x)), f32_bits(dt_f16_to_f32(hh)));
        uint16_t s16[2];
        float s32[2];
        dtm_store(DTM_F16, s16, 1, x);
        assert_int_equal(s16[1], hh);
        assert_int_equal(f32_bits(dtm_load(DTM_F16, s16, 1)), f32_bits(dt_f16_to_f32(hh)));
        dtm_store(DTM_BF16, s16, 0, x);
        assert_int_equal(s16[0], hb);
        dtm_store(DTM_F32, s32, 1, x);
        assert_int_equal(f32_bits(dtm_load(DTM_F32, s32, 1)), f32_bits(x));
        /* "16-bit inputs through f32" (the convolutions): a product of two f16 values is exact in f32 */
        float a = dtm_round_f16(x), b = dtm_round_f16(tu_uniform(&r) * 3.0f);
        assert_true((double)(a * b) == (double)a * (double)b);
    }
}

/* --dtype f16 / tf32 are CUDA compute types: the backend registry, the context and the
 * CPU-only commands refuse them with one line naming why; an unknown value names every one. */
static void test_f16_needs_cuda(void **state)
{
    (void)state;
    dt_backend_config cfg = {.device = DT_DEV_CPU, .compute = DT_F16};
    dt_backend *be = NULL;
    dt_err err = {0};
    assert_int_equal(dt_backend_create(&cfg, &be, &err), DT_EUNSUPPORTED);
    assert_null(be);
    assert_string_equal(err.msg, "dtype: f16 needs --device cuda (the cpu backend computes in f32 or bf16)");
    char tmp[] = "/tmp/ditrt-f16-XXXXXX", png[600], cmd[1400], out[4096];
    assert_non_null(mkdtemp(tmp));
    snprintf(png, sizeof png, "%s/x.png", tmp);
    snprintf(cmd, sizeof cmd, "./ditrt txt2img -m assets/demo-pixart -p x --steps 2 --dtype f16 -o '%s'", png);
    assert_int_equal(tu_run(tmp, cmd, 0, out, sizeof out), 1);
    assert_string_equal(out, "ditrt: dtype: f16 needs --device cuda (the cpu backend computes in f32 or bf16)\n");
    assert_int_not_equal(access(png, F_OK), 0);
    snprintf(cmd, sizeof cmd, "./ditrt bench transformer --dtype f16 --layers 1 --res 64");
    assert_int_equal(tu_run(tmp, cmd, 0, out, sizeof out), 1);
    assert_non_null(strstr(out, "f16 needs --device cuda"));
    snprintf(cmd, sizeof cmd, "./ditrt txt2img -m assets/demo-pixart -p x --text-encoder-dtype f16 -o '%s'", png);
    assert_int_equal(tu_run(tmp, cmd, 0, out, sizeof out), 1);
    assert_non_null(strstr(out, "text_dtype: expected f32 or bf16 (text encoders run in neither f16 nor tf32)"));
    tu_rmtree(tmp);
    const char *prompts[] = {"x"};
    static const char *const vals[] = {"tf32", "f16", "f8"};
    for (int v = 0; v < 3; v++) {
        ditrt_search_solver_params p;
        ditrt_search_solver_params_init(&p);
        p.model_dir = "assets/demo-pixart", p.prompts = prompts, p.nprompts = 1, p.out_path = "never.json";
        p.dtype = vals[v];
        ditrt_search_solver_result res;
        ditrt_search_solver_result_init(&res);
        ditrt_error e = {0};
        assert_int_equal(ditrt_search_solver(&p, &res, &e), v < 2 ? DITRT_EUNSUPPORTED : DITRT_EINVAL);
        char want[200];
        if (v < 2) snprintf(want, sizeof want, "dtype: %s needs --device cuda; search-solver runs on the CPU only", vals[v]);
        else snprintf(want, sizeof want, "dtype: expected f32, bf16, f16 or tf32 (f16 and tf32 need --device cuda), got \"f8\"");
        assert_string_equal(e.msg, want);
    }
}

/* The activations the GPU kernels and the linear epilogue run are the CPU's, bit for bit. */
static void test_activations_match_cpu_bitwise(void **state)
{
    (void)state;
    tu_rng r = {2};
    int n = 3001;
    float *x = tu_alloc(n), *y = tu_poisoned(n);
    for (int i = 0; i < n; i++) x[i] = 12.0f * tu_uniform(&r);
    x[0] = 0.0f, x[1] = -90.0f, x[2] = 90.0f, x[3] = 0.03f;
    dt_backend *be = tu_backend(DT_F32);
    dt_err err = {0};
    int64_t s[1] = {n};
    dt_tensor tx = dt_tensor_view(x, DT_F32, 1, s), ty = dt_tensor_view(y, DT_F32, 1, s);
    for (int act = DT_ACT_GELU_TANH; act <= DT_ACT_GELU_ERF; act++) {
        assert_int_equal(be->ops->activation(be, (dt_act)act, &tx, &ty, &err), DT_OK);
        for (int i = 0; i < n; i++) {
            float g = dtm_act(act, x[i]);
            if (memcmp(&g, &y[i], 4)) fail_msg("act %d at x=%.9g: host-device math %.9g, CPU %.9g", act, x[i], g, y[i]);
            float ref = ref_act((dt_act)act, x[i]);
            assert_true(fabsf(g - ref) <= 2e-6f * (1.0f + fabsf(ref)));
        }
        assert_true(dtm_exp(1.0f) == vm_exp(1.0f) && dtm_tanh(0.5f) == vm_tanh(0.5f));
    }
    assert_true(dtm_act(DTM_ACT_NONE, 1.25f) == 1.25f);
    dt_backend_destroy(be);
    free(x);
    free(y);
}

static void test_cfg_and_blend_match_reference(void **state)
{
    (void)state;
    tu_rng r = {3};
    int B = 3, n = 77;
    float *u = tu_alloc(B * n), *c = tu_alloc(B * n), *y = tu_alloc(B * n);
    tu_fill(&r, u, B * n, 3.0f);
    tu_fill(&r, c, B * n, 3.0f);
    int64_t s[2] = {B, n};
    dt_tensor tu = dt_tensor_view(u, DT_F32, 2, s), tc = dt_tensor_view(c, DT_F32, 2, s), ty = dt_tensor_view(y, DT_F32, 2, s);
    ref_cfg_combine(&tu, &tc, 4.5f, &ty);
    for (int i = 0; i < B * n; i++) assert_true(dtm_cfg(u[i], c[i], 4.5f) == y[i]);
    /* seam blend along axis 2 of [1, 3, 5, 2] tiles with extent 4 */
    int64_t sh[4] = {1, 3, 5, 2};
    float a[30], b[30], b0[30];
    tu_fill(&r, a, 30, 1.0f);
    tu_fill(&r, b, 30, 1.0f);
    memcpy(b0, b, sizeof b);
    dt_tensor ta = dt_tensor_view(a, DT_F32, 4, sh), tb = dt_tensor_view(b, DT_F32, 4, sh);
    ref_blend_edge(&ta, &tb, 2, 4);
    for (int i1 = 0; i1 < 3; i1++)
        for (int t = 0; t < 5; t++)
            for (int c2 = 0; c2 < 2; c2++) {
                int o = (i1 * 5 + t) * 2 + c2, oa = (i1 * 5 + (5 - 4 + t)) * 2 + c2;
                float want = t < 4 ? dtm_blend(a[oa], b0[o], t, 4) : b0[o];
                assert_true(want == b[o]);
            }
    free(u);
    free(c);
    free(y);
}

static void test_layernorm_rows(void **state)
{
    (void)state;
    const int Cs[] = {1, 37, 1155};
    for (int k = 0; k < 3; k++) {
        int B = 2, N = 3, C = Cs[k];
        tu_rng r = {(uint64_t)(10 + C)};
        float *x = tu_alloc(B * N * C), *y = tu_alloc(B * N * C), *yr = tu_alloc(B * N * C);
        float *sh = tu_alloc(B * C), *sc = tu_alloc(B * C);
        tu_fill(&r, x, B * N * C, 4.0f);
        for (int i = 0; i < B * N * C; i++) x[i] += 2.0f; /* a mean away from 0 */
        tu_fill(&r, sh, B * C, 1.0f);
        tu_fill(&r, sc, B * C, 1.0f);
        int64_t s3[3] = {B, N, C}, s2[2] = {B, C};
        dt_tensor tx = dt_tensor_view(x, DT_F32, 3, s3), tyr = dt_tensor_view(yr, DT_F32, 3, s3);
        dt_tensor tsh = dt_tensor_view(sh, DT_F32, 2, s2), tsc = dt_tensor_view(sc, DT_F32, 2, s2);
        for (int mod = 0; mod < 2; mod++) {
            ref_layernorm_modulate(&tx, mod ? &tsh : NULL, mod ? &tsc : NULL, 1e-6f, &tyr);
            for (int b = 0; b < B; b++)
                for (int i = 0; i < N; i++)
                    dtm_layernorm_row(x + (b * N + i) * C, C, mod ? sc + b * C : NULL, mod ? sh + b * C : NULL, 1e-6f,
                                      y + (b * N + i) * C);
            assert_rel_l2_below(y, yr, (size_t)B * N * C, 1e-5);
        }
        free(x); free(y); free(yr); free(sh); free(sc);
    }
}

static void test_group_norm_groups(void **state)
{
    (void)state;
    int B = 2, H = 5, W = 3, C = 12, G = 4, N = H * W, cg = C / G;
    tu_rng r = {20};
    float *x = tu_alloc(B * N * C), *y = tu_alloc(B * N * C), *yr = tu_alloc(B * N * C), gm[12], bt[12];
    tu_fill(&r, x, B * N * C, 3.0f);
    tu_fill(&r, gm, C, 1.0f);
    tu_fill(&r, bt, C, 1.0f);
    int64_t s[4] = {B, H, W, C};
    dt_tensor tx = dt_tensor_view(x, DT_F32, 4, s), tyr = dt_tensor_view(yr, DT_F32, 4, s);
    for (int act = 0; act <= DT_ACT_SILU; act += DT_ACT_SILU) {
        ref_group_norm(&tx, G, gm, bt, 1e-6f, (dt_act)act, &tyr);
        for (int b = 0; b < B; b++)
            for (int g = 0; g < G; g++)
                dtm_group_norm_group(x + b * N * C, N, C, g * cg, cg, gm, bt, 1e-6f, act, y + b * N * C);
        assert_rel_l2_below(y, yr, (size_t)B * N * C, 1e-6);
    }
    free(x); free(y); free(yr);
}

/* GroupNorm split over several blocks per group (cuda_image.cu's large-image path): the chunks
 * tile the rows exactly, and partial sums in chunk order give the reference's result. */
static void test_group_norm_split(void **state)
{
    (void)state;
    int B = 2, H = 37, W = 11, C = 16, G = 4, N = H * W, cg = C / G;
    tu_rng r = {21};
    float *x = tu_alloc(B * N * C), *y = tu_alloc(B * N * C), *yr = tu_alloc(B * N * C), gm[16], bt[16];
    tu_fill(&r, x, B * N * C, 3.0f);
    for (int i = 0; i < B * N * C; i++) x[i] += 5.0f; /* a mean away from 0 */
    tu_fill(&r, gm, C, 1.0f);
    tu_fill(&r, bt, C, 1.0f);
    int64_t sh[4] = {B, H, W, C};
    dt_tensor tx = dt_tensor_view(x, DT_F32, 4, sh), tyr = dt_tensor_view(yr, DT_F32, 4, sh);
    ref_group_norm(&tx, G, gm, bt, 1e-6f, DT_ACT_SILU, &tyr);
    const int Ss[] = {2, 3, 7, 64, N};
    for (int k = 0; k < 5; k++) {
        const int S = Ss[k];
        double part[2][407];
        int64_t covered = 0;
        for (int s = 0; s < S; s++) covered += dtm_gn_chunk_lo(N, S, s + 1) - dtm_gn_chunk_lo(N, S, s);
        assert_true(dtm_gn_chunk_lo(N, S, 0) == 0 && dtm_gn_chunk_lo(N, S, S) == N && covered == N);
        for (int b = 0; b < B; b++)
            for (int g = 0; g < G; g++) {
                const float *xb = x + (size_t)b * N * C;
                for (int s = 0; s < S; s++) part[0][s] = dtm_gn_partial(xb, N, C, g * cg, cg, S, s, 0, 0.0);
                double mean = dtm_gn_total(part[0], S) / (double)(N * cg);
                for (int s = 0; s < S; s++) part[1][s] = dtm_gn_partial(xb, N, C, g * cg, cg, S, s, 1, mean);
                double rstd = dtm_gn_rstd(dtm_gn_total(part[1], S), (int64_t)N * cg, 1e-6f);
                for (int n = 0; n < N; n++)
                    for (int c = g * cg; c < (g + 1) * cg; c++)
                        y[((size_t)b * N + n) * C + c] = dtm_gn_apply(xb[n * C + c], mean, rstd, gm[c], bt[c], DTM_ACT_SILU);
            }
        assert_rel_l2_below(y, yr, (size_t)B * N * C, 1e-6);
    }
    /* enough chunks for the device, none below 4096 elements, never more than the rows */
    assert_int_equal(dtm_gn_splits(32, 1024 * 1024, 4, 1024), 32);
    assert_int_equal(dtm_gn_splits(64, 64 * 64, 8, 1024), 8);
    assert_int_equal(dtm_gn_splits(32, 100, 4, 1024), 1);
    assert_int_equal(dtm_gn_splits(1, 1 << 24, 512, 1024), 1024);
    free(x); free(y); free(yr);
}

static void test_rms_norm_rows_exact(void **state)
{
    (void)state;
    int M = 3, C = 515;
    tu_rng r = {30};
    float *x = tu_alloc(M * C), *w = tu_alloc(C), *y = tu_alloc(M * C), *yr = tu_alloc(M * C);
    tu_fill(&r, x, M * C, 5.0f);
    tu_fill(&r, w, C, 2.0f);
    ref_rms_norm(x, M, C, w, 1e-6f, yr);
    for (int m = 0; m < M; m++) dtm_rms_norm_row(x + m * C, C, w, 1e-6f, y + m * C);
    assert_memory_equal(y, yr, (size_t)M * C * sizeof(float)); /* same order of double sums */
    free(x); free(w); free(y); free(yr);
}

/* Softmax rows with both biases against a double-precision reference, and the online state
 * merged across two halves equal to the state of the whole row. */
static void test_softmax_rows_and_merge(void **state)
{
    (void)state;
    const int ns[] = {1, 7, 300, 1031};
    for (int k = 0; k < 4; k++) {
        int n = ns[k];
        tu_rng r = {(uint64_t)(40 + n)};
        float *row = tu_alloc(n), *kb = tu_alloc(n), *hb = tu_alloc(n), *s0 = tu_alloc(n);
        tu_fill(&r, row, n, 30.0f);
        for (int j = 0; j < n; j++) kb[j] = j % 5 == 4 ? -10000.0f : 0.0f; /* a caption mask */
        tu_fill(&r, hb, n, 2.0f);
        memcpy(s0, row, n * sizeof(float));
        dtm_softmax_row(row, n, 0.125f, kb, hb);
        double mx = -INFINITY, sum = 0, total = 0;
        for (int j = 0; j < n; j++) mx = fmax(mx, (double)s0[j] * 0.125 + kb[j] + hb[j]);
        for (int j = 0; j < n; j++) sum += exp((double)s0[j] * 0.125 + kb[j] + hb[j] - mx);
        for (int j = 0; j < n; j++) {
            double p = exp((double)s0[j] * 0.125 + kb[j] + hb[j] - mx) / sum;
            assert_true(fabs(row[j] - p) <= 1e-6 + 1e-5 * p);
            total += row[j];
        }
        assert_true(fabs(total - 1.0) < 1e-5);
        dtm_softmax_state a = dtm_softmax_init(), b = dtm_softmax_init(), all = dtm_softmax_init();
        for (int j = 0; j < n; j++) {
            dtm_softmax_push(&all, s0[j]);
            dtm_softmax_push(j < n / 2 ? &a : &b, s0[j]);
        }
        float ra, rb;
        dtm_softmax_merge(&a, b, &ra, &rb);
        assert_true(a.m == all.m);
        assert_true(fabsf(a.l - all.l) <= 1e-5f * all.l);
        free(row); free(kb); free(hb); free(s0);
    }
}

/* The window-attention kernel's loop (one query row: band range, online softmax, rescaled
 * accumulation) run on the host against the reference, and the band's work bound. */
static void window_row(const float *q, const float *k, const float *v, int64_t N, int64_t d, int64_t ld, float scale,
                       int64_t w, int64_t i, float *o)
{
    float acc[64] = {0};
    int64_t lo, hi;
    dtm_band_range(i, N, w, &lo, &hi);
    dtm_softmax_state st = dtm_softmax_init();
    for (int64_t j = lo; j <= hi; j++) {
        float dot = 0;
        for (int64_t c = 0; c < d; c++) dot += q[i * ld + c] * k[j * ld + c];
        float s = dot * scale, rs = dtm_softmax_push(&st, s), p = expf(s - st.m);
        for (int64_t c = 0; c < d; c++) acc[c] = acc[c] * rs + p * v[j * ld + c];
    }
    for (int64_t c = 0; c < d; c++) o[i * ld + c] = acc[c] / st.l;
}

static void test_window_attention_rows(void **state)
{
    (void)state;
    int N = 29, H = 3, d = 5, C = H * d;
    tu_rng r = {50};
    float *q = tu_alloc(N * C), *k = tu_alloc(N * C), *v = tu_alloc(N * C), *o = tu_alloc(N * C), *orf = tu_alloc(N * C);
    tu_fill(&r, q, N * C, 2.0f);
    tu_fill(&r, k, N * C, 2.0f);
    tu_fill(&r, v, N * C, 1.0f);
    int64_t s[3] = {1, N, C};
    dt_tensor tq = dt_tensor_view(q, DT_F32, 3, s), tk = dt_tensor_view(k, DT_F32, 3, s), tv = dt_tensor_view(v, DT_F32, 3, s);
    dt_tensor to = dt_tensor_view(orf, DT_F32, 3, s);
    const int ws[] = {0, 1, 4, 28, 100};
    for (int t = 0; t < 5; t++) {
        ref_window_attention(&tq, &tk, &tv, H, 0.4f, ws[t], &to);
        for (int h = 0; h < H; h++)
            for (int i = 0; i < N; i++) window_row(q + h * d, k + h * d, v + h * d, N, d, C, 0.4f, ws[t], i, o + h * d);
        assert_rel_l2_below(o, orf, (size_t)N * C, 1e-5);
        int64_t pairs = 0;
        for (int i = 0; i < N; i++)
            for (int j = 0; j < N; j++) pairs += abs(i - j) <= ws[t];
        assert_int_equal(dtm_band_pairs(N, ws[t]), pairs);
        assert_true(dtm_band_pairs(N, ws[t]) <= (int64_t)N * (2 * ws[t] + 1));
    }
    free(q); free(k); free(v); free(o); free(orf);
}

/* cuDNN's SDPA graph as cuda_sdpa_graph.cu builds it, evaluated on the host over the same 4-D
 * views (dtm_sdpa_bhsd / bhds over packed [B, N, H·d] rows) and the folded bias: Q·Kᵀ, ·scale,
 * + bias, softmax, ·V must be the CPU reference attention, for each bias combination. This
 * checks the strides and the bias folding the device graph is given (not cuDNN's kernels). */
static void sdpa_on_views(const float *q, const float *k, const float *v, const float *bias, const dtm_t4 *tb,
                          int64_t B, int64_t H, int64_t Nq, int64_t Nk, int64_t d, float scale, float *o)
{
    int64_t C = H * d;
    dtm_t4 tq = dtm_sdpa_bhsd(B, H, Nq, d, C, Nq * C), tk = dtm_sdpa_bhds(B, H, Nk, d, C, Nk * C);
    dtm_t4 tv = dtm_sdpa_bhsd(B, H, Nk, d, C, Nk * C);
    double s[64];
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < Nq; i++) {
                double mx = -INFINITY, z = 0;
                for (int64_t j = 0; j < Nk; j++) {
                    double dot = 0;
                    for (int64_t c = 0; c < d; c++)
                        dot += (double)q[dtm_t4_offset(&tq, b, h, i, c)] * k[dtm_t4_offset(&tk, b, h, c, j)];
                    s[j] = dot * scale;
                    if (bias) /* the graph's ADD broadcasts dims of 1 */
                        s[j] += bias[dtm_t4_offset(tb, tb->dim[0] > 1 ? b : 0, tb->dim[1] > 1 ? h : 0, i, j)];
                    mx = fmax(mx, s[j]);
                }
                for (int64_t j = 0; j < Nk; j++) z += (s[j] = exp(s[j] - mx));
                for (int64_t c = 0; c < d; c++) {
                    double acc = 0;
                    for (int64_t j = 0; j < Nk; j++) acc += s[j] / z * v[dtm_t4_offset(&tv, b, h, j, c)];
                    o[dtm_t4_offset(&tq, b, h, i, c)] = (float)acc;
                }
            }
}

static void test_sdpa_views_and_bias(void **state)
{
    (void)state;
    int64_t B = 2, H = 3, d = 8, Nq = 7, Nk = 5, C = H * d;
    tu_rng r = {60};
    float *q = tu_alloc(B * Nq * C), *k = tu_alloc(B * Nk * C), *v = tu_alloc(B * Nk * C);
    float *o = tu_alloc(B * Nq * C), *orf = tu_alloc(B * Nq * C);
    float *key = tu_alloc(B * Nk), *head = tu_alloc(H * Nq * Nk), *bias = tu_alloc(B * H * Nq * Nk);
    tu_fill(&r, q, B * Nq * C, 2.0f);
    tu_fill(&r, k, B * Nk * C, 2.0f);
    tu_fill(&r, v, B * Nk * C, 1.0f);
    tu_fill(&r, head, H * Nq * Nk, 3.0f);
    for (int64_t i = 0; i < B * Nk; i++) key[i] = i % Nk >= 3 + i / Nk ? -10000.0f : 0.0f; /* 3 and 4 valid keys */
    int64_t sq[3] = {B, Nq, C}, sk[3] = {B, Nk, C};
    dt_tensor tq = dt_tensor_view(q, DT_F32, 3, sq), tk = dt_tensor_view(k, DT_F32, 3, sk);
    dt_tensor tv = dt_tensor_view(v, DT_F32, 3, sk), to = dt_tensor_view(orf, DT_F32, 3, sq);
    for (int m = 0; m < 4; m++) {
        int hk = m & 1, hh = m >> 1;
        dt_attn_bias ab = {hk ? key : NULL, hh ? head : NULL};
        dtm_t4 tb = dtm_sdpa_bias_shape(B, H, Nq, Nk, hk, hh);
        assert_int_equal(tb.dim[0], hk ? B : 1);
        assert_int_equal(tb.dim[1], hh ? H : 1);
        assert_true(tb.dim[2] == Nq && tb.dim[3] == Nk && tb.stride[3] == 1 && tb.stride[0] == tb.dim[1] * Nq * Nk);
        for (int64_t i = 0; i < dtm_t4_numel(&tb); i++) bias[i] = dtm_sdpa_bias_at(&tb, i, ab.key, ab.head);
        ref_attention(&tq, &tk, &tv, m ? &ab : NULL, (int)H, 0.3f, &to);
        sdpa_on_views(q, k, v, m ? bias : NULL, &tb, B, H, Nq, Nk, d, 0.3f, o);
        assert_rel_l2_below(o, orf, (size_t)(B * Nq * C), 1e-5);
    }
    /* K transposed is the same memory as K: element (b, h, c, s) of the view is K[b, s, h·d + c] */
    dtm_t4 kt = dtm_sdpa_bhds(B, H, Nk, d, C, Nk * C);
    assert_int_equal(dtm_t4_offset(&kt, 1, 2, 5, 3), 1 * Nk * C + 3 * C + 2 * d + 5);
    free(q); free(k); free(v); free(o); free(orf); free(key); free(head); free(bias);
}

/* Which attention path a CUDA call takes, and the shape key its plan is cached under. */
static void test_sdpa_route_and_key(void **state)
{
    (void)state;
    assert_int_equal(dtm_sdpa_route(0, 1, 72, 0), DTM_SDPA_FUSED);   /* PixArt, bf16 */
    assert_int_equal(dtm_sdpa_route(0, 1, 64, 0), DTM_SDPA_FUSED);   /* T5 */
    assert_int_equal(dtm_sdpa_route(0, 1, 256, 0), DTM_SDPA_FUSED);
    assert_int_equal(dtm_sdpa_route(1, 1, 72, 0), DTM_SDPA_GEMM_ASKED);
    assert_int_equal(dtm_sdpa_route(0, 0, 72, 0), DTM_SDPA_GEMM_F32); /* f32 and tf32 compute */
    assert_int_equal(dtm_sdpa_route(0, 1, 36, 0), DTM_SDPA_GEMM_HEADDIM);
    assert_int_equal(dtm_sdpa_route(0, 1, 264, 0), DTM_SDPA_GEMM_HEADDIM);
    assert_int_equal(dtm_sdpa_route(0, 1, 0, 0), DTM_SDPA_GEMM_HEADDIM);
    assert_int_equal(dtm_sdpa_route(0, 1, 72, 1), DTM_SDPA_GEMM_NOPLAN);
    assert_int_equal(dtm_sdpa_route(1, 0, 36, 1), DTM_SDPA_GEMM_ASKED); /* the request wins */
    for (int rt = DTM_SDPA_FUSED; rt <= DTM_SDPA_GEMM_NOPLAN; rt++) assert_string_not_equal(dtm_sdpa_route_name(rt), "?");
    /* attn_kernel (dt_attn_kernel's numbers) and DITRT_ATTN */
    assert_int_equal(dtm_sdpa_attn_gemm(DT_ATTN_KERNEL_GEMM, "fused"), 1);
    assert_int_equal(dtm_sdpa_attn_gemm(DT_ATTN_KERNEL_FUSED, "gemm"), 0);
    assert_int_equal(dtm_sdpa_attn_gemm(DT_ATTN_KERNEL_INT8, NULL), 0);
    assert_int_equal(dtm_sdpa_attn_gemm(DT_ATTN_KERNEL_AUTO, NULL), 0);
    assert_int_equal(dtm_sdpa_attn_gemm(DT_ATTN_KERNEL_AUTO, ""), 0);
    assert_int_equal(dtm_sdpa_attn_gemm(DT_ATTN_KERNEL_AUTO, "gemm"), 1);
    assert_int_equal(dtm_sdpa_attn_gemm(DT_ATTN_KERNEL_AUTO, "fused"), 0);
    assert_int_equal(dtm_sdpa_attn_gemm(DT_ATTN_KERNEL_AUTO, "flash"), -1);
    assert_int_equal(dtm_sdpa_attn_gemm(7, NULL), -1);
    /* every field of the key tells shapes apart */
    int64_t a[DTM_SDPA_KEY_LEN], b[DTM_SDPA_KEY_LEN];
    dtm_sdpa_key(a, 1, 2, 16, 4096, 120, 72, 1, 0);
    for (int f = 0; f < DTM_SDPA_KEY_LEN; f++) {
        int64_t x[8] = {1, 2, 16, 4096, 120, 72, 1, 0};
        x[f] += 1;
        dtm_sdpa_key(b, (int)x[0], x[1], x[2], x[3], x[4], x[5], (int)x[6], (int)x[7]);
        assert_true(memcmp(a, b, sizeof a) != 0);
    }
    dtm_sdpa_key(b, 1, 2, 16, 4096, 120, 72, 1, 0);
    assert_memory_equal(a, b, sizeof a);
}

static void test_patch_maps(void **state)
{
    (void)state;
    int B = 2, C = 3, p = 2, h = 3, w = 5, H = h * p, W = w * p, n = B * C * H * W;
    tu_rng r = {60};
    float *x = tu_alloc(n), *y = tu_alloc(n), *yr = tu_alloc(n), *z = tu_alloc(n), *zr = tu_alloc(n);
    tu_fill(&r, x, n, 1.0f);
    int64_t sx[4] = {B, C, H, W}, sy[2] = {(int64_t)B * h * w, (int64_t)C * p * p};
    dt_tensor tx = dt_tensor_view(x, DT_F32, 4, sx), tyr = dt_tensor_view(yr, DT_F32, 2, sy);
    ref_patchify(&tx, p, &tyr);
    for (int o = 0; o < n; o++) y[o] = x[dtm_patchify_src(o, C, H, W, p)];
    assert_memory_equal(y, yr, n * sizeof(float));
    int64_t su[3] = {B, (int64_t)h * w, (int64_t)p * p * C};
    dt_tensor tu = dt_tensor_view(x, DT_F32, 3, su), tzr = dt_tensor_view(zr, DT_F32, 4, sx);
    ref_unpatchify(&tu, p, h, w, &tzr);
    for (int o = 0; o < n; o++) z[o] = x[dtm_unpatchify_src(o, C, h, w, p)];
    assert_memory_equal(z, zr, n * sizeof(float));
    /* nearest 2x upsampling, NHWC [2, 3, 5, 3] */
    int64_t su4[4] = {2, 3, 5, 3}, sd4[4] = {2, 6, 10, 3};
    float *up = tu_alloc(2 * 6 * 10 * 3), *upr = tu_alloc(2 * 6 * 10 * 3);
    dt_tensor ti = dt_tensor_view(x, DT_F32, 4, su4), tur = dt_tensor_view(upr, DT_F32, 4, sd4);
    ref_upsample_nearest2x(&ti, &tur);
    for (int o = 0; o < 2 * 6 * 10 * 3; o++) up[o] = x[dtm_upsample2x_src(o, 3, 5, 3)];
    assert_memory_equal(up, upr, 2 * 6 * 10 * 3 * sizeof(float));
    free(x); free(y); free(yr); free(z); free(zr); free(up); free(upr);
}

static void test_quantize_rows_match_cpu(void **state)
{
    (void)state;
    const int Ks[] = {1, 33, 1152};
    for (int t = 0; t < 3; t++) {
        int K = Ks[t];
        tu_rng r = {(uint64_t)(70 + K)};
        float *x = tu_alloc(K), *tmp = tu_alloc(K);
        int8_t *q = malloc(K), *qr = malloc(K);
        tu_fill(&r, x, K, 7.0f);
        x[0] = 0.5f * (K > 1 ? x[1] : 1.0f); /* ties appear after scaling now and then */
        float a = dtm_quantize_row(x, K, q), ar = cpu_qrow_plain(x, K, NULL, NULL, 0, tmp, qr);
        assert_true(a == ar);
        assert_memory_equal(q, qr, K);
        assert_int_equal(dtm_quantize(2.5f, 1.0f), 2); /* half to even */
        assert_int_equal(dtm_quantize(-3.5f, 1.0f), -4);
        assert_int_equal(dtm_quantize(1e9f, 1.0f), 127);
        assert_true(dtm_dequant(10, 0.5f, 0.25f, 1.0f, DTM_ACT_NONE) == 2.25f);
        free(x); free(tmp); free(q); free(qr);
    }
}

/* ---- quantized linears (cuda_qlinear.cu) ---- */

/* The device row kernel's math (balance ⊙ signs, the Hadamard stages one butterfly at a time,
 * amax, codes, scale) against the CPU's plain and AVX2 rows, bit for bit, padding included. */
static void test_qrow_matches_cpu_bitwise(void **state)
{
    (void)state;
    static const struct { int K, smooth, rotate; } cs[] = {
        {8, 0, 1}, {96, 1, 1}, {1152, 1, 1}, {4608, 1, 1}, {24, 0, 1}, {33, 1, 0}, {6, 1, 1}, {67, 0, 1}, {5, 0, 0}};
    for (size_t c = 0; c < sizeof cs / sizeof *cs; c++) {
        const int K = cs[c].K, Kp = (int)dtm_pad_k(K);
        tu_rng r = {(uint64_t)(300 + c)};
        float *x = tu_alloc(K), *sm = tu_alloc(K), *ss = tu_alloc(K), *t = tu_alloc(K), *tc = tu_alloc(K), *h = tu_alloc(K);
        int8_t *q = malloc(Kp), *qc = malloc(K), *qa = malloc(K), *signs = malloc(K);
        tu_fill(&r, x, K, 5.0f);
        for (int j = 0; j < K; j++) sm[j] = 0.25f + fabsf(tu_uniform(&r)) * 4.0f;
        dt_rotation_signs(77 + c, K, signs);
        const int block = cs[c].rotate ? dt_hadamard_block(K) : 1;
        const float *smooth = cs[c].smooth ? sm : NULL;
        const int8_t *sg = cs[c].rotate ? signs : NULL;
        cpu_qrow_signed_smooth(smooth, sg, K, ss);
        const float rs = 127.0f * sqrtf((float)block);
        memset(q, 0x55, Kp);
        float scale = dtm_qrow(x, K, Kp, smooth || sg ? ss : NULL, block, rs, t, q);
        float ac = cpu_qrow_plain(x, K, smooth, sg, block, tc, qc);
        float aa = cpu_qrow(x, K, ss, smooth, sg, block, tc, qa);
        if (memcmp(q, qc, K) || memcmp(qc, qa, K)) fail_msg("K %d block %d: codes differ from the CPU's", K, block);
        assert_true(scale == ac / rs && ac == aa);
        for (int j = K; j < Kp; j++) assert_int_equal(q[j], 0);
        /* the stage-by-stage transform is dt_fwht_blocks, bit for bit */
        for (int j = 0; j < K; j++) h[j] = x[j] * sm[j];
        memcpy(t, h, K * sizeof(float));
        dt_fwht_blocks(h, K, block);
        dtm_fwht_row(t, K, block);
        assert_memory_equal(t, h, K * sizeof(float));
        free(x), free(sm), free(ss), free(t), free(tc), free(h), free(q), free(qc), free(qa), free(signs);
    }
    /* butterfly p of the stage of half-width h pairs (lo, lo + h) inside spans of 2h */
    assert_int_equal(dtm_fwht_lo(0, 1), 0);
    assert_int_equal(dtm_fwht_lo(3, 1), 6);
    assert_int_equal(dtm_fwht_lo(5, 4), 9);
    assert_int_equal(dtm_fwht_lo(7, 8), 7);
}

/* The 4-bit expansion (per channel and group-wise) gives the codes dt_qweights_dequant reads, in
 * the padded [Np, Kp] layout with zeros around. */
static void test_w4_expand_matches_dequant(void **state)
{
    (void)state;
    const int K = 96, N = 13, groups[] = {0, 32};
    for (int gi = 0; gi < 2; gi++) {
        tu_rng r = {(uint64_t)(400 + gi)};
        float *w = tu_alloc(K * N), *wd = tu_alloc(K * N);
        tu_fill(&r, w, K * N, 1.0f);
        for (int j = 0; j < K; j++) w[3 * K + j] *= j < 32 ? 0.02f : 1.0f; /* a narrow group: multiplier > 1 */
        dt_qweights qw;
        dt_err err = {0};
        assert_int_equal(dt_qweights_make(w, K, N, 4, groups[gi], NULL, 0, &qw, &err), DT_OK);
        dt_qweights_dequant(&qw, wd);
        const int64_t Kp = dtm_pad_k(K), Np = dtm_pad_n(N);
        assert_true(Kp == 96 && Np == 16);
        int wide = 0;
        for (int64_t n = 0; n < Np; n++)
            for (int64_t k = 0; k < Kp; k++) {
                int8_t c = dtm_w4_expand((const uint8_t *)qw.q, qw.gscale, qw.group, N, K, n, k);
                if (n >= N || k >= K) {
                    assert_int_equal(c, 0);
                    continue;
                }
                assert_true((float)c * qw.wscale[n] == wd[n * K + k]);
                wide |= c > 7 || c < -7;
            }
        assert_int_equal(wide, groups[gi] != 0); /* group multipliers did apply */
        assert_int_equal(dtm_w4_code(0xF9, 0, 1), -7);
        assert_int_equal(dtm_w4_code(0x9F, 1, 3), -21);
        dt_qweights_free(&qw);
        free(w), free(wd);
    }
}

/* The whole CUDA forward emulated on the host with the kernels' math (rows, padded int8 weights,
 * exact integer GEMM, epilogue) equals the CPU backend's quantized layer bit for bit (the CPU's
 * int8 GEMM is exact at any K, with VNNI or through gemm_s8 without), for W8/W4/W4-group, balancing, rotation,
 * each activation, with and without bias, and sizes the IMMA GEMM needs padded. */
static void test_qlinear_pipeline_matches_cpu(void **state)
{
    (void)state;
    static const struct { int K, N, wbits, group, smooth, rotate, act, bias; } cs[] = {
        {256, 72, 8, 0, 1, 1, DT_ACT_NONE, 1},     {256, 70, 8, 0, 0, 1, DT_ACT_GELU_TANH, 1},
        {67, 29, 8, 0, 1, 0, DT_ACT_SILU, 0},      {128, 33, 4, 0, 1, 1, DT_ACT_GELU_TANH, 1},
        {192, 40, 4, 32, 1, 1, DT_ACT_NONE, 0},    {1024, 12, 8, 0, 1, 1, DT_ACT_SILU, 1},
        {6, 5, 4, 2, 0, 1, DT_ACT_NONE, 1},        {4608, 9, 8, 0, 1, 1, DT_ACT_NONE, 1},
        {2880, 11, 4, 0, 1, 1, DT_ACT_SILU, 0}}; /* K past the old f32-emulated GEMM's exact range */
    dt_backend *be = tu_backend(DT_F32);
    for (size_t c = 0; c < sizeof cs / sizeof *cs; c++) {
        const int K = cs[c].K, N = cs[c].N, M = 7;
        const int64_t Kp = dtm_pad_k(K), Np = dtm_pad_n(N);
        tu_rng r = {(uint64_t)(500 + c)};
        float *w = tu_alloc(K * N), *b = tu_alloc(N), *x = tu_alloc(M * K), *amax = tu_alloc(K), *s = tu_alloc(K);
        float *y = tu_poisoned(M * N), *ye = tu_alloc(M * N), *t = tu_alloc(K), *as = tu_alloc(M), *ss = tu_alloc(K);
        int8_t *q = malloc(M * Kp), *wx = malloc(Np * Kp);
        tu_fill(&r, w, K * N, 0.2f);
        tu_fill(&r, b, N, 0.5f);
        tu_fill(&r, x, M * K, 3.0f);
        for (int j = 0; j < K; j++) x[j] *= j % 7 == 0 ? 20.0f : 1.0f; /* outlier channels */
        for (int j = 0; j < K; j++) amax[j] = fabsf(x[j]) + 0.5f;
        dt_smooth_factors(w, K, N, amax, 0.5f, s);
        dt_qweights qw;
        dt_err err = {0};
        assert_int_equal(dt_qweights_make(w, K, N, cs[c].wbits, cs[c].group, cs[c].smooth ? s : NULL,
                                          cs[c].rotate ? 99 : 0, &qw, &err), DT_OK);
        const float *bias = cs[c].bias ? b : NULL;
        dt_linear *l = NULL;
        assert_int_equal(be->ops->qlinear_create(be, &qw, bias, (dt_act)cs[c].act, M, &l, &err), DT_OK);
        int64_t xs[2] = {M, K}, ys[2] = {M, N};
        dt_tensor tx = dt_tensor_view(x, DT_F32, 2, xs), ty = dt_tensor_view(y, DT_F32, 2, ys);
        assert_int_equal(be->ops->linear_forward(be, l, &tx, &ty, &err), DT_OK);
        /* the device path, step by step */
        const int block = qw.signs ? qw.rot_block : 1;
        const float rs = 127.0f * sqrtf((float)block);
        cpu_qrow_signed_smooth(qw.smooth, qw.signs, K, ss);
        for (int m = 0; m < M; m++) as[m] = dtm_qrow(x + m * K, K, Kp, qw.smooth || qw.signs ? ss : NULL, block, rs, t, q + m * Kp);
        for (int64_t n = 0; n < Np; n++)
            for (int64_t k = 0; k < Kp; k++)
                wx[n * Kp + k] = qw.wbits == 4 ? dtm_w4_expand((const uint8_t *)qw.q, qw.gscale, qw.group, N, K, n, k)
                                 : n < N && k < K ? qw.q[n * K + k] : 0;
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) {
                int64_t acc = 0;
                for (int64_t k = 0; k < Kp; k++) acc += (int64_t)q[m * Kp + k] * wx[n * Kp + k];
                ye[m * N + n] = dtm_qepilogue((int32_t)acc, as[m], qw.wscale[n], bias, n, cs[c].act);
            }
        for (int i = 0; i < M * N; i++)
            if (memcmp(&y[i], &ye[i], 4))
                fail_msg("case %zu (K %d, N %d, W%d): element %d: device math %.9g, CPU %.9g", c, K, N, cs[c].wbits, i,
                         ye[i], y[i]);
        be->ops->linear_destroy(l);
        dt_qweights_free(&qw);
        free(w), free(b), free(x), free(amax), free(s), free(y), free(ye), free(t), free(as), free(ss), free(q), free(wx);
    }
    dt_backend_destroy(be);
    /* the epilogue's GELU is the CPU epilogue's, and no bias adds no +0 */
    tu_rng r = {600};
    for (int i = 0; i < 2000; i++) {
        float v = 10.0f * tu_uniform(&r);
        float a = dtm_qact(DTM_ACT_GELU_TANH, v), e = vm_gelu_tanh_sigmoid(v);
        assert_memory_equal(&a, &e, 4);
    }
    float z = dtm_qepilogue(0, -1.0f, 1.0f, NULL, 0, DTM_ACT_NONE);
    assert_true(z == 0.0f && signbit(z));
    assert_int_equal(dtm_pad_k(1), 16);
    assert_int_equal(dtm_pad_k(1152), 1152);
    assert_int_equal(dtm_pad_n(29), 32);
}

/* Host staging buffers: on a backend without host_alloc (the CPU) plain aligned memory that
 * tensor_set/tensor_get use like any other; 0 bytes is a valid block, NULL frees nothing. */
static void test_host_buffers_fallback(void **state)
{
    (void)state;
    dt_backend *be = tu_backend(DT_F32);
    dt_err err = {0};
    float *h = NULL, *d = NULL, *back = NULL;
    assert_int_equal(dt_backend_host_alloc(be, 1001 * sizeof(float), (void **)&h, &err), DT_OK);
    assert_int_equal(dt_backend_host_alloc(be, 1001 * sizeof(float), (void **)&back, &err), DT_OK);
    assert_true(((uintptr_t)h & 63) == 0 && ((uintptr_t)back & 63) == 0);
    for (int i = 0; i < 1001; i++) h[i] = (float)i * 0.5f;
    assert_int_equal(dt_backend_upload(be, h, 1001, &d, &err), DT_OK);
    assert_int_equal(dt_backend_read(be, d, back, 1001, &err), DT_OK);
    assert_memory_equal(h, back, 1001 * sizeof(float));
    be->ops->buffer_free(be, d);
    void *z = NULL;
    assert_int_equal(dt_backend_host_alloc(be, 0, &z, &err), DT_OK);
    assert_non_null(z);
    dt_backend_host_free(be, z);
    dt_backend_host_free(be, NULL);
    dt_backend_host_free(be, h);
    dt_backend_host_free(be, back);
    dt_backend_destroy(be);
}

/* Without a GPU (or without the backend built in), asking for cuda is one line saying why. */
static void test_cuda_without_gpu_is_one_line_error(void **state)
{
    (void)state;
    if (dt_backend_available(DT_DEV_CUDA)) {
        print_message("  skipped: a CUDA device is present (make test-gpu covers it)\n");
        skip();
    }
    dt_backend_config cfg = {.device = DT_DEV_CUDA, .compute = DT_F32};
    dt_backend *be = NULL;
    dt_err err = {0};
    assert_int_not_equal(dt_backend_create(&cfg, &be, &err), DT_OK);
    assert_null(be);
    assert_null(strchr(err.msg, '\n'));
    const char *want = dt_backend_built(DT_DEV_CUDA) ? "device cuda: no CUDA device found (cudaGetDeviceCount: "
                                                     : "device cuda: not built into this ditrt";
    if (strncmp(err.msg, want, strlen(want))) fail_msg("message \"%s\" does not start with \"%s\"", err.msg, want);
    char list[4096];
    dt_backend_list(list, sizeof list);
    assert_non_null(strstr(list, "backend cpu (built in)"));
    assert_non_null(strstr(list, dt_backend_built(DT_DEV_CUDA) ? "backend cuda (built in): no usable device" : "backend cuda: not built in"));
}

/* The same through the command line: one line on stderr, a failing exit, no output file; a
 * misspelt device is a usage error (exit 2). */
static void test_cli_device_cuda_without_gpu(void **state)
{
    (void)state;
    if (dt_backend_available(DT_DEV_CUDA)) {
        print_message("  skipped: a CUDA device is present\n");
        skip();
    }
    char tmp[256], cmd[1024], out[4096], png[300];
    tu_tmpdir(tmp, sizeof tmp);
    snprintf(png, sizeof png, "%s/x.png", tmp);
    snprintf(cmd, sizeof cmd, "./ditrt txt2img -m assets/demo-pixart -p 'a red circle' --steps 2 --device cuda -o '%s'", png);
    assert_int_equal(tu_run(tmp, cmd, 0, out, sizeof out), 1);
    const char *want = dt_backend_built(DT_DEV_CUDA) ? "ditrt: device cuda: no CUDA device found (cudaGetDeviceCount: "
                                                     : "ditrt: device cuda: not built into this ditrt";
    if (strncmp(out, want, strlen(want))) fail_msg("stderr \"%s\" does not start with \"%s\"", out, want);
    char *nl = strchr(out, '\n');
    assert_true(nl && nl[1] == 0); /* exactly one line */
    assert_int_not_equal(access(png, F_OK), 0);
    snprintf(cmd, sizeof cmd, "./ditrt txt2img -m assets/demo-pixart -p x --device gpu -o '%s'", png);
    assert_int_equal(tu_run(tmp, cmd, 0, out, sizeof out), 2);
    assert_non_null(strstr(out, "--device: expected cpu, cuda or cuda:N"));
    /* --dtype tf32 is a CUDA mode: one line on the CPU, from the generate and bench commands */
    snprintf(cmd, sizeof cmd, "./ditrt txt2img -m assets/demo-pixart -p x --steps 2 --dtype tf32 -o '%s'", png);
    assert_int_equal(tu_run(tmp, cmd, 0, out, sizeof out), 1);
    assert_string_equal(out, "ditrt: dtype: tf32 needs --device cuda (TF32 tensor cores; the cpu backend has none)\n");
    assert_int_not_equal(access(png, F_OK), 0);
    snprintf(cmd, sizeof cmd, "./ditrt bench transformer --dtype tf32 --layers 1 --res 64");
    assert_int_equal(tu_run(tmp, cmd, 0, out, sizeof out), 1);
    assert_non_null(strstr(out, "tf32 needs --device cuda"));
    snprintf(cmd, sizeof cmd, "./ditrt txt2img -m assets/demo-pixart -p x --dtype tf16 -o '%s'", png);
    assert_int_equal(tu_run(tmp, cmd, 0, out, sizeof out), 2);
    assert_non_null(strstr(out, "--dtype: expected f32, bf16, f16 or tf32"));
    dt_backend_config cfg = {.device = DT_DEV_CPU, .compute = DT_F32, .tf32 = 1};
    dt_backend *be = NULL;
    dt_err err = {0};
    assert_int_equal(dt_backend_create(&cfg, &be, &err), DT_EUNSUPPORTED);
    assert_null(be);
    cfg.device = DT_DEV_CUDA, cfg.compute = DT_BF16; /* tf32 is an f32 mode, wherever it runs */
    err = (dt_err){0};
    if (dt_backend_built(DT_DEV_CUDA)) assert_int_equal(dt_backend_create(&cfg, &be, &err), DT_EINVAL);
    snprintf(cmd, sizeof cmd, "./ditrt bench transformer --device cuda:1 --layers 1 --res 64");
    assert_int_equal(tu_run(tmp, cmd, 0, out, sizeof out), 1);
    assert_non_null(strstr(out, "device cuda"));
    tu_rmtree(tmp);
}

/* cuBLASLt and cuDNN load by dlopen without a GPU: every symbol the backend calls resolves in
 * the libraries of this machine's CUDA, and they accept the GEMM and convolution descriptors
 * the ops build for the models' shapes (cuda_selftest.cu; skipped, saying why, where the
 * libraries are absent). */
static void test_cuda_libraries_resolve(void **state)
{
    (void)state;
    char why[512];
    if (!dt_backend_built(DT_DEV_CUDA)) {
        print_message("  skipped: built without CUDA\n");
        skip();
    }
    int r = dt_backend_libs_check(DT_DEV_CUDA, why, sizeof why);
    if (r == 0) {
        print_message("  skipped: %s\n", why);
        skip();
    }
    if (r < 0) fail_msg("%s", why);
    assert_int_equal(r, 1);
    print_message("  %s\n", why);
    assert_int_equal(dt_backend_libs_check(DT_DEV_CPU, why, sizeof why), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bf16_round_matches_cpu),
        cmocka_unit_test(test_f16_round_matches_cpu),
        cmocka_unit_test(test_dtype_table),
        cmocka_unit_test(test_f16_needs_cuda),
        cmocka_unit_test(test_activations_match_cpu_bitwise),
        cmocka_unit_test(test_cfg_and_blend_match_reference),
        cmocka_unit_test(test_layernorm_rows),
        cmocka_unit_test(test_group_norm_groups),
        cmocka_unit_test(test_group_norm_split),
        cmocka_unit_test(test_rms_norm_rows_exact),
        cmocka_unit_test(test_softmax_rows_and_merge),
        cmocka_unit_test(test_window_attention_rows),
        cmocka_unit_test(test_sdpa_views_and_bias),
        cmocka_unit_test(test_sdpa_route_and_key),
        cmocka_unit_test(test_patch_maps),
        cmocka_unit_test(test_quantize_rows_match_cpu),
        cmocka_unit_test(test_qrow_matches_cpu_bitwise),
        cmocka_unit_test(test_w4_expand_matches_dequant),
        cmocka_unit_test(test_qlinear_pipeline_matches_cpu),
        cmocka_unit_test(test_host_buffers_fallback),
        cmocka_unit_test(test_cuda_without_gpu_is_one_line_error),
        cmocka_unit_test(test_cuda_libraries_resolve),
        cmocka_unit_test(test_cli_device_cuda_without_gpu),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
