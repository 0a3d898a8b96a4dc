/* A backend that forwards every op to another one and adds up the wall time of the compute
 * ops by kind, so a benchmark can say where a step goes (`ditrt bench transformer
 * --breakdown`). CPU ops are synchronous, so the time around a call is its cost; a GPU
 * backend would need a stream sync in each wrapper before this means anything there.
 * The wrapper owns the inner backend: dt_backend_destroy on it destroys both. Every entry of
 * the op table that takes a backend is forwarded with the inner one (a new entry must be added
 * here too, or the inner backend would receive the wrapper). */
#ifndef DT_BACKEND_TIMING_H
#define DT_BACKEND_TIMING_H
#include "backend.h"

typedef enum {
    DT_OPK_LINEAR,      /* linear_forward: float or quantized layers */
    DT_OPK_ATTENTION,   /* attention, window_attention (matmuls and softmax) */
    DT_OPK_NORM,        /* layernorm_modulate, group_norm, rms_norm */
    DT_OPK_ELEMENTWISE, /* gated_add, activation, add_rows, gated_act, geglu, patchify/unpatchify, copies */
    DT_OPK_CONV,        /* conv2d_forward */
    DT_OPK_MEMORY,      /* buffer_alloc/free, tensor_set/get, copy (repeat_rows, sub, cfg_combine: elementwise) */
    DT_OPK_COUNT
} dt_op_kind;

typedef struct {
    double seconds[DT_OPK_COUNT];
    long calls[DT_OPK_COUNT];
} dt_op_times;

extern const char *const dt_op_kind_names[DT_OPK_COUNT];

/* Wraps `inner` (owned from then on, also on failure). */
dt_status dt_backend_timed(dt_backend *inner, dt_backend **out, dt_err *err);
/* The running totals of a backend made by dt_backend_timed (NULL for any other backend);
 * the caller may zero them between measurements. */
dt_op_times *dt_backend_times(dt_backend *be);
#endif
