"""ASE bridge: lossless extxyz, type maps, reading what ASE writes, errors."""
import logging
import os

import numpy as np
import pytest

ase = pytest.importorskip("ase")
import ase.io  # noqa: E402
from ase.build import bulk  # noqa: E402
from ase.calculators.singlepoint import SinglePointCalculator  # noqa: E402

from mlip_py.configuration import Configuration  # noqa: E402
from mlip_py.errors import ConfigError, FormatError  # noqa: E402
from mlip_py.io.asefmt import read_ase, write_ase  # noqa: E402
from mlip_py.io.cfg import format_cfg, read_cfg  # noqa: E402


def _same(a, b):
    assert np.array_equal(a.lattice, b.lattice)
    assert np.array_equal(a.positions, b.positions)
    assert np.array_equal(a.types, b.types)
    assert a.energy == b.energy
    for name in ("forces", "plus_stress", "site_energies", "charges"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert np.array_equal(x, y), name
    assert a.features == b.features


def test_extxyz_round_trip_is_bit_exact(golden, tmp_path, rng):
    cfgs = read_cfg(golden("efs_NaCl_l08.lossless.cfg"))  # clusters, slabs, wires, 2 species
    cfgs[0].features.update({"two words": "x y", "num": "1.50", "flag": "T", "energy": "clash",
                             "multi": "a\nb", "quote": 'say "hi" {x} [y]', "pbc": "no"})
    cfgs[1].site_energies = rng.normal(size=len(cfgs[1]))
    cfgs[2].charges = rng.normal(size=len(cfgs[2]))
    path = tmp_path / "x.extxyz"
    assert write_ase(path, cfgs, "extxyz", ["Na", "Cl"]) == len(cfgs)
    back = read_ase(path, "extxyz", ["Na", "Cl"])
    assert len(back) == len(cfgs)
    for a, b in zip(cfgs, back):
        _same(a, b)
    assert "".join(format_cfg(c, lossless=True) for c in back) == \
        "".join(format_cfg(c, lossless=True) for c in cfgs)


def test_ase_reads_our_extxyz(golden, tmp_path):
    cfgs = read_cfg(golden("efs_Mo_l08.lossless.cfg"))
    write_ase(tmp_path / "x.xyz", cfgs, "extxyz", ["Mo"])
    images = ase.io.read(tmp_path / "x.xyz", index=":", format="extxyz")
    assert len(images) == len(cfgs)
    for cfg, atoms in zip(cfgs, images):
        assert set(atoms.get_chemical_symbols()) <= {"Mo"}
        assert np.array_equal(atoms.positions, cfg.positions)
        assert atoms.get_potential_energy() == cfg.energy
        assert np.array_equal(atoms.get_forces(), cfg.forces)
        assert np.array_equal(atoms.pbc, cfg.pbc)
        assert atoms.info["desc"] == cfg.features["desc"]
        np.testing.assert_array_equal(atoms.info["virial"], cfg.plus_stress_matrix())


def test_reading_ase_written_files(tmp_path):
    atoms = bulk("NaCl", "rocksalt", a=5.6, cubic=True)
    atoms.rattle(0.05, seed=3)
    stress = np.array([0.1, 0.2, 0.3, 0.01, 0.02, 0.03])
    atoms.calc = SinglePointCalculator(atoms, energy=-27.5, forces=np.ones((8, 3)) * 0.25, stress=stress)
    atoms.info["config_type"] = "bulk"
    ase.io.write(tmp_path / "a.extxyz", [atoms, atoms], format="extxyz")
    cfgs = read_ase(tmp_path / "a.extxyz", "extxyz", ["Na", "Cl"])
    assert len(cfgs) == 2
    cfg = cfgs[0]
    assert list(cfg.types) == [0 if s == "Na" else 1 for s in atoms.get_chemical_symbols()]
    assert cfg.energy == -27.5
    np.testing.assert_allclose(cfg.plus_stress, -stress * atoms.get_volume())
    assert cfg.features["config_type"] == "bulk"
    # other ASE formats through "ase:<fmt>"
    ase.io.write(tmp_path / "a.traj", [atoms])
    cfg2 = read_ase(tmp_path / "a.traj", "ase:traj", ["Na", "Cl"])[0]
    np.testing.assert_array_equal(cfg2.positions, atoms.positions)
    assert cfg2.energy == -27.5


def test_default_type_map_is_announced(tmp_path, caplog):
    atoms = bulk("NaCl", "rocksalt", a=5.6)
    ase.io.write(tmp_path / "a.xyz", atoms, format="extxyz")
    with caplog.at_level(logging.INFO, logger="mlip_py"):
        cfgs = read_ase(tmp_path / "a.xyz", "extxyz")
    assert "--type-map=Cl,Na" in caplog.text  # sorted elements
    assert list(cfgs[0].types) == [1, 0]  # Na, Cl


def test_missing_species_are_listed(tmp_path):
    atoms = bulk("NaCl", "rocksalt", a=5.6) * (1, 1, 2)
    atoms[0].symbol = "K"
    ase.io.write(tmp_path / "a.xyz", atoms, format="extxyz")
    with pytest.raises(ConfigError, match="K, Na") as err:
        read_ase(tmp_path / "a.xyz", "extxyz", ["Cl"])
    assert "a.xyz" in str(err.value)


def test_writing_needs_type_map(tmp_path):
    cfg = Configuration(lattice=np.eye(3) * 3, positions=[[0, 0, 0]], types=[1])
    with pytest.raises(ConfigError, match="type map"):
        write_ase(tmp_path / "x.xyz", [cfg], "extxyz", None)
    with pytest.raises(ConfigError, match="species"):
        write_ase(tmp_path / "x.xyz", [cfg], "extxyz", ["Mo"])  # type 1 not covered
    assert not os.path.exists(tmp_path / "x.xyz")


def test_unreadable_file_is_format_error(tmp_path):
    path = tmp_path / "bad.xyz"
    path.write_text("3\nLattice=\"1 0 0 0 1 0 0 0 1\" Properties=species:S:1:pos:R:3\nH 0 0\n")
    with pytest.raises(FormatError, match="bad.xyz"):
        read_ase(path, "extxyz", ["H"])


def test_append_and_other_formats(tmp_path):
    cfg = Configuration(lattice=np.eye(3) * 3, positions=[[0, 0, 0], [1.5, 1.5, 1.5]], types=[0, 1],
                        energy=-1.0)
    write_ase(tmp_path / "x.xyz", [cfg], "extxyz", ["Cs", "Cl"])
    write_ase(tmp_path / "x.xyz", [cfg, cfg], "extxyz", ["Cs", "Cl"], append=True)
    assert len(read_ase(tmp_path / "x.xyz", "extxyz", ["Cs", "Cl"])) == 3
    write_ase(tmp_path / "x.traj", [cfg], "traj", ["Cs", "Cl"])
    write_ase(tmp_path / "x.traj", [cfg], "ase:traj", ["Cs", "Cl"], append=True)
    back = read_ase(tmp_path / "x.traj", "traj", ["Cs", "Cl"])
    assert len(back) == 2 and back[1].energy == -1.0
    with pytest.raises(ConfigError, match="one configuration"):
        write_ase(tmp_path / "POSCAR", [cfg, cfg], "vasp", ["Cs", "Cl"])


def test_vasp_outcar_through_ase():
    path = os.path.join(os.path.dirname(ase.__file__), "test", "testdata", "vasp", "OUTCAR_example_1")
    if not os.path.exists(path):
        pytest.skip("ASE test data not installed")
    from mlip_py.io.vasp import read_outcar

    via_ase = read_ase(path, "ase:vasp-out", ["Ni"])[0]
    ours = read_outcar(path)[0]
    assert np.array_equal(via_ase.positions, ours.positions)
    assert np.array_equal(via_ase.forces, ours.forces)
