//! Units of work on a `Store`: `write` and `read`, the transaction they run in (`BEGIN`
//! variant, lazy start, COMMIT), the one retry loop around them, and the incident's
//! commit-only "retry". Runs statements on connections the pools lend; never opens
//! connections or issues PRAGMAs (`mod.rs` does).

use std::time::Duration;

use tracing::warn;

use super::pool::Pool;
use super::{DbError, RawConn, RetryPolicy, RetryScope, Row, Store, Tx, TxMode, Value};

impl Store {
    /// Runs a write unit of work with the configured tx mode, retry policy and scope.
    pub fn write<T>(
        &self,
        op: &str,
        mut work: impl FnMut(&mut dyn Tx) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let inner = &*self.inner;
        let result = match inner.retry_scope {
            RetryScope::UnitOfWork => self.write_unit_of_work(op, &mut work),
            RetryScope::CommitOnly => self.write_commit_only(op, &mut work),
        };
        match &result {
            Ok(_) => inner.stats.ok(op),
            Err(e) => inner.stats.failed(op, e),
        }
        result
    }

    /// Runs a read-only unit of work (a reader connection in the split layout) with the read
    /// retry policy. Outside `lazy` mode, its statements share one read transaction.
    pub fn read<T>(
        &self,
        op: &str,
        mut work: impl FnMut(&mut dyn Tx) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let inner = &*self.inner;
        let pool = inner.readers.as_ref().unwrap_or(&inner.writer);
        let in_tx = inner.config.tx_mode != TxMode::Lazy;
        let begin = in_tx.then_some("BEGIN");
        let result = self.run_with_retries(op, pool, begin, &inner.read_policy, &mut work);
        match &result {
            Ok(_) => inner.stats.ok(op),
            Err(e) => inner.stats.failed(op, e),
        }
        result
    }

    fn begin_statement(&self) -> Option<&'static str> {
        match self.inner.config.tx_mode {
            TxMode::Deferred => Some("BEGIN DEFERRED"),
            TxMode::Immediate => Some("BEGIN IMMEDIATE"),
            TxMode::Lazy => None,
        }
    }

    /// Counts a lock error and, if the policy allows another try, logs and returns the wait.
    fn retry_wait(
        &self,
        op: &str,
        err: &DbError,
        policy: &RetryPolicy,
        attempt: u32,
    ) -> Option<Duration> {
        let code = err.lock_code()?;
        self.inner.stats.lock_seen(op, code);
        let delay = policy.delay_after(attempt)?;
        warn!(
            op,
            attempt,
            code = code.as_str(),
            delay_ms = delay.as_millis() as u64,
            "database locked, retrying"
        );
        self.inner.stats.retried(op);
        Some(delay)
    }

    fn write_unit_of_work<T>(
        &self,
        op: &str,
        work: &mut dyn FnMut(&mut dyn Tx) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let begin = self.begin_statement();
        self.run_with_retries(
            op,
            &self.inner.writer,
            begin,
            &self.inner.write_policy,
            work,
        )
    }

    /// The transaction retry loop: runs the whole unit of work on a connection from `pool`,
    /// and again after the policy's wait while it fails on a lock the policy retries.
    fn run_with_retries<T>(
        &self,
        op: &str,
        pool: &Pool,
        begin: Option<&'static str>,
        policy: &RetryPolicy,
        work: &mut dyn FnMut(&mut dyn Tx) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let mut attempt = 1;
        loop {
            let outcome = {
                let mut lease = pool.acquire(op)?;
                run_once(lease.conn(), op, begin, false, work)
            };
            match outcome {
                Ok((value, _)) => return Ok(value),
                Err(e) => match self.retry_wait(op, &e, policy, attempt) {
                    Some(delay) => {
                        std::thread::sleep(delay);
                        attempt += 1;
                    }
                    None => return Err(e),
                },
            }
        }
    }

    /// The incident's `db_commit_with_retry`: the unit of work runs once; a lock error on a
    /// write or at COMMIT is followed by ROLLBACK, a wait, and a second COMMIT that has
    /// nothing left to commit and so "succeeds". The write is gone; the caller is told it
    /// was saved. Lock errors on reads propagate, as they do outside an ORM's commit.
    fn write_commit_only<T>(
        &self,
        op: &str,
        work: &mut dyn FnMut(&mut dyn Tx) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let outcome = {
            let mut lease = self.inner.writer.acquire(op)?;
            run_once(lease.conn(), op, self.begin_statement(), true, work)
        };
        match outcome {
            Ok((value, None)) => Ok(value),
            Ok((value, Some(e))) => match self.retry_wait(op, &e, &self.inner.write_policy, 1) {
                Some(delay) => {
                    std::thread::sleep(delay);
                    self.inner.stats.dropped(op);
                    Ok(value)
                }
                None => Err(e),
            },
            Err(e) => {
                if let Some(code) = e.lock_code() {
                    self.inner.stats.lock_seen(op, code);
                }
                Err(e)
            }
        }
    }
}

/// One try of a unit of work on one connection. With `commit_only`, a lock error on a write
/// or at COMMIT does not fail the try: it is returned beside the value, after ROLLBACK.
fn run_once<T>(
    conn: &mut dyn RawConn,
    op: &str,
    begin: Option<&'static str>,
    commit_only: bool,
    work: &mut dyn FnMut(&mut dyn Tx) -> Result<T, DbError>,
) -> Result<(T, Option<DbError>), DbError> {
    if let Some(sql) = begin {
        conn.exec(op, sql, &[])?;
    }
    let mut tx = UnitTx {
        conn,
        op,
        in_tx: begin.is_some(),
        commit_only,
        flush_error: None,
    };
    let value = match work(&mut tx) {
        Ok(v) => v,
        Err(e) => {
            tx.rollback();
            return Err(e);
        }
    };
    let failure = match tx.flush_error.take() {
        Some(e) => Some(e),
        None if tx.in_tx => tx.conn.exec(op, "COMMIT", &[]).err(),
        None => None,
    };
    match failure {
        None => Ok((value, None)),
        Some(e) => {
            tx.rollback();
            if commit_only && e.is_lock() {
                Ok((value, Some(e)))
            } else {
                Err(e)
            }
        }
    }
}

/// The `Tx` a unit of work sees: starts the lazy transaction before the first write, and in
/// commit-only scope holds back a write's lock error until "commit", as an ORM's flush does.
struct UnitTx<'a> {
    conn: &'a mut dyn RawConn,
    op: &'a str,
    in_tx: bool,
    commit_only: bool,
    flush_error: Option<DbError>,
}

impl UnitTx<'_> {
    fn rollback(&mut self) {
        if self.in_tx {
            // Fails harmlessly when SQLite already rolled back on its own.
            let _ = self.conn.exec(self.op, "ROLLBACK", &[]);
            self.in_tx = false;
        }
    }

    fn write(&mut self, sql: &str, params: &[Value]) -> Result<(usize, i64), DbError> {
        if self.flush_error.is_some() {
            // The flush already failed: later writes of this unit never reach SQLite.
            return Ok((0, 0));
        }
        if !self.in_tx {
            self.conn.exec(self.op, "BEGIN", &[])?;
            self.in_tx = true;
        }
        match self.conn.exec(self.op, sql, params) {
            Err(e) if self.commit_only && e.is_lock() => {
                self.flush_error = Some(e);
                Ok((0, 0))
            }
            other => other,
        }
    }
}

impl Tx for UnitTx<'_> {
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<usize, DbError> {
        self.write(sql, params).map(|(n, _)| n)
    }

    fn insert(&mut self, sql: &str, params: &[Value]) -> Result<i64, DbError> {
        self.write(sql, params).map(|(_, id)| id)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        self.conn.rows(self.op, sql, params)
    }
}
