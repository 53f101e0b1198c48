"""The active set of MLIP-2's active learning: build, load, save, grade, select.

An :class:`ActiveSet` couples a potential (:class:`~mlip_py.potential.mtp.MTP`), the
selection weights (:class:`~mlip_py.selection.rows.RowWeights`, which rows a
configuration contributes) and a :class:`~mlip_py.selection.maxvol.MaxVol` engine whose
``n`` slots hold the rows of the selected configurations (mlip-formats.md §5).

Conventions
-----------
* Every configuration that ever contributes rows gets an integer *owner id*; slot ``j``
  of the maxvol matrix belongs to ``maxvol.owners[j]`` (``-1``: an initial empty row,
  ``init * e_j``).  :attr:`ActiveSet.configurations` maps the owner id of every occupied
  slot to its :class:`~mlip_py.configuration.Configuration` (one configuration may own
  several slots in neighbourhood mode).
* Grade of a configuration = max grade of its rows (``max_j |(b A^-1)_j|``); 0 for a
  configuration without rows (no atoms).
* Selection (:meth:`ActiveSet.select`) is MLIP-2's multiple selection of one batch.  The
  rows of the batch are computed once, written to a temporary file and read back in
  blocks through ``np.memmap`` windows by the *exact* streaming selection
  (:meth:`MaxVol.select_streaming`), whose swaps and final set equal those of the
  in-memory selection; memory is O(n^2 + buffer * n), independent of the batch size.
  The configurations that entered the set are taken from the first pass when the
  source is small (estimated size up to :data:`CACHE_BYTES`, kept meanwhile), else
  fetched by a second pass over the source, so that beyond that budget only the at
  most ``n`` configurations of the active set are held.
* :meth:`ActiveSet.select_batch` is the new "at most k configurations" selection
  (:meth:`MaxVol.batch_select` semantics: chosen rows are never pushed out again within
  the call, optional per-configuration labelling cost), run in passes over the same
  temporary file: one pass per swap, O(m n^2) flops each.
* Rows of many configurations are computed with ``workers`` threads: energy-gradient
  rows of configurations of up to 96 atoms in batches by compiled kernels that run in
  parallel over configurations (:meth:`RowFunction.many`, one OpenMP thread per
  configuration), larger ones one at a time with the MTP's OpenMP threads; force/stress
  rows by a pool of Python threads (the kernels release the GIL; one OpenMP thread
  each), configurations of at least :data:`BIG_CONFIGURATION` atoms in the calling
  thread with the MTP's OpenMP threads.
  Order and results do not depend on the number of workers.  Rows come from a
  :class:`~mlip_py.selection.rows.RowFunction` (kernels called directly, the same
  numbers as :func:`~mlip_py.selection.rows.configuration_rows`).
* ``.als`` files: :meth:`ActiveSet.state` / :meth:`ActiveSet.save` give MLIP-2's layout
  (configurations numbered in order of first appearance over the rows, one shared empty
  configuration for all unfilled rows); :meth:`ActiveSet.load` reads files written by
  MLIP-2 or by mlip-py.  The weighting (vibrations/molecules/structures) is not stored
  in the file and must be given when loading (default vibrations).
"""
from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

from ..errors import ConfigError, FormatError, MlipError, SelectionError
from .maxvol import DEFAULT_BLOCK_ROWS, MaxVol, SelectionResult, _check_threshold
from .rows import RowFunction, RowWeights

__all__ = ["ActiveSet", "RowStore", "SelectOutcome", "check_same_potential", "format_grade",
           "DEFAULT_BUFFER_BYTES"]

#: memory budget (bytes) of the candidate rows the streaming selection holds in RAM
#: between passes (the buffer holds rows and their products with A^-1: 16 n bytes/row)
DEFAULT_BUFFER_BYTES = 8 << 20

#: configurations with at least this many atoms are evaluated with OpenMP threads rather
#: than by the worker pool
BIG_CONFIGURATION = 512

#: configurations handed to the worker pool at a time
POOL_CHUNK = 64

#: at most this many configurations, or about :data:`BATCH_ROWS` rows, are evaluated per
#: call of the batched row kernels (bounded memory, whatever the number of candidates)
BATCH_CONFIGURATIONS = 256
BATCH_ROWS = 2048

#: memory budget (bytes, estimated) of the configurations a selection keeps from its
#: first pass over the source, so that the configurations entering the set need not be
#: read again; a larger source is read twice (memory stays bounded)
CACHE_BYTES = 8 << 20

#: grades above this are written as 9.9e99 (MLIP-2)
GRADE_CAP = 1e10


def format_grade(grade):
    """MLIP-2's text of an ``MV_grade`` feature: ``%f`` (``std::to_string``), 9.9e99 if > 1e10."""
    g = float(grade)
    if g > GRADE_CAP:
        g = 9.9e99
    return "%f" % g


# ------------------------------------------------------------------------------ row store
class RowStore:
    """Rows of a stream of configurations kept on disk (temporary files, deleted on close).

    Rows are appended with their owner id; :meth:`blocks` reads them back in blocks of
    at most ``block_rows`` rows through ``np.memmap`` windows that are unmapped after
    each block, so resident memory stays O(block_rows * n) however many rows are stored.
    The files are created when the write buffer (``block_rows`` rows) first fills: a
    store that never holds more rows than that stays in memory.

    Parameters
    ----------
    n : int
        Row length.
    block_rows : int
        Rows per block read back (and per write buffer).
    directory : str, optional
        Where the temporary files go (default: ``$TMPDIR``).
    values : bool
        Also store one float per row (e.g. the labelling cost of its configuration),
        read back with :meth:`values_block`.
    """

    def __init__(self, n, block_rows=DEFAULT_BLOCK_ROWS, directory=None, values=False):
        self.n = int(n)
        self.block_rows = max(1, int(block_rows))
        self.rows = 0
        self._directory = directory
        self._values = bool(values)
        self._rf = self._of = self._vf = None   # created by the first _flush
        self._memory = False                    # finished without files: rows in _wbuf
        self._wbuf = np.empty((self.block_rows, self.n))
        self._obuf = np.empty(self.block_rows, dtype=np.int64)
        self._vbuf = np.empty(self.block_rows) if values else None
        self._fill = 0
        self._rblk = None
        self._oblk = None
        self.peak_block_rows = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Delete the temporary files."""
        for fh in (self._rf, self._of, self._vf):
            if fh is not None:
                fh.close()
        self._rf = self._of = self._vf = None

    def _open_files(self):
        import tempfile

        d = self._directory
        self._rf = tempfile.TemporaryFile(prefix="mlip_py_rows_", dir=d)
        self._of = tempfile.TemporaryFile(prefix="mlip_py_owners_", dir=d)
        self._vf = tempfile.TemporaryFile(prefix="mlip_py_values_", dir=d) \
            if self._values else None

    def _flush(self):
        if self._fill:
            if self._rf is None:
                self._open_files()
            self._rf.write(memoryview(self._wbuf[:self._fill]).cast("B"))
            self._of.write(memoryview(self._obuf[:self._fill]).cast("B"))
            if self._vf is not None:
                self._vf.write(memoryview(self._vbuf[:self._fill]).cast("B"))
            self._fill = 0

    def append(self, rows, owner, value=0.0):
        """Append the rows (k, n) of one configuration, all owned by ``owner`` (and
        carrying ``value`` if the store keeps values)."""
        k = rows.shape[0] if type(rows) is np.ndarray and rows.ndim == 2 else -1
        f = self._fill
        if 0 < k <= self.block_rows - f - 1 and rows.shape[1] == self.n:
            # common case (rows of one configuration that fit the write buffer, which
            # is not full afterwards): no Python loop
            self._wbuf[f:f + k] = rows
            self._obuf[f:f + k] = owner
            if self._vbuf is not None:
                self._vbuf[f:f + k] = value
            self._fill = f + k
            self.rows += k
            return
        rows = np.asarray(rows, dtype=np.float64)
        k = rows.shape[0]
        if k == 0:
            return
        if rows.shape[1] != self.n:
            raise SelectionError(f"rows have {rows.shape[1]} columns, expected {self.n}")
        s = 0
        while s < k:
            room = self.block_rows - self._fill
            take = min(room, k - s)
            self._wbuf[self._fill:self._fill + take] = rows[s:s + take]
            self._obuf[self._fill:self._fill + take] = owner
            if self._vbuf is not None:
                self._vbuf[self._fill:self._fill + take] = value
            self._fill += take
            s += take
            if self._fill == self.block_rows:
                self._flush()
        self.rows += k

    def finish(self):
        """Flush the write buffer (call before reading)."""
        if self._rf is None:
            self._memory = True   # everything fits the write buffer: keep it there
            return
        self._flush()
        self._rf.flush()
        self._of.flush()
        if self._vf is not None:
            self._vf.flush()
        self._wbuf = self._obuf = self._vbuf = None

    def block(self, start, stop):
        """Rows ``start:stop`` and their owners (arrays reused by the next call)."""
        k = stop - start
        if self._rblk is None:
            self._rblk = np.empty((self.block_rows, self.n))
            self._oblk = np.empty(self.block_rows, dtype=np.int64)
        rb, ob = self._rblk[:k], self._oblk[:k]
        if k and self._memory:
            rb[...] = self._wbuf[start:stop]
            ob[...] = self._obuf[start:stop]
        elif k:
            mm = np.memmap(self._rf, dtype=np.float64, mode="r", offset=8 * self.n * start,
                           shape=(k, self.n))
            rb[...] = mm
            del mm
            mo = np.memmap(self._of, dtype=np.int64, mode="r", offset=8 * start, shape=(k,))
            ob[...] = mo
            del mo
        self.peak_block_rows = max(self.peak_block_rows, k)
        return rb, ob

    def values_block(self, start, stop):
        """The stored values of rows ``start:stop`` (a new array)."""
        if not self._values:
            raise SelectionError("this row store keeps no values")
        if stop <= start:
            return np.empty(0)
        if self._memory:
            return self._vbuf[start:stop].copy()
        mv = np.memmap(self._vf, dtype=np.float64, mode="r", offset=8 * start,
                       shape=(stop - start,))
        out = np.array(mv)
        del mv
        return out

    def blocks(self):
        """Iterator over ``(rows, owners)`` blocks covering every stored row in order."""
        for s in range(0, self.rows, self.block_rows):
            yield self.block(s, min(self.rows, s + self.block_rows))


# ------------------------------------------------------------------------------ outcome
@dataclasses.dataclass
class SelectOutcome:
    """What one selection call did.

    Attributes
    ----------
    result : SelectionResult
        The maxvol result (swaps, gains, grades before/after, passes).
    count : int
        Number of configurations read from the source.
    rows : int
        Number of rows they contributed.
    first_owner : int
        Owner id of the first configuration of the source (the i-th has
        ``first_owner + i``).
    entered : list of int
        Owner ids of the source's configurations in the active set after the call,
        unique, in slot order (first slot of each).
    """

    result: SelectionResult
    count: int
    rows: int
    first_owner: int
    entered: list


def _source_factory(source):
    if callable(source):
        return source
    if isinstance(source, (list, tuple)):
        return lambda: iter(source)
    raise TypeError("source must be a list of configurations or a callable returning a "
                    "fresh iterator over them (it is read twice)")


# ------------------------------------------------------------------------------ active set
class ActiveSet:
    """Maxvol active set of a potential (see the module docstring).

    Parameters
    ----------
    mtp : MTP, MTPParams or path
    weights : RowWeights, optional
        Which rows configurations contribute (default: one energy row each).
    threshold_init, threshold_select, threshold_swap : float
        MLIP-2's ``--init-threshold`` (1e-5), ``--select-threshold`` (1.1) and
        ``--swap-threshold`` (1.0000001).
    block_rows : int
        Rows graded per BLAS call / read per block.
    buffer_bytes : int
        Memory budget of the rows the streaming selection keeps between passes.
    tmpdir : str, optional
        Directory of the temporary row files.
    workers : int, optional
        Threads computing rows of different configurations (default: the MTP's
        ``num_threads``, or the OpenMP default when that is 0).
    """

    def __init__(self, mtp, weights=None, threshold_init=1e-5, threshold_select=1.1,
                 threshold_swap=1.0000001, *, block_rows=DEFAULT_BLOCK_ROWS,
                 buffer_bytes=DEFAULT_BUFFER_BYTES, tmpdir=None, workers=None, _maxvol=None):
        from ..potential.mtp import MTP

        self.mtp = mtp if isinstance(mtp, MTP) else MTP(mtp)
        self.weights = RowWeights() if weights is None else weights
        if not isinstance(self.weights, RowWeights):
            raise TypeError("weights must be a RowWeights")
        n = self.mtp.n_params
        self.maxvol = _maxvol if _maxvol is not None else MaxVol(
            n, threshold_init, threshold_select, threshold_swap, block_rows=block_rows)
        self.block_rows = int(block_rows)
        self.buffer_rows = max(2 * n, self.block_rows, int(buffer_bytes) // (16 * n))
        self.tmpdir = tmpdir
        if workers is None:
            from .._cext import load

            workers = self.mtp.num_threads or load("_mtp").max_threads()
        self.workers = max(1, int(workers))
        #: owner id -> Configuration for every owner holding a slot
        self.configurations = {}
        self._next_owner = 0
        #: largest number of rows held in RAM at once by grading (instrumentation)
        self.peak_grade_rows = 0
        #: features of the placeholder configuration of unfilled rows in the .als file
        #: (MLIP-2's select-add marks it with ``ID -1`` like the training set)
        self.empty_features = {}
        #: configurations of the last :meth:`_store_rows` (None: not kept)
        self._cache = None
        self._rowf = None

    # ------------------------------------------------------------------ properties
    @property
    def n(self):
        """Number of parameters = number of slots."""
        return self.maxvol.n

    @property
    def owners(self):
        """Owner id of every slot (``-1`` = empty)."""
        return self.maxvol.owners

    def filled_slots(self):
        """Number of slots holding a configuration's row."""
        return int(np.count_nonzero(self.maxvol.owners >= 0))

    def slot_configurations(self):
        """The configuration of every filled slot, in slot order (repeats possible)."""
        return [self.configurations[int(o)] for o in self.maxvol.owners.tolist() if o >= 0]

    def unique_configurations(self, owner_filter=None):
        """``(owner, configuration)`` of each distinct owner in slot order of first slot."""
        seen = []
        for o in self.maxvol.owners.tolist():
            if o >= 0 and o not in seen and (owner_filter is None or owner_filter(o)):
                seen.append(o)
        return [(o, self.configurations[o]) for o in seen]

    # ------------------------------------------------------------------ rows / grades
    def rows(self, cfg):
        """Maxvol rows of a configuration, (k, n)."""
        return self._row_function()(cfg)

    def _row_function(self):
        """The :class:`RowFunction` of the current potential and weights (MTP threads)."""
        f = self._rowf
        if f is None or f.mtp is not self.mtp or f.weights is not self.weights:
            f = self._rowf = RowFunction(self.mtp, self.weights)
        return f

    def iter_rows(self, cfgs, name=None):
        """``(cfg, rows)`` for every configuration of an iterable, in order.

        Uses the worker pool (see the module docstring); holds at most
        ``POOL_CHUNK`` configurations per worker.  An :class:`MlipError` (e.g. an atom
        type the potential does not cover) is re-raised naming ``name`` (the source,
        e.g. a file name) and the 1-based number of the configuration.
        """
        count = 0
        try:
            for item in self._iter_rows(cfgs):
                count += 1
                yield item
        except MlipError as err:
            if isinstance(err, FormatError):  # already names the file and line
                raise
            where = f"{name}: " if name else ""
            cls = type(err) if type(err) in (MlipError, ConfigError, SelectionError) else MlipError
            raise cls(f"{where}configuration {count + 1}: {err}") from None

    def _iter_rows(self, cfgs):
        rows = self._row_function()
        if rows.lean:
            yield from self._iter_rows_batched(cfgs, rows)
            return
        if self.workers <= 1:
            for cfg in cfgs:
                yield cfg, rows(cfg)
            return
        from concurrent.futures import ThreadPoolExecutor

        small = RowFunction(self.mtp, self.weights, num_threads=1)

        chunk = POOL_CHUNK * self.workers
        with ThreadPoolExecutor(self.workers, thread_name_prefix="mlip_rows") as pool:
            buf = []

            def flush(buf):
                futs = [None if len(c) >= BIG_CONFIGURATION else pool.submit(small, c)
                        for c in buf]
                for c, f in zip(buf, futs):
                    yield c, (rows(c) if f is None else f.result())

            for cfg in cfgs:
                buf.append(cfg)
                if len(buf) == chunk:
                    yield from flush(buf)
                    buf = []
            yield from flush(buf)

    def _iter_rows_batched(self, cfgs, rows):
        """Energy-gradient rows (no force/stress rows): batches of small configurations
        in one parallel kernel call (:meth:`RowFunction.many`, ``workers`` threads, one
        per configuration); the others one at a time with the MTP's threads (these rows
        do not depend on the thread count)."""
        def flush(buf):
            try:
                got = rows.many(buf, self.workers)
            except MlipError:
                # report the error at its configuration: redo the batch one at a time
                for c in buf:
                    yield c, rows(c)
                return
            yield from zip(buf, got)

        per_row = 1 if rows.weights.neighborhood else 0
        buf, nrows = [], 0
        for cfg in cfgs:
            buf.append(cfg)
            nrows += 1 + per_row * len(cfg)
            if len(buf) >= BATCH_CONFIGURATIONS or nrows >= BATCH_ROWS:
                yield from flush(buf)
                buf, nrows = [], 0
        if buf:
            yield from flush(buf)

    def grade(self, cfg):
        """Extrapolation grade of one configuration."""
        return self.maxvol.grade(self.rows(cfg)) if len(cfg) else 0.0

    def iter_grades(self, cfgs, max_configurations=256, comm=None, name=None):
        """Grade a stream of configurations in bounded memory.

        Rows of up to ``max_configurations`` configurations (and at least one) or about
        ``block_rows`` rows are graded with one BLAS call.

        Parameters
        ----------
        cfgs : iterable of Configuration
        max_configurations : int
        comm : mpi4py communicator, optional
            Every rank iterates the same ``cfgs``; configuration ``i`` is graded by rank
            ``i % size`` and the grades are gathered on rank 0, which yields every
            ``(cfg, grade)`` in order; the other ranks yield nothing.
        name : str, optional
            Name of the source for error messages.

        Yields
        ------
        (Configuration, float)
        """
        if comm is not None:
            yield from self._iter_grades_mpi(cfgs, max_configurations, comm, name)
        else:
            yield from self._iter_grades_local(cfgs, max_configurations, name)

    def _iter_grades_local(self, cfgs, max_configurations=256, name=None):
        pending, blocks, total = [], [], 0
        for cfg, r in self.iter_rows(cfgs, name):
            pending.append((cfg, r.shape[0]))
            blocks.append(r)
            total += r.shape[0]
            if total >= self.block_rows or len(pending) >= max_configurations:
                yield from self._grade_pending(pending, blocks, total)
                pending, blocks, total = [], [], 0
        if pending:
            yield from self._grade_pending(pending, blocks, total)

    def _grade_pending(self, pending, blocks, total):
        self.peak_grade_rows = max(self.peak_grade_rows, total)
        if total:
            g, _ = self.maxvol.grades(np.concatenate(blocks) if len(blocks) > 1 else blocks[0])
        pos = 0
        for cfg, k in pending:
            yield cfg, (float(g[pos:pos + k].max()) if k else 0.0)
            pos += k

    def _iter_grades_mpi(self, cfgs, chunk, comm, name=None):
        size, rank = comm.Get_size(), comm.Get_rank()
        chunk = max(1, int(chunk)) * size
        buf, base = [], 0

        def flush(buf, base):
            mine = [c for j, c in enumerate(buf) if (base + j) % size == rank]
            local = [g for _, g in self._iter_grades_local(mine, name=name)]
            parts = comm.gather(local, root=0)
            if rank == 0:
                its = [iter(p) for p in parts]
                for j, cfg in enumerate(buf):
                    yield cfg, next(its[(base + j) % size])

        for cfg in cfgs:
            buf.append(cfg)
            if len(buf) == chunk:
                yield from flush(buf, base)
                base += len(buf)
                buf = []
        yield from flush(buf, base)

    # ------------------------------------------------------------------ selection
    def _store_rows(self, factory, progress=None, comm=None, chunk=64, value=None, name=None):
        """Compute the rows of every configuration of the source into a RowStore.

        With ``comm`` every rank reads the source, configuration ``i`` is evaluated by
        rank ``i % size`` and the rows are gathered (in chunks) on rank 0, which alone
        holds a store (the other ranks get ``None``).  ``value(i, cfg)``, if given, is
        stored with the rows of configuration ``i``.

        Without ``comm`` the configurations read are also kept in ``self._cache`` while
        their estimated size stays within :data:`CACHE_BYTES` (else ``self._cache`` is
        None), for :meth:`_collect`.
        """
        rank = 0 if comm is None else comm.Get_rank()
        store = RowStore(self.n, self.block_rows, self.tmpdir, values=value is not None) \
            if rank == 0 else None
        val = value if value is not None else (lambda i, cfg: 0.0)
        first = self._next_owner
        count = 0
        try:
            it = factory()
            if progress is not None:
                it = progress(it)
            if comm is None:
                cache, used = [], 0
                for cfg, rows in self.iter_rows(it, name):
                    store.append(rows, first + count, val(count, cfg))
                    count += 1
                    if cache is not None:
                        used += 1024 + 96 * len(cfg)
                        if used <= CACHE_BYTES:
                            cache.append(cfg)
                        else:
                            cache = None
                self._cache = cache
            else:
                size = comm.Get_size()
                buf = []

                def flush(buf, base):
                    mine = [c for j, c in enumerate(buf) if (base + j) % size == rank]
                    local = [r for _, r in self.iter_rows(mine, name)]
                    parts = comm.gather(local, root=0)
                    if rank == 0:
                        its = [iter(p) for p in parts]
                        for j in range(len(buf)):
                            store.append(next(its[(base + j) % size]), first + base + j,
                                         val(base + j, buf[j]))

                for cfg in it:
                    buf.append(cfg)
                    if len(buf) == chunk * size:
                        flush(buf, count)
                        count += len(buf)
                        buf = []
                flush(buf, count)
                count += len(buf)
            if store is not None:
                store.finish()
        except BaseException:
            if store is not None:
                store.close()
            raise
        self._next_owner = first + count
        return store, first, count

    def _broadcast(self, comm):
        """Copy rank 0's active set (matrices, owners, configurations) to every rank."""
        mv = self.maxvol
        data = None
        if comm.Get_rank() == 0:
            data = (mv.A, mv.invA, mv.owners, mv._log_det, mv._baseline, self.configurations,
                    self._next_owner)
        data = comm.bcast(data, root=0)
        if comm.Get_rank() != 0:
            (mv.A, mv.invA, mv.owners, mv._log_det, mv._baseline, self.configurations,
             self._next_owner) = data

    def _collect(self, factory, first, count):
        """Fetch the source's configurations now in the set; drop the ones that left.

        From the configurations kept by :meth:`_store_rows` when there are, else by a
        second pass over the source.
        """
        cache, self._cache = self._cache, None
        held = set(int(o) for o in self.maxvol.owners.tolist() if o >= 0)
        need = {o for o in held if first <= o < first + count}
        for o in list(self.configurations):
            if o not in held:
                del self.configurations[o]
        if need:
            last = max(need)
            source = cache if cache is not None and len(cache) == count else factory()
            for i, cfg in enumerate(source):
                o = first + i
                if o in need:
                    self.configurations[o] = cfg
                if o >= last:
                    break
            missing = need - set(self.configurations)
            if missing:
                raise SelectionError("the configuration source changed between the two "
                                     f"passes (configuration {min(missing) - first} missing)")
        entered = []
        for o in self.maxvol.owners.tolist():
            if first <= o < first + count and o not in entered:
                entered.append(o)
        return entered

    def select(self, source, *, select_threshold=None, swap_threshold=None, swap_limit=None,
               progress=None, comm=None, name=None):
        """MLIP-2 multiple selection of one batch of configurations.

        Parameters
        ----------
        source : list of Configuration or callable
            The batch; a callable must return a fresh iterator each time (it is read
            twice: rows, then the configurations that entered the set).
        select_threshold, swap_threshold : float, optional
            Override the thresholds of the engine for this batch.
        swap_limit : int, optional
            At most this many swaps (MLIP-2 ``--selection-limit``; None = unlimited).
        progress : callable, optional
            Wraps the first iteration (e.g. :class:`mlip_py.cli._common.Progress`).
        comm : mpi4py communicator, optional
            Rows are computed on all ranks (round-robin), the selection runs on rank 0
            and the resulting set is broadcast; the outcome is the serial one.
        name : str, optional
            Name of the source for error messages.

        Returns
        -------
        SelectOutcome
            (on ranks other than 0 with ``comm``: ``result`` is None, ``entered`` empty)
        """
        factory = _source_factory(source)
        store, first, count = self._store_rows(factory, progress, comm, name=name)
        res, rows, entered = None, 0, []
        if store is not None:
            try:
                res = self.maxvol.select_streaming(
                    store.blocks, select_threshold, swap_threshold, swap_limit,
                    buffer_rows=self.buffer_rows, exact=True)
                rows = store.rows
            finally:
                store.close()
            entered = self._collect(factory, first, count)
        if comm is not None:
            self._broadcast(comm)
        return SelectOutcome(res, count, rows, first, entered)

    def select_batch(self, source, k=None, *, cost=None, budget=None, threshold=None,
                     progress=None, comm=None, name=None):
        """Add at most ``k`` configurations, greedily maximising ``|det A|`` (new).

        Same rule as :meth:`MaxVol.batch_select`, evaluated in passes over the rows
        stored on disk (one pass per swap), so memory does not grow with the batch:

        1. gain of a row ``g_i = max |(b_i A^-1)_j|`` over the slots not filled in this
           call (a swap multiplies ``|det A|`` by ``g_i``); rows with ``g_i <= threshold``
           (default: the swap threshold) are not wanted;
        2. a row of a configuration already chosen in this call is free (other atoms in
           neighbourhood mode): the largest such gain is taken first;
        3. otherwise, while fewer than ``k`` configurations were chosen, the row
           maximising ``g_i`` (no cost) or ``log(g_i) / cost`` -- the log-det (D-optimal
           information) gain per unit labelling cost -- is taken; with ``budget``,
           configurations costing more than the remaining budget are skipped;
        4. it replaces the slot of its maximum, which is then protected.

        Parameters
        ----------
        source : list of Configuration or callable
        k : int, optional
            Maximal number of configurations to add (None: no limit).
        cost : callable, optional
            ``cost(cfg) -> float > 0`` labelling cost of a configuration (e.g. ``N**3``).
        budget : float, optional
            Maximal total cost.
        threshold : float, optional
            Minimal gain (> 1).
        comm : mpi4py communicator, optional
            As in :meth:`select`.
        name : str, optional
            Name of the source for error messages.

        Returns
        -------
        SelectOutcome
        """
        from .maxvol import _kernels

        factory = _source_factory(source)
        if k is not None and (isinstance(k, bool) or int(k) != k or k < 0):
            raise ConfigError(f"batch size must be a non-negative integer, got {k!r}")
        thr = self.maxvol.threshold_swap if threshold is None else _check_threshold(
            "swap", threshold, 1.0)
        if budget is not None and cost is None:
            raise ConfigError("a selection budget needs a cost")

        def cost_of(i, cfg):
            c = float(cost(cfg))
            if not (math.isfinite(c) and c > 0.0):
                raise ConfigError(f"cost of configuration {i + 1} is {c!r}, expected a "
                                  "positive number")
            return c

        store, first, count = self._store_rows(factory, progress, comm,
                                               value=None if cost is None else cost_of,
                                               name=name)
        if store is None:  # rank != 0
            self._broadcast(comm)
            return SelectOutcome(None, count, 0, first, [])
        mv = self.maxvol
        K = _kernels()
        n = self.n
        mask = np.ones(n, dtype=bool)
        chosen = {}   # owner -> cost
        entered_pos = set()
        spent = 0.0
        swaps, gains = [], []
        before = after = 0.0
        passes = 0
        try:
            work = np.empty((store.block_rows, n))
            while True:
                passes += 1
                best_free = (-1.0, -1, -1, -1)      # gain, pos, slot, owner
                best_new = (-math.inf, -1, -1, -1)  # score, pos, slot, owner
                gmax_all = 0.0
                pos0 = 0
                for blk, own in store.blocks():
                    m = blk.shape[0]
                    X = work[:m]
                    np.matmul(blk, mv.invA, out=X)
                    absx = np.abs(X)
                    if passes == 1:
                        before = max(before, float(absx.max()))
                    absx[:, ~mask] = -1.0
                    col = np.argmax(absx, axis=1)
                    g = absx[np.arange(m), col]
                    if entered_pos:
                        for p in entered_pos:
                            if pos0 <= p < pos0 + m:
                                g[p - pos0] = -1.0
                    gmax_all = max(gmax_all, float(g.max()))
                    ok = g > thr
                    if ok.any():
                        if chosen:
                            free = ok & np.isin(own, np.fromiter(chosen, np.int64, len(chosen)))
                            if free.any():
                                i = int(np.argmax(np.where(free, g, -1.0)))
                                if g[i] > best_free[0]:
                                    best_free = (float(g[i]), pos0 + i, int(col[i]), int(own[i]))
                        if k is None or len(chosen) < k:
                            cand = ok
                            if cost is not None:
                                cost_arr = store.values_block(pos0, pos0 + m)
                                if budget is not None:
                                    cand = cand & (cost_arr <= budget - spent)
                                score = np.log(np.maximum(g, 1.0)) / cost_arr
                            else:
                                score = g
                            if cand.any():
                                i = int(np.argmax(np.where(cand, score, -np.inf)))
                                if score[i] > best_new[0]:
                                    best_new = (float(score[i]), pos0 + i, int(col[i]),
                                                int(own[i]))
                    pos0 += m
                if passes == 1:
                    after = before
                if best_free[1] >= 0:
                    _, pos, j0, owner = best_free
                elif best_new[1] >= 0:
                    _, pos, j0, owner = best_new
                    c = float(store.values_block(pos, pos + 1)[0]) if cost is not None else 0.0
                    chosen[owner] = c
                    spent += c
                else:
                    after = gmax_all
                    break
                row, _ = store.block(pos, pos + 1)
                B = np.array(row, dtype=np.float64, order="C")
                Xr = B @ mv.invA
                rmax, rcol = np.empty(1), np.empty(1, dtype=np.int64)
                gpiv = K.swap_once(mv.A, mv.invA, B, Xr, 0, j0, rmax, rcol)
                mv.owners[j0] = owner
                mv._log_det += math.log(abs(gpiv))
                mask[j0] = False
                entered_pos.add(pos)
                swaps.append((pos, j0))
                gains.append(abs(gpiv))
                if len(swaps) % mv.refresh_every == 0:
                    mv._maybe_refresh()
                if not mask.any():
                    after = 0.0
                    break
            if swaps:
                mv._maybe_refresh()
            rows = store.rows
        finally:
            store.close()
        gains = np.asarray(gains, dtype=np.float64)
        res = SelectionResult(swaps, len(swaps), before, after,
                              float(np.log(gains).sum()) if gains.size else 0.0, gains, passes)
        entered = self._collect(factory, first, count)
        if comm is not None:
            self._broadcast(comm)
        return SelectOutcome(res, count, rows, first, entered)

    # ------------------------------------------------------------------ .als state
    def state(self):
        """The active set as an :class:`~mlip_py.io.als.ALSState` (MLIP-2 layout)."""
        from ..io.als import ALSState, empty_configuration

        number, cfgs = {}, []
        row_cfg = np.empty(self.n, dtype=np.int64)
        empty = None
        for r, o in enumerate(self.maxvol.owners.tolist()):
            if o not in number:
                number[o] = len(cfgs)
                if o < 0:
                    if empty is None:
                        empty = empty_configuration()
                        empty.features.update(self.empty_features)
                    cfgs.append(empty)
                else:
                    cfgs.append(self.configurations[o])
            row_cfg[r] = number[o]
        return ALSState(params=self.mtp.params, weights=self.weights.als_dict(),
                        a=self.maxvol.A.copy(), inv_a=self.maxvol.invA.copy(),
                        row_cfg=row_cfg, configurations=cfgs)

    def save(self, path):
        """Write the ``.als`` file (atomically)."""
        from ..io.als import write_als

        write_als(path, self.state())

    @classmethod
    def from_state(cls, state, mtp=None, weighting="vibrations", threshold_init=1e-5,
                   threshold_select=1.1, threshold_swap=1.0000001, **kwargs):
        """An active set from a loaded ``.als`` state.

        Parameters
        ----------
        state : ALSState
        mtp : MTP, MTPParams or path, optional
            The potential to grade with; must equal the one stored in the state
            (default: the stored one).
        weighting : str
            Not stored in the file (default vibrations).
        """
        from ..potential.mtp import MTP

        if mtp is None:
            mtp = MTP(state.params)
        elif not isinstance(mtp, MTP):
            mtp = MTP(mtp)
        check_same_potential(mtp.params, state.params)
        weights = RowWeights.from_als(state.weights, weighting)
        owners = np.empty(len(state.row_cfg), dtype=np.int64)
        for r, c in enumerate(state.row_cfg.tolist()):
            owners[r] = -1 if len(state.configurations[c]) == 0 else c
        mv = MaxVol.from_matrix(state.a, state.inv_a, owners, threshold_init=threshold_init,
                                threshold_select=threshold_select, threshold_swap=threshold_swap,
                                block_rows=kwargs.get("block_rows", DEFAULT_BLOCK_ROWS))
        self = cls(mtp, weights, threshold_init, threshold_select, threshold_swap,
                   _maxvol=mv, **kwargs)
        self.configurations = {c: state.configurations[c] for c in set(owners.tolist()) if c >= 0}
        self._next_owner = len(state.configurations)
        return self

    @classmethod
    def load(cls, path, mtp=None, weighting="vibrations", **kwargs):
        """Read an ``.als`` file (see :meth:`from_state`)."""
        from ..io.als import read_als

        return cls.from_state(read_als(os.fspath(path)), mtp, weighting, **kwargs)


def check_same_potential(p, q):
    """Raise ConfigError unless two MTPParams describe the same potential."""
    same = (p.species_count == q.species_count and p.radial_basis_type == q.radial_basis_type
            and p.radial_funcs_count == q.radial_funcs_count
            and p.radial_basis_size == q.radial_basis_size
            and p.alpha_moments_count == q.alpha_moments_count
            and np.array_equal(p.alpha_index_basic, q.alpha_index_basic)
            and np.array_equal(p.alpha_index_times, q.alpha_index_times)
            and np.array_equal(p.alpha_moment_mapping, q.alpha_moment_mapping)
            and math.isclose(p.min_dist, q.min_dist, rel_tol=1e-12)
            and math.isclose(p.max_dist, q.max_dist, rel_tol=1e-12)
            and math.isclose(p.scaling, q.scaling, rel_tol=1e-12))
    if same:
        a, b = p.get_params(), q.get_params()
        same = np.allclose(a, b, rtol=1e-12, atol=0.0)
    if not same:
        raise ConfigError("the potential differs from the one stored in the active-learning "
                          "state file (grades would be meaningless); use the potential the "
                          "state was made with")

