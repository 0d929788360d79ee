//! The comparison's rules, checked on hand-made figures and on the rendering tests' fixture
//! (a real run) edited: the tolerance, from-zero figures, the timing floor, repeated runs'
//! spread (timings only, within A's own range), the batch per photo, an endpoint B never
//! heard from, and the settings diff over the whole scenario.

use super::*;
use crate::report::compare::setting_text;

#[test]
fn tolerance_takes_percentages_and_fractions_and_refuses_ambiguous_numbers() {
    let ok = |s: &str| parse_tolerance(s).expect(s);
    assert_eq!(ok("10%"), 0.1);
    assert_eq!(ok(" 2.5 % "), 0.025);
    assert_eq!(ok("0.1"), 0.1);
    assert_eq!(ok("0"), 0.0);
    assert_eq!(ok("150%"), 1.5);
    for bad in ["10", "-5%", "ten", "", "%", "NaN", "inf%"] {
        let e = parse_tolerance(bad).expect_err(bad).to_string();
        assert!(e.starts_with("--tolerance"), "{e}");
    }
}

#[test]
fn exactly_at_the_tolerance_is_not_a_regression_just_past_it_is() {
    assert!(!regressed(Unit::Count, 10.0, 11.0, 0.1));
    assert!(regressed(Unit::Count, 10.0, 11.01, 0.1));
    assert!(!regressed(Unit::Count, 10.0, 3.0, 0.1));
    assert!(
        !regressed(Unit::Ms, 1.58, 2.5, 0.1),
        "under a millisecond more is noise"
    );
    assert!(regressed(Unit::Ms, 1.58, 5.08, 0.1));
}

#[test]
fn from_zero_counts_regress_on_any_increase_and_timings_only_past_one_millisecond() {
    assert!(regressed(Unit::Count, 0.0, 1.0, 0.5));
    assert!(regressed(Unit::Percent, 0.0, 0.01, 0.5));
    assert!(!regressed(Unit::Ms, 0.0, 0.9, 0.1));
    assert!(regressed(Unit::Ms, 0.0, 1.5, 0.1));
    assert!(!regressed(Unit::Seconds, 0.0, 0.0005, 0.1));
    assert!(!regressed(Unit::Count, 0.0, 0.0, 0.0));
}

#[test]
fn a_figure_from_zero_is_new_and_its_message_says_so() {
    let f = figure(
        None,
        "audit.lost_writes",
        Unit::Count,
        true,
        n(0),
        n(2),
        0.1,
    );
    assert!(f.new && f.regression && f.relative_pct.is_none());
    assert_eq!(
        regression_message(&f, 0.1),
        "REGRESSION: audit.lost_writes 0 → 2 (new: A was 0)"
    );
    let f = figure(
        None,
        "lock_errors.total",
        Unit::Count,
        true,
        n(12),
        n(30),
        0.1,
    );
    assert_eq!(
        regression_message(&f, 0.1),
        "REGRESSION: lock_errors.total 12 → 30 (+150.0%, tolerance 10%)"
    );
}

#[test]
fn settings_are_diffed_as_dotted_keys() {
    let a =
        serde_json::json!({"storage": {"journal_mode": "delete", "pool_size": 4}, "workers": 2});
    let b = serde_json::json!({"storage": {"journal_mode": "wal", "pool_size": 4}, "retry": {"retry": "fixed"}});
    let keys: Vec<String> = settings_diff(&a, &b)
        .into_iter()
        .map(|d| {
            format!(
                "{}: {} → {}",
                d.key,
                setting_text(d.a.as_ref()),
                setting_text(d.b.as_ref())
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            "retry.retry: (absent) → fixed",
            "storage.journal_mode: delete → wal",
            "workers: 2 → (absent)"
        ]
    );
}

/// The rendering tests' fixture: a real run against the reference server.
fn fixture() -> Report {
    serde_json::from_str(include_str!("../../tests/fixtures/report.json"))
        .expect("the fixture follows the report schema")
}

/// `r` as the combined report of repeated runs, with each named figure's (median, min, max).
fn repeated(mut r: Report, figures: &[(&str, [f64; 3])]) -> Report {
    use crate::report::{Repeat, Spread};
    r.repeat = Some(Repeat {
        runs: 3,
        reports: Vec::new(),
        spread: figures
            .iter()
            .map(|(name, [median, min, max])| {
                (
                    (*name).to_owned(),
                    Spread {
                        median: *median,
                        min: *min,
                        max: *max,
                    },
                )
            })
            .collect(),
        verdicts: Vec::new(),
        tables: Default::default(),
    });
    r
}

fn regressed_names(a: &Report, b: &Report) -> Vec<String> {
    compare(a, b, 0.1)
        .expect("same shape")
        .regressions
        .into_iter()
        .map(|r| r.name)
        .collect()
}

#[test]
fn no_spread_excuses_a_correctness_count() {
    // Lost writes A = [0, 0, 0], B = [0, 3, 3]: the combined reports hold the largest.
    let mut a = fixture();
    a.audit.as_mut().unwrap().lost_writes = 0;
    let a = repeated(a, &[("audit.lost_writes", [0.0, 0.0, 0.0])]);
    let mut b = fixture();
    b.audit.as_mut().unwrap().lost_writes = 3;
    let b = repeated(b, &[("audit.lost_writes", [3.0, 0.0, 3.0])]);
    assert!(regressed_names(&a, &b).contains(&"audit.lost_writes".to_owned()));

    // Lock errors A = [10, 10, 10], B = [10, 50, 50, 50, 50].
    let mut a = fixture();
    a.lock_errors.total = 10;
    let a = repeated(a, &[("lock_errors.total", [10.0, 10.0, 10.0])]);
    let mut b = fixture();
    b.lock_errors.total = 50;
    let b = repeated(b, &[("lock_errors.total", [50.0, 10.0, 50.0])]);
    assert!(regressed_names(&a, &b).contains(&"lock_errors.total".to_owned()));

    // An error rate is what happened, not noise either.
    let name = "requests[GET /admin].error_rate_pct";
    let a = repeated(fixture(), &[(name, [0.0, 0.0, 0.0])]);
    let mut b = fixture();
    b.requests.get_mut("GET /admin").unwrap().failures = 1;
    let b = repeated(b, &[(name, [7.1, 0.0, 50.0])]);
    assert!(regressed_names(&a, &b).contains(&name.to_owned()));
}

#[test]
fn a_timing_is_excused_only_within_as_own_range_and_bs_outliers_do_not_widen_it() {
    let name = "requests[GET /admin].p99_ms";
    let with_p99 = |us: u64, spread: [f64; 3]| {
        let mut r = fixture();
        r.requests.get_mut("GET /admin").unwrap().latency_us.p99 = us;
        repeated(r, &[(name, spread)])
    };
    let a = with_p99(150_000, [150.0, 100.0, 200.0]);
    // +26.7%, past the tolerance, but A's own runs went up to 200 ms.
    let b = with_p99(190_000, [190.0, 150.0, 400.0]);
    let c = compare(&a, &b, 0.1).unwrap();
    let f = c.figures.iter().find(|f| f.name == name).unwrap();
    assert!(!f.regression && f.within_a_range, "{f:?}");
    assert_eq!(f.a_range, Some([100.0, 200.0]));
    assert!(crate::report::compare::render_markdown(&c).contains(
        "| p99_ms | 150.0 | 190.0 | +40.0 | +26.7% | ok: within A's runs (100.0–200.0) |"
    ));
    // Past A's largest run: a regression, however wide B's own spread.
    let b = with_p99(250_000, [250.0, 100.0, 1000.0]);
    assert!(regressed_names(&a, &b).contains(&name.to_owned()));
    // A not repeated: nothing to excuse it.
    let mut plain = a.clone();
    plain.repeat = None;
    let b = with_p99(190_000, [190.0, 150.0, 400.0]);
    assert!(regressed_names(&plain, &b).contains(&name.to_owned()));
}

#[test]
fn the_batch_is_judged_per_photo_processed() {
    let with_batch = |processed: u64, seconds: f64| {
        let mut r = fixture();
        let b = r.batch.as_mut().unwrap();
        b.processed = processed;
        b.duration_s = seconds;
        b.photos_per_s = processed as f64 / seconds;
        r
    };
    // 202 photos in 27 s against 62 in 14.85 s: longer, and 80% more photos per second.
    let a = with_batch(62, 14.85);
    let b = with_batch(202, 27.0);
    let c = compare(&a, &b, 0.1).unwrap();
    assert!(c.regressions.is_empty(), "{:?}", c.regressions);
    let per_photo = c
        .figures
        .iter()
        .find(|f| f.name == "batch.seconds_per_photo")
        .unwrap();
    assert!(per_photo.gated && per_photo.delta.unwrap() < 0.0);
    let duration = c
        .figures
        .iter()
        .find(|f| f.name == "batch.duration_s")
        .unwrap();
    assert!(
        !duration.gated && duration.delta.unwrap() > 12.0,
        "shown, not gated"
    );
    // The same photos in more time is a regression.
    let b = with_batch(62, 20.0);
    assert_eq!(regressed_names(&a, &b), ["batch.seconds_per_photo"]);
    // A batch that processed nothing has no time per photo: unknown, not fine.
    let b = with_batch(0, 50.0);
    assert!(regressed_names(&a, &b).contains(&"batch.seconds_per_photo".to_owned()));
}

#[test]
fn an_endpoint_that_never_answered_in_b_is_a_regression_not_zero_milliseconds() {
    let a = fixture();
    let mut b = fixture();
    let admin = b.requests.get_mut("GET /admin").unwrap();
    *admin = crate::report::EndpointStats {
        unanswered_at_stop: 7,
        ..Default::default()
    };
    let c = compare(&a, &b, 0.1).unwrap();
    let names: Vec<&str> = c.regressions.iter().map(|r| r.name.as_str()).collect();
    assert!(names.contains(&"requests[GET /admin].p99_ms"), "{names:?}");
    assert!(
        names.contains(&"requests[GET /admin].error_rate_pct"),
        "{names:?}"
    );
    let message = &c
        .regressions
        .iter()
        .find(|r| r.name == "requests[GET /admin].p99_ms")
        .unwrap()
        .message;
    assert_eq!(
        message,
        "REGRESSION: requests[GET /admin].p99_ms 702.5 → unknown (B has no value where A had one)"
    );
}

#[test]
fn every_setting_of_the_scenario_is_compared_and_sameness_is_never_claimed_blind() {
    let a = fixture();
    let mut b = fixture();
    let s = &mut b.settings_requested;
    s["batch"]["count"] = serde_json::json!(350);
    s["duration"]["max"] = serde_json::json!("10m");
    s["gates"]["max_lock_errors"] = serde_json::json!(5);
    s["faults"] = serde_json::json!([{"kind": "external-lock", "at": "10s", "hold": "35s"}]);
    let c = compare(&a, &b, 0.1).unwrap();
    let keys: Vec<&str> = c.settings_diff.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "batch.count",
            "duration.max",
            "faults[0].at",
            "faults[0].hold",
            "faults[0].kind",
            "gates.max_lock_errors"
        ]
    );
    let md = crate::report::compare::render_markdown(&c);
    assert!(md.contains("- faults[0].hold: (absent) → 35s\n"), "{md}");
    assert!(!md.contains("None: both runs"), "{md}");

    let mut blind = fixture();
    blind.settings_requested = serde_json::Value::Null;
    let md = crate::report::compare::render_markdown(&compare(&blind, &blind, 0.1).unwrap());
    assert!(md.contains("Unknown: neither report recorded the settings it requested."));
    assert!(!md.contains("None: both runs"), "{md}");
}
