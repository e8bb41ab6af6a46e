#!/usr/bin/env bash
# The runs behind results/cpu/table1.{md,csv,tex} and results/cpu/fig6.png: experiment=cpu_table1 (every
# attack and the clean model x no defense and every mitigation defense) on a 2-core machine without a GPU,
# one single-thread sweep per core (scripts/sweep_two_cores.sh). Resumable: rerunning this script finishes
# an interrupted grid.
set -euo pipefail
py=${PY:-.venv/bin/python}
attacks=none,badnets,trojan,cl,sig,instagram,reflection,blend,adap_blend,wanet,dynamic,ia,lira,issba,dfst
bash "$(dirname "$0")/sweep_two_cores.sh" cpu_table1 "$attacks" experiment=cpu_table1
"$py" -m bench.report results/cpu/runs/table1 --out results/cpu
