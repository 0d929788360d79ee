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

/// What can be checked before a run is checked before it: each of these exits 2 at once,
/// names what is wrong, starts no server and writes no report.
#[test]
fn mistakes_that_can_be_seen_before_a_run_are_refused_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name).display().to_string();
    let small = "name = \"small\"\n[batch]\ncount = 12\npeople = 2\nsize = \"160x120\"\n\
                 [users]\npollers = 2\nadmins = 0\nkiosks = 1\n[duration]\nmax = \"30s\"\n";
    std::fs::write(d("small.toml"), small).unwrap();
    // A gate on requests no user of this scenario sends: it could only ever fail with "-1".
    std::fs::write(
        d("no-admins.toml"),
        format!("{small}[gates.p99_ms]\n\"GET /admin\" = 100\n"),
    )
    .unwrap();
    std::fs::write(
        d("no-kiosks.toml"),
        small.replace("kiosks = 1", "kiosks = 0") + "[gates.p99_corrected_ms]\nkiosk = 100\n",
    )
    .unwrap();
    std::fs::create_dir(d("a-folder")).unwrap();
    std::fs::write(d("a-file"), "x").unwrap();
    std::fs::write(
        d("sweep.toml"),
        "name = \"s\"\nbase = \"small.toml\"\n[[rows]]\nlabel = \"typo\"\nset = { \"server.storage.journal_mood\" = \"wal\" }\n",
    )
    .unwrap();
    let scenario = d("small.toml");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["validate".into(), d("no-admins.toml")],
            "users.admins = 0",
        ),
        (vec!["run".into(), d("no-kiosks.toml")], "users.kiosks = 0"),
        (
            vec![
                "run".into(),
                scenario.clone(),
                "--junit".into(),
                d("a-folder"),
            ],
            "--junit",
        ),
        (
            vec!["run".into(), scenario.clone(), "--out".into(), d("a-file")],
            "--out",
        ),
        (
            vec![
                "run".into(),
                scenario.clone(),
                "--set".into(),
                "batch.size=0x0".into(),
            ],
            "batch.size",
        ),
        (
            vec![
                "breakpoint".into(),
                scenario.clone(),
                "--vary".into(),
                "kiosks".into(),
                "--max".into(),
                "0".into(),
            ],
            "--max 0",
        ),
        (
            vec![
                "breakpoint".into(),
                scenario.clone(),
                "--vary".into(),
                "pollers".into(),
                "--max".into(),
                "8".into(),
                "--require".into(),
                "16".into(),
            ],
            "--require 16",
        ),
        (
            vec![
                "sweep".into(),
                d("sweep.toml"),
                "--out".into(),
                d("sweep-out"),
            ],
            "journal_mood",
        ),
    ];
    for (args, named) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = lockbench(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(named),
            "{args:?}: stderr should name {named}: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        // The sweep's error is about the user's own keys, not a line of lockbench's text.
        assert!(!err.contains("line "), "{args:?}: {err}");
    }
    assert!(!dir.path().join("sweep-out").join("sweep.json").exists());

    // GITHUB_STEP_SUMMARY that cannot be appended to: refused before the run, not after it.
    let out = Command::new(env!("CARGO_BIN_EXE_lockbench"))
        .args(["run", &scenario, "--out", &d("report")])
        .env("GITHUB_STEP_SUMMARY", d("no-such-folder/summary.md"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("GITHUB_STEP_SUMMARY"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path().join("report").exists());
}

/// Ctrl-C during `contend`: the probe stops within seconds, prints its summary of what it
/// measured, exits 130 and leaves no database behind.
#[test]
fn ctrl_c_stops_contend_with_its_summary_and_nothing_left_behind() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_lockbench"))
        .args([
            "contend",
            "--duration",
            "10m",
            "--writers",
            "2",
            "--readers",
            "2",
        ])
        .env("TMPDIR", dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Let it open its database and start contending.
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_dir(dir.path()).unwrap().next().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "{text}{}", stderr(&out));
    assert!(text.starts_with("verdict: "), "{text}");
    assert!(text.contains("interrupted"), "{text}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
