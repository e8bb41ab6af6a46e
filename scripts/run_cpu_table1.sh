#!/usr/bin/env bash
# The runs behind results/cpu/table1.{md,csv,tex} and results/cpu/fig6.png: experiment=cpu_table1 (every
# attack and the clean model x no defense and every mitigation defense) on a 2-core machine without a GPU.
# Two sweeps run side by side on one core each (OMP_NUM_THREADS=1): on this machine two single-thread
# processes train 1.34x more images per second than one two-thread process, and every cell's wall-clock
# is then a one-core figure. Resumable: victims come from the model cache and a cell whose record exists is
# skipped, so rerunning this script finishes an interrupted grid.
set -euo pipefail
py=${PY:-.venv/bin/python}
stamp=$(date +%Y%m%d-%H%M%S)
half() {
  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 "$py" -m bench -m experiment=cpu_table1 "attack=$1" \
    "hydra.sweep.dir=multirun/cpu_table1/$stamp-$2"
}
half none,badnets,trojan,cl,sig,instagram,reflection,blend a &
half adap_blend,wanet,dynamic,ia,lira,issba,dfst b &
wait
"$py" -m bench.aggregate results/cpu/runs/table1 --out results/cpu
