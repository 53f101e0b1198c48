"""LAMMPS data file (byte-identical to MLIP-2) and custom dumps."""
import numpy as np
import pytest

from mlip_py.configuration import Configuration
from mlip_py.errors import ConfigError, FormatError
from mlip_py.io.cfg import read_cfg
from mlip_py.io.lammps import (format_lammps_data, read_lammps_dump, write_lammps_data,
                               write_lammps_dump)


def test_data_file_golden_triclinic(golden, tmp_path):
    cfg = read_cfg(golden("triclinic_one_Mo.cfg"))[0]
    write_lammps_data(tmp_path / "data", cfg)
    assert (tmp_path / "data").read_text() == golden("triclinic_one_Mo.lammps-data").read_text()


def test_data_file_upstream_15(upstream):
    cfg = read_cfg(upstream("convert-cfg", "15.convert-cfg", "sample_input.cfg"))[0]
    # lattice rows are not in LAMMPS order in the input: the writer rotates them
    assert cfg.lattice[0, 1] != 0
    expected = upstream("convert-cfg", "15.convert-cfg", "correct_lammps.inp").read_text()
    assert format_lammps_data(cfg) == expected


def test_data_file_is_readable_by_ase(golden, tmp_path):
    ase_io = pytest.importorskip("ase.io")
    cfg = read_cfg(golden("triclinic_one_Mo.cfg"))[0]
    write_lammps_data(tmp_path / "data", cfg)
    atoms = ase_io.read(tmp_path / "data", format="lammps-data", atom_style="atomic")
    assert len(atoms) == len(cfg)
    assert np.isclose(atoms.get_volume(), cfg.volume, rtol=1e-8)


def test_data_file_needs_periodic_cell():
    cfg = Configuration(positions=[[0, 0, 0], [1, 0, 0]], types=[0, 0])
    with pytest.raises(ConfigError, match="periodic"):
        format_lammps_data(cfg)


def _cfg(rng, lattice, n=6, forces=True):
    pos = rng.uniform(0, 1, size=(n, 3)) @ lattice if np.any(lattice) else rng.normal(size=(n, 3)) * 3
    return Configuration(lattice=lattice, positions=pos, types=rng.integers(0, 2, n),
                         forces=rng.normal(size=(n, 3)) if forces else None)


def test_dump_round_trip_lammps_oriented_cells(tmp_path, rng):
    cfgs = [
        _cfg(rng, np.diag([4.0, 5.0, 6.0])),
        _cfg(rng, np.array([[4.0, 0, 0], [1.25, 5.0, 0], [-0.5, 0.75, 6.0]])),
        _cfg(rng, np.zeros((3, 3)), forces=False),                      # cluster
        _cfg(rng, np.array([[4.0, 0, 0], [0.5, 4.0, 0], [0, 0, 0]])),   # slab
    ]
    path = tmp_path / "x.dump"
    assert write_lammps_dump(path, cfgs) == 4
    back = read_lammps_dump(path)
    assert len(back) == 4
    for a, b in zip(cfgs, back):
        assert np.array_equal(a.positions, b.positions)
        assert np.array_equal(a.types, b.types)
        assert (a.forces is None) == (b.forces is None)
        if a.forces is not None:
            assert np.array_equal(a.forces, b.forces)
        assert np.array_equal(a.pbc, b.pbc)
        np.testing.assert_allclose(b.lattice, a.lattice, rtol=0, atol=1e-14)


def test_dump_rotates_general_cells(tmp_path, rng):
    lat = np.array([[0.0, 4.0, 0.0], [3.0, 0.0, 0.5], [0.2, 0.3, 5.0]])
    cfg = _cfg(rng, lat)
    write_lammps_dump(tmp_path / "x.dump", [cfg])
    back = read_lammps_dump(tmp_path / "x.dump")[0]
    assert back.lattice[0, 1] == back.lattice[0, 2] == back.lattice[1, 2] == 0.0
    # a rigid rotation (possibly with reflection): Gram matrices, distances, force norms kept
    np.testing.assert_allclose(back.lattice @ back.lattice.T, lat @ lat.T, atol=1e-12)
    d0 = np.linalg.norm(cfg.positions[:, None] - cfg.positions[None], axis=2)
    d1 = np.linalg.norm(back.positions[:, None] - back.positions[None], axis=2)
    np.testing.assert_allclose(d1, d0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(back.forces, axis=1), np.linalg.norm(cfg.forces, axis=1))
    # forces rotate with the positions: F.r is invariant
    np.testing.assert_allclose(np.sum(back.forces * back.positions), np.sum(cfg.forces * cfg.positions))


def test_dump_is_readable_by_ase(tmp_path, rng):
    ase_io = pytest.importorskip("ase.io")
    cfg = _cfg(rng, np.array([[4.0, 0, 0], [1.25, 5.0, 0], [-0.5, 0.75, 6.0]]))
    write_lammps_dump(tmp_path / "x.dump", [cfg, cfg])
    images = ase_io.read(tmp_path / "x.dump", index=":", format="lammps-dump-text")
    assert len(images) == 2
    np.testing.assert_allclose(images[0].cell[:], cfg.lattice, atol=1e-12)
    np.testing.assert_allclose(images[0].positions, cfg.positions, atol=1e-12)


DUMP = """ITEM: TIMESTEP
100
ITEM: NUMBER OF ATOMS
3
ITEM: BOX BOUNDS pp pp ff
0.0 4.0
-1.0 3.0
0.0 10.0
ITEM: ATOMS id element type xs ys zs fx fy fz c_pe
3 Ni 2 0.5 0.5 0.5 0.3 0.2 0.1 -4.0
1 Cu 1 0.0 0.25 0.1 1.0 2.0 3.0 -3.5
2 Cu 1 0.25 0.0 0.2 -1.0 -2.0 -3.0 -3.5
"""


def test_dump_reader_columns(tmp_path):
    path = tmp_path / "in.dump"
    path.write_text(DUMP)
    cfg = read_lammps_dump(path)[0]
    assert list(cfg.types) == [0, 0, 1]  # sorted by id, 1-based -> 0-based
    np.testing.assert_allclose(cfg.positions, [[0.0, 0.0, 1.0], [1.0, -1.0, 2.0], [2.0, 1.0, 5.0]])
    np.testing.assert_allclose(cfg.forces[0], [1.0, 2.0, 3.0])
    np.testing.assert_allclose(cfg.lattice, [[4, 0, 0], [0, 4, 0], [0, 0, 0]])  # z not periodic
    # the element column with a type map decides the types
    cfg = read_lammps_dump(path, type_map=["Ni", "Cu"])[0]
    assert list(cfg.types) == [1, 1, 0]
    with pytest.raises(ConfigError, match="Ni"):
        read_lammps_dump(path, type_map=["Cu"])


@pytest.mark.parametrize("old, new, line", [
    ("ITEM: NUMBER OF ATOMS", "ITEM: NUMBER OF ATOM", 3),
    ("2 Cu 1 0.25 0.0 0.2 -1.0 -2.0 -3.0 -3.5", "2 Cu 1 0.25 0.0", 12),
    ("1 Cu 1 0.0 0.25", "1 Cu 0 0.0 0.25", 11),
    ("-1.0 3.0", "-1.0 x", 7),
])
def test_dump_errors_name_the_line(tmp_path, old, new, line):
    path = tmp_path / "bad.dump"
    path.write_text(DUMP.replace(old, new))
    with pytest.raises(FormatError) as err:
        read_lammps_dump(path)
    assert err.value.line == line
    assert err.value.path == str(path)


def test_dump_truncated(tmp_path):
    path = tmp_path / "bad.dump"
    path.write_text(DUMP.rsplit("\n", 2)[0] + "\n")
    with pytest.raises(FormatError, match="file ends"):
        read_lammps_dump(path)
