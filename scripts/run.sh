#!/usr/bin/env bash
# The main job from a fresh clone: set up (venv, install, data, models, indexes), then show
# ranked candidates for a sample shopper. Safe to run again; set-up skips finished work.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/composer setup
.venv/bin/composer retrieve --user "${COMPOSER_SAMPLE_SHOPPER:-196}" --k 12
