/* Training-speed shim (not part of ditrt): routes the Fortran BLAS sgemm_ that Debian's torch
 * calls (reference BLAS) to oneDNN's dnnl_sgemm. LD_PRELOAD it into the training process only. */
#include <dnnl.h>
void sgemm_(const char *ta, const char *tb, const int *m, const int *n, const int *k, const float *alpha,
            const float *a, const int *lda, const float *b, const int *ldb, const float *beta, float *c, const int *ldc)
{
    /* column-major C = op(A) op(B)  <=>  row-major C^T = op(B)^T op(A)^T */
    dnnl_sgemm(*tb, *ta, *n, *m, *k, *alpha, b, *ldb, a, *lda, *beta, c, *ldc);
}
