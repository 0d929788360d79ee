//! An app that lockbench starts for one run (`[target] command`): its setup run in order,
//! the app started in a process group of its own with its output in `app.log`, polled until
//! its `ready` path answers 2xx, watched while the load runs, and stopped with SIGTERM to the
//! group, SIGKILL after the stop timeout. A second signal or a panic stops the group too
//! (`stop.rs`'s registry), so nothing of it outlives lockbench.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::report::LaunchedApp;
use crate::scenario::TargetSpec;

/// Lines of the app's output quoted when it fails to start.
const TAIL_LINES: usize = 20;

/// A free loopback port for the app: bound, then let go.
pub(super) fn free_port() -> anyhow::Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port for the app")?;
    Ok(listener.local_addr()?.port())
}

/// The app once started, and what the report will say of it.
pub(super) struct RunningApp {
    child: Option<Child>,
    output: PathBuf,
    stop_timeout: Duration,
    /// Set once it exited (by itself or stopped).
    status: Option<ExitStatus>,
    stopped_by_lockbench: Option<&'static str>,
    pub(super) record: LaunchedApp,
}

/// The last `n` lines of `path`, for an error message.
fn tail(path: &Path, n: usize) -> String {
    let Ok(f) = File::open(path) else {
        return String::new();
    };
    let lines: Vec<String> = BufReader::new(f).lines().map_while(Result::ok).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn output_file(path: &Path) -> anyhow::Result<(Stdio, Stdio)> {
    let f = File::options()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    Ok((Stdio::from(f.try_clone()?), Stdio::from(f)))
}

fn command(argv: &[String], t: &TargetSpec, env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).stdin(Stdio::null());
    if let Some(cwd) = &t.cwd {
        cmd.current_dir(cwd);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd
}

impl RunningApp {
    /// Runs the setup, starts the app and waits until `ready` (a path below `url`) answers
    /// 2xx. `t` has its placeholders filled; `env` is `[target].env` and the knobs'. An app
    /// that exits first, or is not ready in time, is an error quoting its last lines.
    pub(super) fn start(
        t: &TargetSpec,
        env: Vec<(String, String)>,
        knobs: Vec<(String, String, String)>,
        run_dir: &Path,
        ready: &str,
    ) -> anyhow::Result<RunningApp> {
        std::fs::create_dir_all(run_dir)
            .with_context(|| format!("creating the run's folder {}", run_dir.display()))?;
        let output = run_dir.join("app.log");
        let _ = std::fs::remove_file(&output);
        for (i, step) in t.setup.iter().enumerate() {
            let (out, err) = output_file(&output)?;
            let status = command(&step.argv(), t, &env)
                .stdout(out)
                .stderr(err)
                .status()
                .with_context(|| format!("target.setup[{i}]: cannot run {:?}", step.display()))?;
            if !status.success() {
                bail!(
                    "target.setup[{i}] ({}) failed: {status}; the last lines of its output ({}):\n{}",
                    step.display(),
                    output.display(),
                    tail(&output, TAIL_LINES)
                );
            }
        }
        let Some(cmd) = &t.command else {
            bail!("target.command: not set");
        };
        let (out, err) = output_file(&output)?;
        let started = Instant::now();
        let child = crate::stop::spawn_group(command(&cmd.argv(), t, &env).stdout(out).stderr(err))
            .with_context(|| format!("target.command: cannot start {:?}", cmd.display()))?;
        let record = LaunchedApp {
            command: cmd.display(),
            cwd: t.cwd.as_ref().map(|c| c.display().to_string()),
            env: t.masked_env(),
            knobs: knobs
                .into_iter()
                .map(|(setting, var, value)| (setting, format!("{var}={value}")))
                .collect(),
            setup: t.setup.iter().map(|s| s.display()).collect(),
            output: output.display().to_string(),
            ..LaunchedApp::default()
        };
        let mut app = RunningApp {
            child: Some(child),
            output,
            stop_timeout: t.stop_timeout(),
            status: None,
            stopped_by_lockbench: None,
            record,
        };
        let url = t.url.clone().unwrap_or_default();
        app.wait_ready(
            &format!("{}{ready}", url.trim_end_matches('/')),
            t.ready_timeout(),
            started,
        )?;
        Ok(app)
    }

    /// Polls `url` until it answers 2xx; an exit or the timeout is an error (the app
    /// stopped first).
    fn wait_ready(&mut self, url: &str, timeout: Duration, started: Instant) -> anyhow::Result<()> {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        loop {
            if let Some(status) = self.exited() {
                bail!(
                    "the app exited before it was ready ({status}); the last lines of its output ({}):\n{}",
                    self.output.display(),
                    tail(&self.output, TAIL_LINES)
                );
            }
            let last = match client.get(url).send() {
                Ok(r) if r.status().is_success() => break,
                Ok(r) => format!("answered {}", r.status().as_u16()),
                Err(e) if e.is_connect() => "refused the connection".into(),
                Err(e) => e.to_string(),
            };
            if started.elapsed() >= timeout || crate::stop::interrupted() {
                self.stop();
                bail!(
                    "target.ready_timeout: the app was not ready within {} ({url} {last}); the last lines of its output ({}):\n{}",
                    humantime::format_duration(timeout),
                    self.output.display(),
                    tail(&self.output, TAIL_LINES)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        self.record.ready_after_s = started.elapsed().as_secs_f64();
        Ok(())
    }

    /// The pid of its first process, which is also its process group's id; None once
    /// stopped.
    pub(super) fn group(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its exit status once it has exited (by itself or stopped), else None.
    pub(super) fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.status = Some(status);
                }
            }
        }
        self.status
    }

    /// Notes that it exited by itself `at` into the load.
    pub(super) fn exited_during_run(&mut self, at: Duration) {
        if self.record.exited_during_run_s.is_none() {
            self.record.exited_during_run_s = Some(at.as_secs_f64());
        }
    }

    /// SIGTERM to its group, SIGKILL after the stop timeout; then SIGKILL to whatever of
    /// the group is left. Fills `ended`.
    pub(super) fn stop(&mut self) {
        use nix::sys::signal::{killpg, Signal};
        use nix::unistd::Pid;
        let Some(mut child) = self.child.take() else {
            return;
        };
        let group = Pid::from_raw(child.id() as i32);
        if self.exited_with(&mut child).is_none() {
            let _ = killpg(group, Signal::SIGTERM);
            self.stopped_by_lockbench = Some("SIGTERM");
            let deadline = Instant::now() + self.stop_timeout;
            while self.exited_with(&mut child).is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if self.exited_with(&mut child).is_none() {
                let _ = killpg(group, Signal::SIGKILL);
                self.stopped_by_lockbench = Some("SIGKILL after the stop timeout");
                self.status = child.wait().ok();
            }
        }
        // Its workers, if the leader left any behind.
        let _ = killpg(group, Signal::SIGKILL);
        crate::stop::forget_child(child.id());
        let status = self
            .status
            .map_or("status unknown".to_owned(), |s| s.to_string());
        self.record.ended = match self.stopped_by_lockbench {
            Some(how) => format!("stopped by lockbench ({how}): {status}"),
            None => format!("exited by itself: {status}"),
        };
    }

    fn exited_with(&mut self, child: &mut Child) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = child.try_wait().ok().flatten();
        }
        self.status
    }
}

impl Drop for RunningApp {
    fn drop(&mut self) {
        self.stop();
    }
}
