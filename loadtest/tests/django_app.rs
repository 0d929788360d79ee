//! `scenarios/django-app.toml` against the real Django app it was written for
//! (examples/django-app: Django on its default SQLite settings under gunicorn, installed from
//! PyPI by its own setup script), on a fresh database: the form posts reach the views (the
//! plain writes succeed), the view that reads then writes inside `transaction.atomic()`
//! fails with "database is locked" and the verdict names it, each of its failed requests is
//! one lock error of that view in the app's log (a traceback that says "database is locked"
//! twice counts once), and every write the app acknowledged is in its database.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use lockbench::run::{run_scenario, RunOptions};
use support::{free_port, AppGroup};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Django app under gunicorn on a loopback port (the first start installs its pinned
/// packages from PyPI).
fn start_django(db: &Path, log: &Path) -> AppGroup {
    let port = free_port();
    let env = [
        ("DJANGO_DB", db.display().to_string()),
        ("DJANGO_LOG", log.display().to_string()),
        ("DJANGO_APP_PORT", port.to_string()),
    ];
    AppGroup::start(
        &repo().join("examples/django-app/run.sh"),
        &env,
        port,
        "/read/",
        Duration::from_secs(300),
        || "the Django app did not answer /read/ within 300 s".to_owned(),
    )
}

fn toml_string(p: &Path) -> String {
    toml::Value::String(p.display().to_string()).to_string()
}

#[test]
fn the_django_scenario_names_the_view_that_fails_on_a_lock_and_counts_each_failure_once() {
    let dir = tempfile::tempdir().unwrap();
    let (db, log) = (dir.path().join("app.db"), dir.path().join("app.log"));
    let app = start_django(&db, &log);
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
