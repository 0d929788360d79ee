//! `lockbench doctor`: from a log full of "database is locked" to the cause and a fix,
//! proven on the app.
//!
//! It reads its evidence (`evidence.rs`: the app's logs, its database file as bytes, a
//! lockbench report, a scenario), applies the rules (`diagnose.rs`), attaches to each finding
//! the fix in lockbench's and each framework's words and a scenario that reproduces it on the
//! reference server (`fixes.rs`), and with `--verify` runs the scenario as the app is and with
//! the fix, each on a fresh app and database, through the same `run_scenario` a `lockbench
//! run` uses (`verify.rs`). The result is a [`Diagnosis`], written as doctor.json, doctor.md
//! and doctor.html.
//!
//! It never writes the app's files: the database is read as bytes (its SHA-256 before and
//! after is in the diagnosis), logs are only read.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::report::diagnosis::{self, Diagnosis, FindingId, DIAGNOSIS_SCHEMA_VERSION};
use crate::scenario::Scenario;

mod diagnose;
mod evidence;
pub mod fixes;
mod verify;

pub use evidence::{read_database, Evidence, Sources};

/// What `lockbench doctor` was asked.
#[derive(Debug, Clone, Default)]
pub struct DoctorOptions {
    pub logs: Vec<PathBuf>,
    pub database: Option<PathBuf>,
    pub report: Option<PathBuf>,
    pub scenario: Option<PathBuf>,
    /// `--set key=value` for the scenario.
    pub sets: Vec<String>,
    /// The busy timeout the app believes it set, in ms.
    pub busy_timeout_ms: Option<u64>,
    pub verify: bool,
    pub out: PathBuf,
    /// The lockbench binary that starts reference servers (tests; default this process's).
    pub server_exe: Option<PathBuf>,
    /// Show the runs' progress bars.
    pub progress: bool,
}

/// Reads, diagnoses, verifies when asked, and writes doctor.json, doctor.md, doctor.html
/// and the reproducing scenarios into `opts.out`. An error names the evidence it could not
/// read (exit code 2).
pub fn doctor(opts: &DoctorOptions) -> anyhow::Result<Diagnosis> {
    let sets = crate::scenario::parse_sets(&opts.sets)?;
    let scenario = match &opts.scenario {
        Some(path) => Some((
            path.clone(),
            Scenario::load_with(path, &sets)
                .with_context(|| format!("--scenario {}", path.display()))?,
        )),
        None => None,
    };
    if opts.verify && scenario.is_none() {
        anyhow::bail!(
            "--verify needs --scenario: the scenario doctor runs as the app is and with the fix"
        );
    }
    crate::run::prepare_out_dir(&opts.out)?;
    let mut sources = Sources {
        logs: opts.logs.clone(),
        database: opts.database.clone(),
        report: opts.report.clone(),
        scenario: scenario.clone(),
        busy_timeout_ms: opts.busy_timeout_ms,
    };
    // With --verify and nothing else to read, the evidence is the "before" run's own.
    let mut before = None;
    if let (true, Some((path, sc))) = (opts.verify, &scenario) {
        if opts.logs.is_empty() && opts.database.is_none() && opts.report.is_none() {
            let run = verify::run_side(opts, path, &sets, "before")?;
            let produced = verify::evidence_of(sc, &run.out_dir);
            sources.logs = produced.logs;
            sources.database = produced.database;
            sources.report = Some(run.out_dir.join("report.json"));
            before = Some(run);
        }
    }
    let ev = Evidence::read(&sources)?;
    let (mut findings, notes) = diagnose::diagnose(&ev);
    let busy = ev.settings.busy_timeout_ms.as_ref().map(|k| k.value);
    for f in &mut findings {
        f.fix = fix_with_scenario(f.id, busy, &opts.out)?;
    }
    let lock_errors = ev.log.as_ref().map_or(0, |l| l.lock_errors);
    let lock_problem = findings.iter().any(|f| f.id.is_lock_problem()) || lock_errors > 0;
    let verification = match (opts.verify, &scenario) {
        (true, Some((path, sc))) => Some(verify::verify(opts, path, sc, &sets, &findings, before)?),
        _ => None,
    };
    let verdict = verdict(&findings, lock_errors, &ev, &notes);
    let mut all_notes = notes;
    if let Some(db) = &ev.database {
        if db.sha256_before != db.sha256_after {
            all_notes.push(format!(
                "{} changed while doctor read it (another process writes it): its figures are of one moment.",
                db.path
            ));
        }
    }
    let diagnosis = Diagnosis {
        schema_version: DIAGNOSIS_SCHEMA_VERSION,
        lockbench_version: env!("CARGO_PKG_VERSION").to_owned(),
        verdict,
        lock_problem,
        read: ev.read.clone(),
        settings: ev.settings.clone(),
        log: ev.log.clone(),
        database: ev.database.clone(),
        findings,
        verify: verification,
        notes: all_notes,
    };
    write(&diagnosis, &opts.out)?;
    Ok(diagnosis)
}

/// A finding's fix, with its reproducing scenario written into `<out>/scenarios/` and the
/// commands that run it as it is and with the fix.
fn fix_with_scenario(
    id: FindingId,
    busy_timeout_ms: Option<u64>,
    out: &Path,
) -> anyhow::Result<diagnosis::Fix> {
    let mut fix = fixes::fix(id, busy_timeout_ms);
    let Some(repro) = fixes::reproduction(id) else {
        return Ok(fix);
    };
    let dir = out.join("scenarios");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(repro.file_name);
    std::fs::write(&path, &repro.toml).with_context(|| format!("writing {}", path.display()))?;
    fix.scenario = Some(format!("lockbench run {}", path.display()));
    if !repro.fixed_sets.is_empty() {
        let sets: Vec<String> = repro
            .fixed_sets
            .iter()
            .map(|(k, v)| format!("--set '{k}={v}'"))
            .collect();
        fix.scenario_fixed = Some(format!(
            "lockbench run {} {}",
            path.display(),
            sets.join(" ")
        ));
    }
    Ok(fix)
}

/// The one sentence the diagnosis starts with.
fn verdict(
    findings: &[diagnosis::Finding],
    lock_errors: u64,
    ev: &Evidence,
    notes: &[String],
) -> String {
    let logs = ev.read.iter().filter(|r| r.kind == "log").count();
    match findings.iter().find(|f| f.id.is_lock_problem()) {
        Some(f) => {
            let on = if f.endpoints.is_empty() {
                String::new()
            } else {
                format!(" on {}", f.endpoints.join(", "))
            };
            format!("{}: {}{on} ({} {}).", f.id, f.title, f.count, f.count_of)
        }
        None if lock_errors > 0 => format!(
            "{lock_errors} lock errors; their cause is not determined from what was read{}.",
            if notes.is_empty() {
                ""
            } else {
                " (see the note)"
            }
        ),
        None => {
            let others = findings
                .iter()
                .find(|f| f.id == FindingId::NotALock)
                .map(|f| {
                    format!(
                        " {} errors look like lock errors and are not (not-a-lock).",
                        f.count
                    )
                })
                .unwrap_or_default();
            if logs > 0 {
                format!("No lock problem: no lock error in the log.{others}")
            } else {
                format!("No lock problem found in what was read.{others}")
            }
        }
    }
}

/// doctor.json, doctor.md and doctor.html in `dir`.
pub fn write(d: &Diagnosis, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = serde_json::to_string_pretty(d)?;
    std::fs::write(dir.join("doctor.json"), json + "\n")?;
    std::fs::write(dir.join("doctor.md"), diagnosis::render_markdown(d))?;
    std::fs::write(dir.join("doctor.html"), diagnosis::render_html(d))?;
    Ok(())
}
