//! `run --repeat N`: one report from N runs. Correctness counts (lock errors, total and
//! client-visible; lost writes and every audit count; commit-only drops; processor failures)
//! are the largest of any run, so a run that lost writes is never averaged away; timings are
//! medians; every table of the combined report is one thing, said in `repeat.tables`; each
//! run's own verdict is kept in `repeat.verdicts` for the combined verdict (`gates.rs`) to
//! name. Combines finished reports; runs nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::run::gates::judge;
use crate::run::{run_scenario, write_report, RunOptions, RunOutcome};
use crate::scenario::Scenario;

use crate::report::{
    Audit, BatchFigures, EndpointStats, Latency, Repeat, Report, RoleFigures, RunVerdict, Spread,
    WalFigures,
};

/// Runs the scenario `runs` times, each run's report in `run-<k>/` of the report folder,
/// and writes the combined report: correctness counts the largest of the runs, timings their
/// medians, every run's own verdict, and one verdict that names every run that failed.
/// Stops after a run that was interrupted.
pub fn run_repeated(opts: &RunOptions, runs: u32) -> anyhow::Result<RunOutcome> {
    let scenario = match &opts.scenario_override {
        Some(s) => s.clone(),
        None => Scenario::load_with(&opts.scenario, &opts.sets)?,
    };
    let out_dir = match &opts.out {
        Some(d) => d.clone(),
        None => PathBuf::from("reports")
            .join(&scenario.name)
            .join(crate::run::utc_now().replace(':', "-")),
    };
    crate::run::prepare_out_dir(&out_dir)?;
    let mut reports = Vec::new();
    let mut paths = Vec::new();
    for k in 1..=runs {
        let dir = out_dir.join(format!("run-{k}"));
        let once = RunOptions {
            out: Some(dir.clone()),
            ..opts.clone()
        };
        let outcome = run_scenario(&once)?;
        let interrupted = outcome.report.interrupted;
        paths.push(dir.join("report.json").display().to_string());
        reports.push(outcome.report);
        if interrupted {
            break;
        }
    }
    let mut report = median_report(&reports, paths);
    judge(&scenario, &mut report);
    write_report(&report, &out_dir)?;
    Ok(RunOutcome { report, out_dir })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn median_u64(v: impl IntoIterator<Item = u64>) -> u64 {
    median(v.into_iter().map(|x| x as f64).collect()).round() as u64
}

fn median_latency<'a>(all: impl Iterator<Item = &'a Latency> + Clone) -> Latency {
    Latency {
        p50: median_u64(all.clone().map(|l| l.p50)),
        p95: median_u64(all.clone().map(|l| l.p95)),
        p99: median_u64(all.clone().map(|l| l.p99)),
        max: median_u64(all.clone().map(|l| l.max)),
        mean: median_u64(all.map(|l| l.mean)),
    }
}

/// Per endpoint, the median of every column over the runs (an endpoint a run did not call
/// counts 0 requests there; its latencies are the medians of the runs that called it). A
/// status code whose median is 0 is left out.
fn median_endpoints(
    reports: &[Report],
    table: fn(&Report) -> &BTreeMap<String, EndpointStats>,
) -> BTreeMap<String, EndpointStats> {
    let names: BTreeSet<&String> = reports.iter().flat_map(|r| table(r).keys()).collect();
    let empty = EndpointStats::default();
    names
        .into_iter()
        .map(|name| {
            let all: Vec<&EndpointStats> = reports
                .iter()
                .map(|r| table(r).get(name).unwrap_or(&empty))
                .collect();
            let present: Vec<&EndpointStats> =
                reports.iter().filter_map(|r| table(r).get(name)).collect();
            let m = |f: fn(&EndpointStats) -> u64| median_u64(all.iter().map(|s| f(s)));
            let codes: BTreeSet<&String> = all.iter().flat_map(|s| s.status_codes.keys()).collect();
            let status_codes = codes
                .into_iter()
                .map(|c| {
                    let n = median_u64(
                        all.iter()
                            .map(|s| s.status_codes.get(c).copied().unwrap_or(0)),
                    );
                    (c.clone(), n)
                })
                .filter(|(_, n)| *n > 0)
                .collect();
            let stats = EndpointStats {
                count: m(|s| s.count),
                failures: m(|s| s.failures),
                failures_by_class: median_map(all.iter().map(|s| &s.failures_by_class)),
                status_codes,
                status_503: m(|s| s.status_503),
                lock_mentions: m(|s| s.lock_mentions),
                lock_errors: m(|s| s.lock_errors),
                unanswered_at_stop: m(|s| s.unanswered_at_stop),
                server_errors_unexplained: m(|s| s.server_errors_unexplained),
                latency_us: median_latency(present.iter().map(|s| &s.latency_us)),
                latency_from_tick_us: median_latency(
                    present.iter().map(|s| &s.latency_from_tick_us),
                ),
                failed_latency_us: present.iter().any(|s| s.failed_latency_us.is_some()).then(
                    || median_latency(present.iter().filter_map(|s| s.failed_latency_us.as_ref())),
                ),
            };
            (name.clone(), stats)
        })
        .collect()
}

/// Per key, the median over the runs (a run without the key counts 0); keys whose median
/// is 0 are left out.
fn median_map<'a>(maps: impl Iterator<Item = &'a BTreeMap<String, u64>>) -> BTreeMap<String, u64> {
    let maps: Vec<&BTreeMap<String, u64>> = maps.collect();
    let keys: BTreeSet<&String> = maps.iter().flat_map(|m| m.keys()).collect();
    keys.into_iter()
        .map(|k| {
            (
                k.clone(),
                median_u64(maps.iter().map(|m| m.get(k).copied().unwrap_or(0))),
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Per key, the largest over the runs.
fn largest_map<'a>(maps: impl Iterator<Item = &'a BTreeMap<String, u64>>) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for m in maps {
        for (k, v) in m {
            let e = out.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }
    out
}

/// Per role, the first run's behaviour with the median of every figure.
fn median_roles(reports: &[Report]) -> BTreeMap<String, RoleFigures> {
    let mut out = reports[0].roles.clone();
    for (name, role) in out.iter_mut() {
        let all: Vec<&RoleFigures> = reports.iter().filter_map(|r| r.roles.get(name)).collect();
        let m = |f: fn(&RoleFigures) -> u64| median_u64(all.iter().map(|x| f(x)));
        let mf = |f: fn(&RoleFigures) -> f64| median(all.iter().map(|x| f(x)).collect());
        role.ticks_due = m(|x| x.ticks_due);
        role.ticks_sent = m(|x| x.ticks_sent);
        role.ticks_late = m(|x| x.ticks_late);
        role.ticks_skipped = m(|x| x.ticks_skipped);
        role.ticks_dropped = m(|x| x.ticks_dropped);
        role.requests = m(|x| x.requests);
        role.offered_rps = mf(|x| x.offered_rps);
        role.achieved_rps = mf(|x| x.achieved_rps);
        role.burst_factor = mf(|x| x.burst_factor);
        role.latency_from_send_us = median_latency(all.iter().map(|x| &x.latency_from_send_us));
        role.latency_from_tick_us = median_latency(all.iter().map(|x| &x.latency_from_tick_us));
    }
    out
}

/// The index of the run with the largest `f` (the first of equals).
fn largest(reports: &[Report], f: impl Fn(&Report) -> u64) -> usize {
    let mut best = 0;
    for (i, r) in reports.iter().enumerate() {
        if f(r) > f(&reports[best]) {
            best = i;
        }
    }
    best
}

/// The batch: medians of its counts and timings; finished only if every run's batch
/// finished, and then how the first unfinished one ended.
fn median_batch(reports: &[Report]) -> Option<BatchFigures> {
    let all: Vec<&BatchFigures> = reports.iter().filter_map(|r| r.batch.as_ref()).collect();
    let first = all.first()?;
    let m = |f: fn(&BatchFigures) -> u64| median_u64(all.iter().map(|b| f(b)));
    let mf = |f: fn(&BatchFigures) -> f64| median(all.iter().map(|b| f(b)).collect());
    let unfinished = all.iter().find(|b| !b.finished);
    let shown = unfinished.unwrap_or(first);
    Some(BatchFigures {
        photos: first.photos,
        processed: m(|b| b.processed),
        failed: m(|b| b.failed),
        persons: m(|b| b.persons),
        uploaded: m(|b| b.uploaded),
        duration_s: mf(|b| b.duration_s),
        photos_per_s: mf(|b| b.photos_per_s),
        finished: unfinished.is_none() && all.len() == reports.len(),
        ended: shown.ended,
        status: shown.status.clone(),
    })
}

/// The audit: the largest of each count across the runs, and every run's counter
/// mismatches (named by run). None when a run has no audit: its lost writes are unknown.
fn largest_audit(reports: &[Report]) -> Option<Audit> {
    let all: Vec<&Audit> = reports
        .iter()
        .map(|r| r.audit.as_ref())
        .collect::<Option<_>>()?;
    let max = |f: fn(&Audit) -> u64| all.iter().map(|a| f(a)).max().unwrap_or(0);
    Some(Audit {
        lost_writes: max(|a| a.lost_writes),
        duplicate_writes: max(|a| a.duplicate_writes),
        misassigned_photos: max(|a| a.misassigned_photos),
        missing_photos: max(|a| a.missing_photos),
        lost_registrations: max(|a| a.lost_registrations),
        lost_uploads: max(|a| a.lost_uploads),
        dropped_unaudited: max(|a| a.dropped_unaudited),
        not_processed: max(|a| a.not_processed),
        unaudited_writes: max(|a| a.unaudited_writes),
        lost_by_request: largest_map(all.iter().map(|a| &a.lost_by_request)),
        counter_mismatches: all
            .iter()
            .enumerate()
            .flat_map(|(i, a)| {
                a.counter_mismatches
                    .iter()
                    .map(move |m| format!("run {}: {m}", i + 1))
            })
            .collect(),
    })
}

fn median_wal(reports: &[Report]) -> Option<WalFigures> {
    let all: Vec<&WalFigures> = reports.iter().filter_map(|r| r.wal.as_ref()).collect();
    if all.is_empty() {
        return None;
    }
    let m = |f: fn(&WalFigures) -> u64| median_u64(all.iter().map(|w| f(w)));
    Some(WalFigures {
        max_bytes: m(|w| w.max_bytes),
        checkpoints_ok: m(|w| w.checkpoints_ok),
        checkpoints_busy: m(|w| w.checkpoints_busy),
    })
}

/// Each run as its own report judged it.
fn run_verdicts(reports: &[Report], paths: &[String]) -> Vec<RunVerdict> {
    reports
        .iter()
        .enumerate()
        .map(|(i, r)| RunVerdict {
            run: i as u32 + 1,
            passed: r.verdict.passed,
            exit_code: r.verdict.exit_code,
            summary: r.verdict.summary.clone(),
            failed_gates: r
                .gates
                .iter()
                .filter(|g| !g.passed)
                .map(|g| g.name.clone())
                .collect(),
            report: paths.get(i).cloned().unwrap_or_default(),
            gates: r.gates.clone(),
            batch_ended: r.batch.as_ref().filter(|b| !b.finished).map(|b| b.ended),
            flaky: false,
        })
        .collect()
}

/// Each compared figure's median and range across the runs.
fn spreads(reports: &[Report]) -> BTreeMap<String, Spread> {
    let values: Vec<BTreeMap<String, f64>> = reports
        .iter()
        .map(crate::decide::compare::figure_values)
        .collect();
    let mut spread = BTreeMap::new();
    for name in values[0].keys() {
        let all: Vec<f64> = values.iter().filter_map(|v| v.get(name).copied()).collect();
        let (min, max) = all
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
        spread.insert(
            name.clone(),
            Spread {
                median: median(all),
                min,
                max,
            },
        );
    }
    spread
}

/// The report of repeated runs (module docs): the first run's report with its tables
/// replaced as `repeat.tables` says, each figure's spread, and each run's own verdict. The
/// gates and the verdict are the caller's to judge (`gates::judge`).
pub fn median_report(reports: &[Report], paths: Vec<String>) -> Report {
    let n = reports.len();
    let mut out = reports[0].clone();
    let mut tables = Tables::new();
    combine_requests(reports, &mut out, &mut tables);
    combine_lock_errors(reports, &mut out, &mut tables);
    combine_retries(reports, &mut out, &mut tables);
    combine_processor_failures(reports, &mut out, &mut tables);
    combine_batch(reports, &mut out, &mut tables);
    combine_audit(reports, &mut out, &mut tables);
    combine_wal(reports, &mut out, &mut tables);
    tables.insert(
        "time line, settings, faults and restarts".to_owned(),
        "run 1".to_owned(),
    );
    out.interrupted = reports.iter().any(|r| r.interrupted);
    out.notes.insert(
        0,
        format!(
            "{n} runs (run --repeat): correctness counts (lock errors, lost writes and every audit count, commit-only drops, processor failures) are the largest of any run; timings are the medians of the runs, with their spread under repeat; repeat.tables says what each table holds; each run's own report: {}",
            paths.join(", ")
        ),
    );
    out.repeat = Some(Repeat {
        runs: n as u32,
        spread: spreads(reports),
        verdicts: run_verdicts(reports, &paths),
        reports: paths,
        tables,
    });
    out
}

/// What each table of the combined report holds, by table (`repeat.tables`).
type Tables = BTreeMap<String, String>;

/// "medians of 3 runs".
fn medians_of(reports: &[Report]) -> String {
    format!("medians of {} runs", reports.len())
}

/// The requests per endpoint (the load's and lockbench's own) and the roles: medians.
fn combine_requests(reports: &[Report], out: &mut Report, tables: &mut Tables) {
    let medians = medians_of(reports);
    out.requests = median_endpoints(reports, |r| &r.requests);
    tables.insert(
        "requests".to_owned(),
        format!("{medians}, each column on its own (they need not add up)"),
    );
    out.runner_requests = median_endpoints(reports, |r| &r.runner_requests);
    tables.insert("runner requests".to_owned(), medians.clone());
    out.roles = median_roles(reports);
    tables.insert("roles".to_owned(), medians);
}

/// The lock errors of the run with the most (total, by code and by endpoint); reached a
/// client and unexplained: the most of any run; every worker that did not answer in any.
fn combine_lock_errors(reports: &[Report], out: &mut Report, tables: &mut Tables) {
    let worst = largest(reports, |r| r.lock_errors.total);
    let mut le = reports[worst].lock_errors.clone();
    le.client_visible = reports
        .iter()
        .map(|r| r.lock_errors.client_visible)
        .max()
        .unwrap_or(0);
    le.server_errors_unexplained = reports
        .iter()
        .map(|r| r.lock_errors.server_errors_unexplained)
        .max()
        .unwrap_or(0);
    let missing: BTreeSet<u32> = reports
        .iter()
        .flat_map(|r| r.lock_errors.missing_workers.iter().copied())
        .collect();
    le.missing_workers = missing.into_iter().collect();
    out.lock_errors = le;
    tables.insert(
        "lock errors".to_owned(),
        format!(
            "run {}, the one with the most lock errors (total, by code and by endpoint); reached a client: the most of any run",
            worst + 1
        ),
    );
}

/// Retries: the median; commit-only drops: the run with the most.
fn combine_retries(reports: &[Report], out: &mut Report, tables: &mut Tables) {
    let retries: Vec<u64> = reports.iter().filter_map(|r| r.retries).collect();
    out.retries = (!retries.is_empty()).then(|| median_u64(retries));
    let dropped = largest(reports, |r| r.commit_only_dropped.unwrap_or(0));
    out.commit_only_dropped = reports.iter().filter_map(|r| r.commit_only_dropped).max();
    out.commit_only_dropped_by_endpoint = reports[dropped].commit_only_dropped_by_endpoint.clone();
    tables.insert(
        "retries".to_owned(),
        format!(
            "retries: the median of {} runs; commit-only drops: run {}, the one with the most",
            reports.len(),
            dropped + 1
        ),
    );
}

/// The processor's failures: the largest count of each step.
fn combine_processor_failures(reports: &[Report], out: &mut Report, tables: &mut Tables) {
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    for r in reports {
        for (op, k) in &r.processor_failures {
            let e = failures.entry(op.clone()).or_default();
            *e = (*e).max(*k);
        }
    }
    out.processor_failures = failures;
    tables.insert(
        "processor failures".to_owned(),
        format!(
            "the largest count of each step across {} runs",
            reports.len()
        ),
    );
}

/// The batch: medians, and which run's batch did not finish.
fn combine_batch(reports: &[Report], out: &mut Report, tables: &mut Tables) {
    out.batch = median_batch(reports);
    if let Some(b) = &out.batch {
        let mut what = medians_of(reports);
        if let Some(k) = reports
            .iter()
            .position(|r| r.batch.as_ref().is_some_and(|b| !b.finished))
        {
            what.push_str(&format!(
                "; finished only if every run's batch finished: run {} did not ({})",
                k + 1,
                b.ended.describe()
            ));
        }
        tables.insert("batch".to_owned(), what);
    }
}

/// The audit: the largest of each count, or none when a run has no audit.
fn combine_audit(reports: &[Report], out: &mut Report, tables: &mut Tables) {
    out.audit = largest_audit(reports);
    if reports.iter().any(|r| r.audit.is_some()) {
        tables.insert(
            "audit".to_owned(),
            if out.audit.is_some() {
                format!("the largest of each count across {} runs", reports.len())
            } else {
                "none: a run has no audit, so the runs' lost writes are not all known".to_owned()
            },
        );
    }
}

/// The WAL: medians.
fn combine_wal(reports: &[Report], out: &mut Report, tables: &mut Tables) {
    out.wal = median_wal(reports);
    if out.wal.is_some() {
        tables.insert("wal".to_owned(), medians_of(reports));
    }
}

#[cfg(test)]
#[path = "repeat_tests.rs"]
mod tests;
