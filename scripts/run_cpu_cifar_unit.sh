#!/usr/bin/env bash
# The runs behind results/cpu_cifar/unit.md: UNIT (both alpha schedules; the paper's eps 2% and the
# reference code's 3%) and FT on the cpu_cifar BadNets and Blend victims and the clean model, one
# single-thread sweep per core (scripts/sweep_two_cores.sh), then why Blend resists clipping (share of
# activations above the initial bound per layer). Resumable: victims come from the model cache and a cell
# whose record exists is skipped.
# Extra arguments are Hydra overrides passed to every cell (e.g. cache_dir=... results_dir=...).
set -euo pipefail
py=${PY:-.venv/bin/python}
here=$(dirname "$0")
common=(experiment=cpu_cifar logger=none progress=false "$@")
bash "$here/sweep_two_cores.sh" cpu_cifar_unit badnets,blend,none "${common[@]}" defense=none,ft,unit
bash "$here/sweep_two_cores.sh" cpu_cifar_unit_code badnets,blend,none "${common[@]}" defense=unit \
  defense.schedule=code
bash "$here/sweep_two_cores.sh" cpu_cifar_unit_eps3 badnets,blend "${common[@]}" defense=unit defense.eps=0.03
for attack in badnets blend; do
  "$py" scripts/bound_exceedance.py experiment=cpu_cifar attack=$attack "$@"
done > results/cpu_cifar/unit_bound_exceedance.json
