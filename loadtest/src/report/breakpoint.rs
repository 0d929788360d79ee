//! A breakpoint search's results as data (the dimension raised, each configuration's steps
//! and the value where it broke) and their Markdown and HTML. `decide::breakpoint` runs the
//! search and fills them; this file only reads them.

use serde::{Deserialize, Serialize};

use super::chart::bars;
use super::format::esc;

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

pub fn breakpoint_markdown(r: &BreakpointReport) -> String {
    let key = r.vary.key();
    let mut s = format!("# lockbench breakpoint: {key}\n\n");
    if r.interrupted {
        s.push_str("**INTERRUPTED**: the search stopped before it ended; the steps below are those finished, and a configuration whose search did not end has no breaking point.\n\n");
    }
    s.push_str("| configuration | breaking point (highest passing) | first failure | gate that failed first | runs |\n| --- | ---: | ---: | --- | ---: |\n");
    for res in &r.results {
        let unfinished =
            r.interrupted && res.breaking_point.is_none() && res.first_failure.is_none();
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            res.config,
            if unfinished {
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
        s.push_str(&format!("\n## {}\n\n| {key} | result | first failed gate | lock errors |\n| ---: | --- | --- | ---: |\n", res.config));
        for st in &res.steps {
            s.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                st.value,
                if st.passed { "pass" } else { "FAIL" },
                st.first_failed_gate.clone().unwrap_or_else(|| "–".into()),
                st.lock_errors
            ));
        }
    }
    s
}

pub fn breakpoint_html(r: &BreakpointReport) -> String {
    let mut charts = String::new();
    for res in &r.results {
        let values: Vec<(String, f64)> = res
            .steps
            .iter()
            .map(|s| {
                (
                    format!(
                        "{}={} {}",
                        r.vary.key(),
                        s.value,
                        if s.passed { "pass" } else { "FAIL" }
                    ),
                    s.lock_errors as f64,
                )
            })
            .collect();
        charts.push_str(&bars(
            &format!("{}: lock errors against {}", res.config, r.vary.key()),
            "",
            &values,
            "#c0392b",
        ));
    }
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>lockbench breakpoint</title><style>body{{font-family:system-ui,sans-serif;margin:2rem}}pre{{white-space:pre-wrap}}</style></head><body><h1>lockbench breakpoint: {}</h1>{}<pre>{}</pre></body></html>\n",
        esc(r.vary.key()),
        charts,
        esc(&breakpoint_markdown(r))
    )
}
