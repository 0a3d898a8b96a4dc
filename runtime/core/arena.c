#include "arena.h"
#include <stdlib.h>

struct dt_arena_chunk {
    dt_arena_chunk *prev;
    size_t cap, used;
    _Alignas(64) unsigned char data[];
};

#define ALIGN 64
#define MIN_CHUNK ((size_t)16 << 20)

void dt_arena_init(dt_arena *a) { *a = (dt_arena){0}; }

static dt_arena_chunk *chunk_new(size_t cap)
{
    dt_arena_chunk *c = aligned_alloc(ALIGN, (sizeof(dt_arena_chunk) + cap + ALIGN - 1) / ALIGN * ALIGN);
    if (!c) return NULL;
    c->prev = NULL;
    c->cap = cap;
    c->used = 0;
    return c;
}

void *dt_arena_alloc(dt_arena *a, size_t bytes)
{
    bytes = (bytes + ALIGN - 1) / ALIGN * ALIGN;
    if (bytes == 0) bytes = ALIGN;
    dt_arena_chunk *c = a->head;
    if (!c || c->cap - c->used < bytes) {
        size_t cap = bytes > MIN_CHUNK ? bytes : MIN_CHUNK;
        dt_arena_chunk *n = chunk_new(cap);
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
        size_t peak = cap;
        dt_arena_chunk *c = chunk_new(cap);
        a->head = c;
        a->reserved = c ? cap : 0;
        a->peak = peak;
    }
    if (a->head) a->head->used = 0;
    a->used_total = 0;
}

void dt_arena_free(dt_arena *a)
{
    dt_arena_chunk *c = a->head;
    while (c) {
        dt_arena_chunk *p = c->prev;
        free(c);
        c = p;
    }
    *a = (dt_arena){0};
}

dt_status dt_arena_tensor(dt_arena *a, dt_tensor *out, dt_dtype dtype, int ndim,
                          const int64_t *shape, dt_err *err)
{
    dt_tensor t = dt_tensor_view(NULL, dtype, ndim, shape);
    t.data = dt_arena_alloc(a, dt_tensor_nbytes(&t));
    if (!t.data) return dt_fail(err, DT_ENOMEM, "out of memory: activation arena needs %zu more bytes", dt_tensor_nbytes(&t));
    *out = t;
    return DT_OK;
}
