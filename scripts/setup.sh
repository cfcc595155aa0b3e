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
        # The CPU wheel (these machines hold it locally); elsewhere set
        # ARGEN_TORCH_INDEX=https://download.pytorch.org/whl/cpu (or a CUDA index on a GPU machine).
        "$venv/bin/pip" install --quiet "torch==$torch_version" \
            ${ARGEN_TORCH_INDEX:+--index-url "$ARGEN_TORCH_INDEX"}
    fi
    "$venv/bin/pip" install --quiet -e ".${extras}"
    echo "$want" >> "$stamp"
fi

# Debian packages: Fashion-MNIST (argen's real data), and for --dev the headless Chromium that the
# report test opens pages in. Optional: without them argen says what is missing.
packages=()
[[ -d /usr/share/datasets/fashion-mnist ]] || packages+=(dataset-fashion-mnist)
[[ -n $extras && ! -x /usr/bin/chromium ]] && packages+=(chromium)
if (( ${#packages[@]} )) && command -v apt-get >/dev/null; then
    sudo=""
    [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null && sudo="sudo -n"
    if [[ $(id -u) -eq 0 || -n $sudo ]]; then
        ($sudo apt-get install -y -qq "${packages[@]}" >/dev/null 2>&1 \
            || { $sudo apt-get update -qq >/dev/null 2>&1 && $sudo apt-get install -y -qq "${packages[@]}" >/dev/null 2>&1; }) \
            || echo "setup: could not install ${packages[*]}; for data set ARGEN_DATA_DIR to an MNIST-format folder" >&2
    else
        echo "setup: not root; install ${packages[*]} (or set ARGEN_DATA_DIR for the data)" >&2
    fi
fi
