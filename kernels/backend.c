/* The backend registry: which device kinds this ditrt is built with, and the dispatch of
 * dt_backend_create / dt_backend_native_dtype through it. A CUDA build adds one entry. */
#include "backend.h"
#include "kernels/cpu/cpu_entry.h"
#ifdef DT_HAVE_CUDA
#include "kernels/cuda/cuda_entry.h"
#endif
#include <limits.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    dt_device device;
    const char *name;
    dt_status (*create)(const dt_backend_config *cfg, dt_backend **out, dt_err *err);
    int (*available)(void);           /* built in and usable on this machine */
    int (*native_dtype)(dt_dtype t);  /* runs t natively (GEMM inputs) */
    /* optional: why no device is usable (one line), and the devices found (lines; returns the count) */
    void (*unavailable_reason)(char *buf, size_t n);
    int (*describe)(char *buf, size_t n);
    int (*libs_check)(char *why, size_t n);
} dt_backend_entry;

static const dt_backend_entry registry[] = {
    {DT_DEV_CPU, "cpu", cpu_backend_create, cpu_backend_available, cpu_backend_native_dtype, NULL, NULL, NULL},
#ifdef DT_HAVE_CUDA
    {DT_DEV_CUDA, "cuda", cuda_backend_create, cuda_backend_available, cuda_backend_native_dtype,
     cuda_backend_unavailable_reason, cuda_backend_describe, cuda_backend_libs_check},
#endif
};
#define N_ENTRIES (sizeof registry / sizeof *registry)

/* Every device kind's name, built in or not (for messages and parsing). */
static const char *const device_names[] = {[DT_DEV_CPU] = "cpu", [DT_DEV_CUDA] = "cuda"};
#define N_DEVICES (sizeof device_names / sizeof *device_names)

static const dt_backend_entry *find(dt_device dev)
{
    for (size_t i = 0; i < N_ENTRIES; i++)
        if (registry[i].device == dev) return &registry[i];
    return NULL;
}

const char *dt_backend_device_name(dt_device dev)
{
    return (unsigned)dev < N_DEVICES && device_names[dev] ? device_names[dev] : "?";
}

int dt_backend_built(dt_device dev) { return find(dev) != NULL; }

int dt_backend_available(dt_device dev)
{
    const dt_backend_entry *e = find(dev);
    return e && e->available();
}

dt_status dt_backend_create(const dt_backend_config *cfg, dt_backend **out, dt_err *err)
{
    const dt_backend_entry *e = find(cfg->device);
    if (!e) {
        char names[128] = "";
        size_t o = 0;
        for (size_t i = 0; i < N_ENTRIES && o < sizeof names; i++)
            o += (size_t)snprintf(names + o, sizeof names - o, i ? ", %s" : "%s", registry[i].name);
        return dt_fail(err, DT_EUNSUPPORTED, "device %s: not built into this ditrt (built-in backends: %s)",
                       dt_backend_device_name(cfg->device), names);
    }
    if (cfg->tf32 && cfg->device != DT_DEV_CUDA)
        return dt_fail(err, DT_EUNSUPPORTED, "dtype: tf32 needs --device cuda (TF32 tensor cores; the %s backend has none)",
                       dt_backend_device_name(cfg->device));
    if (cfg->compute == DT_F16 && cfg->device != DT_DEV_CUDA) /* the sibling of bf16 on CUDA only */
        return dt_fail(err, DT_EUNSUPPORTED, "dtype: f16 needs --device cuda (the %s backend computes in f32 or bf16)",
                       dt_backend_device_name(cfg->device));
    if (cfg->tf32 && cfg->compute != DT_F32)
        return dt_fail(err, DT_EINVAL, "dtype: tf32 is an f32 mode (compute %s given)", dt_dtype_name(cfg->compute));
    if (!e->available()) {
        char why[256] = "";
        if (e->unavailable_reason) e->unavailable_reason(why, sizeof why);
        if (cfg->device == DT_DEV_CUDA)
            return dt_fail(err, DT_EUNSUPPORTED, "device cuda: no CUDA device found (%s)", why[0] ? why : "none usable");
        return dt_fail(err, DT_EUNSUPPORTED, "device %s: built in, but no usable %s device here", e->name, e->name);
    }
    return e->create(cfg, out, err);
}

int dt_backend_native_dtype(dt_device dev, dt_dtype t)
{
    const dt_backend_entry *e = find(dev);
    return e && e->native_dtype(t);
}

dt_dtype dt_backend_default_dtype(dt_device dev) { return dt_backend_native_dtype(dev, DT_BF16) ? DT_BF16 : DT_F32; }

dt_status dt_backend_parse_device(const char *s, dt_device *dev, int *index, dt_err *err)
{
    int idx = 0;
    dt_device d;
    if (s && !strcmp(s, "cpu")) d = DT_DEV_CPU;
    else if (s && !strcmp(s, "cuda")) d = DT_DEV_CUDA;
    else if (s && !strncmp(s, "cuda:", 5) && s[5]) {
        long v = 0;
        for (const char *p = s + 5; *p; p++) {
            if (*p < '0' || *p > '9' || v > (INT_MAX - 9) / 10) goto bad;
            v = v * 10 + (*p - '0');
        }
        d = DT_DEV_CUDA;
        idx = (int)v;
    } else
        goto bad;
    *dev = d;
    if (index) *index = idx;
    return DT_OK;
bad:
    return dt_fail(err, DT_EINVAL, "device \"%s\": expected cpu, cuda or cuda:N", s ? s : "");
}

/* ---- arena allocator over a backend's buffers ---- */
static void *be_alloc(void *user, size_t bytes)
{
    dt_backend *be = user;
    dt_err err = {0};
    void *p = NULL;
    return be->ops->buffer_alloc(be, bytes, &p, &err) == DT_OK ? p : NULL;
}

static void be_free(void *user, void *ptr)
{
    dt_backend *be = user;
    be->ops->buffer_free(be, ptr);
}

dt_allocator dt_backend_allocator(dt_backend *be)
{
    return (dt_allocator){.alloc = be_alloc, .free = be_free, .user = be, .device = be->cfg.device};
}

/* ---- host <-> device helpers over the table ---- */

static dt_tensor flat(float *p, size_t n)
{
    int64_t s[1] = {(int64_t)n};
    return dt_tensor_view(p, DT_F32, 1, s);
}

dt_status dt_backend_write(dt_backend *be, float *dst, const float *host, size_t n, dt_err *err)
{
    dt_tensor t = flat(dst, n);
    t.device = be->cfg.device;
    return be->ops->tensor_set(be, &t, host, n * sizeof(float), err);
}

dt_status dt_backend_read(dt_backend *be, const float *src, float *host, size_t n, dt_err *err)
{
    dt_tensor t = flat((float *)src, n);
    t.device = be->cfg.device;
    return be->ops->tensor_get(be, &t, host, n * sizeof(float), err);
}

dt_status dt_backend_upload(dt_backend *be, const float *host, size_t n, float **out, dt_err *err)
{
    void *p = NULL;
    *out = NULL;
    DT_TRY(be->ops->buffer_alloc(be, n * sizeof(float), &p, err));
    dt_status s = dt_backend_write(be, p, host, n, err);
    if (s != DT_OK) { be->ops->buffer_free(be, p); return s; }
    *out = p;
    return DT_OK;
}

dt_status dt_backend_host_alloc(dt_backend *be, size_t bytes, void **ptr, dt_err *err)
{
    *ptr = NULL;
    if (be->ops->host_alloc) return be->ops->host_alloc(be, bytes, ptr, err);
    *ptr = aligned_alloc(64, (bytes + 63) / 64 * 64 + (bytes ? 0 : 64));
    return *ptr ? DT_OK : dt_fail(err, DT_ENOMEM, "out of memory for %zu bytes of host buffers", bytes);
}

void dt_backend_host_free(dt_backend *be, void *ptr)
{
    if (!ptr) return;
    if (be->ops->host_free) be->ops->host_free(be, ptr);
    else free(ptr);
}


/* ---- what is built in (ditrt info) ---- */

void dt_backend_list(char *buf, size_t n)
{
    size_t o = 0;
    if (n) buf[0] = 0;
    for (size_t i = 0; i < N_ENTRIES && o < n; i++) {
        const dt_backend_entry *e = &registry[i];
        char dev[2048] = "";
        if (e->describe) e->describe(dev, sizeof dev);
        else snprintf(dev, sizeof dev, "%s: %s", e->name, e->available() ? "available" : "not usable here");
        o += (size_t)snprintf(buf + o, n - o, "backend %s (built in)%s\n", e->name, e->available() ? "" : ": no usable device");
        for (const char *p = dev; *p && o < n;) { /* the device lines, indented */
            const char *nl = strchr(p, '\n');
            int len = nl ? (int)(nl - p) : (int)strlen(p);
            o += (size_t)snprintf(buf + o, n - o, "  %.*s\n", len, p);
            p += len + (nl ? 1 : 0);
        }
    }
    for (int d = 0; d < (int)N_DEVICES && o < n; d++)
        if (!find((dt_device)d)) o += (size_t)snprintf(buf + o, n - o, "backend %s: not built in%s\n", device_names[d],
                                                     d == DT_DEV_CUDA ? " (nvcc was not found at build time)" : "");
}

int dt_backend_libs_check(dt_device dev, char *why, size_t n)
{
    const dt_backend_entry *e = find(dev);
    if (n) why[0] = 0;
    if (!e) {
        snprintf(why, n, "device %s: not built in", dt_backend_device_name(dev));
        return 0;
    }
    return e->libs_check ? e->libs_check(why, n) : 1;
}
