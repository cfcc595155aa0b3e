#!/usr/bin/env bash
# The GPU check (scripts/gpu_check.py): a CUDA PyTorch already installed, no network, the package from src/.
#   scripts/gpu_check.sh --out gpu_check.json
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} exec "${PYTHON:-python3}" scripts/gpu_check.py "$@"
