"""LAMMPS files: the data file written by MLIP-2 and custom text dumps.

Data file (``--output-format=lammps-datafile``), byte-identical to the original: the
configuration is first put through :func:`mlip_py.io.lattice.fix_lattice` (reduced,
wrapped, rotated to LAMMPS' restricted triclinic box: ``a`` along x, ``b`` in the xy
plane), then written as an empty comment line, ``xlo xhi``/``ylo yhi``/``zlo zhi`` and
``xy xz yz`` with ``%.9f``, ``<N> atoms``, ``<T> atom types`` (T = max type + 1) and an
``Atoms`` section of ``%6d%6d%20.8f%20.8f%20.8f`` (id, type + 1, x, y, z).  Only fully
periodic configurations can be written (the original writes NaN otherwise).

Dumps (``lammps-dump``): ``dump custom`` text files, any number of frames.  The reader
understands the columns ``id``, ``type``, ``element``, positions ``x y z`` / ``xu yu zu`` /
``xs ys zs`` (scaled) / ``xsu ysu zsu``, forces ``fx fy fz`` and charges ``q`` (other
columns are ignored); atoms are sorted by ``id``.  Types in dumps are 1-based: a
configuration type is ``type - 1``, unless a type map is given and the dump has an
``element`` column, in which case the element's index in the type map is used.  Box rows
along non-periodic boundaries (anything but ``pp``) become zero lattice rows.  The writer
writes ``id type x y z [fx fy fz]`` with 17 significant digits in the box of the configuration,
rotating a general periodic cell (positions and forces) to LAMMPS' restricted triclinic
orientation when needed; along non-periodic directions the box is the extent of the
atoms with ``ff`` boundaries.  Positions and forces of a cell already in LAMMPS'
orientation round-trip exactly; tilted box lengths may change in the last bit (LAMMPS
stores bounding-box bounds).  Energies, stresses and features are not part of a dump.
"""
from __future__ import annotations

import os

import numpy as np

from ..configuration import Configuration
from ..errors import ConfigError, FormatError
from ._atomic import atomic_open
from .lattice import fix_lattice, inverse3, lower_triangular_lattice


# ------------------------------------------------------------------------- data file
def format_lammps_data(cfg):
    """Text of the MLIP-2 LAMMPS data file of one fully periodic configuration."""
    if not bool(np.all(cfg.pbc)):
        raise ConfigError("a LAMMPS data file needs a configuration periodic along all three "
                          "lattice vectors (this one has a zero lattice row)")
    fixed = fix_lattice(cfg)
    lat = fixed.lattice
    ntypes = int(fixed.types.max()) + 1 if len(fixed) else 0
    out = [
        "",
        f"{0.0:.9f} {lat[0, 0]:.9f} xlo xhi",
        f"{0.0:.9f} {lat[1, 1]:.9f} ylo yhi",
        f"{0.0:.9f} {lat[2, 2]:.9f} zlo zhi",
        f"{lat[1, 0]:.9f} {lat[2, 0]:.9f} {lat[2, 1]:.9f} xy xz yz",
        "",
        f"{len(fixed)} atoms",
        "",
        f"{ntypes} atom types",
        "",
        "Atoms",
        "",
    ]
    for i, (t, p) in enumerate(zip(fixed.types, fixed.positions), start=1):
        out.append(f"{i:6d}{int(t) + 1:6d}{p[0]:20.8f}{p[1]:20.8f}{p[2]:20.8f}")
    return "\n".join(out) + "\n"


def write_lammps_data(path, cfg):
    """Write one configuration as a LAMMPS data file (``atom_style atomic``), atomically."""
    text = format_lammps_data(cfg)
    with atomic_open(path, "w") as fh:
        fh.write(text)


# ------------------------------------------------------------------------- dumps
def _box_to_lattice(bounds, tilts):
    """LAMMPS box bounds (with tilt factors) -> lattice rows."""
    xy, xz, yz = tilts
    (xlo_b, xhi_b), (ylo_b, yhi_b), (zlo_b, zhi_b) = bounds
    xlo = xlo_b - min(0.0, xy, xz, xy + xz)
    xhi = xhi_b - max(0.0, xy, xz, xy + xz)
    ylo = ylo_b - min(0.0, yz)
    yhi = yhi_b - max(0.0, yz)
    lat = np.array([[xhi - xlo, 0.0, 0.0], [xy, yhi - ylo, 0.0], [xz, yz, zhi_b - zlo_b]])
    origin = np.array([xlo, ylo, zlo_b])
    return lat, origin


def iter_lammps_dump(path, type_map=None):
    """Yield one :class:`Configuration` per frame of a LAMMPS ``dump custom`` text file.

    Parameters
    ----------
    path : str or os.PathLike
    type_map : sequence of str, optional
        Element of each type; used with an ``element`` column (see the module docstring).

    Raises
    ------
    FormatError
        With the line number, for anything that does not follow the dump layout.
    """
    path = os.fspath(path)
    tmap = None if type_map is None else {str(e): i for i, e in enumerate(type_map)}
    with open(path, "r") as fh:
        lineno = 0

        def nextline(expect):
            nonlocal lineno
            line = fh.readline()
            lineno += 1
            if not line:
                raise FormatError(f"file ends, expected {expect}", path, lineno)
            return line

        while True:
            line = fh.readline()
            lineno += 1
            if not line:
                return
            if not line.strip():
                continue
            if not line.startswith("ITEM: TIMESTEP"):
                raise FormatError(f"expected 'ITEM: TIMESTEP', found {line.strip()!r}", path, lineno)
            nextline("the timestep")
            line = nextline("'ITEM: NUMBER OF ATOMS'")
            if not line.startswith("ITEM: NUMBER OF ATOMS"):
                raise FormatError(f"expected 'ITEM: NUMBER OF ATOMS', found {line.strip()!r}", path, lineno)
            try:
                n = int(nextline("the number of atoms"))
            except ValueError:
                raise FormatError("the number of atoms is not an integer", path, lineno) from None
            line = nextline("'ITEM: BOX BOUNDS'")
            if not line.startswith("ITEM: BOX BOUNDS"):
                raise FormatError(f"expected 'ITEM: BOX BOUNDS', found {line.strip()!r}", path, lineno)
            words = line.split()[3:]
            triclinic = words[:3] == ["xy", "xz", "yz"]
            flags = words[3:] if triclinic else words
            if len(flags) != 3:
                raise FormatError(f"expected three boundary flags in {line.strip()!r}", path, lineno)
            periodic = [f == "pp" for f in flags]
            bounds, tilts = [], [0.0, 0.0, 0.0]
            for d in range(3):
                parts = nextline("box bounds").split()
                try:
                    vals = [float(v) for v in parts]
                except ValueError:
                    raise FormatError(f"box bounds must be numbers, found {parts!r}", path, lineno) from None
                if len(vals) != (3 if triclinic else 2):
                    raise FormatError(f"expected {3 if triclinic else 2} box numbers, found {len(vals)}",
                                      path, lineno)
                bounds.append(vals[:2])
                if triclinic:
                    tilts[d] = vals[2]
            lat, origin = _box_to_lattice(bounds, tilts)
            line = nextline("'ITEM: ATOMS'")
            if not line.startswith("ITEM: ATOMS"):
                raise FormatError(f"expected 'ITEM: ATOMS', found {line.strip()!r}", path, lineno)
            cols = line.split()[2:]
            col = {c: k for k, c in enumerate(cols)}
            header_line = lineno
            rows = []
            for _ in range(n):
                parts = nextline(f"{n} atom lines").split()
                if len(parts) != len(cols):
                    raise FormatError(f"expected {len(cols)} columns ({' '.join(cols)}), found {len(parts)}",
                                      path, lineno)
                rows.append((lineno, parts))
            yield _frame_to_cfg(path, header_line, cols, col, rows, lat, origin, periodic, tmap)


def _frame_to_cfg(path, header_line, cols, col, rows, lat, origin, periodic, tmap):
    n = len(rows)

    def numeric(names, kind=float):
        out = np.empty((n, len(names)))
        for i, (ln, parts) in enumerate(rows):
            for k, name in enumerate(names):
                try:
                    out[i, k] = kind(parts[col[name]])
                except ValueError:
                    raise FormatError(f"column {name!r}: {parts[col[name]]!r} is not a number",
                                      path, ln) from None
        return out

    for triple, scaled in ((("x", "y", "z"), False), (("xu", "yu", "zu"), False),
                           (("xs", "ys", "zs"), True), (("xsu", "ysu", "zsu"), True)):
        if all(c in col for c in triple):
            pos = numeric(triple)
            if scaled:
                pos = pos @ lat + origin
            break
    else:
        raise FormatError("no atom positions (columns x y z, xu yu zu, xs ys zs or xsu ysu zsu)",
                          path, header_line)
    if "id" in col:
        ids = numeric(["id"], int)[:, 0].astype(np.int64)
        order = np.argsort(ids, kind="stable")
    else:
        order = np.arange(n)
    if tmap is not None and "element" in col:
        types = np.empty(n, dtype=np.int64)
        missing = sorted({parts[col["element"]] for _, parts in rows} - set(tmap))
        if missing:
            raise ConfigError(f"{path}: elements {missing} are not in the type map {list(tmap)}")
        for i, (_, parts) in enumerate(rows):
            types[i] = tmap[parts[col["element"]]]
    elif "type" in col:
        types = numeric(["type"], int)[:, 0].astype(np.int64) - 1
        if n and types.min() < 0:
            bad = int(np.argmin(types))
            raise FormatError(f"LAMMPS atom types start at 1, found {types[bad] + 1}", path, rows[bad][0])
    else:
        types = np.zeros(n, dtype=np.int64)
    forces = numeric(["fx", "fy", "fz"]) if all(c in col for c in ("fx", "fy", "fz")) else None
    charges = numeric(["q"])[:, 0] if "q" in col else None
    lattice = lat.copy()
    for d in range(3):
        if not periodic[d]:
            lattice[d] = 0.0
    return Configuration(
        lattice=lattice,
        positions=pos[order],
        types=types[order],
        forces=None if forces is None else forces[order],
        charges=None if charges is None else charges[order],
    )


def read_lammps_dump(path, type_map=None):
    """All frames of a dump as a list (see :func:`iter_lammps_dump`)."""
    return list(iter_lammps_dump(path, type_map))


def _restricted_frame(cfg):
    """(lattice, positions, forces, boundary flags, origin) in LAMMPS' orientation.

    Fully periodic cells are rotated to the restricted triclinic orientation when needed.
    Along a non-periodic (zero) lattice row the box is the extent of the atoms (at least
    1 Angstrom) with an ``ff`` boundary; this needs the periodic rows to be compatible with
    the restricted orientation already (e.g. a slab with ``a``, ``b`` in the xy plane).
    """
    pbc = cfg.pbc
    pos, forces = cfg.positions, cfg.forces
    if bool(np.all(pbc)):
        lat = cfg.lattice
        upper = (lat[0, 1], lat[0, 2], lat[1, 2])
        if any(v != 0.0 for v in upper) or lat[0, 0] <= 0 or lat[1, 1] <= 0 or lat[2, 2] <= 0:
            new = lower_triangular_lattice(lat)
            q = inverse3(lat) @ new
            pos = pos @ q
            forces = None if forces is None else forces @ q
            lat = new
        return lat, pos, forces, "pp pp pp", np.zeros(3)
    lat = cfg.lattice.copy()
    origin = np.zeros(3)
    lo = pos.min(axis=0) if len(pos) else np.zeros(3)
    hi = pos.max(axis=0) if len(pos) else np.zeros(3)
    for r in range(3):
        if not pbc[r]:
            lat[r] = 0.0
            lat[r, r] = max(hi[r] - lo[r], 1.0)
            origin[r] = lo[r]
    upper = (lat[0, 1], lat[0, 2], lat[1, 2])
    if any(v != 0.0 for v in upper) or lat[0, 0] <= 0 or lat[1, 1] <= 0 or lat[2, 2] <= 0:
        raise ConfigError("a partially periodic configuration can be written as a LAMMPS dump "
                          "only when its periodic lattice vectors already have LAMMPS' "
                          "orientation (a along +x, b in the xy plane)")
    flags = " ".join("pp" if p else "ff" for p in pbc)
    return lat, pos, forces, flags, origin


def format_lammps_dump_frame(cfg, timestep=0):
    """Text of one dump frame (``id type x y z [fx fy fz]``, 17 significant digits)."""
    lat, pos, forces, flags, origin = _restricted_frame(cfg)
    xy, xz, yz = lat[1, 0], lat[2, 0], lat[2, 1]
    xlo, ylo, zlo = origin
    xhi, yhi, zhi = xlo + lat[0, 0], ylo + lat[1, 1], zlo + lat[2, 2]
    g = lambda v: format(float(v), ".17g")  # noqa: E731
    out = ["ITEM: TIMESTEP", str(timestep), "ITEM: NUMBER OF ATOMS", str(len(cfg))]
    if xy == 0.0 and xz == 0.0 and yz == 0.0:
        out += [f"ITEM: BOX BOUNDS {flags}", f"{g(xlo)} {g(xhi)}", f"{g(ylo)} {g(yhi)}", f"{g(zlo)} {g(zhi)}"]
    else:
        out += [
            f"ITEM: BOX BOUNDS xy xz yz {flags}",
            f"{g(xlo + min(0.0, xy, xz, xy + xz))} {g(xhi + max(0.0, xy, xz, xy + xz))} {g(xy)}",
            f"{g(ylo + min(0.0, yz))} {g(yhi + max(0.0, yz))} {g(xz)}",
            f"{g(zlo)} {g(zhi)} {g(yz)}",
        ]
    out.append("ITEM: ATOMS id type x y z" + (" fx fy fz" if forces is not None else ""))
    for i in range(len(cfg)):
        line = f"{i + 1} {int(cfg.types[i]) + 1} {g(pos[i, 0])} {g(pos[i, 1])} {g(pos[i, 2])}"
        if forces is not None:
            line += f" {g(forces[i, 0])} {g(forces[i, 1])} {g(forces[i, 2])}"
        out.append(line)
    return "\n".join(out) + "\n"


def write_lammps_dump(path, cfgs, append=False):
    """Write configurations as frames of a LAMMPS custom dump (atomically).

    Parameters
    ----------
    path : str or os.PathLike
    cfgs : iterable of Configuration
        Frame ``k`` gets timestep ``k``.
    append : bool
        Add the frames after the existing content of ``path``.

    Returns
    -------
    int
        Number of frames written.
    """
    count = 0
    with atomic_open(path, "w", append=append) as fh:
        for k, cfg in enumerate(cfgs):
            fh.write(format_lammps_dump_frame(cfg, k))
            count += 1
    return count
