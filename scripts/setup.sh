#!/usr/bin/env bash
# Set up argen in ./.venv: CPU torch first (a bare "torch" requirement would pull a multi-GB CUDA
# build), then the package, then the Fashion-MNIST Debian package when it is missing and we can.
# Idempotent: a stamp records what was installed; a second run only checks it.
#   scripts/setup.sh          runtime install
#   scripts/setup.sh --dev    runtime + test tools (pytest)
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
[[ "${1:-}" == "--dev" ]] && extras="[dev]"
venv=.venv
torch_version=2.13.0

if [[ ! -x $venv/bin/python ]]; then
    python3 -m venv "$venv"
fi
stamp="$venv/.argen-setup-stamp"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)${extras}"
if [[ ! -f $stamp ]] || ! grep -qxF "$want" "$stamp"; then
    if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
        # The CPU wheel; the index URL serves machines without a local copy.
        "$venv/bin/pip" install --quiet "torch==$torch_version" \
            --extra-index-url https://download.pytorch.org/whl/cpu
    fi
    "$venv/bin/pip" install --quiet -e ".${extras}"
    echo "$want" >> "$stamp"
fi

# Fashion-MNIST from Debian (optional: argen falls back to other datasets and says so).
if [[ ! -d /usr/share/datasets/fashion-mnist ]] && command -v apt-get >/dev/null; then
    sudo=""
    [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null && sudo="sudo -n"
    if [[ $(id -u) -eq 0 || -n $sudo ]]; then
        ($sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
            || { $sudo apt-get update -qq >/dev/null 2>&1 && $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; }) \
            || echo "setup: could not install dataset-fashion-mnist; set ARGEN_DATA_DIR to an MNIST-format folder" >&2
    else
        echo "setup: not root; install dataset-fashion-mnist or set ARGEN_DATA_DIR" >&2
    fi
fi
