"""Molecular dynamics with an MTP and extrapolation control (the ``mlp md`` driver, new).

The integrators are ASE's:

* ``nve``: velocity Verlet (:class:`ase.md.verlet.VelocityVerlet`);
* ``langevin``: Langevin thermostat (:class:`ase.md.langevin.Langevin`), friction in 1/fs
  (``fixcm=False``: the centre of mass is not held fixed);
* ``npt``: Nose-Hoover chain thermostat + isotropic MTK barostat
  (:class:`ase.md.nose_hoover_chain.IsotropicMTKNPT`), damping times ``tdamp`` and
  ``pdamp`` in fs, pressure in GPa.

Units at this interface: time fs, temperature K, pressure GPa, friction 1/fs.

Initial velocities (when the atoms carry no momenta and ``init_temperature > 0``):
Maxwell-Boltzmann at ``init_temperature`` from ``numpy.random.default_rng(seed)``, total
momentum removed (:func:`maxwell_boltzmann`).  The same generator drives the Langevin noise, so a run is reproducible
from its seed.

Extrapolation control comes from the calculator
(:class:`~mlip_py.potential.calculator.MTPCalculator` with ``active_set=``): every force
evaluation is graded, structures above the selection threshold are collected by the
calculator, and a grade above the breaking threshold raises
:class:`~mlip_py.errors.ExtrapolationError`, which ends the run with status ``break``
(the offending structure is the last frame handed to ``on_frame``).
"""
from __future__ import annotations

import dataclasses
import secrets

import numpy as np

from ..configuration import Configuration
from ..errors import ConfigError, ExtrapolationError

__all__ = ["ENSEMBLES", "MDResult", "MDRunner", "frame_configuration", "maxwell_boltzmann"]

ENSEMBLES = ("nve", "langevin", "npt")


@dataclasses.dataclass
class MDResult:
    """Outcome of :meth:`MDRunner.run`.

    Attributes
    ----------
    status : str
        ``completed``, ``break`` (breaking threshold exceeded) or ``interrupted``.
    steps : int
        Completed time steps.
    time_fs : float
    max_grade : float or None
        Largest grade seen (with extrapolation control).
    message : str
    break_step : int or None
        Step whose structure exceeded the breaking threshold (0 = the start).
    """

    status: str
    steps: int
    time_fs: float
    max_grade: float | None = None
    message: str = ""
    break_step: int | None = None


def frame_configuration(atoms, calc, step=None, time_fs=None):
    """A :class:`Configuration` of the current state with the calculator's results.

    Energy, forces and PlusStress (``-stress * V``) come from ``calc.results``; the
    features ``step``, ``time_fs``, ``temperature_K`` and (with extrapolation control)
    ``MV_grade`` are added.
    """
    from ..selection.active_set import format_grade

    lattice = np.array(atoms.cell[:], dtype=np.float64)
    for a in range(3):
        if not atoms.pbc[a]:
            lattice[a] = 0.0
    cfg = Configuration(lattice=lattice, positions=atoms.positions, types=calc._types(atoms))
    res = calc.results
    if "energy" in res:
        cfg.energy = float(res["energy"])
    if "forces" in res:
        cfg.forces = np.array(res["forces"])
    if "stress" in res:
        cfg.plus_stress = -np.asarray(res["stress"]) * abs(atoms.cell.volume)
    if step is not None:
        cfg.features["step"] = str(int(step))
    if time_fs is not None:
        cfg.features["time_fs"] = "%.6g" % time_fs
    if len(atoms):
        cfg.features["temperature_K"] = "%.3f" % atoms.get_temperature()
    if "grade" in res:
        cfg.features["MV_grade"] = format_grade(res["grade"])
    return cfg


def maxwell_boltzmann(atoms, temperature, rng):
    """Momenta drawn from the Maxwell-Boltzmann distribution at ``temperature`` (K).

    ``p_ia = sqrt(m_i k_B T) * xi_ia`` with standard normal ``xi`` from ``rng``; the
    centre-of-mass momentum is then removed (for more than one atom).
    """
    from ase import units

    masses = atoms.get_masses()
    p = rng.standard_normal((len(atoms), 3)) * np.sqrt(masses * units.kB * temperature)[:, None]
    if len(atoms) > 1:
        p -= masses[:, None] * (p.sum(axis=0) / masses.sum())
    atoms.set_momenta(p)


class MDRunner:
    """Set up and run MD of ``atoms`` with an :class:`MTPCalculator`.

    Parameters
    ----------
    atoms : ase.Atoms
        The system (its momenta are used if present, see ``init_temperature``).
    calculator : MTPCalculator
    ensemble : str
        ``nve``, ``langevin`` or ``npt``.
    timestep : float
        fs.
    temperature : float
        Target temperature of the thermostats, K.
    init_temperature : float, optional
        Temperature of the initial Maxwell-Boltzmann velocities (default
        ``temperature``); 0 keeps the atoms' momenta (zero if they have none).
    friction : float
        Langevin friction, 1/fs.
    pressure : float
        NPT target pressure, GPa.
    tdamp, pdamp : float, optional
        NPT thermostat / barostat damping times in fs (default 100 and 1000 time steps).
    seed : int, optional
        Random seed (default: drawn from the OS; see :attr:`seed`).
    """

    def __init__(self, atoms, calculator, ensemble="nve", timestep=1.0, temperature=300.0,
                 init_temperature=None, friction=0.01, pressure=0.0, tdamp=None, pdamp=None,
                 seed=None):
        from ase import units

        if ensemble not in ENSEMBLES:
            raise ConfigError(f"--ensemble: expected one of {', '.join(ENSEMBLES)}, got "
                              f"{ensemble!r}")
        if not timestep > 0:
            raise ConfigError(f"--timestep must be > 0 fs, got {timestep}")
        if temperature < 0:
            raise ConfigError(f"--temperature must be >= 0 K, got {temperature}")
        if ensemble in ("langevin", "npt") and not temperature > 0:
            raise ConfigError(f"--ensemble={ensemble} needs --temperature > 0")
        if ensemble == "langevin" and not friction > 0:
            raise ConfigError(f"--friction must be > 0 (1/fs), got {friction}")
        if ensemble == "npt" and not (all(atoms.pbc) and abs(atoms.cell.volume) > 0):
            raise ConfigError("--ensemble=npt needs a cell periodic in all three directions")
        self.atoms = atoms
        self.calc = calculator
        atoms.calc = calculator
        self.ensemble = ensemble
        self.timestep = float(timestep)
        self.seed = int(seed) if seed is not None else secrets.randbits(32)
        self.rng = np.random.default_rng(self.seed)
        t0 = temperature if init_temperature is None else float(init_temperature)
        if t0 < 0:
            raise ConfigError(f"--init-temperature must be >= 0 K, got {t0}")
        has_momenta = atoms.has("momenta") and np.any(atoms.get_momenta() != 0)
        if t0 > 0 and not has_momenta:
            maxwell_boltzmann(atoms, t0, self.rng)
        dt = self.timestep * units.fs
        if ensemble == "nve":
            from ase.md.verlet import VelocityVerlet

            self.dyn = VelocityVerlet(atoms, timestep=dt)
        elif ensemble == "langevin":
            from ase.md.langevin import Langevin

            self.dyn = Langevin(atoms, timestep=dt, temperature_K=temperature,
                                friction=friction / units.fs, fixcm=False, rng=self.rng)
        else:
            try:
                from ase.md.nose_hoover_chain import IsotropicMTKNPT
            except ImportError:
                raise ConfigError("--ensemble=npt needs ASE >= 3.25 (ase.md.nose_hoover_chain."
                                  "IsotropicMTKNPT); upgrade ase") from None

            td = (100.0 * self.timestep if tdamp is None else float(tdamp)) * units.fs
            pd = (1000.0 * self.timestep if pdamp is None else float(pdamp)) * units.fs
            if not (td > 0 and pd > 0):
                raise ConfigError("--tdamp and --pdamp must be > 0 fs")
            self.dyn = IsotropicMTKNPT(atoms, timestep=dt, temperature_K=temperature,
                                       pressure_au=pressure * units.GPa, tdamp=td, pdamp=pd)
        self.result = None

    @property
    def steps_done(self):
        return int(self.dyn.nsteps)

    def run(self, steps, every=10, on_frame=None, on_progress=None, progress_every=None):
        """Run ``steps`` time steps.

        Parameters
        ----------
        steps : int
        every : int
            ``on_frame(step, atoms)`` is called at step 0 and every ``every`` steps
            (and for the structure that exceeded the breaking threshold).
        on_frame, on_progress : callable, optional
            ``on_progress(step, atoms, max_grade)`` every ``progress_every`` steps (and
            at the end); ``max_grade`` is the largest grade since the previous call
            (None without extrapolation control).
        progress_every : int, optional
            Default: ``every``.

        Returns
        -------
        MDResult
            Also stored as :attr:`result`.  On KeyboardInterrupt the result (status
            ``interrupted``) is stored and the interrupt re-raised.
        """
        steps = int(steps)
        every = max(1, int(every))
        progress_every = every if progress_every is None else max(1, int(progress_every))
        control = getattr(self.calc, "control", None)
        overall = [0.0]

        def window_max():
            if control is None:
                return None
            g = control.max_grade
            overall[0] = max(overall[0], g)
            control.reset_max()
            return g

        start = self.steps_done
        status, message = "completed", ""
        last_progress = -1
        started = False
        try:
            for _ in self.dyn.irun(steps=steps):
                started = True
                k = self.steps_done - start
                if on_frame is not None and k % every == 0:
                    on_frame(k, self.atoms)
                if on_progress is not None and k % progress_every == 0:
                    on_progress(k, self.atoms, window_max())
                    last_progress = k
        except ExtrapolationError as err:
            status, message = "break", str(err)
            k = self.steps_done - start + (1 if started else 0)
            if on_frame is not None:
                on_frame(k, self.atoms)
            if on_progress is not None:
                on_progress(k, self.atoms, window_max())
                last_progress = k
        except KeyboardInterrupt:
            self.result = MDResult("interrupted", self.steps_done - start,
                                   (self.steps_done - start) * self.timestep,
                                   None if control is None else max(overall[0], control.max_grade),
                                   "interrupted")
            raise
        if status == "completed":
            k = self.steps_done - start
        if on_progress is not None and last_progress != k:
            on_progress(k, self.atoms, window_max())
        mg = None if control is None else max(overall[0], control.max_grade)
        done = self.steps_done - start
        self.result = MDResult(status, done, done * self.timestep, mg, message,
                               k if status == "break" else None)
        return self.result
