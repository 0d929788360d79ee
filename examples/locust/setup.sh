#!/usr/bin/env bash
# Installs locust (the load generator scripts/vs-locust.sh compares lockbench with) into a
# virtualenv at <repo>/target/locust/venv (or $LOCUST_VENV) from requirements.txt. A no-op when the venv exists and was built from the
# same requirements.txt and the same python3; otherwise it is rebuilt from scratch.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${LOCUST_VENV:-$repo/target/locust/venv}"
req="$here/requirements.txt"
python="${LOCUST_PYTHON:-python3}"

command -v "$python" >/dev/null 2>&1 || { echo "locust setup: $python not found" >&2; exit 1; }
stamp="$venv/.requirements.sha256"
want="$({ cat "$req"; "$python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"
if [ -x "$venv/bin/locust" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
mkdir -p "$(dirname "$venv")"
# One installer at a time (tests may start several apps at once).
exec 9>"$venv.lock"
flock 9
if [ -x "$venv/bin/locust" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir -r "$req"
echo "$want" > "$stamp"
