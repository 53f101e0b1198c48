"""Plain-NumPy reference ("oracle") of the MLIP-2 Moment Tensor Potential.

Written independently of the Cython kernels (``cext/_mtp.pyx``) and deliberately simple:
loops over atoms, explicit **forward-mode** derivatives (the kernels use reverse mode),
a brute-force neighbour list over lattice images.  Slow; meant for small test systems.

Model (mlip-formats.md §3.3): for atom i of type ti and neighbours j with
r_ij = r_j - r_i, |r_ij| < max_dist::

    Q_b(r)  = scaling * T_b(xi) * (max_dist - r)**2,  xi = (2r - (min+max)) / (max-min)
    f_mu(r) = sum_b c[ti, tj, mu, b] Q_b(r)
    M_k     = sum_j f_mu(r_ij) * u_x**a u_y**b u_z**c   (u = r_ij / r), basic (mu, a, b, c)
    M_k    += mult * M_i0 * M_i1                          alpha_index_times, file order
    V_i     = species[ti] + sum_alpha moment_coeffs[alpha] * M[mapping[alpha]]

``RBChebyshev_repuls``: for r < min_dist the basis is evaluated at min_dist (constant) and
``1e4 * (exp(-10 (r-1)) - exp(-10 (min_dist-1)))`` is added to V_i per such pair.

Forces ``F = -dE/dr``; PlusStress ``S_ab = -sum_ij (dV_i/dr_ij)_a (r_ij)_b`` in the
order xx yy zz yz xz xy.  Parameter vector theta = [radial (C,C,K,R) | species | moments].
"""
from __future__ import annotations

import itertools

import numpy as np

REPULS_MULT = 10000.0


# --------------------------------------------------------------------------- neighbours
def brute_neighbors(lattice, positions, cutoff):
    """All (i, j, r_ij) with |r_ij| < cutoff over lattice images (zero rows not periodic).

    Returns a list (one entry per atom i) of (js (m,), vectors (m, 3)).
    """
    lattice = np.asarray(lattice, dtype=float)
    pos = np.asarray(positions, dtype=float)
    n = len(pos)
    rows = [a for a in range(3) if np.any(lattice[a] != 0.0)]
    ranges = [[0], [0], [0]]
    if rows:
        p = lattice[rows]
        dual = np.linalg.solve(p @ p.T, p)  # dual vectors inside the periodic subspace
        span = 0.0
        if n:
            span = np.max(np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=2))
        for q, a in enumerate(rows):
            m = int(np.floor((cutoff + span) * np.linalg.norm(dual[q]))) + 1
            ranges[a] = list(range(-m, m + 1))
    shifts = np.array([np.array(s, dtype=float) @ lattice
                       for s in itertools.product(*ranges)])
    out = []
    for i in range(n):
        js, vecs = [], []
        for j in range(n):
            d = pos[j][None, :] + shifts - pos[i][None, :]
            dist = np.linalg.norm(d, axis=1)
            for s in np.nonzero(dist < cutoff)[0]:
                if dist[s] == 0.0:  # the atom itself (zero shift)
                    continue
                js.append(j)
                vecs.append(d[s])
        out.append((np.array(js, dtype=int), np.array(vecs, dtype=float).reshape(-1, 3)))
    return out


# ------------------------------------------------------------------------- radial basis
def radial_basis(r, params):
    """Q_b(r) and dQ_b/dr, each (R,)."""
    rmin, rmax, nb = params.min_dist, params.max_dist, params.radial_basis_size
    clamped = params.radial_basis_type == "RBChebyshev_repuls" and r < rmin
    rr = rmin if clamped else r
    xi = (2.0 * rr - (rmin + rmax)) / (rmax - rmin)
    dxi = 2.0 / (rmax - rmin)
    t = np.zeros(nb)
    dt = np.zeros(nb)
    t[0] = 1.0
    if nb > 1:
        t[1] = xi
        dt[1] = dxi
    for b in range(2, nb):
        t[b] = 2 * xi * t[b - 1] - t[b - 2]
        dt[b] = 2 * dxi * t[b - 1] + 2 * xi * dt[b - 1] - dt[b - 2]
    env = (rmax - rr) ** 2
    denv = -2.0 * (rmax - rr)
    q = params.scaling * t * env
    dq = params.scaling * (dt * env + t * denv)
    if clamped:
        dq = np.zeros(nb)
    return q, dq


def repulsion(r, params):
    """Repulsive pair term of RBChebyshev_repuls and its r-derivative (0 otherwise)."""
    if params.radial_basis_type == "RBChebyshev_repuls" and r < params.min_dist:
        e = REPULS_MULT * (np.exp(-10 * (r - 1)) - np.exp(-10 * (params.min_dist - 1)))
        return e, -10 * REPULS_MULT * np.exp(-10 * (r - 1))
    return 0.0, 0.0


# ------------------------------------------------------------------------------ moments
def site_moments(params, ti, tjs, vecs, want_dr=True, want_dtheta=False):
    """Moments of one atom.

    Returns M (nmom,), dM/dr (nmom, m, 3) (forward mode; None unless want_dr) and
    dM/dc (nmom, C*C*K*R) (None unless want_dtheta) plus the repulsive energy and its
    gradient per neighbour (m, 3).
    """
    C, K, R = params.species_count, params.radial_funcs_count, params.radial_basis_size
    nmom = params.alpha_moments_count
    basic = params.alpha_index_basic
    m = len(tjs)
    M = np.zeros(nmom)
    dM = np.zeros((nmom, m, 3)) if want_dr else None
    nrad = C * C * K * R
    dMc = np.zeros((nmom, nrad)) if want_dtheta else None
    coeffs = params.radial_coeffs
    erep = 0.0
    derep = np.zeros((m, 3))
    for jj in range(m):
        v = vecs[jj]
        r = np.linalg.norm(v)
        u = v / r
        q, dq = radial_basis(r, params)
        e, de = repulsion(r, params)
        erep += e
        derep[jj] = de * u
        for k, (mu, a, b, c) in enumerate(basic):
            cf = coeffs[ti, tjs[jj], mu]
            f = cf @ q
            df = cf @ dq
            mono = u[0] ** a * u[1] ** b * u[2] ** c
            M[k] += f * mono
            if want_dr:
                # d mono / d v: derivative of the product of unit-vector components
                du = np.array([a * _pw(u[0], a - 1) * u[1] ** b * u[2] ** c,
                               b * u[0] ** a * _pw(u[1], b - 1) * u[2] ** c,
                               c * u[0] ** a * u[1] ** b * _pw(u[2], c - 1)])
                # du_k / dv_l = (delta_kl - u_k u_l) / r
                dmono = (du - u * (du @ u)) / r
                dM[k, jj] += df * u * mono + f * dmono
            if want_dtheta:
                off = ((ti * C + tjs[jj]) * K + mu) * R
                dMc[k, off:off + R] += q * mono
    nb = len(basic)
    for i0, i1, mult, k in params.alpha_index_times:
        M[k] += mult * M[i0] * M[i1]
        if want_dr:
            dM[k] += mult * (dM[i0] * M[i1] + M[i0] * dM[i1])
        if want_dtheta:
            dMc[k] += mult * (dMc[i0] * M[i1] + M[i0] * dMc[i1])
    assert nb <= nmom
    return M, dM, dMc, erep, derep


def _pw(x, p):
    return x ** p if p >= 0 else 0.0


# ------------------------------------------------------------------------------- model
def calc(params, lattice, positions, types, nbrs=None, gradients=False):
    """Energy, forces, PlusStress (6), site energies, basis (N, S) [, dE/dtheta, dV_i/dtheta].

    Returns a dict.  ``gradients=True`` adds ``'energy_grad'`` (n,) and
    ``'site_energy_grads'`` (N, n).
    """
    types = np.asarray(types, dtype=int)
    pos = np.asarray(positions, dtype=float)
    n_at = len(pos)
    if nbrs is None:
        nbrs = brute_neighbors(lattice, pos, params.max_dist)
    C, S = params.species_count, params.alpha_scalar_moments
    nrad = params.n_radial_params
    mapping = params.alpha_moment_mapping
    xi = params.moment_coeffs
    forces = np.zeros((n_at, 3))
    virial = np.zeros((3, 3))
    site = np.zeros(n_at)
    basis = np.zeros((n_at, S))
    grads = np.zeros((n_at, params.n_params)) if gradients else None
    for i in range(n_at):
        js, vecs = nbrs[i]
        M, dM, dMc, erep, derep = site_moments(params, types[i], types[js], vecs,
                                                want_dtheta=gradients)
        B = M[mapping]
        basis[i] = B
        site[i] = params.species_coeffs[types[i]] + xi @ B + erep
        dV = np.einsum("a,amx->mx", xi, dM[mapping]) + derep  # dV_i / dr_ij, (m, 3)
        for jj, j in enumerate(js):
            forces[i] += dV[jj]
            forces[j] -= dV[jj]
            virial -= np.outer(dV[jj], vecs[jj])
        if gradients:
            grads[i, :nrad] = xi @ dMc[mapping]
            grads[i, nrad + types[i]] = 1.0
            grads[i, nrad + C:] = B
    out = {
        "energy": site.sum(),
        "forces": forces,
        "plus_stress": np.array([virial[0, 0], virial[1, 1], virial[2, 2],
                                 virial[1, 2], virial[0, 2], virial[0, 1]]),
        "virial9": virial,
        "site_energies": site,
        "basis": basis,
    }
    if gradients:
        out["site_energy_grads"] = grads
        out["energy_grad"] = grads.sum(axis=0)
    return out


# ----------------------------------------------------------------- minimal .mtp reader
def parse_mtp(text):
    """Minimal token-based reader of an MLIP-2 ``.mtp`` text (tests only).

    ``<<<`` comments (upstream templates) are stripped.  Returns an MTPParams; an untrained
    file gets MLIP-2's loader defaults.
    """
    from mlip_py.potential.params import MTPParams

    lines = [ln.split("<<<")[0] for ln in text.splitlines()]
    kv = {}
    radial = []
    in_radial = False
    for ln in lines:
        s = ln.strip()
        if not s:
            continue
        if s == "radial_coeffs":
            in_radial = True
            continue
        if "=" in s:
            in_radial = False
            key, val = s.split("=", 1)
            kv[key.strip()] = val.strip()
        elif in_radial and s.startswith("{"):
            radial.append([float(x) for x in s.strip("{}").split(",")])

    def ints(v):
        return [int(x) for x in v.replace("{", " ").replace("}", " ").replace(",", " ").split()]

    def floats(v):
        return [float(x) for x in v.replace("{", " ").replace("}", " ").replace(",", " ").split()]

    p = MTPParams(
        potential_name=kv.get("potential_name", "MTP1m"),
        scaling=float(kv.get("scaling", 1.0)),
        species_count=int(kv["species_count"]),
        radial_basis_type=kv["radial_basis_type"],
        min_dist=float(kv["min_dist"]),
        max_dist=float(kv["max_dist"]),
        radial_basis_size=int(kv["radial_basis_size"]),
        radial_funcs_count=int(kv["radial_funcs_count"]),
        radial_coeffs=np.array(radial) if radial else None,
        alpha_moments_count=int(kv["alpha_moments_count"]),
        alpha_index_basic=ints(kv["alpha_index_basic"]),
        alpha_index_times=ints(kv["alpha_index_times"]) if int(kv["alpha_index_times_count"]) else
        np.zeros((0, 4), dtype=np.int64),
        alpha_moment_mapping=ints(kv["alpha_moment_mapping"]),
        species_coeffs=floats(kv["species_coeffs"]) if "species_coeffs" in kv else None,
        moment_coeffs=floats(kv["moment_coeffs"]) if "moment_coeffs" in kv else None,
    )
    if not p.is_trained:
        p.init_default_coeffs()
    return p


def load_mtp(path):
    """Read a ``.mtp`` file with mlip_py.io.mtp.read_mtp when available, else parse_mtp."""
    try:
        from mlip_py.io.mtp import read_mtp
    except ImportError:
        with open(path) as fh:
            return parse_mtp(fh.read())
    with open(path) as fh:
        text = fh.read()
    if "<<<" in text:
        return parse_mtp(text)
    p = read_mtp(path)
    if not p.is_trained:
        p.init_default_coeffs()
    return p


def template(level, species_count=1, min_dist=1.8, max_dist=5.0, rng=None, directory=None):
    """An upstream untrained template with the given species count / distances.

    With ``rng`` the coefficients are random (radial ~ N(0, 1) / R, linear ~ N(0, 1)),
    else MLIP-2's loader defaults.
    """
    import re

    with open(f"{directory}/{level:02d}.mtp") as fh:
        text = fh.read()
    text = re.sub(r"species_count = \d+", f"species_count = {species_count}", text)
    text = re.sub(r"min_dist = \S+", f"min_dist = {min_dist}", text)
    text = re.sub(r"max_dist = \S+", f"max_dist = {max_dist}", text)
    p = parse_mtp(text)
    if rng is not None:
        p.set_params(np.concatenate([
            rng.normal(size=p.n_radial_params) / p.radial_basis_size,
            rng.normal(size=p.species_count),
            rng.normal(size=p.alpha_scalar_moments) * 0.1,
        ]))
    return p
