"""MTPParams: everything a ``.mtp`` file (MLIP-2 version 1.1.0) holds.

Leaf module (NumPy only).  Parameter vector layout (training and maxvol columns),
length ``n = C*C*K*R + C + S``::

    theta = [radial_coeffs (C, C, K, R) flattened | species_coeffs (C) | moment_coeffs (S)]

with ``C`` species, ``K`` radial functions, ``R`` Chebyshev basis functions and ``S``
scalar moments (basis functions B_1..B_S).  ``radial_coeffs[ti, tj, mu, beta]`` is the
coefficient of Q_beta in f_mu for a central atom of type ti and a neighbour of type tj.
"""
from __future__ import annotations

import dataclasses

import numpy as np

RADIAL_BASIS_TYPES = ("RBChebyshev", "RBChebyshev_repuls")


@dataclasses.dataclass(slots=True, kw_only=True, eq=False)
class MTPParams:
    """A Moment Tensor Potential: hyper-parameters, moment structure and coefficients."""

    potential_name: str = "MTP1m"
    scaling: float = 1.0
    species_count: int = 1
    potential_tag: str = ""
    radial_basis_type: str = "RBChebyshev"
    min_dist: float = 2.0
    max_dist: float = 5.0
    radial_basis_size: int = 8
    radial_funcs_count: int = 1
    #: (C, C, K, R) or None for an untrained potential
    radial_coeffs: np.ndarray | None = None
    alpha_moments_count: int = 1
    #: (n_basic, 4) int: (mu, a, b, c) per basic moment
    alpha_index_basic: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros((1, 4), dtype=np.int64))
    #: (n_times, 4) int: (i0, i1, mult, k): M_k += mult * M_i0 * M_i1, in file order
    alpha_index_times: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros((0, 4), dtype=np.int64))
    #: (S,) int: moment index of basis function B_1..B_S
    alpha_moment_mapping: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros(1, dtype=np.int64))
    #: (C,) or None
    species_coeffs: np.ndarray | None = None
    #: (S,) or None
    moment_coeffs: np.ndarray | None = None

    def __post_init__(self):
        self.alpha_index_basic = np.asarray(self.alpha_index_basic, dtype=np.int64).reshape(-1, 4)
        self.alpha_index_times = np.asarray(self.alpha_index_times, dtype=np.int64).reshape(-1, 4)
        self.alpha_moment_mapping = np.asarray(self.alpha_moment_mapping, dtype=np.int64).reshape(-1)
        if self.radial_coeffs is not None:
            self.radial_coeffs = np.asarray(self.radial_coeffs, dtype=np.float64).reshape(
                self.species_count, self.species_count, self.radial_funcs_count,
                self.radial_basis_size)
        if self.species_coeffs is not None:
            self.species_coeffs = np.asarray(self.species_coeffs, dtype=np.float64).reshape(
                self.species_count)
        if self.moment_coeffs is not None:
            self.moment_coeffs = np.asarray(self.moment_coeffs, dtype=np.float64).reshape(
                len(self.alpha_moment_mapping))

    # ----------------------------------------------------------------- sizes
    @property
    def alpha_scalar_moments(self):
        """S, the number of basis functions B_1..B_S."""
        return len(self.alpha_moment_mapping)

    @property
    def cutoff(self):
        """r_cut = max_dist."""
        return self.max_dist

    @property
    def is_trained(self):
        """True when the file carried radial, species and moment coefficients."""
        return (self.radial_coeffs is not None and self.species_coeffs is not None
                and self.moment_coeffs is not None)

    @property
    def n_radial_params(self):
        c = self.species_count
        return c * c * self.radial_funcs_count * self.radial_basis_size

    @property
    def n_params(self):
        """Length of the parameter vector theta."""
        return self.n_radial_params + self.species_count + self.alpha_scalar_moments

    # ------------------------------------------------------------- defaults
    def init_default_coeffs(self):
        """Set MLIP-2's loader defaults for an untrained potential (mlip-formats.md §3.1).

        Radial coefficients 1e-6 except flat index ``min(mu, R)`` of each radial function
        = 1e-3 (not clipped to R-1: for mu >= R it lands in the next function's first
        coefficient, as in the original); species and moment coefficients 1e-3.
        """
        c, k, r = self.species_count, self.radial_funcs_count, self.radial_basis_size
        flat = np.full(c * c * k * r, 1e-6)
        for pair in range(c * c):
            for mu in range(k):
                idx = (pair * k + mu) * r + min(mu, r)
                if idx < flat.size:
                    flat[idx] = 1e-3
        self.radial_coeffs = flat.reshape(c, c, k, r)
        self.species_coeffs = np.full(c, 1e-3)
        self.moment_coeffs = np.full(self.alpha_scalar_moments, 1e-3)

    # ------------------------------------------------------ parameter vector
    def get_params(self):
        """theta as a new 1-D array (see module docstring)."""
        if not self.is_trained:
            raise ValueError("potential has no coefficients; call init_default_coeffs() first")
        return np.concatenate([self.radial_coeffs.ravel(), self.species_coeffs, self.moment_coeffs])

    def set_params(self, theta):
        """Set radial, species and moment coefficients from theta."""
        theta = np.asarray(theta, dtype=np.float64).ravel()
        if theta.size != self.n_params:
            raise ValueError(f"expected {self.n_params} parameters, got {theta.size}")
        nr, c = self.n_radial_params, self.species_count
        self.radial_coeffs = theta[:nr].reshape(
            c, c, self.radial_funcs_count, self.radial_basis_size).copy()
        self.species_coeffs = theta[nr:nr + c].copy()
        self.moment_coeffs = theta[nr + c:].copy()

    def copy(self):
        """Deep copy."""
        kw = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            kw[f.name] = v.copy() if isinstance(v, np.ndarray) else v
        return MTPParams(**kw)
