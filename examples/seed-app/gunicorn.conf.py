"""gunicorn settings of the seed app: one log file for gunicorn and the app, tables made once.

run.sh passes the worker class, worker and thread counts and the bind address on the
command line; this file adds logging and the on_starting hook.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import settings  # noqa: E402

os.makedirs(os.path.dirname(settings.LOG_PATH), exist_ok=True)
os.makedirs(os.path.dirname(settings.DB_PATH), exist_ok=True)

# gunicorn's error log and anything written to stdout/stderr go to the log file (appended).
errorlog = settings.LOG_PATH
capture_output = True
loglevel = "info"
accesslog = None

# No control socket: its default path is shared by every gunicorn of the user, so two
# instances (two test runs) would take it from each other.
control_socket_disable = True

# The app's loggers and gunicorn's error logger share one handler and one format.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "generic": {"format": settings.LOG_FORMAT, "class": "logging.Formatter"},
    },
    "handlers": {
        "file": {
            "class": "logging.FileHandler",
            "filename": settings.LOG_PATH,
            "mode": "a",
            "formatter": "generic",
        },
    },
    "root": {"level": "INFO", "handlers": ["file"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["file"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": False},
        # No SQL echo, no pool chatter.
        "sqlalchemy": {"level": "WARNING", "handlers": [], "propagate": True},
    },
}


def on_starting(server):
    """Creates the tables once, in the master, before any worker exists."""
    from app import init_db

    journal_mode = init_db()
    server.log.info(
        "seed app: mode=%s db=%s journal_mode=%s busy_timeout=%gs",
        settings.MODE,
        settings.DB_PATH,
        journal_mode,
        settings.BUSY_TIMEOUT,
    )
    if settings.MODE == "before" and journal_mode == "wal":
        server.log.warning(
            "the database file is already in WAL mode (set by an earlier fix-mode run); "
            "before mode does not change it: use a fresh SEED_APP_DB for the rollback journal"
        )
