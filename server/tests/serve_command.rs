//! A parent process starts a server from a `ServeConfig` value with `serve::serve_command`,
//! and every worker runs with exactly those settings: the retry and storage settings each
//! worker reports on /api/settings, the photo root its batches are confined to.
//!
//! The processes are real: this test binary runs itself. `serve_command(<this binary>, ..)`
//! is `<this binary> __serve`, which libtest reads as a name filter, so `child__serve` runs
//! `serve::serve_from_env` as `lockbench __serve` does; the supervisor starts its workers as
//! `<its own binary> __worker`, so `child__worker` runs `serve::worker_from_env` as
//! `lockbench __worker` does. Run normally, both do nothing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use lockbench_server::app::stats::WorkerSettingsReport;
use lockbench_server::photos::{self, BatchSpec, ImageSize};
use lockbench_server::serve::{self, AppSettings, ServeConfig, ENV_CONFIG, ENV_TOKEN};
use lockbench_server::storage::{JournalMode, RetryConfig, RetryKind, StorageConfig, TxMode};

const TOKEN: &str = "serve-command-token";

/// Not a test: `lockbench __serve`, started by the test through `serve_command`.
#[test]
#[allow(non_snake_case)]
fn child__serve() {
    if std::env::var_os(ENV_CONFIG).is_some() {
        serve::serve_from_env(serve::print_listening).expect("serve");
    }
}

/// Not a test: a worker of that server's supervisor (`lockbench __worker`).
#[test]
#[allow(non_snake_case)]
fn child__worker() {
    if std::env::var_os(ENV_CONFIG).is_some() {
        serve::worker_from_env().expect("worker");
    }
}

/// The server process; stopped with SIGTERM when dropped (a failed test leaves nothing).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        let _ = kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 request on a new connection: the status and the body.
fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = body.unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

/// Reads the server's stdout until it announces its address.
fn listening_addr(server: &mut Child) -> SocketAddr {
    let stdout = server.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the server announces its address");
        if let Some(url) = serve::listening_url(&line) {
            let addr = url.strip_prefix("http://").expect("an http URL");
            return addr.parse().expect("an address");
        }
    }
}

#[test]
fn a_server_started_from_a_serve_config_value_runs_every_worker_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let photo_root = dir.path().join("photos");
    let spec = BatchSpec {
        count: 4,
        people: 1,
        size: ImageSize {
            width: 160,
            height: 120,
        },
        ..BatchSpec::default()
    };
    photos::generate(&photo_root.join("batch"), &spec).unwrap();
    let config = ServeConfig {
        app: AppSettings {
            workers: 2,
            threads: 4,
            storage: StorageConfig {
                journal_mode: JournalMode::Wal,
                tx_mode: TxMode::Immediate,
                ..StorageConfig::default()
            },
            retry: RetryConfig {
                retry: RetryKind::Fixed,
                retry_attempts: 4,
                ..RetryConfig::default()
            },
            ..AppSettings::default()
        },
        port: 0,
        db: dir.path().join("app.db"),
        data_dir: Some(dir.path().join("data")),
        photo_root: Some(photo_root.clone()),
        ..ServeConfig::default()
    };
    let exe = std::env::current_exe().unwrap();
    let mut server = Server(
        serve::serve_command(&exe, &config)
            .arg("--nocapture")
            .env(ENV_TOKEN, TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the server"),
    );
    let addr = listening_addr(&mut server.0);

    // Every worker (each connection lands on one of them) runs with the config's settings.
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < 2 {
        assert!(Instant::now() < deadline, "only workers {seen:?} answered");
        let (status, body) = http(addr, "GET", "/api/settings", None);
        assert_eq!(status, 200, "{body}");
        let report: WorkerSettingsReport = serde_json::from_str(&body).unwrap();
        assert_eq!(report.requested.retry, config.app.retry);
        assert_eq!(report.requested.storage, config.app.storage);
        assert!(!report.effective.is_empty());
        assert!(
            report.effective.iter().all(|c| c.journal_mode == "wal"),
            "{body}"
        );
        seen.insert(report.worker);
    }

    // Batches are confined to the config's photo root, in every worker.
    let outside = serde_json::json!({"dir": dir.path().join("data")}).to_string();
    let inside = serde_json::json!({"dir": photo_root.join("batch")}).to_string();
    for _ in 0..4 {
        let (status, body) = http(addr, "POST", "/api/batches", Some(&outside));
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("photo root"), "{body}");
    }
    let (status, body) = http(addr, "POST", "/api/batches", Some(&inside));
    assert_eq!(status, 202, "{body}");
}
