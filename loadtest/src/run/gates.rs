//! The verdict: the scenario's gates checked against a finished report, and the words of
//! its summary. Reads the report's figures; measures nothing.

use crate::report::{GateResult, LockErrors, LockSource, Report, Verdict};
use crate::scenario::Scenario;

/// The exit code of a run stopped by Ctrl-C (128 + SIGINT, as shells report it).
pub const INTERRUPTED_EXIT: u8 = 130;

/// The verdict's words on lock errors: where the count comes from, and never "0 lock
/// errors" when the count cannot be seen.
pub fn lock_summary(le: &LockErrors) -> String {
    match le.source {
        LockSource::ServerCounters => format!("{} lock errors (server side)", le.total),
        LockSource::TargetLog => format!("{} lock errors (the app's log)", le.total),
        LockSource::ClientsOnly if le.server_errors_unexplained > 0 => format!(
            "lock errors unknown: {} seen by clients, and {} server errors; their cause cannot be seen from the client; set [target].log",
            le.client_visible, le.server_errors_unexplained
        ),
        LockSource::ClientsOnly => format!(
            "{} lock errors seen by clients (the app's own count cannot be seen; set [target].log)",
            le.client_visible
        ),
    }
}

/// Checks the scenario's gates and writes the verdict.
pub(crate) fn judge(scenario: &Scenario, report: &mut Report) {
    let gates = check_gates(scenario, report);
    write_verdict(report, gates);
}

/// Each gate of the scenario against the report's figures. A gate that cannot be checked
/// (no audit of an external app) is named in the notes instead.
fn check_gates(scenario: &Scenario, report: &mut Report) -> Vec<GateResult> {
    let g = &scenario.gates;
    let mut gates = Vec::new();
    let mut add = |name: String, limit: f64, value: f64| {
        gates.push(GateResult {
            passed: value <= limit,
            name,
            limit,
            value: Some(value),
            note: None,
        });
    };
    if let Some(limit) = g.max_lock_errors {
        // Seen only by clients, a 5xx of unknown cause may have been a lock error: the gate
        // passes only if it would pass with every one of them counted.
        let le = &report.lock_errors;
        let value = match le.source {
            LockSource::ClientsOnly => le.total + le.server_errors_unexplained,
            LockSource::ServerCounters | LockSource::TargetLog => le.total,
        };
        add("max_lock_errors".into(), limit as f64, value as f64);
    }
    if let Some(limit) = g.max_error_rate {
        let (count, failures) = report
            .requests
            .values()
            .fold((0, 0), |(c, f), s| (c + s.count, f + s.failures));
        let rate = if count == 0 {
            0.0
        } else {
            failures as f64 / count as f64
        };
        add(
            "max_error_rate".into(),
            limit,
            (rate * 10_000.0).round() / 10_000.0,
        );
    }
    for (endpoint, limit) in &g.p99_ms {
        let value = report
            .requests
            .get(endpoint)
            .map_or(f64::MAX, |s| s.latency_us.p99 as f64 / 1000.0);
        add(format!("p99_ms {endpoint}"), *limit, value);
    }
    for (name, limit) in &g.p99_corrected_ms {
        let value = match report.roles.get(name) {
            Some(role) => role.latency_from_tick_us.p99 as f64 / 1000.0,
            None => report
                .requests
                .get(name)
                .map_or(f64::MAX, |s| s.latency_from_tick_us.p99 as f64 / 1000.0),
        };
        add(format!("p99_corrected_ms {name}"), *limit, value);
    }
    if let Some(limit) = g.max_lost_writes {
        if let Some(audit) = &report.audit {
            add(
                "max_lost_writes".into(),
                limit as f64,
                audit.lost_writes as f64,
            );
        } else {
            report.notes.push(
                "gate max_lost_writes not checked: no audit against an external target".into(),
            );
        }
    }
    if let Some(limit) = g.max_batch_seconds {
        if let Some(batch) = &report.batch {
            let value = if batch.finished {
                batch.duration_s
            } else {
                f64::MAX
            };
            add("max_batch_seconds".into(), limit, value);
        }
    }
    // A value of f64::MAX (endpoint never called, batch never finished) stays out of the JSON.
    for gate in &mut gates {
        if gate.value == Some(f64::MAX) {
            gate.value = None;
            gate.passed = false;
        }
    }
    gates
}

/// The verdict from the gates: passed, the summary line and the exit code.
fn write_verdict(report: &mut Report, gates: Vec<GateResult>) {
    let failed: Vec<&str> = gates
        .iter()
        .filter(|g| !g.passed)
        .map(|g| g.name.as_str())
        .collect();
    let unfinished = report.batch.as_ref().is_some_and(|b| !b.finished);
    let passed = failed.is_empty() && !unfinished && !report.interrupted;
    let lost = report.audit.as_ref().map(|a| a.lost_writes);
    let faults = if report.faults.is_empty() {
        String::new()
    } else {
        let names: Vec<&str> = report
            .faults
            .iter()
            .map(|f| f.description.as_str())
            .collect();
        format!("; faults: {}", names.join(", "))
    };
    let restarts = match report.restarts.len() {
        0 => String::new(),
        1 => "; 1 worker restart".to_owned(),
        n => format!("; {n} worker restarts"),
    };
    let summary = format!(
        "{}: {}; {}; {}{}{faults}{restarts}",
        if report.interrupted {
            "INTERRUPTED"
        } else if passed {
            "PASSED"
        } else {
            "FAILED"
        },
        if failed.is_empty() {
            format!("all {} gates passed", gates.len())
        } else {
            format!(
                "{} of {} gates failed ({})",
                failed.len(),
                gates.len(),
                failed.join(", ")
            )
        },
        lock_summary(&report.lock_errors),
        lost.map_or("lost writes not audited".to_owned(), |n| format!(
            "{n} lost writes"
        )),
        if unfinished {
            "; the batch did not finish"
        } else {
            ""
        },
    );
    report.gates = gates;
    report.verdict = Verdict {
        passed,
        summary,
        exit_code: if report.interrupted {
            INTERRUPTED_EXIT
        } else if passed {
            0
        } else {
            1
        },
    };
}
