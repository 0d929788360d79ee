//! `lockbench serve` as real processes on a real socket.

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::{
    fresh_client, post_batch, scrape_workers, small_batch, sum_metric, wait_done, Server,
};

#[test]
fn two_worker_processes_share_one_port_process_a_batch_and_stop_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (photos, manifest) = small_batch(dir.path(), 40, 4, 2);
    let mut server = Server::start(
        &dir.path().join("app.db"),
        &[
            "--workers",
            "2",
            "--journal-mode",
            "wal",
            "--tx-mode",
            "immediate",
        ],
    );
    lockbench::register_people(&server.url, &manifest).expect("register");
    let client = fresh_client();

    // Both workers answer on the one port, each its own process.
    let mut pids = BTreeSet::new();
    let mut workers = BTreeSet::new();
    for _ in 0..200 {
        let h: serde_json::Value = client
            .get(format!("{}/healthz", server.url))
            .send()
            .unwrap()
            .json()
            .unwrap();
        workers.insert(h["worker"].as_u64().unwrap());
        pids.insert(h["pid"].as_u64().unwrap());
        if workers.len() == 2 {
            break;
        }
    }
    assert_eq!(workers.len(), 2, "both workers answer");
    assert!(
        !pids.contains(&(server.pid() as u64)),
        "workers are separate processes"
    );

    let id = post_batch(&client, &server.url, &photos);
    let status = wait_done(&client, &server.url, id);
    assert_eq!(status["processed"], 42);
    assert_eq!(status["failed"], 2);
    assert_eq!(status["persons"], 4);

    assert!(server.stop(), "the supervisor exits cleanly on SIGTERM");
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z ")),
            "worker {pid} is still running"
        );
    }
}

struct Load {
    lock_errors: f64,
    client_503: u64,
    requests: u64,
}

/// The incident in miniature: 2 workers, a batch committing at every step, dashboard pollers
/// and kiosks registering, all at once. Returns the lock errors /metrics counted.
fn incident_in_miniature(storage_args: &[&str]) -> Load {
    let dir = tempfile::tempdir().unwrap();
    let (photos, manifest) = small_batch(dir.path(), 60, 5, 0);
    let mut args = vec![
        "--workers",
        "2",
        "--commit-granularity",
        "per-step",
        "--io-in-transaction",
        "on",
        "--upload-latency-ms",
        "5",
    ];
    args.extend_from_slice(storage_args);
    let server = Server::start(&dir.path().join("app.db"), &args);
    lockbench::register_people(&server.url, &manifest).expect("register");

    let stop = Arc::new(AtomicBool::new(false));
    let client_503 = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for role in 0..8 {
        let (stop, c503, requests, url) = (
            stop.clone(),
            client_503.clone(),
            requests.clone(),
            server.url.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let client = fresh_client();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let response = if role < 4 {
                    // Pollers: the dashboard's live updates and the batch status.
                    client.get(format!("{url}/api/registrations/updates?since=0")).send()
                } else {
                    // Kiosks: registrations, each a write.
                    client
                        .post(format!("{url}/api/registrations"))
                        .json(&serde_json::json!({"name": "Walk-in", "email": format!("k{role}-{n}@example.org")}))
                        .send()
                };
                requests.fetch_add(1, Ordering::Relaxed);
                if response.is_ok_and(|r| r.status() == 503) {
                    c503.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(if role < 4 { 20 } else { 5 }));
            }
        }));
    }
    let client = fresh_client();
    let id = post_batch(&client, &server.url, &photos);
    wait_done(&client, &server.url, id);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let scraped = scrape_workers(&server.url, 2);
    assert_eq!(scraped.len(), 2, "both workers' metrics were scraped");
    let lock_errors = scraped
        .values()
        .map(|text| sum_metric(text, "lockbench_db_lock_errors_total{"))
        .sum();
    Load {
        lock_errors,
        client_503: client_503.load(Ordering::Relaxed),
        requests: requests.load(Ordering::Relaxed),
    }
}

#[test]
fn the_incident_in_miniature_locks_and_wal_immediate_every_connection_does_not() {
    let incident = incident_in_miniature(&["--journal-mode", "delete", "--tx-mode", "deferred"]);
    assert!(
        incident.lock_errors > 0.0,
        "rollback journal + deferred + per-step commits should produce lock errors ({} requests, {} 503s)",
        incident.requests,
        incident.client_503
    );
    assert!(incident.client_503 > 0, "some reached the clients as 503");

    let fixed = incident_in_miniature(&[
        "--journal-mode",
        "wal",
        "--tx-mode",
        "immediate",
        "--busy-timeout-ms",
        "5000",
        "--busy-timeout-scope",
        "every-connection",
    ]);
    assert_eq!(fixed.lock_errors, 0.0, "{} requests", fixed.requests);
    assert_eq!(fixed.client_503, 0);
    assert!(fixed.requests > 0);
}
