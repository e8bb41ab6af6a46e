#!/usr/bin/env bash
# The runs behind results/cpu_cifar/table1.{md,csv,tex}, table2, fig5 and fig6: experiment=cpu_cifar_table1
# (every attack and the clean model x no defense and every mitigation defense on real CIFAR-10) on a
# 2-core machine without a GPU, one single-thread sweep per core (scripts/sweep_two_cores.sh), BadNets
# and Blend first (their rows are the ones the seed-1 rerun repeats). Resumable: rerunning this script
# finishes an interrupted grid. Nothing else should run beside it (see results/cpu_cifar/grid.md).
# Extra arguments are Hydra overrides passed to every cell (e.g. cache_dir=... results_dir=...).
set -euo pipefail
py=${PY:-.venv/bin/python}
attacks=badnets,blend,none,trojan,cl,sig,instagram,reflection,adap_blend,wanet,dynamic,ia,lira,issba,dfst
bash "$(dirname "$0")/sweep_two_cores.sh" cpu_cifar_table1 "$attacks" experiment=cpu_cifar_table1 "$@"
# with Fig. 5's VGG-11 panel once it has records (scripts/run_cpu_cifar_vgg.sh)
runs=(results/cpu_cifar/runs/table1)
compgen -G "results/cpu_cifar/runs/vgg11/*.json" >/dev/null && runs+=(results/cpu_cifar/runs/vgg11)
"$py" -m bench.report "${runs[@]}" --out results/cpu_cifar
