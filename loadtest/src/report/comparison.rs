//! A comparison of two reports as data: the figures of both runs side by side, the settings
//! that differ, the regressions found, and what identifies each run. `decide::compare` fills
//! it; `report::compare` renders it. Holds data only.

use serde::Serialize;
use serde_json::Value;

use super::{Machine, Report, UsersInfo, Verdict};

/// Bumped whenever a field of the JSON comparison changes meaning or disappears.
/// 2: a figure's `spread` is replaced by `a_range` and `within_a_range`; the batch is gated
/// on `batch.seconds_per_photo`; new per-endpoint and audit figures.
pub const COMPARE_SCHEMA_VERSION: u32 = 2;

/// A timing that A did not register (0) regresses in B only above this, in milliseconds.
pub const TIMING_FLOOR_MS: f64 = 1.0;

/// What a figure is measured in: decides how it is printed and its floor when A is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Count,
    /// Percent of requests (error rate); deltas are percentage points.
    Percent,
    Ms,
    Seconds,
    PerSecond,
}

impl Unit {
    /// Timings vary from run to run; counts and rates are what happened.
    pub fn is_timing(self) -> bool {
        matches!(self, Unit::Ms | Unit::Seconds)
    }

    /// The value B must exceed to regress when A is 0.
    pub fn floor(self) -> f64 {
        match self {
            Unit::Ms => TIMING_FLOOR_MS,
            Unit::Seconds => TIMING_FLOOR_MS / 1000.0,
            Unit::Count | Unit::Percent | Unit::PerSecond => 0.0,
        }
    }
}

/// One figure of both runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    /// Stable id: `lock_errors.total`, `requests[POST /api/registrations].p99_ms`.
    pub name: String,
    /// The endpoint a per-endpoint figure belongs to; `None` for server-side figures.
    pub endpoint: Option<String>,
    /// The figure's name within its table: `p99_ms`, `lock_errors.total`.
    pub key: String,
    pub unit: Unit,
    /// Whether the figure takes part in the verdict.
    pub gated: bool,
    /// `None` when the report does not have the figure (e.g. no batch in --target mode).
    pub a: Option<f64>,
    pub b: Option<f64>,
    /// B − A.
    pub delta: Option<f64>,
    /// (B − A) / A in percent; `None` when a side is missing or when [`Figure::new`].
    pub relative_pct: Option<f64>,
    /// A is 0 and B is not: there is no relative change to state.
    pub new: bool,
    pub regression: bool,
    /// A timing of repeated runs (`run --repeat`): A's smallest and largest run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub a_range: Option<[f64; 2]>,
    /// A gated timing past the tolerance that is not a regression because B stays within
    /// A's own range (B ≤ A's largest run).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub within_a_range: bool,
}

/// A requested setting that differs; `None` where a report does not have the key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SettingDiff {
    /// Dotted path in `settings_requested`: `storage.journal_mode`.
    pub key: String,
    pub a: Option<Value>,
    pub b: Option<Value>,
}

/// A gated figure where B is worse than A past the tolerance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Regression {
    /// The figure's [`Figure::name`].
    pub name: String,
    /// "REGRESSION: lock_errors.total 12 → 30 (+150.0%, tolerance 10%)".
    pub message: String,
}

/// What identifies one run in the comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunInfo {
    /// The file the report was read from, when it came from one.
    pub source: Option<String>,
    pub started_at: String,
    pub lockbench_version: String,
    pub target_url: String,
    pub sqlite_version: Option<String>,
    pub machine: Machine,
    pub users: UsersInfo,
    /// `[[users]]` classes in words ("10 visitor (closed)"); empty for the roles' table.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub classes: String,
    /// The run's own verdict (its gates), for context.
    pub verdict: Verdict,
}

impl RunInfo {
    pub fn of(r: &Report) -> RunInfo {
        RunInfo {
            source: None,
            started_at: r.started_at.clone(),
            lockbench_version: r.lockbench_version.clone(),
            target_url: r.target.url.clone(),
            sqlite_version: r.sqlite_version.clone(),
            machine: r.machine.clone(),
            users: r.users.clone(),
            classes: if r.users.pollers + r.users.admins + r.users.kiosks == 0 {
                crate::report::facts::classes_words(r)
            } else {
                String::new()
            },
            verdict: r.verdict.clone(),
        }
    }
}

/// Two runs of one scenario side by side; the JSON output is this struct.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// [`COMPARE_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Both reports' `schema_version`.
    pub report_schema_version: u32,
    pub scenario: String,
    pub target_kind: String,
    /// Relative: 0.1 is 10 %.
    pub tolerance: f64,
    /// 0: no regression; 1: at least one.
    pub exit_code: u8,
    /// "no regression past the 10% tolerance" or "2 regressions past ...: a, b".
    pub summary: String,
    pub regressions: Vec<Regression>,
    pub a: RunInfo,
    pub b: RunInfo,
    pub settings_diff: Vec<SettingDiff>,
    /// Whether either report recorded its requested settings: when neither did, an empty
    /// `settings_diff` says nothing.
    pub settings_recorded: bool,
    /// Per endpoint (in endpoint order), then the server-side figures.
    pub figures: Vec<Figure>,
}
