//! `lockbench doctor` on logs, databases and reports that real runs produce here: each test
//! runs an app (the Django example, the incident's Flask app, the reference server) into the
//! state a cause leaves, then runs the `lockbench doctor` binary on what the run left, and
//! checks the cause it names first, the requests it names, and that it never wrote the
//! database. Also: `--verify` on the Django app (the fix proven on a fresh app), and the exit
//! codes a script relies on (0 no lock problem, 1 one found, 2 evidence unreadable).

use std::path::{Path, PathBuf};
use std::process::Command;

use lockbench::doctor::fixes;
use lockbench::report::diagnosis::{Diagnosis, FindingId};
use lockbench::run::{run_scenario, RunOptions};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lockbench"))
}

fn sha256(path: &Path) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// A script path as a TOML array for `target.command` (the tests run in `loadtest/`).
fn command(script: &str) -> String {
    let script = repo().join(script);
    format!("[{}]", toml::Value::String(script.display().to_string()))
}

/// `lockbench run` through the library, into `out`.
fn run(scenario: &Path, out: &Path, sets: &[(&str, String)]) -> lockbench::report::Report {
    let opts = RunOptions {
        scenario: scenario.to_path_buf(),
        out: Some(out.to_path_buf()),
        server_exe: Some(exe()),
        sets: sets
            .iter()
            .map(|(k, v)| lockbench::scenario::parse_set(&format!("{k}={v}")).unwrap())
            .collect(),
        ..RunOptions::default()
    };
    run_scenario(&opts).expect("the run").report
}

/// The `lockbench doctor` binary: its exit code, stdout and stderr, and its doctor.json.
fn doctor(args: &[&str], out: &Path) -> (i32, String, String, Option<Diagnosis>) {
    let o = Command::new(exe())
        .arg("doctor")
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    let json = std::fs::read_to_string(out.join("doctor.json"))
        .ok()
        .map(|t| serde_json::from_str(&t).expect("doctor.json reads as a Diagnosis"));
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        json,
    )
}

fn ids(d: &Diagnosis) -> Vec<FindingId> {
    d.findings.iter().map(|f| f.id).collect()
}

/// The incident's Flask app as it failed (rollback journal, its default 5 s timeout), with its
/// processor committing a batch while pollers and kiosks use the dashboard: reads fail too.
#[test]
fn the_seed_app_as_it_failed_is_a_rollback_journal_under_readers() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let report = run(
        &repo().join("scenarios/seed-app.toml"),
        &out,
        &[
            ("target.command", command("examples/seed-app/run.sh")),
            ("target.env.SEED_APP_MODE", "\"before\"".into()),
            ("target.env.SEED_APP_SYNC_DELAY_MS", "\"40\"".into()),
            ("batch.count", "120".into()),
            ("batch.people", "12".into()),
            // The lock errors come early; 30 s of load is enough to see them.
            ("duration.max", "\"30s\"".into()),
        ],
    );
    assert!(report.lock_errors.total > 0, "{}", report.verdict.summary);
    let db = out.join("app.db");
    let before = sha256(&db);
    let (code, stdout, stderr, d) = doctor(
        &[
            "--log",
            out.join("seed-app.log").to_str().unwrap(),
            "--database",
            db.to_str().unwrap(),
            "--report",
            out.join("report.json").to_str().unwrap(),
        ],
        &dir.path().join("doctor"),
    );
    let d = d.unwrap_or_else(|| panic!("no doctor.json: {stderr}"));
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert_eq!(ids(&d)[0], FindingId::RollbackJournalReaders, "{stdout}");
    let first = &d.findings[0];
    assert_eq!(first.count, report.lock_errors.total, "{stdout}");
    assert!(
        first
            .endpoints
            .iter()
            .any(|e| e == "poller" || e == "status"),
        "a read failed: {:?}",
        first.endpoints
    );
    assert_eq!(d.database.as_ref().unwrap().journal, "rollback");
    assert!(stdout.starts_with("rollback-journal-readers: "), "{stdout}");
    // Read, never written.
    assert_eq!(sha256(&db), before);
    let read = d.database.as_ref().unwrap();
    assert_eq!(read.sha256_before, before);
    assert_eq!(read.sha256_after, before);
    assert!(dir.path().join("doctor/doctor.md").is_file());
    assert!(dir.path().join("doctor/doctor.html").is_file());
    assert!(dir
        .path()
        .join("doctor/scenarios/doctor-rollback-journal-readers.toml")
        .is_file());
}

/// The Flask app with the write-up's fix (WAL, a 30 s timeout, retries) while another process
/// holds the write lock for 35 s: the kiosks' writes fail after waiting the whole timeout.
#[test]
fn the_seed_app_with_the_fix_under_a_35_s_lock_is_a_long_writer() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("seed-lock.toml");
    let text = std::fs::read_to_string(repo().join("scenarios/seed-app.toml"))
        .unwrap()
        .replace(
            "ready_timeout = \"300s\"",
            "ready_timeout = \"300s\"\ndatabase_owned = true",
        );
    std::fs::write(
        &scenario,
        format!("{text}\n[[faults]]\nkind = \"external-lock\"\nat = \"3s\"\nhold = \"35s\"\n"),
    )
    .unwrap();
    let out = dir.path().join("run");
    let report = run(
        &scenario,
        &out,
        &[
            ("target.command", command("examples/seed-app/run.sh")),
            ("batch.count", "40".into()),
            ("batch.people", "4".into()),
            ("duration.tail", "\"2s\"".into()),
        ],
    );
    assert!(report.lock_errors.total > 0, "{}", report.verdict.summary);
    let db = out.join("app.db");
    let before = sha256(&db);
    let (code, stdout, stderr, d) = doctor(
        &[
            "--log",
            out.join("seed-app.log").to_str().unwrap(),
            "--database",
            db.to_str().unwrap(),
            "--report",
            out.join("report.json").to_str().unwrap(),
        ],
        &dir.path().join("doctor"),
    );
    let d = d.unwrap_or_else(|| panic!("no doctor.json: {stderr}"));
    assert_eq!(code, 1);
    assert_eq!(ids(&d)[0], FindingId::LongWriter, "{stdout}");
    assert!(
        d.findings[0].endpoints.contains(&"kiosk".to_owned()),
        "{stdout}"
    );
    let kiosk = &d.log.as_ref().unwrap().by_endpoint["kiosk"];
    let waited = kiosk
        .failed_latency_ms
        .as_ref()
        .expect("the report's waits");
    assert!(waited.p50 >= 25_000.0, "{kiosk:?}");
    assert!(
        !ids(&d).contains(&FindingId::RollbackJournalReaders),
        "the fix's database is WAL: {stdout}"
    );
    assert_eq!(d.database.as_ref().unwrap().journal, "wal");
    assert_eq!(sha256(&db), before);
}

/// A reproduction scenario of doctor's own, run on the reference server, then diagnosed
/// from what the run left: its log and its report.
fn reference_case(id: FindingId) -> (lockbench::report::Report, Diagnosis, String) {
    let dir = tempfile::tempdir().unwrap();
    let repro = fixes::reproduction(id).expect("a reproduction");
    let scenario = dir.path().join(repro.file_name);
    std::fs::write(&scenario, &repro.toml).unwrap();
    let out = dir.path().join("run");
    let report = run(&scenario, &out, &[]);
    let (code, stdout, stderr, d) = doctor(
        &[
            "--log",
            out.join("server.log").to_str().unwrap(),
            "--report",
            out.join("report.json").to_str().unwrap(),
        ],
        &dir.path().join("doctor"),
    );
    let d = d.unwrap_or_else(|| panic!("no doctor.json: {stderr}"));
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert_eq!(
        d.log.as_ref().unwrap().lock_errors,
        report.lock_errors.total,
        "every lock error the server counted, once: {stdout}"
    );
    (report, d, stdout)
}

/// The reference server whose busy timeout reaches its first pooled connection only: the
/// others fail at the driver's default wait, far below the 30 s the settings say.
#[test]
fn a_busy_timeout_on_the_first_connection_only_is_a_timeout_not_applied() {
    let (report, d, stdout) = reference_case(FindingId::TimeoutNotApplied);
    assert_eq!(
        report.settings_requested["server"]["storage"]["busy_timeout_scope"],
        "first-connection"
    );
    assert_eq!(ids(&d)[0], FindingId::TimeoutNotApplied, "{stdout}");
    let f = &d.findings[0];
    assert!(f.count > 0 && f.count <= report.lock_errors.total);
    assert_eq!(
        f.fix.settings["server.storage.busy_timeout_scope"],
        "every-connection"
    );
}

/// The reference server retrying only the COMMIT of deferred transactions: the writes it
/// reports saved after those retries are gone, and doctor weighs that first.
#[test]
fn a_retry_of_the_commit_alone_is_found_and_weighed_by_its_lost_writes() {
    let (report, d, stdout) = reference_case(FindingId::CommitOnlyRetry);
    assert_eq!(ids(&d)[0], FindingId::CommitOnlyRetry, "{stdout}");
    let f = &d.findings[0];
    let dropped = report.commit_only_dropped.unwrap();
    assert!(dropped > 0);
    assert_eq!(f.lost_writes, Some(dropped));
    assert!(
        ids(&d).contains(&FindingId::DeferredUpgrade),
        "the lock errors it retried are the deferred upgrade's: {stdout}"
    );
}

/// `doctor --verify`: the Django app under its mix as it is, and with the fix doctor
/// recommends applied through the scenario's knobs, each on a fresh app and database.
#[test]
fn verify_runs_the_django_app_before_and_after_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("doctor");
    let scenario = repo().join("scenarios/django-app.toml");
    let set_command = format!("target.command={}", command("examples/django-app/run.sh"));
    let (code, stdout, stderr, d) = doctor(
        &[
            "--verify",
            "--scenario",
            scenario.to_str().unwrap(),
            "--set",
            &set_command,
            "--set",
            "duration.target_run=\"10s\"",
        ],
        &out,
    );
    let d = d.unwrap_or_else(|| panic!("no doctor.json: {stdout}{stderr}"));
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert_eq!(ids(&d)[0], FindingId::DeferredUpgrade, "{stdout}");
    assert_eq!(
        d.findings[0].endpoints,
        vec!["read_write_transaction".to_owned()],
        "only the view that reads then writes: {stdout}"
    );
    for f in &d.findings {
        for other in ["write", "read_write_immediate", "write_read_transaction"] {
            assert!(!f.endpoints.iter().any(|e| e == other), "{f:?}");
        }
    }
    let v = d.verify.as_ref().expect("the verification");
    assert_eq!(v.applied["server.storage.tx_mode"], "immediate");
    assert!(v.before.lock_errors.unwrap() > 0, "{v:?}");
    assert_eq!(v.after.lock_errors, Some(0), "{v:?}");
    assert_eq!(v.after.lost_writes, Some(0));
    assert!(v.fixed, "{}", v.sentence);
    assert!(v.sentence.starts_with("Fixed on the app"), "{}", v.sentence);
    // Each side is a run of its own with its own report and app.
    let after: lockbench::report::Report =
        serde_json::from_str(&std::fs::read_to_string(out.join("after/report.json")).unwrap())
            .unwrap();
    let knobs = &after.target.app.as_ref().unwrap().knobs;
    assert_eq!(knobs["server.storage.tx_mode"], "APP_TX_MODE=IMMEDIATE");
    assert!(out.join("before/report.json").is_file());
    let md = std::fs::read_to_string(out.join("doctor.md")).unwrap();
    assert!(md.contains("| lock errors |"), "{md}");
}

#[test]
fn a_log_without_lock_errors_exits_0_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    std::fs::write(
        &log,
        "2026-11-30 10:00:00 INFO GET /items 200\n2026-11-30 10:00:01 INFO POST /items 201\n",
    )
    .unwrap();
    let (code, stdout, _, d) = doctor(&["--log", log.to_str().unwrap()], &dir.path().join("d"));
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.starts_with("No lock problem: no lock error in the log."),
        "{stdout}"
    );
    let d = d.unwrap();
    assert!(!d.lock_problem && d.findings.is_empty());
    assert_eq!(d.log.unwrap().records, 2);
}

#[test]
fn evidence_that_cannot_be_read_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.log");
    let (code, _, stderr, _) = doctor(&["--log", missing.to_str().unwrap()], &dir.path().join("a"));
    assert_eq!(code, 2);
    assert!(
        stderr.contains(&format!("--log {}: no such file", missing.display())),
        "{stderr}"
    );
    let not_db = dir.path().join("app.db");
    std::fs::write(
        &not_db,
        "this is a text file, long enough to have a header ".repeat(4),
    )
    .unwrap();
    let before = sha256(&not_db);
    let (code, _, stderr, _) = doctor(
        &["--database", not_db.to_str().unwrap()],
        &dir.path().join("b"),
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains(&format!(
            "--database {}: not a SQLite database",
            not_db.display()
        )),
        "{stderr}"
    );
    assert_eq!(sha256(&not_db), before);
    let (code, _, stderr, _) = doctor(&[], &dir.path().join("c"));
    assert_eq!(code, 2);
    assert!(stderr.contains("nothing to read"), "{stderr}");
}

/// A WAL database a reader kept from being checkpointed, read as bytes: the WAL's size is
/// the finding, and the file (and its WAL) are the same bytes afterwards.
#[test]
fn a_wal_far_past_its_autocheckpoint_size_is_checkpoint_starvation() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let writer = rusqlite::Connection::open(&db).unwrap();
    writer
        .execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE t (x BLOB); INSERT INTO t VALUES (1);",
        )
        .unwrap();
    let reader = rusqlite::Connection::open(&db).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let _: i64 = reader
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    for _ in 0..3000 {
        writer
            .execute("INSERT INTO t VALUES (zeroblob(4000))", [])
            .unwrap();
    }
    let wal = dir.path().join("app.db-wal");
    let (db_hash, wal_hash) = (sha256(&db), sha256(&wal));
    let (code, stdout, _, d) = doctor(&["--database", db.to_str().unwrap()], &dir.path().join("d"));
    assert_eq!(code, 1, "{stdout}");
    let d = d.unwrap();
    assert_eq!(ids(&d), vec![FindingId::CheckpointStarvation], "{stdout}");
    assert!(d.findings[0].count > 2000, "{:?}", d.findings[0]);
    assert_eq!((sha256(&db), sha256(&wal)), (db_hash, wal_hash));
    reader.execute_batch("COMMIT").unwrap();
}
