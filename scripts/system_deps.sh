#!/usr/bin/env bash
# Debian packages the tests need: Chromium (never a downloaded browser build) and a CJK font
# so that Chinese pages render as text in screenshots; PostgreSQL's server binaries for the
# store and API tests against a real PostgreSQL (each test session starts a throwaway
# cluster, composer/topology/postgres.py). Skipped when present. Arguments pick some of
# them (`system_deps.sh postgresql`); none: all.
set -euo pipefail
wanted=" ${*:-chromium fonts-noto-cjk postgresql} "
for name in $wanted; do
    case "$name" in
    chromium | fonts-noto-cjk | postgresql) ;;
    *)
        echo "system_deps.sh: unknown package '$name' (known: chromium fonts-noto-cjk postgresql)" >&2
        exit 2
        ;;
    esac
done
missing=()
if [[ "$wanted" == *" chromium "* ]] && [ ! -x /usr/bin/chromium ]; then
    missing+=(chromium)
fi
if [[ "$wanted" == *" fonts-noto-cjk "* ]] && ! fc-list 2>/dev/null | grep -qi "noto.*cjk"; then
    missing+=(fonts-noto-cjk)
fi
if [[ "$wanted" == *" postgresql "* ]] && ! command -v pg_ctl >/dev/null 2>&1 \
    && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    missing+=(postgresql)
fi
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
