//! The time-based faults of a run (`[[faults]]`: an external write lock, a long reader, a
//! slow disk), run on a thread of their own from the moment the batch is posted. The lock and
//! the reader are separate processes (`process.rs`), never the server; `kill-worker` is
//! driven by the runner's own loop, which knows how far the batch is (`../kill.rs`). Their
//! records are the report's (`report::FaultRecord`). Stopping, signals and the registry of
//! child processes are `stop.rs`'s.
//!
//! Time-based faults (an external write lock, a long reader, a slow disk) run on a thread of
//! their own from the moment the batch is posted; the lock and the reader are separate
//! processes (`lockbench __fault lock|read`), never the server. `kill-worker` is driven by the
//! runner's own loop, which knows how far the batch is (`run/kill.rs`). Reaches the database
//! only through those processes and the slow-disk control file; never the server's memory.

mod process;

use process::hold_in_child;
pub use process::{fault_process, FaultEvent, FaultTarget, FAULT_URL_ENV};

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use crate::report::{FaultRecord, RestartRecord};
use crate::scenario::Fault;

/// How long a fault process waits to take its lock before it gives up.
pub const FAULT_LOCK_WAIT: Duration = Duration::from_secs(60);

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
        // The live view draws each fault's band once its record is in.
        if let Some(hub) = crate::run::live::current() {
            hub.watch_faults(records.clone());
        }
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

impl Drop for FaultRunner {
    /// A run that ends on an error path ends its faults too: a lock is released, a reader
    /// closed, the disk's delay restored.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Sleeps until `at` or until stopped (or interrupted); false when stopped.
pub(in crate::run) fn sleep_until(at: Instant, stop: &AtomicBool) -> bool {
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
    crate::run::restarts::round1(t.saturating_duration_since(ctx.load_started).as_secs_f64())
}

fn run_timed(
    fault: &Fault,
    ctx: &FaultContext,
    posted: Instant,
    stop: &AtomicBool,
    records: &Mutex<Vec<FaultRecord>>,
) {
    let spec = serde_json::to_value(fault).unwrap_or_default();
    let push = |started: Option<Instant>, ended: Option<Instant>, outcome: String| {
        let record = FaultRecord {
            kind: fault.kind().to_owned(),
            description: fault.describe(),
            spec: spec.clone(),
            started_s: started.map(|t| since(ctx, t)),
            ended_s: ended.map(|t| since(ctx, t)),
            outcome,
            lock_errors_before: None,
        };
        records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(record)
    };
    match fault {
        Fault::ExternalLock { at, hold, every } => {
            let mut next = posted + *at;
            while sleep_until(next, stop) {
                let (started, ended, outcome) = hold_in_child(ctx, "lock", *hold, stop);
                push(started, ended, outcome);
                match every {
                    Some(every) => next += *every,
                    None => return,
                }
            }
        }
        Fault::LongReader { at, hold } => {
            if sleep_until(posted + *at, stop) {
                let (started, ended, outcome) = hold_in_child(ctx, "read", *hold, stop);
                push(started, ended, outcome);
            }
        }
        Fault::SlowDisk {
            at,
            hold,
            sync_delay_ms,
        } => {
            if sleep_until(posted + *at, stop) {
                let (started, ended, outcome) = slow_disk(ctx, *hold, *sync_delay_ms, stop);
                push(started, ended, outcome);
            }
        }
        Fault::KillWorker { .. } => {}
    }
}

/// Every sync of every worker waits `sync_delay_ms` for `hold`: the delay is written to the
/// workers' control file (beside, then renamed, so a worker never reads half of it), then
/// removed.
fn slow_disk(
    ctx: &FaultContext,
    hold: Duration,
    sync_delay_ms: u64,
    stop: &AtomicBool,
) -> (Option<Instant>, Option<Instant>, String) {
    let tmp = ctx.sync_delay_control.with_extension("tmp");
    let written = std::fs::write(&tmp, sync_delay_ms.to_string())
        .and_then(|()| std::fs::rename(&tmp, &ctx.sync_delay_control));
    if let Err(e) = written {
        return (None, None, format!("could not set the sync delay: {e}"));
    }
    let started = Instant::now();
    sleep_until(started + hold, stop);
    let _ = std::fs::remove_file(&ctx.sync_delay_control);
    let ended = Instant::now();
    let outcome = format!(
        "every sync of every worker waited {sync_delay_ms} ms for {:.1} s",
        ended.duration_since(started).as_secs_f64()
    );
    (Some(started), Some(ended), outcome)
}
