"""MTPCalculator: ASE conventions, finite differences, neighbour reuse, species mapping."""
import numpy as np
import pytest
from ase.build import bulk

from mlip_py.errors import ConfigError
from mlip_py.potential.calculator import MTPCalculator
from mlip_py.potential.mtp import MTP
from mlip_py.potential.templates import make_template


@pytest.fixture(scope="module")
def mtp2():
    """A 2-species level-8 potential with random (seeded) coefficients."""
    p = make_template(8, species_count=2, min_dist=1.8, max_dist=4.5, radial_basis_size=6)
    rng = np.random.default_rng(7)
    p.init_default_coeffs()
    p.radial_coeffs = rng.normal(scale=0.3, size=p.radial_coeffs.shape)
    p.species_coeffs = np.array([-3.0, -4.0])
    p.moment_coeffs = rng.normal(scale=0.5, size=p.moment_coeffs.shape)
    return MTP(p)


def alloy(rng):
    a = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 1))
    a.numbers[::3] = 28
    a.positions += rng.normal(scale=0.05, size=a.positions.shape)
    a.set_cell(a.cell[:] @ (np.eye(3) + 0.01 * rng.normal(size=(3, 3))), scale_atoms=True)
    return a


def test_matches_mtp_and_ase_conventions(mtp2, rng):
    a = alloy(rng)
    a.calc = MTPCalculator(mtp2, type_map=["Cu", "Ni"], skin=0.0)
    from mlip_py.configuration import Configuration

    cfg = Configuration.from_atoms(a, ["Cu", "Ni"])
    e, f, s, site = mtp2.calc_efs(cfg)
    assert a.get_potential_energy() == pytest.approx(e, rel=1e-14)
    assert a.get_potential_energy(force_consistent=True) == pytest.approx(e, rel=1e-14)
    np.testing.assert_allclose(a.get_forces(), f, atol=1e-13)
    np.testing.assert_allclose(a.get_potential_energies(), site, atol=1e-13)
    np.testing.assert_allclose(a.get_stress(), -s / a.get_volume(), atol=1e-13)


def test_finite_differences(mtp2, rng):
    a = alloy(rng)
    calc = MTPCalculator(mtp2, type_map=["Cu", "Ni"])
    a.calc = calc
    from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress

    f = a.get_forces()
    num = calculate_numerical_forces(a, eps=1e-5)
    np.testing.assert_allclose(f, num, atol=2e-7)
    st = a.get_stress()
    num_s = calculate_numerical_stress(a, eps=1e-6)
    np.testing.assert_allclose(st, num_s, atol=2e-7)


def test_neighbour_reuse_equals_rebuild(mtp2, rng):
    a = alloy(rng)
    reuse = MTPCalculator(mtp2, type_map=["Cu", "Ni"], skin=0.5)
    fresh = MTPCalculator(mtp2, type_map=["Cu", "Ni"], skin=0.0)
    b = a.copy()
    a.calc, b.calc = reuse, fresh
    for _ in range(5):
        step = rng.normal(scale=0.03, size=a.positions.shape)
        a.positions += step
        b.positions += step
        assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), rel=1e-12)
        np.testing.assert_allclose(a.get_forces(), b.get_forces(), atol=1e-11)


def test_large_move_triggers_rebuild(mtp2, rng):
    a = alloy(rng)
    reuse = MTPCalculator(mtp2, type_map=["Cu", "Ni"], skin=0.2)
    fresh = MTPCalculator(mtp2, type_map=["Cu", "Ni"], skin=0.0)
    a.calc = reuse
    a.get_potential_energy()
    a.positions[0] += [0.4, 0.0, 0.0]
    b = a.copy()
    b.calc = fresh
    assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), rel=1e-12)


def test_type_map_required_and_checked(mtp2, rng):
    a = alloy(rng)
    a.calc = MTPCalculator(mtp2)
    with pytest.raises(ConfigError, match="type_map"):
        a.get_potential_energy()
    a.calc = MTPCalculator(mtp2, type_map=["Cu", "Fe"])
    with pytest.raises(ConfigError, match="Ni"):
        a.get_potential_energy()
    with pytest.raises(ConfigError):
        MTPCalculator(mtp2, type_map=["Cu", "Ni", "Fe"])


def test_cluster_has_no_stress(mtp2):
    from ase.calculators.calculator import PropertyNotImplementedError
    from ase import Atoms

    a = Atoms("Cu3", positions=[[0, 0, 0], [2.4, 0, 0], [0, 2.5, 0.3]])
    a.calc = MTPCalculator(mtp2, type_map=["Cu", "Ni"])
    assert np.isfinite(a.get_potential_energy())
    np.testing.assert_allclose(a.get_forces().sum(axis=0), 0, atol=1e-12)
    with pytest.raises(PropertyNotImplementedError):
        a.get_stress()
