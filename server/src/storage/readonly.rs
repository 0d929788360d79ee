//! Read-only access to a database file lockbench must not change: the audit after a run,
//! and an external app's own file (`[target].database`).
//!
//! The connection is opened with `SQLITE_OPEN_READ_ONLY`: no migrations, no journal-mode
//! change, no checkpoint, so the main file's bytes are the same afterwards. A WAL database
//! still needs its `-shm` index; SQLite opens or creates it beside the file as it does for
//! any reader.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::OpenFlags;

use super::error::DbError;
use super::{Row, Value};

/// Why a read-only database could not be used; each names the file or the query.
#[derive(Debug, thiserror::Error)]
pub enum ReadOnlyError {
    #[error("{path}: no such file")]
    Missing { path: String },
    #[error("cannot open {path} read-only: {source}")]
    Open {
        path: String,
        #[source]
        source: DbError,
    },
    #[error("{path} is not a readable SQLite database: {source}")]
    NotDatabase {
        path: String,
        #[source]
        source: DbError,
    },
    #[error("query {sql:?}: {reason}")]
    BadQuery { sql: String, reason: String },
}

/// One read-only connection.
pub struct ReadOnlyDb {
    conn: rusqlite::Connection,
    path: PathBuf,
}

/// How long a read waits for a writer that holds the file (the app may still be running).
const READ_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

impl ReadOnlyDb {
    /// Opens an existing file read-only and checks that it is a database.
    pub fn open(path: &Path) -> Result<ReadOnlyDb, ReadOnlyError> {
        let shown = path.display().to_string();
        if !path.is_file() {
            return Err(ReadOnlyError::Missing { path: shown });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = rusqlite::Connection::open_with_flags(path, flags).map_err(|e| {
            ReadOnlyError::Open {
                path: shown.clone(),
                source: DbError::from_rusqlite(e, "open read-only"),
            }
        })?;
        conn.busy_timeout(READ_BUSY_TIMEOUT)
            .map_err(|e| ReadOnlyError::Open {
                path: shown.clone(),
                source: DbError::from_rusqlite(e, "open read-only"),
            })?;
        let db = ReadOnlyDb {
            conn,
            path: path.to_path_buf(),
        };
        db.query("read schema", "SELECT count(*) FROM sqlite_schema", &[])
            .map_err(|source| ReadOnlyError::NotDatabase {
                path: shown,
                source,
            })?;
        Ok(db)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's journal mode as SQLite reports it ("delete", "wal", ...). Asking does not
    /// change it.
    pub fn journal_mode(&self) -> Result<String, DbError> {
        let rows = self.query("journal_mode", "PRAGMA journal_mode", &[])?;
        Ok(rows
            .first()
            .and_then(|r| r.first())
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned())
    }

    /// Runs a query and collects its rows.
    pub fn query(&self, op: &str, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let mut stmt = self
            .conn
            .prepare_cached(sql)
            .map_err(|e| DbError::from_rusqlite(e, op))?;
        let width = stmt.column_count();
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params.iter()))
            .map_err(|e| DbError::from_rusqlite(e, op))?;
        super::driver::collect_rows(&mut rows, width, op)
    }

    /// Runs a query that must answer exactly one number for one bound value (an audit
    /// query such as `SELECT count(*) FROM registration WHERE email = ?1`).
    pub fn count(&self, sql: &str, value: &str) -> Result<i64, ReadOnlyError> {
        let bad = |reason: String| ReadOnlyError::BadQuery {
            sql: sql.to_owned(),
            reason,
        };
        let params = {
            let stmt = self
                .conn
                .prepare_cached(sql)
                .map_err(|e| bad(format!("does not compile: {e}")))?;
            if stmt.column_count() != 1 {
                return Err(bad(format!(
                    "returns {} columns; it must return one number",
                    stmt.column_count()
                )));
            }
            stmt.parameter_count()
        };
        if params > 1 {
            return Err(bad(format!(
                "has {params} parameters; it may use only ?1 (the audited field)"
            )));
        }
        let bound = if params == 1 {
            vec![Value::Text(value.to_owned())]
        } else {
            Vec::new()
        };
        let rows = self
            .query("audit query", sql, &bound)
            .map_err(|e| bad(e.to_string()))?;
        match rows.as_slice() {
            [row] => match row.first() {
                Some(Value::Int(n)) => Ok(*n),
                Some(other) => Err(bad(format!("returned {other:?}, not an integer"))),
                None => Err(bad("returned an empty row".into())),
            },
            rows => Err(bad(format!(
                "returned {} rows for {value:?}; it must return exactly one number",
                rows.len()
            ))),
        }
    }
}
