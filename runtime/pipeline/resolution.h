/* PixArt's resolution binning (diffusers use_resolution_binning): a requested size is
 * generated at the closest aspect-ratio bin of the model's native resolution, then the
 * decoded image is resized (bilinear) and center-cropped back to the request. */
#ifndef DT_RESOLUTION_H
#define DT_RESOLUTION_H
#include "runtime/core/error.h"

/* Bins for a transformer sample_size (32 -> 256 px, 64 -> 512, 128 -> 1024, 256 -> 2048).
 * Returns 0 when the size has no table (binning is then skipped). */
int dt_resolution_bin(int sample_size, int height, int width, int *bin_height, int *bin_width);

/* diffusers VaeImageProcessor.resize_and_crop_tensor: img [B,C,h,w] f32 -> out [B,C,H,W]:
 * scale by max(H/h, W/w) with bilinear interpolation (align_corners=False, as
 * F.interpolate), then crop the center. out must hold B*C*H*W floats. */
void dt_resize_and_crop(const float *img, int B, int C, int h, int w, float *out, int H, int W);

#endif
