"""Built-in oracles: EMT and LJ against ASE and finite differences, GPAW wiring, registry."""
import sys
import types

import numpy as np
import pytest
from ase.build import bulk

from mlip_py.configuration import Configuration
from mlip_py.errors import ConfigError
from mlip_py.oracles import OracleFailure, get_oracle, oracle_names


def cu_ni(seed, scale=1.0, rattle=0.08):
    atoms = bulk("Cu", "fcc", a=3.6 * scale, cubic=True) * (2, 1, 1)
    atoms.numbers[::3] = 28
    atoms.rattle(rattle, seed=seed)
    cfg = Configuration.from_atoms(atoms, ["Cu", "Ni"])
    cfg.features["origin"] = "test"
    return cfg


def strained(cfg, eps, a, b):
    """cfg with lattice and positions deformed by (1 + eps e_ab) (symmetric strain)."""
    f = np.eye(3)
    f[a, b] += eps / 2
    f[b, a] += eps / 2
    out = cfg.copy()
    out.lattice = cfg.lattice @ f.T
    out.positions = cfg.positions @ f.T
    return out


def labelled(name, cfg, type_map=("Cu", "Ni"), **opts):
    oracle = get_oracle(name, **opts)
    oracle.prepare(None if type_map is None else list(type_map))
    return oracle.label(cfg, 0)


# ------------------------------------------------------------------------------ EMT
def test_emt_equals_ase_emt_directly():
    from ase.calculators.emt import EMT

    cfg = cu_ni(1, scale=0.98)
    cfg.energy, cfg.site_energies = 123.0, np.ones(len(cfg))  # stale labels are replaced
    out = labelled("emt", cfg)
    atoms = cfg.to_atoms(["Cu", "Ni"])
    atoms.calc = EMT()
    assert out.energy == pytest.approx(atoms.get_potential_energy(), abs=1e-12)
    np.testing.assert_allclose(out.forces, atoms.get_forces(), atol=1e-12)
    np.testing.assert_allclose(out.plus_stress, -atoms.get_stress() * atoms.get_volume(), atol=1e-12)
    assert out.site_energies is None
    assert out.features == {"origin": "test", "EFS_by": "emt"}
    assert np.array_equal(out.positions, cfg.positions) and np.array_equal(out.types, cfg.types)
    assert cfg.energy == 123.0  # the input is not modified


def test_emt_plus_stress_is_minus_strain_derivative():
    """PlusStress = -dE/d(strain): positive under compression (MLIP-2's sign)."""
    cfg = cu_ni(2, scale=0.95)
    out = labelled("emt", cfg)
    assert out.plus_stress[:3].min() > 0  # compressed cell
    h = 1e-5
    for comp, (a, b) in enumerate([(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]):
        ep = labelled("emt", strained(cfg, h, a, b)).energy
        em = labelled("emt", strained(cfg, -h, a, b)).energy
        assert out.plus_stress[comp] == pytest.approx(-(ep - em) / (2 * h), abs=2e-5)


def test_emt_cluster_and_slab_have_no_stress():
    cfg = cu_ni(3)
    cluster = cfg.copy()
    cluster.lattice[:] = 0.0
    slab = cfg.copy()
    slab.lattice[2] = 0.0
    for c in (cluster, slab):
        out = labelled("emt", c)
        assert out.plus_stress is None
        assert np.isfinite(out.energy) and out.forces.shape == (8, 3)
        assert abs(out.forces.sum(axis=0)).max() < 1e-10  # momentum conservation


def test_emt_needs_a_type_map_with_known_elements():
    oracle = get_oracle("emt")
    with pytest.raises(ConfigError, match="--type-map"):
        oracle.prepare(None)
    with pytest.raises(ConfigError, match="no parameters for Mo"):
        oracle.prepare(["Cu", "Mo"])
    oracle.prepare(["Cu"])
    with pytest.raises(OracleFailure, match="type 1"):
        oracle.label(cu_ni(4), 0)


def test_emt_params_are_passed():
    a = labelled("emt", cu_ni(5), params={"asap_cutoff": True})
    b = labelled("emt", cu_ni(5))
    assert a.energy != b.energy
    with pytest.raises(ConfigError, match="--oracle-param"):
        labelled("emt", cu_ni(5), params={"no_such_param": 1})


# ------------------------------------------------------------------------------ LJ
def test_lj_equals_ase_lennard_jones_for_one_species():
    from ase.calculators.lj import LennardJones

    atoms = bulk("Ar", "fcc", a=5.0, cubic=True) * (2, 2, 1)
    atoms.rattle(0.1, seed=7)
    cfg = Configuration.from_atoms(atoms, ["Ar"])
    out = labelled("lj", cfg, type_map=None, epsilon=0.0104, sigma=3.4, cutoff=7.5)
    atoms.calc = LennardJones(epsilon=0.0104, sigma=3.4, rc=7.5)
    assert out.energy == pytest.approx(atoms.get_potential_energy(), rel=1e-12, abs=1e-13)
    np.testing.assert_allclose(out.forces, atoms.get_forces(), atol=1e-12)
    np.testing.assert_allclose(out.plus_stress, -atoms.get_stress() * atoms.get_volume(), atol=1e-11)
    assert out.features["EFS_by"] == "lj"


def test_lj_two_species_dimer_uses_mixing_rules():
    from mlip_py.oracles.ase_calc import lj_element_parameters

    eps_cu, sig_cu = lj_element_parameters("Cu")
    eps_ni, sig_ni = lj_element_parameters("Ni")
    assert sig_cu * 2 ** (1 / 6) == pytest.approx(3.61 / np.sqrt(2))  # minimum at the fcc nn distance
    r = 2.4
    dimer = Configuration(positions=[[0, 0, 0], [r, 0, 0]], types=[0, 1])
    out = labelled("lj", dimer)
    sig, eps = (sig_cu + sig_ni) / 2, np.sqrt(eps_cu * eps_ni)
    rc = 3 * sig

    def phi(x):
        return 4 * eps * ((sig / x) ** 12 - (sig / x) ** 6)

    assert out.energy == pytest.approx(phi(r) - phi(rc), rel=1e-12)
    dphi = 4 * eps * (-12 * sig ** 12 / r ** 13 + 6 * sig ** 6 / r ** 7)
    np.testing.assert_allclose(out.forces, [[dphi, 0, 0], [-dphi, 0, 0]], atol=1e-12)
    assert out.plus_stress is None


def test_lj_forces_and_virial_are_derivatives_of_the_energy():
    cfg = cu_ni(8, scale=1.02, rattle=0.15)
    oracle = get_oracle("lj")
    oracle.prepare(["Cu", "Ni"])
    energy, forces, virial = oracle.compute(cfg)
    h = 1e-5
    for i, a in [(0, 0), (3, 1), (6, 2)]:
        p, m = cfg.copy(), cfg.copy()
        p.positions[i, a] += h
        m.positions[i, a] -= h
        fd = -(oracle.compute(p)[0] - oracle.compute(m)[0]) / (2 * h)
        assert forces[i, a] == pytest.approx(fd, abs=1e-6)
    for comp, (a, b) in enumerate([(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]):
        ep = oracle.compute(strained(cfg, h, a, b))[0]
        em = oracle.compute(strained(cfg, -h, a, b))[0]
        fd = -(ep - em) / (2 * h)
        assert virial[comp] == pytest.approx(fd, abs=1e-6)


def test_lj_settings_errors():
    with pytest.raises(ConfigError, match="--type-map"):
        get_oracle("lj").prepare(None)
    with pytest.raises(ConfigError, match="--lj-sigma must be a positive"):
        get_oracle("lj", sigma=-1.0)
    only_eps = get_oracle("lj", epsilon=0.1)
    assert only_eps.needs_type_map


# ------------------------------------------------------------------------------ GPAW
def test_gpaw_real_if_installed():
    pytest.importorskip("gpaw", reason="GPAW is not installed (optional oracle)")
    atoms = bulk("Al", "fcc", a=4.05)
    cfg = Configuration.from_atoms(atoms, ["Al"])
    out = labelled("gpaw", cfg, type_map=["Al"],
                   params={"mode": {"name": "pw", "ecut": 200}, "kpts": [2, 2, 2]})
    assert np.isfinite(out.energy) and out.features["EFS_by"] == "gpaw"
    assert abs(out.forces).max() < 1e-3  # symmetric crystal


def test_gpaw_missing_is_a_config_error_with_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "gpaw", None)  # makes 'import gpaw' fail
    with pytest.raises(ConfigError, match="pip install gpaw"):
        get_oracle("gpaw")


def test_gpaw_wiring_with_a_stand_in_module(monkeypatch):
    """Defaults per periodicity and user parameters reach the calculator (EMT stands in)."""
    from ase.calculators.emt import EMT

    made = []

    class FakeGPAW(EMT):
        def __init__(self, **kw):
            made.append(kw)
            super().__init__()

    monkeypatch.setitem(sys.modules, "gpaw", types.SimpleNamespace(GPAW=FakeGPAW))
    cfg = cu_ni(9)
    out = labelled("gpaw", cfg, params={"xc": "LDA"})
    assert made[-1]["mode"]["name"] == "pw" and made[-1]["xc"] == "LDA"
    assert out.plus_stress is not None and out.features["EFS_by"] == "gpaw"
    cluster = cfg.copy()
    cluster.lattice[:] = 0.0
    cl = labelled("gpaw", cluster)
    assert made[-1]["mode"] == "fd" and cl.plus_stress is None
    np.testing.assert_array_equal(cl.positions, cluster.positions)  # the box is internal
    direct = labelled("emt", cluster)
    np.testing.assert_allclose(cl.forces, direct.forces, atol=1e-10)
    slab = cfg.copy()
    slab.lattice[2] = 0.0
    with pytest.raises(OracleFailure, match="^gpaw: partially periodic"):
        labelled("gpaw", slab)


# ------------------------------------------------------------------------------ registry
def test_unknown_oracle_lists_the_valid_names():
    with pytest.raises(ConfigError) as err:
        get_oracle("vasp")
    for name in oracle_names():
        assert name in str(err.value)
    with pytest.raises(ConfigError, match="shell command"):
        get_oracle("command:")
    with pytest.raises(ConfigError, match="did you mean command"):
        get_oracle("command")
    assert get_oracle('command:"echo hi"').command == "echo hi"


def test_calculator_exception_fails_only_that_configuration(monkeypatch):
    from ase.calculators.emt import EMT

    from mlip_py.oracles.journal import run_batch

    class Flaky(EMT):
        def calculate(self, atoms=None, properties=None, system_changes=None):
            if atoms is not None and atoms.positions[0, 0] > 0.05:
                raise RuntimeError("SCF did not converge")
            super().calculate(atoms, properties, system_changes)

    monkeypatch.setitem(sys.modules, "gpaw", types.SimpleNamespace(GPAW=lambda **kw: Flaky()))
    oracle = get_oracle("gpaw")
    oracle.prepare(["Cu", "Ni"])
    cfgs = [cu_ni(s) for s in range(6)]
    out = list(run_batch(cfgs, oracle))
    bad = [o.index for o in out if not o.ok]
    assert bad == [k for k, c in enumerate(cfgs) if c.positions[0, 0] > 0.05] and 0 < len(bad) < 6
    assert out[bad[0]].cfg.features["label_error"] == "gpaw: RuntimeError: SCF did not converge"
