#!/usr/bin/env bash
# The runs behind results/cpu/defenses.md (CPU setting, 2 cores, no GPU): the six baseline defenses of
# Table 1 against BadNets and Blend. budget.finetune_epochs=10 and budget.scale=0.25 come from
# conf/experiment/cpu.yaml. Resumable: victims come from the model cache; a cell whose record exists is
# skipped (overwrite=true redoes it).
set -euo pipefail
py=${PY:-.venv/bin/python}
"$py" -m bench -m experiment=cpu progress=false logger=none attack=badnets,blend defense=fp,nad,anp,nc,ibau,seam
