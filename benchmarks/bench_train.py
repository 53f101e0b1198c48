"""Training cost: loss+gradient evaluations and BFGS iterations on the mlearn Mo set.

Usage::

    python benchmarks/bench_train.py [--shared ../shared] [--repeat 5] [--threads 1 2]
                                     [--skip-bfgs] [--levels 8 10 16]
                                     [--linear-levels 8 10 16 20] [--linear-repeat 3]

Data: ``golden/train_Mo.cfg`` (194 configurations, 10 087 atoms).  Reference numbers of
the original MLIP-2 (mlip-perf.md §2, same machine class): one loss+gradient evaluation
0.227 s (level 8), 0.43 s (level 10), ~2.0 s (level 16); one steady-state BFGS iteration
0.55 s (level 8), 1.04 s (level 10).  The target is <= 0.7x these.

1. Seconds per loss+gradient evaluation (:class:`mlip_py.training.loss.Loss`, neighbour
   lists built once; best of ``repeat`` after one warm-up call) at levels 8 and 10 (the
   untrained templates ``golden/untrained_08_Mo.mtp``, ``untrained_10_Mo.mtp``) and 16
   (``mlip_py.potential.templates.make_template(16, ...)`` if available, else the upstream
   ``untrained_mtps/16.mtp`` with its ``<<<`` comments removed), with random order-one
   coefficients (seeded), for each thread count.  Also the time of one TrainLinear.
2. Seconds per BFGS iteration as in mlip-perf.md: wall time of
   ``mlp train Mo_lXX.mtp train_Mo.cfg --max-iter=40`` minus ``--max-iter=10``, divided
   by 30 (run as subprocesses, so start-up and reading cancel out), for each thread
   count; the number of loss evaluations (from ``--report-json``) is printed too
   (MLIP-2: 47 and 118).
3. Seconds per TrainLinear (:func:`mlip_py.training.linear.train_linear`: orthogonalisation,
   basis-function energies/forces/virials of every configuration, normal equations,
   solve; best of ``linear-repeat``) at ``linear-levels`` (templates as in 1; level 20 from
   ``make_template(20, ...)`` or the upstream ``20.mtp``), for each thread count.
   MLIP-2: ~0.75 s at level 16 (mlip-perf.md §2, from the profile of the level-16 run).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = {8: (0.227, 0.55), 10: (0.43, 1.04), 16: (2.0, None), 20: (None, None)}
#: MLIP-2's TrainLinear (s) on the Mo set, where known
REFERENCE_LINEAR = {16: 0.75}


def level16_params(shared, level=16):
    try:
        from mlip_py.potential.templates import make_template

        return make_template(level, min_dist=1.8, max_dist=5.0)
    except ImportError:
        from mlip_py.io.mtp import parse_mtp

        text = (shared / f"reference/mlip/untrained_mtps/{level}.mtp").read_text()
        text = "\n".join(line.split("<<<")[0].rstrip() for line in text.splitlines())
        text = re.sub(r"species_count\s*=\s*\d+", "species_count = 1", text)
        text = re.sub(r"min_dist\s*=\s*[-+0-9.eE]+", "min_dist = 1.8", text)
        text = re.sub(r"max_dist\s*=\s*[-+0-9.eE]+", "max_dist = 5.0", text)
        return parse_mtp(text)


def level_params(level, golden, shared):
    from mlip_py.io.mtp import read_mtp

    if level in (8, 10):
        return read_mtp(golden / f"untrained_{level:02d}_Mo.mtp")
    return level16_params(shared, level)


def random_params(params, rng):
    p = params.copy()
    p.init_default_coeffs()
    p.set_params(np.concatenate([rng.normal(size=p.n_radial_params) / p.radial_basis_size,
                                 rng.normal(size=p.species_count),
                                 rng.normal(size=p.alpha_scalar_moments) * 0.01]))
    return p


def bench_linear(params, cfgs, threads, repeat, rng):
    """Best time of one TrainLinear (neighbour lists built beforehand)."""
    from mlip_py.potential.mtp import MTP
    from mlip_py.training.linear import train_linear
    from mlip_py.training.loss import LossWeights, TrainingData

    p = random_params(params, rng)
    data = TrainingData(cfgs, p.max_dist)
    best = np.inf
    for _ in range(repeat):
        mtp = MTP(p.copy(), num_threads=threads)
        t0 = time.perf_counter()
        train_linear(mtp, data, LossWeights(), num_threads=threads)
        best = min(best, time.perf_counter() - t0)
    return best


def bench_eval(params, cfgs, threads, repeat, rng):
    from mlip_py.potential.mtp import MTP
    from mlip_py.training.linear import train_linear
    from mlip_py.training.loss import Loss, LossWeights, TrainingData

    p = random_params(params, rng)
    mtp = MTP(p, num_threads=threads)
    t0 = time.perf_counter()
    data = TrainingData(cfgs, p.max_dist)
    t_nb = time.perf_counter() - t0
    loss = Loss(data, LossWeights(), num_threads=threads)
    loss(mtp)
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        loss(mtp)
        best = min(best, time.perf_counter() - t0)
    t0 = time.perf_counter()
    train_linear(mtp, data, LossWeights(), num_threads=threads)
    t_lin = time.perf_counter() - t0
    loss.close()
    return best, t_nb, t_lin


def run_mlp(args, cwd, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mlip_py.cli.main", "-q"] + args, cwd=cwd, env=env,
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def bench_bfgs(golden, level, threads):
    pot = golden / f"Mo_l{level:02d}.mtp"
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for it in (10, 40):
            rep = Path(tmp) / f"r{it}.json"
            wall = run_mlp(["train", str(pot), str(golden / "train_Mo.cfg"), f"--max-iter={it}",
                            f"--trained-pot-name={tmp}/t.mtp", f"--report-json={rep}",
                            f"--threads={threads}"], tmp, threads)
            out[it] = (wall, json.loads(rep.read_text())["loss_evaluations"])
    per_iter = (out[40][0] - out[10][0]) / 30
    return per_iter, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--levels", type=int, nargs="*", default=[8, 10, 16])
    ap.add_argument("--linear-levels", type=int, nargs="*", default=[8, 10, 16, 20])
    ap.add_argument("--linear-repeat", type=int, default=3)
    ap.add_argument("--skip-bfgs", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from mlip_py.io import read_configurations

    golden = args.shared / "reference/mlip/golden"
    cfgs = read_configurations(golden / "train_Mo.cfg")
    print(f"train_Mo.cfg: {len(cfgs)} configurations, {sum(len(c) for c in cfgs)} atoms; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print()
    print("loss+gradient evaluation (s), best of", args.repeat)
    print(f"{'level':>5} {'thr':>3} {'eval s':>8} {'us/atom':>8} {'MLIP-2 s':>8} {'ratio':>6} "
          f"{'nbr s':>6} {'TrainLinear s':>13}")
    natoms = sum(len(c) for c in cfgs)
    for level in args.levels:
        params = level_params(level, golden, args.shared)
        for thr in args.threads:
            rng = np.random.default_rng(args.seed)
            t, t_nb, t_lin = bench_eval(params, cfgs, thr, args.repeat, rng)
            ref = REFERENCE.get(level, (None,))[0]
            cmp = f"{ref:8.3f} {t / ref:6.2f}" if ref else f"{'-':>8} {'-':>6}"
            print(f"{level:>5} {thr:>3} {t:8.4f} {1e6 * t / natoms:8.1f} {cmp} "
                  f"{t_nb:6.3f} {t_lin:13.3f}", flush=True)
    if args.linear_levels:
        print()
        print("TrainLinear (s), best of", args.linear_repeat)
        print(f"{'level':>5} {'S':>4} {'thr':>3} {'s':>8} {'MLIP-2 s':>8} {'ratio':>6}")
        for level in args.linear_levels:
            params = level_params(level, golden, args.shared)
            for thr in args.threads:
                rng = np.random.default_rng(args.seed)
                t = bench_linear(params, cfgs, thr, args.linear_repeat, rng)
                ref = REFERENCE_LINEAR.get(level)
                cmp = f"{ref:8.3f} {t / ref:6.2f}" if ref else f"{'-':>8} {'-':>6}"
                print(f"{level:>5} {params.alpha_scalar_moments:>4} {thr:>3} {t:8.3f} {cmp}",
                      flush=True)
    if args.skip_bfgs:
        return
    print()
    print("BFGS iteration (s) = (wall(--max-iter=40) - wall(--max-iter=10)) / 30")
    print(f"{'level':>5} {'thr':>3} {'s/iter':>7} {'MLIP-2':>7} {'ratio':>6} "
          f"{'wall10':>7} {'wall40':>7} {'evals10':>7} {'evals40':>7}")
    for level in (8, 10):
        for thr in args.threads:
            per_iter, out = bench_bfgs(golden, level, thr)
            ref = REFERENCE[level][1]
            print(f"{level:>5} {thr:>3} {per_iter:7.3f} {ref:7.2f} {per_iter / ref:6.2f} "
                  f"{out[10][0]:7.2f} {out[40][0]:7.2f} {out[10][1]:7d} {out[40][1]:7d}",
                  flush=True)


if __name__ == "__main__":
    main()
