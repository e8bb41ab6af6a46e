#!/usr/bin/env bash
# The runs behind results/cpu_cifar/attacks.md: the 15 victims of the cpu_cifar setting (the clean model
# and the 14 attacks) with defense=none, one single-thread sweep per core (scripts/sweep_two_cores.sh),
# BadNets and Blend first (the defenses' measurements need them), the clean model first from the other end
# (Trojan's trigger is optimised on it). Resumable: models come from the cache, recorded cells are skipped.
# Extra arguments are Hydra overrides passed to every cell (e.g. cache_dir=... results_dir=...).
set -euo pipefail
attacks=badnets,blend,sig,wanet,instagram,reflection,adap_blend,cl,dynamic,issba,ia,dfst,lira,trojan,none
bash "$(dirname "$0")/sweep_two_cores.sh" cpu_cifar_victims "$attacks" \
  experiment=cpu_cifar defense=none logger=none progress=false "$@"
