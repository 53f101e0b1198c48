"""The linear sub-problem of MTP training (mlip-formats.md §4.2, §4.3).

The site energy is linear in the species and moment coefficients ``xi = [species (C) |
moment (S)]`` for fixed radial functions, so E, F and the virial S of a configuration
are ``J xi`` with per-configuration "component" matrices:

* energy row: ``[number of atoms of each species | sum_i B_alpha(i)]``;
* force rows (3 per atom) and virial rows (9): the forces / virial of the potential with
  ``xi = e_alpha`` (species columns are zero).

They are computed by the kernel :meth:`Kernel.basis_efs`, which gives the energy,
forces and virial of every basis function ``E_alpha = sum_i B_alpha(i)`` of a
configuration in one pass over its atoms (forward-mode derivatives of the moments with
respect to the neighbour vectors).  The repulsive pair term of ``RBChebyshev_repuls``
(independent of xi) is not part of the columns; it is subtracted from the targets.

:func:`train_linear` is MLIP-2's ``TrainLinear``: Gram-Schmidt of the radial
coefficients (:func:`orthogonalize`), the weighted normal equations, the
regularisation ``A_ii += 1e-13 (1 + A_ii)`` and Gaussian elimination without pivoting
(:func:`solve_mlip`).  The row weights are (vibrations) energy ``w_e/N``, forces
``w_f``, virial ``w_s/N``; (structures) ``w_e/N^2, w_f/N, w_s/N^2``; (molecules)
``w_e, w_f, w_s``; ``scale_by_force`` is ignored, as in MLIP-2.  The normal equations
are accumulated configuration by configuration (:func:`normal_equations_blocked`):
per-configuration arrays only, blocks of configurations folded in block order over the
MPI ranks (:meth:`~mlip_py.training.parallel.SerialComm.block_fold`), so serial and
parallel runs give identical systems.  With at most 64 linear coefficients every element
is accumulated strictly row by row in MLIP-2's order with MLIP-2's arithmetic (the
conditioning of these small systems can be extreme); otherwise each configuration's
contribution is one BLAS product.

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
#: largest number of linear coefficients for which the normal equations are accumulated
#: element by element in MLIP-2's exact order
EXACT_MAX = 64


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
def config_components(mtp, data, q, num_threads=1):
    """Moment-coefficient columns of configuration ``q`` (one kernel pass).

    Returns
    -------
    counts : (C,) atoms of each species (the species columns of the energy row)
    e : (S,) ``sum_i B_alpha(i)``
    f : (S, N, 3) forces of each basis function
    v : (S, 3, 3) virial (PlusStress) of each basis function
    """
    p = mtp.params
    types, offsets, index, vectors = data.local[q]
    s, n = p.alpha_scalar_moments, len(types)
    e = np.empty(s)
    f = np.empty((s, n, 3))
    v = np.empty((s, 3, 3))
    mtp.kernel.basis_efs(mtp._coeffs()[0], types, offsets, index, vectors, e, f, v,
                         int(num_threads))
    counts = np.bincount(types, minlength=p.species_count).astype(np.float64)
    return counts, e, f, v


def repulsive_base(mtp, data, num_threads=1):
    """The coefficient-independent repulsive E, F, virial (RBChebyshev_repuls) or None."""
    p = mtp.params
    if p.radial_basis_type != "RBChebyshev_repuls" or data.n_cfg == 0:
        return None
    return efs_merged(mtp, data, mtp._coeffs()[0], np.zeros(p.species_count),
                      np.zeros(p.alpha_scalar_moments), num_threads)


def linear_components(mtp, data, num_threads=1):
    """Energy, force and virial components of the linear coefficients (all configurations).

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
    for q in range(k):
        counts, e, f, v = config_components(mtp, data, q, num_threads)
        a0, a1 = data.atom_start[q], data.atom_start[q + 1]
        e_cols[q, :c] = counts
        e_cols[q, c:] = e
        f_cols[a0:a1, :, c:] = f.transpose(1, 2, 0)
        v_cols[q, :, :, c:] = v.transpose(1, 2, 0)
    return e_cols, f_cols, v_cols, repulsive_base(mtp, data, num_threads)


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


def _targets(data, base):
    if base is None:
        return data.energy_ref, data.forces_ref, data.stress_ref
    return data.energy_ref - base[0], data.forces_ref - base[1], data.stress_ref - base[2]


def _config_rows(data, weights, q, e_row, f_rows, v_rows, row_w, targets):
    """Rows of configuration q in MLIP-2's order: energy, forces (atom, xyz), virial (ab).

    ``e_row`` (n,), ``f_rows`` (3N, n), ``v_rows`` (9, n) are the component rows;
    returns lists of blocks ``(J, w, y, damp)`` (damp: MLIP-2 multiplies the product by
    d / d with d = 0.1 for energy and force rows).
    """
    d = data
    we, wf, ws = row_w
    e_ref, f_ref, s_ref = targets
    out = []
    if d.has_energy[q]:
        out.append((e_row[None, :], np.array([we[q]]), np.array([e_ref[q]]),
                    np.ones(1, dtype=bool)))
    if weights.force > 0 and d.has_forces[q]:
        a0, a1 = d.atom_start[q], d.atom_start[q + 1]
        m = 3 * (a1 - a0)
        out.append((f_rows, np.full(m, wf[q]), f_ref[a0:a1].reshape(-1),
                    np.ones(m, dtype=bool)))
    if weights.stress > 0 and d.has_stress[q]:
        out.append((v_rows, np.full(9, ws[q]), s_ref[q].reshape(-1), np.zeros(9, dtype=bool)))
    return out


def _stack(blocks, n):
    if not blocks:
        return np.zeros((0, n)), np.zeros(0), np.zeros(0), np.zeros(0, dtype=bool)
    return tuple(np.concatenate([b[i] for b in blocks]) for i in range(4))


def _rows(data, weights, comps):
    """All rows of the weighted problem in MLIP-2's order.

    Returns ``(J, w, y, damp)``: rows (R, n), weights (R,), targets (R,) and a flag per
    row telling whether MLIP-2 multiplies the product by ``d / d`` with d = 0.1
    (energy and force rows do, virial rows do not).
    """
    e_cols, f_cols, v_cols, base = comps
    d = data
    n = e_cols.shape[1]
    row_w = _row_weights(d, weights)
    targets = _targets(d, base)
    blocks = []
    for q in range(d.n_cfg):
        a0, a1 = d.atom_start[q], d.atom_start[q + 1]
        blocks += _config_rows(d, weights, q, e_cols[q], f_cols[a0:a1].reshape(-1, n),
                               v_cols[q].reshape(9, n), row_w, targets)
    return _stack(blocks, n)


def _exact_fold(acc, rows, n, chunk_elems=4_000_000):
    """Add rows to ``acc = [upper triangle of A (row-major) | b]`` strictly row by row.

    Every element gets ``((w * J_i) * J_j) * d / d`` (d = 0.1 on damped rows) and
    ``((w * J_i) * y) * d / d`` added in row order, as MLIP-2 does.
    """
    j, w, y, damp = rows
    iu = np.triu_indices(n)
    ntri = len(iu[0])
    a_acc, b_acc = acc[:ntri], acc[ntri:]
    step = max(1, chunk_elems // max(1, ntri))
    for r0 in range(0, len(w), step):
        jj, ww, yy, dd = j[r0:r0 + step], w[r0:r0 + step], y[r0:r0 + step], damp[r0:r0 + step]
        prod = (ww[:, None] * jj[:, iu[0]]) * jj[:, iu[1]]
        rhs = (ww[:, None] * jj) * yy[:, None]
        prod[dd] = (prod[dd] * 0.1) / 0.1
        rhs[dd] = (rhs[dd] * 0.1) / 0.1
        a_acc = np.cumsum(np.vstack([a_acc[None, :], prod]), axis=0)[-1]
        b_acc = np.cumsum(np.vstack([b_acc[None, :], rhs]), axis=0)[-1]
    return np.concatenate([a_acc, b_acc])


def normal_equations(data, weights, comps, exact_order=None, chunk_elems=4_000_000):
    """Upper triangle of ``A = J^T W J`` and ``b = J^T W y`` from full component arrays.

    With ``exact_order`` (default: when there are at most 64 linear coefficients) every
    element is accumulated strictly sequentially over the rows in MLIP-2's order with
    MLIP-2's product ``((w * J_i) * J_j) * d / d`` (d = 0.1 for energy and force rows);
    otherwise BLAS products are used (same value up to rounding).
    """
    j, w, y, damp = _rows(data, weights, comps)
    n = j.shape[1]
    if exact_order is None:
        exact_order = n <= EXACT_MAX
    if not exact_order or len(w) == 0:
        jw = j * w[:, None]
        return jw.T @ j, jw.T @ y
    iu = np.triu_indices(n)
    acc = _exact_fold(np.zeros(len(iu[0]) + n), (j, w, y, damp), n, chunk_elems)
    a = np.zeros((n, n))
    a[iu] = acc[:len(iu[0])]
    return a, acc[len(iu[0]):]


def _config_rows_function(mtp, data, weights, num_threads):
    """``rows(q)``: the weighted-problem row blocks of local configuration ``q``
    (:func:`_config_rows` from :func:`config_components`, one configuration at a time)."""
    c = mtp.params.species_count
    n = c + mtp.params.alpha_scalar_moments
    row_w = _row_weights(data, weights)
    targets = _targets(data, repulsive_base(mtp, data, num_threads))

    def config_rows(q):
        counts, e, f, v = config_components(mtp, data, q, num_threads)
        s = len(e)
        f_rows = np.zeros((f.shape[1] * 3, n))
        f_rows[:, c:] = f.reshape(s, -1).T
        v_rows = np.zeros((9, n))
        v_rows[:, c:] = v.reshape(s, 9).T
        return _config_rows(data, weights, q, np.concatenate([counts, e]), f_rows, v_rows,
                            row_w, targets)

    return config_rows


def normal_equations_blocked(mtp, data, weights, comm=None, num_threads=1, exact_order=None):
    """Global normal equations ``(A, b)`` of the linear sub-problem (every rank gets them).

    Configurations are processed one at a time (:func:`config_components`, per-configuration
    arrays only) and folded block by block in global order over the ranks
    (:meth:`block_fold`); with ``exact_order`` (default: n <= 64) row by row with MLIP-2's
    arithmetic (:func:`_exact_fold`), otherwise with one BLAS product per configuration
    added to the block's partial sums.  ``A`` is returned symmetric (BLAS path) or as its
    upper triangle (exact path); :func:`solve_mlip` reads the upper triangle.
    """
    from .parallel import SerialComm

    comm = comm or SerialComm()
    p = mtp.params
    c = p.species_count
    n = c + p.alpha_scalar_moments
    if exact_order is None:
        exact_order = n <= EXACT_MAX
    _, n_blocks = data.block_layout(comm)
    config_rows = _config_rows_function(mtp, data, weights, num_threads)

    if exact_order:
        ntri = n * (n + 1) // 2

        def produce(b):
            q0, q1 = data.block_range(comm, b)
            blocks = []
            for q in range(q0, q1):
                blocks += config_rows(q)
            return _stack(blocks, n)

        acc = comm.block_fold(n_blocks, produce, lambda acc, rows: _exact_fold(acc, rows, n),
                              np.zeros(ntri + n))
        a = np.zeros((n, n))
        a[np.triu_indices(n)] = acc[:ntri]
        return a, acc[ntri:]

    def produce(b):
        part = np.zeros(n * n + n)
        pa = part[:n * n].reshape(n, n)
        pb = part[n * n:]
        q0, q1 = data.block_range(comm, b)
        for q in range(q0, q1):
            j, w, y, _ = _stack(config_rows(q), n)
            if len(w) == 0:
                continue
            if np.all(w >= 0):
                jw = j * np.sqrt(w)[:, None]
                pa += jw.T @ jw
            else:
                pa += (j * w[:, None]).T @ j
            pb += j.T @ (w * y)
        return part

    def fold(acc, part):
        acc += part
        return acc

    acc = comm.block_fold(n_blocks, produce, fold, np.zeros(n * n + n))
    return acc[:n * n].reshape(n, n).copy(), acc[n * n:].copy()


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
    a, b = normal_equations_blocked(mtp, data, weights, comm, num_threads, exact_order)
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

    The weighted system ``[A | b]`` (rows ``sqrt(w) * [J | y]``) is reduced by a
    tall-skinny QR in the order of the reduction blocks (:mod:`.parallel`): each block's
    rows are triangularised, and the triangular factors are stacked and triangularised
    again block after block (:meth:`block_fold`), so serial and MPI runs do the same
    operations and only (n + 1)^2 numbers travel between ranks.  The final factor
    ``[R | Q^T b]`` is column-equilibrated (column norms of ``R`` are those of ``A``) and
    solved.  If the condition number of the equilibrated matrix exceeds ``cond_limit``
    a :class:`ConvergenceWarning` naming it is issued and a minimum-norm solution with
    singular values below ``1/cond_limit`` discarded is returned instead.

    Returns
    -------
    xi : (C + S,)
    cond : float
        Condition number of the column-equilibrated weighted matrix.
    """
    from .parallel import SerialComm

    comm = comm or SerialComm()
    n = mtp.params.species_count + mtp.params.alpha_scalar_moments
    k = n + 1
    _, n_blocks = data.block_layout(comm)
    config_rows = _config_rows_function(mtp, data, weights, num_threads)

    def produce(b):
        q0, q1 = data.block_range(comm, b)
        blocks = []
        for q in range(q0, q1):
            blocks += config_rows(q)
        j, w, y, _ = _stack(blocks, n)
        m = np.empty((len(w), k))
        sw = np.sqrt(w)
        m[:, :n] = j * sw[:, None]
        m[:, n] = y * sw
        out = np.zeros(k * k + 1)
        out[:k * k] = _triangular_factor(m, k).ravel()
        out[-1] = len(w)
        return out

    def fold(acc, part):
        out = np.empty_like(acc)
        out[:k * k] = _triangular_factor(
            np.vstack([acc[:k * k].reshape(k, k), part[:k * k].reshape(k, k)]), k).ravel()
        out[-1] = acc[-1] + part[-1]
        return out

    acc = comm.block_fold(n_blocks, produce, fold, np.zeros(k * k + 1))
    if acc[-1] == 0:
        raise ValueError("no reference data to fit (no energies, forces or stresses)")
    rb = acc[:k * k].reshape(k, k)
    r, qtb = rb[:n, :n], rb[:n, n]
    norms = np.sqrt(np.einsum("ij,ij->j", r, r))
    zero = norms == 0
    norms[zero] = 1.0
    r = r / norms
    sv = np.linalg.svd(r, compute_uv=False)
    cond = float("inf") if acc[-1] < n or sv[-1] == 0 else float(sv[0] / sv[-1])
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


def _triangular_factor(m, k):
    """The (k, k) upper-triangular factor R of ``m = Q R`` (zero rows added when ``m``
    has fewer than k rows)."""
    out = np.zeros((k, k))
    if m.shape[0]:
        r = np.linalg.qr(m, mode="r")
        out[:r.shape[0]] = r
    return out


