//! The supervisor of `--workers N > 1`: starts the worker processes (each with the whole
//! `ServeConfig` in `ENV_CONFIG`), watches them, restarts the dead ones by [`RestartPolicy`],
//! records every restart ([`RestartEvent`], `restarts.rs`), and stops them all on SIGTERM or
//! Ctrl-C. Handles processes only; never opens the database or serves HTTP.

use super::*;

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

pub(super) fn spawn_worker(config_json: &str, worker: u32, token: &str) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("finding lockbench's own binary")?;
    // Started from the supervisor's main thread (the pdeathsig follows the thread).
    Command::new(exe)
        .arg(WORKER_SUBCOMMAND)
        .env(ENV_PARENT_PID, std::process::id().to_string())
        .env(ENV_CONFIG, config_json)
        .env(ENV_WORKER, worker.to_string())
        .env(ENV_TOKEN, token)
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("starting worker {worker}"))
}

pub(super) fn wait_healthy(addr: SocketAddr, deadline: Duration) -> bool {
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
pub(super) struct Death {
    unix_ms: u64,
    pid: u32,
    status: String,
    delay: Duration,
}

pub(super) enum SlotState {
    Running(Child),
    /// Dead; to be started again at `at`.
    Waiting {
        at: Instant,
        death: Death,
    },
}

/// One worker id under supervision.
pub(super) struct Slot {
    id: u32,
    state: SlotState,
    started: Instant,
    history: CrashHistory,
}

pub(super) fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(super) fn status_text(status: &ExitStatus) -> String {
    status.to_string()
}

pub(super) async fn supervise(
    config: ServeConfig,
    token: String,
    local: SocketAddr,
    announce: impl FnOnce(SocketAddr, &str),
) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let json = config.to_json();
    let policy = RestartPolicy::default();
    let restarts = restarts_path(&config.data_dir());
    let mut slots: Vec<Slot> = Vec::new();
    for id in 0..config.app.workers {
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
    announce(local, &format!("{} workers", config.app.workers));

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
pub(super) fn supervise_tick(
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
                let death = Death {
                    unix_ms: unix_ms_now(),
                    pid: child.id(),
                    status: status_text(&status),
                    delay: Duration::ZERO,
                };
                let up_for = now.saturating_duration_since(slot.started);
                match slot.history.died(policy, now, up_for) {
                    AfterDeath::Restart(delay) => {
                        slot.state = wait_to_restart(id, death, now, delay)
                    }
                    AfterDeath::GiveUp => return Err(give_up(id, death, policy, restarts)),
                }
            }
            SlotState::Waiting { at, death } => {
                if now < *at {
                    continue;
                }
                let child = spawn_worker(json, id, token)?;
                append_restart_event(
                    restarts,
                    &death.event(id, RestartAction::Restarted, Some(child.id())),
                );
                info!(worker = id, pid = child.id(), "worker restarted");
                slot.state = SlotState::Running(child);
                slot.started = Instant::now();
            }
        }
    }
    Ok(())
}

impl Death {
    /// The line restarts.jsonl keeps of this death.
    fn event(&self, worker: u32, action: RestartAction, new_pid: Option<u32>) -> RestartEvent {
        RestartEvent {
            unix_ms: self.unix_ms,
            worker,
            pid: self.pid,
            status: self.status.clone(),
            action,
            delay_ms: self.delay.as_millis() as u64,
            new_pid,
        }
    }
}

/// Says that a worker died and will be started again after `delay`; the state it waits in.
fn wait_to_restart(id: u32, mut death: Death, now: Instant, delay: Duration) -> SlotState {
    let (pid, status) = (death.pid, &death.status);
    warn!(worker = id, pid, %status, delay_ms = delay.as_millis() as u64, "worker exited; restarting it");
    println!(
        "lockbench serve: worker {id} (pid {pid}) exited ({status}); restarting it in {} ms",
        delay.as_millis()
    );
    let _ = std::io::stdout().flush();
    death.delay = delay;
    SlotState::Waiting {
        at: now + delay,
        death,
    }
}

/// Records and says that the supervisor gives up on a worker; the error it exits with.
fn give_up(id: u32, death: Death, policy: &RestartPolicy, restarts: &Path) -> anyhow::Error {
    let crashes = policy.give_up_crashes;
    let window = policy.give_up_window.as_secs();
    append_restart_event(restarts, &death.event(id, RestartAction::GaveUp, None));
    eprintln!("lockbench serve: worker {id} crashed {crashes} times in {window} s; giving up");
    anyhow::anyhow!(
        "worker {id} crashed {crashes} times in {window} s (last: pid {}, {}); every worker was stopped",
        death.pid,
        death.status
    )
}

/// SIGTERM to every running worker, then up to 10 s for them to finish, then SIGKILL.
pub(super) fn stop_all(slots: &mut [Slot]) {
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
