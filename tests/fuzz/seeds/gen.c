/* Writes the image and video seeds of tests/fuzz/seeds/ that the repo has no file of
 * (JPEG baseline/progressive/gray, BMP 24/8-bit, small WebP and MP4). Run from the repo root:
 *   cc -Iinclude -I. tests/fuzz/seeds/gen.c libditrt.a -ljpeg <the Makefile's LDLIBS> -o /tmp/gen && /tmp/gen */
#include "runtime/io/image.h"
#include "runtime/io/video.h"
#include <stdio.h>
#include <stdlib.h>
#include <jpeglib.h>

static void jpeg(const char *path, const uint8_t *rgb, int w, int h, int gray, int progressive)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    FILE *f = fopen(path, "wb");
    jpeg_stdio_dest(&c, f);
    c.image_width = w;
    c.image_height = h;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    if (gray) jpeg_set_colorspace(&c, JCS_GRAYSCALE);
    if (progressive) jpeg_simple_progression(&c);
    jpeg_set_quality(&c, 80, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(rgb + (size_t)c.next_scanline * w * 3);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    fclose(f);
}

int main(void)
{
    enum { W = 16, H = 12, F = 3 };
    static uint8_t px[F * W * H * 3];
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(i * 37 + i / 7);
    dt_err e = {0};
    jpeg("tests/fuzz/seeds/image/baseline.jpg", px, W, H, 0, 0);
    jpeg("tests/fuzz/seeds/image/progressive.jpg", px, W, H, 0, 1);
    jpeg("tests/fuzz/seeds/image/gray.jpg", px, W, H, 1, 0);
    if (dt_image_write("tests/fuzz/seeds/image/rgb24.bmp", px, W, H, NULL, 0, &e) != DT_OK) return 1;
    /* an 8-bit palette BMP, top-down, 4 colours */
    uint8_t b[14 + 40 + 16 + 16 * 12] = {'B', 'M'};
    b[10] = 14 + 40 + 16;
    b[14] = 40;
    b[18] = W;
    b[22] = (uint8_t)-H; b[23] = b[24] = b[25] = 0xff;
    b[26] = 1;
    b[28] = 8;
    b[46] = 4;
    for (int i = 0; i < 16; i++) b[54 + i] = (uint8_t)(i * 16);
    for (int i = 0; i < W * H; i++) b[70 + i] = (uint8_t)(i % 4);
    FILE *f = fopen("tests/fuzz/seeds/image/pal8.bmp", "wb");
    fwrite(b, 1, sizeof b, f);
    fclose(f);
    dt_video_frames v = {F, W, H, 8, px, NULL, 0};
    if (dt_video_write("tests/fuzz/seeds/video/clip.webp", &v, &e) != DT_OK) return 1;
    if (dt_video_write("tests/fuzz/seeds/video/clip.mp4", &v, &e) != DT_OK) return 1;
    return 0;
}
