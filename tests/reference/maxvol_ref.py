"""Plain-NumPy oracle of the maxvol selection (mlip-formats.md §5.2-5.3), no shortcuts.

Every quantity is recomputed from scratch at every step (``B @ inv(A)`` by
``np.linalg.solve``, determinants by ``np.linalg.det``), so it shares no update formula
with the Sherman-Morrison kernels it checks.  Intended for small matrices only.
"""
import numpy as np


def binva(A, B):
    """``B @ inv(A)`` via a linear solve (``A^T Y^T = B^T``)."""
    return np.linalg.solve(A.T, B.T).T


def grades(A, B):
    """Grade of every row and the first column of its max |entry|."""
    X = np.abs(binva(A, B))
    return X.max(axis=1), X.argmax(axis=1)


def first_argmax(A, B):
    """MLIP-2's (i0, j0): first max of |B inv(A)| in row-major order (cblas_idamax)."""
    X = np.abs(binva(A, B))
    flat = int(np.argmax(X))  # numpy returns the first occurrence
    return divmod(flat, X.shape[1]), float(X.max())


def select(A, B, owners_a, owners_b, thr_select, thr_swap, limit=None):
    """MLIP-2 multiple selection by brute force.

    Returns (A, B, owners_a, owners_b, swaps, dets) with dets = |det A| before and after
    every swap.
    """
    A, B = A.copy(), B.copy()
    oa, ob = list(owners_a), list(owners_b)
    swaps, dets = [], [abs(np.linalg.det(A))]
    if B.shape[0] == 0:
        return A, B, oa, ob, swaps, dets
    (_, _), g = first_argmax(A, B)
    if not g > thr_select:
        return A, B, oa, ob, swaps, dets
    while limit is None or len(swaps) < limit:
        (i0, j0), g = first_argmax(A, B)
        if not g > thr_swap:
            break
        A[j0], B[i0] = B[i0].copy(), A[j0].copy()
        oa[j0], ob[i0] = ob[i0], oa[j0]
        swaps.append((i0, j0))
        dets.append(abs(np.linalg.det(A)))
    return A, B, oa, ob, swaps, dets


def best_single_swap_factor(A, B):
    """max over (i, j) of |det(A with row j replaced by B[i])| / |det A|, by determinants."""
    d0 = abs(np.linalg.det(A))
    best = 0.0
    for i in range(B.shape[0]):
        for j in range(A.shape[0]):
            T = A.copy()
            T[j] = B[i]
            best = max(best, abs(np.linalg.det(T)) / d0)
    return best


def batch_select(A, B, k, owners_b=None, cost=None, thr=1.0000001):
    """Greedy batch of at most k new owners with protected slots (MaxVol.batch_select
    rules) by brute force: every (row, slot) gain from determinants."""
    A, B = A.copy(), B.copy()
    m, n = B.shape
    ob = list(range(m)) if owners_b is None else list(owners_b)
    eligible = [True] * m
    protected = [False] * n
    chosen = []
    swaps = []
    while not all(protected):
        d0 = abs(np.linalg.det(A))
        gain = np.full(m, -1.0)
        col = np.zeros(m, dtype=int)
        for i in range(m):
            if not eligible[i]:
                continue
            for j in range(n):
                if protected[j]:
                    continue
                T = A.copy()
                T[j] = B[i]
                gj = abs(np.linalg.det(T)) / d0
                if gj > gain[i] * (1 + 1e-12):  # first column on (numerical) ties
                    gain[i], col[i] = gj, j
        ok = [eligible[i] and gain[i] > thr for i in range(m)]
        free = [i for i in range(m) if ok[i] and ob[i] in chosen]
        if free:
            i0 = max(free, key=lambda i: (gain[i], -i))
        else:
            if len(chosen) >= k:
                break
            cand = [i for i in range(m) if ok[i]]
            if not cand:
                break
            if cost is None:
                i0 = max(cand, key=lambda i: (gain[i], -i))
            else:
                i0 = max(cand, key=lambda i: (np.log(gain[i]) / cost[i], -i))
            chosen.append(ob[i0])
        j0 = int(col[i0])
        A[j0], B[i0] = B[i0].copy(), A[j0].copy()
        eligible[i0] = False
        protected[j0] = True
        swaps.append((i0, j0))
    return A, swaps
