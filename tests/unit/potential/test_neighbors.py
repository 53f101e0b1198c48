"""Neighbour lists (mlip_py.potential.neighbors) against a brute-force NumPy oracle.

The oracle (tests/reference/neighbors_ref.py) tries every lattice shift in a box that is
provably large enough for every ordered pair; the cell list must give the same set of
(i, j, shift), in the documented order, with the same vectors and distances.
"""
import sys
from pathlib import Path

import numpy as np
import pytest

from mlip_py.configuration import Configuration
from mlip_py.errors import ConfigError
from mlip_py.potential.neighbors import NeighborList, build_neighbors, neighbors_for

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "reference"))
from neighbors_ref import random_cell, to_csr  # noqa: E402

A_MO = 3.16


def assert_same_as_oracle(lattice, positions, pbc, cutoff):
    nl = build_neighbors(lattice, positions, pbc, cutoff)
    offsets, index, vectors, distances, shifts = to_csr(lattice, positions, pbc, cutoff)
    assert isinstance(nl, NeighborList)
    assert nl.offsets.dtype == np.int64 and nl.index.dtype == np.int64
    assert nl.shifts.dtype == np.int64 and nl.vectors.dtype == np.float64
    np.testing.assert_array_equal(nl.offsets, offsets)
    np.testing.assert_array_equal(nl.index, index)
    np.testing.assert_array_equal(nl.shifts, shifts)
    np.testing.assert_allclose(nl.vectors, vectors, rtol=0, atol=1e-12)
    np.testing.assert_allclose(nl.distances, distances, rtol=0, atol=1e-12)
    return nl


def check_symmetric(nl):
    """(i, j, n) present iff (j, i, -n) present, with opposite vectors."""
    centers = nl.centers()
    fwd = {(int(i), int(j), *map(int, s)): v
           for i, j, s, v in zip(centers, nl.index, nl.shifts, nl.vectors)}
    for (i, j, n0, n1, n2), v in fwd.items():
        back = fwd.get((j, i, -n0, -n1, -n2))
        assert back is not None, (i, j, n0, n1, n2)
        np.testing.assert_allclose(back, -v, rtol=0, atol=1e-12)


def bcc(a, reps):
    g = np.array([(i, j, k) for i in range(reps) for j in range(reps) for k in range(reps)], float)
    return np.eye(3) * a * reps, np.concatenate([g, g + 0.5]) * a


def fcc(a, reps):
    g = np.array([(i, j, k) for i in range(reps) for j in range(reps) for k in range(reps)], float)
    basis = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    return np.eye(3) * a * reps, (g[:, None, :] + basis[None]).reshape(-1, 3) * a


# ------------------------------------------------------------------ random systems
KINDS = ["cubic", "triclinic", "left_handed", "tiny", "slab", "wire", "cluster", "unwrapped"]


@pytest.mark.parametrize("kind", KINDS)
def test_random_systems_match_oracle(kind, rng):
    for _ in range(8):
        lat, pos, pbc, rc = random_cell(rng, kind)
        if kind == "left_handed":
            assert np.linalg.det(lat) < 0
        nl = assert_same_as_oracle(lat, pos, pbc, rc)
        check_symmetric(nl)


def test_pbc_false_ignores_a_nonzero_row(rng):
    lat = np.diag([3.0, 3.5, 4.0])
    pos = rng.random((5, 3)) * 3.0
    pbc = np.array([True, False, True])
    nl = assert_same_as_oracle(lat, pos, pbc, 4.5)
    assert not nl.shifts[:, 1].any()
    zeroed = lat.copy()
    zeroed[1] = 0.0
    nl2 = build_neighbors(zeroed, pos, None, 4.5)
    np.testing.assert_array_equal(nl.shifts, nl2.shifts)
    np.testing.assert_array_equal(nl.vectors, nl2.vectors)
    garbage = lat.copy()
    garbage[1] = np.nan  # a row that is not periodic is never used
    nl3 = build_neighbors(garbage, pos, pbc, 4.5)
    np.testing.assert_array_equal(nl.vectors, nl3.vectors)


def test_zero_and_one_atom():
    for lat in (np.eye(3) * 3.0, np.zeros((3, 3))):
        nl = build_neighbors(lat, np.zeros((0, 3)), None, 5.0)
        assert nl.offsets.tolist() == [0] and nl.index.shape == (0,)
        assert nl.vectors.shape == (0, 3) and nl.shifts.shape == (0, 3)
    nl = build_neighbors(np.zeros((3, 3)), [[1.0, 2.0, 3.0]], None, 5.0)
    assert nl.offsets.tolist() == [0, 0]
    # one atom in a cube: its images at |n| a < cutoff
    nl = assert_same_as_oracle(np.eye(3) * 4.0, [[0.3, 0.2, 0.1]], [True] * 3, 6.0)
    assert nl.n_pairs == 6 + 12  # |n|^2 = 1, 2 (|n| < 1.5)
    np.testing.assert_array_equal(nl.index, 0)


def test_one_atom_tiny_cell_sees_its_images():
    # 2.6 A cube, cutoff 5: images with |n| < 5/2.6 = 1.92 -> |n|^2 in {1, 2, 3}
    nl = assert_same_as_oracle(np.eye(3) * 2.6, [[0.1, 0.2, 0.3]], [True] * 3, 5.0)
    assert nl.n_pairs == 6 + 12 + 8
    assert sorted(map(tuple, nl.shifts.tolist())) == sorted(
        n for n in np.ndindex(3, 3, 3) for n in [tuple(x - 1 for x in n)] if any(n))
    np.testing.assert_allclose(nl.vectors, nl.shifts @ (np.eye(3) * 2.6), atol=1e-14)


def test_thin_and_far_cells():
    # nearly flat cell (many images along the thin direction)
    assert_same_as_oracle(np.diag([4.0, 4.5, 0.4]), [[0.0, 0.0, 0.0], [2.0, 2.2, 0.1]],
                          [True] * 3, 3.0)
    # atoms a million Angstrom away: same neighbours as the wrapped ones, other shifts
    lat = np.array([[3.0, 0.1, 0.0], [0.4, 3.3, 0.0], [0.2, -0.3, 3.1]])
    pos = np.array([[0.1, 0.2, 0.3], [1.5, 1.4, 1.6], [2.0, 0.5, 2.5]])
    far = np.array([[300000, -200000, 5], [-7, 330000, 0], [0, 0, -290000]])
    nl = build_neighbors(lat, pos, None, 5.0)
    nlf = build_neighbors(lat, pos + far @ lat, None, 5.0)
    np.testing.assert_array_equal(nl.offsets, nlf.offsets)
    np.testing.assert_array_equal(nl.index, nlf.index)
    centers = nl.centers()
    np.testing.assert_array_equal(nlf.shifts, nl.shifts + far[centers] - far[nl.index])
    np.testing.assert_allclose(nlf.vectors, nl.vectors, atol=1e-9)


def test_sparse_cluster_and_big_empty_cell():
    # bin grid must not explode for a cluster spread over 1e4 A or a huge periodic cell
    pos = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1e4, 1e4, 1e4], [1e4, 1e4, 1e4 + 2]])
    nl = assert_same_as_oracle(np.zeros((3, 3)), pos, [False] * 3, 3.0)
    assert nl.counts.tolist() == [1, 1, 1, 1]
    nl = assert_same_as_oracle(np.eye(3) * 1000.0, pos[:2], [True] * 3, 3.0)
    assert nl.counts.tolist() == [1, 1]


# ---------------------------------------------------------- hand-countable cases
@pytest.mark.parametrize("reps", [1, 3])
def test_bcc_mo_26_neighbours(reps):
    lat, pos = bcc(A_MO, reps)
    nl = build_neighbors(lat, pos, None, 5.0)
    assert (nl.counts == 8 + 6 + 12).all()
    shells = np.sort(nl.distances.reshape(len(pos), -1), axis=1)[0]
    expected = np.repeat([A_MO * np.sqrt(3) / 2, A_MO, A_MO * np.sqrt(2)], [8, 6, 12])
    np.testing.assert_allclose(shells, expected, atol=1e-12)
    check_symmetric(nl)


def test_fcc_first_shell_12():
    lat, pos = fcc(4.0, 2)
    nl = build_neighbors(lat, pos, None, 3.5)  # shells at 2.83, 4.0
    assert (nl.counts == 12).all()
    np.testing.assert_allclose(nl.distances, 4.0 / np.sqrt(2), atol=1e-12)
    # primitive fcc cell (1 atom, triclinic, smaller than 2 cutoff)
    prim = 2.0 * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]], float)
    nl = assert_same_as_oracle(prim, [[0.0, 0.0, 0.0]], [True] * 3, 3.5)
    assert nl.n_pairs == 12


def test_block_order_is_j_then_shift(rng):
    lat = np.diag([2.7, 2.9, 3.1]) + rng.normal(scale=0.2, size=(3, 3))
    pos = rng.random((4, 3)) @ lat
    nl = build_neighbors(lat, pos, None, 6.0)
    for i in range(nl.n_atoms):
        idx, _, _, sh = nl.of(i)
        keys = [(int(j), *map(int, s)) for j, s in zip(idx, sh)]
        assert keys == sorted(keys) and len(set(keys)) == len(keys)


def test_vectors_use_the_documented_formula(rng):
    lat = np.diag([3.1, 3.3, 2.9]) + rng.normal(scale=0.3, size=(3, 3))
    pos = rng.random((6, 3)) @ lat + 10.0
    nl = build_neighbors(lat, pos, None, 5.5)
    n = nl.shifts.astype(np.float64)
    s = n[:, :1] * lat[0] + n[:, 1:2] * lat[1] + n[:, 2:3] * lat[2]
    r = (pos[nl.index] + s) - pos[nl.centers()]
    np.testing.assert_array_equal(nl.vectors, r)
    d = np.sqrt(r[:, 0] * r[:, 0] + r[:, 1] * r[:, 1] + r[:, 2] * r[:, 2])
    np.testing.assert_array_equal(nl.distances, d)
    assert (nl.distances < 5.5).all()


def test_cutoff_is_strict():
    lat = np.eye(3) * 3.0
    nl = build_neighbors(lat, [[0.0, 0.0, 0.0]], None, 3.0)
    assert nl.n_pairs == 0
    nl = build_neighbors(lat, [[0.0, 0.0, 0.0]], None, np.nextafter(3.0, 4.0))
    assert nl.n_pairs == 6


def test_neighbors_for_configuration():
    lat, pos = bcc(A_MO, 4)
    lat[2] = 0.0  # slab 4 conventional cells thick: surface atoms lose neighbours
    cfg = Configuration(lattice=lat, positions=pos, types=np.zeros(len(pos), int))
    nl = neighbors_for(cfg, 5.0)
    ref = build_neighbors(lat, pos, [True, True, False], 5.0)
    np.testing.assert_array_equal(nl.index, ref.index)
    np.testing.assert_array_equal(nl.vectors, ref.vectors)
    assert not nl.shifts[:, 2].any()
    assert nl.counts.min() < 26 and nl.counts.max() == 26
    z = pos[:, 2]
    assert (nl.counts[(z > 4.5) & (z < 8.0)] == 26).all()
    assert (nl.counts[z < 0.1] == 4 + 5 + 8).all()  # 4 of 8, 5 of 6, 8 of 12


@pytest.mark.parametrize("lattice, pbc, positions, cutoff, match", [
    (np.zeros((3, 3)), [True, False, False], [[0, 0, 0]], 5.0, "zero or not finite"),
    (np.array([[1.0, 0, 0], [2.0, 0, 0], [0, 0, 0]]), None, [[0, 0, 0]], 5.0, "parallel"),
    (np.array([[1.0, 0, 0], [0, 1.0, 0], [1.0, 1.0, 0]]), None, [[0, 0, 0]], 5.0,
     "linearly dependent"),
    (np.eye(3), None, [[0, np.nan, 0]], 5.0, "not finite"),
    (np.array([[np.inf, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]), None, [[0, 0, 0]], 5.0, "not finite"),
    (np.eye(3), None, [[0, 0, 0]], 0.0, "cutoff"),
    (np.eye(3), None, [[0, 0, 0]], np.inf, "cutoff"),
    (np.eye(3), None, [0, 0], 5.0, "shape"),
    (np.diag([1.0, 1.0, 1e-6]), None, [[0, 0, 0]], 5.0, "too thin"),
    (np.eye(3), None, [[1e17, 0, 0]], 5.0, "too far"),
])
def test_bad_input_raises_config_error(lattice, pbc, positions, cutoff, match):
    with pytest.raises(ConfigError, match=match):
        build_neighbors(lattice, positions, pbc, cutoff)


# ------------------------------------------------------------ golden configurations
def _read_cfgs(path):
    """(lattice, positions, desc) of every configuration of a .cfg file."""
    from mlip_py.io.cfg import read_cfg

    return [(c.lattice, c.positions, c.features.get("desc", "")) for c in read_cfg(path)]


@pytest.mark.parametrize("name", ["efs_set_Mo.cfg", "efs_set_NaCl.cfg", "efs_set_PdAg_3sp.cfg"])
def test_golden_configurations_match_oracle(golden, name):
    cfgs = _read_cfgs(golden(name))
    assert len(cfgs) >= 20
    for lat, pos, desc in cfgs:
        pbc = np.any(lat != 0.0, axis=1)
        if len(pos) <= 60:
            nl = assert_same_as_oracle(lat, pos, pbc, 5.0)
        else:
            nl = build_neighbors(lat, pos, pbc, 5.0)
        check_symmetric(nl)


def test_golden_perfect_bcc_cases_all_have_bcc_shells(golden):
    """Cases that MLIP-2 gives the same energy per atom are perfect bcc: same 26 shells."""
    cfgs = {desc: (lat, pos) for lat, pos, desc in _read_cfgs(golden("efs_set_Mo.cfg"))}
    expected = np.repeat([A_MO * np.sqrt(3) / 2, A_MO, A_MO * np.sqrt(2)], [8, 6, 12])
    for desc in ("conventional_cubic_cell_smaller_than_2rc", "primitive_cell_nonorthogonal",
                 "unwrapped_positions_outside_cell", "rotated_cell"):
        lat, pos = cfgs[desc]
        nl = build_neighbors(lat, pos, None, 5.0)
        assert (nl.counts == 26).all(), desc
        d = np.sort(nl.distances.reshape(len(pos), 26), axis=1)
        np.testing.assert_allclose(d, np.broadcast_to(expected, d.shape), atol=1e-8, err_msg=desc)
