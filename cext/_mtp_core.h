/* Small C helpers of the MTP kernels (cext/_mtp.pyx).
 *
 * Kept in C only for the pragmas: `omp simd reduction` lets the compiler vectorise the
 * neighbour dot products without -ffast-math (with -fopenmp; otherwise a plain loop).
 */
#ifndef MLIP_PY_MTP_CORE_H
#define MLIP_PY_MTP_CORE_H

#ifdef _OPENMP
#include <omp.h>
static int mtp_max_threads(void) { return omp_get_max_threads(); }
#else
static int mtp_max_threads(void) { return 1; }
#endif

/* sum_j a[j] * b[j] */
static inline double mtp_dot(const double *__restrict a, const double *__restrict b, int n)
{
    double s = 0.0;
#ifdef _OPENMP
#pragma omp simd reduction(+:s)
#endif
    for (int j = 0; j < n; j++) s += a[j] * b[j];
    return s;
}

/* sum_j (a[j] * b[j] + c[j] * d[j]) */
static inline double mtp_dot2(const double *__restrict a, const double *__restrict b,
                              const double *__restrict c, const double *__restrict d, int n)
{
    double s = 0.0;
#ifdef _OPENMP
#pragma omp simd reduction(+:s)
#endif
    for (int j = 0; j < n; j++) s += a[j] * b[j] + c[j] * d[j];
    return s;
}

/* y[j] += alpha * x[j] */
static inline void mtp_axpy(double *__restrict y, double alpha, const double *__restrict x, int n)
{
#ifdef _OPENMP
#pragma omp simd
#endif
    for (int j = 0; j < n; j++) y[j] += alpha * x[j];
}

/* y1[j] += alpha * x1[j]; y2[j] += alpha * x2[j] */
static inline void mtp_axpy2(double *__restrict y1, double *__restrict y2, double alpha,
                             const double *__restrict x1, const double *__restrict x2, int n)
{
#ifdef _OPENMP
#pragma omp simd
#endif
    for (int j = 0; j < n; j++) { y1[j] += alpha * x1[j]; y2[j] += alpha * x2[j]; }
}

#endif
