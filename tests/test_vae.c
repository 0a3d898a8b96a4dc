/* The VAE decoder: its kernels against their plain-C references (awkward sizes, NaN-poisoned
 * outputs, f32 and bf16), the decoder against diffusers' AutoencoderKL.decode on the committed
 * fixtures (tests/fixtures/vae-tiny, plain and tiled), bad configs/weights, and the
 * `ditrt eval vae-decoder` command line. DITRT_SLOW=1 adds a peak-memory measurement of a
 * mid-size random VAE at 1024 px (and 2048 px tiled). */
#include "testutil.h"
#include "runtime/core/arena.h"
#include "runtime/core/safetensors.h"
#include "runtime/models/vae.h"
#include "kernels/cpu/ref.h"
#include "kernels/cpu/cpu.h"
#include <cjson/cJSON.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#define FIX "tests/fixtures/vae-tiny"

static char tmp[256];
static int setup(void **state) { (void)state; tu_tmpdir(tmp, sizeof tmp); return 0; }
static int teardown(void **state) { (void)state; tu_rmtree(tmp); return 0; }

static uint16_t *to_bf16(const float *x, size_t n)
{
    uint16_t *b = malloc((n ? n : 1) * 2);
    assert_non_null(b);
    for (size_t i = 0; i < n; i++) b[i] = dt_f32_to_bf16(x[i]);
    return b;
}

static dt_tensor t4(void *data, dt_dtype dt, int64_t a, int64_t b, int64_t c, int64_t d)
{
    int64_t s[4] = {a, b, c, d};
    return dt_tensor_view(data, dt, 4, s);
}

/* ---- kernels ---- */

typedef struct {
    int B, H, W, cin, cout, k, stride, plo, phi, acc, bias;
} conv_case;

static void check_conv(dt_backend *be, dt_dtype cd, dt_dtype xdt, const conv_case *c, dt_conv2d *conv,
                       const float *w, const float *b)
{
    tu_rng r = {(uint64_t)(c->H * 1000 + c->W * 10 + c->cin + c->acc)};
    int Ho = (c->H + c->plo + c->phi - c->k) / c->stride + 1, Wo = (c->W + c->plo + c->phi - c->k) / c->stride + 1;
    size_t nx = (size_t)c->B * c->H * c->W * c->cin, ny = (size_t)c->B * Ho * Wo * c->cout;
    float *x = tu_alloc(nx), *y = tu_poisoned(ny), *yr = tu_alloc(ny);
    tu_fill(&r, x, nx, 1.0f);
    if (c->acc) {
        tu_fill(&r, y, ny, 2.0f);
        memcpy(yr, y, ny * sizeof(float));
    }
    uint16_t *xb = xdt == DT_BF16 ? to_bf16(x, nx) : NULL;
    dt_tensor tx = t4(xb ? (void *)xb : (void *)x, xdt, c->B, c->H, c->W, c->cin);
    dt_tensor ty = t4(y, DT_F32, c->B, Ho, Wo, c->cout), tr = t4(yr, DT_F32, c->B, Ho, Wo, c->cout);
    dt_err err = {0};
    if (be->ops->conv2d_forward(be, conv, &tx, &ty, c->acc, &err) != DT_OK) fail_msg("conv2d: %s", err.msg);
    ref_conv2d(&tx, w, c->bias ? b : NULL, c->k, c->stride, c->plo, c->phi, c->acc, &tr);
    double e = tu_rel_l2(y, yr, ny), tol = cd == DT_BF16 ? 1.5e-2 : 2e-6;
    if (!(e <= tol))
        fail_msg("conv %dx%dx%dx%d -> %d k%d s%d p%d/%d acc %d %s: rel L2 %.3g > %.3g", c->B, c->H, c->W, c->cin, c->cout,
                 c->k, c->stride, c->plo, c->phi, c->acc, dt_dtype_name(cd), e, tol);
    free(x); free(y); free(yr); free(xb);
}

static void test_conv2d(void **state)
{
    (void)state;
    static const conv_case cases[] = {
        {1, 7, 5, 3, 5, 3, 1, 1, 1, 0, 1},
        {2, 9, 13, 19, 21, 3, 1, 1, 1, 1, 1},   /* fused residual add */
        {1, 6, 11, 37, 45, 1, 1, 0, 0, 0, 0},   /* 1x1 shortcut, no bias */
        {2, 10, 7, 17, 9, 3, 2, 0, 1, 0, 1},    /* stride 2, asymmetric padding (encoder-style) */
        {1, 1, 1, 5, 3, 3, 1, 1, 1, 0, 1},      /* one pixel */
        {3, 4, 3, 16, 33, 3, 1, 1, 1, 1, 0},
        {1, 9, 12, 32, 64, 3, 1, 1, 1, 0, 1},   /* channels in whole blocks: no padding in the blocked layout */
        {2, 8, 6, 64, 32, 3, 1, 1, 1, 1, 1},    /* same, with the residual add on the reorder back */
        {1, 6, 10, 24, 40, 3, 2, 0, 1, 1, 0},   /* blocked, stride 2, accumulate */
    };
    dt_dtype cds[2] = {DT_F32, DT_BF16};
    for (int ci = 0; ci < 1 + tu_have_bf16(); ci++)
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            const conv_case *c = &cases[i];
            dt_backend *be = tu_backend(cds[ci]);
            tu_rng r = {(uint64_t)(i + 99)};
            size_t nw = (size_t)c->cout * c->cin * c->k * c->k;
            float *w = tu_alloc(nw), *b = tu_alloc(c->cout);
            tu_fill(&r, w, nw, 1.0f / sqrtf((float)(c->cin * c->k * c->k)));
            tu_fill(&r, b, c->cout, 0.5f);
            dt_conv2d *conv;
            dt_err err = {0};
            if (be->ops->conv2d_create(be, w, c->bias ? b : NULL, c->cin, c->cout, c->k, c->stride, c->plo, c->phi, cds[ci], &conv, &err))
                fail_msg("conv2d_create: %s", err.msg);
            check_conv(be, cds[ci], DT_F32, c, conv, w, b);
            if (cds[ci] == DT_BF16) check_conv(be, cds[ci], DT_BF16, c, conv, w, b); /* bf16 input as is */
            /* more sizes than the primitive cache holds, then the first again */
            for (int s = 0; s < 10; s++) {
                conv_case c2 = *c;
                c2.H += s % 4;
                c2.W += s / 4;
                c2.B = 1 + s % 2;
                check_conv(be, cds[ci], DT_F32, &c2, conv, w, b);
            }
            check_conv(be, cds[ci], DT_F32, c, conv, w, b);
            /* one, then a few output rows per band: first, middle and last bands, their halos and paddings */
            size_t budgets[2] = {1, (size_t)c->W * (size_t)(c->cin + c->cout) * 48};
            for (int bi = 0; cds[ci] == DT_F32 && bi < 2; bi++) {
                cpu_conv2d_set_band_bytes(conv, budgets[bi]);
                check_conv(be, cds[ci], DT_F32, c, conv, w, b);
                conv_case c3 = *c;
                c3.H += 5;
                check_conv(be, cds[ci], DT_F32, &c3, conv, w, b);
            }
            be->ops->conv2d_destroy(conv);
            dt_backend_destroy(be);
            free(w); free(b);
        }
}

static void test_conv2d_rejects_bad_shapes(void **state)
{
    (void)state;
    dt_backend *be = tu_backend(DT_F32);
    float w[2 * 3 * 9] = {0}, x[2 * 4 * 4 * 3] = {0}, y[2 * 4 * 4 * 2];
    dt_conv2d *c;
    dt_err err = {0};
    assert_int_equal(be->ops->conv2d_create(be, w, NULL, 3, 2, 3, 1, 1, 1, DT_F32, &c, &err), DT_OK);
    dt_tensor tx = t4(x, DT_F32, 2, 4, 4, 3), ty = t4(y, DT_F32, 2, 4, 3, 2), tw = t4(x, DT_F32, 2, 4, 6, 2);
    assert_int_equal(be->ops->conv2d_forward(be, c, &tx, &ty, 0, &err), DT_EINVAL); /* wrong output width */
    assert_non_null(strstr(err.msg, "conv2d"));
    dt_err_clear(&err);
    assert_int_equal(be->ops->conv2d_forward(be, c, &tw, &ty, 0, &err), DT_EINVAL); /* wrong input channels */
    dt_err_clear(&err);
    dt_tensor tb = t4(x, DT_BF16, 2, 4, 4, 3), ty2 = t4(y, DT_F32, 2, 4, 4, 2);
    assert_int_equal(be->ops->conv2d_forward(be, c, &tb, &ty2, 0, &err), DT_EINVAL); /* bf16 input to an f32 conv */
    be->ops->conv2d_destroy(c);
    dt_err_clear(&err);
    assert_int_equal(be->ops->conv2d_create(be, w, NULL, 3, 2, 0, 1, 1, 1, DT_F32, &c, &err), DT_EINVAL);
    dt_backend_destroy(be);
}

typedef struct {
    int B, H, W, C, G;
    dt_act act;
    dt_dtype ydt;
    int inplace, affine;
    float offset;
} gn_case;

static void check_group_norm(const gn_case *c)
{
    tu_rng r = {(uint64_t)(c->H * 31 + c->C + c->G)};
    dt_backend *be = tu_backend(DT_F32);
    size_t n = (size_t)c->B * c->H * c->W * c->C;
    float *x = tu_alloc(n), *g = tu_alloc(c->C), *b = tu_alloc(c->C), *yr = tu_alloc(n);
    tu_fill(&r, x, n, 2.0f);
    for (size_t i = 0; i < n; i++) x[i] += c->offset + 0.1f * (float)(i % c->C); /* per-channel means */
    for (int i = 0; i < c->C; i++) g[i] = 1.0f + 0.5f * tu_uniform(&r), b[i] = 0.5f * tu_uniform(&r);
    float *y = c->inplace ? x : tu_poisoned(n);
    uint16_t *yb = malloc(n * 2);
    assert_non_null(yb);
    for (size_t i = 0; i < n; i++) yb[i] = 0x7fc0; /* bf16 NaN */
    dt_tensor tx = t4(x, DT_F32, c->B, c->H, c->W, c->C), tr = t4(yr, DT_F32, c->B, c->H, c->W, c->C);
    dt_tensor ty = c->ydt == DT_BF16 ? t4(yb, DT_BF16, c->B, c->H, c->W, c->C) : t4(y, DT_F32, c->B, c->H, c->W, c->C);
    int64_t cs[1] = {c->C};
    dt_tensor tg = dt_tensor_view(g, DT_F32, 1, cs), tb = dt_tensor_view(b, DT_F32, 1, cs);
    ref_group_norm(&tx, c->G, c->affine ? g : NULL, c->affine ? b : NULL, 1e-6f, c->act, &tr); /* before x is overwritten */
    dt_err err = {0};
    if (be->ops->group_norm(be, &tx, c->G, c->affine ? &tg : NULL, c->affine ? &tb : NULL, 1e-6f, c->act, &ty, &err))
        fail_msg("group_norm: %s", err.msg);
    float *got = y;
    if (c->ydt == DT_BF16) {
        got = tu_alloc(n);
        for (size_t i = 0; i < n; i++) got[i] = dt_bf16_to_f32(yb[i]);
    }
    double e = tu_rel_l2(got, yr, n), tol = c->ydt == DT_BF16 ? 4e-3 : 2e-6;
    if (!(e <= tol)) fail_msg("group_norm %dx%dx%dx%d G%d: rel L2 %.3g > %.3g", c->B, c->H, c->W, c->C, c->G, e, tol);
    if (got != y) free(got);
    if (!c->inplace) free(y);
    free(x); free(g); free(b); free(yr); free(yb);
    dt_backend_destroy(be);
}

static void test_group_norm(void **state)
{
    (void)state;
    static const gn_case cases[] = {
        {2, 5, 7, 12, 3, DT_ACT_SILU, DT_F32, 0, 1, 0.0f},
        {1, 13, 1, 40, 4, DT_ACT_NONE, DT_F32, 0, 1, 5.0f},   /* mean far from 0 */
        {3, 3, 3, 24, 8, DT_ACT_SILU, DT_BF16, 0, 1, 0.0f},
        {1, 40, 25, 40, 4, DT_ACT_SILU, DT_F32, 0, 1, 1.0f},  /* several statistics chunks */
        {2, 300, 200, 8, 4, DT_ACT_NONE, DT_F32, 1, 1, -3.0f}, /* many chunks, in place */
        {2, 9, 11, 6, 3, DT_ACT_SILU, DT_F32, 1, 0, 0.0f},    /* no affine, in place */
        {1, 17, 3, 300, 30, DT_ACT_GELU_TANH, DT_BF16, 0, 1, 0.5f}, /* C beyond one 256-channel block */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check_group_norm(&cases[i]);
    /* channels that do not split into the groups are refused */
    dt_backend *be = tu_backend(DT_F32);
    float x[10];
    dt_tensor tx = t4(x, DT_F32, 1, 1, 2, 5);
    dt_err err = {0};
    assert_int_equal(be->ops->group_norm(be, &tx, 2, NULL, NULL, 1e-6f, DT_ACT_NONE, &tx, &err), DT_EINVAL);
    assert_non_null(strstr(err.msg, "groups"));
    dt_backend_destroy(be);
}

static void test_upsample(void **state)
{
    (void)state;
    tu_rng r = {21};
    dt_backend *be = tu_backend(DT_F32);
    int B = 2, H = 3, W = 5, C = 7;
    size_t n = (size_t)B * H * W * C, m = 4 * n;
    float *x = tu_alloc(n), *y = tu_poisoned(m), *yr = tu_alloc(m);
    uint16_t *yb = malloc(m * 2), *ybr = malloc(m * 2);
    assert_non_null(yb);
    assert_non_null(ybr);
    tu_fill(&r, x, n, 3.0f);
    dt_tensor tx = t4(x, DT_F32, B, H, W, C), ty = t4(y, DT_F32, B, 2 * H, 2 * W, C), tr = t4(yr, DT_F32, B, 2 * H, 2 * W, C);
    dt_err err = {0};
    assert_int_equal(be->ops->upsample_nearest2x(be, &tx, &ty, &err), DT_OK);
    ref_upsample_nearest2x(&tx, &tr);
    assert_memory_equal(y, yr, m * sizeof(float));
    dt_tensor tb = t4(yb, DT_BF16, B, 2 * H, 2 * W, C), tbr = t4(ybr, DT_BF16, B, 2 * H, 2 * W, C);
    memset(yb, 0xff, m * 2);
    assert_int_equal(be->ops->upsample_nearest2x(be, &tx, &tb, &err), DT_OK);
    ref_upsample_nearest2x(&tx, &tbr);
    assert_memory_equal(yb, ybr, m * 2);
    dt_tensor bad = t4(y, DT_F32, B, 2 * H + 1, 2 * W, C);
    assert_int_equal(be->ops->upsample_nearest2x(be, &tx, &bad, &err), DT_EINVAL);
    dt_backend_destroy(be);
    free(x); free(y); free(yr); free(yb); free(ybr);
}

/* An NCHW buffer seen as [B,H,W,C]. */
static dt_tensor nchw_as_nhwc(float *data, int64_t B, int64_t C, int64_t H, int64_t W)
{
    dt_tensor t = t4(data, DT_F32, B, H, W, C);
    t.strides[0] = C * H * W; t.strides[1] = W; t.strides[2] = 1; t.strides[3] = H * W;
    return t;
}

static void test_copy4d(void **state)
{
    (void)state;
    tu_rng r = {33};
    dt_backend *be = tu_backend(DT_F32);
    int B = 2, C = 5, H = 6, W = 7;
    size_t n = (size_t)B * C * H * W;
    float *x = tu_alloc(n), *y = tu_poisoned(n), *yr = tu_poisoned(n);
    tu_fill(&r, x, n, 1.0f);
    dt_err err = {0};
    /* NCHW -> NHWC */
    dt_tensor src = nchw_as_nhwc(x, B, C, H, W), dst = t4(y, DT_F32, B, H, W, C), dr = t4(yr, DT_F32, B, H, W, C);
    assert_int_equal(be->ops->copy4d(be, &src, &dst, &err), DT_OK);
    ref_copy4d(&src, &dr);
    assert_memory_equal(y, yr, n * sizeof(float));
    /* a crop of an NHWC image into an NCHW window (the tiled decode's last step) */
    float *z = tu_poisoned(n), *zr = tu_poisoned(n);
    dt_tensor crop = t4(y + (1 * W + 2) * C, DT_F32, B, 4, 3, C);
    crop.strides[0] = (int64_t)H * W * C; crop.strides[1] = (int64_t)W * C; crop.strides[2] = C;
    dt_tensor win = nchw_as_nhwc(z + 2 * W + 3, B, C, H, W), winr = nchw_as_nhwc(zr + 2 * W + 3, B, C, H, W);
    win.shape[1] = winr.shape[1] = 4;
    win.shape[2] = winr.shape[2] = 3;
    assert_int_equal(be->ops->copy4d(be, &crop, &win, &err), DT_OK);
    ref_copy4d(&crop, &winr);
    for (size_t i = 0; i < n; i++) assert_true((isnan(z[i]) && isnan(zr[i])) || z[i] == zr[i]);
    /* f32 -> bf16, contiguous rows and strided */
    uint16_t *b = malloc(n * 2), *br = malloc(n * 2);
    assert_non_null(b);
    assert_non_null(br);
    dt_tensor tb = t4(b, DT_BF16, B, H, W, C), tbr = t4(br, DT_BF16, B, H, W, C);
    assert_int_equal(be->ops->copy4d(be, &dst, &tb, &err), DT_OK);
    ref_copy4d(&dst, &tbr);
    assert_memory_equal(b, br, n * 2);
    assert_int_equal(be->ops->copy4d(be, &src, &tb, &err), DT_OK);
    assert_memory_equal(b, br, n * 2);
    dt_tensor wrong = t4(y, DT_F32, B, H, W, C + 1);
    assert_int_equal(be->ops->copy4d(be, &src, &wrong, &err), DT_EINVAL);
    dt_backend_destroy(be);
    free(x); free(y); free(yr); free(z); free(zr); free(b); free(br);
}

static void check_blend(int axis, int na, int nb, int other, int extent)
{
    tu_rng r = {(uint64_t)(axis * 100 + na * 10 + nb)};
    dt_backend *be = tu_backend(DT_F32);
    int64_t sa[4] = {2, 3, other, 4}, sb[4] = {2, 3, other, 4};
    sa[axis] = na;
    sb[axis] = nb;
    /* a and b live inside larger buffers: strided views, like tiles of a row */
    size_t n = (size_t)2 * 9 * 9 * 4 * 4;
    float *a = tu_alloc(n), *b = tu_alloc(n), *br = tu_alloc(n);
    tu_fill(&r, a, n, 1.0f);
    tu_fill(&r, b, n, 1.0f);
    memcpy(br, b, n * sizeof(float));
    dt_tensor ta = dt_tensor_view(a + 5, DT_F32, 4, sa), tb = dt_tensor_view(b + 3, DT_F32, 4, sb), tr = tb;
    int64_t st[4] = {9 * 9 * 4 * 4, 9 * 4 * 4, 4 * 4, 1};
    memcpy(ta.strides, st, sizeof st);
    memcpy(tb.strides, st, sizeof st);
    tr = tb;
    tr.data = br + 3;
    dt_err err = {0};
    assert_int_equal(be->ops->blend_edge(be, &ta, &tb, axis, extent, &err), DT_OK);
    ref_blend_edge(&ta, &tr, axis, extent);
    assert_memory_equal(b, br, n * sizeof(float)); /* also: nothing outside the edge moved */
    dt_backend_destroy(be);
    free(a); free(b); free(br);
}

static void test_blend_edge(void **state)
{
    (void)state;
    check_blend(1, 3, 3, 5, 2);
    check_blend(1, 3, 2, 5, 8);  /* extent clipped to the shorter tile */
    check_blend(2, 9, 4, 3, 3);
    check_blend(2, 2, 9, 3, 7);
    check_blend(2, 5, 5, 3, 1);  /* extent 1: weight 0 keeps a's last slice */
    /* diffusers' formula at one point: b[1] = a[n-2]*(1-1/2) + b[1]*(1/2) */
    dt_backend *be = tu_backend(DT_F32);
    float a[3] = {10, 20, 30}, b[3] = {1, 2, 3};
    dt_tensor ta = t4(a, DT_F32, 1, 3, 1, 1), tb = t4(b, DT_F32, 1, 3, 1, 1);
    dt_err err = {0};
    assert_int_equal(be->ops->blend_edge(be, &ta, &tb, 1, 2, &err), DT_OK);
    assert_true(b[0] == 20.0f && b[1] == 16.0f && b[2] == 3.0f);
    dt_tensor tc = t4(b, DT_F32, 1, 3, 1, 1);
    tc.shape[3] = 2;
    assert_int_equal(be->ops->blend_edge(be, &ta, &tc, 1, 2, &err), DT_EINVAL);
    dt_backend_destroy(be);
}

/* ---- the decoder against diffusers ---- */

static vae_model *load_fixture(dt_backend *be)
{
    vae_model *m;
    dt_err err = {0};
    if (vae_load(be, FIX "/vae", &m, &err) != DT_OK) fail_msg("%s", err.msg);
    return m;
}

/* Decodes a fixture case; returns the output (caller frees). */
static float *decode_case(vae_model *m, const char *cse, int tiled, dt_arena *a, dt_tensor *out)
{
    char path[256];
    snprintf(path, sizeof path, FIX "/case_%s.in.safetensors", cse);
    dt_tensor lat;
    float *l = tu_read_f32(path, "latent", 0, NULL, &lat);
    int f = vae_upscale(m);
    *out = t4(NULL, DT_F32, lat.shape[0], vae_get_config(m)->out_channels, f * lat.shape[2], f * lat.shape[3]);
    float *o = tu_poisoned((size_t)dt_tensor_numel(out));
    out->data = o;
    dt_err err = {0};
    if ((tiled ? vae_decode_tiled : vae_decode)(m, &lat, a, out, &err) != DT_OK) fail_msg("%s: %s", cse, err.msg);
    free(l);
    return o;
}

static const struct { const char *name; int tiled; } cases[] = {
    {"square", 0}, {"nonsquare", 0}, {"tiled", 1}, {"tiled_b2", 1}};

static void parity(dt_dtype cd, double tol)
{
    dt_backend *be = tu_backend(cd);
    vae_model *m = load_fixture(be);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        dt_arena a;
        dt_arena_init(&a);
        dt_tensor out, ref;
        char path[256];
        snprintf(path, sizeof path, FIX "/case_%s.out.safetensors", cases[i].name);
        float *o = decode_case(m, cases[i].name, cases[i].tiled, &a, &out), *r = tu_read_f32(path, "sample", 0, NULL, &ref);
        assert_int_equal(dt_tensor_numel(&out), dt_tensor_numel(&ref));
        double e = tu_rel_l2(o, r, (size_t)dt_tensor_numel(&ref));
        printf("  vae-tiny %-9s %-6s %s: rel L2 %.2e (limit %.0e), arena peak %zu bytes\n", cases[i].name,
               cases[i].tiled ? "tiled" : "", dt_dtype_name(cd), e, tol, a.peak);
        if (!(e <= tol)) fail_msg("%s %s: relative L2 %.3g > %.3g", cases[i].name, dt_dtype_name(cd), e, tol);
        /* the arena took exactly what vae_decode_bytes predicts */
        size_t want;
        dt_err err = {0};
        assert_int_equal(vae_decode_bytes(m, out.shape[0], out.shape[2] / 8, out.shape[3] / 8, cases[i].tiled, &want, &err), DT_OK);
        assert_int_equal(a.peak, want);
        free(o);
        free(r);
        dt_arena_free(&a);
    }
    vae_free(m);
    dt_backend_destroy(be);
}

static void test_parity_f32(void **state) { (void)state; parity(DT_F32, 1e-4); }
static void test_parity_bf16(void **state) { (void)state; TU_REQUIRE_BF16(); parity(DT_BF16, 2e-2); }

static void test_config_and_accessors(void **state)
{
    (void)state;
    dt_backend *be = tu_backend(DT_F32);
    vae_model *m = load_fixture(be);
    const vae_config *c = vae_get_config(m);
    assert_int_equal(c->nblocks, 4);
    assert_int_equal(c->block_out_channels[0], 8);
    assert_int_equal(c->block_out_channels[3], 16);
    assert_int_equal(c->latent_channels, 4);
    assert_int_equal(c->norm_num_groups, 4);
    assert_int_equal(c->sample_size, 32);
    assert_int_equal(c->mid_block_add_attention, 1);
    assert_int_equal(vae_upscale(m), 8);
    assert_true(fabsf(vae_scaling_factor(m) - 0.18215f) < 1e-7f);
    assert_int_equal(c->has_shift_factor, 0);
    assert_true(vae_shift_factor(m) == 0.0f);
    vae_free(m);
    dt_backend_destroy(be);
}

/* Same inputs: bit-identical output, also from a reused arena; a latent that fits one tile
 * decodes the same with or without tiling. */
static void test_deterministic_and_reuse(void **state)
{
    (void)state;
    dt_backend *be = tu_backend(tu_fast_dtype());
    vae_model *m = load_fixture(be);
    dt_arena a;
    dt_arena_init(&a);
    dt_tensor o1, o2;
    float *x = decode_case(m, "nonsquare", 0, &a, &o1);
    size_t peak = a.peak;
    dt_arena_reset(&a);
    float *y = decode_case(m, "nonsquare", 0, &a, &o2);
    assert_memory_equal(x, y, dt_tensor_nbytes(&o1));
    assert_true(a.peak == peak);
    free(x); free(y);
    /* one tile: [1, 4, 4, 3] */
    tu_rng r = {5};
    float lat[4 * 4 * 3];
    tu_fill(&r, lat, 48, 1.0f);
    dt_tensor tl = t4(lat, DT_F32, 1, 4, 4, 3), t1 = t4(tu_poisoned(3 * 32 * 24), DT_F32, 1, 3, 32, 24), t2 = t1;
    t2.data = tu_poisoned(3 * 32 * 24);
    dt_err err = {0};
    assert_int_equal(vae_decode(m, &tl, &a, &t1, &err), DT_OK);
    assert_int_equal(vae_decode_tiled(m, &tl, &a, &t2, &err), DT_OK);
    assert_memory_equal(t1.data, t2.data, dt_tensor_nbytes(&t1));
    /* bad shapes are refused */
    dt_tensor bad = t4(lat, DT_F32, 1, 3, 4, 4);
    assert_int_equal(vae_decode(m, &bad, &a, &t1, &err), DT_EINVAL);
    assert_non_null(strstr(err.msg, "latent"));
    dt_err_clear(&err);
    dt_tensor badout = t4(t1.data, DT_F32, 1, 3, 32, 32);
    assert_int_equal(vae_decode_tiled(m, &tl, &a, &badout, &err), DT_EINVAL);
    assert_non_null(strstr(err.msg, "output"));
    free(t1.data);
    free(t2.data);
    dt_arena_free(&a);
    vae_free(m);
    dt_backend_destroy(be);
}

/* ---- bad weights and configs ---- */

/* Writes the fixture weights into dir, leaving out `drop` and replacing `reshape` by a
 * [2, 2] tensor (either may be NULL). */
static void write_weights(const char *dir, const char *drop, const char *reshape)
{
    dt_safetensors *st;
    dt_err err = {0};
    assert_int_equal(dt_st_open(FIX "/vae/diffusion_pytorch_model.safetensors", &st, &err), DT_OK);
    int n = dt_st_count(st), k = 0;
    dt_st_item *items = calloc((size_t)n, sizeof *items);
    dt_tensor *ts = calloc((size_t)n, sizeof *ts);
    static float small[4];
    int64_t s22[2] = {2, 2};
    for (int i = 0; i < n; i++) {
        const dt_st_entry *e = dt_st_at(st, i);
        if (drop && !strcmp(e->name, drop)) continue;
        ts[k] = reshape && !strcmp(e->name, reshape) ? dt_tensor_view(small, DT_F32, 2, s22)
                                                      : dt_tensor_view((void *)e->data, e->dtype, e->ndim, e->shape);
        items[k] = (dt_st_item){e->name, &ts[k]};
        k++;
    }
    char path[512];
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    assert_int_equal(dt_st_write(path, items, k, &err), DT_OK);
    free(items);
    free(ts);
    dt_st_close(st);
}

/* Rewrites dir/config.json (at first a copy of the fixture's) with one field replaced by
 * `json` (NULL: removed). */
static void write_config(const char *dir, const char *field, const char *json)
{
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f) f = fopen(FIX "/vae/config.json", "rb");
    assert_non_null(f);
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *j = cJSON_Parse(buf);
    assert_non_null(j);
    cJSON_DeleteItemFromObjectCaseSensitive(j, field);
    if (json) cJSON_AddItemToObject(j, field, cJSON_Parse(json));
    char *s = cJSON_Print(j);
    tu_write_file(path, s, strlen(s));
    free(s);
    cJSON_Delete(j);
}

static void expect_load_fail(const char *dir, dt_status want, const char *needle)
{
    dt_backend *be = tu_backend(DT_F32);
    vae_model *m = NULL;
    dt_err err = {0};
    dt_status s = vae_load(be, dir, &m, &err);
    if (s == DT_OK) fail_msg("loading succeeded but should fail with \"%s\"", needle);
    if (s != want) fail_msg("status %d, expected %d (%s)", (int)s, (int)want, err.msg);
    if (!strstr(err.msg, needle)) fail_msg("message lacks \"%s\": %s", needle, err.msg);
    if (strchr(err.msg, '\n')) fail_msg("message is not one line: %s", err.msg);
    dt_backend_destroy(be);
}

static void test_bad_weights(void **state)
{
    (void)state;
    write_config(tmp, "act_fn", "\"silu\"");
    write_weights(tmp, "decoder.mid_block.attentions.0.to_k.weight", NULL);
    expect_load_fail(tmp, DT_EFORMAT, "\"decoder.mid_block.attentions.0.to_k.weight\"");
    write_weights(tmp, "decoder.up_blocks.3.resnets.0.conv_shortcut.bias", NULL);
    expect_load_fail(tmp, DT_EFORMAT, "decoder.up_blocks.3.resnets.0.conv_shortcut.bias");
    write_weights(tmp, NULL, "decoder.conv_out.weight");
    expect_load_fail(tmp, DT_EFORMAT, "decoder.conv_out.weight");
    /* without mid-block attention the attention weights are simply not read */
    write_weights(tmp, "decoder.mid_block.attentions.0.to_k.weight", NULL);
    write_config(tmp, "mid_block_add_attention", "false");
    dt_backend *be = tu_backend(DT_F32);
    vae_model *m;
    dt_err err = {0};
    if (vae_load(be, tmp, &m, &err) != DT_OK) fail_msg("%s", err.msg);
    vae_free(m);
    dt_backend_destroy(be);
}

static void test_bad_config(void **state)
{
    (void)state;
    write_weights(tmp, NULL, NULL);
    write_config(tmp, "up_block_types", "[\"UpDecoderBlock2D\", \"AttnUpDecoderBlock2D\", \"UpDecoderBlock2D\", \"UpDecoderBlock2D\"]");
    expect_load_fail(tmp, DT_EUNSUPPORTED, "up_block_types");
    write_config(tmp, "up_block_types", "[\"UpDecoderBlock2D\"]");
    expect_load_fail(tmp, DT_EFORMAT, "up_block_types");
    write_config(tmp, "up_block_types", NULL); /* absent: the default */
    write_config(tmp, "norm_num_groups", "5");
    expect_load_fail(tmp, DT_EFORMAT, "norm_num_groups");
    write_config(tmp, "norm_num_groups", "4");
    write_config(tmp, "block_out_channels", "\"wide\"");
    expect_load_fail(tmp, DT_EFORMAT, "block_out_channels");
    write_config(tmp, "block_out_channels", "[8, 16, 16, 32]");
    expect_load_fail(tmp, DT_EFORMAT, "has shape"); /* config and weights disagree */
    write_config(tmp, "block_out_channels", "[8, 16, 16, 16]");
    write_config(tmp, "act_fn", "\"gelu\"");
    expect_load_fail(tmp, DT_EUNSUPPORTED, "act_fn");
    write_config(tmp, "act_fn", "\"silu\"");
    write_config(tmp, "scaling_factor", "\"big\"");
    expect_load_fail(tmp, DT_EFORMAT, "scaling_factor");
    write_config(tmp, "scaling_factor", "0.13025");
    write_config(tmp, "shift_factor", "0.0609");
    dt_backend *be = tu_backend(DT_F32);
    vae_model *m;
    dt_err err = {0};
    if (vae_load(be, tmp, &m, &err) != DT_OK) fail_msg("%s", err.msg);
    assert_true(vae_get_config(m)->has_shift_factor);
    assert_true(fabsf(vae_shift_factor(m) - 0.0609f) < 1e-7f && fabsf(vae_scaling_factor(m) - 0.13025f) < 1e-7f);
    vae_free(m);
    dt_backend_destroy(be);
    /* tiles that do not assemble to 8h x 8w (diffusers would return another size) are refused */
    write_config(tmp, "sample_size", "36");
    be = tu_backend(DT_F32);
    if (vae_load(be, tmp, &m, &err) != DT_OK) fail_msg("%s", err.msg);
    float lat[4 * 12 * 10] = {0}, *img = tu_alloc(3 * 96 * 80);
    dt_tensor tl = t4(lat, DT_F32, 1, 4, 12, 10), ti = t4(img, DT_F32, 1, 3, 96, 80);
    dt_arena a;
    dt_arena_init(&a);
    assert_int_equal(vae_decode_tiled(m, &tl, &a, &ti, &err), DT_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "assemble"));
    dt_err_clear(&err);
    assert_int_equal(vae_decode(m, &tl, &a, &ti, &err), DT_OK); /* untiled is fine */
    vae_free(m);
    write_config(tmp, "sample_size", "[32, 32]"); /* a list: diffusers uses its first entry */
    if (vae_load(be, tmp, &m, &err) != DT_OK) fail_msg("%s", err.msg);
    assert_int_equal(vae_get_config(m)->sample_size, 32);
    assert_int_equal(vae_decode_tiled(m, &tl, &a, &ti, &err), DT_OK);
    vae_free(m);
    dt_arena_free(&a);
    dt_backend_destroy(be);
    free(img);
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", tmp);
    tu_write_file(path, "{\"block_out_channels\": [8,", 26);
    expect_load_fail(tmp, DT_EFORMAT, "malformed JSON");
}

/* ---- command line ---- */

static int run(const char *cmd, char *err, size_t n) { return tu_run(tmp, cmd, 0, err, n); }

static void expect_cli_fail(const char *cmd, const char *needle, const char *out) { tu_expect_fail(tmp, cmd, needle, out); }

static void expect_cli_match(const char *model, const char *cse, const char *flags, double tol)
{
    char cmd[1024], out[512], err[4096];
    snprintf(out, sizeof out, "%s/o.safetensors", tmp);
    snprintf(cmd, sizeof cmd, "./ditrt eval vae-decoder -m %s --in " FIX "/case_%s.in.safetensors --out %s %s", model, cse, out, flags);
    if (run(cmd, err, sizeof err) != 0) fail_msg("%s: %s", cmd, err);
    char ref[256];
    snprintf(ref, sizeof ref, FIX "/case_%s.out.safetensors", cse);
    dt_tensor a, b;
    float *x = tu_read_f32(out, "sample", 0, NULL, &a), *y = tu_read_f32(ref, "sample", 0, NULL, &b);
    assert_int_equal(dt_tensor_numel(&a), dt_tensor_numel(&b));
    for (int i = 0; i < 4; i++) assert_int_equal(a.shape[i], b.shape[i]);
    assert_rel_l2_below(x, y, (size_t)dt_tensor_numel(&b), tol);
    free(x);
    free(y);
    unlink(out);
}

static void test_cli(void **state)
{
    (void)state;
    expect_cli_match(FIX, "nonsquare", "--threads 1", 1e-4);
    expect_cli_match(FIX "/vae", "tiled", "--tiling", 1e-4);
    if (tu_have_bf16()) expect_cli_match(FIX, "tiled_b2", "--tiling --dtype bf16", 2e-2);
    else expect_cli_match(FIX, "tiled_b2", "--tiling --dtype f32", 1e-4);

    char cmd[2048], out[512], in[512];
    snprintf(out, sizeof out, "%s/o.safetensors", tmp);
    const char *base = "./ditrt eval vae-decoder -m " FIX;
    snprintf(cmd, sizeof cmd, "%s --in /nonexistent.safetensors --out %s", base, out);
    expect_cli_fail(cmd, "/nonexistent.safetensors", out);
    snprintf(cmd, sizeof cmd, "./ditrt eval vae-decoder -m /no/model --in " FIX "/case_square.in.safetensors --out %s", out);
    expect_cli_fail(cmd, "/no/model", out);
    snprintf(cmd, sizeof cmd, "./ditrt eval vae-decoder -m tests/fixtures/pixart-alpha-tiny --in " FIX "/case_square.in.safetensors --out %s", out);
    expect_cli_fail(cmd, "no \"vae\" component", out);
    snprintf(cmd, sizeof cmd, "%s --in " FIX "/case_square.in.safetensors --out %s --dtype f64", base, out);
    expect_cli_fail(cmd, "--dtype", out);
    snprintf(cmd, sizeof cmd, "%s --in " FIX "/case_square.in.safetensors --out %s --threads 0", base, out);
    expect_cli_fail(cmd, "--threads", out);
    snprintf(cmd, sizeof cmd, "%s --in " FIX "/case_square.in.safetensors --out %s --tile 64", base, out);
    expect_cli_fail(cmd, "--tile", out);
    snprintf(cmd, sizeof cmd, "%s --in " FIX "/case_square.in.safetensors", base);
    expect_cli_fail(cmd, "--out", NULL);
    snprintf(cmd, sizeof cmd, "%s --in " FIX "/case_square.out.safetensors --out %s", base, out);
    expect_cli_fail(cmd, "\"latent\" is missing", out);
    /* three latent channels for a four-channel VAE */
    snprintf(in, sizeof in, "%s/in.safetensors", tmp);
    float z[1 * 3 * 4 * 4] = {0};
    dt_tensor tz = t4(z, DT_F32, 1, 3, 4, 4);
    dt_st_item item = {"latent", &tz};
    dt_err e = {0};
    assert_int_equal(dt_st_write(in, &item, 1, &e), DT_OK);
    snprintf(cmd, sizeof cmd, "%s --in %s --out %s", base, in, out);
    expect_cli_fail(cmd, "\"latent\" has shape [1, 3, 4, 4], expected [-1, 4, -1, -1]", out);
    /* a truncated latent file */
    FILE *f = fopen(in, "r+b");
    assert_non_null(f);
    assert_int_equal(ftruncate(fileno(f), 20), 0);
    fclose(f);
    expect_cli_fail(cmd, in, out);
}

/* ---- DITRT_SLOW: peak memory of a mid-size random VAE ---- */

static vae_config mid_size_vae(void)
{
    return (vae_config){.in_channels = 3, .out_channels = 3, .latent_channels = 4, .nblocks = 4,
                        .block_out_channels = {64, 128, 256, 256}, .layers_per_block = 2, .norm_num_groups = 32,
                        .sample_size = 512, .mid_block_add_attention = 1, .use_post_quant_conv = 1,
                        .scaling_factor = 0.18215f};
}

/* One decode of the mid-size VAE at res x res, in a process of its own (DITRT_VAE_MEASURE=
 * "res tiled dtype"): prints its arena peak and wall time. */
static int measure_child(const char *spec)
{
    int res, tiled;
    char dts[8];
    dt_dtype cd;
    if (sscanf(spec, "%d %d %7s", &res, &tiled, dts) != 3 || !dt_dtype_parse(dts, &cd)) return 2;
    vae_config c = mid_size_vae();
    dt_backend_config bc = {.device = DT_DEV_CPU, .compute = cd};
    dt_backend *be;
    vae_model *m;
    dt_err err = {0};
    dt_weight_source src = dt_weights_random(7, 0.02f);
    if (dt_backend_create(&bc, &be, &err) || vae_create(be, &c, &src, &m, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
    dt_weights_close(&src);
    int h = res / 8;
    float *lat = malloc((size_t)4 * h * h * sizeof(float)), *img = malloc((size_t)3 * res * res * sizeof(float));
    if (!lat || !img) return 1;
    tu_rng r = {1};
    tu_fill(&r, lat, (size_t)4 * h * h, 1.0f);
    dt_tensor tl = t4(lat, DT_F32, 1, 4, h, h), to = t4(img, DT_F32, 1, 3, res, res);
    dt_arena a;
    dt_arena_init(&a);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if ((tiled ? vae_decode_tiled : vae_decode)(m, &tl, &a, &to, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int finite = 1;
    for (size_t i = 0; i < (size_t)3 * res * res; i++) finite &= isfinite(img[i]) != 0;
    printf("arena peak %7.1f MiB, %5.1f s%s", a.peak / 1048576.0,
           (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9, finite ? "" : " (NON-FINITE OUTPUT)");
    dt_arena_free(&a);
    vae_free(m);
    dt_backend_destroy(be);
    free(lat);
    free(img);
    return finite ? 0 : 1;
}

/* Runs measure_child in a fresh process (fork alone is not safe once OpenMP has started
 * threads) and adds the child's max RSS. */
static void measure(const char *label, int res, int tiled, dt_dtype cd)
{
    char spec[64];
    snprintf(spec, sizeof spec, "%d %d %s", res, tiled, dt_dtype_name(cd));
    printf("  %-30s %-4s: ", label, dt_dtype_name(cd));
    fflush(stdout);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setenv("DITRT_VAE_MEASURE", spec, 1);
        execl("/proc/self/exe", "test_vae", (char *)NULL);
        _exit(127);
    }
    int status;
    struct rusage ru;
    assert_true(wait4(pid, &status, 0, &ru) == pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail_msg("measurement %s failed", spec);
    printf(", max RSS %7.1f MiB\n", ru.ru_maxrss / 1024.0);
}

/* Arena bytes (computed, not run) for a VAE shaped like Stable Diffusion's. */
static void planned(const char *name, vae_config c, dt_dtype cd)
{
    dt_backend *be = tu_backend(cd);
    vae_model *m;
    dt_err err = {0};
    dt_weight_source src = dt_weights_random(7, 0.02f);
    if (vae_create(be, &c, &src, &m, &err)) fail_msg("%s", err.msg);
    dt_weights_close(&src);
    printf("  %s, %s, arena bytes (planned):", name, dt_dtype_name(cd));
    int res[3] = {512, 1024, 2048};
    for (int i = 0; i < 3; i++)
        for (int tiled = 0; tiled < 2; tiled++) {
            size_t b;
            assert_int_equal(vae_decode_bytes(m, 1, res[i] / 8, res[i] / 8, tiled, &b, &err), DT_OK);
            printf("%s %d%s %.0f MiB", i || tiled ? "," : "", res[i], tiled ? " tiled" : "", b / 1048576.0);
        }
    printf("\n");
    vae_free(m);
    dt_backend_destroy(be);
}

static void test_memory(void **state)
{
    (void)state;
    if (!getenv("DITRT_SLOW")) { printf("  skipped: the VAE memory measurements run only with DITRT_SLOW=1 (make check-slow), ~90 s\n"); skip(); return; }
    vae_config sd = mid_size_vae();
    int sdc[4] = {128, 256, 512, 512};
    memcpy(sd.block_out_channels, sdc, sizeof sdc);
    planned("SD-shaped VAE [128,256,512,512]", sd, DT_F32);
    planned("SD-shaped VAE [128,256,512,512]", sd, DT_BF16);
    planned("mid-size VAE [64,128,256,256]", mid_size_vae(), DT_F32);
    printf("  mid-size VAE [64,128,256,256], 2 layers/block, sample_size 512, measured:\n");
    measure("1024x1024", 1024, 0, DT_BF16);
    measure("1024x1024 tiled (512 px tiles)", 1024, 1, DT_BF16);
    measure("1024x1024", 1024, 0, DT_F32);
    if (getenv("DITRT_VAE_2048")) measure("2048x2048 tiled (512 px tiles)", 2048, 1, DT_BF16);
}

int main(void)
{
    if (getenv("DITRT_VAE_MEASURE")) return measure_child(getenv("DITRT_VAE_MEASURE"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv2d),
        cmocka_unit_test(test_conv2d_rejects_bad_shapes),
        cmocka_unit_test(test_group_norm),
        cmocka_unit_test(test_upsample),
        cmocka_unit_test(test_copy4d),
        cmocka_unit_test(test_blend_edge),
        cmocka_unit_test(test_parity_f32),
        cmocka_unit_test(test_parity_bf16),
        cmocka_unit_test(test_config_and_accessors),
        cmocka_unit_test(test_deterministic_and_reuse),
        cmocka_unit_test(test_bad_weights),
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_memory),
    };
    return cmocka_run_group_tests_name("vae", tests, setup, teardown);
}
