"""Maxvol rows of a configuration (mlip-formats.md §5.1)."""
import numpy as np
import pytest

from mlip_py.configuration import Configuration
from mlip_py.errors import ConfigError, MlipError
from mlip_py.io.als import read_als
from mlip_py.io.cfg import read_cfg
from mlip_py.potential.mtp import MTP
from mlip_py.selection.rows import RowFunction, RowWeights, configuration_rows, \
    rows_per_configuration


@pytest.fixture(scope="module")
def mo(request):
    from refdata import GOLDEN, shared_file

    shared_file("reference", "mlip", "golden", "Mo_l08.mtp")
    return MTP(GOLDEN / "Mo_l08.mtp")


def bcc(a=3.16, reps=2, rattle=0.05, seed=0):
    rng = np.random.default_rng(seed)
    base = np.array([[0, 0, 0], [0.5, 0.5, 0.5]])
    pts = np.array([(i, j, k) for i in range(reps) for j in range(reps) for k in range(reps)])
    frac = (pts[:, None, :] + base[None]).reshape(-1, 3)
    pos = frac * a + rng.normal(scale=rattle, size=frac.shape)
    return Configuration(lattice=np.eye(3) * a * reps, positions=pos, types=np.zeros(len(pos)))


def test_energy_rows_match_original_active_set_rows(golden, mo):
    """Rows of the training configurations stored in MLIP-2's .als equal ours."""
    state = read_als(golden("Mo_l08.als"))
    w = RowWeights()
    checked = 0
    for r, c in enumerate(state.row_cfg.tolist()):
        cfg = state.configurations[c]
        if len(cfg) == 0:
            continue
        row = configuration_rows(mo, cfg, w)
        assert row.shape == (1, mo.n_params)
        tol = 1e-13 * np.abs(state.a[r]).max()
        np.testing.assert_allclose(row[0], state.a[r], rtol=0, atol=tol)
        checked += 1
    assert checked == 23


def test_neighborhood_rows_match_original(golden, mo):
    state = read_als(golden("Mo_l08_nbh.als"))
    w = RowWeights(energy=0, nbh=1)
    for r, c in enumerate(state.row_cfg.tolist()):
        cfg = state.configurations[c]
        if len(cfg) == 0:
            continue
        rows = configuration_rows(mo, cfg, w)
        assert rows.shape == (len(cfg), mo.n_params)
        dev = np.abs(rows - state.a[r]).max(axis=1).min()
        assert dev < 1e-13 * np.abs(state.a[r]).max()


def test_weighting_and_weights(mo):
    cfg = bcc()
    n = len(cfg)
    g = mo.energy_gradient(cfg)
    r_vib = configuration_rows(mo, cfg, RowWeights())
    np.testing.assert_allclose(r_vib[0], g / n, rtol=1e-13)
    r_str = configuration_rows(mo, cfg, RowWeights(weighting="structures"))
    np.testing.assert_allclose(r_str, r_vib, rtol=1e-14)
    r_mol = configuration_rows(mo, cfg, RowWeights(energy=2.5, weighting="molecules"))
    np.testing.assert_allclose(r_mol[0], 2.5 * g, rtol=1e-13)
    # neighbourhood rows: site-energy gradients, not scaled by the weight; sum = dE/dtheta
    r_nbh = configuration_rows(mo, cfg, RowWeights(energy=0, nbh=3.0))
    assert r_nbh.shape == (n, mo.n_params)
    np.testing.assert_allclose(r_nbh.sum(axis=0), g, rtol=1e-12, atol=1e-12)
    # both kinds: neighbourhood rows first, then the energy row
    both = configuration_rows(mo, cfg, RowWeights(energy=1, nbh=1))
    np.testing.assert_array_equal(both[:n], r_nbh)
    np.testing.assert_allclose(both[n], g / n, rtol=1e-13)


@pytest.mark.parametrize("weighting,se,sf,ss", [
    ("vibrations", lambda n: 1 / n, lambda n: 1.0, lambda n: 1 / n),
    ("structures", lambda n: 1 / n**2, lambda n: 1 / n, lambda n: 1 / n**2),
    ("molecules", lambda n: 1.0, lambda n: 1.0, lambda n: 1.0),
])
def test_efs_rows(mo, weighting, se, sf, ss):
    cfg = bcc(reps=1, rattle=0.1, seed=3)
    n = len(cfg)
    w = RowWeights(energy=0.5, force=0.1, stress=0.01, weighting=weighting)
    rows = configuration_rows(mo, cfg, w)
    assert rows.shape == (1 + 3 * n + 9, mo.n_params) == (rows_per_configuration(w, n), mo.n_params)
    de, df, dv = mo.efs_jacobian(cfg, full_virial=True)
    np.testing.assert_allclose(rows[0], 0.5 * se(n) * de, rtol=1e-13)
    np.testing.assert_allclose(rows[1:1 + 3 * n], 0.1 * sf(n) * df.reshape(3 * n, -1), rtol=1e-13)
    np.testing.assert_allclose(rows[1 + 3 * n:], 0.01 * ss(n) * dv.reshape(9, -1), rtol=1e-13)
    # forces row = -d(dE/dtheta)/dr: finite difference on one coordinate
    h = 1e-5
    plus, minus = cfg.copy(), cfg.copy()
    plus.positions[1, 2] += h
    minus.positions[1, 2] -= h
    fd = -(mo.energy_gradient(plus) - mo.energy_gradient(minus)) / (2 * h)
    np.testing.assert_allclose(df[1, 2], fd, rtol=1e-5, atol=1e-7 * np.abs(fd).max())
    # zero weights leave their group out
    w2 = RowWeights(energy=0, force=1)
    assert configuration_rows(mo, cfg, w2).shape == (3 * n, mo.n_params)


def test_rows_invariant_under_rotation_and_permutation(mo):
    cfg = bcc(rattle=0.1, seed=5)
    q, _ = np.linalg.qr(np.random.default_rng(2).normal(size=(3, 3)))
    rot = cfg.copy()
    rot.lattice = cfg.lattice @ q.T
    rot.positions = cfg.positions @ q.T
    perm = cfg.copy()
    p = np.random.default_rng(3).permutation(len(cfg))
    perm.positions = cfg.positions[p]
    w = RowWeights()
    r0 = configuration_rows(mo, cfg, w)
    np.testing.assert_allclose(configuration_rows(mo, rot, w), r0, rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(configuration_rows(mo, perm, w), r0, rtol=1e-11, atol=1e-14)
    wn = RowWeights(energy=0, nbh=1)
    np.testing.assert_allclose(configuration_rows(mo, perm, wn), configuration_rows(mo, cfg, wn)[p],
                               rtol=1e-11, atol=1e-14)


def test_empty_configuration_and_errors(mo):
    empty = Configuration(lattice=np.eye(3))
    for w in (RowWeights(), RowWeights(nbh=1), RowWeights(force=1)):
        assert configuration_rows(mo, empty, w).shape == (0, mo.n_params)
        assert rows_per_configuration(w, 0) == 0
    with pytest.raises(ConfigError, match="weighting"):
        RowWeights(weighting="crystals")
    with pytest.raises(ConfigError, match="all selection weights"):
        RowWeights(energy=0)
    with pytest.raises(ConfigError, match="energy-weight"):
        RowWeights(energy="abc")
    with pytest.raises(ConfigError, match="finite"):
        RowWeights(force=float("nan"))
    two = bcc(reps=1)
    two.types[1] = 1
    with pytest.raises(MlipError, match="species"):
        configuration_rows(mo, two, RowWeights())


def test_als_weight_dict_round_trip():
    w = RowWeights(energy=0.5, force=0.25, stress=0.125, nbh=2.0, weighting="molecules")
    d = w.als_dict()
    assert list(d) == ["nbh", "energy", "force", "stress"]
    assert RowWeights.from_als(d, "molecules") == w
    assert w.same_rows(RowWeights.from_als(d, "molecules"))
    assert not w.same_rows(RowWeights.from_als(d))


def test_upstream_rows_count(upstream):
    """Every configuration of the upstream example gives one row (energy mode)."""
    mtp = MTP(upstream("04.calc-grade", "pot.mtp"))
    for cfg in read_cfg(upstream("04.calc-grade", "train.cfg")):
        rows = configuration_rows(mtp, cfg, RowWeights())
        assert rows.shape == (1, mtp.n_params) and np.isfinite(rows).all()


LEAN_WEIGHTS = [RowWeights(), RowWeights(energy=2.5, weighting="molecules"),
                RowWeights(energy=0.5, weighting="structures"), RowWeights(energy=0, nbh=1),
                RowWeights(energy=1.5, nbh=3)]


def _generic(mtp, cfg, w, threads):
    """configuration_rows through the MTP wrappers (explicit neighbour list)."""
    nb = mtp.neighbors(cfg) if len(cfg) else None
    return configuration_rows(mtp, cfg, w, neighbors=nb, num_threads=threads)


@pytest.mark.parametrize("w", LEAN_WEIGHTS)
def test_lean_rows_bit_identical_to_generic_path(golden, mo, w):
    """RowFunction (direct kernel calls, lean neighbour lists) gives the generic path's
    rows bit for bit: golden training configurations, small and large cells (both
    neighbour kernels), a cluster, a slab, an empty configuration, 1 and 2 threads."""
    cfgs = read_cfg(golden("train_Mo.cfg"))[:12] + [bcc(reps=1), bcc(reps=4, seed=3)]
    cl = bcc(reps=2, seed=5)
    cl.lattice = np.zeros((3, 3))
    slab = bcc(reps=2, seed=6)
    slab.lattice[2] = 0.0
    cfgs += [cl, slab, Configuration(lattice=np.eye(3))]
    assert max(len(c) for c in cfgs) > 96  # the cell-list kernel is used too
    for threads in (1, 2):
        f = RowFunction(mo, w, num_threads=threads)
        for cfg in cfgs:
            want = _generic(mo, cfg, w, threads)
            got = f(cfg)
            assert got.shape == want.shape == (rows_per_configuration(w, len(cfg)), mo.n_params)
            assert got.tobytes() == want.tobytes()
            # block-ordered energy sums: the same bits for any number of threads
            assert got.tobytes() == _generic(mo, cfg, w, 1).tobytes()
            assert configuration_rows(mo, cfg, w, num_threads=threads).tobytes() == want.tobytes()


def test_lean_rows_follow_coefficients_and_threads(mo):
    """Coefficients and mtp.num_threads are read at every call."""
    mtp = MTP(mo.params.copy())
    w = RowWeights(nbh=1)
    f = RowFunction(mtp, w)
    cfg = bcc(reps=3, seed=2)
    before = f(cfg)
    theta = mtp.get_params()
    mtp.set_params(theta * 1.5)
    assert f(cfg).tobytes() == _generic(mtp, cfg, w, None).tobytes()
    assert f(cfg).tobytes() != before.tobytes()
    mtp.num_threads = 2
    assert f(cfg).tobytes() == _generic(mtp, cfg, w, 2).tobytes()


def test_lean_rows_errors_as_generic_path(mo):
    two = bcc(reps=1)
    two.types[1] = 1
    neg = bcc(reps=1)
    neg.types[0] = -1
    flat = bcc(reps=1)
    flat.lattice[2] = flat.lattice[1]  # linearly dependent periodic rows
    for w in LEAN_WEIGHTS[:1] + LEAN_WEIGHTS[3:4]:
        f = RowFunction(mo, w)
        for cfg, err in ((two, MlipError), (neg, MlipError), (flat, ConfigError)):
            with pytest.raises(err) as lean:
                f(cfg)
            with pytest.raises(err) as generic:
                _generic(mo, cfg, w, None)
            assert str(lean.value) == str(generic.value)
        # a bad type is reported before a bad lattice, as by the generic path
        both = bcc(reps=1)
        both.types[1] = 1
        both.lattice[2] = both.lattice[1]
        with pytest.raises(MlipError, match="species"):
            f(both)


@pytest.mark.parametrize("w", LEAN_WEIGHTS)
def test_many_equals_one_thread_rows(golden, mo, w, monkeypatch):
    """RowFunction.many (batched kernels, parallel over configurations) = the one-thread
    rows of each configuration, bit for bit, for 1, 2 and 3 threads; configurations it
    does not batch (no atoms, > 96 atoms, far coordinates) go one at a time to the row
    function itself; a bad one is reported there at its place."""
    cfgs = read_cfg(golden("train_Mo.cfg"))[:20] + [bcc(reps=1), bcc(reps=4, seed=3)]
    cl = bcc(reps=2, seed=5)
    cl.lattice = np.zeros((3, 3))
    slab = bcc(reps=2, seed=6)
    slab.lattice[2] = 0.0
    far = bcc(reps=2, seed=7)
    far.positions = far.positions + 1e9
    holes = bcc(reps=4, seed=9, rattle=0.1)
    holes.positions, holes.types = holes.positions[:80], holes.types[:80]
    cfgs += [cl, slab, Configuration(lattice=np.eye(3)), far, bcc(reps=3, seed=8), holes]
    assert any(64 < len(c) <= 96 for c in cfgs)  # energy row summed in two blocks
    one = RowFunction(mo, w, num_threads=1)
    want = [one(c) for c in cfgs]
    passed = []
    call = RowFunction.__call__

    def single(self, cfg):
        passed.append(cfg)
        return call(self, cfg)

    monkeypatch.setattr(RowFunction, "__call__", single)
    for threads in (1, 2, 3):
        passed.clear()
        got = RowFunction(mo, w).many(cfgs, threads)
        assert len(got) == len(cfgs)
        for g, x in zip(got, want):
            assert g.shape == x.shape and g.tobytes() == x.tobytes()
        assert {id(c) for c in passed} == {id(c) for c in cfgs if len(c) == 0 or len(c) > 96
                                           or c is far}
    bad = bcc(reps=1)
    bad.types[1] = 1
    with pytest.raises(MlipError, match="species"):
        RowFunction(mo, w).many(cfgs[:3] + [bad], 2)
