"""``mlp relax settings.ini --cfg-filename=in.cfg [options]``: relax configurations.

As MLIP-2 (mlip-cli.md ``relax``): the potential and the extrapolation control come
from the settings file (mlip.ini, :mod:`mlip_py.config.mlip_ini`), the driver settings
from the options.  Every configuration of ``--cfg-filename`` is relaxed (atoms and cell,
:mod:`mlip_py.simulate.relax`); relaxed ones are written to ``--save-relaxed`` with
their energy, forces and stress and the features ``from relaxation_OK``, ``min_dist``
(and ``MV_grade`` with selection), failed ones as read to ``--save-unrelaxed`` (with
``Feature from relaxation_<status>`` unless the breaking threshold stopped them).

With ``select TRUE`` in the settings (needs ``select:load-state``), every evaluated
geometry is graded; those above ``select:threshold`` are appended to
``select:save-selected`` with ``Feature MV_grade``, and a grade above
``select:threshold-break`` (when > 1) stops the relaxation of that configuration, which
then counts as failed.

Differences from MLIP-2, on purpose: output names are used as given (MLIP-2 always
appends ``_<rank>``, i.e. ``_0`` in serial; here the suffix is added only under MPI with
more than one process); stdout says the real number of configurations; unknown or
unusable settings are errors naming the line; the first geometry of a relaxation is
evaluated (and preselected) once, not twice; "starting relaxation cfg#N" is printed for
every configuration (MLIP-2 omits it when the first evaluation already breaks); a final
summary line is added.
"""
from __future__ import annotations

import contextlib
import os

import click

from ..errors import ConfigError
from ._common import echo, input_format_option, open_inputs
from ._common import opt_float, opt_int, opt_str
from .calc_grade import mpi_comm

USAGE = """Relaxes the configuration(s).

\b
Usage:
  mlp relax SETTINGS.ini --cfg-filename=IN.cfg [--save-relaxed=OUT.cfg]
            [--save-unrelaxed=FAILED.cfg] [--log=relax.log|stdout] [options]

Minimises the enthalpy E + pV of every configuration of IN.cfg over the atomic positions
and the cell (BFGS with a line search) with the potential named by mtp-filename in
SETTINGS.ini.  A configuration is relaxed when the largest force is below
--force-tolerance and the largest stress component (minus the pressure) below
--stress-tolerance; a tolerance <= 0 keeps the atoms (resp. the cell) fixed.

Relaxed configurations go to --save-relaxed with energy, forces, stress and the features
"from relaxation_OK" and "min_dist" (plus MV_grade with selection), atoms wrapped into
the cell.  Configurations that fail go to --save-unrelaxed as they were read: unchanged
when a grade exceeded select:threshold-break (as MLIP-2), otherwise with the feature
"from relaxation_MINDIST_ERROR" (atoms closer than --min-dist),
"from relaxation_NOT_CONVERGED" (iteration limit, failed line search) or
"from relaxation_ERROR" (non-finite values).

\b
SETTINGS.ini keys used (MLIP-2's mlip.ini):
  mtp-filename FILE            the potential (relative to the working directory)
  select TRUE|FALSE            extrapolation control
  select:load-state FILE       active set (.als, from mlp calc-grade / select-add)
  select:threshold G           save evaluated geometries with grade > G (default 1.001)
  select:threshold-break G     stop a relaxation when a grade exceeds G (if > 1)
  select:save-selected FILE    where those geometries are appended (MV_grade feature)
  select:weighting KIND        row weighting of the state (not stored in .als files)
  write-cfgs FILE / write-cfgs:skip N   append every (N+1)-th evaluated geometry

Output names are used as given (MLIP-2 writes OUT.cfg_0 in serial); under MPI with K > 1
processes every rank relaxes every K-th configuration and writes OUT.cfg_<rank>
(also for --log, --save-unrelaxed, select:save-selected and write-cfgs).
"""

#: settings whose value is accepted but has no effect in mlp relax
_IGNORED = ("log", "select:log", "fit:log", "select:threshold-init", "select:threshold-swap",
            "select:efs-ignored", "select:site-en-weight", "select:energy-weight",
            "select:force-weight", "select:stress-weight")


def _check_settings(ini):
    """Refuse the settings mlp relax cannot honour (errors name the line)."""
    from ..config.mlip_ini import ini_error

    if not ini.mtp_filename:
        raise ini_error(ini, "mtp-filename", "mtp-filename is required (the potential to relax "
                                             "with)")
    if not ini.calculate_efs:
        raise ini_error(ini, "calculate-efs", "mlp relax needs calculate-efs TRUE")
    if ini.fit:
        raise ini_error(ini, "fit", "fit TRUE (learning on the fly) is not supported by "
                                    "mlp relax; train with mlp train")
    if ini.abinitio not in ("null", "void"):
        raise ini_error(ini, "abinitio", f"abinitio {ini.abinitio} is not supported by "
                                         "mlp relax (only null/void)")
    if ini.check_errors:
        raise ini_error(ini, "check-errors", "check-errors needs an ab initio model, which "
                                             "mlp relax does not run")
    if ini.extra:
        key = next(iter(ini.extra))
        raise ini_error(ini, key, f"{key}: ab initio settings are not used by mlp relax")
    if ini.select:
        if not ini.select_load_state:
            raise ini_error(ini, "select", "select TRUE needs select:load-state (an .als file "
                                           "from mlp calc-grade or mlp select-add)")
        if ini.select_save_state:
            raise ini_error(ini, "select:save-state", "select:save-state is not supported: "
                                                      "mlp relax never updates the active set")
    if ini.write_cfgs_skip < 0:
        raise ini_error(ini, "write-cfgs:skip", f"write-cfgs:skip must be >= 0, got "
                                                f"{ini.write_cfgs_skip}")


class _Sink:
    """A text cfg output opened atomically for the whole run (or nothing)."""

    def __init__(self, stack, path):
        self.count = 0
        self.fh = None
        if path:
            from ..io._atomic import atomic_open

            self.fh = stack.enter_context(atomic_open(path, "wb"))

    def write(self, cfg):
        if self.fh is not None:
            from ..io.cfg import format_cfg_bytes

            self.fh.write(format_cfg_bytes(cfg))
            self.count += 1


def _log_writer(stack, name):
    """Line writer of the relaxation log: stdout, or a file committed at the end."""
    if name == "stdout":
        return click.echo
    from ..io._atomic import atomic_open

    fh = stack.enter_context(atomic_open(name, "w"))

    def write(line):
        fh.write(line + "\n")
    return write


def _every_nth(writer, every):
    """Callback adding every ``every``-th evaluated configuration to ``writer`` (write-cfgs)."""
    seen = [0]

    def add(cfg):
        if seen[0] % every == 0:
            writer.add(cfg.copy())
        seen[0] += 1
    return add


@click.command("relax", help=USAGE, no_args_is_help=True)
@click.argument("settings", type=click.Path(dir_okay=False))
@click.option("--cfg-filename", callback=opt_str(None), metavar="FILE",
              help="Configurations to relax (required).")
@click.option("--save-relaxed", callback=opt_str(""), metavar="FILE",
              help="Output of the relaxed configurations (name used as given; "
                   "MLIP-2 appends _0).")
@click.option("--save-unrelaxed", callback=opt_str(""), metavar="FILE",
              help="Output of the configurations that failed, unchanged.")
@click.option("--log", "log_name", callback=opt_str(""), metavar="FILE|stdout",
              help="Relaxation log, one line per iteration (MLIP-2's format).")
@click.option("--pressure", callback=opt_float(0.0), metavar="GPA",
              help="External pressure in GPa (default 0): minimises E + pV.")
@click.option("--iteration-limit", callback=opt_int(999999999, 0), metavar="N",
              help="Maximal number of BFGS iterations (default 999999999).")
@click.option("--min-dist", callback=opt_float(1.0), metavar="A",
              help="Fail when two atoms come closer than this (default 1.0 A).")
@click.option("--force-tolerance", callback=opt_float(1e-4), metavar="EV/A",
              help="Converged when every force is below this (default 1e-4 eV/A); <= 0 "
                   "keeps the atoms fixed.")
@click.option("--stress-tolerance", callback=opt_float(1e-3), metavar="GPA",
              help="Converged when every stress component minus the pressure is below this "
                   "(default 1e-3 GPa); <= 0 keeps the cell fixed.")
@click.option("--max-step", callback=opt_float(0.05), metavar="A",
              help="Maximal displacement of an atom per iteration (default 0.05 A).")
@click.option("--min-step", callback=opt_float(1e-8), metavar="A",
              help="Line searches give up below this step (default 1e-8 A).")
@click.option("--bfgs-wolfe-c1", callback=opt_float(None), metavar="C",
              help="Sufficient-decrease constant of the line search (default 0.1).")
@click.option("--bfgs-wolfe-c2", callback=opt_float(None), metavar="C",
              help="Curvature constant of the line search (default 0.5).")
@click.option("--bfgs-wolfe_c1", "wolfe_c1_alias", callback=opt_float(None), hidden=True)
@click.option("--bfgs-wolfe_c2", "wolfe_c2_alias", callback=opt_float(None), hidden=True)
@click.option("--threads", type=click.IntRange(min=0), default=None,
              help="OpenMP threads of the kernels (default: OMP_NUM_THREADS or all cores).")
@input_format_option
def command(settings, cfg_filename, save_relaxed, save_unrelaxed, log_name, pressure,
            iteration_limit, min_dist, force_tolerance, stress_tolerance, max_step, min_step,
            bfgs_wolfe_c1, bfgs_wolfe_c2, wolfe_c1_alias, wolfe_c2_alias, threads,
            input_format):
    from ..config.mlip_ini import ini_error, read_mlip_ini
    from ..potential.mtp import MTP
    from ..simulate.extrapolation import ExtrapolationControl, load_active_set
    from ..simulate.relax import Relaxer, RelaxOptions

    if not cfg_filename:
        raise click.UsageError("--cfg-filename=FILE is required (the configurations to relax)")
    if not os.path.exists(settings):
        raise FileNotFoundError(2, "No such file or directory", settings)
    ini = read_mlip_ini(settings)
    _check_settings(ini)
    c1 = bfgs_wolfe_c1 if bfgs_wolfe_c1 is not None else (wolfe_c1_alias or 0.1)
    c2 = bfgs_wolfe_c2 if bfgs_wolfe_c2 is not None else (wolfe_c2_alias or 0.5)
    opts = RelaxOptions(pressure=pressure, iteration_limit=iteration_limit, min_dist=min_dist,
                        force_tolerance=force_tolerance, stress_tolerance=stress_tolerance,
                        max_step=max_step, min_step=min_step, wolfe_c1=c1, wolfe_c2=c2)
    for p in (ini.mtp_filename, ini.select_load_state if ini.select else None, cfg_filename):
        if p and not os.path.exists(p):
            raise FileNotFoundError(2, "No such file or directory", p)

    comm = mpi_comm()
    rank, size = (0, 1) if comm is None else (comm.Get_rank(), comm.Get_size())

    def out_name(name):
        return f"{name}_{rank}" if name and size > 1 and name != "stdout" else name

    mtp = MTP(ini.mtp_filename, num_threads=threads)
    control = None
    if ini.select:
        try:
            aset = load_active_set(ini.select_load_state, mtp, ini.select_weighting)
        except ConfigError as err:
            raise ini_error(ini, "select:load-state", f"{ini.select_load_state}: {err}") from None
        control = ExtrapolationControl(aset, ini.select_threshold, ini.select_threshold_break,
                                       save_selected=out_name(ini.select_save_selected) or None)

    say = echo if rank == 0 else (lambda text: None)
    say("MLIP: Driver: internal relaxation")
    say("MLIP: Using internal relaxation driver")
    say(f"MLIP: \titeration-limit = {opts.iteration_limit}")
    say(f"MLIP: \tbfgs-wolfe-c1 = {opts.wolfe_c1:f}")
    say(f"MLIP: \tbfgs-wolfe-c2 = {opts.wolfe_c2:f}")
    say(f"MLIP: \tforce-tolerance = {opts.force_tolerance:f}")
    say(f"MLIP: \tmax-step = {opts.max_step:f}")
    say(f"MLIP: \tmin-dist = {opts.min_dist:f}")
    say(f"MLIP: \tmin-step = {opts.min_step:f}")
    say(f"MLIP: \tpressure = {opts.pressure:f}")
    say(f"MLIP: \tstress-tolerance = {opts.stress_tolerance:f}")
    if log_name:
        say(f"MLIP: \tlog = {log_name}")
    for key in _IGNORED:
        if key in ini.lines:
            click.echo(f"mlp relax: {ini.path}:{ini.lines[key]}: setting '{key}' has no effect "
                       "in mlp relax (ignored)", err=True)
    say("MLIP: Relaxation initialization complete")
    total = sum(1 for _ in open_inputs(cfg_filename, input_format))
    say(f"Total {total} configurations are to be relaxed")
    say("")

    n_ok = n_failed = 0
    interrupted = False
    with contextlib.ExitStack() as stack:
        relaxed = _Sink(stack, out_name(save_relaxed))
        unrelaxed = _Sink(stack, out_name(save_unrelaxed))
        log = _log_writer(stack, out_name(log_name)) if log_name else None
        on_eval = None
        if ini.write_cfgs:
            from ..simulate.extrapolation import PreselectedWriter

            writer = PreselectedWriter(out_name(ini.write_cfgs))
            stack.callback(writer.flush)
            on_eval = _every_nth(writer, ini.write_cfgs_skip + 1)

        relaxer = Relaxer(mtp, opts, control, log,
                          warn=lambda msg: echo(f"MLIP WARNING: {msg}"), on_evaluate=on_eval)
        try:
            for i, cfg in enumerate(open_inputs(cfg_filename, input_format)):
                if i % size != rank:
                    continue
                echo(f"MLIP: Relaxation: starting relaxation cfg#{i + 1}")
                res = relaxer.relax(cfg, i + 1)
                if res.ok:
                    relaxed.write(res.cfg)
                    n_ok += 1
                    echo(f"MLIP: Relaxation of cfg#{i + 1} complete")
                else:
                    failed = cfg
                    if res.status != "BREAK":
                        failed = cfg.copy()
                        failed.features["from"] = f"relaxation_{res.status}"
                    unrelaxed.write(failed)
                    n_failed += 1
                    echo(f"MLIP WARNING: Relaxation failed: {res.message}")
                if control is not None:
                    control.flush()
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if control is not None:
                control.flush()
    if comm is not None:
        n_ok = comm.allreduce(n_ok)
        n_failed = comm.allreduce(n_failed)
    summary = f"Relaxed {n_ok} of {total} configurations, {n_failed} failed"
    if control is not None:
        sel = control.n_selected if comm is None else comm.allreduce(control.n_selected)
        where = ini.select_save_selected
        if where and size > 1:
            where += "_<rank>"
        summary += (f"; {sel} evaluated configurations with grade > {control.threshold:g} "
                    f"appended to {where or '(nowhere: no select:save-selected)'}")
    if interrupted:
        click.echo(f"mlp relax: interrupted; outputs keep the {n_ok + n_failed} configurations "
                   "finished so far", err=True)
        raise KeyboardInterrupt
    say(summary)
