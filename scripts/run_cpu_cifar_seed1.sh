#!/usr/bin/env bash
# Seed noise for results/cpu_cifar (issue 19): the BadNets and Blend rows of experiment=cpu_cifar_table1
# again with seed=1 (2 victims, each trained once, + 22 cells), one single-thread sweep per core
# (scripts/sweep_two_cores.sh: one sweep starts with BadNets, the other with Blend). Resumable. The
# aggregator averages seeds; `--where seed=1` shows the second seed alone.
# Extra arguments are Hydra overrides passed to every cell (e.g. cache_dir=... results_dir=...).
set -euo pipefail
bash "$(dirname "$0")/sweep_two_cores.sh" cpu_cifar_seed1 badnets,blend experiment=cpu_cifar_table1 seed=1 "$@"
