#include "caption.h"
#include <stdlib.h>
#include <string.h>
#include <wctype.h>
#include "case_ignorable.h"

dt_status dt_utf8_check(const char *s, size_t n, const char *what, dt_err *err)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        int ok = len > 0 && i + (size_t)len <= n;
        for (int k = 1; ok && k < len; k++) ok = (p[i + k] & 0xC0) == 0x80;
        if (ok && len > 1) {
            uint32_t cp;
            dt_utf8_decode(s + i, &cp);
            static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
            ok = cp >= min_cp[len] && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
        }
        if (!ok) return dt_fail(err, DT_EINVAL, "%s: invalid UTF-8 at byte %zu (0x%02X)", what, i, c);
        i += (size_t)len;
    }
    return DT_OK;
}

int dt_utf8_decode(const char *s, uint32_t *cp)
{
    const unsigned char *p = (const unsigned char *)s;
    if (p[0] < 0x80) { *cp = p[0]; return 1; }
    if ((p[0] >> 5) == 6) { *cp = (uint32_t)(p[0] & 0x1F) << 6 | (p[1] & 0x3F); return 2; }
    if ((p[0] >> 4) == 14) { *cp = (uint32_t)(p[0] & 0x0F) << 12 | (uint32_t)(p[1] & 0x3F) << 6 | (p[2] & 0x3F); return 3; }
    *cp = (uint32_t)(p[0] & 0x07) << 18 | (uint32_t)(p[1] & 0x3F) << 12 | (uint32_t)(p[2] & 0x3F) << 6 | (p[3] & 0x3F);
    return 4;
}

int dt_utf8_encode(uint32_t c, char *o)
{
    if (c < 0x80) { o[0] = (char)c; return 1; }
    if (c < 0x800) { o[0] = (char)(0xC0 | c >> 6); o[1] = (char)(0x80 | (c & 0x3F)); return 2; }
    if (c < 0x10000) {
        o[0] = (char)(0xE0 | c >> 12); o[1] = (char)(0x80 | ((c >> 6) & 0x3F)); o[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | c >> 18); o[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3F)); o[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

dt_status dt_pystr_open(dt_pystr *p, dt_err *err)
{
    p->loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
    if (!p->loc) return dt_fail(err, DT_EUNSUPPORTED, "locale: C.UTF-8 is not available (needed for Unicode case mapping)");
    return DT_OK;
}

void dt_pystr_close(dt_pystr *p)
{
    if (p->loc) freelocale(p->loc);
    p->loc = (locale_t)0;
}

int dt_pystr_isspace(const dt_pystr *p, uint32_t c)
{
    /* Python counts the information separators U+001C..U+001F, NEL and the no-break
     * spaces as whitespace; glibc does not (checked over all code points by the tests). */
    if ((c >= 0x1C && c <= 0x1F) || c == 0x85 || c == 0xA0 || c == 0x2007 || c == 0x202F) return 1;
    return iswspace_l((wint_t)c, p->loc) != 0;
}

static int case_ignorable(uint32_t c)
{
    size_t lo = 0, hi = sizeof dt_case_ignorable / sizeof *dt_case_ignorable;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < dt_case_ignorable[mid][0]) hi = mid;
        else if (c > dt_case_ignorable[mid][1]) lo = mid + 1;
        else return 1;
    }
    return 0;
}

/* Unicode Cased, as far as the final-sigma rule can tell: every code point with a case
 * mapping or a case class. Those glibc adds beyond Cased are all case-ignorable, which the
 * rule tests first. */
static int cased(const dt_pystr *p, uint32_t c)
{
    wint_t w = (wint_t)c;
    return iswupper_l(w, p->loc) || iswlower_l(w, p->loc) || towlower_l(w, p->loc) != w || towupper_l(w, p->loc) != w;
}

/* CPython handle_capital_sigma: final when a cased letter precedes (skipping
 * case-ignorables) and none follows. */
static uint32_t capital_sigma(const dt_pystr *p, const uint32_t *cp, size_t n, size_t i)
{
    size_t j = i;
    while (j > 0 && case_ignorable(cp[j - 1])) j--;
    int final = j > 0 && cased(p, cp[j - 1]);
    if (final) {
        j = i + 1;
        while (j < n && case_ignorable(cp[j])) j++;
        final = j == n || !cased(p, cp[j]);
    }
    return final ? 0x3C2 : 0x3C3;
}

size_t dt_pystr_lower(const dt_pystr *p, const uint32_t *cp, size_t n, uint32_t *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = cp[i];
        if (c == 0x3A3) out[k++] = capital_sigma(p, cp, n, i);
        else if (c == 0x130) { out[k++] = 0x69; out[k++] = 0x307; } /* the one multi-char lowercase */
        else out[k++] = (uint32_t)towlower_l((wint_t)c, p->loc);
    }
    return k;
}

static dt_status lower_strip(const dt_pystr *p, const char *text, size_t len, char **out, dt_err *err)
{
    uint32_t *cp = malloc((len + 1) * sizeof *cp), *lo = malloc((2 * len + 1) * sizeof *lo);
    char *s = malloc(8 * len + 1);
    if (!cp || !lo || !s) {
        free(cp); free(lo); free(s);
        return dt_fail(err, DT_ENOMEM, "out of memory preprocessing the prompt");
    }
    size_t n = 0;
    for (size_t i = 0; i < len;) i += (size_t)dt_utf8_decode(text + i, &cp[n++]);
    size_t m = dt_pystr_lower(p, cp, n, lo), a = 0, b = m, k = 0;
    while (a < b && dt_pystr_isspace(p, lo[a])) a++;
    while (b > a && dt_pystr_isspace(p, lo[b - 1])) b--;
    for (size_t i = a; i < b; i++) k += (size_t)dt_utf8_encode(lo[i], s + k);
    s[k] = 0;
    free(cp);
    free(lo);
    *out = s;
    return DT_OK;
}

dt_status dt_caption_preprocess(const char *text, int apply, char **out, dt_err *err)
{
    *out = NULL;
    size_t len = strlen(text);
    DT_TRY(dt_utf8_check(text, len, "prompt", err));
    if (!apply) {
        *out = strdup(text);
        return *out ? DT_OK : dt_fail(err, DT_ENOMEM, "out of memory");
    }
    dt_pystr p;
    DT_TRY(dt_pystr_open(&p, err));
    dt_status s = lower_strip(&p, text, len, out, err);
    dt_pystr_close(&p);
    return s;
}
