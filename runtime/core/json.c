#include "json.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Python's json (and so every diffusers config) writes -Infinity, Infinity and NaN, which
 * strict JSON lacks: e.g. "lambda_min_clipped": -Infinity in DPM-Solver++ configs. Outside
 * strings, -Infinity and Infinity become numbers strtod maps to -inf and +inf, in place: each
 * replacement is shorter than its token. NaN is refused (see find_nan). */
static void python_json_literals(char *s)
{
    static const struct { const char *tok, *rep; } lit[] = {{"-Infinity", "-1e999"}, {"Infinity", "1e999"}};
    int in_str = 0;
    char *w = s;
    for (char *r = s; *r;) {
        if (in_str) {
            if (*r == '\\' && r[1]) { *w++ = *r++; *w++ = *r++; continue; }
            if (*r == '"') in_str = 0;
            *w++ = *r++;
            continue;
        }
        if (*r == '"') { in_str = 1; *w++ = *r++; continue; }
        size_t i;
        for (i = 0; i < sizeof lit / sizeof *lit; i++) {
            size_t n = strlen(lit[i].tok), m = strlen(lit[i].rep);
            if (!strncmp(r, lit[i].tok, n)) {
                memcpy(w, lit[i].rep, m); /* m < n and w <= r: the write stays inside the token */
                w += m;
                r += n;
                break;
            }
        }
        if (i == sizeof lit / sizeof *lit) *w++ = *r++;
    }
    *w = 0;
}

/* The first bare NaN (or -NaN) outside strings: no field of any file ditrt reads (configs,
 * plans, schedules) means anything as NaN, so such a file is refused naming the line and
 * column. Returns 1 and the 1-based line and column when one is found. */
static int find_nan(const char *s, int *line, int *col)
{
    int in_str = 0;
    *line = 1, *col = 1;
    for (const char *r = s; *r; r++, (*col)++) {
        if (*r == '\n') { (*line)++; *col = 0; continue; }
        if (in_str) {
            if (*r == '\\' && r[1]) { r++; (*col)++; }
            else if (*r == '"') in_str = 0;
            continue;
        }
        if (*r == '"') in_str = 1;
        else if (!strncmp(r, "NaN", 3) || !strncmp(r, "-NaN", 4)) return 1;
    }
    return 0;
}

dt_status dt_json_load(const char *path, cJSON **out, dt_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return dt_fail(err, DT_EIO, "%s: cannot open: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n < 0 || n > (64L << 20)) {
        fclose(f);
        return dt_fail(err, DT_EFORMAT, "%s: not a JSON config (size %ld)", path, n);
    }
    char *buf = malloc((size_t)n + 1);
    if (!buf) { fclose(f); return dt_fail(err, DT_ENOMEM, "%s: out of memory", path); }
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    buf[got] = 0;
    int line, col;
    if (find_nan(buf, &line, &col)) {
        free(buf);
        return dt_fail(err, DT_EFORMAT, "%s: NaN at line %d column %d: not a valid value in this file", path, line, col);
    }
    python_json_literals(buf);
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithOpts(buf, &end, 1);
    if (!j) {
        size_t off = end ? (size_t)(end - buf) : 0;
        free(buf);
        return dt_fail(err, DT_EFORMAT, "%s: malformed JSON near byte %zu", path, off);
    }
    free(buf);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return dt_fail(err, DT_EFORMAT, "%s: expected a JSON object at top level", path);
    }
    *out = j;
    return DT_OK;
}

static const cJSON *field_of(const cJSON *obj, const char *field)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, field);
    return (v && !cJSON_IsNull(v)) ? v : NULL;
}

dt_status dt_json_num(const cJSON *obj, const char *file, const char *field, int has_default,
                      double dflt, double *out, dt_err *err)
{
    const cJSON *v = field_of(obj, field);
    if (!v) {
        if (!has_default) return dt_fail(err, DT_EFORMAT, "%s: missing field \"%s\"", file, field);
        *out = dflt;
        return DT_OK;
    }
    if (!cJSON_IsNumber(v)) return dt_fail(err, DT_EFORMAT, "%s: field \"%s\" must be a number", file, field);
    *out = v->valuedouble;
    return DT_OK;
}

dt_status dt_json_int(const cJSON *obj, const char *file, const char *field, int has_default,
                      int dflt, int *out, dt_err *err)
{
    double d;
    DT_TRY(dt_json_num(obj, file, field, has_default, dflt, &d, err));
    if (d != floor(d) || d < -2147483647.0 || d > 2147483647.0)
        return dt_fail(err, DT_EFORMAT, "%s: field \"%s\" must be an integer, got %g", file, field, d);
    *out = (int)d;
    return DT_OK;
}

int dt_json_is_int_in(const cJSON *v, int lo, int hi, int *out)
{
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble; /* range first: converting an out-of-range double to int is undefined */
    if (!(d >= lo && d <= hi) || d != floor(d)) return 0;
    *out = (int)d;
    return 1;
}

dt_status dt_json_int_in(const cJSON *obj, const char *file, const char *field, int has_default, int dflt, int lo,
                         int hi, int *out, dt_err *err)
{
    int v;
    DT_TRY(dt_json_int(obj, file, field, has_default, dflt, &v, err));
    if (v < lo || v > hi)
        return dt_fail(err, DT_EFORMAT, "%s: field \"%s\" is %d, outside the supported %d..%d", file, field, v, lo, hi);
    *out = v;
    return DT_OK;
}

dt_status dt_json_bool(const cJSON *obj, const char *file, const char *field, int dflt,
                       int *out, dt_err *err)
{
    const cJSON *v = field_of(obj, field);
    if (!v) { *out = dflt; return DT_OK; }
    if (!cJSON_IsBool(v)) return dt_fail(err, DT_EFORMAT, "%s: field \"%s\" must be true or false", file, field);
    *out = cJSON_IsTrue(v);
    return DT_OK;
}

dt_status dt_json_str(const cJSON *obj, const char *file, const char *field, const char *dflt,
                      char *out, size_t n, dt_err *err)
{
    const cJSON *v = field_of(obj, field);
    const char *s = dflt;
    if (v) {
        if (!cJSON_IsString(v)) return dt_fail(err, DT_EFORMAT, "%s: field \"%s\" must be a string", file, field);
        s = v->valuestring;
    } else if (!dflt)
        return dt_fail(err, DT_EFORMAT, "%s: missing field \"%s\"", file, field);
    if (strlen(s) >= n) return dt_fail(err, DT_EFORMAT, "%s: field \"%s\" is too long", file, field);
    strcpy(out, s);
    return DT_OK;
}
