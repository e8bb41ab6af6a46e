#!/usr/bin/env bash
# Rerun Fashion-MNIST Table 1 rows whose defense cells issue 16 changed, one single-thread sweep over
# the given rows in order: scripts/rerun_cpu_table1_stale.sh NAME ATTACK... (run two, one per core,
# with different rows). Cells whose id changed are simply missing and get run. ANP's id did not change
# with its code, so before each row its record is deleted when the commit it was made at (`git_sha`)
# predates the last change to defenses/anp.py; the sweep then recomputes it. Finished cells are skipped,
# so a stopped row resumes and a finished one costs nothing. After a row's sweep, each new record is
# staged and the committed record it supersedes (same dataset, model, attack, defense and seed, another
# id) is removed: the aggregator refuses two configs of one cell.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PY:-.venv/bin/python}
if [[ -z "${BENCH_DATA_DIR:-}" && -d ../shared/data ]]; then  # as .ci/run and the Makefile do
  BENCH_DATA_DIR=$(cd ../shared/data && pwd)
  export BENCH_DATA_DIR
fi
export WANDB_MODE="${WANDB_MODE:-offline}" OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
runs=results/cpu/runs/table1
anp_code=$(git log -1 --format=%H -- bench/defenses/anp.py)
name=$1
shift
git_retry() {  # the other core's sweep may hold the index lock for a moment
  for _ in 1 2 3 4 5; do git "$@" && return 0; sleep 2; done
  return 1
}
made_at() { "$py" -c 'import json, sys; print(json.load(open(sys.argv[1]))["git_sha"])' "$1"; }
for attack in "$@"; do
  for record in "$runs"/fashion_mnist__resnet18__"${attack}"__anp__s0__*.json; do
    if [ -e "$record" ] && ! git merge-base --is-ancestor "$anp_code" "$(made_at "$record")" 2>/dev/null; then
      git_retry rm -q --cached --ignore-unmatch "$record" && rm "$record" && echo "removed pre-issue-16 record $record"
    fi
  done
  "$py" -m bench -m experiment=cpu_table1 attack="$attack" "hydra.sweep.dir=multirun/cpu_table1_rerun/$name-$attack"
  for record in $(git ls-files --others --exclude-standard "$runs/fashion_mnist__resnet18__${attack}__*.json"); do
    for old in $(git ls-files "${record%__*}__*.json"); do  # tracked, so never the new record itself
      git_retry rm -q "$old" && echo "removed superseded record $old"
    done
    git_retry add "$record"
  done
done
