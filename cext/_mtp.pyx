# cython: language_level=3
"""Moment Tensor Potential kernels (MLIP-2 model, mlip-formats.md §3.3).

Conventions
-----------
* Neighbour list in CSR form: ``offsets`` (N+1,) int64, ``index`` (M,) int64 = original
  atom j of pair p, ``vectors`` (M, 3) float64 = r_ij = r_j(image) - r_i.  Pairs with
  |r_ij| >= max_dist contribute nothing (so a list built with a skin is fine).
* ``types`` (N,) int64, 0-based, already validated (< species_count) by the caller.
* Coefficients are passed per call (training changes them):
  ``radial`` (C*C*K*R,) flat in (ti, tj, mu, beta) order, ``species`` (C,), ``moment`` (S,).
  theta = [radial | species | moment], n = C*C*K*R + C + S.
* ``dvdr`` (M, 3) = dV_i/dr_ij per pair.  Forces F_i += dV_i/dr_ij, F_j -= dV_i/dr_ij;
  virial S_ab = -sum_p (dV_i/dr_ij)_a (r_ij)_b (PlusStress, positive under compression).

Algorithm per atom i (reverse mode): radial basis Q_b(r) and dQ_b/dr by the Chebyshev
recurrence; f_mu = sum_b c[ti,tj,mu,b] Q_b; unit-vector monomials u_x^a u_y^b u_z^c for every
distinct (a, b, c) (built recursively, one product each); basic moments
M_k = sum_j f_mu * mono; composite moments by alpha_index_times in file order; adjoints
g = dV/dM backwards through alpha_index_times; dV/dr_ij from the basic moments grouped by
monomial.  Parameter derivatives of force/stress terms use forward-over-reverse: the
tangent (along pair displacements w_ij) of the energy-gradient computation.

Forces and virials of all S basis functions at once (``Kernel.basis_efs``, the columns
of the linear training problem) use forward mode instead: the Jacobian dM_k/dr_ij of
every moment w.r.t. the 3 * n_neighbours coordinates, propagated through
alpha_index_times (cost ~ n_times * 3 n_neighbours multiply-adds per atom, instead of
S reverse passes).  That contraction loop is also compiled for AVX2+FMA and selected at
run time (``_mtp_core.h``).

All loops over atoms run in OpenMP ``prange`` (serial without -fopenmp) with thread-local
work buffers; per-pair outputs are written disjointly and summed serially afterwards.
"""
import numpy as np

cimport cython
from cython.parallel cimport parallel, prange, threadid
from libc.math cimport ceil, exp, fabs, sqrt
from libc.stdint cimport int64_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcpy, memset

include "_direct.pxi"

cdef extern from "_mtp_core.h" nogil:
    int mtp_max_threads()
    double mtp_dot(const double *a, const double *b, int n)
    double mtp_dot2(const double *a, const double *b, const double *c, const double *d, int n)
    void mtp_axpy(double *y, double alpha, const double *x, int n)
    void mtp_axpy2(double *y1, double *y2, double alpha, const double *x1, const double *x2,
                   int n)
    int mtp_have_avx2()
    void mtp_jac_times(double *dM, Py_ssize_t L, int x0, int w, int nruns, const int *run_start,
                       const int *run_k, const char *first, const int *i0, const int *i1,
                       const double *mult, const double *M)

cdef double REPULS_MULT = 10000.0  # RBChebyshev_repuls pair term prefactor
# atoms per block of the energy gradient's ordered sum (Kernel.energy_grad, per_atom False;
# Kernel.energy_rows_direct): results independent of the thread count
cdef Py_ssize_t ENERGY_BLOCK = 64


def max_threads():
    """Default number of OpenMP threads (1 without OpenMP)."""
    return mtp_max_threads()


# --------------------------------------------------------------------------- tables
cdef struct Tab:
    int C, K, R, nmom, nb, nt, S, nmono, repuls
    double rmin, rmax, scaling
    int *b_mu          # (nb,) radial function of basic moment k
    int *b_mono        # (nb,) monomial of basic moment k
    int *mono_par      # (nmono,) parent monomial (mono = parent * u[comp]); -1 for m = 0
    int *mono_comp     # (nmono,) component 0/1/2
    int *mono_down     # (nmono, 3) monomial with a-1 / b-1 / c-1 (or -1)
    double *mono_pow   # (nmono, 3) a, b, c as doubles
    double *mono_nu    # (nmono,) a + b + c
    int *grp_start     # (nmono + 1,) basic moments grouped by monomial
    int *grp_k         # (nb,)
    int *t_i0
    int *t_i1
    int *t_k
    double *t_mult
    int nruns          # alpha_index_times split into runs of equal k (file order kept)
    int *run_start     # (nruns + 1,)
    int *run_k         # (nruns,)
    char *run_first    # (nruns,) 1 for the first run writing its k (all 0 if zero_comp)
    int zero_comp      # some composite moment is never written: zero the Jacobian rows
    int *mapping       # (S,)


cdef struct Work:
    int cap
    double *r
    double *invr
    double *u          # (3, cap)
    double *Q          # (R, cap)
    double *dQ         # (R, cap)
    double *f          # (K, cap)
    double *fd         # (K, cap)
    double *mono       # (nmono, cap)
    double *M          # (nmom,)
    double *g          # (nmom,)
    double *s          # (cap,)
    double *sd
    double *A
    double *G          # (3, cap)
    double *erep       # (cap,)
    double *derep      # (cap,)
    int *tj            # (cap,)
    # forward-over-reverse
    double *h          # (K, cap)
    double *hdot       # (K, cap)
    double *w          # (3, cap) pair displacement direction
    double *rdot       # (cap,)
    double *udot       # (3, cap)
    double *monodot    # (nmono, cap)
    double *fdr        # (K, cap) fd * rdot
    double *Mdot       # (nmom,)
    double *gdot       # (nmom,)


cdef Work* work_alloc(const Tab* T, int cap) noexcept nogil:
    cdef Work* W = <Work*>calloc(1, sizeof(Work))
    if W == NULL:
        return NULL
    if cap < 1:
        cap = 1
    W.cap = cap
    cdef Py_ssize_t nd = (<Py_ssize_t>cap) * (2 + 3 + 2 * T.R + 2 * T.K + T.nmono + 4 + 3 + 2
                                              + 2 * T.K + 3 + 1 + 3 + T.nmono + T.K) \
        + 4 * T.nmom
    cdef double* p = <double*>malloc(nd * sizeof(double))
    cdef int* ip = <int*>malloc(cap * sizeof(int))
    if p == NULL or ip == NULL:
        free(p)
        free(ip)
        free(W)
        return NULL
    memset(p, 0, nd * sizeof(double))
    W.tj = ip
    W.r = p; p += cap
    W.invr = p; p += cap
    W.u = p; p += 3 * cap
    W.Q = p; p += T.R * cap
    W.dQ = p; p += T.R * cap
    W.f = p; p += T.K * cap
    W.fd = p; p += T.K * cap
    W.mono = p; p += T.nmono * cap
    W.s = p; p += cap
    W.sd = p; p += cap
    W.A = p; p += cap
    W.G = p; p += 3 * cap
    W.erep = p; p += cap
    W.derep = p; p += cap
    W.h = p; p += T.K * cap
    W.hdot = p; p += T.K * cap
    W.w = p; p += 3 * cap
    W.rdot = p; p += cap
    W.udot = p; p += 3 * cap
    W.monodot = p; p += T.nmono * cap
    W.fdr = p; p += T.K * cap
    W.M = p; p += T.nmom
    W.g = p; p += T.nmom
    W.Mdot = p; p += T.nmom
    W.gdot = p; p += T.nmom
    return W


cdef void work_free(Work* W) noexcept nogil:
    if W != NULL:
        free(W.r)
        free(W.tj)
        free(W)


# ------------------------------------------------------------------ per-atom steps
cdef void prep(const Tab* T, Work* W, int ti, int nn, Py_ssize_t p0,
               const int64_t* types, const int64_t* index, const double* vec,
               const double* rc, bint derivs=True) noexcept nogil:
    """Distances, unit vectors, radial basis, radial functions, monomials, repulsion.

    ``derivs`` False: r-derivatives (dQ, fd, derep) are not computed, for the callers that
    need values only (energy gradient, basis); the values are the same bits either way.

    Loops run over neighbours innermost (vectorisable).  Q_b = T_b(xi) * env with
    env = scaling (r_max - r)^2, dQ_b/dr = dT_b/dr * envd + T_b * denv; for a clamped
    RBChebyshev_repuls pair (r < r_min) xi uses r_min and envd = denv = 0; beyond the
    cutoff env = envd = denv = 0.
    """
    cdef int j, b, mu, m, s, cap = W.cap, R = T.R, K = T.K
    cdef double x, y, z, r, ir, rr, sc, c0
    cdef double rmin = T.rmin, rmax = T.rmax
    cdef double dxi = 2.0 / (rmax - rmin)
    cdef double* xi = W.s          # scratch rows (free until pair_grad)
    cdef double* env = W.sd
    cdef double* envd = W.A
    cdef double* denv = W.G
    cdef double* Qb
    cdef double* dQb
    cdef const double* cf
    sc = T.scaling
    for j in range(nn):
        x = vec[3 * (p0 + j)]
        y = vec[3 * (p0 + j) + 1]
        z = vec[3 * (p0 + j) + 2]
        r = sqrt(x * x + y * y + z * z)
        ir = 1.0 / r
        W.r[j] = r
        W.invr[j] = ir
        W.u[j] = x * ir
        W.u[cap + j] = y * ir
        W.u[2 * cap + j] = z * ir
        W.tj[j] = <int>types[index[p0 + j]]
        W.erep[j] = 0.0
        W.derep[j] = 0.0
        if r >= rmax:
            xi[j] = 0.0
            env[j] = 0.0
            envd[j] = 0.0
            denv[j] = 0.0
        elif T.repuls and r < rmin:
            W.erep[j] = REPULS_MULT * (exp(-10.0 * (r - 1.0)) - exp(-10.0 * (rmin - 1.0)))
            W.derep[j] = -10.0 * REPULS_MULT * exp(-10.0 * (r - 1.0))
            xi[j] = -1.0
            env[j] = sc * (rmax - rmin) * (rmax - rmin)
            envd[j] = 0.0
            denv[j] = 0.0
        else:
            rr = r
            xi[j] = (2.0 * rr - (rmin + rmax)) / (rmax - rmin)
            env[j] = sc * (rmax - rr) * (rmax - rr)
            envd[j] = env[j]
            denv[j] = -2.0 * sc * (rmax - rr)
    if not derivs:
        prep_values(T, W, ti, nn, xi, env, rc)
        return
    # Chebyshev T_b (in Q rows) and dT_b/dr (in dQ rows)
    for j in range(nn):
        W.Q[j] = 1.0
        W.dQ[j] = 0.0
    if R > 1:
        for j in range(nn):
            W.Q[cap + j] = xi[j]
            W.dQ[cap + j] = dxi
    for b in range(2, R):
        cheb_step(W.Q + b * cap, W.dQ + b * cap, W.Q + (b - 1) * cap, W.dQ + (b - 1) * cap,
                  W.Q + (b - 2) * cap, W.dQ + (b - 2) * cap, xi, dxi, nn)
    for b in range(R):
        Qb = W.Q + b * cap
        dQb = W.dQ + b * cap
        for j in range(nn):
            dQb[j] = dQb[j] * envd[j] + Qb[j] * denv[j]
            Qb[j] = Qb[j] * env[j]
    # radial functions f_mu = sum_b c[ti, tj, mu, b] Q_b
    if T.C == 1:
        for mu in range(K):
            memset(W.f + mu * cap, 0, nn * sizeof(double))
            memset(W.fd + mu * cap, 0, nn * sizeof(double))
            for b in range(R):
                c0 = rc[mu * R + b]
                mtp_axpy2(W.f + mu * cap, W.fd + mu * cap, c0, W.Q + b * cap, W.dQ + b * cap,
                          nn)
    else:
        for j in range(nn):
            cf = rc + (<Py_ssize_t>(ti * T.C + W.tj[j])) * K * R
            for mu in range(K):
                x = 0.0
                y = 0.0
                for b in range(R):
                    x = x + cf[mu * R + b] * W.Q[b * cap + j]
                    y = y + cf[mu * R + b] * W.dQ[b * cap + j]
                W.f[mu * cap + j] = x
                W.fd[mu * cap + j] = y
    monomials(T, W, nn)


cdef inline void monomials(const Tab* T, Work* W, int nn) noexcept nogil:
    """Monomials of the unit vectors (monomial 0 = 1)."""
    cdef int j, m, cap = W.cap
    for j in range(nn):
        W.mono[j] = 1.0
    for m in range(1, T.nmono):
        mult_into(W.mono + m * cap, W.mono + T.mono_par[m] * cap,
                  W.u + T.mono_comp[m] * cap, nn)


cdef void prep_values(const Tab* T, Work* W, int ti, int nn, const double* xi,
                      const double* env, const double* rc) noexcept nogil:
    """The value part of :func:`prep` (Q, f, monomials) with the same operations in the
    same order, without the r-derivatives."""
    cdef int j, b, mu, cap = W.cap, R = T.R, K = T.K
    cdef double x, c0
    cdef double* Qb
    cdef const double* cf
    for j in range(nn):
        W.Q[j] = 1.0
    if R > 1:
        for j in range(nn):
            W.Q[cap + j] = xi[j]
    for b in range(2, R):
        cheb_value_step(W.Q + b * cap, W.Q + (b - 1) * cap, W.Q + (b - 2) * cap, xi, nn)
    for b in range(R):
        Qb = W.Q + b * cap
        for j in range(nn):
            Qb[j] = Qb[j] * env[j]
    if T.C == 1:
        for mu in range(K):
            memset(W.f + mu * cap, 0, nn * sizeof(double))
            for b in range(R):
                c0 = rc[mu * R + b]
                mtp_axpy(W.f + mu * cap, c0, W.Q + b * cap, nn)
    else:
        for j in range(nn):
            cf = rc + (<Py_ssize_t>(ti * T.C + W.tj[j])) * K * R
            for mu in range(K):
                x = 0.0
                for b in range(R):
                    x = x + cf[mu * R + b] * W.Q[b * cap + j]
                W.f[mu * cap + j] = x
    monomials(T, W, nn)


cdef inline void cheb_value_step(double* t2, const double* t1, const double* t0,
                                 const double* xi, int n) noexcept nogil:
    cdef int j
    for j in range(n):
        t2[j] = 2.0 * xi[j] * t1[j] - t0[j]


cdef inline void cheb_step(double* t2, double* d2, const double* t1, const double* d1,
                           const double* t0, const double* d0, const double* xi, double dxi,
                           int n) noexcept nogil:
    cdef int j
    for j in range(n):
        t2[j] = 2.0 * xi[j] * t1[j] - t0[j]
        d2[j] = 2.0 * (dxi * t1[j] + xi[j] * d1[j]) - d0[j]


cdef inline void mult_into(double* out, const double* a, const double* b, int n) noexcept nogil:
    cdef int j
    for j in range(n):
        out[j] = a[j] * b[j]


cdef void forward(const Tab* T, Work* W, int nn) noexcept nogil:
    """Basic moments and composite moments (alpha_index_times in file order)."""
    cdef int k, t, q, cap = W.cap
    cdef double acc
    cdef double* M = W.M
    for k in range(T.nb):
        M[k] = mtp_dot(W.f + T.b_mu[k] * cap, W.mono + T.b_mono[k] * cap, nn)
    for k in range(T.nb, T.nmom):
        M[k] = 0.0
    for q in range(T.nruns):
        acc = 0.0
        for t in range(T.run_start[q], T.run_start[q + 1]):
            acc = acc + T.t_mult[t] * M[T.t_i0[t]] * M[T.t_i1[t]]
        M[T.run_k[q]] += acc


cdef void backward(const Tab* T, Work* W, const double* moment) noexcept nogil:
    """g = dV/dM for V = sum_alpha moment[alpha] * M[mapping[alpha]]."""
    cdef int a, t, q, i0, i1
    cdef double v, gk
    cdef double* g = W.g
    cdef const double* M = W.M
    memset(g, 0, T.nmom * sizeof(double))
    for a in range(T.S):
        g[T.mapping[a]] += moment[a]
    for q in range(T.nruns - 1, -1, -1):
        gk = g[T.run_k[q]]
        if gk == 0.0:
            continue
        for t in range(T.run_start[q], T.run_start[q + 1]):
            v = gk * T.t_mult[t]
            i0 = T.t_i0[t]
            i1 = T.t_i1[t]
            g[i0] += v * M[i1]
            g[i1] += v * M[i0]


cdef void pair_grad(const Tab* T, Work* W, int nn, double* out, Py_ssize_t p0) noexcept nogil:
    """out[3*(p0+j) + c] = dV_i/d(r_ij)_c, from g and the prepared neighbour data."""
    cdef int m, q, k, j, c, d, cap = W.cap
    cdef bint anyk
    cdef double gk, nu, pw, ir
    cdef double* s = W.s
    cdef double* sd = W.sd
    cdef double* A = W.A
    cdef const double* mm
    cdef const double* dm
    memset(A, 0, nn * sizeof(double))
    memset(W.G, 0, 3 * cap * sizeof(double))
    for m in range(T.nmono):
        if T.grp_start[m] == T.grp_start[m + 1]:
            continue
        anyk = False
        for q in range(T.grp_start[m], T.grp_start[m + 1]):
            k = T.grp_k[q]
            gk = W.g[k]
            if gk == 0.0:
                continue
            if not anyk:
                memset(s, 0, nn * sizeof(double))
                memset(sd, 0, nn * sizeof(double))
                anyk = True
            mtp_axpy2(s, sd, gk, W.f + T.b_mu[k] * cap, W.fd + T.b_mu[k] * cap, nn)
        if not anyk:
            continue
        nu = T.mono_nu[m]
        mm = W.mono + m * cap
        for j in range(nn):
            A[j] += (sd[j] - nu * s[j] * W.invr[j]) * mm[j]
        for c in range(3):
            d = T.mono_down[3 * m + c]
            if d < 0:
                continue
            pw = T.mono_pow[3 * m + c]
            dm = W.mono + d * cap
            for j in range(nn):
                W.G[c * cap + j] += pw * s[j] * dm[j]
    for j in range(nn):
        ir = W.invr[j]
        for c in range(3):
            out[3 * (p0 + j) + c] = (A[j] + W.derep[j]) * W.u[c * cap + j] + W.G[c * cap + j] * ir


cdef void radial_h(const Tab* T, Work* W, int nn) noexcept nogil:
    """h[mu][j] = sum_{k basic, mu_k = mu} g_k * mono_k(j)."""
    cdef int k, cap = W.cap
    cdef double gk
    memset(W.h, 0, T.K * cap * sizeof(double))
    for k in range(T.nb):
        gk = W.g[k]
        if gk != 0.0:
            mtp_axpy(W.h + T.b_mu[k] * cap, gk, W.mono + T.b_mono[k] * cap, nn)


cdef void energy_grad_atom(const Tab* T, Work* W, int ti, int nn, double scale,
                           double* out) noexcept nogil:
    """out += scale * dV_i/dtheta (needs forward, backward, radial_h)."""
    cdef int j, mu, b, cap = W.cap, R = T.R, K = T.K
    cdef Py_ssize_t base
    cdef double hv, acc
    cdef const double* hm
    cdef const double* qb
    if T.C == 1:
        # one species: each entry sums its terms in neighbour order in a register (the
        # same additions in the same order as the general loop below, so the same bits)
        for mu in range(K):
            hm = W.h + mu * cap
            for b in range(R):
                qb = W.Q + b * cap
                acc = out[mu * R + b]
                for j in range(nn):
                    hv = scale * hm[j]
                    if hv != 0.0:
                        acc = acc + hv * qb[j]
                out[mu * R + b] = acc
    else:
        for j in range(nn):
            base = (<Py_ssize_t>(ti * T.C + W.tj[j])) * K * R
            for mu in range(K):
                hv = scale * W.h[mu * cap + j]
                if hv == 0.0:
                    continue
                for b in range(R):
                    out[base + mu * R + b] += hv * W.Q[b * cap + j]
    base = (<Py_ssize_t>T.C) * T.C * K * R
    out[base + ti] += scale
    base += T.C
    for mu in range(T.S):
        out[base + mu] += scale * W.M[T.mapping[mu]]


cdef inline int energy_steps(const Tab* T, Work* W, Py_ssize_t i, const int64_t* offsets,
                             const int64_t* tp, const int64_t* ip, const double* vp,
                             const double* radial, const double* moment,
                             int* nn_out) noexcept nogil:
    """The per-atom steps of the energy gradient up to energy_grad_atom (value-only
    basis, moments, dV/dM, radial h) for atom ``i``; returns its type, ``*nn_out`` = its
    neighbour count."""
    cdef int ti = <int>tp[i]
    cdef int nn = <int>(offsets[i + 1] - offsets[i])
    prep(T, W, ti, nn, offsets[i], tp, ip, vp, radial, False)
    forward(T, W, nn)
    backward(T, W, moment)
    radial_h(T, W, nn)
    nn_out[0] = nn
    return ti


cdef inline void energy_atom(const Tab* T, Work* W, Py_ssize_t i, const int64_t* offsets,
                             const int64_t* tp, const int64_t* ip, const double* vp,
                             const double* radial, const double* moment,
                             double* out) noexcept nogil:
    """out += dV_i/dtheta."""
    cdef int nn
    cdef int ti = energy_steps(T, W, i, offsets, tp, ip, vp, radial, moment, &nn)
    energy_grad_atom(T, W, ti, nn, 1.0, out)


cdef void tangent_grad(const Tab* T, Work* W, int ti, int nn, double scale,
                       double* out) noexcept nogil:
    """out += scale * d/dtheta [ sum_j w_j . dV_i/dr_ij ]  (w in W.w).

    Forward-mode tangent, along the pair displacements w, of the energy-gradient
    computation (needs forward, backward, radial_h done).
    """
    cdef int j, k, t, q, m, mu, b, c, i0, i1, cap = W.cap, R = T.R, K = T.K
    cdef double rd, ir, v, gk, gdk, hv, hd, acc
    cdef Py_ssize_t base
    cdef double* M = W.M
    cdef double* Md = W.Mdot
    cdef double* g = W.g
    cdef double* gd = W.gdot
    for j in range(nn):
        ir = W.invr[j]
        rd = W.u[j] * W.w[j] + W.u[cap + j] * W.w[cap + j] + W.u[2 * cap + j] * W.w[2 * cap + j]
        W.rdot[j] = rd
        for c in range(3):
            W.udot[c * cap + j] = (W.w[c * cap + j] - W.u[c * cap + j] * rd) * ir
    for j in range(nn):
        W.monodot[j] = 0.0
    for m in range(1, T.nmono):
        tangent_mono(W.monodot + m * cap, W.monodot + T.mono_par[m] * cap,
                     W.u + T.mono_comp[m] * cap, W.mono + T.mono_par[m] * cap,
                     W.udot + T.mono_comp[m] * cap, nn)
    for mu in range(K):
        mult_into(W.fdr + mu * cap, W.fd + mu * cap, W.rdot, nn)
    for k in range(T.nb):
        Md[k] = mtp_dot2(W.fdr + T.b_mu[k] * cap, W.mono + T.b_mono[k] * cap,
                         W.f + T.b_mu[k] * cap, W.monodot + T.b_mono[k] * cap, nn)
    for k in range(T.nb, T.nmom):
        Md[k] = 0.0
    for q in range(T.nruns):
        acc = 0.0
        for t in range(T.run_start[q], T.run_start[q + 1]):
            i0 = T.t_i0[t]
            i1 = T.t_i1[t]
            acc = acc + T.t_mult[t] * (Md[i0] * M[i1] + M[i0] * Md[i1])
        Md[T.run_k[q]] += acc
    memset(gd, 0, T.nmom * sizeof(double))
    for q in range(T.nruns - 1, -1, -1):
        k = T.run_k[q]
        gk = g[k]
        gdk = gd[k]
        if gk == 0.0 and gdk == 0.0:
            continue
        for t in range(T.run_start[q], T.run_start[q + 1]):
            v = T.t_mult[t]
            i0 = T.t_i0[t]
            i1 = T.t_i1[t]
            gd[i0] += v * (gdk * M[i1] + gk * Md[i1])
            gd[i1] += v * (gdk * M[i0] + gk * Md[i0])
    memset(W.hdot, 0, K * cap * sizeof(double))
    for k in range(T.nb):
        if gd[k] != 0.0:
            mtp_axpy(W.hdot + T.b_mu[k] * cap, gd[k], W.mono + T.b_mono[k] * cap, nn)
        if g[k] != 0.0:
            mtp_axpy(W.hdot + T.b_mu[k] * cap, g[k], W.monodot + T.b_mono[k] * cap, nn)
    for j in range(nn):
        base = (<Py_ssize_t>(ti * T.C + W.tj[j])) * K * R
        for mu in range(K):
            hv = scale * W.hdot[mu * cap + j]
            hd = scale * W.h[mu * cap + j] * W.rdot[j]
            for b in range(R):
                out[base + mu * R + b] += hv * W.Q[b * cap + j] + hd * W.dQ[b * cap + j]
    base = (<Py_ssize_t>T.C) * T.C * K * R + T.C
    for mu in range(T.S):
        out[base + mu] += scale * Md[T.mapping[mu]]


cdef inline void tangent_mono(double* out, const double* pd, const double* uc, const double* p,
                              const double* udc, int n) noexcept nogil:
    cdef int j
    for j in range(n):
        out[j] = pd[j] * uc[j] + p[j] * udc[j]


cdef enum:
    JAC_CHUNK = 96     # Jacobian columns processed together (nmom * JAC_CHUNK doubles in cache)


cdef void moment_jac(const Tab* T, Work* W, int nn, double* dM) noexcept nogil:
    """dM[k * 3nn + 3 j + c] = dM_k / d(r_ij)_c for every moment k (forward mode).

    Basic moments: ``dM_k/dr_c = (f' - nu f / r) mono u_c + f pow_c mono_down_c / r``;
    composite moments by ``dM_k += mult (M_i1 dM_i0 + M_i0 dM_i1)`` in file order, over
    column chunks of JAC_CHUNK so that the working set stays in cache.  Needs prep and
    forward (the final M values).
    """
    cdef int k, m, mu, c, d, j, x0, w, cap = W.cap
    cdef int L = 3 * nn
    cdef double nu, pw
    cdef double* A = W.A
    cdef double* row
    cdef const double* f
    cdef const double* fd
    cdef const double* mm
    cdef const double* dm
    cdef const double* uc
    cdef const double* M = W.M
    for k in range(T.nb):
        mu = T.b_mu[k]
        m = T.b_mono[k]
        nu = T.mono_nu[m]
        f = W.f + mu * cap
        fd = W.fd + mu * cap
        mm = W.mono + m * cap
        row = dM + (<Py_ssize_t>k) * L
        for j in range(nn):
            A[j] = (fd[j] - nu * f[j] * W.invr[j]) * mm[j]
        for c in range(3):
            d = T.mono_down[3 * m + c]
            uc = W.u + c * cap
            if d < 0:
                for j in range(nn):
                    row[3 * j + c] = A[j] * uc[j]
            else:
                pw = T.mono_pow[3 * m + c]
                dm = W.mono + d * cap
                for j in range(nn):
                    row[3 * j + c] = A[j] * uc[j] + pw * f[j] * dm[j] * W.invr[j]
    if T.zero_comp and T.nmom > T.nb:
        memset(dM + (<Py_ssize_t>T.nb) * L, 0, (<Py_ssize_t>(T.nmom - T.nb)) * L * sizeof(double))
    x0 = 0
    while x0 < L:
        w = L - x0
        if w > JAC_CHUNK:
            w = JAC_CHUNK
        mtp_jac_times(dM, L, x0, w, T.nruns, T.run_start, T.run_k, T.run_first, T.t_i0,
                      T.t_i1, T.t_mult, M)
        x0 = x0 + w


cdef void scatter_column(const double* Da, const double* Ba, Py_ssize_t a0, Py_ssize_t a1,
                         Py_ssize_t pbase, const int64_t* offsets, const int64_t* index,
                         const double* vec, double* F, double* V, double* e) noexcept nogil:
    """One basis function: pair derivatives Da (pairs, 3) of atoms a0..a1 into forces F (N, 3),
    virial V (3, 3) and energy e (running sums, continued across chunks in atom order)."""
    cdef Py_ssize_t i, p, j, q
    cdef double dx, dy, dz, rx, ry, rz, fx, fy, fz
    cdef double ea = e[0]
    cdef double v0 = V[0], v1 = V[1], v2 = V[2], v3 = V[3], v4 = V[4], v5 = V[5]
    cdef double v6 = V[6], v7 = V[7], v8 = V[8]
    for i in range(a0, a1):
        ea = ea + Ba[i - a0]
        fx = 0.0
        fy = 0.0
        fz = 0.0
        for p in range(offsets[i], offsets[i + 1]):
            j = index[p]
            q = 3 * (p - pbase)
            dx = Da[q]
            dy = Da[q + 1]
            dz = Da[q + 2]
            rx = vec[3 * p]
            ry = vec[3 * p + 1]
            rz = vec[3 * p + 2]
            fx = fx + dx
            fy = fy + dy
            fz = fz + dz
            F[3 * j] -= dx
            F[3 * j + 1] -= dy
            F[3 * j + 2] -= dz
            v0 = v0 - dx * rx
            v1 = v1 - dx * ry
            v2 = v2 - dx * rz
            v3 = v3 - dy * rx
            v4 = v4 - dy * ry
            v5 = v5 - dy * rz
            v6 = v6 - dz * rx
            v7 = v7 - dz * ry
            v8 = v8 - dz * rz
        F[3 * i] += fx
        F[3 * i + 1] += fy
        F[3 * i + 2] += fz
    e[0] = ea
    V[0] = v0
    V[1] = v1
    V[2] = v2
    V[3] = v3
    V[4] = v4
    V[5] = v5
    V[6] = v6
    V[7] = v7
    V[8] = v8


cdef double site_energy(const Tab* T, Work* W, int ti, int nn, const double* species,
                        const double* moment) noexcept nogil:
    cdef double e = species[ti]
    cdef int a, j
    for a in range(T.S):
        e += moment[a] * W.M[T.mapping[a]]
    for j in range(nn):
        e += W.erep[j]
    return e


# ------------------------------------------------------------------------ the model
# ------------------------------------------------------- batched small configurations
cdef struct Scratch:
    # one thread's buffers for direct_rows_one, reused from configuration to configuration
    Work* W
    Pair* buf
    Py_ssize_t bcap
    Py_ssize_t vcap
    int64_t* blk
    int64_t* cnt
    int64_t* offs
    int64_t* idx
    double* vec
    double* part       # (npar,) one block's energy-gradient sum (energy rows of > 64 atoms)


cdef Scratch* scratch_alloc(Py_ssize_t maxn) noexcept nogil:
    cdef Scratch* S = <Scratch*> calloc(1, sizeof(Scratch))
    if S == NULL:
        return NULL
    S.blk = <int64_t*> malloc((3 * maxn + 2) * sizeof(int64_t))
    if S.blk == NULL:
        free(S)
        return NULL
    S.cnt = S.blk + maxn + 1
    S.offs = S.blk + 2 * maxn + 1
    return S


cdef void scratch_free(Scratch* S) noexcept nogil:
    if S != NULL:
        work_free(S.W)
        free(S.buf)
        free(S.blk)
        free(S.idx)
        free(S.vec)
        free(S.part)
        free(S)


cdef int direct_rows_one(const Tab* T, Scratch* S, const double* lat, const double* pos,
                         const int64_t* types, Py_ssize_t na, double cutoff,
                         double max_images, const double* radial, const double* moment,
                         double* out, Py_ssize_t npar, bint per_atom, bint energy,
                         double scale) noexcept nogil:
    """Rows of one configuration for Kernel.energy_rows_direct (one thread): the neighbour
    search of _neighbors.build_direct, its CSR arrays, then energy_grad's per-atom steps.
    Returns 0 or a DIRECT_* status (rows untouched)."""
    cdef Py_ssize_t i, k, p, tot = 0, maxnn = 0
    cdef int st, nn, ti
    cdef const Pair* pr
    cdef double* row
    cdef double* acc
    if S == NULL:
        return DIRECT_NOMEM
    st = _direct_pairs(lat, NULL, pos, na, cutoff, max_images, &S.buf, &S.bcap, S.blk,
                       S.cnt, NULL)
    if st != DIRECT_OK:
        return st
    for i in range(na):
        S.offs[i] = tot
        tot += S.cnt[i]
        if S.cnt[i] > maxnn:
            maxnn = S.cnt[i]
    S.offs[na] = tot
    if tot > S.vcap:
        free(S.idx)
        free(S.vec)
        S.vcap = tot + tot // 4 + 16
        S.idx = <int64_t*> malloc(S.vcap * sizeof(int64_t))
        S.vec = <double*> malloc(3 * S.vcap * sizeof(double))
        if S.idx == NULL or S.vec == NULL:
            free(S.idx)
            free(S.vec)
            S.idx = NULL
            S.vec = NULL
            S.vcap = 0
            return DIRECT_NOMEM
    if maxnn > 2147483647:
        return DIRECT_NOMEM
    if S.W == NULL or S.W.cap < maxnn:
        work_free(S.W)
        S.W = work_alloc(T, <int>(maxnn + maxnn // 4 + 8))
        if S.W == NULL:
            return DIRECT_NOMEM
    for i in range(na):
        p = S.offs[i]
        for k in range(S.cnt[i]):
            pr = &S.buf[S.blk[i] + k]
            S.idx[p + k] = pr.j
            S.vec[3 * (p + k)] = pr.x
            S.vec[3 * (p + k) + 1] = pr.y
            S.vec[3 * (p + k) + 2] = pr.z
    row = out + (na if per_atom else 0) * npar
    # the energy row is summed as Kernel.energy_grad sums it: blocks of ENERGY_BLOCK
    # atoms, each from +0.0 in atom order, added in block order (one block: directly)
    acc = row
    if energy and na > ENERGY_BLOCK:
        if S.part == NULL:
            S.part = <double*> malloc(npar * sizeof(double))
            if S.part == NULL:
                return DIRECT_NOMEM
        acc = S.part
    for i in range(na):
        if energy and acc != row and i % ENERGY_BLOCK == 0:
            memset(acc, 0, npar * sizeof(double))
        ti = energy_steps(T, S.W, i, S.offs, types, S.idx, S.vec, radial, moment, &nn)
        if per_atom:
            energy_grad_atom(T, S.W, ti, nn, 1.0, out + i * npar)
        if energy:
            energy_grad_atom(T, S.W, ti, nn, 1.0, acc)
            if acc != row and (i % ENERGY_BLOCK == ENERGY_BLOCK - 1 or i == na - 1):
                for k in range(npar):
                    row[k] = row[k] + acc[k]
    if energy:
        for k in range(npar):
            row[k] = row[k] * scale
    return 0


cdef struct Nbl:
    # a checked CSR neighbour list, as the kernels read it
    Py_ssize_t n           # atoms
    int cap                # largest neighbour count
    const int64_t* tp      # types (N,), NULL when N == 0
    const int64_t* ip      # neighbour index (M,), NULL when M == 0
    const double* vp       # pair vectors (M, 3), NULL when M == 0


cdef class Kernel:
    """Precomputed tables of one MTP structure (moments, contractions, radial basis).

    Parameters
    ----------
    species_count, radial_funcs_count, radial_basis_size : int
        C, K, R.
    alpha_moments_count : int
        Number of moments (basic + composite).
    alpha_index_basic : (nb, 4) int array
        (mu, a, b, c) per basic moment.
    alpha_index_times : (nt, 4) int array
        (i0, i1, mult, k), applied in this order.
    alpha_moment_mapping : (S,) int array
    min_dist, max_dist, scaling : float
    repulsive : bool
        True for RBChebyshev_repuls.
    """

    cdef Tab T
    cdef object _keep        # numpy arrays owning the table memory
    cdef readonly int n_params
    cdef readonly int n_radial
    cdef bint _selfref       # some contraction reads the moment it writes (no Jacobian kernel)

    def __init__(self, int species_count, int radial_funcs_count, int radial_basis_size,
                 int alpha_moments_count, alpha_index_basic, alpha_index_times,
                 alpha_moment_mapping, double min_dist, double max_dist, double scaling,
                 bint repulsive=False):
        basic = np.asarray(alpha_index_basic, dtype=np.int64).reshape(-1, 4)
        times = np.asarray(alpha_index_times, dtype=np.int64).reshape(-1, 4)
        mapping = np.asarray(alpha_moment_mapping, dtype=np.int64).reshape(-1)
        nb, nt, nmom = len(basic), len(times), int(alpha_moments_count)
        if nb > nmom or (nt and (times[:, [0, 1, 3]].max() >= nmom or times.min() < 0)) or \
                (len(mapping) and (mapping.max() >= nmom or mapping.min() < 0)):
            raise ValueError("moment index out of range (alpha_moments_count too small)")
        if nt and np.any(times[:, 3] < nb):
            raise ValueError("alpha_index_times writes into a basic moment")
        if nb and (basic[:, 0].min() < 0 or basic[:, 0].max() >= radial_funcs_count
                   or basic[:, 1:].min() < 0):
            raise ValueError("alpha_index_basic has a radial index >= radial_funcs_count")
        if not max_dist > min_dist:
            raise ValueError("max_dist must be larger than min_dist")
        # distinct monomials and the closure under lowering one exponent, sorted by rank
        monos = {(0, 0, 0)}
        todo = [tuple(int(v) for v in row[1:]) for row in basic]
        while todo:
            abc = todo.pop()
            if abc in monos:
                continue
            monos.add(abc)
            for c in range(3):
                if abc[c] > 0:
                    low = list(abc)
                    low[c] -= 1
                    todo.append(tuple(low))
        order = sorted(monos, key=lambda t: (sum(t), (-t[0], -t[1], -t[2])))
        pos = {abc: q for q, abc in enumerate(order)}
        nmono = len(order)
        mono_par = np.full(nmono, -1, dtype=np.int32)
        mono_comp = np.zeros(nmono, dtype=np.int32)
        mono_down = np.full((nmono, 3), -1, dtype=np.int32)
        mono_pow = np.zeros((nmono, 3))
        mono_nu = np.zeros(nmono)
        for q, abc in enumerate(order):
            mono_nu[q] = sum(abc)
            for c in range(3):
                mono_pow[q, c] = abc[c]
                if abc[c] > 0:
                    low = list(abc)
                    low[c] -= 1
                    mono_down[q, c] = pos[tuple(low)]
            if q:
                c = next(c for c in range(3) if abc[c] > 0)
                mono_par[q] = mono_down[q, c]
                mono_comp[q] = c
        b_mu = basic[:, 0].astype(np.int32)
        b_mono = np.array([pos[tuple(int(v) for v in row[1:])] for row in basic], dtype=np.int32)
        grp_k = np.argsort(b_mono, kind="stable").astype(np.int32)
        grp_start = np.searchsorted(b_mono[grp_k], np.arange(nmono + 1)).astype(np.int32)
        t_i0 = np.ascontiguousarray(times[:, 0], dtype=np.int32)
        t_i1 = np.ascontiguousarray(times[:, 1], dtype=np.int32)
        t_mult = np.ascontiguousarray(times[:, 2], dtype=np.float64)
        t_k = np.ascontiguousarray(times[:, 3], dtype=np.int32)
        mapping32 = mapping.astype(np.int32)
        if nt:
            brk = np.flatnonzero(np.diff(times[:, 3])) + 1
            run_start = np.concatenate([[0], brk, [nt]]).astype(np.int32)
        else:
            run_start = np.zeros(1, dtype=np.int32)
        run_k = np.ascontiguousarray(times[run_start[:-1], 3], dtype=np.int32)
        run_first = np.zeros(max(len(run_k), 1), dtype=np.int8)
        seen = set()
        for q, k in enumerate(run_k.tolist()):
            if k not in seen:
                run_first[q] = 1
                seen.add(k)
        zero_comp = len(seen) < nmom - nb
        if zero_comp:
            run_first[:] = 0
        self._keep = [run_start, run_k, b_mu, b_mono, mono_par, mono_comp, mono_down, mono_pow, mono_nu,
                      grp_start, grp_k, t_i0, t_i1, t_k, t_mult, mapping32, run_first]
        T = &self.T
        T.C = species_count
        T.K = radial_funcs_count
        T.R = radial_basis_size
        T.nmom = nmom
        T.nb = nb
        T.nt = nt
        T.S = len(mapping)
        T.nmono = nmono
        T.repuls = repulsive
        T.rmin = min_dist
        T.rmax = max_dist
        T.scaling = scaling
        T.b_mu = _iptr(b_mu)
        T.b_mono = _iptr(b_mono)
        T.mono_par = _iptr(mono_par)
        T.mono_comp = _iptr(mono_comp)
        T.mono_down = _iptr(mono_down)
        T.mono_pow = _dptr(mono_pow)
        T.mono_nu = _dptr(mono_nu)
        T.grp_start = _iptr(grp_start)
        T.grp_k = _iptr(grp_k)
        T.t_i0 = _iptr(t_i0)
        T.t_i1 = _iptr(t_i1)
        T.t_k = _iptr(t_k)
        T.t_mult = _dptr(t_mult)
        T.mapping = _iptr(mapping32)
        T.nruns = len(run_k)
        T.run_start = _iptr(run_start)
        T.run_k = _iptr(run_k)
        T.run_first = <char*>_cptr(run_first)
        T.zero_comp = zero_comp
        self.n_radial = species_count * species_count * radial_funcs_count * radial_basis_size
        self.n_params = self.n_radial + species_count + T.S
        mtp_have_avx2()          # CPU feature detection once, before any threads
        self._selfref = bool(nt and np.any((times[:, 3] == times[:, 0]) |
                                           (times[:, 3] == times[:, 1])))

    @property
    def n_monomials(self):
        """Number of distinct unit-vector monomials evaluated per neighbour."""
        return self.T.nmono

    # ------------------------------------------------------------------ checks
    cdef Nbl _check(self, const double[::1] radial, const double[::1] species,
                    const double[::1] moment, const int64_t[::1] types,
                    const int64_t[::1] offsets, const int64_t[::1] index,
                    const double[:, ::1] vectors) except *:
        """Check coefficients and neighbour list (``species``/``moment`` None: radial
        only); return the list's pointers and largest neighbour count."""
        if species is None:
            if radial.shape[0] != self.n_radial:
                raise ValueError("coefficient arrays do not match the potential")
        else:
            self._check_coeffs(radial, species, moment)
        cdef Py_ssize_t n = types.shape[0], p
        cdef Nbl L
        cdef int bad = 0
        if offsets.shape[0] != n + 1 or offsets[0] != 0 or offsets[n] != index.shape[0] or \
                vectors.shape[0] != index.shape[0] or vectors.shape[1] != 3:
            raise ValueError("inconsistent neighbour list arrays")
        self._check_types(types)  # reported first when both are wrong
        with nogil:
            for p in range(index.shape[0]):
                if index[p] < 0 or index[p] >= n:
                    bad = 1
        if bad == 1:
            raise ValueError("neighbour index out of range")
        L.n = n
        L.cap = _max_nn(offsets)
        L.tp = &types[0] if n else NULL
        L.ip = &index[0] if index.shape[0] else NULL
        L.vp = &vectors[0, 0] if index.shape[0] else NULL
        return L

    cdef void _check_coeffs(self, const double[::1] radial, const double[::1] species,
                            const double[::1] moment) except *:
        if radial.shape[0] != self.n_radial or species.shape[0] != self.T.C or \
                moment.shape[0] != self.T.S:
            raise ValueError("coefficient arrays do not match the potential")

    cdef void _check_types(self, const int64_t[::1] types) except *:
        cdef Py_ssize_t p
        cdef int bad = 0
        with nogil:
            for p in range(types.shape[0]):
                if types[p] < 0 or types[p] >= self.T.C:
                    bad = 1
        if bad:
            raise ValueError("atom type out of range")

    # ------------------------------------------------------------------ entry points
    def efs(self, const double[::1] radial, const double[::1] species,
            const double[::1] moment, const int64_t[::1] types, const int64_t[::1] offsets,
            const int64_t[::1] index, const double[:, ::1] vectors, double[::1] site_out,
            double[:, ::1] dvdr_out, int num_threads=1):
        """Site energies and per-pair gradients.

        IN: coefficients, types (N,), CSR neighbour list.
        OUT: ``site_out`` (N,) V_i; ``dvdr_out`` (M, 3) dV_i/dr_ij per pair.
        Use :func:`accumulate_forces` to turn dvdr into forces and the virial.
        """
        cdef Nbl L = self._check(radial, species, moment, types, offsets, index, vectors)
        if site_out.shape[0] != types.shape[0] or dvdr_out.shape[0] != index.shape[0]:
            raise ValueError("output arrays have the wrong shape")
        cdef Py_ssize_t n = L.n, i
        cdef int nn, ti
        cdef int failed = 0
        cdef int* failp = &failed
        cdef Work* W = NULL
        cdef const Tab* T = &self.T
        cdef double* dp = &dvdr_out[0, 0] if index.shape[0] else NULL
        if n == 0:
            return
        with nogil, parallel(num_threads=_nthreads(num_threads, n)):
            W = work_alloc(T, L.cap)
            if W == NULL:
                failp[0] = 1
            else:
                for i in prange(n, schedule="dynamic", chunksize=16):
                    ti = <int>L.tp[i]
                    nn = <int>(offsets[i + 1] - offsets[i])
                    prep(T, W, ti, nn, offsets[i], L.tp, L.ip, L.vp, &radial[0])
                    forward(T, W, nn)
                    backward(T, W, &moment[0])
                    site_out[i] = site_energy(T, W, ti, nn, &species[0], &moment[0])
                    pair_grad(T, W, nn, dp, offsets[i])
                work_free(W)
        if failed:
            raise MemoryError("MTP kernel: cannot allocate work buffers")

    def basis(self, const double[::1] radial, const int64_t[::1] types,
              const int64_t[::1] offsets, const int64_t[::1] index,
              const double[:, ::1] vectors, double[:, ::1] out, int num_threads=1):
        """Basis values B_1..B_S per atom (B_0 = 1 is not stored).

        IN: radial coefficients, types, neighbour list.  OUT: ``out`` (N, S).
        """
        cdef Nbl L = self._check(radial, None, None, types, offsets, index, vectors)
        if out.shape[0] != types.shape[0] or out.shape[1] != self.T.S:
            raise ValueError("output array has the wrong shape")
        cdef Py_ssize_t n = L.n, i
        cdef int nn, ti, a
        cdef int failed = 0
        cdef int* failp = &failed
        cdef Work* W = NULL
        cdef const Tab* T = &self.T
        if n == 0:
            return
        with nogil, parallel(num_threads=_nthreads(num_threads, n)):
            W = work_alloc(T, L.cap)
            if W == NULL:
                failp[0] = 1
            else:
                for i in prange(n, schedule="dynamic", chunksize=16):
                    ti = <int>L.tp[i]
                    nn = <int>(offsets[i + 1] - offsets[i])
                    prep(T, W, ti, nn, offsets[i], L.tp, L.ip, L.vp, &radial[0], False)
                    forward(T, W, nn)
                    for a in range(T.S):
                        out[i, a] = W.M[T.mapping[a]]
                work_free(W)
        if failed:
            raise MemoryError("MTP kernel: cannot allocate work buffers")

    def energy_grad(self, const double[::1] radial, const double[::1] species,
                    const double[::1] moment, const int64_t[::1] types,
                    const int64_t[::1] offsets, const int64_t[::1] index,
                    const double[:, ::1] vectors, double[:, ::1] out, bint per_atom,
                    int num_threads=1):
        """Parameter gradients of the energy.

        IN: coefficients, types, neighbour list.
        OUT: ``per_atom`` True: ``out`` (N, n) row i = dV_i/dtheta.  False: ``out``
        (1, n) zero-initialised, row 0 = dE/dtheta, summed block by block: the atoms in
        blocks of ENERGY_BLOCK, each block accumulated in atom order from +0.0 by one
        thread, the block sums added in block order; so the result does not depend on
        the number of threads (one block: the plain sum in atom order).
        Site energies of the repulsive term do not depend on theta.
        """
        cdef Nbl L = self._check(radial, species, moment, types, offsets, index, vectors)
        # per atom: independent rows, handed out in chunks of 16 atoms; summed: blocks of
        # ENERGY_BLOCK atoms, each block's partial sum in its own row of ``part``
        cdef Py_ssize_t blk = 16 if per_atom else ENERGY_BLOCK
        cdef Py_ssize_t n = L.n, i, b, k, nblk = (n + blk - 1) // blk
        cdef int nt = _nthreads(num_threads, n)
        if out.shape[1] != self.n_params or (per_atom and out.shape[0] != n) or \
                (not per_atom and out.shape[0] < 1):
            raise ValueError("output array has the wrong shape")
        cdef int failed = 0
        cdef int* failp = &failed
        cdef Work* W = NULL
        cdef const Tab* T = &self.T
        cdef double* op = &out[0, 0]
        cdef Py_ssize_t npar = self.n_params
        cdef double* part = NULL
        if n == 0:
            return
        if not per_atom and nblk > 1:
            part = <double*> calloc(nblk * npar, sizeof(double))
            if part == NULL:
                raise MemoryError("MTP kernel: cannot allocate work buffers")
        if nblk < nt:
            nt = <int> nblk
        with nogil, parallel(num_threads=nt):
            W = work_alloc(T, L.cap)
            if W == NULL:
                failp[0] = 1
            else:
                for b in prange(nblk, schedule="dynamic", chunksize=1):
                    for i in range(b * blk, min(n, (b + 1) * blk)):
                        energy_atom(T, W, i, &offsets[0], L.tp, L.ip, L.vp, &radial[0],
                                    &moment[0], op + i * npar if per_atom else
                                    (op if part == NULL else part + b * npar))
                work_free(W)
        if part != NULL:
            for b in range(nblk):
                for k in range(npar):
                    op[k] = op[k] + part[b * npar + k]
            free(part)
        if failed:
            raise MemoryError("MTP kernel: cannot allocate work buffers")

    def energy_rows_direct(self, const double[::1] radial, const double[::1] species,
                           const double[::1] moment, const double[:, :, ::1] lattices,
                           const double[:, ::1] positions, const int64_t[::1] types,
                           const int64_t[::1] starts, double max_images,
                           const double[::1] scales, double[:, ::1] out,
                           const int64_t[::1] row_starts, bint per_atom, bint energy,
                           signed char[::1] status, int num_threads=1):
        """Energy-gradient maxvol rows of many small configurations, in parallel over them.

        IN: configuration ``c`` has the lattice ``lattices[c]`` (a row is periodic iff it
        is not zero) and the atoms ``starts[c] <= a < starts[c + 1]`` of ``positions`` and
        ``types``.  For each configuration, one thread finds the neighbours within
        ``max_dist`` with the all-pairs search of ``_neighbors.build_direct`` (the same
        code: same pairs, same vectors) and evaluates the rows with the code of
        :meth:`energy_grad` at ``num_threads=1`` (atoms in order; the energy row
        accumulated from +0.0, then multiplied by ``scales[c]``), so the rows are the same
        bits as those calls, whatever ``num_threads``.

        OUT: ``out`` zero-initialised; configuration ``c`` owns rows
        ``row_starts[c] <= r < row_starts[c + 1]``: with ``per_atom`` one row dV_i/dtheta
        per atom, then with ``energy`` one row ``scales[c] * dE/dtheta``.  ``status[c]``
        is 0, or non-zero when the search declined or failed (bad lattice, too many
        images, coordinates beyond 1e6, no memory): that configuration's rows are left
        zero and the caller evaluates it the usual way (which reports any error).
        """
        self._check_coeffs(radial, species, moment)
        cdef Py_ssize_t B = starts.shape[0] - 1, N = types.shape[0]
        cdef Py_ssize_t c, i, a0, na, maxn = 0
        cdef Py_ssize_t npar = self.n_params
        if B < 0 or lattices.shape[0] != B or lattices.shape[1] != 3 or \
                lattices.shape[2] != 3 or positions.shape[0] != N or \
                (N and positions.shape[1] != 3) or scales.shape[0] != B or \
                status.shape[0] != B or row_starts.shape[0] != B + 1 or starts[0] != 0 or \
                starts[B] != N or out.shape[1] != npar or row_starts[0] != 0 or \
                row_starts[B] != out.shape[0]:
            raise ValueError("inconsistent batch arrays")
        for c in range(B):
            na = starts[c + 1] - starts[c]
            if na < 0 or row_starts[c + 1] - row_starts[c] != \
                    (na if per_atom else 0) + (1 if energy else 0):
                raise ValueError("inconsistent batch arrays")
            if na > maxn:
                maxn = na
        self._check_types(types)
        if B == 0:
            return
        cdef int nt = num_threads if num_threads > 0 else mtp_max_threads()
        if nt < 1:
            nt = 1
        if nt > B:
            nt = <int>B
        cdef double cutoff = self.T.rmax
        cdef const Tab* T = &self.T
        cdef const int64_t* tp = &types[0] if N else NULL
        cdef const double* pos = &positions[0, 0] if N else NULL
        cdef const double* lat = &lattices[0, 0, 0]
        cdef double* op = &out[0, 0] if out.shape[0] else NULL
        cdef Scratch* S = NULL
        with nogil, parallel(num_threads=nt):
            S = scratch_alloc(maxn)
            for c in prange(B, schedule="dynamic", chunksize=1):
                a0 = starts[c]
                status[c] = <signed char> direct_rows_one(
                    T, S, lat + 9 * c, pos + 3 * a0 if pos != NULL else NULL, tp + a0,
                    starts[c + 1] - a0, cutoff, max_images, &radial[0], &moment[0],
                    op + row_starts[c] * npar if op != NULL else NULL, npar, per_atom,
                    energy, scales[c])
            scratch_free(S)

    def loss_grad(self, const double[::1] radial, const double[::1] species,
                  const double[::1] moment, const int64_t[::1] types,
                  const int64_t[::1] offsets, const int64_t[::1] index,
                  const double[:, ::1] vectors, double dl_de, const double[:, ::1] dl_df,
                  const double[:, ::1] dl_ds, double[:, ::1] out, int num_threads=1):
        """dL/dtheta for a loss L(E, F, S) given its adjoints, without forming Jacobians.

        IN: coefficients, types, neighbour list; ``dl_de`` = dL/dE; ``dl_df`` (N, 3) =
        dL/dF; ``dl_ds`` (3, 3) = dL/dS_ab for the full (3, 3) virial S (for a loss written
        in the 6-vector xx yy zz yz xz xy, put half of each off-diagonal derivative in
        both symmetric slots).
        OUT: ``out`` (n_threads, n) zero-initialised; the sum of its rows is dL/dtheta.

        Uses Sum_l dL/dF_l . F_l + Sum_ab dL/dS_ab S_ab = Sum_ij w_ij . dV_i/dr_ij with
        w_ij = dL/dF_i - dL/dF_j - (dL/dS) r_ij, then the tangent of dV_i/dtheta along w.
        """
        cdef Nbl L = self._check(radial, species, moment, types, offsets, index, vectors)
        cdef Py_ssize_t n = L.n, i, p
        cdef int nt = _nthreads(num_threads, n)
        if out.shape[1] != self.n_params or out.shape[0] < nt or dl_df.shape[0] != n or \
                dl_df.shape[1] != 3 or dl_ds.shape[0] != 3 or dl_ds.shape[1] != 3:
            raise ValueError("array has the wrong shape")
        cdef int nn, ti, j, c
        cdef int failed = 0
        cdef int* failp = &failed
        cdef Work* W = NULL
        cdef const Tab* T = &self.T
        cdef const int64_t* ip = L.ip
        cdef const double* vp = L.vp
        cdef double* op = &out[0, 0]
        cdef Py_ssize_t npar = self.n_params
        cdef double* row
        if n == 0:
            return
        with nogil, parallel(num_threads=nt):
            W = work_alloc(T, L.cap)
            if W == NULL:
                failp[0] = 1
            else:
                for i in prange(n, schedule="dynamic", chunksize=16):
                    ti = <int>L.tp[i]
                    nn = <int>(offsets[i + 1] - offsets[i])
                    row = op + threadid() * npar
                    prep(T, W, ti, nn, offsets[i], L.tp, ip, vp, &radial[0])
                    forward(T, W, nn)
                    backward(T, W, &moment[0])
                    radial_h(T, W, nn)
                    if dl_de != 0.0:
                        energy_grad_atom(T, W, ti, nn, dl_de, row)
                    for j in range(nn):
                        p = offsets[i] + j
                        for c in range(3):
                            W.w[c * W.cap + j] = (
                                dl_df[i, c] - dl_df[ip[p], c]
                                - dl_ds[c, 0] * vp[3 * p] - dl_ds[c, 1] * vp[3 * p + 1]
                                - dl_ds[c, 2] * vp[3 * p + 2])
                    tangent_grad(T, W, ti, nn, 1.0, row)
                work_free(W)
        if failed:
            raise MemoryError("MTP kernel: cannot allocate work buffers")

    def basis_efs(self, const double[::1] radial, const int64_t[::1] types,
                  const int64_t[::1] offsets, const int64_t[::1] index,
                  const double[:, ::1] vectors, double[::1] e_out, double[:, :, ::1] f_out,
                  double[:, :, ::1] v_out, int num_threads=1, Py_ssize_t pair_budget=0):
        """Energy, forces and virial of every basis function of one configuration.

        For alpha = 1..S, E_alpha = sum_i B_alpha(i); its forces and PlusStress virial use
        the same conventions as :meth:`efs` (the repulsive pair term is not included).
        These are the columns of the moment coefficients in the linear sub-problem of
        training; one pass over the atoms gives all S of them.

        IN: radial coefficients, types, one configuration's CSR neighbour list.
        OUT (overwritten): ``e_out`` (S,) E_alpha; ``f_out`` (S, N, 3) forces of E_alpha;
        ``v_out`` (S, 3, 3) virial of E_alpha.

        Per atom (OpenMP over atoms): the moment Jacobian dM_k/dr_ij by forward mode
        (:func:`moment_jac`, cost ~ n_times * 3 n_neighbours), copied per pair into a
        buffer (S, pairs, 3); then (OpenMP over alpha, :func:`scatter_column`) every column
        is accumulated atom by atom, pair by pair (F_i gets the sum over its own pairs
        once).  The summation order is fixed, so the result does not depend on the number
        of threads.  Atoms are processed in chunks whose pair buffer
        holds at most ``pair_budget`` doubles (0: 2**23, i.e. 64 MiB), which bounds the
        memory and does not change the result either.
        """
        cdef Nbl L = self._check(radial, None, None, types, offsets, index, vectors)
        cdef Py_ssize_t n = L.n, S = self.T.S
        if e_out.shape[0] != S or f_out.shape[0] != S or f_out.shape[1] != n or \
                f_out.shape[2] != 3 or v_out.shape[0] != S or v_out.shape[1] != 3 or \
                v_out.shape[2] != 3:
            raise ValueError("output arrays have the wrong shape")
        if self._selfref:
            raise ValueError("alpha_index_times has a contraction that reads the moment it "
                             "writes; basis_efs needs every factor complete before use")
        e_out[:] = 0.0
        if S == 0 or n == 0:
            return
        f_out[:, :, :] = 0.0
        v_out[:, :, :] = 0.0
        if pair_budget <= 0:
            pair_budget = 1 << 23
        cdef int cap = L.cap, nn, ti, nt, a
        cdef Py_ssize_t maxpairs = max(<Py_ssize_t>cap, pair_budget // (3 * S))
        cdef Py_ssize_t a0, a1, i, pbase, npc, ncap
        cdef int failed = 0
        cdef int* failp = &failed
        cdef Work* W = NULL
        cdef double* dM = NULL
        cdef const Tab* T = &self.T
        cdef const int64_t* tp = L.tp
        cdef const int64_t* ip = L.ip
        cdef const double* vp = L.vp
        cdef const double* rp = &radial[0] if radial.shape[0] else NULL
        cdef double* ep = &e_out[0]
        cdef double* fp = &f_out[0, 0, 0]
        cdef double* vop = &v_out[0, 0, 0]
        # chunk capacity: atoms and pairs of the largest chunk
        cdef Py_ssize_t max_atoms = 1, max_p = 1
        a0 = 0
        while a0 < n:
            a1 = a0 + 1
            while a1 < n and offsets[a1 + 1] - offsets[a0] <= maxpairs:
                a1 += 1
            max_atoms = max(max_atoms, a1 - a0)
            max_p = max(max_p, offsets[a1] - offsets[a0])
            a0 = a1
        cdef double* D = <double*>malloc(max_p * 3 * S * sizeof(double))
        cdef double* B = <double*>malloc(max_atoms * S * sizeof(double))
        if D == NULL or B == NULL:
            free(D)
            free(B)
            raise MemoryError("MTP kernel: cannot allocate the basis Jacobian buffers")
        nt = num_threads if num_threads > 0 else mtp_max_threads()
        if nt < 1:
            nt = 1
        ncap = (<Py_ssize_t>T.nmom) * 3 * (cap if cap > 0 else 1)
        try:
            with nogil:
                a0 = 0
                while a0 < n and not failed:
                    a1 = a0 + 1
                    while a1 < n and offsets[a1 + 1] - offsets[a0] <= maxpairs:
                        a1 += 1
                    pbase = offsets[a0]
                    npc = offsets[a1] - pbase
                    with parallel(num_threads=nt):
                        W = work_alloc(T, cap)
                        dM = <double*>malloc(ncap * sizeof(double))
                        if W == NULL or dM == NULL:
                            failp[0] = 1
                        else:
                            for i in prange(a0, a1, schedule="dynamic", chunksize=1):
                                ti = <int>tp[i]
                                nn = <int>(offsets[i + 1] - offsets[i])
                                prep(T, W, ti, nn, offsets[i], tp, ip, vp, rp)
                                forward(T, W, nn)
                                moment_jac(T, W, nn, dM)
                                for a in range(T.S):
                                    B[a * (a1 - a0) + (i - a0)] = W.M[T.mapping[a]]
                                    memcpy(D + a * 3 * npc + 3 * (offsets[i] - pbase),
                                           dM + (<Py_ssize_t>T.mapping[a]) * 3 * nn,
                                           3 * nn * sizeof(double))
                        work_free(W)
                        free(dM)
                    if failed:
                        break
                    for a in prange(T.S, num_threads=nt, schedule="static"):
                        scatter_column(D + a * 3 * npc, B + a * (a1 - a0), a0, a1, pbase,
                                       &offsets[0], ip, vp, fp + a * 3 * n, vop + a * 9,
                                       ep + a)
                    a0 = a1
        finally:
            free(D)
            free(B)
        if failed:
            raise MemoryError("MTP kernel: cannot allocate work buffers")

    def efs_jacobian(self, const double[::1] radial, const double[::1] species,
                     const double[::1] moment, const int64_t[::1] types,
                     const int64_t[::1] offsets, const int64_t[::1] index,
                     const double[:, ::1] vectors, double[::1] de, double[:, :, ::1] dforces,
                     double[:, ::1] dvirial):
        """Explicit Jacobians of energy, forces and virial w.r.t. theta (serial; small cells).

        OUT (zero-initialised by the caller): ``de`` (n,) dE/dtheta; ``dforces`` (N, 3, n)
        dF_la/dtheta; ``dvirial`` (9, n) dS_ab/dtheta, row 3a + b.
        """
        cdef Nbl L = self._check(radial, species, moment, types, offsets, index, vectors)
        cdef Py_ssize_t n = L.n, i, p, q, l
        if de.shape[0] != self.n_params or dforces.shape[0] != n or dforces.shape[1] != 3 or \
                dforces.shape[2] != self.n_params or dvirial.shape[0] != 9 or \
                dvirial.shape[1] != self.n_params:
            raise ValueError("output array has the wrong shape")
        if n == 0:
            return
        cdef int cap = L.cap, nn, ti, j, c, a, b, nl
        cdef const Tab* T = &self.T
        cdef const int64_t* tp = L.tp
        cdef const int64_t* ip = L.ip
        cdef const double* vp = L.vp
        cdef Work* W = work_alloc(T, cap)
        cdef int64_t* atoms = <int64_t*>malloc((cap + 1) * sizeof(int64_t))
        if W == NULL or atoms == NULL:
            work_free(W)
            free(atoms)
            raise MemoryError("MTP kernel: cannot allocate work buffers")
        try:
            with nogil:
                for i in range(n):
                    ti = <int>tp[i]
                    nn = <int>(offsets[i + 1] - offsets[i])
                    prep(T, W, ti, nn, offsets[i], tp, ip, vp, &radial[0])
                    forward(T, W, nn)
                    backward(T, W, &moment[0])
                    radial_h(T, W, nn)
                    energy_grad_atom(T, W, ti, nn, 1.0, &de[0])
                    # virial rows: w_ij = e_a (r_ij)_b, dS_ab = -d(sum w . dV/dr)
                    for a in range(3):
                        for b in range(3):
                            memset(W.w, 0, 3 * W.cap * sizeof(double))
                            for j in range(nn):
                                W.w[a * W.cap + j] = vp[3 * (offsets[i] + j) + b]
                            tangent_grad(T, W, ti, nn, -1.0, &dvirial[3 * a + b, 0])
                    # force rows: F_l = sum_ij dV_i/dr_ij (delta_il - delta_jl)
                    nl = 1
                    atoms[0] = i
                    for j in range(nn):
                        l = ip[offsets[i] + j]
                        for q in range(nl):
                            if atoms[q] == l:
                                break
                        else:
                            atoms[nl] = l
                            nl = nl + 1
                    for q in range(nl):
                        l = atoms[q]
                        for c in range(3):
                            memset(W.w, 0, 3 * W.cap * sizeof(double))
                            for j in range(nn):
                                p = offsets[i] + j
                                W.w[c * W.cap + j] = (1.0 if l == i else 0.0) - \
                                    (1.0 if ip[p] == l else 0.0)
                            tangent_grad(T, W, ti, nn, 1.0, &dforces[l, c, 0])
        finally:
            work_free(W)
            free(atoms)


def accumulate_forces(const int64_t[::1] offsets, const int64_t[::1] index,
                      const double[:, ::1] vectors, const double[:, ::1] dvdr,
                      double[:, ::1] forces, double[:, ::1] virial):
    """Forces and virial from per-pair gradients (serial, deterministic).

    IN: CSR list, ``dvdr`` (M, 3).  OUT (zero-initialised by the caller): ``forces``
    (N, 3) with F_i += dV_i/dr_ij, F_j -= dV_i/dr_ij; ``virial`` (3, 3) with
    S_ab -= (dV_i/dr_ij)_a (r_ij)_b.
    """
    cdef Py_ssize_t n = offsets.shape[0] - 1, i, p, j
    cdef int a, b
    cdef double d
    if forces.shape[0] != n or dvdr.shape[0] != index.shape[0] or virial.shape[0] != 3:
        raise ValueError("array has the wrong shape")
    with nogil:
        for i in range(n):
            for p in range(offsets[i], offsets[i + 1]):
                j = index[p]
                for a in range(3):
                    d = dvdr[p, a]
                    forces[i, a] += d
                    forces[j, a] -= d
                    for b in range(3):
                        virial[a, b] -= d * vectors[p, b]


def threads_for(int num_threads, Py_ssize_t n_atoms):
    """Number of threads the kernels use for ``num_threads`` (<= 0: OpenMP default)."""
    return _nthreads(num_threads, n_atoms)


# -------------------------------------------------------------------------- helpers
cdef int _nthreads(int requested, Py_ssize_t n) noexcept nogil:
    cdef int t = requested if requested > 0 else mtp_max_threads()
    if t < 1:
        t = 1
    if n < 64:
        t = 1
    return t


cdef int _max_nn(const int64_t[::1] offsets) except -1:
    cdef Py_ssize_t i
    cdef int64_t m = 0
    for i in range(offsets.shape[0] - 1):
        if offsets[i + 1] - offsets[i] > m:
            m = offsets[i + 1] - offsets[i]
        if offsets[i + 1] < offsets[i]:
            raise ValueError("neighbour offsets are not non-decreasing")
    if m > 2147483647:
        raise ValueError("too many neighbours")
    return <int>m


cdef int* _iptr(arr):
    cdef int[::1] v = arr.reshape(-1) if arr.size else np.zeros(1, dtype=np.int32)
    if arr.size == 0:
        return NULL
    return &v[0]


cdef signed char* _cptr(arr):
    cdef signed char[::1] v = arr.reshape(-1)
    return &v[0]


cdef double* _dptr(arr):
    cdef double[::1] v = arr.reshape(-1) if arr.size else np.zeros(1)
    if arr.size == 0:
        return NULL
    return &v[0]
