"""mlp relax: the golden MLIP-2 runs (outputs, stdout, log, preselection), output names,
settings-file errors, option errors."""
import os

import numpy as np
import pytest
from click.testing import CliRunner

from mlip_py.cli.main import cli
from mlip_py.io import read_configurations


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def stage(tmp_path, monkeypatch, golden, *names):
    for name in names:
        os.symlink(golden(name), tmp_path / name)
    monkeypatch.chdir(tmp_path)


def test_golden_relax(tmp_path, monkeypatch, golden):
    stage(tmp_path, monkeypatch, golden, "Mo_l08.mtp", "mlip_relax.ini", "relax_in_Mo.cfg")
    res = run("relax", "mlip_relax.ini", "--cfg-filename=relax_in_Mo.cfg",
              "--save-relaxed=relaxed.cfg", "--save-unrelaxed=unrelaxed.cfg", "--log=relax.log")
    assert res.exit_code == 0, res.output
    with open(golden("relax_Mo_l08.stdout")) as fh:
        want = fh.read().splitlines()
    got = res.output.splitlines()
    # the header equals MLIP-2's except the log name and the (fixed) count line
    assert got[:11] == want[:11]
    assert got[11] == "MLIP: \tlog = relax.log"
    assert got[12] == want[12]
    assert want[13] == "Total 0 configurations are to be relaxed"
    assert got[13] == "Total 4 configurations are to be relaxed"
    assert len(want) == 23
    assert got[14:23] == want[14:23]
    assert got[23:] == ["Relaxed 4 of 4 configurations, 0 failed"]
    # exactly the given names (no _0), empty unrelaxed file as MLIP-2
    assert sorted(p.name for p in tmp_path.iterdir() if not p.is_symlink()) == \
        ["relax.log", "relaxed.cfg", "unrelaxed.cfg"]
    assert (tmp_path / "unrelaxed.cfg").read_text() == ""
    ours = read_configurations("relaxed.cfg")
    gold = read_configurations(golden("relaxed_Mo_l08.cfg_0"))
    for a, b in zip(ours, gold):
        assert abs(a.energy - b.energy) / len(a) < 1e-6
        assert a.features.keys() == b.features.keys()
    log = (tmp_path / "relax.log").read_text().split("\n")
    with open(golden("relax_Mo_l08.log")) as fh:
        assert log[0] == fh.readline().rstrip("\n")
    assert log[-2:] == ["", ""]   # blank line after each configuration, as MLIP-2


def test_golden_relax_active_learning(tmp_path, monkeypatch, golden):
    stage(tmp_path, monkeypatch, golden, "Mo_l08.mtp", "Mo_l08.als", "mlip_relax_al.ini",
          "relax_al_in_Mo.cfg")
    res = run("relax", "mlip_relax_al.ini", "--cfg-filename=relax_al_in_Mo.cfg",
              "--save-relaxed=relaxed.cfg", "--save-unrelaxed=unrelaxed.cfg", "--log=stdout")
    assert res.exit_code == 0, res.output
    out = res.output
    assert "MLIP WARNING: Relaxation failed: Breaking threshold exceeded (MV-grade: 17.373508)" in out
    assert "MLIP WARNING: Relaxation failed: Breaking threshold exceeded (MV-grade: 21.715905)" in out
    assert "cfg 1\titr 0\t dx 0\t md 2.59001\te/a -10.7851\tent -172.561\tfrc 1.34331\tstr " \
           "15.5435\tgrade 0.968549" in out
    assert out.splitlines()[-1].startswith("Relaxed 4 of 6 configurations, 2 failed; 6 evaluated")
    # unrelaxed: byte-identical to MLIP-2's (the two input configurations, unchanged)
    with open(golden("unrelaxed_al_Mo_l08.cfg_0"), "rb") as fh:
        assert (tmp_path / "unrelaxed.cfg").read_bytes() == fh.read()
    relaxed = read_configurations("relaxed.cfg")
    gold = read_configurations(golden("relaxed_al_Mo_l08.cfg_0"))
    assert [c.features["cand"] for c in relaxed] == [c.features["cand"] for c in gold]
    for a, b in zip(relaxed, gold):
        assert abs(a.energy - b.energy) / len(a) < 1e-6
        assert a.features.keys() == b.features.keys()
    pre = read_configurations("preselected_Mo_l08.cfg")
    assert [c.features["cand"] for c in pre] == ["25", "25", "37", "37", "43", "79"]
    # a second run appends to the preselected file (MLIP-2 semantics)
    res = run("relax", "mlip_relax_al.ini", "--cfg-filename=relax_al_in_Mo.cfg")
    assert res.exit_code == 0, res.output
    assert len(read_configurations("preselected_Mo_l08.cfg")) == 12


def test_failures_go_to_unrelaxed_with_status(tmp_path, monkeypatch, golden):
    stage(tmp_path, monkeypatch, golden, "Mo_l08.mtp", "mlip_relax.ini", "relax_in_Mo.cfg")
    res = run("relax", "mlip_relax.ini", "--cfg-filename=relax_in_Mo.cfg", "--iteration-limit=3",
              "--save-relaxed=ok.cfg", "--save-unrelaxed=bad.cfg", "--min-dist=2.6")
    assert res.exit_code == 0, res.output
    bad = read_configurations("bad.cfg")
    inputs = read_configurations("relax_in_Mo.cfg")
    assert len(bad) == 4 and read_configurations("ok.cfg") == []
    # cfg 1 and 3 start below min-dist 2.6; the others hit the iteration limit
    assert [c.features["from"] for c in bad] == [
        "relaxation_MINDIST_ERROR", "relaxation_NOT_CONVERGED", "relaxation_MINDIST_ERROR",
        "relaxation_NOT_CONVERGED"]
    for a, b in zip(bad, inputs):
        np.testing.assert_allclose(a.positions, b.positions, atol=1e-6)


def test_pressure_and_tolerance_options(tmp_path, monkeypatch, golden):
    stage(tmp_path, monkeypatch, golden, "Mo_l08.mtp", "mlip_relax.ini", "relax_in_Mo.cfg")
    res = run("relax", "mlip_relax.ini", "--cfg-filename=relax_in_Mo.cfg", "--pressure=10",
              "--stress-tolerance=0.01", "--force-tolerance=0.001", "--save-relaxed=p.cfg")
    assert res.exit_code == 0, res.output
    assert "MLIP: \tpressure = 10.000000" in res.output
    for c in read_configurations("p.cfg"):
        s = c.stress_gpa()
        assert np.abs(s[:3] - 10.0).max() < 0.011 and np.abs(s[3:]).max() < 0.011
        assert np.linalg.norm(c.forces, axis=1).max() < 0.001


@pytest.mark.parametrize("ini,needle", [
    ("mtp-filename Mo_l08.mtp\nselct TRUE\n", "mlip.ini:2: unknown key 'selct'"),
    ("mtp-filename Mo_l08.mtp\nselect yes\n", "mlip.ini:2: bad value 'yes' for 'select'"),
    ("select FALSE\n", "mlip.ini: mtp-filename is required"),
    ("mtp-filename Mo_l08.mtp\nselect TRUE\n", "mlip.ini:2: select TRUE needs select:load-state"),
    ("mtp-filename Mo_l08.mtp\nfit TRUE\n", "mlip.ini:2: fit TRUE"),
    ("mtp-filename Mo_l08.mtp\nselect TRUE\nselect:load-state Mo_l10.als\n",
     "mlip.ini:3: Mo_l10.als: the potential differs"),
])
def test_settings_errors_name_the_line(tmp_path, monkeypatch, golden, ini, needle):
    stage(tmp_path, monkeypatch, golden, "Mo_l08.mtp", "Mo_l10.als", "relax_in_Mo.cfg")
    (tmp_path / "mlip.ini").write_text(ini)
    res = run("relax", "mlip.ini", "--cfg-filename=relax_in_Mo.cfg", "--save-relaxed=r.cfg")
    assert res.exit_code == 1
    assert needle in res.output
    assert not (tmp_path / "r.cfg").exists()


def test_usage_errors(tmp_path, monkeypatch, golden):
    stage(tmp_path, monkeypatch, golden, "Mo_l08.mtp", "mlip_relax.ini", "relax_in_Mo.cfg")
    res = run("relax", "mlip_relax.ini")
    assert res.exit_code == 2 and "--cfg-filename" in res.output
    res = run("relax", "mlip_relax.ini", "--cfg-filename=relax_in_Mo.cfg", "--max-step=x")
    assert res.exit_code == 2
    res = run("relax", "mlip_relax.ini", "--cfg-filename=missing.cfg")
    assert res.exit_code == 1 and "missing.cfg" in res.output
    res = run("relax", "mlip_relax.ini", "--cfg-filename=relax_in_Mo.cfg", "--max-step=0")
    assert res.exit_code == 1 and "--max-step" in res.output
