//! `scenarios/django-app.toml` against the real Django app it was written for
//! (examples/django-app: Django on its default SQLite settings under gunicorn, installed from
//! PyPI by its own setup script), on a fresh database: the form posts reach the views (the
//! plain writes succeed), the view that reads then writes inside `transaction.atomic()`
//! fails with "database is locked" and the verdict names it, each of its failed requests is
//! one lock error of that view in the app's log (a traceback that says "database is locked"
//! twice counts once), and every write the app acknowledged is in its database.

use std::path::{Path, PathBuf};

use lockbench::decide::sweep::sweep;
use lockbench::run::{run_scenario, RunOptions};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `target.command` as a TOML value: the app's script by its absolute path (the tests run in
/// `loadtest/`, the scenario names it from the repository root).
fn command() -> String {
    let script = repo().join("examples/django-app/run.sh");
    format!("[{}]", toml::Value::String(script.display().to_string()))
}

#[test]
fn the_django_scenario_names_the_view_that_fails_on_a_lock_and_counts_each_failure_once() {
    let dir = tempfile::tempdir().unwrap();
    // lockbench starts the app (the first start installs its pinned packages from PyPI) on
    // a port and a fresh database of the run's own.
    let sets = [
        ("target.command", command()),
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
    let app = report
        .target
        .app
        .as_ref()
        .expect("lockbench started the app");
    assert!(app.ended.contains("stopped by lockbench"), "{}", app.ended);
    assert!(
        dir.path().join("report/app.db").is_file(),
        "the run's own database"
    );
}

/// Rows that differ only in the app's environment, each on a fresh app and database: the
/// read-then-write view fails on a lock under Django's default `DEFERRED` transactions and
/// not under `IMMEDIATE`.
#[test]
fn a_sweep_over_the_apps_environment_runs_each_row_on_a_fresh_app_and_tells_them_apart() {
    let dir = tempfile::tempdir().unwrap();
    let base = repo().join("scenarios/django-app.toml");
    let file = dir.path().join("sweep.toml");
    std::fs::write(
        &file,
        format!(
            r#"name = "django-tx"
base = {base}

[set]
"target.command" = {command}
"duration.target_run" = "8s"

[[dimensions]]
key = "target.env.APP_TX_MODE"
values = ["DEFERRED", "IMMEDIATE"]
"#,
            base = toml::Value::String(base.display().to_string()),
            command = command(),
        ),
    )
    .unwrap();
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_lockbench"));
    let report = sweep(&file, &dir.path().join("out"), Some(exe), false).expect("sweep");
    let (deferred, immediate) = (&report.rows[0], &report.rows[1]);
    assert_eq!(deferred.set["target.env.APP_TX_MODE"], "DEFERRED");
    assert!(
        !deferred.passed && deferred.lock_errors > 0,
        "deferred: {deferred:?}"
    );
    assert!(
        immediate.passed && immediate.lock_errors == 0,
        "immediate: {immediate:?}"
    );
    let urls: Vec<String> = report
        .rows
        .iter()
        .map(|row| {
            let text = std::fs::read_to_string(&row.report).unwrap();
            let r: lockbench::report::Report = serde_json::from_str(&text).unwrap();
            assert_eq!(
                r.target.app.as_ref().unwrap().env["APP_TX_MODE"],
                row.set["target.env.APP_TX_MODE"]
            );
            r.target.url
        })
        .collect();
    assert_ne!(urls[0], urls[1], "each row its own app");
}
