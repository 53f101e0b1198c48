"""VASP files: OUTCAR reader (every ionic step) and POSCAR writer, as in MLIP-2.

OUTCAR (``--input-format=vasp-outcar``; VASP 5.x/6.x text layout), one configuration per
completed ionic step:

* types: 0, 1, ... in POTCAR order, repeated as given by ``ions per type =``;
* lattice: the last ``direct lattice vectors`` block before the step's positions;
* positions and forces: the ``POSITION ... TOTAL-FORCE (eV/Angst)`` block;
* energy: ``free  energy   TOTEN`` when ``ISMEAR <= 0``, else ``energy(sigma->0)`` of the
  line that follows it;
* PlusStress: the ``Total`` line of ``FORCE on cell =-STRESS`` (eV, VASP order
  ``XX YY ZZ XY YZ ZX``, reordered to ``xx yy zz yz xz xy``); absent when VASP did not
  compute the stress;
* feature ``EFS_by`` = ``VASP``, or ``VASP_not_converged`` when the electronic loop of that
  ionic step ran ``NELM`` iterations (or VASP 6 printed ``EDIFF was not reached``).

An ionic step cut off by the end of the file (no energy yet) is dropped, as in the original.

POSCAR (``--output-format=vasp-poscar``): VASP 4 layout (no species line unless a type map
is given), scale 1, Cartesian, atoms sorted by type (stable), counts for types
``0 .. max type``; every number written with 16 significant digits (``%.16g``) right
aligned in 24 columns after 3 leading spaces, which is byte-identical to the original.
"""
from __future__ import annotations

import os
import re

import numpy as np

from ..configuration import Configuration
from ..errors import FormatError
from ._atomic import atomic_open

# numbers in fixed-width VASP columns may touch ("-12.345-6.789"); every such number has a dot
_DOTTED = re.compile(r"[-+]?\d*\.\d+(?:[eE][-+]?\d+)?")


def _floats(text, path, lineno, count, what):
    vals = _DOTTED.findall(text)
    if len(vals) < count:
        raise FormatError(f"{what}: expected {count} numbers, found {text.strip()!r}", path, lineno)
    return [float(v) for v in vals[:count]]


def _int_after(line, key, path, lineno):
    m = re.search(re.escape(key) + r"\s*=\s*(-?\d+)", line)
    if not m:
        raise FormatError(f"cannot read the integer after {key!r} in {line.strip()!r}", path, lineno)
    return int(m.group(1))


def iter_outcar(path):
    """Yield one :class:`Configuration` per completed ionic step of a VASP OUTCAR.

    Parameters
    ----------
    path : str or os.PathLike

    Raises
    ------
    FormatError
        Malformed blocks (with the line number), or a file that is not an OUTCAR (no
        ``ions per type`` line before the first ``POSITION`` block, or none at all).
    """
    path = os.fspath(path)
    counts = None
    ismear = 0  # VASP always prints ISMEAR; without it the TOTEN energy is used
    nelm = None
    lattice = None
    stress = None
    n_iter = 0
    unconverged_msg = False
    pending = None  # (positions, forces, toten) waiting for the energy
    produced = 0
    with open(path, "r", errors="replace") as fh:
        lines = iter(enumerate(fh, start=1))
        for lineno, line in lines:
            if "ions per type" in line:
                try:
                    counts = [int(x) for x in line.split("=", 1)[1].split()]
                except (ValueError, IndexError):
                    raise FormatError(f"cannot read the atom counts in {line.strip()!r}",
                                      path, lineno) from None
            elif line.lstrip().startswith("ISMEAR") and "=" in line:
                ismear = _int_after(line, "ISMEAR", path, lineno)
            elif line.lstrip().startswith("NELM ") or line.lstrip().startswith("NELM="):
                nelm = _int_after(line, "NELM", path, lineno)
            elif "Iteration" in line and "(" in line and line.startswith("-"):
                m = re.search(r"Iteration\s*\d+\s*\(\s*(\d+)\s*\)", line)
                if m:
                    n_iter = max(n_iter, int(m.group(1)))
            elif "EDIFF was not reached" in line:
                unconverged_msg = True
            elif "direct lattice vectors" in line:
                rows = []
                for _ in range(3):
                    lineno, row = next(lines, (lineno, ""))
                    rows.append(_floats(row, path, lineno, 3, "direct lattice vectors"))
                lattice = np.array(rows)
            elif "FORCE on cell =-STRESS" in line:
                start = lineno
                for _ in range(40):  # the Total line follows within ~14 lines
                    lineno, row = next(lines, (lineno, None))
                    if row is None:
                        break
                    if row.lstrip().startswith("Total"):
                        v = _floats(row.split("Total", 1)[1], path, lineno, 6, "stress 'Total' line")
                        # VASP: XX YY ZZ XY YZ ZX -> xx yy zz yz xz xy
                        stress = np.array([v[0], v[1], v[2], v[4], v[5], v[3]])
                        break
                else:
                    raise FormatError("no 'Total' line after 'FORCE on cell =-STRESS'", path, start)
            elif line.lstrip().startswith("POSITION") and "TOTAL-FORCE" in line:
                if counts is None:
                    raise FormatError("POSITION block before any 'ions per type' line: "
                                      "not a VASP OUTCAR?", path, lineno)
                if lattice is None:
                    raise FormatError("POSITION block before any 'direct lattice vectors' block",
                                      path, lineno)
                n = sum(counts)
                lineno, sep = next(lines, (lineno, ""))
                if not sep.strip().startswith("---"):
                    raise FormatError(f"expected a line of dashes after POSITION, found {sep.strip()!r}",
                                      path, lineno)
                data = np.empty((n, 6))
                for i in range(n):
                    lineno, row = next(lines, (lineno + 1, None))
                    if row is None:
                        raise FormatError(f"file ends inside the POSITION block ({i} of {n} atoms read)",
                                          path, lineno)
                    data[i] = _floats(row, path, lineno, 6, f"POSITION/TOTAL-FORCE line of atom {i + 1}")
                pending = [data[:, :3].copy(), data[:, 3:].copy(), None]
            elif pending is not None and "free  energy   TOTEN" in line:
                pending[2] = _floats(line.split("=", 1)[1], path, lineno, 1, "TOTEN")[0]
                if ismear <= 0:
                    yield _make(counts, lattice, pending, pending[2], stress, n_iter, nelm, unconverged_msg)
                    produced += 1
                    pending, stress, n_iter, unconverged_msg = None, None, 0, False
            elif pending is not None and pending[2] is not None and "energy(sigma->0)" in line:
                e0 = _floats(line.split("energy(sigma->0)", 1)[1], path, lineno, 1, "energy(sigma->0)")[0]
                yield _make(counts, lattice, pending, e0, stress, n_iter, nelm, unconverged_msg)
                produced += 1
                pending, stress, n_iter, unconverged_msg = None, None, 0, False
    if produced == 0 and counts is None:
        raise FormatError("not a VASP OUTCAR: no 'ions per type' line found", path, None)


def _make(counts, lattice, pending, energy, stress, n_iter, nelm, unconverged_msg):
    positions, forces, _ = pending
    types = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    not_conv = unconverged_msg or (nelm is not None and n_iter >= nelm)
    return Configuration(
        lattice=lattice.copy(),
        positions=positions,
        types=types,
        energy=energy,
        forces=forces,
        plus_stress=None if stress is None else stress.copy(),
        features={"EFS_by": "VASP_not_converged" if not_conv else "VASP"},
    )


def read_outcar(path):
    """All ionic steps of an OUTCAR as a list (see :func:`iter_outcar`)."""
    return list(iter_outcar(path))


# ---------------------------------------------------------------------------- POSCAR
def _poscar_line(row):
    return "   " + "".join(f"{format(float(x), '.16g'):>24}" for x in row)


def format_poscar(cfg, type_map=None):
    """The text of a POSCAR for one configuration (see the module docstring).

    Parameters
    ----------
    cfg : Configuration
    type_map : sequence of str, optional
        Element of each type; when given, a VASP 5 species line (names of types
        ``0 .. max type``) is written before the counts.
    """
    lines = ["MLIP output to VASP", "1"]
    for row in cfg.lattice:
        lines.append(_poscar_line(row))
    ntypes = int(cfg.types.max()) + 1 if len(cfg) else 0
    counts = np.bincount(cfg.types, minlength=ntypes) if len(cfg) else np.zeros(0, dtype=int)
    if type_map is not None:
        if ntypes > len(type_map):
            from ..errors import ConfigError

            raise ConfigError(f"type map {list(type_map)!r} has {len(type_map)} species but the "
                              f"configuration has type {ntypes - 1}")
        lines.append("".join(f" {type_map[t]}" for t in range(ntypes)))
    lines.append("".join(f" {int(c)}" for c in counts))
    lines.append("cart")
    order = np.argsort(cfg.types, kind="stable")
    for i in order:
        lines.append(_poscar_line(cfg.positions[i]))
    return "\n".join(lines) + "\n"


def write_poscar(path, cfg, type_map=None):
    """Write one configuration as a POSCAR (atomically).

    Parameters
    ----------
    path : str or os.PathLike
    cfg : Configuration
    type_map : sequence of str, optional
        See :func:`format_poscar`.
    """
    text = format_poscar(cfg, type_map)
    with atomic_open(path, "w") as fh:
        fh.write(text)
