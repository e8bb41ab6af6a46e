#!/usr/bin/env bash
# Rerun Fashion-MNIST Table 1 rows whose defense cells issue 16 changed, one single-thread sweep over
# the given rows in order: scripts/rerun_cpu_table1_stale.sh NAME ATTACK... (run two, one per core,
# in opposite orders). ANP's cell id did not change with its code, so before each row its record is
# removed if it is still the committed one; the sweep then recomputes it with the current code. Cells
# whose id changed are simply missing and get run; finished cells are skipped, so a stopped row resumes.
# Once a row's sweep has finished, each new record is staged and the committed record it supersedes
# (same dataset, model, attack, defense and seed, another id) is removed: the aggregator refuses two
# configs of one cell.
set -euo pipefail
cd "$(dirname "$0")/.."
export BENCH_DATA_DIR="${BENCH_DATA_DIR:-/work/shared/data}" WANDB_MODE="${WANDB_MODE:-offline}"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
runs=results/cpu/runs/table1
name=$1
shift
git_retry() {  # the other core's sweep may hold the index lock for a moment
  for _ in 1 2 3 4 5; do git "$@" && return 0; sleep 2; done
  return 1
}
for attack in "$@"; do
  for record in "$runs"/fashion_mnist__resnet18__"${attack}"__anp__s0__*.json; do
    if [ -e "$record" ] && git ls-files --error-unmatch "$record" >/dev/null 2>&1 \
      && git diff --quiet -- "$record"; then
      git_retry rm -q --cached "$record" && rm "$record" && echo "removed pre-issue-16 record $record"
    fi
  done
  .venv/bin/python -m bench -m experiment=cpu_table1 attack="$attack" \
    "hydra.sweep.dir=multirun/cpu_table1_rerun/$name-$attack"
  for record in $(git ls-files --others --exclude-standard "$runs/fashion_mnist__resnet18__${attack}__*.json"); do
    for old in $(git ls-files "${record%__*}__*.json"); do
      [ "$old" != "$record" ] && git_retry rm -q "$old" && echo "removed superseded record $old"
    done
    git_retry add "$record"
  done
done
