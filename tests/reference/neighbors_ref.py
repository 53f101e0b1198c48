"""Brute-force neighbour-list oracle in plain NumPy (tests only; O(N^2 x images)).

Same definition as :mod:`mlip_py.potential.neighbors`, written independently of the cell
list: every shift ``n`` in a box that is certainly large enough is tried for every pair.

Box: for a periodic row ``a`` let ``g_a`` be the dual vector of the periodic rows
(column ``a`` of the pseudo-inverse of the periodic rows), so that the ``a`` component of
any vector ``r`` in the lattice coordinates is ``r . g_a`` and ``|r . g_a| <= |r| |g_a|``.
A pair ``(i, j, n)`` with ``|r| < cutoff`` therefore has
``n_a in (f_ia - f_ja - cutoff |g_a|, f_ia - f_ja + cutoff |g_a|)``; for every ordered pair
``(i, j)`` the oracle tries this box plus one extra image on each side.

The vector, distance and test are evaluated with the same documented formula as the
library (``s = n0*L0 + n1*L1 + n2*L2``, ``r = (p_j + s) - p_i``,
``d = sqrt(x*x + y*y + z*z) < cutoff``), element-wise so that no BLAS/FMA is involved.
"""

import numpy as np


def brute_force_neighbors(lattice, positions, pbc, cutoff):
    """Return a sorted list of ``(i, j, n0, n1, n2)`` and a dict key -> (vector, distance).

    Parameters
    ----------
    lattice : (3, 3) rows; positions : (N, 3); pbc : (3,) bool; cutoff : float
    """
    lattice = np.asarray(lattice, dtype=np.float64)
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    pbc = np.asarray(pbc, dtype=bool)
    n = len(pos)
    per = np.flatnonzero(pbc)
    if len(per):
        rows = lattice[per]                       # (k, 3)
        pinv = np.linalg.pinv(rows)               # (3, k): f = p @ pinv
        frac = pos @ pinv                         # (N, k)
        reach = cutoff * np.linalg.norm(pinv, axis=0)
    pairs = {}
    for i in range(n):
        for j in range(n):
            axes = [np.zeros(1, dtype=np.int64)] * 3
            for col, a in enumerate(per):
                df = frac[i, col] - frac[j, col]
                lo = int(np.floor(df - reach[col])) - 1
                hi = int(np.ceil(df + reach[col])) + 1
                axes[a] = np.arange(lo, hi + 1, dtype=np.int64)
            grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
            g0, g1, g2 = grid[:, 0:1], grid[:, 1:2], grid[:, 2:3]
            s = g0 * lattice[0] + g1 * lattice[1] + g2 * lattice[2]
            r = (pos[j] + s) - pos[i]
            d = np.sqrt(r[:, 0] * r[:, 0] + r[:, 1] * r[:, 1] + r[:, 2] * r[:, 2])
            for k in np.flatnonzero(d < cutoff).tolist():
                key = (i, j, *map(int, grid[k]))
                if i == j and key[2:] == (0, 0, 0):
                    continue
                pairs[key] = (r[k].copy(), float(d[k]))
    return sorted(pairs), pairs


def to_csr(lattice, positions, pbc, cutoff):
    """The oracle's result in the library's CSR layout and order (by i, then j, then n)."""
    keys, pairs = brute_force_neighbors(lattice, positions, pbc, cutoff)
    n = len(np.asarray(positions).reshape(-1, 3))
    offsets = np.zeros(n + 1, dtype=np.int64)
    for k in keys:
        offsets[k[0] + 1] += 1
    offsets = np.cumsum(offsets)
    index = np.array([k[1] for k in keys], dtype=np.int64)
    shifts = np.array([k[2:] for k in keys], dtype=np.int64).reshape(-1, 3)
    vectors = np.array([pairs[k][0] for k in keys], dtype=np.float64).reshape(-1, 3)
    distances = np.array([pairs[k][1] for k in keys], dtype=np.float64)
    return offsets, index, vectors, distances, shifts


def random_cell(rng, kind, n_atoms=(2, 9), size=(2.0, 7.0), tilt=1.0, cubic=(2.5, 8.0),
                tiny_atoms=(1, 3), spread=2.5, unwrap=40, cutoff=(2.0, 6.0)):
    """A random test system ``(lattice, positions, pbc, cutoff)`` of one kind.

    Kinds: ``cubic``, ``triclinic`` (default), ``skewed`` (strongly sheared),
    ``left_handed``, ``tiny`` (cell smaller than the cutoff), ``slab``, ``wire``,
    ``cluster``, ``unwrapped`` (atoms up to ``unwrap`` cells away), ``far`` (near 1e5 A:
    round-off of fractional coordinates), ``lattice_points`` (atoms on lattice points and
    bin boundaries).  Ranges are half-open ``(low, high)`` as numpy's generators take them;
    non-periodic rows are zero and their atoms Gaussian with standard deviation
    ``spread``.
    """
    n = int(rng.integers(*n_atoms))
    lat = np.diag(rng.uniform(*size, 3)) + rng.normal(scale=tilt, size=(3, 3))
    pbc = np.ones(3, bool)
    if kind == "cubic":
        lat = np.eye(3) * rng.uniform(*cubic)
    elif kind == "skewed":
        lat = np.array([[5.0, 0, 0], [4.6, 1.2, 0], [0.3, 4.4, 1.1]]) * rng.uniform(0.8, 1.5)
    elif kind == "left_handed":
        lat = lat[[1, 0, 2]] if np.linalg.det(lat) > 0 else lat
    elif kind == "tiny":
        lat = np.diag(rng.uniform(1.2, 2.5, 3)) + rng.normal(scale=0.3, size=(3, 3))
        n = int(rng.integers(*tiny_atoms))
    elif kind == "slab":
        pbc = np.array([True, True, False])
    elif kind == "wire":
        pbc = np.array([False, True, False])
    elif kind == "cluster":
        pbc = np.zeros(3, bool)
    lat[~pbc] = 0.0
    if pbc.all():
        pos = rng.random((n, 3)) @ lat
    else:
        pos = rng.normal(scale=spread, size=(n, 3))
    if kind == "unwrapped":
        pos = pos + rng.integers(-unwrap, unwrap + 1, size=(n, 3)) @ lat
    if kind == "far":
        lat = np.diag(rng.uniform(2.5, 9.0, 3)) + rng.normal(scale=0.5, size=(3, 3))
        pos = rng.random((n, 3)) @ lat + 1e5
    if kind == "lattice_points":
        pos = rng.integers(-2, 3, size=(n, 3)) @ lat * 0.5
    return lat, pos, pbc, float(rng.uniform(*cutoff))
