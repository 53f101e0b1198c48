"""Reading and writing MLIP-2 potential files (``.mtp``, version 1.1.0).

Reader
------
:func:`parse_mtp` / :func:`read_mtp` accept the token grammar of MLIP-2's ``MLMTPR::Load``
(mlip-formats.md §3.1)::

    MTP
    version = 1.1.0
    [potential_name = <token>]
    [scaling = <double>]
    species_count = <int>
    [potential_tag = <rest of line>]
    radial_basis_type = RBChebyshev | RBChebyshev_repuls | RBShapeev | RBTaylor
        [scaling = <double>]          multiplied into the global scaling
        min_dist = <double>
        max_dist = <double>
        radial_basis_size = <int>     R
        radial_funcs_count = <int>    K
        [radial_coeffs                C*C blocks "i-j" (i outer), K lines of R numbers each]
    alpha_moments_count = <int>
    alpha_index_basic_count = <int>
    alpha_index_basic = {{mu, a, b, c}, ...}
    alpha_index_times_count = <int>
    alpha_index_times = {{i0, i1, mult, k}, ...}
    alpha_scalar_moments = <int>
    alpha_moment_mapping = {m_1, ..., m_S}
    [species_coeffs = {...}           C numbers
     moment_coeffs = {...}]           S numbers

Keys must come in this order (as in the original, which reads the file sequentially).
Whitespace (including ``\\r`` and blank lines) between tokens is free.  As an mlip-py
convenience, ``<<< comment`` annotations (present in the upstream ``untrained_mtps``
templates, which MLIP-2 itself cannot read) are stripped up to the end of their line.
The radial block labels ``i-j`` are checked against the expected order (MLIP-2 does not
check them).  ``RBShapeev``/``RBTaylor`` files are read (the type is kept as a string) but
only the Chebyshev bases are evaluated elsewhere in mlip-py.

Every malformed file raises :class:`~mlip_py.errors.FormatError` with the path, the
1-based line and what was expected versus found; consistency is checked (list lengths
against their counts, ``radial_funcs_count == max mu + 1``, moment indices in range).

Writer
------
:func:`format_mtp` / :func:`write_mtp` reproduce ``MLMTPR::Save`` byte for byte
(mlip-formats.md §3.2): doubles ``%.15e``, tab indentation of the radial block,
``potential_tag = `` with a trailing space, the ``scaling`` line only when
``scaling != 1``, no coefficient blocks for an untrained potential, no newline at the
end of the file.  ``lossless=True`` writes doubles with ``%.16e`` (17 significant digits),
which round-trips every finite double exactly.
"""
from __future__ import annotations

import os
import re

import numpy as np

from ..errors import FormatError
from ..potential.params import MTPParams
from ._atomic import atomic_open

__all__ = ["read_mtp", "parse_mtp", "write_mtp", "format_mtp", "READ_RADIAL_BASIS_TYPES"]

#: radial basis names the reader accepts (the MLIP-2 loader's list)
READ_RADIAL_BASIS_TYPES = ("RBChebyshev", "RBChebyshev_repuls", "RBShapeev", "RBTaylor")

_WS = re.compile(r"\s*")
_TOKEN = re.compile(r"[^\s{},=]+|[{},=]")
_INT_S = r"[+-]?\d+"
_FLOAT_S = r"[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)"
_INT = re.compile(_INT_S + r"\Z")
_FLOAT = re.compile(_FLOAT_S + r"\Z")
_INT_LIST = re.compile(r"\{\s*(?:%s(?:\s*,\s*%s)*)?\s*\}" % (_INT_S, _INT_S))
_FLOAT_LIST = re.compile(r"\{\s*(?:%s(?:\s*,\s*%s)*)?\s*\}" % (_FLOAT_S, _FLOAT_S))
_QUAD = r"\{\s*%s\s*,\s*%s\s*,\s*%s\s*,\s*%s\s*\}" % ((_INT_S,) * 4)
_QUAD_LIST = re.compile(r"\{\s*(?:%s(?:\s*,\s*%s)*)?\s*\}" % (_QUAD, _QUAD))
_INT_FINDALL = re.compile(_INT_S)
_FLOAT_FINDALL = re.compile(_FLOAT_S)
_COMMENT = re.compile(r"<<<[^\n]*")


class _Scanner:
    """Sequential token reader over the file text with 1-based line numbers on demand."""

    def __init__(self, text, path, pos=0):
        self.text = text
        self.path = path
        self.pos = pos

    # ------------------------------------------------------------ helpers
    def line_at(self, pos):
        return self.text.count("\n", 0, pos) + 1

    def error(self, message, pos=None):
        return FormatError(message, self.path, self.line_at(self.pos if pos is None else pos))

    def skip_ws(self):
        self.pos = _WS.match(self.text, self.pos).end()

    def peek(self):
        """The next token (without consuming it) or None at the end of the text."""
        self.skip_ws()
        m = _TOKEN.match(self.text, self.pos)
        return m.group(0) if m else None

    def _describe(self, tok):
        return "end of file" if tok is None else repr(tok)

    def next_token(self, what):
        self.skip_ws()
        m = _TOKEN.match(self.text, self.pos)
        if m is None:
            raise self.error(f"expected {what}, found end of file")
        self.pos = m.end()
        return m.group(0), m.start()

    def expect(self, literal, what=None):
        tok = self.peek()
        if tok != literal:
            raise self.error(f"expected {what or repr(literal)}, found {self._describe(tok)}")
        self.pos += len(literal)

    def key(self, name):
        """Consume ``name =``."""
        self.expect(name, f"'{name} = ...'")
        self.expect("=", f"'=' after '{name}'")

    def value_int(self, name, minimum=None):
        tok, start = self.next_token(f"an integer value of '{name}'")
        if not _INT.match(tok):
            raise self.error(f"expected an integer value of '{name}', found {tok!r}", start)
        val = int(tok)
        if minimum is not None and val < minimum:
            raise self.error(f"'{name}' must be >= {minimum}, found {val}", start)
        return val

    def value_float(self, name):
        tok, start = self.next_token(f"a number for '{name}'")
        if not _FLOAT.match(tok):
            raise self.error(f"expected a number for '{name}', found {tok!r}", start)
        val = float(tok)
        if not np.isfinite(val):
            raise self.error(f"'{name}' = {tok} overflows a double", start)
        return val

    def rest_of_line(self):
        # spaces/tabs only: the value may be empty ("potential_tag = ")
        end = self.text.find("\n", self.pos)
        if end < 0:
            end = len(self.text)
        val = self.text[self.pos:end].strip()
        self.pos = end
        return val

    # -------------------------------------------------------------- lists
    def _slow_list(self, name, conv, conv_what, width=None):
        """Token-by-token list parse, used to locate the error when the fast path fails."""
        self.expect("{", f"'{{' opening the list '{name}'")
        items = []
        if self.peek() == "}":
            self.pos += 1
            return items
        while True:
            if width is None:
                tok, start = self.next_token(f"{conv_what} in '{name}'")
                if not conv.match(tok):
                    raise self.error(f"expected {conv_what} in '{name}', found {tok!r}", start)
                items.append(tok)
            else:
                self.expect("{", f"'{{' opening entry {len(items) + 1} of '{name}'")
                for j in range(width):
                    tok, start = self.next_token(f"an integer in entry {len(items) + 1} of '{name}'")
                    if not conv.match(tok):
                        raise self.error(f"expected an integer in entry {len(items) + 1} of "
                                         f"'{name}', found {tok!r}", start)
                    if j < width - 1:
                        nxt = self.peek()
                        if nxt != ",":
                            raise self.error(f"expected {width} integers per entry of '{name}', "
                                             f"found {self._describe(nxt)} after {j + 1}")
                        self.pos += 1
                nxt = self.peek()
                if nxt != "}":
                    raise self.error(f"expected '}}' closing entry {len(items) + 1} of '{name}' "
                                     f"({width} integers), found {self._describe(nxt)}")
                self.pos += 1
                items.append(None)
            nxt = self.peek()
            if nxt == ",":
                self.pos += 1
                continue
            if nxt == "}":
                self.pos += 1
                return items
            raise self.error(f"expected ',' or '}}' in the list '{name}', found {self._describe(nxt)}")

    def int_list(self, name):
        self.skip_ws()
        m = _INT_LIST.match(self.text, self.pos)
        if m is None:
            self._slow_list(name, _INT, "an integer")
            raise self.error(f"malformed list '{name}'")  # pragma: no cover (slow path raises)
        self.pos = m.end()
        vals = _INT_FINDALL.findall(m.group(0))
        return np.array([int(v) for v in vals], dtype=np.int64), m.start()

    def quad_list(self, name):
        self.skip_ws()
        m = _QUAD_LIST.match(self.text, self.pos)
        if m is None:
            self._slow_list(name, _INT, "an integer", width=4)
            raise self.error(f"malformed list '{name}'")  # pragma: no cover
        self.pos = m.end()
        vals = _INT_FINDALL.findall(m.group(0))
        arr = np.array(vals, dtype=np.int64) if vals else np.zeros(0, dtype=np.int64)
        return arr.reshape(-1, 4), m.start()

    def float_list(self, name):
        self.skip_ws()
        m = _FLOAT_LIST.match(self.text, self.pos)
        if m is None:
            self._slow_list(name, _FLOAT, "a number")
            raise self.error(f"malformed list '{name}'")  # pragma: no cover
        self.pos = m.end()
        vals = np.array([float(v) for v in _FLOAT_FINDALL.findall(m.group(0))], dtype=np.float64)
        if not np.isfinite(vals).all():
            raise self.error(f"a number in '{name}' overflows a double", m.start())
        return vals, m.start()


def read_mtp(path):
    """Read a ``.mtp`` potential file (see the module docstring for the grammar).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    MTPParams
        Untrained files give ``radial_coeffs = species_coeffs = moment_coeffs = None``.

    Raises
    ------
    FormatError
        Malformed or inconsistent file (message ``"path:line: ..."``).
    OSError
        The file cannot be read.
    """
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise FormatError(f"not a text file (undecodable byte at offset {err.start})",
                          path, line) from None
    return parse_mtp(text, path=os.fspath(path))


def parse_mtp(text, path=None):
    """Parse the text of a ``.mtp`` file; ``path`` is only used in error messages.

    Returns
    -------
    MTPParams
    """
    where = path if path is not None else "<mtp>"
    if "<<<" in text:  # upstream template annotations (mlip-py convenience)
        text = _COMMENT.sub("", text)
    # header: line 1 "MTP", line 2 "version = 1.1.0"
    nl1 = text.find("\n")
    line1 = text if nl1 < 0 else text[:nl1]
    if line1.strip() != "MTP":
        raise FormatError(f"expected 'MTP' on the first line, found {line1.strip()!r}", where, 1)
    if nl1 < 0:
        raise FormatError('MTP file must have version "1.1.0": found end of file', where, 2)
    nl2 = text.find("\n", nl1 + 1)
    line2 = text[nl1 + 1:] if nl2 < 0 else text[nl1 + 1:nl2]
    if re.fullmatch(r"\s*version\s*=\s*1\.1\.0\s*", line2) is None:
        raise FormatError(f'MTP file must have version "1.1.0": expected "version = 1.1.0", '
                          f"found {line2.strip()!r}", where, 2)
    sc = _Scanner(text, where, len(text) if nl2 < 0 else nl2 + 1)

    kw = {}
    scaling = 1.0
    if sc.peek() == "potential_name":
        sc.key("potential_name")
        kw["potential_name"], _ = sc.next_token("a value of 'potential_name'")
    if sc.peek() == "scaling":
        sc.key("scaling")
        scaling = sc.value_float("scaling")
    sc.key("species_count")
    c = kw["species_count"] = sc.value_int("species_count", minimum=1)
    if sc.peek() == "potential_tag":
        sc.key("potential_tag")
        kw["potential_tag"] = sc.rest_of_line()
    sc.key("radial_basis_type")
    rbt, start = sc.next_token("a radial basis type")
    if rbt not in READ_RADIAL_BASIS_TYPES:
        raise sc.error(f"unknown radial_basis_type {rbt!r} (expected one of "
                       f"{', '.join(READ_RADIAL_BASIS_TYPES)})", start)
    kw["radial_basis_type"] = rbt
    if sc.peek() == "scaling":
        sc.key("scaling")
        scaling *= sc.value_float("scaling")
    kw["scaling"] = scaling
    sc.key("min_dist")
    kw["min_dist"] = sc.value_float("min_dist")
    sc.key("max_dist")
    start = sc.pos
    kw["max_dist"] = sc.value_float("max_dist")
    if not kw["max_dist"] > kw["min_dist"]:
        raise sc.error(f"max_dist ({kw['max_dist']:g}) must be larger than min_dist "
                       f"({kw['min_dist']:g})", start)
    sc.key("radial_basis_size")
    r = kw["radial_basis_size"] = sc.value_int("radial_basis_size", minimum=1)
    sc.key("radial_funcs_count")
    kfun_pos = sc.pos
    k = kw["radial_funcs_count"] = sc.value_int("radial_funcs_count", minimum=1)

    radial = None
    if sc.peek() == "radial_coeffs":
        sc.next_token("radial_coeffs")
        radial = np.empty((c, c, k, r))
        for i in range(c):
            for j in range(c):
                label, start = sc.next_token(f"the radial coefficient block label '{i}-{j}'")
                if label != f"{i}-{j}":
                    raise sc.error(f"expected the radial coefficient block label '{i}-{j}', "
                                   f"found {label!r}", start)
                for mu in range(k):
                    vals, start = sc.float_list(f"radial_coeffs {i}-{j}")
                    if vals.size != r:
                        raise sc.error(f"expected {r} radial coefficients (radial_basis_size) in "
                                       f"line {mu + 1} of block {i}-{j}, found {vals.size}", start)
                    radial[i, j, mu] = vals

    sc.key("alpha_moments_count")
    nmom_pos = sc.pos
    nmom = sc.value_int("alpha_moments_count", minimum=1)
    sc.key("alpha_index_basic_count")
    nbasic = sc.value_int("alpha_index_basic_count", minimum=1)
    sc.key("alpha_index_basic")
    basic, start = sc.quad_list("alpha_index_basic")
    if len(basic) != nbasic:
        raise sc.error(f"alpha_index_basic_count = {nbasic} but alpha_index_basic has "
                       f"{len(basic)} entries", start)
    if (basic < 0).any():
        raise sc.error("alpha_index_basic entries {mu, a, b, c} must be non-negative", start)
    if basic[:, 0].max() + 1 != k:
        raise FormatError(f"Wrong number of radial functions specified: radial_funcs_count = {k}"
                          f" but alpha_index_basic uses mu up to {basic[:, 0].max()} (expected "
                          f"radial_funcs_count = {basic[:, 0].max() + 1})", where,
                          sc.line_at(kfun_pos))
    if nmom < nbasic:
        raise FormatError(f"alpha_moments_count = {nmom} is smaller than alpha_index_basic_count"
                          f" = {nbasic}", where, sc.line_at(nmom_pos))
    sc.key("alpha_index_times_count")
    ntimes = sc.value_int("alpha_index_times_count", minimum=0)
    sc.key("alpha_index_times")
    times, start = sc.quad_list("alpha_index_times")
    if len(times) != ntimes:
        raise sc.error(f"alpha_index_times_count = {ntimes} but alpha_index_times has "
                       f"{len(times)} entries", start)
    if len(times):
        bad = np.flatnonzero((times[:, [0, 1, 3]].min(axis=1) < 0)
                             | (times[:, [0, 1, 3]].max(axis=1) >= nmom)
                             | (times[:, 3] < nbasic))
        if bad.size:
            raise sc.error(f"alpha_index_times entry {bad[0] + 1} {tuple(times[bad[0]].tolist())}:"
                           f" moment indices must be in 0..{nmom - 1} and the target >= "
                           f"{nbasic} (alpha_index_basic_count)", start)
    sc.key("alpha_scalar_moments")
    nscalar = sc.value_int("alpha_scalar_moments", minimum=1)
    sc.key("alpha_moment_mapping")
    mapping, start = sc.int_list("alpha_moment_mapping")
    if len(mapping) != nscalar:
        raise sc.error(f"alpha_scalar_moments = {nscalar} but alpha_moment_mapping has "
                       f"{len(mapping)} entries", start)
    if (mapping < 0).any() or (mapping >= nmom).any():
        raise sc.error(f"alpha_moment_mapping entries must be in 0..{nmom - 1}", start)

    species = moments = None
    tok = sc.peek()
    if tok == "species_coeffs":
        sc.key("species_coeffs")
        species, start = sc.float_list("species_coeffs")
        if species.size != c:
            raise sc.error(f"expected {c} species_coeffs (species_count), found {species.size}",
                           start)
        sc.key("moment_coeffs")
        moments, start = sc.float_list("moment_coeffs")
        if moments.size != nscalar:
            raise sc.error(f"expected {nscalar} moment_coeffs (alpha_scalar_moments), found "
                           f"{moments.size}", start)
        tok = sc.peek()
    if tok is not None:
        raise sc.error(f"unexpected {tok!r} after the end of the potential"
                       + ("" if species is not None else " (expected 'species_coeffs' or end of file)"))
    return MTPParams(alpha_moments_count=nmom, alpha_index_basic=basic, alpha_index_times=times,
                     alpha_moment_mapping=mapping, radial_coeffs=radial, species_coeffs=species,
                     moment_coeffs=moments, **kw)


def _int_quads(arr):
    return "{" + ", ".join("{%d, %d, %d, %d}" % tuple(row) for row in arr.tolist()) + "}"


def format_mtp(params, lossless=False):
    """Text of a ``.mtp`` file in MLIP-2's layout (no newline at the end).

    Parameters
    ----------
    params : MTPParams
    lossless : bool
        Write doubles with 17 significant digits (``%.16e``) instead of MLIP-2's ``%.15e``.
    """
    p = params
    fmt = "%.16e" if lossless else "%.15e"

    def flist(values):
        return "{" + ", ".join(fmt % v for v in np.asarray(values, dtype=float).ravel().tolist()) + "}"

    out = ["MTP", "version = 1.1.0", f"potential_name = {p.potential_name}"]
    if p.scaling != 1.0:
        out.append("scaling = " + fmt % p.scaling)
    out.append(f"species_count = {p.species_count}")
    out.append(f"potential_tag = {p.potential_tag}")
    out.append(f"radial_basis_type = {p.radial_basis_type}")
    out.append("\tmin_dist = " + fmt % p.min_dist)
    out.append("\tmax_dist = " + fmt % p.max_dist)
    out.append(f"\tradial_basis_size = {p.radial_basis_size}")
    out.append(f"\tradial_funcs_count = {p.radial_funcs_count}")
    trained = p.radial_coeffs is not None
    if trained:
        out.append("\tradial_coeffs")
        rc = np.asarray(p.radial_coeffs, dtype=float)
        for i in range(p.species_count):
            for j in range(p.species_count):
                out.append(f"\t\t{i}-{j}")
                for mu in range(p.radial_funcs_count):
                    out.append("\t\t\t" + flist(rc[i, j, mu]))
    basic = np.asarray(p.alpha_index_basic, dtype=np.int64).reshape(-1, 4)
    times = np.asarray(p.alpha_index_times, dtype=np.int64).reshape(-1, 4)
    mapping = np.asarray(p.alpha_moment_mapping, dtype=np.int64).ravel()
    out.append(f"alpha_moments_count = {p.alpha_moments_count}")
    out.append(f"alpha_index_basic_count = {len(basic)}")
    out.append("alpha_index_basic = " + _int_quads(basic))
    out.append(f"alpha_index_times_count = {len(times)}")
    out.append("alpha_index_times = " + _int_quads(times))
    out.append(f"alpha_scalar_moments = {len(mapping)}")
    out.append("alpha_moment_mapping = {" + ", ".join(map(str, mapping.tolist())) + "}")
    if trained and p.species_coeffs is not None and p.moment_coeffs is not None:
        out.append("species_coeffs = " + flist(p.species_coeffs))
        out.append("moment_coeffs = " + flist(p.moment_coeffs))
    return "\n".join(out)


def write_mtp(path, params, lossless=False):
    """Write ``params`` to ``path`` atomically in MLIP-2's layout (see :func:`format_mtp`)."""
    text = format_mtp(params, lossless=lossless)
    with atomic_open(path, "w", newline="") as fh:
        fh.write(text)
