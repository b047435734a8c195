#!/usr/bin/env bash
# Debian packages the tests need: Chromium (never a downloaded browser build) and a CJK font
# so that Chinese pages render as text in screenshots; PostgreSQL's server binaries for the
# store and API tests against a real PostgreSQL (each test session starts a throwaway
# cluster, tests/postgres_server.py). Skipped when present.
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
fc-list 2>/dev/null | grep -qi "noto.*cjk" || missing+=(fonts-noto-cjk)
command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 \
    || missing+=(postgresql)
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${missing[*]}; install them with apt-get as root" >&2
    exit 1
fi
echo "==> apt-get install ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
