#!/usr/bin/env bash
# Fig. 5's second CIFAR-10 panel (issue 19): VGG-11 at the cpu_cifar setting's width and recipe (the pair
# overrides the setting's architecture), the clean model and every attack with no defense and with UNIT
# at the grid's budget (15 victims, 30 cells), one single-thread sweep per core
# (scripts/sweep_two_cores.sh). Resumable: victims come from the model cache, recorded cells are skipped.
# Records: results/cpu_cifar/runs/vgg11/, which scripts/run_cpu_cifar_table1.sh aggregates with the grid
# (Table 1 stays ResNet-18's; Table 2 and Fig. 5 get both pairs).
# Extra arguments are Hydra overrides passed to every cell (e.g. cache_dir=... results_dir=...).
set -euo pipefail
attacks=badnets,blend,sig,wanet,instagram,reflection,adap_blend,cl,dynamic,issba,ia,dfst,lira,trojan,none
bash "$(dirname "$0")/sweep_two_cores.sh" cpu_cifar_vgg "$attacks" experiment=cpu_cifar_table1 \
  pair=cifar10_vgg11 defense=none,unit 'results_dir=${output_root}/results/cpu_cifar/runs/vgg11' "$@"
