//! A fault process and the runner's side of it: `lockbench __fault lock|read` takes the
//! write lock or a read transaction on the run's database (or, on PostgreSQL, table and row
//! locks in the run's schema), holds it, and reports what it did as [`FaultEvent`] JSON
//! lines, one serde type for the writer (`fault_process`) and the reader (`hold_in_child`).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{FaultContext, FAULT_LOCK_WAIT};

/// One line a fault process writes on its stdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum FaultEvent {
    /// The lock (or the read transaction) is held from now on.
    Started { detail: String },
    /// Released after `held_ms`, having waited `waited_ms` to take it.
    Ended {
        detail: String,
        waited_ms: u64,
        held_ms: u64,
    },
    /// It could not be taken or held.
    Error { message: String },
}

/// Runs `lockbench __fault lock|read` and follows its report lines; stops it early when the
/// run ends first.
pub(super) fn hold_in_child(
    ctx: &FaultContext,
    what: &str,
    hold: Duration,
    stop: &AtomicBool,
) -> (Option<Instant>, Option<Instant>, String) {
    let mut command = fault_command(ctx, what, hold);
    let mut child = match crate::stop::spawn_group(&mut command) {
        Ok(c) => c,
        Err(e) => {
            return (
                None,
                None,
                format!("could not start the fault process: {e}"),
            )
        }
    };
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, FaultEvent)>();
    if let Some(out) = child.stdout.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(event) = serde_json::from_str(&line) {
                    let _ = tx.send((Instant::now(), event));
                }
            }
        });
    }
    let (started, ended, mut outcome) = follow(&rx, pid, stop);
    let _ = child.wait();
    crate::stop::forget_child(pid);
    if outcome.is_empty() {
        outcome = match child.stderr.take() {
            Some(mut e) => {
                let mut text = String::new();
                let _ = std::io::Read::read_to_string(&mut e, &mut text);
                format!("the fault process ended without a report: {}", text.trim())
            }
            None => "the fault process ended without a report".into(),
        };
    }
    (started, ended, outcome)
}

/// `lockbench __fault lock|read` on the run's database (the PostgreSQL URL, which may hold a
/// password, by the environment, never the command line).
fn fault_command(ctx: &FaultContext, what: &str, hold: Duration) -> Command {
    let mut command = Command::new(&ctx.exe);
    command.args(["__fault", what]);
    match &ctx.postgres {
        Some((url, schema)) => {
            command.env(FAULT_URL_ENV, url).args(["--schema", schema]);
        }
        None => {
            command.arg("--db").arg(&ctx.db);
        }
    }
    command
        .arg("--hold")
        .arg(humantime::format_duration(hold).to_string())
        .arg("--wait")
        .arg(humantime::format_duration(FAULT_LOCK_WAIT).to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Follows the fault process's events until it ends, or stops it (SIGTERM to its group)
/// when the run ends first: when it held, when it let go, and what it says happened.
fn follow(
    rx: &std::sync::mpsc::Receiver<(Instant, FaultEvent)>,
    pid: u32,
    stop: &AtomicBool,
) -> (Option<Instant>, Option<Instant>, String) {
    let (mut started, mut ended, mut outcome) = (None, None, String::new());
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok((at, FaultEvent::Started { .. })) => started = Some(at),
            Ok((
                at,
                FaultEvent::Ended {
                    detail,
                    waited_ms,
                    held_ms,
                },
            )) => {
                ended = Some(at);
                outcome = format!(
                    "{detail} held for {:.1} s after waiting {:.1} s for it",
                    held_ms as f64 / 1000.0,
                    waited_ms as f64 / 1000.0
                );
            }
            Ok((_, FaultEvent::Error { message })) => {
                outcome = format!("the fault process failed: {message}")
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if stop.load(Ordering::SeqCst) || crate::stop::interrupted() {
                    use nix::sys::signal::{killpg, Signal};
                    use nix::unistd::Pid;
                    let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGTERM);
                    ended.get_or_insert_with(Instant::now);
                    if outcome.is_empty() {
                        outcome = "ended early: the run stopped while it was held".into();
                    }
                    return (started, ended, outcome);
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return (started, ended, outcome)
            }
        }
    }
}

/// The environment variable that gives a fault process its PostgreSQL URL.
pub const FAULT_URL_ENV: &str = "LOCKBENCH_FAULT_DATABASE_URL";

/// Where a fault process acts: a SQLite file, or a PostgreSQL schema.
pub enum FaultTarget {
    File(PathBuf),
    Postgres { url: String, schema: String },
}

/// `lockbench __fault lock|read`: the fault process itself. Prints JSON lines: `started`,
/// then `ended` with the times, or `error`. On PostgreSQL `lock` is a `LOCK TABLE` on the
/// app's tables and `read` a long transaction holding row locks.
pub fn fault_process(
    what: &str,
    target: &FaultTarget,
    hold: Duration,
    wait: Duration,
) -> anyhow::Result<()> {
    use lockbench_server::storage::{hold, postgres};
    use std::io::Write;
    let say = |event: FaultEvent| {
        let mut out = std::io::stdout().lock();
        if let Ok(line) = serde_json::to_string(&event) {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    };
    let started = |detail: &str| {
        say(FaultEvent::Started {
            detail: detail.to_owned(),
        })
    };
    let result = match (what, target) {
        ("lock", FaultTarget::File(db)) => {
            hold::hold_write_lock(db, hold, wait, started).map(|h| (h, "the write lock"))
        }
        ("read", FaultTarget::File(db)) => {
            hold::hold_read_transaction(db, "registrations", hold, wait, || {
                started("a read transaction")
            })
            .map(|h| (h, "a read transaction"))
        }
        ("lock", FaultTarget::Postgres { url, schema }) => {
            postgres::hold_table_locks(url, schema, hold, wait, started)
                .map(|h| (h, "LOCK TABLE on the app's tables"))
        }
        ("read", FaultTarget::Postgres { url, schema }) => {
            postgres::hold_row_locks(url, schema, hold, wait, started)
                .map(|h| (h, "a transaction holding the batches' row locks"))
        }
        (other, _) => anyhow::bail!("__fault: unknown fault {other:?} (lock or read)"),
    };
    match result {
        Ok((held, detail)) => {
            say(FaultEvent::Ended {
                detail: detail.to_owned(),
                waited_ms: held.waited.as_millis() as u64,
                held_ms: held.held.as_millis() as u64,
            });
            Ok(())
        }
        Err(e) => {
            say(FaultEvent::Error {
                message: e.to_string(),
            });
            Err(anyhow::anyhow!("{e}"))
        }
    }
}
