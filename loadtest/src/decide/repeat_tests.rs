//! `run --repeat`'s combining rules on copies of a real run's report (the rendering tests'
//! fixture), each judged as its own run is, then combined and judged as `run --repeat` does.

use super::*;
use crate::report::BatchEnd;
use crate::run::gates;
use crate::scenario::Scenario;

fn scenario(gates: &str) -> Scenario {
    toml::from_str(&format!("name = \"g\"\n[gates]\n{gates}")).expect("a scenario")
}

/// The fixture as one finished run.
fn run() -> Report {
    let mut r: Report = serde_json::from_str(include_str!("../../tests/fixtures/report.json"))
        .expect("the fixture follows the report schema");
    let b = r.batch.as_mut().expect("the fixture has a batch");
    b.finished = true;
    b.ended = BatchEnd::Finished;
    r
}

/// Each run judged on its own, then combined and judged.
fn repeated(s: &Scenario, mut runs: Vec<Report>) -> Report {
    for r in &mut runs {
        gates::judge(s, r);
    }
    let paths = (1..=runs.len())
        .map(|k| format!("run-{k}/report.json"))
        .collect();
    let mut combined = median_report(&runs, paths);
    gates::judge(s, &mut combined);
    combined
}

fn losing(lost: &[u64]) -> Vec<Report> {
    lost.iter()
        .map(|n| {
            let mut r = run();
            r.audit.as_mut().unwrap().lost_writes = *n;
            r
        })
        .collect()
}

/// (name, status) of every JUnit test case: "ok", "flaky" or "failure".
fn junit(r: &Report) -> Vec<(String, &'static str)> {
    use quick_junit::TestCaseStatus;
    crate::report::ci::junit_for_report(r).test_suites[0]
        .test_cases
        .iter()
        .map(|c| {
            let status = match &c.status {
                TestCaseStatus::Success { flaky_runs } if flaky_runs.is_empty() => "ok",
                TestCaseStatus::Success { .. } => "flaky",
                _ => "failure",
            };
            (c.name.as_str().to_owned(), status)
        })
        .collect()
}

#[test]
fn a_run_that_lost_writes_fails_the_combined_report_and_is_named() {
    let s = scenario("max_lost_writes = 0");
    let r = repeated(&s, losing(&[0, 0, 5]));
    assert_eq!(
        r.audit.as_ref().unwrap().lost_writes,
        5,
        "the largest, not the median"
    );
    assert!(!r.verdict.passed);
    assert_eq!(r.verdict.exit_code, 1);
    let summary = &r.verdict.summary;
    assert!(
        summary.starts_with("FAILED: 1 of 2 gates failed (max_lost_writes)"),
        "{summary}"
    );
    assert!(summary.contains("; 5 lost writes;"), "{summary}");
    assert!(
        summary.contains("run 3 of 3 failed: max_lost_writes (5)"),
        "{summary}"
    );
    assert!(!summary.contains("run 1 of 3"), "{summary}");
    let g = r
        .gates
        .iter()
        .find(|g| g.name == "max_lost_writes")
        .unwrap();
    assert_eq!(g.value, Some(5.0));
    assert_eq!(g.note.as_deref(), Some("the largest of 3 runs (run 3)"));
    let verdicts = &r.repeat.as_ref().unwrap().verdicts;
    assert_eq!(
        verdicts.iter().map(|v| v.passed).collect::<Vec<_>>(),
        [true, true, false]
    );
    assert_eq!(verdicts[2].failed_gates, ["max_lost_writes"]);
    assert_eq!(
        junit(&r),
        [
            ("max_error_rate".to_owned(), "ok"),
            ("max_lost_writes".to_owned(), "failure"),
            ("run 1".to_owned(), "ok"),
            ("run 2".to_owned(), "ok"),
            ("run 3".to_owned(), "failure"),
        ]
    );
}

#[test]
fn a_run_that_failed_only_a_timing_gate_is_named_and_flaky_when_the_median_passes() {
    let s = scenario("max_lost_writes = 0\n[gates.p99_ms]\n\"GET /admin\" = 1000");
    let mut runs = losing(&[0, 0, 0]);
    for (r, p99) in runs.iter_mut().zip([700_000, 800_000, 1_500_000]) {
        r.requests.get_mut("GET /admin").unwrap().latency_us.p99 = p99;
    }
    let r = repeated(&s, runs);
    let summary = &r.verdict.summary;
    assert!(r.verdict.passed, "{summary}");
    assert_eq!(r.verdict.exit_code, 0);
    assert!(
        summary.contains(
            "run 3 of 3 failed: p99_ms GET /admin (1,500) (timing only: the median of 3 runs passes it)"
        ),
        "{summary}"
    );
    let g = r
        .gates
        .iter()
        .find(|g| g.name == "p99_ms GET /admin")
        .unwrap();
    assert_eq!(g.value, Some(800.0));
    assert_eq!(g.note.as_deref(), Some("the median of 3 runs"));
    assert!(r.repeat.as_ref().unwrap().verdicts[2].flaky);
    assert_eq!(junit(&r)[5], ("run 3".to_owned(), "flaky"));

    // When the median fails as well, the run is not flaky: it failed with the whole.
    let mut runs = losing(&[0, 0, 0]);
    for (r, p99) in runs.iter_mut().zip([700_000, 1_200_000, 1_500_000]) {
        r.requests.get_mut("GET /admin").unwrap().latency_us.p99 = p99;
    }
    let r = repeated(&s, runs);
    assert_eq!(r.verdict.exit_code, 1);
    assert!(r
        .verdict
        .summary
        .contains("run 2 of 3 failed: p99_ms GET /admin (1,200); run 3 of 3 failed"));
    let cases = junit(&r);
    assert_eq!(cases[4], ("run 2".to_owned(), "failure"));
    assert_eq!(cases[5], ("run 3".to_owned(), "failure"));
}

#[test]
fn each_table_is_one_thing_and_says_which() {
    let mut runs = losing(&[0, 0, 0]);
    for (r, total) in runs.iter_mut().zip([7, 13, 7]) {
        r.lock_errors.total = total;
        r.lock_errors.by_code = [("SQLITE_BUSY".to_owned(), total)].into_iter().collect();
        r.lock_errors.by_endpoint = [("processor".to_owned(), total)].into_iter().collect();
        r.requests
            .get_mut("GET /admin")
            .unwrap()
            .status_codes
            .insert("500".into(), u64::from(total == 13));
    }
    let r = repeated(&scenario("max_lock_errors = 10"), runs);
    let le = &r.lock_errors;
    assert_eq!(le.total, 13);
    assert_eq!(
        le.by_code.values().sum::<u64>(),
        13,
        "the by-code table is run 2's"
    );
    assert_eq!(le.by_endpoint.values().sum::<u64>(), 13);
    let tables = &r.repeat.as_ref().unwrap().tables;
    assert!(
        tables["lock errors"].starts_with("run 2, the one with the most"),
        "{tables:?}"
    );
    assert!(
        tables["requests"].starts_with("medians of 3 runs"),
        "{tables:?}"
    );
    assert_eq!(tables["audit"], "the largest of each count across 3 runs");
    // The requests table is medians of every column, status codes too.
    assert!(!r.requests["GET /admin"].status_codes.contains_key("500"));
    assert!(r
        .verdict
        .summary
        .contains("run 2 of 3 failed: max_lock_errors (13)"));
}

#[test]
fn compare_finds_a_correctness_regression_that_the_spread_of_repeated_runs_would_hide() {
    let s = scenario("max_lost_writes = 0");
    let a = repeated(&s, losing(&[0, 0, 0]));
    let b = repeated(&s, losing(&[0, 3, 3]));
    let c = crate::decide::compare::compare(&a, &b, 0.1).unwrap();
    assert!(
        c.regressions.iter().any(|r| r.name == "audit.lost_writes"),
        "{:?}",
        c.regressions
    );

    let with_locks = |totals: &[u64]| {
        totals
            .iter()
            .map(|t| {
                let mut r = run();
                r.lock_errors.total = *t;
                r
            })
            .collect::<Vec<_>>()
    };
    let a = repeated(&s, with_locks(&[10, 10, 10]));
    let b = repeated(&s, with_locks(&[10, 50, 50, 50, 50]));
    assert_eq!(b.lock_errors.total, 50);
    let c = crate::decide::compare::compare(&a, &b, 0.1).unwrap();
    assert!(
        c.regressions.iter().any(|r| r.name == "lock_errors.total"),
        "{:?}",
        c.regressions
    );
}
