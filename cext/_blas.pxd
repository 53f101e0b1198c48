# cython: language_level=3
"""Row-major BLAS helpers over scipy.linalg.cython_blas (the only BLAS entry point of cext/).

Everything here is ``cdef inline`` so that any flat cext module can ``cimport`` it
without a cross-module C-API (which fails at import for non-inline functions).

Conventions: all matrices are C-contiguous (row-major) doubles.  A row-major
``X`` (r x c) is the column-major ``X^T`` (c x r), so the row-major product
``C = A @ B`` is computed as the column-major ``C^T = B^T @ A^T`` without any
transposition flag.
"""
from scipy.linalg.cython_blas cimport dgemm as _dgemm


cdef inline void gemm_rm(int m, int n, int k,
                         const double* a, int lda,
                         const double* b, int ldb,
                         double beta, double* c, int ldc) noexcept nogil:
    """Row-major ``C (m x n) = A (m x k) @ B (k x n) + beta * C``; lda/ldb/ldc are row strides."""
    cdef char tr = b'N'
    cdef double alpha = 1.0
    if m <= 0 or n <= 0:
        return
    _dgemm(&tr, &tr, &n, &m, &k, &alpha, <double*>b, &ldb, <double*>a, &lda, &beta, c, &ldc)

