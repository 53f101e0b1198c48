"""The training loss of ``mlp train`` (mlip-formats.md §4.1) and its exact gradient.

For a configuration with N atoms, energy E, forces F_i and the full (3, 3) PlusStress
virial S (all nine components, as computed, not symmetrised)::

    L_cfg = ce * (E - E_ref)^2 + sum_i wf_i |F_i - F_ref,i|^2 + cs * ||S - S_ref||_F^2
            + 1e-9 * P(c)

with, by ``weighting``:

==============  ===============  =================  ================
weighting       ce               wf_i               cs
==============  ===============  =================  ================
vibrations      w_e / N          w_f                w_s / N
structures      w_e / N^2        w_f / N            w_s / N^2
molecules       w_e              w_f                w_s
==============  ===============  =================  ================

``scale_by_force = s > 0`` multiplies wf_i by ``s / (|F_ref,i|^2 + s)`` (before the
structures division).  A term is present only when the configuration has that reference
quantity and its weight is non-zero.  ``P(c) = sum_mu (|c_mu|^2 - 1)^2 +
sum_{mu1 < mu2} (c_mu1 . c_mu2)^2`` (c_mu = all C*C*R coefficients of radial function mu)
is added once per non-empty configuration.  The loss is the mean over all
configurations (empty ones count in the denominator but contribute nothing), summed over
MPI ranks.

Evaluation strategy (per loss+gradient call):

1. one EFS kernel call over the *merged* neighbour lists of all local configurations
   (OpenMP over all atoms), then per-configuration force/virial accumulation;
2. residuals and adjoints dL/dE, dL/dF, dL/dS vectorised over the whole set;
3. one ``loss_grad`` kernel call per configuration (the adjoints dL/dE and dL/dS differ
   per configuration; serial inside, so each configuration's gradient is a fixed
   function of its data), spread over ``num_threads`` Python worker threads (the kernel
   releases the GIL), each configuration writing its own row;
4. the loss terms and gradient rows are summed per block of configurations
   (:data:`~mlip_py.training.parallel.BLOCK_SIZE`, in configuration order), and the
   blocks in block order over all MPI ranks (:meth:`ordered_sum`), so the result does not
   depend on the number of threads or ranks;
5. the penalty and its gradient (plain floating-point loops, tiny) are added once,
   multiplied by the global number of non-empty configurations.

Neighbour lists are built once (:class:`TrainingData`): they depend only on the
positions and the cutoff ``max_dist``, never on the parameters.
"""
from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import ConfigError
from ..potential.mtp import _mtp

WEIGHTINGS = ("vibrations", "molecules", "structures")
#: weight of the radial orthonormality penalty (``wgt_eqtn_constr`` of mlp train)
PENALTY_WEIGHT = 1e-9


@dataclasses.dataclass
class LossWeights:
    """Weights of the loss terms (the ``mlp train`` options of the same names)."""

    energy: float = 1.0
    force: float = 0.01
    stress: float = 0.001
    weighting: str = "vibrations"
    scale_by_force: float = 0.0

    def __post_init__(self):
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(f"--weighting should be one of {', '.join(WEIGHTINGS)}, "
                              f"not {self.weighting!r}")


class TrainingData:
    """Configurations with neighbour lists, prepared once for many evaluations.

    Parameters
    ----------
    cfgs : list of Configuration
        This rank's configurations (empty ones are counted but skipped).
    cutoff : float
        Neighbour cutoff (the potential's ``max_dist``).

    Attributes
    ----------
    n_total : int
        Number of configurations given, including empty ones.
    n_cfg : int
        Number of non-empty configurations K (the rows of the per-configuration arrays).
    natoms, atom_start, pair_start : arrays
        Atoms per configuration; CSR starts of atoms and pairs in the merged arrays.
    local : list of tuple
        Per configuration ``(types, offsets, index, vectors)`` with local atom indices.
    types, offsets, index, vectors : arrays
        The merged system (global atom indices).
    has_energy, has_forces, has_stress : (K,) bool
    energy_ref : (K,), forces_ref : (N_total, 3), stress_ref : (K, 3, 3)
        References (zeros where missing).
    """

    def __init__(self, cfgs, cutoff):
        from ..potential.neighbors import build_neighbors

        self.n_total = len(cfgs)
        self.position = np.array([q for q, c in enumerate(cfgs) if len(c) > 0], dtype=np.int64)
        self._layout = None
        self.cfgs = [c for c in cfgs if len(c) > 0]
        self.cutoff = float(cutoff)
        k = len(self.cfgs)
        self.n_cfg = k
        self.natoms = np.array([len(c) for c in self.cfgs], dtype=np.int64)
        self.local = []
        pair_counts = []
        for c in self.cfgs:
            nb = build_neighbors(c.lattice, c.positions, c.pbc, self.cutoff)
            arrs = (np.ascontiguousarray(c.types, dtype=np.int64),
                    np.ascontiguousarray(nb.offsets, dtype=np.int64),
                    np.ascontiguousarray(nb.index, dtype=np.int64),
                    np.ascontiguousarray(nb.vectors, dtype=np.float64).reshape(-1, 3))
            self.local.append(arrs)
            pair_counts.append(len(arrs[2]))
        self.atom_start = np.concatenate([[0], np.cumsum(self.natoms)]).astype(np.int64)
        self.pair_start = np.concatenate([[0], np.cumsum(pair_counts)]).astype(np.int64)
        self.n_atoms = int(self.atom_start[-1])
        self.n_pairs = int(self.pair_start[-1])
        if k:
            self.types = np.concatenate([a[0] for a in self.local])
            self.offsets = np.concatenate(
                [[0]] + [a[1][1:] + p0 for a, p0 in zip(self.local, self.pair_start[:-1])]
            ).astype(np.int64)
            self.index = np.concatenate(
                [a[2] + a0 for a, a0 in zip(self.local, self.atom_start[:-1])]).astype(np.int64)
            self.vectors = np.ascontiguousarray(np.concatenate([a[3] for a in self.local]))
        else:
            self.types = np.zeros(0, dtype=np.int64)
            self.offsets = np.zeros(1, dtype=np.int64)
            self.index = np.zeros(0, dtype=np.int64)
            self.vectors = np.zeros((0, 3))
        self.has_energy = np.array([c.energy is not None for c in self.cfgs], dtype=bool)
        self.has_forces = np.array([c.forces is not None for c in self.cfgs], dtype=bool)
        self.has_stress = np.array([c.plus_stress is not None for c in self.cfgs], dtype=bool)
        self.energy_ref = np.array([c.energy if c.energy is not None else 0.0
                                    for c in self.cfgs], dtype=np.float64)
        self.forces_ref = np.zeros((self.n_atoms, 3))
        self.stress_ref = np.zeros((k, 3, 3))
        for q, c in enumerate(self.cfgs):
            if c.forces is not None:
                self.forces_ref[self.atom_start[q]:self.atom_start[q + 1]] = c.forces
            if c.plus_stress is not None:
                self.stress_ref[q] = c.plus_stress_matrix()
        # configuration of each atom
        self.atom_cfg = np.repeat(np.arange(k), self.natoms)

    def block_layout(self, comm):
        """Reduction blocks of the non-empty configurations (collective, cached).

        Returns
        -------
        blocks : (K,) int array
            Global block number of each non-empty configuration (non-decreasing).
        n_blocks : int
            Number of blocks over all ranks (empty configurations count).
        """
        from .parallel import block_layout

        key = (comm.size, comm.rank)
        if self._layout is None or self._layout[0] != key:
            blocks, n_blocks = block_layout(self.n_total, comm)
            index = comm.global_indices(self.n_total)[self.position]
            self._layout = (key, blocks[self.position], n_blocks, index)
        return self._layout[1], self._layout[2]

    def global_index(self, comm):
        """Global configuration numbers (file order) of the non-empty configurations."""
        self.block_layout(comm)
        return self._layout[3]

    def block_range(self, comm, b):
        """``(q0, q1)``: the non-empty configurations of block ``b`` are q0 .. q1-1."""
        blocks, _ = self.block_layout(comm)
        return (int(np.searchsorted(blocks, b, "left")),
                int(np.searchsorted(blocks, b, "right")))

    def check_types(self, species_count):
        """Raise MlipError if an atom type is not covered by the potential."""
        from ..errors import MlipError

        if self.n_atoms and int(self.types.max()) >= species_count:
            raise MlipError(f"Too few species count in the MTP potential! The training set has "
                            f"type {int(self.types.max())} but the potential has "
                            f"{species_count} species")
        if self.n_atoms and int(self.types.min()) < 0:
            raise MlipError("negative atom type in the training set")

    def min_dist(self):
        """Smallest interatomic distance over the set (inf without pairs)."""
        if not self.n_pairs:
            return float("inf")
        return float(np.sqrt(np.min(np.einsum("pa,pa->p", self.vectors, self.vectors))))

    def partition(self, parts, q0=0, q1=None):
        """Split configurations q0 .. q1-1 into ``parts`` contiguous groups of similar work."""
        q1 = self.n_cfg if q1 is None else q1
        if parts <= 1 or q1 - q0 <= 1:
            return [np.arange(q0, q1)]
        work = (self.pair_start[q0 + 1:q1 + 1] + self.atom_start[q0 + 1:q1 + 1]
                - self.pair_start[q0] - self.atom_start[q0])
        bounds = np.searchsorted(work, np.linspace(0, work[-1], parts + 1)[1:-1])
        groups = np.split(np.arange(q0, q1), bounds)
        return [g for g in groups if len(g)]


def efs_merged(mtp, data, radial=None, species=None, moment=None, num_threads=1,
               buffers=None):
    """Energies (K,), forces (N_total, 3) and full virials (K, 3, 3) of all configurations.

    Coefficients default to the MTP's current ones.  One kernel call over the merged
    neighbour lists, then per-configuration accumulation (MLIP-2's order: atom by atom,
    neighbour by neighbour).
    """
    r0, s0, m0 = mtp._coeffs()
    radial = r0 if radial is None else radial
    species = s0 if species is None else species
    moment = m0 if moment is None else moment
    if buffers is None:
        site = np.empty(data.n_atoms)
        dvdr = np.empty((data.n_pairs, 3))
    else:
        site, dvdr = buffers
    forces = np.zeros((data.n_atoms, 3))
    virial = np.zeros((data.n_cfg, 3, 3))
    if data.n_atoms:
        mtp.kernel.efs(radial, species, moment, data.types, data.offsets, data.index,
                       data.vectors, site, dvdr, int(num_threads))
    acc = _mtp.accumulate_forces
    for q, (types, offsets, index, vectors) in enumerate(data.local):
        a0, a1 = data.atom_start[q], data.atom_start[q + 1]
        p0, p1 = data.pair_start[q], data.pair_start[q + 1]
        acc(offsets, index, vectors, dvdr[p0:p1], forces[a0:a1], virial[q])
    energy = np.add.reduceat(site, data.atom_start[:-1]) if data.n_cfg else np.zeros(0)
    return energy, forces, virial


def radial_penalty(radial, gradient=True):
    """MLIP-2's orthonormality penalty P(c) of the radial coefficients and dP/dc.

    Parameters
    ----------
    radial : (C, C, K, R) array

    Returns
    -------
    penalty : float
    grad : (C, C, K, R) array or None
    """
    c, _, k, r = radial.shape
    vecs = [radial[:, :, mu, :].reshape(-1) for mu in range(k)]
    rows = [v.tolist() for v in vecs]
    pen = 0.0
    grad = np.zeros((k, c * c * r)) if gradient else None
    for mu in range(k):
        norm = 0.0
        for x in rows[mu]:
            norm += x * x
        pen += (norm - 1.0) * (norm - 1.0)
        if gradient:
            grad[mu] += 4.0 * (norm - 1.0) * vecs[mu]
    for m1 in range(k):
        for m2 in range(m1 + 1, k):
            scal = 0.0
            for x, y in zip(rows[m1], rows[m2]):
                scal += x * y
            pen += scal * scal
            if gradient:
                grad[m1] += 2.0 * scal * vecs[m2]
                grad[m2] += 2.0 * scal * vecs[m1]
    if gradient:
        grad = grad.reshape(k, c, c, r).transpose(1, 2, 0, 3).copy()
    return pen, grad


class Loss:
    """Loss and gradient over a (rank-local) :class:`TrainingData` (see module docstring).

    Parameters
    ----------
    data : TrainingData
    weights : LossWeights
    comm : SerialComm or MPIComm, optional
        Partial sums are all-reduced; ``n_global`` is the total number of configurations.
    num_threads : int
        Threads for the kernels (OpenMP in the EFS pass, worker threads in the gradient).
    """

    def __init__(self, data, weights, comm=None, num_threads=1):
        from .parallel import SerialComm

        self.data = data
        self.weights = weights
        self.comm = comm or SerialComm()
        self.num_threads = max(1, int(num_threads or 1))
        self.n_global = int(self.comm.allreduce_sum(int(data.n_total)))
        self.n_cfg_global = int(self.comm.allreduce_sum(int(data.n_cfg)))
        self.blocks, self.n_blocks = data.block_layout(self.comm)
        self.n_evals = 0
        self._set_weights()
        self._buffers = (np.empty(data.n_atoms), np.empty((data.n_pairs, 3)))
        self._pool = ThreadPoolExecutor(self.num_threads) if self.num_threads > 1 else None

    def close(self):
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _set_weights(self):
        d, w = self.data, self.weights
        n = d.natoms.astype(np.float64)
        if w.weighting == "structures":
            we, ws, wf_div = w.energy / n, w.stress / n, n
        elif w.weighting == "molecules":
            we, ws, wf_div = w.energy * n, w.stress * n, np.ones_like(n)
        else:
            we, ws, wf_div = np.full_like(n, w.energy), np.full_like(n, w.stress), np.ones_like(n)
        self.ce = np.where(d.has_energy & (w.energy != 0), we / n, 0.0)
        self.cs = np.where(d.has_stress & (w.stress != 0), ws / n, 0.0)
        wf = np.full(d.n_atoms, float(w.force))
        if w.scale_by_force > 0:
            s = float(w.scale_by_force)
            wf = w.force * s / (np.einsum("ia,ia->i", d.forces_ref, d.forces_ref) + s)
        wf = wf / wf_div[d.atom_cfg] if d.n_atoms else wf
        mask = d.has_forces[d.atom_cfg] if d.n_atoms else np.zeros(0, dtype=bool)
        self.wf = np.where(mask & (w.force != 0), wf, 0.0)

    # ------------------------------------------------------------------ parts
    def residual_terms(self, energy, forces, virial):
        """Per-configuration loss terms (K,) without the penalty, and the adjoints."""
        d = self.data
        de = energy - d.energy_ref
        df = forces - d.forces_ref
        ds = virial - d.stress_ref
        fsq = np.einsum("ia,ia->i", df, df) * self.wf
        f_cfg = np.add.reduceat(fsq, d.atom_start[:-1]) if d.n_cfg else np.zeros(0)
        s_cfg = self.cs * np.einsum("kab,kab->k", ds, ds)
        e_cfg = self.ce * de * de
        terms = f_cfg + s_cfg + e_cfg
        dl_de = 2.0 * self.ce * de
        dl_df = np.ascontiguousarray((2.0 * self.wf)[:, None] * df)
        dl_ds = np.ascontiguousarray((2.0 * self.cs)[:, None, None] * ds)
        return terms, dl_de, dl_df, dl_ds

    def block_sums(self, mtp, gradient=True, max_rows=1 << 22):
        """This rank's block partials: ``(block numbers, (n_blocks_local, 1 [+ n]))``.

        Row b holds the sum over block b's configurations (in order) of L_cfg without
        the penalty, followed by its gradient when ``gradient``.  Gradient rows of single
        configurations are computed in waves of whole blocks of at most ``max_rows``
        doubles.
        """
        d = self.data
        energy, forces, virial = efs_merged(mtp, d, num_threads=self.num_threads,
                                            buffers=self._buffers)
        terms, dl_de, dl_df, dl_ds = self.residual_terms(energy, forces, virial)
        npar = mtp.n_params
        ids = list(self.comm.owned_blocks(self.n_blocks))
        width = 1 + (npar if gradient else 0)
        parts = np.zeros((len(ids), width))
        ranges = [d.block_range(self.comm, b) for b in ids]
        for r, (q0, q1) in enumerate(ranges):
            acc = 0.0
            for t in terms[q0:q1].tolist():
                acc += t
            parts[r, 0] = acc
        if not gradient:
            return ids, parts
        coeffs = mtp._coeffs()
        lg = mtp.kernel.loss_grad

        def work(group, rows, base):
            for q in group:
                types, offsets, index, vectors = d.local[q]
                a0, a1 = d.atom_start[q], d.atom_start[q + 1]
                lg(*coeffs, types, offsets, index, vectors, float(dl_de[q]),
                   dl_df[a0:a1], dl_ds[q], rows[q - base:q - base + 1], 1)

        per_wave = max(1, max_rows // max(npar, 1))
        r0 = 0
        while r0 < len(ids):
            r1 = r0 + 1
            while r1 < len(ids) and ranges[r1][1] - ranges[r0][0] <= per_wave:
                r1 += 1
            q0, q1 = ranges[r0][0], ranges[r1 - 1][1]
            rows = np.zeros((q1 - q0, npar))
            groups = d.partition(self.num_threads, q0, q1)
            if self._pool is None or len(groups) == 1:
                for g in groups:
                    work(g, rows, q0)
            else:
                list(self._pool.map(lambda g: work(g, rows, q0), groups))
            for r in range(r0, r1):
                g = parts[r, 1:]
                for q in range(*ranges[r]):
                    g += rows[q - q0]
            r0 = r1
        return ids, parts

    def global_sums(self, mtp, gradient=True):
        """(sum of L_cfg over all configurations, its gradient or None), penalty included.

        Identical on every rank and independent of the rank and thread counts.
        """
        ids, parts = self.block_sums(mtp, gradient)
        total = self.comm.ordered_sum(ids, parts, parts.shape[1])
        radial = mtp.params.radial_coeffs
        pen, pgrad = radial_penalty(radial, gradient)
        loss = float(total[0]) + self.n_cfg_global * PENALTY_WEIGHT * pen
        if not gradient:
            return loss, None
        grad = total[1:].copy()
        grad[:pgrad.size] += (self.n_cfg_global * PENALTY_WEIGHT) * pgrad.reshape(-1)
        return loss, grad

    def __call__(self, mtp, gradient=True):
        """Global mean loss and gradient (all ranks get the same numbers)."""
        self.n_evals += 1
        loss, grad = self.global_sums(mtp, gradient)
        k = max(self.n_global, 1)
        return loss / k, (grad / k if gradient else None)
