/* The CPU backend's registry entry points (kernels/backend.c): no oneDNN types here. */
#ifndef DT_CPU_ENTRY_H
#define DT_CPU_ENTRY_H
#include "kernels/backend.h"

dt_status cpu_backend_create(const dt_backend_config *cfg, dt_backend **out, dt_err *err);
int cpu_backend_available(void);
int cpu_backend_native_dtype(dt_dtype t);

#endif
