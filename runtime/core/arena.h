/* Per-step activation arena: bump allocation, 64-byte aligned, reset every step.
 * Grows by chunks during the first step; dt_arena_reset() then folds the chunks into one
 * block of the high-water size, so steady-state steps never allocate.
 * The chunks' memory comes from an allocator: the C heap by default (dt_arena_init), or a
 * backend's device memory (dt_arena_init_with(&a, &alloc) with alloc = dt_backend_allocator(be),
 * kernels/backend.h). The arena never touches the memory it hands out (its bookkeeping lives
 * on the host), so device memory the host cannot read works. */
#ifndef DT_ARENA_H
#define DT_ARENA_H
#include <stddef.h>
#include "tensor.h"

/* Where an arena's chunks come from. alloc returns `bytes` (a multiple of 64, > 0) of memory
 * aligned to 64 bytes, or NULL when there is none; free takes what alloc returned. Tensors the
 * arena hands out carry `device`. A zeroed allocator (alloc NULL) is the C heap on the CPU. */
typedef struct {
    void *(*alloc)(void *user, size_t bytes);
    void (*free)(void *user, void *ptr);
    void *user;
    dt_device device;
} dt_allocator;

typedef struct dt_arena_chunk dt_arena_chunk;
typedef struct {
    dt_arena_chunk *head;  /* current chunk; older chunks chained behind it */
    size_t used_total;     /* bytes handed out since the last reset */
    size_t peak;           /* high-water mark of used_total over the arena's life */
    size_t reserved;       /* bytes held by all chunks */
    dt_allocator alloc;    /* kept across reset and free */
} dt_arena;

/* An arena on the C heap (64-byte aligned_alloc), as before allocators existed. */
void dt_arena_init(dt_arena *a);
/* An arena whose chunks come from `alloc` (copied; NULL: the C heap, as dt_arena_init). */
void dt_arena_init_with(dt_arena *a, const dt_allocator *alloc);
void *dt_arena_alloc(dt_arena *a, size_t bytes);
void dt_arena_reset(dt_arena *a);
/* Returns every chunk to the allocator; the arena stays usable (empty, same allocator). */
void dt_arena_free(dt_arena *a);
/* A contiguous tensor from the arena, on the allocator's device; reports ENOMEM through err. */
dt_status dt_arena_tensor(dt_arena *a, dt_tensor *out, dt_dtype dtype, int ndim,
                          const int64_t *shape, dt_err *err);

#endif
