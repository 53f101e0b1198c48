"""Energy + forces + stress cost of the MTP, in-process and for the whole ``mlp calc-efs``.

    python benchmarks/bench_efs.py [--shared DIR] [--levels 10,16,20] [--repeat 5]

Inputs (from ../shared/reference/mlip/golden/perf_inputs, the files MLIP-2 was timed on):
``big_Mo_2000x10.cfg`` (10 bcc Mo cells of 2000 atoms, r_cut 5 -> 26 neighbours) and
``big_Mo_16000.cfg`` (one 16,000-atom cell).  Potentials: level templates with one
species, min_dist 1.8, max_dist 5.0, R 8 and MLIP-2's default coefficients (the cost does
not depend on the coefficient values), exactly like the original's timing runs.

Printed, per level: microseconds per atom per E+F+S call, (a) building the neighbour list
in each call and (b) reusing it, single-threaded and with all cores; then the
whole-process wall time of ``mlp calc-efs`` on 100 such 2000-atom configurations (the
10-cell file repeated 10 times), median of --repeat runs, single-threaded
(OMP_NUM_THREADS=1), next to the original's figure scaled to the same number of atoms
(mlip-perf.md §1: 15.5, 37.3, 79.1 us/atom in total at levels 10, 16, 20).
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

ORIGINAL_TOTAL_US = {10: 15.5, 16: 37.3, 20: 79.1}
ORIGINAL_KERNEL_US = {10: 5.2, 16: 27.0, 20: 68.0}


def template(level):
    from mlip_py.potential.templates import make_template

    params = make_template(level, species_count=1, min_dist=1.8, max_dist=5.0, radial_basis_size=8)
    params.init_default_coeffs()
    return params


def per_atom_us(mtp, cfgs, threads, reuse, repeat):
    from mlip_py.potential.neighbors import build_neighbors

    nls = [build_neighbors(c.lattice, c.positions, c.pbc, mtp.params.max_dist) for c in cfgs] if reuse else None
    best = np.inf
    n_atoms = sum(len(c) for c in cfgs)
    for _ in range(repeat):
        t0 = time.perf_counter()
        for k, c in enumerate(cfgs):
            mtp.calc_efs(c, neighbors=nls[k] if reuse else None, num_threads=threads)
        best = min(best, time.perf_counter() - t0)
    return 1e6 * best / n_atoms


def whole_process(pot_path, cfg_path, out_path, repeat):
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    times = []
    for _ in range(repeat + 1):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mlip_py.cli.main", "-q", "calc-efs", pot_path,
                        cfg_path, out_path], check=True, env=env)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=os.path.join(HERE, "..", "..", "shared"))
    ap.add_argument("--levels", default="10,16,20")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    from mlip_py.io import read_configurations, write_configurations
    from mlip_py.io.mtp import write_mtp
    from mlip_py.potential.mtp import MTP

    perf = os.path.join(args.shared, "reference", "mlip", "golden", "perf_inputs")
    small = read_configurations(os.path.join(perf, "big_Mo_2000x10.cfg"))
    big = read_configurations(os.path.join(perf, "big_Mo_16000.cfg"))
    ncores = os.cpu_count()
    print(f"machine: {ncores} cores; python {sys.version.split()[0]}")
    print()
    print("in-process E+F+S, microseconds per atom (best of %d)" % args.repeat)
    hdr = (f"{'level':>5} {'cell':>6} {'NL each call 1T':>16} {'NL reused 1T':>13} "
           f"{'NL each call %dT' % ncores:>16} {'NL reused %dT' % ncores:>13} {'orig kernel':>12}")
    print(hdr)
    levels = [int(x) for x in args.levels.split(",")]
    mtps = {}
    for level in levels:
        mtp = MTP(template(level))
        mtps[level] = mtp
        for name, cfgs in (("2000", small), ("16000", big)):
            row = [per_atom_us(mtp, cfgs, t, reuse, args.repeat)
                   for t in (1, ncores) for reuse in (False, True)]
            print(f"{level:>5} {name:>6} {row[0]:>16.2f} {row[1]:>13.2f} {row[2]:>16.2f} "
                  f"{row[3]:>13.2f} {ORIGINAL_KERNEL_US[level]:>12.1f}")
    print()
    print("whole process: mlp calc-efs on 100 x 2000-atom cells (200,000 atoms), 1 thread, "
          "median of %d" % args.repeat)
    print(f"{'level':>5} {'wall s':>8} {'us/atom':>8} {'original s':>11} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        cfg_path = os.path.join(tmp, "big_Mo_2000x100.cfg")
        write_configurations(cfg_path, small * 10)
        for level in levels:
            pot = os.path.join(tmp, f"l{level}.mtp")
            write_mtp(pot, mtps[level].params)
            wall = whole_process(pot, cfg_path, os.path.join(tmp, "out.cfg"), args.repeat)
            orig = ORIGINAL_TOTAL_US[level] * 200_000 * 1e-6
            print(f"{level:>5} {wall:>8.2f} {1e6 * wall / 200_000:>8.2f} {orig:>11.2f} "
                  f"{wall / orig:>6.2f}")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mlip_py.cli.main", "--help"], check=True,
                   capture_output=True)
    print()
    print(f"mlp --help: {time.perf_counter() - t0:.3f} s")


if __name__ == "__main__":
    main()
