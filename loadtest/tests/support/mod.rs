//! Fixtures shared by the process-level tests: a running `lockbench serve` on port 0, a
//! generated photo batch, and a few HTTP helpers.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lockbench_server::photos::{self, BatchSpec, ImageSize, Manifest};

pub const TOKEN: &str = "process-test-token";

/// A `lockbench serve` child process; stopped with SIGTERM on drop.
pub struct Server {
    child: Child,
    pub url: String,
}

impl Server {
    /// Starts `lockbench serve --port 0 --db DB ARGS...` and waits for its announce line.
    pub fn start(db: &Path, args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lockbench"))
            .args(["serve", "--port", "0", "--db"])
            .arg(db)
            .args(args)
            .env("LOCKBENCH_ADMIN_TOKEN", TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start lockbench serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.split("listening on ").nth(1) {
                        let url = rest.split_whitespace().next().unwrap().to_owned();
                        return Server { child, url };
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("lockbench serve did not announce itself within 60 s");
                }
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits for the supervisor to exit; returns whether it exited cleanly.
    pub fn stop(&mut self) -> bool {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        false
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// A client that opens a new connection per request, so requests spread over the workers.
pub fn fresh_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

pub fn small_batch(dir: &Path, count: usize, people: usize, corrupt: usize) -> (PathBuf, Manifest) {
    let out = dir.join("photos");
    let spec = BatchSpec {
        count,
        people,
        size: ImageSize {
            width: 320,
            height: 240,
        },
        seed: 5,
        corrupt,
    };
    let manifest = photos::generate(&out, &spec).expect("generate");
    (out, manifest)
}

/// Posts the batch, trying again on a 503 (the database was locked) as the admin would.
pub fn post_batch(client: &reqwest::blocking::Client, url: &str, dir: &Path) -> i64 {
    for _ in 0..30 {
        let r = client
            .post(format!("{url}/api/batches"))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"dir": dir}))
            .send()
            .expect("POST /api/batches");
        if r.status() == 503 {
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        assert_eq!(r.status(), 202);
        let body: serde_json::Value = r.json().unwrap();
        return body["batch_id"].as_i64().unwrap();
    }
    panic!("POST /api/batches answered 503 thirty times");
}

pub fn batch_status(client: &reqwest::blocking::Client, url: &str, id: i64) -> serde_json::Value {
    client
        .get(format!("{url}/api/batches/{id}/status"))
        .bearer_auth(TOKEN)
        .send()
        .and_then(|r| r.json())
        .unwrap_or(serde_json::Value::Null)
}

pub fn wait_done(client: &reqwest::blocking::Client, url: &str, id: i64) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let s = batch_status(client, url, id);
        if s["status"] == "done" {
            return s;
        }
        assert!(Instant::now() < deadline, "batch {id} did not finish: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Scrapes /metrics until every worker has answered; returns each worker's text.
pub fn scrape_workers(url: &str, workers: u32) -> BTreeMap<String, String> {
    let client = fresh_client();
    let mut seen = BTreeMap::new();
    for _ in 0..400 {
        let text = client
            .get(format!("{url}/metrics"))
            .send()
            .and_then(|r| r.text())
            .unwrap_or_default();
        if let Some(worker) = text
            .lines()
            .find(|l| l.starts_with("lockbench_worker_info"))
            .and_then(|l| l.split("worker=\"").nth(1))
            .and_then(|r| r.split('"').next())
        {
            seen.insert(worker.to_owned(), text);
        }
        if seen.len() as u32 >= workers {
            break;
        }
    }
    seen
}

/// Sum of a metric's values over all series whose line starts with `prefix`.
pub fn sum_metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next())
        .filter_map(|v| v.parse::<f64>().ok())
        .sum()
}
