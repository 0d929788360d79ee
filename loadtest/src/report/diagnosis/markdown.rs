//! doctor.md and the terminal's summary of a [`Diagnosis`]: the verdict, the findings in
//! order of weight (evidence, why, fix per framework, the reproducing scenario), the
//! before/after table of `--verify`, then what was read.

use std::fmt::{self, Write};

use super::{Diagnosis, Finding, Known, LogFacts, Spread, Verification};
use crate::report::format::{cell, code, count, fixed};

/// doctor.md.
pub fn render(d: &Diagnosis) -> String {
    let mut out = String::new();
    write_md(&mut out, d).expect("writing to a String cannot fail");
    out
}

/// What the terminal shows: the verdict, each finding's id, count, requests and fix, the
/// verification's sentence.
pub fn terminal(d: &Diagnosis) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", d.verdict);
    for (i, f) in d.findings.iter().enumerate() {
        let on = if f.endpoints.is_empty() {
            String::new()
        } else {
            format!(" on {}", f.endpoints.join(", "))
        };
        let _ = writeln!(
            out,
            "{}. {} ({} {}{on}): {}",
            i + 1,
            f.id,
            count(f.count),
            f.count_of,
            f.title
        );
        let _ = writeln!(out, "   fix: {}", f.fix.summary);
        if !f.fix.settings.is_empty() {
            let sets: Vec<String> = f
                .fix
                .settings
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let _ = writeln!(out, "   in lockbench's settings: {}", sets.join(" "));
        }
    }
    if let Some(v) = &d.verify {
        let _ = writeln!(out, "{}", v.sentence);
        if v.after.requests > 0 {
            let _ = writeln!(out, "{}", verify_table(v));
        }
    }
    for n in &d.notes {
        let _ = writeln!(out, "note: {n}");
    }
    out
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

/// The before/after table: one row per figure, then the p99 of every request.
fn verify_table(v: &Verification) -> String {
    let mut t = String::from("| | as the app is | with the fix |\n| --- | ---: | ---: |\n");
    for (name, before, after) in v.rows() {
        let _ = writeln!(t, "| {} | {before} | {after} |", cell(&name));
    }
    t
}

fn known<T: fmt::Display>(k: &Option<Known<T>>) -> String {
    k.as_ref().map_or("unknown".to_owned(), |k| {
        format!("{} ({})", k.value, k.source)
    })
}

fn write_md(out: &mut String, d: &Diagnosis) -> fmt::Result {
    writeln!(out, "# lockbench doctor\n")?;
    writeln!(out, "**{}**\n", cell(&d.verdict))?;
    if d.findings.is_empty() {
        writeln!(out, "No finding.\n")?;
    } else {
        writeln!(out, "## Findings, in order of weight\n")?;
    }
    for (i, f) in d.findings.iter().enumerate() {
        write_finding(out, i + 1, f)?;
    }
    if let Some(v) = &d.verify {
        write_verify(out, v)?;
    }
    if let Some(log) = &d.log {
        write_log(out, log)?;
    }
    write_read(out, d)?;
    writeln!(out, "\nlockbench {}", d.lockbench_version)
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn write_finding(out: &mut String, n: usize, f: &Finding) -> fmt::Result {
    writeln!(out, "### {}. `{}`: {}\n", n, f.id, cell(&f.title))?;
    write!(out, "{} {}", count(f.count), f.count_of)?;
    if !f.endpoints.is_empty() {
        write!(out, " on {}", cell(&f.endpoints.join(", ")))?;
    }
    if let Some(n) = f.lost_writes {
        write!(out, "; {} lost writes", count(n))?;
    }
    writeln!(out, ".\n\nWhat doctor saw:\n")?;
    for e in &f.evidence {
        match e.split_once('\n') {
            Some((head, rest)) => writeln!(
                out,
                "- {}\n\n  ```text\n{}\n  ```",
                cell(head),
                indent(rest)
            )?,
            None => writeln!(out, "- {}", cell(e))?,
        }
    }
    writeln!(out, "\nWhy: {} (<{}>)\n", cell(&f.why), f.source)?;
    writeln!(out, "Fix: {}\n", cell(&f.fix.summary))?;
    if !f.fix.settings.is_empty() {
        let sets: Vec<String> = f
            .fix
            .settings
            .iter()
            .map(|(k, v)| format!("`--set {}={}`", code(k), code(v)))
            .collect();
        writeln!(out, "In lockbench's settings: {}\n", sets.join(" "))?;
    }
    for fw in &f.fix.frameworks {
        writeln!(out, "**{}**: {}\n", cell(&fw.framework), cell(&fw.note))?;
        if !fw.code.is_empty() {
            writeln!(out, "```\n{}\n```\n", fw.code)?;
        }
    }
    if let Some(s) = &f.fix.scenario {
        writeln!(out, "Reproduce it on the reference server: `{}`", code(s))?;
        if let Some(fixed) = &f.fix.scenario_fixed {
            writeln!(out, "; with the fix: `{}`", code(fixed))?;
        }
        writeln!(out)?;
    }
    Ok(())
}

fn write_verify(out: &mut String, v: &Verification) -> fmt::Result {
    writeln!(out, "## Verified on the app\n")?;
    writeln!(out, "{}\n", cell(&v.sentence))?;
    if !v.applied.is_empty() {
        let sets: Vec<String> = v
            .applied
            .iter()
            .map(|(k, val)| format!("`{}={}`", code(k), code(val)))
            .collect();
        writeln!(
            out,
            "Scenario `{}`, run as the app is and with {}, each on a fresh app and database.\n",
            code(&v.scenario),
            sets.join(", ")
        )?;
    }
    if v.after.requests > 0 {
        writeln!(out, "{}", verify_table(v))?;
        writeln!(
            out,
            "Reports: [as the app is]({}), [with the fix]({}).\n",
            v.before.report, v.after.report
        )?;
    }
    for n in &v.not_applied {
        writeln!(out, "- not applied: {}", cell(n))?;
    }
    if !v.not_applied.is_empty() {
        writeln!(out)?;
    }
    Ok(())
}

fn write_log(out: &mut String, log: &LogFacts) -> fmt::Result {
    writeln!(out, "## Lock errors in the log\n")?;
    write!(
        out,
        "{} lock errors in {} records",
        count(log.lock_errors),
        count(log.records)
    )?;
    if let (Some(a), Some(b)) = (&log.first_at, &log.last_at) {
        write!(out, ", from {} to {}", cell(a), cell(b))?;
    }
    writeln!(
        out,
        "; {} retry messages, {} of them retrying a commit.\n",
        count(log.retries),
        count(log.commit_retries)
    )?;
    if !log.by_endpoint.is_empty() {
        writeln!(
            out,
            "| request | reads or writes | lock errors | codes | wait in the log: median / max | failed requests' latency: median / max |"
        )?;
        writeln!(out, "| --- | --- | ---: | --- | ---: | ---: |")?;
        for (name, e) in &log.by_endpoint {
            let codes: Vec<String> = e.by_code.iter().map(|(c, n)| format!("{c} {n}")).collect();
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                cell(name),
                e.kind,
                count(e.lock_errors),
                codes.join(", "),
                spread(&e.waits_ms),
                spread(&e.failed_latency_ms)
            )?;
        }
        writeln!(out)?;
    }
    for (kind, n) in &log.not_a_lock {
        writeln!(
            out,
            "- {} records say \"{}\" (not a lock)",
            count(*n),
            cell(kind)
        )?;
    }
    Ok(())
}

/// The settings doctor went by, the database file, what was read, the notes.
fn write_read(out: &mut String, d: &Diagnosis) -> fmt::Result {
    writeln!(out, "## The settings doctor went by\n")?;
    writeln!(
        out,
        "- busy timeout (ms): {}",
        cell(&known(&d.settings.busy_timeout_ms))
    )?;
    writeln!(
        out,
        "- transactions begin: {}",
        cell(&known(&d.settings.tx_mode))
    )?;
    writeln!(out, "- journal: {}", cell(&known(&d.settings.journal_mode)))?;
    writeln!(
        out,
        "- retry scope: {}\n",
        cell(&known(&d.settings.retry_scope))
    )?;
    if let Some(db) = &d.database {
        writeln!(out, "## The database file\n")?;
        writeln!(
            out,
            "`{}`: {} bytes, page size {}, {} journal, WAL {}, user_version {}, auto_vacuum {}, {}. Read as bytes, never opened through SQLite: SHA-256 {} before and {} after.\n",
            code(&db.path),
            count(db.bytes),
            db.page_size,
            db.journal,
            db.wal_bytes.map_or("none".to_owned(), |w| format!(
                "{} bytes ({} pages)",
                count(w),
                count(db.wal_frames.unwrap_or(0))
            )),
            db.user_version,
            db.auto_vacuum,
            db.text_encoding,
            &db.sha256_before[..12.min(db.sha256_before.len())],
            &db.sha256_after[..12.min(db.sha256_after.len())],
        )?;
    }
    writeln!(out, "## What was read\n")?;
    writeln!(out, "| kind | file | what it said |\n| --- | --- | --- |")?;
    for r in &d.read {
        writeln!(
            out,
            "| {} | `{}` | {} |",
            r.kind,
            code(&r.path),
            cell(&r.summary)
        )?;
    }
    if !d.notes.is_empty() {
        writeln!(out, "\n## Notes\n")?;
        for n in &d.notes {
            writeln!(out, "- {}", cell(n))?;
        }
    }
    Ok(())
}
