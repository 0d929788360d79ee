//! A sweep's results as data (`SweepReport`, one `SweepRow` per combination of settings),
//! the verdict worked out once (how many rows passed, and the best row by a stated [`Rule`]),
//! and the Markdown: the verdict sentence, then the rows' table. The page is `sweep/page.rs`;
//! it and a breakpoint search's page share the links to each run's report and the few
//! styles here. Renders finished results; runs nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};

use crate::scenario::Scenario;

use super::format::{cell, count, fixed, num, text};

mod page;

pub use page::sweep_html;

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

/// The rule a sweep's rows are ranked by: fewest lock errors + lost writes, then the lowest
/// p99 of the requests the scenario gates (the highest of them counts), or with no such gate
/// the highest p99 over all requests. A row whose writes were not audited ranks after the
/// rows whose were: its lost writes are unknown, not 0.
pub(crate) struct Rule {
    /// The requests with a `[gates.p99_ms]` limit; empty: every request counts.
    pub(crate) gated: Vec<String>,
    /// Whether the scenario's own gates were known, or only those the rows failed.
    scenario_known: bool,
}

impl Rule {
    /// The requests the scenario gates by p99 (`base`, when known) and those a row failed
    /// such a gate on.
    pub(crate) fn of(r: &SweepReport, base: Option<&Scenario>) -> Rule {
        let mut gated: BTreeSet<String> = base
            .map(|b| b.gates.p99_ms.keys().cloned().collect())
            .unwrap_or_default();
        for row in &r.rows {
            gated.extend(
                row.gates_failed
                    .iter()
                    .filter_map(|g| g.strip_prefix("p99_ms "))
                    .map(str::to_owned),
            );
        }
        Rule {
            gated: gated.into_iter().collect(),
            scenario_known: base.is_some(),
        }
    }

    /// The row's p99 by the rule, ms; infinite when a request it needs never answered.
    fn p99(&self, row: &SweepRow) -> f64 {
        let all: Vec<f64> = if self.gated.is_empty() {
            row.p99_ms.values().copied().collect()
        } else {
            let got: Vec<Option<f64>> = self
                .gated
                .iter()
                .map(|e| row.p99_ms.get(e).copied())
                .collect();
            if got.iter().any(Option::is_none) {
                return f64::INFINITY;
            }
            got.into_iter().flatten().collect()
        };
        if all.is_empty() {
            return f64::INFINITY;
        }
        all.into_iter().fold(0.0, f64::max)
    }

    /// The index of the best row among those `keep` accepts, by the rule; the first on a tie.
    fn best(&self, rows: &[SweepRow], keep: impl Fn(&SweepRow) -> bool) -> Option<usize> {
        let key = |row: &SweepRow| {
            let bad = row.lock_errors + row.lost_writes.unwrap_or(0);
            (row.lost_writes.is_none(), bad, self.p99(row))
        };
        rows.iter()
            .enumerate()
            .filter(|(_, row)| keep(row))
            .min_by(|(_, a), (_, b)| {
                let (ka, kb) = (key(a), key(b));
                (ka.0, ka.1).cmp(&(kb.0, kb.1)).then(ka.2.total_cmp(&kb.2))
            })
            .map(|(i, _)| i)
    }

    /// The rule in words.
    fn words(&self) -> String {
        let then = match self.gated.as_slice() {
            [] if self.scenario_known => "the lowest p99 (the highest over all requests: the scenario gates no request's p99)".to_owned(),
            [] => "the lowest p99 (the highest over all requests)".to_owned(),
            [one] => format!("the lowest p99 of {one}, the request the scenario gates"),
            many => format!(
                "the lowest p99 of the gated requests (the highest of {})",
                many.join(", ")
            ),
        };
        format!("fewest lock errors + lost writes, then {then}")
    }

    /// What the rule saw of a row: its lock errors, lost writes and p99.
    fn figures(&self, row: &SweepRow) -> String {
        let lost = row
            .lost_writes
            .map_or("lost writes not audited".into(), |n| {
                format!("{} lost writes", count(n))
            });
        let p99 = self.p99(row);
        let p99 = if p99.is_finite() {
            format!("p99 {} ms", fixed(p99, 1))
        } else {
            "no p99 (a request never answered)".into()
        };
        format!("{} lock errors, {lost}, {p99}", count(row.lock_errors))
    }
}

/// The verdict in one sentence: how many rows passed and the best passing row by the rule,
/// or, when none passed, the row closest to passing by the same rule.
pub(crate) fn verdict_sentence(r: &SweepReport, rule: &Rule) -> String {
    let n = r.rows.len();
    let passed = r.rows.iter().filter(|row| row.passed).count();
    if n == 0 {
        return "No row finished, so there is no best row.".into();
    }
    let unaudited = if r.rows.iter().any(|row| row.lost_writes.is_none()) {
        "; a row whose writes were not audited ranks last"
    } else {
        ""
    };
    let named = |i: usize| {
        let row = &r.rows[i];
        format!("row {} \"{}\" ({})", i + 1, row.label, rule.figures(row))
    };
    let rows = if n < r.planned_rows {
        format!("{n} finished rows ({} planned)", r.planned_rows)
    } else {
        format!("{n} rows")
    };
    match rule.best(&r.rows, |row| row.passed) {
        Some(i) => format!(
            "{passed} of {rows} passed their gates. The best passing row, by {}{unaudited}, is {}.",
            rule.words(),
            named(i)
        ),
        None => {
            let i = rule.best(&r.rows, |_| true).unwrap_or(0);
            format!(
                "No row passed its gates (0 of {rows}). The row closest to passing, by {}{unaudited}, is {}; it failed {}.",
                rule.words(),
                named(i),
                failed_gates(&r.rows[i])
            )
        }
    }
}

/// The gates a failing row failed, or its exit code when it names none.
fn failed_gates(row: &SweepRow) -> String {
    if row.gates_failed.is_empty() {
        format!("with exit code {}", row.exit_code)
    } else {
        row.gates_failed.join(", ")
    }
}

/// Whether the sweep stopped before its last row, and why, in words; None when complete.
fn stopped_early(r: &SweepReport) -> Option<String> {
    if let Some(abort) = &r.aborted {
        Some(format!(
            "INCOMPLETE: the sweep stopped at row \"{}\", which could not be carried out: {}",
            abort.label, abort.error
        ))
    } else if r.interrupted {
        Some("INTERRUPTED: the rows below are those finished before the interruption; run the sweep again to resume.".into())
    } else if r.rows.len() < r.planned_rows {
        Some(format!(
            "INCOMPLETE: {} of {} planned rows ran.",
            r.rows.len(),
            r.planned_rows
        ))
    } else {
        None
    }
}

/// The sweep's Markdown: the verdict sentence, then one row per setting combination. The
/// rule ranks by the p99 gates the rows' failures name; [`sweep_markdown_for`] also knows
/// the scenario's own.
pub fn sweep_markdown(r: &SweepReport) -> String {
    markdown(r, &Rule::of(r, None))
}

/// The sweep's Markdown, ranking by the base scenario's `[gates.p99_ms]` as the page does.
pub fn sweep_markdown_for(r: &SweepReport, base: &Scenario) -> String {
    markdown(r, &Rule::of(r, Some(base)))
}

fn markdown(r: &SweepReport, rule: &Rule) -> String {
    let endpoints = all_requests(r);
    let mut s = format!(
        "# lockbench sweep: {}\n\n{}\n\nBase scenario: `{}`. {} of {} rows.\n\n",
        r.name,
        r.description,
        r.base,
        r.rows.len(),
        r.planned_rows.max(r.rows.len())
    );
    if let Some(why) = stopped_early(r) {
        let (word, rest) = why.split_once(':').unwrap_or((&why, ""));
        s.push_str(&format!("**{word}**:{rest}\n\n"));
    }
    s.push_str(&format!(
        "**Verdict**: {}\n\n",
        text(&verdict_sentence(r, rule))
    ));
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

/// Every request any row sent, sorted.
fn all_requests(r: &SweepReport) -> Vec<String> {
    r.rows
        .iter()
        .flat_map(|row| row.p99_ms.keys().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The table's header and alignment lines: a p99 column per endpoint.
fn table_header(endpoints: &[String]) -> String {
    let mut s = String::new();
    s.push_str("| # | row | gates | lock errors (server) | by code | reached clients | error rate | retries | commit-only drops |");
    for e in endpoints {
        s.push_str(&format!(" p99 ms {} |", cell(e)));
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
        cell(&by_code(row)),
        row.client_visible_lock_errors,
        num(row.error_rate),
        row.retries,
        row.commit_only_dropped
    );
    for e in endpoints {
        s.push_str(&format!(" {} |", p99_cell(row, e)));
    }
    s.push_str(&format!(
        " {} | {} | {} | {} | {} |\n",
        cell(&batch_cell(row)),
        audited(row.lost_writes),
        audited(row.duplicate_writes),
        audited(row.misassigned_photos),
        row.restarts
    ));
    s
}

/// Lock errors by SQLite code: "SQLITE_BUSY=3 SQLITE_BUSY_SNAPSHOT=1".
fn by_code(row: &SweepRow) -> String {
    let codes: Vec<String> = row
        .lock_errors_by_code
        .iter()
        .map(|(c, n)| format!("{c}={n}"))
        .collect();
    codes.join(" ")
}

fn p99_cell(row: &SweepRow, endpoint: &str) -> String {
    row.p99_ms
        .get(endpoint)
        .map_or("–".into(), |v| format!("{v:.1}"))
}

/// The batch's duration; a batch that did not finish has none: the time waited is not one.
fn batch_cell(row: &SweepRow) -> String {
    match row.batch_seconds {
        Some(b) if row.batch_finished => format!("{b:.1}"),
        Some(b) => format!("unknown (did not finish; waited {b:.1} s)"),
        None => "no batch".into(),
    }
}

/// An audit count, or why there is none.
fn audited(v: Option<u64>) -> String {
    v.map_or("not audited".into(), |n| n.to_string())
}

/// A row's report.html as a link from the page: relative to the page's folder when the
/// recorded path ends in the page's own layout (the last `dirs` folders, which `fits`
/// accepts, then `report.json`), else the recorded path with `report.html` for
/// `report.json`.
pub(super) fn report_href(report: &str, dirs: usize, fits: impl Fn(&[&str]) -> bool) -> String {
    let path = Path::new(report);
    let html = if path.file_name().is_some_and(|f| f == "report.json") {
        path.with_file_name("report.html")
    } else {
        path.to_path_buf()
    };
    let parts: Vec<&str> = html
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect();
    let href = if parts.len() > dirs && fits(&parts[parts.len() - 1 - dirs..parts.len() - 1]) {
        parts[parts.len() - 1 - dirs..].join("/")
    } else {
        html.display().to_string()
    };
    href.replace('%', "%25")
        .replace('#', "%23")
        .replace('?', "%3F")
        .replace(' ', "%20")
}

/// What a sweep's and a breakpoint search's pages add to the run report's look: a wider
/// column for their wide tables, a row's label kept readable, the best row marked.
pub(super) const PAGE_CSS: &str = "main{max-width:1240px}
td.label{min-width:14em}td.result{min-width:11em}td.result small{font-size:.8rem;font-weight:400}
tr.best td{background:#f0fff4}
.tag{font-size:.8rem;background:#2f855a;color:#fff;border-radius:3px;padding:0 5px;margin-left:4px;white-space:nowrap}
.verdict .sentence{font-size:1.05rem;margin-top:6px}
a{color:#2b6cb0}
";
