//! The admin page in headless Chromium, driven over WebDriver (chromedriver): batch progress
//! changes in the page while a batch runs, through the page's own polling.
//!
//! Needs the Debian packages chromium and chromium-driver; `scripts/test.sh` (the README's
//! test command, which .ci/run calls) installs them when they are missing.

mod support;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{fresh_client, post_batch, small_batch, Server, TOKEN};

/// Debian's chromium, or the browser LOCKBENCH_CHROMIUM names (a CI runner's own Chrome).
fn chromium() -> String {
    std::env::var("LOCKBENCH_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

/// Debian's chromedriver, or the one LOCKBENCH_CHROMEDRIVER names.
fn chromedriver() -> String {
    std::env::var("LOCKBENCH_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into())
}

struct Driver {
    child: Child,
    base: String,
    session: String,
    client: reqwest::blocking::Client,
    /// Chromium's profile folder, removed with the driver.
    _profile: tempfile::TempDir,
}

impl Driver {
    fn start() -> Driver {
        let (browser, driver) = (chromium(), chromedriver());
        assert!(
            std::path::Path::new(&browser).exists() && std::path::Path::new(&driver).exists(),
            "this test needs {browser} and {driver}: run scripts/test.sh, which installs them"
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while client.get(format!("{base}/status")).send().is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": browser,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--disable-dev-shm-usage", format!("--user-data-dir={}", profile.path().display())]
            }
        }}});
        let created: Value = client
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .and_then(|r| r.json())
            .expect("new WebDriver session");
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_owned();
        Driver {
            child,
            base,
            session,
            client,
            _profile: profile,
        }
    }

    fn goto(&self, url: &str) {
        let r = self
            .client
            .post(format!("{}/session/{}/url", self.base, self.session))
            .json(&json!({"url": url}))
            .send()
            .expect("navigate");
        assert!(
            r.status().is_success(),
            "navigate: {}",
            r.text().unwrap_or_default()
        );
    }

    /// Runs a script in the page and returns its value.
    fn eval(&self, script: &str) -> Value {
        let r: Value = self
            .client
            .post(format!(
                "{}/session/{}/execute/sync",
                self.base, self.session
            ))
            .json(&json!({"script": script, "args": []}))
            .send()
            .and_then(|r| r.json())
            .expect("execute script");
        r["value"].clone()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self
            .client
            .delete(format!("{}/session/{}", self.base, self.session))
            .send();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_admin_page_in_chromium_shows_batch_progress_changing_while_a_batch_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (photos, manifest) = small_batch(dir.path(), 60, 6, 0);
    // Slow uploads keep the batch running for seconds once it may go on; the long busy
    // timeout lets the processor wait for the write lock the test holds.
    let db = dir.path().join("app.db");
    let server = Server::start(
        &db,
        &[
            "--journal-mode",
            "wal",
            "--tx-mode",
            "immediate",
            "--upload-latency-ms",
            "400",
            "--busy-timeout-ms",
            "120000",
        ],
    );
    lockbench::run::http::register_people(&server.url, &manifest, None).unwrap();
    let client = fresh_client();
    let id = post_batch(&client, &server.url, &photos);
    // The batch cannot finish before the browser watches: the test takes the write lock
    // (readers go on in WAL mode, the processor waits at its next write) until the page is up.
    let lock = rusqlite::Connection::open(&db).unwrap();
    lock.busy_timeout(Duration::from_secs(30)).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();

    let driver = Driver::start();
    // The token in the query sets the HttpOnly cookie that the page's fetches then carry.
    driver.goto(&format!("{}/admin?token={TOKEN}&poll_ms=300", server.url));
    let read = |d: &Driver| -> (i64, String) {
        let v = d.eval(&format!(
            "const r = document.querySelector('tr[data-batch=\"{id}\"]');\
             return [Number(r.querySelector('.processed').textContent), r.querySelector('.status').textContent,\
                     document.getElementById('updated').textContent, document.getElementById('poll-error').textContent];"
        ));
        assert_eq!(v[3], "", "the page's polling failed: {v}");
        (
            v[0].as_i64().unwrap(),
            format!("{}|{}", v[1].as_str().unwrap(), v[2].as_str().unwrap()),
        )
    };
    let (first, first_state) = read(&driver);
    assert!(first < 60, "the batch was held back: {first}");
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = vec![first];
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let (processed, state) = read(&driver);
        if *seen.last().unwrap() != processed {
            seen.push(processed);
        }
        if state.starts_with("done|") || Instant::now() > deadline {
            assert!(
                state.starts_with("done|"),
                "the page never showed the batch done: {state} ({first_state})"
            );
            assert!(
                !state.ends_with("|page load"),
                "the page's own polling updated it"
            );
            break;
        }
    }
    assert!(
        seen.len() >= 3,
        "progress should change several times in the page: {seen:?}"
    );
    assert_eq!(*seen.last().unwrap(), 60, "{seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "progress only grows: {seen:?}"
    );
}
