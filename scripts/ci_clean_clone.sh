#!/usr/bin/env bash
# Run CI (.ci/run) the way it runs after a push: on a fresh clone of the committed HEAD, with its own venv.
# The clone (about 6 GB with torch in its venv) is deleted afterwards, also on failure or Ctrl-C: leftover
# clones once filled this machine's disk and made the real CI fail at `pip install`.
# Usage: bash scripts/ci_clean_clone.sh   (the log is printed; the exit code is CI's)
set -euo pipefail
repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q "$repo" "$work/main"
# The project's sibling directory (the paper's reference figures, the real CIFAR-10), where CI finds it
# too; linked, not copied.
if [[ -d "$repo/../shared" ]]; then ln -s "$(cd "$repo/../shared" && pwd)" "$work/shared"; fi
cd "$work/main"
start=$(date +%s)
CI=true bash .ci/run
echo "clean-clone CI passed in $(( ($(date +%s) - start) / 60 )) min at $(git rev-parse --short HEAD)"
