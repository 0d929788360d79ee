//! A sweep's results as data (`SweepReport`, one `SweepRow` per combination of settings)
//! and their Markdown and HTML: the rows' table, and charts of lock errors and p99 per row
//! through `chart/` (a breakpoint search's are `breakpoint.rs`'s). Renders finished results;
//! runs nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::scenario::Scenario;

use super::chart::series_chart;
use super::format::{cell, esc, num};

/// One finished row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepRow {
    pub label: String,
    pub set: BTreeMap<String, String>,
    pub exit_code: u8,
    pub passed: bool,
    pub lock_errors: u64,
    pub lock_errors_by_code: BTreeMap<String, u64>,
    pub client_visible_lock_errors: u64,
    pub requests: u64,
    pub error_rate: f64,
    pub retries: u64,
    pub commit_only_dropped: u64,
    pub p99_ms: BTreeMap<String, f64>,
    pub batch_seconds: Option<f64>,
    pub batch_finished: bool,
    pub lost_writes: Option<u64>,
    pub misassigned_photos: Option<u64>,
    pub gates_failed: Vec<String>,
    /// Wall time of the whole row (server start to report), seconds.
    pub wall_s: f64,
    pub report: String,
    /// SHA-256 of the row's whole scenario as it ran: an interrupted sweep reuses a finished
    /// row only when its label and its settings are both unchanged.
    #[serde(default)]
    pub settings_key: String,
    /// The faults the row applied, in words.
    #[serde(default)]
    pub faults: Vec<String>,
    /// Worker restarts during the row.
    #[serde(default)]
    pub restarts: u64,
    /// Duplicate writes the audit found.
    #[serde(default)]
    pub duplicate_writes: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepReport {
    pub schema_version: u32,
    pub name: String,
    pub description: String,
    pub base: String,
    pub rows: Vec<SweepRow>,
    /// True when Ctrl-C stopped the sweep: the rows finished so far are kept, and running
    /// the sweep again resumes it.
    #[serde(default)]
    pub interrupted: bool,
    /// The rows the sweep file asks for; `rows` holds fewer when it stopped early.
    #[serde(default)]
    pub planned_rows: usize,
    /// Why the sweep stopped before its last row when a row could not be carried out (its
    /// server would not start, its database could not be reached): the row and the error.
    /// The sweep's exit code is then 2, and its reports say it is incomplete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted: Option<SweepAbort>,
}

/// The row a sweep could not carry out, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepAbort {
    pub label: String,
    pub error: String,
}

impl SweepReport {
    /// Every planned row ran to its verdict.
    pub fn complete(&self) -> bool {
        !self.interrupted && self.aborted.is_none() && self.rows.len() == self.planned_rows
    }
}

/// The sweep's table: one row per setting combination.
pub fn sweep_markdown(r: &SweepReport) -> String {
    let endpoints: Vec<String> = r
        .rows
        .iter()
        .flat_map(|row| row.p99_ms.keys().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut s = sweep_heading(r);
    s.push_str(&table_header(&endpoints));
    for (i, row) in r.rows.iter().enumerate() {
        s.push_str(&table_row(i, row, &endpoints));
    }
    s.push_str("\nEach row is a full `lockbench run` on its own fresh database; its report is in the row's folder.\n");
    if r.interrupted {
        s.push_str("\n**Interrupted** by Ctrl-C: the rows above are the finished ones; run the same command again to resume.\n");
    }
    s
}

/// The title, the description, the base scenario and how many rows ran, and why the sweep
/// stopped early, if it did.
fn sweep_heading(r: &SweepReport) -> String {
    let mut s = format!(
        "# lockbench sweep: {}\n\n{}\n\nBase scenario: `{}`. {} of {} rows.\n\n",
        r.name,
        r.description,
        r.base,
        r.rows.len(),
        r.planned_rows.max(r.rows.len())
    );
    if let Some(abort) = &r.aborted {
        s.push_str(&format!(
            "**INCOMPLETE**: the sweep stopped at row \"{}\", which could not be carried out: {}\n\n",
            abort.label, abort.error
        ));
    } else if r.interrupted {
        s.push_str("**INTERRUPTED**: the rows below are those finished before the interruption; run the sweep again to resume.\n\n");
    }
    s
}

/// The table's header and alignment lines: a p99 column per endpoint.
fn table_header(endpoints: &[String]) -> String {
    let mut s = String::new();
    s.push_str("| # | row | gates | lock errors (server) | by code | reached clients | error rate | retries | commit-only drops |");
    for e in endpoints {
        s.push_str(&format!(" p99 ms {e} |"));
    }
    s.push_str(" batch s | lost writes | duplicates | misassigned | restarts |\n|");
    for _ in 0..(14 + endpoints.len()) {
        s.push_str(" --- |");
    }
    s.push('\n');
    s
}

/// The table's line for row `i`.
fn table_row(i: usize, row: &SweepRow, endpoints: &[String]) -> String {
    let codes: Vec<String> = row
        .lock_errors_by_code
        .iter()
        .map(|(c, n)| format!("{c}={n}"))
        .collect();
    let gates = if row.passed {
        "pass".to_owned()
    } else {
        format!("FAIL ({})", row.gates_failed.join(", "))
    };
    let mut s = format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        i + 1,
        cell(&row.label),
        cell(&gates),
        row.lock_errors,
        codes.join(" "),
        row.client_visible_lock_errors,
        num(row.error_rate),
        row.retries,
        row.commit_only_dropped
    );
    for e in endpoints {
        s.push_str(&format!(
            " {} |",
            row.p99_ms.get(e).map_or("–".into(), |v| format!("{v:.1}"))
        ));
    }
    // A batch that did not finish has no duration: the time waited is not one.
    let batch = match row.batch_seconds {
        Some(b) if row.batch_finished => format!("{b:.1}"),
        Some(b) => format!("unknown (did not finish; waited {b:.1} s)"),
        None => "no batch".into(),
    };
    s.push_str(&format!(
        " {} | {} | {} | {} | {} |\n",
        cell(&batch),
        audited(row.lost_writes),
        audited(row.duplicate_writes),
        audited(row.misassigned_photos),
        row.restarts
    ));
    s
}

/// An audit count, or why there is none.
fn audited(v: Option<u64>) -> String {
    v.map_or("not audited".into(), |n| n.to_string())
}

/// The journal/tx mode a row ran with (its series in the sweep's charts).
fn series_of(row: &SweepRow, base: &Scenario) -> String {
    let get = |key: &str, default: &str| {
        row.set
            .get(key)
            .cloned()
            .unwrap_or_else(|| default.to_owned())
    };
    let journal = get(
        "server.storage.journal_mode",
        base.server.storage.journal_mode.as_sql(),
    );
    let tx = get(
        "server.storage.tx_mode",
        &format!("{:?}", base.server.storage.tx_mode).to_lowercase(),
    );
    format!("{journal}/{tx}")
}

/// Lock-error rate and p99 against the rows (the retry settings), one series per
/// journal/tx mode, as one self-contained page.
pub fn sweep_html(r: &SweepReport, base: &Scenario) -> String {
    let series: Vec<String> = r.rows.iter().map(|row| series_of(row, base)).collect();
    let rates: Vec<f64> = r
        .rows
        .iter()
        .map(|row| {
            if row.requests == 0 {
                0.0
            } else {
                row.lock_errors as f64 / row.requests as f64
            }
        })
        .collect();
    let mut charts = series_chart(
        "Lock errors (server side) per request, by row",
        "",
        &rates,
        &series,
    );
    let endpoints: std::collections::BTreeSet<String> = r
        .rows
        .iter()
        .flat_map(|row| row.p99_ms.keys().cloned())
        .collect();
    for e in endpoints {
        let p99: Vec<f64> = r
            .rows
            .iter()
            .map(|row| row.p99_ms.get(&e).copied().unwrap_or(0.0))
            .collect();
        charts.push_str(&series_chart(
            &format!("p99 {e}, by row"),
            "ms",
            &p99,
            &series,
        ));
    }
    let legend: String = r
        .rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            format!(
                "<li>{}: {} <small>({})</small></li>",
                i + 1,
                esc(&row.label),
                esc(&series[i])
            )
        })
        .collect();
    let table = sweep_markdown(r);
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>lockbench sweep {}</title><style>body{{font-family:system-ui,sans-serif;margin:2rem}}pre{{white-space:pre-wrap}}</style></head><body><h1>lockbench sweep: {}</h1><p>{}</p>{}<h2>Rows</h2><ol style=\"list-style:none\">{}</ol><h2>Table</h2><pre>{}</pre></body></html>\n",
        esc(&r.name),
        esc(&r.name),
        esc(&r.description),
        charts,
        legend,
        esc(&table)
    )
}
