#!/usr/bin/env bash
# Create the virtual environment and install the pinned dependencies (torch 2.14.1, torchvision 0.29.1,
# hydra-core 1.3.8, ...) plus this project in editable mode. Usage: scripts/setup.sh [VENV_DIR]
set -euo pipefail
venv=${1:-.venv}
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet -e '.[dev]'
