/* JSON config helpers over cJSON. Errors name the file and the field. */
#ifndef DT_JSON_H
#define DT_JSON_H
#include <cjson/cJSON.h>
#include "error.h"

/* Reads and parses a JSON file; fails on a missing file, malformed JSON or a non-object.
 * Accepts Python's -Infinity/Infinity (as ±inf), which diffusers writes; a bare NaN (also
 * Python's) is refused naming its line and column, since no field ditrt reads may be NaN. */
dt_status dt_json_load(const char *path, cJSON **out, dt_err *err);
/* Integer field: absent or null gives dflt when has_default, else an error. */
dt_status dt_json_int(const cJSON *obj, const char *file, const char *field, int has_default,
                      int dflt, int *out, dt_err *err);
/* The same within lo..hi: "<file>: field \"<f>\" is <v>, outside the supported lo..hi". */
dt_status dt_json_int_in(const cJSON *obj, const char *file, const char *field, int has_default, int dflt, int lo,
                         int hi, int *out, dt_err *err);
/* 1 and *out when v is an integral number within lo..hi (checked before any conversion). */
int dt_json_is_int_in(const cJSON *v, int lo, int hi, int *out);
dt_status dt_json_num(const cJSON *obj, const char *file, const char *field, int has_default,
                      double dflt, double *out, dt_err *err);
/* Boolean field; absent/null gives dflt (which may be -1 for "unset"). */
dt_status dt_json_bool(const cJSON *obj, const char *file, const char *field, int dflt,
                       int *out, dt_err *err);
/* String field copied into out (n bytes); absent gives dflt (NULL dflt: required). */
dt_status dt_json_str(const cJSON *obj, const char *file, const char *field, const char *dflt,
                      char *out, size_t n, dt_err *err);

#endif
