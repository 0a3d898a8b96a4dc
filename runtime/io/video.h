/* Videos: 8-bit RGB frames written as a PNG sequence, an animated WebP (libwebp's anim
 * encoder, lossless off, quality 90) or an MP4 with H.264 (libx264 through libavcodec;
 * yuv420p, CRF 18), chosen by the output path:
 *
 *   ends in '/' or names an existing folder   -> PNG frames <dir>/frame_000.png, ...
 *   contains one printf integer conversion    -> PNG frames by that pattern (out_%03d.png)
 *   .webp / .mp4 (any case)                   -> one animated file
 *
 * The generation parameters go into each PNG's text chunks, the WebP's XMP chunk and the MP4's
 * metadata (as mdta keys, `movflags use_metadata_tags`; ffprobe shows them). Every file is
 * written to a temp file in the target folder and renamed into place when complete.
 * dt_video_read decodes a WebP or MP4 (or a PNG frame sequence) back, for tests and compare.
 * Frames are row-major [frames][height][width][3], no padding. */
#ifndef DT_VIDEO_H
#define DT_VIDEO_H
#include <stddef.h>
#include <stdint.h>
#include "runtime/core/error.h"
#include "image.h"

typedef enum { DT_VIDEO_PNG_DIR, DT_VIDEO_PNG_PATTERN, DT_VIDEO_WEBP, DT_VIDEO_MP4 } dt_video_kind;

/* Classifies `path` as above; fails naming the path for an unknown extension, a pattern with
 * other conversions, or a folder (or the folder of a file or pattern) that does not exist or
 * cannot be written. Creates nothing that stays. */
dt_status dt_video_check_writable(const char *path, dt_video_kind *kind, dt_err *err);

typedef struct {
    int frames, width, height;
    double fps;
    const uint8_t *rgb;          /* [frames][height][width][3] */
    const dt_image_text *meta;   /* key/value pairs; may be NULL */
    int n_meta;
} dt_video_frames;

dt_status dt_video_write(const char *path, const dt_video_frames *v, dt_err *err);

/* The path of frame i of a PNG sequence (the pattern filled in, or <dir>/frame_%03d.png). */
void dt_video_frame_path(const char *path, dt_video_kind kind, int i, char *out, size_t n);

typedef struct {
    int frames, width, height;
    double fps;                  /* 0 for a PNG sequence */
    uint8_t *rgb;                /* owned */
    char *comment;               /* the "comment" / XMP metadata when present (owned), else NULL */
} dt_video;

/* Reads an .mp4 (the MP4 demuxer only, local file only) or .webp file, or the PNG frames of a
 * folder/pattern (until a frame is missing). Each frame is bounded as an image is
 * (dt_image_check_size: DITRT_MAX_IMAGE_PIXELS) and all frames together by DITRT_MAX_VIDEO_BYTES
 * decoded RGB bytes (default DT_VIDEO_MAX_BYTES_DEFAULT, 2 GiB), checked on the container's
 * canvas size and frame count before the decoders allocate, and before each frame is stored. */
dt_status dt_video_read(const char *path, dt_video *out, dt_err *err);
void dt_video_free(dt_video *v);

#endif
