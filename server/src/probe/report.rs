//! What `lockbench contend` reports: [`ProbeReport`] (the JSON `--json` prints, versioned by
//! `PROBE_SCHEMA_VERSION`), put together from the settings, what the threads saw and the
//! audit, and its human summary. Runs nothing; reads the store's counters and settings.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::{Audit, Outcomes, ProbeConfig, PROBE_SCHEMA_VERSION};
use crate::storage::{
    self, ConnectionSettings, LockCode, OpStats, RetryConfig, StorageConfig, Store,
};

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
    pub max: u64,
}

impl Latency {
    pub fn from_histogram(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p95: h.value_at_quantile(0.95),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RequestedSettings {
    pub storage: StorageConfig,
    pub retry: RetryConfig,
}

#[derive(Debug, Clone, Serialize)]
pub struct Workload {
    pub writers: u32,
    pub readers: u32,
    pub duration_ms: u64,
    pub write_interval_ms: u64,
    pub read_interval_ms: u64,
    pub db: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LockErrors {
    /// Every lock error seen, on first tries and retries alike.
    pub total: u64,
    pub by_code: BTreeMap<LockCode, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbeLatency {
    /// Write units that succeeded (retries included in their time).
    pub write: Latency,
    /// Write units that failed: how long the caller waited for the error.
    pub write_failed: Latency,
    pub read: Latency,
}

/// What `lockbench contend --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    pub schema_version: u32,
    pub sqlite_version: String,
    pub settings_requested: RequestedSettings,
    pub settings_effective: Vec<ConnectionSettings>,
    pub workload: Workload,
    pub elapsed_s: f64,
    pub writes_ok: u64,
    pub writes_failed: u64,
    pub reads_ok: u64,
    pub reads_failed: u64,
    /// Failures that were not lock errors, by message (first 5 kinds).
    pub other_errors: BTreeMap<String, u64>,
    pub lock_errors: LockErrors,
    pub retries: u64,
    /// Writes that a commit-only retry reported as saved after rolling them back.
    pub commit_only_dropped: u64,
    /// Writes acknowledged to the caller that the audit did not find in the database.
    pub lost_writes: u64,
    /// Writes found more than once.
    pub duplicate_writes: u64,
    /// Rows found that no caller was told about (a failure reported for a write that landed).
    pub unacknowledged_writes: u64,
    /// The probe was stopped before its duration was over (Ctrl-C): the figures are those
    /// measured until then, the audit included.
    pub interrupted: bool,
    /// The batch counter the writers incremented, against the rows they inserted.
    pub counter: i64,
    pub counter_rows: i64,
    /// fsync calls made through the sync-delay VFS during the run (absent when no delay).
    pub syncs: Option<u64>,
    pub latency_us: ProbeLatency,
    pub ops: BTreeMap<String, OpStats>,
}

/// The probe's report from its settings, what the threads saw and the audit.
pub(super) fn report(
    config: &ProbeConfig,
    storage: &StorageConfig,
    store: &Store,
    path: &std::path::Path,
    syncs: Option<u64>,
    outcomes: Outcomes,
    audit: Audit,
) -> ProbeReport {
    let Outcomes {
        acked: _,
        elapsed_s,
        interrupted,
        write_ok,
        write_failed,
        read_hist,
        reads_failed,
        other_errors,
    } = outcomes;
    let ops = store.stats().snapshot();
    let by_code = store.stats().lock_errors_by_code();
    let commit_only_dropped = ops.values().map(|s| s.commit_only_dropped).sum();

    ProbeReport {
        schema_version: PROBE_SCHEMA_VERSION,
        sqlite_version: storage::sqlite_version().to_owned(),
        settings_requested: RequestedSettings {
            storage: StorageConfig {
                database_url: storage
                    .database_url
                    .as_deref()
                    .map(storage::config::redact_url),
                ..storage.clone()
            },
            retry: config.retry.clone(),
        },
        settings_effective: store.effective_settings(),
        workload: Workload {
            writers: config.writers,
            readers: config.readers,
            duration_ms: config.duration.as_millis() as u64,
            write_interval_ms: config.write_interval.as_millis() as u64,
            read_interval_ms: config.read_interval.as_millis() as u64,
            db: if config.db.is_some() {
                path.display().to_string()
            } else {
                "temporary file".into()
            },
        },
        elapsed_s,
        writes_ok: write_ok.len(),
        writes_failed: write_failed.len(),
        reads_ok: read_hist.len(),
        reads_failed,
        other_errors,
        lock_errors: LockErrors {
            total: by_code.values().sum(),
            by_code,
        },
        retries: store.stats().retries(),
        commit_only_dropped,
        interrupted,
        lost_writes: audit.lost,
        duplicate_writes: audit.duplicates,
        unacknowledged_writes: audit.unacknowledged,
        counter: audit.counter,
        counter_rows: audit.rows,
        syncs,
        latency_us: ProbeLatency {
            write: Latency::from_histogram(&write_ok),
            write_failed: Latency::from_histogram(&write_failed),
            read: Latency::from_histogram(&read_hist),
        },
        ops,
    }
}

impl ProbeReport {
    /// The human summary `lockbench contend` prints.
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "verdict: {}", self.verdict());
        if self.interrupted {
            let _ = writeln!(
                s,
                "interrupted after {:.1} s of {:.1} s: the figures are those measured until then",
                self.elapsed_s,
                self.workload.duration_ms as f64 / 1000.0
            );
        }
        let _ = writeln!(
            s,
            "writes: {} ok, {} failed   reads: {} ok, {} failed   in {:.1} s",
            self.writes_ok, self.writes_failed, self.reads_ok, self.reads_failed, self.elapsed_s
        );
        let codes: Vec<String> = self
            .lock_errors
            .by_code
            .iter()
            .map(|(c, n)| format!("{c}={n}"))
            .collect();
        let _ = writeln!(
            s,
            "lock errors: {} [{}]   retries: {}   commit-only dropped: {}",
            self.lock_errors.total,
            codes.join(" "),
            self.retries,
            self.commit_only_dropped
        );
        let _ = writeln!(
            s,
            "audit: lost {}  duplicate {}  unacknowledged {}  counter {} vs rows {}",
            self.lost_writes,
            self.duplicate_writes,
            self.unacknowledged_writes,
            self.counter,
            self.counter_rows
        );
        for (name, l) in [
            ("write", &self.latency_us.write),
            ("write failed", &self.latency_us.write_failed),
            ("read", &self.latency_us.read),
        ] {
            let _ = writeln!(
                s,
                "latency {name:<12} n={:<7} p50={}µs p95={}µs p99={}µs max={}µs",
                l.count, l.p50, l.p95, l.p99, l.max
            );
        }
        if let Some(syncs) = self.syncs {
            let _ = writeln!(s, "syncs through the delay VFS: {syncs}");
        }
        for (msg, n) in &self.other_errors {
            let _ = writeln!(s, "other error x{n}: {msg}");
        }
        s.push_str(&self.settings_lines());
        s
    }

    /// The verdict's words: lost writes first, then lock errors.
    fn verdict(&self) -> String {
        if self.lost_writes > 0 {
            format!(
                "LOST WRITES: {} acknowledged writes are not in the database",
                self.lost_writes
            )
        } else if self.lock_errors.total > 0 {
            format!("database is locked: {} lock errors", self.lock_errors.total)
        } else {
            "no lock errors, no lost writes".to_owned()
        }
    }

    /// The settings requested, those of each connection, and the SQLite version.
    fn settings_lines(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "requested: {}", self.settings_requested.storage);
        for c in &self.settings_effective {
            let _ = writeln!(
                s,
                "  conn {:>2} {:<7} journal_mode={} busy_timeout={} synchronous={} read_only={}",
                c.id,
                format!("{:?}", c.role).to_lowercase(),
                c.journal_mode,
                c.busy_timeout_ms,
                c.synchronous,
                c.read_only
            );
        }
        let _ = writeln!(s, "sqlite {}", self.sqlite_version);
        s
    }
}
