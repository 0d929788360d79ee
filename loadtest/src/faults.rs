//! Faults injected during a run (`[[faults]]`): the fault runner, the fault processes and the
//! records of what they did (and of the supervisor's restarts). Stopping, signals and the
//! registry of child processes are `stop.rs`'s.
//!
//! Time-based faults (an external write lock, a long reader, a slow disk) run on a thread of
//! their own from the moment the batch is posted; the lock and the reader are separate
//! processes (`lockbench __fault lock|read`), never the server. `kill-worker` is driven by the
//! runner's own loop, which knows how far the batch is (`run/kill.rs`). Reaches the database
//! only through those processes and the slow-disk control file; never the server's memory.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use lockbench_server::serve::read_restart_events;
use serde::{Deserialize, Serialize};

use crate::scenario::Fault;

/// How long a fault process waits to take its lock before it gives up.
pub const FAULT_LOCK_WAIT: Duration = Duration::from_secs(60);

// ---- what the report says about faults and restarts ------------------------------------------

/// One fault as it happened, times in seconds since the load started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRecord {
    pub kind: String,
    /// The fault as the scenario gives it, in words.
    pub description: String,
    /// The fault's settings as the scenario gives them.
    pub spec: serde_json::Value,
    /// When it took effect (the lock was held, the worker killed, the delay set).
    pub started_s: Option<f64>,
    pub ended_s: Option<f64>,
    /// What happened, in words ("held BEGIN IMMEDIATE for 35.0 s after waiting 0.0 s").
    pub outcome: String,
    /// kill-worker: the lock errors the workers had counted just before the kill (the
    /// report's total must still include them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_errors_before: Option<u64>,
}

/// One restart of a worker by the supervisor, or its giving up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestartRecord {
    /// Seconds since the load started when the worker's death was seen.
    pub t_s: f64,
    pub worker: u32,
    pub pid: u32,
    /// The dead worker's exit status.
    pub status: String,
    /// "restarted" or "gave-up".
    pub action: String,
    pub delay_ms: u64,
    pub new_pid: Option<u32>,
}

/// The supervisor's restarts.jsonl, read after the run ([`read_restart_events`]), with
/// times relative to the load's start. A log that cannot be read is logged and reads as no
/// restarts.
pub fn read_restarts(path: &Path, load_started: SystemTime) -> Vec<RestartRecord> {
    let events = match read_restart_events(path) {
        Ok(events) => events,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the restarts log");
            return Vec::new();
        }
    };
    let base = unix_ms(load_started) as f64;
    events
        .into_iter()
        .map(|e| RestartRecord {
            t_s: round1((e.unix_ms as f64 - base) / 1000.0),
            worker: e.worker,
            pid: e.pid,
            status: e.status,
            action: e.action.as_str().to_owned(),
            delay_ms: e.delay_ms,
            new_pid: e.new_pid,
        })
        .collect()
}

pub fn unix_ms(t: SystemTime) -> u128 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

// ---- time-based faults ------------------------------------------------------------------------

/// Where the faults act and how to start their processes.
pub struct FaultContext {
    /// lockbench's own binary (`__fault lock|read`).
    pub exe: PathBuf,
    pub db: PathBuf,
    /// PostgreSQL: (database URL, the run's schema) instead of the file.
    pub postgres: Option<(String, String)>,
    /// The file the workers read their sync delay from (`sync_delay_control`).
    pub sync_delay_control: PathBuf,
    /// When the load started (time line zero).
    pub load_started: Instant,
}

/// Time-based faults, running on their own thread.
pub struct FaultRunner {
    stop: Arc<AtomicBool>,
    records: Arc<Mutex<Vec<FaultRecord>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl FaultRunner {
    /// Starts the time-based faults of `faults`, measured from `posted`.
    pub fn start(faults: &[Fault], ctx: FaultContext, posted: Instant) -> FaultRunner {
        let stop = Arc::new(AtomicBool::new(false));
        let records = Arc::new(Mutex::new(Vec::new()));
        // (start offset, fault) for every occurrence, in time order.
        let timed: Vec<Fault> = faults
            .iter()
            .filter(|f| !matches!(f, Fault::KillWorker { .. }))
            .cloned()
            .collect();
        let handle = (!timed.is_empty()).then(|| {
            let stop = stop.clone();
            let records = records.clone();
            std::thread::spawn(move || {
                std::thread::scope(|scope| {
                    for fault in &timed {
                        let (stop, records, ctx) = (&stop, &records, &ctx);
                        scope.spawn(move || run_timed(fault, ctx, posted, stop, records));
                    }
                });
            })
        });
        FaultRunner {
            stop,
            records,
            handle,
        }
    }

    /// Records a fault the runner itself carried out (kill-worker).
    pub fn record(&self, record: FaultRecord) {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(record);
    }

    /// Ends every fault still in effect (a lock is released, the delay restored) and returns
    /// what happened, in time order.
    pub fn finish(mut self) -> Vec<FaultRecord> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        let mut records =
            std::mem::take(&mut *self.records.lock().unwrap_or_else(|p| p.into_inner()));
        records.sort_by(|a, b| {
            a.started_s
                .unwrap_or(f64::MAX)
                .total_cmp(&b.started_s.unwrap_or(f64::MAX))
        });
        records
    }
}

/// Sleeps until `at` or until stopped; false when stopped.
fn sleep_until(at: Instant, stop: &AtomicBool) -> bool {
    while Instant::now() < at {
        if stop.load(Ordering::SeqCst) || crate::stop::interrupted() {
            return false;
        }
        std::thread::sleep(
            at.saturating_duration_since(Instant::now())
                .min(Duration::from_millis(50)),
        );
    }
    true
}

fn since(ctx: &FaultContext, t: Instant) -> f64 {
    round1(t.saturating_duration_since(ctx.load_started).as_secs_f64())
}

fn run_timed(
    fault: &Fault,
    ctx: &FaultContext,
    posted: Instant,
    stop: &AtomicBool,
    records: &Mutex<Vec<FaultRecord>>,
) {
    let spec = serde_json::to_value(fault).unwrap_or_default();
    let push = |record: FaultRecord| {
        records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(record)
    };
    let record = |started: Option<Instant>, ended: Option<Instant>, outcome: String| FaultRecord {
        kind: fault.kind().to_owned(),
        description: fault.describe(),
        spec: spec.clone(),
        started_s: started.map(|t| since(ctx, t)),
        ended_s: ended.map(|t| since(ctx, t)),
        outcome,
        lock_errors_before: None,
    };
    match fault {
        Fault::ExternalLock { at, hold, every } => {
            let mut next = posted + *at;
            loop {
                if !sleep_until(next, stop) {
                    return;
                }
                let (started, ended, outcome) = hold_in_child(ctx, "lock", *hold, stop);
                push(record(started, ended, outcome));
                match every {
                    Some(every) => next += *every,
                    None => return,
                }
            }
        }
        Fault::LongReader { at, hold } => {
            if !sleep_until(posted + *at, stop) {
                return;
            }
            let (started, ended, outcome) = hold_in_child(ctx, "read", *hold, stop);
            push(record(started, ended, outcome));
        }
        Fault::SlowDisk {
            at,
            hold,
            sync_delay_ms,
        } => {
            if !sleep_until(posted + *at, stop) {
                return;
            }
            // Written beside and renamed, so a worker never reads a half-written file.
            let tmp = ctx.sync_delay_control.with_extension("tmp");
            let written = std::fs::write(&tmp, sync_delay_ms.to_string())
                .and_then(|()| std::fs::rename(&tmp, &ctx.sync_delay_control));
            if let Err(e) = written {
                push(record(
                    None,
                    None,
                    format!("could not set the sync delay: {e}"),
                ));
                return;
            }
            let started = Instant::now();
            sleep_until(started + *hold, stop);
            let _ = std::fs::remove_file(&ctx.sync_delay_control);
            let ended = Instant::now();
            push(record(
                Some(started),
                Some(ended),
                format!(
                    "every sync of every worker waited {sync_delay_ms} ms for {:.1} s",
                    ended.duration_since(started).as_secs_f64()
                ),
            ));
        }
        Fault::KillWorker { .. } => {}
    }
}

/// Runs `lockbench __fault lock|read` and follows its report lines; stops it early when the
/// run ends first.
fn hold_in_child(
    ctx: &FaultContext,
    what: &str,
    hold: Duration,
    stop: &AtomicBool,
) -> (Option<Instant>, Option<Instant>, String) {
    let mut command = Command::new(&ctx.exe);
    command.args(["__fault", what]);
    match &ctx.postgres {
        // The URL may hold a password: it goes by the environment, not the command line.
        Some((url, schema)) => {
            command.env(FAULT_URL_ENV, url).args(["--schema", schema]);
        }
        None => {
            command.arg("--db").arg(&ctx.db);
        }
    }
    command
        .arg("--hold")
        .arg(humantime::format_duration(hold).to_string())
        .arg("--wait")
        .arg(humantime::format_duration(FAULT_LOCK_WAIT).to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match crate::stop::spawn_group(&mut command) {
        Ok(c) => c,
        Err(e) => {
            return (
                None,
                None,
                format!("could not start the fault process: {e}"),
            )
        }
    };
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, serde_json::Value)>();
    if let Some(out) = child.stdout.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&line) {
                    let _ = tx.send((Instant::now(), v));
                }
            }
        });
    }
    let mut started = None;
    let mut ended = None;
    let mut outcome = String::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok((at, v)) => match v["event"].as_str() {
                Some("started") => started = Some(at),
                Some("ended") => {
                    ended = Some(at);
                    outcome = format!(
                        "{} held for {:.1} s after waiting {:.1} s for it",
                        v["detail"].as_str().unwrap_or(what),
                        v["held_ms"].as_f64().unwrap_or(0.0) / 1000.0,
                        v["waited_ms"].as_f64().unwrap_or(0.0) / 1000.0
                    );
                }
                Some("error") => {
                    outcome = format!(
                        "the fault process failed: {}",
                        v["message"].as_str().unwrap_or("?")
                    )
                }
                _ => {}
            },
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if stop.load(Ordering::SeqCst) || crate::stop::interrupted() {
                    use nix::sys::signal::{killpg, Signal};
                    use nix::unistd::Pid;
                    let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGTERM);
                    ended.get_or_insert_with(Instant::now);
                    if outcome.is_empty() {
                        outcome = "ended early: the run stopped while it was held".into();
                    }
                    break;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = child.wait();
    crate::stop::forget_child(pid);
    if outcome.is_empty() {
        outcome = match child.stderr.take() {
            Some(mut e) => {
                let mut text = String::new();
                let _ = std::io::Read::read_to_string(&mut e, &mut text);
                format!("the fault process ended without a report: {}", text.trim())
            }
            None => "the fault process ended without a report".into(),
        };
    }
    (started, ended, outcome)
}

/// The environment variable that gives a fault process its PostgreSQL URL.
pub const FAULT_URL_ENV: &str = "LOCKBENCH_FAULT_DATABASE_URL";

/// Where a fault process acts: a SQLite file, or a PostgreSQL schema.
pub enum FaultTarget {
    File(PathBuf),
    Postgres { url: String, schema: String },
}

/// `lockbench __fault lock|read`: the fault process itself. Prints JSON lines: `started`,
/// then `ended` with the times, or `error`. On PostgreSQL `lock` is a `LOCK TABLE` on the
/// app's tables and `read` a long transaction holding row locks.
pub fn fault_process(
    what: &str,
    target: &FaultTarget,
    hold: Duration,
    wait: Duration,
) -> anyhow::Result<()> {
    use lockbench_server::storage::{hold, postgres};
    use std::io::Write;
    let say = |v: serde_json::Value| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{v}");
        let _ = out.flush();
    };
    let started = |detail: &str| say(serde_json::json!({"event": "started", "detail": detail}));
    let result = match (what, target) {
        ("lock", FaultTarget::File(db)) => {
            hold::hold_write_lock(db, hold, wait, started).map(|h| (h, "the write lock"))
        }
        ("read", FaultTarget::File(db)) => {
            hold::hold_read_transaction(db, "registrations", hold, wait, || {
                started("a read transaction")
            })
            .map(|h| (h, "a read transaction"))
        }
        ("lock", FaultTarget::Postgres { url, schema }) => {
            postgres::hold_table_locks(url, schema, hold, wait, started)
                .map(|h| (h, "LOCK TABLE on the app's tables"))
        }
        ("read", FaultTarget::Postgres { url, schema }) => {
            postgres::hold_row_locks(url, schema, hold, wait, started)
                .map(|h| (h, "a transaction holding the batches' row locks"))
        }
        (other, _) => anyhow::bail!("__fault: unknown fault {other:?} (lock or read)"),
    };
    match result {
        Ok((held, detail)) => {
            say(serde_json::json!({
                "event": "ended",
                "detail": detail,
                "waited_ms": held.waited.as_millis() as u64,
                "held_ms": held.held.as_millis() as u64,
            }));
            Ok(())
        }
        Err(e) => {
            say(serde_json::json!({"event": "error", "message": e.to_string()}));
            Err(anyhow::anyhow!("{e}"))
        }
    }
}
