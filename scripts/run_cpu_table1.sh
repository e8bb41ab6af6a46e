#!/usr/bin/env bash
# The runs behind results/cpu/table1.{md,csv,tex} and results/cpu/fig6.png: experiment=cpu_table1 (every
# attack and the clean model x no defense and every mitigation defense) on a 2-core machine without a GPU.
# Two sweeps over the same cells run side by side on one core each (OMP_NUM_THREADS=1): on this machine two
# single-thread processes train 1.34x more images per second than one two-thread process, and every cell's
# wall-clock is then a one-core figure. The second sweep takes the attacks in reverse order; a cell the
# other sweep is running (it holds the cell's claim) or has finished is skipped, so the two share the work
# until they meet. Resumable: victims come from the model cache and a cell whose record exists is skipped,
# so rerunning this script finishes an interrupted grid.
set -euo pipefail
py=${PY:-.venv/bin/python}
stamp=$(date +%Y%m%d-%H%M%S)
attacks=(none badnets trojan cl sig instagram reflection blend adap_blend wanet dynamic ia lira issba dfst)
sweep() {
  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 "$py" -m bench -m experiment=cpu_table1 "attack=$1" \
    "hydra.sweep.dir=multirun/cpu_table1/$stamp-$2"
}
join() { local IFS=,; echo "$*"; }
reversed=()
for ((i = ${#attacks[@]} - 1; i >= 0; i--)); do reversed+=("${attacks[i]}"); done
sweep "$(join "${attacks[@]}")" forward &
sweep "$(join "${reversed[@]}")" reverse &
wait
"$py" -m bench.aggregate results/cpu/runs/table1 --out results/cpu
