//! `lockbench run`: one scenario end to end.
//!
//! Fresh database and photo batch in a temporary folder; `lockbench serve` workers started as
//! child processes (re-executing lockbench's own binary) with the scenario's settings; the
//! goose load; the registrations and the batch posted; until the batch is done plus the tail
//! (never past the cap); everything stopped; the audit; the report and the gates. The load
//! generator talks to the server only over HTTP and through child processes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use lockbench_server::photos::{self, FileKind, Manifest};
use lockbench_server::serve::{ServeConfig, ENV_TOKEN};
use lockbench_server::storage::{self, ReadOnlyDb, Value};

use crate::faults::{FaultContext, FaultRecord, FaultRunner};
use crate::follow::LogFollower;
use crate::load::{self, Shared};
use crate::report::{
    self, Audit, BatchFigures, GateResult, LockErrors, LockSource, Machine, Report, ScenarioInfo,
    Target, TargetDatabase, UsersInfo, Verdict, WalFigures, WorkerSettings,
};
use crate::scenario::{Fault, KillTarget, Scenario};

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
    /// Run the scenario this many times; the report keeps the median and the spread of
    /// every figure (`--repeat`). 0 and 1 both mean once.
    pub repeat: u32,
}

/// A finished run: its report and where the report files are.
pub struct RunOutcome {
    pub report: Report,
    pub out_dir: PathBuf,
}

/// A running `lockbench serve`; stopped with SIGTERM on drop.
struct ServerProcess {
    child: Child,
    url: String,
}

impl ServerProcess {
    fn start(
        exe: &Path,
        config_file: &Path,
        token: &str,
        log: &Path,
    ) -> anyhow::Result<ServerProcess> {
        let log_file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        // Its own process group: the terminal's Ctrl-C reaches lockbench only, which stops
        // the server after reading its figures.
        let mut child = crate::faults::spawn_group(
            Command::new(exe)
                .arg("serve")
                .arg("--config")
                .arg(config_file)
                .env(ENV_TOKEN, token)
                .env("LOCKBENCH_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::from(log_file)),
        )
        .with_context(|| format!("starting {} serve", exe.display()))?;
        let stdout = child.stdout.take().context("server stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    if let Some(rest) = line.split("listening on ").nth(1) {
                        let url = rest
                            .split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_owned();
                        return Ok(ServerProcess { child, url });
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let tail = std::fs::read_to_string(log).unwrap_or_default();
                    bail!(
                        "the server did not start; its log says:\n{}",
                        last_lines(&tail, 20)
                    );
                }
            }
        }
    }

    fn stop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        crate::faults::forget_child(self.child.id());
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn token() -> String {
    format!("{:032x}", rand_u128())
}

fn rand_u128() -> u128 {
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    t ^ ((std::process::id() as u128) << 64)
}

fn utc_now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn machine() -> Machine {
    let memory_bytes = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    Machine {
        load_average_start: None,
        load_average_end: None,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_bytes,
        os: format!(
            "{} {} {}",
            std::env::consts::OS,
            std::env::consts::ARCH,
            kernel.trim()
        ),
    }
}

/// The batch folder: from the cache when its manifest has the same spec, else generated.
fn photo_batch(
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
            return Ok((dir, manifest));
        }
    }
    let manifest = photos::generate(&dir, &scenario.batch)
        .with_context(|| format!("generating the photo batch in {}", dir.display()))?;
    Ok((dir, manifest))
}

fn http_client() -> anyhow::Result<reqwest::blocking::Client> {
    Ok(reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(0)
        .build()?)
}

/// Runs a scenario end to end and writes its report; with `repeat` > 1, runs it that many
/// times (each run's report in `run-<k>/` of the report folder) and writes a report of the
/// medians, with each figure's spread.
pub fn run_scenario(opts: &RunOptions) -> anyhow::Result<RunOutcome> {
    if opts.repeat <= 1 {
        return run_once(opts);
    }
    let scenario = match &opts.scenario_override {
        Some(s) => s.clone(),
        None => Scenario::load_with(&opts.scenario, &opts.sets)?,
    };
    let started_at = utc_now();
    let out_dir = match &opts.out {
        Some(d) => d.clone(),
        None => PathBuf::from("reports")
            .join(&scenario.name)
            .join(started_at.replace(':', "-")),
    };
    let mut reports = Vec::new();
    let mut paths = Vec::new();
    for k in 1..=opts.repeat {
        let dir = out_dir.join(format!("run-{k}"));
        let once = RunOptions {
            out: Some(dir.clone()),
            repeat: 1,
            ..opts.clone()
        };
        let outcome = run_once(&once)?;
        let interrupted = outcome.report.interrupted;
        paths.push(dir.join("report.json").display().to_string());
        reports.push(outcome.report);
        if interrupted {
            break;
        }
    }
    let mut report = median_report(&reports, paths);
    judge(&scenario, &mut report);
    write_report(&report, &out_dir)?;
    Ok(RunOutcome { report, out_dir })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The report of repeated runs: the first run's report with every compared figure replaced
/// by its median across the runs, and each figure's spread.
fn median_report(reports: &[Report], paths: Vec<String>) -> Report {
    use crate::report::{Repeat, Spread};
    let mut out = reports[0].clone();
    let values: Vec<BTreeMap<String, f64>> =
        reports.iter().map(crate::compare::figure_values).collect();
    let mut spread = BTreeMap::new();
    for name in values[0].keys() {
        let all: Vec<f64> = values.iter().filter_map(|v| v.get(name).copied()).collect();
        let (min, max) = all
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
        spread.insert(
            name.clone(),
            Spread {
                median: median(all),
                min,
                max,
            },
        );
    }
    let med_u64 = |f: &dyn Fn(&Report) -> Option<u64>| -> Option<u64> {
        let all: Vec<f64> = reports
            .iter()
            .filter_map(|r| f(r).map(|v| v as f64))
            .collect();
        (!all.is_empty()).then(|| median(all).round() as u64)
    };
    for (endpoint, stats) in out.requests.iter_mut() {
        let pick = |f: fn(&crate::report::EndpointStats) -> u64| {
            med_u64(&|r: &Report| r.requests.get(endpoint).map(f)).unwrap_or(0)
        };
        stats.count = pick(|s| s.count);
        stats.failures = pick(|s| s.failures);
        stats.status_503 = pick(|s| s.status_503);
        stats.latency_us.p50 = pick(|s| s.latency_us.p50);
        stats.latency_us.p95 = pick(|s| s.latency_us.p95);
        stats.latency_us.p99 = pick(|s| s.latency_us.p99);
        stats.latency_us.max = pick(|s| s.latency_us.max);
        stats.latency_us.mean = pick(|s| s.latency_us.mean);
        stats.latency_from_tick_us.p99 = pick(|s| s.latency_from_tick_us.p99);
    }
    out.lock_errors.total = med_u64(&|r: &Report| Some(r.lock_errors.total)).unwrap_or(0);
    out.lock_errors.client_visible =
        med_u64(&|r: &Report| Some(r.lock_errors.client_visible)).unwrap_or(0);
    out.retries = med_u64(&|r: &Report| r.retries);
    out.commit_only_dropped = med_u64(&|r: &Report| r.commit_only_dropped);
    if let Some(b) = out.batch.as_mut() {
        let durations: Vec<f64> = reports
            .iter()
            .filter_map(|r| r.batch.as_ref().map(|b| b.duration_s))
            .collect();
        b.duration_s = median(durations);
        b.finished = reports
            .iter()
            .all(|r| r.batch.as_ref().is_some_and(|b| b.finished));
    }
    if let Some(a) = out.audit.as_mut() {
        let m = |f: fn(&Audit) -> u64| med_u64(&|r: &Report| r.audit.as_ref().map(f)).unwrap_or(0);
        a.lost_writes = m(|a| a.lost_writes);
        a.duplicate_writes = m(|a| a.duplicate_writes);
        a.misassigned_photos = m(|a| a.misassigned_photos);
        a.missing_photos = m(|a| a.missing_photos);
        a.lost_registrations = m(|a| a.lost_registrations);
    }
    out.interrupted = reports.iter().any(|r| r.interrupted);
    out.notes.insert(
        0,
        format!(
            "{} runs (run --repeat): every figure compared by lockbench compare is the median of the runs, with its spread under repeat; the time line, roles and settings are the first run's; each run's own report: {}",
            reports.len(),
            paths.join(", ")
        ),
    );
    out.repeat = Some(Repeat {
        runs: reports.len() as u32,
        reports: paths,
        spread,
    });
    out
}

/// One run of a scenario, end to end, and its report.
fn run_once(opts: &RunOptions) -> anyhow::Result<RunOutcome> {
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
    let load_start = crate::ci::load_average();
    let target = opts
        .target
        .clone()
        .or_else(|| scenario.target.as_ref().and_then(|t| t.url.clone()));
    let mut report = match &target {
        Some(url) => run_external(&scenario, opts, url, started_at)?,
        None => run_reference(&scenario, opts, started_at)?,
    };
    report.git_commit = crate::ci::git_commit();
    report.machine.load_average_start = load_start;
    report.machine.load_average_end = crate::ci::load_average();
    let out_dir = match &opts.out {
        Some(d) => d.clone(),
        None => PathBuf::from("reports")
            .join(&scenario.name)
            .join(report.started_at.replace(':', "-")),
    };
    write_report(&report, &out_dir)?;
    Ok(RunOutcome { report, out_dir })
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

fn progress_bar(opts: &RunOptions, len: u64) -> indicatif::ProgressBar {
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

fn run_reference(
    scenario: &Scenario,
    opts: &RunOptions,
    started_at: String,
) -> anyhow::Result<Report> {
    let work = tempfile::tempdir().context("creating a temporary folder")?;
    let (photo_dir, manifest) = photo_batch(scenario, opts.photos_cache.as_deref(), work.path())?;
    let db = work.path().join("app.db");
    let data_dir = work.path().join("data");
    // PostgreSQL: a schema of this run's own, dropped when the run ends (whatever happens).
    let postgres = match (
        scenario.server.storage.driver.is_postgres(),
        &scenario.server.storage.database_url,
    ) {
        (true, Some(url)) => Some(PgSchema::create(url, &scenario.name)?),
        (true, None) => bail!("server.storage.database_url: the postgres driver needs a database_url (or --database-url)"),
        _ => None,
    };
    let mut storage_config = scenario.server.storage.clone();
    if let Some(pg) = &postgres {
        storage_config.schema = Some(pg.schema.clone());
    }
    let sync_delay_control = work.path().join("sync_delay_ms");
    let slow_disk = scenario
        .faults
        .iter()
        .any(|f| matches!(f, Fault::SlowDisk { .. }));
    let serve = ServeConfig {
        storage: storage_config.clone(),
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
    let config_file = work.path().join("serve.toml");
    std::fs::write(&config_file, toml::to_string(&serve)?)?;
    let exe = match &opts.server_exe {
        Some(e) => e.clone(),
        None => std::env::current_exe().context("finding lockbench's own binary")?,
    };
    let token = token();
    let log = work.path().join("server.log");
    let mut server = ServerProcess::start(&exe, &config_file, &token, &log)?;
    let url = server.url.clone();
    crate::register_people(&url, &manifest).context("registering the batch's people")?;

    let shared = Arc::new(Shared::new(
        scenario.users.clone(),
        None,
        Some(token.clone()),
    ));
    let cap = scenario.duration.max;
    let attack = {
        let shared = shared.clone();
        let url = url.clone();
        std::thread::spawn(move || load::attack(&url, &shared, cap + Duration::from_secs(5)))
    };

    let client = http_client()?;
    let posted = Instant::now();
    // The admin posts the batch as a person would: a 503 ("database is locked", with
    // Retry-After) is answered by trying again, up to a point.
    let mut attempt = 0;
    let response = loop {
        attempt += 1;
        let response = client
            .post(format!("{url}/api/batches"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"dir": photo_dir}))
            .send()
            .context("POST /api/batches")?;
        let status = response.status();
        if status.is_success() {
            break response;
        }
        if status.as_u16() == 503 && attempt < 30 {
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        bail!(
            "POST /api/batches answered {status} (try {attempt}): {}",
            response.text().unwrap_or_default()
        );
    };
    let batch_id = response.json::<serde_json::Value>()?["batch_id"]
        .as_i64()
        .context("POST /api/batches gave no batch_id")?;
    shared.batch_id.store(batch_id, Ordering::Relaxed);
    let fault_runner = FaultRunner::start(
        &scenario.faults,
        FaultContext {
            exe: exe.clone(),
            db: db.clone(),
            postgres: postgres
                .as_ref()
                .map(|pg| (pg.url.clone(), pg.schema.clone())),
            sync_delay_control,
            load_started: shared.recorder.started(),
        },
        posted,
    );
    let mut kills: Vec<Kill> = scenario
        .faults
        .iter()
        .filter_map(|f| match f {
            Fault::KillWorker { at_photo, worker } => Some(Kill {
                fault: f.clone(),
                at_photo: *at_photo,
                target: *worker,
                state: KillState::Waiting,
            }),
            _ => None,
        })
        .collect();
    let restarts_file = data_dir.join("restarts.jsonl");
    let mut interrupted = false;
    let pg_watch = postgres.as_ref().map(|pg| PgWatch::start(&pg.url, posted));
    let mut database_gone: Option<String> = None;

    let total = manifest.files.len() as u64;
    let bar = progress_bar(opts, total);
    let mut wal_max = 0;
    let mut batch_done: Option<Duration> = None;
    let mut processor_ended: Option<Duration> = None;
    let mut last_check = Instant::now();
    let mut status = serde_json::Value::Null;
    let wal_path = PathBuf::from(format!("{}-wal", db.display()));
    loop {
        // A kill waits for a photo: look closely while one is pending.
        let pace = if kills.iter().any(|k| matches!(k.state, KillState::Waiting)) {
            Duration::from_millis(20)
        } else {
            Duration::from_millis(500)
        };
        std::thread::sleep(pace);
        if let Ok(s) = client
            .get(format!("{url}/api/batches/{batch_id}/status"))
            .bearer_auth(&token)
            .send()
            .and_then(|r| r.json::<serde_json::Value>())
        {
            if s["status"].is_string() {
                status = s;
            }
        }
        let processed = status["processed"].as_u64().unwrap_or(0);
        shared.recorder.sample_photos(processed);
        let wal_now = std::fs::metadata(&wal_path).map(|m| m.len()).unwrap_or(0);
        shared.recorder.sample_wal(wal_now);
        wal_max = wal_max.max(wal_now);
        if crate::faults::interrupted() {
            interrupted = true;
            break;
        }
        if let Some(why) = pg_watch.as_ref().and_then(PgWatch::gone) {
            database_gone = Some(why);
            break;
        }
        for kill in kills.iter_mut() {
            kill.step(
                processed,
                &KillEnv {
                    client: &client,
                    url: &url,
                    token: &token,
                    workers: scenario.server.workers,
                    batch_id,
                    photo_dir: &photo_dir,
                    restarts: &restarts_file,
                    recorder: &shared.recorder,
                },
            );
        }
        bar.set_position(processed);
        bar.set_message(format!(
            "{} requests, {} lock errors seen by clients",
            shared.recorder.requests_total(),
            shared.recorder.lock_visible_total()
        ));
        if batch_done.is_none() && status["status"] == "done" {
            batch_done = Some(posted.elapsed());
        }
        // The batch row may never say "done" when the app's last write fails: the workers'
        // metrics say when the processor itself has gone through the batch.
        if batch_done.is_none()
            && processor_ended.is_none()
            && last_check.elapsed() >= Duration::from_secs(3)
        {
            last_check = Instant::now();
            let needle = "lockbench_batch_processor_finished{";
            let ended = scrape_all(
                &client,
                &format!("{url}/metrics"),
                None,
                scenario.server.workers,
            )
            .values()
            .any(|text| {
                text.lines().any(|l| {
                    l.starts_with(needle)
                        && label(l, "batch").as_deref() == Some(batch_id.to_string().as_str())
                })
            });
            if ended {
                processor_ended = Some(posted.elapsed());
            }
        }
        let ended_at = batch_done.or(processor_ended);
        let tail_over = ended_at.is_some_and(|d| posted.elapsed() >= d + scenario.duration.tail);
        if tail_over || posted.elapsed() >= cap {
            break;
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    let load_time = shared.recorder.started().elapsed();
    let mut fault_records = fault_runner.finish();
    fault_records.extend(kills.into_iter().map(Kill::into_record));
    fault_records.sort_by(|a, b| {
        a.started_s
            .unwrap_or(f64::MAX)
            .total_cmp(&b.started_s.unwrap_or(f64::MAX))
    });
    bar.finish_and_clear();
    drop(pg_watch);
    if let Some(why) = database_gone {
        // Nothing more can be measured or audited: stop everything, then say so (exit 2).
        // The run's schema holds only this run's rows and no later run uses it; it is
        // dropped on the way out when the server answers again, or named for dropping.
        server.stop();
        let _ = attack.join();
        bail!("{why}; the run was stopped and no report was written");
    }
    match attack.join() {
        Ok(result) => result.context("the load generator failed")?,
        Err(_) => bail!("the load generator panicked"),
    }

    let workers = scenario.server.workers;
    let metrics = scrape_all(&client, &format!("{url}/metrics"), None, workers);
    let settings = scrape_all(
        &client,
        &format!("{url}/api/settings"),
        Some(&token),
        workers,
    );
    server.stop();

    let server_side = ServerFigures::parse(metrics.values());
    let acks = shared
        .kiosk_acks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let acks: Vec<String> = acks
        .iter()
        .filter_map(|b| b["email"].as_str().map(str::to_owned))
        .collect();
    let mut audit_db = match &postgres {
        Some(pg) => AuditDb::Postgres(
            lockbench_server::storage::postgres::ReadOnlyPg::open(&pg.url, &pg.schema)
                .context("opening the PostgreSQL schema read-only for the audit")?,
        ),
        None => AuditDb::Sqlite(ReadOnlyDb::open(&db)?),
    };
    let audit =
        audit(&mut audit_db, batch_id, &manifest, &acks).context("auditing the database")?;
    drop(audit_db);
    let batch = batch_figures(
        &status,
        manifest.files.len() as u64,
        batch_done,
        posted.elapsed(),
    );

    let restarts = crate::faults::read_restarts(&restarts_file, shared.recorder.started_wall());
    let mut notes = Vec::new();
    if interrupted {
        notes.push("interrupted by Ctrl-C: the load, the batch and the server were stopped early; the figures cover the run up to then".into());
    }
    if !restarts.is_empty() {
        let gave_up = restarts.iter().any(|r| r.action == "gave-up");
        notes.push(format!(
            "{} worker restart{} by the supervisor{}; the server's counters survive a restart (each worker keeps them in a file), so lock errors before a restart are in the totals",
            restarts.len(),
            if restarts.len() == 1 { "" } else { "s" },
            if gave_up { ", and then it gave up" } else { "" }
        ));
    }
    if (metrics.len() as u32) < workers {
        notes.push(format!(
            "server-side counters from {} of {} workers only (the others never answered /metrics)",
            metrics.len(),
            workers
        ));
    }
    if batch_done.is_none() && !interrupted {
        notes.push(format!(
            "the batch did not finish within the cap of {:?}",
            cap
        ));
    }
    let settings_effective = settings
        .iter()
        .filter_map(|(w, text)| {
            let v: serde_json::Value = serde_json::from_str(text).ok()?;
            Some(WorkerSettings {
                worker: w.parse().ok()?,
                pid: v["pid"].as_u64().unwrap_or(0) as u32,
                connections: v["effective"].as_array().cloned().unwrap_or_default(),
            })
        })
        .collect();
    if let Some(pg) = &postgres {
        let version = settings_effective_version(&settings);
        notes.push(format!(
            "database: PostgreSQL {version} at {}, in the schema {} made for this run and dropped after it; isolation {}; no WAL file or SQLite version to report",
            lockbench_server::storage::postgres::redact_url(&pg.url),
            pg.schema,
            storage_config.isolation.as_sql().to_ascii_lowercase()
        ));
    }
    let requests = shared.recorder.endpoint_stats();
    let client_visible = shared.recorder.lock_visible_total();
    let lock_errors = LockErrors {
        total: server_side.lock_by_code.values().sum(),
        source: LockSource::ServerCounters,
        server_errors_unexplained: 0,
        by_code: server_side.lock_by_code.clone(),
        by_endpoint: server_side.lock_by_endpoint.clone(),
        client_visible,
    };
    let mut report = Report {
        schema_version: report::REPORT_SCHEMA_VERSION,
        lockbench_version: env!("CARGO_PKG_VERSION").to_owned(),
        git_commit: None,
        scenario: scenario_info(scenario, opts),
        started_at,
        target: Target {
            kind: "reference".into(),
            url,
        },
        verdict: Verdict {
            passed: false,
            summary: String::new(),
            exit_code: 1,
        },
        settings_requested: redacted_settings(&scenario.server)?,
        settings_effective: Some(settings_effective),
        sqlite_version: postgres
            .is_none()
            .then(|| storage::sqlite_version().to_owned()),
        machine: machine(),
        users: users_info(scenario),
        roles: shared.recorder.role_figures(&scenario.users, load_time),
        requests,
        lock_errors,
        retries: Some(server_side.retries),
        commit_only_dropped: Some(server_side.commit_only_dropped),
        commit_only_dropped_by_endpoint: server_side.dropped_by_endpoint.clone(),
        batch: Some(batch),
        audit: Some(audit),
        wal: postgres.is_none().then(|| WalFigures {
            max_bytes: wal_max.max(server_side.wal_bytes),
            checkpoints_ok: server_side.checkpoints_ok,
            checkpoints_busy: server_side.checkpoints_busy,
        }),
        target_database: None,
        faults: fault_records,
        restarts,
        interrupted,
        repeat: None,
        gates: Vec::new(),
        timeline: shared.recorder.timeline(),
        notes,
    };
    judge(scenario, &mut report);
    drop(server);
    drop(postgres);
    drop(work);
    Ok(report)
}

/// The server settings as the report shows them: a database URL's password replaced.
fn redacted_settings(
    server: &crate::scenario::ServerSettings,
) -> anyhow::Result<serde_json::Value> {
    let mut v = serde_json::to_value(server)?;
    if let Some(url) = v["storage"]["database_url"].as_str() {
        let shown = lockbench_server::storage::postgres::redact_url(url);
        v["storage"]["database_url"] = serde_json::Value::String(shown);
    }
    Ok(v)
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

/// The database the audit reads, read-only: the run's SQLite file or its PostgreSQL schema.
enum AuditDb {
    Sqlite(ReadOnlyDb),
    Postgres(lockbench_server::storage::postgres::ReadOnlyPg),
}

impl AuditDb {
    fn query(
        &mut self,
        op: &str,
        sql: &str,
        params: &[Value],
    ) -> Result<Vec<Vec<Value>>, lockbench_server::storage::DbError> {
        match self {
            AuditDb::Sqlite(db) => db.query(op, sql, params),
            AuditDb::Postgres(db) => db.query(op, sql, params),
        }
    }
}

/// A PostgreSQL schema of one run's own: created before the servers start, dropped when
/// the run ends, on every path, so runs never see each other's rows and a failed run leaves
/// nothing behind.
struct PgSchema {
    url: String,
    schema: String,
}

impl PgSchema {
    fn create(url: &str, scenario: &str) -> anyhow::Result<PgSchema> {
        use lockbench_server::storage::postgres;
        let schema = postgres::unique_schema(scenario);
        postgres::create_schema(url, &schema).map_err(|e| {
            anyhow::anyhow!(
                "server.storage.database_url {}: {e}",
                postgres::redact_url(url)
            )
        })?;
        Ok(PgSchema {
            url: url.to_owned(),
            schema,
        })
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if let Err(e) = lockbench_server::storage::postgres::drop_schema(&self.url, &self.schema) {
            eprintln!(
                "lockbench: could not drop the run's schema {schema} ({e}); it holds only that run's rows and no later run uses it; drop it with: DROP SCHEMA \"{schema}\" CASCADE;",
                schema = self.schema
            );
        }
    }
}

/// Watches a run's PostgreSQL server from a thread of its own: it connects once a second,
/// and after three failures in a row says the server has gone (with when and why), so the
/// run stops instead of measuring a server that is not there.
struct PgWatch {
    gone: Arc<std::sync::Mutex<Option<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PgWatch {
    fn start(url: &str, started: Instant) -> PgWatch {
        let gone = Arc::new(std::sync::Mutex::new(None));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let (gone, stop, url) = (gone.clone(), stop.clone(), url.to_owned());
            std::thread::spawn(move || {
                let mut failures: Vec<(f64, String)> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let at = started.elapsed().as_secs_f64();
                    match lockbench_server::storage::postgres::ping(&url) {
                        Ok(()) => failures.clear(),
                        Err(e) => failures.push((at, e.to_string())),
                    }
                    if failures.len() >= 3 {
                        let (first, why) = &failures[0];
                        *gone.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!(
                            "the PostgreSQL server at {} stopped answering {first:.1} s into the run and did not come back in {} tries ({why})",
                            lockbench_server::storage::postgres::redact_url(&url),
                            failures.len()
                        ));
                        return;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            })
        };
        PgWatch {
            gone,
            stop,
            thread: Some(thread),
        }
    }

    /// Why the server is taken for gone, once it is.
    fn gone(&self) -> Option<String> {
        self.gone.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for PgWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A `kill-worker` fault on its way: waiting for its photo, killed and waiting for the
/// restart, batch posted again.
struct Kill {
    fault: Fault,
    at_photo: u64,
    target: KillTarget,
    state: KillState,
}

enum KillState {
    Waiting,
    /// Killed; the batch is posted again once the supervisor has restarted the worker.
    Killed {
        at: Instant,
        worker: String,
        pid: u32,
        processor: bool,
        processed: u64,
        /// Lock errors the workers had counted just before the kill.
        counted: u64,
    },
    Done(FaultRecord),
}

/// What a kill needs from the runner.
struct KillEnv<'a> {
    client: &'a reqwest::blocking::Client,
    url: &'a str,
    token: &'a str,
    workers: u32,
    batch_id: i64,
    photo_dir: &'a Path,
    restarts: &'a Path,
    recorder: &'a crate::load::Recorder,
}

impl Kill {
    fn record(&self, env: &KillEnv<'_>, started: Option<Instant>, outcome: String) -> FaultRecord {
        let since = |t: Instant| {
            (t.saturating_duration_since(env.recorder.started())
                .as_secs_f64()
                * 10.0)
                .round()
                / 10.0
        };
        FaultRecord {
            kind: self.fault.kind().to_owned(),
            description: self.fault.describe(),
            spec: serde_json::to_value(&self.fault).unwrap_or_default(),
            started_s: started.map(since),
            ended_s: started.map(|_| since(Instant::now())),
            outcome,
            lock_errors_before: None,
        }
    }

    fn step(&mut self, processed: u64, env: &KillEnv<'_>) {
        match &self.state {
            KillState::Waiting if processed >= self.at_photo => {
                let pick = pick_worker(env, self.target);
                self.state = match pick {
                    Err(why) => KillState::Done(self.record(env, None, why)),
                    Ok((worker, pid, processor, counted)) => {
                        use nix::sys::signal::{kill, Signal};
                        use nix::unistd::Pid;
                        match kill(Pid::from_raw(pid as i32), Signal::SIGKILL) {
                            Ok(()) => KillState::Killed {
                                at: Instant::now(),
                                worker,
                                pid,
                                processor,
                                processed,
                                counted,
                            },
                            Err(e) => KillState::Done(self.record(
                                env,
                                None,
                                format!("could not kill worker {worker} (pid {pid}): {e}"),
                            )),
                        }
                    }
                };
            }
            KillState::Killed {
                at,
                worker,
                pid,
                processor,
                processed,
                counted,
            } => {
                let restarted = std::fs::read_to_string(env.restarts).is_ok_and(|t| {
                    t.lines().any(|l| {
                        serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| {
                            v["pid"].as_u64() == Some(u64::from(*pid)) && v["action"] == "restarted"
                        })
                    })
                });
                if !restarted && at.elapsed() < Duration::from_secs(30) {
                    return;
                }
                let killed = format!(
                    "SIGKILL to worker {worker} (pid {pid}{}) at photo {processed}, when the workers had counted {counted} lock errors",
                    if *processor { ", running the processor" } else { "" }
                );
                let outcome = if !restarted {
                    format!("{killed}; the supervisor did not restart it within 30 s")
                } else if !processor {
                    format!("{killed}; the supervisor restarted it; the batch went on in its own worker")
                } else {
                    match repost_batch(env) {
                        Ok(()) => format!(
                            "{killed}; the supervisor restarted it and lockbench posted the batch again, as an admin would: the processor resumes from what was committed"
                        ),
                        Err(e) => format!("{killed}; posting the batch again failed: {e}"),
                    }
                };
                let (at, counted) = (*at, *counted);
                let mut record = self.record(env, Some(at), outcome);
                record.lock_errors_before = Some(counted);
                self.state = KillState::Done(record);
            }
            _ => {}
        }
    }

    fn into_record(self) -> FaultRecord {
        match self.state {
            KillState::Done(r) => r,
            KillState::Waiting => FaultRecord {
                kind: self.fault.kind().to_owned(),
                description: self.fault.describe(),
                spec: serde_json::to_value(&self.fault).unwrap_or_default(),
                started_s: None,
                ended_s: None,
                outcome: format!(
                    "not applied: the batch never reached photo {}",
                    self.at_photo
                ),
                lock_errors_before: None,
            },
            KillState::Killed { worker, pid, .. } => FaultRecord {
                kind: self.fault.kind().to_owned(),
                description: self.fault.describe(),
                spec: serde_json::to_value(&self.fault).unwrap_or_default(),
                started_s: None,
                ended_s: None,
                outcome: format!(
                    "SIGKILL to worker {worker} (pid {pid}); the run ended before it was restarted"
                ),
                lock_errors_before: None,
            },
        }
    }
}

/// The worker to kill and its pid, from every worker's /metrics: the one running the batch's
/// processor, or the first that answers.
fn pick_worker(env: &KillEnv<'_>, target: KillTarget) -> Result<(String, u32, bool, u64), String> {
    let texts = scrape_all(
        env.client,
        &format!("{}/metrics", env.url),
        None,
        env.workers,
    );
    // The lock errors counted so far, so the report can show they survive the kill.
    let counted: u64 = ServerFigures::parse(texts.values())
        .lock_by_code
        .values()
        .sum();
    let batch = env.batch_id.to_string();
    let mut first = None;
    for (worker, text) in &texts {
        let pid = text
            .lines()
            .find(|l| l.starts_with("lockbench_worker_info"))
            .and_then(|l| label(l, "pid"))
            .and_then(|p| p.parse::<u32>().ok());
        let Some(pid) = pid else { continue };
        let running = text.lines().any(|l| {
            l.starts_with("lockbench_batch_processor_running{")
                && label(l, "batch").as_deref() == Some(batch.as_str())
                && l.trim_end().ends_with(" 1")
        });
        if running {
            return Ok((worker.clone(), pid, true, counted));
        }
        first.get_or_insert((worker.clone(), pid, false, counted));
    }
    match (target, first) {
        (KillTarget::Any, Some(w)) => Ok(w),
        (KillTarget::Any, None) => Err("no worker answered /metrics: nothing was killed".into()),
        (KillTarget::Processor, _) => Err(format!(
            "no worker was running the processor of batch {}: nothing was killed",
            env.batch_id
        )),
    }
}

/// POST /api/batches again with the same folder, trying again on a 503 as a person would.
fn repost_batch(env: &KillEnv<'_>) -> anyhow::Result<()> {
    for _ in 0..30 {
        let response = env
            .client
            .post(format!("{}/api/batches", env.url))
            .bearer_auth(env.token)
            .json(&serde_json::json!({"dir": env.photo_dir}))
            .send();
        match response {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) if r.status().as_u16() == 503 => {}
            Ok(r) => bail!("{}: {}", r.status(), r.text().unwrap_or_default()),
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    bail!("no worker accepted the batch in 15 s")
}

/// What a run against an external app may look at, checked before any load starts.
#[derive(Default)]
struct TargetAccess {
    log: Option<(PathBuf, regex::Regex)>,
    database: Option<PathBuf>,
    /// (audit_query, audit_field)
    audit: Option<(String, String)>,
}

/// Checks `[target]` against the files themselves: the log can be read, the database opens
/// read-only, the audit query compiles and answers one number. Each error names the key.
fn check_target(scenario: &Scenario) -> anyhow::Result<TargetAccess> {
    let Some(t) = &scenario.target else {
        return Ok(TargetAccess::default());
    };
    let mut access = TargetAccess::default();
    if let Some(log) = &t.log {
        let pattern = regex::Regex::new(t.lock_pattern()).map_err(|e| {
            anyhow::anyhow!("target.lock_pattern: not a valid regular expression: {e}")
        })?;
        std::fs::File::open(log)
            .with_context(|| format!("target.log: cannot read {}", log.display()))?;
        access.log = Some((log.clone(), pattern));
    }
    if let Some(db) = &t.database {
        let ro = ReadOnlyDb::open(db).map_err(|e| anyhow::anyhow!("target.database: {e}"))?;
        if let (Some(query), Some(field)) = (&t.audit_query, &t.audit_field) {
            ro.count(query, "")
                .map_err(|e| anyhow::anyhow!("target.audit_query: {e}"))?;
            access.audit = Some((query.clone(), field.clone()));
        }
        access.database = Some(db.clone());
    }
    Ok(access)
}

fn sha256_file(path: &Path) -> anyhow::Result<String> {
    use sha2::Digest;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(format!("{:x}", sha2::Sha256::digest(&bytes)))
}

/// Reads the external app's database read-only: its journal mode and size, and every
/// acknowledged kiosk write looked up with the audit query.
fn audit_target(
    access: &TargetAccess,
    acks: &[serde_json::Value],
) -> anyhow::Result<Option<(TargetDatabase, Option<Audit>)>> {
    let Some(path) = &access.database else {
        return Ok(None);
    };
    let before = sha256_file(path)?;
    let ro = ReadOnlyDb::open(path).map_err(|e| anyhow::anyhow!("target.database: {e}"))?;
    let journal_mode = ro
        .journal_mode()
        .context("target.database: PRAGMA journal_mode")?;
    let audit = match &access.audit {
        None => None,
        Some((query, field)) => {
            let mut audit = Audit::default();
            for body in acks {
                let value = match &body[field.as_str()] {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => continue,
                    other => other.to_string(),
                };
                let n = ro
                    .count(query, &value)
                    .map_err(|e| anyhow::anyhow!("target.audit_query: {e}"))?;
                if n <= 0 {
                    audit.lost_registrations += 1;
                } else {
                    audit.duplicate_writes += (n - 1) as u64;
                }
            }
            audit.lost_writes = audit.lost_registrations;
            Some(audit)
        }
    };
    drop(ro);
    let after = sha256_file(path)?;
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    let figures = TargetDatabase {
        path: path.display().to_string(),
        journal_mode,
        size_bytes: std::fs::metadata(path).map_or(0, |m| m.len()),
        wal_bytes: std::fs::metadata(&wal).map_or(0, |m| m.len()),
        sha256_before: before,
        sha256_after: after,
        audited_writes: if access.audit.is_some() {
            acks.len() as u64
        } else {
            0
        },
    };
    Ok(Some((figures, audit)))
}

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
    spec: &crate::scenario::EndpointSpec,
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

fn run_external(
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
    let work = tempfile::tempdir().context("creating a temporary folder")?;
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
    let cap = scenario.duration.max;
    let run_for = match endpoints.batch {
        Some(_) => cap,
        None => scenario.duration.target_run.min(cap),
    };
    let attack = {
        let shared = shared.clone();
        let url = url.clone();
        std::thread::spawn(move || load::attack(&url, &shared, run_for + Duration::from_secs(5)))
    };
    let client = http_client()?;
    let started = Instant::now();
    let stop_load = |shared: &Arc<Shared>| shared.stop.store(true, Ordering::Relaxed);

    let mut batch: Option<ExternalBatch> = None;
    if let (Some(spec), Some((dir, manifest))) = (&endpoints.batch, &batch_files) {
        let posted = external_request(&client, &url, spec, 0, dir).and_then(|(status, body)| {
            if !(200..300).contains(&status) {
                bail!(
                    "endpoints.batch: {} {} answered {status}: {body}",
                    spec.method,
                    spec.path
                );
            }
            let v: serde_json::Value = serde_json::from_str(&body)
                .with_context(|| format!("endpoints.batch: the answer is not JSON: {body}"))?;
            v["batch_id"].as_i64().with_context(|| {
                format!("endpoints.batch: the answer has no integer batch_id: {body}")
            })
        });
        let id = match posted {
            Ok(id) => id,
            Err(e) => {
                stop_load(&shared);
                let _ = attack.join();
                if let Some(f) = follower {
                    let _ = f.finish();
                }
                return Err(e);
            }
        };
        shared.batch_id.store(id, Ordering::Relaxed);
        batch = Some(ExternalBatch {
            id,
            photos: manifest.files.len() as u64,
            status: serde_json::Value::Null,
            posted: Instant::now(),
            done: None,
            ended: None,
        });
    }

    let bar = progress_bar(opts, batch.as_ref().map_or(run_for.as_secs(), |b| b.photos));
    let mut interrupted = false;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        if crate::faults::interrupted() {
            interrupted = true;
            break;
        }
        let lock_seen = follower.as_ref().map_or_else(
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
        match (&mut batch, &endpoints.status) {
            (Some(b), Some(status_spec)) => {
                let dir = batch_files
                    .as_ref()
                    .map(|(d, _)| d.as_path())
                    .unwrap_or(Path::new(""));
                if let Ok((200..=299, body)) =
                    external_request(&client, &url, status_spec, b.id, dir)
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
    stop_load(&shared);
    bar.finish_and_clear();
    let load_time = started.elapsed();
    let attacked = attack.join();
    let log_count = match follower {
        Some(f) => Some(f.finish()?),
        None => None,
    };
    match attacked {
        Ok(result) => result.context("the load generator failed")?,
        Err(_) => bail!("the load generator panicked"),
    }

    let acks = shared
        .kiosk_acks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let (target_database, audit) = match audit_target(&access, &acks)? {
        Some((db, audit)) => (Some(db), audit),
        None => (None, None),
    };
    let requests = shared.recorder.endpoint_stats();
    let client_visible = shared.recorder.lock_visible_total();
    let unexplained = shared.recorder.unexplained_server_errors();
    let lock_errors = match log_count {
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
    };
    let mut notes = Vec::new();
    if interrupted {
        notes.push("interrupted by Ctrl-C: the load was stopped early; the figures cover the run up to then".to_owned());
    }
    notes.extend([
        "external target: lock errors by SQLite code, retries, effective settings and WAL figures come from the reference server's own counters and are absent here".to_owned(),
    ]);
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
    match (&audit, &target_database) {
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
    if let Some(db) = &target_database {
        if db.sha256_before != db.sha256_after {
            notes.push(format!(
                "{} changed while lockbench read it (the app was still writing); lockbench opens it read-only",
                db.path
            ));
        }
    }
    let batch_figures = batch.as_ref().map(|b| {
        let mut status = b.status.clone();
        if status["processed"].is_null() {
            status["processed"] = serde_json::json!(0);
        }
        batch_figures(&status, b.photos, b.done, b.posted.elapsed())
    });
    if batch.as_ref().is_some_and(|b| b.done.is_none()) {
        notes.push(format!(
            "the batch did not finish within the cap of {cap:?}"
        ));
    }
    let mut report = Report {
        schema_version: report::REPORT_SCHEMA_VERSION,
        lockbench_version: env!("CARGO_PKG_VERSION").to_owned(),
        git_commit: None,
        scenario: scenario_info(scenario, opts),
        started_at,
        target: Target {
            kind: "external".into(),
            url,
        },
        verdict: Verdict {
            passed: false,
            summary: String::new(),
            exit_code: 1,
        },
        settings_requested: serde_json::json!({
            "endpoints": scenario.endpoints,
            "target": scenario.target,
        }),
        settings_effective: None,
        sqlite_version: None,
        machine: machine(),
        users: users_info(scenario),
        roles: shared.recorder.role_figures(&scenario.users, load_time),
        requests,
        lock_errors,
        retries: None,
        commit_only_dropped: None,
        commit_only_dropped_by_endpoint: BTreeMap::new(),
        batch: batch_figures,
        audit,
        wal: None,
        target_database,
        faults: Vec::new(),
        restarts: Vec::new(),
        interrupted,
        repeat: None,
        gates: Vec::new(),
        timeline: shared.recorder.timeline(),
        notes,
    };
    judge(scenario, &mut report);
    drop(work);
    Ok(report)
}

fn count_text(n: u64) -> String {
    report::markdown::count(n)
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

fn batch_figures(
    status: &serde_json::Value,
    photos: u64,
    done: Option<Duration>,
    elapsed: Duration,
) -> BatchFigures {
    let processed = status["processed"].as_u64().unwrap_or(0);
    let duration_s = done.unwrap_or(elapsed).as_secs_f64();
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
        finished: done.is_some(),
    }
}

/// Fetches `url` over fresh connections until every worker has answered; keyed by worker id.
fn scrape_all(
    client: &reqwest::blocking::Client,
    url: &str,
    token: Option<&str>,
    workers: u32,
) -> BTreeMap<String, String> {
    let mut seen = BTreeMap::new();
    for _ in 0..(workers * 100).max(50) {
        let mut request = client.get(url);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let Ok(text) = request.send().and_then(|r| r.text()) else {
            continue;
        };
        let worker = if text.starts_with('{') {
            serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["worker"].as_u64())
                .map(|w| w.to_string())
        } else {
            text.lines()
                .find(|l| l.starts_with("lockbench_worker_info"))
                .and_then(|l| label(l, "worker"))
        };
        if let Some(w) = worker {
            seen.insert(w, text);
        }
        if seen.len() as u32 >= workers {
            break;
        }
    }
    seen
}

fn label(line: &str, name: &str) -> Option<String> {
    let start = line.find(&format!("{name}=\""))? + name.len() + 2;
    let end = line[start..].find('"')? + start;
    Some(line[start..end].to_owned())
}

fn value(line: &str) -> u64 {
    line.rsplit(' ')
        .next()
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// The endpoint a server-side operation belongs to.
fn endpoint_of(op: &str) -> &'static str {
    match op {
        "register" => "POST /api/registrations",
        "registration_updates" => "GET /api/registrations/updates",
        "batch_status" => "GET /api/batches/{id}/status",
        "admin_dashboard" => "GET /admin",
        "create_batch" => "POST /api/batches",
        _ => "processor",
    }
}

#[derive(Default)]
struct ServerFigures {
    lock_by_code: BTreeMap<String, u64>,
    lock_by_endpoint: BTreeMap<String, u64>,
    retries: u64,
    commit_only_dropped: u64,
    dropped_by_endpoint: BTreeMap<String, u64>,
    wal_bytes: u64,
    checkpoints_ok: u64,
    checkpoints_busy: u64,
}

impl ServerFigures {
    fn parse<'a>(texts: impl Iterator<Item = &'a String>) -> ServerFigures {
        let mut f = ServerFigures::default();
        for text in texts {
            for line in text.lines().filter(|l| !l.starts_with('#')) {
                if line.starts_with("lockbench_db_lock_errors_total{") {
                    let n = value(line);
                    if let Some(code) = label(line, "code") {
                        *f.lock_by_code.entry(code).or_default() += n;
                    }
                    if let Some(op) = label(line, "op") {
                        *f.lock_by_endpoint
                            .entry(endpoint_of(&op).to_owned())
                            .or_default() += n;
                    }
                } else if line.starts_with("lockbench_db_retries_total{") {
                    f.retries += value(line);
                } else if line.starts_with("lockbench_db_commit_only_dropped_total{") {
                    let n = value(line);
                    f.commit_only_dropped += n;
                    if let Some(op) = label(line, "op") {
                        if n > 0 {
                            *f.dropped_by_endpoint
                                .entry(endpoint_of(&op).to_owned())
                                .or_default() += n;
                        }
                    }
                } else if line.starts_with("lockbench_wal_bytes{") {
                    f.wal_bytes = f.wal_bytes.max(value(line));
                } else if line.starts_with("lockbench_checkpoints_total{") {
                    match label(line, "result").as_deref() {
                        Some("ok") => f.checkpoints_ok += value(line),
                        _ => f.checkpoints_busy += value(line),
                    }
                }
            }
        }
        f
    }
}

/// Compares what clients were told with what the database holds. The file is opened
/// read-only: the audit changes nothing in what it audits.
fn audit(
    ro: &mut AuditDb,
    batch_id: i64,
    manifest: &Manifest,
    acks: &[String],
) -> anyhow::Result<Audit> {
    let photos = ro.query(
        "audit",
        "SELECT ph.file_name, ph.content_hash, ph.status, p.qr_payload FROM photos ph \
         LEFT JOIN persons p ON p.id = ph.person_id WHERE ph.batch_id = ?1",
        &[Value::Int(batch_id)],
    )?;
    let registrations = ro.query("audit", "SELECT email FROM registrations", &[])?;
    let counters = ro.query(
        "audit",
        "SELECT processed, failed, persons, uploaded, \
           (SELECT count(*) FROM photos WHERE batch_id = ?1), \
           (SELECT count(*) FROM photos WHERE batch_id = ?1 AND status = 'failed'), \
           (SELECT count(*) FROM persons WHERE batch_id = ?1), \
           (SELECT count(*) FROM persons WHERE batch_id = ?1 AND upload_state = 'uploaded') \
         FROM batches WHERE id = ?1",
        &[Value::Int(batch_id)],
    )?;
    let mut by_hash: HashMap<&str, Vec<&[Value]>> = HashMap::new();
    let mut by_name: HashMap<&str, u64> = HashMap::new();
    for row in &photos {
        if let Some(h) = row[1].as_str() {
            by_hash.entry(h).or_default().push(row);
        }
        if let Some(n) = row[0].as_str() {
            *by_name.entry(n).or_default() += 1;
        }
    }
    let mut audit = Audit::default();
    for file in &manifest.files {
        match file.kind {
            FileKind::Corrupt => {
                let recorded = photos.iter().any(|r| {
                    r[0].as_str() == Some(file.name.as_str()) && r[2].as_str() == Some("failed")
                });
                if !recorded {
                    audit.missing_photos += 1;
                }
            }
            FileKind::Qr | FileKind::Photo => match by_hash.get(file.content_hash.as_str()) {
                None => audit.missing_photos += 1,
                Some(rows) => {
                    let expected = file
                        .person
                        .and_then(|p| manifest.people.get(p))
                        .map(|p| p.qr_payload.as_str());
                    if rows[0][3].as_str() != expected {
                        audit.misassigned_photos += 1;
                    }
                }
            },
        }
    }
    audit.duplicate_writes = by_name.values().map(|n| n.saturating_sub(1)).sum();
    let emails: HashSet<&str> = registrations.iter().filter_map(|r| r[0].as_str()).collect();
    let batch_people = manifest.people.iter().map(|p| p.email.as_str());
    audit.lost_registrations = acks
        .iter()
        .map(String::as_str)
        .chain(batch_people)
        .filter(|e| !emails.contains(e))
        .count() as u64;
    audit.lost_writes = audit.missing_photos + audit.lost_registrations;
    if let Some(c) = counters.first() {
        let n = |i: usize| c.get(i).and_then(Value::as_i64).unwrap_or(0);
        for (name, counter, rows) in [
            ("processed", n(0), n(4)),
            ("failed", n(1), n(5)),
            ("persons", n(2), n(6)),
            ("uploaded", n(3), n(7)),
        ] {
            if counter != rows {
                audit
                    .counter_mismatches
                    .push(format!("batches.{name} = {counter}, rows = {rows}"));
            }
        }
    } else {
        audit
            .counter_mismatches
            .push(format!("batch {batch_id} is not in the database"));
    }
    Ok(audit)
}

/// The exit code of a run stopped by Ctrl-C (128 + SIGINT, as shells report it).
pub const INTERRUPTED_EXIT: u8 = 130;

/// The verdict's words on lock errors: where the count comes from, and never "0 lock
/// errors" when the count cannot be seen.
pub fn lock_summary(le: &LockErrors) -> String {
    match le.source {
        LockSource::ServerCounters => format!("{} lock errors (server side)", le.total),
        LockSource::TargetLog => format!("{} lock errors (the app's log)", le.total),
        LockSource::ClientsOnly if le.server_errors_unexplained > 0 => format!(
            "lock errors unknown: {} seen by clients, and {} server errors; their cause cannot be seen from the client; set [target].log",
            le.client_visible, le.server_errors_unexplained
        ),
        LockSource::ClientsOnly => format!(
            "{} lock errors seen by clients (the app's own count cannot be seen; set [target].log)",
            le.client_visible
        ),
    }
}

/// Checks the scenario's gates and writes the verdict.
fn judge(scenario: &Scenario, report: &mut Report) {
    let g = &scenario.gates;
    let mut gates = Vec::new();
    let mut add = |name: String, limit: f64, value: f64| {
        gates.push(GateResult {
            passed: value <= limit,
            name,
            limit,
            value,
        });
    };
    if let Some(limit) = g.max_lock_errors {
        // Seen only by clients, a 5xx of unknown cause may have been a lock error: the gate
        // passes only if it would pass with every one of them counted.
        let le = &report.lock_errors;
        let value = match le.source {
            LockSource::ClientsOnly => le.total + le.server_errors_unexplained,
            LockSource::ServerCounters | LockSource::TargetLog => le.total,
        };
        add("max_lock_errors".into(), limit as f64, value as f64);
    }
    if let Some(limit) = g.max_error_rate {
        let (count, failures) = report
            .requests
            .values()
            .fold((0, 0), |(c, f), s| (c + s.count, f + s.failures));
        let rate = if count == 0 {
            0.0
        } else {
            failures as f64 / count as f64
        };
        add(
            "max_error_rate".into(),
            limit,
            (rate * 10_000.0).round() / 10_000.0,
        );
    }
    for (endpoint, limit) in &g.p99_ms {
        let value = report
            .requests
            .get(endpoint)
            .map_or(f64::MAX, |s| s.latency_us.p99 as f64 / 1000.0);
        add(format!("p99_ms {endpoint}"), *limit, value);
    }
    for (name, limit) in &g.p99_corrected_ms {
        let value = match report.roles.get(name) {
            Some(role) => role.latency_from_tick_us.p99 as f64 / 1000.0,
            None => report
                .requests
                .get(name)
                .map_or(f64::MAX, |s| s.latency_from_tick_us.p99 as f64 / 1000.0),
        };
        add(format!("p99_corrected_ms {name}"), *limit, value);
    }
    if let Some(limit) = g.max_lost_writes {
        if let Some(audit) = &report.audit {
            add(
                "max_lost_writes".into(),
                limit as f64,
                audit.lost_writes as f64,
            );
        } else {
            report.notes.push(
                "gate max_lost_writes not checked: no audit against an external target".into(),
            );
        }
    }
    if let Some(limit) = g.max_batch_seconds {
        if let Some(batch) = &report.batch {
            let value = if batch.finished {
                batch.duration_s
            } else {
                f64::MAX
            };
            add("max_batch_seconds".into(), limit, value);
        }
    }
    // A value of f64::MAX (endpoint never called, batch never finished) stays out of the JSON.
    for gate in &mut gates {
        if gate.value == f64::MAX {
            gate.value = -1.0;
            gate.passed = false;
        }
    }
    let failed: Vec<&str> = gates
        .iter()
        .filter(|g| !g.passed)
        .map(|g| g.name.as_str())
        .collect();
    let unfinished = report.batch.as_ref().is_some_and(|b| !b.finished);
    let passed = failed.is_empty() && !unfinished && !report.interrupted;
    let lost = report.audit.as_ref().map(|a| a.lost_writes);
    let faults = if report.faults.is_empty() {
        String::new()
    } else {
        let names: Vec<&str> = report
            .faults
            .iter()
            .map(|f| f.description.as_str())
            .collect();
        format!("; faults: {}", names.join(", "))
    };
    let restarts = match report.restarts.len() {
        0 => String::new(),
        1 => "; 1 worker restart".to_owned(),
        n => format!("; {n} worker restarts"),
    };
    let summary = format!(
        "{}: {}; {}; {}{}{faults}{restarts}",
        if report.interrupted {
            "INTERRUPTED"
        } else if passed {
            "PASSED"
        } else {
            "FAILED"
        },
        if failed.is_empty() {
            format!("all {} gates passed", gates.len())
        } else {
            format!(
                "{} of {} gates failed ({})",
                failed.len(),
                gates.len(),
                failed.join(", ")
            )
        },
        lock_summary(&report.lock_errors),
        lost.map_or("lost writes not audited".to_owned(), |n| format!(
            "{n} lost writes"
        )),
        if unfinished {
            "; the batch did not finish"
        } else {
            ""
        },
    );
    report.gates = gates;
    report.verdict = Verdict {
        passed,
        summary,
        exit_code: if report.interrupted {
            INTERRUPTED_EXIT
        } else if passed {
            0
        } else {
            1
        },
    };
}
