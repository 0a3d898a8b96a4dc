/* Per-step activation arena: bump allocation, 64-byte aligned, reset every step.
 * Grows by chunks during the first step; dt_arena_reset() then folds the chunks into one
 * block of the high-water size, so steady-state steps never call malloc. */
#ifndef DT_ARENA_H
#define DT_ARENA_H
#include <stddef.h>
#include "tensor.h"

typedef struct dt_arena_chunk dt_arena_chunk;
typedef struct {
    dt_arena_chunk *head;  /* current chunk; older chunks chained behind it */
    size_t used_total;     /* bytes handed out since the last reset */
    size_t peak;           /* high-water mark of used_total over the arena's life */
    size_t reserved;       /* bytes held by all chunks */
} dt_arena;

void dt_arena_init(dt_arena *a);
void *dt_arena_alloc(dt_arena *a, size_t bytes);
void dt_arena_reset(dt_arena *a);
void dt_arena_free(dt_arena *a);
/* A contiguous tensor from the arena; reports ENOMEM through err. */
dt_status dt_arena_tensor(dt_arena *a, dt_tensor *out, dt_dtype dtype, int ndim,
                          const int64_t *shape, dt_err *err);

#endif
