/* Patchify / unpatchify index maps: for each OUTPUT element (one thread each), the input element
 * it copies. Layouts as in backend.h: patchify [B,C,H,W] -> [B·h·w, C·p·p] (c, ky, kx);
 * unpatchify [B, h·w, p·p·C] (ky, kx, c) -> [B, C, h·p, w·p]. */
#ifndef DT_CUDA_PATCH_MATH_H
#define DT_CUDA_PATCH_MATH_H
#include "kernels/cuda/elem_math.h"

DTM_HD int64_t dtm_patchify_src(int64_t o, int64_t C, int64_t H, int64_t W, int64_t p)
{
    int64_t h = H / p, w = W / p, row = o / (C * p * p), col = o % (C * p * p);
    int64_t b = row / (h * w), i = (row / w) % h, j = row % w;
    int64_t c = col / (p * p), ky = (col / p) % p, kx = col % p;
    return ((b * C + c) * H + i * p + ky) * W + j * p + kx;
}

DTM_HD int64_t dtm_unpatchify_src(int64_t o, int64_t C, int64_t h, int64_t w, int64_t p)
{
    int64_t Wd = w * p, Hd = h * p;
    int64_t xx = o % Wd, yy = (o / Wd) % Hd, c = (o / (Wd * Hd)) % C, b = o / (Wd * Hd * C);
    int64_t i = yy / p, ky = yy % p, j = xx / p, kx = xx % p;
    return (b * h * w + i * w + j) * p * p * C + (ky * p + kx) * C + c;
}

/* Nearest 2x upsampling NHWC: output (b, y, x, c) reads (b, y/2, x/2, c). */
DTM_HD int64_t dtm_upsample2x_src(int64_t o, int64_t H, int64_t W, int64_t C)
{
    int64_t c = o % C, x = (o / C) % (2 * W), y = (o / (C * 2 * W)) % (2 * H), b = o / (C * 2 * W * 2 * H);
    return ((b * H + y / 2) * W + x / 2) * C + c;
}

#endif
