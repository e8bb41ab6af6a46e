#!/usr/bin/env bash
# The recipe study behind results/cpu_cifar/recipe.md: the clean model (attack=none, defense=none) of the
# cpu_cifar setting under a few training recipes, one after another with nothing else on the machine, each
# a 2-thread process (the setting's target: a victim in <= 20 minutes on 2 cores). Records (clean ACC in
# acc_before, training seconds in attack_train_s, images/s beside them) go to results/cpu_cifar/recipes/.
# Resumable: a recipe whose record exists is skipped. Usage: scripts/run_cifar_recipes.sh [NAME ...]
set -euo pipefail
py=${PY:-.venv/bin/python}
declare -A recipes=(
  [A_cpu_fp32]="precision=fp32 train.epochs=10 train.lr=0.05 train.label_smoothing=0.0"
  [B_cpu_bf16]="precision=bf16 train.epochs=10 train.lr=0.05 train.label_smoothing=0.0"
  [C_e20_ls]="precision=bf16 train.epochs=20 train.lr=0.1 train.label_smoothing=0.1"
  [D_e30_ls]="precision=bf16 train.epochs=30 train.lr=0.1 train.label_smoothing=0.1"
)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(C_e20_ls B_cpu_bf16 D_e30_ls A_cpu_fp32)
for name in "${names[@]}"; do
  # shellcheck disable=SC2086
  "$py" -m bench experiment=cpu_cifar attack=none defense=none logger=none progress=false \
    results_dir=results/cpu_cifar/recipes ${recipes[$name]} "hydra.run.dir=outputs/cifar_recipes/$name"
done
