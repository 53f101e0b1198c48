"""MTPCalculator: an ASE calculator for Moment Tensor Potentials.

Properties (ASE's names, signs and units): ``energy`` and ``free_energy`` (eV),
``energies`` (per-atom site energies, eV), ``forces`` (eV/A) and ``stress``
(eV/A^3, Voigt order xx yy zz yz xz xy, ``stress = -PlusStress / V``; only for cells
periodic in all three directions).

Species: ``type_map`` names the element of each potential type (``["Na", "Cl"]``).
It is required unless the potential has one species and every atom is of one element.

Neighbour reuse: the pair list is built with ``cutoff + skin``; while no atom has moved
more than ``skin / 2`` since the build and the cell, numbers and pbc are unchanged, only
the pair vectors are recomputed from the stored lattice shifts.

Extrapolation control (``active_set=``): every calculation also grades the structure
against the active set (an :class:`~mlip_py.selection.active_set.ActiveSet` or an
``.als`` file made with the same potential) and adds two results:

* ``grade`` (float): the MaxVol extrapolation grade of the structure (MLIP-2's
  ``MV_grade``; > 1 means extrapolation);
* ``grades`` (N,): per-atom grades.  In neighbourhood mode (active set built with a
  non-zero ``nbh`` weight) these are the grades of the atoms' rows; in the default
  configuration mode there is one row per structure and every atom carries the
  structure's grade.

Structures with ``grade > threshold`` are appended (as
:class:`~mlip_py.configuration.Configuration` with ``Feature MV_grade``, without EFS) to
``selected`` (a list, default a new list at ``calc.selected``, or a callable).  With
``grade > threshold_break`` the calculation raises
:class:`~mlip_py.errors.ExtrapolationError` (attributes ``grade`` and ``threshold``)
*after* storing its results, so ``calc.results`` holds the energy, forces and grade of
the offending structure; asking again for the same structure returns the stored
results without raising.
"""
from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from ..errors import ConfigError


class MTPCalculator(Calculator):
    """ASE calculator for an MTP (``.mtp`` path, :class:`MTPParams` or :class:`MTP`).

    Parameters
    ----------
    potential : str, path, MTPParams or MTP
        The potential.  An untrained file gets MLIP-2's default coefficients.
    type_map : sequence of str, optional
        Element of type 0, 1, ... of the potential.
    skin : float
        Extra distance for neighbour-list reuse (A); 0 rebuilds on every call.
    num_threads : int, optional
        Threads for the kernels (default: OpenMP's default).
    active_set : ActiveSet, str or path, optional
        Switch on extrapolation control (see the module docstring).
    threshold : float
        Structures graded above it are collected in ``selected`` (default 2.0).
    threshold_break : float, optional
        Grade above which :class:`~mlip_py.errors.ExtrapolationError` is raised
        (None or <= 1: never, MLIP-2's convention).
    selected : list or callable, optional
        Where the collected structures go (default: a new list, ``calc.selected``).
    weighting : str
        Row weighting when ``active_set`` is a path (not stored in ``.als`` files).
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]
    default_parameters = {}

    def __init__(self, potential, type_map=None, skin=0.3, num_threads=None, active_set=None,
                 threshold=2.0, threshold_break=None, selected=None, weighting="vibrations",
                 **kwargs):
        super().__init__(**kwargs)
        from .mtp import MTP

        if isinstance(potential, MTP):
            self.mtp = potential
        else:
            self.mtp = MTP(potential, num_threads=num_threads)
        self.control = None
        self.selected = None
        if active_set is not None:
            from ..simulate.extrapolation import ExtrapolationControl

            self.selected = [] if selected is None else selected
            self.control = ExtrapolationControl(active_set, threshold, threshold_break,
                                                selected=self.selected, mtp=self.mtp,
                                                weighting=weighting)
            self.implemented_properties = list(type(self).implemented_properties) + [
                "grade", "grades"]
        self.type_map = None if type_map is None else list(type_map)
        if self.type_map is not None and len(self.type_map) > self.mtp.params.species_count:
            raise ConfigError(
                f"type_map {self.type_map} has {len(self.type_map)} elements but the potential has "
                f"{self.mtp.params.species_count} species")
        self.skin = float(skin)
        self._nl = None
        self._nl_key = None
        self._nl_positions = None

    # -------------------------------------------------------------- species
    def _types(self, atoms):
        numbers = atoms.numbers
        if self.type_map is None:
            if self.mtp.params.species_count == 1 and len(set(numbers.tolist())) <= 1:
                return np.zeros(len(atoms), dtype=np.int64)
            raise ConfigError(
                "MTPCalculator needs type_map=[...] (the element of each potential type) for "
                "a multi-species potential or a multi-element structure")
        from ase.data import atomic_numbers

        lookup = {atomic_numbers[s]: t for t, s in enumerate(self.type_map)}
        try:
            return np.array([lookup[int(z)] for z in numbers], dtype=np.int64)
        except KeyError as err:
            from ase.data import chemical_symbols

            raise ConfigError(f"element {chemical_symbols[err.args[0]]} is not in type_map "
                              f"{self.type_map}") from None

    # ----------------------------------------------------------- neighbours
    def _neighbors(self, atoms, lattice):
        from .neighbors import build_neighbors

        pbc = np.asarray(atoms.pbc, dtype=bool)
        key = (lattice.tobytes(), pbc.tobytes(), atoms.numbers.tobytes())
        pos = atoms.positions
        if (self.skin > 0 and self._nl is not None and self._nl_key == key
                and np.max(np.linalg.norm(pos - self._nl_positions, axis=1), initial=0.0)
                < 0.5 * self.skin):
            nl = self._nl
            vec = pos[nl.index] + nl.shifts @ lattice - np.repeat(pos, np.diff(nl.offsets), axis=0)
            return _restrict(nl.offsets, nl.index, vec, self.mtp.params.max_dist)
        nl = build_neighbors(lattice, pos, pbc, self.mtp.params.max_dist + self.skin)
        self._nl, self._nl_key, self._nl_positions = nl, key, pos.copy()
        if self.skin == 0:
            return nl.offsets, nl.index, nl.vectors
        return _restrict(nl.offsets, nl.index, nl.vectors, self.mtp.params.max_dist)

    # ---------------------------------------------------------- calculation
    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        types = self._types(atoms)
        lattice = np.array(atoms.cell[:], dtype=np.float64)
        for a in range(3):
            if not atoms.pbc[a]:
                lattice[a] = 0.0
        offsets, index, vectors = self._neighbors(atoms, lattice)
        energy, forces, plus_stress, site_energies = self.mtp.calc_efs_arrays(
            types, offsets, index, vectors)
        self.results["energy"] = energy
        self.results["free_energy"] = energy
        self.results["energies"] = site_energies
        self.results["forces"] = forces
        if all(atoms.pbc) and abs(atoms.cell.volume) > 0:
            self.results["stress"] = -plus_stress / abs(atoms.cell.volume)
        elif "stress" in properties:
            raise PropertyNotImplementedError("stress needs a cell periodic in all directions")
        if self.control is not None:
            self._grade(atoms, types, lattice, (offsets, index, vectors))

    def _grade(self, atoms, types, lattice, neighbors):
        from ..configuration import Configuration

        cfg = Configuration(lattice=lattice, positions=atoms.positions, types=types)
        for key, value in atoms.info.items():
            if isinstance(value, str):
                cfg.features[key] = value
        grade, per_atom = self.control.grades(cfg, neighbors=neighbors)
        self.results["grade"] = grade
        self.results["grades"] = per_atom
        self.control.note(cfg, grade)


def _restrict(offsets, index, vectors, cutoff):
    """Keep only pairs with |r| < cutoff (strict), in CSR form."""
    keep = np.einsum("ij,ij->i", vectors, vectors) < cutoff * cutoff
    if keep.all():
        return offsets, index, vectors
    counts = np.add.reduceat(keep.astype(np.int64), offsets[:-1]) if len(keep) else np.zeros(len(offsets) - 1, dtype=np.int64)
    counts[np.diff(offsets) == 0] = 0
    new_offsets = np.zeros_like(offsets)
    np.cumsum(counts, out=new_offsets[1:])
    return new_offsets, index[keep], np.ascontiguousarray(vectors[keep])
