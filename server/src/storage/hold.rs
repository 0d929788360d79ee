//! Faults from outside the app: a process that holds the database's write lock, or keeps one
//! read transaction open, as a backup job, a migration or someone in the sqlite3 shell would.
//!
//! `lockbench run` starts these in processes of their own (`lockbench __fault ...`), never in
//! the server, so the server sees them as it would see any other program on the machine.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::OpenFlags;

use super::error::DbError;

/// What a hold did: when it got its lock, and how long it held it.
#[derive(Debug, Clone, Copy)]
pub struct Held {
    /// Waiting for the lock, from the call.
    pub waited: Duration,
    /// Holding it.
    pub held: Duration,
}

fn open(path: &Path, wait: Duration) -> Result<rusqlite::Connection, DbError> {
    // The file must exist: a fault never creates a database.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = rusqlite::Connection::open_with_flags(path, flags)
        .map_err(|e| DbError::from_rusqlite(e, "fault open"))?;
    conn.busy_timeout(wait)
        .map_err(|e| DbError::from_rusqlite(e, "fault open"))?;
    Ok(conn)
}

/// Takes the write lock and holds it for `hold`, then rolls back (nothing is written): `BEGIN
/// IMMEDIATE` in WAL mode (writers wait, readers go on), `BEGIN EXCLUSIVE` with a rollback
/// journal (everyone waits). Waits up to `wait` for the lock; `started` is called once it is
/// held.
pub fn hold_write_lock(
    path: &Path,
    hold: Duration,
    wait: Duration,
    started: impl FnOnce(&str),
) -> Result<Held, DbError> {
    let asked = Instant::now();
    let conn = open(path, wait)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(|e| DbError::from_rusqlite(e, "fault journal_mode"))?;
    let begin = if mode.eq_ignore_ascii_case("wal") {
        "BEGIN IMMEDIATE"
    } else {
        "BEGIN EXCLUSIVE"
    };
    conn.execute_batch(begin)
        .map_err(|e| DbError::from_rusqlite(e, "fault lock"))?;
    let waited = asked.elapsed();
    started(begin);
    let held_from = Instant::now();
    std::thread::sleep(hold);
    conn.execute_batch("ROLLBACK")
        .map_err(|e| DbError::from_rusqlite(e, "fault unlock"))?;
    Ok(Held {
        waited,
        held: held_from.elapsed(),
    })
}

/// Opens one read transaction (it reads a page of `table`, so it holds a snapshot in WAL
/// mode and a shared lock with a rollback journal) and keeps it open for `hold`. In WAL mode
/// no checkpoint can pass it, so the WAL grows; with a rollback journal no writer can commit.
pub fn hold_read_transaction(
    path: &Path,
    table: &str,
    hold: Duration,
    wait: Duration,
    started: impl FnOnce(),
) -> Result<Held, DbError> {
    let asked = Instant::now();
    let conn = open(path, wait)?;
    conn.execute_batch("BEGIN")
        .map_err(|e| DbError::from_rusqlite(e, "fault read"))?;
    let sql = format!("SELECT count(*) FROM \"{}\"", table.replace('"', "\"\""));
    conn.query_row(&sql, [], |r| r.get::<_, i64>(0))
        .map_err(|e| DbError::from_rusqlite(e, "fault read"))?;
    let waited = asked.elapsed();
    started();
    let held_from = Instant::now();
    std::thread::sleep(hold);
    conn.execute_batch("COMMIT")
        .map_err(|e| DbError::from_rusqlite(e, "fault read end"))?;
    Ok(Held {
        waited,
        held: held_from.elapsed(),
    })
}
