#!/usr/bin/env bash
# The README's test command: installs what the tests need, then runs them all.
# - Chromium and chromedriver (Debian packages) for the admin page's browser test.
# - wrk (Debian package) for the HTTP benchmarks' baseline.
# - PostgreSQL for the PostgreSQL tests, started if it is installed and not running.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
# LOCKBENCH_CHROMIUM / LOCKBENCH_CHROMEDRIVER name another browser (a CI runner's Chrome).
[ -x "${LOCKBENCH_CHROMIUM:-/usr/bin/chromium}" ] || missing+=(chromium)
[ -x "${LOCKBENCH_CHROMEDRIVER:-/usr/bin/chromedriver}" ] || missing+=(chromium-driver)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} (Debian packages)"
    if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# PostgreSQL for the PostgreSQL tests: started when installed (scripts/postgres.sh); without
# it those tests say they were skipped.
if [ -z "${LOCKBENCH_TEST_PG:-}" ]; then
    if url="$(scripts/postgres.sh)"; then
        export LOCKBENCH_TEST_PG="$url"
    else
        echo "no PostgreSQL server here: the PostgreSQL tests will be skipped"
    fi
fi

cargo test --workspace --locked --no-fail-fast "$@"
