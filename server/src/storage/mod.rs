//! The storage layer: the only place that opens connections or issues PRAGMAs.
//!
//! A [`Store`] owns one or two connection pools on one database file (shared layout: one
//! pool; split layout: one writer connection and read-only readers), applies every
//! [`StorageConfig`] setting to each connection it opens, reads the settings back
//! ([`Store::effective_settings`]), and runs units of work ([`Store::write`],
//! [`Store::write_patiently`], [`Store::read`]) with the configured transaction mode and
//! [`RetryPolicy`], counting every lock error in whatever phase it comes (opening or
//! configuring a pooled connection, BEGIN, a statement, COMMIT, a checkpoint) under the op of
//! the unit that met it, with one log line each ([`Stats`]).
//!
//! How one connection is opened, configured and read back, and how the database is set up
//! and migrated, is `connect.rs`; this file holds the store and what it hands out.
//!
//! The API blocks: call it from threads, or from `tokio::task::spawn_blocking`.

pub mod config;
mod connect;
mod driver;
pub mod error;
pub mod hold;
pub mod migrations;
pub mod now;
mod pool;
pub mod postgres;
pub mod readonly;
pub mod retry;
pub mod stats;
mod unit;
pub mod vfs;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use config::ConfigError;
pub use config::{
    BusyTimeoutScope, Driver, Isolation, JournalMode, PoolLayout, PoolOrder, StorageConfig,
    Synchronous, TxMode,
};
pub use error::{DbError, LockCode, OpenError};
pub use now::NOW_SQL;
pub use readonly::{ReadOnlyDb, ReadOnlyError};
pub use retry::{Jitter, RetryConfig, RetryKind, RetryPlan, RetryPolicy, RetryScope};
pub use stats::{OpStats, Stats};

use connect::{check_path, Opener, Runtime};
use driver::RawConn;
use pool::Pool;

/// How long a unit of work waits for a free pooled connection (SQLAlchemy's pool_timeout).
pub const POOL_TIMEOUT: Duration = Duration::from_secs(30);

/// The op a passive WAL checkpoint ([`Store::checkpoint_passive`]) is counted under.
pub const CHECKPOINT_OP: &str = "checkpoint";

/// The wait between two tries of [`Store::write_patiently`] once the retry policy has none
/// left.
pub const PATIENCE_STEP: Duration = Duration::from_millis(100);

/// A value bound to or read from a statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// One result row.
pub type Row = Vec<Value>;

/// What a unit of work can do with its connection.
pub trait Tx {
    /// A write statement; returns the number of rows changed.
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<usize, DbError>;
    /// A write statement; returns the last inserted rowid.
    fn insert(&mut self, sql: &str, params: &[Value]) -> Result<i64, DbError>;
    /// A read statement; returns its rows.
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError>;

    /// The first column of the first row as an integer, if any.
    fn query_i64(&mut self, sql: &str, params: &[Value]) -> Result<Option<i64>, DbError> {
        Ok(self
            .query(sql, params)?
            .first()
            .and_then(|r| r.first())
            .and_then(Value::as_i64))
    }
}

/// The role a connection plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Shared layout: reads and writes.
    Shared,
    /// Split layout: the one writer.
    Writer,
    /// Split layout: a read-only reader.
    Reader,
}

/// The settings one connection really has, read back with PRAGMAs after opening it (as
/// `GET /api/settings` answers them and the runner reads them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionSettings {
    /// Process-wide connection number of this store, in opening order.
    pub id: u32,
    pub role: Role,
    pub driver: Driver,
    pub read_only: bool,
    pub journal_mode: String,
    pub busy_timeout_ms: i64,
    pub synchronous: String,
    pub wal_autocheckpoint: i64,
    pub journal_size_limit: i64,
    pub locking_mode: String,
    pub foreign_keys: bool,
    /// The VFS the connection was opened through ("default" or the sync-delay shim).
    pub vfs: String,
    /// PostgreSQL: what the server reports for this connection (`SHOW`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresSettings>,
}

/// One PostgreSQL connection's settings as the server reports them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostgresSettings {
    pub server_version: String,
    /// `SHOW default_transaction_isolation`: what every BEGIN gets unless it says otherwise
    /// (lockbench's BEGIN names `isolation` itself).
    pub isolation: String,
    pub statement_timeout: String,
    pub lock_timeout: String,
    pub search_path: String,
}

/// The SQLite library version both drivers link (bundled, so the same on every machine).
pub fn sqlite_version() -> &'static str {
    rusqlite::version()
}

struct Inner {
    path: PathBuf,
    config: StorageConfig,
    retry: RetryPlan,
    /// Shared layout: the only pool. Split layout: the writer (size 1).
    writer: Pool,
    /// Split layout: the read-only readers.
    readers: Option<Pool>,
    settings: Arc<Mutex<Vec<ConnectionSettings>>>,
    stats: Stats,
    // Declared last so that connections (which hold runtime handles) drop first.
    _runtime: Runtime,
}

/// A database file with its pools, settings, retry policies and counters. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .field("config", &self.inner.config)
            .finish()
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path`, sets its journal mode, runs the
    /// migrations, and prepares the pools. Connections open lazily, in order. `retry` is a
    /// plan already checked where it was built ([`RetryConfig::plan`]); the storage
    /// settings are checked here, as their only reader.
    pub fn open(
        path: &Path,
        config: &StorageConfig,
        retry: &RetryPlan,
    ) -> Result<Store, OpenError> {
        config.validate()?;
        if config.driver != Driver::Postgres {
            check_path(path)?;
        }
        let runtime = Runtime::for_driver(config.driver)?;
        let settings = Arc::new(Mutex::new(Vec::new()));
        let opener = Opener::new(path, config, runtime.handle(), settings.clone())?;
        opener.set_up()?;
        let (writer, readers) = opener.pools();
        let open_err = |source: DbError| OpenError::Open {
            path: path.display().to_string(),
            source,
        };
        let store = Store {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                config: config.clone(),
                retry: retry.clone(),
                writer,
                readers,
                settings,
                stats: Stats::default(),
                _runtime: runtime,
            }),
        };
        // Open the first connection now, so a setting that cannot be applied fails here.
        drop(store.inner.writer.acquire("open").map_err(open_err)?);
        Ok(store)
    }

    /// Opens every connection of every pool (normally they open on first use), so that
    /// `effective_settings` lists them all.
    pub fn open_all(&self) -> Result<(), DbError> {
        let mut leases = Vec::new();
        for pool in std::iter::once(&self.inner.writer).chain(self.inner.readers.as_ref()) {
            for _ in 0..pool.size() {
                leases.push(pool.acquire("open_all")?);
            }
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn config(&self) -> &StorageConfig {
        &self.inner.config
    }

    /// PostgreSQL: takes a batch's claim (a session advisory lock on a connection of its
    /// own) without waiting; None when another process holds it. The SQLite stores keep
    /// their claims in files instead (see the app).
    pub fn claim_batch_postgres(
        &self,
        batch_id: i64,
    ) -> Result<Option<postgres::PgClaim>, DbError> {
        let rt = self
            .inner
            ._runtime
            .handle()
            .ok_or_else(|| DbError::Driver {
                op: "claim".into(),
                message: "claims on PostgreSQL need the postgres driver".into(),
            })?;
        let c = &self.inner.config;
        let conn = postgres::PgConn::connect(
            c.database_url.as_deref().unwrap_or_default(),
            Some(c.schema.as_deref().unwrap_or("public")),
            c.isolation,
            0,
            rt,
        )?;
        postgres::PgClaim::try_take(conn, batch_id)
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// What each connection opened so far really has, read back when it was opened.
    pub fn effective_settings(&self) -> Vec<ConnectionSettings> {
        self.inner
            .settings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// `PRAGMA wal_checkpoint(PASSIVE)` on a writer connection; true when it completed
    /// (false: readers kept some frames from being copied back). Counted under the op
    /// [`CHECKPOINT_OP`] like a unit of work (ok, or failed; a lock error, in opening the
    /// connection or in the checkpoint, by its code); never retried: the next one comes soon.
    pub fn checkpoint_passive(&self) -> Result<bool, DbError> {
        if self.inner.config.driver == Driver::Postgres {
            // PostgreSQL checkpoints on its own; there is no WAL file of the app's to tend.
            return Ok(true);
        }
        let op = CHECKPOINT_OP;
        let result = self
            .inner
            .writer
            .acquire(op)
            .and_then(|mut lease| lease.conn().rows(op, "PRAGMA wal_checkpoint(PASSIVE)", &[]));
        let stats = &self.inner.stats;
        let rows = match result {
            Ok(rows) => rows,
            Err(e) => {
                if let Some(code) = e.lock_code() {
                    stats.lock_seen(op, code, false);
                }
                stats.failed(op, &e);
                return Err(e);
            }
        };
        stats.ok(op);
        let row = rows.first().cloned().unwrap_or_default();
        let busy = row.first().and_then(Value::as_i64).unwrap_or(1);
        let log = row.get(1).and_then(Value::as_i64).unwrap_or(0);
        let done = row.get(2).and_then(Value::as_i64).unwrap_or(0);
        Ok(busy == 0 && log == done)
    }
}
