"""MD driver: NVE energy conservation, breaking threshold, preselection, seeds, NPT."""
import numpy as np
import pytest
from ase.build import bulk

from mlip_py.errors import ConfigError
from mlip_py.potential.calculator import MTPCalculator
from mlip_py.potential.mtp import MTP
from mlip_py.simulate.md import MDRunner, frame_configuration


@pytest.fixture(scope="module")
def mo(request):
    from refdata import shared_file

    return MTP(shared_file("reference", "mlip", "golden", "Mo_l08.mtp"))


def mo_cell(n=2, scale=1.0, rattle=0.0):
    at = bulk("Mo", "bcc", a=3.16, cubic=True).repeat(n)
    at.set_cell(at.cell[:] * scale, scale_atoms=True)
    if rattle:
        at.rattle(rattle, seed=1)
    return at


def test_nve_conserves_energy_second_order(mo):
    spread = {}
    for dt in (1.0, 0.5):
        at = mo_cell(3)
        runner = MDRunner(at, MTPCalculator(mo), "nve", timestep=dt, temperature=300, seed=1)
        etot = []
        res = runner.run(int(100 / dt), every=1,
                         on_frame=lambda k, a: etot.append(a.get_total_energy()))
        assert res.status == "completed" and res.steps == int(100 / dt)
        assert len(etot) == int(100 / dt) + 1
        spread[dt] = np.ptp(etot) / len(at)
    assert spread[1.0] < 3e-5                       # eV/atom over 100 fs
    assert 3.0 < spread[1.0] / spread[0.5] < 5.5    # velocity Verlet error ~ dt^2


def test_break_stops_md_and_keeps_structures(golden, mo):
    kept = []
    at = mo_cell(2, scale=0.95, rattle=0.05)
    calc = MTPCalculator(mo, active_set=golden("Mo_l08.als"), threshold=2.0,
                         threshold_break=3.5, selected=kept)
    frames, progress = [], []
    runner = MDRunner(at, calc, "nve", timestep=1.0, temperature=300, seed=1)
    res = runner.run(400, every=50, on_frame=lambda k, a: frames.append(
        frame_configuration(a, calc, step=k, time_fs=k * 1.0)),
        on_progress=lambda k, a, g: progress.append((k, g)))
    assert res.status == "break"
    assert 0 < res.steps < 400 and res.break_step == res.steps + 1
    assert res.max_grade > 3.5 and res.message.startswith("Breaking threshold exceeded")
    # every evaluated structure was above 2 (compressed cell): one kept per force call
    assert len(kept) == res.steps + 2 or len(kept) == res.steps + 1
    assert float(kept[-1].features["MV_grade"]) > 3.5
    last = frames[-1]
    assert last.features["step"] == str(res.break_step)
    assert float(last.features["MV_grade"]) > 3.5
    assert last.energy is not None and last.forces is not None and last.plus_stress is not None
    assert progress[-1][0] == res.break_step and progress[-1][1] > 3.5


def test_break_at_start(golden, mo):
    calc = MTPCalculator(mo, active_set=golden("Mo_l08.als"), threshold_break=10.0)
    runner = MDRunner(mo_cell(2, scale=0.9), calc, "nve", temperature=100, seed=2)
    res = runner.run(10)
    assert res.status == "break" and res.break_step == 0 and res.steps == 0


def test_langevin_reproducible_with_seed(mo):
    def run(seed):
        at = mo_cell(2)
        MDRunner(at, MTPCalculator(mo), "langevin", timestep=2.0, temperature=500,
                 friction=0.02, seed=seed).run(30)
        return at.positions.copy()

    a, b, c = run(11), run(11), run(12)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-4


def test_npt_responds_to_pressure(mo):
    vols = {}
    for p in (-5.0, 40.0):
        at = mo_cell(2)
        runner = MDRunner(at, MTPCalculator(mo), "npt", timestep=2.0, temperature=300,
                          pressure=p, tdamp=50, pdamp=200, seed=3)
        runner.run(150)
        vols[p] = at.get_volume()
    assert vols[40.0] < vols[-5.0]
    assert vols[40.0] < (3.16 * 2) ** 3


def test_bad_settings(mo):
    with pytest.raises(ConfigError):
        MDRunner(mo_cell(), MTPCalculator(mo), "nvt")
    with pytest.raises(ConfigError):
        MDRunner(mo_cell(), MTPCalculator(mo), "langevin", temperature=0)
    at = mo_cell()
    at.pbc = False
    with pytest.raises(ConfigError):
        MDRunner(at, MTPCalculator(mo), "npt")
