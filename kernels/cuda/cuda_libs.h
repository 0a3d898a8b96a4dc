/* cuBLASLt and cuDNN, loaded with dlopen when the first CUDA backend is created.
 *
 * Why not link them: they are shared libraries of several hundred MB that a machine without a
 * GPU does not have; linking them would make ditrt and libditrt.so fail to start there, though
 * the CPU path never calls them. cudart is linked statically (it loads the driver itself, on
 * the first CUDA call). The search order: DITRT_CUDA_LIBS (a folder), the default loader path
 * (LD_LIBRARY_PATH, the cache), then the CUDA lib folder this ditrt was built against.
 * The table is process-wide and written once (pthread_once): it is the loader's state, not
 * the backend's, and every backend instance reads it. */
#ifndef DT_CUDA_LIBS_H
#define DT_CUDA_LIBS_H
#include <cublasLt.h>
#include <cudnn.h>

#define DT_CUBLASLT_FNS(X)                                                                              \
    X(cublasLtCreate) X(cublasLtDestroy) X(cublasLtMatmulDescCreate) X(cublasLtMatmulDescDestroy)       \
    X(cublasLtMatmulDescSetAttribute) X(cublasLtMatrixLayoutCreate) X(cublasLtMatrixLayoutDestroy)       \
    X(cublasLtMatrixLayoutSetAttribute) X(cublasLtMatmulPreferenceCreate)                                \
    X(cublasLtMatmulPreferenceDestroy) X(cublasLtMatmulPreferenceSetAttribute)                           \
    X(cublasLtMatmulAlgoGetHeuristic) X(cublasLtMatmul) X(cublasLtGetVersion)

#define DT_CUDNN_FNS(X)                                                                                 \
    X(cudnnCreate) X(cudnnDestroy) X(cudnnSetStream) X(cudnnGetErrorString) X(cudnnGetVersion)          \
    X(cudnnCreateTensorDescriptor) X(cudnnDestroyTensorDescriptor) X(cudnnSetTensor4dDescriptor)         \
    X(cudnnCreateFilterDescriptor) X(cudnnDestroyFilterDescriptor) X(cudnnSetFilter4dDescriptor)         \
    X(cudnnCreateConvolutionDescriptor) X(cudnnDestroyConvolutionDescriptor)                             \
    X(cudnnSetConvolution2dDescriptor) X(cudnnSetConvolutionMathType)                                    \
    X(cudnnGetConvolutionForwardAlgorithm_v7) X(cudnnGetConvolutionForwardWorkspaceSize)                 \
    X(cudnnConvolutionForward) X(cudnnAddTensor) X(cudnnGetConvolution2dForwardOutputDim)                 \
    X(cudnnBackendCreateDescriptor) X(cudnnBackendDestroyDescriptor) X(cudnnBackendSetAttribute)         \
    X(cudnnBackendGetAttribute) X(cudnnBackendFinalize) X(cudnnBackendExecute)

#define DT_LIBS_MEMBER(f) decltype(&::f) f;
typedef struct {
    DT_CUBLASLT_FNS(DT_LIBS_MEMBER)
    DT_CUDNN_FNS(DT_LIBS_MEMBER)
} dt_cuda_libs;
#undef DT_LIBS_MEMBER

/* The loaded table, or NULL with a one-line reason in why[n] (which library or symbol is
 * missing, and where it was looked for). Thread-safe; loads once per process. */
const dt_cuda_libs *dt_cuda_libs_get(char *why, size_t n);

/* The file names looked for (sonames of the versions built against). */
#define DT_CUBLASLT_SONAME "libcublasLt.so." DT_STR(CUBLAS_VER_MAJOR)
#define DT_CUDNN_SONAME "libcudnn.so." DT_STR(CUDNN_MAJOR)
#define DT_STR_(x) #x
#define DT_STR(x) DT_STR_(x)

#endif
