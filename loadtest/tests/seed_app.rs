//! `lockbench run --target` against a real app of another stack: the incident's Flask app
//! (examples/seed-app) under gunicorn, installed from PyPI by its own setup script. The test
//! holds the database's write lock from outside for longer than the app's busy timeout while
//! the load runs, as a backup job or someone in the sqlite3 shell would, and checks what a
//! user relies on: the lock errors lockbench reports are the ones in the app's log, the
//! verdict fails on them, and lockbench reads the app's database without changing a byte.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lockbench::report::LockSource;
use lockbench::run::{run_scenario, RunOptions};
use support::{free_port, AppGroup};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The seed app under gunicorn.
fn start_seed_app(mode: &str, db: &Path, log: &Path, busy_timeout_s: f64) -> AppGroup {
    let setup = Command::new("bash")
        .arg(repo().join("examples/seed-app/setup.sh"))
        .status()
        .expect("run examples/seed-app/setup.sh");
    assert!(setup.success(), "the seed app's setup failed");
    let port = free_port();
    let env = [
        ("SEED_APP_MODE", mode.to_owned()),
        ("SEED_APP_DB", db.display().to_string()),
        ("SEED_APP_LOG", log.display().to_string()),
        ("SEED_APP_PORT", port.to_string()),
        ("SEED_APP_WORKERS", "2".to_owned()),
        ("SEED_APP_THREADS", "4".to_owned()),
        ("SEED_APP_BUSY_TIMEOUT", busy_timeout_s.to_string()),
    ];
    AppGroup::start(
        &repo().join("examples/seed-app/run.sh"),
        &env,
        port,
        "/healthz",
        Duration::from_secs(120),
        || {
            format!(
                "the seed app did not answer /healthz within 120 s; its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            )
        },
    )
}

fn sha256(path: &Path) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

fn lock_lines(log: &Path) -> u64 {
    let pattern = regex::Regex::new(lockbench::scenario::DEFAULT_LOCK_PATTERN).unwrap();
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter(|l| pattern.is_match(l))
        .count() as u64
}

fn scenario(db: &Path, log: &Path) -> String {
    format!(
        r#"
name = "seed-app-lock"

[users]
pollers = 10
poll_interval = "500ms"
admins = 1
admin_interval = "1s"
kiosks = 4
kiosk_interval = "250ms"

[duration]
target_run = "9s"
max = "60s"

[gates]
max_lock_errors = 0

[endpoints]
poller = {{ method = "GET", path = "/api/registrations/updates?since={{since}}" }}
admin = {{ method = "GET", path = "/admin" }}
kiosk = {{ method = "POST", path = "/api/registrations", body = '{{"name": "Walk-in {{user}}-{{n}}", "email": "walkin-{{user}}-{{n}}@example.org"}}' }}

[target]
log = "{log}"
database = "{db}"
audit_query = "SELECT count(*) FROM registration WHERE email = ?1"
audit_field = "email"
"#,
        log = log.display(),
        db = db.display()
    )
}

#[test]
fn a_write_lock_held_past_the_apps_busy_timeout_is_counted_from_its_log_and_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let log = dir.path().join("app.log");
    // The app as it failed: rollback journal, and a 1 s busy timeout so the test is short.
    let app = start_seed_app("before", &db, &log, 1.0);
    let path = dir.path().join("seed-app-lock.toml");
    std::fs::write(&path, scenario(&db, &log)).unwrap();

    // 2 s into the load, another process takes the write lock and holds it for 3 s (three
    // times the app's busy timeout); in rollback-journal mode that blocks readers too.
    let holder = {
        let db = db.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(2));
            let conn = rusqlite::Connection::open(&db).unwrap();
            conn.busy_timeout(Duration::from_secs(10)).unwrap();
            conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
            std::thread::sleep(Duration::from_secs(3));
            conn.execute_batch("COMMIT").unwrap();
        })
    };
    let opts = RunOptions {
        scenario: path,
        out: Some(dir.path().join("report")),
        target: Some(app.url.clone()),
        server_exe: Some(PathBuf::from(env!("CARGO_BIN_EXE_lockbench"))),
        ..RunOptions::default()
    };
    let report = run_scenario(&opts)
        .expect("run against the seed app")
        .report;
    holder.join().unwrap();

    // The app is idle now: what lockbench saw is what the files say.
    let in_log = lock_lines(&log);
    assert!(in_log > 0, "the held lock gave the app no lock error");
    assert_eq!(report.lock_errors.source, LockSource::TargetLog);
    assert_eq!(
        report.lock_errors.total, in_log,
        "the report's lock errors are the log's lock lines"
    );
    assert_eq!(
        report
            .timeline
            .iter()
            .map(|p| p.server_lock_errors)
            .sum::<u64>(),
        in_log,
        "every lock line is on the time line"
    );
    // Flask answers a lock error with a bare 500, which the clients saw.
    let failures: u64 = report.requests.values().map(|s| s.failures).sum();
    assert!(failures > 0);
    assert!(!report.verdict.passed);
    assert_eq!(report.verdict.exit_code, 1);
    let failed: Vec<&str> = report
        .gates
        .iter()
        .filter(|g| !g.passed)
        .map(|g| g.name.as_str())
        .collect();
    // The lock errors fail the run; the requests they failed count against the default
    // error-rate gate as well.
    assert_eq!(failed[0], "max_lock_errors", "{failed:?}");
    assert!(
        failed
            .iter()
            .all(|g| ["max_lock_errors", "max_error_rate"].contains(g)),
        "{failed:?}"
    );
    assert!(
        report
            .verdict
            .summary
            .contains("lock errors (the app's log)"),
        "{}",
        report.verdict.summary
    );

    // The database was read, not written: the same bytes before and after lockbench read
    // it, and now.
    let read = report.target_database.as_ref().expect("the app's database");
    assert_eq!(read.journal_mode, "delete");
    assert_eq!(read.sha256_before, read.sha256_after);
    assert_eq!(read.sha256_after, sha256(&db));
    // Every registration the app acknowledged is in its database; the failed ones were
    // answered 500 and are not counted as acknowledged.
    let audit = report.audit.as_ref().expect("the audit");
    assert!(read.audited_writes > 0);
    assert_eq!(audit.lost_writes, 0);
}
