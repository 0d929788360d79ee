//! The HTML rendering of a [`Report`]: one self-contained file (inline CSS, charts as inline
//! SVG, no scripts, fonts or anything else fetched), in the Markdown's order: the verdict,
//! the gates (an unknown value says why), each run of a repeated report, the figures with
//! three charts, the settings in effect, the machine, the notes.
//!
//! Every piece of text from the report goes through [`esc`]; the charts are `chart/`'s.

use std::fmt::{self, Write};

use super::chart::{latency_bars, Axis, LineChart, Series, BLUE, GREEN, PURPLE, RED};
use super::facts;
use super::format::{count, esc, num};
use super::{LockSource, Report, TimelinePoint};

/// The report as one HTML page. Deterministic: the same report gives the same bytes.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    write_page(&mut out, report).expect("writing to a String cannot fail");
    out
}

/// The reports' look: this page's, and the comparison's (`compare/html.rs`), a sweep's and
/// a breakpoint search's. A table wider than the page scrolls inside its own box.
pub(crate) const CSS: &str = "
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
table{border-collapse:collapse;margin:6px 0 10px;font-size:.9rem;display:block;max-width:100%;overflow-x:auto}
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
    write_head(out, r)?;
    write_verdict(out, r)?;
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

    write_notes(out, r)?;
    out.push_str(PAGE_END);
    Ok(())
}

/// The document up to the opening of `<main>`: its title says the verdict.
fn write_head(out: &mut String, r: &Report) -> fmt::Result {
    let word = facts::verdict_word(r);
    let title = format!("{word}: lockbench {}", r.scenario.name);
    out.push_str(&page_open(&title, ""));
    Ok(())
}

/// The verdict box (the word, the exit code, the summary and the three lines under it),
/// then the scenario and the server it ran against.
fn write_verdict(out: &mut String, r: &Report) -> fmt::Result {
    let word = facts::verdict_word(r);
    let class = if r.interrupted {
        "interrupted"
    } else if r.verdict.passed {
        "passed"
    } else {
        "failed"
    };
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
    if let Some(line) = facts::app_line(r) {
        writeln!(out, "<p class=\"meta\">{}</p>", esc(&line))?;
    }
    Ok(())
}

fn write_notes(out: &mut String, r: &Report) -> fmt::Result {
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
    Ok(())
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
            num(g.limit),
            esc(&facts::gate_value(g))
        )?;
    }
    writeln!(out, "</table>")?;
    write_runs(out, r)
}

/// A repeated run's runs, each with its own verdict, and what each table holds.
fn write_runs(out: &mut String, r: &Report) -> fmt::Result {
    let Some(table) = facts::run_table(r) else {
        return Ok(());
    };
    writeln!(out, "<h2>Runs</h2>")?;
    write_text_table(out, &table)?;
    writeln!(out, "<p>What each table below holds:</p>")?;
    writeln!(out, "<ul>")?;
    for line in facts::repeat_tables(r) {
        writeln!(out, "<li>{}</li>", esc(&line))?;
    }
    writeln!(out, "</ul>")
}

fn write_timeline_charts(out: &mut String, r: &Report) -> fmt::Result {
    writeln!(out, "<h3>Over time</h3>")?;
    let xs: Vec<f64> = r.timeline.iter().map(|p| f64::from(p.t_s)).collect();
    let bands = fault_bands(r);
    writeln!(
        out,
        "<figure>{}</figure>",
        requests_chart(r, &xs, &bands).svg()
    )?;
    writeln!(
        out,
        "<figure>{}</figure>",
        latency_chart(r, &xs, &bands).svg()
    )?;
    if r.timeline.iter().any(|p| p.wal_bytes > 0) {
        writeln!(out, "<figure>{}</figure>", wal_chart(r, &xs, &bands).svg())?;
    }
    Ok(())
}

/// The time line's shaded spans: each fault that took effect, then each restart as a mark.
fn fault_bands(r: &Report) -> Vec<(f64, f64, String)> {
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
    bands
}

/// One value per second of the time line.
fn per_second(r: &Report, f: impl Fn(&TimelinePoint) -> f64) -> Vec<f64> {
    r.timeline.iter().map(f).collect()
}

/// Requests sent and answered per second, and lock errors per second on the right (the
/// app's log's too, when that is where the total comes from).
fn requests_chart<'a>(r: &Report, xs: &'a [f64], bands: &'a [(f64, f64, String)]) -> LineChart<'a> {
    let clients = Series {
        name: "lock errors/s seen by clients (503 or lock in body)",
        color: RED,
        values: per_second(r, |p| p.lock_errors as f64),
    };
    let lock_series = if r.lock_errors.source == LockSource::TargetLog {
        vec![
            clients,
            Series {
                name: "lock errors/s in the app's log",
                color: PURPLE,
                values: per_second(r, |p| p.server_lock_errors as f64),
            },
        ]
    } else {
        vec![clients]
    };
    LineChart {
        title: "Requests sent and answered, and lock errors, per second",
        xs,
        left: Axis {
            label: "requests/s",
            integer: true,
            series: vec![
                Series {
                    name: "answered/s",
                    color: BLUE,
                    values: per_second(r, |p| p.requests as f64),
                },
                Series {
                    name: "sent/s",
                    color: GREEN,
                    values: per_second(r, |p| p.sent as f64),
                },
            ],
        },
        right: Some(Axis {
            label: "lock errors/s",
            integer: true,
            series: lock_series,
        }),
        bands,
    }
}

/// p99 latency per second, and the photos processed so far on the right.
fn latency_chart<'a>(r: &Report, xs: &'a [f64], bands: &'a [(f64, f64, String)]) -> LineChart<'a> {
    LineChart {
        title: "p99 latency per second, and photos processed so far",
        xs,
        left: Axis {
            label: "p99 latency, ms",
            integer: false,
            series: vec![Series {
                name: "p99 latency (ms)",
                color: PURPLE,
                values: per_second(r, |p| p.p99_us as f64 / 1000.0),
            }],
        },
        right: Some(Axis {
            label: "photos processed",
            integer: true,
            series: vec![Series {
                name: "photos processed (cumulative)",
                color: GREEN,
                values: per_second(r, |p| p.photos_processed as f64),
            }],
        }),
        bands,
    }
}

/// The WAL file's size over the time line.
fn wal_chart<'a>(r: &Report, xs: &'a [f64], bands: &'a [(f64, f64, String)]) -> LineChart<'a> {
    LineChart {
        title: "WAL file size (a reader that stays open keeps checkpoints from finishing)",
        xs,
        left: Axis {
            label: "WAL, MiB",
            integer: false,
            series: vec![Series {
                name: "WAL size (MiB)",
                color: PURPLE,
                values: per_second(r, |p| p.wal_bytes as f64 / 1_048_576.0),
            }],
        },
        right: None,
        bands,
    }
}

fn write_requests(out: &mut String, r: &Report) -> fmt::Result {
    writeln!(out, "<h3>Requests</h3>")?;
    writeln!(out, "<p>{}</p>", esc(&facts::users_line(r)))?;
    if let Some(cpu) = facts::load_cpu_line(r) {
        writeln!(out, "<p>{}</p>", esc(&cpu))?;
    }
    if r.requests.is_empty() {
        writeln!(out, "<p class=\"absent\">No requests were sent.</p>")?;
    } else {
        write_text_table(out, &facts::request_table(&r.requests, Some(r.load_s)))?;
        writeln!(out, "<p>{}</p>", esc(facts::LATENCY_NOTE))?;
    }
    writeln!(out, "<figure>{}</figure>", latency_bars(r))?;
    if !r.runner_requests.is_empty() {
        writeln!(out, "<h3>lockbench's own requests</h3>")?;
        write_text_table(out, &facts::request_table(&r.runner_requests, None))?;
        writeln!(out, "<p>{}</p>", esc(facts::RUNNER_NOTE))?;
    }
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
    writeln!(out, "<h3>User classes</h3>")?;
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
            (
                "Processor failures (steps that failed after their retries)",
                facts::processor_failures_line(r),
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

/// The opening of another page in this look (a sweep's, a breakpoint search's), up to
/// `<main>`, with that page's `extra` CSS after this one's.
pub(crate) fn page_open(title: &str, extra: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{CSS}{extra}</style>\n</head>\n<body>\n<main>\n",
        esc(title)
    )
}

/// The end of a page [`page_open`] began.
pub(crate) const PAGE_END: &str = "</main>\n</body>\n</html>\n";
