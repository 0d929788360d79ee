//! Per-worker metrics, rendered as Prometheus text. Every series carries the worker id, so a
//! scraper that reaches several workers through one port can tell them apart.
//!
//! Counts what the HTTP layer and the processor report, and reads the store's counters and the
//! WAL file's size; never writes to the database. The processor's counters (checkpoints
//! included) and the finished batches are also counted in the store's `Stats`
//! ([`Metrics::keep_in`]), whose events file carries them across a worker's restart.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::stats::{endpoint_of, BatchProgress, UnitStats, WorkerStats};
use crate::processor::ProcessorEvents;
use crate::storage::{vfs, Store};

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default)]
struct RouteLatency {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum_s: f64,
}

/// What the processor reports while it runs.
#[derive(Debug, Default)]
pub struct ProcessorCounters {
    pub photos_processed: AtomicU64,
    pub photos_failed: AtomicU64,
    pub persons_saved: AtomicU64,
    pub persons_uploaded: AtomicU64,
    /// Units of work that failed even after their retries (the photo is then marked failed).
    pub units_failed: AtomicU64,
    /// Failure records that could not be written either (lost unless the audit finds them).
    pub failure_records_lost: AtomicU64,
    pub checkpoints_ok: AtomicU64,
    pub checkpoints_busy: AtomicU64,
    /// Acknowledgements that could not be written to the acks file.
    pub acks_unwritten: AtomicU64,
}

impl ProcessorCounters {
    /// Each counter with the name it is journaled under (`Stats::add`) and rendered as.
    fn named(&self) -> [(&'static str, &AtomicU64); 9] {
        [
            ("photos_processed", &self.photos_processed),
            ("photos_failed", &self.photos_failed),
            ("persons_saved", &self.persons_saved),
            ("persons_uploaded", &self.persons_uploaded),
            ("units_failed", &self.units_failed),
            ("failure_records_lost", &self.failure_records_lost),
            ("acks_unwritten", &self.acks_unwritten),
            ("checkpoints_ok", &self.checkpoints_ok),
            ("checkpoints_busy", &self.checkpoints_busy),
        ]
    }
}

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, RouteLatency>>,
    pub processor: ProcessorCounters,
    /// Batch id → the progress of this worker's latest processor run over it.
    pub batches: Mutex<BTreeMap<i64, BatchProgress>>,
    /// Batches whose processor run has ended here or in a predecessor of this worker
    /// (whether or not its last writes landed).
    pub finished: Mutex<BTreeSet<i64>>,
    /// Batches whose processor is running in this worker now.
    pub running: Mutex<BTreeSet<i64>>,
    /// The store whose `Stats` also count the processor's counters and finished batches.
    kept_in: OnceLock<Store>,
}

impl Metrics {
    /// From now on the processor's counters and the finished batches are also counted in
    /// `store`'s `Stats` (journaled when those are: `Stats::journal_to`), and what those hold
    /// already, a predecessor's totals replayed from the events file, is taken over. Call it
    /// once, before the processor runs; a second call changes nothing.
    pub fn keep_in(&self, store: &Store) {
        if self.kept_in.set(store.clone()).is_err() {
            return;
        }
        let stats = store.stats();
        let counters = stats.counters();
        for (name, counter) in self.processor.named() {
            if let Some(n) = counters.get(name) {
                counter.fetch_add(*n, Ordering::Relaxed);
            }
        }
        lock(&self.finished).extend(stats.batches_finished());
    }

    /// Adds 1 to a processor counter, and to its journaled twin.
    fn bump(&self, counter: &AtomicU64, name: &str) {
        if let Some(store) = self.kept_in.get() {
            store.stats().add(name);
        }
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn observe(&self, route: &str, status: u16, elapsed: Duration) {
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *requests.entry((route.to_owned(), status)).or_default() += 1;
        drop(requests);
        let secs = elapsed.as_secs_f64();
        let mut latency = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let entry = latency.entry(route.to_owned()).or_default();
        entry.count += 1;
        entry.sum_s += secs;
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                entry.buckets[i] += 1;
            }
        }
    }

    /// The Prometheus text exposition of everything this worker knows.
    pub fn render(&self, worker: u32, store: &Store) -> String {
        let mut out = String::new();
        self.render_worker_info(&mut out, worker);
        self.render_http(&mut out, worker);
        self.render_units_of_work(&mut out, worker, store);
        self.render_processor(&mut out, worker);
        self.render_disk(&mut out, worker, store);
        out
    }

    /// Which worker answered: its id, pid and SQLite version.
    fn render_worker_info(&self, out: &mut String, w: u32) {
        let _ = writeln!(
            out,
            "# HELP lockbench_worker_info The worker that answered."
        );
        let _ = writeln!(out, "# TYPE lockbench_worker_info gauge");
        let _ = writeln!(
            out,
            "lockbench_worker_info{{worker=\"{w}\",pid=\"{}\",sqlite_version=\"{}\"}} 1",
            std::process::id(),
            crate::storage::sqlite_version()
        );
    }

    /// Requests by route and status, and their latency histograms.
    fn render_http(&self, out: &mut String, w: u32) {
        let _ = writeln!(out, "# TYPE lockbench_http_requests_total counter");
        for ((route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "lockbench_http_requests_total{{worker=\"{w}\",route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# TYPE lockbench_http_request_duration_seconds histogram"
        );
        for (route, l) in self
            .latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            for (bound, n) in BUCKETS.iter().zip(l.buckets.iter()) {
                let _ = writeln!(
                    out,
                    "lockbench_http_request_duration_seconds_bucket{{worker=\"{w}\",route=\"{route}\",le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "lockbench_http_request_duration_seconds_bucket{{worker=\"{w}\",route=\"{route}\",le=\"+Inf\"}} {}",
                l.count
            );
            let _ = writeln!(
                out,
                "lockbench_http_request_duration_seconds_sum{{worker=\"{w}\",route=\"{route}\"}} {}",
                l.sum_s
            );
            let _ = writeln!(
                out,
                "lockbench_http_request_duration_seconds_count{{worker=\"{w}\",route=\"{route}\"}} {}",
                l.count
            );
        }
    }

    /// The store's units of work: lock errors, retries, outcomes, commit-only drops.
    fn render_units_of_work(&self, out: &mut String, w: u32, store: &Store) {
        let ops = store.stats().snapshot();
        let _ = writeln!(
            out,
            "# HELP lockbench_db_lock_errors_total Lock errors seen, retried or not."
        );
        let _ = writeln!(out, "# TYPE lockbench_db_lock_errors_total counter");
        for (op, s) in &ops {
            for (code, n) in &s.lock_errors {
                let _ = writeln!(
                    out,
                    "lockbench_db_lock_errors_total{{worker=\"{w}\",op=\"{op}\",code=\"{code}\"}} {n}"
                );
            }
        }
        let _ = writeln!(out, "# TYPE lockbench_db_retries_total counter");
        for (op, s) in &ops {
            let _ = writeln!(
                out,
                "lockbench_db_retries_total{{worker=\"{w}\",op=\"{op}\"}} {}",
                s.retries
            );
        }
        let _ = writeln!(
            out,
            "# HELP lockbench_db_units_total Units of work by outcome."
        );
        let _ = writeln!(out, "# TYPE lockbench_db_units_total counter");
        for (op, s) in &ops {
            for (outcome, n) in [
                ("ok", s.ok),
                ("failed_locked", s.failed_locked),
                ("failed_other", s.failed_other),
            ] {
                let _ = writeln!(
                    out,
                    "lockbench_db_units_total{{worker=\"{w}\",op=\"{op}\",outcome=\"{outcome}\"}} {n}"
                );
            }
        }
        let _ = writeln!(out, "# HELP lockbench_db_commit_only_dropped_total Writes a commit-only retry reported as saved after rolling them back.");
        let _ = writeln!(out, "# TYPE lockbench_db_commit_only_dropped_total counter");
        for (op, s) in &ops {
            let _ = writeln!(
                out,
                "lockbench_db_commit_only_dropped_total{{worker=\"{w}\",op=\"{op}\"}} {}",
                s.commit_only_dropped
            );
        }
    }

    /// The processor's counters and the batches it runs or ran here.
    fn render_processor(&self, out: &mut String, w: u32) {
        let _ = writeln!(out, "# TYPE lockbench_processor_total counter");
        for (what, v) in self
            .processor
            .named()
            .into_iter()
            .filter(|(what, _)| !what.starts_with("checkpoints_"))
        {
            let _ = writeln!(
                out,
                "lockbench_processor_total{{worker=\"{w}\",what=\"{what}\"}} {}",
                v.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(out, "# TYPE lockbench_batch_photos gauge");
        for (batch, BatchProgress { total, done, .. }) in self
            .batches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(out, "lockbench_batch_photos{{worker=\"{w}\",batch=\"{batch}\",state=\"total\"}} {total}");
            let _ = writeln!(
                out,
                "lockbench_batch_photos{{worker=\"{w}\",batch=\"{batch}\",state=\"done\"}} {done}"
            );
        }
        let _ = writeln!(out, "# HELP lockbench_batch_processor_finished The processor's run over this batch has ended in this worker.");
        let _ = writeln!(out, "# TYPE lockbench_batch_processor_finished gauge");
        for batch in self
            .finished
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "lockbench_batch_processor_finished{{worker=\"{w}\",batch=\"{batch}\"}} 1"
            );
        }
        let _ = writeln!(out, "# HELP lockbench_batch_processor_running A processor is running this batch in this worker now.");
        let _ = writeln!(out, "# TYPE lockbench_batch_processor_running gauge");
        for batch in self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "lockbench_batch_processor_running{{worker=\"{w}\",batch=\"{batch}\"}} 1"
            );
        }
    }

    /// The fsync delay in effect, fsync calls, WAL size and checkpoints.
    fn render_disk(&self, out: &mut String, w: u32, store: &Store) {
        let p = &self.processor;
        let configured = store.config().sync_delay();
        let (delay, source) = match vfs::sync_delay_override() {
            Some(d) => (d, "control"),
            None => (configured, "config"),
        };
        let _ = writeln!(out, "# HELP lockbench_sync_delay_ms Delay before every fsync in effect now: the configured sync_delay_ms, or the sync_delay_control file's.");
        let _ = writeln!(out, "# TYPE lockbench_sync_delay_ms gauge");
        let _ = writeln!(
            out,
            "lockbench_sync_delay_ms{{worker=\"{w}\",source=\"{source}\"}} {}",
            delay.as_secs_f64() * 1000.0
        );
        let _ = writeln!(out, "# HELP lockbench_db_syncs_total fsync calls through the slow-disk VFS (0 when the database is on the default VFS).");
        let _ = writeln!(out, "# TYPE lockbench_db_syncs_total counter");
        let _ = writeln!(
            out,
            "lockbench_db_syncs_total{{worker=\"{w}\"}} {}",
            vfs::sync_calls(configured)
        );
        let wal = wal_bytes(store);
        let _ = writeln!(out, "# TYPE lockbench_wal_bytes gauge");
        let _ = writeln!(out, "lockbench_wal_bytes{{worker=\"{w}\"}} {wal}");
        let _ = writeln!(out, "# TYPE lockbench_checkpoints_total counter");
        let _ = writeln!(
            out,
            "lockbench_checkpoints_total{{worker=\"{w}\",result=\"ok\"}} {}",
            p.checkpoints_ok.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "lockbench_checkpoints_total{{worker=\"{w}\",result=\"busy\"}} {}",
            p.checkpoints_busy.load(Ordering::Relaxed)
        );
    }
}

/// The processor's reports land in this worker's counters and batch maps.
impl ProcessorEvents for Metrics {
    fn batch_running(&self, batch_id: i64) {
        lock(&self.running).insert(batch_id);
        if let Some(p) = lock(&self.batches).get_mut(&batch_id) {
            p.running = true;
        }
    }

    fn batch_stopped(&self, batch_id: i64) {
        lock(&self.running).remove(&batch_id);
        if let Some(p) = lock(&self.batches).get_mut(&batch_id) {
            p.running = false;
        }
    }

    fn batch_started(&self, batch_id: i64, total: u64) {
        // A new run: its own progress, whatever an earlier run here reached.
        let running = lock(&self.running).contains(&batch_id);
        lock(&self.batches).insert(
            batch_id,
            BatchProgress {
                total,
                done: 0,
                running,
                finished: false,
            },
        );
    }

    fn batch_progress(&self, batch_id: i64, done: u64) {
        if let Some(p) = lock(&self.batches).get_mut(&batch_id) {
            p.done = done;
        }
    }

    fn batch_finished(&self, batch_id: i64) {
        if let Some(p) = lock(&self.batches).get_mut(&batch_id) {
            p.finished = true;
        }
        if let Some(store) = self.kept_in.get() {
            store.stats().batch_finished(batch_id);
        }
        lock(&self.finished).insert(batch_id);
    }

    fn photo_processed(&self) {
        self.bump(&self.processor.photos_processed, "photos_processed");
    }

    fn unit_failed(&self) {
        self.bump(&self.processor.units_failed, "units_failed");
    }

    fn photo_failed(&self) {
        self.bump(&self.processor.photos_failed, "photos_failed");
    }

    fn failure_record_lost(&self) {
        self.bump(&self.processor.failure_records_lost, "failure_records_lost");
    }

    fn person_saved(&self) {
        self.bump(&self.processor.persons_saved, "persons_saved");
    }

    fn person_uploaded(&self) {
        self.bump(&self.processor.persons_uploaded, "persons_uploaded");
    }

    fn ack_unwritten(&self) {
        self.bump(&self.processor.acks_unwritten, "acks_unwritten");
    }

    fn checkpoint(&self, completed: bool) {
        if completed {
            self.bump(&self.processor.checkpoints_ok, "checkpoints_ok");
        } else {
            self.bump(&self.processor.checkpoints_busy, "checkpoints_busy");
        }
    }
}

/// Locks a metrics map; a panic elsewhere does not hide what was counted before it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Size of the database's WAL file (0 when there is none).
pub fn wal_bytes(store: &Store) -> u64 {
    let mut wal = store.path().as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0)
}

impl Metrics {
    /// This worker's counters, as `/api/stats` answers them.
    pub fn stats(&self, worker: u32, store: &Store) -> WorkerStats {
        let units = store
            .stats()
            .snapshot()
            .into_iter()
            .map(|(op, s)| {
                let unit = UnitStats {
                    endpoint: endpoint_of(&op).to_owned(),
                    ok: s.ok,
                    lock_errors: s
                        .lock_errors
                        .iter()
                        .map(|(code, n)| (code.to_string(), *n))
                        .collect(),
                    failed_locked: s.failed_locked,
                    failed_other: s.failed_other,
                    retries: s.retries,
                    commit_only_dropped: s.commit_only_dropped,
                };
                (op, unit)
            })
            .collect();
        let ids = |set: &std::sync::Mutex<std::collections::BTreeSet<i64>>| -> Vec<i64> {
            set.lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .copied()
                .collect()
        };
        WorkerStats {
            worker,
            pid: std::process::id(),
            sqlite_version: crate::storage::sqlite_version().to_owned(),
            units,
            batches_running: ids(&self.running),
            batches_finished: ids(&self.finished),
            wal_bytes: wal_bytes(store),
            checkpoints_ok: self.processor.checkpoints_ok.load(Ordering::Relaxed),
            checkpoints_busy: self.processor.checkpoints_busy.load(Ordering::Relaxed),
            batch_progress: self
                .batches
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}
