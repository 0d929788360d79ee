//! `lockbench serve`: the reference server, with gunicorn-style worker processes.
//!
//! With `--workers 1` the server runs in this process. With N > 1 this process becomes a
//! supervisor: it prepares the database once (schema, journal mode), reserves the port, and
//! starts N copies of its own binary (`lockbench __worker`), each with its own connection
//! pools on the same database file and its own listening socket on the same port
//! (SO_REUSEPORT), so contention crosses processes as it did under gunicorn. SIGTERM or Ctrl-C
//! stops them all. Nothing outlives its starter: with `LOCKBENCH_PARENT_PID` set (the runner
//! sets it), `serve` gets SIGTERM when that parent dies, and every worker when its supervisor
//! dies ([`die_with_parent`]).
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
//! - A worker's counters survive its death: each worker journals them (the units of work's,
//!   the processor's, the checkpoints', the batches whose processor run ended) to
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
use crate::storage::{vfs, OpenError, RetryConfig, StorageConfig, Store};

mod supervisor;
mod worker;

pub use supervisor::*;
pub use worker::*;

/// The hidden subcommand a supervisor starts its workers with.
pub const WORKER_SUBCOMMAND: &str = "__worker";
const ENV_CONFIG: &str = "LOCKBENCH_WORKER_CONFIG";
const ENV_WORKER: &str = "LOCKBENCH_WORKER_ID";
/// The admin token; generated and printed when unset.
pub const ENV_TOKEN: &str = "LOCKBENCH_ADMIN_TOKEN";
/// The pid of the process `serve` (or a worker) must not outlive: `lockbench run` sets it to
/// its own pid when it starts `lockbench serve`, and the supervisor to its own when it starts
/// a worker. See [`die_with_parent`].
pub const ENV_PARENT_PID: &str = "LOCKBENCH_PARENT_PID";

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
    #[arg(long, default_value_t = ServeConfig::default().workers)]
    pub workers: u32,
    /// Requests one worker handles at once, the others waiting their turn (gunicorn's
    /// --threads with gthread workers); 0: no limit.
    #[arg(long, default_value_t = ServeConfig::default().threads)]
    pub threads: u32,
    /// all: the dashboard, the kiosks and the processor; web: no processor (POST
    /// /api/batches answers 409), for servers that share a PostgreSQL database with one
    /// that runs it.
    #[arg(long, value_enum, default_value_t = ServeConfig::default().role)]
    pub role: ServeRole,
    /// TCP port (0: pick a free one and print it).
    #[arg(long, default_value_t = ServeConfig::default().port)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value_t = ServeConfig::default().bind)]
    pub bind: IpAddr,
    /// Database file.
    #[arg(long, default_value_os_t = ServeConfig::default().db)]
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

/// When [`ENV_PARENT_PID`] is set: asks the kernel to send this process SIGTERM when its
/// parent dies (`PR_SET_PDEATHSIG`, so nothing of lockbench keeps running under PID 1 after
/// the runner or the supervisor was killed or crashed), and fails at once when the parent is
/// already not that pid (it died before the request was made, and the signal will never
/// come). Unset: nothing is asked. The signal is tied to the parent thread that started this
/// process, so a parent must start it from a thread that lives as long as it should run.
pub fn die_with_parent() -> anyhow::Result<()> {
    let Ok(text) = std::env::var(ENV_PARENT_PID) else {
        return Ok(());
    };
    let expected: i32 = text
        .trim()
        .parse()
        .with_context(|| format!("{ENV_PARENT_PID}={text:?} is not a process id"))?;
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
        .context("asking to die with the parent process (PR_SET_PDEATHSIG)")?;
    let parent = nix::unistd::getppid().as_raw();
    if parent != expected {
        bail!(
            "the process that started lockbench ({ENV_PARENT_PID}={expected}) is gone (the parent is now pid {parent}); exiting"
        );
    }
    Ok(())
}

/// Runs `lockbench serve` until SIGTERM or Ctrl-C (or the death of the process named by
/// [`ENV_PARENT_PID`], see [`die_with_parent`]). `announce` receives the listening address
/// once the server can take requests.
pub fn serve(config: ServeConfig, announce: impl FnOnce(SocketAddr, &str)) -> anyhow::Result<()> {
    die_with_parent()?;
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

#[cfg(test)]
mod tests;
