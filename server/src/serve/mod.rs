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
//! The settings are one typed value from the scenario to the worker (`config.rs`:
//! [`AppSettings`] inside [`ServeConfig`]). `lockbench serve` reads them from flags and a
//! TOML file; a parent that holds them as a value starts `lockbench __serve` with
//! [`serve_command`], which passes the whole `ServeConfig` as JSON in [`ENV_CONFIG`], as the
//! supervisor passes it to its workers. They are checked once per process
//! ([`ServeConfig::check`]), which builds the retry plan the store is opened with.
//!
//! # Faults
//!
//! - A worker that dies is restarted after a delay that doubles with each consecutive crash
//!   of that worker ([`RestartPolicy`]: 200 ms, 400 ms, ... at most 5 s; back to 200 ms once
//!   it stayed up 30 s). When one worker has crashed 5 times within 60 s the supervisor stops
//!   every worker and exits with an error. Every restart and the giving up are appended to
//!   `<data_dir>/restarts.jsonl`, one [`RestartEvent`] per line (`restarts.rs`, which also
//!   reads them back: [`read_restart_events`]).
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
use socket2::{Domain, Socket, Type};
use tracing::{info, warn};

use crate::app::{self, AppState};
use crate::storage::{vfs, OpenError, RetryPlan, Store};

mod config;
mod restarts;
mod supervisor;
mod worker;

pub use config::*;
pub use restarts::*;
pub use supervisor::*;
pub use worker::*;

/// The hidden subcommand a supervisor starts its workers with (the config in
/// [`ENV_CONFIG`], as [`serve_command`] passes it to `__serve`).
pub const WORKER_SUBCOMMAND: &str = "__worker";
const ENV_WORKER: &str = "LOCKBENCH_WORKER_ID";
/// The admin token; generated and printed when unset.
pub const ENV_TOKEN: &str = "LOCKBENCH_ADMIN_TOKEN";
/// The pid of the process `serve` (or a worker) must not outlive: `lockbench run` sets it to
/// its own pid when it starts `lockbench serve`, and the supervisor to its own when it starts
/// a worker. See [`die_with_parent`].
pub const ENV_PARENT_PID: &str = "LOCKBENCH_PARENT_PID";

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
fn prepare_database(config: &ServeConfig, retry: &RetryPlan) -> anyhow::Result<()> {
    Store::open(&config.db, &config.app.storage, retry)
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

/// What the announcement says before the server's URL.
const LISTENING_ON: &str = "lockbench serve: listening on ";

/// Prints the line a parent waits for (`lockbench serve: listening on http://ADDR (N
/// workers)`) on stdout, flushed: the announcement `lockbench serve` and `__serve` make.
/// [`listening_url`] reads it.
pub fn print_listening(addr: SocketAddr, workers: &str) {
    println!("{LISTENING_ON}http://{addr} ({workers})");
    let _ = std::io::stdout().flush();
}

/// The URL a line of the server's stdout announces (`http://ADDR`), if it is the
/// announcement [`print_listening`] writes.
pub fn listening_url(line: &str) -> Option<&str> {
    line.strip_prefix(LISTENING_ON)?.split_whitespace().next()
}

/// `lockbench __serve`: [`serve`] with the config a parent put in [`ENV_CONFIG`]
/// ([`serve_command`]).
pub fn serve_from_env(announce: impl FnOnce(SocketAddr, &str)) -> anyhow::Result<()> {
    serve(ServeConfig::from_env()?, announce)
}

/// Runs `lockbench serve` until SIGTERM or Ctrl-C (or the death of the process named by
/// [`ENV_PARENT_PID`], see [`die_with_parent`]). `announce` receives the listening address
/// once the server can take requests.
pub fn serve(config: ServeConfig, announce: impl FnOnce(SocketAddr, &str)) -> anyhow::Result<()> {
    die_with_parent()?;
    let retry = config.check()?;
    check_port_free(SocketAddr::new(config.bind, config.port))?;
    prepare_database(&config, &retry)?;
    let (token, generated) = match std::env::var(ENV_TOKEN) {
        Ok(t) if !t.is_empty() => (t, false),
        _ => (generate_token(), true),
    };
    if generated {
        eprintln!("lockbench serve: admin token {token} (set {ENV_TOKEN} to choose it)");
    }
    let addr = SocketAddr::new(config.bind, config.port);
    if config.app.workers == 1 {
        let worker = Worker {
            config,
            retry,
            id: 0,
            token,
        };
        return run_worker(
            worker,
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
