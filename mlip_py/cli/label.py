"""``mlp label in.cfg out.cfg --oracle=emt``: reference energies, forces and stresses.

See :mod:`mlip_py.oracles` (oracles and conventions), :mod:`mlip_py.oracles.command` (the
contract of ``--oracle=command:...``) and :mod:`mlip_py.oracles.journal` (work directory,
resuming, chunks).
"""
from __future__ import annotations

import contextlib
import json
import os
import signal

import click

from .._log import get_logger
from ._common import Progress, input_format_option, open_inputs, output_format_for, \
    output_format_option, type_map_option, write_outputs

log = get_logger("mlip_py")


def _check_oracle(ctx, param, value):
    from ..oracles import COMMAND_PREFIX, ORACLES, oracle_names

    value = (value or "").strip()
    if value.lower() in ORACLES or value.startswith(COMMAND_PREFIX):
        return value
    hint = " (the shell command follows the prefix: command:CMD)" \
        if value.lower() in ("command", "cmd") else ""
    raise click.BadParameter(f"unknown oracle {value!r}{hint}; valid oracles: "
                             f"{', '.join(oracle_names())}", ctx, param)


def _check_chunk(ctx, param, value):
    from ..errors import ConfigError
    from ..oracles.journal import parse_chunk

    if value is None:
        return (1, 1)
    try:
        return parse_chunk(value)
    except ConfigError as err:
        raise click.BadParameter(str(err).removeprefix("--chunk: "), ctx, param) from None


def _parse_params(ctx, param, values):
    out = {}
    for item in values or ():
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", ctx, param)
        try:
            out[key.strip()] = json.loads(text)
        except ValueError:
            out[key.strip()] = text
    return out


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (e.g. a batch system cancelling the job) stops like Ctrl-C: children killed,
    nothing partial written."""
    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _type_map_from_file(path, fmt):
    """Sorted elements of an element-carrying input (extxyz, ase:<fmt>), with a notice."""
    import ase.io

    from ..io.asefmt import default_type_map

    ase_fmt = fmt[4:] if fmt.startswith("ase:") else fmt
    try:
        type_map = default_type_map(ase.io.iread(path, index=":", format=ase_fmt))
    except Exception as err:  # noqa: BLE001 - ASE raises many types
        from ..errors import FormatError

        raise FormatError(f"ASE cannot read the file as {ase_fmt}: {type(err).__name__}: {err}",
                          path) from None
    if type_map:
        log.warning("no type map given: using --type-map=%s (sorted elements of %s)",
                    ",".join(type_map), path)
    return type_map or None


@click.command("label")
@click.argument("input", type=click.Path(dir_okay=False))
@click.argument("output", type=click.Path(dir_okay=False))
@click.option("--oracle", default="emt", show_default=True, callback=_check_oracle,
              metavar="NAME", help="emt, lj, gpaw or command:CMD (see above).")
@type_map_option
@input_format_option
@output_format_option
@click.option("--lossless", is_flag=True,
              help="Write 17 significant digits (round-trips doubles exactly).")
@click.option("--workdir", type=click.Path(file_okay=False), default=None,
              help="Work directory with one sub-directory per configuration and the journal "
                   "of finished ones (default for command: OUTPUT.work; built-in oracles keep "
                   "a journal only when it is given).")
@click.option("--retry-failed", is_flag=True,
              help="Run the oracle again on configurations whose failure the work directory "
                   "recorded (default: report them again without running).")
@click.option("--chunk", default=None, callback=_check_chunk, metavar="I/N",
              help="Label only the configurations with 0-based index k where k % N == I-1 "
                   "(I from 1 to N, e.g. --chunk=$SLURM_ARRAY_TASK_ID/10).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="SECONDS", help="command: kill the command after this time and record a "
                                      "failure.")
@click.option("--efs-by", default=None, metavar="NAME",
              help="command: EFS_by value of results that do not carry one (default: command; "
                   "OUTCAR results say VASP or VASP_not_converged).")
@click.option("--lj-epsilon", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="EV", help="lj: epsilon of every pair (eV).")
@click.option("--lj-sigma", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="A", help="lj: sigma of every pair (A).")
@click.option("--lj-cutoff", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="A", help="lj: cutoff radius of every pair (A; default 3 sigma).")
@click.option("--oracle-param", "oracle_params", multiple=True, callback=_parse_params,
              metavar="KEY=VALUE", help="emt, gpaw: keyword argument of the ASE calculator "
                                        "(VALUE as JSON, else a string); repeatable.")
def command(input, output, oracle, type_map, input_format, output_format, lossless, workdir,
            retry_failed, chunk, timeout, efs_by, lj_epsilon, lj_sigma, lj_cutoff, oracle_params):
    """Computes reference energies, forces and stresses with an ORACLE.

    Reads INPUT (any readable format), labels every configuration (energy, forces, the
    PlusStress virial for periodic ones, feature EFS_by=<oracle>) and writes OUTPUT
    (atomically, in input order); configurations that fail go to OUTPUT.failed.cfg with a
    feature label_error, and the others are still written.  The exit status is 1 only when
    every configuration failed.  Element-based oracles need --type-map (types 0, 1, ...),
    unless the input stores elements (extxyz).

    \b
    Oracles:
      emt          ASE's EMT (Al Cu Ag Au Ni Pd Pt H C N O); the default
      lj           Lennard-Jones; per-element parameters from ASE's reference
                   crystals (minimum at the nearest-neighbour distance, epsilon
                   0.1 eV, cutoff 3 sigma) or --lj-epsilon/--lj-sigma/--lj-cutoff
      gpaw         GPAW DFT through ASE, if installed (--oracle-param KEY=VALUE)
      command:CMD  an external program per configuration (VASP, QE, ...)

    \b
    The command contract: for configuration k (0-based index in INPUT) mlp writes
    WORKDIR/<k:06d>/ with
      input.cfg      the configuration, lossless cfg (types 0-based)
      POSCAR         VASP POSCAR, atoms sorted by type (species line with --type-map)
      input.extxyz   extended XYZ in input order (only with a type map)
    and runs CMD there with /bin/sh, stdin /dev/null, output in mlp_command.out/.err,
    environment MLIP_PY_TYPE_MAP=Cu,Ni, MLIP_PY_CFG_INDEX=k and MLIP_PY_START_DIR
    (where mlp label started: relative paths in CMD are relative to the
    configuration's directory).  Exit status 0 and a result file label it; the
    first that exists is read (its last configuration):
      output.cfg     MLIP cfg, atoms in input.cfg order
      OUTCAR         VASP OUTCAR, atoms in POSCAR order (last ionic step)
      output.extxyz  extended XYZ, atoms in input.extxyz order
    The result must be a single point of the same atoms at the same positions.
    A non-zero status, a timeout or an unusable result is recorded as a failure.

    \b
    Resuming: each finished configuration is committed in WORKDIR/<k:06d>/
    (result.cfg or failed.cfg, written by rename).  Rerunning the same command
    after a crash or kill skips finished configurations (failed ones too, unless
    --retry-failed), waits for commands still running from the killed run and
    uses their results, so every configuration is labelled exactly once.  The
    work directory is kept; remove it when OUTPUT is safe.

    \b
    Cluster arrays: --chunk=I/N takes every N-th configuration, starting at index
    I-1; give each task its own OUTPUT and merge them, e.g.
      mlp label in.cfg out.cfg.$SLURM_ARRAY_TASK_ID --type-map=Cu \\
          --chunk=$SLURM_ARRAY_TASK_ID/10 --oracle="command:$PWD/run_vasp.sh"
      cat out.cfg.* > labelled.cfg     (text cfg; the order is by chunk)

    \b
    Examples:
      mlp label selected.cfg labelled.cfg --type-map=Cu,Ni
      mlp label selected.cfg labelled.cfg --type-map=Cu,Ni --timeout=7200 \\
          --oracle="command:python $PWD/examples/oracles/emt_command.py"
    """
    from .. import io as mio
    from ..errors import ConfigError, MlipError
    from ..oracles import get_oracle
    from ..oracles.journal import Journal, run_batch

    name = oracle.lower() if not oracle.startswith("command:") else "command"
    given = {"--timeout": timeout, "--efs-by": efs_by, "--lj-epsilon": lj_epsilon,
             "--lj-sigma": lj_sigma, "--lj-cutoff": lj_cutoff,
             "--oracle-param": oracle_params or None}
    allowed = {"command": ("--timeout", "--efs-by"), "lj": ("--lj-epsilon", "--lj-sigma", "--lj-cutoff"),
               "emt": ("--oracle-param",), "gpaw": ("--oracle-param",)}[name]
    stray = [k for k, v in given.items() if v is not None and k not in allowed]
    if stray:
        raise click.UsageError(f"{', '.join(stray)} do(es) not apply to --oracle={name}")
    if name == "command":
        the_oracle = get_oracle(oracle, timeout=timeout, efs_by=efs_by)
    elif name == "lj":
        the_oracle = get_oracle(oracle, epsilon=lj_epsilon, sigma=lj_sigma, cutoff=lj_cutoff)
    else:
        the_oracle = get_oracle(oracle, params=oracle_params)

    if not os.path.exists(input):
        raise FileNotFoundError(2, "No such file or directory", input)
    out_dir = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(out_dir):  # found now, not after hours of labelling
        raise FileNotFoundError(2, "No such directory", out_dir)
    in_fmt = mio.detect_format(input, input_format)
    if type_map is None and (in_fmt == "extxyz" or in_fmt.startswith("ase:")):
        type_map = _type_map_from_file(input, in_fmt)
    the_oracle.prepare(type_map)
    out_fmt = output_format_for(output, output_format)
    if type_map is None and (out_fmt == "extxyz" or out_fmt.startswith("ase:")):
        raise ConfigError(f"writing {out_fmt} needs a type map: give --type-map")

    if workdir is None and the_oracle.needs_workdir:
        workdir = os.fspath(output) + ".work"
    journal = Journal(workdir) if workdir is not None else None
    failed_path = os.fspath(output) + ".failed.cfg"
    source = open_inputs(input, input_format, type_map)
    progress = Progress("label")
    failed, done = [], []
    reused = 0

    with _sigterm_as_interrupt():
        outcomes = progress(run_batch(source, the_oracle, journal=journal, chunk=chunk,
                                      retry_failed=retry_failed))
        if journal is not None:
            for o in outcomes:
                if o.ok:
                    done.append(o.index)
                    reused += o.reused
                else:
                    failed.append(o.cfg)
            labelled = (journal.load(k) for k in done)
        else:
            def labelled_stream():
                for o in outcomes:
                    if o.ok:
                        done.append(o.index)
                        yield o.cfg
                    else:
                        failed.append(o.cfg)

            labelled = labelled_stream()
        write_outputs(output, labelled, out_fmt, lossless=lossless, type_map=type_map)
    progress.done()

    if failed:
        write_outputs(failed_path, failed, "txt", lossless=lossless)
    elif os.path.exists(failed_path):
        os.unlink(failed_path)
        log.info("label: removed %s from an earlier run (no failures now)", failed_path)
    summary = f"label: {len(done)} configurations labelled"
    if reused:
        summary += f" ({reused} of them taken from {journal.workdir})"
    if failed:
        summary += f", {len(failed)} failed (see {failed_path})"
    log.info("%s", summary)
    if failed and not done:
        first = failed[0].features.get("label_error", "")
        raise MlipError(f"every configuration failed ({len(failed)}); the first: {first}; "
                        f"see {failed_path}, fix the cause and rerun with --retry-failed")
