//! An app that lockbench starts itself (`[target] command`), here Python's own web server
//! as a stand-in for a team's app: an app that exits before it is ready, one that never gets
//! ready, one that exits during the run; two runs at once on ports of their own; secrets
//! masked in the report; and the process table after a normal end, an app that crashed and
//! Ctrl-C (nothing of the app left behind, its children included).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lockbench::report::Report;
use lockbench::run::{run_scenario, RunOptions};

/// A scenario whose app is `command`, with one class reading `/` for `run_for`.
fn scenario(command: &str, extra: &str, run_for: &str) -> String {
    format!(
        r#"
name = "launched"

[target]
command = {command}
ready_timeout = "20s"
stop_timeout = "3s"
{extra}

[duration]
target_run = "{run_for}"

[[users]]
name = "visitor"
count = 2
pace = "closed"
think = "50ms"

[[users.requests]]
name = "home"
path = "/"
"#
    )
}

/// Python's web server on `{port}`, serving the run's folder, behind `prefix` (a shell
/// fragment run first).
fn web_server(prefix: &str) -> String {
    format!(
        "[\"sh\", \"-c\", \"{prefix} exec python3 -m http.server {{port}} --bind 127.0.0.1 --directory {{run_dir}}\"]"
    )
}

fn run(dir: &Path, text: &str) -> anyhow::Result<Report> {
    let file = dir.join("scenario.toml");
    std::fs::write(&file, text).unwrap();
    let opts = RunOptions {
        scenario: file,
        out: Some(dir.join("out")),
        // The fault processes are lockbench's own (`lockbench __fault`).
        server_exe: Some(env!("CARGO_BIN_EXE_lockbench").into()),
        ..RunOptions::default()
    };
    run_scenario(&opts).map(|o| o.report)
}

/// The command lines of running processes that contain `token`.
fn processes_with(token: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let line = String::from_utf8_lossy(&raw).replace('\0', " ");
        // Zombies have an empty command line; the test's own process names no token.
        if line.contains(token) && !line.contains("launched_app") {
            found.push(line);
        }
    }
    found
}

#[test]
fn an_app_that_exits_before_it_is_ready_stops_the_run_with_its_last_lines() {
    let dir = tempfile::tempdir().unwrap();
    let text = scenario(
        r#"["sh", "-c", "echo starting up; echo 'ImportError: no module named app' >&2; exit 3"]"#,
        "",
        "5s",
    );
    let err = run(dir.path(), &text).unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("exited before it was ready"), "{message}");
    assert!(message.contains("exit status: 3"), "{message}");
    assert!(
        message.contains("ImportError: no module named app"),
        "{message}"
    );
    assert!(dir.path().join("out/app.log").is_file());
}

#[test]
fn an_app_that_never_gets_ready_is_stopped_and_named_after_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let token = "71.4321";
    let text = scenario(
        &format!(r#"["sh", "-c", "echo listening soon; sleep {token}"]"#),
        "",
        "5s",
    )
    .replace("ready_timeout = \"20s\"", "ready_timeout = \"2s\"");
    let err = run(dir.path(), &text).unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("target.ready_timeout"), "{message}");
    assert!(message.contains("refused the connection"), "{message}");
    assert!(message.contains("listening soon"), "{message}");
    assert_eq!(processes_with(token), Vec::<String>::new());
}

#[test]
fn an_app_that_exits_during_the_run_ends_the_load_and_fails_target_alive() {
    let dir = tempfile::tempdir().unwrap();
    // The app leaves a child of its own behind when it goes, as a crashed supervisor would.
    let token = "83.1234";
    let text = scenario(
        &format!(
            "[\"sh\", \"-c\", \"sleep {token} & timeout 3 python3 -m http.server {{port}} --bind 127.0.0.1 --directory {{run_dir}}; exit 1\"]"
        ),
        "",
        "60s",
    );
    let started = Instant::now();
    let report = run(dir.path(), &text).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "the load went on after the app exited"
    );
    let app = report.target.app.as_ref().expect("the app's record");
    let exited = app.exited_during_run_s.expect("the exit noted");
    assert!(exited < 30.0, "{exited}");
    assert!(app.ended.contains("exited by itself"), "{}", app.ended);
    assert!(app.ended.contains("exit status: 1"), "{}", app.ended);
    let gate = report
        .gates
        .iter()
        .find(|g| g.name == "target_alive")
        .expect("a target_alive gate");
    assert!(!gate.passed);
    assert!(!report.verdict.passed, "{}", report.verdict.summary);
    assert!(
        report.requests["home"].count > 0,
        "what was measured is kept"
    );
    assert_eq!(processes_with(token), Vec::<String>::new());
}

#[test]
fn two_runs_at_once_get_ports_and_folders_of_their_own_and_secrets_are_masked() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let extra = r#"env = { API_TOKEN = "s3cret-value", GREETING = "hello" }"#;
    let text = scenario(&web_server(""), extra, "3s");
    let reports: Vec<Report> = std::thread::scope(|s| {
        let handles: Vec<_> = dirs
            .iter()
            .map(|d| {
                let text = text.clone();
                s.spawn(move || run(d.path(), &text).unwrap())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_ne!(reports[0].target.url, reports[1].target.url);
    for (report, dir) in reports.iter().zip(&dirs) {
        assert!(report.verdict.passed, "{}", report.verdict.summary);
        assert!(report.requests["home"].count > 0);
        let app = report.target.app.as_ref().unwrap();
        assert_eq!(app.env["API_TOKEN"], "***");
        assert_eq!(app.env["GREETING"], "hello");
        assert!(
            app.ended.contains("stopped by lockbench (SIGTERM)"),
            "{}",
            app.ended
        );
        let json = std::fs::read_to_string(dir.path().join("out/report.json")).unwrap();
        assert!(!json.contains("s3cret-value"));
        // The app's output is kept in the run's folder: its access log names the requests.
        let output = std::fs::read_to_string(dir.path().join("out/app.log")).unwrap();
        assert!(output.contains("\"GET / HTTP/1.1\" 200"), "{output}");
    }
}

#[test]
fn ctrl_c_stops_the_app_and_everything_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let token = "97.2468";
    let file = dir.path().join("scenario.toml");
    std::fs::write(
        &file,
        scenario(&web_server(&format!("sleep {token} &")), "", "60s"),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lockbench"))
        .arg("run")
        .arg(&file)
        .arg("--out")
        .arg(dir.path().join("out"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Until the app has started and the load runs.
    let deadline = Instant::now() + Duration::from_secs(30);
    while processes_with(token).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!processes_with(token).is_empty(), "the app did not start");
    std::thread::sleep(Duration::from_secs(2));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert_eq!(processes_with(token), Vec::<String>::new());
    let report: Report =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("out/report.json")).unwrap())
            .unwrap();
    assert!(report.interrupted);
    let app = report.target.app.unwrap();
    assert!(app.ended.contains("stopped by lockbench"), "{}", app.ended);
}

#[test]
fn a_command_or_a_folder_that_does_not_exist_is_refused_with_exit_code_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (r#"["/no/such/app", "--serve"]"#, "", "target.command"),
        (
            r#"["no-such-program-anywhere", "--port", "{port}"]"#,
            "",
            "target.command",
        ),
        (
            r#"["python3", "-V"]"#,
            r#"cwd = "/no/such/folder""#,
            "target.cwd",
        ),
    ];
    for (command, extra, key) in cases {
        let file = dir.path().join("scenario.toml");
        std::fs::write(&file, scenario(command, extra, "2s")).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_lockbench"))
            .arg("run")
            .arg(&file)
            .arg("--out")
            .arg(dir.path().join("out"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command}: {stderr}");
        assert!(stderr.contains(key), "{command}: {stderr}");
    }
}

#[test]
fn with_target_the_running_app_is_measured_and_the_command_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut app = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while reqwest::blocking::get(&url).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let file = dir.path().join("scenario.toml");
    std::fs::write(&file, scenario(r#"["/no/such/app"]"#, "", "2s")).unwrap();
    let opts = RunOptions {
        scenario: file,
        out: Some(dir.path().join("out")),
        target: Some(url.clone()),
        ..RunOptions::default()
    };
    let result = run_scenario(&opts);
    let _ = app.kill();
    let _ = app.wait();
    let report = result.unwrap().report;
    assert_eq!(report.target.url, url);
    assert!(report.target.app.is_none(), "nothing was started");
    assert!(report.requests["home"].count > 0 && report.requests["home"].failures == 0);
}

#[test]
fn a_write_lock_on_a_database_the_run_owns_is_taken_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let extra = r#"setup = [["python3", "-c", "import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute('CREATE TABLE t (x)')", "{run_dir}/app.db"]]
database = "{run_dir}/app.db"
database_owned = true

[[faults]]
kind = "external-lock"
at = "1s"
hold = "1s""#;
    let report = run(dir.path(), &scenario(&web_server(""), extra, "4s")).unwrap();
    let fault = report
        .faults
        .iter()
        .find(|f| f.kind == "external-lock")
        .expect("the lock's record");
    assert!(
        fault.started_s.is_some() && fault.ended_s.is_some(),
        "{fault:?}"
    );
    let held = fault.ended_s.unwrap() - fault.started_s.unwrap();
    assert!((0.5..3.0).contains(&held), "{fault:?}");
}

#[test]
fn faults_that_need_the_reference_server_or_an_owned_database_are_refused_naming_why() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "database = \"{run_dir}/app.db\"\n\n[[faults]]\nkind = \"long-reader\"\nat = \"1s\"\nhold = \"1s\"",
            "database_owned = true",
        ),
        (
            "\n[[faults]]\nkind = \"slow-disk\"\nat = \"1s\"\nhold = \"1s\"\nsync_delay_ms = 20",
            "slow-disk",
        ),
    ];
    for (extra, said) in cases {
        let err = run(dir.path(), &scenario(&web_server(""), extra, "2s")).unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains(said), "{message}");
    }
}

#[test]
fn kill_worker_kills_a_process_of_the_apps_group_and_records_what_its_supervisor_did() {
    let dir = tempfile::tempdir().unwrap();
    // A supervisor that starts its worker again when it dies, beside the web server.
    let token = "88.7766";
    let command = format!(
        "[\"sh\", \"-c\", \"python3 -m http.server {{port}} --bind 127.0.0.1 --directory {{run_dir}} & while true; do sleep {token}; done\"]"
    );
    let extra =
        format!("\n[[faults]]\nkind = \"kill-worker\"\nat = \"1s\"\nworker = \"sleep {token}\"");
    let report = run(dir.path(), &scenario(&command, &extra, "4s")).unwrap();
    let fault = report
        .faults
        .iter()
        .find(|f| f.kind == "kill-worker")
        .expect("the kill's record");
    assert!(fault.outcome.contains("SIGKILL to pid"), "{fault:?}");
    assert!(
        fault.outcome.contains(&format!("sleep {token}")),
        "{fault:?}"
    );
    assert!(
        fault.outcome.contains("the supervisor started pid"),
        "{fault:?}"
    );
    assert!(fault.started_s.is_some() && fault.ended_s.is_some());
    assert!(report.verdict.passed, "{}", report.verdict.summary);
    assert_eq!(processes_with(token), Vec::<String>::new());
}
