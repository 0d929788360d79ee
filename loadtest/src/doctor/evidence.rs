//! What `lockbench doctor` reads, and what it takes from each piece:
//!
//! - the app's log(s), read as records with the rule a run's log follower uses (a traceback
//!   is one record): each lock error's request (by the scenario's request paths, else the
//!   path or the reference server's `op` it names), its SQLite code where the text says it,
//!   the wait it names (`try_ms=`, the reference server's), whether it is the app's retry and
//!   of what, its time as written; and the errors that look like lock errors and are not;
//! - the database file, as bytes: its header (journal mode, page size, the values that
//!   persist in it) and its `-wal` file's size. It is never opened through SQLite, so not
//!   even a `-shm` is created; its SHA-256 before and after says so;
//! - a lockbench report of a run against the app: each request's method and the latency of
//!   its failed requests (how long a failing request waited), the settings it ran with;
//! - a scenario: the requests' names, methods and paths (to tie a record to a request), how
//!   its log is read, and the settings in lockbench's words.
//!
//! Anything that cannot be read stops doctor with an error that names it (exit code 2).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{bail, Context};
use regex::Regex;

use crate::report::diagnosis::{
    AppSettings, DatabaseFacts, EndpointLog, EvidenceRead, Known, LogFacts, Spread,
};
use crate::report::Report;
use crate::run::follow::{read_records, LogReading};
use crate::scenario::{RoleEndpoints, Scenario, UserClass, DEFAULT_LOCK_PATTERN};

/// Where doctor's evidence is.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub logs: Vec<PathBuf>,
    pub database: Option<PathBuf>,
    pub report: Option<PathBuf>,
    /// A scenario already loaded (with its `--set`s), and its file.
    pub scenario: Option<(PathBuf, Scenario)>,
    /// The busy timeout the app believes it set (`--busy-timeout`), in ms.
    pub busy_timeout_ms: Option<u64>,
}

/// Everything read, ready for the rules.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    pub read: Vec<EvidenceRead>,
    pub log: Option<LogFacts>,
    pub database: Option<DatabaseFacts>,
    pub report: Option<Report>,
    pub settings: AppSettings,
    /// Each request's method, by name (the scenario's, or the report's scenario's).
    pub methods: BTreeMap<String, String>,
    /// Whether the app is lockbench's reference server.
    pub reference: bool,
}

/// The texts that look like a lock error and are not, each with its kind.
const NOT_A_LOCK: [(&str, &str); 5] = [
    (
        "unable to open database file",
        "unable to open database file",
    ),
    ("attempt to write a readonly database", "read-only database"),
    ("(?i)too many open files", "too many open files"),
    ("disk I/O error", "disk I/O error"),
    ("database disk image is malformed", "malformed database"),
];

fn re(cell: &'static OnceLock<Regex>, text: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(text).expect("a valid pattern"))
}

fn not_a_lock_kind(record: &str) -> Option<&'static str> {
    static RES: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    RES.get_or_init(|| {
        NOT_A_LOCK
            .iter()
            .map(|(p, k)| (Regex::new(p).expect("a valid pattern"), *k))
            .collect()
    })
    .iter()
    .find(|(r, _)| r.is_match(record))
    .map(|(_, k)| *k)
}

/// The SQLite code a lock error's text names; a bare "database is locked" is SQLITE_BUSY,
/// which is what most drivers print whatever the extended code was.
pub(crate) fn lock_code(record: &str) -> &'static str {
    static SNAPSHOT: OnceLock<Regex> = OnceLock::new();
    static TIMEOUT: OnceLock<Regex> = OnceLock::new();
    static RECOVERY: OnceLock<Regex> = OnceLock::new();
    static LOCKED: OnceLock<Regex> = OnceLock::new();
    if re(&SNAPSHOT, r"SQLITE_BUSY_SNAPSHOT|\(517\)|\b517\b").is_match(record) {
        "SQLITE_BUSY_SNAPSHOT"
    } else if re(&TIMEOUT, r"SQLITE_BUSY_TIMEOUT|\(773\)").is_match(record) {
        "SQLITE_BUSY_TIMEOUT"
    } else if re(&RECOVERY, r"SQLITE_BUSY_RECOVERY|\(261\)").is_match(record) {
        "SQLITE_BUSY_RECOVERY"
    } else if re(&LOCKED, r"database table is locked|SQLITE_LOCKED").is_match(record) {
        "SQLITE_LOCKED"
    } else {
        "SQLITE_BUSY"
    }
}

/// What a record retries: None when it is not a retry message; Some(true) when the retry
/// names a commit.
fn retry_of(record: &str) -> Option<bool> {
    static RETRY: OnceLock<Regex> = OnceLock::new();
    static COMMIT: OnceLock<Regex> = OnceLock::new();
    let retry = re(
        &RETRY,
        r#"(?i)\bretrying\b|\bwill retry\b|\bretry(?:ing)? in\b|retry="(?:commit|unit of work)""#,
    );
    if !retry.is_match(record) {
        return None;
    }
    Some(
        re(
            &COMMIT,
            r#"(?i)retry="commit"|\bretr(?:y|ying)\b[^\n]{0,30}\bcommit\b"#,
        )
        .is_match(record),
    )
}

/// The wait a record names (`try_ms=`, the reference server's lock line), in ms.
fn named_wait_ms(record: &str) -> Option<f64> {
    static TRY: OnceLock<Regex> = OnceLock::new();
    // The reference server's `try_ms=`, common key=value fields, and Rails' request line
    // ("Completed 500 Internal Server Error in 5012ms").
    re(
        &TRY,
        r"\b(?:try_ms|wait_ms|waited_ms|duration_ms|elapsed_ms)=(\d+(?:\.\d+)?)|Completed 5\d\d [^\n]*? in (\d+(?:\.\d+)?)ms",
    )
    .captures(record)
    .and_then(|c| c.get(1).or(c.get(2)))
    .and_then(|m| m.as_str().parse().ok())
}

/// The first time a record names, as written.
fn time_of(record: &str) -> Option<String> {
    static TIME: OnceLock<Regex> = OnceLock::new();
    re(
        &TIME,
        r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?",
    )
    .find(record)
    .map(|m| m.as_str().to_owned())
}

/// The reference server's operation a record names (`op="register"`), as its endpoint.
fn reference_endpoint(record: &str) -> Option<&'static str> {
    static OP: OnceLock<Regex> = OnceLock::new();
    let op = re(&OP, r#"\bop="?([A-Za-z0-9_:.-]+)"?"#).captures(record)?;
    Some(lockbench_server::app::stats::endpoint_of(&op[1]))
}

/// The method a record names just before its path ("POST /write/").
fn method_in(record: &str) -> Option<String> {
    static METHOD: OnceLock<Regex> = OnceLock::new();
    re(&METHOD, r"\b(GET|HEAD|POST|PUT|PATCH|DELETE) /")
        .captures(record)
        .map(|c| c[1].to_owned())
}

/// "read" for GET and HEAD, "write" for the other methods.
pub(crate) fn kind_of_method(method: &str) -> &'static str {
    match method.to_ascii_uppercase().as_str() {
        "GET" | "HEAD" | "OPTIONS" => "read",
        _ => "write",
    }
}

fn spread(mut values: Vec<f64>) -> Option<Spread> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    Some(Spread {
        count: values.len() as u64,
        p50: values[(values.len() - 1) / 2],
        max: *values.last().expect("not empty"),
    })
}

/// A record cut to its first lines, each cut to a readable width.
fn sample(record: &str) -> String {
    let cut = |l: &str| {
        if l.chars().count() > 200 {
            format!("{}…", l.chars().take(200).collect::<String>())
        } else {
            l.to_owned()
        }
    };
    let lines: Vec<&str> = record.lines().collect();
    if lines.len() <= 8 {
        return lines.iter().map(|l| cut(l)).collect::<Vec<_>>().join("\n");
    }
    // A traceback: its first lines (the request) and its last (the exception).
    let mut out: Vec<String> = lines[..3].iter().map(|l| cut(l)).collect();
    out.push("…".into());
    out.extend(lines[lines.len() - 4..].iter().map(|l| cut(l)));
    out.join("\n")
}

/// How a log is read: the scenario's `[target]` patterns and requests, or the defaults.
fn reading(scenario: Option<&Scenario>, classes: &[UserClass]) -> anyhow::Result<LogReading> {
    let t = scenario.and_then(|s| s.target.as_ref());
    let pattern = |key: &str, text: &str| {
        Regex::new(text)
            .map_err(|e| anyhow::anyhow!("target.{key}: not a valid regular expression: {e}"))
    };
    Ok(LogReading {
        lock: pattern(
            "lock_pattern",
            t.map_or(DEFAULT_LOCK_PATTERN, |t| t.lock_pattern()),
        )?,
        record_start: t
            .and_then(|t| t.record_start.as_deref())
            .map(|r| pattern("record_start", r))
            .transpose()?,
        path: pattern(
            "path_pattern",
            t.map_or(crate::scenario::DEFAULT_PATH_PATTERN, |t| t.path_pattern()),
        )?,
        routes: classes
            .iter()
            .flat_map(|c| &c.requests)
            .map(|r| (r.name.clone(), LogReading::route(&r.path)))
            .collect(),
    })
}

/// The requests a scenario sends, as classes (its `[[users]]`, or its roles mapped through
/// `[endpoints]`, or the reference server's roles).
fn classes_of(scenario: &Scenario) -> Vec<UserClass> {
    if !scenario.users.classes.is_empty() {
        return scenario.users.classes.clone();
    }
    match &scenario.endpoints {
        Some(e) => scenario.users.classes(RoleEndpoints::External(e)),
        None => scenario.users.classes(RoleEndpoints::Reference),
    }
}

/// The scenario a report ran: its `settings_requested` is the scenario with every default
/// filled in. None when it does not read back (a report of an older lockbench).
fn scenario_of_report(report: &Report) -> Option<Scenario> {
    let mut v = report.settings_requested.clone();
    let map = v.as_object_mut()?;
    map.insert(
        "name".into(),
        serde_json::Value::String(report.scenario.name.clone()),
    );
    serde_json::from_value(v).ok()
}

impl Evidence {
    /// Reads every source; an error names the one that could not be read.
    pub fn read(sources: &Sources) -> anyhow::Result<Evidence> {
        let mut ev = Evidence::default();
        if sources.logs.is_empty()
            && sources.database.is_none()
            && sources.report.is_none()
            && sources.scenario.is_none()
        {
            bail!("nothing to read: give --log, --database, --report or --scenario");
        }
        if let Some(path) = &sources.report {
            ev.read_report(path)?;
        }
        let from_report = ev.report.as_ref().and_then(scenario_of_report);
        let scenario = match &sources.scenario {
            Some((path, s)) => {
                ev.read.push(EvidenceRead {
                    kind: "scenario".into(),
                    path: path.display().to_string(),
                    summary: format!("{}: {}", s.name, s.description),
                });
                if ev.report.is_none() {
                    ev.reference = s.target.is_none();
                }
                Some(s.clone())
            }
            None => from_report,
        };
        let classes = scenario.as_ref().map(classes_of).unwrap_or_default();
        for r in classes.iter().flat_map(|c| &c.requests) {
            ev.methods
                .insert(r.name.clone(), r.method.to_ascii_uppercase());
        }
        ev.settings = settings(sources, scenario.as_ref(), ev.report.as_ref(), ev.reference);
        if !sources.logs.is_empty() {
            let reading = reading(scenario.as_ref(), &classes)?;
            ev.read_logs(&sources.logs, &reading)?;
        }
        if let Some(path) = &sources.database {
            let db = read_database(path)?;
            ev.read.push(EvidenceRead {
                kind: "database".into(),
                path: path.display().to_string(),
                summary: format!(
                    "{} journal, page size {}, {} bytes{}",
                    db.journal,
                    db.page_size,
                    db.bytes,
                    db.wal_bytes
                        .map(|w| format!(", WAL {w} bytes"))
                        .unwrap_or_default()
                ),
            });
            let mode = if db.journal == "wal" {
                "wal"
            } else {
                "rollback"
            };
            ev.settings.journal_mode = Some(Known {
                value: mode.into(),
                source: "the database file's header (bytes 18 and 19)".into(),
            });
            ev.database = Some(db);
        }
        Ok(ev)
    }

    fn read_report(&mut self, path: &Path) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--report {}: cannot read it", path.display()))?;
        let report: Report = serde_json::from_str(&text)
            .with_context(|| format!("--report {}: not a lockbench report.json", path.display()))?;
        self.read.push(EvidenceRead {
            kind: "report".into(),
            path: path.display().to_string(),
            summary: format!(
                "scenario {}, {} requests, {} lock errors, verdict {}",
                report.scenario.name,
                report.requests.values().map(|s| s.count).sum::<u64>(),
                report.lock_errors.total,
                if report.verdict.passed {
                    "PASSED"
                } else {
                    "FAILED"
                }
            ),
        });
        self.reference = report.target.kind == "reference";
        self.report = Some(report);
        Ok(())
    }

    /// Every log's records into the log facts; each request's waits, from the records and
    /// from the report's failed requests.
    fn read_logs(&mut self, logs: &[PathBuf], reading: &LogReading) -> anyhow::Result<()> {
        let mut facts = LogFacts::default();
        let mut waits: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for path in logs {
            let meta = std::fs::metadata(path)
                .with_context(|| format!("--log {}: no such file", path.display()))?;
            if !meta.is_file() {
                bail!("--log {}: not a file", path.display());
            }
            let records = read_records(path, reading.record_start.clone())
                .with_context(|| format!("--log {}", path.display()))?;
            let before = facts.lock_errors;
            for record in &records {
                self.take_record(reading, record, &mut facts, &mut waits);
            }
            self.read.push(EvidenceRead {
                kind: "log".into(),
                path: path.display().to_string(),
                summary: format!(
                    "{} records, {} lock errors",
                    records.len(),
                    facts.lock_errors - before
                ),
            });
            facts.records += records.len() as u64;
        }
        for (name, w) in waits {
            if let Some(e) = facts.by_endpoint.get_mut(&name) {
                e.waits_ms = spread(w);
            }
        }
        if let Some(report) = &self.report {
            for (name, e) in facts.by_endpoint.iter_mut() {
                let Some(stats) = report.requests.get(name) else {
                    continue;
                };
                if let Some(l) = &stats.failed_latency_us {
                    e.failed_latency_ms = Some(Spread {
                        count: stats.failures,
                        p50: l.p50 as f64 / 1000.0,
                        max: l.max as f64 / 1000.0,
                    });
                }
            }
        }
        self.log = Some(facts);
        Ok(())
    }

    /// Takes one record of the log into the facts.
    fn take_record(
        &self,
        reading: &LogReading,
        record: &str,
        facts: &mut LogFacts,
        waits: &mut BTreeMap<String, Vec<f64>>,
    ) {
        // A log written for a terminal has colour codes between a field's name and value.
        static ANSI: OnceLock<Regex> = OnceLock::new();
        let record = &*re(&ANSI, "\x1b\\[[0-9;]*[A-Za-z]").replace_all(record, "");
        // lockbench's reference server says each lock error once, as "database is locked";
        // its other lines that name a lock code (a unit of work that failed on one) are not
        // another lock error.
        let reference_echo =
            record.contains("lockbench_server::") && !record.contains("database is locked");
        if reference_echo || !reading.lock.is_match(record) {
            if let Some(kind) = not_a_lock_kind(record) {
                *facts.not_a_lock.entry(kind.to_owned()).or_default() += 1;
            }
            return;
        }
        facts.lock_errors += 1;
        let (name, kind) = self.endpoint(reading, record);
        let code = lock_code(record);
        *facts.by_code.entry(code.to_owned()).or_default() += 1;
        let commit_retry = retry_of(record);
        if let Some(commit) = commit_retry {
            facts.retries += 1;
            if commit {
                facts.commit_retries += 1;
            }
        }
        if let Some(t) = time_of(record) {
            facts.first_at.get_or_insert_with(|| t.clone());
            facts.last_at = Some(t);
        }
        if let Some(w) = named_wait_ms(record) {
            waits.entry(name.clone()).or_default().push(w);
        }
        let e = facts
            .by_endpoint
            .entry(name)
            .or_insert_with(|| EndpointLog {
                kind: kind.to_owned(),
                sample: sample(record),
                ..EndpointLog::default()
            });
        e.lock_errors += 1;
        if commit_retry == Some(true) {
            e.commit_retries += 1;
        }
        *e.by_code.entry(code.to_owned()).or_default() += 1;
    }

    /// The request a lock error belongs to, and whether it reads or writes.
    fn endpoint(&self, reading: &LogReading, record: &str) -> (String, &'static str) {
        if let Some(name) = reading.attribute(record) {
            let kind = self
                .methods
                .get(name)
                .map_or("unknown", |m| kind_of_method(m));
            return (name.to_owned(), kind);
        }
        if let Some(ep) = reference_endpoint(record) {
            let kind = match ep.split_once(' ') {
                Some((method, _)) => kind_of_method(method),
                None => "write",
            };
            return (ep.to_owned(), kind);
        }
        if let Some(path) = reading
            .path
            .captures(record)
            .and_then(|c| c.name("path"))
            .map(|p| p.as_str().to_owned())
        {
            let kind = method_in(record).map_or("unknown", |m| kind_of_method(&m));
            return (path, kind);
        }
        ("(none named)".into(), "unknown")
    }
}

/// The settings doctor goes by, each with where it came from: `--busy-timeout`; the
/// reference server's settings (scenario or report); a launched app's knobs.
fn settings(
    sources: &Sources,
    scenario: Option<&Scenario>,
    report: Option<&Report>,
    reference: bool,
) -> AppSettings {
    let mut s = AppSettings::default();
    // Where a setting in lockbench's words is the app's: always for the reference server; for
    // an app lockbench started, only the settings its knobs passed.
    let knobs: Vec<String> = report
        .and_then(|r| r.target.app.as_ref())
        .map(|a| a.knobs.keys().cloned().collect())
        .unwrap_or_default();
    let (from, storage, retry) = match (report, scenario) {
        (Some(r), _) => (
            "report.json's settings",
            r.settings_requested["server"]["storage"].clone(),
            r.settings_requested["server"]["retry"].clone(),
        ),
        (None, Some(sc)) => (
            "the scenario's settings",
            serde_json::to_value(&sc.server.storage).unwrap_or_default(),
            serde_json::to_value(&sc.server.retry).unwrap_or_default(),
        ),
        (None, None) => ("", serde_json::Value::Null, serde_json::Value::Null),
    };
    let applies = |key: &str| reference || knobs.iter().any(|k| k == key);
    let text = |v: &serde_json::Value, key: &str, full: &str| -> Option<Known<String>> {
        if !applies(full) {
            return None;
        }
        v[key].as_str().map(|value| Known {
            value: value.to_owned(),
            source: from.to_owned(),
        })
    };
    s.tx_mode = text(&storage, "tx_mode", "server.storage.tx_mode");
    s.journal_mode = text(&storage, "journal_mode", "server.storage.journal_mode");
    s.retry_scope = text(&retry, "retry_scope", "server.retry.retry_scope");
    if applies("server.storage.busy_timeout_ms") {
        s.busy_timeout_ms = storage["busy_timeout_ms"].as_u64().map(|value| Known {
            value,
            source: from.to_owned(),
        });
    }
    if let Some(ms) = sources.busy_timeout_ms {
        s.busy_timeout_ms = Some(Known {
            value: ms,
            source: "--busy-timeout".into(),
        });
    }
    s
}

/// The database file's header and its WAL's size, read as bytes; its SHA-256 before and
/// after. Errors name the file: missing, not a file, not a SQLite database.
pub fn read_database(path: &Path) -> anyhow::Result<DatabaseFacts> {
    let shown = path.display().to_string();
    let meta =
        std::fs::metadata(path).with_context(|| format!("--database {shown}: no such file"))?;
    if !meta.is_file() {
        bail!("--database {shown}: not a file");
    }
    let before = crate::run::sha256_file(path).with_context(|| format!("--database {shown}"))?;
    let bytes = std::fs::read(path).with_context(|| format!("--database {shown}"))?;
    if bytes.len() < 100 || &bytes[..16] != b"SQLite format 3\0" {
        bail!(
            "--database {shown}: not a SQLite database (its first 16 bytes are not \"SQLite format 3\", {} bytes in all)",
            bytes.len()
        );
    }
    let be16 = |at: usize| u16::from_be_bytes([bytes[at], bytes[at + 1]]);
    let be32 =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let page_size = match be16(16) {
        1 => 65_536,
        n => u32::from(n),
    };
    let journal = match (bytes[18], bytes[19]) {
        (2, 2) => "wal",
        _ => "rollback",
    };
    let side = |suffix: &str| {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        PathBuf::from(p)
    };
    let wal = std::fs::metadata(side("-wal")).ok().map(|m| m.len());
    let wal_frames = wal.map(|w| w.saturating_sub(32) / (u64::from(page_size) + 24));
    let after = crate::run::sha256_file(path).with_context(|| format!("--database {shown}"))?;
    Ok(DatabaseFacts {
        path: shown,
        bytes: bytes.len() as u64,
        page_size,
        journal: journal.into(),
        wal_bytes: wal,
        wal_frames,
        shm_present: side("-shm").exists(),
        journal_file_bytes: std::fs::metadata(side("-journal")).ok().map(|m| m.len()),
        user_version: be32(60),
        application_id: be32(68),
        auto_vacuum: match (be32(52), be32(64)) {
            (0, _) => "none",
            (_, 0) => "full",
            _ => "incremental",
        }
        .into(),
        text_encoding: match be32(56) {
            2 => "UTF-16le",
            3 => "UTF-16be",
            _ => "UTF-8",
        }
        .into(),
        sha256_before: before,
        sha256_after: after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_retries_and_waits_are_read_from_the_texts_apps_write() {
        assert_eq!(
            lock_code("sqlite3.OperationalError: database is locked"),
            "SQLITE_BUSY"
        );
        assert_eq!(
            lock_code("database is locked (517)"),
            "SQLITE_BUSY_SNAPSHOT"
        );
        assert_eq!(
            lock_code(r#"database is locked op="register" code="SQLITE_BUSY_SNAPSHOT""#),
            "SQLITE_BUSY_SNAPSHOT"
        );
        assert_eq!(
            lock_code("database table is locked: items"),
            "SQLITE_LOCKED"
        );
        assert_eq!(
            retry_of("Database locked, retrying commit in 0.5s (attempt 1/6): database is locked"),
            Some(true)
        );
        assert_eq!(
            retry_of("Database locked, retrying registration_updates in 0.3s (attempt 1/3)"),
            Some(false)
        );
        assert_eq!(
            retry_of(r#"database is locked op="register" retried=true retry="commit" try_ms=3"#),
            Some(true)
        );
        assert_eq!(
            retry_of(r#"database is locked op="register" retried=false retry="none" try_ms=3"#),
            None
        );
        assert_eq!(named_wait_ms("x try_ms=5001 y"), Some(5001.0));
        assert_eq!(
            named_wait_ms("Completed 500 Internal Server Error in 5012ms (ActiveRecord: 5010.2ms)"),
            Some(5012.0)
        );
        assert_eq!(
            reference_endpoint(r#"database is locked op="register" code="SQLITE_BUSY""#),
            Some("POST /api/registrations")
        );
        assert_eq!(
            not_a_lock_kind("sqlite3.OperationalError: unable to open database file"),
            Some("unable to open database file")
        );
    }
}
