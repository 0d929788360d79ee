//! `scenarios/django-app.toml` against the real Django app it was written for
//! (examples/django-app: Django on its default SQLite settings under gunicorn, installed from
//! PyPI by its own setup script), on a fresh database: the form posts reach the views (the
//! plain writes succeed), the view that reads then writes inside `transaction.atomic()`
//! fails with "database is locked" and the verdict names it, each of its failed requests is
//! one lock error of that view in the app's log (a traceback that says "database is locked"
//! twice counts once), and every write the app acknowledged is in its database.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lockbench::run::{run_scenario, RunOptions};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Django app under gunicorn on a loopback port; SIGTERM to its process group on drop.
struct DjangoApp {
    child: Child,
    url: String,
}

impl DjangoApp {
    fn start(db: &Path, log: &Path) -> DjangoApp {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = {
            use std::os::unix::process::CommandExt;
            Command::new("bash")
                .arg(repo().join("examples/django-app/run.sh"))
                .env("DJANGO_DB", db)
                .env("DJANGO_LOG", log)
                .env("DJANGO_APP_PORT", port.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("start examples/django-app/run.sh")
        };
        let app = DjangoApp {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        // The first start installs the app's pinned packages from PyPI.
        let deadline = Instant::now() + Duration::from_secs(300);
        let client = reqwest::blocking::Client::new();
        loop {
            if let Ok(r) = client.get(format!("{}/read/", app.url)).send() {
                if r.status().is_success() {
                    return app;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the Django app did not answer /read/ within 300 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for DjangoApp {
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

fn toml_string(p: &Path) -> String {
    toml::Value::String(p.display().to_string()).to_string()
}

#[test]
fn the_django_scenario_names_the_view_that_fails_on_a_lock_and_counts_each_failure_once() {
    let dir = tempfile::tempdir().unwrap();
    let (db, log) = (dir.path().join("app.db"), dir.path().join("app.log"));
    let app = DjangoApp::start(&db, &log);
    let sets = [
        (
            "target.url",
            toml::Value::String(app.url.clone()).to_string(),
        ),
        ("target.log", toml_string(&log)),
        ("target.database", toml_string(&db)),
        ("duration.target_run", "\"12s\"".to_owned()),
    ];
    let opts = RunOptions {
        scenario: repo().join("scenarios/django-app.toml"),
        out: Some(dir.path().join("report")),
        sets: sets
            .iter()
            .map(|(k, v)| lockbench::scenario::parse_set(&format!("{k}={v}")).unwrap())
            .collect(),
        ..RunOptions::default()
    };
    let report = run_scenario(&opts).unwrap().report;
    let requests = &report.requests;
    let by_view = &report.lock_errors.by_endpoint;
    // The form posts reach the views: the plain write succeeds.
    assert!(
        requests["write"].count > 0 && requests["write"].failures == 0,
        "{requests:?}"
    );
    assert!(
        requests["read"].count > requests["write"].count,
        "reads weighted 10"
    );
    let rw = &requests["read_write_transaction"];
    assert!(
        rw.failures > 0,
        "the read-then-write view never failed: {rw:?}"
    );
    assert_eq!(
        by_view.get("read_write_transaction").copied().unwrap_or(0),
        rw.failures,
        "one lock error in the app's log per failed request of the view: {by_view:?}"
    );
    assert_eq!(report.lock_errors.unattributed, 0);
    assert!(!report.verdict.passed);
    assert!(
        report.verdict.summary.contains(&format!(
            "read_write_transaction: {} of {} failed",
            rw.failures, rw.count
        )),
        "{}",
        report.verdict.summary
    );
    // BEGIN IMMEDIATE waits for the lock instead of failing at once.
    let immediate = &requests["read_write_immediate"];
    assert!(
        immediate.failures < rw.failures,
        "immediate {immediate:?} against deferred {rw:?}"
    );
    let audit = report.audit.as_ref().expect("the writes were audited");
    assert_eq!(audit.lost_writes, 0, "{audit:?}");
    assert_eq!(audit.unaudited_writes, 0);
    assert!(report.target_database.as_ref().unwrap().audited_writes > 0);
}
