"""``mlp calc-grade pot.mtp train.cfg in.cfg out.cfg``: maxvol extrapolation grades.

As MLIP-2 (mlip-cli.md ``calc-grade``): the active set is built from TRAIN by one
multiple selection (select threshold ``--select-threshold``, swaps while the max grade
exceeds ``--swap-threshold``), saved to the ``.als`` file, and every configuration of IN
is written to OUT with ``Feature MV_grade`` (``%f``; 9.9e99 above 1e10) and nothing else
changed.  Stdout is the original's two lines.

New: ``--load-state=s.als`` grades against a saved state (then TRAIN is not given:
``mlp calc-grade pot.mtp --load-state=s.als in.cfg out.cfg``, or without the potential,
which is then the one stored in the state: ``mlp calc-grade --load-state=s.als in.cfg
out.cfg``), ``--grade-histogram=grades.png``.  Candidates are streamed: memory is
O(n^2 + block) whatever the size of IN.  Under an MPI launcher (``mpirun -n K``, with
mpi4py) the rows of the training set and the grading are split over the ranks; the
selection runs on rank 0 and the output equals the serial one.

The option helpers of this module are shared with :mod:`mlip_py.cli.select_add`.
"""
from __future__ import annotations

import math

import click

from ..errors import ConfigError
from ._common import Progress, echo, input_format_option, open_inputs, opt_float, opt_str, \
    output_format_for, output_format_option, type_map_option, write_outputs


def selection_options(f):
    """Thresholds, state file name and selection weights (calc-grade and select-add)."""
    opts = [
        click.option("--init-threshold", callback=opt_float(1e-5), metavar="NUM",
                     help="The maxvol matrix starts as NUM * identity (default 1e-5)."),
        click.option("--select-threshold", callback=opt_float(1.1), metavar="NUM",
                     help="A batch is selected from only if its max grade exceeds NUM "
                          "(default 1.1; > 1)."),
        click.option("--swap-threshold", callback=opt_float(1.0000001), metavar="NUM",
                     help="Maxvol swaps continue while the max grade exceeds NUM "
                          "(default 1.0000001; > 1)."),
        click.option("--als-filename", callback=opt_str(None), metavar="FILE",
                     help="Active-learning state file written (default state.als)."),
        click.option("--mvs-filename", callback=opt_str(None), metavar="FILE", hidden=True,
                     help="Old name of --als-filename (lower priority)."),
        click.option("--energy-weight", callback=opt_float(None), metavar="W",
                     help="Weight of the energy row (default 1): one row "
                          "W*dE/dtheta/N per configuration (no /N with "
                          "--weighting=molecules)."),
        click.option("--force-weight", callback=opt_float(None), metavar="W",
                     help="Weight of the 3N force rows (default 0; explicit Jacobians, slow)."),
        click.option("--stress-weight", callback=opt_float(None), metavar="W",
                     help="Weight of the 9 virial rows (default 0; explicit Jacobians, slow)."),
        click.option("--nbh-weight", callback=opt_float(None), metavar="W",
                     help="Non-zero: one row per atom, dV_i/dtheta (neighbourhood grades; "
                          "grade = max over the atoms). Default 0; use with "
                          "--energy-weight=0."),
        click.option("--weighting", callback=opt_str(None), metavar="KIND",
                     help="vibrations (default), molecules or structures: scaling of the "
                          "rows with the number of atoms N."),
        click.option("--threads", type=click.IntRange(min=0), default=None,
                     help="OpenMP threads of the kernels (default: OMP_NUM_THREADS or all "
                          "cores)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def make_weights(energy, force, stress, nbh, weighting):
    """RowWeights from the options (None = default)."""
    from ..selection.rows import RowWeights

    return RowWeights(energy=1.0 if energy is None else energy,
                      force=0.0 if force is None else force,
                      stress=0.0 if stress is None else stress,
                      nbh=0.0 if nbh is None else nbh,
                      weighting="vibrations" if weighting is None else weighting)


def als_name(als_filename, mvs_filename):
    """``--als-filename``, else ``--mvs-filename``, else ``state.als``."""
    return als_filename or mvs_filename or "state.als"


def check_files(*paths):
    """FileNotFoundError for the first missing input (before any work is done)."""
    import os

    for p in paths:
        if p is not None and not os.path.exists(p):
            raise FileNotFoundError(2, "No such file or directory", p)


def mpi_comm():
    """MPI_COMM_WORLD under an MPI launcher with more than one process, else None.

    The launcher is detected from its environment variables before mpi4py is imported
    (a plain run never initialises MPI); under a launcher a missing mpi4py is an error
    (K independent copies would all write the same files).
    """
    import os

    size = 1
    for key in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE"):
        try:
            size = max(size, int(os.environ.get(key, "1")))
        except ValueError:
            pass
    if size <= 1:
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        raise ConfigError(f"started by an MPI launcher with {size} processes but mpi4py is not "
                          "installed (pip install mpi4py), or run without mpirun") from None
    comm = MPI.COMM_WORLD
    return comm if comm.Get_size() > 1 else None


def workers(threads, comm):
    """Row-computing threads: --threads, else 1 per MPI rank, else the OpenMP default."""
    if threads:
        return int(threads)
    return 1 if comm is not None else None


# ------------------------------------------------------------------ histogram
class GradeHistogram:
    """Streaming histogram of grades in logarithmic bins (memory independent of counts).

    Bins: ``[10^(k/10), 10^((k+1)/10))`` for ``log10`` from -6 to 12, plus one bin for
    smaller grades (including 0) and one for larger ones.
    """

    LO, HI, PER_DECADE = -6, 12, 10

    def __init__(self):
        self.nbins = (self.HI - self.LO) * self.PER_DECADE
        self.counts = [0] * (self.nbins + 2)
        self.total = 0
        self.maximum = 0.0

    def add(self, g):
        self.total += 1
        self.maximum = max(self.maximum, g)
        if not g > 0.0 or math.log10(g) < self.LO:
            self.counts[0] += 1
            return
        k = int(math.floor((math.log10(g) - self.LO) * self.PER_DECADE))
        self.counts[min(k, self.nbins) + 1] += 1

    def count_above(self, threshold):
        """Number of grades in bins entirely above ``threshold`` (lower bound)."""
        edges = self.edges()
        return sum(c for c, lo in zip(self.counts[1:], edges[:-1]) if lo >= threshold)

    def edges(self):
        return [10.0 ** (self.LO + k / self.PER_DECADE) for k in range(self.nbins + 1)] + [math.inf]

    def plot(self, path, title, thresholds=()):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        edges = self.edges()
        lo = [e for e in edges[:-1]]
        hi = edges[1:-1] + [edges[-2] * 10 ** (1 / self.PER_DECADE)]
        counts = self.counts[1:]
        used = [i for i, c in enumerate(counts) if c]
        fig, ax = plt.subplots(figsize=(7, 4))
        if used:
            a, b = max(used[0] - 2, 0), min(used[-1] + 3, len(counts))
            ax.bar(lo[a:b], counts[a:b], width=[h - l for l, h in zip(lo[a:b], hi[a:b])],
                   align="edge", color="tab:blue", edgecolor="white", linewidth=0.3)
        ax.set_xscale("log")
        for t, label in thresholds:
            ax.axvline(t, color="tab:red", linestyle="--", linewidth=1)
            ax.text(t, ax.get_ylim()[1] * 0.95, " " + label, color="tab:red", fontsize=8,
                    va="top")
        ax.set_xlabel("extrapolation grade (MV_grade)")
        ax.set_ylabel("configurations")
        extra = f"; {self.counts[0]} below 1e{self.LO}" if self.counts[0] else ""
        ax.set_title(f"{title}\n{self.total} configurations, max grade {self.maximum:.4g}{extra}",
                     fontsize=9)
        fig.tight_layout()
        from ..io._atomic import atomic_open

        with atomic_open(path, "wb") as fh:
            fig.savefig(fh, format=_image_format(path))
        plt.close(fig)


def _image_format(path):
    import os

    ext = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
    return ext if ext in ("png", "pdf", "svg", "jpg", "jpeg", "eps", "ps") else "png"


def require_matplotlib():
    import importlib.util

    try:
        found = importlib.util.find_spec("matplotlib") is not None
    except (ImportError, ValueError):  # ValueError: sys.modules["matplotlib"] is None
        found = False
    if not found:
        raise ConfigError("--grade-histogram needs matplotlib, which is not installed "
                          "(pip install matplotlib); run without --grade-histogram or "
                          "install it")


# ------------------------------------------------------------------ command
USAGE = """Calculates and saves maxvol grades of input configurations.

\b
Usage:
  mlp calc-grade POT.mtp TRAIN.cfg IN.cfg OUT.cfg [options]
  mlp calc-grade POT.mtp --load-state=STATE.als IN.cfg OUT.cfg [options]
  mlp calc-grade --load-state=STATE.als IN.cfg OUT.cfg [options]

Builds the maxvol active set from TRAIN (one multiple selection, as MLIP-2), saves it to
the state file (--als-filename, default state.als), then writes every configuration of
IN to OUT with the feature MV_grade (6 decimals; 9.9e99 above 1e10) and nothing else
changed.  A grade <= 1 means interpolation, > 1 extrapolation (grades of the training
configurations are <= --swap-threshold).

With --load-state the active set is read from a saved .als file (written by MLIP-2 or
mlip-py) instead; TRAIN is then not given, nothing is saved, and POT may be omitted
(the potential stored in the state is used; if given it must be the same potential).
The selection weights are those stored in the state; --weighting is not stored and
must be given again if it was not vibrations.

Memory does not grow with the size of IN (configurations are streamed).
Under an MPI launcher (mpirun -n K, needs mpi4py) the rows are computed on all ranks
and the selection runs on rank 0; the output is the serial one.
"""


@click.command("calc-grade", help=USAGE, no_args_is_help=True)
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@selection_options
@click.option("--load-state", callback=opt_str(None), metavar="STATE.als",
              help="Grade against this saved active-learning state (no TRAIN).")
@click.option("--grade-histogram", callback=opt_str(None), metavar="FILE.png",
              help="Also plot a histogram of the grades (needs matplotlib; format from the "
                   "extension: png, pdf, svg).")
@input_format_option
@output_format_option
@type_map_option
def command(files, init_threshold, select_threshold, swap_threshold, als_filename,
            mvs_filename, energy_weight, force_weight, stress_weight, nbh_weight, weighting,
            threads, load_state, grade_histogram, input_format, output_format, type_map):
    from ..potential.mtp import MTP
    from ..selection.active_set import ActiveSet, format_grade

    pot = train = None
    if load_state is None:
        if len(files) != 4:
            raise click.UsageError(f"4 arguments required (POT.mtp TRAIN.cfg IN.cfg OUT.cfg), "
                                   f"got {len(files)}; with --load-state: [POT.mtp] IN.cfg "
                                   "OUT.cfg")
        pot, train, inp, out = files
    else:
        if len(files) == 3:
            pot, inp, out = files
        elif len(files) == 2:
            inp, out = files
        else:
            raise click.UsageError(f"with --load-state give [POT.mtp] IN.cfg OUT.cfg "
                                   f"({len(files)} arguments given; TRAIN is not used)")
    if grade_histogram:
        require_matplotlib()
    check_files(pot, train, load_state, inp)
    comm = mpi_comm()
    rank = 0 if comm is None else comm.Get_rank()
    say = echo if rank == 0 else (lambda text: None)

    if load_state is None:
        say(f"MTPR from {pot}, train: {train}, input: {inp}")
        weights = make_weights(energy_weight, force_weight, stress_weight, nbh_weight, weighting)
        aset = ActiveSet(MTP(pot, num_threads=threads), weights, init_threshold,
                         select_threshold, swap_threshold, workers=workers(threads, comm))
        progress = Progress("calc-grade: training set") if rank == 0 else None
        aset.select(lambda: open_inputs(train, input_format, type_map), progress=progress,
                    comm=comm, name=train)
        if progress is not None:
            progress.done()
        als = als_name(als_filename, mvs_filename)
        if rank == 0:
            aset.save(als)
        say(f'MLIP: Selection: state saved to "{als}"')
    else:
        say(f"MTPR from {pot or load_state}, state: {load_state}, input: {inp}")
        aset = ActiveSet.load(load_state, None if pot is None else MTP(pot, num_threads=threads),
                              weighting or "vibrations", threshold_init=init_threshold,
                              threshold_select=select_threshold, threshold_swap=swap_threshold,
                              workers=workers(threads, comm))
        if threads is not None:
            aset.mtp.num_threads = int(threads)
        stored = aset.weights.als_dict()
        given = {"energy": energy_weight, "force": force_weight, "stress": stress_weight,
                 "nbh": nbh_weight}
        clash = {k: v for k, v in given.items() if v is not None and v != stored[k]}
        if clash:
            raise ConfigError(f"{load_state}: the state was made with selection weights "
                              f"{stored}; the weight options given differ ({clash}); omit "
                              "them: the stored weights are used")

    hist = GradeHistogram() if grade_histogram else None
    progress = Progress("calc-grade") if rank == 0 else None

    def graded():
        cfgs = open_inputs(inp, input_format, type_map)
        if progress is not None:
            cfgs = progress(cfgs)
        for cfg, g in aset.iter_grades(cfgs, comm=comm, name=inp):
            cfg.features["MV_grade"] = format_grade(g)
            if hist is not None:
                hist.add(g)
            yield cfg

    if rank == 0:
        write_outputs(out, graded(), output_format_for(out, output_format), type_map=type_map)
    else:
        for _ in graded():
            pass
    if progress is not None:
        progress.done()
    if hist is not None and rank == 0:
        hist.plot(grade_histogram, f"MV_grade of {inp}",
                  [(1.0, "1"), (aset.maxvol.threshold_select, "select threshold")])
