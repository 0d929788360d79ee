//! PostgreSQL: the way out when one writer is not enough. The same app, processor, audit and
//! reports run on it through the same `Store`, pools, transaction runner and retry policies;
//! only how a statement reaches the server differs.
//!
//! - Connections are sqlx `PgConnection`s, driven with `Handle::block_on` from the blocking
//!   thread the store already runs on, as the sqlx SQLite driver is.
//! - The app's SQL is SQLite's; [`translate`] turns its few SQLite-isms into PostgreSQL
//!   (`?1` placeholders, the one spelling of "now", [`NOW_SQL`], and `BEGIN IMMEDIATE`), and
//!   an `INSERT` returns its new `id`. The schema ([`SCHEMA_SQL`]) is PostgreSQL's own DDL,
//!   its defaults written with `now_sql!` too; `tests/schema.rs` checks it against SQLite's
//!   migrations, table by table and column by column.
//! - Every run works in a schema of its own ([`unique_schema`], dropped afterwards with
//!   [`drop_schema`]); connections find their tables through `search_path`.
//! - Retryable errors are lock errors, by SQLSTATE: serialization_failure (40001),
//!   deadlock_detected (40P01), lock_not_available (55P03).

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgRow, PgTypeInfo};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Row as _, TypeInfo, ValueRef};

use super::config::{redact_url, schema_problem, Isolation};
use super::driver::RawConn;
use super::error::{DbError, LockCode};
use super::{Row, Value, NOW_SQL};
use crate::now_sql;

/// Current time as the app stores it (text, UTC, milliseconds), as SQLite's [`NOW_SQL`]
/// writes it.
pub const PG_NOW: &str =
    "to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')";

/// How long connecting may take before the URL is called unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Classifies a PostgreSQL error: the retryable SQLSTATEs are lock errors.
pub fn pg_error(err: sqlx::Error, op: &str) -> DbError {
    if let sqlx::Error::Database(db) = &err {
        let state = db.code().map(|c| c.into_owned()).unwrap_or_default();
        let code = match state.as_str() {
            "40001" => Some(LockCode::SerializationFailure),
            "40P01" => Some(LockCode::DeadlockDetected),
            "55P03" => Some(LockCode::LockNotAvailable),
            _ => None,
        };
        return match code {
            Some(code) => DbError::Lock {
                code,
                extended: 0,
                op: op.to_owned(),
                message: format!("{} (SQLSTATE {state})", db.message()),
            },
            None => DbError::Driver {
                op: op.to_owned(),
                message: format!("{} (SQLSTATE {state})", db.message()),
            },
        };
    }
    DbError::Driver {
        op: op.to_owned(),
        message: err.to_string(),
    }
}

/// The app's SQLite SQL as PostgreSQL runs it.
pub fn translate(sql: &str, isolation: Isolation) -> Cow<'_, str> {
    let trimmed = sql.trim();
    let upper = trimmed.to_ascii_uppercase();
    if matches!(
        upper.as_str(),
        "BEGIN" | "BEGIN DEFERRED" | "BEGIN IMMEDIATE" | "BEGIN EXCLUSIVE" | "BEGIN TRANSACTION"
    ) {
        return Cow::Owned(format!("BEGIN ISOLATION LEVEL {}", isolation.as_sql()));
    }
    let needs = sql.contains('?') || sql.contains(NOW_SQL);
    if !needs {
        return Cow::Borrowed(sql);
    }
    let sql = sql.replace(NOW_SQL, PG_NOW);
    // ?N placeholders become $N, outside string literals.
    let mut out = String::with_capacity(sql.len());
    let mut in_string = false;
    for c in sql.chars() {
        match c {
            '\'' => {
                in_string = !in_string;
                out.push(c);
            }
            '?' if !in_string => out.push('$'),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn is_insert(sql: &str) -> bool {
    let t = sql.trim_start();
    t.len() >= 6
        && t[..6].eq_ignore_ascii_case("insert")
        && !t.to_ascii_uppercase().contains("RETURNING")
}

/// A NULL whose type the server infers from where it is used (parameter type OID 0), as an
/// untyped NULL literal is in SQL: the app binds NULL to text and integer columns alike.
struct UntypedNull;

impl sqlx::Type<sqlx::Postgres> for UntypedNull {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(sqlx::postgres::types::Oid(0))
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for UntypedNull {
    fn encode_by_ref(
        &self,
        _buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        Ok(sqlx::encode::IsNull::Yes)
    }
}

fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    params: &'q [Value],
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    for p in params {
        query = match p {
            Value::Null => query.bind(UntypedNull),
            Value::Int(i) => query.bind(*i),
            Value::Real(f) => query.bind(*f),
            Value::Text(s) => query.bind(s.as_str()),
            Value::Blob(b) => query.bind(b.as_slice()),
        };
    }
    query
}

fn pg_row(row: &PgRow, op: &str) -> Result<Row, DbError> {
    let mut values = Vec::with_capacity(row.columns().len());
    for i in 0..row.columns().len() {
        let raw = row.try_get_raw(i).map_err(|e| pg_error(e, op))?;
        if raw.is_null() {
            values.push(Value::Null);
            continue;
        }
        let kind = raw.type_info().name().to_owned();
        let decode = |e: sqlx::Error| pg_error(e, op);
        values.push(match kind.as_str() {
            "INT2" => Value::Int(i64::from(row.try_get::<i16, _>(i).map_err(decode)?)),
            "INT4" => Value::Int(i64::from(row.try_get::<i32, _>(i).map_err(decode)?)),
            "INT8" => Value::Int(row.try_get::<i64, _>(i).map_err(decode)?),
            "BOOL" => Value::Int(i64::from(row.try_get::<bool, _>(i).map_err(decode)?)),
            "FLOAT4" => Value::Real(f64::from(row.try_get::<f32, _>(i).map_err(decode)?)),
            "FLOAT8" => Value::Real(row.try_get::<f64, _>(i).map_err(decode)?),
            "BYTEA" => Value::Blob(row.try_get::<Vec<u8>, _>(i).map_err(decode)?),
            _ => Value::Text(row.try_get::<String, _>(i).map_err(decode)?),
        });
    }
    Ok(values)
}

fn options(url: &str, schema: Option<&str>) -> Result<PgConnectOptions, DbError> {
    let mut options = PgConnectOptions::from_str(url).map_err(|e| DbError::Driver {
        op: "open".into(),
        message: format!("database_url {}: {e}", redact_url(url)),
    })?;
    if let Some(schema) = schema {
        options = options.options([("search_path", schema)]);
    }
    Ok(options
        .application_name("lockbench")
        .disable_statement_logging())
}

/// One PostgreSQL connection.
pub(crate) struct PgConn {
    conn: sqlx::PgConnection,
    rt: tokio::runtime::Handle,
    isolation: Isolation,
}

impl PgConn {
    /// Connects, its tables found through `schema` when given.
    pub fn connect(
        url: &str,
        schema: Option<&str>,
        isolation: Isolation,
        statement_timeout_ms: u64,
        rt: tokio::runtime::Handle,
    ) -> Result<PgConn, DbError> {
        let options = options(url, schema)?;
        let conn = rt
            .block_on(async { tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await })
            .map_err(|_| DbError::Driver {
                op: "open".into(),
                message: format!(
                    "{} did not answer within {} s",
                    redact_url(url),
                    CONNECT_TIMEOUT.as_secs()
                ),
            })?
            .map_err(|e| {
                let mut e = pg_error(e, "open");
                if let DbError::Driver { message, .. } = &mut e {
                    *message = format!("cannot connect to {}: {message}", redact_url(url));
                }
                e
            })?;
        let mut pg = PgConn {
            conn,
            rt,
            isolation,
        };
        pg.batch(
            "open",
            &format!("SET statement_timeout = {statement_timeout_ms}"),
        )?;
        Ok(pg)
    }

    /// `SHOW name` as text.
    pub fn show(&mut self, name: &str) -> Result<String, DbError> {
        let rows = self.rows("settings", &format!("SHOW {name}"), &[])?;
        Ok(rows
            .first()
            .and_then(|r| r.first())
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned())
    }

    /// Closes the connection cleanly (dropping it would only abort the socket).
    pub fn close(self) {
        let PgConn { conn, rt, .. } = self;
        let _ = rt.block_on(conn.close());
    }
}

impl RawConn for PgConn {
    fn exec(&mut self, op: &str, sql: &str, params: &[Value]) -> Result<(usize, i64), DbError> {
        let sql = translate(sql, self.isolation);
        if is_insert(&sql) {
            let with_id = format!("{sql} RETURNING id");
            let query = bind_all(sqlx::query(AssertSqlSafe(with_id)), params);
            let rows = self
                .rt
                .block_on(query.fetch_all(&mut self.conn))
                .map_err(|e| pg_error(e, op))?;
            let id = rows
                .first()
                .and_then(|r| r.try_get::<i64, _>(0).ok())
                .unwrap_or(0);
            return Ok((rows.len(), id));
        }
        let query = bind_all(sqlx::query(AssertSqlSafe(sql.into_owned())), params);
        let done = self
            .rt
            .block_on(query.execute(&mut self.conn))
            .map_err(|e| pg_error(e, op))?;
        Ok((done.rows_affected() as usize, 0))
    }

    fn rows(&mut self, op: &str, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let sql = translate(sql, self.isolation).into_owned();
        let query = bind_all(sqlx::query(AssertSqlSafe(sql)), params);
        let rows = self
            .rt
            .block_on(query.fetch_all(&mut self.conn))
            .map_err(|e| pg_error(e, op))?;
        rows.iter().map(|r| pg_row(r, op)).collect()
    }

    fn batch(&mut self, op: &str, sql: &str) -> Result<(), DbError> {
        let sql = translate(sql, self.isolation).into_owned();
        self.rt
            .block_on(sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut self.conn))
            .map(|_| ())
            .map_err(|e| pg_error(e, op))
    }
}

/// A schema name of this run's own: lockbench_<what>_<unix ms>_<pid>, lowercase.
pub fn unique_schema(what: &str) -> String {
    let clean: String = what
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(24)
        .collect();
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("lockbench_{clean}_{ms}_{}", std::process::id())
}

/// Checks that a schema name is a plain identifier lockbench may quote safely.
pub fn check_schema(name: &str) -> Result<(), DbError> {
    match schema_problem(name) {
        None => Ok(()),
        Some(message) => Err(DbError::Driver {
            op: "schema".into(),
            message,
        }),
    }
}

/// Drops a run's schema and everything in it.
pub fn drop_schema(url: &str, schema: &str) -> Result<(), DbError> {
    check_schema(schema)?;
    let rt = own_runtime("drop schema")?;
    let mut conn = PgConn::connect(url, None, Isolation::default(), 0, rt.handle().clone())?;
    let result = conn.batch(
        "drop schema",
        &format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"),
    );
    conn.close();
    result
}

/// Connects and runs `SELECT 1`: whether the server at `url` still answers (a run watches
/// its database with this, so a server that goes away mid-run stops the run).
pub fn ping(url: &str) -> Result<(), DbError> {
    let rt = own_runtime("ping")?;
    let mut conn = PgConn::connect(url, None, Isolation::default(), 0, rt.handle().clone())?;
    let result = conn.batch("ping", "SELECT 1");
    conn.close();
    result
}

/// The app's tables, in PostgreSQL (the schema version table is `prepare`'s). Run through
/// [`translate`] like every statement, so its defaults are the one "now" too.
pub const SCHEMA_SQL: &str = concat!(
    r#"
CREATE TABLE registrations (
    id          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name        TEXT NOT NULL,
    email       TEXT NOT NULL,
    qr_payload  TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL DEFAULT ("#,
    now_sql!(),
    r#")
);
CREATE INDEX registrations_email ON registrations (email);

CREATE TABLE batches (
    id             BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
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
    id               BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    batch_id         BIGINT NOT NULL REFERENCES batches (id),
    registration_id  BIGINT REFERENCES registrations (id),
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
    id            BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    batch_id      BIGINT NOT NULL REFERENCES batches (id),
    person_id     BIGINT REFERENCES persons (id),
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
    id          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    batch_id    BIGINT REFERENCES batches (id),
    photo_id    BIGINT REFERENCES photos (id),
    action      TEXT NOT NULL,
    detail      TEXT,
    created_at  TEXT NOT NULL DEFAULT ("#,
    now_sql!(),
    r#")
);
CREATE INDEX processing_log_batch ON processing_log (batch_id, id);
"#
);

/// Creates the schema if needed and its tables once, under an advisory lock so several
/// processes starting together create them exactly once.
pub(crate) fn prepare(conn: &mut PgConn, schema: &str) -> Result<(), DbError> {
    check_schema(schema)?;
    conn.batch("migrate", "BEGIN")?;
    let result = (|| {
        conn.batch("migrate", "SELECT pg_advisory_xact_lock(7351001)")?;
        conn.batch(
            "migrate",
            &format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""),
        )?;
        conn.batch(
            "migrate",
            &format!(
                "CREATE TABLE IF NOT EXISTS \"{schema}\".lockbench_schema (version BIGINT NOT NULL)"
            ),
        )?;
        let rows = conn.rows(
            "migrate",
            &format!("SELECT coalesce(max(version), 0) FROM \"{schema}\".lockbench_schema"),
            &[],
        )?;
        let version = rows
            .first()
            .and_then(|r| r.first())
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if version < 1 {
            conn.batch("migrate", &format!("SET LOCAL search_path = \"{schema}\""))?;
            conn.batch("migrate", SCHEMA_SQL)?;
            conn.batch(
                "migrate",
                "INSERT INTO lockbench_schema (version) VALUES (1)",
            )?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => conn.batch("migrate", "COMMIT"),
        Err(e) => {
            let _ = conn.batch("migrate", "ROLLBACK");
            Err(e)
        }
    }
}

/// A batch's claim on PostgreSQL: a session advisory lock on a connection of its own. Only
/// one `lockbench serve` process, on whichever machine, holds it; it is released when the
/// claim is dropped or the process dies (the server ends the session).
pub struct PgClaim {
    conn: Option<PgConn>,
}

impl PgClaim {
    /// Takes the claim on `batch_id` without waiting: None when another process holds it.
    pub(crate) fn try_take(mut conn: PgConn, batch_id: i64) -> Result<Option<PgClaim>, DbError> {
        // The key is the batch id within lockbench's own class of advisory locks; the schema
        // keeps runs apart (two runs in two schemas may use the same ids).
        let rows = conn.rows(
            "claim",
            "SELECT pg_try_advisory_lock(hashtext(current_schema() || ':batch'), ?1::int)",
            &[Value::Int(batch_id)],
        )?;
        let taken = matches!(rows.first().and_then(|r| r.first()), Some(Value::Int(1)));
        if !taken {
            conn.close();
            return Ok(None);
        }
        Ok(Some(PgClaim { conn: Some(conn) }))
    }
}

impl Drop for PgClaim {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Inside async code a blocking close is not allowed: dropping the connection
            // closes its socket, and the server ends the session and its lock.
            if tokio::runtime::Handle::try_current().is_err() {
                conn.close();
            }
        }
    }
}

/// A runtime for the blocking callers outside a server (the runner, faults). Multi-threaded
/// with one worker, because connections are driven through a `Handle`, and a handle cannot
/// drive a current-thread runtime's I/O.
fn own_runtime(op: &str) -> Result<tokio::runtime::Runtime, DbError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| DbError::Driver {
            op: op.to_owned(),
            message: e.to_string(),
        })
}

/// Creates a run's schema with the app's tables (before any server starts).
pub fn create_schema(url: &str, schema: &str) -> Result<(), DbError> {
    check_schema(schema)?;
    let rt = own_runtime("create schema")?;
    let mut conn = PgConn::connect(
        url,
        Some(schema),
        Isolation::default(),
        0,
        rt.handle().clone(),
    )?;
    let result = prepare(&mut conn, schema);
    conn.close();
    result
}

/// A read-only connection to a run's schema, for the audit: every transaction is read-only,
/// so the audit changes nothing in what it audits.
pub struct ReadOnlyPg {
    conn: Option<PgConn>,
    _rt: tokio::runtime::Runtime,
}

impl ReadOnlyPg {
    pub fn open(url: &str, schema: &str) -> Result<ReadOnlyPg, DbError> {
        check_schema(schema)?;
        let rt = own_runtime("audit")?;
        let mut conn = PgConn::connect(
            url,
            Some(schema),
            Isolation::RepeatableRead,
            0,
            rt.handle().clone(),
        )?;
        conn.batch("audit", "SET default_transaction_read_only = on")?;
        Ok(ReadOnlyPg {
            conn: Some(conn),
            _rt: rt,
        })
    }

    /// Runs a query (the app's SQL, translated) and collects its rows.
    pub fn query(&mut self, op: &str, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        match self.conn.as_mut() {
            Some(conn) => conn.rows(op, sql, params),
            None => Err(DbError::Driver {
                op: op.to_owned(),
                message: "connection closed".into(),
            }),
        }
    }
}

impl Drop for ReadOnlyPg {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.close();
        }
    }
}

/// The app's tables, in the order a `LOCK TABLE` takes them.
const APP_TABLES: &str = "registrations, batches, persons, photos, processing_log";

/// A fault on PostgreSQL: another session takes `LOCK TABLE ... IN ACCESS EXCLUSIVE MODE`
/// on the app's tables (as a migration would) and holds it; everyone waits, readers too.
pub fn hold_table_locks(
    url: &str,
    schema: &str,
    hold: Duration,
    wait: Duration,
    started: impl FnOnce(&str),
) -> Result<super::hold::Held, DbError> {
    hold_in_transaction(
        url,
        schema,
        hold,
        wait,
        &format!("LOCK TABLE {APP_TABLES} IN ACCESS EXCLUSIVE MODE"),
        started,
    )
}

/// A fault on PostgreSQL: a long transaction holding row locks (`SELECT ... FOR UPDATE` on
/// every batch row), as a stuck job would; writers of those rows wait.
pub fn hold_row_locks(
    url: &str,
    schema: &str,
    hold: Duration,
    wait: Duration,
    started: impl FnOnce(&str),
) -> Result<super::hold::Held, DbError> {
    hold_in_transaction(
        url,
        schema,
        hold,
        wait,
        "SELECT id FROM batches FOR UPDATE",
        started,
    )
}

fn hold_in_transaction(
    url: &str,
    schema: &str,
    hold: Duration,
    wait: Duration,
    statement: &str,
    started: impl FnOnce(&str),
) -> Result<super::hold::Held, DbError> {
    check_schema(schema)?;
    let asked = std::time::Instant::now();
    let rt = own_runtime("fault")?;
    let mut conn = PgConn::connect(
        url,
        Some(schema),
        Isolation::default(),
        0,
        rt.handle().clone(),
    )?;
    let result = (|| {
        loop {
            conn.batch("fault", "BEGIN")?;
            let left = wait
                .saturating_sub(asked.elapsed())
                .max(Duration::from_millis(1));
            conn.batch(
                "fault",
                &format!("SET LOCAL lock_timeout = {}", left.as_millis()),
            )?;
            match conn.batch("fault", statement) {
                Ok(()) => break,
                // Taking several tables' locks one after another can deadlock with the
                // app's own transactions; PostgreSQL then aborts one side. A migration tool
                // tries again, and so does the fault, for as long as it may wait.
                Err(e)
                    if e.lock_code() == Some(LockCode::DeadlockDetected)
                        && asked.elapsed() < wait =>
                {
                    conn.batch("fault", "ROLLBACK")?;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(e),
            }
        }
        let waited = asked.elapsed();
        started(statement);
        let from = std::time::Instant::now();
        std::thread::sleep(hold);
        conn.batch("fault", "ROLLBACK")?;
        Ok(super::hold::Held {
            waited,
            held: from.elapsed(),
        })
    })();
    conn.close();
    result
}
