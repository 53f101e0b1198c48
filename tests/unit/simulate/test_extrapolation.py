"""ExtrapolationControl and MTPCalculator(active_set=...): grades against golden MLIP-2
grades, preselection, breaking threshold, per-atom grades, the preselected file."""
import numpy as np
import pytest
from ase.build import bulk

from mlip_py.configuration import Configuration
from mlip_py.errors import ConfigError, ExtrapolationError
from mlip_py.io import read_configurations
from mlip_py.potential.calculator import MTPCalculator
from mlip_py.potential.mtp import MTP
from mlip_py.selection.active_set import ActiveSet
from mlip_py.simulate.extrapolation import ExtrapolationControl


def printed_close(ours, printed):
    want = float(printed)
    return abs(ours - want) <= max(1e-6 * abs(want), 5e-7)


def test_grades_match_golden_configuration_mode(golden):
    ctl = ExtrapolationControl(golden("Mo_l08.als"))
    graded = read_configurations(golden("graded_candidates_Mo_l08.cfg"))[:40]
    for cfg, ref in zip(read_configurations(golden("candidates_Mo_200.cfg")), graded):
        g, per_atom = ctl.grades(cfg)
        assert printed_close(g, ref.features["MV_grade"])
        np.testing.assert_array_equal(per_atom, np.full(len(cfg), g))


def test_grades_match_golden_neighbourhood_mode(golden):
    ctl = ExtrapolationControl(golden("Mo_l08_nbh.als"))
    assert ctl.neighborhood
    varied = 0
    graded = read_configurations(golden("graded_nbh_efs_set_Mo_l08.cfg"))
    for cfg, ref in zip(read_configurations(golden("efs_set_Mo.cfg")), graded):
        if len(cfg) == 0:
            continue
        g, per_atom = ctl.grades(cfg)
        assert printed_close(g, ref.features["MV_grade"])
        assert per_atom.shape == (len(cfg),)
        assert per_atom.max() == g
        varied += np.ptp(per_atom) > 1e-3
    assert varied > 0


def test_preselection_and_break(golden, tmp_path):
    pre = tmp_path / "pre.cfg"
    kept = []
    ctl = ExtrapolationControl(golden("Mo_l08.als"), threshold=2.0, threshold_break=10.0,
                               save_selected=pre, selected=kept)
    cfgs = read_configurations(golden("relax_al_in_Mo.cfg"))
    assert ctl.check(cfgs[0]) < 2.0 and not kept
    g = ctl.check(cfgs[2])
    assert 2.0 < g < 10.0
    assert len(kept) == 1 and kept[0].features["MV_grade"] == "%f" % g
    assert kept[0].features["cand"] == "25"
    with pytest.raises(ExtrapolationError) as err:
        ctl.check(cfgs[4])
    assert err.value.grade == pytest.approx(17.373507559994813, abs=1e-9)
    assert err.value.threshold == 10.0
    assert str(err.value) == "Breaking threshold exceeded (MV-grade: 17.373508)"
    assert len(kept) == 2 and ctl.n_selected == 2   # kept before breaking
    assert ctl.max_grade == pytest.approx(err.value.grade)
    ctl.flush()
    ctl.flush()   # nothing buffered: no second copy
    on_disk = read_configurations(pre)
    assert [c.features["MV_grade"] for c in on_disk] == [c.features["MV_grade"] for c in kept]
    # the file is appended to (as MLIP-2)
    ctl2 = ExtrapolationControl(golden("Mo_l08.als"), 2.0, None, save_selected=pre)
    ctl2.check(cfgs[4])           # break off: no exception
    ctl2.flush()
    assert len(read_configurations(pre)) == 3


def test_efs_dropped_unless_kept(golden):
    mtp = MTP(golden("Mo_l08.mtp"))
    cfg = mtp.calc_efs_cfg(read_configurations(golden("relax_al_in_Mo.cfg"))[3])
    a, b = [], []
    ExtrapolationControl(golden("Mo_l08.als"), selected=a).check(cfg)
    ExtrapolationControl(golden("Mo_l08.als"), selected=b, keep_efs=True).check(cfg)
    assert a[0].energy is None and a[0].forces is None and a[0].plus_stress is None
    assert b[0].energy == cfg.energy
    assert cfg.energy is not None   # the original is untouched


def test_break_threshold_rules_and_mismatched_potential(golden):
    assert ExtrapolationControl(golden("Mo_l08.als"), 2.0, 1.0).threshold_break is None
    assert ExtrapolationControl(golden("Mo_l08.als"), 2.0, 0.0).threshold_break is None
    with pytest.raises(ConfigError):
        ExtrapolationControl(golden("Mo_l08.als"), mtp=MTP(golden("Mo_l10.mtp")))
    with pytest.raises(ConfigError):
        ExtrapolationControl(golden("Mo_l08.als"), threshold=0.0)


# ------------------------------------------------------------------ calculator
def mo_bcc(scale=1.0):
    at = bulk("Mo", "bcc", a=3.16, cubic=True).repeat(2)
    at.set_cell(at.cell[:] * scale, scale_atoms=True)
    at.rattle(0.02, seed=5)
    return at


def test_calculator_grade_results(golden):
    aset = ActiveSet.load(golden("Mo_l08.als"))
    calc = MTPCalculator(golden("Mo_l08.mtp"), active_set=aset)
    at = mo_bcc(0.97)
    at.calc = calc
    e = at.get_potential_energy()
    g = calc.get_property("grade", at)
    cfg = Configuration.from_atoms(at, ["Mo"])
    assert g == pytest.approx(aset.grade(cfg), rel=1e-12)
    np.testing.assert_array_equal(calc.get_property("grades", at), np.full(len(at), g))
    assert e == pytest.approx(MTP(golden("Mo_l08.mtp")).calc_efs(cfg)[0], rel=1e-13)
    assert calc.selected == []
    # without an active set there is no grade
    plain = MTPCalculator(golden("Mo_l08.mtp"))
    at.calc = plain
    at.get_potential_energy()
    assert "grade" not in plain.results


def test_calculator_neighbourhood_grades_with_skin(golden):
    calc = MTPCalculator(golden("Mo_l08.mtp"), active_set=golden("Mo_l08_nbh.als"), skin=0.5)
    ctl = ExtrapolationControl(golden("Mo_l08_nbh.als"))
    at = mo_bcc(1.02)
    at.calc = calc
    for step in range(3):   # neighbour list reused between the moves
        at.positions[0] += 0.03
        at.get_forces()
        g, per_atom = ctl.grades(Configuration.from_atoms(at, ["Mo"]))
        assert calc.results["grade"] == pytest.approx(g, rel=1e-10)
        np.testing.assert_allclose(calc.results["grades"], per_atom, rtol=1e-10)


def test_calculator_selected_and_break(golden):
    got = []
    calc = MTPCalculator(golden("Mo_l08.mtp"), active_set=golden("Mo_l08.als"), threshold=2.0,
                         threshold_break=10.0, selected=got.append)
    at = mo_bcc(0.85)
    at.calc = calc
    with pytest.raises(ExtrapolationError) as err:
        at.get_forces()
    assert err.value.grade > 10.0 and err.value.threshold == 10.0
    assert len(got) == 1 and float(got[0].features["MV_grade"]) > 10
    # results of the offending structure are kept
    assert calc.results["grade"] == err.value.grade
    assert calc.results["forces"].shape == (len(at), 3)
    # a calculator with a default list
    calc2 = MTPCalculator(golden("Mo_l08.mtp"), active_set=golden("Mo_l08.als"))
    at.calc = calc2
    at.get_potential_energy()            # no break threshold: no exception
    assert len(calc2.selected) == 1
