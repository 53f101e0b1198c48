"""Configuration file formats: the registry every command reads and writes through.

Format names (``--input-format`` / ``--output-format``):

============== ====== ====== ============================================================
name           read   write  notes
============== ====== ====== ============================================================
txt            yes    yes    MLIP text cfg (:mod:`.cfg`); binary records inside are read
bin            yes    yes    MLIP binary cfg (:mod:`.cfgbin`)
hdf5           yes    yes    :mod:`.hdf5`
extxyz         yes    yes    extended XYZ through ASE (:mod:`.asefmt`)
vasp-outcar    yes    no     every ionic step of an OUTCAR (:mod:`.vasp`)
vasp-poscar    no     yes    one POSCAR per configuration (:mod:`.vasp`)
lammps-datafile no    yes    one LAMMPS data file per configuration (:mod:`.lammps`)
lammps-dump    yes    yes    LAMMPS text dump (:mod:`.lammps`)
ase:<fmt>      yes    yes    any ASE io format ``<fmt>`` (:mod:`.asefmt`)
============== ====== ====== ============================================================

Without an explicit name the format follows the file name: ``.cfg``/``.cfgs`` -> txt,
``.h5``/``.hdf5`` -> hdf5, ``.xyz``/``.extxyz`` -> extxyz, a name containing ``OUTCAR``
-> vasp-outcar, ``POSCAR``/``CONTCAR`` -> vasp-poscar; anything else is txt (MLIP-2's
default), except that an existing file starting with the HDF5 signature is hdf5.
Like MLIP-2, per-configuration formats (vasp-poscar, lammps-datafile) write ``<path>``
for a single configuration and ``<path>0``, ``<path>1``, ... for several.

Only this registry is imported by ``import mlip_py.io``; the format modules (and NumPy,
h5py, ASE) are imported when a format is used.
"""
from __future__ import annotations

import importlib
import os

from ..errors import ConfigError

__all__ = ["FORMATS", "detect_format", "iread_configurations", "read_configurations",
           "write_configurations"]

#: format name -> (readable, writable)
FORMATS = {
    "txt": (True, True),
    "bin": (True, True),
    "hdf5": (True, True),
    "extxyz": (True, True),
    "vasp-outcar": (True, False),
    "vasp-poscar": (False, True),
    "lammps-datafile": (False, True),
    "lammps-dump": (True, True),
}

_EXTENSIONS = {
    ".cfg": "txt", ".cfgs": "txt",
    ".h5": "hdf5", ".hdf5": "hdf5",
    ".xyz": "extxyz", ".extxyz": "extxyz",
}
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def _valid_names():
    return ", ".join(list(FORMATS) + ["ase:<fmt>"])


def _check_name(fmt):
    fmt = str(fmt).strip()
    if fmt in FORMATS:
        return fmt
    if fmt.startswith("ase:") and len(fmt) > 4:
        return fmt
    raise ConfigError(f"unknown configuration format {fmt!r}; valid formats: {_valid_names()}")


def detect_format(path, fmt=None):
    """The canonical format name for ``path`` (explicit ``fmt`` wins, then the file name).

    Parameters
    ----------
    path : str or os.PathLike
    fmt : str, optional
        An explicit format name (validated).

    Returns
    -------
    str
        One of :data:`FORMATS` or ``"ase:<fmt>"``.

    Raises
    ------
    ConfigError
        For an unknown format name (the message lists the valid names).
    """
    if fmt is not None and str(fmt) != "":
        return _check_name(fmt)
    name = os.path.basename(os.fspath(path))
    ext = os.path.splitext(name)[1].lower()
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    if "OUTCAR" in name:
        return "vasp-outcar"
    if "POSCAR" in name or "CONTCAR" in name:
        return "vasp-poscar"
    try:
        with open(path, "rb") as fh:
            if fh.read(8) == _HDF5_MAGIC:
                return "hdf5"
    except OSError:
        pass
    return "txt"


def _module(name):
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as err:
        if err.name == f"{__name__}.{name}":
            raise ConfigError(f"format support module mlip_py.io.{name} is not available in this "
                              f"installation") from err
        raise


def iread_configurations(path, fmt=None, type_map=None):
    """Return a generator of the configurations of a file (streaming where possible).

    The format is validated immediately (a bad name raises here, not at the first
    ``next``); the file is opened when iteration starts.

    Parameters
    ----------
    path : str or os.PathLike
    fmt : str, optional
        Format name (see the module docstring); detected from the name when omitted.
    type_map : sequence of str, optional
        Element of each type index, for formats that store elements (extxyz, ASE,
        LAMMPS dumps); ignored by the cfg formats.

    Returns
    -------
    generator of Configuration
    """
    fmt = detect_format(path, fmt)
    if fmt.startswith("ase:"):
        return _module("asefmt").iter_ase(path, fmt[4:], type_map)
    if not FORMATS[fmt][0]:
        readable = [f for f, (r, _) in FORMATS.items() if r] + ["ase:<fmt>"]
        raise ConfigError(f"format {fmt!r} can only be written, not read; readable formats: "
                          f"{', '.join(readable)}")
    if fmt == "txt":
        from .cfg import iter_cfg

        return iter_cfg(path)
    if fmt == "bin":
        from .cfgbin import iter_cfgbin

        return iter_cfgbin(path)
    if fmt == "hdf5":
        return _module("hdf5").iter_hdf5(path)
    if fmt == "extxyz":
        return _module("asefmt").iter_ase(path, "extxyz", type_map)
    if fmt == "vasp-outcar":
        return _module("vasp").iter_outcar(path)
    if fmt == "lammps-dump":
        return _module("lammps").iter_lammps_dump(path, type_map=type_map)
    raise ConfigError(f"reading {fmt!r} is not implemented")  # pragma: no cover


def read_configurations(path, fmt=None, type_map=None):
    """All configurations of a file as a list (see :func:`iread_configurations`)."""
    return list(iread_configurations(path, fmt=fmt, type_map=type_map))


def write_configurations(path, cfgs, fmt=None, append=False, lossless=False, type_map=None):
    """Write configurations (any iterable, consumed lazily) in the given format.

    Outputs are written atomically (a failed write leaves no partial file).

    Parameters
    ----------
    path : str or os.PathLike
    cfgs : Configuration or iterable of Configuration
    fmt : str, optional
        Format name; detected from the name when omitted.
    append : bool
        Append to an existing file (all formats except vasp-poscar and lammps-datafile,
        which write one file per configuration).
    lossless : bool
        txt only: MLIP's lossless ``%.16e`` layout.
    type_map : sequence of str, optional
        Element of each type index (POSCAR, extxyz, ASE formats).

    Returns
    -------
    int or None
        Number of configurations written, when the format writer reports it.
    """
    from ..configuration import Configuration

    if isinstance(cfgs, Configuration):
        cfgs = [cfgs]
    fmt = detect_format(path, fmt)
    if fmt.startswith("ase:"):
        return _module("asefmt").write_ase(path, cfgs, fmt[4:], type_map, append)
    if not FORMATS[fmt][1]:
        writable = [f for f, (_, w) in FORMATS.items() if w] + ["ase:<fmt>"]
        raise ConfigError(f"format {fmt!r} can only be read, not written; writable formats: "
                          f"{', '.join(writable)}")
    if fmt == "txt":
        from .cfg import write_cfg

        return write_cfg(path, cfgs, lossless=lossless, append=append)
    if fmt == "bin":
        from .cfgbin import write_cfgbin

        return write_cfgbin(path, cfgs, append=append)
    if fmt == "hdf5":
        return _module("hdf5").write_hdf5(path, cfgs, append=append)
    if fmt == "extxyz":
        return _module("asefmt").write_ase(path, cfgs, "extxyz", type_map, append)
    if fmt == "lammps-dump":
        return _module("lammps").write_lammps_dump(path, cfgs, append=append)
    if append:
        raise ConfigError(f"appending is not supported for the output format {fmt!r} "
                          f"(it writes one file per configuration)")
    if fmt == "vasp-poscar":
        vasp = _module("vasp")
        return _write_each(path, cfgs, lambda p, c: vasp.write_poscar(p, c, type_map=type_map))
    if fmt == "lammps-datafile":
        lammps = _module("lammps")
        return _write_each(path, cfgs, lammps.write_lammps_data)
    raise ConfigError(f"writing {fmt!r} is not implemented")  # pragma: no cover


def _write_each(path, cfgs, writer):
    """One file per configuration: ``path`` for one, ``path0``, ``path1``, ... for several."""
    it = iter(cfgs)
    first = next(it, None)
    if first is None:
        return 0
    second = next(it, None)
    base = os.fspath(path)
    if second is None:
        writer(base, first)
        return 1
    writer(base + "0", first)
    writer(base + "1", second)
    count = 2
    for cfg in it:
        writer(f"{base}{count}", cfg)
        count += 1
    return count
