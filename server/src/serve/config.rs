//! What a server is started with, in one typed form from the scenario to the worker.
//!
//! - [`AppSettings`]: the settings of the app itself (worker processes, threads, storage,
//!   retries, processor). A scenario's `[server]` table is this type (the runner re-exports
//!   it as `ServerSettings`), and [`ServeConfig`] flattens it, so its keys sit at the top of
//!   a serve config file (`workers`, `threads`, `[storage]`, `[retry]`, `[processor]`) and
//!   its flags are `serve`'s own (`--workers`, `--journal-mode`, `--retry`, ...).
//! - [`ServeConfig`]: everything `lockbench serve` takes, as flags or as a TOML file
//!   (`--config`): the app's settings plus where the server runs (port, database, folders,
//!   the photo root batches are confined to). It is read through a private mirror of its
//!   keys (`ServeConfigFile`), so that an error in a file points at its line.
//! - Crossing a process boundary, a `ServeConfig` is one JSON value in [`ENV_CONFIG`]:
//!   [`serve_command`] builds `lockbench __serve` for a parent that starts a server (the
//!   runner), and the supervisor starts its workers the same way; [`ServeConfig::from_env`]
//!   reads it back. Nobody writes a settings file to start a server or copies its fields.
//! - [`ServeConfig::check`] is where the settings are checked, once per process; it returns
//!   the [`RetryPlan`] it built, which the store is opened with.
//!
//! Types and checks only: starts nothing, opens no database.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::processor::ProcessorConfig;
use crate::storage::{RetryConfig, RetryPlan, StorageConfig};

/// The environment variable that carries a whole [`ServeConfig`] as JSON to `lockbench
/// __serve` ([`serve_command`]) and to a supervisor's workers (`lockbench __worker`).
pub const ENV_CONFIG: &str = "LOCKBENCH_SERVE_CONFIG";

/// The hidden subcommand that starts a server from [`ENV_CONFIG`] ([`super::serve_from_env`]).
pub const SERVE_SUBCOMMAND: &str = "__serve";

/// The most requests one worker may be told to handle at once (`threads`).
pub const MAX_THREADS: u32 = 10_000;

/// The app's own settings: what a scenario's `[server]` table holds and what `serve`
/// flattens into its config, flags and TOML keys alike.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct AppSettings {
    /// Worker processes (gunicorn's --workers).
    #[arg(long, default_value_t = AppSettings::default().workers)]
    pub workers: u32,
    /// Requests one worker handles at once, the others waiting their turn (gunicorn's
    /// --threads with gthread workers); 0: no limit.
    #[arg(long, default_value_t = AppSettings::default().threads)]
    pub threads: u32,
    #[command(flatten)]
    pub storage: StorageConfig,
    #[command(flatten)]
    pub retry: RetryConfig,
    #[command(flatten)]
    pub processor: ProcessorConfig,
}

impl Default for AppSettings {
    fn default() -> Self {
        AppSettings {
            workers: 1,
            threads: 0,
            storage: StorageConfig::default(),
            retry: RetryConfig::default(),
            processor: ProcessorConfig::default(),
        }
    }
}

impl AppSettings {
    /// Checks the settings, naming the one that is wrong, and builds the retry plan (the
    /// one place retry settings are turned into policies).
    pub fn check(&self) -> anyhow::Result<RetryPlan> {
        self.storage.validate()?;
        let plan = self.retry.plan()?;
        if self.workers == 0 || self.workers > 64 {
            bail!("invalid setting workers: {} (1 to 64)", self.workers);
        }
        if self.threads > MAX_THREADS {
            bail!(
                "invalid setting threads: {} (0 for no limit, up to {MAX_THREADS})",
                self.threads
            );
        }
        Ok(plan)
    }
}

/// Everything `lockbench serve` takes, as flags or as a TOML file (`--config`).
///
/// Serialised with [`AppSettings`]' keys at the top level; read through [`ServeConfigFile`],
/// which has the same keys, so that an error in a file points at its line (serde's
/// `flatten` would buffer the values and lose it), unknown keys refused, missing keys
/// defaulted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Args)]
#[serde(from = "ServeConfigFile")]
pub struct ServeConfig {
    /// The app's settings; their keys are this config's own (`workers`, `[storage]`, ...).
    #[command(flatten)]
    #[serde(flatten)]
    pub app: AppSettings,
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
    /// The folder batches must be in: POST /api/batches refuses (403) a folder that is not
    /// inside it once symbolic links are resolved (default: the data folder).
    #[arg(long, value_name = "DIR")]
    pub photo_root: Option<PathBuf>,
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
            app: AppSettings::default(),
            role: ServeRole::default(),
            port: 8080,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            db: PathBuf::from("lockbench.db"),
            data_dir: None,
            photo_root: None,
            sync_delay_control: None,
        }
    }
}

/// A [`ServeConfig`] as a file or JSON spells it: [`AppSettings`]' keys beside the
/// server's. Private to reading; the conversions list every field without `..`, so a field
/// added to either type must be added here too or nothing compiles.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ServeConfigFile {
    workers: u32,
    threads: u32,
    storage: StorageConfig,
    retry: RetryConfig,
    processor: ProcessorConfig,
    role: ServeRole,
    port: u16,
    bind: IpAddr,
    db: PathBuf,
    data_dir: Option<PathBuf>,
    photo_root: Option<PathBuf>,
    sync_delay_control: Option<PathBuf>,
}

impl Default for ServeConfigFile {
    fn default() -> Self {
        let ServeConfig {
            app:
                AppSettings {
                    workers,
                    threads,
                    storage,
                    retry,
                    processor,
                },
            role,
            port,
            bind,
            db,
            data_dir,
            photo_root,
            sync_delay_control,
        } = ServeConfig::default();
        ServeConfigFile {
            workers,
            threads,
            storage,
            retry,
            processor,
            role,
            port,
            bind,
            db,
            data_dir,
            photo_root,
            sync_delay_control,
        }
    }
}

impl From<ServeConfigFile> for ServeConfig {
    fn from(file: ServeConfigFile) -> Self {
        let ServeConfigFile {
            workers,
            threads,
            storage,
            retry,
            processor,
            role,
            port,
            bind,
            db,
            data_dir,
            photo_root,
            sync_delay_control,
        } = file;
        ServeConfig {
            app: AppSettings {
                workers,
                threads,
                storage,
                retry,
                processor,
            },
            role,
            port,
            bind,
            db,
            data_dir,
            photo_root,
            sync_delay_control,
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

    /// The folder batches must be in: `photo_root`, else the data folder.
    pub fn photo_root(&self) -> PathBuf {
        self.photo_root.clone().unwrap_or_else(|| self.data_dir())
    }

    /// Rejects settings that cannot work together, naming them, and returns the retry plan
    /// built on the way ([`AppSettings::check`]).
    pub fn check(&self) -> anyhow::Result<RetryPlan> {
        let plan = self.app.check()?;
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
        if let Some(root) = &self.photo_root {
            if !root.is_dir() {
                bail!(
                    "invalid setting photo_root: {} is not a folder",
                    root.display()
                );
            }
        }
        if let Some(control) = &self.sync_delay_control {
            self.check_sync_delay_control(control, &data_dir)?;
        }
        Ok(plan)
    }

    fn check_sync_delay_control(&self, control: &Path, data_dir: &Path) -> anyhow::Result<()> {
        if same_path(control, &self.db) {
            bail!(
                "invalid setting sync_delay_control: {} is the database file itself",
                control.display()
            );
        }
        if same_path(control, data_dir) || control.is_dir() {
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
        Ok(())
    }

    /// The config as the JSON value [`ENV_CONFIG`] carries.
    pub fn to_json(&self) -> String {
        // Plain data with string keys: serialising it to JSON cannot fail.
        serde_json::to_string(self).expect("a ServeConfig serialises to JSON")
    }

    /// The config a parent put in [`ENV_CONFIG`]; an error names the variable when it is
    /// missing or is not a `ServeConfig`.
    pub fn from_env() -> anyhow::Result<ServeConfig> {
        let json = std::env::var(ENV_CONFIG)
            .with_context(|| format!("{ENV_CONFIG} is not set: no configuration to serve"))?;
        serde_json::from_str(&json).with_context(|| format!("{ENV_CONFIG} is not a serve config"))
    }
}

/// `exe __serve` with `config` in [`ENV_CONFIG`]: how a parent process (the runner) starts
/// `lockbench serve` with settings it holds as values, without a file. The command sets
/// nothing else: the admin token ([`super::ENV_TOKEN`]; generated and printed when unset),
/// [`super::ENV_PARENT_PID`], stdio and the process group are the caller's. The server
/// prints `lockbench serve: listening on http://ADDR (N workers)` on stdout once it answers
/// ([`super::print_listening`]).
pub fn serve_command(exe: &Path, config: &ServeConfig) -> Command {
    let mut cmd = Command::new(exe);
    cmd.arg(SERVE_SUBCOMMAND).env(ENV_CONFIG, config.to_json());
    cmd
}

/// Whether two paths name the same file, as written or once resolved.
fn same_path(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        )
}
