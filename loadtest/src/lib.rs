//! The `lockbench` command line: argument types and dispatch. `main.rs` only parses and
//! calls [`run`], so tests call the same function the user does.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use lockbench_server::probe::{self, ProbeConfig};

/// Reproduce and measure SQLite "database is locked".
#[derive(Debug, Parser)]
#[command(name = "lockbench", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Writers and readers against one database file: lock errors, retries, lost writes, latency.
    Contend {
        #[command(flatten)]
        probe: ProbeConfig,
        /// Print the full report as JSON instead of the summary.
        #[arg(long)]
        json: bool,
    },
}

/// Runs one parsed command; the exit code is the process's.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Contend { probe, json } => {
            let report = probe::run(&probe)?;
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &report).context("writing JSON")?;
                writeln!(out)?;
            } else {
                write!(out, "{}", report.summary())?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
