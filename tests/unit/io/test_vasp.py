"""VASP OUTCAR reader and POSCAR writer against the original's outputs and ASE."""
import os

import numpy as np
import pytest

from refdata import shared_file
from mlip_py.configuration import Configuration
from mlip_py.errors import ConfigError, FormatError
from mlip_py.io.cfg import format_cfg, read_cfg
from mlip_py.io.vasp import format_poscar, read_outcar, write_poscar


def cfg_text(cfgs):
    return "".join(format_cfg(c) for c in cfgs)


@pytest.mark.parametrize("outcar, expected", [
    ("00.convert_vasp_outcar/OUTCAR", "00.convert_vasp_outcar/out_this_build/relax.cfg"),  # ISMEAR=1
    ("convert-cfg/07.convert-cfg/OUTCAR", "convert-cfg/07.convert-cfg/correct_output.cfg"),  # ISMEAR=0
    ("convert-cfg/07a.convert-cfg/OUTCAR", "convert-cfg/07a.convert-cfg/correct_output.cfg"),  # ISMEAR=1
])
def test_outcar_matches_original(upstream, outcar, expected):
    cfgs = read_outcar(upstream(outcar))
    assert cfg_text(cfgs) == upstream(expected).read_text()


def _self_test(name):
    return shared_file("reference", "mlip", "upstream_self_test", "configurations", "VASP", name)


def test_outcar_usual_matches_self_test_reference():
    cfgs = read_outcar(_self_test("OUTCAR_usual"))
    assert len(cfgs) == 1
    assert cfgs[0].features == {"EFS_by": "VASP"}
    cfgs[0].features = {}  # the self-test reference predates the EFS_by feature
    assert cfg_text(cfgs) == _self_test("cfg_usual").read_text()


def test_truncated_outcar_keeps_complete_steps():
    full = read_outcar(_self_test("OUTCAR_relax"))
    cut = read_outcar(_self_test("OUTCAR_broken"))
    assert len(full) == len(cut) == 3
    assert cfg_text(full) == cfg_text(cut)


def test_nelm_reached_marks_not_converged(upstream, tmp_path):
    text = upstream("00.convert_vasp_outcar", "OUTCAR").read_text()
    assert "NELM   =     80;" in text
    # steps have 11, 5 and 5 electronic iterations
    path = tmp_path / "OUTCAR"
    path.write_text(text.replace("NELM   =     80;", "NELM   =      5;"))
    assert [c.features["EFS_by"] for c in read_outcar(path)] == ["VASP_not_converged"] * 3
    path.write_text(text.replace("NELM   =     80;", "NELM   =      6;"))
    assert [c.features["EFS_by"] for c in read_outcar(path)] == ["VASP_not_converged", "VASP", "VASP"]


def _ase_testdata(name):
    ase = pytest.importorskip("ase")
    path = os.path.join(os.path.dirname(ase.__file__), "test", "testdata", "vasp", name)
    if not os.path.exists(path):
        pytest.skip(f"ASE test data not installed: {path}")
    return path


def test_ase_outcar_example_agrees_with_ase():
    import ase.io

    path = _ase_testdata("OUTCAR_example_1")
    cfgs = read_outcar(path)
    images = ase.io.read(path, index=":", format="vasp-out")
    assert len(cfgs) == len(images) == 1
    cfg, atoms = cfgs[0], images[0]
    assert np.array_equal(cfg.positions, atoms.positions)
    assert np.array_equal(cfg.forces, atoms.get_forces())
    assert np.array_equal(cfg.lattice, atoms.cell[:])
    assert list(cfg.types) == [0] * 18
    # ISMEAR = 1 -> energy(sigma->0), which ASE calls the (non force-consistent) energy
    assert cfg.energy == atoms.get_potential_energy()
    # ASE converts the kB line to eV/A^3; ours is the eV 'Total' line, as MLIP
    np.testing.assert_allclose(cfg.plus_stress, -atoms.get_stress() * atoms.get_volume(), atol=2e-4)
    assert cfg.features == {"EFS_by": "VASP"}


@pytest.mark.parametrize("name", ["convergence_OUTCAR_y_n", "convergence_OUTCAR_n_y"])
def test_ase_outcar_fragments_are_rejected(name):
    with pytest.raises(FormatError, match="ions per type"):
        read_outcar(_ase_testdata(name))


def test_outcar_cut_inside_position_block(upstream, tmp_path):
    lines = upstream("00.convert_vasp_outcar", "OUTCAR").read_text().splitlines(True)
    idx = next(i for i, line in enumerate(lines) if "TOTAL-FORCE" in line)
    path = tmp_path / "OUTCAR"
    path.write_text("".join(lines[:idx + 5]))
    with pytest.raises(FormatError, match="POSITION block") as err:
        read_outcar(path)
    assert str(err.value).startswith(f"{path}:")


def test_outcar_bad_number_reports_line(upstream, tmp_path):
    lines = upstream("00.convert_vasp_outcar", "OUTCAR").read_text().splitlines(True)
    idx = next(i for i, line in enumerate(lines) if "TOTAL-FORCE" in line)
    lines[idx + 3] = "   garbage here\n"
    path = tmp_path / "OUTCAR"
    path.write_text("".join(lines))
    with pytest.raises(FormatError) as err:
        read_outcar(path)
    assert err.value.line == idx + 4


# ----------------------------------------------------------------------------- POSCAR
def test_poscar_golden_triclinic(golden, tmp_path):
    cfg = read_cfg(golden("triclinic_one_Mo.cfg"))[0]
    write_poscar(tmp_path / "POSCAR", cfg)
    assert (tmp_path / "POSCAR").read_text() == golden("triclinic_one_Mo.POSCAR").read_text()


def test_poscar_upstream_02_sorted_by_type(upstream):
    cfg = read_cfg(upstream("convert-cfg", "02.convert-cfg", "input.cfg"))[0]
    assert list(cfg.types[:4]) == [1, 1, 1, 1]  # type 1 first in the input, written last
    assert format_poscar(cfg) == upstream("convert-cfg", "02.convert-cfg", "correctPOSCAR").read_text()


def test_poscar_upstream_09_from_outcar(upstream):
    cfg = read_outcar(upstream("convert-cfg", "07.convert-cfg", "OUTCAR"))[0]
    assert format_poscar(cfg) == upstream("convert-cfg", "09.convert-cfg", "correct_POSCAR").read_text()


def test_poscar_species_line_with_type_map():
    cfg = Configuration(lattice=np.eye(3) * 4, positions=[[0, 0, 0], [1, 1, 1], [2, 2, 2]], types=[1, 0, 1])
    text = format_poscar(cfg, type_map=["Na", "Cl"])
    lines = text.splitlines()
    assert lines[5] == " Na Cl" and lines[6] == " 1 2" and lines[7] == "cart"
    assert lines[8].split() == ["1", "1", "1"]  # the type-0 atom first
    with pytest.raises(ConfigError):
        format_poscar(cfg, type_map=["Na"])
    # ASE reads it back
    ase_io = pytest.importorskip("ase.io")
    import io

    atoms = ase_io.read(io.StringIO(text), format="vasp")
    assert atoms.get_chemical_symbols() == ["Na", "Cl", "Cl"]
    np.testing.assert_array_equal(atoms.positions, cfg.positions[[1, 0, 2]])
