"""The linear sub-problem of MTP training (mlip-formats.md §4.2, §4.3).

The site energy is linear in the species and moment coefficients ``xi = [species (C) |
moment (S)]`` for fixed radial functions, so E, F and the virial S of a configuration
are ``J xi`` with per-configuration "component" matrices:

* energy row: ``[number of atoms of each species | sum_i B_alpha(i)]``;
* force rows (3 per atom) and virial rows (9): the forces / virial of the potential with
  ``xi = e_alpha`` (species columns are zero).

They are computed here with the EFS kernel, one pass per moment coefficient with a
one-hot coefficient vector (forces are linear in xi); the repulsive pair term of
``RBChebyshev_repuls`` (independent of xi) is subtracted from the columns and from the
targets.

:func:`train_linear` is MLIP-2's ``TrainLinear``: Gram-Schmidt of the radial
coefficients (:func:`orthogonalize`), the weighted normal equations accumulated row by
row in MLIP-2's order with its arithmetic (:func:`normal_equations`), the
regularisation ``A_ii += 1e-13 (1 + A_ii)`` and Gaussian elimination without pivoting
(:func:`solve_mlip`).  The row weights are (vibrations) energy ``w_e/N``, forces
``w_f``, virial ``w_s/N``; (structures) ``w_e/N^2, w_f/N, w_s/N^2``; (molecules)
``w_e, w_f, w_s``; ``scale_by_force`` is ignored, as in MLIP-2.

:func:`rescale` is MLIP-2's ``Rescale``: it scans the global ``scaling`` over
``s * {1/1.2, 1/1.1, 1, 1.1, 1.2}`` minimising ``cond = |xi|_2 / median |xi|`` and
prints the same lines.

:func:`least_squares` is the solver of ``mlp train --linear`` (the linearly
parametrised MTP of Shapeev 2016/2017): the same weighted problem solved by a
column-equilibrated QR factorisation, with an explicit condition-number check instead of
silently returning garbage.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from .loss import efs_merged

#: regularisation of the normal equations (``gammareg`` in MLIP-2)
GAMMA_REG = 1e-13
#: condition number above which :func:`least_squares` warns and truncates
COND_LIMIT = 1e12


class ConvergenceWarning(UserWarning):
    """The linear least-squares problem is ill-conditioned."""


def fmt15(x):
    """A double as C++ ``ostream`` with ``precision(15)`` prints it (``%.15g``)."""
    return _cfmt(x, 15)


def fmt6(x):
    """A double as a default C++ ``ostream`` prints it (``%g``)."""
    return _cfmt(x, 6)


def _cfmt(x, prec):
    x = float(x)
    if math.isnan(x):
        return "-nan" if math.copysign(1.0, x) < 0 else "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"%.{prec}g" % x


# --------------------------------------------------------------------------- radial
def orthogonalize(radial):
    """Gram-Schmidt of the K radial functions, in place, with MLIP-2's arithmetic.

    ``c_k -= (c_k . c_k2) c_k2`` for k2 < k, then ``c_k /= sqrt(sum (c^2 + 1e-10))``
    (c_k = the C*C*R coefficients of radial function k).

    Parameters
    ----------
    radial : (C, C, K, R) float array, modified in place
    """
    c, _, k, r = radial.shape
    rows = [radial[:, :, mu, :].reshape(-1).tolist() for mu in range(k)]
    for mu in range(k):
        v = rows[mu]
        for mu2 in range(mu):
            w = rows[mu2]
            scal = 0.0
            for x, y in zip(v, w):
                scal += x * y
            v = [x - y * scal for x, y in zip(v, w)]
        norm = 0.0
        for x in v:
            norm += x * x + 1e-10
        norm = math.sqrt(norm)
        rows[mu] = [x / norm for x in v]
    for mu in range(k):
        radial[:, :, mu, :] = np.array(rows[mu]).reshape(c, c, r)
    return radial


# ----------------------------------------------------------------------- components
def linear_components(mtp, data, num_threads=1):
    """Energy, force and virial components of the linear coefficients.

    Returns
    -------
    e_cols : (K, C + S)
    f_cols : (N_total, 3, C + S)
    v_cols : (K, 3, 3, C + S)
    base : tuple (energy (K,), forces (N_total, 3), virial (K, 3, 3)) or None
        The coefficient-independent repulsive contribution (RBChebyshev_repuls only).
    """
    p = mtp.params
    c, s = p.species_count, p.alpha_scalar_moments
    n = c + s
    k, natoms = data.n_cfg, data.n_atoms
    e_cols = np.zeros((k, n))
    f_cols = np.zeros((natoms, 3, n))
    v_cols = np.zeros((k, 3, 3, n))
    if k == 0:
        return e_cols, f_cols, v_cols, None
    for t in range(c):
        e_cols[:, t] = np.add.reduceat((data.types == t).astype(np.float64),
                                       data.atom_start[:-1])
    radial = mtp._coeffs()[0]
    zero_s = np.zeros(c)
    buffers = (np.empty(natoms), np.empty((data.n_pairs, 3)))
    base = None
    if p.radial_basis_type == "RBChebyshev_repuls":
        base = efs_merged(mtp, data, radial, zero_s, np.zeros(s), num_threads, buffers)
    onehot = np.zeros(s)
    for a in range(s):
        onehot[:] = 0.0
        onehot[a] = 1.0
        e, f, v = efs_merged(mtp, data, radial, zero_s, onehot, num_threads, buffers)
        if base is not None:
            e, f, v = e - base[0], f - base[1], v - base[2]
        e_cols[:, c + a] = e
        f_cols[:, :, c + a] = f
        v_cols[:, :, :, c + a] = v
    return e_cols, f_cols, v_cols, base


def _row_weights(data, weights):
    """Per-configuration weights (energy, forces, virial) of the linear problem."""
    n = data.natoms.astype(np.float64)
    we = weights.energy / n
    wf = np.full_like(n, float(weights.force))
    ws = weights.stress / n
    if weights.weighting == "structures":
        we, ws, wf = we / n, ws / n, wf / n
    elif weights.weighting == "molecules":
        we, ws = we * n, ws * n
    return we, wf, ws


def _rows(data, weights, comps):
    """All rows of the weighted problem in MLIP-2's order.

    Returns ``(J, w, y, damp)``: rows (R, n), weights (R,), targets (R,) and a flag per
    row telling whether MLIP-2 multiplies the product by ``d / d`` with d = 0.1
    (energy and force rows do, virial rows do not).
    """
    e_cols, f_cols, v_cols, base = comps
    d = data
    we, wf, ws = _row_weights(d, weights)
    e_ref = d.energy_ref if base is None else d.energy_ref - base[0]
    f_ref = d.forces_ref if base is None else d.forces_ref - base[1]
    s_ref = d.stress_ref if base is None else d.stress_ref - base[2]
    use_f = weights.force > 0
    use_s = weights.stress > 0
    blocks_j, blocks_w, blocks_y, blocks_d = [], [], [], []
    n = e_cols.shape[1]
    for q in range(d.n_cfg):
        if d.has_energy[q]:
            blocks_j.append(e_cols[q:q + 1])
            blocks_w.append(np.array([we[q]]))
            blocks_y.append(np.array([e_ref[q]]))
            blocks_d.append(np.ones(1, dtype=bool))
        if use_f and d.has_forces[q]:
            a0, a1 = d.atom_start[q], d.atom_start[q + 1]
            blocks_j.append(f_cols[a0:a1].reshape(-1, n))
            m = 3 * (a1 - a0)
            blocks_w.append(np.full(m, wf[q]))
            blocks_y.append(f_ref[a0:a1].reshape(-1))
            blocks_d.append(np.ones(m, dtype=bool))
        if use_s and d.has_stress[q]:
            blocks_j.append(v_cols[q].reshape(9, n))
            blocks_w.append(np.full(9, ws[q]))
            blocks_y.append(s_ref[q].reshape(-1))
            blocks_d.append(np.zeros(9, dtype=bool))
    if not blocks_j:
        return np.zeros((0, n)), np.zeros(0), np.zeros(0), np.zeros(0, dtype=bool)
    return (np.concatenate(blocks_j), np.concatenate(blocks_w), np.concatenate(blocks_y),
            np.concatenate(blocks_d))


def normal_equations(data, weights, comps, exact_order=None, chunk_elems=4_000_000):
    """Upper triangle of ``A = J^T W J`` and ``b = J^T W y`` (local sums).

    With ``exact_order`` (default: when there are at most 64 linear coefficients) every
    element is accumulated strictly sequentially over the rows in MLIP-2's order with
    MLIP-2's product ``((w * J_i) * J_j) * d / d`` (d = 0.1 for energy and force rows);
    otherwise BLAS products are used (same value up to rounding).
    """
    j, w, y, damp = _rows(data, weights, comps)
    n = j.shape[1]
    if exact_order is None:
        exact_order = n <= 64
    if not exact_order or len(w) == 0:
        jw = j * w[:, None]
        return jw.T @ j, jw.T @ y
    iu = np.triu_indices(n)
    a_acc = np.zeros(len(iu[0]))
    b_acc = np.zeros(n)
    step = max(1, chunk_elems // max(1, len(iu[0])))
    for r0 in range(0, len(w), step):
        jj, ww, yy, dd = j[r0:r0 + step], w[r0:r0 + step], y[r0:r0 + step], damp[r0:r0 + step]
        prod = (ww[:, None] * jj[:, iu[0]]) * jj[:, iu[1]]
        rhs = (ww[:, None] * jj) * yy[:, None]
        prod[dd] = (prod[dd] * 0.1) / 0.1
        rhs[dd] = (rhs[dd] * 0.1) / 0.1
        a_acc = np.cumsum(np.vstack([a_acc[None, :], prod]), axis=0)[-1]
        b_acc = np.cumsum(np.vstack([b_acc[None, :], rhs]), axis=0)[-1]
    a = np.zeros((n, n))
    a[iu] = a_acc
    return a, b_acc


def solve_mlip(a, b):
    """Solve the normal equations as MLIP-2's ``SolveSLAE`` does.

    The upper triangle of ``a`` is mirrored, ``A_ii += 1e-13 (1 + A_ii)``, then Gaussian
    elimination without pivoting and back substitution (same operation order).
    """
    a = np.array(a, dtype=np.float64)
    b = np.array(b, dtype=np.float64)
    n = len(b)
    il = np.tril_indices(n, -1)
    a[il] = a.T[il]
    diag = np.arange(n)
    a[diag, diag] += GAMMA_REG * (1.0 + a[diag, diag])
    for i in range(n - 1):
        ratio = a[i + 1:, i] / a[i, i]
        a[i + 1:, i:] -= ratio[:, None] * a[i, i:]
        b[i + 1:] -= ratio * b[i]
    x = np.zeros(n)
    x[n - 1] = b[n - 1] / a[n - 1, n - 1]
    rows = a.tolist()
    xs = x.tolist()
    for i in range(n - 2, -1, -1):
        temp = float(b[i])
        row = rows[i]
        for jj in range(i + 1, n):
            temp -= row[jj] * xs[jj]
        xs[i] = temp / row[i]
    return np.array(xs)


def train_linear(mtp, data, weights, comm=None, num_threads=1, exact_order=None):
    """MLIP-2's ``TrainLinear``: orthogonalise the radial functions, refit xi.

    Modifies ``mtp.params`` (radial, species and moment coefficients) and resyncs
    ``mtp``; returns the solved ``xi`` (C + S,).
    """
    p = mtp.params
    orthogonalize(p.radial_coeffs)
    mtp.update_coeffs()
    comps = linear_components(mtp, data, num_threads)
    a, b = normal_equations(data, weights, comps, exact_order)
    if comm is not None and comm.is_mpi:
        a = comm.allreduce_sum(a)
        b = comm.allreduce_sum(b)
    xi = solve_mlip(a, b)
    c = p.species_count
    p.species_coeffs = xi[:c].copy()
    p.moment_coeffs = xi[c:].copy()
    mtp.update_coeffs()
    return xi


def condition_number(xi):
    """MLIP-2's Rescale criterion ``|xi|_2 / median(|xi|)`` (median = sorted[n // 2])."""
    v = np.abs(np.asarray(xi, dtype=np.float64))
    rms = 0.0
    for x in v.tolist():
        rms += x * x
    rms = math.sqrt(rms)
    med = float(np.sort(v)[len(v) // 2])
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(rms) / np.float64(med))


def rescale(model, data, weights, comm=None, num_threads=1, log=print, exact_order=None):
    """MLIP-2's ``Rescale`` (prints its lines through ``log``).

    ``model`` must provide ``mtp`` (the current :class:`MTP`) and ``set_scaling(s)``
    (rebuilds the kernel with a new global scaling).
    """
    min_s = max_s = model.mtp.params.scaling
    while True:
        s0 = model.mtp.params.scaling
        scalings = [s0 / 1.2, s0 / 1.1, s0, s0 * 1.1, s0 * 1.2]
        conds = []
        log("Rescaling...")
        for s in scalings:
            model.set_scaling(s)
            xi = train_linear(model.mtp, data, weights, comm, num_threads, exact_order)
            cond = condition_number(xi)
            conds.append(cond)
            log(f"   scaling = {fmt15(s)}, condition number = {fmt15(cond)}")
        ind = 2
        for jj in range(5):
            if conds[jj] < conds[ind]:
                ind = jj
        model.set_scaling(scalings[ind])
        train_linear(model.mtp, data, weights, comm, num_threads, exact_order)
        log(f"Rescaling to {fmt15(scalings[ind])}... done")
        s = scalings[ind]
        if min_s < s < max_s:
            ind = 2
        else:
            min_s = min(min_s, s)
            max_s = max(max_s, s)
        if ind == 2:
            return


def least_squares(mtp, data, weights, comm=None, num_threads=1, cond_limit=COND_LIMIT):
    """Weighted least squares for the species and moment coefficients (``--linear``).

    The weighted rows are gathered on every rank (their number is small: 1 + 3N + 9 per
    configuration), the columns equilibrated, and the problem solved by QR.  If the
    condition number of the equilibrated matrix exceeds ``cond_limit`` a
    :class:`ConvergenceWarning` naming it is issued and a minimum-norm solution with
    singular values below ``1/cond_limit`` discarded is returned instead.

    Returns
    -------
    xi : (C + S,)
    cond : float
        Condition number of the column-equilibrated weighted matrix.
    """
    comps = linear_components(mtp, data, num_threads)
    j, w, y, _ = _rows(data, weights, comps)
    sw = np.sqrt(w)
    a = j * sw[:, None]
    rhs = y * sw
    if comm is not None and comm.is_mpi:
        # normal-equation sized exchange: R factors are combined through A^T A and A^T b
        ata = comm.allreduce_sum(a.T @ a)
        atb = comm.allreduce_sum(a.T @ rhs)
        a, rhs = _chol_factor_rows(ata, atb)
    n = a.shape[1]
    if a.shape[0] == 0:
        raise ValueError("no reference data to fit (no energies, forces or stresses)")
    norms = np.sqrt(np.einsum("ij,ij->j", a, a))
    zero = norms == 0
    norms[zero] = 1.0
    ae = a / norms
    q, r = np.linalg.qr(ae, mode="reduced")
    sv = np.linalg.svd(r, compute_uv=False)
    if len(sv) < n or sv[-1] == 0:          # fewer equations than unknowns / singular
        cond = float("inf")
    else:
        cond = float(sv[0] / sv[-1])
    qtb = q.T @ rhs
    if cond > cond_limit or np.any(zero):
        warnings.warn(f"the linear least-squares problem is ill-conditioned (condition number "
                      f"{cond:.3e}{', ' + str(int(zero.sum())) + ' coefficient(s) with no data' if zero.any() else ''}); "
                      f"using the minimum-norm solution with singular values below "
                      f"{1.0 / cond_limit:.0e} of the largest discarded",
                      ConvergenceWarning, stacklevel=2)
        z, *_ = np.linalg.lstsq(r, qtb, rcond=1.0 / cond_limit)
    else:
        from scipy.linalg import solve_triangular

        z = solve_triangular(r, qtb)
    xi = z / norms
    xi[zero] = 0.0
    return xi, cond


def _chol_factor_rows(ata, atb):
    """Rows (R, rhs) with R^T R = ata and R^T rhs = atb (for the MPI reduction)."""
    evals, evecs = np.linalg.eigh((ata + ata.T) / 2)
    evals = np.clip(evals, 0.0, None)
    r = (evecs * np.sqrt(evals)).T
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(evals > 0, 1.0 / np.sqrt(evals), 0.0)
    rhs = inv * (evecs.T @ atb)
    return r, rhs
