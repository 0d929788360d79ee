//! `doctor --verify`: the scenario run as the app is ("before") and with the findings' fixes
//! applied ("after"), each through `run_scenario` (so each starts a fresh app, or a fresh
//! reference server, on a fresh database), and the two side by side.
//!
//! A fix is applied through lockbench's settings: on the reference server every one is a
//! setting; on an app lockbench starts, only those its `[target.knobs]` pass on. A fix that
//! cannot be applied is listed as such; when none can, nothing runs after and the diagnosis
//! says why. The "after" run is judged by what it measured: a fix that leaves lock errors or
//! lost writes is reported as not fixed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::report::diagnosis::{Finding, RunSide, Verification};
use crate::report::Report;
use crate::run::{run_scenario, RunOptions, RunOutcome};
use crate::scenario::Scenario;

use super::DoctorOptions;

/// One run of the scenario into `<out>/<side>`.
pub(super) fn run_side(
    opts: &DoctorOptions,
    scenario: &Path,
    sets: &BTreeMap<String, toml::Value>,
    side: &str,
) -> anyhow::Result<RunOutcome> {
    let run = RunOptions {
        scenario: scenario.to_path_buf(),
        out: Some(opts.out.join(side)),
        server_exe: opts.server_exe.clone(),
        progress: opts.progress,
        sets: sets.clone(),
        ..RunOptions::default()
    };
    if opts.progress {
        eprintln!("doctor: running {} ({side})", scenario.display());
    }
    run_scenario(&run).with_context(|| format!("--verify: the {side} run"))
}

/// The files a run of the scenario left that doctor reads: the app's log and database (the
/// scenario's `[target]`, with `{run_dir}` the run's folder), or the reference server's log.
pub(super) struct Produced {
    pub logs: Vec<PathBuf>,
    pub database: Option<PathBuf>,
}

pub(super) fn evidence_of(scenario: &Scenario, out_dir: &Path) -> Produced {
    let run_dir = crate::run::run_dir(out_dir);
    match &scenario.target {
        Some(t) => {
            let fill = |p: &PathBuf| {
                PathBuf::from(
                    p.display()
                        .to_string()
                        .replace("{run_dir}", &run_dir.display().to_string()),
                )
            };
            let mut logs: Vec<PathBuf> = t.log.iter().map(fill).collect();
            let app_log = out_dir.join("app.log");
            if logs.is_empty() && app_log.is_file() {
                logs.push(app_log);
            }
            Produced {
                logs,
                database: t.database.as_ref().map(fill).filter(|p| p.is_file()),
            }
        }
        None => Produced {
            logs: vec![out_dir.join("server.log")],
            database: None,
        },
    }
}

/// The fixes' settings this scenario can apply, and those it cannot (with why).
fn applicable(
    scenario: &Scenario,
    findings: &[Finding],
) -> (BTreeMap<String, String>, Vec<String>) {
    let mut applied = BTreeMap::new();
    let mut not = Vec::new();
    for f in findings {
        if f.fix.settings.is_empty() && f.id.is_lock_problem() {
            not.push(format!(
                "{}: its fix is outside the app's settings ({})",
                f.id, f.fix.summary
            ));
        }
        for (key, value) in &f.fix.settings {
            let covered = match &scenario.target {
                None => true,
                Some(t) => key
                    .rsplit('.')
                    .next()
                    .is_some_and(|name| t.knobs.contains_key(name)),
            };
            if covered {
                applied.insert(key.clone(), value.clone());
            } else {
                not.push(format!(
                    "{}: {key} = {value:?} is not one of the app's [target.knobs]",
                    f.id
                ));
            }
        }
    }
    (applied, not)
}

fn side(report: &Report, out_dir: &Path) -> RunSide {
    RunSide {
        report: out_dir.join("report.html").display().to_string(),
        passed: report.verdict.passed,
        lock_errors: report
            .lock_errors
            .missing_workers
            .is_empty()
            .then_some(report.lock_errors.total),
        requests: report.requests.values().map(|s| s.count).sum(),
        failed_requests: report.requests.values().map(|s| s.failures).sum(),
        lost_writes: report.audit.as_ref().map(|a| a.lost_writes),
        p99_ms: report
            .requests
            .iter()
            .map(|(n, s)| (n.clone(), s.latency_us.p99 as f64 / 1000.0))
            .collect(),
    }
}

/// Runs the scenario before (unless it already ran) and after the fix; the two side by side.
pub(super) fn verify(
    opts: &DoctorOptions,
    path: &Path,
    scenario: &Scenario,
    sets: &BTreeMap<String, toml::Value>,
    findings: &[Finding],
    before: Option<RunOutcome>,
) -> anyhow::Result<Verification> {
    let (applied, not_applied) = applicable(scenario, findings);
    let before = match before {
        Some(b) => b,
        None => run_side(opts, path, sets, "before")?,
    };
    let before_side = side(&before.report, &before.out_dir);
    if applied.is_empty() {
        let sentence = if findings.iter().any(|f| f.id.is_lock_problem()) {
            "Nothing was run with a fix: no fix doctor recommends can be applied through the scenario's settings."
        } else {
            "Nothing to fix: no lock problem was found."
        };
        return Ok(Verification {
            scenario: path.display().to_string(),
            applied,
            not_applied,
            after: RunSide::default(),
            before: before_side,
            fixed: false,
            sentence: sentence.into(),
        });
    }
    let mut after_sets = sets.clone();
    for (key, value) in &applied {
        after_sets.insert(key.clone(), toml::Value::String(value.clone()));
    }
    let after = run_side(opts, path, &after_sets, "after")?;
    let after_side = side(&after.report, &after.out_dir);
    let fixed = after_side.lock_errors == Some(0) && after_side.lost_writes.unwrap_or(0) == 0;
    let settings: Vec<String> = applied
        .iter()
        .map(|(k, v)| format!("{k} = {v:?}"))
        .collect();
    let count = |s: &RunSide| {
        s.lock_errors
            .map_or("an unknown number of".to_owned(), |n| n.to_string())
    };
    let sentence = if fixed {
        format!(
            "Fixed on the app: with {} the lock errors went from {} to 0 and failed requests from {} to {}, on a fresh app and database each.",
            settings.join(", "),
            count(&before_side),
            before_side.failed_requests,
            after_side.failed_requests
        )
    } else {
        format!(
            "Not fixed: with {} the app still had {} lock errors (before: {}) and {} lost writes.",
            settings.join(", "),
            count(&after_side),
            count(&before_side),
            after_side
                .lost_writes
                .map_or("an unknown number of".to_owned(), |n| n.to_string())
        )
    };
    Ok(Verification {
        scenario: path.display().to_string(),
        applied,
        not_applied,
        before: before_side,
        after: after_side,
        fixed,
        sentence,
    })
}
