/* dlopen of cuBLASLt and cuDNN (see cuda_libs.h for why). */
#include "kernels/cuda/cuda_libs.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef DT_CUDA_LIBDIR
#define DT_CUDA_LIBDIR "/usr/local/cuda/lib64"
#endif

static dt_cuda_libs g_libs;           /* written once under g_once, read-only afterwards */
static char g_why[512];
static int g_ok;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void *open_lib(const char *soname, char *tried, size_t n)
{
    const char *env = getenv("DITRT_CUDA_LIBS");
    char path[1024];
    void *h = NULL;
    if (env && *env) {
        snprintf(path, sizeof path, "%s/%s", env, soname);
        h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    }
    if (!h) h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(path, sizeof path, "%s/%s", DT_CUDA_LIBDIR, soname);
        h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    }
    if (!h)
        snprintf(tried, n, "%s not found (looked in $DITRT_CUDA_LIBS=%s, the loader path, %s)", soname,
                 env ? env : "(unset)", DT_CUDA_LIBDIR);
    return h;
}

#define DT_LIBS_RESOLVE(f)                                                                 \
    if (!(g_libs.f = (decltype(g_libs.f))dlsym(h, #f))) {                                  \
        snprintf(g_why, sizeof g_why, "%s: symbol %s missing (an older library?)", lib, #f); \
        return;                                                                            \
    }

static void load_once(void)
{
    void *h = open_lib(DT_CUBLASLT_SONAME, g_why, sizeof g_why);
    const char *lib = DT_CUBLASLT_SONAME;
    if (!h) return;
    DT_CUBLASLT_FNS(DT_LIBS_RESOLVE)
    lib = DT_CUDNN_SONAME;
    if (!(h = open_lib(DT_CUDNN_SONAME, g_why, sizeof g_why))) return;
    DT_CUDNN_FNS(DT_LIBS_RESOLVE)
    g_ok = 1;
}

const dt_cuda_libs *dt_cuda_libs_get(char *why, size_t n)
{
    pthread_once(&g_once, load_once);
    if (!g_ok && why) snprintf(why, n, "%s", g_why);
    return g_ok ? &g_libs : NULL;
}
