"""mlp calc-efs: numbers against MLIP-2's outputs, what is kept, errors."""
import os

import numpy as np
import pytest
from click.testing import CliRunner

from mlip_py.cli.main import cli
from mlip_py.io import read_configurations


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


CASES = [
    ("Mo_l08.mtp", "efs_set_Mo.cfg", "efs_Mo_l08.lossless.cfg"),
    ("NaCl_l08.mtp", "efs_set_NaCl.cfg", "efs_NaCl_l08.lossless.cfg"),
    ("PdAg_20g_str.mtp", "efs_set_PdAg_3sp.cfg", "efs_PdAg_20g_3sp.lossless.cfg"),
    ("untrained_08_Mo.mtp", "efs_set_Mo.cfg", "efs_Mo_untrained08.lossless.cfg"),
]


@pytest.mark.parametrize("pot,inp,ref", CASES)
def test_matches_original_lossless(tmp_path, golden, pot, inp, ref):
    out = tmp_path / "out.cfg"
    res = run("calc-efs", golden(pot), golden(inp), out, "--lossless")
    assert res.exit_code == 0, res.output
    got, want = read_configurations(out), read_configurations(golden(ref))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.energy == pytest.approx(w.energy, rel=1e-10, abs=1e-12)
        np.testing.assert_allclose(g.forces, w.forces, rtol=0, atol=1e-8)
        np.testing.assert_allclose(g.plus_stress, w.plus_stress, rtol=0, atol=1e-8)
        assert g.features == w.features
        np.testing.assert_array_equal(g.positions, w.positions)


def test_default_precision_and_kept_columns(tmp_path, golden):
    """Charges and features of the input are kept; default text within printed precision."""
    out = tmp_path / "out.cfg"
    res = run("calc-efs", golden("NaCl_l08.mtp"), golden("train_NaCl.cfg"), out)
    assert res.exit_code == 0, res.output
    got, want = read_configurations(out), read_configurations(golden("efs_train_NaCl_l08.cfg"))
    assert len(got) == len(want) == 300
    for g, w in zip(got, want):
        assert g.energy == pytest.approx(w.energy, abs=2e-12)
        np.testing.assert_allclose(g.forces, w.forces, atol=1.01e-6)
        np.testing.assert_allclose(g.plus_stress, w.plus_stress, atol=1.01e-5)
        np.testing.assert_array_equal(g.charges, w.charges)
        assert g.site_energies is None
    text = out.read_text()
    assert "charge" in text.splitlines()[7]


def test_hdf5_and_extxyz_outputs(tmp_path, golden):
    h5 = tmp_path / "out.h5"
    res = run("calc-efs", golden("Mo_l08.mtp"), golden("efs_set_Mo.cfg"), h5)
    assert res.exit_code == 0, res.output
    xyz = tmp_path / "out.extxyz"
    res = run("calc-efs", golden("Mo_l08.mtp"), h5, xyz, "--type-map=Mo")
    assert res.exit_code == 0, res.output
    a = read_configurations(h5)
    b = read_configurations(xyz, type_map=["Mo"])
    assert len(a) == len(b) == 22
    for x, y in zip(a, b):
        assert x.energy == pytest.approx(y.energy, rel=1e-12)


def test_too_few_species_keeps_existing_output(tmp_path, golden):
    out = tmp_path / "out.cfg"
    out.write_text("previous content\n")
    res = run("calc-efs", golden("Mo_l08.mtp"), golden("efs_set_NaCl.cfg"), out)
    assert res.exit_code == 1
    assert "Too few species count" in res.output
    assert out.read_text() == "previous content\n"
    assert sorted(os.listdir(tmp_path)) == ["out.cfg"]


def test_missing_input_is_one_line_error(tmp_path, golden):
    res = run("calc-efs", golden("Mo_l08.mtp"), tmp_path / "nope.cfg", tmp_path / "o.cfg")
    assert res.exit_code == 1
    assert "nope.cfg" in res.output
    assert "Traceback" not in res.output


def test_wrong_argument_count_is_usage_error(golden):
    res = run("calc-efs", golden("Mo_l08.mtp"))
    assert res.exit_code == 2
