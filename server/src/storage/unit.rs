//! Units of work on a `Store`: `write`, `write_patiently` and `read`, the transaction they
//! run in (`BEGIN` variant, lazy start, COMMIT), the one retry decision (the policy's wait,
//! then the patience's) and the loop around them, and the incident's commit-only "retry".
//! Every lock error of a unit, whatever its phase (the pool opening or configuring a
//! connection, BEGIN, a statement, COMMIT), is counted here once, under the unit's op. Runs statements on connections the pools lend; never opens
//! connections or issues PRAGMAs (`mod.rs` does).

use std::time::{Duration, Instant};

use super::pool::Pool;
use super::stats::RetryWhat;
use super::{
    DbError, RawConn, RetryPolicy, RetryScope, Row, Store, Tx, TxMode, Value, PATIENCE_STEP,
};

/// How long a unit of work keeps trying again while it fails on a lock, beyond its retry
/// policy (`Store::write_patiently`); `None`: the policy alone decides.
#[derive(Clone, Copy)]
struct Patience {
    until: Option<Instant>,
}

impl Patience {
    const NONE: Patience = Patience { until: None };

    fn of(patience: Duration) -> Patience {
        Patience {
            until: (!patience.is_zero()).then(|| Instant::now() + patience),
        }
    }

    /// The wait before the next try, while some patience is left.
    fn next_wait(self) -> Option<Duration> {
        let left = self.until?.checked_duration_since(Instant::now())?;
        (!left.is_zero()).then(|| PATIENCE_STEP.min(left))
    }
}

/// What comes after a lock error.
enum Next {
    /// The policy's retry: for commit-only scope, the second COMMIT.
    Policy(Duration),
    /// The policy has no retry left (or is not asked) but patience is left: the whole unit
    /// of work again.
    Patience(Duration),
}

impl Store {
    /// Runs a write unit of work with the configured tx mode, retry policy and scope.
    pub fn write<T>(
        &self,
        op: &str,
        mut work: impl FnMut(&mut dyn Tx) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        self.write_with(op, Patience::NONE, &mut work)
    }

    /// Like [`Store::write`], and while a lock error lasts after the retry policy gave up,
    /// the unit of work runs again, every [`PATIENCE_STEP`], until `patience` has passed since
    /// the call (a background job that can wait out a backup or a migration). Each lock error
    /// is counted (and logged) once, with whether another try follows; each further try is
    /// a retry; the unit counts as ok or failed once, by how it ended.
    pub fn write_patiently<T>(
        &self,
        op: &str,
        patience: Duration,
        mut work: impl FnMut(&mut dyn Tx) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        self.write_with(op, Patience::of(patience), &mut work)
    }

    fn write_with<T>(
        &self,
        op: &str,
        patience: Patience,
        work: &mut dyn FnMut(&mut dyn Tx) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let inner = &*self.inner;
        let result = match inner.retry.scope {
            RetryScope::UnitOfWork => self.run_with_retries(
                op,
                &inner.writer,
                self.begin_statement(),
                &inner.retry.write,
                patience,
                work,
            ),
            RetryScope::CommitOnly => self.write_commit_only(op, patience, work),
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
        let result = self.run_with_retries(
            op,
            pool,
            begin,
            &inner.retry.read,
            Patience::NONE,
            &mut work,
        );
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

    /// The one decision after an error of a unit of work: not a lock error, nothing (not
    /// counted here; the unit fails). A lock error: the policy's next wait, or else the
    /// patience's, or none; the error is counted and logged once with that decision, and a
    /// try that follows is counted as a retry.
    fn after_error(
        &self,
        op: &str,
        err: &DbError,
        policy: &RetryPolicy,
        attempt: u32,
        patience: Patience,
        tried: Try,
    ) -> Option<Next> {
        let code = err.lock_code()?;
        let next = match policy.delay_after(attempt) {
            Some(delay) => Some(Next::Policy(delay)),
            None => patience.next_wait().map(Next::Patience),
        };
        let retry = match next {
            None => RetryWhat::None,
            Some(Next::Policy(_)) if tried.commit_only => RetryWhat::Commit,
            Some(_) => RetryWhat::UnitOfWork,
        };
        let ran = tried.started.elapsed();
        self.inner.stats.lock_seen_after(op, code, retry, Some(ran));
        if next.is_some() {
            self.inner.stats.retried(op);
        }
        next
    }

    /// The transaction retry loop: runs the whole unit of work on a connection from `pool`,
    /// and again after the policy's (then the patience's) wait while it fails on a lock.
    /// Opening and configuring the connection is part of the try: its lock errors are the
    /// unit's like any other.
    fn run_with_retries<T>(
        &self,
        op: &str,
        pool: &Pool,
        begin: Option<&'static str>,
        policy: &RetryPolicy,
        patience: Patience,
        work: &mut dyn FnMut(&mut dyn Tx) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let mut attempt = 1;
        loop {
            let tried = Try::now(false);
            let outcome = pool
                .acquire(op)
                .and_then(|mut lease| run_once(lease.conn(), op, begin, false, work));
            match outcome {
                Ok((value, _)) => return Ok(value),
                Err(e) => match self.after_error(op, &e, policy, attempt, patience, tried) {
                    Some(Next::Policy(delay) | Next::Patience(delay)) => {
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
    /// was saved. Lock errors before any write (opening the connection, BEGIN, reads)
    /// propagate, as they do outside an ORM's commit. With patience, a unit that failed on a
    /// lock all the same runs again, whole, while the patience lasts.
    fn write_commit_only<T>(
        &self,
        op: &str,
        patience: Patience,
        work: &mut dyn FnMut(&mut dyn Tx) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        loop {
            let tried = Try::now(true);
            let outcome = self.inner.writer.acquire(op).and_then(|mut lease| {
                run_once(lease.conn(), op, self.begin_statement(), true, work)
            });
            let (next, err) = match outcome {
                Ok((value, None)) => return Ok(value),
                Ok((value, Some(e))) => {
                    // Each run of the unit gets the helper's retry afresh.
                    match self.after_error(op, &e, &self.inner.retry.write, 1, patience, tried) {
                        Some(Next::Policy(delay)) => {
                            std::thread::sleep(delay);
                            self.inner.stats.dropped(op);
                            return Ok(value);
                        }
                        next => (next, e),
                    }
                }
                // The helper wraps only the commit: no policy retry before it.
                Err(e) => {
                    let next = self.after_error(op, &e, &RetryPolicy::None, 1, patience, tried);
                    (next, e)
                }
            };
            match next {
                Some(Next::Patience(delay) | Next::Policy(delay)) => std::thread::sleep(delay),
                None => return Err(err),
            }
        }
    }
}

/// When a try of a unit of work started, and whether a policy retry after it re-issues only
/// the COMMIT (the commit-only helper) rather than the whole unit.
#[derive(Clone, Copy)]
struct Try {
    started: Instant,
    commit_only: bool,
}

impl Try {
    fn now(commit_only: bool) -> Try {
        Try {
            started: Instant::now(),
            commit_only,
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
