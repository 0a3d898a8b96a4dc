/* Video files: bytes starting with "RIFF" as an animated WebP, anything else as an MP4, read by
 * dt_video_read from a temp file. Bounds lowered (unless set) to 1 Mpx per frame and 64 MB per
 * video so every input stays fast under ASan. */
#include "fuzz_util.h"
#include "runtime/io/video.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_default_env("DITRT_MAX_IMAGE_PIXELS", "1048576");
    fz_default_env("DITRT_MAX_VIDEO_BYTES", "67108864");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int webp = size >= 4 && !memcmp(data, "RIFF", 4);
    const char *p = fz_write(webp ? "v.webp" : "v.mp4", data, size);
    dt_video v;
    dt_err e = {0};
    if (dt_video_read(p, &v, &e) == DT_OK) {
        if (!v.rgb || v.frames < 1) abort();
        dt_video_free(&v);
    }
    return 0;
}
