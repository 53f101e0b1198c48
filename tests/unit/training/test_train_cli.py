"""``mlp train`` / ``mlp calc-errors`` against MLIP-2's golden outputs and behaviour."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mlip_py.cli.main import cli
from mlip_py.io import read_configurations, write_configurations
from mlip_py.io.mtp import read_mtp, write_mtp
from mlip_py.training.fit import Trainer, TrainOptions


@pytest.mark.parametrize("pot,db,ref", [
    ("Mo_l08.mtp", "test_Mo.cfg", "calc_errors_Mo_l08_test.txt"),
    ("Mo_l10.mtp", "test_Mo.cfg", "calc_errors_Mo_l10_test.txt"),
    ("NaCl_l08.mtp", "train_NaCl.cfg", "calc_errors_NaCl_l08_train.txt"),
])
def test_calc_errors_equals_golden(golden, tmp_path, monkeypatch, pot, db, ref):
    for name in (pot, db):
        shutil.copy(golden(name), tmp_path / name)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, ["calc-errors", pot, db])
    assert res.exit_code == 0, res.output
    assert res.stdout == golden(ref).read_text()


def _golden_prefix(path):
    lines = path.read_text().splitlines()
    end = next(i for i, s in enumerate(lines) if s.startswith("BFGS iter 0"))
    return lines[:end + 1]


def _pretraining_log(pot, db, lines, n_iter):
    """Append to ``lines`` what ``mlp train --init-params=same`` logs up to pre-training
    BFGS iteration ``n_iter - 1`` (linear start, Rescale blocks, loss lines)."""
    params = read_mtp(pot)
    cfgs = read_configurations(db)
    tr = Trainer(params, cfgs, TrainOptions(init_params="same", num_threads=1), log=lines.append)
    tr._initialise()
    tr._prepare()
    tr.train_linear()
    tr.rescale()
    lines.append("Pre-training started")
    tr.bfgs(n_iter)
    tr.close()


def _assert_log_line(a, b, cond_rel):
    """Log lines equal, except a Rescale line's condition number (same scaling text,
    number to ``cond_rel`` relative)."""
    if "condition number" in a and a != b:
        sa, ca = re.findall(r"= ([^,]+)", a)
        sb, cb = re.findall(r"= ([^,]+)", b)
        assert sa == sb
        assert float(ca) == pytest.approx(float(cb), rel=cond_rel)
    else:
        assert a == b


def test_pretraining_start_matches_golden_nacl(golden):
    """--init-params=same on the golden NaCl template: Rescale blocks and BFGS iter 0.

    The normal equations at this stage have a condition number ~1e22 (the loader
    defaults make the basis functions nearly collinear), so their solution is set by
    rounding: MLIP-2's own printed condition numbers change in the 4th digit when the
    same scaling is reached by a different float path (golden log, 0.482253086419753:
    199.189585621185 vs 199.254477113201).  Bit-identical kernels would be needed to
    reproduce the 15 printed digits; we check the line structure and the chosen scalings
    exactly, the condition numbers to 2 % and the first loss to 0.1 %.
    """
    ref = _golden_prefix(golden("train_NaCl_l08.log"))
    lines = ["MTPR from untrained_08_NaCl.mtp, Database: train_NaCl.cfg"]
    _pretraining_log(golden("untrained_08_NaCl.mtp"), golden("train_NaCl.cfg"), lines, 1)
    # the first 8 Rescale blocks take clear decisions (neighbouring condition numbers
    # differ by more than the noise); the 9th block of the golden log is a near tie
    # (16.48 vs 16.44) that rounding may decide either way, so compare up to there
    n_cmp = 1 + 8 * 7
    assert len(lines) > n_cmp and len(ref) > n_cmp
    for a, b in zip(lines[:n_cmp], ref[:n_cmp]):
        _assert_log_line(a, b, cond_rel=2e-2)
    k = next(i for i, s in enumerate(lines) if s.startswith("BFGS iter 0"))
    assert lines[k - 1] == "MTPR serial(?!?) training started"
    assert lines[k - 2] == "Pre-training started"
    fa = float(lines[k].split("f=")[1])
    fb = float(ref[-1].split("f=")[1])
    assert fa == pytest.approx(fb, rel=1e-3)


@pytest.mark.parametrize("level,n_iter", [("08", 14), ("10", 3)])
def test_pretraining_matches_golden_mo(golden, level, n_iter):
    """--init-params=same on the golden Mo templates (well-conditioned linear problem).

    Every line of the golden log up to ``BFGS iter <n_iter-1>`` is reproduced: the
    Rescale decisions and scalings verbatim, the 15-digit condition numbers to 1e-5
    relative (MLIP-2's own figure for one scaling reached by two paths differs by 2.3e-6
    in train_Mo_l10.log: 5427.6263775492 vs 5427.6136175556), and every loss line
    ``BFGS iter k: f=...`` identical in all printed digits, iteration 0 included.
    """
    ref = golden(f"train_Mo_l{level}.log").read_text().splitlines()
    lines = ref[:2]
    _pretraining_log(golden(f"untrained_{level}_Mo.mtp"), golden("train_Mo.cfg"), lines, n_iter)
    k = next(i for i, s in enumerate(ref) if s == f"BFGS iter {n_iter - 1}" or
             s.startswith(f"BFGS iter {n_iter - 1}:"))
    assert len(lines) > k
    n_bfgs = 0
    for a, b in zip(lines[:k + 1], ref[:k + 1]):
        _assert_log_line(a, b, cond_rel=1e-5)
        n_bfgs += a.startswith("BFGS iter")
    assert n_bfgs == n_iter


@pytest.fixture
def emt_files(tmp_path, emt_cfgs, small_params):
    write_configurations(tmp_path / "train.cfg", emt_cfgs, fmt="txt")
    write_mtp(tmp_path / "untrained.mtp", small_params())
    return tmp_path


def test_linear_mode_small_error(tmp_path, monkeypatch, rng, emt_maker, small_params):
    cfgs = emt_maker(rng, n_bulk=30)
    write_configurations(tmp_path / "train.cfg", cfgs, fmt="txt")
    write_mtp(tmp_path / "untrained.mtp", small_params())
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, [
        "train", "untrained.mtp", "train.cfg", "--linear", "--trained-pot-name=lin.mtp",
        "--report-json=rep.json", "--threads=1"])
    assert res.exit_code == 0, res.stderr
    assert re.search(r"Linear fit of 7 coefficients .* condition number = ", res.stdout)
    rms = json.loads(Path("rep.json").read_text())["errors"]["train"]["energy_per_atom"]["mlip_rms"]
    epa = np.array([c.energy / len(c) for c in cfgs])
    baseline = np.sqrt(np.mean((epa - epa.mean()) ** 2))
    assert rms < 0.03 and rms < baseline / 3
    p = read_mtp("lin.mtp")
    assert p.is_trained
    # the radial functions were kept (loader defaults), only xi was fitted
    ref = small_params()
    ref.init_default_coeffs()
    assert np.array_equal(p.radial_coeffs, ref.radial_coeffs)


def test_train_small_end_to_end(emt_files, monkeypatch):
    monkeypatch.chdir(emt_files)
    res = CliRunner().invoke(cli, [
        "train", "untrained.mtp", "train.cfg", "--init-params=same", "--max-iter=30",
        "--trained-pot-name=out.mtp", "--curr-pot-name=curr.mtp", "--weighting=structures",
        "--update-mindist", "--valid-cfgs=train.cfg", "--report-json=rep.json",
        "--parity-plot=pp.png", "--threads=1"])
    assert res.exit_code == 0, res.stderr
    out = res.stdout.splitlines()
    assert out[0] == "MTPR from untrained.mtp, Database: train.cfg"
    assert out[1] == "validation set: train.cfg"
    assert out[2] == "Rescaling..."
    for line in ("Pre-training started", "Pre-training ended", "BFGS iterations count set to 30",
                 "BFGS convergence tolerance set to 0.001", "Energy weight: 1",
                 "Force weight: 0.01", "Stress weight: 0.001", "step limit reached",
                 "\t\t* * * TRAIN ERRORS * * *", "\t\t* * * VALIDATION ERRORS * * *"):
        assert line in out
    found = [s for s in out if s.startswith("Found configuration with mindist=")]
    assert len(found) == 1 and found[0].endswith(", MTP's mindist will be decreased")
    mindist = float(found[0].split("=")[1].split(",")[0])
    assert len([s for s in out if s.startswith("BFGS iter ")]) == 75 + 30
    p = read_mtp("out.mtp")
    assert p.is_trained and p.min_dist == pytest.approx(0.99 * mindist, rel=1e-13)
    assert read_mtp("curr.mtp").is_trained
    rep = json.loads(Path("rep.json").read_text())
    hist = [h["loss"] for h in rep["loss_history"] if h["phase"] == "train"]
    assert hist[-1] < hist[0]
    # "loss": the training loss of the potential written, the same as --max-iter=0 on it
    assert rep["loss"] <= hist[-1] * (1 + 1e-12)
    res = CliRunner().invoke(cli, [
        "train", "out.mtp", "train.cfg", "--max-iter=0", "--weighting=structures",
        "--report-json=rep0.json", "--threads=1"])
    assert res.exit_code == 0, res.stderr
    rep0 = json.loads(Path("rep0.json").read_text())
    assert rep0["loss"] == pytest.approx(rep["loss"], rel=1e-12)
    assert rep0["loss_history"] == []
    assert rep["errors"]["train"]["energy_per_atom"]["mlip_rms"] < 0.05
    assert rep["errors"]["train"] == rep["errors"]["validation"]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "needs matplotlib" in res.stderr
    else:
        assert Path("pp.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_init_params_is_an_error(emt_files, monkeypatch):
    monkeypatch.chdir(emt_files)
    res = CliRunner().invoke(cli, ["train", "untrained.mtp", "train.cfg",
                                                   "--init-params=zero"])
    assert res.exit_code == 1
    assert "--init-params should be 'random' or 'same'" in res.stderr


def test_seed_makes_random_init_reproducible(emt_files, monkeypatch):
    monkeypatch.chdir(emt_files)
    outs = []
    for name in ("a.mtp", "b.mtp"):
        res = CliRunner().invoke(cli, [
            "train", "untrained.mtp", "train.cfg", "--seed=7", "--max-iter=2",
            "--skip-preinit", f"--trained-pot-name={name}", "--threads=1"])
        assert res.exit_code == 0, res.stderr
        assert "Random initialization of radial coefficients" in res.stdout
        outs.append(Path(name).read_text())
    assert outs[0] == outs[1]


def test_ctrl_c_writes_potential_and_exits_130(emt_files):
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    with subprocess.Popen(
            [sys.executable, "-m", "mlip_py.cli.main", "train", "untrained.mtp", "train.cfg",
             "--init-params=same", "--skip-preinit", "--max-iter=1000000",
             "--trained-pot-name=out.mtp", "--threads=1"],
            cwd=emt_files, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env) as proc:
        deadline = time.monotonic() + 60
        seen = False
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.startswith("BFGS iter 5:"):
                seen = True
                break
            if not line and proc.poll() is not None:
                break
        if not seen:
            proc.kill()
        assert seen, proc.communicate()[1]
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 130, err
    assert "interrupted" in err and "out.mtp" in err
    p = read_mtp(emt_files / "out.mtp")
    assert p.is_trained and np.all(np.isfinite(p.get_params()))
    assert not [f for f in os.listdir(emt_files) if f.endswith(".tmp")]
