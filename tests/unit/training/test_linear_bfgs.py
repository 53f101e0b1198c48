"""Linear sub-problem (mlip_py.training.linear) and the BFGS optimiser (bfgs)."""
import warnings

import numpy as np
import pytest

from mlip_py.io import read_configurations
from mlip_py.io.mtp import read_mtp
from mlip_py.potential.mtp import MTP
from mlip_py.training import linear as lin
from mlip_py.training.bfgs import BFGS
from mlip_py.training.loss import LossWeights, TrainingData, efs_merged
from mlip_py.training.parallel import BLOCK_SIZE


def onehot_components(mtp, data):
    """The linear components by one EFS pass per moment coefficient (one-hot xi).

    The straightforward (S times slower) way; an independent oracle for the forward-mode
    kernel behind :func:`lin.linear_components`.
    """
    p = mtp.params
    c, s = p.species_count, p.alpha_scalar_moments
    e_cols = np.zeros((data.n_cfg, c + s))
    f_cols = np.zeros((data.n_atoms, 3, c + s))
    v_cols = np.zeros((data.n_cfg, 3, 3, c + s))
    for t in range(c):
        e_cols[:, t] = np.add.reduceat((data.types == t).astype(np.float64),
                                       data.atom_start[:-1])
    radial = mtp._coeffs()[0]
    base = efs_merged(mtp, data, radial, np.zeros(c), np.zeros(s))
    for a in range(s):
        e, f, v = efs_merged(mtp, data, radial, np.zeros(c), np.eye(s)[a])
        e_cols[:, c + a] = e - base[0]
        f_cols[:, :, c + a] = f - base[1]
        v_cols[:, :, :, c + a] = v - base[2]
    has_repulsion = p.radial_basis_type == "RBChebyshev_repuls"
    return e_cols, f_cols, v_cols, base if has_repulsion else None


def test_fmt15_like_cpp():
    assert lin.fmt15(1 / 1.2) == "0.833333333333333"
    assert lin.fmt15(1.0) == "1"
    assert lin.fmt15(1.1) == "1.1"
    assert lin.fmt15(0.0540878929323954 * 1.1) == "0.059496682225635"
    assert lin.fmt6(0.000333453123) == "0.000333453"
    assert lin.fmt6(9.8523e-05) == "9.8523e-05"


def test_solve_mlip_matches_numpy(rng):
    m = rng.normal(size=(12, 8))
    a = m.T @ m + np.eye(8)
    b = rng.normal(size=8)
    x = lin.solve_mlip(np.triu(a), b)      # only the upper triangle is used
    ref = np.linalg.solve(a + 1e-13 * np.diag(1 + np.diag(a)), b)
    assert np.allclose(x, ref, rtol=1e-10, atol=0)


def test_orthogonalize(rng):
    radial = rng.normal(size=(2, 2, 3, 5))
    out = lin.orthogonalize(radial.copy())
    c = out.transpose(2, 0, 1, 3).reshape(3, -1)
    gram = c @ c.T
    assert np.allclose(gram, np.eye(3), atol=1e-8)
    # first function is only normalised (the 1e-10 per coefficient is MLIP-2's)
    c0 = radial.transpose(2, 0, 1, 3).reshape(3, -1)[0]
    assert np.allclose(c[0], c0 / np.sqrt(np.sum(c0 ** 2 + 1e-10)), rtol=1e-15, atol=0)


def test_components_reproduce_efs(emt_cfgs, rng, small_params, randomized):
    """E, F and the virial are J @ xi for the current linear coefficients."""
    p = randomized(small_params(), rng)
    mtp = MTP(p)
    data = TrainingData(emt_cfgs, p.max_dist)
    e_cols, f_cols, v_cols, base = lin.linear_components(mtp, data)
    assert base is None
    xi = np.concatenate([p.species_coeffs, p.moment_coeffs])
    e, f, v = efs_merged(mtp, data)
    assert np.allclose(e_cols @ xi, e, rtol=1e-12, atol=1e-12)
    assert np.allclose(f_cols @ xi, f, rtol=1e-10, atol=1e-12)
    assert np.allclose(v_cols @ xi, v, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("species", [1, 2])
def test_components_equal_onehot_passes(emt_cfgs, rng, small_params, randomized, species):
    p = randomized(small_params(species), rng)
    if species == 1:
        for cfg in emt_cfgs:
            cfg.types = np.zeros(len(cfg), dtype=int)
    data = TrainingData(emt_cfgs, p.max_dist)
    if species == 2:
        p.radial_basis_type = "RBChebyshev_repuls"
        p.min_dist = data.min_dist() + 0.1    # pairs below min_dist: clamp + repulsive term
    mtp = MTP(p)
    got = lin.linear_components(mtp, data, num_threads=2)
    want = onehot_components(mtp, data)
    assert (got[3] is None) == (species == 1)
    for x, y in zip(got, want):
        if y is None:
            continue
        if isinstance(y, tuple):
            for xx, yy in zip(x, y):
                np.testing.assert_array_equal(xx, yy)
            continue
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-12 * np.abs(y).max())


@pytest.mark.parametrize("pot,db,n_cfg,weighting", [
    ("Mo_l08.mtp", "train_Mo.cfg", 60, "vibrations"),
    ("NaCl_l08.mtp", "train_NaCl.cfg", 300, "structures"),
    ("untrained_08_NaCl.mtp", "train_NaCl.cfg", 300, "vibrations"),
    ("Mo_l10.mtp", "train_Mo.cfg", 40, "molecules")])
def test_blocked_normal_equations_equal_onehot_path(golden, pot, db, n_cfg, weighting):
    """TrainLinear's system (one kernel pass per configuration, blocks) equals the system
    built from S one-hot EFS passes, for both accumulation orders.

    The loader-default NaCl system has a condition number ~1e22, so the matrices are
    compared, not the solutions.
    """
    p = read_mtp(golden(pot))
    mtp = MTP(p)
    data = TrainingData(read_configurations(golden(db))[:n_cfg], p.max_dist)
    w = LossWeights(weighting=weighting)
    comps = onehot_components(mtp, data)
    iu = np.triu_indices(p.species_count + p.alpha_scalar_moments)
    for exact in (True, False):
        a0, b0 = lin.normal_equations(data, w, comps, exact_order=exact)
        a1, b1 = lin.normal_equations_blocked(mtp, data, w, num_threads=2, exact_order=exact)
        np.testing.assert_allclose(a1[iu], a0[iu], rtol=0, atol=1e-13 * np.abs(a0).max())
        big = np.abs(a0[iu]) > 1e-6 * np.abs(a0).max()
        np.testing.assert_allclose(a1[iu][big], a0[iu][big], rtol=1e-12, atol=0)
        np.testing.assert_allclose(b1, b0, rtol=0, atol=1e-13 * np.abs(b0).max())
        if not exact:
            np.testing.assert_array_equal(a1, a1.T)


def test_normal_equations_order_independent(emt_cfgs, rng, small_params, randomized):
    p = randomized(small_params(), rng)
    mtp = MTP(p)
    data = TrainingData(emt_cfgs, p.max_dist)
    comps = lin.linear_components(mtp, data)
    w = LossWeights(1.0, 0.01, 0.001, "structures")
    a1, b1 = lin.normal_equations(data, w, comps, exact_order=True, chunk_elems=50)
    a2, b2 = lin.normal_equations(data, w, comps, exact_order=False)
    assert np.allclose(np.triu(a1), np.triu(a2), rtol=1e-12, atol=1e-14 * np.abs(a2).max())
    assert np.allclose(b1, b2, rtol=1e-12, atol=1e-14 * np.abs(b2).max())


def test_train_linear_minimises_the_quadratic(emt_cfgs, rng, small_params, randomized):
    """After TrainLinear the gradient of the (penalty-free) loss w.r.t. xi vanishes."""
    from mlip_py.training.loss import Loss

    p = randomized(small_params(), rng)
    mtp = MTP(p)
    data = TrainingData(emt_cfgs, p.max_dist)
    w = LossWeights(1.0, 0.01, 0.001)
    lin.train_linear(mtp, data, w)
    _, g = Loss(data, w)(mtp)
    nr = p.n_radial_params
    _, g_rad_scale = None, np.abs(g[:nr]).max()
    assert np.abs(g[nr:]).max() < 1e-6 * max(1.0, g_rad_scale)


def test_least_squares_fits_and_warns(emt_cfgs, rng, small_params):
    p = small_params()
    p.init_default_coeffs()
    mtp = MTP(p)
    data = TrainingData(emt_cfgs, p.max_dist)
    w = LossWeights(1.0, 0.01, 0.001)
    xi, cond = lin.least_squares(mtp, data, w)
    assert np.isfinite(cond) and cond < 1e8
    # optimality: weighted residual orthogonal to the columns
    j, wt, y, _ = lin._rows(data, w, lin.linear_components(mtp, data))
    assert np.abs(j.T @ (wt * (j @ xi - y))).max() < 1e-8 * np.abs(j.T @ (wt * y)).max()
    # several reduction blocks (block-ordered TSQR): the least-squares solution
    many = TrainingData([c for _ in range(4) for c in emt_cfgs][:40], p.max_dist)
    assert many.n_cfg > 2 * BLOCK_SIZE
    xi_m, _ = lin.least_squares(mtp, many, w)
    j, wt, y, _ = lin._rows(many, w, lin.linear_components(mtp, many))
    sw = np.sqrt(wt)
    ref, *_ = np.linalg.lstsq(j * sw[:, None], y * sw, rcond=None)
    assert np.abs(xi_m - ref).max() < 1e-8 * np.abs(ref).max()
    # one configuration only: rank deficient -> warning with the condition number
    one = TrainingData(emt_cfgs[:1], p.max_dist)
    with pytest.warns(lin.ConvergenceWarning, match="condition number"):
        xi1, _ = lin.least_squares(mtp, one, LossWeights(1.0, 0.0, 0.0))
    assert np.all(np.isfinite(xi1))


def drive(opt, fun, x0, iters):
    """The trainer's driving loop (without TrainLinear)."""
    x = np.array(x0, dtype=float)
    accepted = []
    linesearch = False
    evals = 0
    while len(accepted) < iters:
        if not linesearch:
            opt.set_x(x)
        x = opt.x.copy()
        f, g = fun(x)
        evals += 1
        opt.iterate(f, g)
        while abs(opt.x[0] - x[0]) > 0.5:
            opt.reduce_step(0.25)
        linesearch = opt.in_linesearch
        if not linesearch:
            accepted.append(f)
    return x, accepted, evals


def test_bfgs_quadratic_and_rosenbrock():
    rng = np.random.default_rng(3)
    m = rng.normal(size=(6, 6))
    h = m @ m.T + 0.5 * np.eye(6)
    xs = rng.normal(size=6)

    def quad(x):
        d = x - xs
        return 0.5 * d @ h @ d, h @ d

    x, acc, _ = drive(BFGS(6), quad, np.zeros(6), 40)
    assert np.allclose(x, xs, atol=1e-6)
    assert all(b <= a + 1e-15 for a, b in zip(acc, acc[1:]))

    def rosen(x):
        f = 100 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2
        g = np.array([-400 * x[0] * (x[1] - x[0] ** 2) - 2 * (1 - x[0]), 200 * (x[1] - x[0] ** 2)])
        return f, g

    x, acc, evals = drive(BFGS(2), rosen, [-1.2, 1.0], 80)
    assert np.allclose(x, [1.0, 1.0], atol=1e-5)
    assert evals < 400


def test_step_reduction_limits_first_parameter():
    opt = BFGS(2)
    opt.set_x([0.0, 0.0])
    opt.iterate(0.0, np.array([-10.0, 1.0]))   # steepest descent step of length 10
    assert opt.in_linesearch
    while abs(opt.x[0]) > 0.5:
        opt.reduce_step(0.25)
    assert abs(opt.x[0]) <= 0.5 and opt.x[0] > 0


def test_warning_category_is_user_warning():
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        warnings.warn("x", lin.ConvergenceWarning)
    assert issubclass(rec[0].category, UserWarning)
