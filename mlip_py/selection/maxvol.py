"""D-optimality (maxvol) active set: grades and MLIP-2's multiple selection.

Conventions (mlip-formats.md §5)
--------------------------------
* ``n`` columns = number of potential parameters.  The active set is an ``(n, n)``
  matrix ``A``; row ``j`` ("slot" ``j``) is the row of the entry occupying it.  Each slot
  has an integer *owner* (configuration id, atom id, ... chosen by the caller);
  ``-1`` marks an initial empty row.  Initially ``A = init * I``, ``A^-1 = I / init``.
* The *grade* of a row ``b`` is ``max_j |(b A^-1)_j|``; a group of rows (one
  configuration in neighbourhood mode) has the max grade of its rows.  Ties are broken
  as MLIP-2's ``cblas_idamax`` over the row-major ``B A^-1``: first row, then first
  column.  Rows of ``A`` have grade exactly 1 (``e_j``); > 1 means extrapolation.
* Multiple selection (:meth:`MaxVol.select`): ``g = max|B A^-1|``; only if
  ``g > threshold_select``, swap while ``max|B A^-1| > threshold_swap``: the first
  maximum ``(i0, j0)`` puts ``B[i0]`` into slot ``j0`` and the old ``A[j0]`` into
  ``B[i0]`` (it stays a candidate), ``|det A|`` grows by ``|g| > threshold_swap``.
  ``A^-1`` and ``B A^-1`` are updated by Sherman-Morrison rank-1 formulas
  (O(n^2 + m n) per swap, compiled kernel ``mlip_py._cext._maxvol``).
* Numerical hygiene: every ``refresh_every`` swaps (default ``n``) the residual
  ``||A A^-1 - I||_max`` is measured (O(n^3)); when it exceeds
  ``max(refresh_tol, 8 * residual after the last inversion)`` ``A^-1`` is recomputed
  by LU and ``B A^-1`` by dgemm.  A set whose LU has reciprocal condition number below
  machine epsilon, or any non-finite number, raises :class:`SelectionError`.  Because
  every swap multiplies ``|det A|`` by more than 1, a non-singular initial set stays
  non-singular; zero or rank-deficient candidate rows simply fill fewer slots (the
  remaining slots keep their initial rows).
* Swap records ``(row_in_B, row_in_A)`` refer to positions in the *current* B, i.e.
  replaying them in order with physical row exchanges on the original ``B`` and ``A``
  reproduces the final state.

Only numpy is imported at module import; the compiled kernels are loaded on
first use.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import numpy as np

from ..errors import ConfigError, SelectionError

__all__ = ["MaxVol", "SelectionResult"]

_EPS = np.finfo(np.float64).eps
#: default number of rows multiplied by A^-1 in one dgemm
DEFAULT_BLOCK_ROWS = 4096

# stop reasons of the swap-loop kernel (same values as mlip_py._cext._maxvol.STOP_*)
_STOP_CONVERGED, _STOP_MAX_SWAPS, _STOP_BOUND = 0, 1, 2

_K = None


def _kernels():
    global _K
    if _K is None:
        from .._cext import load

        _K = load("_maxvol")
    return _K


@dataclasses.dataclass
class SelectionResult:
    """Outcome of one selection call.

    Attributes
    ----------
    swaps : list of (int, int)
        ``(row_in_B, row_in_A)`` of every swap in order (row_in_B is the position in the
        candidate matrix at the time of the swap; for the streaming selection the global
        row position, see :meth:`MaxVol.select_streaming`).
    n_swaps : int
    max_grade_before : float
        Max grade of the candidates before any swap (0 when there are none).
    max_grade_after : float
        Max grade of the candidates (including rows pushed out of ``A``) at the end.
        Streaming: the max over the rows tracked at the end; untracked rows are bounded
        by ``untracked_grade_bound``.
    log_det_change : float
        ``log|det A_after| - log|det A_before|`` = sum of ``log(gains)``.
    gains : ndarray
        ``|g|`` of each swap (factor by which ``|det A|`` grew).
    passes : int
        Passes over the candidate source (streaming only; 1 otherwise).
    untracked_grade_bound : float
        Streaming, exact mode: upper bound of the grade of every candidate row not held
        in memory at the end (0 when every row was tracked or a final pass was made).
    """

    swaps: list
    n_swaps: int
    max_grade_before: float
    max_grade_after: float
    log_det_change: float
    gains: np.ndarray
    passes: int = 1
    untracked_grade_bound: float = 0.0


def _check_threshold(name, value, minimum, inclusive=False):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"Can't initialize Maxvol: invalid threshold value ({name}={value!r}, expected a number)"
        ) from None
    ok = math.isfinite(v) and (v >= minimum if inclusive else v > minimum)
    if not ok:
        rel = ">=" if inclusive else ">"
        raise ConfigError(
            f"Can't initialize Maxvol: invalid threshold value ({name}={value!r}, "
            f"must be {rel} {minimum:g})"
        )
    return v


class MaxVol:
    """Maxvol active set of ``n`` rows (D-optimality selection as in MLIP-2).

    Parameters
    ----------
    n : int
        Number of columns (potential parameters) = number of slots.
    threshold_init : float
        ``A = threshold_init * I`` initially (MLIP-2 ``--init-threshold``, default 1e-5).
    threshold_select : float
        A selection starts swapping only if the max grade of the batch exceeds this (> 1).
    threshold_swap : float
        Swaps continue while the max grade exceeds this (> 1).
    block_rows : int
        Rows per dgemm block when grading (bounds the grading workspace).
    refresh_every : int or None
        Swaps between residual checks (default ``max(n, 8)``).
    refresh_tol : float
        Absolute residual ``||A A^-1 - I||_max`` tolerated before re-inverting (the
        effective tolerance is ``max(refresh_tol, 8 * residual after the last inversion)``
        so that ill-conditioned sets are not re-inverted over and over).
    """

    def __init__(self, n, threshold_init=1e-5, threshold_select=1.1, threshold_swap=1.0000001,
                 *, block_rows=DEFAULT_BLOCK_ROWS, refresh_every=None, refresh_tol=1e-9):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ConfigError(f"maxvol: number of columns must be a positive integer, got {n!r}")
        self.n = int(n)
        self.threshold_init = _check_threshold("init", threshold_init, 0.0)
        self.threshold_select = _check_threshold("select", threshold_select, 1.0)
        self.threshold_swap = _check_threshold("swap", threshold_swap, 1.0)
        if isinstance(block_rows, bool) or int(block_rows) < 1:
            raise ConfigError(f"maxvol: block_rows must be >= 1, got {block_rows!r}")
        self.block_rows = int(block_rows)
        if refresh_every is None:
            refresh_every = max(self.n, 8)
        if int(refresh_every) < 1:
            raise ConfigError(f"maxvol: refresh_every must be >= 1, got {refresh_every!r}")
        self.refresh_every = int(refresh_every)
        self.refresh_tol = float(refresh_tol)
        init = self.threshold_init
        if not math.isfinite(1.0 / init) or not math.isfinite(self.n * math.log(init)):
            raise ConfigError(f"Can't initialize Maxvol: invalid threshold value (init={init!r})")
        self.A = np.eye(self.n) * init
        self.invA = np.eye(self.n) / init
        #: owner id of each slot (-1 = initial empty row)
        self.owners = np.full(self.n, -1, dtype=np.int64)
        self._log_det = self.n * math.log(init)
        self._baseline = 0.0
        self._work = None
        #: largest number of rows of any (rows, n) work array allocated by the
        #: grading / streaming code paths (instrumentation for memory tests)
        self.peak_work_rows = 0

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_matrix(cls, A, invA=None, owners=None, **kwargs):
        """A MaxVol whose active set is ``A`` (e.g. loaded from an ``.als`` file).

        ``invA`` is used as given when ``||A invA - I||_max <= 1e-6`` (keeps the stored
        state bit-for-bit), otherwise recomputed by LU.  Raises SelectionError if ``A``
        is singular or not finite.  ``kwargs`` go to the constructor (thresholds ...).
        """
        A = np.array(A, dtype=np.float64, order="C", copy=True)
        if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] < 1:
            raise SelectionError(f"active-set matrix must be square (n, n), got shape {A.shape}")
        self = cls(A.shape[0], **kwargs)
        if not np.isfinite(A).all():
            raise SelectionError("active-set matrix contains NaN or infinite entries")
        self.A = A
        if owners is not None:
            ow = np.array(owners, dtype=np.int64).reshape(-1)
            if ow.shape != (self.n,):
                raise SelectionError(f"owners must have length {self.n}, got {ow.shape[0]}")
            self.owners = ow
        if invA is not None:
            invA = np.array(invA, dtype=np.float64, order="C", copy=True)
            if invA.shape != A.shape:
                raise SelectionError(f"inverse has shape {invA.shape}, expected {A.shape}")
            self.invA = invA
            res = self.check()
            if not res <= 1e-6:
                self.refresh()
            else:
                self._baseline = res
        else:
            self.refresh()
        sign, logdet = np.linalg.slogdet(self.A)
        if sign == 0 or not np.isfinite(logdet):
            raise SelectionError("active-set matrix is singular")
        self._log_det = float(logdet)
        return self

    def copy(self):
        """An independent copy (matrices, owners, thresholds)."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.A = self.A.copy()
        new.invA = self.invA.copy()
        new.owners = self.owners.copy()
        new._work = None
        return new

    # ------------------------------------------------------------------ diagnostics
    def check(self):
        """``||A A^-1 - I||_max`` (inf if anything is not finite)."""
        R = self.A @ self.invA
        R[np.diag_indices(self.n)] -= 1.0
        r = float(np.max(np.abs(R)))
        return r if math.isfinite(r) else math.inf

    def log_abs_det(self, recompute=False):
        """``log|det A|``: tracked through the swaps (sum of log gains), or by LU if
        ``recompute``."""
        if recompute:
            sign, logdet = np.linalg.slogdet(self.A)
            return float(logdet) if sign != 0 else -math.inf
        return self._log_det

    def refresh(self):
        """Recompute ``A^-1`` by LU; SelectionError if ``A`` is singular."""
        if not np.isfinite(self.A).all():
            raise SelectionError("active-set matrix contains NaN or infinite entries")
        anorm = float(np.max(np.abs(self.A).sum(axis=0)))
        if anorm == 0.0:
            raise SelectionError("active-set matrix is singular (zero pivot in LU)")
        try:
            with np.errstate(all="ignore"):
                inv = np.linalg.inv(self.A)  # LAPACK dgesv (LU with partial pivoting)
        except np.linalg.LinAlgError:
            raise SelectionError("active-set matrix is singular (zero pivot in LU)") from None
        if not np.isfinite(inv).all():
            raise SelectionError("inverse of the active-set matrix failed or overflowed")
        # reciprocal 1-norm condition number (exact, from the inverse at hand)
        rcond = 1.0 / (anorm * float(np.max(np.abs(inv).sum(axis=0))))
        if not rcond > _EPS:
            raise SelectionError(
                f"active-set matrix is singular to working precision (rcond = {rcond:.3g})"
            )
        self.invA = np.ascontiguousarray(inv)
        self._baseline = self.check()

    def _maybe_refresh(self):
        """Residual check; re-invert if it drifted.  Returns True if re-inverted."""
        res = self.check()
        if not math.isfinite(res) or not np.isfinite(self.invA).all():
            self.refresh()
            return True
        if res > max(self.refresh_tol, 8.0 * self._baseline):
            self.refresh()
            return True
        return False

    # ------------------------------------------------------------------ input helpers
    def _rows(self, B, copy, what="rows"):
        B = np.asarray(B, dtype=np.float64)
        if B.ndim == 1:
            B = B.reshape(1, -1)
        if B.ndim != 2 or B.shape[1] != self.n:
            raise SelectionError(f"{what} must have shape (m, {self.n}), got {B.shape}")
        B = np.array(B, dtype=np.float64, order="C", copy=True) if copy else np.ascontiguousarray(B)
        if B.size and not np.isfinite(B).all():
            bad = int(np.nonzero(~np.isfinite(B).all(axis=1))[0][0])
            raise SelectionError(f"{what}: row {bad} contains NaN or infinite entries")
        return B

    def _owners(self, owners, m, base=0):
        if owners is None:
            return np.arange(base, base + m, dtype=np.int64)
        ow = np.array(owners, dtype=np.int64).reshape(-1)
        if ow.shape[0] != m:
            raise SelectionError(f"owners has length {ow.shape[0]}, expected {m} (one per row)")
        return ow

    def _workspace(self, rows):
        if self._work is None or self._work[0].shape[0] < rows:
            self._work = (np.empty((rows, self.n)), np.empty(rows), np.empty(rows, dtype=np.int64))
            self.peak_work_rows = max(self.peak_work_rows, rows)
        return self._work

    def _note_rows(self, rows):
        self.peak_work_rows = max(self.peak_work_rows, int(rows))

    # ------------------------------------------------------------------ grades
    def grades(self, B):
        """Grades of many rows.

        Parameters
        ----------
        B : array_like (m, n)

        Returns
        -------
        grades : ndarray (m,)
            ``max_j |(b_r A^-1)_j|``.
        argmax_col : ndarray (m,) of int64
            First column holding that maximum (the slot a swap would replace).
        """
        K = _kernels()
        B = self._rows(B, copy=False)
        m = B.shape[0]
        g = np.empty(m)
        c = np.empty(m, dtype=np.int64)
        if m == 0:
            return g, c
        work, _, _ = self._workspace(min(m, self.block_rows))
        for s in range(0, m, self.block_rows):
            e = min(m, s + self.block_rows)
            K.grades_block(B[s:e], self.invA, work, g[s:e], c[s:e])
        return g, c

    def grade(self, rows):
        """Grade of one configuration: max grade over its rows (0.0 if it has none)."""
        g, _ = self.grades(rows)
        return float(g.max()) if g.size else 0.0

    # ------------------------------------------------------------------ batch selection
    def _run_swaps(self, B, X, owners, rowmax, rowcol, swap_thr, limit, *, M=None, tau=0.0,
                   since=0, A0=None, on_swaps=None):
        """Swap loop in chunks of refresh_every with residual checks between chunks.

        Returns (swaps list, gains list, reason, gmax).  ``owners`` (of B rows) and
        ``self.owners`` are updated; ``on_swaps(swaps_array)`` is called per chunk
        before the owner bookkeeping if given.
        """
        K = _kernels()
        swaps_all, gains_all = [], []
        cap = self.refresh_every
        sw = np.empty((cap, 2), dtype=np.int64)
        gn = np.empty(cap)
        rescan = True
        done = 0
        while True:
            chunk = cap if limit is None else min(cap, limit - done)
            count, reason, gmax, _, _ = K.swap_loop(
                self.A, self.invA, B, X, rowmax, rowcol, swap_thr, chunk, sw, gn,
                M, tau, since + done, rescan)
            rescan = False
            if count:
                recs = sw[:count]
                if on_swaps is not None:
                    on_swaps(recs)
                for i0, j0 in recs.tolist():
                    owners[i0], self.owners[j0] = self.owners[j0], owners[i0]
                    swaps_all.append((i0, j0))
                gains_all.extend(gn[:count].tolist())
                self._log_det += float(np.log(gn[:count]).sum())
                done += count
            if reason != _STOP_MAX_SWAPS or (limit is not None and done >= limit):
                break
            if self._maybe_refresh():
                K.grades_block(B, self.invA, X, rowmax, rowcol)
                if M is not None:
                    np.matmul(A0, self.invA, out=M)
        if done:
            self._maybe_refresh()
        return swaps_all, gains_all, reason, gmax

    def _selection_args(self, select_threshold, swap_threshold, swap_limit):
        """(select threshold, swap threshold, swap limit or None), defaults filled, checked."""
        sel = self.threshold_select if select_threshold is None else _check_threshold(
            "select", select_threshold, 1.0)
        thr = self.threshold_swap if swap_threshold is None else _check_threshold(
            "swap", swap_threshold, 1.0)
        limit = None if swap_limit is None else int(swap_limit)
        if limit is not None and limit < 0:
            raise ConfigError(f"swap limit must be >= 0, got {swap_limit!r}")
        return sel, thr, limit

    def select(self, B, owners=None, select_threshold=None, swap_threshold=None,
               swap_limit=None, *, overwrite_b=False):
        """MLIP-2 multiple selection of the queued rows ``B`` (mlip-formats.md §5.3).

        Parameters
        ----------
        B : array_like (m, n)
            Queued rows; copied unless ``overwrite_b`` (then, if already a C-contiguous
            float64 array, it ends up holding the rows not in the set, as in MLIP-2).
        owners : array_like (m,) of int, optional
            Owner id of every row (default ``0..m-1``); ``self.owners`` is updated so
            that it names the owner of every slot after the selection.
        select_threshold, swap_threshold : float, optional
            Override the instance thresholds for this call.
        swap_limit : int, optional
            At most this many swaps (``None`` = unlimited; 0 = none).  The result is
            then the prefix of the unlimited swap sequence.

        Returns
        -------
        SelectionResult
        """
        K = _kernels()
        sel, thr, limit = self._selection_args(select_threshold, swap_threshold, swap_limit)
        B = self._rows(B, copy=not overwrite_b)
        m = B.shape[0]
        owners = self._owners(owners, m)
        if m == 0:
            return SelectionResult([], 0, 0.0, 0.0, 0.0, np.empty(0))
        X = np.empty_like(B)
        rowmax = np.empty(m)
        rowcol = np.empty(m, dtype=np.int64)
        K.grades_block(B, self.invA, X, rowmax, rowcol)
        before = float(rowmax.max())
        if not before > sel or limit == 0:
            return SelectionResult([], 0, before, before, 0.0, np.empty(0))
        swaps, gains, _, gmax = self._run_swaps(B, X, owners, rowmax, rowcol, thr, limit)
        gains = np.asarray(gains)
        return SelectionResult(swaps, len(swaps), before, float(rowmax.max()),
                               float(np.log(gains).sum()) if gains.size else 0.0, gains)

    # ------------------------------------------------------------------ batch of at most k
    def batch_select(self, B, k, owners=None, cost=None, budget=None, threshold=None):
        """Add at most ``k`` new owners (rows, without ``owners``) greedily maximising det.

        New feature (for ``--selection-limit``/``--batch-size``-like use): every chosen
        row has to be labelled (e.g. computed with DFT), so a row chosen in this call is
        never pushed out again within the call (its slot is *protected*), and rows pushed
        out of ``A`` are not reconsidered.  Each step:

        1. For every eligible row ``i`` its gain ``g_i = max |(B A^-1)_ij|`` over the
           unprotected slots ``j`` (a swap multiplies ``|det A|`` by ``g_i``).
        2. Rows with ``g_i <= threshold`` (default ``threshold_swap``) are not wanted.
        3. Rows whose owner was already chosen in this call cost nothing more (in
           neighbourhood mode, other atoms of an already selected configuration): the
           one of them with the largest gain is taken first.
        4. Otherwise, if fewer than ``k`` owners were chosen: without ``cost`` the row
           with the largest gain (first in row order on ties, like ``select``); with
           ``cost`` the row maximising ``log(g_i) / cost_i`` -- the log-det increase
           (information gain of the D-optimal design) per unit labelling cost, the
           classical benefit/cost greedy rule of budgeted maximisation.  With
           ``budget`` rows whose cost exceeds the remaining budget are skipped.
        5. Swap it into its best unprotected slot and protect that slot.

        Stops when ``k`` owners were chosen and no free row is left, nothing exceeds
        the threshold, or every slot is protected.  Unlike ``select`` with a swap limit
        (MLIP-2 ``--selection-limit``), a row chosen earlier in the call is never
        replaced, so every one of the at most k owners ends up in the active set.

        Parameters
        ----------
        B : array_like (m, n)
        k : int
            Maximal number of new owners.
        owners : array_like (m,), optional
        cost : array_like (m,), optional
            Positive labelling cost of every row (give each row of one owner the
            owner's cost; it is charged once per owner).
        budget : float, optional
            Maximal total cost of the chosen owners (requires ``cost``).
        threshold : float, optional
            Minimal gain of a swap (> 1).

        Returns
        -------
        SelectionResult
        """
        K = _kernels()
        if isinstance(k, bool) or int(k) != k or k < 0:
            raise ConfigError(f"batch size must be a non-negative integer, got {k!r}")
        k = int(k)
        thr = self.threshold_swap if threshold is None else _check_threshold(
            "swap", threshold, 1.0)
        B = self._rows(B, copy=True)
        m = B.shape[0]
        owners = self._owners(owners, m)
        if cost is not None:
            cost = np.array(cost, dtype=np.float64).reshape(-1)
            if cost.shape[0] != m or not np.all(np.isfinite(cost)) or np.any(cost <= 0):
                raise ConfigError("cost must hold one positive finite number per row")
        if budget is not None:
            if cost is None:
                raise ConfigError("a selection budget needs per-row costs")
            budget = float(budget)
        if m == 0:
            return SelectionResult([], 0, 0.0, 0.0, 0.0, np.empty(0))
        X = np.empty_like(B)
        rowmax = np.empty(m)
        rowcol = np.empty(m, dtype=np.int64)
        K.grades_block(B, self.invA, X, rowmax, rowcol)
        before = float(rowmax.max())
        mask = np.ones(self.n, dtype=np.uint8)
        eligible = np.ones(m, dtype=bool)
        chosen = set()
        spent = 0.0
        swaps, gains = [], []
        while mask.any():
            ok = eligible & (rowmax > thr)
            if not ok.any():
                break
            free = ok & np.isin(owners, np.fromiter(chosen, np.int64, len(chosen)))
            if free.any():
                i0 = int(np.argmax(np.where(free, rowmax, -1.0)))
            else:
                if len(chosen) >= k:
                    break
                if budget is not None:
                    ok &= cost <= budget - spent
                    if not ok.any():
                        break
                score = rowmax if cost is None else np.log(np.maximum(rowmax, 1.0)) / cost
                i0 = int(np.argmax(np.where(ok, score, -np.inf)))
                chosen.add(int(owners[i0]))
                if cost is not None:
                    spent += float(cost[i0])
            j0 = int(rowcol[i0])
            mask[j0] = 0
            g = K.swap_once(self.A, self.invA, B, X, i0, j0, rowmax, rowcol, mask)
            eligible[i0] = False
            owners[i0], self.owners[j0] = self.owners[j0], owners[i0]
            swaps.append((i0, j0))
            gains.append(abs(g))
            self._log_det += math.log(abs(g))
        if swaps:
            self._maybe_refresh()
        gains = np.asarray(gains)
        K.row_absmax(X, rowmax, rowcol)
        after = float(rowmax.max())
        return SelectionResult(swaps, len(swaps), before, after,
                               float(np.log(gains).sum()) if gains.size else 0.0, gains)

    # ------------------------------------------------------------------ streaming
    def select_streaming(self, row_blocks, select_threshold=None, swap_threshold=None,
                         swap_limit=None, *, buffer_rows=None, exact=True):
        """Multiple selection over candidates too many to hold in memory.

        Memory is O(n^2 + (buffer_rows + n + largest block) * n), independent of the
        number of candidate rows.

        Parameters
        ----------
        row_blocks : callable, re-iterable or ndarray
            Called (or iterated) once per pass; yields blocks ``B_blk`` of shape (k, n)
            or pairs ``(B_blk, owners_blk)`` (an (m, n) array is cut into blocks of
            ``block_rows``).  Every pass must yield the same rows in
            the same order (row positions are counted across blocks from 0).  One-shot
            iterators are rejected (a second pass may be needed).
        select_threshold, swap_threshold, swap_limit :
            As in :meth:`select`.
        buffer_rows : int, optional
            Candidate rows held in memory between passes (default ``max(2 n,
            block_rows)``).
        exact : bool
            See below.

        Algorithm
        ---------
        Rows are identified by their global position (as rows of MLIP-2's ``B``).  A
        *pass* grades every row not in ``A`` against the current ``A^-1`` (dgemm per
        block) and keeps in memory ("tracked") the ``buffer_rows`` best rows (by grade,
        ties to the lower position) plus the at most ``n`` rows that were in ``A`` when
        the call started and have been pushed out (they are not in the source);
        ``tau`` = largest grade of a row not kept.  Pass 0 gives the max grade; if it
        does not exceed ``select_threshold`` nothing happens (as in MLIP-2).  Then the
        tracked rows, in position order, run MLIP-2's swap loop; a row pushed out of
        ``A`` takes the position of the row that entered, as in MLIP-2.

        * ``exact=True`` (default): with ``M = A_pass A^-1`` every untracked row has
          grade ``<= tau * ||M||_1``.  A swap is made only when the best tracked grade
          is strictly above that bound (or right after a pass, where the tie rule makes
          the tracked first maximum the global one), so it is exactly the swap the
          in-memory :meth:`select` makes; otherwise a new pass is made.  Hence the swap
          sequence (positions and slots), the final set and ``|det A|`` equal those of
          ``select`` on all rows, up to floating-point rounding of ``B A^-1`` (which
          could only matter for near-ties).  If every row fits in the buffer a single
          pass is made.  Cost: one pass (m n^2 flops) per failed bound; the bound is
          loose (``||M||_1`` grows with every swap), so expect about one pass per swap
          when the buffer overflows with rows of grade near the top.
        * ``exact=False``: tracked rows swap until their max grade is <= the swap
          threshold, then a new pass refills the buffer; the call ends when a pass finds
          no row above the swap threshold.  Stopping criterion (no candidate grade
          above ``threshold_swap``, ``|det A|`` never decreases) is the same as MLIP-2's,
          but the swap order and hence the final local optimum (the set and ``|det A|``)
          can differ from the in-memory result whenever the buffer overflows.

        Returns
        -------
        SelectionResult
            ``swaps`` hold (global row position, slot); ``passes`` the number of passes.
        """
        sel, thr, limit = self._selection_args(select_threshold, swap_threshold, swap_limit)
        if callable(row_blocks):
            source = row_blocks
        elif isinstance(row_blocks, np.ndarray):
            arr, step = row_blocks, self.block_rows
            source = lambda: (arr[s:s + step] for s in range(0, max(arr.shape[0], 1), step))  # noqa: E731
        else:
            try:
                it = iter(row_blocks)
            except TypeError:
                raise TypeError("row_blocks must be a callable or a re-iterable of blocks") from None
            if isinstance(row_blocks, Iterator) or it is row_blocks:
                raise TypeError("row_blocks is a one-shot iterator; pass a callable returning "
                                "a fresh iterator (the selection may need several passes)")
            source = lambda: iter(row_blocks)  # noqa: E731
        K = buffer_rows if buffer_rows is not None else max(2 * self.n, self.block_rows)
        if int(K) < 1:
            raise ConfigError(f"buffer_rows must be >= 1, got {buffer_rows!r}")
        return _Stream(self, source, int(K), sel, thr, limit, bool(exact)).run()


class _Stream:
    """State of one streaming selection (see MaxVol.select_streaming)."""

    def __init__(self, mv, source, K, sel, thr, limit, exact):
        self.mv, self.source, self.K = mv, source, K
        self.sel, self.thr, self.limit, self.exact = sel, thr, limit, exact
        n = mv.n
        # keys: >= 0 source position; -(j+1) the row that was in slot j at the start
        self.a_key = -(np.arange(n, dtype=np.int64) + 1)
        self.slot_of = {}   # key -> position, for rows outside A not at their own position
        self.pool = (np.empty((0, n)), np.empty(0, np.int64), np.empty(0, np.int64))
        self.m_total = None
        self.cap = 0
        self.bufs = None

    # -- buffers: rows, X, rowmax, rowcol, key, pos, owner; capacity K + n + block
    def _ensure(self, rows):
        if self.bufs is not None and self.cap >= rows:
            return
        n = self.mv.n
        old = self.bufs
        cap = max(rows, self.cap)
        new = [np.empty((cap, n)), np.empty((cap, n)), np.empty(cap), np.empty(cap, np.int64),
               np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(cap, np.int64)]
        if old is not None:
            for a, b in zip(new, old):
                a[: self.cap] = b[: self.cap]
        self.bufs, self.cap = new, cap
        self.mv._note_rows(cap)

    def _blocks(self):
        n = self.mv.n
        for item in self.source():
            own = None
            if isinstance(item, tuple):
                if len(item) != 2:
                    raise SelectionError("a streamed item must be an array or (array, owners)")
                item, own = item
            blk = self.mv._rows(item, copy=False, what="streamed block")
            if blk.shape[1] != n:
                raise SelectionError(f"streamed block has {blk.shape[1]} columns, expected {n}")
            yield blk, own

    def _pass(self):
        """Grade every row outside A; fill the tracked set; return (gmax_all, tau, T)."""
        mv, Kr = self.mv, _kernels()
        n, K = mv.n, self.K
        in_a = np.sort(self.a_key[self.a_key >= 0])
        disp = {k: v for k, v in self.slot_of.items() if k >= 0}
        dkeys = np.array(sorted(disp), dtype=np.int64)
        dpos = np.array([disp[k] for k in dkeys.tolist()], dtype=np.int64)
        cnt = 0
        tau = -math.inf
        gall = -math.inf
        cut = -math.inf
        base = 0
        for blk, own in self._blocks():
            k = blk.shape[0]
            if k == 0:
                continue
            own = mv._owners(own, k, base)
            work, gm, gc = mv._workspace(k)
            self._ensure(K + n + k)
            Kr.grades_block(blk, mv.invA, work, gm, gc)
            keys = np.arange(base, base + k, dtype=np.int64)
            base += k
            keep = ~np.isin(keys, in_a, assume_unique=True) if in_a.size else np.ones(k, bool)
            if not keep.any():
                continue
            gb = gm[:k]
            gall = max(gall, float(gb[keep].max()))
            low = keep & (gb < cut)
            if low.any():
                tau = max(tau, float(gb[low].max()))
            idx = np.nonzero(keep & ~low)[0]
            if idx.size == 0:
                continue
            pos = keys[idx].copy()
            if dkeys.size:
                loc = np.searchsorted(dkeys, pos)
                hit = (loc < dkeys.size) & (dkeys[np.minimum(loc, dkeys.size - 1)] == pos)
                pos[hit] = dpos[loc[hit]]
            rows, X, rmax, rcol, key, ps, ow = self.bufs
            e = cnt + idx.size
            rows[cnt:e] = blk[idx]
            X[cnt:e] = work[idx]
            rmax[cnt:e] = gb[idx]
            rcol[cnt:e] = gc[idx]
            key[cnt:e] = keys[idx]
            ps[cnt:e] = pos
            ow[cnt:e] = own[idx]
            cnt = e
            if cnt > K:
                order = np.lexsort((ps[:cnt], -rmax[:cnt]))
                drop = order[K:]
                tau = max(tau, float(rmax[drop].max()))
                sel = np.sort(order[:K])
                for a in self.bufs:
                    a[:K] = a[sel]
                cnt = K
                cut = float(rmax[:K].min())
        if self.m_total is None:
            self.m_total = base
        elif base != self.m_total:
            raise SelectionError(f"the streamed candidates changed between passes "
                                 f"({self.m_total} rows, then {base})")
        # rows that were in A at the start and have been pushed out: always tracked
        prow, pkey, pown = self.pool
        if pkey.size:
            self._ensure(cnt + pkey.size)
            rows, X, rmax, rcol, key, ps, ow = self.bufs
            e = cnt + pkey.size
            rows[cnt:e] = prow
            Kr.grades_block(prow, mv.invA, X[cnt:e], rmax[cnt:e], rcol[cnt:e])
            key[cnt:e] = pkey
            ps[cnt:e] = [self.slot_of[int(q)] for q in pkey.tolist()]
            ow[cnt:e] = pown
            gall = max(gall, float(rmax[cnt:e].max()))
            cnt = e
        if cnt:
            order = np.argsort(self.bufs[5][:cnt], kind="stable")
            for a in self.bufs:
                a[:cnt] = a[order]
        return gall, tau, cnt

    def run(self):
        mv, thr, limit = self.mv, self.thr, self.limit
        n = mv.n
        passes = 1
        gall, tau, T = self._pass()
        if not gall > -math.inf:
            return SelectionResult([], 0, 0.0, 0.0, 0.0, np.empty(0), passes)
        before = gall
        if not before > self.sel or limit == 0:
            return SelectionResult([], 0, before, before, 0.0, np.empty(0), passes)
        swaps, gains = [], []
        A0 = np.empty((n, n)) if self.exact else None
        M = np.empty((n, n)) if self.exact else None
        bound = 0.0
        while True:
            rows, X, rmax, rcol, key, ps, ow = (a[:T] for a in self.bufs)
            use_bound = self.exact and tau > -math.inf
            if use_bound:
                A0[...] = mv.A
                M[...] = np.eye(n)

            def on_swaps(recs, key=key, ps=ps):
                for i0, j0 in recs.tolist():
                    kin, kout = int(key[i0]), int(self.a_key[j0])
                    self.a_key[j0] = kin
                    key[i0] = kout
                    self.slot_of.pop(kin, None)
                    self.slot_of[kout] = int(ps[i0])
                    swaps.append((int(ps[i0]), j0))

            left = None if limit is None else limit - len(swaps)
            sw, gn, reason, gmax = mv._run_swaps(  # ow (owners) is swapped in place
                rows, X, ow, rmax, rcol, thr, left,
                M=M if use_bound else None, tau=max(tau, 0.0), since=0, A0=A0,
                on_swaps=on_swaps)
            gains.extend(gn)
            # keep the pushed-out start rows (negative keys) for the next pass
            neg = key < 0
            self.pool = (rows[neg].copy(), key[neg].copy(), ow[neg].copy())
            after = float(gmax) if T else 0.0
            if limit is not None and len(swaps) >= limit:
                bound = float(tau * np.abs(M).sum(axis=0).max()) if use_bound else 0.0
                break
            if reason == _STOP_CONVERGED:
                if not sw:
                    # nothing swapped since the last pass: that pass saw every row
                    bound = 0.0
                    break
                if self.exact:
                    bound = float(tau * np.abs(M).sum(axis=0).max()) if use_bound else 0.0
                    if bound <= thr:
                        if not use_bound:
                            bound = 0.0
                        break
            # a new pass (bound failed, or approximate mode after buffer convergence)
            passes += 1
            gall, tau, T = self._pass()
            if not gall > thr:
                after = max(gall, 0.0)
                bound = 0.0
                break
        gains = np.asarray(gains, dtype=np.float64)
        return SelectionResult(swaps, len(swaps), before, after,
                               float(np.log(gains).sum()) if gains.size else 0.0, gains,
                               passes, max(bound, 0.0))
