"""mlp calc-grade: stdout, grades and files against MLIP-2's golden outputs; --load-state,
--grade-histogram, errors, MPI."""
import os
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from mlip_py.cli.main import cli
from mlip_py.io import read_configurations
from mlip_py.io.als import read_als
from mlip_py.selection.active_set import format_grade


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def stage(tmp_path, monkeypatch, src, *names):
    """Symlink inputs into tmp_path under their own names and chdir there."""
    for name in names:
        os.symlink(src(name), tmp_path / name)
    monkeypatch.chdir(tmp_path)


def close_to_printed(ours, printed):
    want = float(printed)
    return abs(float(ours) - want) <= max(1e-6 * abs(want), 5e-7)


def without_grades(path):
    with open(path, encoding="utf-8") as fh:
        return [line for line in fh if "MV_grade" not in line]


def grades(path):
    return [c.features["MV_grade"] for c in read_configurations(path)]


GOLDEN_RUNS = [
    (["Mo_l08.mtp", "train_Mo.cfg", "candidates_Mo_200.cfg", "graded_candidates_Mo_l08.cfg",
      "--als-filename=Mo_l08.als"], "calc_grade_Mo_l08.stdout"),
    (["Mo_l10.mtp", "train_Mo.cfg", "candidates_Mo_200.cfg", "graded_candidates_Mo_l10.cfg",
      "--als-filename=Mo_l10.als"], "calc_grade_Mo_l10.stdout"),
    (["NaCl_l08.mtp", "train_NaCl.cfg", "efs_set_NaCl.cfg", "graded_efs_set_NaCl_l08.cfg",
      "--als-filename=NaCl_l08.als"], "calc_grade_NaCl_l08.stdout"),
    (["Mo_l08.mtp", "train_Mo.cfg", "efs_set_Mo.cfg", "graded_nbh_efs_set_Mo_l08.cfg",
      "--als-filename=Mo_l08_nbh.als", "--nbh-weight=1", "--energy-weight=0"],
     "calc_grade_nbh_Mo_l08.stdout"),
]


@pytest.mark.parametrize("args,stdout", GOLDEN_RUNS)
def test_golden(tmp_path, monkeypatch, golden, args, stdout):
    stage(tmp_path, monkeypatch, golden, *args[:3])
    out_name = args[3]
    als = args[4].split("=", 1)[1]
    res = run("calc-grade", *args)
    assert res.exit_code == 0, res.output
    assert res.output == golden(stdout).read_text()
    # nothing but MV_grade changed, byte for byte
    assert without_grades(out_name) == without_grades(golden(out_name))
    ours, want = grades(out_name), grades(golden(out_name))
    assert len(ours) == len(want) > 0
    assert all(close_to_printed(o, w) for o, w in zip(ours, want))
    # the state file: MLIP-2 layout, same rows as the original's
    assert (read_als(als).row_cfg == read_als(golden(als)).row_cfg).all()


def test_upstream_example_identical(tmp_path, monkeypatch, upstream):
    ex = lambda *p: upstream("04.calc-grade", *p)  # noqa: E731
    stage(tmp_path, monkeypatch, ex, "pot.mtp", "train.cfg", "test.cfg")
    os.mkdir("out")
    res = run("calc-grade", "pot.mtp", "train.cfg", "test.cfg", "./out/graded.cfg",
              "--als-filename=./out/state.als")
    assert res.exit_code == 0, res.output
    assert res.output == ex("sample_out", "stdout.log").read_text()
    with open("out/graded.cfg", encoding="utf-8") as fh:
        assert fh.read() == ex("sample_out", "graded.cfg").read_text()


def test_load_state(tmp_path, golden):
    out3, out2 = tmp_path / "a.cfg", tmp_path / "b.cfg"
    res = run("calc-grade", golden("Mo_l08.mtp"), "--load-state", golden("Mo_l08.als"),
              golden("candidates_Mo_200.cfg"), out3)
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[0].startswith("MTPR from ")
    assert "state saved" not in res.output
    res = run("calc-grade", f"--load-state={golden('Mo_l08_nbh.als')}", golden("efs_set_Mo.cfg"),
              out2)
    assert res.exit_code == 0, res.output
    # the original's own A: identical printed grades; the stored weights are used (nbh)
    assert grades(out3) == grades(golden("graded_candidates_Mo_l08.cfg"))
    assert grades(out2) == grades(golden("graded_nbh_efs_set_Mo_l08.cfg"))
    # weights contradicting the stored ones, a different potential, wrong argument counts
    res = run("calc-grade", f"--load-state={golden('Mo_l08_nbh.als')}", "--nbh-weight=0",
              golden("efs_set_Mo.cfg"), out2)
    assert res.exit_code == 1 and "weights" in res.output
    res = run("calc-grade", f"--load-state={golden('Mo_l08_nbh.als')}", "--nbh-weight=1",
              golden("efs_set_Mo.cfg"), out2)  # consistent with the stored weights: fine
    assert res.exit_code == 0, res.output
    res = run("calc-grade", golden("Mo_l10.mtp"), f"--load-state={golden('Mo_l08.als')}",
              golden("efs_set_Mo.cfg"), out2)
    assert res.exit_code == 1 and "potential differs" in res.output
    res = run("calc-grade", golden("Mo_l08.mtp"), golden("train_Mo.cfg"), golden("efs_set_Mo.cfg"),
              out2, f"--load-state={golden('Mo_l08.als')}")
    assert res.exit_code == 2 and "TRAIN is not used" in res.output


def test_grade_histogram(tmp_path, golden, monkeypatch):
    png = tmp_path / "h.png"
    res = run("calc-grade", f"--load-state={golden('Mo_l08.als')}", golden("candidates_Mo_200.cfg"),
              tmp_path / "g.cfg", f"--grade-histogram={png}")
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    res = run("calc-grade", f"--load-state={golden('Mo_l08.als')}", golden("efs_set_Mo.cfg"),
              tmp_path / "g2.cfg", f"--grade-histogram={tmp_path / 'h2.png'}")
    assert res.exit_code == 1
    assert "needs matplotlib" in res.output and "pip install matplotlib" in res.output
    assert not (tmp_path / "g2.cfg").exists()


def test_grade_text():
    assert format_grade(1.0) == "1.000000"
    assert format_grade(1e10) == "10000000000.000000"
    big = format_grade(1.00001e10)
    assert big.startswith("99000000000000007208126") and big.endswith(".000000")
    assert len(big) == 107


def test_errors(tmp_path, golden):
    args = [golden("Mo_l08.mtp"), golden("train_Mo.cfg"), golden("efs_set_Mo.cfg"),
            tmp_path / "o.cfg"]
    res = run("calc-grade", *args[:3])
    assert res.exit_code == 2 and "4 arguments required" in res.output
    for opt in ("--init-threshold=0", "--select-threshold=1", "--swap-threshold=0.5"):
        res = run("calc-grade", *args, opt)
        assert res.exit_code == 1
        assert "Can't initialize Maxvol: invalid threshold value" in res.output
    res = run("calc-grade", *args, "--weighting=crystal")
    assert res.exit_code == 1 and "--weighting" in res.output
    res = run("calc-grade", golden("Mo_l08.mtp"), golden("train_Mo.cfg"), tmp_path / "none.cfg",
              tmp_path / "o.cfg")
    assert res.exit_code == 1 and "none.cfg" in res.output
    assert not (tmp_path / "o.cfg").exists()
    # empty option value = not given (MLIP-2)
    res = run("calc-grade", *args, "--select-threshold=", f"--als-filename={tmp_path / 's.als'}")
    assert res.exit_code == 0, res.output
    # --mvs-filename is the old name of --als-filename
    res = run("calc-grade", *args, f"--mvs-filename={tmp_path / 'm.als'}")
    assert res.exit_code == 0 and (tmp_path / "m.als").exists()


def _mpi_available():
    import importlib.util

    return shutil.which("mpirun") is not None and importlib.util.find_spec("mpi4py") is not None


@pytest.mark.skipif(not _mpi_available(), reason="needs mpirun and mpi4py")
def test_mpi_same_output_as_serial(tmp_path, golden):
    def cmd(*extra):
        return [sys.executable, "-m", "mlip_py.cli.main", *extra]
    base = ["calc-grade", str(golden("Mo_l08.mtp")), str(golden("train_Mo.cfg")),
            str(golden("candidates_Mo_200.cfg"))]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    serial = subprocess.run(cmd(*base, str(tmp_path / "s.cfg"), f"--als-filename={tmp_path}/s.als"),
                            capture_output=True, text=True, env=env, timeout=300)
    assert serial.returncode == 0, serial.stderr
    par = subprocess.run(["mpirun", "-n", "2", *cmd(*base, str(tmp_path / "p.cfg"),
                                                    f"--als-filename={tmp_path}/p.als")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert par.returncode == 0, par.stderr
    assert par.stdout == serial.stdout.replace("s.als", "p.als")
    assert (tmp_path / "p.cfg").read_bytes() == (tmp_path / "s.cfg").read_bytes()
    assert (tmp_path / "p.als").read_bytes() == (tmp_path / "s.als").read_bytes()
