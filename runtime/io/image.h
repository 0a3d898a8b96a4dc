/* Images: 8-bit RGB in memory, PNG (libpng, with text chunks) / JPEG / BMP (stb_image_write) / WebP (libwebp)
 * on disk, chosen by the file extension; the decoder output conversion diffusers applies; and
 * the PSNR / SSIM metrics of `ditrt compare`.
 *
 * Reading is for files from anywhere (`ditrt compare`, ditrt_image_load): PNG through libpng,
 * JPEG through libjpeg-turbo, BMP through a small bounded reader of uncompressed 8/24/32-bit
 * files. A decoded image is at most DITRT_MAX_IMAGE_PIXELS pixels (environment variable; default
 * DT_IMAGE_MAX_PIXELS_DEFAULT = 16384 x 16384), checked on the header before any pixel buffer is
 * allocated; the file itself is at most 1 GiB.
 *
 * Writes are atomic: the image goes to a temp file in the target's folder, renamed into place
 * only when complete, so a failure leaves no partial file and any earlier file untouched.
 * dt_image_check_writable lets a pipeline refuse a bad output path before any work.
 * Pixels are row-major [height][width][3], no padding. */
#ifndef DT_IMAGE_H
#define DT_IMAGE_H
#include "ditrt.h"
#include <stddef.h>
#include <stdint.h>
#include "runtime/core/error.h"

typedef struct {
    int width, height;
    uint8_t *rgb; /* owned: width * height * 3 bytes */
} dt_image;

/* A PNG text chunk (tEXt, or iTXt for a value that is not plain ASCII). Keys are 1..79
 * printable Latin-1 characters (PNG rule). JPEG and WebP carry one text (image_meta.h: the
 * "parameters" value, else key: value lines) as EXIF UserComment, JPEG also as COM, WebP the
 * pairs as XMP lines too; BMP carries none. */
typedef ditrt_meta dt_image_text;

/* Fails (naming the path) unless the extension is .png, .jpg, .jpeg, .webp or .bmp (any case) and a
 * file can be created in the target's folder; creates nothing that stays. */
dt_status dt_image_check_writable(const char *path, dt_err *err);
/* JPEG quality is 95; WebP is lossy at quality 90 (as the video writer's). */
dt_status dt_image_write(const char *path, const uint8_t *rgb, int width, int height,
                         const dt_image_text *text, int ntext, dt_err *err);
/* Reads PNG (any bit depth or colour type: palettes expanded, gray replicated, alpha dropped,
 * 16-bit scaled by round(v * 255 / 65535)), still WebP, JPEG (gray, YCbCr or RGB; baseline or progressive,
 * at most 500 scans; a stream libjpeg-turbo reports as corrupt or truncated is refused) or BMP
 * (BITMAPINFOHEADER..V5, uncompressed 8-bit palette, 24-bit, or 32-bit BI_RGB/BI_BITFIELDS with
 * the standard masks; anything else refused by name), by content, into 8-bit RGB. */
dt_status dt_image_read(const char *path, dt_image *out, dt_err *err);
/* The same from bytes in memory; path only names the input in messages. */
dt_status dt_image_decode(const char *path, const uint8_t *data, size_t n, dt_image *out, dt_err *err);

/* Decoding bounds (README "Limits on decoded images and videos"). */
#define DT_IMAGE_MAX_PIXELS_DEFAULT (16384ull * 16384ull)
#define DT_VIDEO_MAX_BYTES_DEFAULT (2ull << 30) /* decoded RGB bytes of one video, all frames */
/* DITRT_MAX_IMAGE_PIXELS (pixels of one image or video frame) and DITRT_MAX_VIDEO_BYTES (decoded
 * RGB bytes of a whole video) when set, else the defaults; a value that is not a positive
 * integer fails naming the variable. */
dt_status dt_image_max_pixels(uint64_t *out, dt_err *err);
dt_status dt_video_max_bytes(uint64_t *out, dt_err *err);
/* Fails (naming path, the size and the limit) unless 1 <= width, height and width * height is
 * within dt_image_max_pixels (and each side fits an int). */
dt_status dt_image_check_size(const char *path, uint64_t width, uint64_t height, dt_err *err);
void dt_image_free(dt_image *img);

/* One decoded image [3][height][width] in [-1, 1] to RGB8 as diffusers'
 * VaeImageProcessor.postprocess(output_type="pil") does it: v = clamp(x / 2 + 0.5, 0, 1) in
 * f32, then round-half-to-even(v * 255) (numpy's round). NaN gives 0. */
void dt_image_from_float(const float *chw, int height, int width, uint8_t *rgb);

/* PSNR in dB over all samples of two equal-size images (255^2 / MSE); +inf if identical. */
double dt_image_psnr(const uint8_t *a, const uint8_t *b, int width, int height);
/* SSIM (Wang, Bovik, Sheikh, Simoncelli 2004): 11x11 Gaussian window, sigma 1.5, normalized;
 * K1 0.01, K2 0.03, L 255; local statistics with population (weighted) variances, over the
 * 'valid' window positions only (no padding); the mean SSIM map of each channel, averaged
 * over R, G, B. NaN when an image is smaller than 11x11. Fails only for lack of memory. */
dt_status dt_image_ssim(const uint8_t *a, const uint8_t *b, int width, int height, double *out, dt_err *err);

#endif
