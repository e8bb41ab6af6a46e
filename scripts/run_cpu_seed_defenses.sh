#!/usr/bin/env bash
# The runs behind results/cpu/seed_defenses.md (CPU setting, 2 cores, no GPU): TSBD and BNA next to UNIT
# and FT, plus the STRIP detector, against BadNets, Blend, SIG and WaNet. The badnets/blend x ft/unit cells
# are already in results/cpu/runs (scripts/run_cpu_unit.sh). Resumable: victims come from the model
# cache; each cell rewrites its own record.
set -euo pipefail
py=${PY:-.venv/bin/python}
common=(experiment=cpu progress=false logger=none)
"$py" -m bench -m "${common[@]}" attack=badnets,blend,sig,wanet defense=tsbd,bna,strip
"$py" -m bench -m "${common[@]}" attack=sig,wanet defense=ft,unit
