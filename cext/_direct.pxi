# Shared by _neighbors.pyx and _mtp.pyx (textual include): the lattice geometry and the
# all-pairs neighbour search of one small configuration.  Needs, in the including module:
# sqrt, fabs, ceil (libc.math), int64_t (libc.stdint), malloc, realloc, free (libc.stdlib),
# and ``cnp`` (numpy) for uint8_t.

cdef struct Pair:
    int64_t j
    int64_t n0
    int64_t n1
    int64_t n2
    double x
    double y
    double z
    double d


cdef inline void _cross(const double* u, const double* v, double* out) noexcept nogil:
    out[0] = u[1] * v[2] - u[2] * v[1]
    out[1] = u[2] * v[0] - u[0] * v[2]
    out[2] = u[0] * v[1] - u[1] * v[0]


cdef inline double _norm(const double* u) noexcept nogil:
    return sqrt(u[0] * u[0] + u[1] * u[1] + u[2] * u[2])


cdef int _basis_and_dual(const double* lat, const bint* per, double* basis,
                         double* dual) noexcept nogil:
    """Complete the periodic rows of ``lat`` to a basis; ``dual`` = its inverse.

    All matrices row-major 3x3.  Non-periodic directions get orthonormal vectors
    perpendicular to the periodic rows.  Returns 0, or 1 (a periodic row is zero or not
    finite), 2 (two periodic rows are parallel), 3 (periodic rows linearly dependent).
    """
    cdef int a, b, k = 0, first = -1, second = -1, emin
    cdef double v[3]
    cdef double e[3]
    cdef double u[3]
    cdef double c[3]
    cdef double nrm, det
    for a in range(3):
        if per[a]:
            nrm = _norm(&lat[3 * a])
            if not (nrm > 0.0 and nrm < 1e300):
                return 1
            if first < 0:
                first = a
            elif second < 0:
                second = a
            k += 1
        for b in range(3):
            basis[3 * a + b] = lat[3 * a + b] if per[a] else 0.0
    if k == 0:
        for a in range(3):
            for b in range(3):
                basis[3 * a + b] = 1.0 if a == b else 0.0
    elif k == 1:
        nrm = _norm(&basis[3 * first])
        for b in range(3):
            v[b] = basis[3 * first + b] / nrm
            e[b] = 0.0
        emin = 0
        for b in range(1, 3):
            if fabs(v[b]) < fabs(v[emin]):
                emin = b
        e[emin] = 1.0
        _cross(v, e, u)
        nrm = _norm(u)
        for b in range(3):
            u[b] /= nrm
        _cross(v, u, c)
        k = 0
        for a in range(3):
            if not per[a]:
                for b in range(3):
                    basis[3 * a + b] = u[b] if k == 0 else c[b]
                k += 1
    elif k == 2:
        _cross(&basis[3 * first], &basis[3 * second], c)
        nrm = _norm(c)
        if not (nrm > 0.0):
            return 2
        for a in range(3):
            if not per[a]:
                for b in range(3):
                    basis[3 * a + b] = c[b] / nrm
    # column a of the inverse = (b_{a+1} x b_{a+2}) / det
    _cross(&basis[3], &basis[6], c)
    det = basis[0] * c[0] + basis[1] * c[1] + basis[2] * c[2]
    if not (fabs(det) > 0.0 and fabs(det) < 1e300):
        return 3
    for a in range(3):
        _cross(&basis[3 * ((a + 1) % 3)], &basis[3 * ((a + 2) % 3)], c)
        for b in range(3):
            dual[3 * b + a] = c[b] / det
    return 0


cdef inline double _norm_col(const double* m, int a) noexcept nogil:
    """Euclidean norm of column ``a`` of the row-major 3x3 matrix ``m``."""
    return sqrt(m[a] * m[a] + m[3 + a] * m[3 + a] + m[6 + a] * m[6 + a])


cdef inline int64_t _ifloor(double x) noexcept nogil:
    """floor(x) as an integer for |x| < 2**62 (no libm call)."""
    cdef int64_t t = <int64_t> x
    return t - (<double> t > x)


cdef inline int64_t _iceil(double x) noexcept nogil:
    """ceil(x) as an integer for |x| < 2**62 (no libm call)."""
    cdef int64_t t = <int64_t> x
    return t + (<double> t < x)


cdef inline Pair* _grow_pairs(Pair* out, Py_ssize_t cap) noexcept nogil:
    """``out`` (``cap`` pairs) reallocated to ``2 cap`` pairs, or NULL when out of memory
    (``out`` then unchanged and still valid)."""
    return <Pair*> realloc(out, 2 * cap * sizeof(Pair))


cdef inline void _set_pair(Pair* pp, int64_t j, int64_t n0, int64_t n1, int64_t n2,
                           double x, double y, double z, double d) noexcept nogil:
    pp.j = j
    pp.n0 = n0
    pp.n1 = n1
    pp.n2 = n2
    pp.x = x
    pp.y = y
    pp.z = z
    pp.d = d


# status codes of _direct_pairs
cdef enum:
    DIRECT_OK = 0
    DIRECT_ZERO_ROW = 1
    DIRECT_PARALLEL = 2
    DIRECT_DEPENDENT = 3
    DIRECT_THIN = 4
    DIRECT_FAR = 5
    DIRECT_NOMEM = 6


cdef int _direct_pairs(const double* latin, const unsigned char* pbc, const double* pos,
                       Py_ssize_t n, double cutoff, double max_images, Pair** bufp,
                       Py_ssize_t* capp, int64_t* blk, int64_t* counts,
                       double* images_out) noexcept nogil:
    """All-pairs neighbour search of one configuration (the core of :func:`build_direct`).

    ``latin`` row-major 3x3; ``pbc`` NULL means "row ``a`` is periodic iff it is not
    exactly zero"; ``pos`` (n, 3) row-major; ``cutoff`` > 0.  The pairs go to the buffer
    ``*bufp`` of ``*capp`` pairs (malloc'd or NULL), grown with realloc as needed (both
    updated; the caller frees it, whatever the result, and may reuse it for the next
    configuration).  On DIRECT_OK atom ``i``'s block starts at ``blk[i]`` with
    ``counts[i]`` pairs sorted by ``(j, n0, n1, n2)``.  Other results: DIRECT_ZERO_ROW / DIRECT_PARALLEL /
    DIRECT_DEPENDENT (bad periodic rows), DIRECT_THIN (more than ``max_images`` images;
    ``*images_out`` set when not NULL), DIRECT_FAR (a coordinate beyond 1e6: use the cell
    list), DIRECT_NOMEM.
    """
    cdef Py_ssize_t i, j, a, b, total, cap
    cdef bint per[3]
    cdef double lat[9]
    cdef double Lc[9]
    cdef double basis[9]
    cdef double dual[9]
    cdef double cutf[3]
    cdef double rc = cutoff, f, images, fa, fb, fc, pix, piy, piz, sx, sy, sz, x, y, z, dist
    cdef double d0, d1, d2, fmax, pmax, rc2 = cutoff * cutoff * (1.0 + 1e-9)
    cdef int64_t lo0, hi0, lo1, hi1, lo2, hi2, n0, n1, n2
    cdef int err
    cdef double* fr
    cdef Pair* out = bufp[0]
    cdef Pair* grown
    cdef double vol, est
    for a in range(3):
        if pbc == NULL:
            per[a] = latin[3 * a] != 0.0 or latin[3 * a + 1] != 0.0 or latin[3 * a + 2] != 0.0
        else:
            per[a] = pbc[a] != 0
        for b in range(3):
            lat[3 * a + b] = latin[3 * a + b]
            Lc[3 * a + b] = latin[3 * a + b] if per[a] else 0.0
    err = _basis_and_dual(lat, per, basis, dual)
    if err == 1:
        return DIRECT_ZERO_ROW
    if err == 2:
        return DIRECT_PARALLEL
    if err == 3:
        return DIRECT_DEPENDENT
    images = 1.0
    for a in range(3):
        cutf[a] = rc * _norm_col(dual, a)
        if per[a]:
            images *= 2.0 * ceil(cutf[a]) + 1.0
    if images > max_images:
        if images_out != NULL:
            images_out[0] = images
        return DIRECT_THIN
    if n == 0:
        return DIRECT_OK
    cdef double L00 = Lc[0], L01 = Lc[1], L02 = Lc[2]
    cdef double L10 = Lc[3], L11 = Lc[4], L12 = Lc[5]
    cdef double L20 = Lc[6], L21 = Lc[7], L22 = Lc[8]
    cdef double c0 = cutf[0], c1 = cutf[1], c2 = cutf[2]
    cdef bint p0 = per[0], p1 = per[1], p2 = per[2]
    fr = <double*> malloc(3 * n * sizeof(double))
    if fr == NULL:
        return DIRECT_NOMEM
    fmax = 0.0
    pmax = 0.0
    for i in range(n):
        for a in range(3):
            if fabs(pos[3 * i + a]) > pmax:
                pmax = fabs(pos[3 * i + a])
            f = pos[3 * i] * dual[a] + pos[3 * i + 1] * dual[3 + a] \
                + pos[3 * i + 2] * dual[6 + a]
            if not (fabs(f) <= 1e6):
                free(fr)
                return DIRECT_FAR
            fr[3 * i + a] = f
            if fabs(f) > fmax:
                fmax = fabs(f)
    # round-off margin of the image bounds (fractional units): covers the errors of
    # the fractional coordinates and of the exact formula by orders of magnitude;
    # the exact test below decides membership
    d0 = 1e-7 * (1.0 + c0) + 1e-11 * (fmax + pmax * c0 / rc)
    d1 = 1e-7 * (1.0 + c1) + 1e-11 * (fmax + pmax * c1 / rc)
    d2 = 1e-7 * (1.0 + c2) + 1e-11 * (fmax + pmax * c2 / rc)
    # capacity: the expected number of pairs for a periodic cell (density * sphere, +25 %),
    # else 32 per atom; grown by doubling if short
    cap = 32 * n + 64
    if p0 and p1 and p2:
        vol = fabs(lat[0] * (lat[4] * lat[8] - lat[5] * lat[7])
                   - lat[1] * (lat[3] * lat[8] - lat[5] * lat[6])
                   + lat[2] * (lat[3] * lat[7] - lat[4] * lat[6]))
        if vol > 0.0:
            est = 1.25 * n * (n / vol) * (4.18879020478639 * rc * rc * rc) + n + 64
            if est < 1e9 and est > cap:
                cap = <Py_ssize_t> est
    if capp[0] < cap:
        grown = <Pair*> realloc(out, cap * sizeof(Pair))
        if grown == NULL:
            free(fr)
            return DIRECT_NOMEM
        out = grown
        bufp[0] = out
        capp[0] = cap
    cap = capp[0]
    total = 0
    for i in range(n):
        blk[i] = total
        pix = pos[3 * i]
        piy = pos[3 * i + 1]
        piz = pos[3 * i + 2]
        for j in range(n):
            fa = fr[3 * j] - fr[3 * i]
            fb = fr[3 * j + 1] - fr[3 * i + 1]
            fc = fr[3 * j + 2] - fr[3 * i + 2]
            if p0:
                lo0 = _iceil(-c0 - fa - d0)
                hi0 = _ifloor(c0 - fa + d0)
            elif fabs(fa) <= c0 + d0:
                lo0 = 0
                hi0 = 0
            else:
                continue
            if p1:
                lo1 = _iceil(-c1 - fb - d1)
                hi1 = _ifloor(c1 - fb + d1)
            elif fabs(fb) <= c1 + d1:
                lo1 = 0
                hi1 = 0
            else:
                continue
            if p2:
                lo2 = _iceil(-c2 - fc - d2)
                hi2 = _ifloor(c2 - fc + d2)
            elif fabs(fc) <= c2 + d2:
                lo2 = 0
                hi2 = 0
            else:
                continue
            for n0 in range(lo0, hi0 + 1):
                for n1 in range(lo1, hi1 + 1):
                    for n2 in range(lo2, hi2 + 1):
                        if j == i and n0 == 0 and n1 == 0 and n2 == 0:
                            continue
                        # the documented, exact formula
                        sx = n0 * L00 + n1 * L10 + n2 * L20
                        sy = n0 * L01 + n1 * L11 + n2 * L21
                        sz = n0 * L02 + n1 * L12 + n2 * L22
                        x = (pos[3 * j] + sx) - pix
                        y = (pos[3 * j + 1] + sy) - piy
                        z = (pos[3 * j + 2] + sz) - piz
                        dist = x * x + y * y + z * z
                        if not (dist < rc2):
                            continue
                        dist = sqrt(dist)
                        if not (dist < rc):
                            continue
                        if total >= cap:
                            grown = _grow_pairs(out, cap)
                            if grown == NULL:
                                bufp[0] = out
                                capp[0] = cap
                                free(fr)
                                return DIRECT_NOMEM
                            out = grown
                            cap = 2 * cap
                        _set_pair(&out[total], j, n0, n1, n2, x, y, z, dist)
                        total += 1
        counts[i] = total - blk[i]
    free(fr)
    bufp[0] = out
    capp[0] = cap
    return DIRECT_OK
