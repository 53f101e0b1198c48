"""Benchmark of the neighbour-list build (mlip_py.potential.neighbors.build_neighbors).

bcc Mo (a = 3.16 A) conventional supercells k x k x k (2 k^3 atoms), rattled with a
Gaussian of 0.05 A, cutoff 5.0 A (26 neighbours per atom): wall time per atom of one
complete ``build_neighbors`` call (validation, binning, search, sorting, CSR output),
single-threaded.  The cost per atom should be flat in N (linear algorithm).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_neighbors.py [--sizes 4 10 20 30] [--repeat 7]
"""
import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from mlip_py.potential.neighbors import build_neighbors  # noqa: E402

A_MO = 3.16


def bcc_supercell(k, rattle, rng):
    """Lattice and positions of a k x k x k conventional bcc Mo supercell, rattled."""
    g = np.array([(i, j, l) for i in range(k) for j in range(k) for l in range(k)], float)
    pos = np.concatenate([g, g + 0.5]) * A_MO
    pos += rng.normal(scale=rattle, size=pos.shape)
    return np.eye(3) * A_MO * k, pos


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[4, 10, 20])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--cutoff", type=float, default=5.0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"{'cell':>10} {'atoms':>7} {'nbh/atom':>9} {'best us/atom':>13} "
          f"{'median us/atom':>15}")
    for k in args.sizes:
        lat, pos = bcc_supercell(k, 0.05, rng)
        nl = build_neighbors(lat, pos, None, args.cutoff)   # warm-up
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            nl = build_neighbors(lat, pos, None, args.cutoff)
            times.append(time.perf_counter() - t0)
        n = len(pos)
        print(f"{f'{k}x{k}x{k}':>10} {n:>7} {nl.n_pairs / n:>9.2f} "
              f"{min(times) / n * 1e6:>13.3f} {float(np.median(times)) / n * 1e6:>15.3f}")


if __name__ == "__main__":
    main()
