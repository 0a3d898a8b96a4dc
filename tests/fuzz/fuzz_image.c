/* Image files (PNG, JPEG, BMP by content), as `ditrt compare` and ditrt_image_load read them.
 * The pixel bound is lowered to 4 Mpx (DITRT_MAX_IMAGE_PIXELS, unless set) to keep inputs fast. */
#include "fuzz_util.h"
#include "runtime/io/image.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_default_env("DITRT_MAX_IMAGE_PIXELS", "4194304");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = fz_write("image", data, size);
    dt_image img;
    dt_err e = {0};
    if (dt_image_read(p, &img, &e) == DT_OK) {
        if (!img.rgb || img.width < 1 || img.height < 1) abort();
        dt_image_free(&img);
    }
    return 0;
}
