"""MPI helpers for training (block distribution of the data, deterministic reductions).

``mlp train`` runs serially unless it was started by an MPI launcher.  The launcher is
detected from its environment variables **before** :mod:`mpi4py` is imported (importing
mpi4py initialises MPI, which is slow and, outside a launcher, may print warnings), so a
plain ``mlp train`` never touches MPI even when mpi4py is installed.

Conventions:

* configurations (0-based, in file order, empty ones included) are grouped into blocks of
  :data:`BLOCK_SIZE` consecutive ones; block ``b`` belongs to rank ``b % size``
  (:meth:`MPIComm.owns`), so a rank holds whole blocks;
* every sum over configurations (loss, gradient, normal equations, error figures) is
  formed block by block, each block in configuration order, and the block results are
  added in block order starting from zero: :meth:`ordered_sum` (small vectors: all block
  partials are gathered on every rank) and :meth:`block_fold` (large accumulators: the
  running sum is passed from the owner of block b to the owner of block b + 1).  Serial
  runs do exactly the same, so the totals are bit-for-bit independent of the number of
  ranks (and the training with it, despite ill-conditioned linear solves);
* rank 0 prints and writes files.

:func:`get_comm` returns a :class:`SerialComm` or an :class:`MPIComm`; both expose the
same small interface, so the training code has no ``if mpi`` branches.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import ConfigError

#: configurations per reduction block (fixed: results must not depend on the rank count)
BLOCK_SIZE = 16
#: MPI tag of the running sums passed between ranks by :meth:`MPIComm.block_fold`
_FOLD_TAG = 7311

#: environment variables set by common MPI launchers (Open MPI, MPICH/Hydra, Intel MPI,
#: Slurm's PMI) giving the number of processes
SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS",
                  "MV2_COMM_WORLD_SIZE")


def launched_size():
    """Number of processes announced by an MPI launcher's environment (1 if none)."""
    for var in SIZE_VARIABLES:
        value = os.environ.get(var)
        if value:
            try:
                return max(1, int(value))
            except ValueError:
                continue
    return 1


class SerialComm:
    """One process: every reduction is the identity."""

    rank = 0
    size = 1
    is_mpi = False

    def allreduce_sum(self, value):
        """Sum over ranks (a float, int or array; arrays are returned as new arrays)."""
        return np.array(value, dtype=np.float64) if isinstance(value, np.ndarray) else value

    def allreduce_max(self, value):
        return value

    def allreduce_min(self, value):
        return value

    def bcast(self, value, root=0):
        return value

    def barrier(self):
        pass

    def owns(self, k):
        """True if configuration number ``k`` belongs to this rank."""
        return True

    def allgather(self, obj):
        """List of every rank's ``obj`` (rank order)."""
        return [obj]

    def global_indices(self, n_local):
        """Global configuration numbers of this rank's ``n_local`` configurations."""
        return np.arange(n_local, dtype=np.int64)

    def owned_blocks(self, n_blocks):
        """Numbers of this rank's blocks, increasing."""
        return range(n_blocks)

    def ordered_sum(self, block_ids, parts, length):
        """Sum of all ranks' block partials in increasing block order, starting from zero.

        Parameters
        ----------
        block_ids : sequence of int
            Global block numbers of this rank's partials.
        parts : (len(block_ids), length) array
        length : int

        Returns
        -------
        (length,) array, identical on every rank.
        """
        return _fold_parts([(np.asarray(block_ids, dtype=np.int64),
                             np.asarray(parts, dtype=np.float64).reshape(-1, length))], length)

    def block_fold(self, n_blocks, produce, fold, acc):
        """``acc = fold(acc, produce(b))`` for b = 0 .. n_blocks-1 in order.

        ``produce(b)`` is called only for this rank's blocks (b % size == rank); ``acc``
        is a float64 array (the start value, the same on every rank); ``fold`` returns
        the new accumulator (same shape).  The result is returned on every rank.
        """
        for b in range(n_blocks):
            acc = fold(acc, produce(b))
        return acc


def _fold_parts(gathered, length):
    ids = np.concatenate([g[0] for g in gathered]) if gathered else np.zeros(0, np.int64)
    rows = np.concatenate([g[1] for g in gathered]) if gathered else np.zeros((0, length))
    acc = np.zeros(length)
    for q in np.argsort(ids, kind="stable"):
        acc += rows[q]
    return acc


class MPIComm:
    """MPI_COMM_WORLD through mpi4py."""

    is_mpi = True

    def __init__(self, comm):
        from mpi4py import MPI

        self._MPI = MPI
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()

    def _reduce(self, value, op):
        if isinstance(value, np.ndarray):
            send = np.ascontiguousarray(value, dtype=np.float64)
            recv = np.empty_like(send)
            self.comm.Allreduce(send, recv, op=op)
            return recv
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return int(self.comm.allreduce(int(value), op=op))
        return float(self.comm.allreduce(float(value), op=op))

    def allreduce_sum(self, value):
        return self._reduce(value, self._MPI.SUM)

    def allreduce_max(self, value):
        return self._reduce(value, self._MPI.MAX)

    def allreduce_min(self, value):
        return self._reduce(value, self._MPI.MIN)

    def bcast(self, value, root=0):
        if isinstance(value, np.ndarray):
            buf = np.ascontiguousarray(value, dtype=np.float64).copy()
            self.comm.Bcast(buf, root=root)
            return buf
        return self.comm.bcast(value, root=root)

    def barrier(self):
        self.comm.Barrier()

    def owns(self, k):
        """True if configuration number ``k`` belongs to this rank (whole blocks)."""
        return (k // BLOCK_SIZE) % self.size == self.rank

    def allgather(self, obj):
        return self.comm.allgather(obj)

    def owned_blocks(self, n_blocks):
        return range(self.rank, n_blocks, self.size)

    def global_indices(self, n_local):
        """Global numbers of this rank's configurations (the ones :meth:`owns` selects)."""
        i = np.arange(n_local, dtype=np.int64)
        block = (i // BLOCK_SIZE) * self.size + self.rank
        return block * BLOCK_SIZE + i % BLOCK_SIZE

    def ordered_sum(self, block_ids, parts, length):
        mine = (np.asarray(block_ids, dtype=np.int64),
                np.ascontiguousarray(parts, dtype=np.float64).reshape(-1, length))
        return _fold_parts(self.comm.allgather(mine), length)

    def block_fold(self, n_blocks, produce, fold, acc):
        """Ordered fold over blocks spread over the ranks (see :class:`SerialComm`).

        The running sum travels from the owner of block b to the owner of block b + 1;
        a rank computes ``produce(b)`` for its next block while the sum is elsewhere.
        """
        acc = np.ascontiguousarray(acc, dtype=np.float64)
        pending = None          # (request, buffer) of the last send; at most one in flight
        for b in range(self.rank, n_blocks, self.size):
            item = produce(b)
            if b > 0:
                buf = np.empty_like(acc)
                self.comm.Recv(buf, source=(b - 1) % self.size, tag=_FOLD_TAG)
                acc = buf
            acc = np.ascontiguousarray(fold(acc, item), dtype=np.float64)
            if b < n_blocks - 1:
                if pending is not None:
                    pending[0].Wait()
                out = acc.copy()
                pending = (self.comm.Isend(out, dest=(b + 1) % self.size, tag=_FOLD_TAG), out)
        if pending is not None:
            pending[0].Wait()
        if n_blocks:
            acc = np.ascontiguousarray(acc, dtype=np.float64)
            self.comm.Bcast(acc, root=(n_blocks - 1) % self.size)
        return acc


def block_layout(n_local, comm):
    """Global block numbers of this rank's configurations and the number of blocks.

    Parameters
    ----------
    n_local : int
        Number of configurations this rank holds (the ones ``comm.owns`` selected, in
        file order, empty ones included).

    Returns
    -------
    blocks : (n_local,) int array
    n_blocks : int
        Total over all ranks.
    """
    n_global = int(comm.allreduce_sum(int(n_local)))
    expected = sum(1 for k in range(n_global) if comm.owns(k)) if comm.is_mpi else n_global
    if comm.allreduce_max(int(expected != n_local)):
        raise ConfigError(f"rank {comm.rank} holds {n_local} configurations, but the block "
                          f"distribution of {n_global} gives it {expected}; distribute the "
                          "training set with comm.owns()")
    blocks = comm.global_indices(n_local) // BLOCK_SIZE
    return blocks, -(-n_global // BLOCK_SIZE)


_COMM = None


def get_comm(force_serial=False):
    """The communicator of this process (created once).

    Under an MPI launcher with more than one process, mpi4py is imported and
    MPI_COMM_WORLD is used; a missing mpi4py is then an error (running N independent
    serial trainings that all write the same file would be wrong).  Otherwise a
    :class:`SerialComm` is returned without importing mpi4py.
    """
    global _COMM
    if force_serial:
        return SerialComm()
    if _COMM is not None:
        return _COMM
    if launched_size() > 1:
        try:
            from mpi4py import MPI
        except ImportError as err:
            raise ConfigError("started by an MPI launcher with several processes, but mpi4py "
                              "is not installed (pip install mpi4py)") from err
        comm = MPI.COMM_WORLD
        _COMM = MPIComm(comm) if comm.Get_size() > 1 else SerialComm()
    else:
        _COMM = SerialComm()
    return _COMM
