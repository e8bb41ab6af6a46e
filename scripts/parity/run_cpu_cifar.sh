#!/usr/bin/env bash
# The runs behind results/parity: a defense's official code and ours on the cpu_cifar victims, one
# single-thread process per core (the official side in one, ours in the other), both under jemalloc
# (the reference's 2,000-image UNIT steps otherwise spend most of their time in page faults; the same
# allocator for both sides). Resumable: each side's result is kept under results/parity/{official,ours}.
# Usage: scripts/parity/run_cpu_cifar.sh DEFENSE CHECKOUT ATTACK[,ATTACK...] [SETTING...] [-- OVERRIDE...]
#   scripts/parity/run_cpu_cifar.sh unit /path/to/UNIT badnets,blend schedule=code
#   scripts/parity/run_cpu_cifar.sh anp /path/to/ANP_backdoor badnets -- budget.scale_of.anp=1.0
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
py=${PY:-$here/../../.venv/bin/python}
defense=$1 checkout=$2 attacks=$3
shift 3
settings=() overrides=()
while [[ $# -gt 0 && $1 != -- ]]; do settings+=("$1"); shift; done
[[ $# -gt 0 ]] && shift && overrides=("$@")
jemalloc=$(ls /usr/lib/*/libjemalloc.so.2 2>/dev/null | head -1 || true)
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 WANDB_MODE=${WANDB_MODE:-offline}
export LD_PRELOAD=${jemalloc} MALLOC_CONF=${MALLOC_CONF:-dirty_decay_ms:-1,muzzy_decay_ms:-1}
for side in official ours; do
  (
    for attack in ${attacks//,/ }; do
      "$py" "$here/run.py" --defense "$defense" --official "$checkout" --attack "$attack" --side "$side" \
        ${settings[@]:+--settings "${settings[@]}"} -- "${overrides[@]}"
    done
  ) &
done
wait
# the rows whose two sides now both exist
for attack in ${attacks//,/ }; do
  "$py" "$here/run.py" --defense "$defense" --official "$checkout" --attack "$attack" --side ours \
    ${settings[@]:+--settings "${settings[@]}"} -- "${overrides[@]}" >/dev/null
done
