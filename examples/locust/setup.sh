#!/usr/bin/env bash
# Installs locust (the load generator scripts/vs-locust.sh compares lockbench with) into a
# virtualenv at <repo>/target/locust/venv (or $LOCUST_VENV) from requirements.txt
# (examples/pinned-venv.sh: a no-op when it is up to date). $LOCUST_PYTHON names another
# python3.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
exec bash "$repo/examples/pinned-venv.sh" locust \
    "${LOCUST_VENV:-$repo/target/locust/venv}" "$here/requirements.txt" locust \
    "${LOCUST_PYTHON:-python3}"
