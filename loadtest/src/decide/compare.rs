//! `lockbench compare A.json B.json`: two reports of the same scenario side by side, and a
//! verdict on whether B regressed against A.
//!
//! The comparison is plain data: [`compare`] builds a [`Comparison`] from two [`Report`]
//! values, so tests and sweep tooling call the same function the command does, and every
//! rendering comes from it: [`render_markdown`] and [`render_html`] (one self-contained page)
//! for people, [`render_json`] (versioned by [`COMPARE_SCHEMA_VERSION`]) for tools.
//! [`run_cli`] is the command: read, compare, render, exit code; with `--out DIR`,
//! [`write_files`] writes all three there.
//!
//! Two reports can be compared when they have the same `schema_version`, the same scenario
//! name, the same target kind and the same set of endpoints; otherwise [`Incompatible`] says
//! which of these differ (exit code 2).
//!
//! The regression rule, applied to the gated figures only (lock errors total, each
//! endpoint's error rate and p99, the batch's seconds per photo processed, lost writes,
//! duplicate writes, misassigned photos, photos not processed, processor failures; higher is
//! worse for all of them):
//! - A > 0: B regressed when (B − A) / A exceeds the tolerance (exactly at it is fine) and,
//!   for timings, B − A also exceeds 1 ms, so that sub-millisecond jitter is not a failure.
//! - A = 0, counts and rates: any B above 0 is a regression: an error that did not happen
//!   at all before is news whatever the tolerance.
//! - A = 0, timings: B regressed only above 1 ms, so a figure too small to measure in A
//!   does not turn noise into a failure.
//!
//! Repeated runs (`run --repeat`): a report's correctness counts are the largest of its
//! runs and are compared as they are, with no allowance for spread: noise never excuses a
//! lost write or a lock error. A timing (ms, seconds) that regressed is excused only when
//! B's median stays within A's own observed range (B ≤ A's largest run): A's runs show such
//! a value is A's normal; B's spread never widens the excuse.
//!
//! The batch is judged per photo processed (`batch.seconds_per_photo`): a run that processed
//! more photos in more time did not regress. Everything else (request counts, 503s,
//! client-visible lock errors per endpoint, requests unanswered at the stop, p50/p95/max,
//! p99 from the tick, lock errors by code, client-visible lock errors, retries, commit-only
//! drops, the batch's duration and photos per second, the audit's parts) is shown with its
//! deltas and never changes the exit code.
//!
//! Here: [`compare`] and what it adds to the figures (the spread of repeated runs, the
//! regressions' words, the settings diff). The figures read from a report and the rule are
//! in `compare/figures.rs`, the shape check in `compare/shape.rs`, the command line in
//! `compare/cli.rs`; every public name is reached through this module.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::report::compare::{pct_text, signed_pct, value_text};
pub use crate::report::compare::{render_html, render_json, render_markdown};
pub use crate::report::comparison::{
    Comparison, Figure, Regression, RunInfo, SettingDiff, Unit, COMPARE_SCHEMA_VERSION,
    TIMING_FLOOR_MS,
};
use crate::report::Report;

mod cli;
mod figures;
mod shape;

pub use cli::{
    compare_files, parse_report, parse_tolerance, read_report_json, run_cli, write_files,
    CliOutput, CompareError, Format, ReadError, OUT_FILES,
};
use figures::{endpoint_figures, server_figures};
#[cfg(test)]
use figures::{figure, n, regressed};
use shape::check_shape;
pub use shape::{Incompatible, Mismatch};

/// Compares two reports of the same scenario shape; `tolerance` is relative (0.1 = 10 %).
pub fn compare(a: &Report, b: &Report, tolerance: f64) -> Result<Comparison, Incompatible> {
    check_shape(a, b)?;
    let mut figures = Vec::new();
    endpoint_figures(a, b, tolerance, &mut figures);
    server_figures(a, b, tolerance, &mut figures);
    apply_spread(a, b, &mut figures);

    let regressions: Vec<Regression> = figures
        .iter()
        .filter(|f| f.regression)
        .map(|f| Regression {
            name: f.name.clone(),
            message: regression_message(f, tolerance),
        })
        .collect();
    let summary = summary(&regressions, tolerance);
    Ok(Comparison {
        schema_version: COMPARE_SCHEMA_VERSION,
        report_schema_version: a.schema_version,
        scenario: a.scenario.name.clone(),
        target_kind: a.target.kind.clone(),
        tolerance,
        exit_code: u8::from(!regressions.is_empty()),
        summary,
        regressions,
        a: RunInfo::of(a),
        b: RunInfo::of(b),
        settings_diff: settings_diff(&a.settings_requested, &b.settings_requested),
        settings_recorded: !(flatten(&a.settings_requested).is_empty()
            && flatten(&b.settings_requested).is_empty()),
        figures,
    })
}

/// With repeated runs in A, a timing that regressed is excused when B (its median, if B was
/// repeated too) stays within A's own range: at most A's largest run. Counts and rates are
/// never excused, and B's own spread never widens the excuse.
fn apply_spread(a: &Report, _b: &Report, figures: &mut [Figure]) {
    let Some(repeat) = &a.repeat else {
        return;
    };
    for f in figures.iter_mut().filter(|f| f.unit.is_timing()) {
        let Some(s) = repeat.spread.get(&f.name) else {
            continue;
        };
        f.a_range = Some([s.min, s.max]);
        if f.regression && f.b.is_some_and(|b| b <= s.max) {
            f.regression = false;
            f.within_a_range = true;
        }
    }
}

/// Every figure `compare` reads from one report, by name, with its value.
pub fn figure_values(r: &Report) -> BTreeMap<String, f64> {
    match compare(r, r, 0.0) {
        Ok(c) => c
            .figures
            .into_iter()
            .filter_map(|f| f.a.map(|v| (f.name, v)))
            .collect(),
        Err(_) => BTreeMap::new(),
    }
}

fn regression_message(f: &Figure, tolerance: f64) -> String {
    let Some(b) = f.b else {
        return format!(
            "REGRESSION: {} {} → unknown (B has no value where A had one)",
            f.name,
            f.a.map_or("unknown".to_owned(), |a| value_text(f.unit, a))
        );
    };
    let a = f.a.unwrap_or(0.0);
    let why = match f.relative_pct {
        Some(pct) => format!("{}, tolerance {}", signed_pct(pct), pct_text(tolerance)),
        None if f.unit.floor() > 0.0 => {
            format!("new: A was 0, B is above the {TIMING_FLOOR_MS} ms floor")
        }
        None => "new: A was 0".to_owned(),
    };
    format!(
        "REGRESSION: {} {} → {} ({why})",
        f.name,
        value_text(f.unit, a),
        value_text(f.unit, b)
    )
}

fn summary(regressions: &[Regression], tolerance: f64) -> String {
    let tol = pct_text(tolerance);
    match regressions.len() {
        0 => format!("no regression past the {tol} tolerance"),
        k => {
            let names: Vec<&str> = regressions.iter().map(|r| r.name.as_str()).collect();
            let word = if k == 1 { "regression" } else { "regressions" };
            format!("{k} {word} past the {tol} tolerance: {}", names.join(", "))
        }
    }
}

/// The requested settings that differ, walked as dotted keys.
pub fn settings_diff(a: &Value, b: &Value) -> Vec<SettingDiff> {
    let (fa, fb) = (flatten(a), flatten(b));
    let keys: BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
    keys.into_iter()
        .filter(|k| fa.get(*k) != fb.get(*k))
        .map(|k| SettingDiff {
            key: k.clone(),
            a: fa.get(k).cloned(),
            b: fb.get(k).cloned(),
        })
        .collect()
}

/// A settings object as dotted keys, arrays walked by index (`faults[0].hold`), so that
/// every setting of the scenario (the server, the batch, the users, the duration, the gates,
/// the faults, the endpoints, the target) is compared on its own; a scalar where an object
/// was expected is kept under the name `settings_requested`, and a missing one (null) has
/// no keys.
fn flatten(value: &Value) -> BTreeMap<String, Value> {
    if value.is_null() {
        return BTreeMap::new();
    }
    crate::report::dotted_keys(value)
        .into_iter()
        .map(|(k, v)| {
            let k = if k.is_empty() {
                "settings_requested".to_owned()
            } else {
                k
            };
            (k, v)
        })
        .collect()
}

#[cfg(test)]
#[path = "compare_tests.rs"]
mod tests;
