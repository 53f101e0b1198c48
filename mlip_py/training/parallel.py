"""MPI helpers for training (round-robin data distribution, reductions).

``mlp train`` runs serially unless it was started by an MPI launcher.  The launcher is
detected from its environment variables **before** :mod:`mpi4py` is imported (importing
mpi4py initialises MPI, which is slow and, outside a launcher, may print warnings), so a
plain ``mlp train`` never touches MPI even when mpi4py is installed.

Conventions (as MLIP-2's MPI build):

* configuration number ``k`` (0-based, in file order) belongs to rank ``k % size``;
* every rank computes partial sums (loss, gradient, normal equations, error figures);
  they are summed with ``allreduce`` so all ranks hold the same total;
* rank 0 prints and writes files.

:func:`get_comm` returns a :class:`SerialComm` or an :class:`MPIComm`; both expose the
same small interface, so the training code has no ``if mpi`` branches.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import ConfigError

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
        return k % self.size == self.rank


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
