"""Throughput of the cfg readers and writers on a generated 1-million-atom data set.

Usage::

    python benchmarks/bench_cfg_io.py [--cfgs 500] [--atoms 2000] [--seed 0] [--repeat 3]

Generates (seeded) ``cfgs`` configurations of ``atoms`` atoms each, with lattice, types,
positions, forces, energy, PlusStress and a feature, into a temporary directory, then
times (best of ``repeat``):

* text write, default layout (what calc-efs writes) and lossless layout;
* text read of both files (streaming :func:`mlip_py.io.cfg.iter_cfg`, all configurations
  materialised one after another and dropped);
* binary write and read;
* peak memory: a child process streams the whole default-layout text file and reports
  its RSS high-water mark (``resource.getrusage``) before and after, so the increase is
  what streaming costs (it stays around one block plus one configuration, independent of
  the file size).  On Linux ``ru_maxrss`` survives fork and exec, so the child is started
  through ``/bin/sh`` (which forks it from a small process) to keep the benchmark's own
  memory out of the number; ``VmHWM`` from /proc is printed as a cross-check.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from mlip_py.configuration import Configuration
from mlip_py.io.cfg import iter_cfg, write_cfg
from mlip_py.io.cfgbin import iter_cfgbin, write_cfgbin


def make_cfgs(n_cfgs, n_atoms, seed):
    """A seeded list of labelled bulk-like configurations."""
    rng = np.random.default_rng(seed)
    side = (n_atoms / 2) ** (1 / 3) * 3.16
    out = []
    for i in range(n_cfgs):
        lattice = np.diag([side, side, side]) + rng.normal(scale=0.05, size=(3, 3))
        frac = rng.random((n_atoms, 3))
        cfg = Configuration(
            lattice=lattice,
            positions=frac @ lattice,
            types=rng.integers(0, 2, n_atoms),
            energy=-10.8 * n_atoms + rng.normal(),
            forces=rng.normal(scale=0.5, size=(n_atoms, 3)),
            plus_stress=rng.normal(scale=5.0, size=6),
            features={"EFS_by": "bench", "index": str(i)},
        )
        out.append(cfg)
    return out


def best(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def consume(it):
    n = 0
    for cfg in it:
        n += len(cfg)
    return n


_CHILD = r"""
import resource, sys
from mlip_py.io.cfg import iter_cfg
import mlip_py._cext
from mlip_py._cext import load
load("_cfgparse")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
n = 0
for cfg in iter_cfg(sys.argv[1]):
    n += len(cfg)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
hwm = 0
try:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
except OSError:
    pass
print(before, after, n, hwm)
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cfgs", type=int, default=500)
    ap.add_argument("--atoms", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    cfgs = make_cfgs(args.cfgs, args.atoms, args.seed)
    natoms = sum(len(c) for c in cfgs)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        txt = os.path.join(tmp, "bench.cfg")
        lossless = os.path.join(tmp, "bench.lossless.cfg")
        binf = os.path.join(tmp, "bench.bin.cfg")

        t = best(lambda: write_cfg(txt, cfgs), args.repeat)
        rows.append(("text write (default)", t, os.path.getsize(txt)))
        t = best(lambda: write_cfg(lossless, cfgs, lossless=True), args.repeat)
        rows.append(("text write (lossless)", t, os.path.getsize(lossless)))
        t = best(lambda: write_cfgbin(binf, cfgs), args.repeat)
        rows.append(("binary write", t, os.path.getsize(binf)))

        assert consume(iter_cfg(txt)) == natoms
        t = best(lambda: consume(iter_cfg(txt)), args.repeat)
        rows.append(("text read (default)", t, os.path.getsize(txt)))
        t = best(lambda: consume(iter_cfg(lossless)), args.repeat)
        rows.append(("text read (lossless)", t, os.path.getsize(lossless)))
        t = best(lambda: consume(iter_cfgbin(binf)), args.repeat)
        rows.append(("binary read", t, os.path.getsize(binf)))

        child = os.path.join(tmp, "child.py")
        with open(child, "w") as fh:
            fh.write(_CHILD)
        cmd = [sys.executable, child, txt]
        if os.path.exists("/bin/sh"):
            # the shell forks the child, so it does not inherit this process's ru_maxrss
            cmd = ["/bin/sh", "-c", '"$0" "$1" "$2"; true', *cmd]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        before, after, n, hwm = (int(x) for x in res.stdout.split())
        assert n == natoms

    print(f"{args.cfgs} configurations x {args.atoms} atoms = {natoms} atoms "
          f"(seed {args.seed}, best of {args.repeat})")
    print(f"{'operation':<24} {'seconds':>8} {'atoms/s':>12} {'MB/s':>8} {'file MB':>8}")
    for name, t, size in rows:
        print(f"{name:<24} {t:8.3f} {natoms / t:12.3e} {size / t / 1e6:8.1f} {size / 1e6:8.1f}")
    print(f"peak RSS streaming the {rows[0][2] / 1e6:.0f} MB text file in a child process: "
          f"{after / 1024:.1f} MiB (after imports {before / 1024:.1f} MiB, "
          f"+{(after - before) / 1024:.1f} MiB while reading; VmHWM {hwm / 1024:.1f} MiB)")


if __name__ == "__main__":
    main()
