"""The all-pairs neighbour kernel (``build_direct``) against the cell list (``build``).

``build_direct`` is used by :func:`mlip_py.potential.neighbors.build_neighbors` for small
configurations; it must return exactly the cell list's arrays (same pairs, same order,
same floating-point numbers), for every kind of cell, and the same errors.
"""
import sys
from pathlib import Path

import numpy as np
import pytest

from mlip_py.configuration import Configuration
from mlip_py.errors import ConfigError
from mlip_py.potential import neighbors as nbmod
from mlip_py.potential.neighbors import MAX_IMAGES, build_neighbors, csr_for

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "reference"))
from neighbors_ref import random_cell  # noqa: E402

K = nbmod._kernel()


def both(lat, pos, pbc, rc):
    lat = np.ascontiguousarray(lat, dtype=np.float64)
    pos = np.ascontiguousarray(pos, dtype=np.float64).reshape(-1, 3)
    pbc = np.ascontiguousarray(pbc, dtype=np.uint8)
    ref = K.build(lat, pos, pbc, rc, max(8, 2 * len(pos)), MAX_IMAGES)
    new = K.build_direct(lat, pos, pbc, rc, MAX_IMAGES)
    return ref, new


def assert_identical(lat, pos, pbc, rc):
    try:
        ref, new = both(lat, pos, pbc, rc)
    except ValueError as err:  # e.g. a random cell too thin: both kernels refuse it
        with pytest.raises(ValueError) as err2:
            K.build_direct(np.ascontiguousarray(lat, dtype=np.float64),
                           np.ascontiguousarray(pos, dtype=np.float64).reshape(-1, 3),
                           np.ascontiguousarray(pbc, dtype=np.uint8), rc, MAX_IMAGES)
        assert str(err2.value) == str(err)
        return None
    assert new is not None
    for a, b in zip(ref, new):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes()  # bit for bit (also -0.0 vs 0.0)
    return ref


def random_case(rng, kind):
    """Random systems of up to 39 atoms (the all-pairs kernel's size range)."""
    return random_cell(rng, kind, n_atoms=(1, 40), size=(2.0, 9.0), tilt=1.5,
                       cubic=(2.5, 10.0), tiny_atoms=(1, 4), spread=3.0, unwrap=1000,
                       cutoff=(1.5, 7.0))


KINDS = ["cubic", "triclinic", "skewed", "left_handed", "tiny", "slab", "wire", "cluster",
         "unwrapped", "far", "lattice_points"]


@pytest.mark.parametrize("kind", KINDS)
def test_direct_equals_cell_list(kind, rng):
    for _ in range(25):
        assert_identical(*random_case(rng, kind))


def test_pairs_exactly_at_the_cutoff():
    # simple cubic lattice constant 2.5, cutoff 5.0: |n| a = 5.0 exactly is excluded
    lat = np.eye(3) * 2.5
    ref = assert_identical(lat, [[0.0, 0.0, 0.0]], [1, 1, 1], 5.0)
    assert not (ref[3] >= 5.0).any()
    assert_identical(lat, [[0.0, 0.0, 0.0]], [1, 1, 1], np.nextafter(5.0, 6.0))
    # two atoms at distance exactly the cutoff in a cluster
    assert_identical(np.zeros((3, 3)), [[0, 0, 0], [3.0, 4.0, 0.0]], [0, 0, 0], 5.0)


def test_empty_one_atom_and_mo_cells():
    assert_identical(np.eye(3) * 3.0, np.zeros((0, 3)), [1, 1, 1], 5.0)
    assert_identical(np.zeros((3, 3)), [[1.0, 2.0, 3.0]], [0, 0, 0], 5.0)
    assert_identical(np.eye(3) * 2.6, [[0.1, 0.2, 0.3]], [1, 1, 1], 5.0)
    g = np.array([(i, j, k) for i in range(3) for j in range(3) for k in range(3)], float)
    pos = np.concatenate([g, g + 0.5]) * 3.16
    assert_identical(np.eye(3) * 9.48, pos + 0.01 * np.sin(np.arange(pos.size)).reshape(-1, 3),
                     [1, 1, 1], 5.0)


def test_same_errors_and_fallback():
    # errors are raised by both kernels with the same message
    for lat, pbc in [(np.zeros((3, 3)), [1, 0, 0]),
                     (np.array([[1.0, 0, 0], [2.0, 0, 0], [0, 0, 1.0]]), [1, 1, 0]),
                     (np.array([[1e-9, 0, 0], [0, 3.0, 0], [0, 0, 3.0]]), [1, 1, 1])]:
        msgs = []
        for fn in (lambda: K.build(np.array(lat), np.zeros((2, 3)), np.array(pbc, np.uint8),
                                   5.0, 8, MAX_IMAGES),
                   lambda: K.build_direct(np.array(lat), np.zeros((2, 3)),
                                          np.array(pbc, np.uint8), 5.0, MAX_IMAGES)):
            with pytest.raises(ValueError) as err:
                fn()
            msgs.append(str(err.value))
        assert msgs[0] == msgs[1]
    # absurd or non-finite positions: build_direct declines, build_neighbors reports
    lat = np.eye(3) * 3.0
    for bad in (1e9, np.nan, np.inf):
        pos = np.array([[0.0, 0.0, 0.0], [bad, 0.0, 0.0]])
        assert K.build_direct(lat, pos, np.ones(3, np.uint8), 5.0, MAX_IMAGES) is None
    pos = np.array([[0.0, 0.0, 0.0], [1e9, 0.0, 0.0]])
    nl = build_neighbors(lat, pos, None, 5.0)
    ref = K.build(lat, pos, np.ones(3, np.uint8), 5.0, 8, MAX_IMAGES)
    assert nl.index.tobytes() == ref[1].tobytes() and nl.vectors.tobytes() == ref[2].tobytes()
    with pytest.raises(ConfigError):
        build_neighbors(lat, [[0.0, 0.0, 0.0], [np.nan, 0.0, 0.0]], None, 5.0)


def test_large_configurations_use_the_cell_list(monkeypatch, rng):
    lat = np.eye(3) * 12.0
    pos = rng.random((nbmod.DIRECT_MAX_ATOMS + 1, 3)) * 12.0
    monkeypatch.setattr(nbmod, "_kernel", lambda: _NoDirect())
    nl = build_neighbors(lat, pos, None, 5.0)  # would fail if build_direct were called
    ref = K.build(lat, pos, np.ones(3, np.uint8), 5.0, 2 * len(pos), MAX_IMAGES)
    assert nl.vectors.tobytes() == ref[2].tobytes()


class _NoDirect:
    build = staticmethod(K.build)

    @staticmethod
    def build_direct(*args):
        raise AssertionError("build_direct called for a large configuration")


def test_csr_for_equals_build_neighbors(rng):
    for kind in KINDS:
        lat, pos, pbc, rc = random_case(rng, kind)
        lat = lat.copy()
        lat[~pbc] = 0.0
        cfg = Configuration(lattice=lat, positions=pos, types=np.zeros(len(pos), np.int64))
        nl = build_neighbors(cfg.lattice, cfg.positions, cfg.pbc, rc)
        off, idx, vec = csr_for(cfg, rc)
        assert off.tobytes() == nl.offsets.tobytes()
        assert idx.tobytes() == nl.index.tobytes()
        assert vec.tobytes() == nl.vectors.tobytes()
    # non-contiguous / other dtypes are converted; bad shapes are reported
    cfg = Configuration(lattice=np.eye(3) * 4.0, positions=rng.random((5, 3)) * 4.0,
                        types=np.zeros(5, np.int64))
    want = csr_for(cfg, 5.0)
    cfg.positions = np.asfortranarray(cfg.positions)
    assert not cfg.positions.flags.c_contiguous
    got = csr_for(cfg, 5.0)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(want, got))
    cfg.positions = np.zeros((5, 2))
    with pytest.raises(ConfigError, match="positions"):
        csr_for(cfg, 5.0)


def test_pbc_from_rows_and_csr_only(rng):
    """``pbc=None`` means non-zero rows; ``full=False`` returns the first three arrays."""
    for kind in KINDS:
        lat, pos, pbc, rc = random_case(rng, kind)
        lat = np.ascontiguousarray(lat, dtype=np.float64)
        pos = np.ascontiguousarray(pos, dtype=np.float64)
        rows = (lat != 0.0).any(axis=1).astype(np.uint8)
        try:
            want = K.build(lat, pos, rows, rc, max(8, 2 * len(pos)), MAX_IMAGES)
        except ValueError:
            continue
        got = K.build_direct(lat, pos, None, rc, MAX_IMAGES)
        assert all(a.tobytes() == b.tobytes() for a, b in zip(want, got))
        short = K.build_direct(lat, pos, None, rc, MAX_IMAGES, False)
        assert len(short) == 3
        assert all(a.tobytes() == b.tobytes() for a, b in zip(want[:3], short))

