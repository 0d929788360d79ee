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
//! The API blocks: call it from threads, or from `tokio::task::spawn_blocking`.

pub mod config;
mod driver;
pub mod error;
pub mod hold;
pub mod migrations;
mod pool;
pub mod postgres;
pub mod readonly;
pub mod retry;
pub mod stats;
mod unit;
pub mod vfs;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

pub use config::{
    BusyTimeoutScope, Driver, Isolation, JournalMode, PoolLayout, PoolOrder, StorageConfig,
    Synchronous, TxMode,
};
pub use error::{ConfigError, DbError, LockCode, OpenError};
pub use readonly::{ReadOnlyDb, ReadOnlyError};
pub use retry::{Jitter, RetryConfig, RetryKind, RetryPolicy, RetryScope};
pub use stats::{OpStats, Stats};

use driver::{OpenSpec, RawConn, RusqliteConn, SqlxConn};
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Shared layout: reads and writes.
    Shared,
    /// Split layout: the one writer.
    Writer,
    /// Split layout: a read-only reader.
    Reader,
}

/// The settings one connection really has, read back with PRAGMAs after opening it.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresSettings>,
}

/// One PostgreSQL connection's settings as the server reports them.
#[derive(Debug, Clone, PartialEq, Serialize)]
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

/// Holds the runtime sqlx connections are driven on.
enum Runtime {
    None,
    Borrowed(tokio::runtime::Handle),
    Owned(Option<tokio::runtime::Runtime>),
}

impl Runtime {
    fn for_driver(driver: Driver) -> Result<Runtime, OpenError> {
        if !matches!(driver, Driver::Sqlx | Driver::Postgres) {
            return Ok(Runtime::None);
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            return Ok(Runtime::Borrowed(handle));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("lockbench-sqlx")
            .enable_all()
            .build()
            .map_err(|e| OpenError::Open {
                path: String::new(),
                source: DbError::Driver {
                    op: "runtime".into(),
                    message: e.to_string(),
                },
            })?;
        Ok(Runtime::Owned(Some(rt)))
    }

    fn handle(&self) -> Option<tokio::runtime::Handle> {
        match self {
            Runtime::None => None,
            Runtime::Borrowed(h) => Some(h.clone()),
            Runtime::Owned(rt) => rt.as_ref().map(|r| r.handle().clone()),
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Dropping a runtime from inside another one panics; shutting it down in the
        // background never does.
        if let Runtime::Owned(rt) = self {
            if let Some(rt) = rt.take() {
                rt.shutdown_background();
            }
        }
    }
}

struct Inner {
    path: PathBuf,
    config: StorageConfig,
    write_policy: RetryPolicy,
    read_policy: RetryPolicy,
    retry_scope: RetryScope,
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

/// Everything needed to open a connection, shared by the pools' openers.
#[derive(Clone)]
struct Opener {
    path: PathBuf,
    config: StorageConfig,
    vfs: Option<&'static str>,
    rt: Option<tokio::runtime::Handle>,
    next_id: Arc<AtomicU32>,
    settings: Arc<Mutex<Vec<ConnectionSettings>>>,
}

impl Opener {
    fn raw(&self, read_only: bool, create: bool) -> Result<Box<dyn RawConn>, DbError> {
        let spec = OpenSpec {
            path: &self.path,
            read_only,
            create,
            vfs: self.vfs,
        };
        Ok(match (self.config.driver, &self.rt) {
            (Driver::Sqlx, Some(rt)) => Box::new(SqlxConn::open(&spec, rt.clone())?),
            (Driver::Postgres, Some(rt)) => Box::new(self.postgres(rt)?),
            _ => Box::new(RusqliteConn::open(&spec)?),
        })
    }

    fn postgres(&self, rt: &tokio::runtime::Handle) -> Result<postgres::PgConn, DbError> {
        let url = self.config.database_url.as_deref().unwrap_or_default();
        postgres::PgConn::connect(
            url,
            Some(self.config.schema.as_deref().unwrap_or("public")),
            self.config.isolation,
            self.config.statement_timeout_ms,
            rt.clone(),
        )
    }

    /// Opens one PostgreSQL connection and reads back what the server says of it.
    fn pooled_postgres(&self, role: Role) -> Result<Box<dyn RawConn>, DbError> {
        let rt = self.rt.as_ref().ok_or_else(|| DbError::Driver {
            op: "open".into(),
            message: "no runtime for the postgres driver".into(),
        })?;
        let read_only = role == Role::Reader;
        let mut conn = self.postgres(rt)?;
        if read_only {
            conn.batch("configure", "SET default_transaction_read_only = on")?;
        }
        let pg = PostgresSettings {
            server_version: conn.show("server_version")?,
            isolation: self.config.isolation.as_sql().to_ascii_lowercase(),
            statement_timeout: conn.show("statement_timeout")?,
            lock_timeout: conn.show("lock_timeout")?,
            search_path: conn.show("search_path")?,
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.settings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(ConnectionSettings {
                id,
                role,
                driver: Driver::Postgres,
                read_only,
                journal_mode: "postgres".into(),
                busy_timeout_ms: -1,
                synchronous: conn.show("synchronous_commit")?,
                wal_autocheckpoint: -1,
                journal_size_limit: -1,
                locking_mode: "-".into(),
                foreign_keys: true,
                vfs: "-".into(),
                postgres: Some(pg),
            });
        Ok(Box::new(conn))
    }

    /// Opens, configures and reads back one pooled connection.
    fn pooled(&self, role: Role, index: u32) -> Result<Box<dyn RawConn>, DbError> {
        if self.config.driver == Driver::Postgres {
            return self.pooled_postgres(role);
        }
        let read_only = role == Role::Reader;
        let mut conn = self.raw(read_only, false)?;
        // first-connection scope: only the pool's first connection gets the PRAGMA (the
        // writer in the split layout, where readers are a second pool).
        let first = index == 0 && role != Role::Reader;
        let timeout = match self.config.busy_timeout_scope {
            BusyTimeoutScope::EveryConnection => Some(self.config.busy_timeout_ms),
            BusyTimeoutScope::FirstConnection => first.then_some(self.config.busy_timeout_ms),
        };
        let settings =
            configure(conn.as_mut(), &self.config, timeout, read_only).map_err(|e| match e {
                Configure::Db(e) => e,
                Configure::Config(c) => DbError::Driver {
                    op: "configure".into(),
                    message: c.to_string(),
                },
            })?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let record = ConnectionSettings {
            id,
            role,
            driver: self.config.driver,
            read_only,
            vfs: self.vfs.unwrap_or("default").to_owned(),
            ..settings
        };
        self.settings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(record);
        Ok(conn)
    }
}

enum Configure {
    Db(DbError),
    Config(ConfigError),
}

impl From<DbError> for Configure {
    fn from(e: DbError) -> Self {
        Configure::Db(e)
    }
}

fn pragma_text(conn: &mut dyn RawConn, name: &str) -> Result<String, DbError> {
    let rows = conn.rows("configure", &format!("PRAGMA {name}"), &[])?;
    Ok(match rows.first().and_then(|r| r.first()) {
        Some(Value::Text(s)) => s.to_lowercase(),
        Some(Value::Int(i)) => i.to_string(),
        _ => String::new(),
    })
}

fn pragma_int(conn: &mut dyn RawConn, name: &str) -> Result<i64, DbError> {
    let rows = conn.rows("configure", &format!("PRAGMA {name}"), &[])?;
    Ok(rows
        .first()
        .and_then(|r| r.first())
        .and_then(Value::as_i64)
        .unwrap_or(-1))
}

/// Applies the settings to one connection and reads them back. `busy_timeout_ms: None`
/// leaves the driver's default in place.
fn configure(
    conn: &mut dyn RawConn,
    config: &StorageConfig,
    busy_timeout_ms: Option<u64>,
    read_only: bool,
) -> Result<ConnectionSettings, Configure> {
    if let Some(ms) = busy_timeout_ms {
        conn.batch("configure", &format!("PRAGMA busy_timeout = {ms}"))?;
    }
    if !read_only {
        // journal_mode answers with the mode in effect; it is checked below. Leaving WAL
        // needs exclusive access, which busy_timeout does not wait for: another connection
        // holding the database open makes this fail with SQLITE_BUSY, which stays a lock
        // error (counted and answered as one by the unit of work that opened the connection).
        // Only a mode that is not applied without an error is `NotApplied`.
        conn.rows(
            "configure_journal_mode",
            &format!("PRAGMA journal_mode = {}", config.journal_mode.as_sql()),
            &[],
        )?;
        conn.rows(
            "configure",
            &format!("PRAGMA journal_size_limit = {}", config.journal_size_limit),
            &[],
        )?;
    }
    conn.batch(
        "configure",
        &format!(
            "PRAGMA synchronous = {}; PRAGMA wal_autocheckpoint = {}; PRAGMA foreign_keys = ON;",
            config.synchronous.as_sql(),
            config.wal_autocheckpoint
        ),
    )?;

    let journal_mode = pragma_text(conn, "journal_mode")?;
    if journal_mode != config.journal_mode.as_sql() {
        return Err(Configure::Config(ConfigError::NotApplied {
            setting: "journal_mode",
            requested: config.journal_mode.as_sql().into(),
            effective: journal_mode,
        }));
    }
    let synchronous = pragma_int(conn, "synchronous")?;
    Ok(ConnectionSettings {
        id: 0,
        role: Role::Shared,
        driver: config.driver,
        read_only,
        journal_mode,
        busy_timeout_ms: pragma_int(conn, "busy_timeout")?,
        synchronous: Synchronous::from_pragma(synchronous)
            .map(|s| s.as_sql().to_owned())
            .unwrap_or_else(|| synchronous.to_string()),
        wal_autocheckpoint: pragma_int(conn, "wal_autocheckpoint")?,
        journal_size_limit: pragma_int(conn, "journal_size_limit")?,
        locking_mode: pragma_text(conn, "locking_mode")?,
        foreign_keys: pragma_int(conn, "foreign_keys")? == 1,
        vfs: String::new(),
        postgres: None,
    })
}

/// Checks that the database's folder exists and can be written, naming the path otherwise.
fn check_path(path: &Path) -> Result<(), OpenError> {
    let fail = |message: String| OpenError::Open {
        path: path.display().to_string(),
        source: DbError::Driver {
            op: "open".into(),
            message,
        },
    };
    if path.as_os_str().is_empty() || path.to_str() == Some(":memory:") {
        return Err(fail(
            "lockbench needs a database file (locks are between connections to one file)".into(),
        ));
    }
    if path.is_dir() {
        return Err(fail("is a directory".into()));
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let meta = std::fs::metadata(&parent)
        .map_err(|e| fail(format!("folder {} is not usable: {e}", parent.display())))?;
    if !meta.is_dir() {
        return Err(fail(format!("{} is not a folder", parent.display())));
    }
    if meta.permissions().readonly() {
        return Err(fail(format!("folder {} is read-only", parent.display())));
    }
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the database at `path`, sets its journal mode, runs the
    /// migrations, and prepares the pools. Connections open lazily, in order.
    pub fn open(
        path: &Path,
        config: &StorageConfig,
        retry: &RetryConfig,
    ) -> Result<Store, OpenError> {
        config.validate()?;
        retry.validate()?;
        if config.driver != Driver::Postgres {
            check_path(path)?;
        }
        // The delay VFS when the config asks for a slow disk, or when this process may be
        // given one later (`vfs::require_delay_vfs`: the server's sync_delay_control).
        let vfs = if config.driver == Driver::Postgres {
            None
        } else if config.sync_delay_ms > 0 || vfs::delay_vfs_required() {
            Some(vfs::delay_vfs(config.sync_delay())?)
        } else {
            None
        };
        let runtime = Runtime::for_driver(config.driver)?;
        let settings = Arc::new(Mutex::new(Vec::new()));
        let opener = Opener {
            path: path.to_path_buf(),
            config: config.clone(),
            vfs,
            rt: runtime.handle(),
            next_id: Arc::new(AtomicU32::new(0)),
            settings: settings.clone(),
        };
        let open_err = |source: DbError| OpenError::Open {
            path: path.display().to_string(),
            source,
        };

        // A setup connection creates the file, fixes the journal mode (WAL is stored in the
        // file; the rollback modes are set per connection again below) and migrates. On
        // PostgreSQL it creates the schema and its tables.
        if let (Driver::Postgres, Some(rt)) = (config.driver, opener.rt.as_ref()) {
            let mut setup = opener.postgres(rt).map_err(open_err)?;
            let schema = config.schema.as_deref().unwrap_or("public");
            postgres::prepare(&mut setup, schema).map_err(|source| OpenError::Migration {
                version: 1,
                name: "photo app schema (postgres)",
                source,
            })?;
            setup.close();
        } else {
            let mut setup = opener.raw(false, true).map_err(open_err)?;
            setup
                .batch(
                    "setup",
                    &format!("PRAGMA busy_timeout = {}", config.busy_timeout_ms),
                )
                .map_err(open_err)?;
            configure(setup.as_mut(), config, Some(config.busy_timeout_ms), false).map_err(
                |e| match e {
                    Configure::Db(e) => open_err(e),
                    Configure::Config(c) => OpenError::Config(c),
                },
            )?;
            migrate(setup.as_mut())?;
        }

        let writer_size = match config.pool_layout {
            PoolLayout::Shared => config.pool_size,
            PoolLayout::Split => 1,
        };
        let writer_role = match config.pool_layout {
            PoolLayout::Shared => Role::Shared,
            PoolLayout::Split => Role::Writer,
        };
        let w = opener.clone();
        let writer = Pool::new(
            writer_size,
            config.pool_order,
            POOL_TIMEOUT,
            Box::new(move |index| w.pooled(writer_role, index)),
        );
        let readers = (config.reader_count() > 0).then(|| {
            let r = opener.clone();
            Pool::new(
                config.reader_count(),
                config.pool_order,
                POOL_TIMEOUT,
                Box::new(move |index| r.pooled(Role::Reader, index)),
            )
        });
        let store = Store {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                config: config.clone(),
                write_policy: retry.write_policy()?,
                read_policy: retry.read_policy()?,
                retry_scope: retry.retry_scope,
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

fn migrate(conn: &mut dyn RawConn) -> Result<(), OpenError> {
    for &(version, name, sql) in migrations::MIGRATIONS {
        let fail = |source: DbError| OpenError::Migration {
            version,
            name,
            source,
        };
        if pragma_int(conn, "user_version").map_err(fail)? >= version {
            continue;
        }
        conn.exec("migrate", "BEGIN IMMEDIATE", &[]).map_err(fail)?;
        let applied = (|| {
            // Another process may have migrated while this one waited for the lock.
            if pragma_int(conn, "user_version")? >= version {
                return Ok(());
            }
            conn.batch("migrate", sql)?;
            conn.batch("migrate", &format!("PRAGMA user_version = {version}"))
        })();
        match applied {
            Ok(()) => conn
                .exec("migrate", "COMMIT", &[])
                .map(|_| ())
                .map_err(fail)?,
            Err(e) => {
                let _ = conn.exec("migrate", "ROLLBACK", &[]);
                return Err(fail(e));
            }
        }
    }
    Ok(())
}
