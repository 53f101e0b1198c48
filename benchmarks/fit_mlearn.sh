#!/usr/bin/env bash
# Fit level-20 MTPs to the mlearn Ni and Mo training sets and report test-set errors
# (issue "Training": MAE no worse than 1.1x the benchmark's own MTPs: Ni 0.48 meV/atom and
# 0.014 eV/A, Mo 2.94 meV/atom and 0.090 eV/A; data/mlearn/README.md), and the training loss
# of the fit next to that of the benchmark's potential (same loss, `--max-iter=0`).
#
# Usage: bash benchmarks/fit_mlearn.sh [WORKDIR] [ELEMENTS]   (default: mlearn_fit "Mo Ni")
# Environment: MAX_ITER (1000), INIT (same), SEED (1, used with INIT=random), THREADS (2),
# SHARED (../shared beside the repo), STRESS_WEIGHT (per element, see below).
#
# Protocol: the benchmark's own, as far as it is public: its potentials come from maml
# (materialsvirtuallab/maml, mvl_models/pes/<El>/mtp.2020.01), whose MTPotential.train runs
# `mlp train` with --init-params=same, --max-iter=1000, --bfgs-conv-tol=1e-3 and weights
# 1 / 0.01 / 0.001 (MLIP-2's defaults but init-params); here with the level-20 template and
# the radial range of the benchmark's potentials.
# Stress weight for Ni: 0. The benchmark's Ni potential is not fitted to these stresses
# (maml's cfg writer, as published, divides the kbar values by 1.228445 and reorders them
# as if they were in VASP order, which for Ni swaps yz and xz; the potential's stress MAE is
# 0.99 GPa on the training set against 0.14 GPa for a fit with weight 0.001),
# so it was in effect trained on energies and forces; a stress term then only competes with
# the energy fit (measured: with weight 0.001 the Ni test energy MAE is 2.13 meV/atom).
# Measured (2-core machine, 2 threads):
#   Ni (--init-params=same, stopped by MLIP-2's convergence rule after 700 iterations):
#     test E MAE 0.451 meV/atom (0.94x), E RMSE 0.718; F MAE 0.0140 eV/A (1.00x), F RMSE
#     0.0269; training loss 0.0017254 (benchmark potential 0.0017053); 48 min.
#   Mo (1000 iterations): test E MAE 2.160 meV/atom (0.73x), E RMSE 3.238; F MAE 0.0878 eV/A
#     (0.98x), F RMSE 0.146; training loss 0.02985 (benchmark potential 0.03275); 33 min.
#   Earlier runs with random starts (--seed=1, 600 iterations): Ni E MAE 0.550 (1.15x),
#     F MAE 0.0143; Mo E MAE 2.711 (0.92x), F MAE 0.0875 (0.97x).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
shared=${SHARED:-$repo/../shared}
work=${1:-mlearn_fit}
elements=${2:-"Mo Ni"}
MAX_ITER=${MAX_ITER:-1000}
SEED=${SEED:-1}
THREADS=${THREADS:-2}
INIT=${INIT:-same}
mkdir -p "$work"
cd "$work"
for el in $elements; do
    case $el in
        Ni) mind=1.79954; maxd=4.0; sw=${STRESS_WEIGHT:-0} ;;   # the benchmark's radial range
        Mo) mind=1.8829; maxd=5.2; sw=${STRESS_WEIGHT:-0.001} ;;
        *) echo "unknown element $el" >&2; exit 2 ;;
    esac
    for s in train test; do
        mlp -q convert-cfg "$shared/data/mlearn/${el}_$s.extxyz" "${el}_$s.cfg" --type-map="$el" >/dev/null
    done
    mlp make-template --level=20 --species=1 --min-dist=$mind --max-dist=$maxd "${el}_l20.mtp" >/dev/null
    start=$SECONDS
    OMP_NUM_THREADS=$THREADS mlp train "${el}_l20.mtp" "${el}_train.cfg" --trained-pot-name="${el}_l20_trained.mtp" \
        --curr-pot-name="${el}_l20_current.mtp" --max-iter="$MAX_ITER" --init-params="$INIT" --seed="$SEED" --threads="$THREADS" \
        --stress-weight="$sw" \
        --valid-cfgs="${el}_test.cfg" --report-json="${el}_report.json" > "${el}_train.log"
    secs=$((SECONDS - start))
    # the benchmark's own potential on the same training loss, for comparison
    OMP_NUM_THREADS=$THREADS mlp train "$shared/data/mlearn/${el}_Zuo2020_maml_mtp.2020.01.mtp" \
        "${el}_train.cfg" --max-iter=0 --stress-weight="$sw" --threads="$THREADS" \
        --report-json="${el}_benchmark_report.json" > "${el}_benchmark.log"
    python3 - "$el" "$secs" <<'PY'
import json, sys
el, secs = sys.argv[1], int(sys.argv[2])
ref = {"Ni": (0.48, 0.014), "Mo": (2.94, 0.090)}[el]
rep = json.load(open(f"{el}_report.json"))
bench = json.load(open(f"{el}_benchmark_report.json"))
v = rep["errors"]["validation"]
e_mae, f_mae = v["energy_per_atom"]["mae"] * 1e3, v["forces"]["mae"]
print(f"{el}: test E MAE {e_mae:.3f} meV/atom ({e_mae / ref[0]:.2f}x benchmark), "
      f"E RMSE {v['energy_per_atom']['rmse'] * 1e3:.3f}; F MAE {f_mae:.4f} eV/A "
      f"({f_mae / ref[1]:.2f}x), F RMSE {v['forces']['rmse']:.4f}; training loss "
      f"{rep['loss']:.7g} (benchmark potential: {bench['loss']:.7g}); "
      f"{len([h for h in rep['loss_history'] if h['phase'] == 'train'])} BFGS iterations; {secs} s")
PY
done
