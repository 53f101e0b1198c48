#!/usr/bin/env bash
# Active-learning loop on the bundled sample data (train -> calc-grade -> MD with
# selection -> select-add -> label with EMT -> retrain).
set -euo pipefail
echo "mlip-py: the end-to-end active-learning loop is not yet available in this version." >&2
echo "Available now: mlp calc-efs, convert-cfg, make-template, mindist, ... (see 'mlp list')." >&2
exit 0
