//! `lockbench serve`: the reference server, with gunicorn-style worker processes.
//!
//! With `--workers 1` the server runs in this process. With N > 1 this process becomes a
//! supervisor: it prepares the database once (schema, journal mode), reserves the port, and
//! starts N copies of its own binary (`lockbench __worker`), each with its own connection
//! pools on the same database file and its own listening socket on the same port
//! (SO_REUSEPORT), so contention crosses processes as it did under gunicorn. SIGTERM or Ctrl-C
//! stops them all.
//!
//! # Faults
//!
//! - A worker that dies is restarted after a delay that doubles with each consecutive crash
//!   of that worker ([`RestartPolicy`]: 200 ms, 400 ms, ... at most 5 s; back to 200 ms once
//!   it stayed up 30 s). When one worker has crashed 5 times within 60 s the supervisor stops
//!   every worker and exits with an error. Every restart and the giving up are appended to
//!   `<data_dir>/restarts.jsonl`, one JSON object per line:
//!   `{"unix_ms": <when the death was seen>, "worker": <id>, "pid": <old pid>, "status":
//!   "<exit status>", "action": "restarted" | "gave-up", "delay_ms": <wait before
//!   restarting; 0 when giving up>, "new_pid": <pid, or null when giving up>}`.
//! - A worker's database counters survive its death: each worker journals them to
//!   `<data_dir>/stats/worker-<id>.events` ([`crate::storage::Stats::journal_to`]), and its
//!   successor goes on from there. `serve` clears that folder when it starts.
//! - `sync_delay_control`: a file each worker polls every 100 ms; an integer N in it makes
//!   every fsync of the worker sleep N ms (a slow disk switched on while the server runs),
//!   absent or empty gives back the configured `sync_delay_ms`.

use std::collections::VecDeque;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use clap::Args;
use serde::{Deserialize, Serialize};
use socket2::{Domain, Socket, Type};
use tracing::{info, warn};

use crate::app::{self, AppState};
use crate::processor::ProcessorConfig;
use crate::storage::{vfs, ConfigError, OpenError, RetryConfig, StorageConfig, Store};

/// The hidden subcommand a supervisor starts its workers with.
pub const WORKER_SUBCOMMAND: &str = "__worker";
const ENV_CONFIG: &str = "LOCKBENCH_WORKER_CONFIG";
const ENV_WORKER: &str = "LOCKBENCH_WORKER_ID";
/// The admin token; generated and printed when unset.
pub const ENV_TOKEN: &str = "LOCKBENCH_ADMIN_TOKEN";

/// Everything `lockbench serve` takes, as flags or as a TOML file (`--config`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    #[command(flatten)]
    pub storage: StorageConfig,
    #[command(flatten)]
    pub retry: RetryConfig,
    #[command(flatten)]
    pub processor: ProcessorConfig,
    /// Worker processes (gunicorn's --workers).
    #[arg(long, default_value_t = 1)]
    pub workers: u32,
    /// Requests one worker handles at once, the others waiting their turn (gunicorn's
    /// --threads with gthread workers); 0: no limit.
    #[arg(long, default_value_t = 0)]
    pub threads: u32,
    /// all: the dashboard, the kiosks and the processor; web: no processor (POST
    /// /api/batches answers 409), for servers that share a PostgreSQL database with one
    /// that runs it.
    #[arg(long, value_enum, default_value_t = ServeRole::default())]
    pub role: ServeRole,
    /// TCP port (0: pick a free one and print it).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind: IpAddr,
    /// Database file.
    #[arg(long, default_value = "lockbench.db")]
    pub db: PathBuf,
    /// Where per-person folders and uploads go (default: next to the database, `<db>.data`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// A file every worker polls every 100 ms: an integer N in it makes every fsync sleep N ms
    /// (overriding sync_delay_ms); absent or empty, sync_delay_ms applies. Connections then
    /// go through the slow-disk VFS even when sync_delay_ms is 0.
    #[arg(long, value_name = "FILE")]
    pub sync_delay_control: Option<PathBuf>,
}

/// What one `lockbench serve` process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ServeRole {
    /// The dashboard, the kiosks and the photo processor.
    #[default]
    All,
    /// The dashboard and the kiosks only: batches go to a server that runs the processor.
    Web,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            storage: StorageConfig::default(),
            retry: RetryConfig::default(),
            processor: ProcessorConfig::default(),
            workers: 1,
            threads: 0,
            role: ServeRole::default(),
            port: 8080,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            db: PathBuf::from("lockbench.db"),
            data_dir: None,
            sync_delay_control: None,
        }
    }
}

impl ServeConfig {
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| {
            let mut d = self.db.as_os_str().to_owned();
            d.push(".data");
            PathBuf::from(d)
        })
    }

    /// Rejects settings that cannot work together, naming them.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.storage.validate()?;
        self.retry.validate()?;
        if self.workers == 0 || self.workers > 64 {
            bail!("invalid setting workers: {} (1 to 64)", self.workers);
        }
        let data_dir = self.data_dir();
        if same_path(&data_dir, &self.db) {
            bail!(
                "invalid setting data_dir: {} is the database file itself",
                data_dir.display()
            );
        }
        if data_dir.exists() && !data_dir.is_dir() {
            bail!(
                "invalid setting data_dir: {} exists and is not a folder",
                data_dir.display()
            );
        }
        if let Some(control) = &self.sync_delay_control {
            if same_path(control, &self.db) {
                bail!(
                    "invalid setting sync_delay_control: {} is the database file itself",
                    control.display()
                );
            }
            if same_path(control, &data_dir) || control.is_dir() {
                bail!(
                    "invalid setting sync_delay_control: {} is a folder; it must name a file",
                    control.display()
                );
            }
            let parent = match control.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            if !parent.is_dir() {
                bail!(
                    "invalid setting sync_delay_control: the folder {} of {} does not exist",
                    parent.display(),
                    control.display()
                );
            }
        }
        Ok(())
    }
}

/// Whether two paths name the same file, as written or once resolved.
fn same_path(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        )
}

/// The restarts log of a data folder.
pub fn restarts_path(data_dir: &Path) -> PathBuf {
    data_dir.join("restarts.jsonl")
}

/// The stats events file of one worker.
pub fn stats_events_path(data_dir: &Path, worker: u32) -> PathBuf {
    data_dir
        .join("stats")
        .join(format!("worker-{worker}.events"))
}

/// When the supervisor restarts a dead worker, and when it gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Wait before the first restart after a crash.
    pub first_delay: Duration,
    /// The wait doubles per consecutive crash up to this.
    pub max_delay: Duration,
    /// A worker that stayed up this long starts again from `first_delay`.
    pub reset_after: Duration,
    /// Give up when one worker crashed this many times ...
    pub give_up_crashes: usize,
    /// ... within this long.
    pub give_up_window: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            first_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            reset_after: Duration::from_secs(30),
            give_up_crashes: 5,
            give_up_window: Duration::from_secs(60),
        }
    }
}

/// What the supervisor does about one death.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterDeath {
    /// Start the worker again after this wait.
    Restart(Duration),
    /// Too many crashes: stop everything.
    GiveUp,
}

/// One worker's crashes, as the restart policy needs them.
#[derive(Debug, Default, Clone)]
pub struct CrashHistory {
    /// Crashes since the worker last stayed up `reset_after`.
    consecutive: u32,
    /// When the crashes of the last `give_up_window` were seen.
    recent: VecDeque<Instant>,
}

impl CrashHistory {
    /// Counts a death seen at `now` of a worker that had been up for `up_for`.
    pub fn died(&mut self, policy: &RestartPolicy, now: Instant, up_for: Duration) -> AfterDeath {
        if up_for >= policy.reset_after {
            self.consecutive = 0;
        }
        self.consecutive = self.consecutive.saturating_add(1);
        self.recent.push_back(now);
        while self
            .recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > policy.give_up_window)
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= policy.give_up_crashes {
            return AfterDeath::GiveUp;
        }
        let doublings = self.consecutive.saturating_sub(1).min(30);
        let delay = policy
            .first_delay
            .saturating_mul(1 << doublings)
            .min(policy.max_delay);
        AfterDeath::Restart(delay)
    }
}

/// Reads the sync delay control file: `Ok(Some(N ms))` for an integer N, `Ok(None)` when the
/// file is absent or empty (the configured delay applies), an error naming the file and its
/// content otherwise.
pub fn read_sync_delay_control(path: &Path) -> Result<Option<Duration>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("sync_delay_control {}: {e}", path.display())),
    };
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    match text.parse::<u64>() {
        Ok(ms) if ms <= 60_000 => Ok(Some(Duration::from_millis(ms))),
        Ok(ms) => Err(format!(
            "sync_delay_control {}: {ms} ms is more than a minute per sync",
            path.display()
        )),
        Err(_) => Err(format!(
            "sync_delay_control {}: {text:?} is not a whole number of milliseconds",
            path.display()
        )),
    }
}

/// Applies the control file once; `last` is what was applied before (to log changes only).
fn apply_sync_delay_control(path: &Path, last: &mut Option<Result<Option<Duration>, String>>) {
    let now = read_sync_delay_control(path);
    if last.as_ref() == Some(&now) {
        return;
    }
    match &now {
        Ok(Some(d)) => info!(
            ms = d.as_millis() as u64,
            "sync delay set by the control file"
        ),
        Ok(None) => info!("sync delay back to the configured sync_delay_ms"),
        Err(e) => warn!(error = %e, "ignoring the sync delay control file; using sync_delay_ms"),
    }
    vfs::set_sync_delay_override(now.clone().ok().flatten());
    *last = Some(now);
}

fn generate_token() -> String {
    use rand::Rng;
    let bytes: [u8; 16] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A listening socket with SO_REUSEPORT, so several processes can serve one port.
fn reuseport_listener(addr: SocketAddr, listen: bool) -> anyhow::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket
        .bind(&addr.into())
        .with_context(|| format!("cannot bind {addr}"))?;
    if listen {
        socket.listen(1024)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Refuses a port another server listens on. The workers' sockets use SO_REUSEPORT, which
/// would let them share the port with another program doing the same; a plain bind first
/// finds any listener there.
fn check_port_free(addr: SocketAddr) -> anyhow::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    match std::net::TcpListener::bind(addr) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => bail!(
            "port {} is already in use on {} (another server listens there): {e}",
            addr.port(),
            addr.ip()
        ),
        Err(e) => {
            Err(e).with_context(|| format!("cannot bind port {} on {}", addr.port(), addr.ip()))
        }
    }
}

/// Opens the database once, before any worker does: creates the schema and fixes the journal
/// mode, so workers starting together do not race to switch it. Prepares the data folder,
/// with an empty stats folder (a new server starts its counters from 0).
fn prepare_database(config: &ServeConfig) -> anyhow::Result<()> {
    Store::open(&config.db, &config.storage, &config.retry)
        .with_context(|| format!("preparing the database {}", config.db.display()))?;
    let data_dir = config.data_dir();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating the data folder {}", data_dir.display()))?;
    let stats = data_dir.join("stats");
    match std::fs::remove_dir_all(&stats) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("clearing {}", stats.display())),
    }
    std::fs::create_dir_all(&stats).with_context(|| format!("creating {}", stats.display()))?;
    Ok(())
}

/// Runs `lockbench serve` until SIGTERM or Ctrl-C. `announce` receives the listening
/// address once the server can take requests.
pub fn serve(config: ServeConfig, announce: impl FnOnce(SocketAddr, &str)) -> anyhow::Result<()> {
    config.validate()?;
    check_port_free(SocketAddr::new(config.bind, config.port))?;
    prepare_database(&config)?;
    let (token, generated) = match std::env::var(ENV_TOKEN) {
        Ok(t) if !t.is_empty() => (t, false),
        _ => (generate_token(), true),
    };
    if generated {
        eprintln!("lockbench serve: admin token {token} (set {ENV_TOKEN} to choose it)");
    }
    let addr = SocketAddr::new(config.bind, config.port);
    if config.workers == 1 {
        return run_worker(
            config,
            0,
            token,
            move || reuseport_listener(addr, true),
            |local| announce(local, "1 worker"),
        );
    }
    // Reserve the port (bound, not listening: it takes no connections) so that port 0 gives
    // every worker the same port.
    let reserved = reuseport_listener(addr, false)?;
    let local = reserved.local_addr()?;
    let mut child_config = config.clone();
    child_config.port = local.port();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(supervise(child_config, token, local, announce))
}

fn spawn_worker(config_json: &str, worker: u32, token: &str) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("finding lockbench's own binary")?;
    Command::new(exe)
        .arg(WORKER_SUBCOMMAND)
        .env(ENV_CONFIG, config_json)
        .env(ENV_WORKER, worker.to_string())
        .env(ENV_TOKEN, token)
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("starting worker {worker}"))
}

fn wait_healthy(addr: SocketAddr, deadline: Duration) -> bool {
    use std::io::{Read, Write};
    let started = Instant::now();
    while started.elapsed() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let req = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            let mut buf = [0u8; 12];
            if s.write_all(req.as_bytes()).is_ok()
                && s.read_exact(&mut buf).is_ok()
                && buf.ends_with(b"200")
            {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// One death the supervisor saw, until the worker is started again.
struct Death {
    unix_ms: u128,
    pid: u32,
    status: String,
    delay: Duration,
}

enum SlotState {
    Running(Child),
    /// Dead; to be started again at `at`.
    Waiting {
        at: Instant,
        death: Death,
    },
}

/// One worker id under supervision.
struct Slot {
    id: u32,
    state: SlotState,
    started: Instant,
    history: CrashHistory,
}

fn unix_ms_now() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Appends one line to restarts.jsonl; a failure is logged, never fatal.
fn record_restart(path: &Path, line: &serde_json::Value) {
    let text = format!("{line}\n");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    if let Err(e) = written {
        warn!(path = %path.display(), error = %e, "cannot write the restarts log");
    }
}

fn status_text(status: &ExitStatus) -> String {
    status.to_string()
}

async fn supervise(
    config: ServeConfig,
    token: String,
    local: SocketAddr,
    announce: impl FnOnce(SocketAddr, &str),
) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let json = serde_json::to_string(&config)?;
    let policy = RestartPolicy::default();
    let restarts = restarts_path(&config.data_dir());
    let mut slots: Vec<Slot> = Vec::new();
    for id in 0..config.workers {
        match spawn_worker(&json, id, &token) {
            Ok(child) => slots.push(Slot {
                id,
                state: SlotState::Running(child),
                started: Instant::now(),
                history: CrashHistory::default(),
            }),
            Err(e) => {
                stop_all(&mut slots);
                return Err(e);
            }
        }
    }
    let connect_to = if local.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), local.port())
    } else {
        local
    };
    let healthy =
        tokio::task::spawn_blocking(move || wait_healthy(connect_to, Duration::from_secs(60)))
            .await?;
    if !healthy {
        stop_all(&mut slots);
        bail!("no worker answered /healthz on {local} within 60 s");
    }
    announce(local, &format!("{} workers", config.workers));

    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = interrupt.recv() => break,
            _ = tick.tick() => {
                if let Err(e) = supervise_tick(&mut slots, &policy, &restarts, &json, &token) {
                    stop_all(&mut slots);
                    return Err(e);
                }
            }
        }
    }
    info!("stopping workers");
    stop_all(&mut slots);
    Ok(())
}

/// Looks at every worker once: notes deaths, restarts the workers whose wait is over, gives
/// up (an error) when the policy says so.
fn supervise_tick(
    slots: &mut [Slot],
    policy: &RestartPolicy,
    restarts: &Path,
    json: &str,
    token: &str,
) -> anyhow::Result<()> {
    let now = Instant::now();
    for slot in slots.iter_mut() {
        let id = slot.id;
        match &mut slot.state {
            SlotState::Running(child) => {
                let status = match child.try_wait() {
                    Ok(Some(status)) => status,
                    Ok(None) => continue,
                    Err(e) => {
                        warn!(worker = id, error = %e, "cannot check on a worker");
                        continue;
                    }
                };
                let pid = child.id();
                let unix_ms = unix_ms_now();
                let status = status_text(&status);
                let up_for = now.saturating_duration_since(slot.started);
                match slot.history.died(policy, now, up_for) {
                    AfterDeath::Restart(delay) => {
                        warn!(worker = id, pid, %status, delay_ms = delay.as_millis() as u64, "worker exited; restarting it");
                        println!(
                            "lockbench serve: worker {id} (pid {pid}) exited ({status}); restarting it in {} ms",
                            delay.as_millis()
                        );
                        let _ = std::io::stdout().flush();
                        slot.state = SlotState::Waiting {
                            at: now + delay,
                            death: Death {
                                unix_ms,
                                pid,
                                status,
                                delay,
                            },
                        };
                    }
                    AfterDeath::GiveUp => {
                        let crashes = policy.give_up_crashes;
                        let window = policy.give_up_window.as_secs();
                        record_restart(
                            restarts,
                            &serde_json::json!({
                                "unix_ms": unix_ms,
                                "worker": id,
                                "pid": pid,
                                "status": status,
                                "action": "gave-up",
                                "delay_ms": 0,
                                "new_pid": null,
                            }),
                        );
                        eprintln!(
                            "lockbench serve: worker {id} crashed {crashes} times in {window} s; giving up"
                        );
                        bail!(
                            "worker {id} crashed {crashes} times in {window} s (last: pid {pid}, {status}); every worker was stopped"
                        );
                    }
                }
            }
            SlotState::Waiting { at, death } => {
                if now < *at {
                    continue;
                }
                let child = spawn_worker(json, id, token)?;
                let new_pid = child.id();
                record_restart(
                    restarts,
                    &serde_json::json!({
                        "unix_ms": death.unix_ms,
                        "worker": id,
                        "pid": death.pid,
                        "status": death.status,
                        "action": "restarted",
                        "delay_ms": death.delay.as_millis() as u64,
                        "new_pid": new_pid,
                    }),
                );
                info!(worker = id, pid = new_pid, "worker restarted");
                slot.state = SlotState::Running(child);
                slot.started = Instant::now();
            }
        }
    }
    Ok(())
}

/// SIGTERM to every running worker, then up to 10 s for them to finish, then SIGKILL.
fn stop_all(slots: &mut [Slot]) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    for slot in slots.iter() {
        if let SlotState::Running(child) = &slot.state {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for slot in slots.iter_mut() {
        let SlotState::Running(child) = &mut slot.state else {
            continue;
        };
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    warn!(worker = slot.id, "worker did not stop in time; killing it");
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
            }
        }
    }
}

/// Entry point of a worker process started by the supervisor.
pub fn worker_from_env() -> anyhow::Result<()> {
    // Die with the supervisor, even if it is killed without a chance to stop us.
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM);
    let json = std::env::var(ENV_CONFIG).context("worker started without its configuration")?;
    let config: ServeConfig = serde_json::from_str(&json).context("worker configuration")?;
    let worker: u32 = std::env::var(ENV_WORKER)
        .ok()
        .and_then(|w| w.parse().ok())
        .context("worker started without its id")?;
    let token = std::env::var(ENV_TOKEN).context("worker started without the admin token")?;
    let addr = SocketAddr::new(config.bind, config.port);
    run_worker(
        config,
        worker,
        token,
        move || reuseport_listener(addr, true),
        |_| {},
    )
}

/// How long a worker keeps trying to open the database while another process holds a lock
/// on it (an external write lock while the worker restarts, say) before it gives up.
const WORKER_OPEN_PATIENCE: Duration = Duration::from_secs(60);

/// Whether opening failed only because another connection held a lock.
fn open_error_is_lock(e: &OpenError) -> bool {
    match e {
        OpenError::Open { source, .. } | OpenError::Migration { source, .. } => source.is_lock(),
        // Setting the journal mode reports its error as text (configure's NotApplied).
        OpenError::Config(ConfigError::NotApplied { effective, .. }) => {
            effective.contains("database is locked")
        }
        _ => false,
    }
}

/// Opens the store, waiting (up to [`WORKER_OPEN_PATIENCE`]) while the database is locked:
/// the supervisor prepared it already, so a lock is another process's, and passes.
fn open_store_patiently(config: &ServeConfig) -> anyhow::Result<Store> {
    let started = Instant::now();
    let mut warned = false;
    loop {
        match Store::open(&config.db, &config.storage, &config.retry) {
            Ok(store) => return Ok(store),
            Err(e) if open_error_is_lock(&e) && started.elapsed() < WORKER_OPEN_PATIENCE => {
                if !warned {
                    warn!(error = %e, "the database is locked; the worker waits to open it");
                    warned = true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e).with_context(|| format!("opening {}", config.db.display())),
        }
    }
}

/// Serves one worker until SIGTERM or Ctrl-C. `bind` makes the listening socket; it is called
/// only once the worker can answer (its store open, its counters replayed), so that no
/// connection waits in the backlog of a worker that may still fail to start.
pub fn run_worker(
    config: ServeConfig,
    worker: u32,
    token: String,
    bind: impl FnOnce() -> anyhow::Result<std::net::TcpListener>,
    ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut control_state = None;
    if let Some(path) = &config.sync_delay_control {
        // Before the store opens: its connections must go through the delay VFS.
        vfs::require_delay_vfs();
        apply_sync_delay_control(path, &mut control_state);
    }
    runtime.block_on(async move {
        let cfg = config.clone();
        let store = tokio::task::spawn_blocking(move || open_store_patiently(&cfg)).await??;
        let events = stats_events_path(&config.data_dir(), worker);
        let journaled = store.clone();
        let events2 = events.clone();
        let replayed = tokio::task::spawn_blocking(move || journaled.stats().journal_to(&events2))
            .await?
            .with_context(|| format!("keeping the counters in {}", events.display()))?;
        if replayed > 0 {
            info!(
                worker,
                replayed, "counters go on from the previous worker's"
            );
        }
        if let Some(path) = config.sync_delay_control.clone() {
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                let mut last = control_state;
                loop {
                    tick.tick().await;
                    let path = path.clone();
                    let polled = tokio::task::spawn_blocking(move || {
                        apply_sync_delay_control(&path, &mut last);
                        last
                    })
                    .await;
                    match polled {
                        Ok(state) => last = state,
                        Err(_) => return,
                    }
                }
            });
        }
        let state = AppState::new(
            store,
            worker,
            &token,
            config.processor.clone(),
            config.retry.clone(),
            config.data_dir(),
        );
        let state = match config.role {
            ServeRole::All => state,
            ServeRole::Web => state.web_only(),
        };
        let listener = tokio::net::TcpListener::from_std(bind()?)?;
        let local = listener.local_addr()?;
        info!(worker, %local, pid = std::process::id(), "worker listening");
        ready(local);
        let app = match config.threads {
            0 => app::router(state),
            n => {
                app::router(state).layer(tower::limit::GlobalConcurrencyLimitLayer::new(n as usize))
            }
        };
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("serving")?;
        info!(worker, "worker stopped");
        Ok(())
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn restart_delays_double_per_crash_reset_after_a_long_life_and_give_up_at_five_in_a_minute() {
        let policy = RestartPolicy::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);

        // Crashes right after each start: 200, 400, 800, 1600 ms, then the fifth gives up.
        let mut h = CrashHistory::default();
        let delays: Vec<AfterDeath> = (0..5).map(|i| h.died(&policy, at(i), ms(100))).collect();
        assert_eq!(
            delays,
            [
                AfterDeath::Restart(ms(200)),
                AfterDeath::Restart(ms(400)),
                AfterDeath::Restart(ms(800)),
                AfterDeath::Restart(ms(1600)),
                AfterDeath::GiveUp,
            ]
        );

        // Crashes 20 s apart: never 5 in a minute, the wait grows to its cap of 5 s.
        let mut h = CrashHistory::default();
        let delays: Vec<AfterDeath> = (0..8)
            .map(|i| h.died(&policy, at(20 * i), Duration::from_secs(20)))
            .collect();
        assert_eq!(delays[4], AfterDeath::Restart(ms(3200)));
        assert_eq!(delays[5], AfterDeath::Restart(Duration::from_secs(5)));
        assert_eq!(delays[7], AfterDeath::Restart(Duration::from_secs(5)));

        // A worker that stayed up 30 s starts again from 200 ms.
        let mut h = CrashHistory::default();
        h.died(&policy, at(0), ms(10));
        h.died(&policy, at(1), ms(10));
        assert_eq!(
            h.died(&policy, at(40), Duration::from_secs(30)),
            AfterDeath::Restart(ms(200))
        );
        assert_eq!(
            h.died(&policy, at(41), ms(10)),
            AfterDeath::Restart(ms(400))
        );
        // Only crashes of the last 60 s count towards giving up: 4 in the window (40, 41,
        // 61, 62; 0 and 1 are older), then the fifth.
        assert_eq!(
            h.died(&policy, at(61), ms(10)),
            AfterDeath::Restart(ms(800))
        );
        assert_eq!(
            h.died(&policy, at(62), ms(10)),
            AfterDeath::Restart(ms(1600))
        );
        assert_eq!(h.died(&policy, at(63), ms(10)), AfterDeath::GiveUp);
    }

    #[test]
    fn the_control_file_holds_whole_milliseconds_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl");
        assert_eq!(read_sync_delay_control(&path), Ok(None), "absent");
        for (text, expected) in [
            ("", Ok(None)),
            ("  \n", Ok(None)),
            ("0", Ok(Some(ms(0)))),
            ("20\n", Ok(Some(ms(20)))),
            (" 60000 ", Ok(Some(ms(60_000)))),
        ] {
            std::fs::write(&path, text).unwrap();
            assert_eq!(read_sync_delay_control(&path), expected, "{text:?}");
        }
        for (text, says) in [
            ("fast", "\"fast\" is not a whole number"),
            ("-5", "\"-5\" is not a whole number"),
            ("2.5", "\"2.5\" is not a whole number"),
            ("60001", "more than a minute"),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = read_sync_delay_control(&path).unwrap_err();
            assert!(err.contains(says), "{text:?}: {err}");
            assert!(err.contains(&path.display().to_string()), "{err}");
        }
        // A folder where the file should be is an error, not "absent".
        assert!(read_sync_delay_control(dir.path()).is_err());
    }

    #[test]
    fn sync_delay_control_is_a_flag_and_a_toml_key() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeConfig,
        }
        use clap::Parser;
        let cli = Cli::try_parse_from(["serve", "--sync-delay-control", "/tmp/ctl"]).unwrap();
        assert_eq!(
            cli.serve.sync_delay_control,
            Some(PathBuf::from("/tmp/ctl"))
        );
        let from_toml: ServeConfig = toml::from_str("sync_delay_control = \"/tmp/ctl\"").unwrap();
        assert_eq!(from_toml.sync_delay_control, cli.serve.sync_delay_control);
        assert_eq!(ServeConfig::default().sync_delay_control, None);
        let err = toml::from_str::<ServeConfig>("sync_delay_contrl = \"x\"").unwrap_err();
        assert!(err.to_string().contains("sync_delay_contrl"), "{err}");
    }
}
