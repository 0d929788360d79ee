//! The reference app's schema, as ordered migrations that both drivers run.
//!
//! The applied version lives in `PRAGMA user_version`. Each migration runs in its own
//! `BEGIN IMMEDIATE` transaction and re-reads the version inside it, so several worker
//! processes starting at once apply each migration exactly once.
//!
//! The time defaults are the one "now" ([`now_sql!`](crate::now_sql)), whose text is the
//! one this migration shipped with, so the migration's SQL is what it always was.
//! PostgreSQL's DDL is `postgres::SCHEMA_SQL`; `tests/schema.rs` checks that the two agree.
//!
//! Schema text only; `Store::open` runs it. Never opens connections.

use crate::now_sql;

/// (version, name, SQL). Append only; never edit a shipped migration.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "photo app schema",
    concat!(
        r#"
CREATE TABLE registrations (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    email       TEXT NOT NULL,
    qr_payload  TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL DEFAULT ("#,
        now_sql!(),
        r#")
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
    created_at       TEXT NOT NULL DEFAULT ("#,
        now_sql!(),
        r#"),
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
    created_at    TEXT NOT NULL DEFAULT ("#,
        now_sql!(),
        r#")
);
CREATE INDEX photos_person ON photos (person_id);
CREATE INDEX photos_batch_status ON photos (batch_id, status);

CREATE TABLE processing_log (
    id          INTEGER PRIMARY KEY,
    batch_id    INTEGER REFERENCES batches (id),
    photo_id    INTEGER REFERENCES photos (id),
    action      TEXT NOT NULL,
    detail      TEXT,
    created_at  TEXT NOT NULL DEFAULT ("#,
        now_sql!(),
        r#")
);
CREATE INDEX processing_log_batch ON processing_log (batch_id, id);
"#
    ),
)];

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    /// The SHA-256 of each shipped migration's SQL: a database migrated by an older
    /// lockbench never runs a migration again, so its text must never change.
    const SHIPPED: &[(i64, &str)] = &[(
        1,
        "3dd9698a3832fa66f5a725b4d9e313a7f8d01e3a18c1c716ef0a4c64e8904524",
    )];

    #[test]
    fn shipped_migrations_are_what_they_were() {
        for &(version, hash) in SHIPPED {
            let (_, name, sql) = super::MIGRATIONS
                .iter()
                .find(|(v, _, _)| *v == version)
                .expect("a shipped migration is never removed");
            let now: String = Sha256::digest(sql.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(now, hash, "migration {version} ({name}) was edited");
        }
    }
}
