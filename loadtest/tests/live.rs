//! The live view of a run as a user sees it: the terminal line under a real pseudo-terminal
//! (`script`), absent when the output is piped or with `--quiet`; and `--live`'s state,
//! read over HTTP while `scenarios/ci-smoke.toml` runs, growing between two reads and, at
//! the end, equal to the report the run wrote; and the page itself in headless Chromium,
//! its charts growing, its final totals the report's after the run.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lockbench::report::live::LiveState;
use lockbench::report::Report;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_lockbench")
}

fn smoke() -> String {
    repo().join("scenarios/ci-smoke.toml").display().to_string()
}

/// A shell word: the paths here have no quote in them.
fn q(s: &str) -> String {
    format!("'{s}'")
}

#[test]
fn the_terminal_line_shows_the_run_under_a_terminal_and_nothing_when_piped() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tty");
    // `script` gives the command a pseudo-terminal, as a person's shell does.
    let line = format!(
        "{} run {} --out {} --set 'duration.tail=\"3s\"'",
        q(exe()),
        q(&smoke()),
        q(&out.display().to_string())
    );
    let tty = Command::new("script")
        .args(["-qfec", &line, "/dev/null"])
        .output()
        .expect("script (util-linux) runs the command under a pseudo-terminal");
    let shown = String::from_utf8_lossy(&tty.stdout).replace('\r', "\n");
    assert!(tty.status.success(), "{shown}");
    let lines: Vec<&str> = shown.lines().filter(|l| l.contains("req/s sent")).collect();
    assert!(!lines.is_empty(), "no live line in:\n{shown}");
    let last = lines.last().unwrap();
    for field in [
        " answered",
        " failed",
        "lock errors: ",
        "seen by clients",
        "p99 5s ",
        "photos ",
    ] {
        assert!(last.contains(field), "{field:?} missing from {last:?}");
    }
    assert!(out.join("report.json").is_file());

    // Piped: no line, and no progress bar either.
    let piped = Command::new(exe())
        .args(["run", &smoke(), "--out"])
        .arg(dir.path().join("piped"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&piped.stderr);
    assert!(piped.status.success(), "{err}");
    assert!(!err.contains("req/s"), "{err}");

    // Under a terminal with --quiet: none either.
    let quiet = Command::new("script")
        .args(["-qfec", &format!("{line} --quiet"), "/dev/null"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&quiet.stdout);
    assert!(quiet.status.success(), "{shown}");
    assert!(!shown.contains("req/s sent"), "{shown}");
}

/// `lockbench run` with `--live` on a free port, and the page's address it printed first.
fn live_run(out: &Path, tail: &str) -> (std::process::Child, String) {
    let mut child = Command::new(exe())
        .args(["run", &smoke(), "--live", "127.0.0.1:0", "--out"])
        .arg(out)
        .args(["--set", &format!("duration.tail=\"{tail}\"")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    err.read_line(&mut first).unwrap();
    let url = first
        .strip_prefix("live: ")
        .unwrap_or_else(|| panic!("the address first: {first:?}"))
        .trim()
        .to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    (child, url)
}

fn state(client: &reqwest::blocking::Client, url: &str) -> Option<LiveState> {
    client
        .get(format!("{url}state.json"))
        .send()
        .ok()?
        .json()
        .ok()
}

#[test]
fn the_live_state_grows_during_the_run_and_ends_equal_to_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let (mut child, url) = live_run(&out, "4s");
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let page = client.get(&url).send().unwrap().text().unwrap();
    assert!(
        page.contains("/state.json") && page.contains("<svg"),
        "{page}"
    );
    assert!(
        !page.contains("src=\"http") && !page.contains("href=\"http"),
        "nothing fetched from outside"
    );

    // Two reads a couple of seconds apart while the load runs: the time line grows.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut reads: Vec<LiveState> = Vec::new();
    let mut last_state = None;
    while Instant::now() < deadline {
        match state(&client, &url) {
            Some(s) if s.phase == "finished" => {
                last_state = Some(s);
                break;
            }
            Some(s)
                if s.phase == "running"
                    && s.report.is_none()
                    && reads
                        .last()
                        .is_none_or(|r| s.elapsed_s - r.elapsed_s >= 1.5) =>
            {
                reads.push(s);
            }
            Some(_) => {}
            None if child.try_wait().unwrap().is_some() => break,
            None => {}
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(reads.len() >= 2, "fewer than two reads while running");
    let (a, b) = (&reads[0], &reads[reads.len() - 1]);
    assert!(
        b.timeline.len() > a.timeline.len(),
        "{} then {}",
        a.timeline.len(),
        b.timeline.len()
    );
    assert!(b.totals.answered > a.totals.answered);
    let last = last_state.expect("the finished state was served before the page went away");
    assert!(child.wait().unwrap().success());
    let report: Report =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(last.timeline, report.timeline);
    assert_eq!(
        last.totals.answered,
        report.requests.values().map(|s| s.count).sum::<u64>()
    );
    assert_eq!(
        last.totals.failures,
        report.requests.values().map(|s| s.failures).sum::<u64>()
    );
    assert_eq!(
        last.totals.lock_errors_total,
        Some(report.lock_errors.total)
    );
    assert_eq!(
        last.report.as_deref(),
        Some(out.join("report.html").display().to_string().as_str())
    );
    // The page is gone with the command.
    assert!(
        client.get(&url).send().is_err(),
        "the page outlived the run"
    );
}

/// A number as the page writes it ("1,284").
fn shown(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[test]
fn the_live_page_draws_the_run_growing_and_keeps_the_reports_totals_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let driver = support::webdriver::Driver::start();
    let (mut child, url) = live_run(&out, "6s");
    driver.goto(&url);
    let points = |d: &support::webdriver::Driver| {
        d.eval("const s=document.getElementById('c_requests'); return s ? Number(s.dataset.points) : 0;")
            .as_u64()
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while points(&driver) < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let first = points(&driver);
    std::thread::sleep(Duration::from_millis(2500));
    let second = points(&driver);
    assert!(
        first >= 2 && second > first,
        "the chart did not grow: {first} then {second}"
    );
    assert!(child.wait().unwrap().success());
    // The page read the final state before the page went away, and keeps it on screen.
    let status = driver.eval("return document.getElementById('status').textContent;");
    assert!(
        status.as_str().unwrap_or("").starts_with("Finished"),
        "{status}"
    );
    let report: Report =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let text = |id: &str| {
        driver
            .eval(&format!(
                "return document.getElementById('{id}').textContent;"
            ))
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    let answered: u64 = report.requests.values().map(|s| s.count).sum();
    let failures: u64 = report.requests.values().map(|s| s.failures).sum();
    assert_eq!(text("answered"), shown(answered));
    assert_eq!(text("failures"), shown(failures));
    assert_eq!(text("lock_errors"), shown(report.lock_errors.total));
    let points_at_end = points(&driver);
    assert_eq!(points_at_end as usize, report.timeline.len());
}
