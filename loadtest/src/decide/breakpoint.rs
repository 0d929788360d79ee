//! `lockbench breakpoint`: raises one load dimension (doubling, then bisection) with a fresh
//! run per step until a gate first fails, for each configuration. Runs and decides; the
//! Markdown and HTML are `report/sweep.rs`'s.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::sweep::apply;
use crate::report::sweep::{breakpoint_html, breakpoint_markdown};
use crate::run::{run_scenario, RunOptions};
use crate::scenario::Scenario;

/// The load dimension a breakpoint search raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Vary {
    Pollers,
    Kiosks,
    #[value(name = "sync_delay_ms")]
    SyncDelayMs,
}

impl Vary {
    pub fn key(self) -> &'static str {
        match self {
            Vary::Pollers => "users.pollers",
            Vary::Kiosks => "users.kiosks",
            Vary::SyncDelayMs => "server.storage.sync_delay_ms",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BreakpointStep {
    pub value: u64,
    pub passed: bool,
    pub first_failed_gate: Option<String>,
    pub lock_errors: u64,
    pub report: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BreakpointResult {
    pub config: String,
    /// The highest value that still passed (None: even the lowest value failed).
    pub breaking_point: Option<u64>,
    /// The lowest value that failed (None: never failed up to --max).
    pub first_failure: Option<u64>,
    pub failed_gate: Option<String>,
    pub steps: Vec<BreakpointStep>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BreakpointReport {
    pub schema_version: u32,
    pub vary: Vary,
    pub max: u64,
    pub results: Vec<BreakpointResult>,
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
    std::fs::create_dir_all(out)?;
    let cache = out.join("photos");
    let mut results = Vec::new();
    for config in configs {
        let base = apply(&Scenario::load(config)?, sets)?;
        let name = base.name.clone();
        let mut steps: Vec<BreakpointStep> = Vec::new();
        let try_value = |value: u64, steps: &mut Vec<BreakpointStep>| -> anyhow::Result<bool> {
            if let Some(s) = steps.iter().find(|s| s.value == value) {
                return Ok(s.passed);
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
            Ok(r.verdict.passed)
        };
        let lowest = match vary {
            Vary::SyncDelayMs => 0,
            _ => 1,
        };
        let mut last_pass: Option<u64> = None;
        let mut first_fail: Option<u64> = None;
        let mut value = lowest.max(1).min(max);
        if vary == Vary::SyncDelayMs && try_value(0, &mut steps)? {
            last_pass = Some(0);
        } else if vary == Vary::SyncDelayMs {
            first_fail = Some(0);
        }
        // Coarse: double until the first failure.
        while first_fail.is_none() {
            if try_value(value, &mut steps)? {
                last_pass = Some(value);
                if value >= max {
                    break;
                }
                value = (value * 2).min(max);
            } else {
                first_fail = Some(value);
            }
        }
        // Fine: bisect between the last pass and the first failure.
        if let (Some(mut lo), Some(mut hi)) = (last_pass, first_fail) {
            while hi - lo > 1 && (hi - lo) * 10 > hi {
                let mid = lo + (hi - lo) / 2;
                if try_value(mid, &mut steps)? {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            last_pass = Some(lo);
            first_fail = Some(hi);
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
    }
    let report = BreakpointReport {
        schema_version: 1,
        vary,
        max,
        results,
    };
    std::fs::write(
        out.join("breakpoint.json"),
        serde_json::to_string_pretty(&report)? + "\n",
    )?;
    std::fs::write(out.join("breakpoint.md"), breakpoint_markdown(&report))?;
    std::fs::write(out.join("breakpoint.html"), breakpoint_html(&report))?;
    Ok(report)
}
