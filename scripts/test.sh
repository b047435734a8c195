#!/usr/bin/env bash
# The whole test suite from a fresh clone: set-up included. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/system_deps.sh
# vLLM in its own venv (idempotent, stamped): the vLLM tests start a real server.
# COMPOSER_TEST_SKIP_VLLM=1 skips the install and reports those tests as skipped.
if [ -z "${COMPOSER_TEST_SKIP_VLLM:-}" ] || [ "${COMPOSER_TEST_SKIP_VLLM}" = 0 ]; then
    bash scripts/bootstrap_vllm.sh
fi
# Data, indexes and the default model are fetched once into artifacts/cache; tests build
# their own shops in temp folders from there.
.venv/bin/composer setup
# Lint, format and type checks (a minute or two): code that fails them fails the suite, in
# CI too.
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
set +e
.venv/bin/python -m pytest "$@"
code=$?
set -e
if [ "$code" -eq 5 ]; then
    echo "pytest collected no tests: failing on purpose" >&2
    exit 1
fi
exit "$code"
