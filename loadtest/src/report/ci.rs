//! What CI systems read from lockbench besides the exit code: JUnit XML (`--junit FILE`, one
//! test case per gate, per sweep row or per compared figure; with `run --repeat`, one more
//! per run), GitHub's step summary (when
//! `GITHUB_STEP_SUMMARY` is set, the verdict and the gate table are appended to it), and
//! where a report came from (the git commit of the project under test, the machine's load).
//! Writes what CI reads from finished results; decides no verdict of its own.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestRerun, TestSuite};

use super::comparison::Comparison;
use super::format::num;
use super::sweep::SweepReport;
use crate::report::{GateResult, Report, RunVerdict};

/// The environment variable GitHub Actions points at the job's summary file.
pub const STEP_SUMMARY_ENV: &str = "GITHUB_STEP_SUMMARY";

fn case(name: &str, classname: &str, failure: Option<String>) -> TestCase {
    let status = match failure {
        None => TestCaseStatus::success(),
        Some(message) => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(message.clone());
            s.set_description(message);
            s
        }
    };
    let mut case = TestCase::new(name, status);
    case.set_classname(classname);
    case
}

/// A gate's value in a message: "5", "5 (at least: ...)", "unknown (the batch did not
/// finish: ...)".
fn gate_value(g: &GateResult) -> String {
    match (g.value, &g.note) {
        (Some(v), None) => num(v),
        (Some(v), Some(note)) => format!("{} ({note})", num(v)),
        (None, Some(note)) => format!("unknown ({note})"),
        (None, None) => "unknown".to_owned(),
    }
}

/// One test case per gate of a run (a run without gates: one for its verdict); a failing
/// gate names its figure, its value (or why it is unknown) and its limit.
///
/// With `run --repeat`, the gates are the combined report's, and each run has a test case
/// of its own ("run 3"): a failure when the run failed a correctness gate, a timing gate
/// the combined medians fail too, or finished no batch; a success with a flaky failure
/// (`<flakyFailure>`) when it failed only timing gates the medians pass. Flaky rather than
/// failed because the exit code is the combined verdict's: a red case under exit code 0
/// would contradict it, and a green one would hide the run.
pub fn junit_for_report(report: &Report) -> quick_junit::Report {
    let name = format!("lockbench run {}", report.scenario.name);
    let class = format!("lockbench.run.{}", report.scenario.name);
    let mut suite = TestSuite::new(name.as_str());
    for g in &report.gates {
        let failure =
            (!g.passed).then(|| format!("{}: {}, limit {}", g.name, gate_value(g), num(g.limit)));
        suite.add_test_case(case(&g.name, &class, failure));
    }
    let unfinished = report.batch.as_ref().is_some_and(|b| !b.finished);
    if report.gates.is_empty() || report.interrupted || unfinished {
        let failure = (!report.verdict.passed).then(|| report.verdict.summary.clone());
        suite.add_test_case(case("verdict", &class, failure));
    }
    for run in report.repeat.iter().flat_map(|r| &r.verdicts) {
        suite.add_test_case(run_case(run, &class));
    }
    let mut out = quick_junit::Report::new("lockbench");
    out.add_test_suite(suite);
    out
}

/// The test case of one run of `run --repeat` (see [`junit_for_report`]).
fn run_case(run: &RunVerdict, class: &str) -> TestCase {
    let name = format!("run {}", run.run);
    let what = || {
        let failed: Vec<String> = run
            .gates
            .iter()
            .filter(|g| !g.passed)
            .map(|g| format!("{}: {}, limit {}", g.name, gate_value(g), num(g.limit)))
            .collect();
        let why = if failed.is_empty() {
            run.summary.clone()
        } else {
            failed.join("; ")
        };
        format!("{name} failed: {why} ({})", run.report)
    };
    if run.passed {
        return case(&name, class, None);
    }
    if !run.flaky {
        return case(&name, class, Some(what()));
    }
    let mut status = TestCaseStatus::success();
    let mut rerun = TestRerun::new(NonSuccessKind::Failure);
    let message = format!("{}; timing only: the combined medians pass", what());
    rerun.set_message(message.clone());
    rerun.set_description(message);
    status.add_rerun(rerun);
    let mut case = TestCase::new(name.as_str(), status);
    case.set_classname(class);
    case
}

/// One test case per sweep row; a failing row names the gates it failed.
pub fn junit_for_sweep(sweep: &SweepReport) -> quick_junit::Report {
    let class = format!("lockbench.sweep.{}", sweep.name);
    let mut suite = TestSuite::new(format!("lockbench sweep {}", sweep.name).as_str());
    for row in &sweep.rows {
        let failure = (!row.passed).then(|| {
            if row.gates_failed.is_empty() {
                format!("exit code {}", row.exit_code)
            } else {
                format!("gates failed: {}", row.gates_failed.join(", "))
            }
        });
        suite.add_test_case(case(&row.label, &class, failure));
    }
    let mut out = quick_junit::Report::new("lockbench");
    out.add_test_suite(suite);
    out
}

/// One test case per gated figure of a comparison; a regression names the figure, both
/// values and the tolerance.
pub fn junit_for_comparison(c: &Comparison) -> quick_junit::Report {
    let class = format!("lockbench.compare.{}", c.scenario);
    let mut suite = TestSuite::new(format!("lockbench compare {}", c.scenario).as_str());
    for f in c.figures.iter().filter(|f| f.gated) {
        let failure = f.regression.then(|| {
            c.regressions
                .iter()
                .find(|r| r.name == f.name)
                .map_or_else(|| format!("{} regressed", f.name), |r| r.message.clone())
        });
        suite.add_test_case(case(&f.name, &class, failure));
    }
    let mut out = quick_junit::Report::new("lockbench");
    out.add_test_suite(suite);
    out
}

/// Writes JUnit XML to `path`, naming it on failure.
pub fn write_junit(path: &Path, report: &quick_junit::Report) -> anyhow::Result<()> {
    let xml = report
        .to_string()
        .map_err(|e| anyhow::anyhow!("--junit {}: {e}", path.display()))?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| {
            format!("--junit {}: creating {}", path.display(), parent.display())
        })?;
    }
    std::fs::write(path, xml).with_context(|| format!("--junit {}", path.display()))
}

/// Appends `markdown` to GitHub's step summary when `GITHUB_STEP_SUMMARY` names a file.
pub fn append_step_summary(markdown: &str) -> anyhow::Result<()> {
    let Some(path) = std::env::var_os(STEP_SUMMARY_ENV) else {
        return Ok(());
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("{STEP_SUMMARY_ENV} {}", Path::new(&path).display()))?;
    writeln!(file, "{markdown}")
        .with_context(|| format!("{STEP_SUMMARY_ENV} {}", Path::new(&path).display()))
}

/// The head of a report's Markdown: the verdict, its three lines and the gate table (up to
/// the figures), which is what a step summary shows.
pub fn verdict_and_gates(markdown: &str) -> &str {
    match markdown.find("\n## Figures") {
        Some(end) => &markdown[..end],
        None => markdown,
    }
}
