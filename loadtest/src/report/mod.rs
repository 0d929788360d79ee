//! The report of one `lockbench run`: a versioned JSON schema (`Report`), and the human
//! renderings generated from the same data (`markdown`, `html`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub mod html;
pub mod markdown;

/// Bumped whenever a field changes meaning or disappears.
pub const REPORT_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    pub lockbench_version: String,
    pub scenario: ScenarioInfo,
    /// UTC, RFC 3339.
    pub started_at: String,
    pub target: Target,
    pub verdict: Verdict,
    /// The scenario's server settings as requested (storage, retry, processor, workers).
    pub settings_requested: serde_json::Value,
    /// What each worker's connections really had (`/api/settings`); absent with --target.
    pub settings_effective: Option<Vec<WorkerSettings>>,
    pub sqlite_version: Option<String>,
    pub machine: Machine,
    /// The user mix that ran.
    pub users: UsersInfo,
    /// Client-side figures per endpoint ("METHOD name"), complete in both modes.
    pub requests: BTreeMap<String, EndpointStats>,
    pub lock_errors: LockErrors,
    /// Server-side retries (absent with --target).
    pub retries: Option<u64>,
    /// Writes the commit-only retry scope reported as saved after rolling them back.
    pub commit_only_dropped: Option<u64>,
    pub batch: Option<BatchFigures>,
    pub audit: Option<Audit>,
    pub wal: Option<WalFigures>,
    pub gates: Vec<GateResult>,
    /// One point per second of the run.
    pub timeline: Vec<TimelinePoint>,
    /// What the report cannot say, and why (e.g. server-side figures in --target mode).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioInfo {
    pub name: String,
    pub description: String,
    pub file: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    /// "reference" (lockbench started its own server) or "external" (--target).
    pub kind: String,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub passed: bool,
    /// One line: gates, lock errors, lost writes.
    pub summary: String,
    /// 0 all gates passed, 1 a gate failed, 2 the run could not be carried out.
    pub exit_code: u8,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerSettings {
    pub worker: u32,
    pub pid: u32,
    /// The worker's connections, as `/api/settings` reports them.
    pub connections: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub cores: usize,
    pub memory_bytes: u64,
    pub os: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsersInfo {
    pub pollers: u32,
    pub poll_interval_ms: u64,
    pub admins: u32,
    pub admin_interval_ms: u64,
    pub kiosks: u32,
    pub kiosk_interval_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
    pub max: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointStats {
    pub count: u64,
    /// Transport errors and non-2xx answers.
    pub failures: u64,
    /// By status code ("200", "503", ...; "error" for no answer).
    pub status_codes: BTreeMap<String, u64>,
    /// 503 answers.
    pub status_503: u64,
    /// Answers whose body mentions a lock ("locked", "database_locked").
    pub lock_mentions: u64,
    /// In microseconds.
    pub latency_us: Latency,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LockErrors {
    /// Server-side lock errors (every one seen, retried or not); with --target, the
    /// client-side count (503s and lock mentions).
    pub total: u64,
    /// True when `total` comes from the server's own counters.
    pub server_side: bool,
    /// By SQLite code (server side).
    pub by_code: BTreeMap<String, u64>,
    /// By endpoint: server-side operations mapped to the endpoint that runs them, plus
    /// "processor" for the background batch.
    pub by_endpoint: BTreeMap<String, u64>,
    /// Lock errors that reached a client (503 or a body mentioning a lock).
    pub client_visible: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchFigures {
    pub photos: u64,
    pub processed: u64,
    pub failed: u64,
    pub persons: u64,
    pub uploaded: u64,
    pub duration_s: f64,
    pub photos_per_s: f64,
    /// True when the batch reached "done" before the hard cap.
    pub finished: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Audit {
    /// Acknowledged writes missing from the database: photos never recorded, registrations a
    /// kiosk got a 2xx for that are absent.
    pub lost_writes: u64,
    pub duplicate_writes: u64,
    pub misassigned_photos: u64,
    pub missing_photos: u64,
    pub lost_registrations: u64,
    /// Batch counters that disagree with the rows ("processed 349 vs 350 rows").
    pub counter_mismatches: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WalFigures {
    pub max_bytes: u64,
    pub checkpoints_ok: u64,
    pub checkpoints_busy: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    pub name: String,
    pub limit: f64,
    pub value: f64,
    pub passed: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TimelinePoint {
    /// Seconds since the load started.
    pub t_s: u32,
    pub requests: u64,
    /// Client-visible lock errors in this second (503s and lock mentions).
    pub lock_errors: u64,
    /// Other failures in this second.
    pub errors: u64,
    /// p99 latency of this second's requests, µs.
    pub p99_us: u64,
    /// Photos processed so far.
    pub photos_processed: u64,
}
