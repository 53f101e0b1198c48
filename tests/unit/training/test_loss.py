"""The training loss (mlip_py.training.loss): definition, gradient, MPI reduction."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mlip_py.io import read_configurations
from mlip_py.io.mtp import read_mtp
from mlip_py.potential.mtp import MTP
from mlip_py.training.loss import (PENALTY_WEIGHT, Loss, LossWeights, TrainingData,
                                   radial_penalty)
from refdata import shared_file


def fd_gradient(loss, mtp, h=1e-6):
    theta = mtp.get_params()
    g = np.zeros_like(theta)
    for i in range(len(theta)):
        step = h * max(1.0, abs(theta[i]))
        t = theta.copy()
        t[i] += step
        mtp.set_params(t)
        fp, _ = loss(mtp, gradient=False)
        t[i] -= 2 * step
        mtp.set_params(t)
        fm, _ = loss(mtp, gradient=False)
        g[i] = (fp - fm) / (2 * step)
    mtp.set_params(theta)
    return g


def direct_penalty(radial):
    """The radial orthonormality penalty of §4.1 written out: c_mu = all (C, C, R)
    coefficients of radial function mu."""
    k = radial.shape[2]
    c = radial.reshape(-1, k, radial.shape[3]).transpose(1, 0, 2).reshape(k, -1)
    return sum((c[m] @ c[m] - 1) ** 2 for m in range(k)) + \
        sum((c[a] @ c[b]) ** 2 for a in range(k) for b in range(a + 1, k))


def rel_err(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("weighting", ["vibrations", "molecules", "structures"])
@pytest.mark.parametrize("scale_by_force", [0.0, 0.7])
def test_gradient_matches_finite_differences_emt(weighting, scale_by_force, emt_cfgs, rng,
                                                 small_params, randomized):
    cfgs = emt_cfgs
    cfgs[1].energy = None          # missing quantities are skipped, not zero-fitted
    cfgs[2].forces = None
    p = randomized(small_params(), rng)
    mtp = MTP(p)
    data = TrainingData(cfgs, p.max_dist)
    loss = Loss(data, LossWeights(1.0, 0.05, 0.01, weighting, scale_by_force))
    f, g = loss(mtp)
    assert f > 0
    g_fd = fd_gradient(loss, mtp)
    assert rel_err(g, g_fd) < 1e-6


def test_loss_definition_by_hand(emt_cfgs, rng, small_params, randomized):
    """The loss value equals the documented formula computed from calc_efs."""
    cfgs = emt_cfgs
    p = randomized(small_params(), rng)
    mtp = MTP(p)
    w = LossWeights(2.0, 0.3, 0.07, "structures", 0.5)
    loss = Loss(TrainingData(cfgs, p.max_dist), w)
    f, _ = loss(mtp, gradient=False)
    pen, _ = radial_penalty(p.radial_coeffs)
    total = 0.0
    for cfg in cfgs:
        n = len(cfg)
        e, forces, _, _ = mtp.calc_efs(cfg)
        # full virial from the kernel's pair gradients
        from mlip_py.potential.mtp import _mtp
        nb = mtp.neighbors(cfg)
        site = np.zeros(n)
        dvdr = np.zeros((len(nb.index), 3))
        mtp.kernel.efs(*mtp._coeffs(), np.asarray(cfg.types, dtype=np.int64), nb.offsets,
                       nb.index, np.ascontiguousarray(nb.vectors), site, dvdr, 1)
        fr = np.zeros((n, 3))
        vir = np.zeros((3, 3))
        _mtp.accumulate_forces(nb.offsets, nb.index, np.ascontiguousarray(nb.vectors), dvdr,
                               fr, vir)
        term = w.energy / n / n * (e - cfg.energy) ** 2
        wf = w.force * w.scale_by_force / (np.sum(cfg.forces ** 2, axis=1) + w.scale_by_force) / n
        term += np.sum(wf * np.sum((forces - cfg.forces) ** 2, axis=1))
        if cfg.plus_stress is not None:
            term += w.stress / n / n * np.sum((vir - cfg.plus_stress_matrix()) ** 2)
        total += term + PENALTY_WEIGHT * pen
    assert f == pytest.approx(total / len(cfgs), rel=1e-12)


@pytest.mark.golden
@pytest.mark.parametrize("element", ["Ni", "Mo"])
@pytest.mark.parametrize("weighting", ["vibrations", "molecules", "structures"])
def test_loss_equals_loss_of_the_originals_predictions(golden, element, weighting):
    """The loss of a given potential (what ``mlp train`` logs at iteration 0 with
    ``--init-params=same``) equals, to 1e-10, the §4.1 loss of MLIP-2's own predictions:
    its lossless (17-digit) calc-efs output for the benchmark's level-20 MTP on the mlearn
    test set, against the DFT labels, plus the penalty of the potential's radial coefficients.
    (MLIP-2's train log prints only 6 digits; this checks every digit of the loss.)"""
    ref = read_configurations(shared_file("data", "mlearn", f"{element}_test.extxyz"),
                              type_map=[element])
    orig = read_configurations(golden("mlearn", f"efs_mlearn_{element}_test.lossless.cfg"))
    mtp = MTP(shared_file("data", "mlearn", f"{element}_Zuo2020_maml_mtp.2020.01.mtp"), 1)
    w = LossWeights(weighting=weighting)          # MLIP-2's defaults 1 / 0.01 / 0.001
    ours, _ = Loss(TrainingData(ref, mtp.params.max_dist), w)(mtp, gradient=False)
    assert len(orig) == len(ref) > 20
    total = 0.0
    for r, o in zip(ref, orig):
        n = len(r)
        ce, cf, cs = {"vibrations": (1 / n, 1.0, 1 / n),
                      "structures": (1 / n ** 2, 1 / n, 1 / n ** 2),
                      "molecules": (1.0, 1.0, 1.0)}[weighting]
        total += (ce * w.energy * (o.energy - r.energy) ** 2
                  + cf * w.force * np.sum((o.forces - r.forces) ** 2)
                  + cs * w.stress * np.sum((o.plus_stress_matrix() - r.plus_stress_matrix()) ** 2))
    pen = direct_penalty(mtp.params.radial_coeffs)
    expected = (total + len(ref) * PENALTY_WEIGHT * pen) / len(ref)
    assert ours == pytest.approx(expected, rel=1e-10)


def test_penalty_gradient(rng):
    radial = rng.normal(size=(2, 2, 3, 4))
    pen, grad = radial_penalty(radial)
    assert pen == pytest.approx(direct_penalty(radial), rel=1e-13)
    fd = np.zeros_like(radial)
    for idx in np.ndindex(radial.shape):
        r = radial.copy()
        r[idx] += 1e-6
        fp, _ = radial_penalty(r, False)
        r[idx] -= 2e-6
        fm, _ = radial_penalty(r, False)
        fd[idx] = (fp - fm) / 2e-6
    assert rel_err(grad, fd) < 1e-7


def test_gradient_golden_nacl_and_threads(golden):
    """Trained 2-species potential on real data; worker threads give the same result."""
    cfgs = read_configurations(golden("train_NaCl.cfg"))[:40]
    p = read_mtp(golden("NaCl_l08.mtp"))
    mtp = MTP(p)
    data = TrainingData(cfgs, p.max_dist)
    one = Loss(data, LossWeights())
    two = Loss(data, LossWeights(), num_threads=2)
    f1, g1 = one(mtp)
    f2, g2 = two(mtp)
    two.close()
    assert f2 == f1 and np.array_equal(g2, g1)      # fixed summation order
    sub = Loss(TrainingData(cfgs[:4], p.max_dist), LossWeights())
    f, g = sub(mtp)
    assert rel_err(g, fd_gradient(sub, mtp)) < 1e-6


MPI_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from mlip_py.io import read_configurations
    from mlip_py.io.mtp import read_mtp
    from mlip_py.potential.mtp import MTP
    from mlip_py.training.fit import error_monitor
    from mlip_py.training.linear import normal_equations_blocked
    from mlip_py.training.loss import Loss, LossWeights, TrainingData
    from mlip_py.training.parallel import get_comm
    comm = get_comm()
    assert comm.is_mpi and comm.size == 2
    p = read_mtp(sys.argv[1])
    cfgs = [c for k, c in enumerate(read_configurations(sys.argv[2])[:60]) if comm.owns(k)]
    data = TrainingData(cfgs, p.max_dist)
    w = LossWeights(weighting="structures")
    loss = Loss(data, w, comm)
    mtp = MTP(p)
    f, g = loss(mtp)
    a1, b1 = normal_equations_blocked(mtp, data, w, comm, exact_order=True)
    a2, b2 = normal_equations_blocked(mtp, data, w, comm, exact_order=False)
    mon = error_monitor(mtp, data, comm).state()
    if comm.rank == 0:
        np.savez(sys.argv[3], loss=np.concatenate([[f], g]), a1=a1, b1=b1, a2=a2, b2=b2, mon=mon)
""")


def test_mpi_two_ranks_equal_serial(golden, tmp_path, mpiexec):
    """Loss, gradient, normal equations and error sums: 2 ranks == serial, bit for bit."""
    from mlip_py.training.fit import error_monitor
    from mlip_py.training.linear import normal_equations_blocked

    pot, db = golden("NaCl_l08.mtp"), golden("train_NaCl.cfg")
    script = tmp_path / "mpi_loss.py"
    script.write_text(MPI_SCRIPT)
    out = tmp_path / "mpi.npz"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([mpiexec, "-n", "2", sys.executable, str(script), str(pot), str(db),
                          str(out)], capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    got = np.load(out)
    p = read_mtp(pot)
    data = TrainingData(read_configurations(db)[:60], p.max_dist)
    w = LossWeights(weighting="structures")
    mtp = MTP(p)
    loss = Loss(data, w, num_threads=2)
    f, g = loss(mtp)
    loss.close()
    assert got["loss"][0] == pytest.approx(f, rel=1e-10)
    assert rel_err(got["loss"][1:], g) < 1e-10
    np.testing.assert_array_equal(got["loss"], np.concatenate([[f], g]))
    for key, exact in (("1", True), ("2", False)):
        a, b = normal_equations_blocked(mtp, data, w, exact_order=exact, num_threads=2)
        np.testing.assert_array_equal(got["a" + key], a)
        np.testing.assert_array_equal(got["b" + key], b)
    np.testing.assert_array_equal(got["mon"], error_monitor(mtp, data).state())
