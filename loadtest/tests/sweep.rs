//! `lockbench sweep` and `lockbench breakpoint` on tiny scenarios, against real servers.

use std::collections::BTreeMap;
use std::path::PathBuf;

use lockbench::decide::breakpoint::{breakpoint, Vary};
use lockbench::decide::sweep::sweep;

const BASE: &str = r#"
name = "tiny"
[server]
workers = 1
[server.storage]
journal_mode = "wal"
tx_mode = "immediate"
[batch]
count = 12
people = 2
size = "160x120"
[users]
pollers = 4
poll_interval = "200ms"
admins = 0
kiosks = 1
kiosk_interval = "200ms"
[duration]
tail = "500ms"
max = "60s"
[gates]
max_lock_errors = 0
max_lost_writes = 0
"#;

fn exe() -> Option<PathBuf> {
    Some(PathBuf::from(env!("CARGO_BIN_EXE_lockbench")))
}

#[test]
fn a_sweep_runs_each_row_on_its_own_database_writes_its_table_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tiny.toml"), BASE).unwrap();
    let file = dir.path().join("sweep.toml");
    std::fs::write(
        &file,
        "name = \"s\"\nbase = \"tiny.toml\"\n[[dimensions]]\nkey = \"server.storage.tx_mode\"\nvalues = [\"deferred\", \"immediate\"]\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let report = sweep(&file, &out, exe(), false).expect("sweep");
    assert_eq!(report.rows.len(), 2);
    assert_eq!(report.rows[0].label, "tx_mode=deferred");
    assert_eq!(report.rows[1].set["server.storage.tx_mode"], "immediate");
    for row in &report.rows {
        assert!(row.batch_finished, "{row:?}");
        assert_eq!(row.lost_writes, Some(0));
        assert!(std::path::Path::new(&row.report).is_file());
    }
    let md = std::fs::read_to_string(out.join("sweep.md")).unwrap();
    assert!(md.contains("tx_mode=deferred") && md.contains("tx_mode=immediate"));
    let html = std::fs::read_to_string(out.join("sweep.html")).unwrap();
    assert!(html.contains("<svg"));
    // One series per journal/tx mode.
    assert!(
        html.contains(">wal/deferred<") && html.contains(">wal/immediate<"),
        "{html}"
    );

    // Interrupted sweeps resume: finished rows are kept, not run again.
    let first = std::fs::metadata(PathBuf::from(&report.rows[0].report))
        .unwrap()
        .modified()
        .unwrap();
    let again = sweep(&file, &out, exe(), false).expect("resume");
    assert_eq!(again.rows.len(), 2);
    let after = std::fs::metadata(PathBuf::from(&again.rows[0].report))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(first, after, "a finished row is not run again");

    // A row whose settings changed since it ran is run again, even under the same label.
    std::fs::write(
        dir.path().join("tiny.toml"),
        BASE.replace("poll_interval = \"200ms\"", "poll_interval = \"250ms\""),
    )
    .unwrap();
    let changed = sweep(&file, &out, exe(), false).expect("resume after a change");
    let rerun = std::fs::metadata(PathBuf::from(&changed.rows[0].report))
        .unwrap()
        .modified()
        .unwrap();
    assert!(rerun > after, "a row whose settings changed is run again");
    assert_ne!(changed.rows[0].settings_key, again.rows[0].settings_key);
}

#[test]
fn a_bad_override_is_refused_before_any_row_runs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tiny.toml"), BASE).unwrap();
    let file = dir.path().join("sweep.toml");
    std::fs::write(
        &file,
        "name = \"s\"\nbase = \"tiny.toml\"\n[[rows]]\nlabel = \"ok\"\n[[rows]]\nlabel = \"bad\"\nset = { \"server.storage.journal_mood\" = \"wal\" }\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let err = sweep(&file, &out, exe(), false).unwrap_err();
    assert!(format!("{err:#}").contains("journal_mood"), "{err:#}");
    assert!(!out.join("rows").exists(), "no row ran");
}

#[test]
fn breakpoint_raises_the_dimension_until_a_gate_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.toml");
    std::fs::write(&path, BASE).unwrap();
    let report = breakpoint(
        &[path],
        Vary::Kiosks,
        2,
        &BTreeMap::new(),
        &dir.path().join("bp"),
        exe(),
    )
    .expect("breakpoint");
    let r = &report.results[0];
    assert_eq!(r.breaking_point, Some(2), "{r:?}");
    assert_eq!(r.first_failure, None);
    assert_eq!(
        r.steps.iter().map(|s| s.value).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(dir.path().join("bp/breakpoint.md").is_file());

    // A gate that fails at the lowest value: no breaking point, and the gate is named. Two
    // configurations with the same scenario name keep their steps' reports apart.
    let strict = dir.path().join("strict.toml");
    std::fs::write(&strict, format!("{BASE}max_batch_seconds = 0.001\n")).unwrap();
    let twin = dir.path().join("twin.toml");
    std::fs::copy(&strict, &twin).unwrap();
    let report = breakpoint(
        &[strict, twin],
        Vary::Pollers,
        8,
        &BTreeMap::new(),
        &dir.path().join("bp2"),
        exe(),
    )
    .expect("breakpoint");
    let r = &report.results[0];
    assert_eq!(r.breaking_point, None, "{r:?}");
    assert_eq!(r.first_failure, Some(1));
    assert_eq!(r.failed_gate.as_deref(), Some("max_batch_seconds"));
    let (a, b) = (&report.results[0].steps[0], &report.results[1].steps[0]);
    assert_ne!(a.report, b.report);
    for step in [a, b] {
        let report = std::path::Path::new(&step.report);
        assert!(report.is_file(), "{}", step.report);
    }
}

/// A row that cannot be carried out (here: its PostgreSQL server does not answer) stops the
/// sweep with exit code 2; the rows before it are kept, and the sweep's reports and JUnit say
/// that it stopped, at which row and why, instead of reading as complete.
#[test]
fn a_row_that_cannot_run_stops_the_sweep_and_its_reports_say_it_is_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tiny.toml"), BASE).unwrap();
    let file = dir.path().join("sweep.toml");
    std::fs::write(
        &file,
        "name = \"s\"\nbase = \"tiny.toml\"\n\
         [[rows]]\nlabel = \"sqlite\"\n\
         [[rows]]\nlabel = \"nowhere\"\nset = { \"server.storage.driver\" = \"postgres\", \"server.storage.database_url\" = \"postgres://nobody@127.0.0.1:1/none\" }\n\
         [[rows]]\nlabel = \"never reached\"\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let junit = dir.path().join("junit.xml");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_lockbench"))
        .args([
            "sweep",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .args(["--junit", junit.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{err}");
    assert!(err.contains("nowhere"), "{err}");
    let report: lockbench::decide::sweep::SweepReport =
        serde_json::from_str(&std::fs::read_to_string(out.join("sweep.json")).unwrap()).unwrap();
    assert_eq!(report.rows.len(), 1);
    assert_eq!(report.planned_rows, 3);
    assert!(!report.complete());
    let abort = report
        .aborted
        .as_ref()
        .expect("the sweep says where it stopped");
    assert_eq!(abort.label, "nowhere");
    assert!(abort.error.contains("127.0.0.1:1"), "{}", abort.error);
    let md = std::fs::read_to_string(out.join("sweep.md")).unwrap();
    assert!(md.contains("nowhere"), "{md}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("nowhere") && xml.contains("<error"), "{xml}");
}

/// Ctrl-C during a breakpoint search stops it as it stops a run: the step under way ends
/// with its report, the search writes what it found so far marked interrupted (no breaking
/// point claimed), and the exit code is 130.
#[test]
fn ctrl_c_stops_a_breakpoint_search_and_keeps_its_steps() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.toml");
    // A long cap and a slow upload: only Ctrl-C ends a step early.
    std::fs::write(
        &path,
        BASE.replace("max = \"60s\"", "max = \"5m\"").replace(
            "[batch]",
            "[server.processor]\nupload_latency_ms = 2000\n[batch]",
        ),
    )
    .unwrap();
    let out = dir.path().join("bp");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_lockbench"))
        .args(["breakpoint", path.to_str().unwrap(), "--vary", "pollers"])
        .args(["--max", "64", "--out", out.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !out.join("tiny").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let done = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(130), "{err}");
    let report: lockbench::decide::breakpoint::BreakpointReport =
        serde_json::from_str(&std::fs::read_to_string(out.join("breakpoint.json")).unwrap())
            .unwrap();
    assert!(report.interrupted);
    let r = &report.results[0];
    assert_eq!(r.breaking_point, None, "{r:?}");
    assert_eq!(r.first_failure, None, "{r:?}");
}
