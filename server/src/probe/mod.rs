//! `lockbench contend`: W writers and R readers against one database file for a while.
//!
//! Each write is a read-then-write unit of work as an ORM issues it (SELECT the batch's
//! counter, INSERT a processing_log row, UPDATE the counter), so the deferred read-to-write
//! upgrade is exercised. Every write the caller was told had succeeded is remembered and
//! looked for afterwards: `lost_writes` is what an audit found missing, not an estimate.
//!
//! Both drivers are driven from OS threads through the store's blocking API (for sqlx, each
//! statement is awaited on the store's runtime while sqlx runs the connection on its own
//! worker thread), so the two drivers differ only in how statements reach SQLite.
//!
//! [`run_until`] ends early when its stop flag is set (Ctrl-C), reports what was measured
//! so far with `interrupted: true`, and removes the database it created in every case.
//! Probes that would measure nothing or cannot run are refused before anything starts
//! ([`ProbeConfig::validate`]).
//!
//! Uses the store's public API only; never opens connections or issues PRAGMAs itself.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use hdrhistogram::Histogram;

use crate::measure::{histogram, record_since};
use crate::now_sql;
use crate::storage::config::parse_duration;
use crate::storage::{self, DbError, RetryConfig, RetryPlan, StorageConfig, Store, Value};

mod report;

pub use report::*;

/// Version of the JSON document `contend --json` prints.
pub const PROBE_SCHEMA_VERSION: u32 = 1;

const WRITE_OP: &str = "probe_write";
const READ_OP: &str = "probe_read";

/// The probe's workload and settings; the flags of `lockbench contend`.
#[derive(Debug, Clone, Args)]
pub struct ProbeConfig {
    #[command(flatten)]
    pub storage: StorageConfig,
    #[command(flatten)]
    pub retry: RetryConfig,
    /// Concurrent writer threads.
    #[arg(long, default_value_t = ProbeConfig::default().writers)]
    pub writers: u32,
    /// Concurrent reader threads.
    #[arg(long, default_value_t = ProbeConfig::default().readers)]
    pub readers: u32,
    /// How long to run, e.g. 5s or 500ms.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub duration: Duration,
    /// Pause of each writer between two writes.
    #[arg(long, value_parser = parse_duration, default_value = "0ms")]
    pub write_interval: Duration,
    /// Pause of each reader between two reads.
    #[arg(long, value_parser = parse_duration, default_value = "0ms")]
    pub read_interval: Duration,
    /// Database file (default: a fresh file in a temporary folder, removed afterwards).
    #[arg(long)]
    pub db: Option<PathBuf>,
}

impl ProbeConfig {
    /// Refuses a probe that would measure nothing (no threads, a duration under
    /// [`MIN_DURATION`]) or could not run (more than [`MAX_THREADS_PER_ROLE`] writers or
    /// readers), naming the flag.
    pub fn validate(&self) -> Result<(), ProbeConfigError> {
        let invalid = |flag, reason: String| Err(ProbeConfigError::Invalid { flag, reason });
        if self.writers == 0 && self.readers == 0 {
            return invalid(
                "--writers/--readers",
                "0 writers and 0 readers: nothing would be measured; give at least one".into(),
            );
        }
        if self.duration < MIN_DURATION {
            return invalid(
                "--duration",
                format!(
                    "{} ms is under the shortest probe, {} ms",
                    self.duration.as_millis(),
                    MIN_DURATION.as_millis()
                ),
            );
        }
        for (flag, n) in [("--writers", self.writers), ("--readers", self.readers)] {
            if n > MAX_THREADS_PER_ROLE {
                return invalid(
                    flag,
                    format!(
                        "{n} threads is more than {MAX_THREADS_PER_ROLE} (each is a thread with its own latency histograms, all sharing pool_size connections)"
                    ),
                );
            }
        }
        Ok(())
    }
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            storage: StorageConfig::default(),
            retry: RetryConfig::default(),
            writers: 4,
            readers: 4,
            duration: Duration::from_secs(5),
            write_interval: Duration::ZERO,
            read_interval: Duration::ZERO,
            db: None,
        }
    }
}

/// The most writer threads, and separately the most reader threads, a probe takes.
///
/// Each writer is an OS thread with its own two latency histograms (1 µs .. 1 h at three
/// significant figures: about 0.2 MB each) and each reader one, kept until the end; 1000 of
/// each is about 0.6 GB of histograms and 2000 threads (each reserving Rust's 2 MiB stack),
/// which a small machine still holds, where `--writers 100000` asked for some 40 GB and the
/// process aborted. More would not measure SQLite anyway: every thread shares the store's
/// `pool_size` connections, so threads beyond a few hundred only queue for the pool (up to
/// its 30 s timeout), and many containers cap a process's threads at a few thousand.
pub const MAX_THREADS_PER_ROLE: u32 = 1000;

/// The shortest probe: under 100 ms, thread start-up and the first connection's opening
/// are most of the run, and the figures say little.
pub const MIN_DURATION: Duration = Duration::from_millis(100);

/// A probe that is refused before it runs, naming the flag.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProbeConfigError {
    #[error("invalid setting {flag}: {reason}")]
    Invalid { flag: &'static str, reason: String },
}

struct WriterOutcome {
    acked: Vec<String>,
    ok: Histogram<u64>,
    failed: Histogram<u64>,
    errors: BTreeMap<String, u64>,
}

fn note_error(errors: &mut BTreeMap<String, u64>, e: &DbError) {
    if e.is_lock() {
        return;
    }
    let key = e.to_string();
    if errors.len() < 5 || errors.contains_key(&key) {
        *errors.entry(key).or_default() += 1;
    }
}

/// Drops the probe's own PostgreSQL schema when the probe ends, however it ends.
struct DropSchema {
    url: String,
    schema: String,
}

impl Drop for DropSchema {
    fn drop(&mut self) {
        if let Err(e) = storage::postgres::drop_schema(&self.url, &self.schema) {
            eprintln!(
                "lockbench contend: could not drop the schema {}: {e}",
                self.schema
            );
        }
    }
}

/// Runs the probe and audits the database afterwards.
pub fn run(config: &ProbeConfig) -> anyhow::Result<ProbeReport> {
    run_until(config, &AtomicBool::new(false))
}

/// Runs the probe until its duration is over or `stop` becomes true (checked every 10 ms;
/// then `interrupted` is true in the report), and audits the database afterwards: the
/// figures are those of the time it ran. The database the probe created (no `--db`) is
/// removed however it ends; one the user named is left in place. A configuration
/// [`ProbeConfig::validate`] refuses is an error before anything runs.
pub fn run_until(config: &ProbeConfig, stop: &AtomicBool) -> anyhow::Result<ProbeReport> {
    config.validate()?;
    let retry = config.retry.plan()?;
    // Removed when this function returns, whatever it returns (the folder and the database,
    // its journal or WAL files with it).
    let tempdir;
    let path = match &config.db {
        Some(p) => p.clone(),
        None => {
            tempdir = tempfile::tempdir().context("creating a temporary folder")?;
            tempdir.path().join("contend.db")
        }
    };
    let mut storage = config.storage.clone();
    // Declared before the store so that the store closes before the schema is dropped.
    let _schema = own_schema(&mut storage)?;
    let store = open_store(&path, &storage, &retry)?;
    let batch_id = store
        .write("probe_setup", |tx| {
            tx.insert(
                concat!("INSERT INTO batches (source_dir, status, started_at) VALUES ('contend probe', 'running', ", now_sql!(), ")"),
                &[],
            )
        })
        .context("creating the probe's batch row")?;
    let syncs_before = (config.storage.sync_delay_ms > 0)
        .then(|| storage::vfs::sync_calls(config.storage.sync_delay()));

    let outcomes = run_threads(config, &store, batch_id, stop)?;
    let syncs = syncs_before.map(|b| storage::vfs::sync_calls(config.storage.sync_delay()) - b);

    let audit = audit(&store, batch_id, &outcomes.acked).context("auditing the database")?;
    Ok(report(
        config, &storage, &store, &path, syncs, outcomes, audit,
    ))
}

/// PostgreSQL: the probe works in a schema of its own, dropped when the returned guard drops
/// (unless the caller named one with --schema).
fn own_schema(storage: &mut StorageConfig) -> anyhow::Result<Option<DropSchema>> {
    Ok(
        match (
            &storage.database_url,
            storage.driver.is_postgres(),
            &storage.schema,
        ) {
            (Some(url), true, None) => {
                let schema = storage::postgres::unique_schema("contend");
                storage::postgres::create_schema(url, &schema).with_context(|| {
                    format!("database_url {}", storage::config::redact_url(url))
                })?;
                storage.schema = Some(schema.clone());
                Some(DropSchema {
                    url: url.clone(),
                    schema,
                })
            }
            _ => None,
        },
    )
}

/// Opens the store, naming the database (its URL redacted) when that fails.
fn open_store(
    path: &std::path::Path,
    storage: &StorageConfig,
    retry: &RetryPlan,
) -> anyhow::Result<Store> {
    Store::open(path, storage, retry).with_context(|| match &storage.database_url {
        Some(url) if storage.driver.is_postgres() => {
            format!("opening {}", storage::config::redact_url(url))
        }
        _ => format!("opening the database {}", path.display()),
    })
}

/// What the writer and reader threads saw, put together.
struct Outcomes {
    acked: Vec<String>,
    elapsed_s: f64,
    interrupted: bool,
    write_ok: Histogram<u64>,
    write_failed: Histogram<u64>,
    read_hist: Histogram<u64>,
    reads_failed: u64,
    other_errors: BTreeMap<String, u64>,
}

/// How often the probe looks at the caller's stop flag while its threads run.
const STOP_POLL: Duration = Duration::from_millis(10);

/// Runs the writer and reader threads for the configured duration (or until `interrupt`)
/// and collects what they saw. A thread that cannot be started stops and joins the ones
/// already running before the error is returned.
fn run_threads(
    config: &ProbeConfig,
    store: &Store,
    batch_id: i64,
    interrupt: &AtomicBool,
) -> anyhow::Result<Outcomes> {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let (threads, spawn_error) = spawn_threads(config, store, batch_id, &stop);
    let interrupted = spawn_error.is_none() && wait_out(config, started, interrupt);
    stop.store(true, Ordering::Relaxed);
    let (outcomes, panicked) = threads.join(interrupted);
    if let Some(e) = spawn_error {
        return Err(e);
    }
    if panicked {
        anyhow::bail!("a probe thread panicked");
    }
    Ok(Outcomes {
        elapsed_s: started.elapsed().as_secs_f64(),
        ..outcomes
    })
}

/// The probe's running threads.
struct Threads {
    writers: Vec<std::thread::JoinHandle<WriterOutcome>>,
    readers: Vec<std::thread::JoinHandle<ReaderOutcome>>,
}

/// What one reader saw: its latencies, its failures, its other errors by message.
type ReaderOutcome = (Histogram<u64>, u64, BTreeMap<String, u64>);

/// Starts the writers, then the readers; stops at the first thread that cannot be started
/// and returns the error beside the threads already running.
fn spawn_threads(
    config: &ProbeConfig,
    store: &Store,
    batch_id: i64,
    stop: &Arc<AtomicBool>,
) -> (Threads, Option<anyhow::Error>) {
    let mut threads = Threads {
        writers: Vec::new(),
        readers: Vec::new(),
    };
    for w in 0..config.writers {
        let (store, stop) = (store.clone(), stop.clone());
        let interval = config.write_interval;
        match std::thread::Builder::new()
            .name(format!("probe-writer-{w}"))
            .spawn(move || writer(&store, batch_id, w, interval, &stop))
        {
            Ok(handle) => threads.writers.push(handle),
            Err(e) => {
                return (
                    threads,
                    Some(anyhow::Error::new(e).context("starting writer threads")),
                )
            }
        }
    }
    for r in 0..config.readers {
        let (store, stop) = (store.clone(), stop.clone());
        let interval = config.read_interval;
        match std::thread::Builder::new()
            .name(format!("probe-reader-{r}"))
            .spawn(move || reader(&store, batch_id, interval, &stop))
        {
            Ok(handle) => threads.readers.push(handle),
            Err(e) => {
                return (
                    threads,
                    Some(anyhow::Error::new(e).context("starting reader threads")),
                )
            }
        }
    }
    (threads, None)
}

/// Waits until the probe's duration is over or `interrupt` is set; whether it was.
fn wait_out(config: &ProbeConfig, started: Instant, interrupt: &AtomicBool) -> bool {
    while started.elapsed() < config.duration {
        if interrupt.load(Ordering::SeqCst) {
            return true;
        }
        std::thread::sleep(STOP_POLL.min(config.duration.saturating_sub(started.elapsed())));
    }
    false
}

impl Threads {
    /// Joins every thread (told to stop already) and puts together what they saw (its
    /// `elapsed_s` is the caller's to set); whether one of them panicked.
    fn join(self, interrupted: bool) -> (Outcomes, bool) {
        let mut out = Outcomes {
            acked: Vec::new(),
            elapsed_s: 0.0,
            interrupted,
            write_ok: histogram(),
            write_failed: histogram(),
            read_hist: histogram(),
            reads_failed: 0,
            other_errors: BTreeMap::new(),
        };
        let mut panicked = false;
        for handle in self.writers {
            let Ok(outcome) = handle.join() else {
                panicked = true;
                continue;
            };
            out.acked.extend(outcome.acked);
            out.write_ok.add(&outcome.ok).ok();
            out.write_failed.add(&outcome.failed).ok();
            for (k, v) in outcome.errors {
                *out.other_errors.entry(k).or_default() += v;
            }
        }
        for handle in self.readers {
            let Ok((h, failed, errors)) = handle.join() else {
                panicked = true;
                continue;
            };
            out.read_hist.add(&h).ok();
            out.reads_failed += failed;
            for (k, v) in errors {
                *out.other_errors.entry(k).or_default() += v;
            }
        }
        (out, panicked)
    }
}

fn writer(
    store: &Store,
    batch_id: i64,
    w: u32,
    interval: Duration,
    stop: &AtomicBool,
) -> WriterOutcome {
    let mut out = WriterOutcome {
        acked: Vec::new(),
        ok: histogram(),
        failed: histogram(),
        errors: BTreeMap::new(),
    };
    let mut seq: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let key = format!("w{w}:{seq}");
        let started = Instant::now();
        let result = store.write(WRITE_OP, |tx| {
            let processed = tx.query_i64(
                "SELECT processed FROM batches WHERE id = ?1",
                &[Value::Int(batch_id)],
            )?;
            tx.insert(
                "INSERT INTO processing_log (batch_id, action, detail) VALUES (?1, 'probe', ?2)",
                &[Value::Int(batch_id), Value::Text(key.clone())],
            )?;
            tx.execute(
                concat!(
                    "UPDATE batches SET processed = processed + 1, updated_at = ",
                    now_sql!(),
                    " WHERE id = ?1"
                ),
                &[Value::Int(batch_id)],
            )?;
            Ok(processed)
        });
        match result {
            Ok(_) => {
                record_since(&mut out.ok, started);
                out.acked.push(key);
            }
            Err(e) => {
                record_since(&mut out.failed, started);
                note_error(&mut out.errors, &e);
            }
        }
        if !interval.is_zero() {
            std::thread::sleep(interval);
        }
    }
    out
}

fn reader(
    store: &Store,
    batch_id: i64,
    interval: Duration,
    stop: &AtomicBool,
) -> (Histogram<u64>, u64, BTreeMap<String, u64>) {
    let mut hist = histogram();
    let mut failed = 0;
    let mut errors = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let result = store.read(READ_OP, |tx| {
            let rows = tx.query(
                "SELECT count(*), max(id) FROM processing_log WHERE batch_id = ?1",
                &[Value::Int(batch_id)],
            )?;
            let status = tx.query(
                "SELECT status, processed, updated_at FROM batches WHERE id = ?1",
                &[Value::Int(batch_id)],
            )?;
            Ok(rows.len() + status.len())
        });
        match result {
            Ok(_) => record_since(&mut hist, started),
            Err(e) => {
                failed += 1;
                note_error(&mut errors, &e);
            }
        }
        if !interval.is_zero() {
            std::thread::sleep(interval);
        }
    }
    (hist, failed, errors)
}

struct Audit {
    lost: u64,
    duplicates: u64,
    unacknowledged: u64,
    counter: i64,
    rows: i64,
}

/// Compares what callers were told with what the database holds.
fn audit(store: &Store, batch_id: i64, acked: &[String]) -> Result<Audit, DbError> {
    let (found, counter) = store.read("audit", |tx| {
        let rows = tx.query(
            "SELECT detail FROM processing_log WHERE batch_id = ?1 AND action = 'probe'",
            &[Value::Int(batch_id)],
        )?;
        let counter = tx
            .query_i64(
                "SELECT processed FROM batches WHERE id = ?1",
                &[Value::Int(batch_id)],
            )?
            .unwrap_or(0);
        Ok((rows, counter))
    })?;
    let mut seen: HashMap<String, u64> = HashMap::with_capacity(found.len());
    for row in &found {
        if let Some(key) = row.first().and_then(Value::as_str) {
            *seen.entry(key.to_owned()).or_default() += 1;
        }
    }
    let lost = acked.iter().filter(|k| !seen.contains_key(*k)).count() as u64;
    let duplicates = seen.values().map(|n| n.saturating_sub(1)).sum();
    let acked_set: std::collections::HashSet<&String> = acked.iter().collect();
    let unacknowledged = seen.keys().filter(|k| !acked_set.contains(k)).count() as u64;
    Ok(Audit {
        lost,
        duplicates,
        unacknowledged,
        counter,
        rows: found.len() as i64,
    })
}
