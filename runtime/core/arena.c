#include "arena.h"
#include <stdlib.h>

/* Chunk bookkeeping stays on the host; `data` is the allocator's memory (maybe a device's). */
struct dt_arena_chunk {
    dt_arena_chunk *prev;
    size_t cap, used;
    unsigned char *data;
};

#define ALIGN 64
#define MIN_CHUNK ((size_t)16 << 20)

static void *heap_alloc(void *user, size_t bytes)
{
    (void)user;
    return aligned_alloc(ALIGN, bytes);
}

static void heap_free(void *user, void *ptr)
{
    (void)user;
    free(ptr);
}

void dt_arena_init(dt_arena *a) { dt_arena_init_with(a, NULL); }

void dt_arena_init_with(dt_arena *a, const dt_allocator *alloc)
{
    *a = (dt_arena){0};
    if (alloc && alloc->alloc) a->alloc = *alloc;
}

static dt_arena_chunk *chunk_new(const dt_allocator *al, size_t cap)
{
    dt_arena_chunk *c = malloc(sizeof *c);
    if (!c) return NULL;
    size_t bytes = (cap + ALIGN - 1) / ALIGN * ALIGN;
    if (bytes == 0) bytes = ALIGN;
    c->data = al->alloc ? al->alloc(al->user, bytes) : heap_alloc(NULL, bytes);
    if (!c->data) {
        free(c);
        return NULL;
    }
    c->prev = NULL;
    c->cap = cap;
    c->used = 0;
    return c;
}

static void chunk_free(const dt_allocator *al, dt_arena_chunk *c)
{
    if (al->alloc) {
        if (al->free) al->free(al->user, c->data);
    } else
        heap_free(NULL, c->data);
    free(c);
}

void *dt_arena_alloc(dt_arena *a, size_t bytes)
{
    bytes = (bytes + ALIGN - 1) / ALIGN * ALIGN;
    if (bytes == 0) bytes = ALIGN;
    dt_arena_chunk *c = a->head;
    if (!c || c->cap - c->used < bytes) {
        size_t cap = bytes > MIN_CHUNK ? bytes : MIN_CHUNK;
        dt_arena_chunk *n = chunk_new(&a->alloc, cap);
        if (!n) return NULL;
        n->prev = c;
        a->head = c = n;
        a->reserved += cap;
    }
    void *p = c->data + c->used;
    c->used += bytes;
    a->used_total += bytes;
    if (a->used_total > a->peak) a->peak = a->used_total;
    return p;
}

void dt_arena_reset(dt_arena *a)
{
    if (a->head && a->head->prev) {
        /* Several chunks: replace them with one that holds the high-water mark. */
        size_t cap = a->peak;
        dt_arena_free(a);
        dt_arena_chunk *c = chunk_new(&a->alloc, cap);
        a->head = c;
        a->reserved = c ? cap : 0;
        a->peak = cap;
    }
    if (a->head) a->head->used = 0;
    a->used_total = 0;
}

void dt_arena_free(dt_arena *a)
{
    dt_arena_chunk *c = a->head;
    while (c) {
        dt_arena_chunk *p = c->prev;
        chunk_free(&a->alloc, c);
        c = p;
    }
    dt_allocator al = a->alloc;
    *a = (dt_arena){0};
    a->alloc = al;
}

dt_status dt_arena_tensor(dt_arena *a, dt_tensor *out, dt_dtype dtype, int ndim,
                          const int64_t *shape, dt_err *err)
{
    dt_tensor t = dt_tensor_view(NULL, dtype, ndim, shape);
    t.device = a->alloc.alloc ? a->alloc.device : DT_DEV_CPU;
    t.data = dt_arena_alloc(a, dt_tensor_nbytes(&t));
    if (!t.data) return dt_fail(err, DT_ENOMEM, "out of memory: activation arena needs %zu more bytes", dt_tensor_nbytes(&t));
    *out = t;
    return DT_OK;
}
