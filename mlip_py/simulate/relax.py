"""Relaxation of atoms and cell with an MTP (MLIP-2's ``mlp relax``, own implementation).

The enthalpy ``H = E + p V`` (``p`` in GPa, ``p V`` converted with 160.21766208) is
minimised by BFGS with a line search (Wolfe conditions with MLIP-2's constants
``c1 = 0.1``, ``c2 = 0.5``) over

* the atomic positions, written as ``r_i = F s_i`` with reference coordinates ``s_i``, and
* a symmetric deformation ``F = I + E / l`` of the initial cell (lattice rows
  ``a_j = F a0_j``; 6 degrees of freedom, so the cell never rotates; ``l`` is a length
  balancing the cell and atom curvatures, ``sqrt(N^(1/3) V0^(2/3))``).

Gradients: ``dH/ds_i = -F^T f_i`` and ``dH/dF = (p V I - S) F^-T`` with ``S`` the
PlusStress virial (eV).  The inverse-Hessian approximation is dense up to 3000 degrees of
freedom and limited-memory (20 pairs) above.

Stopping rules (MLIP-2's options, :class:`RelaxOptions`)
--------------------------------------------------------
* converged (``relaxation_OK``) when ``max_i |f_i| < force_tolerance`` (eV/A) and
  ``max_ab |S_ab / V - p delta_ab| < stress_tolerance`` (GPa); a tolerance ``<= 0``
  switches the corresponding degrees of freedom off (and its criterion).  The cell is
  relaxed only for configurations periodic in all three directions.
* every evaluated geometry must have all interatomic distances ``>= min_dist``
  (``relaxation_MINDIST_ERROR`` otherwise);
* ``iteration_limit`` accepted BFGS steps (``relaxation_NOT_CONVERGED``);
* every step is capped so that no atom moves more than ``max_step`` (A; linearised, the
  cell part measured from the centroid of the atoms); a line search that cannot find an
  acceptable point with steps above ``min_step`` resets the Hessian
  (``Too small steps detected. Breaking linesearch``); two such failures in a row stop
  the relaxation (``relaxation_NOT_CONVERGED``);
* non-finite energies or forces: ``relaxation_ERROR``;
* with an :class:`~mlip_py.simulate.extrapolation.ExtrapolationControl` every evaluated
  geometry (accepted iterates and line-search trial points alike, as every EFS call of
  MLIP-2 is graded) is graded and, above the selection threshold, preselected; above
  the breaking threshold the relaxation stops (status ``BREAK``, MLIP-2's "Breaking
  threshold exceeded").

Log line of every accepted iteration (MLIP-2's format, numbers as C++ ``%g``)::

    cfg <n>\\titr <k>\\t dx <step>\\t md <mindist>\\te/a <E/N>\\tent <E+pV>\\tfrc <max|f|>\\tstr <max|sigma-p| GPa>[\\tgrade <%f>]

Relaxed configurations of fully periodic cells are written with the atoms wrapped into
the cell (fractional coordinates in [0, 1)), as MLIP-2 does.

Differences from MLIP-2: its exact BFGS path is not reproduced (iteration counts and
intermediate geometries differ; converged energies agree to ~1e-9 eV/atom on the golden
cases); the cell does not rotate (MLIP-2's relaxed cells carry rotations of ~1e-5); the
first geometry is evaluated once (MLIP-2 evaluates it twice, which duplicates its
preselected entry).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..configuration import Configuration
from ..errors import ConfigError, ExtrapolationError

__all__ = ["RelaxOptions", "RelaxResult", "Relaxer", "relax", "GPA", "STATUS_FEATURE"]

#: eV/A^3 -> GPa (MLIP-2's relaxation constant)
GPA = 160.21766208

#: status -> value of ``Feature from``
STATUS_FEATURE = {
    "OK": "relaxation_OK",
    "NOT_CONVERGED": "relaxation_NOT_CONVERGED",
    "MINDIST_ERROR": "relaxation_MINDIST_ERROR",
    "ERROR": "relaxation_ERROR",
    "BREAK": "relaxation_BREAK",
}

#: dense inverse Hessian up to this many degrees of freedom, L-BFGS above
DENSE_LIMIT = 3000
LBFGS_MEMORY = 20
#: initial inverse-Hessian scale (A^2/eV) before the first curvature pair is known
H0 = 1.0 / 70.0


@dataclasses.dataclass
class RelaxOptions:
    """Driver settings of ``mlp relax`` (MLIP-2's names and defaults).

    Attributes
    ----------
    pressure : float
        External pressure, GPa.
    iteration_limit : int
    min_dist : float
        A.
    force_tolerance : float
        eV/A; <= 0 keeps the atoms fixed (relative to the cell).
    stress_tolerance : float
        GPa; <= 0 keeps the cell fixed.
    max_step, min_step : float
        A.
    wolfe_c1, wolfe_c2 : float
    """

    pressure: float = 0.0
    iteration_limit: int = 999999999
    min_dist: float = 1.0
    force_tolerance: float = 1e-4
    stress_tolerance: float = 1e-3
    max_step: float = 0.05
    min_step: float = 1e-8
    wolfe_c1: float = 0.1
    wolfe_c2: float = 0.5

    def __post_init__(self):
        for name in ("pressure", "min_dist", "force_tolerance", "stress_tolerance", "max_step",
                     "min_step", "wolfe_c1", "wolfe_c2"):
            v = float(getattr(self, name))
            if not math.isfinite(v):
                raise ConfigError(f"--{name.replace('_', '-')}: expected a finite number, got {v}")
            setattr(self, name, v)
        self.iteration_limit = int(self.iteration_limit)
        if self.iteration_limit < 0:
            raise ConfigError(f"--iteration-limit must be >= 0, got {self.iteration_limit}")
        if self.max_step <= 0:
            raise ConfigError(f"--max-step must be > 0, got {self.max_step}")
        if self.min_step < 0 or self.min_step >= self.max_step:
            raise ConfigError(f"--min-step must be >= 0 and < --max-step, got {self.min_step}")
        if not 0 < self.wolfe_c1 < self.wolfe_c2 < 1:
            raise ConfigError(f"need 0 < --bfgs-wolfe-c1 < --bfgs-wolfe-c2 < 1, got "
                              f"{self.wolfe_c1}, {self.wolfe_c2}")


@dataclasses.dataclass
class RelaxResult:
    """Outcome of one relaxation.

    Attributes
    ----------
    status : str
        ``OK``, ``NOT_CONVERGED``, ``MINDIST_ERROR``, ``ERROR`` or ``BREAK``.
    cfg : Configuration or None
        The last accepted geometry with its energy, forces and PlusStress and the
        features ``from`` / ``min_dist`` (+ ``MV_grade`` with extrapolation control);
        None when not even the first geometry could be evaluated.
    iterations, evaluations : int
    message : str
    grade : float or None
        Grade of the last evaluation (with extrapolation control).
    """

    status: str
    cfg: Configuration | None
    iterations: int
    evaluations: int
    message: str = ""
    grade: float | None = None

    @property
    def ok(self):
        return self.status == "OK"


class _Stop(Exception):
    def __init__(self, status, message):
        self.status, self.message = status, message
        super().__init__(message)


@dataclasses.dataclass
class _Point:
    x: np.ndarray
    h: float            # enthalpy
    g: np.ndarray       # gradient of h
    cfg: Configuration  # geometry with EFS
    md: float
    frc: float
    stress: float
    grade: float | None
    ref: np.ndarray     # image of the reference centroid (for step lengths)


# ------------------------------------------------------------------ inverse Hessians
class _Dense:
    def __init__(self, n):
        self.n = n
        self.reset()

    def reset(self):
        self.h = None
        self.scale = H0
        self.fresh = True

    def apply(self, g):
        return self.scale * g if self.h is None else self.h @ g

    def update(self, s, y):
        sy = float(s @ y)
        if not sy > 1e-12 * float(np.linalg.norm(s) * np.linalg.norm(y)) or not sy > 0:
            return
        if self.h is None:
            self.h = np.eye(self.n) * (sy / float(y @ y))
        rho = 1.0 / sy
        hy = self.h @ y
        yhy = float(y @ hy)
        # (I - rho s y^T) H (I - rho y s^T) + rho s s^T, expanded
        self.h += (rho * rho * yhy + rho) * np.outer(s, s) - rho * (np.outer(hy, s) + np.outer(s, hy))
        self.fresh = False


class _LBFGS:
    def __init__(self, n, m=LBFGS_MEMORY):
        self.m = m
        self.reset()

    def reset(self):
        self.pairs = []
        self.fresh = True

    def apply(self, g):
        if not self.pairs:
            return H0 * g
        q = g.copy()
        alphas = []
        for s, y, rho in reversed(self.pairs):
            a = rho * float(s @ q)
            alphas.append(a)
            q -= a * y
        s, y, _ = self.pairs[-1]
        q *= float(s @ y) / float(y @ y)
        for (s, y, rho), a in zip(self.pairs, reversed(alphas)):
            b = rho * float(y @ q)
            q += (a - b) * s
        return q

    def update(self, s, y):
        sy = float(s @ y)
        if not sy > 1e-12 * float(np.linalg.norm(s) * np.linalg.norm(y)) or not sy > 0:
            return
        self.pairs.append((s.copy(), y.copy(), 1.0 / sy))
        if len(self.pairs) > self.m:
            self.pairs.pop(0)
        self.fresh = False


def _sym_basis():
    """Orthonormal basis of the symmetric 3x3 matrices (xx yy zz yz xz xy)."""
    out = []
    for a, b in ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)):
        m = np.zeros((3, 3))
        if a == b:
            m[a, a] = 1.0
        else:
            m[a, b] = m[b, a] = 1.0 / math.sqrt(2.0)
        out.append(m)
    return np.array(out)


_BASIS = _sym_basis()


def _min_distance(cfg, nl):
    from ..io.lattice import mindist

    if nl.distances.size:
        return float(nl.distances.min())
    return float(mindist(cfg))


# ------------------------------------------------------------------ relaxer
class Relaxer:
    """Relax configurations with a potential (see the module docstring).

    Parameters
    ----------
    mtp : MTP
    options : RelaxOptions, optional
    control : ExtrapolationControl, optional
        Grade every evaluated geometry (preselection and breaking threshold).
    log : callable, optional
        Called with every log line (without newline); an empty string separates
        configurations.
    warn : callable, optional
        Called with warning messages (line-search resets).
    on_evaluate : callable, optional
        Called with every evaluated geometry (a Configuration with energy, forces,
        PlusStress and site energies; MLIP-2's ``write-cfgs``).
    """

    def __init__(self, mtp, options=None, control=None, log=None, warn=None, on_evaluate=None):
        self.mtp = mtp
        self.opts = options or RelaxOptions()
        self.control = control
        self.log = log
        self.warn = warn
        self.on_evaluate = on_evaluate

    # -------------------------------------------------------------- setup
    def relax(self, cfg, number=1):
        """Relax one configuration.

        Parameters
        ----------
        cfg : Configuration
            The starting geometry (not modified).
        number : int
            Its 1-based number in the log.

        Returns
        -------
        RelaxResult
        """
        o = self.opts
        n_atoms = len(cfg)
        lattice0 = np.array(cfg.lattice, dtype=np.float64)
        s0 = np.array(cfg.positions, dtype=np.float64)
        volume0 = abs(float(np.linalg.det(lattice0)))
        periodic = bool(np.all(cfg.pbc)) and volume0 > 0
        self._n = n_atoms
        self._atoms = o.force_tolerance > 0 and n_atoms > 0
        self._cell = o.stress_tolerance > 0 and periodic and n_atoms > 0
        self._cfg0 = cfg
        self._lattice0 = lattice0
        self._s0 = s0
        self._centroid = s0.mean(axis=0) if n_atoms else np.zeros(3)
        self._ell = math.sqrt(n_atoms ** (1.0 / 3.0) * volume0 ** (2.0 / 3.0)) if self._cell else 1.0
        self._p = o.pressure / GPA
        self._evals = 0
        self._number = number
        self._lines = 0
        ndof = 3 * n_atoms * self._atoms + 6 * self._cell
        self._ndof = ndof
        try:
            pt = self._evaluate(np.zeros(ndof))
        except _Stop as stop:
            return RelaxResult(stop.status, None, 0, self._evals, stop.message,
                               None if self.control is None else self.control.last_grade)
        self._log_line(0, 0.0, pt)
        self._last = pt
        self._iterations = 0
        try:
            status, message, it, pt = self._bfgs(pt)
        except _Stop as stop:
            status, message, it, pt = stop.status, stop.message, self._iterations, self._last
        if self._lines and self.log is not None:
            self.log("")
        out = self._result_cfg(pt, status)
        grade = self.control.last_grade if self.control is not None else None
        return RelaxResult(status, out, it, self._evals, message, grade)

    def _result_cfg(self, pt, status):
        from ..selection.active_set import format_grade

        out = pt.cfg.copy()
        out.site_energies = None
        if len(out) and np.all(out.pbc) and out.volume > 0:
            # as MLIP-2: atoms wrapped into the cell (fractional coordinates in [0, 1))
            frac = out.positions @ np.linalg.inv(out.lattice)
            frac -= np.floor(frac)
            frac[frac >= 1.0] = 0.0
            out.positions = frac @ out.lattice
        out.features["from"] = STATUS_FEATURE[status]
        out.features["min_dist"] = "%f" % pt.md
        if pt.grade is not None:
            out.features["MV_grade"] = format_grade(pt.grade)
        return out

    # -------------------------------------------------------------- geometry
    def _deformation(self, x):
        if not self._cell:
            return np.eye(3)
        c = x[-6:]
        return np.eye(3) + np.tensordot(c, _BASIS, axes=1) / self._ell

    def _geometry(self, x):
        f = self._deformation(x)
        s = x[:3 * self._n].reshape(self._n, 3) + self._s0 if self._atoms else self._s0
        return s, f, s @ f.T, self._lattice0 @ f.T

    def _displacements(self, x, p):
        """Linearised displacement of every atom for the step p (cell part from the centroid)."""
        s, f, _, _ = self._geometry(x)
        d = np.zeros((self._n, 3))
        if self._atoms:
            d += p[:3 * self._n].reshape(self._n, 3) @ f.T
        if self._cell:
            df = np.tensordot(p[-6:], _BASIS, axes=1) / self._ell
            d += (s - self._centroid) @ df.T
        return d

    # -------------------------------------------------------------- evaluation
    def _evaluate(self, x):
        o = self.opts
        s, f, positions, lattice = self._geometry(x)
        cfg0 = self._cfg0
        trial = Configuration(lattice=lattice, positions=positions, types=cfg0.types,
                              charges=cfg0.charges, features=cfg0.features)
        self._evals += 1
        if not (np.all(np.isfinite(positions)) and np.all(np.isfinite(lattice))):
            raise _Stop("ERROR", "non-finite coordinates")
        nl = self.mtp.neighbors(trial)
        md = _min_distance(trial, nl)
        if md < o.min_dist:
            raise _Stop("MINDIST_ERROR", f"atoms closer than min-dist {o.min_dist:g} "
                                         f"(mindist {md:g})")
        e, forces, s6, site = self.mtp.calc_efs(trial, neighbors=nl)
        if not (math.isfinite(e) and np.all(np.isfinite(forces)) and np.all(np.isfinite(s6))):
            raise _Stop("ERROR", "non-finite energy, forces or stress")
        trial.energy, trial.forces, trial.plus_stress, trial.site_energies = e, forces, s6, site
        if self.on_evaluate is not None:
            self.on_evaluate(trial)
        grade = None
        if self.control is not None:
            try:
                grade = self.control.check(trial, neighbors=nl)
            except ExtrapolationError as err:
                raise _Stop("BREAK", str(err)) from None
        volume = abs(float(np.linalg.det(lattice))) if self._cell else 0.0
        h = e + self._p * volume
        smat = trial.plus_stress_matrix()
        g = []
        if self._atoms:
            g.append((-forces @ f).ravel())
        if self._cell:
            gf = (self._p * volume * np.eye(3) - smat) @ np.linalg.inv(f).T
            g.append(np.einsum("kab,ab->k", _BASIS, gf) / self._ell)
        grad = np.concatenate(g) if g else np.zeros(0)
        frc = float(np.sqrt(np.max(np.einsum("ij,ij->i", forces, forces)))) if len(forces) else 0.0
        vol_now = abs(float(np.linalg.det(lattice)))
        if vol_now > 0 and np.all(trial.pbc):
            stress = float(np.max(np.abs(smat * GPA / vol_now - o.pressure * np.eye(3))))
        else:
            stress = 0.0
        return _Point(x, h, grad, trial, md, frc, stress, grade, self._centroid @ f.T)

    def _converged(self, pt):
        o = self.opts
        return ((not self._atoms or pt.frc < o.force_tolerance)
                and (not self._cell or pt.stress < o.stress_tolerance))

    def _log_line(self, k, dx, pt):
        if self.log is None:
            return
        n = max(self._n, 1)
        line = ("cfg %d\titr %d\t dx %s\t md %s\te/a %s\tent %s\tfrc %s\tstr %s"
                % (self._number, k, _g(dx), _g(pt.md), _g(pt.cfg.energy / n), _g(pt.h),
                   _g(pt.frc), _g(pt.stress)))
        if pt.grade is not None:
            line += "\tgrade %f" % pt.grade
        self._lines += 1
        self.log(line)

    # -------------------------------------------------------------- BFGS
    def _bfgs(self, pt):
        o = self.opts
        hess = _Dense(self._ndof) if self._ndof <= DENSE_LIMIT else _LBFGS(self._ndof)
        failures = 0
        it = 0
        while True:
            if self._converged(pt):
                return "OK", "", it, pt
            if it >= o.iteration_limit:
                return ("NOT_CONVERGED", f"iteration limit {o.iteration_limit} reached", it, pt)
            p = -hess.apply(pt.g)
            if not float(pt.g @ p) < 0:
                hess.reset()
                p = -hess.apply(pt.g)
            new = self._line_search(pt, p)
            if new is None:
                if self.warn is not None:
                    self.warn("Relaxation: Too small steps detected. Breaking linesearch")
                failures += 1
                if failures >= 2 or hess.fresh:
                    return ("NOT_CONVERGED", "line search failed (steps below min-step)",
                            it, pt)
                hess.reset()
                continue
            failures = 0
            hess.update(new.x - pt.x, new.g - pt.g)
            it += 1
            self._iterations = it
            dx = self._actual_step(pt, new)
            pt = new
            self._log_line(it, dx, pt)
            self._last = pt

    def _actual_step(self, a, b):
        d = (b.cfg.positions - b.ref) - (a.cfg.positions - a.ref)
        return float(np.sqrt(np.max(np.einsum("ij,ij->i", d, d)))) if len(d) else 0.0

    def _line_search(self, pt, p):
        """A point satisfying the Wolfe conditions along p (or at least Armijo), or None."""
        o = self.opts
        c1, c2 = o.wolfe_c1, o.wolfe_c2
        disp = self._displacements(pt.x, p)
        dmax = float(np.sqrt(np.max(np.einsum("ij,ij->i", disp, disp)))) if len(disp) else 0.0
        if self._cell and not self._atoms:
            # cell only: measure the step by the change of the lattice vectors as well
            df = np.tensordot(p[-6:], _BASIS, axes=1) / self._ell
            dl = self._lattice0 @ df.T
            dmax = max(dmax, float(np.sqrt(np.max(np.einsum("ij,ij->i", dl, dl)))))
        if not dmax > 0:
            return None
        amax = o.max_step / dmax
        h0, d0 = pt.h, float(pt.g @ p)
        noise = 1e-13 * (abs(h0) + 1.0)

        def armijo(a, q):
            return q.h <= h0 + c1 * a * d0 + noise

        def at(a):
            q = self._evaluate(pt.x + a * p)
            return q, float(q.g @ p)

        a_prev, q_prev, d_prev = 0.0, pt, d0
        a = min(1.0, amax)
        for i in range(30):
            q, d = at(a)
            if not armijo(a, q) or (i > 0 and q.h >= q_prev.h):
                return self._zoom(pt, p, d0, a_prev, q_prev, d_prev, a, q, d, dmax, noise)
            if abs(d) <= -c2 * d0:
                return q
            if d >= 0:
                return self._zoom(pt, p, d0, a, q, d, a_prev, q_prev, d_prev, dmax, noise)
            if a >= amax * (1 - 1e-12):
                return q
            a_prev, q_prev, d_prev = a, q, d
            a = min(2.0 * a, amax)
        return q

    def _zoom(self, pt, p, d0, a_lo, q_lo, d_lo, a_hi, q_hi, d_hi, dmax, noise):
        o = self.opts
        c1, c2 = o.wolfe_c1, o.wolfe_c2
        h0 = pt.h
        for _ in range(40):
            w = abs(a_hi - a_lo)
            if w * dmax < o.min_step:
                break
            a = _cubic_min(a_lo, q_lo.h, d_lo, a_hi, q_hi.h, d_hi)
            lo, hi = min(a_lo, a_hi), max(a_lo, a_hi)
            if a is None or not (lo + 0.1 * w <= a <= hi - 0.1 * w):
                a = 0.5 * (a_lo + a_hi)
            q = self._evaluate(pt.x + a * p)
            d = float(q.g @ p)
            if q.h > h0 + c1 * a * d0 + noise or q.h >= q_lo.h:
                a_hi, q_hi, d_hi = a, q, d
            else:
                if abs(d) <= -c2 * d0:
                    return q
                if d * (a_hi - a_lo) >= 0:
                    a_hi, q_hi, d_hi = a_lo, q_lo, d_lo
                a_lo, q_lo, d_lo = a, q, d
        return q_lo if a_lo > 0 else None


def _cubic_min(a, fa, da, b, fb, db):
    """Minimiser of the cubic interpolating f and f' at a and b (None if it has none)."""
    d1 = da + db - 3.0 * (fa - fb) / (a - b)
    disc = d1 * d1 - da * db
    if not disc >= 0:
        return None
    d2 = math.copysign(math.sqrt(disc), b - a)
    den = db - da + 2.0 * d2
    if den == 0:
        return None
    return b - (b - a) * (db + d2 - d1) / den


def _g(x):
    """C++ iostream default formatting of a double (``%g``, 6 significant digits)."""
    return "%g" % x


def relax(cfg, mtp, control=None, log=None, **options):
    """Relax one configuration (convenience wrapper of :class:`Relaxer`).

    Parameters
    ----------
    cfg : Configuration
    mtp : MTP, MTPParams or path
    control : ExtrapolationControl, optional
    log : callable, optional
    **options
        Fields of :class:`RelaxOptions` (``pressure``, ``force_tolerance``, ...).

    Returns
    -------
    RelaxResult
    """
    from ..potential.mtp import MTP

    if not isinstance(mtp, MTP):
        mtp = MTP(mtp)
    return Relaxer(mtp, RelaxOptions(**options), control, log).relax(cfg)
