//! The gates and the verdict's tests, beside the file they test (kept apart so both stay small).
use super::*;
use crate::report::{Audit, BatchFigures};

/// The rendering tests' fixture: a real run against the reference server.
fn fixture() -> Report {
    serde_json::from_str(include_str!("../../tests/fixtures/report.json"))
        .expect("the fixture follows the report schema")
}

fn scenario(gates: &str) -> Scenario {
    toml::from_str(&format!("name = \"g\"\n[gates]\n{gates}")).expect("a scenario")
}

fn gate<'a>(r: &'a Report, name: &str) -> &'a GateResult {
    r.gates.iter().find(|g| g.name == name).expect(name)
}

#[test]
fn one_failure_in_25000_requests_fails_a_zero_error_rate() {
    let mut r = fixture();
    r.requests.clear();
    let e = r.requests.entry("E".into()).or_default();
    e.count = 25_000;
    e.failures = 1;
    judge(&scenario("max_error_rate = 0.0"), &mut r);
    let g = gate(&r, "max_error_rate");
    assert_eq!(g.value, Some(1.0 / 25_000.0));
    assert!(!g.passed);
    assert_eq!(r.verdict.exit_code, 1);
}

#[test]
fn missing_workers_make_the_lock_gate_a_failing_lower_bound() {
    let mut r = fixture();
    r.lock_errors.total = 12;
    r.lock_errors.missing_workers = vec![2, 3];
    judge(&scenario("max_lock_errors = 100"), &mut r);
    let g = gate(&r, "max_lock_errors");
    assert_eq!(g.value, Some(12.0));
    assert!(!g.passed);
    assert_eq!(
        g.note.as_deref(),
        Some("at least 12: workers 2, 3 did not answer /api/stats")
    );
    assert!(
        r.verdict
            .summary
            .contains("at least 12 lock errors (server side; workers 2, 3 did not answer)"),
        "{}",
        r.verdict.summary
    );
}

#[test]
fn an_unfinished_batch_has_no_duration_and_the_verdict_says_how_it_ended() {
    let mut r = fixture();
    let batch = BatchFigures {
        finished: false,
        ended: BatchEnd::Cap,
        ..r.batch.clone().expect("the fixture has a batch")
    };
    r.batch = Some(batch);
    judge(&scenario("max_batch_seconds = 1000"), &mut r);
    let g = gate(&r, "max_batch_seconds");
    assert_eq!(g.value, None);
    assert!(!g.passed);
    assert_eq!(
        g.note.as_deref(),
        Some("the batch did not finish: stopped at the hard cap (duration.max)")
    );
    let s = &r.verdict.summary;
    assert!(s.contains("max_batch_seconds: unknown"), "{s}");
    assert!(s.contains("the batch was stopped at the hard cap"), "{s}");
    for (ended, words) in [
        (BatchEnd::Interrupted, "the batch was interrupted"),
        (BatchEnd::Failed, "the batch failed"),
    ] {
        r.batch.as_mut().unwrap().ended = ended;
        judge(&scenario("max_batch_seconds = 1000"), &mut r);
        assert!(r.verdict.summary.contains(words), "{}", r.verdict.summary);
        assert!(!r.verdict.summary.contains("hard cap"));
    }
}

#[test]
fn an_endpoint_that_never_answered_fails_its_gate_as_unknown() {
    let mut r = fixture();
    r.requests.insert(
        "GET /healthz".into(),
        crate::report::EndpointStats {
            unanswered_at_stop: 4,
            ..Default::default()
        },
    );
    judge(
        &scenario("[gates.p99_ms]\n\"GET /healthz\" = 1000\n\"GET /nowhere\" = 10"),
        &mut r,
    );
    let g = gate(&r, "p99_ms GET /healthz");
    assert_eq!((g.value, g.passed), (None, false));
    assert_eq!(
        g.note.as_deref(),
        Some("GET /healthz never answered (4 ticks were still waiting when the load stopped)")
    );
    assert_eq!(
        gate(&r, "p99_ms GET /nowhere").note.as_deref(),
        Some("GET /nowhere was never called")
    );
}

#[test]
fn the_verdict_names_processor_failures_and_photos_not_processed_apart_from_lost_writes() {
    let mut r = fixture();
    r.processor_failures.insert("upload_person".into(), 1);
    r.audit = Some(Audit {
        lost_writes: 0,
        not_processed: 12,
        ..Audit::default()
    });
    judge(&scenario("max_lost_writes = 0"), &mut r);
    let s = &r.verdict.summary;
    assert!(
        s.contains("; 0 lost writes; 12 photos not processed;"),
        "{s}"
    );
    assert!(
        s.contains("processor: 1 step failed (upload_person)"),
        "{s}"
    );
    r.processor_failures.insert("save_photo".into(), 2);
    judge(&scenario("max_lost_writes = 0"), &mut r);
    assert!(
        r.verdict
            .summary
            .contains("processor: 3 steps failed (save_photo ×2, upload_person)"),
        "{}",
        r.verdict.summary
    );
}

#[test]
fn lost_writes_nobody_could_audit_fail_their_gate() {
    let mut r = fixture();
    r.audit = None;
    r.target.kind = "external".into();
    judge(&scenario("max_lost_writes = 0"), &mut r);
    let g = gate(&r, "max_lost_writes");
    assert_eq!((g.value, g.passed), (None, false));
    assert!(g.note.as_deref().unwrap().contains("[target].database"));
    r.audit = Some(Audit {
        lost_writes: 0,
        unaudited_writes: 3,
        ..Audit::default()
    });
    judge(&scenario("max_lost_writes = 0"), &mut r);
    let g = gate(&r, "max_lost_writes");
    assert_eq!((g.value, g.passed), (Some(0.0), false));
    assert!(r
        .verdict
        .summary
        .contains("at least 0 lost writes (3 acknowledged writes could not be looked up)"));
}
