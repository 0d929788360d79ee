//! The Markdown and JSON of a comparison: the verdict first, the settings that differ (never
//! "the same" when a report did not record them), the figures per endpoint and server side
//! (a timing excused by A's own range of repeated runs says so), and what identifies each
//! run. Renders a finished
//! [`Comparison`]; compares nothing.

use std::fmt::{self, Write};

use serde_json::Value;

use super::comparison::{Comparison, Figure, RunInfo, Unit};
use super::format::{capitalised, cell, code, count, fixed, text};

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
    write_table(out, c.figures.iter().filter(|f| f.endpoint.is_none()))?;

    write_runs(out, c)
}

/// The title with the number of regressions, each regression, and where A and B come from.
fn write_verdict(out: &mut String, c: &Comparison) -> fmt::Result {
    let headline = match c.regressions.len() {
        0 => "no regression".to_owned(),
        1 => "1 regression".to_owned(),
        k => format!("{k} regressions"),
    };
    writeln!(
        out,
        "# lockbench compare: {} — {headline}",
        text(&c.scenario)
    )?;
    writeln!(out)?;
    let end = if c.regressions.is_empty() { "." } else { ":" };
    writeln!(
        out,
        "**{}** past the {} tolerance (B against A), exit code {}{end}",
        capitalised(&headline),
        pct_text(c.tolerance),
        c.exit_code
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
        writeln!(
            out,
            "Unknown: neither report recorded the settings it requested."
        )?;
    } else if c.settings_diff.is_empty() {
        writeln!(
            out,
            "None: both runs requested the same scenario (server, batch, users, duration, gates, faults, endpoints, target)."
        )?;
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
    let mut endpoints: Vec<&str> = c
        .figures
        .iter()
        .filter_map(|f| f.endpoint.as_deref())
        .collect();
    endpoints.dedup();
    if endpoints.is_empty() {
        writeln!(out)?;
        writeln!(out, "No endpoints in either report.")?;
    }
    for endpoint in endpoints {
        writeln!(out)?;
        writeln!(out, "### `{}`", code(endpoint))?;
        writeln!(out)?;
        let rows = c
            .figures
            .iter()
            .filter(|f| f.endpoint.as_deref() == Some(endpoint));
        write_table(out, rows)?;
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
    type Cell = fn(&RunInfo) -> String;
    let rows: [(&str, Cell); 7] = [
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
        ("users", |r| {
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
        }),
    ];
    for (label, cell_of) in rows {
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
        let side = |x: Option<f64>| x.map_or("—".to_owned(), |v| value_text(f.unit, v));
        let delta = f.delta.map_or("—".to_owned(), |d| delta_text(f.unit, d));
        let relative = match (f.relative_pct, f.new) {
            (_, true) => "new".to_owned(),
            (Some(p), false) => signed_pct(p),
            (None, false) => "—".to_owned(),
        };
        let verdict = match (f.gated, f.regression, f.a.is_some() && f.b.is_some()) {
            (false, _, _) => "info".to_owned(),
            (true, true, _) => "**REGRESSION**".to_owned(),
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
        writeln!(
            out,
            "| {} | {} | {} | {delta} | {relative} | {verdict} |",
            cell(&f.key),
            side(f.a),
            side(f.b)
        )?;
    }
    Ok(())
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
