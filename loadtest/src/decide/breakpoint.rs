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

/// Raises one load dimension (coarse doubling, then bisection) until a gate first fails,
/// for each configuration; every configuration is checked before the first run.
pub fn breakpoint(
    configs: &[PathBuf],
    vary: Vary,
    max: u64,
    sets: &BTreeMap<String, toml::Value>,
    out: &Path,
    server_exe: Option<PathBuf>,
) -> anyhow::Result<BreakpointReport> {
    check_range(vary, max, None)?;
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
    let mut results = Vec::new();
    let mut interrupted = false;
    // Each configuration's steps in a folder of its own, also when two share a name.
    let mut folders: Vec<String> = Vec::new();
    for (config, base) in bases {
        let mut folder = base.name.clone();
        let mut k = 2;
        while folders.contains(&folder) {
            folder = format!("{}-{k}", base.name);
            k += 1;
        }
        folders.push(folder.clone());
        let mut search = Search {
            config,
            folder,
            base: &base,
            vary,
            out,
            cache: out.join("photos"),
            server_exe: server_exe.clone(),
            steps: Vec::new(),
        };
        let (result, stopped) = search.run(max)?;
        results.push(result);
        if stopped {
            interrupted = true;
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

/// One configuration's search, and the steps it ran.
struct Search<'a> {
    config: &'a PathBuf,
    /// The folder of its steps under the output folder.
    folder: String,
    base: &'a Scenario,
    vary: Vary,
    out: &'a Path,
    cache: PathBuf,
    server_exe: Option<PathBuf>,
    steps: Vec<BreakpointStep>,
}

impl Search<'_> {
    /// The search's result, and whether an interruption stopped it (then it states no
    /// breaking point).
    fn run(&mut self, max: u64) -> anyhow::Result<(BreakpointResult, bool)> {
        let bounds = self.bounds(max)?;
        let (last_pass, first_fail, stopped) = match bounds {
            Some((pass, fail)) => (pass, fail, false),
            None => (None, None, true),
        };
        let mut steps = std::mem::take(&mut self.steps);
        steps.sort_by_key(|s| s.value);
        let failed_gate = first_fail
            .and_then(|f| steps.iter().find(|s| s.value == f))
            .and_then(|s| s.first_failed_gate.clone());
        let result = BreakpointResult {
            config: self.config.display().to_string(),
            breaking_point: last_pass,
            first_failure: first_fail,
            failed_gate,
            steps,
        };
        Ok((result, stopped))
    }

    /// The last passing and first failing values: doubling up to the first failure, then
    /// bisecting between them. None when an interruption stopped the search.
    fn bounds(&mut self, max: u64) -> anyhow::Result<Option<(Option<u64>, Option<u64>)>> {
        let mut last_pass: Option<u64> = None;
        let mut first_fail: Option<u64> = None;
        if self.vary == Vary::SyncDelayMs {
            match self.try_value(0)? {
                Some(true) => last_pass = Some(0),
                Some(false) => first_fail = Some(0),
                None => return Ok(None),
            }
        }
        let mut value = self.vary.lowest().max(1).min(max);
        while first_fail.is_none() {
            match self.try_value(value)? {
                Some(true) => {
                    last_pass = Some(value);
                    if value >= max {
                        break;
                    }
                    value = (value * 2).min(max);
                }
                Some(false) => first_fail = Some(value),
                None => return Ok(None),
            }
        }
        if let (Some(mut lo), Some(mut hi)) = (last_pass, first_fail) {
            while hi - lo > 1 && (hi - lo) * 10 > hi {
                let mid = lo + (hi - lo) / 2;
                match self.try_value(mid)? {
                    Some(true) => lo = mid,
                    Some(false) => hi = mid,
                    None => return Ok(None),
                }
            }
            return Ok(Some((Some(lo), Some(hi))));
        }
        Ok(Some((last_pass, first_fail)))
    }

    /// Runs the scenario at `value` (once: a value tried before is looked up); None when an
    /// interruption stopped the step or came before it.
    fn try_value(&mut self, value: u64) -> anyhow::Result<Option<bool>> {
        if let Some(s) = self.steps.iter().find(|s| s.value == value) {
            return Ok(Some(s.passed));
        }
        if crate::stop::interrupted() {
            return Ok(None);
        }
        let key = self.vary.key();
        let mut set = BTreeMap::new();
        set.insert(key.to_owned(), toml::Value::Integer(value as i64));
        let scenario = apply(self.base, &set)?;
        let dir = self.out.join(&self.folder).join(format!(
            "{}-{value}",
            key.rsplit('.').next().unwrap_or("value")
        ));
        crate::run::live::announce_step(format!("{}: {key} = {value}", self.config.display()));
        let outcome = run_scenario(&RunOptions {
            scenario: self.config.clone(),
            out: Some(dir.clone()),
            server_exe: self.server_exe.clone(),
            photos_cache: Some(self.cache.clone()),
            scenario_override: Some(scenario),
            ..RunOptions::default()
        })?;
        let r = &outcome.report;
        if r.interrupted {
            return Ok(None);
        }
        self.steps.push(BreakpointStep {
            value,
            passed: r.verdict.passed,
            first_failed_gate: r.gates.iter().find(|g| !g.passed).map(|g| g.name.clone()),
            lock_errors: r.lock_errors.total,
            report: dir.join("report.json").display().to_string(),
            gates: r.gates.clone(),
        });
        let word = if r.verdict.passed { "passed" } else { "FAILED" };
        eprintln!("breakpoint {}: {key}={value} {word}", self.base.name);
        Ok(Some(r.verdict.passed))
    }
}
