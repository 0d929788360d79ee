//! The recorder's tests, beside the file they test (kept apart so both stay small).
use super::*;

fn at(base: Instant, ms: u64) -> Instant {
    base + Duration::from_millis(ms)
}

/// A histogram's value (µs, 3 significant figures) is `ms` milliseconds.
fn near(us: u64, ms: u64) -> bool {
    (us as f64 / 1000.0 - ms as f64).abs() <= ms as f64 * 0.002 + 0.01
}

#[test]
fn a_lock_error_is_one_request_whether_a_503_or_a_body_that_mentions_a_lock() {
    let base = Instant::now();
    let r = Recorder::new(base);
    let t = Timing {
        intended: base,
        tick_sent: base,
        sent: base,
        answered: at(base, 5),
    };
    let failed = |status, lock_mention| Outcome {
        status: Some(status),
        expected: false,
        lock_mention,
        timeout: false,
    };
    let (bare_503, locked_500, locked_503) =
        (failed(503, false), failed(500, true), failed(503, true));
    for _ in 0..10 {
        r.record("E", &bare_503, t);
        r.record("E", &locked_500, t);
    }
    r.record("E", &locked_503, t);
    let s = &r.endpoint_stats()["E"];
    assert_eq!((s.status_503, s.lock_mentions, s.lock_errors), (11, 11, 21));
    assert_eq!(s.server_errors_unexplained, 0);
    assert_eq!(r.lock_visible_total(), 21);
    let timeline: u64 = r.timeline().iter().map(|p| p.lock_errors).sum();
    assert_eq!(
        timeline, 21,
        "the time line and the total count the same requests"
    );
}

#[test]
fn a_second_request_is_charged_its_own_time_plus_the_ticks_lateness() {
    let base = Instant::now();
    let r = Recorder::new(base);
    let ok = Outcome {
        status: Some(200),
        expected: true,
        lock_mention: false,
        timeout: false,
    };
    // The tick went 100 ms late; its first request took 3 s, its second 10 ms.
    let (tick, went) = (base, at(base, 100));
    r.record(
        "first",
        &ok,
        Timing {
            intended: tick,
            tick_sent: went,
            sent: went,
            answered: at(base, 3_100),
        },
    );
    r.record(
        "second",
        &ok,
        Timing {
            intended: tick,
            tick_sent: went,
            sent: at(base, 3_100),
            answered: at(base, 3_110),
        },
    );
    let stats = r.endpoint_stats();
    assert!(
        near(stats["first"].latency_from_tick_us.max, 3_100),
        "{:?}",
        stats["first"].latency_from_tick_us.max
    );
    assert!(
        near(stats["second"].latency_from_tick_us.max, 110),
        "{:?}",
        stats["second"].latency_from_tick_us.max
    );
    assert!(
        near(stats["second"].latency_us.max, 10),
        "{:?}",
        stats["second"].latency_us.max
    );
}

#[test]
fn skipped_and_pending_ticks_are_charged_to_their_endpoints_and_role() {
    let base = Instant::now();
    let r = Recorder::new(base);
    // Two ticks skipped at 0 and 1 s, served by a tick sent at 2 s whose two requests
    // took 50 and 20 ms; the tick was done at 2.07 s.
    r.skipped_served(
        "poller",
        &[base, at(base, 1_000)],
        at(base, 2_000),
        at(base, 2_070),
        &[
            ("A", Duration::from_millis(50)),
            ("B", Duration::from_millis(20)),
        ],
    );
    let stats = r.endpoint_stats();
    assert!(
        near(stats["A"].latency_from_tick_us.max, 2_050),
        "{:?}",
        stats["A"].latency_from_tick_us.max
    );
    assert!(
        near(stats["B"].latency_from_tick_us.max, 2_020),
        "{:?}",
        stats["B"].latency_from_tick_us.max
    );
    assert_eq!(stats["B"].count, 0, "charged latency, not requests");
    // Three ticks waiting at the stop (5 s), one of them due after it.
    r.pending_at_stop(
        "poller",
        &[at(base, 3_000), at(base, 4_000), at(base, 6_000)],
        &["A"],
        at(base, 5_000),
    );
    let stats = r.endpoint_stats();
    assert_eq!(stats["A"].unanswered_at_stop, 2);
    assert_eq!(stats["B"].unanswered_at_stop, 0);
    let users = crate::scenario::Users {
        pollers: 1,
        admins: 0,
        kiosks: 0,
        ..crate::scenario::Users::default()
    };
    let classes = users.classes(crate::scenario::RoleEndpoints::Reference);
    let role = &r.role_figures(&classes, Duration::from_secs(5))["poller"];
    assert!(
        near(role.latency_from_tick_us.max, 2_070),
        "{:?}",
        role.latency_from_tick_us.max
    );
    assert!(role.latency_from_tick_us.p50 / 1000 >= 1_000);
}
