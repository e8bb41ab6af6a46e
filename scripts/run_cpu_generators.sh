#!/usr/bin/env bash
# The runs behind the generator-attack rows of results/cpu/attacks.md (CPU setting, 2 cores, no GPU):
# each victim with defense=none. Resumable: victims and auxiliary networks (IA's mask network, LIRA's T,
# ISSBA's encoder/decoder, DFST's CycleGAN) come from the model cache; a cell whose record exists is
# skipped (overwrite=true redoes it).
# A failing attack (e.g. ISSBA below its bit-accuracy floor) does not stop the others.
set -uo pipefail
py=${PY:-.venv/bin/python}
common=(experiment=cpu progress=false logger=none defense=none)
for attack in dynamic lira ia issba dfst; do
  "$py" -m bench "${common[@]}" attack=$attack || echo "attack=$attack failed" >&2
done
