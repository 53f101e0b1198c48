"""ActiveSet: MLIP-2's grades and selections against the golden outputs, invariances,
streaming equals in-memory, the batch (at most k) selection, bounded memory."""
import itertools
import tracemalloc

import numpy as np
import pytest

from mlip_py.configuration import Configuration
from mlip_py.errors import ConfigError, SelectionError
from mlip_py.io.cfg import iter_cfg, read_cfg
from mlip_py.selection import active_set
from mlip_py.selection.active_set import ActiveSet, RowStore, format_grade
from mlip_py.selection.maxvol import MaxVol
from mlip_py.selection.rows import RowWeights, configuration_rows

SWAP = 1.0000001


def close_to_printed(ours, printed):
    """|ours - printed| <= max(1e-6 |printed|, 5e-7) (MV_grade has 6 decimals)."""
    want = float(printed)
    return abs(ours - want) <= max(1e-6 * abs(want), 5e-7)


def built(golden, pot, train, weights=None, **kw):
    aset = ActiveSet(golden(pot), weights, **kw)
    aset.select(lambda: iter_cfg(golden(train)))
    return aset


CASES = [
    ("Mo_l08.mtp", "train_Mo.cfg", "candidates_Mo_200.cfg", "graded_candidates_Mo_l08.cfg",
     "Mo_l08.als", None),
    ("Mo_l10.mtp", "train_Mo.cfg", "candidates_Mo_200.cfg", "graded_candidates_Mo_l10.cfg",
     "Mo_l10.als", None),
    ("NaCl_l08.mtp", "train_NaCl.cfg", "efs_set_NaCl.cfg", "graded_efs_set_NaCl_l08.cfg",
     "NaCl_l08.als", None),
    ("Mo_l08.mtp", "train_Mo.cfg", "efs_set_Mo.cfg", "graded_nbh_efs_set_Mo_l08.cfg",
     "Mo_l08_nbh.als", RowWeights(energy=0, nbh=1)),
]


@pytest.mark.parametrize("pot,train,inp,graded,als,weights", CASES)
def test_grades_equal_original(golden, pot, train, inp, graded, als, weights):
    aset = built(golden, pot, train, weights)
    ours = [g for _, g in aset.iter_grades(iter_cfg(golden(inp)))]
    want = [c.features["MV_grade"] for c in iter_cfg(golden(graded))]
    assert len(ours) == len(want) > 0
    bad = [(i, o, w) for i, (o, w) in enumerate(zip(ours, want)) if not close_to_printed(o, w)]
    assert not bad
    # against the original's own A (loaded from its .als): the printed text is identical
    loaded = ActiveSet.load(golden(als))
    if weights is not None:
        assert loaded.weights == weights
    texts = [format_grade(g) for _, g in loaded.iter_grades(iter_cfg(golden(inp)))]
    same = sum(t == w for t, w in zip(texts, want))
    assert same >= len(want) - 1  # NaCl: one 4.7e8 grade differs in the 6th decimal
    assert all(close_to_printed(float(t), w) for t, w in zip(texts, want))


def test_upstream_example_04(upstream):
    aset = ActiveSet(upstream("04.calc-grade", "pot.mtp"))
    aset.select(lambda: iter_cfg(upstream("04.calc-grade", "train.cfg")))
    ours = [format_grade(g) for _, g in aset.iter_grades(iter_cfg(upstream("04.calc-grade",
                                                                          "test.cfg")))]
    want = [c.features["MV_grade"] for c in iter_cfg(upstream("04.calc-grade", "sample_out",
                                                              "graded.cfg"))]
    assert ours == want


def test_training_grades_at_most_swap_threshold_and_outlier(golden):
    aset = built(golden, "Mo_l08.mtp", "train_Mo.cfg")
    grades = np.array([g for _, g in aset.iter_grades(iter_cfg(golden("train_Mo.cfg")))])
    assert grades.max() <= SWAP
    # configurations in the active set grade exactly 1 (up to rounding)
    for cfg in aset.slot_configurations():
        assert aset.grade(cfg) == pytest.approx(1.0, abs=1e-9)
    # compressed bcc Mo (a = 2.6 A instead of 3.16) is far outside the training data
    a = 2.6
    pos = np.array([[0, 0, 0], [0.5, 0.5, 0.5]]) * a
    far = Configuration(lattice=np.eye(3) * a, positions=pos, types=[0, 0])
    assert aset.grade(far) > 10.0


def test_grade_invariant_under_rotation_and_permutation(golden):
    for weights in (None, RowWeights(energy=0, nbh=1)):
        aset = built(golden, "Mo_l08.mtp", "train_Mo.cfg", weights)
        cfg = read_cfg(golden("candidates_Mo_200.cfg"))[17]
        q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))
        rot = cfg.copy()
        rot.lattice = cfg.lattice @ q.T
        rot.positions = cfg.positions @ q.T
        perm = cfg.copy()
        perm.positions = cfg.positions[np.random.default_rng(2).permutation(len(cfg))]
        g = aset.grade(cfg)
        assert g > 0
        assert aset.grade(rot) == pytest.approx(g, rel=1e-9)
        assert aset.grade(perm) == pytest.approx(g, rel=1e-9)


def subset(golden, name, count):
    return list(itertools.islice(iter_cfg(golden(name)), count))


@pytest.mark.parametrize("weights", [None, RowWeights(energy=0, nbh=1)])
def test_streaming_selection_equals_in_memory(golden, weights):
    """A tiny buffer (many passes over the temporary file) gives the in-memory result."""
    train = subset(golden, "train_Mo.cfg", 60 if weights is None else 25)
    cand = subset(golden, "candidates_Mo_200.cfg", 120 if weights is None else 30)
    small = ActiveSet(golden("Mo_l08.mtp"), weights, block_rows=16, buffer_bytes=0)
    assert small.buffer_rows == 2 * small.n
    small.select(train, select_threshold=SWAP)
    out = small.select(cand, swap_limit=None)
    # reference: MaxVol.select on all rows in memory, same owners
    mv = MaxVol(small.n)
    w = weights or RowWeights()
    rows_t = [configuration_rows(small.mtp, c, w) for c in train]
    own_t = np.concatenate([np.full(len(r), i) for i, r in enumerate(rows_t)])
    mv.select(np.concatenate(rows_t), own_t, select_threshold=SWAP)
    rows_c = [configuration_rows(small.mtp, c, w) for c in cand]
    own_c = np.concatenate([np.full(len(r), len(train) + i) for i, r in enumerate(rows_c)])
    res = mv.select(np.concatenate(rows_c), own_c)
    np.testing.assert_array_equal(small.owners, mv.owners)
    np.testing.assert_allclose(small.maxvol.A, mv.A, rtol=0, atol=0)
    assert out.result.n_swaps == res.n_swaps
    assert out.result.passes > 1
    assert out.entered == list(dict.fromkeys(o for o in mv.owners.tolist() if o >= len(train)))
    for o in out.entered:  # the configurations were fetched by the second pass
        np.testing.assert_array_equal(small.configurations[o].positions,
                                      cand[o - len(train)].positions)


@pytest.mark.parametrize("weights,k,cost", [
    (None, 4, None),
    (None, None, None),
    (None, 6, lambda c: float(len(c)) ** 3),
    (RowWeights(energy=0, nbh=1), 3, None),
])
def test_batch_selection_equals_maxvol_batch_select(golden, weights, k, cost):
    train = subset(golden, "train_Mo.cfg", 40)
    cand = subset(golden, "candidates_Mo_200.cfg", 80)
    aset = ActiveSet(golden("Mo_l08.mtp"), weights, block_rows=32)
    aset.select(train, select_threshold=SWAP)
    mv = aset.maxvol.copy()
    w = weights or RowWeights()
    rows = [configuration_rows(aset.mtp, c, w) for c in cand]
    owners = np.concatenate([np.full(len(r), aset._next_owner + i) for i, r in enumerate(rows)])
    costs = None if cost is None else np.concatenate(
        [np.full(len(r), cost(c)) for r, c in zip(rows, cand)])
    res_ref = mv.batch_select(np.concatenate(rows), len(cand) if k is None else k, owners,
                              cost=costs)
    out = aset.select_batch(cand, k, cost=cost)
    assert out.result.n_swaps == res_ref.n_swaps > 0
    assert [j for _, j in out.result.swaps] == [j for _, j in res_ref.swaps]
    np.testing.assert_array_equal(aset.owners, mv.owners)
    np.testing.assert_allclose(aset.maxvol.A, mv.A, rtol=0, atol=0)
    np.testing.assert_allclose(aset.maxvol.invA, mv.invA, rtol=1e-8,
                               atol=1e-10 * np.abs(mv.invA).max())
    if k is not None:
        assert len(out.entered) <= k
    # every chosen configuration is still in the set (never pushed out again)
    assert set(out.entered) == {o for o in aset.owners.tolist() if o >= out.first_owner}


def test_batch_cost_prefers_cheaper_equivalent(golden):
    """Two copies of a high-grade configuration, one as a 2x2x2 supercell (8x atoms, the
    same row up to round-off): with the N^3 cost the small one is chosen, without a cost
    the one whose grade is larger in the last bits (the first one on an exact tie)."""
    train = subset(golden, "train_Mo.cfg", 40)
    cand = read_cfg(golden("candidates_Mo_200.cfg"))[:30]
    aset = ActiveSet(golden("Mo_l08.mtp"))
    aset.select(train, select_threshold=SWAP)
    grades = [aset.grade(c) for c in cand]
    best = cand[int(np.argmax(grades))]
    big = best.copy()
    shifts = np.array(list(itertools.product(range(2), repeat=3))) @ best.lattice
    big.positions = (best.positions[None] + shifts[:, None]).reshape(-1, 3)
    big.types = np.tile(best.types, 8)
    big.lattice = best.lattice * 2
    assert aset.grade(big) == pytest.approx(aset.grade(best), rel=1e-8)
    g_big, g_best = aset.grade(big), aset.grade(best)
    for cost, want in ((None, 0 if g_big >= g_best else 1), (lambda c: float(len(c)) ** 3, 1)):
        a2 = ActiveSet(golden("Mo_l08.mtp"))
        a2.select(train, select_threshold=SWAP)
        out = a2.select_batch([big, best], 1, cost=cost)
        assert [o - out.first_owner for o in out.entered] == [want]


def test_load_state_checks_potential(golden):
    with pytest.raises(ConfigError, match="potential differs"):
        ActiveSet.load(golden("Mo_l08.als"), golden("Mo_l10.mtp"))
    ok = ActiveSet.load(golden("Mo_l08.als"), golden("Mo_l08.mtp"))
    assert ok.filled_slots() == 23
    assert ok.weights == RowWeights()


def test_source_must_be_rereadable(golden, monkeypatch):
    aset = ActiveSet(golden("Mo_l08.mtp"))
    with pytest.raises(TypeError, match="read twice"):
        aset.select(iter([]))
    cfgs = subset(golden, "train_Mo.cfg", 5)
    calls = []

    def changing():
        calls.append(1)
        return iter(cfgs if len(calls) == 1 else cfgs[:1])
    # a source too large to keep in memory is read a second time, and checked
    monkeypatch.setattr(active_set, "CACHE_BYTES", 0)
    with pytest.raises(SelectionError, match="changed"):
        aset.select(changing)


def test_small_source_read_once_same_result(golden, monkeypatch):
    """Up to CACHE_BYTES the configurations of the first pass are kept (no second read);
    the active set is the same as with the second read."""
    def source_counting(calls):
        def src():
            calls.append(1)
            return iter_cfg(golden("train_Mo.cfg"))
        return src

    results = []
    for budget in (active_set.CACHE_BYTES, 0):
        monkeypatch.setattr(active_set, "CACHE_BYTES", budget)
        calls = []
        aset = ActiveSet(golden("Mo_l08.mtp"))
        out = aset.select(source_counting(calls))
        assert len(calls) == (1 if budget else 2)
        assert out.entered and all(o in aset.configurations for o in out.entered)
        results.append((aset.maxvol.A.tobytes(), aset.owners.tolist(),
                        [aset.configurations[o].positions.tobytes() for o in out.entered]))
    assert results[0] == results[1]


@pytest.mark.parametrize("sizes,on_disk", [((3, 0, 9, 1, 12), True), ((3, 0, 2, 1), False)])
def test_row_store_blocks(tmp_path, rng, sizes, on_disk):
    """Rows come back in order in blocks of at most block_rows, from the temporary files
    or, when they never filled the write buffer, from memory (no files made)."""
    with RowStore(5, block_rows=7, directory=tmp_path, values=True) as st:
        rows = [rng.normal(size=(k, 5)) for k in sizes]
        for i, r in enumerate(rows):
            st.append(r, i, value=10.0 + i)
        st.finish()
        allr = np.concatenate(rows)
        got = [(b.copy(), o.copy()) for b, o in st.blocks()]
        assert max(len(b) for b, _ in got) <= 7
        np.testing.assert_array_equal(np.concatenate([b for b, _ in got]), allr)
        own = np.concatenate([np.full(len(r), i) for i, r in enumerate(rows)])
        np.testing.assert_array_equal(np.concatenate([o for _, o in got]), own)
        np.testing.assert_array_equal(st.values_block(0, len(own)), 10.0 + own)
        assert st.peak_block_rows == min(7, len(own))
        assert (st._rf is not None) == on_disk


def test_memory_bounded_in_number_of_candidates(golden, monkeypatch):
    """Largest allocations do not grow with the number of candidates (grading and
    selection); the row blocks held in RAM are bounded by block_rows / the buffer, the
    configurations kept from the first pass by CACHE_BYTES (here smaller than 300
    configurations: dropped in both runs)."""
    monkeypatch.setattr(active_set, "CACHE_BYTES", 200_000)
    cands = read_cfg(golden("candidates_Mo_200.cfg"))
    aset = ActiveSet(golden("Mo_l08.mtp"), block_rows=256, buffer_bytes=0)
    aset.select(subset(golden, "train_Mo.cfg", 60), select_threshold=SWAP)

    def stream(k):
        def gen():
            for i in range(k):
                c = cands[i % len(cands)].copy()
                c.positions = c.positions + 1e-3 * ((i // len(cands)) % 7)
                yield c
        return gen

    peaks = {}
    for k in (300, 1200):  # both above the 256 configurations graded per block
        a = ActiveSet.from_state(aset.state(), block_rows=256, buffer_bytes=0)
        tracemalloc.start()
        for _ in a.iter_grades(stream(k)()):
            pass
        a.select(stream(k))
        peaks[k] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert a.peak_grade_rows <= 256
        assert a.maxvol.peak_work_rows <= a.buffer_rows + a.n + 256
    assert peaks[1200] < 1.15 * peaks[300], peaks


def test_worker_threads_give_identical_results(golden):
    """Rows computed with 3 worker threads (batched kernels for small configurations, big
    ones inline) equal serial ones, bit for bit."""
    a, reps = 3.16, 7
    grid = np.array(list(itertools.product(range(reps), repeat=3)), dtype=float)
    frac = np.concatenate([grid, grid + 0.5])
    pos = frac * a + np.random.default_rng(4).normal(scale=0.05, size=frac.shape)
    big = Configuration(lattice=np.eye(3) * a * reps, positions=pos, types=np.zeros(len(pos)))
    cfgs = read_cfg(golden("efs_set_Mo.cfg")) + [big] + subset(golden, "candidates_Mo_200.cfg", 150)
    assert len(big) >= 512  # takes the inline (OpenMP) path
    one = ActiveSet(golden("Mo_l08.mtp"), workers=1)
    two = ActiveSet(golden("Mo_l08.mtp"), workers=3)
    for (c1, r1), (c2, r2) in zip(one.iter_rows(cfgs), two.iter_rows(iter(cfgs)), strict=True):
        assert c1 is c2
        np.testing.assert_array_equal(r1, r2)
    train = subset(golden, "train_Mo.cfg", 80)
    one.select(train)
    two.select(train)
    np.testing.assert_array_equal(one.maxvol.A, two.maxvol.A)
    g1 = [g for _, g in one.iter_grades(cfgs)]
    g2 = [g for _, g in two.iter_grades(cfgs)]
    assert g1 == g2
