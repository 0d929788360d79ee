//! The `lockbench` command line: argument types, `--config` files laid under the flags, and
//! one function per command. `main.rs` only sets up logging and calls [`main_entry`]. The
//! commands' work lives in their modules (`run`, `decide`, `load`, `report`, `faults`, `ci`);
//! this file parses, dispatches and turns outcomes into exit codes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use lockbench_server::photos::{self, BatchSpec};
use lockbench_server::probe::{self, ProbeConfig};
use lockbench_server::serve::{self, ServeConfig};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub mod ci;
pub mod decide;
pub mod faults;
pub mod follow;
pub mod http;
pub mod load;
pub mod report;
pub mod run;
pub use decide::{breakpoint, compare, sweep};
pub mod scenario;
pub mod stop;

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
    Contend {
        #[command(flatten)]
        probe: ProbeConfig,
        /// Print the full report as JSON instead of the summary.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        gates: CliGates,
    },
    /// The reference server: the photo processor and the dashboard, with worker processes.
    Serve {
        #[command(flatten)]
        config: ServeConfig,
        /// Read the settings from a TOML file; flags given as well override it.
        #[arg(long = "config", value_name = "FILE")]
        config_file: Option<PathBuf>,
    },
    /// Write a deterministic synthetic event batch (QR photos, photos, corrupt files, manifest).
    Photos {
        /// Folder to write the batch into.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        spec: BatchSpec,
        /// Register the batch's people at a running server (e.g. http://127.0.0.1:8080).
        #[arg(long, value_name = "URL")]
        register: Option<String>,
    },
    /// Run a scenario end to end: server, load, batch, audit, report, gates.
    /// Exit code 0: every gate passed; 1: a gate failed; 2: the run could not be carried out.
    Run {
        /// Scenario file (TOML), e.g. scenarios/ci-smoke.toml.
        scenario: PathBuf,
        /// Report folder (default: reports/<scenario>/<UTC timestamp>/).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Run the user mix against your own app at this URL (needs the scenario's [endpoints]).
        #[arg(long, value_name = "URL")]
        target: Option<String>,
        /// Keep the generated photo batch here and reuse it when the spec matches.
        #[arg(long, value_name = "DIR")]
        photos_cache: Option<PathBuf>,
        /// Override a scenario setting without editing the file, e.g. --set batch.count=120
        /// (the same dotted keys as a sweep); checked as the file is.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// The PostgreSQL server for a scenario with driver = "postgres"
        /// (postgres://user:password@host:5432/database).
        #[arg(long, value_name = "URL")]
        database_url: Option<String>,
        /// Also write JUnit XML here: one test case per gate.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Run the scenario N times: the report keeps the median and the spread of every
        /// figure, and `compare` on two such reports flags only changes past both.
        #[arg(long, value_name = "N", default_value_t = 1)]
        repeat: u32,
    },
    /// Compare two reports of one scenario: figures side by side, settings that differ.
    /// Exit code 0: no regression; 1: B regressed against A past the tolerance; 2: the
    /// reports cannot be compared.
    Compare {
        /// The baseline report.json.
        a: PathBuf,
        /// The report.json to judge against A.
        b: PathBuf,
        /// How much worse B may be on a gated figure: "10%" or a fraction "0.1".
        #[arg(long, default_value = "10%")]
        tolerance: String,
        #[arg(long, value_enum, default_value = "md")]
        format: compare::Format,
        /// Also write JUnit XML here: one test case per gated figure.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
    },
    /// Run a scenario many times with settings changed (rows or a cartesian product).
    Sweep {
        /// Sweep file (TOML), e.g. scenarios/fix-anatomy.toml.
        file: PathBuf,
        /// Output folder (default: reports/sweeps/<file name>); an interrupted sweep resumes here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Gates added to every row, besides the scenario's own.
        #[command(flatten)]
        gates: CliGates,
        /// Also write JUnit XML here: one test case per row.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
    },
    /// Raise one load dimension until a gate first fails: the headroom before "database is locked".
    Breakpoint {
        /// Scenario file (TOML).
        scenario: PathBuf,
        /// The dimension to raise.
        #[arg(long, value_enum)]
        vary: breakpoint::Vary,
        /// Other scenario files to search too, comma separated.
        #[arg(long, value_delimiter = ',')]
        configs: Vec<PathBuf>,
        /// Highest value to try.
        #[arg(long, default_value_t = 400)]
        max: u64,
        /// Override a scenario setting for every run, e.g. --set batch.count=120.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Output folder (default: reports/breakpoints/<dimension>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Gates added to every step, besides the scenario's own.
        #[command(flatten)]
        gates: CliGates,
        /// Exit 1 unless every configuration passes at this value of the dimension (the
        /// headroom a team requires).
        #[arg(long, value_name = "N")]
        require: Option<u64>,
    },
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
    Fault {
        /// `lock` (the write lock) or `read` (one read transaction).
        what: String,
        /// The SQLite file.
        #[arg(long, required_unless_present = "schema")]
        db: Option<PathBuf>,
        /// PostgreSQL: the run's schema (the URL comes from LOCKBENCH_FAULT_DATABASE_URL).
        #[arg(long)]
        schema: Option<String>,
        /// How long to hold it ("35s").
        #[arg(long, value_parser = lockbench_server::storage::config::parse_duration)]
        hold: std::time::Duration,
        /// How long to wait for it.
        #[arg(long, value_parser = lockbench_server::storage::config::parse_duration, default_value = "60s")]
        wait: std::time::Duration,
    },
}

/// Checks, before anything runs, that the files a command will write at its end can be
/// written: `--junit` names a file (not a folder) in a folder that can be written, and
/// `GITHUB_STEP_SUMMARY`, when set, can be appended to. A run of minutes must not end with
/// its outputs refused.
pub fn check_outputs(junit: Option<&Path>) -> anyhow::Result<()> {
    if let Some(path) = junit {
        if path.is_dir() {
            anyhow::bail!(
                "--junit {}: is a folder; give a file name, such as {}",
                path.display(),
                path.join("junit.xml").display()
            );
        }
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).with_context(|| {
            format!(
                "--junit {}: cannot create {}",
                path.display(),
                parent.display()
            )
        })?;
        let probe = parent.join(format!(".lockbench-junit-check-{}", std::process::id()));
        std::fs::write(&probe, b"").with_context(|| {
            format!(
                "--junit {}: cannot write into {}",
                path.display(),
                parent.display()
            )
        })?;
        let _ = std::fs::remove_file(probe);
    }
    if let Some(path) = std::env::var_os(ci::STEP_SUMMARY_ENV) {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| {
                format!(
                    "{} {}: cannot be appended to",
                    ci::STEP_SUMMARY_ENV,
                    Path::new(&path).display()
                )
            })?;
    }
    Ok(())
}

/// Parses the process arguments and runs the command.
pub fn main_entry() -> anyhow::Result<ExitCode> {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    run_with(cli, &matches)
}

fn run_with(cli: Cli, matches: &ArgMatches) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Contend { probe, json, gates } => contend_command(probe, json, gates),
        Command::Serve {
            config,
            config_file,
        } => {
            let config = match config_file {
                Some(path) => {
                    let sub = matches.subcommand_matches("serve");
                    overlay_file(&path, &config, sub)?
                }
                None => config,
            };
            serve::serve(config, serve::print_listening)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Photos {
            out,
            spec,
            register,
        } => photos_command(out, spec, register),
        Command::Run {
            scenario,
            out,
            target,
            photos_cache,
            sets,
            database_url,
            junit,
            repeat,
        } => run_command(
            scenario,
            out,
            target,
            photos_cache,
            sets,
            database_url,
            junit,
            repeat,
        ),
        Command::Compare {
            a,
            b,
            tolerance,
            format,
            junit,
        } => {
            let out = compare::run_cli(&a, &b, &tolerance, format);
            print!("{}", out.stdout);
            eprint!("{}", out.stderr);
            if let Some(c) = &out.comparison {
                if let Some(path) = &junit {
                    ci::write_junit(path, &ci::junit_for_comparison(c))?;
                }
                ci::append_step_summary(&compare::render_markdown(c))?;
            }
            Ok(ExitCode::from(out.code))
        }
        Command::Sweep {
            file,
            out,
            gates,
            junit,
        } => sweep_command(file, out, gates, junit),
        Command::Breakpoint {
            scenario,
            vary,
            configs,
            max,
            sets,
            out,
            gates,
            require,
        } => breakpoint_command(scenario, vary, configs, max, sets, out, gates, require),
        Command::Validate { files } => validate_command(files),
        Command::Worker => {
            serve::worker_from_env()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::ServeFromEnv => {
            serve::serve_from_env(serve::print_listening)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Fault {
            what,
            db,
            schema,
            hold,
            wait,
        } => fault_command(what, db, schema, hold, wait),
    }
}

/// Writes a photo batch and its manifest, and registers its people when asked.
fn photos_command(
    out: PathBuf,
    spec: BatchSpec,
    register: Option<String>,
) -> anyhow::Result<ExitCode> {
    let manifest = photos::generate(&out, &spec)
        .with_context(|| format!("writing the batch into {}", out.display()))?;
    println!(
        "wrote {} files for {} people into {} (manifest.json has the ground truth)",
        manifest.files.len(),
        manifest.people.len(),
        out.display()
    );
    if let Some(url) = register {
        let n = http::register_people(&url, &manifest, None)?;
        println!("registered {n} people at {url}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Checks scenario and sweep files and prints their resolved settings; exit 2 when one is wrong.
fn validate_command(files: Vec<PathBuf>) -> anyhow::Result<ExitCode> {
    let mut bad = 0;
    for file in &files {
        match sweep::validate_file(file) {
            Ok(resolved) => {
                println!("# {}: valid\n{resolved}", file.display());
            }
            Err(e) => {
                bad += 1;
                eprintln!("error: {}: {e:#}", file.display());
            }
        }
    }
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// A fault process (`__fault`): holds a lock or a read transaction on the run's database.
fn fault_command(
    what: String,
    db: Option<PathBuf>,
    schema: Option<String>,
    hold: std::time::Duration,
    wait: std::time::Duration,
) -> anyhow::Result<ExitCode> {
    // A lock held by a process whose runner is gone would outlive the run.
    serve::die_with_parent()?;
    let target = match (db, schema) {
        (Some(db), _) => faults::FaultTarget::File(db),
        (None, Some(schema)) => faults::FaultTarget::Postgres {
            url: std::env::var(faults::FAULT_URL_ENV)
                .with_context(|| format!("__fault --schema needs {}", faults::FAULT_URL_ENV))?,
            schema,
        },
        (None, None) => anyhow::bail!("__fault needs --db or --schema"),
    };
    faults::fault_process(&what, &target, hold, wait)?;
    Ok(ExitCode::SUCCESS)
}

/// Runs the contention probe, prints its summary or JSON, and gates it.
fn contend_command(probe: ProbeConfig, json: bool, gates: CliGates) -> anyhow::Result<ExitCode> {
    stop::install();
    let report = probe::run_until(&probe, stop::flag())?;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &report).context("writing JSON")?;
        writeln!(out)?;
    } else {
        write!(out, "{}", report.summary())?;
    }
    if report.interrupted {
        eprintln!("interrupted: the figures above cover the probe up to then; no gate was judged");
        return Ok(ExitCode::from(stop::INTERRUPTED_EXIT));
    }
    let mut failed = Vec::new();
    if let Some(limit) = gates.max_lock_errors {
        if report.lock_errors.total > limit {
            failed.push(format!(
                "max_lock_errors: {} lock errors, limit {limit}",
                report.lock_errors.total
            ));
        }
    }
    if let Some(limit) = gates.max_lost_writes {
        if report.lost_writes > limit {
            failed.push(format!(
                "max_lost_writes: {} lost writes, limit {limit}",
                report.lost_writes
            ));
        }
    }
    for f in &failed {
        eprintln!("gate failed: {f}");
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Runs a scenario (or several times, with `--repeat`), writes its report, JUnit and the step summary.
#[allow(clippy::too_many_arguments)]
fn run_command(
    scenario: PathBuf,
    out: Option<PathBuf>,
    target: Option<String>,
    photos_cache: Option<PathBuf>,
    sets: Vec<String>,
    database_url: Option<String>,
    junit: Option<PathBuf>,
    repeat: u32,
) -> anyhow::Result<ExitCode> {
    stop::install();
    check_outputs(junit.as_deref())?;
    let sets = sweep::parse_sets(&sets)?;
    let opts = run::RunOptions {
        scenario,
        out,
        target,
        photos_cache,
        progress: true,
        sets,
        database_url,
        repeat,
        ..run::RunOptions::default()
    };
    let outcome = run::run_scenario(&opts)?;
    println!("{}", outcome.report.verdict.summary);
    println!("report: {}", outcome.out_dir.join("report.md").display());
    if let Some(path) = &junit {
        ci::write_junit(path, &ci::junit_for_report(&outcome.report))?;
    }
    let md = report::markdown::render(&outcome.report);
    ci::append_step_summary(ci::verdict_and_gates(&md))?;
    Ok(ExitCode::from(outcome.report.verdict.exit_code))
}

/// Runs a sweep (resuming a finished part), writes its reports, and gates every row.
fn sweep_command(
    file: PathBuf,
    out: Option<PathBuf>,
    gates: CliGates,
    junit: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let stem = file
        .file_stem()
        .map_or("sweep".into(), |s| s.to_string_lossy().into_owned());
    let out = out.unwrap_or_else(|| PathBuf::from("reports/sweeps").join(stem));
    stop::install();
    check_outputs(junit.as_deref())?;
    run::prepare_out_dir(&out)?;
    let report = sweep::sweep_with(&file, &out, None, true, &gates.as_sets())?;
    println!(
        "{} of {} rows; {}",
        report.rows.len(),
        report.planned_rows,
        out.join("sweep.md").display()
    );
    if let Some(path) = &junit {
        ci::write_junit(path, &sweep_junit(&report))?;
    }
    ci::append_step_summary(&report::sweep::sweep_markdown(&report))?;
    if let Some(abort) = &report.aborted {
        eprintln!(
            "error: the sweep stopped at row {:?}, which could not be carried out: {}",
            abort.label, abort.error
        );
        return Ok(ExitCode::from(2));
    }
    if report.interrupted {
        println!("interrupted by Ctrl-C: run the same command again to resume");
        return Ok(ExitCode::from(run::INTERRUPTED_EXIT));
    }
    let failed: Vec<&str> = report
        .rows
        .iter()
        .filter(|r| !r.passed)
        .map(|r| r.label.as_str())
        .collect();
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "{} of {} rows failed their gates",
            failed.len(),
            report.rows.len()
        );
        Ok(ExitCode::from(1))
    }
}

/// The sweep's JUnit: one case per finished row, and for a sweep that stopped on a row it
/// could not carry out, that row as an error.
fn sweep_junit(report: &sweep::SweepReport) -> quick_junit::Report {
    let mut junit = ci::junit_for_sweep(report);
    if let Some(abort) = &report.aborted {
        let mut status =
            quick_junit::TestCaseStatus::non_success(quick_junit::NonSuccessKind::Error);
        status.set_message(format!("the row could not be carried out: {}", abort.error));
        let mut case = quick_junit::TestCase::new(abort.label.as_str(), status);
        case.set_classname(format!("lockbench.sweep.{}", report.name));
        let mut suite = quick_junit::TestSuite::new(
            format!("lockbench sweep {} (stopped)", report.name).as_str(),
        );
        suite.add_test_case(case);
        junit.add_test_suite(suite);
    }
    junit
}

/// Searches each configuration's breaking point and gates on the headroom.
#[allow(clippy::too_many_arguments)]
fn breakpoint_command(
    scenario: PathBuf,
    vary: breakpoint::Vary,
    configs: Vec<PathBuf>,
    max: u64,
    sets: Vec<String>,
    out: Option<PathBuf>,
    gates: CliGates,
    require: Option<u64>,
) -> anyhow::Result<ExitCode> {
    breakpoint::check_range(vary, max, require)?;
    check_outputs(None)?;
    let mut all = vec![scenario];
    all.extend(configs);
    let mut sets = sweep::parse_sets(&sets)?;
    sets.extend(gates.as_sets());
    let out = out.unwrap_or_else(|| {
        PathBuf::from("reports/breakpoints").join(format!("{vary:?}").to_lowercase())
    });
    stop::install();
    let report = breakpoint::breakpoint(&all, vary, max, &sets, &out, None)?;
    let md = report::sweep::breakpoint_markdown(&report);
    print!("{md}");
    ci::append_step_summary(&md)?;
    if report.interrupted {
        println!(
            "interrupted: the search stopped early; the steps run so far are in {}",
            out.display()
        );
        return Ok(ExitCode::from(stop::INTERRUPTED_EXIT));
    }
    // Exit 1 when a configuration has no headroom at all, or less than required.
    let short: Vec<String> = report
        .results
        .iter()
        .filter(|r| match (r.breaking_point, require) {
            (None, _) => true,
            (Some(bp), Some(need)) => bp < need,
            (Some(_), None) => false,
        })
        .map(|r| r.config.clone())
        .collect();
    if short.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "{}: {}",
            match require {
                Some(n) => format!("below the required {n}"),
                None => "failing at the lowest value tried".to_owned(),
            },
            short.join(", ")
        );
        Ok(ExitCode::from(1))
    }
}

/// Reads a TOML settings file and lays the flags given on the command line over it, so
/// a file and a flag use the same names and the flag wins.
pub fn overlay_file<T: Serialize + DeserializeOwned>(
    path: &Path,
    cli: &T,
    matches: Option<&ArgMatches>,
) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    // Parse once as the real type for errors that point at the line and key.
    toml::from_str::<T>(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut file: toml::Table = toml::from_str(&text)?;
    let flags = toml::Table::try_from(cli).context("flags")?;
    if let Some(m) = matches {
        overlay(&mut file, &flags, m);
    }
    toml::Value::Table(file)
        .try_into()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn overlay(file: &mut toml::Table, flags: &toml::Table, m: &ArgMatches) {
    for (key, value) in flags {
        match value {
            toml::Value::Table(section) => {
                let entry = file
                    .entry(key.clone())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if let toml::Value::Table(target) = entry {
                    overlay(target, section, m);
                }
            }
            _ => {
                let given = m.try_get_raw(key).ok().flatten().is_some()
                    && m.value_source(key) == Some(ValueSource::CommandLine);
                if given {
                    file.insert(key.clone(), value.clone());
                }
            }
        }
    }
}
