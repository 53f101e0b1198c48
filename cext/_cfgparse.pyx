# cython: language_level=3
"""Kernels of the text ``.cfg`` reader and writer (see :mod:`mlip_py.io.cfg`).

Only the two hot loops live here; everything structural (keywords, validation, error
messages) is Python.

``parse_cfg``
    Parses a whole ``BEGIN_CFG ... END_CFG`` block of the common layout straight into
    the arrays of a configuration.  Anything unusual or wrong makes it decline
    (``CFG_BAIL``); the general Python parser then reads that block and reports errors
    with their line.  ``CFG_MORE`` asks the caller to append data and call again.

``parse_rows``
    Parses the ``AtomData`` table for the general parser: whitespace-separated numbers,
    one table row per line, into a float64 array, resumable at any row/column.

Number conversion is correctly rounded and agrees bit for bit with Python's
``float()``: tokens of at most 19 significant digits with a decimal exponent in
[-22, 22] and a mantissa below 2**53 (every number MLIP writes in its default format) use
the exact "fast path" (one IEEE multiplication or division of two exactly representable
values); longer mantissas (the 17 digits of the lossless format) with exponents in
[-27, 27] use one extended-precision (x87, 64-bit mantissa) operation whose result is
accepted only when it is provably not near a rounding midpoint; everything else goes
through CPython's own ``PyOS_string_to_double`` (what ``float()`` uses).  A token none of
these accepts (``1_0``, garbage) is handed back to the caller.  Negative zeros and NaN
signs are kept.

``format_atoms``
    Formats the atom lines exactly like MLIP-2's ``Configuration::Save`` (glibc ``printf``
    semantics, including ``-0.000000`` for negative values that round to zero and
    ``-nan``).  Fixed-point fields use an exact fast path (value * 10**prec, rounded with
    a margin that covers the rounding error of the product) and fall back to
    ``snprintf`` when the margin does not decide, for non-finite values and for huge
    magnitudes; the lossless ``%.16e`` uses the same idea in extended precision (scale to
    17 digits, round, fall back to ``snprintf`` near a half).
"""
from libc.math cimport floor, fabs, isfinite, signbit
from libc.stdio cimport snprintf
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memchr, memcpy, memset
from libc.stdint cimport uint64_t, int64_t
from cpython.bytes cimport PyBytes_FromStringAndSize

cdef extern from "Python.h":
    double PyOS_string_to_double(const char *s, char **endptr, void *overflow_exception)
    void *PyErr_Occurred()
    void PyErr_Clear()

cdef extern from "float.h":
    int LDBL_MANT_DIG
    long double LDBL_EPSILON

cdef extern from "math.h":
    long double floorl(long double x) nogil
    long double fabsl(long double x) nogil
    double nextafter(double x, double y) nogil
    double log10(double x) nogil
    double INFINITY

# the extended-precision paths need a 64-bit long double mantissa (x87); elsewhere they
# are skipped and the slower exact routines are used
cdef bint HAVE_LD64 = LDBL_MANT_DIG >= 64
# exact powers of ten as long doubles (10**k is exact for k <= 27 with a 64-bit mantissa)
cdef long double[28] POW10L
cdef int _i
POW10L[0] = 1.0
for _i in range(1, 28):
    POW10L[_i] = POW10L[_i - 1] * 10

# exact powers of ten (all exactly representable as doubles)
cdef double[23] POW10
POW10[:] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13,
            1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22]
cdef uint64_t[20] IPOW10
IPOW10[:] = [1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000,
             1000000000, 10000000000, 100000000000, 1000000000000, 10000000000000,
             100000000000000, 1000000000000000, 10000000000000000, 100000000000000000,
             1000000000000000000, 10000000000000000000]

# status codes of parse_rows
cdef enum:
    ST_DONE = 0        # all rows parsed
    ST_MORE = 1        # the buffer ends inside a row: append data and call again
    ST_TOKEN = 2       # a token the kernel cannot convert: caller converts or reports it
    ST_SHORT = 3       # the line ended before all columns were read
    ST_LONG = 4        # the line has more tokens than columns
    ST_EOF = 5         # end of data before all rows were read

#: the status codes, for the Python caller
STATUS = {"done": ST_DONE, "more": ST_MORE, "token": ST_TOKEN, "short": ST_SHORT,
          "long": ST_LONG, "eof": ST_EOF}


cdef inline bint _is_blank(unsigned char c) noexcept nogil:
    return c == 32 or c == 9 or c == 13 or c == 11 or c == 12


cdef inline int _fast_number(const unsigned char *p, const unsigned char *e,
                             double *out) noexcept nogil:
    """Exact conversion of [p, e) if it is a plain decimal; 0 if not handled."""
    cdef bint neg = False
    cdef uint64_t mant = 0
    cdef int nsig = 0, ndig = 0, exp10 = 0, ex = 0, nexp = 0
    cdef bint eneg = False
    cdef unsigned char c
    if p < e and (p[0] == 45 or p[0] == 43):
        neg = p[0] == 45
        p += 1
    while p < e:
        c = p[0]
        if c < 48 or c > 57:
            break
        ndig += 1
        if mant != 0 or c != 48:
            nsig += 1
            if nsig > 19:
                return 0
            mant = mant * 10 + (c - 48)
        p += 1
    if p < e and p[0] == 46:
        p += 1
        while p < e:
            c = p[0]
            if c < 48 or c > 57:
                break
            ndig += 1
            if mant != 0 or c != 48:
                nsig += 1
                if nsig > 19:
                    return 0
                mant = mant * 10 + (c - 48)
            exp10 -= 1
            p += 1
    if ndig == 0:
        return 0
    if p < e and (p[0] == 101 or p[0] == 69):
        p += 1
        if p < e and (p[0] == 45 or p[0] == 43):
            eneg = p[0] == 45
            p += 1
        while p < e:
            c = p[0]
            if c < 48 or c > 57:
                return 0
            nexp += 1
            if nexp > 4:
                return 0
            ex = ex * 10 + (c - 48)
            p += 1
        if nexp == 0:
            return 0
        exp10 += -ex if eneg else ex
    if p != e:
        return 0
    cdef double v
    if mant == 0:
        v = 0.0
    elif mant > 9007199254740992ULL or exp10 < -22 or exp10 > 22:
        if not _ext_number(mant, exp10, &v):
            return 0
    elif exp10 < 0:
        v = <double>mant / POW10[-exp10]
    else:
        v = <double>mant * POW10[exp10]
    out[0] = -v if neg else v
    return 1


cdef inline int _ext_number(uint64_t mant, int exp10, double *out) noexcept nogil:
    """mant * 10**exp10 correctly rounded, via one extended-precision operation.

    The extended result r has relative error <= 2**-64; rounding it to double gives the
    correctly rounded value unless r lies within LDBL_EPSILON*|r| of a midpoint between
    two doubles, in which case 0 is returned (the caller uses an exact routine).
    """
    cdef long double r, lo, hi, tol
    cdef double d
    if not HAVE_LD64 or exp10 < -27 or exp10 > 27:
        return 0
    if exp10 < 0:
        r = (<long double>mant) / POW10L[-exp10]
    else:
        r = (<long double>mant) * POW10L[exp10]
    d = <double>r
    lo = ((<long double>d) + (<long double>nextafter(d, -INFINITY))) * 0.5
    hi = ((<long double>d) + (<long double>nextafter(d, INFINITY))) * 0.5
    tol = fabsl(r) * LDBL_EPSILON
    if r - lo > tol and hi - r > tol:
        out[0] = d
        return 1
    return 0


cdef inline int _number(const unsigned char *p, const unsigned char *e, double *out) noexcept:
    """Convert the token [p, e); 1 on success, 0 if the caller has to deal with it."""
    cdef char tmp[80]
    cdef double v
    cdef Py_ssize_t n = e - p
    if _fast_number(p, e, out):
        return 1
    if n >= 80:
        return 0
    memcpy(tmp, p, n)
    tmp[n] = 0
    v = PyOS_string_to_double(tmp, NULL, NULL)
    if v == -1.0 and PyErr_Occurred() != NULL:
        PyErr_Clear()
        return 0
    out[0] = v
    return 1


def parse_rows(const unsigned char[::1] buf, Py_ssize_t pos, bint at_eof,
               double[:, ::1] out, Py_ssize_t row, Py_ssize_t col):
    """Parse table rows (one per line) of ``buf`` starting at byte ``pos``.

    Fills ``out[row:, :]`` (resuming inside row ``row`` at column ``col``).  Returns
    ``(status, pos, row, col, nlines, tok_end)``: ``pos`` is where parsing stopped (start
    of the offending token for ``ST_TOKEN``/``ST_LONG``, start of the unfinished row for
    ``ST_MORE``), ``nlines`` the number of line breaks consumed, ``tok_end`` the end of
    the offending token.
    """
    cdef Py_ssize_t n = buf.shape[0]
    cdef Py_ssize_t nrows = out.shape[0], ncols = out.shape[1]
    cdef const unsigned char *base = &buf[0] if n > 0 else NULL
    cdef const unsigned char *p
    cdef const unsigned char *line_end
    cdef const unsigned char *q
    cdef const unsigned char *nl
    cdef Py_ssize_t nlines = 0, row_start
    cdef double v
    if n == 0:
        if row >= nrows:
            return (ST_DONE, pos, row, col, 0, pos)
        return (ST_EOF if at_eof else ST_MORE, pos, row, col, 0, pos)
    while row < nrows:
        row_start = pos
        if pos >= n:
            return (ST_EOF if at_eof else ST_MORE, pos, row, col, nlines, pos)
        nl = <const unsigned char *>memchr(base + pos, 10, n - pos)
        if nl == NULL:
            if not at_eof:
                # unfinished line: the caller appends data and resumes at this row
                return (ST_MORE, pos, row, col, nlines, pos)
            line_end = base + n
        else:
            line_end = nl
        p = base + pos
        while col < ncols:
            while p < line_end and _is_blank(p[0]):
                p += 1
            if p >= line_end:
                return (ST_SHORT, p - base, row, col, nlines, p - base)
            q = p
            while q < line_end and not _is_blank(q[0]):
                q += 1
            if not _number(p, q, &v):
                return (ST_TOKEN, p - base, row, col, nlines, q - base)
            out[row, col] = v
            col += 1
            p = q
        while p < line_end and _is_blank(p[0]):
            p += 1
        if p < line_end:
            q = p
            while q < line_end and not _is_blank(q[0]):
                q += 1
            return (ST_LONG, p - base, row, col, nlines, q - base)
        # next row
        row += 1
        col = 0
        if nl != NULL:
            pos = (nl - base) + 1
            nlines += 1
        else:
            pos = n
    return (ST_DONE, pos, row, col, nlines, pos)


# ---------------------------------------------------------------------------- output
cdef struct OutBuf:
    char *data
    Py_ssize_t size
    Py_ssize_t cap


cdef int _reserve(OutBuf *ob, Py_ssize_t extra) except -1:
    cdef Py_ssize_t cap
    cdef char *d
    if ob.size + extra <= ob.cap:
        return 0
    cap = ob.cap * 2
    if cap < ob.size + extra:
        cap = ob.size + extra
    d = <char *>realloc(ob.data, cap)
    if d == NULL:
        raise MemoryError()
    ob.data = d
    ob.cap = cap
    return 0


cdef inline Py_ssize_t _put_uint(char *out, uint64_t v) noexcept nogil:
    """Decimal digits of v; returns the count."""
    cdef char tmp[24]
    cdef int k = 0, i
    if v == 0:
        out[0] = 48
        return 1
    while v:
        tmp[k] = <char>(48 + v % 10)
        v //= 10
        k += 1
    for i in range(k):
        out[i] = tmp[k - 1 - i]
    return k


cdef inline Py_ssize_t _put_int(char *out, int64_t v, int width) noexcept nogil:
    """``%*d``."""
    cdef char tmp[32]
    cdef Py_ssize_t k = 0, pad, i
    if v < 0:
        tmp[0] = 45
        k = 1 + _put_uint(tmp + 1, <uint64_t>(-v))
    else:
        k = _put_uint(tmp, <uint64_t>v)
    pad = width - k
    if pad < 0:
        pad = 0
    for i in range(pad):
        out[i] = 32
    memcpy(out + pad, tmp, k)
    return pad + k


cdef inline Py_ssize_t _put_fixed(char *out, double x, int width, int prec) noexcept nogil:
    """``%*.*f`` of glibc printf (at most 400 characters)."""
    cdef double ax, y, r, fr, tol
    cdef uint64_t q, ip, fp, scale
    cdef char tmp[48]
    cdef Py_ssize_t k = 0, pad, i, nd
    if not isfinite(x):
        return snprintf(out, 400, "%*.*f", width, prec, x)
    ax = fabs(x)
    y = ax * POW10[prec]
    if not (y < 4.0e15):
        return snprintf(out, 400, "%*.*f", width, prec, x)
    r = floor(y)
    fr = y - r
    tol = y * 4.5e-16
    if fr > 0.5 + tol:
        q = <uint64_t>r + 1
    elif fr < 0.5 - tol:
        q = <uint64_t>r
    else:
        return snprintf(out, 400, "%*.*f", width, prec, x)
    scale = IPOW10[prec]
    ip = q // scale
    fp = q - ip * scale
    if signbit(x):
        tmp[0] = 45
        k = 1
    k += _put_uint(tmp + k, ip)
    if prec > 0:
        tmp[k] = 46
        k += 1
        for i in range(prec - 1, -1, -1):
            tmp[k + i] = <char>(48 + fp % 10)
            fp //= 10
        k += prec
    pad = width - k
    if pad < 0:
        pad = 0
    for i in range(pad):
        out[i] = 32
    memcpy(out + pad, tmp, k)
    return pad + k


cdef inline Py_ssize_t _put_sci(char *out, double x) noexcept nogil:
    """``%.16e`` of glibc printf (17 significant digits, exponent of at least 2 digits).

    Scales |x| to [1e16, 1e17) with one extended-precision operation (relative error
    <= 2**-64, i.e. < 0.006 units in the last digit) and rounds to an integer; when the
    fraction is within 0.01 of one half, or |x| is outside the exactly scalable range,
    snprintf decides.
    """
    cdef double ax
    cdef long double y, r, fr
    cdef int e, s, i, k = 0, ee
    cdef uint64_t q
    cdef char digits[17]
    if not HAVE_LD64 or not isfinite(x) or x == 0.0:
        return snprintf(out, 400, "%.16e", x)
    ax = fabs(x)
    e = <int>floor(log10(ax))
    s = 16 - e
    if s < -27 or s > 27:
        return snprintf(out, 400, "%.16e", x)
    y = (<long double>ax) * POW10L[s] if s >= 0 else (<long double>ax) / POW10L[-s]
    if y < 1e16:
        e -= 1
        s += 1
        if s > 27:
            return snprintf(out, 400, "%.16e", x)
        y = (<long double>ax) * POW10L[s] if s >= 0 else (<long double>ax) / POW10L[-s]
    elif y >= 1e17:
        e += 1
        s -= 1
        if s < -27:
            return snprintf(out, 400, "%.16e", x)
        y = (<long double>ax) * POW10L[s] if s >= 0 else (<long double>ax) / POW10L[-s]
    r = floorl(y)
    fr = y - r
    if fabsl(fr - 0.5) <= 0.01:
        return snprintf(out, 400, "%.16e", x)
    q = <uint64_t>r
    if fr > 0.5:
        q += 1
    if q >= 100000000000000000ULL:
        q = 10000000000000000ULL
        e += 1
    elif q < 10000000000000000ULL:
        return snprintf(out, 400, "%.16e", x)
    for i in range(16, -1, -1):
        digits[i] = <char>(48 + q % 10)
        q //= 10
    if signbit(x):
        out[k] = 45
        k += 1
    out[k] = digits[0]
    out[k + 1] = 46
    memcpy(out + k + 2, digits + 1, 16)
    k += 18
    out[k] = 101
    out[k + 1] = 45 if e < 0 else 43
    k += 2
    ee = -e if e < 0 else e
    if ee < 10:
        out[k] = 48
        k += 1
    k += _put_uint(out + k, <uint64_t>ee)
    return k


cdef inline Py_ssize_t _put_num(char *out, double x, bint lossless, int width, int prec) noexcept nogil:
    if lossless:
        return _put_sci(out, x)
    return _put_fixed(out, x, width, prec)


def format_atoms(const int64_t[::1] types, const double[:, ::1] pos, site_en, forces,
                 charges, bint lossless):
    """The atom lines of one configuration as ``bytes`` (MLIP-2 layout, see module doc).

    ``site_en``, ``forces``, ``charges``: C-contiguous float64 arrays of shape (N,),
    (N, 3), (N,) or None.
    """
    cdef Py_ssize_t n = pos.shape[0], i, j
    cdef const double[::1] se
    cdef const double[:, ::1] fo
    cdef const double[::1] ch
    cdef bint has_se = site_en is not None
    cdef bint has_fo = forces is not None
    cdef bint has_ch = charges is not None
    cdef OutBuf ob
    cdef char *o
    cdef Py_ssize_t per_line = 4 * 400 + 64
    if has_se:
        se = site_en
        per_line += 410
    if has_fo:
        fo = forces
        per_line += 3 * 410
    if has_ch:
        ch = charges
        per_line += 410
    if types.shape[0] != n:
        raise ValueError("types and positions differ in length")
    ob.size = 0
    ob.cap = n * (150 if lossless else 100) + per_line
    ob.data = <char *>malloc(ob.cap)
    if ob.data == NULL:
        raise MemoryError()
    try:
        for i in range(n):
            _reserve(&ob, per_line)
            o = ob.data + ob.size
            memcpy(o, b"    ", 4)
            o += 4
            o += _put_int(o, i + 1, 1 if lossless else 10)
            o[0] = 32
            o += 1
            o += _put_int(o, types[i], 1 if lossless else 4)
            o[0] = 32
            o[1] = 32
            o += 2
            for j in range(3):
                if j:
                    o[0] = 32
                    o += 1
                o += _put_num(o, pos[i, j], lossless, 13, 6)
            if has_se:
                o[0] = 32
                o[1] = 32
                o += 2
                o += _put_num(o, se[i], lossless, 17, 12)
            if has_fo:
                o[0] = 32
                o[1] = 32
                o += 2
                for j in range(3):
                    if j:
                        o[0] = 32
                        o += 1
                    o += _put_num(o, fo[i, j], lossless, 11, 6)
            if has_ch:
                memcpy(o, b"    ", 4)
                o += 4
                o += _put_num(o, ch[i], lossless, 8, 4)
            o[0] = 10
            o += 1
            ob.size = o - ob.data
        return PyBytes_FromStringAndSize(ob.data, ob.size)
    finally:
        free(ob.data)


def format_fixed(double x, int width, int prec):
    """``'%*.*f' % (width, prec, x)`` with C semantics (``-nan``); for tests and scalars."""
    cdef char tmp[450]
    cdef Py_ssize_t k = _put_fixed(tmp, x, width, prec)
    return PyBytes_FromStringAndSize(tmp, k)


def format_sci(double x):
    """``'%.16e' % x`` with C semantics (``-nan``); the lossless scalar format."""
    cdef char tmp[64]
    cdef Py_ssize_t k = _put_sci(tmp, x)
    return PyBytes_FromStringAndSize(tmp, k)


# ---------------------------------------------------------------------- whole-cfg fast path
import numpy as np

cdef enum:
    K_ID = 0
    K_TYPE = 1
    K_CX = 2      # cartes_x, y, z = 2, 3, 4
    K_DX = 5      # direct_x, y, z = 5, 6, 7
    K_FX = 8      # fx, fy, fz = 8, 9, 10
    K_SITE = 11
    K_CHARGE = 12

cdef enum:
    CFG_OK = 0
    CFG_MORE = 1
    CFG_BAIL = 2


cdef inline bint _is_space(unsigned char c) noexcept nogil:
    return c == 32 or c == 10 or c == 9 or c == 13 or c == 11 or c == 12


cdef inline bint _tok_is(const unsigned char *p, const unsigned char *q, const char *kw) noexcept nogil:
    cdef Py_ssize_t n = q - p, i = 0
    while kw[i] != 0:
        if i >= n or p[i] != <unsigned char>kw[i]:
            return False
        i += 1
    return i == n


cdef int _column_kind(const unsigned char *p, const unsigned char *q) noexcept nogil:
    if _tok_is(p, q, b"id"):
        return K_ID
    if _tok_is(p, q, b"type"):
        return K_TYPE
    if _tok_is(p, q, b"cartes_x"):
        return K_CX
    if _tok_is(p, q, b"cartes_y"):
        return K_CX + 1
    if _tok_is(p, q, b"cartes_z"):
        return K_CX + 2
    if _tok_is(p, q, b"direct_x"):
        return K_DX
    if _tok_is(p, q, b"direct_y"):
        return K_DX + 1
    if _tok_is(p, q, b"direct_z"):
        return K_DX + 2
    if _tok_is(p, q, b"fx"):
        return K_FX
    if _tok_is(p, q, b"fy"):
        return K_FX + 1
    if _tok_is(p, q, b"fz"):
        return K_FX + 2
    if _tok_is(p, q, b"site_en"):
        return K_SITE
    if _tok_is(p, q, b"charge"):
        return K_CHARGE
    return -1


cdef int _stress_index(const unsigned char *p, const unsigned char *q) noexcept nogil:
    if _tok_is(p, q, b"xx"):
        return 0
    if _tok_is(p, q, b"yy"):
        return 1
    if _tok_is(p, q, b"zz"):
        return 2
    if _tok_is(p, q, b"yz"):
        return 3
    if _tok_is(p, q, b"xz"):
        return 4
    if _tok_is(p, q, b"xy"):
        return 5
    return -1


cdef class _Scan:
    """Cursor over a buffer for the whole-cfg fast path."""
    cdef const unsigned char *base
    cdef const unsigned char *p
    cdef const unsigned char *end
    cdef bint at_eof
    cdef Py_ssize_t nlines
    cdef int status          # CFG_MORE or CFG_BAIL when a step fails

    cdef inline bint skip(self) noexcept:
        """Skip whitespace; False (status set) at end of buffer."""
        cdef const unsigned char *p = self.p
        while p < self.end and _is_space(p[0]):
            if p[0] == 10:
                self.nlines += 1
            p += 1
        self.p = p
        if p >= self.end:
            self.status = CFG_BAIL if self.at_eof else CFG_MORE
            return False
        return True

    cdef inline const unsigned char *tok_end(self) noexcept:
        cdef const unsigned char *q = self.p
        while q < self.end and not _is_space(q[0]):
            q += 1
        return q

    cdef inline const unsigned char *line_end(self) noexcept:
        """End of the current line (the '\\n' or the end of the data); NULL if more data is needed."""
        cdef const unsigned char *nl = <const unsigned char *>memchr(self.p, 10, self.end - self.p)
        if nl != NULL:
            return nl
        if self.at_eof:
            return self.end
        self.status = CFG_MORE
        return NULL


def parse_cfg(const unsigned char[::1] buf, Py_ssize_t pos, bint at_eof):
    """Parse one ``BEGIN_CFG ... END_CFG`` block of the common layout starting at ``pos``.

    Returns ``(CFG_MORE,)`` when the buffer ends inside the block (append data and call
    again), ``(CFG_BAIL,)`` for anything unusual or wrong (the caller's general parser
    then reads the block and reports errors precisely), or ``(CFG_OK, end_pos, nlines,
    lattice, positions, types, forces, site_energies, charges, direct, energy, stress,
    virial, features)`` where ``features`` is a list of ``(key_bytes, value_bytes)`` in
    file order and unset optional fields are None.
    """
    cdef _Scan s = _Scan()
    cdef Py_ssize_t n = buf.shape[0]
    if n == 0 or pos >= n:
        return (CFG_BAIL if at_eof else CFG_MORE,)
    s.base = &buf[0]
    s.p = s.base + pos
    s.end = s.base + n
    s.at_eof = at_eof
    s.nlines = 0
    s.status = CFG_OK
    cdef const unsigned char *q
    cdef const unsigned char *le
    cdef const unsigned char *lp
    cdef double v
    cdef double lat[9]
    cdef int nlat = 0, i, j, k, kind, ncols = 0
    cdef int kinds[32]
    cdef unsigned int seen = 0
    cdef Py_ssize_t size = -1, row, iv
    cdef bint have_atoms = False, direct = False, have_energy = False, have_stress = False
    cdef bint virial = False
    cdef double energy = 0.0
    cdef double stress[6]
    cdef int sidx[6]
    cdef int nst
    cdef double[:, ::1] P
    cdef double[:, ::1] F
    cdef double[::1] SE
    cdef double[::1] CH
    cdef int64_t[::1] T
    positions = types = forces = site = charges = None
    features = []
    memset(lat, 0, sizeof(lat))
    memset(stress, 0, sizeof(stress))

    if not s.skip():
        return (s.status,)
    q = s.tok_end()
    if not _tok_is(s.p, q, b"BEGIN_CFG"):
        return (CFG_BAIL,)
    s.p = q
    while True:
        if not s.skip():
            return (s.status,)
        q = s.tok_end()
        if q >= s.end and not at_eof:
            return (CFG_MORE,)
        if _tok_is(s.p, q, b"END_CFG"):
            s.p = q
            break
        elif _tok_is(s.p, q, b"Size"):
            if size >= 0:
                return (CFG_BAIL,)
            s.p = q
            if not s.skip():
                return (s.status,)
            q = s.tok_end()
            if q >= s.end and not at_eof:
                return (CFG_MORE,)
            iv = 0
            lp = s.p
            if lp >= q:
                return (CFG_BAIL,)
            while lp < q:
                if lp[0] < 48 or lp[0] > 57 or iv > 100000000000:
                    return (CFG_BAIL,)
                iv = iv * 10 + (lp[0] - 48)
                lp += 1
            size = iv
            s.p = q
        elif _tok_is(s.p, q, b"Supercell") or _tok_is(s.p, q, b"SuperCell"):
            s.p = q
            nlat = 0
            memset(lat, 0, sizeof(lat))
            while nlat < 9:
                if not s.skip():
                    return (s.status,)
                q = s.tok_end()
                if q >= s.end and not at_eof:
                    return (CFG_MORE,)
                if not _fast_number(s.p, q, &v):
                    if not (s.p[0] == 45 or s.p[0] == 43 or s.p[0] == 46 or (48 <= s.p[0] <= 57)):
                        break           # a keyword: end of the lattice numbers
                    if not _number(s.p, q, &v):
                        return (CFG_BAIL,)
                lat[nlat] = v
                nlat += 1
                s.p = q
            if nlat % 3:
                return (CFG_BAIL,)
        elif _tok_is(s.p, q, b"AtomData:") or _tok_is(s.p, q, b"Atomic_data:"):
            if size < 0 or have_atoms:
                return (CFG_BAIL,)
            s.p = q
            le = s.line_end()
            if le == NULL:
                return (CFG_MORE,)
            ncols = 0
            seen = 0
            while True:
                while s.p < le and _is_blank(s.p[0]):
                    s.p += 1
                if s.p >= le:
                    break
                q = s.p
                while q < le and not _is_blank(q[0]):
                    q += 1
                kind = _column_kind(s.p, q)
                if kind < 0 or ncols >= 32 or (seen >> kind) & 1:
                    return (CFG_BAIL,)
                seen |= 1u << kind
                kinds[ncols] = kind
                ncols += 1
                s.p = q
            # positions: all three Cartesian or all three direct; forces: none or all three
            if (seen & 0x1C) == 0x1C and (seen & 0xE0) == 0:
                direct = False
            elif (seen & 0xE0) == 0xE0 and (seen & 0x1C) == 0:
                direct = True
            else:
                return (CFG_BAIL,)
            if (seen & 0x700) != 0 and (seen & 0x700) != 0x700:
                return (CFG_BAIL,)
            if le >= s.end:
                if size > 0:
                    return (CFG_BAIL,)
            else:
                s.p = le + 1
                s.nlines += 1
            positions = np.empty((size, 3))
            P = positions
            types = np.zeros(size, dtype=np.int64)
            T = types
            if seen & 0x700:
                forces = np.empty((size, 3))
                F = forces
            if (seen >> K_SITE) & 1:
                site = np.empty(size)
                SE = site
            if (seen >> K_CHARGE) & 1:
                charges = np.empty(size)
                CH = charges
            for row in range(size):
                if s.p >= s.end:
                    return (CFG_BAIL if at_eof else CFG_MORE,)
                le = s.line_end()
                if le == NULL:
                    return (CFG_MORE,)
                for j in range(ncols):
                    while s.p < le and _is_blank(s.p[0]):
                        s.p += 1
                    if s.p >= le:
                        return (CFG_BAIL,)
                    q = s.p
                    while q < le and not _is_blank(q[0]):
                        q += 1
                    if not _number(s.p, q, &v):
                        return (CFG_BAIL,)
                    kind = kinds[j]
                    if kind == K_ID:
                        if v != <double>(row + 1):
                            return (CFG_BAIL,)
                    elif kind == K_TYPE:
                        if v != floor(v) or fabs(v) > 2147483647.0:
                            return (CFG_BAIL,)
                        T[row] = <int64_t>v
                    elif kind <= K_CX + 2:
                        P[row, kind - K_CX] = v
                    elif kind <= K_DX + 2:
                        P[row, kind - K_DX] = v
                    elif kind <= K_FX + 2:
                        F[row, kind - K_FX] = v
                    elif kind == K_SITE:
                        SE[row] = v
                    else:
                        CH[row] = v
                    s.p = q
                while s.p < le and _is_blank(s.p[0]):
                    s.p += 1
                if s.p < le:
                    return (CFG_BAIL,)
                if le < s.end:
                    s.p = le + 1
                    s.nlines += 1
                else:
                    s.p = le
            have_atoms = True
        elif _tok_is(s.p, q, b"Energy"):
            s.p = q
            if not s.skip():
                return (s.status,)
            q = s.tok_end()
            if q >= s.end and not at_eof:
                return (CFG_MORE,)
            if not _number(s.p, q, &energy):
                return (CFG_BAIL,)
            have_energy = True
            s.p = q
        elif _tok_is(s.p, q, b"PlusStress:") or _tok_is(s.p, q, b"Virial:"):
            virial = _tok_is(s.p, q, b"Virial:")
            s.p = q
            le = s.line_end()
            if le == NULL:
                return (CFG_MORE,)
            nst = 0
            while True:
                while s.p < le and _is_blank(s.p[0]):
                    s.p += 1
                if s.p >= le:
                    break
                q = s.p
                while q < le and not _is_blank(q[0]):
                    q += 1
                k = _stress_index(s.p, q)
                if k < 0 or nst >= 6:
                    return (CFG_BAIL,)
                sidx[nst] = k
                nst += 1
                s.p = q
            memset(stress, 0, sizeof(stress))
            for i in range(nst):
                if not s.skip():
                    return (s.status,)
                q = s.tok_end()
                if q >= s.end and not at_eof:
                    return (CFG_MORE,)
                if not _number(s.p, q, &v):
                    return (CFG_BAIL,)
                stress[sidx[i]] = v
                s.p = q
            # nothing else may follow the values on their line
            while s.p < s.end and _is_blank(s.p[0]):
                s.p += 1
            if s.p >= s.end and not at_eof:
                return (CFG_MORE,)
            if nst and s.p < s.end and s.p[0] != 10:
                return (CFG_BAIL,)
            have_stress = True
        elif _tok_is(s.p, q, b"Feature"):
            s.p = q
            le = s.line_end()
            if le == NULL:
                return (CFG_MORE,)
            while s.p < le and _is_blank(s.p[0]):
                s.p += 1
            if s.p >= le:
                return (CFG_BAIL,)
            q = s.p
            while q < le and not _is_blank(q[0]):
                q += 1
            key = PyBytes_FromStringAndSize(<const char *>s.p, q - s.p)
            if q < le:
                q += 1
            value = PyBytes_FromStringAndSize(<const char *>q, le - q)
            features.append((key, value))
            s.p = le
        else:
            return (CFG_BAIL,)
    if not have_atoms:
        return (CFG_BAIL,)
    lattice = np.empty((3, 3))
    for i in range(9):
        lattice.flat[i] = lat[i]
    return (CFG_OK, s.p - s.base, s.nlines, lattice, positions, types, forces, site, charges,
            direct, energy if have_energy else None,
            [stress[0], stress[1], stress[2], stress[3], stress[4], stress[5]] if have_stress else None,
            virial, features)

#: status codes of parse_cfg, for the Python caller
CFG_STATUS = {"ok": CFG_OK, "more": CFG_MORE, "bail": CFG_BAIL}
