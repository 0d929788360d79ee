//! The reference server of one run: started as `lockbench serve` in a process group of its
//! own with the scenario's settings, given the batch as an admin would, and read before it
//! is stopped (every worker's `/api/stats` and `/api/settings`). Processes and requests only;
//! the audit and the report's figures are `figures.rs`'s.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use lockbench_server::app::stats::WorkerStats;
use lockbench_server::app::BatchAccepted;
use lockbench_server::serve::ServeConfig;
use lockbench_server::storage::StorageConfig;

use super::super::faults::FaultContext;
use super::super::http::{self, Again};
use super::super::processes::{token, PgSchema, ServerProcess};
use super::super::scrape::{scrape_all, scrape_stats};
use super::super::RunOptions;
use crate::load::Recorder;
use crate::scenario::{Fault, Scenario, ServerSettings};

/// The reference server of one run and what the runner needs to talk to it.
pub(super) struct Reference {
    pub(super) server: ServerProcess,
    pub(super) url: String,
    pub(super) token: String,
    exe: PathBuf,
    pub(super) db: PathBuf,
    pub(super) data_dir: PathBuf,
    pub(super) storage: StorageConfig,
    sync_delay_control: PathBuf,
}

impl Reference {
    /// What the fault processes need to reach this server's database.
    pub(super) fn fault_context(
        &self,
        postgres: Option<&PgSchema>,
        load_started: Instant,
    ) -> FaultContext {
        FaultContext {
            exe: self.exe.clone(),
            db: self.db.clone(),
            postgres: postgres.map(|pg| (pg.url.clone(), pg.schema.clone())),
            sync_delay_control: self.sync_delay_control.clone(),
            load_started,
        }
    }
}

/// Starts the run's `lockbench serve` with the scenario's settings (one typed config, handed
/// over as it is), its batches confined to `photo_dir`.
pub(super) fn start_reference(
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
        // Batches are confined to the batch's own folder: nothing else of this machine.
        photo_root: Some(photo_dir.to_path_buf()),
        sync_delay_control: slow_disk.then(|| sync_delay_control.clone()),
        ..ServeConfig::default()
    };
    let exe = match &opts.server_exe {
        Some(e) => e.clone(),
        None => std::env::current_exe().context("finding lockbench's own binary")?,
    };
    let token = token();
    let server = ServerProcess::serve(&exe, &serve, &token, &work.join("server.log"))?;
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
pub(super) fn post_batch(
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
    let accepted: BatchAccepted = response
        .json()
        .context("POST /api/batches answered something else than its batch")?;
    Ok(accepted.batch_id)
}

/// Every worker's `/api/stats` and `/api/settings`, read before the server is stopped.
pub(super) fn scrape_and_stop(
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
