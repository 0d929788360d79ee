//! `lockbench run` end to end: the library entry point against real server processes on
//! ephemeral ports, and the --target mode against a running reference server.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use lockbench::run::{run_scenario, RunOptions};
use support::Server;

const SMALL: &str = r#"
name = "e2e-small"
description = "end-to-end test scenario"

[server]
workers = 2

[server.storage]
journal_mode = "wal"
tx_mode = "immediate"
synchronous = "normal"
pool_size = 4
pool_layout = "split"

[server.retry]
retry = "fixed"
retry_attempts = 3
retry_delay_ms = 5

[batch]
count = 30
people = 3
size = "160x120"
seed = 3
corrupt = 1

[users]
pollers = 8
poll_interval = "300ms"
admins = 1
admin_interval = "1s"
kiosks = 2
kiosk_interval = "200ms"

[duration]
tail = "1s"
max = "60s"
target_run = "2s"

[gates]
max_lock_errors = 0
max_lost_writes = 0
max_error_rate = 0.0
"#;

fn write_scenario(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn options(scenario: PathBuf, out: PathBuf) -> RunOptions {
    RunOptions {
        scenario,
        out: Some(out),
        server_exe: Some(PathBuf::from(env!("CARGO_BIN_EXE_lockbench"))),
        ..RunOptions::default()
    }
}

#[test]
fn a_small_scenario_runs_end_to_end_and_writes_a_report_that_passes_its_gates() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write_scenario(dir.path(), "small.toml", SMALL);
    let out = dir.path().join("report");
    let outcome = run_scenario(&options(scenario, out.clone())).expect("run");
    let report = &outcome.report;
    assert!(report.verdict.passed, "{}", report.verdict.summary);
    assert_eq!(report.verdict.exit_code, 0);
    let batch = report.batch.as_ref().unwrap();
    assert!(batch.finished);
    assert_eq!(batch.processed, 31);
    assert_eq!(batch.failed, 1);
    let audit = report.audit.as_ref().unwrap();
    assert_eq!(audit.lost_writes, 0);
    assert_eq!(audit.misassigned_photos, 0);
    assert!(
        audit.counter_mismatches.is_empty(),
        "{:?}",
        audit.counter_mismatches
    );
    assert!(report.requests["GET /api/registrations/updates"].count > 0);
    assert!(report.requests["POST /api/registrations"].count > 0);
    let workers = report.settings_effective.as_ref().unwrap();
    assert_eq!(workers.len(), 2, "both workers' effective settings");
    for w in workers {
        assert!(w.connections.iter().all(|c| c["journal_mode"] == "wal"));
    }
    assert_eq!(report.gates.len(), 3);
    assert!(!report.timeline.is_empty());

    // The three files, generated from the same data.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["schema_version"], 4);
    assert_eq!(json["scenario"]["name"], "e2e-small");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("PASSED"));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<svg"));
}

#[test]
fn a_failing_gate_gives_exit_code_1_and_names_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    let text = SMALL.replace(
        "max_error_rate = 0.0",
        "max_error_rate = 0.0\nmax_batch_seconds = 0.000001",
    );
    let scenario = write_scenario(dir.path(), "strict.toml", &text);
    let out = dir.path().join("report");
    let status = Command::new(env!("CARGO_BIN_EXE_lockbench"))
        .args([
            "run",
            scenario.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["verdict"]["exit_code"], 1);
    let failed: Vec<&str> = json["gates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["passed"] == false)
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(failed, vec!["max_batch_seconds"]);
}

#[test]
fn target_mode_runs_the_user_mix_against_an_external_app_and_says_what_it_cannot_know() {
    let dir = tempfile::tempdir().unwrap();
    // Immediate transactions: every kiosk write waits for the write lock instead of failing
    // its read-to-write upgrade, so every kiosk answer is a 201 whatever the timing.
    let server = Server::start(
        &dir.path().join("app.db"),
        &["--journal-mode", "wal", "--tx-mode", "immediate"],
    );
    let text = format!(
        "{SMALL}\n[endpoints]\npoller = {{ method = \"GET\", path = \"/api/registrations/updates?since=0\" }}\n\
         kiosk = {{ method = \"POST\", path = \"/api/registrations\", body = '{{\"name\": \"K {{user}}\", \"email\": \"k{{user}}-{{n}}@example.org\"}}' }}\n\
         admin = {{ method = \"GET\", path = \"/healthz\" }}\n"
    );
    let scenario = write_scenario(dir.path(), "target.toml", &text);
    let mut opts = options(scenario, dir.path().join("report"));
    opts.target = Some(server.url.clone());
    let outcome = run_scenario(&opts).expect("run against the target");
    let report = &outcome.report;
    assert_eq!(report.target.kind, "external");
    assert!(
        report.audit.is_none() && report.batch.is_none() && report.settings_effective.is_none()
    );
    assert_eq!(
        report.lock_errors.source,
        lockbench::report::LockSource::ClientsOnly
    );
    assert!(
        report.notes.iter().any(|n| n.contains("absent")),
        "{:?}",
        report.notes
    );
    let kiosk = &report.requests["kiosk"];
    assert!(kiosk.count > 0);
    assert_eq!(
        kiosk.status_codes.get("201").copied().unwrap_or(0),
        kiosk.count,
        "{kiosk:?}"
    );
    assert!(report.requests["poller"].count > 0);
    // The kiosks' registrations really reached the app.
    let updates: serde_json::Value =
        reqwest::blocking::get(format!("{}/api/registrations/updates?since=0", server.url))
            .unwrap()
            .json()
            .unwrap();
    assert!(!updates["registrations"].as_array().unwrap().is_empty());
}

#[test]
fn a_bad_scenario_is_refused_with_its_line_and_key_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let text = SMALL.replace("kiosks = 2", "kiosks = 2\nkiosk_rate = 5");
    let scenario = write_scenario(dir.path(), "bad.toml", &text);
    let out = Command::new(env!("CARGO_BIN_EXE_lockbench"))
        .args(["run", scenario.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("kiosk_rate"), "{err}");
    assert!(err.contains("line"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let no_endpoints = write_scenario(dir.path(), "small.toml", SMALL);
    let out = Command::new(env!("CARGO_BIN_EXE_lockbench"))
        .args([
            "run",
            no_endpoints.to_str().unwrap(),
            "--target",
            "http://127.0.0.1:9",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("[endpoints]"));
}

/// `[target]` names files lockbench reads: each one that cannot be used is refused before any
/// load starts (no connection reaches the app), with exit code 2 and the key named.
#[test]
fn a_target_whose_files_cannot_be_used_is_refused_before_any_load_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("CREATE TABLE registration (id INTEGER PRIMARY KEY, email TEXT)")
            .unwrap();
    }
    let db_bytes = std::fs::read(&db).unwrap();
    let log = dir.path().join("app.log");
    std::fs::write(&log, "started\n").unwrap();
    // A listener standing in for the app: it counts the connections it is offered.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());

    let endpoints = r#"
[endpoints]
poller = { method = "GET", path = "/api/registrations/updates?since={since}" }
kiosk = { method = "POST", path = "/api/registrations", body = '{"name": "K {user}", "email": "k{user}-{n}@example.org"}' }
"#;
    let good_target = format!(
        "log = \"{}\"\ndatabase = \"{}\"\naudit_query = \"SELECT count(*) FROM registration WHERE email = ?1\"\naudit_field = \"email\"\n",
        log.display(),
        db.display()
    );
    let cases: Vec<(&str, String)> = vec![
        (
            "target.log",
            good_target.replace(&log.display().to_string(), "/nonexistent/app.log"),
        ),
        (
            "target.database",
            good_target.replace(&db.display().to_string(), "/nonexistent/app.db"),
        ),
        (
            "target.lock_pattern",
            format!("{good_target}lock_pattern = \"database is (locked\"\n"),
        ),
        (
            "target.audit_query",
            good_target.replace("FROM registration", "FROM registrations"),
        ),
        (
            "target.audit_query",
            good_target.replace("SELECT count(*) FROM", "SELECT email FROM"),
        ),
        (
            "target.audit_field",
            good_target.replace("audit_field = \"email\"", "audit_field = \"mail\""),
        ),
        (
            "target.database",
            good_target.replace(&db.display().to_string(), &log.display().to_string()),
        ),
    ];
    for (key, target) in cases {
        let text = format!("{SMALL}{endpoints}\n[target]\n{target}");
        let scenario = write_scenario(dir.path(), "target.toml", &text);
        let out = Command::new(env!("CARGO_BIN_EXE_lockbench"))
            .args(["run", scenario.to_str().unwrap(), "--target", &url])
            .args(["--out", dir.path().join("report").to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{key}: {err}");
        assert!(err.contains(key), "{key} not named in: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            listener.accept().is_err(),
            "{key}: a connection reached the app before the target was checked"
        );
        assert!(
            !dir.path().join("report").exists(),
            "{key}: a report was written"
        );
    }
    assert_eq!(
        std::fs::read(&db).unwrap(),
        db_bytes,
        "the app's database changed"
    );
}

/// Mistakes in a scenario are found when it is loaded, before any server starts: exit code 2,
/// the key named, nothing written.
#[test]
fn scenario_mistakes_are_refused_at_load_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, String)> = vec![
        ("workers", SMALL.replace("workers = 2", "workers = \"two\"")),
        (
            "pool_layout",
            SMALL.replace("pool_size = 4", "pool_size = 1"),
        ),
        (
            "GET /api/registration/updates",
            format!("{SMALL}\n[gates.p99_ms]\n\"GET /api/registration/updates\" = 100\n"),
        ),
        (
            "at_photo",
            format!("{SMALL}\n[[faults]]\nkind = \"kill-worker\"\nat_photo = 5000\n"),
        ),
        (
            "explode",
            format!("{SMALL}\n[[faults]]\nkind = \"explode\"\nat = \"1s\"\n"),
        ),
        (
            "every",
            format!("{SMALL}\n[[faults]]\nkind = \"external-lock\"\nat = \"1s\"\nhold = \"5s\"\nevery = \"2s\"\n"),
        ),
        (
            "sometimes",
            SMALL.replace("kiosks = 2", "kiosks = 2\npoll_model = \"sometimes\""),
        ),
        (
            "max_in_flight",
            SMALL.replace("kiosks = 2", "kiosks = 2\nmax_in_flight = 0"),
        ),
        (
            "p99_corrected_ms",
            format!("{SMALL}\n[gates.p99_corrected_ms]\npollers = 100\n"),
        ),
    ];
    for (key, text) in cases {
        let scenario = write_scenario(dir.path(), "bad.toml", &text);
        let out = Command::new(env!("CARGO_BIN_EXE_lockbench"))
            .args(["run", scenario.to_str().unwrap()])
            .args(["--out", dir.path().join("report").to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{key}: {err}");
        assert!(err.contains(key), "{key} not named in: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            !dir.path().join("report").exists(),
            "{key}: a report was written"
        );
    }

    // A photo folder that cannot be created is named.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a folder").unwrap();
    let scenario = write_scenario(dir.path(), "small.toml", SMALL);
    let out = Command::new(env!("CARGO_BIN_EXE_lockbench"))
        .args(["run", scenario.to_str().unwrap(), "--photos-cache"])
        .arg(file.join("photos"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("a-file/photos"), "{err}");
}

/// The incident's own scenario, shortened as a user would with --set: every lock error the
/// server met is in the report's total (connecting, configuring a pooled connection,
/// beginning, reading, writing, committing), each is one "database is locked" line of the
/// server's own log (kept beside the report), and every request one of them failed answered
/// 503, never a bare 500.
#[test]
fn the_incident_scenario_counts_every_lock_error_the_server_logged() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = dir.path().join("report");
    let run = Command::new(env!("CARGO_BIN_EXE_lockbench"))
        .current_dir(&repo)
        .args(["run", "scenarios/seed-incident-350.toml", "--out"])
        .arg(&out)
        .args(["--set", "batch.count=30", "--set", "batch.people=4"])
        .args(["--set", "users.pollers=20"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(
        run.status.code(),
        Some(1),
        "the incident fails its gates: {err}"
    );
    let report: lockbench::report::Report =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let log = std::fs::read_to_string(out.join("server.log")).unwrap();
    let logged = log
        .lines()
        .filter(|l| l.contains("database is locked"))
        .count() as u64;
    assert!(
        report.lock_errors.total > 0,
        "the incident reproduces lock errors"
    );
    assert_eq!(
        report.lock_errors.total, logged,
        "lock errors in the report against lines in the server's log"
    );
    assert!(report.lock_errors.missing_workers.is_empty());
    for (endpoint, stats) in &report.requests {
        assert_eq!(
            stats.status_codes.get("500").copied().unwrap_or(0),
            0,
            "{endpoint}: a request failed with a bare 500: {stats:?}"
        );
    }
}

/// A cap that cuts the batch: the photos the processor never reached are "not processed",
/// not lost writes; the batch's time is the time until the cap, not until the report; its
/// figures are what the database holds; and a gate on the batch's time is unknown, not -1.
#[test]
fn a_batch_cut_by_the_cap_is_not_processed_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let text = SMALL
        .replace("count = 30", "count = 400")
        .replace("people = 3", "people = 20")
        .replace("max = \"60s\"", "max = \"4s\"")
        .replace(
            "max_error_rate = 0.0",
            "max_error_rate = 0.0\nmax_batch_seconds = 100",
        )
        // Every uploaded file takes 50 ms: 400 photos cannot be done in 4 s.
        .replace(
            "[batch]",
            "[server.processor]\nupload_latency_ms = 50\n\n[batch]",
        );
    let scenario = write_scenario(dir.path(), "cut.toml", &text);
    let outcome = run_scenario(&options(scenario, dir.path().join("report"))).expect("run");
    let report = &outcome.report;
    let batch = report.batch.as_ref().unwrap();
    assert_eq!(batch.ended, lockbench::report::BatchEnd::Cap, "{batch:?}");
    assert!(!batch.finished);
    assert!(batch.duration_s <= 5.0, "{batch:?}");
    let audit = report.audit.as_ref().unwrap();
    assert_eq!(audit.lost_writes, 0, "{audit:?}");
    assert!(audit.not_processed > 0, "{audit:?}");
    assert_eq!(
        batch.processed + audit.not_processed,
        401,
        "{batch:?} {audit:?}"
    );
    let gate = report
        .gates
        .iter()
        .find(|g| g.name == "max_batch_seconds")
        .unwrap();
    assert_eq!(gate.value, None, "{gate:?}");
    assert!(!gate.passed);
    assert!(
        report.verdict.summary.contains("not processed"),
        "{}",
        report.verdict.summary
    );
}

/// A photo cache that no longer matches its manifest (a photo deleted, another overwritten
/// with a copy of a third) is written again before the run; nothing is blamed on the
/// database. A photo that is not the batch's at all is refused, named, before the run.
#[test]
fn a_damaged_photo_cache_is_written_again_not_blamed_on_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("photos");
    let scenario = write_scenario(dir.path(), "small.toml", SMALL);
    let mut opts = options(scenario, dir.path().join("first"));
    opts.photos_cache = Some(cache.clone());
    run_scenario(&opts).expect("first run");
    let mut photos: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    photos.sort();
    std::fs::remove_file(&photos[3]).unwrap();
    std::fs::copy(&photos[7], &photos[12]).unwrap();
    opts.out = Some(dir.path().join("second"));
    let report = run_scenario(&opts).expect("second run").report;
    let audit = report.audit.as_ref().unwrap();
    assert_eq!(audit.lost_writes, 0, "{audit:?}");
    assert_eq!(audit.misassigned_photos, 0, "{audit:?}");
    assert_eq!(audit.duplicate_writes, 0, "{audit:?}");
    assert_eq!(audit.not_processed, 0, "{audit:?}");
    assert_eq!(report.batch.as_ref().unwrap().processed, 31);

    std::fs::copy(&photos[7], cache.join("holiday.jpg")).unwrap();
    opts.out = Some(dir.path().join("third"));
    let err = format!("{:#}", run_scenario(&opts).err().expect("refused"));
    assert!(
        err.contains("holiday.jpg") && err.contains("--photos-cache"),
        "{err}"
    );
    assert!(!dir.path().join("third").exists());
}
