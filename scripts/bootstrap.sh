#!/usr/bin/env bash
# Create .venv and install the project with its dev extras. Idempotent: the install is
# skipped when pyproject.toml has not changed since the last successful one.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi

stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
    echo "==> installing the project into .venv (first run takes a few minutes)"
    # pip warns once per package missing from a local mirror; keep the log readable
    # while still failing on pip's own exit status.
    quiet_pip() { .venv/bin/python -m pip "$@" 2>&1 | { grep -v '^WARNING: Location' || true; }; return "${PIPESTATUS[0]}"; }
    quiet_pip install --quiet -e ".[dev]"
    .venv/bin/python -c "import composer, retrieval" # fail here, not later, if the install broke
    rm -f .venv/.installed-*
    touch "$stamp"
fi
