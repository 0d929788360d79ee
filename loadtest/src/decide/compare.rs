//! `lockbench compare A.json B.json`: two reports of the same scenario side by side, and a
//! verdict on whether B regressed against A.
//!
//! The comparison is plain data: [`compare`] builds a [`Comparison`] from two [`Report`]
//! values, so tests and sweep tooling call the same function the command does, and both
//! renderings come from it: [`render_markdown`] for people, [`render_json`] (versioned by
//! [`COMPARE_SCHEMA_VERSION`]) for tools. [`run_cli`] is the command: read, compare, render,
//! exit code.
//!
//! Two reports can be compared when they have the same `schema_version`, the same scenario
//! name, the same target kind and the same set of endpoints; otherwise [`Incompatible`] says
//! which of these differ (exit code 2).
//!
//! The regression rule, applied to the gated figures only (lock errors total, each
//! endpoint's error rate and p99, the batch's seconds per photo processed, lost writes,
//! duplicate writes, misassigned photos, photos not processed, processor failures; higher is
//! worse for all of them):
//! - A > 0: B regressed when (B − A) / A exceeds the tolerance (exactly at it is fine) and,
//!   for timings, B − A also exceeds 1 ms, so that sub-millisecond jitter is not a failure.
//! - A = 0, counts and rates: any B above 0 is a regression: an error that did not happen
//!   at all before is news whatever the tolerance.
//! - A = 0, timings: B regressed only above 1 ms, so a figure too small to measure in A
//!   does not turn noise into a failure.
//!
//! Repeated runs (`run --repeat`): a report's correctness counts are the largest of its
//! runs and are compared as they are, with no allowance for spread: noise never excuses a
//! lost write or a lock error. A timing (ms, seconds) that regressed is excused only when
//! B's median stays within A's own observed range (B ≤ A's largest run): A's runs show such
//! a value is A's normal; B's spread never widens the excuse.
//!
//! The batch is judged per photo processed (`batch.seconds_per_photo`): a run that processed
//! more photos in more time did not regress. Everything else (request counts, 503s,
//! client-visible lock errors per endpoint, requests unanswered at the stop, p50/p95/max,
//! p99 from the tick, lock errors by code, client-visible lock errors, retries, commit-only
//! drops, the batch's duration and photos per second, the audit's parts) is shown with its
//! deltas and never changes the exit code.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::report::compare::{pct_text, signed_pct, value_text};
pub use crate::report::compare::{render_json, render_markdown};
pub use crate::report::comparison::{
    Comparison, Figure, Regression, RunInfo, SettingDiff, Unit, COMPARE_SCHEMA_VERSION,
    TIMING_FLOOR_MS,
};
use crate::report::{Report, REPORT_SCHEMA_VERSION};

/// Room for floating-point rounding when a change sits exactly at the tolerance.
const EPSILON: f64 = 1e-12;

/// The output of `lockbench compare`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A Markdown document: verdict, settings that differ, tables.
    Md,
    /// The versioned JSON document ([`COMPARE_SCHEMA_VERSION`]).
    Json,
}

/// One reason two reports cannot be compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    SchemaVersion {
        a: u32,
        b: u32,
    },
    Scenario {
        a: String,
        b: String,
    },
    TargetKind {
        a: String,
        b: String,
    },
    Endpoints {
        only_a: Vec<String>,
        only_b: Vec<String>,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::SchemaVersion { a, b } => {
                write!(f, "A has schema_version {a}, B has {b}")
            }
            Mismatch::Scenario { a, b } => {
                write!(f, "different scenarios: A ran {a:?}, B ran {b:?}")
            }
            Mismatch::TargetKind { a, b } => {
                write!(f, "different target kinds: A is {a:?}, B is {b:?}")
            }
            Mismatch::Endpoints { only_a, only_b } => {
                write!(f, "different endpoints")?;
                if !only_a.is_empty() {
                    write!(f, "; only in A: {}", only_a.join(", "))?;
                }
                if !only_b.is_empty() {
                    write!(f, "; only in B: {}", only_b.join(", "))?;
                }
                Ok(())
            }
        }
    }
}

/// Why two reports cannot be compared: every shape difference found, or the schema version
/// alone (nothing else is meaningful across versions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatible(pub Vec<Mismatch>);

impl fmt::Display for Incompatible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot compare the reports: ")?;
        for (i, m) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{m}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Incompatible {}

/// Why a report file could not be read.
#[derive(Debug)]
pub enum ReadError {
    Unreadable(std::io::Error),
    NotJson(serde_json::Error),
    /// Valid JSON that is not a lockbench report (or not one this version reads).
    NotAReport(String),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Unreadable(e) => write!(f, "cannot read it: {e}"),
            ReadError::NotJson(e) => write!(f, "not JSON: {e}"),
            ReadError::NotAReport(why) => write!(f, "not a lockbench report: {why}"),
        }
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReadError::Unreadable(e) => Some(e),
            ReadError::NotJson(e) => Some(e),
            ReadError::NotAReport(_) => None,
        }
    }
}

/// Everything that makes `lockbench compare` exit with 2.
#[derive(Debug)]
pub enum CompareError {
    Tolerance {
        value: String,
        reason: String,
    },
    Read {
        /// "A" or "B".
        side: &'static str,
        path: PathBuf,
        error: ReadError,
    },
    Incompatible(Incompatible),
}

impl fmt::Display for CompareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompareError::Tolerance { value, reason } => {
                write!(f, "--tolerance {value:?}: {reason}")
            }
            CompareError::Read { side, path, error } => {
                write!(f, "{side} ({}): {error}", path.display())
            }
            CompareError::Incompatible(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for CompareError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CompareError::Tolerance { .. } => None,
            CompareError::Read { error, .. } => Some(error),
            CompareError::Incompatible(e) => Some(e),
        }
    }
}

/// What the command prints and the process's exit code.
#[derive(Debug, Clone, PartialEq)]
pub struct CliOutput {
    pub stdout: String,
    pub stderr: String,
    /// 0 no regression, 1 a regression, 2 the reports could not be compared.
    pub code: u8,
    /// The comparison, when the reports could be compared (for --junit and step summaries).
    pub comparison: Option<Comparison>,
}

/// `lockbench compare A B --tolerance T --format F`: the document on stdout and exit code
/// 0 or 1, or a message naming the problem on stderr and exit code 2.
pub fn run_cli(a: &Path, b: &Path, tolerance: &str, format: Format) -> CliOutput {
    let result = parse_tolerance(tolerance).and_then(|tol| compare_files(a, b, tol));
    match result {
        Ok(c) => CliOutput {
            stdout: match format {
                Format::Md => render_markdown(&c),
                Format::Json => render_json(&c),
            },
            stderr: String::new(),
            code: c.exit_code,
            comparison: Some(c),
        },
        Err(e) => CliOutput {
            stdout: String::new(),
            stderr: format!("error: {e}\n"),
            code: 2,
            comparison: None,
        },
    }
}

/// Reads both files and compares them; each run's `source` is its path.
pub fn compare_files(a: &Path, b: &Path, tolerance: f64) -> Result<Comparison, CompareError> {
    let read = |side: &'static str, path: &Path| {
        read_report_json(path).map_err(|error| CompareError::Read {
            side,
            path: path.to_owned(),
            error,
        })
    };
    let (va, json_a) = read("A", a)?;
    let (vb, json_b) = read("B", b)?;
    // Checked before the typed parse: a report of another version may not parse at all.
    if va != vb {
        return Err(CompareError::Incompatible(Incompatible(vec![
            Mismatch::SchemaVersion { a: va, b: vb },
        ])));
    }
    let typed = |side: &'static str, path: &Path, json: Value, version: u32| {
        parse_report(json, version).map_err(|error| CompareError::Read {
            side,
            path: path.to_owned(),
            error,
        })
    };
    let ra = typed("A", a, json_a, va)?;
    let rb = typed("B", b, json_b, vb)?;
    let mut c = compare(&ra, &rb, tolerance).map_err(CompareError::Incompatible)?;
    c.a.source = Some(a.display().to_string());
    c.b.source = Some(b.display().to_string());
    Ok(c)
}

/// Reads a report file as JSON and checks that it is a lockbench report: its
/// `schema_version` and the JSON, before any parsing that depends on the version.
pub fn read_report_json(path: &Path) -> Result<(u32, Value), ReadError> {
    let text = std::fs::read_to_string(path).map_err(ReadError::Unreadable)?;
    let json: Value = serde_json::from_str(&text).map_err(ReadError::NotJson)?;
    let version = json.get("schema_version").and_then(Value::as_u64);
    let has_lockbench_version = json.get("lockbench_version").is_some_and(Value::is_string);
    match version {
        Some(v) if has_lockbench_version => {
            let v = u32::try_from(v).map_err(|_| {
                ReadError::NotAReport(format!("schema_version {v} is out of range"))
            })?;
            Ok((v, json))
        }
        _ => Err(ReadError::NotAReport(
            "it has no schema_version and lockbench_version fields".to_owned(),
        )),
    }
}

/// A report's JSON (as [`read_report_json`] returns it) as a [`Report`].
pub fn parse_report(json: Value, version: u32) -> Result<Report, ReadError> {
    serde_json::from_value(json).map_err(|e| {
        if version == REPORT_SCHEMA_VERSION {
            ReadError::NotAReport(e.to_string())
        } else {
            ReadError::NotAReport(format!(
                "it has schema_version {version} and this lockbench reads \
                 {REPORT_SCHEMA_VERSION} ({e})"
            ))
        }
    })
}

/// Parses `--tolerance`: "10%" or a fraction "0.1" (at most 1; write "150%" for more, so
/// "10" cannot silently mean 1000%).
pub fn parse_tolerance(s: &str) -> Result<f64, CompareError> {
    let err = |reason: &str| CompareError::Tolerance {
        value: s.to_owned(),
        reason: reason.to_owned(),
    };
    let t = s.trim();
    let (number, percent) = match t.strip_suffix('%') {
        Some(n) => (n.trim(), true),
        None => (t, false),
    };
    let x: f64 = number
        .parse()
        .map_err(|_| err("expected a percentage such as 10% or a fraction such as 0.1"))?;
    if !x.is_finite() || x < 0.0 {
        return Err(err("the tolerance must be a finite number of 0 or more"));
    }
    if percent {
        Ok(x / 100.0)
    } else if x > 1.0 {
        Err(err(
            "a bare number is a fraction (0.1 is 10%); write the percent sign for percentages",
        ))
    } else {
        Ok(x)
    }
}

/// Compares two reports of the same scenario shape; `tolerance` is relative (0.1 = 10 %).
pub fn compare(a: &Report, b: &Report, tolerance: f64) -> Result<Comparison, Incompatible> {
    check_shape(a, b)?;
    let mut figures = Vec::new();
    for (endpoint, sa) in &a.requests {
        let sb = &b.requests[endpoint];
        let mut push = |key: &str, unit, gated, fa: Option<f64>, fb: Option<f64>| {
            figures.push(figure(Some(endpoint), key, unit, gated, fa, fb, tolerance));
        };
        let rate =
            |failures: u64, count: u64| (count > 0).then(|| failures as f64 / count as f64 * 100.0);
        // An endpoint that never answered has no latency (not 0 ms).
        let ms = |s: &crate::report::EndpointStats, f: fn(&crate::report::Latency) -> u64| {
            (s.count > 0).then(|| f(&s.latency_us) as f64 / 1000.0)
        };
        let tick_ms = |s: &crate::report::EndpointStats| {
            (s.count > 0 || s.unanswered_at_stop > 0)
                .then(|| s.latency_from_tick_us.p99 as f64 / 1000.0)
        };
        push("count", Unit::Count, false, n(sa.count), n(sb.count));
        let (ra, rb) = (rate(sa.failures, sa.count), rate(sb.failures, sb.count));
        push("error_rate_pct", Unit::Percent, true, ra, rb);
        push(
            "status_503",
            Unit::Count,
            false,
            n(sa.status_503),
            n(sb.status_503),
        );
        push(
            "lock_errors",
            Unit::Count,
            false,
            n(sa.lock_errors),
            n(sb.lock_errors),
        );
        push(
            "unanswered_at_stop",
            Unit::Count,
            false,
            n(sa.unanswered_at_stop),
            n(sb.unanswered_at_stop),
        );
        push(
            "p50_ms",
            Unit::Ms,
            false,
            ms(sa, |l| l.p50),
            ms(sb, |l| l.p50),
        );
        push(
            "p95_ms",
            Unit::Ms,
            false,
            ms(sa, |l| l.p95),
            ms(sb, |l| l.p95),
        );
        push(
            "p99_ms",
            Unit::Ms,
            true,
            ms(sa, |l| l.p99),
            ms(sb, |l| l.p99),
        );
        push(
            "max_ms",
            Unit::Ms,
            false,
            ms(sa, |l| l.max),
            ms(sb, |l| l.max),
        );
        push(
            "p99_from_tick_ms",
            Unit::Ms,
            false,
            tick_ms(sa),
            tick_ms(sb),
        );
    }
    server_figures(a, b, tolerance, &mut figures);
    apply_spread(a, b, &mut figures);

    let regressions: Vec<Regression> = figures
        .iter()
        .filter(|f| f.regression)
        .map(|f| Regression {
            name: f.name.clone(),
            message: regression_message(f, tolerance),
        })
        .collect();
    let summary = summary(&regressions, tolerance);
    Ok(Comparison {
        schema_version: COMPARE_SCHEMA_VERSION,
        report_schema_version: a.schema_version,
        scenario: a.scenario.name.clone(),
        target_kind: a.target.kind.clone(),
        tolerance,
        exit_code: u8::from(!regressions.is_empty()),
        summary,
        regressions,
        a: RunInfo::of(a),
        b: RunInfo::of(b),
        settings_diff: settings_diff(&a.settings_requested, &b.settings_requested),
        settings_recorded: !(flatten(&a.settings_requested).is_empty()
            && flatten(&b.settings_requested).is_empty()),
        figures,
    })
}

fn check_shape(a: &Report, b: &Report) -> Result<(), Incompatible> {
    if a.schema_version != b.schema_version {
        return Err(Incompatible(vec![Mismatch::SchemaVersion {
            a: a.schema_version,
            b: b.schema_version,
        }]));
    }
    let mut mismatches = Vec::new();
    if a.scenario.name != b.scenario.name {
        mismatches.push(Mismatch::Scenario {
            a: a.scenario.name.clone(),
            b: b.scenario.name.clone(),
        });
    }
    if a.target.kind != b.target.kind {
        mismatches.push(Mismatch::TargetKind {
            a: a.target.kind.clone(),
            b: b.target.kind.clone(),
        });
    }
    let ea: BTreeSet<&String> = a.requests.keys().collect();
    let eb: BTreeSet<&String> = b.requests.keys().collect();
    if ea != eb {
        mismatches.push(Mismatch::Endpoints {
            only_a: ea.difference(&eb).map(|s| s.to_string()).collect(),
            only_b: eb.difference(&ea).map(|s| s.to_string()).collect(),
        });
    }
    if mismatches.is_empty() {
        Ok(())
    } else {
        Err(Incompatible(mismatches))
    }
}

fn server_figures(a: &Report, b: &Report, tolerance: f64, figures: &mut Vec<Figure>) {
    let mut push = |key: &str, unit, gated, fa: Option<f64>, fb: Option<f64>| {
        // Absent from both reports (e.g. --target mode): nothing to show.
        if fa.is_some() || fb.is_some() {
            figures.push(figure(None, key, unit, gated, fa, fb, tolerance));
        }
    };
    let (la, lb) = (&a.lock_errors, &b.lock_errors);
    push(
        "lock_errors.total",
        Unit::Count,
        true,
        n(la.total),
        n(lb.total),
    );
    let codes: BTreeSet<&String> = la.by_code.keys().chain(lb.by_code.keys()).collect();
    for code in codes {
        let get = |m: &BTreeMap<String, u64>| n(m.get(code).copied().unwrap_or(0));
        let key = format!("lock_errors.by_code.{code}");
        push(&key, Unit::Count, false, get(&la.by_code), get(&lb.by_code));
    }
    push(
        "lock_errors.client_visible",
        Unit::Count,
        false,
        n(la.client_visible),
        n(lb.client_visible),
    );
    let opt = |x: Option<u64>| x.map(|v| v as f64);
    push(
        "retries",
        Unit::Count,
        false,
        opt(a.retries),
        opt(b.retries),
    );
    push(
        "commit_only_dropped",
        Unit::Count,
        false,
        opt(a.commit_only_dropped),
        opt(b.commit_only_dropped),
    );
    if a.target.kind == "reference" {
        let failures = |r: &Report| n(r.processor_failures.values().sum());
        push(
            "processor_failures",
            Unit::Count,
            true,
            failures(a),
            failures(b),
        );
    }
    let (ba, bb) = (a.batch.as_ref(), b.batch.as_ref());
    type BatchField = fn(&crate::report::BatchFigures) -> Option<f64>;
    let batch: [(&str, Unit, bool, BatchField); 3] = [
        // Judged per photo processed: more photos in more time is not slower.
        ("batch.seconds_per_photo", Unit::Seconds, true, |x| {
            (x.processed > 0).then(|| x.duration_s / x.processed as f64)
        }),
        ("batch.duration_s", Unit::Seconds, false, |x| {
            Some(x.duration_s)
        }),
        ("batch.photos_per_s", Unit::PerSecond, false, |x| {
            Some(x.photos_per_s)
        }),
    ];
    for (key, unit, gated, field) in batch {
        push(key, unit, gated, ba.and_then(field), bb.and_then(field));
    }
    let (aa, ab) = (a.audit.as_ref(), b.audit.as_ref());
    type Field = fn(&crate::report::Audit) -> u64;
    let audit: [(&str, bool, Field); 8] = [
        ("audit.lost_writes", true, |x| x.lost_writes),
        ("audit.duplicate_writes", true, |x| x.duplicate_writes),
        ("audit.misassigned_photos", true, |x| x.misassigned_photos),
        ("audit.not_processed", true, |x| x.not_processed),
        ("audit.lost_uploads", false, |x| x.lost_uploads),
        ("audit.dropped_unaudited", false, |x| x.dropped_unaudited),
        ("audit.unaudited_writes", false, |x| x.unaudited_writes),
        ("audit.missing_photos", false, |x| x.missing_photos),
    ];
    for (key, gated, field) in audit {
        let get = |x: Option<&crate::report::Audit>| x.map(|x| field(x) as f64);
        push(key, Unit::Count, gated, get(aa), get(ab));
    }
}

fn n(x: u64) -> Option<f64> {
    Some(x as f64)
}

fn figure(
    endpoint: Option<&str>,
    key: &str,
    unit: Unit,
    gated: bool,
    a: Option<f64>,
    b: Option<f64>,
    tolerance: f64,
) -> Figure {
    let name = match endpoint {
        Some(e) => format!("requests[{e}].{key}"),
        None => key.to_owned(),
    };
    let (delta, relative_pct, new, regression) = match (a, b) {
        (Some(a), Some(b)) => {
            let delta = b - a;
            let (relative, new) = if a != 0.0 {
                (Some(delta / a * 100.0), false)
            } else if b == 0.0 {
                (Some(0.0), false)
            } else {
                (None, true)
            };
            let regression = gated && regressed(unit, a, b, tolerance);
            (Some(delta), relative, new, regression)
        }
        // A gated figure A measured and B could not (an endpoint that never answered, a
        // batch that processed nothing): unknown is not "no worse".
        (Some(_), None) => (None, None, false, gated),
        _ => (None, None, false, false),
    };
    Figure {
        name,
        endpoint: endpoint.map(str::to_owned),
        key: key.to_owned(),
        unit,
        gated,
        a,
        b,
        delta,
        relative_pct,
        new,
        regression,
        a_range: None,
        within_a_range: false,
    }
}

/// With repeated runs in A, a timing that regressed is excused when B (its median, if B was
/// repeated too) stays within A's own range: at most A's largest run. Counts and rates are
/// never excused, and B's own spread never widens the excuse.
fn apply_spread(a: &Report, _b: &Report, figures: &mut [Figure]) {
    let Some(repeat) = &a.repeat else {
        return;
    };
    for f in figures.iter_mut().filter(|f| f.unit.is_timing()) {
        let Some(s) = repeat.spread.get(&f.name) else {
            continue;
        };
        f.a_range = Some([s.min, s.max]);
        if f.regression && f.b.is_some_and(|b| b <= s.max) {
            f.regression = false;
            f.within_a_range = true;
        }
    }
}

/// Every figure `compare` reads from one report, by name, with its value.
pub fn figure_values(r: &Report) -> BTreeMap<String, f64> {
    match compare(r, r, 0.0) {
        Ok(c) => c
            .figures
            .into_iter()
            .filter_map(|f| f.a.map(|v| (f.name, v)))
            .collect(),
        Err(_) => BTreeMap::new(),
    }
}

/// The regression rule (module docs): higher is worse.
fn regressed(unit: Unit, a: f64, b: f64, tolerance: f64) -> bool {
    if a > 0.0 {
        // Timings must also grow by more than their floor: 1.6 ms → 5 ms on a short run is noise.
        (b - a) / a > tolerance + EPSILON && b - a > unit.floor()
    } else {
        b > unit.floor()
    }
}

fn regression_message(f: &Figure, tolerance: f64) -> String {
    let Some(b) = f.b else {
        return format!(
            "REGRESSION: {} {} → unknown (B has no value where A had one)",
            f.name,
            f.a.map_or("unknown".to_owned(), |a| value_text(f.unit, a))
        );
    };
    let a = f.a.unwrap_or(0.0);
    let why = match f.relative_pct {
        Some(pct) => format!("{}, tolerance {}", signed_pct(pct), pct_text(tolerance)),
        None if f.unit.floor() > 0.0 => {
            format!("new: A was 0, B is above the {TIMING_FLOOR_MS} ms floor")
        }
        None => "new: A was 0".to_owned(),
    };
    format!(
        "REGRESSION: {} {} → {} ({why})",
        f.name,
        value_text(f.unit, a),
        value_text(f.unit, b)
    )
}

fn summary(regressions: &[Regression], tolerance: f64) -> String {
    let tol = pct_text(tolerance);
    match regressions.len() {
        0 => format!("no regression past the {tol} tolerance"),
        k => {
            let names: Vec<&str> = regressions.iter().map(|r| r.name.as_str()).collect();
            let word = if k == 1 { "regression" } else { "regressions" };
            format!("{k} {word} past the {tol} tolerance: {}", names.join(", "))
        }
    }
}

/// The requested settings that differ, walked as dotted keys.
pub fn settings_diff(a: &Value, b: &Value) -> Vec<SettingDiff> {
    let (fa, fb) = (flatten(a), flatten(b));
    let keys: BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
    keys.into_iter()
        .filter(|k| fa.get(*k) != fb.get(*k))
        .map(|k| SettingDiff {
            key: k.clone(),
            a: fa.get(k).cloned(),
            b: fb.get(k).cloned(),
        })
        .collect()
}

/// A settings object as dotted keys, arrays walked by index (`faults[0].hold`), so that
/// every setting of the scenario (the server, the batch, the users, the duration, the gates,
/// the faults, the endpoints, the target) is compared on its own; a scalar where an object
/// was expected is kept under the name `settings_requested`, and a missing one (null) has
/// no keys.
fn flatten(value: &Value) -> BTreeMap<String, Value> {
    if value.is_null() {
        return BTreeMap::new();
    }
    crate::report::dotted_keys(value)
        .into_iter()
        .map(|(k, v)| {
            let k = if k.is_empty() {
                "settings_requested".to_owned()
            } else {
                k
            };
            (k, v)
        })
        .collect()
}

#[cfg(test)]
#[path = "compare_tests.rs"]
mod tests;
