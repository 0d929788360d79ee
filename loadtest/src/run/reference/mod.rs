//! The reference server as a [`Target`]: lockbench makes a fresh database and photo batch in a
//! temporary folder (and, on PostgreSQL, a schema of the run's own), starts `lockbench serve`
//! with the scenario's settings (`server.rs`), registers the batch's people, posts the batch
//! once the load runs, applies the faults, follows the batch (`../watch.rs`), reads every
//! worker's counters before stopping the server, and audits its database read-only
//! (`figures.rs`). Lock errors come from the server's own counters; every fault is
//! supported.

mod figures;
mod server;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use lockbench_server::app::stats::WorkerStats;
use lockbench_server::photos::Manifest;
use lockbench_server::processor::acks;
use lockbench_server::storage;

use super::faults::FaultRunner;
use super::http;
use super::kill::Kill;
use super::processes::{PgSchema, PgWatch};
use super::scrape::{missing_workers, ServerFigures};
use super::target::{RunCtx, Started, Target, Waited};
use super::watch::{watch_batch, WatchTarget, Watched};
use super::{batch_figures, photo_batch};
use crate::load::{Recorder, Shared};
use crate::report::Report;
use crate::scenario::RoleEndpoints;
use crate::stop::TempFolder;
use figures::{add_server_figures, audit_run, effective_settings, fault_records, reference_notes};
use server::{post_batch, scrape_and_stop, start_reference, Reference};

/// The reference server of one run, and what the run has learnt of it so far.
pub(super) struct ReferenceTarget {
    /// Set by `start`. Dropped before `work` (fields drop in order): a server still running
    /// on an error path is stopped before its folder is removed.
    live: Option<Live>,
    /// Set by `begin`: the batch posted, when, and the faults under way.
    posted: Option<Posted>,
    /// Set by `wait`.
    watched: Option<Watched>,
    /// Set by `stop`: every worker's counters and settings, read before the server stopped.
    scraped: Option<(BTreeMap<String, WorkerStats>, BTreeMap<String, String>)>,
    work: TempFolder,
}

/// Everything `start` brought up.
struct Live {
    photo_dir: PathBuf,
    manifest: Manifest,
    /// PostgreSQL: the run's own schema, dropped when the run ends, whatever happens.
    postgres: Option<PgSchema>,
    server: Reference,
    /// lockbench's own requests that reach the database, on the load's clock.
    runner: Recorder,
    client: reqwest::blocking::Client,
}

struct Posted {
    batch_id: i64,
    at: Instant,
    faults: FaultRunner,
    kills: Vec<Kill>,
    pg_watch: Option<PgWatch>,
}

impl ReferenceTarget {
    pub(super) fn new() -> anyhow::Result<ReferenceTarget> {
        Ok(ReferenceTarget {
            live: None,
            posted: None,
            watched: None,
            scraped: None,
            work: TempFolder::new().context("creating a temporary folder")?,
        })
    }

    fn live(&self) -> anyhow::Result<&Live> {
        self.live
            .as_ref()
            .context("the reference server was not started")
    }
}

impl Target for ReferenceTarget {
    fn kind(&self) -> &'static str {
        "reference"
    }

    fn check_faults(&self, _ctx: &RunCtx<'_>) -> anyhow::Result<()> {
        // Every fault acts on the reference server: its processes, its database, its disk
        // (the scenario refuses the combinations that cannot work, such as a slow disk on
        // PostgreSQL).
        Ok(())
    }

    fn start(&mut self, ctx: &RunCtx<'_>) -> anyhow::Result<Started> {
        let (scenario, opts) = (ctx.scenario, ctx.opts);
        let work = self.work.path();
        let (photo_dir, manifest) = photo_batch(scenario, opts.photos_cache.as_deref(), work)?;
        let postgres = PgSchema::for_scenario(scenario)?;
        let server = start_reference(scenario, opts, work, &photo_dir, postgres.as_ref())?;
        let classes = scenario.users.classes(RoleEndpoints::Reference);
        crate::load::check_env(&classes)?;
        let shared = Arc::new(Shared::new(classes, Some(server.token.clone())));
        let runner = Recorder::new(shared.recorder.started());
        http::register_people(&server.url, &manifest, Some(&runner))
            .context("registering the batch's people")?;
        let url = server.url.clone();
        self.live = Some(Live {
            photo_dir,
            manifest,
            postgres,
            server,
            runner,
            client: http::client()?,
        });
        Ok(Started { url, shared })
    }

    fn load_cap(&self, ctx: &RunCtx<'_>) -> Duration {
        ctx.scenario.duration.max + Duration::from_secs(5)
    }

    fn begin(&mut self, ctx: &RunCtx<'_>, shared: &Arc<Shared>) -> anyhow::Result<()> {
        let live = self.live()?;
        let at = Instant::now();
        let batch_id = post_batch(&live.client, &live.server, &live.photo_dir, &live.runner)?;
        shared.batch_id.store(batch_id, Ordering::Relaxed);
        let context = live
            .server
            .fault_context(live.postgres.as_ref(), shared.recorder.started());
        let faults = &ctx.scenario.faults;
        self.posted = Some(Posted {
            batch_id,
            at,
            faults: FaultRunner::start(faults, context, at),
            kills: Kill::from_faults(faults),
            pg_watch: live.postgres.as_ref().map(|pg| PgWatch::start(&pg.url, at)),
        });
        Ok(())
    }

    fn wait(&mut self, ctx: &RunCtx<'_>, shared: &Shared) -> Waited {
        let (Some(live), Some(posted)) = (self.live.as_ref(), self.posted.as_mut()) else {
            return Waited { interrupted: false };
        };
        let restarts = live.server.data_dir.join("restarts.jsonl");
        let target = WatchTarget {
            client: &live.client,
            url: &live.server.url,
            token: &live.server.token,
            workers: ctx.scenario.server.workers,
            batch_id: posted.batch_id,
            posted: posted.at,
            photos: live.manifest.files.len() as u64,
            photo_dir: &live.photo_dir,
            restarts: &restarts,
        };
        let watched = watch_batch(
            ctx.scenario,
            ctx.opts,
            &target,
            shared,
            &mut posted.kills,
            posted.pg_watch.as_ref(),
            &live.runner,
        );
        let interrupted = watched.interrupted;
        self.watched = Some(watched);
        Waited { interrupted }
    }

    fn stop(&mut self, ctx: &RunCtx<'_>) -> anyhow::Result<()> {
        if let Some(posted) = self.posted.as_mut() {
            posted.pg_watch = None;
        }
        let Some(live) = self.live.as_mut() else {
            return Ok(());
        };
        if let Some(why) = self.watched.as_ref().and_then(|w| w.database_gone.clone()) {
            // Nothing more can be measured or audited: stop everything, then say so (exit
            // 2). The run's schema holds only this run's rows and no later run uses it; it
            // is dropped on the way out when the server answers again, or named for dropping.
            live.server.server.stop();
            bail!("{why}; the run was stopped and no report was written");
        }
        let workers = ctx.scenario.server.workers;
        self.scraped = Some(scrape_and_stop(&live.client, &mut live.server, workers));
        Ok(())
    }

    fn fill(
        &mut self,
        ctx: &RunCtx<'_>,
        shared: &Shared,
        report: &mut Report,
    ) -> anyhow::Result<()> {
        let scenario = ctx.scenario;
        let live = self
            .live
            .as_ref()
            .context("the reference server was not started")?;
        let posted = self.posted.take().context("the batch was not posted")?;
        let watched = self.watched.take().context("the batch was not watched")?;
        let (stats, settings) = self.scraped.take().unwrap_or_default();
        let server_side = ServerFigures::sum(stats.values());
        let data_dir = &live.server.data_dir;
        let processor_acks =
            acks::read_acks(&data_dir.join(acks::ACKS_FILE)).with_context(|| {
                format!(
                    "reading the processor's acknowledgements in {}",
                    data_dir.display()
                )
            })?;
        let (audit, batch_row) = audit_run(
            live.postgres.as_ref(),
            &live.server.db,
            posted.batch_id,
            &live.manifest,
            shared,
            &processor_acks,
            server_side.dropped_unaudited(),
        )?;
        report.faults = fault_records(posted.faults, posted.kills, watched.max_done);
        report.restarts = crate::run::restarts::read_restarts(
            &data_dir.join("restarts.jsonl"),
            shared.recorder.started_wall(),
        )?;
        report.notes = reference_notes(
            scenario,
            &watched,
            &report.restarts,
            &live.server,
            live.postgres.as_ref(),
            &settings,
            stats.len() as u32,
        );
        report.runner_requests = live.runner.endpoint_stats();
        report.settings_effective = Some(effective_settings(&settings));
        report.sqlite_version = live
            .postgres
            .is_none()
            .then(|| storage::sqlite_version().to_owned());
        add_server_figures(
            report,
            &server_side,
            shared.recorder.lock_visible_total(),
            live.postgres.is_none().then_some(watched.wal_max),
        );
        report.lock_errors.missing_workers = missing_workers(&stats, scenario.server.workers);
        report.processor_failures = server_side.processor_failures.clone();
        let total = live.manifest.files.len() as u64;
        report.batch = Some(batch_figures(
            &batch_row.as_status(),
            total,
            watched.ended,
            watched.duration,
        ));
        report.audit = Some(audit);
        // The server's own log, kept beside the report: every lock error it counted is one
        // line.
        let log = self.work.path().join("server.log");
        if let Err(e) = std::fs::copy(&log, ctx.out_dir.join("server.log")) {
            report
                .notes
                .push(format!("the server's log could not be kept: {e}"));
        }
        Ok(())
    }
}
