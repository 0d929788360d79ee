//! `<data_dir>/restarts.jsonl`, the supervisor's record of every worker restart and of the
//! giving up: one [`RestartEvent`] per line, written by the supervisor
//! ([`append_restart_event`]) and read by whoever reports on the server (the runner, with
//! [`read_restart_events`]), both through this one type. Knows files only; never starts or
//! watches a process.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::warn;

/// The restarts log of a data folder.
pub fn restarts_path(data_dir: &Path) -> PathBuf {
    data_dir.join("restarts.jsonl")
}

/// What the supervisor did about a worker's death.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartAction {
    /// The worker was started again after `delay_ms`.
    Restarted,
    /// Too many crashes: the supervisor stopped every worker and exited.
    GaveUp,
}

impl RestartAction {
    /// As the file writes it: "restarted" or "gave-up".
    pub fn as_str(self) -> &'static str {
        match self {
            RestartAction::Restarted => "restarted",
            RestartAction::GaveUp => "gave-up",
        }
    }
}

/// One line of restarts.jsonl: `{"unix_ms", "worker", "pid", "status", "action",
/// "delay_ms", "new_pid"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartEvent {
    /// When the death was seen, in milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// The worker id (0 .. workers).
    pub worker: u32,
    /// The pid of the worker that died.
    pub pid: u32,
    /// Its exit status, as the supervisor saw it ("signal: 9 (SIGKILL)").
    pub status: String,
    pub action: RestartAction,
    /// The wait before restarting; 0 when giving up.
    pub delay_ms: u64,
    /// The new worker's pid; None when giving up.
    pub new_pid: Option<u32>,
}

/// Appends one event as one line (one `write` on an O_APPEND file); a failure is logged,
/// never fatal: the supervisor goes on supervising.
pub fn append_restart_event(path: &Path, event: &RestartEvent) {
    let mut line = match serde_json::to_string(event) {
        Ok(line) => line,
        Err(e) => {
            warn!(error = %e, "cannot write a restart event as JSON");
            return;
        }
    };
    line.push('\n');
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        warn!(path = %path.display(), error = %e, "cannot write the restarts log");
    }
}

/// Every event of a restarts log, in order. A log that does not exist holds no restart (the
/// supervisor writes it at the first); a line that is not a [`RestartEvent`] is an error
/// (`InvalidData`) naming the file and the line.
pub fn read_restart_events(path: &Path) -> std::io::Result<Vec<RestartEvent>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} line {}: {e}", path.display(), i + 1),
                )
            })
        })
        .collect()
}
