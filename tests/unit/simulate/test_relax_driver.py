"""Relaxation driver: golden MLIP-2 relaxations (energies, statuses, preselection), the
upstream examples 06/07, and the options (pressure, tolerances, limits, min-dist, log)."""
import math
import re

import numpy as np
import pytest
from ase.build import bulk

from mlip_py.configuration import Configuration
from mlip_py.io import read_configurations
from mlip_py.potential.mtp import MTP
from mlip_py.selection.active_set import ActiveSet
from mlip_py.simulate.extrapolation import ExtrapolationControl
from mlip_py.simulate.relax import GPA, RelaxOptions, Relaxer, relax


@pytest.fixture(scope="module")
def mo(request):
    from refdata import shared_file

    return MTP(shared_file("reference", "mlip", "golden", "Mo_l08.mtp"))


def bcc(a=3.16, n=2, rattle=0.0, seed=0):
    at = bulk("Mo", "bcc", a=a, cubic=True).repeat(n)
    if rattle:
        at.positions += np.random.default_rng(seed).normal(scale=rattle, size=at.positions.shape)
    return Configuration.from_atoms(at, ["Mo"])


def metric(lat):
    return lat @ lat.T


# ------------------------------------------------------------------ golden
def test_golden_relax_energies_and_structures(golden, mo):
    lines = []
    relaxer = Relaxer(mo, RelaxOptions(), log=lines.append)
    want = read_configurations(golden("relaxed_Mo_l08.cfg_0"))
    inputs = read_configurations(golden("relax_in_Mo.cfg"))
    assert len(inputs) == len(want) == 4
    for i, (cfg, ref) in enumerate(zip(inputs, want), 1):
        res = relaxer.relax(cfg, i)
        assert res.ok, res.message
        out = res.cfg
        assert abs(out.energy - ref.energy) / len(cfg) < 1e-6
        # same minimum: cell metric (rotation invariant) and wrapped positions
        np.testing.assert_allclose(metric(out.lattice), metric(ref.lattice), atol=2e-3)
        frac = out.positions @ np.linalg.inv(out.lattice)
        assert frac.min() >= 0 and frac.max() < 1
        np.testing.assert_allclose(out.positions, ref.positions, atol=1e-3)
        assert out.features["from"] == "relaxation_OK"
        assert out.features["cand"] == ref.features["cand"]
        assert abs(float(out.features["min_dist"]) - float(ref.features["min_dist"])) < 2e-5
        assert np.abs(out.forces).max() < 1e-4
        assert np.abs(out.stress_gpa()).max() < 1e-3
        assert out.plus_stress is not None and out.site_energies is None
    # log: MLIP-2's line format, first line identical to the golden log's first line
    with open(golden("relax_Mo_l08.log")) as fh:
        golden_first = fh.readline().rstrip("\n")
    assert lines[0] == golden_first
    pat = re.compile(r"^cfg \d+\titr \d+\t dx \S+\t md \S+\te/a \S+\tent \S+\tfrc \S+\tstr \S+$")
    assert all(pat.match(line) for line in lines if line)
    assert lines.count("") == 4


def test_golden_relax_active_learning(golden, mo, tmp_path):
    pre = tmp_path / "preselected.cfg"
    ctl = ExtrapolationControl(golden("Mo_l08.als"), 2.0, 10.0, save_selected=pre, mtp=mo)
    relaxer = Relaxer(mo, RelaxOptions(), control=ctl)
    inputs = read_configurations(golden("relax_al_in_Mo.cfg"))
    results = [relaxer.relax(c, i) for i, c in enumerate(inputs, 1)]
    ctl.flush()
    assert [r.status for r in results] == ["OK"] * 4 + ["BREAK"] * 2
    assert results[4].message == "Breaking threshold exceeded (MV-grade: 17.373508)"
    assert results[5].message == "Breaking threshold exceeded (MV-grade: 21.715905)"
    want = read_configurations(golden("relaxed_al_Mo_l08.cfg_0"))
    for r, ref in zip(results[:4], want):
        assert abs(r.cfg.energy - ref.energy) / 16 < 1e-6
        assert abs(float(r.cfg.features["MV_grade"]) - float(ref.features["MV_grade"])) < 1e-3
    # preselected: every entry has a grade > 2; the first geometries of cand 25 and 37 and
    # the two breaking ones are exactly those of MLIP-2 (same grades); no duplicates
    ours = read_configurations(pre)
    gold = read_configurations(golden("preselected_Mo_l08.cfg"))
    assert all(float(c.features["MV_grade"]) > 2.0 for c in ours)
    assert all(c.energy is None and c.forces is None for c in ours)
    by_cand = {}
    for c in ours:
        by_cand.setdefault(c.features["cand"], []).append(c)
    assert sorted(by_cand) == ["25", "37", "43", "79"]
    assert len(by_cand["43"]) == len(by_cand["79"]) == 1
    first_gold = {}
    for c in gold:
        first_gold.setdefault(c.features["cand"], c)
    for cand, cs in by_cand.items():
        ref = first_gold[cand]
        np.testing.assert_allclose(cs[0].positions, ref.positions, atol=1e-6)
        assert cs[0].features["MV_grade"] == ref.features["MV_grade"]
        grades = [float(c.features["MV_grade"]) for c in cs]
        assert grades == sorted(grades, reverse=True)  # the grade falls along the path
    # MLIP-2 writes 9 entries (first geometries twice); we write each geometry once
    assert len(ours) < len(gold)
    assert len({c.positions.tobytes() for c in ours}) == len(ours)


def _upstream_run(upstream, name, control_args=None):
    mtp = MTP(upstream(name, "pot.mtp"))
    control = None
    if control_args:
        control = ExtrapolationControl(upstream(name, "state.als"), *control_args, mtp=mtp)
    relaxer = Relaxer(mtp, RelaxOptions(), control=control)
    cfgs = read_configurations(upstream(name, "to-relax.cfg"))
    return cfgs, [relaxer.relax(c, i) for i, c in enumerate(cfgs, 1)]


def test_upstream_06(upstream):
    """21 of the 25 relaxations reach MLIP-2's minimum to 1e-6 eV/atom.  Four strongly
    disordered starts (~1 eV/atom above bcc, forces 8-11 eV/A) end in other local minima:
    which one is reached depends on the exact optimiser path, which we do not copy."""
    cfgs, results = _upstream_run(upstream, "06.relax")
    want = read_configurations(upstream("06.relax", "out_this_build", "relaxed.cfg_0"))
    assert all(r.ok for r in results)
    diffs = [abs(r.cfg.energy - w.energy) / len(c) for c, r, w in zip(cfgs, results, want)]
    matched = [i + 1 for i, d in enumerate(diffs) if d < 1e-6]
    assert len(matched) >= 21, diffs
    assert {1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15} <= set(matched)


def test_upstream_07_active_learning(upstream):
    cfgs, results = _upstream_run(upstream, "07.relax-active-learning", (3.0, 10.0))
    failed = [i for i, r in enumerate(results, 1) if not r.ok]
    assert failed == [2, 10, 11, 13, 19, 20, 22, 23]  # MLIP-2's stdout
    assert all(r.status == "BREAK" for r in results if not r.ok)
    want = read_configurations(upstream("07.relax-active-learning", "out_this_build",
                                        "relaxed.cfg_0"))
    ok = [(c, r) for c, r in zip(cfgs, results) if r.ok]
    assert len(ok) == len(want) == 17
    for (c, r), w in zip(ok, want):
        assert abs(r.cfg.energy - w.energy) / len(c) < 1e-6


# ------------------------------------------------------------------ options
def test_pressure_equilibrium(mo):
    free = relax(bcc(), mo)
    pressed = relax(bcc(), mo, pressure=20.0)
    assert free.ok and pressed.ok
    assert pressed.cfg.volume < free.cfg.volume
    # at the minimum of E + pV the virial per volume equals the pressure
    s = pressed.cfg.plus_stress * GPA / pressed.cfg.volume
    np.testing.assert_allclose(s[:3], 20.0, atol=1e-3)
    np.testing.assert_allclose(s[3:], 0.0, atol=1e-3)
    # and it is a minimum of the enthalpy along the volume
    def enthalpy(scale):
        c = pressed.cfg.copy()
        c.lattice = c.lattice * scale
        c.positions = c.positions * scale
        return mo.calc_efs(c)[0] + 20.0 / GPA * c.volume
    h0 = enthalpy(1.0)
    assert h0 < enthalpy(1.002) and h0 < enthalpy(0.998)


def test_tolerances_switch_degrees_of_freedom(mo):
    start = bcc(a=3.10, rattle=0.05, seed=1)
    frac0 = start.positions @ np.linalg.inv(start.lattice)
    cell_only = relax(start, mo, force_tolerance=0.0)
    assert cell_only.ok
    frac = cell_only.cfg.positions @ np.linalg.inv(cell_only.cfg.lattice)
    d = frac - frac0
    np.testing.assert_allclose(d - np.round(d), 0.0, atol=1e-12)   # affine motion only
    assert np.abs(cell_only.cfg.stress_gpa()).max() < 1e-3
    assert np.abs(cell_only.cfg.forces).max() > 1e-2
    atoms_only = relax(start, mo, stress_tolerance=-1.0)
    assert atoms_only.ok
    np.testing.assert_array_equal(atoms_only.cfg.lattice, start.lattice)
    assert np.linalg.norm(atoms_only.cfg.forces, axis=1).max() < 1e-4
    nothing = relax(start, mo, force_tolerance=0.0, stress_tolerance=0.0)
    assert nothing.ok and nothing.iterations == 0 and nothing.evaluations == 1


def test_iteration_limit_min_dist_and_cluster(mo):
    start = bcc(a=3.10, rattle=0.1, seed=2)
    res = relax(start, mo, iteration_limit=2)
    assert res.status == "NOT_CONVERGED" and res.iterations == 2
    assert res.cfg.features["from"] == "relaxation_NOT_CONVERGED"
    res = relax(start, mo, min_dist=5.0)
    assert res.status == "MINDIST_ERROR" and res.cfg is None
    # a cluster (no cell): atoms only, converges
    cl = bcc(n=1, rattle=0.05, seed=3)
    cl.lattice = np.zeros((3, 3))
    res = relax(cl, mo)
    assert res.ok
    assert np.linalg.norm(res.cfg.forces, axis=1).max() < 1e-4
    assert not res.cfg.lattice.any()


def test_max_step_caps_displacements(mo):
    lines = []
    res = relax(bcc(a=3.0, rattle=0.2, seed=4), mo, max_step=0.02, log=lines.append)
    assert res.ok
    dx = [float(line.split("\t")[2].split()[1]) for line in lines if line]
    assert max(dx) <= 0.02 * 1.01   # linearised cap; second-order excess is tiny
    assert len(dx) > 5


def test_grade_in_log_and_as_feature(golden, mo):
    aset = ActiveSet.load(golden("Mo_l08.als"), mo)
    ctl = ExtrapolationControl(aset, 2.0, None)
    lines = []
    cfg = read_configurations(golden("relax_al_in_Mo.cfg"))[0]
    res = Relaxer(mo, RelaxOptions(), ctl, log=lines.append).relax(cfg, 7)
    assert res.ok
    assert lines[0].startswith("cfg 7\titr 0\t")
    assert lines[0].endswith("\tgrade 0.968549")          # golden relax_al log, cfg 1
    assert math.isclose(float(res.cfg.features["MV_grade"]), aset.grade(res.cfg), abs_tol=1e-6)


def test_limited_memory_bfgs_reaches_the_golden_minimum(golden, mo, monkeypatch):
    import mlip_py.simulate.relax as relax_module

    monkeypatch.setattr(relax_module, "DENSE_LIMIT", 0)
    cfg = read_configurations(golden("relax_in_Mo.cfg"))[2]
    ref = read_configurations(golden("relaxed_Mo_l08.cfg_0"))[2]
    res = relax(cfg, mo)
    assert res.ok
    assert abs(res.cfg.energy - ref.energy) / len(cfg) < 1e-6


class _WrongForces:
    """An MTP whose forces point uphill: no step along -H g can decrease the energy."""

    def __init__(self, mtp):
        self.mtp = mtp

    def neighbors(self, cfg):
        return self.mtp.neighbors(cfg)

    def calc_efs(self, cfg, neighbors=None):
        e, f, s, site = self.mtp.calc_efs(cfg, neighbors=neighbors)
        return e, -f, s, site


def test_failed_line_search_stops_with_warning(mo):
    warnings = []
    res = Relaxer(_WrongForces(mo), RelaxOptions(stress_tolerance=0.0),
                  warn=warnings.append).relax(bcc(rattle=0.05, seed=5))
    assert res.status == "NOT_CONVERGED" and res.iterations == 0
    assert res.message.startswith("line search failed")
    assert warnings == ["Relaxation: Too small steps detected. Breaking linesearch"]
