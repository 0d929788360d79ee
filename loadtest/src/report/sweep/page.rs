//! sweep.html: a sweep as one self-contained page in the run report's look (inline CSS and
//! SVG, no scripts, nothing fetched): the verdict first, the rows' table with a link to each
//! row's report, bar charts per row (a family whose values are all 0 is one line that says
//! so), then every other figure per row. Every piece of text goes through [`esc`].

use std::fmt::Write;

use crate::report::chart::{Group, GroupChart, BLUE, GREEN, PURPLE, RED};
use crate::report::format::{count, esc, fixed, num};
use crate::report::html::{page_open, PAGE_END};
use crate::scenario::Scenario;

use super::{
    all_requests, audited, batch_cell, by_code, failed_gates, p99_cell, report_href, stopped_early,
    verdict_sentence, Rule, SweepReport, SweepRow, PAGE_CSS,
};

/// The sweep as one self-contained page: the verdict, the rows' table with a link to each
/// row's report, bar charts per row, then every other figure per row. Deterministic.
pub fn sweep_html(r: &SweepReport, base: &Scenario) -> String {
    let rule = Rule::of(r, Some(base));
    let mut out = page_open(&format!("lockbench sweep {}", r.name), PAGE_CSS);
    html_verdict(&mut out, r, &rule);
    out.push_str("<h2>Rows</h2>\n");
    rows_table(&mut out, r, &rule);
    out.push_str("<h2>Charts</h2>\n");
    charts(&mut out, r, &rule);
    out.push_str("<h2>Every figure per row</h2>\n");
    details_table(&mut out, r, base, &rule);
    out.push_str(PAGE_END);
    out
}

/// The verdict box: the word, how many rows passed, the sentence, and why the sweep
/// stopped early when it did; then what the sweep is.
fn html_verdict(out: &mut String, r: &SweepReport, rule: &Rule) {
    let passed = r.rows.iter().filter(|row| row.passed).count();
    let stopped = stopped_early(r);
    let (class, word) = match (&stopped, &r.aborted) {
        (Some(_), Some(_)) => ("interrupted", "INCOMPLETE"),
        (Some(_), None) if r.interrupted => ("interrupted", "INTERRUPTED"),
        (Some(_), None) => ("interrupted", "INCOMPLETE"),
        (None, _) if passed == r.rows.len() => ("passed", "PASSED"),
        (None, _) => ("failed", "FAILED"),
    };
    let _ = write!(
        out,
        "<header class=\"verdict {class}\">\n<div class=\"scenario\">lockbench sweep: {}</div>\n<h1><span class=\"word\">{word}</span><span class=\"code\">{passed} of {} rows passed</span></h1>\n",
        esc(&r.name),
        r.rows.len()
    );
    // Why the sweep stopped early comes first: every figure below is of part of it.
    if let Some(why) = stopped {
        let _ = writeln!(
            out,
            "<div id=\"stopped\"><strong>{}</strong></div>",
            esc(&why)
        );
    }
    let _ = writeln!(
        out,
        "<div class=\"sentence\" id=\"verdict\">{}</div>",
        esc(&verdict_sentence(r, rule))
    );
    let _ = write!(
        out,
        "</header>\n<p class=\"meta\">{}<br>Base scenario <code>{}</code>; {} of {} rows ran. Each row is a full <code>lockbench run</code> on its own fresh database; its report is linked from its row.</p>\n",
        esc(&r.description),
        esc(&r.base),
        r.rows.len(),
        r.planned_rows.max(r.rows.len())
    );
}

/// A request's name, escaped, that may wrap after each `/` in a narrow column.
fn breakable(request: &str) -> String {
    esc(request).replace('/', "/<wbr>")
}

/// The requests whose p99 the tables and charts show first: the gated ones, else all.
fn shown_requests(r: &SweepReport, rule: &Rule) -> Vec<String> {
    if rule.gated.is_empty() {
        all_requests(r)
    } else {
        rule.gated.clone()
    }
}

/// One line per row: label (linked to its report), result, the figures the verdict weighs.
fn rows_table(out: &mut String, r: &SweepReport, rule: &Rule) {
    if r.rows.is_empty() {
        out.push_str("<p class=\"absent\">No row finished.</p>\n");
        return;
    }
    let requests = shown_requests(r, rule);
    // The row the verdict names: the best passing one, or the one closest to passing.
    let (best, word) = match rule.best(&r.rows, |row| row.passed) {
        Some(i) => (Some(i), "best"),
        None => (rule.best(&r.rows, |_| true), "closest to passing"),
    };
    out.push_str("<table id=\"rows\"><tr><th class=\"n\">#</th><th>row</th><th>result</th><th class=\"n\">lock errors</th><th class=\"n\">lost writes</th><th class=\"n\">error rate</th><th class=\"n\">retries</th>");
    for e in &requests {
        let _ = write!(out, "<th class=\"n\">p99 ms {}</th>", breakable(e));
    }
    out.push_str("<th class=\"n\">batch s</th></tr>\n");
    for (i, row) in r.rows.iter().enumerate() {
        let href = report_href(&row.report, 2, |d| d[0] == "rows");
        let (class, result) = if row.passed {
            ("pass", "pass".to_owned())
        } else {
            let gates = esc(&failed_gates(row));
            ("fail", format!("FAIL: <small>{gates}</small>"))
        };
        let mark = if best == Some(i) {
            " class=\"best\""
        } else {
            ""
        };
        let tag = if best == Some(i) {
            format!("<span class=\"tag\">{word}</span>")
        } else {
            String::new()
        };
        let _ = write!(
            out,
            "<tr{mark}><td class=\"n\">{}</td><td class=\"label\"><a href=\"{}\">{}</a></td><td class=\"{class} result\">{}{tag}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}%</td><td class=\"n\">{}</td>",
            i + 1,
            esc(&href),
            esc(&row.label),
            result,
            count(row.lock_errors),
            esc(&audited(row.lost_writes)),
            num(row.error_rate * 100.0),
            count(row.retries)
        );
        for e in &requests {
            let _ = write!(out, "<td class=\"n\">{}</td>", esc(&p99_cell(row, e)));
        }
        let _ = writeln!(out, "<td class=\"n\">{}</td></tr>", esc(&batch_cell(row)));
    }
    out.push_str("</table>\n");
}

/// The p99 chart's series, one per request.
const COLORS: [&str; 8] = [
    BLUE, RED, PURPLE, GREEN, "#d69e2e", "#319795", "#718096", "#d53f8c",
];

/// One group of bars per row, labelled with its number and label.
fn groups(r: &SweepReport, values: impl Fn(&SweepRow) -> Vec<Result<f64, String>>) -> Vec<Group> {
    r.rows
        .iter()
        .enumerate()
        .map(|(i, row)| Group {
            label: format!("#{} {}", i + 1, row.label),
            values: values(row),
        })
        .collect()
}

fn count_text(v: f64) -> String {
    count(v.round() as u64)
}

fn tenths(v: f64) -> String {
    fixed(v, 1)
}

fn percent(v: f64) -> String {
    format!("{}%", num(v))
}

/// A family of figures charted per row; its series share a unit.
struct Family {
    title: &'static str,
    axis: &'static str,
    integer: bool,
    series: &'static [(&'static str, &'static str)],
    /// Said instead of the chart when no row's value is above 0.
    zero: &'static str,
    format: fn(f64) -> String,
    values: fn(&SweepRow) -> Vec<Result<f64, String>>,
}

impl Family {
    fn html(&self, r: &SweepReport) -> String {
        let groups = groups(r, self.values);
        let chart = GroupChart {
            title: self.title,
            axis: self.axis,
            integer: self.integer,
            series: self.series,
            groups: &groups,
            format: self.format,
        };
        chart.figure_or(self.zero)
    }
}

const LOCK_ERRORS: Family = Family {
    title: "Lock errors per row",
    axis: "lock errors",
    integer: true,
    series: &[("server side", RED), ("reached clients", PURPLE)],
    zero: "No row had a lock error.",
    format: count_text,
    values: |row| {
        vec![
            Ok(row.lock_errors as f64),
            Ok(row.client_visible_lock_errors as f64),
        ]
    },
};

const AUDIT: Family = Family {
    title: "Writes lost, duplicated or misassigned per row (audit)",
    axis: "writes",
    integer: true,
    series: &[
        ("lost writes", RED),
        ("duplicate writes", PURPLE),
        ("misassigned photos", "#d69e2e"),
    ],
    zero: "No row lost, duplicated or misassigned a write.",
    format: count_text,
    values: |row| {
        [
            row.lost_writes,
            row.duplicate_writes,
            row.misassigned_photos,
        ]
        .into_iter()
        .map(|v| v.map(|n| n as f64).ok_or_else(|| "not audited".to_owned()))
        .collect()
    },
};

const ERRORS: Family = Family {
    title: "Failed requests per row (error rate)",
    axis: "% of requests",
    integer: false,
    series: &[("error rate", RED)],
    zero: "No row had a failed request.",
    format: percent,
    values: |row| vec![Ok(row.error_rate * 100.0)],
};

const RETRIES: Family = Family {
    title: "Retries and commit-only drops per row (server side)",
    axis: "units of work",
    integer: true,
    series: &[("retries", BLUE), ("commit-only drops", RED)],
    zero: "No row retried a unit of work or dropped a commit.",
    format: count_text,
    values: |row| vec![Ok(row.retries as f64), Ok(row.commit_only_dropped as f64)],
};

const BATCH: Family = Family {
    title: "Batch time per row",
    axis: "seconds",
    integer: false,
    series: &[("batch", GREEN)],
    zero: "No row's batch finished.",
    format: tenths,
    values: |row| {
        vec![match row.batch_seconds {
            Some(b) if row.batch_finished => Ok(b),
            Some(b) => Err(format!("did not finish (waited {} s)", fixed(b, 1))),
            None => Err("no batch".into()),
        }]
    },
};

/// The rows' charts: lock errors, the audit, failed requests, retries, p99 and the batch;
/// a family whose values are all 0 is one line that says so.
fn charts(out: &mut String, r: &SweepReport, rule: &Rule) {
    if r.rows.is_empty() {
        out.push_str("<p class=\"absent\">No row finished: nothing to chart.</p>\n");
        return;
    }
    for family in [LOCK_ERRORS, AUDIT, ERRORS, RETRIES] {
        out.push_str(&family.html(r));
    }
    let requests = shown_requests(r, rule);
    let series: Vec<(&str, &str)> = requests
        .iter()
        .zip(COLORS.iter().cycle())
        .map(|(e, c)| (e.as_str(), *c))
        .collect();
    let p99 = groups(r, |row| {
        requests
            .iter()
            .map(|e| {
                row.p99_ms
                    .get(e)
                    .copied()
                    .ok_or_else(|| "never answered".to_owned())
            })
            .collect()
    });
    let chart = GroupChart {
        title: if rule.gated.is_empty() {
            "p99 latency per row, every request (ms)"
        } else {
            "p99 latency per row, the gated requests (ms)"
        },
        axis: "milliseconds",
        integer: false,
        series: &series,
        groups: &p99,
        format: tenths,
    };
    out.push_str(&chart.figure_or("No request was answered in any row."));
    out.push_str(&BATCH.html(r));
}

/// Every other figure of each row: its journal/tx mode and settings, exit code, lock errors
/// by code, clients' share of them, the audit's other counts, restarts, faults, wall time,
/// and the p99 of the requests the rows table does not show.
fn details_table(out: &mut String, r: &SweepReport, base: &Scenario, rule: &Rule) {
    if r.rows.is_empty() {
        return;
    }
    let shown = shown_requests(r, rule);
    let others: Vec<String> = all_requests(r)
        .into_iter()
        .filter(|e| !shown.contains(e))
        .collect();
    out.push_str("<table id=\"details\"><tr><th class=\"n\">#</th><th>row</th><th>journal/tx</th><th>settings</th><th class=\"n\">exit code</th><th>lock errors by code</th><th class=\"n\">reached clients</th><th class=\"n\">requests</th><th class=\"n\">commit-only drops</th><th class=\"n\">duplicates</th><th class=\"n\">misassigned</th><th class=\"n\">restarts</th><th>faults</th><th class=\"n\">wall s</th>");
    for e in &others {
        let _ = write!(out, "<th class=\"n\">p99 ms {}</th>", breakable(e));
    }
    out.push_str("</tr>\n");
    for (i, row) in r.rows.iter().enumerate() {
        let settings: Vec<String> = row
            .set
            .iter()
            .map(|(k, v)| format!("<code>{} = {}</code>", esc(k), esc(v)))
            .collect();
        let faults = if row.faults.is_empty() {
            "none".to_owned()
        } else {
            row.faults.join("; ")
        };
        let codes = by_code(row);
        let _ = write!(
            out,
            "<tr><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td>",
            i + 1,
            esc(&row.label),
            esc(&mode_of(row, base)),
            settings.join("<br>"),
            row.exit_code,
            esc(if codes.is_empty() { "none" } else { &codes }),
            count(row.client_visible_lock_errors),
            count(row.requests),
            count(row.commit_only_dropped),
            esc(&audited(row.duplicate_writes)),
            esc(&audited(row.misassigned_photos)),
            count(row.restarts),
            esc(&faults),
            fixed(row.wall_s, 1)
        );
        for e in &others {
            let _ = write!(out, "<td class=\"n\">{}</td>", esc(&p99_cell(row, e)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    if r.interrupted {
        out.push_str("<p class=\"warn\">Interrupted by Ctrl-C: the rows above are the finished ones; run the same command again to resume.</p>\n");
    }
}

/// The journal/tx mode a row ran with.
fn mode_of(row: &SweepRow, base: &Scenario) -> String {
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
