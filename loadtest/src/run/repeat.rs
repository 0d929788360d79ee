//! `run --repeat N`: one report from N runs, every compared figure the median of the runs,
//! with its spread. Combines finished reports; runs nothing.

use std::collections::BTreeMap;

use crate::report::{Audit, Report};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The report of repeated runs: the first run's report with every compared figure replaced
/// by its median across the runs, and each figure's spread.
pub(super) fn median_report(reports: &[Report], paths: Vec<String>) -> Report {
    use crate::report::{Repeat, Spread};
    let mut out = reports[0].clone();
    let values: Vec<BTreeMap<String, f64>> =
        reports.iter().map(crate::compare::figure_values).collect();
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
    let med_u64 = |f: &dyn Fn(&Report) -> Option<u64>| -> Option<u64> {
        let all: Vec<f64> = reports
            .iter()
            .filter_map(|r| f(r).map(|v| v as f64))
            .collect();
        (!all.is_empty()).then(|| median(all).round() as u64)
    };
    for (endpoint, stats) in out.requests.iter_mut() {
        let pick = |f: fn(&crate::report::EndpointStats) -> u64| {
            med_u64(&|r: &Report| r.requests.get(endpoint).map(f)).unwrap_or(0)
        };
        stats.count = pick(|s| s.count);
        stats.failures = pick(|s| s.failures);
        stats.status_503 = pick(|s| s.status_503);
        stats.latency_us.p50 = pick(|s| s.latency_us.p50);
        stats.latency_us.p95 = pick(|s| s.latency_us.p95);
        stats.latency_us.p99 = pick(|s| s.latency_us.p99);
        stats.latency_us.max = pick(|s| s.latency_us.max);
        stats.latency_us.mean = pick(|s| s.latency_us.mean);
        stats.latency_from_tick_us.p99 = pick(|s| s.latency_from_tick_us.p99);
    }
    out.lock_errors.total = med_u64(&|r: &Report| Some(r.lock_errors.total)).unwrap_or(0);
    out.lock_errors.client_visible =
        med_u64(&|r: &Report| Some(r.lock_errors.client_visible)).unwrap_or(0);
    out.retries = med_u64(&|r: &Report| r.retries);
    out.commit_only_dropped = med_u64(&|r: &Report| r.commit_only_dropped);
    if let Some(b) = out.batch.as_mut() {
        let durations: Vec<f64> = reports
            .iter()
            .filter_map(|r| r.batch.as_ref().map(|b| b.duration_s))
            .collect();
        b.duration_s = median(durations);
        b.finished = reports
            .iter()
            .all(|r| r.batch.as_ref().is_some_and(|b| b.finished));
    }
    if let Some(a) = out.audit.as_mut() {
        let m = |f: fn(&Audit) -> u64| med_u64(&|r: &Report| r.audit.as_ref().map(f)).unwrap_or(0);
        a.lost_writes = m(|a| a.lost_writes);
        a.duplicate_writes = m(|a| a.duplicate_writes);
        a.misassigned_photos = m(|a| a.misassigned_photos);
        a.missing_photos = m(|a| a.missing_photos);
        a.lost_registrations = m(|a| a.lost_registrations);
    }
    out.interrupted = reports.iter().any(|r| r.interrupted);
    out.notes.insert(
        0,
        format!(
            "{} runs (run --repeat): every figure compared by lockbench compare is the median of the runs, with its spread under repeat; the time line, roles and settings are the first run's; each run's own report: {}",
            reports.len(),
            paths.join(", ")
        ),
    );
    out.repeat = Some(Repeat {
        runs: reports.len() as u32,
        reports: paths,
        spread,
        verdicts: Vec::new(),
        tables: BTreeMap::new(),
    });
    out
}
