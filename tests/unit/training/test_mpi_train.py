"""Serial and 2-rank MPI training give the same result (deterministic block reductions).

Every sum over configurations is formed per block of BLOCK_SIZE configurations and the
blocks are added in block order on every rank (mlip_py.training.parallel), so a run under
``mpiexec -n 2`` must reproduce the serial run bit for bit, even through the
ill-conditioned linear solves of the pre-training (NaCl, loader defaults: condition
numbers ~1e22).  The acceptance criterion is 1e-10 relative in the final loss.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mlip_py.io import read_configurations, write_configurations
from mlip_py.io.mtp import read_mtp
from mlip_py.training.parallel import BLOCK_SIZE

N_CFG = 40          # 3 blocks of 16: rank 0 gets blocks 0 and 2, rank 1 block 1
MAX_ITER = 10


def _train(cmd_prefix, workdir, name, threads, extra=()):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    cmd = cmd_prefix + [
        sys.executable, "-m", "mlip_py.cli.main", "-q", "train", "untrained.mtp", "train.cfg",
        "--init-params=same", f"--max-iter={MAX_ITER}", f"--trained-pot-name={name}.mtp",
        f"--report-json={name}.json", f"--threads={threads}", *extra]
    res = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    return res.stdout, json.loads((workdir / f"{name}.json").read_text()), \
        read_mtp(workdir / f"{name}.mtp")


def _numbers(stdout):
    """Lines carrying numbers of the training (Rescale and BFGS), without the banner."""
    return [s for s in stdout.splitlines()
            if "condition number" in s or s.startswith(("BFGS iter", "Rescaling to"))]


def test_two_rank_training_equals_serial(golden, tmp_path, mpiexec):
    assert N_CFG > 2 * BLOCK_SIZE
    cfgs = read_configurations(golden("train_NaCl.cfg"))[:N_CFG]
    write_configurations(tmp_path / "train.cfg", cfgs, fmt="txt")
    (tmp_path / "untrained.mtp").write_bytes(golden("untrained_08_NaCl.mtp").read_bytes())
    out_s, rep_s, pot_s = _train([], tmp_path, "serial", threads=2)
    out_m, rep_m, pot_m = _train([mpiexec, "-n", "2"], tmp_path, "mpi", threads=1)
    assert "MTPR parallel training started" in out_m
    assert "MTPR serial(?!?) training started" in out_s
    f_s = rep_s["loss_history"][-1]["loss"]
    f_m = rep_m["loss_history"][-1]["loss"]
    assert len(rep_s["loss_history"]) == len(rep_m["loss_history"]) == 75 + MAX_ITER
    assert abs(f_m - f_s) <= 1e-10 * abs(f_s)
    theta_s, theta_m = pot_s.get_params(), pot_m.get_params()
    assert np.max(np.abs(theta_m - theta_s)) <= 1e-10 * np.max(np.abs(theta_s))
    assert pot_m.scaling == pot_s.scaling
    # in fact the runs are identical: every printed number and the error report
    assert _numbers(out_m) == _numbers(out_s)
    assert out_m.split("* * * TRAIN ERRORS * * *")[1] == out_s.split("* * * TRAIN ERRORS * * *")[1]


def test_two_rank_linear_fit_equals_serial(golden, tmp_path, mpiexec):
    """``--linear`` (block-ordered TSQR): the same coefficients under ``mpiexec -n 2``."""
    cfgs = read_configurations(golden("train_Mo.cfg"))[:N_CFG]
    write_configurations(tmp_path / "train.cfg", cfgs, fmt="txt")
    (tmp_path / "untrained.mtp").write_bytes(golden("untrained_08_Mo.mtp").read_bytes())
    _, rep_s, pot_s = _train([], tmp_path, "serial", threads=1, extra=["--linear"])
    _, rep_m, pot_m = _train([mpiexec, "-n", "2"], tmp_path, "mpi", threads=1, extra=["--linear"])
    theta_s, theta_m = pot_s.get_params(), pot_m.get_params()
    assert np.max(np.abs(theta_m - theta_s)) <= 1e-10 * np.max(np.abs(theta_s))
    e_s = rep_s["errors"]["train"]["energy_per_atom"]["rmse"]
    e_m = rep_m["errors"]["train"]["energy_per_atom"]["rmse"]
    assert abs(e_m - e_s) <= 1e-10 * abs(e_s)

