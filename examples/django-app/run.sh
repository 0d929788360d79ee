#!/usr/bin/env bash
# Starts the Django example under gunicorn (2 workers x 4 threads) in the foreground, after
# migrating its database (created when missing).
# Usage, from any directory: examples/django-app/run.sh
# Environment: DJANGO_APP_PORT (default 8000), DJANGO_DB, DJANGO_LOG and the app's settings
# (APP_TX_MODE, APP_JOURNAL_MODE, APP_TIMEOUT; see lockdemo/settings.py).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${DJANGO_APP_VENV:-$repo/target/django-app/venv}"

bash "$here/setup.sh"

abs() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac; }
export DJANGO_DB="$(abs "${DJANGO_DB:-$repo/target/django-app/app.db}")"
export DJANGO_LOG="$(abs "${DJANGO_LOG:-${DJANGO_DB%.db}.log}")"
mkdir -p "$(dirname "$DJANGO_DB")" "$(dirname "$DJANGO_LOG")"
export PYTHONDONTWRITEBYTECODE=1

cd "$here"
"$venv/bin/python" manage.py migrate --noinput >/dev/null
exec "$venv/bin/gunicorn" lockdemo.wsgi:application \
    --workers 2 --threads 4 --worker-class gthread \
    --bind "127.0.0.1:${DJANGO_APP_PORT:-8000}" \
    --access-logfile - --error-logfile -
