"""HDF5 configuration store (``--output-format=hdf5``; needs h5py).

A lossless, compressed, appendable container for many configurations with fast random
access.  Layout (all datasets chunked, gzip-compressed with shuffle, resizable along the
first axis; ``n`` configurations, ``M`` atoms in total):

===================  ==============  ======================================================
dataset              shape, dtype    content
===================  ==============  ======================================================
``offsets``          (n+1,) int64    atoms of configuration ``i`` are rows
                                     ``offsets[i]:offsets[i+1]`` of the per-atom arrays
``types``            (M,) int32      0-based types
``positions``        (M, 3) float64  Cartesian, Angstrom
``forces``           (M, 3) float64  eV/Angstrom (NaN where ``has_forces`` is false)
``site_energies``    (M,) float64    eV (NaN where ``has_site_energies`` is false)
``charges``          (M,) float64    (NaN where ``has_charges`` is false)
``lattice``          (n, 3, 3)       lattice vectors as rows (zero row = not periodic)
``energy``           (n,) float64    eV (NaN where ``has_energy`` is false)
``plus_stress``      (n, 6) float64  virial in eV, order xx yy zz yz xz xy (NaN where
                                     ``has_plus_stress`` is false)
``has_<quantity>``   (n,) bool       which optional quantities a configuration has
``features``         (n,) str        JSON list of ``[key, value]`` pairs (order kept)
===================  ==============  ======================================================

File attributes: ``format = "mlip_py.configurations"``, ``format_version = 1``,
``units = "eV, Angstrom; plus_stress = virial in eV"``.  Every double is stored as is, so
``cfg -> h5 -> cfg`` is bit-exact.

Writing is atomic: a new file (or, with ``append=True``, a copy of the existing one that
is then extended) is written beside the target and renamed over it on success, like
:func:`mlip_py.io._atomic.atomic_open` does for text files.  Appending therefore costs a
copy of the existing file.

:class:`ConfigurationStore` reads lazily: ``store[i]`` / ``store[a:b]`` read only the rows
of those configurations; iteration reads blocks of configurations; a store can be pickled
(it reopens the file by path when unpickled, e.g. in a worker process).
"""
from __future__ import annotations

import contextlib
import json
import os

import numpy as np

from ..configuration import Configuration
from ..errors import FormatError
from ._atomic import atomic_path

FORMAT = "mlip_py.configurations"
FORMAT_VERSION = 1
UNITS = "eV, Angstrom; plus_stress = virial in eV"

_ATOM_CHUNK = 16384
_CFG_CHUNK = 1024
_PER_ATOM = {  # name -> (trailing shape, dtype)
    "types": ((), np.int32),
    "positions": ((3,), np.float64),
    "forces": ((3,), np.float64),
    "site_energies": ((), np.float64),
    "charges": ((), np.float64),
}
_PER_CFG = {
    "lattice": ((3, 3), np.float64),
    "energy": ((), np.float64),
    "plus_stress": ((6,), np.float64),
}
_OPTIONAL_ATOM = ("forces", "site_energies", "charges")
_OPTIONAL_CFG = ("energy", "plus_stress")


def _h5py():
    try:
        import h5py
    except ImportError as err:  # pragma: no cover - h5py is a dependency
        raise ImportError("the hdf5 format needs h5py ('pip install h5py')") from err
    return h5py


def _create_layout(f):
    h5py = _h5py()
    f.attrs["format"] = FORMAT
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["units"] = UNITS
    comp = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    f.create_dataset("offsets", shape=(1,), maxshape=(None,), dtype=np.int64,
                     chunks=(_CFG_CHUNK,), data=np.zeros(1, dtype=np.int64), **comp)
    for name, (shape, dtype) in _PER_ATOM.items():
        f.create_dataset(name, shape=(0,) + shape, maxshape=(None,) + shape, dtype=dtype,
                         chunks=(_ATOM_CHUNK,) + shape, **comp)
    for name, (shape, dtype) in _PER_CFG.items():
        f.create_dataset(name, shape=(0,) + shape, maxshape=(None,) + shape, dtype=dtype,
                         chunks=(_CFG_CHUNK,) + shape, **comp)
    for name in _OPTIONAL_ATOM + _OPTIONAL_CFG:
        f.create_dataset("has_" + name, shape=(0,), maxshape=(None,), dtype=bool,
                         chunks=(_CFG_CHUNK,), **comp)
    f.create_dataset("features", shape=(0,), maxshape=(None,), dtype=h5py.string_dtype("utf-8"),
                     chunks=(_CFG_CHUNK,), **comp)


def _check_layout(f, path):
    fmt = f.attrs.get("format")
    if isinstance(fmt, bytes):
        fmt = fmt.decode("utf-8", "replace")
    if fmt != FORMAT:
        raise FormatError(f"not an mlip_py configuration store: file attribute format={fmt!r}, "
                          f"expected {FORMAT!r}", path)
    ver = f.attrs.get("format_version")
    if ver is None or int(ver) != FORMAT_VERSION:
        raise FormatError(f"unsupported configuration store version {ver!r} (this mlip_py reads "
                          f"version {FORMAT_VERSION})", path)
    names = ["offsets", "features", *_PER_ATOM, *_PER_CFG, *("has_" + x for x in _OPTIONAL_ATOM + _OPTIONAL_CFG)]
    missing = [x for x in names if x not in f]
    if missing:
        raise FormatError(f"configuration store lacks the datasets {missing}", path)
    n = f["offsets"].shape[0] - 1
    for name in (*_PER_CFG, "features", *("has_" + x for x in _OPTIONAL_ATOM + _OPTIONAL_CFG)):
        if f[name].shape[0] != n:
            raise FormatError(f"dataset {name!r} has {f[name].shape[0]} rows for {n} configurations",
                              path)
    m = int(f["offsets"][-1]) if n >= 0 else 0
    for name in _PER_ATOM:
        if f[name].shape[0] != m:
            raise FormatError(f"dataset {name!r} has {f[name].shape[0]} rows for {m} atoms", path)


def _open_read(path):
    h5py = _h5py()
    path = os.fspath(path)
    try:
        f = h5py.File(path, "r")
    except FileNotFoundError:
        raise
    except OSError as err:
        if not os.path.exists(path):
            raise FileNotFoundError(2, "No such file or directory", path) from None
        raise FormatError(f"not an HDF5 file ({err})", path) from None
    try:
        _check_layout(f, path)
    except BaseException:
        f.close()
        raise
    return f


def _flush_block(f, block):
    """Append a list of configurations to the open store ``f``."""
    if not block:
        return
    n0 = f["offsets"].shape[0] - 1
    m0 = int(f["offsets"][-1])
    sizes = np.array([len(c) for c in block], dtype=np.int64)
    nb, mb = len(block), int(sizes.sum())
    offsets = m0 + np.cumsum(sizes)

    per_atom = {
        "types": np.empty(mb, dtype=np.int32),
        "positions": np.empty((mb, 3)),
        "forces": np.full((mb, 3), np.nan),
        "site_energies": np.full(mb, np.nan),
        "charges": np.full(mb, np.nan),
    }
    per_cfg = {
        "lattice": np.empty((nb, 3, 3)),
        "energy": np.full(nb, np.nan),
        "plus_stress": np.full((nb, 6), np.nan),
    }
    has = {name: np.zeros(nb, dtype=bool) for name in _OPTIONAL_ATOM + _OPTIONAL_CFG}
    feats = []
    start = 0
    for k, c in enumerate(block):
        stop = start + len(c)
        per_atom["types"][start:stop] = c.types
        per_atom["positions"][start:stop] = c.positions
        for name in _OPTIONAL_ATOM:
            value = getattr(c, name)
            if value is not None:
                per_atom[name][start:stop] = value
                has[name][k] = True
        per_cfg["lattice"][k] = c.lattice
        if c.energy is not None:
            per_cfg["energy"][k] = c.energy
            has["energy"][k] = True
        if c.plus_stress is not None:
            per_cfg["plus_stress"][k] = c.plus_stress
            has["plus_stress"][k] = True
        feats.append(json.dumps([[str(a), str(b)] for a, b in c.features.items()], ensure_ascii=False))
        start = stop

    def extend(name, data, n_old):
        ds = f[name]
        ds.resize(n_old + len(data), axis=0)
        ds[n_old:n_old + len(data)] = data

    extend("offsets", offsets, n0 + 1)
    for name, data in per_atom.items():
        extend(name, data, m0)
    for name, data in per_cfg.items():
        extend(name, data, n0)
    for name, data in has.items():
        extend("has_" + name, data, n0)
    extend("features", np.array(feats, dtype=object), n0)


def write_hdf5(path, cfgs, append=False, block=_CFG_CHUNK):
    """Write configurations to an HDF5 store (atomically).

    Parameters
    ----------
    path : str or os.PathLike
    cfgs : iterable of Configuration
        Consumed block by block (``block`` configurations in memory at a time).
    append : bool
        Add to an existing store (which must be a valid store) instead of replacing it.

    Returns
    -------
    int
        Number of configurations written.
    """
    h5py = _h5py()
    count = 0
    with atomic_path(path, copy_existing=append) as (tmp, existing):
        if existing:
            try:
                f = h5py.File(tmp, "a")
            except OSError as err:
                raise FormatError(f"cannot append: not an HDF5 file ({err})", os.fspath(path)) from None
            try:
                _check_layout(f, os.fspath(path))
            except BaseException:
                f.close()
                raise
        else:
            f = h5py.File(tmp, "w")
            _create_layout(f)
        with f:
            buf = []
            for cfg in cfgs:
                buf.append(cfg)
                if len(buf) >= block:
                    _flush_block(f, buf)
                    count += len(buf)
                    buf = []
            _flush_block(f, buf)
            count += len(buf)
    return count


class ConfigurationStore:
    """Lazy, read-only view of an HDF5 configuration store.

    Parameters
    ----------
    path : str or os.PathLike
    block : int
        Configurations read at a time when iterating.

    Examples
    --------
    >>> store = ConfigurationStore("train.h5")     # doctest: +SKIP
    >>> len(store), store[0].energy, store[10:20]  # doctest: +SKIP
    """

    def __init__(self, path, block=_CFG_CHUNK):
        self.path = os.fspath(path)
        self.block = int(block)
        self._open()

    def _open(self):
        self._file = _open_read(self.path)
        self._offsets = self._file["offsets"][:]

    # pickling: reopen by path
    def __getstate__(self):
        return {"path": self.path, "block": self.block}

    def __setstate__(self, state):
        self.path = state["path"]
        self.block = state["block"]
        self._open()

    def close(self):
        """Close the underlying file (the store can no longer be read)."""
        f = getattr(self, "_file", None)
        if f is not None:
            f.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):  # pragma: no cover - best effort
        with contextlib.suppress(Exception):
            self.close()

    def __len__(self):
        return len(self._offsets) - 1

    @property
    def n_atoms(self):
        """Number of atoms in all configurations."""
        return int(self._offsets[-1])

    def sizes(self):
        """Number of atoms of every configuration (read from the offsets only)."""
        return np.diff(self._offsets)

    def __getitem__(self, index):
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step == 1:
                return self._read_range(start, stop) if stop > start else []
            return [self._read_range(i, i + 1)[0] for i in range(start, stop, step)]
        try:
            i = int(index)
        except TypeError:
            raise TypeError(f"store indices must be integers or slices, not {type(index).__name__}") from None
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"configuration index {index} out of range for a store of {n}")
        return self._read_range(i, i + 1)[0]

    def __iter__(self):
        for start in range(0, len(self), self.block):
            yield from self._read_range(start, min(start + self.block, len(self)))

    def _read_range(self, start, stop):
        f = self._file
        if f is None:
            raise ValueError("the store is closed")
        a, b = int(self._offsets[start]), int(self._offsets[stop])
        atoms = {name: f[name][a:b] for name in _PER_ATOM}
        cfgd = {name: f[name][start:stop] for name in _PER_CFG}
        has = {name: f["has_" + name][start:stop] for name in _OPTIONAL_ATOM + _OPTIONAL_CFG}
        feats = f["features"][start:stop]
        out = []
        for k in range(stop - start):
            lo = int(self._offsets[start + k]) - a
            hi = int(self._offsets[start + k + 1]) - a
            text = feats[k]
            if isinstance(text, bytes):
                text = text.decode("utf-8")
            try:
                features = dict(json.loads(text)) if text else {}
            except (ValueError, TypeError):
                raise FormatError(f"configuration {start + k}: features are not valid JSON", self.path) from None
            out.append(Configuration(
                lattice=cfgd["lattice"][k],
                positions=atoms["positions"][lo:hi],
                types=atoms["types"][lo:hi].astype(np.int64),
                energy=float(cfgd["energy"][k]) if has["energy"][k] else None,
                forces=atoms["forces"][lo:hi] if has["forces"][k] else None,
                plus_stress=cfgd["plus_stress"][k] if has["plus_stress"][k] else None,
                site_energies=atoms["site_energies"][lo:hi] if has["site_energies"][k] else None,
                charges=atoms["charges"][lo:hi] if has["charges"][k] else None,
                features=features,
            ))
        return out


def iter_hdf5(path):
    """Yield the configurations of an HDF5 store in order (read block by block)."""
    store = ConfigurationStore(path)
    try:
        yield from store
    finally:
        store.close()


def read_hdf5(path):
    """All configurations of an HDF5 store as a list."""
    return list(iter_hdf5(path))
