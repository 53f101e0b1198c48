"""MLIP-2 text configuration files (``.cfg``): streaming reader and byte-exact writer.

Reading (:func:`iter_cfg`, :func:`read_cfg`)
    Everything MLIP-2's ``Configuration::Load`` accepts (mlip-formats.md §1.1, §1.8):
    ``BEGIN_CFG ... END_CFG`` blocks with ``Size``, ``Supercell``/``SuperCell`` (0-3 lattice
    rows), ``AtomData:``/``Atomic_data:`` (columns ``id type cartes_*|direct_* fx fy fz
    site_en charge`` in any order; fractional coordinates are converted with the lattice
    exactly as MLIP does, ``pos = 0 + f0*a0 + f1*a1 + f2*a2``), ``Energy``, ``PlusStress:``,
    ``Virial:`` (multiplied by ``1/|det L|`` like MLIP), ``Feature key<sep>value`` (key
    unescaped, repeated keys appended with a newline), the legacy ``Features:`` block, and
    the old ``BEGIN ... END`` format.  A configuration whose first non-blank character is
    ``n`` is a binary record (:mod:`mlip_py.io.cfgbin`), as in MLIP.  ``Stress:`` (the old
    negative convention) is rejected, as MLIP-2 does.

    The file is read block by block (:data:`mlip_py.io.cfgbin.BLOCK_SIZE`), so memory is
    bounded by one configuration plus one block whatever the file size.  Numbers accept
    every syntax of Python's ``float()`` and convert bit-exactly like it; ``-0.0`` and the
    sign of NaN are kept so that writing back reproduces ``-0.000000`` and ``-nan``.

    Deviations from MLIP's token-based reader, all in the direction of clearer errors:
    each atom row must be on one line, a ``Feature`` key must be on the ``Feature`` line,
    the number of ``Supercell`` numbers must be 3, 6 or 9, stress components must be
    known names and their count must match the values on the line, ``Size`` without an
    ``AtomData`` block is an error.  Every error is a :class:`~mlip_py.errors.FormatError`
    with the file, the 1-based line and what was expected versus found.

Writing (:func:`format_cfg`, :func:`write_cfg`)
    Byte-identical to MLIP-2's ``Configuration::Save`` (mlip-formats.md §1.2): fixed-point
    fields (lattice ``%13.6f``, id ``%10d``, type ``%4d``, positions ``%13.6f``, site
    energies ``%17.12f``, forces ``%11.6f``, charges ``%8.4f``, energy ``%20.12f``,
    stress ``%11.5f``) with C ``printf`` semantics, Supercell rows up to the last non-zero
    one, features sorted by the UTF-8 bytes of their keys with keys escaped (space ``\\_``,
    TAB ``\\t``, LF ``\\n``, CR ``\\r``), multi-line values as repeated ``Feature`` lines,
    empty keys/values skipped, and an empty line after ``END_CFG``.  ``lossless=True``
    gives MLIP's lossless layout (``%.16e`` everywhere, single spaces), which round-trips
    every double bit-exactly.
"""
from __future__ import annotations

import dataclasses
import io
import math
import os
import re

import numpy as np

from ..configuration import Configuration
from ..errors import FormatError
from ._atomic import atomic_open
from .cfgbin import BLOCK_SIZE, ByteSource, read_record, source_name

__all__ = ["iter_cfg", "read_cfg", "write_cfg", "format_cfg", "format_cfg_bytes"]

_kernel_mod = None


def _k():
    global _kernel_mod
    if _kernel_mod is None:
        from .._cext import load

        _kernel_mod = load("_cfgparse")
    return _kernel_mod


_TOK = re.compile(rb"[^ \t\n\r\v\f]+")

# AtomData columns
_POS_CART = (b"cartes_x", b"cartes_y", b"cartes_z")
_POS_DIRECT = (b"direct_x", b"direct_y", b"direct_z")
_FORCE = (b"fx", b"fy", b"fz")
_KNOWN_COLUMNS = (b"id", b"type") + _POS_CART + _POS_DIRECT + _FORCE + (b"site_en", b"charge")
# stress component -> index in plus_stress (xx yy zz yz xz xy)
_STRESS_INDEX = {b"xx": 0, b"yy": 1, b"zz": 2, b"yz": 3, b"xz": 4, b"xy": 5}
_FIELDS = "Size, Supercell, AtomData:, Energy, PlusStress:, Virial:, Feature, Features: or END_CFG"
_KEYWORDS = {b"Size", b"Supercell", b"SuperCell", b"AtomData:", b"Atomic_data:", b"Energy",
             b"PlusStress:", b"Virial:", b"Stress:", b"Feature", b"Features:", b"END_CFG",
             b"BEGIN_CFG"}
_UNESCAPE = {"_": " ", "t": "\t", "n": "\n", "r": "\r"}
_ESCAPE = str.maketrans({" ": "\\_", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _show(tok):
    """A token as it appears in the file, for messages."""
    return repr(tok.decode("utf-8", "replace")) if isinstance(tok, bytes) else repr(tok)


def unescape_key(key):
    """Undo MLIP's feature-key escaping (``\\_`` space, ``\\t``, ``\\n``, ``\\r``)."""
    i = key.find("\\")
    while i >= 0:
        rep = _UNESCAPE.get(key[i + 1:i + 2])
        if rep is not None:
            key = key[:i] + rep + key[i + 2:]
        i = key.find("\\", i + 1)
    return key


def escape_key(key):
    """MLIP's feature-key escaping (a backslash itself is not escaped)."""
    return key.translate(_ESCAPE)


def _det(lat):
    """``det(L)`` evaluated like MLIP's Matrix3::det (cofactor expansion along row 0)."""
    (a, b, c), (d, e, f), (g, h, i) = lat.tolist()
    return a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)


# ------------------------------------------------------------------------------ reader
class _TextParser:
    """Token/line reader over a :class:`ByteSource` producing configurations."""

    def __init__(self, src):
        self.src = src
        self.name = src.name
        self.line = b""
        self.cur = 0
        self.line_no = 0

    # -- low level ------------------------------------------------------------------
    def _err(self, msg, line=None):
        return FormatError(msg, self.name, self.line_no if line is None else line)

    def _next_line(self):
        no = self.src.lineno + 1
        raw = self.src.readline()
        if raw is None:
            return False
        self.line = raw
        self.cur = 0
        self.line_no = no
        return True

    def token(self):
        """Next whitespace-separated token (crossing lines) or None at end of file."""
        while True:
            m = _TOK.search(self.line, self.cur)
            if m is not None:
                self.cur = m.end()
                return m.group()
            if not self._next_line():
                return None

    def peek(self):
        """Next token without consuming it (None at end of file)."""
        while True:
            m = _TOK.search(self.line, self.cur)
            if m is not None:
                self.cur = m.start()
                return m.group()
            if not self._next_line():
                return None

    def rest(self):
        """The rest of the current line (consumed)."""
        s = self.line[self.cur:]
        self.cur = len(self.line)
        return s

    def _need(self, what, start):
        tok = self.token()
        if tok is None:
            raise self._err(
                f"file ends inside the configuration starting at line {start}: expected {what}")
        return tok

    def _float(self, what, start):
        tok = self._need(what, start)
        try:
            return float(tok)
        except ValueError:
            raise self._err(f"expected {what} (a number), found {_show(tok)}") from None

    def _numbers(self, limit=None):
        """Consume tokens while they are numbers (at most ``limit``)."""
        out = []
        while limit is None or len(out) < limit:
            tok = self.peek()
            if tok is None:
                break
            try:
                v = float(tok)
            except ValueError:
                break
            self.token()
            out.append(v)
        return out

    # -- configurations -------------------------------------------------------------
    def read_one(self):
        """The next configuration, or None at the end of the file."""
        if _TOK.search(self.line, self.cur) is None:
            src = self.src
            c = src.skip_space()
            if c < 0:
                return None
            if c == 0x6E:  # 'n': binary record
                self.line = b""
                self.cur = 0
                return read_record(src)
            if c == 0x42:  # 'B': try the fast path for the common layout first
                cfg = self._read_fast()
                if cfg is not None:
                    return cfg
            self._next_line()
        tok = self.token()
        start = self.line_no
        if tok == b"BEGIN_CFG":
            return self._read_new(start)
        if tok == b"BEGIN":
            return self._read_old(start)
        raise self._err(f"expected BEGIN_CFG at the start of a configuration, found {_show(tok)}")

    def _read_fast(self):
        """Whole-configuration fast path (kernel ``parse_cfg``); None if it declines."""
        k = _k()
        src = self.src
        ok, more = k.CFG_STATUS["ok"], k.CFG_STATUS["more"]
        while True:
            res = k.parse_cfg(src.buf, src.pos, src.eof)
            if res[0] == more:
                if not src.more():
                    continue  # now at EOF: the kernel decides with at_eof set
                continue
            if res[0] != ok:
                return None
            break
        (_, end, nlines, lattice, positions, types, forces, site, charges, direct, energy,
         stress, virial, features) = res
        start = src.lineno + 1
        src.pos = end
        src.lineno += nlines
        self.line = b""
        self.cur = 0
        self.line_no = src.lineno
        if direct:
            d = _det(lattice)
            if d == 0.0:
                raise FormatError("non-periodic cell (det(Supercell) = 0) and fractional "
                                  "(direct_*) coordinates: incompatible", self.name, start)
            positions = _frac_to_cart(positions, lattice)
        feats = {}
        for kb, vb in features:
            key = unescape_key(kb.decode("utf-8", "surrogateescape"))
            value = vb.decode("utf-8", "surrogateescape")
            if key in feats:
                feats[key] += "\n" + value
            else:
                feats[key] = value
        if stress is not None:
            stress = np.array(stress)
            if virial:
                stress *= _inv_abs(_det(lattice))
        return _new_cfg(lattice, positions, types, energy, forces, stress, site, charges, feats)

    def _read_new(self, start):
        size = None
        lattice = np.zeros((3, 3))
        table = None
        columns = None
        energy = None
        stress = None
        virial = False
        features = {}
        while True:
            tok = self._need("END_CFG", start)
            if tok == b"Size":
                t = self._need("the number of atoms after Size", start)
                try:
                    n = int(t)
                except ValueError:
                    raise self._err(f"Size: expected a non-negative integer, found {_show(t)}") from None
                if n < 0:
                    raise self._err(f"Size: expected a non-negative integer, found {n}")
                if size is not None and n != size:
                    raise self._err(f"Size {n} does not match the earlier Size {size} of this configuration")
                size = n
            elif tok == b"Supercell" or tok == b"SuperCell":
                line = self.line_no
                vals = self._numbers(9)
                if len(vals) % 3:
                    raise self._err(
                        f"Supercell: expected 0, 3, 6 or 9 numbers (0 to 3 lattice rows), found "
                        f"{len(vals)}", line)
                lattice = np.zeros((3, 3))
                lattice.flat[:len(vals)] = vals
            elif tok == b"AtomData:" or tok == b"Atomic_data:":
                if size is None:
                    raise self._err("AtomData: before Size (the number of atoms must be given first)")
                columns = self.rest().split()
                table = self._read_atoms(size, columns)
            elif tok == b"Energy":
                energy = self._float("the energy after Energy", start)
            elif tok == b"PlusStress:" or tok == b"Virial:":
                virial = tok == b"Virial:"
                stress = self._read_stress(tok, start)
            elif tok == b"Feature":
                key, value = self._read_feature()
                if key in features:
                    features[key] += "\n" + value
                else:
                    features[key] = value
            elif tok == b"Features:":
                keys = self.rest().split()
                for k in keys:
                    v = self._need(f"the value of feature {_show(k)}", start)
                    features[k.decode("utf-8", "surrogateescape")] = v.decode("utf-8", "surrogateescape")
            elif tok == b"END_CFG":
                break
            elif tok == b"Stress:":
                raise self._err(
                    "'Stress:' (the old negative-stress convention) is not accepted (MLIP-2 rejects "
                    "it too): write the block as 'PlusStress:' with every value negated "
                    "(PlusStress = -Stress = virial in eV, positive under compression)")
            elif tok == b"BEGIN_CFG":
                raise self._err(f"BEGIN_CFG inside the configuration starting at line {start}: "
                                f"expected END_CFG first")
            else:
                hint = ""
                try:
                    float(tok)
                    hint = (" (a stray number: more AtomData rows than Size, or more values than "
                            "the block header lists?)")
                except ValueError:
                    pass
                raise self._err(f"unknown field {_show(tok)} in the configuration starting at line "
                                f"{start}: expected {_FIELDS}{hint}")
        return self._finish(start, size, lattice, table, columns, energy, stress, virial, features)

    def _read_stress(self, tok, start):
        header_line = self.line_no
        tok = tok.rstrip(b":")
        keys = self.rest().split()
        idx = []
        for k in keys:
            if k not in _STRESS_INDEX:
                raise self._err(f"{tok.decode()}: unknown stress component {_show(k)} "
                                f"(expected xx yy zz yz xz xy)", header_line)
            idx.append(_STRESS_INDEX[k])
        ps = np.zeros(6)
        for k, i in zip(keys, idx):
            ps[i] = self._float(f"the {k.decode()} value of {tok.decode()}", start)
        extra = _TOK.search(self.line, self.cur)
        if idx and extra is not None:
            raise self._err(f"{tok.decode()}: the header lists {len(keys)} components but the "
                            f"value line has more values (found {_show(extra.group())})")
        return ps

    def _read_feature(self):
        m = _TOK.search(self.line, self.cur)
        if m is None:
            raise self._err("Feature without a key (expected 'Feature <key><TAB><value>')")
        key = unescape_key(m.group().decode("utf-8", "surrogateescape"))
        value = self.line[m.end() + 1:] if m.end() < len(self.line) else b""
        self.cur = len(self.line)
        return key, value.decode("utf-8", "surrogateescape")

    def _read_atoms(self, size, columns):
        """Parse ``size`` atom rows into a float64 table (one column per header keyword)."""
        header_line = self.line_no
        seen = set()
        for c in columns:
            if c not in _KNOWN_COLUMNS:
                raise self._err(f"unknown AtomData column {_show(c)} (known: "
                                f"{' '.join(x.decode() for x in _KNOWN_COLUMNS)})", header_line)
            if c in seen:
                raise self._err(f"AtomData column {_show(c)} given twice (wrong atom position "
                                f"or force information)", header_line)
            seen.add(c)
        ncart = sum(c in seen for c in _POS_CART)
        ndir = sum(c in seen for c in _POS_DIRECT)
        if ncart == 0 and ndir == 0:
            raise self._err("AtomData: no atom positions (need the columns cartes_x cartes_y "
                            "cartes_z or direct_x direct_y direct_z)", header_line)
        if not ((ncart == 3 and ndir == 0) or (ndir == 3 and ncart == 0)):
            raise self._err("AtomData: wrong atom position information (need all three of "
                            "cartes_x cartes_y cartes_z, or of direct_x direct_y direct_z)", header_line)
        nf = sum(c in seen for c in _FORCE)
        if nf not in (0, 3):
            raise self._err("AtomData: wrong force information (need all three of fx fy fz)", header_line)

        k = _k()
        st_done, st_more, st_token = k.STATUS["done"], k.STATUS["more"], k.STATUS["token"]
        st_short, st_long = k.STATUS["short"], k.STATUS["long"]
        src = self.src
        ncols = len(columns)
        table = np.empty((size, ncols))
        first_line = src.lineno + 1
        row = col = 0
        if ncols == 0 and size > 0:
            raise self._err("AtomData: no columns", header_line)
        while size > 0:
            st, pos, row, col, nl, tend = k.parse_rows(src.buf, src.pos, src.eof, table, row, col)
            src.lineno += nl
            src.pos = pos
            if st == st_done:
                break
            if st == st_more:
                src.more()
                continue
            line = src.lineno + 1
            what = f"AtomData row {row + 1} of {size} (columns: {b' '.join(columns).decode()})"
            if st == st_token:
                tok = src.buf[pos:tend]
                try:
                    table[row, col] = float(tok)
                except ValueError:
                    hint = ""
                    if tok in _KEYWORDS:
                        hint = f"; the block has fewer rows than Size {size}"
                    raise FormatError(f"{what}: expected a number for column "
                                      f"{columns[col].decode()}, found {_show(tok)}{hint}",
                                      self.name, line) from None
                src.pos = tend
                col += 1
                continue
            if st == st_short:
                raise FormatError(f"{what}: expected {ncols} values, found {col}", self.name, line)
            if st == st_long:
                raise FormatError(f"{what}: expected {ncols} values, found more "
                                  f"({_show(src.buf[pos:tend])} is extra)", self.name, line)
            raise FormatError(f"file ends after {row} of {size} AtomData rows", self.name, line)
        # the current line is the last atom row (or the header)
        self.line = b""
        self.cur = 0
        self.line_no = src.lineno
        self._check_int_columns(table, columns, first_line)
        return table

    def _check_int_columns(self, table, columns, first_line):
        for name in (b"id", b"type"):
            if name not in columns:
                continue
            v = table[:, columns.index(name)]
            if name == b"id":
                bad = np.flatnonzero(v != np.arange(1, len(v) + 1))
                if len(bad):
                    i = int(bad[0])
                    raise FormatError(f"AtomData: wrong order of ids: row {i + 1} has id "
                                      f"{v[i]:g}, expected {i + 1}", self.name, first_line + i)
            else:
                bad = np.flatnonzero((v != np.rint(v)) | (np.abs(v) > 2**31 - 1))
                if len(bad):
                    i = int(bad[0])
                    raise FormatError(f"AtomData row {i + 1}: type must be an integer, found "
                                      f"{v[i]!r}", self.name, first_line + i)

    def _finish(self, start, size, lattice, table, columns, energy, stress, virial, features):
        end_line = self.line_no
        if table is None:
            if size:
                raise self._err(f"configuration starting at line {start} has Size {size} but no "
                                f"AtomData block", end_line)
            cfg = Configuration(lattice=lattice)
            cfg.energy = energy
            cfg.plus_stress = stress
            cfg.features = features
            if virial and stress is not None:
                stress *= _inv_abs(_det(lattice))
            return cfg
        col = {c: i for i, c in enumerate(columns)}
        n = size
        if b"cartes_x" in col:
            pos = table[:, [col[b"cartes_x"], col[b"cartes_y"], col[b"cartes_z"]]]
        else:
            d = _det(lattice)
            if d == 0.0:
                raise self._err("non-periodic cell (det(Supercell) = 0) and fractional "
                                "(direct_*) coordinates: incompatible", end_line)
            pos = _frac_to_cart(table[:, [col[b"direct_x"], col[b"direct_y"], col[b"direct_z"]]],
                                lattice)
        types = table[:, col[b"type"]].astype(np.int64) if b"type" in col else np.zeros(n, np.int64)
        cfg = Configuration(lattice=lattice, positions=pos, types=types)
        if b"fx" in col:
            cfg.forces = table[:, [col[b"fx"], col[b"fy"], col[b"fz"]]]
        if b"site_en" in col:
            cfg.site_energies = np.ascontiguousarray(table[:, col[b"site_en"]])
        if b"charge" in col:
            cfg.charges = np.ascontiguousarray(table[:, col[b"charge"]])
        cfg.energy = energy
        if virial and stress is not None:
            stress *= _inv_abs(_det(lattice))
        cfg.plus_stress = stress
        cfg.features = features
        return cfg

    # -- old format -----------------------------------------------------------------
    def _read_old(self, start):
        size = 0
        lattice = None
        pos, forces, types, site, charges = [], [], [], [], []
        energy = None
        stress = None
        features = {}
        have_pos = have_types = False
        while True:
            tok = self._need("END", start)
            line = self.line_no
            if tok == b"Size":
                t = self._need("the number of atoms after Size", start)
                try:
                    size = int(t)
                except ValueError:
                    raise self._err(f"Size: expected an integer, found {_show(t)}") from None
            elif tok == b"Lattice":
                vals = self._numbers(9)
                if len(vals) != 9:
                    raise self._err(f"Lattice: expected 9 numbers, found {len(vals)}", line)
                lattice = np.array(vals).reshape(3, 3)
            elif tok in (b"AtmData", b"AtomData"):
                vals = self._numbers()
                if len(vals) % 6:
                    raise self._err(f"{tok.decode()}: expected 6 numbers per atom (x y z fx fy fz), "
                                    f"found {len(vals)} numbers", line)
                a = np.array(vals).reshape(-1, 6)
                pos.extend(a[:, :3])
                forces.extend(a[:, 3:])
                have_pos = True
            elif tok == b"AtomPos":
                vals = self._numbers()
                if len(vals) % 3:
                    raise self._err(f"AtomPos: expected 3 numbers per atom, found {len(vals)}", line)
                pos.extend(np.array(vals).reshape(-1, 3))
                have_pos = True
            elif tok == b"AtomForces":
                vals = self._numbers()
                if len(vals) % 3:
                    raise self._err(f"AtomForces: expected 3 numbers per atom, found {len(vals)}", line)
                forces.extend(np.array(vals).reshape(-1, 3))
            elif tok == b"AtomTypes":
                vals = self._numbers()
                if any(v != int(v) for v in vals):
                    raise self._err("AtomTypes: expected integers", line)
                types.extend(int(v) for v in vals)
                have_types = True
            elif tok == b"SiteEnergies":
                site.extend(self._numbers())
            elif tok == b"Charges":
                charges.extend(self._numbers())
            elif tok == b"Energy":
                energy = self._float("the energy after Energy", start)
            elif tok in (b"MinusStress", b"VirialStress", b"Stress"):
                vals = self._numbers(6)
                if len(vals) != 6:
                    raise self._err(f"{tok.decode()}: expected 6 numbers (xx yy zz xy yz xz), "
                                    f"found {len(vals)}", line)
                xx, yy, zz, xy, yz, xz = vals
                stress = np.array([xx, yy, zz, yz, xz, xy])
                if tok != b"MinusStress":
                    stress = -stress
            elif tok == b"MinusStress9":
                vals = self._numbers(9)
                if len(vals) != 9:
                    raise self._err(f"MinusStress9: expected 9 numbers, found {len(vals)}", line)
                m = np.array(vals).reshape(3, 3)
                stress = np.array([m[0, 0], m[1, 1], m[2, 2], m[1, 2], m[0, 2], m[0, 1]])
            elif tok == b"Feature":
                k = self._need("a feature name", start)
                v = self._need("a feature value", start)
                features[k.decode("utf-8", "surrogateescape")] = v.decode("utf-8", "surrogateescape")
            elif tok == b"END":
                break
            else:
                raise self._err(f"unknown field {_show(tok)} in the old-format configuration "
                                f"starting at line {start}")
        if lattice is None or not have_pos:
            raise self._err(f"old-format configuration starting at line {start} has no "
                            f"{'Lattice' if lattice is None else 'atom positions'}")
        if size == 0:
            size = len(pos)
        for what, arr, required in (("positions", pos, True), ("types", types, have_types),
                                    ("forces", forces, bool(forces)), ("site energies", site, bool(site)),
                                    ("charges", charges, bool(charges))):
            if required and len(arr) != size:
                raise self._err(f"old-format configuration starting at line {start}: Size {size} "
                                f"but {len(arr)} {what}")
        cfg = Configuration(lattice=lattice, positions=np.array(pos).reshape(-1, 3),
                            types=types if have_types else np.zeros(size, np.int64))
        if forces:
            cfg.forces = np.array(forces).reshape(-1, 3)
        if site:
            cfg.site_energies = np.array(site)
        if charges:
            cfg.charges = np.array(charges)
        cfg.energy = energy
        cfg.plus_stress = stress
        cfg.features = features
        return cfg


def _frac_to_cart(frac, lattice):
    """``pos = 0 + f0*a0 + f1*a1 + f2*a2`` in MLIP's evaluation order (bit-identical)."""
    return ((0.0 + frac[:, 0:1] * lattice[0]) + frac[:, 1:2] * lattice[1]) + frac[:, 2:3] * lattice[2]


_CFG_FIELDS = dataclasses.fields(Configuration)


def _new_cfg(lattice, positions, types, energy, forces, stress, site, charges, features):
    """A Configuration from arrays already validated and owned (skips the copying __init__)."""
    cfg = object.__new__(Configuration)
    values = {"lattice": lattice, "positions": positions, "types": types, "energy": energy,
              "forces": forces, "plus_stress": stress, "site_energies": site, "charges": charges,
              "features": features}
    for f in _CFG_FIELDS:
        if f.name in values:
            object.__setattr__(cfg, f.name, values[f.name])
        elif f.default_factory is not dataclasses.MISSING:
            object.__setattr__(cfg, f.name, f.default_factory())
        else:
            object.__setattr__(cfg, f.name, f.default)
    return cfg


def _inv_abs(d):
    d = abs(d)
    return math.inf if d == 0.0 else 1.0 / d


def _open_in(path_or_file):
    if isinstance(path_or_file, (str, os.PathLike)):
        try:
            return open(path_or_file, "rb"), True
        except IsADirectoryError:
            raise FormatError("is a directory, expected a configuration file", path_or_file) from None
    return path_or_file, False


def iter_cfg(path_or_file, block_size=None):
    """Yield the configurations of a cfg file one at a time (streaming, bounded memory).

    Parameters
    ----------
    path_or_file : str, os.PathLike or file object
        A path, a binary file object, or a text file object (e.g. ``io.StringIO``).
        Binary records inside the file are detected and read (as MLIP-2 does).
    block_size : int, optional
        Bytes read per block (default :data:`mlip_py.io.cfgbin.BLOCK_SIZE`).

    Yields
    ------
    Configuration

    Raises
    ------
    FormatError
        With the file name, the 1-based line and what was expected versus found.
    """
    fh, own = _open_in(path_or_file)
    src = ByteSource(fh, source_name(path_or_file), block_size)
    parser = _TextParser(src)
    try:
        while True:
            cfg = parser.read_one()
            if cfg is None:
                return
            yield cfg
    finally:
        src.close()
        if own:
            fh.close()


def read_cfg(path_or_file):
    """All configurations of a cfg file as a list (see :func:`iter_cfg`)."""
    return list(iter_cfg(path_or_file))


# ------------------------------------------------------------------------------ writer
_ATOM_HEADER = b" AtomData:  id type       cartes_x      cartes_y      cartes_z"
_STRESS_HEADER = b" PlusStress:  xx          yy          zz          yz          xz          xy\n"


def _f64(a):
    return None if a is None else np.ascontiguousarray(a, dtype=np.float64)


def format_cfg_bytes(cfg, lossless=False):
    """One configuration in MLIP-2's text layout, as UTF-8 bytes (see :func:`format_cfg`)."""
    k = _k()
    if lossless:
        sci = k.format_sci

        def num(x, width, prec):
            return sci(x)
    else:
        num = k.format_fixed
    out = [b"BEGIN_CFG\n Size\n    %d\n" % len(cfg)]
    rows = np.asarray(cfg.lattice, dtype=np.float64).tolist()
    count = 0
    for a, (x, y, z) in enumerate(rows):
        if x != 0.0 or y != 0.0 or z != 0.0:
            count = a + 1
    if count:
        out.append(b" Supercell\n")
        for x, y, z in rows[:count]:
            out.append(b"    %s %s %s\n" % (num(x, 13, 6), num(y, 13, 6), num(z, 13, 6)))
    site, forces, charges = cfg.site_energies, cfg.forces, cfg.charges
    header = _ATOM_HEADER
    if site is not None:
        header += b"    site_en"
        site = np.ascontiguousarray(site, dtype=np.float64)
    if forces is not None:
        header += b"           fx          fy          fz"
        forces = np.ascontiguousarray(forces, dtype=np.float64)
    if charges is not None:
        header += b"      charge"
        charges = np.ascontiguousarray(charges, dtype=np.float64)
    out.append(header + b"\n")
    out.append(k.format_atoms(np.ascontiguousarray(cfg.types, dtype=np.int64),
                              np.ascontiguousarray(cfg.positions, dtype=np.float64),
                              site, forces, charges, bool(lossless)))
    if cfg.energy is not None:
        out.append(b" Energy\n    %s\n" % num(float(cfg.energy), 20, 12))
    if cfg.plus_stress is not None:
        xx, yy, zz, yz, xz, xy = np.asarray(cfg.plus_stress, dtype=np.float64).tolist()
        out.append(_STRESS_HEADER)
        out.append(b"     %s %s %s %s %s %s\n" % (num(xx, 11, 5), num(yy, 11, 5), num(zz, 11, 5),
                                                   num(yz, 11, 5), num(xz, 11, 5), num(xy, 11, 5)))
    if cfg.features:
        items = []
        for key, val in cfg.features.items():
            key, val = str(key), str(val)
            if key and val:
                items.append((key.encode("utf-8", "surrogateescape"), key, val))
        items.sort(key=lambda t: t[0])
        for _, key, val in items:
            ekey = b" Feature   " + escape_key(key).encode("utf-8", "surrogateescape") + b"\t"
            # MLIP writes one line per piece; a trailing newline gives a final empty piece
            for piece in val.split("\n"):
                out.append(ekey + piece.encode("utf-8", "surrogateescape") + b"\n")
    out.append(b"END_CFG\n\n")
    return b"".join(out)


def format_cfg(cfg, lossless=False):
    """One configuration in MLIP-2's text layout (str, ends with an empty line).

    Parameters
    ----------
    cfg : Configuration
    lossless : bool
        MLIP's lossless layout (``%.16e``, single spaces) instead of the default
        fixed-point one.
    """
    return format_cfg_bytes(cfg, lossless).decode("utf-8", "surrogateescape")


def write_cfg(path_or_fh, cfgs, lossless=False, append=False):
    """Write configurations as text cfg (streaming; atomic when given a path).

    Parameters
    ----------
    path_or_fh : str, os.PathLike or file object
        A path (written atomically through :func:`~mlip_py.io._atomic.atomic_open`), or
        an open binary or text file object (written as is).
    cfgs : Configuration or iterable of Configuration
        Consumed lazily; written in chunks of about one block.
    lossless : bool
        Lossless (``%.16e``) layout.
    append : bool
        Append to an existing file (path only; for file objects open them for appending).

    Returns
    -------
    int
        The number of configurations written.
    """
    if isinstance(cfgs, Configuration):
        cfgs = [cfgs]
    if isinstance(path_or_fh, (str, os.PathLike)):
        with atomic_open(path_or_fh, "wb", append=append) as fh:
            return _write_all(fh.write, cfgs, lossless)
    if isinstance(path_or_fh, io.TextIOBase):
        return _write_all(lambda b: path_or_fh.write(b.decode("utf-8", "surrogateescape")), cfgs, lossless)
    return _write_all(path_or_fh.write, cfgs, lossless)


def _write_all(write, cfgs, lossless):
    count = 0
    chunk = []
    size = 0
    for cfg in cfgs:
        b = format_cfg_bytes(cfg, lossless)
        chunk.append(b)
        size += len(b)
        count += 1
        if size >= BLOCK_SIZE:
            write(b"".join(chunk))
            chunk = []
            size = 0
    if chunk:
        write(b"".join(chunk))
    return count
