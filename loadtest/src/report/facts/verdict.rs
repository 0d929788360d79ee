//! The verdict's lines, as plain text: the verdict's word, the three lines under it (lock
//! errors, lost writes, gates failed), each gate's value (or "unknown", with why), which
//! server the run was against, and a repeated run's runs and what each table holds.

use crate::report::format::{count, num};
use crate::report::{GateResult, LockSource, Report};

use super::absent::audit_absent;
use super::figures::{lock_total, missing_workers};
use super::tables::TextTable;

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

pub(crate) fn headline(r: &Report) -> Headline {
    Headline {
        lock_errors: headline_lock_errors(r),
        lost_writes: headline_lost_writes(r),
        gates_failed: headline_gates_failed(r),
    }
}

/// The lock errors under the verdict: the total, where it comes from, and how many reached a
/// client.
fn headline_lock_errors(r: &Report) -> String {
    let le = &r.lock_errors;
    let missing = missing_workers(le).map_or_else(String::new, |m| format!("; {m}"));
    match le.source {
        LockSource::ServerCounters => format!(
            "{} (server-side counters{missing}); {} reached a client",
            lock_total(le),
            count(le.client_visible)
        ),
        LockSource::TargetLog => format!(
            "{} (records of the app's log matching the lock pattern, a traceback counted once); {} reached a client as a 503 or an answer mentioning a lock",
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
    }
}

/// The audit's lost writes under the verdict, a lower bound, or why there is no audit.
fn headline_lost_writes(r: &Report) -> String {
    match &r.audit {
        Some(a) if a.unaudited_writes > 0 => format!(
            "at least {} ({} acknowledged writes could not be looked up)",
            count(a.lost_writes),
            count(a.unaudited_writes)
        ),
        Some(a) => count(a.lost_writes),
        None => audit_absent(r),
    }
}

/// "none set", "0 of 4", or "2 of 4: max_lock_errors, max_lost_writes".
fn headline_gates_failed(r: &Report) -> String {
    let failed: Vec<&str> = r
        .gates
        .iter()
        .filter(|g| !g.passed)
        .map(|g| g.name.as_str())
        .collect();
    if r.gates.is_empty() {
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

/// "reference" or "external" in words.
pub(crate) fn target_words(r: &Report) -> String {
    match r.target.kind.as_str() {
        "reference" => "the reference".to_owned(),
        "external" if r.target.app.is_some() => "your app's (started by lockbench)".to_owned(),
        "external" => "an external (--target)".to_owned(),
        other => format!("a {other}"),
    }
}

/// How lockbench started the app and how it ended, in one line; None when it did not
/// start one.
pub(crate) fn app_line(r: &Report) -> Option<String> {
    let app = r.target.app.as_ref()?;
    let mut parts = vec![format!("The app was started as `{}`", app.command)];
    if let Some(cwd) = &app.cwd {
        parts.push(format!("in {cwd}"));
    }
    if !app.setup.is_empty() {
        parts.push(format!("after {}", app.setup.join("; ")));
    }
    let mut given: Vec<String> = app.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    given.extend(
        app.knobs
            .iter()
            .map(|(setting, env)| format!("{env} (knob for {setting})")),
    );
    if !given.is_empty() {
        parts.push(format!("with {}", given.join(", ")));
    }
    let mut line = parts.join(" ");
    line.push_str(&format!(
        "; ready after {:.1} s; {}",
        app.ready_after_s, app.ended
    ));
    if let Some(t) = app.exited_during_run_s {
        line.push_str(&format!(", {t:.1} s into the load"));
    }
    line.push_str(&format!(". Its output: {}.", app.output));
    Some(line)
}

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
