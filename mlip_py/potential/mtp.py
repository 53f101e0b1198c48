"""The Moment Tensor Potential evaluated exactly as MLIP-2 does (mlip-formats.md §3.3).

:class:`MTP` wraps an :class:`~mlip_py.potential.params.MTPParams`, validates inputs,
allocates outputs and calls the compiled kernels of :mod:`mlip_py._cext._mtp`.

Conventions
-----------
* Energy ``E = sum_i V_i`` (eV); forces ``F = -dE/dr`` (eV/A), accumulated as
  ``F_i += dV_i/dr_ij``, ``F_j -= dV_i/dr_ij`` (§1.6).
* ``plus_stress`` (6,) is MLIP-2's PlusStress virial in eV, order ``xx yy zz yz xz xy``:
  ``S_ab = -sum_ij (dV_i/dr_ij)_a (r_ij)_b = -dE/d(eps_ab)`` (positive under compression).
  It is computed (and meaningful as a virial) for non-periodic configurations too.
* Parameter vector ``theta = [radial (C, C, K, R) | species (C) | moment (S)]``, length
  ``n = params.n_params`` (see :mod:`mlip_py.potential.params`).
* Neighbour lists: any object with CSR arrays ``offsets`` (N+1,), ``index`` (M,) and
  ``vectors`` (M, 3) (e.g. :func:`mlip_py.potential.neighbors.build_neighbors`), or a tuple
  ``(offsets, index, vectors)``; pairs at or beyond ``max_dist`` are ignored, so a list
  built with a skin can be reused.  Without one, a list is built with cutoff ``max_dist``.
* Threads: ``num_threads`` (None or <= 0: the OpenMP default, i.e. ``OMP_NUM_THREADS``).
  Results do not depend on the thread count, except for the summation order of
  :meth:`MTP.loss_gradient`.
"""
from __future__ import annotations

import os

import numpy as np

from .._cext import load
from ..errors import ConfigError, MlipError
from .params import RADIAL_BASIS_TYPES, MTPParams

_mtp = load("_mtp")

VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


class MTP:
    """A Moment Tensor Potential ready for evaluation.

    Parameters
    ----------
    potential : MTPParams, str or path
        The potential (a path is read with :func:`mlip_py.io.mtp.read_mtp`).  An untrained
        potential (no coefficients) gets MLIP-2's loader defaults
        (:meth:`MTPParams.init_default_coeffs`) on a copy.
    num_threads : int, optional
        OpenMP threads of the kernels (None: OpenMP default).
    """

    def __init__(self, potential, num_threads=None):
        if isinstance(potential, MTPParams):
            params = potential
        elif isinstance(potential, (str, os.PathLike)):
            from ..io.mtp import read_mtp

            params = read_mtp(potential)
        else:
            raise TypeError(f"expected MTPParams or a path, got {type(potential).__name__}")
        if not params.is_trained:
            params = params.copy()
            params.init_default_coeffs()
        if params.radial_basis_type not in RADIAL_BASIS_TYPES:
            raise ConfigError(f"radial basis type {params.radial_basis_type!r} is not supported "
                              f"(supported: {', '.join(RADIAL_BASIS_TYPES)})")
        self.params = params
        self.num_threads = 0 if num_threads is None else int(num_threads)
        self.kernel = _mtp.Kernel(
            params.species_count, params.radial_funcs_count, params.radial_basis_size,
            params.alpha_moments_count, params.alpha_index_basic, params.alpha_index_times,
            params.alpha_moment_mapping, params.min_dist, params.max_dist, params.scaling,
            params.radial_basis_type == "RBChebyshev_repuls")
        self._sync()

    # ------------------------------------------------------------- coefficients
    def _sync(self):
        p = self.params
        self._radial = np.ascontiguousarray(p.radial_coeffs, dtype=np.float64).reshape(-1)
        self._species = np.ascontiguousarray(p.species_coeffs, dtype=np.float64)
        self._moment = np.ascontiguousarray(p.moment_coeffs, dtype=np.float64)

    @property
    def n_params(self):
        """Length of theta."""
        return self.params.n_params

    @property
    def cutoff(self):
        return self.params.max_dist

    def get_params(self):
        """theta (copy)."""
        return self.params.get_params()

    def set_params(self, theta):
        """Replace all coefficients by theta (the structure is unchanged)."""
        self.params.set_params(theta)
        self._sync()

    def update_coeffs(self):
        """Re-read the coefficients after ``self.params`` was modified in place."""
        self._sync()

    # ---------------------------------------------------------------- helpers
    def _threads(self, num_threads):
        return self.num_threads if num_threads is None else int(num_threads)

    def check_types(self, types):
        """Raise MlipError when a type is negative or >= species_count."""
        types = np.asarray(types)
        if types.size == 0:
            return
        tmax, tmin = int(types.max()), int(types.min())
        c = self.params.species_count
        if tmax >= c:
            raise MlipError(f"Too few species count in the MTP potential! The configuration has "
                            f"type {tmax} but the potential has {c} species (types 0..{c - 1})")
        if tmin < 0:
            raise MlipError(f"negative atom type {tmin} in the configuration")

    def neighbors(self, cfg):
        """Neighbour list of a configuration with cutoff max_dist."""
        from .neighbors import build_neighbors

        return build_neighbors(cfg.lattice, cfg.positions, cfg.pbc, self.params.max_dist)

    def _arrays(self, cfg, neighbors):
        types = np.ascontiguousarray(cfg.types, dtype=np.int64)
        self.check_types(types)
        if neighbors is None:
            neighbors = self.neighbors(cfg)
        offsets, index, vectors = _csr(neighbors)
        if len(offsets) != len(types) + 1:
            raise ValueError(f"neighbour list is for {len(offsets) - 1} atoms, "
                             f"configuration has {len(types)}")
        return types, offsets, index, vectors

    def _coeffs(self):
        return self._radial, self._species, self._moment

    # ------------------------------------------------------------- evaluation
    def calc_efs_arrays(self, types, offsets, index, vectors, num_threads=None):
        """Energy, forces, PlusStress and site energies from raw arrays.

        Parameters
        ----------
        types : (N,) int
        offsets, index, vectors : CSR neighbour list (see module docstring)

        Returns
        -------
        energy : float
        forces : (N, 3)
        plus_stress : (6,) xx yy zz yz xz xy
        site_energies : (N,)
        """
        types = np.ascontiguousarray(types, dtype=np.int64)
        self.check_types(types)
        offsets, index, vectors = _csr((offsets, index, vectors))
        n, m = len(types), len(index)
        site = np.zeros(n)
        dvdr = np.zeros((m, 3))
        self.kernel.efs(*self._coeffs(), types, offsets, index, vectors, site, dvdr,
                        self._threads(num_threads))
        forces = np.zeros((n, 3))
        virial = np.zeros((3, 3))
        _mtp.accumulate_forces(offsets, index, vectors, dvdr, forces, virial)
        stress = np.array([virial[a, b] for a, b in VOIGT])
        return float(site.sum()), forces, stress, site

    def calc_efs(self, cfg, neighbors=None, num_threads=None):
        """``(energy, forces (N, 3), plus_stress (6,), site_energies (N,))`` of a configuration."""
        types, offsets, index, vectors = self._arrays(cfg, neighbors)
        return self.calc_efs_arrays(types, offsets, index, vectors, num_threads)

    def calc_efs_cfg(self, cfg, neighbors=None, num_threads=None):
        """A copy of ``cfg`` with energy, forces, plus_stress and site_energies set."""
        e, f, s, site = self.calc_efs(cfg, neighbors, num_threads)
        out = cfg.copy()
        out.energy, out.forces, out.plus_stress, out.site_energies = e, f, s, site
        return out

    def basis(self, cfg, neighbors=None, num_threads=None):
        """Basis values ``B_1..B_S`` per atom, (N, S) (``B_0 = 1`` is implicit).

        ``V_i = species[t_i] + basis[i] @ moment_coeffs`` (plus the repulsive pair term of
        RBChebyshev_repuls, which has no coefficient).
        """
        types, offsets, index, vectors = self._arrays(cfg, neighbors)
        out = np.zeros((len(types), self.params.alpha_scalar_moments))
        self.kernel.basis(self._radial, types, offsets, index, vectors, out,
                          self._threads(num_threads))
        return out

    def basis_efs(self, cfg, neighbors=None, num_threads=None, full_virial=False):
        """Energy, forces and PlusStress of every basis function, in one pass.

        ``E_alpha = sum_i B_alpha(i)`` for alpha = 1..S: the energy of the potential with
        ``moment_coeffs = e_alpha`` and zero species coefficients (without the
        repulsive pair term of RBChebyshev_repuls).  Forces and stress follow the
        conventions of :meth:`calc_efs`; the result does not depend on the thread count.

        Returns
        -------
        energy : (S,)
        forces : (S, N, 3)
        stress : (S, 6) PlusStress order xx yy zz yz xz xy, or (S, 3, 3) with
            ``full_virial=True``.
        """
        types, offsets, index, vectors = self._arrays(cfg, neighbors)
        s, n = self.params.alpha_scalar_moments, len(types)
        e = np.empty(s)
        f = np.empty((s, n, 3))
        v = np.empty((s, 3, 3))
        self.kernel.basis_efs(self._radial, types, offsets, index, vectors, e, f, v,
                              self._threads(num_threads))
        if full_virial:
            return e, f, v
        return e, f, np.stack([v[:, a, b] for a, b in VOIGT], axis=1)

    def energy_gradient(self, cfg, neighbors=None, num_threads=None):
        """dE/dtheta, (n,); the same bits for any number of threads (block-ordered sum)."""
        types, offsets, index, vectors = self._arrays(cfg, neighbors)
        out = np.zeros((1, self.n_params))
        self.kernel.energy_grad(*self._coeffs(), types, offsets, index, vectors, out, False,
                                self._threads(num_threads))
        return out[0]

    def site_energy_gradients(self, cfg, neighbors=None, num_threads=None):
        """dV_i/dtheta for every atom, (N, n)."""
        types, offsets, index, vectors = self._arrays(cfg, neighbors)
        out = np.zeros((len(types), self.n_params))
        self.kernel.energy_grad(*self._coeffs(), types, offsets, index, vectors, out, True,
                                self._threads(num_threads))
        return out

    def efs_jacobian(self, cfg, neighbors=None, full_virial=False):
        """Explicit Jacobians w.r.t. theta (serial; meant for small configurations).

        Returns
        -------
        d_energy : (n,)
        d_forces : (N, 3, n)
        d_stress : (6, n) PlusStress order xx yy zz yz xz xy, or (3, 3, n) with
            ``full_virial=True``.
        """
        types, offsets, index, vectors = self._arrays(cfg, neighbors)
        n, npar = len(types), self.n_params
        de = np.zeros(npar)
        df = np.zeros((n, 3, npar))
        dv = np.zeros((9, npar))
        self.kernel.efs_jacobian(*self._coeffs(), types, offsets, index, vectors, de, df, dv)
        dv = dv.reshape(3, 3, npar)
        if full_virial:
            return de, df, dv
        return de, df, np.array([dv[a, b] for a, b in VOIGT])

    def loss_gradient(self, cfg, dl_de=0.0, dl_df=None, dl_ds=None, neighbors=None,
                      num_threads=None):
        """dL/dtheta of a loss L(E, F, PlusStress) from its adjoints.

        Parameters
        ----------
        dl_de : float
            dL/dE.
        dl_df : (N, 3), optional
            dL/dF.
        dl_ds : (6,) or (3, 3), optional
            dL/dS for the 6-vector ``xx yy zz yz xz xy`` or for the full (3, 3) virial.

        Returns
        -------
        (n,) array
        """
        types, offsets, index, vectors = self._arrays(cfg, neighbors)
        n = len(types)
        dl_df = np.zeros((n, 3)) if dl_df is None else np.ascontiguousarray(dl_df, dtype=float)
        sig = np.zeros((3, 3))
        if dl_ds is not None:
            dl_ds = np.asarray(dl_ds, dtype=float)
            if dl_ds.shape == (6,):
                for q, (a, b) in enumerate(VOIGT):
                    if a == b:
                        sig[a, a] = dl_ds[q]
                    else:
                        sig[a, b] = sig[b, a] = 0.5 * dl_ds[q]
            else:
                sig = np.ascontiguousarray(dl_ds.reshape(3, 3))
        nt = _mtp.threads_for(self._threads(num_threads), n)
        out = np.zeros((nt, self.n_params))
        self.kernel.loss_grad(*self._coeffs(), types, offsets, index, vectors, float(dl_de),
                              dl_df.reshape(n, 3), sig, out, nt)
        return out.sum(axis=0)


def _csr(neighbors):
    if isinstance(neighbors, tuple):
        offsets, index, vectors = neighbors
    else:
        offsets, index, vectors = neighbors.offsets, neighbors.index, neighbors.vectors
    return (np.ascontiguousarray(offsets, dtype=np.int64),
            np.ascontiguousarray(index, dtype=np.int64),
            np.ascontiguousarray(vectors, dtype=np.float64).reshape(-1, 3))
