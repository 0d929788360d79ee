//! A run against a user's own app (`--target` or `[target].url`): the load through the
//! scenario's `[endpoints]`, the app's batch posted and watched when `[endpoints.batch]` is
//! set, lock errors from the app's log when `[target].log` is set, and the read-only audit
//! of `[target].database`. Never starts, stops or writes to the app.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::audit::{audit_target, check_target, TargetAccess};
use super::gates::judge;
use super::{base_report, batch_figures, count_text, photo_batch, progress_bar, RunOptions};
use crate::load::{self, Shared};
use crate::report::{Audit, BatchEnd, LockErrors, LockSource, Report, Target, TargetDatabase};
use crate::run::follow::LogFollower;
use crate::run::http;
use crate::scenario::{EndpointSpec, Scenario};

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

pub(super) fn run_external(
    scenario: &Scenario,
    opts: &RunOptions,
    url: &str,
    started_at: String,
) -> anyhow::Result<Report> {
    let Some(endpoints) = scenario.endpoints.clone() else {
        bail!(
            "scenario {}: --target needs an [endpoints] table mapping poller, admin and kiosk to requests of your app",
            opts.scenario.display()
        );
    };
    let url = url.trim_end_matches('/').to_owned();
    // Everything [target] names is checked before any load starts.
    let access = check_target(scenario)?;
    let work = crate::stop::TempFolder::new().context("creating a temporary folder")?;
    let batch_files = match &endpoints.batch {
        Some(_) => {
            let (dir, manifest) = photo_batch(scenario, opts.photos_cache.as_deref(), work.path())?;
            let dir = std::path::absolute(&dir).unwrap_or(dir);
            Some((dir, manifest))
        }
        None => None,
    };
    let shared = Arc::new(Shared::new(
        scenario.users.clone(),
        Some(endpoints.clone()),
        None,
    ));
    let follower = match &access.log {
        Some((path, pattern)) => Some(LogFollower::start(path, pattern.clone(), shared.clone())?),
        None => None,
    };
    let run_for = match endpoints.batch {
        Some(_) => scenario.duration.max,
        None => scenario.duration.target_run.min(scenario.duration.max),
    };
    let attack = load::start(&url, &shared, run_for + Duration::from_secs(5));
    let client = http::client()?;
    let started = Instant::now();

    let posted = match (&endpoints.batch, &batch_files) {
        (Some(spec), Some((dir, manifest))) => post_external_batch(&client, &url, spec, dir)
            .map(|id| Some(ExternalBatch::posted(id, manifest.files.len() as u64))),
        _ => Ok(None),
    };
    let mut batch = match posted {
        Ok(batch) => batch,
        Err(e) => {
            let _ = stop_external(&shared, attack, follower);
            return Err(e);
        }
    };
    if let Some(b) = &batch {
        shared.batch_id.store(b.id, Ordering::Relaxed);
    }
    let photos_dir = batch_files
        .as_ref()
        .map_or(Path::new(""), |(d, _)| d.as_path());
    let interrupted = watch_external(
        scenario,
        opts,
        (&client, &url, &endpoints),
        &shared,
        follower.as_ref(),
        &mut batch,
        (started, run_for, photos_dir),
    );
    let load_time = started.elapsed();
    let log_count = stop_external(&shared, attack, follower)?;
    let acks = shared
        .kiosk_acks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let (target_database, audit) = match audit_target(&access, &acks)? {
        Some((db, audit)) => (Some(db), audit),
        None => (None, None),
    };
    let mut report = base_report(
        scenario,
        opts,
        started_at,
        Target {
            kind: "external".into(),
            url,
        },
        &shared,
        load_time,
    );
    report.lock_errors = external_lock_errors(log_count, &shared);
    report.notes = external_notes(
        scenario,
        interrupted,
        &access,
        report.lock_errors.server_errors_unexplained,
        (&audit, &target_database),
    );
    report.settings_requested = super::settings_requested(scenario)?;
    if let Some(b) = &batch {
        let figures = b.figures(interrupted);
        match figures.ended {
            BatchEnd::Finished => {}
            BatchEnd::Cap => report.notes.push(format!(
                "the batch did not finish within the cap of {}",
                humantime::format_duration(scenario.duration.max)
            )),
            BatchEnd::Failed => report.notes.push(format!(
                "the app said the batch failed ({}): its figures are what its status said last",
                b.status["status"]
            )),
            BatchEnd::Interrupted | BatchEnd::Abandoned => {}
        }
        report.batch = Some(figures);
    }
    report.audit = audit;
    report.target_database = target_database;
    report.interrupted = interrupted;
    judge(scenario, &mut report);
    drop(work);
    Ok(report)
}

/// Stops the load and the log follower; the app's lock errors from its log, when followed.
fn stop_external(
    shared: &Shared,
    attack: std::thread::JoinHandle<anyhow::Result<()>>,
    follower: Option<LogFollower>,
) -> anyhow::Result<Option<u64>> {
    shared.stop_load();
    let attacked = attack.join();
    let log_count = match follower {
        Some(f) => Some(f.finish()?),
        None => None,
    };
    match attacked {
        Ok(result) => result.context("the load generator failed")?,
        Err(_) => bail!("the load generator panicked"),
    }
    Ok(log_count)
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
        &crate::scenario::Endpoints,
    ),
    shared: &Shared,
    follower: Option<&LogFollower>,
    batch: &mut Option<ExternalBatch>,
    time: (Instant, Duration, &Path),
) -> bool {
    let (client, url, endpoints) = app;
    let (started, run_for, dir) = time;
    let bar = progress_bar(opts, batch.as_ref().map_or(run_for.as_secs(), |b| b.photos));
    let mut interrupted = false;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        if crate::stop::interrupted() {
            interrupted = true;
            if let Some(b) = batch.as_mut() {
                b.watched_until.get_or_insert_with(|| b.posted.elapsed());
            }
            break;
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
        match (batch.as_mut(), &endpoints.status) {
            (Some(b), Some(status_spec)) => {
                if let Ok((200..=299, body)) = external_request(client, url, status_spec, b.id, dir)
                {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) {
                        b.status = v;
                    }
                }
                let processed = b.status["processed"].as_u64().unwrap_or(0);
                shared.recorder.sample_photos(processed);
                bar.set_position(processed);
                if b.done.is_none() && b.status["status"] == "done" {
                    b.done = Some(b.posted.elapsed());
                }
                if b.ended.is_none()
                    && matches!(b.status["status"].as_str(), Some("done" | "failed"))
                {
                    b.ended = Some(b.posted.elapsed());
                }
                let tail_over = b
                    .ended
                    .is_some_and(|d| b.posted.elapsed() >= d + scenario.duration.tail);
                if tail_over || started.elapsed() >= run_for {
                    b.watched_until.get_or_insert_with(|| b.posted.elapsed());
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
    bar.finish_and_clear();
    interrupted
}

/// Lock errors of an external app: the matching lines of its log when `[target].log` is
/// set, else only what the clients could see, with the server errors of unknown cause.
fn external_lock_errors(log_count: Option<u64>, shared: &Shared) -> LockErrors {
    let client_visible = shared.recorder.lock_visible_total();
    let unexplained = shared.recorder.unexplained_server_errors();
    match log_count {
        Some(n) => LockErrors {
            total: n,
            source: LockSource::TargetLog,
            server_errors_unexplained: unexplained,
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
            "lock errors are the lines of {} that match {:?}, counted while the load ran",
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
            "audit: the {} kiosk writes the app acknowledged with a 2xx were looked up read-only in {} with audit_query; photos are not audited on an external app",
            count_text(db.audited_writes),
            db.path
        )),
        (None, Some(db)) => notes.push(format!(
            "{} was read (journal mode, size) but not audited: set [target].audit_query and audit_field",
            db.path
        )),
        _ => notes.push(
            "no audit: set [target].database, audit_query and audit_field to look up the acknowledged writes in the app's database".into(),
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
