//! The report of one `lockbench run`: a versioned JSON schema (`Report`), and every human
//! rendering lockbench writes, generated from finished data: a run's `markdown` and `html`
//! (the words from `facts`, numbers from `format`, charts from `chart`), a comparison's
//! (`compare`) and a sweep's or breakpoint's (`sweep`). Nothing here runs or measures.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::scenario::{Connection, PollModel};

pub mod breakpoint;
pub mod chart;
pub mod ci;
pub mod compare;
pub mod comparison;
pub mod diagnosis;
pub mod facts;
pub mod format;
pub mod html;
pub mod live;
pub mod markdown;
pub mod sweep;

/// Bumped whenever a field changes meaning or disappears.
/// 2: per-role figures (`roles`), latency from the intended tick, `lock_errors.source`,
/// `target_database`, `faults`, `restarts`, `interrupted`, timeline `sent`,
/// `server_lock_errors` and `wal_bytes`.
/// 3: `settings_requested` holds the whole scenario as it ran (server, batch, users,
/// duration, gates, faults, endpoints, target); gate values are `null` when they could not be
/// measured, with a `note`; `lock_errors.missing_workers`; per-endpoint `lock_errors` and
/// `unanswered_at_stop`; the audit's `not_processed`, `dropped_unaudited`, `lost_uploads` and
/// `unaudited_writes`; `batch.ended` and `status`; `processor_failures`; `runner_requests`;
/// `repeat.verdicts` and `repeat.tables` (with `--repeat`, correctness counts are the largest
/// of the runs, timings their medians).
/// 4: `requests`, `lock_errors.by_endpoint` and the gates are keyed by request name (a
/// `[[users]]` request's `name`; the roles' requests keep their names); a request's
/// `failures` are the answers it did not expect (default: not a 2xx or 3xx), with
/// `failures_by_class`; `roles` is keyed by user class, with its pace in `poll_model`
/// (`closed`, `interval`, `after-response`, `arrival-rate`) and `ticks_dropped`;
/// `lock_errors.unattributed`; the audit's `lost_by_request`; `max_error_rate` is always a
/// gate (0.01 when the scenario sets none).
pub const REPORT_SCHEMA_VERSION: u32 = 4;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    pub lockbench_version: String,
    /// The git commit of the checkout lockbench ran in ("-dirty" when it had changes), when
    /// it is one: the project under test.
    #[serde(default)]
    pub git_commit: Option<String>,
    pub scenario: ScenarioInfo,
    /// UTC, RFC 3339.
    pub started_at: String,
    pub target: Target,
    pub verdict: Verdict,
    /// The whole scenario as it ran, every default filled in (server, batch, users, duration,
    /// gates, faults, endpoints, target; a database URL's password replaced): what
    /// `lockbench compare` diffs.
    pub settings_requested: serde_json::Value,
    /// What each worker's connections really had (`/api/settings`); absent with --target.
    pub settings_effective: Option<Vec<WorkerSettings>>,
    pub sqlite_version: Option<String>,
    pub machine: Machine,
    /// The user mix that ran.
    pub users: UsersInfo,
    /// How long the load ran, seconds (0 in reports written before it was kept).
    #[serde(default)]
    pub load_s: f64,
    /// CPU seconds (user + system) lockbench's load threads used: what generating the load
    /// cost (the audit and the reports are not in it). None where it could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_cpu_s: Option<f64>,
    /// Client-side figures per request name, complete in both modes.
    pub requests: BTreeMap<String, EndpointStats>,
    /// lockbench's own requests that reach the app's database (registering the batch's
    /// people, posting the batch, posting it again after a kill): not part of the load, but
    /// a lock error the server counts in them is in `lock_errors`, so they are shown.
    #[serde(default)]
    pub runner_requests: BTreeMap<String, EndpointStats>,
    /// Per role ("poller", "admin", "kiosk"): how the users behaved and what they got.
    #[serde(default)]
    pub roles: BTreeMap<String, RoleFigures>,
    pub lock_errors: LockErrors,
    /// Server-side retries (absent with --target).
    pub retries: Option<u64>,
    /// Writes the commit-only retry scope reported as saved after rolling them back.
    pub commit_only_dropped: Option<u64>,
    /// The same, by endpoint ("processor" for the batch): where the writes were lost.
    #[serde(default)]
    pub commit_only_dropped_by_endpoint: BTreeMap<String, u64>,
    /// Units of work of the reference server's processor that failed (after their retries
    /// and the processor's own waiting), by operation: a step of the batch that did not
    /// happen (a person not uploaded, a photo not recorded).
    #[serde(default)]
    pub processor_failures: BTreeMap<String, u64>,
    pub batch: Option<BatchFigures>,
    pub audit: Option<Audit>,
    pub wal: Option<WalFigures>,
    /// An external app's database file (`[target].database`), read-only after the run.
    #[serde(default)]
    pub target_database: Option<TargetDatabase>,
    /// The faults the run applied (`[[faults]]`), in time order.
    #[serde(default)]
    pub faults: Vec<FaultRecord>,
    /// Worker restarts by the supervisor (and its giving up), in time order.
    #[serde(default)]
    pub restarts: Vec<RestartRecord>,
    /// True when Ctrl-C stopped the run early: the figures cover the run up to then.
    #[serde(default)]
    pub interrupted: bool,
    /// `run --repeat N`: the figures above combine N runs (correctness counts: the largest of
    /// any run; timings: medians; `repeat.tables` says what each table holds); here are each
    /// run's own verdict and each figure's spread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<Repeat>,
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
    /// The app lockbench started for this run (`[target] command`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<LaunchedApp>,
}

/// An app lockbench started (`[target] command`): how it was started, when it was ready and
/// how it ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LaunchedApp {
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// The environment it was given beyond lockbench's own, values of keys that look like
    /// secrets replaced by `***`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// lockbench's settings passed through `[target.knobs]`: setting, then `VAR=value`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub knobs: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub setup: Vec<String>,
    /// Its stdout and stderr.
    pub output: String,
    /// Seconds from its start until its `ready` path answered 2xx.
    pub ready_after_s: f64,
    /// Seconds since the load started when it exited by itself, when it did during the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exited_during_run_s: Option<f64>,
    /// How it ended, in words: stopped by lockbench (SIGTERM, or SIGKILL after the stop
    /// timeout) or exited by itself, with its exit status.
    pub ended: String,
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
    /// Load average (1, 5, 15 minutes) when the run started and when it ended: a busy
    /// machine makes timings noisy.
    #[serde(default)]
    pub load_average_start: Option<[f64; 3]>,
    #[serde(default)]
    pub load_average_end: Option<[f64; 3]>,
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
    #[serde(default)]
    pub mean: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointStats {
    pub count: u64,
    /// Requests that did not get what they expect (default: a 2xx or 3xx answer).
    pub failures: u64,
    /// The failures by why: "lock error" (a 503 or a body that mentions a lock), "other
    /// 5xx", "unexpected status", "timeout", "connection error".
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failures_by_class: BTreeMap<String, u64>,
    /// By status code ("200", "503", ...; "error" for no answer).
    pub status_codes: BTreeMap<String, u64>,
    /// 503 answers.
    pub status_503: u64,
    /// Answers whose body mentions a lock ("locked", "database_locked").
    pub lock_mentions: u64,
    /// Requests that reached the client as a lock error: a 503, or a failed answer whose body
    /// mentions a lock (each request counted once, whichever it was).
    #[serde(default)]
    pub lock_errors: u64,
    /// Requests still unanswered, and ticks still waiting to be sent, when the load stopped:
    /// neither a success nor a failure; their latency from the tick runs to the stop.
    #[serde(default)]
    pub unanswered_at_stop: u64,
    /// 5xx answers that were not a 503 and did not mention a lock: their cause cannot be
    /// seen from the client (a bare "500 Internal Server Error").
    #[serde(default)]
    pub server_errors_unexplained: u64,
    /// From the moment each request was sent, in microseconds.
    pub latency_us: Latency,
    /// From the tick each request was meant for (corrected for coordinated omission), µs.
    #[serde(default)]
    pub latency_from_tick_us: Latency,
    /// The requests answered with a 5xx, from send, µs: how long a failing request waited
    /// before its error (`lockbench doctor` reads it). None when none was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_latency_us: Option<Latency>,
}

/// One role of the user mix: its behaviour and what it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoleFigures {
    pub users: u32,
    pub interval_ms: u64,
    pub poll_model: PollModel,
    pub max_in_flight: u32,
    pub connection: Connection,
    /// Ticks that came due over the run, sent or not.
    pub ticks_due: u64,
    pub ticks_sent: u64,
    /// Sent 10 ms or more after their intended time.
    pub ticks_late: u64,
    /// Not sent: `max_in_flight` requests were out, or (after-response) the user was still
    /// waiting when the tick passed.
    pub ticks_skipped: u64,
    /// `arrival-rate`: ticks that found every slot of the class busy and were never sent.
    #[serde(default)]
    pub ticks_dropped: u64,
    pub requests: u64,
    /// Requests per second the schedule asks for (users / interval × requests per tick).
    pub offered_rps: f64,
    /// Requests answered per second over the load.
    pub achieved_rps: f64,
    /// The busiest 100 ms of tick starts against an average 100 ms of the schedule: about 1
    /// when ticks are spread over the interval, up to the number of users in lock step.
    pub burst_factor: f64,
    /// A tick's requests, from its first send to its last answer, µs.
    pub latency_from_send_us: Latency,
    /// From the intended tick to the answer (a skipped tick: to the answer of the next request
    /// the user sent), µs.
    pub latency_from_tick_us: Latency,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Where a report's lock-error total comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LockSource {
    /// The reference server's own counters: every lock error, retried or not.
    #[default]
    ServerCounters,
    /// Records of the external app's log that match `[target].lock_pattern`.
    TargetLog,
    /// Only what the clients saw (503s, answers mentioning a lock): a lower bound.
    ClientsOnly,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LockErrors {
    /// Server-side lock errors (every one seen, retried or not), from `source`. With
    /// `clients-only` it is a lower bound: see `server_errors_unexplained`.
    pub total: u64,
    #[serde(default)]
    pub source: LockSource,
    /// With `clients-only`: 5xx answers whose cause the client cannot see; any of them may
    /// have been a lock error.
    pub server_errors_unexplained: u64,
    /// By SQLite code (server side).
    pub by_code: BTreeMap<String, u64>,
    /// By endpoint: server-side operations mapped to the endpoint that runs them, plus
    /// "processor" for the background batch; from an app's log, the request whose path the
    /// record names.
    pub by_endpoint: BTreeMap<String, u64>,
    /// From an app's log: lock errors whose record names no request path this run sends
    /// (or a path several requests share).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unattributed: u64,
    /// Lock errors that reached a client (503 or a body mentioning a lock).
    pub client_visible: u64,
    /// Workers whose counters could not be read (they never answered `/api/stats`): `total`
    /// is then a lower bound ("at least"), and a gate on it cannot pass.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_workers: Vec<u32>,
}

impl LockErrors {
    /// Whether `total` is every lock error (not a lower bound).
    pub fn complete(&self) -> bool {
        self.missing_workers.is_empty()
            && !(self.source == LockSource::ClientsOnly && self.server_errors_unexplained > 0)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchFigures {
    pub photos: u64,
    pub processed: u64,
    pub failed: u64,
    pub persons: u64,
    pub uploaded: u64,
    /// From the post to the processor's end; for a batch that did not end, to the moment the
    /// run stopped waiting for it (never to the report's writing).
    pub duration_s: f64,
    pub photos_per_s: f64,
    /// True when the processor went through the whole batch before the run stopped.
    pub finished: bool,
    /// How the wait for the batch ended.
    #[serde(default)]
    pub ended: BatchEnd,
    /// The batch row's status when the run ended ("done", "running", ...), when it was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// How the run's wait for its batch ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BatchEnd {
    /// The processor went through every photo.
    #[default]
    Finished,
    /// The run reached `duration.max` first.
    Cap,
    /// Ctrl-C or a termination signal stopped the run.
    Interrupted,
    /// The app said the batch failed (an external app's status).
    Failed,
    /// The processor stopped running and nobody took the batch over (a killed worker whose
    /// batch could not be posted again, a supervisor that gave up).
    Abandoned,
}

impl BatchEnd {
    /// In words, for verdicts and reports.
    pub fn describe(self) -> &'static str {
        match self {
            BatchEnd::Finished => "finished",
            BatchEnd::Cap => "stopped at the hard cap (duration.max)",
            BatchEnd::Interrupted => "stopped by an interruption",
            BatchEnd::Failed => "failed (the app's status said so)",
            BatchEnd::Abandoned => "abandoned: its processor stopped and nobody took it over",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Audit {
    /// Acknowledged writes absent from the database: `missing_photos` + `lost_registrations` +
    /// `lost_uploads` + `dropped_unaudited`. Work that was never acknowledged is not here
    /// (see `not_processed`).
    pub lost_writes: u64,
    pub duplicate_writes: u64,
    pub misassigned_photos: u64,
    /// Photos the processor acknowledged (its unit of work returned success) that the
    /// database does not hold.
    pub missing_photos: u64,
    /// Registrations a client got a 2xx for that the database does not hold.
    pub lost_registrations: u64,
    /// Persons the processor acknowledged as uploaded whose row does not say so.
    #[serde(default)]
    pub lost_uploads: u64,
    /// Commit-only drops of writes the audit cannot look up (the processing log, the batch's
    /// status), counted as lost from the server's own record.
    #[serde(default)]
    pub dropped_unaudited: u64,
    /// Photos of the batch the processor never acknowledged and the database does not hold:
    /// work not reached (the run stopped, a step failed visibly), not lost writes.
    #[serde(default)]
    pub not_processed: u64,
    /// Acknowledged writes that could not be looked up (an external app's answer without the
    /// audit field): neither found nor lost.
    #[serde(default)]
    pub unaudited_writes: u64,
    /// An external app's lost writes by the request that was acknowledged (`audit` on a
    /// request).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lost_by_request: BTreeMap<String, u64>,
    /// Batch counters that disagree with the rows ("processed 349 vs 350 rows").
    pub counter_mismatches: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WalFigures {
    pub max_bytes: u64,
    pub checkpoints_ok: u64,
    pub checkpoints_busy: u64,
}

/// A report of `run --repeat N`: how many runs, where their own reports are, each run's own
/// verdict, what each table of the combined report holds, and each compared figure's median
/// and range across them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Repeat {
    pub runs: u32,
    /// Each run's report.json.
    pub reports: Vec<String>,
    /// By figure name as `lockbench compare` names them (`requests[E].p99_ms`).
    pub spread: BTreeMap<String, Spread>,
    /// Each run's own verdict, in order.
    #[serde(default)]
    pub verdicts: Vec<RunVerdict>,
    /// What each table of the combined report holds ("requests: medians of 3 runs", "lock
    /// errors: run 2, the one with the most"), by table name.
    #[serde(default)]
    pub tables: BTreeMap<String, String>,
}

/// One run of `run --repeat N`, as its own report judged it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunVerdict {
    /// 1-based.
    pub run: u32,
    pub passed: bool,
    pub exit_code: u8,
    pub summary: String,
    /// The gates this run failed.
    pub failed_gates: Vec<String>,
    pub report: String,
    /// Every gate of this run, with its own value.
    #[serde(default)]
    pub gates: Vec<GateResult>,
    /// How this run's batch ended, when it did not finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_ended: Option<BatchEnd>,
    /// The run failed only timing gates that the combined report (the medians) passes: it
    /// is named in the verdict and its JUnit case is flaky, but it does not fail the whole.
    #[serde(default)]
    pub flaky: bool,
}

/// One figure across repeated runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// max − min.
    pub fn range(&self) -> f64 {
        self.max - self.min
    }
}

/// The external app's database file, opened read-only after the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetDatabase {
    pub path: String,
    pub journal_mode: String,
    pub size_bytes: u64,
    /// The `-wal` file's size, 0 when there is none.
    pub wal_bytes: u64,
    /// SHA-256 of the main file before and after lockbench read it.
    pub sha256_before: String,
    pub sha256_after: String,
    /// Acknowledged kiosk writes looked up with `audit_query` (those whose body had the
    /// audit field).
    pub audited_writes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    pub name: String,
    pub limit: f64,
    /// The measured value; `None` when it could not be measured (an endpoint never answered,
    /// a batch that did not finish): such a gate fails, and `note` says why.
    pub value: Option<f64>,
    pub passed: bool,
    /// Why the value is missing or only a bound ("at least: workers 2, 3 did not answer").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TimelinePoint {
    /// Seconds since the load started.
    pub t_s: u32,
    /// Requests sent in this second.
    #[serde(default)]
    pub sent: u64,
    /// Requests answered in this second.
    pub requests: u64,
    /// Client-visible lock errors in this second (503s and lock mentions).
    pub lock_errors: u64,
    /// Other failures in this second.
    pub errors: u64,
    /// Lock errors the server reported in this second (the external app's log).
    #[serde(default)]
    pub server_lock_errors: u64,
    /// p99 latency of this second's requests, µs.
    pub p99_us: u64,
    /// Photos processed so far.
    pub photos_processed: u64,
    /// Size of the WAL file at this second (reference server, WAL mode), bytes.
    #[serde(default)]
    pub wal_bytes: u64,
    /// Failed requests in this second (lock errors included), by request name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failures_by_request: BTreeMap<String, u64>,
    /// Client-visible lock errors in this second, by request name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lock_errors_by_request: BTreeMap<String, u64>,
}

/// A JSON value as `(dotted.key, value)` pairs in key order: objects are walked, arrays by
/// index (`faults[0].hold`), anything else (an empty object or array too) is a leaf. The
/// requested settings are compared this way, with the same keys as `--set` and scenario
/// files (arrays aside).
pub fn dotted_keys(value: &serde_json::Value) -> Vec<(String, serde_json::Value)> {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
        match value {
            serde_json::Value::Object(map) if !map.is_empty() => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            serde_json::Value::Array(items) if !items.is_empty() => {
                for (i, item) in items.iter().enumerate() {
                    walk(&format!("{prefix}[{i}]"), item, out);
                }
            }
            other => out.push((prefix.to_owned(), other.clone())),
        }
    }
    let mut out = Vec::new();
    walk("", value, &mut out);
    out
}

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
