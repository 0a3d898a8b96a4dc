/* JSON config helpers over cJSON. Errors name the file and the field. */
#ifndef DT_JSON_H
#define DT_JSON_H
#include <cjson/cJSON.h>
#include "error.h"

/* Reads and parses a JSON file; fails on a missing file, malformed JSON or a non-object.
 * Accepts Python's -Infinity/Infinity (as ±inf) and NaN (as null), which diffusers writes. */
dt_status dt_json_load(const char *path, cJSON **out, dt_err *err);
/* Integer field: absent or null gives dflt when has_default, else an error. */
dt_status dt_json_int(const cJSON *obj, const char *file, const char *field, int has_default,
                      int dflt, int *out, dt_err *err);
dt_status dt_json_num(const cJSON *obj, const char *file, const char *field, int has_default,
                      double dflt, double *out, dt_err *err);
/* Boolean field; absent/null gives dflt (which may be -1 for "unset"). */
dt_status dt_json_bool(const cJSON *obj, const char *file, const char *field, int dflt,
                       int *out, dt_err *err);
/* String field copied into out (n bytes); absent gives dflt (NULL dflt: required). */
dt_status dt_json_str(const cJSON *obj, const char *file, const char *field, const char *dflt,
                      char *out, size_t n, dt_err *err);

#endif
