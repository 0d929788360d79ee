//! `GET /api/stats`: this worker's counters as JSON, the same numbers `/metrics` renders as
//! Prometheus text, in a shape lockbench's runner reads without parsing text or looking at
//! the server's files: lock errors, retries and commit-only drops per unit of work (each
//! with the endpoint it serves), the batches the processor runs or ran here and how far its
//! latest run of each got (so the runner follows a batch without reading the database), the
//! WAL size and checkpoints. And `GET /api/settings` ([`WorkerSettingsReport`]): the
//! settings the worker was started with and those each of its connections really has. Both
//! are types the handler serialises and a reader deserialises; `Metrics::stats`
//! (`metrics.rs`) fills [`WorkerStats`]. Wire types only: no counting, no database.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::processor::ProcessorConfig;
use crate::storage::{ConnectionSettings, RetryConfig, StorageConfig};

/// The names the app's units of work are counted under, one per handler.
pub mod ops {
    pub const REGISTER: &str = "register";
    pub const REGISTRATION_UPDATES: &str = "registration_updates";
    pub const BATCH_STATUS: &str = "batch_status";
    pub const ADMIN_DASHBOARD: &str = "admin_dashboard";
    pub const CREATE_BATCH: &str = "create_batch";
    /// A worker opening its store while another process holds a lock (not a request).
    pub const WORKER_OPEN: &str = "worker_open";
}

/// The endpoint a unit of work serves; a worker opening its store is "worker start"; every
/// other unit that is not a handler's is the processor's (its checkpoints included).
pub fn endpoint_of(op: &str) -> &'static str {
    match op {
        ops::REGISTER => "POST /api/registrations",
        ops::REGISTRATION_UPDATES => "GET /api/registrations/updates",
        ops::BATCH_STATUS => "GET /api/batches/{id}/status",
        ops::ADMIN_DASHBOARD => "GET /admin",
        ops::CREATE_BATCH => "POST /api/batches",
        ops::WORKER_OPEN => "worker start",
        _ => "processor",
    }
}

/// One worker's counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerStats {
    pub worker: u32,
    pub pid: u32,
    pub sqlite_version: String,
    /// Per unit of work (the operation's name), its counters since the worker's first start
    /// (a restarted worker carries on from its predecessor's).
    pub units: BTreeMap<String, UnitStats>,
    /// Batches whose processor runs in this worker now.
    pub batches_running: Vec<i64>,
    /// Batches whose processor run has ended in this worker.
    pub batches_finished: Vec<i64>,
    /// Size of the database's WAL file now (0 without one).
    pub wal_bytes: u64,
    pub checkpoints_ok: u64,
    pub checkpoints_busy: u64,
    /// Batch id → how far this worker's processor got in its latest run of the batch (since
    /// this worker process started: a restarted worker lists only its own runs, while
    /// `batches_finished` carries on from its predecessor's).
    #[serde(default)]
    pub batch_progress: BTreeMap<i64, BatchProgress>,
}

/// `GET /api/settings`: one worker's settings, as it was asked to run and as each of its
/// connections really is (read back with PRAGMAs or `SHOW` when it was opened).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerSettingsReport {
    pub worker: u32,
    pub pid: u32,
    pub sqlite_version: String,
    pub requested: RequestedSettings,
    /// Every connection the worker has opened so far, in opening order.
    pub effective: Vec<ConnectionSettings>,
}

/// The settings a worker was started with that shape its database work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestedSettings {
    pub storage: StorageConfig,
    pub retry: RetryConfig,
    pub processor: ProcessorConfig,
}

/// How far one processor run over a batch got, as the processor reported it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchProgress {
    /// Photos in the batch's folder when the run started.
    pub total: u64,
    /// Photos the run has handled (processed, skipped as already recorded, or failed).
    pub done: u64,
    /// The run is going on in this worker now.
    pub running: bool,
    /// The run went through every photo and marked the batch done (whether or not its last
    /// writes landed); false for a run that stopped before (a panic).
    pub finished: bool,
}

/// One unit of work's counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UnitStats {
    /// The endpoint it serves ("processor" for the processor's units).
    pub endpoint: String,
    pub ok: u64,
    /// Lock errors seen on any try, retried or not, by code name.
    pub lock_errors: BTreeMap<String, u64>,
    pub failed_locked: u64,
    pub failed_other: u64,
    pub retries: u64,
    /// Writes a commit-only retry reported as saved after rolling them back.
    pub commit_only_dropped: u64,
}
