//! The settings and the machine, as plain text: the requested settings (the whole scenario)
//! as `key = value` lists, the settings each connection really had with the busy timeout
//! that stands out, and the machine the run ran on.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::report::format::{count, fixed, gib};
use crate::report::{Report, WorkerSettings};

use super::absent::absent_reason;

/// One group of requested settings: a top-level object of `settings_requested`
/// (`storage`, `retry`, ...), or the top-level scalars (`name: None`).
pub(crate) struct SettingsSection {
    pub name: Option<String>,
    pub entries: Vec<(String, String)>,
}

/// `settings_requested` (the whole scenario) as `key = value` lists, one per table of it:
/// the top-level scalars first (unnamed), then each object with scalars of its own under
/// its dotted name (`server`, `server.storage`, `gates.p99_ms`), in key order. An empty
/// object or an array is one value.
pub(crate) fn settings_sections(settings: &Value) -> Vec<SettingsSection> {
    fn walk(
        name: Option<String>,
        map: &serde_json::Map<String, Value>,
        out: &mut Vec<SettingsSection>,
    ) {
        let entries: Vec<(String, String)> = map
            .iter()
            .filter(|(_, v)| !matches!(v, Value::Object(m) if !m.is_empty()))
            .map(|(k, v)| (k.clone(), scalar(v)))
            .collect();
        if !entries.is_empty() {
            out.push(SettingsSection {
                name: name.clone(),
                entries,
            });
        }
        for (k, v) in map {
            if let Value::Object(child) = v {
                if !child.is_empty() {
                    let path = match &name {
                        Some(n) => format!("{n}.{k}"),
                        None => k.clone(),
                    };
                    walk(Some(path), child, out);
                }
            }
        }
    }
    match settings {
        Value::Null => Vec::new(),
        Value::Object(map) => {
            let mut out = Vec::new();
            walk(None, map, &mut out);
            out
        }
        other => vec![SettingsSection {
            name: None,
            entries: vec![("settings".to_owned(), scalar(other))],
        }],
    }
}

/// A JSON value as a setting's value: strings bare, everything else as compact JSON.
fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One connection as `/api/settings` reported it; "—" where a field was missing.
pub(crate) struct ConnectionRow {
    pub worker: u32,
    pub pid: u32,
    pub id: String,
    pub role: String,
    pub journal_mode: String,
    pub busy_timeout_ms: String,
    pub synchronous: String,
    pub read_only: String,
    /// Its busy timeout differs from the one most connections have.
    pub odd_timeout: bool,
}

pub(crate) struct ConnectionTable {
    pub rows: Vec<ConnectionRow>,
    /// Set when the connections do not all have the same busy timeout.
    pub timeout_warning: Option<String>,
}

pub(crate) fn connection_table(workers: &[WorkerSettings]) -> ConnectionTable {
    let mut rows = connection_rows(workers);
    let timeout_warning = flag_odd_timeouts(&mut rows);
    ConnectionTable {
        rows,
        timeout_warning,
    }
}

/// One row per connection of every worker, in the order the workers reported them.
fn connection_rows(workers: &[WorkerSettings]) -> Vec<ConnectionRow> {
    let field = |c: &Value, name: &str| c.get(name).map(scalar).unwrap_or_else(|| "—".into());
    workers
        .iter()
        .flat_map(|w| {
            w.connections.iter().map(move |c| ConnectionRow {
                worker: w.worker,
                pid: w.pid,
                id: field(c, "id"),
                role: field(c, "role"),
                // A PostgreSQL connection has no journal mode or busy timeout: the columns
                // say what it has instead.
                journal_mode: match c.get("postgres") {
                    Some(pg) if pg.is_object() => format!(
                        "PostgreSQL {}, {}",
                        field(pg, "server_version"),
                        field(pg, "isolation")
                    ),
                    _ => field(c, "journal_mode"),
                },
                busy_timeout_ms: match c.get("postgres") {
                    Some(pg) if pg.is_object() => {
                        format!("statement_timeout {}", field(pg, "statement_timeout"))
                    }
                    _ => field(c, "busy_timeout_ms"),
                },
                synchronous: field(c, "synchronous"),
                read_only: field(c, "read_only"),
                odd_timeout: false,
            })
        })
        .collect()
}

/// Marks the rows whose busy timeout differs from the one most connections have, and says
/// which they are; None when every connection has the same.
fn flag_odd_timeouts(rows: &mut [ConnectionRow]) -> Option<String> {
    // The value most connections have (the first seen on a tie) is "the others".
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for row in rows.iter() {
        match seen.iter_mut().find(|(v, _)| *v == row.busy_timeout_ms) {
            Some((_, n)) => *n += 1,
            None => seen.push((&row.busy_timeout_ms, 1)),
        }
    }
    if seen.len() < 2 {
        return None;
    }
    let mut common = seen[0];
    for &entry in &seen[1..] {
        if entry.1 > common.1 {
            common = entry;
        }
    }
    let (common_value, common_count) = (common.0.to_owned(), common.1);
    let mut odd: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in rows.iter_mut() {
        if row.busy_timeout_ms != common_value {
            row.odd_timeout = true;
            odd.entry(row.busy_timeout_ms.clone())
                .or_default()
                .push(format!("worker {} conn {}", row.worker, row.id));
        }
    }
    let odd: Vec<String> = odd
        .iter()
        .map(|(value, conns)| format!("{value} ms on {}", conns.join(", ")))
        .collect();
    Some(format!(
        "busy_timeout_ms is not the same on every connection: {}; {common_value} ms on the other {}.",
        odd.join("; "),
        count(common_count as u64)
    ))
}

pub(crate) fn machine_lines(r: &Report) -> Vec<(&'static str, String)> {
    let m = &r.machine;
    let load = |l: Option<[f64; 3]>| {
        l.map_or_else(
            || "not read".to_owned(),
            |l| format!("{} {} {}", fixed(l[0], 2), fixed(l[1], 2), fixed(l[2], 2)),
        )
    };
    vec![
        ("Cores", count(m.cores as u64)),
        ("Memory", format!("{} GiB", gib(m.memory_bytes))),
        ("OS", m.os.clone()),
        (
            "Load average (1, 5, 15 min) at start / end",
            format!(
                "{} / {}",
                load(m.load_average_start),
                load(m.load_average_end)
            ),
        ),
        (
            "Project under test",
            r.git_commit.as_ref().map_or_else(
                || "not a git checkout".to_owned(),
                |c| format!("git commit {c}"),
            ),
        ),
        (
            "SQLite",
            match &r.sqlite_version {
                Some(v) => v.clone(),
                None => absent_reason(r, &["sqlite version", "sqlite_version"]),
            },
        ),
    ]
}
