//! `lockbench run`: one scenario end to end, and the pieces of a run.
//!
//! The sequence: a fresh database and photo batch in a temporary folder; `lockbench serve`
//! workers started as child processes with the scenario's settings (or a user's own app as
//! the target); the load; the batch posted and watched until it is done plus the tail
//! (never past the cap); everything stopped; the audit; the report and the gates. The load
//! generator talks to the server only over HTTP and through child processes.
//!
//! - `reference.rs`: a run against the reference server; `external.rs`: against a user's app.
//! - `processes.rs`: the server process, the run's PostgreSQL schema and the watch on it.
//! - `scrape.rs`: the server's counters; `audit.rs`: the read-only audit; `gates.rs`: the
//!   verdict; `kill.rs`: the kill-worker fault; `repeat.rs`: `--repeat`'s medians.
//!
//! This file holds what both kinds of run share: the options, the photo batch, the report's
//! common fields and writing the report files.

mod audit;
pub(crate) use audit::sha256_file;
mod external;
pub mod faults;
pub mod follow;
pub mod gates;
pub mod http;
mod kill;
mod launch;
mod launch_kill;
pub mod live;
pub mod machine;
mod processes;
mod reference;
pub mod restarts;
mod scrape;
mod sequence;
mod target;
mod watch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use lockbench_server::photos::{self, Manifest};

pub use gates::{lock_summary, INTERRUPTED_EXIT};
pub use processes::ServerProcess;

use crate::load::Shared;
use crate::report::{
    self, BatchEnd, BatchFigures, LockErrors, Report, ScenarioInfo, Target, UsersInfo, Verdict,
};
use crate::scenario::Scenario;

/// How to run a scenario.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub scenario: PathBuf,
    /// Report folder (default: reports/<scenario>/<UTC timestamp>/).
    pub out: Option<PathBuf>,
    /// Run the user mix against an external app instead of the reference server.
    pub target: Option<String>,
    /// The lockbench binary to start servers with (default: this process's own binary).
    pub server_exe: Option<PathBuf>,
    /// A folder to keep the generated photo batch in and reuse when its spec matches.
    pub photos_cache: Option<PathBuf>,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Overrides applied to the scenario after loading (sweeps, breakpoints).
    pub scenario_override: Option<Scenario>,
    /// Dotted-key overrides laid over the scenario file before it is checked (`--set`).
    pub sets: BTreeMap<String, toml::Value>,
    /// The PostgreSQL server for a `driver = "postgres"` scenario (`--database-url`).
    pub database_url: Option<String>,
    /// The live view (terminal line, `--live` page) the run reports to.
    pub live: Option<std::sync::Arc<live::LiveHub>>,
}

/// A finished run: its report and where the report files are.
pub struct RunOutcome {
    pub report: Report,
    pub out_dir: PathBuf,
}

pub(crate) fn utc_now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// The batch folder: from the cache when its manifest has the same spec and its photos are
/// the manifest's (checked byte for byte), else generated. A damaged cache is written again;
/// one that still holds photos that are not the batch's is refused, naming them, since the
/// processor would process them and the audit blame the database for them.
pub(super) fn photo_batch(
    scenario: &Scenario,
    cache: Option<&Path>,
    work: &Path,
) -> anyhow::Result<(PathBuf, Manifest)> {
    let dir = match cache {
        Some(c) => c.to_path_buf(),
        None => work.join("photos"),
    };
    if let Ok(manifest) = photos::read_manifest(&dir) {
        if manifest.spec == scenario.batch {
            match batch_matches(&dir, &manifest) {
                Ok(()) => return Ok((dir, manifest)),
                Err(why) => eprintln!(
                    "lockbench: the photo cache {} does not match its manifest ({why}); writing the batch again",
                    dir.display()
                ),
            }
        }
    }
    let manifest = photos::generate(&dir, &scenario.batch)
        .with_context(|| format!("generating the photo batch in {}", dir.display()))?;
    batch_matches(&dir, &manifest).map_err(|why| {
        anyhow::anyhow!(
            "--photos-cache {}: {why}; remove them or use another folder",
            dir.display()
        )
    })?;
    Ok((dir, manifest))
}

/// Whether the folder's photos are exactly the manifest's: every file there with its content
/// hash, and no other file the processor would take for a photo.
pub(super) fn batch_matches(dir: &Path, manifest: &Manifest) -> Result<(), String> {
    let mut problems = Vec::new();
    for file in &manifest.files {
        match std::fs::read(dir.join(&file.name)) {
            Ok(bytes) if photos::content_hash(&bytes) == file.content_hash => {}
            Ok(_) => problems.push(format!("{} differs from the manifest", file.name)),
            Err(_) => problems.push(format!("{} is missing", file.name)),
        }
    }
    let known: std::collections::BTreeSet<&str> =
        manifest.files.iter().map(|f| f.name.as_str()).collect();
    let listed = lockbench_server::processor::list_photos(dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    for path in listed {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if let Some(name) = name.filter(|n| !known.contains(n.as_str())) {
            problems.push(format!("{name} is not in the manifest"));
        }
    }
    match problems.len() {
        0 => Ok(()),
        n if n <= 5 => Err(problems.join(", ")),
        n => Err(format!("{}, and {} more", problems[..5].join(", "), n - 5)),
    }
}

/// Runs a scenario once, end to end, and writes its report (`--repeat` is
/// `decide::repeat`'s, over this).
pub fn run_scenario(opts: &RunOptions) -> anyhow::Result<RunOutcome> {
    let mut scenario = match &opts.scenario_override {
        Some(s) => s.clone(),
        None => {
            let mut sets = opts.sets.clone();
            if let Some(url) = &opts.database_url {
                sets.insert(
                    "server.storage.database_url".into(),
                    toml::Value::String(url.clone()),
                );
            }
            Scenario::load_with(&opts.scenario, &sets)?
        }
    };
    if let (Some(url), Some(_)) = (&opts.database_url, &opts.scenario_override) {
        scenario.server.storage.database_url = Some(url.clone());
    }
    let started_at = utc_now();
    let load_start = machine::load_average();
    let target = opts
        .target
        .clone()
        .or_else(|| scenario.target.as_ref().and_then(|t| t.url.clone()));
    // The report's folder is made before anything starts: a path that cannot be a folder
    // is refused now, not after minutes of load.
    let out_dir = match &opts.out {
        Some(d) => d.clone(),
        None => PathBuf::from("reports")
            .join(&scenario.name)
            .join(started_at.replace(':', "-")),
    };
    let existed = out_dir.exists();
    prepare_out_dir(&out_dir)?;
    if let (Some(t), Some(_)) = (scenario.target.as_mut(), &opts.target) {
        // --target: the app already runs there; the scenario's way of starting one is not
        // used, and its paths in the run's folder name this run's.
        *t = t.measured_as_running(&run_dir(&out_dir));
    }
    let ctx = target::RunCtx {
        scenario: &scenario,
        opts,
        out_dir: &out_dir,
    };
    let launches = scenario.target.as_ref().is_some_and(|t| t.launches());
    let ran = match (&target, launches) {
        (_, true) => external::ExternalTarget::new(&ctx, None)
            .and_then(|mut t| sequence::run(&ctx, &mut t, started_at)),
        (Some(url), false) => external::ExternalTarget::new(&ctx, Some(url))
            .and_then(|mut t| sequence::run(&ctx, &mut t, started_at)),
        (None, false) => reference::ReferenceTarget::new()
            .and_then(|mut t| sequence::run(&ctx, &mut t, started_at)),
    };
    let mut report = match ran {
        Ok(report) => report,
        Err(e) => {
            // A run that could not be carried out leaves no empty report folder behind.
            if !existed {
                let _ = std::fs::remove_dir(&out_dir);
            }
            return Err(e);
        }
    };
    report.git_commit = machine::git_commit();
    report.machine.load_average_start = load_start;
    report.machine.load_average_end = machine::load_average();
    write_report(&report, &out_dir)?;
    if let Some(hub) = opts.live.clone().or_else(live::current) {
        hub.finish_run(&report, &out_dir);
    }
    Ok(RunOutcome { report, out_dir })
}

/// The run's own folder as `{run_dir}` names it: the report's folder, absolute.
pub fn run_dir(out_dir: &Path) -> PathBuf {
    std::path::absolute(out_dir).unwrap_or_else(|_| out_dir.to_owned())
}

/// Makes the report folder, or says why it cannot be one (a file in the way, no permission).
pub fn prepare_out_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() && !dir.is_dir() {
        anyhow::bail!(
            "--out {}: is a file, not a folder for the report",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("--out {}: cannot create the report folder", dir.display()))?;
    let probe = dir.join(".lockbench-write-check");
    std::fs::write(&probe, b"").with_context(|| {
        format!(
            "--out {}: cannot write into the report folder",
            dir.display()
        )
    })?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// The whole scenario as it ran, every default filled in, as the report's
/// `settings_requested` (what `compare` diffs): a database URL's password replaced.
pub(super) fn settings_requested(scenario: &Scenario) -> anyhow::Result<serde_json::Value> {
    let mut v = serde_json::to_value(scenario)?;
    if let Some(map) = v.as_object_mut() {
        map.remove("name");
        map.remove("description");
    }
    if let Some(url) = v["server"]["storage"]["database_url"].as_str() {
        let shown = lockbench_server::storage::config::redact_url(url);
        v["server"]["storage"]["database_url"] = serde_json::Value::String(shown);
    }
    if let Some(t) = &scenario.target {
        v["target"]["env"] = serde_json::to_value(t.masked_env())?;
        if t.env.is_empty() {
            if let Some(target) = v["target"].as_object_mut() {
                target.remove("env");
            }
        }
    }
    Ok(v)
}

/// Writes report.json, report.md and report.html into `dir`.
pub fn write_report(report: &Report, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = serde_json::to_string_pretty(report)?;
    std::fs::write(dir.join("report.json"), json + "\n")?;
    std::fs::write(dir.join("report.md"), report::markdown::render(report))?;
    std::fs::write(dir.join("report.html"), report::html::render(report))?;
    Ok(())
}

pub(super) fn progress_bar(opts: &RunOptions, len: u64) -> indicatif::ProgressBar {
    if !opts.progress {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{elapsed_precise} [{bar:30}] {pos}/{len} photos  {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

pub(super) fn count_text(n: u64) -> String {
    report::format::count(n)
}

fn scenario_info(scenario: &Scenario, opts: &RunOptions) -> ScenarioInfo {
    ScenarioInfo {
        name: scenario.name.clone(),
        description: scenario.description.clone(),
        file: opts.scenario.display().to_string(),
    }
}

fn users_info(scenario: &Scenario) -> UsersInfo {
    let u = &scenario.users;
    UsersInfo {
        pollers: u.pollers,
        poll_interval_ms: u.poll_interval.as_millis() as u64,
        admins: u.admins,
        admin_interval_ms: u.admin_interval.as_millis() as u64,
        kiosks: u.kiosks,
        kiosk_interval_ms: u.kiosk_interval.as_millis() as u64,
    }
}

/// A batch's figures from what its status said last (`processed`, `failed`, `persons`,
/// `uploaded`, `status`), how the wait for it ended and how long it took: to the processor's
/// end, or for a batch that did not end, to the moment the run stopped waiting for it.
pub(super) fn batch_figures(
    status: &serde_json::Value,
    photos: u64,
    ended: BatchEnd,
    duration: Duration,
) -> BatchFigures {
    let processed = status["processed"].as_u64().unwrap_or(0);
    let duration_s = duration.as_secs_f64();
    BatchFigures {
        photos,
        processed,
        failed: status["failed"].as_u64().unwrap_or(0),
        persons: status["persons"].as_u64().unwrap_or(0),
        uploaded: status["uploaded"].as_u64().unwrap_or(0),
        duration_s: (duration_s * 1000.0).round() / 1000.0,
        photos_per_s: if duration_s > 0.0 {
            ((processed as f64 / duration_s) * 100.0).round() / 100.0
        } else {
            0.0
        },
        finished: ended == BatchEnd::Finished,
        ended,
        status: status["status"].as_str().map(str::to_owned),
    }
}

/// The report with the fields every run fills the same way: the scenario, the machine, the
/// users, the load's own figures and time line. Each kind of run then adds what it can see
/// (server counters, the audit, the batch, faults); the verdict comes last, from the gates.
pub(super) fn base_report(
    scenario: &Scenario,
    opts: &RunOptions,
    started_at: String,
    target: Target,
    shared: &Shared,
    load_time: Duration,
) -> Report {
    Report {
        schema_version: report::REPORT_SCHEMA_VERSION,
        lockbench_version: env!("CARGO_PKG_VERSION").to_owned(),
        git_commit: None,
        scenario: scenario_info(scenario, opts),
        started_at,
        target,
        verdict: Verdict {
            passed: false,
            summary: String::new(),
            exit_code: 1,
        },
        settings_requested: serde_json::Value::Null,
        settings_effective: None,
        sqlite_version: None,
        machine: machine::machine(),
        users: users_info(scenario),
        roles: shared.recorder.role_figures(&shared.classes, load_time),
        load_s: (load_time.as_secs_f64() * 1000.0).round() / 1000.0,
        load_cpu_s: shared.load_cpu_s(),
        requests: shared.recorder.endpoint_stats(),
        runner_requests: BTreeMap::new(),
        processor_failures: BTreeMap::new(),
        lock_errors: LockErrors::default(),
        retries: None,
        commit_only_dropped: None,
        commit_only_dropped_by_endpoint: BTreeMap::new(),
        batch: None,
        audit: None,
        wal: None,
        target_database: None,
        faults: Vec::new(),
        restarts: Vec::new(),
        interrupted: false,
        repeat: None,
        gates: Vec::new(),
        timeline: shared.recorder.timeline(),
        notes: Vec::new(),
    }
}
