#!/usr/bin/env bash
# Installs the Django example's virtualenv at <repo>/target/django-app/venv (or
# $DJANGO_APP_VENV) from requirements.txt (examples/pinned-venv.sh: a no-op when it is up to
# date). $DJANGO_APP_PYTHON names another python3.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
exec bash "$repo/examples/pinned-venv.sh" django-app \
    "${DJANGO_APP_VENV:-$repo/target/django-app/venv}" "$here/requirements.txt" gunicorn \
    "${DJANGO_APP_PYTHON:-python3}"
