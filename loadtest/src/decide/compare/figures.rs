//! The figures `compare` reads from two reports, in the order the comparison lists them
//! (each endpoint's counts, error rate and latencies; then the lock errors, retries,
//! commit-only drops, the processor's failures, the batch and the audit), which of them are
//! gated, and the regression rule each gated figure is judged by (module docs of
//! `compare.rs`).

use std::collections::{BTreeMap, BTreeSet};

use crate::report::{Audit, BatchFigures, EndpointStats, Latency, Report};

use super::{Figure, Unit};

/// Room for floating-point rounding when a change sits exactly at the tolerance.
const EPSILON: f64 = 1e-12;

/// How a figure is added: its key, unit, whether it is gated, and A's and B's values.
type Push<'a> = dyn FnMut(&str, Unit, bool, Option<f64>, Option<f64>) + 'a;

/// Each endpoint's figures, in A's endpoint order (B has the same endpoints).
pub(super) fn endpoint_figures(a: &Report, b: &Report, tolerance: f64, figures: &mut Vec<Figure>) {
    for (endpoint, sa) in &a.requests {
        let sb = &b.requests[endpoint];
        let mut push = |key: &str, unit, gated, fa: Option<f64>, fb: Option<f64>| {
            figures.push(figure(Some(endpoint), key, unit, gated, fa, fb, tolerance));
        };
        count_figures(&mut push, sa, sb);
        latency_figures(&mut push, sa, sb);
    }
}

/// An endpoint's counts and its error rate (gated).
fn count_figures(push: &mut Push, sa: &EndpointStats, sb: &EndpointStats) {
    let rate =
        |failures: u64, count: u64| (count > 0).then(|| failures as f64 / count as f64 * 100.0);
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
}

/// An endpoint's latencies from the send (p99 gated) and its p99 from the tick.
fn latency_figures(push: &mut Push, sa: &EndpointStats, sb: &EndpointStats) {
    // An endpoint that never answered has no latency (not 0 ms).
    let ms = |s: &EndpointStats, f: fn(&Latency) -> u64| {
        (s.count > 0).then(|| f(&s.latency_us) as f64 / 1000.0)
    };
    let tick_ms = |s: &EndpointStats| {
        (s.count > 0 || s.unanswered_at_stop > 0)
            .then(|| s.latency_from_tick_us.p99 as f64 / 1000.0)
    };
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

/// The server side's figures; one absent from both reports (e.g. --target mode) is left out.
pub(super) fn server_figures(a: &Report, b: &Report, tolerance: f64, figures: &mut Vec<Figure>) {
    let mut push = |key: &str, unit, gated, fa: Option<f64>, fb: Option<f64>| {
        // Absent from both reports (e.g. --target mode): nothing to show.
        if fa.is_some() || fb.is_some() {
            figures.push(figure(None, key, unit, gated, fa, fb, tolerance));
        }
    };
    lock_figures(&mut push, a, b);
    batch_figures(&mut push, a, b);
    audit_figures(&mut push, a, b);
}

/// Lock errors (the total gated, by code, client-visible), retries, commit-only drops, and
/// the reference server's processor failures (gated).
fn lock_figures(push: &mut Push, a: &Report, b: &Report) {
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
}

/// The batch: seconds per photo processed (gated), its duration and photos per second.
fn batch_figures(push: &mut Push, a: &Report, b: &Report) {
    let (ba, bb) = (a.batch.as_ref(), b.batch.as_ref());
    type BatchField = fn(&BatchFigures) -> Option<f64>;
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
}

/// The audit's counts, the correctness ones gated.
fn audit_figures(push: &mut Push, a: &Report, b: &Report) {
    let (aa, ab) = (a.audit.as_ref(), b.audit.as_ref());
    type Field = fn(&Audit) -> u64;
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
        let get = |x: Option<&Audit>| x.map(|x| field(x) as f64);
        push(key, Unit::Count, gated, get(aa), get(ab));
    }
}

pub(super) fn n(x: u64) -> Option<f64> {
    Some(x as f64)
}

/// One figure of A and B: its delta, its change in percent, and whether it regressed.
pub(super) fn figure(
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

/// The regression rule (module docs): higher is worse.
pub(super) fn regressed(unit: Unit, a: f64, b: f64, tolerance: f64) -> bool {
    if a > 0.0 {
        // Timings must also grow by more than their floor: 1.6 ms → 5 ms on a short run is noise.
        (b - a) / a > tolerance + EPSILON && b - a > unit.floor()
    } else {
        b > unit.floor()
    }
}
