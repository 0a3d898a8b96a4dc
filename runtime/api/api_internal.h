/* What the files of the public API share (runtime/api/): growable parameter structs and dtype
 * names. Internal to the library. */
#ifndef DT_API_INTERNAL_H
#define DT_API_INTERNAL_H
#include <stddef.h>
#include "ditrt.h"
#include "runtime/core/error.h"
#include "runtime/core/tensor.h"
#include "kernels/backend.h"

/* ---- growable parameter structs ----
 * A caller passes struct_size = sizeof the struct in the header it was built against. The
 * smallest accepted is the first published layout, up to the end of its last field (these
 * minimums never change). Fields are only appended, and an appended field must grow sizeof
 * (put explicit padding before it if it would fit in the old layout's tail padding), so an
 * older caller's struct_size never covers a field it does not know. The library copies the
 * caller's prefix over its own defaults (`out`, already initialized) and reads only the copy. */
#define DT_END_OF(type, field) (offsetof(type, field) + sizeof(((type *)0)->field))
dt_status dt_api_read_params(const void *in, size_t min, size_t known, const char *type, const char *init, void *out,
                             dt_err *err);
/* Usage: ditrt_x_params p; DT_TRY(DT_API_READ(ditrt_x_params, in, &p, last_field_of_first_layout,
 * ditrt_x_params_init, err)); */
#define DT_API_READ(type, in, out, first_layout_last_field, init_fn, err)                                   \
    (init_fn(out), dt_api_read_params((in), DT_END_OF(type, first_layout_last_field), sizeof(type), #type, \
                                      #init_fn, (out), (err)))

/* Results the library fills: the caller sets struct_size (its sizeof, by a *_result_init);
 * dt_api_check_result refuses 0 / too small / too new, dt_api_write_result copies the library's
 * full result up to the caller's struct_size (keeping it). Both start with size_t struct_size. */
dt_status dt_api_check_result(const void *r, size_t min, size_t known, const char *type, const char *init, dt_err *err);
void dt_api_write_result(void *r, const void *full, size_t known);

/* The API's compute dtype strings, parsed in this one place: NULL (dev's default), "f32" /
 * "float32", "bf16" / "bfloat16", and on device cuda only "f16" / "float16" and "tf32" (f32 with
 * TF32 GEMMs: *out DT_F32, *tf32 1). tf32 NULL: a text encoder's field (f32 or bf16 only).
 * cpu_only: what the caller is (e.g. "search-solver") when it runs on the CPU only, for the
 * refusal of f16/tf32; NULL: dev's name is given instead. Errors name field and every accepted
 * value (DT_API_DTYPES). */
#define DT_API_DTYPES "f32, bf16, f16 or tf32 (f16 and tf32 need --device cuda)"
dt_status dt_api_parse_dtype(const char *field, const char *s, dt_device dev, const char *cpu_only, dt_dtype *out,
                             int *tf32, dt_err *err);
/* For the CPU-only commands (searches, calibration, quantization): s checked as dt_api_parse_dtype
 * checks it, *canon its canonical spelling ("f32" / "bf16"), NULL for NULL (the default). */
dt_status dt_api_cpu_dtype(const char *field, const char *s, const char *what, const char **canon, dt_err *err);

#endif
