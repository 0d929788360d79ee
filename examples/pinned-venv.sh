#!/usr/bin/env bash
# Installs a virtualenv from a pinned requirements file, shared by the examples' setup
# scripts. A no-op when the venv exists and was built from the same requirements file and
# the same python; otherwise it is rebuilt from scratch. One installer at a time.
# Usage: examples/pinned-venv.sh NAME VENV REQUIREMENTS BIN [PYTHON]
#   NAME: for messages; BIN: a program the venv must have (bin/BIN); PYTHON: default python3.
set -euo pipefail
name="$1" venv="$2" req="$3" bin="$4" python="${5:-python3}"

command -v "$python" >/dev/null 2>&1 || { echo "$name setup: $python not found" >&2; exit 1; }
stamp="$venv/.requirements.sha256"
want="$({ cat "$req"; "$python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"
ready() { [ -x "$venv/bin/$bin" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; }
ready && exit 0
mkdir -p "$(dirname "$venv")"
# One installer at a time (tests may start several apps at once).
exec 9>"$venv.lock"
flock 9
ready && exit 0
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir -r "$req"
echo "$want" > "$stamp"
