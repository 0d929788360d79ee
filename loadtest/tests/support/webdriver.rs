//! Headless Chromium driven over WebDriver (chromedriver) with plain HTTP requests: the
//! browser tests' one driver. Needs the Debian packages chromium and chromium-driver;
//! `scripts/test.sh` (the README's test command, which .ci/run calls) installs them when they
//! are missing. `LOCKBENCH_CHROMIUM` and `LOCKBENCH_CHROMEDRIVER` name others (a CI
//! runner's own Chrome).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Debian's chromium, or the browser LOCKBENCH_CHROMIUM names.
fn chromium() -> String {
    std::env::var("LOCKBENCH_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

/// Debian's chromedriver, or the one LOCKBENCH_CHROMEDRIVER names.
fn chromedriver() -> String {
    std::env::var("LOCKBENCH_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into())
}

/// A chromedriver process and one browser session; both end on drop.
pub struct Driver {
    child: Child,
    base: String,
    session: String,
    client: reqwest::blocking::Client,
    /// Chromium's profile folder, removed with the driver.
    _profile: tempfile::TempDir,
}

impl Driver {
    /// Starts chromedriver on a free port and a headless session in a window 1400 x 900.
    pub fn start() -> Driver {
        let (browser, driver) = (chromium(), chromedriver());
        assert!(
            Path::new(&browser).exists() && Path::new(&driver).exists(),
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
                         "--disable-dev-shm-usage", "--window-size=1400,900", "--hide-scrollbars",
                         format!("--user-data-dir={}", profile.path().display())]
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

    fn url(&self, path: &str) -> String {
        format!("{}/session/{}/{path}", self.base, self.session)
    }

    pub fn goto(&self, url: &str) {
        let r = self
            .client
            .post(self.url("url"))
            .json(&json!({"url": url}))
            .send()
            .expect("navigate");
        assert!(
            r.status().is_success(),
            "navigate: {}",
            r.text().unwrap_or_default()
        );
    }

    /// Opens a file of this machine (`file://`).
    pub fn open(&self, path: &Path) {
        let path =
            std::fs::canonicalize(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        self.goto(&format!("file://{}", path.display()));
    }

    /// Runs a script in the page and returns its value.
    pub fn eval(&self, script: &str) -> Value {
        let r: Value = self
            .client
            .post(self.url("execute/sync"))
            .json(&json!({"script": script, "args": []}))
            .send()
            .and_then(|r| r.json())
            .expect("execute script");
        r["value"].clone()
    }

    /// Sets the browser window's outer size in CSS pixels.
    pub fn resize(&self, width: u32, height: u32) {
        let r = self
            .client
            .post(self.url("window/rect"))
            .json(&json!({"width": width, "height": height}))
            .send()
            .expect("resize the window");
        assert!(
            r.status().is_success(),
            "resize: {}",
            r.text().unwrap_or_default()
        );
    }

    /// The window as a PNG (WebDriver's screenshot), written to `path`.
    pub fn screenshot(&self, path: &Path) {
        let r: Value = self
            .client
            .get(self.url("screenshot"))
            .send()
            .and_then(|r| r.json())
            .expect("screenshot");
        let text = r["value"]
            .as_str()
            .unwrap_or_else(|| panic!("no screenshot: {r}"));
        std::fs::write(path, base64_decode(text))
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// A PNG of the page at `width` pixels, from its top down to at most `max_height`: the
    /// window made as tall as that first.
    pub fn screenshot_page(&self, width: u32, max_height: u32, path: &Path) {
        self.resize(width, 900);
        let height = self.eval("return document.documentElement.scrollHeight;");
        let height = height
            .as_u64()
            .unwrap_or(900)
            .clamp(300, u64::from(max_height)) as u32;
        // The outer window is taller than the page's viewport by the browser's own frame.
        let frame = self.eval("return window.outerHeight - window.innerHeight;");
        self.resize(width, height + frame.as_u64().unwrap_or(0) as u32);
        self.screenshot(path);
    }
}

/// Standard base64 (WebDriver's screenshots) to bytes; anything else is skipped.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let sextets: Vec<u8> = text.bytes().filter_map(value).collect();
    let mut out = Vec::with_capacity(sextets.len() * 3 / 4);
    for chunk in sextets.chunks(4) {
        let bits = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, v)| acc | u32::from(*v) << (18 - 6 * i));
        let bytes = bits.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
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
