//! The `lockbench` binary as a user runs it: real processes, real files.

use std::process::{Command, Output};

fn lockbench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lockbench"))
        .args(args)
        .output()
        .expect("run lockbench")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn contend_prints_a_json_report_with_the_settings_each_connection_really_has() {
    let out = lockbench(&[
        "contend",
        "--json",
        "--duration",
        "500ms",
        "--writers",
        "2",
        "--readers",
        "1",
        "--journal-mode",
        "wal",
        "--tx-mode",
        "immediate",
        "--busy-timeout-ms",
        "30000",
        "--retry",
        "fixed",
        "--retry-attempts",
        "3",
        "--retry-delay-ms",
        "5",
        "--retry-scope",
        "commit-only",
        "--sync-delay-ms",
        "1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    for key in [
        "settings_requested",
        "settings_effective",
        "sqlite_version",
        "writes_ok",
        "reads_ok",
        "lock_errors",
        "retries",
        "lost_writes",
        "latency_us",
    ] {
        assert!(report.get(key).is_some(), "missing {key}");
    }
    assert_eq!(
        report["settings_requested"]["storage"]["journal_mode"],
        "wal"
    );
    assert_eq!(
        report["settings_requested"]["retry"]["retry_scope"],
        "commit-only"
    );
    let conns = report["settings_effective"]
        .as_array()
        .expect("connections");
    assert!(!conns.is_empty());
    for c in conns {
        assert_eq!(c["journal_mode"], "wal");
        assert_eq!(c["busy_timeout_ms"], 30000);
        assert!(c["vfs"].as_str().unwrap().starts_with("lockbench-delay"));
    }
    assert!(report["writes_ok"].as_u64().unwrap() > 0);
    assert_eq!(report["lost_writes"], 0);
    assert!(report["sqlite_version"].as_str().unwrap().starts_with("3."));
    let write = &report["latency_us"]["write"];
    assert!(write["p50"].as_u64().unwrap() <= write["p99"].as_u64().unwrap());
}

#[test]
fn contend_human_summary_leads_with_the_verdict() {
    let out = lockbench(&[
        "contend",
        "--duration",
        "300ms",
        "--writers",
        "1",
        "--readers",
        "0",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("verdict: "), "{text}");
    assert!(text.contains("sqlite 3."), "{text}");
}

#[test]
fn bad_input_is_named_and_exits_non_zero_without_a_panic() {
    let cases: &[(&[&str], &str)] = &[
        (&["contend", "--journal-mode", "wall"], "wall"),
        (
            &[
                "contend",
                "--pool-layout",
                "split",
                "--pool-size",
                "1",
                "--duration",
                "100ms",
            ],
            "pool_layout",
        ),
        (
            &[
                "contend",
                "--db",
                "/nonexistent-lockbench/x.db",
                "--duration",
                "100ms",
            ],
            "/nonexistent-lockbench",
        ),
        (&["contend", "--duration", "5 parsecs"], "duration"),
        (
            &[
                "contend",
                "--retry",
                "exponential",
                "--retry-factor",
                "0.5",
                "--duration",
                "100ms",
            ],
            "retry_factor",
        ),
        (&["contend", "--no-such-setting", "1"], "--no-such-setting"),
    ];
    for (args, named) in cases {
        let out = lockbench(args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(
            err.contains(named),
            "{args:?}: stderr should name {named}: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn a_file_that_is_not_a_database_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.db");
    std::fs::write(&path, b"these are my notes, not a database, keep them").unwrap();
    let out = lockbench(&[
        "contend",
        "--db",
        path.to_str().unwrap(),
        "--duration",
        "100ms",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("notes.db"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"these are my notes, not a database, keep them"
    );
}
