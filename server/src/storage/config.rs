//! Storage settings as types.
//!
//! Every setting derives both `serde::Deserialize` (TOML scenarios) and `clap::Args`
//! (command-line flags), from the same struct, so a scenario and a flag can never disagree.
//! Flag names are the field names in kebab case (`--journal-mode`, `--busy-timeout-ms`).
//!
//! Types, defaults and checks only; never opens connections.

use std::fmt;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

/// Which driver issues the statements: two for SQLite (both link the same bundled SQLite),
/// and PostgreSQL (sqlx), the way out when one writer is not enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Driver {
    #[default]
    Rusqlite,
    Sqlx,
    /// A PostgreSQL server at `database_url`.
    Postgres,
}

impl Driver {
    pub fn is_postgres(self) -> bool {
        self == Driver::Postgres
    }
}

/// PostgreSQL's transaction isolation level (the driver `postgres` only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// PostgreSQL's default: each statement sees what was committed before it began.
    #[default]
    ReadCommitted,
    RepeatableRead,
    /// Concurrent writers that could not run one after the other fail with
    /// serialization_failure (40001); the retry policy runs them again.
    Serializable,
}

impl Isolation {
    pub fn as_sql(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "READ COMMITTED",
            Isolation::RepeatableRead => "REPEATABLE READ",
            Isolation::Serializable => "SERIALIZABLE",
        }
    }
}

/// `PRAGMA journal_mode`. `delete` is the rollback journal of the incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum JournalMode {
    #[default]
    Delete,
    Truncate,
    Persist,
    Wal,
}

impl JournalMode {
    /// The word SQLite uses for this mode (and answers with when read back).
    pub fn as_sql(self) -> &'static str {
        match self {
            JournalMode::Delete => "delete",
            JournalMode::Truncate => "truncate",
            JournalMode::Persist => "persist",
            JournalMode::Wal => "wal",
        }
    }
}

/// `PRAGMA synchronous`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Synchronous {
    Off,
    Normal,
    #[default]
    Full,
    Extra,
}

impl Synchronous {
    pub fn as_sql(self) -> &'static str {
        match self {
            Synchronous::Off => "off",
            Synchronous::Normal => "normal",
            Synchronous::Full => "full",
            Synchronous::Extra => "extra",
        }
    }

    /// Reads back the integer `PRAGMA synchronous` answers with.
    pub fn from_pragma(value: i64) -> Option<Self> {
        match value {
            0 => Some(Synchronous::Off),
            1 => Some(Synchronous::Normal),
            2 => Some(Synchronous::Full),
            3 => Some(Synchronous::Extra),
            _ => None,
        }
    }
}

/// Which connections get the configured busy timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum BusyTimeoutScope {
    /// Every connection the pool opens (an engine/connect option).
    #[default]
    EveryConnection,
    /// Only the first connection, as a `PRAGMA busy_timeout` run once through the pool does;
    /// the others keep the driver's default (5 s for rusqlite and sqlx).
    FirstConnection,
}

/// How a write unit of work starts its transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum TxMode {
    /// `BEGIN DEFERRED` first: reads take a read lock that must be upgraded to write.
    #[default]
    Deferred,
    /// `BEGIN IMMEDIATE` first: the write lock is taken (and waited for) up front.
    Immediate,
    /// Reads run outside any transaction and `BEGIN` comes just before the first write,
    /// as Python's sqlite3 module did by default (the incident's Flask/SQLAlchemy app).
    Lazy,
}

/// How connections are pooled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum PoolLayout {
    /// One pool of `pool_size` connections for reads and writes.
    #[default]
    Shared,
    /// One writer connection and `pool_size - 1` read-only reader connections.
    Split,
}

/// Which idle connection a pool hands out next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum PoolOrder {
    /// The connection idle the longest (SQLAlchemy's QueuePool default, `use_lifo=False`):
    /// every connection of the pool takes turns, so a setting that reached only some
    /// connections shows up in a share of the requests.
    #[default]
    Fifo,
    /// The connection returned last (`use_lifo=True`, most Rust pools): a few warm
    /// connections serve most requests.
    Lifo,
}

/// Every SQLite setting the incident touches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Driver that issues the statements.
    #[arg(long, value_enum, default_value_t = StorageConfig::default().driver)]
    pub driver: Driver,
    /// PRAGMA journal_mode (delete is the rollback journal).
    #[arg(long, value_enum, default_value_t = StorageConfig::default().journal_mode)]
    pub journal_mode: JournalMode,
    /// PRAGMA synchronous.
    #[arg(long, value_enum, default_value_t = StorageConfig::default().synchronous)]
    pub synchronous: Synchronous,
    /// PRAGMA busy_timeout in milliseconds (the drivers' default is 5000).
    #[arg(long, default_value_t = StorageConfig::default().busy_timeout_ms)]
    pub busy_timeout_ms: u64,
    /// Which connections get busy_timeout_ms.
    #[arg(long, value_enum, default_value_t = StorageConfig::default().busy_timeout_scope)]
    pub busy_timeout_scope: BusyTimeoutScope,
    /// How write transactions begin.
    #[arg(long, value_enum, default_value_t = StorageConfig::default().tx_mode)]
    pub tx_mode: TxMode,
    /// Connections per process (split layout: 1 writer + pool_size-1 readers).
    #[arg(long, default_value_t = StorageConfig::default().pool_size)]
    pub pool_size: u32,
    /// Shared pool or one writer plus read-only readers.
    #[arg(long, value_enum, default_value_t = StorageConfig::default().pool_layout)]
    pub pool_layout: PoolLayout,
    /// Which idle connection the pool hands out next (fifo: SQLAlchemy's QueuePool default).
    #[arg(long, value_enum, default_value_t = StorageConfig::default().pool_order)]
    pub pool_order: PoolOrder,
    /// PRAGMA wal_autocheckpoint in pages (SQLite's default 1000).
    #[arg(long, default_value_t = StorageConfig::default().wal_autocheckpoint)]
    pub wal_autocheckpoint: u32,
    /// PRAGMA journal_size_limit in bytes (-1: no limit, SQLite's default).
    #[arg(long, default_value_t = StorageConfig::default().journal_size_limit, allow_negative_numbers = true)]
    pub journal_size_limit: i64,
    /// Extra latency before every fsync, in milliseconds (a slow disk).
    #[arg(long, default_value_t = StorageConfig::default().sync_delay_ms)]
    pub sync_delay_ms: u64,
    /// PostgreSQL only: the server (postgres://user:password@host:port/database). Empty is
    /// the same as none.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// PostgreSQL only: the schema the app's tables live in (created if missing).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// PostgreSQL only: the isolation level of every transaction.
    #[arg(long, value_enum, default_value_t = StorageConfig::default().isolation)]
    pub isolation: Isolation,
    /// PostgreSQL only: statement_timeout in milliseconds (0: none).
    #[arg(long, default_value_t = StorageConfig::default().statement_timeout_ms)]
    pub statement_timeout_ms: u64,
}

/// The busy timeout rusqlite and sqlx set on every connection they open.
pub const DEFAULT_BUSY_TIMEOUT_MS: u64 = 5000;

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            driver: Driver::default(),
            journal_mode: JournalMode::default(),
            synchronous: Synchronous::default(),
            busy_timeout_ms: DEFAULT_BUSY_TIMEOUT_MS,
            busy_timeout_scope: BusyTimeoutScope::default(),
            tx_mode: TxMode::default(),
            pool_size: 10,
            pool_layout: PoolLayout::default(),
            pool_order: PoolOrder::default(),
            wal_autocheckpoint: 1000,
            journal_size_limit: -1,
            sync_delay_ms: 0,
            database_url: None,
            schema: None,
            isolation: Isolation::default(),
            statement_timeout_ms: 0,
        }
    }
}

impl StorageConfig {
    /// Rejects combinations that cannot work, naming the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_database()?;
        if self.pool_size == 0 {
            return Err(ConfigError::Invalid {
                setting: "pool_size",
                reason: "must be at least 1".into(),
            });
        }
        if self.pool_layout == PoolLayout::Split && self.pool_size < 2 {
            return Err(ConfigError::Invalid {
                setting: "pool_layout",
                reason: format!(
                    "split needs pool_size >= 2 (one writer and at least one reader), got pool_size = {}",
                    self.pool_size
                ),
            });
        }
        if self.busy_timeout_ms > i32::MAX as u64 {
            return Err(ConfigError::Invalid {
                setting: "busy_timeout_ms",
                reason: format!(
                    "{} exceeds SQLite's limit of {}",
                    self.busy_timeout_ms,
                    i32::MAX
                ),
            });
        }
        if self.sync_delay_ms > 60_000 {
            return Err(ConfigError::Invalid {
                setting: "sync_delay_ms",
                reason: format!("{} ms is more than a minute per sync", self.sync_delay_ms),
            });
        }
        Ok(())
    }

    /// The database a driver needs: a postgres:// URL and a usable schema for PostgreSQL,
    /// no URL for the SQLite drivers (and no slow disk on PostgreSQL).
    fn validate_database(&self) -> Result<(), ConfigError> {
        // An empty URL is no URL (so a sweep row can take one away).
        let url = self.database_url.as_ref().filter(|u| !u.trim().is_empty());
        match (self.driver, url) {
            (Driver::Postgres, None) => {
                return Err(ConfigError::Invalid {
                    setting: "database_url",
                    reason: "the postgres driver needs a database_url (--database-url postgres://user@host:5432/db)".into(),
                })
            }
            (Driver::Postgres, Some(url))
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) =>
            {
                return Err(ConfigError::Invalid {
                    setting: "database_url",
                    reason: format!(
                        "{} is not a postgres:// URL",
                        redact_url(url)
                    ),
                })
            }
            (Driver::Rusqlite | Driver::Sqlx, Some(_)) => {
                return Err(ConfigError::Invalid {
                    setting: "database_url",
                    reason: "set only with driver = \"postgres\"; the SQLite drivers use a database file".into(),
                })
            }
            _ => {}
        }
        if let Some(schema) = &self.schema {
            if self.driver != Driver::Postgres {
                return Err(ConfigError::Invalid {
                    setting: "schema",
                    reason: "set only with driver = \"postgres\"".into(),
                });
            }
            if let Some(reason) = schema_problem(schema) {
                return Err(ConfigError::Invalid {
                    setting: "schema",
                    reason,
                });
            }
        }
        if self.driver == Driver::Postgres && self.sync_delay_ms > 0 {
            return Err(ConfigError::Invalid {
                setting: "sync_delay_ms",
                reason: "a slow disk is modelled for SQLite files only; PostgreSQL's disk is the server's".into(),
            });
        }
        Ok(())
    }

    pub fn sync_delay(&self) -> Duration {
        Duration::from_millis(self.sync_delay_ms)
    }

    /// Number of read-only reader connections (0 in the shared layout).
    pub fn reader_count(&self) -> u32 {
        match self.pool_layout {
            PoolLayout::Shared => 0,
            PoolLayout::Split => self.pool_size.saturating_sub(1),
        }
    }
}

impl fmt::Display for StorageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "driver={:?} journal_mode={} synchronous={} busy_timeout_ms={} ({:?}) tx_mode={:?} pool={}x{:?} ({:?}) sync_delay_ms={}",
            self.driver,
            self.journal_mode.as_sql(),
            self.synchronous.as_sql(),
            self.busy_timeout_ms,
            self.busy_timeout_scope,
            self.tx_mode,
            self.pool_size,
            self.pool_layout,
            self.pool_order,
            self.sync_delay_ms
        )
    }
}

/// Parses "5s", "500ms", "2m" (humantime) for flags and TOML alike.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

/// Serde helpers so durations read as "5s" in TOML too.
pub mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*value).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// A setting or combination of settings that cannot work, named.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid setting {setting}: {reason}")]
    Invalid {
        setting: &'static str,
        reason: String,
    },
    #[error("setting {setting}: requested {requested}, but the connection reports {effective}")]
    NotApplied {
        setting: &'static str,
        requested: String,
        effective: String,
    },
}

/// The parts of a database URL that may be shown: the password is replaced by `***`.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((auth, host)) => match auth.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
                None => url.to_owned(),
            },
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// What is wrong with a PostgreSQL schema name lockbench would use, if anything: lowercase
/// letters, digits and `_`, at most 63, not starting with a digit (so it never needs quoting).
pub fn schema_problem(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    (!ok).then(|| {
        format!(
            "schema {name:?}: use lowercase letters, digits and _ (at most 63), not starting with a digit"
        )
    })
}
