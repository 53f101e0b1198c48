"""MaxVol: grades, MLIP-2 multiple selection, batch and streaming selection.

Checked against the brute-force oracle tests/reference/maxvol_ref.py (solves and
determinants from scratch at every step) and against exhaustive single-swap search.
"""
import math
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from mlip_py.errors import ConfigError, SelectionError
from mlip_py.selection.maxvol import MaxVol

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "reference"))
import maxvol_ref as ref  # noqa: E402

THR = 1.0000001


def small_cases(rng, count):
    for _ in range(count):
        n = int(rng.integers(3, 7))
        m = int(rng.integers(4, 11))
        B = rng.normal(size=(m, n)) * rng.uniform(0.2, 3.0, size=(m, 1))
        yield n, m, B


def replay(A, B, swaps):
    """Apply recorded swaps with physical row exchanges; |det A| after each."""
    A, B = A.copy(), B.copy()
    dets = [abs(np.linalg.det(A))]
    for i0, j0 in swaps:
        A[j0], B[i0] = B[i0].copy(), A[j0].copy()
        dets.append(abs(np.linalg.det(A)))
    return A, B, dets


def blocks_of(B, size, owners=None):
    def gen():
        for s in range(0, B.shape[0], size):
            if owners is None:
                yield B[s:s + size]
            else:
                yield B[s:s + size], owners[s:s + size]
    return gen


# ----------------------------------------------------------------------------- grades
def test_grades_match_oracle_and_first_max(rng):
    n = 7
    mv = MaxVol.from_matrix(rng.normal(size=(n, n)) + 3 * np.eye(n), block_rows=5)
    B = rng.normal(size=(23, n))
    g, c = mv.grades(B)
    gr, cr = ref.grades(mv.A, B)
    np.testing.assert_allclose(g, gr, rtol=1e-10)
    np.testing.assert_array_equal(c, cr)
    # exact ties: with A = I the grade row is the row itself; first column must win
    mv = MaxVol.from_matrix(np.eye(4))
    g, c = mv.grades([[1.0, -3.0, 3.0, 2.0], [0.0, 0.0, 0.0, 0.0], [-5.0, 1.0, 5.0, -5.0]])
    np.testing.assert_array_equal(g, [3.0, 0.0, 5.0])
    np.testing.assert_array_equal(c, [1, 0, 0])
    assert mv.grade([[1.0, -3.0, 3.0, 2.0], [-5.0, 1.0, 5.0, -5.0]]) == 5.0
    assert mv.grade(np.empty((0, 4))) == 0.0


def test_initial_state_and_grade_scale():
    mv = MaxVol(3, threshold_init=1e-5)
    np.testing.assert_array_equal(mv.A, 1e-5 * np.eye(3))
    assert mv.grade([0.0, 2e-5, 1e-5]) == pytest.approx(2.0)
    assert mv.log_abs_det() == pytest.approx(3 * math.log(1e-5))
    assert list(mv.owners) == [-1, -1, -1]


# ----------------------------------------------------------------------------- select
def test_select_reproduces_bruteforce_mlip2(rng):
    for n, m, B in small_cases(rng, 60):
        mv = MaxVol(n)
        res = mv.select(B, owners=np.arange(100, 100 + m))
        A, _, oa, _, swaps, dets = ref.select(1e-5 * np.eye(n), B, [-1] * n,
                                              range(100, 100 + m), 1.1, THR)
        assert res.swaps == swaps
        assert res.n_swaps == len(swaps)
        np.testing.assert_allclose(mv.A, A, rtol=0, atol=0)  # rows are moved, not computed
        assert mv.owners.tolist() == oa
        assert res.log_det_change == pytest.approx(math.log(dets[-1] / dets[0]), rel=1e-9)
        assert mv.log_abs_det() == pytest.approx(mv.log_abs_det(recompute=True), rel=1e-9)


def test_select_local_optimum_monotone_det_and_unit_grades(rng):
    """After selection no single swap gains more than the swap threshold (exhaustive),
    |det A| grew at every swap, rows of A have grade 1."""
    for n, m, B in small_cases(rng, 40):
        # start from a random non-trivial active set so both kinds of rows compete
        A0 = rng.normal(size=(n, n))
        mv = MaxVol.from_matrix(A0)
        res = mv.select(B, select_threshold=THR)
        _, Bfinal, dets = replay(A0, B, res.swaps)
        np.testing.assert_allclose(mv.A, replay(A0, B, res.swaps)[0], rtol=0, atol=0)
        assert all(d1 > d0 * THR * (1 - 1e-9) for d0, d1 in zip(dets, dets[1:]))
        np.testing.assert_allclose(res.gains, np.array(dets[1:]) / dets[:-1], rtol=1e-8)
        assert ref.best_single_swap_factor(mv.A, Bfinal) <= THR * (1 + 1e-9)
        g, _ = mv.grades(mv.A)
        np.testing.assert_allclose(g, 1.0, rtol=1e-12)
        assert res.max_grade_after <= THR


def test_select_threshold_gates_and_swap_limit(rng):
    n, m = 5, 12
    A0 = rng.normal(size=(n, n))
    mv = MaxVol.from_matrix(A0)
    B = rng.normal(size=(m, n))
    g = mv.grades(B)[0].max()
    assert g > 1.5
    # gate: max grade below select threshold -> nothing, even though grades > swap thr
    res = mv.copy().select(B, select_threshold=g * 1.01)
    assert res.n_swaps == 0 and res.max_grade_before == pytest.approx(g)
    full = mv.copy().select(B)
    assert full.n_swaps >= 3
    for lim in (0, 1, 2, full.n_swaps - 1):
        mv2 = mv.copy()
        res = mv2.select(B, swap_limit=lim)
        assert res.n_swaps == lim
        assert res.swaps == full.swaps[:lim]
        _, _, _, _, swaps, _ = ref.select(A0, B, [-1] * n, range(m), 1.1, THR, limit=lim)
        assert res.swaps == swaps


def test_sherman_morrison_accuracy_after_many_swaps(rng):
    n = 24
    mv = MaxVol(n, threshold_init=0.3, refresh_every=10**9, refresh_tol=np.inf)  # never re-invert
    total = 0
    for rnd in range(12):  # growing candidates keep the swaps coming
        B = rng.normal(size=(150, n)) * 1.4 ** rnd
        res = mv.select(B, select_threshold=THR)
        total += res.n_swaps
    assert total > 8 * n
    inv = np.linalg.inv(mv.A)
    assert np.max(np.abs(mv.invA - inv)) <= 1e-10 * np.max(np.abs(inv))
    assert mv.check() < 1e-10
    assert mv.log_abs_det() == pytest.approx(mv.log_abs_det(recompute=True), rel=1e-10)


def test_refresh_keeps_state_consistent(rng):
    n, m = 10, 300
    B = rng.normal(size=(m, n))
    a = MaxVol(n, refresh_every=1, refresh_tol=0.0)   # re-invert after every swap
    b = MaxVol(n, refresh_every=10**9)
    ra, rb = a.select(B), b.select(B)
    assert ra.swaps == rb.swaps
    assert a.log_abs_det() == pytest.approx(b.log_abs_det(), abs=1e-9)
    assert a.log_abs_det() == pytest.approx(a.log_abs_det(recompute=True), abs=1e-9)
    assert a.check() < 1e-9


def test_overwrite_b_holds_pushed_out_rows(rng):
    n, m = 4, 9
    B = rng.normal(size=(m, n))
    orig = B.copy()
    mv = MaxVol(n)
    res = mv.select(B, overwrite_b=True)
    _, Bf, _ = replay(1e-5 * np.eye(n), orig, res.swaps)
    np.testing.assert_array_equal(B, Bf)


# ----------------------------------------------------------------------------- degenerate input
def test_zero_and_rank_deficient_rows(rng):
    n = 5
    mv = MaxVol(n)
    res = mv.select(np.zeros((6, n)))
    assert res.n_swaps == 0 and res.max_grade_before == 0.0
    np.testing.assert_array_equal(mv.A, 1e-5 * np.eye(n))
    # rank-2 candidates fill exactly two slots; the others keep init * e_j
    basis = rng.normal(size=(2, n))
    B = rng.normal(size=(30, 2)) @ basis
    res = mv.select(B)
    filled = mv.owners >= 0
    assert filled.sum() == 2
    np.testing.assert_array_equal(mv.A[~filled], (1e-5 * np.eye(n))[~filled])
    assert np.linalg.matrix_rank(mv.A[filled]) == 2
    assert mv.check() < 1e-8
    assert mv.grades(B)[0].max() <= THR * (1 + 1e-9)


def test_singular_and_nonfinite_inputs(rng):
    A = rng.normal(size=(4, 4))
    A[3] = A[0] + A[1]
    with pytest.raises(SelectionError, match="singular"):
        MaxVol.from_matrix(A)
    with pytest.raises(SelectionError, match="singular"):
        MaxVol.from_matrix(np.zeros((3, 3)))
    mv = MaxVol(3)
    B = rng.normal(size=(5, 3))
    B[2, 1] = np.nan
    with pytest.raises(SelectionError, match="row 2"):
        mv.select(B)
    with pytest.raises(SelectionError, match="row 2"):
        mv.grades(B)
    with pytest.raises(SelectionError, match="shape"):
        mv.select(np.zeros((2, 4)))


@pytest.mark.parametrize("kw", [dict(threshold_init=0), dict(threshold_init=-1),
                                dict(threshold_select=1.0), dict(threshold_swap=0.5),
                                dict(threshold_swap=float("nan")), dict(threshold_init=1e-320)])
def test_invalid_thresholds(kw):
    with pytest.raises(ConfigError, match="Can't initialize Maxvol: invalid threshold value"):
        MaxVol(3, **kw)


def test_from_matrix_keeps_given_inverse_and_owners(rng):
    A = rng.normal(size=(6, 6)) + 4 * np.eye(6)
    inv = np.linalg.inv(A)
    mv = MaxVol.from_matrix(A, invA=inv, owners=[5, 4, 3, 2, 1, 0])
    np.testing.assert_array_equal(mv.invA, inv)
    assert mv.owners.tolist() == [5, 4, 3, 2, 1, 0]
    bad = MaxVol.from_matrix(A, invA=inv * 1.01)  # inconsistent inverse -> recomputed
    assert bad.check() < 1e-12


# ----------------------------------------------------------------------------- batch_select
def test_batch_select_matches_bruteforce_greedy(rng):
    for n, m, B in small_cases(rng, 25):
        A0 = rng.normal(size=(n, n))
        k = int(rng.integers(1, n + 1))
        mv = MaxVol.from_matrix(A0)
        res = mv.batch_select(B, k)
        A, swaps = ref.batch_select(A0, B, k)
        assert res.swaps == swaps
        np.testing.assert_array_equal(mv.A, A)
        rows_in = [i for i, _ in res.swaps]
        assert len(set(rows_in)) == len(rows_in) <= k
        # chosen candidates are all still in the set
        assert set(mv.owners.tolist()) >= set(rows_in)


def test_batch_select_cost_and_owner_groups(rng):
    for n, m, B in small_cases(rng, 15):
        A0 = rng.normal(size=(n, n))
        cost = rng.uniform(0.5, 3.0, size=m)
        mv = MaxVol.from_matrix(A0)
        res = mv.batch_select(B, 2, cost=cost)
        _, swaps = ref.batch_select(A0, B, 2, cost=cost)
        assert res.swaps == swaps
    # two owners with three rows each: k=1 owner, its other rows come for free
    n = 6
    B = rng.normal(size=(6, n))
    owners = np.array([7, 7, 7, 9, 9, 9])
    mv = MaxVol(n)
    res = mv.batch_select(B, 1, owners=owners)
    entered = {int(o) for o in mv.owners if o >= 0}
    assert len(entered) == 1 and res.n_swaps == 3
    # budget: only the affordable rows may enter
    mv = MaxVol(n)
    res = mv.batch_select(B, 6, cost=[5, 5, 1, 1, 5, 5], budget=2.5)
    assert {i for i, _ in res.swaps} == {2, 3}


# ----------------------------------------------------------------------------- streaming
def test_streaming_equals_batch_when_buffer_holds_everything(rng):
    for n, m, B in small_cases(rng, 20):
        a, b = MaxVol(n), MaxVol(n)
        ra = a.select(B, owners=np.arange(m) + 10)
        rb = b.select_streaming(blocks_of(B, 3, np.arange(m) + 10), buffer_rows=m)
        assert rb.passes == 1
        assert rb.swaps == ra.swaps
        np.testing.assert_array_equal(a.A, b.A)
        assert a.owners.tolist() == b.owners.tolist()


def test_streaming_exact_reproduces_batch_small_buffer(rng):
    """Tiny buffers force the bound/pass machinery; duplicated rows exercise ties."""
    for n, m, B in small_cases(rng, 30):
        B = np.vstack([B, B[::2]])  # exact duplicates (ties broken by position)
        A0 = rng.normal(size=(n, n))
        a = MaxVol.from_matrix(A0)
        b = MaxVol.from_matrix(A0)
        ra = a.select(B, select_threshold=THR)
        rb = b.select_streaming(blocks_of(B, 4), select_threshold=THR, buffer_rows=2)
        assert rb.swaps == ra.swaps
        np.testing.assert_allclose(b.A, a.A, rtol=0, atol=0)
        assert a.owners.tolist() == b.owners.tolist()


def test_streaming_large_exact_and_approximate(rng):
    n, m, blk = 30, 20_000, 1_000
    B = rng.normal(size=(m, n)) * rng.uniform(0.1, 2.0, size=(m, 1))
    # an active set from a "training set", then the candidates
    base = MaxVol(n)
    base.select(rng.normal(size=(300, n)), select_threshold=THR)
    batch = base.copy()
    rb = batch.select(B)
    assert rb.n_swaps > 0
    ex = base.copy()
    re_ = ex.select_streaming(blocks_of(B, blk), buffer_rows=200)
    assert re_.passes > 1
    assert re_.swaps == rb.swaps
    assert ex.log_abs_det() == pytest.approx(batch.log_abs_det(), abs=1e-8)
    assert ex.grades(B)[0].max() <= THR
    # approximate mode: same stopping criterion, det may differ but never below start
    ap = base.copy()
    ra = ap.select_streaming(blocks_of(B, blk), buffer_rows=200, exact=False)
    assert ap.grades(B)[0].max() <= THR
    assert ap.log_abs_det() > base.log_abs_det()
    assert ra.log_det_change == pytest.approx(ap.log_abs_det() - base.log_abs_det(), rel=1e-9)
    # from the initial init*I state as well (every row starts with a huge grade)
    ex0 = MaxVol(n)
    r0 = ex0.select_streaming(blocks_of(B, blk), buffer_rows=300)
    b0 = MaxVol(n)
    assert r0.swaps == b0.select(B).swaps
    assert ex0.log_abs_det() == pytest.approx(b0.log_abs_det(), abs=1e-8)


def test_streaming_memory_does_not_scale_with_rows(rng):
    n, blk, K = 30, 1_000, 256
    peaks, rows = [], []
    for m in (4_000, 40_000):
        seed = int(rng.integers(1 << 30))

        def source(m=m, seed=seed):
            r = np.random.default_rng(seed)
            for _ in range(0, m, blk):
                yield r.normal(size=(blk, n))

        mv = MaxVol(n)
        mv.select(np.random.default_rng(seed + 1).normal(size=(200, n)), select_threshold=THR)
        tracemalloc.start()
        res = mv.select_streaming(source, buffer_rows=K, exact=False)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        rows.append(mv.peak_work_rows)
        assert res.n_swaps > 0
    for r in rows:
        assert r <= K + n + blk
    bound = 8 * n * (4 * (K + n + blk) + 8 * n) + 300_000  # buffers, workspace, one block
    assert max(peaks) < bound, (peaks, bound)
    assert peaks[1] < 1.5 * peaks[0]


def test_streaming_gate_limit_and_source_checks(rng):
    n = 5
    A0 = rng.normal(size=(n, n))
    B = rng.normal(size=(40, n))
    mv = MaxVol.from_matrix(A0)
    full = mv.copy().select(B)
    g = mv.grades(B)[0].max()
    assert mv.copy().select_streaming(blocks_of(B, 7), select_threshold=1.01 * g).n_swaps == 0
    res = mv.copy().select_streaming(blocks_of(B, 7), swap_limit=2, buffer_rows=3)
    assert res.swaps == full.swaps[:2]
    with pytest.raises(TypeError, match="one-shot"):
        mv.select_streaming(iter([B]))
    res = mv.copy().select_streaming([B[:20], B[20:]])  # a list is re-iterable
    assert res.swaps == full.swaps
    res = mv.copy().select_streaming(B)                 # an array is cut into blocks
    assert res.swaps == full.swaps
    calls = []

    def changing():
        calls.append(1)
        yield B[: 40 - len(calls)]

    with pytest.raises(SelectionError, match="changed between passes"):
        MaxVol.from_matrix(A0).select_streaming(changing, buffer_rows=1)
