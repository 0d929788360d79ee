//! The Markdown rendering of a [`Report`], for a person who has thirty seconds: the verdict
//! first, then the gates (an unknown value says why), each run of a repeated report, the
//! figures, the settings that were really in effect, the machine and the notes.
//! Lays out the facts `facts/` works out; numbers and cells through `format.rs`.

use std::fmt::{self, Write};

use super::facts::*;
use super::format::*;
use super::Report;

/// The report as Markdown. Deterministic: the same report gives the same bytes.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    write_report(&mut out, report).expect("writing to a String cannot fail");
    out
}

fn write_report(out: &mut String, r: &Report) -> fmt::Result {
    write_verdict(out, r)?;
    write_gates(out, r)?;
    write_runs(out, r)?;

    writeln!(out)?;
    writeln!(out, "## Figures")?;
    write_faults(out, r)?;
    write_requests(out, r)?;
    write_lock_errors(out, r)?;
    write_retries(out, r)?;
    write_batch(out, r)?;
    write_audit(out, r)?;
    write_target_database(out, r)?;
    write_wal(out, r)?;

    writeln!(out)?;
    writeln!(out, "## Settings in effect")?;
    write_settings(out, r)?;

    write_machine(out, r)?;
    write_notes(out, r)
}

/// The title with the verdict, the summary and the three lines under it, then the scenario
/// and the server it ran against.
fn write_verdict(out: &mut String, r: &Report) -> fmt::Result {
    let word = verdict_word(r);
    writeln!(out, "# lockbench: {} — {word}", text(&r.scenario.name))?;
    writeln!(out)?;
    writeln!(
        out,
        "**{word}**, exit code {}: {}",
        r.verdict.exit_code,
        text(&r.verdict.summary)
    )?;
    writeln!(out)?;
    let head = headline(r);
    writeln!(out, "- Lock errors: {}", text(&head.lock_errors))?;
    writeln!(out, "- Lost writes (audit): {}", text(&head.lost_writes))?;
    writeln!(out, "- Gates failed: {}", text(&head.gates_failed))?;
    writeln!(out)?;
    writeln!(
        out,
        "Scenario `{}` ({}): {}",
        code(&r.scenario.name),
        code(&r.scenario.file),
        text(&r.scenario.description)
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "{} server at {}, started {}; lockbench {}, report schema {}.",
        capitalised(&target_words(r)),
        text(&r.target.url),
        text(&r.started_at),
        text(&r.lockbench_version),
        r.schema_version
    )?;
    if let Some(line) = app_line(r) {
        writeln!(out)?;
        writeln!(out, "{}", text(&line))?;
    }
    Ok(())
}

fn write_gates(out: &mut String, r: &Report) -> fmt::Result {
    writeln!(out)?;
    writeln!(out, "## Gates")?;
    writeln!(out)?;
    if r.gates.is_empty() {
        return writeln!(out, "No gates: the scenario sets none.");
    }
    writeln!(out, "| gate | limit | value | result |")?;
    writeln!(out, "| --- | ---: | ---: | --- |")?;
    for g in &r.gates {
        writeln!(
            out,
            "| {} | {} | {} | {} |",
            cell(&g.name),
            num(g.limit),
            cell(&gate_value(g)),
            if g.passed { "pass" } else { "**FAIL**" }
        )?;
    }
    Ok(())
}

fn write_machine(out: &mut String, r: &Report) -> fmt::Result {
    writeln!(out)?;
    writeln!(out, "## Machine")?;
    writeln!(out)?;
    for (name, value) in machine_lines(r) {
        writeln!(out, "- {name}: {}", text(&value))?;
    }
    Ok(())
}

fn write_notes(out: &mut String, r: &Report) -> fmt::Result {
    writeln!(out)?;
    writeln!(out, "## Notes")?;
    writeln!(out)?;
    if r.notes.is_empty() {
        writeln!(out, "None.")?;
    }
    for note in &r.notes {
        writeln!(out, "- {}", text(note))?;
    }
    Ok(())
}

/// A repeated run's runs, each with its own verdict, and what each table holds.
fn write_runs(out: &mut String, r: &Report) -> fmt::Result {
    let Some(table) = run_table(r) else {
        return Ok(());
    };
    writeln!(out)?;
    writeln!(out, "## Runs")?;
    writeln!(out)?;
    write_text_table(out, &table)?;
    writeln!(out)?;
    writeln!(out, "What each table below holds:")?;
    writeln!(out)?;
    for line in repeat_tables(r) {
        writeln!(out, "- {}", text(&line))?;
    }
    Ok(())
}

fn write_requests(out: &mut String, r: &Report) -> fmt::Result {
    writeln!(out)?;
    writeln!(out, "### Requests")?;
    writeln!(out)?;
    writeln!(out, "{}", users_line(r))?;
    if let Some(cpu) = load_cpu_line(r) {
        writeln!(out)?;
        writeln!(out, "{}", text(&cpu))?;
    }
    writeln!(out)?;
    if r.requests.is_empty() {
        writeln!(out, "No requests were sent.")?;
    } else {
        write_text_table(out, &request_table(&r.requests, Some(r.load_s)))?;
        writeln!(out)?;
        writeln!(out, "{}", text(LATENCY_NOTE))?;
    }
    if !r.runner_requests.is_empty() {
        writeln!(out)?;
        writeln!(out, "### lockbench's own requests")?;
        writeln!(out)?;
        write_text_table(out, &request_table(&r.runner_requests, None))?;
        writeln!(out)?;
        writeln!(out, "{}", text(RUNNER_NOTE))?;
    }
    write_roles(out, r)
}

fn write_faults(out: &mut String, r: &Report) -> fmt::Result {
    if r.faults.is_empty() && r.restarts.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    writeln!(out, "### Faults and restarts")?;
    writeln!(out)?;
    let faults = fault_table(r);
    if !faults.rows.is_empty() {
        write_text_table(out, &faults)?;
        writeln!(out)?;
    }
    writeln!(out, "{}", text(&restart_line(r)))?;
    let restarts = restart_table(r);
    if !restarts.rows.is_empty() {
        writeln!(out)?;
        write_text_table(out, &restarts)?;
    }
    Ok(())
}

fn write_text_table(out: &mut String, table: &TextTable) -> fmt::Result {
    writeln!(out, "| {} |", table.header.join(" | "))?;
    let aligns: Vec<&str> = table
        .header
        .iter()
        .enumerate()
        .map(|(i, _)| {
            if table.numeric.contains(&i) {
                "---:"
            } else {
                "---"
            }
        })
        .collect();
    writeln!(out, "| {} |", aligns.join(" | "))?;
    for row in &table.rows {
        let cells: Vec<String> = row.iter().map(|c| cell(c)).collect();
        writeln!(out, "| {} |", cells.join(" | "))?;
    }
    Ok(())
}

fn write_roles(out: &mut String, r: &Report) -> fmt::Result {
    writeln!(out)?;
    writeln!(out, "### User classes")?;
    writeln!(out)?;
    let table = role_table(r);
    if table.rows.is_empty() {
        return writeln!(out, "No roles ran.");
    }
    writeln!(out, "| {} |", table.header.join(" | "))?;
    writeln!(
        out,
        "| --- |{}",
        " ---: |".repeat(table.header.len().saturating_sub(1))
    )?;
    for row in &table.rows {
        let cells: Vec<String> = row.iter().map(|c| cell(c)).collect();
        writeln!(out, "| {} |", cells.join(" | "))?;
    }
    writeln!(out)?;
    writeln!(out, "{}", text(ROLE_NOTE))
}

fn write_target_database(out: &mut String, r: &Report) -> fmt::Result {
    let Some(lines) = target_database_lines(r) else {
        return Ok(());
    };
    writeln!(out)?;
    writeln!(out, "### The app's database (read-only)")?;
    writeln!(out)?;
    write_pairs(out, &lines)
}

fn write_lock_errors(out: &mut String, r: &Report) -> fmt::Result {
    let le = &r.lock_errors;
    writeln!(out)?;
    writeln!(out, "### Lock errors")?;
    writeln!(out)?;
    writeln!(out, "{}", text(&lock_error_origin(r)))?;
    for (title, map) in [("SQLite code", &le.by_code), ("endpoint", &le.by_endpoint)] {
        writeln!(out)?;
        if map.is_empty() {
            writeln!(out, "By {title}: {}.", text(&by_map_absent(r)))?;
            continue;
        }
        writeln!(out, "| {title} | lock errors |")?;
        writeln!(out, "| --- | ---: |")?;
        for (key, n) in map {
            writeln!(out, "| {} | {} |", cell(key), count(*n))?;
        }
        if title == "endpoint" && le.unattributed > 0 {
            writeln!(
                out,
                "| (not tied to a request: its record names no path this run sends) | {} |",
                count(le.unattributed)
            )?;
        }
    }
    Ok(())
}

fn write_retries(out: &mut String, r: &Report) -> fmt::Result {
    writeln!(out)?;
    writeln!(out, "### Retries and commit-only drops")?;
    writeln!(out)?;
    let (retries, dropped) = retry_lines(r);
    writeln!(out, "- Server-side retries: {}", text(&retries))?;
    writeln!(
        out,
        "- Commit-only drops (writes reported saved after their rollback): {}",
        text(&dropped)
    )?;
    writeln!(
        out,
        "- Processor failures (steps that failed after their retries): {}",
        text(&processor_failures_line(r))
    )
}

fn write_batch(out: &mut String, r: &Report) -> fmt::Result {
    writeln!(out)?;
    writeln!(out, "### Batch")?;
    writeln!(out)?;
    match batch_lines(r) {
        Ok(lines) => write_pairs(out, &lines),
        Err(reason) => writeln!(out, "{}.", capitalised(&text(&reason))),
    }
}

fn write_audit(out: &mut String, r: &Report) -> fmt::Result {
    writeln!(out)?;
    writeln!(out, "### Audit")?;
    writeln!(out)?;
    let Some(a) = &r.audit else {
        return writeln!(out, "{}.", capitalised(&text(&audit_absent(r))));
    };
    write_pairs(out, &audit_lines(r, a))?;
    if a.counter_mismatches.is_empty() {
        writeln!(out, "- Counter mismatches: none")
    } else {
        writeln!(
            out,
            "- Counter mismatches: {}",
            count(a.counter_mismatches.len() as u64)
        )?;
        for m in &a.counter_mismatches {
            writeln!(out, "  - {}", text(m))?;
        }
        Ok(())
    }
}

fn write_wal(out: &mut String, r: &Report) -> fmt::Result {
    writeln!(out)?;
    writeln!(out, "### WAL")?;
    writeln!(out)?;
    match wal_lines(r) {
        Ok(lines) => write_pairs(out, &lines),
        Err(reason) => writeln!(out, "{}.", capitalised(&text(&reason))),
    }
}

fn write_settings(out: &mut String, r: &Report) -> fmt::Result {
    writeln!(out)?;
    writeln!(out, "### Requested")?;
    writeln!(out)?;
    let sections = settings_sections(&r.settings_requested);
    if sections.is_empty() {
        writeln!(out, "Not recorded.")?;
    }
    for s in &sections {
        let pairs: Vec<String> = s
            .entries
            .iter()
            .map(|(k, v)| format!("{} = {}", text(k), text(v)))
            .collect();
        match &s.name {
            Some(name) => writeln!(out, "- **{}**: {}", text(name), pairs.join(", "))?,
            None => writeln!(out, "- {}", pairs.join(", "))?,
        }
    }

    writeln!(out)?;
    writeln!(out, "### Effective, per connection")?;
    writeln!(out)?;
    let Some(workers) = &r.settings_effective else {
        return writeln!(out, "{}.", capitalised(&text(&effective_absent(r))));
    };
    let table = connection_table(workers);
    if table.rows.is_empty() {
        return writeln!(
            out,
            "No connection was reported (the workers had opened none)."
        );
    }
    writeln!(
        out,
        "| worker | conn id | role | journal_mode | busy_timeout_ms | synchronous | read_only |"
    )?;
    writeln!(out, "| ---: | ---: | --- | --- | ---: | --- | --- |")?;
    for row in &table.rows {
        let timeout = if row.odd_timeout {
            format!("**{}** ⚠ differs", cell(&row.busy_timeout_ms))
        } else {
            cell(&row.busy_timeout_ms)
        };
        writeln!(
            out,
            "| {} (pid {}) | {} | {} | {} | {} | {} | {} |",
            row.worker,
            row.pid,
            cell(&row.id),
            cell(&row.role),
            cell(&row.journal_mode),
            timeout,
            cell(&row.synchronous),
            cell(&row.read_only)
        )?;
    }
    if let Some(warning) = &table.timeout_warning {
        writeln!(out)?;
        writeln!(out, "⚠ {}", text(warning))?;
    }
    Ok(())
}

fn write_pairs(out: &mut String, pairs: &[(&str, String)]) -> fmt::Result {
    for (name, value) in pairs {
        writeln!(out, "- {name}: {}", text(value))?;
    }
    Ok(())
}
