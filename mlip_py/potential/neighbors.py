"""Neighbour lists with MLIP-2's semantics (CSR layout), linear cost in the number of atoms.

Semantics (mlip-formats.md §1.3, §1.4)
--------------------------------------
* Periodicity is per lattice **row**: ``lattice[a]`` is periodic iff ``pbc[a]``; by
  default ``pbc[a]`` is "row ``a`` is not exactly zero" (no ``Supercell`` = cluster,
  2 rows = slab, 1 row = wire).  A row marked periodic must be non-zero and the periodic
  rows must be linearly independent; a row not marked periodic is ignored whatever it
  holds (ASE-style ``pbc=False`` with a cell).
* For every original atom ``i`` the neighbours are **all** images
  ``j' = r_j + n0 a0 + n1 a1 + n2 a2`` (``n_a`` any integer along periodic rows, 0 along the
  others) with ``|r_j' - r_i| < cutoff`` (strict), including images of ``i`` itself but not
  ``i`` itself (``j == i`` with ``n == 0``).  So cells thinner than ``2 cutoff`` (even thinner
  than ``cutoff``: one atom in a 2.6 A cube with cutoff 5 sees 26 images of itself),
  triclinic and left-handed cells (``det < 0``) and unwrapped positions (atoms outside
  the cell) all work; positions are never wrapped.
* Numerics, fixed so results are reproducible bit for bit (given IEEE double arithmetic
  without fused multiply-add contraction):
  ``s = n0*L[0] + n1*L[1] + n2*L[2]`` (component-wise, left to right),
  ``r_ij = (r_j + s) - r_i``, ``d_ij = sqrt(x*x + y*y + z*z)`` and the pair is kept iff
  ``d_ij < cutoff``.  ``vectors`` and ``distances`` are exactly these numbers.
* Order: neighbours of atom ``i`` are ``index[offsets[i]:offsets[i+1]]``, sorted by
  ``(j, n0, n1, n2)`` ascending.  The list is not symmetric in storage but symmetric in
  content: ``(i, j, n)`` is present iff ``(j, i, -n)`` is.

Note on MLIP-2: as described in mlip-formats.md §1.4, its ghost-shell loop stops at the
first shell of images that adds no ghost; for atoms placed many cells apart from each
other (cell longer than the cutoff) that loop would miss images that the definition above
includes (inferred from the description, not checked against the binary).  For atoms
inside or near the cell both agree.

Algorithm: a cell list (binning) in :mod:`mlip_py._cext._neighbors`; see its docstring.
Memory and time are linear in the number of atoms plus the number of pairs.  Up to
:data:`DIRECT_MAX_ATOMS` atoms the all-pairs kernel ``build_direct`` (same result bit for
bit, cheaper for the small cells of training and candidate sets) is used instead.

:func:`build_neighbors` validates its arguments and returns a :class:`NeighborList`;
:func:`csr_for` is the lean path for validated
:class:`~mlip_py.configuration.Configuration` objects (only the CSR arrays an MTP kernel
needs, no per-call validation beyond what the kernels check themselves).
"""
from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from .._cext import load
from ..errors import ConfigError

#: an atom may see at most this many lattice images within the cutoff (guards against
#: nearly flat cells or absurd cutoffs exhausting memory)
MAX_IMAGES = 20_000_000

#: configurations with at most this many atoms use the all-pairs kernel (O(N^2), faster
#: than binning for small cells: measured 0.7-1 us/atom vs 1.3-2.2 us/atom at N = 16-54)
DIRECT_MAX_ATOMS = 96


@functools.cache
def _kernel():
    return load("_neighbors")


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class NeighborList:
    """Neighbours of every atom in CSR layout (see the module docstring).

    Attributes
    ----------
    offsets : (N+1,) int64
        Neighbours of atom ``i`` are the rows ``offsets[i]:offsets[i+1]``.
    index : (M,) int64
        Original index ``j`` of each neighbour.
    vectors : (M, 3) float64
        ``r_ij = (r_j + shift @ lattice) - r_i`` (evaluated as documented above).
    distances : (M,) float64
        ``|r_ij|``, all ``< cutoff``.
    shifts : (M, 3) int64
        Lattice-image integers ``n`` of the neighbour (0 along non-periodic rows).
    cutoff : float
        The cutoff the list was built with.
    """

    offsets: np.ndarray
    index: np.ndarray
    vectors: np.ndarray
    distances: np.ndarray
    shifts: np.ndarray
    cutoff: float

    @property
    def n_atoms(self):
        """Number of (central) atoms."""
        return len(self.offsets) - 1

    @property
    def n_pairs(self):
        """Total number of (directed) pairs M."""
        return len(self.index)

    @property
    def counts(self):
        """(N,) number of neighbours of each atom."""
        return np.diff(self.offsets)

    def centers(self):
        """(M,) index ``i`` of the central atom of every pair."""
        return np.repeat(np.arange(self.n_atoms, dtype=np.int64), self.counts)

    def of(self, i):
        """``(index, vectors, distances, shifts)`` of atom ``i`` (views)."""
        sl = slice(int(self.offsets[i]), int(self.offsets[i + 1]))
        return self.index[sl], self.vectors[sl], self.distances[sl], self.shifts[sl]


def build_neighbors(lattice, positions, pbc=None, cutoff=None):
    """Build the neighbour list of a (partially) periodic configuration.

    Parameters
    ----------
    lattice : array_like (3, 3)
        Lattice vectors as rows.
    positions : array_like (N, 3)
        Cartesian positions (need not lie inside the cell).
    pbc : array_like (3,) of bool, optional
        Periodicity per lattice row; default: row is not exactly zero.
    cutoff : float
        Neighbour cutoff (strict ``d < cutoff``), > 0.

    Returns
    -------
    NeighborList

    Raises
    ------
    ConfigError
        Bad shapes, non-finite values, a zero or linearly dependent periodic row, a
        non-positive cutoff, or more than :data:`MAX_IMAGES` images per atom.
    """
    lattice = np.ascontiguousarray(lattice, dtype=np.float64)
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    if lattice.shape != (3, 3):
        raise ConfigError(f"lattice must have shape (3, 3), got {lattice.shape}")
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ConfigError(f"positions must have shape (N, 3), got {positions.shape}")
    if cutoff is None:
        raise ConfigError("build_neighbors needs a cutoff")
    cutoff = float(cutoff)
    if not (math.isfinite(cutoff) and cutoff > 0.0):
        raise ConfigError(f"cutoff must be a positive finite number, got {cutoff}")
    if pbc is None:
        pbc = (lattice != 0.0).any(axis=1)
    pbc = np.ascontiguousarray(pbc, dtype=np.uint8).reshape(-1)
    if pbc.shape != (3,):
        raise ConfigError(f"pbc must have 3 entries, got {pbc.shape[0]}")
    try:
        offsets, index, vectors, distances, shifts = _build(lattice, positions, pbc, cutoff)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return NeighborList(offsets=offsets, index=index, vectors=vectors, distances=distances,
                        shifts=shifts, cutoff=cutoff)


def _build(lattice, positions, pbc, cutoff):
    """The kernel call: ``(offsets, index, vectors, distances, shifts)`` (arguments checked)."""
    k = _kernel()
    n = len(positions)
    if n <= DIRECT_MAX_ATOMS:
        res = k.build_direct(lattice, positions, pbc, cutoff, MAX_IMAGES)
        if res is not None:
            return res
    return k.build(lattice, positions, pbc, cutoff, max(8, 2 * n), MAX_IMAGES)


def csr_for(cfg, cutoff):
    """``(offsets, index, vectors)`` of a validated Configuration (lean path, no NeighborList).

    Same arrays as ``neighbors_for(cfg, cutoff)`` (pbc = non-zero lattice rows); meant for
    loops over many configurations read from files, where the per-call validation of
    :func:`build_neighbors` would cost more than the search itself.  ``cutoff`` must be a
    positive finite float.  Raises ConfigError like :func:`build_neighbors`.
    """
    lattice = cfg.lattice
    positions = cfg.positions
    if not (type(lattice) is np.ndarray and lattice.dtype == np.float64
            and lattice.flags.c_contiguous and lattice.shape == (3, 3)):
        lattice = np.ascontiguousarray(lattice, dtype=np.float64)
        if lattice.shape != (3, 3):
            raise ConfigError(f"lattice must have shape (3, 3), got {lattice.shape}")
    if not (type(positions) is np.ndarray and positions.dtype == np.float64
            and positions.flags.c_contiguous and positions.ndim == 2
            and positions.shape[1] == 3):
        positions = np.ascontiguousarray(positions, dtype=np.float64)
        if positions.ndim != 2 or positions.shape[1] != 3:
            raise ConfigError(f"positions must have shape (N, 3), got {positions.shape}")
    k = _kernel()
    try:
        if len(positions) <= DIRECT_MAX_ATOMS:
            res = k.build_direct(lattice, positions, None, cutoff, MAX_IMAGES, False)
            if res is not None:
                return res
        pbc = (lattice != 0.0).any(axis=1).view(np.uint8)
        res = k.build(lattice, positions, pbc, cutoff, max(8, 2 * len(positions)), MAX_IMAGES)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return res[0], res[1], res[2]


def neighbors_for(cfg, cutoff):
    """Neighbour list of a :class:`~mlip_py.configuration.Configuration` (pbc = non-zero rows)."""
    return build_neighbors(cfg.lattice, cfg.positions, cfg.pbc, cutoff)
