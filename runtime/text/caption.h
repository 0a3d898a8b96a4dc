/* Caption preprocessing as the diffusers PixArt pipelines apply it before tokenizing, and
 * the Python string semantics the text code needs (UTF-8 checks, str.isspace, str.lower).
 *
 * diffusers 0.30.3 PixArtAlphaPipeline._text_preprocessing(text, clean_caption) runs
 * _clean_caption twice when clean_caption is set AND both bs4 and ftfy are importable;
 * otherwise (the default install) it falls back to `text.lower().strip()`. This module
 * implements that fallback exactly: full Unicode lowercasing as Python's str.lower() (glibc
 * towlower_l in a private C.UTF-8 locale object, plus U+0130 -> "i\u0307" and the
 * word-final capital sigma rule) and str.strip() of Python whitespace.
 *
 * NOT done (the _clean_caption steps, which need bs4/ftfy): URL removal, HTML stripping
 * via BeautifulSoup, @nickname / CJK-range / dash / quote normalisation, ftfy.fix_text,
 * html.unescape, IP/file-name/number-pattern removal, the many punctuation and
 * "free shipping"-style regex cleanups. A prompt that relies on them is tokenized
 * differently than by a diffusers install that has bs4 and ftfy.
 *
 * Strings are NUL-terminated UTF-8; invalid UTF-8 (overlong forms, surrogates, code points
 * past U+10FFFF, truncated sequences) is rejected with a message giving the byte offset. */
#ifndef DT_CAPTION_H
#define DT_CAPTION_H
#include <locale.h>
#include <stddef.h>
#include <stdint.h>
#include "runtime/core/error.h"

/* Checks that s[0..n) is valid UTF-8; `what` names the string in the message. */
dt_status dt_utf8_check(const char *s, size_t n, const char *what, dt_err *err);
/* Decodes the code point at s (valid UTF-8); returns its length in bytes. */
int dt_utf8_decode(const char *s, uint32_t *cp);
/* Encodes cp into out (4 bytes room); returns the length. */
int dt_utf8_encode(uint32_t cp, char *out);

/* Python's str semantics over a private C.UTF-8 locale object (no setlocale). */
typedef struct {
    locale_t loc;
} dt_pystr;
dt_status dt_pystr_open(dt_pystr *p, dt_err *err);
void dt_pystr_close(dt_pystr *p);
/* str.isspace() of one code point. */
int dt_pystr_isspace(const dt_pystr *p, uint32_t c);
/* Lowercases cp[0..n) as str.lower() into out (room for 2n code points); returns the count. */
size_t dt_pystr_lower(const dt_pystr *p, const uint32_t *cp, size_t n, uint32_t *out);

/* *out = text.lower().strip() when apply, else a copy of text; the caller frees *out.
 * Fails on invalid UTF-8 ("prompt: invalid UTF-8 at byte N"). */
dt_status dt_caption_preprocess(const char *text, int apply, char **out, dt_err *err);

#endif
