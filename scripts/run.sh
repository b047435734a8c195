#!/usr/bin/env bash
# The main job from a fresh clone: set up (venv, install, data, model, indexes), then serve
# the page API on 127.0.0.1. Safe to run again; set-up skips finished work.
# COMPOSER_PORT picks the port, COMPOSER_WORKERS the server processes (2: the rules page
# rate at concurrency 16 is ~1.6x one process's on 2 cores, see README); any COMPOSER_*
# setting applies.
#
# --vllm (or COMPOSER_LLM_BACKEND=vllm without a COMPOSER_VLLM_URL of your own): install vLLM
# into .venv-vllm if needed, start a local vLLM server, serve pages from it, and stop it
# when the service stops. With COMPOSER_VLLM_URL set, that server is used as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
vllm=0
for arg in "$@"; do
    case "$arg" in
    --vllm) vllm=1 ;;
    *)
        echo "usage: scripts/run.sh [--vllm]" >&2
        exit 2
        ;;
    esac
done
if [ "${COMPOSER_LLM_BACKEND:-}" = vllm ] && [ -z "${COMPOSER_VLLM_URL:-}" ]; then
    vllm=1
fi
bash scripts/bootstrap.sh
if [ "$vllm" = 1 ]; then
    bash scripts/bootstrap_vllm.sh
fi
# Known shoppers' pages composed by the LLM ahead of their visit (README: Pages composed
# ahead); COMPOSER_AHEAD__ENABLED=false serves every LLM page on request. Their words are
# written by the 1.5B model, whose words a reader judged good about twice as often as the
# 135M model's (README: Who writes the words); set-up fetches it once (~1.1 GB, 7.1 GB on
# disk) and each server process holds it (~7 GB). COMPOSER_AHEAD__WORDS_MODEL= (empty)
# keeps the 135M model for them too.
export COMPOSER_AHEAD__ENABLED="${COMPOSER_AHEAD__ENABLED:-true}"
if [ "${COMPOSER_LLM_BACKEND:-transformers}" = transformers ]; then
    # In-process only: a vLLM server serves one model, the page model.
    export COMPOSER_AHEAD__WORDS_MODEL="${COMPOSER_AHEAD__WORDS_MODEL-qwen2.5-coder-1.5b-instruct}"
fi
.venv/bin/composer setup
serve=(.venv/bin/composer serve --host 127.0.0.1 --port "${COMPOSER_PORT:-8000}"
    --workers "${COMPOSER_WORKERS:-2}")
if [ "$vllm" = 1 ]; then
    serve+=(--vllm)
fi
exec "${serve[@]}"
