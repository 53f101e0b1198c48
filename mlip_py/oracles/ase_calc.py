"""Built-in oracles computed in this process: EMT and GPAW through ASE, and Lennard-Jones.

Conventions (see :mod:`mlip_py.oracles`): ASE's stress ``sigma`` (eV/A^3, Voigt order xx yy
zz yz xz xy, positive under tension) becomes the PlusStress virial ``S = -V * sigma`` (eV,
same order, positive under compression).  The stress is computed only for configurations
periodic along all three lattice rows; the others get energy and forces only.

``emt``
    :class:`ase.calculators.emt.EMT`; the type map must name elements EMT has parameters
    for (Al, Cu, Ag, Au, Ni, Pd, Pt, H, C, N, O).  Keyword arguments of EMT (e.g.
    ``asap_cutoff``) can be given as ``params``.
``lj``
    A pairwise Lennard-Jones potential ``4 eps [(sig/r)^12 - (sig/r)^6]`` shifted to zero at
    the cutoff (the ASE ``LennardJones`` form with ``smooth=False``), for any number of
    species.  Per-element parameters when not given: ``sigma = d / 2^(1/6)`` with ``d`` the
    nearest-neighbour distance of the element's reference crystal in ``ase.data.
    reference_states`` (fcc, bcc, hcp, diamond, simple cubic or the dimer bond length;
    twice the covalent radius otherwise), so the pair minimum sits at ``d``;
    ``epsilon = 0.1 eV`` for every element; Lorentz-Berthelot mixing
    (``sig_ij = (sig_i + sig_j)/2``, ``eps_ij = sqrt(eps_i eps_j)``) and a cutoff of
    ``3 sig_ij``.  ``--lj-epsilon``/``--lj-sigma``/``--lj-cutoff`` set one value for every
    pair; with both epsilon and sigma given no type map is needed.
``gpaw``
    GPAW through ASE, when ``import gpaw`` works.  Defaults: plane waves (``ecut`` 400 eV),
    PBE, k-point density 3.0 per A^-1 (Gamma-centred) for periodic configurations; an
    isolated cluster (no lattice) is put in a box with 6 A of vacuum, non-periodic, in
    finite-difference mode (``h`` = 0.2 A); partially periodic configurations are refused.
    Any GPAW keyword can be given in ``params`` (``--oracle-param KEY=VALUE``).
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError
from . import OracleFailure, apply_labels

#: epsilon (eV) of every element for the per-element LJ parameters
LJ_DEFAULT_EPSILON = 0.1
#: LJ cutoff in units of sigma_ij when none is given
LJ_CUTOFF_SIGMAS = 3.0


def _plus_stress(stress_voigt, volume):
    """PlusStress virial (eV) from ASE's Voigt stress (eV/A^3)."""
    st = np.asarray(stress_voigt, dtype=np.float64)
    if st.shape == (3, 3):
        st = np.array([st[0, 0], st[1, 1], st[2, 2], st[1, 2], st[0, 2], st[0, 1]])
    return -st * volume


def _bare_atoms(cfg, type_map):
    """ASE atoms of the geometry only (no features, no old labels)."""
    from ase import Atoms

    from ..configuration import _type_numbers

    numbers = _type_numbers(type_map)
    if len(cfg) and cfg.types.max() >= len(numbers):
        raise OracleFailure(f"the configuration has type {int(cfg.types.max())} but the type map "
                            f"{','.join(map(str, type_map))} has only {len(numbers)} elements")
    return Atoms(numbers=numbers[cfg.types] if len(cfg) else [], positions=cfg.positions,
                 cell=cfg.lattice, pbc=cfg.pbc)


class ASECalculatorOracle:
    """Label with an ASE calculator built by ``factory(cfg, atoms)`` for each configuration.

    Parameters
    ----------
    name : str
        Oracle name (``EFS_by`` value).
    factory : callable
        ``factory(atoms) -> (calculator, atoms_to_compute)``; may return modified atoms
        (e.g. a cluster in a box) with the same atom order.
    check_elements : callable, optional
        ``check_elements(type_map)`` raising ConfigError for unsupported elements.
    """

    needs_type_map = True
    needs_workdir = False

    def __init__(self, name, factory, check_elements=None):
        self.name = name
        self._factory = factory
        self._check = check_elements
        self.type_map = None

    def prepare(self, type_map):
        if type_map is None:
            raise ConfigError(f"--oracle={self.name} needs the element of each type: give "
                              f"--type-map (e.g. --type-map=Cu,Ni for types 0, 1)")
        if self._check is not None:
            self._check(type_map)
        self.type_map = list(type_map)

    def label(self, cfg, index, workdir=None, lock_fd=None, fresh=True):
        atoms = _bare_atoms(cfg, self.type_map)
        periodic = bool(np.all(cfg.pbc))
        try:
            calc, work = self._factory(atoms)
            work.calc = calc
            energy = float(work.get_potential_energy())
            forces = np.array(work.get_forces(), dtype=np.float64)
            stress = None
            if periodic:
                stress = _plus_stress(work.get_stress(voigt=True), abs(work.get_volume()))
        except (KeyboardInterrupt, MemoryError, ConfigError, OracleFailure):
            raise
        except Exception as err:  # noqa: BLE001 - any calculator error fails this configuration only
            raise OracleFailure(f"{self.name}: {type(err).__name__}: {err}") from None
        if not (np.isfinite(energy) and np.all(np.isfinite(forces))):
            raise OracleFailure(f"{self.name}: non-finite energy or forces")
        return apply_labels(cfg, self.name, energy, forces, stress)


# ----------------------------------------------------------------------------- EMT
def make_emt(params=None):
    """The ``emt`` oracle (``params``: keyword arguments of ASE's EMT)."""
    from ase.calculators.emt import EMT

    params = dict(params or {})
    unknown = sorted(set(params) - set(EMT.default_parameters))
    if unknown:
        raise ConfigError(f"--oracle-param: EMT has no parameter {', '.join(unknown)} (it has "
                          f"{', '.join(sorted(EMT.default_parameters))})")

    def check(type_map):
        from ase.calculators.emt import parameters

        bad = [s for s in type_map if s not in parameters]
        if bad:
            raise ConfigError(f"--oracle=emt has no parameters for {', '.join(map(str, bad))} "
                              f"(EMT knows {', '.join(sorted(parameters))}); use another oracle")

    def factory(atoms):
        return EMT(**params), atoms

    return ASECalculatorOracle("emt", factory, check)


# ----------------------------------------------------------------------------- GPAW
GPAW_INSTALL_HINT = ("the gpaw oracle needs GPAW, which is not installed: install it with "
                     "'pip install gpaw' (it needs libxc, BLAS and a C compiler; see GPAW's "
                     "installation guide) or your distribution's package (e.g. python3-gpaw)")


def make_gpaw(params=None):
    """The ``gpaw`` oracle; ConfigError with install instructions when GPAW is missing."""
    try:
        import gpaw  # noqa: F401
    except ImportError as err:
        raise ConfigError(f"{GPAW_INSTALL_HINT} ({err})") from None
    params = dict(params or {})

    def factory(atoms):
        from gpaw import GPAW

        pbc = atoms.pbc
        kw = {"xc": "PBE", "txt": None}
        if all(pbc):
            kw.update(mode={"name": "pw", "ecut": 400.0},
                      kpts={"density": 3.0, "gamma": True})
        elif not any(pbc):
            atoms = atoms.copy()
            atoms.center(vacuum=6.0)  # a box; forces do not depend on the translation
            atoms.pbc = False
            kw.update(mode="fd", h=0.2)
        else:
            raise OracleFailure("gpaw: partially periodic configurations are not supported "
                                "(give a full 3D cell)")
        kw.update(params)
        try:
            return GPAW(**kw), atoms
        except TypeError as err:
            raise ConfigError(f"--oracle-param for gpaw: {err}") from None

    return ASECalculatorOracle("gpaw", factory)


# ----------------------------------------------------------------------------- LJ
def _reference_distance(z):
    """Nearest-neighbour distance of element ``z``'s reference state (A), or None."""
    from ase.data import reference_states

    ref = reference_states[z] if z < len(reference_states) else None
    if not ref:
        return None
    sym = ref.get("symmetry")
    a = ref.get("a")
    if sym == "fcc":
        return a / math.sqrt(2.0)
    if sym == "bcc":
        return a * math.sqrt(3.0) / 2.0
    if sym == "hcp":
        return a
    if sym == "diamond":
        return a * math.sqrt(3.0) / 4.0
    if sym in ("sc", "cubic"):
        return a
    if sym == "diatom":
        return ref.get("d")
    return None


def lj_element_parameters(symbol):
    """``(epsilon, sigma)`` of one element for the per-element LJ (see the module docstring)."""
    from ase.data import atomic_numbers, covalent_radii

    z = atomic_numbers[symbol]
    d = _reference_distance(z)
    if not d:
        d = 2.0 * float(covalent_radii[z])
    return LJ_DEFAULT_EPSILON, d / 2.0 ** (1.0 / 6.0)


class LennardJonesOracle:
    """Multi-species Lennard-Jones, shifted to zero at the cutoff (see the module docstring).

    Parameters
    ----------
    epsilon, sigma : float, optional
        One value for every pair (eV, A).  Both given: no type map needed.
    cutoff : float, optional
        Cutoff radius (A) of every pair; default ``3 sigma_ij``.
    """

    name = "lj"
    needs_workdir = False

    def __init__(self, epsilon=None, sigma=None, cutoff=None):
        for key, val in (("--lj-epsilon", epsilon), ("--lj-sigma", sigma), ("--lj-cutoff", cutoff)):
            if val is not None and not (np.isfinite(val) and val > 0):
                raise ConfigError(f"{key} must be a positive number, got {val!r}")
        self.epsilon, self.sigma, self.cutoff = epsilon, sigma, cutoff
        self.needs_type_map = epsilon is None or sigma is None
        self._eps_i = self._sig_i = np.zeros(0)  # per-type values from the type map
        self._eps = self._sig = self._rc = np.zeros((0, 0))  # pair tables

    def prepare(self, type_map):
        if self.needs_type_map and type_map is None:
            raise ConfigError("--oracle=lj needs the element of each type for its per-element "
                              "parameters: give --type-map (e.g. --type-map=Cu,Ni), or give both "
                              "--lj-epsilon and --lj-sigma")
        if type_map is not None:
            per = np.array([lj_element_parameters(str(s)) for s in type_map], dtype=np.float64)
            self._eps_i, self._sig_i = per[:, 0], per[:, 1]
            self._tables(len(per))

    def _tables(self, ntypes):
        """Pair tables for ``ntypes`` types (explicit options override the per-type values)."""
        eps_i = self._eps_i if len(self._eps_i) >= ntypes else np.ones(ntypes)
        sig_i = self._sig_i if len(self._sig_i) >= ntypes else np.ones(ntypes)
        eps = np.sqrt(np.outer(eps_i, eps_i))
        sig = 0.5 * (sig_i[:, None] + sig_i[None, :])
        if self.epsilon is not None:
            eps = np.full_like(eps, self.epsilon)
        if self.sigma is not None:
            sig = np.full_like(sig, self.sigma)
        rc = np.full_like(sig, self.cutoff) if self.cutoff is not None else LJ_CUTOFF_SIGMAS * sig
        self._eps, self._sig, self._rc = eps, sig, rc

    def label(self, cfg, index, workdir=None, lock_fd=None, fresh=True):
        energy, forces, virial = self.compute(cfg)
        return apply_labels(cfg, self.name, energy, forces,
                            virial if bool(np.all(cfg.pbc)) else None)

    def compute(self, cfg):
        """``(energy, forces, plus_stress)`` of a configuration (virial for any periodicity)."""
        from ase import Atoms
        from ase.neighborlist import neighbor_list

        n = len(cfg)
        if n == 0:
            return 0.0, np.zeros((0, 3)), np.zeros(6)
        ntypes = int(cfg.types.max()) + 1
        if len(self._eps) < ntypes:
            if self.needs_type_map:
                raise OracleFailure(f"lj: the configuration has type {ntypes - 1} but the type map "
                                    f"has only {len(self._eps_i)} elements")
            self._tables(ntypes)
        atoms = Atoms(numbers=np.ones(n, dtype=int), positions=cfg.positions, cell=cfg.lattice,
                      pbc=cfg.pbc)
        i, j, dist, vec = neighbor_list("ijdD", atoms, float(self._rc[:ntypes, :ntypes].max()))
        ti, tj = cfg.types[i], cfg.types[j]
        rc = self._rc[ti, tj]
        keep = dist < rc
        i, dist, vec, ti, tj, rc = i[keep], dist[keep], vec[keep], ti[keep], tj[keep], rc[keep]
        eps, sig = self._eps[ti, tj], self._sig[ti, tj]
        s6 = (sig / dist) ** 6
        s6c = (sig / rc) ** 6
        pair = 4.0 * eps * ((s6 * s6 - s6) - (s6c * s6c - s6c))
        dphi = -24.0 * eps * (2.0 * s6 * s6 - s6) / dist  # d(phi)/dr
        energy = 0.5 * float(pair.sum())  # every pair appears twice in the full list
        coef = dphi / dist
        forces = np.zeros((n, 3))
        np.add.at(forces, i, coef[:, None] * vec)  # phi'(r) D / r: force on i, D = r_j - r_i
        w = -0.5 * np.einsum("k,ka,kb->ab", coef, vec, vec)
        virial = np.array([w[0, 0], w[1, 1], w[2, 2], w[1, 2], w[0, 2], w[0, 1]])
        return energy, forces, virial


def make_lj(epsilon=None, sigma=None, cutoff=None):
    """The ``lj`` oracle (``epsilon`` eV, ``sigma`` and ``cutoff`` A; see the module docstring)."""
    return LennardJonesOracle(epsilon, sigma, cutoff)
