"""The incident's app: kiosk registrations, an admin dashboard and a photo processor.

Plain Flask + Flask-SQLAlchemy on SQLite, served by gunicorn (gthread workers). The
processor (photo_processor.py) runs in a background thread of the worker that received
the batch, committing at every step.

SEED_APP_MODE=before is the app as it failed: SQLite's rollback journal, pysqlite's
default 5 s timeout, no retries. SEED_APP_MODE=fix adds the write-up's fix: WAL set by a
self-removing before_request hook, a 30 s timeout, a pool of 10 with pre-ping, @db_retry
on the three read endpoints and db_commit_with_retry() in the processor.
SEED_APP_MODE=fix-immediate is the fix with pysqlite beginning every transaction it opens
as BEGIN IMMEDIATE.
"""
import functools
import logging
import os
import threading
import time
from datetime import datetime, timezone

from flask import Flask, jsonify, render_template_string, request
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.exc import IntegrityError, OperationalError
from werkzeug.exceptions import HTTPException, InternalServerError

import settings

app = Flask(__name__)
logger = app.logger

database_uri = f"sqlite:///{settings.DB_PATH}"
app.config["SQLALCHEMY_DATABASE_URI"] = database_uri
app.config["SQLALCHEMY_TRACK_MODIFICATIONS"] = False

if settings.FIX:
    # The write-up's engine options.
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {
        "pool_size": 10,
        "pool_recycle": 3600,
        "pool_pre_ping": True,
        "connect_args": {"timeout": settings.BUSY_TIMEOUT, "check_same_thread": False},
    }
    if settings.IMMEDIATE:
        app.config["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"]["isolation_level"] = "IMMEDIATE"
elif settings.BUSY_TIMEOUT_OVERRIDDEN:
    # Test knob only: the incident ran with pysqlite's default timeout (5 s).
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {
        "connect_args": {"timeout": settings.BUSY_TIMEOUT},
    }

db = SQLAlchemy(app)


def utcnow():
    return datetime.now(timezone.utc).replace(tzinfo=None)


# ---------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------


class Registration(db.Model):
    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(200), nullable=False)
    email = db.Column(db.String(254), unique=True, nullable=False)
    qr_payload = db.Column(db.String(300), nullable=False)
    created_at = db.Column(db.DateTime, default=utcnow)


class Batch(db.Model):
    id = db.Column(db.Integer, primary_key=True)
    source_dir = db.Column(db.String(1000), nullable=False)
    status = db.Column(db.String(20), nullable=False, default="running")
    total = db.Column(db.Integer, nullable=False, default=0)
    processed = db.Column(db.Integer, nullable=False, default=0)
    failed = db.Column(db.Integer, nullable=False, default=0)
    persons = db.Column(db.Integer, nullable=False, default=0)
    uploaded = db.Column(db.Integer, nullable=False, default=0)
    created_at = db.Column(db.DateTime, default=utcnow)
    finished_at = db.Column(db.DateTime)


class Person(db.Model):
    id = db.Column(db.Integer, primary_key=True)
    batch_id = db.Column(db.Integer, db.ForeignKey("batch.id"), nullable=False)
    email = db.Column(db.String(254), nullable=False)
    qr_payload = db.Column(db.String(300), nullable=False)
    registration_id = db.Column(db.Integer, db.ForeignKey("registration.id"))
    folder = db.Column(db.String(1000))
    photo_count = db.Column(db.Integer, nullable=False, default=0)
    metadata_file = db.Column(db.String(1000))
    upload_state = db.Column(db.String(20), nullable=False, default="pending")
    created_at = db.Column(db.DateTime, default=utcnow)


class Photo(db.Model):
    id = db.Column(db.Integer, primary_key=True)
    batch_id = db.Column(db.Integer, db.ForeignKey("batch.id"), nullable=False)
    file_name = db.Column(db.String(255), nullable=False)
    content_hash = db.Column(db.String(64))
    # 'qr' | 'assigned' | 'unassigned' | 'failed'
    status = db.Column(db.String(20), nullable=False)
    person_id = db.Column(db.Integer, db.ForeignKey("person.id"))
    error = db.Column(db.String(500))
    created_at = db.Column(db.DateTime, default=utcnow)


class ProcessingLog(db.Model):
    id = db.Column(db.Integer, primary_key=True)
    batch_id = db.Column(db.Integer, db.ForeignKey("batch.id"), nullable=False)
    action = db.Column(db.String(50), nullable=False)
    file_name = db.Column(db.String(255))
    detail = db.Column(db.String(500))
    created_at = db.Column(db.DateTime, default=utcnow)


def init_db():
    """Creates the tables; gunicorn's on_starting hook calls it once, before any worker."""
    with app.app_context():
        db.create_all()
        with db.engine.connect() as conn:
            mode = conn.execute(db.text("PRAGMA journal_mode")).scalar()
        db.engine.dispose()  # no SQLite connection crosses the fork into the workers
    return mode


def first_line(exc):
    """The error in one line, without SQLAlchemy's [SQL: ...] and background lines.

    For a driver error it is "(sqlite3.OperationalError) database is locked", also when
    SQLAlchemy wraps it in a note (an autoflush puts one on the first line).
    """
    orig = getattr(exc, "orig", None)
    if orig is not None:
        text = " ".join(str(orig).split())
        return f"({type(orig).__module__}.{type(orig).__name__}) {text}"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def is_lock_error(exc):
    return "locked" in first_line(exc)


# ---------------------------------------------------------------------------------------
# The write-up's fix, part 1: WAL mode, set once by a before_request hook that removes
# itself (per worker process).
# ---------------------------------------------------------------------------------------

if settings.FIX:
    _busy_timeout_ms = int(settings.BUSY_TIMEOUT * 1000)  # 30000 unless SEED_APP_BUSY_TIMEOUT

    @app.before_request
    def _db_enable_wal():
        if database_uri.startswith('sqlite:'):
            try:
                with db.engine.connect() as conn:
                    conn.execute(db.text('PRAGMA journal_mode=WAL'))
                    conn.execute(db.text(f'PRAGMA busy_timeout={_busy_timeout_ms}'))  # 30 second timeout
                    conn.commit()
            except Exception as e:
                app.logger.warning(f"Could not enable WAL mode: {e}")
        app.before_request_funcs[None].remove(_db_enable_wal)


# ---------------------------------------------------------------------------------------
# The write-up's fix, part 3: retries on the read endpoints.
# ---------------------------------------------------------------------------------------


def db_retry(max_attempts=3, delay=0.3):
    """Retries the view on "database is locked", with exponential backoff."""

    def decorator(f):
        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            for attempt in range(max_attempts):
                try:
                    return f(*args, **kwargs)
                except OperationalError as e:
                    if "database is locked" in str(e) and attempt < max_attempts - 1:
                        wait = delay * (2 ** attempt)
                        logger.warning(
                            f"Database locked, retrying {f.__name__} in {wait:g}s "
                            f"(attempt {attempt + 1}/{max_attempts}): {first_line(e)}"
                        )
                        db.session.rollback()
                        time.sleep(wait)
                    else:
                        raise

        return wrapper

    return decorator


def fix_only(decorator):
    """Applies the decorator in fix mode only (before mode is the app as it failed)."""
    if settings.FIX:
        return decorator
    return lambda f: f


# ---------------------------------------------------------------------------------------
# Errors: one log line each, then a plain 500 as Flask gives.
# ---------------------------------------------------------------------------------------


def _internal_error():
    return InternalServerError().get_response()


@app.errorhandler(OperationalError)
def handle_operational_error(e):
    try:
        db.session.rollback()
    except Exception:
        pass
    kind = "lock error" if is_lock_error(e) else "database error"
    logger.error(f"{kind} on {request.method} {request.path}: {first_line(e)}")
    return _internal_error()


@app.errorhandler(Exception)
def handle_exception(e):
    if isinstance(e, HTTPException):
        return e
    try:
        db.session.rollback()
    except Exception:
        pass
    logger.error(f"unhandled error on {request.method} {request.path}: {type(e).__name__}: {first_line(e)}")
    return _internal_error()


def bad_request(message):
    return jsonify({"error": message}), 400


# ---------------------------------------------------------------------------------------
# Endpoints
# ---------------------------------------------------------------------------------------

QR_PREFIX = "LOCKBENCH-REG:"


@app.get("/healthz")
def healthz():
    return "ok", 200, {"Content-Type": "text/plain; charset=utf-8"}


@app.post("/api/registrations")
def create_registration():
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        return bad_request("body must be a JSON object with name and email")
    name = data.get("name")
    email = data.get("email")
    if not isinstance(name, str) or not name.strip():
        return bad_request("name is required")
    if not isinstance(email, str) or "@" not in email.strip():
        return bad_request("email is required (an address like name@example.org)")
    name = name.strip()
    email = email.strip().lower()

    existing = Registration.query.filter_by(email=email).first()
    if existing is not None:
        return jsonify({"id": existing.id, "qr_payload": existing.qr_payload}), 200

    registration = Registration(name=name, email=email, qr_payload=QR_PREFIX + email)
    db.session.add(registration)
    try:
        db.session.commit()
    except IntegrityError:
        # Two kiosks registered the same address at once.
        db.session.rollback()
        existing = Registration.query.filter_by(email=email).first()
        if existing is None:
            raise
        return jsonify({"id": existing.id, "qr_payload": existing.qr_payload}), 200
    logger.info(f"registered {email} as {registration.id}")
    return jsonify({"id": registration.id, "qr_payload": registration.qr_payload}), 201


@app.get("/api/registrations/updates")
@fix_only(db_retry(max_attempts=3, delay=0.3))
def get_registration_updates():
    raw = request.args.get("since", "0")
    try:
        since = int(raw)
    except ValueError:
        return bad_request("since must be an integer")
    rows = (
        Registration.query.filter(Registration.id > since)
        .order_by(Registration.id)
        .limit(100)
        .all()
    )
    return jsonify(
        {
            "registrations": [
                {
                    "id": r.id,
                    "name": r.name,
                    "email": r.email,
                    "created_at": r.created_at.isoformat() if r.created_at else None,
                }
                for r in rows
            ],
            "last_id": rows[-1].id if rows else since,
        }
    )


ADMIN_TEMPLATE = """<!doctype html>
<html>
<head>
<meta charset="utf-8">
<title>Event photos: admin</title>
<style>
body { font-family: sans-serif; margin: 2em; }
table { border-collapse: collapse; margin-bottom: 2em; }
td, th { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }
</style>
</head>
<body>
<h1>Admin dashboard</h1>
<p>Mode: {{ mode }}. {{ registration_count }} registrations.</p>
<h2>Latest registrations</h2>
<table id="registrations">
<tr><th>id</th><th>name</th><th>email</th><th>registered</th></tr>
{% for r in registrations %}
<tr><td>{{ r.id }}</td><td>{{ r.name }}</td><td>{{ r.email }}</td><td>{{ r.created_at }}</td></tr>
{% endfor %}
</table>
<h2>Batches</h2>
<table id="batches">
<tr><th>id</th><th>status</th><th>processed</th><th>failed</th><th>persons</th><th>uploaded</th></tr>
{% for b in batches %}
<tr data-batch="{{ b.id }}"><td>{{ b.id }}</td><td class="status">{{ b.status }}</td>
<td class="processed">{{ b.processed }}/{{ b.total }}</td><td class="failed">{{ b.failed }}</td>
<td class="persons">{{ b.persons }}</td><td class="uploaded">{{ b.uploaded }}</td></tr>
{% endfor %}
</table>
<script>
let lastId = {{ last_id }};
function pollRegistrations() {
  fetch('/api/registrations/updates?since=' + lastId).then(r => r.json()).then(data => {
    const table = document.getElementById('registrations');
    for (const r of data.registrations) {
      const row = table.insertRow(1);
      for (const v of [r.id, r.name, r.email, r.created_at]) row.insertCell().textContent = v;
    }
    lastId = data.last_id;
  }).catch(() => {});
}
function pollBatches() {
  for (const row of document.querySelectorAll('tr[data-batch]')) {
    if (row.querySelector('.status').textContent !== 'running') continue;
    fetch('/api/batches/' + row.dataset.batch + '/status').then(r => r.json()).then(b => {
      row.querySelector('.status').textContent = b.status;
      row.querySelector('.processed').textContent = b.processed + '/' + b.total;
      row.querySelector('.failed').textContent = b.failed;
      row.querySelector('.persons').textContent = b.persons;
      row.querySelector('.uploaded').textContent = b.uploaded;
    }).catch(() => {});
  }
}
setInterval(pollRegistrations, 5000);
setInterval(pollBatches, 5000);
</script>
</body>
</html>
"""


@app.get("/admin")
@fix_only(db_retry(max_attempts=3, delay=0.3))
def admin_dashboard():
    registrations = Registration.query.order_by(Registration.id.desc()).limit(50).all()
    registration_count = Registration.query.count()
    batches = Batch.query.order_by(Batch.id.desc()).limit(20).all()
    last_id = registrations[0].id if registrations else 0
    return render_template_string(
        ADMIN_TEMPLATE,
        mode=settings.MODE,
        registrations=registrations,
        registration_count=registration_count,
        batches=batches,
        last_id=last_id,
    )


@app.post("/api/batches")
def create_batch():
    from photo_processor import PhotoProcessor, list_photos

    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        return bad_request("body must be a JSON object with dir")
    source_dir = data.get("dir")
    if not isinstance(source_dir, str) or not source_dir:
        return bad_request("dir is required")
    if not os.path.isdir(source_dir):
        return bad_request(f"dir {source_dir} is not a directory")
    source_dir = os.path.abspath(source_dir)
    photos = list_photos(source_dir)

    batch = Batch(source_dir=source_dir, status="running", total=len(photos))
    db.session.add(batch)
    db.session.commit()
    batch_id = batch.id

    def run():
        with app.app_context():
            PhotoProcessor(batch_id, source_dir, photos).run()

    thread = threading.Thread(target=run, name=f"processor-{batch_id}", daemon=True)
    thread.start()
    logger.info(f"batch {batch_id} started: {len(photos)} files in {source_dir}")
    return jsonify({"batch_id": batch_id}), 202


@app.get("/api/batches/<int:batch_id>/status")
@fix_only(db_retry(max_attempts=3, delay=0.3))
def get_processing_status(batch_id):
    batch = db.session.get(Batch, batch_id)
    if batch is None:
        return jsonify({"error": f"batch {batch_id} not found"}), 404
    return jsonify(
        {
            "batch_id": batch.id,
            "status": batch.status,
            "total": batch.total,
            "processed": batch.processed,
            "failed": batch.failed,
            "persons": batch.persons,
            "uploaded": batch.uploaded,
        }
    )
