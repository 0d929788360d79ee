//! The two drivers behind one small connection trait.
//!
//! `RawConn` is all the store needs from a driver: run a statement, fetch rows, run a batch.
//! rusqlite calls block; sqlx's are async and are driven with `Handle::block_on` from the
//! blocking thread the store already runs on (sqlx-sqlite itself runs each connection on a
//! worker thread of its own), so both drivers share the pool, the transaction logic and the
//! retry policies, and differ only in how a statement reaches SQLite.
//!
//! Runs what it is given on one connection; never decides about pools, transactions or retries.

use std::path::Path;
use std::time::Duration;

use rusqlite::OpenFlags;
use sqlx::sqlite::{SqliteConnectOptions, SqliteRow};
use sqlx::{AssertSqlSafe, ConnectOptions, Row as _, TypeInfo, ValueRef};

use super::error::DbError;
use super::{Row, Value};

/// One open connection, whichever driver.
pub(crate) trait RawConn: Send {
    /// Runs one statement; returns (rows changed, last insert rowid).
    fn exec(&mut self, op: &str, sql: &str, params: &[Value]) -> Result<(usize, i64), DbError>;
    /// Runs one query and collects its rows.
    fn rows(&mut self, op: &str, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError>;
    /// Runs several statements without parameters (migrations).
    fn batch(&mut self, op: &str, sql: &str) -> Result<(), DbError>;
}

/// How a connection is opened.
#[derive(Debug, Clone)]
pub(crate) struct OpenSpec<'a> {
    pub path: &'a Path,
    pub read_only: bool,
    pub create: bool,
    pub vfs: Option<&'static str>,
}

// ---- rusqlite -------------------------------------------------------------------------------

pub(crate) struct RusqliteConn(rusqlite::Connection);

impl RusqliteConn {
    pub fn open(spec: &OpenSpec<'_>) -> Result<RusqliteConn, DbError> {
        let mut flags = OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        flags |= if spec.read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE
        };
        if spec.create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let conn = match spec.vfs {
            Some(vfs) => rusqlite::Connection::open_with_flags_and_vfs(spec.path, flags, vfs),
            None => rusqlite::Connection::open_with_flags(spec.path, flags),
        }
        .map_err(|e| DbError::from_rusqlite(e, "open"))?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(RusqliteConn(conn))
    }
}

fn to_sql_params(params: &[Value]) -> impl rusqlite::Params + '_ {
    rusqlite::params_from_iter(params.iter())
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef as R};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => R::Null,
            Value::Int(i) => R::Integer(*i),
            Value::Real(f) => R::Real(*f),
            Value::Text(s) => R::Text(s.as_bytes()),
            Value::Blob(b) => R::Blob(b),
        }))
    }
}

impl RawConn for RusqliteConn {
    fn exec(&mut self, op: &str, sql: &str, params: &[Value]) -> Result<(usize, i64), DbError> {
        let mut stmt = self
            .0
            .prepare_cached(sql)
            .map_err(|e| DbError::from_rusqlite(e, op))?;
        let changed = stmt
            .execute(to_sql_params(params))
            .map_err(|e| DbError::from_rusqlite(e, op))?;
        Ok((changed, self.0.last_insert_rowid()))
    }

    fn rows(&mut self, op: &str, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let mut stmt = self
            .0
            .prepare_cached(sql)
            .map_err(|e| DbError::from_rusqlite(e, op))?;
        let width = stmt.column_count();
        let mut rows = stmt
            .query(to_sql_params(params))
            .map_err(|e| DbError::from_rusqlite(e, op))?;
        collect_rows(&mut rows, width, op)
    }

    fn batch(&mut self, op: &str, sql: &str) -> Result<(), DbError> {
        self.0
            .execute_batch(sql)
            .map_err(|e| DbError::from_rusqlite(e, op))
    }
}

// ---- sqlx -----------------------------------------------------------------------------------

pub(crate) struct SqlxConn {
    conn: sqlx::SqliteConnection,
    rt: tokio::runtime::Handle,
}

impl SqlxConn {
    pub fn open(spec: &OpenSpec<'_>, rt: tokio::runtime::Handle) -> Result<SqlxConn, DbError> {
        // sqlx turns foreign keys on by default; rusqlite leaves SQLite's default (off).
        // The store sets foreign_keys itself on both, so here only the open flags are chosen.
        let mut options = SqliteConnectOptions::new()
            .filename(spec.path)
            .read_only(spec.read_only)
            .create_if_missing(spec.create)
            .busy_timeout(Duration::from_millis(
                super::config::DEFAULT_BUSY_TIMEOUT_MS,
            ))
            .statement_cache_capacity(64)
            .disable_statement_logging();
        if let Some(vfs) = spec.vfs {
            options = options.vfs(vfs);
        }
        let conn = rt
            .block_on(options.connect())
            .map_err(|e| DbError::from_sqlx(e, "open"))?;
        Ok(SqlxConn { conn, rt })
    }
}

fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    params: &'q [Value],
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    for p in params {
        query = match p {
            Value::Null => query.bind(None::<i64>),
            Value::Int(i) => query.bind(*i),
            Value::Real(f) => query.bind(*f),
            Value::Text(s) => query.bind(s.as_str()),
            Value::Blob(b) => query.bind(b.as_slice()),
        };
    }
    query
}

fn sqlx_row(row: &SqliteRow, op: &str) -> Result<Row, DbError> {
    let mut values = Vec::with_capacity(row.columns().len());
    for i in 0..row.columns().len() {
        let raw = row.try_get_raw(i).map_err(|e| DbError::from_sqlx(e, op))?;
        let kind = if raw.is_null() {
            "NULL".to_owned()
        } else {
            raw.type_info().name().to_owned()
        };
        let decode = |e: sqlx::Error| DbError::from_sqlx(e, op);
        values.push(match kind.as_str() {
            "NULL" => Value::Null,
            "INTEGER" | "BOOLEAN" | "INT8" => Value::Int(row.try_get::<i64, _>(i).map_err(decode)?),
            "REAL" | "FLOAT" | "NUMERIC" => Value::Real(row.try_get::<f64, _>(i).map_err(decode)?),
            "BLOB" => Value::Blob(row.try_get::<Vec<u8>, _>(i).map_err(decode)?),
            _ => Value::Text(row.try_get::<String, _>(i).map_err(decode)?),
        });
    }
    Ok(values)
}

impl RawConn for SqlxConn {
    fn exec(&mut self, op: &str, sql: &str, params: &[Value]) -> Result<(usize, i64), DbError> {
        let query = bind_all(sqlx::query(AssertSqlSafe(sql)), params);
        let done = self
            .rt
            .block_on(query.execute(&mut self.conn))
            .map_err(|e| DbError::from_sqlx(e, op))?;
        Ok((done.rows_affected() as usize, done.last_insert_rowid()))
    }

    fn rows(&mut self, op: &str, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let query = bind_all(sqlx::query(AssertSqlSafe(sql)), params);
        let rows = self
            .rt
            .block_on(query.fetch_all(&mut self.conn))
            .map_err(|e| DbError::from_sqlx(e, op))?;
        rows.iter().map(|r| sqlx_row(r, op)).collect()
    }

    fn batch(&mut self, op: &str, sql: &str) -> Result<(), DbError> {
        self.rt
            .block_on(sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut self.conn))
            .map(|_| ())
            .map_err(|e| DbError::from_sqlx(e, op))
    }
}

/// Every row of a rusqlite query as lockbench's values (text read as UTF-8, lossily).
pub(crate) fn collect_rows(
    rows: &mut rusqlite::Rows<'_>,
    width: usize,
    op: &str,
) -> Result<Vec<Row>, DbError> {
    use rusqlite::types::ValueRef as R;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| DbError::from_rusqlite(e, op))? {
        let mut values = Vec::with_capacity(width);
        for i in 0..width {
            let v = row.get_ref(i).map_err(|e| DbError::from_rusqlite(e, op))?;
            values.push(match v {
                R::Null => Value::Null,
                R::Integer(i) => Value::Int(i),
                R::Real(f) => Value::Real(f),
                R::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                R::Blob(b) => Value::Blob(b.to_vec()),
            });
        }
        out.push(values);
    }
    Ok(out)
}
