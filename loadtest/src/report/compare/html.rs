//! compare.html: a [`Comparison`] as one self-contained page (the run report's CSS inline,
//! no scripts, nothing fetched), deterministic, every text through [`esc`]. In order: the
//! verdict as the Markdown says it (the headline, each regression, where A and B come
//! from), the figures of both runs side by side per endpoint and server side (a regression's
//! row red, a gated figure B improved green), the settings that differ, and what identifies
//! each run. Renders; decides nothing: every word is `compare.rs`'s, as the Markdown's.

use std::fmt::{self, Write};

use super::{
    endpoint_figures, endpoints, headline, server_figures, setting_text, tolerance_words,
    FigureCells, Mark, NO_ENDPOINTS, RUN_ROWS, SETTINGS_SAME, SETTINGS_UNKNOWN,
};
use crate::report::comparison::{Comparison, Figure};
use crate::report::format::{capitalised, esc};
use crate::report::html::{page_open, PAGE_END};

/// The rows a comparison marks, on top of the run report's look.
const COMPARE_CSS: &str = "
tr.regression td{background:#fdecec}
tr.better td{background:#e8f5ec}
";

/// What the colours of the figures' rows mean.
const MARKS_NOTE: &str = "Gated figures are worse when higher: a red row is a regression past \
    the tolerance, a green one a gated figure B improved. An \"info\" figure never changes \
    the exit code.";

/// The comparison as one HTML page. Deterministic: the same comparison gives the same bytes.
pub fn render_html(c: &Comparison) -> String {
    let mut out = String::new();
    write_page(&mut out, c).expect("writing to a String cannot fail");
    out
}

fn write_page(out: &mut String, c: &Comparison) -> fmt::Result {
    write_head(out, c)?;
    write_verdict(out, c)?;

    writeln!(out, "<h2>Per endpoint</h2>")?;
    let endpoints = endpoints(c);
    if endpoints.is_empty() {
        writeln!(out, "<p class=\"absent\">{}</p>", esc(NO_ENDPOINTS))?;
    }
    for endpoint in endpoints {
        writeln!(out, "<h3><code>{}</code></h3>", esc(endpoint))?;
        write_figures(out, endpoint_figures(c, endpoint))?;
    }
    writeln!(out, "<h2>Server side</h2>")?;
    write_figures(out, server_figures(c))?;

    write_settings_diff(out, c)?;
    write_runs(out, c)?;
    out.push_str(PAGE_END);
    Ok(())
}

/// The document up to the opening of `<main>`: its title says the verdict.
fn write_head(out: &mut String, c: &Comparison) -> fmt::Result {
    let title = format!("lockbench compare: {} — {}", c.scenario, headline(c));
    out.push_str(&page_open(&title, COMPARE_CSS));
    Ok(())
}

/// The verdict box (the headline, the exit code, the tolerance, each regression), then
/// where A and B come from and what was compared.
fn write_verdict(out: &mut String, c: &Comparison) -> fmt::Result {
    let headline = capitalised(&headline(c));
    let class = if c.regressions.is_empty() {
        "passed"
    } else {
        "failed"
    };
    writeln!(out, "<header class=\"verdict {class}\">")?;
    writeln!(
        out,
        "<div class=\"scenario\">lockbench compare: {}</div>",
        esc(&c.scenario)
    )?;
    writeln!(
        out,
        "<h1><span class=\"word\">{}</span><span class=\"code\">exit code {}</span></h1>",
        esc(&headline),
        c.exit_code
    )?;
    let end = if c.regressions.is_empty() { "." } else { ":" };
    writeln!(
        out,
        "<div><strong>{}</strong> {}{end}</div>",
        esc(&headline),
        esc(&tolerance_words(c))
    )?;
    if !c.regressions.is_empty() {
        writeln!(out, "<ul>")?;
        for r in &c.regressions {
            writeln!(out, "<li>{}</li>", esc(&r.message))?;
        }
        writeln!(out, "</ul>")?;
    }
    writeln!(out, "</header>")?;
    write!(out, "<p class=\"meta\">")?;
    for (side, run) in [("A", &c.a), ("B", &c.b)] {
        let source = run
            .source
            .as_deref()
            .map(|s| format!("<code>{}</code>, ", esc(s)))
            .unwrap_or_default();
        writeln!(
            out,
            "<strong>{side}</strong>: {source}started {}<br>",
            esc(&run.started_at)
        )?;
    }
    writeln!(
        out,
        "Target kind <code>{}</code>; report schema {}; comparison schema {}.</p>",
        esc(&c.target_kind),
        c.report_schema_version,
        c.schema_version
    )?;
    writeln!(out, "<p class=\"meta\">{}</p>", esc(MARKS_NOTE))
}

/// A table of figures: figure, A, B, the change and the verdict, a row marked red or green.
fn write_figures<'a>(out: &mut String, rows: impl Iterator<Item = &'a Figure>) -> fmt::Result {
    writeln!(
        out,
        "<table><tr><th>figure</th><th class=\"n\">A</th><th class=\"n\">B</th><th class=\"n\">change</th><th class=\"n\">change %</th><th>verdict</th></tr>"
    )?;
    for f in rows {
        let cells = FigureCells::of(f);
        let (row, change, verdict) = match cells.mark {
            Mark::Regression => (" class=\"regression\"", "n fail", " class=\"fail\""),
            Mark::Better => (" class=\"better\"", "n pass", " class=\"pass\""),
            Mark::Plain => ("", "n", ""),
        };
        writeln!(
            out,
            "<tr{row}><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"{change}\">{}</td><td class=\"{change}\">{}</td><td{verdict}>{}</td></tr>",
            esc(&f.key),
            esc(&cells.a),
            esc(&cells.b),
            esc(&cells.delta),
            esc(&cells.relative),
            esc(&cells.verdict)
        )?;
    }
    writeln!(out, "</table>")
}

/// The requested settings that differ, A's value and B's, or why there are none to show.
fn write_settings_diff(out: &mut String, c: &Comparison) -> fmt::Result {
    writeln!(out, "<h2>Settings that differ</h2>")?;
    if !c.settings_recorded {
        return writeln!(out, "<p class=\"absent\">{}</p>", esc(SETTINGS_UNKNOWN));
    }
    if c.settings_diff.is_empty() {
        return writeln!(out, "<p>{}</p>", esc(SETTINGS_SAME));
    }
    writeln!(out, "<table><tr><th>setting</th><th>A</th><th>B</th></tr>")?;
    for d in &c.settings_diff {
        writeln!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            esc(&d.key),
            esc(&setting_text(d.a.as_ref())),
            esc(&setting_text(d.b.as_ref()))
        )?;
    }
    writeln!(out, "</table>")
}

/// What identifies each run: when, its own verdict, the versions, the machine, the users.
fn write_runs(out: &mut String, c: &Comparison) -> fmt::Result {
    writeln!(out, "<h2>Runs</h2>")?;
    writeln!(out, "<table><tr><th></th><th>A</th><th>B</th></tr>")?;
    for (label, cell_of) in RUN_ROWS {
        writeln!(
            out,
            "<tr><th>{}</th><td>{}</td><td>{}</td></tr>",
            esc(label),
            esc(&cell_of(&c.a)),
            esc(&cell_of(&c.b))
        )?;
    }
    writeln!(out, "</table>")
}
