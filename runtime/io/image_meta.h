/* Metadata blocks of the image formats without PNG's text chunks (JPEG, WebP): one text, held
 * as an EXIF UserComment (what PNG-info tools such as AUTOMATIC1111's read from JPEG and WebP)
 * and, in JPEG, as a COM segment too. Internal to runtime/io. */
#ifndef DT_IMAGE_META_H
#define DT_IMAGE_META_H
#include <stddef.h>
#include <stdint.h>
#include "image.h"

/* The one text: the value of the "parameters" pair when there is one (the web UI's format),
 * else "key: value" lines of every pair. malloc'd; NULL with *oom 0 when there are no pairs. */
char *dt_image_meta_text(const dt_image_text *text, int ntext, int *oom);

/* A big-endian TIFF (EXIF) block with one Exif IFD entry, UserComment = text: character code
 * "ASCII" for ASCII text, else "UNICODE" and UTF-16BE (invalid UTF-8 as U+FFFD). At most
 * `max` bytes: a longer text is cut (at a character). malloc'd, *len its size; NULL when out
 * of memory. */
uint8_t *dt_exif_user_comment(const char *text, size_t max, size_t *len);

/* The text back from such a block (tests, ditrt_image_load callers); malloc'd UTF-8, NULL when
 * the block has no UserComment. */
char *dt_exif_read_user_comment(const uint8_t *tiff, size_t n);

#endif
