//! The comparison's rules, checked on hand-made figures: the tolerance, from-zero figures,
//! the timing floor and the settings diff.

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
