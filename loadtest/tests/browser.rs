//! The admin page in headless Chromium, driven over WebDriver (chromedriver): batch progress
//! changes in the page while a batch runs, through the page's own polling.
//!
//! Needs the Debian packages chromium and chromium-driver; `scripts/test.sh` (the README's
//! test command, which .ci/run calls) installs them when they are missing.

mod support;

use std::time::{Duration, Instant};

use support::webdriver::Driver;
use support::{fresh_client, post_batch, small_batch, Server, TOKEN};

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
