#!/usr/bin/env bash
# The runs behind results/cpu/attacks.md (CPU setting, 2 cores, no GPU): every attack's victim with
# defense=none, so each record holds the clean model's ACC, the backdoored ACC, ASR, RA and training time.
# Resumable: victims and auxiliary models come from the model cache; a cell whose record exists is
# skipped (overwrite=true redoes it).
set -euo pipefail
py=${PY:-.venv/bin/python}
common=(experiment=cpu progress=false logger=none defense=none)
"$py" -m bench -m "${common[@]}" attack=none,badnets,blend,sig,instagram,reflection,adap_blend,wanet,trojan,cl
"$py" -m bench -m "${common[@]}" attack=badnets,reflection attack.variant=paper
"$py" scripts/plot_triggers.py experiment=cpu --variants --out results/cpu/triggers.png
# follow-ups in attacks.md: CL at the BNA paper's eps 16/255; WaNet (and its clean reference) at 20 epochs
"$py" -m bench "${common[@]}" attack=cl attack.eps=16
"$py" -m bench -m "${common[@]}" attack=none,wanet train.epochs=20
# CL at poison_rate 0.1 (the whole target class; the default before it became 0.08)
"$py" -m bench "${common[@]}" attack=cl attack.poison_rate=0.1
# Reflection (both variants) and Adap-Blend at 20 epochs too, like WaNet above (same 20-epoch clean model)
"$py" -m bench -m "${common[@]}" attack=reflection,adap_blend train.epochs=20
"$py" -m bench "${common[@]}" attack=reflection attack.variant=paper train.epochs=20
