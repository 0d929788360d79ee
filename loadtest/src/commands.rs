//! One function per `lockbench` command: each takes its parsed arguments (`cli.rs`), does
//! the work through the library's modules (`run`, `decide`, `report`, the server crate), and
//! turns the outcome into an exit code: 0 passed, 1 a gate failed, 2 could not be carried
//! out, 130 interrupted. Checks before a command starts what can be checked (output paths).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::parser::ValueSource;
use clap::ArgMatches;
use lockbench_server::photos;
use lockbench_server::probe;
use lockbench_server::serve;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::cli::{
    BreakpointArgs, CompareArgs, ContendArgs, DoctorArgs, FaultArgs, PhotosArgs, RunArgs,
    ServeArgs, SweepArgs,
};
use crate::decide::{breakpoint, compare, sweep};
use crate::report::{self, ci};
use crate::run::{self, faults, http};
use crate::{decide, scenario, stop};

/// Checks, before anything runs, that the files a command will write at its end can be
/// written: `--junit` names a file (not a folder) in a folder that can be written, and
/// `GITHUB_STEP_SUMMARY`, when set, can be appended to. A run of minutes must not end with
/// its outputs refused.
pub(crate) fn check_outputs(junit: Option<&Path>) -> anyhow::Result<()> {
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

/// `lockbench serve`: the settings from `--config FILE` with the flags given laid over them,
/// then the server (its workers, when more than one).
pub(crate) fn serve_command(args: ServeArgs, matches: &ArgMatches) -> anyhow::Result<ExitCode> {
    let ServeArgs {
        config,
        config_file,
    } = args;
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

/// `lockbench compare A B`: the comparison on stdout, with `--out DIR` its three documents
/// there (the folder made and checked before comparing), its JUnit and step summary, the
/// exit code of its verdict (2 when the reports cannot be compared).
pub(crate) fn compare_command(args: CompareArgs) -> anyhow::Result<ExitCode> {
    let CompareArgs {
        a,
        b,
        tolerance,
        format,
        out: out_dir,
        junit,
    } = args;
    if let Some(dir) = &out_dir {
        run::prepare_out_dir(dir)?;
    }
    let out = compare::run_cli(&a, &b, &tolerance, format);
    print!("{}", out.stdout);
    eprint!("{}", out.stderr);
    if let Some(c) = &out.comparison {
        if let Some(dir) = &out_dir {
            compare::write_files(dir, c)
                .with_context(|| format!("--out {}: cannot write the comparison", dir.display()))?;
        }
        if let Some(path) = &junit {
            ci::write_junit(path, &ci::junit_for_comparison(c))?;
        }
        ci::append_step_summary(&compare::render_markdown(c))?;
    }
    Ok(ExitCode::from(out.code))
}

/// Writes a photo batch and its manifest, and registers its people when asked.
pub(crate) fn photos_command(args: PhotosArgs) -> anyhow::Result<ExitCode> {
    let PhotosArgs {
        out,
        spec,
        register,
    } = args;
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
pub(crate) fn validate_command(files: Vec<PathBuf>) -> anyhow::Result<ExitCode> {
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
pub(crate) fn fault_command(args: FaultArgs) -> anyhow::Result<ExitCode> {
    let FaultArgs {
        what,
        db,
        schema,
        hold,
        wait,
    } = args;
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
pub(crate) fn contend_command(args: ContendArgs) -> anyhow::Result<ExitCode> {
    let ContendArgs { probe, json, gates } = args;
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
pub(crate) fn run_command(args: RunArgs) -> anyhow::Result<ExitCode> {
    let RunArgs {
        scenario,
        out,
        target,
        photos_cache,
        sets,
        database_url,
        junit,
        repeat,
        live,
    } = args;
    stop::install();
    check_outputs(junit.as_deref())?;
    let sets = scenario::parse_sets(&sets)?;
    let title = scenario.display().to_string();
    let hub = live.hub(&title)?;
    if let Some(hub) = &hub {
        run::live::install(hub.clone());
    }
    let opts = run::RunOptions {
        scenario,
        out,
        target,
        photos_cache,
        // The live line replaces the progress bar.
        progress: hub.is_none() && !live.quiet,
        sets,
        database_url,
        live: hub.clone(),
        ..run::RunOptions::default()
    };
    let outcome = if repeat > 1 {
        decide::repeat::run_repeated(&opts, repeat)
    } else {
        run::run_scenario(&opts)
    };
    run::live::close_current();
    let outcome = outcome?;
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
pub(crate) fn sweep_command(args: SweepArgs) -> anyhow::Result<ExitCode> {
    let SweepArgs {
        file,
        out,
        gates,
        junit,
        live,
    } = args;
    let stem = file
        .file_stem()
        .map_or("sweep".into(), |s| s.to_string_lossy().into_owned());
    let out = out.unwrap_or_else(|| PathBuf::from("reports/sweeps").join(stem));
    stop::install();
    check_outputs(junit.as_deref())?;
    run::prepare_out_dir(&out)?;
    let hub = live.hub(&file.display().to_string())?;
    if let Some(hub) = &hub {
        run::live::install(hub.clone());
    }
    let progress = hub.is_none() && !live.quiet;
    let report = sweep::sweep_with(&file, &out, None, progress, &gates.as_sets());
    run::live::close_current();
    let report = report?;
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
pub(crate) fn breakpoint_command(args: BreakpointArgs) -> anyhow::Result<ExitCode> {
    let BreakpointArgs {
        scenario,
        vary,
        configs,
        max,
        sets,
        out,
        gates,
        require,
        live,
    } = args;
    breakpoint::check_range(vary, max, require)?;
    check_outputs(None)?;
    let mut all = vec![scenario];
    all.extend(configs);
    let mut sets = scenario::parse_sets(&sets)?;
    sets.extend(gates.as_sets());
    let out = out.unwrap_or_else(|| {
        PathBuf::from("reports/breakpoints").join(format!("{vary:?}").to_lowercase())
    });
    stop::install();
    if let Some(hub) = live.hub(&format!("breakpoint over {}", vary.key()))? {
        run::live::install(hub);
    }
    let report = breakpoint::breakpoint(&all, vary, max, &sets, &out, None);
    run::live::close_current();
    let report = report?;
    let md = report::breakpoint::breakpoint_markdown(&report);
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

/// `lockbench doctor`: reads the evidence, diagnoses, verifies when asked, writes the
/// diagnosis, prints its summary. Exit code 0: no lock problem; 1: one found; 2: the
/// evidence could not be read (the error names it).
pub(crate) fn doctor_command(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    stop::install();
    let out = args.out.unwrap_or_else(|| {
        let stamp = run::utc_now().replace(':', "-");
        PathBuf::from("reports/doctor").join(stamp)
    });
    let opts = crate::doctor::DoctorOptions {
        logs: args.logs,
        database: args.database,
        report: args.report,
        scenario: args.scenario,
        sets: args.sets,
        busy_timeout_ms: args.busy_timeout.map(|d| d.as_millis() as u64),
        verify: args.verify,
        out: out.clone(),
        server_exe: None,
        progress: std::io::stderr().is_terminal(),
    };
    let d = crate::doctor::doctor(&opts)?;
    print!("{}", report::diagnosis::terminal(&d));
    println!("diagnosis: {}", out.join("doctor.md").display());
    Ok(ExitCode::from(u8::from(d.lock_problem)))
}
