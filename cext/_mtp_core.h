/* Small C helpers of the MTP kernels (cext/_mtp.pyx).
 *
 * Kept in C only for the pragmas and attributes: `omp simd reduction` lets the compiler
 * vectorise the neighbour dot products without -ffast-math (with -fopenmp; otherwise a
 * plain loop), and the forward-mode contraction loop of the basis Jacobian
 * (mtp_jac_times) has an AVX2+FMA version chosen at run time on x86-64 with GCC/Clang.
 */
#ifndef MLIP_PY_MTP_CORE_H
#define MLIP_PY_MTP_CORE_H

#include <stddef.h>

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


/* Forward-mode pass over the contractions (alpha_index_times, grouped in runs of equal
 * target k, file order kept) for columns [x0, x0 + w) of the moment Jacobian dM (row k at
 * dM + k * L):  dM_k += mult * (M_i1 * dM_i0 + M_i0 * dM_i1).
 * `first[q]` != 0 marks the first run writing its k: that run stores instead of adding,
 * so the composite rows need no zeroing. */
#ifdef _OPENMP
#define MTP_SIMD _Pragma("omp simd")
#else
#define MTP_SIMD _Pragma("GCC ivdep")
#endif

#define MTP_JAC_TIMES_BODY                                                                 \
    for (int q = 0; q < nruns; q++) {                                                      \
        double *rk = dM + (ptrdiff_t)run_k[q] * L + x0;                                    \
        int t = run_start[q];                                                              \
        if (first[q]) {                                                                    \
            const double m = mult[t];                                                      \
            const double a = m * M[i1[t]], b = m * M[i0[t]];                               \
            const double *p0 = dM + (ptrdiff_t)i0[t] * L + x0;                             \
            const double *p1 = dM + (ptrdiff_t)i1[t] * L + x0;                             \
            MTP_SIMD for (int j = 0; j < w; j++) rk[j] = a * p0[j] + b * p1[j];            \
            t++;                                                                           \
        }                                                                                  \
        for (; t < run_start[q + 1]; t++) {                                                \
            const double m = mult[t];                                                      \
            const double a = m * M[i1[t]], b = m * M[i0[t]];                               \
            const double *p0 = dM + (ptrdiff_t)i0[t] * L + x0;                             \
            const double *p1 = dM + (ptrdiff_t)i1[t] * L + x0;                             \
            MTP_SIMD for (int j = 0; j < w; j++) rk[j] += a * p0[j] + b * p1[j];           \
        }                                                                                  \
    }

#define MTP_JAC_TIMES_ARGS                                                                 \
    double *__restrict dM, ptrdiff_t L, int x0, int w, int nruns,                          \
    const int *__restrict run_start, const int *__restrict run_k,                          \
    const char *__restrict first, const int *__restrict i0, const int *__restrict i1,      \
    const double *__restrict mult, const double *__restrict M

static void mtp_jac_times_generic(MTP_JAC_TIMES_ARGS) { MTP_JAC_TIMES_BODY }

#if defined(__GNUC__) && defined(__x86_64__) && !defined(MTP_NO_DISPATCH)
/* The same loop compiled for AVX2 + FMA, chosen at run time when the CPU has them (the
 * package is built for the baseline x86-64 instruction set).  FMA contraction makes the
 * rounding differ from the generic version in the last bit, deterministically on a
 * given machine. */
__attribute__((target("avx2,fma")))
static void mtp_jac_times_avx2(MTP_JAC_TIMES_ARGS) { MTP_JAC_TIMES_BODY }

static int mtp_have_avx2(void)
{
    static int have = -1;
    if (have < 0) {
        __builtin_cpu_init();
        have = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return have;
}

static inline void mtp_jac_times(MTP_JAC_TIMES_ARGS)
{
    if (mtp_have_avx2())
        mtp_jac_times_avx2(dM, L, x0, w, nruns, run_start, run_k, first, i0, i1, mult, M);
    else
        mtp_jac_times_generic(dM, L, x0, w, nruns, run_start, run_k, first, i0, i1, mult, M);
}
#else
static int mtp_have_avx2(void) { return 0; }

static inline void mtp_jac_times(MTP_JAC_TIMES_ARGS)
{
    mtp_jac_times_generic(dM, L, x0, w, nruns, run_start, run_k, first, i0, i1, mult, M);
}
#endif

#endif
