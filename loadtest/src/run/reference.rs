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
use lockbench_server::processor::acks;
use lockbench_server::serve::ServeConfig;
use lockbench_server::storage::{self, postgres, ReadOnlyDb, StorageConfig};

use super::audit::{audit, Acknowledged, AuditDb, BatchRow};
use super::gates::judge;
use super::kill::Kill;
use super::processes::{token, PgSchema, PgWatch, ServerProcess};
use super::scrape::{missing_workers, scrape_all, scrape_stats, ServerFigures};
use super::watch::{watch_batch, WatchTarget, Watched};
use super::{base_report, batch_figures, photo_batch, RunOptions};
use crate::faults::{FaultContext, FaultRecord, FaultRunner};
use crate::http::{self, Again};
use crate::load::{self, Recorder, Shared};
use crate::report::{BatchEnd, LockErrors, LockSource, Report, Target, WalFigures, WorkerSettings};
use crate::scenario::{Fault, Scenario, ServerSettings};

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

/// Writes the server's settings file and starts `lockbench serve` with it; batches are
/// confined to `photo_dir`.
fn start_reference(
    scenario: &Scenario,
    opts: &RunOptions,
    work: &Path,
    photo_dir: &Path,
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
        app: ServerSettings {
            storage: storage.clone(),
            ..scenario.server.clone()
        },
        port: 0,
        db: db.clone(),
        data_dir: Some(data_dir.clone()),
        photo_root: Some(photo_dir.to_path_buf()),
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
    let mut reference =
        start_reference(scenario, opts, work.path(), &photo_dir, postgres.as_ref())?;
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
    let restarts_file = reference.data_dir.join("restarts.jsonl");
    let target = WatchTarget {
        client: &client,
        url: &reference.url,
        token: &reference.token,
        workers: scenario.server.workers,
        batch_id,
        posted,
        photos: total,
        photo_dir: &photo_dir,
        restarts: &restarts_file,
    };
    let watched = watch_batch(
        scenario,
        opts,
        &target,
        &shared,
        &mut kills,
        pg_watch.as_ref(),
        &runner,
    );
    shared.stop_load();
    let load_time = shared.recorder.started().elapsed();
    let faults = fault_records(fault_runner, kills, watched.max_done);
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
    let acks = acks::read_acks(&reference.data_dir.join(acks::ACKS_FILE)).with_context(|| {
        format!(
            "reading the processor's acknowledgements in {}",
            reference.data_dir.display()
        )
    })?;
    let (audit, batch_row) = audit_run(
        postgres.as_ref(),
        &reference.db,
        batch_id,
        &manifest,
        &shared,
        &acks,
        server_side.dropped_unaudited(),
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
    report.processor_failures = server_side.processor_failures.clone();
    report.batch = Some(batch_figures(
        &serde_json::json!({
            "processed": batch_row.photos,
            "failed": batch_row.failed,
            "persons": batch_row.persons,
            "uploaded": batch_row.uploaded,
            "status": batch_row.status,
        }),
        total,
        watched.ended,
        watched.duration,
    ));
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
fn fault_records(runner: FaultRunner, kills: Vec<Kill>, max_done: u64) -> Vec<FaultRecord> {
    let mut faults = runner.finish();
    faults.extend(kills.into_iter().map(|k| k.into_record(max_done)));
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
    processor_acks: &[acks::Ack],
    dropped_unaudited: u64,
) -> anyhow::Result<(crate::report::Audit, BatchRow)> {
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
    let acked = Acknowledged {
        registrations: &acks,
        processor: processor_acks,
        dropped_unaudited,
    };
    audit(&mut audit_db, batch_id, manifest, &acked).context("auditing the database")
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
        notes.push("interrupted (Ctrl-C or a termination signal): the load, the batch and the server were stopped early; the figures cover the run up to then, and photos the processor had not reached are counted as not processed, not as lost".into());
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
    match (watched.ended, &watched.abandoned) {
        (BatchEnd::Cap, _) => notes.push(format!(
            "the batch did not finish within the cap (duration.max = {}); photos the processor had not reached are counted as not processed, not as lost",
            humantime::format_duration(scenario.duration.max)
        )),
        (BatchEnd::Abandoned, Some(why)) => notes.push(format!(
            "the run stopped waiting for the batch: {why}; photos the processor had not reached are counted as not processed, not as lost"
        )),
        _ => {}
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
