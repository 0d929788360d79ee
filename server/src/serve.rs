//! `lockbench serve`: the reference server, with gunicorn-style worker processes.
//!
//! With `--workers 1` the server runs in this process. With N > 1 this process becomes a
//! supervisor: it prepares the database once (schema, journal mode), reserves the port, and
//! starts N copies of its own binary (`lockbench __worker`), each with its own connection
//! pools on the same database file and its own listening socket on the same port
//! (SO_REUSEPORT), so contention crosses processes as it did under gunicorn. A worker that dies
//! is restarted; SIGTERM or Ctrl-C stops them all.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use serde::{Deserialize, Serialize};
use socket2::{Domain, Socket, Type};
use tracing::{info, warn};

use crate::app::{self, AppState};
use crate::processor::ProcessorConfig;
use crate::storage::{RetryConfig, StorageConfig, Store};

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
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            storage: StorageConfig::default(),
            retry: RetryConfig::default(),
            processor: ProcessorConfig::default(),
            workers: 1,
            threads: 0,
            port: 8080,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            db: PathBuf::from("lockbench.db"),
            data_dir: None,
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

    pub fn validate(&self) -> anyhow::Result<()> {
        self.storage.validate()?;
        self.retry.validate()?;
        if self.workers == 0 || self.workers > 64 {
            bail!("invalid setting workers: {} (1 to 64)", self.workers);
        }
        Ok(())
    }
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

/// Opens the database once, before any worker does: creates the schema and fixes the journal
/// mode, so workers starting together do not race to switch it.
fn prepare_database(config: &ServeConfig) -> anyhow::Result<()> {
    Store::open(&config.db, &config.storage, &config.retry)
        .with_context(|| format!("preparing the database {}", config.db.display()))?;
    std::fs::create_dir_all(config.data_dir())
        .with_context(|| format!("creating {}", config.data_dir().display()))?;
    Ok(())
}

/// Runs `lockbench serve` until SIGTERM or Ctrl-C. `announce` receives the listening
/// address once the server can take requests.
pub fn serve(config: ServeConfig, announce: impl FnOnce(SocketAddr, &str)) -> anyhow::Result<()> {
    config.validate()?;
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
        let listener = reuseport_listener(addr, true)?;
        let local = listener.local_addr()?;
        return run_worker(config, 0, token, listener, |_| announce(local, "1 worker"));
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

async fn supervise(
    config: ServeConfig,
    token: String,
    local: SocketAddr,
    announce: impl FnOnce(SocketAddr, &str),
) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let json = serde_json::to_string(&config)?;
    let mut workers: Vec<(u32, Child)> = Vec::new();
    for id in 0..config.workers {
        workers.push((id, spawn_worker(&json, id, &token)?));
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
        stop_all(&mut workers);
        bail!("no worker answered /healthz on {local} within 60 s");
    }
    announce(local, &format!("{} workers", config.workers));

    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = interrupt.recv() => break,
            _ = tick.tick() => {
                for (id, child) in workers.iter_mut() {
                    if let Ok(Some(status)) = child.try_wait() {
                        warn!(worker = *id, %status, "worker exited; restarting it");
                        eprintln!("lockbench serve: worker {id} exited ({status}); restarting it");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        *child = spawn_worker(&json, *id, &token)?;
                    }
                }
            }
        }
    }
    info!("stopping workers");
    stop_all(&mut workers);
    Ok(())
}

/// SIGTERM to every worker, then up to 10 s for them to finish, then SIGKILL.
fn stop_all(workers: &mut [(u32, Child)]) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    for (_, child) in workers.iter() {
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for (id, child) in workers.iter_mut() {
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    warn!(worker = *id, "worker did not stop in time; killing it");
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
    let listener = reuseport_listener(SocketAddr::new(config.bind, config.port), true)?;
    run_worker(config, worker, token, listener, |_| {})
}

/// Serves one worker until SIGTERM or Ctrl-C.
pub fn run_worker(
    config: ServeConfig,
    worker: u32,
    token: String,
    listener: std::net::TcpListener,
    ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let cfg = config.clone();
        let store =
            tokio::task::spawn_blocking(move || Store::open(&cfg.db, &cfg.storage, &cfg.retry))
                .await?
                .with_context(|| format!("opening {}", config.db.display()))?;
        let state = AppState::new(
            store,
            worker,
            &token,
            config.processor.clone(),
            config.retry.clone(),
            config.data_dir(),
        );
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let local = listener.local_addr()?;
        info!(worker, %local, pid = std::process::id(), "worker listening");
        ready(local);
        let app = match config.threads {
            0 => app::router(state),
            n => app::router(state).layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                n as usize,
            )),
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
