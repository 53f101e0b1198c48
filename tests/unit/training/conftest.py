"""Fixtures of the training tests: a small MTP structure and ASE-EMT reference data.

The structure (K = 2 radial functions, S = 5 basis functions) is written out here so
the tests need no template file: basic moments M0 = <f0>, M1 = <f1>, M2..M4 = <f0 u>;
M5 = M2^2 + M3^2 + M4^2, M6 = M0^2, M7 = M0 M5; basis B = (M0, M1, M5, M6, M7).
"""
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from mlip_py.configuration import Configuration
from mlip_py.potential.params import MTPParams

BASIC = [[0, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
TIMES = [[2, 2, 1, 5], [3, 3, 1, 5], [4, 4, 1, 5], [0, 0, 1, 6], [0, 5, 1, 7]]
MAPPING = [0, 1, 5, 6, 7]


def make_params(species=2, min_dist=1.9, max_dist=4.6, radial_basis_size=6):
    """An untrained small MTP (no coefficients)."""
    return MTPParams(species_count=species, min_dist=min_dist, max_dist=max_dist,
                     radial_basis_size=radial_basis_size, radial_funcs_count=2,
                     alpha_moments_count=8, alpha_index_basic=BASIC, alpha_index_times=TIMES,
                     alpha_moment_mapping=MAPPING)


def random_coeffs(p, rng):
    """Order-one random coefficients (a non-trivial potential for gradient checks)."""
    p.set_params(np.concatenate([
        rng.normal(size=p.n_radial_params) * 0.5,
        rng.normal(size=p.species_count),
        rng.normal(size=p.alpha_scalar_moments) * 0.1,
    ]))
    return p


def emt_configurations(rng, n_bulk=8, cluster=True):
    """Rattled/strained CuNi fcc cells (4 atoms) and a free 5-atom cluster, labelled by EMT.

    Types: 0 = Cu, 1 = Ni.  The cluster has no stress (non-periodic).
    """
    from ase import Atoms
    from ase.build import bulk
    from ase.calculators.emt import EMT

    out = []
    for _ in range(n_bulk):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        sym = rng.choice(["Cu", "Ni"], size=len(atoms))
        atoms.set_chemical_symbols(list(sym))
        strain = np.eye(3) + rng.uniform(-0.03, 0.03, size=(3, 3))
        atoms.set_cell(atoms.cell[:] @ strain, scale_atoms=True)
        atoms.positions += rng.normal(scale=0.08, size=atoms.positions.shape)
        atoms.calc = EMT()
        out.append(atoms)
    if cluster:
        pos = np.array([[0, 0, 0], [2.5, 0, 0], [0, 2.5, 0], [0, 0, 2.5], [1.6, 1.6, 1.6]])
        atoms = Atoms("CuNiCuNiCu", positions=pos + rng.normal(scale=0.05, size=pos.shape))
        atoms.calc = EMT()
        out.append(atoms)
    cfgs = []
    for atoms in out:
        types = np.array([0 if s == "Cu" else 1 for s in atoms.get_chemical_symbols()])
        periodic = atoms.pbc.all()
        cfg = Configuration(lattice=atoms.cell[:] if periodic else np.zeros((3, 3)),
                            positions=atoms.positions, types=types,
                            energy=atoms.get_potential_energy(), forces=atoms.get_forces())
        if periodic:
            s = -atoms.get_stress(voigt=True) * atoms.get_volume()   # PlusStress, eV
            cfg.plus_stress = np.array([s[0], s[1], s[2], s[3], s[4], s[5]])
        cfgs.append(cfg)
    return cfgs


@pytest.fixture
def small_params():
    return make_params


@pytest.fixture
def emt_cfgs(rng):
    return emt_configurations(rng)


@pytest.fixture
def randomized():
    return random_coeffs


@pytest.fixture
def emt_maker():
    return emt_configurations


def find_mpiexec():
    """``(path, None)`` of the MPI launcher that goes with mpi4py, or ``(None, reason)``.

    The pip ``mpich`` wheel installs ``mpiexec`` next to the Python executable; otherwise
    the first ``mpiexec``/``mpirun`` on PATH is used.
    """
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return None, "mpi4py is not installed (pip install mpich mpi4py)"
    for name in ("mpiexec", "mpirun"):
        cand = Path(sys.executable).parent / name
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand), None
    found = shutil.which("mpiexec") or shutil.which("mpirun")
    if found:
        return found, None
    return None, "no mpiexec/mpirun next to the Python executable or on PATH"


@pytest.fixture
def mpiexec():
    """Path of mpiexec; skips without MPI, but fails under CI=true (MPI is installed there)."""
    exe, why = find_mpiexec()
    if exe is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"MPI is required under CI: {why}")
        pytest.skip(why)
    return exe
