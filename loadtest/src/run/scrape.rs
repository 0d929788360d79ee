//! Reading the reference server's own counters: `/api/stats` (and `/api/settings`) from every
//! worker behind the port, over fresh connections until each has answered, summed into the
//! figures a report needs. Reads JSON the server writes for it; never parses Prometheus
//! text, never looks at the server's files, never changes the server.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use lockbench_server::app::stats::WorkerStats;

/// How long the runner keeps asking for every worker's answer before it calls the ones that
/// never answered missing.
const SCRAPE_PATIENCE: Duration = Duration::from_secs(10);

/// Fetches `url` over fresh connections until every worker has answered (its JSON names its
/// `worker`) or [`SCRAPE_PATIENCE`] has passed; keyed by worker id. A send that fails (a
/// worker restarting) is followed by a pause before the next.
pub(super) fn scrape_all(
    client: &reqwest::blocking::Client,
    url: &str,
    token: Option<&str>,
    workers: u32,
) -> BTreeMap<String, String> {
    let mut seen = BTreeMap::new();
    let started = Instant::now();
    for attempt in 0.. {
        if started.elapsed() >= SCRAPE_PATIENCE && attempt >= workers {
            break;
        }
        let mut request = client.get(url);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let Ok(text) = request.send().and_then(|r| r.text()) else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        let worker = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["worker"].as_u64())
            .map(|w| w.to_string());
        if let Some(w) = worker {
            seen.insert(w, text);
        }
        if seen.len() as u32 >= workers {
            break;
        }
    }
    seen
}

/// Every worker's `/api/stats`, keyed by worker id.
pub(super) fn scrape_stats(
    client: &reqwest::blocking::Client,
    url: &str,
    workers: u32,
) -> BTreeMap<String, WorkerStats> {
    scrape_all(client, &format!("{url}/api/stats"), None, workers)
        .into_iter()
        .filter_map(|(w, text)| Some((w, serde_json::from_str(&text).ok()?)))
        .collect()
}

/// The worker ids (0 ..`workers`) that are not among `answered`'s keys: their counters could
/// not be read.
pub(super) fn missing_workers<T>(answered: &BTreeMap<String, T>, workers: u32) -> Vec<u32> {
    (0..workers)
        .filter(|w| !answered.contains_key(&w.to_string()))
        .collect()
}

/// The server side's figures, summed over the workers.
#[derive(Default)]
pub(super) struct ServerFigures {
    pub(super) lock_by_code: BTreeMap<String, u64>,
    pub(super) lock_by_endpoint: BTreeMap<String, u64>,
    pub(super) retries: u64,
    pub(super) commit_only_dropped: u64,
    pub(super) dropped_by_endpoint: BTreeMap<String, u64>,
    /// The same, by the unit of work's op.
    pub(super) dropped_by_op: BTreeMap<String, u64>,
    pub(super) wal_bytes: u64,
    pub(super) checkpoints_ok: u64,
    pub(super) checkpoints_busy: u64,
    /// The processor's units of work that failed, by op (failed_locked + failed_other).
    pub(super) processor_failures: BTreeMap<String, u64>,
}

impl ServerFigures {
    /// Commit-only drops of units the audit cannot look up row by row: lost writes counted
    /// from the server's own record (see `audit::AUDITED_OPS`).
    pub(super) fn dropped_unaudited(&self) -> u64 {
        self.dropped_by_op
            .iter()
            .filter(|(op, _)| !super::audit::AUDITED_OPS.contains(&op.as_str()))
            .map(|(_, n)| n)
            .sum()
    }

    pub(super) fn sum<'a>(workers: impl Iterator<Item = &'a WorkerStats>) -> ServerFigures {
        let mut f = ServerFigures::default();
        for w in workers {
            for (op, unit) in &w.units {
                for (code, n) in &unit.lock_errors {
                    *f.lock_by_code.entry(code.clone()).or_default() += n;
                    *f.lock_by_endpoint.entry(unit.endpoint.clone()).or_default() += n;
                }
                f.retries += unit.retries;
                let failed = unit.failed_locked + unit.failed_other;
                if unit.endpoint == "processor" && failed > 0 {
                    *f.processor_failures.entry(op.clone()).or_default() += failed;
                }
                f.commit_only_dropped += unit.commit_only_dropped;
                if unit.commit_only_dropped > 0 {
                    *f.dropped_by_op.entry(op.clone()).or_default() += unit.commit_only_dropped;
                    *f.dropped_by_endpoint
                        .entry(unit.endpoint.clone())
                        .or_default() += unit.commit_only_dropped;
                }
            }
            f.wal_bytes = f.wal_bytes.max(w.wal_bytes);
            f.checkpoints_ok += w.checkpoints_ok;
            f.checkpoints_busy += w.checkpoints_busy;
        }
        f
    }
}
