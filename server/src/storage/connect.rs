//! Opening one connection and setting it up: the sqlx runtime ([`Runtime`]), the
//! [`Opener`] the pools open their connections with (driver, VFS, every PRAGMA of the
//! [`StorageConfig`] applied and read back into [`ConnectionSettings`]), the setup connection
//! that creates the file or the PostgreSQL schema and migrates it, the pools built on the
//! opener, and the check of the database's folder. Runs no unit of work (`unit.rs` does).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use super::driver::{OpenSpec, RawConn, RusqliteConn, SqlxConn};
use super::pool::Pool;
use super::{
    migrations, postgres, vfs, BusyTimeoutScope, ConfigError, ConnectionSettings, DbError, Driver,
    OpenError, PoolLayout, PostgresSettings, Role, StorageConfig, Synchronous, Value, POOL_TIMEOUT,
};

/// Holds the runtime sqlx connections are driven on.
pub(super) enum Runtime {
    None,
    Borrowed(tokio::runtime::Handle),
    Owned(Option<tokio::runtime::Runtime>),
}

impl Runtime {
    pub(super) fn for_driver(driver: Driver) -> Result<Runtime, OpenError> {
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

    pub(super) fn handle(&self) -> Option<tokio::runtime::Handle> {
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

/// Everything needed to open a connection, shared by the pools' openers.
#[derive(Clone)]
pub(super) struct Opener {
    path: PathBuf,
    config: StorageConfig,
    vfs: Option<&'static str>,
    rt: Option<tokio::runtime::Handle>,
    next_id: Arc<AtomicU32>,
    settings: Arc<Mutex<Vec<ConnectionSettings>>>,
}

impl Opener {
    /// The opener of the database at `path`: through the delay VFS when the config asks for
    /// a slow disk, or when this process may be given one later (`vfs::require_delay_vfs`:
    /// the server's sync_delay_control).
    pub(super) fn new(
        path: &Path,
        config: &StorageConfig,
        rt: Option<tokio::runtime::Handle>,
        settings: Arc<Mutex<Vec<ConnectionSettings>>>,
    ) -> Result<Opener, OpenError> {
        let vfs = if config.driver == Driver::Postgres {
            None
        } else if config.sync_delay_ms > 0 || vfs::delay_vfs_required() {
            Some(vfs::delay_vfs(config.sync_delay())?)
        } else {
            None
        };
        Ok(Opener {
            path: path.to_path_buf(),
            config: config.clone(),
            vfs,
            rt,
            next_id: Arc::new(AtomicU32::new(0)),
            settings,
        })
    }

    fn open_error(&self, source: DbError) -> OpenError {
        OpenError::Open {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// A setup connection creates the file, fixes the journal mode (WAL is stored in the
    /// file; the rollback modes are set per connection again by [`Opener::pooled`]) and
    /// migrates. On PostgreSQL it creates the schema and its tables.
    pub(super) fn set_up(&self) -> Result<(), OpenError> {
        let config = &self.config;
        if let (Driver::Postgres, Some(rt)) = (config.driver, self.rt.as_ref()) {
            let mut setup = self.postgres(rt).map_err(|e| self.open_error(e))?;
            let schema = config.schema.as_deref().unwrap_or("public");
            postgres::prepare(&mut setup, schema).map_err(|source| OpenError::Migration {
                version: 1,
                name: "photo app schema (postgres)",
                source,
            })?;
            setup.close();
            return Ok(());
        }
        let mut setup = self.raw(false, true).map_err(|e| self.open_error(e))?;
        setup
            .batch(
                "setup",
                &format!("PRAGMA busy_timeout = {}", config.busy_timeout_ms),
            )
            .map_err(|e| self.open_error(e))?;
        configure(setup.as_mut(), config, Some(config.busy_timeout_ms), false).map_err(
            |e| match e {
                Configure::Db(e) => self.open_error(e),
                Configure::Config(c) => OpenError::Config(c),
            },
        )?;
        migrate(setup.as_mut())
    }

    /// The pools the layout asks for: the writer pool (the shared pool, or the split
    /// layout's one writer) and the split layout's readers. Their connections open lazily.
    pub(super) fn pools(&self) -> (Pool, Option<Pool>) {
        let config = &self.config;
        let (writer_size, writer_role) = match config.pool_layout {
            PoolLayout::Shared => (config.pool_size, Role::Shared),
            PoolLayout::Split => (1, Role::Writer),
        };
        let w = self.clone();
        let writer = Pool::new(
            writer_size,
            config.pool_order,
            POOL_TIMEOUT,
            Box::new(move |index| w.pooled(writer_role, index)),
        );
        let readers = (config.reader_count() > 0).then(|| {
            let r = self.clone();
            Pool::new(
                config.reader_count(),
                config.pool_order,
                POOL_TIMEOUT,
                Box::new(move |index| r.pooled(Role::Reader, index)),
            )
        });
        (writer, readers)
    }

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

    pub(super) fn postgres(
        &self,
        rt: &tokio::runtime::Handle,
    ) -> Result<postgres::PgConn, DbError> {
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
pub(super) fn check_path(path: &Path) -> Result<(), OpenError> {
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
