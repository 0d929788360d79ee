//! `lockbench breakpoint`: raises one load dimension (doubling, then bisection) with a fresh
//! run per step until a gate first fails, for each configuration. Runs and decides; the
//! Markdown and HTML are `report/sweep.rs`'s.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::report::breakpoint::{breakpoint_html, breakpoint_markdown};
pub use crate::report::breakpoint::{BreakpointReport, BreakpointResult, BreakpointStep, Vary};
use crate::run::{run_scenario, RunOptions};
use crate::scenario::apply;
use crate::scenario::Scenario;

/// Checks a search before it runs: `max` at or above the dimension's lowest value, and a
/// `--require` the search can reach.
pub fn check_range(vary: Vary, max: u64, require: Option<u64>) -> anyhow::Result<()> {
    if max < vary.lowest() {
        anyhow::bail!(
            "--max {max}: below the lowest value of {} ({}); nothing would be tried",
            vary.key(),
            vary.lowest()
        );
    }
    if let Some(need) = require {
        if need > max {
            anyhow::bail!(
                "--require {need}: above --max {max}; the search never tries {need}, so it could not say whether it passes"
            );
        }
    }
    Ok(())
}

/// Raises one load dimension (coarse doubling, then bisection) until a gate first fails.
pub fn breakpoint(
    configs: &[PathBuf],
    vary: Vary,
    max: u64,
    sets: &BTreeMap<String, toml::Value>,
    out: &Path,
    server_exe: Option<PathBuf>,
) -> anyhow::Result<BreakpointReport> {
    check_range(vary, max, None)?;
    // Every configuration is checked before the first run.
    let mut bases = Vec::new();
    for config in configs {
        let base = apply(&Scenario::load(config)?, sets)?;
        let mut set = BTreeMap::new();
        set.insert(vary.key().to_owned(), toml::Value::Integer(max as i64));
        apply(&base, &set)
            .with_context(|| format!("{} at {}={max}", config.display(), vary.key()))?;
        bases.push((config, base));
    }
    std::fs::create_dir_all(out)?;
    let cache = out.join("photos");
    let mut results = Vec::new();
    let mut interrupted = false;
    for (config, base) in bases {
        let name = base.name.clone();
        let mut steps: Vec<BreakpointStep> = Vec::new();
        // None: an interruption stopped the step (or came before it).
        let try_value =
            |value: u64, steps: &mut Vec<BreakpointStep>| -> anyhow::Result<Option<bool>> {
                if let Some(s) = steps.iter().find(|s| s.value == value) {
                    return Ok(Some(s.passed));
                }
                if crate::stop::interrupted() {
                    return Ok(None);
                }
                let mut set = BTreeMap::new();
                set.insert(vary.key().to_owned(), toml::Value::Integer(value as i64));
                let scenario = apply(&base, &set)?;
                let dir = out.join(&name).join(format!(
                    "{}-{value}",
                    vary.key().rsplit('.').next().unwrap_or("value")
                ));
                let outcome = run_scenario(&RunOptions {
                    scenario: config.clone(),
                    out: Some(dir.clone()),
                    server_exe: server_exe.clone(),
                    photos_cache: Some(cache.clone()),
                    scenario_override: Some(scenario),
                    ..RunOptions::default()
                })?;
                let r = &outcome.report;
                if r.interrupted {
                    return Ok(None);
                }
                steps.push(BreakpointStep {
                    value,
                    passed: r.verdict.passed,
                    first_failed_gate: r.gates.iter().find(|g| !g.passed).map(|g| g.name.clone()),
                    lock_errors: r.lock_errors.total,
                    report: dir.join("report.json").display().to_string(),
                });
                eprintln!(
                    "breakpoint {name}: {}={value} {}",
                    vary.key(),
                    if r.verdict.passed { "passed" } else { "FAILED" }
                );
                Ok(Some(r.verdict.passed))
            };
        let mut last_pass: Option<u64> = None;
        let mut first_fail: Option<u64> = None;
        let mut stopped = false;
        let mut value = vary.lowest().max(1).min(max);
        if vary == Vary::SyncDelayMs {
            match try_value(0, &mut steps)? {
                Some(true) => last_pass = Some(0),
                Some(false) => first_fail = Some(0),
                None => stopped = true,
            }
        }
        // Coarse: double until the first failure.
        while first_fail.is_none() && !stopped {
            match try_value(value, &mut steps)? {
                Some(true) => {
                    last_pass = Some(value);
                    if value >= max {
                        break;
                    }
                    value = (value * 2).min(max);
                }
                Some(false) => first_fail = Some(value),
                None => stopped = true,
            }
        }
        // Fine: bisect between the last pass and the first failure.
        if let (Some(mut lo), Some(mut hi), false) = (last_pass, first_fail, stopped) {
            while hi - lo > 1 && (hi - lo) * 10 > hi {
                let mid = lo + (hi - lo) / 2;
                match try_value(mid, &mut steps)? {
                    Some(true) => lo = mid,
                    Some(false) => hi = mid,
                    None => {
                        stopped = true;
                        break;
                    }
                }
            }
            last_pass = Some(lo);
            first_fail = Some(hi);
        }
        if stopped {
            // An unfinished search has no breaking point to state.
            interrupted = true;
            last_pass = None;
            first_fail = None;
        }
        steps.sort_by_key(|s| s.value);
        let failed_gate = first_fail
            .and_then(|f| steps.iter().find(|s| s.value == f))
            .and_then(|s| s.first_failed_gate.clone());
        results.push(BreakpointResult {
            config: config.display().to_string(),
            breaking_point: last_pass,
            first_failure: first_fail,
            failed_gate,
            steps,
        });
        if interrupted {
            break;
        }
    }
    let report = BreakpointReport {
        schema_version: 1,
        vary,
        max,
        results,
        interrupted,
    };
    std::fs::write(
        out.join("breakpoint.json"),
        serde_json::to_string_pretty(&report)? + "\n",
    )?;
    std::fs::write(out.join("breakpoint.md"), breakpoint_markdown(&report))?;
    std::fs::write(out.join("breakpoint.html"), breakpoint_html(&report))?;
    Ok(report)
}
