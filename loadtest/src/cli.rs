//! The `lockbench` command line as types: the subcommands and each one's arguments, parsed by
//! clap. Settings flags come from the same types scenario files and `serve --config` use
//! (`ProbeConfig`, `ServeConfig`, `BatchSpec`), so a flag and a key can never disagree. The
//! commands themselves are `commands.rs`'s.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use lockbench_server::photos::BatchSpec;
use lockbench_server::probe::ProbeConfig;
use lockbench_server::serve::{self, ServeConfig};

use crate::decide::{breakpoint, compare};

/// Reproduce and measure SQLite "database is locked".
#[derive(Debug, Parser)]
#[command(name = "lockbench", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Gates given on the command line (`contend`, `sweep`, `breakpoint`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CliGates {
    /// Fail (exit 1) above this many lock errors.
    #[arg(long, value_name = "N")]
    pub max_lock_errors: Option<u64>,
    /// Fail (exit 1) above this many lost writes (acknowledged writes the audit did not find).
    #[arg(long, value_name = "N")]
    pub max_lost_writes: Option<u64>,
}

impl CliGates {
    /// The gates as scenario overrides (`gates.max_lock_errors = N`).
    pub fn as_sets(&self) -> std::collections::BTreeMap<String, toml::Value> {
        let mut sets = std::collections::BTreeMap::new();
        if let Some(n) = self.max_lock_errors {
            sets.insert(
                "gates.max_lock_errors".into(),
                toml::Value::Integer(n as i64),
            );
        }
        if let Some(n) = self.max_lost_writes {
            sets.insert(
                "gates.max_lost_writes".into(),
                toml::Value::Integer(n as i64),
            );
        }
        sets
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Writers and readers against one database file: lock errors, retries, lost writes, latency.
    /// Exit code 0: within the gates given; 1: a gate failed; 2: the probe could not run.
    Contend(ContendArgs),
    /// The reference server: the photo processor and the dashboard, with worker processes.
    Serve(ServeArgs),
    /// Write a deterministic synthetic event batch (QR photos, photos, corrupt files, manifest).
    Photos(PhotosArgs),
    /// Run a scenario end to end: server, load, batch, audit, report, gates.
    /// Exit code 0: every gate passed; 1: a gate failed; 2: the run could not be carried out.
    Run(RunArgs),
    /// Compare two reports of one scenario: figures side by side, settings that differ.
    /// Exit code 0: no regression; 1: B regressed against A past the tolerance; 2: the
    /// reports cannot be compared.
    Compare(CompareArgs),
    /// Run a scenario many times with settings changed (rows or a cartesian product).
    Sweep(SweepArgs),
    /// Raise one load dimension until a gate first fails: the headroom before "database is locked".
    Breakpoint(BreakpointArgs),
    /// Diagnose "database is locked" from an app's log, database, a lockbench report and
    /// scenario: the cause, its evidence and the fix per framework; with --verify, the fix
    /// proven on the app (the scenario run as the app is and with the fix, each on a fresh
    /// app and database). Writes doctor.json, doctor.md and doctor.html.
    /// Exit code 0: no lock problem found; 1: one found; 2: the evidence could not be read
    /// (named).
    Doctor(DoctorArgs),
    /// Check scenario and sweep files without running them: keys, types, endpoint names in
    /// gates, contradictions. Prints each file's resolved settings. Exit code 0: all valid;
    /// 2: one is not (named).
    Validate {
        /// Scenario or sweep files (TOML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    #[command(name = serve::WORKER_SUBCOMMAND, hide = true)]
    Worker,
    /// `serve` with its whole config as JSON in `LOCKBENCH_SERVE_CONFIG`, as a parent process
    /// starts it (`serve::serve_command`).
    #[command(name = serve::SERVE_SUBCOMMAND, hide = true)]
    ServeFromEnv,
    /// A fault process of `lockbench run` (`[[faults]]`): holds the write lock or a read
    /// transaction on a database for a while, then reports what it did as JSON lines.
    #[command(name = "__fault", hide = true)]
    Fault(FaultArgs),
}

/// The arguments of `lockbench contend`.
#[derive(Debug, clap::Args)]
pub struct ContendArgs {
    #[command(flatten)]
    pub probe: ProbeConfig,
    /// Print the full report as JSON instead of the summary.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub gates: CliGates,
}

/// The arguments of `lockbench serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ServeConfig,
    /// Read the settings from a TOML file; flags given as well override it.
    #[arg(long = "config", value_name = "FILE")]
    pub config_file: Option<PathBuf>,
}

/// The arguments of `lockbench photos`.
#[derive(Debug, clap::Args)]
pub struct PhotosArgs {
    /// Folder to write the batch into.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub spec: BatchSpec,
    /// Register the batch's people at a running server (e.g. http://127.0.0.1:8080).
    #[arg(long, value_name = "URL")]
    pub register: Option<String>,
}

/// The arguments of `lockbench run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Scenario file (TOML), e.g. scenarios/ci-smoke.toml.
    pub scenario: PathBuf,
    /// Report folder (default: reports/<scenario>/<UTC timestamp>/).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Run the user mix against your own app at this URL (needs the scenario's [endpoints]).
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
    /// Keep the generated photo batch here and reuse it when the spec matches.
    #[arg(long, value_name = "DIR")]
    pub photos_cache: Option<PathBuf>,
    /// Override a scenario setting without editing the file, e.g. --set batch.count=120
    /// (the same dotted keys as a sweep); checked as the file is.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// The PostgreSQL server for a scenario with driver = "postgres"
    /// (postgres://user:password@host:5432/database).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Also write JUnit XML here: one test case per gate.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    #[command(flatten)]
    pub live: LiveArgs,
    /// Run the scenario N times: the report keeps the median and the spread of every
    /// figure, and `compare` on two such reports flags only changes past both.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub repeat: u32,
}

/// The arguments of `lockbench compare`.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// The baseline report.json.
    pub a: PathBuf,
    /// The report.json to judge against A.
    pub b: PathBuf,
    /// How much worse B may be on a gated figure: "10%" or a fraction "0.1".
    #[arg(long, default_value = "10%")]
    pub tolerance: String,
    /// What to print on stdout: Markdown, JSON or one HTML page.
    #[arg(long, value_enum, default_value = "md")]
    pub format: compare::Format,
    /// Also write compare.json, compare.md and compare.html into this folder (created;
    /// checked before comparing).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Also write JUnit XML here: one test case per gated figure.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

/// The arguments of `lockbench sweep`.
#[derive(Debug, clap::Args)]
pub struct SweepArgs {
    /// Sweep file (TOML), e.g. scenarios/fix-anatomy.toml.
    pub file: PathBuf,
    /// Output folder (default: reports/sweeps/<file name>); an interrupted sweep resumes here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Gates added to every row, besides the scenario's own.
    #[command(flatten)]
    pub gates: CliGates,
    /// Also write JUnit XML here: one test case per row.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    #[command(flatten)]
    pub live: LiveArgs,
}

/// The live view of `run`, `sweep` and `breakpoint`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LiveArgs {
    /// Serve a page that draws the run as it happens on this local address (default
    /// 127.0.0.1:0, any free port; the address is printed at the start). It goes away when
    /// the command ends.
    #[arg(
        long,
        value_name = "ADDR",
        num_args = 0..=1,
        default_missing_value = "127.0.0.1:0"
    )]
    pub live: Option<String>,
    /// No live line on the terminal (it is never drawn when stderr is not a terminal).
    #[arg(long)]
    pub quiet: bool,
}

impl LiveArgs {
    /// The live view these flags ask for, if any: the terminal line when stderr is a
    /// terminal and not `--quiet`, the page with `--live`.
    pub fn hub(
        &self,
        title: &str,
    ) -> anyhow::Result<Option<std::sync::Arc<crate::run::live::LiveHub>>> {
        use std::io::IsTerminal;
        let line = !self.quiet && std::io::stderr().is_terminal();
        if !line && self.live.is_none() {
            return Ok(None);
        }
        crate::run::live::LiveHub::start(title, line, self.live.as_deref()).map(Some)
    }
}

/// The arguments of `lockbench breakpoint`.
#[derive(Debug, clap::Args)]
pub struct BreakpointArgs {
    /// Scenario file (TOML).
    pub scenario: PathBuf,
    /// The dimension to raise.
    #[arg(long, value_enum)]
    pub vary: breakpoint::Vary,
    /// Other scenario files to search too, comma separated.
    #[arg(long, value_delimiter = ',')]
    pub configs: Vec<PathBuf>,
    /// Highest value to try.
    #[arg(long, default_value_t = 400)]
    pub max: u64,
    /// Override a scenario setting for every run, e.g. --set batch.count=120.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Output folder (default: reports/breakpoints/<dimension>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Gates added to every step, besides the scenario's own.
    #[command(flatten)]
    pub gates: CliGates,
    /// Exit 1 unless every configuration passes at this value of the dimension (the
    /// headroom a team requires).
    #[arg(long, value_name = "N")]
    pub require: Option<u64>,
    #[command(flatten)]
    pub live: LiveArgs,
}

/// The arguments of `lockbench fault`.
#[derive(Debug, clap::Args)]
pub struct FaultArgs {
    /// `lock` (the write lock) or `read` (one read transaction).
    pub what: String,
    /// The SQLite file.
    #[arg(long, required_unless_present = "schema")]
    pub db: Option<PathBuf>,
    /// PostgreSQL: the run's schema (the URL comes from LOCKBENCH_FAULT_DATABASE_URL).
    #[arg(long)]
    pub schema: Option<String>,
    /// How long to hold it ("35s").
    #[arg(long, value_parser = lockbench_server::storage::config::parse_duration)]
    pub hold: std::time::Duration,
    /// How long to wait for it.
    #[arg(long, value_parser = lockbench_server::storage::config::parse_duration, default_value = "60s")]
    pub wait: std::time::Duration,
}

/// The arguments of `lockbench doctor`.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// The app's log; may be given several times (each worker's, the error log and the
    /// access log).
    #[arg(long = "log", value_name = "PATH")]
    pub logs: Vec<PathBuf>,
    /// The app's SQLite database file (read as bytes, never written).
    #[arg(long, value_name = "PATH")]
    pub database: Option<PathBuf>,
    /// A lockbench report.json of a run against the same app: how long failing requests
    /// waited, and the settings it ran with.
    #[arg(long, value_name = "report.json")]
    pub report: Option<PathBuf>,
    /// The scenario of the app: its requests (to tie log records to them), how its log is
    /// read, its knobs; --verify runs it.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// The busy timeout the app believes it set (e.g. 30s), when nothing else says it.
    #[arg(long, value_name = "DURATION", value_parser = lockbench_server::storage::config::parse_duration)]
    pub busy_timeout: Option<std::time::Duration>,
    /// Run the scenario as the app is and with the recommended fix, each on a fresh app and
    /// database, and put the two side by side.
    #[arg(long)]
    pub verify: bool,
    /// Override a scenario setting, as `lockbench run --set`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Folder for doctor.json, doctor.md, doctor.html (default: reports/doctor/<UTC timestamp>/).
    #[arg(long)]
    pub out: Option<PathBuf>,
}
