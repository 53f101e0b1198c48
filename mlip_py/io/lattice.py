"""Lattice geometry helpers: MLIP-2's ``--fix-lattice`` (``CorrectSupercell``) and ``mindist``.

Conventions (as in :mod:`mlip_py.configuration`): lattice vectors are the **rows** of a
(3, 3) array, positions are Cartesian rows, ``p = f @ L`` for fractional ``f``; a zero
lattice row means "not periodic along that row".

``fix_lattice`` (``mlp convert-cfg --fix-lattice``, ``mlp fix-lattice``) does, for a fully
periodic configuration:

1. Gauss (pairwise) reduction of the lattice: for each pair of rows, while the longer one
   plus or minus the shorter one is strictly shorter, replace it (the lattice, i.e. the set
   of points, is unchanged; only its basis is).
2. Fractional coordinates with respect to the reduced basis (``f = p @ inv(L)``, the
   inverse computed explicitly from cofactors so the result does not depend on the
   LAPACK in use), wrapped into ``[0, 1)`` with ``f - floor(f)``.
3. The new lattice is the lower-triangular matrix with positive diagonal that has the same
   Gram matrix (the Cholesky factor of ``L L^T``): ``a' = (|a|, 0, 0)``, ``b'`` in the xy
   plane with ``b'_y > 0``, ``c'_z > 0``.  Positions become ``f @ L'``; forces and the
   PlusStress are transformed with the same orthogonal map ``Q = inv(L) @ L'``
   (``F' = F Q``, ``S' = Q^T S Q``).  For a left-handed input cell ``Q`` is improper (a
   reflection), as in the original.

This reproduces the original's output digit for digit on the reference files.  The
original writes NaN lattices and positions for configurations that are not periodic
along all three rows; here such configurations are returned **unchanged**.

``mindist`` is the smallest distance between two atoms, counting periodic images shifted by
up to one lattice vector (``-1, 0, 1``) along every periodic row; ``MINDIST_NONE``
(9.9e99, the original's sentinel) when there is no pair (a single atom without periodicity).
"""
from __future__ import annotations

import numpy as np

#: value MLIP-2 reports when a configuration has no pair of atoms at all
MINDIST_NONE = 9.9e99


def _dot(u, v):
    return u[0] * v[0] + u[1] * v[1] + u[2] * v[2]


def gauss_reduce(lattice):
    """Return a pairwise-reduced basis of the same lattice (rows are lattice vectors).

    For every pair of rows ``(i, j)``, ``i < j``, the longer vector (``j`` on a tie) is
    replaced by ``long + short`` or ``long - short`` while that is strictly shorter; the
    pass is repeated until nothing changes (Lagrange-Gauss reduction of every pair).

    Parameters
    ----------
    lattice : array_like, shape (3, 3)
        Lattice vectors as rows; all three must be non-zero.

    Returns
    -------
    numpy.ndarray, shape (3, 3)
    """
    lat = np.array(lattice, dtype=np.float64).reshape(3, 3)
    changed = True
    guard = 0
    while changed:
        changed = False
        guard += 1
        if guard > 100000:  # cannot happen for a non-degenerate lattice (lengths decrease)
            raise ValueError("lattice reduction does not terminate (degenerate lattice?)")
        for i, j in ((0, 1), (0, 2), (1, 2)):
            if _dot(lat[i], lat[i]) > _dot(lat[j], lat[j]):
                long, short = i, j
            else:
                long, short = j, i
            for sign in (1.0, -1.0):
                v = lat[long] + sign * lat[short]
                if _dot(v, v) < _dot(lat[long], lat[long]):
                    lat[long] = v
                    changed = True
    return lat


def inverse3(m):
    """Inverse of a 3x3 matrix from its cofactors (deterministic, no LAPACK)."""
    a = np.asarray(m, dtype=np.float64)
    cof = np.empty((3, 3))
    cof[0, 0] = a[1, 1] * a[2, 2] - a[1, 2] * a[2, 1]
    cof[0, 1] = a[0, 2] * a[2, 1] - a[0, 1] * a[2, 2]
    cof[0, 2] = a[0, 1] * a[1, 2] - a[0, 2] * a[1, 1]
    cof[1, 0] = a[1, 2] * a[2, 0] - a[1, 0] * a[2, 2]
    cof[1, 1] = a[0, 0] * a[2, 2] - a[0, 2] * a[2, 0]
    cof[1, 2] = a[0, 2] * a[1, 0] - a[0, 0] * a[1, 2]
    cof[2, 0] = a[1, 0] * a[2, 1] - a[1, 1] * a[2, 0]
    cof[2, 1] = a[0, 1] * a[2, 0] - a[0, 0] * a[2, 1]
    cof[2, 2] = a[0, 0] * a[1, 1] - a[0, 1] * a[1, 0]
    det = a[0, 0] * cof[0, 0] + a[0, 1] * cof[1, 0] + a[0, 2] * cof[2, 0]
    if det == 0.0:
        raise ValueError("singular lattice (det = 0)")
    return cof / det


def _rowmat(p, m):
    """``p @ m`` for (N, 3) rows with a fixed summation order (x, y, z)."""
    return np.stack(
        [p[:, 0] * m[0, k] + p[:, 1] * m[1, k] + p[:, 2] * m[2, k] for k in range(3)], axis=1
    ).reshape(-1, 3)


def lower_triangular_lattice(lattice):
    """The lower-triangular lattice with positive diagonal and the same Gram matrix.

    Row 0 along x, row 1 in the xy plane; this is LAMMPS' restricted triclinic box
    (``lx = L'[0,0]``, ``xy = L'[1,0]``, ``ly = L'[1,1]``, ``xz, yz, lz = L'[2]``).
    """
    a, b, c = np.asarray(lattice, dtype=np.float64).reshape(3, 3)
    out = np.zeros((3, 3))
    out[0, 0] = np.sqrt(_dot(a, a))
    out[1, 0] = _dot(a, b) / out[0, 0]
    out[1, 1] = np.sqrt(_dot(b, b) - out[1, 0] ** 2)
    out[2, 0] = _dot(a, c) / out[0, 0]
    out[2, 1] = (_dot(b, c) - out[2, 0] * out[1, 0]) / out[1, 1]
    out[2, 2] = np.sqrt(_dot(c, c) - out[2, 0] ** 2 - out[2, 1] ** 2)
    return out


def fix_lattice(cfg):
    """``CorrectSupercell``: reduce, wrap and rotate a periodic configuration (see module doc).

    Parameters
    ----------
    cfg : Configuration
        Not modified.

    Returns
    -------
    Configuration
        A new configuration; configurations that are not periodic along all three lattice
        rows are returned as an unchanged copy.
    """
    out = cfg.copy()
    if not bool(np.all(cfg.pbc)):
        return out
    reduced = gauss_reduce(cfg.lattice)
    inv = inverse3(reduced)
    new = lower_triangular_lattice(reduced)
    frac = _rowmat(cfg.positions, inv)
    frac -= np.floor(frac)
    out.positions = _rowmat(frac, new)
    out.lattice = new
    q = inv @ new  # orthogonal: maps old Cartesian rows to new ones
    if out.forces is not None:
        out.forces = _rowmat(cfg.forces, q)
    if out.plus_stress is not None:
        out.set_plus_stress_matrix(q.T @ cfg.plus_stress_matrix() @ q)
    return out


def image_shifts(lattice):
    """Cartesian shifts ``i a + j b + k c`` with ``i, j, k`` in ``{-1, 0, 1}`` along periodic rows.

    The zero shift comes first.
    """
    lat = np.asarray(lattice, dtype=np.float64).reshape(3, 3)
    ranges = [(0, -1, 1) if np.any(lat[r] != 0.0) else (0,) for r in range(3)]
    shifts = [i * lat[0] + j * lat[1] + k * lat[2]
              for i in ranges[0] for j in ranges[1] for k in ranges[2]]
    return np.array(shifts, dtype=np.float64).reshape(-1, 3)


def mindist(cfg, block=512, tree_above=256):
    """Smallest interatomic distance including images up to one lattice vector away.

    Parameters
    ----------
    cfg : Configuration
    block : int
        Atoms per block of the direct O(N^2) search (memory ~ ``block * N * 24`` bytes).
    tree_above : int
        From this many atoms on, a k-d tree (scipy) over all ``3^p * N`` image points is
        used instead (same set of images, same result up to rounding of the last bit).

    Returns
    -------
    float
        The minimum distance, or :data:`MINDIST_NONE` (9.9e99) when there is no pair.
    """
    pos = cfg.positions
    n = len(pos)
    shifts = image_shifts(cfg.lattice)
    if n == 0 or (n == 1 and len(shifts) == 1):
        return MINDIST_NONE
    if n >= tree_above:
        from scipy.spatial import cKDTree

        images = (pos[None, :, :] + shifts[:, None, :]).reshape(-1, 3)
        dist, _ = cKDTree(images).query(pos, k=2)
        return float(np.min(dist[:, 1]))
    best = MINDIST_NONE
    nonzero = shifts[1:]
    # an atom and its own images: the shortest nonzero shift
    if len(nonzero):
        best = min(best, float(np.sqrt(np.min(np.sum(nonzero * nonzero, axis=1)))))
    # pairs i < j, every shift (the shift set is symmetric, so j > i suffices)
    for start in range(0, n - 1, block):
        stop = min(start + block, n - 1)
        pi = pos[start:stop]                                   # (b, 3)
        upper = np.arange(n)[None, :] > np.arange(start, stop)[:, None]
        for s in shifts:
            d = pos[None, :, :] + s - pi[:, None, :]           # (b, n, 3)
            r2 = np.where(upper, np.einsum("ijk,ijk->ij", d, d), np.inf)
            m = float(np.min(r2))
            if m < best * best:
                best = float(np.sqrt(m))
    return best


def replicate(cfg, matrix):
    """Supercell of a configuration: new lattice ``M @ L`` for an integer matrix ``M``.

    Parameters
    ----------
    cfg : Configuration
    matrix : array_like of int, shape (3,) or (3, 3)
        Repetitions ``(nx, ny, nz)`` along the lattice rows, or a general integer
        supercell matrix (rows = new lattice vectors in units of the old ones).  A
        non-periodic (zero) lattice row can only be "repeated" once.

    Returns
    -------
    Configuration
        The atoms of every image, image by image (images in lexicographic order of their
        integer lattice offsets, atoms in their original order inside each image);
        forces, site energies and charges are copied, the energy and the PlusStress
        (extensive quantities) are multiplied by the number of images, features kept.
    """
    from ..errors import ConfigError

    m = np.asarray(matrix)
    if m.shape == (3,):
        m = np.diag(m)
    if m.shape != (3, 3) or not np.issubdtype(m.dtype, np.integer):
        raise ConfigError(f"replicate: expected 3 or 9 integers, got {matrix!r}")
    m = m.astype(np.int64)
    det = int(round(np.linalg.det(m.astype(np.float64))))
    if det == 0:
        raise ConfigError(f"replicate: the supercell matrix {m.tolist()} is singular")
    pbc = cfg.pbc
    for r in range(3):
        if not pbc[r]:
            unit = np.zeros(3, dtype=np.int64)
            unit[r] = 1
            if not (np.array_equal(m[r], unit) and np.all(m[:, r][np.arange(3) != r] == 0)):
                raise ConfigError(f"replicate: lattice row {r + 1} is not periodic (zero); it can "
                                  "only be kept once (1 along it, no mixing)")
    if np.array_equal(m, np.diag(np.diag(m))) and np.all(np.diag(m) > 0):
        d = np.diag(m)
        offsets = np.array([(i, j, k) for i in range(d[0]) for j in range(d[1]) for k in range(d[2])],
                           dtype=np.int64)
    else:
        # integer points n with n @ inv(M) in [0, 1)^3
        corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)]) @ m
        lo, hi = corners.min(axis=0), corners.max(axis=0)
        grid = np.array([(i, j, k) for i in range(lo[0], hi[0] + 1) for j in range(lo[1], hi[1] + 1)
                         for k in range(lo[2], hi[2] + 1)], dtype=np.int64)
        frac = grid @ np.linalg.inv(m.astype(np.float64))
        eps = 1e-9
        inside = np.all((frac > -eps) & (frac < 1 - eps), axis=1)
        offsets = grid[inside]
    n_img = abs(det)
    if len(offsets) != n_img:  # pragma: no cover - guarded by the tolerance above
        raise ConfigError(f"replicate: found {len(offsets)} images for |det M| = {n_img}")
    shifts = offsets.astype(np.float64) @ cfg.lattice
    out = cfg.copy()
    out.lattice = m.astype(np.float64) @ cfg.lattice
    out.positions = (cfg.positions[None, :, :] + shifts[:, None, :]).reshape(-1, 3)
    out.types = np.tile(cfg.types, n_img)
    for name in ("forces", "site_energies", "charges"):
        value = getattr(cfg, name)
        if value is not None:
            setattr(out, name, np.tile(value, (n_img,) + (1,) * (value.ndim - 1)))
    if cfg.energy is not None:
        out.energy = cfg.energy * n_img
    if cfg.plus_stress is not None:
        out.plus_stress = cfg.plus_stress * n_img
    return out
