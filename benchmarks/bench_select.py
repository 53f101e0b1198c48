"""Wall time and peak memory of ``mlp calc-grade`` and ``mlp select-add`` (whole process).

    python benchmarks/bench_select.py [--shared DIR] [--repeat 5] [--threads 1]
                                      [--big 100000] [--skip-big] [--levels 8,10,16,20]
                                      [--pyc]

Inputs, as in the original's timing runs (mlip-perf.md §3): training set
``golden/train_Mo.cfg`` (194 cfgs, 10,087 atoms) and candidates
``golden/perf_inputs/candidates_Mo_1000.cfg`` (1000 cfgs, 30,103 atoms).  Potentials:
``golden/Mo_l08.mtp`` and ``Mo_l10.mtp`` for levels 8 and 10; for 16 and 20 templates
from :func:`mlip_py.potential.templates.make_template` (1 species, min_dist 1.8,
max_dist 5.0, R 8) with MLIP-2's default coefficients (the cost does not depend on the
coefficient values).

Each command runs in a child process, ``OMP_NUM_THREADS=--threads``; wall time is the
median of ``--repeat`` runs after one warm-up run (the start-up floors and the level-8
and 10 commands are run in turn, round after round, so that the slow phases of a shared
machine affect them alike), peak memory the child's maximum
resident set size (``os.wait4`` rusage ``ru_maxrss``, the largest of the runs); the CPU
time (user + system, median) is printed too: on a busy machine it is the better measure
of the single-threaded cost (wall = CPU on an idle machine with one thread).  Then the
1000 candidates repeated to ``--big`` configurations (written once to a temporary file)
are graded and selected from once at level 8 (and calc-grade at level 10 with
neighbourhood rows is skipped there): the peak memory must not grow with the number of
candidates.

First the start-up floor is printed: ``python -c pass``, ``python -c "import numpy"``
and ``mlp calc-grade`` of one configuration against one (level 8): everything but the
per-configuration work (interpreter, imports, potential, file handling).

``--pyc``: the children run with a bytecode cache (``PYTHONPYCACHEPREFIX`` in a
temporary directory, filled by the warm-up runs), as an installed package has; by
default the environment is used as it is, and with ``PYTHONDONTWRITEBYTECODE`` set and
no ``__pycache__`` beside the sources every run compiles mlip-py's modules again.

Printed: one row per run with the original's time and the ratio (target <= 0.7).
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

#: the original's wall times (mlip-perf.md §3), seconds
ORIGINAL = {
    ("calc-grade", 8, "cfg"): 0.400, ("calc-grade", 10, "cfg"): 0.657,
    ("calc-grade", 10, "nbh"): 0.710, ("calc-grade", 16, "cfg"): 3.13,
    ("calc-grade", 20, "cfg"): 7.62,
    ("select-add", 8, "cfg"): 0.370, ("select-add", 10, "cfg"): 0.626,
}
ORIGINAL_MIB = {("calc-grade", 8, "cfg"): 11, ("select-add", 8, "cfg"): 12,
                ("calc-grade", 10, "cfg"): 11, ("select-add", 10, "cfg"): 12,
                ("calc-grade", 10, "nbh"): 50}


def run_child(argv, env, cwd):
    """(wall seconds, peak RSS MiB, CPU seconds) of one child process."""
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({p.returncode}):\n{err}")
    return wall, ru.ru_maxrss / 1024.0, ru.ru_utime + ru.ru_stime


def measure(argv, env, cwd, repeat):
    return measure_interleaved([argv], env, cwd, repeat)[0]


def measure_interleaved(argvs, env, cwd, repeat):
    """``measure`` of several commands run in turn (one warm-up each, then ``repeat``
    rounds of all of them), so that a slow phase of a shared machine hits every command
    alike; one ``(wall median, peak MiB, CPU median)`` per command."""
    runs = [[run_child(a, env, cwd)] for a in argvs]
    for _ in range(repeat):
        for a, r in zip(argvs, runs):
            r.append(run_child(a, env, cwd))
    out = []
    for r in runs:
        use = r[1:] if repeat else r
        out.append((statistics.median(x[0] for x in use), max(x[1] for x in r),
                    statistics.median(x[2] for x in use)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=os.path.join(HERE, "..", "..", "shared"))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--levels", default="8,10,16,20")
    ap.add_argument("--big", type=int, default=100_000)
    ap.add_argument("--skip-big", action="store_true")
    ap.add_argument("--pyc", action="store_true",
                    help="children use a bytecode cache (as an installed package)")
    args = ap.parse_args()

    from mlip_py.io.mtp import write_mtp
    from mlip_py.potential.templates import make_template

    golden = os.path.join(os.path.abspath(args.shared), "reference", "mlip", "golden")
    train = os.path.join(golden, "train_Mo.cfg")
    cand = os.path.join(golden, "perf_inputs", "candidates_Mo_1000.cfg")
    levels = [int(x) for x in args.levels.split(",")]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads),
               OPENBLAS_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    mlp = [sys.executable, "-m", "mlip_py.cli.main", "-q"]
    pyc_dir = None
    if args.pyc:
        pyc_dir = tempfile.TemporaryDirectory(prefix="bench_select_pyc_")
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = pyc_dir.name
    nocache = bool(env.get("PYTHONDONTWRITEBYTECODE")) and not args.pyc
    cache = ("yes (--pyc)" if args.pyc else "no (PYTHONDONTWRITEBYTECODE)" if nocache
             else "as the environment")
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; python "
          f"{sys.version.split()[0]}; OMP_NUM_THREADS={args.threads}; median of "
          f"{args.repeat} runs after a warm-up; bytecode cache: {cache}")
    hdr = (f"{'command':<11} {'level':>5} {'rows':>4} {'candidates':>10} {'wall s':>8} "
           f"{'CPU s':>7} {'peak MiB':>9} {'orig s':>7} {'ratio':>6} {'orig MiB':>8}")

    def row(cmd, level, kind, ncand, res):
        wall, mib, cpu = res
        orig = ORIGINAL.get((cmd, level, kind)) if ncand == 1000 else None
        om = ORIGINAL_MIB.get((cmd, level, kind)) if ncand == 1000 else None
        print(f"{cmd:<11} {level:>5} {kind:>4} {ncand:>10} {wall:>8.3f} {cpu:>7.3f} {mib:>9.1f} "
              f"{(f'{orig:.3f}' if orig else '-'):>7} {(f'{wall / orig:.2f}' if orig else '-'):>6} "
              f"{(str(om) if om else '-'):>8}", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench_select_") as tmp:
        one = os.path.join(tmp, "one.cfg")
        with open(train, encoding="utf-8") as fh:
            text = fh.read()
        with open(one, "w", encoding="utf-8") as fh:
            fh.write(text[:text.index("END_CFG") + len("END_CFG")] + "\n")
        floors = [("python -c pass", [sys.executable, "-c", "pass"]),
                  ("python -c 'import numpy'", [sys.executable, "-c", "import numpy"]),
                  ("calc-grade, 1 cfg (level 8)",
                   mlp + ["calc-grade", os.path.join(golden, "Mo_l08.mtp"), one, one, "o.cfg",
                          "--als-filename=o.als"])]
        pots = {}
        for level in levels:
            if level in (8, 10):
                pots[level] = os.path.join(golden, f"Mo_l{level:02d}.mtp")
            else:
                p = make_template(level, species_count=1, min_dist=1.8, max_dist=5.0,
                                  radial_basis_size=8)
                p.init_default_coeffs()
                pots[level] = os.path.join(tmp, f"tpl_{level}.mtp")
                write_mtp(pots[level], p)

        def calc_grade(level, inp, extra=()):
            return mlp + ["calc-grade", pots[level], train, inp, "graded.cfg",
                          "--als-filename=t.als", *extra]

        def select_add(level, inp):
            return mlp + ["select-add", pots[level], train, inp, "diff.cfg",
                          "--als-filename=t2.als", "--selected-filename=sel.cfg"]

        # the start-up floors and the level-8/10 runs are interleaved (see
        # measure_interleaved); levels 16 and 20 are run after them
        cases = []
        for level in [lv for lv in levels if lv <= 10]:
            cases.append((("calc-grade", level, "cfg"), calc_grade(level, cand)))
            if level == 10:
                cases.append((("calc-grade", level, "nbh"),
                              calc_grade(level, cand, ["--nbh-weight=1", "--energy-weight=0"])))
            cases.append((("select-add", level, "cfg"), select_add(level, cand)))
        res = measure_interleaved([a for _, a in floors] + [a for _, a in cases], env, tmp,
                                  max(args.repeat, 5))
        for (label, _), (wall, mib, cpu) in zip(floors, res):
            print(f"start-up floor: {label:<28} wall {wall:.3f} s  CPU {cpu:.3f} s  "
                  f"peak {mib:.1f} MiB", flush=True)
        print(hdr)
        print("-" * len(hdr))
        for (key, _), r in zip(cases, res[len(floors):]):
            row(*key, 1000, r)
        for level in [lv for lv in levels if lv > 10]:
            row("calc-grade", level, "cfg", 1000,
                measure(calc_grade(level, cand), env, tmp, max(1, min(args.repeat, 3))))

        if not args.skip_big:
            big = os.path.join(tmp, f"candidates_Mo_{args.big}.cfg")
            with open(cand, "rb") as fh:
                data = fh.read()
            reps, rest = divmod(args.big, 1000)
            with open(big, "wb") as fh:
                for _ in range(reps):
                    fh.write(data)
            if rest:
                import itertools

                from mlip_py.io.cfg import iter_cfg, write_cfg

                with open(big, "ab") as fh:
                    write_cfg(fh, itertools.islice(iter_cfg(cand), rest))
            for level in [lv for lv in (8, 10) if lv in levels]:
                row("calc-grade", level, "cfg", args.big,
                    measure(calc_grade(level, big), env, tmp, 0))
                row("select-add", level, "cfg", args.big,
                    measure(select_add(level, big), env, tmp, 0))
    if pyc_dir is not None:
        pyc_dir.cleanup()


if __name__ == "__main__":
    main()
