//! The HTML rendering of a [`Report`]: one self-contained file (inline CSS, charts as inline
//! SVG, no scripts, fonts or anything else fetched), in the Markdown's order: the verdict,
//! the gates, the figures with three charts, the settings in effect, the machine, the notes.
//!
//! Every piece of text from the report goes through [`esc`]. Chart coordinates go through
//! [`coord`], so an empty time line or all-zero values draw an empty frame, never NaN.

use std::fmt::{self, Write};

use super::markdown::{self as facts, count, fixed};
use super::Report;

/// The report as one HTML page. Deterministic: the same report gives the same bytes.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    write_page(&mut out, report).expect("writing to a String cannot fail");
    out
}

const CSS: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1a202c;margin:0;background:#f7f7f5}
main{max-width:940px;margin:0 auto;padding:20px 24px 48px;background:#fff}
h1{font-size:1.5rem;margin:0 0 4px}
h2{font-size:1.2rem;border-bottom:2px solid #e2e8f0;padding-bottom:4px;margin:28px 0 10px}
h3{font-size:1rem;margin:20px 0 8px}
.verdict{border-left:10px solid;padding:12px 18px;margin:0 0 14px;border-radius:4px}
.verdict.failed{background:#fdecec;border-color:#c53030}
.verdict.passed{background:#e8f5ec;border-color:#2f855a}
.verdict .word{font-size:2rem;font-weight:800;letter-spacing:.04em}
.failed .word{color:#c53030}.passed .word{color:#2f855a}
.verdict .code{font-size:1rem;color:#4a5568;margin-left:10px}
.verdict .scenario{font-size:.95rem;color:#4a5568;font-weight:600}
.verdict ul{margin:8px 0 0;padding-left:20px}
.meta{color:#4a5568;font-size:.92rem}
table{border-collapse:collapse;margin:6px 0 10px;font-size:.9rem}
th,td{padding:3px 10px;border-bottom:1px solid #e2e8f0;text-align:left;vertical-align:top}
th{background:#f1f5f9;font-weight:600}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
td.fail{color:#c53030;font-weight:700}td.pass{color:#2f855a}
td.flag{background:#fff3cd;font-weight:700}
.warn{background:#fff3cd;border-left:4px solid #d69e2e;padding:6px 10px}
.absent{color:#718096;font-style:italic}
dl.pairs{display:grid;grid-template-columns:max-content auto;gap:2px 16px;margin:6px 0}
dl.pairs dt{color:#4a5568}dl.pairs dd{margin:0;font-variant-numeric:tabular-nums}
ul.settings{padding-left:20px}ul.settings li{margin:2px 0}ul.settings code{white-space:nowrap}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.88em}
figure{margin:10px 0 18px}
svg{display:block;width:100%;height:auto;max-width:900px;background:#fff}
svg text{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;font-size:12px;fill:#2d3748}
svg .title{font-size:14px;font-weight:600}
svg rect.fault{fill:#ed8936;fill-opacity:.16;stroke:#dd6b20;stroke-opacity:.5}
svg text.fault{fill:#c05621;font-size:11px}
.verdict.interrupted{background:#fefcbf;border-color:#b7791f}
.interrupted .word{color:#b7791f}
svg .grid{stroke:#e2e8f0;stroke-width:1}
svg .axis{stroke:#4a5568;stroke-width:1}
";

fn write_page(out: &mut String, r: &Report) -> fmt::Result {
    let word = facts::verdict_word(r);
    let class = if r.interrupted {
        "interrupted"
    } else if r.verdict.passed {
        "passed"
    } else {
        "failed"
    };
    writeln!(out, "<!DOCTYPE html>")?;
    writeln!(out, "<html lang=\"en\">")?;
    writeln!(out, "<head>")?;
    writeln!(out, "<meta charset=\"utf-8\">")?;
    writeln!(
        out,
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
    )?;
    writeln!(
        out,
        "<title>{word}: lockbench {}</title>",
        esc(&r.scenario.name)
    )?;
    writeln!(out, "<style>{CSS}</style>")?;
    writeln!(out, "</head>")?;
    writeln!(out, "<body>")?;
    writeln!(out, "<main>")?;

    let head = facts::headline(r);
    writeln!(out, "<header class=\"verdict {class}\">")?;
    writeln!(
        out,
        "<div class=\"scenario\">lockbench report: {}</div>",
        esc(&r.scenario.name)
    )?;
    writeln!(
        out,
        "<h1><span class=\"word\">{word}</span><span class=\"code\">exit code {}</span></h1>",
        r.verdict.exit_code
    )?;
    writeln!(out, "<div>{}</div>", esc(&r.verdict.summary))?;
    writeln!(out, "<ul>")?;
    writeln!(out, "<li>Lock errors: {}</li>", esc(&head.lock_errors))?;
    writeln!(
        out,
        "<li>Lost writes (audit): {}</li>",
        esc(&head.lost_writes)
    )?;
    writeln!(out, "<li>Gates failed: {}</li>", esc(&head.gates_failed))?;
    writeln!(out, "</ul>")?;
    writeln!(out, "</header>")?;
    writeln!(
        out,
        "<p class=\"meta\">Scenario <code>{}</code> (<code>{}</code>): {}<br>",
        esc(&r.scenario.name),
        esc(&r.scenario.file),
        esc(&r.scenario.description)
    )?;
    writeln!(
        out,
        "Against {} server at <code>{}</code>, started {}; lockbench {}, report schema {}.</p>",
        esc(&facts::target_words(r)),
        esc(&r.target.url),
        esc(&r.started_at),
        esc(&r.lockbench_version),
        r.schema_version
    )?;

    write_gates(out, r)?;

    writeln!(out, "<h2>Figures</h2>")?;
    write_faults(out, r)?;
    write_timeline_charts(out, r)?;
    write_requests(out, r)?;
    write_lock_errors(out, r)?;
    write_retries(out, r)?;
    write_batch(out, r)?;
    write_audit(out, r)?;
    write_target_database(out, r)?;
    write_wal(out, r)?;

    writeln!(out, "<h2>Settings in effect</h2>")?;
    write_settings(out, r)?;

    writeln!(out, "<h2>Machine</h2>")?;
    write_pairs(out, &facts::machine_lines(r))?;

    writeln!(out, "<h2>Notes</h2>")?;
    if r.notes.is_empty() {
        writeln!(out, "<p>None.</p>")?;
    } else {
        writeln!(out, "<ul>")?;
        for note in &r.notes {
            writeln!(out, "<li>{}</li>", esc(note))?;
        }
        writeln!(out, "</ul>")?;
    }

    writeln!(out, "</main>")?;
    writeln!(out, "</body>")?;
    writeln!(out, "</html>")
}

fn write_gates(out: &mut String, r: &Report) -> fmt::Result {
    writeln!(out, "<h2>Gates</h2>")?;
    if r.gates.is_empty() {
        return writeln!(out, "<p>No gates: the scenario sets none.</p>");
    }
    writeln!(
        out,
        "<table><tr><th>gate</th><th class=\"n\">limit</th><th class=\"n\">value</th><th>result</th></tr>"
    )?;
    for g in &r.gates {
        let (class, result) = if g.passed {
            ("pass", "pass")
        } else {
            ("fail", "FAIL")
        };
        writeln!(
            out,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"{class}\">{result}</td></tr>",
            esc(&g.name),
            facts::num(g.limit),
            facts::num(g.value)
        )?;
    }
    writeln!(out, "</table>")
}

fn write_timeline_charts(out: &mut String, r: &Report) -> fmt::Result {
    writeln!(out, "<h3>Over time</h3>")?;
    let xs: Vec<f64> = r.timeline.iter().map(|p| f64::from(p.t_s)).collect();
    let mut bands: Vec<(f64, f64, String)> = r
        .faults
        .iter()
        .filter_map(|f| {
            let from = f.started_s?;
            Some((from, f.ended_s.unwrap_or(from).max(from), f.kind.clone()))
        })
        .collect();
    bands.extend(
        r.restarts
            .iter()
            .map(|x| (x.t_s, x.t_s, format!("{} worker {}", x.action, x.worker))),
    );
    let series = |f: &dyn Fn(&super::TimelinePoint) -> f64| -> Vec<f64> {
        r.timeline.iter().map(f).collect()
    };
    let chart = LineChart {
        title: "Requests sent and answered, and lock errors, per second",
        xs: &xs,
        left: Axis {
            label: "requests/s",
            integer: true,
            series: vec![
                Series {
                    name: "answered/s",
                    color: BLUE,
                    values: series(&|p| p.requests as f64),
                },
                Series {
                    name: "sent/s",
                    color: GREEN,
                    values: series(&|p| p.sent as f64),
                },
            ],
        },
        right: Some(Axis {
            label: "lock errors/s",
            integer: true,
            series: if r.lock_errors.source == super::LockSource::TargetLog {
                vec![
                    Series {
                        name: "lock errors/s seen by clients (503 or lock in body)",
                        color: RED,
                        values: series(&|p| p.lock_errors as f64),
                    },
                    Series {
                        name: "lock errors/s in the app's log",
                        color: PURPLE,
                        values: series(&|p| p.server_lock_errors as f64),
                    },
                ]
            } else {
                vec![Series {
                    name: "lock errors/s seen by clients (503 or lock in body)",
                    color: RED,
                    values: series(&|p| p.lock_errors as f64),
                }]
            },
        }),
        bands: &bands,
    };
    writeln!(out, "<figure>{}</figure>", chart.svg())?;
    let chart = LineChart {
        title: "p99 latency per second, and photos processed so far",
        xs: &xs,
        left: Axis {
            label: "p99 latency, ms",
            integer: false,
            series: vec![Series {
                name: "p99 latency (ms)",
                color: PURPLE,
                values: series(&|p| p.p99_us as f64 / 1000.0),
            }],
        },
        right: Some(Axis {
            label: "photos processed",
            integer: true,
            series: vec![Series {
                name: "photos processed (cumulative)",
                color: GREEN,
                values: series(&|p| p.photos_processed as f64),
            }],
        }),
        bands: &bands,
    };
    writeln!(out, "<figure>{}</figure>", chart.svg())?;
    if r.timeline.iter().any(|p| p.wal_bytes > 0) {
        let chart = LineChart {
            title: "WAL file size (a reader that stays open keeps checkpoints from finishing)",
            xs: &xs,
            left: Axis {
                label: "WAL, MiB",
                integer: false,
                series: vec![Series {
                    name: "WAL size (MiB)",
                    color: PURPLE,
                    values: series(&|p| p.wal_bytes as f64 / 1_048_576.0),
                }],
            },
            right: None,
            bands: &bands,
        };
        writeln!(out, "<figure>{}</figure>", chart.svg())?;
    }
    Ok(())
}

fn write_requests(out: &mut String, r: &Report) -> fmt::Result {
    writeln!(out, "<h3>Requests per endpoint</h3>")?;
    writeln!(out, "<p>{}</p>", esc(&facts::users_line(r)))?;
    if r.requests.is_empty() {
        writeln!(out, "<p class=\"absent\">No requests were sent.</p>")?;
    } else {
        writeln!(out, "<table><tr><th>endpoint</th><th class=\"n\">count</th><th class=\"n\">failures</th><th class=\"n\">503</th><th class=\"n\">p50 ms</th><th class=\"n\">p95 ms</th><th class=\"n\">p99 ms</th><th class=\"n\">max ms</th><th class=\"n\">p99 from tick ms</th></tr>")?;
        for (endpoint, s) in &r.requests {
            let l = &s.latency_us;
            writeln!(
                out,
                "<tr><td><code>{}</code></td>{}{}{}{}{}{}{}{}</tr>",
                esc(endpoint),
                num_td(&count(s.count)),
                num_td(&count(s.failures)),
                num_td(&count(s.status_503)),
                num_td(&facts::ms(l.p50)),
                num_td(&facts::ms(l.p95)),
                num_td(&facts::ms(l.p99)),
                num_td(&facts::ms(l.max)),
                num_td(&facts::ms(s.latency_from_tick_us.p99))
            )?;
        }
        writeln!(out, "</table>")?;
        writeln!(out, "<p>{}</p>", esc(facts::LATENCY_NOTE))?;
    }
    writeln!(out, "<figure>{}</figure>", latency_bars(r))?;
    write_roles(out, r)
}

fn write_text_table(out: &mut String, table: &facts::TextTable) -> fmt::Result {
    write!(out, "<table><tr>")?;
    for (i, h) in table.header.iter().enumerate() {
        let class = if table.numeric.contains(&i) {
            " class=\"n\""
        } else {
            ""
        };
        write!(out, "<th{class}>{}</th>", esc(h))?;
    }
    writeln!(out, "</tr>")?;
    for row in &table.rows {
        write!(out, "<tr>")?;
        for (i, c) in row.iter().enumerate() {
            if table.numeric.contains(&i) {
                write!(out, "{}", num_td(c))?;
            } else {
                write!(out, "<td>{}</td>", esc(c))?;
            }
        }
        writeln!(out, "</tr>")?;
    }
    writeln!(out, "</table>")
}

fn write_faults(out: &mut String, r: &Report) -> fmt::Result {
    if r.faults.is_empty() && r.restarts.is_empty() {
        return Ok(());
    }
    writeln!(out, "<h3>Faults and restarts</h3>")?;
    let faults = facts::fault_table(r);
    if !faults.rows.is_empty() {
        write_text_table(out, &faults)?;
    }
    writeln!(out, "<p>{}</p>", esc(&facts::restart_line(r)))?;
    let restarts = facts::restart_table(r);
    if !restarts.rows.is_empty() {
        write_text_table(out, &restarts)?;
    }
    Ok(())
}

fn write_roles(out: &mut String, r: &Report) -> fmt::Result {
    writeln!(out, "<h3>Users per role</h3>")?;
    let table = facts::role_table(r);
    if table.rows.is_empty() {
        return writeln!(out, "<p class=\"absent\">No roles ran.</p>");
    }
    write!(out, "<table><tr>")?;
    for (i, h) in table.header.iter().enumerate() {
        let class = if i == 0 { "" } else { " class=\"n\"" };
        write!(out, "<th{class}>{}</th>", esc(h))?;
    }
    writeln!(out, "</tr>")?;
    for row in &table.rows {
        write!(out, "<tr><td>{}</td>", esc(&row[0]))?;
        for c in &row[1..] {
            write!(out, "{}", num_td(c))?;
        }
        writeln!(out, "</tr>")?;
    }
    writeln!(out, "</table>")?;
    writeln!(out, "<p>{}</p>", esc(facts::ROLE_NOTE))
}

fn write_target_database(out: &mut String, r: &Report) -> fmt::Result {
    let Some(lines) = facts::target_database_lines(r) else {
        return Ok(());
    };
    writeln!(out, "<h3>The app's database (read-only)</h3>")?;
    write_pairs(out, &lines)
}

fn write_lock_errors(out: &mut String, r: &Report) -> fmt::Result {
    let le = &r.lock_errors;
    writeln!(out, "<h3>Lock errors</h3>")?;
    writeln!(out, "<p>{}</p>", esc(&facts::lock_error_origin(r)))?;
    for (title, map) in [("SQLite code", &le.by_code), ("endpoint", &le.by_endpoint)] {
        if map.is_empty() {
            writeln!(
                out,
                "<p>By {title}: <span class=\"absent\">{}</span>.</p>",
                esc(&facts::by_map_absent(r))
            )?;
            continue;
        }
        writeln!(
            out,
            "<table><tr><th>{title}</th><th class=\"n\">lock errors</th></tr>"
        )?;
        for (key, n) in map {
            writeln!(
                out,
                "<tr><td><code>{}</code></td>{}</tr>",
                esc(key),
                num_td(&count(*n))
            )?;
        }
        writeln!(out, "</table>")?;
    }
    Ok(())
}

fn write_retries(out: &mut String, r: &Report) -> fmt::Result {
    writeln!(out, "<h3>Retries and commit-only drops</h3>")?;
    let (retries, dropped) = facts::retry_lines(r);
    write_pairs(
        out,
        &[
            ("Server-side retries", retries),
            (
                "Commit-only drops (writes reported saved after their rollback)",
                dropped,
            ),
        ],
    )
}

fn write_batch(out: &mut String, r: &Report) -> fmt::Result {
    writeln!(out, "<h3>Batch</h3>")?;
    match facts::batch_lines(r) {
        Ok(lines) => write_pairs(out, &lines),
        Err(reason) => absent(out, &reason),
    }
}

fn write_audit(out: &mut String, r: &Report) -> fmt::Result {
    writeln!(out, "<h3>Audit</h3>")?;
    let Some(a) = &r.audit else {
        return absent(out, &facts::audit_absent(r));
    };
    let mut lines = facts::audit_lines(r, a);
    lines.push((
        "Counter mismatches",
        if a.counter_mismatches.is_empty() {
            "none".to_owned()
        } else {
            count(a.counter_mismatches.len() as u64)
        },
    ));
    write_pairs(out, &lines)?;
    if !a.counter_mismatches.is_empty() {
        writeln!(out, "<ul>")?;
        for m in &a.counter_mismatches {
            writeln!(out, "<li>{}</li>", esc(m))?;
        }
        writeln!(out, "</ul>")?;
    }
    Ok(())
}

fn write_wal(out: &mut String, r: &Report) -> fmt::Result {
    writeln!(out, "<h3>WAL</h3>")?;
    match facts::wal_lines(r) {
        Ok(lines) => write_pairs(out, &lines),
        Err(reason) => absent(out, &reason),
    }
}

fn write_settings(out: &mut String, r: &Report) -> fmt::Result {
    writeln!(out, "<h3>Requested</h3>")?;
    let sections = facts::settings_sections(&r.settings_requested);
    if sections.is_empty() {
        writeln!(out, "<p class=\"absent\">Not recorded.</p>")?;
    } else {
        writeln!(out, "<ul class=\"settings\">")?;
        for s in &sections {
            let pairs: Vec<String> = s
                .entries
                .iter()
                .map(|(k, v)| format!("<code>{} = {}</code>", esc(k), esc(v)))
                .collect();
            match &s.name {
                Some(name) => writeln!(
                    out,
                    "<li><strong>{}</strong>: {}</li>",
                    esc(name),
                    pairs.join(", ")
                )?,
                None => writeln!(out, "<li>{}</li>", pairs.join(", "))?,
            }
        }
        writeln!(out, "</ul>")?;
    }

    writeln!(out, "<h3>Effective, per connection</h3>")?;
    let Some(workers) = &r.settings_effective else {
        return absent(out, &facts::effective_absent(r));
    };
    let table = facts::connection_table(workers);
    if table.rows.is_empty() {
        return absent(
            out,
            "no connection was reported (the workers had opened none)",
        );
    }
    writeln!(out, "<table><tr><th class=\"n\">worker</th><th class=\"n\">conn id</th><th>role</th><th>journal_mode</th><th class=\"n\">busy_timeout_ms</th><th>synchronous</th><th>read_only</th></tr>")?;
    for row in &table.rows {
        let timeout = if row.odd_timeout {
            format!(
                "<td class=\"n flag\">{} &#9888; differs</td>",
                esc(&row.busy_timeout_ms)
            )
        } else {
            num_td(&row.busy_timeout_ms)
        };
        writeln!(
            out,
            "<tr>{}{}<td>{}</td><td>{}</td>{timeout}<td>{}</td><td>{}</td></tr>",
            num_td(&format!("{} (pid {})", row.worker, row.pid)),
            num_td(&row.id),
            esc(&row.role),
            esc(&row.journal_mode),
            esc(&row.synchronous),
            esc(&row.read_only)
        )?;
    }
    writeln!(out, "</table>")?;
    if let Some(warning) = &table.timeout_warning {
        writeln!(out, "<p class=\"warn\">&#9888; {}</p>", esc(warning))?;
    }
    Ok(())
}

fn write_pairs<S: AsRef<str>>(out: &mut String, pairs: &[(&str, S)]) -> fmt::Result {
    writeln!(out, "<dl class=\"pairs\">")?;
    for (name, value) in pairs {
        writeln!(
            out,
            "<dt>{}</dt><dd>{}</dd>",
            esc(name),
            esc(value.as_ref())
        )?;
    }
    writeln!(out, "</dl>")
}

fn absent(out: &mut String, reason: &str) -> fmt::Result {
    writeln!(
        out,
        "<p class=\"absent\">{}.</p>",
        esc(&capitalised(reason))
    )
}

fn num_td(s: &str) -> String {
    format!("<td class=\"n\">{}</td>", esc(s))
}

fn capitalised(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Charts: hand-written SVG.

const BLUE: &str = "#2b6cb0";
const RED: &str = "#c53030";
const PURPLE: &str = "#6b46c1";
const GREEN: &str = "#2f855a";
const BAR_COLORS: [&str; 3] = ["#9ecae1", "#4292c6", "#08306b"];

const WIDTH: f64 = 900.0;

/// A coordinate for SVG: one decimal, and 0 for anything not finite.
fn coord(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.1}")
    } else {
        "0".to_owned()
    }
}

/// Ticks from 0 to a round top at or above `max`: 1, 2 or 5 times a power of ten apart,
/// about five of them; whole steps for counts.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Scale {
    step: f64,
    top: f64,
}

impl Scale {
    fn zero_to(max: f64, integer: bool) -> Scale {
        Scale::zero_to_in(max, integer, 5.0)
    }

    /// As [`Scale::zero_to`], with about `intervals` steps.
    fn zero_to_in(max: f64, integer: bool, intervals: f64) -> Scale {
        let max = if max.is_finite() && max > 0.0 {
            max
        } else {
            0.0
        };
        let raw = max / intervals;
        let mut step = if raw > 0.0 {
            let magnitude = 10f64.powf(raw.log10().floor());
            let mantissa = raw / magnitude;
            let nice = if mantissa <= 1.0 {
                1.0
            } else if mantissa <= 2.0 {
                2.0
            } else if mantissa <= 5.0 {
                5.0
            } else {
                10.0
            };
            nice * magnitude
        } else {
            1.0
        };
        if integer && step < 1.0 {
            step = 1.0;
        }
        let top = ((max / step).ceil() * step).max(step);
        Scale { step, top }
    }

    fn ticks(self) -> Vec<f64> {
        let n = (self.top / self.step).round() as usize;
        (0..=n).map(|i| i as f64 * self.step).collect()
    }

    /// `value` as a fraction of the axis, 0 to 1.
    fn frac(self, value: f64) -> f64 {
        if self.top > 0.0 && value.is_finite() {
            (value / self.top).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    fn label(self, value: f64) -> String {
        let decimals = if self.step >= 1.0 {
            0
        } else {
            (-self.step.log10()).ceil().clamp(0.0, 3.0) as usize
        };
        fixed(value, decimals)
    }
}

struct Series<'a> {
    name: &'a str,
    color: &'a str,
    values: Vec<f64>,
}

struct Axis<'a> {
    label: &'a str,
    integer: bool,
    series: Vec<Series<'a>>,
}

impl Axis<'_> {
    fn scale(&self) -> Scale {
        let max = self
            .series
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max);
        Scale::zero_to(max, self.integer)
    }

    /// The colour of the axis's labels: its series' when it has only one.
    fn color(&self) -> &str {
        match self.series.as_slice() {
            [only] => only.color,
            _ => "#2d3748",
        }
    }
}

/// A line chart over the time line, with a left axis and an optional right one.
struct LineChart<'a> {
    title: &'a str,
    xs: &'a [f64],
    left: Axis<'a>,
    right: Option<Axis<'a>>,
    /// Shaded spans (faults) and marks (restarts): (from s, to s, label).
    bands: &'a [(f64, f64, String)],
}

impl LineChart<'_> {
    fn svg(&self) -> String {
        let height = 320.0;
        let (left, right) = (70.0, if self.right.is_some() { 70.0 } else { 24.0 });
        let (top, bottom) = (56.0, height - 46.0);
        let plot_w = WIDTH - left - right;
        let plot_h = bottom - top;

        let mut s = String::new();
        svg_open(&mut s, height, self.title);
        svg_title(&mut s, self.title);
        let all_series: Vec<&Series> = self
            .left
            .series
            .iter()
            .chain(self.right.iter().flat_map(|a| a.series.iter()))
            .collect();
        legend(
            &mut s,
            left,
            38.0,
            all_series.iter().map(|x| (x.name, x.color, false)),
        );

        // Frame and x axis.
        let _ = write!(
            s,
            "<line class=\"axis\" x1=\"{l}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\"/><line class=\"axis\" x1=\"{l}\" y1=\"{t}\" x2=\"{l}\" y2=\"{b}\"/>",
            l = coord(left),
            r = coord(left + plot_w),
            t = coord(top),
            b = coord(bottom)
        );
        if self.right.is_some() {
            let _ = write!(
                s,
                "<line class=\"axis\" x1=\"{r}\" y1=\"{t}\" x2=\"{r}\" y2=\"{b}\"/>",
                r = coord(left + plot_w),
                t = coord(top),
                b = coord(bottom)
            );
        }
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">seconds since the load started</text>",
            coord(left + plot_w / 2.0),
            coord(height - 8.0)
        );

        // Y axes: grid lines from the left one.
        let left_scale = self.left.scale();
        for tick in left_scale.ticks() {
            let y = bottom - left_scale.frac(tick) * plot_h;
            let _ = write!(
                s,
                "<line class=\"grid\" x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\" style=\"fill:{}\">{}</text>",
                coord(left),
                coord(left + plot_w),
                coord(left - 6.0),
                coord(y + 4.0),
                self.left.color(),
                left_scale.label(tick),
                y = coord(y)
            );
        }
        axis_label(&mut s, 16.0, top + plot_h / 2.0, -90.0, &self.left);
        let right_scale = self.right.as_ref().map(Axis::scale);
        if let (Some(axis), Some(scale)) = (&self.right, right_scale) {
            for tick in scale.ticks() {
                let y = bottom - scale.frac(tick) * plot_h;
                let _ = write!(
                    s,
                    "<line class=\"axis\" x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\"/><text x=\"{}\" y=\"{}\" style=\"fill:{}\">{}</text>",
                    coord(left + plot_w),
                    coord(left + plot_w + 4.0),
                    coord(left + plot_w + 7.0),
                    coord(y + 4.0),
                    axis.color(),
                    scale.label(tick),
                    y = coord(y)
                );
            }
            axis_label(&mut s, WIDTH - 14.0, top + plot_h / 2.0, 90.0, axis);
        }

        if self.xs.is_empty() {
            let _ = write!(
                s,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" style=\"fill:#718096\">no time line: the run recorded no points</text></svg>",
                coord(left + plot_w / 2.0),
                coord(top + plot_h / 2.0)
            );
            return s;
        }

        // X ticks: whole seconds.
        let x_min = self.xs.iter().copied().fold(f64::INFINITY, f64::min);
        let x_max = self.xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let span = (x_max - x_min).max(1.0);
        let x_at = |x: f64| left + ((x - x_min) / span).clamp(0.0, 1.0) * plot_w;
        for (from, to, label) in self.bands {
            let (x0, x1) = (x_at(*from), x_at(*to));
            let _ = write!(
                s,
                "<rect class=\"fault\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"><title>{}</title></rect><text class=\"fault\" x=\"{}\" y=\"{}\">{}</text>",
                coord(x0),
                coord(top),
                coord((x1 - x0).max(2.0)),
                coord(plot_h),
                esc(label),
                coord(x0 + 3.0),
                coord(top + 12.0),
                esc(label)
            );
        }
        let x_scale = Scale::zero_to_in(span, true, 10.0);
        let steps = (span / x_scale.step).floor() as usize;
        for i in 0..=steps {
            let t = x_min + i as f64 * x_scale.step;
            let x = x_at(t);
            let _ = write!(
                s,
                "<line class=\"axis\" x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\"/><text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                coord(bottom),
                coord(bottom + 4.0),
                coord(bottom + 17.0),
                fixed(t, 0),
                x = coord(x)
            );
        }

        // The lines.
        let mut axes = vec![(&self.left, left_scale)];
        if let (Some(axis), Some(scale)) = (&self.right, right_scale) {
            axes.push((axis, scale));
        }
        let dots = self.xs.len() <= 60;
        for (axis, scale) in axes {
            for series in &axis.series {
                let points: Vec<(f64, f64)> = self
                    .xs
                    .iter()
                    .zip(&series.values)
                    .map(|(&x, &v)| (x_at(x), bottom - scale.frac(v) * plot_h))
                    .collect();
                let path: Vec<String> = points
                    .iter()
                    .map(|&(x, y)| format!("{},{}", coord(x), coord(y)))
                    .collect();
                let _ = write!(
                    s,
                    "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"><title>{}</title></polyline>",
                    series.color,
                    path.join(" "),
                    esc(series.name)
                );
                if dots {
                    for (&(x, y), &v) in points.iter().zip(&series.values) {
                        let _ = write!(
                            s,
                            "<circle cx=\"{}\" cy=\"{}\" r=\"3\" fill=\"{}\"><title>{}: {}</title></circle>",
                            coord(x),
                            coord(y),
                            series.color,
                            esc(series.name),
                            scale.label(v)
                        );
                    }
                }
            }
        }
        s.push_str("</svg>");
        s
    }
}

/// p50, p95 and p99 per endpoint as grouped horizontal bars, in ms.
fn latency_bars(r: &Report) -> String {
    let title = "Latency per endpoint (ms)";
    let bar = 13.0;
    let group = 3.0 * (bar + 2.0) + 14.0;
    let longest = r
        .requests
        .keys()
        .map(|k| k.chars().count())
        .max()
        .unwrap_or(0);
    let left = (longest as f64 * 7.0 + 20.0).clamp(120.0, 340.0);
    let right = 90.0;
    let top = 56.0;
    let plot_w = WIDTH - left - right;
    let plot_h = group * r.requests.len().max(1) as f64;
    let bottom = top + plot_h;
    let height = bottom + 44.0;

    let mut s = String::new();
    svg_open(&mut s, height, title);
    svg_title(&mut s, title);
    legend(
        &mut s,
        left,
        38.0,
        ["p50", "p95", "p99"]
            .into_iter()
            .zip(BAR_COLORS)
            .map(|(name, color)| (name, color, true)),
    );
    let max = r
        .requests
        .values()
        .map(|e| e.latency_us.p99.max(e.latency_us.p95).max(e.latency_us.p50))
        .max()
        .unwrap_or(0) as f64
        / 1000.0;
    let scale = Scale::zero_to(max, false);
    for tick in scale.ticks() {
        let x = left + scale.frac(tick) * plot_w;
        let _ = write!(
            s,
            "<line class=\"grid\" x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\"/><text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            coord(top),
            coord(bottom),
            coord(bottom + 17.0),
            scale.label(tick),
            x = coord(x)
        );
    }
    let _ = write!(
        s,
        "<line class=\"axis\" x1=\"{l}\" y1=\"{t}\" x2=\"{l}\" y2=\"{b}\"/><line class=\"axis\" x1=\"{l}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\"/><text x=\"{}\" y=\"{}\" text-anchor=\"middle\">milliseconds</text>",
        coord(left + plot_w / 2.0),
        coord(height - 8.0),
        l = coord(left),
        r = coord(left + plot_w),
        t = coord(top),
        b = coord(bottom)
    );
    if r.requests.is_empty() {
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" style=\"fill:#718096\">no requests</text>",
            coord(left + plot_w / 2.0),
            coord(top + plot_h / 2.0)
        );
    }
    for (i, (endpoint, stats)) in r.requests.iter().enumerate() {
        let y0 = top + i as f64 * group + 7.0;
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            coord(left - 8.0),
            coord(y0 + 1.5 * (bar + 2.0) + 4.0),
            esc(endpoint)
        );
        let l = &stats.latency_us;
        for (j, (us, color)) in [l.p50, l.p95, l.p99]
            .into_iter()
            .zip(BAR_COLORS)
            .enumerate()
        {
            let y = y0 + j as f64 * (bar + 2.0);
            let w = scale.frac(us as f64 / 1000.0) * plot_w;
            let name = ["p50", "p95", "p99"][j];
            let _ = write!(
                s,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{color}\"><title>{} {name}: {} ms</title></rect><text x=\"{}\" y=\"{}\">{}</text>",
                coord(left),
                coord(y),
                coord(w),
                coord(bar),
                esc(endpoint),
                facts::ms(us),
                coord(left + w + 4.0),
                coord(y + bar - 2.0),
                facts::ms(us)
            );
        }
    }
    s.push_str("</svg>");
    s
}

fn svg_open(s: &mut String, height: f64, title: &str) {
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{}\">",
        coord(WIDTH),
        coord(height),
        esc(title)
    );
}

fn svg_title(s: &mut String, title: &str) {
    let _ = write!(
        s,
        "<text class=\"title\" x=\"{}\" y=\"20\" text-anchor=\"middle\">{}</text>",
        coord(WIDTH / 2.0),
        esc(title)
    );
}

/// Legend entries in a row from `x`: a line (or a square for bars) and the name.
fn legend<'a>(
    s: &mut String,
    x: f64,
    y: f64,
    entries: impl Iterator<Item = (&'a str, &'a str, bool)>,
) {
    let mut x = x;
    for (name, color, square) in entries {
        if square {
            let _ = write!(
                s,
                "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{color}\"/>",
                coord(x),
                coord(y - 10.0)
            );
        } else {
            let _ = write!(
                s,
                "<line x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{color}\" stroke-width=\"3\"/>",
                coord(x),
                coord(x + 18.0),
                y = coord(y - 4.0)
            );
        }
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\">{}</text>",
            coord(x + 24.0),
            coord(y),
            esc(name)
        );
        x += 24.0 + name.chars().count() as f64 * 6.8 + 22.0;
    }
}

fn axis_label(s: &mut String, x: f64, y: f64, rotate: f64, axis: &Axis) {
    let _ = write!(
        s,
        "<text x=\"{x}\" y=\"{y}\" text-anchor=\"middle\" transform=\"rotate({} {x} {y})\" style=\"fill:{}\">{}</text>",
        coord(rotate),
        axis.color(),
        esc(axis.label),
        x = coord(x),
        y = coord(y)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_are_round_and_never_empty() {
        assert_eq!(
            Scale::zero_to(0.0, true),
            Scale {
                step: 1.0,
                top: 1.0
            }
        );
        assert_eq!(Scale::zero_to(f64::NAN, false).top, 1.0);
        assert_eq!(
            Scale::zero_to(241.0, true),
            Scale {
                step: 50.0,
                top: 250.0
            }
        );
        assert_eq!(
            Scale::zero_to(23.0, true),
            Scale {
                step: 5.0,
                top: 25.0
            }
        );
        assert_eq!(
            Scale::zero_to(3.0, true),
            Scale {
                step: 1.0,
                top: 3.0
            }
        );
        let s = Scale::zero_to(0.7, false);
        assert_eq!(s.ticks().len(), 5);
        let labels: Vec<String> = s.ticks().into_iter().map(|t| s.label(t)).collect();
        assert_eq!(labels, ["0.0", "0.2", "0.4", "0.6", "0.8"]);
        assert_eq!(coord(f64::NAN), "0");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<script>a & 'b' \"c\"</script>"),
            "&lt;script&gt;a &amp; &#39;b&#39; &quot;c&quot;&lt;/script&gt;"
        );
    }
}
