"""The ``command:<shell command>`` oracle: an external program per configuration.

This is how VASP, Quantum ESPRESSO, ... are used: a small wrapper script of the user's turns
the files written here into the code's input, runs it, and leaves a result file.

The contract
------------
For configuration ``k`` (0-based index in the input file) mlp makes the directory
``<workdir>/<k:06d>/`` (default work directory ``<output>.work/``) and writes into it

* ``input.cfg``: the configuration as lossless MLIP text cfg (types 0-based, features
  kept, no energy/forces/stress);
* ``POSCAR``: VASP 4/5 POSCAR, atoms **sorted by type** (stable) with a species line when
  the type map is known; a non-periodic direction has a zero lattice vector (a wrapper for
  a plane-wave code must put such a configuration in a box);
* ``input.extxyz``: extended XYZ with element symbols, in input order (only when the type
  map is known).

It then runs the command with ``/bin/sh -c`` (as ``subprocess`` with ``shell=True``) in
that directory, with standard input from ``/dev/null``, standard output and error in
``mlp_command.out`` / ``mlp_command.err``, in its own process group, and with the
environment variables

* ``MLIP_PY_TYPE_MAP``: the elements of types 0, 1, ... as ``Cu,Ni`` (empty if unknown);
* ``MLIP_PY_CFG_INDEX``: ``k``;
* ``MLIP_PY_START_DIR``: the directory ``mlp label`` was started in (relative paths in the
  command are relative to the configuration's directory, not to this one: write
  ``$MLIP_PY_START_DIR/run_vasp.sh`` or an absolute path).

Exit status 0 means success; anything else, a timeout (``--timeout``: the process group
gets SIGTERM, then SIGKILL after 5 s) or an unusable result is a failure of that
configuration only: it is recorded and the batch goes on.  The result is read from the
first of these files that exists (the last configuration in it):

* ``output.cfg``: MLIP cfg, atoms in the order of ``input.cfg``;
* ``OUTCAR``: VASP OUTCAR, atoms in the order of ``POSCAR`` (sorted by type; species
  left out of the POSCAR because they have no atoms are allowed), energy as MLIP-2 takes it;
  ``EFS_by`` becomes ``VASP`` or ``VASP_not_converged``;
* ``output.extxyz``: extended XYZ (any ASE-readable extxyz: ``energy``, ``forces``,
  ``stress`` or ``virial``), atoms in the order of ``input.extxyz``; needs the type map.

The result must have the same atoms (number and types) at the same positions (within
1e-3 A, modulo periodic lattice vectors): the oracle computes a single point, it does not
relax.  Energy is required; forces and stress are taken when present.  ``EFS_by`` is the
result's own ``EFS_by`` feature if it has one, else ``--efs-by`` (default ``command``).

Restarts.  The command runs under a small ``/bin/sh`` wrapper that records its exit
status in ``mlp_command.status`` (written by rename) when it ends, even if mlp itself was
killed in the meantime; the per-configuration lock (:mod:`.journal`) is inherited by the
command.  A rerun therefore waits for a command still running from a killed run, and takes
the result of a command that completed after mlp died instead of running it again.
Known input/output files of an attempt that did not complete are deleted before the next
attempt; other files the program left (e.g. WAVECAR) stay.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess

import numpy as np

from ..errors import ConfigError, FormatError
from .._log import get_logger
from . import OracleFailure, apply_labels

log = get_logger(__name__)

INPUT_CFG = "input.cfg"
INPUT_POSCAR = "POSCAR"
INPUT_EXTXYZ = "input.extxyz"
OUTPUT_CFG = "output.cfg"
OUTPUT_OUTCAR = "OUTCAR"
OUTPUT_EXTXYZ = "output.extxyz"
STDOUT = "mlp_command.out"
STDERR = "mlp_command.err"
STATUS = "mlp_command.status"
#: files removed before a fresh attempt
ATTEMPT_FILES = (INPUT_CFG, INPUT_POSCAR, INPUT_EXTXYZ, OUTPUT_CFG, OUTPUT_OUTCAR, OUTPUT_EXTXYZ,
                 STDOUT, STDERR, STATUS, STATUS + ".tmp")
#: maximal deviation (A) between input and result positions
POSITION_TOLERANCE = 1e-3
#: seconds between SIGTERM and SIGKILL of a timed-out command
KILL_GRACE = 5.0

# Runs the user's command exactly as `sh -c "$cmd"` and records its exit status by rename,
# also when mlp has been killed meanwhile (the wrapper is not mlp's child any more then).
_WRAPPER = (
    '/bin/sh -c "$MLIP_PY_COMMAND"\n'
    'mlp_status=$?\n'
    f'printf "%s\\n" "$mlp_status" > {STATUS}.tmp && mv -f {STATUS}.tmp {STATUS}\n'
    'exit $mlp_status\n'
)


class CommandOracle:
    """Run a shell command per configuration (see the module docstring for the contract).

    Parameters
    ----------
    command : str
        Shell command (``/bin/sh -c``).
    timeout : float, optional
        Seconds before the command is killed and the configuration counted as failed.
    efs_by : str, optional
        ``EFS_by`` value for results that do not state one (default ``"command"``).
    """

    name = "command"
    needs_type_map = False
    needs_workdir = True

    def __init__(self, command, timeout=None, efs_by=None):
        command = str(command).strip()
        if len(command) >= 2 and command[0] == command[-1] and command[0] in "\"'":
            command = command[1:-1].strip()  # command:"..." passed through without a shell
        if not command:
            raise ConfigError("--oracle=command:CMD needs a shell command after 'command:', "
                              "e.g. --oracle=\"command:$PWD/run_vasp.sh\"")
        if timeout is not None and not timeout > 0:
            raise ConfigError(f"--timeout must be a positive number of seconds, got {timeout!r}")
        self.command = command
        self.timeout = timeout
        self.efs_by = efs_by or "command"
        self.type_map = None
        self.start_dir = os.getcwd()

    def prepare(self, type_map):
        self.type_map = None if type_map is None else [str(s) for s in type_map]

    # ------------------------------------------------------------------ one configuration
    def label(self, cfg, index, workdir=None, lock_fd=None, fresh=True):
        if workdir is None:
            raise ConfigError("the command oracle needs a work directory")
        status_path = os.path.join(workdir, STATUS)
        if not fresh and os.path.exists(status_path) and self._same_input(workdir, cfg):
            status = self._read_status(status_path)
            log.info("configuration index %d: taking the result of a command that finished after "
                     "an earlier run stopped (%s)", index, workdir)
        else:
            self._clean(workdir)
            self._write_inputs(workdir, cfg)
            status = self._run(workdir, index, lock_fd)
        if status != 0:
            raise OracleFailure(f"command exited with status {status}{self._stderr_tail(workdir)}")
        return self._read_result(workdir, cfg)

    @staticmethod
    def _read_status(path):
        try:
            with open(path) as fh:
                return int(fh.read().strip())
        except (OSError, ValueError):
            return -1

    @staticmethod
    def _same_input(workdir, cfg):
        from .journal import _read_one, same_geometry

        try:
            return same_geometry(_read_one(os.path.join(workdir, INPUT_CFG)), cfg)
        except (OSError, FormatError, ValueError):
            return False

    @staticmethod
    def _clean(workdir):
        for name in ATTEMPT_FILES:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(workdir, name))

    def _write_inputs(self, workdir, cfg):
        from ..io.asefmt import write_extxyz
        from ..io.cfg import write_cfg
        from ..io.vasp import write_poscar

        bare = cfg.copy()
        bare.clear_efs()
        bare.site_energies = None
        bare.features.pop("EFS_by", None)
        # the POSCAR and extxyz first: input.cfg last marks the inputs complete
        write_poscar(os.path.join(workdir, INPUT_POSCAR), bare, type_map=self.type_map)
        if self.type_map is not None:
            write_extxyz(os.path.join(workdir, INPUT_EXTXYZ), [bare], self.type_map)
        write_cfg(os.path.join(workdir, INPUT_CFG), [bare], lossless=True)

    def _run(self, workdir, index, lock_fd):
        env = dict(os.environ)
        env["MLIP_PY_TYPE_MAP"] = ",".join(self.type_map) if self.type_map else ""
        env["MLIP_PY_CFG_INDEX"] = str(index)
        env["MLIP_PY_START_DIR"] = self.start_dir
        env["MLIP_PY_COMMAND"] = self.command
        with open(os.path.join(workdir, STDOUT), "wb") as out, \
                open(os.path.join(workdir, STDERR), "wb") as err:
            try:
                proc = subprocess.Popen(
                    ["/bin/sh", "-c", _WRAPPER], cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                    stdout=out, stderr=err, start_new_session=True,
                    pass_fds=() if lock_fd is None else (lock_fd,))
            except OSError as exc:
                raise OracleFailure(f"cannot start /bin/sh: {exc.strerror or exc}") from None
            try:
                status = proc.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                raise OracleFailure(f"command timed out after {self.timeout:g} s and was killed"
                                    f"{self._stderr_tail(workdir)}") from None
            except BaseException:  # Ctrl-C, SIGTERM: stop the command too, commit nothing
                _kill_group(proc)
                raise
        if status < 0:
            raise OracleFailure(f"command killed by signal {-status}{self._stderr_tail(workdir)}")
        return status

    @staticmethod
    def _stderr_tail(workdir):
        try:
            with open(os.path.join(workdir, STDERR), "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - 4096))
                lines = [s.strip() for s in fh.read().decode("utf-8", "replace").splitlines()]
        except OSError:
            return ""
        lines = [s for s in lines if s]
        if not lines:
            return ""
        tail = lines[-1] if len(lines[-1]) <= 300 else lines[-1][:297] + "..."
        return f"; stderr ends with: {tail}"

    # ------------------------------------------------------------------ results
    def _read_result(self, workdir, cfg):
        from .. import io as mio

        candidates = [
            (OUTPUT_CFG, lambda p: mio.iread_configurations(p, fmt="txt")),
            (OUTPUT_OUTCAR, lambda p: mio.iread_configurations(p, fmt="vasp-outcar")),
            (OUTPUT_EXTXYZ, self._iread_extxyz),
        ]
        for name, reader in candidates:
            path = os.path.join(workdir, name)
            if not os.path.exists(path):
                continue
            try:
                last = None
                for last in reader(path):
                    pass
            except (FormatError, ConfigError, ValueError, OSError) as err:
                raise OracleFailure(f"cannot read the result {name}: {err}") from None
            if last is None:
                raise OracleFailure(f"the result {name} holds no configuration")
            return self._merge(cfg, last, name)
        raise OracleFailure(f"the command exited with status 0 but wrote none of {OUTPUT_CFG}, "
                            f"{OUTPUT_OUTCAR}, {OUTPUT_EXTXYZ}")

    def _iread_extxyz(self, path):
        from ..io.asefmt import iter_ase

        if self.type_map is None:
            raise OracleFailure(f"reading {OUTPUT_EXTXYZ} needs the type map (--type-map)")
        return iter_ase(path, "extxyz", self.type_map)

    def _merge(self, cfg, res, name):
        """The input ``cfg`` labelled with the results of ``res`` (checked to match)."""
        n = len(cfg)
        if len(res) != n:
            raise OracleFailure(f"the result {name} has {len(res)} atoms, the input {n}")
        order = np.arange(n)
        res_types = res.types
        if name == OUTPUT_OUTCAR:
            order = np.argsort(cfg.types, kind="stable")  # POSCAR order
            present = np.unique(cfg.types)
            found = np.unique(res.types)
            if len(found) == len(present):  # species without atoms may be left out
                res_types = present[np.searchsorted(found, res.types)]
        if not np.array_equal(res_types, cfg.types[order]):
            raise OracleFailure(f"the atom types in {name} differ from the input's")
        dev, atom = _max_deviation(cfg.positions[order], res.positions, cfg.lattice)
        if dev > POSITION_TOLERANCE:
            raise OracleFailure(f"atom {int(order[atom])} in {name} is {dev:.3g} A away from its "
                                f"input position (a single point was expected, not a relaxation)")
        if res.energy is None or not np.isfinite(res.energy):
            raise OracleFailure(f"the result {name} has no energy")
        forces = None
        if res.forces is not None:
            if not np.all(np.isfinite(res.forces)):
                raise OracleFailure(f"the result {name} has non-finite forces")
            forces = np.empty((n, 3))
            forces[order] = res.forces
        site = None
        if res.site_energies is not None:
            site = np.empty(n)
            site[order] = res.site_energies
        efs_by = res.features.get("EFS_by") or self.efs_by
        return apply_labels(cfg, self.efs_by, res.energy, forces, res.plus_stress, site, efs_by)


def _max_deviation(a, b, lattice):
    """Largest distance between ``a[i]`` and ``b[i]`` modulo the periodic lattice vectors."""
    if len(a) == 0:
        return 0.0, 0
    d = b - a
    rows = lattice[np.any(lattice != 0.0, axis=1)]
    if len(rows):
        coef, *_ = np.linalg.lstsq(rows.T, d.T, rcond=None)
        d = d - (np.round(coef).T @ rows)
    norms = np.linalg.norm(d, axis=1)
    k = int(np.argmax(norms))
    return float(norms[k]), k


def _kill_group(proc):
    """SIGTERM the command's process group, SIGKILL what is left after KILL_GRACE s; reap."""
    import time

    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + KILL_GRACE
    while time.monotonic() < deadline:
        proc.poll()  # reap the wrapper, so that only live members keep the group
        try:
            os.killpg(proc.pid, 0)
        except (ProcessLookupError, PermissionError):
            break
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
