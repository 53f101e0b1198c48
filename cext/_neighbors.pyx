# cython: language_level=3
"""Cell-list (binning) neighbour search with MLIP-2's semantics; linear cost in N.

Called only through :func:`mlip_py.potential.neighbors.build_neighbors`, which documents
the conventions (which pairs, order, exact formula of the vectors); this module is the
fast part.  Internal work arrays are plain C memory (one allocation per type), so the
fixed cost per call stays small for small configurations.

Method
------
``basis`` (3, 3) = the periodic lattice rows completed by orthonormal vectors
perpendicular to them for the non-periodic directions; ``dual = inv(basis)``, so
``f = p @ dual`` are "fractional" coordinates: true fractional coordinates along periodic
rows, Cartesian projections in Angstrom along the substitute directions.  The height of
the cell along periodic row ``a`` is ``h_a = 1 / |dual[:, a]| = |det| / |b x c|``.

Along a periodic row ``a`` an atom is wrapped into ``[0, 1)`` by the integer
``w_a = floor(f_a)`` (used for binning and a cheap pre-filter only); along a non-periodic
direction the bins cover the bounding box of the atoms.  Bin heights are at least
``cutoff`` (times a safety margin, and larger when the number of bins would exceed
``max_bins``), so a pair closer than ``cutoff`` is found by scanning ``2 D_a + 1`` bins per
direction, ``D_a = ceil(cutoff / bin height + margin)``; along a periodic row a bin index
``c`` outside ``[0, nb_a)`` means the image ``m_a = floor(c / nb_a)`` of bin
``c - m_a nb_a``.  Cells thinner than ``cutoff`` simply get ``nb_a = 1`` and ``D_a > 1``
(an atom then sees several images of its neighbours and of itself).  Every scanned
(bin, image) is distinct, so nothing is found twice.  Along the last direction the bins
of one image are contiguous in bin order and are scanned as one range.

Atoms are counting-sorted by bin and every array the scan touches is copied into bin
order; central atoms are visited in bin order too (cache locality), their blocks are
then copied to the CSR output in original atom order.

For small configurations :func:`build_direct` gives the same result (bit for bit) by
looping over all ordered pairs with the images each pair can reach (no binning, no
sorting); :mod:`mlip_py.potential.neighbors` chooses between the two.

A candidate passes a pre-filter on wrapped coordinates ``q = p - w @ L`` with a generous
margin; it is then recomputed exactly as documented in ``neighbors.py``:
``s = n0*L[0] + n1*L[1] + n2*L[2]``, ``r = (p_j + s) - p_i``, ``d = sqrt(x*x + y*y + z*z)``,
accepted iff ``d < cutoff``.  The block of atom ``i`` is sorted by ``(j, n0, n1, n2)``.
"""
import numpy as np

cimport numpy as cnp
from libc.math cimport ceil, fabs, floor, sqrt
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc, qsort, realloc
from libc.string cimport memcpy, memset

cnp.import_array()

include "_direct.pxi"

# margin on bin heights / scan ranges (relative); covers round-off in the binning
cdef double MARGIN = 1e-6
# largest |fractional coordinate| accepted (keeps floor() exactly representable as int64)
cdef double FRAC_LIMIT = 1e15


# ------------------------------------------------------------------------ sorting
cdef inline bint _pair_less(const Pair* a, const Pair* b) noexcept nogil:
    if a.j != b.j:
        return a.j < b.j
    if a.n0 != b.n0:
        return a.n0 < b.n0
    if a.n1 != b.n1:
        return a.n1 < b.n1
    return a.n2 < b.n2


cdef int _pair_cmp(const void* pa, const void* pb) noexcept nogil:
    cdef const Pair* a = <const Pair*> pa
    cdef const Pair* b = <const Pair*> pb
    if _pair_less(a, b):
        return -1
    if _pair_less(b, a):
        return 1
    return 0


cdef void _sort_block(Pair* p, Py_ssize_t n) noexcept nogil:
    """Sort ``n`` pairs by (j, n0, n1, n2): insertion sort when short, qsort otherwise."""
    cdef Py_ssize_t a, b
    cdef Pair tmp
    if n > 48:
        qsort(<void*> p, <size_t> n, sizeof(Pair), _pair_cmp)
        return
    for a in range(1, n):
        tmp = p[a]
        b = a - 1
        while b >= 0 and _pair_less(&tmp, &p[b]):
            p[b + 1] = p[b]
            b -= 1
        p[b + 1] = tmp


# ------------------------------------------------------------------- 3x3 geometry
cdef inline int64_t _floordiv(int64_t a, int64_t b) noexcept nogil:
    """Floor division for b > 0 (the module is compiled with C division semantics)."""
    cdef int64_t q = a // b
    if (a % b != 0) and (a < 0):
        q -= 1
    return q


# ------------------------------------------------------------------ the search
cdef Py_ssize_t _search(Py_ssize_t n, const double* pos, const double* L, const bint* per,
                        const int64_t* nb, const int64_t* dsc, const int64_t* bstart,
                        const double* q, const double* sp, const int64_t* sw,
                        const int64_t* sb, const int64_t* sj, double rc, double filt2,
                        Pair** out_p, Py_ssize_t* cap_p, int64_t* blk,
                        int64_t* counts) noexcept nogil:
    """Fill ``*out_p`` (grown with realloc) with every pair; return the total or -1 (OOM).

    ``blk[i]``/``counts[i]`` = start and length of atom ``i``'s sorted block.
    """
    cdef Pair* out = out_p[0]
    cdef Pair* grown
    cdef Py_ssize_t cap = cap_p[0], total = 0, start, t, sidx
    cdef bint p0 = per[0], p1 = per[1], p2 = per[2]
    cdef double L00 = L[0], L01 = L[1], L02 = L[2]
    cdef double L10 = L[3], L11 = L[4], L12 = L[5]
    cdef double L20 = L[6], L21 = L[7], L22 = L[8]
    cdef double pix, piy, piz, qix, qiy, qiz, mx, my, mz, x, y, z, sx, sy, sz, dist
    cdef int64_t i, j, wi0, wi1, wi2, ib0, ib1, ib2, d0, d1, c0, c1, c2, c2_last, seg_end
    cdef int64_t m0, m1, m2, cb0, cb1, cb2, n0, n1, n2, bin_id, bin_end
    for t in range(n):
        i = sj[t]
        start = total
        pix = sp[3 * t]
        piy = sp[3 * t + 1]
        piz = sp[3 * t + 2]
        qix = q[3 * t]
        qiy = q[3 * t + 1]
        qiz = q[3 * t + 2]
        wi0 = sw[3 * t]
        wi1 = sw[3 * t + 1]
        wi2 = sw[3 * t + 2]
        ib0 = sb[3 * t]
        ib1 = sb[3 * t + 1]
        ib2 = sb[3 * t + 2]
        for d0 in range(-dsc[0], dsc[0] + 1):
            c0 = ib0 + d0
            if p0:
                m0 = _floordiv(c0, nb[0])
                cb0 = c0 - m0 * nb[0]
            else:
                if c0 < 0 or c0 >= nb[0]:
                    continue
                m0 = 0
                cb0 = c0
            for d1 in range(-dsc[1], dsc[1] + 1):
                c1 = ib1 + d1
                if p1:
                    m1 = _floordiv(c1, nb[1])
                    cb1 = c1 - m1 * nb[1]
                else:
                    if c1 < 0 or c1 >= nb[1]:
                        continue
                    m1 = 0
                    cb1 = c1
                # last direction: the bins of one image form one contiguous range
                c2 = ib2 - dsc[2]
                c2_last = ib2 + dsc[2]
                if not p2:
                    if c2 < 0:
                        c2 = 0
                    if c2_last > nb[2] - 1:
                        c2_last = nb[2] - 1
                while c2 <= c2_last:
                    if p2:
                        m2 = _floordiv(c2, nb[2])
                        cb2 = c2 - m2 * nb[2]
                        seg_end = (m2 + 1) * nb[2] - 1
                        if seg_end > c2_last:
                            seg_end = c2_last
                    else:
                        m2 = 0
                        cb2 = c2
                        seg_end = c2_last
                    bin_id = (cb0 * nb[1] + cb1) * nb[2] + cb2
                    bin_end = bin_id + (seg_end - c2) + 1
                    c2 = seg_end + 1
                    # offset of this image relative to atom i (pre-filter only)
                    mx = m0 * L00 + m1 * L10 + m2 * L20 - qix
                    my = m0 * L01 + m1 * L11 + m2 * L21 - qiy
                    mz = m0 * L02 + m1 * L12 + m2 * L22 - qiz
                    for sidx in range(bstart[bin_id], bstart[bin_end]):
                        x = q[3 * sidx] + mx
                        y = q[3 * sidx + 1] + my
                        z = q[3 * sidx + 2] + mz
                        if x * x + y * y + z * z >= filt2:
                            continue
                        j = sj[sidx]
                        n0 = (m0 - sw[3 * sidx] + wi0) if p0 else 0
                        n1 = (m1 - sw[3 * sidx + 1] + wi1) if p1 else 0
                        n2 = (m2 - sw[3 * sidx + 2] + wi2) if p2 else 0
                        if j == i and n0 == 0 and n1 == 0 and n2 == 0:
                            continue
                        # the documented, exact formula
                        sx = n0 * L00 + n1 * L10 + n2 * L20
                        sy = n0 * L01 + n1 * L11 + n2 * L21
                        sz = n0 * L02 + n1 * L12 + n2 * L22
                        x = (sp[3 * sidx] + sx) - pix
                        y = (sp[3 * sidx + 1] + sy) - piy
                        z = (sp[3 * sidx + 2] + sz) - piz
                        dist = sqrt(x * x + y * y + z * z)
                        if not (dist < rc):
                            continue
                        if total >= cap:
                            grown = _grow_pairs(out, cap)
                            if grown == NULL:
                                out_p[0] = out
                                cap_p[0] = cap
                                return -1
                            out = grown
                            cap = 2 * cap
                        _set_pair(&out[total], j, n0, n1, n2, x, y, z, dist)
                        total += 1
        _sort_block(&out[start], total - start)
        blk[i] = start
        counts[i] = total - start
    out_p[0] = out
    cap_p[0] = cap
    return total


def build(const double[:, ::1] lattice,
          const double[:, ::1] positions,
          const cnp.uint8_t[::1] pbc,
          double cutoff,
          Py_ssize_t max_bins,
          double max_images):
    """Build the neighbour list (see the module docstring).

    Parameters
    ----------
    lattice : (3, 3) float64, rows; rows with ``pbc`` 0 are ignored (may hold anything)
    positions : (N, 3) float64
    pbc : (3,) uint8
    cutoff : float, > 0 and finite
    max_bins : int, upper bound of the number of bins (>= 1)
    max_images : float, largest accepted number of lattice images scanned per atom

    Returns
    -------
    offsets (N+1,) int64, index (M,) int64, vectors (M, 3) float64, distances (M,) float64,
    shifts (M, 3) int64

    Raises
    ------
    ValueError
        Bad lattice (zero/non-finite, parallel or linearly dependent periodic rows), cell
        too thin for ``max_images``, non-finite or absurdly distant positions.
    """
    cdef Py_ssize_t n = positions.shape[0]
    cdef Py_ssize_t i, k, a, b, idx, nbins, total, cap
    cdef bint per[3]
    cdef double lat[9]
    cdef double Lc[9]       # the lattice used for shifts (non-periodic rows zeroed)
    cdef double basis[9]
    cdef double dual[9]
    cdef int64_t nb[3]      # bins per direction
    cdef int64_t dsc[3]     # bins scanned on each side
    cdef double lo[3]
    cdef double hi[3]
    cdef double binh[3]     # bin size in coordinate units (fractional / Angstrom)
    cdef double extent[3]   # one cell (periodic, fractional units) or the box span (A)
    cdef double cutf[3]     # cutoff in coordinate units
    cdef double rc = cutoff, f, scale, pmax, filt, images
    cdef int64_t bb, bin_id, wa
    cdef int err

    if not (cutoff > 0.0):
        raise ValueError(f"cutoff must be positive, got {cutoff}")
    for a in range(3):
        per[a] = pbc[a] != 0
        for b in range(3):
            lat[3 * a + b] = lattice[a, b]
            Lc[3 * a + b] = lattice[a, b] if per[a] else 0.0
    err = _basis_and_dual(lat, per, basis, dual)
    if err == 1:
        raise ValueError("a lattice row marked periodic is zero or not finite")
    if err == 2:
        raise ValueError("the two periodic lattice rows are parallel")
    if err == 3:
        raise ValueError("the periodic lattice rows are linearly dependent")
    images = 1.0
    for a in range(3):
        if per[a]:
            extent[a] = 1.0
            cutf[a] = rc * _norm_col(dual, a)     # cutoff / h_a in fractional units
            images *= 2.0 * ceil(cutf[a]) + 1.0
    if images > max_images:
        raise ValueError(f"the cell is too thin for cutoff {cutoff:g}: an atom would see about "
                         f"{images:.3g} lattice images (limit {max_images:.3g})")

    offsets_arr = np.zeros(n + 1, dtype=np.int64)
    cdef int64_t[::1] offsets = offsets_arr
    if n == 0:
        return (offsets_arr, np.zeros(0, dtype=np.int64), np.zeros((0, 3)), np.zeros(0),
                np.zeros((0, 3), dtype=np.int64))

    # work arrays (C memory): doubles fr, q, sp (3n each); int64 w, bin_of, sw, sb (3n
    # each), slot, sj, blk, counts (n each), bstart (max_bins + 1)
    cdef double* dws = <double*> malloc(9 * n * sizeof(double))
    cdef int64_t* iws = <int64_t*> malloc((16 * n + max_bins + 1) * sizeof(int64_t))
    cdef Pair* out = NULL
    if dws == NULL or iws == NULL:
        free(dws)
        free(iws)
        raise MemoryError()
    cdef double* fr = dws
    cdef double* q = dws + 3 * n
    cdef double* sp = dws + 6 * n
    cdef int64_t* w = iws
    cdef int64_t* bin_of = iws + 3 * n
    cdef int64_t* sw = iws + 6 * n
    cdef int64_t* sb = iws + 9 * n
    cdef int64_t* slot = iws + 12 * n
    cdef int64_t* sj = iws + 13 * n
    cdef int64_t* blk = iws + 14 * n
    cdef int64_t* counts = iws + 15 * n
    cdef int64_t* bstart = iws + 16 * n
    cdef const double* pos = &positions[0, 0]
    try:
        # -------------------------------------------------------- fractional coordinates
        err = 0
        with nogil:
            for a in range(3):
                lo[a] = 1e300
                hi[a] = -1e300
            for i in range(n):
                for a in range(3):
                    f = pos[3 * i] * dual[a] + pos[3 * i + 1] * dual[3 + a] \
                        + pos[3 * i + 2] * dual[6 + a]
                    if not (fabs(f) < FRAC_LIMIT):
                        err = 1
                        f = 0.0
                    if per[a]:
                        wa = <int64_t> floor(f)
                        w[3 * i + a] = wa
                        fr[3 * i + a] = f - floor(f)
                    else:
                        w[3 * i + a] = 0
                        fr[3 * i + a] = f
                        if f < lo[a]:
                            lo[a] = f
                        if f > hi[a]:
                            hi[a] = f
        if err:
            raise ValueError("an atom position is not finite or is too far (> 1e15 cells or "
                             "Angstrom) from the origin")

        # ------------------------------------------------------------------- bin grid
        for a in range(3):
            if not per[a]:
                extent[a] = hi[a] - lo[a]
                cutf[a] = rc
        scale = 1.0
        while True:
            nbins = 1
            for a in range(3):
                f = extent[a] / (cutf[a] * scale * (1.0 + MARGIN))
                if f >= <double> max_bins:
                    nb[a] = max_bins
                elif f >= 1.0:
                    nb[a] = <int64_t> floor(f)
                else:
                    nb[a] = 1
                nbins *= nb[a]
                if nbins > max_bins:
                    break
            if nbins <= max_bins:
                break
            scale *= 1.2599210498948732   # 2 ** (1/3)
        for a in range(3):
            if nb[a] > 1 or per[a]:
                binh[a] = extent[a] / nb[a]
                dsc[a] = <int64_t> ceil(cutf[a] / binh[a] + 0.5 * MARGIN)
                if not per[a] and dsc[a] > nb[a] - 1:
                    dsc[a] = nb[a] - 1
            else:
                binh[a] = 1.0
                dsc[a] = 0

        # ------------------------------------------------- counting sort into bins
        pmax = 0.0
        with nogil:
            memset(bstart, 0, (nbins + 1) * sizeof(int64_t))
            for i in range(n):
                for a in range(3):
                    if per[a]:
                        bb = <int64_t> (fr[3 * i + a] * nb[a])
                    elif nb[a] > 1:
                        bb = <int64_t> ((fr[3 * i + a] - lo[a]) / binh[a])
                    else:
                        bb = 0
                    if bb < 0:
                        bb = 0
                    if bb >= nb[a]:
                        bb = nb[a] - 1
                    bin_of[3 * i + a] = bb
                bin_id = (bin_of[3 * i] * nb[1] + bin_of[3 * i + 1]) * nb[2] + bin_of[3 * i + 2]
                bstart[bin_id + 1] += 1
            for k in range(nbins):
                bstart[k + 1] += bstart[k]
            # stable placement (order within a bin = original order)
            for i in range(n):
                bin_id = (bin_of[3 * i] * nb[1] + bin_of[3 * i + 1]) * nb[2] + bin_of[3 * i + 2]
                slot[i] = bstart[bin_id]
                bstart[bin_id] += 1
            for k in range(nbins, 0, -1):
                bstart[k] = bstart[k - 1]
            bstart[0] = 0
            for i in range(n):
                idx = slot[i]
                sj[idx] = i
                for a in range(3):
                    sp[3 * idx + a] = pos[3 * i + a]
                    sw[3 * idx + a] = w[3 * i + a]
                    sb[3 * idx + a] = bin_of[3 * i + a]
                    # q = p - w @ L: wrapped position, used by the pre-filter only
                    q[3 * idx + a] = pos[3 * i + a] - (w[3 * i] * Lc[a] + w[3 * i + 1] * Lc[3 + a]
                                                       + w[3 * i + 2] * Lc[6 + a])
                    if fabs(pos[3 * i + a]) > pmax:
                        pmax = fabs(pos[3 * i + a])
                    if fabs(q[3 * idx + a]) > pmax:
                        pmax = fabs(q[3 * idx + a])

        # ----------------------------------------------------------------- search
        # pre-filter radius: generous (q carries a round-off of a few ulp of max|p| +
        # |w @ L|); membership is decided by the exact test on the documented formula
        filt = rc * (1.0 + 1e-8) + 1e-8 + 1e-12 * pmax
        cap = 32 * n + 64
        out = <Pair*> malloc(cap * sizeof(Pair))
        if out == NULL:
            raise MemoryError()
        with nogil:
            total = _search(n, pos, Lc, per, nb, dsc, bstart, q, sp, sw, sb, sj, rc,
                            filt * filt, &out, &cap, blk, counts)
        if total < 0:
            raise MemoryError("the neighbour list does not fit in memory")

        # ------------------------------------------- CSR output in original atom order
        index_arr = np.empty(total, dtype=np.int64)
        vectors_arr = np.empty((total, 3), dtype=np.float64)
        dist_arr = np.empty(total, dtype=np.float64)
        shifts_arr = np.empty((total, 3), dtype=np.int64)
        _fill(n, out, blk, counts, &offsets[0], <int64_t*> cnp.PyArray_DATA(index_arr),
              <double*> cnp.PyArray_DATA(vectors_arr), <double*> cnp.PyArray_DATA(dist_arr),
              <int64_t*> cnp.PyArray_DATA(shifts_arr))
    finally:
        free(dws)
        free(iws)
        free(out)
    return offsets_arr, index_arr, vectors_arr, dist_arr, shifts_arr


cdef void _fill(Py_ssize_t n, const Pair* out, const int64_t* blk, const int64_t* counts,
                int64_t* offsets, int64_t* index, double* vectors, double* dist,
                int64_t* shifts) noexcept nogil:
    """Copy the per-atom blocks into the CSR arrays, atom ``i`` after atom ``i - 1``."""
    cdef Py_ssize_t i, k, src
    cdef const Pair* pp
    offsets[0] = 0
    for i in range(n):
        offsets[i + 1] = offsets[i] + counts[i]
        src = blk[i]
        for k in range(offsets[i], offsets[i + 1]):
            pp = &out[src]
            src += 1
            index[k] = pp.j
            vectors[3 * k] = pp.x
            vectors[3 * k + 1] = pp.y
            vectors[3 * k + 2] = pp.z
            dist[k] = pp.d
            shifts[3 * k] = pp.n0
            shifts[3 * k + 1] = pp.n1
            shifts[3 * k + 2] = pp.n2


cdef _raise_direct(int status, double cutoff, double images, double max_images):
    if status == DIRECT_ZERO_ROW:
        raise ValueError("a lattice row marked periodic is zero or not finite")
    if status == DIRECT_PARALLEL:
        raise ValueError("the two periodic lattice rows are parallel")
    if status == DIRECT_DEPENDENT:
        raise ValueError("the periodic lattice rows are linearly dependent")
    if status == DIRECT_THIN:
        raise ValueError(f"the cell is too thin for cutoff {cutoff:g}: an atom would see about "
                         f"{images:.3g} lattice images (limit {max_images:.3g})")
    if status == DIRECT_NOMEM:
        raise MemoryError("the neighbour list does not fit in memory")


def build_direct(const double[:, ::1] lattice,
                 const double[:, ::1] positions,
                 const cnp.uint8_t[::1] pbc,
                 double cutoff,
                 double max_images,
                 bint full=True):
    """All-pairs variant of :func:`build` for small configurations: same result.

    For every ordered pair ``(i, j)`` the lattice images that can lie within the cutoff
    are bounded in fractional coordinates (``|f_a + n_a| <= cutoff / h_a`` plus a
    round-off margin); each candidate is then tested with the documented exact formula.
    Looping over ``j`` and the images in ascending order yields every block already
    sorted by ``(j, n0, n1, n2)``.  Cost ``O(N^2 (1 + images))``: meant for small ``N``.

    ``pbc`` None means "row ``a`` is periodic iff it is not exactly zero".

    Returns the same tuple as :func:`build` (bit for bit; only ``offsets, index,
    vectors`` when ``full`` is False), or None when a coordinate (fractional along
    periodic rows, Angstrom otherwise) exceeds 1e6 in magnitude (the caller then uses
    :func:`build`).  Raises the same ValueErrors as :func:`build`.
    """
    cdef Py_ssize_t n = positions.shape[0], total, i, cap = 0
    cdef int status
    cdef double images = 0.0
    cdef double lat[9]
    cdef const cnp.uint8_t* pp = NULL
    if not (cutoff > 0.0):
        raise ValueError(f"cutoff must be positive, got {cutoff}")
    if lattice.shape[0] != 3 or lattice.shape[1] != 3 or (n and positions.shape[1] != 3):
        raise ValueError("lattice must be (3, 3) and positions (N, 3)")
    if pbc is not None:
        if pbc.shape[0] != 3:
            raise ValueError("pbc must have 3 entries")
        pp = &pbc[0]
    for i in range(9):
        lat[i] = lattice[i // 3, i % 3]
    offsets_arr = np.zeros(n + 1, dtype=np.int64)
    cdef int64_t[::1] offsets = offsets_arr
    cdef int64_t* blk = <int64_t*> malloc((2 * n + 1) * sizeof(int64_t))
    cdef int64_t* counts = blk + n
    cdef Pair* out = NULL
    cdef const double* pos = &positions[0, 0] if n else NULL
    if blk == NULL:
        raise MemoryError()
    try:
        with nogil:
            status = _direct_pairs(lat, pp, pos, n, cutoff, max_images, &out, &cap, blk,
                                   counts, &images)
        if status == DIRECT_FAR:
            return None
        _raise_direct(status, cutoff, images, max_images)
        total = 0
        for i in range(n):
            total += counts[i]
        index_arr = np.empty(total, dtype=np.int64)
        vectors_arr = np.empty((total, 3), dtype=np.float64)
        if not full:
            if n:
                _fill_csr(n, out, counts, &offsets[0], <int64_t*> cnp.PyArray_DATA(index_arr),
                          <double*> cnp.PyArray_DATA(vectors_arr))
            return offsets_arr, index_arr, vectors_arr
        dist_arr = np.empty(total, dtype=np.float64)
        shifts_arr = np.empty((total, 3), dtype=np.int64)
        if n:
            _fill(n, out, blk, counts, &offsets[0], <int64_t*> cnp.PyArray_DATA(index_arr),
                  <double*> cnp.PyArray_DATA(vectors_arr), <double*> cnp.PyArray_DATA(dist_arr),
                  <int64_t*> cnp.PyArray_DATA(shifts_arr))
    finally:
        free(blk)
        free(out)
    return offsets_arr, index_arr, vectors_arr, dist_arr, shifts_arr


cdef void _fill_csr(Py_ssize_t n, const Pair* out, const int64_t* counts, int64_t* offsets,
                    int64_t* index, double* vectors) noexcept nogil:
    """Offsets, indices and vectors of blocks stored one after the other in atom order."""
    cdef Py_ssize_t i, k
    offsets[0] = 0
    for i in range(n):
        offsets[i + 1] = offsets[i] + counts[i]
    for k in range(offsets[n]):
        index[k] = out[k].j
        vectors[3 * k] = out[k].x
        vectors[3 * k + 1] = out[k].y
        vectors[3 * k + 2] = out[k].z
