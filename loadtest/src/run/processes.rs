//! The processes and connections a run starts and must stop on every path: the reference
//! server (`lockbench serve` as a child process), the run's own PostgreSQL schema and the
//! watch on that server. Knows nothing of the load, the audit or the report.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use lockbench_server::serve::{listening_url, serve_command, ServeConfig, ENV_TOKEN};
use lockbench_server::storage::postgres;

use crate::scenario::Scenario;

/// A running `lockbench serve`, in a process group of its own (the terminal's Ctrl-C reaches
/// lockbench only, which stops the server after reading its figures); stopped with SIGTERM
/// on drop.
pub struct ServerProcess {
    child: Child,
    /// The URL it announced ("listening on URL").
    pub url: String,
}

impl ServerProcess {
    /// Starts `cmd`, a `lockbench serve` command line, and waits up to `wait` for the line
    /// that announces its URL. Its stderr is `log` when given (and quoted when it does not
    /// start), else whatever `cmd` says.
    pub fn spawn(
        cmd: &mut Command,
        log: Option<&Path>,
        wait: Duration,
    ) -> anyhow::Result<ServerProcess> {
        if let Some(log) = log {
            let file = std::fs::File::create(log)
                .with_context(|| format!("creating {}", log.display()))?;
            cmd.stderr(Stdio::from(file));
        }
        let mut child = crate::stop::spawn_group(cmd.stdin(Stdio::null()).stdout(Stdio::piped()))
            .with_context(|| format!("starting {:?}", cmd.get_program()))?;
        let stdout = child.stdout.take().context("server stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + wait;
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    if let Some(url) = listening_url(&line) {
                        let url = url.to_owned();
                        return Ok(ServerProcess { child, url });
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    crate::stop::forget_child(child.id());
                    let tail = log
                        .and_then(|l| std::fs::read_to_string(l).ok())
                        .unwrap_or_default();
                    bail!(
                        "the server did not announce itself within {} s; its log says:\n{}",
                        wait.as_secs(),
                        last_lines(&tail, 20)
                    );
                }
            }
        }
    }

    /// `exe serve --config FILE` with the admin token, as a run starts its reference server.
    /// `exe __serve` with the whole config as one serialized value (`serve::serve_command`,
    /// the form its workers get too) and the admin token, as a run starts its reference
    /// server; its log at warn level in `log`.
    pub(super) fn serve(
        exe: &Path,
        config: &ServeConfig,
        token: &str,
        log: &Path,
    ) -> anyhow::Result<ServerProcess> {
        ServerProcess::spawn(
            serve_command(exe, config)
                .env(ENV_TOKEN, token)
                .env("LOCKBENCH_LOG", "warn"),
            Some(log),
            Duration::from_secs(120),
        )
    }

    /// The supervisor's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits up to 20 s for the supervisor to exit (SIGKILL after that);
    /// returns whether it exited cleanly.
    pub fn stop(&mut self) -> bool {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut clean = false;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                clean = status.success();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if Instant::now() >= deadline {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        crate::stop::forget_child(self.child.id());
        clean
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

pub(super) fn token() -> String {
    format!("{:032x}", rand_u128())
}

fn rand_u128() -> u128 {
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    t ^ ((std::process::id() as u128) << 64)
}

/// A PostgreSQL schema of one run's own: created before the servers start, dropped when
/// the run ends, on every path, so runs never see each other's rows and a failed run leaves
/// nothing behind.
pub(super) struct PgSchema {
    pub(super) url: String,
    pub(super) schema: String,
}

impl PgSchema {
    /// The run's schema when the scenario runs on PostgreSQL; none on SQLite.
    pub(super) fn for_scenario(scenario: &Scenario) -> anyhow::Result<Option<PgSchema>> {
        let storage = &scenario.server.storage;
        match (storage.driver.is_postgres(), &storage.database_url) {
            (true, Some(url)) => Ok(Some(PgSchema::create(url, &scenario.name)?)),
            (true, None) => bail!("server.storage.database_url: the postgres driver needs a database_url (or --database-url)"),
            _ => Ok(None),
        }
    }

    fn create(url: &str, scenario: &str) -> anyhow::Result<PgSchema> {
        use lockbench_server::storage::postgres;
        let schema = postgres::unique_schema(scenario);
        postgres::create_schema(url, &schema).map_err(|e| {
            anyhow::anyhow!(
                "server.storage.database_url {}: {e}",
                lockbench_server::storage::config::redact_url(url)
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
        if let Err(e) = postgres::drop_schema(&self.url, &self.schema) {
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
pub(super) struct PgWatch {
    gone: Arc<Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PgWatch {
    pub(super) fn start(url: &str, started: Instant) -> PgWatch {
        let gone = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (gone, stop, url) = (gone.clone(), stop.clone(), url.to_owned());
            std::thread::spawn(move || {
                let mut failures: Vec<(f64, String)> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let at = started.elapsed().as_secs_f64();
                    match postgres::ping(&url) {
                        Ok(()) => failures.clear(),
                        Err(e) => failures.push((at, e.to_string())),
                    }
                    if failures.len() >= 3 {
                        let (first, why) = &failures[0];
                        *gone.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!(
                            "the PostgreSQL server at {} stopped answering {first:.1} s into the run and did not come back in {} tries ({why})",
                            lockbench_server::storage::config::redact_url(&url),
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
    pub(super) fn gone(&self) -> Option<String> {
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
