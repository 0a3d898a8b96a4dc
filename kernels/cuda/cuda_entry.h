/* The CUDA backend's registry entry points (kernels/backend.c), in C: no CUDA types here.
 * Built only when nvcc is found (the Makefile then defines DT_HAVE_CUDA for backend.c). */
#ifndef DT_CUDA_ENTRY_H
#define DT_CUDA_ENTRY_H
#include "kernels/backend.h"

#ifdef __cplusplus
extern "C" {
#endif
dt_status cuda_backend_create(const dt_backend_config *cfg, dt_backend **out, dt_err *err);
/* Whether at least one CUDA device is usable (cudaGetDeviceCount > 0 with a driver present). */
int cuda_backend_available(void);
int cuda_backend_native_dtype(dt_dtype t);
/* One line on why no device is usable ("cudaGetDeviceCount: <CUDA's message>"), or "" when one is. */
void cuda_backend_unavailable_reason(char *buf, size_t n);
/* The devices found, one "cuda:N: <name>, <GiB> GiB, sm_XY" line each into buf (or the reason
 * none is usable); returns the device count (0 without a driver). */
int cuda_backend_describe(char *buf, size_t n);
/* Loads cuBLASLt and cuDNN and has them build the descriptors of the ops' GEMMs and
 * convolutions (cuda_selftest.cu; no GPU needed): 1 when all is accepted, 0 when a library file
 * is not found, -1 when a library lacks a symbol or refuses a descriptor; why[n] says which. */
int cuda_backend_libs_check(char *why, size_t n);
#ifdef __cplusplus
}
#endif

#endif
