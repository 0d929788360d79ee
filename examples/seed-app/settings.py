"""Settings of the seed app, read from the environment (every variable is optional).

Shared by gunicorn.conf.py (log file, table creation) and app.py.
"""
import os

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
DEFAULT_DIR = os.path.join(REPO, "target", "seed-app")

MODE = os.environ.get("SEED_APP_MODE", "before").strip().lower() or "before"
if MODE not in ("before", "fix", "fix-immediate"):
    raise SystemExit(f"SEED_APP_MODE must be 'before', 'fix' or 'fix-immediate', not {MODE!r}")
FIX = MODE in ("fix", "fix-immediate")
# The fix, with every transaction begun as BEGIN IMMEDIATE: pysqlite's isolation_level is
# the word it puts after BEGIN when it opens a transaction (before the first INSERT, UPDATE
# or DELETE; it opens none for a SELECT).
IMMEDIATE = MODE == "fix-immediate"

DB_PATH = os.path.abspath(os.environ.get("SEED_APP_DB") or os.path.join(DEFAULT_DIR, "app.db"))
LOG_PATH = os.path.abspath(os.environ.get("SEED_APP_LOG") or os.path.join(DEFAULT_DIR, "app.log"))

# Where the processor copies each person's photos: <dirname(DB)>/output/batch-<id>/<email>/.
OUTPUT_DIR = os.path.join(os.path.dirname(DB_PATH), "output")


def _busy_timeout():
    raw = os.environ.get("SEED_APP_BUSY_TIMEOUT", "").strip()
    if not raw:
        # pysqlite's default is 5 s; the write-up's fix raised it to 30 s.
        return 30.0 if FIX else 5.0
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"SEED_APP_BUSY_TIMEOUT must be a number of seconds, not {raw!r}")
    if value < 0:
        raise SystemExit("SEED_APP_BUSY_TIMEOUT must not be negative")
    return value


# Seconds a connection waits on a locked database before "database is locked".
BUSY_TIMEOUT = _busy_timeout()
BUSY_TIMEOUT_OVERRIDDEN = bool(os.environ.get("SEED_APP_BUSY_TIMEOUT", "").strip())

LOG_FORMAT = "%(asctime)s %(levelname)s [pid %(process)d] [%(threadName)s] %(name)s: %(message)s"
