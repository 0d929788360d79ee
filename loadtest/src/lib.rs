//! lockbench: reproduce SQLite's "database is locked", count every lock error, audit for lost
//! writes, and show which settings remove them.
//!
//! The modules form a one-way stack, each using only those below it: `stop` and `scenario`
//! at the bottom; `report` (the result types and every rendering of them); `load` (the
//! simulated users); `run` (one run's sequence over a target); `decide` (compare, repeat,
//! sweep, breakpoint: decisions from many runs or reports); `doctor` (a diagnosis from an
//! app's log, database and reports, verified by runs); and on top the command line
//! (`cli.rs`: the types; `commands.rs`: one function per command). `main.rs` only sets up
//! logging and calls [`main_entry`].

use std::process::ExitCode;

use clap::{ArgMatches, CommandFactory, FromArgMatches};

pub mod cli;
mod commands;
pub mod decide;
pub mod doctor;
pub mod load;
pub mod report;
pub mod run;
pub mod scenario;
pub mod stop;

use cli::{Cli, Command};

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
        Command::Contend(args) => commands::contend_command(args),
        Command::Serve(args) => commands::serve_command(args, matches),
        Command::Photos(args) => commands::photos_command(args),
        Command::Run(args) => commands::run_command(args),
        Command::Compare(args) => commands::compare_command(args),
        Command::Sweep(args) => commands::sweep_command(args),
        Command::Breakpoint(args) => commands::breakpoint_command(args),
        Command::Doctor(args) => commands::doctor_command(args),
        Command::Validate { files } => commands::validate_command(files),
        Command::Worker => {
            lockbench_server::serve::worker_from_env()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::ServeFromEnv => {
            let serve = lockbench_server::serve::serve_from_env;
            serve(lockbench_server::serve::print_listening)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Fault(args) => commands::fault_command(args),
    }
}
