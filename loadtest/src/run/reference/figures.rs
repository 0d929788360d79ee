//! What the reference server's run tells the report once the server has stopped: its own
//! counters summed over the workers, the read-only audit of its database against what was
//! acknowledged, each worker's settings as its connections reported them, the faults'
//! records, and the notes on what could not be seen. Reads finished data; starts nothing.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use lockbench_server::app::stats::WorkerSettingsReport;
use lockbench_server::photos::Manifest;
use lockbench_server::processor::acks;
use lockbench_server::storage::{postgres, ReadOnlyDb};

use super::super::audit::{audit, Acknowledged, AuditDb, BatchRow};
use super::super::faults::{FaultRecord, FaultRunner};
use super::super::kill::Kill;
use super::super::processes::PgSchema;
use super::super::scrape::ServerFigures;
use super::super::watch::Watched;
use super::server::Reference;
use crate::load::Shared;
use crate::report::{BatchEnd, LockErrors, LockSource, Report, WalFigures, WorkerSettings};
use crate::scenario::{Scenario, REGISTER};

/// Every fault's record, in the order they started: the fault runner's and the kills'.
pub(super) fn fault_records(
    runner: FaultRunner,
    kills: Vec<Kill>,
    max_done: u64,
) -> Vec<FaultRecord> {
    let mut faults = runner.finish();
    faults.extend(kills.into_iter().map(|k| k.into_record(max_done)));
    faults.sort_by(|a, b| {
        a.started_s
            .unwrap_or(f64::MAX)
            .total_cmp(&b.started_s.unwrap_or(f64::MAX))
    });
    faults
}

/// The server's own counters in the report: lock errors by code and endpoint, retries,
/// commit-only drops, and on SQLite the WAL figures (the largest size the runner saw,
/// `wal_seen`, or the server reported).
pub(super) fn add_server_figures(
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
        unattributed: 0,
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
pub(super) fn audit_run(
    postgres: Option<&PgSchema>,
    db: &Path,
    batch_id: i64,
    manifest: &Manifest,
    shared: &Shared,
    processor_acks: &[acks::Ack],
    dropped_unaudited: u64,
) -> anyhow::Result<(crate::report::Audit, BatchRow)> {
    let acks: Vec<String> = shared
        .acks_of(REGISTER)
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
pub(super) fn reference_notes(
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
            lockbench_server::storage::config::redact_url(&pg.url),
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
pub(super) fn effective_settings(settings: &BTreeMap<String, String>) -> Vec<WorkerSettings> {
    settings
        .values()
        .filter_map(|text| serde_json::from_str::<WorkerSettingsReport>(text).ok())
        .map(|r| WorkerSettings {
            worker: r.worker,
            pid: r.pid,
            connections: r
                .effective
                .iter()
                .filter_map(|c| serde_json::to_value(c).ok())
                .collect(),
        })
        .collect()
}

/// The PostgreSQL server version one worker's connections report.
fn settings_effective_version(settings: &BTreeMap<String, String>) -> String {
    settings
        .values()
        .filter_map(|t| serde_json::from_str::<WorkerSettingsReport>(t).ok())
        .find_map(|r| {
            r.effective
                .into_iter()
                .find_map(|c| c.postgres.map(|pg| pg.server_version))
        })
        .unwrap_or_else(|| "(version not reported)".into())
}
