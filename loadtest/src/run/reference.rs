//! A run against the reference server: the workers started as child processes, the batch
//! posted and watched until it is done (plus the tail), the faults applied, then the
//! server's own counters, the read-only audit and the report. Owns the sequence only: the
//! processes, scrapes, audit and gates each have a file of their own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use lockbench_server::app::stats::WorkerStats;
use lockbench_server::photos::Manifest;
use lockbench_server::serve::ServeConfig;
use lockbench_server::storage::{self, postgres, ReadOnlyDb, StorageConfig};

use super::audit::{audit, AuditDb};
use super::gates::judge;
use super::kill::{Kill, KillEnv};
use super::processes::{token, PgSchema, PgWatch, ServerProcess};
use super::scrape::{any_stats, missing_workers, scrape_all, scrape_stats, ServerFigures};
use super::{base_report, batch_figures, photo_batch, progress_bar, RunOptions};
use crate::faults::{FaultContext, FaultRecord, FaultRunner};
use crate::http::{self, Again};
use crate::load::{self, Recorder, Shared};
use crate::report::{BatchEnd, LockErrors, LockSource, Report, Target, WalFigures, WorkerSettings};
use crate::scenario::{Fault, Scenario};

/// The reference server of one run and what the runner needs to talk to it.
struct Reference {
    server: ServerProcess,
    url: String,
    token: String,
    exe: PathBuf,
    db: PathBuf,
    data_dir: PathBuf,
    storage: StorageConfig,
    sync_delay_control: PathBuf,
}

impl Reference {
    /// What the fault processes need to reach this server's database.
    fn fault_context(&self, postgres: Option<&PgSchema>, load_started: Instant) -> FaultContext {
        FaultContext {
            exe: self.exe.clone(),
            db: self.db.clone(),
            postgres: postgres.map(|pg| (pg.url.clone(), pg.schema.clone())),
            sync_delay_control: self.sync_delay_control.clone(),
            load_started,
        }
    }
}

/// Writes the server's settings file and starts `lockbench serve` with it.
fn start_reference(
    scenario: &Scenario,
    opts: &RunOptions,
    work: &Path,
    postgres: Option<&PgSchema>,
) -> anyhow::Result<Reference> {
    let db = work.join("app.db");
    let data_dir = work.join("data");
    let mut storage = scenario.server.storage.clone();
    if let Some(pg) = postgres {
        storage.schema = Some(pg.schema.clone());
    }
    let sync_delay_control = work.join("sync_delay_ms");
    let slow_disk = scenario
        .faults
        .iter()
        .any(|f| matches!(f, Fault::SlowDisk { .. }));
    let serve = ServeConfig {
        storage: storage.clone(),
        retry: scenario.server.retry.clone(),
        processor: scenario.server.processor.clone(),
        workers: scenario.server.workers,
        threads: scenario.server.threads,
        port: 0,
        db: db.clone(),
        data_dir: Some(data_dir.clone()),
        sync_delay_control: slow_disk.then(|| sync_delay_control.clone()),
        ..ServeConfig::default()
    };
    let config_file = work.join("serve.toml");
    std::fs::write(&config_file, toml::to_string(&serve)?)?;
    let exe = match &opts.server_exe {
        Some(e) => e.clone(),
        None => std::env::current_exe().context("finding lockbench's own binary")?,
    };
    let token = token();
    let server = ServerProcess::serve(&exe, &config_file, &token, &work.join("server.log"))?;
    Ok(Reference {
        url: server.url.clone(),
        server,
        token,
        exe,
        db,
        data_dir,
        storage,
        sync_delay_control,
    })
}

/// The admin posts the batch as a person would: a 503 ("database is locked", with
/// Retry-After) is answered by trying again, up to a point.
fn post_batch(
    client: &reqwest::blocking::Client,
    server: &Reference,
    photo_dir: &Path,
    runner: &Recorder,
) -> anyhow::Result<i64> {
    let (response, tries) = http::send_recorded(
        Some((runner, "POST /api/batches")),
        || {
            client
                .post(format!("{}/api/batches", server.url))
                .bearer_auth(&server.token)
                .json(&serde_json::json!({"dir": photo_dir}))
        },
        Again::ADMIN,
    )
    .context("POST /api/batches")?;
    let status = response.status();
    if !status.is_success() {
        bail!(
            "POST /api/batches answered {status} (try {tries}): {}",
            response.text().unwrap_or_default()
        );
    }
    response.json::<serde_json::Value>()?["batch_id"]
        .as_i64()
        .context("POST /api/batches gave no batch_id")
}

/// How the watch over the batch ended, and what it saw.
#[derive(Default)]
struct Watched {
    interrupted: bool,
    /// Why the PostgreSQL server is taken for gone, when it went away mid-run.
    database_gone: Option<String>,
    batch_done: Option<Duration>,
    status: serde_json::Value,
    wal_max: u64,
    /// When the watch ended, since the batch was posted.
    until: Duration,
}

/// Polls the batch's status (and the WAL file) until the batch is done plus the tail, the
/// cap is reached, Ctrl-C is pressed or PostgreSQL goes away; applies kill-worker faults
/// when the batch reaches their photo.
fn watch_batch(
    scenario: &Scenario,
    opts: &RunOptions,
    reference: &Reference,
    shared: &Shared,
    batch: (i64, Instant, u64, &Path),
    kills: &mut [Kill],
    pg_watch: Option<&PgWatch>,
    runner: &Recorder,
) -> Watched {
    let (batch_id, posted, total, photo_dir) = batch;
    let Ok(client) = http::client() else {
        return Watched::default();
    };
    let url = reference.url.as_str();
    let restarts_file = reference.data_dir.join("restarts.jsonl");
    let bar = progress_bar(opts, total);
    let mut w = Watched::default();
    let mut processor_ended: Option<Duration> = None;
    let mut last_check = Instant::now();
    let mut last_wal: Option<Instant> = None;
    loop {
        // A kill waits for a photo: look closely while one is pending.
        let pending = kills.iter().any(Kill::waiting);
        std::thread::sleep(Duration::from_millis(if pending { 20 } else { 500 }));
        if let Ok(s) = client
            .get(format!("{url}/api/batches/{batch_id}/status"))
            .bearer_auth(&reference.token)
            .send()
            .and_then(|r| r.json::<serde_json::Value>())
        {
            if s["status"].is_string() {
                w.status = s;
            }
        }
        let processed = w.status["processed"].as_u64().unwrap_or(0);
        shared.recorder.sample_photos(processed);
        // The WAL's size as the server sees it (a worker's /api/stats), never the file
        // itself; every half second, however closely a pending kill makes the loop look.
        if last_wal.is_none_or(|t| t.elapsed() >= Duration::from_millis(500)) {
            last_wal = Some(Instant::now());
            let wal_now = any_stats(&client, url).map_or(0, |s| s.wal_bytes);
            shared.recorder.sample_wal(wal_now);
            w.wal_max = w.wal_max.max(wal_now);
        }
        if crate::stop::interrupted() {
            w.interrupted = true;
            break;
        }
        if let Some(why) = pg_watch.and_then(PgWatch::gone) {
            w.database_gone = Some(why);
            break;
        }
        let env = KillEnv {
            client: &client,
            url,
            token: &reference.token,
            workers: scenario.server.workers,
            batch_id,
            photo_dir,
            restarts: &restarts_file,
            recorder: &shared.recorder,
            runner,
        };
        for kill in kills.iter_mut() {
            kill.step(processed, &env);
        }
        bar.set_position(processed);
        bar.set_message(format!(
            "{} requests, {} lock errors seen by clients",
            shared.recorder.requests_total(),
            shared.recorder.lock_visible_total()
        ));
        if w.batch_done.is_none() && w.status["status"] == "done" {
            w.batch_done = Some(posted.elapsed());
        }
        // The batch row may never say "done" when the app's last write fails: the workers'
        // stats say when the processor itself has gone through the batch.
        if w.batch_done.is_none()
            && processor_ended.is_none()
            && last_check.elapsed() >= Duration::from_secs(3)
        {
            last_check = Instant::now();
            if processor_finished(&client, url, scenario.server.workers, batch_id) {
                processor_ended = Some(posted.elapsed());
            }
        }
        let ended_at = w.batch_done.or(processor_ended);
        let tail_over = ended_at.is_some_and(|d| posted.elapsed() >= d + scenario.duration.tail);
        if tail_over || posted.elapsed() >= scenario.duration.max {
            break;
        }
    }
    bar.finish_and_clear();
    w.until = posted.elapsed();
    w
}

/// Whether a worker's /api/stats says the processor has gone through the batch.
fn processor_finished(
    client: &reqwest::blocking::Client,
    url: &str,
    workers: u32,
    batch_id: i64,
) -> bool {
    scrape_stats(client, url, workers)
        .values()
        .any(|s| s.batches_finished.contains(&batch_id))
}

pub(super) fn run_reference(
    scenario: &Scenario,
    opts: &RunOptions,
    started_at: String,
    out_dir: &Path,
) -> anyhow::Result<Report> {
    let work = crate::stop::TempFolder::new().context("creating a temporary folder")?;
    let (photo_dir, manifest) = photo_batch(scenario, opts.photos_cache.as_deref(), work.path())?;
    // PostgreSQL: a schema of this run's own, dropped when the run ends (whatever happens).
    let postgres = PgSchema::for_scenario(scenario)?;
    let mut reference = start_reference(scenario, opts, work.path(), postgres.as_ref())?;
    let shared = Arc::new(Shared::new(
        scenario.users.clone(),
        None,
        Some(reference.token.clone()),
    ));
    // lockbench's own requests that reach the database, on the load's clock.
    let runner = Recorder::new(shared.recorder.started());
    http::register_people(&reference.url, &manifest, Some(&runner))
        .context("registering the batch's people")?;

    let cap = scenario.duration.max + Duration::from_secs(5);
    let attack = load::start(&reference.url, &shared, cap);
    let client = http::client()?;
    let posted = Instant::now();
    let batch_id = post_batch(&client, &reference, &photo_dir, &runner)?;
    shared.batch_id.store(batch_id, Ordering::Relaxed);
    let context = reference.fault_context(postgres.as_ref(), shared.recorder.started());
    let fault_runner = FaultRunner::start(&scenario.faults, context, posted);
    let mut kills = Kill::from_faults(&scenario.faults);
    let pg_watch = postgres.as_ref().map(|pg| PgWatch::start(&pg.url, posted));
    let total = manifest.files.len() as u64;
    let watched = watch_batch(
        scenario,
        opts,
        &reference,
        &shared,
        (batch_id, posted, total, &photo_dir),
        &mut kills,
        pg_watch.as_ref(),
        &runner,
    );
    shared.stop_load();
    let load_time = shared.recorder.started().elapsed();
    let faults = fault_records(fault_runner, kills);
    drop(pg_watch);
    if let Some(why) = watched.database_gone {
        // Nothing more can be measured or audited: stop everything, then say so (exit 2).
        // The run's schema holds only this run's rows and no later run uses it; it is
        // dropped on the way out when the server answers again, or named for dropping.
        reference.server.stop();
        let _ = attack.join();
        bail!("{why}; the run was stopped and no report was written");
    }
    match attack.join() {
        Ok(result) => result.context("the load generator failed")?,
        Err(_) => bail!("the load generator panicked"),
    }

    let (stats, settings) = scrape_and_stop(&client, &mut reference, scenario.server.workers);

    let server_side = ServerFigures::sum(stats.values());
    let audit = audit_run(
        postgres.as_ref(),
        &reference.db,
        batch_id,
        &manifest,
        &shared,
    )?;
    let mut report = base_report(
        scenario,
        opts,
        started_at,
        Target {
            kind: "reference".into(),
            url: reference.url.clone(),
        },
        &shared,
        load_time,
    );
    report.restarts = crate::faults::read_restarts(
        &reference.data_dir.join("restarts.jsonl"),
        shared.recorder.started_wall(),
    );
    report.notes = reference_notes(
        scenario,
        &watched,
        &report.restarts,
        &reference,
        postgres.as_ref(),
        &settings,
        stats.len() as u32,
    );
    report.settings_requested = super::settings_requested(scenario)?;
    report.runner_requests = runner.endpoint_stats();
    report.settings_effective = Some(effective_settings(&settings));
    report.sqlite_version = postgres
        .is_none()
        .then(|| storage::sqlite_version().to_owned());
    add_server_figures(
        &mut report,
        &server_side,
        shared.recorder.lock_visible_total(),
        postgres.is_none().then_some(watched.wal_max),
    );
    report.lock_errors.missing_workers = missing_workers(&stats, scenario.server.workers);
    let (ended, duration) = match (watched.batch_done, watched.interrupted) {
        (Some(done), _) => (BatchEnd::Finished, done),
        (None, true) => (BatchEnd::Interrupted, watched.until),
        (None, false) => (BatchEnd::Cap, watched.until),
    };
    report.batch = Some(batch_figures(&watched.status, total, ended, duration));
    report.audit = Some(audit);
    report.faults = faults;
    report.interrupted = watched.interrupted;
    judge(scenario, &mut report);
    drop(reference);
    // The server's own log, kept beside the report: every lock error it counted is one line.
    let log = work.path().join("server.log");
    if let Err(e) = std::fs::copy(&log, out_dir.join("server.log")) {
        report
            .notes
            .push(format!("the server's log could not be kept: {e}"));
    }
    drop(postgres);
    drop(work);
    Ok(report)
}

/// Every fault's record, in the order they started: the fault runner's and the kills'.
fn fault_records(runner: FaultRunner, kills: Vec<Kill>) -> Vec<FaultRecord> {
    let mut faults = runner.finish();
    faults.extend(kills.into_iter().map(Kill::into_record));
    faults.sort_by(|a, b| {
        a.started_s
            .unwrap_or(f64::MAX)
            .total_cmp(&b.started_s.unwrap_or(f64::MAX))
    });
    faults
}

/// Every worker's `/api/stats` and `/api/settings`, read before the server is stopped.
fn scrape_and_stop(
    client: &reqwest::blocking::Client,
    reference: &mut Reference,
    workers: u32,
) -> (BTreeMap<String, WorkerStats>, BTreeMap<String, String>) {
    let stats = scrape_stats(client, &reference.url, workers);
    let settings = scrape_all(
        client,
        &format!("{}/api/settings", reference.url),
        Some(&reference.token),
        workers,
    );
    reference.server.stop();
    (stats, settings)
}

/// The server's own counters in the report: lock errors by code and endpoint, retries,
/// commit-only drops, and on SQLite the WAL figures (the largest size the runner saw,
/// `wal_seen`, or the server reported).
fn add_server_figures(
    report: &mut Report,
    server_side: &ServerFigures,
    client_visible: u64,
    wal_seen: Option<u64>,
) {
    report.lock_errors = LockErrors {
        total: server_side.lock_by_code.values().sum(),
        source: LockSource::ServerCounters,
        server_errors_unexplained: 0,
        by_code: server_side.lock_by_code.clone(),
        by_endpoint: server_side.lock_by_endpoint.clone(),
        client_visible,
        missing_workers: Vec::new(),
    };
    report.retries = Some(server_side.retries);
    report.commit_only_dropped = Some(server_side.commit_only_dropped);
    report.commit_only_dropped_by_endpoint = server_side.dropped_by_endpoint.clone();
    report.wal = wal_seen.map(|seen| WalFigures {
        max_bytes: seen.max(server_side.wal_bytes),
        checkpoints_ok: server_side.checkpoints_ok,
        checkpoints_busy: server_side.checkpoints_busy,
    });
}

/// The audit of the run's database, opened read-only: the SQLite file or the run's schema.
fn audit_run(
    postgres: Option<&PgSchema>,
    db: &Path,
    batch_id: i64,
    manifest: &Manifest,
    shared: &Shared,
) -> anyhow::Result<crate::report::Audit> {
    let acks: Vec<String> = shared
        .kiosk_acks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter_map(|b| b["email"].as_str().map(str::to_owned))
        .collect();
    let mut audit_db = match postgres {
        Some(pg) => AuditDb::Postgres(
            postgres::ReadOnlyPg::open(&pg.url, &pg.schema)
                .context("opening the PostgreSQL schema read-only for the audit")?,
        ),
        None => AuditDb::Sqlite(ReadOnlyDb::open(db)?),
    };
    audit(&mut audit_db, batch_id, manifest, &acks).context("auditing the database")
}

/// The report's notes on a reference run: how it ended, what could not be seen, and on
/// PostgreSQL which server and schema.
fn reference_notes(
    scenario: &Scenario,
    watched: &Watched,
    restarts: &[crate::report::RestartRecord],
    reference: &Reference,
    postgres: Option<&PgSchema>,
    settings: &BTreeMap<String, String>,
    answered: u32,
) -> Vec<String> {
    let mut notes = Vec::new();
    if watched.interrupted {
        notes.push("interrupted by Ctrl-C: the load, the batch and the server were stopped early; the figures cover the run up to then".into());
    }
    if !restarts.is_empty() {
        notes.push(restarts_note(restarts));
    }
    let workers = scenario.server.workers;
    if answered < workers {
        notes.push(format!(
            "server-side counters from {answered} of {workers} workers only (the others never answered /api/stats): every server-side count is a lower bound"
        ));
    }
    if watched.batch_done.is_none() && !watched.interrupted {
        notes.push(format!(
            "the batch did not finish within the cap of {:?}",
            scenario.duration.max
        ));
    }
    if let Some(pg) = postgres {
        notes.push(format!(
            "database: PostgreSQL {} at {}, in the schema {} made for this run and dropped after it; isolation {}; no WAL file or SQLite version to report",
            settings_effective_version(settings),
            postgres::redact_url(&pg.url),
            pg.schema,
            reference.storage.isolation.as_sql().to_ascii_lowercase()
        ));
    }
    notes
}

fn restarts_note(restarts: &[crate::report::RestartRecord]) -> String {
    let gave_up = restarts.iter().any(|r| r.action == "gave-up");
    format!(
        "{} worker restart{} by the supervisor{}; the server's counters survive a restart (each worker keeps them in a file), so lock errors before a restart are in the totals",
        restarts.len(),
        if restarts.len() == 1 { "" } else { "s" },
        if gave_up { ", and then it gave up" } else { "" }
    )
}

/// Each worker's connections' settings as read back from SQLite or PostgreSQL.
fn effective_settings(settings: &BTreeMap<String, String>) -> Vec<WorkerSettings> {
    settings
        .iter()
        .filter_map(|(w, text)| {
            let v: serde_json::Value = serde_json::from_str(text).ok()?;
            Some(WorkerSettings {
                worker: w.parse().ok()?,
                pid: v["pid"].as_u64().unwrap_or(0) as u32,
                connections: v["effective"].as_array().cloned().unwrap_or_default(),
            })
        })
        .collect()
}

/// The PostgreSQL server version one worker's connections report.
fn settings_effective_version(settings: &BTreeMap<String, String>) -> String {
    settings
        .values()
        .filter_map(|t| serde_json::from_str::<serde_json::Value>(t).ok())
        .find_map(|v| {
            v["effective"]
                .as_array()?
                .iter()
                .find_map(|c| c["postgres"]["server_version"].as_str().map(str::to_owned))
        })
        .unwrap_or_else(|| "(version not reported)".into())
}
