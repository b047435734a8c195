#!/usr/bin/env bash
# A local copy of the production topology, all on loopback: PostgreSQL (the store), a Chroma
# server (the vectors), a vLLM server (the page words) and the page API on several workers.
# Set-up included (venv, Debian's postgresql, vLLM in .venv-vllm, the shop set up in them
# once); everything is kept in ARTIFACTS/topology/<shop>/ between runs.
#
#   bash scripts/topology.sh                          # serve until Ctrl-C (prints the key)
#   bash scripts/topology.sh --shop electronics       # a packaged shop of real public data
#   bash scripts/topology.sh --bench --json           # bench api against it and the embedded default
#
# Other options: `composer topology --help`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/system_deps.sh postgresql
vllm=1 # install vLLM unless pages come from elsewhere
for arg in "$@"; do
    case "$arg" in
    --no-vllm | --vllm-url*) vllm=0 ;;
    esac
done
if [ "$vllm" = 1 ]; then
    bash scripts/bootstrap_vllm.sh
fi
exec .venv/bin/composer topology "$@"
