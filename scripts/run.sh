#!/usr/bin/env bash
# The main job from a fresh clone: set up (venv, install, data, model, indexes), then serve
# the page API on 127.0.0.1. Safe to run again; set-up skips finished work.
# COMPOSER_PORT picks the port; any COMPOSER_* setting applies (e.g. COMPOSER_LLM_BACKEND).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/composer setup
exec .venv/bin/composer serve --host 127.0.0.1 --port "${COMPOSER_PORT:-8000}"
