#!/usr/bin/env bash
# One sweep per core over the same cells: two single-thread processes (OMP_NUM_THREADS=1; on a 2-core
# machine they train 1.34x more images per second than one two-thread process, and every cell's wall-clock
# is then a one-core figure), the second taking the attacks in reverse order. A cell the other sweep is
# running (it holds the cell's claim) or has finished is skipped, so the two share the work until they meet.
# Resumable: victims come from the model cache and a cell whose record exists is skipped.
# Usage: scripts/sweep_two_cores.sh NAME ATTACK[,ATTACK...] OVERRIDE...   (Hydra logs: multirun/NAME/)
set -euo pipefail
py=${PY:-.venv/bin/python}
name=$1 attacks=$2
shift 2
stamp=$(date +%Y%m%d-%H%M%S)
reversed=$(tr , '\n' <<<"$attacks" | tac | paste -sd, -)
sweep() {
  local order=$1 list=$2
  shift 2
  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 "$py" -m bench -m "attack=$list" "$@" \
    "hydra.sweep.dir=multirun/$name/$stamp-$order"
}
sweep forward "$attacks" "$@" &
sweep reverse "$reversed" "$@" &
wait
