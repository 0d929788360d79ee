//! doctor.html: the diagnosis as one self-contained page (inline CSS, no scripts, nothing
//! fetched), in doctor.md's order: the verdict, the findings with their evidence and fixes,
//! the before/after table of `--verify`, the lock errors by request, what was read. Every
//! piece of text goes through [`esc`].

use std::fmt::{self, Write};

use super::{Diagnosis, Finding, LogFacts, Spread, Verification};
use crate::report::format::{count, esc, fixed};

/// The page. Deterministic: the same diagnosis gives the same bytes.
pub fn render(d: &Diagnosis) -> String {
    let mut out = String::new();
    write_page(&mut out, d).expect("writing to a String cannot fail");
    out
}

const CSS: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1a202c;margin:0;background:#f7f7f5}
main{max-width:940px;margin:0 auto;padding:20px 24px 48px;background:#fff}
h1{font-size:1.5rem;margin:0 0 8px}
h2{font-size:1.2rem;border-bottom:2px solid #e2e8f0;padding-bottom:4px;margin:28px 0 10px}
h3{font-size:1.05rem;margin:22px 0 6px}
.verdict{border-left:10px solid;padding:12px 18px;margin:0 0 14px;border-radius:4px;font-size:1.05rem}
.verdict.problem{background:#fdecec;border-color:#c53030}
.verdict.clean{background:#e8f5ec;border-color:#2f855a}
.id{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#edf2f7;padding:1px 6px;border-radius:3px}
.fixed{color:#2f855a;font-weight:700}.notfixed{color:#c53030;font-weight:700}
table{border-collapse:collapse;margin:6px 0 10px;font-size:.9rem;display:block;overflow-x:auto;max-width:100%}
th,td{padding:3px 10px;border-bottom:1px solid #e2e8f0;text-align:left;vertical-align:top}
th{background:#f1f5f9;font-weight:600}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f7fafc;border:1px solid #e2e8f0;padding:8px 10px;overflow-x:auto;font-size:.85rem;white-space:pre-wrap}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.88em}
.why{color:#2d3748}.meta{color:#4a5568;font-size:.92rem}
";

fn write_page(out: &mut String, d: &Diagnosis) -> fmt::Result {
    writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>lockbench doctor</title><style>{CSS}</style></head><body><main>"
    )?;
    writeln!(out, "<h1>lockbench doctor</h1>")?;
    let class = if d.lock_problem { "problem" } else { "clean" };
    writeln!(
        out,
        "<div class=\"verdict {class}\">{}</div>",
        esc(&d.verdict)
    )?;
    if let Some(v) = &d.verify {
        write_verify(out, v)?;
    }
    if !d.findings.is_empty() {
        writeln!(out, "<h2>Findings, in order of weight</h2>")?;
    }
    for (i, f) in d.findings.iter().enumerate() {
        write_finding(out, i + 1, f)?;
    }
    if let Some(log) = &d.log {
        write_log(out, log)?;
    }
    writeln!(
        out,
        "<h2>What was read</h2><table><tr><th>kind</th><th>file</th><th>what it said</th></tr>"
    )?;
    for r in &d.read {
        writeln!(
            out,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            esc(&r.kind),
            esc(&r.path),
            esc(&r.summary)
        )?;
    }
    writeln!(out, "</table>")?;
    if let Some(db) = &d.database {
        writeln!(
            out,
            "<p class=\"meta\">The database <code>{}</code> was read as bytes, never opened through SQLite: SHA-256 {} before, {} after.</p>",
            esc(&db.path),
            esc(&db.sha256_before),
            esc(&db.sha256_after)
        )?;
    }
    for n in &d.notes {
        writeln!(out, "<p class=\"meta\">Note: {}</p>", esc(n))?;
    }
    writeln!(
        out,
        "<p class=\"meta\">lockbench {}</p></main></body></html>",
        esc(&d.lockbench_version)
    )
}

fn spread(s: &Option<Spread>) -> String {
    s.as_ref().map_or("-".to_owned(), |s| {
        format!(
            "{} / {} ms ({})",
            fixed(s.p50, 0),
            fixed(s.max, 0),
            count(s.count)
        )
    })
}

fn write_finding(out: &mut String, n: usize, f: &Finding) -> fmt::Result {
    writeln!(
        out,
        "<h3 id=\"{}\">{n}. <span class=\"id\">{}</span> {}</h3>",
        f.id,
        f.id,
        esc(&f.title)
    )?;
    let on = if f.endpoints.is_empty() {
        String::new()
    } else {
        format!(" on {}", esc(&f.endpoints.join(", ")))
    };
    let lost = f
        .lost_writes
        .map_or(String::new(), |n| format!("; {} lost writes", count(n)));
    writeln!(
        out,
        "<p>{} {}{on}{lost}.</p><ul>",
        count(f.count),
        esc(&f.count_of)
    )?;
    for e in &f.evidence {
        match e.split_once('\n') {
            Some((head, rest)) => writeln!(out, "<li>{}<pre>{}</pre></li>", esc(head), esc(rest))?,
            None => writeln!(out, "<li>{}</li>", esc(e))?,
        }
    }
    writeln!(
        out,
        "</ul><p class=\"why\">Why: {} <a href=\"{}\">{}</a></p>",
        esc(&f.why),
        esc(&f.source),
        esc(&f.source)
    )?;
    writeln!(out, "<p><strong>Fix:</strong> {}</p>", esc(&f.fix.summary))?;
    if !f.fix.settings.is_empty() {
        let sets: Vec<String> = f
            .fix
            .settings
            .iter()
            .map(|(k, v)| format!("<code>--set {}={}</code>", esc(k), esc(v)))
            .collect();
        writeln!(out, "<p>In lockbench's settings: {}</p>", sets.join(" "))?;
    }
    for fw in &f.fix.frameworks {
        writeln!(
            out,
            "<p><strong>{}</strong>: {}</p>",
            esc(&fw.framework),
            esc(&fw.note)
        )?;
        if !fw.code.is_empty() {
            writeln!(out, "<pre>{}</pre>", esc(&fw.code))?;
        }
    }
    if let Some(s) = &f.fix.scenario {
        write!(
            out,
            "<p class=\"meta\">Reproduce it on the reference server: <code>{}</code>",
            esc(s)
        )?;
        if let Some(fixed) = &f.fix.scenario_fixed {
            write!(out, "; with the fix: <code>{}</code>", esc(fixed))?;
        }
        writeln!(out, "</p>")?;
    }
    Ok(())
}

fn write_verify_table(out: &mut String, v: &Verification) -> fmt::Result {
    writeln!(out, "<table><tr><th></th><th class=\"n\">as the app is</th><th class=\"n\">with the fix</th></tr>")?;
    for (name, before, after) in v.rows() {
        writeln!(
            out,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&name),
            esc(&before),
            esc(&after)
        )?;
    }
    writeln!(out, "</table>")
}

fn write_verify(out: &mut String, v: &Verification) -> fmt::Result {
    writeln!(out, "<h2>Verified on the app</h2>")?;
    let class = if v.fixed { "fixed" } else { "notfixed" };
    writeln!(out, "<p class=\"{class}\">{}</p>", esc(&v.sentence))?;
    if v.after.requests > 0 {
        write_verify_table(out, v)?;
        writeln!(
            out,
            "<p class=\"meta\">Reports: <a href=\"{}\">as the app is</a>, <a href=\"{}\">with the fix</a>.</p>",
            esc(&v.before.report),
            esc(&v.after.report)
        )?;
    }
    for n in &v.not_applied {
        writeln!(out, "<p class=\"meta\">Not applied: {}</p>", esc(n))?;
    }
    Ok(())
}

fn write_log(out: &mut String, log: &LogFacts) -> fmt::Result {
    writeln!(out, "<h2>Lock errors in the log</h2>")?;
    writeln!(
        out,
        "<p>{} lock errors in {} records; {} retry messages, {} of them retrying a commit.</p>",
        count(log.lock_errors),
        count(log.records),
        count(log.retries),
        count(log.commit_retries)
    )?;
    if !log.by_endpoint.is_empty() {
        writeln!(out, "<table><tr><th>request</th><th>reads or writes</th><th class=\"n\">lock errors</th><th>codes</th><th class=\"n\">wait in the log: median / max</th><th class=\"n\">failed requests' latency: median / max</th></tr>")?;
        for (name, e) in &log.by_endpoint {
            let codes: Vec<String> = e.by_code.iter().map(|(c, n)| format!("{c} {n}")).collect();
            writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                esc(name),
                esc(&e.kind),
                count(e.lock_errors),
                esc(&codes.join(", ")),
                spread(&e.waits_ms),
                spread(&e.failed_latency_ms)
            )?;
        }
        writeln!(out, "</table>")?;
    }
    Ok(())
}
