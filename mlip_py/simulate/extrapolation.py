"""Extrapolation control during simulations (MLIP-2's "selection by generation" mode).

An :class:`ExtrapolationControl` grades every configuration a simulation evaluates
against a loaded active set (:class:`~mlip_py.selection.active_set.ActiveSet`) and

* keeps every configuration whose grade exceeds ``threshold`` (MLIP-2's
  ``select:threshold``) as a *preselected* candidate: a copy of the geometry with its
  original features plus ``Feature MV_grade`` (``%f``), appended to a list, passed to a
  callback and/or appended to a cfg file (MLIP-2's ``select:save-selected``);
* raises :class:`~mlip_py.errors.ExtrapolationError` when the grade exceeds
  ``threshold_break`` (``select:threshold-break``), after keeping the configuration.

The active set is never updated (as in MLIP-2 when a breaking threshold is set): the
grade is ``max_j |(b A^-1)_j|`` over the rows ``b`` of the configuration
(mlip-formats.md §5.2).

Conventions
-----------
* ``threshold_break`` ``None`` or ``<= 1`` switches breaking off (MLIP-2's rule:
  ``select:threshold-break`` is active only when > 1).
* Per-atom grades: in neighbourhood mode (selection weights with ``nbh != 0``) row ``i``
  of a configuration belongs to atom ``i`` and :meth:`ExtrapolationControl.grades`
  returns its grade; in configuration mode there is one row for the whole configuration
  and every atom gets the configuration grade.
* Preselected configurations carry **no** energy, forces or stress by default
  (``keep_efs=False``): they are candidates to be computed by the reference method.
  (MLIP-2 writes the EFS of the *previous* evaluation on some entries and writes the
  first geometry of a relaxation twice; see :mod:`mlip_py.simulate.relax`.)
* The preselected file is **appended to** (as MLIP-2 does; delete it before a new
  active-learning round).  Entries are buffered and written with an atomic append
  (:func:`~mlip_py.io._atomic.atomic_open`) on :meth:`PreselectedWriter.flush`, which the
  drivers call after every relaxed configuration, every trajectory frame and at the end.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import ConfigError, ExtrapolationError

__all__ = ["ExtrapolationControl", "PreselectedWriter", "load_active_set"]


def load_active_set(active_set, mtp=None, weighting="vibrations"):
    """An :class:`ActiveSet` from an object or an ``.als`` path.

    Parameters
    ----------
    active_set : ActiveSet, str or path
    mtp : MTP, optional
        The potential the simulation uses; it must equal the one of the active set
        (ConfigError otherwise, grades would be meaningless).
    weighting : str
        Row weighting for a loaded file (not stored in ``.als`` files).
    """
    from ..selection.active_set import ActiveSet, check_same_potential

    if isinstance(active_set, ActiveSet):
        if mtp is not None:
            check_same_potential(mtp.params, active_set.mtp.params)
        return active_set
    if isinstance(active_set, (str, os.PathLike)):
        path = os.fspath(active_set)
        if not os.path.exists(path):
            raise FileNotFoundError(2, "No such file or directory", path)
        return ActiveSet.load(path, mtp, weighting)
    raise TypeError(f"active_set must be an ActiveSet or a path to an .als file, "
                    f"got {type(active_set).__name__}")


class PreselectedWriter:
    """Buffered, atomic appends of configurations to a text cfg file.

    Parameters
    ----------
    path : str or path
    flush_every : int
        Flush automatically when this many entries are buffered.
    """

    def __init__(self, path, flush_every=64):
        self.path = os.fspath(path)
        self.flush_every = max(1, int(flush_every))
        self.count = 0
        self._buffer = []

    def add(self, cfg):
        self._buffer.append(cfg)
        self.count += 1
        if len(self._buffer) >= self.flush_every:
            self.flush()

    def flush(self):
        """Append the buffered configurations to the file (atomically)."""
        if not self._buffer:
            return
        from ..io.cfg import write_cfg

        write_cfg(self.path, self._buffer, append=True)
        self._buffer = []

    close = flush


class ExtrapolationControl:
    """Grade configurations, keep the extrapolative ones, stop above a breaking threshold.

    Parameters
    ----------
    active_set : ActiveSet, str or path
        The active set (or an ``.als`` file) to grade against.
    threshold : float
        Configurations with grade > threshold are kept (default 2.0, the value MLIP-2's
        active-learning examples use; must be > 0).
    threshold_break : float, optional
        Grade above which :class:`ExtrapolationError` is raised (None or <= 1: never).
    save_selected : str or path, optional
        cfg file the kept configurations are appended to.
    selected : list or callable, optional
        A list the kept configurations are appended to, or a function called with each.
    keep_efs : bool
        Keep the energy/forces/stress of the evaluation on the kept copies.
    mtp : MTP, optional
        The potential of the simulation (checked against the active set's).
    weighting : str
        Row weighting when loading an ``.als`` path.

    Attributes
    ----------
    max_grade : float
        Largest grade seen since the last :meth:`reset_max`.
    last_grade : float
    evaluations, n_selected : int
    """

    def __init__(self, active_set, threshold=2.0, threshold_break=None, save_selected=None,
                 selected=None, keep_efs=False, mtp=None, weighting="vibrations"):
        self.active_set = load_active_set(active_set, mtp, weighting)
        self.threshold = float(threshold)
        if not self.threshold > 0:
            raise ConfigError(f"extrapolation threshold must be > 0, got {threshold}")
        tb = None if threshold_break is None else float(threshold_break)
        self.threshold_break = tb if tb is not None and tb > 1.0 else None
        self.writer = None if save_selected in (None, "") else PreselectedWriter(save_selected)
        if selected is not None and not (callable(selected) or isinstance(selected, list)):
            raise TypeError("selected must be a list or a callable")
        self.selected = selected
        self.keep_efs = bool(keep_efs)
        self.max_grade = 0.0
        self.last_grade = 0.0
        self.evaluations = 0
        self.n_selected = 0

    @property
    def neighborhood(self):
        """True in neighbourhood mode (per-atom rows)."""
        return self.active_set.weights.neighborhood

    def reset_max(self):
        self.max_grade = 0.0

    def grades(self, cfg, neighbors=None):
        """``(grade, per_atom)`` of a configuration (see the module docstring).

        Parameters
        ----------
        cfg : Configuration
        neighbors : optional
            A neighbour list of ``cfg`` (object with CSR arrays or a tuple
            ``(offsets, index, vectors)``) with cutoff >= the potential's; built if omitted.
        """
        from ..selection.rows import configuration_rows

        n = len(cfg)
        if n == 0:
            return 0.0, np.zeros(0)
        aset = self.active_set
        rows = configuration_rows(aset.mtp, cfg, aset.weights, neighbors=neighbors)
        g, _ = aset.maxvol.grades(rows)
        grade = float(g.max()) if g.size else 0.0
        if self.neighborhood:
            per_atom = np.array(g[:n])
        else:
            per_atom = np.full(n, grade)
        return grade, per_atom

    def check(self, cfg, neighbors=None, grade=None):
        """Grade ``cfg``, keep it if above the threshold, raise if above the break.

        Parameters
        ----------
        cfg : Configuration
            The evaluated configuration (its EFS, if any, are kept on the copy only with
            ``keep_efs``).
        neighbors : optional
            Neighbour list of ``cfg`` (see :meth:`grades`).
        grade : float, optional
            An already computed grade (then nothing is recomputed).

        Returns
        -------
        float
            The grade.

        Raises
        ------
        ExtrapolationError
            When ``threshold_break`` is set and the grade exceeds it.
        """
        if grade is None:
            grade, _ = self.grades(cfg, neighbors)
        self.note(cfg, grade)
        return grade

    def note(self, cfg, grade):
        """Record a graded configuration (keep / break), see :meth:`check`."""
        from ..selection.active_set import format_grade

        grade = float(grade)
        self.evaluations += 1
        self.last_grade = grade
        if grade > self.max_grade:
            self.max_grade = grade
        if grade > self.threshold:
            kept = cfg.copy()
            if not self.keep_efs:
                kept.clear_efs()
                kept.site_energies = None
            kept.features["MV_grade"] = format_grade(grade)
            self.n_selected += 1
            if self.writer is not None:
                self.writer.add(kept)
            if isinstance(self.selected, list):
                self.selected.append(kept)
            elif self.selected is not None:
                self.selected(kept)
        if self.threshold_break is not None and grade > self.threshold_break:
            raise ExtrapolationError(
                grade, self.threshold_break,
                "Breaking threshold exceeded (MV-grade: %f)" % grade)

    def flush(self):
        """Write buffered preselected configurations to the file (if any)."""
        if self.writer is not None:
            self.writer.flush()
