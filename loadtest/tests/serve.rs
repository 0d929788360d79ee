//! `lockbench serve` as real processes on a real socket.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use support::{
    batch_status, fresh_client, post_batch, scrape_workers, small_batch, sum_metric, wait_done,
    Server, TOKEN,
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
    lockbench::run::http::register_people(&server.url, &manifest, None).expect("register");
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
    /// The batch's status once its processor ended.
    status: serde_json::Value,
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
    lockbench::run::http::register_people(&server.url, &manifest, None).expect("register");

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
    // The end of the processor's run, not the batch's status: under the incident's settings
    // the status update can itself fail on a lock (no retries), and the batch then stays
    // `running` although its processor is done.
    wait_processor_finished(&server.url, id);
    let status = batch_status(&client, &server.url, id)["status"].clone();
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
        status,
    }
}

/// Waits until a worker's /metrics says its processor's run over `batch` has ended.
fn wait_processor_finished(url: &str, batch: i64) {
    let series = format!(",batch=\"{batch}\"}} 1");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let finished = scrape_workers(url, 2).values().any(|t| {
            t.lines().any(|l| {
                l.starts_with("lockbench_batch_processor_finished{") && l.ends_with(&series)
            })
        });
        if finished {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the processor of batch {batch} never ended"
        );
        std::thread::sleep(Duration::from_millis(100));
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

    // BEGIN IMMEDIATE makes every writer wait for the lock in SQLite's busy handler (a read
    // snapshot never has to be upgraded) and WAL keeps readers out of the writers' way, so the
    // only way left to a lock error is a wait past the busy timeout. The longest a write holds
    // the lock here is a person's upload inside its transaction (tens of ms); 60 s is a margin
    // no load on this machine comes near, where 5 s was only a hundred times the usual wait.
    let fixed = incident_in_miniature(&[
        "--journal-mode",
        "wal",
        "--tx-mode",
        "immediate",
        "--busy-timeout-ms",
        "60000",
        "--busy-timeout-scope",
        "every-connection",
    ]);
    assert_eq!(fixed.lock_errors, 0.0, "{} requests", fixed.requests);
    assert_eq!(
        fixed.status, "done",
        "without lock errors every write lands"
    );
    assert_eq!(fixed.client_503, 0);
    assert!(fixed.requests > 0);
}

// ---- faults and bad input ---------------------------------------------------------------------

/// How long a test waits for something that must happen (a restart, a metric) before it
/// fails: a bound on a hang, never a measurement.
const PATIENCE: Duration = Duration::from_secs(300);

/// `lockbench serve` as a child process whose exit status, stdout and stderr the test reads.
struct Serve {
    child: Child,
    url: String,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

impl Serve {
    /// Starts `lockbench serve --port 0 --db DB ARGS... --photo-root <DB's folder>` (the
    /// tests' batches are beside the database), waits for its announce line.
    fn start(db: &Path, args: &[&str]) -> Serve {
        let root = db.parent().unwrap().to_str().unwrap().to_owned();
        let args: Vec<&str> = args
            .iter()
            .copied()
            .chain(["--photo-root", &root])
            .collect();
        let mut child = serve_command(db, &args, "0").spawn().expect("start");
        let stderr = collect_stderr(&mut child);
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let lines = stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        loop {
            let line = rx.recv_timeout(PATIENCE).unwrap_or_else(|_| {
                let _ = child.kill();
                panic!(
                    "lockbench serve did not announce itself: {}",
                    stderr.lock().unwrap()
                )
            });
            if let Some(rest) = line.split("listening on ").nth(1) {
                let url = rest.split_whitespace().next().unwrap().to_owned();
                return Serve {
                    child,
                    url,
                    stdout,
                    stderr,
                };
            }
        }
    }

    fn port(&self) -> &str {
        self.url.rsplit(':').next().unwrap()
    }

    /// Waits for the supervisor to exit on its own.
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "lockbench serve did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        if let Ok(None) = self.child.try_wait() {
            let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
            let _ = self.child.wait();
        }
    }
}

fn serve_command(db: &Path, args: &[&str], port: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lockbench"));
    cmd.args(["serve", "--port", port, "--db"])
        .arg(db)
        .args(args)
        .env("LOCKBENCH_ADMIN_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn collect_stderr(child: &mut Child) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let mut err = child.stderr.take().unwrap();
    let sink = text.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    text
}

/// A value of a label on a metric line.
fn label(line: &str, name: &str) -> Option<String> {
    line.split(&format!("{name}=\""))
        .nth(1)?
        .split('"')
        .next()
        .map(str::to_owned)
}

/// Each worker's pid, from its /metrics.
fn worker_pids(scraped: &BTreeMap<String, String>) -> BTreeMap<String, u32> {
    scraped
        .iter()
        .filter_map(|(worker, text)| {
            let pid = text
                .lines()
                .find(|l| l.starts_with("lockbench_worker_info"))
                .and_then(|l| label(l, "pid"))?
                .parse()
                .ok()?;
            Some((worker.clone(), pid))
        })
        .collect()
}

/// Scrapes every worker until `worker` answers with a pid other than `old_pid`; returns
/// every worker's text from that round.
fn scrape_until_replaced(
    url: &str,
    workers: u32,
    worker: &str,
    old_pid: u32,
) -> BTreeMap<String, String> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let scraped = scrape_workers(url, workers);
        let pids = worker_pids(&scraped);
        if scraped.len() == workers as usize && pids.get(worker).is_some_and(|p| *p != old_pid) {
            return scraped;
        }
        assert!(
            Instant::now() < deadline,
            "worker {worker} never came back: {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sigkill(pid: u32) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("SIGKILL");
}

/// The lines of restarts.jsonl, parsed (every line must be JSON).
fn restarts(data_dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(data_dir.join("restarts.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// Waits until restarts.jsonl has more than `n` lines; returns them all.
fn wait_restarts(data_dir: &Path, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let lines = restarts(data_dir);
        if lines.len() > n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "no new line in restarts.jsonl: {lines:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn data_dir_of(db: &Path) -> PathBuf {
    PathBuf::from(format!("{}.data", db.display()))
}

/// The counters a worker's /metrics must never lose: (lock errors by op and code, failed
/// units by op and outcome, ok units by op).
fn durable_counters(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| {
            l.starts_with("lockbench_db_lock_errors_total{")
                || l.starts_with("lockbench_db_units_total{")
                || l.starts_with("lockbench_db_retries_total{")
                || l.starts_with("lockbench_db_commit_only_dropped_total{")
        })
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[test]
fn a_killed_worker_comes_back_with_its_lock_error_counts_and_the_restart_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let server = Serve::start(
        &db,
        &[
            "--workers",
            "2",
            "--journal-mode",
            "delete",
            "--busy-timeout-ms",
            "50",
        ],
    );
    let data_dir = data_dir_of(&db);
    let client = fresh_client();

    // The test holds the write lock: every registration meets SQLITE_BUSY once its 50 ms
    // busy timeout runs out, and answers 503 (no retries by default).
    let holder = rusqlite::Connection::open(&db).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    for n in 0..20 {
        let r = client
            .post(format!("{}/api/registrations", server.url))
            .json(&serde_json::json!({"name": "Ada", "email": format!("ada{n}@example.org")}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 503, "{}", r.text().unwrap());
    }
    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);
    // And a registration that succeeds, so `ok` counts are in play too.
    for n in 0..6 {
        let r = client
            .post(format!("{}/api/registrations", server.url))
            .json(&serde_json::json!({"name": "Bob", "email": format!("bob{n}@example.org")}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
    }

    let before = scrape_workers(&server.url, 2);
    assert_eq!(before.len(), 2, "both workers scraped");
    let lock_errors = |t: &str| sum_metric(t, "lockbench_db_lock_errors_total{");
    let total_before: f64 = before.values().map(|t| lock_errors(t)).sum();
    assert_eq!(
        total_before, 20.0,
        "one lock error per refused registration"
    );
    // The worker with the most lock errors (at least 10 of the 20) is killed.
    let (victim, victim_text) = before
        .iter()
        .max_by(|a, b| lock_errors(a.1).total_cmp(&lock_errors(b.1)))
        .unwrap();
    assert!(lock_errors(victim_text) >= 10.0);
    let pids = worker_pids(&before);
    let old_pid = pids[victim];
    sigkill(old_pid);

    let after = scrape_until_replaced(&server.url, 2, victim, old_pid);
    for (worker, text) in &before {
        let was = durable_counters(text);
        let now = durable_counters(&after[worker]);
        assert!(!was.is_empty());
        for (series, value) in &was {
            assert_eq!(
                now.get(series),
                Some(value),
                "worker {worker}: {series} (nothing happened since, so nothing may change)"
            );
        }
    }
    let total_after: f64 = after.values().map(|t| lock_errors(t)).sum();
    assert_eq!(total_after, total_before);

    // The restart is on record, with the old and the new pid and the signal that killed it.
    let lines = wait_restarts(&data_dir, 0);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert_eq!(line["worker"].as_u64().unwrap().to_string(), *victim);
    assert_eq!(line["pid"], old_pid);
    assert_eq!(line["action"], "restarted");
    assert_eq!(line["delay_ms"], 200);
    assert_eq!(line["new_pid"], worker_pids(&after)[victim]);
    assert!(
        line["status"].as_str().unwrap().contains("SIGKILL"),
        "{line}"
    );
    assert!(line["unix_ms"].as_u64().unwrap() > 0);
    let said = server.stdout.lock().unwrap().join("\n");
    assert!(
        said.contains(&format!(
            "lockbench serve: worker {victim} (pid {old_pid}) exited (signal: 9 (SIGKILL)); restarting it in 200 ms"
        )),
        "{said}"
    );
    // The events file of the victim holds its counts, one line per event or total.
    let events =
        std::fs::read_to_string(data_dir.join(format!("stats/worker-{victim}.events"))).unwrap();
    assert!(events.contains("lock register SQLITE_BUSY"), "{events}");
}

#[test]
fn a_worker_that_keeps_crashing_makes_the_supervisor_stop_everything_and_fail() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let mut server = Serve::start(&db, &["--workers", "2"]);
    let data_dir = data_dir_of(&db);
    let scraped = scrape_workers(&server.url, 2);
    let mut pid = worker_pids(&scraped)["1"];
    let other = worker_pids(&scraped)["0"];

    // Four crashes are restarted, each after twice the wait of the one before.
    for (n, delay) in [200, 400, 800, 1600].into_iter().enumerate() {
        sigkill(pid);
        let lines = wait_restarts(&data_dir, n);
        let line = &lines[n];
        assert_eq!(line["worker"], 1);
        assert_eq!(line["pid"], pid);
        assert_eq!(line["action"], "restarted");
        assert_eq!(line["delay_ms"], delay, "{line}");
        let new_pid = line["new_pid"].as_u64().unwrap() as u32;
        // Back: answering on the port.
        scrape_until_replaced(&server.url, 2, "1", pid);
        pid = new_pid;
    }
    // The fifth within the minute is one too many.
    sigkill(pid);
    let status = server.wait_exit();
    assert!(!status.success(), "{status}");
    assert_eq!(status.code(), Some(2));
    let stderr = server.stderr();
    assert!(
        stderr.contains("lockbench serve: worker 1 crashed 5 times in 60 s; giving up"),
        "{stderr}"
    );
    let lines = restarts(&data_dir);
    assert_eq!(lines.len(), 5, "{lines:?}");
    let last = &lines[4];
    assert_eq!(last["action"], "gave-up");
    assert_eq!(last["worker"], 1);
    assert_eq!(last["pid"], pid);
    assert_eq!(last["new_pid"], serde_json::Value::Null);
    // Every worker was stopped, the one that never crashed too.
    for pid in [pid, other] {
        let alive =
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "));
        assert!(!alive, "worker {pid} still runs");
    }
}

/// Opens the server's database read-only, for audits while it runs or after it stopped.
fn audit_db(db: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
}

fn processors_running(url: &str, workers: u32) -> Vec<String> {
    scrape_workers(url, workers)
        .values()
        .flat_map(|t| {
            t.lines()
                .filter(|l| l.starts_with("lockbench_batch_processor_running{"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn post_batch_answer(
    client: &reqwest::blocking::Client,
    url: &str,
    dir: &Path,
) -> serde_json::Value {
    let r = client
        .post(format!("{url}/api/batches"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"dir": dir}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    r.json().unwrap()
}

#[test]
fn a_batch_posted_again_during_and_after_its_run_ends_done_with_nothing_recorded_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (photos, manifest) = small_batch(dir.path(), 24, 3, 1);
    let db = dir.path().join("app.db");
    // Deferred transactions: a POST that finds the batch only reads until it writes, so it
    // gets past the write lock the test holds below.
    let server = Serve::start(
        &db,
        &[
            "--workers",
            "2",
            "--journal-mode",
            "wal",
            "--tx-mode",
            "deferred",
            "--busy-timeout-ms",
            "60000",
        ],
    );
    lockbench::run::http::register_people(&server.url, &manifest, None).expect("register");
    let client = fresh_client();

    // Post, then hold the write lock so the processor cannot finish: while it is held, the
    // batch is not done and its processor shows in /metrics.
    let holder = rusqlite::Connection::open(&db).unwrap();
    holder.busy_timeout(Duration::from_secs(60)).unwrap();
    let batch_id = loop {
        let answer = post_batch_answer(&client, &server.url, &photos);
        let id = answer["batch_id"].as_i64().unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        let status: String = holder
            .query_row("SELECT status FROM batches WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .unwrap();
        if status != "done" {
            break id;
        }
        // The processor was quicker than the lock: once more.
        holder.execute_batch("ROLLBACK").unwrap();
        wait_for_no_processor(&server.url);
    };
    let running = wait_for_processor(&server.url, batch_id);
    assert_eq!(
        running.len(),
        1,
        "one processor runs the batch: {running:?}"
    );
    // Posts meanwhile, whichever worker they reach, leave the batch to that processor.
    for _ in 0..6 {
        let answer = post_batch_answer(&client, &server.url, &photos);
        assert_eq!(answer["batch_id"], batch_id);
        assert_eq!(answer["already_running"], true, "{answer}");
    }
    assert_eq!(processors_running(&server.url, 2).len(), 1);
    holder.execute_batch("ROLLBACK").unwrap();
    wait_done(&client, &server.url, batch_id);

    // Posted again and again right after it finished: each post either leaves it to a
    // processor still at work or runs it again; it ends done every time.
    for _ in 0..6 {
        let answer = post_batch_answer(&client, &server.url, &photos);
        assert_eq!(answer["batch_id"], batch_id);
        wait_done(&client, &server.url, batch_id);
    }
    wait_for_no_processor(&server.url);
    assert_eq!(
        batch_status(&client, &server.url, batch_id)["status"],
        "done"
    );

    let audit = audit_db(&db);
    let one = |sql: &str| -> i64 { audit.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        one("SELECT count(*) FROM photos") as usize,
        manifest.files.len()
    );
    assert_eq!(
        one("SELECT count(*) FROM (SELECT file_name FROM photos GROUP BY file_name HAVING count(*) > 1)"),
        0,
        "a photo recorded twice"
    );
    assert_eq!(
        one("SELECT count(*) FROM persons") as usize,
        manifest.people.len()
    );
    assert_eq!(one("SELECT failed FROM batches"), 1);
    assert_eq!(one("SELECT persons FROM batches"), 3);
}

/// Waits until some worker shows a processor running `batch`; returns the series.
fn wait_for_processor(url: &str, batch: i64) -> Vec<String> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let running: Vec<String> = processors_running(url, 2)
            .into_iter()
            .filter(|l| label(l, "batch") == Some(batch.to_string()))
            .collect();
        if !running.is_empty() {
            assert!(running.iter().all(|l| l.ends_with(" 1")), "{running:?}");
            return running;
        }
        assert!(Instant::now() < deadline, "no processor shows in /metrics");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_for_no_processor(url: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let running = processors_running(url, 2);
        if running.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "processors never ended: {running:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_sync_delay_control_file_switches_a_slow_disk_on_and_off() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let control = dir.path().join("sync_delay_ms");
    let server = Serve::start(
        &db,
        &[
            "--workers",
            "2",
            "--synchronous",
            "full",
            "--sync-delay-control",
            control.to_str().unwrap(),
        ],
    );
    let delay_series = |worker: &str, source: &str, ms: u32| {
        format!("lockbench_sync_delay_ms{{worker=\"{worker}\",source=\"{source}\"}} {ms}")
    };
    let wait_both = |source: &str, ms: u32| {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let scraped = scrape_workers(&server.url, 2);
            if scraped.len() == 2
                && scraped
                    .iter()
                    .all(|(w, t)| t.lines().any(|l| l == delay_series(w, source, ms)))
            {
                return scraped;
            }
            assert!(
                Instant::now() < deadline,
                "{source} {ms} never applied: {scraped:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // Absent: the configured 0 ms, but the connections already go through the delay VFS.
    wait_both("config", 0);
    let settings: serde_json::Value = fresh_client()
        .get(format!("{}/api/settings", server.url))
        .bearer_auth(TOKEN)
        .send()
        .unwrap()
        .json()
        .unwrap();
    for c in settings["effective"].as_array().unwrap() {
        assert_eq!(c["vfs"], "lockbench-delay-0us", "{c}");
    }

    // Written (atomically, as a runner should): both workers pick it up.
    let set = |text: &str| {
        let tmp = dir.path().join("sync_delay_ms.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &control).unwrap();
    };
    set("7\n");
    let scraped = wait_both("control", 7);
    let syncs_before: f64 = scraped
        .values()
        .map(|t| sum_metric(t, "lockbench_db_syncs_total{"))
        .sum();
    let client = fresh_client();
    for n in 0..4 {
        let r = client
            .post(format!("{}/api/registrations", server.url))
            .json(&serde_json::json!({"name": "Ada", "email": format!("ada{n}@example.org")}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let syncs_after: f64 = scrape_workers(&server.url, 2)
        .values()
        .map(|t| sum_metric(t, "lockbench_db_syncs_total{"))
        .sum();
    assert!(
        syncs_after >= syncs_before + 8.0,
        "4 rollback-journal commits sync at least twice each: {syncs_before} -> {syncs_after}"
    );

    // Emptied, then removed: back to the configured delay.
    set("");
    wait_both("config", 0);
    set("12");
    wait_both("control", 12);
    std::fs::remove_file(&control).unwrap();
    wait_both("config", 0);
}

#[test]
fn serve_refuses_a_port_in_use_a_database_it_cannot_write_and_contradictory_settings() {
    let dir = tempfile::tempdir().unwrap();
    let run = |db: &Path, args: &[&str], port: &str| -> (Option<i32>, String) {
        let out = serve_command(db, args, port)
            .stdout(Stdio::null())
            .output()
            .expect("run lockbench serve");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // A port another program listens on (without SO_REUSEPORT).
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let db = dir.path().join("a.db");
    let (code, stderr) = run(&db, &[], &port);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("port {port} is already in use")),
        "{stderr}"
    );
    assert!(!db.exists(), "nothing created before the refusal");
    drop(taken);

    // A port another lockbench listens on (with SO_REUSEPORT, which would share it silently).
    let first = Serve::start(&dir.path().join("first.db"), &[]);
    let (code, stderr) = run(&dir.path().join("b.db"), &[], first.port());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("port {} is already in use", first.port())),
        "{stderr}"
    );
    drop(first);

    // Databases that cannot be written, each named.
    let read_only = dir.path().join("read-only");
    std::fs::create_dir(&read_only).unwrap();
    let a_file = dir.path().join("a-file");
    std::fs::write(&a_file, "x").unwrap();
    let a_folder = dir.path().join("a-folder");
    std::fs::create_dir(&a_folder).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&read_only, std::fs::Permissions::from_mode(0o555)).unwrap();
    }
    for (db, says) in [
        (read_only.join("app.db"), "is read-only"),
        (a_file.join("app.db"), "is not a folder"),
        (dir.path().join("missing/app.db"), "is not usable"),
        (a_folder.clone(), "is a directory"),
    ] {
        let (code, stderr) = run(&db, &[], "0");
        assert_eq!(code, Some(2), "{}: {stderr}", db.display());
        assert!(stderr.contains(&db.display().to_string()), "{stderr}");
        assert!(stderr.contains(says), "{}: {stderr}", db.display());
    }

    // Settings that contradict each other, each named; nothing is created.
    let db = dir.path().join("c.db");
    let db_text = db.to_str().unwrap().to_owned();
    let file_text = a_file.to_str().unwrap().to_owned();
    let folder_text = a_folder.to_str().unwrap().to_owned();
    for (args, says) in [
        (
            vec!["--pool-layout", "split", "--pool-size", "1"],
            "pool_layout",
        ),
        (vec!["--workers", "0"], "workers"),
        (vec!["--data-dir", db_text.as_str()], "data_dir"),
        (vec!["--data-dir", file_text.as_str()], "data_dir"),
        (
            vec!["--sync-delay-control", db_text.as_str()],
            "sync_delay_control",
        ),
        (
            vec!["--sync-delay-control", folder_text.as_str()],
            "sync_delay_control",
        ),
        (
            vec!["--sync-delay-control", "/no/such/folder/ctl"],
            "sync_delay_control",
        ),
        (
            vec!["--retry", "fixed", "--retry-attempts", "0"],
            "retry_attempts",
        ),
        (vec!["--sync-delay-ms", "600000"], "sync_delay_ms"),
    ] {
        let (code, stderr) = run(&db, &args, "0");
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!db.exists(), "{args:?} created the database");
    }
}
