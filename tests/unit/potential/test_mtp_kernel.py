"""MTP kernels (cext/_mtp.pyx via mlip_py.potential.mtp.MTP) against the NumPy oracle
tests/reference/mtp_ref.py and against finite differences / invariances.

Structures: the level-10 moment structure embedded below (always available) and the
upstream untrained templates of levels 2..16 from ../shared (skipped when absent), with
random coefficients, 1-3 species.
"""
import sys
from pathlib import Path

import numpy as np
import pytest

from refdata import shared_file
from mlip_py.configuration import Configuration
from mlip_py.errors import MlipError
from mlip_py.potential.mtp import MTP
from mlip_py.potential.params import MTPParams

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "reference"))
import mtp_ref as ref  # noqa: E402

# level-10 structure of the upstream template untrained_mtps/10.mtp
L10_BASIC = [[0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 2, 0, 0], [0, 1, 1, 0],
             [0, 1, 0, 1], [0, 0, 2, 0], [0, 0, 1, 1], [0, 0, 0, 2], [0, 3, 0, 0], [0, 2, 1, 0],
             [0, 2, 0, 1], [0, 1, 2, 0], [0, 1, 1, 1], [0, 1, 0, 2], [0, 0, 3, 0], [0, 0, 2, 1],
             [0, 0, 1, 2], [0, 0, 0, 3], [1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 1],
             [2, 0, 0, 0]]
L10_TIMES = [[0, 0, 1, 25], [1, 1, 1, 26], [2, 2, 1, 26], [3, 3, 1, 26], [1, 4, 1, 27],
             [2, 5, 1, 27], [3, 6, 1, 27], [1, 5, 1, 28], [2, 7, 1, 28], [3, 8, 1, 28],
             [1, 6, 1, 29], [2, 8, 1, 29], [3, 9, 1, 29], [4, 4, 1, 30], [5, 5, 2, 30],
             [6, 6, 2, 30], [7, 7, 1, 30], [8, 8, 2, 30], [9, 9, 1, 30], [10, 10, 1, 31],
             [11, 11, 3, 31], [12, 12, 3, 31], [13, 13, 3, 31], [14, 14, 6, 31],
             [15, 15, 3, 31], [16, 16, 1, 31], [17, 17, 3, 31], [18, 18, 3, 31],
             [19, 19, 1, 31], [0, 20, 1, 32], [1, 21, 1, 33], [2, 22, 1, 33], [3, 23, 1, 33],
             [0, 25, 1, 34], [0, 26, 1, 35], [0, 30, 1, 36], [1, 27, 1, 37], [2, 28, 1, 37],
             [3, 29, 1, 37], [0, 32, 1, 38], [0, 34, 1, 39], [0, 35, 1, 40]]
L10_MAPPING = [0, 20, 24, 25, 26, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40]


def rattled_bcc(rng, reps, a=3.16):
    """bcc supercell of reps^3 cubic cells (2 reps^3 atoms), positions rattled by 0.05 A,
    random types 0/1."""
    grid = np.array([[i, j, k] for i in range(reps) for j in range(reps) for k in range(reps)],
                    float)
    n = 2 * len(grid)
    pos = np.vstack([grid, grid + 0.5]) * a + rng.normal(scale=0.05, size=(n, 3))
    return Configuration(lattice=np.eye(3) * reps * a, positions=pos,
                         types=rng.integers(0, 2, n))


def level10(rng, species=1, rbtype="RBChebyshev", min_dist=1.8, max_dist=5.0, scaling=1.0):
    p = MTPParams(species_count=species, radial_basis_type=rbtype, min_dist=min_dist,
                  max_dist=max_dist, radial_basis_size=8, radial_funcs_count=3, scaling=scaling,
                  alpha_moments_count=41, alpha_index_basic=L10_BASIC,
                  alpha_index_times=L10_TIMES, alpha_moment_mapping=L10_MAPPING)
    randomize(p, rng)
    return p


def randomize(p, rng):
    p.set_params(np.concatenate([
        rng.normal(size=p.n_radial_params) / p.radial_basis_size,
        rng.normal(size=p.species_count),
        rng.normal(size=p.alpha_scalar_moments) * 0.3,
    ]))
    return p


def template(level, rng, species=1):
    directory = shared_file("reference", "mlip", "untrained_mtps", "02.mtp").parent
    return ref.template(level, species_count=species, directory=directory, rng=rng)


def random_cfg(rng, n_atoms, species=1, periodic=(True, True, True), box=4.2, min_sep=1.9):
    """Triclinic-ish cell with well separated random atoms."""
    lattice = np.diag([box, box * 1.05, box * 0.95]) + rng.uniform(-0.4, 0.4, size=(3, 3))
    pos = []
    while len(pos) < n_atoms:
        cand = rng.uniform(0, 1, size=3) @ lattice
        if all(np.linalg.norm(cand - q) > min_sep for q in pos):
            pos.append(cand)
    for a in range(3):
        if not periodic[a]:
            lattice[a] = 0.0
    return Configuration(lattice=lattice, positions=np.array(pos),
                         types=rng.integers(0, species, size=n_atoms))


def oracle(p, cfg, gradients=False):
    return ref.calc(p, cfg.lattice, cfg.positions, cfg.types, gradients=gradients)


def assert_matches_oracle(p, cfg, gradients=True):
    mtp = MTP(p)
    e, f, s, site = mtp.calc_efs(cfg)
    o = oracle(p, cfg, gradients=gradients)
    scale = max(1.0, np.abs(o["site_energies"]).max())
    np.testing.assert_allclose(site, o["site_energies"], rtol=1e-11, atol=1e-11 * scale)
    assert e == pytest.approx(o["energy"], rel=1e-11, abs=1e-11 * scale)
    fscale = max(1.0, np.abs(o["forces"]).max())
    np.testing.assert_allclose(f, o["forces"], rtol=0, atol=1e-10 * fscale)
    np.testing.assert_allclose(s, o["plus_stress"], rtol=0,
                               atol=1e-10 * max(1.0, np.abs(o["plus_stress"]).max()))
    np.testing.assert_allclose(mtp.basis(cfg), o["basis"], rtol=1e-11,
                               atol=1e-12 * max(1.0, np.abs(o["basis"]).max()))
    if gradients:
        g = mtp.site_energy_gradients(cfg)
        gs = max(1.0, np.abs(o["site_energy_grads"]).max())
        np.testing.assert_allclose(g, o["site_energy_grads"], rtol=0, atol=1e-11 * gs)
        np.testing.assert_allclose(mtp.energy_gradient(cfg), o["energy_grad"], rtol=0,
                                   atol=1e-11 * gs * len(cfg))


# ------------------------------------------------------------------ oracle comparisons
@pytest.mark.parametrize("species", [1, 2, 3])
def test_level10_matches_oracle(rng, species):
    p = level10(rng, species)
    for periodic in [(True, True, True), (True, True, False), (False, False, False)]:
        cfg = random_cfg(rng, 4, species, periodic)
        assert_matches_oracle(p, cfg)


@pytest.mark.parametrize("level,species", [(2, 1), (4, 2), (6, 1), (8, 3), (12, 2), (14, 1),
                                           (16, 1)])
def test_templates_match_oracle(rng, level, species):
    p = template(level, rng, species)
    cfg = random_cfg(rng, 3 if level >= 14 else 4, species)
    assert_matches_oracle(p, cfg, gradients=level <= 12)


def test_scaling_and_below_min_dist(rng):
    """Global scaling is applied to every basis function; RBChebyshev has no clamp."""
    p = level10(rng, 2, scaling=0.37, min_dist=2.3)
    cfg = Configuration(lattice=np.zeros((3, 3)),
                        positions=[[0, 0, 0], [1.6, 0.1, 0.0], [0.2, 2.5, 0.3], [3.0, 2.0, 1.0]],
                        types=[0, 1, 1, 0])
    assert_matches_oracle(p, cfg)


def test_repulsive_basis(rng):
    """RBChebyshev_repuls: clamp below min_dist + repulsive pair term; forces = -grad E."""
    p = level10(rng, 2, rbtype="RBChebyshev_repuls", min_dist=2.0)
    cfg = Configuration(lattice=np.zeros((3, 3)),
                        positions=[[0, 0, 0], [1.5, 0.2, 0.1], [0.3, 2.6, 0.2], [2.8, 2.4, 1.1]],
                        types=[0, 1, 0, 1])
    assert_matches_oracle(p, cfg)
    mtp = MTP(p)
    e, f, _, site = mtp.calc_efs(cfg)
    assert np.allclose(f, fd_forces(mtp, cfg), atol=1e-6 * np.abs(f).max())
    # the repulsive term: energy of a close pair is far above the same pair at min_dist
    assert site.sum() == pytest.approx(e)
    base = MTP(level10(np.random.default_rng(5), 2, min_dist=2.0))
    assert e != pytest.approx(base.calc_efs(cfg)[0])


# -------------------------------------------------------------- finite differences
def energy(mtp, cfg):
    return mtp.calc_efs(cfg)[0]


def fd_forces(mtp, cfg, h=1e-5):
    out = np.zeros((len(cfg), 3))
    for i in range(len(cfg)):
        for a in range(3):
            c1, c2 = cfg.copy(), cfg.copy()
            c1.positions[i, a] += h
            c2.positions[i, a] -= h
            out[i, a] = -(energy(mtp, c1) - energy(mtp, c2)) / (2 * h)
    return out


def strained(cfg, eps):
    """Deform lattice rows and positions by (I + eps): r -> (I + eps) r."""
    d = np.eye(3) + eps
    out = cfg.copy()
    out.lattice = cfg.lattice @ d.T
    out.positions = cfg.positions @ d.T
    return out


@pytest.mark.parametrize("species", [1, 2])
def test_forces_and_stress_by_finite_differences(rng, species):
    p = level10(rng, species)
    mtp = MTP(p)
    for periodic in [(True, True, True), (True, False, True), (False, False, False)]:
        cfg = random_cfg(rng, 3, species, periodic)
        e, f, s, _ = mtp.calc_efs(cfg)
        fs = max(1.0, np.abs(f).max())
        np.testing.assert_allclose(f, fd_forces(mtp, cfg), rtol=0, atol=2e-7 * fs)
        # PlusStress S_ab = -dE/d eps_ab (positive under compression); all 9 components
        virial = np.zeros((3, 3))
        h = 1e-6
        for a in range(3):
            for b in range(3):
                eps = np.zeros((3, 3))
                eps[a, b] = h
                virial[a, b] = -(energy(mtp, strained(cfg, eps))
                                 - energy(mtp, strained(cfg, -eps))) / (2 * h)
        np.testing.assert_allclose(virial, virial.T, atol=1e-6 * max(1.0, np.abs(virial).max()))
        voigt = [virial[0, 0], virial[1, 1], virial[2, 2], virial[1, 2], virial[0, 2],
                 virial[0, 1]]
        np.testing.assert_allclose(s, voigt, rtol=0, atol=2e-6 * max(1.0, np.abs(s).max()))


def test_parameter_gradients_by_finite_differences(rng):
    p = level10(rng, 2)
    mtp = MTP(p)
    cfg = random_cfg(rng, 3, 2)
    theta = mtp.get_params()
    de, df, ds = mtp.efs_jacobian(cfg)
    site_g = mtp.site_energy_gradients(cfg)
    np.testing.assert_allclose(de, mtp.energy_gradient(cfg), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(site_g.sum(axis=0), de, rtol=1e-12, atol=1e-11)
    h = 1e-6
    idx = np.concatenate([rng.choice(p.n_radial_params, 12, replace=False),
                          np.arange(p.n_radial_params, p.n_params)])
    for q in idx:
        t1, t2 = theta.copy(), theta.copy()
        t1[q] += h
        t2[q] -= h
        mtp.set_params(t1)
        e1, f1, s1, v1 = mtp.calc_efs(cfg)
        mtp.set_params(t2)
        e2, f2, s2, v2 = mtp.calc_efs(cfg)
        np.testing.assert_allclose((v1 - v2) / (2 * h), site_g[:, q], rtol=1e-6, atol=1e-6)
        assert (e1 - e2) / (2 * h) == pytest.approx(de[q], rel=1e-6, abs=1e-6)
        np.testing.assert_allclose((f1 - f2) / (2 * h), df[:, :, q], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose((s1 - s2) / (2 * h), ds[:, q], rtol=1e-5, atol=1e-6)
    mtp.set_params(theta)
    # the loss-adjoint kernel equals the Jacobians contracted with the adjoints
    dl_de = 0.7
    dl_df = rng.normal(size=(len(cfg), 3))
    dl_ds = rng.normal(size=6)
    expect = dl_de * de + np.einsum("ia,ian->n", dl_df, df) + dl_ds @ ds
    got = mtp.loss_gradient(cfg, dl_de, dl_df, dl_ds)
    np.testing.assert_allclose(got, expect, rtol=1e-10, atol=1e-10 * np.abs(expect).max())


def test_jacobian_with_self_images(rng):
    """Small cell: an atom sees images of itself (w_ij = 0 for those pairs)."""
    p = level10(rng)
    mtp = MTP(p)
    cfg = Configuration(lattice=np.diag([2.7, 2.9, 3.1]), positions=[[0.1, 0.2, 0.3]],
                        types=[0])
    de, df, ds = mtp.efs_jacobian(cfg)
    theta = mtp.get_params()
    h = 1e-6
    for q in range(0, p.n_params, 5):
        t1, t2 = theta.copy(), theta.copy()
        t1[q] += h
        t2[q] -= h
        mtp.set_params(t1)
        _, f1, s1, _ = mtp.calc_efs(cfg)
        mtp.set_params(t2)
        _, f2, s2, _ = mtp.calc_efs(cfg)
        np.testing.assert_allclose((f1 - f2) / (2 * h), df[:, :, q], atol=1e-6)
        np.testing.assert_allclose((s1 - s2) / (2 * h), ds[:, q], rtol=1e-6,
                                   atol=1e-9 * np.abs(ds).max())


# ------------------------------------------------------------------------ invariances
def test_invariances(rng):
    p = level10(rng, 2)
    mtp = MTP(p)
    cfg = random_cfg(rng, 5, 2)
    e, f, s, site = mtp.calc_efs(cfg)
    smat = Configuration(plus_stress=s).plus_stress_matrix()
    # rotation (proper orthogonal): energy and site energies invariant, F and S rotate
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    rot = cfg.copy()
    rot.lattice = cfg.lattice @ q.T
    rot.positions = cfg.positions @ q.T
    e2, f2, s2, site2 = mtp.calc_efs(rot)
    assert e2 == pytest.approx(e, rel=1e-12)
    np.testing.assert_allclose(site2, site, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(f2, f @ q.T, atol=1e-10)
    np.testing.assert_allclose(Configuration(plus_stress=s2).plus_stress_matrix(),
                               q @ smat @ q.T, atol=1e-9)
    # translation and choice of periodic image
    moved = cfg.copy()
    moved.positions = cfg.positions + np.array([0.3, -1.7, 2.2])
    moved.positions[2] += 2 * cfg.lattice[0] - cfg.lattice[2]
    e3, f3, s3, site3 = mtp.calc_efs(moved)
    assert e3 == pytest.approx(e, rel=1e-12)
    np.testing.assert_allclose(f3, f, atol=1e-10)
    np.testing.assert_allclose(s3, s, atol=1e-9)
    # permutation
    perm = rng.permutation(len(cfg))
    pc = Configuration(lattice=cfg.lattice, positions=cfg.positions[perm], types=cfg.types[perm])
    e4, f4, s4, site4 = mtp.calc_efs(pc)
    assert e4 == pytest.approx(e, rel=1e-12)
    np.testing.assert_allclose(f4, f[perm], atol=1e-10)
    np.testing.assert_allclose(site4, site[perm], atol=1e-11)
    # supercell: 2x1x1 doubles energy and stress, repeats forces
    sup = Configuration(lattice=cfg.lattice * np.array([[2], [1], [1]]),
                        positions=np.vstack([cfg.positions, cfg.positions + cfg.lattice[0]]),
                        types=np.concatenate([cfg.types, cfg.types]))
    e5, f5, s5, _ = mtp.calc_efs(sup)
    assert e5 == pytest.approx(2 * e, rel=1e-12)
    np.testing.assert_allclose(f5, np.vstack([f, f]), atol=1e-10)
    np.testing.assert_allclose(s5, 2 * s, atol=1e-9)


# ------------------------------------------------------------------------ cutoff, atoms
def test_forces_vanish_continuously_at_cutoff(rng):
    p = level10(rng, 2)
    mtp = MTP(p)
    iso = p.species_coeffs[0] + p.species_coeffs[1]
    for delta in [1e-3, 1e-5]:
        cfg = Configuration(positions=[[0, 0, 0], [p.max_dist - delta, 0, 0]], types=[0, 1])
        e, f, s, _ = mtp.calc_efs(cfg)
        assert abs(e - iso) < 50 * delta ** 2
        assert np.abs(f).max() < 50 * delta
        np.testing.assert_allclose(f[0], -f[1], atol=1e-15)
    for r in [p.max_dist, p.max_dist + 1e-9, p.max_dist + 0.5]:
        cfg = Configuration(positions=[[0, 0, 0], [r, 0, 0]], types=[0, 1])
        e, f, s, _ = mtp.calc_efs(cfg)
        assert e == iso and not f.any() and not s.any()


def test_isolated_atoms_and_empty(rng):
    p = level10(rng, 3)
    mtp = MTP(p)
    for t in range(3):
        e, f, s, site = mtp.calc_efs(Configuration(positions=[[1.0, 2.0, 3.0]], types=[t]))
        assert e == p.species_coeffs[t] and site[0] == e and not f.any() and not s.any()
    e, f, s, site = mtp.calc_efs(Configuration())
    assert e == 0.0 and f.shape == (0, 3) and s.shape == (6,)
    assert mtp.energy_gradient(Configuration()).shape == (p.n_params,)


def test_two_species_order_matters(rng):
    """c[0,1] != c[1,0]: swapping the types of a dimer changes its site energies."""
    p = level10(rng, 2)
    mtp = MTP(p)
    a = mtp.calc_efs(Configuration(positions=[[0, 0, 0], [2.5, 0, 0]], types=[0, 1]))
    b = mtp.calc_efs(Configuration(positions=[[0, 0, 0], [2.5, 0, 0]], types=[1, 0]))
    assert a[3][0] == pytest.approx(b[3][1]) and a[3][0] != pytest.approx(b[3][0])


def test_too_few_species_is_an_error(rng):
    mtp = MTP(level10(rng, 2))
    cfg = Configuration(positions=[[0, 0, 0], [2.5, 0, 0]], types=[0, 2])
    with pytest.raises(MlipError, match="Too few species count in the MTP potential!.*type 2"):
        mtp.calc_efs(cfg)


def test_untrained_gets_loader_defaults(rng):
    p = level10(rng)
    p.radial_coeffs = p.species_coeffs = p.moment_coeffs = None
    mtp = MTP(p)
    assert p.radial_coeffs is None  # the caller's object is not modified
    assert np.all(mtp.params.moment_coeffs == 1e-3)


def test_threads_and_reused_skin_list(rng):
    """Same results with 2 threads and with a neighbour list built with a skin."""
    from mlip_py.potential.neighbors import build_neighbors

    p = level10(rng, 2)
    cfg = rattled_bcc(rng, 4)
    e1, f1, s1, v1 = MTP(p, num_threads=1).calc_efs(cfg)
    mtp2 = MTP(p, num_threads=2)
    e2, f2, s2, v2 = mtp2.calc_efs(cfg)
    np.testing.assert_array_equal(v1, v2)
    np.testing.assert_array_equal(f1, f2)
    nl = build_neighbors(cfg.lattice, cfg.positions, cfg.pbc, p.max_dist + 0.7)
    e3, f3, s3, v3 = mtp2.calc_efs(cfg, neighbors=nl)
    np.testing.assert_allclose(v3, v1, rtol=1e-13, atol=1e-12)
    np.testing.assert_allclose(f3, f1, rtol=0, atol=1e-12 * np.abs(f1).max())
    g1 = MTP(p, num_threads=1).energy_gradient(cfg)
    g2 = mtp2.energy_gradient(cfg)
    # block-ordered sum: the same bits for any number of threads
    assert g1.tobytes() == g2.tobytes() == MTP(p, num_threads=3).energy_gradient(cfg).tobytes()
    np.testing.assert_allclose(mtp2.site_energy_gradients(cfg).sum(axis=0), g1, rtol=1e-11,
                               atol=1e-11)
    dl_df = rng.normal(size=(128, 3))
    np.testing.assert_allclose(mtp2.loss_gradient(cfg, 0.5, dl_df, np.ones(6)),
                               MTP(p, num_threads=1).loss_gradient(cfg, 0.5, dl_df, np.ones(6)),
                               rtol=1e-10, atol=1e-10)


def test_kernel_rejects_inconsistent_neighbour_lists(rng):
    mtp = MTP(level10(rng))
    types = np.zeros(2, dtype=np.int64)
    vec = np.array([[2.5, 0, 0], [-2.5, 0, 0]])
    with pytest.raises(ValueError, match="out of range"):
        mtp.calc_efs_arrays(types, np.array([0, 1, 2]), np.array([1, 2]), vec)
    with pytest.raises(ValueError, match="inconsistent"):
        mtp.calc_efs_arrays(types, np.array([0, 1, 3]), np.array([1, 0]), vec)
    e, f, s, _ = mtp.calc_efs_arrays(types, np.array([0, 1, 2]), np.array([1, 0]), vec)
    assert np.allclose(f[0], -f[1]) and abs(f[0, 0]) > 0


# ----------------------------------------------------------- basis-function E, F, S
def onehot_oracle(p, cfg, kernel=False):
    """E, F, PlusStress of each basis function with one-hot xi: from the NumPy oracle, or
    with ``kernel`` from the reverse-mode EFS kernel (faster, for large templates)."""
    def efs(params):
        if kernel:
            e, f, s, _ = MTP(params).calc_efs(cfg)
            return {"energy": e, "forces": f, "plus_stress": s}
        return oracle(params, cfg)

    q = p.copy()
    q.species_coeffs = np.zeros(q.species_count)
    zero = q.copy()
    zero.moment_coeffs = np.zeros(q.alpha_scalar_moments)
    base = efs(zero)                    # the repulsive pair term (zero otherwise)
    out = []
    for a in range(q.alpha_scalar_moments):
        q.moment_coeffs = np.eye(q.alpha_scalar_moments)[a]
        o = efs(q)
        out.append((o["energy"] - base["energy"], o["forces"] - base["forces"],
                    o["plus_stress"] - base["plus_stress"]))
    return [np.array(x) for x in zip(*out)]


@pytest.mark.parametrize("species,rbtype,periodic", [
    (1, "RBChebyshev", (True, True, True)), (2, "RBChebyshev", (True, False, True)),
    (3, "RBChebyshev", (False, False, False)), (2, "RBChebyshev_repuls", (True, True, True))])
def test_basis_efs_matches_oracle(rng, species, rbtype, periodic):
    """One forward-mode pass equals S one-hot evaluations of the reference implementation."""
    p = level10(rng, species, rbtype=rbtype, min_dist=2.0)
    cfg = random_cfg(rng, 5, species, periodic, min_sep=1.7)
    mtp = MTP(p)
    e, f, s = mtp.basis_efs(cfg)
    oe, of, os_ = onehot_oracle(p, cfg)
    assert e.shape == (16,) and f.shape == (16, 5, 3) and s.shape == (16, 6)
    np.testing.assert_allclose(e, oe, rtol=1e-11, atol=1e-12 * np.abs(oe).max())
    np.testing.assert_allclose(f, of, rtol=0, atol=1e-10 * np.abs(of).max())
    np.testing.assert_allclose(s, os_, rtol=0, atol=1e-10 * np.abs(os_).max())
    # linear in the moment coefficients: the columns reproduce the potential
    e0, f0, s0, _ = mtp.calc_efs(cfg)
    _, fb, sb, _ = MTP(_no_moments(p)).calc_efs(cfg)
    eb = MTP(_no_moments(p)).calc_efs(cfg)[0]
    xi = p.moment_coeffs
    assert e @ xi + eb == pytest.approx(e0, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(np.tensordot(xi, f, 1) + fb, f0, rtol=0,
                               atol=1e-11 * np.abs(f0).max())
    np.testing.assert_allclose(xi @ s + sb, s0, rtol=0, atol=1e-11 * np.abs(s0).max())


def _no_moments(p):
    q = p.copy()
    q.moment_coeffs = np.zeros(q.alpha_scalar_moments)
    return q


def test_basis_efs_templates_and_self_images(rng):
    """Higher-level templates, and a cell so small that an atom sees its own images."""
    for level in (8, 16):
        p = template(level, rng, 1)
        cfg = random_cfg(rng, 3, 1)
        e, f, s = MTP(p).basis_efs(cfg)
        oe, of, os_ = onehot_oracle(p, cfg, kernel=level > 8)
        np.testing.assert_allclose(e, oe, rtol=1e-11, atol=1e-12 * np.abs(oe).max())
        np.testing.assert_allclose(f, of, rtol=0, atol=1e-10 * np.abs(of).max())
        np.testing.assert_allclose(s, os_, rtol=0, atol=1e-10 * np.abs(os_).max())
    p = level10(rng)
    cfg = Configuration(lattice=np.diag([2.7, 2.9, 3.1]), positions=[[0.1, 0.2, 0.3]],
                        types=[0])
    e, f, s = MTP(p).basis_efs(cfg)
    oe, of, os_ = onehot_oracle(p, cfg)
    np.testing.assert_allclose(f, 0.0, atol=1e-12)      # one atom: forces cancel
    np.testing.assert_allclose(e, oe, rtol=1e-11, atol=1e-12 * np.abs(oe).max())
    np.testing.assert_allclose(s, os_, rtol=0, atol=1e-10 * np.abs(os_).max())


def test_basis_efs_independent_of_threads_and_chunks(rng):
    """The fixed summation order makes threads and the pair-buffer chunking invisible."""
    p = level10(rng, 2)
    cfg = rattled_bcc(rng, 3)
    mtp = MTP(p)
    types, offsets, index, vectors = mtp._arrays(cfg, None)
    s = p.alpha_scalar_moments
    results = []
    for threads, budget in ((1, 0), (2, 0), (2, 3 * s * 40), (1, 1)):
        out = (np.full(s, np.nan), np.full((s, 54, 3), np.nan), np.full((s, 3, 3), np.nan))
        mtp.kernel.basis_efs(mtp._radial, types, offsets, index, vectors, *out, threads,
                             budget)
        results.append(out)
    for other in results[1:]:
        for x, y in zip(results[0], other):
            np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="wrong shape"):
        mtp.kernel.basis_efs(mtp._radial, types, offsets, index, vectors, np.empty(s),
                             np.empty((s, 53, 3)), np.empty((s, 3, 3)))
