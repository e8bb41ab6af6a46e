#!/usr/bin/env bash
# The runs behind results/cpu/seed_defenses.md (CPU setting, 2 cores, no GPU): TSBD and BNA next to UNIT
# and FT, plus the STRIP detector, against BadNets, Blend, SIG and WaNet. The badnets/blend x ft/unit cells
# are already in results/cpu/runs (scripts/run_cpu_unit.sh). Resumable: victims come from the model
# cache; a cell whose record exists is skipped (overwrite=true redoes it). STRIP runs last: testing every
# test image against 25 blends makes it the slowest cell here.
set -euo pipefail
py=${PY:-.venv/bin/python}
common=(experiment=cpu progress=false logger=none)
"$py" -m bench -m "${common[@]}" attack=badnets,blend,sig,wanet defense=tsbd,bna
"$py" -m bench -m "${common[@]}" attack=sig,wanet defense=ft,unit
"$py" -m bench -m "${common[@]}" attack=badnets,blend,sig,wanet defense=strip
