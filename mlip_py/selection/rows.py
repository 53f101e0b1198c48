"""Rows of the maxvol matrix contributed by one configuration (mlip-formats.md §5.1).

The active set (:mod:`mlip_py.selection.active_set`) measures how well a configuration is
covered by the training data through *rows*: vectors of length ``n`` (the number of MTP
parameters, layout ``theta = [radial (C, C, K, R) | species (C) | moment (S)]``).  Which
rows a configuration contributes is set by the selection weights (MLIP-2's options
``--energy-weight``, ``--force-weight``, ``--stress-weight``, ``--nbh-weight`` and
``--weighting``), stored in :class:`RowWeights`.

Row kinds (``N`` = number of atoms)
-----------------------------------
* **Configuration rows** (default: energy weight 1, the others 0): one row
  ``w_e * dE/dtheta / N``, for ``weighting`` ``vibrations`` and ``structures``, and
  ``w_e * dE/dtheta`` for ``molecules`` (MLIP-2's energy-only branch).
* **Neighbourhood rows** (``nbh`` weight != 0): one row per atom, the site-energy
  gradient ``dV_i/dtheta``.  As in MLIP-2 the rows are *not* scaled by the weight: a
  non-zero ``nbh`` weight only switches them on.
* **EFS rows** (force or stress weight != 0): from the explicit Jacobians,
  the energy row ``w_e * dE/dtheta * s_e``, the ``3N`` force rows
  ``w_f * dF_ia/dtheta * s_f`` (atom-major, ``x y z``) and the 9 rows of the full
  virial ``w_s * dS_ab/dtheta * s_s`` (row-major ``a, b``) with the factors of MLIP-2:

  ============ ========= ========= =========
  weighting    ``s_e``   ``s_f``   ``s_s``
  ============ ========= ========= =========
  vibrations   1/N       1         1/N
  structures   1/N^2     1/N       1/N^2
  molecules    1         1         1
  ============ ========= ========= =========

  Groups whose weight is zero are left out (a zero row has grade 0 and can never enter
  the active set, so this changes nothing but the cost).  Unlike MLIP-2's
  ``CalcEFSGrads`` the energy row is the true gradient (MLIP-2 accumulates it once per
  neighbour, see the reference notes); this branch is unused in practice.

If both neighbourhood rows and configuration/EFS rows are switched on, the
configuration contributes both kinds (neighbourhood rows first).  A configuration with
no atoms contributes no rows (its grade is 0).

The grade of a configuration is the max grade of its rows, so every function here
returns the rows of one configuration as a C-contiguous ``(k, n)`` float64 array.
:class:`RowFunction` computes the same rows, bit for bit, with less work per call (for
loops over many configurations: the kernels are called directly, without the
validation and temporaries of the :class:`~mlip_py.potential.mtp.MTP` wrappers).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..errors import ConfigError

__all__ = ["RowFunction", "RowWeights", "WEIGHTINGS", "configuration_rows",
           "rows_per_configuration"]

#: accepted values of ``--weighting``
WEIGHTINGS = ("vibrations", "molecules", "structures")


def _weight(name, value):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--{name}-weight: expected a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ConfigError(f"--{name}-weight: expected a finite number, got {value!r}")
    return v


@dataclasses.dataclass(frozen=True, slots=True)
class RowWeights:
    """Selection weights: which maxvol rows a configuration contributes.

    Attributes
    ----------
    energy, force, stress, nbh : float
        MLIP-2's ``--energy-weight`` (1), ``--force-weight`` (0), ``--stress-weight``
        (0) and ``--nbh-weight`` (0).
    weighting : str
        ``vibrations`` (default), ``molecules`` or ``structures``.
    """

    energy: float = 1.0
    force: float = 0.0
    stress: float = 0.0
    nbh: float = 0.0
    weighting: str = "vibrations"

    def __post_init__(self):
        for name in ("energy", "force", "stress", "nbh"):
            object.__setattr__(self, name, _weight(name, getattr(self, name)))
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(f"--weighting: expected one of {', '.join(WEIGHTINGS)}, "
                              f"got {self.weighting!r}")
        if self.energy == 0.0 and self.force == 0.0 and self.stress == 0.0 and self.nbh == 0.0:
            raise ConfigError("all selection weights (--energy-weight, --force-weight, "
                              "--stress-weight, --nbh-weight) are zero: no maxvol rows")

    # ---------------------------------------------------------------- modes
    @property
    def neighborhood(self):
        """True when per-atom (site-energy) rows are used."""
        return self.nbh != 0.0

    @property
    def efs(self):
        """True when force/stress rows are used (explicit Jacobians)."""
        return self.force != 0.0 or self.stress != 0.0

    @property
    def configuration(self):
        """True when the single energy row per configuration is used."""
        return self.energy != 0.0 and not self.efs

    # ------------------------------------------------------------ .als file
    def als_dict(self):
        """The four weights as stored in an ``.als`` file (see :mod:`mlip_py.io.als`)."""
        return {"nbh": self.nbh, "energy": self.energy, "force": self.force,
                "stress": self.stress}

    @classmethod
    def from_als(cls, weights, weighting="vibrations"):
        """Weights read from an ``.als`` file (the weighting is not stored there)."""
        return cls(energy=weights["energy"], force=weights["force"], stress=weights["stress"],
                   nbh=weights["nbh"], weighting=weighting)

    def same_rows(self, other):
        """True when ``other`` produces the same rows (same weights and weighting)."""
        return (self.energy, self.force, self.stress, self.nbh, self.weighting) == (
            other.energy, other.force, other.stress, other.nbh, other.weighting)


def rows_per_configuration(weights, n_atoms):
    """Number of rows a configuration of ``n_atoms`` atoms contributes."""
    if n_atoms == 0:
        return 0
    k = n_atoms if weights.neighborhood else 0
    if weights.efs:
        k += (weights.energy != 0.0) + 3 * n_atoms * (weights.force != 0.0) \
            + 9 * (weights.stress != 0.0)
    elif weights.energy != 0.0:
        k += 1
    return k


def configuration_rows(mtp, cfg, weights, neighbors=None, num_threads=None):
    """The maxvol rows of one configuration.

    Parameters
    ----------
    mtp : mlip_py.potential.mtp.MTP
    cfg : Configuration
    weights : RowWeights
    neighbors : optional
        A neighbour list of ``cfg`` (built with cutoff ``mtp.cutoff`` when omitted).
    num_threads : int, optional
        OpenMP threads of the kernels (default: the MTP's setting).

    Returns
    -------
    ndarray, shape (k, n)
        ``k = rows_per_configuration(weights, len(cfg))`` rows (see the module docstring).

    Raises
    ------
    MlipError
        When an atom type is not covered by the potential.
    """
    n_atoms = len(cfg)
    npar = mtp.n_params
    k = rows_per_configuration(weights, n_atoms)
    if k == 0:
        return np.empty((0, npar))
    if not weights.efs and neighbors is None:
        return RowFunction(mtp, weights, num_threads)(cfg)
    out = np.empty((k, npar))
    mtp.check_types(cfg.types)
    if neighbors is None:
        neighbors = mtp.neighbors(cfg)
    pos = 0
    if weights.neighborhood:
        out[:n_atoms] = mtp.site_energy_gradients(cfg, neighbors=neighbors,
                                                  num_threads=num_threads)
        pos = n_atoms
    if weights.efs:
        de, df, dv = mtp.efs_jacobian(cfg, neighbors=neighbors, full_virial=True)
        if weights.weighting == "vibrations":
            se, sf, ss = 1.0 / n_atoms, 1.0, 1.0 / n_atoms
        elif weights.weighting == "structures":
            se, sf, ss = 1.0 / n_atoms ** 2, 1.0 / n_atoms, 1.0 / n_atoms ** 2
        else:
            se = sf = ss = 1.0
        if weights.energy != 0.0:
            np.multiply(de, weights.energy * se, out=out[pos])
            pos += 1
        if weights.force != 0.0:
            np.multiply(df.reshape(3 * n_atoms, npar), weights.force * sf,
                        out=out[pos:pos + 3 * n_atoms])
            pos += 3 * n_atoms
        if weights.stress != 0.0:
            np.multiply(dv.reshape(9, npar), weights.stress * ss, out=out[pos:pos + 9])
            pos += 9
    elif weights.energy != 0.0:
        g = mtp.energy_gradient(cfg, neighbors=neighbors, num_threads=num_threads)
        scale = weights.energy if weights.weighting == "molecules" else weights.energy / n_atoms
        np.multiply(g, scale, out=out[pos])
        pos += 1
    assert pos == k
    return out


class RowFunction:
    """``rows = f(cfg)``: :func:`configuration_rows` of many configurations, lean.

    Same rows, bit for bit, as ``configuration_rows(mtp, cfg, weights,
    num_threads=num_threads)``: the same kernels with the same thread counts and
    summation order.  For neighbourhood and configuration rows (no force/stress rows)
    the kernels are called directly, without the per-call validation and temporaries of
    the :class:`~mlip_py.potential.mtp.MTP` wrappers: the neighbour list comes from
    :func:`~mlip_py.potential.neighbors.csr_for` and atom types are checked by the
    kernel (an error is re-raised worded as :meth:`MTP.check_types` words it).
    Coefficients and ``mtp.num_threads`` are read at every call.

    Parameters
    ----------
    mtp : MTP
    weights : RowWeights
    num_threads : int, optional
        Kernel threads (default: ``mtp.num_threads`` at call time).
    """

    __slots__ = ("mtp", "weights", "num_threads", "_lean", "_npar", "_nbh", "_energy",
                 "_molecules", "_csr")

    def __init__(self, mtp, weights, num_threads=None):
        from ..potential.neighbors import csr_for

        self.mtp = mtp
        self.weights = weights
        self.num_threads = num_threads
        self._lean = not weights.efs
        self._npar = mtp.n_params
        self._nbh = weights.neighborhood
        self._energy = weights.energy
        self._molecules = weights.weighting == "molecules"
        self._csr = csr_for

    def __call__(self, cfg):
        if not self._lean:
            return configuration_rows(self.mtp, cfg, self.weights, num_threads=self.num_threads)
        n_atoms = len(cfg)
        npar = self._npar
        energy = self._energy
        k = (n_atoms if self._nbh else 0) + (energy != 0.0)
        if n_atoms == 0:
            return np.empty((0, npar))
        mtp = self.mtp
        types = cfg.types
        if not (type(types) is np.ndarray and types.dtype == np.int64
                and types.flags.c_contiguous and types.ndim == 1):
            types = np.ascontiguousarray(types, dtype=np.int64).reshape(-1)
        if types.shape[0] != n_atoms:
            raise ValueError(f"neighbour list is for {n_atoms} atoms, configuration has "
                             f"{types.shape[0]}")
        try:
            offsets, index, vectors = self._csr(cfg, mtp.params.max_dist)
        except ConfigError:
            mtp.check_types(types)  # a bad type is reported first, as by the generic path
            raise
        radial, species, moment = mtp._coeffs()
        kernel = mtp.kernel
        threads = mtp.num_threads if self.num_threads is None else int(self.num_threads)
        out = np.zeros((k, npar))
        try:
            if self._nbh:
                kernel.energy_grad(radial, species, moment, types, offsets, index, vectors,
                                   out[:n_atoms] if energy != 0.0 else out, True, threads)
            if energy != 0.0:
                row = out[k - 1:]
                kernel.energy_grad(radial, species, moment, types, offsets, index, vectors,
                                   row, False, threads)
                row *= energy if self._molecules else energy / n_atoms
        except ValueError:
            mtp.check_types(types)  # raises MlipError with MTP's wording for bad types
            raise
        return out

    @property
    def lean(self):
        """True when the rows need no force/stress Jacobians (:meth:`many` batches them)."""
        return self._lean

    def many(self, cfgs, num_threads=1):
        """Rows of each configuration of a list: ``[f(cfg) for cfg in cfgs]``, faster.

        The configurations with 1 to :data:`~mlip_py.potential.neighbors.DIRECT_MAX_ATOMS`
        atoms are evaluated together by one compiled kernel (all-pairs neighbour search,
        then energy-gradient rows: ``Kernel.energy_rows_direct``), in parallel over
        configurations with ``num_threads`` OpenMP threads, each configuration by one
        thread.  Their rows are bit for bit those of ``f(cfg)``, whatever ``num_threads``.
        Every other configuration (and any the kernels decline: a cell that needs the
        cell list, a malformed configuration, an error to report) is evaluated by this
        function, one at a time, in order.

        Returns a list of ``(k, n)`` arrays (views of one block for the batched ones).
        """
        res = [None] * len(cfgs)
        if self._lean and cfgs:
            self._many_direct(cfgs, num_threads, res)
        for k, cfg in enumerate(cfgs):
            if res[k] is None:
                res[k] = self(cfg)
        return res

    def _many_direct(self, cfgs, num_threads, res):
        from ..potential import neighbors as nbmod

        limit = nbmod.DIRECT_MAX_ATOMS
        sel, lats, poss, typs, counts = [], [], [], [], []
        for k, cfg in enumerate(cfgs):
            n = len(cfg)
            if not 0 < n <= limit:
                continue
            lat, pos, typ = cfg.lattice, cfg.positions, cfg.types
            if not (getattr(lat, "shape", None) == (3, 3) and getattr(pos, "shape", None) == (n, 3)
                    and getattr(typ, "shape", None) == (n,)):
                continue  # the one-at-a-time path converts or reports it
            sel.append(k)
            lats.append(lat)
            poss.append(pos)
            typs.append(typ)
            counts.append(n)
        if not sel:
            return
        mtp = self.mtp
        try:
            lat = np.ascontiguousarray(lats, dtype=np.float64)
            pos = np.ascontiguousarray(np.concatenate(poss), dtype=np.float64)
            typ = np.ascontiguousarray(np.concatenate(typs), dtype=np.int64)
        except (TypeError, ValueError):
            return
        if typ.min() < 0 or typ.max() >= mtp.params.species_count:
            return  # reported, worded as usual, by the one-at-a-time path
        b = len(sel)
        starts = np.zeros(b + 1, dtype=np.int64)
        np.cumsum(counts, out=starts[1:])
        nrow = np.asarray(counts, dtype=np.int64) if self._nbh else np.zeros(b, dtype=np.int64)
        nrow += self._energy != 0.0
        row_starts = np.zeros(b + 1, dtype=np.int64)
        np.cumsum(nrow, out=row_starts[1:])
        energy = self._energy
        scales = np.full(b, energy) if self._molecules else \
            energy / np.asarray(counts, dtype=np.float64)
        out = np.zeros((int(row_starts[-1]), self._npar))
        status = np.zeros(b, dtype=np.int8)
        radial, species, moment = mtp._coeffs()
        mtp.kernel.energy_rows_direct(radial, species, moment, lat, pos, typ, starts,
                                      nbmod.MAX_IMAGES, scales, out, row_starts, self._nbh,
                                      energy != 0.0, status, max(1, int(num_threads)))
        for j, k in enumerate(sel):
            if not status[j]:
                res[k] = out[row_starts[j]:row_starts[j + 1]]

