"""mlp md: trajectory, progress lines, extrapolation control (preselected file, break,
--fail-on-break), usage errors."""
import os

import numpy as np
from ase.build import bulk
from click.testing import CliRunner

from mlip_py.cli.main import cli
from mlip_py.configuration import Configuration
from mlip_py.io import read_configurations, write_configurations


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def setup(tmp_path, monkeypatch, golden, scale=1.0):
    for name in ("Mo_l08.mtp", "Mo_l08.als"):
        os.symlink(golden(name), tmp_path / name)
    at = bulk("Mo", "bcc", a=3.16, cubic=True).repeat(2)
    at.set_cell(at.cell[:] * scale, scale_atoms=True)
    at.rattle(0.03, seed=4)
    write_configurations(tmp_path / "start.cfg", [Configuration.from_atoms(at, ["Mo"])])
    monkeypatch.chdir(tmp_path)


def test_nve_trajectory_and_progress(tmp_path, monkeypatch, golden):
    setup(tmp_path, monkeypatch, golden)
    res = run("md", "Mo_l08.mtp", "start.cfg", "--type-map=Mo", "--steps=40", "--every=10",
              "--seed=5", "--trajectory=traj.cfg", "--timestep=1")
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert "seed 5" in lines[0]
    rows = [line.split() for line in lines if line.strip()[:1].isdigit()]
    assert [int(r[0]) for r in rows] == [0, 10, 20, 30, 40]
    assert all(r[-1] == "-" for r in rows)           # no active set: no grade
    etot = np.array([float(r[4]) for r in rows])
    assert np.ptp(etot) / 16 < 1e-4
    assert lines[-1] == "MD completed: 40 steps, 0.04 ps"
    frames = read_configurations("traj.cfg")
    assert [f.features["step"] for f in frames] == ["0", "10", "20", "30", "40"]
    assert all(f.energy is not None and f.forces is not None and f.plus_stress is not None
               for f in frames)
    np.testing.assert_allclose([f.energy for f in frames], [float(r[3]) for r in rows], atol=1e-6)
    # same seed, same trajectory; extxyz output by extension
    res = run("md", "Mo_l08.mtp", "start.cfg", "--type-map=Mo", "--steps=40", "--every=10",
              "--seed=5", "--trajectory=traj.extxyz")
    assert res.exit_code == 0, res.output
    again = read_configurations("traj.extxyz", type_map=["Mo"])
    np.testing.assert_allclose(again[-1].positions, frames[-1].positions, atol=6e-7)
    assert not os.path.exists("preselected.cfg")


def test_extrapolation_control_and_break(tmp_path, monkeypatch, golden):
    setup(tmp_path, monkeypatch, golden, scale=0.95)
    res = run("md", "Mo_l08.mtp", "start.cfg", "--type-map=Mo", "--steps=300", "--every=50",
              "--seed=1", "--als=Mo_l08.als", "--threshold=2", "--threshold-break=3.5",
              "--trajectory=traj.cfg")
    assert res.exit_code == 0, res.output
    last = res.output.splitlines()[-1]
    assert last.startswith("MD stopped at step ")
    assert "Breaking threshold exceeded (MV-grade: " in last
    step = int(last.split()[4].rstrip(":"))
    rows = [line.split() for line in res.output.splitlines() if line.strip()[:1].isdigit()]
    assert int(rows[-1][0]) == step and float(rows[-1][-1]) > 3.5
    pre = read_configurations("preselected.cfg")
    assert len(pre) >= step and all(float(c.features["MV_grade"]) > 2 for c in pre)
    assert float(pre[-1].features["MV_grade"]) > 3.5
    assert pre[-1].energy is None
    frames = read_configurations("traj.cfg")
    assert frames[-1].features["step"] == str(step)
    assert frames[-1].features["MV_grade"] == pre[-1].features["MV_grade"]
    # --fail-on-break: exit status 3, outputs still written
    res = run("md", "Mo_l08.mtp", "start.cfg", "--type-map=Mo", "--steps=300", "--seed=1",
              "--als=Mo_l08.als", "--threshold-break=3.5", "--save-selected=p2.cfg",
              "--fail-on-break")
    assert res.exit_code == 3, res.output
    assert len(read_configurations("p2.cfg")) == len(pre)
    # breaking switched off: runs to the end
    res = run("md", "Mo_l08.mtp", "start.cfg", "--type-map=Mo", "--steps=30", "--seed=1",
              "--als=Mo_l08.als", "--threshold-break=0", "--save-selected=p3.cfg")
    assert res.exit_code == 0 and res.output.splitlines()[-1].startswith("MD completed: 30 steps")


def test_usage_errors(tmp_path, monkeypatch, golden):
    setup(tmp_path, monkeypatch, golden)
    res = run("md", "Mo_l08.mtp", "start.cfg")
    assert res.exit_code == 2 and "--type-map" in res.output
    res = run("md", "Mo_l08.mtp", "start.cfg", "--type-map=Mo", "--ensemble=nvt")
    assert res.exit_code == 2
    res = run("md", "Mo_l08.mtp", "start.cfg", "--type-map=Mo", "--index=2")
    assert res.exit_code == 1 and "no configuration number 2" in res.output
    res = run("md", "Mo_l08.mtp", "start.cfg", "--type-map=Mo,W")
    assert res.exit_code == 1 and "species" in res.output
    res = run("md", "Mo_l08.mtp", "start.cfg", "--type-map=Mo", "--ensemble=langevin",
              "--temperature=0")
    assert res.exit_code == 1 and "temperature" in res.output
