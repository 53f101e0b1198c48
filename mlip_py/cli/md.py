"""``mlp md POT.mtp START.cfg [options]``: molecular dynamics with extrapolation control (new).

Runs ASE molecular dynamics (:mod:`mlip_py.simulate.md`) with an MTP from the first (or
``--index``-th) configuration of START.  With ``--als`` every force evaluation is graded
against the active set: structures with grade > ``--threshold`` are appended to
``--save-selected`` (``Feature MV_grade``, no EFS), and a grade above
``--threshold-break`` stops the run (MLIP-2's LAMMPS behaviour).

Stdout: a header, one progress line every ``--print-every`` steps
(``step  time_ps  T_K  Epot_eV  Etot_eV  max_grade``, the grade column being the largest
grade since the previous line) and a final line, either
``MD completed: ...`` or ``MD stopped at step K: Breaking threshold exceeded (MV-grade:
G)``.  Exit status 0 in both cases, or 3 for a break with ``--fail-on-break``; Ctrl-C
stops the run, keeps the trajectory and preselected configurations written so far and
exits with 130.
"""
from __future__ import annotations

import contextlib
import os
import sys

import click

from ..errors import ConfigError
from ._common import echo, input_format_option, open_inputs, output_format_for, \
    output_format_option, type_map_option
from ._common import opt_float, opt_int, opt_str

#: exit status of a run stopped by the breaking threshold with --fail-on-break
EXIT_BREAK = 3

USAGE = """Molecular dynamics with extrapolation control (new).

\b
Usage:
  mlp md POT.mtp START.cfg --type-map=EL[,EL...] [options]
  mlp md POT.mtp START.cfg --type-map=Mo --als=state.als --threshold=2
         --threshold-break=10 --save-selected=preselected.cfg [options]

Integrates the equations of motion (ASE integrators) from the first configuration of
START (or the --index-th; any readable format) with the potential POT.mtp.
--type-map names the element of each potential type (needed for the masses).

\b
Ensembles (--ensemble):
  nve       velocity Verlet
  langevin  Langevin thermostat at --temperature, --friction in 1/fs
  npt       Nose-Hoover chain + isotropic MTK barostat (ASE's IsotropicMTKNPT) at
            --temperature and --pressure (GPa), --tdamp/--pdamp in fs

Initial velocities: Maxwell-Boltzmann at --init-temperature (default --temperature),
seeded by --seed (printed when drawn at random).

Extrapolation control (--als=STATE.als, from mlp calc-grade / select-add, same
potential): structures graded above --threshold (default 2) are appended to
--save-selected (default preselected.cfg; the file is appended to, as in MLIP-2);
a grade above --threshold-break (default 10; <= 1 disables) stops the run:
"MD stopped at step K: Breaking threshold exceeded (MV-grade: G)", exit status 0
(3 with --fail-on-break).

The trajectory (--trajectory, format from the extension or --output-format) gets a
frame every --every steps with energy, forces, stress and the features step, time_fs,
temperature_K (and MV_grade), plus the structure that exceeded the breaking threshold.
Text cfg trajectories are streamed; other formats are written at the end.  Ctrl-C
stops cleanly and keeps what was computed (exit status 130).
"""


def _cfg_stream(stack, path):
    """Writer of a text cfg file opened atomically for the whole run."""
    from ..io._atomic import atomic_open
    from ..io.cfg import format_cfg_bytes

    fh = stack.enter_context(atomic_open(path, "wb"))

    def write(cfg):
        fh.write(format_cfg_bytes(cfg))
    return write


@click.command("md", help=USAGE, no_args_is_help=True)
@click.argument("potential", type=click.Path(dir_okay=False))
@click.argument("start", type=click.Path(dir_okay=False))
@click.option("--steps", callback=opt_int(1000, 0), metavar="N", help="Time steps (default 1000).")
@click.option("--timestep", callback=opt_float(1.0), metavar="FS", help="Time step in fs (default 1).")
@click.option("--temperature", callback=opt_float(300.0), metavar="K",
              help="Thermostat temperature (default 300 K).")
@click.option("--init-temperature", callback=opt_float(None), metavar="K",
              help="Temperature of the initial velocities (default --temperature; 0: at rest).")
@click.option("--ensemble", type=click.Choice(["nve", "langevin", "npt"]), default="nve",
              show_default=True, help="Integrator (see above).")
@click.option("--friction", callback=opt_float(0.01), metavar="1/FS",
              help="Langevin friction (default 0.01 /fs).")
@click.option("--pressure", callback=opt_float(0.0), metavar="GPA", help="NPT pressure (default 0 GPa).")
@click.option("--tdamp", callback=opt_float(None), metavar="FS",
              help="NPT thermostat damping time (default 100 time steps).")
@click.option("--pdamp", callback=opt_float(None), metavar="FS",
              help="NPT barostat damping time (default 1000 time steps).")
@click.option("--seed", callback=opt_int(None, 0), metavar="N", help="Random seed.")
@click.option("--index", callback=opt_int(1, 1), metavar="N",
              help="Use the N-th configuration of START (default 1).")
@click.option("--trajectory", callback=opt_str(None), metavar="FILE",
              help="Write frames to FILE (.cfg text cfg, .extxyz, ...).")
@click.option("--every", callback=opt_int(10, 1), metavar="N",
              help="Trajectory frame every N steps (default 10).")
@click.option("--print-every", callback=opt_int(None, 1), metavar="N",
              help="Progress line every N steps (default: --every).")
@click.option("--als", callback=opt_str(None), metavar="STATE.als",
              help="Active-learning state: switches on extrapolation control.")
@click.option("--threshold", callback=opt_float(2.0), metavar="G",
              help="Save structures graded above G (default 2).")
@click.option("--threshold-break", callback=opt_float(10.0), metavar="G",
              help="Stop when a grade exceeds G (default 10; <= 1 never).")
@click.option("--save-selected", callback=opt_str("preselected.cfg"), metavar="FILE",
              help="Where the structures above --threshold are appended (default "
                   "preselected.cfg; only with --als).")
@click.option("--weighting", callback=opt_str("vibrations"), metavar="KIND",
              help="Row weighting of the state (not stored in .als files; default vibrations).")
@click.option("--fail-on-break", is_flag=True,
              help=f"Exit with status {EXIT_BREAK} when the breaking threshold stops the run.")
@click.option("--threads", type=click.IntRange(min=0), default=None,
              help="OpenMP threads of the kernels (default: OMP_NUM_THREADS or all cores).")
@input_format_option
@output_format_option
@type_map_option
def command(potential, start, steps, timestep, temperature, init_temperature, ensemble,
            friction, pressure, tdamp, pdamp, seed, index, trajectory, every, print_every,
            als, threshold, threshold_break, save_selected, weighting, fail_on_break, threads,
            input_format, output_format, type_map):
    from ..potential.calculator import MTPCalculator
    from ..potential.mtp import MTP
    from ..simulate.md import MDRunner, frame_configuration

    for p in (potential, start, als):
        if p is not None and not os.path.exists(p):
            raise FileNotFoundError(2, "No such file or directory", p)
    if type_map is None:
        raise click.UsageError("--type-map=EL[,EL...] is required: the element of each "
                               "potential type (for the masses), e.g. --type-map=Mo")
    mtp = MTP(potential, num_threads=threads)
    if len(type_map) > mtp.params.species_count:
        raise ConfigError(f"--type-map names {len(type_map)} elements but {potential} has "
                          f"{mtp.params.species_count} species")
    cfg = None
    for i, c in enumerate(open_inputs(start, input_format, type_map), 1):
        if i == index:
            cfg = c
            break
    if cfg is None:
        raise ConfigError(f"{start}: has no configuration number {index}")
    if len(cfg) == 0:
        raise ConfigError(f"{start}: configuration {index} has no atoms")
    atoms = cfg.to_atoms(type_map)
    atoms.calc = None
    calc = MTPCalculator(mtp, type_map=type_map, active_set=als, threshold=threshold,
                         threshold_break=threshold_break, weighting=weighting,
                         selected=None) if als else MTPCalculator(mtp, type_map=type_map)
    control = calc.control
    if control is not None and save_selected:
        from ..simulate.extrapolation import PreselectedWriter

        control.writer = PreselectedWriter(save_selected)
    runner = MDRunner(atoms, calc, ensemble, timestep, temperature, init_temperature, friction,
                      pressure, tdamp, pdamp, seed)

    echo(f"MD: {potential}, start: {start} (configuration {index}, {len(atoms)} atoms), "
         f"ensemble {ensemble}, timestep {timestep:g} fs, {steps} steps, seed {runner.seed}")
    if control is not None:
        brk = control.threshold_break
        echo(f"MD: extrapolation control: state {als}, threshold {control.threshold:g}, "
             f"threshold-break {'off' if brk is None else f'{brk:g}'}, "
             f"selected -> {save_selected or '(not saved)'}")
    echo("%8s %10s %10s %16s %16s %10s" % ("step", "time_ps", "T_K", "Epot_eV", "Etot_eV",
                                          "max_grade"))

    def progress(k, at, g):
        echo("%8d %10.4f %10.2f %16.6f %16.6f %10s"
             % (k, k * timestep / 1000.0, at.get_temperature(), at.get_potential_energy(),
                at.get_total_energy(), "-" if g is None else "%.4f" % g))

    fmt = output_format_for(trajectory, output_format) if trajectory else None
    frames = []
    interrupted = False
    with contextlib.ExitStack() as stack:
        write = None
        if trajectory and fmt == "txt":
            write = _cfg_stream(stack, trajectory)
        elif trajectory:
            write = frames.append

        def on_frame(k, at):
            if write is not None:
                write(frame_configuration(at, calc, step=k, time_fs=k * timestep))

        try:
            runner.run(steps, every=every, on_frame=on_frame, on_progress=progress,
                       progress_every=print_every)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if control is not None:
                control.flush()
    if trajectory and fmt != "txt" and frames:
        from ._common import write_outputs

        write_outputs(trajectory, frames, fmt, type_map=type_map)
    res = runner.result
    sel = ""
    if control is not None:
        sel = (f"; max grade {res.max_grade:.6g}; {control.n_selected} structures with grade > "
               f"{control.threshold:g}" + (f" appended to {save_selected}" if save_selected else ""))
    if interrupted:
        click.echo(f"mlp md: interrupted after {res.steps} steps; trajectory and selected "
                   "structures so far are kept", err=True)
        raise KeyboardInterrupt
    if res.status == "break":
        echo(f"MD stopped at step {res.break_step}: {res.message}{sel}")
        if fail_on_break:
            sys.exit(EXIT_BREAK)
        return
    echo(f"MD completed: {res.steps} steps, {res.time_fs / 1000.0:g} ps{sel}")
