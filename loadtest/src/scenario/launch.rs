//! An app that lockbench starts itself: `[target] command` and what goes with it (`cwd`,
//! `env`, `setup`, `ready`, the timeouts, `[target.knobs]`), the placeholders `{port}` and
//! `{run_dir}`, and the checks that need no process. Starting and stopping it is
//! `run/launch.rs`'s.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use lockbench_server::storage::config::parse_duration;
use serde::{Deserialize, Serialize};

use super::{Scenario, ServerSettings, TargetSpec};

/// A command: an argument list, run as it is, or a string run by `sh -c`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AppCommand {
    Shell(String),
    Args(Vec<String>),
}

impl AppCommand {
    /// The program and its arguments (`sh -c TEXT` for a string).
    pub fn argv(&self) -> Vec<String> {
        match self {
            AppCommand::Shell(text) => vec!["sh".into(), "-c".into(), text.clone()],
            AppCommand::Args(args) => args.clone(),
        }
    }

    /// The command as a person would type it.
    pub fn display(&self) -> String {
        match self {
            AppCommand::Shell(text) => text.clone(),
            AppCommand::Args(args) => args.join(" "),
        }
    }

    fn fill(&self, f: &impl Fn(&str) -> String) -> AppCommand {
        match self {
            AppCommand::Shell(text) => AppCommand::Shell(f(text)),
            AppCommand::Args(args) => AppCommand::Args(args.iter().map(|a| f(a)).collect()),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            AppCommand::Shell(text) => text.trim().is_empty(),
            AppCommand::Args(args) => args.first().is_none_or(|p| p.trim().is_empty()),
        }
    }
}

/// How the app takes one of lockbench's settings: an environment variable, and the app's
/// spelling of each value (a value not listed is passed as lockbench writes it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Knob {
    pub env: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, String>,
}

/// How long the app may take to answer its `ready` path, by default.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the app may take to exit after SIGTERM before SIGKILL, by default.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);

impl TargetSpec {
    /// How long the app may take to get ready.
    pub fn ready_timeout(&self) -> Duration {
        timeout(self.ready_timeout.as_deref(), DEFAULT_READY_TIMEOUT)
    }

    /// How long the app may take to exit after SIGTERM.
    pub fn stop_timeout(&self) -> Duration {
        timeout(self.stop_timeout.as_deref(), DEFAULT_STOP_TIMEOUT)
    }

    /// `env` as a report shows it: the values of keys that look like secrets (`TOKEN`,
    /// `SECRET`, `PASSWORD`, `KEY`, ...) replaced by `***`.
    pub fn masked_env(&self) -> BTreeMap<String, String> {
        self.env
            .iter()
            .map(|(k, v)| {
                let shown = if looks_secret(k) {
                    "***".to_owned()
                } else {
                    v.clone()
                };
                (k.clone(), shown)
            })
            .collect()
    }

    /// The spec for an app that already runs (`--target`): nothing to start (no command,
    /// setup, env, knobs), and `{run_dir}` in the log's and the database's paths this run's
    /// folder.
    pub fn measured_as_running(&self, run_dir: &std::path::Path) -> TargetSpec {
        let dir = run_dir.display().to_string();
        let path = |p: &PathBuf| fill_path(p, |s| s.replace("{run_dir}", &dir));
        TargetSpec {
            command: None,
            cwd: None,
            env: BTreeMap::new(),
            setup: Vec::new(),
            ready: None,
            ready_timeout: None,
            stop_timeout: None,
            knobs: BTreeMap::new(),
            database_owned: false,
            url: None,
            log: self.log.as_ref().map(path),
            database: self.database.as_ref().map(path),
            ..self.clone()
        }
    }

    /// Whether lockbench starts the app (`command` is set).
    pub fn launches(&self) -> bool {
        self.command.is_some()
    }

    /// The spec with `{port}` and `{run_dir}` filled in everywhere they may appear: the
    /// command, setup, cwd, env, url, log and database.
    pub fn filled(&self, port: u16, run_dir: &std::path::Path) -> TargetSpec {
        let run_dir = run_dir.display().to_string();
        let f = |s: &str| {
            s.replace("{port}", &port.to_string())
                .replace("{run_dir}", &run_dir)
        };
        let path = |p: &PathBuf| fill_path(p, f);
        let mut t = self.clone();
        t.command = self.command.as_ref().map(|c| c.fill(&f));
        t.setup = self.setup.iter().map(|c| c.fill(&f)).collect();
        t.cwd = self.cwd.as_ref().map(path);
        t.env = self.env.iter().map(|(k, v)| (k.clone(), f(v))).collect();
        t.url = Some(f(self.url.as_deref().unwrap_or("http://127.0.0.1:{port}")));
        t.log = self.log.as_ref().map(path);
        t.database = self.database.as_ref().map(path);
        t
    }

    /// The environment the app gets from its knobs: for each setting the scenario names
    /// (in its file, by `--set` or a sweep), the knob's variable and the app's spelling of
    /// the value. Errors name the knob.
    pub fn knob_env(
        &self,
        settings: &ServerSettings,
        named: &BTreeSet<String>,
    ) -> anyhow::Result<Vec<(String, String, String)>> {
        let values = setting_values(settings);
        let mut env = Vec::new();
        for (name, knob) in &self.knobs {
            let Some((key, value)) = values
                .iter()
                .find(|(k, _)| k.rsplit('.').next() == Some(name))
            else {
                bail!("target.knobs.{name}: not a setting of lockbench's (server.storage.tx_mode is named tx_mode)");
            };
            if !named.contains(key) {
                continue;
            }
            let app_value = match knob.values.get(value) {
                Some(v) => v.clone(),
                None if knob.values.is_empty() => value.clone(),
                None => bail!(
                    "target.knobs.{name}: no value for {value:?} (values has {})",
                    knob.values.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            };
            env.push((key.clone(), knob.env.clone(), app_value));
        }
        Ok(env)
    }
}

/// A path with its placeholders filled by `f`.
fn fill_path(p: &std::path::Path, f: impl Fn(&str) -> String) -> PathBuf {
    PathBuf::from(f(&p.display().to_string()))
}

/// Whether an environment variable's name looks like it holds a secret.
fn looks_secret(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    [
        "SECRET",
        "TOKEN",
        "PASSWORD",
        "PASSWD",
        "KEY",
        "CREDENTIAL",
        "AUTH",
    ]
    .iter()
    .any(|s| n.contains(s))
}

fn timeout(text: Option<&str>, default: Duration) -> Duration {
    text.and_then(|t| parse_duration(t).ok()).unwrap_or(default)
}

/// Every leaf of `v` under `prefix`, as a dotted key and its value.
fn leaves<'a>(prefix: &str, v: &'a toml::Value, out: &mut Vec<(String, &'a toml::Value)>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                leaves(&format!("{prefix}.{k}"), v, out);
            }
        }
        leaf => out.push((prefix.to_owned(), leaf)),
    }
}

/// Every setting of the reference server as `server.<path>` and its value as text.
fn setting_values(settings: &ServerSettings) -> Vec<(String, String)> {
    let Ok(v) = toml::Value::try_from(settings) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    leaves("server", &v, &mut out);
    out.into_iter()
        .map(|(key, value)| match value {
            toml::Value::String(s) => (key, s.clone()),
            other => (key, other.to_string()),
        })
        .collect()
}

/// The dotted keys under `server` that a scenario table names.
pub fn named_settings(table: &toml::Table) -> BTreeSet<String> {
    let mut out = Vec::new();
    if let Some(server) = table.get("server") {
        leaves("server", server, &mut out);
    }
    out.into_iter().map(|(key, _)| key).collect()
}

impl Scenario {
    /// Checks the keys of an app lockbench starts, without starting anything.
    pub(super) fn validate_launch(&self, t: &TargetSpec) -> anyhow::Result<()> {
        let Some(command) = &t.command else {
            // The keys only an app lockbench starts can have.
            let set = [
                ("cwd", t.cwd.is_some()),
                ("env", !t.env.is_empty()),
                ("setup", !t.setup.is_empty()),
                ("ready", t.ready.is_some()),
                ("ready_timeout", t.ready_timeout.is_some()),
                ("stop_timeout", t.stop_timeout.is_some()),
                ("knobs", !t.knobs.is_empty()),
                ("database_owned", t.database_owned),
            ];
            if let Some((key, _)) = set.iter().find(|(_, set)| *set) {
                bail!("target.{key}: set without target.command (it applies to an app lockbench starts)");
            }
            return Ok(());
        };
        if command.is_empty() {
            bail!("target.command: is empty");
        }
        if let Some(i) = t.setup.iter().position(AppCommand::is_empty) {
            bail!("target.setup[{i}]: is empty");
        }
        if let Some(url) = &t.url {
            if !url.contains("{port}") {
                bail!("target.url: {url:?} has no {{port}}: lockbench picks the app's port for each run and passes it as {{port}}");
            }
        }
        for (key, text) in [
            ("ready_timeout", &t.ready_timeout),
            ("stop_timeout", &t.stop_timeout),
        ] {
            if let Some(text) = text {
                parse_duration(text).map_err(|e| anyhow::anyhow!("target.{key}: {e}"))?;
            }
        }
        if let Some(ready) = &t.ready {
            if !ready.starts_with('/') {
                bail!("target.ready: {ready:?} is not a path (it starts with /)");
            }
        }
        if let Some(name) = t.env.keys().find(|n| n.is_empty() || n.contains('=')) {
            bail!("target.env: {name:?} is not a variable name");
        }
        for (name, knob) in &t.knobs {
            if knob.env.is_empty() || knob.env.contains('=') {
                bail!(
                    "target.knobs.{name}.env: {:?} is not a variable name",
                    knob.env
                );
            }
        }
        t.knob_env(&self.server, &BTreeSet::new())?;
        self.validate_launch_faults(t)
    }

    /// The faults an app lockbench starts can have: a write lock or a long reader on a
    /// database the run owns. Killing its workers and slowing its disk are the reference
    /// server's.
    fn validate_launch_faults(&self, t: &TargetSpec) -> anyhow::Result<()> {
        for (i, fault) in self.faults.iter().enumerate() {
            let kind = fault.kind();
            match fault {
                super::Fault::ExternalLock { .. } | super::Fault::LongReader { .. } => {
                    if t.database.is_none() || !t.database_owned {
                        bail!(
                            "faults[{i}] ({kind}): acts on the app's database, which lockbench touches only when it belongs to the run: set target.database to a file in {{run_dir}} and target.database_owned = true"
                        );
                    }
                }
                super::Fault::SlowDisk { .. } => bail!(
                    "faults[{i}] (slow-disk): lockbench can change the disk's delay during a run only on the reference server; give your app a fixed delay from the start instead (the seed app's SEED_APP_SYNC_DELAY_MS in target.env)"
                ),
                super::Fault::KillWorker { at: None, .. } => bail!(
                    "faults[{i}].at (kill-worker): on an app lockbench starts a kill comes at a time into the load (at = \"20s\"), not at a photo"
                ),
                super::Fault::KillWorker {
                    worker: super::KillTarget::Processor,
                    ..
                } => bail!(
                    "faults[{i}].worker (kill-worker): lockbench cannot tell which of your app's processes runs its work; say worker = \"any\" (a process of the app's group other than its first) or a text its command line contains"
                ),
                super::Fault::KillWorker { .. } => {}
            }
        }
        Ok(())
    }
}

impl TargetSpec {
    /// Refuses a command that does not exist, before anything starts (the run checks the
    /// scenario as it will run, overrides applied): a path must be a file, a bare name must
    /// be on PATH; and a `cwd` that is not a folder.
    pub fn check_command(&self) -> anyhow::Result<()> {
        if let Some(cwd) = &self.cwd {
            if !cwd.is_dir() {
                bail!("target.cwd: {} is not a folder", cwd.display());
            }
        }
        match self
            .command
            .as_ref()
            .and_then(|c| c.argv().first().cloned())
        {
            Some(program) => check_program(&program, self.cwd.as_ref()),
            None => Ok(()),
        }
    }
}

/// A path must be a file, a bare name must be on PATH.
fn check_program(program: &str, cwd: Option<&PathBuf>) -> anyhow::Result<()> {
    let exists = if program.contains('/') {
        let p = PathBuf::from(program);
        let p = match cwd {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p,
        };
        p.is_file()
    } else {
        std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
    };
    if !exists {
        bail!("target.command: {program:?} does not exist (not a file, nor a program on PATH)");
    }
    Ok(())
}
