//! A user's own app as a [`Target`]: one that already runs (`--target` or `[target].url`),
//! or one lockbench starts for the run (`[target].command`, `launch.rs`). The load is the
//! scenario's `[[users]]` classes, or its roles through `[endpoints]`; the app's batch is
//! posted and watched when `[endpoints.batch]` is set; lock errors come from the app's log
//! when `[target].log` is set (or its output, for an app lockbench starts; `follow.rs`: one
//! per record, tied to the request whose path it names), else only from what the clients
//! saw; the audit reads `[target].database` read-only. An app that already runs gets no
//! fault: lockbench never stops or writes to it. An app lockbench starts may get a write
//! lock or a long reader on a database the run owns (`database_owned`).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use lockbench_server::photos::Manifest;

use super::audit::{audit_target, check_target, TargetAccess};
use super::faults::{FaultContext, FaultRecord, FaultRunner};
use super::follow::{LogCount, LogFollower};
use super::http;
use super::launch::{free_port, RunningApp};
use super::launch_kill::GroupKills;
use super::target::{RunCtx, Started, Target, Waited};
use super::{batch_figures, count_text, photo_batch, progress_bar, RunOptions};
use crate::load::{Recorder, Shared};
use crate::report::{
    Audit, BatchEnd, BatchFigures, LockErrors, LockSource, Report, TargetDatabase,
};
use crate::scenario::{EndpointSpec, Endpoints, RoleEndpoints, Scenario, TargetSpec, UserClass};
use crate::stop::TempFolder;

/// The external app's batch, once posted: its id, and what its status endpoint last said.
struct ExternalBatch {
    id: i64,
    photos: u64,
    status: serde_json::Value,
    posted: Instant,
    /// When the status first said "done".
    done: Option<Duration>,
    /// When the status first said "done" or "failed": the processor stopped.
    ended: Option<Duration>,
    /// When the run stopped waiting for it (since the post).
    watched_until: Option<Duration>,
}

impl ExternalBatch {
    /// Just posted: nothing known of it yet but its id.
    fn posted(id: i64, photos: u64) -> ExternalBatch {
        ExternalBatch {
            id,
            photos,
            status: serde_json::Value::Null,
            posted: Instant::now(),
            done: None,
            ended: None,
            watched_until: None,
        }
    }

    /// Takes in what its status endpoint answered: its figures, and when it was first done
    /// or ended.
    fn saw_status(&mut self, body: &str) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
            self.status = v;
        }
        if self.done.is_none() && self.status["status"] == "done" {
            self.done = Some(self.posted.elapsed());
        }
        if self.ended.is_none() && matches!(self.status["status"].as_str(), Some("done" | "failed"))
        {
            self.ended = Some(self.posted.elapsed());
        }
    }

    /// How the wait for it ended, and when.
    fn end(&self, interrupted: bool) -> (BatchEnd, Duration) {
        let until = self.watched_until.unwrap_or_else(|| self.posted.elapsed());
        match (self.done, self.ended) {
            (Some(done), _) => (BatchEnd::Finished, done),
            (None, Some(ended)) => (BatchEnd::Failed, ended),
            (None, None) if interrupted => (BatchEnd::Interrupted, until),
            (None, None) => (BatchEnd::Cap, until),
        }
    }

    /// Its figures for the report, from what its status endpoint last said.
    fn figures(&self, interrupted: bool) -> crate::report::BatchFigures {
        let mut status = self.status.clone();
        if status["processed"].is_null() {
            status["processed"] = serde_json::json!(0);
        }
        let (ended, duration) = self.end(interrupted);
        batch_figures(&status, self.photos, ended, duration)
    }
}

fn fill_spec(template: &str, batch: i64, photos: &Path) -> String {
    template
        .replace("{batch}", &batch.to_string())
        .replace("{photos}", &photos.display().to_string())
        .replace("{user}", "0")
        .replace("{n}", "0")
        .replace("{since}", "0")
}

/// Sends one of the runner's own requests (not counted in the report) to the external app.
fn external_request(
    client: &reqwest::blocking::Client,
    url: &str,
    spec: &EndpointSpec,
    batch: i64,
    photos: &Path,
) -> anyhow::Result<(u16, String)> {
    let method = reqwest::Method::from_bytes(spec.method.as_bytes())
        .with_context(|| format!("method {:?}", spec.method))?;
    let full = format!("{url}{}", fill_spec(&spec.path, batch, photos));
    let mut rb = client.request(method, &full);
    if let Some(body) = &spec.body {
        let text = fill_spec(body, batch, photos);
        rb = rb
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(text);
    }
    let response = rb
        .send()
        .with_context(|| format!("{} {full}", spec.method))?;
    let status = response.status().as_u16();
    Ok((status, response.text().unwrap_or_default()))
}

/// An app that is already running, and what the run has learnt of it so far.
pub(super) struct ExternalTarget {
    url: String,
    /// `[endpoints]`: the roles' requests, and the batch to post and follow.
    endpoints: Option<Endpoints>,
    classes: Vec<UserClass>,
    /// What `[target]` lets lockbench read, checked before any load starts.
    access: TargetAccess,
    /// `[endpoints.batch]`: the photo batch to post, and the batch once posted.
    photos: Option<(PathBuf, Manifest)>,
    batch: Option<ExternalBatch>,
    follower: Option<LogFollower>,
    /// The app's lock errors from its log, once the follower has read it to its end.
    log_count: Option<LogCount>,
    /// lockbench's own requests to the app (posting the batch, asking its status).
    runner: Option<Recorder>,
    client: reqwest::blocking::Client,
    load_started: Option<Instant>,
    work: TempFolder,
    /// `[target] command`: the app lockbench starts for this run.
    launch: Option<Launch>,
    /// Its faults (a lock or a reader on the database the run owns), once the load runs.
    faults: Option<FaultRunner>,
    /// Its `kill-worker` faults, once the load runs.
    kills: Option<GroupKills>,
    fault_records: Vec<FaultRecord>,
}

/// An app to start: its `[target]` with `{port}` and `{run_dir}` filled in (and the log
/// defaulting to its output), the environment it gets, the path polled until it is ready,
/// and the app once started.
struct Launch {
    scenario: Scenario,
    env: Vec<(String, String)>,
    knobs: Vec<(String, String, String)>,
    run_dir: PathBuf,
    ready: String,
    app: Option<RunningApp>,
}

impl Launch {
    /// Plans the app's start for the run whose report goes to `out_dir`: a free port, the
    /// run's folder, the knobs' environment; errors name the key.
    fn plan(ctx: &RunCtx<'_>, t: &TargetSpec, classes: &[UserClass]) -> anyhow::Result<Launch> {
        let run_dir = super::run_dir(ctx.out_dir);
        let mut filled = t.filled(free_port()?, &run_dir);
        if filled.log.is_none() {
            filled.log = Some(run_dir.join("app.log"));
        }
        filled.check_command()?;
        let knobs = t.knob_env(&ctx.scenario.server, &ctx.scenario.named_settings)?;
        let mut env: Vec<(String, String)> = filled.env.clone().into_iter().collect();
        env.extend(
            knobs
                .iter()
                .map(|(_, var, value)| (var.clone(), value.clone())),
        );
        let ready = match &t.ready {
            Some(path) => path.clone(),
            None => classes
                .iter()
                .flat_map(|c| c.requests.first())
                .next()
                .map_or("/".to_owned(), |r| fill_spec(&r.path, 0, Path::new(""))),
        };
        let mut scenario = ctx.scenario.clone();
        scenario.target = Some(filled);
        Ok(Launch {
            scenario,
            env,
            knobs,
            run_dir,
            ready,
            app: None,
        })
    }

    fn spec(&self) -> &TargetSpec {
        self.scenario
            .target
            .as_ref()
            .expect("a launch has a target")
    }
}

impl ExternalTarget {
    /// Checks the scenario's `[endpoints]` and `[target]` against the app's files before
    /// anything starts.
    pub(super) fn new(ctx: &RunCtx<'_>, url: Option<&str>) -> anyhow::Result<ExternalTarget> {
        let endpoints = ctx.scenario.endpoints.clone();
        let classes = match (&endpoints, ctx.scenario.users.classes.is_empty()) {
            (_, false) => ctx.scenario.users.classes.clone(),
            (Some(e), true) => ctx.scenario.users.classes(RoleEndpoints::External(e)),
            (None, true) => bail!(
                "scenario {}: --target needs [[users]] classes with the requests to send to your app (or an [endpoints] table mapping poller, admin and kiosk to them)",
                ctx.opts.scenario.display()
            ),
        };
        crate::load::check_env(&classes)?;
        let launching = ctx.scenario.target.as_ref().filter(|t| t.launches());
        let (url, launch, access) = match (launching, url) {
            (Some(t), _) => {
                let launch = Launch::plan(ctx, t, &classes)?;
                let url = launch.spec().url.clone().unwrap_or_default();
                // The app's files exist once it has started: checked then.
                (url, Some(launch), TargetAccess::default())
            }
            (None, Some(url)) => (url.to_owned(), None, check_target(ctx.scenario, &classes)?),
            (None, None) => bail!(
                "scenario {}: no app to measure: give --target URL, [target].url, or [target].command to start it",
                ctx.opts.scenario.display()
            ),
        };
        Ok(ExternalTarget {
            url: url.trim_end_matches('/').to_owned(),
            endpoints,
            access,
            classes,
            photos: None,
            batch: None,
            follower: None,
            log_count: None,
            runner: None,
            client: http::client()?,
            load_started: None,
            work: TempFolder::new().context("creating a temporary folder")?,
            launch,
            faults: None,
            kills: None,
            fault_records: Vec::new(),
        })
    }

    /// How long the load runs: until the batch is done (at most the cap), or `target_run`.
    fn run_for(&self, scenario: &Scenario) -> Duration {
        match self.batch_spec() {
            Some(_) => scenario.duration.max,
            None => scenario.duration.target_run.min(scenario.duration.max),
        }
    }

    /// `[endpoints.batch]`, when the scenario posts a batch to the app.
    fn batch_spec(&self) -> Option<&EndpointSpec> {
        self.endpoints.as_ref().and_then(|e| e.batch.as_ref())
    }
}

impl Target for ExternalTarget {
    fn kind(&self) -> &'static str {
        "external"
    }

    fn check_faults(&self, ctx: &RunCtx<'_>) -> anyhow::Result<()> {
        // An app lockbench starts: the scenario's checks allowed a lock or a reader on a
        // database the run owns.
        if self.launch.is_some() {
            return Ok(());
        }
        if let Some(f) = ctx.scenario.faults.first() {
            bail!(
                "faults: {} applies to the reference server only; lockbench does not touch a running app's database or processes",
                f.kind()
            );
        }
        Ok(())
    }

    fn start(&mut self, ctx: &RunCtx<'_>) -> anyhow::Result<Started> {
        if let Some(launch) = self.launch.as_mut() {
            let app = RunningApp::start(
                launch.spec(),
                launch.env.clone(),
                launch.knobs.clone(),
                &launch.run_dir,
                &launch.ready,
            )?;
            launch.app = Some(app);
            self.access = check_target(&launch.scenario, &self.classes)?;
        }
        if self.batch_spec().is_some() {
            let cache = ctx.opts.photos_cache.as_deref();
            let (dir, manifest) = photo_batch(ctx.scenario, cache, self.work.path())?;
            let dir = std::path::absolute(&dir).unwrap_or(dir);
            self.photos = Some((dir, manifest));
        }
        let shared = Arc::new(Shared::new(self.classes.clone(), None));
        if let Some((path, reading)) = &self.access.log {
            self.follower = Some(LogFollower::start(path, reading.clone(), shared.clone())?);
        }
        self.runner = Some(Recorder::new(shared.recorder.started()));
        Ok(Started {
            url: self.url.clone(),
            shared,
        })
    }

    fn load_cap(&self, ctx: &RunCtx<'_>) -> Duration {
        self.run_for(ctx.scenario) + Duration::from_secs(5)
    }

    fn begin(&mut self, ctx: &RunCtx<'_>, shared: &Arc<Shared>) -> anyhow::Result<()> {
        self.load_started = Some(Instant::now());
        if let (Some(launch), false) = (&self.launch, ctx.scenario.faults.is_empty()) {
            let context = FaultContext {
                exe: match &ctx.opts.server_exe {
                    Some(exe) => exe.clone(),
                    None => std::env::current_exe().context("finding lockbench's own binary")?,
                },
                db: launch.spec().database.clone().unwrap_or_default(),
                postgres: None,
                sync_delay_control: launch.run_dir.join("no-sync-delay-control"),
                load_started: shared.recorder.started(),
            };
            self.faults = Some(FaultRunner::start(
                &ctx.scenario.faults,
                context,
                Instant::now(),
            ));
            if let Some(group) = launch.app.as_ref().and_then(RunningApp::group) {
                let started = shared.recorder.started();
                self.kills = Some(GroupKills::start(&ctx.scenario.faults, group, started));
            }
        }
        if let (Some(spec), Some((dir, manifest))) = (self.batch_spec(), &self.photos) {
            let id = post_external_batch(&self.client, &self.url, spec, dir)?;
            shared.batch_id.store(id, Ordering::Relaxed);
            self.batch = Some(ExternalBatch::posted(id, manifest.files.len() as u64));
        }
        Ok(())
    }

    fn wait(&mut self, ctx: &RunCtx<'_>, shared: &Shared) -> Waited {
        let started = self.load_started.unwrap_or_else(Instant::now);
        let run_for = self.run_for(ctx.scenario);
        let dir = self
            .photos
            .as_ref()
            .map_or(PathBuf::new(), |(d, _)| d.clone());
        let app = self.launch.as_mut().and_then(|l| l.app.as_mut());
        let interrupted = watch_external(
            ctx.scenario,
            ctx.opts,
            (&self.client, &self.url, self.endpoints.as_ref(), app),
            shared,
            self.follower.as_ref(),
            &mut self.batch,
            (started, run_for, &dir),
        );
        Waited { interrupted }
    }

    fn stop(&mut self, _ctx: &RunCtx<'_>) -> anyhow::Result<()> {
        if let Some(runner) = self.faults.take() {
            self.fault_records = runner.finish();
        }
        if let Some(kills) = self.kills.take() {
            self.fault_records.extend(kills.finish());
            self.fault_records.sort_by(|a, b| {
                let at = |r: &FaultRecord| r.started_s.unwrap_or(f64::MAX);
                at(a).total_cmp(&at(b))
            });
        }
        if let Some(app) = self.launch.as_mut().and_then(|l| l.app.as_mut()) {
            app.stop();
        }
        if let Some(f) = self.follower.take() {
            self.log_count = Some(f.finish()?);
        }
        Ok(())
    }

    fn fill(
        &mut self,
        ctx: &RunCtx<'_>,
        shared: &Shared,
        report: &mut Report,
    ) -> anyhow::Result<()> {
        let scenario = ctx.scenario;
        let (target_database, audit) = match audit_target(&self.access, |n| shared.acks_of(n))? {
            Some((db, audit)) => (Some(db), audit),
            None => (None, None),
        };
        report.lock_errors = external_lock_errors(self.log_count.as_ref(), shared);
        report.notes = external_notes(
            scenario,
            report.interrupted,
            &self.access,
            report.lock_errors.server_errors_unexplained,
            (&audit, &target_database),
        );
        if let Some(b) = &self.batch {
            let figures = b.figures(report.interrupted);
            if let Some(note) = batch_note(&figures, b, scenario) {
                report.notes.push(note);
            }
            report.batch = Some(figures);
        }
        if let Some(runner) = &self.runner {
            report.runner_requests = runner.endpoint_stats();
        }
        report.faults = std::mem::take(&mut self.fault_records);
        if let Some(app) = self.launch.as_ref().and_then(|l| l.app.as_ref()) {
            report.target.app = Some(app.record.clone());
            if let Some(t) = app.record.exited_during_run_s {
                report.notes.push(format!(
                    "the app exited {t:.1} s into the load ({}): the load stopped then, and the figures cover the run up to then; its output is {}",
                    app.record.ended, app.record.output
                ));
            }
        }
        report.audit = audit;
        report.target_database = target_database;
        Ok(())
    }
}

/// What the notes say of a batch that did not finish.
fn batch_note(figures: &BatchFigures, b: &ExternalBatch, scenario: &Scenario) -> Option<String> {
    match figures.ended {
        BatchEnd::Cap => Some(format!(
            "the batch did not finish within the cap of {}",
            humantime::format_duration(scenario.duration.max)
        )),
        BatchEnd::Failed => Some(format!(
            "the app said the batch failed ({}): its figures are what its status said last",
            b.status["status"]
        )),
        BatchEnd::Finished | BatchEnd::Interrupted | BatchEnd::Abandoned => None,
    }
}

/// Posts the app's batch through `[endpoints.batch]`; its answer must carry `batch_id`.
fn post_external_batch(
    client: &reqwest::blocking::Client,
    url: &str,
    spec: &EndpointSpec,
    dir: &Path,
) -> anyhow::Result<i64> {
    let (status, body) = external_request(client, url, spec, 0, dir)?;
    if !(200..300).contains(&status) {
        bail!(
            "endpoints.batch: {} {} answered {status}: {body}",
            spec.method,
            spec.path
        );
    }
    let v: serde_json::Value = serde_json::from_str(&body)
        .with_context(|| format!("endpoints.batch: the answer is not JSON: {body}"))?;
    v["batch_id"]
        .as_i64()
        .with_context(|| format!("endpoints.batch: the answer has no integer batch_id: {body}"))
}

/// Waits while the load runs: until the app's batch is done plus the tail (when there is
/// one), the run's time is up or Ctrl-C is pressed; returns whether Ctrl-C stopped it.
fn watch_external(
    scenario: &Scenario,
    opts: &RunOptions,
    app: (
        &reqwest::blocking::Client,
        &str,
        Option<&crate::scenario::Endpoints>,
        Option<&mut RunningApp>,
    ),
    shared: &Shared,
    follower: Option<&LogFollower>,
    batch: &mut Option<ExternalBatch>,
    time: (Instant, Duration, &Path),
) -> bool {
    let (client, url, endpoints, mut launched) = app;
    let (started, run_for, dir) = time;
    let bar = progress_bar(opts, batch.as_ref().map_or(run_for.as_secs(), |b| b.photos));
    let mut interrupted = false;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        if crate::stop::interrupted() {
            interrupted = true;
            break;
        }
        if let Some(app) = launched.as_deref_mut() {
            if app.exited().is_some() {
                // The app is gone: nothing more to measure.
                app.exited_during_run(started.elapsed());
                shared.stop_load();
                break;
            }
        }
        let lock_seen = follower.map_or_else(
            || {
                format!(
                    "{} lock errors seen by clients",
                    shared.recorder.lock_visible_total()
                )
            },
            |f| format!("{} lock errors in the app's log", f.count()),
        );
        bar.set_message(format!(
            "{} requests, {lock_seen}",
            shared.recorder.requests_total()
        ));
        match (batch.as_mut(), endpoints.and_then(|e| e.status.as_ref())) {
            (Some(b), Some(status_spec)) => {
                if let Ok((200..=299, body)) = external_request(client, url, status_spec, b.id, dir)
                {
                    b.saw_status(&body);
                }
                let processed = b.status["processed"].as_u64().unwrap_or(0);
                shared.recorder.sample_photos(processed);
                bar.set_position(processed);
                let tail_over = b
                    .ended
                    .is_some_and(|d| b.posted.elapsed() >= d + scenario.duration.tail);
                if tail_over || started.elapsed() >= run_for {
                    break;
                }
            }
            _ => {
                bar.set_position(started.elapsed().as_secs());
                if started.elapsed() >= run_for {
                    break;
                }
            }
        }
    }
    if let Some(b) = batch.as_mut() {
        b.watched_until.get_or_insert_with(|| b.posted.elapsed());
    }
    bar.finish_and_clear();
    interrupted
}

/// Lock errors of an external app: the matching records of its log when `[target].log` is
/// set (by the request each names), else only what the clients could see, with the server
/// errors of unknown cause.
fn external_lock_errors(log_count: Option<&LogCount>, shared: &Shared) -> LockErrors {
    let client_visible = shared.recorder.lock_visible_total();
    let unexplained = shared.recorder.unexplained_server_errors();
    match log_count {
        Some(n) => LockErrors {
            total: n.total,
            source: LockSource::TargetLog,
            server_errors_unexplained: unexplained,
            by_endpoint: n.by_request.clone(),
            unattributed: n.unattributed,
            client_visible,
            ..LockErrors::default()
        },
        None => LockErrors {
            total: client_visible,
            source: LockSource::ClientsOnly,
            server_errors_unexplained: unexplained,
            client_visible,
            ..LockErrors::default()
        },
    }
}

/// The report's notes on an external run: what lockbench could and could not see.
fn external_notes(
    scenario: &Scenario,
    interrupted: bool,
    access: &TargetAccess,
    unexplained: u64,
    audited: (&Option<Audit>, &Option<TargetDatabase>),
) -> Vec<String> {
    let (audit, target_database) = audited;
    let mut notes = Vec::new();
    if interrupted {
        notes.push("interrupted by Ctrl-C: the load was stopped early; the figures cover the run up to then".to_owned());
    }
    notes.push(
        "external target: lock errors by SQLite code, retries, effective settings and WAL figures come from the reference server's own counters and are absent here".to_owned(),
    );
    match (&access.log, unexplained) {
        (Some((path, _)), _) => notes.push(format!(
            "lock errors are the records of {} (a traceback is one record) that match {:?}, counted while the load ran and tied to the request whose path each names",
            path.display(),
            scenario.target.as_ref().map_or(crate::scenario::DEFAULT_LOCK_PATTERN, |t| t.lock_pattern())
        )),
        (None, 0) => notes.push(
            "no [target].log: lock errors are only those the clients could see (503s, answers mentioning a lock); the app's own count is not visible".into(),
        ),
        (None, n) => notes.push(format!(
            "{n} server errors; their cause cannot be seen from the client; set [target].log so lockbench can count the app's lock errors"
        )),
    }
    match (audit, target_database) {
        (Some(_), Some(db)) => notes.push(format!(
            "audit: the {} writes the app acknowledged as a success were looked up read-only in {} with their requests' audit queries; photos are not audited on an external app",
            count_text(db.audited_writes),
            db.path
        )),
        (None, Some(db)) => notes.push(format!(
            "{} was read (journal mode, size) but not audited: set audit = {{ query, field }} on the requests that write (or [target].audit_query and audit_field for the kiosk)",
            db.path
        )),
        _ => notes.push(
            "no audit: set [target].database and audit = { query, field } on the requests that write, to look up the acknowledged writes in the app's database".into(),
        ),
    }
    if let Some(db) = target_database {
        if db.sha256_before != db.sha256_after {
            notes.push(format!(
                "{} changed while lockbench read it (the app was still writing); lockbench opens it read-only",
                db.path
            ));
        }
    }
    notes
}
