"""Untrained MTP templates of any level (the content of MLIP-2's ``untrained_mtps/LL.mtp``).

MLIP-2 ships the templates ``02.mtp`` ... ``28.mtp`` but no generator.  This module
builds them from the level rule of mlip-formats.md §3.4 and reproduces the shipped
files *exactly* (every list, every index, every order) for 1 species; the moment
structure does not depend on the number of species.  The rules below were inferred
from the 14 shipped files and are checked against all of them by the test suite.

Objects
-------
* A *basic moment tensor* ``M_{mu,nu}`` (radial index mu, rank nu) has level
  ``2 + 4 mu + nu``.  A template of level L uses the types (mu, nu) with mu <= 5,
  nu <= 10 and ``2 + 4 mu <= L`` (nu = 0) or ``4 + 4 mu + 2 nu <= L`` (nu > 0, i.e.
  the type appears in at least one scalar of level <= L), ordered by (mu, nu).
  The caps only bind at levels 26 and 28, where the level rule alone would add
  mu = 6 and nu = 11: MLIP-2's files (and this generator) stop at K = 6 radial
  functions and rank 10.
  Components of a symmetric rank-nu tensor are the multi-indices (a, b, c),
  a + b + c = nu, in descending lexicographic order: xx, xy, xz, yy, yz, zz.
* A *contraction* is a multigraph: vertices ("leaves") are basic tensors, an edge of
  multiplicity m between two leaves contracts m index pairs, every leaf keeps
  ``free = nu - degree`` free indices.  Its level is the sum of the leaf levels.  The
  basis functions (scalar moments) are **all** isomorphism classes of graphs with
  no free index, at most 4 leaves (MLIP-2 never uses products of more than 4 basic
  moments) and level <= L; disconnected graphs are products of scalars.
* A composite tensor's components are indexed by one symmetric multi-index per leaf
  with free indices (a "group"), groups in the leaf order of the tensor's
  representative (below), nested with the first group outermost.  When two groups
  are interchangeable by construction (``M·M`` of the same basic tensor, or a
  contraction that treats the two groups of such a symmetric tensor alike) only
  the components with second multi-index >= first are stored.

Enumeration order ("generation")
--------------------------------
Graphs with n leaves are generated from the list of n-1 leaf *entries* (one entry
per generated combination, duplicates included): for each basic type A in order,
for each contraction pattern c (how many of A's indices go to each leaf of the
entry, the entry's leaves taken in an order stably sorted by mu; patterns in
lexicographic order, the zero pattern = outer product included), for each entry in
list order.  The first time a graph appears fixes its representative (leaf order)
and its position; graphs are then grouped by their sorted mu tuple (stable).  This
order numbers the composite moments.  Only graphs that can still be completed to a
scalar of level <= L with <= 4 leaves are kept.

The basis functions (``alpha_moment_mapping``) follow a second order: the basic
scalars M_{mu,0}, then for 2, 3, 4 leaves: for each basic type A, for each graph B
with n-1 leaves and rank nu_A, sorted by the key (mu tuple, free counts, nu of
the first leaf, edge multiplicities, nu tuple) minimised over leaf orders, the
graph "A contracted with all free indices of B" (first occurrence), grouped by
sorted mu tuple.

Evaluation scheme (``alpha_index_times``)
----------------------------------------
Each needed composite tensor T is computed as A·B (A a basic tensor, B a connected
tensor or a scalar with one leaf fewer) or, for scalars only, as X·Y of two
composite tensors.  Among the decompositions whose parts exist, the one with the
fewest contracted index pairs wins; then a basic first factor, then the smallest
type of A, then the decomposition met first in the generation order.  Needed
tensors are numbered after the basic components: for 2, 3, 4 leaves first the X·Y
products (in basis-function order), then the others in generation order.  An entry
``(i0, i1, mult, k)`` adds ``mult * M_i0 * M_i1`` to ``M_k``; the entries of one
component are sorted by (i0, i1), ``mult`` is the number of index assignments
(a product of multinomial coefficients) giving that pair.
"""
from __future__ import annotations

import itertools
from functools import lru_cache
from math import factorial

import numpy as np

from .params import MTPParams

__all__ = ["make_template", "template_structure", "basic_types", "LEVELS", "MAX_MU", "MAX_NU",
           "MAX_FACTORS"]

#: levels with a template (MLIP-2 ships 02 ... 28)
LEVELS = tuple(range(2, 29, 2))
#: largest radial index and tensor rank of a basic moment in any template
MAX_MU = 5
MAX_NU = 10
#: largest number of basic moments in one product
MAX_FACTORS = 4


# --------------------------------------------------------------------------- basics
def _level(t):
    return 2 + 4 * t[0] + t[1]


def basic_types(level):
    """The basic moment types (mu, nu) of a template of ``level``, in file order."""
    out = []
    for mu in range(MAX_MU + 1):
        for nu in range(MAX_NU + 1):
            lev = 2 + 4 * mu + nu
            if (nu == 0 and lev <= level) or (nu > 0 and lev + 2 + nu <= level):
                out.append((mu, nu))
    return out


@lru_cache(maxsize=None)
def _multis(s):
    """Multi-indices (a, b, c) with a + b + c = s in descending lexicographic order."""
    return tuple((a, b, s - a - b) for a in range(s, -1, -1) for b in range(s - a, -1, -1))


@lru_cache(maxsize=None)
def _multinomial(g):
    return factorial(g[0] + g[1] + g[2]) // (factorial(g[0]) * factorial(g[1]) * factorial(g[2]))


def _add(u, v):
    return (u[0] + v[0], u[1] + v[1], u[2] + v[2])


_ZERO = (0, 0, 0)


# --------------------------------------------------------------------------- graphs
class _Graph:
    """A contraction: leaves (mu, nu), symmetric adjacency matrix, free indices per leaf."""

    __slots__ = ("leaves", "adj", "free", "level", "nf", "rank", "mus", "key", "npos", "mpos",
                 "entpos", "connected", "decomp", "groups", "sym", "comps", "index", "start")

    def __init__(self, leaves, adj, free, level):
        self.leaves = leaves
        self.adj = adj
        self.free = free
        self.level = level
        self.nf = len(leaves)
        self.rank = sum(free)
        self.mus = tuple(sorted(t[0] for t in leaves))
        self.key = _canon(leaves, adj, free)
        self.mpos = None
        self.decomp = None


def _class_perms(labels):
    """Leaf orders sorting ``labels``, permuting freely inside classes of equal labels."""
    order = sorted(range(len(labels)), key=lambda i: labels[i])
    blocks = [list(g) for _, g in itertools.groupby(order, key=lambda i: labels[i])]
    for parts in itertools.product(*[itertools.permutations(b) for b in blocks]):
        yield [i for p in parts for i in p]


_PAIRS = {n: tuple((a, b) for a in range(n) for b in range(a + 1, n))
          for n in range(1, MAX_FACTORS + 1)}


def _canon(leaves, adj, free):
    """Isomorphism-invariant key of a contraction graph."""
    n = len(leaves)
    labels = [(leaves[i], free[i]) for i in range(n)]
    order = sorted(range(n), key=labels.__getitem__)
    slabels = tuple(labels[i] for i in order)
    pairs = _PAIRS[n]
    if all(slabels[i] != slabels[i + 1] for i in range(n - 1)):  # no ties: one candidate
        return (slabels, tuple(adj[order[a]][order[b]] for a, b in pairs))
    best = None
    for p in _class_perms(labels):
        ed = tuple(adj[p[a]][p[b]] for a, b in pairs)
        if best is None or ed < best:
            best = ed
    return (slabels, best)


def _connected(adj):
    n = len(adj)
    seen = {0}
    stack = [0]
    while stack:
        u = stack.pop()
        for v in range(n):
            if adj[u][v] and v not in seen:
                seen.add(v)
                stack.append(v)
    return len(seen) == n


def _subgraph(g, keep):
    """Leaves ``keep`` of g; indices contracted with removed leaves become free."""
    leaves = tuple(g.leaves[k] for k in keep)
    adj = tuple(tuple(g.adj[a][b] for b in keep) for a in keep)
    free = tuple(g.free[a] + sum(g.adj[a][b] for b in range(g.nf) if b not in keep) for a in keep)
    return leaves, adj, free


def _isomorphisms(g, leaves, adj, free):
    """Maps p (g leaf i -> leaf p[i] of the target), in lexicographic order."""
    n = g.nf
    out = []
    for p in itertools.permutations(range(n)):
        if all(g.leaves[i] == leaves[p[i]] and g.free[i] == free[p[i]] for i in range(n)) and \
                all(g.adj[a][b] == adj[p[a]][p[b]] for a in range(n) for b in range(a + 1, n)):
            out.append(p)
    return out


def _completion(rank, n):
    """Minimal extra level to contract ``rank`` free indices with <= MAX_FACTORS - n leaves."""
    if rank == 0:
        return 0
    if n >= MAX_FACTORS:
        return None
    if rank <= MAX_NU:
        return 2 + rank
    if n <= MAX_FACTORS - 2:
        return 4 + rank
    return None


# ---------------------------------------------------------------- generation order
def _generate(level, basics):
    """Candidates by number of leaves (first occurrences) and the entry lists."""
    first = []
    for t in basics:
        g = _Graph((t,), ((0,),), (t[1],), _level(t))
        g.npos = len(first)
        g.entpos = len(first)
        g.connected = True
        first.append(g)
    cands = {1: first}
    entries = {1: first}
    everything = {g.key: g for g in first}
    prev = first
    for n in range(2, MAX_FACTORS + 1):
        cur = []
        found = {}
        # leaf order of each entry for the contraction pattern: stably sorted by mu
        orders = [sorted(range(B.nf), key=lambda k, B=B: B.leaves[k][0]) for B in prev]
        for A in basics:
            nu_a, lev_a = A[1], _level(A)
            combos = []
            for bi, B in enumerate(prev):
                budget = level - lev_a - B.level
                if budget < 0:
                    continue
                order = orders[bi]
                if n == MAX_FACTORS:  # only scalars: A takes every free index of B
                    if B.rank == nu_a:
                        combos.append((tuple(B.free[k] for k in order), bi, order))
                    continue
                for c in itertools.product(*[range(min(B.free[k], nu_a) + 1) for k in order]):
                    d = sum(c)
                    if d > nu_a:
                        continue
                    comp = _completion(nu_a - d + B.rank - d, n)
                    if comp is None or comp > budget:
                        continue
                    combos.append((c, bi, order))
            combos.sort(key=lambda x: (x[0], x[1]))
            for c, bi, order in combos:
                B = prev[bi]
                row = [0] * (B.nf + 1)
                free = [nu_a - sum(c)] + list(B.free)
                for k, ck in zip(order, c):
                    row[k + 1] = ck
                    free[k + 1] -= ck
                adj = [tuple(row)] + [(row[i + 1],) + B.adj[i] for i in range(B.nf)]
                g = _Graph((A,) + B.leaves, tuple(adj), tuple(free), lev_a + B.level)
                g.entpos = len(cur)
                cur.append(g)
                if g.key not in found:
                    g.npos = len(found)
                    g.connected = _connected(g.adj)
                    found[g.key] = g
        if n < MAX_FACTORS:
            entries[n] = cur
        cands[n] = list(found.values())
        everything.update(found)
        prev = cur
    by_key = {}
    for n, lst in entries.items():
        for e in lst:
            by_key.setdefault(e.key, []).append(e)
    return cands, everything, by_key


def _mapping_key(g):
    """Sort key of a graph in the basis-function enumeration (see module docstring)."""
    n = g.nf
    best = None
    for p in _class_perms([t[0] for t in g.leaves]):
        k = (tuple(g.free[i] for i in p), g.leaves[p[0]][1],
             tuple(g.adj[p[a]][p[b]] for a in range(n) for b in range(a + 1, n)),
             tuple(g.leaves[i][1] for i in p))
        if best is None or k < best:
            best = k
    return (g.mus, best)


def _basis_functions(basics, cands, everything):
    """The scalar graphs in alpha_moment_mapping order."""
    out = [everything[_canon((t,), ((0,),), (0,))] for t in basics if t[1] == 0]
    for n in range(2, MAX_FACTORS + 1):
        sorted_b = sorted(cands[n - 1], key=_mapping_key)
        seen = set()
        block = []
        for A in basics:
            for B in sorted_b:
                if B.rank != A[1]:
                    continue
                row = (0,) + B.free
                adj = (row,) + tuple((B.free[i],) + B.adj[i] for i in range(B.nf))
                key = _canon((A,) + B.leaves, adj, (0,) * n)
                if key in seen or key not in everything:
                    continue
                seen.add(key)
                block.append(everything[key])
        block.sort(key=lambda g: g.mus)
        out.extend(block)
    for i, g in enumerate(out):
        g.mpos = i
    return out


# ------------------------------------------------------------------ decompositions
def _generation_key(g, a, rest, sub, by_key):
    """Earliest (pattern, entry) generating g as leaf a + the graph of ``rest``."""
    leaves, adj, free = sub
    best = None
    for e in by_key[_canon(leaves, adj, free)]:
        order = sorted(range(e.nf), key=lambda k: e.leaves[k][0])
        for p in _isomorphisms(e, leaves, adj, free):
            k = (tuple(g.adj[a][rest[p[i]]] for i in order), e.entpos)
            if best is None or k < best:
                best = k
    return best


def _decompose(g, avail, by_key):
    n = g.nf
    options = []
    for a in range(n):
        rest = [k for k in range(n) if k != a]
        sub = _subgraph(g, rest)
        B = avail.get(_canon(*sub))
        if B is not None:
            options.append([sum(g.adj[a]), 0, g.leaves[a], None, ("basic", a, B, rest, sub)])
    if g.rank == 0 and n == MAX_FACTORS:
        for X in itertools.combinations(range(n), 2):
            Y = tuple(k for k in range(n) if k not in X)
            if X > Y:
                continue
            RX = avail.get(_canon(*_subgraph(g, X)))
            RY = avail.get(_canon(*_subgraph(g, Y)))
            if RX is not None and RY is not None:
                d = sum(g.adj[x][y] for x in X for y in Y)
                options.append([d, 1, (MAX_MU + 1, 0), (min(RX.npos, RY.npos), max(RX.npos, RY.npos)),
                                ("prod", X, Y, RX, RY)])
    if not options:  # pragma: no cover - every candidate graph has a decomposition
        raise RuntimeError("internal error: no decomposition of a template moment")
    best = min(o[:3] for o in options)
    tied = [o for o in options if o[:3] == best]
    if len(tied) > 1 and best[1] == 0:
        for o in tied:
            _, a, _, rest, sub = o[4]
            o[3] = _generation_key(g, a, rest, sub, by_key)
    return min(tied, key=lambda o: o[3])[4]


# ------------------------------------------------------------------------- tensors
def _set_components(g, sym):
    groups = [(i, f) for i, f in enumerate(g.free) if f > 0]
    gpos = {lp: k for k, (lp, _) in enumerate(groups)}
    lists = [_multis(f) for _, f in groups]
    comps = []
    for c in itertools.product(*lists):
        if sym is not None:
            i, j = gpos[sym[0]], gpos[sym[1]]
            if lists[i].index(c[j]) < lists[i].index(c[i]):
                continue
        comps.append(c)
    index = {c: k for k, c in enumerate(comps)}
    if sym is not None:
        i, j = gpos[sym[0]], gpos[sym[1]]
        for c, k in list(index.items()):
            c2 = list(c)
            c2[i], c2[j] = c2[j], c2[i]
            index[tuple(c2)] = k
    g.groups = groups
    g.sym = sym
    g.comps = comps
    g.index = index


def _symmetry(g):
    """Interchangeable pair of leaves (with free indices) of g, from its decomposition."""
    dec = g.decomp
    if g.nf == 1 or dec[0] != "basic":
        return None
    _, a, B, rest, sub = dec
    if g.nf == 2:
        if g.leaves[0] == g.leaves[1] and g.free[0] > 0 and g.free[0] == g.free[1]:
            return (0, 1)
        return None
    if B.sym is None:
        return None
    psi = _isomorphisms(B, *sub)[0]
    li, lj = rest[psi[B.sym[0]]], rest[psi[B.sym[1]]]
    if g.adj[a][li] == g.adj[a][lj] and g.free[li] > 0 and g.free[lj] > 0:
        return (min(li, lj), max(li, lj))
    return None


def _entries_basic(g, basic_of):
    """alpha_index_times entries of g = A (basic leaf a) contracted with B."""
    _, a, B, rest, sub = g.decomp
    psi = _isomorphisms(B, *sub)[0]
    b_leaf = [rest[psi[i]] for i in range(B.nf)]
    A = basic_of[g.leaves[a]]
    gpos = {lp: k for k, (lp, _) in enumerate(g.groups)}
    bgroups = [(b_leaf[lp], s) for lp, s in B.groups]
    counts = [g.adj[a][rl] for rl, _ in bgroups]
    gamma_lists = [_multis(c) for c in counts]
    out = []
    for ci, comp in enumerate(g.comps):
        alpha = comp[gpos[a]] if a in gpos else _ZERO
        betas = [comp[gpos[rl]] if rl in gpos else _ZERO for rl, _ in bgroups]
        acc = {}
        for gams in itertools.product(*gamma_lists):
            asum = alpha
            mult = 1
            bcomp = []
            for gam, beta in zip(gams, betas):
                asum = _add(asum, gam)
                mult *= _multinomial(gam)
                bcomp.append(_add(beta, gam))
            ai = A.start + (A.index[(asum,)] if A.groups else 0)
            bi = B.start + (B.index[tuple(bcomp)] if bgroups else 0)
            acc[(ai, bi)] = acc.get((ai, bi), 0) + mult
        k = g.start + ci
        out.extend((i0, i1, m, k) for (i0, i1), m in sorted(acc.items()))
    return out


def _entries_product(g):
    """alpha_index_times entries of a scalar g = X . Y (two composite tensors)."""
    _, X, Y, RX, RY = g.decomp
    if RX.start > RY.start:
        X, Y, RX, RY = Y, X, RY, RX
    sx, sy = _subgraph(g, X), _subgraph(g, Y)
    px, py = _isomorphisms(RX, *sx)[0], _isomorphisms(RY, *sy)[0]
    xl = [X[px[i]] for i in range(RX.nf)]
    yl = [Y[py[i]] for i in range(RY.nf)]
    counts = [[g.adj[xl[li]][yl[lj]] for lj, _ in RY.groups] for li, _ in RX.groups]
    cells = [(i, j) for i in range(len(RX.groups)) for j in range(len(RY.groups)) if counts[i][j]]
    acc = {}
    for gams in itertools.product(*[_multis(counts[i][j]) for i, j in cells]):
        xc = [_ZERO] * len(RX.groups)
        yc = [_ZERO] * len(RY.groups)
        mult = 1
        for (i, j), gam in zip(cells, gams):
            xc[i] = _add(xc[i], gam)
            yc[j] = _add(yc[j], gam)
            mult *= _multinomial(gam)
        xi = RX.start + (RX.index[tuple(xc)] if RX.groups else 0)
        yi = RY.start + (RY.index[tuple(yc)] if RY.groups else 0)
        key = (min(xi, yi), max(xi, yi))
        acc[key] = acc.get(key, 0) + mult
    return [(i0, i1, m, g.start) for (i0, i1), m in sorted(acc.items())]


# ---------------------------------------------------------------------- public API
@lru_cache(maxsize=4)
def _structure_cached(level):
    basics = basic_types(level)
    cands, everything, by_key = _generate(level, basics)
    scalars = _basis_functions(basics, cands, everything)
    avail = {k: g for k, g in everything.items() if g.nf == 1 or g.connected or g.rank == 0}

    needed = {}
    stack = [g for g in scalars if g.nf > 1]
    while stack:
        g = stack.pop()
        if g.key in needed:
            continue
        needed[g.key] = g
        g.decomp = _decompose(g, avail, by_key)
        if g.decomp[0] == "basic":
            if g.decomp[2].nf > 1:
                stack.append(g.decomp[2])
        else:
            stack.extend(g.decomp[3:5])

    ordered = list(cands[1])
    for n in range(2, MAX_FACTORS + 1):
        nodes = [g for g in needed.values() if g.nf == n]
        ordered += sorted((g for g in nodes if g.decomp[0] == "prod"), key=lambda g: g.mpos)
        ordered += sorted((g for g in nodes if g.decomp[0] != "prod"), key=lambda g: (g.mus, g.npos))

    basic_rows = []
    start = 0
    for g in ordered:
        _set_components(g, _symmetry(g))
        g.start = start
        start += len(g.comps)
        if g.nf == 1:
            mu = g.leaves[0][0]
            basic_rows.extend((mu,) + (c[0] if c else _ZERO) for c in g.comps)
    basic_of = {g.leaves[0]: g for g in cands[1]}
    times = []
    for g in ordered:
        if g.nf == 1:
            continue
        times.extend(_entries_basic(g, basic_of) if g.decomp[0] == "basic" else _entries_product(g))
    mapping = [g.start for g in scalars]
    return (start, np.array(basic_rows, dtype=np.int64).reshape(-1, 4),
            np.array(times, dtype=np.int64).reshape(-1, 4), np.array(mapping, dtype=np.int64))


def _check_level(level):
    if isinstance(level, bool) or int(level) != level or level not in LEVELS:
        raise ValueError(f"MTP level must be an even integer in 2..28, got {level!r}")
    return int(level)


def template_structure(level):
    """Moment structure of the level-``level`` template.

    Returns
    -------
    alpha_moments_count : int
    alpha_index_basic : ndarray (n_basic, 4) of (mu, a, b, c)
    alpha_index_times : ndarray (n_times, 4) of (i0, i1, mult, k)
    alpha_moment_mapping : ndarray (S,)
        Fresh copies (the computation is cached per level).
    """
    nmom, basic, times, mapping = _structure_cached(_check_level(level))
    return nmom, basic.copy(), times.copy(), mapping.copy()


def make_template(level, species_count=1, min_dist=2.0, max_dist=5.0, radial_basis_size=8,
                  radial_basis_type="RBChebyshev", potential_name="MTP1m"):
    """Untrained MTP of the given level (equal to MLIP-2's ``untrained_mtps/LL.mtp``).

    Parameters
    ----------
    level : int
        Even, 2 ... 28.
    species_count : int
        Number of atom types C (the moment structure does not depend on it).
    min_dist, max_dist : float
        Radial basis interval; ``max_dist`` is the cutoff.
    radial_basis_size : int
        Number R of Chebyshev basis functions.
    radial_basis_type : {"RBChebyshev", "RBChebyshev_repuls"}
    potential_name : str
        One token (no whitespace).

    Returns
    -------
    MTPParams
        Untrained: no radial, species or moment coefficients.
    """
    from .params import RADIAL_BASIS_TYPES

    level = _check_level(level)
    if int(species_count) != species_count or species_count < 1:
        raise ValueError(f"species_count must be a positive integer, got {species_count!r}")
    if int(radial_basis_size) != radial_basis_size or radial_basis_size < 1:
        raise ValueError(f"radial_basis_size must be a positive integer, got {radial_basis_size!r}")
    if not (np.isfinite(min_dist) and np.isfinite(max_dist)) or not 0 <= min_dist < max_dist:
        raise ValueError(f"need 0 <= min_dist < max_dist, got min_dist={min_dist!r}, "
                         f"max_dist={max_dist!r}")
    if radial_basis_type not in RADIAL_BASIS_TYPES:
        raise ValueError(f"radial_basis_type must be one of {', '.join(RADIAL_BASIS_TYPES)}, "
                         f"got {radial_basis_type!r}")
    if not potential_name or any(ch.isspace() for ch in potential_name) \
            or any(ch in potential_name for ch in "{},="):
        raise ValueError(f"potential_name must be one token without spaces, braces, commas or "
                         f"'=', got {potential_name!r}")
    nmom, basic, times, mapping = template_structure(level)
    return MTPParams(potential_name=potential_name, species_count=int(species_count),
                     radial_basis_type=radial_basis_type, min_dist=float(min_dist),
                     max_dist=float(max_dist), radial_basis_size=int(radial_basis_size),
                     radial_funcs_count=int(basic[:, 0].max()) + 1, alpha_moments_count=nmom,
                     alpha_index_basic=basic, alpha_index_times=times,
                     alpha_moment_mapping=mapping)
