//! The Markdown and JSON of a comparison: the verdict first, the settings that differ (never
//! "the same" when a report did not record them), the figures per endpoint and server side
//! (a timing excused by A's own range of repeated runs says so), and what identifies each
//! run. Renders a finished [`Comparison`]; compares nothing. The words both documents share
//! (the headline, each figure's cells, the runs' rows) are worked out here once; the HTML
//! page is `compare/html.rs`'s.

use std::fmt::{self, Write};

use serde_json::Value;

use super::comparison::{Comparison, Figure, RunInfo, Unit};
use super::format::{capitalised, cell, code, count, fixed, text};

mod html;

pub use html::render_html;

/// The versioned JSON document: the [`Comparison`] itself.
pub fn render_json(c: &Comparison) -> String {
    let mut s = serde_json::to_string_pretty(c).expect("a comparison serializes");
    s.push('\n');
    s
}

/// The Markdown document: the verdict first, then the settings that differ, the figures per
/// endpoint and server side, and what identifies each run. Deterministic.
pub fn render_markdown(c: &Comparison) -> String {
    let mut out = String::new();
    write_markdown(&mut out, c).expect("writing to a String cannot fail");
    out
}

fn write_markdown(out: &mut String, c: &Comparison) -> fmt::Result {
    write_verdict(out, c)?;
    write_settings_diff(out, c)?;
    write_endpoints(out, c)?;

    writeln!(out)?;
    writeln!(out, "## Server side")?;
    writeln!(out)?;
    write_table(out, server_figures(c))?;

    write_runs(out, c)
}

/// The title with the number of regressions, each regression, and where A and B come from.
fn write_verdict(out: &mut String, c: &Comparison) -> fmt::Result {
    let headline = headline(c);
    writeln!(
        out,
        "# lockbench compare: {} — {headline}",
        text(&c.scenario)
    )?;
    writeln!(out)?;
    let end = if c.regressions.is_empty() { "." } else { ":" };
    writeln!(
        out,
        "**{}** {}{end}",
        capitalised(&headline),
        tolerance_words(c)
    )?;
    if !c.regressions.is_empty() {
        writeln!(out)?;
        for r in &c.regressions {
            writeln!(out, "- {}", text(&r.message))?;
        }
    }
    writeln!(out)?;
    for (side, run) in [("A", &c.a), ("B", &c.b)] {
        let source = run
            .source
            .as_deref()
            .map(|s| format!("`{}`, ", code(s)))
            .unwrap_or_default();
        writeln!(
            out,
            "- **{side}**: {source}started {}",
            text(&run.started_at)
        )?;
    }
    Ok(())
}

/// The requested settings that differ, or why there are none to show.
fn write_settings_diff(out: &mut String, c: &Comparison) -> fmt::Result {
    writeln!(out)?;
    writeln!(out, "## Settings that differ")?;
    writeln!(out)?;
    if !c.settings_recorded {
        writeln!(out, "{SETTINGS_UNKNOWN}")?;
    } else if c.settings_diff.is_empty() {
        writeln!(out, "{SETTINGS_SAME}")?;
    }
    for d in &c.settings_diff {
        writeln!(
            out,
            "- {}: {} → {}",
            text(&d.key),
            text(&setting_text(d.a.as_ref())),
            text(&setting_text(d.b.as_ref()))
        )?;
    }
    Ok(())
}

/// One table of figures per endpoint.
fn write_endpoints(out: &mut String, c: &Comparison) -> fmt::Result {
    writeln!(out)?;
    writeln!(out, "## Per endpoint")?;
    let endpoints = endpoints(c);
    if endpoints.is_empty() {
        writeln!(out)?;
        writeln!(out, "{NO_ENDPOINTS}")?;
    }
    for endpoint in endpoints {
        writeln!(out)?;
        writeln!(out, "### `{}`", code(endpoint))?;
        writeln!(out)?;
        write_table(out, endpoint_figures(c, endpoint))?;
    }
    Ok(())
}

/// What identifies each run: when, its own verdict, the versions, the machine, the users.
fn write_runs(out: &mut String, c: &Comparison) -> fmt::Result {
    writeln!(out)?;
    writeln!(out, "## Runs")?;
    writeln!(out)?;
    writeln!(out, "| | A | B |")?;
    writeln!(out, "| --- | --- | --- |")?;
    for (label, cell_of) in RUN_ROWS {
        writeln!(
            out,
            "| {label} | {} | {} |",
            cell(&cell_of(&c.a)),
            cell(&cell_of(&c.b))
        )?;
    }
    Ok(())
}

fn write_table<'a>(out: &mut String, rows: impl Iterator<Item = &'a Figure>) -> fmt::Result {
    writeln!(out, "| figure | A | B | Δ | Δ % | verdict |")?;
    writeln!(out, "| --- | ---: | ---: | ---: | ---: | --- |")?;
    for f in rows {
        let cells = FigureCells::of(f);
        let verdict = if cells.mark == Mark::Regression {
            format!("**{}**", cells.verdict)
        } else {
            cells.verdict
        };
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {verdict} |",
            cell(&f.key),
            cells.a,
            cells.b,
            cells.delta,
            cells.relative
        )?;
    }
    Ok(())
}

// What the Markdown and the HTML page both say, worked out once.

/// Said under "Settings that differ" when neither report recorded its requested settings.
pub(crate) const SETTINGS_UNKNOWN: &str =
    "Unknown: neither report recorded the settings it requested.";

/// Said under "Settings that differ" when both runs requested the same scenario.
pub(crate) const SETTINGS_SAME: &str = "None: both runs requested the same scenario (server, batch, users, duration, gates, faults, endpoints, target).";

/// Said under "Per endpoint" when neither report has an endpoint.
pub(crate) const NO_ENDPOINTS: &str = "No endpoints in either report.";

/// "no regression", "1 regression", "3 regressions".
pub(crate) fn headline(c: &Comparison) -> String {
    match c.regressions.len() {
        0 => "no regression".to_owned(),
        1 => "1 regression".to_owned(),
        k => format!("{k} regressions"),
    }
}

/// What follows the headline: "past the 10% tolerance (B against A), exit code 1".
pub(crate) fn tolerance_words(c: &Comparison) -> String {
    format!(
        "past the {} tolerance (B against A), exit code {}",
        pct_text(c.tolerance),
        c.exit_code
    )
}

/// The endpoints of the per-endpoint figures, in their order.
pub(crate) fn endpoints(c: &Comparison) -> Vec<&str> {
    let mut endpoints: Vec<&str> = c
        .figures
        .iter()
        .filter_map(|f| f.endpoint.as_deref())
        .collect();
    endpoints.dedup();
    endpoints
}

/// One endpoint's figures.
pub(crate) fn endpoint_figures<'a>(
    c: &'a Comparison,
    endpoint: &'a str,
) -> impl Iterator<Item = &'a Figure> {
    c.figures
        .iter()
        .filter(move |f| f.endpoint.as_deref() == Some(endpoint))
}

/// The server-side figures (no endpoint).
pub(crate) fn server_figures(c: &Comparison) -> impl Iterator<Item = &Figure> {
    c.figures.iter().filter(|f| f.endpoint.is_none())
}

/// How a figure's row stands out: a regression, a gated figure B improved (every gated
/// figure is worse higher, so lower by a change that shows in its decimals), or neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mark {
    Regression,
    Better,
    Plain,
}

/// A figure's row as text: each side, the change, and the verdict ("REGRESSION", "ok", "ok:
/// within A's runs (…)", "n/a" for a gated figure a side lacks, "info" for the others).
pub(crate) struct FigureCells {
    pub a: String,
    pub b: String,
    pub delta: String,
    pub relative: String,
    pub verdict: String,
    pub mark: Mark,
}

impl FigureCells {
    pub(crate) fn of(f: &Figure) -> FigureCells {
        let side = |x: Option<f64>| x.map_or("—".to_owned(), |v| value_text(f.unit, v));
        let delta = f.delta.map_or("—".to_owned(), |d| delta_text(f.unit, d));
        let relative = match (f.relative_pct, f.new) {
            (_, true) => "new".to_owned(),
            (Some(p), false) => signed_pct(p),
            (None, false) => "—".to_owned(),
        };
        let verdict = match (f.gated, f.regression, f.a.is_some() && f.b.is_some()) {
            (false, _, _) => "info".to_owned(),
            (true, true, _) => "REGRESSION".to_owned(),
            (true, false, true) => match f.a_range {
                Some([lo, hi]) if f.within_a_range => format!(
                    "ok: within A's runs ({}–{})",
                    value_text(f.unit, lo),
                    value_text(f.unit, hi)
                ),
                _ => "ok".to_owned(),
            },
            (true, false, false) => "n/a".to_owned(),
        };
        let mark = if f.gated && f.regression {
            Mark::Regression
        } else if f.gated && delta.starts_with('-') {
            Mark::Better
        } else {
            Mark::Plain
        };
        FigureCells {
            a: side(f.a),
            b: side(f.b),
            delta,
            relative,
            verdict,
            mark,
        }
    }
}

type RunCell = fn(&RunInfo) -> String;

/// The rows of the runs' table: what identifies each run.
pub(crate) const RUN_ROWS: [(&str, RunCell); 7] = [
    ("started", |r| r.started_at.clone()),
    ("run verdict", |r| {
        format!("exit {}: {}", r.verdict.exit_code, r.verdict.summary)
    }),
    ("lockbench", |r| r.lockbench_version.clone()),
    ("target", |r| r.target_url.clone()),
    ("SQLite", |r| r.sqlite_version.clone().unwrap_or("—".into())),
    ("machine", |r| {
        let m = &r.machine;
        let gib = m.memory_bytes as f64 / (1u64 << 30) as f64;
        format!("{} cores, {} GiB, {}", m.cores, fixed(gib, 1), m.os)
    }),
    ("users", users_words),
];

fn users_words(r: &RunInfo) -> String {
    let u = &r.users;
    if !r.classes.is_empty() {
        return r.classes.clone();
    }
    format!(
        "{} pollers every {} ms, {} admins every {} ms, {} kiosks every {} ms",
        u.pollers,
        count(u.poll_interval_ms),
        u.admins,
        count(u.admin_interval_ms),
        u.kiosks,
        count(u.kiosk_interval_ms)
    )
}

pub(crate) fn setting_text(v: Option<&Value>) -> String {
    match v {
        None => "(absent)".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Milliseconds get a second decimal below 10 ms, and seconds a third below 1 s (a batch's
/// seconds per photo), where fewer would hide a change.
pub(crate) fn decimals(unit: Unit, x: f64) -> usize {
    match unit {
        Unit::Count => 0,
        Unit::Ms if x.abs() >= 10.0 => 1,
        Unit::Seconds if x.abs() < 1.0 => 3,
        Unit::Ms | Unit::Percent | Unit::Seconds | Unit::PerSecond => 2,
    }
}

pub(crate) fn value_text(unit: Unit, v: f64) -> String {
    fixed(v, decimals(unit, v))
}

pub(crate) fn delta_text(unit: Unit, d: f64) -> String {
    let s = fixed(d, decimals(unit, d));
    if s.starts_with('-')
        || s.chars()
            .all(|c| !c.is_ascii_digit() || c == '0' || c == '.')
    {
        s
    } else {
        format!("+{s}")
    }
}

pub(crate) fn signed_pct(p: f64) -> String {
    let s = fixed(p, 1);
    if s.starts_with('-') || s == "0.0" {
        format!("{s}%")
    } else {
        format!("+{s}%")
    }
}

/// A tolerance as a percentage, trailing zeros dropped: 0.1 → "10%", 0.025 → "2.5%".
pub(crate) fn pct_text(fraction: f64) -> String {
    let s = format!("{:.2}", fraction * 100.0);
    format!("{}%", s.trim_end_matches('0').trim_end_matches('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_and_percentages_carry_their_sign() {
        assert_eq!(delta_text(Unit::Count, 216.0), "+216");
        assert_eq!(delta_text(Unit::Count, -1384.0), "-1,384");
        assert_eq!(delta_text(Unit::Ms, 0.0), "0.00");
        assert_eq!(delta_text(Unit::Ms, 486.1), "+486.1");
        assert_eq!(signed_pct(16.82), "+16.8%");
        assert_eq!(signed_pct(-30.0), "-30.0%");
        assert_eq!(signed_pct(0.0), "0.0%");
        assert_eq!(pct_text(0.1), "10%");
        assert_eq!(pct_text(0.025), "2.5%");
    }
}
