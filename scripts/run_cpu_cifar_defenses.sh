#!/usr/bin/env bash
# The runs behind results/cpu_cifar/defenses.md: the baselines the fidelity issue changed (ANP, SEAM, NAD,
# FP, NC; FT and UNIT are in unit.md) on the cpu_cifar BadNets and Blend victims, one single-thread sweep
# per core (scripts/sweep_two_cores.sh). Resumable: victims come from the model cache and a cell whose
# record exists is skipped.
# Extra arguments are Hydra overrides passed to every cell (e.g. cache_dir=... results_dir=...).
set -euo pipefail
bash "$(dirname "$0")/sweep_two_cores.sh" cpu_cifar_defenses badnets,blend \
  experiment=cpu_cifar logger=none progress=false defense=anp,seam,nad,fp,nc "$@"
