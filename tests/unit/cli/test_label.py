"""mlp label: oracles through the CLI, failures, chunks, usage errors, kill and resume."""
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from click.testing import CliRunner

from mlip_py.cli.main import cli
from mlip_py.configuration import Configuration
from mlip_py.io import read_configurations, write_configurations
from mlip_py.oracles import get_oracle

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "oracles" / "emt_command.py"
TYPE_MAP = ["Cu", "Ni"]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def example(*args):
    return "command:" + " ".join(shlex.quote(str(a)) for a in (sys.executable, EXAMPLE, *args))


def make_input(path, n, fail=()):
    cfgs = []
    for k in range(n):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 1, 1)
        atoms.numbers[::3] = 28
        atoms.rattle(0.05, seed=k)
        cfg = Configuration.from_atoms(atoms, TYPE_MAP)
        cfg.features["k"] = str(k)
        if k in fail:
            cfg.features["fail"] = "1"
        cfgs.append(cfg)
    write_configurations(path, cfgs, lossless=True)
    return read_configurations(path)


def emt(cfg):
    oracle = get_oracle("emt")
    oracle.prepare(TYPE_MAP)
    return oracle.label(cfg, 0)


def counts(path):
    return sorted(int(x) for x in Path(path).read_text().split()) if Path(path).exists() else []


def test_emt_through_the_cli(tmp_path):
    cfgs = make_input(tmp_path / "in.cfg", 3)
    res = run("label", tmp_path / "in.cfg", tmp_path / "out.cfg", "--type-map=Cu,Ni", "--lossless")
    assert res.exit_code == 0, res.output
    out = read_configurations(tmp_path / "out.cfg")
    assert [c.features["k"] for c in out] == ["0", "1", "2"]
    for c, src in zip(out, cfgs):
        ref = emt(src)
        assert c.energy == ref.energy
        np.testing.assert_array_equal(c.forces, ref.forces)
        np.testing.assert_array_equal(c.plus_stress, ref.plus_stress)
        assert c.features["EFS_by"] == "emt"
    assert sorted(os.listdir(tmp_path)) == ["in.cfg", "out.cfg"]  # no work dir, no failed file


def test_builtin_oracle_with_a_workdir_resumes(tmp_path, monkeypatch):
    from mlip_py.oracles import ase_calc

    make_input(tmp_path / "in.cfg", 3)
    args = ("label", tmp_path / "in.cfg", tmp_path / "out.cfg", "--type-map=Cu,Ni",
            f"--workdir={tmp_path / 'w'}")
    assert run(*args).exit_code == 0
    first = (tmp_path / "out.cfg").read_text()
    assert sorted(os.listdir(tmp_path / "w")) == ["000000", "000001", "000002"]
    calls = []
    original = ase_calc.ASECalculatorOracle.label
    monkeypatch.setattr(ase_calc.ASECalculatorOracle, "label",
                        lambda self, *a, **kw: calls.append(a[1]) or original(self, *a, **kw))
    os.unlink(tmp_path / "w" / "000001" / "result.cfg")
    res = run(*args)
    assert res.exit_code == 0, res.output
    assert calls == [1] and (tmp_path / "out.cfg").read_text() == first


def test_lj_with_explicit_parameters_needs_no_type_map(tmp_path):
    make_input(tmp_path / "in.cfg", 2)
    res = run("label", tmp_path / "in.cfg", tmp_path / "out.cfg", "--oracle=lj",
              "--lj-epsilon=0.2", "--lj-sigma=2.3", "--lj-cutoff=5")
    assert res.exit_code == 0, res.output
    out = read_configurations(tmp_path / "out.cfg")
    assert len(out) == 2 and all(c.features["EFS_by"] == "lj" for c in out)
    res = run("label", tmp_path / "in.cfg", tmp_path / "out2.cfg", "--oracle=lj")
    assert res.exit_code == 1 and "--type-map" in res.output


def test_extxyz_input_supplies_the_elements(tmp_path):
    cfgs = make_input(tmp_path / "in.cfg", 2)
    write_configurations(tmp_path / "in.extxyz", cfgs, type_map=TYPE_MAP)
    res = run("label", tmp_path / "in.extxyz", tmp_path / "out.cfg")
    assert res.exit_code == 0, res.output
    assert "using --type-map=Cu,Ni" in res.output
    out = read_configurations(tmp_path / "out.cfg")
    assert out[1].energy == pytest.approx(emt(cfgs[1]).energy, abs=1e-10)


def test_usage_and_setting_errors(tmp_path):
    make_input(tmp_path / "in.cfg", 1)
    res = run("label", tmp_path / "in.cfg", tmp_path / "out.cfg", "--oracle=vasp")
    assert res.exit_code == 2
    assert "unknown oracle 'vasp'" in res.output and "emt, lj, gpaw, command:<shell command>" in res.output
    res = run("label", tmp_path / "in.cfg", tmp_path / "out.cfg", "--type-map=Cu,Ni", "--lj-sigma=2")
    assert res.exit_code == 2 and "--lj-sigma do(es) not apply to --oracle=emt" in res.output
    for chunk in ("0/2", "3/2", "x"):
        res = run("label", tmp_path / "in.cfg", tmp_path / "out.cfg", "--type-map=Cu,Ni",
                  f"--chunk={chunk}")
        assert res.exit_code == 2, chunk
    res = run("label", tmp_path / "in.cfg", tmp_path / "out.cfg")  # emt without elements
    assert res.exit_code == 1 and "needs the element of each type" in res.output
    assert "Traceback" not in res.output
    res = run("label", tmp_path / "in.cfg", tmp_path / "out.cfg", "--type-map=Cu,Mo")
    assert res.exit_code == 1 and "no parameters for Mo" in res.output
    res = run("label", tmp_path / "missing.cfg", tmp_path / "out.cfg", "--type-map=Cu,Ni")
    assert res.exit_code == 1 and "missing.cfg" in res.output
    assert not (tmp_path / "out.cfg").exists()


def test_chunks_through_the_cli(tmp_path):
    make_input(tmp_path / "in.cfg", 5)
    got = {}
    for i in (1, 2):
        out = tmp_path / f"out.cfg.{i}"
        res = run("label", tmp_path / "in.cfg", out, "--type-map=Cu,Ni", f"--chunk={i}/2")
        assert res.exit_code == 0, res.output
        got[i] = [c.features["k"] for c in read_configurations(out)]
    assert got == {1: ["0", "2", "4"], 2: ["1", "3"]}


def test_failures_all_failed_and_retry(tmp_path):
    make_input(tmp_path / "in.cfg", 3)
    out, failed = tmp_path / "out.cfg", tmp_path / "out.cfg.failed.cfg"
    res = run("label", tmp_path / "in.cfg", out, "--type-map=Cu,Ni", "--oracle=command:exit 5")
    assert res.exit_code == 1
    assert "every configuration failed (3)" in res.output and "status 5" in res.output
    assert [c.features["label_index"] for c in read_configurations(failed)] == ["0", "1", "2"]
    assert read_configurations(out) == []
    # a rerun does not retry them ...
    counter = tmp_path / "counter"
    res = run("label", tmp_path / "in.cfg", out, "--type-map=Cu,Ni",
              "--oracle=" + example("--counter", counter))
    assert res.exit_code == 1 and counts(counter) == []
    # ... unless asked; then the stale failed file goes away
    res = run("label", tmp_path / "in.cfg", out, "--type-map=Cu,Ni", "--retry-failed",
              "--oracle=" + example("--counter", counter))
    assert res.exit_code == 0, res.output
    assert counts(counter) == [0, 1, 2]
    assert [c.features["EFS_by"] for c in read_configurations(out)] == ["command"] * 3
    assert not failed.exists()


def test_ctrl_c_writes_nothing(tmp_path, monkeypatch):
    from mlip_py.oracles import ase_calc

    make_input(tmp_path / "in.cfg", 4)
    calls = []
    original = ase_calc.ASECalculatorOracle.label

    def label(self, cfg, index, **kw):
        calls.append(index)
        if index == 2:
            raise KeyboardInterrupt
        return original(self, cfg, index, **kw)

    monkeypatch.setattr(ase_calc.ASECalculatorOracle, "label", label)
    res = run("label", tmp_path / "in.cfg", tmp_path / "out.cfg", "--type-map=Cu,Ni")
    assert res.exit_code == 130 and calls == [0, 1, 2]
    assert sorted(os.listdir(tmp_path)) == ["in.cfg"]


def test_kill_midway_and_rerun_labels_each_configuration_once(tmp_path):
    """SIGKILL of mlp label while a command runs; the rerun finishes the batch."""
    n = 6
    cfgs = make_input(tmp_path / "in.cfg", n, fail=(4,))
    counter, out = tmp_path / "counter", tmp_path / "out.cfg"
    args = ["label", "in.cfg", "out.cfg", "--type-map=Cu,Ni",
            "--oracle=" + example("--sleep", 0.3, "--counter", counter)]
    proc = subprocess.Popen([sys.executable, "-m", "mlip_py.cli.main", "-q", *args], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(counts(counter)) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)  # into the next command
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done_before = len(counts(counter))
    assert 2 <= done_before < n - 1, "the kill came too late to test anything"
    assert not out.exists()

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        res = run(*args)
    finally:
        os.chdir(cwd)
    assert res.exit_code == 0, res.output
    assert counts(counter) == [0, 1, 2, 3, 5]  # every successful one exactly once
    labelled = read_configurations(out)
    assert [c.features["k"] for c in labelled] == ["0", "1", "2", "3", "5"]
    for c in labelled:
        assert c.energy == pytest.approx(emt(cfgs[int(c.features["k"])]).energy, abs=1e-12)
    (bad,) = read_configurations(tmp_path / "out.cfg.failed.cfg")
    assert bad.features["k"] == "4" and "status 3" in bad.features["label_error"]
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
