#!/usr/bin/env bash
# Installs the seed app's virtualenv at <repo>/target/seed-app/venv (or $SEED_APP_VENV)
# from requirements.txt. A no-op when the venv exists and was built from the same
# requirements.txt and the same python3; otherwise the venv is rebuilt from scratch.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${SEED_APP_VENV:-$repo/target/seed-app/venv}"
req="$here/requirements.txt"
python="${SEED_APP_PYTHON:-python3}"

if ! command -v "$python" >/dev/null 2>&1; then
    echo "seed-app setup: $python not found" >&2
    exit 1
fi

# The slow-disk shim (SEED_APP_SYNC_DELAY_MS): built with the machine's C compiler beside the
# venv, rebuilt when its source changes.
shim="$(dirname "$venv")/libslowsync.so"
if [ ! -f "$shim" ] || [ "$here/slowsync.c" -nt "$shim" ]; then
    mkdir -p "$(dirname "$shim")"
    if command -v cc >/dev/null 2>&1; then
        cc -shared -fPIC -O2 -o "$shim.tmp" "$here/slowsync.c" -ldl && mv "$shim.tmp" "$shim"
    else
        echo "seed-app setup: no C compiler; SEED_APP_SYNC_DELAY_MS will not work" >&2
    fi
fi

stamp="$venv/.requirements.sha256"
want="$({ cat "$req"; "$python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"

if [ -x "$venv/bin/gunicorn" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi

mkdir -p "$(dirname "$venv")"
# One installer at a time (tests may start several runs at once).
exec 9>"$venv.lock"
flock 9
if [ -x "$venv/bin/gunicorn" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi

echo "seed-app setup: installing the virtualenv at $venv" >&2
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$req"
echo "$want" >"$stamp"
echo "seed-app setup: done" >&2
