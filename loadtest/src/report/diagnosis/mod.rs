//! `lockbench doctor`'s result as data: what it read, what it found (each finding with a
//! stable id, its evidence, the requests it concerns, how many, and the fix), and, with
//! `--verify`, the app run as it is and with the fix side by side. `doctor.json` is this type
//! serialized; `doctor.md` and `doctor.html` are rendered from it (`markdown.rs`, `html.rs`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

mod html;
mod markdown;

pub use html::render as render_html;
pub use markdown::{render as render_markdown, terminal};

/// The version of `doctor.json`'s layout.
pub const DIAGNOSIS_SCHEMA_VERSION: u32 = 1;

/// The causes doctor knows, each with its stable id (`deferred-upgrade`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingId {
    /// A transaction that read, then tried to write: refused at once whatever the timeout.
    DeferredUpgrade,
    /// A rollback journal under concurrent readers and writers.
    RollbackJournalReaders,
    /// Failures at a wait much shorter than the timeout the app believes it set.
    TimeoutNotApplied,
    /// Failures after waiting about the whole busy timeout: a writer held the lock longer.
    LongWriter,
    /// A retry that re-issues COMMIT after a rollback: the write is reported saved and is not.
    CommitOnlyRetry,
    /// A WAL far past its autocheckpoint size.
    CheckpointStarvation,
    /// Errors that look like lock errors and are not.
    NotALock,
}

impl FindingId {
    pub const ALL: [FindingId; 7] = [
        FindingId::DeferredUpgrade,
        FindingId::RollbackJournalReaders,
        FindingId::TimeoutNotApplied,
        FindingId::LongWriter,
        FindingId::CommitOnlyRetry,
        FindingId::CheckpointStarvation,
        FindingId::NotALock,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FindingId::DeferredUpgrade => "deferred-upgrade",
            FindingId::RollbackJournalReaders => "rollback-journal-readers",
            FindingId::TimeoutNotApplied => "timeout-not-applied",
            FindingId::LongWriter => "long-writer",
            FindingId::CommitOnlyRetry => "commit-only-retry",
            FindingId::CheckpointStarvation => "checkpoint-starvation",
            FindingId::NotALock => "not-a-lock",
        }
    }

    /// Whether this finding is a lock problem (every one but `not-a-lock`).
    pub fn is_lock_problem(self) -> bool {
        self != FindingId::NotALock
    }
}

impl std::fmt::Display for FindingId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What doctor concluded, what it read, and the proof when it ran one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    pub schema_version: u32,
    pub lockbench_version: String,
    /// One sentence: the first cause, or that no lock problem was found.
    pub verdict: String,
    /// Whether a lock problem was found (exit code 1).
    pub lock_problem: bool,
    /// Every piece of evidence read, in the order given.
    pub read: Vec<EvidenceRead>,
    /// The app's settings doctor went by, each with where it came from.
    pub settings: AppSettings,
    /// The lock errors of the log(s), by request.
    pub log: Option<LogFacts>,
    /// The database file's header, and its WAL's.
    pub database: Option<DatabaseFacts>,
    /// In order of weight: the finding that lost writes, then by how many lock errors each
    /// explains.
    pub findings: Vec<Finding>,
    /// With `--verify`: the scenario as the app is and with the fix.
    pub verify: Option<Verification>,
    /// What doctor could not tell, and why.
    #[serde(default)]
    pub notes: Vec<String>,
}

/// One file doctor read, and what it said in one line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceRead {
    /// "log", "database", "report" or "scenario".
    pub kind: String,
    pub path: String,
    pub summary: String,
}

/// A setting as doctor knows it: its value and where the value came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Known<T> {
    pub value: T,
    /// "the database file's header", "report.json's settings", "--busy-timeout", "assumed:
    /// the default of Python's sqlite3, Go's mattn/go-sqlite3 and Rails", ...
    pub source: String,
}

/// The settings of the app that matter to the diagnosis; None where doctor could not learn it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AppSettings {
    /// The busy timeout the app believes it set, in milliseconds.
    pub busy_timeout_ms: Option<Known<u64>>,
    /// "deferred", "immediate", "exclusive" or "lazy" (the reference server's autocommit mode).
    pub tx_mode: Option<Known<String>>,
    /// "wal", "delete", "truncate", "persist", "memory", "off".
    pub journal_mode: Option<Known<String>>,
    /// The reference server's retry scope ("unit-of-work", "commit-only").
    pub retry_scope: Option<Known<String>>,
}

/// The log(s), read as records.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogFacts {
    pub records: u64,
    pub lock_errors: u64,
    /// By request name (the scenario's), else by the path or the `op` the record names;
    /// "(none named)" for records that name neither.
    pub by_endpoint: BTreeMap<String, EndpointLog>,
    /// Lock errors by SQLite code as the records name it ("SQLITE_BUSY" for a bare
    /// "database is locked", which is how most drivers say it).
    pub by_code: BTreeMap<String, u64>,
    /// Records that look like lock errors and are not, by kind.
    pub not_a_lock: BTreeMap<String, u64>,
    /// The app's own retry messages after a lock error, and those that retry a commit.
    pub retries: u64,
    pub commit_retries: u64,
    /// The first and the last time a lock error's record names, as written.
    pub first_at: Option<String>,
    pub last_at: Option<String>,
}

/// One request's (or path's, or operation's) lock errors in the log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointLog {
    pub lock_errors: u64,
    /// "read" (GET, HEAD), "write" (other methods) or "unknown".
    pub kind: String,
    pub by_code: BTreeMap<String, u64>,
    /// Those that are the app's retry of a commit.
    #[serde(default)]
    pub commit_retries: u64,
    /// How long each failing try had waited, where the record says (`try_ms=`), in ms.
    pub waits_ms: Option<Spread>,
    /// The failed requests' latency from the report (answered 5xx), in ms.
    pub failed_latency_ms: Option<Spread>,
    /// The first lock error's record, cut to a few lines.
    pub sample: String,
}

/// The spread of some waits, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub count: u64,
    pub p50: f64,
    pub max: f64,
}

/// The database file as its bytes say (it is never opened through SQLite, so never written).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DatabaseFacts {
    pub path: String,
    pub bytes: u64,
    pub page_size: u32,
    /// "wal" (header bytes 18 and 19 are 2) or "rollback" (they are 1).
    pub journal: String,
    pub wal_bytes: Option<u64>,
    /// Frames in the WAL file, from its size and page size.
    pub wal_frames: Option<u64>,
    pub shm_present: bool,
    /// A rollback journal beside the file (`-journal`): a transaction was open or interrupted.
    pub journal_file_bytes: Option<u64>,
    pub user_version: u32,
    pub application_id: u32,
    /// "none", "full" or "incremental".
    pub auto_vacuum: String,
    /// "UTF-8", "UTF-16le" or "UTF-16be".
    pub text_encoding: String,
    /// SHA-256 of the file before and after doctor read it.
    pub sha256_before: String,
    pub sha256_after: String,
}

/// One cause doctor found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub id: FindingId,
    pub title: String,
    /// What doctor saw, each a sentence with its figures.
    pub evidence: Vec<String>,
    /// Why that means this cause, with the source it relies on.
    pub why: String,
    pub source: String,
    /// The request names (or paths, or operations) it concerns.
    pub endpoints: Vec<String>,
    /// How many of what `count_of` names.
    pub count: u64,
    /// "lock errors", "retries of a commit", "WAL pages", "errors".
    pub count_of: String,
    /// Writes the app acknowledged and lost that this finding explains, when a report's audit
    /// or the server's own record says.
    pub lost_writes: Option<u64>,
    pub fix: Fix,
}

/// What to change: in lockbench's words, in each framework's, and a scenario that reproduces
/// the cause on the reference server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Fix {
    pub summary: String,
    /// lockbench's settings (`--set` keys) that apply the fix; empty when the fix is outside
    /// the app's settings (a backup job, a long report query).
    pub settings: BTreeMap<String, String>,
    pub frameworks: Vec<FrameworkFix>,
    /// The scenario file written beside doctor.json that reproduces the cause on the
    /// reference server, and the command that runs it with the fix.
    pub scenario: Option<String>,
    pub scenario_fixed: Option<String>,
}

/// The fix in one framework's terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameworkFix {
    /// "Django", "SQLAlchemy", "Rails 8", "Go database/sql".
    pub framework: String,
    /// The code or configuration, as it goes into the app.
    pub code: String,
    pub note: String,
}

/// `--verify`: the same scenario as the app is and with the fix, each on a fresh app and
/// database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    pub scenario: String,
    /// The settings the "after" run applied (`--set` keys).
    pub applied: BTreeMap<String, String>,
    /// Fixes doctor could not apply through the scenario's knobs, each with why.
    pub not_applied: Vec<String>,
    pub before: RunSide,
    pub after: RunSide,
    /// Whether the fix removed every lock error without losing a write.
    pub fixed: bool,
    pub sentence: String,
}

/// One side of the verification: one run's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunSide {
    pub report: String,
    pub passed: bool,
    pub lock_errors: Option<u64>,
    pub requests: u64,
    pub failed_requests: u64,
    pub lost_writes: Option<u64>,
    /// p99 of each request, in milliseconds.
    pub p99_ms: BTreeMap<String, f64>,
}

impl Verification {
    /// The before/after table's rows, (figure, before, after), for every rendering: the
    /// verdicts, lock errors, failed requests, lost writes, then each request's p99 in ms.
    pub fn rows(&self) -> Vec<(String, String, String)> {
        use crate::report::format::{count, fixed};
        let (b, a) = (&self.before, &self.after);
        let opt = |n: Option<u64>| n.map_or("unknown".to_owned(), count);
        let verdict = |s: &RunSide| if s.passed { "PASSED" } else { "FAILED" }.to_owned();
        let failed = |s: &RunSide| format!("{} of {}", count(s.failed_requests), count(s.requests));
        let mut rows = vec![
            ("verdict".to_owned(), verdict(b), verdict(a)),
            (
                "lock errors".to_owned(),
                opt(b.lock_errors),
                opt(a.lock_errors),
            ),
            ("failed requests".to_owned(), failed(b), failed(a)),
            (
                "lost writes".to_owned(),
                opt(b.lost_writes),
                opt(a.lost_writes),
            ),
        ];
        let names: std::collections::BTreeSet<&String> =
            b.p99_ms.keys().chain(a.p99_ms.keys()).collect();
        for n in names {
            let p = |s: &RunSide| s.p99_ms.get(n).map_or("-".to_owned(), |v| fixed(*v, 1));
            rows.push((format!("p99 ms {n}"), p(b), p(a)));
        }
        rows
    }
}
