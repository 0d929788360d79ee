"""Settings: Django's defaults for SQLite, with the knobs a team would turn taken from the
environment, so that lockbench can start the app as it is and with a fix applied:

- DJANGO_DB: the SQLite file (default: target/django-app/app.db in the repository).
- DJANGO_LOG: the error log, where Django writes "Internal Server Error: /path/" and the
  traceback of every failed request (default: beside the database).
- APP_TX_MODE: DEFERRED (Django's default: a plain BEGIN inside atomic()), IMMEDIATE or
  EXCLUSIVE; Django 5.1's OPTIONS["transaction_mode"].
- APP_JOURNAL_MODE: unset (SQLite's default, the rollback journal) or a journal mode such as
  WAL, set on every new connection through OPTIONS["init_command"].
- APP_TIMEOUT: seconds a connection waits on a lock (Python's sqlite3 "timeout", default 5).

The database alias "immediate" is the same file with transaction_mode IMMEDIATE, for the view
that opts into BEGIN IMMEDIATE on its own.
"""
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
REPO = BASE_DIR.parent.parent
DB = Path(os.environ.get("DJANGO_DB", REPO / "target" / "django-app" / "app.db"))
LOG = Path(os.environ.get("DJANGO_LOG", DB.with_suffix(".log")))

SECRET_KEY = "lockbench-example-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["signups"]
MIDDLEWARE = []
ROOT_URLCONF = "lockdemo.urls"
WSGI_APPLICATION = "lockdemo.wsgi.application"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


def _options(tx_mode):
    options = {"timeout": float(os.environ.get("APP_TIMEOUT", "5"))}
    if tx_mode:
        options["transaction_mode"] = tx_mode
    journal = os.environ.get("APP_JOURNAL_MODE", "").strip()
    if journal:
        options["init_command"] = f"PRAGMA journal_mode={journal}"
    return options


DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": DB,
        "OPTIONS": _options(os.environ.get("APP_TX_MODE", "").strip().upper() or None),
    },
    "immediate": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": DB,
        "OPTIONS": _options("IMMEDIATE"),
        "TEST": {"MIRROR": "default"},
    },
}

# Failed requests are logged the way Django logs them by default ("Internal Server Error:
# /path/" and the traceback), to a file lockbench can follow.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {
        "errors": {"class": "logging.FileHandler", "filename": str(LOG), "level": "ERROR"},
    },
    "loggers": {
        "django.request": {"handlers": ["errors"], "level": "ERROR", "propagate": False},
    },
}
