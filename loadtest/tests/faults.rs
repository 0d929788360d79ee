//! Faults injected on purpose (`[[faults]]`), against real server processes on real files:
//! a killed worker, a write lock held by another process, a reader that stays open, a slow
//! disk. Each test checks what the report says happened and what the audit found.

use std::path::{Path, PathBuf};

use lockbench::report::Report;
use lockbench::run::{run_scenario, RunOptions};

fn run(dir: &Path, name: &str, text: &str) -> Report {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    let opts = RunOptions {
        scenario: path,
        out: Some(dir.join(name)),
        server_exe: Some(PathBuf::from(env!("CARGO_BIN_EXE_lockbench"))),
        photos_cache: Some(dir.join("photos")),
        ..RunOptions::default()
    };
    run_scenario(&opts).expect("run").report
}

/// WAL with deferred transactions and unit-of-work retries: the kiosks' read-then-write
/// registrations meet lock errors that the retries absorb, so lock errors are counted all
/// along while nothing is lost.
const RETRIED_LOCKS: &str = r#"
[server]
workers = 2

[server.storage]
journal_mode = "wal"
synchronous = "normal"
tx_mode = "deferred"
busy_timeout_ms = 2000
pool_size = 4

[server.retry]
retry = "fixed"
retry_attempts = 50
retry_delay_ms = 2
retry_scope = "unit-of-work"

[server.processor]
upload_latency_ms = 20

[batch]
count = 80
people = 8
size = "320x240"
seed = 5

[users]
pollers = 6
poll_interval = "200ms"
admins = 0
kiosks = 16
kiosk_interval = "10ms"

[duration]
tail = "1s"
max = "60s"
"#;

#[test]
fn a_killed_worker_is_restarted_the_batch_resumes_and_its_lock_errors_stay_counted() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "name = \"kill\"\n{RETRIED_LOCKS}\n[[faults]]\nkind = \"kill-worker\"\nat_photo = 40\n"
    );
    let report = run(dir.path(), "kill", &text);

    let kill = &report.faults[0];
    assert_eq!(kill.kind, "kill-worker");
    assert!(
        kill.outcome.contains("running the processor")
            && kill.outcome.contains("posted the batch again"),
        "{}",
        kill.outcome
    );
    let restarted: Vec<_> = report
        .restarts
        .iter()
        .filter(|r| r.action == "restarted")
        .collect();
    assert!(!restarted.is_empty(), "{:?}", report.restarts);
    // Lock errors the workers had counted before the kill are still in the total.
    let before = kill.lock_errors_before.expect("counted before the kill");
    assert!(
        before > 0,
        "the scenario should meet lock errors before the kill"
    );
    assert!(
        report.lock_errors.total >= before,
        "total {} < {before} counted before the kill",
        report.lock_errors.total
    );
    // The batch resumed from what was committed: every photo recorded once.
    let batch = report.batch.as_ref().unwrap();
    assert!(batch.finished, "{}", report.verdict.summary);
    let audit = report.audit.as_ref().unwrap();
    assert_eq!(audit.missing_photos, 0, "{audit:?}");
    assert_eq!(audit.duplicate_writes, 0, "{audit:?}");
    assert_eq!(audit.lost_registrations, 0, "{audit:?}");
    assert!(report.verdict.summary.contains("kill-worker"));
    assert!(report.verdict.summary.contains("worker restart"));
}

#[test]
fn a_reader_that_stays_open_keeps_the_wal_from_being_checkpointed() {
    let dir = tempfile::tempdir().unwrap();
    // Per-photo commits of a bigger batch write well past the 1,000-page autocheckpoint.
    let base = RETRIED_LOCKS
        .replace("count = 80", "count = 240")
        .replace("people = 8", "people = 16")
        .replace("kiosks = 8", "kiosks = 1")
        .replace("tx_mode = \"deferred\"", "tx_mode = \"immediate\"");
    let calm = run(dir.path(), "calm", &format!("name = \"calm\"\n{base}"));
    let starved = run(
        dir.path(),
        "starved",
        &format!(
            "name = \"starved\"\n{base}\n[[faults]]\nkind = \"long-reader\"\nat = \"0s\"\nhold = \"60s\"\n"
        ),
    );
    let largest = |r: &Report| r.timeline.iter().map(|p| p.wal_bytes).max().unwrap_or(0);
    let reader = &starved.faults[0];
    assert_eq!(reader.kind, "long-reader");
    assert!(reader.started_s.is_some(), "{reader:?}");
    assert!(
        largest(&starved) > largest(&calm),
        "WAL with a reader open {} bytes, without {} bytes",
        largest(&starved),
        largest(&calm)
    );
    // With the reader open from the start no frame can be checkpointed: the WAL holds the
    // whole batch's writes, far past the 1,000-page autocheckpoint mark.
    assert!(largest(&starved) > 1_100 * 4096, "{}", largest(&starved));
}

#[test]
fn a_slow_disk_fault_slows_every_commit_while_it_lasts() {
    let dir = tempfile::tempdir().unwrap();
    let base = RETRIED_LOCKS
        .replace("synchronous = \"normal\"", "synchronous = \"full\"")
        .replace("tx_mode = \"deferred\"", "tx_mode = \"immediate\"")
        .replace("count = 80", "count = 120");
    let report = run(
        dir.path(),
        "slow",
        &format!(
            "name = \"slow\"\n{base}\n[[faults]]\nkind = \"slow-disk\"\nat = \"1s\"\nhold = \"3s\"\nsync_delay_ms = 150\n"
        ),
    );
    let fault = &report.faults[0];
    let (from, to) = (fault.started_s.unwrap(), fault.ended_s.unwrap());
    assert!(to > from);
    // WAL with synchronous=full syncs on every commit: while the fault lasts, no
    // registration can be answered in less than the delay.
    let inside: Vec<_> = report
        .timeline
        .iter()
        .filter(|p| f64::from(p.t_s) >= from.ceil() && f64::from(p.t_s) + 1.0 <= to.floor())
        .collect();
    assert!(!inside.is_empty(), "{fault:?}");
    for p in inside {
        assert!(
            p.p99_us >= 150_000,
            "second {}: p99 {} µs while every sync waited 150 ms",
            p.t_s,
            p.p99_us
        );
    }
}

/// The incident's commit-only retry under a lock held longer than the busy timeout: every
/// write it reports as saved after a rollback is a lost write in the report, whether the audit
/// finds the missing row (a photo, a registration, an upload) or the server's own record of
/// the drop is all there is (the processing log, the batch's status). With `--repeat`, the
/// combined report keeps the largest loss of any run and names every run that failed.
#[test]
fn every_commit_only_drop_is_a_lost_write_and_repeats_name_the_runs_that_lost_them() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
name = "drops"
[server]
workers = 2
[server.storage]
journal_mode = "wal"
synchronous = "normal"
tx_mode = "lazy"
busy_timeout_ms = 500
pool_size = 4
[server.retry]
retry = "fixed"
retry_attempts = 2
retry_delay_ms = 5
retry_scope = "commit-only"
[server.processor]
upload_latency_ms = 20
[batch]
count = 60
people = 6
size = "320x240"
seed = 5
[users]
pollers = 2
poll_interval = "500ms"
admins = 0
kiosks = 2
kiosk_interval = "100ms"
[duration]
tail = "1s"
max = "60s"
[gates]
max_lost_writes = 0
[[faults]]
kind = "external-lock"
at = "500ms"
hold = "2500ms"
"#;
    let scenario = dir.path().join("drops.toml");
    std::fs::write(&scenario, text).unwrap();
    let out = dir.path().join("report");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_lockbench"))
        .args(["run", scenario.to_str().unwrap(), "--repeat", "2", "--out"])
        .arg(&out)
        .args([
            "--photos-cache",
            dir.path().join("photos").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    let read = |p: PathBuf| -> Report {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let runs: Vec<Report> = (1..=2)
        .map(|k| read(out.join(format!("run-{k}/report.json"))))
        .collect();
    for (k, r) in runs.iter().enumerate() {
        let drops = r.commit_only_dropped.unwrap();
        let audit = r.audit.as_ref().unwrap();
        assert!(drops > 0, "run {}: the lock should make writes drop", k + 1);
        assert_eq!(
            audit.lost_writes,
            audit.missing_photos
                + audit.lost_registrations
                + audit.lost_uploads
                + audit.dropped_unaudited,
            "{audit:?}"
        );
        assert!(
            audit.lost_writes >= drops,
            "run {}: {drops} commit-only drops but {} lost writes: {audit:?}",
            k + 1,
            audit.lost_writes
        );
        assert!(!r.verdict.passed, "run {}: {}", k + 1, r.verdict.summary);
        assert!(
            !r.verdict.summary.contains(" 0 lost writes"),
            "{}",
            r.verdict.summary
        );
    }
    assert_eq!(run.status.code(), Some(1), "{err}");
    let combined = read(out.join("report.json"));
    let most = runs
        .iter()
        .map(|r| r.audit.as_ref().unwrap().lost_writes)
        .max()
        .unwrap();
    assert_eq!(combined.audit.as_ref().unwrap().lost_writes, most);
    for k in 1..=2 {
        assert!(
            combined.verdict.summary.contains(&format!("run {k}")),
            "run {k} is not named: {}",
            combined.verdict.summary
        );
    }
}

/// A server whose only worker dies (one worker runs in the server's own process: nobody
/// restarts it): its counters cannot be read, so the report's lock errors are a lower bound
/// that names the worker and fails its gate, the run stops waiting for a batch nobody
/// processes, and what the processor had not reached is not processed, not lost.
#[test]
fn counters_that_could_not_be_read_are_a_named_lower_bound_never_zero() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "name = \"gone\"\n{}\n[gates]\nmax_lock_errors = 1000\n[[faults]]\nkind = \"kill-worker\"\nat_photo = 10\nworker = \"any\"\n",
        RETRIED_LOCKS
            .replace("workers = 2", "workers = 1")
            .replace("count = 80", "count = 300")
            .replace("people = 8", "people = 20")
            .replace("upload_latency_ms = 20", "upload_latency_ms = 200")
    );
    let report = run(dir.path(), "gone", &text);
    assert_eq!(
        report.lock_errors.missing_workers,
        vec![0],
        "{:?}",
        report.lock_errors
    );
    let gate = report
        .gates
        .iter()
        .find(|g| g.name == "max_lock_errors")
        .unwrap();
    assert!(!gate.passed, "{gate:?}");
    assert!(
        gate.note.as_deref().is_some_and(|n| n.contains("at least")),
        "{gate:?}"
    );
    assert!(
        report.verdict.summary.contains("at least"),
        "{}",
        report.verdict.summary
    );
    let batch = report.batch.as_ref().unwrap();
    assert_eq!(
        batch.ended,
        lockbench::report::BatchEnd::Abandoned,
        "{batch:?}"
    );
    let audit = report.audit.as_ref().unwrap();
    assert_eq!(audit.lost_writes, 0, "{audit:?}");
    assert!(audit.not_processed > 0, "{audit:?}");
}

/// The pids of `root`'s descendants now, from /proc.
fn descendants(root: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": the command may hold spaces, so read after the ')'.
        let after = &stat[stat.rfind(')').unwrap_or(0) + 1..];
        if let Some(ppid) = after.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            parents.push((pid, ppid));
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out.remove(0);
    out
}

/// Whether `pid` is a live process (not gone, not a zombie waiting to be reaped).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s[s.rfind(')').unwrap_or(0) + 1..]
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// Ctrl-C, SIGTERM (what a CI cancel and `timeout` send) and SIGHUP each stop a run within
/// seconds: the report is written and marked interrupted, exit code 130, the temporary folder
/// is removed, and no process the run started is left (checked in the process table).
#[test]
fn a_signal_stops_a_run_and_writes_a_report_marked_interrupted_leaving_nothing_behind() {
    use nix::sys::signal::Signal;
    let photos = tempfile::tempdir().unwrap();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        stopped_by(signal, photos.path());
    }
}

fn stopped_by(signal: nix::sys::signal::Signal, photos: &Path) {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    // A long batch under a cap of ten minutes: only the signal ends this run early.
    let text = format!(
        "name = \"long\"\n{}",
        RETRIED_LOCKS
            .replace("count = 80", "count = 600")
            .replace("people = 8", "people = 30")
            .replace("upload_latency_ms = 20", "upload_latency_ms = 500")
            .replace("max = \"60s\"", "max = \"10m\"")
    );
    let scenario = dir.path().join("long.toml");
    std::fs::write(&scenario, text).unwrap();
    let out = dir.path().join("report");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lockbench"))
        .args([
            "run",
            scenario.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--photos-cache",
            photos.to_str().unwrap(),
        ])
        .env("TMPDIR", &tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the run's database exists in its temporary folder and its workers run.
    let deadline = Instant::now() + Duration::from_secs(120);
    let started = loop {
        let db = std::fs::read_dir(&tmp)
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| e.path().join("app.db").is_file());
        if db && descendants(child.id()).len() >= 3 {
            break true;
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(started, "{signal}: the run never started its server");
    std::thread::sleep(Duration::from_secs(2));
    // Everything the run started: the supervisor, its workers, any fault process.
    let started_processes = descendants(child.id());
    assert!(
        started_processes.len() >= 3,
        "{signal}: expected a supervisor and two workers, found {started_processes:?}"
    );
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "{signal}: the run did not stop");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(130), "{signal}: {err}");

    let report: Report =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert!(report.interrupted, "{signal}");
    assert_eq!(report.verdict.exit_code, 130);
    assert!(
        report.verdict.summary.starts_with("INTERRUPTED"),
        "{signal}: {}",
        report.verdict.summary
    );
    assert!(!report.batch.as_ref().unwrap().finished);
    // Photos the processor never reached are not processed, not lost writes.
    let audit = report.audit.as_ref().unwrap();
    assert_eq!(audit.lost_writes, 0, "{signal}: {audit:?}");
    assert!(audit.not_processed > 0, "{signal}: {audit:?}");
    assert_eq!(
        audit.not_processed + report.batch.as_ref().unwrap().processed,
        600,
        "{signal}: every photo is either in the database or not processed: {audit:?}"
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.starts_with("# lockbench: long — INTERRUPTED"), "{md}");
    // Nothing is left in the temporary folder, and no process the run started is alive.
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .filter_map(Result::ok)
        .collect();
    assert!(left.is_empty(), "{signal}: left behind: {left:?}");
    let alive: Vec<u32> = started_processes
        .into_iter()
        .filter(|p| alive(*p))
        .collect();
    assert!(alive.is_empty(), "{signal}: still running: {alive:?}");
}
