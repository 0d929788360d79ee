//! A breakpoint search's results as data (the dimension raised, each configuration's steps
//! with every gate's figure, and the value where it broke) and their Markdown and HTML: per
//! configuration the value where it broke in one sentence, the steps it ran with the figure
//! that decided, and that figure drawn against the varied dimension with the gate's limit.
//! `decide::breakpoint` runs the search and fills them; this file only reads them.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use super::chart::{Column, ColumnChart};
use super::format::{cell, esc, num};
use super::html::{page_open, PAGE_END};
use super::sweep::{report_href, PAGE_CSS};
use super::GateResult;

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
    /// The lowest value a search tries: one user, or no sync delay at all.
    pub fn lowest(self) -> u64 {
        match self {
            Vary::SyncDelayMs => 0,
            Vary::Pollers | Vary::Kiosks => 1,
        }
    }

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
    /// Every gate of the step's run, with its figure and limit (empty in reports written
    /// before they were kept).
    #[serde(default)]
    pub gates: Vec<GateResult>,
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
    /// True when an interruption stopped the search: the steps run so far are kept, and a
    /// configuration whose search did not end has no breaking point.
    #[serde(default)]
    pub interrupted: bool,
}

/// The figure that decided a configuration's search, with its limit: the gate that failed
/// first at its first failing value, else the gate closest to its limit at the highest
/// passing value. None when the steps kept no gates (reports written before they were
/// kept): their lock errors stand in.
fn deciding_gate(res: &BreakpointResult) -> Option<(String, f64)> {
    let name = match &res.failed_gate {
        Some(g) => g.clone(),
        None => {
            let step = res
                .steps
                .iter()
                .filter(|s| s.passed)
                .max_by_key(|s| s.value)?;
            // On a tie the first gate: `max_by` keeps the last of equals.
            step.gates
                .iter()
                .rev()
                .max_by(|a, b| closeness(a).total_cmp(&closeness(b)))?
                .name
                .clone()
        }
    };
    let limit = res
        .steps
        .iter()
        .flat_map(|s| &s.gates)
        .find(|g| g.name == name)?
        .limit;
    Some((name, limit))
}

/// How near a gate's figure is to its limit: the share of the limit used; unknown counts
/// as past it.
fn closeness(g: &GateResult) -> f64 {
    match g.value {
        None => f64::INFINITY,
        Some(v) if g.limit > 0.0 => v / g.limit,
        Some(v) if v > 0.0 => f64::INFINITY,
        Some(_) => 0.0,
    }
}

/// A step's figure for `gate` (its lock errors when None), or why it has none.
fn figure(step: &BreakpointStep, gate: Option<&str>) -> Result<f64, String> {
    let Some(name) = gate else {
        return Ok(step.lock_errors as f64);
    };
    match step.gates.iter().find(|g| g.name == name) {
        Some(GateResult { value: Some(v), .. }) => Ok(*v),
        Some(g) => Err(format!(
            "unknown ({})",
            g.note.as_deref().unwrap_or("not measured")
        )),
        None => Err("not recorded".into()),
    }
}

fn figure_text(v: &Result<f64, String>) -> String {
    match v {
        Ok(v) => num(*v),
        Err(why) => why.clone(),
    }
}

/// A configuration whose search an interruption stopped before it ended.
fn unfinished(r: &BreakpointReport, res: &BreakpointResult) -> bool {
    r.interrupted && res.breaking_point.is_none() && res.first_failure.is_none()
}

/// Where a configuration broke, in one sentence: the first failing value and the figure
/// that failed there against its limit, and the last passing value.
pub(crate) fn outcome(r: &BreakpointReport, res: &BreakpointResult) -> String {
    let key = r.vary.key();
    let why = |value: u64| {
        let gate = res.failed_gate.as_deref().unwrap_or("a gate");
        let step = res.steps.iter().find(|s| s.value == value);
        match (deciding_gate(res), step) {
            (Some((name, limit)), Some(step)) => format!(
                "{gate} failed: {} against a limit of {}",
                figure_text(&figure(step, Some(&name))),
                num(limit)
            ),
            _ => format!("{gate} failed"),
        }
    };
    let config = &res.config;
    if unfinished(r, res) {
        return format!(
            "{config}: the search was interrupted before it ended, so there is no breaking point."
        );
    }
    match (res.breaking_point, res.first_failure) {
        (Some(pass), Some(fail)) => format!(
            "{config}: broke at {key} = {fail}, the first failing value ({}); the last passing value is {pass}.",
            why(fail)
        ),
        (None, Some(fail)) => format!(
            "{config}: failed at the lowest value tried, {key} = {fail} ({}): no passing value.",
            why(fail)
        ),
        (Some(pass), None) => format!(
            "{config}: never broke up to --max {}: the last passing value is {pass}.",
            r.max
        ),
        (None, None) => format!("{config}: no step ran."),
    }
}

/// The figure column's heading: the deciding gate and its limit, or lock errors.
fn figure_heading(decided: &Option<(String, f64)>) -> String {
    match decided {
        Some((name, limit)) => format!("{name} (limit {})", num(*limit)),
        None => "lock errors (no gate figures kept)".into(),
    }
}

pub fn breakpoint_markdown(r: &BreakpointReport) -> String {
    let key = r.vary.key();
    let mut s = format!("# lockbench breakpoint: {key}\n\n");
    if r.interrupted {
        s.push_str("**INTERRUPTED**: the search stopped before it ended; the steps below are those finished, and a configuration whose search did not end has no breaking point.\n\n");
    }
    for res in &r.results {
        s.push_str(&format!("- {}\n", super::format::text(&outcome(r, res))));
    }
    s.push_str("\n| configuration | breaking point (highest passing) | first failure | gate that failed first | runs |\n| --- | ---: | ---: | --- | ---: |\n");
    for res in &r.results {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            cell(&res.config),
            if unfinished(r, res) {
                "unknown (interrupted)".into()
            } else {
                res.breaking_point
                    .map_or("none (the lowest value failed)".into(), |v| v.to_string())
            },
            res.first_failure
                .map_or(format!("none up to {}", r.max), |v| v.to_string()),
            res.failed_gate.clone().unwrap_or_else(|| "–".into()),
            res.steps.len()
        ));
    }
    for res in &r.results {
        let decided = deciding_gate(res);
        s.push_str(&format!(
            "\n## {}\n\n| {key} | result | first failed gate | {} | lock errors |\n| ---: | --- | --- | ---: | ---: |\n",
            res.config,
            cell(&figure_heading(&decided))
        ));
        let gate = decided.as_ref().map(|(n, _)| n.as_str());
        for st in &res.steps {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                st.value,
                if st.passed { "pass" } else { "FAIL" },
                st.first_failed_gate.clone().unwrap_or_else(|| "–".into()),
                cell(&figure_text(&figure(st, gate))),
                st.lock_errors
            ));
        }
    }
    s
}

/// The search as one self-contained page: where each configuration broke, then per
/// configuration its steps and the deciding figure against the varied dimension, the gate's
/// limit drawn across. Deterministic.
pub fn breakpoint_html(r: &BreakpointReport) -> String {
    let key = r.vary.key();
    let mut out = page_open(&format!("lockbench breakpoint {key}"), PAGE_CSS);
    let class = if r.interrupted {
        "interrupted"
    } else if r.results.iter().any(|x| x.breaking_point.is_none()) {
        "failed"
    } else {
        "passed"
    };
    let _ = write!(
        out,
        "<header class=\"verdict {class}\">\n<div class=\"scenario\">lockbench breakpoint search</div>\n<h1><span class=\"word\">{}</span><span class=\"code\">raised up to {}</span></h1>\n<ul id=\"outcomes\">",
        esc(key),
        r.max
    );
    for res in &r.results {
        let _ = write!(out, "<li>{}</li>", esc(&outcome(r, res)));
    }
    out.push_str("</ul>\n");
    if r.interrupted {
        out.push_str("<p>INTERRUPTED: the search stopped before it ended; the steps below are those finished, and a configuration whose search did not end has no breaking point.</p>\n");
    }
    out.push_str("</header>\n<p class=\"meta\">Each step is a full <code>lockbench run</code> on its own fresh database; its report is linked from its row.</p>\n");
    summary_table(&mut out, r);
    for res in &r.results {
        configuration(&mut out, r, res);
    }
    out.push_str(PAGE_END);
    out
}

/// One line per configuration: the last passing and first failing values.
fn summary_table(out: &mut String, r: &BreakpointReport) {
    out.push_str("<h2>Configurations</h2>\n<table id=\"summary\"><tr><th>configuration</th><th class=\"n\">last passing value</th><th class=\"n\">first failing value</th><th>gate that failed first</th><th class=\"n\">runs</th></tr>\n");
    for res in &r.results {
        let pass = if unfinished(r, res) {
            "unknown (interrupted)".into()
        } else {
            res.breaking_point
                .map_or("none (the lowest value failed)".into(), |v| v.to_string())
        };
        let fail = res
            .first_failure
            .map_or(format!("none up to {}", r.max), |v| v.to_string());
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
            esc(&res.config),
            esc(&pass),
            esc(&fail),
            esc(res.failed_gate.as_deref().unwrap_or("–")),
            res.steps.len()
        );
    }
    out.push_str("</table>\n");
}

/// A configuration's steps (the varied value, passed or not, the deciding figure, a link
/// to the step's report) and its chart.
fn configuration(out: &mut String, r: &BreakpointReport, res: &BreakpointResult) {
    let key = r.vary.key();
    let short = key.rsplit('.').next().unwrap_or("value");
    let decided = deciding_gate(res);
    let gate = decided.as_ref().map(|(n, _)| n.as_str());
    let _ = write!(
        out,
        "<h2>{}</h2>\n<p>{}</p>\n<table class=\"steps\"><tr><th class=\"n\">{}</th><th>result</th><th>first failed gate</th><th class=\"n\">{}</th><th class=\"n\">lock errors</th><th>report</th></tr>\n",
        esc(&res.config),
        esc(&outcome(r, res)),
        esc(key),
        esc(&figure_heading(&decided))
    );
    for st in &res.steps {
        let dir = format!("{short}-{}", st.value);
        let href = report_href(&st.report, 2, |d| d[1] == dir);
        let (class, word) = if st.passed {
            ("pass", "pass")
        } else {
            ("fail", "FAIL")
        };
        let _ = writeln!(
            out,
            "<tr><td class=\"n\">{}</td><td class=\"{class}\">{word}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td><a href=\"{}\">report</a></td></tr>",
            st.value,
            esc(st.first_failed_gate.as_deref().unwrap_or("–")),
            esc(&figure_text(&figure(st, gate))),
            st.lock_errors,
            esc(&href)
        );
    }
    out.push_str("</table>\n");
    if res.steps.is_empty() {
        return;
    }
    let columns: Vec<Column> = res
        .steps
        .iter()
        .map(|st| Column {
            label: st.value.to_string(),
            value: figure(st, gate),
            passed: st.passed,
        })
        .collect();
    let limit = decided.as_ref().map(|(_, l)| *l);
    let whole = |v: f64| v.fract() == 0.0;
    let y_label = gate.unwrap_or("lock errors");
    let chart = ColumnChart {
        title: &format!("{}: {y_label} against {key}", res.config),
        x_label: key,
        y_label,
        integer: columns
            .iter()
            .filter_map(|c| c.value.as_ref().ok().copied())
            .chain(limit)
            .all(whole),
        columns: &columns,
        limit,
        format: num,
    };
    let _ = writeln!(out, "<figure>{}</figure>", chart.svg());
}
