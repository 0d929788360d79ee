//! The verdict: the scenario's gates checked against a finished report, and the words of
//! its summary. Reads the report's figures; measures nothing.
//!
//! A gate whose figure could not be measured (an endpoint that never answered, a batch that
//! did not finish, lost writes nobody could audit) has no value, fails, and its note says
//! why; a figure that is only a lower bound (workers whose counters could not be read,
//! writes that could not be looked up) fails its gate with the bound as its value. Rates are
//! compared unrounded.
//!
//! A report of `run --repeat` holds the largest correctness counts of its runs and the
//! medians of its timings (`repeat.rs`): correctness gates (`max_lock_errors`,
//! `max_lost_writes`, `max_error_rate`) are judged on the largest value of any run, timing
//! gates (`p99_ms`, `p99_corrected_ms`, `max_batch_seconds`) on the medians. The verdict
//! names every run that failed; a run that failed only timing gates the medians pass is
//! "flaky" (named, and its JUnit case marked so), any other failing run fails the whole.

use std::collections::BTreeMap;

use crate::report::format::num;
use crate::report::{BatchEnd, GateResult, LockErrors, LockSource, Report, RunVerdict, Verdict};
use crate::scenario::Scenario;

/// The exit code of a run stopped by Ctrl-C (128 + SIGINT, as shells report it).
pub const INTERRUPTED_EXIT: u8 = 130;

/// "worker 2" or "workers 2, 3".
fn workers_text(workers: &[u32]) -> String {
    let ids: Vec<String> = workers.iter().map(u32::to_string).collect();
    match ids.len() {
        1 => format!("worker {}", ids[0]),
        _ => format!("workers {}", ids.join(", ")),
    }
}

/// The verdict's words on lock errors: where the count comes from, and never "0 lock
/// errors" when the count cannot be seen.
pub fn lock_summary(le: &LockErrors) -> String {
    let bound = if le.missing_workers.is_empty() {
        String::new()
    } else {
        "at least ".to_owned()
    };
    let missing = if le.missing_workers.is_empty() {
        String::new()
    } else {
        format!("; {} did not answer", workers_text(&le.missing_workers))
    };
    match le.source {
        LockSource::ServerCounters => {
            format!("{bound}{} lock errors (server side{missing})", le.total)
        }
        LockSource::TargetLog => format!("{bound}{} lock errors (the app's log{missing})", le.total),
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
pub fn judge(scenario: &Scenario, report: &mut Report) {
    let gates = check_gates(scenario, report);
    write_verdict(report, gates);
}

/// Whether a gate is on a timing (judged on the medians of repeated runs) rather than on a
/// correctness count (judged on the largest value of any run).
pub(crate) fn is_timing_gate(name: &str) -> bool {
    name.starts_with("p99_ms ")
        || name.starts_with("p99_corrected_ms ")
        || name == "max_batch_seconds"
}

/// A gate's figure as measured: its value (None: unknown), why it is unknown or only a
/// bound, and whether it can pass at all (a lower bound cannot).
struct Measured {
    value: Option<f64>,
    notes: Vec<String>,
    bound_only: bool,
}

impl Measured {
    fn known(value: f64) -> Measured {
        Measured {
            value: Some(value),
            notes: Vec::new(),
            bound_only: false,
        }
    }

    fn unknown(why: String) -> Measured {
        Measured {
            value: None,
            notes: vec![why],
            bound_only: false,
        }
    }

    fn note(mut self, note: String) -> Measured {
        self.notes.push(note);
        self
    }

    fn gate(self, name: String, limit: f64) -> GateResult {
        let passed = !self.bound_only && self.value.is_some_and(|v| v <= limit);
        GateResult {
            name,
            limit,
            value: self.value,
            passed,
            note: (!self.notes.is_empty()).then(|| self.notes.join("; ")),
        }
    }
}

/// An endpoint that has no answer to measure: why, in words.
fn never_answered(report: &Report, endpoint: &str) -> Option<String> {
    match report.requests.get(endpoint) {
        None => Some(format!("{endpoint} was never called")),
        Some(s) if s.count > 0 => None,
        Some(s) if s.unanswered_at_stop > 0 => Some(format!(
            "{endpoint} never answered ({} ticks were still waiting when the load stopped)",
            s.unanswered_at_stop
        )),
        Some(_) => Some(format!("{endpoint} never answered")),
    }
}

fn lock_errors_figure(report: &Report) -> Measured {
    let le = &report.lock_errors;
    // Seen only by clients, a 5xx of unknown cause may have been a lock error: the gate
    // passes only if it would pass with every one of them counted.
    let value = match le.source {
        LockSource::ClientsOnly => le.total + le.server_errors_unexplained,
        LockSource::ServerCounters | LockSource::TargetLog => le.total,
    };
    let mut m = Measured::known(value as f64);
    if le.source == LockSource::ClientsOnly && le.server_errors_unexplained > 0 {
        m = m.note(format!(
            "counting the {} server errors whose cause the client cannot see",
            le.server_errors_unexplained
        ));
    }
    if !le.missing_workers.is_empty() {
        m.bound_only = true;
        m = m.note(format!(
            "at least {value}: {} did not answer /api/stats",
            workers_text(&le.missing_workers)
        ));
    }
    m
}

fn error_rate_figure(report: &Report) -> Measured {
    let (count, failures) = report
        .requests
        .values()
        .fold((0, 0), |(c, f), s| (c + s.count, f + s.failures));
    if count == 0 {
        return Measured::unknown("no request was answered".into());
    }
    // Exact: 1 failure in 25,000 requests is above a limit of 0.
    Measured::known(failures as f64 / count as f64)
}

/// One request's failures over its requests.
fn request_error_rate(report: &Report, name: &str) -> Measured {
    match report.requests.get(name).filter(|s| s.count > 0) {
        None => Measured::unknown(format!("{name} was never answered")),
        Some(s) => Measured::known(s.failures as f64 / s.count as f64),
    }
}

fn p99_figure(report: &Report, endpoint: &str) -> Measured {
    match never_answered(report, endpoint) {
        Some(why) => Measured::unknown(why),
        None => Measured::known(report.requests[endpoint].latency_us.p99 as f64 / 1000.0),
    }
}

fn p99_corrected_figure(report: &Report, name: &str) -> Measured {
    if let Some(role) = report.roles.get(name) {
        if role.ticks_due == 0 {
            return Measured::unknown(format!("no tick of the {name} role came due"));
        }
        if role.latency_from_tick_us == Default::default() {
            return Measured::unknown(format!("no tick of the {name} role was measured"));
        }
        return Measured::known(role.latency_from_tick_us.p99 as f64 / 1000.0);
    }
    let Some(s) = report.requests.get(name) else {
        return Measured::unknown(format!("{name} was never called"));
    };
    if s.count == 0 && s.unanswered_at_stop == 0 {
        return Measured::unknown(format!("{name} never answered"));
    }
    let m = Measured::known(s.latency_from_tick_us.p99 as f64 / 1000.0);
    if s.unanswered_at_stop > 0 {
        m.note(format!(
            "{} ticks still waiting when the load stopped are counted up to the stop",
            s.unanswered_at_stop
        ))
    } else {
        m
    }
}

fn lost_writes_figure(report: &Report) -> Measured {
    let Some(audit) = &report.audit else {
        return Measured::unknown(if report.target.kind == "external" {
            "no audit: an external app's writes are looked up only with [target].database and audit_query".into()
        } else {
            "no audit was made".into()
        });
    };
    let mut m = Measured::known(audit.lost_writes as f64);
    if audit.unaudited_writes > 0 {
        m.bound_only = true;
        m = m.note(format!(
            "at least {}: {} acknowledged writes could not be looked up",
            audit.lost_writes, audit.unaudited_writes
        ));
    }
    m
}

/// Why a batch has no duration to gate: it did not finish, and how it ended.
fn batch_unfinished_note(ended: BatchEnd) -> String {
    match ended {
        BatchEnd::Finished => "the batch did not finish".into(),
        other => format!("the batch did not finish: {}", other.describe()),
    }
}

fn batch_seconds_figure(report: &Report) -> Measured {
    match &report.batch {
        None => Measured::unknown("no batch was run".into()),
        Some(b) if !b.finished => Measured::unknown(batch_unfinished_note(b.ended)),
        Some(b) => Measured::known(b.duration_s),
    }
}

/// Each gate of the scenario against the report's figures.
fn check_gates(scenario: &Scenario, report: &Report) -> Vec<GateResult> {
    let g = &scenario.gates;
    let mut gates = Vec::new();
    if let Some(limit) = g.max_lock_errors {
        gates.push(lock_errors_figure(report).gate("max_lock_errors".into(), limit as f64));
    }
    let mut error_rate = error_rate_figure(report);
    if g.max_error_rate.is_none() {
        error_rate = error_rate.note(format!(
            "the default limit, {}: the scenario sets no max_error_rate",
            crate::scenario::DEFAULT_MAX_ERROR_RATE
        ));
    }
    gates.push(error_rate.gate("max_error_rate".into(), g.max_error_rate()));
    for (name, limit) in &g.error_rate {
        gates.push(request_error_rate(report, name).gate(format!("error_rate {name}"), *limit));
    }
    for (endpoint, limit) in &g.p99_ms {
        gates.push(p99_figure(report, endpoint).gate(format!("p99_ms {endpoint}"), *limit));
    }
    for (name, limit) in &g.p99_corrected_ms {
        gates.push(
            p99_corrected_figure(report, name).gate(format!("p99_corrected_ms {name}"), *limit),
        );
    }
    if let Some(limit) = g.max_lost_writes {
        gates.push(lost_writes_figure(report).gate("max_lost_writes".into(), limit as f64));
    }
    if let Some(limit) = g.max_batch_seconds {
        gates.push(batch_seconds_figure(report).gate("max_batch_seconds".into(), limit));
    }
    if let Some(app) = &report.target.app {
        // An app that exited by itself during the run: what was measured stops there.
        let exited = app.exited_during_run_s;
        gates.push(GateResult {
            name: "target_alive".into(),
            limit: 0.0,
            value: Some(f64::from(u8::from(exited.is_some()))),
            passed: exited.is_none(),
            note: exited.map(|t| format!("the app exited {t:.1} s into the load: {}", app.ended)),
        });
    }
    if let Some(repeat) = &report.repeat {
        for gate in &mut gates {
            repeated_gate(gate, &repeat.verdicts);
        }
    }
    gates
}

/// A gate of a repeated run's combined report: correctness gates on the largest value of
/// any run (the error rate from the runs' own gates; the counts are the largest already),
/// timing gates on the medians; the note says which.
fn repeated_gate(gate: &mut GateResult, runs: &[RunVerdict]) {
    let n = runs.len();
    if is_timing_gate(&gate.name) {
        let note = format!("the median of {n} runs");
        gate.note = Some(match gate.note.take() {
            Some(why) => format!("{why}; {note}"),
            None => note,
        });
        return;
    }
    // Each run's own value of this gate (None: unknown in that run).
    let values: Vec<(u32, Option<f64>)> = runs
        .iter()
        .filter_map(|r| {
            r.gates
                .iter()
                .find(|x| x.name == gate.name)
                .map(|x| (r.run, x.value))
        })
        .collect();
    if values.is_empty() {
        return;
    }
    let unknown: Vec<String> = values
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| k.to_string())
        .collect();
    let worst = values.iter().filter_map(|(k, v)| v.map(|v| (*k, v))).fold(
        None,
        |best: Option<(u32, f64)>, (k, v)| match best {
            Some((_, b)) if b >= v => best,
            _ => Some((k, v)),
        },
    );
    if gate.name == "max_error_rate" || gate.name.starts_with("error_rate ") {
        gate.value = worst.map(|(_, v)| v);
        gate.passed = unknown.is_empty() && gate.value.is_some_and(|v| v <= gate.limit);
    }
    let mut notes: Vec<String> = gate.note.take().into_iter().collect();
    if let Some((k, _)) = worst {
        notes.push(format!("the largest of {n} runs (run {k})"));
    }
    if !unknown.is_empty() {
        gate.passed = false;
        notes.push(format!("unknown in run {}", unknown.join(", ")));
    }
    gate.note = Some(notes.join("; "));
}

/// A gate's value in words: "5", "unknown".
fn value_text(g: &GateResult) -> String {
    g.value.map_or_else(|| "unknown".to_owned(), num)
}

/// How a batch that did not finish ended, for the verdict line.
fn batch_end_words(ended: BatchEnd) -> &'static str {
    match ended {
        BatchEnd::Finished => "the batch did not finish",
        BatchEnd::Cap => "the batch was stopped at the hard cap",
        BatchEnd::Interrupted => "the batch was interrupted",
        BatchEnd::Failed => "the batch failed (the app marked it failed)",
        BatchEnd::Abandoned => {
            "the batch was abandoned (its processor stopped and nobody took it over)"
        }
    }
}

/// "processor: 1 step failed (upload_person)", "processor: 3 steps failed (save_photo ×2,
/// upload_person)".
fn processor_words(failures: &BTreeMap<String, u64>) -> Option<String> {
    let total: u64 = failures.values().sum();
    if total == 0 {
        return None;
    }
    let steps: Vec<String> = failures
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(op, n)| {
            if *n == 1 {
                op.clone()
            } else {
                format!("{op} ×{n}")
            }
        })
        .collect();
    Some(format!(
        "processor: {total} {} failed ({})",
        if total == 1 { "step" } else { "steps" },
        steps.join(", ")
    ))
}

/// The verdict from the gates: passed, the summary line and the exit code; with repeated
/// runs, each run's own verdict is weighed in and named.
fn write_verdict(report: &mut Report, gates: Vec<GateResult>) {
    let failed: Vec<String> = gates
        .iter()
        .filter(|g| !g.passed)
        .map(|g| match g.value {
            Some(_) => g.name.clone(),
            None => format!("{}: unknown", g.name),
        })
        .collect();
    let unfinished = report.batch.as_ref().is_some_and(|b| !b.finished);
    let runs = report
        .repeat
        .as_mut()
        .map(|r| weigh_runs(&mut r.verdicts, &gates));
    let runs_failed = runs.as_ref().is_some_and(|r| r.failed);
    let passed = failed.is_empty() && !unfinished && !report.interrupted && !runs_failed;

    let mut parts = vec![gates_words(&failed, gates.len())];
    parts.extend(figure_words(report));
    if let Some(runs) = runs {
        parts.push(runs.words);
    }
    let word = if report.interrupted {
        "INTERRUPTED"
    } else if passed {
        "PASSED"
    } else {
        "FAILED"
    };
    report.gates = gates;
    report.verdict = Verdict {
        passed,
        summary: format!("{word}: {}", parts.join("; ")),
        exit_code: if report.interrupted {
            INTERRUPTED_EXIT
        } else if passed {
            0
        } else {
            1
        },
    };
}

/// "all 4 gates passed", or "2 of 4 gates failed (max_lock_errors, p99_ms GET /admin:
/// unknown)".
fn gates_words(failed: &[String], gates: usize) -> String {
    if failed.is_empty() {
        format!("all {gates} gates passed")
    } else {
        format!(
            "{} of {gates} gates failed ({})",
            failed.len(),
            failed.join(", ")
        )
    }
}

/// "read_write: 49 of 116 failed (49 other 5xx), 49 lock errors in the app's log": every
/// request that failed, why, and the server's lock errors tied to it.
fn failed_request_words(report: &Report) -> Vec<String> {
    let le = &report.lock_errors;
    report
        .requests
        .iter()
        .filter(|(_, s)| s.failures > 0)
        .map(|(name, s)| {
            let classes: Vec<String> = s
                .failures_by_class
                .iter()
                .map(|(class, n)| format!("{n} {class}"))
                .collect();
            let mut text = format!("{name}: {} of {} failed", s.failures, s.count);
            if !classes.is_empty() {
                text.push_str(&format!(" ({})", classes.join(", ")));
            }
            if let Some(n) = le.by_endpoint.get(name).filter(|n| **n > 0) {
                let source = match le.source {
                    LockSource::TargetLog => "in the app's log",
                    _ => "on the server",
                };
                text.push_str(&format!(", {n} lock errors {source}"));
            }
            text
        })
        .collect()
}

/// The summary's words after the gates: every request that failed, lock errors, lost
/// writes, photos not processed, an unfinished batch, the processor's failed steps, the
/// faults and the worker restarts.
fn figure_words(report: &Report) -> Vec<String> {
    let mut parts = failed_request_words(report);
    parts.push(lock_summary(&report.lock_errors));
    if report.lock_errors.unattributed > 0 {
        parts.push(format!(
            "{} of them not tied to a request",
            report.lock_errors.unattributed
        ));
    }
    parts.push(match &report.audit {
        None => "lost writes not audited".to_owned(),
        Some(a) if a.unaudited_writes > 0 => format!(
            "at least {} lost writes ({} acknowledged writes could not be looked up)",
            a.lost_writes, a.unaudited_writes
        ),
        Some(a) => format!("{} lost writes", a.lost_writes),
    });
    if let Some(a) = report.audit.as_ref().filter(|a| a.not_processed > 0) {
        parts.push(format!("{} photos not processed", a.not_processed));
    }
    if let Some(b) = report.batch.as_ref().filter(|b| !b.finished) {
        parts.push(batch_end_words(b.ended).to_owned());
    }
    if let Some(p) = processor_words(&report.processor_failures) {
        parts.push(p);
    }
    if !report.faults.is_empty() {
        let names: Vec<&str> = report
            .faults
            .iter()
            .map(|f| f.description.as_str())
            .collect();
        parts.push(format!("faults: {}", names.join(", ")));
    }
    match report.restarts.len() {
        0 => {}
        1 => parts.push("1 worker restart".to_owned()),
        n => parts.push(format!("{n} worker restarts")),
    }
    parts
}

/// What the runs of a repeated report say: whether one failed beyond a flaky timing, and
/// the words naming each run that failed.
struct RunsWeighed {
    failed: bool,
    words: String,
}

/// Marks each run that failed only timing gates the combined (median) gates pass as flaky,
/// and names every run that failed.
fn weigh_runs(runs: &mut [RunVerdict], combined: &[GateResult]) -> RunsWeighed {
    let n = runs.len();
    let combined_passes = |name: &str| combined.iter().any(|g| g.name == name && g.passed);
    let mut failed = false;
    let mut named = Vec::new();
    for run in runs.iter_mut() {
        if run.passed {
            run.flaky = false;
            continue;
        }
        let gates: Vec<&GateResult> = run.gates.iter().filter(|g| !g.passed).collect();
        run.flaky = run.batch_ended.is_none()
            && !gates.is_empty()
            && gates
                .iter()
                .all(|g| is_timing_gate(&g.name) && combined_passes(&g.name));
        failed |= !run.flaky;
        let mut why: Vec<String> = gates
            .iter()
            .map(|g| format!("{} ({})", g.name, value_text(g)))
            .collect();
        if gates.is_empty() && run.gates.is_empty() {
            why.extend(run.failed_gates.iter().cloned());
        }
        if let Some(ended) = run.batch_ended {
            why.push(batch_end_words(ended).to_owned());
        }
        if why.is_empty() {
            why.push(format!("exit code {}", run.exit_code));
        }
        let mut text = format!("run {} of {n} failed: {}", run.run, why.join(", "));
        if run.flaky {
            text.push_str(&format!(
                " (timing only: the median of {n} runs passes {})",
                if gates.len() == 1 { "it" } else { "them" }
            ));
        }
        named.push(text);
    }
    let words = if named.is_empty() {
        format!("all {n} runs passed")
    } else {
        named.join("; ")
    };
    RunsWeighed { failed, words }
}

#[cfg(test)]
#[path = "gates_tests.rs"]
mod tests;
