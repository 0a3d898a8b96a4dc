/* safetensors reader (mmap, zero-copy) and writer.
 *
 * A file is trusted only after its header passes: 8-byte length within the file, JSON
 * object, every tensor with a known dtype, a shape whose byte size equals its data
 * offsets, offsets inside the data section and not overlapping. Errors name the file
 * and the tensor. A model folder may hold one file or shards listed by
 * `*.safetensors.index.json`; both open as one dt_safetensors. */
#ifndef DT_SAFETENSORS_H
#define DT_SAFETENSORS_H
#include "tensor.h"

typedef struct {
    char *name;
    dt_dtype dtype;
    int ndim;
    int64_t shape[DT_MAX_DIMS];
    const void *data; /* points into the mapping */
    size_t nbytes;
    int file;         /* index of the shard holding it */
} dt_st_entry;

typedef struct dt_safetensors dt_safetensors;

dt_status dt_st_open(const char *path, dt_safetensors **out, dt_err *err);
/* Opens the weights of a component folder: `<dir>/<stem>.safetensors.index.json` (shards)
 * or a single `<dir>/<stem>.safetensors`; stem is e.g. "diffusion_pytorch_model". */
dt_status dt_st_open_dir(const char *dir, const char *stem, dt_safetensors **out, dt_err *err);
void dt_st_close(dt_safetensors *st);

int dt_st_count(const dt_safetensors *st);
const dt_st_entry *dt_st_at(const dt_safetensors *st, int i);
const dt_st_entry *dt_st_find(const dt_safetensors *st, const char *name);
/* Path of the file holding entry e (for messages). */
const char *dt_st_file_of(const dt_safetensors *st, const dt_st_entry *e);
size_t dt_st_total_bytes(const dt_safetensors *st);

/* Finds `name` and checks its shape (ndim dims; -1 in `shape` matches any size).
 * A missing tensor or a wrong shape fails with a message naming file and tensor. */
dt_status dt_st_expect(const dt_safetensors *st, const char *name, int ndim,
                       const int64_t *shape, const dt_st_entry **out, dt_err *err);
/* Converts the entry to f32 into dst (numel floats). */
void dt_st_read_f32(const dt_st_entry *e, float *dst);
/* Drops the resident file pages under the entry's bytes (the whole pages inside them) once
 * they have been converted, so loading a model does not hold the file and the converted
 * weights at once. The mapping stays valid: a later read faults the pages back in. */
void dt_st_release(const dt_st_entry *e);

/* Reads input tensor `name` of `file` into a malloc'd f32 buffer (*out) after checking its
 * rank and the dims where shape[i] >= 0; *t views it. A missing optional tensor gives
 * *out = NULL and DT_OK. Errors name the file and the tensor. */
dt_status dt_st_read_input(const dt_safetensors *st, const char *file, const char *name, int ndim,
                           const int64_t *shape, int optional, dt_tensor *t, float **out, dt_err *err);

/* Writes tensors to `path` atomically (temp file + rename): a failed write leaves any
 * existing file untouched. Tensors must be contiguous CPU tensors. */
typedef struct {
    const char *name;
    const dt_tensor *t;
} dt_st_item;
dt_status dt_st_write(const char *path, const dt_st_item *items, int n, dt_err *err);

#endif
