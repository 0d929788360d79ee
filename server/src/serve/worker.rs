//! One worker process: reads its [`ServeConfig`] (from `ENV_CONFIG` when the supervisor
//! started it), opens the store with the retry plan built from it (waiting while another
//! process holds a lock, and counting each lock error it met under the op `worker_open`),
//! polls the sync delay control file, and serves the app until SIGTERM or Ctrl-C. Never
//! starts or watches other processes; the supervisor does.

use super::*;
use crate::app::stats::ops;
use crate::storage::LockCode;
use crate::text::{log_safe, LogSafe};

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
pub(super) fn apply_sync_delay_control(
    path: &Path,
    last: &mut Option<Result<Option<Duration>, String>>,
) {
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
        Err(e) => {
            warn!(error = %log_safe(e), "ignoring the sync delay control file; using sync_delay_ms")
        }
    }
    vfs::set_sync_delay_override(now.clone().ok().flatten());
    *last = Some(now);
}

/// One worker as it runs: its settings, the retry plan built from them in this process,
/// its id and the admin token.
pub struct Worker {
    pub config: ServeConfig,
    pub retry: RetryPlan,
    pub id: u32,
    pub token: String,
}

/// Entry point of a worker process started by the supervisor.
pub fn worker_from_env() -> anyhow::Result<()> {
    // Die with the supervisor, even if it is killed without a chance to stop us; and do not
    // start when it is gone already. A supervisor always names itself; without it, the
    // signal is asked for all the same.
    if std::env::var_os(ENV_PARENT_PID).is_some() {
        die_with_parent()?;
    } else {
        let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM);
    }
    let config = ServeConfig::from_env().context("worker configuration")?;
    // The supervisor checked the whole config; this process builds its own plan from it.
    let retry = config.app.retry.plan()?;
    let id: u32 = std::env::var(ENV_WORKER)
        .ok()
        .and_then(|w| w.parse().ok())
        .context("worker started without its id")?;
    let token = std::env::var(ENV_TOKEN).context("worker started without the admin token")?;
    let addr = SocketAddr::new(config.bind, config.port);
    let worker = Worker {
        config,
        retry,
        id,
        token,
    };
    run_worker(worker, move || reuseport_listener(addr, true), |_| {})
}

/// How long a worker keeps trying to open the database while another process holds a lock
/// on it (an external write lock while the worker restarts, say) before it gives up.
pub(super) const WORKER_OPEN_PATIENCE: Duration = Duration::from_secs(60);

/// Whether opening failed only because another connection held a lock.
pub(super) fn open_error_is_lock(e: &OpenError) -> bool {
    match e {
        OpenError::Open { source, .. } | OpenError::Migration { source, .. } => source.is_lock(),
        _ => false,
    }
}

/// Opens the store, waiting (up to [`WORKER_OPEN_PATIENCE`]) while the database is locked:
/// the supervisor prepared it already, so a lock is another process's, and passes. Returns
/// the lock errors met on the way, in order, for the caller to count once the store's
/// counters are journaled (a store that does not exist yet has no counters; a worker that
/// gives up exits with the error instead).
pub(super) fn open_store_patiently(
    config: &ServeConfig,
    retry: &RetryPlan,
) -> anyhow::Result<(Store, Vec<LockCode>)> {
    let started = Instant::now();
    let mut met = Vec::new();
    loop {
        match Store::open(&config.db, &config.app.storage, retry) {
            Ok(store) => return Ok((store, met)),
            Err(e) if open_error_is_lock(&e) && started.elapsed() < WORKER_OPEN_PATIENCE => {
                if met.is_empty() {
                    warn!(error = %LogSafe(&e), "another process holds a lock on the database; the worker waits to open it");
                }
                met.extend(open_error_lock_code(&e));
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e).with_context(|| format!("opening {}", config.db.display())),
        }
    }
}

/// The lock code of an error opening the store, if it is a lock error.
fn open_error_lock_code(e: &OpenError) -> Option<LockCode> {
    match e {
        OpenError::Open { source, .. } | OpenError::Migration { source, .. } => source.lock_code(),
        _ => None,
    }
}

/// Serves one worker until SIGTERM or Ctrl-C. `bind` makes the listening socket; it is called
/// only once the worker can answer (its store open, its counters replayed), so that no
/// connection waits in the backlog of a worker that may still fail to start.
pub fn run_worker(
    worker: Worker,
    bind: impl FnOnce() -> anyhow::Result<std::net::TcpListener>,
    ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut control_state = None;
    if let Some(path) = &worker.config.sync_delay_control {
        // Before the store opens: its connections must go through the delay VFS.
        vfs::require_delay_vfs();
        apply_sync_delay_control(path, &mut control_state);
    }
    runtime.block_on(async move {
        let store = open_and_replay(&worker).await?;
        if let Some(path) = worker.config.sync_delay_control.clone() {
            tokio::spawn(poll_sync_delay_control(path, control_state));
        }
        let app = app_of(&worker, store);
        let listener = tokio::net::TcpListener::from_std(bind()?)?;
        let local = listener.local_addr()?;
        info!(worker = worker.id, %local, pid = std::process::id(), "worker listening");
        ready(local);
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("serving")?;
        info!(worker = worker.id, "worker stopped");
        Ok(())
    })
}

/// Opens the store (patiently), journals its counters to the worker's events file (going on
/// from a previous worker's), and counts the lock errors met while opening.
async fn open_and_replay(worker: &Worker) -> anyhow::Result<Store> {
    let (config, retry) = (worker.config.clone(), worker.retry.clone());
    let (store, open_locks) =
        tokio::task::spawn_blocking(move || open_store_patiently(&config, &retry)).await??;
    let events = stats_events_path(&worker.config.data_dir(), worker.id);
    let journaled = store.clone();
    let events2 = events.clone();
    let replayed = tokio::task::spawn_blocking(move || journaled.stats().journal_to(&events2))
        .await?
        .with_context(|| format!("keeping the counters in {}", events.display()))?;
    // The lock errors met while opening, each followed by another try, counted (and
    // logged) now that the counters are journaled.
    for code in open_locks {
        store.stats().lock_seen(ops::WORKER_OPEN, code, true);
    }
    if replayed > 0 {
        info!(
            worker = worker.id,
            replayed, "counters go on from the previous worker's"
        );
    }
    Ok(store)
}

/// Applies the sync delay control file every 100 ms, for as long as the worker runs.
async fn poll_sync_delay_control(
    path: PathBuf,
    mut last: Option<Result<Option<Duration>, String>>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
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
}

/// The app this worker serves: its role, its photo root, its limit on requests at once.
fn app_of(worker: &Worker, store: Store) -> axum::Router {
    let config = &worker.config;
    let state = AppState::new(
        store,
        worker.id,
        &worker.token,
        config.app.processor.clone(),
        config.app.retry.clone(),
        config.data_dir(),
    )
    .with_photo_root(config.photo_root());
    let state = match config.role {
        ServeRole::All => state,
        ServeRole::Web => state.web_only(),
    };
    app::router_with_threads(state, config.app.threads)
}

pub(super) async fn shutdown_signal() {
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
