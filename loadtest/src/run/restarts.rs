//! The supervisor's restarts, as the report lists them: `restarts.jsonl` read after the run,
//! each restart's time made relative to the load's start. Reads one file; changes nothing.

use std::path::Path;
use std::time::SystemTime;

use crate::report::RestartRecord;

/// The supervisor's restarts.jsonl, read after the run.
pub fn read_restarts(path: &Path, load_started: SystemTime) -> Vec<RestartRecord> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let base = unix_ms(load_started) as f64;
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .map(|v| RestartRecord {
            t_s: round1((v["unix_ms"].as_f64().unwrap_or(base) - base) / 1000.0),
            worker: v["worker"].as_u64().unwrap_or(0) as u32,
            pid: v["pid"].as_u64().unwrap_or(0) as u32,
            status: v["status"].as_str().unwrap_or("").to_owned(),
            action: v["action"].as_str().unwrap_or("").to_owned(),
            delay_ms: v["delay_ms"].as_u64().unwrap_or(0),
            new_pid: v["new_pid"].as_u64().map(|p| p as u32),
        })
        .collect()
}

pub fn unix_ms(t: SystemTime) -> u128 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Seconds to one decimal, as the report shows times.
pub(crate) fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
