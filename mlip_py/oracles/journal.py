"""Running an oracle over a batch: chunks, the resumable journal, recorded failures.

Indices.  Configuration ``k`` is the 0-based position in the input file (all of it, not
only the chunk).  ``--chunk=i/n`` (1-based ``i``, as SLURM array task ids ``1..n``) takes
the configurations with ``k % n == i - 1``.

Work directory (the journal).  With a work directory, configuration ``k`` owns
``<workdir>/<k:06d>/``; its outcome is committed there atomically (temporary file,
``fsync``, ``rename``, ``fsync`` of the directory):

* ``result.cfg``: the labelled configuration (lossless text cfg), or
* ``failed.cfg``: the input configuration with features ``label_error`` (one line) and
  ``label_index`` (``k``).

A rerun skips every configuration with a committed outcome (results are re-used, failures
are reported again without running the oracle unless ``retry_failed``).  A committed
outcome whose geometry (types, lattice, positions, compared exactly) differs from the input
configuration ``k`` stops the run with a ConfigError: the directory belongs to another
input.  While an oracle works on ``k`` it holds an exclusive ``flock`` on
``<k:06d>/.mlp_lock``; the command oracle hands that lock to its child process, so a rerun
waits for a command that is still running from a killed earlier run instead of starting
it a second time.  A SIGKILL at any moment therefore loses at most the configuration in
flight, and nothing is ever labelled twice.  (``flock`` across machines needs a file system
that supports it; NFS emulates it with POSIX locks, which do not follow the child, so do not
rerun while a killed job's commands may still be running elsewhere.)

Without a work directory (built-in oracles) nothing is kept between runs; the caller
writes the output atomically, so an interrupted run leaves no partial file.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import re

import numpy as np

from ..errors import ConfigError, FormatError
from .._log import get_logger
from . import OracleFailure

log = get_logger(__name__)

RESULT = "result.cfg"
FAILED = "failed.cfg"
LOCK = ".mlp_lock"


def parse_chunk(text):
    """``"i/n"`` -> ``(i, n)`` with ``1 <= i <= n`` (ConfigError otherwise)."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m:
        raise ConfigError(f"--chunk: expected i/n (e.g. 3/10, i from 1 to n), got {text!r}")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 1 <= i <= n:
        raise ConfigError(f"--chunk: i must be between 1 and n (1-based, like SLURM array task "
                          f"ids), got {i}/{n}")
    return i, n


def cfg_dir(workdir, index):
    """The directory of configuration ``index`` in ``workdir``."""
    return os.path.join(workdir, f"{index:06d}")


def one_line(text, limit=2000):
    """A message squeezed onto one line (for the ``label_error`` feature)."""
    text = " | ".join(s.strip() for s in str(text).splitlines() if s.strip())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def failure_record(cfg, index, message):
    """The input configuration with ``label_error`` and ``label_index`` features."""
    rec = cfg.copy()
    rec.features["label_error"] = one_line(message) or "unknown error"
    rec.features["label_index"] = str(index)
    return rec


def same_geometry(a, b):
    """True when types, lattice and positions are identical (bit for bit)."""
    return (len(a) == len(b) and np.array_equal(a.types, b.types)
            and np.array_equal(a.lattice, b.lattice) and np.array_equal(a.positions, b.positions))


def commit(path, cfg):
    """Write one configuration as lossless cfg: temporary file, fsync, rename, fsync dir."""
    from ..io._atomic import atomic_open
    from ..io.cfg import write_cfg

    with atomic_open(path, "wb") as fh:
        write_cfg(fh, [cfg], lossless=True)
        fh.flush()
        os.fsync(fh.fileno())
    fsync_dir(os.path.dirname(os.path.abspath(path)))


def fsync_dir(path):
    """fsync a directory (so a rename in it survives a crash); ignored where unsupported."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _read_one(path):
    from ..io.cfg import read_cfg

    cfgs = read_cfg(path)
    if len(cfgs) != 1:
        raise FormatError(f"expected one configuration, found {len(cfgs)}", path)
    return cfgs[0]


@dataclasses.dataclass
class Outcome:
    """What happened to one configuration."""

    index: int
    ok: bool
    #: the labelled configuration (ok) or the failure record
    cfg: object
    #: True when taken from the journal of an earlier run (the oracle did not run)
    reused: bool = False


class Journal:
    """Per-configuration directories and committed outcomes in ``workdir`` (see the module doc)."""

    def __init__(self, workdir):
        self.workdir = os.path.abspath(os.fspath(workdir))
        try:
            os.makedirs(self.workdir, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"cannot create the work directory {workdir}: {err.strerror or err}") \
                from None

    def directory(self, index):
        return cfg_dir(self.workdir, index)

    def committed(self, index, cfg):
        """The committed :class:`Outcome` of ``index``, or None (checks it belongs to ``cfg``)."""
        d = self.directory(index)
        for name, ok in ((RESULT, True), (FAILED, False)):
            path = os.path.join(d, name)
            if not os.path.exists(path):
                continue
            try:
                rec = _read_one(path)
            except (FormatError, OSError, ValueError) as err:
                log.warning("%s: unreadable, labelling configuration index %d again (%s)",
                            path, index, err)
                return None
            if not same_geometry(rec, cfg):
                raise ConfigError(
                    f"{path} belongs to a different input: configuration index {index} of this "
                    f"input has other atoms, lattice or positions. Use another --workdir or "
                    f"remove {self.workdir}")
            return Outcome(index, ok, rec, reused=True)
        return None

    def load(self, index):
        """The committed labelled configuration of ``index``."""
        return _read_one(os.path.join(self.directory(index), RESULT))

    def run(self, index, cfg, oracle, retry_failed=False):
        """Label ``cfg`` (configuration ``index``) unless done; return its :class:`Outcome`."""
        done = self.committed(index, cfg)
        if done is not None and (done.ok or not retry_failed):
            return done
        d = self.directory(index)
        os.makedirs(d, exist_ok=True)
        fd = os.open(os.path.join(d, LOCK), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.warning("configuration index %d: %s is locked (a command from an earlier run "
                            "is still running there, or another mlp label works on it): waiting",
                            index, d)
                fcntl.flock(fd, fcntl.LOCK_EX)
            done = self.committed(index, cfg)
            if done is not None and (done.ok or not retry_failed):
                return done
            fresh = done is not None  # retrying a recorded failure: start from scratch
            try:
                labelled = oracle.label(cfg, index, workdir=d, lock_fd=fd, fresh=fresh)
            except OracleFailure as err:
                rec = failure_record(cfg, index, str(err))
                commit(os.path.join(d, FAILED), rec)
                return Outcome(index, False, rec)
            commit(os.path.join(d, RESULT), labelled)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(d, FAILED))
            return Outcome(index, True, labelled)
        finally:
            os.close(fd)  # releases the lock (unless a still-running child holds it)


def run_batch(source, oracle, journal=None, chunk=(1, 1), retry_failed=False):
    """Label the configurations of ``source`` (in order); yield one :class:`Outcome` each.

    Parameters
    ----------
    source : iterable of Configuration
        The whole input (indices count all of it, also with a chunk).
    oracle : object
        See :mod:`mlip_py.oracles` (``prepare`` must have been called).
    journal : Journal, optional
        Required by oracles with ``needs_workdir``.
    chunk : (int, int)
        ``(i, n)``: only configurations with ``index % n == i - 1``.
    retry_failed : bool
        Run the oracle again on configurations whose failure the journal recorded.
    """
    i, n = chunk
    if getattr(oracle, "needs_workdir", False) and journal is None:
        raise ConfigError(f"--oracle={oracle.name} needs a work directory")
    for index, cfg in enumerate(source):
        if index % n != i - 1:
            continue
        if journal is not None:
            outcome = journal.run(index, cfg, oracle, retry_failed)
        else:
            try:
                outcome = Outcome(index, True, oracle.label(cfg, index))
            except OracleFailure as err:
                outcome = Outcome(index, False, failure_record(cfg, index, str(err)))
        if not outcome.ok:
            log.warning("configuration index %d failed%s: %s", index,
                        " (recorded earlier; --retry-failed runs it again)" if outcome.reused else "",
                        outcome.cfg.features.get("label_error", ""))
        yield outcome
