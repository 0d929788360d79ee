//! The reference app's schema, as ordered migrations that both drivers run.
//!
//! The applied version lives in `PRAGMA user_version`. Each migration runs in its own
//! `BEGIN IMMEDIATE` transaction and re-reads the version inside it, so several worker
//! processes starting at once apply each migration exactly once.
//!
//! Schema text only; `Store::open` runs it. Never opens connections.

/// (version, name, SQL). Append only; never edit a shipped migration.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "photo app schema",
    r#"
CREATE TABLE registrations (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    email       TEXT NOT NULL,
    qr_payload  TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX registrations_email ON registrations (email);

CREATE TABLE batches (
    id             INTEGER PRIMARY KEY,
    source_dir     TEXT NOT NULL,
    status         TEXT NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'running', 'done', 'failed')),
    total          INTEGER NOT NULL DEFAULT 0,
    processed      INTEGER NOT NULL DEFAULT 0,
    failed         INTEGER NOT NULL DEFAULT 0,
    persons        INTEGER NOT NULL DEFAULT 0,
    uploaded       INTEGER NOT NULL DEFAULT 0,
    current_photo  TEXT,
    started_at     TEXT,
    finished_at    TEXT,
    updated_at     TEXT
);
CREATE INDEX batches_status ON batches (status);

CREATE TABLE persons (
    id               INTEGER PRIMARY KEY,
    batch_id         INTEGER NOT NULL REFERENCES batches (id),
    registration_id  INTEGER REFERENCES registrations (id),
    qr_payload       TEXT NOT NULL,
    photo_count      INTEGER NOT NULL DEFAULT 0,
    folder           TEXT,
    upload_state     TEXT NOT NULL DEFAULT 'pending'
                     CHECK (upload_state IN ('pending', 'saved', 'uploading', 'uploaded', 'failed')),
    created_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (batch_id, qr_payload)
);
CREATE INDEX persons_registration ON persons (registration_id);

CREATE TABLE photos (
    id            INTEGER PRIMARY KEY,
    batch_id      INTEGER NOT NULL REFERENCES batches (id),
    person_id     INTEGER REFERENCES persons (id),
    file_name     TEXT NOT NULL,
    content_hash  TEXT NOT NULL UNIQUE,
    is_qr         INTEGER NOT NULL DEFAULT 0,
    status        TEXT NOT NULL CHECK (status IN ('assigned', 'qr', 'unassigned', 'failed')),
    error         TEXT,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX photos_person ON photos (person_id);
CREATE INDEX photos_batch_status ON photos (batch_id, status);

CREATE TABLE processing_log (
    id          INTEGER PRIMARY KEY,
    batch_id    INTEGER REFERENCES batches (id),
    photo_id    INTEGER REFERENCES photos (id),
    action      TEXT NOT NULL,
    detail      TEXT,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX processing_log_batch ON processing_log (batch_id, id);
"#,
)];
