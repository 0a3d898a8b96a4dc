/* JPEG and WebP metadata blocks (image_meta.h). The EXIF block is the smallest a reader
 * accepts: "MM", IFD0 with the ExifIFD pointer alone, the Exif IFD with UserComment alone. */
#include "image_meta.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *dt_image_meta_text(const dt_image_text *t, int n, int *oom)
{
    *oom = 0;
    for (int i = 0; i < n; i++)
        if (!strcmp(t[i].key, "parameters")) {
            char *s = strdup(t[i].value);
            *oom = !s;
            return s;
        }
    if (n <= 0) return NULL;
    size_t len = 1;
    for (int i = 0; i < n; i++) len += strlen(t[i].key) + strlen(t[i].value) + 3;
    char *s = malloc(len), *p = s;
    if (!s) { *oom = 1; return NULL; }
    *p = 0;
    for (int i = 0; i < n; i++) p += sprintf(p, "%s: %s\n", t[i].key, t[i].value);
    return s;
}

/* The next code point of UTF-8 at *s (advancing it); U+FFFD for a malformed sequence. */
static uint32_t utf8_next(const unsigned char **s)
{
    const unsigned char *p = *s;
    uint32_t c = p[0];
    int extra = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : -1;
    if (extra < 0) { *s = p + 1; return 0xfffd; }
    c &= extra ? 0x3f >> extra : 0x7f;
    for (int i = 1; i <= extra; i++) {
        if ((p[i] & 0xc0) != 0x80) { *s = p + i; return 0xfffd; }
        c = c << 6 | (p[i] & 0x3f);
    }
    *s = p + 1 + extra;
    static const uint32_t min[] = {0, 0x80, 0x800, 0x10000};
    return c < min[extra] || c > 0x10ffff || (c >= 0xd800 && c < 0xe000) ? 0xfffd : c;
}

static void be16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v; }
static void be32(uint8_t *p, uint32_t v) { be16(p, v >> 16), be16(p + 2, v); }

/* One IFD entry: tag, type, count, value or offset. */
static void entry(uint8_t *p, uint32_t tag, uint32_t type, uint32_t count, uint32_t value)
{
    be16(p, tag), be16(p + 2, type), be32(p + 4, count), be32(p + 8, value);
}

uint8_t *dt_exif_user_comment(const char *text, size_t max, size_t *len)
{
    enum { HEAD = 8 + 2 + 12 + 4 + 2 + 12 + 4 }; /* TIFF header, IFD0, Exif IFD */
    size_t n = strlen(text), cap = HEAD + 8 + 2 * n + 4;
    int ascii = 1;
    for (size_t i = 0; i < n; i++) ascii &= (unsigned char)text[i] < 0x80;
    uint8_t *b = malloc(cap), *d = b + HEAD + 8;
    if (!b) return NULL;
    size_t limit = max > HEAD + 8 ? max - HEAD - 8 : 0, used = 0;
    if (ascii) {
        used = n < limit ? n : limit;
        memcpy(d, text, used);
    } else {
        for (const unsigned char *s = (const unsigned char *)text; *s;) {
            uint32_t c = utf8_next(&s);
            size_t need = c >= 0x10000 ? 4 : 2;
            if (used + need > limit) break;
            if (c >= 0x10000) {
                c -= 0x10000;
                be16(d + used, 0xd800 | c >> 10), be16(d + used + 2, 0xdc00 | (c & 0x3ff));
            } else {
                be16(d + used, c);
            }
            used += need;
        }
    }
    memcpy(b, "MM\0*", 4);
    be32(b + 4, 8);
    be16(b + 8, 1);
    entry(b + 10, 0x8769, 4, 1, 8 + 2 + 12 + 4); /* ExifIFDPointer */
    be32(b + 22, 0);
    be16(b + 26, 1);
    entry(b + 28, 0x9286, 7, (uint32_t)(8 + used), HEAD); /* UserComment, UNDEFINED */
    be32(b + 40, 0);
    memcpy(b + HEAD, ascii ? "ASCII\0\0\0" : "UNICODE\0", 8);
    *len = HEAD + 8 + used;
    return b;
}

static uint32_t rd16(const uint8_t *p, int le) { return le ? (uint32_t)p[0] | p[1] << 8 : (uint32_t)p[0] << 8 | p[1]; }
static uint32_t rd32(const uint8_t *p, int le) { return le ? rd16(p, 1) | rd16(p + 2, 1) << 16 : rd16(p, 0) << 16 | rd16(p + 2, 0); }

/* The entry with `tag` in the IFD at off: its count and value/offset field, or 0. */
static int find_tag(const uint8_t *t, size_t n, int le, uint32_t off, uint32_t tag, uint32_t *count, uint32_t *value)
{
    if (off > n || n - off < 2) return 0;
    uint32_t k = rd16(t + off, le);
    if ((n - off - 2) / 12 < k) return 0;
    for (uint32_t i = 0; i < k; i++) {
        const uint8_t *e = t + off + 2 + 12 * i;
        if (rd16(e, le) == tag) { *count = rd32(e + 4, le); *value = rd32(e + 8, le); return 1; }
    }
    return 0;
}

char *dt_exif_read_user_comment(const uint8_t *t, size_t n)
{
    if (n >= 6 && !memcmp(t, "Exif\0\0", 6)) t += 6, n -= 6;
    if (n < 8 || (memcmp(t, "MM\0*", 4) && memcmp(t, "II*\0", 4))) return NULL;
    int le = t[0] == 'I';
    uint32_t cnt, exif, val;
    if (!find_tag(t, n, le, rd32(t + 4, le), 0x8769, &cnt, &exif) || !find_tag(t, n, le, exif, 0x9286, &cnt, &val))
        return NULL;
    if (cnt < 8 || val > n || n - val < cnt) return NULL;
    const uint8_t *d = t + val + 8;
    size_t m = cnt - 8;
    char *s = malloc(m * 2 + 1), *p = s; /* UTF-16 units become at most 3 bytes per 2 */
    if (!s) return NULL;
    if (memcmp(t + val, "UNICODE", 7)) {
        memcpy(s, d, m);
        s[m] = 0;
        return s;
    }
    for (size_t i = 0; i + 1 < m; i += 2) {
        uint32_t c = rd16(d + i, le);
        if (c >= 0xd800 && c < 0xdc00 && i + 3 < m) {
            c = 0x10000 + ((c - 0xd800) << 10) + (rd16(d + i + 2, le) - 0xdc00);
            i += 2;
        }
        if (c < 0x80) *p++ = (char)c;
        else if (c < 0x800) *p++ = (char)(0xc0 | c >> 6), *p++ = (char)(0x80 | (c & 0x3f));
        else if (c < 0x10000) *p++ = (char)(0xe0 | c >> 12), *p++ = (char)(0x80 | (c >> 6 & 0x3f)), *p++ = (char)(0x80 | (c & 0x3f));
        else *p++ = (char)(0xf0 | c >> 18), *p++ = (char)(0x80 | (c >> 12 & 0x3f)), *p++ = (char)(0x80 | (c >> 6 & 0x3f)), *p++ = (char)(0x80 | (c & 0x3f));
    }
    *p = 0;
    return s;
}
