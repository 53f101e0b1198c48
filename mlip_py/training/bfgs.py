"""BFGS with MLIP-2's line search (mlip-formats.md §4.4), written from its description.

The optimiser is driven from outside ("reverse communication"): the caller evaluates
f and g at :attr:`BFGS.x`, calls :meth:`BFGS.iterate`, and repeats.

BFGS state
    ``inv_hess`` (starts as the identity), the search direction ``p``, the start of the
    current line search ``(x_start, f_start, g_start, p.g_start)`` and the flag
    ``in_linesearch``.

``iterate(f, g)``
    If the point violates the Wolfe conditions with respect to the line-search start
    (``f > f_start + c1 * alpha * p.g_start`` or ``|p.g| > c2 |p.g_start|``; c1 = 0.1,
    c2 = 0.5) the line search continues (``in_linesearch`` = True) and
    ``x = x_start + alpha * p`` for the line search's next alpha.  Otherwise the point is
    accepted: ``in_linesearch`` toggles (an accepted point ends a line search; the first
    call after :meth:`set_x` starts one), the inverse Hessian gets the BFGS update with
    ``s = alpha p`` and ``y = g - g_start`` (skipped when ``s.y == 0``, e.g. right after
    :meth:`set_x`), ``p = -H g`` and a new line search starts from this point with
    alpha = 1.

:meth:`reduce_step` shrinks the last line-search step (used by the trainer while
``|x_0 - x_0,current| > 0.5``).

Line search (one-dimensional, on phi(alpha) = f(x_start + alpha p) with slope
phi' = p.g), keeping a bracket [left, right] and the previous point:

* first call (alpha = 0): remember it as left and previous, try alpha = right = 1;
* the first point with alpha > left becomes ``right`` until a point with larger f was
  seen; while the right end keeps decreasing (phi' < 0, f < f_left) the bracket moves
  right; a point with phi' < 0 and f < f_left moves ``left`` (or ``right`` beyond it);
  a point with phi' > 0 inside the bracket becomes ``right``;
* if the sufficient-decrease test fails (``f > f_left + 0.1 phi'_left (alpha -
  alpha_left)``): a safeguarded step from a parabola fitted to log(f - f_left + slope)
  (bisection if it leaves a bracket with phi'_right > 0, at most 3x the bracket when
  expanding);
* if the secant of phi' has negative curvature: extrapolate to ``3 right - 2 left`` (if
  phi'_right < 0) or go half way to ``right``;
* otherwise a secant step on phi', clipped to the bracket (bisection / 3x expansion).
"""
from __future__ import annotations

import math

import numpy as np

#: MLIP-2's "infinite" value
HUGE = 9e99


class LineSearch:
    """One-dimensional search along a descent direction (see module docstring)."""

    def __init__(self):
        self.x = 0.0
        self.prev_x = self.prev_f = self.prev_g = 0.0
        self.left_x = self.left_f = self.left_g = 0.0
        self.reset()

    def reset(self, initial_step=1.0):
        self.left_x = 0.0
        self.x = 0.0
        self.right_x = float(initial_step)
        self.right_f = HUGE
        self.right_g = HUGE

    def reduce_step(self, ratio=0.25):
        self.x = self.prev_x + ratio * (self.x - self.prev_x)

    def _set_prev(self, f, g):
        self.prev_x, self.prev_f, self.prev_g = self.x, f, g

    def iterate(self, f, g):
        """Record phi(x) = f, phi'(x) = g; choose the next x.  False on a degenerate step."""
        x = self.x
        if x == 0.0:
            self.left_x, self.left_f, self.left_g = x, f, g
            self._set_prev(f, g)
            self.x = self.right_x
            return not g > 0
        if self.prev_x == x:
            return False
        if x == self.right_x or (x > self.left_x and self.right_f == HUGE):
            self.right_x, self.right_f, self.right_g = x, f, g
        if self.right_g < 0 and self.right_f < self.left_f:
            if x > self.right_x:
                self.left_x, self.left_f, self.left_g = self.right_x, self.right_f, self.right_g
                self.right_x, self.right_f, self.right_g = x, f, g
        else:
            if g < 0 and f < self.left_f and x > self.left_x:
                if x > self.right_x:
                    if f > self.right_f:
                        self._set_prev(f, g)
                        self.left_x, self.left_f, self.left_g = \
                            self.right_x, self.right_f, self.right_g
                        self.right_x, self.right_f, self.right_g = x, f, g
                        self.x = 0.5 * (self.left_x + self.right_x)
                        return True
                    self.right_x, self.right_f, self.right_g = x, f, g
                else:
                    self.left_x, self.left_f, self.left_g = x, f, g
            if g > 0 and x < self.right_x:
                self.right_x, self.right_f, self.right_g = x, f, g
        lx, lf, lg = self.left_x, self.left_f, self.left_g
        if f > lf + 0.1 * lg * (x - lx):
            # sufficient decrease failed: parabola through log(f - f_left + slope)
            slope = -lg * (x - lx)
            f0 = _log(slope)
            g0 = lg / slope if slope != 0 else math.copysign(math.inf, lg)
            f1 = _log(f - lf + slope)
            with np.errstate(all="ignore"):
                nxt = float(np.float64(lx) - np.float64(0.5) * g0 * (x - lx) * (x - lx)
                            / np.float64(f1 - f0 - g0 * (x - lx)))
            if nxt > self.right_x and self.right_g > 0:
                nxt = lx + 0.5 * (x - lx)
            elif (nxt - lx > 3.0 * self.right_x - 2.0 * lx) and self.right_g < 0:
                nxt = lx + 3.0 * (self.right_x - lx)
            self._set_prev(f, g)
            self.x = nxt
            return True
        with np.errstate(all="ignore"):
            curv = float(np.float64(g - self.prev_g) / np.float64(x - self.prev_x))
        if curv < 0.0:
            self._set_prev(f, g)
            if self.right_g < 0:
                self.x = 3 * self.right_x - 2 * lx
            else:
                self.x = x + 0.5 * (self.right_x - x)
            return True
        with np.errstate(all="ignore"):
            new_x = float(np.float64(x) - np.float64(g) * (x - self.prev_x)
                          / np.float64(g - self.prev_g))
        self._set_prev(f, g)
        self.x = new_x
        if new_x > self.right_x:
            if self.right_g > 0:
                self.x = 0.5 * lx + 0.5 * self.right_x
            elif new_x > 3 * self.right_x - 2 * lx:
                self.x = 3 * self.right_x - 2 * lx
            return True
        if new_x < lx:
            self._set_prev(f, g)
            self.x = 0.5 * lx + 0.5 * self.right_x
        return True


def _sdot(a, b):
    """Dot product summed strictly left to right (reproducible, order as MLIP-2)."""
    if len(a) == 0:
        return 0.0
    return float(np.cumsum(a * b)[-1])


def _smatvec(m, v):
    """Matrix-vector product with each row summed left to right."""
    if m.shape[1] == 0:
        return np.zeros(m.shape[0])
    return np.cumsum(m * v[None, :], axis=1)[:, -1]


def _log(v):
    if v > 0:
        return math.log(v)
    if v == 0:
        return -math.inf
    return math.nan


class BFGS:
    """Quasi-Newton minimiser with an explicit inverse Hessian (see module docstring).

    Parameters
    ----------
    n : int
        Number of variables.
    """

    wolfe_c1 = 0.1
    wolfe_c2 = 0.5

    def __init__(self, n):
        self.n = int(n)
        self.inv_hess = np.eye(self.n)
        self.p = np.zeros(self.n)
        self.x = np.zeros(self.n)
        self.x_start = np.zeros(self.n)
        self.g_start = np.zeros(self.n)
        self.f_start = HUGE
        self.pg_start = HUGE
        self.in_linesearch = False
        self.ls = LineSearch()

    def set_x(self, x):
        """Set the point and quit the line search (the inverse Hessian is kept)."""
        self.x = np.array(x, dtype=np.float64)
        self.f_start = HUGE
        self.pg_start = HUGE
        self.ls.reset()
        self.in_linesearch = False

    def restart(self):
        """Reset the inverse Hessian to the identity and quit the line search."""
        self.inv_hess = np.eye(self.n)
        self.f_start = HUGE
        self.pg_start = HUGE
        self.ls.reset()
        self.in_linesearch = False

    def _update_inv_hess(self, g):
        y = g - self.g_start
        alpha = self.ls.x
        py = _sdot(alpha * self.p, y)
        if py == 0:
            return
        hy = _smatvec(self.inv_hess, y)
        yhy = _sdot(hy, y)
        coef = (py + yhy) / (py * py)
        p = self.p
        self.inv_hess += (((alpha * alpha) * p[:, None]) * p[None, :]) * coef \
            - alpha * (p[:, None] * hy[None, :] + hy[:, None] * p[None, :]) / py

    def iterate(self, f, g):
        """Take f, g at :attr:`x`; set the next :attr:`x`.  False if no descent is possible."""
        g = np.asarray(g, dtype=np.float64)
        pg = _sdot(g, self.p)
        if (f > self.f_start + self.wolfe_c1 * self.ls.x * self.pg_start
                or abs(pg) > self.wolfe_c2 * abs(self.pg_start)):
            self.in_linesearch = True
            ok = self.ls.iterate(f, pg)
        else:
            self.in_linesearch = not self.in_linesearch
            self._update_inv_hess(g)
            self.p = -_smatvec(self.inv_hess, g)
            pg = _sdot(g, self.p)
            self.ls.reset()
            self.x_start = self.x.copy()
            self.g_start = g.copy()
            self.f_start = float(f)
            self.pg_start = pg
            ok = self.ls.iterate(f, pg) and not pg > 0
        self.x = self.x_start + self.ls.x * self.p
        return ok

    def reduce_step(self, ratio=0.25):
        """Shrink the current line-search step."""
        self.ls.reduce_step(ratio)
        self.x = self.x_start + self.ls.x * self.p
