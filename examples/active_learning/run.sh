#!/usr/bin/env bash
# Active learning on the fly, scripted the way MLIP-2 users do it:
#
#   train -> calc-grade (active set) -> MD with extrapolation control (preselect)
#         -> select-add (maxvol) -> label with the oracle (EMT here, VASP on a cluster)
#         -> append to the training set -> retrain ...
#
# until an MD run of STEPS steps finishes without any structure graded above THRESHOLD.
# Bundled data: fcc Cu (sample_data/), labelled by ASE's EMT (mlp label --oracle=emt).
#
# Usage:   bash examples/active_learning/run.sh [WORKDIR]
# Settings (environment variables, defaults in brackets):
#   LEVEL [8]  N_INIT [4] initial training cells  STEPS [1000] MD steps per round
#   TEMP [800] K  TIMESTEP [2] fs  THRESHOLD [2]  BREAK [10]  MAX_ROUNDS [15]
#   TRAIN_ITER [300] BFGS iterations per (re)training  SEED [1]
#   ORACLE [emt] (any mlp label oracle, e.g. 'command:run_vasp.sh')
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
data="$here/../../sample_data"
work=${1:-al_run}
LEVEL=${LEVEL:-8}
N_INIT=${N_INIT:-4}
STEPS=${STEPS:-1000}
TEMP=${TEMP:-800}
TIMESTEP=${TIMESTEP:-2}
THRESHOLD=${THRESHOLD:-2}
BREAK=${BREAK:-10}
MAX_ROUNDS=${MAX_ROUNDS:-15}
TRAIN_ITER=${TRAIN_ITER:-300}
SEED=${SEED:-1}
ORACLE=${ORACLE:-emt}
# neighbourhood-based selection: one maxvol row per atom (MLIP-2's select:site-en-weight)
SEL="--nbh-weight=1 --energy-weight=0"

command -v mlp >/dev/null || { echo "run.sh: 'mlp' not found; install mlip-py first (see README)" >&2; exit 1; }
mkdir -p "$work"
cd "$work"
start=$SECONDS

# initial data: the first N_INIT labelled cells; a held-out test set for the error column
mlp -q subsample "$data/cu_train.cfg" all_train.cfg 1 >/dev/null
awk -v n="$N_INIT" '/^BEGIN_CFG/{k++} k<=n' all_train.cfg > train.cfg
cp "$data/cu_test.cfg" test.cfg
mlp make-template --level="$LEVEL" --species=1 --min-dist=2.0 --max-dist=5.0 untrained.mtp >/dev/null
mlp -q train untrained.mtp train.cfg --trained-pot-name=pot.mtp --max-iter="$TRAIN_ITER" --seed="$SEED" > train.log

n_cfgs() { [ -s "$1" ] && grep -c '^BEGIN_CFG' "$1" || echo 0; }
force_rmse() { mlp calc-errors pot.mtp test.cfg | awk '/^Forces:/{f=1} f && /RMS     absolute/{print $NF; exit}'; }

oracle_calls=0
md_steps=0
printf '%5s %9s %12s %10s %9s %15s %8s\n' round train_cfgs oracle_calls max_grade md_steps test_F_RMSE_eV/A time_s
for round in $(seq 1 "$MAX_ROUNDS"); do
    mlp -q calc-grade pot.mtp train.cfg train.cfg graded_train.cfg --als-filename=state.als $SEL >/dev/null
    rm -f preselected.cfg
    mlp -q md pot.mtp "$data/cu_start.cfg" --type-map=Cu --steps="$STEPS" --timestep="$TIMESTEP" \
        --temperature="$TEMP" --ensemble=langevin --seed=$((SEED + round)) \
        --als=state.als --threshold="$THRESHOLD" --threshold-break="$BREAK" \
        --save-selected=preselected.cfg --trajectory="md_$round.cfg" --every=10 > "md_$round.log"
    steps_done=$(awk '/^MD (completed|stopped)/{for(i=1;i<=NF;i++) if($i=="step"||$i=="completed:"){print $(i+1)+0; exit}}' "md_$round.log")
    max_grade=$(awk '/max grade/{for(i=1;i<=NF;i++) if($i=="grade"){g=$(i+1); sub(/;$/,"",g); print g; exit}}' "md_$round.log")
    md_steps=$((md_steps + ${steps_done:-0}))
    n_pre=$(n_cfgs preselected.cfg)
    printf '%5d %9d %12d %10s %9d %15s %8d\n' "$round" "$(n_cfgs train.cfg)" "$oracle_calls" \
        "$max_grade" "$md_steps" "$(force_rmse)" $((SECONDS - start))
    if [ "$n_pre" -eq 0 ]; then
        echo "converged: $STEPS MD steps at $TEMP K without extrapolation (max grade $max_grade <= $THRESHOLD)"
        echo "potential: $work/pot.mtp; training set: $work/train.cfg ($(n_cfgs train.cfg) configurations);" \
             "oracle calls: $oracle_calls; MD steps sampled: $md_steps"
        exit 0
    fi
    mlp -q select-add pot.mtp train.cfg preselected.cfg diff.cfg --als-filename=state.als \
        --selected-filename=selected.cfg $SEL >/dev/null
    n_new=$(n_cfgs diff.cfg)
    mlp -q label diff.cfg diff_labelled.cfg --oracle="$ORACLE" --type-map=Cu >/dev/null
    oracle_calls=$((oracle_calls + n_new))
    mlp -q convert-cfg diff_labelled.cfg train.cfg --append >/dev/null
    mlp -q train pot.mtp train.cfg --trained-pot-name=pot.mtp --max-iter="$TRAIN_ITER" > train.log
done
echo "not converged after $MAX_ROUNDS rounds (raise MAX_ROUNDS or TRAIN_ITER)" >&2
exit 1
