/* Sinusoidal embeddings, written to match diffusers' numerics (embeddings.py). */
#include "backend.h"
#include <math.h>

void dt_timestep_embedding(const float *t, int n, int dim, int flip_sin_to_cos,
                           float downscale_freq_shift, float *out)
{
    int half = dim / 2;
    for (int i = 0; i < n; i++) {
        float *o = out + (size_t)i * dim;
        for (int k = 0; k < half; k++) {
            /* torch: exponent = -log(10000) * arange(half) / (half - shift), all f32 */
            float expo = -logf(10000.0f) * (float)k / ((float)half - downscale_freq_shift);
            float arg = t[i] * expf(expo);
            float s = sinf(arg), c = cosf(arg);
            o[k] = flip_sin_to_cos ? c : s;
            o[half + k] = flip_sin_to_cos ? s : c;
        }
        if (dim % 2) o[dim - 1] = 0.0f;
    }
}

/* One half of the 2-D embedding: dim/2 channels of sin/cos of one coordinate. */
static void sincos_1d(int dim, double pos, float *out)
{
    int half = dim / 2;
    for (int k = 0; k < half; k++) {
        double omega = 1.0 / pow(10000.0, (double)k / (dim / 2.0));
        out[k] = (float)sin(pos * omega);
        out[half + k] = (float)cos(pos * omega);
    }
}

void dt_sincos_pos_embed_2d(int dim, int gh, int gw, int base_size, float interpolation_scale, float *out)
{
    /* numpy: arange(f32) / (g / base_size) / interpolation_scale, in f32 */
    float sh = (float)((double)gh / base_size), sw = (float)((double)gw / base_size);
    for (int i = 0; i < gh; i++)
        for (int j = 0; j < gw; j++) {
            float *o = out + ((size_t)i * gw + j) * dim;
            /* diffusers puts the w coordinate in the first half, h in the second */
            sincos_1d(dim / 2, (double)((float)j / sw / interpolation_scale), o);
            sincos_1d(dim / 2, (double)((float)i / sh / interpolation_scale), o + dim / 2);
        }
}
