//! The Markdown rendering of a [`Report`], for a person who has thirty seconds: the verdict
//! first, then the gates, the figures, the settings that were really in effect, the machine
//! and the notes.
//!
//! The facts both renderings state in words (the verdict's lines, why a section is absent,
//! the requested settings as `key = value` lists, the per-connection settings and which
//! connection's busy timeout stands out) are worked out here once, as plain text, and the
//! HTML rendering escapes and lays out the same text.

use std::collections::BTreeMap;
use std::fmt::{self, Write};

use serde_json::Value;

use super::{LockSource, Report, WorkerSettings};

/// The report as Markdown. Deterministic: the same report gives the same bytes.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    write_report(&mut out, report).expect("writing to a String cannot fail");
    out
}

fn write_report(out: &mut String, r: &Report) -> fmt::Result {
    let word = verdict_word(r);
    writeln!(out, "# lockbench: {} — {word}", text(&r.scenario.name))?;
    writeln!(out)?;
    writeln!(
        out,
        "**{word}**, exit code {}: {}",
        r.verdict.exit_code,
        text(&r.verdict.summary)
    )?;
    writeln!(out)?;
    let head = headline(r);
    writeln!(out, "- Lock errors: {}", text(&head.lock_errors))?;
    writeln!(out, "- Lost writes (audit): {}", text(&head.lost_writes))?;
    writeln!(out, "- Gates failed: {}", text(&head.gates_failed))?;
    writeln!(out)?;
    writeln!(
        out,
        "Scenario `{}` ({}): {}",
        code(&r.scenario.name),
        code(&r.scenario.file),
        text(&r.scenario.description)
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "{} server at {}, started {}; lockbench {}, report schema {}.",
        capitalised(&target_words(r)),
        text(&r.target.url),
        text(&r.started_at),
        text(&r.lockbench_version),
        r.schema_version
    )?;

    writeln!(out)?;
    writeln!(out, "## Gates")?;
    writeln!(out)?;
    if r.gates.is_empty() {
        writeln!(out, "No gates: the scenario sets none.")?;
    } else {
        writeln!(out, "| gate | limit | value | result |")?;
        writeln!(out, "| --- | ---: | ---: | --- |")?;
        for g in &r.gates {
            writeln!(
                out,
                "| {} | {} | {} | {} |",
                cell(&g.name),
                num(g.limit),
                num(g.value),
                if g.passed { "pass" } else { "**FAIL**" }
            )?;
        }
    }

    writeln!(out)?;
    writeln!(out, "## Figures")?;
    write_faults(out, r)?;
    write_requests(out, r)?;
    write_lock_errors(out, r)?;
    write_retries(out, r)?;
    write_batch(out, r)?;
    write_audit(out, r)?;
    write_target_database(out, r)?;
    write_wal(out, r)?;

    writeln!(out)?;
    writeln!(out, "## Settings in effect")?;
    write_settings(out, r)?;

    writeln!(out)?;
    writeln!(out, "## Machine")?;
    writeln!(out)?;
    for (name, value) in machine_lines(r) {
        writeln!(out, "- {name}: {}", text(&value))?;
    }

    writeln!(out)?;
    writeln!(out, "## Notes")?;
    writeln!(out)?;
    if r.notes.is_empty() {
        writeln!(out, "None.")?;
    }
    for note in &r.notes {
        writeln!(out, "- {}", text(note))?;
    }
    Ok(())
}

fn write_requests(out: &mut String, r: &Report) -> fmt::Result {
    writeln!(out)?;
    writeln!(out, "### Requests per endpoint")?;
    writeln!(out)?;
    writeln!(out, "{}", users_line(r))?;
    writeln!(out)?;
    if r.requests.is_empty() {
        writeln!(out, "No requests were sent.")?;
        return Ok(());
    }
    writeln!(
        out,
        "| endpoint | count | failures | 503 | p50 ms | p95 ms | p99 ms | max ms | p99 from tick ms |"
    )?;
    writeln!(
        out,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )?;
    for (endpoint, s) in &r.requests {
        let l = &s.latency_us;
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            cell(endpoint),
            count(s.count),
            count(s.failures),
            count(s.status_503),
            ms(l.p50),
            ms(l.p95),
            ms(l.p99),
            ms(l.max),
            ms(s.latency_from_tick_us.p99)
        )?;
    }
    writeln!(out)?;
    writeln!(out, "{}", text(LATENCY_NOTE))?;
    write_roles(out, r)
}

fn write_faults(out: &mut String, r: &Report) -> fmt::Result {
    if r.faults.is_empty() && r.restarts.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    writeln!(out, "### Faults and restarts")?;
    writeln!(out)?;
    let faults = fault_table(r);
    if !faults.rows.is_empty() {
        write_text_table(out, &faults)?;
        writeln!(out)?;
    }
    writeln!(out, "{}", text(&restart_line(r)))?;
    let restarts = restart_table(r);
    if !restarts.rows.is_empty() {
        writeln!(out)?;
        write_text_table(out, &restarts)?;
    }
    Ok(())
}

fn write_text_table(out: &mut String, table: &TextTable) -> fmt::Result {
    writeln!(out, "| {} |", table.header.join(" | "))?;
    let aligns: Vec<&str> = table
        .header
        .iter()
        .enumerate()
        .map(|(i, _)| {
            if table.numeric.contains(&i) {
                "---:"
            } else {
                "---"
            }
        })
        .collect();
    writeln!(out, "| {} |", aligns.join(" | "))?;
    for row in &table.rows {
        let cells: Vec<String> = row.iter().map(|c| cell(c)).collect();
        writeln!(out, "| {} |", cells.join(" | "))?;
    }
    Ok(())
}

fn write_roles(out: &mut String, r: &Report) -> fmt::Result {
    writeln!(out)?;
    writeln!(out, "### Users per role")?;
    writeln!(out)?;
    let table = role_table(r);
    if table.rows.is_empty() {
        return writeln!(out, "No roles ran.");
    }
    writeln!(out, "| {} |", table.header.join(" | "))?;
    writeln!(
        out,
        "| --- |{}",
        " ---: |".repeat(table.header.len().saturating_sub(1))
    )?;
    for row in &table.rows {
        let cells: Vec<String> = row.iter().map(|c| cell(c)).collect();
        writeln!(out, "| {} |", cells.join(" | "))?;
    }
    writeln!(out)?;
    writeln!(out, "{}", text(ROLE_NOTE))
}

fn write_target_database(out: &mut String, r: &Report) -> fmt::Result {
    let Some(lines) = target_database_lines(r) else {
        return Ok(());
    };
    writeln!(out)?;
    writeln!(out, "### The app's database (read-only)")?;
    writeln!(out)?;
    write_pairs(out, &lines)
}

fn write_lock_errors(out: &mut String, r: &Report) -> fmt::Result {
    let le = &r.lock_errors;
    writeln!(out)?;
    writeln!(out, "### Lock errors")?;
    writeln!(out)?;
    writeln!(out, "{}", text(&lock_error_origin(r)))?;
    for (title, map) in [("SQLite code", &le.by_code), ("endpoint", &le.by_endpoint)] {
        writeln!(out)?;
        if map.is_empty() {
            writeln!(out, "By {title}: {}.", text(&by_map_absent(r)))?;
            continue;
        }
        writeln!(out, "| {title} | lock errors |")?;
        writeln!(out, "| --- | ---: |")?;
        for (key, n) in map {
            writeln!(out, "| {} | {} |", cell(key), count(*n))?;
        }
    }
    Ok(())
}

fn write_retries(out: &mut String, r: &Report) -> fmt::Result {
    writeln!(out)?;
    writeln!(out, "### Retries and commit-only drops")?;
    writeln!(out)?;
    let (retries, dropped) = retry_lines(r);
    writeln!(out, "- Server-side retries: {}", text(&retries))?;
    writeln!(
        out,
        "- Commit-only drops (writes reported saved after their rollback): {}",
        text(&dropped)
    )
}

fn write_batch(out: &mut String, r: &Report) -> fmt::Result {
    writeln!(out)?;
    writeln!(out, "### Batch")?;
    writeln!(out)?;
    match batch_lines(r) {
        Ok(lines) => write_pairs(out, &lines),
        Err(reason) => writeln!(out, "{}.", capitalised(&text(&reason))),
    }
}

fn write_audit(out: &mut String, r: &Report) -> fmt::Result {
    writeln!(out)?;
    writeln!(out, "### Audit")?;
    writeln!(out)?;
    let Some(a) = &r.audit else {
        return writeln!(out, "{}.", capitalised(&text(&audit_absent(r))));
    };
    write_pairs(out, &audit_lines(r, a))?;
    if a.counter_mismatches.is_empty() {
        writeln!(out, "- Counter mismatches: none")
    } else {
        writeln!(
            out,
            "- Counter mismatches: {}",
            count(a.counter_mismatches.len() as u64)
        )?;
        for m in &a.counter_mismatches {
            writeln!(out, "  - {}", text(m))?;
        }
        Ok(())
    }
}

fn write_wal(out: &mut String, r: &Report) -> fmt::Result {
    writeln!(out)?;
    writeln!(out, "### WAL")?;
    writeln!(out)?;
    match wal_lines(r) {
        Ok(lines) => write_pairs(out, &lines),
        Err(reason) => writeln!(out, "{}.", capitalised(&text(&reason))),
    }
}

fn write_settings(out: &mut String, r: &Report) -> fmt::Result {
    writeln!(out)?;
    writeln!(out, "### Requested")?;
    writeln!(out)?;
    let sections = settings_sections(&r.settings_requested);
    if sections.is_empty() {
        writeln!(out, "Not recorded.")?;
    }
    for s in &sections {
        let pairs: Vec<String> = s
            .entries
            .iter()
            .map(|(k, v)| format!("{} = {}", text(k), text(v)))
            .collect();
        match &s.name {
            Some(name) => writeln!(out, "- **{}**: {}", text(name), pairs.join(", "))?,
            None => writeln!(out, "- {}", pairs.join(", "))?,
        }
    }

    writeln!(out)?;
    writeln!(out, "### Effective, per connection")?;
    writeln!(out)?;
    let Some(workers) = &r.settings_effective else {
        return writeln!(out, "{}.", capitalised(&text(&effective_absent(r))));
    };
    let table = connection_table(workers);
    if table.rows.is_empty() {
        return writeln!(
            out,
            "No connection was reported (the workers had opened none)."
        );
    }
    writeln!(
        out,
        "| worker | conn id | role | journal_mode | busy_timeout_ms | synchronous | read_only |"
    )?;
    writeln!(out, "| ---: | ---: | --- | --- | ---: | --- | --- |")?;
    for row in &table.rows {
        let timeout = if row.odd_timeout {
            format!("**{}** ⚠ differs", cell(&row.busy_timeout_ms))
        } else {
            cell(&row.busy_timeout_ms)
        };
        writeln!(
            out,
            "| {} (pid {}) | {} | {} | {} | {} | {} | {} |",
            row.worker,
            row.pid,
            cell(&row.id),
            cell(&row.role),
            cell(&row.journal_mode),
            timeout,
            cell(&row.synchronous),
            cell(&row.read_only)
        )?;
    }
    if let Some(warning) = &table.timeout_warning {
        writeln!(out)?;
        writeln!(out, "⚠ {}", text(warning))?;
    }
    Ok(())
}

fn write_pairs(out: &mut String, pairs: &[(&str, String)]) -> fmt::Result {
    for (name, value) in pairs {
        writeln!(out, "- {name}: {}", text(value))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Facts shared with the HTML rendering, as plain (unescaped) text.

/// "PASSED" or "FAILED".
pub(super) fn verdict_word(r: &Report) -> &'static str {
    if r.interrupted {
        "INTERRUPTED"
    } else if r.verdict.passed {
        "PASSED"
    } else {
        "FAILED"
    }
}

/// The three lines under the verdict.
pub(super) struct Headline {
    pub lock_errors: String,
    pub lost_writes: String,
    pub gates_failed: String,
}

pub(super) fn headline(r: &Report) -> Headline {
    let le = &r.lock_errors;
    let lock_errors = match le.source {
        LockSource::ServerCounters => format!(
            "{} (server-side counters); {} reached a client",
            count(le.total),
            count(le.client_visible)
        ),
        LockSource::TargetLog => format!(
            "{} (lines of the app's log matching the lock pattern); {} reached a client as a 503 or an answer mentioning a lock",
            count(le.total),
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

/// What the two latencies mean, under the requests table.
pub(super) const LATENCY_NOTE: &str = "Latency is measured from the moment each request was sent; \"from tick\" measures from the tick it was meant for, so time a request spent waiting to be sent counts too (corrected for coordinated omission, as wrk2 measures).";

/// What the role table's columns mean.
pub(super) const ROLE_NOTE: &str = "interval: ticks keep their phase and fire while earlier requests are out, up to max in flight (a page polling with setInterval); after-response: the next tick waits for the answer and the schedule restarts when it is late (a setTimeout chain). Late: sent 10 ms or more after the tick. Skipped: not sent; the user's next request serves it, so its latency from the tick runs to that request's answer. Burst factor: the busiest 100 ms of tick starts against an average 100 ms of the schedule (about 1 when spread, up to the number of users in lock step).";

/// A table as plain text cells.
pub(super) struct TextTable {
    pub header: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
    /// Columns holding numbers (right-aligned).
    pub numeric: Vec<usize>,
}

/// One row per fault the run applied: what, when, what happened.
pub(super) fn fault_table(r: &Report) -> TextTable {
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
pub(super) fn restart_line(r: &Report) -> String {
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
pub(super) fn restart_table(r: &Report) -> TextTable {
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
pub(super) fn role_table(r: &Report) -> TextTable {
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
fn enum_word<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        _ => "?".to_owned(),
    }
}

/// The external app's database file as lockbench read it, if the scenario named one.
pub(super) fn target_database_lines(r: &Report) -> Option<Vec<(&'static str, String)>> {
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
pub(super) fn target_words(r: &Report) -> String {
    match r.target.kind.as_str() {
        "reference" => "the reference".to_owned(),
        "external" => "an external (--target)".to_owned(),
        other => format!("a {other}"),
    }
}

/// Why a section is absent: the external target, else the first note that names the
/// section, else a plain "not measured".
pub(super) fn absent_reason(r: &Report, keywords: &[&str]) -> String {
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
fn contains_word(haystack: &str, word: &str) -> bool {
    haystack.match_indices(word).any(|(at, _)| {
        let before = haystack[..at].chars().next_back();
        let after = haystack[at + word.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

pub(super) fn audit_absent(r: &Report) -> String {
    absent_reason(r, &["audit", "lost writes"])
}

pub(super) fn effective_absent(r: &Report) -> String {
    absent_reason(
        r,
        &["/api/settings", "effective settings", "settings_effective"],
    )
}

/// The sentence above the lock-error tables: where the total comes from.
pub(super) fn lock_error_origin(r: &Report) -> String {
    let le = &r.lock_errors;
    match le.source {
        LockSource::ServerCounters => format!(
            "{} lock errors counted by the server (every one seen, retried or not); {} reached a client as a 503 or an answer mentioning a lock.",
            count(le.total),
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
pub(super) fn by_map_absent(r: &Report) -> String {
    if r.lock_errors.source == LockSource::ServerCounters {
        "none".to_owned()
    } else {
        absent_reason(r, &["server-side", "server side", "counters"])
    }
}

/// Server-side retries and commit-only drops, or why they are absent.
pub(super) fn retry_lines(r: &Report) -> (String, String) {
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

pub(super) fn batch_lines(r: &Report) -> Result<Vec<(&'static str, String)>, String> {
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
            "Duration",
            format!(
                "{} s{}",
                fixed(b.duration_s, 1),
                if b.finished {
                    ""
                } else {
                    " (stopped at the hard cap before the batch was done)"
                }
            ),
        ),
        ("Photos/s", fixed(b.photos_per_s, 1)),
    ])
}

pub(super) fn audit_lines(r: &Report, a: &super::Audit) -> Vec<(&'static str, String)> {
    if r.target.kind == "external" {
        // An external app's audit looks up the acknowledged kiosk writes only.
        return vec![
            ("Lost writes", count(a.lost_writes)),
            (
                "Acknowledged writes found more than once",
                count(a.duplicate_writes),
            ),
        ];
    }
    vec![
        ("Lost writes", count(a.lost_writes)),
        ("Duplicate writes", count(a.duplicate_writes)),
        ("Misassigned photos", count(a.misassigned_photos)),
        ("Missing photos", count(a.missing_photos)),
        ("Lost registrations", count(a.lost_registrations)),
    ]
}

pub(super) fn wal_lines(r: &Report) -> Result<Vec<(&'static str, String)>, String> {
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
pub(super) fn users_line(r: &Report) -> String {
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

pub(super) fn machine_lines(r: &Report) -> Vec<(&'static str, String)> {
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
pub(super) struct SettingsSection {
    pub name: Option<String>,
    pub entries: Vec<(String, String)>,
}

/// `settings_requested` as `key = value` lists, one per section. Nested objects become
/// dotted keys; scalars at the top level are gathered into one unnamed section, first.
pub(super) fn settings_sections(settings: &Value) -> Vec<SettingsSection> {
    let Value::Object(map) = settings else {
        return match settings {
            Value::Null => Vec::new(),
            other => vec![SettingsSection {
                name: None,
                entries: vec![("settings".to_owned(), scalar(other))],
            }],
        };
    };
    let mut top = Vec::new();
    let mut sections = Vec::new();
    for (key, value) in map {
        match value {
            Value::Object(_) => {
                let mut entries = Vec::new();
                flatten("", value, &mut entries);
                sections.push(SettingsSection {
                    name: Some(key.clone()),
                    entries,
                });
            }
            other => top.push((key.clone(), scalar(other))),
        }
    }
    if !top.is_empty() {
        sections.insert(
            0,
            SettingsSection {
                name: None,
                entries: top,
            },
        );
    }
    sections
}

fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => out.push((prefix.to_owned(), scalar(other))),
    }
}

/// A JSON value as a setting's value: strings bare, everything else as compact JSON.
fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One connection as `/api/settings` reported it; "—" where a field was missing.
pub(super) struct ConnectionRow {
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

pub(super) struct ConnectionTable {
    pub rows: Vec<ConnectionRow>,
    /// Set when the connections do not all have the same busy timeout.
    pub timeout_warning: Option<String>,
}

pub(super) fn connection_table(workers: &[WorkerSettings]) -> ConnectionTable {
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

// ---------------------------------------------------------------------------------------
// Number formatting.

/// A count with thousands separators: 1,284.
pub(crate) fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Microseconds as milliseconds with one decimal.
pub(super) fn ms(us: u64) -> String {
    fixed(us as f64 / 1000.0, 1)
}

/// A float with `decimals` decimals and thousands separators; "n/a" if not finite.
pub(crate) fn fixed(x: f64, decimals: usize) -> String {
    if !x.is_finite() {
        return "n/a".to_owned();
    }
    let s = format!("{:.*}", decimals, x.abs());
    let (int, frac) = s.split_once('.').unwrap_or((&s, ""));
    let int = int.parse::<u64>().map(count).unwrap_or_else(|_| int.into());
    let sign = if x < 0.0 && s.chars().any(|c| c.is_ascii_digit() && c != '0') {
        "-"
    } else {
        ""
    };
    if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

/// A gate's limit or value: whole numbers as counts, others with up to four significant
/// decimals, trailing zeros dropped.
pub(crate) fn num(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".to_owned();
    }
    let decimals = match x.abs() {
        a if a == a.trunc() => 0,
        a if a >= 100.0 => 1,
        a if a >= 1.0 => 2,
        _ => 4,
    };
    let s = fixed(x, decimals);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

pub(super) fn gib(bytes: u64) -> String {
    fixed(bytes as f64 / (1u64 << 30) as f64, 1)
}

fn mib(bytes: u64) -> String {
    fixed(bytes as f64 / (1u64 << 20) as f64, 1)
}

// ---------------------------------------------------------------------------------------
// Markdown escaping.

/// Free text on one line: newlines folded, `<` and `&` as entities so a viewer that renders
/// HTML shows them instead of running them.
pub(crate) fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '\r' => {}
            '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Text in a table cell: as [`text`], with `|` escaped.
pub(crate) fn cell(s: &str) -> String {
    text(s).replace('|', "\\|")
}

/// Text inside a code span: backticks would end it.
pub(crate) fn code(s: &str) -> String {
    s.replace('`', "'").replace(['\r', '\n'], " ")
}

pub(crate) fn capitalised(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_a_person_writes_them() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_284), "1,284");
        assert_eq!(count(12_345_678), "12,345,678");
        assert_eq!(ms(4_210_700), "4,210.7");
        assert_eq!(ms(49), "0.0");
        assert_eq!(num(0.0), "0");
        assert_eq!(num(5000.0), "5,000");
        assert_eq!(num(0.05), "0.05");
        assert_eq!(num(4391.25), "4,391.2");
        assert_eq!(num(-2.5), "-2.5");
        assert_eq!(num(f64::NAN), "n/a");
        assert_eq!(fixed(-0.01, 1), "0.0");
    }

    #[test]
    fn a_note_names_a_section_only_as_a_whole_word() {
        assert!(contains_word("no wal: journal_mode = delete", "wal"));
        assert!(!contains_word("walked away", "wal"));
        assert!(contains_word("see /api/settings.", "/api/settings"));
    }
}
