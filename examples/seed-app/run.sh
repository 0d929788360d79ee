#!/usr/bin/env bash
# Starts the seed app under gunicorn in the foreground (see README.md for the variables).
# Usage, from any directory: examples/seed-app/run.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${SEED_APP_VENV:-$repo/target/seed-app/venv}"

bash "$here/setup.sh"

# Relative paths are taken from the caller's directory (gunicorn runs in the app's folder).
abs() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac; }
export SEED_APP_DB="$(abs "${SEED_APP_DB:-$repo/target/seed-app/app.db}")"
export SEED_APP_LOG="$(abs "${SEED_APP_LOG:-$repo/target/seed-app/app.log}")"
mkdir -p "$(dirname "$SEED_APP_DB")" "$(dirname "$SEED_APP_LOG")"
# No __pycache__ folders in the source tree.
export PYTHONDONTWRITEBYTECODE=1

# A slow disk: every fsync()/fdatasync() of the app sleeps this long first (built by setup.sh).
if [ "${SEED_APP_SYNC_DELAY_MS:-0}" != "0" ]; then
    shim="$(dirname "$venv")/libslowsync.so"
    if [ ! -f "$shim" ]; then
        echo "seed-app: SEED_APP_SYNC_DELAY_MS is set but $shim was not built (no C compiler?)" >&2
        exit 1
    fi
    export LD_PRELOAD="$shim${LD_PRELOAD:+:$LD_PRELOAD}"
fi

exec "$venv/bin/gunicorn" \
    --config "$here/gunicorn.conf.py" \
    --chdir "$here" \
    --worker-class gthread \
    --workers "${SEED_APP_WORKERS:-4}" \
    --threads "${SEED_APP_THREADS:-4}" \
    --bind "127.0.0.1:${SEED_APP_PORT:-5000}" \
    app:app
