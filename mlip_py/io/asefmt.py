"""Bridge to ASE: read any ASE-readable file, write extended XYZ (lossless) and ASE formats.

Types.  A configuration's types are indices into the potential's species, not elements,
so every conversion needs a *type map* (the element of type 0, 1, ...).  Reading without
one builds it from the alphabetically sorted set of elements found in the whole file and
logs a one-line notice naming it (it is never chosen silently); an element missing from a
given map is a :class:`~mlip_py.errors.ConfigError` that lists the missing elements.
Writing needs an explicit map.

Reading (:func:`iter_ase`) goes through ``ase.io.iread(path, index=":", format=fmt)`` and
:meth:`Configuration.from_atoms`: energy, forces, per-atom energies and the stress come
from the calculator ASE attaches, ``info["virial"]`` (3x3, eV) takes precedence over the
stress for the PlusStress, string-valued ``info`` entries become features.

Extended XYZ writing (:func:`write_ase` with ``fmt="extxyz"``) goes through
:meth:`Configuration.to_atoms` and a small writer of our own, because ASE writes per-atom
columns with ``%16.8f`` (8 decimals), which loses precision.  The file is standard extxyz
that ASE (and other extxyz readers) read: ``Lattice`` (omitted for clusters), ``Properties
= species:S:1:pos:R:3[:forces:R:3][:energies:R:1][:initial_charges:R:1]``, ``energy``,
``virial`` (the PlusStress as a 3x3 matrix, eV), the features, ``pbc``.  Every float is
written with Python's shortest round-trip representation, so ``cfg -> extxyz -> cfg``
keeps positions, forces, energy, PlusStress and site energies bit for bit.  A feature is
written as a plain ``key=value`` pair when ASE reads it back as exactly that string;
the others (keys that are not extxyz identifiers or clash with reserved keys, values that
ASE would turn into numbers or booleans, multi-line values, ...) are stored together in
``mlip_features``: percent-encoded JSON of ``[key, value]`` pairs, decoded again on
reading.  Limitation: charges that are all exactly zero are read back as "no charges"
(ASE cannot tell them apart).

Other output formats are written by ``ase.io.write`` from the atoms of
:meth:`Configuration.to_atoms` with ASE's own precision.
"""
from __future__ import annotations

import json
import os
import urllib.parse

import numpy as np

from ..configuration import INFO_VIRIAL, Configuration, _type_numbers
from ..errors import ConfigError, FormatError
from .._log import get_logger
from ._atomic import atomic_open

log = get_logger(__name__)

#: info key holding the features that cannot be plain extxyz key=value pairs
FEATURES_KEY = "mlip_features"
_RESERVED = {"lattice", "properties", "energy", "free_energy", "virial", "stress", "pbc",
             "forces", "energies", "magmom", "magmoms", "dipole", "charges", "initial_charges",
             "time", "step", FEATURES_KEY}


def _strip(fmt):
    if fmt is None:
        return None
    return fmt[4:] if fmt.startswith("ase:") else fmt


def _symbols_of(atoms):
    from ase.data import chemical_symbols

    return {chemical_symbols[int(z)] for z in np.unique(atoms.numbers)}


def default_type_map(images):
    """The alphabetically sorted element symbols occurring in ``images``."""
    symbols = set()
    for atoms in images:
        symbols |= _symbols_of(atoms)
    return sorted(symbols)


def _decode_features(atoms):
    """Take the encoded features out of ``atoms.info`` (returns a list of pairs)."""
    raw = atoms.info.pop(FEATURES_KEY, None)
    if raw is None:
        return []
    try:
        pairs = json.loads(urllib.parse.unquote(str(raw)))
        return [(str(k), str(v)) for k, v in pairs]
    except (ValueError, TypeError):
        raise ValueError(f"info key {FEATURES_KEY!r} is not percent-encoded JSON") from None


def iter_ase(path, fmt=None, type_map=None):
    """Yield Configurations from any file ASE can read.

    Parameters
    ----------
    path : str or os.PathLike
    fmt : str, optional
        ASE format name (``"extxyz"``, ``"vasp-xml"``, ...; a leading ``"ase:"`` is
        ignored); ``None`` lets ASE guess from the file.
    type_map : sequence of str, optional
        Element of type 0, 1, ...; when ``None`` the sorted elements of the whole file
        are used (and a notice is logged); the file is then read completely before the
        first configuration is returned, while with a map it is streamed.

    Raises
    ------
    ConfigError
        An element is not in the type map (all missing elements are listed).
    FormatError
        ASE cannot read the file.
    """
    import ase.io

    path = os.fspath(path)
    fmt = _strip(fmt)
    if not os.path.exists(path):
        raise FileNotFoundError(2, "No such file or directory", path)

    def frames():
        try:
            for atoms in ase.io.iread(path, index=":", format=fmt):
                yield atoms
        except (ConfigError, FormatError, FileNotFoundError, MemoryError, KeyboardInterrupt):
            raise
        except Exception as err:  # ASE raises many types for malformed files
            what = fmt or "any format ASE knows"
            raise FormatError(f"ASE cannot read the file as {what}: {type(err).__name__}: {err}",
                              path) from None

    if type_map is None:
        images = list(frames())
        type_map = default_type_map(images)
        log.warning("no type map given: using --type-map=%s (sorted elements of %s)",
                    ",".join(type_map) if type_map else "(none)", path)
        source = images
    else:
        _type_numbers(type_map)  # validate
        source = frames()
    allowed = set(type_map)
    for k, atoms in enumerate(source):
        missing = sorted(_symbols_of(atoms) - allowed)
        if missing:
            raise ConfigError(f"{path}: configuration {k + 1} contains {', '.join(missing)}, not in the "
                              f"type map {','.join(type_map)} (give them with --type-map)")
        try:
            extra = _decode_features(atoms)
        except ValueError as err:
            raise FormatError(f"configuration {k + 1}: {err}", path) from None
        cfg = Configuration.from_atoms(atoms, type_map)
        for key, value in extra:
            cfg.features[key] = value
        yield cfg


def read_ase(path, fmt=None, type_map=None):
    """All configurations of an ASE-readable file as a list (see :func:`iter_ase`)."""
    return list(iter_ase(path, fmt, type_map))


# ------------------------------------------------------------------------ extxyz writer
def _f(x):
    return repr(float(x))


def _plain_feature_ok(key, value):
    """True when ``key=value`` written with ASE's quoting reads back as the same string."""
    from ase.io.extxyz import escape, key_val_str_to_dict

    if key.lower() in _RESERVED or not value or any(c in value for c in "\n\r\t\\"):
        return False
    try:
        back = key_val_str_to_dict(f"{key}={escape(value)}")
    except Exception:  # noqa: BLE001 - anything ASE chokes on goes to the encoded field
        return False
    return back == {key: value} and isinstance(back[key], str)


def format_extxyz_frame(cfg, type_map):
    """One extended-XYZ frame (two header lines + one line per atom) of a configuration."""
    from ase.io.extxyz import escape

    atoms = cfg.to_atoms(type_map)  # validates the map against the types
    symbols = atoms.get_chemical_symbols()
    results = atoms.calc.results if atoms.calc is not None else {}
    n = len(atoms)
    head = []
    if np.any(cfg.lattice != 0.0):
        # extxyz Lattice = the lattice vectors one after the other
        head.append('Lattice="' + " ".join(_f(x) for x in cfg.lattice.reshape(9)) + '"')
    props = ["species:S:1", "pos:R:3"]
    cols = [np.asarray(symbols, dtype=object).reshape(n, 1), cfg.positions]
    if cfg.forces is not None:
        props.append("forces:R:3")
        cols.append(cfg.forces)
    if cfg.site_energies is not None:
        props.append("energies:R:1")
        cols.append(cfg.site_energies.reshape(n, 1))
    if cfg.charges is not None:
        props.append("initial_charges:R:1")
        cols.append(cfg.charges.reshape(n, 1))
    head.append("Properties=" + ":".join(props))
    if "energy" in results:
        head.append(f"energy={_f(cfg.energy)}")
    virial = atoms.info.get(INFO_VIRIAL)
    if virial is not None:
        head.append('virial="' + " ".join(_f(x) for x in np.asarray(virial).reshape(9)) + '"')
    encoded = []
    for key, value in cfg.features.items():
        if _plain_feature_ok(key, value):
            head.append(f"{key}={escape(value)}")
        else:
            encoded.append([key, value])
    if encoded:
        head.append(f"{FEATURES_KEY}=" + urllib.parse.quote(json.dumps(encoded), safe=""))
    head.append('pbc="' + " ".join("T" if p else "F" for p in cfg.pbc) + '"')
    lines = [str(n), " ".join(head)]
    width = max((len(s) for s in symbols), default=1)
    for i in range(n):
        parts = [symbols[i].ljust(width)]
        for c in cols[1:]:
            parts.extend(_f(x) for x in c[i])
        lines.append(" ".join(parts))
    return "\n".join(lines) + "\n"


def write_extxyz(path, cfgs, type_map, append=False):
    """Write configurations as lossless extended XYZ (atomically). Returns the count."""
    if type_map is None:
        raise ConfigError("writing extxyz needs a type map (the element of each type), "
                          "e.g. --type-map=Mo or --type-map=Na,Cl")
    count = 0
    with atomic_open(path, "w", append=append) as fh:
        for cfg in cfgs:
            fh.write(format_extxyz_frame(cfg, type_map))
            count += 1
    return count


def write_ase(path, cfgs, fmt, type_map, append=False):
    """Write configurations in an ASE format (extxyz by our own lossless writer).

    Parameters
    ----------
    path : str or os.PathLike
    cfgs : iterable of Configuration
    fmt : str
        ASE format name (``"extxyz"``, ``"xyz"``, ``"traj"``, ...; ``"ase:"`` prefix ignored).
    type_map : sequence of str
        Element of type 0, 1, ... (required).
    append : bool
        Add to the existing file (only for formats that hold several configurations).

    Returns
    -------
    int
        Number of configurations written.
    """
    fmt = _strip(fmt)
    if fmt in ("extxyz", None):
        return write_extxyz(path, cfgs, type_map, append=append)
    if type_map is None:
        raise ConfigError(f"writing {fmt} needs a type map (the element of each type), "
                          "e.g. --type-map=Mo or --type-map=Na,Cl")
    import ase.io
    from ase.io.formats import ioformats

    if fmt not in ioformats:
        raise ConfigError(f"unknown ASE format {fmt!r}")
    info = ioformats[fmt]
    if not info.can_write:
        raise ConfigError(f"ASE cannot write the format {fmt!r}")
    images = [cfg.to_atoms(type_map) for cfg in cfgs]
    if info.single and (len(images) != 1 or append):
        raise ConfigError(f"the ASE format {fmt!r} holds one configuration, got {len(images)}"
                          + (" (and --append)" if append else ""))
    if append and not info.isbinary and info.acceptsfd and os.path.exists(path):
        # text formats: append by concatenation
        with atomic_open(path, "w", append=True) as fh:
            ase.io.write(fh, images, format=fmt)
        return len(images)
    if not info.acceptsfd:
        raise ConfigError(f"the ASE format {fmt!r} can only be written to a file name; "
                          "mlip_py writes through a temporary file and does not support it")
    new = len(images)
    if append and os.path.exists(path):
        images = list(ase.io.iread(os.fspath(path), index=":", format=fmt)) + images
    with atomic_open(path, "wb" if info.isbinary else "w") as fh:
        ase.io.write(fh, images if not info.single else images[0], format=fmt)
    return new
