"""``mlp train potential.mtp train_set.cfg [options]``: fit an MTP (MLIP-2 compatible).

Stdout is the original's (mlip-cli.md ``train``): ``MTPR from ...``, the Rescaling
blocks, ``BFGS iter k: f=...`` lines, the TRAIN (and VALIDATION) error reports.  Progress
lines go to stderr (silent with ``-q``).  Under an MPI launcher the configurations are
distributed over the ranks in blocks of 16 consecutive configurations (the sums are formed in file order, so any number of ranks gives the serial result) and rank 0 prints and writes.

Ctrl-C writes the potential of the last accepted BFGS point to the output name
(atomically) and exits with status 130.
"""
import json
import os
import sys
import warnings

import click

from ..errors import ConfigError
from ._common import input_format_option, open_inputs, opt_float, opt_int, opt_str, quiet

TRAIN_WEIGHTINGS = ("vibrations", "molecules", "structures")


def train_options(f):
    """The options shared by ``train`` and ``calc-errors``."""
    opts = [
        click.option("--energy-weight", callback=opt_float(1.0), metavar="W",
                     help="Weight of the energy term (default 1)."),
        click.option("--force-weight", callback=opt_float(0.01), metavar="W",
                     help="Weight of the force term (default 0.01)."),
        click.option("--stress-weight", callback=opt_float(0.001), metavar="W",
                     help="Weight of the stress (virial) term (default 0.001)."),
        click.option("--scale-by-force", callback=opt_float(0.0), metavar="S",
                     help="If > 0, the weight of atom i's force is w_f*S/(|F_ref,i|^2+S) "
                          "(nonlinear loss only; default 0)."),
        click.option("--valid-cfgs", callback=opt_str(None), metavar="FILE",
                     help="Validation set: a VALIDATION ERRORS report is printed at the end."),
        click.option("--max-iter", callback=opt_int(1000), metavar="N",
                     help="Maximal number of BFGS iterations (default 1000; 0 = no training, "
                          "only the error report)."),
        click.option("--curr-pot-name", callback=opt_str(None), metavar="FILE",
                     help="Save the current potential there at every BFGS step."),
        click.option("--trained-pot-name", callback=opt_str("Trained.mtp_"), metavar="FILE",
                     help="Output potential (default Trained.mtp_; written if max-iter > 0)."),
        click.option("--bfgs-conv-tol", callback=opt_float(1e-3), metavar="TOL",
                     help="Stop when the relative loss decrease over 50 iterations is below "
                          "TOL and below that of the previous 50 (default 1e-3)."),
        click.option("--weighting", callback=opt_str("vibrations"), metavar="KIND",
                     help="vibrations (default), molecules or structures: how energy, force "
                          "and stress terms are weighted with the number of atoms N."),
        click.option("--init-params", callback=opt_str("random"), metavar="random|same",
                     help="Initialisation of an untrained potential: random (default) or same "
                          "(MLIP-2's deterministic loader defaults)."),
        click.option("--skip-preinit", is_flag=True,
                     help="Skip the 75-iteration pre-training of an untrained potential."),
        click.option("--update-mindist", is_flag=True,
                     help="Set min_dist to 0.99 x the smallest interatomic distance of the "
                          "training set before training."),
        click.option("--seed", callback=opt_int(None), metavar="N",
                     help="Seed of the random initialisation (new; default: from the OS)."),
        click.option("--linear", is_flag=True,
                     help="Linear MTP (new): keep the radial functions fixed and fit only "
                          "species and moment coefficients by weighted least squares."),
        click.option("--report-json", callback=opt_str(None), metavar="FILE",
                     help="Write the error figures (and the loss history) as JSON (new)."),
        click.option("--parity-plot", callback=opt_str(None), metavar="FILE.png",
                     help="Write predicted-vs-reference plots (needs matplotlib) (new)."),
        click.option("--threads", type=click.IntRange(min=0), default=None,
                     help="Threads of the kernels (default: OMP_NUM_THREADS or all cores)."),
        input_format_option,
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _read_share(path, fmt, comm):
    """This rank's configurations of ``path`` (round-robin) and the total count."""
    cfgs, total = [], 0
    for k, cfg in enumerate(open_inputs(path, fmt)):
        total += 1
        if comm.owns(k):
            cfgs.append(cfg)
    return cfgs, total


def run_train(potential, train_set, kw, calc_errors=False):
    """Shared body of ``train`` and ``calc-errors``."""
    from ..io.mtp import read_mtp, write_mtp
    from ..potential.mtp import _mtp
    from ..training.fit import Interrupted, Trainer, TrainOptions, error_monitor
    from ..training.linear import ConvergenceWarning
    from ..training.loss import LossWeights, TrainingData
    from ..training.parallel import get_comm

    comm = get_comm()
    rank0 = comm.rank == 0

    def log(line):
        if rank0:
            click.echo(line)

    show_progress = rank0 and not quiet()

    def progress(msg):
        if show_progress:
            click.echo(msg, err=True)

    if kw["weighting"] not in TRAIN_WEIGHTINGS:
        raise ConfigError(f"--weighting should be one of {', '.join(TRAIN_WEIGHTINGS)}, "
                          f"not {kw['weighting']!r}")
    if kw["threads"]:
        threads = kw["threads"]
    else:   # one thread per MPI process unless asked otherwise
        threads = 1 if comm.is_mpi else _mtp.max_threads()
    if calc_errors:
        kw["max_iter"] = 0
    options = TrainOptions(
        weights=LossWeights(kw["energy_weight"], kw["force_weight"], kw["stress_weight"],
                            kw["weighting"], kw["scale_by_force"]),
        max_iter=kw["max_iter"], bfgs_conv_tol=kw["bfgs_conv_tol"],
        curr_pot_name=kw["curr_pot_name"], init_params=kw["init_params"],
        skip_preinit=kw["skip_preinit"], update_mindist=kw["update_mindist"], seed=kw["seed"],
        linear=kw["linear"] and not calc_errors, num_threads=threads)
    params = read_mtp(potential)
    log(f"MTPR from {potential}, Database: {train_set}")
    valid = None
    if kw["valid_cfgs"]:
        valid, _ = _read_share(kw["valid_cfgs"], kw["input_format"], comm)
        log(f"validation set: {kw['valid_cfgs']}")
    cfgs, _ = _read_share(train_set, kw["input_format"], comm)
    out_name = None if calc_errors else kw["trained_pot_name"]

    def save(path, p):
        write_mtp(path, p)

    trainer = Trainer(params, cfgs, options, comm, log, save=save, progress=progress)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            trainer.run()
        for w in caught:
            if rank0:
                click.echo(f"mlp: warning: {w.message}", err=True)
    except Interrupted:
        if rank0 and out_name:
            write_mtp(out_name, params)
            click.echo(f"mlp: interrupted; the potential of the last accepted BFGS step was "
                       f"written to {out_name}", err=True)
        elif rank0:
            click.echo("mlp: interrupted", err=True)
        sys.stdout.flush()
        sys.exit(130)
    finally:
        trainer.close()
    if rank0 and out_name and (options.max_iter > 0 or options.linear):
        write_mtp(out_name, params)

    mtp = trainer.model.mtp
    reports = {}

    def report(name, data):
        mon = error_monitor(mtp, data, comm, threads)
        log("")
        log(f"\t\t* * * {name.upper()} ERRORS * * *")
        log("")
        if rank0:
            click.echo(mon.report(), nl=False)
        reports[name] = mon.as_dict()

    report("train", trainer.data)
    vdata = None
    if valid is not None:
        vdata = TrainingData(valid, params.max_dist)
        vdata.check_types(params.species_count)
        report("validation", vdata)
    sys.stdout.flush()

    if kw["report_json"]:
        # the training loss of the potential as written (all ranks: a collective sum), so
        # that fits, or a fit and a given potential (--max-iter=0), compare on one scale
        final_loss = trainer.loss(mtp, gradient=False)[0]
    if kw["report_json"] and rank0:
        from ..io._atomic import atomic_open

        doc = {"potential": os.fspath(potential), "train_set": os.fspath(train_set),
               "output": out_name if (options.max_iter > 0 or options.linear) else None,
               "errors": reports,
               "loss": final_loss,
               "loss_history": [{"phase": ph, "iteration": k, "loss": f}
                                for ph, k, f in trainer.history],
               "loss_evaluations": trainer.loss.n_evals,
               "scaling": params.scaling,
               "options": {k: v for k, v in kw.items() if k not in ("report_json", "parity_plot")}}
        with atomic_open(kw["report_json"], "w") as fh:
            json.dump(doc, fh, indent=2, default=float)
            fh.write("\n")
    if kw["parity_plot"] and rank0:
        sets = [("train", trainer.data)]
        if vdata is not None:
            sets.append(("validation", vdata))
        if not comm.is_mpi:
            _parity_plot(kw["parity_plot"], mtp, sets, threads)
        else:
            click.echo("mlp: warning: --parity-plot is drawn from rank 0's share of the data "
                       "only under MPI", err=True)
            _parity_plot(kw["parity_plot"], mtp, sets, threads)


def _parity_plot(path, mtp, sets, threads):
    """Energy-per-atom and force-component parity plots (matplotlib, Agg backend)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        click.echo(f"mlp: warning: --parity-plot needs matplotlib (pip install matplotlib); "
                   f"{path} was not written", err=True)
        return
    from ..io._atomic import atomic_open
    from ..training.loss import efs_merged

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    for name, data in sets:
        e, f, _ = efs_merged(mtp, data, num_threads=threads)
        has = data.has_energy
        n = data.natoms[has]
        axes[0].scatter(data.energy_ref[has] / n, e[has] / n, s=8, label=name, alpha=0.7)
        mask = data.has_forces[data.atom_cfg]
        axes[1].scatter(data.forces_ref[mask].ravel(), f[mask].ravel(), s=3, label=name,
                        alpha=0.5)
    for ax, what in zip(axes, ("energy per atom (eV/atom)", "force components (eV/A)")):
        lo, hi = ax.get_xlim()
        lo2, hi2 = ax.get_ylim()
        lo, hi = min(lo, lo2), max(hi, hi2)
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel(f"reference {what}")
        ax.set_ylabel(f"MTP {what}")
        ax.legend()
    fig.tight_layout()
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=120)
    plt.close(fig)


@click.command("train")
@click.argument("potential", type=click.Path(dir_okay=False))
@click.argument("train_set", type=click.Path(dir_okay=False))
@train_options
def command(potential, train_set, **kw):
    """Fits an MTP to a training set (MLIP-2's ``mlp train``).

    POTENTIAL is an .mtp file, trained (training continues) or untrained (a template:
    random or --init-params=same initialisation and a 75-iteration pre-training unless
    --skip-preinit).  TRAIN_SET holds configurations with reference energies, forces and
    stresses (cfg, binary cfg, extxyz, hdf5, ...).  The loss is the mean over
    configurations of the weighted squared errors (see --weighting), minimised by BFGS;
    the species and moment coefficients are refitted by linear least squares every 50
    iterations and the radial scaling is re-optimised at the end.  The trained potential
    is written to --trained-pot-name; the errors on the training (and validation) set are
    printed.  Run under mpirun to distribute the configurations over processes.

    \b
    Examples:
      mlp train 08.mtp train.cfg --trained-pot-name=pot.mtp --max-iter=500
      mlp train 08.mtp train.cfg --init-params=same --valid-cfgs=test.cfg
      mpirun -n 4 mlp train pot.mtp train.cfg --trained-pot-name=pot2.mtp
    """
    run_train(potential, train_set, kw)
