//! The supervisor's restarts, as the report lists them: `restarts.jsonl` read after the run,
//! each restart's time made relative to the load's start. Reads one file; changes nothing.

use std::path::Path;
use std::time::SystemTime;

use lockbench_server::serve::read_restart_events;

use crate::report::RestartRecord;

/// The supervisor's restarts.jsonl, read after the run ([`read_restart_events`]), with
/// times relative to the load's start. A log that cannot be read is an error: "no restarts"
/// would be a count that could not be read shown as 0.
pub fn read_restarts(path: &Path, load_started: SystemTime) -> anyhow::Result<Vec<RestartRecord>> {
    let events = read_restart_events(path).map_err(|e| {
        anyhow::anyhow!(
            "reading the supervisor's restarts in {}: {e}",
            path.display()
        )
    })?;
    let base = unix_ms(load_started) as f64;
    Ok(events
        .into_iter()
        .map(|e| RestartRecord {
            t_s: round1((e.unix_ms as f64 - base) / 1000.0),
            worker: e.worker,
            pid: e.pid,
            status: e.status,
            action: e.action.as_str().to_owned(),
            delay_ms: e.delay_ms,
            new_pid: e.new_pid,
        })
        .collect())
}

pub fn unix_ms(t: SystemTime) -> u128 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Seconds to one decimal, as the report shows times.
pub(crate) fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
