//! Reading the reference server's own counters: `/metrics` from every worker behind the
//! port (fresh connections until each has answered), summed into the figures a report
//! needs. Reads; never changes the server.

use std::collections::BTreeMap;

/// Fetches `url` over fresh connections until every worker has answered; keyed by worker id.
pub(super) fn scrape_all(
    client: &reqwest::blocking::Client,
    url: &str,
    token: Option<&str>,
    workers: u32,
) -> BTreeMap<String, String> {
    let mut seen = BTreeMap::new();
    for _ in 0..(workers * 100).max(50) {
        let mut request = client.get(url);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let Ok(text) = request.send().and_then(|r| r.text()) else {
            continue;
        };
        let worker = if text.starts_with('{') {
            serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["worker"].as_u64())
                .map(|w| w.to_string())
        } else {
            text.lines()
                .find(|l| l.starts_with("lockbench_worker_info"))
                .and_then(|l| label(l, "worker"))
        };
        if let Some(w) = worker {
            seen.insert(w, text);
        }
        if seen.len() as u32 >= workers {
            break;
        }
    }
    seen
}

pub(super) fn label(line: &str, name: &str) -> Option<String> {
    let start = line.find(&format!("{name}=\""))? + name.len() + 2;
    let end = line[start..].find('"')? + start;
    Some(line[start..end].to_owned())
}

fn value(line: &str) -> u64 {
    line.rsplit(' ')
        .next()
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// The endpoint a server-side operation belongs to.
fn endpoint_of(op: &str) -> &'static str {
    match op {
        "register" => "POST /api/registrations",
        "registration_updates" => "GET /api/registrations/updates",
        "batch_status" => "GET /api/batches/{id}/status",
        "admin_dashboard" => "GET /admin",
        "create_batch" => "POST /api/batches",
        _ => "processor",
    }
}

#[derive(Default)]
pub(super) struct ServerFigures {
    pub(super) lock_by_code: BTreeMap<String, u64>,
    pub(super) lock_by_endpoint: BTreeMap<String, u64>,
    pub(super) retries: u64,
    pub(super) commit_only_dropped: u64,
    pub(super) dropped_by_endpoint: BTreeMap<String, u64>,
    pub(super) wal_bytes: u64,
    pub(super) checkpoints_ok: u64,
    pub(super) checkpoints_busy: u64,
}

impl ServerFigures {
    pub(super) fn parse<'a>(texts: impl Iterator<Item = &'a String>) -> ServerFigures {
        let mut f = ServerFigures::default();
        for text in texts {
            for line in text.lines().filter(|l| !l.starts_with('#')) {
                if line.starts_with("lockbench_db_lock_errors_total{") {
                    let n = value(line);
                    if let Some(code) = label(line, "code") {
                        *f.lock_by_code.entry(code).or_default() += n;
                    }
                    if let Some(op) = label(line, "op") {
                        *f.lock_by_endpoint
                            .entry(endpoint_of(&op).to_owned())
                            .or_default() += n;
                    }
                } else if line.starts_with("lockbench_db_retries_total{") {
                    f.retries += value(line);
                } else if line.starts_with("lockbench_db_commit_only_dropped_total{") {
                    let n = value(line);
                    f.commit_only_dropped += n;
                    if let Some(op) = label(line, "op") {
                        if n > 0 {
                            *f.dropped_by_endpoint
                                .entry(endpoint_of(&op).to_owned())
                                .or_default() += n;
                        }
                    }
                } else if line.starts_with("lockbench_wal_bytes{") {
                    f.wal_bytes = f.wal_bytes.max(value(line));
                } else if line.starts_with("lockbench_checkpoints_total{") {
                    match label(line, "result").as_deref() {
                        Some("ok") => f.checkpoints_ok += value(line),
                        _ => f.checkpoints_busy += value(line),
                    }
                }
            }
        }
        f
    }
}
