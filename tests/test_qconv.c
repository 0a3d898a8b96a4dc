/* Quantized U-Net convolutions (runtime/models/unet_conv.c, kernels/cpu/im2col.c): a
 * convolution as im2col rows times the reordered weight, against a plain-C NHWC convolution on
 * random shapes (kernel 1/3, stride 1/2, asymmetric padding, the residual accumulate): exact up
 * to f32 rounding with a float GEMM, bounded with W8A8 and W4A8 int8 GEMMs. */
#include "testutil.h"
#include "kernels/quant.h"
#include "runtime/models/unet_conv.h"
#include "runtime/models/denoiser.h"

/* y[b, oy, ox, o] = bias[o] + sum w[o, c, ky, kx] x[b, iy, ix, c] (zero padding). */
static void ref_conv(const float *x, int B, int H, int W, int C, const float *w, const float *bias, int O, int k,
                     int stride, int plo, int phi, float *y)
{
    int Ho = (H + plo + phi - k) / stride + 1, Wo = (W + plo + phi - k) / stride + 1;
    for (int b = 0; b < B; b++)
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Wo; ox++)
                for (int o = 0; o < O; o++) {
                    double s = bias[o];
                    for (int ky = 0; ky < k; ky++)
                        for (int kx = 0; kx < k; kx++) {
                            int iy = oy * stride + ky - plo, ix = ox * stride + kx - plo;
                            if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                            for (int c = 0; c < C; c++)
                                s += (double)w[((o * C + c) * k + ky) * k + kx] * x[((b * H + iy) * W + ix) * C + c];
                        }
                    y[((b * Ho + oy) * Wo + ox) * O + o] = (float)s;
                }
}

static int g_bits; /* the hook's weight bits (0: float GEMM, -1: leaves the layer to the model) */

static dt_status hook(dt_weight_source *s, dt_backend *be, const char *name, const float *w, const float *b, int in,
                      int out, dt_act act, int m_hint, dt_dtype dt, dt_linear **lin, dt_err *err)
{
    (void)s;
    (void)name;
    if (g_bits < 0) { *lin = NULL; return DT_OK; }
    if (!g_bits) return be->ops->linear_create(be, w, b, in, out, act, m_hint, dt, lin, err);
    dt_qweights qw;
    DT_TRY(dt_qweights_make(w, in, out, g_bits, 0, NULL, 0, &qw, err));
    dt_status st = be->ops->qlinear_create(be, &qw, b, act, m_hint, lin, err);
    dt_qweights_free(&qw);
    return st;
}

static float frand(uint64_t *r)
{
    *r = *r * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*r >> 40) / (double)(1ull << 24)) * 2 - 1;
}

static double rel_l2(const float *a, const float *b, size_t n)
{
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        d += (double)(a[i] - b[i]) * (a[i] - b[i]);
        s += (double)b[i] * b[i];
    }
    return sqrt(d / (s + 1e-30));
}

static void run_case(dt_backend *be, uint64_t seed, int bits, double tol)
{
    uint64_t r = seed;
    int B = 1 + (int)(seed % 2), k = seed % 3 ? 3 : 1, stride = 1 + (int)(seed / 3 % 2);
    int plo = k == 3 ? (int)(seed / 5 % 2) : 0, phi = k == 3 ? 1 : 0;
    int H = 5 + (int)(seed % 4), W = 4 + (int)(seed / 2 % 5), C = 8 * (1 + (int)(seed % 3)), O = 8 + 4 * (int)(seed % 2);
    int Ho = (H + plo + phi - k) / stride + 1, Wo = (W + plo + phi - k) / stride + 1;
    size_t nx = (size_t)B * H * W * C, ny = (size_t)B * Ho * Wo * O, nw = (size_t)O * C * k * k;
    float *x = malloc(nx * 4), *w = malloc(nw * 4), *b = malloc((size_t)O * 4), *want = malloc(ny * 4),
          *got = malloc(ny * 4), *prev = malloc(ny * 4);
    for (size_t i = 0; i < nx; i++) x[i] = frand(&r);
    for (size_t i = 0; i < nw; i++) w[i] = frand(&r) * 0.2f;
    for (int i = 0; i < O; i++) b[i] = frand(&r);
    for (size_t i = 0; i < ny; i++) prev[i] = frand(&r);
    ref_conv(x, B, H, W, C, w, b, O, k, stride, plo, phi, want);
    dt_weight_source src = {.make_linear = hook};
    g_bits = bits;
    unet_conv c;
    dt_err err = {0};
    if (unet_conv_make(be, &src, "down_blocks.0.resnets.0.conv1", w, b, C, O, k, stride, plo, phi, 64, DT_F32, &c, &err))
        fail_msg("%s", err.msg);
    assert_non_null(c.lin);
    assert_null(c.c);
    int64_t sx[4] = {B, H, W, C}, sy[4] = {B, Ho, Wo, O};
    dt_tensor tx = dt_tensor_view(x, DT_F32, 4, sx), ty = dt_tensor_view(got, DT_F32, 4, sy);
    if (unet_conv_forward(be, &c, &tx, &ty, 0, &err)) fail_msg("%s", err.msg);
    double e = rel_l2(got, want, ny);
    if (e > tol) fail_msg("seed %llu bits %d k %d stride %d pad %d/%d: rel L2 %g > %g", (unsigned long long)seed, bits, k,
                          stride, plo, phi, e, tol);
    memcpy(got, prev, ny * 4); /* accumulate: y += conv(x) */
    if (unet_conv_forward(be, &c, &tx, &ty, 1, &err)) fail_msg("%s", err.msg);
    for (size_t i = 0; i < ny; i++) prev[i] += want[i];
    e = rel_l2(got, prev, ny);
    if (e > tol) fail_msg("seed %llu accumulate: rel L2 %g", (unsigned long long)seed, e);
    unet_conv_free(be, &c);
    /* the same layer not quantizable (conv_in) or without a hook: the backend's convolution */
    assert_int_equal(unet_conv_make(be, &src, "conv_in", w, b, C, O, k, stride, plo, phi, 64, DT_F32, &c, &err), DT_OK);
    assert_non_null(c.c);
    assert_int_equal(unet_conv_forward(be, &c, &tx, &ty, 0, &err), DT_OK);
    assert_true(rel_l2(got, want, ny) < 1e-5);
    unet_conv_free(be, &c);
    g_bits = -1; /* a hook that builds it in float (FLOAT mode): the backend's convolution */
    assert_int_equal(unet_conv_make(be, &src, "up_blocks.0.upsamplers.0.conv", w, b, C, O, k, stride, plo, phi, 64, DT_F32, &c,
                                    &err), DT_OK);
    assert_non_null(c.c);
    assert_null(c.lin);
    unet_conv_free(be, &c);
    free(x), free(w), free(b), free(want), free(got), free(prev);
}

static void test_conv_float_gemm(void **state)
{
    (void)state;
    dt_backend *be = tu_backend(DT_F32);
    for (uint64_t s = 1; s <= 12; s++) run_case(be, s, 0, 1e-5);
    dt_backend_destroy(be);
}

static void test_conv_w8a8_w4a8(void **state)
{
    (void)state;
    dt_backend *be = tu_backend(DT_F32);
    for (uint64_t s = 1; s <= 12; s++) run_case(be, s, 8, 2e-2);
    for (uint64_t s = 1; s <= 12; s++) run_case(be, s, 4, 0.2);
    dt_backend_destroy(be);
}

/* Which U-Net layers are quantized (diffusers names). */
static void test_roles(void **state)
{
    (void)state;
    assert_int_equal(unet_linear_role("down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"), DT_LINEAR_QUANTIZABLE);
    assert_int_equal(unet_linear_role("mid_block.attentions.0.transformer_blocks.1.attn2.to_k"),
                     DT_LINEAR_QUANTIZABLE | DT_LINEAR_TEXT_KV);
    assert_int_equal(unet_linear_role("up_blocks.1.attentions.2.proj_out"), DT_LINEAR_QUANTIZABLE);
    assert_int_equal(unet_linear_role("up_blocks.0.resnets.1.conv_shortcut"), DT_LINEAR_QUANTIZABLE | DT_LINEAR_CONV);
    assert_int_equal(unet_linear_role("down_blocks.0.downsamplers.0.conv"), DT_LINEAR_QUANTIZABLE | DT_LINEAR_CONV);
    assert_int_equal(unet_linear_role("down_blocks.0.resnets.0.time_emb_proj"), 0);
    assert_int_equal(unet_linear_role("conv_in"), 0);
    assert_int_equal(unet_linear_role("conv_out"), 0);
    assert_int_equal(unet_linear_role("time_embedding.linear_1"), 0);
    assert_int_equal(unet_linear_role("add_embedding.linear_2"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_float_gemm),
        cmocka_unit_test(test_conv_w8a8_w4a8),
        cmocka_unit_test(test_roles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
