"""Oracles: the reference calculations (DFT or a stand-in) that label configurations.

An *oracle* turns a :class:`~mlip_py.configuration.Configuration` (0-based types) into a
labelled copy: ``energy`` (eV), ``forces`` (eV/A), ``plus_stress`` (MLIP-2 PlusStress
virial in eV, ``S = -V * sigma_ASE``, order xx yy zz yz xz xy) and the feature
``EFS_by=<oracle name>`` (MLIP-2 writes ``EFS_by VASP`` for VASP data).  The input's
energy, forces, stress and site energies are replaced (site energies are dropped unless
the oracle computes them); positions, lattice, types, charges and the other features are
kept.  Configurations that are not periodic along all three lattice rows get no stress
(``plus_stress`` stays ``None``) unless the oracle reports a virial itself.

Element-based oracles need a *type map* (the element of type 0, 1, ...); it is never
guessed: ``mlp label`` takes it from ``--type-map`` or, for inputs that store elements
(extxyz, ASE formats), from the file with a notice.

Registry (``--oracle=NAME``):

================= ==========================================================================
``emt``           ASE's EMT (Al Cu Ag Au Ni Pd Pt, H C N O), :mod:`.ase_calc` (default)
``lj``            Lennard-Jones with per-element parameters or explicit ones, :mod:`.ase_calc`
``gpaw``          GPAW DFT through ASE when GPAW is installed, :mod:`.ase_calc`
``command:CMD``   an external program run per configuration in its own directory (VASP,
                  Quantum ESPRESSO, ... through a wrapper script), :mod:`.command`
================= ==========================================================================

Modules are imported only when their oracle is requested.  Batches (resumable, with a
journal in a work directory, ``--chunk``) are run by :mod:`.journal`.

Interface of an oracle object
-----------------------------
``name`` (str)
    The name written into ``EFS_by``.
``needs_type_map`` (bool)
    ``True`` when elements are required.
``needs_workdir`` (bool)
    ``True`` when every configuration must run in its own directory.
``prepare(type_map)``
    Validate the settings against the type map before any work (raises ConfigError).
``label(cfg, index, workdir=None, lock_fd=None, fresh=True)``
    Return the labelled copy; a failure of this one configuration (calculation error,
    non-zero exit status, unreadable result) is raised as :class:`OracleFailure`, which the
    batch records and goes on; any other exception stops the batch.
"""
from __future__ import annotations

import importlib

from ..errors import ConfigError, MlipError

__all__ = ["ORACLES", "OracleFailure", "get_oracle", "oracle_names", "apply_labels"]

#: name -> (module in mlip_py.oracles, factory function in it, one-line description)
ORACLES = {
    "emt": ("ase_calc", "make_emt", "ASE's EMT (Al, Cu, Ag, Au, Ni, Pd, Pt, H, C, N, O)"),
    "lj": ("ase_calc", "make_lj", "Lennard-Jones (per-element parameters or --lj-* options)"),
    "gpaw": ("ase_calc", "make_gpaw", "GPAW DFT through ASE (when GPAW is installed)"),
}
COMMAND_PREFIX = "command:"


class OracleFailure(MlipError):
    """The oracle could not label one configuration (recorded; the batch goes on)."""


def oracle_names():
    """The valid ``--oracle`` values, for messages."""
    return list(ORACLES) + [COMMAND_PREFIX + "<shell command>"]


def get_oracle(spec, **options):
    """Build the oracle named by ``spec``.

    Parameters
    ----------
    spec : str
        ``"emt"``, ``"lj"``, ``"gpaw"`` or ``"command:<shell command>"``.
    **options
        Settings of that oracle (see the factories in :mod:`.ase_calc` and
        :class:`.command.CommandOracle`); ``None`` values mean "default".

    Raises
    ------
    ConfigError
        Unknown name (the message lists the valid ones) or a bad setting.
    """
    spec = str(spec).strip()
    options = {k: v for k, v in options.items() if v is not None}
    if spec.startswith(COMMAND_PREFIX):
        from .command import CommandOracle

        return CommandOracle(spec[len(COMMAND_PREFIX):], **options)
    key = spec.lower()
    if key not in ORACLES:
        hint = " (did you mean command:...? the prefix is followed by the shell command)" \
            if key in ("command", "cmd") else ""
        raise ConfigError(f"unknown oracle {spec!r}{hint}; valid oracles: {', '.join(oracle_names())}")
    module, factory, _ = ORACLES[key]
    mod = importlib.import_module(f"{__name__}.{module}")
    return getattr(mod, factory)(**options)


def apply_labels(cfg, name, energy, forces=None, plus_stress=None, site_energies=None, efs_by=None):
    """A labelled copy of ``cfg`` (the input's EFS and site energies replaced).

    The features ``label_error`` and ``label_index`` of a failure record fed back as
    input are dropped; ``EFS_by`` is set.

    Parameters
    ----------
    cfg : Configuration
        The input configuration (not modified).
    name : str
        Oracle name for ``EFS_by`` when ``efs_by`` is not given.
    energy : float
    forces, plus_stress, site_energies : array or None
    efs_by : str, optional
        Value of the ``EFS_by`` feature (e.g. ``VASP_not_converged`` from an OUTCAR).
    """
    out = cfg.copy()
    out.energy = float(energy)
    out.forces = None if forces is None else forces
    out.plus_stress = None if plus_stress is None else plus_stress
    out.site_energies = None if site_energies is None else site_energies
    out.features.pop("label_error", None)  # left by an earlier failed attempt (see journal)
    out.features.pop("label_index", None)
    out.features["EFS_by"] = efs_by or name
    out.__post_init__()  # validate shapes
    return out
