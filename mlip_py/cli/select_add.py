"""``mlp select-add pot.mtp train.cfg new.cfg diff.cfg``: active selection (MLIP-2).

As MLIP-2 (mlip-cli.md ``select-add``): the active set is built from TRAIN with
``threshold_select = threshold_swap = --swap-threshold``; then all candidates of NEW are
added in one batch and selected (``--select-threshold``, optional swap limit
``--selection-limit``).  DIFF receives the candidates that entered the active set (each
once, in active-set row order, feature ``ID`` removed), the ``.als`` file the state, and
``--selected-filename`` one entry per filled row (training configurations carry
``Feature ID -1``).  Stdout is the original's, "traning" typo included.

The candidate rows are computed once and kept in a temporary file read back in blocks
(memory does not grow with the number of candidates); the exact streaming selection
gives the same result as the in-memory one.  New: ``--batch-size`` and ``--cost``
(see the help text), MPI (``mpirun -n K``: rows computed on all ranks, selection on
rank 0, same output as serial).
"""
from __future__ import annotations

import click

from ..errors import ConfigError
from ._common import Progress, echo, input_format_option, open_inputs, opt_int, opt_str, \
    output_format_for, output_format_option, type_map_option, write_outputs
from .calc_grade import als_name, check_files, make_weights, mpi_comm, \
    selection_options, workers

COSTS = ("atoms3", "atoms", "none")

USAGE = """Actively selects configurations to be added to the current training set.

\b
Usage:
  mlp select-add POT.mtp TRAIN.cfg NEW.cfg DIFF.cfg [options]

Builds the maxvol active set from TRAIN, adds all configurations of NEW in one batch and
selects (MLIP-2's multiple selection: swaps while a candidate's grade exceeds
--swap-threshold, started only if the max grade exceeds --select-threshold).  Writes to
DIFF the candidates that entered the active set (to be computed with DFT), to the state
file (--als-filename) the active set, and to --selected-filename every configuration of
the active set (training ones with Feature ID -1).

\b
New options:
  --batch-size=K  add at most K configurations of NEW: greedy D-optimal selection in
                  which a configuration chosen in this round is never pushed out again
                  (so all K really enlarge the set); the swap gain max|b A^-1| must
                  still exceed --swap-threshold.
  --cost=KIND     atoms3 | atoms | none (default none): labelling cost of a candidate,
                  N^3 (atoms3, the scaling of DFT) or N (atoms).  With a cost the greedy
                  choice maximises the log-det gain per unit cost, log(g)/cost (g = the
                  factor by which the swap multiplies |det A|), so among equally
                  informative candidates the cheaper DFT calculation is preferred.
                  Implies the batch selection (without --batch-size: no limit on K).

Memory does not grow with the size of NEW (candidate rows are kept in a temporary file).
Under an MPI launcher (mpirun -n K, needs mpi4py) the rows are computed on all ranks
and the selection runs on rank 0; the output is the serial one.
"""


def _cost_function(kind):
    if kind == "atoms3":
        return lambda cfg: float(max(len(cfg), 1)) ** 3
    if kind == "atoms":
        return lambda cfg: float(max(len(cfg), 1))
    return None


@click.command("select-add", help=USAGE, no_args_is_help=True)
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@selection_options
@click.option("--selected-filename", callback=opt_str("selected.cfg"), metavar="FILE",
              help="All configurations of the final active set (default selected.cfg).")
@click.option("--selection-limit", callback=opt_int(0, minimum=0), metavar="N",
              help="At most N maxvol swaps in the candidate pass (default 0 = no limit).")
@click.option("--batch-size", callback=opt_int(None, minimum=1), metavar="K",
              help="Add at most K configurations (greedy, chosen ones are kept; new).")
@click.option("--cost", callback=opt_str(None), metavar="atoms3|atoms|none",
              help="Labelling cost: maximise log-det gain per unit cost, cost = N^3 "
                   "(atoms3), N (atoms) or 1 (none, default) (new).")
@input_format_option
@output_format_option
@type_map_option
def command(files, init_threshold, select_threshold, swap_threshold, als_filename,
            mvs_filename, energy_weight, force_weight, stress_weight, nbh_weight, weighting,
            threads, selected_filename, selection_limit, batch_size, cost, input_format,
            output_format, type_map):
    from ..potential.mtp import MTP
    from ..selection.active_set import ActiveSet
    from ..selection.maxvol import _check_threshold

    if len(files) != 4:
        raise click.UsageError(f"4 arguments required (POT.mtp TRAIN.cfg NEW.cfg DIFF.cfg), "
                               f"got {len(files)}")
    pot, train, new, diff = files
    if cost is not None and cost not in COSTS:
        raise click.BadParameter(f"expected one of {', '.join(COSTS)}, got {cost!r}",
                                 param_hint="--cost")
    if selection_limit and (batch_size is not None or cost not in (None, "none")):
        raise ConfigError("--selection-limit (a limit on maxvol swaps) cannot be combined "
                          "with --batch-size/--cost (a limit on configurations)")
    check_files(pot, train, new)
    select_threshold = _check_threshold("select", select_threshold, 1.0)
    weights = make_weights(energy_weight, force_weight, stress_weight, nbh_weight, weighting)
    comm = mpi_comm()
    rank = 0 if comm is None else comm.Get_rank()
    say = echo if rank == 0 else (lambda text: None)

    say(f"MTPR from {pot}, traning set: {train}, add from set: {new}")
    # the training set is selected with threshold_select = threshold_swap (as MLIP-2)
    aset = ActiveSet(MTP(pot, num_threads=threads), weights, init_threshold, swap_threshold,
                     swap_threshold, workers=workers(threads, comm))
    aset.empty_features = {"ID": "-1"}  # as MLIP-2 (seen in its .als files)

    def training():
        for cfg in open_inputs(train, input_format, type_map):
            cfg.features["ID"] = "-1"
            yield cfg

    def candidates():
        for i, cfg in enumerate(open_inputs(new, input_format, type_map)):
            cfg.features["ID"] = str(i + 1)
            yield cfg

    progress = Progress("select-add: training set") if rank == 0 else None
    tr = aset.select(training, progress=progress, comm=comm, name=train)
    if progress is not None:
        progress.done()
    say("loading training set... done")
    say(f"{tr.count} configurations found in the training set")
    if selection_limit:
        say(f"Swap limit = {selection_limit}")
    progress = Progress("select-add: candidates") if rank == 0 else None
    if batch_size is not None or cost not in (None, "none"):
        sel = aset.select_batch(candidates, batch_size, cost=_cost_function(cost),
                                progress=progress, comm=comm, name=new)
    else:
        sel = aset.select(candidates, select_threshold=select_threshold,
                          swap_limit=selection_limit or None, progress=progress, comm=comm,
                          name=new)
    if progress is not None:
        progress.done()
    if rank != 0:
        return
    say(f"{aset.filled_slots()} configurations selected from both sets")
    say(f"new configuration count = {sel.count}")
    say(f"TS increased by {len(sel.entered)} configs")

    def diff_cfgs():
        for o in sel.entered:
            cfg = aset.configurations[o]
            cfg.features.pop("ID", None)  # erased in place, as MLIP-2 does
            yield cfg

    fmt_diff = output_format_for(diff, output_format)
    write_outputs(diff, diff_cfgs(), fmt_diff, type_map=type_map)
    als = als_name(als_filename, mvs_filename)
    aset.save(als)
    say(f'MLIP: Selection: state saved to "{als}"')
    write_outputs(selected_filename, aset.slot_configurations(),
                  output_format_for(selected_filename, output_format), type_map=type_map)
    say(f'MLIP: Selection: training set saved to "{selected_filename}"')
