"""Benchmark of the maxvol engine: grading and selecting 100,000 candidate rows.

For each n (default 26, 41, 125, 329: numbers of MTP parameters for typical levels):

* an active set is first selected from a random "training set" of 3 n rows;
* ``grade``:  grades of 100,000 random rows, block size 4096;
* ``select``: MLIP-2 multiple selection of the 100,000 rows in memory;
* ``stream``: the same selection streamed in blocks of 4096 rows generated on the fly
  (rows never all in memory), exact mode, default buffer;
* ``stream-approx``: the same, approximate mode.

Every (n, phase) runs in its own subprocess so that the reported peak RSS
(``ru_maxrss``) belongs to that phase alone; it includes the Python/numpy baseline
(~60-80 MiB) and, for grade/select, the 100,000 x n candidate matrix.  Times exclude
generating the random rows except in the streaming phases (where generation happens
inside the passes; its cost is reported separately as ``gen s/pass``).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_maxvol.py [--ns 26,41,125,329] [--rows 100000]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

BLOCK = 4096


def rows_block(n, seed, start, count):
    """Deterministic candidate rows [start, start+count) (regenerated in every pass)."""
    r = np.random.default_rng([seed, start])
    scale = r.uniform(0.2, 2.0, size=(count, 1))
    return r.normal(size=(count, n)) * scale


def make_source(n, m, seed):
    def gen():
        for s in range(0, m, BLOCK):
            yield rows_block(n, seed, s, min(BLOCK, m - s))
    return gen


def active_set(n):
    from mlip_py.selection.maxvol import MaxVol

    mv = MaxVol(n, block_rows=BLOCK)
    train = np.random.default_rng(7).normal(size=(3 * n, n))
    mv.select(train, select_threshold=1.0000001)
    return mv


def run_phase(n, m, phase):
    mv = active_set(n)
    out = {"n": n, "rows": m, "phase": phase}
    if phase in ("grade", "select"):
        B = np.concatenate([rows_block(n, 1, s, min(BLOCK, m - s)) for s in range(0, m, BLOCK)])
        t = time.perf_counter()
        if phase == "grade":
            g, _ = mv.grades(B)
            out["max_grade"] = float(g.max())
            out["n_above_1.1"] = int((g > 1.1).sum())
        else:
            res = mv.select(B)
            out["swaps"] = res.n_swaps
            out["log_det_change"] = res.log_det_change
        out["seconds"] = time.perf_counter() - t
    else:
        src = make_source(n, m, 1)
        t = time.perf_counter()
        for _ in src():
            pass
        gen = time.perf_counter() - t
        t = time.perf_counter()
        res = mv.select_streaming(src, exact=(phase == "stream"))
        out["seconds"] = time.perf_counter() - t
        out["gen s/pass"] = gen
        out["swaps"] = res.n_swaps
        out["passes"] = res.passes
        out["log_det_change"] = res.log_det_change
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ns", default="26,41,125,329")
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--phases", default="grade,select,stream,stream-approx")
    ap.add_argument("--one", nargs=2, metavar=("N", "PHASE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_phase(int(args.one[0]), args.rows, args.one[1])))
        return
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("OPENBLAS_NUM_THREADS", env["OMP_NUM_THREADS"])
    print(f"threads={env['OMP_NUM_THREADS']} rows={args.rows} block={BLOCK}")
    print(f"{'n':>5} {'phase':>14} {'seconds':>9} {'peak MiB':>9}  details")
    for n in [int(x) for x in args.ns.split(",")]:
        for phase in args.phases.split(","):
            p = subprocess.run([sys.executable, __file__, "--rows", str(args.rows), "--one",
                                str(n), phase], capture_output=True, text=True, env=env)
            if p.returncode != 0:
                print(f"{n:>5} {phase:>14} FAILED: {p.stderr.strip().splitlines()[-1]}")
                continue
            r = json.loads(p.stdout.strip().splitlines()[-1])
            det = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()
                   if k not in ("n", "rows", "phase", "seconds", "peak_rss_mib")}
            print(f"{n:>5} {phase:>14} {r['seconds']:9.3f} {r['peak_rss_mib']:9.1f}  {det}",
                  flush=True)


if __name__ == "__main__":
    main()
