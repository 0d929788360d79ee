//! Lock errors as data: one typed error for both drivers.
//!
//! Classifies errors; never retries or logs them. No error's `Display` contains the phrase
//! "database is locked": the server's log has exactly one line with it per counted lock
//! error (`Stats::lock_seen`), and an error printed in another log line must not add one.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::config::ConfigError;

/// The SQLite result codes that mean "someone else holds a lock", told apart by
/// their extended result code (sqlite.org/rescode.html).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LockCode {
    /// SQLITE_BUSY (5): the busy handler gave up, or SQLite refused to wait
    /// because waiting could deadlock (the deferred read-to-write upgrade).
    #[serde(rename = "SQLITE_BUSY")]
    Busy,
    /// SQLITE_BUSY_SNAPSHOT (517): a WAL read snapshot is stale and cannot be upgraded to write.
    #[serde(rename = "SQLITE_BUSY_SNAPSHOT")]
    BusySnapshot,
    /// SQLITE_BUSY_RECOVERY (261): another connection is recovering the WAL.
    #[serde(rename = "SQLITE_BUSY_RECOVERY")]
    BusyRecovery,
    /// SQLITE_BUSY_TIMEOUT (773): a blocking lock wait timed out.
    #[serde(rename = "SQLITE_BUSY_TIMEOUT")]
    BusyTimeout,
    /// SQLITE_LOCKED (6) and its extended codes: a conflict inside one connection or shared cache.
    #[serde(rename = "SQLITE_LOCKED")]
    Locked,
    /// PostgreSQL serialization_failure (SQLSTATE 40001): a transaction that could not run as
    /// if alone; running it again may succeed.
    #[serde(rename = "serialization_failure")]
    SerializationFailure,
    /// PostgreSQL deadlock_detected (SQLSTATE 40P01): the server chose this transaction to
    /// break a deadlock.
    #[serde(rename = "deadlock_detected")]
    DeadlockDetected,
    /// PostgreSQL lock_not_available (SQLSTATE 55P03): a lock wait hit lock_timeout or NOWAIT.
    #[serde(rename = "lock_not_available")]
    LockNotAvailable,
}

impl LockCode {
    pub const ALL: [LockCode; 8] = [
        LockCode::Busy,
        LockCode::BusySnapshot,
        LockCode::BusyRecovery,
        LockCode::BusyTimeout,
        LockCode::Locked,
        LockCode::SerializationFailure,
        LockCode::DeadlockDetected,
        LockCode::LockNotAvailable,
    ];

    /// Classifies an extended result code; `None` for anything that is not a lock error.
    pub fn from_extended(code: i32) -> Option<LockCode> {
        match code {
            517 => Some(LockCode::BusySnapshot),
            261 => Some(LockCode::BusyRecovery),
            773 => Some(LockCode::BusyTimeout),
            c if c & 0xff == 5 => Some(LockCode::Busy),
            c if c & 0xff == 6 => Some(LockCode::Locked),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LockCode::Busy => "SQLITE_BUSY",
            LockCode::BusySnapshot => "SQLITE_BUSY_SNAPSHOT",
            LockCode::BusyRecovery => "SQLITE_BUSY_RECOVERY",
            LockCode::BusyTimeout => "SQLITE_BUSY_TIMEOUT",
            LockCode::Locked => "SQLITE_LOCKED",
            LockCode::SerializationFailure => "serialization_failure",
            LockCode::DeadlockDetected => "deadlock_detected",
            LockCode::LockNotAvailable => "lock_not_available",
        }
    }
}

impl fmt::Display for LockCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error from a database operation, the same for both drivers.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// Another connection holds a lock ("database is locked"). Displayed as "lock error
    /// SQLITE_BUSY in register", without SQLite's message (see the module docs).
    #[error("lock error {code} in {op}")]
    Lock {
        code: LockCode,
        /// The extended result code SQLite returned.
        extended: i32,
        /// The unit of work that met it (whatever phase: opening or configuring a pooled
        /// connection, BEGIN, a statement, COMMIT, a checkpoint).
        op: String,
        /// SQLite's message, with the phase when it was not a statement of the unit itself.
        message: String,
    },
    /// Any other SQLite error, with its extended result code.
    #[error("sqlite error {extended} in {op}: {message}")]
    Sqlite {
        extended: i32,
        op: String,
        message: String,
    },
    /// No pooled connection became free in time (not a SQLite lock).
    #[error("no database connection free after {waited_ms} ms in {op}")]
    PoolTimeout { op: String, waited_ms: u64 },
    /// A driver error that has no SQLite result code (I/O, protocol, decoding).
    #[error("driver error in {op}: {message}")]
    Driver { op: String, message: String },
}

impl DbError {
    /// The lock code, if this is a lock error.
    pub fn lock_code(&self) -> Option<LockCode> {
        match self {
            DbError::Lock { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub fn is_lock(&self) -> bool {
        self.lock_code().is_some()
    }

    pub fn op(&self) -> &str {
        match self {
            DbError::Lock { op, .. }
            | DbError::Sqlite { op, .. }
            | DbError::PoolTimeout { op, .. }
            | DbError::Driver { op, .. } => op,
        }
    }

    /// The same error, as met by the unit of work `op` while its pool was opening or
    /// configuring a connection (whose statements ran under the op `open` or `configure`):
    /// a lock error stays a lock error with its code, now under the unit's op, so that it is
    /// counted where the unit's other lock errors are and answered as they are.
    pub(crate) fn met_by(self, op: &str) -> DbError {
        let in_phase = |phase: &str, message: String| format!("while {phase}: {message}");
        match self {
            DbError::Lock {
                code,
                extended,
                op: phase,
                message,
            } => DbError::Lock {
                code,
                extended,
                op: op.to_owned(),
                message: in_phase(&phase, message),
            },
            DbError::Sqlite {
                extended,
                op: phase,
                message,
            } => DbError::Sqlite {
                extended,
                op: op.to_owned(),
                message: in_phase(&phase, message),
            },
            DbError::Driver { op: phase, message } => DbError::Driver {
                op: op.to_owned(),
                message: in_phase(&phase, message),
            },
            DbError::PoolTimeout { waited_ms, .. } => DbError::PoolTimeout {
                op: op.to_owned(),
                waited_ms,
            },
        }
    }

    /// Builds the error for an extended result code, classifying lock errors.
    pub fn from_code(extended: i32, op: &str, message: String) -> DbError {
        match LockCode::from_extended(extended) {
            Some(code) => DbError::Lock {
                code,
                extended,
                op: op.to_owned(),
                message,
            },
            None => DbError::Sqlite {
                extended,
                op: op.to_owned(),
                message,
            },
        }
    }

    pub fn from_rusqlite(err: rusqlite::Error, op: &str) -> DbError {
        match &err {
            rusqlite::Error::SqliteFailure(e, msg) => DbError::from_code(
                e.extended_code,
                op,
                msg.clone().unwrap_or_else(|| e.to_string()),
            ),
            _ => DbError::Driver {
                op: op.to_owned(),
                message: err.to_string(),
            },
        }
    }

    pub fn from_sqlx(err: sqlx::Error, op: &str) -> DbError {
        match &err {
            sqlx::Error::Database(db) => match db.code().and_then(|c| c.parse::<i32>().ok()) {
                Some(extended) => DbError::from_code(extended, op, db.message().to_owned()),
                None => DbError::Driver {
                    op: op.to_owned(),
                    message: err.to_string(),
                },
            },
            _ => DbError::Driver {
                op: op.to_owned(),
                message: err.to_string(),
            },
        }
    }
}

/// What opening a store can fail with.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot open database {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: DbError,
    },
    #[error("migration {version} ({name}) failed: {source}")]
    Migration {
        version: i64,
        name: &'static str,
        #[source]
        source: DbError,
    },
    #[error(transparent)]
    Vfs(#[from] super::vfs::VfsError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extended_codes_are_told_apart() {
        assert_eq!(LockCode::from_extended(5), Some(LockCode::Busy));
        assert_eq!(LockCode::from_extended(517), Some(LockCode::BusySnapshot));
        assert_eq!(LockCode::from_extended(261), Some(LockCode::BusyRecovery));
        assert_eq!(LockCode::from_extended(773), Some(LockCode::BusyTimeout));
        assert_eq!(LockCode::from_extended(6), Some(LockCode::Locked));
        assert_eq!(LockCode::from_extended(262), Some(LockCode::Locked));
        assert_eq!(LockCode::from_extended(19), None); // SQLITE_CONSTRAINT
        assert_eq!(LockCode::from_extended(1), None);
    }

    #[test]
    fn a_lock_error_never_displays_the_phrase_the_log_counts() {
        let e = DbError::from_code(5, "configure", "database is locked".into());
        assert_eq!(e.to_string(), "lock error SQLITE_BUSY in configure");
        let e = e.met_by("register");
        assert_eq!(e.to_string(), "lock error SQLITE_BUSY in register");
        assert_eq!(e.lock_code(), Some(LockCode::Busy));
        match &e {
            DbError::Lock { message, .. } => {
                assert_eq!(message, "while configure: database is locked")
            }
            other => panic!("{other:?}"),
        }
        let e = DbError::from_code(517, "a", "database is locked".into());
        assert_eq!(e.to_string(), "lock error SQLITE_BUSY_SNAPSHOT in a");
    }
}
