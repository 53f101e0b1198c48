"""The atomic configuration as MLIP-2 sees it.

A :class:`Configuration` mirrors one ``BEGIN_CFG ... END_CFG`` block of a ``.cfg`` file:

* ``lattice`` (3, 3): lattice vectors as **rows**; a row that is exactly zero means
  "not periodic along that row" (no ``Supercell`` = cluster, 2 rows = slab, 1 = wire).
* ``positions`` (N, 3): Cartesian, Angstrom, not necessarily inside the cell.
* ``types`` (N,): 0-based species indices into the potential (not atomic numbers).
* ``energy`` (eV), ``forces`` (N, 3, eV/A), ``plus_stress`` (6,) = the ``PlusStress``
  virial in eV, order ``xx yy zz yz xz xy``, ``S = -V * sigma_ASE`` (positive under
  compression), ``site_energies`` (N,), ``charges`` (N,): each optional (``None``).
* ``features``: ordered ``dict`` of string key -> string value (``Feature`` lines).

Conversion to and from :class:`ase.Atoms` needs an explicit type map (the element of
each type index); it is never guessed.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .errors import ConfigError

#: atoms.info keys used to keep cfg data that ASE has no slot for
INFO_VIRIAL = "virial"
INFO_TYPES = "mlip_types"


@dataclasses.dataclass(slots=True, kw_only=True, eq=False)
class Configuration:
    """One atomic configuration (see the module docstring for units and conventions)."""

    lattice: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((3, 3)))
    positions: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 3)))
    types: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    energy: float | None = None
    forces: np.ndarray | None = None
    plus_stress: np.ndarray | None = None
    site_energies: np.ndarray | None = None
    charges: np.ndarray | None = None
    features: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.lattice = np.array(self.lattice, dtype=np.float64).reshape(3, 3)
        self.positions = np.array(self.positions, dtype=np.float64).reshape(-1, 3)
        n = len(self.positions)
        self.types = np.array(self.types, dtype=np.int64).reshape(-1)
        if len(self.types) != n:
            raise ValueError(f"types has {len(self.types)} entries for {n} atoms")
        if self.energy is not None:
            self.energy = float(self.energy)
        if self.forces is not None:
            self.forces = np.array(self.forces, dtype=np.float64).reshape(n, 3)
        if self.plus_stress is not None:
            self.plus_stress = np.array(self.plus_stress, dtype=np.float64).reshape(6)
        if self.site_energies is not None:
            self.site_energies = np.array(self.site_energies, dtype=np.float64).reshape(n)
        if self.charges is not None:
            self.charges = np.array(self.charges, dtype=np.float64).reshape(n)
        self.features = dict(self.features)

    # ------------------------------------------------------------------ basics
    def __len__(self):
        return len(self.positions)

    @property
    def size(self):
        """Number of atoms."""
        return len(self.positions)

    @property
    def pbc(self):
        """Periodicity per lattice row: row ``a`` is periodic iff it is not exactly zero."""
        return np.any(self.lattice != 0.0, axis=1)

    @property
    def volume(self):
        """``|det(lattice)|`` (0 for non-periodic or partially periodic configurations)."""
        return abs(float(np.linalg.det(self.lattice)))

    def copy(self):
        """Deep copy."""
        def cp(a):
            return None if a is None else a.copy()

        return Configuration(
            lattice=self.lattice.copy(),
            positions=self.positions.copy(),
            types=self.types.copy(),
            energy=self.energy,
            forces=cp(self.forces),
            plus_stress=cp(self.plus_stress),
            site_energies=cp(self.site_energies),
            charges=cp(self.charges),
            features=dict(self.features),
        )

    def clear_efs(self):
        """Drop energy, forces and stress (e.g. before sending a configuration to an oracle)."""
        self.energy = None
        self.forces = None
        self.plus_stress = None

    def plus_stress_matrix(self):
        """The PlusStress virial as a symmetric (3, 3) matrix, or None."""
        if self.plus_stress is None:
            return None
        xx, yy, zz, yz, xz, xy = self.plus_stress
        return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])

    def set_plus_stress_matrix(self, s):
        """Set the PlusStress from a (3, 3) matrix (symmetrised)."""
        s = np.asarray(s, dtype=np.float64).reshape(3, 3)
        s = 0.5 * (s + s.T)
        self.plus_stress = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])

    def stress_gpa(self):
        """Stress in GPa as MLIP-2 reports it (``S * 160.2176487 / |det L|``), Voigt order."""
        if self.plus_stress is None:
            return None
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.plus_stress * 160.2176487 / self.volume

    # ------------------------------------------------------------------ ASE
    def to_atoms(self, type_map):
        """Return an :class:`ase.Atoms` (labels on a SinglePointCalculator).

        Parameters
        ----------
        type_map : sequence of str or int
            Element symbol (or atomic number) of type 0, 1, ...  Required: types are
            indices into the potential's species, not atomic numbers.
        """
        from ase import Atoms
        from ase.calculators.singlepoint import SinglePointCalculator

        numbers = _type_numbers(type_map)
        if len(self) and self.types.max() >= len(numbers):
            raise ConfigError(
                f"type map {list(type_map)!r} has {len(numbers)} species but the configuration "
                f"has type {int(self.types.max())}"
            )
        if len(self) and self.types.min() < 0:
            raise ConfigError(f"negative atom type {int(self.types.min())}")
        atoms = Atoms(
            numbers=numbers[self.types] if len(self) else [],
            positions=self.positions,
            cell=self.lattice,
            pbc=self.pbc,
        )
        atoms.info.update(self.features)
        if self.charges is not None:
            atoms.set_initial_charges(self.charges)
        results = {}
        if self.energy is not None:
            results["energy"] = self.energy
            results["free_energy"] = self.energy
        if self.forces is not None:
            results["forces"] = self.forces.copy()
        if self.plus_stress is not None:
            atoms.info[INFO_VIRIAL] = self.plus_stress_matrix()
            vol = self.volume
            if vol > 0 and all(self.pbc):
                results["stress"] = -self.plus_stress / vol
        if self.site_energies is not None:
            results["energies"] = self.site_energies.copy()
        if results:
            atoms.calc = SinglePointCalculator(atoms, **results)
        return atoms

    @classmethod
    def from_atoms(cls, atoms, type_map):
        """Build a configuration from :class:`ase.Atoms`.

        ``type_map`` gives the element of each type index; an element not in it is an
        error (never mapped silently).  Energy, forces, stress (ASE sign, converted to
        the PlusStress virial) and per-atom energies are taken from ``atoms.calc`` when
        it has them; ``atoms.info['virial']`` (3x3, eV) takes precedence over the stress.
        String-valued ``atoms.info`` entries become features.
        """
        numbers = _type_numbers(type_map)
        lookup = {int(z): t for t, z in enumerate(numbers)}
        types = []
        for i, z in enumerate(atoms.numbers):
            if int(z) not in lookup:
                from ase.data import chemical_symbols

                raise ConfigError(
                    f"atom {i} is {chemical_symbols[int(z)]}, which is not in the type map "
                    f"{[chemical_symbols[int(x)] for x in numbers]}"
                )
            types.append(lookup[int(z)])
        cell = np.array(atoms.cell[:], dtype=np.float64)
        for a in range(3):
            if not atoms.pbc[a]:
                cell[a] = 0.0
        cfg = cls(lattice=cell, positions=atoms.positions, types=np.array(types, dtype=np.int64))
        calc = atoms.calc
        res = getattr(calc, "results", {}) if calc is not None else {}
        if "energy" in res and res["energy"] is not None:
            cfg.energy = float(res["energy"])
        elif "free_energy" in res and res["free_energy"] is not None:
            cfg.energy = float(res["free_energy"])
        if res.get("forces") is not None:
            cfg.forces = np.array(res["forces"], dtype=np.float64)
        if res.get("energies") is not None:
            cfg.site_energies = np.array(res["energies"], dtype=np.float64)
        virial = atoms.info.get(INFO_VIRIAL)
        if virial is not None:
            cfg.set_plus_stress_matrix(np.asarray(virial, dtype=np.float64).reshape(3, 3))
        elif res.get("stress") is not None:
            st = np.asarray(res["stress"], dtype=np.float64)
            if st.shape == (3, 3):
                st = np.array([st[0, 0], st[1, 1], st[2, 2], st[1, 2], st[0, 2], st[0, 1]])
            cfg.plus_stress = -st * abs(float(np.linalg.det(atoms.cell[:])))
        if atoms.has("initial_charges") and np.any(atoms.get_initial_charges() != 0):
            cfg.charges = atoms.get_initial_charges().astype(np.float64)
        for key, value in atoms.info.items():
            if key == INFO_VIRIAL:
                continue
            if isinstance(value, str):
                cfg.features[key] = value
            elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
                cfg.features[key] = repr(value.item() if hasattr(value, "item") else value)
        return cfg


def _type_numbers(type_map):
    from ase.data import atomic_numbers

    out = []
    for s in type_map:
        if isinstance(s, (int, np.integer)):
            out.append(int(s))
        elif s in atomic_numbers:
            out.append(atomic_numbers[s])
        else:
            raise ConfigError(f"unknown element {s!r} in type map {list(type_map)!r}")
    if len(set(out)) != len(out):
        raise ConfigError(f"type map {list(type_map)!r} names an element twice")
    return np.array(out, dtype=np.int64)


def parse_type_map(text):
    """Parse ``"Cu,Ni"`` (or ``"Cu Ni"``) into ``["Cu", "Ni"]`` (validated)."""
    items = [s for s in text.replace(",", " ").split() if s]
    if not items:
        raise ConfigError(f"--type-map: expected element symbols like 'Cu,Ni', got {text!r}")
    _type_numbers(items)
    return items
