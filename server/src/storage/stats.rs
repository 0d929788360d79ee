//! Counters per operation name and per lock code: a lock error is counted, never hidden.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

use super::error::{DbError, LockCode};

/// What happened to one operation name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OpStats {
    /// Units of work that returned success to the caller.
    pub ok: u64,
    /// Lock errors seen on any try, by code (retried or not).
    pub lock_errors: BTreeMap<LockCode, u64>,
    /// Units of work whose lock error reached the caller (retries exhausted or none).
    pub failed_locked: u64,
    /// Units of work that failed with any other error.
    pub failed_other: u64,
    /// Retries made (each wait-and-try-again counts once).
    pub retries: u64,
    /// Writes a commit-only retry reported as committed after rolling them back.
    pub commit_only_dropped: u64,
}

impl OpStats {
    pub fn lock_errors_total(&self) -> u64 {
        self.lock_errors.values().sum()
    }
}

/// Shared counters of one store.
#[derive(Debug, Default)]
pub struct Stats {
    ops: Mutex<BTreeMap<String, OpStats>>,
}

impl Stats {
    fn with<R>(&self, op: &str, f: impl FnOnce(&mut OpStats) -> R) -> R {
        let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = ops.get_mut(op) {
            return f(entry);
        }
        f(ops.entry(op.to_owned()).or_default())
    }

    pub(crate) fn ok(&self, op: &str) {
        self.with(op, |s| s.ok += 1);
    }

    pub(crate) fn lock_seen(&self, op: &str, code: LockCode) {
        self.with(op, |s| *s.lock_errors.entry(code).or_default() += 1);
    }

    pub(crate) fn retried(&self, op: &str) {
        self.with(op, |s| s.retries += 1);
    }

    pub(crate) fn dropped(&self, op: &str) {
        self.with(op, |s| s.commit_only_dropped += 1);
    }

    pub(crate) fn failed(&self, op: &str, err: &DbError) {
        self.with(op, |s| {
            if err.is_lock() {
                s.failed_locked += 1
            } else {
                s.failed_other += 1
            }
        });
    }

    /// A copy of every operation's counters.
    pub fn snapshot(&self) -> BTreeMap<String, OpStats> {
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Lock errors of all operations, by code.
    pub fn lock_errors_by_code(&self) -> BTreeMap<LockCode, u64> {
        let mut out = BTreeMap::new();
        for s in self.snapshot().values() {
            for (code, n) in &s.lock_errors {
                *out.entry(*code).or_default() += n;
            }
        }
        out
    }

    pub fn retries(&self) -> u64 {
        self.snapshot().values().map(|s| s.retries).sum()
    }
}
