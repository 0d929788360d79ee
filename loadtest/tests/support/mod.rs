//! Fixtures shared by the process-level tests: a running `lockbench serve` on port 0, a
//! generated photo batch, and a few HTTP helpers.

#![allow(dead_code)]

pub mod webdriver;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lockbench::run::http;
use lockbench::run::ServerProcess;
use lockbench_server::photos::{self, BatchSpec, ImageSize, Manifest};

pub const TOKEN: &str = "process-test-token";

/// A `lockbench serve` child process (lockbench's own [`ServerProcess`]); stopped with
/// SIGTERM on drop.
pub struct Server {
    process: ServerProcess,
    pub url: String,
}

impl Server {
    /// Starts `lockbench serve --port 0 --db DB ARGS... --photo-root <DB's folder>` (the
    /// tests' batches are beside the database) and waits for its announce line.
    pub fn start(db: &Path, args: &[&str]) -> Server {
        let process = ServerProcess::spawn(
            Command::new(env!("CARGO_BIN_EXE_lockbench"))
                .args(["serve", "--port", "0", "--db"])
                .arg(db)
                .args(args)
                .arg("--photo-root")
                .arg(db.parent().expect("the database's folder"))
                .env("LOCKBENCH_ADMIN_TOKEN", TOKEN)
                .stderr(Stdio::inherit()),
            None,
            Duration::from_secs(60),
        )
        .expect("start lockbench serve");
        Server {
            url: process.url.clone(),
            process,
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// SIGTERM, then waits for the supervisor to exit; returns whether it exited cleanly.
    pub fn stop(&mut self) -> bool {
        self.process.stop()
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
    let (r, tries) = http::send_again_on_503(
        || {
            client
                .post(format!("{url}/api/batches"))
                .bearer_auth(TOKEN)
                .json(&serde_json::json!({"dir": dir}))
        },
        http::Again {
            tries: 30,
            pause: Duration::from_millis(500),
            on_send_error: false,
        },
    )
    .expect("POST /api/batches");
    assert_eq!(r.status(), 202, "POST /api/batches after {tries} tries");
    let body: serde_json::Value = r.json().unwrap();
    body["batch_id"].as_i64().unwrap()
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

/// An app of another stack started from its own script (the seed app, the Django app) in a
/// process group of its own; SIGTERM to the group on drop, SIGKILL if it has not gone in 15 s.
pub struct AppGroup {
    child: std::process::Child,
    pub url: String,
}

impl AppGroup {
    /// Runs `script` with `env`, serving on `port`, and waits up to `wait` until `GET
    /// ready_path` answers 2xx; on timeout the panic says `why()`.
    pub fn start(
        script: &Path,
        env: &[(&str, String)],
        port: u16,
        ready_path: &str,
        wait: Duration,
        why: impl Fn() -> String,
    ) -> AppGroup {
        use std::os::unix::process::CommandExt;
        let child = Command::new("bash")
            .arg(script)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", script.display()));
        let app = AppGroup {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + wait;
        let client = reqwest::blocking::Client::new();
        loop {
            if let Ok(r) = client.get(format!("{}{ready_path}", app.url)).send() {
                if r.status().is_success() {
                    return app;
                }
            }
            assert!(Instant::now() < deadline, "{}", why());
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for AppGroup {
    fn drop(&mut self) {
        use nix::sys::signal::{killpg, Signal};
        use nix::unistd::Pid;
        let group = Pid::from_raw(self.child.id() as i32);
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
