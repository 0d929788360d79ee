//! The facts a report states in words, worked out once as plain (unescaped) text: the
//! verdict's lines, each gate's value (or "unknown", with why), the tables of requests (the
//! load's and lockbench's own), why a section is absent, a repeated run's runs and what each
//! table holds, the requested settings as `key = value` lists, the per-connection settings
//! and which connection's busy timeout stands out. The Markdown
//! and HTML renderings lay out and escape the same text; nothing here formats for either.

use std::collections::BTreeMap;

use serde_json::Value;

use super::format::{count, fixed, gib, mib, ms, num};
use super::{EndpointStats, GateResult, LockErrors, LockSource, Report, WorkerSettings};

/// "PASSED" or "FAILED".
pub(crate) fn verdict_word(r: &Report) -> &'static str {
    if r.interrupted {
        "INTERRUPTED"
    } else if r.verdict.passed {
        "PASSED"
    } else {
        "FAILED"
    }
}

/// The three lines under the verdict.
pub(crate) struct Headline {
    pub lock_errors: String,
    pub lost_writes: String,
    pub gates_failed: String,
}

/// "workers 2, 3 did not answer /api/stats", when some did not.
pub(crate) fn missing_workers(le: &LockErrors) -> Option<String> {
    let ids: Vec<String> = le.missing_workers.iter().map(u32::to_string).collect();
    match ids.len() {
        0 => None,
        1 => Some(format!("worker {} did not answer /api/stats", ids[0])),
        _ => Some(format!(
            "workers {} did not answer /api/stats",
            ids.join(", ")
        )),
    }
}

/// A lock-error total: "204", or "at least 204" when workers could not be read.
fn lock_total(le: &LockErrors) -> String {
    if le.missing_workers.is_empty() {
        count(le.total)
    } else {
        format!("at least {}", count(le.total))
    }
}

pub(crate) fn headline(r: &Report) -> Headline {
    let le = &r.lock_errors;
    let missing = missing_workers(le).map_or_else(String::new, |m| format!("; {m}"));
    let lock_errors = match le.source {
        LockSource::ServerCounters => format!(
            "{} (server-side counters{missing}); {} reached a client",
            lock_total(le),
            count(le.client_visible)
        ),
        LockSource::TargetLog => format!(
            "{} (lines of the app's log matching the lock pattern); {} reached a client as a 503 or an answer mentioning a lock",
            lock_total(le),
            count(le.client_visible)
        ),
        LockSource::ClientsOnly if le.server_errors_unexplained > 0 => format!(
            "unknown: {} seen by clients, and {} server errors; their cause cannot be seen from the client; set [target].log",
            count(le.client_visible),
            count(le.server_errors_unexplained)
        ),
        LockSource::ClientsOnly => format!(
            "{} seen by clients (503s and answers mentioning a lock); the app's own count cannot be seen: set [target].log",
            count(le.client_visible)
        ),
    };
    let lost_writes = match &r.audit {
        Some(a) if a.unaudited_writes > 0 => format!(
            "at least {} ({} acknowledged writes could not be looked up)",
            count(a.lost_writes),
            count(a.unaudited_writes)
        ),
        Some(a) => count(a.lost_writes),
        None => audit_absent(r),
    };
    let failed: Vec<&str> = r
        .gates
        .iter()
        .filter(|g| !g.passed)
        .map(|g| g.name.as_str())
        .collect();
    let gates_failed = if r.gates.is_empty() {
        "none set".to_owned()
    } else if failed.is_empty() {
        format!("0 of {}", r.gates.len())
    } else {
        format!(
            "{} of {}: {}",
            failed.len(),
            r.gates.len(),
            failed.join(", ")
        )
    };
    Headline {
        lock_errors,
        lost_writes,
        gates_failed,
    }
}

/// A gate's value cell: "204", "unknown (the batch did not finish: ...)", "12 (at least
/// 12: ...)".
pub(crate) fn gate_value(g: &GateResult) -> String {
    let value = g.value.map_or_else(|| "unknown".to_owned(), num);
    match &g.note {
        Some(note) => format!("{value} ({note})"),
        None => value,
    }
}

/// What the two latencies mean, under the requests table.
pub(crate) const LATENCY_NOTE: &str = "Latency is measured from the moment each request was sent; \"from tick\" measures from the tick it was meant for, so time a request spent waiting to be sent counts too (corrected for coordinated omission, as wrk2 measures): a request's own time plus its tick's lateness, a skipped tick charged to the endpoints of the request that served it, and a tick still waiting when the load stopped charged up to the stop. Lock errors: requests that reached their client as a 503 or an answer mentioning a lock, each counted once. Unanswered at stop: ticks still waiting to be sent when the load stopped. \"–\": an endpoint that never answered has no latency.";

/// One row per endpoint of `requests` (the load's, or lockbench's own): counts, lock errors
/// that reached the client, ticks unanswered at the stop, both latencies; "–" for the
/// latency of an endpoint that never answered.
pub(crate) fn request_table(
    requests: &std::collections::BTreeMap<String, EndpointStats>,
) -> TextTable {
    let header = vec![
        "endpoint",
        "count",
        "failures",
        "503",
        "lock errors",
        "unanswered at stop",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "p99 from tick ms",
    ];
    let rows = requests
        .iter()
        .map(|(endpoint, s)| {
            let sent = |us: u64| {
                if s.count > 0 {
                    ms(us)
                } else {
                    "–".to_owned()
                }
            };
            let l = &s.latency_us;
            vec![
                endpoint.clone(),
                count(s.count),
                count(s.failures),
                count(s.status_503),
                count(s.lock_errors),
                count(s.unanswered_at_stop),
                sent(l.p50),
                sent(l.p95),
                sent(l.p99),
                sent(l.max),
                // No tick (lockbench's own requests) or no answer and none waiting: none.
                if s.latency_from_tick_us == super::Latency::default() {
                    "–".to_owned()
                } else {
                    ms(s.latency_from_tick_us.p99)
                },
            ]
        })
        .collect();
    let numeric = (1..header.len()).collect();
    TextTable {
        header,
        rows,
        numeric,
    }
}

/// What lockbench's own requests are, over their table.
pub(crate) const RUNNER_NOTE: &str = "lockbench's own requests that reached the app's database (posting the batch, posting it again after a kill): not part of the load, but a lock error the server counted in them is in the lock-error total.";

/// One row per run of `run --repeat`: its own verdict and report.
pub(crate) fn run_table(r: &Report) -> Option<TextTable> {
    let repeat = r.repeat.as_ref()?;
    let rows = repeat
        .verdicts
        .iter()
        .map(|v| {
            let result = match (v.passed, v.flaky) {
                (true, _) => "pass".to_owned(),
                (false, true) => "FAIL (timing only; the medians pass)".to_owned(),
                (false, false) => "FAIL".to_owned(),
            };
            let failed: Vec<String> = v
                .gates
                .iter()
                .filter(|g| !g.passed)
                .map(|g| format!("{}: {}", g.name, gate_value(g)))
                .collect();
            vec![
                v.run.to_string(),
                result,
                if failed.is_empty() {
                    "–".to_owned()
                } else {
                    failed.join("; ")
                },
                v.summary.clone(),
                v.report.clone(),
            ]
        })
        .collect();
    Some(TextTable {
        header: vec!["run", "result", "failed gates", "its verdict", "report"],
        rows,
        numeric: vec![0],
    })
}

/// What each table of a repeated run's report holds, as "table: what" lines.
pub(crate) fn repeat_tables(r: &Report) -> Vec<String> {
    r.repeat.as_ref().map_or_else(Vec::new, |rep| {
        rep.tables
            .iter()
            .map(|(table, what)| format!("{table}: {what}"))
            .collect()
    })
}

/// The processor's failed steps: "none", or "upload_person 1, save_photo 2".
pub(crate) fn processor_failures_line(r: &Report) -> String {
    if r.processor_failures.values().all(|n| *n == 0) {
        return if r.target.kind == "external" {
            "not measured: external target".to_owned()
        } else {
            "none".to_owned()
        };
    }
    let total: u64 = r.processor_failures.values().sum();
    let steps: Vec<String> = r
        .processor_failures
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(op, n)| format!("{op} {}", count(*n)))
        .collect();
    format!(
        "{} ({}): steps of the batch that did not happen",
        count(total),
        steps.join(", ")
    )
}

/// What the role table's columns mean.
pub(crate) const ROLE_NOTE: &str = "interval: ticks keep their phase and fire while earlier requests are out, up to max in flight (a page polling with setInterval); after-response: the next tick waits for the answer and the schedule restarts when it is late (a setTimeout chain). Late: sent 10 ms or more after the tick. Skipped: not sent; the user's next request serves it, so its latency from the tick runs to that request's answer. Burst factor: the busiest 100 ms of tick starts against an average 100 ms of the schedule (about 1 when spread, up to the number of users in lock step).";

/// A table as plain text cells.
pub(crate) struct TextTable {
    pub header: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
    /// Columns holding numbers (right-aligned).
    pub numeric: Vec<usize>,
}

/// One row per fault the run applied: what, when, what happened.
pub(crate) fn fault_table(r: &Report) -> TextTable {
    let secs = |t: Option<f64>| t.map_or_else(|| "–".to_owned(), |t| fixed(t, 1));
    TextTable {
        header: vec!["fault", "from s", "to s", "what happened"],
        rows: r
            .faults
            .iter()
            .map(|f| {
                vec![
                    f.description.clone(),
                    secs(f.started_s),
                    secs(f.ended_s),
                    f.outcome.clone(),
                ]
            })
            .collect(),
        numeric: vec![1, 2],
    }
}

/// The restarts in one sentence.
pub(crate) fn restart_line(r: &Report) -> String {
    let gave_up = r.restarts.iter().any(|x| x.action == "gave-up");
    let restarted = r
        .restarts
        .iter()
        .filter(|x| x.action == "restarted")
        .count();
    match (restarted, gave_up) {
        (0, false) => "Worker restarts: none.".to_owned(),
        (n, false) => format!(
            "Worker restarts: {n}. Each worker keeps its counters in a file, so lock errors counted before a restart are in the totals."
        ),
        (n, true) => format!(
            "Worker restarts: {n}, then the supervisor gave up on a worker that kept crashing, and the server stopped."
        ),
    }
}

/// One row per restart.
pub(crate) fn restart_table(r: &Report) -> TextTable {
    TextTable {
        header: vec![
            "at s",
            "worker",
            "pid",
            "exit status",
            "action",
            "restarted after ms",
            "new pid",
        ],
        rows: r
            .restarts
            .iter()
            .map(|x| {
                vec![
                    fixed(x.t_s, 1),
                    x.worker.to_string(),
                    x.pid.to_string(),
                    x.status.clone(),
                    x.action.clone(),
                    count(x.delay_ms),
                    x.new_pid.map_or_else(|| "–".to_owned(), |p| p.to_string()),
                ]
            })
            .collect(),
        numeric: vec![0, 1, 2, 5, 6],
    }
}

/// One row per role: its behaviour, its rates, its ticks and both latencies.
pub(crate) fn role_table(r: &Report) -> TextTable {
    let header = vec![
        "role",
        "users",
        "every ms",
        "poll model",
        "max in flight",
        "connection",
        "offered req/s",
        "achieved req/s",
        "ticks due",
        "sent",
        "late",
        "skipped",
        "burst factor",
        "p99 from send ms",
        "p99 from tick ms",
    ];
    let rows = r
        .roles
        .iter()
        .map(|(name, f)| {
            vec![
                name.clone(),
                count(u64::from(f.users)),
                count(f.interval_ms),
                enum_word(&f.poll_model),
                count(u64::from(f.max_in_flight)),
                enum_word(&f.connection),
                fixed(f.offered_rps, 1),
                fixed(f.achieved_rps, 1),
                count(f.ticks_due),
                count(f.ticks_sent),
                count(f.ticks_late),
                count(f.ticks_skipped),
                fixed(f.burst_factor, 1),
                ms(f.latency_from_send_us.p99),
                ms(f.latency_from_tick_us.p99),
            ]
        })
        .collect();
    let numeric = (1..header.len()).collect();
    TextTable {
        header,
        rows,
        numeric,
    }
}

/// A settings enum as its scenario word ("after-response").
pub(crate) fn enum_word<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        _ => "?".to_owned(),
    }
}

/// The external app's database file as lockbench read it, if the scenario named one.
pub(crate) fn target_database_lines(r: &Report) -> Option<Vec<(&'static str, String)>> {
    let db = r.target_database.as_ref()?;
    Some(vec![
        ("File", db.path.clone()),
        ("Journal mode", db.journal_mode.clone()),
        (
            "Size",
            format!(
                "{} bytes; -wal file {} bytes",
                count(db.size_bytes),
                count(db.wal_bytes)
            ),
        ),
        ("Acknowledged writes audited", count(db.audited_writes)),
        (
            "Unchanged by lockbench",
            if db.sha256_before == db.sha256_after {
                format!(
                    "yes (SHA-256 {} before and after reading)",
                    &db.sha256_before
                )
            } else {
                format!(
                    "the file changed while it was read (the app was writing): SHA-256 {} before, {} after",
                    db.sha256_before, db.sha256_after
                )
            },
        ),
    ])
}

/// "reference" or "external" in words.
pub(crate) fn target_words(r: &Report) -> String {
    match r.target.kind.as_str() {
        "reference" => "the reference".to_owned(),
        "external" => "an external (--target)".to_owned(),
        other => format!("a {other}"),
    }
}

/// Why a section is absent: the external target, else the first note that names the
/// section, else a plain "not measured".
pub(crate) fn absent_reason(r: &Report, keywords: &[&str]) -> String {
    if r.target.kind == "external" {
        return "not measured: external target".to_owned();
    }
    let note = r.notes.iter().find(|n| {
        let lower = n.to_lowercase();
        keywords.iter().any(|k| contains_word(&lower, k))
    });
    match note {
        Some(note) => format!("not measured: {note}"),
        None => "not measured (the run gave no reason)".to_owned(),
    }
}

/// Whether `haystack` contains `word` with no letter or digit on either side.
pub(crate) fn contains_word(haystack: &str, word: &str) -> bool {
    haystack.match_indices(word).any(|(at, _)| {
        let before = haystack[..at].chars().next_back();
        let after = haystack[at + word.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

pub(crate) fn audit_absent(r: &Report) -> String {
    absent_reason(r, &["audit", "lost writes"])
}

pub(crate) fn effective_absent(r: &Report) -> String {
    absent_reason(
        r,
        &["/api/settings", "effective settings", "settings_effective"],
    )
}

/// The sentence above the lock-error tables: where the total comes from.
pub(crate) fn lock_error_origin(r: &Report) -> String {
    let le = &r.lock_errors;
    match le.source {
        LockSource::ServerCounters => format!(
            "{} lock errors counted by the server (every one seen, retried or not){}; {} reached a client as a 503 or an answer mentioning a lock.",
            lock_total(le),
            missing_workers(le).map_or_else(String::new, |m| format!(
                ": a lower bound, {m} and their counts are missing"
            )),
            count(le.client_visible)
        ),
        LockSource::TargetLog => format!(
            "{} lock errors in the app's log (lines matching the lock pattern while the load ran); {} reached a client as a 503 or an answer mentioning a lock, and {} other server errors reached clients.",
            count(le.total),
            count(le.client_visible),
            count(le.server_errors_unexplained)
        ),
        LockSource::ClientsOnly => format!(
            "Lock errors as far as the clients can see: {} (503s and answers mentioning a lock), plus {} server errors whose cause cannot be seen from the client. The app's own count is unknown: set [target].log.",
            count(le.client_visible),
            count(le.server_errors_unexplained)
        ),
    }
}

/// Why a by-code or by-endpoint breakdown is empty.
pub(crate) fn by_map_absent(r: &Report) -> String {
    if r.lock_errors.source == LockSource::ServerCounters {
        "none".to_owned()
    } else {
        absent_reason(r, &["server-side", "server side", "counters"])
    }
}

/// Server-side retries and commit-only drops, or why they are absent.
pub(crate) fn retry_lines(r: &Report) -> (String, String) {
    let retries = match r.retries {
        Some(n) => count(n),
        None => absent_reason(r, &["retry", "retries"]),
    };
    let dropped = match r.commit_only_dropped {
        Some(n) if !r.commit_only_dropped_by_endpoint.is_empty() => {
            let parts: Vec<String> = r
                .commit_only_dropped_by_endpoint
                .iter()
                .map(|(e, n)| format!("{} on {e}", count(*n)))
                .collect();
            format!("{} ({})", count(n), parts.join(", "))
        }
        Some(n) => count(n),
        None => absent_reason(r, &["commit-only", "commit only", "retry_scope"]),
    };
    (retries, dropped)
}

pub(crate) fn batch_lines(r: &Report) -> Result<Vec<(&'static str, String)>, String> {
    let Some(b) = &r.batch else {
        return Err(absent_reason(r, &["batch", "processor"]));
    };
    Ok(vec![
        ("Photos", count(b.photos)),
        ("Processed", count(b.processed)),
        ("Failed", count(b.failed)),
        ("Persons", count(b.persons)),
        ("Uploaded", count(b.uploaded)),
        (
            "Ended",
            if b.finished {
                "finished".to_owned()
            } else {
                format!("did not finish: {}", b.ended.describe())
            },
        ),
        (
            "Batch status",
            b.status.clone().unwrap_or_else(|| "not read".to_owned()),
        ),
        (
            "Duration",
            if b.finished {
                format!("{} s", fixed(b.duration_s, 1))
            } else {
                format!(
                    "unknown: the batch did not finish; the run waited {} s for it",
                    fixed(b.duration_s, 1)
                )
            },
        ),
        ("Photos/s", fixed(b.photos_per_s, 1)),
    ])
}

pub(crate) fn audit_lines(r: &Report, a: &super::Audit) -> Vec<(&'static str, String)> {
    if r.target.kind == "external" {
        // An external app's audit looks up the acknowledged kiosk writes only.
        return vec![
            ("Lost writes", count(a.lost_writes)),
            (
                "Acknowledged writes found more than once",
                count(a.duplicate_writes),
            ),
            (
                "Acknowledged writes that could not be looked up",
                count(a.unaudited_writes),
            ),
        ];
    }
    vec![
        (
            "Lost writes",
            format!(
                "{} (acknowledged writes the database does not hold: the four kinds below)",
                count(a.lost_writes)
            ),
        ),
        ("Missing photos", count(a.missing_photos)),
        ("Lost registrations", count(a.lost_registrations)),
        ("Lost uploads", count(a.lost_uploads)),
        (
            "Commit-only drops the audit cannot see (the processing log, the batch's status), counted as lost",
            count(a.dropped_unaudited),
        ),
        ("Duplicate writes", count(a.duplicate_writes)),
        ("Misassigned photos", count(a.misassigned_photos)),
        (
            "Photos not processed (never acknowledged: work not reached, not lost writes)",
            count(a.not_processed),
        ),
        (
            "Acknowledged writes that could not be looked up",
            count(a.unaudited_writes),
        ),
    ]
}

pub(crate) fn wal_lines(r: &Report) -> Result<Vec<(&'static str, String)>, String> {
    let Some(w) = &r.wal else {
        return Err(absent_reason(r, &["wal", "journal_mode", "journal mode"]));
    };
    Ok(vec![
        (
            "Largest WAL file",
            format!("{} bytes ({} MiB)", count(w.max_bytes), mib(w.max_bytes)),
        ),
        (
            "Checkpoints",
            format!(
                "{} completed, {} busy",
                count(w.checkpoints_ok),
                count(w.checkpoints_busy)
            ),
        ),
    ])
}

/// The user mix, in one sentence.
pub(crate) fn users_line(r: &Report) -> String {
    let u = &r.users;
    let group = |n: u32, name: &str, every_ms: u64| {
        if n == 0 {
            format!("no {name}")
        } else {
            format!(
                "{} {name} every {} ms",
                count(u64::from(n)),
                count(every_ms)
            )
        }
    };
    format!(
        "Users: {}, {}, {}.",
        group(u.pollers, "pollers", u.poll_interval_ms),
        group(u.admins, "admins", u.admin_interval_ms),
        group(u.kiosks, "kiosks", u.kiosk_interval_ms)
    )
}

pub(crate) fn machine_lines(r: &Report) -> Vec<(&'static str, String)> {
    let m = &r.machine;
    let load = |l: Option<[f64; 3]>| {
        l.map_or_else(
            || "not read".to_owned(),
            |l| format!("{} {} {}", fixed(l[0], 2), fixed(l[1], 2), fixed(l[2], 2)),
        )
    };
    vec![
        ("Cores", count(m.cores as u64)),
        ("Memory", format!("{} GiB", gib(m.memory_bytes))),
        ("OS", m.os.clone()),
        (
            "Load average (1, 5, 15 min) at start / end",
            format!(
                "{} / {}",
                load(m.load_average_start),
                load(m.load_average_end)
            ),
        ),
        (
            "Project under test",
            r.git_commit.as_ref().map_or_else(
                || "not a git checkout".to_owned(),
                |c| format!("git commit {c}"),
            ),
        ),
        (
            "SQLite",
            match &r.sqlite_version {
                Some(v) => v.clone(),
                None => absent_reason(r, &["sqlite version", "sqlite_version"]),
            },
        ),
    ]
}

/// One group of requested settings: a top-level object of `settings_requested`
/// (`storage`, `retry`, ...), or the top-level scalars (`name: None`).
pub(crate) struct SettingsSection {
    pub name: Option<String>,
    pub entries: Vec<(String, String)>,
}

/// `settings_requested` (the whole scenario) as `key = value` lists, one per table of it:
/// the top-level scalars first (unnamed), then each object with scalars of its own under
/// its dotted name (`server`, `server.storage`, `gates.p99_ms`), in key order. An empty
/// object or an array is one value.
pub(crate) fn settings_sections(settings: &Value) -> Vec<SettingsSection> {
    fn walk(
        name: Option<String>,
        map: &serde_json::Map<String, Value>,
        out: &mut Vec<SettingsSection>,
    ) {
        let entries: Vec<(String, String)> = map
            .iter()
            .filter(|(_, v)| !matches!(v, Value::Object(m) if !m.is_empty()))
            .map(|(k, v)| (k.clone(), scalar(v)))
            .collect();
        if !entries.is_empty() {
            out.push(SettingsSection {
                name: name.clone(),
                entries,
            });
        }
        for (k, v) in map {
            if let Value::Object(child) = v {
                if !child.is_empty() {
                    let path = match &name {
                        Some(n) => format!("{n}.{k}"),
                        None => k.clone(),
                    };
                    walk(Some(path), child, out);
                }
            }
        }
    }
    match settings {
        Value::Null => Vec::new(),
        Value::Object(map) => {
            let mut out = Vec::new();
            walk(None, map, &mut out);
            out
        }
        other => vec![SettingsSection {
            name: None,
            entries: vec![("settings".to_owned(), scalar(other))],
        }],
    }
}

/// A JSON value as a setting's value: strings bare, everything else as compact JSON.
pub(crate) fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One connection as `/api/settings` reported it; "—" where a field was missing.
pub(crate) struct ConnectionRow {
    pub worker: u32,
    pub pid: u32,
    pub id: String,
    pub role: String,
    pub journal_mode: String,
    pub busy_timeout_ms: String,
    pub synchronous: String,
    pub read_only: String,
    /// Its busy timeout differs from the one most connections have.
    pub odd_timeout: bool,
}

pub(crate) struct ConnectionTable {
    pub rows: Vec<ConnectionRow>,
    /// Set when the connections do not all have the same busy timeout.
    pub timeout_warning: Option<String>,
}

pub(crate) fn connection_table(workers: &[WorkerSettings]) -> ConnectionTable {
    let field = |c: &Value, name: &str| c.get(name).map(scalar).unwrap_or_else(|| "—".into());
    let mut rows: Vec<ConnectionRow> = workers
        .iter()
        .flat_map(|w| {
            w.connections.iter().map(move |c| ConnectionRow {
                worker: w.worker,
                pid: w.pid,
                id: field(c, "id"),
                role: field(c, "role"),
                // A PostgreSQL connection has no journal mode or busy timeout: the columns
                // say what it has instead.
                journal_mode: match c.get("postgres") {
                    Some(pg) if pg.is_object() => format!(
                        "PostgreSQL {}, {}",
                        field(pg, "server_version"),
                        field(pg, "isolation")
                    ),
                    _ => field(c, "journal_mode"),
                },
                busy_timeout_ms: match c.get("postgres") {
                    Some(pg) if pg.is_object() => {
                        format!("statement_timeout {}", field(pg, "statement_timeout"))
                    }
                    _ => field(c, "busy_timeout_ms"),
                },
                synchronous: field(c, "synchronous"),
                read_only: field(c, "read_only"),
                odd_timeout: false,
            })
        })
        .collect();

    // The value most connections have (the first seen on a tie) is "the others".
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for row in &rows {
        match seen.iter_mut().find(|(v, _)| *v == row.busy_timeout_ms) {
            Some((_, n)) => *n += 1,
            None => seen.push((&row.busy_timeout_ms, 1)),
        }
    }
    if seen.len() < 2 {
        return ConnectionTable {
            rows,
            timeout_warning: None,
        };
    }
    let mut common = seen[0];
    for &entry in &seen[1..] {
        if entry.1 > common.1 {
            common = entry;
        }
    }
    let (common_value, common_count) = (common.0.to_owned(), common.1);
    let mut odd: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in &mut rows {
        if row.busy_timeout_ms != common_value {
            row.odd_timeout = true;
            odd.entry(row.busy_timeout_ms.clone())
                .or_default()
                .push(format!("worker {} conn {}", row.worker, row.id));
        }
    }
    let odd: Vec<String> = odd
        .iter()
        .map(|(value, conns)| format!("{value} ms on {}", conns.join(", ")))
        .collect();
    let warning = format!(
        "busy_timeout_ms is not the same on every connection: {}; {common_value} ms on the other {}.",
        odd.join("; "),
        count(common_count as u64)
    );
    ConnectionTable {
        rows,
        timeout_warning: Some(warning),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_names_a_section_only_as_a_whole_word() {
        assert!(contains_word("no wal: journal_mode = delete", "wal"));
        assert!(!contains_word("walked away", "wal"));
        assert!(contains_word("see /api/settings.", "/api/settings"));
    }
}
