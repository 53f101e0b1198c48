# cython: language_level=3
"""Kernels of the maxvol (D-optimality) active-set engine.

Used only through :mod:`mlip_py.selection.maxvol`, which validates shapes, dtypes and
finiteness and owns every allocation; these functions trust their inputs (the cheap
shape checks below only guard against memory corruption).

Conventions
-----------
* All matrices are C-contiguous float64; ``n`` = number of columns (parameters).
* ``A`` (n, n) is the active-set matrix (row j = row of the entry occupying slot j),
  ``invA`` its inverse, ``B`` (m, n) the queued/candidate rows and ``X = B @ invA``.
* The *grade* of a row ``b`` is ``max_j |(b invA)_j|``; the "first maximum" is taken in
  row-major order exactly as ``cblas_idamax`` over the flattened ``X`` would: the first
  row holding the global maximum, and in it the first column (strict ``>`` comparisons).
* A swap (i0, j0) exchanges ``A[j0]`` and ``B[i0]``.  With ``g = X[i0, j0]`` and
  ``u = X[i0] - e_j0`` the Sherman-Morrison update of every matrix ``Y`` in
  {invA, X, M} is the same row operation ``Y[r] -= (Y[r, j0] / g) * u`` (for X after
  setting ``X[i0] = e_j0``, the representation of the old ``A[j0]``), and
  ``|det A|`` is multiplied by ``|g|``.
* ``M = A0 @ invA`` (optional) relates the current inverse to the one of an earlier
  matrix ``A0``; any row ``b`` with ``|b A0^-1|_max <= tau`` has
  ``|b invA|_max <= tau * ||M||_1`` (max column abs sum).  The streaming selection
  uses this bound to certify that untracked rows cannot be the global argmax.
* The per-swap update of ``X`` (O(m n), the dominant cost) runs in an OpenMP
  ``prange`` over rows when ``m * n`` is large (rows are independent; the global
  argmax is then taken serially over the per-row maxima, so results do not depend on
  the thread count).  Serial without OpenMP.
"""
from libc.math cimport fabs
from libc.stdint cimport int64_t, uint8_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy
from cython.parallel cimport prange

import numpy as np

cdef enum:
    _CONVERGED = 0   # max grade <= threshold
    _MAX_SWAPS = 1   # the requested number of swaps was done
    _BOUND = 2       # an untracked row may exceed the best tracked one (needs a new pass)

# minimal m * n for a threaded X update
cdef Py_ssize_t _PARALLEL_MIN = 1 << 18

# stop reasons of swap_loop
STOP_CONVERGED = _CONVERGED
STOP_MAX_SWAPS = _MAX_SWAPS
STOP_BOUND = _BOUND


cdef inline Py_ssize_t _row_argmax(const double* x, Py_ssize_t n, double* vmax) noexcept nogil:
    """First index of max |x[k]|; the maximum goes to vmax (-1 when n == 0)."""
    cdef Py_ssize_t k, best = -1
    cdef double b = -1.0, v
    for k in range(n):
        v = fabs(x[k])
        if v > b:
            b = v
            best = k
    vmax[0] = b
    return best


cdef inline Py_ssize_t _row_argmax_masked(const double* x, Py_ssize_t n, const uint8_t* mask,
                                          double* vmax) noexcept nogil:
    """As _row_argmax over the columns k with mask[k] != 0 (-1 / vmax=-1 if none)."""
    cdef Py_ssize_t k, best = -1
    cdef double b = -1.0, v
    for k in range(n):
        if mask[k]:
            v = fabs(x[k])
            if v > b:
                b = v
                best = k
    vmax[0] = b
    return best


cdef inline void _scan_rows(const double* X, Py_ssize_t m, Py_ssize_t n, double* rowmax,
                            int64_t* rowcol, const uint8_t* mask) noexcept nogil:
    cdef Py_ssize_t r
    if mask == NULL:
        for r in range(m):
            rowcol[r] = _row_argmax(X + r * n, n, rowmax + r)
    else:
        for r in range(m):
            rowcol[r] = _row_argmax_masked(X + r * n, n, mask, rowmax + r)


cdef inline void _rank1_rows(double* Y, Py_ssize_t rows, Py_ssize_t n, Py_ssize_t j0,
                             const double* u, double ginv) noexcept nogil:
    """Y[r] -= (Y[r, j0] * ginv) * u for every row r."""
    cdef Py_ssize_t r, k
    cdef double f
    cdef double* y
    for r in range(rows):
        y = Y + r * n
        f = y[j0] * ginv
        if f != 0.0:
            for k in range(n):
                y[k] -= f * u[k]


cdef inline double _colsum_norm(const double* M, Py_ssize_t n, double* colsum) noexcept nogil:
    """max_k sum_i |M[i, k]| (the matrix 1-norm)."""
    cdef Py_ssize_t i, k
    cdef double best = 0.0
    for k in range(n):
        colsum[k] = 0.0
    for i in range(n):
        for k in range(n):
            colsum[k] += fabs(M[i * n + k])
    for k in range(n):
        if colsum[k] > best:
            best = colsum[k]
    return best


cdef inline void _update_scan_row(double* y, Py_ssize_t n, Py_ssize_t j0, const double* u,
                                  double ginv, const uint8_t* mask, double* rowmax,
                                  int64_t* rowcol) noexcept nogil:
    """y -= (y[j0] * ginv) * u, then its max |entry| and first column."""
    cdef Py_ssize_t k
    cdef double f = y[j0] * ginv
    if f != 0.0:
        for k in range(n):
            y[k] -= f * u[k]
    if mask == NULL:
        rowcol[0] = _row_argmax(y, n, rowmax)
    else:
        rowcol[0] = _row_argmax_masked(y, n, mask, rowmax)


cdef double _swap_core(double* A, double* invA, double* B, double* X, double* M,
                       Py_ssize_t m, Py_ssize_t n, Py_ssize_t i0, Py_ssize_t j0,
                       double* u, double* rowmax, int64_t* rowcol,
                       const uint8_t* mask) noexcept nogil:
    """Swap A[j0] <-> B[i0], update invA, X (and M if not NULL), rescan X rows.

    Returns the pivot g = X[i0, j0] (before the swap).
    """
    cdef Py_ssize_t k, r
    cdef double g = X[i0 * n + j0]
    cdef double ginv = 1.0 / g
    cdef double t
    memcpy(u, X + i0 * n, n * sizeof(double))
    u[j0] -= 1.0
    for k in range(n):
        t = A[j0 * n + k]
        A[j0 * n + k] = B[i0 * n + k]
        B[i0 * n + k] = t
    for k in range(n):
        X[i0 * n + k] = 0.0
    X[i0 * n + j0] = 1.0
    _rank1_rows(invA, n, n, j0, u, ginv)
    if M != NULL:
        _rank1_rows(M, n, n, j0, u, ginv)
    # X rows: update and rescan in one pass (each row is still in cache for the scan)
    if m * n >= _PARALLEL_MIN:
        for r in prange(m, schedule="static"):
            _update_scan_row(X + r * n, n, j0, u, ginv, mask, rowmax + r, rowcol + r)
    else:
        for r in range(m):
            _update_scan_row(X + r * n, n, j0, u, ginv, mask, rowmax + r, rowcol + r)
    return g


def grades_block(B, invA, work, double[::1] gmax, int64_t[::1] gcol):
    """Grades of the rows of one block: ``work[:m] = B @ invA`` (one BLAS dgemm through
    ``numpy.matmul``: the BLAS numpy already loaded), then per row the max |entry| into
    ``gmax[:m]`` and its first column into ``gcol[:m]``.

    ``B`` (m, n), ``invA`` (n, n) and ``work`` (>= m, n) are C-contiguous float64 arrays;
    ``work`` may be the final ``X`` matrix (it then holds ``B @ invA`` afterwards).
    """
    cdef Py_ssize_t m = B.shape[0], n = B.shape[1]
    if invA.shape[0] != n or invA.shape[1] != n or work.shape[1] != n:
        raise ValueError("grades_block: inconsistent matrix shapes")
    if work.shape[0] < m or gmax.shape[0] < m or gcol.shape[0] < m:
        raise ValueError("grades_block: output buffers too small")
    if m == 0:
        return
    cdef double[:, ::1] x = work
    np.matmul(B, invA, out=work[:m])
    with nogil:
        _scan_rows(&x[0, 0], m, n, &gmax[0], &gcol[0], NULL)


def row_absmax(const double[:, ::1] X, double[::1] rowmax, int64_t[::1] rowcol,
               const uint8_t[::1] mask=None):
    """Per row of X: max |entry| (over columns with mask != 0 if a mask is given) and the
    first column holding it (-1 and rowmax -1 if every column is masked)."""
    cdef Py_ssize_t m = X.shape[0], n = X.shape[1]
    cdef const uint8_t* mp = NULL
    if rowmax.shape[0] < m or rowcol.shape[0] < m:
        raise ValueError("row_absmax: output buffers too small")
    if mask is not None:
        if mask.shape[0] != n:
            raise ValueError("row_absmax: mask length != number of columns")
        mp = &mask[0]
    if m == 0 or n == 0:
        return
    with nogil:
        _scan_rows(&X[0, 0], m, n, &rowmax[0], &rowcol[0], mp)


def swap_once(double[:, ::1] A, double[:, ::1] invA, double[:, ::1] B, double[:, ::1] X,
              Py_ssize_t i0, Py_ssize_t j0, double[::1] rowmax, int64_t[::1] rowcol,
              const uint8_t[::1] mask=None):
    """One swap (i0, j0) with Sherman-Morrison updates; rescans X rows (masked if given).

    Returns the pivot ``X[i0, j0]`` (before the swap).
    """
    cdef Py_ssize_t m = B.shape[0], n = B.shape[1]
    cdef const uint8_t* mp = NULL
    cdef double* u
    cdef double g
    if (A.shape[0] != n or A.shape[1] != n or invA.shape[0] != n or invA.shape[1] != n
            or X.shape[0] != m or X.shape[1] != n or rowmax.shape[0] < m or rowcol.shape[0] < m):
        raise ValueError("swap_once: inconsistent shapes")
    if not (0 <= i0 < m and 0 <= j0 < n):
        raise IndexError("swap_once: swap position out of range")
    if mask is not None:
        if mask.shape[0] != n:
            raise ValueError("swap_once: mask length != number of columns")
        mp = &mask[0]
    u = <double*>malloc(n * sizeof(double))
    if u == NULL:
        raise MemoryError()
    with nogil:
        g = _swap_core(&A[0, 0], &invA[0, 0], &B[0, 0], &X[0, 0], NULL, m, n, i0, j0, u,
                       &rowmax[0], &rowcol[0], mp)
    free(u)
    return g


def swap_loop(double[:, ::1] A, double[:, ::1] invA, double[:, ::1] B, double[:, ::1] X,
              double[::1] rowmax, int64_t[::1] rowcol, double threshold,
              Py_ssize_t max_swaps, int64_t[:, ::1] swaps, double[::1] gains,
              double[:, ::1] M=None, double tau=0.0, Py_ssize_t since=0, bint rescan=True):
    """Greedy maxvol swaps while the first maximum of |X| exceeds ``threshold``.

    Parameters
    ----------
    A, invA, B, X : the state (see module docstring); updated in place.
    rowmax, rowcol : per-row max |X| and its first column; recomputed at entry if
        ``rescan`` (else trusted), kept current afterwards.
    threshold : swaps happen only while max |X| > threshold.
    max_swaps : at most this many swaps in this call (``swaps``/``gains`` need that room).
    swaps : out (max_swaps, 2): (i0, j0) of each swap, in order.
    gains : out (max_swaps,): |X[i0, j0]| of each swap (|det A| factor).
    M, tau, since : optional bound for untracked rows: before a swap, when
        ``since + done > 0`` and ``max|X| <= tau * ||M||_1`` the loop stops with
        STOP_BOUND.  M is updated like invA.

    Returns
    -------
    (count, reason, gmax, i, j) : swaps done, stop reason (STOP_*), and the current
    first maximum |X| with its position at the stop (-1, -1 if X has no rows).
    """
    cdef Py_ssize_t m = B.shape[0], n = B.shape[1]
    cdef Py_ssize_t r, i0 = -1, j0 = -1, count = 0
    cdef int reason = _CONVERGED
    cdef double best = -1.0, norm = 0.0, g
    cdef double* u
    cdef double* colsum
    cdef double* mp = NULL
    if (A.shape[0] != n or A.shape[1] != n or invA.shape[0] != n or invA.shape[1] != n
            or X.shape[0] != m or X.shape[1] != n or rowmax.shape[0] < m or rowcol.shape[0] < m):
        raise ValueError("swap_loop: inconsistent shapes")
    if max_swaps < 0 or swaps.shape[0] < max_swaps or swaps.shape[1] != 2 or gains.shape[0] < max_swaps:
        raise ValueError("swap_loop: swap record buffers too small")
    if M is not None:
        if M.shape[0] != n or M.shape[1] != n:
            raise ValueError("swap_loop: M must be (n, n)")
        mp = &M[0, 0]
    if m == 0:
        return 0, STOP_CONVERGED, -1.0, -1, -1
    u = <double*>malloc(n * sizeof(double))
    colsum = <double*>malloc(n * sizeof(double))
    if u == NULL or colsum == NULL:
        free(u)
        free(colsum)
        raise MemoryError()
    with nogil:
        if rescan:
            _scan_rows(&X[0, 0], m, n, &rowmax[0], &rowcol[0], NULL)
        if mp != NULL:
            norm = _colsum_norm(mp, n, colsum)
        while True:
            best = -1.0
            i0 = -1
            for r in range(m):
                if rowmax[r] > best:
                    best = rowmax[r]
                    i0 = r
            j0 = rowcol[i0]
            if not (best > threshold):
                reason = _CONVERGED
                break
            if mp != NULL and since + count > 0 and best <= tau * norm:
                reason = _BOUND
                break
            if count >= max_swaps:
                reason = _MAX_SWAPS
                break
            swaps[count, 0] = i0
            swaps[count, 1] = j0
            g = _swap_core(&A[0, 0], &invA[0, 0], &B[0, 0], &X[0, 0], mp, m, n, i0, j0, u,
                           &rowmax[0], &rowcol[0], NULL)
            gains[count] = fabs(g)
            count += 1
            if mp != NULL:
                norm = _colsum_norm(mp, n, colsum)
    free(u)
    free(colsum)
    return count, reason, best, i0, j0
